"""On-the-fly augmentation (fastnet/augment.py): the NumPy reference against
scipy.ndimage, the compiled kernel against the reference, identity
parameters bitwise, determinism (seed, thread count), SGD with augment= on
every path (compiled loop, op by op, reference engine), resume bitwise from
a checkpoint, the errors, and the preview picture."""

import contextlib
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.ndimage as ndi

import fastnet
from fastnet import ConvPoolLayer, FullyConnectedLayer, Network, ReLU, SoftmaxLayer
from fastnet import augment as A
from fastnet.engines import reference as R

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED, COUNTER = 2 ** 64 - 12345, 987654321


def _images(n=6, seed=0, dtype=np.float64):
    """MNIST-like: a blob of strokes in the middle, zeros at the border."""
    rs = np.random.RandomState(seed)
    x = np.zeros((n, 28, 28))
    x[:, 4:24, 6:22] = rs.rand(n, 20, 16)
    x[:, 2, 5] = 1.0
    return x.reshape(n, 784).astype(dtype)


def _ref(x, t, seed=SEED, counter=COUNTER):
    out = np.empty_like(x)
    R.augment(x, t.table(), seed, counter, out)
    return out


def _cpu():
    from fastnet.engines import get_engine
    try:
        return get_engine("cpu")
    except ImportError as e:
        if os.environ.get("CI") == "true":
            pytest.fail("the compiled engine must be built under CI: %s" % e)
        pytest.skip("the compiled engine is not built: %s" % e)


GRID = np.mgrid[0:28, 0:28].astype(np.float64)


# ---------------------------------------------------------------------------
# the reference against scipy.ndimage
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("alpha,sigma", [(34, 4), (8, 1.3), (3, 9)])
def test_elastic_reference_is_scipy_gaussian_filter_and_map_coordinates(alpha, sigma):
    x = _images()
    got = _ref(x, A.Elastic(alpha, sigma))
    u = R.augment_uniforms(SEED, 0, COUNTER, len(x), 2 * 784)
    noise = 2.0 * u - 1.0
    for i in range(len(x)):
        dy = alpha * ndi.gaussian_filter(noise[i, :784].reshape(28, 28), sigma,
                                         mode="constant", truncate=4.0)
        dx = alpha * ndi.gaussian_filter(noise[i, 784:].reshape(28, 28), sigma,
                                         mode="constant", truncate=4.0)
        want = ndi.map_coordinates(x[i].reshape(28, 28), [GRID[0] + dy, GRID[1] + dx],
                                   order=1, mode="grid-constant", cval=0.0)
        np.testing.assert_allclose(got[i], want.ravel(), rtol=1e-12, atol=1e-12)
    assert np.abs(got - x).max() > 0.1          # it did move the strokes


def test_affine_reference_is_scipy_affine_transform():
    x = _images()
    t = A.Affine(max_rotation=20, max_shear=0.4, max_scale=0.15)
    got = _ref(x, t)
    u = R.augment_uniforms(SEED, 0, COUNTER, len(x), 3)
    c = np.array([13.5, 13.5])
    for i in range(len(x)):
        a = np.radians(20) * (2 * u[i, 0] - 1)
        k = 0.4 * (2 * u[i, 1] - 1)
        s = 1 + 0.15 * (2 * u[i, 2] - 1)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        m = rot @ np.array([[1.0, 0.0], [k, 1.0]]) / s
        want = ndi.affine_transform(x[i].reshape(28, 28), m, offset=c - m @ c, order=1,
                                    mode="grid-constant", cval=0.0)
        np.testing.assert_allclose(got[i], want.ravel(), rtol=1e-12, atol=1e-12)
    assert np.abs(got - x).max() > 0.1


def test_shift_reference_is_np_roll_with_zero_fill():
    x = _images(40)
    got = _ref(x, A.Shift(2))
    u = R.augment_uniforms(SEED, 0, COUNTER, len(x), 2)
    d = np.floor(u * 5).astype(int) - 2
    assert {tuple(v) for v in d} >= {(0, 0), (2, -2), (-1, 1)}   # the draws cover the range
    for i in range(len(x)):
        dy, dx = d[i]
        want = np.roll(x[i].reshape(28, 28), (dy, dx), axis=(0, 1))
        if dy > 0:
            want[:dy] = 0
        elif dy < 0:
            want[dy:] = 0
        if dx > 0:
            want[:, :dx] = 0
        elif dx < 0:
            want[:, dx:] = 0
        np.testing.assert_array_equal(got[i], want.ravel())


def test_compose_is_the_transforms_in_order():
    x = _images()
    a, b = A.Shift(1), A.Elastic(20, 3)
    whole = _ref(x, a + b)
    # transform k of a table draws from hash(seed, k): b alone at place 1
    first = _ref(x, a)
    table = np.zeros((2, A.TABLE_WIDTH))
    table[1] = b.table()[0]
    table[0, 0] = A.SHIFT                        # max_pixels 0: no change
    out = np.empty_like(x)
    R.augment(first, table, SEED, COUNTER, out)
    np.testing.assert_array_equal(whole, out)


# ---------------------------------------------------------------------------
# the compiled kernel against the reference; identity; determinism
# ---------------------------------------------------------------------------
TRANSFORMS = [A.Shift(3), A.Affine(15, 0.3, 0.1), A.Elastic(34, 4), A.Elastic(5, 0.5),
              A.Elastic(2, 12), A.Shift(1) + A.Affine(10, 0.2) + A.Elastic(34, 4)]


@pytest.mark.parametrize("t", TRANSFORMS, ids=repr)
def test_compiled_kernel_matches_reference(t, float_dtype):
    cpu = _cpu()
    x = _images(7, dtype=float_dtype)
    want = _ref(x, t)
    got = np.empty_like(x)
    cpu.augment(x, t.table(), SEED, COUNTER, got)
    if float_dtype == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(got, x)


def _identity_rows():
    rows = np.zeros((3, A.TABLE_WIDTH))
    for i, t in enumerate([A.Shift(0), A.Affine(0, 0, 0), A.Elastic(0, 4)]):
        r = t._row()
        rows[i, :len(r)] = r
    return rows


def test_identity_parameters_give_the_input_back_bitwise(float_dtype):
    x = _images(5, dtype=float_dtype)
    x[0, 0] = -0.0
    x[1, 100] = 1e-30
    engines = [R]
    try:
        engines.append(_cpu())
    except pytest.skip.Exception:
        pass
    for e in engines:
        for table in (_identity_rows(), (A.Elastic(0) + A.Shift(0)).table()):
            out = np.full_like(x, np.nan)
            e.augment(x, table, SEED, COUNTER, out)
            assert out.tobytes() == x.tobytes(), e.name
    for t in (A.Elastic(0, 4), A.Affine(), A.Shift(0), A.Compose([A.Elastic(0), A.Shift(0)])):
        assert t.is_identity and t.table().shape == (0, A.TABLE_WIDTH)
    assert not (A.Elastic(0) + A.Shift(1)).is_identity


def test_same_seed_same_images_whatever_the_thread_count(cpu_threads):
    x = _images(9, dtype=np.float32)
    t = A.Shift(1) + A.Affine(10, 0.2) + A.Elastic(34, 4)
    outs = []
    for n in (1, 2, 3, 8):
        cpu_threads.set_num_threads(n)
        out = np.empty_like(x)
        cpu_threads.augment(x, t.table(), SEED, COUNTER, out)
        outs.append(out)
    for o in outs[1:]:
        assert o.tobytes() == outs[0].tobytes()
    again = np.empty_like(x)
    cpu_threads.augment(x, t.table(), SEED, COUNTER, again)
    assert again.tobytes() == outs[0].tobytes()
    other = np.empty_like(x)
    cpu_threads.augment(x, t.table(), SEED, COUNTER + 1, other)
    assert not np.array_equal(other, again)              # the next step: new draws
    cpu_threads.augment(x, t.table(), SEED + 1, COUNTER, other)
    assert not np.array_equal(other, again)              # another seed: new draws


def test_a_network_takes_its_augment_seed_from_numpys_global_state():
    def net():
        return Network([FullyConnectedLayer(784, 4), SoftmaxLayer(4, 3)], 5)
    np.random.seed(7)
    a = net()
    np.random.seed(7)
    b = net()
    np.random.seed(8)
    c = net()
    assert a.augment_seed == b.augment_seed != c.augment_seed
    x = _images(5)
    t = A.Elastic(34, 4)
    np.testing.assert_array_equal(t.apply(x, a.augment_seed, 3),
                                  t.apply(x, b.augment_seed, 3))


# ---------------------------------------------------------------------------
# SGD with augment=
# ---------------------------------------------------------------------------
MBS = 5


def _fc(seed=1, **kw):
    np.random.seed(seed)
    return Network([FullyConnectedLayer(784, 12, activation_fn=ReLU),
                    SoftmaxLayer(12, 3)], MBS, **kw)


def _conv(seed=1, **kw):
    np.random.seed(seed)
    return Network([ConvPoolLayer((3, 1, 5, 5), (MBS, 1, 28, 28), activation_fn=ReLU),
                    FullyConnectedLayer(3 * 12 * 12, 8, activation_fn=ReLU, p_dropout=0.2),
                    SoftmaxLayer(8, 3)], MBS, **kw)


def _data(n=40, dtype=np.float32):
    x = _images(n, seed=3, dtype=dtype)
    return x, (x[:, 300:303].argmax(axis=1)).astype(np.int32)


def _sgd(net, epochs=2, **kw):
    d = _data(dtype=net.dtype)
    with contextlib.redirect_stdout(io.StringIO()) as log:
        h = net.SGD(d, epochs, MBS, 0.1, d, d, **kw)
    return h, log.getvalue()


def _weights(net):
    return [p.get_value() for p in net.params]


@pytest.mark.parametrize("make", [_fc, _conv], ids=["fc", "conv"])
def test_sgd_augment_compiled_loop_equals_op_by_op(make):
    _cpu()
    t = A.Shift(1) + A.Elastic(34, 4)
    fused, unfused, plain = make(), make(fused=False), make()
    _sgd(fused, augment=t)
    _sgd(unfused, augment=t)
    _sgd(plain)
    for p, q, r in zip(_weights(fused), _weights(unfused), _weights(plain)):
        np.testing.assert_array_equal(p, q)
    assert any(not np.array_equal(p, r) for p, r in zip(_weights(fused), _weights(plain)))


def test_sgd_augment_on_the_reference_engine_matches_the_compiled_one(floatx):
    _cpu()
    t = A.Affine(10, 0.2) + A.Elastic(20, 3)
    ref, cpu = _conv(engine="reference"), _conv(engine="cpu")
    _sgd(ref, augment=t)
    _sgd(cpu, augment=t)
    tol = dict(rtol=1e-9, atol=1e-11) if floatx == np.float64 else dict(rtol=2e-3, atol=2e-4)
    for p, q in zip(_weights(ref), _weights(cpu)):
        np.testing.assert_allclose(p, q, **tol)


def test_identity_augment_trains_as_plain_bitwise():
    a, b = _conv(), _conv()
    ha, log_a = _sgd(a)
    hb, log_b = _sgd(b, augment=[A.Elastic(0, 4), A.Shift(0)])
    for p, q in zip(_weights(a), _weights(b)):
        np.testing.assert_array_equal(p, q)
    assert log_a == log_b


def test_evaluation_is_never_augmented():
    net = _fc()
    seen = []
    real = net._batch_accuracies

    def record(x_e, y, n_batches):
        seen.append(np.array(x_e, copy=True))
        return real(x_e, y, n_batches)
    net._batch_accuracies = record
    h, _ = _sgd(net, 1, augment=A.Elastic(34, 4))
    x, y = _data()
    assert seen and all(np.array_equal(s, x) for s in seen)   # validation and test as given
    assert h.epochs[-1]["validation_accuracy"] == net.accuracy((x, y))


@pytest.mark.parametrize("make", [_fc, _conv], ids=["fc", "conv"])
def test_resume_bitwise_with_augment(tmp_path, make):
    t = A.Shift(1) + A.Affine(10, 0.2) + A.Elastic(34, 4)
    whole = make()
    h_whole, _ = _sgd(whole, 4, augment=t)
    dying = make()
    real = dying._batch_accuracies
    calls = []

    def die(*args):
        calls.append(1)
        if len(calls) == 5:          # validation and test of epochs 0 and 1; dies in 2
            raise RuntimeError("killed")
        return real(*args)
    dying._batch_accuracies = die
    ck = str(tmp_path / "ck.npz")
    with pytest.raises(RuntimeError):
        _sgd(dying, 4, checkpoint=ck, augment=t)
    # a network built from another global RNG state: the checkpoint brings
    # the weights, the step counter and the augment seed back
    resumed = make(seed=99)
    assert resumed.augment_seed != whole.augment_seed
    h, _ = _sgd(resumed, 4, checkpoint=ck, augment=t)
    assert resumed.augment_seed == whole.augment_seed
    assert [e["validation_accuracy"] for e in h.epochs] == \
        [e["validation_accuracy"] for e in h_whole.epochs]
    for p, q in zip(_weights(whole), _weights(resumed)):
        np.testing.assert_array_equal(p, q)
    # another augmentation is another SGD call: the checkpoint is refused
    with pytest.raises(ValueError, match="different SGD call"):
        _sgd(make(), 4, checkpoint=ck, augment=A.Elastic(30, 4))


def test_save_and_load_keep_the_augment_seed(tmp_path):
    net = _fc(seed=5)
    path = str(tmp_path / "net.npz")
    net.save(path)
    assert fastnet.load(path).augment_seed == net.augment_seed


# ---------------------------------------------------------------------------
# errors, specs
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("make,match", [
    (lambda: A.Elastic(-1, 4), "alpha"), (lambda: A.Elastic(34, 0), "sigma"),
    (lambda: A.Elastic(34, float("nan")), "sigma"), (lambda: A.Elastic("34", 4), "alpha"),
    (lambda: A.Elastic(34, 25), "sigma"), (lambda: A.Affine(max_rotation=200), "rotation"),
    (lambda: A.Affine(max_shear=-0.1), "shear"), (lambda: A.Affine(max_scale=1), "scale"),
    (lambda: A.Shift(1.5), "integer"), (lambda: A.Shift(28), "max_pixels"),
    (lambda: A.Shift(True), "number"), (lambda: A.Compose([A.Shift(1), "x"]), "transform"),
    (lambda: A.Compose([A.Shift(1)] * 9), "at most"),
])
def test_bad_parameters_are_clear_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_sgd_refuses_augment_it_cannot_apply():
    np.random.seed(0)
    small = Network([FullyConnectedLayer(12, 4), SoftmaxLayer(4, 3)], MBS)
    x = np.random.rand(20, 12).astype(np.float32)
    y = np.zeros(20, np.int32)
    with pytest.raises(ValueError, match="784"):
        small.SGD((x, y), 1, MBS, 0.1, (x, y), (x, y), augment=A.Elastic())
    with pytest.raises(ValueError, match="augment must be"):
        _sgd(_fc(), 1, augment="elastic")


def test_kernels_refuse_bad_arguments():
    x = _images(3)
    out = np.empty_like(x)
    engines = [R]
    try:
        engines.append(_cpu())
    except pytest.skip.Exception:
        pass
    for e in engines:
        with pytest.raises(ValueError, match="table"):
            e.augment(x, np.zeros((1, 5)), 0, 0, out)
        bad = A.Elastic().table()
        bad[0, 3] = 40
        with pytest.raises(ValueError, match="table row 0"):
            e.augment(x, bad, 0, 0, out)
        with pytest.raises(ValueError, match="seed"):
            e.augment(x, A.Elastic().table(), -1, 0, out)
        with pytest.raises(ValueError, match="counter"):
            e.augment(x, A.Elastic().table(), 0, 2 ** 64, out)
        with pytest.raises(ValueError):
            e.augment(x[:, :700].copy(), A.Elastic().table(), 0, 0, out[:, :700].copy())


def test_specs_round_trip_as_plain_data():
    import json
    t = A.Shift(2) + A.Affine(12, 0.25, 0.05) + A.Elastic(34, 4)
    spec = json.loads(json.dumps(t.to_spec()))
    back = A.from_spec(spec)
    assert back == t and back.to_spec() == spec
    np.testing.assert_array_equal(back.table(), t.table())
    for bad in ({"type": "warp"}, {"type": "elastic", "alpha": 1, "beta": 2}, [1], {}):
        with pytest.raises(ValueError):
            A.from_spec(bad)


def test_gaussian_weights_are_scipys():
    for sigma in (0.3, 1.0, 4.0, 9.5):
        w = A.gaussian_weights(sigma)
        impulse = np.zeros(57)
        impulse[28] = 1.0
        want = ndi.gaussian_filter1d(impulse, sigma, mode="constant", truncate=4.0)
        np.testing.assert_allclose(w, want[28:28 + len(w)], rtol=1e-13, atol=1e-17)


# ---------------------------------------------------------------------------
# the picture
# ---------------------------------------------------------------------------
def test_cli_preview_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "grid.png"
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run([sys.executable, "-m", "fastnet", "augment-preview", "--n", "3",
                        "--copies", "2", "--transform", "all", "--out", str(out)],
                       cwd=str(tmp_path), env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    r = subprocess.run([sys.executable, "-m", "fastnet", "augment-preview", "--sigma", "0"],
                       cwd=str(tmp_path), env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "sigma" in r.stderr


def test_bench_script_measures_every_variant(capsys):
    _cpu()
    import importlib.util
    path = os.path.join(REPO, "bench", "augment.py")
    spec = importlib.util.spec_from_file_location("bench_augment", path)
    bench = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(bench)      # puts bench/ on sys.path
        assert bench.main(["--networks", "fc", "--samples", "20", "--rounds", "1"]) == 0
    finally:
        sys.path[:] = saved
    rows = [l for l in capsys.readouterr().out.splitlines() if l.startswith("| fc |")]
    assert len(rows) == len(bench.variants()) and rows[0].endswith("1.00x |")
