"""network3's public surface, as the book's chapter 6 uses it, through ``import network3``.

* The chapter's interactive sessions, verbatim except for the number of epochs
  (1 instead of 60 / 40) and the data: a few hundred real MNIST digits written
  to ``../data/mnist.pkl.gz`` in the book's own format (a Python 2 cPickle,
  protocol 2) and ``../data/mnist_expanded.pkl.gz`` as the book's
  expand_mnist.py writes it, so ``network3.load_data_shared()`` runs with its
  default path.  network3's floatX: float32.
* Theano's shared-variable manners: ``w.get_value()/set_value()/eval()``,
  ``net.params``, ``size(data)``, ``training_data[0].get_value(borrow=True)``.
* Construction errors are ValueErrors that name the layer and both numbers.
* ``SGD`` takes plain NumPy pairs, float64 and non-contiguous inputs; it
  refuses ``epochs=0`` and data smaller than one mini-batch.
* Dropout: the same ``np.random.seed`` gives the same trained weights; the
  initial weights are still network3's draws, and neither building a network
  nor training it draws from NumPy's global RNG (network3's did not).
"""

import re
import textwrap

import numpy as np
import pytest

import conformance_util as cu
import fastnet

ENGINES = cu.engine_names()


@pytest.fixture(autouse=True)
def _network3_floatx():
    """network3's listing runs in float32 (its GPU flag); restore afterwards."""
    with cu.floatx("float32"):
        yield


@pytest.fixture
def engine(request, monkeypatch):
    """The engine, chosen the way a book reader's code can't: the environment."""
    cu.require_engine(request.param)
    monkeypatch.setenv("FASTNET_ENGINE", request.param)
    monkeypatch.delenv("FASTNET_DEVICE", raising=False)
    return request.param


on_engines = pytest.mark.parametrize("engine", ENGINES, indirect=True)


def small_data(n_train=100, n_valid=100, n_test=100):
    """A few hundred real digits: fastnet.datasets.mnist_sample() when present,
    else the recipe rebuilt by the test helper (the same rows)."""
    try:
        from fastnet.datasets import mnist_sample
    except ImportError:
        return cu.small_mnist(n_train, n_valid, n_test)
    (tx, ty), (vx, vy), (sx, sy) = mnist_sample()
    return ((tx[:n_train], ty[:n_train]), (vx[:n_valid], vy[:n_valid]),
            (sx[:n_test], sy[:n_test]))


# ---------------------------------------------------------------------------
# the book's sessions, verbatim but for the epochs
# ---------------------------------------------------------------------------
BOOK_SESSIONS = [
    ("shallow", """
        import network3
        from network3 import Network
        from network3 import ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer
        training_data, validation_data, test_data = network3.load_data_shared()
        mini_batch_size = 10
        net = Network([
                FullyConnectedLayer(n_in=784, n_out=100),
                SoftmaxLayer(n_in=100, n_out=10)], mini_batch_size)
        net.SGD(training_data, 60, mini_batch_size, 0.1,
                    validation_data, test_data)
        """),
    ("conv", """
        net = Network([
                ConvPoolLayer(image_shape=(mini_batch_size, 1, 28, 28),
                              filter_shape=(20, 1, 5, 5),
                              poolsize=(2, 2)),
                FullyConnectedLayer(n_in=20*12*12, n_out=100),
                SoftmaxLayer(n_in=100, n_out=10)], mini_batch_size)
        net.SGD(training_data, 60, mini_batch_size, 0.1,
                    validation_data, test_data)
        """),
    ("conv2", """
        net = Network([
                ConvPoolLayer(image_shape=(mini_batch_size, 1, 28, 28),
                              filter_shape=(20, 1, 5, 5),
                              poolsize=(2, 2)),
                ConvPoolLayer(image_shape=(mini_batch_size, 20, 12, 12),
                              filter_shape=(40, 20, 5, 5),
                              poolsize=(2, 2)),
                FullyConnectedLayer(n_in=40*4*4, n_out=100),
                SoftmaxLayer(n_in=100, n_out=10)], mini_batch_size)
        net.SGD(training_data, 60, mini_batch_size, 0.1,
                    validation_data, test_data)
        """),
    ("relu", """
        from network3 import ReLU
        net = Network([
                ConvPoolLayer(image_shape=(mini_batch_size, 1, 28, 28),
                              filter_shape=(20, 1, 5, 5),
                              poolsize=(2, 2),
                              activation_fn=ReLU),
                ConvPoolLayer(image_shape=(mini_batch_size, 20, 12, 12),
                              filter_shape=(40, 20, 5, 5),
                              poolsize=(2, 2),
                              activation_fn=ReLU),
                FullyConnectedLayer(n_in=40*4*4, n_out=100, activation_fn=ReLU),
                SoftmaxLayer(n_in=100, n_out=10)], mini_batch_size)
        net.SGD(training_data, 60, mini_batch_size, 0.03,
                    validation_data, test_data, lmbda=0.1)
        """),
    ("expanded", """
        expanded_training_data, _, _ = network3.load_data_shared(
                "../data/mnist_expanded.pkl.gz")
        net = Network([
                ConvPoolLayer(image_shape=(mini_batch_size, 1, 28, 28),
                              filter_shape=(20, 1, 5, 5),
                              poolsize=(2, 2),
                              activation_fn=ReLU),
                ConvPoolLayer(image_shape=(mini_batch_size, 20, 12, 12),
                              filter_shape=(40, 20, 5, 5),
                              poolsize=(2, 2),
                              activation_fn=ReLU),
                FullyConnectedLayer(n_in=40*4*4, n_out=100, activation_fn=ReLU),
                FullyConnectedLayer(n_in=100, n_out=100, activation_fn=ReLU),
                SoftmaxLayer(n_in=100, n_out=10)], mini_batch_size)
        net.SGD(expanded_training_data, 60, mini_batch_size, 0.03,
                    validation_data, test_data, lmbda=0.1)
        """),
    ("dropout", """
        net = Network([
                ConvPoolLayer(image_shape=(mini_batch_size, 1, 28, 28),
                              filter_shape=(20, 1, 5, 5),
                              poolsize=(2, 2),
                              activation_fn=ReLU),
                ConvPoolLayer(image_shape=(mini_batch_size, 20, 12, 12),
                              filter_shape=(40, 20, 5, 5),
                              poolsize=(2, 2),
                              activation_fn=ReLU),
                FullyConnectedLayer(
                    n_in=40*4*4, n_out=1000, activation_fn=ReLU, p_dropout=0.5),
                FullyConnectedLayer(
                    n_in=1000, n_out=1000, activation_fn=ReLU, p_dropout=0.5),
                SoftmaxLayer(n_in=1000, n_out=10, p_dropout=0.5)],
                mini_batch_size)
        net.SGD(expanded_training_data, 40, mini_batch_size, 0.03,
                    validation_data, test_data)
        """),
]

SGD_LOG = re.compile(
    r"Training mini-batch number 0\n"
    r"Epoch 0: validation accuracy (\d+\.\d\d)%\n"
    r"This is the best validation accuracy to date\.\n"
    r"The corresponding test accuracy is (\d+\.\d\d)%\n"
    r"Finished training network\.\n"
    r"Best validation accuracy of \1% obtained at iteration (\d+)\n"
    r"Corresponding test accuracy of \2%\n")


@pytest.fixture
def book_dirs(tmp_path, monkeypatch):
    """../data/mnist.pkl.gz and ../data/mnist_expanded.pkl.gz next to the cwd."""
    data_dir = tmp_path / "data"
    code_dir = tmp_path / "src"
    data_dir.mkdir()
    code_dir.mkdir()
    parts = small_data()
    cu.write_book_mnist(data_dir / "mnist.pkl.gz", parts)
    # expand_mnist.py's five images per digit, from the first 40 digits (time)
    (tx, ty), valid, test = parts
    cu.write_expanded_mnist(data_dir / "mnist_expanded.pkl.gz", ((tx[:40], ty[:40]), valid, test))
    monkeypatch.chdir(code_dir)
    return parts


@on_engines
def test_book_sessions(book_dirs, engine, capsys):
    parts = book_dirs
    ns = {}
    np.random.seed(12345)
    for name, code in BOOK_SESSIONS:
        code = textwrap.dedent(code)
        code = code.replace(", 60, mini_batch_size", ", 1, mini_batch_size")
        code = code.replace(", 40, mini_batch_size", ", 1, mini_batch_size")
        assert ", 1, mini_batch_size" in code
        exec(compile(code, "<book chapter 6: %s>" % name, "exec"), ns)
        out = capsys.readouterr()
        m = SGD_LOG.fullmatch(out.out)
        assert m, "session %r printed:\n%s" % (name, out.out)
        n_train = 5 * 40 if name in ("expanded", "dropout") else parts[0][0].shape[0]
        assert int(m.group(3)) == n_train // 10 - 1
        net = ns["net"]
        network3 = ns["network3"]
        assert net.engine.name == engine
        for p in net.params:
            assert p.get_value().dtype == np.float32
            assert np.all(np.isfinite(p.get_value()))
        if name == "shallow":
            # the data are the book file's rows, as network3 reads them
            for pair, (gx, gy) in zip((ns["training_data"], ns["validation_data"],
                                       ns["test_data"]), parts):
                assert network3.size(pair) == gx.shape[0]
                assert np.array_equal(pair[0].get_value(borrow=True), gx)
                assert pair[1].eval().dtype == np.int32
                assert np.array_equal(pair[1].eval(), gy)
        if name == "expanded":
            assert network3.size(ns["expanded_training_data"]) == 5 * 40


# ---------------------------------------------------------------------------
# shared variables
# ---------------------------------------------------------------------------
def _fc_net(seed=1, mbs=10, **kw):
    import network3
    np.random.seed(seed)
    return network3.Network([network3.FullyConnectedLayer(n_in=784, n_out=30, **kw),
                             network3.SoftmaxLayer(n_in=30, n_out=10)], mbs)


@on_engines
def test_shared_variable_manners(engine):
    import network3
    (tx, ty), valid, test = small_data()
    net = _fc_net()
    layer = net.layers[0]
    assert [id(p) for p in net.params] == [id(layer.w), id(layer.b), id(net.layers[1].w),
                                           id(net.layers[1].b)]
    w = layer.w.get_value()
    assert w.shape == (784, 30) and w.dtype == np.float32
    assert np.array_equal(layer.w.eval(), w)
    w[0, 0] += 1.0                                   # a copy: the layer is untouched
    assert not np.array_equal(layer.w.get_value(), w)
    before = net.output(test[0])
    layer.w.set_value(w)                             # set_value is seen by the net
    assert np.array_equal(layer.w.get_value(), w)
    net.layers[1].w.set_value(np.full((30, 10), 0.01, np.float32) *
                              np.arange(10, dtype=np.float32))
    after = net.output(test[0])
    assert not np.allclose(before, after)
    with pytest.raises(ValueError):
        layer.w.set_value(np.zeros((30, 784), np.float32))
    # after SGD, get_value gives the trained weights
    start = [p.get_value() for p in net.params]
    net.SGD((tx, ty), 1, 10, 0.1, valid, test)
    for p, s in zip(net.params, start):
        assert not np.array_equal(p.get_value(), s)
    # size(), as network3 defines it, on shared and on NumPy pairs
    try:
        from fastnet.datasets import mnist_sample
    except ImportError:
        mnist_sample = None
    if mnist_sample is not None:
        shared = mnist_sample(shared=True)
        assert [network3.size(d) for d in shared] == [8000, 1000, 1000]
        assert shared[0][0].get_value(borrow=True).dtype == np.float32
        assert shared[0][1].eval().dtype == np.int32
    assert network3.size((tx, ty)) == tx.shape[0]


# ---------------------------------------------------------------------------
# construction errors
# ---------------------------------------------------------------------------
def _raises(fn, *needles):
    with pytest.raises(ValueError) as info:
        fn()
    msg = str(info.value)
    for needle in needles:
        if isinstance(needle, re.Pattern):
            assert needle.search(msg), "%r not in: %s" % (needle.pattern, msg)
        else:
            assert needle in msg, "%r not in: %s" % (needle, msg)
    return msg


def _num(n):
    return re.compile(r"(?<![\d.])%d(?![\d.])" % n)


def test_construction_errors_name_layer_and_numbers(monkeypatch):
    monkeypatch.setenv("FASTNET_ENGINE", "reference")
    from network3 import (ConvPoolLayer, FullyConnectedLayer, Network, ReLU,
                          SoftmaxLayer)
    # n_in of a layer != n_out of the one before
    _raises(lambda: Network([FullyConnectedLayer(n_in=784, n_out=100),
                             SoftmaxLayer(n_in=50, n_out=10)], 10),
            "layer 1", _num(50), _num(100))
    _raises(lambda: Network([
        ConvPoolLayer(image_shape=(10, 1, 28, 28), filter_shape=(20, 1, 5, 5)),
        FullyConnectedLayer(n_in=2000, n_out=100),
        SoftmaxLayer(n_in=100, n_out=10)], 10), "layer 1", _num(2000), _num(20 * 12 * 12))
    _raises(lambda: Network([
        FullyConnectedLayer(n_in=784, n_out=30),
        FullyConnectedLayer(n_in=30, n_out=20),
        SoftmaxLayer(n_in=21, n_out=10)], 10), "layer 2", _num(21), _num(20))
    # a conv layer whose image_shape does not fit the maps of the layer before
    _raises(lambda: Network([
        ConvPoolLayer(image_shape=(10, 1, 28, 28), filter_shape=(20, 1, 5, 5)),
        ConvPoolLayer(image_shape=(10, 10, 12, 12), filter_shape=(40, 10, 5, 5)),
        SoftmaxLayer(n_in=640, n_out=10)], 10), "layer 1", _num(10 * 12 * 12),
        _num(20 * 12 * 12))
    # image_shape's batch != the Network's mini-batch size
    _raises(lambda: Network([
        ConvPoolLayer(image_shape=(20, 1, 28, 28), filter_shape=(20, 1, 5, 5)),
        FullyConnectedLayer(n_in=2880, n_out=100),
        SoftmaxLayer(n_in=100, n_out=10)], 10), "layer 0", _num(20), _num(10))
    _raises(lambda: Network([
        ConvPoolLayer(image_shape=(10, 1, 28, 28), filter_shape=(20, 1, 5, 5)),
        ConvPoolLayer(image_shape=(12, 20, 12, 12), filter_shape=(40, 20, 5, 5)),
        SoftmaxLayer(n_in=640, n_out=10)], 10), "layer 1", _num(12), _num(10))
    # raised by the constructor, which cannot know its index: names the class
    _raises(lambda: ConvPoolLayer(image_shape=(10, 5, 28, 28), filter_shape=(20, 7, 5, 5)),
            "ConvPoolLayer", _num(7), _num(5))
    for bad in ("softplus", lambda z: z, None, 3):
        _raises(lambda: FullyConnectedLayer(n_in=10, n_out=5, activation_fn=bad),
                "FullyConnectedLayer", "activation")
        _raises(lambda: ConvPoolLayer(image_shape=(10, 1, 28, 28), filter_shape=(20, 1, 5, 5),
                                      activation_fn=bad), "ConvPoolLayer", "activation")
    for p in (1.0, 1.5, -0.1, float("nan")):
        _raises(lambda: FullyConnectedLayer(n_in=10, n_out=5, activation_fn=ReLU, p_dropout=p),
                "FullyConnectedLayer", "p_dropout", repr(p))
        _raises(lambda: SoftmaxLayer(n_in=10, n_out=5, p_dropout=p), "SoftmaxLayer",
                "p_dropout", repr(p))


# ---------------------------------------------------------------------------
# SGD's inputs
# ---------------------------------------------------------------------------
def _train(train, valid, test, engine, epochs=1, seed=3):
    net = _fc_net(seed)
    cu.sgd(net, train, epochs, 10, 0.5, valid, test, 0.0)
    return [p.get_value() for p in net.params]


@on_engines
def test_sgd_accepts_numpy_float64_and_noncontiguous(engine):
    import network3
    (tx, ty), (vx, vy), (sx, sy) = small_data()
    want = _train((tx, ty), (vx, vy), (sx, sy), engine)
    # float64 (exact: the values are float32), Fortran order, int32 / float labels
    x64 = np.asfortranarray(tx.astype(np.float64))
    got = _train((x64, ty.astype(np.int32)), (vx.astype(np.float64), vy.astype(np.float32)),
                 (sx, sy), engine)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    # strided views (every other column of a wider array; every other row)
    wide = np.zeros((tx.shape[0], 2 * 784), np.float32)
    wide[:, ::2] = tx
    rows = np.zeros((2 * tx.shape[0], 784), np.float32)
    rows[::2] = tx
    for view in (wide[:, ::2], rows[::2]):
        assert not view.flags.c_contiguous
        got = _train((view, ty), (vx, vy), (sx, sy), engine)
        assert all(np.array_equal(a, b) for a, b in zip(got, want))
    # Python lists of rows, and network3's shared pairs
    got = _train((list(tx), list(ty)), (vx, vy), (sx, sy), engine)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    tr = (fastnet.Shared(tx), fastnet.Shared(ty.astype(np.int32)))
    got = _train(tr, (vx, vy), (sx, sy), engine)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
    # the caller's arrays are left alone
    assert x64.flags.f_contiguous and network3.size((x64, ty)) == tx.shape[0]


@on_engines
def test_sgd_refuses_zero_epochs_and_too_little_data(engine):
    (tx, ty), (vx, vy), (sx, sy) = small_data()
    net = _fc_net()
    start = [p.get_value() for p in net.params]
    for epochs in (0, -1):
        _raises(lambda: net.SGD((tx, ty), epochs, 10, 0.1, (vx, vy), (sx, sy)), "epochs")
    small = (tx[:9], ty[:9])
    _raises(lambda: net.SGD(small, 1, 10, 0.1, (vx, vy), (sx, sy)), "training_data",
            _num(9), _num(10))
    _raises(lambda: net.SGD((tx, ty), 1, 10, 0.1, (vx[:5], vy[:5]), (sx, sy)),
            "validation_data", _num(5), _num(10))
    _raises(lambda: net.SGD((tx, ty), 1, 10, 0.1, (vx, vy), (sx[:0], sy[:0])),
            "test_data", _num(0), _num(10))
    for p, s in zip(net.params, start):
        assert np.array_equal(p.get_value(), s), "a refused SGD call moved the weights"


# ---------------------------------------------------------------------------
# dropout and NumPy's global RNG
# ---------------------------------------------------------------------------
def _dropout_layers(mbs):
    from network3 import ConvPoolLayer, FullyConnectedLayer, ReLU, SoftmaxLayer
    return [ConvPoolLayer(image_shape=(mbs, 1, 28, 28), filter_shape=(4, 1, 5, 5),
                          poolsize=(2, 2), activation_fn=ReLU),
            FullyConnectedLayer(n_in=4 * 12 * 12, n_out=30, activation_fn=ReLU, p_dropout=0.5),
            FullyConnectedLayer(n_in=30, n_out=20, activation_fn=ReLU, p_dropout=0.3),
            SoftmaxLayer(n_in=20, n_out=10, p_dropout=0.5)]


def _network3_draws(seed, mbs):
    """The weights network3 draws for _dropout_layers, with np.random alone."""
    rs = np.random.RandomState(seed)
    out = []
    # conv: n_out = 4*5*5 // (2*2) = 25
    out.append(rs.normal(loc=0, scale=np.sqrt(1.0 / 25), size=(4, 1, 5, 5)))
    out.append(rs.normal(loc=0, scale=1.0, size=(4,)))
    out.append(rs.normal(loc=0.0, scale=np.sqrt(1.0 / 30), size=(576, 30)))
    out.append(rs.normal(loc=0.0, scale=1.0, size=(30,)))
    out.append(rs.normal(loc=0.0, scale=np.sqrt(1.0 / 20), size=(30, 20)))
    out.append(rs.normal(loc=0.0, scale=1.0, size=(20,)))
    out.append(np.zeros((20, 10)))
    out.append(np.zeros((10,)))
    return [a.astype(np.float32) for a in out], rs


@on_engines
def test_dropout_is_reproducible_and_init_is_network3s(engine):
    from network3 import Network
    (tx, ty), valid, test = small_data()
    mbs = 10
    trained = []
    for seed in (7, 7, 8):
        np.random.seed(seed)
        net = Network(_dropout_layers(mbs), mbs)
        want, rs = _network3_draws(seed, mbs)
        for p, w in zip(net.params, want):
            assert np.array_equal(p.get_value(), w), "initial weights are not network3's"
        # neither Network() nor SGD draws from NumPy's global RNG
        state = rs.get_state()
        cu.sgd(net, (tx, ty), 1, mbs, 0.03, valid, test, 0.0)
        now = np.random.get_state()
        assert now[0] == state[0] and np.array_equal(now[1], state[1]) and now[2:] == state[2:], \
            "building or training the network drew from NumPy's global RNG"
        trained.append([p.get_value() for p in net.params])
    assert all(np.array_equal(a, b) for a, b in zip(trained[0], trained[1])), \
        "the same np.random.seed gave different trained weights"
    assert not all(np.array_equal(a, b) for a, b in zip(trained[0], trained[2]))
    # the dropout masks matter: without dropout the same init trains differently
    np.random.seed(7)
    plain = fastnet.Network([
        fastnet.ConvPoolLayer(image_shape=(mbs, 1, 28, 28), filter_shape=(4, 1, 5, 5),
                              poolsize=(2, 2), activation_fn=fastnet.ReLU),
        fastnet.FullyConnectedLayer(n_in=576, n_out=30, activation_fn=fastnet.ReLU),
        fastnet.FullyConnectedLayer(n_in=30, n_out=20, activation_fn=fastnet.ReLU),
        fastnet.SoftmaxLayer(n_in=20, n_out=10)], mbs)
    cu.sgd(plain, (tx, ty), 1, mbs, 0.03, valid, test, 0.0)
    assert not all(np.array_equal(p.get_value(), b) for p, b in zip(plain.params, trained[0]))
