"""Bad input, faults and checkpoints: clear errors, nothing lost.

* construction checks: a ValueError naming the layer and both numbers;
* data checks before training and inference: the argument, the first bad
  row / index / value;
* divergence: FloatingPointError, the network keeps its last good epoch;
* determinism: the same seed gives bitwise the same weights;
* checkpoints: a run killed with SIGKILL (or interrupted with Ctrl-C) in the
  middle of an epoch and restarted with the same command ends bitwise equal
  to a run never interrupted; a checkpoint of another run, or of other data
  of the same size (a fingerprint of the data is in the file), is refused; a
  kill while writing leaves the old checkpoint and no temporary file.

Every engine that imports is tested; the compiled cpu engine is skipped with
a reason when it is not built, and fails the run under CI=true.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import fastnet
from fastnet import (ConvPoolLayer, FullyConnectedLayer, Network, ReLU,
                     SoftmaxLayer, persist)
from fastnet import network as network_module

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_kill_worker.py")


def engine_or_skip(name):
    try:
        return fastnet.get_engine(name)
    except ImportError as exc:
        reason = "engine %r is not built/importable: %s" % (name, exc)
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: the compiled engine must be built)")
        pytest.skip(reason)


ENGINES = ["reference", "cpu"]


@pytest.fixture(params=ENGINES)
def engine(request):
    engine_or_skip(request.param)
    return request.param


# ---------------------------------------------------------------------------
# small nets and data
# ---------------------------------------------------------------------------
MBS = 10


def fc_net(engine="reference", seed=0, p=0.0, n_in=20, n_out=3):
    np.random.seed(seed)
    return Network([FullyConnectedLayer(n_in, 10, p_dropout=p),
                    SoftmaxLayer(10, n_out, p_dropout=p)], MBS, engine=engine)


def conv_net(engine="reference", seed=0):
    """Every layer type: conv-pool, fully connected with dropout, softmax."""
    np.random.seed(seed)
    return Network([
        ConvPoolLayer(filter_shape=(3, 1, 3, 3), image_shape=(MBS, 1, 8, 8),
                      poolsize=(2, 2), activation_fn=ReLU),
        FullyConnectedLayer(27, 12, p_dropout=0.3),
        SoftmaxLayer(12, 3, p_dropout=0.2)], MBS, engine=engine)


def data(n=100, n_in=20, seed=1, n_out=3):
    rng = np.random.RandomState(seed)
    x = rng.rand(n, n_in).astype(np.float32)
    y = (x[:, 0] * n_out).astype(np.int64) % n_out
    return x, y


def weights(net):
    return [p.get_value() for p in net.params]


def assert_bitwise(a, b):
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b)):
        assert u.dtype == v.dtype and u.shape == v.shape
        assert u.tobytes() == v.tobytes(), (
            "param %d differs: max |diff| %g" % (i, np.max(np.abs(u - v))))


def raises(match, fn, *args, **kwargs):
    """fn(*args) raises ValueError whose message matches every regex in match."""
    with pytest.raises(ValueError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    for m in ([match] if isinstance(match, str) else match):
        assert re.search(m, msg), "%r not found in: %s" % (m, msg)
    return msg


# ---------------------------------------------------------------------------
# 1. construction checks
# ---------------------------------------------------------------------------
def test_chained_sizes_name_layer_and_both_numbers():
    layers = [FullyConnectedLayer(20, 10), SoftmaxLayer(12, 3)]
    raises([r"layer 1\b", r"\b12\b", r"\b10\b", r"layer 0\b"], Network, layers, MBS)


def test_chained_conv_to_dense_sizes():
    layers = [ConvPoolLayer((3, 1, 3, 3), (MBS, 1, 8, 8)),      # gives 3*3*3 = 27
              FullyConnectedLayer(30, 5), SoftmaxLayer(5, 2)]
    raises([r"layer 1\b", r"\b30\b", r"\b27\b"], Network, layers, MBS)


@pytest.mark.parametrize("index", [0, 1])
def test_image_batch_not_mini_batch_size(index):
    first_batch = 7 if index == 0 else MBS
    second_batch = 7 if index == 1 else MBS
    layers = [ConvPoolLayer((2, 1, 3, 3), (first_batch, 1, 10, 10)),   # -> (2, 4, 4)
              ConvPoolLayer((2, 2, 3, 3), (second_batch, 2, 4, 4), poolsize=(1, 1)),
              SoftmaxLayer(8, 2)]
    raises([r"layer %d\b" % index, r"\b7\b", r"\b%d\b" % MBS], Network, layers, MBS)


def test_filter_channels_not_image_channels():
    # raised by the layer itself (its constructor has no index to name)
    raises([r"\b3\b", r"\b1\b", "feature maps"],
           ConvPoolLayer, (4, 3, 3, 3), (MBS, 1, 8, 8))


def test_pool_larger_than_conv_output():
    raises([r"\(7, 7\)", r"6x6"], ConvPoolLayer, (2, 1, 3, 3), (MBS, 1, 8, 8),
           poolsize=(7, 7))


def test_filter_larger_than_image():
    raises([r"9x9", r"8x8"], ConvPoolLayer, (2, 1, 9, 9), (MBS, 1, 8, 8))


@pytest.mark.parametrize("fn", ["softplus", np.exp, None, 3])
def test_unknown_activation(fn):
    raises(["activation", re.escape(repr(fn)) if not isinstance(fn, str) else fn],
           FullyConnectedLayer, 4, 3, activation_fn=fn)
    raises(["activation"], ConvPoolLayer, (2, 1, 3, 3), (MBS, 1, 8, 8),
           activation_fn=fn)


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, float("nan"), "half"])
def test_p_dropout_outside_unit_interval(p):
    raises([r"p_dropout", r"\[0, 1\)", re.escape(repr(p))],
           FullyConnectedLayer, 4, 3, p_dropout=p)
    raises([r"p_dropout"], SoftmaxLayer, 4, 3, p_dropout=p)


def test_p_dropout_zero_and_just_below_one_accepted():
    FullyConnectedLayer(4, 3, p_dropout=0.0)
    SoftmaxLayer(4, 3, p_dropout=0.999)


@pytest.mark.parametrize("mbs", [0, -1, 2.5, "10", None])
def test_bad_mini_batch_size(mbs):
    raises(["mini_batch_size", re.escape(repr(mbs))], Network,
           [FullyConnectedLayer(4, 3), SoftmaxLayer(3, 2)], mbs)


def test_softmax_must_be_last_and_only_last():
    raises([r"layer 0\b", "last"], Network,
           [SoftmaxLayer(4, 4), FullyConnectedLayer(4, 3)], MBS)
    raises(["last layer", "FullyConnectedLayer"], Network,
           [FullyConnectedLayer(4, 3)], MBS)
    raises(["empty"], Network, [], MBS)


def test_mixed_floatx_refused():
    fastnet.set_floatx("float64")
    try:
        first = FullyConnectedLayer(4, 3)
    finally:
        fastnet.set_floatx("float32")
    raises([r"layer 1\b", "float32", "float64"], Network,
           [first, SoftmaxLayer(3, 2)], MBS, engine="reference")


def test_sgd_mini_batch_size_must_match_network():
    net = fc_net()
    d = data()
    raises([r"\b5\b", r"\b10\b"], net.SGD, d, 1, 5, 0.1, d, d)


# ---------------------------------------------------------------------------
# 2. data checks
# ---------------------------------------------------------------------------
def sgd(net, train, epochs=1, eta=0.1, valid=None, test=None, **kw):
    d = data()
    return net.SGD(train, epochs, MBS, eta, valid if valid is not None else d,
                   test if test is not None else d, **kw)


@pytest.fixture
def net_and_weights():
    net = fc_net()
    return net, weights(net)


def test_x_not_2d(net_and_weights):
    net, before = net_and_weights
    x, y = data()
    raises(["training_data", "2-D", r"\(100, 4, 5, 2\)"], sgd, net,
           (x.reshape(100, 4, 5)[..., None].repeat(2, axis=3), y))
    raises(["training_data", "2-D"], sgd, net, (x.ravel(), y))
    assert_bitwise(weights(net), before)        # a refused call changes nothing


def test_x_wrong_width(net_and_weights):
    net, before = net_and_weights
    x, y = data(n_in=19)
    raises(["training_data", r"\b19\b", r"\b20\b"], sgd, net, (x, y))
    raises(["validation_data", r"\b19\b", r"\b20\b"], sgd, net, data(), valid=(x, y))
    assert_bitwise(weights(net), before)


def test_x_y_length_mismatch(net_and_weights):
    net, _ = net_and_weights
    x, y = data()
    raises(["training_data", r"\b100\b", r"\b99\b"], sgd, net, (x, y[:99]))
    raises(["test_data", r"\b100\b", r"\b101\b"], sgd, net, data(),
           test=(x, np.append(y, 0)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["training_data", "validation_data", "test_data"])
def test_non_finite_x_names_first_bad_row(net_and_weights, bad, which):
    net, before = net_and_weights
    x, y = data()
    x[37, 3] = bad
    x[80, 0] = bad
    kw = {"training_data": {}, "validation_data": {"valid": (x, y)},
          "test_data": {"test": (x, y)}}[which]
    train = (x, y) if which == "training_data" else data()
    raises([which, r"row 37\b", "NaN or Inf"], sgd, net, train, **kw)
    assert_bitwise(weights(net), before)


@pytest.mark.parametrize("label,index", [(3, 42), (-1, 7), (1000, 0), (99, 99)])
def test_labels_outside_range_name_index_and_value(net_and_weights, label, index):
    net, before = net_and_weights
    x, y = data()
    y[index] = label
    y[index + 1 if index < 99 else 0] = 17          # a later/other bad one
    first = min(index, index + 1 if index < 99 else 0)
    value = y[first]
    raises([r"label %d\b" % first, r"is %d\b" % value, r"\[0, 3\)"], sgd, net, (x, y))
    assert_bitwise(weights(net), before)


def test_fractional_or_nan_labels(net_and_weights):
    net, _ = net_and_weights
    x, y = data()
    yf = y.astype(np.float32)
    sgd(net, (x, yf))                               # whole floats: network3's habit
    yf[12] = 1.5
    raises([r"label 12\b", "1.5"], sgd, net, (x, yf))
    yf[5] = np.nan
    raises([r"label 5\b"], sgd, net, (x, yf))


@pytest.mark.parametrize("n", [0, 1, MBS - 1])
def test_no_complete_mini_batch(net_and_weights, n):
    net, _ = net_and_weights
    x, y = data()
    raises(["training_data", r"\b%d rows\b" % n, r"\b%d\b" % MBS], sgd, net, (x[:n], y[:n]))
    raises(["validation_data", r"\b%d rows\b" % n], sgd, net, (x, y), valid=(x[:n], y[:n]))


@pytest.mark.parametrize("eta", [0, -0.1, float("nan"), float("inf"), "fast", None])
def test_bad_eta(net_and_weights, eta):
    net, before = net_and_weights
    raises(["eta", re.escape(repr(eta)) if eta != 0 else r"\b0\b"], sgd, net, data(), eta=eta)
    assert_bitwise(weights(net), before)


@pytest.mark.parametrize("epochs", [0, -3, 1.5, "2", None])
def test_bad_epochs(net_and_weights, epochs):
    net, _ = net_and_weights
    raises(["epochs", re.escape(repr(epochs))], sgd, net, data(), epochs=epochs)


@pytest.mark.parametrize("lmbda", [-1.0, float("nan"), "x"])
def test_bad_lmbda(net_and_weights, lmbda):
    net, _ = net_and_weights
    raises(["lmbda"], sgd, net, data(), lmbda=lmbda)


def test_data_not_a_pair(net_and_weights):
    net, _ = net_and_weights
    x, y = data()
    raises(["training_data", "pair"], sgd, net, x)
    raises(["training_data", "pair"], sgd, net, (x, y, y))


def test_float64_beyond_float32_range_named(net_and_weights):
    """1e39 is finite in float64 but Inf once converted to the net's float32:
    the check runs on the converted values."""
    net, before = net_and_weights
    x, y = data()
    x64 = x.astype(np.float64)
    x64[12, 3] = 1e39
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # and no overflow warning leaks
        raises(["training_data", r"row 12\b", "float32"], sgd, net, (x64, y))
    assert_bitwise(weights(net), before)


@pytest.mark.parametrize("x,y", [
    (None, "y"), ("abc", "y"), ([[1.0, 2.0], [3.0]], "y"), ("complex", "y"),
    ("object", "y"), ("x", None), ("x", "strings"), ("x", "2d"), ("x", [[1, 2], [3]]),
], ids=["x-None", "x-str", "x-ragged", "x-complex", "x-object", "y-None", "y-str",
        "y-2d", "y-ragged"])
def test_strange_data_is_a_value_error(net_and_weights, x, y):
    net, before = net_and_weights
    gx, gy = data()
    x = {"x": gx, "complex": gx.astype(np.complex64),
         "object": gx.astype(object)}.get(x, x) if isinstance(x, str) else x
    y = {"y": gy, "strings": gy.astype(str),
         "2d": np.stack([gy, gy], axis=1)}.get(y, y) if isinstance(y, str) else y
    raises(["training_data"], sgd, net, (x, y))
    assert_bitwise(weights(net), before)


def test_float64_and_non_contiguous_x_accepted_and_equal():
    x, y = data()
    net = fc_net()
    sgd(net, (x, y), epochs=2)
    expected = weights(net)
    wide = np.zeros((100, 40), np.float64)
    wide[:, ::2] = x
    variants = {
        "float64": (x.astype(np.float64), y),
        "strided": (wide[:, ::2], y),                       # non-contiguous float64
        "fortran": (np.asfortranarray(x), y),
        "reversed rows": (x[::-1][::-1], y[::-1][::-1]),
        "int64 labels as int8": (x, y.astype(np.int8)),
        "shared": (fastnet.Shared(x), fastnet.Shared(y.astype(np.int32))),
        "images": (x.reshape(100, 1, 4, 5), y),             # flattened per row
    }
    for name, d in variants.items():
        net = fc_net()
        sgd(net, d, epochs=2)
        assert_bitwise(weights(net), expected)


def test_partial_last_batch_warns_once(monkeypatch):
    monkeypatch.setattr(Network, "_warned_partial", False)
    x, y = data(n=105)
    net = fc_net()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sgd(net, (x, y), epochs=3)
        sgd(net, (x, y), epochs=1)
    mine = [w for w in caught if "mini_batch_size" in str(w.message)]
    assert len(mine) == 1, [str(w.message) for w in caught]
    msg = str(mine[0].message)
    assert re.search(r"\b105\b", msg) and re.search(r"\b5\b", msg), msg
    # and the 5 rows are dropped: the same weights as without them
    net2 = fc_net()
    sgd(net2, (x[:100], y[:100]), epochs=3)
    sgd(net2, (x[:100], y[:100]), epochs=1)
    assert_bitwise(weights(net), weights(net2))


def test_inference_calls_check_their_data(net_and_weights):
    net, _ = net_and_weights
    x, y = data()
    bad = x.copy()
    bad[4, 2] = np.nan
    raises([r"row 4\b"], net.predict, bad)
    raises([r"row 4\b"], net.output, bad)
    raises([r"row 4\b"], net.accuracy, (bad, y))
    raises([r"\b19\b", r"\b20\b"], net.predict, x[:, :19])
    yb = y.copy()
    yb[3] = 9
    raises([r"label 3\b", r"is 9\b"], net.accuracy, (x, yb))
    raises([r"\b5 rows\b"], net.accuracy, (x[:5], y[:5]))
    assert net.predict(x[:3]).shape == (3,)          # inference pads; any row count


# ---------------------------------------------------------------------------
# 3. divergence
# ---------------------------------------------------------------------------
def test_huge_eta_diverges_cleanly(engine):
    net = conv_net(engine)
    x, y = data(n=60, n_in=64)
    before = weights(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(FloatingPointError) as info:
            net.SGD((x, y), 3, MBS, 1e30, (x, y), (x, y))
    msg = str(info.value)
    assert "diverged" in msg and "smaller eta" in msg, msg
    after = weights(net)
    assert all(np.isfinite(a).all() for a in after)
    assert_bitwise(after, before)       # epoch 0 diverged: the start is the last good


def _inject_nan_at_epoch(monkeypatch, net, n_batches, bad_epoch, calls):
    """A fault: a weight becomes NaN inside epoch ``bad_epoch``'s first chunk."""
    real = net._train_batches

    def train_batches(x_e, y_e, first, stop, hyper):
        epoch = net.step_count // n_batches
        cost = real(x_e, y_e, first, stop, hyper)
        calls.append((epoch, first, stop))
        if epoch == bad_epoch and first == 0:
            net.layers[1].w.value[0, 0] = np.nan
            net._params_to_engine(force=True)
        return cost
    monkeypatch.setattr(net, "_train_batches", train_batches)


def test_divergence_keeps_last_good_epoch(engine, monkeypatch):
    x, y = data(n=60, n_in=64)
    good = conv_net(engine)
    good.SGD((x, y), 2, MBS, 0.1, (x, y), (x, y))
    net = conv_net(engine)
    calls = []
    _inject_nan_at_epoch(monkeypatch, net, 6, 2, calls)
    with pytest.raises(FloatingPointError, match="diverged.*smaller eta"):
        net.SGD((x, y), 5, MBS, 0.1, (x, y), (x, y))
    assert_bitwise(weights(net), weights(good))      # the end of epoch 1, bit for bit
    assert max(c[0] for c in calls) == 2             # stopped in the bad epoch


def test_divergence_detected_within_the_epoch(monkeypatch):
    """A NaN is caught before the epoch ends: at most one more engine call
    (CHUNK mini-batches) runs on NaN weights."""
    monkeypatch.setattr(network_module, "CHUNK", 2)
    x, y = data(n=200, n_in=64)                     # 20 mini-batches: 10 chunks
    net = conv_net()
    calls = []
    _inject_nan_at_epoch(monkeypatch, net, 20, 0, calls)
    with pytest.raises(FloatingPointError):
        net.SGD((x, y), 2, MBS, 0.1, (x, y), (x, y))
    assert len(calls) <= 2, "training went on for %d chunks on NaN weights" % len(calls)


def test_divergence_with_checkpoint_keeps_good_checkpoint(tmp_path, monkeypatch):
    x, y = data(n=60, n_in=64)
    ck = str(tmp_path / "ck.npz")
    net = conv_net()
    calls = []
    _inject_nan_at_epoch(monkeypatch, net, 6, 1, calls)
    with pytest.raises(FloatingPointError):
        net.SGD((x, y), 3, MBS, 0.1, (x, y), (x, y), checkpoint=ck)
    meta, arrays = persist.read_file(ck, persist.CHECKPOINT_FORMAT)
    assert meta["state"]["epoch"] == 1
    assert all(np.isfinite(a).all() for k, a in arrays.items() if k.startswith("param_"))


# ---------------------------------------------------------------------------
# 4. determinism
# ---------------------------------------------------------------------------
def test_same_seed_bitwise_equal(engine):
    x, y = data(n=60, n_in=64)
    runs = []
    for _ in range(2):
        net = conv_net(engine, seed=5)
        net.SGD((x, y), 2, MBS, 0.1, (x, y), (x, y), lmbda=0.1)
        runs.append(weights(net))
    assert_bitwise(runs[0], runs[1])
    # the test can fail: another seed, the same initial weights, other masks
    other = conv_net(engine, seed=6)
    for a, b in zip(other.params, conv_net(engine, seed=5).params):
        a.set_value(b.get_value())
    other.SGD((x, y), 2, MBS, 0.1, (x, y), (x, y), lmbda=0.1)
    assert any(a.tobytes() != b.tobytes() for a, b in zip(weights(other), runs[0]))


def test_network_does_not_draw_from_global_rng():
    """network3's init order is kept: Network() reads the global RNG's state
    for the dropout seed but draws nothing from it."""
    np.random.seed(3)
    layers = [FullyConnectedLayer(4, 3, p_dropout=0.5), SoftmaxLayer(3, 2, p_dropout=0.5)]
    state = np.random.get_state()
    Network(layers, MBS, engine="reference")
    after = np.random.get_state()
    assert after[2] == state[2] and np.array_equal(after[1], state[1])


# ---------------------------------------------------------------------------
# 5. checkpoints
# ---------------------------------------------------------------------------
def _ck_args(epochs=3, eta=0.1, n=60):
    x, y = data(n=n, n_in=64)
    v = data(n=30, n_in=64, seed=2)
    return (x, y), epochs, MBS, eta, v, v


def sgd_ck(net, ck, epochs=3, eta=0.1, n=60):
    return net.SGD(*_ck_args(epochs, eta, n), lmbda=0.1, checkpoint=ck)


def no_temp_files(directory):
    return [f for f in os.listdir(directory) if ".tmp" in f]


def test_checkpoint_written_and_finished_run_is_a_no_op(engine, tmp_path):
    ck = str(tmp_path / "ck.npz")
    plain = conv_net(engine)
    h0 = plain.SGD(*_ck_args(), lmbda=0.1)
    net = conv_net(engine)
    h1 = sgd_ck(net, ck)
    assert_bitwise(weights(net), weights(plain))     # checkpointing changes nothing
    assert h1.best_validation_accuracy == h0.best_validation_accuracy
    assert os.path.exists(ck) and not no_temp_files(str(tmp_path))
    again = conv_net(engine)
    h2 = sgd_ck(again, ck)                           # the same command once more
    assert_bitwise(weights(again), weights(plain))
    assert h2.best_validation_accuracy == h1.best_validation_accuracy
    assert h2.best_iteration == h1.best_iteration
    assert h2.test_accuracy == h1.test_accuracy


def test_ctrl_c_mid_epoch_saves_and_resumes_bitwise(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(network_module, "CHUNK", 2)
    ck = str(tmp_path / "ck.npz")
    plain = conv_net(engine)
    plain.SGD(*_ck_args(), lmbda=0.1)

    net = conv_net(engine)
    real = net._train_batches
    calls = []

    def train_batches(x_e, y_e, first, stop, hyper):
        cost = real(x_e, y_e, first, stop, hyper)
        calls.append((net.step_count, first, stop))
        if net.step_count == 6 + 2:                  # epoch 1, after its first chunk
            os.kill(os.getpid(), signal.SIGINT)      # a real Ctrl-C
        return cost
    monkeypatch.setattr(net, "_train_batches", train_batches)
    with pytest.raises(KeyboardInterrupt) as info:
        sgd_ck(net, ck)
    assert ck in str(info.value)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert calls[-1] == (8, 0, 2)                    # stopped at the next boundary
    meta, _ = persist.read_file(ck, persist.CHECKPOINT_FORMAT)
    assert (meta["state"]["epoch"], meta["state"]["minibatch_index"]) == (1, 2)
    assert_bitwise(weights(net), [a for a in _ck_params(ck)])   # saved what it had
    assert not no_temp_files(str(tmp_path))

    resumed = conv_net(engine)
    h = sgd_ck(resumed, ck)
    assert_bitwise(weights(resumed), weights(plain))
    assert [e["epoch"] for e in h.epochs] == [0, 1, 2]


def test_ctrl_c_twice_stops_at_once(tmp_path, monkeypatch):
    """A second Ctrl-C does not wait for the mini-batch boundary (a user
    who presses it twice wants out); the checkpoint file stays whole."""
    monkeypatch.setattr(network_module, "CHUNK", 2)
    ck = str(tmp_path / "ck.npz")
    net = conv_net()
    real = net._train_batches
    calls = []

    def train_batches(*args):
        real(*args)
        calls.append(net.step_count)
        if net.step_count == 8:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            calls.append("not reached")
    monkeypatch.setattr(net, "_train_batches", train_batches)
    with pytest.raises(KeyboardInterrupt):
        sgd_ck(net, ck)
    assert calls[-1] == 8, calls
    meta, _ = persist.read_file(ck, persist.CHECKPOINT_FORMAT)
    assert meta["state"]["epoch"] == 1 and meta["state"]["minibatch_index"] == 0
    assert not no_temp_files(str(tmp_path))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_last_evaluation_is_not_swallowed(tmp_path, monkeypatch):
    """Ctrl-C after the last mini-batch (while the last epoch is evaluated):
    training is complete and saved, and KeyboardInterrupt still reaches the
    user's script."""
    ck = str(tmp_path / "ck.npz")
    plain = conv_net()
    plain.SGD(*_ck_args(), lmbda=0.1)
    net = conv_net()
    real = net._batch_accuracies
    sent = []

    def batch_accuracies(*args):
        if net.step_count == 3 * 6 and not sent:       # once, in the last validation
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args)
    monkeypatch.setattr(net, "_batch_accuracies", batch_accuracies)
    with pytest.raises(KeyboardInterrupt):
        sgd_ck(net, ck)
    assert_bitwise(weights(net), weights(plain))
    meta, _ = persist.read_file(ck, persist.CHECKPOINT_FORMAT)
    assert meta["state"]["epoch"] == 3
    again = conv_net()
    sgd_ck(again, ck)                                   # finished: a no-op
    assert_bitwise(weights(again), weights(plain))


def test_ctrl_c_on_diverged_weights_keeps_last_good(tmp_path, monkeypatch):
    """NaN weights and a Ctrl-C in the same chunk: the NaN state is never
    saved, the network and the checkpoint keep the last good epoch."""
    monkeypatch.setattr(network_module, "CHUNK", 2)
    ck = str(tmp_path / "ck.npz")
    good = conv_net()
    good.SGD(*_ck_args(epochs=1), lmbda=0.1)
    net = conv_net()
    real = net._train_batches

    def train_batches(*args):
        real(*args)
        if net.step_count == 8:
            net.layers[2].w.value[1, 1] = np.nan
            net._params_to_engine()
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(net, "_train_batches", train_batches)
    with pytest.raises(FloatingPointError, match="diverged"):
        sgd_ck(net, ck)
    assert_bitwise(weights(net), weights(good))
    assert_bitwise(_ck_params(ck), weights(good))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _ck_params(path):
    _, arrays = persist.read_file(path, persist.CHECKPOINT_FORMAT)
    return [arrays["param_%d" % i] for i in range(sum(k.startswith("param_") for k in arrays))]


def test_ctrl_c_without_checkpoint_is_plain_keyboard_interrupt(monkeypatch):
    net = conv_net()
    real = net._train_batches

    def train_batches(*args):
        real(*args)
        raise KeyboardInterrupt
    monkeypatch.setattr(net, "_train_batches", train_batches)
    with pytest.raises(KeyboardInterrupt):
        net.SGD(*_ck_args())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_checkpoint_of_another_network_or_call_refused(tmp_path):
    ck = str(tmp_path / "ck.npz")
    net = conv_net()
    sgd_ck(net, ck, epochs=1)
    saved = open(ck, "rb").read()

    def refused(net, match, **kw):
        before = weights(net)
        with pytest.raises(ValueError, match=match) as info:
            sgd_ck(net, ck, **kw)
        assert ck in str(info.value)
        assert_bitwise(weights(net), before)          # nothing mixed in
        assert open(ck, "rb").read() == saved         # nor overwritten

    refused(fc_net(n_in=64), "different network")
    np.random.seed(0)
    other = Network([ConvPoolLayer((4, 1, 3, 3), (MBS, 1, 8, 8), activation_fn=ReLU),
                     FullyConnectedLayer(36, 12, p_dropout=0.3),
                     SoftmaxLayer(12, 3, p_dropout=0.2)], MBS, engine="reference")
    refused(other, "different network")
    refused(conv_net(), "different SGD call", eta=0.2)
    refused(conv_net(), "different SGD call", epochs=4)
    refused(conv_net(), "different SGD call", n=70)
    fastnet.set_floatx("float64")
    try:
        f64 = conv_net()
    finally:
        fastnet.set_floatx("float32")
    refused(f64, "different network")


def _ck_data(n=60):
    """Training, validation and test data of the checkpoint tests, as three
    separate (x, y) pairs that can be changed one at a time."""
    (x, y), _, _, _, v, _ = _ck_args(n=n)
    t = data(n=30, n_in=64, seed=3)
    return [(x.copy(), y.copy()), (v[0].copy(), v[1].copy()), (t[0].copy(), t[1].copy())]


def sgd_data(net, ck, d, epochs=3):
    return net.SGD(d[0], epochs, MBS, 0.1, d[1], d[2], lmbda=0.1, checkpoint=ck)


def _changed(which, how):
    d = _ck_data()
    x, y = d[which]
    if how == "other":            # other data of the same shape
        x[:] = data(n=len(x), n_in=64, seed=40 + which)[0]
    elif how == "element":        # a single element of x
        x[17 % len(x), 5] += 0.25
    elif how == "label":          # a single label
        y[3] = (y[3] + 1) % 3
    return d


@pytest.mark.parametrize("which, how", [
    (0, "other"), (0, "element"), (0, "label"),
    (1, "other"), (1, "element"), (1, "label"),
    (2, "other"), (2, "element"), (2, "label")])
def test_checkpoint_of_other_data_refused(tmp_path, which, how):
    """Resuming with data of the same size but other contents -- even one
    element or one label -- is a ValueError naming the path and the data;
    the network and the file are untouched; a fresh path starts afresh."""
    ck = str(tmp_path / "ck.npz")
    sgd_data(conv_net(), ck, _ck_data())
    saved = open(ck, "rb").read()
    d = _changed(which, how)
    net = conv_net()
    before = weights(net)
    name = persist.DATASETS[which]
    msg = raises([re.escape(ck), "different %s" % name.replace("_", " "), name,
                  "delete the file or use another checkpoint path"],
                 sgd_data, net, ck, d)
    assert "training data" not in msg or which == 0, msg
    assert_bitwise(weights(net), before)
    assert open(ck, "rb").read() == saved
    # the way out the message names: another path trains from scratch
    fresh, plain = conv_net(), conv_net()
    sgd_data(fresh, str(tmp_path / "other.npz"), d)
    plain.SGD(d[0], 3, MBS, 0.1, d[1], d[2], lmbda=0.1)
    assert_bitwise(weights(fresh), weights(plain))


def test_checkpoint_same_data_other_arrays_resumes(tmp_path):
    """The fingerprint is of the data as trained on: equal copies, float64
    or non-contiguous input with the same values, and network3-style
    float labels resume as the same data."""
    ck = str(tmp_path / "ck.npz")
    plain = conv_net()
    sgd_data(plain, ck, _ck_data())
    meta, _ = persist.read_file(ck, persist.CHECKPOINT_FORMAT)
    assert meta["version"] == persist.CHECKPOINT_VERSION
    assert sorted(meta["data"]) == sorted(persist.DATASETS)
    d = _ck_data()
    x, y = d[0]
    wide = np.zeros((len(x), 128), np.float64)
    wide[:, ::2] = x
    d[0] = (wide[:, ::2], y.astype(np.float32))
    again = conv_net()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sgd_data(again, ck, d)
    assert_bitwise(weights(again), weights(plain))


def test_data_fingerprint():
    x, y = data(n=50, n_in=64)
    f = persist.fingerprint(x, y)
    assert f == persist.fingerprint(x.copy(), y.copy()) and len(f) == 32
    assert f != persist.fingerprint(x.reshape(25, 128), y)           # shape counts
    assert f != persist.fingerprint(x, y.astype(np.int32))           # dtype counts
    assert f != persist.fingerprint(y, x)                            # order counts
    z = x.copy()
    z[49, 63] = np.nextafter(z[49, 63], np.float32(2))               # one ulp
    assert f != persist.fingerprint(z, y)
    fps = persist.data_fingerprints((x, y), (x, y), (z, y))
    assert fps == {"training_data": f, "validation_data": f,
                   "test_data": persist.fingerprint(z, y)}


def _to_version_1(ck):
    """The checkpoint as the previous fastnet wrote it: version 1, no data
    fingerprints."""
    meta, arrays = persist.read_file(ck, persist.CHECKPOINT_FORMAT)
    del meta["data"]
    meta["version"] = 1
    arrays.pop("meta_json")
    np.savez(ck, meta_json=np.array(json.dumps(meta)), **arrays)


def test_version_1_checkpoint_resumes_with_warning_and_is_upgraded(tmp_path, monkeypatch):
    """A checkpoint written before fingerprints resumes (a run in progress
    survives the upgrade), with a warning that its data cannot be checked;
    the next save writes the fingerprints."""
    ck = str(tmp_path / "ck.npz")
    plain = conv_net()
    plain.SGD(*_ck_args(), lmbda=0.1)
    net = conv_net()
    real = net._train_batches

    def train_batches(*args):
        if net.step_count >= 6:                      # epoch 1: after one checkpoint
            raise RuntimeError("stop")
        real(*args)
    monkeypatch.setattr(net, "_train_batches", train_batches)
    with pytest.raises(RuntimeError, match="stop"):
        sgd_ck(net, ck)
    _to_version_1(ck)
    resumed = conv_net()
    with pytest.warns(UserWarning, match="without a fingerprint") as record:
        h = sgd_ck(resumed, ck)
    assert ck in str(record[0].message)
    assert record[0].filename == __file__            # points at the SGD call
    assert_bitwise(weights(resumed), weights(plain))
    assert [e["epoch"] for e in h.epochs] == [0, 1, 2]
    meta, _ = persist.read_file(ck, persist.CHECKPOINT_FORMAT)
    assert meta["version"] == persist.CHECKPOINT_VERSION and "data" in meta


@pytest.mark.parametrize("version", [0, 3, "2", 2.0, True, None])
def test_unknown_checkpoint_version_refused(tmp_path, version):
    ck = str(tmp_path / "ck.npz")
    sgd_ck(conv_net(), ck, epochs=1)
    meta, arrays = persist.read_file(ck, persist.CHECKPOINT_FORMAT)
    meta["version"] = version
    arrays.pop("meta_json")
    np.savez(ck, meta_json=np.array(json.dumps(meta)), **arrays)
    raises([re.escape(ck), "version"], sgd_ck, conv_net(), ck, epochs=1)


@pytest.mark.parametrize("fingerprints", [
    "missing", None, {}, "abc", {"training_data": "0" * 32},
    {"training_data": 5, "validation_data": "0" * 32, "test_data": "0" * 32},
    {"training_data": "0" * 31, "validation_data": "0" * 32, "test_data": "0" * 32}])
def test_corrupt_data_fingerprints_refused(tmp_path, fingerprints):
    ck = str(tmp_path / "ck.npz")
    sgd_ck(conv_net(), ck, epochs=1)
    meta, arrays = persist.read_file(ck, persist.CHECKPOINT_FORMAT)
    if fingerprints == "missing":
        del meta["data"]
    else:
        meta["data"] = fingerprints
    arrays.pop("meta_json")
    np.savez(ck, meta_json=np.array(json.dumps(meta)), **arrays)
    net = conv_net()
    before = weights(net)
    raises([re.escape(ck), "corrupt"], sgd_ck, net, ck, epochs=1)
    assert_bitwise(weights(net), before)


def test_data_fingerprinted_once_per_sgd_call(tmp_path, monkeypatch):
    """Hashing costs a pass over the data: once per SGD call, however many
    checkpoints are written (and not at all without a checkpoint)."""
    calls = []
    real = persist.fingerprint

    def fingerprint(*arrays):
        calls.append(1)
        return real(*arrays)
    monkeypatch.setattr(persist, "fingerprint", fingerprint)
    conv_net().SGD(*_ck_args(), lmbda=0.1)
    assert calls == []
    sgd_ck(conv_net(), str(tmp_path / "ck.npz"), epochs=3)
    assert len(calls) == 2          # training + (validation is test): one each


def test_corrupt_checkpoint_refused_with_path(tmp_path):
    ck = str(tmp_path / "ck.npz")
    net = conv_net()
    sgd_ck(net, ck, epochs=1)
    blob = open(ck, "rb").read()
    for name, content in [("truncated", blob[:len(blob) // 2]), ("empty", b""),
                          ("garbage", os.urandom(len(blob)))]:
        with open(ck, "wb") as f:
            f.write(content)
        fresh = conv_net()
        before = weights(fresh)
        with pytest.raises((ValueError, EOFError, OSError)) as info:
            sgd_ck(fresh, ck, epochs=1)
        assert ck in str(info.value), name
        assert_bitwise(weights(fresh), before)


def test_failed_write_keeps_old_checkpoint(engine, tmp_path, monkeypatch):
    """A fault in the middle of writing (disk full, say) at the end of epoch 1:
    the old checkpoint stays whole and loadable, no temporary file is left,
    and the same command afterwards ends bitwise equal to a clean run."""
    ck = str(tmp_path / "ck.npz")
    plain = conv_net(engine)
    plain.SGD(*_ck_args(), lmbda=0.1)
    real = np.savez

    def savez(f, **arrays):
        if json.loads(str(arrays["meta_json"]))["state"]["epoch"] != 2:
            return real(f, **arrays)
        f.write(b"PK\x03\x04 half a file")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(persist.np, "savez", savez)
    net = conv_net(engine)
    with pytest.raises(OSError, match="No space left"):
        sgd_ck(net, ck)
    monkeypatch.setattr(persist.np, "savez", real)
    assert not no_temp_files(str(tmp_path))
    meta, _ = persist.read_file(ck, persist.CHECKPOINT_FORMAT)
    assert meta["state"]["epoch"] == 1
    again = conv_net(engine)
    sgd_ck(again, ck)
    assert_bitwise(weights(again), weights(plain))


# ---- in a child process: SIGKILL, SIGINT, kill during the write ----------
def _env():
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastnet.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def _worker(engine, tmp, name, *extra):
    workdir = os.path.join(tmp, name)
    os.makedirs(workdir, exist_ok=True)
    cmd = [sys.executable, WORKER, engine, os.path.join(workdir, "ck.npz"),
           os.path.join(workdir, "out.npz"), workdir] + list(extra)
    return workdir, cmd


def _start(cmd):
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_ready(proc, workdir, timeout=120):
    ready = os.path.join(workdir, "ready")
    t0 = time.time()
    while not os.path.exists(ready) or not open(ready).read():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail("worker ended before its hang point:\n%s\n%s" % (out, err))
        if time.time() - t0 > timeout:
            proc.kill()
            pytest.fail("worker did not reach its hang point in %d s" % timeout)
        time.sleep(0.02)


def _finish(cmd):
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def _out(workdir):
    with np.load(os.path.join(workdir, "out.npz")) as z:
        return [z["arr_%d" % i] for i in range(len(z.files))]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The never-interrupted run of the worker, per engine."""
    cache = {}

    def get(engine):
        if engine not in cache:
            tmp = str(tmp_path_factory.mktemp("plain-" + engine))
            workdir, cmd = _worker(engine, tmp, "plain")
            open(os.path.join(workdir, "ready"), "w").write("-")
            _finish(cmd)
            cache[engine] = _out(workdir)
        return cache[engine]
    return get


def test_sigkill_mid_epoch_then_restart_is_bitwise_equal(engine, tmp_path, uninterrupted):
    workdir, cmd = _worker(engine, str(tmp_path), "killed")
    ck = os.path.join(workdir, "ck.npz")
    proc = _start(cmd)
    _wait_ready(proc, workdir)
    # it is inside epoch 1, past a checkpoint written at the end of epoch 0
    meta, _ = persist.read_file(ck, persist.CHECKPOINT_FORMAT)
    assert (meta["state"]["epoch"], meta["state"]["minibatch_index"]) == (1, 0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(workdir, "out.npz"))
    done = _finish(cmd)                                # the same command
    assert "Training mini-batch number 0" not in done.stdout    # it resumed
    assert_bitwise(_out(workdir), uninterrupted(engine))
    assert not no_temp_files(workdir)


def test_sigint_mid_epoch_saves_then_restart_is_bitwise_equal(engine, tmp_path, uninterrupted):
    workdir, cmd = _worker(engine, str(tmp_path), "ctrl-c")
    ck = os.path.join(workdir, "ck.npz")
    proc = _start(cmd)
    _wait_ready(proc, workdir)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in (1, -signal.SIGINT, 128 + signal.SIGINT), err
    assert "KeyboardInterrupt" in err and "training state is saved" in err, err
    meta, _ = persist.read_file(ck, persist.CHECKPOINT_FORMAT)
    assert meta["state"]["epoch"] == 1 and meta["state"]["minibatch_index"] > 0
    _finish(cmd)
    assert_bitwise(_out(workdir), uninterrupted(engine))
    assert not no_temp_files(workdir)


def test_sigkill_while_writing_checkpoint_loses_nothing(tmp_path, uninterrupted):
    engine = "reference"
    workdir, cmd = _worker(engine, str(tmp_path), "in-write", "--hang-in-write")
    ck = os.path.join(workdir, "ck.npz")
    proc = _start(cmd)
    _wait_ready(proc, workdir)
    torn = [f for f in no_temp_files(workdir)]
    assert torn, "the worker should be stopped halfway through a temporary file"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    meta, _ = persist.read_file(ck, persist.CHECKPOINT_FORMAT)   # the old one, whole
    assert meta["state"]["epoch"] == 1
    _finish(cmd)
    assert_bitwise(_out(workdir), uninterrupted(engine))
    assert not no_temp_files(workdir), "a stale temporary file was left behind"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_first_nonfinite_row_across_blocks_and_overflowing_sums(dtype):
    """SGD's data check sums blocks of rows (no temporary as big as x): the
    first bad row is still found past the first block, Infs of both signs in
    one block are caught, and finite values whose sum overflows pass."""
    from fastnet.checks import first_nonfinite_row
    x = np.zeros((1000, 7), dtype)
    assert first_nonfinite_row(x) is None
    big = np.finfo(dtype).max
    x[300:310] = big                  # finite; the block's sum is Inf
    x[311] = -big
    assert first_nonfinite_row(x) is None
    x[700, 2], x[700, 5] = np.inf, -np.inf      # a block sum of NaN
    x[900, 0] = np.nan
    assert first_nonfinite_row(x) == 700
    assert first_nonfinite_row(x[701:]) == 199
    assert first_nonfinite_row(x, block_rows=1) == 700
    assert first_nonfinite_row(np.zeros((0, 7), dtype)) is None
