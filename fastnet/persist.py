"""Saving networks and training checkpoints, and loading them safely.

Both are ``.npz`` files read with ``allow_pickle=False``: plain arrays plus
one JSON text, so nothing in a file is ever executed.  A checkpoint is
written atomically (temporary file, fsync, rename), so a crash at any moment
leaves either the old checkpoint or the new one, never a torn file.

    net.save(path) / fastnet.save(net, path)      the layers and weights
    fastnet.load(path)                            a Network, same predictions
    net.SGD(..., checkpoint=path)                 resumable training
"""

import io
import json
import os
import pickle
import zipfile

import numpy as np

NETWORK_FORMAT = "fastnet-network"
CHECKPOINT_FORMAT = "fastnet-checkpoint"
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------
def _meta(net):
    return {"layers": [layer.describe() for layer in net.layers],
            "mini_batch_size": net.mini_batch_size,
            "floatx": str(net.dtype),
            "dropout_seeds": [str(getattr(l, "dropout_seed", 0)) for l in net.layers],
            "step_count": int(net.step_count)}


def _write_atomic(path, arrays):
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, ".%s.tmp-%d" % (os.path.basename(path), os.getpid()))
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
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


def _arrays(net, meta):
    net._params_to_host()
    arrays = {"meta_json": np.array(json.dumps(meta))}
    for i, p in enumerate(net.params):
        arrays["param_%d" % i] = p.get_value(borrow=True)
    return arrays


def save(net, path):
    """Write ``net``'s layers and weights to ``path`` (an .npz file)."""
    meta = _meta(net)
    meta.update(format=NETWORK_FORMAT, version=FORMAT_VERSION)
    _write_atomic(path, _arrays(net, meta))


def save_checkpoint(path, net, run, state):
    """Write the whole training state of an SGD call to ``path``."""
    meta = _meta(net)
    meta.update(format=CHECKPOINT_FORMAT, version=FORMAT_VERSION, run=run, state=state)
    _write_atomic(path, _arrays(net, meta))


# ---------------------------------------------------------------------------
# reading (untrusted input)
# ---------------------------------------------------------------------------
def _read(path, expected_format):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError("no such file: %s" % path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:1] == b"\x80" or head[:1] in (b"(", b"c"):
        raise pickle.UnpicklingError(
            "%s is a pickle; fastnet files are .npz and fastnet never unpickles "
            "them (a pickle can run code)" % path)
    if head != b"PK\x03\x04":
        raise ValueError("%s is not a fastnet .npz file (bad header %r)" % (path, head))
    try:
        with open(path, "rb") as f:
            data = f.read()
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as exc:
        raise ValueError("%s is truncated or corrupt: %s" % (path, exc)) from None
    except ValueError as exc:
        raise ValueError("%s could not be read: %s" % (path, exc)) from None
    if "meta_json" not in arrays:
        raise ValueError("%s has no meta_json: not a fastnet file" % path)
    try:
        meta = json.loads(str(arrays["meta_json"]))
    except ValueError as exc:
        raise ValueError("%s: meta_json is not valid JSON: %s" % (path, exc)) from None
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        raise ValueError("%s: expected a %s file, found format %r"
                         % (path, expected_format,
                            meta.get("format") if isinstance(meta, dict) else None))
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError("%s: format version %r is not supported (this fastnet reads "
                         "version %d)" % (path, meta.get("version"), FORMAT_VERSION))
    return meta, arrays


def _params_from(path, arrays, net):
    values = []
    for i, p in enumerate(net.params):
        key = "param_%d" % i
        if key not in arrays:
            raise ValueError("%s: %s is missing" % (path, key))
        a = arrays[key]
        if a.shape != p.shape or a.dtype != p.dtype:
            raise ValueError("%s: %s has shape %s dtype %s, the network needs %s %s"
                             % (path, key, a.shape, a.dtype, p.shape, p.dtype))
        if not np.all(np.isfinite(a)):
            raise ValueError("%s: %s holds NaN or Inf" % (path, key))
        values.append(a)
    return values


def _build_layers(path, meta):
    from . import config
    from .layers import LAYER_TYPES
    specs = meta.get("layers")
    if not isinstance(specs, list) or not specs:
        raise ValueError("%s: no layers described" % path)
    floatx = meta.get("floatx")
    if floatx not in ("float32", "float64"):
        raise ValueError("%s: floatx %r is not float32 or float64" % (path, floatx))
    old_floatx = config.get_floatx()
    rng_state = np.random.get_state()   # building draws weights: keep the user's RNG
    layers = []
    try:
        config.set_floatx(floatx)
        for i, spec in enumerate(specs):
            if not isinstance(spec, dict) or spec.get("type") not in LAYER_TYPES:
                raise ValueError("%s: layer %d has unknown type %r"
                                 % (path, i, spec.get("type") if isinstance(spec, dict) else spec))
            kwargs = {k: v for k, v in spec.items() if k != "type"}
            for k in ("filter_shape", "image_shape", "poolsize"):
                if k in kwargs:
                    kwargs[k] = tuple(kwargs[k])
            try:
                layers.append(LAYER_TYPES[spec["type"]](**kwargs))
            except TypeError as exc:
                raise ValueError("%s: layer %d: %s" % (path, i, exc)) from None
    finally:
        config.set_floatx(old_floatx)
        np.random.set_state(rng_state)
    return layers


def _apply(net, meta, values):
    for p, v in zip(net.params, values):
        np.copyto(p.value, v)
    seeds = meta.get("dropout_seeds", [])
    for layer, seed in zip(net.layers, seeds):
        if hasattr(layer, "dropout_seed"):
            layer.dropout_seed = int(seed)
    net.step_count = int(meta.get("step_count", 0))
    net._params_to_engine()


def load(path, engine=None, device=None):
    """The Network saved in ``path``: same layers, weights, predictions."""
    from .network import Network
    meta, arrays = _read(path, NETWORK_FORMAT)
    layers = _build_layers(path, meta)
    rng_state = np.random.get_state()
    try:
        net = Network(layers, int(meta.get("mini_batch_size", 0)), engine=engine,
                      device=device)
    finally:
        np.random.set_state(rng_state)
    _apply(net, meta, _params_from(path, arrays, net))
    return net


def load_checkpoint(path, net, run):
    """The saved SGD state for ``net`` and this ``run``, or None if no file.

    The weights, dropout seeds and step counter are put back into ``net``.
    A checkpoint of another network or another SGD call is refused with a
    ValueError rather than silently mixed in.
    """
    if not os.path.exists(os.fspath(path)):
        return None
    meta, arrays = _read(path, CHECKPOINT_FORMAT)
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
    state = meta.get("state")
    if not isinstance(state, dict):
        raise ValueError("%s: checkpoint has no training state" % path)
    _apply(net, meta, _params_from(path, arrays, net))
    return state
