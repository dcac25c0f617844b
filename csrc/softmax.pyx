# softmax: checked Python entry points of the softmax, NLL and argmax kernels.
#
# Shape letters: N batch, K classes.
#
# The kernels are in softmax.pxd (inline, nogil, raw pointers); see conv.pyx
# for why a module cimports its namesake .pxd.

from libc.stdint cimport int32_t
from softmax cimport (softmax_forward_kernel, softmax_nll_kernel, softmax_argmax_kernel,
                     sigmoid_bce_kernel, mse_kernel)
from common cimport (float_typenum, check_array, data)
cimport numpy as cnp

cnp.import_array()

# the thread count of every kernel call: fastnet/_cpu/threads.py
from fastnet._cpu import threads as _threads


def softmax_forward(logits, probs):
    """probs[n] = exp(logits[n] - max) / sum(exp(logits[n] - max))

    logits (N, K)  IN;  probs (N, K)  OUT
    """
    fn = "softmax_forward"
    cdef int t = float_typenum(fn, "logits", logits, 2, "(N, K)")
    N, K = logits.shape
    check_array(fn, "probs", probs, t, (N, K), "(N, K)", True, "the dtype of logits")
    cdef Py_ssize_t n = N, k = K
    cdef int nt = _threads.for_inference()
    cdef void* pl = data(logits)
    cdef void* pp = data(probs)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            softmax_forward_kernel(<const float*>pl, <float*>pp, n, k, nt)
        else:
            softmax_forward_kernel(<const double*>pl, <double*>pp, n, k, nt)


def softmax_nll(logits, y, probs, dlogits):
    """Mean negative log-likelihood of labels y, and its gradient.

    returns cost = mean_n [log sum_k exp(logits[n,k]) - logits[n, y[n]]]
    probs = softmax(logits);  dlogits = (probs - onehot(y)) / N

    logits (N, K)  IN;  y (N,) int32  IN;  probs, dlogits (N, K)  OUT
    """
    fn = "softmax_nll"
    cdef int t = float_typenum(fn, "logits", logits, 2, "(N, K)")
    N, K = logits.shape
    check_array(fn, "y", y, cnp.NPY_INT32, (N,), "(N,)", False)
    why = "the dtype of logits"
    check_array(fn, "probs", probs, t, (N, K), "(N, K)", True, why)
    check_array(fn, "dlogits", dlogits, t, (N, K), "(N, K)", True, why)
    cdef const int32_t* py = <const int32_t*>data(y)
    cdef Py_ssize_t n = N, k = K, i
    for i in range(n):
        if py[i] < 0 or py[i] >= k:
            raise ValueError("%s: y[%d] = %d is not a class label in [0, %d)"
                             % (fn, i, py[i], k))
    cdef int nt = _threads.for_step()
    cdef void* pl = data(logits)
    cdef void* pp = data(probs)
    cdef void* pd = data(dlogits)
    cdef double cost
    with nogil:
        if t == cnp.NPY_FLOAT32:
            cost = softmax_nll_kernel(<const float*>pl, py, <float*>pp, <float*>pd,
                                      n, k, nt)
        else:
            cost = softmax_nll_kernel(<const double*>pl, py, <double*>pp, <double*>pd,
                                      n, k, nt)
    return cost


def softmax_argmax(probs, yout):
    """yout[n] = the first k with probs[n,k] maximal (network3's y_out).

    probs (N, K)  IN;  yout (N,) int32  OUT
    """
    fn = "softmax_argmax"
    cdef int t = float_typenum(fn, "probs", probs, 2, "(N, K)")
    N, K = probs.shape
    check_array(fn, "yout", yout, cnp.NPY_INT32, (N,), "(N,)", True)
    if K == 0 and N > 0:
        raise ValueError("%s: probs has shape %s; the argmax of 0 classes is undefined"
                         % (fn, probs.shape))
    cdef Py_ssize_t n = N, k = K
    cdef int nt = _threads.for_inference()
    cdef void* pp = data(probs)
    cdef int32_t* py = <int32_t*>data(yout)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            softmax_argmax_kernel(<const float*>pp, py, n, k, nt)
        else:
            softmax_argmax_kernel(<const double*>pp, py, n, k, nt)


def sigmoid_bce(logits, targets, probs, dlogits):
    """Mean binary cross-entropy of sigmoid outputs, and its gradient.

    probs = sigmoid(logits);  returns mean of -(t log p + (1-t) log(1-p))
    (as softplus(z) - t z);  dlogits = (probs - targets) / (N*K).

    logits, targets (N, K)  IN;  probs, dlogits (N, K)  OUT
    """
    fn = "sigmoid_bce"
    cdef int t = float_typenum(fn, "logits", logits, 2, "(N, K)")
    N, K = logits.shape
    why = "the dtype of logits"
    check_array(fn, "targets", targets, t, (N, K), "(N, K)", False, why)
    check_array(fn, "probs", probs, t, (N, K), "(N, K)", True, why)
    check_array(fn, "dlogits", dlogits, t, (N, K), "(N, K)", True, why)
    cdef Py_ssize_t n = N * K
    cdef void* pl = data(logits)
    cdef void* pt = data(targets)
    cdef void* pp = data(probs)
    cdef void* pd = data(dlogits)
    cdef double cost
    with nogil:
        if t == cnp.NPY_FLOAT32:
            cost = sigmoid_bce_kernel(<const float*>pl, <const float*>pt, <float*>pp,
                                      <float*>pd, n)
        else:
            cost = sigmoid_bce_kernel(<const double*>pl, <const double*>pt, <double*>pp,
                                      <double*>pd, n)
    return cost


def mse_loss(out, targets, dout):
    """Mean squared error over all elements, and its gradient.

    returns mean((out - t)^2);  dout = 2 (out - t) / (N*K)

    out, targets (N, K)  IN;  dout (N, K)  OUT
    """
    fn = "mse_loss"
    cdef int t = float_typenum(fn, "out", out, 2, "(N, K)")
    N, K = out.shape
    why = "the dtype of out"
    check_array(fn, "targets", targets, t, (N, K), "(N, K)", False, why)
    check_array(fn, "dout", dout, t, (N, K), "(N, K)", True, why)
    cdef Py_ssize_t n = N * K
    cdef void* po = data(out)
    cdef void* pt = data(targets)
    cdef void* pd = data(dout)
    cdef double cost
    with nogil:
        if t == cnp.NPY_FLOAT32:
            cost = mse_kernel(<const float*>po, <const float*>pt, <float*>pd, n)
        else:
            cost = mse_kernel(<const double*>po, <const double*>pt, <double*>pd, n)
    return cost
