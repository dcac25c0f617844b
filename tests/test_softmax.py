"""softmax_forward, softmax_nll (fused softmax + mean NLL + gradient) and
softmax_argmax of each engine against the NumPy reference.

Shapes: the book's 10 classes at mini-batch 10 and 128, batch 1, one class,
many classes; large logits (exp must not overflow); argmax ties take the
first index.  The cost is a Python float accumulated in double.
"""

import numpy as np
import pytest

from kernel_check import In, Out, check_kernel, not_degenerate, run_kernel

# (case, N, K, logit scale)
SHAPES = [
    ("book", 10, 10, 3.0),
    ("book-b128", 128, 10, 3.0),
    ("batch1", 1, 5, 1.0),
    ("one-class", 4, 1, 1.0),
    ("many-classes", 7, 300, 2.0),
    ("large-logits", 6, 10, 500.0),
    ("parallel-rows", 2000, 10, 3.0),
]
IDS = [s[0] for s in SHAPES]


def _logits(shape, dtype, seed):
    _, N, K, s = shape
    rng = np.random.default_rng(seed)
    logits = (s * rng.standard_normal((N, K))).astype(dtype)
    y = rng.integers(0, K, size=N).astype(np.int32)
    if K > 1:
        not_degenerate(logits)
    return logits, y


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_softmax_forward(kernel_engine, float_dtype, shape):
    logits, _ = _logits(shape, float_dtype, 1)
    check_kernel(kernel_engine, "softmax_forward %s %s" % (shape[0], float_dtype),
                 "softmax_forward", [In(logits), Out(logits.shape, float_dtype)],
                 ["logits", "probs"], float_dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_softmax_nll(kernel_engine, float_dtype, shape):
    logits, y = _logits(shape, float_dtype, 2)
    got, want = check_kernel(
        kernel_engine, "softmax_nll %s %s" % (shape[0], float_dtype), "softmax_nll",
        [In(logits), In(y), Out(logits.shape, float_dtype), Out(logits.shape, float_dtype)],
        ["logits", "y", "probs", "dlogits"], float_dtype)
    assert type(got["ret"]) is float
    # the cost in double against a float64 evaluation of the same formula
    z = logits.astype(np.float64)
    m = z.max(axis=1)
    exact = np.mean(np.log(np.exp(z - m[:, None]).sum(axis=1)) + m - z[np.arange(len(y)), y])
    tol = 1e-6 if float_dtype == np.float32 else 1e-13
    assert abs(got["ret"] - exact) <= tol * max(1.0, abs(exact))


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_softmax_argmax(kernel_engine, float_dtype, shape):
    logits, _ = _logits(shape, float_dtype, 3)
    check_kernel(kernel_engine, "softmax_argmax %s %s" % (shape[0], float_dtype),
                 "softmax_argmax", [In(logits), Out((logits.shape[0],), np.int32)],
                 ["probs", "yout"], float_dtype)


def test_softmax_argmax_ties_and_nan(kernel_engine, float_dtype):
    """Equal maxima: the first index (an untrained net predicts class 0);
    a NaN counts as the maximum, as in np.argmax."""
    probs = np.array([[0.1] * 10,
                      [0.0, 0.3, 0.3, 0.1, 0, 0, 0, 0, 0, 0.3],
                      [0.2, np.nan, 0.9, np.nan, 0, 0, 0, 0, 0, 0],
                      [np.nan, 0.5, 0, 0, 0, 0, 0, 0, 0, 0.9]], float_dtype)
    got, want = run_kernel(kernel_engine, "softmax_argmax", [In(probs), Out((4,), np.int32)])
    assert got[1].tolist() == want[1].tolist() == [0, 1, 1, 0]


def test_softmax_bad_arguments(kernel_engine):
    e = kernel_engine
    logits = np.zeros((4, 3), np.float32)
    probs = np.empty_like(logits)
    d = np.empty_like(logits)
    y = np.array([0, 1, 2, 1], np.int32)
    cases = [
        ((logits, y.astype(np.int64), probs, d), r"softmax_nll: y has dtype int64; expected int32"),
        ((logits, y[:3], probs, d), r"y has shape \(3,\); expected \(N,\) = \(4,\)"),
        ((logits, np.array([0, 1, 3, 1], np.int32), probs, d), r"y\[2\] = 3 is not a class label in \[0, 3\)"),
        ((logits, np.array([0, -1, 0, 1], np.int32), probs, d), r"y\[1\] = -1"),
        ((logits, y, probs.astype(np.float64), d), r"probs has dtype float64; expected float32"),
        ((logits, y, probs, d[:, :2]), r"dlogits has shape \(4, 2\); expected \(N, K\) = \(4, 3\)"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            e.softmax_nll(*args)
    with pytest.raises(ValueError, match=r"softmax_forward: logits must be C-contiguous"):
        e.softmax_forward(np.zeros((3, 4), np.float32).T, probs[:, :3].copy().reshape(4, 3))
    with pytest.raises(ValueError, match=r"softmax_argmax: yout has dtype int64; expected int32"):
        e.softmax_argmax(logits, np.empty(4, np.int64))
    with pytest.raises(ValueError, match=r"argmax of 0 classes"):
        e.softmax_argmax(np.zeros((2, 0), np.float32), np.empty(2, np.int32))


@pytest.mark.parametrize("shape", [(1, 1), (4, 1), (7, 3), (33, 10)])
def test_sigmoid_bce_and_mse_against_reference(kernel_engine, float_dtype, shape):
    """DenseOutputLayer's costs: values, probabilities and gradients as the
    reference computes them, including saturated logits (|z| = 40)."""
    from fastnet.engines import reference as R
    rng = np.random.default_rng(5)
    z = (rng.standard_normal(shape) * 3).astype(float_dtype)
    z.flat[0] = 40.0
    z.flat[-1] = -40.0
    t = rng.random(shape).astype(float_dtype)
    rtol = 1e-12 if float_dtype == np.float64 else 1e-5
    want = [np.empty_like(z) for _ in range(2)]
    got = [np.empty_like(z) for _ in range(2)]
    c_want = R.sigmoid_bce(z, t, *want)
    c_got = kernel_engine.sigmoid_bce(z, t, *got)
    assert np.isfinite(c_got)
    np.testing.assert_allclose(c_got, c_want, rtol=rtol)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())
    c_want = R.mse_loss(z, t, want[0])
    c_got = kernel_engine.mse_loss(z, t, got[0])
    np.testing.assert_allclose(c_got, c_want, rtol=rtol)
    np.testing.assert_allclose(got[0], want[0], rtol=rtol, atol=rtol * np.abs(want[0]).max())


def test_sigmoid_bce_is_the_textbook_formula():
    """-(t log p + (1-t) log(1-p)) where p is not saturated; gradient by
    finite differences in float64."""
    from fastnet.engines import reference as R
    rng = np.random.default_rng(6)
    z = rng.standard_normal((5, 2))
    t = rng.random((5, 2))
    p, d = np.empty_like(z), np.empty_like(z)
    c = R.sigmoid_bce(z, t, p, d)
    sig = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(c, np.mean(-(t * np.log(sig) + (1 - t) * np.log(1 - sig))),
                               rtol=1e-13)
    h = 1e-6
    for i in range(z.size):
        zp, zm = z.copy(), z.copy()
        zp.flat[i] += h
        zm.flat[i] -= h
        fd = (R.sigmoid_bce(zp, t, p.copy(), d.copy()) - R.sigmoid_bce(zm, t, p.copy(), d.copy())) / (2 * h)
        assert abs(fd - d.flat[i]) < 1e-8


def test_new_costs_bad_arguments(kernel_engine):
    z = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="targets"):
        kernel_engine.sigmoid_bce(z, np.zeros((3, 3), np.float32), z.copy(), z.copy())
    with pytest.raises(ValueError, match="targets"):
        kernel_engine.mse_loss(z, np.zeros((3, 2), np.float64), z.copy())
