"""The instruction-set dispatch of the compiled engine (fastnet/_cpu/__init__.py).

A build for x86-64 has the kernels three times, at the levels x86_64 (SSE2),
avx2 (x86-64-v3) and avx512 (x86-64-v4); importing fastnet._cpu loads the
highest one the CPU runs, or the one FASTNET_ISA names.  Here:

- the choice rule (choose_level) on made-up builds and CPUs, errors included;
- the probe (fastnet._cpu._isa) against NumPy's own CPU feature detection;
- this process loaded the highest level (or the forced one), and every
  kernel module came from that level's folder;
- every other level the CPU runs, forced in a subprocess: conformance
  cases a (FC sigmoid), c (conv2 ReLU + L2) and d (odd shapes) in float64
  and float32, step and epoch runs, at the README's tolerances;
- the ReLU conv network trains bitwise alike at every level with fused
  multiply-adds (avx2, avx512): the guarantee the README states;
- a level the build lacks or the CPU cannot run: a clear RuntimeError.

Under CI=true a dispatching build missing one of its levels fails; a level
this CPU cannot run is skipped, saying so (no test can run it here).
"""

import json
import os
import subprocess
import sys

import pytest

import conformance_util as cu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    from fastnet import _cpu
    from fastnet.engines import cpu as _engine
except ImportError as e:  # not built
    cu.skip_or_fail("the compiled engine is not built: %s" % e)

INFO = _cpu.isa_info()
DISPATCHING = any(level in _cpu.LEVELS for level in INFO["built"])
CPU = INFO["cpu"] or ()


def _run(code, level, timeout=120):
    """Run python code in a subprocess with FASTNET_ISA=level, from the
    repository root (so that `fastnet` is this tree, as in this process)."""
    env = dict(os.environ)
    env["FASTNET_ISA"] = level
    env["PYTHONPATH"] = os.pathsep.join([REPO, os.path.join(REPO, "tests")]
                                        + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _needs_dispatch():
    if not DISPATCHING:
        pytest.skip("a one-level build (%s): no dispatch to test" % ", ".join(INFO["built"]))


def _runnable(level):
    """Skip (with the reason) unless this build has `level` and the CPU runs it."""
    _needs_dispatch()
    if level not in INFO["built"]:
        cu.skip_or_fail("level %s is not built (built: %s); setup.py builds every level "
                        "with GCC >= 11 or Clang >= 12" % (level, ", ".join(INFO["built"])))
    if level not in CPU:
        pytest.skip("this CPU cannot run level %s (%s); it runs %s"
                    % (level, _cpu.LEVEL_NEEDS[level], ", ".join(CPU)))


# ---------------------------------------------------------------------------
# the rule
# ---------------------------------------------------------------------------
ALL = ("avx512", "avx2", "x86_64")


@pytest.mark.parametrize("cpu,expected", [
    (("x86_64", "avx2", "avx512"), "avx512"),
    (("x86_64", "avx2"), "avx2"),
    (("x86_64",), "x86_64"),
])
def test_choose_picks_the_highest_level_the_cpu_runs(cpu, expected):
    level, reason = _cpu.choose_level(ALL, cpu)
    assert level == expected
    assert "highest" in reason and _cpu.LEVEL_NEEDS[expected] in reason


def test_choose_without_the_cpus_best_level_built():
    level, reason = _cpu.choose_level(("avx2", "x86_64"), ("x86_64", "avx2", "avx512"))
    assert level == "avx2"
    assert "avx512" in reason and "not built" in reason


@pytest.mark.parametrize("forced", ["x86_64", "avx2", "AVX512 "])
def test_choose_forced(forced):
    level, reason = _cpu.choose_level(ALL, ("x86_64", "avx2", "avx512"), forced)
    assert level == forced.strip().lower()
    assert "FASTNET_ISA=" + level in reason


def test_choose_forced_level_the_cpu_lacks_is_an_error():
    with pytest.raises(RuntimeError) as e:
        _cpu.choose_level(ALL, ("x86_64", "avx2"), "avx512")
    msg = str(e.value)
    assert "FASTNET_ISA=avx512" in msg and "AVX-512" in msg
    assert "it runs: avx2, x86_64" in msg


@pytest.mark.parametrize("forced", ["sse9", "native"])
def test_choose_forced_level_not_built_is_an_error(forced):
    with pytest.raises(RuntimeError, match="no such level; its levels are avx512, avx2, x86_64"):
        _cpu.choose_level(ALL, ("x86_64", "avx2", "avx512"), forced)


def test_choose_single_level_builds():
    assert _cpu.choose_level(("native",), None)[0] == "native"
    assert "FASTNET_NATIVE" in _cpu.choose_level(("native",), None)[1]
    assert _cpu.choose_level(("generic",), None)[0] == "generic"
    assert _cpu.choose_level(("native",), None, "native")[0] == "native"


def test_choose_nothing_runnable_is_an_error():
    with pytest.raises(RuntimeError, match="none of the built levels"):
        _cpu.choose_level(("avx512",), ("x86_64", "avx2"))


# ---------------------------------------------------------------------------
# this process
# ---------------------------------------------------------------------------
def test_probe_agrees_with_numpy():
    """fastnet._cpu._isa against NumPy's run-time CPU dispatch (its own
    CPUID + XGETBV reading)."""
    _needs_dispatch()
    from fastnet._cpu import _isa
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as f
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_features__ as f
    levels = _isa.cpu_levels()
    assert levels[0] == "x86_64" and list(levels) == [l for l in reversed(ALL) if l in levels]
    assert ("avx2" in levels) == bool(f["AVX2"] and f["FMA3"] and f["F16C"])
    assert ("avx512" in levels) == bool(f["AVX512_SKX"])


def test_loaded_level_and_its_modules():
    forced = os.environ.get("FASTNET_ISA", "").strip().lower()
    if DISPATCHING:
        expected = forced or next(l for l in ALL if l in INFO["built"] and l in CPU)
    else:
        expected = INFO["built"][0]
    assert INFO["level"] == expected
    info = _engine.info()
    assert info["isa"] == expected and info["isa_reason"] == INFO["reason"]
    assert ("FASTNET_ISA" in info["isa_reason"]) == bool(forced)
    # every compiled module of the engine loaded from the chosen level's folder
    from fastnet._cpu import conv, pool, dense, softmax, update, trainer
    for module in (conv, pool, dense, softmax, update, trainer):
        assert module.__name__.startswith("fastnet._cpu.")
        assert os.path.dirname(module.__file__) == INFO["directory"], module
    # what the level's flags switched on
    if expected in ("avx2", "avx512"):
        assert info["fast_products"]
    if expected == "x86_64":
        assert not info["fast_products"] and not info["vector_activations"]


def test_cli_info_names_the_level():
    from fastnet import cli
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["info"]) == 0
    line = [l for l in out.getvalue().splitlines() if l.startswith("cpu instruction set:")]
    assert line == ["cpu instruction set: %s (%s; built: %s; this CPU runs: %s)"
                    % (INFO["level"], INFO["reason"], ", ".join(INFO["built"]),
                       ", ".join(CPU) if INFO["cpu"] is not None else "not probed")]


# ---------------------------------------------------------------------------
# each level forced in a subprocess
# ---------------------------------------------------------------------------
REPORT = """
import json, fastnet.engines.cpu as cpu
i = cpu.info()
print(json.dumps({k: i[k] for k in ("isa", "isa_reason", "directory", "fast_products",
                                    "vector_activations")}))
"""


@pytest.mark.parametrize("level", ALL)
def test_forced_level_loads(level):
    _runnable(level)
    r = _run(REPORT, level)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.splitlines()[-1])
    assert got["isa"] == level and got["isa_reason"] == "forced by FASTNET_ISA=" + level
    assert os.path.basename(got["directory"]) == level
    assert got["fast_products"] == (level != "x86_64")
    assert not (level == "x86_64" and got["vector_activations"])


def test_forced_unknown_level_is_a_clear_error():
    _needs_dispatch()
    r = _run("import fastnet.engines.cpu", "sse9")
    assert r.returncode != 0
    assert "RuntimeError: FASTNET_ISA='sse9': this build of fastnet has no such level" in r.stderr
    assert "Segmentation" not in r.stderr


def test_forced_level_the_cpu_lacks_is_a_clear_error():
    """In a subprocess where the CPU lacks a built level (e.g. avx512 on an
    AVX2 CPU); on a CPU that runs them all, the rule on this build's levels
    with the top one taken from the CPU."""
    _needs_dispatch()
    lacking = [l for l in INFO["built"] if l in ALL and l not in CPU]
    if lacking:
        r = _run("import fastnet.engines.cpu", lacking[0])
        assert r.returncode != 0
        assert "cannot run that level" in r.stderr and "Illegal instruction" not in r.stderr
        return
    top = next(l for l in ALL if l in INFO["built"])
    with pytest.raises(RuntimeError, match="cannot run that level"):
        _cpu.choose_level(INFO["built"], tuple(l for l in CPU if l != top), top)


# the conformance subset run at each forced level: FC sigmoid (vector
# activations), conv2 ReLU + L2 (bcast_gemm products) and the odd shapes
CONFORMANCE = ("-k", "cpu and (a_fc_sigmoid or c_conv2_relu_l2 or d_odd_shapes) "
               "and (test_init or test_init_cost or test_epoch_cost or step or epoch)")


# every level but this process's (tests/test_conformance.py runs that one)
@pytest.mark.parametrize("level", [l for l in ALL if l != INFO["level"]])
def test_conformance_at_forced_level(level):
    _runnable(level)
    code = ("import sys, pytest; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', "
            "'tests/test_conformance.py', %r, %r]))" % CONFORMANCE)
    r = _run(code, level, timeout=300)
    tail = (r.stdout + r.stderr)[-3000:]
    assert r.returncode == 0, tail
    assert " passed" in r.stdout and " failed" not in r.stdout, tail
    assert "skipped" not in r.stdout.splitlines()[-1], tail


# a few SGD steps of a small conv2 ReLU network; the bytes of its parameters
TRAIN = """
import hashlib, json, numpy as np, fastnet
from fastnet import Network, ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer, ReLU
import fastnet.engines.cpu as cpu
cpu.set_num_threads(2)
out = {"isa": cpu.info()["isa"]}
for fx in ("float32", "float64"):
    fastnet.set_floatx(fx)
    np.random.seed(7)
    rng = np.random.RandomState(3)
    x = rng.rand(60, 784).astype(fx)
    y = rng.randint(0, 10, 60).astype(np.int32)
    net = Network([
        ConvPoolLayer(image_shape=(10, 1, 28, 28), filter_shape=(6, 1, 5, 5),
                      poolsize=(2, 2), activation_fn=ReLU),
        ConvPoolLayer(image_shape=(10, 6, 12, 12), filter_shape=(8, 6, 5, 5),
                      poolsize=(2, 2), activation_fn=ReLU),
        FullyConnectedLayer(8 * 4 * 4, 30, activation_fn=ReLU),
        SoftmaxLayer(30, 10)], 10)
    net.SGD((x, y), 2, 10, 0.05, (x[:20], y[:20]), (x[:20], y[:20]), lmbda=0.1)
    h = hashlib.sha256()
    for p in net.params:
        h.update(np.ascontiguousarray(p.get_value()).tobytes())
    out[fx] = h.hexdigest()
print(json.dumps(out))
"""


def test_relu_conv_net_bitwise_equal_across_fma_levels():
    """avx2 and avx512 both compute each product element as one chain of
    fused multiply-adds (csrc/bcast_gemm.h) and everything else without
    contraction: a ReLU conv network trains to the same bits at both."""
    _runnable("avx2")
    _runnable("avx512")
    hashes = {}
    for level in ("avx2", "avx512"):
        r = _run(TRAIN, level)
        assert r.returncode == 0, r.stderr[-3000:]
        got = json.loads(r.stdout.splitlines()[-1])
        assert got["isa"] == level
        hashes[level] = (got["float32"], got["float64"])
    assert hashes["avx2"] == hashes["avx512"]
