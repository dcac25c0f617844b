"""JAX reference engine of the bench: one jitted SGD step per mini-batch
(``--variant jit``), or the whole epoch as one ``lax.scan`` (``--variant
scan``).  Both are compiled ahead of time, so their compile time is the setup
time.  On the CPU by default; ``--device cuda`` runs on JAX's GPU backend
(a jaxlib with its CUDA plugin, ``pip install "jax[cuda13]"``), with
XLA_PYTHON_CLIENT_PREALLOCATE=false (other engines' workers share the GPU)
and the default matmul precision set to "highest" (float32, no TF32).

    python bench/engine_jax.py --network conv2_relu --mbs 10 --variant scan

Same mathematics as network3: conv (cross-correlation on flipped kernels, the
same function as Theano's true convolution), max-pool 2x2, bias, activation;
dropout masks on FC/softmax inputs; mean NLL + 0.5*lmbda*sum ||w||^2 /
num_training_batches; plain SGD; mini-batches in order.  A network whose
optimizer is Keras's RMSprop (workloads.optimizer) gets Keras's update,
v = rho*v + (1-rho)*g^2; p -= lr*g / sqrt(v + eps), inside the same jitted
step / scan, the velocities carried with the parameters.  Thread settings come
from XLA_FLAGS (--xla_cpu_multi_thread_eigen, intra_op_parallelism_threads),
which bench/run.py sets, and the CPU affinity it gives the process.
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import workloads  # noqa: E402


class JaxEngine(object):
    """JAX (jit per step, or lax.scan over the epoch) on the book's networks."""

    name = "jax-jit"
    devices = ("cpu", "cuda")

    @staticmethod
    def probe(args):
        try:
            import jax
        except ImportError as e:
            return {"ok": False, "reason": "JAX is not installed (%s); pip install jax "
                                           "jaxlib" % e}
        if args.device != "cuda":
            return {"ok": True, "info": {"jax": jax.__version__}}
        gpu, why = _gpu(jax)
        if why:
            return {"ok": False, "reason": why}
        return {"ok": True, "gpu": gpu.device_kind, "info": {"jax": jax.__version__}}

    def __init__(self, args, net, x, y, params0, eta, l2):
        if args.device == "cuda":
            os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        t0 = time.perf_counter()
        try:
            import jax
            import jax.numpy as jnp
            from jax import lax
        except ImportError as e:
            raise harness.SkipEngine("JAX is not installed (%s); pip install jax jaxlib" % e)
        harness.IMPORT_S["s"] = time.perf_counter() - t0
        self.device = args.device
        if args.device == "cuda":
            gpu, why = _gpu(jax)
            if why:
                raise harness.SkipEngine(why)
            jax.config.update("jax_default_device", gpu)
            jax.config.update("jax_default_matmul_precision", "highest")
            self.gpu = gpu
        else:
            jax.config.update("jax_platforms", "cpu")
        self.jax, self.jnp, self.lax = jax, jnp, lax
        self.variant = args.variant
        self.name = "jax-" + args.variant
        self.mbs = mbs = args.mbs
        self.specs = workloads.layers(net, mbs)
        self.eta, self.l2 = float(eta), float(l2)
        self.nb = nb = x.shape[0] // mbs
        self.x = jax.device_put(x[:nb * mbs])
        self.y = jax.device_put(y[:nb * mbs])
        self.key = jax.random.PRNGKey(args.seed)
        self.opt = workloads.optimizer(net)
        self.rmsprop = self.opt["name"] == "keras_rmsprop"
        p0 = self._load(params0)
        # the carry: the parameters, then the optimizer's state (Keras
        # RMSprop: one velocity per parameter, from 0)
        self.p = (p0, tuple(jnp.zeros_like(a) for a in p0) if self.rmsprop else ())
        self.step_count = 0

        step = jax.jit(self._indexed_step, donate_argnums=0)
        self._step = step.lower(self.p, self.x, self.y, self.key, 0, 0).compile()
        if self.variant == "scan":
            xs = self.x.reshape(nb, mbs, -1)
            ys = self.y.reshape(nb, mbs)
            self.xs, self.ys = xs, ys
            epoch = jax.jit(self._scan_epoch, donate_argnums=0)
            self._epoch = epoch.lower(self.p, xs, ys, self.key, 0).compile()
        jax.block_until_ready((self.p, self.x, self.y))

    def _load(self, params0):
        jnp = self.jnp
        p = []
        for spec, (w, b) in zip(self.specs, params0):
            if spec["kind"] == "conv":
                w = workloads.flip(w)
            p.append(jnp.asarray(w))
            p.append(jnp.asarray(b))
        return tuple(p)

    def _act(self, h, name):
        jax, jnp = self.jax, self.jnp
        if name == "relu":
            return jnp.maximum(h, 0)
        if name == "sigmoid":
            return jax.nn.sigmoid(h)
        if name == "tanh":
            return jnp.tanh(h)
        return h

    def _cost(self, p, xb, yb, key):
        jax, jnp, lax = self.jax, self.jnp, self.lax
        h = xb
        for i, spec in enumerate(self.specs):
            w, b = p[2 * i], p[2 * i + 1]
            if spec["kind"] == "conv":
                h = h.reshape(spec["image"])
                h = lax.conv_general_dilated(h, w, (1, 1), "VALID",
                                             dimension_numbers=("NCHW", "OIHW", "NCHW"))
                ph, pw = spec["pool"]
                h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, ph, pw),
                                      (1, 1, ph, pw), "VALID")
                h = self._act(h + b.reshape(1, -1, 1, 1), spec["act"])
                continue
            h = h.reshape(self.mbs, -1)
            if spec["p_dropout"] > 0:
                keep = jax.random.bernoulli(jax.random.fold_in(key, i),
                                            1.0 - spec["p_dropout"], h.shape)
                h = h * keep.astype(h.dtype)
            z = h @ w + b
            h = self._act(z, spec["act"]) if spec["kind"] == "fc" else z
        logp = jax.nn.log_softmax(h, axis=1)
        nll = -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))
        if self.rmsprop:
            return nll
        l2 = sum(jnp.sum(w * w) for w in p[0::2])
        return nll + 0.5 * self.l2 * l2

    def _sgd(self, carry, xb, yb, key):
        """One step of the network's optimizer: (params, state) -> new ones."""
        p, state = carry
        g = self.jax.grad(self._cost)(p, xb, yb, key)
        if not self.rmsprop:
            return tuple(a - self.eta * ga for a, ga in zip(p, g)), state
        rho, eps, jnp = self.opt["rho"], self.opt["epsilon"], self.jnp
        v = tuple(rho * va + (1.0 - rho) * jnp.square(ga) for va, ga in zip(state, g))
        p = tuple(a - self.eta * ga / jnp.sqrt(va + eps) for a, ga, va in zip(p, g, v))
        return p, v

    def _indexed_step(self, p, x, y, key, i, t):
        """SGD on mini-batch i; t (the global step) draws the dropout masks."""
        lax, mbs = self.lax, self.mbs
        xb = lax.dynamic_slice_in_dim(x, i * mbs, mbs, axis=0)
        yb = lax.dynamic_slice_in_dim(y, i * mbs, mbs, axis=0)
        return self._sgd(p, xb, yb, self.jax.random.fold_in(key, t))

    def _scan_epoch(self, p, xs, ys, key, start):
        jax, lax, jnp = self.jax, self.lax, self.jnp

        def body(p, batch):
            xb, yb, i = batch
            return self._sgd(p, xb, yb, jax.random.fold_in(key, i)), None

        idx = start + jnp.arange(xs.shape[0])
        p, _ = lax.scan(body, p, (xs, ys, idx))
        return p

    def _steps(self, n):
        for i in range(n):
            self.p = self._step(self.p, self.x, self.y, self.key, i, self.step_count)
            self.step_count += 1

    def check(self, steps):
        self._steps(steps)
        self.jax.block_until_ready(self.p)

    def epoch(self):
        if self.variant == "scan":
            self.p = self._epoch(self.p, self.xs, self.ys, self.key, self.step_count)
            self.step_count += self.nb
        else:
            self._steps(self.nb)
        self.jax.block_until_ready(self.p)

    def params(self):
        out = []
        p = self.p[0]
        for spec, i in zip(self.specs, range(0, len(p), 2)):
            w = np.asarray(p[i])
            if spec["kind"] == "conv":
                w = workloads.flip(w)
            out.append((np.array(w), np.array(p[i + 1])))
        return out

    def info(self):
        import jaxlib
        out = {"jax": self.jax.__version__, "jaxlib": jaxlib.__version__,
               "variant": self.variant, "device": self.device,
               "optimizer": self.opt["name"],
               "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}
        if self.device == "cuda":
            out.update(gpu=self.gpu.device_kind, matmul_precision="highest")
        return out


def _gpu(jax):
    """(JAX's first GPU device, None), or (None, why there is none)."""
    try:
        gpus = jax.devices("gpu")
    except Exception as e:  # noqa: BLE001 -- RuntimeError: no gpu backend
        return None, ("JAX %s sees no GPU (%s); pip install \"jax[cuda13]\""
                      % (jax.__version__, str(e).splitlines()[0] if str(e) else
                         type(e).__name__))
    if not gpus:
        return None, "JAX %s sees no GPU" % jax.__version__
    return gpus[0], None


def main(argv=None):
    return harness.main(JaxEngine, argv, extra=[("--variant", dict(
        choices=("jit", "scan"), default="jit"))])


if __name__ == "__main__":
    sys.exit(main())
