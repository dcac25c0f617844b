"""keras.layers: ``Dense``, ``Dropout`` and ``Input`` / ``InputLayer``.

A Dense layer holds Keras's weights, ``[kernel (n_in, units), bias (units,)]``.
Until its model is compiled they are its own arrays; compiling builds fastnet
layers (FullyConnectedLayer, SoftmaxLayer or DenseOutputLayer) that take them
over, and from then on ``get_weights`` / ``set_weights`` read and write those
layers' parameters (W is (n_in, n_out) in both).

Dropout(rate) before a Dense layer becomes that fastnet layer's p_dropout.
fastnet's dropout is network3's: the mask is applied unscaled while training
and the layer's input is scaled by (1 - rate) at inference, where Keras
scales by 1 / (1 - rate) while training.  The two give the same outputs (in
training and at inference) when fastnet's kernel is Keras's divided by
(1 - rate), which is how get_weights / set_weights translate it, and the
gradients reaching the layers below are Keras's; but the kernel right after
the Dropout is trained on another scale: with SGD it moves (1 - rate)^2 times
as far per step as Keras's would (its bias moves as Keras's).  compile warns
about it.
"""

import numpy as np

from .. import activations as _activations
from . import utils

__all__ = ["Dense", "Dropout", "Input", "InputLayer", "Layer"]

_ACTIVATIONS = {"relu": _activations.ReLU, "sigmoid": _activations.sigmoid,
                "tanh": _activations.tanh, "linear": _activations.linear,
                "softmax": "softmax"}
_INITIALIZERS = ("glorot_uniform", "he_uniform", "lecun_uniform", "zeros", "ones")
_counts = {}


def _auto_name(base):
    k = _counts.get(base, 0)
    _counts[base] = k + 1
    return base if k == 0 else "%s_%d" % (base, k)


def _input_width(shape, where):
    try:
        shape = tuple(shape)
    except TypeError:
        raise ValueError("%s: input_shape must be a tuple such as (784,), got %r"
                         % (where, shape))
    if len(shape) != 1:
        raise NotImplementedError(
            "%s: input_shape %r: fastnet.keras takes flat inputs (n_features,) only; "
            "reshape the data to (n, %s) first" % (where, shape,
                                                  " * ".join(str(s) for s in shape)))
    n = shape[0]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError("%s: input_shape must hold a positive integer, got %r" % (where, shape))
    return int(n)


def _check_kwargs(where, kwargs, defaults):
    """Keras arguments fastnet lacks: accepted at their default only."""
    for key, value in kwargs.items():
        if key not in defaults:
            raise ValueError("%s: unknown argument %r" % (where, key))
        if value != defaults[key]:
            raise NotImplementedError("%s: %s=%r is not supported by fastnet.keras (only %r)"
                                      % (where, key, value, defaults[key]))


def _initial(name, shape, fan_in, fan_out, dtype, where):
    if name == "zeros":
        return np.zeros(shape, dtype)
    if name == "ones":
        return np.ones(shape, dtype)
    scale = {"glorot_uniform": 2.0 / (fan_in + fan_out), "he_uniform": 2.0 / fan_in,
             "lecun_uniform": 1.0 / fan_in}[name]
    limit = np.sqrt(3.0 * scale)          # the variance-scaling uniform bound
    return utils.rng().uniform(-limit, limit, size=shape).astype(dtype)


class Layer(object):
    """What fastnet.keras's layers share: a name."""

    def _set_name(self, name, base):
        self.name = _auto_name(base) if name is None else str(name)


class InputLayer(Layer):
    """The input of a Sequential model: ``InputLayer(shape=(n,))``."""

    def __init__(self, shape=None, batch_size=None, name=None, input_shape=None, **kwargs):
        where = "InputLayer"
        _check_kwargs(where, kwargs, {"dtype": None, "sparse": None, "ragged": None})
        if batch_size is not None:
            raise NotImplementedError("%s: batch_size is not supported" % where)
        shape = shape if shape is not None else input_shape
        if shape is None:
            raise ValueError("%s: give shape=(n_features,)" % where)
        self.width = _input_width(shape, where)
        self._set_name(name, "input_layer")


def Input(shape=None, batch_size=None, name=None, **kwargs):
    """``keras.Input(shape=(n,))`` for ``Sequential([Input((n,)), Dense(...)])``."""
    return InputLayer(shape=shape, batch_size=batch_size, name=name, **kwargs)


class Dropout(Layer):
    """``Dropout(rate)``: drops a ``rate`` fraction of the next Dense layer's
    inputs while training (see the module's docstring for how fastnet's
    dropout relates to Keras's)."""

    def __init__(self, rate, noise_shape=None, seed=None, name=None, **kwargs):
        where = "Dropout"
        _check_kwargs(where, kwargs, {"input_shape": None, "dtype": None})
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) \
                or not 0.0 <= float(rate) < 1.0:
            raise ValueError("%s: rate must be a number in [0, 1), got %r" % (where, rate))
        if noise_shape is not None:
            raise NotImplementedError("%s: noise_shape is not supported" % where)
        self.rate = float(rate)
        self.seed = seed
        self._set_name(name, "dropout")

    def count_params(self):
        return 0


class Dense(Layer):
    """``Dense(units, activation=None, input_shape=None)``: activation(x @ kernel
    + bias).  Activations: 'relu', 'sigmoid', 'tanh', 'linear' (None), and
    'softmax' on the last layer.  Initialisers: glorot_uniform kernel, zero
    bias (also 'he_uniform', 'lecun_uniform', 'zeros', 'ones'), drawn from
    fastnet.keras.utils's seedable generator."""

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 input_shape=None, input_dim=None, name=None, **kwargs):
        where = "Dense"
        _check_kwargs(where, kwargs, {
            "kernel_regularizer": None, "bias_regularizer": None,
            "activity_regularizer": None, "kernel_constraint": None,
            "bias_constraint": None, "lora_rank": None, "dtype": None, "trainable": True})
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError("%s: units must be a positive integer, got %r" % (where, units))
        self.units = int(units)
        act = "linear" if activation is None else activation
        if isinstance(act, str):
            if act not in _ACTIVATIONS:
                raise NotImplementedError(
                    "%s: activation %r is not supported; fastnet.keras supports %s"
                    % (where, act, ", ".join(sorted(_ACTIVATIONS))))
            self.activation = act
        else:
            resolved = _activations.resolve(act, where)       # fastnet's own objects
            self.activation = {v: k for k, v in _ACTIVATIONS.items()}[resolved]
        if not use_bias:
            raise NotImplementedError("%s: use_bias=False is not supported" % where)
        for what, init in (("kernel_initializer", kernel_initializer),
                           ("bias_initializer", bias_initializer)):
            if init not in _INITIALIZERS:
                raise NotImplementedError("%s: %s=%r is not supported; use one of %s"
                                          % (where, what, init, ", ".join(_INITIALIZERS)))
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        if input_shape is None and input_dim is not None:
            input_shape = (input_dim,)
        self.input_width = None if input_shape is None else _input_width(input_shape, where)
        self._set_name(name, "dense")
        self.built = False
        self._kernel = self._bias = None
        self._fastnet = None        # the fastnet layer holding the weights, once compiled
        self._scale = 1.0           # Keras kernel = fastnet w * _scale (dropout before it)

    def build(self, n_in, dtype):
        """Draw the initial weights for ``n_in`` inputs in ``dtype``."""
        self.input_width = int(n_in)
        shape = (self.input_width, self.units)
        self._kernel = _initial(self.kernel_initializer, shape, self.input_width,
                                self.units, dtype, "Dense")
        self._bias = _initial(self.bias_initializer, (self.units,), self.input_width,
                              self.units, dtype, "Dense")
        self.built = True

    @property
    def dtype(self):
        """The weights' dtype (None before the layer is built)."""
        if self._fastnet is not None:
            return self._fastnet.w.dtype
        return None if self._kernel is None else self._kernel.dtype

    def count_params(self):
        if not self.built:
            raise ValueError("Dense %r is not built yet: give input_shape or fit first"
                             % self.name)
        return self.input_width * self.units + self.units

    def _bind(self, fastnet_layer, scale):
        """Hand the weights to ``fastnet_layer`` (built for this layer)."""
        kernel, bias = self.get_weights()
        self._fastnet, self._scale = fastnet_layer, scale
        self._kernel = self._bias = None
        self.set_weights([kernel, bias])

    def get_weights(self):
        """[kernel (n_in, units), bias (units,)] as copies in the model's dtype."""
        if not self.built:
            return []
        if self._fastnet is None:
            return [self._kernel.copy(), self._bias.copy()]
        w = self._fastnet.w.get_value()
        if self._scale != 1.0:
            w = (w * w.dtype.type(self._scale)).astype(w.dtype)
        return [w, self._fastnet.b.get_value()]

    def set_weights(self, weights):
        """Set [kernel (n_in, units), bias (units,)]."""
        if not self.built:
            raise ValueError("Dense %r: set_weights before the layer is built (give "
                             "input_shape)" % self.name)
        weights = list(weights)
        want = [(self.input_width, self.units), (self.units,)]
        if len(weights) != 2:
            raise ValueError("Dense %r: set_weights expects 2 arrays (kernel, bias), got %d"
                             % (self.name, len(weights)))
        dtype = self.get_weights()[0].dtype
        arrays = []
        for what, a, shape in zip(("kernel", "bias"), weights, want):
            a = np.asarray(a)
            if a.shape != shape:
                raise ValueError("Dense %r: %s has shape %s, expected %s"
                                 % (self.name, what, a.shape, shape))
            if not np.all(np.isfinite(a)):
                raise ValueError("Dense %r: %s holds NaN or Inf" % (self.name, what))
            arrays.append(a.astype(dtype))
        if self._fastnet is None:
            self._kernel, self._bias = arrays
        else:
            k = arrays[0]
            if self._scale != 1.0:
                k = (k.astype(np.float64) / self._scale).astype(dtype)
            self._fastnet.w.set_value(k)
            self._fastnet.b.set_value(arrays[1])
