"""Datasets bundled with fastnet.

``mnist_sample()`` gives the 10,000 real MNIST test digits shipped in
``fastnet/_data/`` (MNIST by LeCun, Cortes and Burges, CC BY-SA 3.0), shuffled
once with a fixed seed and split 8,000 / 1,000 / 1,000 -- the recipe of the
project's conformance files, bit for bit::

    x = uint8 pixels as float32 / 255.0          # (10000, 784)
    y = labels as int64
    p = np.random.RandomState(2026).permutation(10000)
    x, y = x[p], y[p]
    train = rows 0-7999, validation = 8000-8999, test = 9000-9999

NumPy's global random state is not touched.
"""

import os
import threading

import numpy as np

from . import data as _data
from .config import floatx_dtype

__all__ = ["mnist_sample", "SAMPLE_FILES", "SAMPLE_SEED", "SAMPLE_SPLIT"]

#: The bundled files, in ``fastnet/_data/``.
SAMPLE_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
#: The seed of the fixed shuffle.
SAMPLE_SEED = 2026
#: Rows of training, validation and test data, in that order.
SAMPLE_SPLIT = (8000, 1000, 1000)

_lock = threading.Lock()
_cache = None       # (x float32 (10000, 784), y int64 (10000,)), read-only, shuffled


def _resource_bytes(name):
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_data", name)
    if os.path.isfile(here):
        with open(here, "rb") as f:
            return f.read(), here
    try:    # an install that is not a plain directory (a zip, say)
        from importlib.resources import files
        res = files(__package__).joinpath("_data").joinpath(name)
        return res.read_bytes(), str(res)
    except (ImportError, OSError, TypeError, ValueError):
        raise FileNotFoundError(
            "fastnet's bundled MNIST sample %s is missing from %s; reinstall "
            "fastnet (the file is package data)" % (name, os.path.dirname(here)))


def _load_idx_resource(name):
    raw, where = _resource_bytes(name)
    if raw[:2] == _data._GZIP_MAGIC:
        import gzip
        try:
            raw = gzip.decompress(raw)
        except Exception as exc:
            raise _data._annotated(exc, where, "cannot gunzip") from exc
    return _data._parse_idx(raw, where)


def _decoded():
    """The shuffled sample, decoded once per process."""
    global _cache
    with _lock:
        if _cache is None:
            images = _load_idx_resource(SAMPLE_FILES[0])
            labels = _load_idx_resource(SAMPLE_FILES[1])
            n = sum(SAMPLE_SPLIT)
            if images.shape != (n, 28, 28) or images.dtype != np.uint8 \
                    or labels.shape != (n,) or labels.dtype != np.uint8:
                raise ValueError(
                    "fastnet's bundled MNIST sample is damaged: images %s %s, "
                    "labels %s %s" % (images.shape, images.dtype,
                                      labels.shape, labels.dtype))
            x = images.reshape(n, 784).astype(np.float32) / np.float32(255.0)
            y = labels.astype(np.int64)
            p = np.random.RandomState(SAMPLE_SEED).permutation(n)
            x, y = x[p], y[p]
            x.flags.writeable = False
            y.flags.writeable = False
            _cache = (x, y)
        return _cache


def mnist_sample(shared=False):
    """10,000 real MNIST digits: ``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))``.

    8,000 / 1,000 / 1,000 rows; ``x`` float32 in [0, 1] of shape (n, 784),
    ``y`` int64 labels 0-9.  Every call returns fresh copies (the decoded
    arrays are cached in-process).

    ``shared=True`` returns what ``load_data_shared`` returns instead: a list
    of three ``(Shared x of floatX, Shared y of int32)`` pairs, ready for
    ``Network.SGD``.
    """
    x, y = _decoded()
    bounds = np.cumsum((0,) + SAMPLE_SPLIT)
    parts = [(x[a:b].copy(), y[a:b].copy()) for a, b in zip(bounds[:-1], bounds[1:])]
    if shared:
        fx = floatx_dtype()
        return [_data._shared_pair(px, py, fx, name)
                for (px, py), name in zip(parts, _data._SHARED_NAMES)]
    return tuple(parts)
