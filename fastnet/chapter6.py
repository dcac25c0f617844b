"""Chapter 6's results ladder as one command: ``python -m fastnet chapter6``.

The chapter climbs from a shallow network to an ensemble of five: each rung
is trained here with the book's hyper-parameters and its test accuracy is
put beside the book's (which were measured on the full 50,000 / 10,000
MNIST after 60 epochs, or 40 with dropout).  Without ``--data`` the ladder
runs on the bundled 8,000 / 1,000 / 1,000 real digits and says so in the
table's title; ``--epochs`` shortens every rung.  Each rung is checkpointed
in ``--out``: an interrupted ladder resumes where it stopped, and a finished
rung is not trained again.  The last table printed on stdout is the ladder
(Markdown); ``ladder.json`` and, with matplotlib (``fastnet[plot]``), the
learning curves, the first conv layer's filters and the ensemble's errors
are written beside it.
"""

import argparse
import contextlib
import io
import json
import os
import sys
import time

import numpy as np

from .activations import ReLU, sigmoid
from .layers import ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer

# (key, description, book's test accuracy %, eta, lmbda, expanded data, dropout)
RUNGS = [
    ("shallow", "FC 100 sigmoid + softmax", 97.80, 0.1, 0.0, False, False),
    ("conv1", "+ one conv-pool layer (20 5x5, sigmoid)", 98.78, 0.1, 0.0, False, False),
    ("conv2", "+ a second conv-pool layer (40 5x5)", 99.06, 0.1, 0.0, False, False),
    ("relu_l2", "ReLU, L2 (lmbda 0.1), eta 0.03", 99.23, 0.03, 0.1, False, False),
    ("expanded", "+ expanded data (one-pixel shifts)", 99.37, 0.03, 0.1, True, False),
    ("dropout", "+ two FC 1000 layers, dropout 0.5", 99.60, 0.03, 0.0, True, True),
]
ENSEMBLE_BOOK = 99.67


def _layers(key, mbs):
    def conv(act, c=1, side=28, f=20):
        return ConvPoolLayer(image_shape=(mbs, c, side, side), filter_shape=(f, c, 5, 5),
                             poolsize=(2, 2), activation_fn=act)
    if key == "shallow":
        return [FullyConnectedLayer(784, 100), SoftmaxLayer(100, 10)]
    if key == "conv1":
        return [conv(sigmoid), FullyConnectedLayer(20 * 12 * 12, 100), SoftmaxLayer(100, 10)]
    act = sigmoid if key == "conv2" else ReLU
    convs = [conv(act), conv(act, c=20, side=12, f=40)]
    if key == "dropout":
        return convs + [FullyConnectedLayer(40 * 4 * 4, 1000, activation_fn=ReLU, p_dropout=0.5),
                        FullyConnectedLayer(1000, 1000, activation_fn=ReLU, p_dropout=0.5),
                        SoftmaxLayer(1000, 10, p_dropout=0.5)]
    return convs + [FullyConnectedLayer(40 * 4 * 4, 100, activation_fn=act),
                    SoftmaxLayer(100, 10)]


def _train_rung(rung, data, expanded, epochs, mbs, out, seed, engine, log):
    from .network import Network
    key, _, _, eta, lmbda, use_expanded, _ = rung
    train, valid, test = data
    if use_expanded:
        train = expanded
    np.random.seed(seed)
    net = Network(_layers(key, mbs), mbs, engine=engine)
    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        history = net.SGD(train, epochs, mbs, eta, valid, test, lmbda=lmbda,
                          checkpoint=os.path.join(out, "%s-seed%d.npz" % (key, seed)))
    log.write(buf.getvalue())
    return net, history, time.perf_counter() - t0


def run_ladder(data=None, epochs=60, mbs=10, out=".", members=5, engine=None,
               rungs=None, dropout_epochs=None, train_limit=None, plots=True, stream=None):
    """Train the ladder; returns the rows (dicts) and writes out/ladder.json
    and out/ladder.md.  ``data``: a path load_data reads, or None for the
    bundled digits."""
    from . import datasets
    from .data import load_data
    from .ensemble import Ensemble
    from .expand import expand
    stream = stream or sys.stdout
    os.makedirs(out, exist_ok=True)
    if data is None:
        parts = datasets.mnist_sample()
        source = "the bundled 8,000 / 1,000 / 1,000 real MNIST digits (not the book's 50,000 / 10,000)"
    else:
        parts = load_data(data)
        source = os.path.basename(os.fspath(data))
    parts = [(np.asarray(x), np.asarray(y)) for x, y in parts]
    if train_limit:
        parts[0] = (parts[0][0][:train_limit], parts[0][1][:train_limit])
    expanded = expand(parts[0][0], parts[0][1], seed=0)
    wanted = [r for r in RUNGS if rungs is None or r[0] in rungs]
    rows, histories, log = [], [], open(os.path.join(out, "sgd.log"), "a")
    dropout_net = None
    try:
        for rung in wanted:
            e = dropout_epochs if rung[6] and dropout_epochs else epochs
            net, h, seconds = _train_rung(rung, parts, expanded, e, mbs, out, 0, engine, log)
            n_train = (expanded if rung[5] else parts[0])[0].shape[0]
            rows.append({"rung": rung[0], "network": rung[1], "book": rung[2],
                         "fastnet": 100 * h.test_accuracy, "epochs": e,
                         "seconds": seconds, "samples_per_second": h.samples_per_second,
                         "train_rows": n_train})
            histories.append((rung[0], h))
            stream.write("rung %-9s %6.2f %% (book %.2f %%), %d epochs, %.1f s\n"
                         % (rung[0], rows[-1]["fastnet"], rung[2], e, seconds))
            stream.flush()
            if rung[6]:
                dropout_net = (rung, net, e)
        if dropout_net is not None and members > 1:
            rung, first, e = dropout_net
            nets, t0 = [first], time.perf_counter()
            for seed in range(1, members):
                nets.append(_train_rung(rung, parts, expanded, e, mbs, out, seed, engine, log)[0])
            ens = Ensemble(nets)
            acc = ens.accuracy(parts[2])
            rows.append({"rung": "ensemble", "network": "%d dropout nets, plurality vote" % members,
                         "book": ENSEMBLE_BOOK, "fastnet": 100 * acc, "epochs": e,
                         "seconds": rows[-1]["seconds"] + time.perf_counter() - t0,
                         "samples_per_second": None, "train_rows": expanded[0].shape[0]})
            stream.write("rung ensemble %6.2f %% (book %.2f %%)\n" % (100 * acc, ENSEMBLE_BOOK))
            if plots:
                _pictures(out, histories, nets, ens, parts[2])
        elif plots and histories:
            _pictures(out, histories, None, None, parts[2])
    finally:
        log.close()
    table = markdown(rows, source)
    with open(os.path.join(out, "ladder.json"), "w") as f:
        json.dump({"source": source, "rows": rows}, f, indent=1)
    with open(os.path.join(out, "ladder.md"), "w") as f:
        f.write(table + "\n")
    stream.write("\n" + table + "\n")
    return rows


def markdown(rows, source):
    lines = ["Chapter 6's ladder on %s" % source, "",
             "| rung | network | book | fastnet | epochs | train rows | seconds | samples/s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        sps = "" if r["samples_per_second"] is None else "{:,.0f}".format(r["samples_per_second"])
        lines.append("| %s | %s | %.2f %% | %.2f %% | %d | {:,} | %.1f | %s |".format(
            r["train_rows"]) % (r["rung"], r["network"], r["book"], r["fastnet"], r["epochs"],
                                r["seconds"], sps))
    return "\n".join(lines)


def _pictures(out, histories, nets, ens, test):
    try:
        from . import plot
    except ImportError:
        return
    try:
        plot.learning_curves([h for _, h in histories], os.path.join(out, "learning_curves.png"),
                             labels=[k for k, _ in histories], title="chapter 6's ladder")
        if nets:
            plot.conv_filters(nets[0], os.path.join(out, "conv_filters.png"),
                              title="first conv layer's filters (dropout rung)")
            x, y = test
            try:
                plot.ensemble_errors(x, y, ens.predict(x), os.path.join(out, "ensemble_errors.png"))
            except ValueError:
                pass          # no error to show
    except ImportError:
        return


def main(argv, prog="fastnet chapter6"):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="the book's mnist.pkl.gz (default: the bundled digits)")
    parser.add_argument("--epochs", type=int, default=60, help="epochs per rung (book: 60)")
    parser.add_argument("--dropout-epochs", type=int, default=None,
                        help="epochs of the dropout rung and the ensemble (book: 40; "
                        "default: --epochs)")
    parser.add_argument("--train", type=int, default=None,
                        help="use only the first N training rows (a quick ladder)")
    parser.add_argument("--members", type=int, default=5, help="ensemble size (book: 5)")
    parser.add_argument("--mini-batch-size", type=int, default=10)
    parser.add_argument("--engine", default=None)
    parser.add_argument("--out", default="chapter6", help="results folder (default ./chapter6)")
    parser.add_argument("--rungs", default=None,
                        help="comma list of rungs to run (%s)" % ", ".join(r[0] for r in RUNGS))
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    for name in ("epochs", "members", "mini_batch_size"):
        if getattr(args, name) < 1:
            raise ValueError("--%s must be >= 1" % name.replace("_", "-"))
    rungs = None
    if args.rungs:
        rungs = [r.strip() for r in args.rungs.split(",")]
        unknown = set(rungs) - {r[0] for r in RUNGS}
        if unknown:
            raise ValueError("unknown rungs %s; choose from %s"
                             % (sorted(unknown), ", ".join(r[0] for r in RUNGS)))
    if args.data is not None and not os.path.exists(args.data):
        raise FileNotFoundError("%s: no such file" % args.data)
    run_ladder(data=args.data, epochs=args.epochs, mbs=args.mini_batch_size, out=args.out,
               members=args.members, engine=args.engine, rungs=rungs,
               dropout_epochs=args.dropout_epochs, train_limit=args.train,
               plots=not args.no_plots)
    return 0
