"""The GPU the cuda engine runs on, found through cuda-python.

``require_device()`` returns a DeviceInfo (name, compute capability, SMs,
total and free memory) or raises ``RuntimeError("no CUDA device found; use
device='cpu'")`` with the reason when there is no driver or no GPU.
``check_fits(nbytes, what)`` refuses, before any copy, data that would not fit
in the device's free memory.

Under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) nothing is queried: the
device is described as the simulator, and memory is not checked.
"""

from numba import config

from .. import CUDA_EXTRA_HINT, NO_DEVICE  # noqa: F401  (NO_DEVICE: this module's surface)

SIMULATOR = bool(config.ENABLE_CUDASIM)

# keep this much free beyond the data: workspaces, the CUDA context's own
# allocations, and the kernels' modules
RESERVE_BYTES = 256 << 20


class DeviceMemoryError(MemoryError):
    """The data asked of the GPU does not fit in its free memory."""


class DeviceInfo(object):
    """What the engine knows about its GPU."""

    def __init__(self, ordinal, name, compute_capability, multiprocessors,
                 total_memory, simulated=False):
        self.ordinal = ordinal
        self.name = name
        self.compute_capability = compute_capability
        self.multiprocessors = multiprocessors
        self.total_memory = total_memory
        self.simulated = simulated

    def free_memory(self):
        """Free device memory in bytes now (None under the simulator)."""
        if self.simulated:
            return None
        return _free_memory()

    def __repr__(self):
        if self.simulated:
            return "DeviceInfo(Numba CUDA simulator)"
        return ("DeviceInfo(%d: %s, sm_%d%d, %d SMs, %.1f GiB)"
                % (self.ordinal, self.name, self.compute_capability[0],
                   self.compute_capability[1], self.multiprocessors,
                   self.total_memory / 2.0 ** 30))


_info = None


def _driver():
    from cuda.bindings import driver
    return driver


def _check(result, what):
    """cuda.bindings calls return (status, values...): raise on a bad status."""
    driver = _driver()
    status = result[0]
    if status != driver.CUresult.CUDA_SUCCESS:
        raise RuntimeError("%s (%s failed: %s)" % (NO_DEVICE, what, status))
    return result[1:] if len(result) > 2 else (result[1] if len(result) == 2 else None)


def _free_memory():
    free, _total = _check(_driver().cuMemGetInfo(), "cuMemGetInfo")
    return int(free)


def _discover(ordinal=0):
    try:
        driver = _driver()
        _check(driver.cuInit(0), "cuInit")
        count = _check(driver.cuDeviceGetCount(), "cuDeviceGetCount")
    except RuntimeError as e:
        # cuda.pathfinder raises a RuntimeError subclass when libcuda is absent
        msg = str(e)
        if msg.startswith(NO_DEVICE):
            raise
        raise RuntimeError("%s (the NVIDIA driver could not be loaded: %s)" % (NO_DEVICE, msg))
    except ImportError as e:
        raise RuntimeError("%s (cuda-python is not installed: %s; %s)"
                           % (NO_DEVICE, e, CUDA_EXTRA_HINT))
    if count < 1:
        raise RuntimeError("%s (the driver sees no GPU)" % NO_DEVICE)
    if ordinal >= count:
        raise RuntimeError("%s (device %d asked for, %d present)" % (NO_DEVICE, ordinal, count))
    from cuda.core import Device
    dev = Device(ordinal)
    dev.set_current()
    props = dev.properties
    cc = tuple(dev.compute_capability)
    total = int(_check(driver.cuDeviceTotalMem(dev.device_id), "cuDeviceTotalMem"))
    return DeviceInfo(ordinal, dev.name, (int(cc[0]), int(cc[1])),
                      int(props.multiprocessor_count), total)


def require_device():
    """The DeviceInfo of GPU 0, or RuntimeError(NO_DEVICE ...) when none."""
    global _info
    if _info is None:
        if SIMULATOR:
            _info = DeviceInfo(0, "Numba CUDA simulator", (0, 0), 1, 0, simulated=True)
        else:
            _info = _discover(0)
    return _info


def is_available():
    """True when a GPU and its driver are present (never raises)."""
    try:
        require_device()
    except Exception:
        return False
    return True


def check_fits(nbytes, what="the data"):
    """Raise DeviceMemoryError when ``nbytes`` more would not fit on the GPU."""
    info = require_device()
    free = info.free_memory()
    if free is None:
        return
    if nbytes + RESERVE_BYTES > free:
        raise DeviceMemoryError(
            "%s needs %.1f MiB on the GPU but %s has %.1f MiB free of %.1f MiB "
            "(%.0f MiB kept in reserve); use a smaller data set or device='cpu'"
            % (what, nbytes / 2.0 ** 20, info.name, free / 2.0 ** 20,
               info.total_memory / 2.0 ** 20, RESERVE_BYTES / 2.0 ** 20))
