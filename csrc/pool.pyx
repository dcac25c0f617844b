# pool: checked Python entry points of the fused max-pool + bias + activation.
#
# Shape letters: N batch, F filters, CH x CW convolution output, ph x pw pool
# window, PH x PW pooled output (PH = CH // ph, PW = CW // pw).
#
# The kernels are in pool.pxd (inline, nogil, raw pointers); see conv.pyx
# for why a module cimports its namesake .pxd.

from pool cimport pool_forward_kernel, pool_backward_kernel
from common cimport (float_typenum, check_array, check_act, data)
cimport numpy as cnp

cnp.import_array()

# the thread count of every kernel call: fastnet/_cpu/threads.py
from fastnet._cpu import threads as _threads


cdef tuple _poolsize(str fn, object poolsize):
    from operator import index
    try:
        ph, pw = poolsize
        ph, pw = index(ph), index(pw)
    except (TypeError, ValueError):
        raise ValueError("%s: poolsize must be a pair (ph, pw) of integers, got %r"
                         % (fn, poolsize))
    if ph < 1 or pw < 1:
        raise ValueError("%s: poolsize must be positive, got (%d, %d)" % (fn, ph, pw))
    return ph, pw


def pool_forward(conv_out, b, act, poolsize, out):
    """out[n,f,i,j] = act(max over window (i,j) of conv_out[n,f] + b[f])

    conv_out (N, F, CH, CW)  IN;  b (F,)  IN;  act: activation code
    poolsize (ph, pw); out (N, F, CH//ph, CW//pw)  OUT
    """
    fn = "pool_forward"
    cdef int t = float_typenum(fn, "conv_out", conv_out, 4, "(N, F, CH, CW)")
    N, F, CH, CW = conv_out.shape
    check_array(fn, "b", b, t, (F,), "(F,)", False, "the dtype of conv_out")
    check_act(fn, act)
    ph, pw = _poolsize(fn, poolsize)
    check_array(fn, "out", out, t, (N, F, CH // ph, CW // pw), "(N, F, CH//ph, CW//pw)",
                True, "the dtype of conv_out")
    cdef int code = act, nt = _threads.for_inference()
    cdef Py_ssize_t n = N, f = F, ch = CH, cw = CW, h = ph, w = pw
    cdef void* pc = data(conv_out)
    cdef void* pb = data(b)
    cdef void* po = data(out)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            pool_forward_kernel(<const float*>pc, <const float*>pb, code, h, w,
                                <float*>po, n, f, ch, cw, nt)
        else:
            pool_forward_kernel(<const double*>pc, <const double*>pb, code, h, w,
                                <double*>po, n, f, ch, cw, nt)


def pool_backward(conv_out, out, dout, act, poolsize, dconv, db):
    """Gradients of pool_forward.

    dz = dout * act'(out)                     (dout is overwritten with dz)
    db[f] = sum_{n,i,j} dz[n,f,i,j]
    dconv[n,f,y,x] = dz[n,f,y//ph,x//pw] at EVERY position equal to its
                     window's maximum (Theano's rule: ties all receive the
                     whole gradient), 0 elsewhere and on the ignored border.

    conv_out (N, F, CH, CW)  IN;  out (N, F, PH, PW)  IN
    dout (N, F, PH, PW)  IN/OUT;  dconv (N, F, CH, CW)  OUT;  db (F,)  OUT
    """
    fn = "pool_backward"
    cdef int t = float_typenum(fn, "conv_out", conv_out, 4, "(N, F, CH, CW)")
    N, F, CH, CW = conv_out.shape
    check_act(fn, act)
    ph, pw = _poolsize(fn, poolsize)
    pooled = (N, F, CH // ph, CW // pw)
    why = "the dtype of conv_out"
    check_array(fn, "out", out, t, pooled, "(N, F, CH//ph, CW//pw)", False, why)
    check_array(fn, "dout", dout, t, pooled, "(N, F, CH//ph, CW//pw)", True, why)
    check_array(fn, "dconv", dconv, t, (N, F, CH, CW), "(N, F, CH, CW)", True, why)
    check_array(fn, "db", db, t, (F,), "(F,)", True, why)
    cdef int code = act, nt = _threads.for_step()
    cdef Py_ssize_t n = N, f = F, ch = CH, cw = CW, h = ph, w = pw
    cdef void* pc = data(conv_out)
    cdef void* po = data(out)
    cdef void* pd = data(dout)
    cdef void* pg = data(dconv)
    cdef void* pb = data(db)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            pool_backward_kernel(<const float*>pc, <const float*>po, <float*>pd, code,
                                 h, w, <float*>pg, <float*>pb, n, f, ch, cw, nt)
        else:
            pool_backward_kernel(<const double*>pc, <const double*>po, <double*>pd, code,
                                 h, w, <double*>pg, <double*>pb, n, f, ch, cw, nt)
