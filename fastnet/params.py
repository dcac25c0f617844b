"""Shared: an array with Theano's shared-variable manners.

network3's readers call ``layer.w.get_value()``, ``layer.w.set_value(a)``,
``layer.w.eval()`` and ``training_data[0].get_value(borrow=True)``.  A
``Shared`` keeps one array for its whole life: ``set_value`` copies into it,
so the kernels and compiled trainers that hold its buffer never see it move.
"""

import numpy as np


class Shared(object):
    """A named array with ``get_value`` / ``set_value`` / ``eval``."""

    def __init__(self, value, name=None):
        self._value = np.ascontiguousarray(value)
        self.name = name

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


def sgd_step(engine, w, gw, b, gb, eta, l2):
    """network3's update: the weights with the L2 term, the biases without."""
    engine.sgd_update(w, gw, eta, l2)
    engine.sgd_update(b, gb, eta, 0.0)


def _views(flat, shapes):
    out, at = [], 0
    for shape in shapes:
        n = int(np.prod(shape))
        out.append(flat[at:at + n].reshape(shape))
        at += n
    return out


class FlatParams(object):
    """Every layer's weights in one flat engine array and its biases in
    another, the gradients likewise; the layers hold views of them.

    For engines that keep parameters on a device, where each engine call is a
    kernel launch: an SGD step is then 2 launches whatever the number of
    layers (element by element the same update as layer by layer).
    """

    def __init__(self, engine, layers, dtype):
        self.engine = engine
        self.layers = list(layers)
        self.w_shapes = [l.w.shape for l in self.layers]
        self.b_shapes = [l.b.shape for l in self.layers]
        n_w = sum(int(np.prod(s)) for s in self.w_shapes)
        n_b = sum(int(np.prod(s)) for s in self.b_shapes)
        self.gw = engine.empty((n_w,), dtype)
        self.gb = engine.empty((n_b,), dtype)
        self.w = self.b = None

    def grad_views(self):
        """[(gw, gb)] per layer: views of the flat gradients."""
        return list(zip(_views(self.gw, self.w_shapes), _views(self.gb, self.b_shapes)))

    def upload(self):
        """Copy the layers' host parameters into new flat engine arrays and
        attach each layer to its views."""
        e = self.engine
        self.w = e.to_device(np.concatenate([l.w.value.ravel() for l in self.layers]))
        self.b = e.to_device(np.concatenate([l.b.value.ravel() for l in self.layers]))
        for layer, w, b in zip(self.layers, _views(self.w, self.w_shapes),
                               _views(self.b, self.b_shapes)):
            layer.attach_params(w, b)

    def update(self, eta, l2):
        sgd_step(self.engine, self.w, self.gw, self.b, self.gb, eta, l2)
