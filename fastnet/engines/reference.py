"""The reference engine: a readable NumPy twin of every kernel.

This is the oracle the compiled (csrc/) and CUDA kernels are tested against,
and it runs in float32 or float64.  Every engine exposes these functions with
the same names and arguments; outputs are written into arrays the caller
allocated once (the "OUT" arguments), nothing is returned unless said.

Shape letters: N batch, C input channels, H x W image, F filters,
KH x KW kernel, OH x OW convolution output, PH x PW pooled output
(ph x pw the pool window), I dense inputs, O dense outputs.

Families, as in csrc/: conv, pool (+ bias + activation), dense
(+ bias + activation, dropout), softmax (+ NLL), update (SGD + L2).
"""

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..activations import SIGMOID, TANH, RELU, LINEAR
from ..dropout import keep_threshold  # noqa: F401  (part of every engine's surface)

name = "reference"


# ---------------------------------------------------------------------------
# memory: where the engine keeps arrays (host NumPy here; the GPU for cuda)
# ---------------------------------------------------------------------------
def empty(shape, dtype):
    """A new uninitialised engine array."""
    return np.empty(shape, dtype=dtype)


def to_device(a, out=None):
    """An engine array holding a copy of host array ``a`` (C-contiguous), or
    ``a`` copied into the engine array ``out`` (same shape)."""
    if out is None:
        return np.array(a, order="C", copy=True)
    np.copyto(out, a)
    return out


def to_host(a, out=None):
    """Copy engine array ``a`` into host array ``out`` (or a new one)."""
    if out is None:
        return np.array(a, copy=True)
    out[...] = a
    return out


def synchronize():
    """Wait for queued work (nothing to wait for on the host)."""


# ---------------------------------------------------------------------------
# activations (shared by pool and dense)
# ---------------------------------------------------------------------------
def _activate(z, act):
    """act(z) in place on z; returns z."""
    if act == SIGMOID:
        # 1/(1+exp(-z)) split by sign so exp never overflows
        pos = z >= 0
        zp = z[pos]
        z[pos] = 1.0 / (1.0 + np.exp(-zp))
        ez = np.exp(z[~pos])
        z[~pos] = ez / (1.0 + ez)
    elif act == TANH:
        np.tanh(z, out=z)
    elif act == RELU:
        np.maximum(z, 0, out=z)
    elif act == LINEAR:
        pass
    else:
        raise ValueError("unknown activation code %r" % (act,))
    return z


def _activation_grad(a, act):
    """d act / d z expressed through the output a = act(z)."""
    if act == SIGMOID:
        return a * (1 - a)
    if act == TANH:
        return 1 - a * a
    if act == RELU:
        return (a > 0).astype(a.dtype)
    if act == LINEAR:
        return np.ones_like(a)
    raise ValueError("unknown activation code %r" % (act,))


# ---------------------------------------------------------------------------
# conv: Theano's conv.conv2d, a true convolution (kernel flipped), 'valid'
# ---------------------------------------------------------------------------
def conv_forward(x, w, out):
    """out[n,f,i,j] = sum_{c,p,q} x[n,c,i+p,j+q] * w[f,c,KH-1-p,KW-1-q]

    x (N, C, H, W)  IN
    w (F, C, KH, KW)  IN
    out (N, F, H-KH+1, W-KW+1)  OUT
    """
    KH, KW = w.shape[2], w.shape[3]
    windows = sliding_window_view(x, (KH, KW), axis=(2, 3))   # (N,C,OH,OW,KH,KW)
    wflip = w[:, :, ::-1, ::-1]
    r = np.tensordot(windows, wflip, axes=([1, 4, 5], [1, 2, 3]))  # (N,OH,OW,F)
    out[...] = r.transpose(0, 3, 1, 2)


def conv_backward(x, w, dout, dw, dx):
    """Gradients of conv_forward.

    dw[f,c,p,q] = sum_{n,i,j} dout[n,f,i,j] * x[n,c,i+KH-1-p,j+KW-1-q]
    dx[n,c,a,b] = sum_{f,p,q} dout_padded[n,f,a+p,b+q] * w[f,c,p,q]
                  (dout zero-padded by KH-1, KW-1: a full correlation)

    x (N, C, H, W)  IN;  w (F, C, KH, KW)  IN;  dout (N, F, OH, OW)  IN
    dw (F, C, KH, KW)  OUT
    dx (N, C, H, W)  OUT, or None when the input needs no gradient
    """
    KH, KW = w.shape[2], w.shape[3]
    windows = sliding_window_view(x, (KH, KW), axis=(2, 3))   # (N,C,OH,OW,KH,KW)
    dwflip = np.tensordot(dout, windows, axes=([0, 2, 3], [0, 2, 3]))  # (F,C,KH,KW)
    dw[...] = dwflip[:, :, ::-1, ::-1]
    if dx is not None:
        padded = np.pad(dout, ((0, 0), (0, 0), (KH - 1, KH - 1), (KW - 1, KW - 1)))
        pw = sliding_window_view(padded, (KH, KW), axis=(2, 3))  # (N,F,H,W,KH,KW)
        r = np.tensordot(pw, w, axes=([1, 4, 5], [0, 2, 3]))      # (N,H,W,C)
        dx[...] = r.transpose(0, 3, 1, 2)


# ---------------------------------------------------------------------------
# pool: max-pool (border ignored), then bias, then activation
# ---------------------------------------------------------------------------
def _windows(conv_out, poolsize):
    ph, pw = poolsize
    N, F, CH, CW = conv_out.shape
    PH, PW = CH // ph, CW // pw
    crop = conv_out[:, :, :PH * ph, :PW * pw]
    return crop.reshape(N, F, PH, ph, PW, pw)


def pool_forward(conv_out, b, act, poolsize, out):
    """out[n,f,i,j] = act(max over window (i,j) of conv_out[n,f] + b[f])

    conv_out (N, F, CH, CW)  IN;  b (F,)  IN;  act: activation code
    poolsize (ph, pw); out (N, F, CH//ph, CW//pw)  OUT
    """
    z = _windows(conv_out, poolsize).max(axis=(3, 5))
    z += b[None, :, None, None]
    out[...] = _activate(z, act)


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
    dout *= _activation_grad(out, act)
    db[...] = dout.sum(axis=(0, 2, 3))
    win = _windows(conv_out, poolsize)
    zmax = win.max(axis=(3, 5), keepdims=True)
    routed = (win == zmax) * dout[:, :, :, None, :, None]
    dconv[...] = 0
    ph, pw = poolsize
    N, F, PH, _, PW, _ = win.shape
    dconv[:, :, :PH * ph, :PW * pw] = routed.reshape(N, F, PH * ph, PW * pw)


# ---------------------------------------------------------------------------
# dense: x @ w, scaled, plus bias, then activation; dropout masks
# ---------------------------------------------------------------------------
def dense_forward(x, w, b, act, scale, out):
    """out = act(scale * (x @ w) + b)

    scale is 1 while training and (1 - p_dropout) at inference (network3).
    x (N, I)  IN;  w (I, O)  IN;  b (O,)  IN;  out (N, O)  OUT
    """
    z = x @ w
    if scale != 1.0:
        z *= scale
    z += b
    out[...] = _activate(z, act)


def dense_backward(x, w, out, dout, act, dw, db, dx):
    """Gradients of dense_forward with scale 1 (the training path).

    dz = dout * act'(out)     (dout is overwritten with dz)
    dw = x.T @ dz;  db = sum_n dz;  dx = dz @ w.T

    x (N, I)  IN;  w (I, O)  IN;  out (N, O)  IN;  dout (N, O)  IN/OUT
    dw (I, O)  OUT;  db (O,)  OUT;  dx (N, I)  OUT, or None
    """
    if act != LINEAR:
        dout *= _activation_grad(out, act)
    dw[...] = x.T @ dout
    db[...] = dout.sum(axis=0)
    if dx is not None:
        dx[...] = dout @ w.T


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def dropout_bits(seed, counter, n):
    """32 random bits per element, counter-based (splitmix64 of the index).

    z = seed + (counter*n + i + 1) * golden  (mod 2^64), then splitmix64's
    finaliser; the high 32 bits are returned.  The same formula runs in the
    compiled and CUDA engines, so all engines draw the same masks.
    """
    i = np.arange(n, dtype=np.uint64)
    base = np.array([counter], dtype=np.uint64) * np.uint64(n) + np.uint64(1)
    z = np.array([seed], dtype=np.uint64) + (base + i) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(32)).astype(np.uint32)


def dropout_forward(x, p_dropout, seed, counter, mask, out):
    """out = x * mask, mask[i] ~ Bernoulli(1 - p_dropout), drawn as
    dropout_bits(seed, counter, x.size) < keep_threshold(p_dropout).

    x (N, I)  IN;  mask (N, I) uint8  OUT;  out (N, I)  OUT
    """
    bits = dropout_bits(seed, counter, x.size).reshape(x.shape)
    mask[...] = bits < keep_threshold(p_dropout)
    out[...] = x * mask


def dropout_backward(dout, mask, dx):
    """dx = dout * mask.   dout, dx (N, I);  mask (N, I) uint8"""
    dx[...] = dout * mask


# ---------------------------------------------------------------------------
# softmax: inference probabilities; fused softmax + mean NLL + its gradient
# ---------------------------------------------------------------------------
def softmax_forward(logits, probs):
    """probs[n] = exp(logits[n] - max) / sum(exp(logits[n] - max))

    logits (N, K)  IN;  probs (N, K)  OUT
    """
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    probs[...] = z


def softmax_nll(logits, y, probs, dlogits):
    """Mean negative log-likelihood of labels y, and its gradient.

    returns cost = mean_n [log sum_k exp(logits[n,k]) - logits[n, y[n]]]
    probs = softmax(logits);  dlogits = (probs - onehot(y)) / N

    logits (N, K)  IN;  y (N,) int32  IN;  probs, dlogits (N, K)  OUT
    """
    N = logits.shape[0]
    zmax = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - zmax)
    s = e.sum(axis=1, keepdims=True)
    probs[...] = e / s
    rows = np.arange(N)
    nll = (np.log(s[:, 0]) + zmax[:, 0]) - logits[rows, y]
    dlogits[...] = probs
    dlogits[rows, y] -= 1
    dlogits /= N
    return float(np.mean(nll))


def sigmoid_bce(logits, targets, probs, dlogits):
    """Mean binary cross-entropy of sigmoid outputs, and its gradient.

    probs = sigmoid(logits);  returns cost = mean over all N*K elements of
    -(t log p + (1 - t) log(1 - p)), computed from the logits as
    softplus(z) - t z (no log of a rounded 0);  dlogits = (probs - t) / (N*K).

    logits (N, K)  IN;  targets (N, K)  IN (in [0, 1]);  probs, dlogits (N, K)  OUT
    """
    probs[...] = _activate(np.array(logits, copy=True), SIGMOID)
    z = logits
    cost = np.mean(np.logaddexp(0, z) - targets * z, dtype=np.float64)
    dlogits[...] = (probs - targets) / logits.dtype.type(logits.size)
    return float(cost)


def mse_loss(out, targets, dout):
    """Mean squared error over all N*K elements, and its gradient.

    returns cost = mean((out - t)^2);  dout = 2 (out - t) / (N*K)
    (the gradient w.r.t. the layer's output; dense_backward applies act').

    out (N, K)  IN;  targets (N, K)  IN;  dout (N, K)  OUT
    """
    d = out - targets
    cost = np.mean(np.square(d, dtype=np.float64))
    dout[...] = (out.dtype.type(2) * d) / out.dtype.type(out.size)
    return float(cost)


def softmax_argmax(probs, yout):
    """yout[n] = the first k with probs[n,k] maximal (network3's y_out).

    probs (N, K)  IN;  yout (N,) int32  OUT
    """
    yout[...] = np.argmax(probs, axis=1)


# ---------------------------------------------------------------------------
# update: plain SGD with network3's L2 term
# ---------------------------------------------------------------------------
def sgd_update(param, grad, eta, l2):
    """param -= eta * (grad + l2 * param)

    l2 = lmbda / num_training_batches for weights (the gradient of
    0.5*lmbda*||w||^2/num_training_batches), 0 for biases.
    param  IN/OUT;  grad  IN (same shape)
    """
    if l2 != 0.0:
        param -= eta * (grad + l2 * param)
    else:
        param -= eta * grad


# ---------------------------------------------------------------------------
# update: the optimizers of fastnet.optim, PyTorch's definitions (2.13,
# torch/optim/*.py, single-tensor path), element by element in the order
# PyTorch computes them.  ``step`` is the 1-based step number t; flags
# (nesterov, decoupled) are 0.0 or 1.0; state arrays start at zero.
# ---------------------------------------------------------------------------
def _dtype_scalar(param, v):
    return param.dtype.type(v)


def _normal_or_zero(state):
    """In place: +0 where |state| is below the dtype's smallest normal number
    (csrc/update.pxd's normal_or_zero: decaying optimizer state never goes
    subnormal, where x86 arithmetic is ~100x slower); NaN stays."""
    tiny = np.finfo(state.dtype).tiny
    state[(state < tiny) & (state > -tiny)] = 0
    return state


def momentum_update(param, grad, buf, lr, momentum, dampening, weight_decay,
                    nesterov, step):
    """torch.optim.SGD with momentum:
    g = grad + weight_decay * param;  buf = g at step 1, else
    buf = momentum * buf + (1 - dampening) * g;  g = g + momentum * buf
    (nesterov) or buf;  param -= lr * g.
    param, buf  IN/OUT;  grad  IN (same shape)"""
    f = lambda v: _dtype_scalar(param, v)  # noqa: E731
    g = grad + f(weight_decay) * param if weight_decay else grad.copy()
    if step == 1:
        buf[...] = g
    else:
        buf *= f(momentum)
        buf += f(1.0 - dampening) * g
    _normal_or_zero(buf)
    g = g + f(momentum) * buf if nesterov else buf
    param += f(-lr) * g


def rmsprop_update(param, grad, square_avg, lr, alpha, eps, weight_decay):
    """torch.optim.RMSprop: g = grad + weight_decay * param;
    v = alpha * v + (1 - alpha) * g^2;  param -= lr * g / (sqrt(v) + eps)
    (eps outside the root, no bias correction)."""
    f = lambda v: _dtype_scalar(param, v)  # noqa: E731
    g = grad + f(weight_decay) * param if weight_decay else grad
    square_avg *= f(alpha)
    square_avg += f(1.0 - alpha) * (g * g)
    _normal_or_zero(square_avg)
    param += f(-lr) * (g / (np.sqrt(square_avg) + f(eps)))


def adagrad_update(param, grad, sum_sq, lr, lr_decay, eps, weight_decay, step):
    """torch.optim.Adagrad: g = grad + weight_decay * param;
    clr = lr / (1 + (t - 1) * lr_decay);  s += g^2;
    param -= clr * g / (sqrt(s) + eps)."""
    f = lambda v: _dtype_scalar(param, v)  # noqa: E731
    g = grad + f(weight_decay) * param if weight_decay else grad
    clr = lr / (1.0 + (step - 1) * lr_decay)
    sum_sq += g * g
    _normal_or_zero(sum_sq)
    param += f(-clr) * (g / (np.sqrt(sum_sq) + f(eps)))


def adam_update(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps,
                weight_decay, decoupled, step):
    """torch.optim.Adam (decoupled 0: g = grad + weight_decay * param) and
    AdamW (decoupled 1: param *= 1 - lr * weight_decay first):
    m = m + (1 - beta1) * (g - m);  v = beta2 * v + (1 - beta2) * g^2;
    param -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)."""
    f = lambda v: _dtype_scalar(param, v)  # noqa: E731
    if decoupled:
        param *= f(1.0 - lr * weight_decay)
        g = grad
    else:
        g = grad + f(weight_decay) * param if weight_decay else grad
    exp_avg += f(1.0 - beta1) * (g - exp_avg)
    _normal_or_zero(exp_avg)
    exp_avg_sq *= f(beta2)
    exp_avg_sq += f(1.0 - beta2) * (g * g)
    _normal_or_zero(exp_avg_sq)
    step_size = lr / (1.0 - beta1 ** step)
    bc2_sqrt = math.sqrt(1.0 - beta2 ** step)
    denom = np.sqrt(exp_avg_sq) / f(bc2_sqrt) + f(eps)
    param += f(-step_size) * (exp_avg / denom)


def sum_of_squares(w):
    """sum(w**2) as a Python float (for the L2 term of the cost), each
    square and the sum in double (as the compiled engine sums)."""
    return float(np.sum(np.square(w, dtype=np.float64)))


# ---------------------------------------------------------------------------
# update: Keras 3's optimizers (3.15.1, keras/src/optimizers/*.py
# ``update_step``), element by element in the order Keras computes them, for
# fastnet.keras.optimizers.  Keras's optional weight_decay is decoupled and
# comes first, on every parameter: param -= param * weight_decay * lr.
# ``step`` is the 1-based step t (Keras's iterations + 1); flags are 0.0 or
# 1.0.
# ---------------------------------------------------------------------------
def _keras_weight_decay(param, learning_rate, weight_decay):
    if weight_decay:
        f = lambda v: _dtype_scalar(param, v)  # noqa: E731
        param -= param * f(weight_decay) * f(learning_rate)


def keras_sgd_update(param, grad, velocity, learning_rate, momentum, nesterov,
                     weight_decay):
    """keras.optimizers.SGD: with momentum, a velocity holding lr:
    m = momentum * m - lr * grad;  param += momentum * m - lr * grad
    (nesterov, with the new m) or param += m;  without: param -= lr * grad.
    param, velocity  IN/OUT;  grad  IN (same shape)"""
    f = lambda v: _dtype_scalar(param, v)  # noqa: E731
    _keras_weight_decay(param, learning_rate, weight_decay)
    lr = f(learning_rate)
    if momentum:
        velocity[...] = velocity * f(momentum) - grad * lr
        _normal_or_zero(velocity)
        if nesterov:
            param += velocity * f(momentum) - grad * lr
        else:
            param += velocity
    else:
        param -= grad * lr


def keras_rmsprop_update(param, grad, velocity, learning_rate, rho, epsilon,
                         weight_decay):
    """keras.optimizers.RMSprop: v = rho * v + (1 - rho) * grad^2;
    param -= lr * grad / sqrt(v + epsilon)  (epsilon inside the root, no
    bias correction)."""
    f = lambda v: _dtype_scalar(param, v)  # noqa: E731
    _keras_weight_decay(param, learning_rate, weight_decay)
    velocity[...] = f(rho) * velocity + f(1.0 - rho) * np.square(grad)
    _normal_or_zero(velocity)
    param -= (f(learning_rate) * grad) / np.sqrt(velocity + f(epsilon))


def keras_adagrad_update(param, grad, accumulator, learning_rate, epsilon,
                         weight_decay):
    """keras.optimizers.Adagrad: acc += grad^2 (acc starts at
    initial_accumulator_value);  param -= lr * grad / sqrt(acc + epsilon)."""
    f = lambda v: _dtype_scalar(param, v)  # noqa: E731
    _keras_weight_decay(param, learning_rate, weight_decay)
    accumulator += np.square(grad)
    _normal_or_zero(accumulator)
    param -= (f(learning_rate) * grad) / np.sqrt(accumulator + f(epsilon))


def keras_adam_update(param, grad, m, v, learning_rate, beta_1, beta_2, epsilon,
                      weight_decay, step):
    """keras.optimizers.Adam: alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t);
    m += (grad - m) * (1 - beta_1);  v += (grad^2 - v) * (1 - beta_2);
    param -= m * alpha / (sqrt(v) + epsilon)  (epsilon added to the
    uncorrected sqrt(v))."""
    f = lambda v: _dtype_scalar(param, v)  # noqa: E731
    _keras_weight_decay(param, learning_rate, weight_decay)
    alpha = learning_rate * math.sqrt(1.0 - beta_2 ** step) / (1.0 - beta_1 ** step)
    m += (grad - m) * f(1.0 - beta_1)
    v += (np.square(grad) - v) * f(1.0 - beta_2)
    _normal_or_zero(m)
    _normal_or_zero(v)
    param -= (m * f(alpha)) / (np.sqrt(v) + f(epsilon))


# ---------------------------------------------------------------------------
# augmentation: the transforms of fastnet/augment.py, on 28 x 28 images
# ---------------------------------------------------------------------------
def _aug_hash(a, b):
    """splitmix64's finaliser of a + (b + 1) * golden (mod 2^64), elementwise
    on uint64 arrays: the counter-based hash every augmentation draw uses."""
    z = a + (b + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def augment_uniforms(seed, k, counter, n_rows, n_draws):
    """The uniform numbers in [0, 1) (53 bits) transform ``k`` of a table
    draws for the rows of training step ``counter``: (n_rows, n_draws).

    op = hash(seed, k);  sample = hash(op, counter * n_rows + row);
    u[row, j] = (hash(sample, j) >> 11) * 2^-53.
    """
    u64 = np.uint64
    op = _aug_hash(np.array([seed], u64), np.array([k], u64))
    keys = np.array([counter], u64) * u64(n_rows) + np.arange(n_rows, dtype=u64)
    sample = _aug_hash(op, keys)
    bits = _aug_hash(sample[:, None], np.arange(n_draws, dtype=u64)[None, :])
    return (bits >> u64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _aug_bilinear(img, src_r, src_c):
    """img (N, 28, 28) float64 sampled at (src_r, src_c) (N, 28, 28):
    bilinear, zeros outside the image; an integral position gives its pixel
    as it is."""
    n, side = img.shape[0], img.shape[1]
    padded = np.zeros((n, side + 2, side + 2))
    padded[:, 1:-1, 1:-1] = img
    inside = (src_r > -1.0) & (src_r < side) & (src_c > -1.0) & (src_c < side)
    r = np.where(inside, src_r, 0.0)
    c = np.where(inside, src_c, 0.0)
    r0 = np.floor(r)
    c0 = np.floor(c)
    fy = r - r0
    fx = c - c0
    i = r0.astype(np.intp) + 1
    j = c0.astype(np.intp) + 1
    b = np.arange(n)[:, None, None]
    p00, p01 = padded[b, i, j], padded[b, i, j + 1]
    p10, p11 = padded[b, i + 1, j], padded[b, i + 1, j + 1]
    v = (1.0 - fy) * ((1.0 - fx) * p00 + fx * p01) + fy * ((1.0 - fx) * p10 + fx * p11)
    v = np.where((fy == 0.0) & (fx == 0.0), p00, v)
    return np.where(inside, v, 0.0)


def _aug_smooth(field, w):
    """The Gaussian smoothing of fields (N, 28, 28) along axis 1 then axis
    2, zeros beyond the image: out = w[0] a[i] + sum_j w[j] (a[i-j] + a[i+j])."""
    out = field
    for axis in (1, 2):
        a = np.moveaxis(out, axis, -1)
        side = a.shape[-1]
        pad = np.zeros(a.shape[:-1] + (side + 2 * side,))
        pad[..., side:2 * side] = a
        acc = w[0] * a
        for j in range(1, len(w)):
            acc = acc + w[j] * (pad[..., side - j:2 * side - j] + pad[..., side + j:2 * side + j])
        out = np.moveaxis(acc, -1, axis)
    return out


def augment(x, table, seed, counter, out):
    """out = the rows of x distorted by the transforms of ``table`` (see
    fastnet/augment.py), with the random numbers of training step
    ``counter`` of a network whose augment seed is ``seed``.

    x (N, 784)  IN;  table float64 (n, augment.TABLE_WIDTH)  IN;
    seed, counter integers in [0, 2^64);  out (N, 784)  OUT (not x)
    Each image is carried in float64 through the transforms in order and
    rounded to out's dtype at the end.
    """
    from .. import augment as aug
    table = aug.check_table(table, "augment")
    if x.ndim != 2 or x.shape[1] != aug.PIXELS or out.shape != x.shape:
        raise ValueError("augment: x and out must be (N, %d), got %s and %s"
                         % (aug.PIXELS, x.shape, out.shape))
    seed, counter = _u64_arg("augment", "seed", seed), _u64_arg("augment", "counter", counter)
    n, side = x.shape[0], aug.SIDE
    img = x.reshape(n, side, side).astype(np.float64)
    grid = np.arange(side, dtype=np.float64)
    rows = np.broadcast_to(grid[:, None], (side, side))
    cols = np.broadcast_to(grid[None, :], (side, side))
    for k, op in enumerate(table):
        kind = int(op[0])
        u = augment_uniforms(seed, k, counter, n, aug.DRAWS[kind])
        if kind == aug.SHIFT:
            from ..expand import shifted
            m = int(op[1])
            d = np.floor(u * (2 * m + 1)).astype(np.intp) - m
            new = np.empty_like(img)
            for i in range(n):
                new[i] = shifted(img[i].reshape(1, -1), int(d[i, 0]), int(d[i, 1]),
                                 side).reshape(side, side)
            img = new
        elif kind == aug.AFFINE:
            centre = (side - 1) / 2.0
            src_r = np.empty_like(img)
            src_c = np.empty_like(img)
            dr, dc = rows - centre, cols - centre
            for i in range(n):
                t = op[1] * (2.0 * u[i, 0] - 1.0)
                k_ = op[2] * (2.0 * u[i, 1] - 1.0)
                s = 1.0 + op[3] * (2.0 * u[i, 2] - 1.0)
                co, si = math.cos(t), math.sin(t)
                a00, a01 = (co - si * k_) / s, -si / s
                a10, a11 = (si + co * k_) / s, co / s
                src_r[i] = centre + (a00 * dr + a01 * dc)
                src_c[i] = centre + (a10 * dr + a11 * dc)
            img = _aug_bilinear(img, src_r, src_c)
        elif kind == aug.ELASTIC:
            w = op[aug.TAPS0:aug.TAPS0 + int(op[3])]
            noise = 2.0 * u - 1.0
            dy = op[1] * _aug_smooth(noise[:, :aug.PIXELS].reshape(n, side, side), w)
            dx = op[1] * _aug_smooth(noise[:, aug.PIXELS:].reshape(n, side, side), w)
            img = _aug_bilinear(img, rows + dy, cols + dx)
    out[...] = img.reshape(n, aug.PIXELS)


def _u64_arg(fn, name, v):
    import operator
    if isinstance(v, (bool, np.bool_)):
        raise ValueError("%s: %s must be an integer in [0, 2**64), got %r" % (fn, name, v))
    try:
        k = operator.index(v)
    except TypeError:
        raise ValueError("%s: %s must be an integer in [0, 2**64), got %r"
                         % (fn, name, v)) from None
    if not 0 <= k < 1 << 64:
        raise ValueError("%s: %s must be in [0, 2**64), got %d" % (fn, name, k))
    return k
