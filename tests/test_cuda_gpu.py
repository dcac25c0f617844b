"""The cuda engine on a real GPU: the kernels at the GPU's block sizes, on
the book's shapes and on sizes either side of every tile edge, against the
NumPy reference; device discovery and the memory check; a training run.

Tests marked ``gpu`` skip, saying why, when ``numba.cuda.is_available()`` is
False (no driver or no GPU).  Without a GPU, ``test_no_device_*`` checks the
error a user gets instead.  The same file also runs under Numba's CUDA
simulator (NUMBA_ENABLE_CUDASIM=1) with tiny shapes, which checks the tests
themselves on a machine without a GPU.
"""


import numpy as np
import pytest

import conformance_util as cu  # noqa: E402

cu.import_or_skip("numba_cuda", "the CUDA tests need the cuda extra: pip install '.[cuda]'")

from numba import cuda  # noqa: E402

import fastnet  # noqa: E402
from fastnet import ConvPoolLayer, FullyConnectedLayer, Network, ReLU, SoftmaxLayer  # noqa: E402
from fastnet.activations import LINEAR, RELU, SIGMOID, TANH  # noqa: E402
from fastnet.engines import cuda as E  # noqa: E402
from fastnet.engines import reference as R  # noqa: E402
from fastnet.engines.cuda import common, device  # noqa: E402

SIM = common.SIMULATOR
HAVE_GPU = cuda.is_available()
gpu = pytest.mark.skipif(not HAVE_GPU, reason="no CUDA GPU: numba.cuda.is_available() "
                         "is False (no NVIDIA driver or no device)")

# float32 on a GPU: FMA contraction and expf differ from NumPy by an ulp or two
RTOL = {np.float32: 2e-5, np.float64: 1e-12}
ACTS = {"sigmoid": SIGMOID, "tanh": TANH, "ReLU": RELU, "linear": LINEAR}


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dt(request):
    return request.param


def normal(shape, dt, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dt)


def check(name, got, want):
    got = E.to_host(got) if not isinstance(got, np.ndarray) else got
    assert got.shape == want.shape and got.dtype == want.dtype, name
    rtol = RTOL[want.dtype.type]
    np.testing.assert_allclose(got, want, rtol=rtol,
                               atol=rtol * float(np.max(np.abs(want))), err_msg=name)


# ---------------------------------------------------------------------------
# without a GPU: the error a user sees
# ---------------------------------------------------------------------------
@pytest.mark.skipif(HAVE_GPU, reason="a GPU is present")
def test_no_device_raises_clear_error():
    with pytest.raises(RuntimeError, match=r"no CUDA device found; use device='cpu'"):
        device.require_device()
    with pytest.raises(RuntimeError, match=r"no CUDA device found; use device='cpu'"):
        E.empty((2,), np.float32)
    assert device.is_available() is False


@pytest.mark.skipif(HAVE_GPU, reason="a GPU is present")
def test_no_device_network_raises_clear_error():
    np.random.seed(0)
    layers = [FullyConnectedLayer(4, 3), SoftmaxLayer(3, 2)]
    with pytest.raises(RuntimeError, match=r"no CUDA device found; use device='cpu'"):
        Network(layers, 2, device="cuda")


# ---------------------------------------------------------------------------
# device discovery and the memory check
# ---------------------------------------------------------------------------
@pytest.mark.gpu
@gpu
def test_device_info_and_memory_check():
    info = E.info()
    print(info)
    if SIM:
        assert info.simulated and info.free_memory() is None
        return
    assert info.name and info.multiprocessors > 0
    assert info.compute_capability >= (7, 0)
    free = info.free_memory()
    assert 0 < free <= info.total_memory
    with pytest.raises(device.DeviceMemoryError, match="MiB"):
        device.check_fits(2 * info.total_memory, "a test array")
    device.check_fits(1 << 20, "a small array")


# ---------------------------------------------------------------------------
# kernels against the reference (book shapes; both sides of tile edges)
# ---------------------------------------------------------------------------
if SIM:
    CONV_CASES = [((2, 1, 8, 8), (3, 1, 3, 3), (2, 2))]
    DENSE_CASES = [(3, 9, 10)]
else:
    CONV_CASES = [
        ((10, 1, 28, 28), (20, 1, 5, 5), (2, 2)),     # the book's conv1, mini-batch 10
        ((10, 20, 12, 12), (40, 20, 5, 5), (2, 2)),   # the book's conv2
        ((128, 1, 28, 28), (20, 1, 5, 5), (2, 2)),    # conv1 at mini-batch 128
        ((3, 3, 17, 15), (9, 3, 4, 3), (3, 2)),       # odd sizes, a pool border
    ]
    DENSE_CASES = [(10, 640, 100), (128, 640, 100), (10, 100, 10), (128, 100, 10),
                   (15, 17, 16), (16, 16, 17), (17, 33, 31), (10, 1000, 1000)]


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("xs,ws,poolsize", CONV_CASES, ids=[str(c[0]) for c in CONV_CASES])
def test_conv_pool_kernels(dt, xs, ws, poolsize):
    x, w = normal(xs, dt, 1), normal(ws, dt, 2) * 0.3
    N, C, H, W = xs
    F, _, KH, KW = ws
    cshape = (N, F, H - KH + 1, W - KW + 1)
    conv_out = np.empty(cshape, dt)
    R.conv_forward(x, w, conv_out)
    xd, wd, cd = E.to_device(x), E.to_device(w), E.empty(cshape, dt)
    E.conv_forward(xd, wd, cd)
    check("conv_forward", cd, conv_out)
    ph, pw = poolsize
    oshape = (N, F, cshape[2] // ph, cshape[3] // pw)
    conv_out = np.round(conv_out, 1)     # ties in many windows
    cd = E.to_device(conv_out)
    b = normal((F,), dt, 3)
    out = np.empty(oshape, dt)
    R.pool_forward(conv_out, b, RELU, poolsize, out)
    od = E.empty(oshape, dt)
    E.pool_forward(cd, E.to_device(b), RELU, poolsize, od)
    check("pool_forward", od, out)
    dout = normal(oshape, dt, 4)
    dz, dconv, db = dout.copy(), np.empty(cshape, dt), np.empty(F, dt)
    R.pool_backward(conv_out, out, dz, RELU, poolsize, dconv, db)
    dd, dcd, dbd = E.to_device(dout), E.empty(cshape, dt), E.empty((F,), dt)
    E.pool_backward(cd, od, dd, RELU, poolsize, dcd, dbd)
    check("pool dconv", dcd, dconv)
    check("pool db", dbd, db)
    check("pool dz", dd, dz)
    dcv = normal(cshape, dt, 5)
    dw, dx = np.empty_like(w), np.empty_like(x)
    R.conv_backward(x, w, dcv, dw, dx)
    dwd, dxd = E.empty(ws, dt), E.empty(xs, dt)
    for _ in range(2):
        E.conv_backward(xd, wd, E.to_device(dcv), dwd, dxd)
        check("conv dw", dwd, dw)
        check("conv dx", dxd, dx)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("N,I,O", DENSE_CASES, ids=["%dx%dx%d" % c for c in DENSE_CASES])
def test_dense_kernels(dt, N, I, O, act):
    code = ACTS[act]
    x, b = normal((N, I), dt, 6), normal((O,), dt, 8)
    w = (normal((I, O), dt, 7) / np.sqrt(I)).astype(dt)
    out = np.empty((N, O), dt)
    R.dense_forward(x, w, b, code, 1.0, out)
    xd, wd, bd, od = E.to_device(x), E.to_device(w), E.to_device(b), E.empty((N, O), dt)
    E.dense_forward(xd, wd, bd, code, 1.0, od)
    check("dense_forward", od, out)
    dout = normal((N, O), dt, 9)
    dz, dw, db, dx = dout.copy(), np.empty_like(w), np.empty_like(b), np.empty_like(x)
    R.dense_backward(x, w, out, dz, code, dw, db, dx)
    dd, dwd, dbd, dxd = E.to_device(dout), E.empty(w.shape, dt), E.empty(b.shape, dt), E.empty(x.shape, dt)
    E.dense_backward(xd, wd, od, dd, code, dwd, dbd, dxd)
    check("dense dw", dwd, dw)
    check("dense db", dbd, db)
    check("dense dx", dxd, dx)
    check("dense dz", dd, dz)


@pytest.mark.gpu
@gpu
def test_dropout_bits_identical_large():
    n = 1000 if SIM else 1 << 20
    for seed, counter in ((0, 0), (2 ** 64 - 1, 123456789)):
        np.testing.assert_array_equal(E.to_host(E.dropout_bits(seed, counter, n)),
                                      R.dropout_bits(seed, counter, n))


@pytest.mark.gpu
@gpu
def test_softmax_and_reductions(dt):
    N, K = (5, 4) if SIM else (128, 10)
    logits = normal((N, K), dt, 10) * 4
    y = np.random.default_rng(11).integers(0, K, N).astype(np.int32)
    probs, dlogits = np.empty_like(logits), np.empty_like(logits)
    cost = R.softmax_nll(logits, y, probs, dlogits)
    pd, dld = E.empty((N, K), dt), E.empty((N, K), dt)
    c = E.softmax_nll(E.to_device(logits), E.to_device(y), pd, dld)
    assert isinstance(c, E.DeviceScalar)
    np.testing.assert_allclose(float(c), cost, rtol=RTOL[dt])
    check("probs", pd, probs)
    check("dlogits", dld, dlogits)
    for shape in ((7,), (640, 100), (1000, 1000)) if not SIM else ((7,), (40, 50)):
        w = normal(shape, dt, 12)
        np.testing.assert_allclose(float(E.sum_of_squares(E.to_device(w))),
                                   R.sum_of_squares(w), rtol=RTOL[dt] * 10)


# ---------------------------------------------------------------------------
# a training run: the book's conv2 net on synthetic data, against the reference
# ---------------------------------------------------------------------------
@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("floatx", ["float32", "float64"])
def test_book_conv2_net_trains_like_reference(floatx):
    if SIM:
        pytest.skip("the book's net is too large for the simulator "
                    "(tests/test_cuda_network.py runs a miniature)")
    old = fastnet.get_floatx()
    fastnet.set_floatx(floatx)
    try:
        mbs = 10
        r = np.random.default_rng(0)
        train = (r.random((5 * mbs, 784)), r.integers(0, 10, 5 * mbs))
        valid = (r.random((2 * mbs, 784)), r.integers(0, 10, 2 * mbs))
        nets = []
        for where in ({"engine": "reference"}, {"device": "cuda"}):
            np.random.seed(3)
            net = Network([
                ConvPoolLayer(image_shape=(mbs, 1, 28, 28), filter_shape=(20, 1, 5, 5),
                              poolsize=(2, 2), activation_fn=ReLU),
                ConvPoolLayer(image_shape=(mbs, 20, 12, 12), filter_shape=(40, 20, 5, 5),
                              poolsize=(2, 2), activation_fn=ReLU),
                FullyConnectedLayer(n_in=40 * 4 * 4, n_out=100, activation_fn=ReLU,
                                    p_dropout=0.5),
                SoftmaxLayer(n_in=100, n_out=10, p_dropout=0.5)], mbs, **where)
            net.SGD(train, 1, mbs, 0.03, valid, valid, lmbda=0.1)
            nets.append(net)
        # 5 steps of float32 let FMA-level differences grow a little
        rtol = 1e-3 if floatx == "float32" else 1e-9
        for a, b in zip(nets[0].params, nets[1].params):
            want, got = a.get_value(), b.get_value()
            np.testing.assert_allclose(got, want, rtol=rtol,
                                       atol=rtol * float(np.max(np.abs(want))))
    finally:
        fastnet.set_floatx(old)
