"""Helpers for the conformance, gradient-check and network3-API tests.

Independent of fastnet where it matters: the golden files are located and read
with NumPy, and the MNIST recipe of the conformance README is rebuilt here from
the IDX files with gzip + NumPy (not with ``fastnet.datasets``), so a bug in
fastnet's data code cannot hide a bug in its training code.

One comparison rule, the README's: ``max|a - g| <= rtol * max|g| + atol``;
``rtol=None`` means bitwise equality.  A failure names the case, the stage,
the array, max|delta|, max|golden| and the first differing index.
"""

import contextlib
import difflib
import gzip
import hashlib
import importlib.util
import io
import json
import os
import struct
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# the repository's copy of the golden files (tests/conformance/PROVENANCE.md);
# FASTNET_CONFORMANCE_DIR points the tests at another copy
IN_REPO_CONFORMANCE = REPO / "tests" / "conformance"
CONFORMANCE = Path(os.environ.get("FASTNET_CONFORMANCE_DIR") or IN_REPO_CONFORMANCE)
# the real MNIST digits of the recipe: the bundled sample of the fastnet under
# test (a source tree or an installed wheel), the same bytes as the
# development machines' shared/data/mnist-t10k
MNIST_DIR = Path(importlib.util.find_spec("fastnet").origin).resolve().parent / "_data"
# where the copies came from, beside the repository in development and CI
SHARED = REPO.parent / "shared"
SHARED_CONFORMANCE = SHARED / "conformance"
SHARED_MNIST_DIR = SHARED / "data" / "mnist-t10k"

CASES = ("a_fc_sigmoid", "b_conv_sigmoid", "c_conv2_relu_l2", "d_odd_shapes",
         "e_dropout_inference", "f_fc_long", "g_init_floordiv", "h_conv2_relu_long")
FLOATXS = ("float64", "float32")
SLOW_CASES = ("f_fc_long", "h_conv2_relu_long")

# The names a configuration's ``layer_calls`` may use, and nothing else.
LAYER_NAMES = ("ConvPoolLayer", "FullyConnectedLayer", "SoftmaxLayer",
               "sigmoid", "tanh", "ReLU", "linear")

# README "Tolerances": (rtol, atol) by floatX; f's long run gets its own float32 rtol
ATOL = {"float64": 1e-12, "float32": 1e-7}
RTOL = {"float64": 1e-10, "float32": 1e-5}
RTOL_LONG_F = {"float64": 1e-10, "float32": 3e-5}
H_ACCURACY_POINTS = 0.02          # h without a tie-consistent conv: +-2 points


# ---------------------------------------------------------------------------
# environment: CI, engines
# ---------------------------------------------------------------------------
def in_ci():
    """True when the environment variable CI is set to something true."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(reason):
    """Skip with ``reason``; in CI a missing prerequisite fails instead."""
    if in_ci():
        pytest.fail("%s -- and CI is set, where this must not be skipped" % reason,
                    pytrace=False)
    pytest.skip(reason)


def import_or_skip(module, install_hint):
    """The module ``module``; when it is not installed, skip (the whole test
    module at import time) saying ``install_hint`` -- in CI, fail instead."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        reason = "%s is not installed (%s): %s" % (module, install_hint, exc)
        if in_ci():
            pytest.fail(reason + " -- and CI is set, where this must not be skipped",
                        pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def engine_names():
    """Engines the tests run on: FASTNET_TEST_ENGINES (comma-separated) or
    reference and cpu.  cuda only when asked for (no GPU in CI)."""
    names = os.environ.get("FASTNET_TEST_ENGINES", "reference,cpu")
    return tuple(n.strip() for n in names.split(",") if n.strip())


def require_engine(name):
    """The engine ``name``; skip (fail in CI) when it is not built here."""
    from fastnet import engines
    try:
        return engines.get_engine(name)
    except ImportError as exc:
        skip_or_fail("fastnet engine %r is not available (%s: %s); build the compiled "
                     "kernels (pip install .)" % (name, type(exc).__name__, exc))


@contextlib.contextmanager
def floatx(name):
    """fastnet's floatX set to ``name`` inside the block, restored after."""
    import fastnet
    old = fastnet.get_floatx()
    fastnet.set_floatx(name)
    try:
        yield
    finally:
        fastnet.set_floatx(old)


# ---------------------------------------------------------------------------
# golden files
# ---------------------------------------------------------------------------
def conformance_present():
    return (CONFORMANCE / "index.json").is_file()


def conformance_missing_reason():
    return ("conformance data not found at %s (the repository's tests/conformance, or "
            "FASTNET_CONFORMANCE_DIR when set; a source distribution does not carry it: "
            "test from a clone of the repository)" % CONFORMANCE)


@lru_cache(maxsize=None)
def index():
    with open(CONFORMANCE / "index.json") as f:
        return json.load(f)


def array_names(case, fx):
    """Names of the arrays in <case>_<fx>.npz, from index.json (no npz read)."""
    return set(index()["%s_%s.npz" % (case, fx)]["arrays"])


class Golden(object):
    """One golden file: ``g[name]`` (arrays, cached), ``g.cfg`` (config_json)."""

    def __init__(self, case, fx):
        self.case, self.fx = case, fx
        self.path = CONFORMANCE / ("%s_%s.npz" % (case, fx))
        self._z = np.load(self.path, allow_pickle=False)
        self._cache = {}
        self.cfg = json.loads(str(self._z["config_json"]))
        self.mbs = int(self.cfg["mini_batch_size"])
        self.n_layers = len(self.cfg["layer_calls"])

    def __contains__(self, name):
        return name in self._z.files

    def __getitem__(self, name):
        if name not in self._cache:
            self._cache[name] = self._z[name]
        return self._cache[name]

    def param_names(self, stage):
        """<stage>_L<i>_w, <stage>_L<i>_b in net.params order."""
        return ["%s_%s" % (stage, p) for p in self.cfg["param_order"]]

    def params(self, stage):
        return [self[n] for n in self.param_names(stage)]

    def grads(self, stage):
        return [self["%s_grad_%s" % (stage, p)] for p in self.cfg["param_order"]]

    def data(self):
        """(train, valid, test) pairs: stored, or rebuilt from the recipe (f, h)."""
        if "train_x" in self:
            return tuple((self[p + "_x"], self[p + "_y"]) for p in ("train", "valid", "test"))
        return mnist_recipe_checked(self.cfg["data"])


@lru_cache(maxsize=None)
def golden(case, fx):
    return Golden(case, fx)


# ---------------------------------------------------------------------------
# building and running networks through fastnet's public API
# ---------------------------------------------------------------------------
def layer_namespace():
    """Exactly the names a ``layer_calls`` string may use."""
    import fastnet
    ns = {name: getattr(fastnet, name) for name in LAYER_NAMES}
    ns["__builtins__"] = {}
    return ns


def build_layers(cfg):
    """np.random.seed(seed), then the constructor calls in order (as a user)."""
    np.random.seed(cfg["seed"])
    ns = layer_namespace()
    return [eval(call, ns) for call in cfg["layer_calls"]]


def build(g, engine):
    """A fresh Network of golden file ``g``'s case, in its floatX."""
    from fastnet import Network
    import fastnet
    fastnet.set_floatx(g.fx)
    layers = build_layers(g.cfg)
    return Network(layers, g.mbs, engine=engine)


def sgd(net, training_data, epochs, mbs, eta, validation_data, test_data, lmbda):
    """net.SGD(...) as network3's user calls it; returns what it printed."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), warnings.catch_warnings():
        # the one-time "rows not used" warning (d) goes to stderr; not under test here
        warnings.simplefilter("ignore", UserWarning)
        net.SGD(training_data, epochs, mbs, eta, validation_data, test_data,
                lmbda=lmbda)
    return buf.getvalue()


def set_params(net, values):
    for p, v in zip(net.params, values):
        p.set_value(v)


# ---------------------------------------------------------------------------
# the one comparison helper
# ---------------------------------------------------------------------------
def _fmt_index(idx):
    return "()" if idx == () else str(tuple(int(i) for i in idx))


def mismatch(actual, golden_value, rtol, atol=0.0, check_dtype=True):
    """None if ``actual`` matches, else a one-line description of the worst.

    rtol None: bitwise equality (dtype, shape and bytes).  Otherwise
    max|a - g| <= rtol * max|g| + atol, computed in float64; NaN never matches.
    """
    a = np.asarray(actual)
    g = np.asarray(golden_value)
    if a.shape != g.shape:
        return "shape %s, golden %s" % (a.shape, g.shape)
    if (check_dtype or rtol is None) and g.dtype.kind == "f" and a.dtype != g.dtype:
        return "dtype %s, golden %s" % (a.dtype, g.dtype)
    if a.size == 0:
        return None
    if rtol is None:
        if g.dtype.kind == "f":
            same = (a.view(np.dtype("u%d" % a.itemsize)) == g.view(np.dtype("u%d" % g.itemsize)))
        else:
            same = a == g
        if np.all(same):
            return None
        first = np.unravel_index(int(np.argmin(same)), a.shape)
        d = np.asarray(np.abs(a.astype(np.float64) - g.astype(np.float64)))
        return ("not bitwise equal: %d of %d elements differ, max|delta| %.3g, max|golden| %.3g; "
                "first at %s: got %r, golden %r" % (
                    int(np.size(same) - np.count_nonzero(same)), a.size, np.nanmax(d),
                    np.max(np.abs(g)), _fmt_index(first), a[first].item(), g[first].item()))
    a64 = a.astype(np.float64)
    g64 = g.astype(np.float64)
    d = np.asarray(np.abs(a64 - g64))
    d[np.isnan(a64) != np.isnan(g64)] = np.inf
    d[np.isnan(a64) & np.isnan(g64)] = 0.0
    maxg = float(np.max(np.abs(g64)))
    tol = rtol * maxg + atol
    maxd = float(np.max(d))
    if maxd <= tol:
        return None
    bad = d > tol
    first = np.unravel_index(int(np.argmax(bad)), a.shape)
    return ("max|delta| %.3g > %.3g (rtol %g * max|golden| %.3g + atol %g; max|delta|/max|golden| "
            "%.3g); first differing index %s: got %r, golden %r" % (
                maxd, tol, rtol, maxg, atol, maxd / maxg if maxg else float("inf"),
                _fmt_index(first), a[first].item(), g[first].item()))


class Report(object):
    """Collects every mismatch of one test and fails once, listing them all."""

    def __init__(self, label):
        self.label = label
        self.failures = []
        self.checked = 0

    def array(self, stage, name, actual, golden_value, rtol, atol=0.0, check_dtype=True):
        self.checked += 1
        msg = mismatch(actual, golden_value, rtol, atol, check_dtype)
        if msg is not None:
            self.failures.append("%s | %s | %s: %s" % (self.label, stage, name, msg))

    def exact(self, stage, name, actual, golden_value):
        self.array(stage, name, actual, golden_value, None)

    def text(self, stage, name, actual, golden_value):
        self.checked += 1
        if actual != golden_value:
            diff = "\n".join(difflib.unified_diff(
                golden_value.splitlines(), actual.splitlines(), "golden", "fastnet",
                lineterm="", n=1))
            self.failures.append("%s | %s | %s: text differs\n%s" % (
                self.label, stage, name, diff))

    def fail(self, stage, what):
        self.failures.append("%s | %s | %s" % (self.label, stage, what))

    def done(self):
        assert self.checked, "%s: nothing was checked" % self.label
        if self.failures:
            pytest.fail("%d mismatch(es):\n%s" % (len(self.failures), "\n".join(self.failures)),
                        pytrace=False)


# ---------------------------------------------------------------------------
# the MNIST recipe (README "Data recipes"), rebuilt without fastnet
# ---------------------------------------------------------------------------
def read_idx(path):
    """An IDX file (gzip'd) as a NumPy array: magic 0x0000, type, ndim, dims."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code != 0x08:
        raise ValueError("%s: not an unsigned-byte IDX file (magic %r)" % (path, raw[:4]))
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError("%s: %d bytes of data, the header says %s" % (path, data.size, dims))
    return data.reshape(dims)


@lru_cache(maxsize=1)
def mnist_recipe():
    """((train_x, train_y), (valid_x, valid_y), (test_x, test_y)), 8000/1000/1000
    rows, x float32 (n, 784), y int64 -- read-only arrays."""
    images = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    labels = MNIST_DIR / "t10k-labels-idx1-ubyte.gz"
    if not images.is_file() or not labels.is_file():
        skip_or_fail("MNIST sample not found at %s (the package's bundled digits, "
                     "fastnet/_data in the repository)" % MNIST_DIR)
    x = read_idx(images).reshape(10000, 784).astype(np.float32) / np.float32(255.0)
    y = read_idx(labels).astype(np.int64)
    p = np.random.RandomState(2026).permutation(10000)
    x, y = x[p], y[p]
    parts = []
    for a, b in ((0, 8000), (8000, 9000), (9000, 10000)):
        px, py = np.ascontiguousarray(x[a:b]), np.ascontiguousarray(y[a:b])
        px.flags.writeable = False
        py.flags.writeable = False
        parts.append((px, py))
    return tuple(parts)


def sha256_xy(x, y):
    return hashlib.sha256(np.ascontiguousarray(x, np.float32).tobytes()
                          + np.ascontiguousarray(y, np.int64).tobytes()).hexdigest()


def mnist_recipe_checked(data_cfg):
    """The recipe's three parts, after checking the stored sha256 of each."""
    parts = mnist_recipe()
    for (x, y), part in zip(parts, ("train", "valid", "test")):
        want = data_cfg["sha256_" + part]
        got = sha256_xy(x, y)
        if got != want:
            raise AssertionError(
                "the rebuilt MNIST recipe's %s part has sha256 %s but the golden file "
                "says %s: the data in %s or the recipe rebuild is wrong; every long-run "
                "comparison would be meaningless" % (part, got, want, MNIST_DIR))
    return parts


def small_mnist(n_train=300, n_valid=100, n_test=100):
    """A few hundred real digits as NumPy pairs (from the recipe)."""
    (tx, ty), (vx, vy), (sx, sy) = mnist_recipe()
    return ((tx[:n_train].copy(), ty[:n_train].copy()),
            (vx[:n_valid].copy(), vy[:n_valid].copy()),
            (sx[:n_test].copy(), sy[:n_test].copy()))


# ---------------------------------------------------------------------------
# the book's data files, written the way its readers have them
# ---------------------------------------------------------------------------
def _py2_pickle_bytes(obj):
    """``cPickle.dumps(obj, 2)`` as Python 2.7 wrote it: protocol 2, every byte
    string and str as a (SHORT_)BINSTRING, NumPy globals under numpy.core."""
    import pickle

    class Py2Pickler(pickle._Pickler):
        dispatch = dict(pickle._Pickler.dispatch)

        def _binstring(self, data):
            n = len(data)
            if n < 256:
                self.write(pickle.SHORT_BINSTRING + bytes([n]) + data)
            else:
                self.write(pickle.BINSTRING + struct.pack("<i", n) + data)

        def save_bytes(self, obj):
            self._binstring(obj)
            self.memoize(obj)

        def save_str(self, obj):
            self._binstring(obj.encode("latin-1"))
            self.memoize(obj)

        dispatch[bytes] = save_bytes
        dispatch[str] = save_str

    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    data = buf.getvalue().replace(b"cnumpy._core.", b"cnumpy.core.")
    assert b"numpy._core" not in data and b"_codecs" not in data
    return data


def write_book_mnist(path, parts):
    """A gzip'd mnist.pkl.gz of the book's layout: ((x, y), (x, y), (x, y)),
    x float32 (n, 784), y int64, pickled as Python 2's cPickle protocol 2."""
    obj = tuple((np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.int64))
                for x, y in parts)
    with gzip.open(path, "wb") as f:
        f.write(_py2_pickle_bytes(obj))


def write_expanded_mnist(path, parts, seed=0):
    """mnist_expanded.pkl.gz as the book's expand_mnist.py writes it once ported
    to Python 3: each training image plus its four one-pixel shifts, shuffled,
    then pickled as *lists* (784-float arrays, NumPy integer scalars) with the
    interpreter's default protocol."""
    import pickle
    import random
    (tx, ty), valid, test = parts
    pairs = []
    for x, y in zip(tx, ty):
        pairs.append((x, y))
        image = np.reshape(x, (-1, 28))
        for d, axis, index_position, index in [(1, 0, "first", 0), (-1, 0, "first", 27),
                                               (1, 1, "last", 0), (-1, 1, "last", 27)]:
            new_img = np.roll(image, d, axis)
            if index_position == "first":
                new_img[index, :] = np.zeros(28)
            else:
                new_img[:, index] = np.zeros(28)
            pairs.append((np.reshape(new_img, 784), y))
    random.Random(seed).shuffle(pairs)
    expanded = [list(d) for d in zip(*pairs)]
    with gzip.open(path, "wb") as f:
        pickle.dump((expanded, valid, test), f)


# ---------------------------------------------------------------------------
# the optimizer trajectories (conformance/optim: PyTorch's and Keras's own)
# ---------------------------------------------------------------------------
OPTIM = CONFORMANCE / "optim"
_optim_files = {}


def optim_index():
    """index.json of conformance/optim; a collection error when missing (a
    clone carries the files: they must never be skipped silently)."""
    if not (OPTIM / "index.json").is_file():
        raise RuntimeError("the optimizer conformance files are missing: %s" % OPTIM)
    with open(OPTIM / "index.json") as f:
        return json.load(f)


def optim_file(name):
    """The arrays of conformance/optim/``name``, loaded once per session."""
    if name not in _optim_files:
        with np.load(OPTIM / name) as z:
            _optim_files[name] = {k: z[k] for k in z.files}
    return _optim_files[name]
