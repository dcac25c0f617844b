"""Shared: an array with Theano's shared-variable manners.

network3's readers call ``layer.w.get_value()``, ``layer.w.set_value(a)``,
``layer.w.eval()`` and ``training_data[0].get_value(borrow=True)``.  A
``Shared``'s array is a view of its Network's flat parameter array (the
Plan's); ``set_value`` copies into it, so the kernels and compiled trainers
that hold the flat array see every change.
"""

import numpy as np


class Shared(object):
    """A named array with ``get_value`` / ``set_value`` / ``eval``."""

    def __init__(self, value, name=None):
        self._value = np.ascontiguousarray(value)
        self.name = name
        # the Plan whose flat arrays _value is a view of (fastnet/plan.py)
        self._owner = None

    # -- Theano's shared-variable surface -----------------------------------
    def get_value(self, borrow=False):
        """The array; a copy unless ``borrow=True``."""
        return self._value if borrow else self._value.copy()

    def set_value(self, value, borrow=False):
        """Copy ``value`` into the array (same shape; cast to its dtype).

        ``borrow`` is accepted for compatibility; the copy always happens so
        that buffers held by the engines stay valid.
        """
        value = np.asarray(value)
        if value.shape != self._value.shape:
            raise ValueError(
                "set_value on %s: expected shape %s, got %s"
                % (self.name or "shared variable", self._value.shape, value.shape))
        if not np.all(np.isfinite(value)) and self._value.dtype.kind == "f":
            raise ValueError(
                "set_value on %s: the array holds NaN or Inf"
                % (self.name or "shared variable"))
        np.copyto(self._value, value, casting="unsafe")

    def eval(self):
        """The array's value, as Theano's ``.eval()`` gives it (a copy)."""
        return self._value.copy()

    # -- conveniences -------------------------------------------------------
    @property
    def shape(self):
        return self._value.shape

    @property
    def dtype(self):
        return self._value.dtype

    @property
    def value(self):
        """The live array the kernels read and write (no copy)."""
        return self._value

    def __array__(self, dtype=None, copy=None):
        if dtype is None:
            return self._value.copy()
        return self._value.astype(dtype)

    def __len__(self):
        return self._value.shape[0]

    def __repr__(self):
        return "Shared(%s, shape=%s, dtype=%s)" % (
            self.name, self._value.shape, self._value.dtype)
