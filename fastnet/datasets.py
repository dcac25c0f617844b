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

Small 2-D problems for looking inside a network (``xor``, ``two_curves``,
``spirals``, ``circles``): each returns ``(x, y)`` with ``x`` of floatX and
shape (n, 2), ``y`` int64 labels 0 / 1, drawn from its own
``np.random.RandomState(seed)`` (NumPy's global state is not touched), with
Gaussian noise of standard deviation ``noise`` added to the coordinates.
Training and held-out points of one problem: the same call with two seeds.
"""

import os
import threading

import numpy as np

from . import data as _data
from .config import floatx_dtype

__all__ = ["mnist_sample", "SAMPLE_FILES", "SAMPLE_SEED", "SAMPLE_SPLIT",
           "xor", "two_curves", "spirals", "circles"]

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


# ----------------------------------------------------------------------
# small 2-D problems
# ----------------------------------------------------------------------
def _count(value, what, where, minimum=1):
    try:
        v = int(value)
    except (TypeError, ValueError):
        v = None
    if v is None or v != value or isinstance(value, bool) or v < minimum:
        raise ValueError("%s: %s must be an integer >= %d, got %r"
                         % (where, what, minimum, value))
    return v


def _nonnegative(value, what, where):
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not np.isfinite(v) or v < 0:
        raise ValueError("%s: %s must be a finite number >= 0, got %r"
                         % (where, what, value))
    return v


def _rng(seed, where):
    try:
        return np.random.RandomState(seed)
    except (TypeError, ValueError) as exc:
        raise ValueError("%s: seed must be an integer in [0, 2**32), got %r (%s)"
                         % (where, seed, exc)) from None


def _finish(points, labels, noise, rng, shuffle=True):
    """Noise added, rows shuffled (classes interleaved), floatX and int64."""
    if noise:
        points = points + rng.normal(0.0, noise, size=points.shape)
    if shuffle:
        order = rng.permutation(points.shape[0])
        points, labels = points[order], labels[order]
    return (np.ascontiguousarray(points, dtype=floatx_dtype()),
            np.ascontiguousarray(labels, dtype=np.int64))


def xor(n_per_corner=1, noise=0.0, seed=0):
    """XOR: the corners of the unit square, label 1 where exactly one
    coordinate is 1.  ``n_per_corner=1, noise=0`` gives the four points
    (0,0)->0, (0,1)->1, (1,0)->1, (1,1)->0 in that order; more points per
    corner (and noise) give clouds around the corners, shuffled."""
    where = "xor"
    n = _count(n_per_corner, "n_per_corner", where)
    noise = _nonnegative(noise, "noise", where)
    rng = _rng(seed, where)
    corners = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    labels = np.array([0, 1, 1, 0])
    points = np.repeat(corners, n, axis=0)
    return _finish(points, np.repeat(labels, n), noise, rng, shuffle=n > 1)


def two_curves(n=200, noise=0.05, seed=0):
    """Two interleaved curves: class 0 on y = 0.6 sin(pi x) and class 1 on
    y = 0.6 sin(pi x) - 0.5, for x in [-1, 1] -- no straight line
    separates them, one bend of the plane does.  ``n`` points per class."""
    where = "two_curves"
    n = _count(n, "n", where)
    noise = _nonnegative(noise, "noise", where)
    rng = _rng(seed, where)
    t = rng.uniform(-1.0, 1.0, size=(2, n))
    upper = np.stack([t[0], 0.6 * np.sin(np.pi * t[0]) + 0.25], axis=1)
    lower = np.stack([t[1], 0.6 * np.sin(np.pi * t[1]) - 0.25], axis=1)
    labels = np.repeat([0, 1], n)
    return _finish(np.concatenate([upper, lower]), labels, noise, rng)


def spirals(n=200, turns=0.75, noise=0.0, seed=0):
    """Two interleaved spirals, ``n`` points per class, in the disc of
    radius 1.  ``turns`` is the tightness: how many times each arm winds
    around the centre (0.75 is easy, 1.5 and more is tight).  Arm k has the
    points r (cos(a + k pi), sin(a + k pi)) with r in [0.1, 1] and
    a = 2 pi turns (r - 0.1) / 0.9."""
    where = "spirals"
    n = _count(n, "n", where)
    turns = _nonnegative(turns, "turns", where)
    noise = _nonnegative(noise, "noise", where)
    rng = _rng(seed, where)
    points = []
    for arm in (0, 1):
        # r ~ sqrt(uniform): points evenly spread along the arm's area
        r = 0.1 + 0.9 * np.sqrt(rng.uniform(0.0, 1.0, size=n))
        angle = 2.0 * np.pi * turns * (r - 0.1) / 0.9 + arm * np.pi
        points.append(np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1))
    labels = np.repeat([0, 1], n)
    return _finish(np.concatenate(points), labels, noise, rng)


def circles(n=200, inner_radius=0.5, noise=0.0, seed=0):
    """Concentric circles: class 0 on the circle of radius 1, class 1 on the
    circle of radius ``inner_radius`` (in (0, 1)); ``n`` points per class."""
    where = "circles"
    n = _count(n, "n", where)
    noise = _nonnegative(noise, "noise", where)
    inner = _nonnegative(inner_radius, "inner_radius", where)
    if not 0.0 < inner < 1.0:
        raise ValueError("circles: inner_radius must be in (0, 1), got %r" % (inner_radius,))
    rng = _rng(seed, where)
    angle = rng.uniform(0.0, 2.0 * np.pi, size=(2, n))
    radius = np.array([[1.0], [inner]])
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1).reshape(2 * n, 2)
    labels = np.repeat([0, 1], n)
    return _finish(points, labels, noise, rng)
