"""pool: max-pool ignoring the border, then bias, then activation.

Shape letters: N batch, F maps, CH x CW convolution output, ph x pw window,
PH x PW = (CH // ph) x (CW // pw) pooled output.

  forward   out[n,f,i,j] = act(max_{window (i,j)} conv[n,f] + b[f])
  backward  dz = dout * act'(out)                 (written back into dout)
            db[f] = sum_{n,i,j} dz[n,f,i,j]
            dconv = dz at EVERY position equal to its window's maximum
                    (Theano's rule), 0 elsewhere and on the ignored border

The backward pass is one launch: a thread owns whole windows (so it alone
reads and rewrites dout there: no race), writes their dconv cells, and the
windows in the last row/column also zero the border beyond them.  Blocks are
(split, f); each sums its dz, and the last split of each f adds the block sums
in a fixed order into db[f].
"""

from numba import cuda

from .common import (POOL_MIN_WINDOWS, TARGET_BLOCKS, TPB, I32, I32_1, activate,
                     activation_grad, array_types, block_sum, cdiv, last_block, sig)


def pool_forward_kernel(conv_out, b, out, act, ph, pw):
    """conv_out (N, F, CH, CW)  IN;  b (F,)  IN;  out (N, F, PH, PW)  OUT

    grid: (cdiv(N*F*PH*PW, TPB),); block TPB; one thread per pooled output
    """
    N, F, PH, PW = out.shape[0], out.shape[1], out.shape[2], out.shape[3]
    t = cuda.grid(1)
    if t < N * F * PH * PW:
        one = out.dtype.type(1)
        j = t % PW
        i = (t // PW) % PH
        f = (t // (PW * PH)) % F
        n = t // (PW * PH * F)
        y0 = i * ph
        x0 = j * pw
        m = conv_out[n, f, y0, x0]
        for dy in range(ph):
            for dx in range(pw):
                v = conv_out[n, f, y0 + dy, x0 + dx]
                if v > m:
                    m = v
        out[n, f, i, j] = activate(m + b[f], act, one)


def pool_backward_kernel(conv_out, out, dout, dconv, db, partial, counter,
                         act, ph, pw, splits):
    """conv_out (N, F, CH, CW)  IN;  out (N, F, PH, PW)  IN
    dout (N, F, PH, PW)  IN/OUT (becomes dz);  dconv (N, F, CH, CW)  OUT
    db (F,)  OUT;  partial (splits, F)  workspace;  counter (F,) int32, zeros

    grid: (splits, F); block TPB; block (s, f) owns windows
    [s*chunk, (s+1)*chunk) of f's N*PH*PW windows, chunk = cdiv(.., splits)
    """
    sh = cuda.shared.array(TPB, dtype=out.dtype)
    flag = cuda.shared.array(1, dtype=I32)
    N, PH, PW = out.shape[0], out.shape[2], out.shape[3]
    CH, CW = conv_out.shape[2], conv_out.shape[3]
    one = out.dtype.type(1)
    zero = one - one
    tid = cuda.threadIdx.x
    s = cuda.blockIdx.x
    f = cuda.blockIdx.y
    per_f = N * PH * PW
    chunk = (per_f + splits - 1) // splits
    lo = s * chunk
    hi = min(per_f, lo + chunk)
    part = zero
    for t in range(lo + tid, hi, TPB):
        j = t % PW
        i = (t // PW) % PH
        n = t // (PW * PH)
        dz = dout[n, f, i, j] * activation_grad(out[n, f, i, j], act, one)
        dout[n, f, i, j] = dz
        part += dz
        y0 = i * ph
        x0 = j * pw
        m = conv_out[n, f, y0, x0]
        for dy in range(ph):
            for dx in range(pw):
                v = conv_out[n, f, y0 + dy, x0 + dx]
                if v > m:
                    m = v
        # this thread's cells: the window, plus the border beyond the last
        # window of a row / column (which the forward pass ignored)
        y1 = CH if i == PH - 1 else y0 + ph
        x1 = CW if j == PW - 1 else x0 + pw
        for y in range(y0, y1):
            for x in range(x0, x1):
                g = zero
                if y < y0 + ph and x < x0 + pw and conv_out[n, f, y, x] == m:
                    g = dz
                dconv[n, f, y, x] = g
    total = block_sum(part, sh, tid, TPB)
    if splits == 1:
        if tid == 0:
            db[f] = total
    else:
        if tid == 0:
            partial[s, f] = total
        if last_block(counter, f, splits, flag, tid):
            if tid == 0:
                acc = zero
                for k in range(splits):        # fixed order: deterministic
                    acc += partial[k, f]
                db[f] = acc


# ---------------------------------------------------------------------------
# signatures and launchers
# ---------------------------------------------------------------------------
def signatures(dtype):
    """{kernel name: (python function, [signatures])} for ``dtype``."""
    T, T1, T2, T3, T4 = array_types(dtype)
    return {
        "pool_forward": (pool_forward_kernel, [sig(T4, T1, T4, I32, I32, I32)]),
        "pool_backward": (pool_backward_kernel,
                          [sig(T4, T4, T4, T4, T1, T2, I32_1, I32, I32, I32, I32)]),
    }


def forward_config(out_shape):
    N, F, PH, PW = out_shape
    return (cdiv(N * F * PH * PW, TPB),), (TPB,)


def backward_plan(out_shape):
    """(grid, block, splits): about TARGET_BLOCKS blocks, each with at least
    POOL_MIN_WINDOWS windows."""
    N, F, PH, PW = out_shape
    per_f = N * PH * PW
    splits = max(1, min(cdiv(TARGET_BLOCKS, F), per_f // POOL_MIN_WINDOWS))
    return (splits, F), (TPB,), splits
