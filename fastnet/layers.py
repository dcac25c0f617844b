"""network3's layer types: ConvPoolLayer, FullyConnectedLayer, SoftmaxLayer.

A layer knows its shapes, its parameters and their initialisation (drawn from
NumPy's global RNG exactly as network3 draws them), and which kernels to call
with which workspaces.  It contains no arithmetic loops: the engine computes.

Life of a layer: constructed by the user (parameters drawn), then bound by a
Network to an engine and a mini-batch size (workspaces sized once), then
driven by the Network: ``forward(x, train)``, ``backward(dout, need_dx)``,
``update(eta, l2)``.
"""

import numpy as np

from . import activations
from .activations import LINEAR
from .config import floatx_dtype
from .params import Shared, sgd_step


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


class Layer(object):
    """What every layer shares: parameters, binding, the SGD update."""

    #: inference output of the layer for its last forward call (engine array)
    output = None

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

    def bind(self, engine, mini_batch_size, need_dx, grads=None):
        """Size the workspaces for ``engine`` at ``mini_batch_size``;
        ``grads``: the (gw, gb) engine arrays to use, or None for new ones."""
        self.engine = engine
        self.mbs = mini_batch_size
        self.need_dx = need_dx
        dtype = self.w.dtype
        e = engine
        if grads is None:
            grads = (e.empty(self.w.shape, dtype), e.empty(self.b.shape, dtype))
        self.gw, self.gb = grads
        self.dx = e.empty((mini_batch_size,) + self.in_shape, dtype) if need_dx else None
        self._alloc(e, mini_batch_size, dtype)
        self.attach_params(self.w.value, self.b.value)

    def attach_params(self, w, b):
        """The engine arrays holding w and b (the Shared arrays on the host)."""
        self.w_e, self.b_e = w, b

    def update(self, eta, l2):
        """One SGD step on w (with L2) and b (without)."""
        sgd_step(self.engine, self.w_e, self.gw, self.b_e, self.gb, eta, l2)

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
        self.p_dropout = 0.0
        # network3 divides with Python 2 integers: floor (conformance case g)
        n_out = (F * KH * KW) // (ph * pw)
        if n_out < 1:
            raise ValueError(
                "ConvPoolLayer: filters*fh*fw // (ph*pw) = %d; network3's "
                "initialisation needs it >= 1" % n_out)
        dtype = floatx_dtype()
        w = np.asarray(np.random.normal(loc=0, scale=np.sqrt(1.0 / n_out),
                                        size=self.filter_shape), dtype=dtype)
        b = np.asarray(np.random.normal(loc=0, scale=1.0, size=(F,)), dtype=dtype)
        self._make_params(w, b)

    def describe(self):
        return {"type": "ConvPoolLayer", "filter_shape": list(self.filter_shape),
                "image_shape": list(self.image_shape), "poolsize": list(self.poolsize),
                "activation_fn": self.activation_fn.name}

    def __repr__(self):
        return ("ConvPoolLayer(filter_shape=%s, image_shape=%s, poolsize=%s, "
                "activation_fn=%s)" % (self.filter_shape, self.image_shape,
                                       self.poolsize, self.activation_fn.name))

    def _alloc(self, e, N, dtype):
        self.conv_out = e.empty((N,) + self.conv_shape, dtype)
        self.dconv = e.empty((N,) + self.conv_shape, dtype)
        self.out = e.empty((N,) + self.out_shape, dtype)

    def forward(self, x, train):
        """x: (N, C*H*W) or (N, C, H, W) engine array; returns (N, F, PH, PW)."""
        e = self.engine
        self.x = x.reshape((self.mbs,) + self.in_shape)
        e.conv_forward(self.x, self.w_e, self.conv_out)
        e.pool_forward(self.conv_out, self.b_e, self.activation_fn.code,
                       self.poolsize, self.out)
        self.output = self.out
        return self.out

    def backward(self, dout):
        """dout: (N, F, PH, PW) (overwritten); returns dx or None."""
        e = self.engine
        dout = dout.reshape((self.mbs,) + self.out_shape)
        e.pool_backward(self.conv_out, self.out, dout, self.activation_fn.code,
                        self.poolsize, self.dconv, self.gb)
        e.conv_backward(self.x, self.w_e, self.dconv, self.gw, self.dx)
        return self.dx


class _DenseBase(Layer):
    """FullyConnectedLayer and SoftmaxLayer: x @ w + b, dropout on the input."""

    def _init_dense(self, n_in, n_out, p_dropout, where):
        self.n_in = _positive_int(n_in, "n_in", where)
        self.n_out = _positive_int(n_out, "n_out", where)
        self.p_dropout = _dropout_p(p_dropout, where)
        self.in_shape = (self.n_in,)
        self.out_shape = (self.n_out,)
        self.dropout_seed = 0

    def _alloc_dropout(self, e, N, dtype):
        if self.p_dropout > 0.0:
            self.mask = e.empty((N, self.n_in), np.uint8)
            self.x_drop = e.empty((N, self.n_in), dtype)
            self.dx_drop = e.empty((N, self.n_in), dtype) if self.need_dx else None

    def _input(self, x, train, counter):
        """The input the dense product sees: dropped out while training."""
        x = x.reshape((self.mbs, self.n_in))
        self.x_in = x
        if train and self.p_dropout > 0.0:
            self.engine.dropout_forward(x, self.p_dropout, self.dropout_seed,
                                        counter, self.mask, self.x_drop)
            self.x_in = self.x_drop
        return self.x_in

    def _scale(self, train):
        # network3: (1 - p) * x.w + b at inference, x_dropped.w + b in training
        return 1.0 if train else 1.0 - self.p_dropout

    def _backward_dense(self, out, dz, act):
        e = self.engine
        if self.need_dx and self.p_dropout > 0.0:
            e.dense_backward(self.x_in, self.w_e, out, dz, act, self.gw, self.gb,
                             self.dx_drop)
            e.dropout_backward(self.dx_drop, self.mask, self.dx)
        else:
            e.dense_backward(self.x_in, self.w_e, out, dz, act, self.gw, self.gb,
                             self.dx)
        return self.dx


class FullyConnectedLayer(_DenseBase):
    """A fully connected layer: activation_fn((1 - p) x.w + b) at inference.

    ``n_in`` inputs, ``n_out`` neurons; while training the layer multiplies its
    own input by a Bernoulli(1 - p_dropout) mask instead of scaling.
    """

    def __init__(self, n_in, n_out, activation_fn=activations.sigmoid, p_dropout=0.0):
        where = "FullyConnectedLayer"
        self._init_dense(n_in, n_out, p_dropout, where)
        self.activation_fn = activations.resolve(activation_fn, where)
        dtype = floatx_dtype()
        w = np.asarray(np.random.normal(loc=0.0, scale=np.sqrt(1.0 / self.n_out),
                                        size=(self.n_in, self.n_out)), dtype=dtype)
        b = np.asarray(np.random.normal(loc=0.0, scale=1.0, size=(self.n_out,)),
                       dtype=dtype)
        self._make_params(w, b)

    def describe(self):
        return {"type": "FullyConnectedLayer", "n_in": self.n_in, "n_out": self.n_out,
                "activation_fn": self.activation_fn.name, "p_dropout": self.p_dropout}

    def __repr__(self):
        return ("FullyConnectedLayer(n_in=%d, n_out=%d, activation_fn=%s, p_dropout=%r)"
                % (self.n_in, self.n_out, self.activation_fn.name, self.p_dropout))

    def _alloc(self, e, N, dtype):
        self.out = e.empty((N, self.n_out), dtype)
        self._alloc_dropout(e, N, dtype)

    def forward(self, x, train, counter=0):
        xin = self._input(x, train, counter)
        self.engine.dense_forward(xin, self.w_e, self.b_e, self.activation_fn.code,
                                  self._scale(train), self.out)
        self.output = self.out
        return self.out

    def backward(self, dout):
        return self._backward_dense(self.out, dout.reshape((self.mbs, self.n_out)),
                                    self.activation_fn.code)


class SoftmaxLayer(_DenseBase):
    """The output layer: softmax((1 - p) x.w + b), log-likelihood cost.

    Its weights and biases start at zero, as in network3.
    """

    activation_fn = None

    def __init__(self, n_in, n_out, p_dropout=0.0):
        where = "SoftmaxLayer"
        self._init_dense(n_in, n_out, p_dropout, where)
        dtype = floatx_dtype()
        self._make_params(np.zeros((self.n_in, self.n_out), dtype=dtype),
                          np.zeros((self.n_out,), dtype=dtype))

    def describe(self):
        return {"type": "SoftmaxLayer", "n_in": self.n_in, "n_out": self.n_out,
                "p_dropout": self.p_dropout}

    def __repr__(self):
        return "SoftmaxLayer(n_in=%d, n_out=%d, p_dropout=%r)" % (
            self.n_in, self.n_out, self.p_dropout)

    def _alloc(self, e, N, dtype):
        self.logits = e.empty((N, self.n_out), dtype)
        self.probs = e.empty((N, self.n_out), dtype)
        self.dlogits = e.empty((N, self.n_out), dtype)
        self.yout = e.empty((N,), np.int32)
        self._alloc_dropout(e, N, dtype)

    def forward(self, x, train, counter=0):
        """Logits (training) or probabilities (inference) of the batch."""
        e = self.engine
        xin = self._input(x, train, counter)
        e.dense_forward(xin, self.w_e, self.b_e, LINEAR, self._scale(train), self.logits)
        if train:
            return self.logits
        e.softmax_forward(self.logits, self.probs)
        self.output = self.probs
        return self.probs

    def cost(self, y):
        """Mean NLL of labels y after a training forward; fills dlogits."""
        return self.engine.softmax_nll(self.logits, y, self.probs, self.dlogits)

    def predict(self):
        """network3's y_out for the last inference forward."""
        self.engine.softmax_argmax(self.probs, self.yout)
        return self.yout

    def backward(self, dout=None):
        return self._backward_dense(self.logits, self.dlogits, LINEAR)


LAYER_TYPES = {"ConvPoolLayer": ConvPoolLayer,
               "FullyConnectedLayer": FullyConnectedLayer,
               "SoftmaxLayer": SoftmaxLayer}
