"""fastnet.sweep: runs of a spec on Dask, on disk, bitwise equal to serial runs.

Real processes on 127.0.0.1 only: a ``dask scheduler`` and two ``dask worker``
processes (no nanny, so SIGKILL kills the worker itself), the sweep's command
line as a subprocess, and a LocalCluster for the default path.  Every process
a test starts is killed in its teardown.  The runs are small FC nets on the
bundled digits, so the whole file takes well under a minute.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

try:
    import distributed  # noqa: F401
except ImportError as exc:
    # CI installs the 'test' extra, which brings dask[distributed]: there a
    # missing package is a failure, never a skip
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("needs the 'distributed' extra (%s)" % exc, allow_module_level=True)

import fastnet  # noqa: E402
from fastnet import persist  # noqa: E402
from fastnet import sweep as sw  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-c",
       "import sys, fastnet.sweep as s; sys.exit(s.main(sys.argv[1:]))"]
WAIT = 90          # seconds: the bound on every wait (a slow, busy machine)

# 4 runs x 8 epochs of a 784-100-10 net on 3,000 digits: each run checkpoints
# 8 times, so a worker killed after the first checkpoint is mid-run
SPEC = {"name": "kill-test", "network": "fc",
        "data": {"source": "mnist_sample", "limit": [3000, 500, 500]},
        "sgd": {"epochs": 8, "mini_batch_size": 10, "eta": 0.1},
        "grid": {"eta": [0.1, 0.3]}, "seeds": [0, 1], "threads": 1}


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _wait_for(predicate, what, timeout=WAIT, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for p in procs:
            if p.poll() is not None:
                raise AssertionError("%s: process %s exited (%s) while waiting for %s"
                                     % (p.args[:4], p.pid, p.returncode, what))
        time.sleep(0.02)
    raise AssertionError("timed out after %d s waiting for %s" % (timeout, what))


def _stop(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


def _weights(path):
    net = fastnet.load(path)
    return [p.get_value() for p in net.params]


def _assert_same_networks(dir_a, dir_b, run_names):
    for name in run_names:
        wa = _weights(os.path.join(dir_a, name, sw.NETWORK_FILE))
        wb = _weights(os.path.join(dir_b, name, sw.NETWORK_FILE))
        assert len(wa) == len(wb)
        for a, b in zip(wa, wb):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name


@pytest.fixture(scope="module")
def serial_reference(tmp_path_factory):
    """SPEC's runs, one after another in this process, no Dask."""
    out = tmp_path_factory.mktemp("serial")
    result = sw.sweep(SPEC, out, serial=True, plot=False)
    assert [o["status"] for o in result.outcomes] == ["ok"] * 4
    return out, [r.name for r in result.runs]


@pytest.fixture
def dask_cluster(tmp_path):
    """A real scheduler and two single-thread workers on 127.0.0.1, as
    separate processes: (address, {pid: worker Popen})."""
    procs = []
    try:
        sched_file = tmp_path / "scheduler.json"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
             "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
            env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "scheduler.log", "w")))

        def address():
            try:
                return json.loads(sched_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                return None
        addr = _wait_for(address, "the scheduler's address", procs=procs)
        workers = {}
        for i in range(2):
            p = subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", addr, "--nthreads", "1",
                 "--no-nanny", "--host", "127.0.0.1", "--no-dashboard",
                 "--name", "w%d" % i],
                env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL,
                stderr=open(tmp_path / ("worker%d.log" % i), "w"))
            procs.append(p)
            workers[p.pid] = p
        with distributed.Client(addr, timeout="60s") as client:
            client.wait_for_workers(2, timeout=WAIT)
        yield addr, workers
    finally:
        _stop(procs)


def test_killed_worker_loses_nothing_and_results_equal_serial(
        tmp_path, dask_cluster, serial_reference):
    addr, workers = dask_cluster
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(SPEC))
    results = tmp_path / "results"
    cli = subprocess.Popen(CLI + [str(spec_path), "--scheduler", addr,
                                  "--results", str(results)],
                           env=_env(), cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        def training_worker():
            # a run with a checkpoint of an early epoch (so well before its
            # end, whatever the load), trained by one of our workers
            for run_dir in results.glob("run-*"):
                try:
                    meta, _ = persist.read_file(run_dir / sw.CHECKPOINT_FILE,
                                                persist.CHECKPOINT_FORMAT)
                    pid = json.loads((run_dir / sw.RUNNING_FILE).read_text())["pid"]
                except (OSError, ValueError, KeyError):
                    continue
                if meta["state"]["epoch"] <= SPEC["sgd"]["epochs"] - 3 and pid in workers:
                    return run_dir.name, pid
            return None
        run_name, pid = _wait_for(training_worker, "a run mid-training", procs=[cli])
        os.kill(pid, signal.SIGKILL)
        workers[pid].wait(timeout=WAIT)
        out, err = cli.communicate(timeout=WAIT * 2)
    finally:
        _stop([cli])
    assert cli.returncode == 0, err[-3000:]
    assert "runs: 4/4 done, 0 running, 0 failed" in err
    # the progress display never counts more runs running than workers
    running = [int(line.split(" done, ")[1].split()[0])
               for line in err.splitlines() if line.startswith("runs: ")]
    assert running and max(running) <= 2 and running[-1] == 0
    ref_dir, names = serial_reference
    for name in names:
        result = json.loads((results / name / sw.RESULT_FILE).read_text())
        assert result["status"] == "ok"
        assert not (results / name / sw.CHECKPOINT_FILE).exists()
    # the interrupted run was taken up by the other worker from its checkpoint
    resumed = json.loads((results / run_name / sw.RESULT_FILE).read_text())
    assert resumed["resumed_from_checkpoint"] is True
    assert resumed["pid"] != pid and len(resumed["history"]["epochs"]) == 8
    _assert_same_networks(results, ref_dir, names)
    # the table lists every run
    table = (results / "results.md").read_text()
    assert all(name in table for name in names)
    assert (results / "results.csv").read_text().count("\n") == 5


def test_interrupted_sweep_resumes_and_skips_finished_runs(tmp_path, serial_reference):
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(SPEC))
    results = tmp_path / "results"
    cli = subprocess.Popen(CLI + [str(spec_path), "--serial", "--results", str(results)],
                           env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        def early_epoch(run_dir):
            try:
                meta, _ = persist.read_file(run_dir / sw.CHECKPOINT_FILE,
                                            persist.CHECKPOINT_FORMAT)
            except (OSError, ValueError):
                return False
            return meta["state"]["epoch"] <= SPEC["sgd"]["epochs"] - 3

        def second_run_mid_training():
            done = list(results.glob("run-*/" + sw.RESULT_FILE))
            return len(done) >= 1 and any(early_epoch(d) for d in results.glob("run-*"))
        _wait_for(second_run_mid_training, "one run done and one mid-training",
                  procs=[cli])
        cli.send_signal(signal.SIGKILL)
        cli.wait(timeout=WAIT)
    finally:
        _stop([cli])
    finished_before = {p.parent.name for p in results.glob("run-*/" + sw.RESULT_FILE)}
    assert 1 <= len(finished_before) < 4
    progress = []
    result = sw.sweep(str(spec_path), results, serial=True, plot=False,
                      on_progress=progress.append)
    assert result.skipped == len(finished_before)
    assert progress[0]["done"] == len(finished_before)
    assert [o["status"] for o in result.outcomes] == ["ok"] * 4
    assert any(o.get("resumed_from_checkpoint") for o in result.outcomes)
    ref_dir, names = serial_reference
    _assert_same_networks(results, ref_dir, names)


def test_local_cluster_default_path_with_a_failing_run(tmp_path, serial_reference):
    # the second run asks for mini-batches larger than the validation data:
    # SGD raises inside the run, on a worker; the other runs are unaffected
    spec = {"name": "one-fails", "network": "fc",
            "data": {"limit": [3000, 500, 500]},
            "sgd": {"epochs": 8, "eta": 0.1},
            "runs": [{"eta": 0.1}, {"mini_batch_size": 1000}, {"eta": 0.3}],
            "seeds": [0], "threads": 1}
    result = sw.sweep(spec, tmp_path, on_progress=None)
    status = [o["status"] for o in result.outcomes]
    assert status == ["ok", "failed", "ok"]
    error = result.outcomes[1]["error"]
    assert "validation_data" in error and "mini-batch of 1000" in error
    table = result.markdown()
    assert "| failed |" in table and "mini-batch of 1000" in table
    assert (tmp_path / result.runs[1].name / sw.ERROR_FILE).exists()
    assert not (tmp_path / result.runs[1].name / sw.RESULT_FILE).exists()
    # the same (eta, seed) runs as the serial reference: the same weights
    ref_dir, names = serial_reference
    for run in (result.runs[0], result.runs[2]):
        assert run.name in names
    _assert_same_networks(tmp_path, ref_dir, [result.runs[0].name, result.runs[2].name])
    assert (tmp_path / "accuracy.png").stat().st_size > 1000
    # the workers ran on one kernel thread each, in other processes
    assert {o["pid"] for o in result.outcomes if "pid" in o} - {os.getpid()}


@pytest.mark.parametrize("spec, message", [
    ({"sgd": {"epochs": 1}}, "'network' is missing"),
    ({"network": "lenet", "sgd": {"epochs": 1}}, "unknown network 'lenet'"),
    ({"network": "fc", "sgd": {"epochs": 0}}, "spec.sgd.epochs: epochs must be a positive"),
    ({"network": "fc", "sgd": {"epoch": 1}}, "unknown key 'epoch'"),
    ({"network": "fc"}, "'epochs' is missing"),
    ({"network": "fc", "sgd": {"epochs": 1}, "grid": {"eta": []}},
     "spec.grid.eta: must be a non-empty list"),
    ({"network": "fc", "sgd": {"epochs": 1}, "grid": {"seed": [1]}},
     "'seed' cannot be set per run"),
    ({"network": "fc", "sgd": {"epochs": 1}, "grid": {"eta": ["fast"]}},
     "spec.grid.eta[0]: eta must be a finite number"),
    ({"network": "fc", "sgd": {"epochs": 1}, "grid": {"eta": [0.1]}, "runs": [{}]},
     "'grid' or 'runs', not both"),
    ({"network": "fc", "sgd": {"epochs": 1}, "seeds": [1, 1]}, "repeats a seed"),
    ({"network": "fc", "sgd": {"epochs": 1}, "seeds": [-1]}, "spec.seeds"),
    ({"network": "fc", "sgd": {"epochs": 1}, "runs": [{"eta": 0.1}, {"eta": 0.1}]},
     "two runs are the same run"),
    ({"network": "fc", "sgd": {"epochs": 1}, "data": {"path": 3}}, "spec.data"),
    ({"network": "fc", "sgd": {"epochs": 1}, "data": {"limit": [10, 10]}},
     "limit must be [n_train, n_valid, n_test]"),
    ({"network": "fc", "sgd": {"epochs": 1}, "ensemble": "yes"}, "spec.ensemble"),
    ({"network": "fc", "sgd": {"epochs": 1}, "threads": 0}, "spec.threads"),
    ({"network": "fc", "sgd": {"epochs": 1}, "python": "import os"}, "unknown keys"),
    ({"network": {"layers": [{"type": "Lambda"}]}, "sgd": {"epochs": 1, "eta": 0.1,
                                                            "lmbda": 0.0}},
     "layer 0 must be a dict with 'type'"),
    ({"network": {"layers": [{"type": "FullyConnectedLayer", "n_in": 784, "n_out": 30},
                             {"type": "SoftmaxLayer", "n_in": 20, "n_out": 10}]},
      "sgd": {"epochs": 1, "eta": 0.1, "lmbda": 0.0}},
     "spec.network: Network: layer 1 (SoftmaxLayer) expects 20 inputs"),
])
def test_bad_specs_are_clear_errors(tmp_path, spec, message):
    with pytest.raises(sw.SpecError) as info:
        sw.sweep(spec, tmp_path, serial=True)
    assert message in str(info.value)


def test_bad_spec_files_on_the_command_line(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{\"network\": \"fc\",")
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("network = fc\n")
    for path, message in ((bad_json, "not valid JSON"), (bad_toml, "not valid TOML"),
                          (tmp_path / "missing.json", "No such file")):
        p = subprocess.run(CLI + [str(path), "--serial"], env=_env(), cwd=ROOT,
                           capture_output=True, text=True, timeout=WAIT)
        assert p.returncode == 2, p.stderr
        assert message in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run(CLI + [str(bad_json), "--workers", "0"], env=_env(), cwd=ROOT,
                       capture_output=True, text=True, timeout=WAIT)
    assert p.returncode == 2 and "--workers must be >= 1" in p.stderr


def test_toml_spec_layer_list_and_ensemble(tmp_path):
    # a layer list in describe() form; the conv layer's batch follows the run's
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text("""
name = "toml"
seeds = [0, 1, 2]
ensemble = { vote = "plurality" }
data = { limit = [500, 100, 100] }

[sgd]
epochs = 1
mini_batch_size = 20
eta = 0.1
lmbda = 0.0

[[network.layers]]
type = "ConvPoolLayer"
filter_shape = [4, 1, 5, 5]
image_shape = [1, 1, 28, 28]
poolsize = [2, 2]
activation_fn = "ReLU"

[[network.layers]]
type = "SoftmaxLayer"
n_in = 576
n_out = 10
""")
    cpu = fastnet.get_engine("cpu")
    threads_before = cpu.get_num_threads()
    np.random.seed(1234)
    rng_before = np.random.get_state()[1].copy()
    result = sw.sweep(str(spec_path), tmp_path / "out", serial=True, plot=False,
                      threads_per_worker=threads_before + 1)
    assert [o["status"] for o in result.outcomes] == ["ok"] * 3
    assert result.runs[0].config["threads"] == threads_before + 1
    # a serial sweep runs in the user's process: its RNG and threads come back
    assert cpu.get_num_threads() == threads_before
    assert np.array_equal(np.random.get_state()[1], rng_before)
    [ens] = result.ensembles
    assert len(ens["members"]) == 3 and 0.0 <= ens["accuracy"] <= 1.0
    from fastnet import datasets
    test_data = datasets.mnist_sample()[2]
    test_data = (test_data[0][:100], test_data[1][:100])
    ensemble = result.ensemble(0)
    assert ensemble.accuracy(test_data) == ens["accuracy"]
    assert [net.accuracy(test_data) for net in ensemble.nets] == ens["member_accuracies"]
    # members trained with different seeds differ
    w = [net.params[0].get_value() for net in ensemble.nets]
    assert not np.array_equal(w[0], w[1])


def test_train_ensemble_with_a_callable_builder(tmp_path):
    from fastnet import FullyConnectedLayer, SoftmaxLayer

    def tiny(mbs):
        return [FullyConnectedLayer(n_in=784, n_out=30), SoftmaxLayer(n_in=30, n_out=10)]
    from fastnet import datasets
    tr, va, te = datasets.mnist_sample()
    data = ((tr[0][:600], tr[1][:600]), (va[0][:100], va[1][:100]), (te[0][:100], te[1][:100]))
    ensemble, result = sw.train_ensemble(tiny, tmp_path, seeds=(3, 4, 5),
                                         sgd={"epochs": 1, "eta": 0.5, "lmbda": 0.0},
                                         data=data, serial=True, plot=False)
    assert isinstance(ensemble, fastnet.Ensemble) and len(ensemble) == 3
    assert result.ensembles[0]["accuracy"] == ensemble.accuracy(data[2])


def test_fastnet_import_never_needs_dask_and_missing_dask_is_explained(monkeypatch):
    code = ("import sys, fastnet, fastnet.sweep, fastnet.ensemble; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r'pip install "fastnet\[distributed\]"'):
        sw._require_dask()


def test_default_cluster_shape_fits_the_cores():
    assert sw.default_cluster_shape(None, cores=8) == (8, 1)
    assert sw.default_cluster_shape(2, cores=8) == (4, 2)
    assert sw.default_cluster_shape(4, cores=2) == (1, 4)


def test_progress_counts_one_run_per_worker():
    seen = []
    progress = sw._Progress(5, 1, seen.append)
    assert seen[-1] == {"total": 5, "done": 1, "failed": 0, "running": 0,
                        "skipped": 1, "pending": 4}
    progress.started("a", "w1")
    progress.started("b", "w2")
    # w1 starts c before a's result arrived: a is no longer running
    progress.started("c", "w1")
    assert seen[-1]["running"] == 2 and seen[-1]["pending"] == 2
    progress.finished("a", ok=True)
    progress.finished("b", ok=False)
    assert seen[-1] == {"total": 5, "done": 2, "failed": 1, "running": 1,
                        "skipped": 1, "pending": 1}
    progress.started("b", "w2")          # a late event of a finished run
    assert seen[-1]["running"] == 1


def test_data_from_a_path_and_its_fingerprint_in_the_run_id(tmp_path):
    from fastnet import datasets
    tr, va, te = datasets.mnist_sample()
    names = dict(train_x=tr[0][:300], train_y=tr[1][:300], valid_x=va[0][:50],
                 valid_y=va[1][:50], test_x=te[0][:50], test_y=te[1][:50])
    np.savez(tmp_path / "digits.npz", **names)
    spec = {"network": "fc", "data": {"path": str(tmp_path / "digits.npz")},
            "sgd": {"epochs": 1}}
    from_file = sw.sweep(spec, tmp_path / "a", serial=True, plot=False)
    same = dict(spec, data={"limit": [300, 50, 50]})
    from_sample = sw.sweep(same, tmp_path / "b", serial=True, plot=False)
    # the same rows from either source: the same run, the same weights
    assert from_file.runs[0].id == from_sample.runs[0].id
    _assert_same_networks(tmp_path / "a", tmp_path / "b", [from_file.runs[0].name])
    # other rows: another run
    names["train_y"] = names["train_y"][::-1].copy()
    np.savez(tmp_path / "digits.npz", **names)
    assert sw.SweepPlan(spec).runs()[0].id != from_file.runs[0].id
