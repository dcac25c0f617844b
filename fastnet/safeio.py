"""Reading untrusted files without reading forever or allocating what they claim.

One place for the checks every reader of user files in fastnet makes
(``fastnet.load``, checkpoints, ``load_data_shared``):

* ``open_regular``: only regular files are read -- a directory, device
  (``/dev/zero``), FIFO or socket is refused before anything is read (a FIFO
  is opened without blocking), and so is a file larger than ``MAX_BYTES``;
* ``BoundedReader``: a stream (a file, or the inflated output of a gzip
  file) that refuses any read past a limit, so a decompression bomb or a
  pickle opcode claiming a terabyte fails at once with the claim in the
  message, having used little memory;
* ``gzip_inflate_bound``: the most a gzip file of a given size can inflate to
  (deflate expands at most 1032-fold), to refuse impossible size claims
  before reading;
* ``npy_member_header``: an ``.npz`` member's ``.npy`` header, checked against
  the member's real size before any array is allocated.
"""

import errno
import os
import stat
import zipfile
import zlib

import numpy as np

#: The most fastnet reads from one file, or inflates from one gzip stream,
#: or allocates for one array a file describes (16 GiB); raise it for
#: larger data.
MAX_BYTES = 16 << 30

# deflate's largest expansion is 1032:1 (258-byte matches in 2-bit codes);
# gzip adds headers, so this bound holds for any gzip file of that size
_DEFLATE_MAX_RATIO = 1032
_GZIP_SLACK = 1 << 16

_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def describe_mode(mode):
    """'a directory', 'a character device', ... for a stat mode."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def human(nbytes):
    """``nbytes`` as '12.0 MiB (12582912 bytes)'."""
    value, unit = float(nbytes), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024 or unit == "EiB":
            break
        value /= 1024
    if unit == "bytes":
        return "%d bytes" % nbytes
    return "%.1f %s (%d bytes)" % (value, unit, nbytes)


def open_regular(path, what="file"):
    """``(binary file object, size)`` of the regular file ``path``.

    FileNotFoundError when missing; IsADirectoryError for a directory;
    ValueError for any other non-regular file (device, FIFO, socket) and for
    a file over ``MAX_BYTES``.  The open never blocks (O_NONBLOCK, so a FIFO
    without a writer is refused rather than waited on)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "%s is a directory, not a %s"
                                    % (path, what), path)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("%s is %s, not a regular file; fastnet reads a %s only "
                             "from a regular file" % (path, describe_mode(st.st_mode), what))
        if st.st_size > MAX_BYTES:
            raise ValueError("%s is %s, over fastnet's limit of %s for one file "
                             "(fastnet.safeio.MAX_BYTES)"
                             % (path, human(st.st_size), human(MAX_BYTES)))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return f, st.st_size


def read_all(f, size, path):
    """The rest of ``f`` (a regular file of ``size`` bytes when opened), never
    more than ``size`` bytes plus one: a file that grows while being read is
    refused rather than read without end."""
    data = f.read(size + 1)
    if len(data) > size:
        raise ValueError("%s grew while being read (it was %d bytes); refusing "
                         "to read a file that keeps changing" % (path, size))
    return data


def gzip_inflate_bound(compressed_size):
    """The most bytes a gzip file of ``compressed_size`` bytes can inflate to."""
    return compressed_size * _DEFLATE_MAX_RATIO + _GZIP_SLACK


class LimitExceeded(ValueError):
    """A read asked for more than the stream may hold; ``asked`` is the
    size asked for (None when the data simply ran on past the limit)."""

    def __init__(self, message, asked=None, offset=None, limit=None, why=None):
        ValueError.__init__(self, message)
        self.asked, self.offset, self.limit, self.why = asked, offset, limit, why


class BoundedReader(object):
    """A read-only binary stream over ``raw`` that refuses to go past
    ``limit`` bytes: a read asking for more than remains raises
    LimitExceeded (a ValueError) naming ``where``, the size asked for and
    the limit, before anything is read or allocated.  ``why`` says where the
    limit comes from."""

    def __init__(self, raw, limit, where, why):
        self.raw = raw
        self.limit = limit
        self.where = where
        self.why = why
        self.consumed = 0

    def _allow(self, n):
        remaining = self.limit - self.consumed
        if n is None or n < 0:
            n = remaining + 1       # read-to-end: at most one byte past the limit
        elif n > remaining:
            raise LimitExceeded(
                "%s: reading %s at offset %d goes past the limit of %s (%s)"
                % (self.where, human(n), self.consumed, human(self.limit), self.why),
                n, self.consumed, self.limit, self.why)
        return n

    def _count(self, data):
        self.consumed += len(data)
        if self.consumed > self.limit:
            raise LimitExceeded("%s: the data runs past the limit of %s (%s)"
                                % (self.where, human(self.limit), self.why))
        return data

    def read(self, n=-1):
        return self._count(self.raw.read(self._allow(n)))

    def skip(self, most):
        """Read and drop what is left, up to ``most`` bytes plus one (and the
        limit plus one); the number of bytes dropped."""
        dropped, want = 0, min(most, self.limit - self.consumed) + 1
        while dropped < want:
            chunk = self.raw.read(min(want - dropped, 1 << 20))
            if not chunk:
                break
            dropped += len(chunk)
        self.consumed += dropped
        return dropped

    def readinto(self, buf):
        view = memoryview(buf).cast("B")
        self._allow(len(view))
        got = self.raw.readinto(view)
        self.consumed += got or 0
        return got

    def readline(self, n=-1):
        # pickle protocol 0 reads lines: one runs at most one byte past the limit
        return self._count(self.raw.readline(self._allow(n)))

    def peek(self, n=1):
        peek = getattr(self.raw, "peek", None)
        return peek(n) if peek else b""

    def readable(self):
        return True


def fill(reader, out):
    """Read into the C-contiguous array ``out`` from ``reader`` until it is
    full or the stream ends (16 MiB at a time, no second copy); the number
    of bytes read."""
    view = memoryview(out.reshape(-1)).cast("B")
    done, total = 0, len(view)
    while done < total:
        got = reader.readinto(view[done:done + (16 << 20)])
        if not got:
            break
        done += got
    return done


def npy_member_header(archive, info, where, name):
    """``(shape, fortran, dtype, data offset)`` of the ``.npy`` member
    ``info`` of the open zipfile ``archive``, with the bytes its shape needs
    checked against the member's real size before anything is allocated
    (the size zipfile enforces while inflating).  Object arrays (pickles)
    raise ``pickle.UnpicklingError``; anything else bad a ValueError."""
    import pickle
    try:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError("unsupported .npy version %s" % (version,))
            offset = f.tell()
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error,
            KeyError, TypeError, SyntaxError) as exc:
        raise ValueError("%s: %s is truncated or corrupt (%s)" % (where, name, exc)) from None
    if dtype.hasobject:
        raise pickle.UnpicklingError(
            "%s: %s is an object array, that is a pickle; fastnet never "
            "unpickles (a pickle can run code)" % (where, name))
    if dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError("%s: %s has dtype %s, not a plain dtype" % (where, name, dtype))
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if offset + nbytes != info.file_size:
        raise ValueError("%s: %s is corrupt: its header claims shape %s of %s, %s, "
                         "but the member holds %s" % (where, name, tuple(shape), dtype,
                                                     human(nbytes),
                                                     human(max(info.file_size - offset, 0))))
    if nbytes > MAX_BYTES:
        raise ValueError("%s: %s claims shape %s of %s, %s, over fastnet's limit of %s "
                         "(fastnet.safeio.MAX_BYTES)" % (where, name, tuple(shape), dtype,
                                                         human(nbytes), human(MAX_BYTES)))
    return tuple(shape), fortran, dtype, offset
