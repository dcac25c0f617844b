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


def test_flat_params_update_equals_layer_by_layer():
    """FlatParams (what a device-resident engine trains with: all weights in
    one flat array, all biases in another, two sgd_update calls per step)
    gives the layers views of its arrays, and its update is bitwise the
    layer-by-layer update, L2 on the weights only."""
    from fastnet import ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer
    from fastnet.engines import reference as R
    from fastnet.params import FlatParams

    np.random.seed(5)
    layers = [ConvPoolLayer((3, 1, 3, 3), (2, 1, 8, 8)),
              FullyConnectedLayer(3 * 3 * 3, 7), SoftmaxLayer(7, 4)]
    for layer in layers:
        layer.b.set_value(np.random.standard_normal(layer.b.shape))
    dtype = layers[0].w.dtype
    flat = FlatParams(R, layers, dtype)
    rng = np.random.default_rng(6)
    for layer, (gw, gb) in zip(layers, flat.grad_views()):
        assert gw.shape == layer.w.shape and gb.shape == layer.b.shape
        gw[...] = rng.standard_normal(gw.shape)
        gb[...] = rng.standard_normal(gb.shape)
        layer.gw, layer.gb = gw, gb
    flat.upload()
    assert flat.w.size == sum(l.w.value.size for l in layers)
    assert flat.b.size == sum(l.b.value.size for l in layers)
    want = []
    for layer in layers:
        assert np.shares_memory(layer.w_e, flat.w) and np.shares_memory(layer.gb, flat.gb)
        assert np.array_equal(layer.w_e, layer.w.value)
        w, b = layer.w.get_value(), layer.b.get_value()
        R.sgd_update(w, layer.gw, 0.1, 0.02)
        R.sgd_update(b, layer.gb, 0.1, 0.0)
        want.append((w, b))
    flat.update(0.1, 0.02)
    for layer, (w, b) in zip(layers, want):
        assert np.array_equal(layer.w_e, w) and np.array_equal(layer.b_e, b)
        assert not np.array_equal(w, layer.w.value)   # the host copy is untouched
