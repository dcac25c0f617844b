"""Network: the chain of layers, network3's SGD loop, evaluation, log lines.

The Network owns the training loop and its bookkeeping and prints network3's
sentences; it knows nothing of C or CUDA.  The arithmetic happens in the
engine the layers are bound to (reference, cpu or cuda).

What network3 does and fastnet keeps (see the conformance README):
mini-batches are sliced in order and never shuffled, the last partial
mini-batch is dropped (training, validation and test), accuracy is the mean of
per-mini-batch accuracies, a validation accuracy equal to the best so far
counts as a new best, and the L2 term divides by the current SGD call's
number of training mini-batches.
"""

import hashlib
import os
import sys
import time
import warnings

import numpy as np

from . import engines
from .checks import as_x, as_xy
from .layers import ConvPoolLayer, SoftmaxLayer
from .params import FlatParams

# "Training mini-batch number N" is printed when N is a multiple of this
LOG_EVERY = 1000
# mini-batches per call into the engine between checks for Ctrl-C and progress
CHUNK = 100


class TrainingHistory(object):
    """What an SGD call measured (network3 returned nothing; this is extra).

    ``epochs``: one dict per epoch with ``epoch``, ``validation_accuracy``,
    ``test_accuracy`` (None when not re-measured) and ``seconds``.
    """

    def __init__(self):
        self.epochs = []
        self.best_validation_accuracy = 0.0
        self.best_iteration = None
        self.test_accuracy = None
        self.training_seconds = 0.0
        self.samples_trained = 0

    @property
    def samples_per_second(self):
        if self.training_seconds <= 0:
            return float("nan")
        return self.samples_trained / self.training_seconds

    def as_dict(self):
        return {"epochs": list(self.epochs),
                "best_validation_accuracy": self.best_validation_accuracy,
                "best_iteration": self.best_iteration,
                "test_accuracy": self.test_accuracy,
                "training_seconds": self.training_seconds,
                "samples_trained": self.samples_trained,
                "samples_per_second": self.samples_per_second}

    def __repr__(self):
        return ("TrainingHistory(epochs=%d, best_validation_accuracy=%.4f, "
                "best_iteration=%s, test_accuracy=%s)"
                % (len(self.epochs), self.best_validation_accuracy,
                   self.best_iteration, self.test_accuracy))


def _splitmix64(x):
    m = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def _seed_from_global_rng():
    """A 64-bit seed from NumPy's global RNG state, without drawing from it.

    So ``np.random.seed(s)`` before building makes dropout reproducible, and
    the weights drawn after it are exactly network3's.
    """
    state = np.random.get_state()
    h = hashlib.sha256(np.asarray(state[1]).tobytes() + str(state[2]).encode())
    return int.from_bytes(h.digest()[:8], "little")


class _InterruptFlag(object):
    """Turns Ctrl-C into a flag the loop reads between mini-batches, so a
    step is never left half done and the checkpoint is consistent."""

    def __init__(self):
        import signal
        import threading
        self.raised = False
        self._signal = signal
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, frame):
        if self.raised:
            # a second Ctrl-C: stop at once, without saving
            raise KeyboardInterrupt("SGD interrupted twice; stopped without saving")
        self.raised = True

    def restore(self):
        if self._old is not None:
            self._signal.signal(self._signal.SIGINT, self._old)
            self._old = None


class Network(object):
    """A chain of layers trained by mini-batch SGD, as network3's Network.

    ``Network(layers, mini_batch_size)``; new keywords: ``engine``
    ('reference', 'cpu', 'cuda') or ``device`` ('cpu', 'cuda'); by default the
    FASTNET_ENGINE / FASTNET_DEVICE environment variables, else 'cpu'.
    ``fused=False`` calls the kernels step by step even where the engine has
    a compiled training loop (for testing one against the other).
    """

    def __init__(self, layers, mini_batch_size, engine=None, device=None, fused=None):
        self.layers = list(layers)
        if not self.layers:
            raise ValueError("Network: layers is empty")
        try:
            mbs = int(mini_batch_size)
        except (TypeError, ValueError):
            mbs = None
        if mbs is None or mbs != mini_batch_size or mbs < 1:
            raise ValueError("Network: mini_batch_size must be a positive integer, "
                             "got %r" % (mini_batch_size,))
        self.mini_batch_size = mbs
        self._check_chain()
        if engine is not None and device is not None:
            raise ValueError("Network: give engine or device, not both")
        if device is not None:
            engine = engines.engine_for_device(device)
        self.engine = engines.get_engine(engine)
        self.params = [p for layer in self.layers for p in layer.params]
        self.dtype = self.layers[0].w.dtype
        for i, layer in enumerate(self.layers):
            if layer.w.dtype != self.dtype:
                raise ValueError(
                    "Network: layer %d was built with floatX %s but layer 0 with %s; "
                    "build all layers after the same set_floatx" % (i, layer.w.dtype, self.dtype))
        seed = _seed_from_global_rng()
        for i, layer in enumerate(self.layers):
            if hasattr(layer, "dropout_seed"):
                layer.dropout_seed = _splitmix64(seed + i)
        self.step_count = 0     # training steps taken: the dropout counter
        self._host_params = not getattr(self.engine, "device_resident", False)
        # on a device, one flat array per kind of parameter: 2 update launches
        # per step instead of 2 per layer
        self._flat = (None if self._host_params
                      else FlatParams(self.engine, self.layers, self.dtype))
        grads = (self._flat.grad_views() if self._flat is not None
                 else [None] * len(self.layers))
        for i, layer in enumerate(self.layers):
            layer.bind(self.engine, mbs, need_dx=i > 0, grads=grads[i])
        # fused: let an engine with a compiled training loop run whole runs of
        # mini-batches (FASTNET_FUSED=0 or fused=False: kernel by kernel)
        if fused is None:
            fused = os.environ.get("FASTNET_FUSED", "1") != "0"
        self.fused = bool(fused)
        self._plan = None
        self._params_on_device = False

    # ------------------------------------------------------------------
    # construction checks
    # ------------------------------------------------------------------
    def _check_chain(self):
        mbs = self.mini_batch_size
        for i, layer in enumerate(self.layers):
            if not hasattr(layer, "params") or not hasattr(layer, "in_shape"):
                raise ValueError("Network: layer %d is %r, not a fastnet layer"
                                 % (i, layer))
            if isinstance(layer, ConvPoolLayer) and layer.image_shape[0] != mbs:
                raise ValueError(
                    "Network: layer %d (ConvPoolLayer) has image_shape batch %d but "
                    "mini_batch_size is %d" % (i, layer.image_shape[0], mbs))
            if isinstance(layer, SoftmaxLayer) and i != len(self.layers) - 1:
                raise ValueError("Network: layer %d is a SoftmaxLayer; it must be "
                                 "the last layer" % i)
            if i > 0:
                prev = self.layers[i - 1]
                if prev.n_out_flat != layer.n_in_flat:
                    raise ValueError(
                        "Network: layer %d (%s) expects %d inputs %s but layer %d (%s) "
                        "gives %d outputs %s" % (
                            i, type(layer).__name__, layer.n_in_flat, layer.in_shape,
                            i - 1, type(prev).__name__, prev.n_out_flat, prev.out_shape))
        if not isinstance(self.layers[-1], SoftmaxLayer):
            raise ValueError("Network: the last layer must be a SoftmaxLayer (network3's "
                             "cost and accuracy live there), got %s"
                             % type(self.layers[-1]).__name__)

    @property
    def n_in(self):
        return self.layers[0].n_in_flat

    @property
    def n_classes(self):
        return self.layers[-1].n_out

    def __repr__(self):
        return "Network([%s], mini_batch_size=%d, engine=%r)" % (
            ", ".join(repr(l) for l in self.layers), self.mini_batch_size, self.engine.name)

    # ------------------------------------------------------------------
    # parameters between host and engine (a no-op for host engines)
    # ------------------------------------------------------------------
    def _params_to_engine(self):
        if self._host_params:
            return
        self._flat.upload()
        self._params_on_device = True

    def _params_to_host(self):
        if self._host_params or not self._params_on_device:
            return
        e = self.engine
        for layer in self.layers:
            e.to_host(layer.w_e, out=layer.w.value)
            e.to_host(layer.b_e, out=layer.b.value)

    # ------------------------------------------------------------------
    # data: checked and converted once per call
    # ------------------------------------------------------------------
    def _dataset(self, data, name, need_batches=1):
        """(x, y) host arrays: x (n, n_in) floatX C-contiguous, y (n,) int32."""

        x, y = as_xy(data, name, n_in=self.n_in, n_classes=self.n_classes,
                     dtype=self.dtype)
        n_batches = x.shape[0] // self.mini_batch_size
        if n_batches < need_batches:
            raise ValueError(
                "%s: %d rows is less than one mini-batch of %d"
                % (name, x.shape[0], self.mini_batch_size))
        return x, y

    def _to_engine(self, x, y):
        e = self.engine
        if self._host_params:
            return x, y
        return e.to_device(x), e.to_device(y)

    # ------------------------------------------------------------------
    # one mini-batch
    # ------------------------------------------------------------------
    def _forward(self, xb, train, upto=None):
        out = xb
        for i, layer in enumerate(self.layers[:upto]):
            if isinstance(layer, ConvPoolLayer):
                out = layer.forward(out, train)
            else:
                out = layer.forward(out, train, self.step_count)
        return out

    def _backward(self):
        dout = None
        for layer in reversed(self.layers):
            dout = layer.backward(dout)

    def _train_batches(self, x_e, y_e, first, stop, eta, l2):
        """Train mini-batches first .. stop-1 of (x_e, y_e) in order.

        An engine with a compiled training loop (``train_steps``) runs them in
        one call; otherwise the layers' kernels are called step by step.
        """
        if self.fused and hasattr(self.engine, "train_steps"):
            if self._plan is None:
                self._plan = self.engine.make_plan(self)
            self.engine.train_steps(self._plan, x_e, y_e, first, stop, eta, l2,
                                    self.step_count)
            self.step_count += stop - first
            return
        mbs = self.mini_batch_size
        for i in range(first, stop):
            self._train_step(x_e[i * mbs:(i + 1) * mbs], y_e[i * mbs:(i + 1) * mbs],
                             eta, l2)

    def _train_step(self, xb, yb, eta, l2):
        self._forward(xb, True)
        cost = self.layers[-1].cost(yb)
        self._backward()
        if self._flat is not None:
            self._flat.update(eta, l2)
        else:
            for layer in self.layers:
                layer.update(eta, l2)
        self.step_count += 1
        return cost

    def _predict_into(self, x_e, n_batches, yout_e):
        mbs = self.mini_batch_size
        last = self.layers[-1]
        for j in range(n_batches):
            self._forward(x_e[j * mbs:(j + 1) * mbs], False)
            self.engine.softmax_argmax(last.probs, yout_e[j * mbs:(j + 1) * mbs])

    def _batch_accuracies(self, x_e, y_host, n_batches):
        mbs = self.mini_batch_size
        yout_e = self.engine.empty((n_batches * mbs,), np.int32)
        self._predict_into(x_e, n_batches, yout_e)
        yout = self.engine.to_host(yout_e)
        hits = (yout == y_host[:n_batches * mbs]).reshape(n_batches, mbs)
        return hits.mean(axis=1)

    # ------------------------------------------------------------------
    # network3's SGD
    # ------------------------------------------------------------------
    def SGD(self, training_data, epochs, mini_batch_size, eta,
            validation_data, test_data, lmbda=0.0, progress=False,
            checkpoint=None):
        """Train the network using mini-batch stochastic gradient descent.

        As network3: ``epochs`` passes over ``training_data`` in order,
        validation accuracy after each epoch, test accuracy whenever the
        validation accuracy is the best to date (``>=``).  Data are network3's
        shared pairs or plain ``(x, y)`` NumPy pairs.

        New keywords: ``progress=True`` shows progress on stderr (a tqdm bar on
        a terminal, else a plain line per epoch: fastnet/progress.py);
        ``checkpoint="path.npz"`` saves the whole training state atomically
        after every epoch (and on Ctrl-C) and, when the file exists at the
        start, resumes from it -- only for the same network, arguments and
        data (a fingerprint of the data is kept in the file); otherwise a
        ValueError.  Returns a TrainingHistory.
        """
        epochs = self._check_count(epochs, "epochs")
        sgd_mbs = self._check_count(mini_batch_size, "mini_batch_size")
        if sgd_mbs != self.mini_batch_size:
            raise ValueError(
                "SGD: mini_batch_size is %d but the Network was built with "
                "mini_batch_size %d (network3 slices with the Network's and "
                "counts with SGD's; they must agree)" % (sgd_mbs, self.mini_batch_size))
        eta = self._check_eta(eta)
        lmbda = self._check_lmbda(lmbda)
        mbs = self.mini_batch_size
        train_x, train_y = self._dataset(training_data, "training_data")
        valid_x, valid_y = self._dataset(validation_data, "validation_data")
        test_x, test_y = self._dataset(test_data, "test_data")
        num_training_batches = train_x.shape[0] // sgd_mbs
        num_validation_batches = valid_x.shape[0] // sgd_mbs
        num_test_batches = test_x.shape[0] // sgd_mbs
        self._warn_partial(train_x.shape[0], "training_data")
        l2 = lmbda / num_training_batches

        run = {"epochs": epochs, "mini_batch_size": sgd_mbs, "eta": eta,
               "lmbda": lmbda, "n_train": int(train_x.shape[0]),
               "n_valid": int(valid_x.shape[0]), "n_test": int(test_x.shape[0])}
        state = {"epoch": 0, "minibatch_index": 0,
                 "best_validation_accuracy": 0.0, "best_iteration": None,
                 "test_accuracy": None, "history": []}
        data_fingerprints = None
        if checkpoint is not None:
            from . import persist
            # once per call (one pass over the data), reused by every save
            data_fingerprints = persist.data_fingerprints(
                (train_x, train_y), (valid_x, valid_y), (test_x, test_y))
            resumed = persist.load_checkpoint(checkpoint, self, run, data_fingerprints)
            if resumed is not None:
                state.update(resumed)

        history = TrainingHistory()
        history.epochs = list(state["history"])
        best_validation_accuracy = state["best_validation_accuracy"]
        best_iteration = state["best_iteration"]
        test_accuracy = state["test_accuracy"]

        def save(epoch, minibatch_index):
            if checkpoint is None:
                return
            from . import persist
            self._params_to_host()
            persist.save_checkpoint(checkpoint, self, run, {
                "epoch": epoch, "minibatch_index": minibatch_index,
                "best_validation_accuracy": best_validation_accuracy,
                "best_iteration": best_iteration, "test_accuracy": test_accuracy,
                "history": history.epochs}, data_fingerprints)

        self._params_to_engine()
        tx_e, ty_e = self._to_engine(train_x, train_y)
        vx_e, _ = self._to_engine(valid_x, valid_y)
        sx_e, _ = self._to_engine(test_x, test_y)
        last_good = self._snapshot()
        interrupted = _InterruptFlag() if checkpoint is not None else None
        first_batch = state["minibatch_index"]
        try:
            for epoch in range(state["epoch"], epochs):
                t0 = time.perf_counter()
                minibatch_index = first_batch
                while minibatch_index < num_training_batches:
                    iteration = num_training_batches * epoch + minibatch_index
                    if interrupted is not None and interrupted.raised:
                        self.engine.synchronize()
                        save(epoch, minibatch_index)
                        raise KeyboardInterrupt(
                            "SGD interrupted; the training state is saved in %s and the "
                            "same call resumes from it" % (checkpoint,))
                    if iteration % LOG_EVERY == 0:
                        print("Training mini-batch number {0}".format(iteration))
                    # train up to the next log line, at most CHUNK mini-batches
                    to_log = LOG_EVERY - iteration % LOG_EVERY
                    stop = min(num_training_batches, minibatch_index + to_log,
                               minibatch_index + CHUNK)
                    self._train_batches(tx_e, ty_e, minibatch_index, stop, eta, l2)
                    minibatch_index = stop
                    # divergence: checked every chunk, so no NaN step is wasted
                    # and no NaN weight is ever saved
                    if not self._params_finite():
                        self._restore(last_good)
                        raise FloatingPointError(
                            "SGD: training diverged in epoch %d, before mini-batch %d "
                            "(a weight became NaN or Inf); the network keeps the "
                            "weights of its last good epoch. Try a smaller eta (it "
                            "was %g)." % (epoch, minibatch_index, eta))
                    if progress:
                        self._progress(epoch, minibatch_index, num_training_batches, t0)
                self.engine.synchronize()
                seconds = time.perf_counter() - t0
                history.training_seconds += seconds
                history.samples_trained += (num_training_batches - first_batch) * mbs
                first_batch = 0
                last_good = self._snapshot()
                # iteration is the last mini-batch of this epoch
                iteration = num_training_batches * epoch + num_training_batches - 1
                validation_accuracy = float(np.mean(
                    self._batch_accuracies(vx_e, valid_y, num_validation_batches)))
                print("Epoch {0}: validation accuracy {1:.2%}".format(
                    epoch, validation_accuracy))
                record = {"epoch": epoch, "validation_accuracy": validation_accuracy,
                          "test_accuracy": None, "seconds": seconds}
                if validation_accuracy >= best_validation_accuracy:
                    print("This is the best validation accuracy to date.")
                    best_validation_accuracy = validation_accuracy
                    best_iteration = iteration
                    test_accuracy = float(np.mean(
                        self._batch_accuracies(sx_e, test_y, num_test_batches)))
                    print("The corresponding test accuracy is {0:.2%}".format(
                        test_accuracy))
                    record["test_accuracy"] = test_accuracy
                history.epochs.append(record)
                save(epoch + 1, 0)
        finally:
            if interrupted is not None:
                interrupted.restore()
            self._params_to_host()
        if interrupted is not None and interrupted.raised:
            # Ctrl-C after the last mini-batch (during the last evaluation):
            # training is complete and saved, but the user asked to stop
            raise KeyboardInterrupt(
                "SGD interrupted after its last epoch; training is complete and "
                "%s holds the final state" % (checkpoint,))
        print("Finished training network.")
        print("Best validation accuracy of {0:.2%} obtained at iteration {1}".format(
            best_validation_accuracy, best_iteration))
        print("Corresponding test accuracy of {0:.2%}".format(test_accuracy))
        history.best_validation_accuracy = best_validation_accuracy
        history.best_iteration = best_iteration
        history.test_accuracy = test_accuracy
        return history

    @staticmethod
    def _check_count(value, what):
        try:
            v = int(value)
        except (TypeError, ValueError):
            raise ValueError("SGD: %s must be a positive integer, got %r" % (what, value))
        if v != value or v < 1:
            raise ValueError("SGD: %s must be a positive integer (>= 1), got %r"
                             % (what, value))
        return v

    @staticmethod
    def _check_eta(eta):
        try:
            eta = float(eta)
        except (TypeError, ValueError):
            raise ValueError("SGD: eta must be a positive number, got %r" % (eta,))
        if not np.isfinite(eta) or eta <= 0:
            raise ValueError("SGD: eta must be finite and > 0, got %r" % (eta,))
        return eta

    @staticmethod
    def _check_lmbda(lmbda):
        try:
            lmbda = float(lmbda)
        except (TypeError, ValueError):
            raise ValueError("SGD: lmbda must be a number >= 0, got %r" % (lmbda,))
        if not np.isfinite(lmbda) or lmbda < 0:
            raise ValueError("SGD: lmbda must be finite and >= 0, got %r" % (lmbda,))
        return lmbda

    _warned_partial = False

    def _warn_partial(self, n, name):
        if n % self.mini_batch_size and not Network._warned_partial:
            Network._warned_partial = True
            warnings.warn(
                "%s: %d rows is not a multiple of mini_batch_size %d; the last %d "
                "rows are not used (as in network3). This warning is shown once."
                % (name, n, self.mini_batch_size, n % self.mini_batch_size),
                stacklevel=3)

    def _progress(self, epoch, done, total, t0):
        # fastnet/progress.py: a tqdm bar on a terminal, plain lines in a log
        from .progress import Progress
        reporter = getattr(self, "_progress_reporter", None)
        if reporter is None or reporter.mini_batch_size != self.mini_batch_size:
            reporter = self._progress_reporter = Progress(self.mini_batch_size)
        reporter.update(epoch, done, total, t0)

    def _snapshot(self):
        self._params_to_host()
        return [p.get_value() for p in self.params]

    def _restore(self, values):
        for p, v in zip(self.params, values):
            np.copyto(p.value, v)
        self._params_to_engine()

    def _params_finite(self):
        e = self.engine
        if self._flat is not None:
            arrays = (self._flat.w, self._flat.b)
        else:
            arrays = [a for layer in self.layers for a in (layer.w_e, layer.b_e)]
        return all(np.isfinite(float(e.sum_of_squares(a))) for a in arrays)

    def save(self, path):
        """Write the layers and weights to ``path`` (.npz, no pickle);
        ``fastnet.load(path)`` gives the network back."""
        from . import persist
        persist.save(self, path)

    # ------------------------------------------------------------------
    # inference and the cost, for users and tests (new names)
    # ------------------------------------------------------------------
    def _padded_batches(self, x):
        """x as whole mini-batches (the last one zero-padded) and the row count."""
        mbs = self.mini_batch_size
        n = x.shape[0]
        n_batches = -(-n // mbs)
        if n_batches * mbs != n:
            pad = np.zeros((n_batches * mbs - n, x.shape[1]), dtype=x.dtype)
            x = np.concatenate([x, pad])
        return x, n, n_batches

    def output(self, x, layer=-1):
        """Inference output of layer ``layer`` (default: the softmax
        probabilities) for every row of x, as network3's ``layer.output``."""

        x = as_x(x, "output", n_in=self.n_in, dtype=self.dtype)
        n_layers = len(self.layers)
        index = layer if layer >= 0 else n_layers + layer
        if not 0 <= index < n_layers:
            raise ValueError("output: layer %r is out of range for %d layers"
                             % (layer, n_layers))
        xp, n, n_batches = self._padded_batches(x)
        self._params_to_engine()
        x_e, _ = self._to_engine(xp, np.zeros(1, np.int32))
        mbs = self.mini_batch_size
        width = self.layers[index].n_out_flat
        result = np.empty((n_batches * mbs, width), dtype=self.dtype)
        for j in range(n_batches):
            out = self._forward(x_e[j * mbs:(j + 1) * mbs], False, upto=index + 1)
            result[j * mbs:(j + 1) * mbs] = self.engine.to_host(out).reshape(mbs, width)
        return result[:n]

    def predict(self, x):
        """network3's ``y_out`` (argmax of the output) for every row of x."""
        return np.argmax(self.output(x), axis=1)

    def batch_accuracies(self, data):
        """Accuracy of each complete mini-batch of ``data`` (network3's
        ``accuracy(y)`` per batch; the partial last batch is dropped)."""
        x, y = self._dataset(data, "data")
        n_batches = x.shape[0] // self.mini_batch_size
        self._params_to_engine()
        x_e, _ = self._to_engine(x, y)
        return self._batch_accuracies(x_e, y, n_batches)

    def accuracy(self, data):
        """Mean of the per-mini-batch accuracies, as network3 reports it."""
        return float(np.mean(self.batch_accuracies(data)))

    def cost_and_grads(self, x, y, lmbda=0.0, num_training_batches=1):
        """network3's cost and T.grad(cost, params) on one mini-batch.

        cost = mean NLL (dropout path) + 0.5*lmbda*sum ||w||^2 / num_training_batches.
        Returns (cost, [gradient of each param in ``net.params`` order]).
        Nothing is updated; a dropout layer draws the mask of the next step.
        """
        lmbda = self._check_lmbda(lmbda)
        ntb = self._check_count(num_training_batches, "num_training_batches")
        x, y = self._dataset((x, y), "cost_and_grads")
        if x.shape[0] != self.mini_batch_size:
            raise ValueError("cost_and_grads: x has %d rows; give exactly one "
                             "mini-batch of %d" % (x.shape[0], self.mini_batch_size))
        self._params_to_engine()
        x_e, y_e = self._to_engine(x, y)
        e = self.engine
        self._forward(x_e, True)
        nll = float(self.layers[-1].cost(y_e))
        self._backward()
        l2 = lmbda / ntb
        sq = sum(float(e.sum_of_squares(layer.w_e)) for layer in self.layers)
        cost = nll + 0.5 * lmbda * sq / ntb
        grads = []
        for layer in self.layers:
            gw = e.to_host(layer.gw).astype(self.dtype)
            if l2:
                gw = gw + l2 * layer.w.get_value()
            grads.append(gw)
            grads.append(e.to_host(layer.gb).astype(self.dtype))
        return cost, grads
