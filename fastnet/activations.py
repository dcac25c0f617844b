"""network3's activation functions: sigmoid, tanh, ReLU, linear.

Each is a callable on NumPy arrays (so ``ReLU(z)`` works as in the book) and
carries the integer ``code`` the kernels switch on.  Derivatives are taken from
the activation's *output* (that is all a backward pass keeps):
    sigmoid' = a (1 - a),  tanh' = 1 - a^2,  ReLU' = [a > 0],  linear' = 1.
ReLU' at exactly 0 is 0, as PyTensor gives it (conformance README, note 9).
"""

import numpy as np

SIGMOID, TANH, RELU, LINEAR = 0, 1, 2, 3


class Activation(object):
    """A named activation function with the code the kernels use."""

    def __init__(self, name, code, fn):
        self.__name__ = name
        self.name = name
        self.code = code
        self._fn = fn

    def __call__(self, z):
        return self._fn(np.asarray(z))

    def __repr__(self):
        return self.name

    def __reduce__(self):
        # pickles by name, so a pickled layer never carries code
        return (by_name, (self.name,))


def _sigmoid(z):
    # 1 / (1 + exp(-z)) without overflow warnings for large |z|
    out = np.empty_like(z, dtype=np.result_type(z, np.float32))
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


sigmoid = Activation("sigmoid", SIGMOID, _sigmoid)
tanh = Activation("tanh", TANH, np.tanh)
ReLU = Activation("ReLU", RELU, lambda z: np.maximum(z, 0.0).astype(z.dtype, copy=False))
linear = Activation("linear", LINEAR, lambda z: z)

#: the table: every activation the engines know, with its kernel code
ALL = (sigmoid, tanh, ReLU, linear)

_BY_NAME = {a.name: a for a in ALL}
_BY_NAME["relu"] = ReLU


def by_name(name):
    """The activation called ``name`` ('sigmoid', 'tanh', 'ReLU', 'linear')."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError("unknown activation %r; expected one of sigmoid, tanh, "
                         "ReLU, linear" % (name,))


def resolve(fn, where):
    """The Activation for ``fn`` (an Activation or its name), else ValueError."""
    if isinstance(fn, Activation):
        return fn
    if isinstance(fn, str):
        try:
            return by_name(fn)
        except ValueError:
            raise ValueError("%s: unknown activation_fn %r; fastnet supports sigmoid, "
                             "tanh, ReLU and linear" % (where, fn))
    name = getattr(fn, "__name__", None)
    # network3's Theano functions share these names (theano.tensor.nnet.sigmoid...)
    if name in _BY_NAME:
        return _BY_NAME[name]
    raise ValueError("%s: unknown activation_fn %r; fastnet supports sigmoid, tanh, "
                     "ReLU and linear" % (where, fn))
