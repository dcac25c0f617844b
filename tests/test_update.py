"""sgd_update and sum_of_squares of each engine against the NumPy reference.

Parameters of every shape the layers have (conv w 4-d, dense w 2-d, biases
1-d), with and without the L2 term; sum_of_squares returns a Python float
accumulated in double.
"""

import numpy as np
import pytest

from kernel_check import In, InOut, Const, check_kernel, not_degenerate, run_kernel

SHAPES = [("conv-w", (40, 20, 5, 5)), ("fc-w", (640, 100)), ("bias", (100,)),
          ("odd", (7, 3)), ("one", (1,)), ("large", (300, 300))]
IDS = [s[0] for s in SHAPES]


@pytest.mark.parametrize("eta,l2", [(0.03, 0.0), (0.1, 0.005), (0.5, 0.1)])
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_sgd_update(kernel_engine, float_dtype, shape, eta, l2):
    rng = np.random.default_rng(1)
    param = rng.standard_normal(shape[1]).astype(float_dtype)
    grad = rng.standard_normal(shape[1]).astype(float_dtype)
    not_degenerate(param, grad)
    got, want = check_kernel(kernel_engine, "sgd_update %s eta=%g l2=%g %s"
                             % (shape[0], eta, l2, float_dtype), "sgd_update",
                             [InOut(param), In(grad), Const(eta), Const(l2)],
                             ["param", "grad", "eta", "l2"], float_dtype)
    # the same operations in the same order as NumPy: bitwise equal
    assert np.array_equal(got[0], want[0])


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_sum_of_squares(kernel_engine, float_dtype, shape):
    w = np.random.default_rng(2).standard_normal(shape[1]).astype(float_dtype)
    got, want = check_kernel(kernel_engine, "sum_of_squares %s %s" % (shape[0], float_dtype),
                             "sum_of_squares", [In(w)], ["w"], float_dtype)
    assert type(got["ret"]) is float
    exact = float(np.sum(w.astype(np.float64) ** 2))
    assert abs(got["ret"] - exact) <= 1e-13 * exact


def test_update_bad_arguments(kernel_engine):
    e = kernel_engine
    p = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"sgd_update: grad has shape \(4, 3\); expected the shape of param = \(3, 4\)"):
        e.sgd_update(p, np.ones((4, 3), np.float32), 0.1, 0.0)
    with pytest.raises(ValueError, match=r"sgd_update: grad has dtype float64; expected float32"):
        e.sgd_update(p, np.ones((3, 4)), 0.1, 0.0)
    with pytest.raises(ValueError, match=r"sgd_update: param must be C-contiguous"):
        e.sgd_update(np.ones((4, 3), np.float32).T, np.ones((3, 4), np.float32), 0.1, 0.0)
    ro = np.ones((3, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"sgd_update: param is an output and must be writeable"):
        e.sgd_update(ro, np.ones((3, 4), np.float32), 0.1, 0.0)
    with pytest.raises(ValueError, match=r"sum_of_squares: w has dtype int64"):
        e.sum_of_squares(np.ones(3, np.int64))


def test_plan_flat_groups_update_equals_layer_by_layer():
    """A Plan keeps every weight in one flat array and every bias in another
    (two update ops per step whatever the number of layers); the layers'
    Shared values are views of them, and the update is bitwise the
    layer-by-layer update, L2 on the weights only."""
    from fastnet import ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer
    from fastnet.engines import reference as R
    from fastnet.optim import Network3SGD
    from fastnet.plan import Plan, _Env, run_ops

    np.random.seed(5)
    layers = [ConvPoolLayer((3, 1, 3, 3), (2, 1, 8, 8)),
              FullyConnectedLayer(3 * 3 * 3, 7), SoftmaxLayer(7, 4)]
    for layer in layers:
        layer.b.set_value(np.random.standard_normal(layer.b.shape))
    dtype = layers[0].w.dtype
    plan = Plan(layers, 2, R, dtype, Network3SGD(), [0, 0, 0])
    w_group, b_group = plan.groups[True], plan.groups[False]
    assert w_group.size == sum(l.w.value.size for l in layers)
    assert b_group.size == sum(l.b.value.size for l in layers)
    assert [op.kernel for op in plan.update] == ["sgd_update", "sgd_update"]
    rng = np.random.default_rng(6)
    w_group.grads[...] = rng.standard_normal(w_group.size)
    b_group.grads[...] = rng.standard_normal(b_group.size)
    want = []
    for i, layer in enumerate(layers):
        assert np.shares_memory(layer.w.value, w_group.values)
        assert np.shares_memory(layer.b.value, b_group.values)
        gw, gb = plan.grads_of(2 * i), plan.grads_of(2 * i + 1)
        assert gw.shape == layer.w.shape and gb.shape == layer.b.shape
        w, b = layer.w.get_value(), layer.b.get_value()
        R.sgd_update(w, gw, 0.1, 0.02)
        R.sgd_update(b, gb, 0.1, 0.0)
        want.append((w, b))
    run_ops(R, plan.update, _Env(None, None, 0, Network3SGD().hyper(0.1, 0.02)))
    for layer, (w, b) in zip(layers, want):
        assert np.array_equal(layer.w.value, w) and np.array_equal(layer.b.value, b)


OPTIMIZER_CALLS = [
    ("momentum_update", 1, [(0.1, 0.9, 0.0, 0.0, 0.0), (0.05, 0.9, 0.3, 1e-3, 0.0),
                            (0.1, 0.8, 0.0, 0.0, 1.0)]),
    ("rmsprop_update", 1, [(1e-2, 0.99, 1e-8, 0.0), (1e-3, 0.9, 1e-7, 1e-2)]),
    ("adagrad_update", 1, [(1e-2, 0.0, 1e-10, 0.0), (1e-2, 0.1, 1e-10, 1e-3)]),
    ("adam_update", 2, [(1e-3, 0.9, 0.999, 1e-8, 0.0, 0.0), (1e-3, 0.9, 0.999, 1e-8, 1e-2, 1.0),
                        (1e-3, 0.8, 0.99, 1e-8, 1e-2, 0.0)]),
]
STEPPED = ("momentum_update", "adagrad_update", "adam_update")


@pytest.mark.parametrize("n", [1, 37, 70001], ids=["one", "odd", "threaded"])
@pytest.mark.parametrize("name,n_state,calls", OPTIMIZER_CALLS,
                         ids=[c[0] for c in OPTIMIZER_CALLS])
def test_optimizer_kernels(kernel_engine, float_dtype, name, n_state, calls, n):
    """Each optimizer's compiled kernel, three steps in a row (its first-step
    case, then its state carried), against the reference's update; large
    enough arrays take the threaded path."""
    from fastnet.engines import reference as R
    rtol = 1e-12 if float_dtype == np.float64 else 2e-6
    rng = np.random.default_rng(21)
    for hyper in calls:
        p = rng.standard_normal(n).astype(float_dtype)
        state = [np.zeros(n, float_dtype) for _ in range(n_state)]
        mine_p, mine_s = p.copy(), [a.copy() for a in state]
        for step in (1, 2, 3):
            g = rng.standard_normal(n).astype(float_dtype)
            h = hyper + ((float(step),) if name in STEPPED else ())
            getattr(R, name)(p, g, *state, *h)
            getattr(kernel_engine, name)(mine_p, g, *mine_s, *h)
            np.testing.assert_allclose(mine_p, p, rtol=rtol, atol=rtol * np.abs(p).max(),
                                       err_msg="%s %r step %d" % (name, hyper, step))
            for a, b in zip(mine_s, state):
                np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


def test_optimizer_kernel_bad_arguments(kernel_engine):
    p = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="grad"):
        kernel_engine.adam_update(p, np.zeros(4, np.float32), p.copy(), p.copy(),
                                  1e-3, 0.9, 0.999, 1e-8, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="state 1"):
        kernel_engine.adam_update(p, p.copy(), p.copy(), np.zeros(5, np.float64),
                                  1e-3, 0.9, 0.999, 1e-8, 0.0, 0.0, 1.0)


# every optimizer kernel, with hyper-parameters for which decaying state
# would go subnormal under a zero gradient
ALL_OPTIMIZERS = [
    ("momentum_update", 1, (0.1, 0.9, 0.0, 0.0, 0.0), True),
    ("rmsprop_update", 1, (1e-3, 0.9, 1e-7, 0.0), False),
    ("adagrad_update", 1, (1e-2, 0.0, 1e-10, 0.0), True),
    ("adam_update", 2, (1e-3, 0.9, 0.999, 1e-8, 0.0, 0.0), True),
    ("keras_sgd_update", 1, (0.01, 0.9, 0.0, 0.0), False),
    ("keras_rmsprop_update", 1, (1e-3, 0.9, 1e-7, 0.0), False),
    ("keras_adagrad_update", 1, (1e-3, 1e-7, 0.0), False),
    ("keras_adam_update", 2, (1e-3, 0.9, 0.999, 1e-7, 0.0), True),
]


@pytest.mark.parametrize("name,n_state,hyper,stepped", ALL_OPTIMIZERS,
                         ids=[c[0] for c in ALL_OPTIMIZERS])
def test_optimizer_state_never_goes_subnormal(kernel_engine, float_dtype, name, n_state,
                                              hyper, stepped):
    """Decaying optimizer state (zero gradients: dead ReLU units) is stored
    as +0 once it falls below the smallest normal number, on every engine
    alike (csrc/update.pxd's normal_or_zero; x86 arithmetic on subnormals is
    ~100x slower); normal values and NaN are kept."""
    from fastnet.engines import reference as R
    tiny = np.finfo(float_dtype).tiny
    start = np.array([tiny * 1.0001, tiny / 2, -tiny * 1.0001, -tiny / 3, 0.0, 1.0, -0.5,
                      tiny * 1e6, np.nan], float_dtype)
    n = start.size
    p = np.linspace(-1, 1, n).astype(float_dtype)
    g = np.zeros(n, float_dtype)
    g[-2] = 0.25                       # one element with a gradient
    state = [start.copy() for _ in range(n_state)]
    mine_p, mine_s = p.copy(), [a.copy() for a in state]
    for step in (2, 3, 4):             # past the first step (momentum's buf = g)
        h = hyper + ((float(step),) if stepped else ())
        with np.errstate(invalid="ignore"):   # negative squared averages: made up here
            getattr(R, name)(p, g, *state, *h)
        getattr(kernel_engine, name)(mine_p, g, *mine_s, *h)
    for a, b in zip(mine_s, state):
        assert np.array_equal(a, b, equal_nan=True), "%s: engine vs reference state" % name
        finite = a[np.isfinite(a)]
        assert not np.any((finite != 0) & (np.abs(finite) < tiny)), \
            "%s left subnormal state: %r" % (name, a)
        assert np.isnan(a[-1])
        assert a[1] == 0 and a[3] == 0 and not np.signbit(a[3])     # flushed, to +0
        if name not in ("adagrad_update", "keras_adagrad_update"):  # these only grow
            assert a[0] == 0 and a[2] == 0 and not np.signbit(a[2])
            assert a[5] != 0                               # a normal value decays on
    assert np.array_equal(mine_p, p, equal_nan=True)
