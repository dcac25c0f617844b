# update: checked Python entry points of the SGD step and the sum of squares.
#
# Shape letters: any shape, seen flat (n elements).
#
# The kernels are in update.pxd (inline, nogil, raw pointers); see conv.pyx
# for why a module cimports its namesake .pxd.

from update cimport (sgd_update_kernel, sum_of_squares_kernel, optimizer_update,
                    OPT_SGD, OPT_MOMENTUM, OPT_RMSPROP, OPT_ADAGRAD, OPT_ADAM)
from update cimport (OPT_KERAS_SGD, OPT_KERAS_RMSPROP, OPT_KERAS_ADAGRAD,
                    OPT_KERAS_ADAM)
from common cimport (float_typenum, check_array, data)
cimport numpy as cnp

cnp.import_array()

# the thread count of every kernel call: fastnet/_cpu/threads.py
from fastnet._cpu import threads as _threads


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
    cdef int nt = _threads.for_step()
    cdef void* pp = data(param)
    cdef void* pg = data(grad)
    with nogil:
        if t == cnp.NPY_FLOAT32:
            sgd_update_kernel(<float*>pp, <const float*>pg, n, <float>e, <float>l, nt)
        else:
            sgd_update_kernel(<double*>pp, <const double*>pg, n, e, l, nt)


cdef _optimizer(str fn, int opt, object param, object grad, tuple state, tuple hyper):
    """Check and run one optimizer update (update.pxd's optimizer_update)."""
    cdef int t = float_typenum(fn, "param", param, -1, "")
    cdef double h[8]
    cdef int k
    check_array(fn, "param", param, t, param.shape, "its shape", True)
    check_array(fn, "grad", grad, t, param.shape, "the shape of param", False,
                "the dtype of param")
    for k, s in enumerate(state):
        check_array(fn, "state %d" % k, s, t, param.shape, "the shape of param", True,
                    "the dtype of param")
    for k, v in enumerate(hyper):
        h[k] = v
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>param)
    cdef int nt = _threads.for_step()
    cdef void* pp = data(param)
    cdef void* pg = data(grad)
    cdef void* s0 = data(state[0]) if len(state) > 0 else NULL
    cdef void* s1 = data(state[1]) if len(state) > 1 else NULL
    with nogil:
        if t == cnp.NPY_FLOAT32:
            optimizer_update(opt, <float*>pp, <const float*>pg, <float*>s0, <float*>s1,
                             n, h, nt)
        else:
            optimizer_update(opt, <double*>pp, <const double*>pg, <double*>s0,
                             <double*>s1, n, h, nt)


# the optimizers' kernels: name -> (update.pxd code, state arrays,
# hyper-parameters), arguments in the reference signature's order
# (param, grad, *state, *hyper).  The trainer (trainer.pyx) and the cpu
# engine read this table: a new optimizer is its update.pxd formula and a
# row here.
OPTIMIZERS = {"sgd_update": (OPT_SGD, 0, 2),
              "momentum_update": (OPT_MOMENTUM, 1, 6),
              "rmsprop_update": (OPT_RMSPROP, 1, 4),
              "adagrad_update": (OPT_ADAGRAD, 1, 5),
              "adam_update": (OPT_ADAM, 2, 7)}
# Keras 3's optimizers (fastnet.keras.optimizers)
OPTIMIZERS.update({"keras_sgd_update": (OPT_KERAS_SGD, 1, 4),
                   "keras_rmsprop_update": (OPT_KERAS_RMSPROP, 1, 4),
                   "keras_adagrad_update": (OPT_KERAS_ADAGRAD, 1, 3),
                   "keras_adam_update": (OPT_KERAS_ADAM, 2, 6)})


def optimizer_kernel(name):
    """The checked Python entry point of optimizer kernel ``name``:
    f(param, grad, *state, *hyper) as reference.py's function of that name."""
    code, n_state, n_hyper = OPTIMIZERS[name]

    def kernel(param, grad, *args):
        if len(args) != n_state + n_hyper:
            raise TypeError("%s takes %d arguments, got %d"
                            % (name, 2 + n_state + n_hyper, 2 + len(args)))
        _optimizer(name, code, param, grad, tuple(args[:n_state]), tuple(args[n_state:]))
    kernel.__name__ = name
    kernel.__doc__ = "%s (see fastnet/engines/reference.py's %s)." % (name, name)
    return kernel


def sum_of_squares(w):
    """sum(w**2) as a Python float (for the L2 term of the cost)."""
    cdef int t = float_typenum("sum_of_squares", "w", w, -1, "")
    cdef Py_ssize_t n = cnp.PyArray_SIZE(<cnp.ndarray>w)
    cdef int nt = _threads.count
    cdef void* pw = data(w)
    cdef double s
    with nogil:
        if t == cnp.NPY_FLOAT32:
            s = sum_of_squares_kernel(<const float*>pw, n, nt)
        else:
            s = sum_of_squares_kernel(<const double*>pw, n, nt)
    return s
