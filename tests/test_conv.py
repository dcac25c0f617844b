"""conv_forward / conv_backward of each engine against the NumPy reference.

Shapes: the book's two layers (mini-batch 10), odd and non-square images,
batch 1, a kernel as large as the image, a 1x1 kernel.  Then tie-consistency
(equal input patches give bitwise-equal outputs, which max-pool ties depend
on: conformance README, behaviour 7), the thread count, and bad arguments.
"""

import numpy as np
import pytest

from kernel_check import In, Out, Const, check_kernel, not_degenerate

# (case, N, C, H, W, F, KH, KW)
SHAPES = [
    ("book-conv1", 10, 1, 28, 28, 20, 5, 5),
    ("book-conv2", 10, 20, 12, 12, 40, 5, 5),
    ("odd", 7, 3, 13, 17, 4, 4, 3),
    ("batch1", 1, 2, 9, 7, 3, 3, 2),
    ("kernel=image", 2, 3, 5, 6, 4, 5, 6),
    ("1x1", 3, 4, 6, 5, 2, 1, 1),
    ("tall", 3, 2, 19, 4, 5, 2, 3),
    # K = C*KH*KW >= 128 takes csrc/bcast_gemm.h's product: odd F (edge row
    # tiles), P = 35 (a partial vector and the padded-positions copy), K = 135
    ("many-taps-odd", 3, 15, 9, 11, 7, 3, 3),
    # P = 16 * 5 columns: whole vectors but an edge column tile; F = 13
    ("many-taps-wide", 2, 8, 8, 23, 13, 4, 4),
]
IDS = [s[0] for s in SHAPES]


def _inputs(shape, dtype, seed):
    _, N, C, H, W, F, KH, KW = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C, KH, KW)).astype(dtype)
    dout = rng.standard_normal((N, F, H - KH + 1, W - KW + 1)).astype(dtype)
    not_degenerate(x, w, dout)
    return x, w, dout


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_conv_forward(kernel_engine, float_dtype, shape):
    x, w, dout = _inputs(shape, float_dtype, 1)
    case = "conv_forward %s %s" % (shape[0], float_dtype)
    check_kernel(kernel_engine, case, "conv_forward",
                 [In(x), In(w), Out(dout.shape, float_dtype)],
                 ["x", "w", "out"], float_dtype)


@pytest.mark.parametrize("need_dx", [True, False], ids=["dx", "no-dx"])
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_conv_backward(kernel_engine, float_dtype, shape, need_dx):
    x, w, dout = _inputs(shape, float_dtype, 2)
    case = "conv_backward %s %s" % (shape[0], float_dtype)
    check_kernel(kernel_engine, case, "conv_backward",
                 [In(x), In(w), In(dout), Out(w.shape, float_dtype),
                  Out(x.shape, float_dtype) if need_dx else None],
                 ["x", "w", "dout", "dw", "dx"], float_dtype)


def test_conv_backward_is_the_adjoint(kernel_engine):
    """<conv(x), d> = <x, dx> and = <w, dw>: the gradients of the sum."""
    x, w, dout = _inputs(("odd", 5, 3, 11, 9, 4, 3, 4), np.float64, 3)
    e = kernel_engine
    out = np.empty(dout.shape)
    e.conv_forward(x, w, out)
    dw, dx = np.empty(w.shape), np.empty(x.shape)
    e.conv_backward(x, w, dout, dw, dx)
    lhs = float(np.sum(out * dout))
    assert abs(lhs - float(np.sum(x * dx))) <= 1e-10 * abs(lhs)
    assert abs(lhs - float(np.sum(w * dw))) <= 1e-10 * abs(lhs)


# ---------------------------------------------------------------------------
# tie-consistency
# ---------------------------------------------------------------------------
def _patchy_input(N, C, H, W, KH, KW, dtype, seed):
    """x with many equal KHxKW patches: a constant background per channel
    (like ReLU(b) over blank MNIST) and one random motif stamped at the
    corners, the edges and random places of every image."""
    rng = np.random.default_rng(seed)
    x = np.empty((N, C, H, W), dtype)
    x[...] = rng.standard_normal(C).astype(dtype)[None, :, None, None]
    motif = rng.standard_normal((C, KH + 1, KW + 1)).astype(dtype)
    mh, mw = motif.shape[1:]
    corners = [(0, 0), (0, W - mw), (H - mh, 0), (H - mh, W - mw)]
    for n in range(N):
        spots = [corners[n % 4], corners[(n + 1) % 4],
                 (int(rng.integers(0, H - mh + 1)), int(rng.integers(0, W - mw + 1)))]
        for (a, b) in spots:
            x[n, :, a:a + mh, b:b + mw] = motif
    return x


def _assert_tie_consistent(case, x, w, out):
    """Every group of equal input patches has bitwise-equal outputs."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    OH, OW = H - KH + 1, W - KW + 1
    from numpy.lib.stride_tricks import sliding_window_view
    windows = sliding_window_view(x, (KH, KW), axis=(2, 3))       # (N,C,OH,OW,KH,KW)
    patches = np.ascontiguousarray(windows.transpose(0, 2, 3, 1, 4, 5)).reshape(N * OH * OW, -1)
    _, group = np.unique(patches, axis=0, return_inverse=True)
    group = group.reshape(-1)
    flat = out.transpose(0, 2, 3, 1).reshape(N * OH * OW, F)     # row: a position
    sizes = np.bincount(group)
    tied = sizes[sizes >= 2]
    assert len(tied) >= 5 and tied.sum() >= 40, "test input has too few equal patches"
    for g in np.flatnonzero(sizes >= 2):
        rows = flat[group == g]
        if not (rows == rows[0]).all():
            bad = np.flatnonzero(~(rows == rows[0]).all(axis=1))[0]
            pos = np.flatnonzero(group == g)
            n, rest = divmod(int(pos[bad]), OH * OW)
            raise AssertionError(
                "%s: equal input patches give different outputs: position (n=%d, i=%d, "
                "j=%d) vs (n=%d, i=%d, j=%d), max|delta| = %.3g"
                % (case, n, rest // OW, rest % OW, pos[0] // (OH * OW),
                   (pos[0] % (OH * OW)) // OW, pos[0] % OW,
                   np.abs(rows[bad].astype(np.float64) - rows[0]).max()))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [
    ("book-conv1", 10, 1, 28, 28, 20, 5, 5),
    ("book-conv2", 10, 20, 12, 12, 40, 5, 5),
    ("book-conv2-b7", 7, 20, 12, 12, 40, 5, 5),
    ("book-conv2-b128", 128, 20, 12, 12, 40, 5, 5),
    ("odd", 9, 3, 23, 19, 13, 4, 3),
    ("wide", 3, 2, 9, 41, 33, 3, 5),
    ("many-taps-odd", 5, 15, 13, 11, 7, 3, 3),    # bcast_gemm, P = 99
], ids=lambda s: s[0])
def test_conv_forward_is_tie_consistent(kernel_engine, cpu_threads, float_dtype, shape,
                                        threads):
    case, N, C, H, W, F, KH, KW = shape
    cpu_threads.set_num_threads(threads)
    x = _patchy_input(N, C, H, W, KH, KW, float_dtype, 5)
    w = np.random.default_rng(6).standard_normal((F, C, KH, KW)).astype(float_dtype)
    out = np.empty((N, F, H - KH + 1, W - KW + 1), float_dtype)
    kernel_engine.conv_forward(kernel_engine.to_device(x), kernel_engine.to_device(w), out)
    _assert_tie_consistent("%s %s %d threads" % (case, float_dtype, threads), x, w, out)


# ---------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("N", [7, 13])     # fewer samples than CONV_BLOCKS, and more
def test_conv_thread_counts_agree(cpu_threads, N):
    """1, 2, 3 and 5 threads (more than the cores is allowed) give the same
    forward and backward bitwise: the weight gradient is summed in blocks
    fixed by the batch size (conv.pxd's conv_blocks), not per thread."""
    x, w, dout = _inputs(("odd", N, 3, 13, 17, 4, 4, 3), np.float32, 7)
    outs, dws, dxs = [], [], []
    for n in (1, 2, 3, 5):
        cpu_threads.set_num_threads(n)
        assert cpu_threads.get_num_threads() == (n if cpu_threads.openmp_enabled() else 1)
        out = np.empty(dout.shape, np.float32)
        cpu_threads.conv_forward(x, w, out)
        dw, dx = np.empty_like(w), np.empty_like(x)
        cpu_threads.conv_backward(x, w, dout, dw, dx)
        outs.append(out)
        dws.append(dw)
        dxs.append(dx)
    for k in (1, 2, 3):
        assert np.array_equal(outs[0], outs[k])
        assert np.array_equal(dxs[0], dxs[k])
        assert np.array_equal(dws[0], dws[k]), "dw with %d threads" % (1, 2, 3, 5)[k]


def test_scipy_openblas_runs_single_threaded(cpu_threads):
    """The kernels call BLAS from their own threads: an OpenBLAS behind
    scipy must have been set to one thread (fastnet/_cpu/__init__.py)."""
    import scipy
    try:
        blas = scipy.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # noqa: BLE001 -- an older scipy without the dict form
        blas = ""
    if "openblas" not in str(blas).lower():
        pytest.skip("scipy's BLAS is %r, not OpenBLAS" % (blas,))
    info = cpu_threads.blas_info()
    assert info["limited"], info


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_set_num_threads_rejects(cpu_threads, bad):
    with pytest.raises(ValueError, match="set_num_threads"):
        cpu_threads.set_num_threads(bad)


# ---------------------------------------------------------------------------
# bad arguments: ValueError naming the argument, never a crash
# ---------------------------------------------------------------------------
def _good(dtype=np.float32):
    x = np.ones((2, 3, 8, 7), dtype)
    w = np.ones((4, 3, 3, 2), dtype)
    out = np.zeros((2, 4, 6, 6), dtype)   # zeros: the cases cast it to other dtypes
    return x, w, out


def test_conv_forward_bad_arguments(kernel_engine):
    f = kernel_engine.conv_forward
    x, w, out = _good()
    cases = [
        ((x.astype(np.int64), w, out), r"conv_forward: x has dtype int64; expected float32 or float64"),
        ((x.astype(np.float16), w, out), r"x has dtype float16"),
        ((x, w.astype(np.float64), out), r"w has dtype float64; expected float32"),
        ((x, w, out.astype(np.float64)), r"out has dtype float64; expected float32"),
        ((x[0], w, out), r"x has shape \(3, 8, 7\); expected 4 dimensions \(N, C, H, W\)"),
        ((x, w[:, :2].copy(), out), r"w has shape \(4, 2, 3, 2\); expected \(F, C, KH, KW\) with C = 3"),
        ((x, np.ones((4, 3, 9, 2), np.float32), out), r"w's kernel"),
        ((x, w, out[:, :, :5]), r"out has shape \(2, 4, 5, 6\); expected \(N, F, OH, OW\) = \(2, 4, 6, 6\)"),
        ((x[:, :, ::-1], w, out), r"x must be C-contiguous"),
        ((x, w.transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2), out), r"w must be C-contiguous"),
        ((x.tolist(), w, out), r"x must be a numpy.ndarray, got list"),
        ((x, w, None), r"out must be a numpy.ndarray"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            f(*args)
    ro = out.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out is an output and must be writeable"):
        f(x, w, ro)


def test_conv_backward_bad_arguments(kernel_engine):
    f = kernel_engine.conv_backward
    x, w, out = _good(np.float64)
    dw, dx = np.zeros_like(w), np.zeros_like(x)   # zeroed: the cases cast them
    cases = [
        ((x, w, out.astype(np.float32), dw, dx), r"conv_backward: dout has dtype float32; expected float64"),
        ((x, w, out[:1], dw, dx), r"dout has shape \(1, 4, 6, 6\); expected \(N, F, OH, OW\) = \(2, 4, 6, 6\)"),
        ((x, w, out, dw[:, :, :2], dx), r"dw has shape \(4, 3, 2, 2\); expected \(F, C, KH, KW\) = \(4, 3, 3, 2\)"),
        ((x, w, out, dw, dx[1:]), r"dx has shape \(1, 3, 8, 7\); expected \(N, C, H, W\) = \(2, 3, 8, 7\)"),
        ((x, w, out, dw, dx.astype(np.float32)), r"dx has dtype float32; expected float64"),
        ((x, w, np.asfortranarray(out), dw, dx), r"dout must be C-contiguous"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            f(*args)


def test_conv_empty_batch_and_no_filters(kernel_engine):
    """N = 0: dw is zero; F = 0: dx is zero (sums over nothing)."""
    e = kernel_engine
    x = np.ones((0, 2, 5, 5))
    w = np.ones((3, 2, 2, 2))
    out = np.empty((0, 3, 4, 4))
    e.conv_forward(x, w, out)
    dw = np.full(w.shape, np.nan)
    e.conv_backward(x, w, out, dw, np.empty_like(x))
    assert (dw == 0).all()
    x = np.ones((2, 2, 5, 5))
    w = np.ones((0, 2, 2, 2))
    dx = np.full(x.shape, np.nan)
    e.conv_backward(x, w, np.empty((2, 0, 4, 4)), np.empty_like(w), dx)
    assert (dx == 0).all()
