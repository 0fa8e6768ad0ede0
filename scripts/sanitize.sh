#!/usr/bin/env bash
# Build the C++ codec with AddressSanitizer + UndefinedBehaviorSanitizer in a throwaway copy
# of the tree (the optimised in-place build is left alone) and run the unit tests against it.
#
#   scripts/sanitize.sh                 # runs tests/unit
#   scripts/sanitize.sh tests/unit/test_codec.py -k deflate
#
# Exits non-zero if the build fails, a test fails, or any sanitizer report is printed.
# CPython itself is not instrumented: libasan is preloaded, leak detection is off (the
# interpreter keeps objects alive at exit by design) and PYTHONMALLOC=malloc routes every
# Python allocation through ASan so overruns of bytes/str built by the extension are seen.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/kstlib-ws-sanitize.XXXXXX")"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/tree"
cp -r "$repo/src" "$repo/csrc" "$repo/setup.py" "$repo/pyproject.toml" "$work/tree/"
find "$work/tree/src" -name '_speedups*.so' -delete
[ -f "$repo/README.md" ] && cp "$repo/README.md" "$work/tree/"

echo "== building _speedups with ASan + UBSan in $work/tree"
(cd "$work/tree" && KSTLIB_WS_SANITIZE=1 python3 setup.py -q build_ext --inplace) \
    >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
if grep -E "warning:" "$work/build.log"; then
    echo "sanitize.sh: compiler warnings in the sanitizer build" >&2
    exit 1
fi

cxx="${CXX:-g++}"
libasan="$("$cxx" -print-file-name=libasan.so)"
[ -f "$libasan" ] || { echo "sanitize.sh: libasan.so not found via $cxx" >&2; exit 1; }

# libstdc++ is preloaded as well: python3 does not link it, and ASan's __cxa_throw
# interceptor must find it at start-up or the first C++ exception aborts.
libstdcxx="$("$cxx" -print-file-name=libstdc++.so)"
export LD_PRELOAD="$libasan $libstdcxx"
# Reports go to files too: pytest captures fd 2, and an aborting process loses that capture.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=1:log_path=$work/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$work/ubsan"
export PYTHONMALLOC=malloc
export PYTHONPATH="$work/tree/src${PYTHONPATH:+:$PYTHONPATH}"
unset KSTLIB_WS_PURE_PYTHON

python3 - <<'PY'
import kstlib.websocket._speedups as s, kstlib.websocket.codec as c, os
assert c.IMPLEMENTATION == "cpp", c.IMPLEMENTATION
assert s.__file__.startswith(os.environ["PYTHONPATH"].split(":")[0]), s.__file__
print("== testing", s.__file__)
PY

args=("$@")
[ ${#args[@]} -eq 0 ] && args=(tests/unit)
set +e
(cd "$repo" && python3 -m pytest -q -p no:cacheprovider "${args[@]}") 2>&1 | tee "$work/test.log"
status=${PIPESTATUS[0]}
set -e
reports=("$work"/asan.* "$work"/ubsan.*)
if [ -e "${reports[0]}" ] || [ -e "${reports[1]}" ] ||
    grep -qE "ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer" "$work/test.log"; then
    for f in "${reports[@]}"; do [ -e "$f" ] && cat "$f" >&2; done
    echo "sanitize.sh: sanitizer report found" >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "sanitize.sh: tests failed (exit $status)" >&2
    exit "$status"
fi
echo "sanitize.sh: clean (ASan + UBSan, ${args[*]})"
