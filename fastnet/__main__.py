"""python -m fastnet demo | bench | info

demo   trains the book's chapter-6 conv net on the bundled real MNIST sample
       (8,000 training / 1,000 validation / 1,000 test digits), offline,
       printing network3's log, a progress line and the throughput.
bench  runs the benchmark suite (bench/run.py of a source checkout).
info   prints the version, engines, floatX and thread count.
"""

import argparse
import os
import sys
import time


def _book_net(name, mbs, fastnet):
    from fastnet import ConvPoolLayer, FullyConnectedLayer, ReLU, SoftmaxLayer
    if name == "conv":
        # chapter 6: two conv-pool layers with ReLU, FC 100 ReLU, softmax; L2 0.1
        return [
            ConvPoolLayer(image_shape=(mbs, 1, 28, 28), filter_shape=(20, 1, 5, 5),
                          poolsize=(2, 2), activation_fn=ReLU),
            ConvPoolLayer(image_shape=(mbs, 20, 12, 12), filter_shape=(40, 20, 5, 5),
                          poolsize=(2, 2), activation_fn=ReLU),
            FullyConnectedLayer(n_in=40 * 4 * 4, n_out=100, activation_fn=ReLU),
            SoftmaxLayer(n_in=100, n_out=10)], 0.03, 0.1
    if name == "fc":
        return [FullyConnectedLayer(n_in=784, n_out=100),
                SoftmaxLayer(n_in=100, n_out=10)], 0.1, 0.0
    raise ValueError("unknown net %r" % name)


def demo(argv):
    parser = argparse.ArgumentParser(
        prog="python -m fastnet demo",
        description="Train the book's conv net on the bundled real MNIST sample.")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--mini-batch-size", type=int, default=10)
    parser.add_argument("--net", choices=("conv", "fc"), default="conv")
    parser.add_argument("--engine", default=None,
                        help="reference, cpu or cuda (default: cpu)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import numpy as np
    import fastnet
    from fastnet import Network, datasets

    training_data, validation_data, test_data = datasets.mnist_sample()
    print("fastnet %s demo: the book's %s net on the bundled MNIST sample "
          "(%d training, %d validation, %d test digits; MNIST, CC BY-SA 3.0)"
          % (fastnet.__version__, args.net, len(training_data[0]),
             len(validation_data[0]), len(test_data[0])))
    np.random.seed(args.seed)
    mbs = args.mini_batch_size
    layers, eta, lmbda = _book_net(args.net, mbs, fastnet)
    net = Network(layers, mbs, engine=args.engine)
    print("engine: %s, floatX: %s, mini-batch size %d, eta %g, lmbda %g, %d epochs"
          % (net.engine.name, fastnet.get_floatx(), mbs, eta, lmbda, args.epochs))
    sys.stdout.flush()
    t0 = time.perf_counter()
    history = net.SGD(training_data, args.epochs, mbs, eta, validation_data,
                      test_data, lmbda=lmbda, progress=sys.stderr.isatty())
    wall = time.perf_counter() - t0
    print("Trained %d samples in %.2f s of training (%.2f s wall with evaluation): "
          "%.0f samples/s"
          % (history.samples_trained, history.training_seconds, wall,
             history.samples_per_second))
    return 0


def bench(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    run = os.path.join(os.path.dirname(here), "bench", "run.py")
    if not os.path.exists(run):
        sys.stderr.write("the bench suite lives in a source checkout: run "
                         "`python bench/run.py` from the fastnet repository\n")
        return 2
    sys.path.insert(0, os.path.dirname(here))
    from bench.run import main
    return main(argv)


def info(argv):
    import fastnet
    from fastnet.engines import available_engines
    print("fastnet", fastnet.__version__)
    print("floatX:", fastnet.get_floatx())
    print("engines:", ", ".join(available_engines()))
    try:
        from fastnet.engines import cpu
        print("cpu threads:", cpu.get_num_threads())
    except Exception as exc:  # the compiled engine is optional for `info`
        print("cpu engine unavailable:", exc)
    return 0


COMMANDS = {"demo": demo, "bench": bench, "info": info}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        sys.stderr.write(__doc__)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
