"""What a careless user does to a Network (issue: threads, fork, layers used
twice, numbers that vanish in float32, divergence), each with its contract:

* inference from many threads on one network is correct (the calls take
  turns on a per-network lock), also while another thread trains it;
  training one network from two threads at once is refused;
* a forked child process trains (on one thread) instead of hanging in
  OpenMP's thread pool;
* a layer object appears once in a network; layers shared between two
  networks share their parameters, as network3's shared variables do;
* eta and the L2 step are checked in the network's float type;
* divergence is one test on every engine (a non-finite parameter, or a
  training cost that is not finite or beyond DIVERGED_COST), and its
  message names the likely culprit.
"""

import contextlib
import io
import multiprocessing
import os
import threading

import numpy as np
import pytest

import fastnet
from fastnet import ConvPoolLayer, FullyConnectedLayer, Network, ReLU, SoftmaxLayer
from fastnet.network import DIVERGED_COST

MBS = 5


def _data(n, n_in=36, classes=4, seed=0):
    rs = np.random.RandomState(seed)
    x = rs.rand(n, n_in).astype(fastnet.get_floatx())
    y = (x[:, :classes].argmax(axis=1)).astype(np.int32)
    return x, y


def _conv_net(engine="cpu", seed=1):
    np.random.seed(seed)
    return Network([ConvPoolLayer((3, 1, 3, 3), (MBS, 1, 6, 6), activation_fn=ReLU),
                    FullyConnectedLayer(3 * 2 * 2, 8, activation_fn=ReLU),
                    SoftmaxLayer(8, 4)], MBS, engine=engine)


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _train(net, x, y, epochs=2, eta=0.5, **kw):
    return _quiet(net.SGD, (x, y), epochs, MBS, eta, (x[:10], y[:10]), (x[:10], y[:10]), **kw)


@pytest.mark.parametrize("engine", ["cpu", "reference"])
def test_inference_from_many_threads_is_correct(engine):
    net = _conv_net(engine)
    x, y = _data(200)
    _train(net, x, y)
    want = net.output(x)
    want_acc = net.accuracy((x, y))
    errors = []

    def worker(k):
        try:
            for _ in range(15):
                rows = slice(k * 7, k * 7 + 63)
                got = net.output(x[rows])
                if not np.array_equal(got, want[rows]):
                    errors.append("output differs in thread %d" % k)
                if net.accuracy((x, y)) != want_acc:
                    errors.append("accuracy differs in thread %d" % k)
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]


def test_inference_while_training_in_another_thread_does_not_change_training():
    """Predicting in a thread while SGD runs leaves the training exactly as
    without it (same weights, same reported accuracies)."""
    x, y = _data(400)
    quiet = _conv_net(seed=3)
    h0 = _train(quiet, x, y, epochs=3)
    busy = _conv_net(seed=3)
    stop = threading.Event()
    seen = []

    def predictor():
        while not stop.is_set():
            p = busy.output(x[:40])
            seen.append(bool(np.allclose(p.sum(axis=1), 1, atol=1e-5)))

    t = threading.Thread(target=predictor)
    t.start()
    try:
        h1 = _train(busy, x, y, epochs=3)
    finally:
        stop.set()
        t.join()
    assert seen and all(seen), "a prediction during training was not a distribution"
    assert [e["validation_accuracy"] for e in h1.epochs] == \
        [e["validation_accuracy"] for e in h0.epochs]
    for p, q in zip(busy.params, quiet.params):
        np.testing.assert_array_equal(p.get_value(), q.get_value())


def test_training_one_network_from_two_threads_is_refused():
    net = _conv_net()
    x, y = _data(20000)
    started = threading.Event()
    result = {}

    def first():
        started.set()
        try:
            _train(net, x, y, epochs=1, eta=0.01)
            result["first"] = "ok"
        except Exception as exc:  # noqa: BLE001
            result["first"] = repr(exc)

    t = threading.Thread(target=first)
    t.start()
    started.wait()
    # wait until the first call holds the network
    for _ in range(2000):
        if net._training_thread is not None:
            break
        threading.Event().wait(0.001)
    assert net._training_thread is not None, "the first SGD call never started"
    with pytest.raises(RuntimeError, match="already being trained"):
        _train(net, x[:100], y[:100], epochs=1)
    t.join()
    assert result["first"] == "ok"
    # and once it is done, the network trains again
    _train(net, x[:100], y[:100], epochs=1)


def test_two_networks_train_concurrently_as_alone():
    x, y = _data(300)
    alone = [_conv_net(seed=s) for s in (4, 5)]
    for net in alone:
        _train(net, x, y)
    pair = [_conv_net(seed=s) for s in (4, 5)]
    errors = []

    def run(net):
        try:
            _train(net, x, y)
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(n,)) for n in pair]
    with contextlib.redirect_stdout(io.StringIO()):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    for a, b in zip(alone, pair):
        for p, q in zip(a.params, b.params):
            np.testing.assert_array_equal(p.get_value(), q.get_value())


def _child_trains(queue):
    try:
        net = _conv_net(seed=9)
        x, y = _data(100)
        _train(net, x, y, epochs=1)
        queue.put(("ok", [p.get_value() for p in net.params]))
    except BaseException as exc:  # noqa: BLE001
        queue.put(("error", repr(exc)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_forked_child_trains_after_the_parent_did(cpu_threads):
    """libgomp's thread pool does not survive fork: a child that starts a
    parallel region with the parent's threads hangs.  fastnet's child runs
    its kernels on one thread instead, and trains the same weights."""
    cpu_threads.set_num_threads(2)
    x, y = _data(100)
    parent = _conv_net(seed=9)
    _train(parent, x, y, epochs=1)             # the pool now exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_trains, args=(queue,))
    child.start()
    child.join(120)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("the forked child hung in training")
    status, payload = queue.get(timeout=10)
    assert status == "ok", payload
    for p, q in zip(parent.params, payload):
        np.testing.assert_allclose(p.get_value(), q, rtol=1e-5, atol=1e-6)


def test_same_layer_twice_in_one_network_is_refused():
    np.random.seed(0)
    hidden = FullyConnectedLayer(6, 6)
    with pytest.raises(ValueError, match="layer 1 is the same object as layer 0"):
        Network([hidden, hidden, SoftmaxLayer(6, 2)], 2)


def test_layers_shared_by_two_networks_share_parameters():
    """network3 shares its Theano variables between networks built on the
    same layers; fastnet too, also at another mini-batch size."""
    np.random.seed(1)
    layers = [FullyConnectedLayer(36, 10), SoftmaxLayer(10, 4)]
    big = Network(layers, MBS)
    one = Network(layers, 1)
    x, y = _data(100)
    _train(big, x, y)
    np.testing.assert_allclose(one.output(x), big.output(x), rtol=1e-6)
    _quiet(one.SGD, (x[:20], y[:20]), 1, 1, 0.5, (x[:10], y[:10]), (x[:10], y[:10]))
    np.testing.assert_allclose(big.output(x), one.output(x), rtol=1e-6)
    for p in big.params:
        assert p is one.params[big.params.index(p)]


def test_eta_that_is_zero_in_float32_is_refused():
    net = _conv_net()
    x, y = _data(20)
    before = [p.get_value() for p in net.params]
    with pytest.raises(ValueError, match=r"eta is 1e-46, which is 0 in float32"):
        _train(net, x, y, eta=1e-46)
    for p, v in zip(net.params, before):
        np.testing.assert_array_equal(p.get_value(), v)


def test_l2_step_not_finite_in_float32_is_refused():
    net = _conv_net()
    x, y = _data(20)                       # 4 mini-batches: l2 = lmbda / 4
    with pytest.raises(ValueError, match="not finite in float32"):
        _train(net, x, y, lmbda=1e40)


@pytest.mark.parametrize("lmbda", [1e6, 1e39])
def test_huge_lmbda_divergence_names_the_l2_term(lmbda):
    net = _conv_net()
    x, y = _data(50)
    with pytest.raises(FloatingPointError, match="L2 term is the likely culprit"):
        _train(net, x, y, eta=0.5, lmbda=lmbda)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference engine computes on the huge numbers
@pytest.mark.parametrize("engine", ["cpu", "reference"])
def test_divergence_is_the_same_test_on_every_engine(engine):
    """ReLU net, inputs scaled by 1e3, eta 1e6: the weights stay finite but
    the cost explodes -- every engine stops with the same message, keeping
    the last good epoch's weights."""
    np.random.seed(2)
    net = Network([FullyConnectedLayer(36, 20, activation_fn=ReLU),
                   SoftmaxLayer(20, 4)], MBS, engine=engine)
    x, y = _data(100)
    x = x * 1e3
    before = [p.get_value() for p in net.params]
    with pytest.raises(FloatingPointError, match="training diverged .*(cost|NaN or Inf)"):
        _train(net, x, y, eta=1e6)
    for p, v in zip(net.params, before):
        np.testing.assert_array_equal(p.get_value(), v)
    assert DIVERGED_COST > 100


def test_output_layer_must_be_an_integer():
    net = _conv_net()
    x, _ = _data(5)
    for bad in (1.5, "1", None, True):
        with pytest.raises(ValueError, match="layer must be an integer"):
            net.output(x, layer=bad)
    assert net.output(x, layer=np.int64(1)).shape == (5, 8)


def test_summary_counts_parameters():
    np.random.seed(0)
    net = Network([FullyConnectedLayer(784, 16), FullyConnectedLayer(16, 16),
                   SoftmaxLayer(16, 10)], 10)
    lines = []
    assert net.summary(print_fn=lines.append) == 13002
    text = "\n".join(lines)
    assert "Total params: 13,002" in text and "(None, 16)" in text and "12,560" in text


def test_shuffle_is_seeded_resumable_and_off_by_default(tmp_path):
    x, y = _data(200)
    a, b = _conv_net(seed=3), _conv_net(seed=3)
    _train(a, x, y, epochs=2, shuffle=True)
    _train(b, x, y, epochs=2, shuffle=True)
    for p, q in zip(a.params, b.params):               # same seed, same orders
        np.testing.assert_array_equal(p.get_value(), q.get_value())
    plain = _conv_net(seed=3)
    _train(plain, x, y, epochs=2)
    assert any(not np.array_equal(p.get_value(), q.get_value())
               for p, q in zip(a.params, plain.params)), "shuffle changed nothing"
    c = _conv_net(seed=3)
    _train(c, x, y, epochs=2, shuffle=7)
    assert any(not np.array_equal(p.get_value(), q.get_value())
               for p, q in zip(a.params, c.params)), "another seed gave the same orders"
    with pytest.raises(ValueError, match="shuffle must be"):
        _train(_conv_net(), x, y, shuffle=-1)
    # a checkpointed shuffled run, stopped after epoch 1 and resumed, is bitwise the same
    whole = _conv_net(seed=3)
    _train(whole, x, y, epochs=3, shuffle=True)
    part = _conv_net(seed=3)
    ck2 = str(tmp_path / "s2.npz")
    real = part._batch_accuracies
    calls = []

    def die(*args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(*args)
    part._batch_accuracies = die
    with pytest.raises(RuntimeError):
        _train(part, x, y, epochs=3, shuffle=True, checkpoint=ck2)
    resumed = _conv_net(seed=3)
    _train(resumed, x, y, epochs=3, shuffle=True, checkpoint=ck2)
    for p, q in zip(whole.params, resumed.params):
        np.testing.assert_array_equal(p.get_value(), q.get_value())


def test_dense_output_network_saves_loads_and_checks_targets(tmp_path):
    from fastnet import DenseOutputLayer
    np.random.seed(4)
    net = Network([FullyConnectedLayer(36, 8), DenseOutputLayer(8, 2, loss="binary_crossentropy")],
                  MBS)
    x, _ = _data(40)
    t = (x[:, :2] > 0.5).astype(x.dtype)
    _train(net, x, t, epochs=2)
    path = str(tmp_path / "n.npz")
    net.save(path)
    back = fastnet.load(path)
    np.testing.assert_array_equal(back.output(x), net.output(x))
    assert repr(back.layers[-1]) == repr(net.layers[-1])
    with pytest.raises(ValueError, match=r"targets must be in \[0, 1\]"):
        _train(net, x, t * 2, epochs=1)
    with pytest.raises(ValueError, match=r"shape \(rows, 2\)"):
        _train(net, x, t[:, :1], epochs=1)
    with pytest.raises(ValueError, match="binary_crossentropy needs activation_fn=sigmoid"):
        DenseOutputLayer(3, 1, activation_fn=fastnet.tanh, loss="binary_crossentropy")
    with pytest.raises(ValueError, match="loss must be one of"):
        DenseOutputLayer(3, 1, loss="hinge")
