#!/usr/bin/env bash
# kubesim_kubectl.sh: real kubectl (the newest and the oldest version on this machine) against kubesim,
# checking what kubectl prints, not only its exit codes: get nodes (columns, Ready), label + selectors,
# create -f of a Job, get pods -w seeing its pod appear and complete, wait --for=condition=complete,
# get job (table and -o json), describe job/pod/node (events), get pods -o wide, delete job removing
# its pods, the client-certificate context. Also kubesim's own shell: --help, bad flags (exit 2), the
# kubeconfig file, 401 Status for unauthenticated requests, --insecure-http, SIGTERM -> exit 0.
# One TAP line per case.
set -u
ROOT=${PW_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${PW_BIN:-$ROOT/build/asan/bin}
PY=/usr/bin/python3
NODES=3

work=$(mktemp -d /tmp/kubesim-kubectl.XXXXXX)
sim_pid=""
bg_pids=()
cleanup() {
    for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null; done
    if [ -n "$sim_pid" ]; then
        kill -TERM "$sim_pid" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$sim_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$sim_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

n_ok=0
n_fail=0
# tap OK NAME [DIAG-FILE]: one TAP line; on failure the first lines of DIAG-FILE as comments.
tap() {
    if [ "$1" -eq 0 ]; then
        echo "ok - $2"
        n_ok=$((n_ok + 1))
    else
        echo "not ok - $2"
        n_fail=$((n_fail + 1))
        if [ -n "${3:-}" ] && [ -f "$3" ]; then head -c 1500 "$3" | sed 's/^/#   /'; echo; fi
    fi
}

# json_check FILE PYTHON-EXPR: evaluates EXPR with `o` = the parsed JSON of FILE; 0 when true.
json_check() {
    "$PY" -c 'import json,sys; o=json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2" 2>/dev/null
}

# ---- the command line ----
"$BIN/kubesim" --help >"$work/help.out" 2>&1
rc=$?
missing=""
for f in --nodes --listen --kubeconfig-out --catalog --seed --insecure-http --token --threads --history \
    --registry-bandwidth --node-bandwidth --max-parallel-pulls --time-scale --pod-start-latency \
    --container-start-latency --controller-latency --arm64-percent --not-ready --namespaces; do
    grep -q -- "^  $f " "$work/help.out" || missing="$missing $f"
done
[ $rc -eq 0 ] && [ -z "$missing" ]
tap $? "kubesim --help exits 0 and lists every flag${missing:+ (missing:$missing)}" "$work/help.out"
"$BIN/kubesim" --kubeconfig-out "$work/never" --no-such-flag >"$work/bad.out" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q 'unknown flag --no-such-flag' "$work/bad.out" && [ ! -e "$work/never" ]
tap $? "an unknown flag: a message and exit status 2" "$work/bad.out"
"$BIN/kubesim" --kubeconfig-out "$work/never" --nodes many >"$work/bad.out" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "bad value for --nodes: 'many'" "$work/bad.out"
tap $? "a bad value: a message and exit status 2" "$work/bad.out"
"$BIN/kubesim" --nodes 1 >"$work/bad.out" 2>&1
[ $? -eq 2 ] && grep -q 'kubeconfig-out PATH is required' "$work/bad.out"
tap $? "no --kubeconfig-out: a message and exit status 2" "$work/bad.out"

# ---- start kubesim ----
kc=$work/kubeconfig
"$BIN/kubesim" --nodes $NODES --listen 127.0.0.1:0 --kubeconfig-out "$kc" --seed 7 --time-scale 4 \
    >"$work/kubesim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 1 300); do
    [ -s "$kc" ] && break
    kill -0 "$sim_pid" 2>/dev/null || break
    sleep 0.1
done
if [ ! -s "$kc" ]; then
    tap 1 "kubesim starts and writes its kubeconfig" "$work/kubesim.log"
    exit 1
fi
tap 0 "kubesim starts and writes its kubeconfig"
grep -qE '"msg":"ready url=https://127\.0\.0\.1:[0-9]+ kubeconfig=' "$work/kubesim.log" &&
    [ "$(stat -c %a "$kc")" = 600 ] && [ ! -e "$kc.tmp" ] &&
    grep -q '^current-context: kubesim$' "$kc" && grep -q 'client-certificate-data: ' "$kc"
tap $? "the kubeconfig: mode 0600, no temporary left, current context kubesim, a ready log line" "$work/kubesim.log"
server=$(sed -n 's/^ *server: *//p' "$kc" | head -1)
token=$(sed -n '/name: kubesim-token/,/name: kubesim-cert/s/^ *token: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$kc" | head -1)
ca=$work/ca.pem
sed -n 's/^ *certificate-authority-data: *//p' "$kc" | head -1 | base64 -d >"$ca"

# ---- authentication seen from curl ----
code=$(curl -s --cacert "$ca" -o "$work/unauth.json" -w '%{http_code}' "$server/api/v1/nodes")
[ "$code" = 401 ] && json_check "$work/unauth.json" 'o["kind"]=="Status" and o["code"]==401 and o["reason"]=="Unauthorized" and o["status"]=="Failure"'
tap $? "unauthenticated GET /api/v1/nodes -> 401 with a Status body" "$work/unauth.json"
code=$(curl -s --cacert "$ca" -H "Authorization: Bearer wrong-$token" -o "$work/badtok.json" -w '%{http_code}' "$server/api/v1/nodes")
[ "$code" = 401 ] && json_check "$work/badtok.json" 'o["kind"]=="Status" and o["code"]==401'
tap $? "a wrong bearer token -> 401 Status" "$work/badtok.json"
code=$(curl -s --cacert "$ca" -H "Authorization: Bearer $token" -o "$work/nodes.json" -w '%{http_code}' "$server/api/v1/nodes")
[ "$code" = 200 ] && json_check "$work/nodes.json" "o['kind']=='NodeList' and len(o['items'])==$NODES"
tap $? "the kubeconfig's token and CA work with curl (200 NodeList of $NODES)" "$work/nodes.json"

# ---- the kubectl binaries: newest and oldest ----
kdir=/usr/lib/google-cloud-sdk/bin
kubectls=()
[ -x "$kdir/kubectl.1.33" ] && kubectls+=("$kdir/kubectl.1.33")
[ -x "$kdir/kubectl.1.27" ] && kubectls+=("$kdir/kubectl.1.27")
if [ ${#kubectls[@]} -eq 0 ]; then
    kubectls+=("$(command -v kubectl)")
fi

# run_kubectl_suite KUBECTL: every kubectl case, for one binary.
run_kubectl_suite() {
    local kb=$1
    local v
    v=$(basename "$kb" | sed 's/^kubectl\.\{0,1\}//')
    [ -z "$v" ] && v=path
    local tag="kubectl ${v}"
    local d=$work/k-$v
    mkdir -p "$d"
    local K=(env KUBECONFIG="$kc" HOME="$d" "$kb" --cache-dir "$d/cache" --request-timeout=30s)
    local job=job-${v//./}
    local out=$d/out

    # get nodes: the usual columns and every node Ready
    "${K[@]}" get nodes >"$out" 2>&1
    local rc=$?
    [ $rc -eq 0 ] &&
        head -1 "$out" | grep -qE '^NAME +STATUS +ROLES +AGE +VERSION *$' &&
        [ "$(grep -cE '^node-[0-9]{4} +Ready +' "$out")" -eq $NODES ] &&
        grep -qE '^node-0001 +Ready +[^ ]+ +[0-9]+[smhd] +v1\.[0-9]+' "$out"
    tap $? "$tag: get nodes shows NAME STATUS ROLES AGE VERSION and $NODES Ready nodes" "$out"

    # label node, then select it
    "${K[@]}" label node node-0001 "team=t$v" --overwrite >"$out" 2>&1 &&
        grep -q 'node/node-0001 labeled' "$out"
    tap $? "$tag: label node node-0001 team=t$v" "$out"
    "${K[@]}" get nodes -l "team=t$v" >"$out" 2>&1 &&
        [ "$(grep -cE '^node-' "$out")" -eq 1 ] && grep -qE '^node-0001 +Ready' "$out"
    tap $? "$tag: get nodes -l team=t$v shows only node-0001" "$out"
    "${K[@]}" get nodes -l "team!=t$v" -o name >"$out" 2>&1 &&
        [ "$(grep -c '^node/' "$out")" -eq $((NODES - 1)) ] && ! grep -q 'node/node-0001$' "$out"
    tap $? "$tag: get nodes -l team!=t$v -o name shows the other nodes" "$out"

    # the Job, watched from before its creation
    cat >"$d/job.yaml" <<EOF
apiVersion: batch/v1
kind: Job
metadata:
  name: $job
  namespace: default
spec:
  backoffLimit: 2
  template:
    metadata:
      labels:
        app: fidelity
    spec:
      nodeName: node-0001
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:1.36
        command: ["true"]
EOF
    "${K[@]}" get pods -w -l "job-name=$job" >"$d/watch.out" 2>"$d/watch.err" &
    local wpid=$!
    bg_pids+=("$wpid")
    sleep 1
    "${K[@]}" create -f "$d/job.yaml" >"$out" 2>&1 && grep -q "job.batch/$job created" "$out"
    tap $? "$tag: create -f job.yaml" "$out"

    "${K[@]}" wait --for=condition=complete "job/$job" --timeout=60s >"$out" 2>&1 &&
        grep -q "job.batch/$job condition met" "$out"
    tap $? "$tag: wait --for=condition=complete job/$job" "$out"

    # the watch saw the pod appear (Pending/ContainerCreating) and reach Completed
    local seen=1
    for _ in $(seq 1 100); do
        if grep -qE "^$job-[a-z0-9]{5} +0/1 +Completed" "$d/watch.out"; then seen=0; break; fi
        sleep 0.1
    done
    kill "$wpid" 2>/dev/null
    wait "$wpid" 2>/dev/null
    [ $seen -eq 0 ] &&
        grep -qE '^NAME +READY +STATUS +RESTARTS +AGE' "$d/watch.out" &&
        grep -qE "^$job-[a-z0-9]{5} +0/1 +(Pending|ContainerCreating)" "$d/watch.out"
    tap $? "$tag: get pods -w sees the Job's pod appear and reach Completed" "$d/watch.out"

    "${K[@]}" get job "$job" -o json >"$out" 2>&1 &&
        json_check "$out" 'o["kind"]=="Job" and o["apiVersion"]=="batch/v1" and o["status"].get("succeeded")==1 and any(c["type"]=="Complete" and c["status"]=="True" for c in o["status"].get("conditions",[])) and "completionTime" in o["status"] and o["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"]==o["metadata"]["uid"]'
    tap $? "$tag: get job -o json: succeeded 1, condition Complete, completionTime, selector" "$out"

    "${K[@]}" get pods -l "job-name=$job" -o json >"$out" 2>&1 &&
        json_check "$out" 'len(o["items"])==1 and o["items"][0]["status"]["phase"]=="Succeeded" and o["items"][0]["metadata"]["ownerReferences"][0]["kind"]=="Job" and o["items"][0]["status"]["containerStatuses"][0]["state"]["terminated"]["reason"]=="Completed" and o["items"][0]["status"]["containerStatuses"][0]["imageID"]!=""'
    tap $? "$tag: the Job's pod is Succeeded, owned by the Job, terminated Completed, imageID set" "$out"

    "${K[@]}" get pods -o wide >"$out" 2>&1 &&
        grep -qE "^$job-[a-z0-9]{5} +0/1 +Completed +0 +[0-9]+[smh] +[^ ]+ +node-0001 " "$out"
    tap $? "$tag: get pods -o wide shows the pod Completed on node-0001" "$out"

    "${K[@]}" get job "$job" >"$out" 2>&1 &&
        grep -qE '^NAME +(STATUS +)?COMPLETIONS +DURATION +AGE' "$out" &&
        grep -qE "^$job +(Complete +)?1/1 +[0-9]+(ms|s|m) +[0-9]+[smh]" "$out"
    tap $? "$tag: get job shows COMPLETIONS 1/1 and a DURATION" "$out"

    "${K[@]}" describe job "$job" >"$out" 2>&1 &&
        grep -qE "Normal +SuccessfulCreate +.*job-controller +Created pod: $job-[a-z0-9]{5}" "$out" &&
        grep -qE 'Normal +Completed +.*job-controller +Job completed' "$out"
    tap $? "$tag: describe job lists the events SuccessfulCreate and Completed" "$out"

    "${K[@]}" describe pods -l "job-name=$job" >"$out" 2>&1 &&
        grep -qE '^Status: +Succeeded' "$out" &&
        grep -qE 'Normal +Pulled +.*kubelet +(Successfully pulled image "busybox:1.36"|Container image "busybox:1.36" already present on machine)' "$out" &&
        grep -qE 'Normal +Started +.*kubelet +Started container main' "$out"
    tap $? "$tag: describe pod: Succeeded, the kubelet's Pulled and Started events" "$out"

    "${K[@]}" delete job "$job" >"$out" 2>&1 && grep -q "job.batch \"$job\" deleted" "$out"
    tap $? "$tag: delete job $job" "$out"
    local gone=1
    for _ in $(seq 1 150); do
        "${K[@]}" get pods -l "job-name=$job" -o name >"$out" 2>&1
        if [ $? -eq 0 ] && ! grep -q "^pod/" "$out"; then gone=0; break; fi
        sleep 0.2
    done
    [ $gone -eq 0 ] && ! "${K[@]}" get job "$job" >/dev/null 2>&1
    tap $? "$tag: delete job removes the Job and its pods (Background)" "$out"

    "${K[@]}" describe node node-0001 >"$out" 2>&1 &&
        grep -qE '^Name: +node-0001' "$out" && grep -qE '^ +Ready +True' "$out" &&
        grep -qE "team=t$v" "$out"
    tap $? "$tag: describe node node-0001 (name, Ready True, labels)" "$out"

    "${K[@]}" --context kubesim-cert get ns >"$out" 2>&1 &&
        head -1 "$out" | grep -qE '^NAME +STATUS +AGE' &&
        grep -qE '^default +Active' "$out" && grep -qE '^kube-system +Active' "$out"
    tap $? "$tag: --context kubesim-cert (client certificate) get ns" "$out"
}

for kb in "${kubectls[@]}"; do
    run_kubectl_suite "$kb"
done

# ---- SIGTERM stops kubesim cleanly ----
kill -TERM "$sim_pid"
rc=124
for _ in $(seq 1 150); do
    if ! kill -0 "$sim_pid" 2>/dev/null; then wait "$sim_pid"; rc=$?; break; fi
    sleep 0.1
done
sim_pid=""
[ $rc -eq 0 ] && ! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error' "$work/kubesim.log"
tap $? "SIGTERM: kubesim exits 0 without sanitizer reports" "$work/kubesim.log"

# ---- --insecure-http: plain HTTP, the token still required ----
kc2=$work/kubeconfig-http
"$BIN/kubesim" --nodes 2 --insecure-http --token fidelity-token --kubeconfig-out "$kc2" >"$work/kubesim-http.log" 2>&1 &
sim_pid=$!
for _ in $(seq 1 300); do
    [ -s "$kc2" ] && break
    kill -0 "$sim_pid" 2>/dev/null || break
    sleep 0.1
done
server2=$(sed -n 's/^ *server: *//p' "$kc2" 2>/dev/null | head -1)
# (kubectl itself sends no Authorization header over plain HTTP, kubernetes/kubectl#744: curl here,
# as libcurl and the Python client do send it)
code=$(curl -s -H 'Authorization: Bearer fidelity-token' -o "$work/http.json" -w '%{http_code}' "$server2/api/v1/nodes")
[ "$code" = 200 ] && [[ "$server2" == http://127.0.0.1:* ]] && ! grep -q certificate-authority-data "$kc2" &&
    grep -q 'token: "fidelity-token"' "$kc2" && json_check "$work/http.json" 'len(o["items"])==2'
tap $? "--insecure-http: an http:// kubeconfig with the given token, which lists the 2 nodes" "$work/http.json"
code=$(curl -s -o "$work/unauth2.json" -w '%{http_code}' "$server2/api/v1/namespaces")
[ "$code" = 401 ] && json_check "$work/unauth2.json" 'o["kind"]=="Status" and o["code"]==401'
tap $? "--insecure-http: no token -> 401 Status" "$work/unauth2.json"
kill -TERM "$sim_pid"
rc=124
for _ in $(seq 1 150); do
    if ! kill -0 "$sim_pid" 2>/dev/null; then wait "$sim_pid"; rc=$?; break; fi
    sleep 0.1
done
sim_pid=""
[ $rc -eq 0 ] && ! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error' "$work/kubesim-http.log"
tap $? "--insecure-http: SIGTERM exits 0 without sanitizer reports" "$work/kubesim-http.log"

echo "1..$((n_ok + n_fail))"
[ $n_fail -eq 0 ]
