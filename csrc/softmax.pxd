# softmax and the other costs: inference probabilities; fused softmax +
# mean NLL + its gradient; the predicted class; sigmoid + mean binary
# cross-entropy and the mean squared error (DenseOutputLayer's costs).
#
# Shape letters: N batch, K classes.  All arrays are C-contiguous; labels
# are int32 in [0, K) (the entry points check them).
#
# Inline nogil kernels over raw pointers, cimported by softmax.pyx and by any
# compiled trainer.  Row sums and the cost are accumulated in double.

from libc.math cimport exp, expf, log, log1p, fabs, NAN
from libc.stdint cimport int32_t
from cython.parallel cimport prange

from common cimport floating, threads_for, bias_activate, SIGMOID


cdef inline double softmax_row(const floating* z, floating* p, Py_ssize_t K,
                               floating* zmax_out) noexcept nogil:
    """p = exp(z - max z) / sum(exp(z - max z)) for one row (K >= 1); returns
    the sum of the exponentials (double) and puts max z in zmax_out, for the
    caller's log-likelihood."""
    cdef floating zmax = z[0], e
    cdef double s = 0
    cdef Py_ssize_t k
    for k in range(1, K):
        if z[k] > zmax or z[k] != z[k]:
            zmax = z[k]
    for k in range(K):
        if floating is float:
            e = expf(z[k] - zmax)
        else:
            e = exp(z[k] - zmax)
        p[k] = e
        s = s + e
    for k in range(K):
        p[k] = p[k] / <floating>s
    zmax_out[0] = zmax
    return s


cdef inline void softmax_forward_kernel(const floating* logits, floating* probs,
                                        Py_ssize_t N, Py_ssize_t K,
                                        int n_threads) noexcept nogil:
    """probs[n] = exp(logits[n] - max) / sum(exp(logits[n] - max))

    logits (N, K)  IN;  probs (N, K)  OUT
    """
    cdef Py_ssize_t n
    cdef floating zmax
    cdef int T = threads_for(n_threads, N, N * K)
    if K == 0:
        return
    for n in prange(N, num_threads=T, schedule='static'):
        softmax_row(logits + n * K, probs + n * K, K, &zmax)


cdef enum:
    # blocks of rows the mean NLL is summed in (at most; one per row below)
    COST_BLOCKS = 16


cdef inline double softmax_nll_kernel(const floating* logits, const int32_t* y,
                                      floating* probs, floating* dlogits,
                                      Py_ssize_t N, Py_ssize_t K,
                                      int n_threads) noexcept nogil:
    """Mean negative log-likelihood of labels y, and its gradient.

    returns cost = mean_n [log sum_k exp(logits[n,k]) - logits[n, y[n]]]
    probs = softmax(logits);  dlogits = (probs - onehot(y)) / N
      (d cost / d logits[n,k] = (probs[n,k] - [k == y[n]]) / N)

    logits (N, K)  IN;  y (N,) int32 in [0, K)  IN;  probs, dlogits (N, K)  OUT
    (K >= 1)
    """
    cdef Py_ssize_t n, k, b, B
    cdef double s, cost = 0
    cdef double part[COST_BLOCKS]
    cdef floating zmax
    cdef const floating* z
    cdef floating* p
    cdef floating* d
    cdef int T
    if N == 0:
        return NAN           # the mean of nothing, as np.mean gives
    # the cost summed in blocks of rows fixed by N, then in block order: the
    # same number whatever the thread count (team.pxd changes it mid-run)
    B = N if N < COST_BLOCKS else COST_BLOCKS
    T = threads_for(n_threads, B, N * K)
    for b in prange(B, num_threads=T, schedule='static'):
        part[b] = 0
        for n in range(b * N // B, (b + 1) * N // B):
            z = logits + n * K
            p = probs + n * K
            d = dlogits + n * K
            s = softmax_row(z, p, K, &zmax)
            part[b] = part[b] + ((log(s) + zmax) - z[y[n]])
            for k in range(K):
                d[k] = (p[k] - (1 if k == y[n] else 0)) / <floating>N
    for b in range(B):
        cost = cost + part[b]
    return cost / N


cdef inline void softmax_argmax_kernel(const floating* probs, int32_t* yout,
                                       Py_ssize_t N, Py_ssize_t K,
                                       int n_threads) noexcept nogil:
    """yout[n] = the first k with probs[n,k] maximal (network3's y_out);
    a NaN counts as the maximum, as in np.argmax.

    probs (N, K)  IN, K >= 1;  yout (N,) int32  OUT
    """
    cdef Py_ssize_t n, k, best
    cdef const floating* p
    cdef int T = threads_for(n_threads, N, N * K)
    for n in prange(N, num_threads=T, schedule='static'):
        p = probs + n * K
        best = 0
        if p[0] == p[0]:
            for k in range(1, K):
                if p[k] != p[k]:
                    best = k
                    break
                if p[k] > p[best]:
                    best = k
        yout[n] = <int32_t>best


cdef inline double sigmoid_bce_kernel(const floating* logits, const floating* targets,
                                      floating* probs, floating* dlogits,
                                      Py_ssize_t n) noexcept nogil:
    """Mean binary cross-entropy of sigmoid outputs, and its gradient, over
    n = N*K elements: probs = sigmoid(logits) (dense_forward's sigmoid);
    returns mean of softplus(z) - t z (in double);  dlogits = (p - t) / n.

    logits, targets (n,)  IN;  probs, dlogits (n,)  OUT
    """
    cdef Py_ssize_t i
    cdef double z, cost = 0
    if n == 0:
        return NAN
    for i in range(n):
        probs[i] = logits[i]
    bias_activate(probs, n, 0, SIGMOID)
    for i in range(n):
        z = logits[i]
        cost += ((z if z > 0 else 0) + log1p(exp(-fabs(z)))) - <double>targets[i] * z
        dlogits[i] = (probs[i] - targets[i]) / <floating>n
    return cost / n


cdef inline double mse_kernel(const floating* out, const floating* targets,
                              floating* dout, Py_ssize_t n) noexcept nogil:
    """Mean squared error over n = N*K elements (in double), and its
    gradient w.r.t. out: dout = 2 (out - t) / n.

    out, targets (n,)  IN;  dout (n,)  OUT
    """
    cdef Py_ssize_t i
    cdef floating d
    cdef double cost = 0
    if n == 0:
        return NAN
    for i in range(n):
        d = out[i] - targets[i]
        cost += <double>d * <double>d
        dout[i] = (2 * d) / <floating>n
    return cost / n
