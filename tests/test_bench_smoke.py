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
    cu.import_or_skip("numba_cuda", "the CUDA tests need the cuda extra: pip install '.[cuda]'")
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


# ---------------------------------------------------------------------------
# the seed rows: seed 003's Keras network (Keras RMSprop) and seed 001's MLP
# ---------------------------------------------------------------------------
def _workloads():
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import workloads
    finally:
        sys.path.pop(0)
    return workloads


def test_workloads_seed_rows_and_optimizer_specs():
    import numpy as np
    w = _workloads()
    # the book's rows keep network3's SGD with their own eta and lmbda
    assert w.optimizer("conv2_relu") == {"name": "network3_sgd", "lr": 0.03, "lmbda": 0.1}
    assert w.optimizer("fc") == {"name": "network3_sgd", "lr": 0.1, "lmbda": 0.0}
    assert w.optimizer("keras_mnist") == {"name": "keras_rmsprop", "lr": 1e-3, "rho": 0.9,
                                          "epsilon": 1e-7}
    assert w.optimizer("mlp_16") == {"name": "network3_sgd", "lr": 0.5, "lmbda": 0.0}
    assert [l["n_out"] for l in w.layers("keras_mnist", 128)] == [512, 10]
    assert [l["n_out"] for l in w.layers("mlp_16", 10)] == [16, 16, 10]
    assert w.cases(["keras_mnist", "mlp_16"]) == [("keras_mnist", 128), ("mlp_16", 10)]
    assert w.dense_only("keras_mnist") and w.dense_only("fc")
    assert not w.dense_only("conv2_relu") and not w.dense_only("dropout")
    # Keras's Dense defaults for seed 003: glorot-uniform kernels, zero biases
    (w0, b0), (w1, b1) = w.init_params("keras_mnist")
    r0, r1 = np.sqrt(6.0 / (784 + 512)), np.sqrt(6.0 / (512 + 10))
    assert np.abs(w0).max() <= r0 and np.abs(w0).max() > 0.99 * r0
    assert np.abs(w1).max() <= r1 and not b0.any() and not b1.any()
    # network3's for seed 001: N(0, 1/sqrt(n_out)) weights, N(0, 1) biases, zero softmax
    p = w.init_params("mlp_16")
    assert abs(p[0][0].std() - 0.25) < 0.01 and abs(p[0][1].std() - 1.0) < 0.5
    assert not p[2][0].any() and not p[2][1].any()


def _run_rows(tmp_path, network, engines):
    out = tmp_path / ("%s.json" % network)
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "run.py"), "--smoke", "--strict",
         "--networks", network, "--engines", ",".join(engines), "--no-plot",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (case,) = json.loads(out.read_text())["cases"]
    assert case["network"] == network
    res = case["engines"]
    for name in ("fastnet", "fastnet-reference", "fastnet-keras"):
        assert res[name]["status"] == "ok", (network, name, res[name])
    assert case["check"]["oracle"] == "fastnet-reference", case["check"]
    for name, r in res.items():
        if r["status"] == "skipped":
            # a missing optional framework: said, never faked
            assert r.get("reason"), (network, name, r)
            continue
        assert r["status"] == "ok", (network, name, r)
        if name != "fastnet-reference":
            assert r["agrees"] is True, (network, name, case["check"])
            assert case["check"]["max_rel_diff"][name] <= 1e-4, case["check"]
    return res


def test_bench_seed_rows_engines_agree(tmp_path):
    # every engine of the two seed rows trains the first mini-batches from
    # the same weights on the same data; --strict fails on a disagreement
    # (rtol 1e-3 against fastnet's NumPy reference engine; they agree to
    # ~1e-6).  keras_mnist is Keras's RMSprop, written by hand in the torch
    # and JAX engines (torch.optim.RMSprop's formula is 0.96 of the largest
    # weight away after two steps) and Keras's own in keras-jax.  mlp_16 is
    # plain SGD, the torch/JAX code of the book's rows: fastnet's engines only.
    # torch, JAX and Keras are optional: missing, they are skipped with a
    # reason, never faked.
    _run_rows(tmp_path, "keras_mnist", ["fastnet", "fastnet-reference", "fastnet-keras",
                                        "torch-eager", "jax-jit", "keras-jax"])
    _run_rows(tmp_path, "mlp_16", ["fastnet", "fastnet-reference", "fastnet-keras"])


def test_bench_busy_load_runs_beside_the_engines_and_is_stopped(tmp_path):
    """--busy N: N spinning processes while the cases run, recorded in the
    JSON and the table's heading, all of them stopped at the end."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import run as bench_run
    finally:
        sys.path.pop(0)
    load = bench_run.BusyLoad(2)
    procs = list(load.procs)
    assert load.alive() == 2
    load.stop()
    assert all(p.poll() is not None for p in procs)

    out = tmp_path / "busy.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "run.py"), "--smoke", "--strict",
         "--busy", "1", "--engines", "fastnet", "--networks", "fc", "--no-plot",
         "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 busy-loop process beside" in proc.stdout, proc.stdout[-3000:]
    meta = json.loads(out.read_text())["meta"]
    assert meta["busy"] == 1 and "busy-loop" in meta["mode"]

    bad = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run.py"), "--smoke",
                          "--busy", "-1", "--no-plot", "--out", str(tmp_path / "x.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--busy" in bad.stdout
