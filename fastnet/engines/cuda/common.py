"""What every CUDA kernel family shares.

- ``SIMULATOR``: True under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1).
- ``USE_WARP_SHUFFLE``: warp intrinsics in the block reductions.  The
  simulator has no warp intrinsics, so it takes the shared-memory tree instead
  (the branch is pruned at compile time: the flag is a frozen global).
- block sizes, as named constants with the reason for each;
- device functions: activations and their derivatives (from the output), a
  deterministic block sum, and the "last block" ticket that lets one launch
  finish a split reduction without a second launch;
- ``T1``..``T4``: array types per dtype, for the explicit kernel signatures.

Device functions are declared without signatures, so nothing compiles (and no
GPU is needed) at import; the kernels that call them compile at engine init.
"""

import math
import os

from numba import config, cuda, types

from ...activations import LINEAR, RELU, SIGMOID, TANH

SIMULATOR = bool(config.ENABLE_CUDASIM)

# FASTNET_CUDA_NO_SHUFFLE=1 forces the tree reduction on a GPU too (to test it)
USE_WARP_SHUFFLE = not SIMULATOR and os.environ.get("FASTNET_CUDA_NO_SHUFFLE", "0") != "1"

# ---------------------------------------------------------------------------
# block sizes
# ---------------------------------------------------------------------------
# The simulator runs a Python thread per CUDA thread, so under it the blocks
# are 4x smaller (same code, same tail handling, more tiles on tiny shapes).
# FASTNET_CUDA_SIM_BLOCKS=full keeps the GPU's sizes there too.
SMALL_BLOCKS = SIMULATOR and os.environ.get("FASTNET_CUDA_SIM_BLOCKS", "small") != "full"

# Elementwise and reduction kernels: 256 threads = 8 warps, enough to hide
# memory latency per block; a power of two, which the tree reduction needs.
TPB = 64 if SMALL_BLOCKS else 256

# Dense GEMM tiles: 16 x 16 threads, one output each.  With M = 10 or 128 rows
# and 10..1000 columns, a 16-wide tile wastes little on the tails, and a
# 16 x 16 shared tile (1 KiB float32) leaves the SM room for many blocks.
TILE = 8 if SMALL_BLOCKS else 16

# Convolution implicit GEMMs: 32 output positions (consecutive x, so loads and
# stores coalesce) x 8 filters per block, K stepped by 16.  8 divides the
# book's 20 and 40 filters better than 16 does (20 -> 24, not 32).
CONV_TR = 16 if SMALL_BLOCKS else 32
CONV_TC = 4 if SMALL_BLOCKS else 8
CONV_TK = 8 if SMALL_BLOCKS else 16

# padded shared-tile widths (a shape must be a literal constant; the extra
# column keeps transposed stores off a single bank)
TILE_PAD = TILE + 1
CONV_TC_PAD = CONV_TC + 1

# Split reductions (conv dW, pool db, sum of squares) aim at about this many
# blocks in flight: two per SM of an H100 (132 SMs).  Under the simulator a
# handful, so that the split path runs on tiny shapes.
TARGET_BLOCKS = 8 if SIMULATOR else 264

# A pool-backward split block gets at least this many windows (2 a thread on
# a GPU; a few under the simulator, again so that the split path runs).
POOL_MIN_WINDOWS = 8 if SIMULATOR else 2 * TPB

# The engine checks these assumptions once at import.
assert TPB & (TPB - 1) == 0 and TPB % 32 == 0
assert TILE * TILE == TPB and CONV_TR * CONV_TC == TPB
assert CONV_TK * CONV_TR == 2 * TPB and CONV_TK * CONV_TC <= TPB


# ---------------------------------------------------------------------------
# signatures
# ---------------------------------------------------------------------------
def array_types(dtype):
    """(scalar, 1-D, 2-D, 3-D, 4-D) C-contiguous numba types for ``dtype``."""
    t = types.float32 if str(dtype) == "float32" else types.float64
    return t, t[::1], t[:, ::1], t[:, :, ::1], t[:, :, :, ::1]


I32 = types.int32
U64 = types.uint64
I32_1 = types.int32[::1]
U8_2 = types.uint8[:, ::1]
U32_1 = types.uint32[::1]


def sig(*args):
    """A kernel signature: void(args)."""
    return types.void(*args)


# ---------------------------------------------------------------------------
# activations: act(z) and d act / d z from the output a = act(z)
# ---------------------------------------------------------------------------
@cuda.jit(device=True)
def activate(z, act, one):
    """act(z); ``one`` is 1 in z's type (keeps float32 math in float32)."""
    if act == RELU:
        return z if z > 0 else one - one
    if act == SIGMOID:
        # split by sign so exp never overflows (as the reference does)
        if z >= 0:
            return one / (one + math.exp(-z))
        e = math.exp(z)
        return e / (one + e)
    if act == TANH:
        return math.tanh(z)
    return z


@cuda.jit(device=True)
def activation_grad(a, act, one):
    """d act / d z through the output a: a(1-a), 1-a^2, [a>0], 1."""
    if act == RELU:
        return one if a > 0 else one - one
    if act == SIGMOID:
        return a * (one - a)
    if act == TANH:
        return one - a * a
    return one


# ---------------------------------------------------------------------------
# reductions
# ---------------------------------------------------------------------------
@cuda.jit(device=True)
def block_sum(v, sh, tid, nthreads):
    """Sum of ``v`` over the block, deterministic; valid in thread 0 only.

    ``sh``: a shared array of at least ``nthreads`` (a power of two, >= 32)
    elements of v's type; ``tid``: the flat thread index.  Every thread of
    the block must call this (it synchronises).
    """
    if USE_WARP_SHUFFLE:
        off = 16
        while off > 0:
            v += cuda.shfl_down_sync(0xFFFFFFFF, v, off)
            off //= 2
        if (tid & 31) == 0:
            sh[tid >> 5] = v
        cuda.syncthreads()
        nwarps = nthreads >> 5
        if tid < 32:
            v = sh[tid] if tid < nwarps else v - v
            off = 16
            while off > 0:
                v += cuda.shfl_down_sync(0xFFFFFFFF, v, off)
                off //= 2
        cuda.syncthreads()
        return v
    sh[tid] = v
    cuda.syncthreads()
    s = nthreads // 2
    while s > 0:
        if tid < s:
            sh[tid] += sh[tid + s]
        cuda.syncthreads()
        s //= 2
    v = sh[0]
    cuda.syncthreads()
    return v


@cuda.jit(device=True)
def last_block(counter, idx, expected, flag, tid):
    """True in every thread of the block that finishes ``expected`` blocks.

    Each block calls this once, after writing its share to global memory;
    the last one to arrive (and only it) gets True, sees every other block's
    writes, and resets ``counter[idx]`` to 0 for the next launch.  ``flag``:
    a shared int32 array of size 1.  (The threadFenceReduction pattern.)
    """
    cuda.threadfence()
    cuda.syncthreads()
    if tid == 0:
        ticket = cuda.atomic.add(counter, idx, 1)
        if ticket == expected - 1:
            flag[0] = 1
            counter[idx] = 0
        else:
            flag[0] = 0
    cuda.syncthreads()
    return flag[0] == 1


def cdiv(a, b):
    """ceil(a / b) for non-negative integers."""
    return -(-a // b)


ACTIVATIONS = (SIGMOID, TANH, RELU, LINEAR)
