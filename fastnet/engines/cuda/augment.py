"""augment: on-the-fly distortions of 28 x 28 training images (fastnet/augment.py).

One launch for the whole transform table: a block per sample, its threads
striding over the 784 pixels.  The block carries its image in float64 in
shared memory through the transforms in order (two 784-pixel buffers, used
in turn) and rounds to the output's dtype at the end, as the compiled
kernel (csrc/augment.pxd) and the NumPy reference (reference.augment) do:

  random numbers   op = hash(seed, k); sample = hash(op, counter*N + n);
                   u_j = (hash(sample, j) >> 11) * 2^-53, hash(a, b) =
                   splitmix64's finaliser of a + (b + 1) * golden
                   (dense.py's constants; the same 64-bit integer arithmetic)
  shift            dy, dx = floor(u * (2m + 1)) - m, zeros moved in
  affine           t, k, s from u_0..u_2; the output pixel (r, c) takes the
                   input at centre + A ((r, c) - centre), bilinear
  elastic          per field (draws 0..783: rows, 784..1567: columns): the
                   noise 2u - 1 into shared memory, one Gaussian pass along
                   the rows, one along the columns (weights from the table,
                   zeros beyond the image, out = w0 a[i] + sum_j w_j (a[i-j]
                   + a[i+j]) in that order), times alpha; then bilinear at
                   (r + dy, c + dx)
  bilinear         zeros outside; an integral position copies its pixel

Each operation is the C kernel's, in the C kernel's order, so under the
simulator (IEEE double, no fused multiply-adds) the float64 results are
bitwise the reference's.  On a GPU, NVVM contracts a * b + c into fused
multiply-adds (numba-cuda has no switch for that short of fastmath) and
libdevice's cos / sin may differ from the host's in the last bit: float64
results then agree to about 1e-15, float32 ones to an output rounding.

Shared memory per block: two images and four fields of 784 doubles
(37,632 bytes, under the 48 KiB of static shared memory).  The arithmetic
is float64 whatever the output dtype (the images are carried in double by
design, as on the CPU).
"""

import math

from numba import cuda, float64, int64, uint64

from .common import TPB, U64, array_types, sig
from .dense import GOLDEN, MIX1, MIX2
from ... import augment as _aug

SIDE = _aug.SIDE
PIXELS = _aug.PIXELS
TAPS0 = _aug.TAPS0
SHIFT, AFFINE, ELASTIC = _aug.SHIFT, _aug.AFFINE, _aug.ELASTIC
CENTRE = (SIDE - 1) / 2.0
INV_2_53 = 1.0 / 9007199254740992.0
# shared-array sizes must be literal constants
TWO_IMAGES = 2 * PIXELS
FOUR_FIELDS = 4 * PIXELS
assert TWO_IMAGES == 1568 and FOUR_FIELDS == 3136


@cuda.jit(device=True)
def aug_hash(a, b):
    """splitmix64's finaliser of a + (b + 1) * golden (uint64, mod 2^64)."""
    z = a + (b + uint64(1)) * uint64(GOLDEN)
    z = (z ^ (z >> uint64(30))) * uint64(MIX1)
    z = (z ^ (z >> uint64(27))) * uint64(MIX2)
    return z ^ (z >> uint64(31))


@cuda.jit(device=True)
def aug_uniform(sample, j):
    """Draw j of the sample: 53 bits in [0, 1) (exact below 2^53 through int64)."""
    return float64(int64(aug_hash(sample, j) >> uint64(11))) * INV_2_53


@cuda.jit(device=True)
def _pixel(im, base, r, c):
    """im[base + r*28 + c], zero outside the image (the C kernel's padding)."""
    if r >= 0 and r < SIDE and c >= 0 and c < SIDE:
        return im[base + r * SIDE + c]
    return 0.0


@cuda.jit(device=True)
def _sample_at(im, base, y, x):
    """The image at im[base:] sampled at (y, x): bilinear, zeros outside."""
    if not (y > -1.0 and y < SIDE and x > -1.0 and x < SIDE):
        return 0.0
    r0 = math.floor(y)
    c0 = math.floor(x)
    fy = y - r0
    fx = x - c0
    r = int64(r0)
    c = int64(c0)
    p00 = _pixel(im, base, r, c)
    if fy == 0.0 and fx == 0.0:
        return p00
    p01 = _pixel(im, base, r, c + 1)
    p10 = _pixel(im, base, r + 1, c)
    p11 = _pixel(im, base, r + 1, c + 1)
    return ((1.0 - fy) * ((1.0 - fx) * p00 + fx * p01)
            + fy * ((1.0 - fx) * p10 + fx * p11))


@cuda.jit(device=True)
def _field(fld, table, k, sample, which, tid, nt):
    """Displacement field ``which`` (0: rows, 1: columns) of elastic op k into
    fld[(2 + which)*784:]: alpha * smooth(2u - 1).  fld[0:784] holds the
    noise, fld[784:1568] the first pass.  Every thread calls this."""
    R = int64(table[k, 3])
    alpha = table[k, 1]
    j0 = uint64(which * PIXELS)
    for p in range(tid, PIXELS, nt):
        fld[p] = 2.0 * aug_uniform(sample, j0 + uint64(p)) - 1.0
    cuda.syncthreads()
    # along the rows (axis 0): neighbours i -+ j in the same column
    for p in range(tid, PIXELS, nt):
        i = p // SIDE
        acc = table[k, TAPS0] * fld[p]
        for j in range(1, R):
            up = fld[p - j * SIDE] if i - j >= 0 else 0.0
            dn = fld[p + j * SIDE] if i + j < SIDE else 0.0
            acc = acc + table[k, TAPS0 + j] * (up + dn)
        fld[PIXELS + p] = acc
    cuda.syncthreads()
    # along the columns (axis 1), then alpha
    out0 = (2 + which) * PIXELS
    for p in range(tid, PIXELS, nt):
        c = p % SIDE
        acc = table[k, TAPS0] * fld[PIXELS + p]
        for j in range(1, R):
            lf = fld[PIXELS + p - j] if c - j >= 0 else 0.0
            rt = fld[PIXELS + p + j] if c + j < SIDE else 0.0
            acc = acc + table[k, TAPS0 + j] * (lf + rt)
        fld[out0 + p] = alpha * acc
    cuda.syncthreads()


def augment_kernel(x, out, table, seed, counter):
    """x (N, 784)  IN;  out (N, 784)  OUT (not x);  table float64 (n, 36)  IN
    seed, counter: uint64.  Sample n uses key counter*N + n.

    grid (N,); block (TPB,): block n distorts row n, threads stride pixels
    """
    im = cuda.shared.array(TWO_IMAGES, dtype=float64)     # two images, in turn
    fld = cuda.shared.array(FOUR_FIELDS, dtype=float64)   # noise, pass, dy, dx
    n = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    N = x.shape[0]
    for p in range(tid, PIXELS, nt):
        im[p] = float64(x[n, p])
    cuda.syncthreads()
    key = counter * uint64(N) + uint64(n)
    cur = 0
    for k in range(table.shape[0]):
        kind = int64(table[k, 0])
        sample = aug_hash(aug_hash(seed, uint64(k)), key)
        s0 = cur * PIXELS
        d0 = PIXELS - s0
        if kind == SHIFT:
            m = int64(table[k, 1])
            dy = int64(math.floor(aug_uniform(sample, uint64(0)) * (2 * m + 1))) - m
            dx = int64(math.floor(aug_uniform(sample, uint64(1)) * (2 * m + 1))) - m
            for p in range(tid, PIXELS, nt):
                r = p // SIDE
                c = p % SIDE
                im[d0 + p] = _pixel(im, s0, r - dy, c - dx)
        elif kind == AFFINE:
            t = table[k, 1] * (2.0 * aug_uniform(sample, uint64(0)) - 1.0)
            sh = table[k, 2] * (2.0 * aug_uniform(sample, uint64(1)) - 1.0)
            s = 1.0 + table[k, 3] * (2.0 * aug_uniform(sample, uint64(2)) - 1.0)
            co = math.cos(t)
            si = math.sin(t)
            a00 = (co - si * sh) / s
            a01 = -si / s
            a10 = (si + co * sh) / s
            a11 = co / s
            for p in range(tid, PIXELS, nt):
                dr = float64(p // SIDE) - CENTRE
                dc = float64(p % SIDE) - CENTRE
                im[d0 + p] = _sample_at(im, s0, CENTRE + (a00 * dr + a01 * dc),
                                        CENTRE + (a10 * dr + a11 * dc))
        elif kind == ELASTIC:
            _field(fld, table, k, sample, 0, tid, nt)
            _field(fld, table, k, sample, 1, tid, nt)
            for p in range(tid, PIXELS, nt):
                im[d0 + p] = _sample_at(im, s0, float64(p // SIDE) + fld[2 * PIXELS + p],
                                        float64(p % SIDE) + fld[3 * PIXELS + p])
        else:
            continue
        cuda.syncthreads()
        cur = 1 - cur
    for p in range(tid, PIXELS, nt):
        out[n, p] = im[cur * PIXELS + p]


# ---------------------------------------------------------------------------
# signatures and launch configuration
# ---------------------------------------------------------------------------
def signatures(dtype):
    """{kernel name: (python function, [signatures])} for ``dtype``."""
    T, T1, T2, T3, T4 = array_types(dtype)
    _, _, F2, _, _ = array_types("float64")
    return {"augment": (augment_kernel, [sig(T2, T2, F2, U64, U64)])}


def config(N):
    """A block per sample."""
    return (N,), (TPB,)
