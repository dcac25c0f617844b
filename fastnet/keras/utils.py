"""keras.utils: ``to_categorical`` and ``set_random_seed``.

fastnet.keras draws its initial weights and its per-epoch shuffles from one
NumPy generator, ``rng()``; ``set_random_seed(s)`` reseeds it (and, as Keras
does, Python's ``random`` and NumPy's global generator).
"""

import random

import numpy as np

__all__ = ["to_categorical", "set_random_seed"]

_generator = [np.random.default_rng()]


def rng():
    """The generator of fastnet.keras's initialisers and shuffles."""
    return _generator[0]


def set_random_seed(seed):
    """Seed fastnet.keras's generator, Python's ``random`` and NumPy's global one."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError("set_random_seed: seed must be a non-negative integer, got %r"
                         % (seed,))
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    _generator[0] = np.random.default_rng(seed)


def to_categorical(x, num_classes=None):
    """One-hot rows (float32) of the integer class vector ``x``, as Keras's."""
    y = np.asarray(x)
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
        raise ValueError("to_categorical: x must hold integer class labels, got dtype %s"
                         % y.dtype)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError("to_categorical: labels must be >= 0, got %d" % y.min())
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    elif y.size and y.max() >= num_classes:
        raise ValueError("to_categorical: label %d is not below num_classes=%d"
                         % (y.max(), num_classes))
    out = np.zeros(y.shape + (int(num_classes),), dtype=np.float32)
    np.put_along_axis(out, y[..., None], 1.0, axis=-1)
    return out
