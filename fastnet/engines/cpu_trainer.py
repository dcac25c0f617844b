"""The CPU engine's compiled training loop: ``make_plan`` and ``train_steps``.

``Network.SGD`` calls ``plan = make_plan(net)`` once, then
``train_steps(plan, x, y, first, stop, eta, l2, counter0)`` for runs of
mini-batches: each run goes through csrc/trainer.pyx in one call without the
GIL (forward, softmax + NLL gradient, backward, SGD + L2 update, step after
step), with the same kernels in the same order as the step-by-step path, so
the trained weights are the same.

Every argument is checked here, before the compiled loop runs; a bad one
raises ValueError naming it.
"""

import math
import numbers
import operator
import os

import numpy as np

from ..layers import ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer
from .reference import keep_threshold

try:
    from .._cpu import trainer as _trainer
except ImportError as e:  # the extension module was not built
    raise ImportError(
        "fastnet's compiled trainer (fastnet._cpu.trainer) is not built (%s); "
        "rebuild with `python setup.py build_ext --inplace` or `pip install -e .`"
        % e) from e

__all__ = ["make_plan", "train_steps", "TrainPlan"]


def _num_threads():
    from . import cpu
    return cpu.get_num_threads()


class TrainPlan(object):
    """What ``make_plan`` returns: the network's layers, the buffers of the
    compiled loop and the thread count they were sized for."""

    def __init__(self, net, fuse_update=True):
        self.fuse_update = int(fuse_update)
        self.layers = list(net.layers)
        self.mbs = int(net.mini_batch_size)
        self.dtype = np.dtype(net.dtype)
        self._build()

    def _build(self):
        self.n_threads = _num_threads()
        self._params = [(layer.w_e, layer.b_e) for layer in self.layers]
        self._c = _trainer.Plan(_layer_specs(self.layers, self.mbs, self.dtype),
                                self.mbs, self.dtype, self.n_threads,
                                self.fuse_update)

    def _fresh(self):
        """Rebuild when the thread count or a layer's parameter buffer changed."""
        if self.n_threads != _num_threads() or any(
                layer.w_e is not w or layer.b_e is not b
                for layer, (w, b) in zip(self.layers, self._params)):
            self._build()
        return self._c

    @property
    def n_in(self):
        return self._c.n_in

    @property
    def last_cost(self):
        """Mean NLL of the last mini-batch trained (NaN before any)."""
        return self._c.last_cost


def _param(layer, name, shape, dtype):
    a = getattr(layer, name)
    if (not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != shape
            or not a.flags.c_contiguous or not a.flags.writeable):
        raise ValueError(
            "make_plan: %s.%s must be a writeable C-contiguous %s array of shape %s "
            "(the cpu engine's live parameter buffer)" % (type(layer).__name__, name,
                                                          dtype, shape))
    return a


def _layer_specs(layers, N, dtype):
    specs = []
    empty = lambda shape: np.zeros(shape, dtype=dtype)  # noqa: E731
    for i, layer in enumerate(layers):
        need_dx = i > 0
        if isinstance(layer, ConvPoolLayer):
            F, C, KH, KW = layer.filter_shape
            _, H, W = layer.in_shape
            _, CH, CW = layer.conv_shape
            ph, pw = layer.poolsize
            d = dict(kind="conv", act=int(layer.activation_fn.code),
                     C=C, H=H, W=W, F=F, KH=KH, KW=KW, CH=CH, CW=CW, ph=ph, pw=pw,
                     I=layer.n_in_flat, O=layer.n_out_flat,
                     w=_param(layer, "w_e", (F, C, KH, KW), dtype),
                     b=_param(layer, "b_e", (F,), dtype),
                     gw=empty((F, C, KH, KW)), gb=empty((F,)),
                     conv_out=empty((N, F, CH, CW)), dconv=empty((N, F, CH, CW)),
                     out=empty((N, layer.n_out_flat)))
        elif isinstance(layer, (FullyConnectedLayer, SoftmaxLayer)):
            I, O = layer.n_in, layer.n_out
            soft = isinstance(layer, SoftmaxLayer)
            if soft and i != len(layers) - 1:
                raise ValueError("make_plan: layer %d is a SoftmaxLayer but not the last" % i)
            d = dict(kind="softmax" if soft else "dense",
                     act=3 if soft else int(layer.activation_fn.code),
                     I=I, O=O,
                     w=_param(layer, "w_e", (I, O), dtype),
                     b=_param(layer, "b_e", (O,), dtype),
                     gw=empty((I, O)), gb=empty((O,)), out=empty((N, O)))
            if soft:
                d["probs"] = empty((N, O))
                d["dout"] = empty((N, O))
            if layer.p_dropout > 0.0:
                d["seed"] = int(layer.dropout_seed) % (1 << 64)
                d["threshold"] = int(keep_threshold(layer.p_dropout))
                d["mask"] = np.zeros((N, I), dtype=np.uint8)
                d["x_drop"] = empty((N, I))
                d["dx_drop"] = empty((N, I)) if need_dx else None
        else:
            raise ValueError("make_plan: layer %d is %r, not a fastnet layer" % (i, layer))
        d["dx"] = empty((N, layer.n_in_flat)) if need_dx else None
        specs.append(d)
    if not specs or specs[-1]["kind"] != "softmax":
        raise ValueError("make_plan: the last layer must be a SoftmaxLayer")
    # the gradient w.r.t. a layer's output is the next layer's dx
    for i in range(len(specs) - 1):
        specs[i]["dout"] = specs[i + 1]["dx"]
    return specs


def make_plan(net, fuse_update=None):
    """The compiled training plan of ``net`` (its layers' live parameters,
    workspaces allocated once).

    The convolutions run conv.pxd's per-sample kernels.  (A variant with
    the batch folded into one product per thread, im2col kept from forward
    to backward, measured slower on the book's conv net -- the folded
    patches of a mini-batch of 128 are 16 MB and leave the caches, per
    sample they stay in L2 -- and was removed.)  fuse_update, for the dense
    layers: 1 (default) the SGD step right after the weight-gradient GEMM,
    while w and its gradient are in cache, with the step-by-step path's
    rounding; 2 inside that GEMM, w = (1 - eta*l2) w - eta x.T dz (beta),
    faster but rounded differently, which moves float32 trajectories;
    0 a separate pass after the backward pass.  Defaults from
    FASTNET_TRAINER_FUSE_UPDATE."""
    if not hasattr(net, "layers") or not hasattr(net, "mini_batch_size"):
        raise ValueError("make_plan: net must be a fastnet Network, got %s"
                         % type(net).__name__)
    dtype = np.dtype(net.dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError("make_plan: the network's dtype must be float32 or float64, "
                         "got %s" % dtype)
    if fuse_update is None:
        fuse_update = os.environ.get("FASTNET_TRAINER_FUSE_UPDATE", "1")
    try:
        fuse_update = int(fuse_update)
    except (TypeError, ValueError):
        fuse_update = -1
    if fuse_update not in (0, 1, 2):
        raise ValueError("make_plan: fuse_update must be 0, 1 or 2")
    return TrainPlan(net, fuse_update)


def _index(value, name):
    if isinstance(value, (bool, np.bool_)):
        raise ValueError("train_steps: %s must be an integer, got %r" % (name, value))
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError("train_steps: %s must be an integer, got %r" % (name, value))


def _real(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError("train_steps: %s must be a real number, got %r" % (name, value))
    v = float(value)
    if not math.isfinite(v):
        raise ValueError("train_steps: %s must be finite, got %r" % (name, value))
    return v


def train_steps(plan, x, y, first, stop, eta, l2, counter0):
    """Train mini-batches first .. stop-1 of (x, y) in one compiled call.

    plan: from make_plan;  x (n, n_in) float array of the plan's dtype,
    C-contiguous;  y (n,) int32 labels in [0, n_classes);  0 <= first <=
    stop <= n // mini_batch_size;  eta, l2 finite reals (l2 = lmbda /
    num_training_batches);  counter0 >= 0 the dropout counter of step
    ``first`` (step i uses counter0 + i - first).
    """
    if not isinstance(plan, TrainPlan):
        raise ValueError("train_steps: plan must come from make_plan, got %s"
                         % type(plan).__name__)
    if not isinstance(x, np.ndarray):
        raise ValueError("train_steps: x must be a numpy.ndarray, got %s" % type(x).__name__)
    if x.dtype != plan.dtype:
        raise ValueError("train_steps: x has dtype %s; expected %s (the network's floatX)"
                         % (x.dtype, plan.dtype))
    if x.ndim != 2 or x.shape[1] != plan.n_in:
        raise ValueError("train_steps: x has shape %s; expected (n, %d)"
                         % (x.shape, plan.n_in))
    if not x.flags.c_contiguous or not x.flags.aligned:
        raise ValueError("train_steps: x must be C-contiguous and aligned")
    if not isinstance(y, np.ndarray):
        raise ValueError("train_steps: y must be a numpy.ndarray, got %s" % type(y).__name__)
    if y.dtype != np.int32:
        raise ValueError("train_steps: y has dtype %s; expected int32" % y.dtype)
    if y.shape != (x.shape[0],):
        raise ValueError("train_steps: y has shape %s; expected (%d,) (one label per row "
                         "of x)" % (y.shape, x.shape[0]))
    if not y.flags.c_contiguous or not y.flags.aligned:
        raise ValueError("train_steps: y must be C-contiguous and aligned")
    first = _index(first, "first")
    stop = _index(stop, "stop")
    n_batches = x.shape[0] // plan.mbs
    if not 0 <= first <= n_batches:
        raise ValueError("train_steps: first must be in [0, %d], got %d" % (n_batches, first))
    if not first <= stop <= n_batches:
        raise ValueError("train_steps: stop must be in [first=%d, n // mini_batch_size=%d], "
                         "got %d" % (first, n_batches, stop))
    eta = _real(eta, "eta")
    l2 = _real(l2, "l2")
    counter0 = _index(counter0, "counter0")
    if not 0 <= counter0 < (1 << 64) - (stop - first):
        raise ValueError("train_steps: counter0 must be in [0, 2**64), got %d" % counter0)
    if stop == first:
        return
    yb = y[first * plan.mbs:stop * plan.mbs]
    if yb.size and (int(yb.min()) < 0 or int(yb.max()) >= plan._c.n_classes):
        raise ValueError("train_steps: y has labels outside [0, %d)" % plan._c.n_classes)
    plan._fresh().run(x, y, first, stop, eta, l2, counter0)
