"""How the compiled kernels' OpenMP threads wait (fastnet/_cpu/threads.py):
a short spin then sleep by default, the user's OMP_WAIT_POLICY / GOMP_SPINCOUNT
when set, and the environment left as the user had it.  Each case runs in a
fresh interpreter: libgomp reads its settings once, when it is loaded."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("fastnet.engines.cpu", reason="the compiled engine is not built")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = r"""
import json, os, sys
pre = sys.argv[1]
if pre == "libgomp-first":
    import ctypes
    ctypes.CDLL("libgomp.so.1")
import fastnet.engines.cpu as cpu
from fastnet._cpu import threads
print(json.dumps({"policy": cpu.wait_policy(), "SPINCOUNT": threads.SPINCOUNT,
                  "env": {k: os.environ.get(k) for k in ("GOMP_SPINCOUNT",
                                                         "OMP_WAIT_POLICY")}}))
"""


def probe(extra_env=None, pre="none"):
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(extra_env or {})
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", PROBE, pre], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_default_is_a_short_spin_and_the_environment_is_put_back():
    r = probe()
    assert r["policy"]["spincount"] == r["SPINCOUNT"]
    assert 0 < r["SPINCOUNT"] < 300000          # shorter than libgomp's own default
    assert r["policy"]["source"] == "fastnet's default"
    # set only while libgomp started: not inherited by children or other libraries
    assert r["env"] == {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": None}


@pytest.mark.parametrize("var, value", [("OMP_WAIT_POLICY", "active"),
                                        ("OMP_WAIT_POLICY", "passive"),
                                        ("GOMP_SPINCOUNT", "123")])
def test_the_users_setting_wins(var, value):
    r = probe({var: value})
    assert r["policy"]["spincount"] is None
    assert "%s=%s" % (var, value) in r["policy"]["source"]
    assert r["env"][var] == value                 # untouched
    other = "GOMP_SPINCOUNT" if var == "OMP_WAIT_POLICY" else "OMP_WAIT_POLICY"
    assert r["env"][other] is None


def test_libgomp_loaded_before_fastnet_is_said():
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/maps (Linux)")
    try:
        import ctypes
        ctypes.CDLL("libgomp.so.1")
    except OSError:
        pytest.skip("no libgomp.so.1 on the library path")
    r = probe(pre="libgomp-first")
    assert r["policy"]["spincount"] is None
    assert "loaded before fastnet" in r["policy"]["source"]
    assert r["env"]["GOMP_SPINCOUNT"] is None


def test_info_prints_the_wait_policy():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("GOMP_SPINCOUNT", None)
    out = subprocess.run([sys.executable, "-m", "fastnet", "info"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    line = [x for x in out.stdout.splitlines() if x.startswith("cpu threads wait:")]
    assert line and "then sleep" in line[0] and "fastnet's default" in line[0], out.stdout
