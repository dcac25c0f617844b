"""Build of fastnet's compiled CPU kernels (csrc/*.pyx -> fastnet._cpu.*).

The project's metadata lives in pyproject.toml; this file only declares the
extension modules.  Commands that work:

    pip install .                           # a normal install (build isolation)
    pip install -e .                        # development, editable
    python setup.py build_ext --inplace     # development, rebuild in the tree

Instruction-set levels.  On x86-64 (GCC or Clang) every module of
EXTENSIONS is compiled once per level of ISA_LEVELS, into
fastnet/_cpu/<level>/: 'x86_64' (-march=x86-64, SSE2: any x86-64 CPU), 'avx2'
(-march=x86-64-v3: AVX2 + FMA) and 'avx512' (-march=x86-64-v4: AVX-512).
Cython runs once per module; the same C is compiled at each level, in
parallel (one compiler process per core).  A small probe, fastnet._cpu._isa
(csrc/isa.pyx, baseline target), tells at import which levels the CPU and its
operating system support, and fastnet/_cpu/__init__.py loads the highest one
(FASTNET_ISA forces a lower one).  So one wheel runs on any x86-64 CPU and
uses its AVX-512 or AVX2 + FMA code where it can.  Elsewhere (ARM, MSVC) one
level, 'generic', is built for the compiler's default target.

Environment variables read at build time:

    FASTNET_NATIVE=1        build one level, 'native', with -march=native:
                            tuned for the CPU it is built on, runs only on
                            CPUs like it; a third of the build time (a
                            development build: ``FASTNET_NATIVE=1 python
                            setup.py build_ext --inplace -j 2``).
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

import filecmp
import glob
import os
import platform
import shutil
import sys
import tempfile
import textwrap

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"

# name inside fastnet._cpu -> (sources, uses OpenMP); each is built at every
# level of ISA_LEVELS, into fastnet/_cpu/<level>/
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
NATIVE = _flag("FASTNET_NATIVE")

# level (a folder of fastnet/_cpu, a name of FASTNET_ISA) -> compiler flags;
# fastnet/_cpu/__init__.py knows these names and their order
X86_LEVELS = {
    "x86_64": ["-march=x86-64"],      # SSE2: any x86-64 CPU
    "avx2": ["-march=x86-64-v3"],     # AVX2, FMA, BMI1/2, F16C (Haswell, Zen 1 and later)
    # + AVX-512 F/BW/CD/DQ/VL (Skylake-X, Zen 4 and later).  256-bit vectors
    # where the compiler vectorises on its own, as GCC's tuning for every
    # AVX-512 Intel core does (-march=native here): with the generic tuning's
    # 512-bit loops the conv nets trained 10-19 % slower (CPU time, 1 thread;
    # README "Build options").  bcast_gemm.h and vec_activations.h choose
    # their 512-bit intrinsics themselves.  Scheduling tuned for Ice Lake
    # server cores (any x86-64-v4 CPU runs it): with the generic tuning the
    # dropout net trained 4-5 % slower than the -march=native build, with
    # this one as fast (interleaved wall-clock runs, 2 threads).
    "avx512": ["-march=x86-64-v4", "-mtune=icelake-server", "-mprefer-vector-width=256"],
}
# the probe of the CPU's levels: built once, for the baseline target
PROBE = ("_isa", ["csrc/isa.pyx"])


def _is_x86_64():
    return platform.machine().lower() in ("x86_64", "amd64") and sys.platform != "win32"


if NATIVE:
    ISA_LEVELS = {"native": ["-march=native"]}
elif _is_x86_64():
    ISA_LEVELS = X86_LEVELS
else:
    ISA_LEVELS = {"generic": []}

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
    """Picks the compiler flags this compiler supports, cythonizes each module
    once, and compiles it at every level of ISA_LEVELS (in parallel)."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:  # `pip install .` passes no -j: one job per core
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        from Cython.Build import cythonize

        cc = self.compiler
        if cc.compiler_type == "msvc":
            base, openmp, link_openmp = ["/O2"], ["/openmp"], []
            level_flags = {level: [] for level in ISA_LEVELS}
        else:
            base = ["-O1", "-g"] if DEBUG else ["-O3"]
            # -ffp-contract=off: no fused multiply-adds the source did not write
            # (results as the reference computes them); -fno-math-errno: sqrt
            # becomes one instruction the loops can vectorise (errno is never read)
            base += ["-ffp-contract=off", "-fno-math-errno"]
            openmp, link_openmp = ["-fopenmp"], ["-fopenmp"]
            level_flags = dict(ISA_LEVELS)
        for level, flags in level_flags.items():
            if flags and not _compiles(cc, flags, []):
                if level == "native":
                    print("fastnet: the compiler does not accept %s; building without it"
                          % " ".join(flags))
                    level_flags[level] = []
                    continue
                # an old compiler without x86-64-v4 (GCC < 11): that level is
                # left out, the loader picks among the others
                print("fastnet: the compiler does not accept %s; level %r is not built"
                      % (" ".join(flags), level), file=sys.stderr)
                del level_flags[level]
        self.extensions = [ext for ext in self.extensions
                           if ext.level is None or ext.level in level_flags]
        have_openmp = _compiles(cc, openmp, link_openmp, _OPENMP_TEST)
        if not have_openmp:
            print("\n" + "*" * 78 + "\n"
                  "WARNING fastnet: this C compiler cannot build OpenMP code (%s).\n"
                  "The compiled kernels will run on ONE thread: correct, but slower.\n"
                  "fastnet.engines.cpu.openmp_enabled() will say False.  Install an\n"
                  "OpenMP runtime (e.g. libomp, or use gcc) and rebuild to use all cores.\n"
                  % " ".join(openmp) + "*" * 78 + "\n", file=sys.stderr)
        for ext in self.extensions:
            uses_openmp = ext.uses_openmp and have_openmp
            # the probe: the baseline (a compiler may default to a higher one)
            flags = level_flags[ext.level] if ext.level is not None else X86_LEVELS["x86_64"]
            ext.extra_compile_args = base + flags + (openmp if uses_openmp else [])
            ext.extra_link_args = link_openmp if uses_openmp else []
            if cc.compiler_type != "msvc":
                # libm: glibc's -lm also brings libmvec (vec_activations.h)
                ext.libraries = list(ext.libraries or []) + ["m"]
        # Cython once per module, under the module's own name (fastnet._cpu.conv,
        # whatever folder its level puts it in): cythonize returns new
        # Extension objects, whose sources are the generated C
        modules = {}
        for ext in self.extensions:
            modules.setdefault(ext.module, ext)
        generated = cythonize(
            [Extension(ext.module, ext.sources, include_dirs=ext.include_dirs,
                       depends=ext.depends) for ext in modules.values()],
            compiler_directives=DIRECTIVES, include_path=[os.path.join(HERE, CSRC)],
            build_dir=os.path.join("build", "cython"), quiet=True)
        c_sources = {ext.name: ext.sources for ext in generated}
        for ext in self.extensions:
            ext.sources = [_level_copy(src, ext.level) for src in c_sources[ext.module]]
        super().build_extensions()

    def copy_extensions_to_source(self):
        """--inplace: setuptools builds into build/ and copies from there,
        into existing folders only."""
        _remove_stale_builds(self.extensions)
        for level in {ext.level for ext in self.extensions} - {None}:
            os.makedirs(os.path.join(HERE, "fastnet", "_cpu", level), exist_ok=True)
        super().copy_extensions_to_source()


def _level_copy(c_file, level):
    """The generated C file as build/cython/<level>/...: one object file per
    level (setuptools names an object after its source).  Rewritten only
    when it changed, so that an unchanged module is not compiled again."""
    if level is None:
        return c_file
    rel = os.path.relpath(c_file, os.path.join("build", "cython"))
    copy = os.path.join("build", "cython", "level-" + level, rel)
    if not (os.path.exists(copy) and filecmp.cmp(c_file, copy, shallow=False)):
        os.makedirs(os.path.dirname(copy), exist_ok=True)
        shutil.copyfile(c_file, copy)
    return copy


def _remove_stale_builds(extensions):
    """In-place builds: remove this tree's compiled modules of levels (or of
    the flat layout before levels) that this build does not make, so that the
    loader cannot mix a stale build with this one."""
    cpu = os.path.join(HERE, "fastnet", "_cpu")
    names = {ext.module.rsplit(".", 1)[1] for ext in extensions}
    keep = {ext.level for ext in extensions}
    folders = [cpu] + [os.path.join(cpu, level) for level in
                       list(X86_LEVELS) + ["native", "generic"] if level not in keep]
    for folder in folders:
        for name in names:
            if folder == cpu and name == PROBE[0]:
                continue
            for path in glob.glob(os.path.join(folder, name + ".*")):
                if path.endswith((".so", ".pyd")):
                    os.remove(path)


def extensions():
    depends = sorted(glob.glob(os.path.join(CSRC, "*.pxd"))
                     + glob.glob(os.path.join(CSRC, "*.h")))
    macros = ([("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
              + ([] if DEBUG else [("CYTHON_WITHOUT_ASSERTIONS", None)]))

    def ext(module, folder, sources, level, uses_openmp):
        e = Extension(
            folder + "." + module.rsplit(".", 1)[1], sources,
            include_dirs=[numpy.get_include(), CSRC],
            # a changed header or .pxd rebuilds every module (they inline them)
            depends=depends, define_macros=macros)
        e.module, e.level, e.uses_openmp = module, level, uses_openmp
        return e

    exts = []
    if ISA_LEVELS is X86_LEVELS:
        exts.append(ext("fastnet._cpu." + PROBE[0], "fastnet._cpu", PROBE[1], None, False))
    for level in ISA_LEVELS:
        for name, (sources, uses_openmp) in EXTENSIONS.items():
            exts.append(ext("fastnet._cpu." + name, "fastnet._cpu." + level, sources,
                            level, uses_openmp))
    return exts


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
