"""keras.models.Sequential on fastnet's engines.

``compile`` turns the stack of Dense (and Dropout) layers into a
``fastnet.Network``: hidden Dense layers become FullyConnectedLayers, the last
one a SoftmaxLayer (categorical / sparse categorical cross-entropy, softmax
activation) or a DenseOutputLayer (binary cross-entropy with sigmoid, or mean
squared error).  Training runs ``Network.train_batch`` one batch at a time as
Keras's fit does: the rows shuffled each epoch (seeded by
``fastnet.keras.utils.set_random_seed``), batches of ``batch_size`` with the
last partial batch included, the epoch's loss and accuracy the mean over its
samples at the weights of each step (Keras 3's running Mean weighted by batch
size), validation at the end of the epoch.

Known differences from Keras: cross-entropy is not clipped to
[1e-7, 1 - 1e-7] (Keras clips probabilities; fastnet's losses are computed
from the logits, so a saturated output costs its true value and keeps its
gradient); Dropout is network3's (see fastnet.keras.layers).
"""

import math
import sys
import time
import warnings

import numpy as np

from .. import activations as _activations
from .. import config as _config
from . import losses as _losses
from . import optimizers as _optimizers
from .callbacks import History
from .layers import Dense, Dropout, InputLayer, _auto_name, _check_kwargs
from . import utils

__all__ = ["Sequential"]

_COMPILE_DEFAULTS = {"loss_weights": None, "weighted_metrics": None, "run_eagerly": False,
                     "steps_per_execution": 1, "jit_compile": "auto",
                     "auto_scale_loss": True}
_FIT_DEFAULTS = {"callbacks": None, "class_weight": None, "sample_weight": None,
                 "initial_epoch": 0, "steps_per_epoch": None, "validation_steps": None,
                 "validation_batch_size": None, "validation_freq": 1}
_EVAL_DEFAULTS = {"sample_weight": None, "steps": None, "callbacks": None}
_PREDICT_DEFAULTS = {"steps": None, "callbacks": None}


def _verbosity(verbose, where):
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError("%s: verbose must be 'auto', 0, 1 or 2, got %r" % (where, verbose))
    return int(verbose)


def _batch_size(batch_size, where):
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError("%s: batch_size must be a positive integer, got %r"
                         % (where, batch_size))
    return int(batch_size)


class _Progress(object):
    """Keras 3's progress line: ``k/n ━━━━ 3s 5ms/step - accuracy: 0.9 - loss: 0.3``."""

    WIDTH = 20

    def __init__(self, total, verbose):
        self.total, self.verbose = total, verbose
        self.t0 = time.perf_counter()
        self.last_draw = 0.0
        self.live = verbose == 1 and getattr(sys.stdout, "isatty", lambda: False)()

    @staticmethod
    def _logs(logs):
        return "".join(" - %s: %.4f" % (k, v) for k, v in logs.items())

    def _timing(self, done):
        dt = time.perf_counter() - self.t0
        per = dt / max(done, 1)
        per_text = "%dms/step" % round(per * 1e3) if per >= 1e-3 else "%dus/step" % round(per * 1e6)
        return "%ds" % round(dt), per_text

    def update(self, done, logs):
        if not self.live or (done < self.total and time.perf_counter() - self.last_draw < 0.1):
            return
        self.last_draw = time.perf_counter()
        filled = self.WIDTH * done // self.total
        bar = "━" * filled + " " * (self.WIDTH - filled)
        total_s, per = self._timing(done)
        sys.stdout.write("\r%d/%d %s %s %s%s" % (done, self.total, bar, total_s, per,
                                                  self._logs(logs)))
        sys.stdout.flush()

    def finish(self, logs):
        if self.verbose == 0:
            return
        total_s, per = self._timing(self.total)
        if self.verbose == 2:
            line = "%d/%d - %s - %s%s" % (self.total, self.total, total_s, per, self._logs(logs))
        else:
            line = "%d/%d %s %s %s%s" % (self.total, self.total, "━" * self.WIDTH, total_s,
                                          per, self._logs(logs))
        sys.stdout.write(("\r" if self.live else "") + line + "\n")
        sys.stdout.flush()


class Sequential(object):
    """``Sequential(layers=None, name=None)``; ``add``, ``compile``, ``fit``,
    ``evaluate``, ``predict``, ``train_on_batch``, ``get_weights`` /
    ``set_weights``, ``summary``, ``count_params``.  See the module's
    docstring."""

    def __init__(self, layers=None, name=None, trainable=True):
        if not trainable:
            raise NotImplementedError("Sequential: trainable=False is not supported")
        self.name = _auto_name("sequential") if name is None else str(name)
        self._layers = []
        self._input_width = None
        self._net = None
        self._compiled = None
        for layer in layers or ():
            self.add(layer)

    # ------------------------------------------------------------------
    # building
    # ------------------------------------------------------------------
    @property
    def layers(self):
        return list(self._layers)

    @property
    def built(self):
        denses = self._denses()
        return bool(denses) and all(d.built for d in denses)

    def _denses(self):
        return [l for l in self._layers if isinstance(l, Dense)]

    def add(self, layer):
        """Append a Dense or Dropout layer (or an Input first); a first Dense
        with ``input_shape`` builds the model at once, as Keras does."""
        if self._net is not None:
            raise NotImplementedError("Sequential.add: the model is already compiled; "
                                      "add every layer before compile")
        if isinstance(layer, InputLayer):
            if self._layers or self._input_width is not None:
                raise ValueError("Sequential.add: an Input must come first")
            self._input_width = layer.width
            return
        if not isinstance(layer, (Dense, Dropout)):
            raise NotImplementedError(
                "Sequential.add: layer %r is not supported; fastnet.keras has Dense, "
                "Dropout and Input" % (layer,))
        if any(layer is l for l in self._layers):
            raise ValueError("Sequential.add: layer %r is already in the model" % layer.name)
        if isinstance(layer, Dense):
            previous = self._denses()
            if not previous and layer.input_width is not None:
                if self._input_width is not None and self._input_width != layer.input_width:
                    raise ValueError("Sequential.add: Dense input_shape (%d,) disagrees with "
                                     "the Input's (%d,)" % (layer.input_width,
                                                           self._input_width))
                self._input_width = layer.input_width
            elif previous and layer.input_width is not None \
                    and layer.input_width != previous[-1].units:
                raise ValueError("Sequential.add: Dense %r expects %d inputs but the layer "
                                 "before gives %d" % (layer.name, layer.input_width,
                                                      previous[-1].units))
        self._layers.append(layer)
        if self._input_width is not None:
            self._build(self._input_width)

    def _build(self, n_in):
        """Draw the weights of every unbuilt Dense layer for ``n_in`` inputs."""
        width = n_in
        for d in self._denses():
            if not d.built:
                d.build(width, np.dtype(_config.get_floatx()))
            elif d.input_width != width:
                raise ValueError("Dense %r was built for %d inputs but gets %d"
                                 % (d.name, d.input_width, width))
            width = d.units
        self._input_width = n_in

    def build(self, input_shape=None):
        """Build for inputs of ``input_shape`` = (batch, n_features)."""
        if input_shape is None or len(tuple(input_shape)) != 2:
            raise ValueError("Sequential.build: give input_shape=(None, n_features), got %r"
                             % (input_shape,))
        self._build(int(tuple(input_shape)[1]))

    def _ensure_built(self, x, where):
        if not self._denses():
            raise ValueError("%s: the model has no Dense layer" % where)
        if not self.built:
            if x is None:
                raise ValueError("%s: the model is not built yet; give the first Dense "
                                 "input_shape=(n,) or call fit first" % where)
            self._build(x.shape[1])

    # ------------------------------------------------------------------
    # compile: the fastnet network
    # ------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, engine=None,
                fused=None, **kwargs):
        """Keras's compile; ``optimizer``: 'rmsprop', 'sgd', 'adam', 'adagrad'
        (Keras's defaults), a fastnet.keras.optimizers object or a fastnet.optim
        one (PyTorch's definitions); ``loss``: 'categorical_crossentropy',
        'sparse_categorical_crossentropy', 'binary_crossentropy' or 'mse';
        ``metrics``: None or ['accuracy'].  New keywords: ``engine``
        ('reference', 'cpu', 'cuda'; default: fastnet's) and ``fused``
        (fastnet.Network's)."""
        _check_kwargs("compile", kwargs, _COMPILE_DEFAULTS)
        opt = _optimizers.get(optimizer)
        loss_name = _losses.resolve(loss)
        metric_names = []
        for m in metrics or ():
            if not isinstance(m, str) or m.lower() not in ("accuracy", "acc"):
                raise NotImplementedError("compile: metric %r is not supported; "
                                          "fastnet.keras has 'accuracy'" % (m,))
            metric_names.append(m)
        if len(metric_names) > 1:
            raise NotImplementedError("compile: give 'accuracy' once, got %r" % (metrics,))
        self._check_output(loss_name, metric_names)
        if self._net is not None:
            # recompiling keeps the weights (in the Dense layers) and resets the optimizer
            weights = self.get_weights()
            for d in self._denses():
                d._fastnet = None
                d._kernel, d._bias = weights[0], weights[1]
                weights = weights[2:]
            self._net = None
        self._compiled = {"optimizer": opt, "loss": loss_name, "metrics": metric_names,
                          "engine": engine, "fused": fused}
        self.optimizer = opt
        self.loss = loss
        if self.built:
            self._make_network(32)

    def _check_output(self, loss, metrics):
        denses = self._denses()
        if not denses:
            raise ValueError("compile: the model has no Dense layer")
        if isinstance(self._layers[-1], Dropout):
            raise NotImplementedError("compile: a Dropout after the last Dense layer is not "
                                      "supported")
        for d in denses[:-1]:
            if d.activation == "softmax":
                raise NotImplementedError("compile: softmax is supported on the last Dense "
                                          "layer only (%r is hidden)" % d.name)
        last = denses[-1]
        if loss in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
            if last.activation != "softmax":
                raise NotImplementedError(
                    "compile: loss %r needs the last Dense layer to have activation='softmax' "
                    "(it has %r)" % (loss, last.activation))
        elif loss == "binary_crossentropy":
            if last.activation != "sigmoid":
                raise NotImplementedError(
                    "compile: binary_crossentropy needs the last Dense layer to have "
                    "activation='sigmoid' (it has %r)" % last.activation)
            if metrics and last.units > 1:
                raise NotImplementedError(
                    "compile: 'accuracy' with binary_crossentropy on %d outputs (Keras's "
                    "categorical accuracy there) is not supported" % last.units)
        elif last.activation == "softmax":
            raise NotImplementedError("compile: loss 'mse' on a softmax output is not supported")

    def _fastnet_layers(self):
        """The fastnet layers of the stack, with each Dense's dropout rate."""
        from ..layers import DenseOutputLayer, FullyConnectedLayer, SoftmaxLayer
        loss = self._compiled["loss"]
        out, rate = [], 0.0
        denses = self._denses()
        for layer in self._layers:
            if isinstance(layer, Dropout):
                if rate:
                    raise NotImplementedError("compile: two Dropout layers in a row are not "
                                              "supported")
                rate = layer.rate
                continue
            n_in, n = layer.input_width, layer.units
            if layer is not denses[-1]:
                f = FullyConnectedLayer(n_in, n, _layers_activation(layer), p_dropout=rate)
            elif loss in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
                f = SoftmaxLayer(n_in, n, p_dropout=rate)
            else:
                f = DenseOutputLayer(n_in, n, _layers_activation(layer), loss=loss,
                                     p_dropout=rate)
            if rate:
                warnings.warn(
                    "fastnet.keras: Dropout(%g) before Dense %r is network3's dropout (no "
                    "1/(1 - rate) scaling while training): outputs are Keras's, but that "
                    "layer's kernel trains on another scale than in Keras (see "
                    "fastnet.keras.layers)" % (rate, layer.name), UserWarning, stacklevel=4)
            out.append((layer, f, 1.0 - rate))
            rate = 0.0
        return out

    def _make_network(self, mini_batch_size):
        """Build the fastnet network (in the model's dtype, without touching
        NumPy's global generator), the Dense layers' weights moved into it."""
        from ..network import Network
        dtype = self._denses()[0].dtype
        old_floatx, old_state = _config.get_floatx(), np.random.get_state()
        try:
            _config.set_floatx(dtype.name)
            triples = self._fastnet_layers()
        finally:
            _config.set_floatx(old_floatx)
            np.random.set_state(old_state)
        for dense, f, scale in triples:
            dense._bind(f, scale)
        self._net = Network([f for _, f, _ in triples], mini_batch_size,
                            engine=self._compiled["engine"], fused=self._compiled["fused"])

    def _network(self, rows, where):
        """The network, able to train ``rows`` rows in one step (a network
        with a smaller mini-batch is rebuilt bigger, optimizer state kept)."""
        if self._compiled is None:
            raise RuntimeError("%s: you must compile the model before training or "
                               "evaluating it (model.compile(...))" % where)
        if self._net is None:
            self._make_network(max(rows, 32))
        elif rows > self._net.mini_batch_size:
            self._grow_network(rows)
        return self._net

    def _grow_network(self, rows):
        from ..network import Network
        old = self._net
        plan = old._plan
        state = plan.state_to_host() if plan is not None and plan.optimizer is \
            self._compiled["optimizer"] else None
        step = plan.opt_step if state is not None else 0
        old._params_to_host()
        net = Network(old.layers, rows, engine=self._compiled["engine"],
                      fused=self._compiled["fused"])
        net.step_count = old.step_count
        if state is not None:
            new_plan = net._ensure_plan(self._compiled["optimizer"])
            new_plan.state_from_host(state, step)
        self._net = net

    # ------------------------------------------------------------------
    # data
    # ------------------------------------------------------------------
    def _x(self, x, where):
        if x is None:
            raise ValueError("%s: x is None" % where)
        a = np.asarray(x)
        if a.dtype.kind not in "fiub":
            raise ValueError("%s: x must be numeric, got dtype %s" % (where, a.dtype))
        if a.ndim != 2:
            raise NotImplementedError(
                "%s: x has shape %s; fastnet.keras takes flat rows (n, n_features) -- "
                "reshape it first" % (where, a.shape))
        self._ensure_built(a, where)
        if a.shape[1] != self._input_width:
            raise ValueError("%s: x has %d features per row; the model takes %d"
                             % (where, a.shape[1], self._input_width))
        return np.ascontiguousarray(a, dtype=self._denses()[0].dtype)

    def _y(self, y, n, where):
        """Targets as the fastnet output layer takes them."""
        if self._compiled is None:
            raise RuntimeError("%s: you must compile the model before training or "
                               "evaluating it (model.compile(...))" % where)
        loss, units = self._compiled["loss"], self._denses()[-1].units
        if y is None:
            raise ValueError("%s: y is None" % where)
        t = np.asarray(y)
        if t.shape[:1] != (n,):
            raise ValueError("%s: x has %d rows but y has shape %s" % (where, n, t.shape))
        if loss == "categorical_crossentropy":
            if t.ndim != 2 or t.shape[1] != units:
                raise ValueError(
                    "%s: categorical_crossentropy takes one-hot targets of shape (n, %d), "
                    "got %s; use fastnet.keras.utils.to_categorical(y, %d) or "
                    "loss='sparse_categorical_crossentropy'" % (where, units, t.shape, units))
            one_hot = np.all((t == 0) | (t == 1), axis=1) & (np.sum(t == 1, axis=1) == 1)
            if not np.all(one_hot):
                raise NotImplementedError(
                    "%s: categorical_crossentropy targets must be one-hot rows (row %d is "
                    "not); soft labels are not supported" % (where, int(np.argmin(one_hot))))
            return np.argmax(t, axis=1).astype(np.int32)
        if loss == "sparse_categorical_crossentropy":
            if t.ndim == 2 and t.shape[1] == 1:
                t = t[:, 0]
            if t.ndim != 1 or (t.dtype.kind == "f" and not np.all(t == np.round(t))) \
                    or t.dtype.kind not in "fiu":
                raise ValueError("%s: sparse_categorical_crossentropy takes integer labels of "
                                 "shape (n,), got %s %s" % (where, t.dtype, t.shape))
            if n and (t.min() < 0 or t.max() >= units):
                raise ValueError("%s: labels must be in [0, %d), got %s..%s"
                                 % (where, units, t.min(), t.max()))
            return t.astype(np.int32)
        if t.ndim == 1 and units == 1:
            t = t[:, None]
        if t.ndim != 2 or t.shape[1] != units:
            raise ValueError("%s: %s takes targets of shape (n, %d), got %s"
                             % (where, loss, units, t.shape))
        return np.ascontiguousarray(t, dtype=self._denses()[0].dtype)

    def _logs(self, loss, accuracy, prefix=""):
        logs = {}
        for m in self._compiled["metrics"]:
            logs[prefix + m] = accuracy
        logs[prefix + "loss"] = loss
        return logs

    # ------------------------------------------------------------------
    # training and inference
    # ------------------------------------------------------------------
    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False):
        """One step on (x, y) as one batch; returns the batch's loss (and
        accuracy) at the weights before the step, as Keras's."""
        if sample_weight is not None or class_weight is not None:
            raise NotImplementedError("train_on_batch: sample_weight and class_weight are "
                                      "not supported")
        x = self._x(x, "train_on_batch")
        y = self._y(y, x.shape[0], "train_on_batch")
        if x.shape[0] == 0:
            raise ValueError("train_on_batch: x has no rows")
        net = self._network(x.shape[0], "train_on_batch")
        loss, acc = net.train_batch(x, y, optimizer=self._compiled["optimizer"])
        return self._result(loss, acc, return_dict)

    def _result(self, loss, acc, return_dict):
        logs = self._logs(loss, acc)
        if return_dict:
            return logs
        if not self._compiled["metrics"]:
            return loss
        return [loss, acc]

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto",
            validation_split=0.0, validation_data=None, shuffle=True, **kwargs):
        """Keras's fit: returns a History (``history.history``: loss, accuracy,
        val_loss, val_accuracy per epoch)."""
        where = "fit"
        _check_kwargs(where, kwargs, _FIT_DEFAULTS)
        verbose = _verbosity(verbose, where)
        batch_size = _batch_size(batch_size, where)
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError("fit: epochs must be a non-negative integer, got %r" % (epochs,))
        if shuffle not in (True, False):
            raise NotImplementedError("fit: shuffle=%r is not supported (True or False)"
                                      % (shuffle,))
        x = self._x(x, where)
        y = self._y(y, x.shape[0], where)
        if isinstance(validation_split, bool) or not 0.0 <= float(validation_split) < 1.0:
            raise ValueError("fit: validation_split must be in [0, 1), got %r"
                             % (validation_split,))
        val = None
        if validation_data is not None:
            try:
                vx, vy = validation_data
            except (TypeError, ValueError):
                raise NotImplementedError("fit: validation_data must be a pair (x_val, y_val)")
            vx = self._x(vx, "fit (validation_data)")
            val = (vx, self._y(vy, vx.shape[0], "fit (validation_data)"))
        elif validation_split:
            # Keras: the last fraction of the rows, taken before any shuffling
            split_at = int(math.floor(x.shape[0] * (1.0 - float(validation_split))))
            if split_at == 0 or split_at == x.shape[0]:
                raise ValueError("fit: validation_split=%r leaves no training or no "
                                 "validation rows of %d" % (validation_split, x.shape[0]))
            x, y, val = x[:split_at], y[:split_at], (x[split_at:], y[split_at:])
        n = x.shape[0]
        if n == 0:
            raise ValueError("fit: x has no rows")
        steps = -(-n // batch_size)
        net = self._network(min(batch_size, n), where)
        opt = self._compiled["optimizer"]
        history = History()
        history.model = self
        history.params = {"verbose": verbose, "epochs": epochs, "steps": steps}
        for epoch in range(epochs):
            if verbose == 1 or verbose == 2:
                print("Epoch %d/%d" % (epoch + 1, epochs))
            order = utils.rng().permutation(n) if shuffle else None
            xs, ys = (x[order], y[order]) if shuffle else (x, y)
            progress = _Progress(steps, verbose)
            loss_sum = acc_sum = 0.0
            seen = 0
            for k in range(steps):
                a, b = k * batch_size, min(n, (k + 1) * batch_size)
                loss, acc = net.train_batch(xs[a:b], ys[a:b], optimizer=opt)
                seen += b - a
                loss_sum += loss * (b - a)
                acc_sum += acc * (b - a)
                progress.update(k + 1, self._logs(loss_sum / seen, acc_sum / seen))
            logs = self._logs(loss_sum / seen, acc_sum / seen)
            if val is not None:
                vloss, vacc = self._net.evaluate_batches(*val)
                logs.update(self._logs(vloss, vacc, "val_"))
            progress.finish(logs)
            history._append(epoch, logs)
        self.history = history
        return history

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", return_dict=False,
                 **kwargs):
        """Mean loss (and accuracy) over every row: ``loss`` or ``[loss, accuracy]``."""
        where = "evaluate"
        _check_kwargs(where, kwargs, _EVAL_DEFAULTS)
        verbose = _verbosity(verbose, where)
        batch_size = _batch_size(batch_size, where)
        x = self._x(x, where)
        y = self._y(y, x.shape[0], where)
        if x.shape[0] == 0:
            raise ValueError("evaluate: x has no rows")
        net = self._network(1, where)
        progress = _Progress(-(-x.shape[0] // batch_size), verbose)
        loss, acc = net.evaluate_batches(x, y)
        progress.finish(self._logs(loss, acc))
        return self._result(loss, acc, return_dict)

    def predict(self, x, batch_size=None, verbose="auto", **kwargs):
        """The model's outputs for every row of x, (n, units)."""
        where = "predict"
        _check_kwargs(where, kwargs, _PREDICT_DEFAULTS)
        verbose = _verbosity(verbose, where)
        batch_size = _batch_size(batch_size, where)
        x = self._x(x, where)
        if self._net is None:
            if self._compiled is None:
                return self._numpy_forward(x)
            self._make_network(32)
        progress = _Progress(-(-x.shape[0] // batch_size), verbose)
        out = self._net.output(x)
        progress.finish({})
        return out

    def _numpy_forward(self, x):
        """predict before compile (Keras allows it): the Dense stack in NumPy."""
        a = x
        for d in self._denses():
            w, b = d.get_weights()
            z = a @ w + b
            if d.activation == "softmax":
                e = np.exp(z - z.max(axis=1, keepdims=True))
                a = e / e.sum(axis=1, keepdims=True)
            else:
                a = _layers_activation(d)(z)
        return a.astype(x.dtype)

    # ------------------------------------------------------------------
    # weights and summary
    # ------------------------------------------------------------------
    def get_weights(self):
        """[W0 (n_in, n_out), b0, W1, b1, ...] in the model's dtype."""
        return [a for d in self._denses() for a in d.get_weights()]

    def set_weights(self, weights):
        weights = list(weights)
        denses = self._denses()
        if not self.built:
            raise ValueError("set_weights: the model is not built yet; give the first Dense "
                             "input_shape=(n,)")
        if len(weights) != 2 * len(denses):
            raise ValueError("set_weights: the model has %d weight arrays, got %d"
                             % (2 * len(denses), len(weights)))
        for i, d in enumerate(denses):
            d.set_weights(weights[2 * i:2 * i + 2])

    def count_params(self):
        if not self.built:
            raise ValueError("count_params: the model is not built yet")
        return sum(d.count_params() for d in self._denses())

    def summary(self, print_fn=None):
        """Keras's table: each layer's output shape and parameter count, then
        the totals."""
        if not self.built:
            raise ValueError("summary: the model is not built yet; give the first Dense "
                             "input_shape=(n,) or call fit first")
        emit = print_fn or print
        widths = (33, 24, 15)
        rows = []
        width = self._input_width
        for layer in self._layers:
            if isinstance(layer, Dense):
                width = layer.units
            rows.append(("%s (%s)" % (layer.name, type(layer).__name__),
                         "(None, %d)" % width, "{:,}".format(layer.count_params())))

        def line(l, m, r, fill):
            return l + m.join(fill * w for w in widths) + r

        def cells(values, bar):
            parts = [" " + values[0].ljust(widths[0] - 1), " " + values[1].ljust(widths[1] - 1),
                     values[2].rjust(widths[2] - 1) + " "]
            return bar + bar.join(parts) + bar
        total = self.count_params()
        size = total * self._denses()[0].dtype.itemsize
        out = ['Model: "%s"' % self.name, line("┏", "┳", "┓", "━"),
               cells(("Layer (type)", "Output Shape", "Param #"), "┃"),
               line("┡", "╇", "┩", "━")]
        for i, r in enumerate(rows):
            out.append(cells(r, "│"))
            out.append(line("├", "┼", "┤", "─") if i < len(rows) - 1
                       else line("└", "┴", "┘", "─"))
        out += [" Total params: {:,} ({})".format(total, _bytes(size)),
                " Trainable params: {:,} ({})".format(total, _bytes(size)),
                " Non-trainable params: 0 (0.00 B)"]
        for text in out:
            emit(text)


def _layers_activation(dense):
    """The fastnet activation of a hidden or mse Dense layer."""
    return {"relu": _activations.ReLU, "sigmoid": _activations.sigmoid,
            "tanh": _activations.tanh, "linear": _activations.linear}[dense.activation]


def _bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return "%.2f %s" % (n, unit)
        n /= 1024.0
