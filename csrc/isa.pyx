# What this CPU (and its operating system) can run: the instruction-set levels
# of a dispatching build (setup.py ISA_LEVELS), for fastnet/_cpu/__init__.py
# to pick the kernels' level at import.
#
# Built once, for the baseline target (no -march): it must load on any
# x86-64.  __builtin_cpu_supports reads CPUID through libgcc (or compiler-rt)
# and reports the AVX and AVX-512 features only when the operating system
# saves their registers (XGETBV's XCR0), so a level it reports is one the
# kernels can run.

cdef extern from *:
    """
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    #define FN_X86 1
    static int fn_cpu(const char* level) {
        __builtin_cpu_init();
        if (level[0] == '3') {          /* x86-64-v3: AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE */
    #if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
            return __builtin_cpu_supports("x86-64-v3") != 0;
    #else
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
    #endif
        }
        if (level[0] == '4') {          /* x86-64-v4: v3 + AVX-512 F, BW, CD, DQ, VL */
    #if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
            return __builtin_cpu_supports("x86-64-v4") != 0;
    #else
            return fn_cpu("3") && __builtin_cpu_supports("avx512f")
                && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512cd")
                && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    #endif
        }
        return 0;
    }
    #else
    #define FN_X86 0
    static int fn_cpu(const char* level) { (void)level; return 0; }
    #endif
    """
    const int FN_X86
    int fn_cpu(const char* level)


def cpu_levels():
    """The levels of a dispatching build this CPU runs, lowest first:
    'x86_64' (any x86-64), 'avx2' (x86-64-v3), 'avx512' (x86-64-v4).
    Empty where this is not an x86-64 build."""
    if not FN_X86:
        return ()
    levels = ["x86_64"]
    if fn_cpu(b"3"):
        levels.append("avx2")
        if fn_cpu(b"4"):
            levels.append("avx512")
    return tuple(levels)
