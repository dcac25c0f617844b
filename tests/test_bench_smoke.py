"""The bench suite's seconds-long smoke run: it must run and report fastnet.

Timings are never asserted (the machines are shared); only that the suite
runs end to end, checks fastnet against the NumPy reference engine, and
writes its table and JSON.
"""

import json
import os
import subprocess
import sys

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
