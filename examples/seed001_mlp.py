"""784-16-16-10: the small multilayer perceptron of the "what is a neural
network" videos, trained on the bundled MNIST digits.

    python examples/seed001_mlp.py [--quick] [--out DIR]

Prints the parameter count (784*16+16 + 16*16+16 + 16*10+10 = 13,002) and
the accuracy on the 1,000 held-out test digits; draws what each first-layer
unit "looks for" (its 784 incoming weights as a 28x28 image), the learning
curves and the test digits it gets wrong.
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


def mlp(activation, seed=0):
    np.random.seed(seed)
    return Network([FullyConnectedLayer(n_in=784, n_out=16, activation_fn=activation),
                    FullyConnectedLayer(n_in=16, n_out=16, activation_fn=activation),
                    SoftmaxLayer(n_in=16, n_out=10)], 10)


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    out = args.out
    t0 = time.perf_counter()
    train, valid, test = datasets.mnist_sample()
    epochs = 5 if args.quick else 30
    eta = 0.5
    histories = []
    for activation in (fastnet.sigmoid, fastnet.ReLU):
        net = mlp(activation)
        if activation is fastnet.sigmoid:
            print("784-16-16-10 (%s): %s parameters"
                  % (activation.name, format(diagnostics.count_params(net), ",")))
        rate = eta if activation is fastnet.sigmoid else 0.05
        history = quiet_sgd(net, train, epochs, rate, valid, test)
        histories.append(history)
        predicted = net.predict(test[0])
        accuracy = float(np.mean(predicted == test[1]))
        print("784-16-16-10 %-7s mini-batch 10, eta %g, %d epochs on %s training digits: "
              "test accuracy %.2f%% (%d of %d), best validation %.2f%%"
              % (activation.name, rate, epochs, format(train[0].shape[0], ","),
                 100 * accuracy, int(np.sum(predicted == test[1])), test[1].shape[0],
                 100 * history.best_validation_accuracy))
        if activation is fastnet.sigmoid:
            sigmoid_net, sigmoid_predicted = net, predicted
    wrote(plot.weight_images(sigmoid_net, os.path.join(out, "seed001_first_layer.png"),
                             title="what the 16 first-layer units see (sigmoid; red "
                                   "excites, blue inhibits)"))
    wrote(plot.learning_curves(histories, os.path.join(out, "seed001_learning_curves.png"),
                               labels=["sigmoid", "ReLU"],
                               title="784-16-16-10 on the bundled digits"))
    wrote(plot.misclassified(test[0], test[1], sigmoid_predicted,
                             os.path.join(out, "seed001_misclassified.png"), max_images=24,
                             title="test digits the sigmoid network gets wrong"))
    print("seconds: %.1f" % (time.perf_counter() - t0))


if __name__ == "__main__":
    main()
