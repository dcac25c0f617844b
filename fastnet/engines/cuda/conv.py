"""conv: Theano's conv.conv2d (a true convolution, kernel flipped, 'valid').

Shape letters: N batch, C input channels, H x W image, F filters, KH x KW
kernel, OH x OW = (H-KH+1) x (W-KW+1) output.  Both kernels are implicit
GEMMs over shared-memory tiles (nothing is unfolded in memory):

  forward   out[(n,i,j), f] = sum_{(c,p,q)} x[n,c,i+p,j+q] * w[f,c,KH-1-p,KW-1-q]
  backward  dw[f, (c,p,q)]  = sum_{(n,i,j)} dout[n,f,i,j] * x[n,c,i+KH-1-p,j+KW-1-q]
            dx[(n,a,b), c]  = sum_{(f,p,q)} dout[n,f,a+p-KH+1,b+q-KW+1] * w[f,c,p,q]
                              (dout taken as 0 outside its range: a full correlation)

Block: CONV_TR x CONV_TC threads (x: 32 output positions, y: 8 channels),
each thread one output; K is stepped CONV_TK at a time through shared memory.
The backward pass is ONE launch: the first blocks compute dW (split over the
long (n,i,j) axis when it is long; the last block of each tile adds the
splits up in a fixed order), the remaining blocks compute dx.
"""

from numba import cuda

from .common import (CONV_TC, CONV_TC_PAD, CONV_TK, CONV_TR, TARGET_BLOCKS, I32, I32_1,
                     array_types, cdiv, last_block, sig)


def conv_forward_kernel(x, w, out):
    """x (N, C, H, W)  IN;  w (F, C, KH, KW)  IN;  out (N, F, OH, OW)  OUT

    grid: (cdiv(N*OH*OW, CONV_TR), cdiv(F, CONV_TC)); block (CONV_TR, CONV_TC)
    """
    xs = cuda.shared.array((CONV_TK, CONV_TR), dtype=x.dtype)       # [k, r]
    ws = cuda.shared.array((CONV_TK, CONV_TC_PAD), dtype=x.dtype)   # [k, f]
    C = x.shape[1]
    F, KH, KW = w.shape[0], w.shape[2], w.shape[3]
    OH, OW = out.shape[2], out.shape[3]
    M = x.shape[0] * OH * OW
    KK = KH * KW
    CKK = C * KK
    zero = x.dtype.type(0)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * CONV_TR + tx
    r0 = cuda.blockIdx.x * CONV_TR
    f0 = cuda.blockIdx.y * CONV_TC
    # the output position this thread computes, decoded once
    r = r0 + tx
    n = r // (OH * OW)
    i = (r // OW) % OH
    j = r % OW
    f = f0 + ty
    acc = zero
    for k0 in range(0, CKK, CONV_TK):
        # x tile: CONV_TK x CONV_TR, two elements per thread, x fastest
        for m in range(2):
            e = tid + m * (CONV_TR * CONV_TC)
            rl = e % CONV_TR
            kl = e // CONV_TR
            rr = r0 + rl
            k = k0 + kl
            v = zero
            if rr < M and k < CKK:
                nn = rr // (OH * OW)
                ii = (rr // OW) % OH
                jj = rr % OW
                c = k // KK
                p = (k // KW) % KH
                q = k % KW
                v = x[nn, c, ii + p, jj + q]
            xs[kl, rl] = v
        # flipped-filter tile: CONV_TK x CONV_TC, the first 128 threads
        if tid < CONV_TK * CONV_TC:
            kl = tid % CONV_TK
            fl = tid // CONV_TK
            k = k0 + kl
            ff = f0 + fl
            v = zero
            if k < CKK and ff < F:
                c = k // KK
                p = (k // KW) % KH
                q = k % KW
                v = w[ff, c, KH - 1 - p, KW - 1 - q]
            ws[kl, fl] = v
        cuda.syncthreads()
        for kk in range(CONV_TK):
            acc += xs[kk, tx] * ws[kk, ty]
        cuda.syncthreads()
    if r < M and f < F:
        out[n, f, i, j] = acc


def conv_backward_kernel(x, w, dout, dw, dx, partial, counter, splits, rows_per_split):
    """x (N, C, H, W)  IN;  w (F, C, KH, KW)  IN;  dout (N, F, OH, OW)  IN
    dw (F, C, KH, KW)  OUT;  dx (N, C, H, W)  OUT (ignored when no dx blocks)
    partial (splits, F, C*KH*KW)  workspace;  counter (dW tiles,) int32, zeros

    grid: (dW tiles * splits + dx tiles,); block (CONV_TR, CONV_TC)
      dW tile t = (f tile, (c,p,q) tile), split s = block % splits covers
      rows [s*rows_per_split, (s+1)*rows_per_split) of (n,i,j)
    """
    sa = cuda.shared.array((CONV_TK, CONV_TR), dtype=x.dtype)
    sb = cuda.shared.array((CONV_TK, CONV_TC_PAD), dtype=x.dtype)
    flag = cuda.shared.array(1, dtype=I32)
    N, C, H, W = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    F, KH, KW = w.shape[0], w.shape[2], w.shape[3]
    OH, OW = dout.shape[2], dout.shape[3]
    KK = KH * KW
    CKK = C * KK
    M = N * OH * OW
    zero = x.dtype.type(0)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    tid = ty * CONV_TR + tx
    bid = cuda.blockIdx.x
    k_tiles = (CKK + CONV_TR - 1) // CONV_TR
    dw_tiles = k_tiles * ((F + CONV_TC - 1) // CONV_TC)
    if bid < dw_tiles * splits:
        # ---- dW[f, k] = sum_r dout[r, f] * x_unfolded[r, k]  (x: k, y: f)
        tile = bid // splits
        s = bid % splits
        k0 = (tile % k_tiles) * CONV_TR
        f0 = (tile // k_tiles) * CONV_TC
        k = k0 + tx
        f = f0 + ty
        r_lo = s * rows_per_split
        r_hi = min(M, r_lo + rows_per_split)
        acc = zero
        for rb in range(r_lo, r_hi, CONV_TK):
            # x tile [r, k]: CONV_TK x CONV_TR, two per thread, r fastest
            for m in range(2):
                e = tid + m * (CONV_TR * CONV_TC)
                rl = e % CONV_TK
                kl = e // CONV_TK
                rr = rb + rl
                kk = k0 + kl
                v = zero
                if rr < r_hi and kk < CKK:
                    nn = rr // (OH * OW)
                    ii = (rr // OW) % OH
                    jj = rr % OW
                    c = kk // KK
                    p = (kk // KW) % KH
                    q = kk % KW
                    v = x[nn, c, ii + KH - 1 - p, jj + KW - 1 - q]
                sa[rl, kl] = v
            # dout tile [r, f]: CONV_TK x CONV_TC, r fastest
            if tid < CONV_TK * CONV_TC:
                rl = tid % CONV_TK
                fl = tid // CONV_TK
                rr = rb + rl
                ff = f0 + fl
                v = zero
                if rr < r_hi and ff < F:
                    v = dout[rr // (OH * OW), ff, (rr // OW) % OH, rr % OW]
                sb[rl, fl] = v
            cuda.syncthreads()
            for kk in range(CONV_TK):
                acc += sa[kk, tx] * sb[kk, ty]
            cuda.syncthreads()
        if splits == 1:
            if k < CKK and f < F:
                dw[f, k // KK, (k // KW) % KH, k % KW] = acc
        else:
            if k < CKK and f < F:
                partial[s, f, k] = acc
            if last_block(counter, tile, splits, flag, tid):
                if k < CKK and f < F:
                    total = zero
                    for t in range(splits):     # fixed order: deterministic
                        total += partial[t, f, k]
                    dw[f, k // KK, (k // KW) % KH, k % KW] = total
    else:
        # ---- dx[(n,a,b), c] = sum_{(f,p,q)} dout_padded * w   (x: r, y: c)
        b2 = bid - dw_tiles * splits
        r_tiles = (N * H * W + CONV_TR - 1) // CONV_TR
        r0 = (b2 % r_tiles) * CONV_TR
        c0 = (b2 // r_tiles) * CONV_TC
        M2 = N * H * W
        FKK = F * KK
        r = r0 + tx
        n = r // (H * W)
        a = (r // W) % H
        b = r % W
        c = c0 + ty
        acc = zero
        for k0 in range(0, FKK, CONV_TK):
            # dout tile [k, r]: two per thread, r fastest
            for m in range(2):
                e = tid + m * (CONV_TR * CONV_TC)
                rl = e % CONV_TR
                kl = e // CONV_TR
                rr = r0 + rl
                kk = k0 + kl
                v = zero
                if rr < M2 and kk < FKK:
                    ff = kk // KK
                    ii = (rr // W) % H + (kk // KW) % KH - (KH - 1)
                    jj = rr % W + kk % KW - (KW - 1)
                    if ii >= 0 and ii < OH and jj >= 0 and jj < OW:
                        v = dout[rr // (H * W), ff, ii, jj]
                sa[kl, rl] = v
            # w tile [k, c]: w[f, c, p, q], k = (f, p, q) fastest
            if tid < CONV_TK * CONV_TC:
                kl = tid % CONV_TK
                cl = tid // CONV_TK
                kk = k0 + kl
                cc = c0 + cl
                v = zero
                if kk < FKK and cc < C:
                    v = w[kk // KK, cc, (kk // KW) % KH, kk % KW]
                sb[kl, cl] = v
            cuda.syncthreads()
            for kk in range(CONV_TK):
                acc += sa[kk, tx] * sb[kk, ty]
            cuda.syncthreads()
        if r < M2 and c < C:
            dx[n, c, a, b] = acc


# ---------------------------------------------------------------------------
# signatures and launchers
# ---------------------------------------------------------------------------
def signatures(dtype):
    """{kernel name: (python function, [signatures])} for ``dtype``."""
    T, T1, T2, T3, T4 = array_types(dtype)
    return {
        "conv_forward": (conv_forward_kernel, [sig(T4, T4, T4)]),
        "conv_backward": (conv_backward_kernel,
                          [sig(T4, T4, T4, T4, T4, T3, I32_1, I32, I32)]),
    }


def forward_config(x_shape, w_shape):
    """(grid, block) for conv_forward_kernel."""
    N, C, H, W = x_shape
    F, _, KH, KW = w_shape
    M = N * (H - KH + 1) * (W - KW + 1)
    return (cdiv(M, CONV_TR), cdiv(F, CONV_TC)), (CONV_TR, CONV_TC)


def backward_plan(x_shape, w_shape, has_dx):
    """(grid, block, splits, rows_per_split, dW tiles) for conv_backward_kernel.

    The dW reduction runs over N*OH*OW rows, long next to the F x C*KH*KW
    output (conv1: 5,760 rows at N=10 for 500 outputs); it is split so that
    about TARGET_BLOCKS blocks run, each over at least 4 K-steps.
    """
    N, C, H, W = x_shape
    F, _, KH, KW = w_shape
    M = N * (H - KH + 1) * (W - KW + 1)
    dw_tiles = cdiv(C * KH * KW, CONV_TR) * cdiv(F, CONV_TC)
    steps = cdiv(M, CONV_TK)
    splits = max(1, min(cdiv(TARGET_BLOCKS, dw_tiles), steps // 4))
    rows_per_split = cdiv(steps, splits) * CONV_TK
    splits = cdiv(M, rows_per_split)
    dx_tiles = cdiv(N * H * W, CONV_TR) * cdiv(C, CONV_TC) if has_dx else 0
    return (dw_tiles * splits + dx_tiles,), (CONV_TR, CONV_TC), splits, rows_per_split, dw_tiles
