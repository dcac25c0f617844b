"""Fixtures of the kernel tests (tests/test_conv.py, test_pool.py, ...).

``kernel_engine``: each engine in KERNEL_ENGINES, compared with the NumPy
reference by tests/kernel_check.py; an engine that is not available on this
machine (e.g. the compiled one before ``pip install .``) is skipped with the
reason -- except the compiled one under CI=true, which must be built.  ``float_dtype``: float32 and float64.
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# the engines the kernel tests compare with the reference ("cuda" can join)
KERNEL_ENGINES = ["cpu"]


@pytest.fixture(params=KERNEL_ENGINES)
def kernel_engine(request):
    from fastnet.engines import get_engine
    try:
        return get_engine(request.param)
    except ImportError as e:
        reason = "engine %r is not available: %s" % (request.param, e)
        if request.param == "cpu" and os.environ.get("CI") == "true":
            pytest.fail(reason + " -- CI=true: the compiled engine must be built")
        pytest.skip(reason)


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def float_dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def cpu_threads():
    """Restores the compiled engine's thread count after a test changes it."""
    from fastnet.engines import get_engine
    try:
        cpu = get_engine("cpu")
    except ImportError as e:
        pytest.skip("the compiled engine is not available: %s" % e)
    before = cpu.get_num_threads(), cpu.get_adaptive_threads(), cpu.team_window_s
    yield cpu
    cpu.set_num_threads(before[0])
    cpu.set_adaptive_threads(before[1])
    cpu.team_window_s = before[2]


@pytest.fixture(params=["float32", "float64"])
def floatx(request):
    """Each floatX in turn, set for the layers the test builds (restored
    after); yields its dtype."""
    import fastnet
    old = fastnet.get_floatx()
    fastnet.set_floatx(request.param)
    yield np.dtype(request.param)
    fastnet.set_floatx(old)


@pytest.fixture
def float64():
    """floatX float64 for the test (restored after)."""
    import fastnet
    old = fastnet.get_floatx()
    fastnet.set_floatx("float64")
    yield np.dtype(np.float64)
    fastnet.set_floatx(old)
