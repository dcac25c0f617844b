# conv: Theano's conv.conv2d -- a true convolution (kernel flipped), 'valid'.
#
# Shape letters: N batch, C input channels, H x W image, F filters,
# KH x KW kernel, OH x OW output (OH = H-KH+1, OW = W-KW+1), P = OH*OW output
# positions, K = C*KH*KW taps.  All arrays are C-contiguous.
#
# The kernels are `cdef inline ... noexcept nogil` over raw pointers, so any
# compiled module (conv.pyx's checked entry points, a whole-epoch trainer)
# can cimport them from this file and run them without the GIL.  The caller
# owns the workspace: conv_workspace_size() says how many elements it needs.
#
# Method: im2col + one GEMM per sample, samples split over the threads.
#   cols[(c,p,q), (i,j)] = x[n, c, i+KH-1-p, j+KW-1-q]     (K, P), kernel flip
#                                                           folded in here
#   out[n] (F, P) = w (F, K) @ cols (K, P)
#
# Tie-consistency.  Max-pool ties (conformance README, behaviour 7) need equal
# input patches to give bitwise-equal outputs wherever they are.  Every
# sample's product is the same-shaped GEMM, and within one GEMM a BLAS
# micro-kernel computes all rows of its full tiles alike -- but not the rows
# of a partial tile at the matrix's edge, which OpenBLAS does with other code
# that can round differently.  Measured with scipy's OpenBLAS on SkylakeX: an
# edge position 1 ulp off its equal interior twin in 20-25% of odd shapes;
# none once the rows were a multiple of 16 (sgemm) or 8 (dgemm).  So the
# positions dimension is padded with zero columns to a multiple of TIE_PAD,
# and only full tiles hold real positions.  16 also covers the 4- and 8-row
# unrolls of OpenBLAS's other x86-64 and ARMv8 kernels;
# tests/test_conv.py::test_conv_forward_is_tie_consistent checks the
# property on the machine it runs on.  (The book's P = 576 and 64 need no
# padding.)

from libc.string cimport memcpy, memset
from cython.parallel cimport prange

from common cimport floating, padded, threads_for
from blas cimport gemm

cdef enum:
    TIE_PAD = 16


cdef inline Py_ssize_t padded_positions(Py_ssize_t P) noexcept nogil:
    """P rounded up to a multiple of TIE_PAD (see the header)."""
    return (P + TIE_PAD - 1) // TIE_PAD * TIE_PAD


cdef inline Py_ssize_t conv_workspace_size(Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                                           Py_ssize_t F, Py_ssize_t KH, Py_ssize_t KW,
                                           int n_threads, bint backward,
                                           bint need_dx) noexcept nogil:
    """Elements of workspace conv_forward_kernel (backward=False) or
    conv_backward_kernel (backward=True) needs with n_threads threads."""
    cdef Py_ssize_t K = C * KH * KW
    cdef Py_ssize_t P = (H - KH + 1) * (W - KW + 1)
    cdef Py_ssize_t PP = padded_positions(P)
    cdef Py_ssize_t per = padded(K * PP)
    if backward:
        if need_dx:
            per += padded(K * P)
        per += padded(F * K)
    elif PP != P:
        per += padded(F * PP)
    if n_threads < 1:
        n_threads = 1
    return per * n_threads


cdef inline void im2col(const floating* x, floating* cols, Py_ssize_t ld,
                        Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH,
                        Py_ssize_t KW) noexcept nogil:
    """cols[(c,p,q), i*OW+j] = x[c, i+KH-1-p, j+KW-1-q] for one sample; the
    columns from OH*OW to ld (the padding) are zero.

    x (C, H, W)  IN;  cols (C*KH*KW, ld)  OUT, ld >= OH*OW
    """
    cdef Py_ssize_t OH = H - KH + 1, OW = W - KW + 1
    cdef Py_ssize_t c, p, q, i, j
    cdef floating* row
    cdef const floating* src
    for c in range(C):
        for p in range(KH):
            for q in range(KW):
                row = cols + ((c * KH + p) * KW + q) * ld
                src = x + (c * H + KH - 1 - p) * W + (KW - 1 - q)
                for i in range(OH):
                    # a loop, not memcpy: rows are short (8 to 24 in the book)
                    for j in range(OW):
                        row[i * OW + j] = src[i * W + j]
                if ld > OH * OW:
                    memset(row + OH * OW, 0, (ld - OH * OW) * sizeof(floating))


cdef inline void col2im(const floating* dcols, floating* dx, Py_ssize_t C,
                        Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH,
                        Py_ssize_t KW) noexcept nogil:
    """dx[c, i+KH-1-p, j+KW-1-q] += dcols[(c,p,q), i*OW+j], dx zeroed first
    (the adjoint of im2col) for one sample.

    dcols (C*KH*KW, OH*OW)  IN;  dx (C, H, W)  OUT
    """
    cdef Py_ssize_t OH = H - KH + 1, OW = W - KW + 1
    cdef Py_ssize_t c, p, q, i, j
    cdef const floating* row
    cdef floating* dst
    memset(dx, 0, C * H * W * sizeof(floating))
    for c in range(C):
        for p in range(KH):
            for q in range(KW):
                row = dcols + ((c * KH + p) * KW + q) * OH * OW
                dst = dx + (c * H + KH - 1 - p) * W + (KW - 1 - q)
                for i in range(OH):
                    for j in range(OW):
                        dst[i * W + j] = dst[i * W + j] + row[i * OW + j]


cdef inline void conv_forward_kernel(const floating* x, const floating* w,
                                     floating* out, floating* work,
                                     Py_ssize_t N, Py_ssize_t C, Py_ssize_t H,
                                     Py_ssize_t W, Py_ssize_t F, Py_ssize_t KH,
                                     Py_ssize_t KW, int n_threads) noexcept nogil:
    """out[n,f,i,j] = sum_{c,p,q} x[n,c,i+p,j+q] * w[f,c,KH-1-p,KW-1-q]

    x (N, C, H, W)  IN;  w (F, C, KH, KW)  IN;  out (N, F, OH, OW)  OUT
    work: conv_workspace_size(C, H, W, F, KH, KW, n_threads, False, False)
    """
    cdef Py_ssize_t K = C * KH * KW
    cdef Py_ssize_t P = (H - KH + 1) * (W - KW + 1)
    cdef Py_ssize_t PP = padded_positions(P)
    cdef Py_ssize_t per = padded(K * PP) + (padded(F * PP) if PP != P else 0)
    cdef Py_ssize_t n, n0, n1, f
    cdef floating* cols
    cdef floating* res
    cdef int t
    cdef int T = threads_for(n_threads, N, N * F * P * K)
    for t in prange(T, num_threads=T, schedule='static'):
        cols = work + t * per
        res = cols + padded(K * PP)
        n0 = t * N // T
        n1 = (t + 1) * N // T
        for n in range(n0, n1):
            im2col(x + n * C * H * W, cols, PP, C, H, W, KH, KW)
            if PP == P:
                # out[n] = w @ cols:  column-major (P x F) = cols (P x K) @ w (K x F)
                gemm(c'N', c'N', <int>P, <int>F, <int>K, <floating>1, cols, <int>P,
                     w, <int>K, <floating>0, out + n * F * P, <int>P)
            else:
                # the same into res (F, PP), then its first P columns to out[n]
                gemm(c'N', c'N', <int>PP, <int>F, <int>K, <floating>1, cols, <int>PP,
                     w, <int>K, <floating>0, res, <int>PP)
                for f in range(F):
                    memcpy(out + (n * F + f) * P, res + f * PP, P * sizeof(floating))


cdef inline void conv_backward_kernel(const floating* x, const floating* w,
                                      const floating* dout, floating* dw,
                                      floating* dx, floating* work,
                                      Py_ssize_t N, Py_ssize_t C, Py_ssize_t H,
                                      Py_ssize_t W, Py_ssize_t F, Py_ssize_t KH,
                                      Py_ssize_t KW, int n_threads) noexcept nogil:
    """Gradients of conv_forward_kernel.

    dw[f,c,p,q] = sum_{n,i,j} dout[n,f,i,j] * x[n,c,i+KH-1-p,j+KW-1-q]
                = sum_n dout[n] (F, P) @ cols[n].T (P, K)
    dx[n,c,a,b] = sum_{f,p,q} dout_padded[n,f,a+p,b+q] * w[f,c,p,q]
                = col2im(w.T (K, F) @ dout[n] (F, P))
                  (dout zero-padded by KH-1, KW-1: a full correlation)

    x (N, C, H, W)  IN;  w (F, C, KH, KW)  IN;  dout (N, F, OH, OW)  IN
    dw (F, C, KH, KW)  OUT;  dx (N, C, H, W)  OUT, or NULL
    work: conv_workspace_size(C, H, W, F, KH, KW, n_threads, True, dx != NULL)

    Each thread sums its own samples' dw (thread 0 straight into dw, the
    others into the workspace); the partial sums are then added in thread
    order, so the result depends only on the thread count.
    """
    cdef Py_ssize_t K = C * KH * KW
    cdef Py_ssize_t P = (H - KH + 1) * (W - KW + 1)
    cdef Py_ssize_t PP = padded_positions(P)
    cdef bint need_dx = dx != NULL
    cdef Py_ssize_t per = padded(K * PP) + (padded(K * P) if need_dx else 0) + padded(F * K)
    cdef Py_ssize_t n, n0, n1, i
    cdef floating* cols
    cdef floating* dcols
    cdef floating* acc
    cdef floating s
    cdef int t, u
    cdef int T = threads_for(n_threads, N, N * F * P * K)
    if N == 0:
        memset(dw, 0, F * K * sizeof(floating))
        return
    for t in prange(T, num_threads=T, schedule='static'):
        cols = work + t * per
        dcols = cols + padded(K * PP)
        acc = dw if t == 0 else work + t * per + (per - padded(F * K))
        n0 = t * N // T
        n1 = (t + 1) * N // T
        for n in range(n0, n1):
            im2col(x + n * C * H * W, cols, PP, C, H, W, KH, KW)
            # dw += dout[n] @ cols.T:  column-major (K x F) += cols.T (K x P) @ dout[n] (P x F)
            gemm(c'T', c'N', <int>K, <int>F, <int>P, <floating>1, cols, <int>PP,
                 dout + n * F * P, <int>P, <floating>(0 if n == n0 else 1),
                 acc, <int>K)
            if need_dx:
                # dcols = w.T @ dout[n]:  column-major (P x K) = dout[n] (P x F) @ w.T (F x K)
                gemm(c'N', c'T', <int>P, <int>K, <int>F, <floating>1,
                     dout + n * F * P, <int>P, w, <int>K, <floating>0, dcols, <int>P)
                col2im(dcols, dx + n * C * H * W, C, H, W, KH, KW)
    # dw = partial sum of thread 0 + those of threads 1..T-1, in that order
    if T > 1:
        for i in prange(F * K, num_threads=T, schedule='static'):
            s = dw[i]
            for u in range(1, T):
                s = s + work[u * per + (per - padded(F * K)) + i]
            dw[i] = s
