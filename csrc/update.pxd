# update: plain SGD with network3's L2 term; the sum of squares for the cost.
#
# Shape letters: n elements of a parameter (any shape, C-contiguous, seen
# flat).  Inline nogil kernels over raw pointers, cimported by update.pyx and
# by any compiled trainer.

from cython.parallel cimport prange

from libc.math cimport sqrt, pow
from libc.float cimport FLT_MIN, DBL_MIN

from common cimport floating, threads_for


cdef inline floating sgd_step(floating p, floating g, floating eta,
                              floating l2) noexcept nogil:
    """network3's rule for one element: p - eta * (g + l2 * p); l2 = 0 for
    biases (then exactly p - eta * g, as network3's graph computes it)."""
    if l2 != 0:
        return p - eta * (g + l2 * p)
    return p - eta * g


cdef inline void sgd_span(floating* param, const floating* grad, Py_ssize_t n,
                          floating eta, floating l2) noexcept nogil:
    """sgd_step over n elements on the calling thread; the l2 test hoisted
    out of the loop (a literal 0 lets the compiler drop it and vectorise)."""
    cdef Py_ssize_t i
    if l2 != 0:
        for i in range(n):
            param[i] = sgd_step(param[i], grad[i], eta, l2)
    else:
        for i in range(n):
            param[i] = sgd_step(param[i], grad[i], eta, <floating>0)


cdef inline void sgd_update_kernel(floating* param, const floating* grad,
                                   Py_ssize_t n, floating eta, floating l2,
                                   int n_threads) noexcept nogil:
    """param -= eta * (grad + l2 * param)  (sgd_step, element by element)

    l2 = lmbda / num_training_batches for weights (the gradient of
    0.5*lmbda*||w||^2/num_training_batches), 0 for biases.  One thread runs
    it without opening a parallel region (it is called inside the
    trainer's).   param (n,)  IN/OUT;  grad (n,)  IN
    """
    cdef Py_ssize_t i
    cdef int T = threads_for(n_threads, n, n)
    if T == 1:
        sgd_span(param, grad, n, eta, l2)
    else:
        for i in prange(n, num_threads=T, schedule='static'):
            param[i] = sgd_step(param[i], grad[i], eta, l2)


# ---------------------------------------------------------------------------
# fastnet.optim's optimizers: PyTorch's definitions (reference.py's
# *_update for the formulas), one element at a time in PyTorch's order.
# h: the hyper-parameters in the reference signature's order, as doubles;
# state arrays s0, s1 (NULL when unused), stored through normal_or_zero.
# ---------------------------------------------------------------------------
cdef enum:
    OPT_SGD = 1          # network3's rule (and torch SGD without momentum)
    OPT_MOMENTUM = 2     # h: lr, momentum, dampening, weight_decay, nesterov, step
    OPT_RMSPROP = 3      # h: lr, alpha, eps, weight_decay
    OPT_ADAGRAD = 4      # h: lr, lr_decay, eps, weight_decay, step
    OPT_ADAM = 5         # h: lr, beta1, beta2, eps, weight_decay, decoupled, step


# Keras 3's optimizers (fastnet.keras.optimizers; reference.py's keras_*_update
# for the formulas), in Keras's order; weight_decay (decoupled) comes first.
cdef enum:
    OPT_KERAS_SGD = 6       # h: learning_rate, momentum, nesterov, weight_decay
    OPT_KERAS_RMSPROP = 7   # h: learning_rate, rho, epsilon, weight_decay
    OPT_KERAS_ADAGRAD = 8   # h: learning_rate, epsilon, weight_decay
    OPT_KERAS_ADAM = 9      # h: learning_rate, beta_1, beta_2, epsilon, weight_decay, step


cdef inline floating normal_or_zero(floating v) noexcept nogil:
    """v, or +0 where |v| is below the smallest normal number.  Optimizer
    state that decays (RMSprop's and Adam's averages, momentum buffers, for
    weights whose gradient is 0: dead ReLU units) would otherwise sink into
    the subnormal numbers, on which x86 arithmetic is ~100x slower (seed
    003's RMSprop net trained 4x slower by its 12th epoch).  NaN stays NaN."""
    if floating is float:
        return 0 if (v < FLT_MIN and v > -FLT_MIN) else v
    else:
        return 0 if (v < DBL_MIN and v > -DBL_MIN) else v


cdef inline void optimizer_span(int opt, floating* p, const floating* grad, floating* s0,
                                floating* s1, Py_ssize_t n, const double* h) noexcept nogil:
    """One optimizer's update of n elements (serially)."""
    cdef Py_ssize_t i
    cdef floating g, b, lr, wd, mom, damp1, a, a1, eps, keep, c1, c2, bc2, step_size
    cdef bint first, nesterov
    cdef double t
    if opt == OPT_SGD:
        sgd_span(p, grad, n, <floating>h[0], <floating>h[1])
    elif opt == OPT_MOMENTUM:
        lr, mom, damp1, wd = <floating>(-h[0]), <floating>h[1], <floating>(1.0 - h[2]), <floating>h[3]
        nesterov, first = h[4] != 0, h[5] == 1
        for i in range(n):
            g = grad[i]
            if wd != 0:
                g = g + wd * p[i]
            if first:
                b = g
            else:
                b = mom * s0[i] + damp1 * g
            b = normal_or_zero(b)
            s0[i] = b
            if nesterov:
                g = g + mom * b
            else:
                g = b
            p[i] = p[i] + lr * g
    elif opt == OPT_RMSPROP:
        lr, a, a1, eps, wd = <floating>(-h[0]), <floating>h[1], <floating>(1.0 - h[1]), <floating>h[2], <floating>h[3]
        for i in range(n):
            g = grad[i]
            if wd != 0:
                g = g + wd * p[i]
            s0[i] = normal_or_zero(s0[i] * a + a1 * (g * g))
            p[i] = p[i] + lr * (g / (<floating>sqrt(s0[i]) + eps))
    elif opt == OPT_ADAGRAD:
        t = h[4]
        lr, eps, wd = <floating>(-(h[0] / (1.0 + (t - 1.0) * h[1]))), <floating>h[2], <floating>h[3]
        for i in range(n):
            g = grad[i]
            if wd != 0:
                g = g + wd * p[i]
            s0[i] = normal_or_zero(s0[i] + g * g)
            p[i] = p[i] + lr * (g / (<floating>sqrt(s0[i]) + eps))
    elif opt == OPT_ADAM:
        t = h[6]
        c1, c2 = <floating>(1.0 - h[1]), <floating>(1.0 - h[2])
        a, eps, wd = <floating>h[2], <floating>h[3], <floating>h[4]
        keep = <floating>(1.0 - h[0] * h[4])
        step_size = <floating>(-(h[0] / (1.0 - pow(h[1], t))))
        bc2 = <floating>sqrt(1.0 - pow(h[2], t))
        for i in range(n):
            g = grad[i]
            if h[5] != 0:
                p[i] = p[i] * keep
            elif wd != 0:
                g = g + wd * p[i]
            s0[i] = normal_or_zero(s0[i] + c1 * (g - s0[i]))
            s1[i] = normal_or_zero(s1[i] * a + c2 * (g * g))
            p[i] = p[i] + step_size * (s0[i] / (<floating>sqrt(s1[i]) / bc2 + eps))
    elif opt == OPT_KERAS_SGD:
        lr, mom, wd = <floating>h[0], <floating>h[1], <floating>h[3]
        nesterov = h[2] != 0
        for i in range(n):
            if wd != 0:
                p[i] = p[i] - p[i] * wd * lr
            g = grad[i]
            if mom != 0:
                b = normal_or_zero(s0[i] * mom - g * lr)
                s0[i] = b
                if nesterov:
                    p[i] = p[i] + (b * mom - g * lr)
                else:
                    p[i] = p[i] + b
            else:
                p[i] = p[i] - g * lr
    elif opt == OPT_KERAS_RMSPROP:
        lr, a, a1, eps, wd = <floating>h[0], <floating>h[1], <floating>(1.0 - h[1]), <floating>h[2], <floating>h[3]
        for i in range(n):
            if wd != 0:
                p[i] = p[i] - p[i] * wd * lr
            g = grad[i]
            s0[i] = normal_or_zero(a * s0[i] + a1 * (g * g))
            p[i] = p[i] - (lr * g) / <floating>sqrt(s0[i] + eps)
    elif opt == OPT_KERAS_ADAGRAD:
        lr, eps, wd = <floating>h[0], <floating>h[1], <floating>h[2]
        for i in range(n):
            if wd != 0:
                p[i] = p[i] - p[i] * wd * lr
            g = grad[i]
            s0[i] = normal_or_zero(s0[i] + g * g)
            p[i] = p[i] - (lr * g) / <floating>sqrt(s0[i] + eps)
    elif opt == OPT_KERAS_ADAM:
        t = h[5]
        lr, eps, wd = <floating>h[0], <floating>h[3], <floating>h[4]
        c1, c2 = <floating>(1.0 - h[1]), <floating>(1.0 - h[2])
        # Keras's alpha_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t), in double
        step_size = <floating>(h[0] * sqrt(1.0 - pow(h[2], t)) / (1.0 - pow(h[1], t)))
        for i in range(n):
            if wd != 0:
                p[i] = p[i] - p[i] * wd * lr
            g = grad[i]
            s0[i] = normal_or_zero(s0[i] + (g - s0[i]) * c1)
            s1[i] = normal_or_zero(s1[i] + (g * g - s1[i]) * c2)
            p[i] = p[i] - (s0[i] * step_size) / (<floating>sqrt(s1[i]) + eps)


cdef inline void optimizer_update(int opt, floating* p, const floating* grad, floating* s0,
                                  floating* s1, Py_ssize_t n, const double* h,
                                  int n_threads) noexcept nogil:
    """optimizer_span over n elements, cut into one span per thread."""
    cdef int t
    cdef int T = threads_for(n_threads, n, n)
    cdef Py_ssize_t a, b
    if T == 1:
        optimizer_span(opt, p, grad, s0, s1, n, h)
        return
    for t in prange(T, num_threads=T, schedule='static'):
        a = t * n // T
        b = (t + 1) * n // T
        optimizer_span(opt, p + a, grad + a, NULL if s0 == NULL else s0 + a,
                       NULL if s1 == NULL else s1 + a, b - a, h)


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
