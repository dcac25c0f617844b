"""Finite-difference checks of ``net.cost_and_grads`` (float64, every engine).

For every layer type (ConvPoolLayer first and second in the chain, so the
convolution's input gradient is exercised; FullyConnectedLayer; SoftmaxLayer),
every activation (sigmoid, tanh, ReLU, linear), poolsize (2, 2) and (3, 2)
(the border ignored), with and without L2 (lmbda > 0 with
num_training_batches 1 and 3), and with dropout: central differences of the
cost at a few random coordinates of every parameter against the analytic
gradient.

Parameters are set to random non-zero values first (network3's softmax starts
at zero, which would make every lower gradient exactly 0).  Inputs are random
reals, so max-pool windows have no ties and, at the fixed seeds, no ReLU
pre-activation or pool maximum lies within the finite-difference step of a kink
(each check also compares two step sizes, which would disagree at a kink).
"""

import numpy as np
import pytest

import conformance_util as cu
from fastnet import (ConvPoolLayer, FullyConnectedLayer, Network, ReLU, SoftmaxLayer,
                     linear, sigmoid, tanh)

ENGINES = cu.engine_names()
ACTIVATIONS = {"sigmoid": sigmoid, "tanh": tanh, "ReLU": ReLU, "linear": linear}
POOLS = {"pool2x2": (2, 2), "pool3x2": (3, 2)}
L2 = {"nol2": (0.0, 1), "l2": (0.7, 1), "l2ntb3": (0.7, 3)}
COORDS_PER_PARAM = 4
STEP = 1e-6
RTOL = 1e-6     # of the largest |gradient| of that parameter array
ATOL = 1e-9


@pytest.fixture(autouse=True)
def _float64():
    with cu.floatx("float64"):
        yield


@pytest.fixture
def engine(request):
    cu.require_engine(request.param)
    return request.param


on_engines = pytest.mark.parametrize("engine", ENGINES, indirect=True)


# ---------------------------------------------------------------------------
# tiny networks: (layers, n_in, n_classes)
# ---------------------------------------------------------------------------
def conv_fc(mbs, act, pool):
    # conv on 2 maps 8x9 (3x3 filters) -> 6x7 -> pool; FC; softmax
    ph, pw = pool
    conv = ConvPoolLayer(filter_shape=(3, 2, 3, 3), image_shape=(mbs, 2, 8, 9), poolsize=pool,
                         activation_fn=act)
    n = 3 * (6 // ph) * (7 // pw)
    return [conv, FullyConnectedLayer(n_in=n, n_out=5, activation_fn=act),
            SoftmaxLayer(n_in=5, n_out=4)], 2 * 8 * 9, 4


def conv_conv(mbs, act, pool):
    # two conv-pool layers, the second sees the first's maps; then softmax
    ph, pw = pool
    h1, w1 = 14 - 2, 11 - 2                       # 3x3 filters on 14x11
    p1h, p1w = h1 // ph, w1 // pw                 # (2,2): 6x4   (3,2): 4x4
    conv1 = ConvPoolLayer(filter_shape=(3, 2, 3, 3), image_shape=(mbs, 2, 14, 11),
                          poolsize=pool, activation_fn=act)
    conv2 = ConvPoolLayer(filter_shape=(4, 3, 2, 2), image_shape=(mbs, 3, p1h, p1w),
                          poolsize=pool, activation_fn=act)
    n = 4 * ((p1h - 1) // ph) * ((p1w - 1) // pw)
    return [conv1, conv2, SoftmaxLayer(n_in=n, n_out=3)], 2 * 14 * 11, 3


def fc_fc(mbs, act, p_dropout=0.0):
    return [FullyConnectedLayer(n_in=12, n_out=7, activation_fn=act, p_dropout=p_dropout),
            FullyConnectedLayer(n_in=7, n_out=6, activation_fn=act, p_dropout=p_dropout),
            SoftmaxLayer(n_in=6, n_out=4, p_dropout=p_dropout)], 12, 4


def softmax_only(mbs):
    return [SoftmaxLayer(n_in=9, n_out=5)], 9, 5


# ---------------------------------------------------------------------------
# the check
# ---------------------------------------------------------------------------
def _randomise(net, rs):
    for p in net.params:
        p.set_value(rs.normal(0.0, 0.6, size=p.shape))


def _cost(net, x, y, lmbda, ntb):
    return net.cost_and_grads(x, y, lmbda, ntb)[0]


def gradcheck(net, x, y, lmbda, ntb, seed):
    rs = np.random.RandomState(seed)
    cost, grads = net.cost_and_grads(x, y, lmbda, ntb)
    assert np.isfinite(cost)
    assert len(grads) == len(net.params)
    failures = []
    for k, (p, g) in enumerate(zip(net.params, grads)):
        assert g.shape == p.shape and g.dtype == np.float64, (k, g.shape, g.dtype)
        scale = float(np.max(np.abs(g)))
        base = p.get_value()
        flat = rs.choice(base.size, size=min(COORDS_PER_PARAM, base.size), replace=False)
        for f in flat:
            idx = np.unravel_index(int(f), base.shape)
            fds = []
            for step in (STEP, STEP / 2):
                v = base.copy()
                v[idx] += step
                p.set_value(v)
                up = _cost(net, x, y, lmbda, ntb)
                v[idx] -= 2 * step
                p.set_value(v)
                down = _cost(net, x, y, lmbda, ntb)
                fds.append((up - down) / (2 * step))
            p.set_value(base)
            assert abs(fds[0] - fds[1]) <= 1e-5 * max(scale, abs(fds[0])) + 1e-8, (
                "param %d %s: finite differences at two steps disagree (%r, %r): a kink "
                "inside the step; change the seed" % (k, idx, fds[0], fds[1]))
            analytic = float(g[idx])
            if not abs(fds[0] - analytic) <= RTOL * scale + ATOL:
                failures.append("param %d (%s of layer %d) at %s: analytic %.10g, finite "
                                "difference %.10g, |delta| %.3g, max|grad| %.3g" % (
                                    k, "wb"[k % 2], k // 2, tuple(int(i) for i in idx),
                                    analytic, fds[0], abs(fds[0] - analytic), scale))
    # the cost itself: NLL + 0.5*lmbda*sum||w||^2/ntb
    if lmbda:
        nll = _cost(net, x, y, 0.0, ntb)
        sq = sum(float(np.sum(p.get_value() ** 2)) for p in net.params[0::2])
        want = nll + 0.5 * lmbda * sq / ntb
        if not abs(cost - want) <= 1e-12 * abs(want):
            failures.append("cost %.17g != NLL + L2 term %.17g" % (cost, want))
    assert not failures, "\n".join(failures)


def _data(rs, mbs, n_in, n_classes):
    x = rs.rand(mbs, n_in)
    y = rs.randint(0, n_classes, size=mbs)
    return x, y


def _run(build, engine, lmbda, ntb, seed, mbs=3):
    np.random.seed(seed)
    layers, n_in, n_classes = build(mbs)
    net = Network(layers, mbs, engine=engine)
    rs = np.random.RandomState(seed + 1)
    _randomise(net, rs)
    x, y = _data(rs, mbs, n_in, n_classes)
    gradcheck(net, x, y, lmbda, ntb, seed + 2)


@on_engines
@pytest.mark.parametrize("l2", list(L2))
@pytest.mark.parametrize("pool", list(POOLS))
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_conv_fc_softmax(act, pool, l2, engine):
    lmbda, ntb = L2[l2]
    _run(lambda mbs: conv_fc(mbs, ACTIVATIONS[act], POOLS[pool]), engine, lmbda, ntb, 11)


@on_engines
@pytest.mark.parametrize("pool", list(POOLS))
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_conv_conv_softmax(act, pool, engine):
    """A conv-pool layer behind another: the convolution's input gradient."""
    _run(lambda mbs: conv_conv(mbs, ACTIVATIONS[act], POOLS[pool]), engine, 0.3, 2, 23)


@on_engines
@pytest.mark.parametrize("l2", list(L2))
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_fc_fc_softmax(act, l2, engine):
    lmbda, ntb = L2[l2]
    _run(lambda mbs: fc_fc(mbs, ACTIVATIONS[act]), engine, lmbda, ntb, 37, mbs=4)


@on_engines
@pytest.mark.parametrize("l2", list(L2))
def test_softmax_only(l2, engine):
    lmbda, ntb = L2[l2]
    _run(softmax_only, engine, lmbda, ntb, 41, mbs=5)


@on_engines
@pytest.mark.parametrize("act", ["sigmoid", "ReLU"])
def test_dropout(act, engine):
    """With dropout every cost_and_grads call uses the mask of the next step
    (nothing is trained in between), so the cost is a fixed function of the
    parameters and its gradient goes through the mask."""
    np.random.seed(53)
    mbs = 4
    layers, n_in, n_classes = fc_fc(mbs, ACTIVATIONS[act], p_dropout=0.5)
    net = Network(layers, mbs, engine=engine)
    rs = np.random.RandomState(54)
    _randomise(net, rs)
    x, y = _data(rs, mbs, n_in, n_classes)
    c1, g1 = net.cost_and_grads(x, y, 0.2, 2)
    c2, g2 = net.cost_and_grads(x, y, 0.2, 2)
    assert c1 == c2 and all(np.array_equal(a, b) for a, b in zip(g1, g2)), \
        "cost_and_grads is not repeatable with dropout"
    # the mask really drops: the training-path cost differs from the dropout-free one
    np.random.seed(53)
    ref_layers, _, _ = fc_fc(mbs, ACTIVATIONS[act], p_dropout=0.0)
    ref = Network(ref_layers, mbs, engine=engine)
    for p, q in zip(ref.params, net.params):
        p.set_value(q.get_value())
    assert ref.cost_and_grads(x, y, 0.2, 2)[0] != c1
    gradcheck(net, x, y, 0.2, 2, 55)


@on_engines
@pytest.mark.parametrize("loss,act", [("binary_crossentropy", "sigmoid"), ("mse", "sigmoid"),
                                      ("mse", "linear"), ("mse", "tanh")])
@pytest.mark.parametrize("l2", ["nol2", "l2ntb3"])
def test_dense_output_layer(loss, act, l2, engine):
    """DenseOutputLayer's costs (mean BCE of sigmoid outputs, mean squared
    error) through a hidden layer, on float targets."""
    from fastnet import DenseOutputLayer
    lmbda, ntb = L2[l2]
    np.random.seed(61)
    mbs = 4
    net = Network([FullyConnectedLayer(5, 6, activation_fn=tanh),
                   DenseOutputLayer(6, 3, activation_fn=ACTIVATIONS[act], loss=loss)],
                  mbs, engine=engine)
    rs = np.random.RandomState(62)
    _randomise(net, rs)
    x, t = rs.rand(mbs, 5), rs.rand(mbs, 3)
    gradcheck(net, x, t, lmbda, ntb, 63)
