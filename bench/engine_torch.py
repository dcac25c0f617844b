"""PyTorch reference engine of the bench: eager, or the whole SGD step under
torch.compile (inductor).

    python bench/engine_torch.py --network conv2_relu --mbs 10 [--variant compile]
    python bench/engine_torch.py --network conv2_relu --mbs 10 --device cuda

With ``--device cuda`` the data and parameters live on torch.device("cuda")
(the data copied once, at setup), TF32 is off (float32 arithmetic, as
fastnet's kernels do it), and every timed call ends with
torch.cuda.synchronize().

Same mathematics as network3: conv (cross-correlation on flipped kernels, so
the same function as Theano's true convolution), max-pool 2x2, bias, then the
activation; dropout masks on FC/softmax inputs; mean NLL; plain SGD with
network3's L2 (lmbda / num_training_batches on weights only).  A network
whose optimizer is Keras's RMSprop (workloads.optimizer) gets Keras's update,
written here with torch's foreach ops (torch.optim.RMSprop puts eps outside
the root): v = rho*v + (1-rho)*g^2; p -= lr*g / sqrt(v + eps), every
parameter; under torch.compile the same update is inside the compiled step.
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import workloads  # noqa: E402


class TorchEngine(object):
    """PyTorch (eager or torch.compile) on the book's networks."""

    name = "torch-eager"
    devices = ("cpu", "cuda")

    @staticmethod
    def probe(args):
        try:
            import torch
        except ImportError as e:
            return {"ok": False, "reason": "PyTorch is not installed (%s); "
                                           "pip install torch==2.13.0" % e}
        if args.device != "cuda":
            return {"ok": True, "info": {"torch": torch.__version__}}
        why = _no_cuda(torch)
        if why:
            return {"ok": False, "reason": why}
        return {"ok": True, "gpu": torch.cuda.get_device_name(0),
                "info": {"torch": torch.__version__, "cuda": torch.version.cuda}}

    def __init__(self, args, net, x, y, params0, eta, l2):
        t0 = time.perf_counter()
        try:
            import torch
            import torch.nn.functional as F
        except ImportError as e:
            raise harness.SkipEngine("PyTorch is not installed (%s); "
                                     "pip install torch==2.13.0" % e)
        harness.IMPORT_S["s"] = time.perf_counter() - t0
        self.torch, self.F = torch, F
        self.cuda = args.device == "cuda"
        if self.cuda:
            why = _no_cuda(torch)
            if why:
                raise harness.SkipEngine(why)
            # float32 arithmetic, as fastnet's kernels (TF32 would round the
            # conv / matmul inputs to 10-bit mantissas)
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self.dev = torch.device("cuda" if self.cuda else "cpu")
        torch.set_num_threads(args.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
        self.variant = getattr(args, "variant", "eager")
        self.name = "torch-compile" if self.variant == "compile" else "torch-eager"
        self.mbs = args.mbs
        self.specs = workloads.layers(net, args.mbs)
        self.eta, self.l2 = float(eta), float(l2)
        self.x = torch.from_numpy(x).to(self.dev)
        self.y = torch.from_numpy(y.astype(np.int64)).to(self.dev)
        self.nb = x.shape[0] // args.mbs
        self.opt = workloads.optimizer(net)
        self._load(params0)
        rmsprop = self.opt["name"] == "keras_rmsprop"
        # Keras's RMSprop state: one velocity per parameter, from 0
        self.v = [torch.zeros_like(a, requires_grad=False) for a in self.p] if rmsprop else []
        if self.variant == "compile":
            self._step = torch.compile(self._functional_rmsprop_step if rmsprop
                                       else self._functional_step, fullgraph=True)
        elif rmsprop:
            self._step = self._eager_rmsprop_step
        else:
            self._opt = torch.optim.SGD(
                [{"params": self.p[0::2], "weight_decay": self.l2},
                 {"params": self.p[1::2], "weight_decay": 0.0}],
                lr=self.eta, momentum=0.0, foreach=True)
            self._step = self._eager_step
        self._sync()

    def _sync(self):
        """Wait for the GPU (a no-op on the CPU): before any timer stops."""
        if self.cuda:
            self.torch.cuda.synchronize()

    def _load(self, params0):
        torch = self.torch
        self.p = []
        for spec, (w, b) in zip(self.specs, params0):
            if spec["kind"] == "conv":
                w = workloads.flip(w)
            grad = self.variant != "compile"
            self.p.append(torch.tensor(w, device=self.dev).requires_grad_(grad))
            self.p.append(torch.tensor(b, device=self.dev).requires_grad_(grad))

    def _act(self, h, name):
        if name == "relu":
            return self.torch.relu(h)
        if name == "sigmoid":
            return self.torch.sigmoid(h)
        if name == "tanh":
            return self.torch.tanh(h)
        return h

    def _nll(self, p, xb, yb):
        """Mean NLL of the mini-batch on the training (dropout) path."""
        torch, F = self.torch, self.F
        h = xb
        for i, spec in enumerate(self.specs):
            w, b = p[2 * i], p[2 * i + 1]
            if spec["kind"] == "conv":
                h = h.reshape(spec["image"])
                h = F.max_pool2d(F.conv2d(h, w), spec["pool"])
                h = self._act(h + b.view(1, -1, 1, 1), spec["act"])
                continue
            h = h.reshape(self.mbs, -1)
            if spec["p_dropout"] > 0:
                keep = torch.rand_like(h) < (1.0 - spec["p_dropout"])
                h = h * keep.to(h.dtype)
            z = h @ w + b
            h = self._act(z, spec["act"]) if spec["kind"] == "fc" else z
        return F.cross_entropy(h, yb)

    def _eager_step(self, xb, yb):
        self._opt.zero_grad(set_to_none=True)
        loss = self._nll(self.p, xb, yb)
        loss.backward()
        self._opt.step()

    def _keras_rmsprop(self, p, v, grads):
        """Keras's RMSprop update of p and v in place (foreach ops)."""
        torch = self.torch
        rho, eps = self.opt["rho"], self.opt["epsilon"]
        torch._foreach_mul_(v, rho)
        torch._foreach_addcmul_(v, grads, grads, value=1.0 - rho)
        denom = torch._foreach_add(v, eps)
        torch._foreach_sqrt_(denom)
        torch._foreach_addcdiv_(p, grads, denom, value=-self.eta)

    def _eager_rmsprop_step(self, xb, yb):
        for a in self.p:
            a.grad = None
        loss = self._nll(self.p, xb, yb)
        loss.backward()
        with self.torch.no_grad():
            self._keras_rmsprop(self.p, self.v, [a.grad for a in self.p])

    def _functional_rmsprop_step(self, p, v, xb, yb):
        grads = self.torch.func.grad(lambda p: self._nll(p, xb, yb))(p)
        with self.torch.no_grad():
            self._keras_rmsprop(p, v, list(grads))

    def _functional_step(self, p, xb, yb):
        torch = self.torch

        def cost(p):
            l2 = sum((w * w).sum() for w in p[0::2])
            return self._nll(p, xb, yb) + 0.5 * self.l2 * l2

        grads = torch.func.grad(cost)(p)
        with torch.no_grad():
            for a, g in zip(p, grads):
                a.sub_(self.eta * g)

    def _run(self, nbatches):
        mbs = self.mbs
        if self.variant == "compile" and self.v:
            for i in range(nbatches):
                self._step(self.p, self.v, self.x[i * mbs:(i + 1) * mbs],
                           self.y[i * mbs:(i + 1) * mbs])
        elif self.variant == "compile":
            for i in range(nbatches):
                self._step(self.p, self.x[i * mbs:(i + 1) * mbs],
                           self.y[i * mbs:(i + 1) * mbs])
        else:
            for i in range(nbatches):
                self._step(self.x[i * mbs:(i + 1) * mbs], self.y[i * mbs:(i + 1) * mbs])

    def check(self, steps):
        # called first, on the freshly loaded params0
        self._run(steps)
        self._sync()

    def params(self):
        out = []
        for spec, i in zip(self.specs, range(0, len(self.p), 2)):
            w = self.p[i].detach().cpu().numpy()
            if spec["kind"] == "conv":
                w = workloads.flip(w)
            out.append((w.copy(), self.p[i + 1].detach().cpu().numpy().copy()))
        return out

    def epoch(self):
        self._run(self.nb)
        self._sync()

    def info(self):
        torch = self.torch
        out = {"torch": torch.__version__, "variant": self.variant,
               "optimizer": self.opt["name"],
               "threads": torch.get_num_threads(), "device": str(self.dev)}
        if self.cuda:
            out.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                       cudnn=torch.backends.cudnn.version(), tf32=False)
        return out


def _no_cuda(torch):
    """Why this PyTorch cannot use a GPU here, or None when it can."""
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return ("this PyTorch build has no CUDA (torch %s); install a CUDA build "
                "of torch==2.13.0" % torch.__version__)
    if not torch.cuda.is_available():
        return ("PyTorch %s (CUDA %s) sees no CUDA device"
                % (torch.__version__, torch.version.cuda))
    return None


def main(argv=None):
    return harness.main(TorchEngine, argv, extra=[("--variant", dict(
        choices=("eager", "compile"), default="eager"))])


if __name__ == "__main__":
    sys.exit(main())
