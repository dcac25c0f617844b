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
# Method: im2col + one product per sample, samples split over the threads.
#   cols[(c,p,q), (i,j)] = x[n, c, i+KH-1-p, j+KW-1-q]     (K, P), kernel flip
#                                                           folded in here
#   out[n] (F, P) = w (F, K) @ cols (K, P)
#
# Which product.  With many taps (K >= BCAST_MIN_TAPS: the book's second
# layer, 40 filters x 500 taps x 64 positions) the products are small and
# OpenBLAS spends much of its time packing operands it uses once; there
# blas.pxd's bcast_gemm (register tiles, no packing) runs them -- measured
# on one SkylakeX-class core, sgemm 98 / 112 / 104 GFLOP/s against
# bcast_gemm 153 / 147 / 130 for forward / dx / dw.  With few taps (the
# book's first layer: K = 25 by 576 positions) OpenBLAS is near the core's
# peak and bcast_gemm is not (177 against 138 forward), so BLAS stays.  The
# weight gradient's bcast_gemm product is computed transposed,
#   dw.T (K, F) = cols (K, P) @ dout.T (P, F)             (F padded to 16)
# so that its vectors run along the filters.
#
# Tie-consistency.  Max-pool ties (conformance README, behaviour 7) need equal
# input patches to give bitwise-equal outputs wherever they are.  Every
# sample's product is the same-shaped GEMM, and within one GEMM a BLAS
# micro-kernel computes all rows of its full tiles alike -- but not the rows
# of a partial tile at the matrix's edge, which OpenBLAS does with other code
# that can round differently (bcast_gemm computes every element alike, so
# only the BLAS path needs what follows).  Measured with scipy's OpenBLAS on
# SkylakeX: an edge position 1 ulp off its equal interior twin in 20-25% of odd shapes;
# none once the rows were a multiple of 16 (sgemm) or 8 (dgemm).  So the
# positions dimension is padded with zero columns to a multiple of TIE_PAD,
# and only full tiles hold real positions.  16 also covers the 4- and 8-row
# unrolls of OpenBLAS's other x86-64 and ARMv8 kernels;
# tests/test_conv.py::test_conv_forward_is_tie_consistent checks the
# property on the machine it runs on.  (The book's P = 576 and 64 need no
# padding.)

from libc.string cimport memcpy, memset
from cython.parallel cimport prange, threadid

from common cimport floating, padded, threads_for
from blas cimport gemm, bcast_gemm, FN_FAST_PRODUCTS

cdef enum:
    TIE_PAD = 16
    # taps from which the products run in bcast_gemm instead of BLAS
    BCAST_MIN_TAPS = 128


cdef inline Py_ssize_t padded_positions(Py_ssize_t P) noexcept nogil:
    """P rounded up to a multiple of TIE_PAD (see the header)."""
    return (P + TIE_PAD - 1) // TIE_PAD * TIE_PAD


cdef inline bint uses_bcast(Py_ssize_t K) noexcept nogil:
    """Whether a convolution with K taps runs its products in bcast_gemm
    (built with fused multiply-adds only: bcast_gemm.h's FN_FAST_PRODUCTS)."""
    return K >= BCAST_MIN_TAPS and FN_FAST_PRODUCTS


cdef inline Py_ssize_t conv_sample_workspace(Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                                             Py_ssize_t F, Py_ssize_t KH, Py_ssize_t KW,
                                             bint backward, bint need_dx) noexcept nogil:
    """Elements of scratch conv_forward_sample (backward=False) or
    conv_backward_sample (backward=True) needs for one sample."""
    cdef Py_ssize_t K = C * KH * KW
    cdef Py_ssize_t P = (H - KH + 1) * (W - KW + 1)
    cdef Py_ssize_t PP = padded_positions(P)
    if not backward:
        return padded(K * PP) + (padded(F * PP) if PP != P else 0)
    if uses_bcast(K):
        return (padded(K * PP) + padded(P * padded(F))
                + (padded(K * P) if need_dx else 0))
    return padded(K * PP) + (padded(K * P) if need_dx else 0)


cdef inline Py_ssize_t conv_dw_size(Py_ssize_t F, Py_ssize_t K) noexcept nogil:
    """Elements of one weight-gradient partial sum: (F, K) for BLAS, or
    transposed (K, F padded to 16) where bcast_gemm computes it."""
    return K * padded(F) if uses_bcast(K) else F * K


cdef enum:
    # A mini-batch's weight gradient is summed in fixed blocks of
    # consecutive samples (block b: samples b*N//B .. (b+1)*N//B - 1,
    # B = conv_blocks(N)), each block's partial sum in sample order, then the
    # blocks added in block order (conv_dw_reduce).  The blocks depend on N
    # only: the gradient is the same whatever the thread count (threads take
    # whole blocks), so a run's results do not depend on the machine's cores.
    CONV_BLOCKS = 16
    # samples per block at least: a block's partial sum costs a pass over
    # the gradient in the reduction, as much as ~1/3 sample's product
    CONV_BLOCK_MIN = 3


cdef inline Py_ssize_t conv_blocks(Py_ssize_t N) noexcept nogil:
    """Blocks of the weight-gradient sum of N samples: the largest power of
    two with CONV_BLOCK_MIN samples a block, at most CONV_BLOCKS (a power of
    two splits evenly over 2, 4, 8 threads).  Mini-batch 10: 2; 20: 4;
    128: 16."""
    cdef Py_ssize_t B = 1
    while B * 2 <= CONV_BLOCKS and B * 2 * CONV_BLOCK_MIN <= N:
        B *= 2
    return B


cdef inline Py_ssize_t conv_workspace_size(Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                                           Py_ssize_t F, Py_ssize_t KH, Py_ssize_t KW,
                                           int n_threads, bint backward,
                                           bint need_dx) noexcept nogil:
    """Elements of workspace conv_forward_kernel (backward=False) or
    conv_backward_kernel (backward=True) needs with n_threads threads."""
    cdef Py_ssize_t per = conv_sample_workspace(C, H, W, F, KH, KW, backward, need_dx)
    if n_threads < 1:
        n_threads = 1
    if backward:
        # and the blocks' partial sums of the weight gradient
        return per * n_threads + CONV_BLOCKS * padded(conv_dw_size(F, C * KH * KW))
    return per * n_threads


cdef extern from "conv_patches.h" nogil:
    void im2col_f(const float* x, float* cols, Py_ssize_t ld, Py_ssize_t C,
                  Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW)
    void im2col_d(const double* x, double* cols, Py_ssize_t ld, Py_ssize_t C,
                  Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW)
    void col2im_f(const float* dcols, Py_ssize_t ld, float* dx, Py_ssize_t C,
                  Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW)
    void col2im_d(const double* dcols, Py_ssize_t ld, double* dx, Py_ssize_t C,
                  Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW)


cdef inline void im2col(const floating* x, floating* cols, Py_ssize_t ld,
                        Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH,
                        Py_ssize_t KW) noexcept nogil:
    """cols[(c,p,q), i*OW+j] = x[c, i+KH-1-p, j+KW-1-q] for one sample; the
    columns from OH*OW to ld (the padding) are zero (conv_patches.h).

    x (C, H, W)  IN;  cols (C*KH*KW, ld)  OUT, ld >= OH*OW
    """
    if floating is float:
        im2col_f(x, cols, ld, C, H, W, KH, KW)
    else:
        im2col_d(x, cols, ld, C, H, W, KH, KW)


cdef inline void col2im(const floating* dcols, Py_ssize_t ld, floating* dx,
                        Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH,
                        Py_ssize_t KW) noexcept nogil:
    """dx[c, i+KH-1-p, j+KW-1-q] += dcols[(c,p,q), i*OW+j], dx zeroed first
    (the adjoint of im2col) for one sample.

    dcols (C*KH*KW, ld)  IN, ld >= OH*OW;  dx (C, H, W)  OUT
    """
    if floating is float:
        col2im_f(dcols, ld, dx, C, H, W, KH, KW)
    else:
        col2im_d(dcols, ld, dx, C, H, W, KH, KW)


cdef inline void conv_forward_sample(const floating* x, const floating* w,
                                     floating* out, floating* work, floating* keep,
                                     Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                                     Py_ssize_t F, Py_ssize_t KH,
                                     Py_ssize_t KW) noexcept nogil:
    """conv_forward_kernel for one sample: x (C, H, W) -> out (F, OH, OW).
    work: conv_sample_workspace(C, H, W, F, KH, KW, False, False);  keep:
    where the patches go (K, PP) for conv_backward_sample to reuse, or NULL."""
    cdef Py_ssize_t K = C * KH * KW
    cdef Py_ssize_t P = (H - KH + 1) * (W - KW + 1)
    cdef Py_ssize_t PP = padded_positions(P)
    cdef Py_ssize_t f
    cdef floating* cols = keep if keep != NULL else work
    cdef floating* res = work + padded(K * PP)
    im2col(x, cols, PP, C, H, W, KH, KW)
    if PP != P:
        # all PP columns (full tiles only) into res, then out
        if uses_bcast(K):
            bcast_gemm(F, PP, K, w, K, 1, cols, PP, res, PP, False)
        else:
            # column-major (PP x F) = cols (PP x K) @ w (K x F)
            gemm(c'N', c'N', <int>PP, <int>F, <int>K, <floating>1, cols,
                 <int>PP, w, <int>K, <floating>0, res, <int>PP)
        for f in range(F):
            memcpy(out + f * P, res + f * PP, P * sizeof(floating))
    elif uses_bcast(K):
        # out = w @ cols
        bcast_gemm(F, P, K, w, K, 1, cols, P, out, P, False)
    else:
        # out = w @ cols:  column-major (P x F) = cols (P x K) @ w (K x F)
        gemm(c'N', c'N', <int>P, <int>F, <int>K, <floating>1, cols, <int>P,
             w, <int>K, <floating>0, out, <int>P)


cdef inline void conv_backward_sample(const floating* x, const floating* w,
                                      const floating* dout, floating* acc,
                                      bint accumulate, floating* dx, floating* work,
                                      const floating* kept, Py_ssize_t C,
                                      Py_ssize_t H, Py_ssize_t W, Py_ssize_t F,
                                      Py_ssize_t KH, Py_ssize_t KW) noexcept nogil:
    """conv_backward_kernel for one sample: x (C, H, W), dout (F, OH, OW).
    acc (conv_dw_size(F, K) elements) (+)= this sample's weight gradient
    (+= when accumulate); dx (C, H, W) = its input gradient, unless NULL.
    work: conv_sample_workspace(C, H, W, F, KH, KW, True, dx != NULL);
    kept: x's patches as conv_forward_sample kept them, or NULL (made here)."""
    cdef Py_ssize_t K = C * KH * KW, Fp = padded(F)
    cdef Py_ssize_t P = (H - KH + 1) * (W - KW + 1)
    cdef Py_ssize_t PP = padded_positions(P)
    cdef Py_ssize_t f, p
    cdef const floating* cols = kept
    cdef floating* doutT
    cdef floating* dcols
    if kept == NULL:
        im2col(x, work, PP, C, H, W, KH, KW)
        cols = work
    if uses_bcast(K):
        doutT = work + padded(K * PP)
        dcols = doutT + padded(P * Fp)
        # acc (K, Fp) (+)= cols (K, P) @ doutT (P, Fp): the gradient
        # transposed, so that bcast_gemm's vectors run along the filters
        for p in range(P):
            for f in range(F):
                doutT[p * Fp + f] = dout[f * P + p]
            for f in range(F, Fp):
                doutT[p * Fp + f] = 0
        bcast_gemm(K, Fp, P, cols, PP, 1, doutT, Fp, acc, Fp, accumulate)
        if dx != NULL:
            # dcols (K, P) = w.T (K, F) @ dout (F, P)
            bcast_gemm(K, P, F, w, 1, K, dout, P, dcols, P, False)
    else:
        dcols = work + padded(K * PP)
        # acc (+)= dout @ cols.T:  column-major (K x F) (+)= cols.T (K x P) @ dout (P x F)
        gemm(c'T', c'N', <int>K, <int>F, <int>P, <floating>1, cols, <int>PP,
             dout, <int>P, <floating>(1 if accumulate else 0), acc, <int>K)
        if dx != NULL:
            # dcols = w.T @ dout:  column-major (P x K) = dout (P x F) @ w.T (F x K)
            gemm(c'N', c'T', <int>P, <int>K, <int>F, <floating>1,
                 dout, <int>P, w, <int>K, <floating>0, dcols, <int>P)
    if dx != NULL:
        col2im(dcols, P, dx, C, H, W, KH, KW)


cdef inline void conv_dw_reduce(floating* dw, floating* acc0, Py_ssize_t stride,
                                Py_ssize_t B, Py_ssize_t F, Py_ssize_t K) noexcept nogil:
    """dw (F, K) = the B partial sums acc0 + b*stride (conv_dw_size layout),
    added in block order.  The sums go into acc0 (scratch) a block at a
    time, unit stride, then to dw in its layout."""
    cdef Py_ssize_t f, k, i, n = conv_dw_size(F, K), Fp = padded(F)
    cdef Py_ssize_t u
    cdef floating* a0 = <floating*>acc0
    cdef const floating* au
    for u in range(1, B):
        au = acc0 + u * stride
        for i in range(n):
            a0[i] = a0[i] + au[i]
    if uses_bcast(K):
        for f in range(F):
            for k in range(K):
                dw[f * K + k] = a0[k * Fp + f]
    else:
        memcpy(dw, a0, F * K * sizeof(floating))


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
    cdef Py_ssize_t per = conv_sample_workspace(C, H, W, F, KH, KW, False, False)
    cdef Py_ssize_t n, n0, n1
    cdef int t
    cdef int T = threads_for(n_threads, N, N * F * P * K)
    for t in prange(T, num_threads=T, schedule='static'):
        n0 = t * N // T
        n1 = (t + 1) * N // T
        for n in range(n0, n1):
            conv_forward_sample(x + n * C * H * W, w, out + n * F * P, work + t * per,
                                NULL, C, H, W, F, KH, KW)


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

    The weight gradient is summed in conv_blocks(N) fixed blocks of samples
    (CONV_BLOCKS), whole blocks per thread: the result does not depend on
    the thread count.
    """
    cdef Py_ssize_t K = C * KH * KW
    cdef Py_ssize_t P = (H - KH + 1) * (W - KW + 1)
    cdef bint need_dx = dx != NULL
    cdef Py_ssize_t per = conv_sample_workspace(C, H, W, F, KH, KW, True, need_dx)
    cdef Py_ssize_t acc_size = padded(conv_dw_size(F, K))
    cdef floating* accs = work + (n_threads if n_threads > 1 else 1) * per
    cdef Py_ssize_t n, n0, n1, b, B = conv_blocks(N)
    cdef int T = threads_for(n_threads, B, N * F * P * K)
    if N == 0:
        memset(dw, 0, F * K * sizeof(floating))
        return
    for b in prange(B, num_threads=T, schedule='static'):
        n0 = b * N // B
        n1 = (b + 1) * N // B
        for n in range(n0, n1):
            conv_backward_sample(x + n * C * H * W, w, dout + n * F * P,
                                 accs + b * acc_size, n > n0,
                                 (dx + n * C * H * W) if need_dx else NULL,
                                 work + threadid() * per, NULL, C, H, W, F, KH, KW)
    conv_dw_reduce(dw, accs, acc_size, B, F, K)
