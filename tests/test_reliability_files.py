"""Files on disk and hostile files (issue #15).

Writing (``fastnet.save``, checkpoints): the temporary file is made by
mkstemp (a planted link at a guessable name is never followed); only a
regular file is ever replaced (directory, FIFO, device, symbolic link are
refused); nothing is left behind by a failed or interrupted write; many
threads and processes saving to one path never leave it torn -- the last
writer wins, whole -- and a writer killed mid-write leaves the previous
file.

Reading (``fastnet.load``, ``load_data_shared``, ``load_idx``): only
regular files are read, within a size limit; a gzip bomb stops one byte
past the size the IDX header declares; sizes claimed by .npz headers and
pickle opcodes are checked before anything is allocated; meta_json is
limited in length and depth.  Memory is measured with tracemalloc (NumPy
reports its allocations to it), never time.
"""

import gzip
import io
import json
import os
import pickle
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastnet
from fastnet import FullyConnectedLayer, Network, SoftmaxLayer, persist, safeio
from fastnet.data import NPZ_NAMES, load_idx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnet.__file__)))
MBS = 2


def small_net(seed):
    np.random.seed(seed)
    return Network([FullyConnectedLayer(6, 5), SoftmaxLayer(5, 3)], MBS,
                   engine="reference")


def params(net):
    return [p.get_value().tobytes() for p in net.params]


def leftovers(directory):
    return [n for n in os.listdir(str(directory)) if ".tmp" in n]


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


# ---------------------------------------------------------------------------
# writing: what is at the target path
# ---------------------------------------------------------------------------
def _refused(path, match):
    with pytest.raises(ValueError, match=match) as info:
        fastnet.save(small_net(0), path)
    assert str(path) in str(info.value)


def test_save_refuses_directory_fifo_and_device(tmp_path):
    target = tmp_path / "adir"
    target.mkdir()
    _refused(str(target), "is a directory")
    assert target.is_dir()
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    _refused(str(fifo), "FIFO")
    assert stat.S_ISFIFO(os.lstat(str(fifo)).st_mode)
    if os.path.exists("/dev/full"):
        _refused("/dev/full", "character device")
        assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)
    assert leftovers(tmp_path) == []


def test_save_refuses_symlink_and_leaves_link_and_target(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "net.npz"
    os.symlink(str(victim), str(link))
    _refused(str(link), "symbolic link")
    assert os.readlink(str(link)) == str(victim) and victim.read_text() == "precious"
    dangling = tmp_path / "dangling.npz"
    os.symlink(str(tmp_path / "nowhere"), str(dangling))
    _refused(str(dangling), "symbolic link")
    assert not (tmp_path / "nowhere").exists()
    assert leftovers(tmp_path) == []


def test_checkpoint_path_that_cannot_be_written_is_refused_before_training(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "ck.npz"
    os.symlink(str(victim), str(link))
    net = small_net(0)
    before = params(net)
    x = np.random.RandomState(0).rand(8, 6).astype(np.float32)
    y = np.arange(8) % 3
    with pytest.raises(ValueError, match="symbolic link"):
        net.SGD((x, y), 1, MBS, 0.1, (x, y), (x, y), checkpoint=str(link))
    assert params(net) == before and victim.read_text() == "precious"


def test_planted_link_at_old_predictable_temp_name_not_followed(tmp_path):
    """fastnet once wrote to '.NAME.tmp-PID': an attacker able to create
    files in the directory could plant a link there and have the save
    overwrite the link's target.  mkstemp's names cannot be planted."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    path = tmp_path / "net.npz"
    for name in (".net.npz.tmp-%d" % os.getpid(), ".net.npz.tmp-%d-" % os.getpid()):
        os.symlink(str(victim), str(tmp_path / name))
    net = small_net(1)
    fastnet.save(net, str(path))
    assert victim.read_text() == "precious"
    assert stat.S_ISREG(os.lstat(str(path)).st_mode)
    assert params(fastnet.load(str(path), engine="reference")) == params(net)


def test_saved_file_mode_like_a_plain_open(tmp_path):
    path = str(tmp_path / "net.npz")
    mask = os.umask(0o022)
    os.umask(mask)
    fastnet.save(small_net(0), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask
    os.chmod(path, 0o640)
    fastnet.save(small_net(1), path)            # an existing file keeps its mode
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


@pytest.mark.parametrize("fault", [KeyboardInterrupt, OSError])
def test_interrupted_or_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch, fault):
    path = str(tmp_path / "net.npz")
    old = small_net(0)
    fastnet.save(old, path)
    real = np.savez

    def savez(f, **arrays):
        f.write(b"PK\x03\x04 the first half of a file")
        if fault is OSError:
            raise OSError(28, "No space left on device")
        raise KeyboardInterrupt
    monkeypatch.setattr(persist.np, "savez", savez)
    with pytest.raises(fault) as info:
        fastnet.save(small_net(1), path)
    if fault is OSError:
        assert path in str(info.value) and info.value.errno == 28
    monkeypatch.setattr(persist.np, "savez", real)
    assert leftovers(tmp_path) == []
    assert params(fastnet.load(path, engine="reference")) == params(old)


# ---------------------------------------------------------------------------
# writing: concurrency
# ---------------------------------------------------------------------------
def test_threads_saving_one_path_never_tear_it(tmp_path):
    """8 threads x 50 saves of 8 different networks, 2 threads reading all
    along: every read is one of the 8 networks, whole; the file ends as one
    of them; no temporary file is left."""
    path = str(tmp_path / "net.npz")
    nets = [small_net(seed) for seed in range(8)]
    expected = {tuple(params(n)) for n in nets}
    assert len(expected) == 8
    fastnet.save(nets[0], path)
    errors, reads = [], []
    writing = threading.Event()
    writing.set()

    def write(net):
        try:
            for _ in range(50):
                fastnet.save(net, path)
        except BaseException as exc:        # noqa: BLE001 -- reported below
            errors.append(exc)

    def read():
        try:
            while writing.is_set():
                got = tuple(params(fastnet.load(path, engine="reference")))
                assert got in expected, "a read found a network nobody saved"
                reads.append(got)
        except BaseException as exc:        # noqa: BLE001
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(n,)) for n in nets]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    writing.clear()
    for t in readers:
        t.join()
    assert not errors, errors
    assert reads
    assert tuple(params(fastnet.load(path, engine="reference"))) in expected
    assert leftovers(tmp_path) == []


_WRITER = r"""
import os, sys, time, numpy as np
import fastnet
from fastnet import FullyConnectedLayer, Network, SoftmaxLayer, persist
path, seed, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
np.random.seed(seed)
net = Network([FullyConnectedLayer(6, 5), SoftmaxLayer(5, 3)], 2, engine="reference")
if mode == "loop":
    while not os.path.exists(sys.argv[5]):      # all writers start together
        time.sleep(0.005)
    for _ in range(int(sys.argv[4])):
        fastnet.save(net, path)
else:   # hang halfway through writing the temporary file, to be SIGKILLed
    real = np.savez
    def savez(f, **arrays):
        import io
        buf = io.BytesIO()
        real(buf, **arrays)
        f.write(buf.getvalue()[:len(buf.getvalue()) // 2])
        f.flush()
        os.fsync(f.fileno())
        open(sys.argv[4], "w").write("ready")
        time.sleep(600)
    persist.np.savez = savez
    fastnet.save(net, path)
"""


def _spawn(*args):
    return subprocess.Popen([sys.executable, "-c", _WRITER] + [str(a) for a in args],
                            env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_processes_saving_one_path_never_tear_it(tmp_path):
    path = str(tmp_path / "net.npz")
    seeds = (11, 12, 13)
    expected = {tuple(params(small_net(s))) for s in seeds}
    go = str(tmp_path / "go")
    procs = [_spawn(path, s, "loop", 40, go) for s in seeds]
    time.sleep(0.5)
    open(go, "w").close()
    while any(p.poll() is None for p in procs):
        if os.path.exists(path):
            assert tuple(params(fastnet.load(path, engine="reference"))) in expected
        else:
            time.sleep(0.005)
    for p in procs:
        out, err = p.communicate()
        assert p.returncode == 0, err
    assert tuple(params(fastnet.load(path, engine="reference"))) in expected
    assert leftovers(tmp_path) == []


def test_sigkilled_writer_leaves_previous_file_and_its_temp_is_cleaned(tmp_path):
    path = str(tmp_path / "net.npz")
    good = small_net(21)
    fastnet.save(good, path)
    ready = str(tmp_path / "ready")
    proc = _spawn(path, 22, "hang", ready)
    deadline = time.time() + 120
    while not os.path.exists(ready):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, "the writer never reached its write"
        time.sleep(0.02)
    torn = leftovers(tmp_path)
    assert len(torn) == 1 and str(proc.pid) in torn[0]
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert params(fastnet.load(path, engine="reference")) == params(good)
    newer = small_net(23)
    fastnet.save(newer, path)               # removes the dead writer's file
    assert leftovers(tmp_path) == []
    assert params(fastnet.load(path, engine="reference")) == params(newer)


# ---------------------------------------------------------------------------
# reading: what is at the path
# ---------------------------------------------------------------------------
def _all_loaders():
    return [lambda p: fastnet.load(p, engine="reference"), fastnet.load_data_shared,
            load_idx]


def test_load_refuses_devices_fifos_and_directories(tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)        # opening it for reading would wait for a writer forever
    for load in _all_loaders():
        for path in ("/dev/zero", fifo):
            if not os.path.exists(path):
                continue
            with pytest.raises(ValueError, match="not a regular file") as info:
                load(path)
            assert path in str(info.value)
    with pytest.raises(IsADirectoryError) as info:
        fastnet.load(str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_file_over_the_size_limit_refused_before_reading(tmp_path, monkeypatch):
    path = str(tmp_path / "big.npz")
    fastnet.save(small_net(0), path)
    monkeypatch.setattr(safeio, "MAX_BYTES", os.path.getsize(path) - 1)
    for load in _all_loaders():
        with pytest.raises(ValueError, match="over fastnet's limit") as info:
            load(path)
        assert path in str(info.value)


# ---------------------------------------------------------------------------
# reading: gzip bombs and size claims
# ---------------------------------------------------------------------------
def _gzip_bomb(path, head, gib=2):
    """``head`` then ``gib`` GiB of zeros, gzip'd (~1 MB per GiB): members
    of 16 MiB of zeros each, compressed once and repeated -- a gzip file may
    hold many members, and readers inflate them as one stream."""
    zeros = gzip.compress(b"\0" * (16 << 20), compresslevel=9)
    with open(path, "wb") as f:
        f.write(gzip.compress(head))
        for _ in range(gib * 64):
            f.write(zeros)
    return path


def _peak_bytes(fn, *args):
    """``(exception raised by fn(*args), peak traced memory in bytes)``."""
    tracemalloc.start()
    try:
        fn(*args)
    except Exception as exc:        # noqa: BLE001 -- returned to the caller
        raised = exc
    else:
        raised = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return raised, peak


def _idx_header(dims, code=0x08):
    return struct.pack(">BBBB", 0, 0, code, len(dims)) + struct.pack(">%dI" % len(dims), *dims)


def test_gzip_idx_bomb_stops_at_the_declared_size(tmp_path):
    """2 MB of gzip inflating to 2 GiB behind a header declaring 10 images
    of 28x28: reading stops one byte past the 7,856 declared bytes."""
    path = _gzip_bomb(str(tmp_path / "train-images-idx3-ubyte.gz"), _idx_header((10, 28, 28)))
    assert os.path.getsize(path) < 3 << 20
    raised, peak = _peak_bytes(load_idx, path)
    assert isinstance(raised, ValueError), raised
    msg = str(raised)
    assert path in msg and "10x28x28" in msg and "7856 bytes" in msg
    assert peak < 32 << 20, "the bomb was inflated into memory (%d bytes)" % peak


def test_gzip_idx_claims_beyond_limits_refused_before_allocating(tmp_path):
    huge = str(tmp_path / "huge-images-idx3-ubyte.gz")       # 100 GB claimed
    with open(huge, "wb") as f:
        f.write(gzip.compress(_idx_header((60000, 60000, 28)) + b"\0" * 1000))
    raised, peak = _peak_bytes(load_idx, huge)
    assert isinstance(raised, ValueError) and "over fastnet's limit" in str(raised), raised
    assert huge in str(raised) and "60000x60000x28" in str(raised)
    impossible = str(tmp_path / "lie-images-idx3-ubyte.gz")   # 1 GiB from a tiny gzip
    with open(impossible, "wb") as f:
        f.write(gzip.compress(_idx_header((1024, 1024, 1024)) + b"\0" * 1000))
    raised, peak2 = _peak_bytes(load_idx, impossible)
    assert isinstance(raised, ValueError) and "inflates to at most" in str(raised), raised
    assert max(peak, peak2) < 8 << 20


def test_gzip_idx_shorter_than_declared(tmp_path):
    path = str(tmp_path / "short-images-idx3-ubyte.gz")
    with open(path, "wb") as f:
        f.write(gzip.compress(_idx_header((10, 28, 28)) + b"\1" * 7000))
    with pytest.raises(ValueError, match="byte count mismatch") as info:
        load_idx(path)
    assert path in str(info.value)
    good = np.arange(10 * 28 * 28, dtype=np.uint8).reshape(10, 28, 28)
    with open(path, "wb") as f:
        f.write(gzip.compress(_idx_header((10, 28, 28)) + good.tobytes()))
    np.testing.assert_array_equal(load_idx(path), good)


def _small_mnist_like(n=4):
    rng = np.random.RandomState(0)
    return tuple((rng.rand(n, 784).astype(np.float32), rng.randint(0, 10, n))
                 for _ in range(3))


def test_gzip_pickle_bomb_after_the_pickle_refused(tmp_path):
    head = pickle.dumps(_small_mnist_like(), protocol=2)
    path = _gzip_bomb(str(tmp_path / "mnist.pkl.gz"), head)
    raised, peak = _peak_bytes(fastnet.load_data_shared, path)
    assert isinstance(raised, ValueError), raised
    assert path in str(raised) and "after the end of the pickle" in str(raised)
    assert peak < 32 << 20


@pytest.mark.parametrize("gz", [False, True])
def test_pickle_claiming_a_terabyte_names_the_claim(tmp_path, gz):
    # BINBYTES8 (protocol 4) of 2**40 bytes, with 3 bytes behind it
    blob = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc"
    path = str(tmp_path / ("tib.pkl" + (".gz" if gz else "")))
    with open(path, "wb") as f:
        f.write(gzip.compress(blob) if gz else blob)
    with pytest.raises(ValueError) as info:
        fastnet.load_data_shared(path)
    msg = str(info.value)
    assert path in msg and ("1099511627776" in msg or "1.0 TiB" in msg), msg


def _npy_member(shape, dtype, data):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def test_npz_member_claiming_a_huge_shape_refused_before_allocating(tmp_path):
    """An .npz whose train_x header says (4e6, 784) float64 -- 25 GB -- over
    a few bytes of data, compressed or not."""
    arrays = {n: np.zeros((4, 784) if n.endswith("_x") else 4, np.float32)
              for n in NPZ_NAMES}
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        path = str(tmp_path / ("lying-%d.npz" % compression))
        with zipfile.ZipFile(path, "w", compression) as z:
            for name, a in arrays.items():
                if name == "train_x":
                    blob = _npy_member((4000000, 784), np.float64, a.tobytes())
                else:
                    buf = io.BytesIO()
                    np.lib.format.write_array(buf, a)
                    blob = buf.getvalue()
                z.writestr(name + ".npy", blob)
        raised, peak = _peak_bytes(fastnet.load_data_shared, path)
        assert isinstance(raised, ValueError), raised
        msg = str(raised)
        assert path in msg and "(4000000, 784)" in msg and "train_x" in msg
        assert peak < 16 << 20, "allocated what the header claimed (%d bytes)" % peak


def test_network_file_member_claiming_a_huge_shape_refused(tmp_path):
    path = str(tmp_path / "net.npz")
    fastnet.save(small_net(0), path)
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    members["param_0.npy"] = _npy_member((4000000, 784), np.float32, b"\0" * 120)
    with zipfile.ZipFile(path, "w") as z:
        for name, blob in members.items():
            z.writestr(name, blob)
    raised, peak = _peak_bytes(fastnet.load, path)
    assert isinstance(raised, ValueError), raised
    assert path in str(raised) and "(4000000, 784)" in str(raised)
    assert peak < 16 << 20


def _with_meta(path, text):
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array(text))
    members["meta_json.npy"] = buf.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for name, blob in members.items():
            z.writestr(name, blob)


def test_meta_json_nested_deep_or_too_long_is_a_value_error(tmp_path):
    path = str(tmp_path / "net.npz")
    fastnet.save(small_net(0), path)
    meta, _ = persist.read_file(path, persist.NETWORK_FORMAT)
    good = json.dumps(meta)
    deep = good[:-1] + ', "x": ' + "[" * 200000 + "]" * 200000 + "}"
    _with_meta(path, deep)
    for load in (lambda p: fastnet.load(p, engine="reference"),
                 lambda p: persist.read_file(p, persist.NETWORK_FORMAT)):
        with pytest.raises(ValueError, match=r"nests 200001 levels deep, over the limit") as info:
            load(path)
        assert path in str(info.value)
    # brackets inside strings are text, not nesting
    _with_meta(path, good[:-1] + ', "x": "' + "[" * 5000 + '"}')
    assert params(fastnet.load(path, engine="reference")) == params(small_net(0))
    _with_meta(path, good[:-1] + ', "x": "' + "a" * (1 << 20) + '"}')
    with pytest.raises(ValueError, match="characters long, over the limit") as info:
        fastnet.load(path)
    assert path in str(info.value)


# ---------------------------------------------------------------------------
# device='cuda' without numba
# ---------------------------------------------------------------------------
def test_cuda_without_numba_is_the_documented_error():
    code = r"""
import os, sys
sys.modules["numba"] = None         # as if numba-cuda were not installed
import fastnet
from fastnet import Network, FullyConnectedLayer, SoftmaxLayer
for how in ("device", "env"):
    try:
        if how == "device":
            Network([FullyConnectedLayer(4, 3), SoftmaxLayer(3, 2)], 2, device="cuda")
        else:
            os.environ["FASTNET_DEVICE"] = "cuda"
            Network([FullyConnectedLayer(4, 3), SoftmaxLayer(3, 2)], 2)
    except RuntimeError as exc:
        assert isinstance(exc, ImportError)     # what callers caught before
        print(how, exc)
    else:
        raise SystemExit("no error for " + how)
assert "cuda" not in fastnet.available_engines()
"""
    env = child_env()
    env.pop("FASTNET_DEVICE", None)
    env.pop("FASTNET_ENGINE", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert "no CUDA device found; use device='cpu'" in line
        assert 'pip install "fastnet[cuda]"' in line and "numba" in line


def test_npz_zip_entries_claiming_more_than_they_hold(tmp_path):
    """The zip's own sizes are claims too: a deflated member's uncompressed
    size beyond what its compressed bytes can inflate to, or a compression
    method NumPy never writes (bzip2: no bound on its expansion), is refused
    before anything is inflated."""
    arrays = {n: np.zeros((4, 784) if n.endswith("_x") else 4, np.float32)
              for n in NPZ_NAMES}
    path = str(tmp_path / "zip-lies.npz")
    np.savez_compressed(path, **arrays)
    blob = bytearray(open(path, "rb").read())
    entry = blob.index(b"PK\x01\x02")                 # central directory entries
    while blob[entry + 46:entry + 46 + len("train_x.npy")] != b"train_x.npy":
        entry = blob.index(b"PK\x01\x02", entry + 4)
    blob[entry + 24:entry + 28] = struct.pack("<I", 0xFFFFFFF0)   # uncompressed size
    open(path, "wb").write(bytes(blob))
    with pytest.raises(ValueError, match=r"train_x claims 4\.0 GiB") as info:
        fastnet.load_data_shared(path)
    assert path in str(info.value)
    path = str(tmp_path / "bzip2.npz")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_BZIP2) as z:
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a)
            z.writestr(name + ".npy", buf.getvalue())
    with pytest.raises(ValueError, match="zip method 12") as info:
        fastnet.load_data_shared(path)
    assert path in str(info.value)
