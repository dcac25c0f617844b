"""Neural networks, manifolds and topology: what layers of 2 tanh units do
to the plane, and where a network of them runs out of room.

    python examples/seed000_manifolds.py [--quick] [--out DIR]

1. Two interleaved curves: one hidden layer of 2 tanh units bends the plane
   until a straight line separates them (layer images, decision boundary,
   the bend as frames identity -> affine -> tanh and a GIF).
2. Two spirals: a stack of 2-unit tanh layers untangles the easy spiral; on
   the tight spiral the same network fails and a wider one succeeds.
3. Concentric circles: no stack of 2-unit tanh layers can pull the inner
   circle out of the outer one (a tanh layer of full rank keeps the plane's
   topology); one layer of 3 units can, by lifting it into space.
Each network of parts 2 and 3 (and the curves' hidden layer) is trained from
a few seeds, the one with the best validation accuracy is kept, and its
accuracy on held-out points is printed.
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import parse_args, quiet_sgd, wrote  # noqa: E402

import fastnet  # noqa: E402
from fastnet import FullyConnectedLayer, Network, SoftmaxLayer  # noqa: E402
from fastnet import datasets, plot  # noqa: E402

EASY_TURNS, TIGHT_TURNS = 0.75, 1.5
MINI_BATCH = 10


def tanh_net(widths, seed):
    """Input 2 -> tanh layers of the given widths -> softmax over 2 classes."""
    np.random.seed(seed)     # network3 draws the initial weights from NumPy's global RNG
    layers, n_in = [], 2
    for width in widths:
        layers.append(FullyConnectedLayer(n_in=n_in, n_out=width, activation_fn=fastnet.tanh))
        n_in = width
    layers.append(SoftmaxLayer(n_in=n_in, n_out=2))
    return Network(layers, MINI_BATCH)


def accuracy(net, data):
    x, y = data
    return float(np.mean(net.predict(x) == y))


def best_of(widths, seeds, train, valid, epochs, eta):
    """Train one network per seed; keep the best on the validation points."""
    best = None
    for seed in seeds:
        net = tanh_net(widths, seed)
        quiet_sgd(net, train, epochs, eta, valid, valid)
        score = accuracy(net, valid)
        if best is None or score > best[1]:
            best = (net, score, seed)
    return best


def spiral_sets(turns, n):
    # three draws of the same spiral: training, validation, held-out test
    return [datasets.spirals(n, turns=turns, noise=0.0, seed=s) for s in (1, 2, 3)]


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    out = args.out
    t0 = time.perf_counter()

    # 1. two curves, one hidden layer of 2 tanh units
    curves_train, curves_valid, curves_test = (
        datasets.two_curves(200, noise=0.05, seed=s) for s in (1, 2, 3))
    linear = Network([SoftmaxLayer(n_in=2, n_out=2)], MINI_BATCH)
    quiet_sgd(linear, curves_train, 100, 1.0, curves_valid, curves_valid)
    print("two curves, no hidden layer (a straight line): held-out accuracy %.1f%%"
          % (100 * accuracy(linear, curves_test)))
    net, valid_score, seed = best_of([2], range(5), curves_train, curves_valid, 200, 0.3)
    print("two curves, 2-2 tanh network: held-out accuracy %.1f%% (best of 5 seeds on "
          "validation: seed %d)" % (100 * accuracy(net, curves_test), seed))
    wrote(plot.layer_images(net, *curves_train, os.path.join(out, "seed000_curves_layers.png"),
                            title="two curves under 2 tanh units\n(dashed: the softmax's line)"))
    wrote(plot.decision_boundary(net, *curves_train,
                                 os.path.join(out, "seed000_curves_boundary.png"),
                                 title="two curves: decision boundary, 2-2 tanh"))
    frames = plot.interpolation_frames(net, 0, *curves_train,
                                       os.path.join(out, "seed000_curves_frames"),
                                       steps=4 if args.quick else 8,
                                       gif=os.path.abspath(os.path.join(
                                           out, "seed000_curves_bend.gif")))
    print("wrote %d frames and %s" % (len(frames) - 1, frames[-1]))

    # 2. spirals
    n = 300 if args.quick else 500
    seeds = range(5)
    epochs = 200 if args.quick else 300
    narrow, wide = [2, 2, 2, 2], [20, 20]
    easy = spiral_sets(EASY_TURNS, n)
    tight = spiral_sets(TIGHT_TURNS, n)
    runs = [("easy spiral (%.2f turns), 2-unit tanh x%d" % (EASY_TURNS, len(narrow)),
             narrow, easy, 0.3),
            ("tight spiral (%.2f turns), 2-unit tanh x%d" % (TIGHT_TURNS, len(narrow)),
             narrow, tight, 0.3),
            ("tight spiral (%.2f turns), 20-unit tanh x%d" % (TIGHT_TURNS, len(wide)),
             wide, tight, 0.1)]
    results = []
    for label, widths, (train, valid, test), eta in runs:
        net, valid_score, seed = best_of(widths, seeds, train, valid, epochs, eta)
        score = accuracy(net, test)
        results.append((label, net, train, score))
        print("%s: held-out accuracy %.1f%% (best of %d seeds on validation: seed %d, "
              "%.1f%%)" % (label, 100 * score, len(seeds), seed, 100 * valid_score))
    easy_acc, tight_acc, wide_acc = (r[3] for r in results)
    print("spiral accuracies: easy 2-unit %.1f%%, tight 2-unit %.1f%%, tight 20-unit %.1f%%"
          % (100 * easy_acc, 100 * tight_acc, 100 * wide_acc))
    for name, ok in (("easy spiral, 2-unit >= 95%", easy_acc >= 0.95),
                     ("tight spiral, 2-unit <= 90%", tight_acc <= 0.90),
                     ("tight spiral, 20-unit >= 95%", wide_acc >= 0.95)):
        print("  %-30s %s" % (name, "yes" if ok else "NO (not reached in this run)"))

    label, net, train, _ = results[0]
    wrote(plot.layer_images(net, *train, os.path.join(out, "seed000_spiral_layers.png"),
                            title="easy spiral through four 2-unit tanh layers"))
    for tag, (label, net, train, score) in zip(("easy", "tight", "tight_wide"), results):
        wrote(plot.decision_boundary(net, *train,
                                     os.path.join(out, "seed000_spiral_%s.png" % tag),
                                     title="%s\nheld-out %.1f%%" % (label, 100 * score)))

    # 3. concentric circles
    circles = [datasets.circles(300, inner_radius=0.5, noise=0.05, seed=s) for s in (1, 2, 3)]
    train, valid, test = circles
    for widths in ([2, 2, 2], [3]):
        net, valid_score, seed = best_of(widths, seeds, train, valid, 150 if args.quick else 200,
                                         0.3)
        score = accuracy(net, test)
        label = "circles, %d-unit tanh x%d" % (widths[0], len(widths))
        print("%s: held-out accuracy %.1f%% (best of %d seeds on validation: seed %d)"
              % (label, 100 * score, len(seeds), seed))
        wrote(plot.decision_boundary(net, *train, os.path.join(
            out, "seed000_circles_%dunits.png" % widths[0]),
            title="%s\nheld-out %.1f%%" % (label, 100 * score)))
    print("seconds: %.1f" % (time.perf_counter() - t0))


if __name__ == "__main__":
    main()
