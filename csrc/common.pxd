# What every kernel family shares: the fused float type, the activations,
# the thread count, the workspace cache and the argument checks of the
# Python entry points.
#
# Everything here is `cdef inline`, so a module that cimports it compiles
# it in: no module has to be imported at run time to use it.  A module that
# uses the argument checks calls cnp.import_array() itself.
#
# Activation codes are those of fastnet/activations.py.  Derivatives are
# taken from the activation's *output* a = act(z), as the reference does:
#   sigmoid' = a (1 - a),  tanh' = 1 - a^2,  ReLU' = [a > 0],  linear' = 1.
# The arithmetic is the reference's operation for operation (setup.py
# compiles with -ffp-contract=off, so no multiply-add is fused behind our
# back); only exp and tanh come from the C library instead of NumPy
# (vec_activations.h: glibc's vector versions where the build has them).

cimport numpy as cnp

ctypedef fused floating:
    float
    double

# the activation codes: vec_activations.h's, checked against
# fastnet/activations.py when the engine is imported (activation_codes)
cdef extern from "vec_activations.h":
    cdef enum:
        SIGMOID "FN_SIGMOID"
        TANH "FN_TANH"
        RELU "FN_RELU"
        LINEAR "FN_LINEAR"

# element counts below which a loop runs on one thread: an OpenMP region
# costs about a microsecond to open, which is more than such a loop takes
cdef enum:
    PARALLEL_MIN_ELEMENTS = 16384


cdef extern from *:
    """
    #ifdef _OPENMP
    #define FASTNET_OPENMP 1
    #else
    #define FASTNET_OPENMP 0
    #endif
    """
    const int FASTNET_OPENMP


# ---------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------
cdef extern from "vec_activations.h":
    # z[i] = act(z[i] + (b[i] if b != NULL else bias)), act SIGMOID or TANH
    void fn_bias_act_f(float* z, const float* b, float bias, Py_ssize_t n,
                       int act) noexcept nogil
    void fn_bias_act_d(double* z, const double* b, double bias, Py_ssize_t n,
                       int act) noexcept nogil
    const int FN_VEC_ACTIVATIONS


cdef inline floating relu(floating z) noexcept nogil:
    # np.maximum(z, 0): NaN stays NaN
    return 0 if z < 0 else z


cdef inline void bias_act_c(floating* z, const floating* b, floating bias,
                            Py_ssize_t n, int act) noexcept nogil:
    """Sigmoid or tanh of z + bias in C (vec_activations.h)."""
    if floating is float:
        fn_bias_act_f(z, b, bias, n, act)
    else:
        fn_bias_act_d(z, b, bias, n, act)


cdef inline floating activation_grad(floating a, int act) noexcept nogil:
    """d act / d z through the output a (the reference's _activation_grad)."""
    if act == SIGMOID:
        return a * (1 - a)
    if act == TANH:
        return 1 - a * a
    if act == RELU:
        return 1 if a > 0 else 0
    return 1


cdef inline void activate_rows(floating* z, const floating* b, Py_ssize_t rows,
                               Py_ssize_t cols, int act) noexcept nogil:
    """z[r, c] = act(z[r, c] + b[c]) over rows x cols (C order)."""
    cdef Py_ssize_t r, c
    cdef floating* zr
    for r in range(rows):
        zr = z + r * cols
        if act == LINEAR:
            for c in range(cols):
                zr[c] = zr[c] + b[c]
        elif act == RELU:
            for c in range(cols):
                zr[c] = relu(zr[c] + b[c])
        else:
            bias_act_c(zr, b, 0, cols, act)


cdef inline void bias_activate(floating* z, Py_ssize_t n, floating bias,
                               int act) noexcept nogil:
    """z[i] = act(z[i] + bias) over n elements."""
    cdef Py_ssize_t i
    if act == LINEAR:
        for i in range(n):
            z[i] = z[i] + bias
    elif act == RELU:
        for i in range(n):
            z[i] = relu(z[i] + bias)
    else:
        bias_act_c(z, <floating*>NULL, bias, n, act)


cdef inline void scale_by_activation_grad(floating* dout, const floating* a,
                                          Py_ssize_t n, int act) noexcept nogil:
    """dout[i] *= act'(a[i]): dout becomes dz (linear: unchanged)."""
    cdef Py_ssize_t i
    if act == SIGMOID:
        for i in range(n):
            dout[i] = dout[i] * (a[i] * (1 - a[i]))
    elif act == TANH:
        for i in range(n):
            dout[i] = dout[i] * (1 - a[i] * a[i])
    elif act == RELU:
        for i in range(n):
            dout[i] = dout[i] * (1 if a[i] > 0 else 0)


cdef inline double sum_double(const floating* a, Py_ssize_t n) noexcept nogil:
    """sum(a) in double, in 8 interleaved partial sums (so it vectorises
    instead of waiting on one add after another)."""
    cdef double acc[8]
    cdef Py_ssize_t i, k, n8 = n - n % 8
    cdef double s
    for k in range(8):
        acc[k] = 0
    for i in range(0, n8, 8):
        for k in range(8):
            acc[k] = acc[k] + a[i + k]
    s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
    for i in range(n8, n):
        s = s + a[i]
    return s


# ---------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------
cdef inline int threads_for(int n_threads, Py_ssize_t units, Py_ssize_t elements) noexcept nogil:
    """How many threads a loop over `units` independent pieces should use."""
    if n_threads < 1 or elements < PARALLEL_MIN_ELEMENTS:
        return 1
    if units < n_threads:
        return <int>units if units > 0 else 1
    return n_threads


# ---------------------------------------------------------------------------
# workspaces: reused buffers, so the hot path does not allocate
# ---------------------------------------------------------------------------
# A pool holds byte buffers (NumPy arrays: 64-byte aligned slices are cut
# from them).  `take` pops one big enough (growing the largest otherwise) and
# `give` puts it back.  Both run with the GIL held, so two Python threads
# calling a kernel at once each get their own buffer.
cdef inline object take_workspace(list pool, Py_ssize_t nbytes):
    cdef Py_ssize_t i
    for i in range(len(pool)):
        if pool[i].nbytes >= nbytes:
            return pool.pop(i)
    if pool:
        pool.pop()       # drop a too-small buffer rather than keep it forever
    import numpy as np
    return np.empty(nbytes + 64, dtype=np.uint8)


cdef inline void give_workspace(list pool, object buf) noexcept:
    pool.append(buf)


cdef inline char* aligned(object buf) noexcept:
    """The first 64-byte aligned address inside buf."""
    cdef size_t p = <size_t>cnp.PyArray_DATA(<cnp.ndarray>buf)
    return <char*>((p + 63) & ~(<size_t>63))


cdef inline Py_ssize_t padded(Py_ssize_t count) noexcept nogil:
    """count rounded up to a multiple of 16 elements (64 bytes of float32),
    so that per-thread slices of a workspace never share a cache line."""
    return (count + 15) & ~(<Py_ssize_t>15)


# ---------------------------------------------------------------------------
# argument checks of the Python entry points
# ---------------------------------------------------------------------------
# The messages name the function, the argument, and the expected against the
# given shape or dtype; every check happens before any kernel runs.
cdef inline str _shape_str(tuple shape):
    if len(shape) == 1:
        return "(%d,)" % shape[0]
    return "(" + ", ".join([str(s) for s in shape]) + ")"


cdef inline cnp.ndarray _as_array(str fn, str name, object a):
    if not cnp.PyArray_Check(a):
        raise ValueError("%s: %s must be a numpy.ndarray, got %s"
                         % (fn, name, type(a).__name__))
    return <cnp.ndarray>a


cdef inline int _layout(str fn, str name, cnp.ndarray a, bint writeable) except -1:
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError("%s: %s must be C-contiguous (use numpy.ascontiguousarray)"
                         % (fn, name))
    if not cnp.PyArray_ISALIGNED(a):
        raise ValueError("%s: %s must be aligned to its dtype" % (fn, name))
    if writeable and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError("%s: %s is an output and must be writeable" % (fn, name))
    return 0


cdef inline int float_typenum(str fn, str name, object a, int ndim, str letters) except -1:
    """The dtype number of the array that fixes a call's dtype: float32 or
    float64, `ndim` dimensions (-1: any), C-contiguous."""
    cdef cnp.ndarray arr = _as_array(fn, name, a)
    cdef int t = cnp.PyArray_TYPE(arr)
    if t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64:
        raise ValueError("%s: %s has dtype %s; expected float32 or float64"
                         % (fn, name, arr.dtype))
    if ndim >= 0 and cnp.PyArray_NDIM(arr) != ndim:
        raise ValueError("%s: %s has shape %s; expected %d dimensions %s"
                         % (fn, name, _shape_str((<object>arr).shape), ndim, letters))
    _layout(fn, name, arr, False)
    return t


cdef inline str _dtype_name(int typenum):
    import numpy as np
    return str(np.dtype(cnp.PyArray_TypeObjectFromType(typenum)))


cdef inline int check_array(str fn, str name, object a, int typenum, tuple shape,
                            str letters, bint writeable, str why=None) except -1:
    """a must be an ndarray of dtype `typenum` and exactly `shape`
    (`letters` spells the shape, e.g. "(N, F, OH, OW)"), C-contiguous, aligned,
    and writeable when it is an output; `why` says where the dtype comes from."""
    cdef cnp.ndarray arr = _as_array(fn, name, a)
    cdef int i
    if cnp.PyArray_TYPE(arr) != typenum:
        raise ValueError("%s: %s has dtype %s; expected %s%s"
                         % (fn, name, arr.dtype, _dtype_name(typenum),
                            (" (" + why + ")") if why else ""))
    cdef int nd = cnp.PyArray_NDIM(arr)
    cdef bint same = nd == len(shape)
    if same:
        for i in range(nd):
            if cnp.PyArray_DIM(arr, i) != <Py_ssize_t>shape[i]:
                same = False
                break
    if not same:
        raise ValueError("%s: %s has shape %s; expected %s = %s"
                         % (fn, name, _shape_str((<object>arr).shape), letters, _shape_str(shape)))
    _layout(fn, name, arr, writeable)
    return 0


cdef inline int check_ndim(str fn, str name, object a, int typenum, int ndim,
                           str letters, bint writeable, str why=None) except -1:
    """Like check_array when only the number of dimensions is fixed."""
    cdef cnp.ndarray arr = _as_array(fn, name, a)
    if cnp.PyArray_TYPE(arr) != typenum:
        raise ValueError("%s: %s has dtype %s; expected %s%s"
                         % (fn, name, arr.dtype, _dtype_name(typenum),
                            (" (" + why + ")") if why else ""))
    if cnp.PyArray_NDIM(arr) != ndim:
        raise ValueError("%s: %s has shape %s; expected %d dimensions %s"
                         % (fn, name, _shape_str((<object>arr).shape), ndim, letters))
    _layout(fn, name, arr, writeable)
    return 0


cdef inline int check_act(str fn, object act) except -1:
    if act not in (SIGMOID, TANH, RELU, LINEAR):
        raise ValueError("%s: unknown activation code %r; expected 0 (sigmoid), "
                         "1 (tanh), 2 (ReLU) or 3 (linear)" % (fn, act))
    return 0


cdef inline int check_blas_size(str fn, Py_ssize_t n) except -1:
    """BLAS takes 32-bit sizes."""
    if n > 2147483647:
        raise ValueError("%s: arrays too large for 32-bit BLAS (%d elements in "
                         "one matrix dimension product)" % (fn, n))
    return 0


cdef inline void* data(object a) noexcept:
    return cnp.PyArray_DATA(<cnp.ndarray>a)
