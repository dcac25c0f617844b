# update: plain SGD with network3's L2 term; the sum of squares for the cost.
#
# Shape letters: n elements of a parameter (any shape, C-contiguous, seen
# flat).  Inline nogil kernels over raw pointers, cimported by update.pyx and
# by any compiled trainer.

from cython.parallel cimport prange

from common cimport floating, threads_for


cdef inline void sgd_update_kernel(floating* param, const floating* grad,
                                   Py_ssize_t n, floating eta, floating l2,
                                   int n_threads) noexcept nogil:
    """param -= eta * (grad + l2 * param)

    l2 = lmbda / num_training_batches for weights (the gradient of
    0.5*lmbda*||w||^2/num_training_batches), 0 for biases.
    param (n,)  IN/OUT;  grad (n,)  IN
    """
    cdef Py_ssize_t i
    cdef int T = threads_for(n_threads, n, n)
    if l2 != 0:
        for i in prange(n, num_threads=T, schedule='static'):
            param[i] = param[i] - eta * (grad[i] + l2 * param[i])
    else:
        for i in prange(n, num_threads=T, schedule='static'):
            param[i] = param[i] - eta * grad[i]


cdef inline double sum_of_squares_serial(const floating* w, Py_ssize_t n) noexcept nogil:
    """sum(w**2) in double, in 8 interleaved partial sums (so it vectorises)."""
    cdef double acc[8]
    cdef Py_ssize_t i, k, n8 = n - n % 8
    cdef double s
    for k in range(8):
        acc[k] = 0
    for i in range(0, n8, 8):
        for k in range(8):
            acc[k] = acc[k] + <double>w[i + k] * <double>w[i + k]
    s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
    for i in range(n8, n):
        s = s + <double>w[i] * <double>w[i]
    return s


cdef inline double sum_of_squares_kernel(const floating* w, Py_ssize_t n,
                                         int n_threads) noexcept nogil:
    """sum(w**2), each square and the sum in double.   w (n,)  IN"""
    cdef double s = 0
    cdef int t
    cdef int T = threads_for(n_threads, n, n)
    for t in prange(T, num_threads=T, schedule='static'):
        s += sum_of_squares_serial(w + t * n // T, (t + 1) * n // T - t * n // T)
    return s
