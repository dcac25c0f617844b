"""One helper for every kernel test: run a kernel on an engine and on the
reference with the same arguments, then compare shape, dtype and values.

    got, want = run_kernel(engine, "conv_forward",
                           [In(x), In(w), Out((N, F, OH, OW), dtype)])
    compare_outputs("conv1", got, want, dtype)

Arguments are described once and materialised on each engine (``In``: an
input, copied; ``InOut``: overwritten by the kernel, compared afterwards;
``Out``: allocated by the test, filled with NaN or a sentinel first so that an
element the kernel forgets to write shows up; ``Const``: a plain value;
``None``: passed as None).  Values are compared the way the conformance
README does: max|got - want| <= rtol * max|want| + atol, per array -- an
elementwise relative test would flag every sum that cancels to nearly zero.
"""

import numpy as np

from fastnet.engines import get_engine

# float32: a GEMM of a few hundred terms in a different order than NumPy's
# differs by a few ulps of the largest term, ~1e-6 of max|want|; 1e-5 leaves
# headroom (the conformance README's float32 tolerance too).  float64: the
# same rounding at 2e-16 per ulp.
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
ATOL = {np.dtype(np.float32): 1e-7, np.dtype(np.float64): 1e-14}


class In(object):
    def __init__(self, array):
        self.array = np.ascontiguousarray(array)


class InOut(In):
    pass


class Out(object):
    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    def initial(self):
        if self.dtype.kind == "f":
            return np.full(self.shape, np.nan, self.dtype)
        return np.full(self.shape, 77, self.dtype)   # not a plausible result


class Const(object):
    def __init__(self, value):
        self.value = value


def _materialise(e, spec):
    if spec is None:
        return None
    if isinstance(spec, Const):
        return spec.value
    if isinstance(spec, In):
        return e.to_device(spec.array)
    return e.to_device(spec.initial())


def run_kernel(engine, name, specs):
    """Call kernel `name` on `engine` and on the reference.

    Returns (got, want): dicts from argument index (Out and InOut arguments)
    and "ret" (the return value) to host arrays / values.
    """
    reference = get_engine("reference")
    results = []
    for e in (engine, reference):
        args = [_materialise(e, s) for s in specs]
        ret = getattr(e, name)(*args)
        e.synchronize()
        res = {"ret": ret}
        for i, s in enumerate(specs):
            if isinstance(s, (Out, InOut)):
                res[i] = e.to_host(args[i])
        results.append(res)
    return results[0], results[1]


def first_bad_index(got, want, limit):
    bad = np.abs(got.astype(np.float64) - want.astype(np.float64)) > limit
    bad |= np.isnan(got) != np.isnan(want)
    if not bad.any():
        return None
    return tuple(int(i) for i in np.unravel_index(np.argmax(bad), bad.shape))


def assert_close(case, label, got, want, dtype, rtol=None, atol=None):
    """Shape and dtype first, then max|got - want| <= rtol*max|want| + atol
    (NaN where the reference has NaN); the message gives the case, the
    array, max|delta|, max|want| and the first differing index."""
    dtype = np.dtype(dtype)
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, "%s: %s has shape %s; the reference gives %s" % (
        case, label, got.shape, want.shape)
    assert got.dtype == want.dtype, "%s: %s has dtype %s; the reference gives %s" % (
        case, label, got.dtype, want.dtype)
    if got.dtype.kind not in "fc":
        if not np.array_equal(got, want):
            idx = tuple(int(i) for i in np.argwhere(got != want)[0])
            raise AssertionError("%s: %s differs from the reference; first at %s: %r != %r"
                                 % (case, label, idx, got[idx], want[idx]))
        return
    rtol = RTOL[dtype] if rtol is None else rtol
    atol = ATOL[dtype] if atol is None else atol
    finite = np.isfinite(want)
    scale = float(np.max(np.abs(want[finite]))) if finite.any() else 0.0
    limit = rtol * scale + atol
    delta = np.abs(got.astype(np.float64) - want.astype(np.float64))
    delta = np.where(np.isnan(want) & np.isnan(got), 0.0, delta)
    worst = float(np.nanmax(delta)) if delta.size else 0.0
    idx = first_bad_index(got, want, limit)
    if idx is not None or not (worst <= limit):
        raise AssertionError(
            "%s: %s differs from the reference: max|delta| = %.3g, max|ref| = %.3g "
            "(allowed %.3g = rtol %.0e * max|ref| + atol %.0e); first bad index %s: "
            "got %r, want %r" % (case, label, worst, scale, limit, rtol, atol, idx,
                                 got[idx] if idx is not None else None,
                                 want[idx] if idx is not None else None))


def compare_outputs(case, specs, got, want, dtype, names, rtol=None, atol=None):
    """assert_close on every Out / InOut argument (named by `names`) and the
    return value when the reference returns one."""
    for i, s in enumerate(specs):
        if isinstance(s, (Out, InOut)):
            assert_close(case, names[i], got[i], want[i], dtype, rtol, atol)
    if want["ret"] is not None:
        assert type(got["ret"]) is type(want["ret"]), (
            "%s: returns %s; the reference returns %s"
            % (case, type(got["ret"]).__name__, type(want["ret"]).__name__))
        assert_close(case, "the return value", np.float64(got["ret"]),
                     np.float64(want["ret"]), dtype, rtol, atol)


def check_kernel(engine, case, name, specs, names, dtype, rtol=None, atol=None):
    """run_kernel + compare_outputs: one line per kernel case."""
    got, want = run_kernel(engine, name, specs)
    compare_outputs(case, specs, got, want, dtype, names, rtol, atol)
    return got, want


def not_degenerate(*arrays):
    """Test inputs must vary: an all-equal array would let a wrong kernel pass."""
    for a in arrays:
        a = np.asarray(a)
        assert a.size < 2 or np.ptp(a) > 0, "degenerate test input: all values equal"
