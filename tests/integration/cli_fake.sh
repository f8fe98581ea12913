#!/usr/bin/env bash
# cli_fake.sh: prewarmctl end to end against cli_fake_server.py, a stand-in that speaks prewarmd's REST
# contract (ARCHITECTURE.md §3). Covers the CLI itself: exit codes 0/1/2/3/4/130, the plain and the
# terminal progress output, the summary with failed nodes, API errors shown as "error: field: message",
# -o json/yaml round trips, list/nodes paging through "continue", riding out a short outage, and the
# request body sent. Prints TAP lines. The real-service twin of this file is cli_e2e.sh.
set -u
root=${PW_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${PW_BIN:-$root/build/asan/bin}
ctl=$bin/prewarmctl
tmp=$(mktemp -d)
fake_pid=""
cleanup() {
    [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null && wait "$fake_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "#   $l"; done; }
check() { # check NAME COND_RESULT(0/1) [diagnostics...]
    local name=$1 res=$2
    shift 2
    if [ "$res" -eq 0 ]; then ok "$name"; else nok "$name" "$@"; fi
}

if [ ! -x "$ctl" ]; then
    echo "not ok 1 - prewarmctl is built ($ctl missing)"
    exit 1
fi

python3 "$root/tests/integration/cli_fake_server.py" "$tmp/port" --nodes 600 --rate 300 >"$tmp/fake.log" 2>&1 &
fake_pid=$!
for _ in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
if [ ! -s "$tmp/port" ]; then
    echo "not ok 1 - the fake server starts"
    cat "$tmp/fake.log" | sed 's/^/# /'
    exit 1
fi
export PREWARM_SERVER="http://127.0.0.1:$(cat "$tmp/port")"
export NO_COLOR=1

# 1. create --wait: success, exit 0, plain progress lines (stdout is a file here), a summary.
"$ctl" create nginx:1.27 redis:7.4 --batch-size 50 --timeout 10m --retries 2 --label team=ml --wait \
    >"$tmp/ok.out" 2>"$tmp/ok.err"
rc=$?
check "create --wait on a succeeding task exits 0" $([ $rc -eq 0 ]; echo $?) "rc=$rc" "$(cat "$tmp/ok.err")"
id=$(sed -n 's/^task \(t-[a-z0-9]*\) created$/\1/p' "$tmp/ok.out")
check "create prints the task id" $([ -n "$id" ]; echo $?) "$(head -3 "$tmp/ok.out")"
lines=$(grep -c '^\[[0-9hms]*\] \(running\|succeeded\|pending\): [0-9]*/600 nodes' "$tmp/ok.out")
check "non-terminal progress is plain lines, several of them" \
    $([ "$lines" -ge 2 ] && ! grep -q $'\r' "$tmp/ok.out" && ! grep -q $'\033' "$tmp/ok.out"; echo $?) \
    "lines=$lines" "$(head -5 "$tmp/ok.out" | cat -v)"
check "the summary names status and counts" \
    $(grep -q "^Task $id succeeded in [0-9ms]*: 600 nodes, 540 succeeded, 0 failed, 60 skipped$" "$tmp/ok.out"; echo $?) \
    "$(tail -3 "$tmp/ok.out")"
body=$(curl -s "$PREWARM_SERVER/fake/requests" | python3 -c '
import json,sys
for r in json.load(sys.stdin)["items"]:
    if r["method"] == "POST": print(r["body"]); break')
check "the create body carries the options" \
    $(echo "$body" | python3 -c '
import json,sys
b=json.load(sys.stdin)
want={"images":["nginx:1.27","redis:7.4"],"batchSize":50,"timeoutSeconds":600,"retries":2,"labels":{"team":"ml"}}
sys.exit(0 if b==want else 1)'; echo $?) "$body"

# 2. a failing image: exit 1, failed nodes with reasons, "... and N more".
"$ctl" create nginx:does-not-exist --retries 0 --wait >"$tmp/fail.out" 2>"$tmp/fail.err"
rc=$?
check "create --wait on a failing image exits 1" $([ $rc -eq 1 ]; echo $?) "rc=$rc"
check "the summary lists 20 failed nodes with reasons and the rest as a count" \
    $([ "$(grep -c '^node-[0-9]* *nginx:does-not-exist *ErrImagePull ' "$tmp/fail.out")" -eq 20 ] &&
        grep -q '^\.\.\. and 520 more (prewarmctl nodes t-[a-z0-9]* --state failed)$' "$tmp/fail.out" &&
        grep -q '^Failed nodes (540):$' "$tmp/fail.out"; echo $?) "$(tail -4 "$tmp/fail.out")"

# 3. cancel from another shell while waiting: exit 3.
"$ctl" create busybox:slow --wait >"$tmp/cancel.out" 2>&1 &
wpid=$!
cid=""
for _ in $(seq 1 50); do
    cid=$(sed -n 's/^task \(t-[a-z0-9]*\) created$/\1/p' "$tmp/cancel.out")
    [ -n "$cid" ] && break
    sleep 0.1
done
sleep 1
"$ctl" cancel "$cid" >"$tmp/cancel2.out" 2>&1
crc=$?
wait $wpid
rc=$?
check "cancel prints what it did" $([ $crc -eq 0 ] && grep -qx "task $cid cancelled" "$tmp/cancel2.out"; echo $?) \
    "rc=$crc" "$(cat "$tmp/cancel2.out")"
check "wait exits 3 after a cancel from another shell" $([ $rc -eq 3 ]; echo $?) "rc=$rc" "$(tail -3 "$tmp/cancel.out")"
check "the cancelled summary" $(grep -q "^Task $cid cancelled in .* cancelled$" "$tmp/cancel.out"; echo $?) \
    "$(tail -2 "$tmp/cancel.out")"
"$ctl" cancel "$id" >"$tmp/c409.out" 2>"$tmp/c409.err"
rc=$?
check "cancelling a finished task: exit 4 with the server's message" \
    $([ $rc -eq 4 ] && grep -qx "error: task $id already succeeded" "$tmp/c409.err"; echo $?) "rc=$rc" "$(cat "$tmp/c409.err")"

# 4. Ctrl-C while waiting stops the waiting, not the task.
"$ctl" create busybox:slow >"$tmp/int0.out" 2>&1
iid=$(sed -n 's/^task \(t-[a-z0-9]*\) created$/\1/p' "$tmp/int0.out")
"$ctl" wait "$iid" >"$tmp/int.out" 2>"$tmp/int.err" &
wpid=$!
sleep 1.5
kill -INT $wpid
wait $wpid
rc=$?
st=$("$ctl" get "$iid" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
check "Ctrl-C during wait exits 130, says how to resume, the task goes on" \
    $([ $rc -eq 130 ] && grep -q "Resume with: prewarmctl wait $iid" "$tmp/int.err" && [ "$st" = running ]; echo $?) \
    "rc=$rc status=$st" "$(cat "$tmp/int.err")"
"$ctl" cancel "$iid" >/dev/null 2>&1

# 4b. a short outage of the server (503 for 3 s) during a wait is ridden out.
"$ctl" create nginx:1.27 >"$tmp/out0.out" 2>&1
oid=$(sed -n 's/^task \(t-[a-z0-9]*\) created$/\1/p' "$tmp/out0.out")
curl -s "$PREWARM_SERVER/fake/outage?seconds=3" >/dev/null
"$ctl" wait "$oid" >"$tmp/outage.out" 2>&1
rc=$?
check "wait rides out a 3 s outage (503) and ends with the task's outcome" \
    $([ $rc -eq 0 ] && grep -q "^Task $oid succeeded" "$tmp/outage.out" &&
        grep -qx "prewarmd answered HTTP 503: the store is not open; retrying for up to 30s" "$tmp/outage.out"; echo $?) \
    "rc=$rc" "$(cat "$tmp/outage.out")"

# 5. no server: exit 4 with the exact message.
PREWARM_SERVER=http://127.0.0.1:1 "$ctl" list >"$tmp/nos.out" 2>"$tmp/nos.err"
rc=$?
check "no server: exit 4 and a readable message" \
    $([ $rc -eq 4 ] && grep -qx 'error: cannot reach prewarmd at http://127.0.0.1:1: Connection refused (is it running? set --server or PREWARM_SERVER)' "$tmp/nos.err"; echo $?) \
    "rc=$rc" "$(cat "$tmp/nos.err")"

# 6. API validation errors: the field and message, never raw JSON; exit 4.
"$ctl" create nginx:1.27 'Not/A:Valid:Ref' >"$tmp/inv.out" 2>"$tmp/inv.err"
rc=$?
check "an invalid image: exit 4, 'error: images[1]: invalid reference format'" \
    $([ $rc -eq 4 ] && [ "$(cat "$tmp/inv.err")" = "error: images[1]: invalid reference format" ]; echo $?) \
    "rc=$rc" "$(cat "$tmp/inv.err")"
"$ctl" get t-nope >/dev/null 2>"$tmp/nf.err"
rc=$?
check "an unknown task: exit 4, the server's message" \
    $([ $rc -eq 4 ] && [ "$(cat "$tmp/nf.err")" = "error: task t-nope not found" ]; echo $?) "rc=$rc" "$(cat "$tmp/nf.err")"

# 7. usage errors: exit 2 before any request.
"$ctl" create nginx --timeout 10x >/dev/null 2>"$tmp/use.err"
rc=$?
check "a bad duration is a usage error (exit 2)" \
    $([ $rc -eq 2 ] && grep -q '^error: --timeout "10x" is not a duration' "$tmp/use.err"; echo $?) "rc=$rc" "$(cat "$tmp/use.err")"

# 8. -o json / -o yaml round trips.
"$ctl" get "$id" -o json >"$tmp/get.json"
check "get -o json parses and has the id" \
    $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d["id"]==sys.argv[2] and d["progress"]["totalNodes"]==600 else 1)' \
        "$tmp/get.json" "$id"; echo $?) "$(head -5 "$tmp/get.json")"
"$ctl" get "$id" -o yaml >"$tmp/get.yaml"
check "get -o yaml reads back equal to -o json" \
    $(python3 -c '
import json,sys,yaml
j=json.load(open(sys.argv[1])); y=yaml.safe_load(open(sys.argv[2]))
sys.exit(0 if j==y else 1)' "$tmp/get.json" "$tmp/get.yaml"; echo $?) "$(head -5 "$tmp/get.yaml")"
"$ctl" list -o json >"$tmp/list.json"
check "list -o json has every task in items" \
    $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if len(d["items"])==5 and "continue" not in d else 1)' \
        "$tmp/list.json"; echo $?) "$(head -3 "$tmp/list.json")"

# 9. tables and paging.
"$ctl" list >"$tmp/list.out"
check "list prints a table, newest first" \
    $(head -1 "$tmp/list.out" | grep -q '^ID  *STATUS  *IMAGES  *NODES  *SUCCEEDED  *FAILED  *SKIPPED  *PROGRESS  *AGE$' &&
        [ "$(wc -l <"$tmp/list.out")" -eq 6 ] && sed -n 2p "$tmp/list.out" | grep -q "^$oid  *succeeded" && sed -n 3p "$tmp/list.out" | grep -q "^$iid  *cancelled"; echo $?) \
    "$(cat "$tmp/list.out")"
"$ctl" get "$id" -o wide >"$tmp/getw.out"
check "get -o wide adds strategy, batch, priority and message" \
    $(head -1 "$tmp/getw.out" | grep -q 'AGE  *STRATEGY  *BATCH  *PRIORITY  *MESSAGE$' &&
        sed -n 2p "$tmp/getw.out" | grep -q "^$id  *succeeded  *nginx:1.27,redis:7.4  *600  *540  *0  *60  *100.0%  *[0-9]*[smhd]  *rolling  *50  *0$"; echo $?) \
    "$(cat "$tmp/getw.out")"
"$ctl" list --limit 2 >"$tmp/list2.out"
check "list --limit 2 shows two" $([ "$(wc -l <"$tmp/list2.out")" -eq 3 ]; echo $?) "$(cat "$tmp/list2.out")"
"$ctl" list --status succeeded -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if [t["status"] for t in d["items"]]==["succeeded","succeeded"] else 1)'
check "list --status filters" $?
"$ctl" nodes "$id" >"$tmp/nodes.out"
pages=$(curl -s "$PREWARM_SERVER/fake/requests" | python3 -c '
import json,sys
print(sum(1 for r in json.load(sys.stdin)["items"] if "/nodes?" in r["path"] and "continue=" in r["path"]))')
check "nodes follows continue across pages (600 nodes)" \
    $([ "$(wc -l <"$tmp/nodes.out")" -eq 601 ] && [ "$pages" -ge 1 ]; echo $?) "lines=$(wc -l <"$tmp/nodes.out") pages=$pages"
"$ctl" nodes "$id" --state skipped -o wide >"$tmp/nodesw.out"
check "nodes --state skipped -o wide" \
    $(head -1 "$tmp/nodesw.out" | grep -q 'MESSAGE$' && [ "$(wc -l <"$tmp/nodesw.out")" -eq 61 ] &&
        ! grep -v -e '^NODE' -e ' skipped ' "$tmp/nodesw.out" | grep -q .; echo $?) "$(head -3 "$tmp/nodesw.out")"

# 10. the terminal: a bar redrawn in place, the cursor hidden then shown (through script(1)'s pty).
if command -v script >/dev/null 2>&1; then
    script -qfec "stty cols 120 2>/dev/null; NO_COLOR= '$ctl' create nginx:1.27 --batch-size 50 --wait" /dev/null \
        >"$tmp/tty.out" 2>&1 </dev/null
    check "on a terminal: the bar redrawn with \\r, cursor hidden and restored, colours" \
        $(grep -q $'\r\[=*>* *\] [0-9]*/600 ' "$tmp/tty.out" && grep -q $'\033\[?25l' "$tmp/tty.out" &&
            grep -q $'\033\[?25h' "$tmp/tty.out" && grep -q $'\033\[32mok ' "$tmp/tty.out"; echo $?) \
        "$(head -c 400 "$tmp/tty.out" | cat -v)"
else
    ok "on a terminal # SKIP script(1) not installed"
fi

# 11. --help documents the exit codes.
"$ctl" wait --help >"$tmp/help.out"
check "wait --help documents exit codes" \
    $(grep -q '^  3    the task was cancelled$' "$tmp/help.out" && grep -q '^  4    prewarmd unreachable' "$tmp/help.out"; echo $?)

echo "1..$n"
