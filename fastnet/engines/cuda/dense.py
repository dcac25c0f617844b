"""dense: x @ w, scaled, plus bias, then activation; dropout masks.

Shape letters: N batch, I inputs, O outputs.  Shared-memory tiled GEMMs,
TILE x TILE threads, one output per thread:

  forward   out = act(scale * (x @ w) + b)          (bias and act fused)
  backward  dz = dout * act'(out)                   (written back into dout)
            dw = x.T @ dz;  db = sum_n dz;  dx = dz @ w.T

The backward pass is one launch: blocks [0, A) compute dw tiles, [A, A+B) dx
tiles, the rest db; dz is formed on the fly while loading tiles.  Then the
last block to finish (a ticket) writes dz back into dout -- only then is
nobody reading dout any more.

dropout: the counter-based splitmix64 of reference.dropout_bits, so the CPU
and GPU engines draw bit-identical masks:
  z = seed + (counter*n + i + 1) * golden  (mod 2^64), splitmix64 finaliser,
  bits = z >> 32;  keep = bits < keep_threshold(p)
"""

from numba import cuda, uint8, uint32, uint64

from .common import (TILE, TILE_PAD, TPB, I32, I32_1, U8_2, U32_1, U64, activate,
                     activation_grad, array_types, cdiv, last_block, sig)
from ...activations import LINEAR

GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB


def dense_forward_kernel(x, w, b, out, act, scale):
    """x (N, I)  IN;  w (I, O)  IN;  b (O,)  IN;  out (N, O)  OUT

    grid: (cdiv(O, TILE), cdiv(N, TILE)); block (TILE, TILE): x -> o, y -> n
    """
    xs = cuda.shared.array((TILE, TILE), dtype=x.dtype)       # [n, k]
    ws = cuda.shared.array((TILE, TILE), dtype=x.dtype)       # [k, o]
    N, I = x.shape[0], x.shape[1]
    O = w.shape[1]
    one = x.dtype.type(1)
    zero = one - one
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    n = cuda.blockIdx.y * TILE + ty
    o = cuda.blockIdx.x * TILE + tx
    acc = zero
    for k0 in range(0, I, TILE):
        k = k0 + tx
        xs[ty, tx] = x[n, k] if n < N and k < I else zero
        k = k0 + ty
        ws[ty, tx] = w[k, o] if k < I and o < O else zero
        cuda.syncthreads()
        for kk in range(TILE):
            acc += xs[ty, kk] * ws[kk, tx]
        cuda.syncthreads()
    if n < N and o < O:
        out[n, o] = activate(scale * acc + b[o], act, one)


def dense_backward_kernel(x, w, out, dout, dw, db, dx, counter, act, has_dx):
    """x (N, I)  IN;  w (I, O)  IN;  out (N, O)  IN;  dout (N, O)  IN/OUT
    dw (I, O)  OUT;  db (O,)  OUT;  dx (N, I)  OUT when has_dx
    counter (1,) int32, zeros (the ticket for writing dz back)

    grid: (A + B + C,) with A = dw tiles, B = dx tiles (0 without dx),
    C = cdiv(O, TPB) db blocks; block (TILE, TILE)
    """
    sa = cuda.shared.array((TILE, TILE_PAD), dtype=x.dtype)
    sb = cuda.shared.array((TILE, TILE_PAD), dtype=x.dtype)
    flag = cuda.shared.array(1, dtype=I32)
    N, I = x.shape[0], x.shape[1]
    O = w.shape[1]
    one = x.dtype.type(1)
    zero = one - one
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * TILE + tx
    bid = cuda.blockIdx.x
    o_tiles = (O + TILE - 1) // TILE
    i_tiles = (I + TILE - 1) // TILE
    n_tiles = (N + TILE - 1) // TILE
    a_blocks = i_tiles * o_tiles
    b_blocks = n_tiles * i_tiles if has_dx else 0
    if bid < a_blocks:
        # ---- dw[i, o] = sum_n x[n, i] * dz[n, o]   (y -> i, x -> o)
        i0 = (bid // o_tiles) * TILE
        o0 = (bid % o_tiles) * TILE
        acc = zero
        for n0 in range(0, N, TILE):
            nn = n0 + ty
            ii = i0 + tx
            sa[tx, ty] = x[nn, ii] if nn < N and ii < I else zero     # sa[i, n]
            oo = o0 + tx
            v = zero
            if nn < N and oo < O:
                v = dout[nn, oo] * activation_grad(out[nn, oo], act, one)
            sb[ty, tx] = v                                           # sb[n, o]
            cuda.syncthreads()
            for kk in range(TILE):
                acc += sa[ty, kk] * sb[kk, tx]
            cuda.syncthreads()
        if i0 + ty < I and o0 + tx < O:
            dw[i0 + ty, o0 + tx] = acc
    elif bid < a_blocks + b_blocks:
        # ---- dx[n, i] = sum_o dz[n, o] * w[i, o]   (y -> n, x -> i)
        b2 = bid - a_blocks
        n0 = (b2 // i_tiles) * TILE
        i0 = (b2 % i_tiles) * TILE
        acc = zero
        for k0 in range(0, O, TILE):
            nn = n0 + ty
            oo = k0 + tx
            v = zero
            if nn < N and oo < O:
                v = dout[nn, oo] * activation_grad(out[nn, oo], act, one)
            sa[ty, tx] = v                                           # sa[n, o]
            ii = i0 + ty
            sb[tx, ty] = w[ii, oo] if ii < I and oo < O else zero    # sb[o, i]
            cuda.syncthreads()
            for kk in range(TILE):
                acc += sa[ty, kk] * sb[kk, tx]
            cuda.syncthreads()
        if n0 + ty < N and i0 + tx < I:
            dx[n0 + ty, i0 + tx] = acc
    else:
        # ---- db[o] = sum_n dz[n, o]
        o = (bid - a_blocks - b_blocks) * TPB + tid
        if o < O:
            acc = zero
            for nn in range(N):
                acc += dout[nn, o] * activation_grad(out[nn, o], act, one)
            db[o] = acc
    if act != LINEAR:
        # dz into dout, by the last block (every block has read dout by now)
        if last_block(counter, 0, cuda.gridDim.x, flag, tid):
            for e in range(tid, N * O, TPB):
                nn = e // O
                oo = e % O
                dout[nn, oo] = dout[nn, oo] * activation_grad(out[nn, oo], act, one)


# ---------------------------------------------------------------------------
# dropout
# ---------------------------------------------------------------------------
def dropout_forward_kernel(x, mask, out, seed, counter, threshold):
    """x (N, I)  IN;  mask (N, I) uint8  OUT;  out (N, I)  OUT
    seed, counter, threshold: uint64 (threshold = keep_threshold(p), <= 2^32)

    grid: (cdiv(N*I, TPB),); block TPB; element e = n*I + i (C order)
    """
    xf = x.reshape(x.size)
    mf = mask.reshape(mask.size)
    of = out.reshape(out.size)
    e = cuda.grid(1)
    if e < xf.shape[0]:
        z = seed + (counter * uint64(xf.shape[0]) + uint64(e) + uint64(1)) * uint64(GOLDEN)
        z = (z ^ (z >> uint64(30))) * uint64(MIX1)
        z = (z ^ (z >> uint64(27))) * uint64(MIX2)
        z = z ^ (z >> uint64(31))
        if (z >> uint64(32)) < threshold:
            mf[e] = uint8(1)
            of[e] = xf[e]
        else:
            mf[e] = uint8(0)
            of[e] = xf[e] * xf.dtype.type(0)     # x * 0, as the reference


def dropout_backward_kernel(dout, mask, dx):
    """dout (N, I)  IN;  mask (N, I) uint8  IN;  dx (N, I)  OUT: dx = dout*mask"""
    df = dout.reshape(dout.size)
    mf = mask.reshape(mask.size)
    xf = dx.reshape(dx.size)
    e = cuda.grid(1)
    if e < df.shape[0]:
        xf[e] = df[e] if mf[e] != 0 else df[e] * df.dtype.type(0)


def dropout_bits_kernel(bits, seed, counter):
    """bits (n,) uint32  OUT: reference.dropout_bits(seed, counter, n)"""
    e = cuda.grid(1)
    if e < bits.shape[0]:
        z = seed + (counter * uint64(bits.shape[0]) + uint64(e) + uint64(1)) * uint64(GOLDEN)
        z = (z ^ (z >> uint64(30))) * uint64(MIX1)
        z = (z ^ (z >> uint64(27))) * uint64(MIX2)
        z = z ^ (z >> uint64(31))
        bits[e] = uint32(z >> uint64(32))


# ---------------------------------------------------------------------------
# signatures and launchers
# ---------------------------------------------------------------------------
def signatures(dtype):
    """{kernel name: (python function, [signatures])} for ``dtype``."""
    T, T1, T2, T3, T4 = array_types(dtype)
    return {
        "dense_forward": (dense_forward_kernel, [sig(T2, T2, T1, T2, I32, T)]),
        "dense_backward": (dense_backward_kernel,
                           [sig(T2, T2, T2, T2, T2, T1, T2, I32_1, I32, I32)]),
        "dropout_forward": (dropout_forward_kernel, [sig(T2, U8_2, T2, U64, U64, U64)]),
        "dropout_backward": (dropout_backward_kernel, [sig(T2, U8_2, T2)]),
    }


def bits_signatures():
    """dropout_bits does not depend on the float type."""
    return {"dropout_bits": (dropout_bits_kernel, [sig(U32_1, U64, U64)])}


def forward_config(N, O):
    return (cdiv(O, TILE), cdiv(N, TILE)), (TILE, TILE)


def backward_config(N, I, O, has_dx):
    blocks = cdiv(I, TILE) * cdiv(O, TILE) + cdiv(O, TPB)
    if has_dx:
        blocks += cdiv(N, TILE) * cdiv(I, TILE)
    return (blocks,), (TILE, TILE)


def elementwise_config(n):
    return (max(1, cdiv(n, TPB)),), (TPB,)
