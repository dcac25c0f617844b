# augment: the checked Python entry point of the augmentation kernel.
#
# augment(x, table, seed, counter, out): the rows of x (N, 784) distorted by
# the transforms of ``table`` (fastnet.augment's table()) into out, with
# the random numbers of training step ``counter`` -- reference.py's
# ``augment``.  The kernel is augment.pxd's (inline, nogil), which the
# compiled training loop (trainer.pyx) runs too.

from libc.stdint cimport uint64_t
from augment cimport augment_kernel, AUG_PIXELS, AUG_SCRATCH, AUG_WIDTH
from common cimport float_typenum, check_array, data
cimport numpy as cnp

cnp.import_array()
import numpy as np

# the thread count of every kernel call: fastnet/_cpu/threads.py
from fastnet._cpu import threads as _threads

#: doubles of per-thread scratch the kernel needs
SCRATCH = AUG_SCRATCH
WIDTH = AUG_WIDTH


def augment(x, table, seed, counter, out):
    """out = the rows of x (N, 784) through the transforms of ``table``
    (float64 (n, TABLE_WIDTH)), random numbers of step ``counter`` with
    ``seed``; x and out float32 or float64, the same dtype, not the same
    memory."""
    fn = "augment"
    from fastnet.augment import check_table
    from fastnet.engines.reference import _u64_arg
    cdef int t = float_typenum(fn, "x", x, 2, "(N, 784)")
    if x.shape[1] != AUG_PIXELS:
        raise ValueError("%s: x has shape %s; expected (N, %d): 28 x 28 images"
                         % (fn, x.shape, AUG_PIXELS))
    check_array(fn, "out", out, t, x.shape, "the shape of x", True, "the dtype of x")
    if np.shares_memory(x, out):
        raise ValueError("%s: out must not overlap x" % fn)
    tab = check_table(table, fn)
    cdef uint64_t s = <uint64_t>_u64_arg(fn, "seed", seed)
    cdef uint64_t c = <uint64_t>_u64_arg(fn, "counter", counter)
    cdef Py_ssize_t N = x.shape[0]
    cdef int n_ops = tab.shape[0]
    cdef int nt = _threads.for_step()
    if nt > N:
        nt = <int>N if N > 0 else 1
    scratch = np.zeros(max(nt, 1) * AUG_SCRATCH, dtype=np.float64)
    cdef void* px = data(x)
    cdef void* po = data(out)
    cdef const double* pt = <const double*>data(tab)
    cdef double* ps = <double*>data(scratch)
    if N == 0:
        return
    with nogil:
        if t == cnp.NPY_FLOAT32:
            augment_kernel(<const float*>px, <float*>po, N, pt, n_ops, s, c, ps, nt)
        else:
            augment_kernel(<const double*>px, <double*>po, N, pt, n_ops, s, c, ps, nt)
