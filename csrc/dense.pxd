# dense: x @ w, scaled, plus bias, then activation; dropout masks.
#
# Shape letters: N batch, I inputs, O outputs.  All arrays are C-contiguous.
# Activation codes: common.pxd.
#
# Inline nogil kernels over raw pointers, cimported by dense.pyx and by any
# compiled trainer.  The GEMMs go to BLAS, cut over the threads by
# blas.gemm_parallel; the bias + activation pass runs over rows.
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
from blas cimport gemm_parallel


cdef inline void dense_forward_kernel(const floating* x, const floating* w,
                                      const floating* b, int act, floating scale,
                                      floating* out, Py_ssize_t N, Py_ssize_t I,
                                      Py_ssize_t O, int n_threads) noexcept nogil:
    """out = act(scale * (x @ w) + b)

    scale is 1 while training and (1 - p_dropout) at inference (network3).
    x (N, I)  IN;  w (I, O)  IN;  b (O,)  IN;  out (N, O)  OUT
    """
    cdef Py_ssize_t r0, r1
    cdef int t, T
    # out = scale * (x @ w):  column-major (O x N) = scale * w (O x I) @ x (I x N)
    gemm_parallel(c'N', c'N', <int>O, <int>N, <int>I, scale, w, <int>O, x, <int>I,
                  <floating>0, out, <int>O, n_threads)
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
                                       int n_threads) noexcept nogil:
    """Gradients of dense_forward_kernel with scale 1 (the training path).

    dz = dout * act'(out)     (dout is overwritten with dz; linear: unchanged)
    dw = x.T @ dz;  db = sum_n dz (summed in double);  dx = dz @ w.T

    x (N, I)  IN;  w (I, O)  IN;  out (N, O)  IN;  dout (N, O)  IN/OUT
    dw (I, O)  OUT;  db (O,)  OUT;  dx (N, I)  OUT, or NULL
    """
    cdef Py_ssize_t n, o
    cdef double s
    if act != LINEAR:
        scale_by_activation_grad(dout, out, N * O, act)
    # dw = x.T @ dz:  column-major (O x I) = dz (O x N) @ x.T (N x I)
    gemm_parallel(c'N', c'T', <int>O, <int>I, <int>N, <floating>1, dout, <int>O,
                  x, <int>I, <floating>0, dw, <int>O, n_threads)
    for o in range(O):
        s = 0
        for n in range(N):
            s = s + dout[n * O + o]
        db[o] = <floating>s
    if dx != NULL:
        # dx = dz @ w.T:  column-major (I x N) = w.T (I x O) @ dz (O x N)
        gemm_parallel(c'T', c'N', <int>I, <int>N, <int>O, <floating>1, w, <int>O,
                      dout, <int>O, <floating>0, dx, <int>I, n_threads)


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
