"""Saving networks and training checkpoints, and loading them safely.

Both are uncompressed ``.npz`` files: plain numeric arrays plus one JSON
text, read without pickle, so nothing in a file is ever executed.  A file is
written atomically (a fresh temporary file made with mkstemp in the same
directory, fsync, rename, fsync of the directory), so a crash, a full disk or
Ctrl-C at any moment leaves either the old file or the new one, never a torn
one; concurrent writers to one path (threads or processes) each write their
own temporary file and the last rename wins, whole.  A temporary file left by
a killed writer is removed by the next write or read of the same path.  Only a
regular file is ever replaced: a directory, a device (/dev/full), a FIFO or a
symbolic link at the path is refused with a ValueError (links are neither
followed nor replaced: save to the link's target).

    net.save(path) / fastnet.save(net, path)      the layers and weights
    fastnet.load(path)                            a Network, same predictions
    net.SGD(..., checkpoint=path)                 resumable training

A checkpoint records a fingerprint (BLAKE2b of dtype, shape and bytes) of
the training, validation and test data it was written with; resuming with
different data -- even of the same size -- is refused with a ValueError.
Checkpoints of format version 1 (written before fingerprints) still resume,
with a warning that the data cannot be checked; the next save upgrades them.

Reading treats the file as untrusted: a pickle (bare, gzip'd, or as an
object array inside the archive) is refused with ``pickle.UnpicklingError``;
anything truncated, corrupt or inconsistent raises ``ValueError`` naming the
path; a missing file ``FileNotFoundError``; a directory
``IsADirectoryError``; a device, FIFO or socket, or a file over
``safeio.MAX_BYTES`` (16 GiB), a ValueError before anything is read.  Every
size is checked against the bytes really present before anything is
allocated; ``meta_json`` is limited to 1 Mi characters nested at most 64
deep.
"""

import gzip
import hashlib
import io
import json
import os
import pickle
import pickletools
import re
import stat
import tempfile
import warnings
import zipfile
import zlib

import numpy as np

from . import safeio

NETWORK_FORMAT = "fastnet-network"
CHECKPOINT_FORMAT = "fastnet-checkpoint"
FORMAT_VERSION = 1                 # networks
CHECKPOINT_VERSION = 2             # 2: with data fingerprints; 1 still resumes
_READABLE_VERSIONS = {NETWORK_FORMAT: (FORMAT_VERSION,),
                      CHECKPOINT_FORMAT: (1, CHECKPOINT_VERSION)}
DATASETS = ("training_data", "validation_data", "test_data")
_FINGERPRINT_CHARS = 32            # blake2b, 16-byte digest, hex

_META = "meta_json"
_MAX_META_CHARS = 1 << 20          # the JSON text: layer specs and bookkeeping
_MAX_META_DEPTH = 64               # fastnet writes 4 levels; json.loads recurses per level
_SEED_LIMIT = 1 << 64              # dropout seeds are uint64


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------
def _meta(net):
    return {"layers": [layer.describe() for layer in net.layers],
            "mini_batch_size": net.mini_batch_size,
            "floatx": str(net.dtype),
            "dropout_seeds": [str(getattr(l, "dropout_seed", 0)) for l in net.layers],
            "step_count": int(net.step_count),
            "augment_seed": str(getattr(net, "augment_seed", 0))}


def fingerprint(*arrays):
    """A short deterministic digest of arrays: their dtypes, shapes and bytes
    (BLAKE2b, 128 bits, hex).  Costs one pass over the data (about 1 GB/s);
    SGD computes it once per call, not once per checkpoint write."""
    h = hashlib.blake2b(digest_size=_FINGERPRINT_CHARS // 2)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(("%s%s;" % (a.dtype.str, a.shape)).encode("ascii"))
        h.update(memoryview(a.reshape(-1)).cast("B"))
    return h.hexdigest()


def data_fingerprints(training, validation, test):
    """``{"training_data": ..., "validation_data": ..., "test_data": ...}``,
    the fingerprint of each checked ``(x, y)`` pair SGD trains and
    evaluates on."""
    done, out = [], {}
    for name, (x, y) in zip(DATASETS, (training, validation, test)):
        # the same x passed twice (validation_data = test_data): hashed once
        same = [fp for (dx, dy, fp) in done if dx is x and dy.dtype == y.dtype
                and np.array_equal(dy, y)]
        out[name] = same[0] if same else fingerprint(x, y)
        done.append((x, y, out[name]))
    return out


def _tmp_prefix(path, pid=None):
    # the writer's pid in the name lets a later write tell a dead writer's
    # leftover from a live writer's file; mkstemp adds an unpredictable tail
    return ".%s.tmp-%s" % (os.path.basename(path), "" if pid is None else "%d-" % pid)


def _pid_alive(pid):
    if os.name != "posix":      # os.kill(pid, 0) would send Ctrl-C on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _remove_stale_tmp(path):
    """Delete temporary files of ``path`` left by a writer process that is
    gone (killed mid-write: SIGKILL, power loss).  Only regular files of this
    user whose name carries a dead pid are removed; unlink never follows a
    link, and a live writer's file (this process's included) is never
    touched."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix = _tmp_prefix(path)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    uid = os.getuid() if hasattr(os, "getuid") else None
    for name in names:
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].partition("-")[0]    # ".x.tmp-PID-rand" or old ".x.tmp-PID"
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        full = os.path.join(directory, name)
        try:
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode) and (uid is None or st.st_uid == uid):
                os.unlink(full)
        except OSError:
            pass


def _check_target(path):
    """Refuse (ValueError naming ``path``) to replace anything at ``path``
    but a regular file: a directory, a device such as /dev/full, a FIFO, a
    socket -- or a symbolic link, which fastnet neither follows (it could
    point anywhere, e.g. at a file of another user in a shared directory)
    nor silently replaces; save to the link's target instead."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise type(exc)(exc.errno, "cannot write %s: %s" % (path, exc.strerror),
                        path) from None
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISLNK(st.st_mode):
        raise ValueError("%s is a symbolic link; fastnet does not write through or "
                         "replace links: save to the file it points to" % (path,))
    raise ValueError("%s is %s, not a regular file; fastnet writes networks and "
                     "checkpoints only to regular files and will not replace it"
                     % (path, safeio.describe_mode(st.st_mode)))


_umask = []


def _new_file_mode():
    """0666 less the umask: the mode open() would give a new file (mkstemp
    makes 0600).  The umask is read once, from /proc when it can be, since
    setting it to read it races with other threads."""
    if not _umask:
        mask = None
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("Umask:"):
                        mask = int(line.split()[1], 8)
        except (OSError, ValueError):
            pass
        if mask is None:
            mask = os.umask(0o22)
            os.umask(mask)
        _umask.append(mask)
    return 0o666 & ~_umask[0]


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path, arrays):
    """Write ``arrays`` as an uncompressed .npz at ``path`` (write_atomic);
    member sizes are then real bytes, which reading checks."""
    write_atomic(path, lambda f: np.savez(f, **arrays))


def write_atomic(path, write):
    """Write a file at ``path`` with ``write(f)`` (f: a binary file) so that
    ``path`` is at every moment either its old content or the whole new one:
    a fresh temporary
    file (mkstemp: O_EXCL, unpredictable name, never a planted link) in the
    same directory, written, flushed and fsynced, renamed over ``path``,
    then the directory fsynced.  On any failure -- a full disk, Ctrl-C --
    the temporary file is removed and ``path`` is untouched.  Concurrent
    writers (threads or processes) each have their own temporary file: the
    last rename wins, whole."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    _check_target(path)
    _remove_stale_tmp(path)
    try:
        old_mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        old_mode = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path, os.getpid()), dir=directory)
    except OSError as exc:
        raise type(exc)(exc.errno, "cannot write %s: %s" % (path, exc.strerror),
                        path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), old_mode if old_mode is not None else _new_file_mode())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _check_target(path)              # it may have become a link or device meanwhile
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None and path not in str(exc):
            raise type(exc)(exc.errno, "cannot write %s: %s" % (path, exc.strerror),
                            path) from exc
        raise
    _fsync_directory(directory)


def _arrays(net, meta, path, on_nan):
    net._params_to_host()
    arrays = {_META: np.array(json.dumps(meta))}
    for i, p in enumerate(net.params):
        a = p.get_value(borrow=True)
        if not np.all(np.isfinite(a)):
            raise on_nan("%s not written: parameter %d of the network holds NaN or "
                         "Inf (it could not be loaded back)" % (path, i))
        arrays["param_%d" % i] = a
    return arrays


def save(net, path):
    """Write ``net``'s layers and weights to ``path`` (an .npz file)."""
    path = os.fspath(path)
    meta = _meta(net)
    meta.update(format=NETWORK_FORMAT, version=FORMAT_VERSION)
    _write_atomic(path, _arrays(net, meta, path, ValueError))


def save_checkpoint(path, net, run, state, data, best_params=None):
    """Write the whole training state of an SGD call to ``path``; ``data``
    is ``data_fingerprints(...)`` of the call's data; ``best_params`` (early
    stopping) the weights of the best epoch so far, in ``net.params`` order.

    Weights that are not finite are never written (FloatingPointError): the
    previous checkpoint, the last good state, stays.
    """
    path = os.fspath(path)
    meta = _meta(net)
    plan = net._plan
    meta.update(format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION, run=run,
                state=state, data=data, optimizer_step=int(plan.opt_step))
    arrays = _arrays(net, meta, path, FloatingPointError)
    # the optimizer's state (momentum, running averages): resumes bitwise
    for (group, k), a in plan.state_to_host().items():
        arrays["opt_%s_%d" % (group, k)] = a
    for i, a in enumerate(best_params or ()):
        arrays["best_param_%d" % i] = a
    _write_atomic(path, arrays)


# ---------------------------------------------------------------------------
# reading (untrusted input)
# ---------------------------------------------------------------------------
_GZIP_PEEK = 16 << 20


def _looks_like_pickle(data, complete=True):
    """True if ``data`` decodes as a pickle opcode stream (decoded by
    pickletools, never run).  A ``complete`` stream must reach STOP; a
    prefix (the start of a long gzip'd stream) must open with a protocol
    header or decode for a good many opcodes."""
    if not complete and data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return True
    ops = 0
    try:
        for opcode, _, _ in pickletools.genops(io.BytesIO(data)):
            ops += 1
            if opcode.name == "STOP":
                return True
    except Exception:       # noqa: BLE001 -- a decoding failure: not (all) a pickle
        pass
    return not complete and ops >= 16


def _refuse_non_npz(path, blob):
    head = blob[:4]
    if head == b"PK\x03\x04":
        return
    if not blob:
        raise ValueError("%s is empty: not a fastnet .npz file" % path)
    if head[:2] == b"\x1f\x8b":
        try:
            inner = gzip.GzipFile(fileobj=io.BytesIO(blob)).read(_GZIP_PEEK + 1)
        except (OSError, EOFError, zlib.error):
            inner = b""
        if _looks_like_pickle(inner[:_GZIP_PEEK], complete=len(inner) <= _GZIP_PEEK):
            raise pickle.UnpicklingError(
                "%s is a gzip'd pickle; fastnet files are .npz and fastnet never "
                "unpickles them (a pickle can run code)" % path)
        raise ValueError("%s is a gzip file, not a fastnet .npz file" % path)
    if _looks_like_pickle(blob):
        raise pickle.UnpicklingError(
            "%s is a pickle; fastnet files are .npz and fastnet never unpickles "
            "them (a pickle can run code)" % path)
    raise ValueError("%s is not a fastnet .npz file (it starts with %r)" % (path, head))


class _Archive(object):
    """The members of a fastnet .npz.  Opening it reads every member's .npy
    header and checks it against the bytes present (an object array -- a
    pickle -- is refused here); data is read only on request, after its shape
    and dtype have been compared with what the caller expects."""

    def __init__(self, path):
        self.path = path
        try:
            f, size = safeio.open_regular(path, "fastnet .npz file")
        except FileNotFoundError:
            raise FileNotFoundError(2, "no such file", path) from None
        with f:
            blob = safeio.read_all(f, size, path)
        _refuse_non_npz(path, blob)
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(blob))
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError,
                ValueError, KeyError) as exc:
            raise ValueError("%s is truncated or corrupt (not a readable zip archive: "
                             "%s)" % (path, exc)) from None
        self.members = {}
        for info in infos:
            name = info.filename
            if not name.endswith(".npy") or name[:-4] in self.members:
                raise ValueError("%s: unexpected member %r in a fastnet file" % (path, name))
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError("%s: member %r is compressed; fastnet files are "
                                 "written uncompressed" % (path, name))
            if info.header_offset + info.file_size > len(blob):
                raise ValueError("%s is truncated: member %r needs %d bytes past the "
                                 "end of the file" % (path, name, info.file_size))
            self.members[name[:-4]] = (info,) + self._header(name[:-4], info)

    def _header(self, name, info):
        """(shape, fortran, dtype, data offset) of a member, checked."""
        return safeio.npy_member_header(self.zip, info, self.path, name)

    def names(self):
        return list(self.members)

    def check(self, name, shape, dtype, what="the network needs"):
        """Member ``name`` exists with exactly this shape and dtype."""
        if name not in self.members:
            raise ValueError("%s: %s is missing" % (self.path, name))
        _, got_shape, _, got_dtype, _ = self.members[name]
        if got_shape != tuple(shape) or got_dtype != np.dtype(dtype):
            raise ValueError("%s: %s has shape %s dtype %s, %s %s %s"
                             % (self.path, name, got_shape, got_dtype, what,
                                tuple(shape), np.dtype(dtype)))

    def array(self, name, shape=None, dtype=None):
        """Member ``name`` as a writable native C-contiguous array (with
        ``shape`` / ``dtype`` required when given)."""
        if shape is not None:
            self.check(name, shape, dtype)
        if name not in self.members:
            raise ValueError("%s: %s is missing" % (self.path, name))
        info, shape, fortran, dtype, offset = self.members[name]
        nbytes = info.file_size - offset
        try:
            with self.zip.open(info) as f:
                f.read(offset)
                data = f.read(nbytes)
                f.read(1)                 # reach the end: zipfile checks the CRC
        except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as exc:
            raise ValueError("%s: %s is truncated or corrupt (%s)"
                             % (self.path, name, exc)) from None
        if len(data) != nbytes:
            raise ValueError("%s: %s is truncated (%d of %d bytes)"
                             % (self.path, name, len(data), nbytes))
        a = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
        return np.array(a, dtype=dtype.newbyteorder("="), order="C", copy=True)

    def meta(self, expected_format):
        path = self.path
        if _META not in self.members:
            raise ValueError("%s has no %s: not a fastnet file" % (path, _META))
        _, shape, _, dtype, _ = self.members[_META]
        if dtype.kind != "U" or shape != ():
            raise ValueError("%s: %s is not a JSON text (shape %s, dtype %s)"
                             % (path, _META, shape, dtype))
        if dtype.itemsize > 4 * _MAX_META_CHARS:
            raise ValueError("%s: %s is %d characters long, over the limit of %d"
                             % (path, _META, dtype.itemsize // 4, _MAX_META_CHARS))
        text = str(self.array(_META)[()])
        depth = _json_depth(text)
        if depth > _MAX_META_DEPTH:
            raise ValueError("%s: %s nests %d levels deep, over the limit of %d"
                             % (path, _META, depth, _MAX_META_DEPTH))
        try:
            meta = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ValueError("%s: %s is not valid JSON: %s" % (path, _META, exc)) from None
        if not isinstance(meta, dict) or meta.get("format") != expected_format:
            raise ValueError("%s: expected a %s file, found format %r"
                             % (path, expected_format,
                                meta.get("format") if isinstance(meta, dict) else None))
        versions = _READABLE_VERSIONS[expected_format]
        version = meta.get("version")
        if not _is_int(version) or version not in versions:
            raise ValueError("%s: format version %r is not supported (this fastnet reads "
                             "%s version %s)" % (path, version, expected_format,
                                                 " or ".join(map(str, versions))))
        return meta


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _json_depth(text):
    """The deepest nesting of [ and { in a JSON text (strings skipped),
    found without recursion, so a hostile text cannot exhaust the stack."""
    brackets = np.frombuffer(_JSON_STRING.sub("", text).encode("utf-8"), dtype=np.uint8)
    steps = (np.isin(brackets, (ord("["), ord("{"))).astype(np.int64)
             - np.isin(brackets, (ord("]"), ord("}"))))
    return int(steps.cumsum().max()) if steps.size else 0


def read_file(path, expected_format):
    """``(meta, arrays)`` of a fastnet file, every array checked (for tools
    and tests; ``load`` and ``load_checkpoint`` are what users call)."""
    archive = _Archive(os.fspath(path))
    meta = archive.meta(expected_format)
    return meta, {name: archive.array(name) for name in archive.names()}



def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_seed(s):
    try:
        return (isinstance(s, (str, int)) and not isinstance(s, bool)
                and 0 <= int(s) < _SEED_LIMIT)
    except ValueError:
        return False


def _check_common(path, meta, n_layers=None):
    """The fields every fastnet file carries, as the right types."""
    seeds = meta.get("dropout_seeds")
    if not isinstance(seeds, list) or (n_layers is not None and len(seeds) != n_layers):
        raise ValueError("%s: dropout_seeds is not one seed per layer" % path)
    for i, s in enumerate(seeds):
        if not _is_seed(s):
            raise ValueError("%s: dropout seed of layer %d is %r, not a 64-bit "
                             "unsigned integer" % (path, i, s))
    if "augment_seed" in meta and not _is_seed(meta["augment_seed"]):
        raise ValueError("%s: augment_seed is %r, not a 64-bit unsigned integer"
                         % (path, meta["augment_seed"]))
    step = meta.get("step_count")
    if not _is_int(step) or not 0 <= step < 1 << 62:
        raise ValueError("%s: step_count is %r, not a count" % (path, step))


def _params_from(archive, net, optimizer_state=False):
    values = []
    for i, p in enumerate(net.params):
        a = archive.array("param_%d" % i, p.shape, p.dtype)
        if not np.all(np.isfinite(a)):
            raise ValueError("%s: param_%d holds NaN or Inf" % (archive.path, i))
        values.append(a)
    extra = set(archive.names()) - {_META} - {"param_%d" % i for i in range(len(values))}
    if optimizer_state:
        extra -= set(_optimizer_arrays(net))
        extra -= {"best_param_%d" % i for i in range(len(values))}
    if extra:
        raise ValueError("%s: unexpected arrays %s" % (archive.path, sorted(extra)))
    return values


def _optimizer_arrays(net):
    """{array name: (group name, k, size)} of the optimizer state a
    checkpoint of ``net`` holds."""
    return {"opt_%s_%d" % (g.name, k): (g.name, k, g.size)
            for g in net._plan.groups.values() for k in range(len(g.state))}


def _optimizer_state_from(path, archive, net, meta):
    step = meta.get("optimizer_step", 0)
    if not _is_int(step) or not 0 <= step < 1 << 62:
        raise ValueError("%s: optimizer_step is %r, not a count" % (path, step))
    arrays = {}
    for name, (group, k, size) in _optimizer_arrays(net).items():
        if name not in archive.names():
            raise ValueError("%s: the optimizer's state %s is missing (written by "
                             "another optimizer?)" % (path, name))
        a = archive.array(name, (size,), net.dtype)
        if not np.all(np.isfinite(a)):
            raise ValueError("%s: %s holds NaN or Inf" % (path, name))
        arrays[(group, k)] = a
    return arrays, step


def _build_layers(path, meta, archive):
    from . import config
    from .layers import LAYER_TYPES
    specs = meta.get("layers")
    if not isinstance(specs, list) or not specs:
        raise ValueError("%s: no layers described" % path)
    floatx = meta.get("floatx")
    if floatx not in ("float32", "float64"):
        raise ValueError("%s: floatx %r is not float32 or float64" % (path, floatx))
    # every parameter the layers will draw must be present at its full size
    param = 0
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str) \
                or spec["type"] not in LAYER_TYPES:
            raise ValueError("%s: layer %d has unknown type %r"
                             % (path, i, spec.get("type") if isinstance(spec, dict) else spec))
        try:
            shapes = [shape for _, shape, _ in
                      LAYER_TYPES[spec["type"]].param_shapes_of(spec)]
        except ValueError as exc:
            raise ValueError("%s: layer %d: %s" % (path, i, exc)) from None
        for shape in shapes:
            archive.check("param_%d" % param, shape, floatx, "layer %d describes" % i)
            param += 1
    old_floatx = config.get_floatx()
    rng_state = np.random.get_state()   # building draws weights: keep the user's RNG
    layers = []
    try:
        config.set_floatx(floatx)
        for i, spec in enumerate(specs):
            kwargs = {k: v for k, v in spec.items() if k != "type"}
            try:
                for key in ("filter_shape", "image_shape", "poolsize"):
                    if key in kwargs:
                        kwargs[key] = tuple(kwargs[key])
                layers.append(LAYER_TYPES[spec["type"]](**kwargs))
            except (TypeError, ValueError, OverflowError) as exc:
                raise ValueError("%s: layer %d: %s" % (path, i, exc)) from None
    finally:
        config.set_floatx(old_floatx)
        np.random.set_state(rng_state)
    return layers


def _apply(net, meta, values):
    for p, v in zip(net.params, values):
        np.copyto(p.value, v)
    for layer, seed in zip(net.layers, meta["dropout_seeds"]):
        if hasattr(layer, "dropout_seed"):
            layer.dropout_seed = int(seed)
    net.step_count = int(meta["step_count"])
    if "augment_seed" in meta:      # files written before augmentation lack it
        net.augment_seed = int(meta["augment_seed"])
    net._params_to_engine()


def load(path, engine=None, device=None):
    """The Network saved in ``path``: same layers, weights, predictions."""
    from .network import Network
    path = os.fspath(path)
    archive = _Archive(path)
    meta = archive.meta(NETWORK_FORMAT)
    layers = _build_layers(path, meta, archive)
    _check_common(path, meta, len(layers))
    mbs = meta.get("mini_batch_size")
    if not _is_int(mbs) or mbs < 1:
        raise ValueError("%s: mini_batch_size %r is not a positive integer" % (path, mbs))
    rng_state = np.random.get_state()
    try:
        net = Network(layers, mbs, engine=engine, device=device)
    except ValueError as exc:
        raise ValueError("%s: %s" % (path, exc)) from None
    except MemoryError:
        raise ValueError("%s describes a network too large for this machine's "
                         "memory" % path) from None
    finally:
        np.random.set_state(rng_state)
    _apply(net, meta, _params_from(archive, net))
    return net


def _check_state(path, state, run):
    """A checkpoint's SGD bookkeeping, every field of the right type and range."""
    def bad(what):
        raise ValueError("%s: checkpoint state is corrupt (%s)" % (path, what))

    if not isinstance(state, dict):
        bad("no training state")
    epochs = run["epochs"]
    n_batches = run["n_train"] // run["mini_batch_size"]
    epoch, index = state.get("epoch"), state.get("minibatch_index")
    if not _is_int(epoch) or not 0 <= epoch <= epochs:
        bad("epoch %r outside [0, %d]" % (epoch, epochs))
    if not _is_int(index) or not 0 <= index < max(n_batches, 1) \
            or (epoch == epochs and index):
        bad("minibatch_index %r outside [0, %d)" % (index, n_batches))

    def accuracy(v, none_ok):
        return (v is None and none_ok) or (
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0)

    if not accuracy(state.get("best_validation_accuracy"), False):
        bad("best_validation_accuracy %r" % (state.get("best_validation_accuracy"),))
    if not accuracy(state.get("test_accuracy"), True):
        bad("test_accuracy %r" % (state.get("test_accuracy"),))
    best = state.get("best_iteration")
    if best is not None and (not _is_int(best) or best < 0):
        bad("best_iteration %r" % (best,))
    history = state.get("history")
    stopped = state.get("stopped_early", False)
    if not isinstance(stopped, bool) or (stopped and epoch != epochs):
        bad("stopped_early %r" % (stopped,))
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history) \
            or (len(history) != epoch if not stopped else len(history) > epoch):
        bad("history is not one record per finished epoch")
    return state


def _check_data(path, meta, data):
    """The checkpoint was written with the same data as this call's."""
    saved = meta.get("data")
    if meta["version"] < 2:
        return          # written before fingerprints: load_checkpoint warns
    if not isinstance(saved, dict) or set(saved) != set(DATASETS) or not all(
            isinstance(v, str) and len(v) == _FINGERPRINT_CHARS for v in saved.values()):
        raise ValueError("%s: checkpoint is corrupt (data fingerprints %r)"
                         % (path, saved))
    for name in DATASETS:
        if saved[name] != data[name]:
            raise ValueError(
                "checkpoint %s was written with different %s: the %s of this call "
                "has the same size but other contents (fingerprint %s; the "
                "checkpoint's is %s); to start fresh, delete the file or use another "
                "checkpoint path" % (path, name.replace("_", " "), name, data[name],
                                     saved[name]))


def load_checkpoint(path, net, run, data):
    """The saved SGD state for ``net``, this ``run`` and this ``data``
    (``data_fingerprints(...)``), or None if no file.

    The weights, dropout seeds and step counter are put back into ``net``.
    A checkpoint of another network, another SGD call or other data is
    refused with a ValueError rather than silently mixed in; ``net`` is then
    untouched.
    """
    path = os.fspath(path)
    _check_target(path)     # refused now rather than at the first save, an epoch later
    _remove_stale_tmp(path)
    if not os.path.exists(path):
        return None
    archive = _Archive(path)
    meta = archive.meta(CHECKPOINT_FORMAT)
    mine = _meta(net)
    for key in ("layers", "mini_batch_size", "floatx"):
        if meta.get(key) != mine[key]:
            raise ValueError(
                "checkpoint %s was written by a different network (%s differs: %r "
                "vs %r); remove it or use another path" % (path, key, meta.get(key), mine[key]))
    if meta.get("run") != run:
        raise ValueError(
            "checkpoint %s was written by a different SGD call (%r) than this one (%r); "
            "remove it or use another path" % (path, meta.get("run"), run))
    _check_data(path, meta, data)
    _check_common(path, meta, len(net.layers))
    state = _check_state(path, meta.get("state"), run)
    values = _params_from(archive, net, optimizer_state=True)
    opt_state, opt_step = _optimizer_state_from(path, archive, net, meta)
    best = None
    if "best_param_0" in archive.names():
        best = []
        for i, p in enumerate(net.params):
            a = archive.array("best_param_%d" % i, p.shape, p.dtype)
            if not np.all(np.isfinite(a)):
                raise ValueError("%s: best_param_%d holds NaN or Inf" % (path, i))
            best.append(a)
    _apply(net, meta, values)
    net._plan.state_from_host(opt_state, opt_step)
    if best is not None:
        state = dict(state, best_params=best)
    if meta["version"] < 2:
        warnings.warn(
            "checkpoint %s was written by an older fastnet (format version %d) without "
            "a fingerprint of the training data: resuming without checking that the "
            "data are the same" % (path, meta["version"]), UserWarning, stacklevel=4)
    return state
