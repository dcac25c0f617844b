"""fastnet engine of the bench, through the public API only.

    python bench/engine_fastnet.py --network conv2_relu --mbs 10 [--variant reference]
    python bench/engine_fastnet.py --network conv2_relu --mbs 10 --device cuda
    python bench/engine_fastnet.py --network keras_mnist --mbs 128 --variant keras

``Network(layers, mbs, engine=...)`` with ``engine="cpu"`` (the compiled
engine, the default) or ``engine="reference"`` (the NumPy oracle), or with
``--device cuda`` ``Network(layers, mbs, device="cuda")`` (the Numba CUDA
engine; its SGD copies the data to the GPU on each call and waits for the GPU
at the end of each epoch, inside the timed call); weights set
with ``layer.w.set_value``; one repetition epoch is one
``net.SGD((x, y), 1, mbs, eta, (vx, vy), (tx, ty), lmbda=...)`` call whose
validation and test sets are a single mini-batch, with SGD's log lines sent to
/dev/null.  The whole call is timed, so its per-call work (data checks, one
validation and one test mini-batch) counts against fastnet.  A network whose
optimizer is Keras's RMSprop (workloads.optimizer) passes
``optimizer=fastnet.keras.optimizers.RMSprop(learning_rate, rho, epsilon)``
(the same object every call, so its state carries on, as in one long run).

``--variant keras`` (engine ``fastnet-keras``) trains the dense networks
through ``fastnet.keras`` instead, as a Keras user would: ``Sequential`` of
``Dense`` layers, ``set_weights``, ``compile(optimizer, loss, metrics=
['accuracy'])``, and one repetition epoch is one ``model.fit(x, y,
batch_size=mbs, epochs=1, shuffle=False, verbose=0)`` call, so the front
end's per-batch work (fastnet.keras steps with ``Network.train_batch``) shows.
"""

import argparse
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


def _cuda_reason(e):
    return "%s: %s" % (type(e).__name__, e)


class FastnetEngine(object):
    """fastnet through network3's API."""

    name = "fastnet"
    devices = ("cpu", "cuda")

    @staticmethod
    def probe(args):
        """Can fastnet train on args.device here?  (The cuda engine finds its GPU.)"""
        try:
            fastnet = import_fastnet()
        except Exception as e:  # noqa: BLE001
            return {"ok": False, "reason": "fastnet does not import (%s)" % _cuda_reason(e)}
        if args.device != "cuda":
            return {"ok": True}
        if args.variant != "cpu":
            return {"ok": False, "reason": "fastnet's %s engine runs on the CPU only"
                                           % args.variant}
        try:
            engine = fastnet.get_engine("cuda")
            dev = engine.info()
        except Exception as e:  # noqa: BLE001 -- no numba-cuda, no driver, no GPU
            return {"ok": False, "reason": "fastnet's cuda engine cannot run here (%s)"
                                           % _cuda_reason(e)}
        return {"ok": True, "gpu": dev.name, "simulated": bool(dev.simulated),
                "info": {"device": repr(dev)}}

    def __init__(self, args, net, x, y, params0, eta, l2):
        self.variant = args.variant
        self.device = args.device
        self.name = "fastnet" if args.variant == "cpu" else "fastnet-" + args.variant
        if self.device == "cuda" and self.variant != "cpu":
            raise harness.SkipEngine("fastnet's %s engine runs on the CPU only"
                                     % self.variant)
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
            if self.device == "cuda":
                self.net = Network(layers, mbs, device="cuda")
            else:
                self.net = Network(layers, mbs, engine=args.variant)
        except Exception as e:  # noqa: BLE001 -- e.g. the compiled engine is not built
            raise harness.SkipEngine("fastnet engine %r is not available (%s: %s)"
                                     % ("cuda" if self.device == "cuda" else args.variant,
                                        type(e).__name__, e))
        self.history = None
        # None: net.SGD's own (network3's rule, eta and lmbda)
        self.optimizer = fastnet_optimizer(workloads.optimizer(net))
        # sum of TrainingHistory.training_seconds (SGD's own training time)
        self.inner_seconds = 0.0

    def _sgd(self, x, y, lmbda):
        with contextlib.redirect_stdout(io.StringIO()):
            self.history = self.net.SGD((x, y), 1, self.mbs, self.eta, self.vxy, self.vxy,
                                        lmbda=lmbda, optimizer=self.optimizer)
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
        out = {"fastnet": getattr(self.fastnet, "__version__", "?"),
               "engine": self.net.engine.name, "device": self.device,
               "optimizer": repr(self.optimizer) if self.optimizer else "network3 SGD",
               "path": os.path.dirname(self.fastnet.__file__)}
        if self.device == "cuda":
            dev = self.net.engine.info()
            out.update(gpu=dev.name, gpu_info=repr(dev), simulated=bool(dev.simulated))
        elif hasattr(self.net.engine, "vector_activations"):
            # sigmoid / tanh through glibc's vector math library, or scalar
            out.update(vector_activations=self.net.engine.vector_activations())
        return out


def fastnet_optimizer(opt):
    """The optimizer object net.SGD / compile gets for a workloads.optimizer
    spec; None for network3's SGD (net.SGD's default, eta and lmbda)."""
    if opt["name"] == "network3_sgd":
        return None
    if opt["name"] == "keras_rmsprop":
        from fastnet.keras.optimizers import RMSprop
        return RMSprop(learning_rate=opt["lr"], rho=opt["rho"], epsilon=opt["epsilon"])
    raise harness.SkipEngine("fastnet engine: no optimizer %r" % opt["name"])


class FastnetKerasEngine(harness.KerasFit):
    """fastnet through fastnet.keras (Sequential, compile, fit)."""

    name = "fastnet-keras"

    def __init__(self, args, net, x, y, params0, eta, l2):
        harness.keras_skip(workloads, net, args.device, "fastnet-keras")
        opt = workloads.optimizer(net)
        t0 = time.perf_counter()
        try:
            fastnet = import_fastnet()
            from fastnet.keras import layers as klayers, models, optimizers
        except Exception as e:  # noqa: BLE001
            raise harness.SkipEngine("fastnet.keras does not import (%s: %s)"
                                     % (type(e).__name__, e))
        harness.IMPORT_S["s"] = time.perf_counter() - t0
        self.fastnet = fastnet
        self.mbs = args.mbs
        specs = workloads.layers(net, args.mbs)
        model = models.Sequential()
        for i, spec in enumerate(specs):
            act = "softmax" if spec["kind"] == "softmax" else spec["act"]
            kw = {"input_shape": (spec["n_in"],)} if i == 0 else {}
            model.add(klayers.Dense(spec["n_out"], activation=act, **kw))
        model.set_weights([a for wb in params0 for a in wb])
        if opt["name"] == "network3_sgd":      # lmbda 0: plain SGD
            kopt = optimizers.SGD(learning_rate=opt["lr"])
        else:
            kopt = fastnet_optimizer(opt)
        self.loss = workloads.keras_loss(net)
        try:
            model.compile(optimizer=kopt, loss=self.loss, metrics=["accuracy"])
        except Exception as e:  # noqa: BLE001 -- e.g. the compiled engine is not built
            raise harness.SkipEngine("fastnet.keras cannot compile the model (%s: %s)"
                                     % (type(e).__name__, e))
        self.model, self.optimizer = model, kopt
        self.x = x
        self.y = harness.keras_targets(y, self.loss)

    def info(self):
        net = self.model._net
        return {"fastnet": getattr(self.fastnet, "__version__", "?"),
                "engine": net.engine.name if net is not None else "?",
                "optimizer": repr(self.optimizer), "loss": self.loss,
                "path": os.path.dirname(self.fastnet.__file__)}


def _act_name(name):
    return {"relu": "ReLU"}.get(name, name)


def main(argv=None):
    extra = [("--variant", dict(choices=("cpu", "reference", "keras"), default="cpu"))]
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--variant", default="cpu")
    known, _ = pre.parse_known_args(argv)
    cls = FastnetKerasEngine if known.variant == "keras" else FastnetEngine
    return harness.main(cls, argv, extra=extra)


if __name__ == "__main__":
    sys.exit(main())
