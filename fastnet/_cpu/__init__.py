"""fastnet's compiled CPU kernels (built from csrc/*.pyx by setup.py).

``conv``, ``pool``, ``dense``, ``softmax``, ``update``: one extension module
per kernel family (and ``trainer``); fastnet/engines/cpu.py is the engine
built on them.

Instruction-set dispatch.  A build for x86-64 compiles every module three
times, into _cpu/x86_64/ (SSE2, any x86-64), _cpu/avx2/ (x86-64-v3: AVX2 +
FMA) and _cpu/avx512/ (x86-64-v4: AVX-512), each under its plain name
(``fastnet._cpu.conv``).  Importing this package asks the probe
``fastnet._cpu._isa`` which levels the CPU and its operating system run, and
puts the highest built one's folder first on this package's ``__path__``, so
``from fastnet._cpu import conv`` -- every importer's way in -- loads that
level.  ``FASTNET_ISA=x86_64|avx2|avx512`` forces a level (RuntimeError if
the CPU lacks it or the build does not have it).  A ``FASTNET_NATIVE=1``
build has one level, native/; a build for another CPU one level, generic/.
``isa_info()`` says which level loaded and why.

Importing this package limits scipy's BLAS to one thread.  The kernels call
BLAS from inside their own OpenMP threads; OpenBLAS's thread pool and
OpenMP's spinning workers on the same cores slow each other down a
hundredfold (measured on 2 cores: a 640x40x500 sgemm between two parallel
loops took 14.5 ms instead of 0.1 ms).  Only scipy's copy of OpenBLAS is
affected; NumPy's own BLAS is a separate library and keeps its threads.
"""

import ctypes
import ctypes.util
import os

__all__ = ["blas_info"]

_blas = {"library": None, "limited": False, "reason": "not tried"}


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _library_of(address):
    """Path of the shared library holding this code address (dladdr)."""
    for libname in (None, ctypes.util.find_library("dl")):
        try:
            lib = ctypes.CDLL(libname)
            dladdr = lib.dladdr
            break
        except (OSError, AttributeError):
            continue
    else:
        return None
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    info = _DlInfo()
    if not dladdr(address, ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.fsdecode(info.dli_fname)


def _limit_blas_threads():
    """Set scipy's OpenBLAS to one thread; record what happened.

    The library is found from scipy.linalg.cython_blas (the module whose
    function pointers the kernels call): a symbol looked up through its
    handle resolves in the BLAS it is linked with, not in NumPy's copy.
    """
    try:
        from scipy.linalg import cython_blas
        lib = ctypes.CDLL(cython_blas.__file__)
    except Exception as e:  # noqa: BLE001 -- no scipy, or not a shared library
        _blas["reason"] = "could not open scipy's BLAS module (%s)" % e
        return
    for setter in ("scipy_openblas_set_num_threads", "openblas_set_num_threads",
                   "scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_"):
        fn = getattr(lib, setter, None)
        if fn is not None:
            fn.argtypes, fn.restype = [ctypes.c_int], None
            fn(1)
            _blas["limited"] = True
            _blas["reason"] = "%s(1)" % setter
            try:
                _blas["library"] = _library_of(ctypes.cast(fn, ctypes.c_void_p).value)
            except Exception:  # noqa: BLE001 -- the path is only informative
                pass
            return
    _blas["reason"] = ("no OpenBLAS thread setter found beside scipy's BLAS; if it "
                       "runs its own threads, set them to 1 for full speed")


def blas_info():
    """Which BLAS library the kernels call and whether it was set to one thread."""
    return dict(_blas)


# ---------------------------------------------------------------------------
# which compiled modules: the instruction-set level
# ---------------------------------------------------------------------------
#: the levels of a dispatching x86-64 build (setup.py's X86_LEVELS), best first
LEVELS = ("avx512", "avx2", "x86_64")
#: what each level needs of the CPU
LEVEL_NEEDS = {"avx512": "x86-64-v4: AVX-512 F/BW/CD/DQ/VL",
               "avx2": "x86-64-v3: AVX2, FMA, BMI1/2, F16C",
               "x86_64": "x86-64: SSE2"}
#: a build of one level: FASTNET_NATIVE=1 (-march=native), or a CPU other than x86-64
SINGLE_LEVELS = ("native", "generic")
ISA_ENV = "FASTNET_ISA"

_choice = {"level": None, "reason": "not chosen", "built": (), "cpu": None,
        "directory": None}


def _has_modules(directory):
    import importlib.machinery
    try:
        names = os.listdir(directory)
    except OSError:
        return False
    return any(n.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)) for n in names)


def _built_levels(root):
    return tuple(level for level in LEVELS + SINGLE_LEVELS
                 if _has_modules(os.path.join(root, level)))


def _build_root():
    """The folder whose <level>/ subfolders hold the compiled modules: this
    package's, or, when fastnet is imported from a source checkout that was
    installed with a plain `pip install .` (`python -m fastnet` or `pytest`
    run in the checkout import the source tree, whose _cpu/ holds no compiled
    modules), the installed copy of the same version found on sys.path.
    None when there is no build."""
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    if _built_levels(here):
        return here
    from .. import __version__
    stamp = '__version__ = "%s"' % __version__
    for entry in sys.path:
        other = os.path.join(os.path.abspath(entry or os.curdir), "fastnet", "_cpu")
        if other == here or not _built_levels(other):
            continue
        try:
            with open(os.path.join(os.path.dirname(other), "__init__.py")) as f:
                same_version = stamp in f.read()
        except OSError:
            continue
        if same_version:
            return other
    return None


def choose_level(built, cpu, forced=None):
    """(level, reason): which of the built levels to load.

    built: the levels present (_built_levels); cpu: the levels this CPU runs
    (fastnet._cpu._isa.cpu_levels(), None where the probe is absent); forced:
    FASTNET_ISA's value (None or '' = not set).  The highest level both
    built and supported, a single-level build's one level, or the forced
    one -- RuntimeError if that is not built or the CPU lacks it."""
    forced = (forced or "").strip().lower()
    if forced:
        if forced not in built:
            raise RuntimeError(
                "%s=%r: this build of fastnet has no such level; its levels are %s"
                % (ISA_ENV, forced, ", ".join(built) or "none"))
        if forced in LEVELS and (cpu is None or forced not in cpu):
            raise RuntimeError(
                "%s=%s: this CPU (with its operating system) cannot run that level "
                "(it needs %s); it runs: %s. Unset %s or choose one of those."
                % (ISA_ENV, forced, LEVEL_NEEDS[forced],
                   ", ".join(l for l in LEVELS if cpu and l in cpu) or "none of them",
                   ISA_ENV))
        return forced, "forced by %s=%s" % (ISA_ENV, forced)
    for level in SINGLE_LEVELS:
        if level in built:
            return level, ("the build's only level (FASTNET_NATIVE=1: -march=native)"
                           if level == "native" else
                           "the build's only level (no x86-64 dispatch on this platform)")
    for level in LEVELS:
        if level in built and cpu is not None and level in cpu:
            return level, ("the highest level this CPU runs (%s)" % LEVEL_NEEDS[level]
                           if level == next(l for l in LEVELS if l in cpu) else
                           "the highest level built that this CPU runs (%s; the CPU "
                           "runs %s too, not built)" % (LEVEL_NEEDS[level], cpu[-1]))
    raise RuntimeError("fastnet's compiled modules: none of the built levels (%s) runs on "
                       "this CPU (it runs: %s)" % (", ".join(built),
                                                   ", ".join(cpu or ()) or "unknown"))


def _choose_build():
    """Put the chosen level's folder first on this package's search path, so
    that `fastnet._cpu.conv` & co. load from it (each is built under that
    name at every level); record the choice for isa_info()."""
    root = _build_root()
    if root is None:
        _choice["reason"] = "no compiled modules found"
        return  # the engine's import of a kernel module says it is not built
    here = os.path.dirname(os.path.abspath(__file__))
    if root != here:
        __path__.append(root)
    built = _built_levels(root)
    cpu = None
    if any(level in LEVELS for level in built):
        from . import _isa as probe  # noqa: PLC0415 -- the CPU's levels
        cpu = tuple(probe.cpu_levels())
    level, reason = choose_level(built, cpu, os.environ.get(ISA_ENV))
    directory = os.path.join(root, level)
    __path__.insert(0, directory)
    _choice.update(level=level, reason=reason, built=built, cpu=cpu, directory=directory)


def isa_info():
    """The instruction-set level of the loaded kernels and why: level
    ('avx512', 'avx2', 'x86_64', or 'native' / 'generic' for a one-level
    build), reason, built (the levels this build has), cpu (those this CPU
    runs; None without the probe), directory (where the modules load from)."""
    return dict(_choice)


_choose_build()
_limit_blas_threads()
