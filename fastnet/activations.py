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


_SUPPORTED = ("fastnet's sigmoid, tanh, ReLU and linear (or their names as strings), "
              "numpy.tanh, math.tanh, scipy.special.expit (sigmoid), and Theano's or "
              "PyTensor's sigmoid, tanh and relu")


def _same_function():
    """(function, Activation) pairs of other libraries' functions that
    compute exactly one of ours, element by element; matched by identity."""
    import math
    import sys
    pairs = [(np.tanh, tanh), (math.tanh, tanh)]
    special = sys.modules.get("scipy.special")     # a user holding expit has imported it
    if special is not None and hasattr(special, "expit"):
        pairs.append((special.expit, sigmoid))
    return pairs


def _from_theano(fn):
    """network3's own activations came from Theano (``theano.tensor.nnet.sigmoid``,
    ``T.tanh``; PyTensor is its successor): such an object stands for the
    activation of its name.  Only objects defined in those libraries qualify,
    so a user's own function called ``ReLU`` is never mistaken for ours."""
    modules = (getattr(type(fn), "__module__", None), getattr(fn, "__module__", None))
    if not any(isinstance(m, str) and m.split(".")[0] in ("theano", "pytensor")
               for m in modules):
        return None
    for name in (getattr(fn, "__name__", None), getattr(fn, "name", None)):
        if isinstance(name, str) and name in _BY_NAME:
            return _BY_NAME[name]
    return None


def resolve(fn, where):
    """The Activation for ``fn``, else ValueError.

    Accepted: fastnet's Activation objects (``fastnet.sigmoid``, ``tanh``,
    ``ReLU``, ``linear``, which network3's names are); their names as strings
    ('sigmoid', 'tanh', 'ReLU' or 'relu', 'linear'); ``numpy.tanh``,
    ``math.tanh`` and ``scipy.special.expit`` (sigmoid), matched by identity;
    and objects from Theano or PyTensor (``type(fn).__module__`` or
    ``fn.__module__`` under 'theano' or 'pytensor') by their name, as network3
    passed ``theano.tensor.nnet.sigmoid`` and ``T.tanh``.  Any other callable
    is refused even if it shares a name with one of ours: fastnet runs its
    activations inside compiled kernels and cannot run a Python function there.
    """
    if isinstance(fn, Activation):
        return fn
    if isinstance(fn, str):
        try:
            return by_name(fn)
        except ValueError:
            raise ValueError("%s: unknown activation_fn %r; fastnet supports %s"
                             % (where, fn, _SUPPORTED)) from None
    for other, ours in _same_function():
        if fn is other:
            return ours
    found = _from_theano(fn)
    if found is not None:
        return found
    raise ValueError("%s: unknown activation_fn %r; fastnet supports %s. fastnet runs "
                     "activations in its compiled kernels and cannot run an arbitrary "
                     "Python activation function (one merely named like ours is not ours)"
                     % (where, fn, _SUPPORTED))
