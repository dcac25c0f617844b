"""The compiled CPU engine: the Cython kernels of csrc/ behind the common
kernel signatures (see reference.py for the contract).

Every kernel checks its arrays (dtype float32/float64, shape, C order,
writeable outputs) and raises ValueError naming the argument, then runs
without the GIL on OpenMP threads, with its products in scipy's BLAS or, for
the small matrices of many-tap convolutions and of a few rows through a big
dense layer, in csrc/bcast_gemm.h (no packing).  Arrays live
in host memory, so ``empty``, ``to_device``, ``to_host`` and ``synchronize``
are NumPy's, as in the reference engine.

Threads: ``OMP_NUM_THREADS`` if set, else ``os.cpu_count()``;
``set_num_threads(n)`` changes it for all kernels of this process.  scipy's
BLAS runs single-threaded under the kernels (see fastnet/_cpu/__init__.py).
"""

import contextlib
import os
import time

from .._cpu import threads as _threads

try:
    with _threads.openmp_start():
        from .._cpu import conv as _conv, pool as _pool, dense as _dense
        from .._cpu import softmax as _softmax, update as _update
        from .._cpu import augment as _augment
        from .._cpu import blas_info, isa_info  # noqa: F401
except ImportError as e:  # the extension modules were not built
    raise ImportError(
        "fastnet's compiled CPU engine is not built (%s). Install fastnet with "
        "`pip install .` from the source tree (or `pip install -e .`, or "
        "`python setup.py build_ext --inplace` when developing); the NumPy "
        "engine works without it: get_engine('reference')." % e) from e

from .reference import empty, to_device, to_host, synchronize, keep_threshold  # noqa: F401
from .. import activations as _activations

# the compiled kernels switch on vec_activations.h's codes: they must be the
# table's (fastnet/activations.py), which the other engines read
_built = _dense._activation_codes()
_table = {a.name: a.code for a in _activations.ALL}
if _built != _table:
    raise ImportError("fastnet's compiled kernels were built with activation codes %r "
                      "but fastnet/activations.py has %r; rebuild the extension"
                      % (_built, _table))

name = "cpu"


# conv
conv_forward = _conv.conv_forward
conv_backward = _conv.conv_backward
# pool (+ bias + activation)
pool_forward = _pool.pool_forward
pool_backward = _pool.pool_backward
# dense (+ bias + activation), dropout
dense_forward = _dense.dense_forward
dense_backward = _dense.dense_backward
dropout_bits = _dense.dropout_bits
dropout_forward = _dense.dropout_forward
dropout_backward = _dense.dropout_backward
# softmax
softmax_forward = _softmax.softmax_forward
softmax_nll = _softmax.softmax_nll
softmax_argmax = _softmax.softmax_argmax
sigmoid_bce = _softmax.sigmoid_bce
mse_loss = _softmax.mse_loss
# update
sgd_update = _update.sgd_update
# the optimizers' kernels (update.pyx's table; reference.py's signatures)
for _name in _update.OPTIMIZERS:
    if _name != "sgd_update":
        globals()[_name] = _update.optimizer_kernel(_name)
sum_of_squares = _update.sum_of_squares
# augmentation (fastnet/augment.py's transforms; augment.pxd)
augment = _augment.augment


def set_num_threads(n):
    """Run the kernels on n OpenMP threads (n >= 1).  The compiled training
    loop runs each step on at most n, as many as it measures fastest,
    unless set_adaptive_threads(False)."""
    _threads.set(n)


def set_adaptive_threads(flag):
    """Whether the compiled training loop chooses, by measuring its steps,
    how many of the get_num_threads() threads a step runs on (True, the
    default; FASTNET_ADAPTIVE_THREADS=0 sets False) or always runs on all of
    them.  Either way the trained weights are the same bit for bit."""
    _threads.set_adaptive(flag)


def get_adaptive_threads():
    """See set_adaptive_threads."""
    return _threads.adaptive


#: True in a child process forked from one whose kernels had threads
forked_to_one_thread = False


def _after_fork_in_child():
    """libgomp's thread pool does not survive fork(): a child that opens a
    parallel region with the parent's thread count waits forever for
    threads that do not exist.  The child runs the kernels on one thread
    (set_num_threads(n) there opts back in, at the user's risk; the 'spawn'
    and 'forkserver' start methods have no such limit)."""
    global forked_to_one_thread
    if get_num_threads() > 1:
        _threads.set(1)
        forked_to_one_thread = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_num_threads():
    """The number of threads the kernels use (1 in a build without OpenMP)."""
    return _threads.count if openmp_enabled() else 1


def wait_policy():
    """How the kernels' OpenMP threads wait: ``{"spincount": n or None,
    "source": why}`` (fastnet/_cpu/threads.py: a short spin, then sleep,
    unless the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT)."""
    return dict(_threads.wait_policy)


def openmp_enabled():
    """Whether the kernels were built with OpenMP (else they run serially)."""
    return bool(_conv._openmp_enabled())


def vector_activations():
    """Whether sigmoid and tanh run through glibc's vector math library in
    this build (x86-64 with AVX2 or AVX-512, glibc >= 2.35), rather than the
    C library's scalar exp and tanh element by element."""
    return bool(_dense._vector_activations())


def info():
    """What this build of the compiled engine runs: ``isa`` (the
    instruction-set level of the loaded kernels: 'avx512', 'avx2', 'x86_64',
    or 'native' / 'generic' for a one-level build), ``isa_reason`` (why that
    one: the CPU's highest level, or FASTNET_ISA), ``isa_built`` (the levels
    this build has), ``cpu_levels`` (those the CPU runs), ``directory`` (where
    the kernels load from), ``openmp``, ``threads``, ``vector_activations``,
    ``fast_products`` (csrc/bcast_gemm.h's FMA products in use, else BLAS),
    ``blas`` (blas_info())."""
    isa = isa_info()
    return {"isa": isa["level"], "isa_reason": isa["reason"],
            "isa_built": isa["built"], "cpu_levels": isa["cpu"],
            "directory": isa["directory"], "openmp": openmp_enabled(),
            "threads": get_num_threads(), "adaptive_threads": get_adaptive_threads(),
            "vector_activations": vector_activations(),
            "fast_products": bool(_conv._fast_products()), "blas": blas_info()}


# ---------------------------------------------------------------------------
# the compiled training loop: a plan's fused op list run without the GIL
# ---------------------------------------------------------------------------
try:
    from .._cpu import trainer as _trainer
except ImportError as e:  # the extension module was not built
    raise ImportError(
        "fastnet's compiled trainer (fastnet._cpu.trainer) is not built (%s); "
        "rebuild with `python setup.py build_ext --inplace` or `pip install -e .`"
        % e) from e


def _is_token(a, kind):
    from ..plan import Token
    if type(a) is not Token:
        return False
    return a.name == kind or (kind == "hyper" and a.name.startswith("hyper:"))


#: seconds of steps the thread team measures at a time; None: csrc/team.pxd's
#: TEAM_WINDOW_S (tests shorten it to make the team change counts often)
team_window_s = None


class CompiledProgram(object):
    """What ``compile_program`` returns: the plan's fused ops as a compiled
    program (csrc/trainer.pyx), rebuilt when the thread count changes."""

    def __init__(self, plan, n=None):
        self.plan = plan
        self.mbs = plan.mbs if n is None else int(n)
        self.ops = [op for part in plan.fused_ops(self.mbs) for op in part]
        self.n_in = plan.layers[0].n_in_flat
        self.n_classes = plan.output_layer.n_out_flat
        self._build()

    def _build(self):
        self.n_threads = get_num_threads()
        self.adaptive = get_adaptive_threads()
        self._c = _trainer.Program(self.ops, self.mbs, self.n_in, self.n_classes,
                                   self.plan.dtype, self.n_threads, _is_token,
                                   keep_threshold, self.adaptive, team_window_s)
        self.hyper_names = [n[len("hyper:"):] for n in self._c.hyper_names]

    @property
    def opcodes(self):
        """The kernel names of the program's records, in order."""
        return list(self._c.opcodes)

    def team(self):
        """How many threads the steps have been running on and why: a dict
        with ``threads`` (the count measured fastest so far), ``max_threads``,
        ``adaptive``, ``windows`` (~10 ms runs of steps measured), ``probes``
        (windows tried at another count), ``switches`` and ``steps_per_s``
        by count (csrc/team.pxd)."""
        return self._c.team()

    @property
    def last_cost(self):
        """Mean NLL of the last mini-batch trained (NaN before any)."""
        return self._c.last_cost

    def run(self, x, y, first, stop, hyper, counter0, augment=None):
        """Train mini-batches first .. stop-1 of (x, y) in one compiled call
        (see ``run_program`` for the arguments); returns the last cost."""
        return run_program(self, x, y, first, stop, hyper, counter0, augment)


class StepTeam(object):
    """The thread team for training steps run kernel by kernel from Python
    (``Network.train_batch``, so ``fastnet.keras``'s ``fit``): the compiled
    loop's controller (csrc/team.pxd, through ``ThreadTeam``), fed the time
    of each ``with team.step():`` block; while a block runs, the kernels
    called from its Python thread use the count the team chose
    (threads.for_step).  A team per network, like the compiled program's."""

    def __init__(self):
        self._team = None
        self._max = 0
        self._elapsed = 0.0
        self._steps = 0

    @contextlib.contextmanager
    def step(self):
        n = get_num_threads()
        if n <= 1 or not get_adaptive_threads() or _threads.step_running():
            yield
            return
        if self._team is None or self._max != n:
            self._team = _trainer.ThreadTeam(n, True, team_window_s)
            self._max = n
            self._elapsed, self._steps = 0.0, 0
        _threads.begin_step(self._team.threads)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            _threads.end_step()
            self._elapsed += time.perf_counter() - t0
            self._steps += 1
            if self._elapsed >= self._team.window_s:
                self._team.window(self._elapsed / self._steps)
                self._elapsed, self._steps = 0.0, 0
            _threads.note_measured(self._team.best)

    def team(self):
        """As CompiledProgram.team(), or None before a step ran adaptively."""
        return None if self._team is None else self._team.state()


def step_team():
    """A StepTeam for one network's kernel-by-kernel training steps."""
    return StepTeam()


def compile_program(plan, n=None):
    """The compiled training loop of ``plan`` (a fastnet.plan.Plan) for
    mini-batches of ``n`` rows (default: the plan's mini-batch size)."""
    from ..plan import Plan
    if not isinstance(plan, Plan):
        raise ValueError("compile_program: plan must be a fastnet Plan, got %s"
                         % type(plan).__name__)
    return CompiledProgram(plan, n)


def _index(value, name):
    import operator
    if isinstance(value, bool):
        raise ValueError("run_program: %s must be an integer, got %r" % (name, value))
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError("run_program: %s must be an integer, got %r" % (name, value))


def run_program(program, x, y, first, stop, hyper, counter0, augment=None):
    """Train mini-batches first .. stop-1 of (x, y) in one compiled call.

    program: from compile_program;  x (n, n_in) float array of the plan's
    dtype;  y (n,) int32 labels in [0, n_classes) or, for an output layer
    trained on targets, (n, n_out) floats of the plan's dtype;  0 <= first
    <= stop <= n // mini_batch_size;  hyper: the optimizer's hyper-parameters
    by name (finite reals);  counter0 >= 0 the dropout counter of step
    ``first`` (step i uses counter0 + i - first);  augment: None or (table,
    seed) -- fastnet.augment's table and a seed in [0, 2**64): each step
    trains on its rows distorted as ``augment(rows, table, seed, counter,
    out)`` would (784-wide rows only).  Every argument is checked
    here, before the compiled loop runs; a bad one raises ValueError naming it.
    """
    import math
    import numbers
    import numpy as np
    if not isinstance(program, CompiledProgram):
        raise ValueError("run_program: program must come from compile_program, got %s"
                         % type(program).__name__)
    plan = program.plan
    labels = program._c.target_width <= 0
    y_dtype = np.dtype(np.int32) if labels else plan.dtype
    for name, a, dtype in (("x", x, plan.dtype), ("y", y, y_dtype)):
        if not isinstance(a, np.ndarray):
            raise ValueError("run_program: %s must be a numpy.ndarray, got %s"
                             % (name, type(a).__name__))
        if a.dtype != dtype:
            raise ValueError("run_program: %s has dtype %s; expected %s"
                             % (name, a.dtype, dtype))
    if x.ndim != 2 or x.shape[1] != program.n_in:
        raise ValueError("run_program: x has shape %s; expected (n, %d)"
                         % (x.shape, program.n_in))
    want = (x.shape[0],) if labels else (x.shape[0], program._c.target_width)
    if y.shape != want:
        raise ValueError("run_program: y has shape %s; expected %s (one %s per row of x)"
                         % (y.shape, want, "label" if labels else "target row"))
    # the compiled loop reads raw memory: an unaligned or strided array is
    # copied, once per call, rather than refused
    if not x.flags.c_contiguous or not x.flags.aligned:
        x = np.ascontiguousarray(x).copy()
    if not y.flags.c_contiguous or not y.flags.aligned:
        y = np.ascontiguousarray(y).copy()
    first = _index(first, "first")
    stop = _index(stop, "stop")
    n_batches = x.shape[0] // program.mbs
    if not 0 <= first <= n_batches:
        raise ValueError("run_program: first must be in [0, %d], got %d" % (n_batches, first))
    if not first <= stop <= n_batches:
        raise ValueError("run_program: stop must be in [first=%d, n // mini_batch_size=%d], "
                         "got %d" % (first, n_batches, stop))
    if not isinstance(hyper, dict):
        raise ValueError("run_program: hyper must be a dict of the optimizer's "
                         "hyper-parameters, got %s" % type(hyper).__name__)
    values = {}
    for name in program.hyper_names:
        v = hyper.get(name)
        if isinstance(v, bool) or not isinstance(v, numbers.Real) \
                or not math.isfinite(float(v)):
            raise ValueError("run_program: hyper-parameter %s must be a finite real, "
                             "got %r" % (name, v))
        values["hyper:" + name] = float(v)
    counter0 = _index(counter0, "counter0")
    if not 0 <= counter0 < (1 << 64) - (stop - first):
        raise ValueError("run_program: counter0 must be in [0, 2**64), got %d" % counter0)
    if stop == first:
        return program.last_cost
    yb = y[first * program.mbs:stop * program.mbs]
    if labels and yb.size and (int(yb.min()) < 0 or int(yb.max()) >= program.n_classes):
        raise ValueError("run_program: y has labels outside [0, %d)" % program.n_classes)
    aug = ()
    if augment is not None:
        from ..augment import check_table, PIXELS
        from .reference import _u64_arg
        if not isinstance(augment, tuple) or len(augment) != 2:
            raise ValueError("run_program: augment must be None or (table, seed), got %r"
                             % (augment,))
        table = check_table(augment[0], "run_program")
        seed = _u64_arg("run_program", "augment seed", augment[1])
        if program.n_in != PIXELS:
            raise ValueError("run_program: augment needs 784-wide rows (28 x 28 images); "
                             "the program takes %d" % program.n_in)
        if table.shape[0]:
            aug = (table, seed)
    if program.n_threads != get_num_threads() or program.adaptive != get_adaptive_threads():
        program._build()
    cost = program._c.run(x, y, first, stop, values, counter0, *aug)
    if program.adaptive:
        # the evaluations that follow run their forward kernels on as many
        # threads as the steps found fastest (threads.for_inference)
        _threads.note_measured(program._c.team_threads)
    return cost
