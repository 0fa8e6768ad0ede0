#!/usr/bin/env bash
# Coverage-guided fuzzing of the C++ codec core with libFuzzer + ASan + UBSan.
#
#   scripts/fuzz.sh SECONDS        # run each harness for SECONDS (both in parallel)
#
# Harnesses: fuzz/fuzz_parser.cpp (frame parser: memory safety, chunking invariance,
# output invariants) and fuzz/fuzz_inflate.cpp (inflater bounds, deflate round trip,
# encoder -> parser round trip). The seed corpus comes from fuzz/make_corpus.py; the
# corpus grows in build/fuzz/corpus/ and is kept between runs. A crash leaves its input
# in build/fuzz/artifacts/ and makes this script exit non-zero; turn each one into a test
# in tests/unit/test_codec_regressions.py. Needs clang with libFuzzer (apt: clang).
set -euo pipefail

secs="${1:-}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then
    echo "usage: $0 SECONDS" >&2
    exit 2
fi
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cxx="${CXX_FUZZ:-clang++}"
command -v "$cxx" >/dev/null || { echo "fuzz.sh: $cxx not found (apt-get install clang)" >&2; exit 2; }

out="$repo/build/fuzz"
mkdir -p "$out/artifacts"
flags=(-std=c++17 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I"$repo/csrc")
sources=("$repo/csrc/parser.cpp" "$repo/csrc/deflate.cpp" "$repo/csrc/random.cpp")
for t in parser inflate; do
    echo "== building fuzz_$t"
    "$cxx" "${flags[@]}" "$repo/fuzz/fuzz_$t.cpp" "${sources[@]}" -lz -o "$out/fuzz_$t"
done
python3 "$repo/fuzz/make_corpus.py" "$out/corpus"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
pids=()
for t in parser inflate; do
    maxlen=65536
    [ "$t" = inflate ] && maxlen=16384
    "$out/fuzz_$t" "$out/corpus/$t" -max_total_time="$secs" -max_len="$maxlen" -timeout=20 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" \
        >"$out/$t.log" 2>&1 &
    pids+=($!)
done
status=0
for i in 0 1; do
    t=$([ $i -eq 0 ] && echo parser || echo inflate)
    if wait "${pids[$i]}"; then
        echo "fuzz_$t: no crash in ${secs}s ($(grep -E 'stat::number_of_executed_units' "$out/$t.log" | awk '{print $2}') runs, corpus $(ls "$out/corpus/$t" | wc -l) inputs)"
    else
        status=1
        echo "fuzz_$t: FAILED, see $out/$t.log" >&2
        tail -40 "$out/$t.log" >&2
    fi
done
ls "$out/artifacts" | sed 's/^/artifact: /'
exit $status
