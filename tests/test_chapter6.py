"""`fastnet chapter6`: the ladder in a few-seconds mode -- rungs in the
book's order, the Markdown table last on stdout, JSON written, a rerun
resumes from the checkpoints without training again (same numbers)."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(out, *extra):
    cmd = [sys.executable, "-m", "fastnet", "chapter6", "--epochs", "1", "--train", "100",
           "--members", "2", "--rungs", "shallow,relu_l2,dropout", "--no-plots",
           "--out", out] + list(extra)
    env = dict(os.environ, PYTHONPATH=REPO, OMP_WAIT_POLICY="PASSIVE")
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def test_ladder_quick_and_resumed(tmp_path):
    out = str(tmp_path / "ch6")
    r = _run(out)
    assert r.returncode == 0, r.stderr[-3000:]
    table = r.stdout[r.stdout.index("Chapter 6's ladder on the bundled"):]
    rows = [l for l in table.splitlines() if l.startswith("| ") and "---" not in l][1:]
    assert [l.split("|")[1].strip() for l in rows] == ["shallow", "relu_l2", "dropout", "ensemble"]
    assert "| 97.80 % |" in rows[0] and "| 99.67 % |" in rows[-1]
    saved = json.load(open(os.path.join(out, "ladder.json")))
    assert [row["rung"] for row in saved["rows"]] == ["shallow", "relu_l2", "dropout", "ensemble"]
    assert all(0 <= row["fastnet"] <= 100 for row in saved["rows"])
    assert saved["rows"][2]["train_rows"] == 500           # expanded: 5 x 100
    again = _run(out)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.load(open(os.path.join(out, "ladder.json")))
    assert [row["fastnet"] for row in resumed["rows"]] == [row["fastnet"] for row in saved["rows"]]


def test_ladder_bad_arguments(tmp_path):
    r = _run(str(tmp_path / "x"), "--rungs", "nonsense")
    assert r.returncode == 2 and "unknown rungs" in r.stderr and "Traceback" not in r.stderr
