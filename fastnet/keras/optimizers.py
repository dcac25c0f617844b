"""Keras 3's optimizers on fastnet's engines: ``SGD``, ``RMSprop``,
``Adagrad``, ``Adam`` with Keras 3.15's definitions, defaults and argument
names (``learning_rate``, ``momentum``, ``nesterov``, ``rho``, ``epsilon``,
``initial_accumulator_value``, ``beta_1``, ``beta_2``, ``weight_decay``).

They differ from PyTorch's (``fastnet.optim``): Keras's SGD keeps a velocity
that already holds the learning rate; RMSprop and Adagrad put epsilon inside
the square root; Adagrad's accumulator starts at 0.1; Adam adds epsilon to the
uncorrected sqrt(v); the default learning rates, rho and epsilon differ; and
``weight_decay`` is decoupled (p -= p * weight_decay * lr, before the update,
on every parameter).  The element formulas are fastnet/engines/reference.py's
``keras_*_update``.

Each is a ``fastnet.optim.Optimizer``, so ``net.SGD(..., optimizer=...)``
takes one as well as ``Sequential.compile``.
"""

from ..optim import _TorchOptimizer, _number

__all__ = ["SGD", "RMSprop", "Adagrad", "Adam", "get"]

# Keras's optimizer arguments fastnet does not implement, with their defaults:
# accepted at their default, refused otherwise (never silently ignored)
_UNSUPPORTED = {"clipnorm": None, "clipvalue": None, "global_clipnorm": None,
                "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                "loss_scale_factor": None, "gradient_accumulation_steps": None}


class _KerasOptimizer(_TorchOptimizer):
    """What the Keras optimizers share: ``learning_rate``, ``weight_decay``
    (None = 0), ``name``, and a refusal of the arguments fastnet lacks.
    The kernel machinery (Hyper tokens named like the attributes, one
    kernel for every parameter) is fastnet.optim's."""

    def _common(self, learning_rate, weight_decay, name, unsupported):
        where = "fastnet.keras.optimizers.%s" % type(self).__name__
        if callable(learning_rate) or hasattr(learning_rate, "get_config"):
            raise NotImplementedError("%s: learning-rate schedules are not supported; "
                                      "pass a number" % where)
        self.learning_rate = _number(learning_rate, "learning_rate", where, 0.0,
                                     low_open=True)
        self.weight_decay = 0.0 if weight_decay is None else _number(
            weight_decay, "weight_decay", where, 0.0)
        self.name = type(self).__name__ if name is None else str(name)
        for key, value in unsupported.items():
            if key not in _UNSUPPORTED:
                raise ValueError("%s: unknown argument %r" % (where, key))
            if value != _UNSUPPORTED[key]:
                raise NotImplementedError("%s: %s=%r is not supported by fastnet (only "
                                          "its default %r)" % (where, key, value,
                                                               _UNSUPPORTED[key]))
        return where

    def get_config(self):
        """The hyper-parameters, named as Keras's ``get_config`` names them."""
        d = self.describe()
        d["name"] = self.name
        return d

    def describe(self):
        d = {"name": "keras." + type(self).__name__}
        for k in self.keywords:
            d[k] = getattr(self, k)
        return d


class SGD(_KerasOptimizer):
    """keras.optimizers.SGD(learning_rate=0.01, momentum=0.0, nesterov=False,
    weight_decay=None): with momentum a velocity m = momentum * m - lr * g,
    p += momentum * m - lr * g (nesterov) or p += m; without, p -= lr * g."""

    keywords = ("learning_rate", "momentum", "nesterov", "weight_decay")

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False,
                 weight_decay=None, name=None, **kwargs):
        w = self._common(learning_rate, weight_decay, name, kwargs)
        self.momentum = _number(momentum, "momentum", w, 0.0, 1.0)
        if not isinstance(nesterov, (bool, int)) or nesterov not in (0, 1):
            raise ValueError("%s: nesterov must be True or False, got %r" % (w, nesterov))
        self.nesterov = bool(nesterov)
        if self.momentum == 0 and self.weight_decay == 0:
            # p - lr * g: network3's element rule without its L2 term
            self.kernel = "sgd_update"
            self.hyper_names = ("learning_rate", "weight_decay")
        else:
            self.kernel = "keras_sgd_update"
            self.state_names = ("momentum",)
            self.hyper_names = ("learning_rate", "momentum", "nesterov", "weight_decay")


class RMSprop(_KerasOptimizer):
    """keras.optimizers.RMSprop(learning_rate=0.001, rho=0.9, epsilon=1e-7,
    weight_decay=None): v = rho * v + (1 - rho) * g^2;
    p -= lr * g / sqrt(v + epsilon).  (Keras's momentum and centered
    variants are not supported.)"""

    kernel = "keras_rmsprop_update"
    state_names = ("velocity",)
    hyper_names = ("learning_rate", "rho", "epsilon", "weight_decay")
    keywords = hyper_names

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, weight_decay=None, name=None, **kwargs):
        w = self._common(learning_rate, weight_decay, name, kwargs)
        self.rho = _number(rho, "rho", w, 0.0, 1.0)
        self.epsilon = _number(epsilon, "epsilon", w, 0.0)
        if momentum or centered:
            raise NotImplementedError("%s: momentum=%r, centered=%r are not supported; "
                                      "use momentum=0.0, centered=False" % (w, momentum, centered))


class Adagrad(_KerasOptimizer):
    """keras.optimizers.Adagrad(learning_rate=0.001, initial_accumulator_value=0.1,
    epsilon=1e-7, weight_decay=None): acc += g^2 (from 0.1);
    p -= lr * g / sqrt(acc + epsilon)."""

    kernel = "keras_adagrad_update"
    state_names = ("accumulator",)
    hyper_names = ("learning_rate", "epsilon", "weight_decay")
    keywords = ("learning_rate", "initial_accumulator_value", "epsilon", "weight_decay")

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 weight_decay=None, name=None, **kwargs):
        w = self._common(learning_rate, weight_decay, name, kwargs)
        self.initial_accumulator_value = _number(
            initial_accumulator_value, "initial_accumulator_value", w, 0.0)
        self.epsilon = _number(epsilon, "epsilon", w, 0.0)

    def state_init(self):
        return [self.initial_accumulator_value]


class Adam(_KerasOptimizer):
    """keras.optimizers.Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999,
    epsilon=1e-7, weight_decay=None): alpha = lr * sqrt(1 - beta_2^t) /
    (1 - beta_1^t);  m += (g - m)(1 - beta_1);  v += (g^2 - v)(1 - beta_2);
    p -= m * alpha / (sqrt(v) + epsilon).  (amsgrad is not supported.)"""

    kernel = "keras_adam_update"
    state_names = ("momentum", "velocity")
    hyper_names = ("learning_rate", "beta_1", "beta_2", "epsilon", "weight_decay")
    keywords = hyper_names
    uses_step = True

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, weight_decay=None, name=None, **kwargs):
        w = self._common(learning_rate, weight_decay, name, kwargs)
        self.beta_1 = _number(beta_1, "beta_1", w, 0.0, 1.0, high_open=True)
        self.beta_2 = _number(beta_2, "beta_2", w, 0.0, 1.0, high_open=True)
        self.epsilon = _number(epsilon, "epsilon", w, 0.0)
        if amsgrad:
            raise NotImplementedError("%s: amsgrad=True is not supported" % w)


#: compile(optimizer='name'): Keras's names, each with Keras's defaults
NAMES = {"sgd": SGD, "rmsprop": RMSprop, "adagrad": Adagrad, "adam": Adam}


def get(identifier):
    """The optimizer for ``compile(optimizer=...)``: one of Keras's names
    ('sgd', 'rmsprop', 'adagrad', 'adam': a new one with Keras's defaults),
    a fastnet.keras optimizer, or a fastnet.optim optimizer (PyTorch's
    definitions)."""
    from ..optim import Optimizer
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in NAMES:
            return NAMES[key]()
        raise ValueError("unknown optimizer %r; fastnet.keras supports %s, or an optimizer "
                         "object from fastnet.keras.optimizers or fastnet.optim"
                         % (identifier, ", ".join(repr(k) for k in NAMES)))
    raise ValueError("optimizer must be a name (%s) or an optimizer object, got %r"
                     % (", ".join(repr(k) for k in NAMES), identifier))
