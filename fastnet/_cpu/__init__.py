"""fastnet's compiled CPU kernels (built from csrc/*.pyx by setup.py).

``conv``, ``pool``, ``dense``, ``softmax``, ``update``: one extension module
per kernel family; fastnet/engines/cpu.py is the engine built on them.

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


def _use_installed_build():
    """Find the compiled modules when fastnet is imported from a source
    checkout that was installed with a plain `pip install .`: then `python -m
    fastnet` or `python -m pytest` run in the checkout import this source tree,
    whose _cpu/ holds no extension modules, while the installed copy of the
    same version (in site-packages) has them.  Its _cpu/ joins this package's
    search path."""
    import sys
    here = os.path.dirname(os.path.abspath(__file__))

    def compiled(directory):
        try:
            return any(f.endswith((".so", ".pyd")) for f in os.listdir(directory))
        except OSError:
            return False

    if compiled(here):
        return
    from .. import __version__
    stamp = '__version__ = "%s"' % __version__
    for entry in sys.path:
        other = os.path.join(os.path.abspath(entry or os.curdir), "fastnet", "_cpu")
        if other == here or not compiled(other):
            continue
        try:
            with open(os.path.join(os.path.dirname(other), "__init__.py")) as f:
                same_version = stamp in f.read()
        except OSError:
            continue
        if same_version:
            __path__.append(other)
            return


_use_installed_build()
_limit_blas_threads()
