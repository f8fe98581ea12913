#!/usr/bin/env bash
# demo.sh: `make demo`'s script end to end, in a temporary directory and on a free port: it exits 0
# with the task succeeded and the services left running with PID files; a second run replaces the
# first (old processes gone, new ones up); `scripts/demo --stop` stops both and removes the PID files,
# and no process of the demo is left. Uses the release programs, as `make demo` does. Prints TAP lines.
set -u
root=${PW_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
tmp=$(mktemp -d)
export DEMO_DIR=$tmp/demo
export DEMO_BIN=${PW_BIN_RELEASE:-$root/build/release/bin}
export DEMO_PORT=auto
export NO_COLOR=1
cleanup() {
    "$root/scripts/demo" --stop >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "#   $l"; done; }
check() {
    local name=$1 res=$2
    shift 2
    if [ "$res" -eq 0 ]; then ok "$name"; else nok "$name" "$@"; fi
}
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
# Processes whose command line mentions the demo directory (read from /proc; nothing is signalled).
leftovers() {
    local p
    for p in /proc/[0-9]*; do
        tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "$DEMO_DIR/" && echo "${p#/proc/}"
    done
}

# 1. the first run (the default 300 nodes)
timeout 600 "$root/scripts/demo" >"$tmp/run1.out" 2>&1
rc=$?
check "scripts/demo exits 0" $([ $rc -eq 0 ]; echo $?) "rc=$rc" "$(tail -15 "$tmp/run1.out")"
check "the task succeeded, with a summary" \
    $(grep -q '^Task [^ ]* succeeded in .*: 300 nodes' "$tmp/run1.out"; echo $?) "$(grep '^Task' "$tmp/run1.out")"
port=$(cat "$DEMO_DIR/port" 2>/dev/null)
check "it prints what to try next with the real port, and how to stop" \
    $([ -n "$port" ] && grep -q "export PATH=.* PREWARM_SERVER=http://127.0.0.1:$port$" "$tmp/run1.out" &&
        grep -q "kubectl --kubeconfig $DEMO_DIR/kubeconfig get nodes" "$tmp/run1.out" &&
        grep -q 'make demo-stop' "$tmp/run1.out"; echo $?) "port=$port"
if [ "${DEMO_TEST_STORE:-sqlite}" = sqlite ]; then
    check "prewarmd keeps its tasks in the SQLite store under the demo directory" \
        $(grep -q "(store sqlite:$DEMO_DIR/prewarm.db)" "$tmp/run1.out" && ! grep -q 'using memory:' "$tmp/run1.out" &&
            [ -s "$DEMO_DIR/prewarm.db" ]; echo $?) "$(grep -e '==> starting prewarmd' -e 'using memory' "$tmp/run1.out")"
else
    check "a prewarmd without SQLite gets the memory store" \
        $(grep -q "this prewarmd has no SQLite store; using memory:" "$tmp/run1.out"; echo $?) "$(head -5 "$tmp/run1.out")"
fi
k1=$(cat "$DEMO_DIR/kubesim.pid" 2>/dev/null)
p1=$(cat "$DEMO_DIR/prewarmd.pid" 2>/dev/null)
check "kubesim and prewarmd keep running with PID files" $(alive "$k1" && alive "$p1"; echo $?) "kubesim=$k1 prewarmd=$p1"
out=$("$DEMO_BIN/prewarmctl" --server "http://127.0.0.1:$port" list -o json 2>&1)
check "the running prewarmd answers prewarmctl" \
    $(echo "$out" | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["items"][0]["status"]=="succeeded" else 1)' 2>/dev/null; echo $?) \
    "$(echo "$out" | head -c 300)"

# 2. a second run replaces the first (fewer nodes, to be quick)
DEMO_NODES=60 timeout 600 "$root/scripts/demo" >"$tmp/run2.out" 2>&1
rc=$?
k2=$(cat "$DEMO_DIR/kubesim.pid" 2>/dev/null)
p2=$(cat "$DEMO_DIR/prewarmd.pid" 2>/dev/null)
check "running it twice works: exit 0, old processes gone, new ones up" \
    $([ $rc -eq 0 ] && ! alive "$k1" && ! alive "$p1" && alive "$k2" && alive "$p2" && [ "$k2" != "$k1" ]; echo $?) \
    "rc=$rc old=$k1,$p1 new=$k2,$p2" "$(tail -5 "$tmp/run2.out")"

# 3. --stop
"$root/scripts/demo" --stop >"$tmp/stop.out" 2>&1
rc=$?
check "scripts/demo --stop stops both and removes the PID files" \
    $([ $rc -eq 0 ] && ! alive "$k2" && ! alive "$p2" && [ ! -e "$DEMO_DIR/kubesim.pid" ] &&
        [ ! -e "$DEMO_DIR/prewarmd.pid" ]; echo $?) "rc=$rc" "$(cat "$tmp/stop.out")"
left=$(leftovers)
check "no process of the demo is left" $([ -z "$left" ]; echo $?) "left: $left"
"$root/scripts/demo" --stop >/dev/null 2>&1
check "--stop again is harmless" $?

echo "1..$n"
