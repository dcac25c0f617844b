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
