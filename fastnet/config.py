"""floatX: the float type of parameters, data and kernels.

network3 sets Theano's floatX to float32 (its listing ships with GPU = True,
which does so even on a CPU), so float32 is the default.  float64 is chosen
the way a Theano user would: ``fastnet.set_floatx("float64")`` before the
layers are built, or ``FASTNET_FLOATX=float64`` in the environment.
"""

import os

import numpy as np

_ALLOWED = ("float32", "float64")


def _checked(name, where):
    name = str(name)
    if name not in _ALLOWED:
        raise ValueError("%s: floatX must be 'float32' or 'float64', got %r"
                         % (where, name))
    return name


_floatx = _checked(os.environ.get("FASTNET_FLOATX", "float32"),
                   "FASTNET_FLOATX")


def set_floatx(name):
    """Set floatX ('float32' or 'float64') for layers built from now on."""
    global _floatx
    _floatx = _checked(name, "set_floatx")


def get_floatx():
    """The current floatX, as a string."""
    return _floatx


def floatx_dtype():
    """The current floatX, as a NumPy dtype."""
    return np.dtype(_floatx)
