"""Checks on the data a user hands to SGD and the inference calls.

Everything is checked before any kernel runs, so a mistake surfaces as a
ValueError that names the argument, the row or index, and the numbers --
never as a crash, a hang or a silent NaN deep inside training.
"""

import numpy as np


def _unwrap(a):
    """The array behind a network3-style shared variable, or ``a`` itself."""
    if hasattr(a, "get_value"):
        return a.get_value(borrow=True)
    if hasattr(a, "eval") and not isinstance(a, np.ndarray):
        return a.eval()
    return a


def _array(a, name, what):
    try:
        return np.asarray(_unwrap(a))
    except (ValueError, TypeError) as exc:     # ragged lists and the like
        raise ValueError("%s: %s cannot be made into one array (%s)"
                         % (name, what, exc)) from None


def first_nonfinite_row(a, block_rows=256):
    """The index of the first row of the 2-D float array ``a`` holding a NaN
    or an Inf, or None.  One sum per block of rows (NaN and Inf carry
    through a sum), so no temporary the size of ``a``: SGD checks its whole
    training set on every call, and that pass is memory-bound.  A block
    whose sum is not finite is then looked at element by element (a sum of
    finite values can overflow)."""
    for r0 in range(0, a.shape[0], block_rows):
        block = a[r0:r0 + block_rows]
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.add.reduce(block, axis=None)
        if not np.isfinite(total):
            finite = np.isfinite(block).all(axis=1)
            if not finite.all():
                return r0 + int(np.argmin(finite))
    return None


def as_x(x, name, n_in, dtype):
    """x as a C-contiguous (n, n_in) array of ``dtype``, checked finite
    after the conversion (a float64 1e39 is Inf in float32)."""
    x = _array(x, name, "x")
    if x.dtype.kind not in "fiub":
        raise ValueError("%s: x must hold numbers, got dtype %s" % (name, x.dtype))
    if x.ndim == 1 and x.shape[0] == n_in:
        x = x.reshape(1, n_in)
    if x.ndim >= 2 and x.ndim != 2 and int(np.prod(x.shape[1:])) == n_in:
        x = x.reshape(x.shape[0], n_in)
    if x.ndim != 2:
        raise ValueError("%s: x must be 2-D (rows, %d), got shape %s"
                         % (name, n_in, x.shape))
    if x.shape[1] != n_in:
        raise ValueError("%s: x has %d columns but the first layer takes %d inputs"
                         % (name, x.shape[1], n_in))
    with np.errstate(over="ignore", invalid="ignore"):
        # aligned too: arrays from a buffer (Dask, mmap) may not be
        x = np.require(x, dtype=dtype, requirements="CA")
    row = first_nonfinite_row(x)
    if row is not None:
        raise ValueError("%s: x row %d holds NaN or Inf (as %s)"
                         % (name, row, np.dtype(dtype).name))
    return x


def as_labels(y, name, n_rows, n_classes):
    """y as a C-contiguous int32 vector of labels in [0, n_classes)."""
    y = _array(y, name, "y")
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise ValueError("%s: y must be 1-D labels, got shape %s" % (name, y.shape))
    if y.shape[0] != n_rows:
        raise ValueError("%s: x has %d rows but y has %d labels"
                         % (name, n_rows, y.shape[0]))
    if y.dtype.kind == "f":
        # network3 keeps labels as floatX and casts them to int32
        bad = ~np.isfinite(y) | (y != np.floor(y))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError("%s: label %d is %r, not an integer" % (name, i, y[i]))
    elif y.dtype.kind not in "iub":
        raise ValueError("%s: y must hold integer labels, got dtype %s" % (name, y.dtype))
    if y.shape[0]:
        bad = (y < 0) | (y >= n_classes)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError("%s: label %d is %r, outside [0, %d) (the softmax layer "
                             "has %d outputs)" % (name, i, y[i].item(), n_classes, n_classes))
    return np.ascontiguousarray(y, dtype=np.int32)


def as_targets(y, name, n_rows, n_out, dtype):
    """y as C-contiguous float targets (n_rows, n_out) of ``dtype``, finite
    (a vector is taken as one column when n_out is 1)."""
    y = _array(y, name, "y")
    if y.dtype.kind not in "fiub":
        raise ValueError("%s: y must hold numbers, got dtype %s" % (name, y.dtype))
    if y.ndim == 1 and n_out == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != n_out:
        raise ValueError("%s: y must be targets of shape (rows, %d), got shape %s"
                         % (name, n_out, y.shape))
    if y.shape[0] != n_rows:
        raise ValueError("%s: x has %d rows but y has %d" % (name, n_rows, y.shape[0]))
    with np.errstate(over="ignore", invalid="ignore"):
        y = np.ascontiguousarray(y, dtype=dtype)
    row = first_nonfinite_row(y)
    if row is not None:
        raise ValueError("%s: y row %d holds NaN or Inf (as %s)"
                         % (name, row, np.dtype(dtype).name))
    return y


def as_xy(data, name, n_in, n_classes, dtype, targets=None):
    """A checked (x, y) pair from network3's shared pair or NumPy arrays;
    ``targets(y, name, n_rows)`` (the output layer's) checks y, else y must
    be labels in [0, n_classes)."""
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ValueError("%s must be a pair (x, y), got %s"
                         % (name, type(data).__name__))
    x = as_x(x, name, n_in, dtype)
    if targets is not None:
        return x, targets(y, name, x.shape[0])
    y = as_labels(y, name, x.shape[0], n_classes)
    return x, y
