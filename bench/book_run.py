"""The book's chapter-6 conv2 ReLU run, timed end to end on fastnet.

    python bench/book_run.py [--device cpu|cuda] [--epochs 60] [--threads 2]

network3's chapter-6 network and hyper-parameters, through fastnet's public
API exactly as the book writes it:

    ConvPoolLayer((mbs, 1, 28, 28), (20, 1, 5, 5), (2, 2), ReLU)
    ConvPoolLayer((mbs, 20, 12, 12), (40, 20, 5, 5), (2, 2), ReLU)
    FullyConnectedLayer(40*4*4, 100, ReLU)
    SoftmaxLayer(100, 10)
    net.SGD(training, 60, 10, 0.03, validation, test, lmbda=0.1)

on 50,000 training, 10,000 validation and 10,000 test samples of random
MNIST-shaped data (bench/workloads.make_data: the content does not change the
speed, and the accuracies stay at chance level).  What is timed is the one
``net.SGD(...)`` call: training, and the validation (and test, when the
validation accuracy is the best so far) evaluation after every epoch, as the
book runs it.  Building the network (on cuda: finding the GPU, compiling the
kernels) and making the data are reported apart.  ``--epochs`` shortens the
run; with the book's data sizes the 60-epoch time is then extrapolated (and
said to be).  ``--train/--valid/--test`` shrink the data (no extrapolation).
"""

import argparse
import contextlib
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import harness  # noqa: E402
import workloads  # noqa: E402

BOOK_EPOCHS = 60
MBS, ETA, LMBDA = 10, 0.03, 0.1


class _Log(object):
    """SGD's stdout, without its 'Training mini-batch number' lines, each
    line stamped with the seconds since the start of the call."""

    def __init__(self, out, t0, quiet):
        self.out, self.t0, self.quiet, self.buf = out, t0, quiet, ""

    def write(self, text):
        self.buf += text
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            if self.quiet or line.startswith("Training mini-batch number"):
                continue
            self.out.write("  [%8.1f s] %s\n" % (time.perf_counter() - self.t0, line))
            self.out.flush()
        return len(text)

    def flush(self):
        self.out.flush()


def build_parser():
    p = argparse.ArgumentParser(
        prog="bench/book_run.py",
        description="Wall time of the book's 60-epoch conv2 ReLU run on fastnet "
                    "(random MNIST-shaped data).")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--epochs", type=int, default=BOOK_EPOCHS,
                   help="epochs (default the book's %d)" % BOOK_EPOCHS)
    p.add_argument("--train", type=int, default=50000, help="training samples (50,000)")
    p.add_argument("--valid", type=int, default=10000, help="validation samples (10,000)")
    p.add_argument("--test", type=int, default=10000, help="test samples (10,000)")
    p.add_argument("--threads", type=int, default=2,
                   help="CPU threads (OpenMP / BLAS; default 2), pinned to the first "
                        "that many CPUs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="hide SGD's per-epoch lines")
    p.add_argument("--out", default=None, help="also write the result here (JSON)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.epochs < 1 or min(args.train, args.valid, args.test) < MBS:
        print("book_run: --epochs must be >= 1 and every data set at least one "
              "mini-batch (%d)" % MBS)
        return 2
    # thread knobs before fastnet (and its OpenMP / BLAS) is imported
    os.environ.update(harness.thread_env(args.threads))
    import run  # the bench driver: cpu_model, pin_cpus
    pin = run.pin_cpus(args.threads)
    if pin:
        os.sched_setaffinity(0, pin)

    from engine_fastnet import import_fastnet
    fastnet = import_fastnet()
    import numpy as np
    from fastnet import ConvPoolLayer, FullyConnectedLayer, Network, ReLU, SoftmaxLayer

    t0 = time.perf_counter()
    train = workloads.make_data(args.train, seed=1234)
    valid = workloads.make_data(args.valid, seed=1235)
    test = workloads.make_data(args.test, seed=1236)
    data_s = time.perf_counter() - t0

    np.random.seed(args.seed)
    t0 = time.perf_counter()
    try:
        net = Network([
            ConvPoolLayer(image_shape=(MBS, 1, 28, 28), filter_shape=(20, 1, 5, 5),
                          poolsize=(2, 2), activation_fn=ReLU),
            ConvPoolLayer(image_shape=(MBS, 20, 12, 12), filter_shape=(40, 20, 5, 5),
                          poolsize=(2, 2), activation_fn=ReLU),
            FullyConnectedLayer(n_in=40 * 4 * 4, n_out=100, activation_fn=ReLU),
            SoftmaxLayer(n_in=100, n_out=10)], MBS, device=args.device)
    except Exception as e:  # noqa: BLE001 -- e.g. no GPU, engine not built
        print("book_run: fastnet cannot build the network on %s here (%s: %s)"
              % (args.device, type(e).__name__, e))
        return 1
    build_s = time.perf_counter() - t0
    if args.device == "cuda":
        dev = net.engine.info()
        where = "cuda, %r%s" % (dev, " (SIMULATED: the numbers say nothing about a GPU)"
                                if dev.simulated else "")
    else:
        where = "cpu, %s, %d threads" % (run.cpu_model(), args.threads)

    print("book run: conv 20x5x5 -> pool -> conv 40x5x5 -> pool (ReLU) -> FC 100 ReLU -> "
          "softmax 10; mini-batch %d, eta %g, lmbda %g, %d epoch%s; %d / %d / %d random "
          "samples (train / validation / test)"
          % (MBS, ETA, LMBDA, args.epochs, "s" if args.epochs != 1 else "", args.train,
             args.valid, args.test))
    print("fastnet %s, engine %s; device: %s"
          % (getattr(fastnet, "__version__", "?"), net.engine.name, where))
    print("data made in %.1f s; network built in %.1f s (not in the time below)"
          % (data_s, build_s))
    sys.stdout.flush()

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(_Log(sys.stdout, t0, args.quiet)):
        history = net.SGD(train, args.epochs, MBS, ETA, valid, test, lmbda=LMBDA)
    wall = time.perf_counter() - t0
    training = float(getattr(history, "training_seconds", 0.0) or 0.0)

    per_epoch = wall / args.epochs
    print("SGD wall time: %.1f s for %d epoch%s (%.2f s per epoch; training %.1f s, "
          "the rest is the per-epoch validation / test evaluation)"
          % (wall, args.epochs, "s" if args.epochs != 1 else "", per_epoch, training))
    result = {"device": args.device, "where": where, "engine": net.engine.name,
              "epochs": args.epochs, "train": args.train, "valid": args.valid,
              "test": args.test, "mbs": MBS, "eta": ETA, "lmbda": LMBDA,
              "threads": args.threads, "wall_s": wall, "training_s": training,
              "s_per_epoch": per_epoch, "build_s": build_s,
              "fastnet": getattr(fastnet, "__version__", "?")}
    if args.epochs != BOOK_EPOCHS and (args.train, args.valid, args.test) == (50000, 10000,
                                                                             10000):
        est = per_epoch * BOOK_EPOCHS
        result["book_run_estimate_s"] = est
        print("the book's %d epochs at this rate: about %.0f s (%.1f min), extrapolated, "
              "not measured" % (BOOK_EPOCHS, est, est / 60.0))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print("JSON: %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
