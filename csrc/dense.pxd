# dense: x @ w, scaled, plus bias, then activation; dropout masks.
#
# Shape letters: N batch, I inputs, O outputs.  All arrays are C-contiguous.
# Activation codes: common.pxd.
#
# Inline nogil kernels over raw pointers, cimported by dense.pyx and by any
# compiled trainer.  The bias + activation pass runs over rows.
#
# The products.  A mini-batch of a few rows (N <= SMALL_BATCH, the book's
# 10) through a big layer (w beyond the core's cache) makes every product a
# stream over w with little arithmetic per weight: the time is w's trip from memory (measured ~16 GB/s per core
# here, 240 us for a 1000 x 1000 float32 layer), and BLAS's packing of w
# reads and writes it once more before using it.  So for small N:
#   out = x @ w        blas.bcast_gemm, w read along its rows, not packed;
#   dx  = dz @ w.T     blas.bcast_rowdot, w read along its rows;
#   dw  = x.T @ dz     blas.bcast_gemm, block of rows by block of rows,
# each thread a block of w's columns (forward) or rows (backward).  Larger
# mini-batches go to BLAS, cut over the threads by blas.gemm_parallel.
#
# Dropout bits are counter-based: element i of draw `counter` of a stream
# `seed` (n elements per draw) gets the high 32 bits of splitmix64's
# finaliser applied to
#     z = seed + (counter*n + i + 1) * 0x9E3779B97F4A7C15   (mod 2^64)
# so every engine draws the same mask, on any number of threads.

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from cython.parallel cimport prange

from common cimport (floating, activate_rows, scale_by_activation_grad,
                     threads_for, LINEAR)
from blas cimport gemm, gemm_parallel, bcast_gemm, bcast_rowdot, FN_FAST_PRODUCTS

cdef enum:
    # mini-batches up to this many rows take the streaming products
    SMALL_BATCH = 16
    # rows of w per block of the small-batch backward pass (in L2 together
    # with their gradient)
    DENSE_ROW_BLOCK = 64
    # products smaller than this run on the calling thread
    DENSE_PARALLEL_MIN = 1 << 22
    # weights from which a small-batch layer streams (see dense_streams)
    STREAM_MIN_WEIGHTS = 1 << 17


cdef inline bint dense_streams(Py_ssize_t N, Py_ssize_t I, Py_ssize_t O) noexcept nogil:
    """Whether an I x O layer at mini-batch N takes the streaming products:
    a few rows, at least one whole vector of outputs, and a w too big for
    the core's cache (from 512 KiB of float32; a w that stays in cache is
    faster through BLAS: 640 x 100 backward measured 31 us by BLAS, 60 us
    streamed), on a build with fused multiply-adds (FN_FAST_PRODUCTS)."""
    return (N <= SMALL_BATCH and O >= 16 and I * O >= STREAM_MIN_WEIGHTS
            and FN_FAST_PRODUCTS)


cdef inline int dense_threads(int n_threads, Py_ssize_t N, Py_ssize_t I,
                              Py_ssize_t O) noexcept nogil:
    """Threads for a product of N x I x O multiply-adds: every fork and join
    costs more than a small product takes."""
    return n_threads if N * I * O >= DENSE_PARALLEL_MIN and n_threads > 1 else 1


cdef inline void dense_backward_rows(const floating* x, const floating* w,
                                     const floating* dz, floating* dw, floating* dx,
                                     Py_ssize_t i0, Py_ssize_t ib, Py_ssize_t N,
                                     Py_ssize_t I, Py_ssize_t O) noexcept nogil:
    """Rows i0 .. i0+ib-1 of the backward products, on the calling thread:
    dx[:, i0:i0+ib] = dz @ w[i0:i0+ib].T (unless dx is NULL) and
    dw[i0:i0+ib] = x[:, i0:i0+ib].T @ dz -- streamed (dense_streams) or
    by BLAS."""
    if dense_streams(N, I, O):
        if dx != NULL:
            bcast_rowdot(N, ib, O, dz, O, w + i0 * O, O, dx + i0, I)
        bcast_gemm(ib, O, N, x + i0, 1, I, dz, O, dw + i0 * O, O, False)
        return
    if dx != NULL:
        # column-major (ib x N) = w_blk.T (ib x O) @ dz (O x N)
        gemm(c'T', c'N', <int>ib, <int>N, <int>O, <floating>1, w + i0 * O, <int>O,
             dz, <int>O, <floating>0, dx + i0, <int>I)
    # column-major (O x ib) = dz (O x N) @ x_blk.T (N x ib)
    gemm(c'N', c'T', <int>O, <int>ib, <int>N, <floating>1, dz, <int>O, x + i0, <int>I,
         <floating>0, dw + i0 * O, <int>O)


cdef inline void dense_forward_kernel(const floating* x, const floating* w,
                                      const floating* b, int act, floating scale,
                                      floating* out, Py_ssize_t N, Py_ssize_t I,
                                      Py_ssize_t O, int n_blocks, int n_threads) noexcept nogil:
    """out = act(scale * (x @ w) + b)

    n_blocks: the pieces a BLAS product is cut into (gemm_parallel: they fix
    the result), shared among n_threads threads.

    scale is 1 while training and (1 - p_dropout) at inference (network3).
    x (N, I)  IN;  w (I, O)  IN;  b (O,)  IN;  out (N, O)  OUT
    """
    cdef Py_ssize_t r0, r1, nv, v0, v1, o0, o1, i
    cdef int t, T
    if dense_streams(N, I, O):
        # out = x @ w, each thread a block of whole vectors of columns
        T = dense_threads(n_threads, N, I, O)
        nv = (O + 15) // 16
        if T > nv:
            T = <int>nv
        for t in prange(T, num_threads=T, schedule='static'):
            v0 = t * nv // T
            v1 = (t + 1) * nv // T
            o0 = v0 * 16
            o1 = O if v1 == nv else v1 * 16
            bcast_gemm(N, o1 - o0, I, x, I, 1, w + o0, O, out + o0, O, False)
        if scale != 1:
            for i in range(N * O):
                out[i] = scale * out[i]
        activate_rows(out, b, N, O, act)
        return
    # out = scale * (x @ w):  column-major (O x N) = scale * w (O x I) @ x (I x N)
    gemm_parallel(c'N', c'N', <int>O, <int>N, <int>I, scale, w, <int>O, x, <int>I,
                  <floating>0, out, <int>O, n_blocks, n_threads)
    T = threads_for(n_threads, N, N * O)
    if T == 1:
        activate_rows(out, b, N, O, act)
        return
    for t in prange(T, num_threads=T, schedule='static'):
        r0 = t * N // T
        r1 = (t + 1) * N // T
        activate_rows(out + r0 * O, b, r1 - r0, O, act)


cdef inline void dense_backward_kernel(const floating* x, const floating* w,
                                       const floating* out, floating* dout, int act,
                                       floating* dw, floating* db, floating* dx,
                                       Py_ssize_t N, Py_ssize_t I, Py_ssize_t O,
                                       int n_blocks,
                                       int n_threads) noexcept nogil:
    """Gradients of dense_forward_kernel with scale 1 (the training path).

    dz = dout * act'(out)     (dout is overwritten with dz; linear: unchanged)
    dw = x.T @ dz;  db = sum_n dz (summed in double);  dx = dz @ w.T

    x (N, I)  IN;  w (I, O)  IN;  out (N, O)  IN;  dout (N, O)  IN/OUT
    dw (I, O)  OUT;  db (O,)  OUT;  dx (N, I)  OUT, or NULL
    """
    cdef Py_ssize_t n, o, k, nb, i0, ib
    cdef double s
    cdef int T
    if act != LINEAR:
        scale_by_activation_grad(dout, out, N * O, act)
    for o in range(O):
        s = 0
        for n in range(N):
            s = s + dout[n * O + o]
        db[o] = <floating>s
    if dense_streams(N, I, O):
        nb = (I + DENSE_ROW_BLOCK - 1) // DENSE_ROW_BLOCK
        T = dense_threads(n_threads, N, I, O)
        if T > nb:
            T = <int>nb
        for k in prange(nb, num_threads=T, schedule='static'):
            i0 = k * DENSE_ROW_BLOCK
            ib = I - i0 if I - i0 < DENSE_ROW_BLOCK else DENSE_ROW_BLOCK
            dense_backward_rows(x, w, dout, dw, dx, i0, ib, N, I, O)
        return
    # dw = x.T @ dz:  column-major (O x I) = dz (O x N) @ x.T (N x I)
    gemm_parallel(c'N', c'T', <int>O, <int>I, <int>N, <floating>1, dout, <int>O,
                  x, <int>I, <floating>0, dw, <int>O, n_blocks, n_threads)
    if dx != NULL:
        # dx = dz @ w.T:  column-major (I x N) = w.T (I x O) @ dz (O x N)
        gemm_parallel(c'T', c'N', <int>I, <int>N, <int>O, <floating>1, w, <int>O,
                      dout, <int>O, <floating>0, dx, <int>I, n_blocks, n_threads)


# ---------------------------------------------------------------------------
# dropout
# ---------------------------------------------------------------------------
cdef inline uint32_t dropout_bit(uint64_t seed, uint64_t base, uint64_t i) noexcept nogil:
    """The 32 random bits of element i; base = counter*n + 1 (mod 2^64)."""
    cdef uint64_t z = seed + (base + i) * <uint64_t>0x9E3779B97F4A7C15ULL
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    z = z ^ (z >> 31)
    return <uint32_t>(z >> 32)


cdef inline void dropout_bits_kernel(uint64_t seed, uint64_t counter, Py_ssize_t n,
                                     uint32_t* bits, int n_threads) noexcept nogil:
    """bits[i] = dropout_bit(seed, counter*n + 1, i) for i < n.  bits (n,)  OUT"""
    cdef uint64_t base = counter * <uint64_t>n + 1
    cdef Py_ssize_t i
    cdef int T = threads_for(n_threads, n, n)
    for i in prange(n, num_threads=T, schedule='static'):
        bits[i] = dropout_bit(seed, base, <uint64_t>i)


cdef inline void dropout_forward_kernel(const floating* x, uint64_t threshold,
                                        uint64_t seed, uint64_t counter,
                                        uint8_t* mask, floating* out, Py_ssize_t n,
                                        int n_threads) noexcept nogil:
    """mask[i] = bits[i] < threshold;  out[i] = x[i] * mask[i]

    threshold = round((1 - p_dropout) * 2^32), so P(keep) = 1 - p_dropout.
    x (n,)  IN;  mask (n,) uint8  OUT;  out (n,)  OUT
    """
    cdef uint64_t base = counter * <uint64_t>n + 1
    cdef Py_ssize_t i
    cdef uint8_t m
    cdef int T = threads_for(n_threads, n, n)
    for i in prange(n, num_threads=T, schedule='static'):
        m = 1 if dropout_bit(seed, base, <uint64_t>i) < threshold else 0
        mask[i] = m
        out[i] = x[i] * m


cdef inline void dropout_backward_kernel(const floating* dout, const uint8_t* mask,
                                         floating* dx, Py_ssize_t n,
                                         int n_threads) noexcept nogil:
    """dx = dout * mask   (the mask passes the gradient where it kept the input)

    dout (n,)  IN;  mask (n,) uint8  IN;  dx (n,)  OUT
    """
    cdef Py_ssize_t i
    cdef int T = threads_for(n_threads, n, n)
    for i in prange(n, num_threads=T, schedule='static'):
        dx[i] = dout[i] * mask[i]
