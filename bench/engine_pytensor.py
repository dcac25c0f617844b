"""network3's own engine: the book's graph, written anew for this bench, on
PyTensor 2.8.11 (the last release with Theano's C conv and pool ops,
``pytensor.tensor.nnet.conv.conv2d`` and ``pytensor.tensor.signal.pool.pool_2d``).

Runs under the PyTensor venv's interpreter (numpy<1.24, scipy<1.12):

    /work/venvs/pytensor/bin/python bench/engine_pytensor.py --network conv2_relu --mbs 10

Imports only the standard library, NumPy, PyTensor and the bench's
workloads/harness.  As in network3: floatX float32, shared data sliced by a
mini-batch index through ``givens``, one compiled ``train_mb(i)`` called from
a Python loop, true convolution, max-pool ignoring the border, bias after the
pool, dropout masks from a random stream, cost = mean NLL of log(softmax) +
0.5*lmbda*sum ||w||^2 / num_training_batches, updates p - eta*grad.
With more than one thread, PyTensor's ``openmp`` flag is turned on (its C
conv and pool ops then use OpenMP); pass --no-openmp for its default.
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import workloads  # noqa: E402


class PyTensorEngine(object):
    """network3's graph on PyTensor 2.8.11 (Theano's C ops)."""

    name = "network3-pytensor"

    def __init__(self, args, net, x, y, params0, eta, l2):
        opt = workloads.optimizer(net)
        if opt["name"] != "network3_sgd":
            raise harness.SkipEngine("network3 trains with its own SGD only; %s's optimizer "
                                     "is %s" % (net, opt["name"]))
        flags = ["floatX=float32"]
        if args.threads > 1 and not args.no_openmp:
            flags.append("openmp=True")
        old = os.environ.get("PYTENSOR_FLAGS")
        # the user's own flags come last, so they win
        os.environ["PYTENSOR_FLAGS"] = ",".join(flags + ([old] if old else []))
        t0 = time.perf_counter()
        try:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pytensor
                import pytensor.tensor as pt
                from pytensor.tensor.nnet import conv
                from pytensor.tensor.signal.pool import pool_2d
                from pytensor.tensor.random.utils import RandomStream
        except ImportError as e:
            raise harness.SkipEngine(
                "PyTensor 2.8.11 is not importable here (%s); run this script with "
                "the PyTensor venv's python" % e)
        harness.IMPORT_S["s"] = time.perf_counter() - t0
        self.pytensor = pytensor
        mbs = self.mbs = args.mbs
        specs = self.specs = workloads.layers(net, mbs)
        self.nb = x.shape[0] // mbs
        fx = pytensor.config.floatX

        x_sh = pytensor.shared(np.asarray(x, dtype=fx), borrow=True)
        y_sh = pytensor.shared(np.asarray(y, dtype="int32"), borrow=True)
        xs = pt.matrix("x")
        ys = pt.ivector("y")
        srng = RandomStream(seed=args.seed)

        self.shared = []
        h = xs
        for spec, (w0, b0) in zip(specs, params0):
            w = pytensor.shared(np.asarray(w0, dtype=fx), name="w", borrow=True)
            b = pytensor.shared(np.asarray(b0, dtype=fx), name="b", borrow=True)
            self.shared.append((w, b))
            if spec["kind"] == "conv":
                h = h.reshape(spec["image"])
                c = conv.conv2d(input=h, filters=w, filter_shape=spec["filter"],
                                image_shape=spec["image"])
                pooled = pool_2d(c, ws=spec["pool"], ignore_border=True)
                h = self._act(pt, pooled + b.dimshuffle("x", 0, "x", "x"), spec["act"])
                continue
            h = h.reshape((mbs, spec["n_in"]))
            if spec["p_dropout"] > 0:
                mask = srng.binomial(n=1, p=1.0 - spec["p_dropout"], size=h.shape)
                h = h * pt.cast(mask, fx)
            z = pt.dot(h, w) + b
            if spec["kind"] == "fc":
                h = self._act(pt, z, spec["act"])
            else:
                h = pt.special.softmax(z, axis=1)
        nll = -pt.mean(pt.log(h)[pt.arange(ys.shape[0]), ys])
        l2_sum = sum((w ** 2).sum() for w, _ in self.shared)
        cost = nll + 0.5 * workloads.hyper(net)[1] * l2_sum / self.nb
        params = [p for pair in self.shared for p in pair]
        grads = pytensor.grad(cost, params)
        eta = np.asarray(eta, dtype=fx)
        updates = [(p, p - eta * g) for p, g in zip(params, grads)]
        i = pt.lscalar("i")
        self.train_mb = pytensor.function(
            [i], cost, updates=updates,
            givens={xs: x_sh[i * mbs:(i + 1) * mbs], ys: y_sh[i * mbs:(i + 1) * mbs]})

    @staticmethod
    def _act(pt, z, name):
        if name == "relu":
            return pt.maximum(0.0, z)
        if name == "sigmoid":
            return pt.sigmoid(z)
        if name == "tanh":
            return pt.tanh(z)
        return z

    def check(self, steps):
        for i in range(steps):
            self.train_mb(i)

    def epoch(self):
        train_mb = self.train_mb
        for i in range(self.nb):
            train_mb(i)

    def params(self):
        return [(w.get_value(), b.get_value()) for w, b in self.shared]

    def info(self):
        c = self.pytensor.config
        return {"pytensor": self.pytensor.__version__, "numpy": np.__version__,
                "floatX": c.floatX, "openmp": bool(c.openmp),
                "blas__ldflags": c.blas__ldflags, "cxx": c.cxx}


def main(argv=None):
    return harness.main(PyTensorEngine, argv, extra=[("--no-openmp", dict(
        action="store_true", help="keep PyTensor's default openmp=False"))])


if __name__ == "__main__":
    sys.exit(main())
