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

try:
    from .._cpu import conv as _conv, pool as _pool, dense as _dense
    from .._cpu import softmax as _softmax, update as _update
    from .._cpu import blas_info  # noqa: F401
except ImportError as e:  # the extension modules were not built
    raise ImportError(
        "fastnet's compiled CPU engine is not built (%s). Install fastnet with "
        "`pip install .` from the source tree (or `pip install -e .`, or "
        "`python setup.py build_ext --inplace` when developing); the NumPy "
        "engine works without it: get_engine('reference')." % e) from e

from .reference import empty, to_device, to_host, synchronize, keep_threshold  # noqa: F401

name = "cpu"

_MODULES = (_conv, _pool, _dense, _softmax, _update)

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
# update
sgd_update = _update.sgd_update
sum_of_squares = _update.sum_of_squares
# the compiled training loop: Network runs whole runs of mini-batches through it
from .cpu_trainer import make_plan, train_steps  # noqa: E402,F401


def set_num_threads(n):
    """Run the kernels on n OpenMP threads (n >= 1)."""
    for m in _MODULES:
        m._set_num_threads(n)


def get_num_threads():
    """The number of threads the kernels use (1 in a build without OpenMP)."""
    return _conv._get_num_threads() if openmp_enabled() else 1


def openmp_enabled():
    """Whether the kernels were built with OpenMP (else they run serially)."""
    return bool(_conv._openmp_enabled())


def vector_activations():
    """Whether sigmoid and tanh run through glibc's vector math library in
    this build (x86-64 with AVX2 or AVX-512, glibc >= 2.35), rather than the
    C library's scalar exp and tanh element by element."""
    return bool(_dense._vector_activations())
