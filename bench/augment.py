"""What on-the-fly augmentation costs in training: plain against each transform.

    python bench/augment.py [--rounds 7] [--networks conv2_relu fc] [--mbs 10]
    flock /tmp/bench.lock python bench/augment.py      # on a shared machine

For each network (bench/workloads.py's specs and initial weights, the
compiled CPU engine), one Network per variant -- plain, then each transform
of ``VARIANTS`` -- trains one epoch of random MNIST-shaped rows per round
through ``net.SGD(..., augment=...)``; the variants take turns within a
round (interleaved, so a change in the machine's load hits them alike; the
first to go turns round by round), a first round warms up and is not counted.  The rate is SGD's own training
time (``TrainingHistory.training_seconds``: the mini-batches, not the
validation); the slowdown is the median over rounds of plain's rate over
the variant's, measured side by side.  Prints a Markdown table and the
machine's load.
"""

import argparse
import contextlib
import io
import os
import statistics
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import workloads  # noqa: E402
from engine_fastnet import FastnetEngine, import_fastnet  # noqa: E402


def variants():
    from fastnet import augment as A
    return [("plain", None),
            ("shift 1 px", A.Shift(1)),
            ("affine 15 deg, shear 0.3", A.Affine(max_rotation=15, max_shear=0.3)),
            ("elastic alpha 34, sigma 4", A.Elastic(alpha=34, sigma=4)),
            ("shift + affine + elastic", A.Shift(1) + A.Affine(15, 0.3) + A.Elastic(34, 4))]


def measure(network, mbs, rounds, samples):
    n = workloads.round_samples(samples or workloads.default_samples(network), mbs)
    x, y = workloads.make_data(n)
    params0 = workloads.init_params(network)
    eta, lmbda = workloads.hyper(network)
    args = types.SimpleNamespace(variant="cpu", device="cpu", mbs=mbs)
    runs = []
    for name, transform in variants():
        engine = FastnetEngine(args, network, x, y, params0, eta, lmbda / (n // mbs))
        runs.append((name, transform, engine))
    rates = {name: [] for name, _, _ in runs}
    for r in range(rounds + 1):
        # interleaved, and who goes first turns round by round
        k = r % len(runs)
        for name, transform, engine in runs[k:] + runs[:k]:
            with contextlib.redirect_stdout(io.StringIO()):
                h = engine.net.SGD((x, y), 1, mbs, eta, engine.vxy, engine.vxy,
                                   lmbda=lmbda, augment=transform)
            if r:
                rates[name].append(h.samples_trained / h.training_seconds)
    return n, rates


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--networks", nargs="+", default=["conv2_relu", "fc"],
                   choices=sorted(workloads.NETWORKS))
    p.add_argument("--mbs", type=int, default=10)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--samples", type=int, default=None,
                   help="training samples per round (default: the bench's)")
    args = p.parse_args(argv)
    fastnet = import_fastnet()
    from fastnet.engines import cpu
    print("fastnet %s, %d threads, mini-batch %d, %d rounds (+1 warm-up), load %s"
          % (fastnet.__version__, cpu.get_num_threads(), args.mbs, args.rounds,
             " ".join("%.2f" % v for v in os.getloadavg())))
    print()
    print("| network | augment | samples/s (median) | slowdown vs plain (median of rounds) |")
    print("|---|---|---:|---:|")
    for network in args.networks:
        n, rates = measure(network, args.mbs, args.rounds, args.samples)
        plain = rates["plain"]
        for name, rs in rates.items():
            ratios = [a / b for a, b in zip(plain, rs)]
            print("| %s | %s | %s | %.2fx |" % (
                network, name, "{:,.0f}".format(statistics.median(rs)),
                statistics.median(ratios)))
        sys.stdout.flush()
    print()
    print("load after: %s" % " ".join("%.2f" % v for v in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
