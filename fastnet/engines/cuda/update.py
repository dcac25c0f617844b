"""update: plain SGD with network3's L2 term, and the sum of squares.

  sgd_update      param -= eta * (grad + l2 * param)
                  (l2 = lmbda / num_training_batches for weights, 0 for biases)
  sum_of_squares  sum(w**2) into a device scalar (the L2 term of the cost)

Both see their arrays flat (a view, reshaped inside the kernel), so one
source serves every rank; a signature is compiled per rank (1, 2, 4 at init).
sum_of_squares is one launch: grid-stride block sums, then the last block
adds them in a fixed order (deterministic, no second launch, no atomics on
floats).
"""

import math

from numba import cuda

from .common import (TARGET_BLOCKS, TPB, I32, I32_1, array_types, block_sum,
                     cdiv, last_block, sig)

RANKS = (1, 2, 3, 4)
INIT_RANKS = (1, 2, 4)     # biases, dense weights, conv weights


def sgd_update_kernel(param, grad, eta, l2):
    """param (any shape)  IN/OUT;  grad (same shape)  IN;  eta, l2  scalars

    grid (cdiv(size, TPB),) capped, grid-stride; block TPB
    """
    p = param.reshape(param.size)
    g = grad.reshape(grad.size)
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for e in range(start, p.shape[0], stride):
        p[e] -= eta * (g[e] + l2 * p[e])


def sum_of_squares_kernel(w, partial, counter, result, slot):
    """w (any shape)  IN;  partial (blocks,)  workspace;  counter (1,) int32,
    zeros;  result (ring,)  OUT: result[slot] = sum(w**2)

    grid (blocks,), grid-stride; block TPB
    """
    sh = cuda.shared.array(TPB, dtype=w.dtype)
    flag = cuda.shared.array(1, dtype=I32)
    a = w.reshape(w.size)
    tid = cuda.threadIdx.x
    zero = w.dtype.type(0)
    part = zero
    for e in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        part += a[e] * a[e]
    total = block_sum(part, sh, tid, TPB)
    nblocks = cuda.gridDim.x
    if nblocks == 1:
        if tid == 0:
            result[slot] = total
    else:
        if tid == 0:
            partial[cuda.blockIdx.x] = total
        if last_block(counter, 0, nblocks, flag, tid):
            if tid == 0:
                acc = zero
                for k in range(nblocks):       # fixed order: deterministic
                    acc += partial[k]
                result[slot] = acc


# ---------------------------------------------------------------------------
# fastnet.optim's optimizers (PyTorch's definitions; reference.py's *_update
# for the formulas), on flat 1-d arrays.  The per-call scalars (signs,
# 1 - beta, bias corrections) are computed on the host in double, as the
# reference and compiled engines compute them, and passed in the dtype; the
# last, ``tiny``, is the dtype's smallest normal number (state below it is
# stored as +0, as the other engines do).
# ---------------------------------------------------------------------------
@cuda.jit(device=True)
def _normal_or_zero(v, tiny):
    """csrc/update.pxd's normal_or_zero: +0 where |v| < tiny (the dtype's
    smallest normal number, passed in the dtype), NaN kept."""
    if v < tiny and v > -tiny:
        return tiny - tiny
    return v


def momentum_update_kernel(p, g, buf, neg_lr, momentum, damp1, wd, nesterov, first, tiny):
    for e in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        gg = g[e]
        if wd != 0:
            gg = gg + wd * p[e]
        if first != 0:
            b = gg
        else:
            b = momentum * buf[e] + damp1 * gg
        if b < tiny and b > -tiny:
            b = tiny - tiny
        buf[e] = b
        if nesterov != 0:
            gg = gg + momentum * b
        else:
            gg = b
        p[e] = p[e] + neg_lr * gg


def rmsprop_update_kernel(p, g, v, neg_lr, alpha, alpha1, eps, wd, tiny):
    for e in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        gg = g[e]
        if wd != 0:
            gg = gg + wd * p[e]
        v[e] = _normal_or_zero(v[e] * alpha + alpha1 * (gg * gg), tiny)
        p[e] = p[e] + neg_lr * (gg / (math.sqrt(v[e]) + eps))


def adagrad_update_kernel(p, g, s, neg_clr, eps, wd, tiny):
    for e in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        gg = g[e]
        if wd != 0:
            gg = gg + wd * p[e]
        s[e] = _normal_or_zero(s[e] + gg * gg, tiny)
        p[e] = p[e] + neg_clr * (gg / (math.sqrt(s[e]) + eps))


def adam_update_kernel(p, g, m, v, keep, c1, beta2, c2, eps, wd, neg_step, bc2, decoupled,
                       tiny):
    for e in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        gg = g[e]
        if decoupled != 0:
            p[e] = p[e] * keep
        elif wd != 0:
            gg = gg + wd * p[e]
        m[e] = _normal_or_zero(m[e] + c1 * (gg - m[e]), tiny)
        v[e] = _normal_or_zero(v[e] * beta2 + c2 * (gg * gg), tiny)
        p[e] = p[e] + neg_step * (m[e] / (math.sqrt(v[e]) / bc2 + eps))


def optimizer_scalars(name, h):
    """The kernel's scalar arguments from the reference signature's
    hyper-parameters ``h`` (in order), computed in double."""
    if name == "momentum_update":
        lr, momentum, dampening, wd, nesterov, step = h
        return (-lr, momentum, 1.0 - dampening, wd, float(bool(nesterov)),
                1.0 if step == 1 else 0.0)
    if name == "rmsprop_update":
        lr, alpha, eps, wd = h
        return (-lr, alpha, 1.0 - alpha, eps, wd)
    if name == "adagrad_update":
        lr, lr_decay, eps, wd, step = h
        return (-(lr / (1.0 + (step - 1) * lr_decay)), eps, wd)
    if name == "adam_update":
        lr, beta1, beta2, eps, wd, decoupled, step = h
        return (1.0 - lr * wd, 1.0 - beta1, beta2, 1.0 - beta2, eps, wd,
                -(lr / (1.0 - beta1 ** step)), math.sqrt(1.0 - beta2 ** step),
                float(bool(decoupled)))
    if name in KERAS_OPTIMIZERS:
        return keras_optimizer_scalars(name, h)
    raise ValueError("unknown optimizer kernel %r" % (name,))


# name -> (kernel, number of state arrays, number of scalars)
OPTIMIZERS = {"momentum_update": (momentum_update_kernel, 1, 7),
              "rmsprop_update": (rmsprop_update_kernel, 1, 6),
              "adagrad_update": (adagrad_update_kernel, 1, 4),
              "adam_update": (adam_update_kernel, 2, 10)}


# ---------------------------------------------------------------------------
# Keras 3's optimizers (fastnet.keras.optimizers; reference.py's
# keras_*_update for the formulas), in Keras's order.  weight_decay is
# decoupled and comes first: p -= p * wd * lr.
# ---------------------------------------------------------------------------
def keras_sgd_update_kernel(p, g, vel, lr, momentum, nesterov, wd, tiny):
    for e in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        if wd != 0:
            p[e] = p[e] - p[e] * wd * lr
        gg = g[e]
        if momentum != 0:
            m = _normal_or_zero(vel[e] * momentum - gg * lr, tiny)
            vel[e] = m
            if nesterov != 0:
                p[e] = p[e] + (m * momentum - gg * lr)
            else:
                p[e] = p[e] + m
        else:
            p[e] = p[e] - gg * lr


def keras_rmsprop_update_kernel(p, g, v, lr, rho, rho1, eps, wd, tiny):
    for e in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        if wd != 0:
            p[e] = p[e] - p[e] * wd * lr
        gg = g[e]
        v[e] = _normal_or_zero(rho * v[e] + rho1 * (gg * gg), tiny)
        p[e] = p[e] - (lr * gg) / math.sqrt(v[e] + eps)


def keras_adagrad_update_kernel(p, g, acc, lr, eps, wd, tiny):
    for e in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        if wd != 0:
            p[e] = p[e] - p[e] * wd * lr
        gg = g[e]
        acc[e] = _normal_or_zero(acc[e] + gg * gg, tiny)
        p[e] = p[e] - (lr * gg) / math.sqrt(acc[e] + eps)


def keras_adam_update_kernel(p, g, m, v, lr, c1, c2, eps, wd, alpha, tiny):
    for e in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        if wd != 0:
            p[e] = p[e] - p[e] * wd * lr
        gg = g[e]
        m[e] = _normal_or_zero(m[e] + (gg - m[e]) * c1, tiny)
        v[e] = _normal_or_zero(v[e] + (gg * gg - v[e]) * c2, tiny)
        p[e] = p[e] - (m[e] * alpha) / (math.sqrt(v[e]) + eps)


def keras_optimizer_scalars(name, h):
    """optimizer_scalars of the Keras kernels, in double."""
    if name == "keras_sgd_update":
        lr, momentum, nesterov, wd = h
        return (lr, momentum, float(bool(nesterov)), wd)
    if name == "keras_rmsprop_update":
        lr, rho, eps, wd = h
        return (lr, rho, 1.0 - rho, eps, wd)
    if name == "keras_adagrad_update":
        lr, eps, wd = h
        return (lr, eps, wd)
    lr, beta_1, beta_2, eps, wd, step = h
    return (lr, 1.0 - beta_1, 1.0 - beta_2, eps, wd,
            lr * math.sqrt(1.0 - beta_2 ** step) / (1.0 - beta_1 ** step))


KERAS_OPTIMIZERS = {"keras_sgd_update": (keras_sgd_update_kernel, 1, 5),
                    "keras_rmsprop_update": (keras_rmsprop_update_kernel, 1, 6),
                    "keras_adagrad_update": (keras_adagrad_update_kernel, 1, 4),
                    "keras_adam_update": (keras_adam_update_kernel, 2, 7)}
OPTIMIZERS.update(KERAS_OPTIMIZERS)


def optimizer_signatures(dtype):
    """{kernel name: (python function, [signature])}: the optimizers, 1-d."""
    T, T1 = array_types(dtype)[:2]
    return {name: (fn, [sig(*([T1] * (2 + n_state) + [T] * n_scalars))])
            for name, (fn, n_state, n_scalars) in OPTIMIZERS.items()}


# ---------------------------------------------------------------------------
# signatures and launchers
# ---------------------------------------------------------------------------
def _rank_type(dtype, rank):
    return array_types(dtype)[rank]


def signatures(dtype, ranks=RANKS):
    """{kernel name: (python function, [signatures])} for ``dtype``;
    one name per rank: sgd_update_1d, ..., sum_of_squares_4d."""
    T, T1 = array_types(dtype)[:2]
    out = {}
    for r in ranks:
        A = _rank_type(dtype, r)
        out["sgd_update_%dd" % r] = (sgd_update_kernel, [sig(A, A, T, T)])
        out["sum_of_squares_%dd" % r] = (sum_of_squares_kernel,
                                         [sig(A, T1, I32_1, T1, I32)])
    return out


# SGD: each thread updates a few elements at most; 1,000,000-weight layers
# take 4096 blocks, well over the SMs' worth.
MAX_UPDATE_BLOCKS = 4096


def update_config(size):
    return (max(1, min(MAX_UPDATE_BLOCKS, cdiv(size, TPB))),), (TPB,)


def ssq_config(size):
    """Sum of squares: up to TARGET_BLOCKS blocks, >= 4 elements a thread."""
    return (max(1, min(TARGET_BLOCKS, cdiv(size, 4 * TPB))),), (TPB,)
