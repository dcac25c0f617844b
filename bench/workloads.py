"""The book's networks, their data, initial weights and FLOP counts.

One mathematics for every engine of the bench: each engine script builds its
network from ``layers(name, mbs)``, starts from ``init_params(...)`` and trains
on ``make_data(...)``.  Standard library and NumPy only (this module is also
imported by the PyTensor engine, which runs in a venv with numpy<1.24).

Layer specs are plain dicts:
  {"kind": "conv", "filter": (F, C, KH, KW), "image": (mbs, C, H, W),
   "pool": (ph, pw), "act": "relu" | "sigmoid" | ...}
  {"kind": "fc", "n_in": I, "n_out": O, "act": ..., "p_dropout": p}
  {"kind": "softmax", "n_in": I, "n_out": K, "p_dropout": p}

A network's optimizer is part of its spec (``optimizer(name)``):
  "network3_sgd"   network3's SGD (the default): w -= eta * (grad + l2 * w),
                   b -= eta * grad, l2 = lmbda / num_training_batches; with
                   lmbda = 0 it is plain SGD, p -= eta * grad on every
                   parameter (torch.optim.SGD, keras.optimizers.SGD alike)
  "keras_rmsprop"  Keras 3's RMSprop, learning rate eta:
                   v = rho * v + (1 - rho) * g^2;  p -= eta * g / sqrt(v + epsilon)
                   (epsilon INSIDE the root, no bias correction, v from 0, every
                   parameter; torch.optim.RMSprop puts eps outside the root,
                   so the torch and JAX engines write this update by hand)
and so is its initialisation (``init``): "network3" (``init_params``'s
docstring) or "glorot" (Keras's Dense defaults: glorot-uniform kernels,
zero biases).
"""

import numpy as np

# samples of one book epoch (MNIST's training set as network3 splits it)
EPOCH_SAMPLES = 50000

# network name -> (layer builder, eta, lmbda, mini-batch sizes benched,
#                  default training samples per repetition); the cuda_ keys
#                  are the same for ``bench/run.py --device cuda``
NETWORKS = {}


def _conv_front(mbs):
    return [
        {"kind": "conv", "filter": (20, 1, 5, 5), "image": (mbs, 1, 28, 28),
         "pool": (2, 2), "act": "relu"},
        {"kind": "conv", "filter": (40, 20, 5, 5), "image": (mbs, 20, 12, 12),
         "pool": (2, 2), "act": "relu"},
    ]


def _conv2_relu(mbs):
    return _conv_front(mbs) + [
        {"kind": "fc", "n_in": 40 * 4 * 4, "n_out": 100, "act": "relu", "p_dropout": 0.0},
        {"kind": "softmax", "n_in": 100, "n_out": 10, "p_dropout": 0.0},
    ]


def _dropout(mbs):
    return _conv_front(mbs) + [
        {"kind": "fc", "n_in": 40 * 4 * 4, "n_out": 1000, "act": "relu", "p_dropout": 0.5},
        {"kind": "fc", "n_in": 1000, "n_out": 1000, "act": "relu", "p_dropout": 0.5},
        {"kind": "softmax", "n_in": 1000, "n_out": 10, "p_dropout": 0.5},
    ]


def _fc(mbs):
    return [
        {"kind": "fc", "n_in": 784, "n_out": 100, "act": "sigmoid", "p_dropout": 0.0},
        {"kind": "softmax", "n_in": 100, "n_out": 10, "p_dropout": 0.0},
    ]


def _keras_mnist(mbs):
    # seed 003, Chollet's first Keras example: Dense(512, relu) -> Dense(10, softmax)
    return [
        {"kind": "fc", "n_in": 784, "n_out": 512, "act": "relu", "p_dropout": 0.0},
        {"kind": "softmax", "n_in": 512, "n_out": 10, "p_dropout": 0.0},
    ]


def _mlp_16(mbs):
    # seed 001 (examples/seed001_mlp.py): 784-16-16-10 sigmoid, softmax + NLL
    return [
        {"kind": "fc", "n_in": 784, "n_out": 16, "act": "sigmoid", "p_dropout": 0.0},
        {"kind": "fc", "n_in": 16, "n_out": 16, "act": "sigmoid", "p_dropout": 0.0},
        {"kind": "softmax", "n_in": 16, "n_out": 10, "p_dropout": 0.0},
    ]


NETWORKS["conv2_relu"] = dict(build=_conv2_relu, eta=0.03, lmbda=0.1,
                              mbs=(10, 128), samples=2560,
                              cuda_mbs=(10, 128), cuda_samples=12800,
                              title="conv 20-40 ReLU, FC 100, softmax")
NETWORKS["dropout"] = dict(build=_dropout, eta=0.03, lmbda=0.1,
                           mbs=(10,), samples=1280,
                           cuda_mbs=(10, 128), cuda_samples=12800,
                           title="conv 20-40 ReLU, FC 1000-1000 dropout 0.5")
NETWORKS["fc"] = dict(build=_fc, eta=0.1, lmbda=0.0,
                      mbs=(10, 128), samples=12800,
                      cuda_mbs=(10, 128), cuda_samples=12800,
                      title="FC 784-100 sigmoid, softmax")
# Keras's RMSprop defaults: learning_rate (eta) 1e-3, rho 0.9, epsilon 1e-7;
# the loss Keras's example compiles with (one-hot targets)
NETWORKS["keras_mnist"] = dict(build=_keras_mnist, eta=1e-3, lmbda=0.0,
                               mbs=(128,), samples=12800,
                               cuda_mbs=(128,), cuda_samples=12800,
                               optimizer={"name": "keras_rmsprop", "rho": 0.9,
                                          "epsilon": 1e-7},
                               init="glorot", keras_loss="categorical_crossentropy",
                               title="Dense 512 ReLU, softmax; Keras RMSprop (seed 003)")
# examples/seed001_mlp.py: mini-batch 10, eta 0.5, no L2 (plain SGD)
NETWORKS["mlp_16"] = dict(build=_mlp_16, eta=0.5, lmbda=0.0,
                          mbs=(10,), samples=12800,
                          cuda_mbs=(10,), cuda_samples=12800,
                          title="FC 784-16-16 sigmoid, softmax; SGD (seed 001)")

OPTIMIZERS = ("network3_sgd", "keras_rmsprop")


def cases(names=None, mbs_list=None, device="cpu"):
    """[(network, mbs)] in the bench's order, filtered by names / mbs.

    Each network's own sizes for ``device`` (``mbs`` or ``cuda_mbs``), those
    in ``mbs_list`` only when it is given."""
    out = []
    key = "cuda_mbs" if device == "cuda" else "mbs"
    for name, spec in NETWORKS.items():
        if names and name not in names:
            continue
        for mbs in spec[key]:
            if mbs_list and mbs not in mbs_list:
                continue
            out.append((name, mbs))
    return out


def layers(name, mbs):
    """The layer specs of network ``name`` at mini-batch size ``mbs``."""
    return NETWORKS[name]["build"](mbs)


def default_samples(name, device="cpu"):
    """Training samples per repetition epoch of network ``name`` on ``device``."""
    spec = NETWORKS[name]
    return spec["cuda_samples"] if device == "cuda" else spec["samples"]


def hyper(name):
    """(eta, lmbda) of network ``name``."""
    spec = NETWORKS[name]
    return spec["eta"], spec["lmbda"]


def optimizer(name):
    """The optimizer of network ``name``: a dict with "name" (one of
    OPTIMIZERS), "lr" (= eta) and its own hyper-parameters ("lmbda" for
    network3_sgd; "rho", "epsilon" for keras_rmsprop)."""
    spec = NETWORKS[name]
    opt = dict(spec.get("optimizer") or {"name": "network3_sgd"})
    opt["lr"] = spec["eta"]
    if opt["name"] == "network3_sgd":
        opt["lmbda"] = spec["lmbda"]
    elif spec["lmbda"]:
        raise ValueError("network %r: lmbda is network3's L2 term, not %s's" % (name, opt["name"]))
    return opt


def keras_loss(name):
    """The loss a Keras-style front end compiles network ``name`` with
    (softmax + NLL on integer labels unless the spec says otherwise)."""
    return NETWORKS[name].get("keras_loss", "sparse_categorical_crossentropy")


def dense_only(name):
    """True when the network is a stack of dense layers without dropout
    (what a Keras Sequential of Dense layers expresses)."""
    return all(l["kind"] in ("fc", "softmax") and not l.get("p_dropout")
               for l in layers(name, 1))


def has_dropout(name):
    return any(l.get("p_dropout", 0.0) > 0 for l in layers(name, 1))


def round_samples(n, mbs):
    """n rounded down to whole mini-batches (network3 drops a partial one)."""
    return max(1, int(n) // mbs) * mbs


def make_data(n, seed=1234):
    """MNIST-shaped random data: x uniform float32 (n, 784), y int32 0..9."""
    rng = np.random.RandomState(seed)
    x = rng.uniform(0.0, 1.0, size=(n, 784)).astype(np.float32)
    y = rng.randint(0, 10, size=n).astype(np.int32)
    return x, y


def init_params(name, seed=0):
    """The network's initialisation, layer by layer, w then b (float32).

    "glorot" (the network's ``init``): w ~ U(-r, r), r = sqrt(6 / (n_in + n_out)),
    b = 0 for every layer (Keras's Dense defaults).  Otherwise network3's:

    conv: w ~ N(0, sqrt(1/n_out)), n_out = F*KH*KW // (ph*pw); b ~ N(0, 1)
    fc:   w ~ N(0, sqrt(1/n_out)) of shape (n_in, n_out);    b ~ N(0, 1)
    softmax: w = 0, b = 0.
    Conv weights are for a true convolution (Theano's conv2d): engines that
    cross-correlate use ``flip(w)``, which gives exactly the same function.
    Returns [(w, b), ...], one pair per layer.
    """
    rng = np.random.RandomState(seed)
    out = []
    glorot = NETWORKS[name].get("init", "network3") == "glorot"
    for spec in layers(name, 1):
        if glorot:
            if spec["kind"] == "conv":
                raise ValueError("network %r: glorot init is for dense layers" % name)
            r = np.sqrt(6.0 / (spec["n_in"] + spec["n_out"]))
            w = rng.uniform(-r, r, size=(spec["n_in"], spec["n_out"]))
            b = np.zeros((spec["n_out"],))
        elif spec["kind"] == "conv":
            F, C, KH, KW = spec["filter"]
            ph, pw = spec["pool"]
            n_out = (F * KH * KW) // (ph * pw)
            w = rng.normal(0.0, np.sqrt(1.0 / n_out), size=spec["filter"])
            b = rng.normal(0.0, 1.0, size=(F,))
        elif spec["kind"] == "fc":
            w = rng.normal(0.0, np.sqrt(1.0 / spec["n_out"]),
                           size=(spec["n_in"], spec["n_out"]))
            b = rng.normal(0.0, 1.0, size=(spec["n_out"],))
        else:
            w = np.zeros((spec["n_in"], spec["n_out"]))
            b = np.zeros((spec["n_out"],))
        out.append((w.astype(np.float32), b.astype(np.float32)))
    return out


def flip(w):
    """A conv kernel for cross-correlation from one for true convolution."""
    return np.ascontiguousarray(w[:, :, ::-1, ::-1])


def conv_out_shape(spec):
    """(F, CH, CW, PH, PW) of a conv spec."""
    F, C, KH, KW = spec["filter"]
    _, _, H, W = spec["image"]
    CH, CW = H - KH + 1, W - KW + 1
    ph, pw = spec["pool"]
    return F, CH, CW, CH // ph, CW // pw


def flops_per_sample(name):
    """FLOPs of one training step per sample, counted analytically.

    Only the multiply-adds (2 FLOPs each) of the convolutions and the dense
    products are counted; pooling, activations, softmax, dropout and the SGD
    update are O(activations/params) and left out.
      conv forward   2 * F*C*KH*KW * CH*CW
      conv backward  the same for dW, and again for dX unless it is the
                     first layer (the input needs no gradient)
      dense forward  2 * I*O;  backward 2*I*O for dW, 2*I*O for dX unless
                     it is the first layer
    """
    total = 0
    for i, spec in enumerate(layers(name, 1)):
        first = i == 0
        if spec["kind"] == "conv":
            F, C, KH, KW = spec["filter"]
            _, CH, CW, _, _ = conv_out_shape(spec)
            macs = F * C * KH * KW * CH * CW
        else:
            macs = spec["n_in"] * spec["n_out"]
        passes = 2 if first else 3          # fwd, dW (, dX)
        total += 2 * macs * passes
    return total


def l2_per_step(name, n_train, mbs):
    """network3's L2 coefficient per step: lmbda / num_training_batches."""
    _, lmbda = hyper(name)
    return lmbda / (n_train // mbs)
