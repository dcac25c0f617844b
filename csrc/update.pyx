# update: checked Python entry points of the SGD step and the sum of squares.
#
# Shape letters: any shape, seen flat (n elements).
#
# The kernels are in update.pxd (inline, nogil, raw pointers); see conv.pyx
# for why a module cimports its namesake .pxd.

from update cimport sgd_update_kernel, sum_of_squares_kernel
from common cimport (float_typenum, check_array, default_num_threads,
                     checked_num_threads, data)
cimport numpy as cnp

cnp.import_array()

cdef int _num_threads = default_num_threads()


def _set_num_threads(n):
    global _num_threads
    _num_threads = checked_num_threads(n)


def _get_num_threads():
    return _num_threads


def sgd_update(param, grad, eta, l2):
    """param -= eta * (grad + l2 * param)

    l2 = lmbda / num_training_batches for weights (the gradient of
    0.5*lmbda*||w||^2/num_training_batches), 0 for biases.
    param  IN/OUT;  grad  IN (same shape)
    """
    fn = "sgd_update"
    cdef int t = float_typenum(fn, "param", param, -1, "")
    check_array(fn, "param", param, t, param.shape, "its shape", True)
    check_array(fn, "grad", grad, t, param.shape, "the shape of param", False,
                "the dtype of param")
    cdef double e = eta, l = l2
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>param)
    cdef int nt = _num_threads
    cdef void* pp = data(param)
    cdef void* pg = data(grad)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            sgd_update_kernel(<float*>pp, <const float*>pg, n, <float>e, <float>l, nt)
        else:
            sgd_update_kernel(<double*>pp, <const double*>pg, n, e, l, nt)


def sum_of_squares(w):
    """sum(w**2) as a Python float (for the L2 term of the cost)."""
    cdef int t = float_typenum("sum_of_squares", "w", w, -1, "")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>w)
    cdef int nt = _num_threads
    cdef void* pw = data(w)
    cdef double s
    with nogil:
        if t == cnp.NPY_FLOAT32:
            s = sum_of_squares_kernel(<const float*>pw, n, nt)
        else:
            s = sum_of_squares_kernel(<const double*>pw, n, nt)
    return s
