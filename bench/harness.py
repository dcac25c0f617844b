"""What every engine script of the bench shares: its command line, timing,
CPU accounting, and the JSON lines it speaks to bench/run.py.

Standard library and NumPy only: the PyTensor engine imports this module in a
venv with numpy<1.24.

An engine script defines a class with this shape and calls ``main(cls)``:

    class Engine:
        name = "torch-eager"                 # the engine's name in the table
        def __init__(self, args, net, x, y, params0, eta, l2):
            # build the network from workloads.layers(net, args.mbs), start
            # from params0 ([(w, b)] in network3's orientation), compile
            # whatever can be compiled ahead of time
        def check(self, steps):             # train ``steps`` mini-batches
            ...                             # of x in order from params0
        def params(self):                   # [(w, b)] as NumPy arrays, in
            ...                             # network3's orientation
        def epoch(self):                    # train on all of x, in order,
            ...                             # and return when it is done
        def info(self):                     # versions, settings (a dict)
            ...
        devices = ("cpu", "cuda")           # where it can run (default: cpu)
        @staticmethod
        def probe(args):                    # optional: can it run on
            ...                             # args.device here? a dict

With ``--device cuda`` (``args.device``) the engine trains on the GPU, and
``__init__``, ``check`` and ``epoch`` return only when the GPU has finished
their work (torch.cuda.synchronize, block_until_ready, ...), so every timer
stops after the device work it measures.  ``probe(args)`` returns
{"ok": bool, "reason": why not, "gpu": the GPU's name, ...}; ``--probe`` runs
only it (no network, no data) for bench/run.py's check before any case.

``main`` prints JSON lines on stdout:
  {"event": "probe", "ok": ...}         --probe: can the engine run on --device
  {"event": "skip", "reason": ...}      the engine cannot run here (exit 0)
  {"event": "ready", ...}               after setup, check and one warm-up
                                        epoch (their wall times)
  {"event": "rep", ...}                 one timed repetition (``--serve``:
                                        one per "run" line read on stdin)
  {"event": "result", ...}              standalone: all repetitions at once
"""

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

import workloads

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def thread_env(threads, base=None):
    """A copy of ``base`` (os.environ) with every engine's thread knobs set."""
    env = dict(os.environ if base is None else base)
    t = str(int(threads))
    for var in THREAD_VARS:
        env[var] = t
    multi = "true" if int(threads) > 1 else "false"
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith(("--xla_cpu_multi_thread_eigen",
                                  "intra_op_parallelism_threads",
                                  "--xla_force_host_platform_device_count"))]
    flags += ["--xla_cpu_multi_thread_eigen=" + multi,
              "intra_op_parallelism_threads=" + t]
    env["XLA_FLAGS"] = " ".join(flags)
    env["FASTNET_BENCH_THREADS"] = t
    return env


def n_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _my_cpus():
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None


def busy_seconds(cpus=None):
    """CPU seconds the given CPUs (default: this process's, from its
    affinity) have been busy since boot, from /proc/stat; None off Linux.

    busy = user + nice + system + irq + softirq + steal (idle and iowait are
    not busy); guest time is already inside user.  Only the CPUs this process
    may run on count, so a busy core it is pinned away from is no disturbance.
    """
    if cpus is None:
        cpus = _my_cpus()
    want = None if cpus is None else set("cpu%d" % c for c in cpus)
    try:
        with open("/proc/stat") as f:
            lines = [l.split() for l in f if l.startswith("cpu")]
    except OSError:
        return None
    if not lines:
        return None
    if want is None:
        rows = [lines[0]] if lines[0][0] == "cpu" else []
    else:
        rows = [l for l in lines if l[0] in want]
    if not rows:
        return None
    busy = 0
    for fields in rows:
        v = [int(a) for a in fields[1:]]
        busy += v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    return busy / float(os.sysconf("SC_CLK_TCK"))


def self_cpu_seconds():
    """User + system CPU seconds of this process, all its threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mib():
    """Peak resident set of this process so far, MiB (Linux reports KiB)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 2.0 ** 20


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--network", choices=sorted(workloads.NETWORKS),
                   help="required unless --probe")
    p.add_argument("--mbs", type=int, help="required unless --probe")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the engine trains (default cpu)")
    p.add_argument("--probe", action="store_true",
                   help="only say whether the engine can run on --device here "
                        "(one JSON line), then exit")
    p.add_argument("--samples", type=int, default=None,
                   help="training samples per epoch of a repetition "
                        "(default: the network's own)")
    p.add_argument("--min-seconds", type=float, default=0.0,
                   help="a repetition trains whole epochs of --samples until "
                        "at least this long has passed")
    p.add_argument("--repeats", type=int, default=3, help="standalone mode")
    p.add_argument("--threads", type=int, default=None,
                   help="threads (default: FASTNET_BENCH_THREADS, else 2); "
                        "the thread env vars must be set before the start")
    p.add_argument("--check-steps", type=int, default=3)
    p.add_argument("--check-out", default=None,
                   help="write the parameters after the check steps here (.npz)")
    p.add_argument("--serve", action="store_true",
                   help="wait for 'run' / 'quit' lines on stdin (bench/run.py)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _time_rep(engine, n, min_seconds):
    """One repetition: whole epochs until min_seconds; timing and CPU use."""
    ncpu = n_cpus()
    b0, c0 = busy_seconds(), self_cpu_seconds()
    inner0 = getattr(engine, "inner_seconds", None)
    t0 = time.perf_counter()
    epochs = 0
    while True:
        engine.epoch()
        epochs += 1
        wall = time.perf_counter() - t0
        if wall >= min_seconds:
            break
    c1, b1 = self_cpu_seconds(), busy_seconds()
    rep = {"event": "rep", "seconds": wall, "samples": epochs * n,
           "epochs": epochs, "samples_per_s": epochs * n / wall,
           "cpu_s": c1 - c0, "ncpu": ncpu, "rss_mib": peak_rss_mib()}
    if inner0 is not None:
        # the engine's own account of its training time (fastnet's
        # TrainingHistory.training_seconds): the rest is per-call overhead
        rep["inner_s"] = engine.inner_seconds - inner0
    if b0 is not None and b1 is not None:
        rep["busy_s"] = b1 - b0
        # CPU seconds that other processes took during the repetition, as a
        # share of what the cores could give in that time
        rep["others_share"] = max(0.0, (b1 - b0) - (c1 - c0)) / (wall * ncpu)
    return rep


def main(engine_cls, argv=None, extra=()):
    """Run an engine script: ``extra`` is [(flag, argparse kwargs)]."""
    p = parser(engine_cls.__doc__ or engine_cls.name)
    for flag, kw in extra:
        p.add_argument(flag, **kw)
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = int(os.environ.get("FASTNET_BENCH_THREADS", "2"))
    devices = getattr(engine_cls, "devices", ("cpu",))
    not_here = (None if args.device in devices else
                "%s runs on %s only, not on %s" % (engine_cls.name, " / ".join(devices),
                                                   args.device))
    if args.probe:
        if not_here:
            res = {"ok": False, "reason": not_here}
        elif hasattr(engine_cls, "probe"):
            try:
                res = engine_cls.probe(args)
            except Exception as e:  # noqa: BLE001 -- a probe that fails says why
                res = {"ok": False, "reason": "probe failed (%s: %s)"
                                              % (type(e).__name__, e)}
        else:
            res = {"ok": True}
        emit(dict(res, event="probe", engine=engine_cls.name, device=args.device))
        return 0
    if args.network is None or args.mbs is None:
        p.error("--network and --mbs are required (unless --probe)")
    net, mbs = args.network, args.mbs
    n = workloads.round_samples(args.samples or workloads.default_samples(net, args.device),
                                mbs)
    head = {"engine": engine_cls.name, "network": net, "mbs": mbs, "n": n,
            "threads": args.threads, "device": args.device}
    if not_here:
        emit(dict(head, event="skip", reason=not_here))
        return 0
    x, y = workloads.make_data(n)
    params0 = workloads.init_params(net, seed=args.seed)
    eta, _ = workloads.hyper(net)
    l2 = workloads.l2_per_step(net, n, mbs)

    t0 = time.perf_counter()
    try:
        engine = engine_cls(args, net, x, y, params0, eta, l2)
    except SkipEngine as e:
        emit(dict(head, event="skip", reason=str(e)))
        return 0
    # the import of the engine's library is reported apart from its setup
    setup_s = time.perf_counter() - t0 - IMPORT_S.get("s", 0.0)
    head["engine"] = engine.name

    steps = min(args.check_steps, n // mbs)
    t0 = time.perf_counter()
    engine.check(steps)
    check_s = time.perf_counter() - t0
    if args.check_out:
        arrays = {}
        for i, (w, b) in enumerate(engine.params()):
            arrays["w%d" % i] = np.asarray(w, dtype=np.float32)
            arrays["b%d" % i] = np.asarray(b, dtype=np.float32)
        np.savez(args.check_out, **arrays)

    t0 = time.perf_counter()
    engine.epoch()
    warmup_s = time.perf_counter() - t0
    ready = dict(head, event="ready", setup_s=setup_s, check_s=check_s,
                 check_samples=steps * mbs, warmup_s=warmup_s, warmup_samples=n,
                 import_s=IMPORT_S.get("s"), info=engine.info(),
                 rss_mib=peak_rss_mib())
    if not args.serve:
        reps = [_time_rep(engine, n, args.min_seconds) for _ in range(args.repeats)]
        rates = sorted(r["samples_per_s"] for r in reps)
        emit(dict(ready, event="result", reps=reps,
                  median_samples_per_s=rates[len(rates) // 2],
                  rss_mib=peak_rss_mib()))
        return 0
    emit(ready)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "run":
            emit(dict(head, **_time_rep(engine, n, args.min_seconds)))
        elif cmd == "quit" or not cmd:
            break
    return 0


class SkipEngine(Exception):
    """Raised by an engine that cannot run here (a missing package)."""


# engine scripts record how long their heavy imports took here
IMPORT_S = {}


def keras_targets(y, loss):
    """Integer labels as a Keras loss takes them (one-hot float32 rows for
    categorical_crossentropy)."""
    import numpy as np
    if loss == "categorical_crossentropy":
        return np.eye(10, dtype=np.float32)[y]
    return y


class KerasFit(object):
    """The bench protocol for a Keras-style model (Keras 3 itself, or
    fastnet.keras): one ``model.fit`` epoch per repetition, in order, no
    shuffling; ``self.model``, ``self.x``, ``self.y``, ``self.mbs`` set by the
    engine.  fit returns when its last step's loss is read back: the work is
    done."""

    def _fit(self, n):
        self.model.fit(self.x[:n], self.y[:n], batch_size=self.mbs, epochs=1,
                       shuffle=False, verbose=0)

    def check(self, steps):
        self._fit(steps * self.mbs)

    def epoch(self):
        self._fit(self.x.shape[0])

    def params(self):
        import numpy as np
        w = self.model.get_weights()
        return [(np.asarray(w[i]), np.asarray(w[i + 1])) for i in range(0, len(w), 2)]


def keras_skip(workloads, net, device, who):
    """Raise SkipEngine unless ``net`` can be a Keras-style model (``who``
    names the engine): on the CPU, dense layers without dropout, and no
    network3 L2 term (no Keras optimizer has it)."""
    if device != "cpu":
        raise SkipEngine("%s is benched on the CPU only" % who)
    if not workloads.dense_only(net):
        raise SkipEngine("%s takes the dense networks without dropout only; %s is not one"
                         % (who, net))
    opt = workloads.optimizer(net)
    if opt["name"] == "network3_sgd" and opt["lmbda"]:
        raise SkipEngine("network3's L2 term (lmbda %g) is not a Keras optimizer's"
                         % opt["lmbda"])
