#!/usr/bin/env bash
# The compiled kernels under AddressSanitizer.
#
# Copies this checkout (tracked and untracked-but-not-ignored files, no build
# outputs) into a scratch directory, builds the Cython extensions there with
# FASTNET_DEBUG_CYTHON=1 (bounds checks on, -O1 -g) and -fsanitize=address,
# then runs the kernel tests -- the per-family tests, the compiled training
# loop (tests/test_trainer.py) and the hypothesis fuzz
# of tests/test_fuzz_kernels.py -- on small shapes with libasan preloaded.
# Any invalid read or write, use after free or overflow aborts the run with
# ASan's report; the script exits non-zero.  The checkout itself is not
# touched.
#
#   bash .ci/asan.sh                      # scratch dir under /tmp, removed after
#   FASTNET_ASAN_DIR=/tmp/x bash .ci/asan.sh   # keep the build there
#   FASTNET_FUZZ_EXAMPLES=100 bash .ci/asan.sh # more fuzz examples (default 20)
#   bash .ci/asan.sh -k conv              # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

CC=${CC:-gcc}
PYTHON=${PYTHON:-python3}
LIBASAN=$("$CC" -print-file-name=libasan.so)
if [ ! -e "$LIBASAN" ]; then
    echo "asan.sh: $CC has no libasan.so ($LIBASAN); install libasan (gcc) first" >&2
    exit 2
fi

if [ -n "${FASTNET_ASAN_DIR:-}" ]; then
    SCRATCH=$FASTNET_ASAN_DIR
    rm -rf "$SCRATCH"
    mkdir -p "$SCRATCH"
else
    SCRATCH=$(mktemp -d /tmp/fastnet-asan.XXXXXX)
    trap 'rm -rf "$SCRATCH"' EXIT
fi

echo "== copying the checkout to $SCRATCH"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard \
        | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$SCRATCH"
else
    tar --exclude=build --exclude='*.so' --exclude='*.c' --exclude=.git -cf - . \
        | tar -xf - -C "$SCRATCH"
fi
# nothing built may come along: every extension is rebuilt with ASan
find "$SCRATCH/fastnet" -name '*.so' -delete
rm -rf "$SCRATCH/build"

cd "$SCRATCH"
echo "== building the extensions with -fsanitize=address (FASTNET_DEBUG_CYTHON=1)"
t0=$(date +%s)
# one instruction-set level (native/), not the three of a dispatching build
CC="$CC" FASTNET_DEBUG_CYTHON=1 FASTNET_NATIVE=1 \
CFLAGS="-fsanitize=address -fno-omit-frame-pointer ${CFLAGS:-}" \
LDFLAGS="-fsanitize=address ${LDFLAGS:-}" \
    "$PYTHON" setup.py -q build_ext --inplace -j 2 >build.log 2>&1 || {
        tail -n 60 build.log >&2
        echo "asan.sh: the build failed (full log: $SCRATCH/build.log)" >&2
        exit 1
    }
t1=$(date +%s)
shopt -s nullglob
sos=(fastnet/_cpu/native/*.so)
if [ ${#sos[@]} -eq 0 ]; then
    echo "asan.sh: no extension was built" >&2
    exit 1
fi
for so in "${sos[@]}"; do
    # grep reads all of nm's output: with -q it would quit at the first
    # match, nm would die of SIGPIPE and pipefail would call that a failure
    if ! nm -D --undefined-only "$so" | grep __asan_ >/dev/null; then
        echo "asan.sh: $so is not instrumented (no __asan_ symbols)" >&2
        exit 1
    fi
done
echo "   built ${#sos[@]} instrumented modules in $((t1 - t0)) s"

tests=(tests/test_fuzz_kernels.py)
for f in tests/test_conv.py tests/test_pool.py tests/test_dense.py tests/test_trainer.py \
         tests/test_softmax.py tests/test_update.py; do
    [ -e "$f" ] && tests+=("$f")
done

echo "== running ${tests[*]} under ASan"
export LD_PRELOAD="$LIBASAN"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export PYTHONPATH="$SCRATCH${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONMALLOC=malloc           # Python's own allocations through ASan too
export CI=true                       # the compiled engine must import: no skips
export FASTNET_FUZZ_EXAMPLES=${FASTNET_FUZZ_EXAMPLES:-20}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
"$PYTHON" - <<'EOF'
import fastnet, fastnet.engines.cpu as cpu, os
here = os.path.dirname(fastnet.__file__)
assert here.startswith(os.environ["PYTHONPATH"].split(":")[0]), here
print("   fastnet from", here, "- cpu engine, OpenMP:", cpu.openmp_enabled())
EOF
# the check can fail: a deliberate heap overflow must be caught
if "$PYTHON" -c "
import ctypes, numpy as np
a = np.zeros(1 << 18, np.float32)
ctypes.memset(a.ctypes.data, 0, a.nbytes + 64)
" 2>/dev/null; then
    echo "asan.sh: ASan is not active (a deliberate overflow went unnoticed)" >&2
    exit 1
fi
echo "   ASan is live: a deliberate heap overflow was caught"
t2=$(date +%s)
"$PYTHON" -m pytest -q -p no:cacheprovider "${tests[@]}" "$@"
t3=$(date +%s)
echo "== ASan: no error in ${#tests[@]} test files; build $((t1 - t0)) s, tests $((t3 - t2)) s"
