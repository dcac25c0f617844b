"""Engines: one set of kernels per place they run.

``reference``  NumPy twin of every kernel (the oracle; float32 and float64)
``cpu``        the compiled Cython kernels in csrc/ (OpenMP, BLAS)
``cuda``       Numba CUDA kernels (device-resident data)

All share one signature per kernel (see reference.py), so layers, tests and
benches are written once and parametrised over engines.
"""

import importlib
import os

ENGINES = ("reference", "cpu", "cuda")
#: what every "no GPU here" error of the cuda engine starts with
NO_DEVICE = "no CUDA device found; use device='cpu'"
CUDA_EXTRA_HINT = 'pip install "fastnet[cuda]"'


class CudaUnavailableError(RuntimeError, ImportError):
    """The cuda engine cannot be imported (numba-cuda missing or broken): a
    RuntimeError like every "no CUDA device" error, and an ImportError for
    code that caught the ModuleNotFoundError this used to be."""


_DEVICE_TO_ENGINE = {"cpu": "cpu", "cuda": "cuda", "gpu": "cuda"}
_loaded = {}


def default_engine_name():
    """FASTNET_ENGINE, else the engine of FASTNET_DEVICE, else 'cpu'."""
    name = os.environ.get("FASTNET_ENGINE")
    if name:
        return name
    device = os.environ.get("FASTNET_DEVICE")
    if device:
        return engine_for_device(device, "FASTNET_DEVICE")
    return "cpu"


def engine_for_device(device, where="device"):
    try:
        return _DEVICE_TO_ENGINE[str(device).lower()]
    except KeyError:
        raise ValueError("%s: unknown device %r; expected 'cpu' or 'cuda'"
                         % (where, device))


def get_engine(name=None):
    """The engine module called ``name`` ('reference', 'cpu' or 'cuda')."""
    if name is None:
        name = default_engine_name()
    if name not in ENGINES:
        raise ValueError("unknown engine %r; expected one of %s"
                         % (name, ", ".join(ENGINES)))
    if name not in _loaded:
        try:
            _loaded[name] = importlib.import_module("." + name, __name__)
        except ImportError as exc:
            if name != "cuda":
                raise
            # numba (or its CUDA part) missing or broken: the documented error,
            # not a ModuleNotFoundError from deep inside the engine
            raise CudaUnavailableError(
                "%s (the cuda engine needs numba-cuda, which could not be imported: "
                "%s; %s)" % (NO_DEVICE, exc, CUDA_EXTRA_HINT)) from exc
    return _loaded[name]


def available_engines():
    """Names of the engines that import on this machine."""
    names = []
    for name in ENGINES:
        try:
            engine = get_engine(name)
        except Exception:
            continue
        # the cuda module imports anywhere; it is usable only with a device
        if hasattr(engine, "available") and not engine.available():
            continue
        names.append(name)
    return names
