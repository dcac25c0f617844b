"""Every CUDA kernel compiles to PTX for sm_80 and sm_90, float32 and
float64, with the GPU's block sizes and warp shuffles -- no GPU needed.

``numba.cuda.compile_ptx`` runs NVVM (from the cu13 wheels) without a
driver.  A kernel that calls a ``@cuda.jit(device=True)`` function makes
numba ask the current device for its compute capability, so the test stubs
``numba.cuda.dispatcher.get_current_device`` (a private name: numba-cuda is
pinned below 0.31) with the capability being compiled for.
"""

import re
from unittest import mock

import pytest

import conformance_util as cu  # noqa: E402

cu.import_or_skip("numba_cuda", "the CUDA tests need the cuda extra: pip install '.[cuda]'")

from numba import config  # noqa: E402

if config.ENABLE_CUDASIM:
    pytest.skip("PTX compilation needs NVVM; NUMBA_ENABLE_CUDASIM=1 is set",
                allow_module_level=True)

from numba import cuda  # noqa: E402
import numba.cuda.dispatcher as _dispatcher  # noqa: E402

from fastnet.engines import cuda as E  # noqa: E402
from fastnet.engines.cuda import common  # noqa: E402

CCS = [(8, 0), (9, 0)]
DTYPES = ["float32", "float64"]
KERNELS = sorted(E.kernel_signatures("float32"))
# kernels that reduce across a block: their PTX must hold warp shuffles
REDUCING = {"pool_backward", "softmax_nll", "sum_of_squares_1d", "sum_of_squares_2d",
            "sum_of_squares_3d", "sum_of_squares_4d"}
# float64 arithmetic in a float32 kernel would run at a fraction of the speed
F64_MATH = re.compile(r"\b(add|sub|mul|fma\.rn|div\.rn|div\.full|neg|max|min)\.f64\b")
# ... except where float64 is the design: augment carries each image in double
# (as the CPU engines do) and rounds to float32 once, at the end
F64_BY_DESIGN = {"dropout_bits", "augment"}


class _StubDevice(object):
    def __init__(self, cc):
        self.compute_capability = cc


def test_gpu_block_sizes_outside_the_simulator():
    assert not common.SIMULATOR and not common.SMALL_BLOCKS
    assert common.TPB == 256 and common.TILE == 16
    assert (common.CONV_TR, common.CONV_TC, common.CONV_TK) == (32, 8, 16)
    assert common.USE_WARP_SHUFFLE or common.os.environ.get("FASTNET_CUDA_NO_SHUFFLE") == "1"


def test_every_kernel_has_both_dtypes():
    assert sorted(E.kernel_signatures("float64")) == KERNELS
    assert len(KERNELS) >= 18


@pytest.mark.parametrize("cc", CCS, ids=["sm_80", "sm_90"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kname", KERNELS)
def test_kernel_compiles_to_ptx(kname, dtype, cc):
    pyfunc, sigs = E.kernel_signatures(dtype)[kname]
    with mock.patch.object(_dispatcher, "get_current_device", lambda: _StubDevice(cc)):
        for signature in sigs:
            ptx, restype = cuda.compile_ptx(pyfunc, signature, cc=cc)
            assert ".target sm_%d%d" % cc in ptx
            assert ".entry" in ptx
            if dtype == "float32" and kname not in F64_BY_DESIGN:
                bad = F64_MATH.findall(ptx)
                assert not bad, "%s float32 does float64 math: %s" % (kname, sorted(set(bad)))
            if kname in REDUCING and common.USE_WARP_SHUFFLE:
                assert "shfl.sync" in ptx, "%s: no warp shuffle in the PTX" % kname
