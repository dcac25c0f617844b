# dense: checked Python entry points of the dense layer and dropout kernels.
#
# Shape letters: N batch, I inputs, O outputs.
#
# The kernels are in dense.pxd (inline, nogil, raw pointers); see conv.pyx
# for why a module cimports its namesake .pxd.

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from dense cimport (dense_forward_kernel, dense_backward_kernel, dropout_bits_kernel,
                    dropout_forward_kernel, dropout_backward_kernel)
from common cimport (SIGMOID, TANH, RELU, LINEAR, float_typenum, check_array, check_ndim, check_act, check_blas_size,
                     data,
                     FN_VEC_ACTIVATIONS)
cimport numpy as cnp

cnp.import_array()
import numpy as np

from fastnet.dropout import keep_threshold

# the thread count of every kernel call: fastnet/_cpu/threads.py
from fastnet._cpu import threads as _threads


def _activation_codes():
    """The activation codes this build's kernels switch on, by name."""
    return {"sigmoid": SIGMOID, "tanh": TANH, "ReLU": RELU, "linear": LINEAR}


def _vector_activations():
    """Whether sigmoid and tanh run through glibc's vector math library
    (csrc/vec_activations.h) in this build, rather than element by element."""
    return FN_VEC_ACTIVATIONS == 1


cdef object _dense_outputs(str fn, object x, object w, int t):
    """O of a checked w (I, O) that matches x (N, I)."""
    check_ndim(fn, "w", w, t, 2, "(I, O)", False, "the dtype of x")
    if w.shape[0] != x.shape[1]:
        raise ValueError("%s: w has shape %s; expected (I, O) with I = %d (x has shape %s)"
                         % (fn, w.shape, x.shape[1], x.shape))
    return w.shape[1]


def dense_forward(x, w, b, act, scale, out):
    """out = act(scale * (x @ w) + b)

    scale is 1 while training and (1 - p_dropout) at inference (network3).
    x (N, I)  IN;  w (I, O)  IN;  b (O,)  IN;  out (N, O)  OUT
    """
    fn = "dense_forward"
    cdef int t = float_typenum(fn, "x", x, 2, "(N, I)")
    N, I = x.shape
    why = "the dtype of x"
    O = _dense_outputs(fn, x, w, t)
    check_array(fn, "b", b, t, (O,), "(O,)", False, why)
    check_act(fn, act)
    check_array(fn, "out", out, t, (N, O), "(N, O)", True, why)
    check_blas_size(fn, max(N, I, O))
    cdef int code = act, nt = _threads.for_inference(), nb = _threads.count
    cdef double s = scale
    cdef Py_ssize_t n = N, i = I, o = O
    cdef void* px = data(x)
    cdef void* pw = data(w)
    cdef void* pb = data(b)
    cdef void* po = data(out)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            dense_forward_kernel(<const float*>px, <const float*>pw, <const float*>pb,
                                 code, <float>s, <float*>po, n, i, o, nb, nt)
        else:
            dense_forward_kernel(<const double*>px, <const double*>pw,
                                 <const double*>pb, code, s, <double*>po, n, i, o, nb, nt)


def dense_backward(x, w, out, dout, act, dw, db, dx):
    """Gradients of dense_forward with scale 1 (the training path).

    dz = dout * act'(out)     (dout is overwritten with dz)
    dw = x.T @ dz;  db = sum_n dz;  dx = dz @ w.T

    x (N, I)  IN;  w (I, O)  IN;  out (N, O)  IN;  dout (N, O)  IN/OUT
    dw (I, O)  OUT;  db (O,)  OUT;  dx (N, I)  OUT, or None
    """
    fn = "dense_backward"
    cdef int t = float_typenum(fn, "x", x, 2, "(N, I)")
    N, I = x.shape
    why = "the dtype of x"
    O = _dense_outputs(fn, x, w, t)
    check_act(fn, act)
    check_array(fn, "out", out, t, (N, O), "(N, O)", False, why)
    check_array(fn, "dout", dout, t, (N, O), "(N, O)", True, why)
    check_array(fn, "dw", dw, t, (I, O), "(I, O)", True, why)
    check_array(fn, "db", db, t, (O,), "(O,)", True, why)
    if dx is not None:
        check_array(fn, "dx", dx, t, (N, I), "(N, I)", True, why)
    check_blas_size(fn, max(N, I, O))
    cdef int code = act, nt = _threads.for_step(), nb = _threads.count
    cdef Py_ssize_t n = N, i = I, o = O
    cdef void* px = data(x)
    cdef void* pw = data(w)
    cdef void* pout = data(out)
    cdef void* pd = data(dout)
    cdef void* pdw = data(dw)
    cdef void* pdb = data(db)
    cdef void* pdx = data(dx) if dx is not None else NULL
    with nogil:
        if t == cnp.NPY_FLOAT32:
            dense_backward_kernel(<const float*>px, <const float*>pw, <const float*>pout,
                                  <float*>pd, code, <float*>pdw, <float*>pdb,
                                  <float*>pdx, n, i, o, nb, nt)
        else:
            dense_backward_kernel(<const double*>px, <const double*>pw,
                                  <const double*>pout, <double*>pd, code,
                                  <double*>pdw, <double*>pdb, <double*>pdx, n, i, o, nb, nt)


# ---------------------------------------------------------------------------
# dropout
# ---------------------------------------------------------------------------
cdef uint64_t _u64(str fn, str name, object v) except? 0:
    from operator import index
    try:
        k = index(v)
    except TypeError:
        raise ValueError("%s: %s must be an integer in [0, 2**64), got %r" % (fn, name, v))
    if k < 0 or k >= 2 ** 64:
        raise ValueError("%s: %s must be in [0, 2**64), got %d" % (fn, name, k))
    return <uint64_t>k


def dropout_bits(seed, counter, n):
    """32 random bits per element, counter-based (splitmix64 of the index).

    z = seed + (counter*n + i + 1) * golden  (mod 2^64), then splitmix64's
    finaliser; the high 32 bits are returned as a new uint32 array (n,).
    """
    fn = "dropout_bits"
    cdef uint64_t s = _u64(fn, "seed", seed)
    cdef uint64_t c = _u64(fn, "counter", counter)
    from operator import index
    try:
        count = index(n)
    except TypeError:
        raise ValueError("%s: n must be an integer >= 0, got %r" % (fn, n))
    if count < 0:
        raise ValueError("%s: n must be >= 0, got %d" % (fn, count))
    bits = np.empty(count, dtype=np.uint32)
    cdef Py_ssize_t m = count
    cdef uint32_t* pb = <uint32_t*>data(bits)
    cdef int nt = _threads.for_step()
    with nogil:
        dropout_bits_kernel(s, c, m, pb, nt)
    return bits


def dropout_forward(x, p_dropout, seed, counter, mask, out):
    """out = x * mask, mask[i] ~ Bernoulli(1 - p_dropout), drawn as
    dropout_bits(seed, counter, x.size) < keep_threshold(p_dropout).

    x (N, I)  IN;  mask (N, I) uint8  OUT;  out (N, I)  OUT
    """
    fn = "dropout_forward"
    cdef int t = float_typenum(fn, "x", x, -1, "")
    shape = x.shape
    letters = "(N, I)" if len(shape) == 2 else "the shape of x"
    check_array(fn, "mask", mask, cnp.NPY_UINT8, shape, letters, True)
    check_array(fn, "out", out, t, shape, letters, True, "the dtype of x")
    p = float(p_dropout)
    if not (0.0 <= p <= 1.0):
        raise ValueError("%s: p_dropout must be in [0, 1], got %r" % (fn, p_dropout))
    cdef uint64_t thr = keep_threshold(p)
    cdef uint64_t s = _u64(fn, "seed", seed)
    cdef uint64_t c = _u64(fn, "counter", counter)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>x)
    cdef int nt = _threads.for_step()
    cdef void* px = data(x)
    cdef uint8_t* pm = <uint8_t*>data(mask)
    cdef void* po = data(out)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            dropout_forward_kernel(<const float*>px, thr, s, c, pm, <float*>po, n, nt)
        else:
            dropout_forward_kernel(<const double*>px, thr, s, c, pm, <double*>po, n, nt)


def dropout_backward(dout, mask, dx):
    """dx = dout * mask.   dout, dx (N, I);  mask (N, I) uint8"""
    fn = "dropout_backward"
    cdef int t = float_typenum(fn, "dout", dout, -1, "")
    shape = dout.shape
    letters = "(N, I)" if len(shape) == 2 else "the shape of dout"
    check_array(fn, "mask", mask, cnp.NPY_UINT8, shape, letters, False)
    check_array(fn, "dx", dx, t, shape, letters, True, "the dtype of dout")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>dout)
    cdef int nt = _threads.for_step()
    cdef void* pd = data(dout)
    cdef uint8_t* pm = <uint8_t*>data(mask)
    cdef void* px = data(dx)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            dropout_backward_kernel(<const float*>pd, pm, <float*>px, n, nt)
        else:
            dropout_backward_kernel(<const double*>pd, pm, <double*>px, n, nt)
