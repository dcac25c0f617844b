"""Property tests of the compiled CPU kernels: any input, no crash.

Hypothesis feeds every kernel of ``get_engine("cpu")`` random shapes
(sizes 0 and 1 included), dtypes and layouts, one fault at a time:

    none        valid arrays                 -> the reference's result
    layout      one array non-contiguous     -> the reference's result, or ValueError
                (a strided or Fortran view)
    readonly    one array not writeable      -> inputs: result or ValueError;
                                                outputs: ValueError
    dtype       one array of another dtype   -> ValueError, or (inputs only) the
                (int, uint8, bool, float16,     reference's result on the cast values
                complex, the other float)
    shape       one array one size off,      -> ValueError (unless the contract
                or a dimension more/less        still holds, then the result)
    value       a label outside [0, K), an   -> ValueError (dropout's p outside
                unknown activation code, a      [0, 1): ValueError or the
                poolsize of 0, p outside        reference's result)
                [0, 1)

A result is checked against ``get_engine("reference")`` on contiguous copies,
inputs must come back unchanged, and every output array sits between guard
elements that must come back unchanged: a kernel that ignores strides or writes
past an end fails here even without AddressSanitizer (.ci/asan.sh runs this
file under ASan).  A segfault ends the run, which fails it; so does an
exception raised and swallowed inside a nogil kernel (Cython prints it as
"Exception ignored", pytest's PytestUnraisableExceptionWarning).

The cpu engine not built: skipped with the reason; under CI=true a failure.
FASTNET_FUZZ_EXAMPLES sets the examples of valid calls per kernel (default
30); each fault on each argument gets a quarter of that.
"""

import os
import warnings

import numpy as np
import pytest

try:
    import hypothesis  # noqa: F401
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("hypothesis is not installed (pip install '.[test]')",
                allow_module_level=True)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastnet  # noqa: E402
from fastnet.activations import LINEAR, RELU, SIGMOID, TANH  # noqa: E402

# an exception inside a nogil kernel is printed and ignored by Cython, the
# kernel goes on in a broken state: that fails the test too
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

REF = fastnet.get_engine("reference")
EXAMPLES = int(os.environ.get("FASTNET_FUZZ_EXAMPLES", "30"))     # valid calls
FAULT_EXAMPLES = max(1, EXAMPLES // 4)                              # each fault x argument
ACTS = [SIGMOID, TANH, RELU, LINEAR]
FLOATS = [np.float32, np.float64]
OTHER_DTYPES = [np.float32, np.float64, np.float16, np.int32, np.int64, np.uint8,
                np.bool_, np.complex64]
GUARD = 16                                 # elements of guard on each side of an output
TOL = {np.dtype(np.float32): dict(rtol=2e-4, atol=2e-5),
       np.dtype(np.float64): dict(rtol=1e-9, atol=1e-11)}


def _cpu():
    try:
        return fastnet.get_engine("cpu")
    except ImportError as exc:
        reason = ("the compiled cpu engine is not built (%s); build it with "
                  "`pip install -e .` or `python setup.py build_ext --inplace`" % exc)
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " -- CI=true: it must be built")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def cpu():
    return _cpu()


# ---------------------------------------------------------------------------
# the kernels' contracts: arguments and the shapes they must agree on
# ---------------------------------------------------------------------------
class Arg(object):
    """One argument: ``kind`` in in/out/inout/opt_out (an output that may be
    None)/scalar; ``dtype`` 'float', 'uint8' or 'int32'; ``shape(d)`` its
    shape from the example's sizes ``d``; ``make`` its value:
    ``make(d)`` for a scalar, ``make(rng, shape, dtype, d)`` for an array."""

    def __init__(self, name, kind, shape=None, dtype="float", make=None):
        self.name, self.kind, self.shape, self.dtype, self.make = name, kind, shape, dtype, make


def _pooled(d):
    return (d["N"], d["F"], d["CH"] // d["ph"], d["CW"] // d["pw"])


def _uniform(rng, shape, dtype, d=None):
    return rng.uniform(-3.0, 3.0, size=shape).astype(dtype)


def _ties(rng, shape, dtype, d=None):
    # coarse values: max-pool windows with ties (Theano's rule routes to all)
    return (rng.randint(-4, 5, size=shape) * 0.5).astype(dtype)


KERNELS = {
    "conv_forward": [
        Arg("x", "in", lambda d: (d["N"], d["C"], d["H"], d["W"])),
        Arg("w", "in", lambda d: (d["F"], d["C"], d["KH"], d["KW"])),
        Arg("out", "out", lambda d: (d["N"], d["F"], d["H"] - d["KH"] + 1, d["W"] - d["KW"] + 1)),
    ],
    "conv_backward": [
        Arg("x", "in", lambda d: (d["N"], d["C"], d["H"], d["W"])),
        Arg("w", "in", lambda d: (d["F"], d["C"], d["KH"], d["KW"])),
        Arg("dout", "in", lambda d: (d["N"], d["F"], d["H"] - d["KH"] + 1, d["W"] - d["KW"] + 1)),
        Arg("dw", "out", lambda d: (d["F"], d["C"], d["KH"], d["KW"])),
        Arg("dx", "opt_out", lambda d: (d["N"], d["C"], d["H"], d["W"])),
    ],
    "pool_forward": [
        Arg("conv_out", "in", lambda d: (d["N"], d["F"], d["CH"], d["CW"]), make=_ties),
        Arg("b", "in", lambda d: (d["F"],)),
        Arg("act", "scalar", make=lambda d: d["act"]),
        Arg("poolsize", "scalar", make=lambda d: (d["ph"], d["pw"])),
        Arg("out", "out", _pooled),
    ],
    "pool_backward": [
        Arg("conv_out", "in", lambda d: (d["N"], d["F"], d["CH"], d["CW"]), make=_ties),
        Arg("out", "in", _pooled),
        Arg("dout", "inout", _pooled),
        Arg("act", "scalar", make=lambda d: d["act"]),
        Arg("poolsize", "scalar", make=lambda d: (d["ph"], d["pw"])),
        Arg("dconv", "out", lambda d: (d["N"], d["F"], d["CH"], d["CW"])),
        Arg("db", "out", lambda d: (d["F"],)),
    ],
    "dense_forward": [
        Arg("x", "in", lambda d: (d["N"], d["I"])),
        Arg("w", "in", lambda d: (d["I"], d["O"])),
        Arg("b", "in", lambda d: (d["O"],)),
        Arg("act", "scalar", make=lambda d: d["act"]),
        Arg("scale", "scalar", make=lambda d: d["scale"]),
        Arg("out", "out", lambda d: (d["N"], d["O"])),
    ],
    "dense_backward": [
        Arg("x", "in", lambda d: (d["N"], d["I"])),
        Arg("w", "in", lambda d: (d["I"], d["O"])),
        Arg("out", "in", lambda d: (d["N"], d["O"])),
        Arg("dout", "inout", lambda d: (d["N"], d["O"])),
        Arg("act", "scalar", make=lambda d: d["act"]),
        Arg("dw", "out", lambda d: (d["I"], d["O"])),
        Arg("db", "out", lambda d: (d["O"],)),
        Arg("dx", "opt_out", lambda d: (d["N"], d["I"])),
    ],
    "dropout_forward": [
        Arg("x", "in", lambda d: (d["N"], d["I"])),
        Arg("p_dropout", "scalar", make=lambda d: d["p"]),
        Arg("seed", "scalar", make=lambda d: d["seed"]),
        Arg("counter", "scalar", make=lambda d: d["counter"]),
        Arg("mask", "out", lambda d: (d["N"], d["I"]), dtype="uint8"),
        Arg("out", "out", lambda d: (d["N"], d["I"])),
    ],
    "dropout_backward": [
        Arg("dout", "in", lambda d: (d["N"], d["I"])),
        Arg("mask", "in", lambda d: (d["N"], d["I"]), dtype="uint8",
            make=lambda rng, s, t, d: rng.randint(0, 2, size=s).astype(t)),
        Arg("dx", "out", lambda d: (d["N"], d["I"])),
    ],
    "softmax_forward": [
        Arg("logits", "in", lambda d: (d["N"], d["K"])),
        Arg("probs", "out", lambda d: (d["N"], d["K"])),
    ],
    "softmax_nll": [
        Arg("logits", "in", lambda d: (d["N"], d["K"])),
        Arg("y", "in", lambda d: (d["N"],), dtype="int32",
            make=lambda rng, s, t, d: rng.randint(0, d["K"], size=s).astype(t)),
        Arg("probs", "out", lambda d: (d["N"], d["K"])),
        Arg("dlogits", "out", lambda d: (d["N"], d["K"])),
    ],
    "softmax_argmax": [
        Arg("probs", "in", lambda d: (d["N"], d["K"]), make=_ties),
        Arg("yout", "out", lambda d: (d["N"],), dtype="int32"),
    ],
    "sgd_update": [
        Arg("param", "inout", lambda d: d["pshape"]),
        Arg("grad", "in", lambda d: d["pshape"]),
        Arg("eta", "scalar", make=lambda d: d["eta"]),
        Arg("l2", "scalar", make=lambda d: d["l2"]),
    ],
    "sum_of_squares": [
        Arg("w", "in", lambda d: d["pshape"]),
    ],
}


def consistent(kernel, a):
    """Whether the arrays in ``a`` (name -> array or value) meet the
    kernel's shape contract (the reference's docstrings)."""
    s = {k: (v.shape if isinstance(v, np.ndarray) else v) for k, v in a.items()}

    def nd(*names_ndims):
        return all(isinstance(a[n], np.ndarray) and a[n].ndim == k for n, k in names_ndims)

    if kernel in ("conv_forward", "conv_backward"):
        if not nd(("x", 4), ("w", 4)):
            return False
        N, C, H, W = s["x"]
        F, C2, KH, KW = s["w"]
        o = (N, F, H - KH + 1, W - KW + 1)
        ok = C2 == C and 1 <= KH <= H and 1 <= KW <= W
        if kernel == "conv_forward":
            return ok and s["out"] == o
        return (ok and s["dout"] == o and s["dw"] == s["w"]
                and (a["dx"] is None or s["dx"] == s["x"]))
    if kernel in ("pool_forward", "pool_backward"):
        if not nd(("conv_out", 4)):
            return False
        N, F, CH, CW = s["conv_out"]
        ph, pw = a["poolsize"]
        if ph < 1 or pw < 1:
            return False
        o = (N, F, CH // ph, CW // pw)
        if kernel == "pool_forward":
            return s["b"] == (F,) and s["out"] == o
        return (s["out"] == o and s["dout"] == o and s["dconv"] == s["conv_out"]
                and s["db"] == (F,))
    if kernel in ("dense_forward", "dense_backward"):
        if not nd(("x", 2), ("w", 2)):
            return False
        N, I = s["x"]
        I2, O = s["w"]
        if I2 != I:
            return False
        if kernel == "dense_forward":
            return s["b"] == (O,) and s["out"] == (N, O)
        return (s["out"] == (N, O) and s["dout"] == (N, O) and s["dw"] == (I, O)
                and s["db"] == (O,) and (a["dx"] is None or s["dx"] == (N, I)))
    if kernel == "dropout_forward":
        return s["mask"] == s["x"] and s["out"] == s["x"]
    if kernel == "dropout_backward":
        return s["mask"] == s["dout"] and s["dx"] == s["dout"]
    if kernel == "softmax_forward":
        return nd(("logits", 2)) and s["probs"] == s["logits"]
    if kernel == "softmax_nll":
        return (nd(("logits", 2)) and s["y"] == s["logits"][:1]
                and s["probs"] == s["logits"] and s["dlogits"] == s["logits"])
    if kernel == "softmax_argmax":
        return nd(("probs", 2)) and s["yout"] == s["probs"][:1]
    if kernel == "sgd_update":
        return s["grad"] == s["param"]
    return True


# ---------------------------------------------------------------------------
# drawing an example
# ---------------------------------------------------------------------------
def small(lo=0, hi=4):
    """Sizes, with 0 and 1 drawn often."""
    return st.one_of(st.sampled_from([lo, 1] if lo == 0 else [lo]), st.integers(lo, hi))


@st.composite
def dims(draw, kernel):
    d = {"N": draw(small(0, 4)), "F": draw(small(0, 3)), "C": draw(small(1, 3)),
         "act": draw(st.sampled_from(ACTS)), "I": draw(small(0, 7)),
         "O": draw(small(0, 6)), "K": draw(small(1, 6)),
         "scale": draw(st.sampled_from([1.0, 0.5, 0.75])),
         "p": draw(st.sampled_from([0.0, 0.25, 0.5, 0.9])),
         "seed": draw(st.sampled_from([0, 1, 2 ** 63, 2 ** 64 - 1]) | st.integers(0, 2 ** 64 - 1)),
         "counter": draw(st.integers(0, 2 ** 40)),
         "eta": draw(st.sampled_from([0.1, 3.0, 1e-3])),
         "l2": draw(st.sampled_from([0.0, 0.01, 2.0]))}
    d["H"], d["W"] = draw(small(1, 7)), draw(small(1, 7))
    d["KH"], d["KW"] = draw(st.integers(1, d["H"])), draw(st.integers(1, d["W"]))
    d["ph"], d["pw"] = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    d["CH"], d["CW"] = draw(small(0, 8)), draw(small(0, 8))
    d["pshape"] = tuple(draw(st.lists(small(0, 5), min_size=1, max_size=4)))
    return d


def build(kernel, d, dtype, rng):
    """(name -> value) of a valid call, C-contiguous, of float ``dtype``."""
    out = {}
    for arg in KERNELS[kernel]:
        if arg.kind == "scalar":
            out[arg.name] = arg.make(d)
            continue
        t = {"float": dtype, "uint8": np.uint8, "int32": np.int32}[arg.dtype]
        out[arg.name] = (arg.make or _uniform)(rng, arg.shape(d), t, d)
    if kernel == "pool_backward":         # out is the forward's output, as in training
        b = _uniform(rng, (d["F"],), dtype)
        REF.pool_forward(out["conv_out"], b, d["act"], (d["ph"], d["pw"]), out["out"])
    if kernel == "dense_backward":
        REF.dense_forward(out["x"], out["w"], _uniform(rng, (d["O"],), dtype), d["act"],
                          1.0, out["out"])
    if kernel == "softmax_argmax":
        out["probs"] = np.abs(out["probs"])
    return out


def guarded(a):
    """A C-contiguous copy of ``a`` inside a buffer with guard elements on
    both sides; returns (view, buffer, mask of the guard elements)."""
    buf = np.empty(a.size + 2 * GUARD, dtype=a.dtype)
    buf[...] = canary_for(a.dtype)
    view = buf[GUARD:GUARD + a.size].reshape(a.shape)
    view[...] = a
    mask = np.ones(buf.shape, bool)
    mask[GUARD:GUARD + a.size] = False
    return view, buf, mask


def canary_for(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return dtype.type(-12345.5)
    if dtype.kind == "c":
        return dtype.type(-12345.5 + 1j)
    if dtype.kind == "b":
        return True
    return dtype.type(0x5A if dtype.itemsize == 1 else 0x5A5A5A)


def strided(a):
    """The values of ``a`` (ndim >= 1) as a non-contiguous view of every other
    element of a larger buffer's last axis; returns (view, buffer, mask of
    the elements in between, which nothing may write)."""
    big = np.empty(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[...] = canary_for(a.dtype)
    view = big[..., ::2]
    view[...] = a
    mask = np.zeros(big.shape, bool)
    mask[..., 1::2] = True
    return view, big, mask


def perturb_shape(a, how):
    shape = list(a.shape)
    if how == "drop-dim":
        shape = shape[:-2] + [shape[-2] * shape[-1]] if len(shape) > 1 else []
    elif how == "add-dim":
        shape = shape + [1]
    else:
        if not shape:
            shape = [2]
        i = how % len(shape)
        shape[i] = shape[i] + 1 if shape[i] == 0 or how % 2 else shape[i] - 1
    return np.zeros(shape, a.dtype) + (a.reshape(-1)[:1] if a.size else 0)


# ---------------------------------------------------------------------------
# the property
# ---------------------------------------------------------------------------
def outputs_of(kernel):
    return [a.name for a in KERNELS[kernel] if a.kind in ("out", "inout", "opt_out")]


def inputs_of(kernel):
    return [a.name for a in KERNELS[kernel] if a.kind == "in"]


def run_reference(kernel, args):
    args = {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in args.items()}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        result = getattr(REF, kernel)(*[args[a.name] for a in KERNELS[kernel]])
    return result, args


def assert_same(name, got, want, dtype):
    assert got.shape == want.shape, (name, got.shape, want.shape)
    if got.dtype.kind in "iub" or want.dtype.kind in "iub":
        np.testing.assert_array_equal(got, want, err_msg=name)
    else:
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                   err_msg=name, **TOL[np.dtype(dtype)])


def check(cpu, kernel, d, dtype, rng, fault, target, data):
    """One call of ``kernel`` with ``fault`` on argument ``target``; returns
    'ok' (compared equal to the reference) or 'refused' (a ValueError), and
    raises AssertionError for anything else."""
    if target in ("dx",):
        d = dict(d, no_dx=False)
    valid = build(kernel, d, dtype, rng)
    array_args = [a for a in KERNELS[kernel]
                  if a.kind != "scalar" and not (a.kind == "opt_out" and d.get("no_dx"))]
    call = dict(valid)
    if kernel in ("conv_backward", "dense_backward") and d.get("no_dx"):
        call["dx"] = valid["dx"] = None
    must_raise = False
    result_ok = True          # a correct result is acceptable
    bufs = {}                 # name -> (buffer, mask of elements nothing may write)
    if target is None:
        target = array_args[0].name
    tkind = next(a.kind for a in array_args if a.name == target)
    tdtype = next(a.dtype for a in array_args if a.name == target)

    if fault == "layout":
        if data.draw(st.booleans(), label="fortran") and valid[target].ndim >= 2:
            call[target] = np.asfortranarray(valid[target])
        elif valid[target].ndim >= 1:
            call[target], big, mask = strided(valid[target])
            bufs[target] = (big, mask)
    elif fault == "readonly":
        call[target] = valid[target].copy()
        call[target].flags.writeable = False
        if tkind != "in":
            must_raise, result_ok = True, False
    elif fault == "dtype":
        native = {"float": dtype, "uint8": np.uint8, "int32": np.int32}[tdtype]
        other = data.draw(st.sampled_from([t for t in OTHER_DTYPES if t != native]),
                          label="dtype")
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call[target] = valid[target].astype(other)
            if tkind == "in":         # the reference runs on the values the cpu saw
                valid[target] = call[target].astype(native)
        if tkind != "in":
            must_raise, result_ok = True, False
    elif fault == "shape":
        how = data.draw(st.sampled_from([0, 1, 2, 3, "add-dim", "drop-dim"]), label="how")
        call[target] = perturb_shape(valid[target], how)
        probe = dict(call)
        if consistent(kernel, probe):
            valid = {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in call.items()}
        else:
            must_raise, result_ok = True, False
    elif fault == "value":
        choices = []
        if kernel == "softmax_nll" and d["N"] > 0:
            choices += ["label-high", "label-negative"]
        if any(a.name == "act" for a in KERNELS[kernel]):
            choices += ["act"]
        if any(a.name == "poolsize" for a in KERNELS[kernel]):
            choices += ["pool-zero", "pool-negative"]
        if kernel == "dropout_forward":
            choices += ["p-high", "p-negative"]
        if not choices:
            fault = "none"
        else:
            what = data.draw(st.sampled_from(choices), label="value")
            target = what                     # for the messages
            must_raise, result_ok = True, False
            if what.startswith("label"):
                i = data.draw(st.integers(0, d["N"] - 1), label="row")
                y = valid["y"].copy()
                y[i] = d["K"] + data.draw(st.integers(0, 1000)) if what == "label-high" \
                    else -1 - data.draw(st.integers(0, 1000))
                call["y"] = y
            elif what == "act":
                call["act"] = data.draw(st.sampled_from([-1, 4, 99, 2 ** 31]), label="code")
            elif what == "pool-zero":
                call["poolsize"] = (0, d["pw"])
            elif what == "pool-negative":
                call["poolsize"] = (d["ph"], -2)
            else:
                p = 1.5 if what == "p-high" else -0.5
                call["p_dropout"] = valid["p_dropout"] = p
                result_ok = True          # the reference's masks for such a p
                must_raise = False

    # outputs sit between guard elements
    for a in array_args:
        if a.kind != "in" and call[a.name] is not None and a.name not in bufs \
                and call[a.name].flags.c_contiguous and call[a.name].flags.writeable:
            call[a.name], buf, mask = guarded(call[a.name])
            bufs[a.name] = (buf, mask)
    guards = {k: b.copy() for k, (b, _) in bufs.items()}
    inputs_before = {n: np.array(call[n], copy=True) for n in inputs_of(kernel)}

    zero_size = any(isinstance(v, np.ndarray) and v.size == 0 for v in valid.values())
    fn = getattr(cpu, kernel)
    try:
        got = fn(*[call[a.name] for a in KERNELS[kernel]])
    except ValueError:
        if fault in ("none",) and not zero_size:
            raise AssertionError("%s refused a valid call (%s)" % (kernel, _describe(call)))
        return "refused"
    except Exception as exc:     # noqa: BLE001 -- anything but ValueError fails
        raise AssertionError("%s raised %s, not ValueError, for fault %r on %r (%s): %s"
                             % (kernel, type(exc).__name__, fault, target,
                                _describe(call), exc))
    if must_raise or not result_ok:
        raise AssertionError("%s accepted a bad call (fault %r on %r: %s)"
                             % (kernel, fault, target, _describe(call)))
    # inputs unchanged, guards intact
    for n, before in inputs_before.items():
        assert np.array_equal(np.asarray(call[n]), before, equal_nan=True), \
            "%s changed its input %s" % (kernel, n)
    for n, (buf, mask) in bufs.items():
        assert np.array_equal(buf[mask], guards[n][mask], equal_nan=True), \
            "%s wrote outside %s (guard elements changed)" % (kernel, n)
    # the reference's result
    want, ref_args = run_reference(kernel, valid)
    for n in outputs_of(kernel):
        if call.get(n) is None:
            continue
        assert_same("%s.%s" % (kernel, n), np.asarray(call[n]), ref_args[n], dtype)
    if want is not None:
        if np.isfinite(want):
            np.testing.assert_allclose(got, want, err_msg="%s's return value" % kernel,
                                       **TOL[np.dtype(dtype)])
        else:
            assert zero_size or not np.isfinite(got), (got, want)
    return "ok"


def _describe(call):
    return ", ".join("%s=%s" % (k, ("array%s %s%s" % (v.shape, v.dtype,
                                                      "" if v.flags.c_contiguous else " strided"))
                                if isinstance(v, np.ndarray) else repr(v))
                     for k, v in call.items())


VALUE_FAULTS = ("softmax_nll", "pool_forward", "pool_backward", "dense_forward",
                "dense_backward", "dropout_forward")


def _cases():
    """(kernel, fault, target argument): every fault on every array argument."""
    cases = []
    for kernel, args in sorted(KERNELS.items()):
        cases.append((kernel, "none", None))
        if kernel in VALUE_FAULTS:
            cases.append((kernel, "value", None))
        for a in args:
            if a.kind != "scalar":
                cases += [(kernel, f, a.name) for f in ("layout", "readonly", "dtype", "shape")]
    return cases


@pytest.mark.parametrize("kernel,fault,target", _cases(),
                         ids=["-".join(filter(None, c)) for c in _cases()])
def test_kernel_fuzz(cpu, kernel, fault, target):
    if not hasattr(cpu, kernel):
        msg = "the cpu engine has no %s (every engine shares the reference's kernels)" % kernel
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    outcomes = {}

    @settings(max_examples=EXAMPLES if fault == "none" else FAULT_EXAMPLES,
              deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(d=dims(kernel), dtype=st.sampled_from(FLOATS), seed=st.integers(0, 2 ** 31),
           no_dx=st.booleans(), data=st.data())
    def prop(d, dtype, seed, no_dx, data):
        d["no_dx"] = no_dx
        r = check(cpu, kernel, d, dtype, np.random.RandomState(seed), fault, target, data)
        outcomes[r] = outcomes.get(r, 0) + 1

    prop()
    if fault == "none":         # the test can fail: valid calls ran and were compared
        assert outcomes.get("ok", 0) > 0, outcomes


def test_valid_call_is_compared(cpu):
    """A control for the property: the harness itself sees a wrong kernel."""
    class Wrong(object):
        def __getattr__(self, name):
            real = getattr(cpu, name)

            def wrong(*args):
                r = real(*args)
                args[-1].reshape(-1)[-1] += 1.0      # corrupt the output
                return r
            return wrong
    d = {"N": 2, "I": 3, "O": 4, "act": SIGMOID, "scale": 1.0, "no_dx": False}

    with pytest.raises(AssertionError):
        check(Wrong(), "dense_forward", d, np.float32, np.random.RandomState(0), "none",
              None, None)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 64 - 1), counter=st.integers(0, 2 ** 64 - 1),
       n=small(0, 300))
def test_dropout_bits_fuzz(cpu, seed, counter, n):
    """The counter-based bits every engine shares, at any seed and counter
    (wrap-around mod 2^64 included)."""
    with np.errstate(over="ignore"):
        want = REF.dropout_bits(seed, counter, n)
    got = cpu.dropout_bits(seed, counter, n)
    assert got.dtype == np.uint32 and np.array_equal(got, want)


@pytest.mark.parametrize("what,value", [
    ("seed", -1), ("seed", 2 ** 64), ("seed", 1.5), ("seed", "7"), ("seed", None),
    ("counter", -1), ("counter", 2 ** 64), ("n", -1), ("n", 2.5), ("n", None)])
def test_dropout_integers_out_of_range(cpu, what, value):
    args = {"seed": 1, "counter": 2, "n": 3}
    args[what] = value
    with pytest.raises(ValueError):
        cpu.dropout_bits(args["seed"], args["counter"], args["n"])
    if what == "n":
        return
    x = np.ones((2, 3), np.float32)
    call = {"seed": 1, "counter": 2}
    call[what] = value
    with pytest.raises(ValueError):
        cpu.dropout_forward(x, 0.5, call["seed"], call["counter"],
                            np.empty((2, 3), np.uint8), np.empty((2, 3), np.float32))
