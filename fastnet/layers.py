"""network3's layer types: ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer.

A layer knows its shapes, its parameters and their initialisation (drawn from
NumPy's global RNG exactly as network3 draws them), and which kernels its
passes are made of.  It holds no engine state and computes nothing: a Plan
(fastnet/plan.py) asks it for

  ``param_shapes()``     its parameters: (name, shape, decayed) -- decayed
                         parameters take the L2 term (network3: weights only);
  ``buffers(mbs)``       the activations it needs for a mini-batch, by name;
  ``ops(ctx)``           its training forward, backward and inference ops:
                         kernel names and arguments in the reference engine's
                         signatures, on the arrays the plan hands it in ctx.

A layer without parameters returns an empty ``param_shapes()``.
"""

import numpy as np

from . import activations
from .activations import LINEAR
from .checks import as_labels, as_targets
from .config import floatx_dtype
from .params import Shared
from .plan import Op


def _int_tuple(value, length, what, where):
    try:
        t = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError("%s: %s must be a tuple of %d integers, got %r"
                         % (where, what, length, value))
    if len(t) != length or any(v != x for v, x in zip(t, value)):
        raise ValueError("%s: %s must be a tuple of %d integers, got %r"
                         % (where, what, length, value))
    if any(v < 1 for v in t):
        raise ValueError("%s: every entry of %s must be >= 1, got %r"
                         % (where, what, t))
    return t


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _positive_int(value, what, where):
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise ValueError("%s: %s must be a positive integer, got %r" % (where, what, value))
    if v != value or v < 1:
        raise ValueError("%s: %s must be a positive integer, got %r" % (where, what, value))
    return v


def _dropout_p(p, where):
    try:
        p = float(p)
    except (TypeError, ValueError):
        raise ValueError("%s: p_dropout must be a number in [0, 1), got %r" % (where, p))
    if not (0.0 <= p < 1.0):
        raise ValueError("%s: p_dropout must be in [0, 1), got %r" % (where, p))
    return p


class LayerOps(object):
    """What a layer's ``ops`` returns: three op lists and where their results are.

    ``train``: the training forward pass (dropout drawn, scale 1); for the
    output layer it ends with the op that returns the cost.  ``backward``:
    its gradients, given ctx.dout filled.  ``infer``: the inference forward
    pass.  ``out``: the array the next layer reads in training; ``infer_out``:
    the inference output (``net.output(x, layer=i)``).
    """

    def __init__(self, train, backward, infer, out, infer_out, evaluate=None):
        self.train = list(train)
        self.backward = list(backward)
        self.infer = list(infer)
        self.out = out
        self.infer_out = infer_out
        #: output layers: the inference pass that also returns the cost of
        #: the step's targets (evaluation); hidden layers: their inference
        self.evaluate = self.infer if evaluate is None else list(evaluate)


class Layer(object):
    """What every layer shares: its parameters and its shapes."""

    #: True for a layer that ends the network and defines the cost
    is_output = False
    #: dropout probability on the layer's input (0: none)
    p_dropout = 0.0

    def _make_params(self, w, b):
        self.w = Shared(w, name="w")
        self.b = Shared(b, name="b")
        self.params = [self.w, self.b]

    # sizes per sample, as flat vectors
    @property
    def n_in_flat(self):
        return int(np.prod(self.in_shape))

    @property
    def n_out_flat(self):
        return int(np.prod(self.out_shape))

    def param_shapes(self):
        """[(name, shape, decayed)] in ``self.params`` order."""
        return self.param_shapes_of(self.describe())

    @staticmethod
    def param_shapes_of(spec):
        """``param_shapes()`` of the layer ``spec`` (a ``describe()`` dict)
        describes, computed before anything is allocated (loading a file
        checks its arrays against it).  ValueError for a malformed spec."""
        raise NotImplementedError

    def check_mini_batch_size(self, mini_batch_size, where):
        """ValueError when the layer cannot run at this mini-batch size."""

    def describe(self):
        """The constructor call as a dict (for saving and for messages)."""
        raise NotImplementedError


class ConvPoolLayer(Layer):
    """A convolutional layer followed by max-pooling, as in network3.

    ``filter_shape``: (number of filters, number of input feature maps,
    filter height, filter width).  ``image_shape``: (mini-batch size, number
    of input feature maps, image height, image width).  ``poolsize``: (y, x)
    pooling sizes.  Theano's conv2d is a true convolution (the filter is
    flipped), 'valid'; the pool ignores the border; then bias, then the
    activation.  Convolutional layers never drop out.
    """

    def __init__(self, filter_shape, image_shape, poolsize=(2, 2),
                 activation_fn=activations.sigmoid):
        where = "ConvPoolLayer"
        self.filter_shape = _int_tuple(filter_shape, 4, "filter_shape", where)
        self.image_shape = _int_tuple(image_shape, 4, "image_shape", where)
        self.poolsize = _int_tuple(poolsize, 2, "poolsize", where)
        self.activation_fn = activations.resolve(activation_fn, where)
        F, C, KH, KW = self.filter_shape
        _, C_img, H, W = self.image_shape
        if C != C_img:
            raise ValueError(
                "ConvPoolLayer: filter_shape has %d input feature maps but "
                "image_shape has %d" % (C, C_img))
        if KH > H or KW > W:
            raise ValueError(
                "ConvPoolLayer: filter %dx%d is larger than the image %dx%d"
                % (KH, KW, H, W))
        CH, CW = H - KH + 1, W - KW + 1
        ph, pw = self.poolsize
        if ph > CH or pw > CW:
            raise ValueError(
                "ConvPoolLayer: poolsize %s is larger than the convolution "
                "output %dx%d" % (self.poolsize, CH, CW))
        self.conv_shape = (F, CH, CW)
        self.in_shape = (C, H, W)
        self.out_shape = (F, CH // ph, CW // pw)
        # network3 divides with Python 2 integers: floor (conformance case g)
        n_out = (F * KH * KW) // (ph * pw)
        if n_out < 1:
            raise ValueError(
                "ConvPoolLayer: filters*fh*fw // (ph*pw) = %d; network3's "
                "initialisation needs it >= 1" % n_out)
        dtype = floatx_dtype()
        w = _drawn(lambda: np.random.normal(loc=0, scale=np.sqrt(1.0 / n_out),
                                            size=self.filter_shape), dtype, where)
        b = _drawn(lambda: np.random.normal(loc=0, scale=1.0, size=(F,)), dtype, where)
        self._make_params(w, b)

    @staticmethod
    def param_shapes_of(spec):
        fs = spec.get("filter_shape")
        if not isinstance(fs, (list, tuple)) or len(fs) != 4 or not all(_is_int(v) for v in fs):
            raise ValueError("filter_shape %r is not 4 integers" % (fs,))
        return [("w", tuple(fs), True), ("b", (fs[0],), False)]

    def check_mini_batch_size(self, mini_batch_size, where):
        if self.image_shape[0] != mini_batch_size:
            raise ValueError(
                "%s (ConvPoolLayer) has image_shape batch %d but mini_batch_size "
                "is %d" % (where, self.image_shape[0], mini_batch_size))

    def describe(self):
        return {"type": "ConvPoolLayer", "filter_shape": list(self.filter_shape),
                "image_shape": list(self.image_shape), "poolsize": list(self.poolsize),
                "activation_fn": self.activation_fn.name}

    def __repr__(self):
        return ("ConvPoolLayer(filter_shape=%s, image_shape=%s, poolsize=%s, "
                "activation_fn=%s)" % (self.filter_shape, self.image_shape,
                                       self.poolsize, self.activation_fn.name))

    def buffers(self, N):
        return {"conv_out": (N,) + self.conv_shape, "dconv": (N,) + self.conv_shape,
                "out": (N,) + self.out_shape}

    def ops(self, ctx):
        """conv_forward -> pool_forward (max, + b, act); backward in reverse:
        pool_backward -> conv_backward."""
        x = ctx.input((ctx.mbs,) + self.in_shape)
        w, b, gw, gb = ctx.param["w"], ctx.param["b"], ctx.grad["w"], ctx.grad["b"]
        conv_out, dconv, out = ctx.buf["conv_out"], ctx.buf["dconv"], ctx.buf["out"]
        act = self.activation_fn.code
        forward = [Op("conv_forward", x, w, conv_out),
                   Op("pool_forward", conv_out, b, act, self.poolsize, out)]
        dout = ctx.dout.reshape(out.shape)
        dx = None if ctx.dx is None else ctx.dx.reshape(x.shape)
        backward = [Op("pool_backward", conv_out, out, dout, act, self.poolsize, dconv, gb),
                    Op("conv_backward", x, w, dconv, gw, dx)]
        return LayerOps(forward, backward, forward, out, out)


class _DenseBase(Layer):
    """FullyConnectedLayer and SoftmaxLayer: x @ w + b, dropout on the input."""

    def _init_dense(self, n_in, n_out, p_dropout, where):
        self.n_in = _positive_int(n_in, "n_in", where)
        self.n_out = _positive_int(n_out, "n_out", where)
        self.p_dropout = _dropout_p(p_dropout, where)
        self.in_shape = (self.n_in,)
        self.out_shape = (self.n_out,)
        self.dropout_seed = 0

    @staticmethod
    def param_shapes_of(spec):
        n_in, n_out = spec.get("n_in"), spec.get("n_out")
        if not _is_int(n_in) or not _is_int(n_out):
            raise ValueError("n_in %r / n_out %r are not integers" % (n_in, n_out))
        return [("w", (n_in, n_out), True), ("b", (n_out,), False)]

    def _draw_params(self, where):
        """network3's FullyConnectedLayer draws: w ~ N(0, 1/n_out), b ~ N(0, 1)."""
        dtype = floatx_dtype()
        w = _drawn(lambda: np.random.normal(loc=0.0, scale=np.sqrt(1.0 / self.n_out),
                                            size=(self.n_in, self.n_out)), dtype, where)
        b = _drawn(lambda: np.random.normal(loc=0.0, scale=1.0, size=(self.n_out,)),
                   dtype, where)
        self._make_params(w, b)

    def _dense_buffers(self, N, outputs):
        bufs = {name: (N, self.n_out) for name in outputs}
        if self.p_dropout > 0.0:
            bufs.update(mask=((N, self.n_in), np.uint8), x_drop=(N, self.n_in),
                        dx_drop=(N, self.n_in))
        return bufs

    def _dense_ops(self, ctx, act, z, dz, infer_tail=()):
        """[dropout_forward] -> dense_forward into z; backward dense_backward
        [-> dropout_backward]; inference with network3's (1 - p) scale."""
        x = ctx.input((ctx.mbs, self.n_in))
        w, b, gw, gb = ctx.param["w"], ctx.param["b"], ctx.grad["w"], ctx.grad["b"]
        train, backward, x_used, dx = [], [], x, ctx.dx
        if ctx.dx is not None:
            dx = ctx.dx.reshape((ctx.mbs, self.n_in))
        if self.p_dropout > 0.0:
            mask, x_used = ctx.buf["mask"], ctx.buf["x_drop"]
            train.append(Op("dropout_forward", x, self.p_dropout, ctx.dropout_seed,
                            ctx.counter, mask, x_used))
        train.append(Op("dense_forward", x_used, w, b, act, 1.0, z))
        if self.p_dropout > 0.0 and dx is not None:
            backward = [Op("dense_backward", x_used, w, z, dz, act, gw, gb, ctx.buf["dx_drop"]),
                        Op("dropout_backward", ctx.buf["dx_drop"], ctx.buf["mask"], dx)]
        else:
            backward = [Op("dense_backward", x_used, w, z, dz, act, gw, gb, dx)]
        infer = [Op("dense_forward", x, w, b, act, 1.0 - self.p_dropout, z)]
        infer.extend(infer_tail)
        return train, backward, infer


class FullyConnectedLayer(_DenseBase):
    """A fully connected layer: activation_fn((1 - p) x.w + b) at inference.

    ``n_in`` inputs, ``n_out`` neurons; while training the layer multiplies its
    own input by a Bernoulli(1 - p_dropout) mask instead of scaling.
    """

    def __init__(self, n_in, n_out, activation_fn=activations.sigmoid, p_dropout=0.0):
        where = "FullyConnectedLayer"
        self._init_dense(n_in, n_out, p_dropout, where)
        self.activation_fn = activations.resolve(activation_fn, where)
        self._draw_params(where)

    def describe(self):
        return {"type": "FullyConnectedLayer", "n_in": self.n_in, "n_out": self.n_out,
                "activation_fn": self.activation_fn.name, "p_dropout": self.p_dropout}

    def __repr__(self):
        return ("FullyConnectedLayer(n_in=%d, n_out=%d, activation_fn=%s, p_dropout=%r)"
                % (self.n_in, self.n_out, self.activation_fn.name, self.p_dropout))

    def buffers(self, N):
        return self._dense_buffers(N, ("out",))

    def ops(self, ctx):
        out = ctx.buf["out"]
        train, backward, infer = self._dense_ops(ctx, self.activation_fn.code, out,
                                                 ctx.dout)
        return LayerOps(train, backward, infer, out, out)


class SoftmaxLayer(_DenseBase):
    """The output layer: softmax((1 - p) x.w + b), log-likelihood cost.

    Its weights and biases start at zero, as in network3.
    """

    activation_fn = None
    is_output = True

    def __init__(self, n_in, n_out, p_dropout=0.0):
        where = "SoftmaxLayer"
        self._init_dense(n_in, n_out, p_dropout, where)
        dtype = floatx_dtype()
        self._make_params(_drawn(lambda: np.zeros((self.n_in, self.n_out)), dtype, where),
                          np.zeros((self.n_out,), dtype=dtype))

    def describe(self):
        return {"type": "SoftmaxLayer", "n_in": self.n_in, "n_out": self.n_out,
                "p_dropout": self.p_dropout}

    def __repr__(self):
        return "SoftmaxLayer(n_in=%d, n_out=%d, p_dropout=%r)" % (
            self.n_in, self.n_out, self.p_dropout)

    def buffers(self, N):
        return self._dense_buffers(N, ("logits", "probs", "dlogits"))

    def ops(self, ctx):
        """Training: logits, then softmax + mean NLL + its gradient (the
        cost op); inference: probabilities."""
        logits, probs, dlogits = ctx.buf["logits"], ctx.buf["probs"], ctx.buf["dlogits"]
        train, backward, infer = self._dense_ops(
            ctx, LINEAR, logits, dlogits,
            infer_tail=[Op("softmax_forward", logits, probs)])
        cost = Op("softmax_nll", logits, ctx.labels, probs, dlogits)
        train.append(cost)
        evaluate = [infer[0], cost]
        return LayerOps(train, backward, infer, logits, probs, evaluate)

    def check_targets(self, y, name, n_rows):
        """The labels of ``n_rows`` rows: int32 class indices in [0, n_out)."""
        return as_labels(y, name, n_rows, self.n_out)

    @staticmethod
    def accuracy_of(pred, y):
        """Fraction of rows whose first most probable class is the label."""
        return float(np.mean(np.argmax(pred, axis=1) == y)) if len(y) else float("nan")

    def predict_op(self, probs, yout):
        """network3's y_out: the first most probable class of each row."""
        return Op("softmax_argmax", probs, yout)


class DenseOutputLayer(_DenseBase):
    """An output layer without softmax: activation_fn((1 - p) x.w + b) at
    inference, trained on float targets (n, n_out) with

    ``loss="binary_crossentropy"``: the mean over all n * n_out elements of
        -(t log a + (1 - t) log(1 - a)), a = sigmoid(z) (activation_fn must be
        sigmoid; targets in [0, 1]); computed from z, so a saturated output
        costs its true value (Keras clips a to [1e-7, 1 - 1e-7] instead);
    ``loss="mse"``: the mean over all elements of (a - t)^2 (Keras's and
        PyTorch's mean squared error), any activation_fn.

    Integer labels in [0, n_out) are accepted for n_out > 1 and trained as
    one-hot targets.  Accuracy: a > 0.5 against t > 0.5 for one output or
    binary cross-entropy, else the largest output against the largest target.
    Weights and biases are drawn as FullyConnectedLayer's.
    """

    is_output = True
    LOSSES = ("binary_crossentropy", "mse")

    def __init__(self, n_in, n_out, activation_fn=activations.sigmoid, loss="mse",
                 p_dropout=0.0):
        where = "DenseOutputLayer"
        self._init_dense(n_in, n_out, p_dropout, where)
        self.activation_fn = activations.resolve(activation_fn, where)
        if loss not in self.LOSSES:
            raise ValueError("%s: loss must be one of %s, got %r"
                             % (where, ", ".join(self.LOSSES), loss))
        if loss == "binary_crossentropy" and self.activation_fn is not activations.sigmoid:
            raise ValueError("%s: binary_crossentropy needs activation_fn=sigmoid, got %s"
                             % (where, self.activation_fn.name))
        self.loss = loss
        self._draw_params(where)

    def describe(self):
        return {"type": "DenseOutputLayer", "n_in": self.n_in, "n_out": self.n_out,
                "activation_fn": self.activation_fn.name, "loss": self.loss,
                "p_dropout": self.p_dropout}

    def __repr__(self):
        return ("DenseOutputLayer(n_in=%d, n_out=%d, activation_fn=%s, loss=%r, "
                "p_dropout=%r)" % (self.n_in, self.n_out, self.activation_fn.name,
                                   self.loss, self.p_dropout))

    def buffers(self, N):
        if self.loss == "binary_crossentropy":
            return self._dense_buffers(N, ("logits", "probs", "dlogits"))
        return self._dense_buffers(N, ("out", "dout"))

    def ops(self, ctx):
        """binary_crossentropy: logits, then sigmoid + mean BCE + gradient
        (sigmoid_bce); mse: the activations, then mse_loss."""
        scale = 1.0 - self.p_dropout
        if self.loss == "binary_crossentropy":
            logits, probs, dlogits = ctx.buf["logits"], ctx.buf["probs"], ctx.buf["dlogits"]
            train, backward, _ = self._dense_ops(ctx, LINEAR, logits, dlogits)
            cost = Op("sigmoid_bce", logits, ctx.labels, probs, dlogits)
            train.append(cost)
            x = ctx.input((ctx.mbs, self.n_in))
            infer = [Op("dense_forward", x, ctx.param["w"], ctx.param["b"],
                        activations.SIGMOID, scale, probs)]
            evaluate = [Op("dense_forward", x, ctx.param["w"], ctx.param["b"], LINEAR,
                           scale, logits), cost]
            return LayerOps(train, backward, infer, logits, probs, evaluate)
        out, dout = ctx.buf["out"], ctx.buf["dout"]
        train, backward, infer = self._dense_ops(ctx, self.activation_fn.code, out, dout)
        cost = Op("mse_loss", out, ctx.labels, dout)
        train.append(cost)
        return LayerOps(train, backward, infer, out, out, infer + [cost])

    def check_targets(self, y, name, n_rows):
        """Float targets (n_rows, n_out) (a vector for one output), or integer
        labels for n_out > 1 (made one-hot)."""
        dtype = self.w.dtype
        a = np.asarray(y)
        if a.ndim == 1 and self.n_out > 1 and a.dtype.kind in "iu":
            labels = as_labels(a, name, n_rows, self.n_out)
            t = np.zeros((n_rows, self.n_out), dtype=dtype)
            t[np.arange(n_rows), labels] = 1
            return t
        t = as_targets(y, name, n_rows, self.n_out, dtype)
        if self.loss == "binary_crossentropy" and t.size and (t.min() < 0 or t.max() > 1):
            bad = int(np.argmax(((t < 0) | (t > 1)).any(axis=1)))
            raise ValueError("%s: binary_crossentropy targets must be in [0, 1]; row %d "
                             "holds %s" % (name, bad, t[bad]))
        return t

    def accuracy_of(self, pred, y):
        """Fraction right: thresholded at 0.5 (one output, or binary cross-
        entropy: every element), else the largest output's index."""
        if not len(y):
            return float("nan")
        if self.n_out == 1 or self.loss == "binary_crossentropy":
            return float(np.mean((pred > 0.5) == (y > 0.5)))
        return float(np.mean(np.argmax(pred, axis=1) == np.argmax(y, axis=1)))


def _drawn(draw, dtype, where):
    """A parameter array drawn as network3 draws it; a size too big for this
    machine is a MemoryError that names the layer."""
    try:
        return np.asarray(draw(), dtype=dtype)
    except MemoryError:
        raise MemoryError("%s: not enough memory for its parameters" % where) from None


LAYER_TYPES = {"ConvPoolLayer": ConvPoolLayer,
               "FullyConnectedLayer": FullyConnectedLayer,
               "SoftmaxLayer": SoftmaxLayer,
               "DenseOutputLayer": DenseOutputLayer}
