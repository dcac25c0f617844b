"""Build of fastnet's compiled CPU kernels (csrc/*.pyx -> fastnet._cpu.*).

The project's metadata lives in pyproject.toml; this file only declares the
extension modules.  Commands that work:

    pip install .                           # a normal install (build isolation)
    pip install -e .                        # development, editable
    python setup.py build_ext --inplace     # development, rebuild in the tree

Environment variables read at build time:

    FASTNET_PORTABLE=1      do not add -march=native.  By default a source
                            build is tuned for the CPU it is built on (AVX-512
                            and FMA where present); set this when the build
                            must run on other machines, e.g. to make a wheel.
    FASTNET_DEBUG_CYTHON=1  turn Cython's boundscheck, wraparound and
                            initializedcheck back on, cdivision off, and build
                            with -O1 -g, for a sanitizer (ASan) or fuzzing job.

Every module is compiled with -ffp-contract=off: the compiler must not fuse a
multiply and an add into one FMA behind our back, so that the elementwise
kernels round exactly like the NumPy reference, and so that the arithmetic of
a loop does not depend on which iterations the vectoriser peeled off.  The
products of csrc/bcast_gemm.h ask for fp-contract=fast for themselves (FMA):
each of their sums is one multiply-add chain, the same wherever it is computed.

Without OpenMP the build warns and the kernels run on one thread.
"""

import glob
import os
import sys
import tempfile
import textwrap

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"

# name inside fastnet._cpu -> (sources, uses OpenMP)
EXTENSIONS = {
    "conv":    (["csrc/conv.pyx"], True),
    "pool":    (["csrc/pool.pyx"], True),
    "dense":   (["csrc/dense.pyx"], True),
    "softmax": (["csrc/softmax.pyx"], True),
    "update":  (["csrc/update.pyx"], True),
    "trainer": (["csrc/trainer.pyx"], True),
    "augment": (["csrc/augment.pyx"], True),
}


def _flag(name):
    return os.environ.get(name, "").strip() not in ("", "0", "false", "False", "no")


DEBUG = _flag("FASTNET_DEBUG_CYTHON")
PORTABLE = _flag("FASTNET_PORTABLE")

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "embedsignature": True,
}

_OPENMP_TEST = textwrap.dedent("""
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return n > 0 ? 0 : 1;
    }
    """)


def _compiles(compiler, flags, link_flags, code="int main(void) { return 0; }\n"):
    """Whether `code` compiles and links with these flags."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(code)
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
            compiler.link_executable(objs, os.path.join(tmp, "probe"),
                                     extra_postargs=link_flags)
        except Exception:  # CompileError, LinkError: the flag is not usable
            return False
    return True


class BuildExt(build_ext):
    """Picks the compiler flags this compiler supports, then cythonizes."""

    def build_extensions(self):
        from Cython.Build import cythonize

        cc = self.compiler
        if cc.compiler_type == "msvc":
            base, openmp, link_openmp = ["/O2"], ["/openmp"], []
            native = []
        else:
            base = ["-O1", "-g"] if DEBUG else ["-O3"]
            base += ["-ffp-contract=off"]
            openmp, link_openmp = ["-fopenmp"], ["-fopenmp"]
            native = [] if PORTABLE else ["-march=native"]
        if native and not _compiles(cc, native, []):
            print("fastnet: the compiler does not accept %s; building without it"
                  % " ".join(native))
            native = []
        have_openmp = _compiles(cc, openmp, link_openmp, _OPENMP_TEST)
        if not have_openmp:
            print("\n" + "*" * 78 + "\n"
                  "WARNING fastnet: this C compiler cannot build OpenMP code (%s).\n"
                  "The compiled kernels will run on ONE thread: correct, but slower.\n"
                  "fastnet.engines.cpu.openmp_enabled() will say False.  Install an\n"
                  "OpenMP runtime (e.g. libomp, or use gcc) and rebuild to use all cores.\n"
                  % " ".join(openmp) + "*" * 78 + "\n", file=sys.stderr)
        for ext in self.extensions:
            uses_openmp = getattr(ext, "uses_openmp", False) and have_openmp
            ext.extra_compile_args = base + native + (openmp if uses_openmp else [])
            ext.extra_link_args = link_openmp if uses_openmp else []
            if cc.compiler_type != "msvc":
                # libm: glibc's -lm also brings libmvec (vec_activations.h)
                ext.libraries = list(ext.libraries or []) + ["m"]
        # cythonize returns new Extension objects; keep setuptools' own (it
        # has annotated them) and give them the generated C sources
        generated = cythonize(
            self.extensions, compiler_directives=DIRECTIVES,
            include_path=[os.path.join(HERE, CSRC)],
            build_dir=os.path.join("build", "cython"), quiet=True)
        sources = {ext.name: ext.sources for ext in generated}
        for ext in self.extensions:
            ext.sources = sources[ext.name]
        super().build_extensions()


def extensions():
    exts = []
    for name, (sources, uses_openmp) in EXTENSIONS.items():
        ext = Extension(
            "fastnet._cpu." + name, sources,
            include_dirs=[numpy.get_include(), CSRC],
            # a changed header or .pxd rebuilds every module (they inline them)
            depends=sorted(glob.glob(os.path.join(CSRC, "*.pxd"))
                           + glob.glob(os.path.join(CSRC, "*.h"))),
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
            + ([] if DEBUG else [("CYTHON_WITHOUT_ASSERTIONS", None)]))
        ext.uses_openmp = uses_openmp
        exts.append(ext)
    return exts


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
