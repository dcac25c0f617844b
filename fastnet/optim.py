"""Optimizers: how a step turns gradients into new parameters.

An optimizer declares
  * its hyper-parameters (checked on construction, clear errors);
  * ``n_state``: how many state arrays it keeps per parameter (zero for
    plain SGD; momentum keeps one, Adam two), held flat beside the
    parameters by the Plan and saved in checkpoints;
  * ``ops(values, grads, state, decayed)``: its update of one run of a flat
    parameter array -- one per-element kernel per engine, in the reference
    engine's signature, with its hyper-parameters as ``Hyper`` tokens that
    ``hyper(eta, l2)`` fills in for each SGD call;
  * ``fusable``: the update is element by element, so an engine may apply
    it to one layer's slice right after that layer's gradient;
  * a ``Hyper("step")`` argument: the 1-based step number t of the update
    (the Network counts the optimizer's steps and saves them in checkpoints).

PyTorch's optimizers follow (``SGD``, ``RMSprop``, ``Adagrad``, ``Adam``,
``AdamW``), with PyTorch's definitions, defaults and keyword names; pass one
to ``net.SGD(..., optimizer=...)``.

``Network3SGD`` is network3's rule and the default of ``net.SGD``:
w -= eta * (grad + l2 * w) on the weights, b -= eta * grad on the biases,
with l2 = lmbda / num_training_batches of the current SGD call.
"""

from .plan import Hyper, Op


class Optimizer(object):
    """Base class: see the module's docstring."""

    name = None
    n_state = 0
    fusable = True

    def ops(self, values, grads, state, decayed):
        raise NotImplementedError

    def hyper(self, eta, l2):
        """The values of this optimizer's Hyper tokens for one SGD call."""
        raise NotImplementedError

    def describe(self):
        """Name and hyper-parameters, for checkpoints and messages."""
        return {"name": self.name}

    def __repr__(self):
        d = self.describe()
        args = ", ".join("%s=%r" % (k, v) for k, v in sorted(d.items()) if k != "name")
        return "%s(%s)" % (type(self).__name__, args)


    def state_init(self):
        """Initial value of each state array."""
        return [0.0] * self.n_state


class Network3SGD(Optimizer):
    """network3's mini-batch SGD with its L2 term: the learning rate is
    ``net.SGD``'s ``eta`` and the weight decay ``lmbda /
    num_training_batches`` on weights only (biases are not decayed)."""

    name = "network3_sgd"

    def ops(self, values, grads, state, decayed):
        return [Op("sgd_update", values, grads, Hyper("eta"),
                   Hyper("l2" if decayed else "zero"))]

    def hyper(self, eta, l2):
        return {"eta": eta, "l2": l2, "zero": 0.0}


# ---------------------------------------------------------------------------
# PyTorch's optimizers (torch.optim, 2.13: the same definitions, defaults and
# keyword names).  Their weight_decay applies to every parameter, biases
# included, as PyTorch's does; the kernels are reference.py's *_update.
# ---------------------------------------------------------------------------
def _number(value, what, where, low=None, high=None, low_open=False, high_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise ValueError("%s: %s must be a number, got %r" % (where, what, value))
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError("%s: %s must be a number, got %r" % (where, what, value))
    ok = v == v and abs(v) != float("inf")
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        rng = "%s%s, %s%s" % ("(" if low_open else "[", "-inf" if low is None else low,
                              "inf" if high is None else high, ")" if high_open else "]")
        raise ValueError("%s: %s must be a finite number in %s, got %r"
                         % (where, what, rng, value))
    return v


class _TorchOptimizer(Optimizer):
    """What PyTorch's optimizers share: ``lr``, the hyper-parameters as Hyper
    tokens named like their keywords, one kernel for every parameter."""

    kernel = None
    state_names = ()
    hyper_names = ()
    uses_step = False

    @property
    def n_state(self):
        return len(self.state_names)

    def ops(self, values, grads, state, decayed):
        args = [Hyper(n) for n in self.hyper_names]
        if self.uses_step:
            args.append(Hyper("step"))
        return [Op(self.kernel, values, grads, *state, *args)]

    def hyper(self, eta, l2):
        return {n: float(getattr(self, n)) for n in self.hyper_names}

    def state_init(self):
        """Initial value of each state array."""
        return [0.0] * self.n_state

    def describe(self):
        d = {"name": self.name}
        for k in self.keywords:
            v = getattr(self, k)
            d[k] = list(v) if isinstance(v, tuple) else v     # as JSON gives it back
        return d


class SGD(_TorchOptimizer):
    """torch.optim.SGD(lr=1e-3, momentum=0, dampening=0, weight_decay=0,
    nesterov=False):  g = grad + weight_decay * p;  with momentum,
    buf = g on the first step, then buf = momentum * buf + (1 - dampening) * g,
    and g = g + momentum * buf (nesterov) or buf;  p -= lr * g."""

    name = "SGD"
    keywords = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

    def __init__(self, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        w = "fastnet.optim.SGD"
        self.lr = _number(lr, "lr", w, 0.0, low_open=True)
        self.momentum = _number(momentum, "momentum", w, 0.0)
        self.dampening = _number(dampening, "dampening", w)
        self.weight_decay = _number(weight_decay, "weight_decay", w, 0.0)
        if not isinstance(nesterov, (bool, int)) or nesterov not in (0, 1):
            raise ValueError("%s: nesterov must be True or False, got %r" % (w, nesterov))
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("%s: Nesterov momentum requires a momentum > 0 and zero "
                             "dampening (as PyTorch)" % w)
        if self.momentum:
            self.kernel = "momentum_update"
            self.state_names = ("momentum_buffer",)
            self.hyper_names = ("lr", "momentum", "dampening", "weight_decay", "nesterov")
            self.uses_step = True
        else:
            # p - lr * (g + weight_decay * p): network3's element rule with
            # the decay on every parameter
            self.kernel = "sgd_update"
            self.hyper_names = ("lr", "weight_decay")


class RMSprop(_TorchOptimizer):
    """torch.optim.RMSprop(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0):
    v = alpha * v + (1 - alpha) * g^2;  p -= lr * g / (sqrt(v) + eps)  (eps
    outside the root, no bias correction; momentum and centered are not
    supported)."""

    name = "RMSprop"
    kernel = "rmsprop_update"
    state_names = ("square_avg",)
    hyper_names = ("lr", "alpha", "eps", "weight_decay")
    keywords = hyper_names

    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        w = "fastnet.optim.RMSprop"
        self.lr = _number(lr, "lr", w, 0.0, low_open=True)
        self.alpha = _number(alpha, "alpha", w, 0.0, 1.0)
        self.eps = _number(eps, "eps", w, 0.0)
        self.weight_decay = _number(weight_decay, "weight_decay", w, 0.0)
        if momentum or centered:
            raise NotImplementedError("%s: momentum and centered are not supported; "
                                      "use momentum=0, centered=False" % w)


class Adagrad(_TorchOptimizer):
    """torch.optim.Adagrad(lr=1e-2, lr_decay=0, weight_decay=0,
    initial_accumulator_value=0, eps=1e-10):  clr = lr / (1 + (t-1) * lr_decay);
    s += g^2;  p -= clr * g / (sqrt(s) + eps)."""

    name = "Adagrad"
    kernel = "adagrad_update"
    state_names = ("sum",)
    hyper_names = ("lr", "lr_decay", "eps", "weight_decay")
    keywords = hyper_names + ("initial_accumulator_value",)
    uses_step = True

    def __init__(self, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10):
        w = "fastnet.optim.Adagrad"
        self.lr = _number(lr, "lr", w, 0.0, low_open=True)
        self.lr_decay = _number(lr_decay, "lr_decay", w, 0.0)
        self.weight_decay = _number(weight_decay, "weight_decay", w, 0.0)
        self.initial_accumulator_value = _number(
            initial_accumulator_value, "initial_accumulator_value", w, 0.0)
        self.eps = _number(eps, "eps", w, 0.0)

    def state_init(self):
        return [self.initial_accumulator_value]


class Adam(_TorchOptimizer):
    """torch.optim.Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0):
    g = grad + weight_decay * p (coupled L2);  m = m + (1 - b1) (g - m);
    v = b2 v + (1 - b2) g^2;  p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""

    name = "Adam"
    kernel = "adam_update"
    state_names = ("exp_avg", "exp_avg_sq")
    hyper_names = ("lr", "beta1", "beta2", "eps", "weight_decay", "decoupled")
    keywords = ("lr", "betas", "eps", "weight_decay")
    uses_step = True
    decoupled = 0.0
    default_weight_decay = 0.0

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=None,
                 amsgrad=False):
        w = "fastnet.optim.%s" % self.name
        self.lr = _number(lr, "lr", w, 0.0, low_open=True)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ValueError("%s: betas must be a pair of numbers, got %r" % (w, betas))
        self.beta1 = _number(b1, "betas[0]", w, 0.0, 1.0, high_open=True)
        self.beta2 = _number(b2, "betas[1]", w, 0.0, 1.0, high_open=True)
        self.betas = (self.beta1, self.beta2)
        self.eps = _number(eps, "eps", w, 0.0)
        if weight_decay is None:
            weight_decay = self.default_weight_decay
        self.weight_decay = _number(weight_decay, "weight_decay", w, 0.0)
        if amsgrad:
            raise NotImplementedError("%s: amsgrad is not supported" % w)


class AdamW(Adam):
    """torch.optim.AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
    weight_decay=1e-2): p *= 1 - lr * weight_decay (decoupled, biases too),
    then Adam's update without the L2 term."""

    name = "AdamW"
    decoupled = 1.0
    default_weight_decay = 1e-2
