#!/usr/bin/env bash
# store_kill9.sh: kill -9 durability of the sqlite store. A child writes tasks (and a 10-node batch
# per task) through pw_store in a loop, printing each id once the put returned; the parent SIGKILLs
# it at a random moment. Reopening must show every acknowledged id, every acknowledged batch whole,
# no task with a partial batch, and an intact file. Five rounds on the same database, each adding to
# what the previous rounds left. The driver is the store's unit-test binary (test_sqlite) in its
# PW_STORE_KILL9_WRITE / PW_STORE_KILL9_CHECK modes.
set -u
root=${PW_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
driver=""
for d in "$root/build/asan/tests/unit/store/test_sqlite" "$root/build/release/tests/unit/store/test_sqlite"; do
    if [ -x "$d" ]; then driver=$d; break; fi
done
if [ -z "$driver" ]; then
    echo "not ok - store_kill9: no test_sqlite binary (build it first)"
    exit 1
fi
tmp=$(mktemp -d /tmp/pw-store-kill9-XXXXXX)
child=""
cleanup() {
    if [ -n "$child" ]; then kill -9 "$child" 2>/dev/null; wait "$child" 2>/dev/null; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
url="sqlite:$tmp/state/store.db"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

fails=0
total_acked=0
for round in 1 2 3 4 5; do
    PW_STORE_KILL9_WRITE=$url PW_STORE_KILL9_PREFIX="r$round" "$driver" >>"$tmp/acked" 2>"$tmp/writer.$round.log" &
    child=$!
    # A random moment: 0.3 .. 1.5 s after the start (and after the first acknowledgement).
    for _ in $(seq 1 200); do
        grep -q "^N t-r$round-" "$tmp/acked" 2>/dev/null && break
        kill -0 "$child" 2>/dev/null || break
        sleep 0.05
    done
    sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.3 + (r % 120) / 100 }')"
    if ! kill -0 "$child" 2>/dev/null; then
        echo "not ok - store_kill9 round $round: the writer stopped by itself ($(tail -3 "$tmp/writer.$round.log"))"
        fails=$((fails + 1))
        child=""
        continue
    fi
    kill -9 "$child"
    wait "$child" 2>/dev/null
    child=""
    acked=$(grep -c "^T t-r$round-" "$tmp/acked")
    total_acked=$((total_acked + acked))
    if ! out=$(PW_STORE_KILL9_CHECK=$url "$driver" <"$tmp/acked" 2>"$tmp/check.$round.log"); then
        echo "not ok - store_kill9 round $round: $out $(head -5 "$tmp/check.$round.log" | tr '\n' ' ')"
        fails=$((fails + 1))
        continue
    fi
    if [ "$acked" -lt 1 ]; then
        echo "not ok - store_kill9 round $round: the writer acknowledged nothing"
        fails=$((fails + 1))
        continue
    fi
    echo "ok - store_kill9 round $round: killed after $acked acknowledged tasks; reopened: $out"
done
# Everything acknowledged across the rounds is there at the end (a tail of every round's puts).
[ "$total_acked" -gt 0 ] && [ "$fails" -eq 0 ] && echo "ok - store_kill9: $total_acked acknowledged tasks over 5 kills, none lost" ||
    echo "not ok - store_kill9: $fails failed rounds"
[ "$fails" -eq 0 ]
