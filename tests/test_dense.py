"""dense_forward / dense_backward and dropout of each engine against the
NumPy reference.

Shapes: the book's 640x100 and 100x10 layers at mini-batch 10 and 128, odd
sizes, batch 1; every activation; inference scale (1 - p).  Dropout masks and
bits must be bit-identical to the reference (same counter-based formula).
"""

import numpy as np
import pytest

from fastnet.activations import SIGMOID, TANH, RELU, LINEAR
from kernel_check import In, InOut, Out, Const, check_kernel, not_degenerate, run_kernel

ACTS = [(SIGMOID, "sigmoid"), (TANH, "tanh"), (RELU, "relu"), (LINEAR, "linear")]

# (case, N, I, O)
SHAPES = [
    ("book-fc", 10, 640, 100),
    ("book-softmax", 10, 100, 10),
    ("book-fc-b128", 128, 640, 100),
    ("odd", 13, 33, 17),
    ("batch1", 1, 7, 3),
    ("one-output", 5, 9, 1),
    ("wide", 3, 2, 300),
    # a few rows through a big layer take the streaming products
    # (csrc/dense.pxd dense_streams): O = 200 ends in a partial vector,
    # N = 10 rows in two row tiles, I = 701 odd
    ("streamed", 10, 701, 200),
    ("streamed-b3", 3, 1000, 150),
    ("streamed-b16", 16, 512, 257),
]
IDS = [s[0] for s in SHAPES]


def _inputs(shape, dtype, seed):
    _, N, I, O = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, I)).astype(dtype)
    w = (rng.standard_normal((I, O)) / np.sqrt(I)).astype(dtype)
    b = rng.standard_normal(O).astype(dtype)
    dout = rng.standard_normal((N, O)).astype(dtype)
    not_degenerate(x, w, dout)
    return x, w, b, dout


@pytest.mark.parametrize("scale", [1.0, 0.5])
@pytest.mark.parametrize("act", ACTS, ids=[a[1] for a in ACTS])
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_dense_forward(kernel_engine, float_dtype, shape, act, scale):
    x, w, b, dout = _inputs(shape, float_dtype, 1)
    case = "dense_forward %s %s scale=%g %s" % (shape[0], act[1], scale, float_dtype)
    check_kernel(kernel_engine, case, "dense_forward",
                 [In(x), In(w), In(b), Const(act[0]), Const(scale),
                  Out(dout.shape, float_dtype)],
                 ["x", "w", "b", "act", "scale", "out"], float_dtype)


@pytest.mark.parametrize("need_dx", [True, False], ids=["dx", "no-dx"])
@pytest.mark.parametrize("act", ACTS, ids=[a[1] for a in ACTS])
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_dense_backward(kernel_engine, float_dtype, shape, act, need_dx):
    x, w, b, dout = _inputs(shape, float_dtype, 2)
    from fastnet.engines import get_engine
    out = np.empty(dout.shape, float_dtype)
    get_engine("reference").dense_forward(x, w, b, act[0], 1.0, out)
    case = "dense_backward %s %s %s" % (shape[0], act[1], float_dtype)
    check_kernel(kernel_engine, case, "dense_backward",
                 [In(x), In(w), In(out), InOut(dout), Const(act[0]),
                  Out(w.shape, float_dtype), Out(b.shape, float_dtype),
                  Out(x.shape, float_dtype) if need_dx else None],
                 ["x", "w", "out", "dout (overwritten with dz)", "act", "dw", "db", "dx"],
                 float_dtype)


def test_dense_empty_batch(kernel_engine):
    """N = 0: dw and db are sums over nothing, zero."""
    e = kernel_engine
    x = np.ones((0, 4))
    w = np.ones((4, 3))
    dw = np.full((4, 3), np.nan)
    db = np.full(3, np.nan)
    e.dense_backward(x, w, np.ones((0, 3)), np.ones((0, 3)), LINEAR, dw, db, np.ones((0, 4)))
    assert (dw == 0).all() and (db == 0).all()


def test_dense_bad_arguments(kernel_engine):
    e = kernel_engine
    x = np.ones((4, 6), np.float32)
    w = np.ones((6, 3), np.float32)
    b = np.ones(3, np.float32)
    out = np.empty((4, 3), np.float32)
    cases = [
        ((x.astype(np.float64), w, b, 0, 1.0, out), r"dense_forward: w has dtype float32; expected float64"),
        ((x, w[:5], b, 0, 1.0, out), r"w has shape \(5, 3\); expected \(I, O\) with I = 6"),
        ((x, w[None], b, 0, 1.0, out), r"w has shape \(1, 6, 3\); expected 2 dimensions"),
        ((x, w, b[:2], 0, 1.0, out), r"b has shape \(2,\); expected \(O,\) = \(3,\)"),
        ((x, w, b, -1, 1.0, out), r"unknown activation code -1"),
        ((x, w, b, 0, 1.0, out.T), r"out has shape \(3, 4\); expected \(N, O\) = \(4, 3\)"),
        ((x[:, ::2], w[:3], b, 0, 1.0, out), r"x must be C-contiguous"),
        ((x.ravel(), w, b, 0, 1.0, out), r"x has shape \(24,\); expected 2 dimensions \(N, I\)"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            e.dense_forward(*args)
    dw, db, dx = np.empty_like(w), np.empty_like(b), np.empty_like(x)
    with pytest.raises(ValueError, match=r"dense_backward: dx has shape \(4, 5\)"):
        e.dense_backward(x, w, out, out.copy(), 0, dw, db, dx[:, :5].copy())
    with pytest.raises(ValueError, match=r"dense_backward: dw has dtype float64"):
        e.dense_backward(x, w, out, out.copy(), 0, dw.astype(np.float64), db, dx)


# ---------------------------------------------------------------------------
# dropout
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed,counter,n", [
    (0, 0, 1000), (12345, 7, 6400), (2 ** 64 - 1, 2 ** 63, 33), (987654321, 2 ** 40, 0)])
def test_dropout_bits_match_the_reference(kernel_engine, seed, counter, n):
    from fastnet.engines import get_engine
    got = kernel_engine.to_host(kernel_engine.dropout_bits(seed, counter, n))
    want = get_engine("reference").dropout_bits(seed, counter, n)
    assert got.dtype == np.uint32 and got.shape == (n,)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("p", [0.0, 0.5, 0.3, 1.0])
@pytest.mark.parametrize("shape", [(10, 640), (128, 100), (3, 7)])
def test_dropout_forward_is_bit_identical(kernel_engine, float_dtype, p, shape):
    x = np.random.default_rng(5).standard_normal(shape).astype(float_dtype)
    specs = [In(x), Const(p), Const(505), Const(41), Out(shape, np.uint8), Out(shape, float_dtype)]
    got, want = run_kernel(kernel_engine, "dropout_forward", specs)
    assert np.array_equal(got[4], want[4]), "masks differ from the reference"
    assert np.array_equal(got[5], want[5]), "dropped-out inputs differ from the reference"
    kept = got[4].mean()
    if 0 < p < 1 and x.size > 1000:
        assert abs(kept - (1 - p)) < 0.05


def test_dropout_backward(kernel_engine, float_dtype):
    rng = np.random.default_rng(6)
    dout = rng.standard_normal((10, 100)).astype(float_dtype)
    mask = (rng.random((10, 100)) < 0.5).astype(np.uint8)
    got, want = run_kernel(kernel_engine, "dropout_backward",
                           [In(dout), In(mask), Out(dout.shape, float_dtype)])
    assert np.array_equal(got[2], want[2])


def test_dropout_bad_arguments(kernel_engine):
    e = kernel_engine
    x = np.ones((4, 5), np.float32)
    mask = np.empty((4, 5), np.uint8)
    out = np.empty((4, 5), np.float32)
    cases = [
        ((x, 0.5, 1, 0, mask.astype(bool), out), r"dropout_forward: mask has dtype bool; expected uint8"),
        ((x, 0.5, 1, 0, mask[:3], out), r"mask has shape \(3, 5\); expected \(N, I\) = \(4, 5\)"),
        ((x, 0.5, -1, 0, mask, out), r"seed must be in \[0, 2\*\*64\)"),
        ((x, 0.5, 1, 2 ** 64, mask, out), r"counter must be in \[0, 2\*\*64\)"),
        ((x, 0.5, 1.5, 0, mask, out), r"seed must be an integer"),
        ((x, 1.5, 1, 0, mask, out), r"p_dropout must be in \[0, 1\]"),
        ((x, 0.5, 1, 0, mask, out.astype(np.float64)), r"out has dtype float64; expected float32"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            e.dropout_forward(*args)
    with pytest.raises(ValueError, match=r"dropout_backward: dx has shape \(5, 4\)"):
        e.dropout_backward(x, mask, out.reshape(5, 4))
    with pytest.raises(ValueError, match=r"dropout_bits: n must be >= 0"):
        e.dropout_bits(1, 2, -3)


# pre-activations that probe the activations' edges: signed zeros, tiny and
# huge magnitudes, exp's float32 / float64 overflow points, infinities
_EDGE_Z = [0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 0.5, -0.5, 3.0, -3.0,
           17.0, -17.0, 36.0, -36.0, 88.5, -88.5, 104.0, -104.0, 710.0, -710.0,
           746.0, -746.0, 1e30, -1e30, np.inf, -np.inf]


@pytest.mark.parametrize("act,name", [(SIGMOID, "sigmoid"), (TANH, "tanh")])
@pytest.mark.parametrize("O", [1, 7, 8, 15, 16, 17, 33, 51])
def test_activation_edges_and_tails(kernel_engine, float_dtype, act, name, O):
    """Sigmoid and tanh of chosen pre-activations (z = 0 * x + b, exact) in
    every position of rows whose lengths end in every kind of vector tail:
    within a few ulps of the reference, exactly 0 / 1 / -1 where it is,
    never NaN for a finite z, NaN for a NaN z; the same value in every
    position (vector body or tail)."""
    from fastnet.engines import reference
    if hasattr(kernel_engine, "vector_activations"):
        print("vector activations:", kernel_engine.vector_activations())
    z = np.array(_EDGE_Z + [np.nan], dtype=float_dtype)
    ulps = 4
    tiny = np.finfo(float_dtype).tiny
    seen = {}
    for shift in range(O):
        b = np.roll(np.resize(z, O), shift).astype(float_dtype)
        N = 3
        x = np.ones((N, 1), float_dtype)
        w = np.zeros((1, O), float_dtype)
        got = np.empty((N, O), float_dtype)
        want = np.empty((N, O), float_dtype)
        kernel_engine.dense_forward(x, w, b, act, 1.0, got)
        reference.dense_forward(x, w, b, act, 1.0, want)
        nan = np.isnan(b)
        assert np.array_equal(np.isnan(got), np.broadcast_to(nan, got.shape)), \
            "%s: NaN where z is not NaN (or lost) at O=%d" % (name, O)
        g, r = got[:, ~nan], want[:, ~nan]
        exact = np.isin(r, (0.0, 1.0, -1.0))
        assert np.array_equal(g[exact], r[exact]), "%s: saturated values differ" % name
        tol = ulps * np.spacing(np.abs(r).astype(float_dtype)) + tiny
        bad = np.abs(g - r) > tol
        assert not bad.any(), "%s O=%d: z=%s got %s want %s" % (
            name, O, b[~nan][bad.any(axis=0)], g[bad], r[bad])
        for zi, gi in zip(b, got[0]):
            seen.setdefault(float(zi), set()).add(float(gi))
    # each z gets one value wherever it sits (vector body or tail) and in
    # every row
    assert all(len(v) == 1 for v in seen.values()), seen
    assert all(np.array_equal(got[0], row, equal_nan=True) for row in got)
