"""What the example scripts share: their command line and a quiet SGD."""

import argparse
import contextlib
import io
import os
import sys

# These networks are small: the compiled kernels' OpenMP threads would spend
# their time spinning, which collapses on a busy machine (README, "A busy
# machine"); passive waiting costs little here.  Set before fastnet loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def parse_args(description, argv=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="a seconds-long run with smaller settings (what CI runs)")
    parser.add_argument("--out", default=".",
                        help="folder for the PNG pictures (default: the current directory)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    return args


def quiet_sgd(net, training_data, epochs, eta, validation_data, test_data, lmbda=0.0):
    """net.SGD with network3's log lines swallowed (they would flood the
    output of runs with hundreds of short epochs); returns its history."""
    with contextlib.redirect_stdout(io.StringIO()):
        return net.SGD(training_data, epochs, net.mini_batch_size, eta,
                       validation_data, test_data, lmbda=lmbda)


def wrote(path):
    print("wrote %s" % path)
    sys.stdout.flush()
