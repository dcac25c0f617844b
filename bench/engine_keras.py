"""Keras 3 itself as a reference engine of the bench, on its JAX backend
(``--variant jax``, engine ``keras-jax``) or its torch backend (``--variant
torch``, engine ``keras-torch``), each with ``jit_compile=True`` (XLA on JAX,
torch.compile on torch); ``--variant torch-eager`` (engine
``keras-torch-eager``) is the torch backend with ``jit_compile=False``, what
Keras's default "auto" means on torch (on this CPU it was faster than
torch.compile's).

    python bench/engine_keras.py --network keras_mnist --mbs 128 --variant jax

KERAS_BACKEND is read when keras is imported, so it is set here, before the
import, and every backend runs in its own process (bench/run.py starts one
per engine).  Only the dense networks without dropout are Keras models here
(workloads.dense_only): ``keras.Sequential([keras.Input((n_in,)), Dense(...),
..., Dense(10, activation="softmax")])``, ``set_weights`` from the bench's
common initial parameters (Dense kernels are (n_in, n_out), network3's
orientation), ``compile(optimizer, loss, metrics=["accuracy"],
jit_compile=True)`` with the network's optimizer (workloads.optimizer:
Keras's RMSprop with the same learning_rate, rho and epsilon, or network3's
SGD without L2 = ``keras.optimizers.SGD(learning_rate=eta)``) and its loss
(workloads.keras_loss: categorical cross-entropy on one-hot rows, or sparse
categorical cross-entropy on the integer labels).  One repetition epoch is one
``model.fit(x, y, batch_size=mbs, epochs=1, shuffle=False, verbose=0)``
call, so Keras's own per-call and per-batch work counts, as fastnet's does.
The first fit (the check steps) traces and compiles the train step.

Keras computes cross-entropy from the softmax probabilities clipped to
[1e-7, 1 - 1e-7]; the other engines from the logits.  They agree while no
probability reaches the clip (the check after the first steps says so).

Threads: the JAX backend's from XLA_FLAGS (bench/run.py sets them), the
torch backend's with torch.set_num_threads.
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import workloads  # noqa: E402

BACKEND_PACKAGE = {"jax": "jax jaxlib", "torch": "torch==2.13.0"}


class KerasEngine(harness.KerasFit):
    """Keras 3 (JAX or torch backend, jit_compile) on the dense networks."""

    name = "keras-jax"

    def __init__(self, args, net, x, y, params0, eta, l2):
        self.name = "keras-" + args.variant
        backend = args.variant.split("-")[0]
        self.jit_compile = args.variant != "torch-eager"
        harness.keras_skip(workloads, net, args.device, self.name)
        opt = workloads.optimizer(net)
        # before keras is imported: it reads the backend once, at its import
        os.environ["KERAS_BACKEND"] = backend
        t0 = time.perf_counter()
        try:
            if backend == "jax":
                import jax
                jax.config.update("jax_platforms", "cpu")
            else:
                import torch
            import keras
        except ImportError as e:
            raise harness.SkipEngine("Keras 3 on its %s backend is not importable (%s); "
                                     "pip install keras %s"
                                     % (backend, e, BACKEND_PACKAGE[backend]))
        harness.IMPORT_S["s"] = time.perf_counter() - t0
        if keras.backend.backend() != backend:
            raise harness.SkipEngine("keras chose the %r backend, not %r"
                                     % (keras.backend.backend(), backend))
        if backend == "torch":
            torch.set_num_threads(args.threads)
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:
                pass
            self.torch = torch
        self.keras, self.backend = keras, backend
        self.mbs = args.mbs
        specs = workloads.layers(net, args.mbs)
        layers = [keras.Input((specs[0]["n_in"],))]
        for spec in specs:
            act = "softmax" if spec["kind"] == "softmax" else spec["act"]
            layers.append(keras.layers.Dense(spec["n_out"], activation=act))
        model = keras.Sequential(layers)
        model.set_weights([a for wb in params0 for a in wb])
        if opt["name"] == "keras_rmsprop":
            kopt = keras.optimizers.RMSprop(learning_rate=opt["lr"], rho=opt["rho"],
                                            epsilon=opt["epsilon"])
        else:                                   # network3's SGD, lmbda 0: plain SGD
            kopt = keras.optimizers.SGD(learning_rate=opt["lr"])
        self.loss = workloads.keras_loss(net)
        model.compile(optimizer=kopt, loss=self.loss, metrics=["accuracy"],
                      jit_compile=self.jit_compile)
        self.model, self.optimizer = model, kopt
        self.x = x
        self.y = harness.keras_targets(y, self.loss)

    def info(self):
        out = {"keras": self.keras.__version__, "backend": self.backend,
               "jit_compile": bool(getattr(self.model, "jit_compile", None)),
               "optimizer": type(self.optimizer).__name__, "loss": self.loss}
        if self.backend == "jax":
            import jax
            out.update(jax=jax.__version__, XLA_FLAGS=os.environ.get("XLA_FLAGS", ""))
        else:
            out.update(torch=self.torch.__version__, threads=self.torch.get_num_threads())
        return out


def main(argv=None):
    return harness.main(KerasEngine, argv, extra=[("--variant", dict(
        choices=("jax", "torch", "torch-eager"), default="jax"))])


if __name__ == "__main__":
    sys.exit(main())
