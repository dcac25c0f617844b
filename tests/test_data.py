"""fastnet.data and fastnet.datasets: the bundled sample, every file format
load_data_shared reads, the restricted unpickler, and the error messages."""

import base64
import gzip
import hashlib
import io
import json
import os
import pickle
import shlex
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

import fastnet
from fastnet import config
from fastnet.data import (NPZ_NAMES, load_data, load_data_shared, load_idx,
                          size)
from fastnet.data import _SafeUnpickler
from fastnet.datasets import SAMPLE_FILES, mnist_sample
from fastnet.params import Shared

REPO_ROOT = Path(__file__).resolve().parents[1]
# the bundled sample as this fastnet has it (a source tree, or an installed wheel)
BUNDLED = Path(fastnet.__file__).resolve().parent / "_data"
CONFORMANCE = REPO_ROOT / "tests" / "conformance"      # the repository's golden files
PART_KEYS = ("train", "valid", "test")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample():
    return mnist_sample()


@pytest.fixture(scope="module")
def small(sample):
    """A few rows of each part: enough to round-trip quickly."""
    return tuple((x[:n].copy(), y[:n].copy())
                 for (x, y), n in zip(sample, (60, 20, 20)))


@pytest.fixture
def floatx64():
    old = config.get_floatx()
    config.set_floatx("float64")
    try:
        yield
    finally:
        config.set_floatx(old)


def write_gz(path, payload):
    with gzip.GzipFile(str(path), "wb", compresslevel=1, mtime=0) as f:
        f.write(payload)
    return path


class Py2Pickler(pickle._Pickler):
    """Pickles bytes the way Python 2 pickled ``str``: STRING (protocol 0) or
    (SHORT_)BINSTRING opcodes, so the stream looks like cPickle's."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        if self.proto >= 1:
            if len(obj) < 256:
                self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
            else:
                self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        else:
            self.write(pickle.STRING + repr(obj)[1:].encode("ascii") + b"\n")
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def py2_pickle(obj, protocol):
    """A Python 2 / NumPy 1 style pickle: str opcodes and ``numpy.core`` names."""
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=protocol).dump(obj)
    stream = buf.getvalue()
    stream = stream.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"numpy._core" not in stream and b"_codecs" not in stream
    return stream


def globals_of(stream):
    """The globals a pickle names, as "module name" (read by the safe loader)."""
    seen = set()

    class Recorder(_SafeUnpickler):
        def find_class(self, module, name):
            seen.add("%s %s" % (module, name))
            return _SafeUnpickler.find_class(self, module, name)

    Recorder(io.BytesIO(stream), encoding="latin1").load()
    return seen


def expanded_form(data):
    """What expand_mnist.py pickles: the training pair as two Python lists of
    784-float arrays and NumPy integer scalars."""
    (tx, ty), valid, test = data
    return ([list(tx), list(ty)], valid, test)


def assert_same(loaded, expected):
    assert len(loaded) == 3
    for (x, y), (ex, ey) in zip(loaded, expected):
        if isinstance(x, Shared):
            assert x.dtype == config.floatx_dtype()
            assert y.dtype == np.int32 and y.eval().dtype == np.int32
            x, y = x.get_value(), y.get_value()
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


def write_idx(path, arr, gz=False):
    arr = np.asarray(arr)
    code = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B,
            np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D,
            np.dtype(">f8"): 0x0E}[arr.dtype.newbyteorder(">")
                                   if arr.dtype.itemsize > 1 else arr.dtype]
    raw = (bytes([0, 0, code, arr.ndim]) + struct.pack(">%dI" % arr.ndim, *arr.shape)
           + arr.astype(arr.dtype.newbyteorder(">")).tobytes())
    if gz:
        write_gz(path, raw)
    else:
        Path(path).write_bytes(raw)
    return Path(path)


def as_uint8_images(x):
    return np.round(x * 255).astype(np.uint8).reshape(-1, 28, 28)


# Genuine Python 2 files: written by Python 2.7.18 with NumPy 1.16.6 (cPickle,
# gzip'd): three parts of one 784-float row each, x[0, 100 + i] = 0.25 * (i + 1),
# x[0, 783] = 1, labels 3, 7, 1.  BOOK_P2 is the book's layout, protocol 2;
# EXPANDED_P0 is expand_mnist.py's (training pair as two lists), protocol 0.
BOOK_P2 = """
H4sIAAAAAAAC/+3XsW7CMBRA0TgBQl1A/QymTB0YUGGu1QyomSsSUgWpBGycIRsLoH51G0FUYOge
pHsGL356gyffnZvkxWpTBsnapMGq+LLLuTHzUn6YNFnnW2uKxEotzlMyX5xvtaucfSTi40x7QyWU
eHvyDvXMwpabVOpW5H4+K0eJaqY9VF4kxmEYvv5UTodybPz9Pu05aJzdC28AAACAhv5VJzbORHYJ
ks4pSPZZFSDLUR0g/n8BEnW9eo+NDzdrun9dk7XplAab8AQAAAC4g055qDvFryLEv0SIljdTj2TI
3ZiSIgAAAGh6hvSuMkRcZUj/qAfBLxI7rYMfJgAA"""
EXPANDED_P0 = """
H4sIAAAAAAAC/+3bsWrbUBSA4f28iLTESJETqRCarl481GuhyIprAo4jFBnit+9FCW0pcVtKTZdv
+C4IHQ4XzfrzfNeXkY7L6PaHh/446x6HzezhsBvv22Foj/F52HSP+6dxOHRj9FXkL3Oxv3t5388j
XxQxrrJ1FuPH/io9po2LupnH+Dp7Nx77TfTXka+yL/Ms0nyaScN1Gqxild1ksVwuFxdlTNK69aIo
0otPz0UBAH+vKd77CAAAAAAAAAAAAACc62fV2yzGddvmu745VWY8de2uHaJ/F/l2Sivumx/SirI4
3VZMXUX1qytMKUdZRrrBtkr7f4o8ysvXyiMtnEKPbR2CDQDO49ZHAAAAAAAAAAAAAOCfBhtvthLV
t1Zi3JbF906i/k2AsR77Mu16c+eV/gKA/+GDGAMAAAAAAAAAAACAM8QX1yfii/IP4os60tHE7CuC
93ERJZUAAA=="""


# ---------------------------------------------------------------------------
# the bundled sample
# ---------------------------------------------------------------------------

def test_sample_shapes_dtypes_labels(sample):
    assert isinstance(sample, tuple) and len(sample) == 3
    for (x, y), n in zip(sample, (8000, 1000, 1000)):
        assert x.shape == (n, 784) and x.dtype == np.float32
        assert x.flags.c_contiguous and x.flags.writeable
        assert y.shape == (n,) and y.dtype == np.int64
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert y.min() >= 0 and y.max() <= 9
        assert set(np.unique(y)) == set(range(10))
    assert sample[0][0].max() == 1.0


def test_sample_matches_conformance_sha256(sample):
    path = CONFORMANCE / "f_fc_long_float64.npz"
    with np.load(str(path)) as z:
        want = json.loads(str(z["config_json"]))["data"]
    for (x, y), key in zip(sample, PART_KEYS):
        got = hashlib.sha256(np.ascontiguousarray(x, np.float32).tobytes()
                             + np.ascontiguousarray(y, np.int64).tobytes()).hexdigest()
        assert got == want["sha256_" + key], key


def test_sample_files_are_the_published_ones():
    readme = (BUNDLED / "README").read_text()
    for name, md5 in zip(SAMPLE_FILES, ("9fb629c4189551a2d022fa330f9573f3",
                                        "ec29112dd5afa0611ce80d1b7f02629c")):
        data = (BUNDLED / name).read_bytes()
        assert hashlib.md5(data).hexdigest() == md5
        assert md5 in readme
    assert "CC BY-SA 3.0" in readme


def test_sample_keeps_global_rng_and_returns_copies():
    np.random.seed(12345)
    before = np.random.get_state()
    first = mnist_sample()
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1])
    assert before[2:] == after[2:]
    first[0][0][:] = -1.0
    first[0][1][:] = -1
    again = mnist_sample()
    assert again[0][0].min() >= 0.0 and again[0][1].min() >= 0


def test_sample_shared(sample):
    data = mnist_sample(shared=True)
    assert isinstance(data, list) and len(data) == 3
    assert_same(data, sample)
    assert [size(d) for d in data] == [8000, 1000, 1000]
    assert data[0][0].get_value(borrow=True).shape == (8000, 784)


def test_sample_shared_float64(sample, floatx64):
    data = mnist_sample(shared=True)
    assert data[0][0].dtype == np.float64
    assert_same(data, sample)


def test_bundled_idx_is_the_sample_before_shuffling(sample):
    images = load_idx(BUNDLED / SAMPLE_FILES[0])
    labels = load_idx(BUNDLED / SAMPLE_FILES[1])
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    p = np.random.RandomState(2026).permutation(10000)
    np.testing.assert_array_equal(labels[p][:8000], sample[0][1])
    np.testing.assert_array_equal(
        images[p][:8000].reshape(8000, 784).astype(np.float32) / np.float32(255),
        sample[0][0])


def test_size():
    x = np.zeros((7, 784), np.float32)
    y = np.zeros(7, np.int64)
    assert size((x, y)) == 7
    assert size((Shared(x), Shared(y))) == 7
    assert size(([x[0]] * 5, [1] * 5)) == 5


# ---------------------------------------------------------------------------
# pickles: the book's file, expand_mnist's file, Python 2 and 3 forms
# ---------------------------------------------------------------------------

def test_book_file_python2_protocol2(tmp_path, sample):
    stream = py2_pickle(sample, 2)
    assert stream[:2] == b"\x80\x02"
    assert "numpy.core.multiarray _reconstruct" in globals_of(stream)
    assert b"numpy._core" not in stream and b"_codecs" not in stream
    path = write_gz(tmp_path / "mnist.pkl.gz", stream)
    assert_same(load_data_shared(str(path)), sample)
    assert_same(load_data(path), sample)


def test_book_file_float64(tmp_path, small, floatx64):
    path = write_gz(tmp_path / "mnist.pkl.gz", py2_pickle(small, 2))
    data = load_data_shared(path)
    assert data[0][0].dtype == np.float64
    assert_same(data, small)


@pytest.mark.parametrize("protocol", [0, 1, 2])
@pytest.mark.parametrize("form", ["book", "expanded"])
def test_python2_pickles(tmp_path, small, protocol, form):
    obj = small if form == "book" else expanded_form(small)
    stream = py2_pickle(obj, protocol)
    names = globals_of(stream)
    assert names <= {"numpy.core.multiarray _reconstruct", "numpy ndarray",
                     "numpy dtype", "numpy.core.multiarray scalar"}
    assert_same(load_data_shared(write_gz(tmp_path / "f.pkl.gz", stream)), small)
    raw = tmp_path / "f.pkl"      # uncompressed too
    raw.write_bytes(stream)
    assert_same(load_data_shared(raw), small)


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
@pytest.mark.parametrize("form", ["book", "expanded"])
def test_python3_pickles(tmp_path, small, protocol, form):
    """A Python 3 port of the book's scripts, under this NumPy (numpy._core)."""
    obj = small if form == "book" else expanded_form(small)
    stream = pickle.dumps(obj, protocol=protocol)
    path = write_gz(tmp_path / "mnist_expanded.pkl.gz", stream)
    assert_same(load_data_shared(path), small)


def test_genuine_python2_files(tmp_path):
    for blob, name in ((BOOK_P2, "mnist.pkl.gz"), (EXPANDED_P0, "mnist_expanded.pkl.gz")):
        path = tmp_path / name
        path.write_bytes(base64.b64decode(blob))
        data = load_data(path)
        for i, ((x, y), label) in enumerate(zip(data, (3, 7, 1))):
            assert x.shape == (1, 784) and x.dtype == np.float32
            assert x[0, 100 + i] == 0.25 * (i + 1) and x[0, 783] == 1.0
            assert np.count_nonzero(x) == 2
            assert y.tolist() == [label]
        assert load_data_shared(path)[0][1].eval().dtype == np.int32


def test_pickle_fortran_bigendian_and_image_shaped(tmp_path, small):
    (tx, ty), valid, test = small
    odd = ((np.asfortranarray(tx.astype(">f4")), ty.astype(">i8")),
           (valid[0].reshape(-1, 28, 28), valid[1].astype(np.uint8)),
           (test[0].astype(np.float64), test[1].astype(np.float32)))
    for stream in (py2_pickle(odd, 2), pickle.dumps(odd, protocol=5)):
        path = write_gz(tmp_path / "odd.pkl.gz", stream)
        assert_same(load_data_shared(path), small)


def test_content_not_extension(tmp_path, small):
    """A gzip'd pickle named .npz, an .npz named .pkl.gz, a pickle named .gz."""
    stream = py2_pickle(small, 2)
    assert_same(load_data_shared(write_gz(tmp_path / "a.npz", stream)), small)
    plain = tmp_path / "b.gz"
    plain.write_bytes(stream)
    assert_same(load_data_shared(plain), small)
    npz = tmp_path / "c.pkl.gz"
    with open(npz, "wb") as f:
        np.savez(f, **dict(zip(NPZ_NAMES, [a for pair in small for a in pair])))
    assert_same(load_data_shared(npz), small)


# ---------------------------------------------------------------------------
# IDX and npz
# ---------------------------------------------------------------------------

def test_idx_directory_with_validation_files(tmp_path, small):
    for (x, y), prefix, gz in zip(small, ("train", "valid", "t10k"), (True, False, True)):
        ext = ".gz" if gz else ""
        write_idx(tmp_path / ("%s-images-idx3-ubyte%s" % (prefix, ext)), as_uint8_images(x), gz)
        write_idx(tmp_path / ("%s-labels-idx1-ubyte%s" % (prefix, ext)), y.astype(np.uint8), gz)
    (tmp_path / "README.txt").write_text("not an IDX file")
    data = load_data_shared(tmp_path)
    assert_same(data, small)         # the sample's pixels are k / 255 exactly
    assert_same(load_data(str(tmp_path)), small)


def test_idx_directory_book_split(tmp_path):
    rs = np.random.RandomState(0)
    images = rs.randint(0, 256, size=(10050, 28, 28)).astype(np.uint8)
    labels = rs.randint(0, 10, size=10050).astype(np.uint8)
    test_images, test_labels = images[:30], labels[:30]
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test_images, gz=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", test_labels, gz=True)
    (tx, ty), (vx, vy), (sx, sy) = load_data(tmp_path)
    assert tx.shape == (50, 784) and vx.shape == (10000, 784) and sx.shape == (30, 784)
    x = images.reshape(-1, 784).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(tx, x[:50])
    np.testing.assert_array_equal(vx, x[50:])
    np.testing.assert_array_equal(vy, labels[50:])
    np.testing.assert_array_equal(sy, test_labels)


def test_idx_explicit_paths(tmp_path, small):
    pairs = []
    for (x, y), prefix in zip(small, ("a", "b", "c")):
        pairs.append((write_idx(tmp_path / ("%s.img" % prefix), as_uint8_images(x)),
                      write_idx(tmp_path / ("%s.lab" % prefix), y.astype(np.uint8))))
    assert_same(load_data_shared(pairs), small)
    named = []
    for (x, y), prefix in zip(small, ("training", "validation", "test")):
        named.append(write_idx(tmp_path / ("mnist-%s-images-idx3-ubyte" % prefix),
                               as_uint8_images(x)))
        named.append(write_idx(tmp_path / ("mnist-%s-labels-idx1-ubyte.gz" % prefix),
                               y.astype(np.uint8), gz=True))
    assert_same(load_data_shared([str(p) for p in named]), small)


def test_load_idx_types(tmp_path):
    for arr in (np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
                np.arange(-5, 5, dtype=np.int8),
                np.arange(6, dtype=np.int16).reshape(3, 2) * -300,
                np.arange(6, dtype=np.int32) * 100000,
                np.linspace(0, 1, 5).astype(np.float32),
                np.linspace(0, 1, 5)):
        got = load_idx(write_idx(tmp_path / "a.idx", arr))
        assert got.dtype == arr.dtype.newbyteorder("=") and got.dtype.isnative
        np.testing.assert_array_equal(got, arr)
        assert got.flags.writeable
        np.testing.assert_array_equal(load_idx(write_idx(tmp_path / "a.gz", arr, gz=True)), arr)


def test_npz(tmp_path, small):
    arrays = dict(zip(NPZ_NAMES, [a for pair in small for a in pair]))
    arrays["train_x"] = arrays["train_x"].reshape(-1, 28, 28)
    arrays["extra"] = np.zeros(3)
    path = tmp_path / "mnist.npz"
    np.savez_compressed(path, **arrays)
    assert_same(load_data_shared(path), small)


def test_npz_errors(tmp_path, small):
    arrays = dict(zip(NPZ_NAMES, [a for pair in small for a in pair]))
    del arrays["valid_y"]
    path = tmp_path / "missing.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="valid_y") as err:
        load_data_shared(path)
    assert str(path) in str(err.value)
    arrays["valid_y"] = np.array([object()] * 20, dtype=object)
    path = tmp_path / "objects.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError) as err:
        load_data_shared(path)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------------------
# security: nothing in a file is ever executed
# ---------------------------------------------------------------------------

def _write_marker(path):
    with open(path, "w") as f:
        f.write("pwned")
    return (np.zeros((1, 784), np.float32), np.zeros(1, np.int64))


class _Reduce(object):
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(marker):
    m = str(marker)
    return {
        "os.system": _Reduce(os.system, ("touch %s" % shlex.quote(m),)),
        "subprocess.call": _Reduce(subprocess.call, (["touch", m],)),
        "subprocess.Popen": _Reduce(subprocess.Popen, (["touch", m],)),
        "eval": _Reduce(eval, ("open(%r, 'w').close()" % m,)),
        "exec": _Reduce(exec, ("open(%r, 'w').close()" % m,)),
        "function": _Reduce(_write_marker, (m,)),
        "open": _Reduce(open, (m, "w")),
        "import": _Reduce(getattr, (_Reduce(__import__, ("os",)), "system")),
    }


def test_payloads_are_live(tmp_path):
    """The payloads below really do write the marker when pickle runs them."""
    marker = tmp_path / "marker"
    for name in ("function", "eval"):
        pickle.loads(pickle.dumps(_payloads(marker)[name], protocol=2))
        assert marker.exists(), name
        marker.unlink()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("name", sorted(_payloads("x")))
def test_malicious_pickle_refused(tmp_path, small, protocol, name):
    marker = tmp_path / "marker"
    payload = _payloads(marker)[name]
    (tx, ty), valid, test = small
    cases = {
        "top": payload,
        # hidden in an otherwise genuine file, among the labels
        "nested": ((tx, [payload] + list(ty[1:])), valid, test),
    }
    for where, obj in cases.items():
        stream = pickle.dumps(obj, protocol=protocol)
        plain = tmp_path / "evil.pkl"
        plain.write_bytes(stream)
        for path in (write_gz(tmp_path / "evil.pkl.gz", stream), plain):
            with pytest.raises(pickle.UnpicklingError) as err:
                load_data_shared(path)
            assert not marker.exists(), (name, where, path)
            msg = str(err.value)
            assert str(path) in msg and "refused" in msg
    assert not marker.exists()


def test_refusal_names_module_and_class(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Reduce(os.system, ("true",)), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"(posix|os|nt)\.system"):
        load_data_shared(path)
    crafted = {
        b"cnumpy.testing._private.utils\nrunstring\n": "runstring",
        b"c__builtin__\neval\n": "__builtin__.eval",
        b"ccopy_reg\n_reconstructor\n": "copy_reg._reconstructor",
        b"cnumpy\nload\n": "numpy.load",
        b"cnumpy.core.multiarray\nfrombuffer\n": "numpy.core.multiarray.frombuffer",
    }
    for glob, shown in crafted.items():
        path.write_bytes(b"\x80\x02" + glob + b"(S'x'\ntR.")
        with pytest.raises(pickle.UnpicklingError) as err:
            load_data_shared(path)
        assert shown in str(err.value)


def test_admitted_names_cannot_be_misused(tmp_path, small):
    """The admitted NumPy names accept only what array pickles pass them."""
    path = tmp_path / "evil.pkl"
    streams = [
        # numpy.ndarray called directly
        b"\x80\x02cnumpy\nndarray\nK\x05\x85R.",
        # reconstruction of a subtype other than ndarray
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\ndtype\nK\x00\x85U\x01b\x87R.",
        # reconstruction that asks for a huge array up front
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        b"J\x00\xca\x9a;\x85U\x01b\x87R.",
        # an object dtype
        b"\x80\x02cnumpy\ndtype\nU\x02O8K\x00K\x01\x87R.",
        # _codecs.encode with another codec
        b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R.",
        # bytes(n): a large allocation
        b"\x80\x02c__builtin__\nbytes\nJ\x00\xca\x9a;\x85R.",
        # BUILD on an admitted callable, to alter it
        b"\x80\x02c__builtin__\nbytes\n}U\x01aK\x01sb.",
    ]
    for stream in streams:
        path.write_bytes(stream)
        with pytest.raises(pickle.UnpicklingError):
            load_data_shared(path)


# ---------------------------------------------------------------------------
# errors name the path
# ---------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "nope.pkl.gz"
    with pytest.raises(FileNotFoundError) as err:
        load_data_shared(path)
    assert str(path) in str(err.value)
    with pytest.raises(FileNotFoundError):
        load_data_shared([tmp_path / "train-images-idx3-ubyte"])


def test_missing_default_file_mentions_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        load_data_shared()
    msg = str(err.value)
    assert "../data/mnist.pkl.gz" in msg and "mnist_sample" in msg


def test_truncated_and_corrupt_gzip(tmp_path, small):
    good = write_gz(tmp_path / "good.pkl.gz", py2_pickle(small, 2)).read_bytes()
    path = tmp_path / "cut.pkl.gz"
    path.write_bytes(good[:len(good) // 2])
    with pytest.raises(EOFError) as err:
        load_data_shared(path)
    assert str(path) in str(err.value)
    bad = bytearray(good)
    for i in range(len(bad) // 3, len(bad) // 3 + 64):
        bad[i] ^= 0x5A
    path = tmp_path / "corrupt.pkl.gz"
    path.write_bytes(bytes(bad))
    with pytest.raises((OSError, ValueError, EOFError)) as err:
        load_data_shared(path)
    assert str(path) in str(err.value)
    path.write_bytes(good[:-4] + b"\0\0\0\0")          # wrong length in the trailer
    with pytest.raises(OSError) as err:
        load_data_shared(path)
    assert str(path) in str(err.value)


def test_truncated_and_corrupt_pickle(tmp_path, small):
    stream = pickle.dumps(small, protocol=2)
    path = tmp_path / "cut.pkl"
    path.write_bytes(stream[:len(stream) // 2])
    with pytest.raises(EOFError) as err:
        load_data_shared(path)
    assert str(path) in str(err.value)
    for junk in (b"\x80\x02\xff\xfe garbage", b"hello, world\n", b"\x80\x02K\x01K\x02"):
        path = tmp_path / "junk.pkl"
        path.write_bytes(junk)
        with pytest.raises((ValueError, EOFError)) as err:
            load_data_shared(path)
        assert str(path) in str(err.value)
    path = tmp_path / "empty.pkl.gz"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_data_shared(path)


def test_bad_idx(tmp_path):
    good = write_idx(tmp_path / "x", np.zeros((3, 28, 28), np.uint8)).read_bytes()
    cases = {
        "magic": b"\x01\x00" + good[2:],
        "type code": good[:2] + b"\x07" + good[3:],
        "no dims": good[:3] + b"\x00" + good[4:],
        "short header": good[:9],
        "long": good + b"\x00",
        "short": good[:-1],
        "tiny": b"\x00\x00",
    }
    for what, raw in cases.items():
        path = tmp_path / "bad-images-idx3-ubyte"
        path.write_bytes(raw)
        with pytest.raises(ValueError) as err:
            load_idx(path)
        msg = str(err.value)
        assert str(path) in msg, what
        if what in ("long", "short"):
            assert "byte count" in msg
        if what in ("magic", "type code", "no dims"):
            assert "magic" in msg
    path = tmp_path / "truncated.gz"
    path.write_bytes(gzip.compress(good)[:-20])
    with pytest.raises(EOFError) as err:
        load_idx(path)
    assert str(path) in str(err.value)


def test_idx_set_errors(tmp_path, small):
    (x, y) = small[0]
    write_idx(tmp_path / "train-images-idx3-ubyte", as_uint8_images(x))
    write_idx(tmp_path / "train-labels-idx1-ubyte", y.astype(np.uint8))
    with pytest.raises(ValueError, match="test images"):
        load_data_shared(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", as_uint8_images(x))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", y[:-1].astype(np.uint8))
    with pytest.raises(ValueError, match="labels"):
        load_data_shared(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", y.astype(np.uint8))
    with pytest.raises(ValueError, match="too few"):      # 60 rows: no book split
        load_data_shared(tmp_path)
    with pytest.raises(ValueError, match="single IDX"):
        load_data_shared(tmp_path / "train-images-idx3-ubyte")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no IDX files"):
        load_data_shared(empty)


def _structure_cases(small):
    (tx, ty), valid, test = small
    return {
        "two parts": (small[0], small[1]),
        "not pairs": ((tx, ty, ty), valid, test),
        "1-D x": ((tx[0], ty), valid, test),
        "783 columns": ((tx[:, :783], ty), valid, test),
        "y length": ((tx, ty[:-1]), valid, test),
        "2-D y": ((tx, ty.reshape(-1, 1)), valid, test),
        "fractional labels": ((tx, ty + 0.5), valid, test),
        "negative labels": ((tx, ty - 100), valid, test),
        "NaN pixels": ((np.where(tx > 0.5, np.nan, tx).astype(np.float32), ty), valid, test),
        "ragged list": (([tx[0], tx[1][:10]], ty[:2]), valid, test),
        "not an array": (("pixels", ty), valid, test),
        "a dict": {"train": small[0]},
    }


STRUCTURE_CASES = ["two parts", "not pairs", "1-D x", "783 columns", "y length", "2-D y",
                   "fractional labels", "negative labels", "NaN pixels", "ragged list",
                   "not an array", "a dict"]


@pytest.mark.parametrize("case", STRUCTURE_CASES)
def test_wrong_structure(tmp_path, small, case):
    obj = _structure_cases(small)[case]
    for stream in (py2_pickle(obj, 2), pickle.dumps(obj, protocol=4)):
        path = write_gz(tmp_path / "wrong.pkl.gz", stream)
        with pytest.raises(ValueError) as err:
            load_data_shared(path)
        assert str(path) in str(err.value), case


def test_features_none_accepts_other_widths(tmp_path, small):
    obj = tuple((x[:, :100], y) for x, y in small)
    path = write_gz(tmp_path / "narrow.pkl.gz", pickle.dumps(obj, protocol=2))
    with pytest.raises(ValueError, match="784"):
        load_data_shared(path)
    data = load_data_shared(path, features=None)
    assert data[0][0].shape == (60, 100)
    assert load_data(path, features=100)[2][0].shape == (20, 100)
