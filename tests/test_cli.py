"""fastnet's command line (fastnet/cli.py): ``--help`` of every command exits
0, a usage error is one line on stderr and exit status 2, and the commands
run.  Most calls go through ``cli.main`` in this process; two subprocesses
check ``python -m fastnet`` itself."""

import os
import subprocess
import sys

import pytest

from fastnet import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _keep_import_state(monkeypatch):
    """`bench` puts the checkout on sys.path and imports bench/: undo it, so
    that later tests import network3 and fastnet from where they did before."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name == "bench" or name.startswith("bench."):
            del sys.modules[name]


def run(capsys, *argv):
    status = cli.main(list(argv), prog="fastnet")
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["demo", "--help"], ["info", "--help"],
                                  ["bench", "--help"], ["sweep", "--help"]],
                         ids=lambda a: " ".join(a))
def test_help_exits_0(capsys, argv):
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    assert "usage:" in out and err == ""


def test_top_help_lists_every_command(capsys):
    _, out, _ = run(capsys, "--help")
    for name, _summary in cli.COMMANDS:
        assert name in out


def test_version(capsys):
    import fastnet
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out.strip() == "fastnet " + fastnet.__version__


@pytest.mark.parametrize("argv,expect", [
    ([], "choose a command"),
    (["bogus"], "unknown command 'bogus'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["demo", "--engine", "bogus"], "invalid choice: 'bogus'"),
    (["demo", "--epochs", "0"], "'0' must be at least 1"),
    (["demo", "--mini-batch-size", "ten"], "'ten' is not an integer"),
    (["demo", "--data", "/no/such/mnist.pkl.gz"], "no such file or directory"),
    (["info", "--verbose"], "unrecognized arguments: --verbose"),
], ids=lambda a: " ".join(a) if isinstance(a, list) else None)
def test_usage_errors_are_one_line_and_exit_2(capsys, argv, expect):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert err.count("\n") == 1 and expect in err, err
    assert err.startswith("fastnet") and "Traceback" not in err
    assert out == ""


def test_demo_with_an_unreadable_data_file_is_a_usage_error(capsys, tmp_path):
    bad = tmp_path / "mnist.pkl.gz"
    bad.write_bytes(b"not a pickle")
    status, _, err = run(capsys, "demo", "--data", str(bad))
    assert status == 2 and err.count("\n") == 1 and str(bad) in err, err


def test_demo_with_an_engine_this_machine_lacks(capsys, monkeypatch):
    from fastnet import engines

    def missing(name=None):
        raise ImportError("fastnet's compiled CPU engine is not built (test)\nsecond line")
    monkeypatch.setattr(engines, "get_engine", missing)
    status, _, err = run(capsys, "demo", "--engine", "cpu")
    assert status == 2
    assert err == "fastnet demo: error: engine 'cpu' is not available here: fastnet's " \
                  "compiled CPU engine is not built (test)\n"


def test_demo_trains_and_logs_plain_progress(capsys):
    """The fc net for one epoch on the bundled sample: network3's log on
    stdout, one plain progress line on stderr (not a terminal here)."""
    status, out, err = run(capsys, "demo", "--net", "fc", "--epochs", "1",
                           "--engine", "reference")
    assert status == 0, err
    assert "Epoch 0: validation accuracy" in out and "Finished training network." in out
    assert out.rstrip().splitlines()[-1].startswith("Trained 8000 samples")
    assert err.startswith("epoch 0: 800/800 mini-batches (100%)"), err
    status, out, err = run(capsys, "demo", "--net", "fc", "--epochs", "1",
                           "--engine", "reference", "--no-progress")
    assert status == 0 and err == ""


def test_info(capsys):
    status, out, err = run(capsys, "info")
    assert status == 0, err
    assert out.startswith("fastnet ")
    assert "engine reference: available" in out
    assert "extras: cuda " in out


def test_bench_outside_a_checkout_says_how_to_get_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "_is_checkout", lambda folder: False)
    status, out, err = run(capsys, "bench", "--smoke")
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and "bench/ folder of the fastnet source repository" in err


def test_bench_finds_a_checkout_in_the_current_directory(monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "fastnet" / "cli.py"))
    monkeypatch.chdir(tmp_path)
    assert cli.find_checkout() is None
    monkeypatch.chdir(REPO)
    assert cli.find_checkout() == REPO


def test_sweep_dispatches_to_fastnet_sweep(capsys, monkeypatch):
    import types
    calls = []
    fake = types.ModuleType("fastnet.sweep")
    fake.main = lambda argv: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "fastnet.sweep", fake)
    status, _, _ = run(capsys, "sweep", "--grid", "x.json")
    assert status == 0 and calls == [["--grid", "x.json"]]


def test_sweep_missing_from_the_build(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastnet.sweep", None)   # import fails
    status, out, err = run(capsys, "sweep")
    assert status == 1 and "not available in this build" in err and err.count("\n") == 1


def test_python_dash_m_fastnet_exit_statuses():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    ok = subprocess.run([sys.executable, "-m", "fastnet", "--help"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.startswith("usage: python -m fastnet")
    bad = subprocess.run([sys.executable, "-m", "fastnet", "demo", "--engine", "bogus"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("python -m fastnet demo: error: argument --engine")
    assert bad.stderr.count("\n") == 1
