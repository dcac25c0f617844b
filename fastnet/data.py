"""Data: network3's ``load_data_shared`` and ``size``, and the readers behind them.

``load_data_shared(filename)`` reads MNIST-like data and returns network3's
three pairs of shared variables.  The format is chosen by the file's content
(its magic bytes), never by its name alone:

* a pickle, gzip'd or not -- the book's ``mnist.pkl.gz`` (a Python 2.7
  cPickle, protocol 2, of ``((train_x, train_y), (valid_x, valid_y),
  (test_x, test_y))`` whose arrays name ``numpy.core.multiarray``), and
  ``mnist_expanded.pkl.gz`` from the book's ``expand_mnist.py`` (its training
  pair is two Python *lists*: 784-float arrays and NumPy integer scalars;
  protocol 0 under Python 2, or any protocol from a Python 3 port, naming
  ``numpy._core`` under NumPy 2);
* a directory of IDX files (``train-images-idx3-ubyte[.gz]``, ...), or their
  paths given explicitly;
* an ``.npz`` archive holding the arrays named in ``NPZ_NAMES``.

Pickles are read by a restricted unpickler that never imports or calls
anything a file names, except the handful of NumPy constructors those files
need -- and even those are replaced by fastnet's own checked builders.  Any
other global is refused with ``pickle.UnpicklingError``.
"""

import errno
import gzip
import io
import os
import pickle
import pickletools
import re
import struct
import zipfile
import zlib

import numpy as np

from . import safeio
from .config import floatx_dtype
from .params import Shared

__all__ = ["load_data_shared", "load_data", "load_idx", "size",
           "RefusedPickleError", "DEFAULT_FILENAME", "NPZ_NAMES"]

#: network3's default path, relative to the working directory.
DEFAULT_FILENAME = "../data/mnist.pkl.gz"

#: The arrays an ``.npz`` file must hold (other arrays are ignored).
NPZ_NAMES = ("train_x", "train_y", "valid_x", "valid_y", "test_x", "test_y")

#: Rows of MNIST's 60,000 training digits the book kept back for validation
#: (its mnist.pkl.gz: the first 50,000 train, the last 10,000 validate).
BOOK_VALIDATION_ROWS = 10000

_PARTS = ("training", "validation", "test")
_SHARED_NAMES = ("train", "valid", "test")

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"
_BadGzipFile = getattr(gzip, "BadGzipFile", OSError)


# ---------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------

def load_data_shared(filename=DEFAULT_FILENAME, features=784):
    """network3's loader: ``[(train_x, train_y), (valid_x, valid_y), (test_x, test_y)]``.

    Each ``x`` is a ``Shared`` float array of floatX, shape ``(n, features)``;
    each ``y`` a ``Shared`` int32 array of labels (network3 stores labels as
    floatX and casts them to int32, so ``y.eval()`` gives int32).

    ``filename`` is a pickle (gzip'd or not), an ``.npz`` file, a directory of
    IDX files, or a list of IDX paths (see ``load_data``).  ``features`` is
    the number of values per example (784 for MNIST); images of any shape with
    that many values are flattened.  ``features=None`` accepts any width.
    """
    parts = load_data(filename, features=features)
    fx = floatx_dtype()
    return [_shared_pair(x, y, fx, name)
            for (x, y), name in zip(parts, _SHARED_NAMES)]


def load_data(filename=DEFAULT_FILENAME, features=784):
    """The same data as NumPy arrays: ``((tx, ty), (vx, vy), (sx, sy))``.

    ``x`` is float32 (float64 if the file stores float64), shape
    ``(n, features)``; ``y`` is int64.  ``filename`` may be

    * a pickle file, gzip'd or not (the book's ``mnist.pkl.gz`` and
      ``mnist_expanded.pkl.gz``);
    * an ``.npz`` file with the arrays ``train_x, train_y, valid_x, valid_y,
      test_x, test_y`` (read with ``allow_pickle=False``; integer pixels are
      cast, not scaled, as network3 would);
    * a directory of IDX files named like MNIST's
      (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
      ``t10k-...`` or ``test-...``, and optionally ``valid-...``); with no
      validation files the last 10,000 training rows validate, as in the
      book's file.  uint8 images are scaled to [0, 1] as float32 / 255;
    * a list of such IDX paths, or three ``(images_path, labels_path)`` pairs
      for training, validation and test.
    """
    if isinstance(filename, (list, tuple)):
        where = "IDX files %s" % (", ".join(_paths_repr(filename)),)
        parts = _load_idx_paths(filename)
    else:
        path = os.fspath(filename)
        where = path
        if os.path.isdir(path):
            parts = _load_idx_dir(path)
        else:
            parts = _load_file(path, default=(path == DEFAULT_FILENAME))
    return tuple(_checked_part(x, y, where, part, features)
                 for (x, y), part in zip(parts, _PARTS))


def size(data):
    """The number of examples in ``data``, an ``(x, y)`` pair (shared or NumPy)."""
    x = data[0]
    if hasattr(x, "get_value"):
        return x.get_value(borrow=True).shape[0]
    if isinstance(x, (list, tuple)):
        return len(x)
    return np.shape(x)[0]


def load_idx(path):
    """Read one IDX file (gzip'd or not) into a native-endian ndarray.

    Checks the magic number (two zero bytes, a known type code, at least one
    dimension) and that the file holds exactly the bytes its header promises;
    raises ``ValueError`` naming the path otherwise.  A gzip'd file is
    inflated as a stream into an array of the size the header declares --
    after checking that size against ``safeio.MAX_BYTES`` and against the most
    the gzip file could inflate to -- and reading stops one byte past it, so
    a decompression bomb fails at once, using little memory.
    """
    path = os.fspath(path)
    f, size = _open(path)
    with f:
        if f.read(2) != _GZIP_MAGIC:
            f.seek(0)
            return _read_idx(f, path, size)
        f.seek(0)
        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                return _read_idx(gz, path, None, gzip_size=size)
        except (EOFError, OSError, zlib.error) as exc:
            raise _annotated(exc, path, "cannot gunzip") from exc


# ---------------------------------------------------------------------------
# the restricted unpickler
# ---------------------------------------------------------------------------

class RefusedPickleError(pickle.UnpicklingError):
    """A pickle asked for something the safe loader does not allow."""


# Python 2 spellings of the modules a pickle may name.
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}

_DTYPE_CODE = re.compile(r"^[<>=|]?[biuf][0-9]{1,2}$")


class _Admitted(object):
    """What ``find_class`` hands out: a callable that cannot be altered.

    A pickle's BUILD opcode may not set attributes on it (its own
    ``__setstate__`` refuses), so no load can change what a later one gets.
    """

    __slots__ = ("_fn", "_name")

    def __init__(self, fn, name):
        self._fn = fn
        self._name = name

    def __call__(self, *args):
        if self._fn is None:
            raise RefusedPickleError("%s may only be named as the subtype of "
                                     "ndarray reconstruction, not called"
                                     % (self._name,))
        return self._fn(*args)

    def __setstate__(self, state):
        raise RefusedPickleError("refused to set the state of %s" % (self._name,))

    def __repr__(self):
        return "<admitted %s>" % (self._name,)


_NDARRAY = _Admitted(None, "numpy.ndarray")


class _DtypeState(object):
    """What ``numpy.dtype(code, align, copy)`` gives in a safe pickle: a
    plain numeric dtype whose byte order ``__setstate__`` may set."""

    __slots__ = ("dtype",)

    def __init__(self, code, align=False, copy=True):
        if isinstance(code, bytes):
            code = code.decode("latin-1")
        if not isinstance(code, str) or not _DTYPE_CODE.match(code):
            raise RefusedPickleError(
                "numpy.dtype(%r): only plain numeric dtypes (bool, int, uint, "
                "float) are allowed" % (code,))
        try:
            dtype = np.dtype(code)
        except (TypeError, ValueError) as exc:
            raise RefusedPickleError("numpy.dtype(%r): %s" % (code, exc))
        self.dtype = _plain_dtype(dtype, "numpy.dtype(%r)" % (code,))

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) < 2:
            raise RefusedPickleError("numpy.dtype state %r not understood"
                                     % (state,))
        order = state[1]
        if isinstance(order, bytes):
            order = order.decode("latin-1")
        if order not in ("<", ">", "=", "|"):
            raise RefusedPickleError("numpy.dtype byte order %r not understood"
                                     % (order,))
        extra = state[2:]
        if not all(s is None or (isinstance(s, int) and not isinstance(s, bool))
                   for s in extra):
            raise RefusedPickleError(
                "numpy.dtype state %r: structured, sub-array and metadata "
                "dtypes are not allowed" % (state,))
        if order != "|" and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(order)


def _plain_dtype(dtype, what):
    if isinstance(dtype, _DtypeState):
        dtype = dtype.dtype
    if (not isinstance(dtype, np.dtype) or dtype.kind not in "biuf"
            or dtype.hasobject or dtype.fields is not None
            or dtype.subdtype is not None):
        raise RefusedPickleError("%s: dtype %r is not a plain numeric dtype"
                                 % (what, dtype))
    return dtype


def _array_from_bytes(data, dtype, shape, fortran, what):
    """A writable, native-endian array from raw bytes, with every check."""
    dtype = _plain_dtype(dtype, what)
    if isinstance(data, str):           # Python 2 str read with latin1
        data = data.encode("latin-1")
    elif isinstance(data, pickle.PickleBuffer):
        data = data.raw()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise RefusedPickleError("%s: array data must be bytes, got %s"
                                 % (what, type(data).__name__))
    if isinstance(shape, list):
        shape = tuple(shape)
    if (not isinstance(shape, tuple) or len(shape) > 32
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                       and d >= 0 for d in shape)):
        raise RefusedPickleError("%s: shape %r is not a tuple of sizes"
                                 % (what, shape))
    count = 1
    for d in shape:
        count *= int(d)
    nbytes = len(memoryview(data).cast("B"))
    if count * dtype.itemsize != nbytes:
        raise ValueError("%s: shape %r of %s needs %d bytes, the pickle holds %d"
                         % (what, shape, dtype, count * dtype.itemsize, nbytes))
    flat = np.frombuffer(data, dtype=dtype, count=count)
    arr = flat.reshape(tuple(int(d) for d in shape), order="F" if fortran else "C")
    return arr.astype(dtype.newbyteorder("="), order="K", copy=True)


class _ArrayState(object):
    """Stands for an ndarray being reconstructed; becomes one on ``__setstate__``."""

    __slots__ = ("array",)

    def __init__(self, array=None):
        self.array = array

    def __setstate__(self, state):
        if self.array is not None:
            raise RefusedPickleError("ndarray state set twice")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise RefusedPickleError("ndarray state %r not understood"
                                     % (type(state).__name__,))
        if len(state) == 5:
            version = state[0]
            if version not in (0, 1):
                raise RefusedPickleError("ndarray state version %r not understood"
                                         % (version,))
            state = state[1:]
        shape, dtype, fortran, data = state
        self.array = _array_from_bytes(data, dtype, shape, bool(fortran),
                                       "ndarray")


def _reconstruct(subtype, shape, typecode=b"b"):
    """``numpy.core.multiarray._reconstruct``: an empty placeholder."""
    if subtype is not _NDARRAY:
        raise RefusedPickleError("ndarray reconstruction of %r: only "
                                 "numpy.ndarray is allowed" % (subtype,))
    if not isinstance(shape, tuple) or any(
            not isinstance(d, int) or d < 0 for d in shape) or 0 not in shape:
        raise RefusedPickleError("ndarray reconstruction with shape %r: an "
                                 "empty shape such as (0,) is expected" % (shape,))
    return _ArrayState()


def _frombuffer(buf, dtype, shape, order):
    """``numpy.core.numeric._frombuffer`` (pickle protocol 5)."""
    if order not in ("C", "F"):
        raise RefusedPickleError("ndarray order %r not understood" % (order,))
    return _ArrayState(_array_from_bytes(buf, dtype, shape, order == "F",
                                         "ndarray"))


def _scalar(dtype, data):
    """``numpy.core.multiarray.scalar``: a NumPy scalar from its bytes."""
    arr = _array_from_bytes(data, dtype, (1,), False, "numpy scalar")
    return arr[0]


def _encode(obj, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` as Python 3 pickles bytes at protocols 0-2: latin-1 only."""
    if (not isinstance(obj, str) or errors != "strict" or not isinstance(encoding, str)
            or encoding.lower().replace("_", "-") not in
            ("latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1")):
        raise RefusedPickleError("_codecs.encode is allowed only for bytes "
                                 "(a str and 'latin1')")
    return obj.encode("latin-1")


def _empty_bytes(*args):
    """``bytes()``: how Python 3 pickles b'' at protocols 0-2."""
    if args:
        raise RefusedPickleError("bytes() is allowed only without arguments")
    return b""


_RECONSTRUCT = _Admitted(_reconstruct, "numpy.core.multiarray._reconstruct")
_SCALAR = _Admitted(_scalar, "numpy.core.multiarray.scalar")
_FROMBUFFER = _Admitted(_frombuffer, "numpy.core.numeric._frombuffer")

# (module, name) -> what a pickle gets for it; nothing else is ever handed out.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Admitted(_DtypeState, "numpy.dtype"),
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("_codecs", "encode"): _Admitted(_encode, "_codecs.encode"),
    ("builtins", "bytes"): _Admitted(_empty_bytes, "bytes"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Admits only what pickled MNIST arrays need; imports nothing."""

    def find_class(self, module, name):
        key = (_PY2_MODULES.get(module, module), name)
        try:
            return _ALLOWED[key]
        except (KeyError, TypeError):
            raise RefusedPickleError(
                "refused to load global %s.%s: fastnet's safe loader admits "
                "only NumPy arrays, dtypes and scalars, lists and tuples"
                % (module, name))

    def persistent_load(self, pid):
        raise RefusedPickleError("refused a persistent id: fastnet's safe "
                                 "loader admits no external objects")


def _resolve(obj):
    """Placeholders -> arrays, through lists and tuples (one level deep)."""
    if isinstance(obj, _ArrayState):
        if obj.array is None:
            raise ValueError("an ndarray in the pickle never received its data")
        return obj.array
    if isinstance(obj, (list, tuple)):
        out = []
        for item in obj:
            if isinstance(item, _ArrayState):
                item = _resolve(item)
            elif not isinstance(item, (int, float, np.generic, list, tuple)) \
                    or isinstance(item, (np.object_, np.void)):
                raise ValueError("holds a %s" % type(item).__name__)
            out.append(item)
        return out
    if isinstance(obj, (int, float, np.generic)):
        return obj
    raise ValueError("holds a %s" % type(obj).__name__)


# ---------------------------------------------------------------------------
# reading files
# ---------------------------------------------------------------------------

def _missing(path, default=False):
    msg = "No such file: %r" % (path,)
    if default:
        msg = ("network3's default data file %r (%s) does not exist. Put the "
               "book's mnist.pkl.gz there (it comes with the book's code, in "
               "data/), pass load_data_shared() its path, or use the 10,000 "
               "MNIST digits bundled with fastnet: "
               "fastnet.datasets.mnist_sample(shared=True)"
               % (path, os.path.abspath(path)))
    return FileNotFoundError(errno.ENOENT, msg, path)


def _annotated(exc, path, what):
    """``exc`` re-raised with the path: EOFError, OSError or ValueError."""
    detail = "%s: %s (%s: %s)" % (path, what, type(exc).__name__, exc)
    if isinstance(exc, RefusedPickleError):
        return RefusedPickleError("%s: %s" % (path, exc))
    if isinstance(exc, EOFError) or (isinstance(exc, pickle.UnpicklingError)
                                     and "truncated" in str(exc)):
        return EOFError("%s: the file ends too early, it is truncated (%s: %s)"
                        % (path, type(exc).__name__, exc))
    if isinstance(exc, (_BadGzipFile, zlib.error)):
        return _BadGzipFile("%s: corrupt gzip data (%s: %s)"
                            % (path, type(exc).__name__, exc))
    if isinstance(exc, OSError):
        return OSError(detail)
    return ValueError(detail)


def _open(path, default=False):
    """``(file, size)`` of the regular file ``path`` (a device, FIFO or
    socket, or a file over ``safeio.MAX_BYTES``: ValueError)."""
    try:
        return safeio.open_regular(path, "data file")
    except FileNotFoundError:
        raise _missing(path, default) from None


def _sniff(head):
    if head[:2] == _GZIP_MAGIC:
        return "gzip"
    if head[:4] in _ZIP_MAGICS:
        return "zip"
    if head[:6] == _NPY_MAGIC:
        return "npy"
    if len(head) >= 4 and head[0] == 0 and head[1] == 0 and head[2] in _IDX_TYPES:
        return "idx"
    return "pickle"


def _load_file(path, default=False):
    f, size = _open(path, default)
    with f:
        head = f.read(8)
        if not head:
            raise ValueError("%s: the file is empty" % (path,))
        kind = _sniff(head)
        f.seek(0)
        if kind == "zip":
            return _load_npz(f, path, size)
        if kind != "gzip":
            _refuse_kind(kind, path, "")
            return _unpickle(lambda: _pickle_stream(f, path, size, False), path)
        try:
            inner = gzip.GzipFile(fileobj=f, mode="rb").peek(8)[:8]
        except Exception as exc:
            raise _annotated(exc, path, "cannot gunzip") from exc
        if not inner:
            raise ValueError("%s: the gzip'd data is empty" % (path,))
        _refuse_kind(_sniff(inner), path, "gzip'd ")
        return _unpickle(lambda: _pickle_stream(f, path, size, True), path, drain=True)


def _pickle_stream(f, path, size, gzipped):
    """The pickle in ``f`` (from its start) as a BoundedReader: a pickle
    opcode cannot claim more bytes than the file holds, or than its gzip'd
    data can inflate to (and never more than ``safeio.MAX_BYTES``)."""
    f.seek(0)
    if not gzipped:
        return safeio.BoundedReader(f, size, path, "the size of the file")
    bound = safeio.gzip_inflate_bound(size)
    if bound <= safeio.MAX_BYTES:
        why = "the most a gzip file of %d bytes can inflate to" % size
    else:
        bound, why = safeio.MAX_BYTES, "fastnet.safeio.MAX_BYTES"
    gz = io.BufferedReader(gzip.GzipFile(fileobj=f, mode="rb"), buffer_size=1 << 20)
    return safeio.BoundedReader(gz, bound, path, why)


def _refuse_kind(kind, path, how):
    if kind == "idx":
        raise ValueError(
            "%s is a single %sIDX file; load_data_shared needs images and "
            "labels: pass the directory that holds the IDX files, or "
            "[(train_images, train_labels), (valid_images, valid_labels), "
            "(test_images, test_labels)]" % (path, how))
    if kind in ("npy", "zip", "gzip"):
        names = {"npy": "a .npy array", "zip": "a zip/.npz archive",
                 "gzip": "doubly gzip'd"}
        raise ValueError(
            "%s is %s%s; fastnet reads pickles (gzip'd or not), .npz files "
            "and IDX files" % (path, how, names[kind]))


#: a gzip'd pickle may hold this much after its STOP opcode (pickle.dump
#: writes nothing there); more is refused rather than inflated to the end
_TRAILING_BYTES = 1 << 20


def _unpickle(open_stream, path, drain=False):
    """Unpickle the stream ``open_stream()`` gives, safely; ``drain`` reads a
    gzip stream to its end so that its CRC and length are checked (the
    pickle stops before them)."""
    try:
        f = open_stream()
        obj = _SafeUnpickler(f, encoding="latin1").load()
        if drain and f.skip(_TRAILING_BYTES) > _TRAILING_BYTES:
            raise ValueError("more than %s of data come after the end of the pickle "
                             "(reading stopped there)" % safeio.human(_TRAILING_BYTES))
    except MemoryError:
        # the C unpickler allocates what an opcode claims before reading it:
        # find the claim, for an error that names it
        raise _oversized_claim(open_stream, path) from None
    except safeio.LimitExceeded as exc:
        raise _claim_error(exc, path) from None
    except Exception as exc:
        raise _annotated(exc, path, "not a readable pickle, or a corrupt one") \
            from exc
    if not isinstance(obj, (tuple, list)) or len(obj) != 3:
        raise ValueError("%s: expected ((train_x, train_y), (valid_x, valid_y), "
                         "(test_x, test_y)), got %s" % (path, _describe(obj)))
    parts = []
    for part, pair in zip(_PARTS, obj):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError("%s: the %s data should be an (x, y) pair, got %s"
                             % (path, part, _describe(pair)))
        resolved = []
        for name, item in zip("xy", pair):
            try:
                resolved.append(_resolve(item))
            except ValueError as exc:
                raise ValueError("%s: %s %s %s" % (path, part, name, exc)) from None
        parts.append(tuple(resolved))
    return parts


def _claim_error(exc, path):
    """A pickle opcode asked for more than the stream holds: an EOFError
    (the file is truncated) when the claim is of a size fastnet would read,
    else a ValueError naming the absurd claim and the limits."""
    if exc.asked is None:
        return ValueError(str(exc))
    if exc.asked <= safeio.MAX_BYTES:
        return EOFError("%s: the file ends too early, it is truncated (%s)"
                        % (path, str(exc)[len(path) + 2:]))
    return ValueError(
        "%s: a pickle opcode at offset %d claims %s, more than the file can hold "
        "(%s: %s) and more than fastnet reads from one file (%s: "
        "fastnet.safeio.MAX_BYTES)" % (path, exc.offset, safeio.human(exc.asked),
                                       exc.why, safeio.human(exc.limit),
                                       safeio.human(safeio.MAX_BYTES)))


def _oversized_claim(open_stream, path):
    """After a MemoryError: decode the pickle's opcodes again (pickletools,
    nothing run) through the bounded stream, which refuses the opcode that
    claims more than the file can hold -- a ValueError naming it.  A pickle
    whose claims all fit is simply too big: MemoryError with the path."""
    try:
        for _ in pickletools.genops(open_stream()):
            pass
    except safeio.LimitExceeded as exc:
        return _claim_error(exc, path)
    except (MemoryError, Exception):    # noqa: BLE001 -- any other fault: the plain answer
        pass
    return MemoryError("%s: not enough memory to load this data" % (path,))


def _describe(obj):
    if isinstance(obj, (tuple, list)):
        return "a %s of %d items" % (type(obj).__name__, len(obj))
    if isinstance(obj, _ArrayState):
        obj = obj.array
    if isinstance(obj, _DtypeState):
        return "a dtype"
    if isinstance(obj, np.ndarray):
        return "an array of shape %s" % (obj.shape,)
    return "a %s" % type(obj).__name__


def _load_npz(f, path, size):
    """The six arrays of an .npz (compressed or not).  Every member's .npy
    header is checked against the member's real size -- and that against
    what its compressed bytes can inflate to -- before its array is
    allocated; object arrays (pickles) are refused."""
    try:
        archive = zipfile.ZipFile(f)
        infos = {info.filename[:-4]: info for info in archive.infolist()
                 if info.filename.endswith(".npy")}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError,
            ValueError, KeyError) as exc:
        raise _annotated(exc, path, "cannot read as .npz") from exc
    missing = [n for n in NPZ_NAMES if n not in infos]
    if missing:
        raise ValueError("%s: the .npz file lacks %s; fastnet reads the arrays %s"
                         % (path, ", ".join(missing), ", ".join(NPZ_NAMES)))
    arrays = [_npz_member(archive, infos[n], path, n, size) for n in NPZ_NAMES]
    return [tuple(arrays[i:i + 2]) for i in (0, 2, 4)]


def _npz_member(archive, info, path, name, archive_size):
    """One array of an .npz, its sizes checked before it is allocated."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError("%s: %s is compressed with zip method %d; NumPy writes only "
                         "stored or deflated members" % (path, name, info.compress_type))
    if info.header_offset + info.compress_size > archive_size:
        raise ValueError("%s is truncated: %s needs %d bytes past the end of the file"
                         % (path, name, info.header_offset + info.compress_size - archive_size))
    if info.file_size > (info.compress_size if info.compress_type == zipfile.ZIP_STORED
                         else safeio.gzip_inflate_bound(info.compress_size)):
        raise ValueError("%s: %s claims %s uncompressed from %d stored bytes, more than "
                         "they can hold" % (path, name, safeio.human(info.file_size),
                                            info.compress_size))
    try:
        shape, fortran, dtype, offset = safeio.npy_member_header(archive, info, path, name)
    except pickle.UnpicklingError as exc:
        raise ValueError(str(exc)) from None        # an object array: never unpickled
    out = np.empty(shape[::-1] if fortran else shape, dtype=dtype)
    try:
        with archive.open(info) as member:
            member.read(offset)
            got = safeio.fill(member, out)
            member.read(1)                          # to the end: zipfile checks the CRC
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as exc:
        raise _annotated(exc, path, "cannot read %s from the .npz" % name) from exc
    if got != out.nbytes:
        raise EOFError("%s: %s is truncated (%d of %d bytes)" % (path, name, got, out.nbytes))
    if fortran:
        out = out.T
    return out.astype(dtype.newbyteorder("="), copy=False)


# -- IDX ---------------------------------------------------------------------

_IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _parse_idx(buf, where):
    """An IDX file already in memory (fastnet's bundled sample)."""
    return _read_idx(io.BytesIO(buf), where, len(buf))


def _read_idx(stream, where, size, gzip_size=None):
    """Read an IDX file from ``stream``: ``size`` bytes in all, or, for a
    gzip'd file (``size`` None), whatever a ``gzip_size``-byte gzip file
    inflates to -- never more than its header declares plus one byte."""
    head = stream.read(4)
    n = len(head)
    if n < 4:
        raise ValueError("%s: not an IDX file: %d bytes, fewer than the 4-byte "
                         "magic number" % (where, n))
    magic = struct.unpack(">I", head)[0]
    code, ndim = head[2], head[3]
    if head[0] != 0 or head[1] != 0 or code not in _IDX_TYPES or ndim == 0:
        raise ValueError(
            "%s: bad IDX magic number 0x%08X: expected two zero bytes, a type "
            "code (0x08, 0x09, 0x0B-0x0E) and a dimension count of at least 1"
            % (where, magic))
    header = 4 + 4 * ndim
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError("%s: IDX header promises %d dimensions but the file "
                         "has only %d bytes" % (where, ndim, 4 + len(raw_dims)))
    dims = struct.unpack(">%dI" % ndim, raw_dims)
    dtype = _IDX_TYPES[code]
    count = 1
    for d in dims:
        count *= d
    expected = header + count * dtype.itemsize
    claim = "%s of %s, %d bytes in all" % ("x".join(str(d) for d in dims), dtype.name,
                                         expected)

    def mismatch(has):
        return ValueError("%s: IDX byte count mismatch: the header says %s, but the "
                          "file has %s" % (where, claim, has))

    if size is not None and size != expected:
        raise mismatch("%d bytes" % size)
    if count * dtype.itemsize > safeio.MAX_BYTES:
        raise ValueError("%s: the IDX header claims %s, over fastnet's limit of %s "
                         "(fastnet.safeio.MAX_BYTES)"
                         % (where, claim, safeio.human(safeio.MAX_BYTES)))
    if gzip_size is not None and expected > safeio.gzip_inflate_bound(gzip_size):
        raise ValueError("%s: the IDX header claims %s, but a gzip file of %d bytes "
                         "inflates to at most %s: the file is truncated or its header "
                         "is wrong" % (where, claim, gzip_size,
                                       safeio.human(safeio.gzip_inflate_bound(gzip_size))))
    out = np.empty(dims, dtype=dtype)
    got = safeio.fill(stream, out)
    if got != out.nbytes:
        raise mismatch("only %d bytes" % (header + got))
    if stream.read(1):
        # a bomb inflates on and on: stop at the first byte past the claim
        raise mismatch("more (reading stopped at the limit the header sets, "
                       "%d bytes)" % expected)
    return out.astype(dtype.newbyteorder("="), copy=False)


_IDX_NAME = re.compile(r"^(?P<prefix>.*?)[-_.]?(?P<kind>images|labels)[-_.]"
                       r"idx[0-9]+[-_.]ubyte(?P<gz>\.gz)?$", re.IGNORECASE)
_ROLE_WORDS = {"train": "train", "training": "train",
               "valid": "valid", "validation": "valid", "val": "valid",
               "test": "test", "t10k": "test", "testing": "test"}
_ROLES = ("train", "valid", "test")


def _idx_role(path):
    """(role, 'images' | 'labels', gzipped) from an IDX file's name, or None."""
    m = _IDX_NAME.match(os.path.basename(path))
    if not m:
        return None
    words = set(w.lower() for w in re.split(r"[-_.]", m.group("prefix")) if w)
    roles = set(_ROLE_WORDS[w] for w in words if w in _ROLE_WORDS)
    if len(roles) != 1:
        return None
    return roles.pop(), m.group("kind").lower(), bool(m.group("gz"))


def _load_idx_dir(path):
    names = sorted(os.listdir(path))
    files = [os.path.join(path, n) for n in names
             if _idx_role(n) and os.path.isfile(os.path.join(path, n))]
    if not files:
        raise ValueError(
            "%s: no IDX files named like MNIST's (train-images-idx3-ubyte[.gz], "
            "train-labels-idx1-ubyte[.gz], t10k-... or test-..., optionally "
            "valid-...) in this directory" % (path,))
    return _idx_parts(_classify(files, path), path)


def _load_idx_paths(paths):
    paths = list(paths)
    if len(paths) == 3 and all(isinstance(p, (list, tuple)) for p in paths):
        roles = {}
        for role, pair in zip(_ROLES, paths):
            if len(pair) != 2:
                raise ValueError("IDX paths: the %s entry should be an "
                                 "(images_path, labels_path) pair" % (role,))
            roles[role] = {"images": os.fspath(pair[0]),
                           "labels": os.fspath(pair[1])}
        return _idx_parts(roles, "IDX files")
    for p in paths:
        if isinstance(p, (list, tuple)):
            raise ValueError("IDX paths: give a flat list of IDX files, or "
                             "three (images_path, labels_path) pairs")
    files = [os.fspath(p) for p in paths]
    for p in files:
        if not os.path.exists(p):
            raise _missing(p)
    return _idx_parts(_classify(files, "IDX files"), "IDX files")


def _classify(files, where):
    roles = {}
    for p in files:
        found = _idx_role(p)
        if found is None:
            raise ValueError(
                "%s: cannot tell from its name whether %s holds training, "
                "validation or test images or labels; name it like "
                "train-images-idx3-ubyte.gz, or pass three (images_path, "
                "labels_path) pairs" % (where, p))
        role, kind, gz = found
        slot = roles.setdefault(role, {})
        if kind in slot:
            other = slot[kind]
            if _idx_role(other)[2] == gz:
                raise ValueError("%s: two %s %s files: %s and %s"
                                 % (where, role, kind, other, p))
            if gz:          # keep the uncompressed copy: same data, faster
                continue
        slot[kind] = p
    for role in ("train", "test") + (("valid",) if "valid" in roles else ()):
        for kind in ("images", "labels"):
            if kind not in roles.get(role, {}):
                raise ValueError(
                    "%s: no %s %s file (expected a name like %s-%s-idx%d-ubyte"
                    "[.gz])%s" % (
                        where, role, kind,
                        {"train": "train", "test": "t10k", "valid": "valid"}[role],
                        kind, 3 if kind == "images" else 1,
                        "; for the 10,000 bundled test digits use "
                        "fastnet.datasets.mnist_sample()" if role == "train" else ""))
    return roles


def _idx_pair(images_path, labels_path):
    images = load_idx(images_path)
    labels = load_idx(labels_path)
    if images.ndim < 2:
        raise ValueError("%s: IDX images should have at least 2 dimensions, "
                         "this file has shape %s" % (images_path, images.shape))
    if labels.ndim != 1:
        raise ValueError("%s: IDX labels should have 1 dimension, this file "
                         "has shape %s" % (labels_path, labels.shape))
    if labels.dtype.kind not in "iu":
        raise ValueError("%s: IDX labels should be integers, not %s"
                         % (labels_path, labels.dtype))
    if images.shape[0] != labels.shape[0]:
        raise ValueError("%s has %d images but %s has %d labels" % (
            images_path, images.shape[0], labels_path, labels.shape[0]))
    if images.dtype == np.uint8:
        x = images.astype(np.float32) / np.float32(255.0)
    elif images.dtype.kind == "f":
        x = images
    else:
        x = images.astype(np.float32)
    return x.reshape(x.shape[0], -1), labels


def _idx_parts(roles, where):
    train = _idx_pair(roles["train"]["images"], roles["train"]["labels"])
    test = _idx_pair(roles["test"]["images"], roles["test"]["labels"])
    if "valid" in roles:
        valid = _idx_pair(roles["valid"]["images"], roles["valid"]["labels"])
    else:
        n = train[0].shape[0]
        if n <= BOOK_VALIDATION_ROWS:
            raise ValueError(
                "%s: no validation files, and the %d training rows are too few "
                "to keep the last %d back for validation as the book did; add "
                "valid-images/valid-labels IDX files"
                % (where, n, BOOK_VALIDATION_ROWS))
        cut = n - BOOK_VALIDATION_ROWS
        valid = (train[0][cut:], train[1][cut:])
        train = (train[0][:cut], train[1][:cut])
    return [train, valid, test]


def _paths_repr(paths):
    out = []
    for p in paths:
        if isinstance(p, (list, tuple)):
            out.extend(_paths_repr(p))
        else:
            out.append(os.fspath(p))
    return out


# ---------------------------------------------------------------------------
# checking and converting what was read
# ---------------------------------------------------------------------------

def _checked_part(x, y, where, part, features):
    def bad(msg):
        return ValueError("%s: %s data: %s" % (where, part, msg))

    try:
        x = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise bad("x cannot be made into one array (%s)" % (exc,)) from None
    try:
        y = np.asarray(y)
    except (ValueError, TypeError) as exc:
        raise bad("y cannot be made into one array (%s)" % (exc,)) from None
    if x.dtype.kind not in "fiu" or x.dtype.fields is not None:
        raise bad("x should hold numbers, not %s" % (x.dtype,))
    if y.dtype.kind not in "fiu" or y.dtype.fields is not None:
        raise bad("y should hold integer labels, not %s" % (y.dtype,))
    if x.ndim < 2:
        raise bad("x should be 2-D (examples x %s values), got shape %s"
                  % (features or "n", x.shape))
    if y.ndim != 1:
        raise bad("y should be 1-D, got shape %s" % (y.shape,))
    if x.shape[0] != y.shape[0]:
        raise bad("x has %d rows but y has %d labels" % (x.shape[0], y.shape[0]))
    width = 1
    for d in x.shape[1:]:
        width *= d
    if features is not None and width != features:
        raise bad("x should have %d values per example, got shape %s"
                  % (features, x.shape))
    x = x.reshape(x.shape[0], width)
    if x.dtype.kind == "f":
        if x.dtype.itemsize < 4:
            x = x.astype(np.float32)
        if x.size and not np.isfinite(x).all():
            raise bad("x holds NaN or Inf")
    else:
        x = x.astype(np.float32)
    if y.dtype.kind == "f":
        if y.size and not (np.isfinite(y).all() and (y == np.floor(y)).all()):
            raise bad("labels should be integers; y holds fractions, NaN or Inf")
    if y.size:
        lo, hi = y.min(), y.max()
        if lo < 0 or hi > np.iinfo(np.int32).max:
            raise bad("labels should lie in [0, 2**31); y runs from %s to %s"
                      % (lo, hi))
    y = y.astype(np.int64)
    if not x.flags.writeable:
        x = x.copy()
    return x, y


def _shared_pair(x, y, fx, name):
    """network3's ``shared(data)``: x as floatX, y as int32."""
    x = np.asarray(x, dtype=fx)
    if not x.flags.writeable or not x.flags.c_contiguous:
        x = np.array(x, dtype=fx, order="C")
    return (Shared(x, name=name + "_x"),
            Shared(np.asarray(y).astype(np.int32), name=name + "_y"))
