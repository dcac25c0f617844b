"""softmax: inference probabilities; fused softmax + mean NLL + its gradient.

Shape letters: N batch, K classes (10 for MNIST: one thread per row is
plenty; a row's K values stay in L1).

  forward   probs[n] = exp(logits[n] - max) / sum(exp(logits[n] - max))
  nll       cost = mean_n [log sum_k exp(logits[n,k]) - logits[n, y[n]]]
            dlogits = (probs - onehot(y)) / N
  argmax    yout[n] = the first k with probs[n,k] maximal (network3's y_out)

softmax_nll is one block: it writes probs and dlogits and leaves the cost in
a device scalar (cost[slot]); the host reads it only when asked.
"""

import math

from numba import cuda

from .common import TPB, I32, I32_1, array_types, activate, block_sum, cdiv, sig
from ...activations import SIGMOID


def softmax_forward_kernel(logits, probs):
    """logits (N, K)  IN;  probs (N, K)  OUT.  grid (cdiv(N, TPB),); block TPB"""
    N, K = logits.shape[0], logits.shape[1]
    n = cuda.grid(1)
    if n < N:
        m = logits[n, 0]
        for k in range(1, K):
            m = max(m, logits[n, k])
        s = m - m
        for k in range(K):
            e = math.exp(logits[n, k] - m)
            probs[n, k] = e
            s += e
        for k in range(K):
            probs[n, k] = probs[n, k] / s


def softmax_nll_kernel(logits, y, probs, dlogits, cost, slot):
    """logits (N, K)  IN;  y (N,) int32  IN;  probs, dlogits (N, K)  OUT
    cost (ring,)  OUT: cost[slot] = mean NLL.   grid (1,); block TPB
    """
    sh = cuda.shared.array(TPB, dtype=logits.dtype)
    N, K = logits.shape[0], logits.shape[1]
    tid = cuda.threadIdx.x
    one = logits.dtype.type(1)
    zero = one - one
    fn = logits.dtype.type(N)
    part = zero
    for n in range(tid, N, TPB):
        m = logits[n, 0]
        for k in range(1, K):
            m = max(m, logits[n, k])
        s = zero
        for k in range(K):
            e = math.exp(logits[n, k] - m)
            probs[n, k] = e
            s += e
        yn = y[n]
        for k in range(K):
            p = probs[n, k] / s
            probs[n, k] = p
            dlogits[n, k] = ((p - one) if k == yn else p) / fn
        if yn >= 0 and yn < K:
            part += (math.log(s) + m) - logits[n, yn]
    total = block_sum(part, sh, tid, TPB)
    if tid == 0:
        cost[slot] = total / fn


def softmax_argmax_kernel(probs, yout):
    """probs (N, K)  IN;  yout (N,) int32  OUT.  grid (cdiv(N, TPB),); block TPB"""
    N, K = probs.shape[0], probs.shape[1]
    n = cuda.grid(1)
    if n < N:
        best = 0
        m = probs[n, 0]
        for k in range(1, K):
            if probs[n, k] > m:      # strict: the first maximum wins
                m = probs[n, k]
                best = k
        yout[n] = best


def sigmoid_bce_kernel(logits, targets, probs, dlogits, cost, slot):
    """logits, targets (N, K)  IN;  probs, dlogits (N, K)  OUT;  cost (ring,)
    OUT: cost[slot] = mean of softplus(z) - t z over the N*K elements;
    probs = sigmoid(z) (dense_forward's);  dlogits = (p - t) / (N*K).
    grid (1,); block TPB"""
    sh = cuda.shared.array(TPB, dtype=logits.dtype)
    N, K = logits.shape[0], logits.shape[1]
    tid = cuda.threadIdx.x
    one = logits.dtype.type(1)
    zero = one - one
    fn = logits.dtype.type(N * K)
    part = zero
    for e in range(tid, N * K, TPB):
        n = e // K
        k = e - n * K
        z = logits[n, k]
        t = targets[n, k]
        p = activate(z, SIGMOID, one)
        probs[n, k] = p
        dlogits[n, k] = (p - t) / fn
        part += (max(z, zero) + math.log1p(math.exp(-abs(z)))) - t * z
    total = block_sum(part, sh, tid, TPB)
    if tid == 0:
        cost[slot] = total / fn


def mse_kernel(out, targets, dout, cost, slot):
    """out, targets (N, K)  IN;  dout (N, K)  OUT;  cost (ring,)  OUT:
    cost[slot] = mean((out - t)^2);  dout = 2 (out - t) / (N*K).
    grid (1,); block TPB"""
    sh = cuda.shared.array(TPB, dtype=out.dtype)
    N, K = out.shape[0], out.shape[1]
    tid = cuda.threadIdx.x
    one = out.dtype.type(1)
    fn = out.dtype.type(N * K)
    part = one - one
    for e in range(tid, N * K, TPB):
        n = e // K
        k = e - n * K
        d = out[n, k] - targets[n, k]
        dout[n, k] = (d + d) / fn
        part += d * d
    total = block_sum(part, sh, tid, TPB)
    if tid == 0:
        cost[slot] = total / fn


# ---------------------------------------------------------------------------
# signatures and launchers
# ---------------------------------------------------------------------------
def signatures(dtype):
    """{kernel name: (python function, [signatures])} for ``dtype``."""
    T, T1, T2, T3, T4 = array_types(dtype)
    return {
        "softmax_forward": (softmax_forward_kernel, [sig(T2, T2)]),
        "softmax_nll": (softmax_nll_kernel, [sig(T2, I32_1, T2, T2, T1, I32)]),
        "softmax_argmax": (softmax_argmax_kernel, [sig(T2, I32_1)]),
        "sigmoid_bce": (sigmoid_bce_kernel, [sig(T2, T2, T2, T2, T1, I32)]),
        "mse_loss": (mse_kernel, [sig(T2, T2, T2, T1, I32)]),
    }


def rows_config(N):
    return (max(1, cdiv(N, TPB)),), (TPB,)


NLL_CONFIG = ((1,), (TPB,))
