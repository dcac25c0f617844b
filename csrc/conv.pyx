# conv: checked Python entry points of the convolution kernels.
#
# Shape letters: N batch, C input channels, H x W image, F filters,
# KH x KW kernel, OH x OW output (OH = H-KH+1, OW = W-KW+1).
#
# The kernels themselves are in conv.pxd (inline, nogil, raw pointers).
# Cython looks a module's own .pxd up by its qualified name
# (fastnet/_cpu/conv.pxd), so csrc/conv.pxd is an ordinary cimported file
# here, as it will be for any other module that calls the kernels.
#
# Each entry point checks every array (dtype, shape, C-contiguity,
# writeable outputs) and raises ValueError naming the argument before it
# releases the GIL; then it takes a workspace from the module's pool.

from conv cimport conv_forward_kernel, conv_backward_kernel, conv_workspace_size
from common cimport (float_typenum, check_array, check_ndim, check_blas_size,
                     data,
                     take_workspace, give_workspace, aligned, FASTNET_OPENMP)
cimport numpy as cnp

cnp.import_array()

cdef list _workspaces = []
# the thread count of every kernel call: fastnet/_cpu/threads.py
from fastnet._cpu import threads as _threads


cdef tuple _conv_dims(str fn, object x, object w, int* typenum):
    """(N, C, H, W, F, KH, KW) of a checked x and w."""
    typenum[0] = float_typenum(fn, "x", x, 4, "(N, C, H, W)")
    check_ndim(fn, "w", w, typenum[0], 4, "(F, C, KH, KW)", False, "the dtype of x")
    N, C, H, W = x.shape
    F, Cw, KH, KW = w.shape
    if Cw != C:
        raise ValueError("%s: w has shape %s; expected (F, C, KH, KW) with C = %d "
                         "(x has shape %s)" % (fn, w.shape, C, x.shape))
    if KH < 1 or KW < 1 or KH > H or KW > W:
        raise ValueError("%s: w's kernel KH x KW = %d x %d must be at least 1 x 1 "
                         "and fit in x's image H x W = %d x %d" % (fn, KH, KW, H, W))
    check_blas_size(fn, C * KH * KW * (H - KH + 1) * (W - KW + 1))
    check_blas_size(fn, F * C * KH * KW)
    return N, C, H, W, F, KH, KW


def conv_forward(x, w, out):
    """out[n,f,i,j] = sum_{c,p,q} x[n,c,i+p,j+q] * w[f,c,KH-1-p,KW-1-q]

    x (N, C, H, W)  IN;  w (F, C, KH, KW)  IN;  out (N, F, OH, OW)  OUT
    """
    cdef int t
    N, C, H, W, F, KH, KW = _conv_dims("conv_forward", x, w, &t)
    OH, OW = H - KH + 1, W - KW + 1
    check_array("conv_forward", "out", out, t, (N, F, OH, OW), "(N, F, OH, OW)",
                True, "the dtype of x")
    if N == 0 or F == 0:
        return
    cdef int nt = _threads.for_inference()
    cdef Py_ssize_t n = N, c = C, h = H, ww = W, f = F, kh = KH, kw = KW
    cdef Py_ssize_t size = conv_workspace_size(c, h, ww, f, kh, kw, nt, False, False)
    buf = take_workspace(_workspaces, size * cnp.PyArray_ITEMSIZE(<cnp.ndarray>x))
    cdef char* work = aligned(buf)
    cdef void* px = data(x)
    cdef void* pw = data(w)
    cdef void* po = data(out)
    try:
        with nogil:
            if t == cnp.NPY_FLOAT32:
                conv_forward_kernel(<const float*>px, <const float*>pw, <float*>po,
                                    <float*>work, n, c, h, ww, f, kh, kw, nt)
            else:
                conv_forward_kernel(<const double*>px, <const double*>pw, <double*>po,
                                    <double*>work, n, c, h, ww, f, kh, kw, nt)
    finally:
        give_workspace(_workspaces, buf)


def conv_backward(x, w, dout, dw, dx):
    """Gradients of conv_forward.

    dw[f,c,p,q] = sum_{n,i,j} dout[n,f,i,j] * x[n,c,i+KH-1-p,j+KW-1-q]
    dx[n,c,a,b] = sum_{f,p,q} dout_padded[n,f,a+p,b+q] * w[f,c,p,q]
                  (dout zero-padded by KH-1, KW-1: a full correlation)

    x (N, C, H, W)  IN;  w (F, C, KH, KW)  IN;  dout (N, F, OH, OW)  IN
    dw (F, C, KH, KW)  OUT
    dx (N, C, H, W)  OUT, or None when the input needs no gradient
    """
    cdef int t
    N, C, H, W, F, KH, KW = _conv_dims("conv_backward", x, w, &t)
    OH, OW = H - KH + 1, W - KW + 1
    check_array("conv_backward", "dout", dout, t, (N, F, OH, OW), "(N, F, OH, OW)",
                False, "the dtype of x")
    check_array("conv_backward", "dw", dw, t, (F, C, KH, KW), "(F, C, KH, KW)",
                True, "the dtype of x")
    cdef bint need_dx = dx is not None
    if need_dx:
        check_array("conv_backward", "dx", dx, t, (N, C, H, W), "(N, C, H, W)",
                    True, "the dtype of x")
    if F == 0 or C == 0:
        if need_dx:
            dx.fill(0)
        return
    cdef int nt = _threads.for_step()
    cdef Py_ssize_t n = N, c = C, h = H, ww = W, f = F, kh = KH, kw = KW
    cdef Py_ssize_t size = conv_workspace_size(c, h, ww, f, kh, kw, nt, True, need_dx)
    buf = take_workspace(_workspaces, size * cnp.PyArray_ITEMSIZE(<cnp.ndarray>x))
    cdef char* work = aligned(buf)
    cdef void* px = data(x)
    cdef void* pw = data(w)
    cdef void* pd = data(dout)
    cdef void* pdw = data(dw)
    cdef void* pdx = data(dx) if need_dx else NULL
    try:
        with nogil:
            if t == cnp.NPY_FLOAT32:
                conv_backward_kernel(<const float*>px, <const float*>pw,
                                     <const float*>pd, <float*>pdw, <float*>pdx,
                                     <float*>work, n, c, h, ww, f, kh, kw, nt)
            else:
                conv_backward_kernel(<const double*>px, <const double*>pw,
                                     <const double*>pd, <double*>pdw, <double*>pdx,
                                     <double*>work, n, c, h, ww, f, kh, kw, nt)
    finally:
        give_workspace(_workspaces, buf)


def _openmp_enabled():
    """Whether this module was compiled with OpenMP."""
    return FASTNET_OPENMP == 1


from blas cimport FN_FAST_PRODUCTS


def _fast_products():
    """Whether this module was compiled for a target with fused multiply-adds,
    so that the many-tap products run in bcast_gemm.h (else in BLAS)."""
    return FN_FAST_PRODUCTS == 1
