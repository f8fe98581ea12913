#!/usr/bin/env bash
# cli_e2e.sh: prewarmctl against the real prewarmd and kubesim (ASan+UBSan builds from $PW_BIN):
# create --wait exits 0 on success (and kubesim's ground truth agrees), 1 on a failing image, 3 after a
# cancel from another shell, 4 with no server; -o json round-trips; the non-terminal progress output is
# plain lines. Prints TAP lines; when kubesim or prewarmd cannot run, the cases say so as "not ok".
set -u
root=${PW_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${PW_BIN:-$root/build/asan/bin}
ctl=$bin/prewarmctl
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
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
cases=("create --wait exits 0 on success" "kubesim holds every image on every node" "plain progress lines"
    "create --wait exits 1 on a failing image, with reasons" "wait exits 3 after a cancel from another shell"
    "no server: exit 4" "get -o json round-trips" "get -o yaml reads back equal to -o json"
    "an invalid image: exit 4 with the field and the server's message" "list and nodes tables")
give_up() { # every case not ok, with the reason
    for c in "${cases[@]}"; do nok "$c" "$@"; done
    "$ctl" get "$id" -o yaml >"$tmp/get.yaml" 2>&1
check "${cases[7]}" $(python3 -c '
import json,sys,yaml
sys.exit(0 if json.load(open(sys.argv[1]))==yaml.safe_load(open(sys.argv[2])) else 1)' "$tmp/get.json" "$tmp/get.yaml" 2>/dev/null; echo $?) \
    "$(head -5 "$tmp/get.yaml")"

# 6. the server's validation, shown as "error: field: message"
"$ctl" create nginx:1.27 'Not A Ref' >"$tmp/inv.out" 2>"$tmp/inv.err"
rc=$?
check "${cases[8]}" $([ $rc -eq 4 ] && grep -q '^error: images\[1\]: invalid reference format' "$tmp/inv.err" &&
    ! grep -q '[{}]' "$tmp/inv.err"; echo $?) "rc=$rc" "$(cat "$tmp/inv.err")"

# 7. tables
"$ctl" list >"$tmp/list.out" 2>&1
"$ctl" nodes "$id" >"$tmp/nodes.out" 2>&1
check "${cases[9]}" $(head -1 "$tmp/list.out" | grep -q '^ID  *STATUS  *IMAGES  *NODES' &&
    grep -q "^$id  *succeeded  *nginx:1.27,+1  *20  *20 " "$tmp/list.out" &&
    [ "$(grep -c ' succeeded  *job  *2/2 ' "$tmp/nodes.out")" -eq 20 ]; echo $?) "$(cat "$tmp/list.out")" "$(head -3 "$tmp/nodes.out")"

echo "1..$n"
    exit 1
}

for p in kubesim prewarmd prewarmctl; do
    [ -x "$bin/$p" ] || give_up "$bin/$p is not built"
done

# kubesim: 20 nodes, 10x faster than real pulls.
token=cli-e2e-$$-$RANDOM
"$bin/kubesim" --nodes 20 --listen 127.0.0.1:0 --kubeconfig-out "$tmp/kubeconfig" --time-scale 10 \
    --namespaces prewarm --token "$token" >"$tmp/kubesim.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
    [ -s "$tmp/kubeconfig" ] && grep -q current-context "$tmp/kubeconfig" && break
    kill -0 "${pids[0]}" 2>/dev/null || break
    sleep 0.1
done
[ -s "$tmp/kubeconfig" ] || give_up "kubesim did not start" "$(tail -5 "$tmp/kubesim.log")"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/prewarmd" --kubeconfig "$tmp/kubeconfig" --listen "127.0.0.1:$port" --store memory: \
    --log-level warn >"$tmp/prewarmd.log" 2>&1 &
pids+=($!)
export PREWARM_SERVER="http://127.0.0.1:$port"
export NO_COLOR=1
ready=""
for _ in $(seq 1 300); do
    curl -fsS -m 2 "$PREWARM_SERVER/readyz" >/dev/null 2>&1 && { ready=1; break; }
    kill -0 "${pids[1]}" 2>/dev/null || break
    sleep 0.2
done
[ -n "$ready" ] || give_up "prewarmd was not ready" "$(tail -5 "$tmp/prewarmd.log")"

# 1. success
timeout 300 "$ctl" create nginx:1.27 redis:7.4 --batch-size 10 --wait >"$tmp/ok.out" 2>"$tmp/ok.err"
rc=$?
id=$(sed -n 's/^task \([^ ]*\) created$/\1/p' "$tmp/ok.out")
check "${cases[0]}" $([ $rc -eq 0 ] && grep -q "^Task $id succeeded in .*: 20 nodes, 20 succeeded, 0 failed" "$tmp/ok.out"; echo $?) \
    "rc=$rc" "$(tail -3 "$tmp/ok.out")" "$(tail -3 "$tmp/ok.err")"
truth=$(curl -sk -H "Authorization: Bearer $token" \
    "$(sed -n 's/^ *server: *//p' "$tmp/kubeconfig" | head -1)/sim/v1/truth" 2>/dev/null)
check "${cases[1]}" $(echo "$truth" | python3 -c '
import json,sys
nodes=json.load(sys.stdin)["nodes"]
ok=len(nodes)==20 and all("nginx:1.27" in n["images"] and "redis:7.4" in n["images"] for n in nodes.values())
sys.exit(0 if ok else 1)' 2>/dev/null; echo $?) "$(echo "$truth" | head -c 300)"
check "${cases[2]}" $([ "$(grep -c '^\[[0-9hms]*\] [a-z]*: [0-9]*/20 nodes' "$tmp/ok.out")" -ge 1 ] &&
    ! grep -q $'[\r\033]' "$tmp/ok.out"; echo $?) "$(head -3 "$tmp/ok.out" | cat -v)"

# 2. a failing image
timeout 300 "$ctl" create nginx:does-not-exist --retries 0 --wait >"$tmp/fail.out" 2>"$tmp/fail.err"
rc=$?
check "${cases[3]}" $([ $rc -eq 1 ] && grep -q '^Failed nodes (20):$' "$tmp/fail.out" &&
    grep -q '^node[^ ]*  *nginx:does-not-exist  *ErrImagePull' "$tmp/fail.out"; echo $?) \
    "rc=$rc" "$(tail -5 "$tmp/fail.out")" "$(tail -3 "$tmp/fail.err")"

# 3. cancel from another shell while waiting: a big image one node at a time takes a while
timeout 300 "$ctl" create nvcr.io/nvidia/pytorch:24.08-py3 --batch-size 1 --wait >"$tmp/cancel.out" 2>&1 &
wpid=$!
cid=""
for _ in $(seq 1 100); do
    cid=$(sed -n 's/^task \([^ ]*\) created$/\1/p' "$tmp/cancel.out")
    [ -n "$cid" ] && break
    sleep 0.1
done
sleep 2
"$ctl" cancel "$cid" >"$tmp/cancel2.out" 2>&1
wait $wpid
rc=$?
check "${cases[4]}" $([ $rc -eq 3 ] && grep -q "^Task $cid cancelled" "$tmp/cancel.out"; echo $?) \
    "rc=$rc" "$(tail -3 "$tmp/cancel.out")" "$(cat "$tmp/cancel2.out")"

# 4. no server
"$ctl" --server "http://127.0.0.1:1" get "$id" >/dev/null 2>"$tmp/nos.err"
rc=$?
check "${cases[5]}" $([ $rc -eq 4 ] && grep -q '^error: cannot reach prewarmd at http://127.0.0.1:1: Connection refused' "$tmp/nos.err"; echo $?) \
    "rc=$rc" "$(cat "$tmp/nos.err")"

# 5. -o json
"$ctl" get "$id" -o json >"$tmp/get.json" 2>&1
check "${cases[6]}" $(python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
sys.exit(0 if d["id"]==sys.argv[2] and d["status"]=="succeeded" and d["progress"]["totalNodes"]==20 else 1)' \
    "$tmp/get.json" "$id" 2>/dev/null; echo $?) "$(head -c 300 "$tmp/get.json")"

"$ctl" get "$id" -o yaml >"$tmp/get.yaml" 2>&1
check "${cases[7]}" $(python3 -c '
import json,sys,yaml
sys.exit(0 if json.load(open(sys.argv[1]))==yaml.safe_load(open(sys.argv[2])) else 1)' "$tmp/get.json" "$tmp/get.yaml" 2>/dev/null; echo $?) \
    "$(head -5 "$tmp/get.yaml")"

# 6. the server's validation, shown as "error: field: message"
"$ctl" create nginx:1.27 'Not A Ref' >"$tmp/inv.out" 2>"$tmp/inv.err"
rc=$?
check "${cases[8]}" $([ $rc -eq 4 ] && grep -q '^error: images\[1\]: invalid reference format' "$tmp/inv.err" &&
    ! grep -q '[{}]' "$tmp/inv.err"; echo $?) "rc=$rc" "$(cat "$tmp/inv.err")"

# 7. tables
"$ctl" list >"$tmp/list.out" 2>&1
"$ctl" nodes "$id" >"$tmp/nodes.out" 2>&1
check "${cases[9]}" $(head -1 "$tmp/list.out" | grep -q '^ID  *STATUS  *IMAGES  *NODES' &&
    grep -q "^$id  *succeeded  *nginx:1.27,+1  *20  *20 " "$tmp/list.out" &&
    [ "$(grep -c ' succeeded  *job  *2/2 ' "$tmp/nodes.out")" -eq 20 ]; echo $?) "$(cat "$tmp/list.out")" "$(head -3 "$tmp/nodes.out")"

echo "1..$n"
