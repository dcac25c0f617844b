"""Per-kernel micro-bench: each kernel of an engine against the reference.

    python bench/kernels.py [--engine cpu] [--mbs 10,128] [--threads 2] [--out k.json]

For every kernel of the book's networks (conv forward/backward, pool
forward/backward, dense forward/backward, dropout, softmax + NLL, SGD update)
at the shapes the networks use, the engine's result is first checked against
``fastnet.engines.get_engine("reference")`` (same function, same arguments,
see fastnet/engines/reference.py); only a kernel that agrees is timed, on
both engines.  Times are medians of 5 batches of calls, each batch at least
--min-time seconds long.  When fastnet or the engine is not there yet, it
says so and exits 0.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse(argv):
    p = argparse.ArgumentParser(prog="bench/kernels.py", description=__doc__.split("\n")[0])
    p.add_argument("--engine", default="cpu", help="engine to check and time (default cpu)")
    p.add_argument("--mbs", default="10,128", help="mini-batch sizes (default 10,128)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-time", type=float, default=0.05,
                   help="seconds per batch of timed calls (default 0.05)")
    p.add_argument("--only", default=None, help="comma list of kernel names to keep")
    p.add_argument("--check-only", action="store_true", help="check, do not time")
    p.add_argument("--out", default=None, help="write the results here as JSON")
    return p.parse_args(argv)


def set_threads(threads):
    # before NumPy and the engines are imported, so their pools see it
    sys.path.insert(0, HERE)
    import harness
    os.environ.update({k: v for k, v in harness.thread_env(threads).items()
                       if k in harness.THREAD_VARS or k == "FASTNET_BENCH_THREADS"})


def import_engines(name):
    """(reference, engine) modules, or raise ImportError with the reason."""
    try:
        from fastnet import engines
    except ImportError:
        root = os.path.dirname(HERE)
        if root not in sys.path:
            sys.path.insert(1, root)
        from fastnet import engines
    return engines.get_engine("reference"), engines.get_engine(name)


# ---------------------------------------------------------------------------
# the kernels at the networks' shapes
# ---------------------------------------------------------------------------
class Case(object):
    """One kernel call: host inputs, which arguments are outputs, FLOPs.

    ``args``: a list of ("in", array) / ("out", shape, dtype) / ("inout",
    array) / ("const", value); ``check``: indices of the arguments (and
    "ret" for the return value) compared with the reference.
    """

    def __init__(self, kernel, label, args, flops, check, timed=True):
        self.kernel, self.label, self.args = kernel, label, args
        self.flops, self.check, self.timed = flops, check, timed

    def materialise(self, e):
        """The argument list on engine e (fresh copies of the inputs)."""
        out = []
        for a in self.args:
            if a[0] in ("in", "inout"):
                out.append(e.to_device(a[1]))
            elif a[0] == "out":
                out.append(e.empty(a[1], a[2]))
            elif a[0] == "none":
                out.append(None)
            else:
                out.append(a[1])
        return out

    def call(self, e, argv):
        return getattr(e, self.kernel)(*argv)


def build_cases(np, ref, mbs_list):
    from fastnet.activations import LINEAR, RELU, SIGMOID
    rng = np.random.RandomState(0)
    f32 = np.float32

    def rnd(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(f32)

    cases = []
    for N in mbs_list:
        # conv layers of the book's conv nets
        for (C, H, F, K, first) in ((1, 28, 20, 5, True), (20, 12, 40, 5, False)):
            x = rng.uniform(0, 1, (N, C, H, H)).astype(f32) if first else rnd(N, C, H, H)
            w = rnd(F, C, K, K, scale=0.2)
            O = H - K + 1
            macs = N * F * C * K * K * O * O
            tag = "N%d %dx%dx%d * %dx%dx%dx%d" % (N, C, H, H, F, C, K, K)
            cases.append(Case("conv_forward", tag,
                              [("in", x), ("in", w), ("out", (N, F, O, O), f32)],
                              2 * macs, [2]))
            dout = rnd(N, F, O, O)
            cases.append(Case("conv_backward", tag + (" (no dx)" if first else ""),
                              [("in", x), ("in", w), ("in", dout), ("out", w.shape, f32),
                               ("none",) if first else ("out", x.shape, f32)],
                              2 * macs * (1 if first else 2), [3] if first else [3, 4]))
            # pool + bias + ReLU on that conv's output
            conv_out = rnd(N, F, O, O)
            b = rnd(F)
            P = O // 2
            pooled = np.empty((N, F, P, P), f32)
            ref.pool_forward(conv_out, b, RELU, (2, 2), pooled)
            ptag = "N%d %dx%dx%d pool 2x2" % (N, F, O, O)
            cases.append(Case("pool_forward", ptag,
                              [("in", conv_out), ("in", b), ("const", RELU), ("const", (2, 2)),
                               ("out", (N, F, P, P), f32)], 0, [4]))
            cases.append(Case("pool_backward", ptag,
                              [("in", conv_out), ("in", pooled), ("inout", rnd(N, F, P, P)),
                               ("const", RELU), ("const", (2, 2)),
                               ("out", conv_out.shape, f32), ("out", (F,), f32)],
                              0, [2, 5, 6]))
        # dense layers: conv2 FC, the FC net's hidden layer, dropout net's 1000x1000,
        # a softmax layer's product
        for (I, O, act, aname, first) in ((640, 100, RELU, "ReLU", False),
                                          (784, 100, SIGMOID, "sigmoid", True),
                                          (1000, 1000, RELU, "ReLU", False),
                                          (100, 10, LINEAR, "linear", False)):
            x = rnd(N, I)
            w = rnd(I, O, scale=1.0 / np.sqrt(I))
            b = rnd(O)
            tag = "N%d %dx%d %s" % (N, I, O, aname)
            cases.append(Case("dense_forward", tag,
                              [("in", x), ("in", w), ("in", b), ("const", act),
                               ("const", 1.0), ("out", (N, O), f32)], 2 * N * I * O, [5]))
            out = np.empty((N, O), f32)
            ref.dense_forward(x, w, b, act, 1.0, out)
            # sigmoid's derivative shrinks dout (IN/OUT) at every repeated call,
            # into denormals: a sigmoid case is checked, and timed with ReLU
            variants = [(act, act != SIGMOID)] + ([(RELU, True)] if act == SIGMOID else [])
            for a_, timed in variants:
                cases.append(Case(
                    "dense_backward", "N%d %dx%d %s%s" % (
                        N, I, O, {RELU: "ReLU", SIGMOID: "sigmoid", LINEAR: "linear"}[a_],
                        " (no dx)" if first else ""),
                    [("in", x), ("in", w), ("in", out), ("inout", rnd(N, O)), ("const", a_),
                     ("out", (I, O), f32), ("out", (O,), f32),
                     ("none",) if first else ("out", (N, I), f32)],
                    2 * N * I * O * (1 if first else 2),
                    [3, 5, 6] if first else [3, 5, 6, 7], timed=timed))
        # dropout on a 1000-wide input
        x = rnd(N, 1000)
        mask = (rng.uniform(size=(N, 1000)) < 0.5).astype(np.uint8)
        cases.append(Case("dropout_forward", "N%d x1000 p=0.5" % N,
                          [("in", x), ("const", 0.5), ("const", 12345), ("const", 7),
                           ("out", (N, 1000), np.uint8), ("out", (N, 1000), f32)], 0, [4, 5]))
        cases.append(Case("dropout_backward", "N%d x1000" % N,
                          [("in", rnd(N, 1000)), ("in", mask), ("out", (N, 1000), f32)],
                          0, [2]))
        # softmax + NLL
        logits = rnd(N, 10)
        y = rng.randint(0, 10, N).astype(np.int32)
        cases.append(Case("softmax_nll", "N%d x10" % N,
                          [("in", logits), ("in", y), ("out", (N, 10), f32),
                           ("out", (N, 10), f32)], 0, [2, 3, "ret"]))
    # SGD updates, once (no mini-batch dimension)
    for shape in ((40, 20, 5, 5), (640, 100), (1000, 1000)):
        cases.append(Case("sgd_update", "x".join(map(str, shape)) + " L2",
                          [("inout", rnd(*shape)), ("in", rnd(*shape)), ("const", 0.03),
                           ("const", 0.1 / 5000)], 0, [0]))
    return cases


def check_case(np, case, ref, eng):
    """Max relative difference of the checked outputs, or raise."""
    ra = case.materialise(ref)
    ea = case.materialise(eng)
    rret = case.call(ref, ra)
    eret = case.call(eng, ea)
    eng.synchronize()
    worst = 0.0
    for k in case.check:
        if k == "ret":
            a, b = np.float64(eret), np.float64(rret)
        else:
            a = eng.to_host(ea[k]).astype(np.float64)
            b = np.asarray(ra[k], dtype=np.float64)
            if a.shape != b.shape:
                raise AssertionError("argument %d: shape %s, reference %s" % (k, a.shape, b.shape))
        scale = max(float(np.max(np.abs(b))), 1e-6)
        worst = max(worst, float(np.max(np.abs(a - b))) / scale)
    return worst


def time_case(np, case, e, min_time):
    """Median microseconds per call over 5 batches of calls."""
    argv = case.materialise(e)
    case.call(e, argv)
    e.synchronize()
    # calls per batch so a batch lasts min_time
    n, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            case.call(e, argv)
        e.synchronize()
        t = time.perf_counter() - t0
        if t >= min_time or n >= 1 << 20:
            break
        n = max(n * 2, int(n * min_time / max(t, 1e-9)) + 1)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            case.call(e, argv)
        e.synchronize()
        times.append((time.perf_counter() - t0) / n)
    times.sort()
    return times[2] * 1e6


def main(argv=None):
    args = parse(argv)
    set_threads(args.threads)
    import numpy as np
    try:
        ref, eng = import_engines(args.engine)
    except Exception as e:  # noqa: BLE001 -- anything: not ready yet
        print("kernels: skipped: fastnet's %r or reference engine does not import "
              "(%s: %s)" % (args.engine, type(e).__name__, e))
        return 0
    mbs_list = [int(m) for m in args.mbs.split(",")]
    cases = build_cases(np, ref, mbs_list)
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if c.kernel in keep]
    tol = 1e-4
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > 0.5:
        print("note: load average %.2f: other processes are busy; timings will be noisy"
              % os.getloadavg()[0])
    print("kernels: engine %r against 'reference', %d threads, tolerance %.0e "
          "(max |diff| / max |reference|)" % (args.engine, args.threads, tol))
    rows, failures = [], 0
    for c in cases:
        row = {"kernel": c.kernel, "shape": c.label, "flops": c.flops}
        if not hasattr(eng, c.kernel):
            row["status"] = "missing"
        else:
            try:
                row["max_rel_diff"] = check_case(np, c, ref, eng)
                row["status"] = "ok" if row["max_rel_diff"] <= tol else "MISMATCH"
            except Exception as e:  # noqa: BLE001
                row["status"] = "ERROR"
                row["error"] = "%s: %s" % (type(e).__name__, e)
        if row["status"] in ("MISMATCH", "ERROR"):
            failures += 1
        print("  check %-16s %-34s %s%s" % (
            c.kernel, c.label, row["status"],
            " (%.1e)" % row["max_rel_diff"] if "max_rel_diff" in row else
            (" " + row["error"] if "error" in row else "")))
        rows.append((c, row))

    if not args.check_only:
        print("\n%-16s %-34s %10s %10s %8s %9s" % ("kernel", "shape", "ref us",
                                                  args.engine + " us", "speedup", "GFLOP/s"))
        for c, row in rows:
            if row["status"] != "ok" or not c.timed:
                continue
            row["ref_us"] = time_case(np, c, ref, args.min_time)
            row["engine_us"] = time_case(np, c, eng, args.min_time)
            row["speedup"] = row["ref_us"] / row["engine_us"]
            g = c.flops / row["engine_us"] / 1e3 if c.flops else None
            row["engine_gflops"] = g
            print("%-16s %-34s %10.1f %10.1f %7.1fx %9s" % (
                c.kernel, c.label, row["ref_us"], row["engine_us"], row["speedup"],
                "%.1f" % g if g else "-"))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"engine": args.engine, "threads": args.threads, "tolerance": tol,
                       "kernels": [r for _, r in rows]}, f, indent=1)
        print("JSON: %s" % args.out)
    if failures:
        print("kernels: %d kernel(s) disagree with the reference or fail" % failures)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
