"""The compiled kernels' thread count: one value for every kernel module
(conv, pool, dense, softmax, update) and the compiled trainer, read by each
kernel call.  ``fastnet.engines.cpu.set_num_threads`` / ``get_num_threads``
are the public face."""

import operator
import os


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


def set(n):  # noqa: A001 -- the module is the namespace
    global count
    count = checked(n)
