"""The compiled kernels' thread count: one value for every kernel module
(conv, pool, dense, softmax, update) and the compiled trainer, read by each
kernel call.  ``fastnet.engines.cpu.set_num_threads`` / ``get_num_threads``
are the public face."""

import operator
import os
import threading
import time


def default():
    """OMP_NUM_THREADS (its first entry) if set, else os.cpu_count()."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if value:
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n >= 1:
            return n
    return os.cpu_count() or 1


def checked(n):
    """n as a thread count >= 1, else ValueError."""
    try:
        k = operator.index(n)
    except TypeError:
        raise ValueError("set_num_threads: n must be an integer >= 1, got %r" % (n,)) from None
    if k < 1:
        raise ValueError("set_num_threads: n must be >= 1, got %d" % k)
    return k


#: the number of OpenMP threads every kernel call uses
count = default()

#: the compiled training loop's thread team adapts (csrc/team.pxd): each
#: step runs on the count of threads, up to ``count``, measured fastest;
#: FASTNET_ADAPTIVE_THREADS=0 (or set_adaptive_threads(False)) pins it
ADAPTIVE_ENV = "FASTNET_ADAPTIVE_THREADS"
adaptive = os.environ.get(ADAPTIVE_ENV, "").strip() not in ("0", "false", "no", "off")


#: the count the compiled training loop last measured fastest, and when
#: (time.monotonic()); fastnet.engines.cpu.run_program records it
measured = {"threads": None, "at": 0.0}
#: how long that measurement speaks for the machine
MEASURED_FRESH_S = 5.0


def note_measured(n):
    measured["threads"] = n
    measured["at"] = time.monotonic()


# a training step run kernel by kernel from Python (Network.train_batch)
# has its own team (fastnet.engines.cpu.StepTeam), which sets the count of
# the step's kernels here, for the calling Python thread only
_step = threading.local()


def begin_step(n):
    _step.threads = n


def end_step():
    _step.threads = None


def step_running():
    return getattr(_step, "threads", None) is not None


def for_step():
    """Threads for a training kernel called from Python: the step team's
    choice while a step runs in this Python thread, else ``count``."""
    n = getattr(_step, "threads", None)
    return count if n is None else n


def for_inference():
    """Threads for a forward kernel called from Python (an evaluation
    between training runs, predict, accuracy): a running step's count
    (for_step), else ``count``, or the count the training loop measured
    fastest in the last MEASURED_FRESH_S seconds when that is fewer (another
    process holds a core).  Forward results do not depend on the thread
    count."""
    n = getattr(_step, "threads", None)
    if n is not None:
        return n
    n = measured["threads"]
    if (adaptive and n is not None and n < count
            and time.monotonic() - measured["at"] < MEASURED_FRESH_S):
        return n
    return count


def set(n):  # noqa: A001 -- the module is the namespace
    global count
    count = checked(n)


def set_adaptive(flag):
    global adaptive
    if not isinstance(flag, bool):
        raise ValueError("set_adaptive_threads: flag must be True or False, got %r" % (flag,))
    adaptive = flag


# ---------------------------------------------------------------------------
# how OpenMP's threads wait
# ---------------------------------------------------------------------------
# libgomp's threads spin when they wait (for work, at a join) for up to
# 300,000 rounds of `pause`, ~20 ms, before sleeping.  On free cores that is
# fastest; when another process holds a core it is a collapse: the threads
# burn their time slices spinning for a thread the scheduler has put aside
# (measured on 2 cores beside one busy loop: the FC net at mini-batch 128 at
# 4,000 samples/s instead of 360,000).  A shorter spin keeps the workers
# awake through the gaps of a training step and lets them sleep, giving the
# core back, when a wait is longer.  How short: on free cores 1,000 rounds
# cost the dropout net 18 % and the FC net at mini-batch 128 22 % (workers
# asleep when the next region starts), 10,000 nothing measurable; beside a
# busy loop 10,000 rounds train 2-2.5x faster than libgomp's default
# (bench/run.py --busy 1; README "A busy machine").
# libgomp reads its settings once, when it is loaded: fastnet sets
# GOMP_SPINCOUNT for that moment (unless the user chose a policy) and puts
# the environment back, so child processes and other libraries see the
# user's own.

#: libgomp spin rounds before a waiting thread sleeps (one round ~ 50 ns)
SPINCOUNT = 10000

#: what fastnet did about the wait policy (fastnet.engines.cpu.info / `fastnet info`)
wait_policy = {"spincount": None, "source": "not started"}

_USER_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def _libgomp_loaded():
    """Whether a libgomp is already mapped into this process (Linux)."""
    try:
        with open("/proc/self/maps") as f:
            return any("libgomp" in line for line in f)
    except OSError:
        return False


class openmp_start(object):
    """Context for the first import of the compiled modules: libgomp starts
    with fastnet's wait policy unless the user set one."""

    def __enter__(self):
        self._set = False
        user = [v for v in _USER_VARS if os.environ.get(v, "").strip()]
        if user:
            wait_policy.update(spincount=None, source="the user's %s" % ", ".join(
                "%s=%s" % (v, os.environ[v]) for v in user))
        elif _libgomp_loaded():
            wait_policy.update(spincount=None, source=(
                "libgomp was loaded before fastnet (by another library): its default "
                "spin stands; set OMP_WAIT_POLICY=passive on a busy machine"))
        else:
            os.environ["GOMP_SPINCOUNT"] = str(SPINCOUNT)
            self._set = True
            wait_policy.update(spincount=SPINCOUNT, source="fastnet's default")
        return self

    def __exit__(self, *exc):
        if self._set:
            os.environ.pop("GOMP_SPINCOUNT", None)
        return False
