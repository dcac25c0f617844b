"""fastnet's bench: the book's networks on fastnet and on the references.

    python bench/run.py [--smoke] [--repeats 5] [--threads 2] [--samples N]
                        [--engines fastnet,torch-eager,...] [--networks conv2_relu,fc]
                        [--pytensor-python /path/to/venv/bin/python] [--out results.json]
                        [--device cpu|cuda]

For each network and mini-batch size, every engine trains in its own
subprocess (thread settings in its environment, so nothing leaks between
engines); the driver asks each in turn for one timed repetition, rotating the
order every round, and reports medians.  With ``--device cuda`` the engines
that can train on a GPU do so (each is probed first; the others are skipped
with the reason).  bench/README.md says what is measured and how.  ``main(argv)`` is the entry point (``python -m fastnet.bench``).
"""

import argparse
import datetime
import json
import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import harness  # noqa: E402
import workloads  # noqa: E402

PYTENSOR_ENV = "FASTNET_BENCH_PYTENSOR_PYTHON"

# engine name -> (script, extra arguments, which interpreter)
ENGINES = {
    "fastnet": ("engine_fastnet.py", ["--variant", "cpu"], "self"),
    "fastnet-reference": ("engine_fastnet.py", ["--variant", "reference"], "self"),
    "torch-eager": ("engine_torch.py", ["--variant", "eager"], "self"),
    "torch-compile": ("engine_torch.py", ["--variant", "compile"], "self"),
    "jax-jit": ("engine_jax.py", ["--variant", "jit"], "self"),
    "jax-scan": ("engine_jax.py", ["--variant", "scan"], "self"),
    "network3-pytensor": ("engine_pytensor.py", [], "pytensor"),
    "fastnet-keras": ("engine_fastnet.py", ["--variant", "keras"], "self"),
    "keras-jax": ("engine_keras.py", ["--variant", "jax"], "self"),
    "keras-torch": ("engine_keras.py", ["--variant", "torch"], "self"),
    "keras-torch-eager": ("engine_keras.py", ["--variant", "torch-eager"], "self"),
}
DEFAULT_ENGINES = ["fastnet", "torch-eager", "torch-compile", "jax-jit", "jax-scan",
                   "network3-pytensor", "fastnet-keras", "keras-jax", "keras-torch",
                   "keras-torch-eager"]
# engines whose import and compile take tens of seconds: --smoke leaves them
# out unless named (the Keras 3 engines would double its time)
SMOKE_LEAVES_OUT = ["torch-compile", "keras-jax", "keras-torch", "keras-torch-eager"]
# engines that cannot train on a GPU at all: why (--device cuda skips them
# without starting them)
CPU_ONLY = {
    "fastnet-reference": "fastnet's NumPy reference engine runs on the CPU only",
    "network3-pytensor": "network3's engine here is PyTensor 2.8.11's C ops, CPU only",
    "fastnet-keras": "the bench runs fastnet.keras on the CPU only",
    "keras-jax": "the bench runs Keras on the CPU only",
    "keras-torch": "the bench runs Keras on the CPU only",
    "keras-torch-eager": "the bench runs Keras on the CPU only",
}
FASTNET = "fastnet"
# whose parameters after the check steps the others are compared with, first found
ORACLES = ["network3-pytensor", "fastnet-reference", "torch-eager", "jax-jit"]
CHECK_RTOL = 1e-3


def build_parser():
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Samples/s of the book's networks on fastnet and reference engines.")
    p.add_argument("--engines", default=None,
                   help="comma list of %s (default: all but fastnet-reference)"
                        % ", ".join(ENGINES))
    p.add_argument("--networks", default=None,
                   help="comma list of %s (default: all)" % ", ".join(workloads.NETWORKS))
    p.add_argument("--mbs", default=None,
                   help="comma list of mini-batch sizes to keep (default: each network's)")
    p.add_argument("--samples", type=int, default=None,
                   help="training samples per epoch of a repetition (default per "
                        "network: %s)" % ", ".join("%s %d" % (k, v["samples"])
                                                   for k, v in workloads.NETWORKS.items()))
    p.add_argument("--min-seconds", type=float, default=1.0,
                   help="a repetition repeats such epochs until it has run this long "
                        "(default 1.0)")
    p.add_argument("--repeats", type=int, default=5, help="rounds (default 5)")
    p.add_argument("--threads", type=int, default=2, help="threads for every engine (default 2)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu (default), or cuda: the engines that can train on a GPU "
                        "(fastnet's cuda engine, PyTorch, JAX when it sees a GPU), "
                        "conv2_relu and dropout (and fc) at mini-batch 10 and 128")
    p.add_argument("--pytensor-python", default=None,
                   help="interpreter of the PyTensor 2.8.11 venv (or $%s)" % PYTENSOR_ENV)
    p.add_argument("--out", default=None,
                   help="JSON file (default bench/results/bench-<time>.json); the plot "
                        "goes next to it as .png")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--noise-threshold", type=float, default=0.10,
                   help="flag a repetition when other processes took more than this "
                        "share of the cores during it (default 0.10)")
    p.add_argument("--settle", type=float, default=0.3,
                   help="seconds of idle before each repetition (default 0.3)")
    p.add_argument("--start-timeout", type=float, default=1200.0,
                   help="seconds an engine may take to import, compile and warm up")
    p.add_argument("--smoke", action="store_true",
                   help="seconds-long run for CI: conv2_relu and fc (cuda: conv2_relu "
                        "and dropout) at mini-batch 10, 2 mini-batches per epoch, "
                        "1 repeat, no torch-compile and no Keras 3 engines unless named")
    p.add_argument("--busy", type=int, default=0, metavar="N",
                   help="start N busy-loop processes (one CPU each, while True: pass) "
                        "for the duration of the cases, stopped after: every engine "
                        "measured on a machine where other work holds cores (default 0)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when an engine fails (not a skip) or disagrees")
    return p


# ---------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------
class Worker(object):
    """One engine's subprocess for one case, speaking harness's JSON lines."""

    def __init__(self, engine, cmd, env, log_path, pin):
        self.engine = engine
        self.log_path = log_path
        self.log = open(log_path, "w")
        preexec = None
        if pin is not None and hasattr(os, "sched_setaffinity"):
            preexec = lambda: os.sched_setaffinity(0, pin)  # noqa: E731
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, env=env, cwd=HERE,
                                     preexec_fn=preexec, universal_newlines=True,
                                     bufsize=1)
        self.lines = queue.Queue()
        self.noise = []
        t = threading.Thread(target=self._read, daemon=True)
        t.start()
        self.rusage = None

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            try:
                obj = json.loads(line)
            except ValueError:
                self.noise.append(line)
                continue
            if isinstance(obj, dict) and "event" in obj:
                self.lines.put(obj)
            else:
                self.noise.append(line)
        self.lines.put(None)  # end of output

    def next_event(self, timeout):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return "timeout"

    def send(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def close(self, kill=False):
        """Stop the worker; returns its peak RSS in MiB (wait4's rusage)."""
        try:
            if kill:
                self.proc.kill()
            else:
                try:
                    self.send("quit")
                except (BrokenPipeError, OSError, ValueError):
                    pass
            try:
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            deadline = time.time() + 30
            status = None
            while time.time() < deadline:
                pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
                if pid:
                    self.rusage = ru
                    self.proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                time.sleep(0.05)
            else:
                self.proc.kill()
                pid, status, ru = os.wait4(self.proc.pid, 0)
                self.rusage = ru
                self.proc.returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            pass
        self.log.close()
        if self.rusage is None:
            return None
        return self.rusage.ru_maxrss / 1024.0

    def exit_text(self):
        rc = self.proc.returncode
        if rc is None:
            return "still running"
        if rc < 0:
            try:
                return "killed by signal %d, %s" % (-rc, signal.Signals(-rc).name)
            except ValueError:
                return "killed by signal %d" % -rc
        return "exit status %d" % rc

    def stderr_tail(self, n=12):
        try:
            with open(self.log_path) as f:
                lines = f.read().strip().splitlines()
        except OSError:
            lines = []
        # what the engine printed on stdout that was not a JSON line
        lines += ["stdout: " + l for l in self.noise[-n:]]
        return "\n".join(lines[-n:])


def interpreter(kind, args):
    if kind == "self":
        return sys.executable, None
    path = args.pytensor_python or os.environ.get(PYTENSOR_ENV)
    if not path:
        return None, ("no PyTensor interpreter given (--pytensor-python PATH or $%s); "
                      "see bench/README.md to make the venv" % PYTENSOR_ENV)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return None, "PyTensor interpreter %r is not an executable file" % path
    return path, None


def pin_cpus(threads):
    """The first ``threads`` CPUs when fewer than all, so no engine uses more."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None
    return set(cpus[:threads]) if 0 < threads < len(cpus) else None


# ---------------------------------------------------------------------------
# the machine
# ---------------------------------------------------------------------------
PEAK_CODE = r"""
import json, time, sys
import numpy as np
try:
    from scipy.linalg.blas import sgemm
except ImportError as e:
    print(json.dumps({"error": "scipy is not installed (%s)" % e})); sys.exit(0)
n = int(sys.argv[1])
rng = np.random.RandomState(0)
a = np.asfortranarray(rng.rand(n, n).astype(np.float32))
b = np.asfortranarray(rng.rand(n, n).astype(np.float32))
sgemm(1.0, a, b)
sys.path.insert(0, sys.argv[3])
import harness
times = []
b0, c0, w0 = harness.busy_seconds(), harness.self_cpu_seconds(), time.perf_counter()
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter(); sgemm(1.0, a, b); times.append(time.perf_counter() - t0)
b1, c1, w1 = harness.busy_seconds(), harness.self_cpu_seconds(), time.perf_counter()
times.sort()
g = [2.0 * n ** 3 / t / 1e9 for t in times]
others = (max(0.0, (b1 - b0) - (c1 - c0)) / ((w1 - w0) * harness.n_cpus())
          if b0 is not None else None)
print(json.dumps({"n": n, "gflops_median": g[len(g) // 2], "gflops_max": g[0],
                  "gflops_all": g, "others_share": others}))
"""


def measure_peak(threads, pin, n=2048, reps=7):
    """Median sgemm GFLOP/s (scipy.linalg.blas) with the bench's thread setting."""
    env = harness.thread_env(threads)
    preexec = (lambda: os.sched_setaffinity(0, pin)) if pin else None
    try:
        out = subprocess.run([sys.executable, "-c", PEAK_CODE, str(n), str(reps), HERE],
                             env=env, capture_output=True, text=True, timeout=300,
                             preexec_fn=preexec)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except Exception as e:  # noqa: BLE001
        return {"error": "%s: %s" % (type(e).__name__, e)}


def report_peak(peak, when, say):
    """Say the measured peak; returns its median GFLOP/s or None."""
    if "error" in peak:
        say("sgemm peak (%s): not measured (%s)" % (when, peak["error"]))
        return None
    others = peak.get("others_share")
    say("sgemm peak (%s; scipy.linalg.blas.sgemm %dx%d, median of %d): %.1f GFLOP/s%s"
        % (when, peak["n"], peak["n"], len(peak["gflops_all"]), peak["gflops_median"],
           " (other processes took %.0f%% of the cores meanwhile)" % (100 * others)
           if others and others > 0.1 else ""))
    return peak["gflops_median"]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_smi():
    """The GPUs as nvidia-smi lists them (name, driver, memory), or why not."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None, "nvidia-smi not found"
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=30)
    except Exception as e:  # noqa: BLE001
        return None, "nvidia-smi failed (%s: %s)" % (type(e).__name__, e)
    text = out.stdout.strip()
    if out.returncode != 0 or not text:
        return None, "nvidia-smi: %s" % _short(out.stderr.strip() or text
                                              or "exit status %d" % out.returncode, 120)
    return text.splitlines(), None


def probe_engines(engines, args, say):
    """--device cuda: ask each engine script, once, whether it can train on the
    GPU here (``--probe``: an import and a device query, no training).

    Returns {engine: {"status": "ok" | "skipped" | "error", ...}}; says one
    line per engine.
    """
    out, seen = {}, {}
    env = harness.thread_env(args.threads)
    pin = pin_cpus(args.threads)
    preexec = (lambda: os.sched_setaffinity(0, pin)) if pin else None
    for name in engines:
        if name in CPU_ONLY:
            out[name] = {"status": "skipped", "reason": CPU_ONLY[name]}
            say("  %-18s skipped: %s" % (name, CPU_ONLY[name]))
            continue
        script, extra, kind = ENGINES[name]
        py, why = interpreter(kind, args)
        if py is None:
            out[name] = {"status": "skipped", "reason": why}
            say("  %-18s skipped: %s" % (name, why))
            continue
        key = (py, script)
        if key not in seen:
            cmd = [py, os.path.join(HERE, script), "--probe", "--device", args.device,
                   "--threads", str(args.threads)] + extra
            seen[key] = _probe(cmd, env, preexec, min(args.start_timeout, 600.0))
        res = dict(seen[key])
        out[name] = res
        if res["status"] == "ok":
            say("  %-18s can run on %s%s" % (name, res.get("gpu") or args.device,
                                             " (SIMULATED)" if res.get("simulated") else ""))
        elif res["status"] == "skipped":
            say("  %-18s skipped: %s" % (name, res["reason"]))
        else:
            say("  %-18s ERROR: %s\n%s" % (name, res["reason"],
                                            _indent(res.get("stderr_tail", ""))))
    return out


def _probe(cmd, env, preexec, timeout):
    try:
        proc = subprocess.run(cmd, env=env, cwd=HERE, capture_output=True, text=True,
                              timeout=timeout, preexec_fn=preexec)
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": "probe: no answer within %.0f s" % timeout}
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict) and ev.get("event") == "probe":
            ev = {k: v for k, v in ev.items() if k not in ("event", "engine")}
            if ev.pop("ok", False):
                return dict(ev, status="ok")
            return dict(ev, status="skipped", reason=ev.get("reason") or "cannot run here")
    tail = "\n".join((proc.stderr.strip().splitlines() + proc.stdout.strip().splitlines())[-12:])
    return {"status": "error", "reason": "probe exited without an answer (exit status %d)"
            % proc.returncode, "stderr_tail": tail}


# ---------------------------------------------------------------------------
# one case: start the workers, rounds, stop them
# ---------------------------------------------------------------------------
def median(v):
    v = sorted(v)
    if not v:
        return None
    m = len(v) // 2
    return v[m] if len(v) % 2 else 0.5 * (v[m - 1] + v[m])


def start_workers(net, mbs, n, engines, args, tmp, say, probed=None):
    """Start each engine's worker in turn (one compiling at a time).

    ``probed`` ({engine: probe result}, --device cuda): engines whose probe
    did not say ok are recorded as skipped / failed without being started
    (their line was said once, at the probe)."""
    workers, results = {}, {}
    env = harness.thread_env(args.threads)
    pin = pin_cpus(args.threads)
    for name in engines:
        pr = (probed or {}).get(name)
        if pr is not None and pr["status"] != "ok":
            results[name] = {k: v for k, v in pr.items() if k in ("status", "reason",
                                                                 "stderr_tail")}
            continue
        script, extra, kind = ENGINES[name]
        py, why = interpreter(kind, args)
        if py is None:
            results[name] = {"status": "skipped", "reason": why}
            say("  %-18s skipped: %s" % (name, why))
            continue
        tag = "%s-%s-%d" % (name, net, mbs)
        check_path = os.path.join(tmp, tag + ".npz")
        cmd = [py, os.path.join(HERE, script), "--network", net, "--mbs", str(mbs),
               "--samples", str(n), "--min-seconds", str(args.min_seconds),
               "--threads", str(args.threads), "--check-out", check_path,
               "--serve"] + extra
        if args.device != "cpu":
            cmd += ["--device", args.device]
        t0 = time.perf_counter()
        w = Worker(name, cmd, env, os.path.join(tmp, tag + ".log"), pin)
        ev = w.next_event(args.start_timeout)
        if ev == "timeout" or ev is None or ev.get("event") not in ("ready", "skip"):
            if ev == "timeout":
                reason = "no ready line within %.0f s" % args.start_timeout
                w.close(kill=True)
            else:
                w.close()
                reason = "exited before it was ready (%s)" % w.exit_text()
            tail = w.stderr_tail()
            results[name] = {"status": "error", "reason": reason, "stderr_tail": tail}
            say("  %-18s ERROR: %s\n%s" % (name, reason, _indent(tail)))
            continue
        if ev["event"] == "skip":
            w.close()
            results[name] = {"status": "skipped", "reason": ev.get("reason")}
            say("  %-18s skipped: %s" % (name, ev.get("reason")))
            continue
        ev["start_wall_s"] = time.perf_counter() - t0
        ev["check_file"] = check_path
        results[name] = dict(status="ok", ready=ev, reps=[], discarded=[])
        workers[name] = w
        say("  %-18s ready (import %.1f s, setup %.1f s, first steps %.1f s, "
            "warm-up epoch %.2f s)" % (name, ev.get("import_s") or 0.0, ev["setup_s"],
                                       ev["check_s"], ev["warmup_s"]))
    return workers, results


def _indent(text, pad="      | "):
    return "\n".join(pad + l for l in text.splitlines()) if text else pad + "(no stderr)"


def one_rep(w, args):
    time.sleep(args.settle)
    try:
        w.send("run")
    except (BrokenPipeError, OSError) as e:
        return {"error": "worker gone (%s)" % e}
    ev = w.next_event(max(600.0, 50 * args.min_seconds))
    if ev == "timeout":
        return {"error": "no result within the time limit"}
    if ev is None:
        return {"error": "worker exited"}
    if ev.get("event") != "rep":
        return {"error": "unexpected line %r" % ev}
    others = ev.get("others_share")
    ev["flagged"] = bool(others is not None and others > args.noise_threshold
                         and others * ev["seconds"] * ev["ncpu"] > 0.05)
    return ev


BUSY_CODE = "while True: pass"


class BusyLoad(object):
    """N processes spinning on a CPU each while the cases run: the load of
    another program (a browser, an indexer) holding cores."""

    def __init__(self, n):
        self.procs = []
        for _ in range(n):
            self.procs.append(subprocess.Popen([sys.executable, "-c", BUSY_CODE],
                                               stdin=subprocess.DEVNULL))

    def alive(self):
        return sum(p.poll() is None for p in self.procs)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []


def run_rounds(workers, results, args, say):
    names = list(workers)
    for r in range(args.repeats):
        k = r % len(names) if names else 0
        order = names[k:] + names[:k]
        for name in order:
            if name not in workers:
                continue
            w = workers[name]
            rep = one_rep(w, args)
            if "error" not in rep and rep["flagged"]:
                # other processes used the cores: measure again, once
                rep["round"] = r
                results[name]["discarded"].append(rep)
                rep = one_rep(w, args)
                rep["retry"] = True
            if "error" in rep:
                w.close(kill=rep["error"] != "worker exited")
                rep["error"] += " (%s)" % w.exit_text()
                del workers[name]
                results[name]["status"] = "error"
                results[name]["reason"] = rep["error"]
                results[name]["stderr_tail"] = w.stderr_tail()
                say("  %-18s ERROR in round %d: %s\n%s" % (name, r, rep["error"],
                                                          _indent(w.stderr_tail())))
                continue
            rep["round"] = r
            results[name]["reps"].append(rep)
        line = "  round %d/%d:" % (r + 1, args.repeats)
        for name in order:
            reps = results[name].get("reps")
            if reps and reps[-1].get("round") == r:
                line += "  %s %.0f%s" % (name, reps[-1]["samples_per_s"],
                                         "*" if reps[-1]["flagged"] else "")
        say(line)


def compare_checks(results, net, say):
    """Parameters after the first steps, each engine against the oracle."""
    import numpy as np
    if workloads.has_dropout(net):
        return {"skipped": "dropout masks differ between engines"}
    ok = [n for n, r in results.items() if r["status"] == "ok"
          and os.path.exists(r["ready"].get("check_file", ""))]
    if len(ok) < 2:
        return {"skipped": "fewer than two engines ran"}
    oracle = next((o for o in ORACLES if o in ok), ok[0])
    ref = np.load(results[oracle]["ready"]["check_file"])
    out = {"oracle": oracle, "rtol": CHECK_RTOL, "max_rel_diff": {}}
    for name in ok:
        if name == oracle:
            continue
        got = np.load(results[name]["ready"]["check_file"])
        worst = 0.0
        for key in ref.files:
            a, b = got[key].astype(np.float64), ref[key].astype(np.float64)
            if a.shape != b.shape:
                worst = float("inf")
                break
            scale = max(np.abs(b).max(), 1e-12)
            worst = max(worst, float(np.abs(a - b).max() / scale))
        out["max_rel_diff"][name] = worst
        results[name]["agrees"] = bool(worst <= CHECK_RTOL)
        if worst > CHECK_RTOL:
            say("  %-18s DISAGREES with %s after the first steps: max rel diff %.2e"
                % (name, oracle, worst))
    if out["max_rel_diff"]:
        say("  parameters after the first %s steps agree with %s: max rel diff %.1e"
            % (results[oracle]["ready"]["check_samples"] // max(1, results[oracle]
               ["ready"]["mbs"]), oracle, max(out["max_rel_diff"].values()))
            if all(v <= CHECK_RTOL for v in out["max_rel_diff"].values()) else
            "  check against %s: see above" % oracle)
    return out


def summarise(case, results, peak):
    flops = workloads.flops_per_sample(case["network"])
    for name, r in results.items():
        if r["status"] != "ok" or not r["reps"]:
            if r["status"] == "ok":
                r["status"] = "error"
                r["reason"] = "no repetition finished"
            continue
        rates = [x["samples_per_s"] for x in r["reps"]]
        rate = median(rates)
        ready = r["ready"]
        one_time = (ready["setup_s"] + ready["check_s"] + ready["warmup_s"]
                    - (ready["check_samples"] + ready["warmup_samples"]) / rate)
        r.update(samples_per_s=rate, samples_per_s_reps=rates,
                 s_per_epoch=workloads.EPOCH_SAMPLES / rate,
                 one_time_s=max(0.0, one_time),
                 gflops=flops * rate / 1e9,
                 pct_peak=(100.0 * flops * rate / 1e9 / peak) if peak else None,
                 flagged_reps=sum(1 for x in r["reps"] if x["flagged"]),
                 spread=(max(rates) - min(rates)) / rate if len(rates) > 1 else 0.0)
    ok = {n: r for n, r in results.items() if r.get("samples_per_s")}
    fast = ok.get(FASTNET)
    others = {n: r for n, r in ok.items() if not n.startswith(FASTNET)}
    best = max(others, key=lambda n: others[n]["samples_per_s"]) if others else None
    case["best_reference"] = best
    if fast:
        for n, r in ok.items():
            r["fastnet_ratio"] = fast["samples_per_s"] / r["samples_per_s"]
        case["fastnet_vs_best"] = (fast["samples_per_s"] / others[best]["samples_per_s"]
                                   if best else None)


def run_case(net, mbs, engines, args, tmp, peak, say, probed=None):
    n = workloads.round_samples(args.samples or workloads.default_samples(net, args.device),
                                mbs)
    case = {"network": net, "mbs": mbs, "n": n,
            "flops_per_sample": workloads.flops_per_sample(net),
            "eta": workloads.hyper(net)[0], "lmbda": workloads.hyper(net)[1]}
    say("\n%s (%s), mini-batch %d, %d samples per epoch, %.2f MFLOP per sample"
        % (net, workloads.NETWORKS[net]["title"], mbs, n, case["flops_per_sample"] / 1e6))
    workers, results = start_workers(net, mbs, n, engines, args, tmp, say, probed)
    try:
        run_rounds(workers, results, args, say)
    finally:
        for name, w in list(workers.items()):
            rss = w.close()
            if name in results and rss is not None:
                results[name]["rss_mib"] = rss
    case["check"] = compare_checks(results, net, say)
    summarise(case, results, peak)
    for r in results.values():
        if "ready" in r:
            r["ready"].pop("check_file", None)
    case["engines"] = results
    return case


# ---------------------------------------------------------------------------
# the table, the plot
# ---------------------------------------------------------------------------
COLUMNS = [("network", 10), ("mbs", 4), ("engine", 18), ("samples/s", 10),
           ("s/epoch", 8), ("1-time s", 8), ("GFLOP/s", 8), ("%peak", 6),
           ("RSS MiB", 8), ("fastnet x", 9), ("notes", 0)]


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(cases, device="cpu"):
    """The results table; on cuda without the %peak column (the sgemm peak
    it is measured against is the CPU's)."""
    cols = [c for c in COLUMNS if not (device == "cuda" and c[0] == "%peak")]
    head = " ".join(("%-*s" if i < 3 else "%*s") % (w, c) if w else c
                    for i, (c, w) in enumerate(cols))
    lines = [head, "-" * len(head)]
    for case in cases:
        for name, r in case["engines"].items():
            cells = [case["network"], str(case["mbs"]), name]
            if r.get("samples_per_s"):
                notes = []
                if r.get("flagged_reps"):
                    notes.append("%d noisy rep%s" % (r["flagged_reps"],
                                                     "s" if r["flagged_reps"] > 1 else ""))
                if r.get("agrees") is False:
                    notes.append("DISAGREES")
                if name == case.get("best_reference"):
                    notes.append("best reference")
                values = {"samples/s": _fmt(r["samples_per_s"], ".0f"),
                          "s/epoch": _fmt(r["s_per_epoch"], ".2f"),
                          "1-time s": _fmt(r["one_time_s"], ".1f"),
                          "GFLOP/s": _fmt(r["gflops"], ".2f"),
                          "%peak": _fmt(r["pct_peak"], ".1f"),
                          "RSS MiB": _fmt(r.get("rss_mib"), ".0f"),
                          "fastnet x": _fmt(r.get("fastnet_ratio"), ".2f"),
                          "notes": ", ".join(notes)}
                cells += [values[c] for c, _ in cols[3:]]
            else:
                cells += ["-"] * (len(cols) - 4) + ["%s: %s" % (r["status"],
                                                                _short(r.get("reason")))]
            lines.append(" ".join(("%-*s" if i < 3 else "%*s") % (w, c) if w else c
                                  for i, ((_, w), c) in enumerate(zip(cols, cells))))
        if case.get("fastnet_vs_best") is not None:
            lines.append("%s fastnet / best reference (%s): %.2fx" % (
                " " * 34, case["best_reference"], case["fastnet_vs_best"]))
    return "\n".join(lines)


def _short(text, n=60):
    text = (text or "").replace("\n", " ")
    return text if len(text) <= n else text[:n - 3] + "..."


def plot(cases, path, where=""):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib)"
    engines = [n for n in ENGINES if any(c["engines"].get(n, {}).get("samples_per_s")
                                         for c in cases)]
    if not engines:
        return "nothing measured: no plot"
    labels = ["%s\nmbs %d" % (c["network"], c["mbs"]) for c in cases]
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(cases)), 4.5))
    width = 0.8 / len(engines)
    for i, name in enumerate(engines):
        xs, ys, lo, hi = [], [], [], []
        for j, c in enumerate(cases):
            r = c["engines"].get(name, {})
            if r.get("samples_per_s"):
                reps = r["samples_per_s_reps"]
                xs.append(j + (i - (len(engines) - 1) / 2.0) * width)
                ys.append(r["samples_per_s"])
                lo.append(r["samples_per_s"] - min(reps))
                hi.append(max(reps) - r["samples_per_s"])
        ax.bar(xs, ys, width, yerr=[lo, hi], label=name, capsize=2)
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(labels)
    ax.set_yscale("log")
    ax.set_ylabel("training samples/s (median, bars: min-max)")
    ax.set_title("fastnet bench%s, %s" % (where and " (%s)" % where,
                                          os.path.basename(path)))
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ---------------------------------------------------------------------------
def main(argv=None):
    args = build_parser().parse_args(argv)
    engines = (args.engines.split(",") if args.engines else list(DEFAULT_ENGINES))
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        print("unknown engine(s): %s; known: %s" % (", ".join(unknown), ", ".join(ENGINES)))
        return 2
    names = args.networks.split(",") if args.networks else None
    if names:
        bad = [n for n in names if n not in workloads.NETWORKS]
        if bad:
            print("unknown network(s): %s; known: %s" % (", ".join(bad),
                                                         ", ".join(workloads.NETWORKS)))
            return 2
    mbs_list = [int(m) for m in args.mbs.split(",")] if args.mbs else None
    cuda = args.device == "cuda"
    notes = []
    if args.smoke:
        args.repeats = 1
        args.min_seconds = 0.0
        args.settle = 0.0
        if not names and not mbs_list:
            names, mbs_list = (["conv2_relu", "dropout"] if cuda else
                               ["conv2_relu", "fc"]), [10]
        if args.samples is None:
            args.samples = 2 * max(mbs_list or [128])
        if not args.engines:
            for name in SMOKE_LEAVES_OUT:
                engines.remove(name)
            notes.append("--smoke leaves out %s (their imports and compiles take tens of "
                         "seconds); name them in --engines to include them"
                         % ", ".join(SMOKE_LEAVES_OUT))
    cases = workloads.cases(names, mbs_list, args.device)
    if not cases:
        print("no network / mini-batch size matches")
        return 2

    def say(msg):
        print(msg)
        sys.stdout.flush()

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or os.path.join(HERE, "results", "bench-%s.json" % stamp)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)

    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    t_start = time.time()
    if cuda:
        smi, smi_why = nvidia_smi()
        say("fastnet bench, device cuda: GPU %s; host %s, %d CPUs, %d threads per "
            "engine (host side), %d repeat%s, engines: %s"
            % ("; ".join(smi) if smi else "not found by nvidia-smi (%s)" % smi_why,
               cpu_model(), harness.n_cpus(), args.threads, args.repeats,
               "s" if args.repeats != 1 else "", ", ".join(engines)))
    else:
        say("fastnet bench: %s, %d CPUs, %d threads per engine, %d repeat%s, engines: %s"
            % (cpu_model(), harness.n_cpus(), args.threads, args.repeats,
               "s" if args.repeats != 1 else "", ", ".join(engines)))
    for n in notes:
        say("note: " + n)
    if args.busy < 0:
        print("--busy: N must be >= 0, got %d" % args.busy)
        return 2
    if args.busy:
        # the load is the point: repetitions are not flagged or repeated for it
        args.noise_threshold = float("inf")
        say("note: --busy %d: %d busy-loop process%s hold%s CPUs while the cases run; "
            "the sgemm peak is measured before and after, without them"
            % (args.busy, args.busy, "es" if args.busy != 1 else "",
               "" if args.busy != 1 else "s"))
    elif load0 and load0[0] > 0.5:
        say("note: load average %.2f before the start: other processes are busy, so "
            "expect noisy repetitions (flagged and repeated once)" % load0[0])
    pin = pin_cpus(args.threads)
    probed, gpu, simulated = None, None, False
    if cuda:
        # the sgemm peak is the CPU's: no %peak on a GPU
        peak, peak_g = {"skipped": "not measured with --device cuda"}, None
        say("engines on cuda (each asked once whether it can train on a GPU here):")
        probed = probe_engines(engines, args, say)
        seen = {n: r["gpu"] for n, r in probed.items() if r.get("gpu")}
        gpu = next(iter(seen.values()), None) or (smi[0].split(",")[0] if smi else None)
        simulated = any(r.get("simulated") for r in probed.values())
        if simulated:
            say("note: NUMBA_ENABLE_CUDASIM is set: fastnet's cuda engine runs in Numba's "
                "CUDA simulator, on the CPU; its numbers say nothing about a GPU")
        runnable = [n for n in engines if probed[n]["status"] == "ok"]
        if not runnable:
            say("no engine can train on cuda here: nothing measured (the reasons are "
                "above)")
            cases = []
    else:
        peak = measure_peak(args.threads, pin)
        peak_g = report_peak(peak, "start", say)
    where = ("cuda, %s%s" % (gpu or "no GPU", " SIMULATED" if simulated else "")
             if cuda else "cpu, %s, %d threads" % (cpu_model(), args.threads))
    if args.busy:
        where += ", %d busy-loop process%s beside" % (args.busy,
                                                       "es" if args.busy != 1 else "")

    tmp = tempfile.mkdtemp(prefix="fastnet-bench-")
    results = []
    interrupted = False
    busy = BusyLoad(args.busy) if args.busy else None
    try:
        for net, mbs in cases:
            results.append(run_case(net, mbs, engines, args, tmp, peak_g, say, probed))
            if busy is not None and busy.alive() != args.busy:
                say("note: %d of the %d busy-loop processes ended early"
                    % (args.busy - busy.alive(), args.busy))
    except KeyboardInterrupt:
        # the workers of the case under way were stopped by run_case; what
        # finished so far is still written and shown
        interrupted = True
        say("\ninterrupted: writing the %d finished case(s)" % len(results))
    finally:
        if busy is not None:
            busy.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    if not args.smoke and not interrupted and peak_g is not None:
        # measured again at the end: the better of the two is the peak (on a
        # shared machine one of them may have been disturbed)
        peak_end = measure_peak(args.threads, pin)
        g_end = report_peak(peak_end, "end", say)
        if g_end and g_end > peak_g:
            peak_g = g_end
            for case in results:
                for r in case["engines"].values():
                    if r.get("gflops"):
                        r["pct_peak"] = 100.0 * r["gflops"] / peak_g
        peak = {"start": peak, "end": peak_end, "gflops_used": peak_g}

    doc = {
        "meta": {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "host": platform.node(), "cpu": cpu_model(), "ncpu": harness.n_cpus(),
            "platform": platform.platform(), "python": sys.version.split()[0],
            "threads": args.threads, "repeats": args.repeats, "busy": args.busy,
            "min_seconds": args.min_seconds,
            "noise_threshold": None if args.busy else args.noise_threshold,
            "smoke": args.smoke, "engines": engines, "argv": list(argv or sys.argv[1:]),
            "sgemm_peak": peak, "epoch_samples": workloads.EPOCH_SAMPLES,
            "device": args.device, "mode": where, "gpu": gpu,
            "gpu_seen_by": ({n: r["gpu"] for n, r in probed.items() if r.get("gpu")}
                            if probed else None),
            "nvidia_smi": (smi or smi_why) if cuda else None,
            "simulated": simulated, "probes": probed,
            "loadavg_start": load0,
            "loadavg_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "wall_s": time.time() - t_start, "interrupted": interrupted,
        },
        "cases": results,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=1, default=str)

    if results:
        say("\n%s\n%s" % ("device: " + where, table(results, args.device)))
        say("\nsamples/s: median over repetitions; s/epoch: %d samples at that rate; "
            "1-time s: setup + compile + warm-up beyond the steady rate; fastnet x: "
            "fastnet's samples/s over the engine's.%s" % (
                workloads.EPOCH_SAMPLES, " No %peak on cuda (the sgemm peak is the CPU's)."
                if cuda else ""))
    say("JSON: %s" % out)
    if not args.no_plot:
        png = os.path.splitext(out)[0] + ".png"
        why = plot(results, png, where)
        say(why if why else "plot: %s" % png)

    if interrupted:
        return 130
    bad = [(c["network"], c["mbs"], n) for c in results for n, r in c["engines"].items()
           if r["status"] == "error" or r.get("agrees") is False]
    if not results and probed:
        # nothing ran: a probe that failed (not a skip) still counts
        bad = [("-", "-", n) for n, r in probed.items() if r["status"] == "error"]
    if bad and args.strict:
        say("--strict: %d engine run(s) failed or disagreed" % len(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
