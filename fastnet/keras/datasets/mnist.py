"""keras.datasets.mnist, offline.

``load_data()`` returns ``(x_train, y_train), (x_test, y_test)``: uint8 images
(n, 28, 28) and uint8 labels, as Keras's.  It reads a Keras user's cached
``~/.keras/datasets/mnist.npz`` (``$KERAS_HOME/datasets`` when KERAS_HOME is
set) when present -- the full 60,000 / 10,000 -- and otherwise the 10,000
real MNIST digits bundled with fastnet, shuffled by fastnet.datasets' fixed
recipe and split 8,000 / 2,000.  Either way it says which, on stderr.
The .npz is read as plain arrays (no pickle).
"""

import os
import sys

import numpy as np

__all__ = ["load_data", "BUNDLED_SPLIT"]

#: rows of (train, test) from the bundled digits
BUNDLED_SPLIT = (8000, 2000)


def _cache_path(path):
    if os.path.isabs(path):
        return path
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets", path)


def _read_npz(where):
    try:
        with np.load(where, allow_pickle=False) as z:
            parts = [z[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    except KeyError as exc:
        raise ValueError("mnist.load_data: %s lacks the array %s (x_train, y_train, x_test, "
                         "y_test expected)" % (where, exc))
    except Exception as exc:
        raise ValueError("mnist.load_data: cannot read %s as Keras's mnist.npz: %s"
                         % (where, exc))
    xtr, ytr, xte, yte = parts
    for name, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28) \
                or y.shape != (x.shape[0],) or y.dtype.kind not in "iu":
            raise ValueError("mnist.load_data: %s holds %s images %s %s and labels %s %s; "
                             "expected uint8 (n, 28, 28) and n integer labels"
                             % (where, name, x.dtype, x.shape, y.dtype, y.shape))
        if y.size and (y.min() < 0 or y.max() > 9):
            raise ValueError("mnist.load_data: %s has %s labels outside 0-9" % (where, name))
    return (xtr, ytr.astype(np.uint8)), (xte, yte.astype(np.uint8))


def _bundled():
    from ... import datasets as fd
    images = fd._load_idx_resource(fd.SAMPLE_FILES[0])
    labels = fd._load_idx_resource(fd.SAMPLE_FILES[1])
    p = np.random.RandomState(fd.SAMPLE_SEED).permutation(images.shape[0])
    images, labels = images[p], labels[p]
    n = BUNDLED_SPLIT[0]
    return (images[:n].copy(), labels[:n].copy()), (images[n:].copy(), labels[n:].copy())


def load_data(path="mnist.npz"):
    """``(x_train, y_train), (x_test, y_test)``: Keras's cached file when
    present, else fastnet's bundled digits (8,000 / 2,000); see the module."""
    where = _cache_path(path)
    if os.path.isfile(where):
        data = _read_npz(where)
        sys.stderr.write("fastnet.keras.datasets.mnist: using Keras's cached MNIST %s "
                         "(%d training / %d test images)\n"
                         % (where, data[0][0].shape[0], data[1][0].shape[0]))
        return data
    data = _bundled()
    sys.stderr.write(
        "fastnet.keras.datasets.mnist: NOTE: %s not found (offline); using the 10,000 "
        "real MNIST digits bundled with fastnet instead of Keras's 60,000 / 10,000: "
        "%d training / %d test images\n" % (where, data[0][0].shape[0], data[1][0].shape[0]))
    return data
