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

import contextlib
import hashlib
import os
import threading
import time
import warnings

import numpy as np

from . import engines
from .checks import as_x, as_xy
from .optim import Network3SGD
from .plan import Plan, run_ops, _Env

# "Training mini-batch number N" is printed when N is a multiple of this
LOG_EVERY = 1000
# mini-batches per call into the engine between checks for Ctrl-C and progress
CHUNK = 100
# a training cost (mean NLL, nats) above this means training has diverged:
# random guessing costs log(n_classes), a few nats
DIVERGED_COST = 1e4


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
        self.stopped_early = False

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
    ``fused=False`` runs the plan's ops one kernel call at a time even where
    the engine has a compiled training loop (for testing one against the
    other).

    Threads: inference (``output``, ``predict``, ``accuracy``, ...) may be
    called on one network from many threads; the calls take turns (a lock
    per network), also with an SGD call running in another thread, which
    lets them in between its runs of mini-batches.  Training one network
    from two threads at once is refused (RuntimeError); separate networks
    train concurrently.
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
            for p in layer.params:
                if p.dtype != self.dtype:
                    raise ValueError(
                        "Network: layer %d was built with floatX %s but layer 0 with %s; "
                        "build all layers after the same set_floatx" % (i, p.dtype, self.dtype))
        seed = _seed_from_global_rng()
        self._shuffle_seed = _splitmix64(seed + len(self.layers)) >> 1
        # the seed of SGD's augment= draws (fastnet/augment.py), as dropout's
        self.augment_seed = _splitmix64(seed + len(self.layers) + 1)
        for i, layer in enumerate(self.layers):
            if hasattr(layer, "dropout_seed"):
                layer.dropout_seed = _splitmix64(seed + i)
        self.step_count = 0     # training steps taken: the dropout counter
        # fused: let an engine with a compiled training loop run whole runs of
        # mini-batches (FASTNET_FUSED=0 or fused=False: kernel by kernel)
        if fused is None:
            fused = os.environ.get("FASTNET_FUSED", "1") != "0"
        self.fused = bool(fused)
        self._lock = threading.RLock()
        self._training_thread = None
        self._device_live = False
        self._plan = None
        self._program = None
        self._step_team = None      # engine.step_team(): train_batch's thread team
        self._ensure_plan()

    # ------------------------------------------------------------------
    # construction checks
    # ------------------------------------------------------------------
    def _check_chain(self):
        mbs = self.mini_batch_size
        seen = {}
        for i, layer in enumerate(self.layers):
            if not hasattr(layer, "params") or not hasattr(layer, "in_shape") \
                    or not hasattr(layer, "ops"):
                raise ValueError("Network: layer %d is %r, not a fastnet layer"
                                 % (i, layer))
            if id(layer) in seen:
                raise ValueError(
                    "Network: layer %d is the same object as layer %d; a layer can "
                    "appear once in a network (build a new layer for each place)"
                    % (i, seen[id(layer)]))
            seen[id(layer)] = i
            layer.check_mini_batch_size(mbs, "Network: layer %d" % i)
            if layer.is_output and i != len(self.layers) - 1:
                raise ValueError("Network: layer %d is a %s; it must be the last layer"
                                 % (i, type(layer).__name__))
            if i > 0:
                prev = self.layers[i - 1]
                if prev.n_out_flat != layer.n_in_flat:
                    raise ValueError(
                        "Network: layer %d (%s) expects %d inputs %s but layer %d (%s) "
                        "gives %d outputs %s" % (
                            i, type(layer).__name__, layer.n_in_flat, layer.in_shape,
                            i - 1, type(prev).__name__, prev.n_out_flat, prev.out_shape))
        if not self.layers[-1].is_output:
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
    # the plan: parameters, buffers and ops on the engine
    # ------------------------------------------------------------------
    def _dropout_seeds(self):
        return tuple(getattr(layer, "dropout_seed", 0) for layer in self.layers)

    def _ensure_plan(self, optimizer=None):
        """The plan for the current dropout seeds and ``optimizer`` (kept
        when it is the same), with the layers' parameters its views."""
        seeds = self._dropout_seeds()
        plan = self._plan
        if plan is None or plan.seeds != seeds:
            if plan is not None:
                self._params_to_host()
            plan = Plan(self.layers, self.mini_batch_size, self.engine, self.dtype,
                        optimizer or (plan.optimizer if plan else Network3SGD()), seeds)
            plan.seeds = seeds
            self._plan = plan
            self._program = None
        elif optimizer is not None and optimizer is not plan.optimizer:
            plan.set_optimizer(optimizer)
            self._program = None
        plan.adopt()
        return plan

    def _params_to_engine(self, force=False):
        """Copy the host parameters to the engine -- except while an SGD call
        runs, when the engine's copy is the live one (force: even then)."""
        plan = self._ensure_plan()
        if self._device_live and not force:
            return
        plan.to_engine()

    def _params_to_host(self):
        if self._plan is not None:
            self._plan.to_host()

    # ------------------------------------------------------------------
    # data: checked and converted once per call
    # ------------------------------------------------------------------
    def _dataset(self, data, name, need_batches=1):
        """(x, y) host arrays: x (n, n_in) floatX C-contiguous; y as the
        output layer takes it (int32 labels, or float targets)."""

        x, y = as_xy(data, name, n_in=self.n_in, n_classes=self.n_classes,
                     dtype=self.dtype, targets=self.layers[-1].check_targets)
        n_batches = x.shape[0] // self.mini_batch_size
        if n_batches < need_batches:
            raise ValueError(
                "%s: %d rows is less than one mini-batch of %d"
                % (name, x.shape[0], self.mini_batch_size))
        return x, y

    def _to_engine(self, x, y):
        e = self.engine
        if self._plan.host_is_engine:
            return x, y
        return e.to_device(x), e.to_device(y)

    # ------------------------------------------------------------------
    # runs of mini-batches
    # ------------------------------------------------------------------
    def _train_batches(self, x_e, y_e, first, stop, hyper, augment=None):
        """Train mini-batches first .. stop-1 of (x_e, y_e) in order; returns
        the cost of the last one.

        An engine with a compiled training loop (``compile_program``) runs
        them in one call; otherwise the plan's ops are called step by step.
        ``augment``: None, or (table, buffer) of fastnet/augment.py: each
        step trains on its rows distorted by the engine's ``augment`` kernel
        (into buffer, (mbs, 784) on the engine), drawn from
        ``self.augment_seed`` and the step counter, as dropout's masks are.
        """
        plan = self._plan
        if self.fused and hasattr(self.engine, "compile_program"):
            if self._program is None:
                self._program = self.engine.compile_program(plan)
            aug = {} if augment is None else {"augment": (augment[0], self.augment_seed)}
            cost = self._program.run(x_e, y_e, first, stop,
                                     dict(hyper, step=plan.opt_step + 1), self.step_count,
                                     **aug)
            self.step_count += stop - first
            plan.opt_step += stop - first
            return cost
        mbs = self.mini_batch_size
        cost = None
        for i in range(first, stop):
            rows = x_e[i * mbs:(i + 1) * mbs]
            if augment is not None:
                table, buf = augment
                self.engine.augment(rows, table, self.augment_seed, self.step_count, buf)
                rows = buf
            cost = plan.run_step(rows, y_e[i * mbs:(i + 1) * mbs], self.step_count, hyper)
            self.step_count += 1
        return cost

    def thread_team(self):
        """How the engine's compiled training loop has been choosing how
        many threads a step runs on (a dict: ``threads``, the count measured
        fastest; ``max_threads``; ``adaptive``; ``windows``, ``probes``,
        ``switches``; ``steps_per_s`` by count), or None before ``SGD`` has
        run on an engine with such a loop.  A network trained only by
        ``train_batch`` reports the team of those kernel-by-kernel steps."""
        program = self._program
        if program is not None and hasattr(program, "team"):
            return program.team()
        if self._step_team is not None:    # trained by train_batch
            return self._step_team.team()
        return None

    def _check_augment(self, augment):
        """(table, buffer) for SGD's ``augment`` keyword, and its spec
        for the checkpoint; (None, None) for None."""
        from . import augment as aug
        transform = aug.as_transform(augment, "SGD")
        if transform is None:
            return None, None
        if self.n_in != aug.PIXELS:
            raise ValueError("SGD: augment distorts 28 x 28 images (784-wide rows); this "
                             "network takes %d inputs" % self.n_in)
        if not hasattr(self.engine, "augment"):
            raise NotImplementedError("SGD: the %s engine has no augmentation kernel; "
                                      "train with augment= on device='cpu'"
                                      % self.engine.name)
        table = transform.table()
        spec = transform.to_spec()
        if table.shape[0] == 0:         # identity: train on the rows as they are
            return None, spec
        buf = self.engine.empty((self.mini_batch_size, aug.PIXELS), self.dtype)
        return (table, buf), spec

    def _predict_into(self, x_e, n_batches, yout_e):
        mbs = self.mini_batch_size
        plan = self._plan
        env = _Env(None, None, 0, {})
        for j in range(n_batches):
            probs = plan.infer(x_e[j * mbs:(j + 1) * mbs])
            run_ops(self.engine, [plan.output_layer.predict_op(
                probs, yout_e[j * mbs:(j + 1) * mbs])], env)

    def _batch_accuracies(self, x_e, y_host, n_batches):
        mbs = self.mini_batch_size
        layer = self.layers[-1]
        if not hasattr(layer, "predict_op"):
            # an output layer scored on the host from its predictions
            out = []
            for j in range(n_batches):
                pred = self.engine.to_host(self._plan.infer(x_e[j * mbs:(j + 1) * mbs]))
                out.append(layer.accuracy_of(pred, y_host[j * mbs:(j + 1) * mbs]))
            return np.array(out)
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
            checkpoint=None, optimizer=None, shuffle=False, patience=None,
            eta_schedule=None, monitor_training=False, augment=None):
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
        ValueError.  ``augment=fastnet.augment.Elastic(alpha=34, sigma=4)`` (or
        Shift, Affine, a Compose or list of them) trains every mini-batch on
        freshly distorted copies of its rows (28 x 28 images only), drawn
        from ``net.augment_seed`` and the step counter; validation and test
        data are never distorted.  Returns a TrainingHistory.
        """
        with self._lock:
            if self._training_thread is not None:
                raise RuntimeError(
                    "SGD: this network is already being trained by another call (in "
                    "thread %r); one network trains in one thread at a time -- build "
                    "another Network to train in parallel" % (self._training_thread,))
            self._training_thread = threading.current_thread().name
        try:
            return self._sgd(training_data, epochs, mini_batch_size, eta,
                             validation_data, test_data, lmbda, progress, checkpoint,
                             optimizer, shuffle, patience, eta_schedule, monitor_training,
                             augment)
        finally:
            with self._lock:
                self._training_thread = None

    def _sgd(self, training_data, epochs, mini_batch_size, eta, validation_data,
             test_data, lmbda, progress, checkpoint, optimizer, shuffle, patience,
             eta_schedule, monitor_training, augment=None):
        from . import schedules
        epochs = self._check_count(epochs, "epochs")
        sgd_mbs = self._check_count(mini_batch_size, "mini_batch_size")
        if sgd_mbs != self.mini_batch_size:
            raise ValueError(
                "SGD: mini_batch_size is %d but the Network was built with "
                "mini_batch_size %d (network3 slices with the Network's and "
                "counts with SGD's; they must agree)" % (sgd_mbs, self.mini_batch_size))
        eta = self._check_eta(eta)
        lmbda = self._check_lmbda(lmbda)
        optimizer = self._check_optimizer(optimizer, eta, lmbda)
        mbs = self.mini_batch_size
        train_x, train_y = self._dataset(training_data, "training_data")
        valid_x, valid_y = self._dataset(validation_data, "validation_data")
        test_x, test_y = self._dataset(test_data, "test_data")
        num_training_batches = train_x.shape[0] // sgd_mbs
        num_validation_batches = valid_x.shape[0] // sgd_mbs
        num_test_batches = test_x.shape[0] // sgd_mbs
        self._warn_partial(train_x.shape[0], "training_data")
        l2 = lmbda / num_training_batches
        self._check_in_floatx(l2, "lmbda / num_training_batches (the L2 step)", lmbda)
        with self._lock:
            plan = self._ensure_plan(optimizer)
        hyper = plan.optimizer.hyper(eta, l2)
        for name, value in hyper.items():
            self._check_in_floatx(value, "the optimizer's %s" % name)

        run = {"epochs": epochs, "mini_batch_size": sgd_mbs, "eta": eta,
               "lmbda": lmbda, "n_train": int(train_x.shape[0]),
               "n_valid": int(valid_x.shape[0]), "n_test": int(test_x.shape[0])}
        if not isinstance(plan.optimizer, Network3SGD):
            run["optimizer"] = plan.optimizer.describe()
        shuffle_seed = self._check_shuffle(shuffle)
        if shuffle_seed is not None:
            run["shuffle"] = shuffle_seed
        if patience is not None:
            if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) \
                    or patience < 1:
                raise ValueError("SGD: patience must be an integer >= 1 (epochs without a "
                                 "new best), got %r" % (patience,))
            run["patience"] = patience = int(patience)
        if eta_schedule is not None:
            if not (callable(eta_schedule) or hasattr(eta_schedule, "eta")):
                raise ValueError("SGD: eta_schedule must be a fastnet.schedules schedule or "
                                 "a function of the epoch, got %r" % (eta_schedule,))
            run["eta_schedule"] = schedules.describe(eta_schedule)
        if monitor_training:
            run["monitor_training"] = True
        augment, augment_spec = self._check_augment(augment)
        if augment_spec is not None:
            run["augment"] = augment_spec
        lr_key = "eta" if "eta" in hyper else "lr" if "lr" in hyper else None
        if eta_schedule is not None and lr_key is None:
            raise ValueError("SGD: eta_schedule needs an optimizer with a learning rate")
        base_lr = hyper.get(lr_key)
        state = {"epoch": 0, "minibatch_index": 0,
                 "best_validation_accuracy": 0.0, "best_iteration": None,
                 "test_accuracy": None, "history": []}
        data_fingerprints = None
        resumed = None
        if checkpoint is not None:
            from . import persist
            # once per call (one pass over the data), reused by every save
            data_fingerprints = persist.data_fingerprints(
                (train_x, train_y), (valid_x, valid_y), (test_x, test_y))
            with self._lock:
                resumed = persist.load_checkpoint(checkpoint, self, run, data_fingerprints)
            if resumed is not None:
                state.update(resumed)

        history = TrainingHistory()
        history.epochs = list(state["history"])
        best_validation_accuracy = state["best_validation_accuracy"]
        best_iteration = state["best_iteration"]
        test_accuracy = state["test_accuracy"]

        best_params = None
        if checkpoint is not None and patience is not None and resumed is not None:
            best_params = resumed.pop("best_params", None)
        stopped = state.get("stopped_early", False)

        def save(epoch, minibatch_index):
            if checkpoint is None:
                return
            from . import persist
            self._params_to_host()
            st = {"epoch": epoch, "minibatch_index": minibatch_index,
                  "best_validation_accuracy": best_validation_accuracy,
                  "best_iteration": best_iteration, "test_accuracy": test_accuracy,
                  "history": history.epochs}
            if stopped:
                st["stopped_early"] = True
            persist.save_checkpoint(checkpoint, self, run, st, data_fingerprints,
                                    best_params=best_params)

        with self._lock:
            self._params_to_engine()
            tx_e, ty_e = self._to_engine(train_x, train_y)
            vx_e, _ = self._to_engine(valid_x, valid_y)
            sx_e, _ = self._to_engine(test_x, test_y)
            last_good = self._snapshot()
            self._device_live = True
        interrupted = _InterruptFlag() if checkpoint is not None else None
        first_batch = state["minibatch_index"]
        try:
            for epoch in range(state["epoch"], epochs):
                if stopped:
                    break
                epoch_eta = base_lr
                if eta_schedule is not None:
                    epoch_eta = schedules.eta_for_epoch(eta_schedule, eta, epoch, history.epochs)
                    if epoch_eta is None:
                        stopped = True
                        print("Stopping: the learning-rate schedule reached its floor "
                              "after epoch {0}.".format(epoch - 1))
                        with self._lock:
                            save(epochs, 0)
                        break
                    if base_lr != eta:       # an optimizer: its lr scaled alike
                        epoch_eta = epoch_eta * (base_lr / eta)
                    self._check_in_floatx(epoch_eta, "the scheduled learning rate")
                    hyper = dict(hyper, **{lr_key: epoch_eta})
                if shuffle_seed is not None:
                    order = np.random.Generator(np.random.PCG64(
                        [shuffle_seed, epoch])).permutation(train_x.shape[0])
                    with self._lock:
                        tx_e, ty_e = self._to_engine(train_x[order], train_y[order])
                t0 = time.perf_counter()
                minibatch_index = first_batch
                while minibatch_index < num_training_batches:
                    iteration = num_training_batches * epoch + minibatch_index
                    if interrupted is not None and interrupted.raised:
                        self.engine.synchronize()
                        with self._lock:
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
                    with self._lock:
                        cost = self._train_batches(tx_e, ty_e, minibatch_index, stop, hyper,
                                                   **({} if augment is None
                                                      else {"augment": augment}))
                        # divergence: checked every chunk, so no NaN step is
                        # wasted and no NaN weight is ever saved
                        why = self._diverged(cost)
                        if why:
                            self._restore(last_good)
                    minibatch_index = stop
                    if why:
                        raise FloatingPointError(
                            "SGD: training diverged in epoch %d, before mini-batch %d "
                            "(%s); the network keeps the weights of its last good "
                            "epoch. %s" % (epoch, minibatch_index, why,
                                           self._divergence_hint(eta, lmbda, l2)))
                    if progress:
                        self._progress(epoch, minibatch_index, num_training_batches, t0)
                self.engine.synchronize()
                seconds = time.perf_counter() - t0
                history.training_seconds += seconds
                history.samples_trained += (num_training_batches - first_batch) * mbs
                first_batch = 0
                with self._lock:
                    last_good = self._snapshot()
                    # iteration is the last mini-batch of this epoch
                    iteration = num_training_batches * epoch + num_training_batches - 1
                    validation_accuracy = float(np.mean(
                        self._batch_accuracies(vx_e, valid_y, num_validation_batches)))
                print("Epoch {0}: validation accuracy {1:.2%}".format(
                    epoch, validation_accuracy))
                record = {"epoch": epoch, "validation_accuracy": validation_accuracy,
                          "test_accuracy": None, "seconds": seconds}
                if lr_key is not None:
                    record["eta"] = epoch_eta
                if monitor_training:
                    record["training_cost"], record["training_accuracy"] = \
                        self.evaluate_batches(train_x, train_y)
                if validation_accuracy >= best_validation_accuracy:
                    print("This is the best validation accuracy to date.")
                    best_validation_accuracy = validation_accuracy
                    best_iteration = iteration
                    with self._lock:
                        test_accuracy = float(np.mean(
                            self._batch_accuracies(sx_e, test_y, num_test_batches)))
                    print("The corresponding test accuracy is {0:.2%}".format(
                        test_accuracy))
                    record["test_accuracy"] = test_accuracy
                    if patience is not None:
                        best_params = [a.copy() for a in last_good]
                history.epochs.append(record)
                if patience is not None:
                    since = 0
                    for r in reversed(history.epochs):
                        if r["test_accuracy"] is not None:
                            break
                        since += 1
                    if since >= patience:
                        stopped = True
                        print("Stopping early: no new best validation accuracy in {0} "
                              "epochs.".format(since))
                with self._lock:
                    save(epochs if stopped else epoch + 1, 0)
        finally:
            if interrupted is not None:
                interrupted.restore()
            with self._lock:
                self._device_live = False
                self._params_to_host()
        if stopped and patience is not None and best_params is not None:
            with self._lock:
                self._restore(best_params)
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
        history.stopped_early = bool(stopped)
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

    def _check_in_floatx(self, value, what, given=None):
        """``value`` must stay a finite number, and not become 0 when it was
        not, in the network's float type (the kernels compute in it);
        ``given``: the argument it was computed from, for the message."""
        with np.errstate(over="ignore", under="ignore"):
            v = self.dtype.type(value)
        source = "" if given is None else " (from %r)" % (given,)
        if not np.isfinite(v):
            raise ValueError("SGD: %s is %g%s, which is not finite in %s (max %g)"
                             % (what, value, source, self.dtype, np.finfo(self.dtype).max))
        if value != 0 and v == 0:
            raise ValueError("SGD: %s is %g%s, which is 0 in %s (smallest %g): training "
                             "would change nothing" % (what, value, source, self.dtype,
                                                        np.finfo(self.dtype).smallest_subnormal))

    def _check_shuffle(self, shuffle):
        """The seed of the epochs' orders, or None for network3's order."""
        if shuffle is False or shuffle is None:
            return None
        if shuffle is True:
            return int(self._shuffle_seed)
        if isinstance(shuffle, (bool, np.bool_)) or not isinstance(shuffle, (int, np.integer)) \
                or shuffle < 0:
            raise ValueError("SGD: shuffle must be True, False or a seed (an integer >= 0), "
                             "got %r" % (shuffle,))
        return int(shuffle)

    def _check_optimizer(self, optimizer, eta, lmbda):
        """The optimizer of this call: network3's SGD (kept across calls)
        unless one is given."""
        from .optim import Optimizer
        if optimizer is None:
            current = self._plan.optimizer if self._plan is not None else None
            return current if isinstance(current, Network3SGD) else Network3SGD()
        if not isinstance(optimizer, Optimizer):
            raise ValueError("SGD: optimizer must be a fastnet.optim optimizer (SGD, "
                             "RMSprop, Adagrad, Adam, AdamW), got %r" % (optimizer,))
        if lmbda != 0:
            raise ValueError(
                "SGD: lmbda=%g is network3's L2 term of its own SGD; with optimizer=%r "
                "use the optimizer's weight_decay and lmbda=0" % (lmbda, optimizer))
        lr = getattr(optimizer, "lr", getattr(optimizer, "learning_rate", None))
        if lr is not None and eta != lr:
            warnings.warn("SGD: eta=%g is ignored: optimizer %r sets the learning rate "
                          "(lr=%g)" % (eta, optimizer, lr), UserWarning, stacklevel=4)
        return optimizer

    def _check_eta(self, eta):
        if isinstance(eta, (bool, np.bool_)):
            raise ValueError("SGD: eta must be a positive number, got %r" % (eta,))
        try:
            eta = float(eta)
        except (TypeError, ValueError):
            raise ValueError("SGD: eta must be a positive number, got %r" % (eta,))
        if not np.isfinite(eta) or eta <= 0:
            raise ValueError("SGD: eta must be finite and > 0, got %r" % (eta,))
        self._check_in_floatx(eta, "eta")
        return eta

    def _check_lmbda(self, lmbda):
        if isinstance(lmbda, (bool, np.bool_)):
            raise ValueError("SGD: lmbda must be a number >= 0, got %r" % (lmbda,))
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
                stacklevel=4)

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
        self._params_to_engine(force=True)

    def _diverged(self, cost):
        """Why training has diverged, or '' -- the same test on every engine:
        a parameter that is NaN or Inf, or a training cost (the last
        mini-batch's mean NLL) that is not finite or above DIVERGED_COST."""
        e = self.engine
        for group in self._plan.groups.values():
            if group.size and not np.isfinite(float(e.sum_of_squares(group.values))):
                return "a %s parameter became NaN or Inf" % (
                    "weight" if group.decayed else "bias")
        if cost is not None:
            c = float(cost)
            if not np.isfinite(c):
                return "the training cost became %s" % c
            if c > DIVERGED_COST:
                return "the training cost grew to %.3g" % c
        return ""

    @staticmethod
    def _divergence_hint(eta, lmbda, l2):
        # network3's L2 step multiplies w by (1 - eta*l2): past 2 it flips
        # and grows the weights whatever the gradients do
        if eta * l2 >= 1.0:
            return ("The L2 term is the likely culprit: eta * lmbda / "
                    "num_training_batches = %g >= 1, so each step scales the weights "
                    "by %g; try a smaller lmbda (it was %g) or eta (it was %g)."
                    % (eta * l2, 1.0 - eta * l2, lmbda, eta))
        return "Try a smaller eta (it was %g)." % eta

    def save(self, path):
        """Write the layers and weights to ``path`` (.npz, no pickle);
        ``fastnet.load(path)`` gives the network back."""
        from . import persist
        with self._lock:
            self._ensure_plan()
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

        n_layers = len(self.layers)
        if isinstance(layer, (bool, np.bool_)) or not isinstance(layer, (int, np.integer)):
            raise ValueError("output: layer must be an integer layer index, got %r"
                             % (layer,))
        index = int(layer) if layer >= 0 else n_layers + int(layer)
        if not 0 <= index < n_layers:
            raise ValueError("output: layer %r is out of range for %d layers"
                             % (layer, n_layers))
        x = as_x(x, "output", n_in=self.n_in, dtype=self.dtype)
        xp, n, n_batches = self._padded_batches(x)
        mbs = self.mini_batch_size
        width = self.layers[index].n_out_flat
        result = np.empty((n_batches * mbs, width), dtype=self.dtype)
        with self._lock:
            self._params_to_engine()
            x_e, _ = self._to_engine(xp, np.zeros(1, np.int32))
            for j in range(n_batches):
                out = self._plan.infer(x_e[j * mbs:(j + 1) * mbs], upto=index + 1)
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
        with self._lock:
            self._params_to_engine()
            x_e, _ = self._to_engine(x, y)
            return self._batch_accuracies(x_e, y, n_batches)

    def accuracy(self, data):
        """Mean of the per-mini-batch accuracies, as network3 reports it."""
        return float(np.mean(self.batch_accuracies(data)))

    def summary(self, print_fn=print):
        """Print each layer's type, output shape and parameter count, and the
        total (as Keras's model.summary); returns the total."""
        rows = [("Layer (type)", "Output Shape", "Param #")]
        total = 0
        for i, layer in enumerate(self.layers):
            n = sum(int(np.prod(shape)) for _, shape, _ in layer.param_shapes())
            total += n
            shape = "(None, %s)" % ", ".join(str(d) for d in layer.out_shape)
            rows.append(("%d %s" % (i, type(layer).__name__), shape, "{:,}".format(n)))
        widths = [max(len(r[c]) for r in rows) + 2 for c in range(3)]
        line = "-" * sum(widths)
        out = ["Network (mini-batch size %d, engine %s)" % (self.mini_batch_size,
                                                          self.engine.name), line]
        for k, r in enumerate(rows):
            out.append("".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
            if k == 0:
                out.append("=" * sum(widths))
        out += [line, "Total params: {:,}".format(total)]
        print_fn("\n".join(out))
        return total

    def train_batch(self, x, y, optimizer=None):
        """One training step on the rows of x (any count from 1 to the
        mini-batch size) with ``optimizer`` (a fastnet.optim optimizer; by
        default the one this network last trained with, if not network3's
        SGD, which needs SGD's eta).  Returns (loss, accuracy) of the batch
        at the weights before the update (the training pass: dropout on), as
        Keras's train_on_batch reports them.  Optimizer state carries on as
        in SGD."""
        from .optim import Optimizer
        if optimizer is None and self._plan is not None \
                and not isinstance(self._plan.optimizer, Network3SGD):
            optimizer = self._plan.optimizer
        if not isinstance(optimizer, Optimizer) or isinstance(optimizer, Network3SGD):
            raise ValueError("train_batch: give optimizer=, a fastnet.optim optimizer "
                             "(network3's SGD takes its eta through net.SGD), got %r"
                             % (optimizer,))
        x, y = self._dataset((x, y), "train_batch", need_batches=0)
        n = x.shape[0]
        if not 1 <= n <= self.mini_batch_size:
            raise ValueError("train_batch: x has %d rows; give 1 to %d (the network's "
                             "mini-batch size)" % (n, self.mini_batch_size))
        with self._lock:
            if self._training_thread is not None:
                raise RuntimeError("train_batch: this network is being trained by an SGD "
                                   "call in thread %r" % (self._training_thread,))
            plan = self._ensure_plan(optimizer)
            hyper = optimizer.hyper(None, 0.0)
            self._params_to_engine()
            x_e, y_e = self._to_engine(x, y)
            if self._step_team is None and hasattr(self.engine, "step_team"):
                self._step_team = self.engine.step_team()
            with (self._step_team.step() if self._step_team is not None
                  else contextlib.nullcontext()):
                cost = plan.run_step(x_e, y_e, self.step_count, hyper)
            self.step_count += 1
            pred = self.engine.to_host(plan.passes(n).infer_out[-1])
            self._params_to_host()
            loss = float(cost)
        if not np.isfinite(loss):
            raise FloatingPointError("train_batch: the loss became %s; try a smaller "
                                     "learning rate (lr=%r)" % (loss, getattr(optimizer, "lr", None)))
        return loss, self.layers[-1].accuracy_of(pred, y)

    def evaluate_batches(self, x, y):
        """(loss, accuracy) over every row of (x, y) -- whole mini-batches and
        a last partial one -- at inference (dropout scaled, network3's way):
        the mean of the per-row costs and the fraction of rows right."""
        x, y = self._dataset((x, y), "evaluate_batches", need_batches=0)
        n, mbs = x.shape[0], self.mini_batch_size
        if n == 0:
            raise ValueError("evaluate_batches: no rows")
        loss = hits = 0.0
        with self._lock:
            self._params_to_engine()
            x_e, y_e = self._to_engine(x, y)
            for a in range(0, n, mbs):
                b = min(n, a + mbs)
                cost, pred = self._plan.evaluate_batch(x_e[a:b], y_e[a:b])
                loss += float(cost) * (b - a)
                hits += self.layers[-1].accuracy_of(self.engine.to_host(pred), y[a:b]) * (b - a)
        return loss / n, hits / n

    def cost_and_grads(self, x, y, lmbda=0.0, num_training_batches=1):
        """network3's cost and T.grad(cost, params) on one mini-batch.

        cost = mean NLL (dropout path) + 0.5*lmbda*sum ||w||^2 / num_training_batches.
        Returns (cost, [gradient of each param in ``net.params`` order]).
        Nothing is updated; a dropout layer draws the mask of the next step.
        """
        lmbda = self._check_lmbda(lmbda)
        ntb = self._check_count(num_training_batches, "num_training_batches")
        x, y = self._dataset((x, y), "cost_and_grads", need_batches=0)
        if x.shape[0] != self.mini_batch_size:
            raise ValueError("cost_and_grads: x has %d rows; give exactly one "
                             "mini-batch of %d" % (x.shape[0], self.mini_batch_size))
        e = self.engine
        with self._lock:
            self._params_to_engine()
            plan = self._plan
            x_e, y_e = self._to_engine(x, y)
            nll = float(plan.forward_backward(x_e, y_e, self.step_count))
            l2 = lmbda / ntb
            decayed = plan.groups[True]
            sq = float(e.sum_of_squares(decayed.values)) if decayed.size else 0.0
            cost = nll + 0.5 * lmbda * sq / ntb
            grads = []
            for i, p in enumerate(self.params):
                g = e.to_host(plan.grads_of(i)).astype(self.dtype)
                if l2 and plan.param_index[i][0]:
                    g = g + l2 * p.get_value()
                grads.append(g)
        return cost, grads
