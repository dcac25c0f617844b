"""keras.config's floatx, shared with fastnet's floatX (fastnet.set_floatx)."""

from .. import config as _config

__all__ = ["floatx", "set_floatx"]


def floatx():
    """The float type of models built from now on: 'float32' (default) or 'float64'."""
    return _config.get_floatx()


def set_floatx(value):
    """Set the float type ('float32' or 'float64') of models built from now on
    (the same setting as ``fastnet.set_floatx``)."""
    _config.set_floatx(value)
