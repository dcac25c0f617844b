"""The chapter's expanded training set: every training image and its four
one-pixel shifts (up, down, left, right; the vacated row or column filled
with zeros), 250,000 rows from the book's 50,000, shuffled with a seed --
what the author's expand_mnist.py writes, in the format network3 reads
(a gzip'd pickle of ((x, y), (vx, vy), (sx, sy)); validation and test data
unchanged).  ``python -m fastnet expand IN OUT``.
"""

import gzip
import os
import pickle
import sys

import numpy as np

# (rows, columns) each shift moves the image by, after the image itself
SHIFTS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def shifted(images, dy, dx, side=28):
    """``images`` (n, side*side) moved by dy rows and dx columns, zeros
    where nothing moved in."""
    img = images.reshape(-1, side, side)
    out = np.zeros_like(img)
    ys = slice(max(dy, 0), side + min(dy, 0))
    yt = slice(max(-dy, 0), side + min(-dy, 0))
    xs = slice(max(dx, 0), side + min(dx, 0))
    xt = slice(max(-dx, 0), side + min(-dx, 0))
    out[:, ys, xs] = img[:, yt, xt]
    return out.reshape(images.shape)


def expand(x, y, seed=0, side=28, shuffle=True, chunk=10000, report=None):
    """x (n, side*side), y (n,) -> (5n rows: each image then its four
    shifts, in SHIFTS order), shuffled by ``np.random.default_rng(seed)``
    unless ``shuffle`` is False.  Computed ``chunk`` images at a time;
    ``report(done, total)`` is called after each chunk."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[1] != side * side or y.shape != (x.shape[0],):
        raise ValueError("expand: x must be (n, %d) images and y (n,) labels, got %s and %s"
                         % (side * side, x.shape, y.shape))
    n = x.shape[0]
    k = 1 + len(SHIFTS)
    out_x = np.empty((n * k, x.shape[1]), dtype=x.dtype)
    out_y = np.repeat(y, k)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        block = out_x[a * k:b * k].reshape(b - a, k, x.shape[1])
        block[:, 0] = x[a:b]
        for j, (dy, dx) in enumerate(SHIFTS):
            block[:, j + 1] = shifted(x[a:b], dy, dx, side)
        if report is not None:
            report(b, n)
    if shuffle:
        order = np.random.default_rng(seed).permutation(n * k)
        out_x, out_y = out_x[order], out_y[order]
    return out_x, out_y


def expand_file(src, dst, seed=0, shuffle=True, report=None):
    """Read ``src`` (any file ``fastnet.load_data`` reads; untrusted: never
    unpickled outside the restricted reader), write the expanded set to
    ``dst`` (.pkl.gz) atomically.  Returns the number of training rows."""
    from .data import load_data
    (tx, ty), valid, test = load_data(src)
    ex, ey = expand(tx, ty, seed=seed, shuffle=shuffle, report=report)
    from .persist import write_atomic

    def write(raw):
        with gzip.GzipFile(fileobj=raw, mode="wb") as f:
            pickle.dump(((ex, ey), tuple(valid), tuple(test)), f, protocol=2)
    write_atomic(os.fspath(dst), write)
    return ex.shape[0]


def main(argv, prog="fastnet expand"):
    import argparse
    parser = argparse.ArgumentParser(
        prog=prog, description="Write the chapter's expanded MNIST: each training image and "
        "its four one-pixel shifts, shuffled, in the format network3 reads.")
    parser.add_argument("input", help="the book's mnist.pkl.gz (or any file load_data reads)")
    parser.add_argument("output", help="the expanded file to write, e.g. mnist_expanded.pkl.gz")
    parser.add_argument("--seed", type=int, default=0, help="the shuffle's seed (default 0)")
    parser.add_argument("--no-shuffle", action="store_true",
                        help="keep each image beside its shifts")
    args = parser.parse_args(argv)
    if not os.path.exists(args.input):
        raise FileNotFoundError("%s: no such file" % args.input)

    def report(done, total):
        sys.stderr.write("\r  expanded %d / %d training images" % (done, total))
        if done == total:
            sys.stderr.write("\n")
    rows = expand_file(args.input, args.output, seed=args.seed,
                       shuffle=not args.no_shuffle, report=report)
    print("wrote %s: %d training rows (validation and test data unchanged)"
          % (args.output, rows))
    return 0
