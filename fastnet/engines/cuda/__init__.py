"""The cuda engine: every kernel of reference.py as a Numba CUDA kernel.

Arrays are Numba device arrays; the data stay on the GPU, and no call copies
to or from the host except ``to_device``, ``to_host`` and converting a
``DeviceScalar`` with ``float()``.  Each engine function is ONE kernel launch
(forward and backward passes are fused per function: conv dW + dx; pool
routing + dz + db; dense dw + dx + db + dz; softmax + NLL + gradient), on one
stream the engine owns, with the launch configuration and workspaces of each
shape built once and cached.

Import needs no GPU.  The first ``empty`` / ``to_device`` (a Network binding
its layers) initialises the engine: finds the GPU (RuntimeError "no CUDA
device found; use device='cpu'" when there is none) and compiles every kernel
for that float type with an explicit signature (``cache=True``: later runs
load them from disk).  Under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1,
set before numba is imported) the same kernels run on the CPU, slowly, for
tests.

Arrays must be C-contiguous (row slices of a C-contiguous array are, and
``.reshape`` of them works): ``x_dev[i*mbs:(i+1)*mbs].reshape(mbs, C, H, W)``.
"""

import contextlib
import warnings

import numpy as np
from numba import config, cuda

from . import augment as _augment
from . import common, conv, dense, device, pool, softmax, update
from .common import ACTIVATIONS, SIMULATOR
from .device import DeviceMemoryError  # noqa: F401  (part of the engine's surface)
from ...dropout import keep_threshold  # the same pure function on every engine

name = "cuda"
#: the Network keeps parameters and data on the device between calls
device_resident = True

_MASK64 = (1 << 64) - 1
# device scalars (costs, sums of squares) live in a ring of this many slots
RING_SLOTS = 1024
# to_device checks free GPU memory for arrays from this size up
CHECK_FIT_BYTES = 16 << 20

_FAMILIES = (conv, pool, dense, softmax)


class _State(object):
    ready = False
    info = None
    stream = None
    kernels = {}        # dtype name -> {kernel name: compiled kernel}
    plans = {}          # call key -> (configured kernel, extra launch args)
    rings = {}          # dtype name -> _Ring
    dummies = {}        # (dtype name, ndim) -> a 1-element device array
    launches = 0        # kernel launches since import (for tests and benches)


_S = _State()


# ---------------------------------------------------------------------------
# initialisation and compilation
# ---------------------------------------------------------------------------
def init(dtypes=()):
    """Find the GPU and make the engine's stream; compile for ``dtypes``.

    Returns the DeviceInfo.  Raises RuntimeError("no CUDA device found; use
    device='cpu'") when there is no GPU or driver.
    """
    if not _S.ready:
        _S.info = device.require_device()
        if not SIMULATOR:
            # the small grids of a mini-batch of 10 are by design
            config.CUDA_LOW_OCCUPANCY_WARNINGS = 0
        _S.stream = cuda.stream()
        _S.ready = True
    for dt in dtypes:
        _kernels(np.dtype(dt))
    return _S.info


def available():
    """True when a GPU and its driver are present (or under the simulator);
    importing this module succeeds either way."""
    return device.is_available()


def info():
    """The DeviceInfo of the engine's GPU (initialises the engine)."""
    return init()


def _jit(pyfunc, signature):
    # an explicit signature compiles now and skips type dispatch per launch;
    # the disk cache is keyed by source, not by flags such as
    # FASTNET_CUDA_NO_SHUFFLE, so it is off when that flag is on
    cache = not SIMULATOR and common.USE_WARP_SHUFFLE
    return cuda.jit(signature, cache=cache)(pyfunc)


def _compile_table(table):
    out = {}
    for kname, (pyfunc, sigs) in table.items():
        out[kname] = _jit(pyfunc, sigs[0])
    return out


def _kernels(dtype):
    """Compiled kernels for float ``dtype`` (compiled on first use)."""
    key = dtype.name
    ks = _S.kernels.get(key)
    if ks is None:
        if key not in ("float32", "float64"):
            raise ValueError("cuda engine: float arrays must be float32 or float64, "
                             "got %s" % key)
        init()
        ks = {}
        for family in _FAMILIES:
            ks.update(_compile_table(family.signatures(key)))
        ks.update(_compile_table(update.signatures(key, update.INIT_RANKS)))
        ks.update(_compile_table(update.optimizer_signatures(key)))
        if "dropout_bits" not in _S.kernels:
            _S.kernels["dropout_bits"] = _compile_table(dense.bits_signatures())
        _S.kernels[key] = ks
    return ks


def _rank_kernel(ks, dtype, base, ndim):
    kname = "%s_%dd" % (base, ndim)
    k = ks.get(kname)
    if k is None:
        if ndim not in update.RANKS:
            raise ValueError("cuda engine: %s takes arrays of 1 to 4 dimensions, "
                             "got %d" % (base, ndim))
        ks.update(_compile_table(update.signatures(dtype.name, (ndim,))))
        k = ks[kname]
    return k


def kernel_signatures(dtype):
    """{kernel name: (python function, [signatures])}: every kernel the
    engine compiles for float ``dtype`` (all ranks), and dropout_bits."""
    name_ = np.dtype(dtype).name
    table = {}
    for family in _FAMILIES:
        table.update(family.signatures(name_))
    table.update(update.signatures(name_))
    table.update(update.optimizer_signatures(name_))
    table.update(dense.bits_signatures())
    table.update(_augment.signatures(name_))
    return table


def _configure(kernel, grid, block):
    """The launcher of ``kernel`` on the engine's stream: built once, kept in
    the plan.  (The simulator's ``kernel[...]`` reconfigures the kernel object
    itself and returns it, so there the configuration is applied per launch.)"""
    if SIMULATOR:
        return lambda *args: kernel[grid, block, _S.stream](*args)
    return kernel[grid, block, _S.stream]


def launch_count():
    """Kernel launches since import (each engine function is one)."""
    return _S.launches


# ---------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------
def empty(shape, dtype):
    """A new uninitialised device array."""
    init()
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        _kernels(dtype)
    return cuda.device_array(shape, dtype=dtype, stream=_S.stream)


def to_device(a, out=None):
    """A device array holding a copy of host array ``a`` (made C-contiguous),
    or ``a`` copied into the device array ``out`` (same shape and dtype).

    Raises DeviceMemoryError, before copying, when ``a`` would not fit in the
    GPU's free memory.
    """
    init()
    a = np.ascontiguousarray(a)
    if out is not None:
        if tuple(out.shape) != a.shape or out.dtype != a.dtype:
            raise ValueError("to_device: out has shape %s %s, the array %s %s"
                             % (tuple(out.shape), out.dtype, a.shape, a.dtype))
        out.copy_to_device(a, stream=_S.stream)
        return out
    if a.dtype.kind == "f":
        _kernels(a.dtype)
    if a.nbytes >= CHECK_FIT_BYTES:
        device.check_fits(a.nbytes, "an array of shape %s (%s)" % (a.shape, a.dtype))
    return cuda.to_device(a, stream=_S.stream)


def to_host(a, out=None):
    """Copy device array ``a`` into host array ``out`` (or a new one); waits."""
    if out is None:
        host = a.copy_to_host(stream=_S.stream)
        _S.stream.synchronize()
        return host
    if (out.shape == a.shape and out.dtype == a.dtype and out.flags.c_contiguous
            and out.flags.writeable):
        a.copy_to_host(out, stream=_S.stream)
        _S.stream.synchronize()
    else:
        host = a.copy_to_host(stream=_S.stream)
        _S.stream.synchronize()
        out[...] = host
    return out


def synchronize():
    """Wait for the engine's queued kernels."""
    if _S.ready:
        _S.stream.synchronize()


def _zeros_i32(n):
    return cuda.to_device(np.zeros(n, dtype=np.int32), stream=_S.stream)


def _dummy(dtype, ndim):
    key = (dtype.name, ndim)
    d = _S.dummies.get(key)
    if d is None:
        d = cuda.device_array((1,) * ndim, dtype=dtype, stream=_S.stream)
        _S.dummies[key] = d
    return d


# ---------------------------------------------------------------------------
# device scalars: costs and sums that stay on the GPU until asked for
# ---------------------------------------------------------------------------
class _Ring(object):
    """RING_SLOTS device scalars of one dtype, reused round robin."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.array = cuda.device_array(RING_SLOTS, dtype=dtype, stream=_S.stream)
        self.next = 0
        self.generation = [0] * RING_SLOTS

    def take(self):
        slot = self.next
        self.next = (slot + 1) % RING_SLOTS
        self.generation[slot] += 1
        return slot, self.generation[slot]


def _ring(dtype):
    r = _S.rings.get(dtype.name)
    if r is None:
        r = _S.rings[dtype.name] = _Ring(dtype)
    return r


class DeviceScalar(object):
    """A number still on the GPU; ``float(s)`` waits for it and reads it.

    The engine reuses its slot after RING_SLOTS more such results; reading
    it later raises RuntimeError instead of returning another number.
    """

    __slots__ = ("_ring", "_slot", "_generation", "_value")

    def __init__(self, ring, slot, generation):
        self._ring = ring
        self._slot = slot
        self._generation = generation
        self._value = None

    def __float__(self):
        if self._value is None:
            if self._ring.generation[self._slot] != self._generation:
                raise RuntimeError(
                    "this device scalar was overwritten: read it with float() "
                    "within %d engine calls that return one" % RING_SLOTS)
            host = np.empty(1, dtype=self._ring.dtype)
            self._ring.array[self._slot:self._slot + 1].copy_to_host(host, stream=_S.stream)
            _S.stream.synchronize()
            self._value = float(host[0])
        return self._value

    def __repr__(self):
        if self._value is None:
            return "DeviceScalar(<on the GPU>)"
        return "DeviceScalar(%r)" % self._value


# ---------------------------------------------------------------------------
# argument checks (once per distinct call signature, when its plan is built)
# ---------------------------------------------------------------------------
def _signature(*arrays):
    """What a launch plan is keyed by: each array's shape, strides, dtype and
    type (None for an absent one).  A call whose arrays differ in any of
    them gets a plan of its own, checked when it is built: a plan keyed by
    its first array alone would launch a later call's mismatched arrays
    unchecked, out of bounds on the device."""
    return tuple(_array_signature(a) for a in arrays)


def _array_signature(a):
    if a is None:
        return None
    try:
        return (tuple(a.shape), tuple(a.strides), a.dtype, type(a))
    except (AttributeError, TypeError):   # not an array: the plan's checks say so
        return (type(a), id(a))


def _check_arrays(fname, dtype, **arrays):
    for aname, a in arrays.items():
        if a is None:
            continue
        if isinstance(a, np.ndarray) or not hasattr(a, "copy_to_host"):
            raise ValueError("%s: %s must be a device array (engine.to_device / "
                             "engine.empty), got %s" % (fname, aname, type(a).__name__))
        if not a.is_c_contiguous():
            raise ValueError("%s: %s must be C-contiguous" % (fname, aname))
        if dtype is not None and a.dtype != dtype:
            raise ValueError("%s: %s has dtype %s, expected %s"
                             % (fname, aname, a.dtype, dtype))


def _check_shape(fname, aname, a, shape):
    if tuple(a.shape) != tuple(shape):
        raise ValueError("%s: %s has shape %s, expected %s"
                         % (fname, aname, tuple(a.shape), tuple(shape)))


def _check_act(fname, act):
    if act not in ACTIVATIONS:
        raise ValueError("%s: unknown activation code %r" % (fname, act))


# ---------------------------------------------------------------------------
# conv
# ---------------------------------------------------------------------------
def conv_forward(x, w, out):
    """out = conv(x, flipped w), 'valid'.  See reference.conv_forward."""
    key = ("conv_forward", _signature(x, w, out))
    plan = _S.plans.get(key)
    if plan is None:
        plan = _S.plans[key] = _plan_conv_forward(x, w, out)
    _S.launches += 1
    plan(x, w, out)


def _plan_conv_forward(x, w, out):
    f = "conv_forward"
    _check_arrays(f, x.dtype, x=x, w=w, out=out)
    N, C, H, W = x.shape
    F, Cw, KH, KW = w.shape
    if Cw != C or KH > H or KW > W:
        raise ValueError("%s: w %s does not fit x %s" % (f, w.shape, x.shape))
    _check_shape(f, "out", out, (N, F, H - KH + 1, W - KW + 1))
    grid, block = conv.forward_config(x.shape, w.shape)
    return _configure(_kernels(x.dtype)["conv_forward"], grid, block)


def conv_backward(x, w, dout, dw, dx):
    """dw and (unless dx is None) dx of conv_forward, in one launch."""
    has_dx = dx is not None
    key = ("conv_backward", _signature(x, w, dout, dw, dx))
    plan = _S.plans.get(key)
    if plan is None:
        plan = _S.plans[key] = _plan_conv_backward(x, w, dout, dw, dx)
    k, partial, counter, splits, rows = plan
    _S.launches += 1
    k(x, w, dout, dw, dx if has_dx else _dummy(x.dtype, 4), partial, counter, splits, rows)


def _plan_conv_backward(x, w, dout, dw, dx):
    f = "conv_backward"
    _check_arrays(f, x.dtype, x=x, w=w, dout=dout, dw=dw, dx=dx)
    N, C, H, W = x.shape
    F, Cw, KH, KW = w.shape
    if Cw != C or KH > H or KW > W:
        raise ValueError("%s: w %s does not fit x %s" % (f, w.shape, x.shape))
    _check_shape(f, "dout", dout, (N, F, H - KH + 1, W - KW + 1))
    _check_shape(f, "dw", dw, w.shape)
    if dx is not None:
        _check_shape(f, "dx", dx, x.shape)
    grid, block, splits, rows, dw_tiles = conv.backward_plan(x.shape, w.shape, dx is not None)
    if splits > 1:
        partial = cuda.device_array((splits, F, C * KH * KW), dtype=x.dtype, stream=_S.stream)
    else:
        partial = _dummy(x.dtype, 3)
    counter = _zeros_i32(dw_tiles)
    k = _configure(_kernels(x.dtype)["conv_backward"], grid, block)
    return k, partial, counter, splits, rows


# ---------------------------------------------------------------------------
# pool
# ---------------------------------------------------------------------------
def pool_forward(conv_out, b, act, poolsize, out):
    """out = act(maxpool(conv_out) + b).  See reference.pool_forward."""
    key = ("pool_forward", tuple(poolsize), _signature(conv_out, b, out))
    plan = _S.plans.get(key)
    if plan is None:
        plan = _S.plans[key] = _plan_pool_forward(conv_out, b, act, poolsize, out)
    k, ph, pw = plan
    _check_act("pool_forward", act)
    _S.launches += 1
    k(conv_out, b, out, act, ph, pw)


def _pool_shape(f, conv_out, poolsize):
    ph, pw = (int(v) for v in poolsize)
    N, F, CH, CW = conv_out.shape
    if ph < 1 or pw < 1 or ph > CH or pw > CW:
        raise ValueError("%s: poolsize %s does not fit %dx%d" % (f, tuple(poolsize), CH, CW))
    return ph, pw, (N, F, CH // ph, CW // pw)


def _plan_pool_forward(conv_out, b, act, poolsize, out):
    f = "pool_forward"
    _check_arrays(f, conv_out.dtype, conv_out=conv_out, b=b, out=out)
    ph, pw, oshape = _pool_shape(f, conv_out, poolsize)
    _check_shape(f, "b", b, (conv_out.shape[1],))
    _check_shape(f, "out", out, oshape)
    grid, block = pool.forward_config(oshape)
    return _configure(_kernels(conv_out.dtype)["pool_forward"], grid, block), ph, pw


def pool_backward(conv_out, out, dout, act, poolsize, dconv, db):
    """dz into dout, db and the routed dconv, in one launch."""
    key = ("pool_backward", tuple(poolsize), _signature(conv_out, out, dout, dconv, db))
    plan = _S.plans.get(key)
    if plan is None:
        plan = _S.plans[key] = _plan_pool_backward(conv_out, out, dout, act, poolsize,
                                                    dconv, db)
    k, partial, counter, ph, pw, splits = plan
    _check_act("pool_backward", act)
    _S.launches += 1
    k(conv_out, out, dout, dconv, db, partial, counter, act, ph, pw, splits)


def _plan_pool_backward(conv_out, out, dout, act, poolsize, dconv, db):
    f = "pool_backward"
    _check_arrays(f, conv_out.dtype, conv_out=conv_out, out=out, dout=dout,
                  dconv=dconv, db=db)
    ph, pw, oshape = _pool_shape(f, conv_out, poolsize)
    _check_shape(f, "out", out, oshape)
    _check_shape(f, "dout", dout, oshape)
    _check_shape(f, "dconv", dconv, conv_out.shape)
    _check_shape(f, "db", db, (conv_out.shape[1],))
    grid, block, splits = pool.backward_plan(oshape)
    F = conv_out.shape[1]
    if splits > 1:
        partial = cuda.device_array((splits, F), dtype=conv_out.dtype, stream=_S.stream)
    else:
        partial = _dummy(conv_out.dtype, 2)
    k = _configure(_kernels(conv_out.dtype)["pool_backward"], grid, block)
    return k, partial, _zeros_i32(F), ph, pw, splits


# ---------------------------------------------------------------------------
# dense and dropout
# ---------------------------------------------------------------------------
def dense_forward(x, w, b, act, scale, out):
    """out = act(scale * (x @ w) + b), one launch."""
    key = ("dense_forward", _signature(x, w, b, out))
    k = _S.plans.get(key)
    if k is None:
        k = _S.plans[key] = _plan_dense_forward(x, w, b, out)
    _check_act("dense_forward", act)
    _S.launches += 1
    k(x, w, b, out, act, scale)


def _plan_dense_forward(x, w, b, out):
    f = "dense_forward"
    _check_arrays(f, x.dtype, x=x, w=w, b=b, out=out)
    N, I = x.shape
    if w.shape[0] != I:
        raise ValueError("%s: w %s does not fit x %s" % (f, w.shape, x.shape))
    O = w.shape[1]
    _check_shape(f, "b", b, (O,))
    _check_shape(f, "out", out, (N, O))
    grid, block = dense.forward_config(N, O)
    return _configure(_kernels(x.dtype)["dense_forward"], grid, block)


def dense_backward(x, w, out, dout, act, dw, db, dx):
    """dz into dout, dw, db and (unless dx is None) dx, in one launch."""
    has_dx = dx is not None
    key = ("dense_backward", _signature(x, w, out, dout, dw, db, dx))
    plan = _S.plans.get(key)
    if plan is None:
        plan = _S.plans[key] = _plan_dense_backward(x, w, out, dout, dw, db, dx)
    k, counter = plan
    _check_act("dense_backward", act)
    _S.launches += 1
    k(x, w, out, dout, dw, db, dx if has_dx else _dummy(x.dtype, 2), counter, act,
      1 if has_dx else 0)


def _plan_dense_backward(x, w, out, dout, dw, db, dx):
    f = "dense_backward"
    _check_arrays(f, x.dtype, x=x, w=w, out=out, dout=dout, dw=dw, db=db, dx=dx)
    N, I = x.shape
    if w.shape[0] != I:
        raise ValueError("%s: w %s does not fit x %s" % (f, w.shape, x.shape))
    O = w.shape[1]
    _check_shape(f, "out", out, (N, O))
    _check_shape(f, "dout", dout, (N, O))
    _check_shape(f, "dw", dw, w.shape)
    _check_shape(f, "db", db, (O,))
    if dx is not None:
        _check_shape(f, "dx", dx, x.shape)
    grid, block = dense.backward_config(N, I, O, dx is not None)
    k = _configure(_kernels(x.dtype)["dense_backward"], grid, block)
    return k, _zeros_i32(1)


@contextlib.contextmanager
def _quiet_simulator():
    """The simulator runs the uint64 hash on NumPy scalars, which warn on the
    wrap-around the hash relies on: silence exactly that while it runs."""
    if not SIMULATOR:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="overflow encountered",
                                category=RuntimeWarning)
        yield


def dropout_bits(seed, counter, n):
    """32 random bits per element as a new (n,) uint32 device array:
    reference.dropout_bits(seed, counter, n) bit for bit."""
    init()
    if "dropout_bits" not in _S.kernels:
        _S.kernels["dropout_bits"] = _compile_table(dense.bits_signatures())
    bits = cuda.device_array(int(n), dtype=np.uint32, stream=_S.stream)
    grid, block = dense.elementwise_config(int(n))
    _S.launches += 1
    with _quiet_simulator():
        _configure(_S.kernels["dropout_bits"]["dropout_bits"], grid, block)(
            bits, np.uint64(int(seed) & _MASK64), np.uint64(int(counter) & _MASK64))
    return bits


def dropout_forward(x, p_dropout, seed, counter, mask, out):
    """out = x * mask, mask = dropout_bits(seed, counter, x.size) < keep_threshold(p)."""
    key = ("dropout_forward", _signature(x, mask, out))
    k = _S.plans.get(key)
    if k is None:
        f = "dropout_forward"
        _check_arrays(f, x.dtype, x=x, out=out)
        _check_arrays(f, np.uint8, mask=mask)
        _check_shape(f, "mask", mask, x.shape)
        _check_shape(f, "out", out, x.shape)
        if len(x.shape) != 2:
            raise ValueError("%s: x must be 2-D (N, I), got shape %s" % (f, x.shape))
        grid, block = dense.elementwise_config(x.size)
        k = _S.plans[key] = _configure(_kernels(x.dtype)["dropout_forward"], grid, block)
    _S.launches += 1
    args = (x, mask, out, np.uint64(int(seed) & _MASK64), np.uint64(int(counter) & _MASK64),
            np.uint64(keep_threshold(p_dropout)))
    if SIMULATOR:
        with _quiet_simulator():
            k(*args)
    else:
        k(*args)


def dropout_backward(dout, mask, dx):
    """dx = dout * mask."""
    key = ("dropout_backward", _signature(dout, mask, dx))
    k = _S.plans.get(key)
    if k is None:
        f = "dropout_backward"
        _check_arrays(f, dout.dtype, dout=dout, dx=dx)
        _check_arrays(f, np.uint8, mask=mask)
        _check_shape(f, "mask", mask, dout.shape)
        _check_shape(f, "dx", dx, dout.shape)
        if len(dout.shape) != 2:
            raise ValueError("%s: dout must be 2-D (N, I), got shape %s" % (f, dout.shape))
        grid, block = dense.elementwise_config(dout.size)
        k = _S.plans[key] = _configure(_kernels(dout.dtype)["dropout_backward"], grid, block)
    _S.launches += 1
    k(dout, mask, dx)


# ---------------------------------------------------------------------------
# softmax
# ---------------------------------------------------------------------------
def softmax_forward(logits, probs):
    """probs = softmax(logits) row by row."""
    key = ("softmax_forward", _signature(logits, probs))
    k = _S.plans.get(key)
    if k is None:
        f = "softmax_forward"
        _check_arrays(f, logits.dtype, logits=logits, probs=probs)
        _check_shape(f, "probs", probs, logits.shape)
        grid, block = softmax.rows_config(logits.shape[0])
        k = _S.plans[key] = _configure(_kernels(logits.dtype)["softmax_forward"], grid, block)
    _S.launches += 1
    k(logits, probs)


def softmax_nll(logits, y, probs, dlogits):
    """probs, dlogits = (probs - onehot(y)) / N; returns the mean NLL as a
    DeviceScalar (``float()`` it to wait for and read the number)."""
    key = ("softmax_nll", _signature(logits, y, probs, dlogits))
    k = _S.plans.get(key)
    if k is None:
        f = "softmax_nll"
        _check_arrays(f, logits.dtype, logits=logits, probs=probs, dlogits=dlogits)
        _check_arrays(f, np.int32, y=y)
        _check_shape(f, "y", y, (logits.shape[0],))
        _check_shape(f, "probs", probs, logits.shape)
        _check_shape(f, "dlogits", dlogits, logits.shape)
        grid, block = softmax.NLL_CONFIG
        k = _S.plans[key] = _configure(_kernels(logits.dtype)["softmax_nll"], grid, block)
    ring = _ring(logits.dtype)
    slot, generation = ring.take()
    _S.launches += 1
    k(logits, y, probs, dlogits, ring.array, slot)
    return DeviceScalar(ring, slot, generation)


def _cost_launch(fname, arrays, shape_of):
    """One block computing a cost into a DeviceScalar (sigmoid_bce, mse_loss)."""
    first = arrays[0]
    key = (fname, _signature(*arrays))
    k = _S.plans.get(key)
    if k is None:
        _check_arrays(fname, first.dtype, **dict(zip(shape_of, arrays)))
        if len(first.shape) != 2:
            raise ValueError("%s: %s must be 2-d (N, K), got shape %s"
                             % (fname, shape_of[0], tuple(first.shape)))
        for aname, a in zip(shape_of[1:], arrays[1:]):
            _check_shape(fname, aname, a, first.shape)
        grid, block = softmax.NLL_CONFIG
        k = _S.plans[key] = _configure(_kernels(first.dtype)[fname], grid, block)
    ring = _ring(first.dtype)
    slot, generation = ring.take()
    _S.launches += 1
    k(*arrays, ring.array, slot)
    return DeviceScalar(ring, slot, generation)


def sigmoid_bce(logits, targets, probs, dlogits):
    """probs = sigmoid(logits), dlogits = (probs - targets) / (N*K); returns
    the mean binary cross-entropy as a DeviceScalar.  See reference.sigmoid_bce."""
    return _cost_launch("sigmoid_bce", (logits, targets, probs, dlogits),
                        ("logits", "targets", "probs", "dlogits"))


def mse_loss(out, targets, dout):
    """dout = 2 (out - targets) / (N*K); returns the mean squared error as a
    DeviceScalar.  See reference.mse_loss."""
    return _cost_launch("mse_loss", (out, targets, dout), ("out", "targets", "dout"))


def softmax_argmax(probs, yout):
    """yout[n] = the first k with probs[n, k] maximal."""
    key = ("softmax_argmax", _signature(probs, yout))
    k = _S.plans.get(key)
    if k is None:
        f = "softmax_argmax"
        _check_arrays(f, probs.dtype, probs=probs)
        _check_arrays(f, np.int32, yout=yout)
        _check_shape(f, "yout", yout, (probs.shape[0],))
        grid, block = softmax.rows_config(probs.shape[0])
        k = _S.plans[key] = _configure(_kernels(probs.dtype)["softmax_argmax"], grid, block)
    _S.launches += 1
    k(probs, yout)


# ---------------------------------------------------------------------------
# update
# ---------------------------------------------------------------------------
def sgd_update(param, grad, eta, l2):
    """param -= eta * (grad + l2 * param), in place."""
    key = ("sgd_update", _signature(param, grad))
    k = _S.plans.get(key)
    if k is None:
        f = "sgd_update"
        _check_arrays(f, param.dtype, param=param, grad=grad)
        _check_shape(f, "grad", grad, param.shape)
        ks = _kernels(param.dtype)
        grid, block = update.update_config(param.size)
        k = _S.plans[key] = _configure(
            _rank_kernel(ks, param.dtype, "sgd_update", len(param.shape)), grid, block)
    _S.launches += 1
    k(param, grad, eta, l2)


def _optimizer(fname, param, grad, state, hyper):
    """One launch of optimizer ``fname`` over the flat arrays."""
    key = (fname, _signature(param, grad, *state))
    k = _S.plans.get(key)
    if k is None:
        n_state = update.OPTIMIZERS[fname][1]
        _check_arrays(fname, param.dtype, param=param, grad=grad,
                      **{"state %d" % i: a for i, a in enumerate(state)})
        if len(param.shape) != 1:
            raise ValueError("%s: param must be a flat (1-d) array, got shape %s"
                             % (fname, tuple(param.shape)))
        for aname, a in [("grad", grad)] + [("state %d" % i, a) for i, a in enumerate(state)]:
            _check_shape(fname, aname, a, param.shape)
        if len(state) != n_state:
            raise ValueError("%s: takes %d state arrays, got %d" % (fname, n_state, len(state)))
        grid, block = update.update_config(param.size)
        k = _S.plans[key] = _configure(_kernels(param.dtype)[fname], grid, block)
    _S.launches += 1
    k(param, grad, *state, *update.optimizer_scalars(fname, hyper),
      float(np.finfo(param.dtype).tiny))


def _optimizer_entry(fname):
    n_state = update.OPTIMIZERS[fname][1]

    def kernel(param, grad, *args):
        _optimizer(fname, param, grad, tuple(args[:n_state]), tuple(args[n_state:]))
    kernel.__name__ = fname
    kernel.__doc__ = "%s (see fastnet/engines/reference.py's %s)." % (fname, fname)
    return kernel


# the optimizers' kernels, by name (update.py's table)
for _name in update.OPTIMIZERS:
    globals()[_name] = _optimizer_entry(_name)


def sum_of_squares(w):
    """sum(w**2) as a DeviceScalar (``float()`` reads it)."""
    key = ("sum_of_squares", _signature(w))
    plan = _S.plans.get(key)
    if plan is None:
        _check_arrays("sum_of_squares", w.dtype, w=w)
        ks = _kernels(w.dtype)
        grid, block = update.ssq_config(w.size)
        k = _configure(_rank_kernel(ks, w.dtype, "sum_of_squares", len(w.shape)), grid, block)
        partial = cuda.device_array(max(1, grid[0]), dtype=w.dtype, stream=_S.stream)
        plan = _S.plans[key] = (k, partial, _zeros_i32(1))
    k, partial, counter = plan
    ring = _ring(w.dtype)
    slot, generation = ring.take()
    _S.launches += 1
    k(w, partial, counter, ring.array, slot)
    return DeviceScalar(ring, slot, generation)


# ---------------------------------------------------------------------------
# augmentation
# ---------------------------------------------------------------------------
def _augment_table(tab):
    """The transform table on the device: copied once per distinct table
    (SGD passes the same one every step), then reused."""
    key = ("augment_table", tab.tobytes())
    d = _S.plans.get(key)
    if d is None:
        d = _S.plans[key] = cuda.to_device(tab, stream=_S.stream)
    return d


def augment(x, table, seed, counter, out):
    """out = the rows of x (N, 784) distorted by the transforms of ``table``
    (fastnet/augment.py's table()), with the random numbers of training step
    ``counter`` of a network whose augment seed is ``seed``: one launch, a
    block per sample.  See reference.augment (float64 results agree to about
    1e-15 on a GPU, bitwise under the simulator; augment.py says why)."""
    from ...augment import PIXELS, check_table
    from ..reference import _u64_arg
    f = "augment"
    tab = check_table(table, f)
    seed = _u64_arg(f, "seed", seed)
    counter = _u64_arg(f, "counter", counter)
    key = ("augment", tuple(x.shape), x.dtype, type(x))
    k = _S.plans.get(key)
    if k is None:
        _check_arrays(f, None, x=x)
        if x.dtype not in (np.float32, np.float64):
            raise ValueError("%s: x must be float32 or float64, got %s" % (f, x.dtype))
        _check_arrays(f, x.dtype, out=out)
        if len(x.shape) != 2 or x.shape[1] != PIXELS:
            raise ValueError("%s: x has shape %s; expected (N, %d): 28 x 28 images"
                             % (f, tuple(x.shape), PIXELS))
        ks = _kernels(x.dtype)
        if "augment" not in ks:     # compiled on first use, not at engine init
            ks.update(_compile_table(_augment.signatures(x.dtype.name)))
        grid, block = _augment.config(max(1, x.shape[0]))
        k = _S.plans[key] = _configure(ks["augment"], grid, block)
    _check_arrays(f, x.dtype, out=out)
    _check_shape(f, "out", out, x.shape)
    N = x.shape[0]
    if N and _overlap(x, out):
        raise ValueError("%s: out must not overlap x" % f)
    d_tab = _augment_table(tab)
    if N == 0:
        return
    _S.launches += 1
    args = (x, out, d_tab, np.uint64(seed), np.uint64(counter))
    if SIMULATOR:
        with _quiet_simulator():
            k(*args)
    else:
        k(*args)


def _overlap(a, b):
    """True when device arrays a and b share bytes."""
    # (the simulator's arrays are host arrays: their __array_interface__)
    name_ = "__array_interface__" if SIMULATOR else "__cuda_array_interface__"
    pa = getattr(a, name_)["data"][0]
    pb = getattr(b, name_)["data"][0]
    return pa < pb + b.nbytes and pb < pa + a.nbytes


__all__ = [
    "name", "device_resident", "init", "available", "info", "launch_count", "DeviceScalar",
    "DeviceMemoryError", "empty", "to_device", "to_host", "synchronize",
    "conv_forward", "conv_backward", "pool_forward", "pool_backward",
    "dense_forward", "dense_backward", "dropout_bits", "keep_threshold",
    "dropout_forward", "dropout_backward", "softmax_forward", "softmax_nll",
    "softmax_argmax", "sigmoid_bce", "mse_loss", "sgd_update", "sum_of_squares",
    "augment",
] + sorted(update.OPTIMIZERS)

