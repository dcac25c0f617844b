"""`fastnet expand IN OUT`: the chapter's expanded training set, equal to a
straightforward NumPy implementation of the one-pixel shifts, readable by
load_data_shared, validation and test data unchanged, shuffled by seed."""

import gzip
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from fastnet import load_data_shared
from fastnet.data import load_data
from fastnet.expand import expand

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _straight(x):
    """Each image, then moved up, down, left, right by one pixel (zeros in)."""
    out = []
    for img in x.reshape(-1, 28, 28):
        out.append(img)
        up = np.zeros_like(img); up[:-1] = img[1:]
        down = np.zeros_like(img); down[1:] = img[:-1]
        left = np.zeros_like(img); left[:, :-1] = img[:, 1:]
        right = np.zeros_like(img); right[:, 1:] = img[:, :-1]
        out += [up, down, left, right]
    return np.array(out).reshape(-1, 784)


def _book_file(path, n=30):
    rs = np.random.RandomState(0)
    parts = [(rs.rand(m, 784).astype(np.float32), rs.randint(0, 10, m).astype(np.int64))
             for m in (n, 7, 5)]
    with gzip.open(path, "wb") as f:
        pickle.dump(tuple(parts), f, protocol=2)
    return parts


def test_expand_equals_numpy_shifts():
    rs = np.random.RandomState(1)
    x = rs.rand(12, 784).astype(np.float32)
    y = rs.randint(0, 10, 12)
    ex, ey = expand(x, y, shuffle=False, chunk=5)
    np.testing.assert_array_equal(ex, _straight(x))
    np.testing.assert_array_equal(ey, np.repeat(y, 5))
    sx, sy = expand(x, y, seed=3)
    order = np.random.default_rng(3).permutation(60)
    np.testing.assert_array_equal(sx, ex[order])
    np.testing.assert_array_equal(sy, ey[order])
    with pytest.raises(ValueError, match="784"):
        expand(x[:, :100], y)


def test_expand_command_writes_what_network3_reads(tmp_path):
    src, dst = str(tmp_path / "mnist.pkl.gz"), str(tmp_path / "mnist_expanded.pkl.gz")
    (tx, ty), valid, test = _book_file(src)
    r = subprocess.run([sys.executable, "-m", "fastnet", "expand", src, dst, "--seed", "2"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "150 training rows" in r.stdout
    (ex, ey), (vx, vy), (sx, sy) = load_data(dst)
    want = _straight(tx)[np.random.default_rng(2).permutation(150)]
    np.testing.assert_array_equal(ex, want)
    np.testing.assert_array_equal(vx, valid[0])
    np.testing.assert_array_equal(sy, test[1])
    tr, _, _ = load_data_shared(dst)
    assert tr[0].get_value().shape == (150, 784)
    bad = subprocess.run([sys.executable, "-m", "fastnet", "expand", str(tmp_path / "no.pkl.gz"),
                          dst], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr
