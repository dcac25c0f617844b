"""fastnet engine of the bench, through the public API only.

    python bench/engine_fastnet.py --network conv2_relu --mbs 10 [--variant reference]

``Network(layers, mbs, engine=...)`` with ``engine="cpu"`` (the compiled
engine, the default) or ``engine="reference"`` (the NumPy oracle); weights set
with ``layer.w.set_value``; one repetition epoch is one
``net.SGD((x, y), 1, mbs, eta, (vx, vy), (tx, ty), lmbda=...)`` call whose
validation and test sets are a single mini-batch, with SGD's log lines sent to
/dev/null.  The whole call is timed, so its per-call work (data checks, one
validation and one test mini-batch) counts against fastnet.
"""

import contextlib
import io
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import workloads  # noqa: E402


def import_fastnet():
    """fastnet as installed, else from the checkout this bench belongs to."""
    try:
        import fastnet
        return fastnet
    except ImportError:
        root = os.path.dirname(HERE)
        if os.path.isdir(os.path.join(root, "fastnet")) and root not in sys.path:
            sys.path.insert(1, root)
            sys.modules.pop("fastnet", None)
            import fastnet
            return fastnet
        raise


class FastnetEngine(object):
    """fastnet through network3's API."""

    name = "fastnet"

    def __init__(self, args, net, x, y, params0, eta, l2):
        self.variant = args.variant
        self.name = "fastnet" if args.variant == "cpu" else "fastnet-" + args.variant
        t0 = time.perf_counter()
        try:
            fastnet = import_fastnet()
            from fastnet import (ConvPoolLayer, FullyConnectedLayer, Network,
                                 SoftmaxLayer)
            from fastnet.activations import by_name
        except Exception as e:  # noqa: BLE001 -- any failure means "not ready"
            raise harness.SkipEngine("fastnet does not import (%s: %s)"
                                     % (type(e).__name__, e))
        harness.IMPORT_S["s"] = time.perf_counter() - t0
        self.fastnet = fastnet
        mbs = self.mbs = args.mbs
        self.eta = eta
        self.lmbda = workloads.hyper(net)[1]
        self.nb = x.shape[0] // mbs
        self.x, self.y = x, y
        # validation and test: one mini-batch each (not what is measured)
        self.vxy = (x[:mbs], y[:mbs])
        layers = []
        for spec in workloads.layers(net, mbs):
            if spec["kind"] == "conv":
                layers.append(ConvPoolLayer(spec["filter"], spec["image"], spec["pool"],
                                            activation_fn=by_name(_act_name(spec["act"]))))
            elif spec["kind"] == "fc":
                layers.append(FullyConnectedLayer(
                    spec["n_in"], spec["n_out"], activation_fn=by_name(_act_name(spec["act"])),
                    p_dropout=spec["p_dropout"]))
            else:
                layers.append(SoftmaxLayer(spec["n_in"], spec["n_out"],
                                           p_dropout=spec["p_dropout"]))
        for layer, (w, b) in zip(layers, params0):
            layer.w.set_value(w)
            layer.b.set_value(b)
        self.layers = layers
        try:
            self.net = Network(layers, mbs, engine=args.variant)
        except Exception as e:  # noqa: BLE001 -- e.g. the compiled engine is not built
            raise harness.SkipEngine("fastnet engine %r is not available (%s: %s)"
                                     % (args.variant, type(e).__name__, e))
        self.history = None
        # sum of TrainingHistory.training_seconds (SGD's own training time)
        self.inner_seconds = 0.0

    def _sgd(self, x, y, lmbda):
        with contextlib.redirect_stdout(io.StringIO()):
            self.history = self.net.SGD((x, y), 1, self.mbs, self.eta, self.vxy, self.vxy,
                                        lmbda=lmbda)
        self.inner_seconds += float(getattr(self.history, "training_seconds", 0.0) or 0.0)

    def check(self, steps):
        # lmbda scaled so lmbda / num_training_batches is the full run's L2
        self._sgd(self.x[:steps * self.mbs], self.y[:steps * self.mbs],
                  self.lmbda * steps / self.nb)

    def epoch(self):
        self._sgd(self.x, self.y, self.lmbda)

    def params(self):
        return [(np.asarray(l.w.get_value()), np.asarray(l.b.get_value()))
                for l in self.layers]

    def info(self):
        return {"fastnet": getattr(self.fastnet, "__version__", "?"),
                "engine": self.variant, "path": os.path.dirname(self.fastnet.__file__)}


def _act_name(name):
    return {"relu": "ReLU"}.get(name, name)


def main(argv=None):
    return harness.main(FastnetEngine, argv, extra=[("--variant", dict(
        choices=("cpu", "reference"), default="cpu"))])


if __name__ == "__main__":
    sys.exit(main())
