"""XOR needs a hidden layer; deep sigmoid networks learn slowly because
their early layers' gradients vanish (chapter 5), ReLU's do not.

    python examples/seed002_xor_vanishing.py [--quick] [--out DIR]

1. XOR on its four points: a network with no hidden layer (a softmax over
   the inputs) against 2-2-2 and 2-4-2 tanh networks and a 2-2-2 sigmoid one
   (network3's output is a softmax, so "2-2-1" is 2-2-2 here).
2. 784-30-30-30-30-10 on the bundled MNIST digits, sigmoid against ReLU: the
   per-layer gradient norms at initialisation and after one epoch, and how
   they move during training (a chart).
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import parse_args, quiet_sgd, wrote  # noqa: E402

import fastnet  # noqa: E402
from fastnet import FullyConnectedLayer, Network, SoftmaxLayer  # noqa: E402
from fastnet import datasets, diagnostics, plot  # noqa: E402


# ----------------------------------------------------------------------
# XOR
# ----------------------------------------------------------------------
def xor_net(hidden, activation, seed):
    np.random.seed(seed)
    layers = []
    if hidden:
        layers.append(FullyConnectedLayer(n_in=2, n_out=hidden, activation_fn=activation))
    layers.append(SoftmaxLayer(n_in=hidden or 2, n_out=2))
    return Network(layers, 4)


def train_xor(hidden, activation, seed, epochs, eta):
    data = datasets.xor()
    net = xor_net(hidden, activation, seed)
    quiet_sgd(net, data, epochs, eta, data, data)
    x, y = data
    return net, float(np.mean(net.predict(x) == y))


def xor_part(out, quick):
    x, y = datasets.xor()
    epochs = 500
    print("XOR on its four points (%d epochs of full-batch SGD):" % epochs)
    net, acc = train_xor(0, None, 0, epochs, 0.5)
    p1 = net.output(x)[:, 1]
    print("  no hidden layer:       accuracy %3.0f%%, P(class 1) = %s  (a straight line gets "
          "at most 3 of the 4 points; by symmetry the cost is least at P = 0.5 everywhere)"
          % (100 * acc, np.array2string(p1, precision=3)))
    wrote(plot.decision_boundary(net, x, y, os.path.join(out, "seed002_xor_linear.png"),
                                 bounds=(-0.5, 1.5, -0.5, 1.5), point_size=60,
                                 title="XOR, no hidden layer: %.0f%%\nP(class 1) = %s"
                                       % (100 * acc, np.array2string(p1, precision=2))))
    shown = None
    for hidden, activation, eta in ((2, fastnet.tanh, 0.5), (4, fastnet.tanh, 0.5),
                                    (2, fastnet.sigmoid, 2.0)):
        net, acc = train_xor(hidden, activation, 0, epochs, eta)
        print("  2-%d-2 %-7s seed 0:  accuracy %3.0f%%, P(class 1) = %s"
              % (hidden, activation.name, 100 * acc,
                 np.array2string(net.output(x)[:, 1], precision=3)))
        if shown is None:
            shown = net
    # how often a small network finds XOR at all: local minima are real
    n_seeds = 5 if quick else 20
    for hidden in (2, 4):
        solved = sum(train_xor(hidden, fastnet.tanh, s, epochs, 0.5)[1] == 1.0
                     for s in range(n_seeds))
        print("  2-%d-2 tanh reaches 100%% from %d of %d seeds" % (hidden, solved, n_seeds))
    wrote(plot.decision_boundary(shown, x, y, os.path.join(out, "seed002_xor_tanh.png"),
                                 bounds=(-0.5, 1.5, -0.5, 1.5), point_size=60,
                                 title="XOR, 2-2-2 tanh: 100%"))
    wrote(plot.layer_images(shown, x, y, os.path.join(out, "seed002_xor_layers.png"),
                            bounds=(-0.5, 1.5, -0.5, 1.5), point_size=60,
                            title="XOR: 2 tanh units make it linearly separable"))


# ----------------------------------------------------------------------
# vanishing gradient
# ----------------------------------------------------------------------
HIDDEN = [30, 30, 30, 30]


def deep_net(activation, seed=0):
    np.random.seed(seed)
    layers, n_in = [], 784
    for width in HIDDEN:
        layers.append(FullyConnectedLayer(n_in=n_in, n_out=width, activation_fn=activation))
        n_in = width
    layers.append(SoftmaxLayer(n_in=n_in, n_out=10))
    return Network(layers, 10)


def hidden_norms(net, probe, key="bias_grad_norm", delta_samples=50):
    rows = diagnostics.gradient_norms(net, probe[0], probe[1], delta_samples=delta_samples)
    return [r[key] for r in rows[:len(HIDDEN)]], rows


def norms_line(values):
    return " ".join("%.3g" % v for v in values)


def vanishing_part(out, quick):
    train, valid, _ = datasets.mnist_sample()
    probe = (train[0][:1000], train[1][:1000])
    small_valid = (valid[0][:200], valid[1][:200])
    epochs = 1 if quick else 10
    chunk = 2000
    arch = "784-" + "-".join(str(w) for w in HIDDEN) + "-10"
    print()
    print("%s, mini-batch 10, eta 0.1, %d training digits per epoch; gradient norms "
          "||dC/db|| of the hidden layers, measured on 1,000 training digits"
          % (arch, train[0].shape[0]))
    traces = {}
    after_one = {}
    for activation in (fastnet.sigmoid, fastnet.ReLU):
        name = activation.name
        net = deep_net(activation)
        at_init, _ = hidden_norms(net, probe)
        print("at initialisation, %s: %s  (network3's softmax layer starts at zero, so "
              "no error reaches the hidden layers: every hidden gradient is exactly 0)"
              % (name, norms_line(at_init)))
        # chapter 5 measures at initialisation with a random output layer:
        # the same draw as a hidden layer's, N(0, 1/n_out)
        twin = deep_net(activation)
        out_layer = twin.layers[-1]
        rng = np.random.RandomState(1)
        out_layer.w.set_value(rng.normal(0.0, np.sqrt(1.0 / out_layer.n_out),
                                         size=out_layer.w.shape))
        random_out, _ = hidden_norms(twin, probe)
        print("at initialisation with a random output layer, %s: %s"
              % (name, norms_line(random_out)))

        steps, values = [], []
        t0 = time.perf_counter()
        n_train = train[0].shape[0]
        for epoch in range(epochs):
            for start in range(0, n_train, chunk):
                # consecutive SGD calls on consecutive chunks = one call over
                # the whole epoch: network3 never shuffles
                part = (train[0][start:start + chunk], train[1][start:start + chunk])
                quiet_sgd(net, part, 1, 0.1, small_valid, small_valid)
                norms, rows = hidden_norms(net, probe)
                steps.append((epoch * n_train + start + chunk) // net.mini_batch_size)
                values.append(norms)
            if epoch == 0:
                after_one[name] = rows
        traces["%s (validation %.1f%% after %d epoch%s)" % (
            name, 100 * net.accuracy(valid), epochs, "s" if epochs > 1 else "")] = (
            steps, values)
        rows = after_one[name]
        first = [r["bias_grad_norm"] for r in rows[:len(HIDDEN)]]
        print("gradient norms (input -> output), %s: %s" % (name, norms_line(first)))
        print("  after one epoch, %s: ||dC/dw|| %s; mean |delta| %s; last/first hidden "
              "||dC/db|| = %.1fx; validation accuracy after %d epoch%s %.1f%% (%.1f s)"
              % (name, norms_line(r["weight_grad_norm"] for r in rows[:len(HIDDEN)]),
                 norms_line(r["mean_abs_delta"] for r in rows[:len(HIDDEN)]),
                 first[-1] / first[0], epochs, "s" if epochs > 1 else "",
                 100 * net.accuracy(valid), time.perf_counter() - t0))
    def spread(rows):
        norms = [r["bias_grad_norm"] for r in rows[:len(HIDDEN)]]
        return max(norms) / min(norms)
    rise = (after_one["sigmoid"][len(HIDDEN) - 1]["bias_grad_norm"]
            / after_one["sigmoid"][0]["bias_grad_norm"])
    print("after one epoch: sigmoid's ||dC/db|| rises %.0fx from the first to the last hidden "
          "layer (more than an order of magnitude: %s); largest/smallest layer: sigmoid %.0fx, "
          "ReLU %.1fx (ReLU flatter: %s)"
          % (rise, "yes" if rise > 10 else "NO", spread(after_one["sigmoid"]),
             spread(after_one["ReLU"]),
             "yes" if spread(after_one["ReLU"]) < spread(after_one["sigmoid"]) else "NO"))
    wrote(plot.gradient_norms(traces, os.path.join(out, "seed002_gradient_norms.png"),
                              layer_names=["hidden %d" % (k + 1) for k in range(len(HIDDEN))],
                              title="%s: ||dC/db|| per hidden layer during training" % arch))


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    t0 = time.perf_counter()
    xor_part(args.out, args.quick)
    vanishing_part(args.out, args.quick)
    print("seconds: %.1f" % (time.perf_counter() - t0))


if __name__ == "__main__":
    main()
