"""Saved networks and untrusted files.

* ``net.save`` / ``fastnet.load`` round trip: the same layers, bitwise the
  same predictions, float32 and float64, every layer type; dropout seeds and
  the step counter kept (so training goes on identically); the user's global
  NumPy RNG and floatX untouched by ``load``.
* untrusted files, for ``fastnet.load``, checkpoints and
  ``fastnet.load_data_shared``: a pickle carrying a payload is refused with
  ``pickle.UnpicklingError`` and the payload provably did not run (the same
  bytes do run it under plain ``pickle.loads``); truncated, corrupt,
  inconsistent files raise ``ValueError`` / ``EOFError`` / ``OSError`` with
  the path in the message; a missing file ``FileNotFoundError``.
"""

import builtins
import gzip
import io
import json
import os
import pickle
import subprocess
import zipfile

import numpy as np
import pytest

import fastnet
from fastnet import (ConvPoolLayer, FullyConnectedLayer, Network, ReLU,
                     SoftmaxLayer, persist, tanh)

MBS = 4
CORRUPT = (ValueError, EOFError, OSError)


# ---------------------------------------------------------------------------
# networks
# ---------------------------------------------------------------------------
def every_layer_net(floatx="float32", seed=0):
    fastnet.set_floatx(floatx)
    try:
        np.random.seed(seed)
        layers = [
            ConvPoolLayer(filter_shape=(3, 2, 3, 3), image_shape=(MBS, 2, 9, 8),
                          poolsize=(2, 3), activation_fn=ReLU),       # -> (3, 3, 2)
            ConvPoolLayer(filter_shape=(2, 3, 2, 1), image_shape=(MBS, 3, 3, 2),
                          poolsize=(1, 1), activation_fn=tanh),       # -> (2, 2, 2)
            FullyConnectedLayer(8, 6, activation_fn=fastnet.sigmoid, p_dropout=0.25),
            FullyConnectedLayer(6, 5, activation_fn=fastnet.linear),
            SoftmaxLayer(5, 3, p_dropout=0.5)]
        return Network(layers, MBS, engine="reference")
    finally:
        fastnet.set_floatx("float32")


def some_data(n=24, seed=1):
    rng = np.random.RandomState(seed)
    x = rng.rand(n, 2 * 9 * 8).astype(np.float32)
    return x, (x[:, 0] * 3).astype(np.int64) % 3


def trained(floatx="float32"):
    net = every_layer_net(floatx)
    d = some_data()
    net.SGD(d, 2, MBS, 0.2, d, d, lmbda=0.1)
    return net


def rng_state():
    s = np.random.get_state()
    return s[0], s[1].tobytes(), s[2], s[3], s[4]


@pytest.mark.parametrize("floatx", ["float32", "float64"])
def test_round_trip(tmp_path, floatx):
    net = trained(floatx)
    path = str(tmp_path / "net.npz")
    net.save(path)
    np.random.seed(77)
    before = rng_state()
    loaded = fastnet.load(path, engine="reference")
    assert rng_state() == before, "load changed the global RNG state"
    assert fastnet.get_floatx() == "float32", "load changed floatX"
    assert repr(loaded) == repr(net)
    assert [l.describe() for l in loaded.layers] == [l.describe() for l in net.layers]
    assert loaded.dtype == np.dtype(floatx)
    for a, b in zip(net.params, loaded.params):
        assert a.dtype == b.dtype and a.get_value().tobytes() == b.get_value().tobytes()
    x, y = some_data(n=30, seed=5)
    assert net.output(x).tobytes() == loaded.output(x).tobytes()
    assert np.array_equal(net.predict(x), loaded.predict(x))
    assert net.accuracy((x, y)) == loaded.accuracy((x, y))
    for i in (0, 1, 2):
        assert net.output(x, layer=i).tobytes() == loaded.output(x, layer=i).tobytes()
    assert [getattr(l, "dropout_seed", None) for l in loaded.layers] == \
        [getattr(l, "dropout_seed", None) for l in net.layers]
    assert loaded.step_count == net.step_count
    # dropout masks go on as they would have: a further epoch is bitwise equal
    d = some_data()
    net.SGD(d, 1, MBS, 0.2, d, d)
    loaded.SGD(d, 1, MBS, 0.2, d, d)
    for a, b in zip(net.params, loaded.params):
        assert a.get_value().tobytes() == b.get_value().tobytes()


def test_save_alias_exact_path_and_no_temp_files(tmp_path):
    net = trained()
    path = str(tmp_path / "model")              # no .npz suffix is added
    fastnet.save(net, path)
    assert os.listdir(str(tmp_path)) == ["model"]
    fastnet.save(net, path)                     # overwrite
    assert os.listdir(str(tmp_path)) == ["model"]
    assert fastnet.load(path, engine="reference").predict(some_data()[0]).shape == (24,)


def test_load_into_another_engine_when_available(tmp_path):
    net = trained()
    path = str(tmp_path / "net.npz")
    net.save(path)
    for engine in fastnet.available_engines():
        if engine == "cuda":
            continue
        loaded = fastnet.load(path, engine=engine)
        np.testing.assert_allclose(loaded.output(some_data()[0]), net.output(some_data()[0]),
                                   rtol=1e-4, atol=1e-6)


def test_nan_network_not_saved(tmp_path):
    net = trained()
    net.layers[2].w.value[1, 1] = np.nan
    path = str(tmp_path / "net.npz")
    with pytest.raises(ValueError, match="NaN") as info:
        net.save(path)
    assert path in str(info.value)
    assert os.listdir(str(tmp_path)) == []


def test_save_into_missing_directory_names_path(tmp_path):
    path = str(tmp_path / "no" / "such" / "net.npz")
    with pytest.raises(FileNotFoundError) as info:
        trained().save(path)
    assert path in str(info.value)


# ---------------------------------------------------------------------------
# payloads: each would run code under plain pickle.loads
# ---------------------------------------------------------------------------
class Payload(object):
    """Unpickling this runs ``how`` to create the file ``marker``."""

    def __init__(self, marker, how):
        self.marker = marker
        self.how = how

    def __reduce__(self):
        m = self.marker
        code = "open(%r, 'w').close()" % m
        if self.how == "os.system":
            return (os.system, ("touch '%s'" % m,))
        if self.how == "exec":
            return (builtins.exec, (code,))
        if self.how == "eval":
            return (builtins.eval, ("__import__('os').open(%r, 65)" % m,))
        if self.how == "subprocess":
            return (subprocess.call, (["touch", m],))
        if self.how == "numpy-runstring":
            from numpy.testing._private.utils import runstring
            return (runstring, (code, {}))
        if self.how == "nested-pickle":
            return (pickle.loads, (pickle.dumps(Payload(m, "exec")),))
        raise ValueError(self.how)


HOWS = ["os.system", "exec", "eval", "subprocess", "numpy-runstring", "nested-pickle"]


def payload_bytes(marker, how, protocol, wrap=None):
    """A pickle of the payload, alone or inside a book-shaped tuple."""
    obj = Payload(marker, how)
    if wrap == "in-data":        # hidden inside ((x, y), (x, y), (x, y))
        x = np.zeros((2, 784), np.float32)
        y = np.zeros(2, np.int64)
        obj = ((x, y), (x, [obj]), (x, y))
    return pickle.dumps(obj, protocol=protocol)


def live(blob, marker):
    """Control: plain pickle.loads of ``blob`` does run the payload."""
    assert not os.path.exists(marker)
    try:
        pickle.loads(blob)
    except Exception:    # noqa: BLE001 -- a payload may fail after running
        pass
    ran = os.path.exists(marker)
    if ran:
        os.unlink(marker)
    return ran


@pytest.mark.parametrize("how", HOWS)
def test_payloads_are_live(tmp_path, how):
    """The payloads below are real: plain pickle runs every one of them."""
    marker = str(tmp_path / "ran")
    for protocol in (0, 2, 5):
        assert live(payload_bytes(marker, how, protocol), marker), (how, protocol)


def _payload_files(tmp_path, how):
    marker = str(tmp_path / "PAYLOAD-RAN")
    files = []
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        for wrap in (None, "in-data"):
            blob = payload_bytes(marker, how, protocol, wrap)
            for gz in (False, True):
                for ext in (".npz", ".pkl"):
                    name = "p%d-%s%s%s" % (protocol, wrap or "bare", ext, ".gz" if gz else "")
                    path = str(tmp_path / name)
                    with open(path, "wb") as f:
                        f.write(gzip.compress(blob) if gz else blob)
                    files.append(path)
    # a pickled object array inside an otherwise proper .npz
    path = str(tmp_path / "object-array.npz")
    meta = json.dumps({"format": persist.NETWORK_FORMAT, "version": persist.FORMAT_VERSION})
    arr = np.empty(1, dtype=object)
    arr[0] = Payload(marker, how)
    np.savez(path, meta_json=np.array(meta), param_0=arr)
    files.append(path)
    return marker, files


@pytest.mark.parametrize("how", HOWS)
def test_fastnet_load_refuses_pickles(tmp_path, how):
    marker, files = _payload_files(tmp_path, how)
    for path in files:
        with pytest.raises(pickle.UnpicklingError) as info:
            fastnet.load(path, engine="reference")
        assert path in str(info.value)
        assert not os.path.exists(marker), "payload ran loading %s" % path


@pytest.mark.parametrize("how", ["os.system", "numpy-runstring"])
def test_checkpoint_refuses_pickles(tmp_path, how):
    marker, files = _payload_files(tmp_path, how)
    d = some_data()
    for path in files:
        net = every_layer_net()
        before = [p.get_value() for p in net.params]
        with pytest.raises(pickle.UnpicklingError):
            net.SGD(d, 1, MBS, 0.1, d, d, checkpoint=path)
        assert not os.path.exists(marker), "payload ran resuming from %s" % path
        assert all(np.array_equal(a, p.get_value()) for a, p in zip(before, net.params))


@pytest.mark.parametrize("how", HOWS)
def test_load_data_shared_refuses_pickles(tmp_path, how):
    marker, files = _payload_files(tmp_path, how)
    for path in files:
        if path.endswith("object-array.npz"):
            exc = (pickle.UnpicklingError, ValueError)   # not pickled data anyway
        else:
            exc = pickle.UnpicklingError
        with pytest.raises(exc) as info:
            fastnet.load_data_shared(path)
        assert path in str(info.value), str(info.value)
        assert not os.path.exists(marker), "payload ran loading %s" % path


def _book_pickle(path, protocol=2, gz=True):
    rng = np.random.RandomState(0)
    part = lambda n: (rng.rand(n, 784).astype(np.float32), rng.randint(0, 10, n))
    blob = pickle.dumps((part(20), part(10), part(10)), protocol=protocol)
    with open(path, "wb") as f:
        f.write(gzip.compress(blob) if gz else blob)


def test_load_data_shared_still_loads_honest_pickles(tmp_path):
    """Control for the refusals: an honest book-shaped pickle loads."""
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        path = str(tmp_path / ("book-%d.pkl.gz" % protocol))
        _book_pickle(path, protocol)
        train, valid, test = fastnet.load_data_shared(path)
        assert fastnet.size(train) == 20 and fastnet.size(test) == 10


# ---------------------------------------------------------------------------
# corrupt and inconsistent files
# ---------------------------------------------------------------------------
def expect_corrupt(load, path, match=None, exc=CORRUPT):
    with pytest.raises(exc) as info:
        load(path)
    msg = str(info.value)
    assert path in msg, msg
    if match:
        assert match in msg, msg
    return msg


def load_net(path):
    return fastnet.load(path, engine="reference")


def load_ck(path):
    net = every_layer_net()
    d = some_data()
    return net.SGD(d, 2, MBS, 0.2, d, d, lmbda=0.1, checkpoint=path)


@pytest.fixture
def saved(tmp_path):
    net = trained()
    path = str(tmp_path / "net.npz")
    net.save(path)
    return net, path, open(path, "rb").read()


def rewrite(path, meta_update=None, arrays_update=None, drop=(), compressed=False):
    """The saved file with its meta or arrays changed (written honestly)."""
    meta, arrays = persist.read_file(path, persist.NETWORK_FORMAT)
    meta.update(meta_update or {})
    arrays = {k: v for k, v in arrays.items() if k not in drop and k != "meta_json"}
    arrays.update(arrays_update or {})
    (np.savez_compressed if compressed else np.savez)(
        path, meta_json=np.array(json.dumps(meta)), **arrays)


def test_missing_file(tmp_path):
    path = str(tmp_path / "nothing.npz")
    for load in (load_net, fastnet.load_data_shared):
        with pytest.raises(FileNotFoundError) as info:
            load(path)
        assert path in str(info.value)


def test_directory_instead_of_file(tmp_path):
    path = str(tmp_path)
    with pytest.raises(OSError) as info:
        load_net(path)
    assert path in str(info.value)


@pytest.mark.parametrize("load", [load_net, load_ck], ids=["load", "checkpoint"])
def test_truncated_at_every_point(saved, load):
    _, path, blob = saved
    for cut in list(range(0, 64)) + list(range(64, len(blob), 97)) + [len(blob) - 1]:
        with open(path, "wb") as f:
            f.write(blob[:cut])
        expect_corrupt(load, path)


def test_random_bytes_and_other_formats(tmp_path):
    rng = np.random.RandomState(0)
    cases = {
        "random.npz": rng.bytes(5000),
        "empty.npz": b"",
        "text.npz": b"hello, this is not a network\n",
        "gzip-random.npz": gzip.compress(rng.bytes(3000)),
        "npy.npz": b"",
        "empty-zip.npz": b"",
        "zip-other.npz": b"",
    }
    np.save(str(tmp_path / "tmp.npy"), np.zeros(3))
    cases["npy.npz"] = open(str(tmp_path / "tmp.npy"), "rb").read()
    buf = io.BytesIO()
    zipfile.ZipFile(buf, "w").close()
    cases["empty-zip.npz"] = buf.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "hello")
    cases["zip-other.npz"] = buf.getvalue()
    for name, content in cases.items():
        path = str(tmp_path / name)
        with open(path, "wb") as f:
            f.write(content)
        expect_corrupt(load_net, path)
        expect_corrupt(load_ck, path)
        expect_corrupt(fastnet.load_data_shared, path)


def test_many_random_random_files(tmp_path):
    """Random bytes are never mistaken for a pickle (which would be an
    UnpicklingError rather than the ValueError of a corrupt file)."""
    rng = np.random.RandomState(1)
    path = str(tmp_path / "r.npz")
    for i in range(300):
        with open(path, "wb") as f:
            f.write(rng.bytes(rng.randint(1, 400)))
        expect_corrupt(load_net, path)


def test_flipped_bytes(saved):
    """Every single-byte corruption: loads (untouched bytes that matter
    nothing) or a clean error with the path -- never another exception."""
    net, path, blob = saved
    rng = np.random.RandomState(2)
    loaded_ok = 0
    for pos in rng.choice(len(blob), 250, replace=False):
        bad = bytearray(blob)
        bad[pos] ^= 1 << rng.randint(8)
        with open(path, "wb") as f:
            f.write(bytes(bad))
        try:
            loaded = load_net(path)
        except CORRUPT as exc:
            assert path in str(exc), str(exc)
            continue
        loaded_ok += 1
        x = some_data()[0]
        assert np.all(np.isfinite(loaded.output(x)))
    assert loaded_ok < 250


def test_zip_without_meta(saved):
    _, path, _ = saved
    np.savez(path, param_0=np.zeros(3))
    expect_corrupt(load_net, path, "meta_json")
    expect_corrupt(load_ck, path, "meta_json")


def test_wrong_format(saved, tmp_path):
    net, path, _ = saved
    expect_corrupt(load_ck, path, "fastnet-checkpoint")     # a network is no checkpoint
    ck = str(tmp_path / "ck.npz")
    d = some_data()
    every_layer_net().SGD(d, 1, MBS, 0.1, d, d, checkpoint=ck)
    expect_corrupt(load_net, ck, "fastnet-network")         # nor the reverse
    rewrite(path, {"format": "keras"})
    expect_corrupt(load_net, path, "keras")


@pytest.mark.parametrize("version", [0, 2, 99, "1", None])
def test_wrong_version(saved, version):
    _, path, _ = saved
    rewrite(path, {"version": version})
    expect_corrupt(load_net, path, "version")


def test_nan_params(saved):
    net, path, _ = saved
    w = net.layers[2].w.get_value()
    w[0, 0] = np.nan
    rewrite(path, arrays_update={"param_4": w})
    expect_corrupt(load_net, path, "param_4")
    w[0, 0] = np.inf
    rewrite(path, arrays_update={"param_4": w})
    expect_corrupt(load_net, path, "NaN or Inf")


@pytest.mark.parametrize("change", ["shape", "transposed", "dtype", "missing", "extra",
                                    "int", "structured"])
def test_wrong_params(saved, change):
    net, path, _ = saved
    w = net.layers[2].w.get_value()            # param_4, (8, 6) float32
    update, drop = {}, ()
    if change == "shape":
        update = {"param_4": w[:, :5]}
    elif change == "transposed":
        update = {"param_4": np.ascontiguousarray(w.T)}
    elif change == "dtype":
        update = {"param_4": w.astype(np.float64)}
    elif change == "int":
        update = {"param_4": w.astype(np.int32)}
    elif change == "structured":
        update = {"param_4": np.zeros(48, dtype=[("a", "f4")]).reshape(8, 6)}
    elif change == "missing":
        drop = ("param_9",)
    elif change == "extra":
        update = {"param_10": np.zeros(3, np.float32)}
    rewrite(path, arrays_update=update, drop=drop)
    expect_corrupt(load_net, path)


def test_compressed_file_refused(saved):
    _, path, _ = saved
    rewrite(path, compressed=True)
    expect_corrupt(load_net, path, "compressed")


def test_header_promising_more_than_the_file_holds(saved):
    """An .npy header claiming a huge array in a small member: refused before
    anything is allocated."""
    _, path, blob = saved
    meta, arrays = persist.read_file(path, persist.NETWORK_FORMAT)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, a in arrays.items():
            member = io.BytesIO()
            np.save(member, a)
            data = member.getvalue()
            if name == "param_4":      # rewrite the header's shape in place
                start = np.lib.format.MAGIC_LEN + 2
                end = data.index(b"\n", start) + 1
                hdr = data[start:end].decode("latin1")
                big = hdr.rstrip(" \n").replace("(8, 6)", "(800000, 600000)")
                assert big != hdr.rstrip(" \n") and len(big) < len(hdr)
                data = data[:start] + (big.ljust(len(hdr) - 1) + "\n").encode("latin1") \
                    + data[end:]
            z.writestr(name + ".npy", data)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    expect_corrupt(load_net, path, "param_4")


@pytest.mark.parametrize("spec_change", [
    {"n_in": 10 ** 9},                      # a giant layer: refused before allocating
    {"n_in": -3},
    {"n_in": "8"},
    {"activation_fn": "os.system"},
    {"activation_fn": {"__class__": "x"}},
    {"p_dropout": 1.5},
    {"type": "Lambda"},
    {"type": ["FullyConnectedLayer"]},
    {"evil": "__import__('os').system('touch x')"},
])
def test_bad_layer_specs(saved, spec_change):
    _, path, _ = saved
    meta, _ = persist.read_file(path, persist.NETWORK_FORMAT)
    layers = meta["layers"]
    layers[2].update(spec_change)
    rewrite(path, {"layers": layers})
    expect_corrupt(load_net, path)


@pytest.mark.parametrize("change", [
    {"layers": []}, {"layers": "conv"}, {"layers": [None]},
    {"floatx": "float16"}, {"floatx": None},
    {"mini_batch_size": 0}, {"mini_batch_size": "4"}, {"mini_batch_size": 5},
    {"mini_batch_size": [4]},
    {"dropout_seeds": ["x"] * 5}, {"dropout_seeds": [-1] * 5}, {"dropout_seeds": [2 ** 64] * 5},
    {"dropout_seeds": []}, {"dropout_seeds": None},
    {"step_count": -1}, {"step_count": "7"}, {"step_count": None},
])
def test_bad_meta_fields(saved, change):
    _, path, _ = saved
    rewrite(path, change)
    expect_corrupt(load_net, path)


def test_meta_not_json_or_not_text(saved):
    _, path, _ = saved
    _, arrays = persist.read_file(path, persist.NETWORK_FORMAT)
    arrays = {k: v for k, v in arrays.items() if k != "meta_json"}
    np.savez(path, meta_json=np.array("{not json"), **arrays)
    expect_corrupt(load_net, path, "JSON")
    np.savez(path, meta_json=np.arange(3), **arrays)
    expect_corrupt(load_net, path, "meta_json")
    np.savez(path, meta_json=np.array("[1, 2]"), **arrays)
    expect_corrupt(load_net, path)


@pytest.mark.parametrize("change", [
    {"epoch": -1}, {"epoch": 99}, {"epoch": "1"}, {"epoch": None},
    {"minibatch_index": 10 ** 6}, {"minibatch_index": -2}, {"minibatch_index": 1.5},
    {"best_validation_accuracy": "high"}, {"best_validation_accuracy": 7.0},
    {"test_accuracy": [1]}, {"best_iteration": -5}, {"history": None},
    {"history": [1, 2, 3]},
])
def test_bad_checkpoint_state(tmp_path, change):
    ck = str(tmp_path / "ck.npz")
    load_ck(ck)
    meta, arrays = persist.read_file(ck, persist.CHECKPOINT_FORMAT)
    meta["state"].update(change)
    arrays.pop("meta_json")
    np.savez(ck, meta_json=np.array(json.dumps(meta)), **arrays)
    net = every_layer_net()
    before = [p.get_value() for p in net.params]
    d = some_data()
    with pytest.raises(ValueError) as info:
        net.SGD(d, 2, MBS, 0.2, d, d, lmbda=0.1, checkpoint=ck)
    assert ck in str(info.value)
    assert all(np.array_equal(a, p.get_value()) for a, p in zip(before, net.params))


def test_load_data_shared_corrupt_files(tmp_path):
    path = str(tmp_path / "book.pkl.gz")
    _book_pickle(path)
    blob = open(path, "rb").read()
    raw = gzip.decompress(blob)
    cases = {
        "truncated.pkl.gz": blob[:len(blob) // 2],
        "truncated-header.pkl.gz": blob[:5],
        "truncated.pkl": raw[:len(raw) // 3],
        "random.pkl.gz": gzip.compress(np.random.RandomState(3).bytes(4000)),
        "flipped.pkl.gz": blob[:100] + bytes([blob[100] ^ 0xFF]) + blob[101:],
        "wrong-shape.pkl": pickle.dumps(((np.zeros((3, 5)), np.zeros(3)),) * 3, protocol=2),
        "not-three.pkl": pickle.dumps([1, 2], protocol=2),
        "nan.pkl": pickle.dumps(((np.full((3, 784), np.nan), np.zeros(3, int)),) * 3),
    }
    for name, content in cases.items():
        p = str(tmp_path / name)
        with open(p, "wb") as f:
            f.write(content)
        expect_corrupt(fastnet.load_data_shared, p)
    npz = str(tmp_path / "arrays.npz")
    np.savez(npz, train_x=np.zeros((3, 784)))
    expect_corrupt(fastnet.load_data_shared, npz)
