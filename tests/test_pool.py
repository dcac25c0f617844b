"""pool_forward / pool_backward (max-pool + bias + activation) of each engine
against the NumPy reference.

Pool sizes (2,2), (3,3), (3,2), (1,1); borders that the pool ignores; batch 1;
every activation.  Then Theano's tie rule (every maximum of a window gets the
whole gradient), dout overwritten with dz, and bad arguments.
"""

import numpy as np
import pytest

from fastnet.activations import SIGMOID, TANH, RELU, LINEAR
from kernel_check import In, InOut, Out, Const, check_kernel, not_degenerate

ACTS = [(SIGMOID, "sigmoid"), (TANH, "tanh"), (RELU, "relu"), (LINEAR, "linear")]

# (case, N, F, CH, CW, poolsize)
SHAPES = [
    ("book-conv1", 10, 20, 24, 24, (2, 2)),
    ("book-conv2", 10, 40, 8, 8, (2, 2)),
    ("odd-3x2", 7, 4, 10, 15, (3, 2)),
    ("3x3-border", 3, 5, 11, 13, (3, 3)),
    ("batch1", 1, 3, 7, 9, (2, 3)),
    ("1x1", 2, 3, 4, 5, (1, 1)),
    ("window=image", 4, 2, 3, 5, (3, 5)),
]
IDS = [s[0] for s in SHAPES]


def _inputs(shape, dtype, seed):
    _, N, F, CH, CW, (ph, pw) = shape
    rng = np.random.default_rng(seed)
    conv_out = (2 * rng.standard_normal((N, F, CH, CW))).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    dout = rng.standard_normal((N, F, CH // ph, CW // pw)).astype(dtype)
    not_degenerate(conv_out, b, dout)
    return conv_out, b, dout


def _pooled(e, conv_out, b, act, poolsize):
    N, F, CH, CW = conv_out.shape
    out = np.empty((N, F, CH // poolsize[0], CW // poolsize[1]), conv_out.dtype)
    e.pool_forward(conv_out, b, act, poolsize, out)
    return out


@pytest.mark.parametrize("act", ACTS, ids=[a[1] for a in ACTS])
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_pool_forward(kernel_engine, float_dtype, shape, act):
    conv_out, b, dout = _inputs(shape, float_dtype, 1)
    case = "pool_forward %s %s %s" % (shape[0], act[1], float_dtype)
    check_kernel(kernel_engine, case, "pool_forward",
                 [In(conv_out), In(b), Const(act[0]), Const(shape[5]),
                  Out(dout.shape, float_dtype)],
                 ["conv_out", "b", "act", "poolsize", "out"], float_dtype)


@pytest.mark.parametrize("act", ACTS, ids=[a[1] for a in ACTS])
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_pool_backward(kernel_engine, float_dtype, shape, act):
    conv_out, b, dout = _inputs(shape, float_dtype, 2)
    from fastnet.engines import get_engine
    out = _pooled(get_engine("reference"), conv_out, b, act[0], shape[5])
    case = "pool_backward %s %s %s" % (shape[0], act[1], float_dtype)
    check_kernel(kernel_engine, case, "pool_backward",
                 [In(conv_out), In(out), InOut(dout), Const(act[0]), Const(shape[5]),
                  Out(conv_out.shape, float_dtype), Out(b.shape, float_dtype)],
                 ["conv_out", "out", "dout (overwritten with dz)", "act", "poolsize",
                  "dconv", "db"], float_dtype)


@pytest.mark.parametrize("poolsize", [(2, 2), (3, 2), (3, 3)])
def test_pool_ties_all_get_the_gradient(kernel_engine, float_dtype, poolsize):
    """Small integers make many windows with several equal maxima: each of
    them receives the window's whole dz (Theano's MaxPoolGrad)."""
    rng = np.random.default_rng(3)
    ph, pw = poolsize
    conv_out = rng.integers(0, 3, size=(4, 3, 3 * ph + 1, 4 * pw + 1)).astype(float_dtype)
    b = np.zeros(3, float_dtype)
    out = _pooled(kernel_engine, conv_out, b, LINEAR, poolsize)
    dout = rng.standard_normal(out.shape).astype(float_dtype)
    dz = dout.copy()
    dconv = np.full(conv_out.shape, np.nan, float_dtype)
    db = np.empty(3, float_dtype)
    kernel_engine.pool_backward(conv_out, out, dout, LINEAR, poolsize, dconv, db)
    N, F, PH, PW = out.shape
    win = conv_out[:, :, :PH * ph, :PW * pw].reshape(N, F, PH, ph, PW, pw)
    is_max = win == win.max(axis=(3, 5), keepdims=True)
    n_max = is_max.sum(axis=(3, 5))
    assert (n_max >= 2).sum() >= 20, "the test input has too few tied windows"
    want = np.where(is_max, dz[:, :, :, None, :, None], 0).reshape(N, F, PH * ph, PW * pw)
    assert np.array_equal(dconv[:, :, :PH * ph, :PW * pw], want)
    assert (dconv[:, :, PH * ph:, :] == 0).all() and (dconv[:, :, :, PW * pw:] == 0).all()


def test_pool_backward_ties_after_the_conv(kernel_engine):
    """The book's second layer on blank images: conv outputs of constant
    patches tie exactly, and the pool gradient reaches every one of them."""
    e = kernel_engine
    rng = np.random.default_rng(4)
    x = np.full((2, 20, 12, 12), 0.25, np.float32)         # ReLU(b) over blank input
    x[:, :, 6:, 5:] = rng.random((2, 20, 6, 7)).astype(np.float32)
    w = rng.standard_normal((40, 20, 5, 5)).astype(np.float32)
    conv_out = np.empty((2, 40, 8, 8), np.float32)
    e.conv_forward(x, w, conv_out)
    out = _pooled(e, conv_out, np.zeros(40, np.float32), RELU, (2, 2))
    dout = np.ones(out.shape, np.float32)
    dconv = np.empty_like(conv_out)
    db = np.empty(40, np.float32)
    e.pool_backward(conv_out, out, dout, RELU, (2, 2), dconv, db)
    blank = dconv[:, :, :2, :2]                            # a window of equal patches
    positive = out[:, :, 0, 0] > 0
    assert positive.any()
    assert (blank[positive] == 1).all(), "a tied maximum of a blank window got no gradient"


def test_pool_bad_arguments(kernel_engine):
    e = kernel_engine
    c = np.ones((2, 3, 6, 6), np.float32)
    b = np.ones(3, np.float32)
    out = np.empty((2, 3, 3, 3), np.float32)
    cases = [
        ((c.astype(np.int32), b, 0, (2, 2), out), r"pool_forward: conv_out has dtype int32"),
        ((c, b.astype(np.float64), 0, (2, 2), out), r"b has dtype float64; expected float32"),
        ((c, b[:2], 0, (2, 2), out), r"b has shape \(2,\); expected \(F,\) = \(3,\)"),
        ((c, b, 7, (2, 2), out), r"unknown activation code 7"),
        ((c, b, 0, (0, 2), out), r"poolsize must be positive"),
        ((c, b, 0, (2,), out), r"poolsize must be a pair"),
        ((c, b, 0, (2.0, 2), out), r"poolsize must be a pair"),
        ((c, b, 0, (3, 2), out), r"out has shape \(2, 3, 3, 3\); expected \(N, F, CH//ph, CW//pw\) = \(2, 3, 2, 3\)"),
        ((c[:, :, :, ::2], b, 0, (2, 2), out), r"conv_out must be C-contiguous"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            e.pool_forward(*args)
    dconv = np.empty_like(c)
    db = np.empty_like(b)
    with pytest.raises(ValueError, match=r"pool_backward: dout is an output and must be writeable"):
        ro = np.ones_like(out)
        ro.flags.writeable = False
        e.pool_backward(c, out, ro, 0, (2, 2), dconv, db)
    with pytest.raises(ValueError, match=r"dconv has shape \(2, 3, 6, 5\)"):
        e.pool_backward(c, out, out.copy(), 0, (2, 2), dconv[..., :5].copy(), db)
    with pytest.raises(ValueError, match=r"db has dtype float64; expected float32"):
        e.pool_backward(c, out, out.copy(), 0, (2, 2), dconv, db.astype(np.float64))
