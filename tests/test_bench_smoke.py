"""The bench suite's seconds-long smoke run: it must run and report fastnet.

Timings are never asserted (the machines are shared); only that the suite
runs end to end, checks fastnet against the NumPy reference engine, and
writes its table and JSON.
"""

import json
import os
import subprocess
import sys

import pytest

import conformance_util as cu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_smoke_runs_and_reports_fastnet(tmp_path):
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "run.py"), "--smoke", "--strict",
         "--engines", "fastnet,fastnet-reference", "--no-plot", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "fastnet" in proc.stdout and "samples/s" in proc.stdout, proc.stdout[-3000:]
    result = json.loads(out.read_text())
    text = json.dumps(result)
    assert "fastnet-reference" in text and "conv2_relu" in text


def _env_without_simulator():
    env = dict(os.environ)
    # the simulator would "find" a GPU for fastnet and train on the CPU, slowly
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    return env


def test_bench_cuda_smoke_without_gpu_skips_every_engine(tmp_path):
    out = tmp_path / "cuda-smoke.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "run.py"), "--device", "cuda",
         "--smoke", "--strict", "--no-plot", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=_env_without_simulator())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    meta = json.loads(out.read_text())["meta"]
    assert meta["device"] == "cuda" and "cuda" in meta["mode"]
    assert meta["sgemm_peak"].get("skipped")   # no CPU peak on a GPU run
    probes = meta["probes"]
    assert set(probes) >= {"fastnet", "torch-eager", "network3-pytensor"}
    if any(p["status"] == "ok" for p in probes.values()):
        # a machine with a GPU: the engines ran there, no %peak column
        assert "samples/s" in proc.stdout and "GFLOP/s  %peak" not in proc.stdout
        return
    # no GPU: one skip line per engine, nothing measured, nothing faked
    for name, p in probes.items():
        assert p["status"] == "skipped", (name, p)
        assert "%-18s skipped: " % name in proc.stdout, proc.stdout
    assert "CPU only" in proc.stdout
    assert "nothing measured" in proc.stdout
    assert "samples/s" not in proc.stdout


def test_bench_fastnet_cuda_probe_under_the_simulator():
    # the probe only (no training: the simulator takes minutes per step of
    # the bench's networks); it must say it runs on the simulator, not a GPU
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "engine_fastnet.py"), "--probe",
         "--device", "cuda"], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    assert probe["event"] == "probe", probe
    if not probe["ok"] and ("ImportError" in probe["reason"]
                            or "ModuleNotFoundError" in probe["reason"]):
        cu.skip_or_fail("fastnet's cuda engine does not import here (the cuda extra: "
                        "pip install '.[cuda]'): %s" % probe["reason"])
    assert probe["ok"] is True, probe
    assert probe["simulated"] is True and "simulator" in probe["gpu"].lower()
