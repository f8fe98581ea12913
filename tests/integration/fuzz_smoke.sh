#!/usr/bin/env bash
# fuzz_smoke.sh: every libFuzzer driver (tests/fuzz/fuzz_*.c) runs its seed corpus and then
# FUZZ_SMOKE_RUNS mutated inputs (default 20000) or its share of FUZZ_SMOKE_BUDGET seconds (default
# 100: the budget divided by the number of drivers, at least 2 s each), whichever ends first (slow
# drivers such as kubeconfig, which writes files, or simreview, which goes over HTTP, stop on time),
# under ASan+UBSan: one TAP line per driver, "not ok" on a crash, a leak, undefined behaviour or a
# timeout. So the whole step stays within about the budget however many drivers there are (issue 10:
# at most 2 minutes). FUZZ_SMOKE_SECONDS, when set, is each driver's time instead. Builds the drivers
# when they are missing.
# New inputs go to a temporary directory: the seeds in tests/fuzz/corpus are only read.
set -u
cd "$(dirname "$0")/../.."
runs=${FUZZ_SMOKE_RUNS:-20000}
budget=${FUZZ_SMOKE_BUDGET:-100}
names=()
for f in tests/fuzz/fuzz_*.c; do n=${f#tests/fuzz/fuzz_}; names+=("${n%.c}"); done
secs=${FUZZ_SMOKE_SECONDS:-$((budget / ${#names[@]}))}
[ "$secs" -ge 2 ] || secs=2
echo "1..${#names[@]}"
echo "# ${#names[@]} drivers, each at most $runs runs or $secs s"
step_start=$SECONDS
missing=0
for n in "${names[@]}"; do [ -x "build/fuzz/bin/fuzz_$n" ] || missing=1; done
if [ "$missing" -eq 1 ]; then
    make -s --no-print-directory -j2 fuzz-build >/dev/null 2>&1 || echo "# make fuzz-build failed"
fi
tmp=$(mktemp -d /tmp/pw-fuzz-smoke-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export ASAN_OPTIONS=detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for n in "${names[@]}"; do
    bin=build/fuzz/bin/fuzz_$n
    if [ ! -x "$bin" ]; then
        echo "not ok - fuzz $n # $bin missing"
        continue
    fi
    mkdir -p "$tmp/$n"
    dict=()
    [ -f "tests/fuzz/$n.dict" ] && dict=("-dict=tests/fuzz/$n.dict")
    start=$SECONDS
    "$bin" -runs="$runs" -max_total_time="$secs" -seed=1 -timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 \
        -artifact_prefix="$tmp/" "${dict[@]}" "$tmp/$n" "tests/fuzz/corpus/$n" >"$tmp/$n.log" 2>&1
    rc=$?
    execs=$(grep -oE '^stat::number_of_executed_units: [0-9]+' "$tmp/$n.log" | grep -oE '[0-9]+$')
    cov=$(grep -oE 'cov: [0-9]+' "$tmp/$n.log" | tail -1)
    if [ "$rc" -eq 0 ]; then
        echo "ok - fuzz $n: ${execs:-?} executions in $((SECONDS - start)) s, ${cov:-cov: ?}"
    else
        echo "not ok - fuzz $n: exit $rc after ${execs:-?} executions"
        grep -E 'ERROR:|runtime error|SUMMARY|^    #[0-9]' "$tmp/$n.log" | head -20 | sed 's/^/# /'
        for a in "$tmp"/crash-* "$tmp"/leak-* "$tmp"/timeout-* "$tmp"/oom-*; do
            [ -f "$a" ] && echo "# input (base64): $(head -c 2048 "$a" | base64 -w0)"
        done
        rm -f "$tmp"/crash-* "$tmp"/leak-* "$tmp"/timeout-* "$tmp"/oom-*
    fi
done
echo "# the fuzz step took $((SECONDS - step_start)) s"
