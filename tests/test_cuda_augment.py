"""The cuda engine's augmentation kernel (fastnet/engines/cuda/augment.py).

- PTX: it compiles for sm_80 and sm_90, float32 and float64, within 48 KiB
  of static shared memory, rounding to float32 only at the store (no GPU
  needed; tests/test_cuda_ptx.py compiles it with every other kernel too).
- Under Numba's CUDA simulator: against the NumPy reference twin for each
  transform and a composition, float32 and float64 -- bitwise, since the
  simulator computes in IEEE double without fused multiply-adds, in the
  order the kernel writes; the argument errors; and SGD(augment=) on
  device="cuda" trains to the reference engine's parameters, with exactly
  one more launch per step.
- On a real GPU (marked ``gpu``; skipped, saying why, without one): the
  kernel at the GPU's block size against the reference, within 1e-12
  (FMA contraction and libdevice's cos/sin move the last bits).

Like tests/test_cuda_kernels.py, under a plain ``python -m pytest tests/``
the simulator part runs in a subprocess with NUMBA_ENABLE_CUDASIM=1 (numba
reads it at import) and reports as one test.  Directly:

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda_augment.py
"""

import contextlib
import io
import os

import numpy as np
import pytest

import conformance_util as cu  # noqa: E402

cu.import_or_skip("numba_cuda", "the CUDA tests need the cuda extra: pip install '.[cuda]'")

from fastnet import augment as A  # noqa: E402
from fastnet.engines import reference as R  # noqa: E402

IN_SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
SEED, COUNTER = 2 ** 64 - 12345, 987654321

# each transform, small Gaussians (the simulator is slow) plus one of the
# default width and one wider than the image (radius capped at 28 taps)
TRANSFORMS = [A.Shift(3), A.Affine(15, 0.3, 0.1), A.Elastic(34, 1.5), A.Elastic(5, 0.5),
              A.Shift(1) + A.Affine(10, 0.2, 0.05) + A.Elastic(20, 1)]
WIDE = [A.Elastic(34, 4), A.Elastic(2, 12)]


def images(n, dtype, seed=0):
    """MNIST-like: strokes in the middle, zeros at the border, one odd pixel."""
    rs = np.random.RandomState(seed)
    x = np.zeros((n, 28, 28))
    x[:, 4:24, 6:22] = rs.rand(n, 20, 16)
    x[:, 2, 5] = 1.0
    return x.reshape(n, 784).astype(dtype)


def reference(x, t, seed=SEED, counter=COUNTER):
    out = np.empty_like(x)
    R.augment(x, t.table(), seed, counter, out)
    return out


if not IN_SIMULATOR:
    from test_cuda_kernels import run_under_simulator

    @pytest.mark.slow    # the CUDA simulator runs are marked slow (pytest.ini)
    def test_augment_under_cuda_simulator():
        run_under_simulator(os.path.abspath(__file__))

    # -----------------------------------------------------------------------
    # PTX, no GPU needed
    # -----------------------------------------------------------------------
    import re
    from unittest import mock

    from numba import cuda
    import numba.cuda.dispatcher as _dispatcher

    from fastnet.engines import cuda as E

    class _StubDevice(object):
        def __init__(self, cc):
            self.compute_capability = cc

    @pytest.mark.parametrize("cc", [(8, 0), (9, 0)], ids=["sm_80", "sm_90"])
    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_augment_compiles_to_ptx(dtype, cc):
        pyfunc, sigs = E.kernel_signatures(dtype)["augment"]
        with mock.patch.object(_dispatcher, "get_current_device", lambda: _StubDevice(cc)):
            ptx, _ = cuda.compile_ptx(pyfunc, sigs[0], cc=cc)
        assert ".target sm_%d%d" % cc in ptx and ".entry" in ptx
        shared = [int(b) for b in re.findall(r"\.shared \.align \d+ \.b8 \w+\[(\d+)\]", ptx)]
        assert sum(shared) == 6 * 784 * 8 <= 48 * 1024     # two images, four fields
        assert "mul.lo.s64" in ptx                           # the 64-bit hash
        # the images are carried in double: float32 only at the final store
        stores32 = re.findall(r"st\.global\.f32", ptx)
        loads32 = re.findall(r"ld\.global\.f32", ptx)
        if dtype == "float32":
            assert stores32 and loads32 and "cvt.rn.f32.f64" in ptx
        else:
            assert not stores32 and not loads32

    # -----------------------------------------------------------------------
    # a real GPU
    # -----------------------------------------------------------------------
    HAVE_GPU = cuda.is_available()
    gpu = pytest.mark.skipif(not HAVE_GPU, reason="no CUDA GPU: numba.cuda.is_available() "
                             "is False (no NVIDIA driver or no device)")

    @pytest.mark.gpu
    @gpu
    @pytest.mark.parametrize("t", TRANSFORMS + WIDE, ids=repr)
    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_augment_on_gpu_matches_reference(t, dtype):
        x = images(33, dtype)
        got = t.apply(x, SEED, COUNTER, engine=E)
        want = reference(x, t)
        if dtype == np.float64:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        else:   # a float32 rounding either side of a double that moved by ~1e-15
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        assert not np.array_equal(got, x)

else:
    import fastnet
    from fastnet import FullyConnectedLayer, Network, ReLU, SoftmaxLayer
    from fastnet.engines import cuda as E

    DTYPES = [np.float32, np.float64]

    @pytest.fixture(params=DTYPES, ids=["float32", "float64"])
    def dt(request):
        return request.param

    def on_cuda(x, t, seed=SEED, counter=COUNTER):
        return t.apply(x, seed, counter, engine=E)

    @pytest.mark.parametrize("t", TRANSFORMS, ids=repr)
    def test_kernel_equals_reference_bitwise(t, dt):
        x = images(3, dt)
        got = on_cuda(x, t)
        want = reference(x, t)
        assert got.dtype == dt
        np.testing.assert_array_equal(got, want)
        assert not np.array_equal(got, x)
        # every sample its own draws: no two rows moved alike
        assert not np.array_equal(got[0] - x[0], got[1] - x[1])

    @pytest.mark.parametrize("t", WIDE, ids=repr)
    def test_wide_gaussians_equal_reference_bitwise(t):
        x = images(1, np.float64, seed=1)
        np.testing.assert_array_equal(on_cuda(x, t, 7, 0), reference(x, t, 7, 0))

    def test_draws_follow_seed_and_counter():
        t = A.Affine(20, 0.2, 0.1)
        x = images(2, np.float64)
        a = on_cuda(x, t, 5, 3)
        np.testing.assert_array_equal(a, reference(x, t, 5, 3))
        assert not np.array_equal(a, on_cuda(x, t, 5, 4))
        assert not np.array_equal(a, on_cuda(x, t, 6, 3))

    def test_empty_table_copies_and_identity_rows_are_bitwise(dt):
        x = images(2, dt)
        x[0, 0] = -0.0
        x[1, 100] = 1e-30
        out = np.empty_like(x)
        rows = np.zeros((3, A.TABLE_WIDTH))
        for i, t in enumerate([A.Shift(0), A.Affine(0, 0, 0), A.Elastic(0, 4)]):
            r = t._row()
            rows[i, :len(r)] = r
        for table in (np.zeros((0, A.TABLE_WIDTH)), rows):
            xd, od = E.to_device(x), E.empty(x.shape, x.dtype)
            E.augment(xd, table, SEED, COUNTER, od)
            E.to_host(od, out=out)
            np.testing.assert_array_equal(out.view(np.uint8), x.view(np.uint8))

    def test_bad_arguments_are_clear_value_errors():
        x = images(2, np.float64)
        xd, od = E.to_device(x), E.empty(x.shape, x.dtype)
        table = A.Elastic().table()
        with pytest.raises(ValueError, match="device array"):
            E.augment(x, table, 0, 0, od)
        with pytest.raises(ValueError, match="dtype"):
            E.augment(xd, table, 0, 0, E.empty(x.shape, np.float32))
        with pytest.raises(ValueError, match="shape"):
            E.augment(xd, table, 0, 0, E.empty((3, 784), np.float64))
        with pytest.raises(ValueError, match="28 x 28"):
            E.augment(E.to_device(x[:, :700].copy()), table, 0, 0,
                      E.empty((2, 700), np.float64))
        with pytest.raises(ValueError, match="overlap"):
            E.augment(xd, table, 0, 0, xd)
        with pytest.raises(ValueError, match="table"):
            E.augment(xd, np.zeros((1, 5)), 0, 0, od)
        bad = table.copy()
        bad[0, 3] = 40
        with pytest.raises(ValueError, match="table row 0"):
            E.augment(xd, bad, 0, 0, od)
        with pytest.raises(ValueError, match="seed"):
            E.augment(xd, table, -1, 0, od)
        with pytest.raises(ValueError, match="counter"):
            E.augment(xd, table, 0, 2 ** 64, od)

    # -----------------------------------------------------------------------
    # SGD(augment=) on device="cuda"
    # -----------------------------------------------------------------------
    # A 784-input layer costs the simulator ~10 s a step (its dense backward
    # is ~100 blocks of Python threads), so one run of 2 steps, in float64;
    # float32 goes through the same per-step path, and its kernel is checked
    # bitwise above.
    MBS = 2

    def fc(**where):
        np.random.seed(4)
        return Network([FullyConnectedLayer(784, 6, activation_fn=ReLU),
                        SoftmaxLayer(6, 3)], MBS, **where)

    def train(net, batches, augment):
        x = images(batches * MBS, net.dtype, seed=3)
        y = (x[:, 300:303].argmax(axis=1)).astype(np.int32)
        v = (x[:MBS], y[:MBS])
        with contextlib.redirect_stdout(io.StringIO()):
            net.SGD((x, y), 1, MBS, 0.5, v, v, augment=augment)
        return [p.get_value() for p in net.params]

    @pytest.fixture
    def float64x():
        old = fastnet.get_floatx()
        fastnet.set_floatx("float64")
        yield
        fastnet.set_floatx(old)

    def test_sgd_augment_matches_reference_engine(float64x, monkeypatch):
        t = A.Shift(1) + A.Affine(10, 0.2) + A.Elastic(20, 1)
        want = train(fc(engine="reference"), 2, t)
        plain = train(fc(engine="reference"), 2, None)
        calls = []
        kernel = E.augment

        def counted(x, table, seed, counter, out):
            before = E.launch_count()
            kernel(x, table, seed, counter, out)
            calls.append((counter, E.launch_count() - before))
        monkeypatch.setattr(E, "augment", counted)
        net = fc(device="cuda")
        assert net.engine is E
        got = train(net, 2, t)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype == np.float64
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12 * float(np.max(np.abs(w))))
        assert any(not np.allclose(g, p) for g, p in zip(got, plain))
        # one call per training step, with the step counter; one launch each
        assert calls == [(0, 1), (1, 1)]
