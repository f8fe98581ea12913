#!/usr/bin/env bash
# kubesim_api.sh: curl-level checks of kubesim's Kubernetes API server against the real binary:
# authentication (token and client certificate over HTTPS, token over --insecure-http), discovery,
# CRUD with the real Status bodies (409/422/404), label and field selectors, limit/continue, watch
# (events, bookmarks, the 410 after a compaction), and the deletion propagation of a Job's pods.
# Prints TAP lines; needs $PW_BIN (kubesim), curl and python3.
set -u
BIN=${PW_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/build/asan/bin}
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); echo "not ok $n - $1"; [ $# -gt 1 ] && echo "# $2" | head -c 600 && echo; }
check() { # check NAME COND-EXIT-CODE [detail]
    if [ "$2" -eq 0 ]; then ok "$1"; else nok "$1" "${3:-}"; fi
}
py() { python3 -c "$1"; }
jget() { # jget FILE EXPR : evaluates EXPR with d = the JSON in FILE
    python3 -c "import json,sys; d=json.load(open('$1')); print($2)" 2>/dev/null
}

# start NAME [flags...]: starts kubesim writing $tmp/NAME.kubeconfig; waits for it (bounded)
start() {
    local name=$1
    shift
    "$BIN/kubesim" --nodes 6 --listen 127.0.0.1:0 --kubeconfig-out "$tmp/$name.kubeconfig" "$@" >"$tmp/$name.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do
        [ -s "$tmp/$name.kubeconfig" ] && return 0
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.05
    done
    return 1
}

if ! start http --insecure-http --time-scale 20; then
    nok "kubesim --insecure-http starts and writes its kubeconfig" "$(tail -5 "$tmp/http.log")"
    exit 0
fi
ok "kubesim --insecure-http starts and writes its kubeconfig"
KC=$tmp/http.kubeconfig
SERVER=$(grep -m1 'server:' "$KC" | sed 's/.*server: *//; s/"//g')
TOKEN=$(grep -m1 'token:' "$KC" | sed 's/.*token: *//; s/"//g')
H="Authorization: Bearer $TOKEN"
# c OUT METHOD PATH [BODY [CTYPE]]: prints the HTTP code, body into OUT
c() {
    local out=$1 m=$2 p=$3 body=${4:-} ct=${5:-application/json}
    if [ -n "$body" ]; then
        curl -s -o "$out" -w '%{http_code}' -X "$m" -H "$H" -H "Content-Type: $ct" --data "$body" "$SERVER$p"
    else
        curl -s -o "$out" -w '%{http_code}' -X "$m" -H "$H" "$SERVER$p"
    fi
}

# ---- authentication ----
code=$(curl -s -o "$tmp/o" -w '%{http_code}' "$SERVER/api/v1/nodes")
check "401 without a token, with a Status body" $([ "$code" = 401 ] && [ "$(jget "$tmp/o" "d['kind'],d['reason']")" = "Status Unauthorized" ]; echo $?) "$code $(cat "$tmp/o")"
code=$(curl -s -o "$tmp/o" -w '%{http_code}' -H "Authorization: Bearer wrong" "$SERVER/api/v1/nodes")
check "401 with a wrong token" $([ "$code" = 401 ]; echo $?)

# ---- discovery ----
c "$tmp/o" GET /api >/dev/null
check "/api lists v1 and serverAddressByClientCIDRs" $([ "$(jget "$tmp/o" "d['versions'][0], 'serverAddressByClientCIDRs' in d")" = "v1 True" ]; echo $?)
code=$(curl -s -o "$tmp/o" -D "$tmp/h" -w '%{http_code}' -H "$H" -H 'Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json' "$SERVER/apis")
groups=$(jget "$tmp/o" "' '.join(sorted(g['name'] for g in d['groups']))")
check "/apis: classic APIGroupList even when aggregated discovery is asked" $([ "$code" = 200 ] && grep -qi '^content-type: application/json' "$tmp/h" && [ "$groups" = "apiextensions.k8s.io apps authentication.k8s.io authorization.k8s.io batch coordination.k8s.io rbac.authorization.k8s.io" ]; echo $?) "$groups"
c "$tmp/o" GET /api/v1 >/dev/null
check "/api/v1 has pods, pods/status, shortNames and verbs" $([ "$(jget "$tmp/o" "[(r['name'], r.get('shortNames'), r['singularName']) for r in d['resources'] if r['name'] in ('pods','pods/status')]")" = "[('pods', ['po'], 'pod'), ('pods/status', None, '')]" ]; echo $?) "$(head -c 300 "$tmp/o")"
code=$(curl -s -o /dev/null -D "$tmp/h" -w '%{http_code}' -H "$H" "$SERVER/openapi/v2")
check "/openapi/v2 answers 200 with the protobuf content type" $([ "$code" = 200 ] && grep -qi 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf' "$tmp/h"; echo $?)

# ---- nodes, selectors, pages ----
c "$tmp/o" GET /api/v1/nodes >/dev/null
check "6 nodes listed as a NodeList" $([ "$(jget "$tmp/o" "d['kind'], len(d['items'])")" = "NodeList 6" ]; echo $?)
arm=$(jget "$tmp/o" "len([i for i in d['items'] if i['metadata']['labels'].get('kubernetes.io/arch')=='arm64'])")
c "$tmp/o" GET "/api/v1/nodes?labelSelector=kubernetes.io/arch%3Darm64" >/dev/null
got=$(jget "$tmp/o" "len(d['items'])")
c "$tmp/o" GET "/api/v1/nodes?labelSelector=kubernetes.io/arch+notin+(arm64)" >/dev/null
got2=$(jget "$tmp/o" "len(d['items'])")
check "label selectors = and notin split the nodes ($arm arm64)" $([ "$got" = "$arm" ] && [ $((got + got2)) = 6 ]; echo $?) "$got $got2"
code=$(c "$tmp/o" GET "/api/v1/nodes?labelSelector=a+in+b")
check "a bad label selector is 400 BadRequest" $([ "$code" = 400 ] && [ "$(jget "$tmp/o" "d['reason']")" = BadRequest ]; echo $?)
c "$tmp/o" GET "/api/v1/nodes?fieldSelector=metadata.name%3Dnode-0002" >/dev/null
check "fieldSelector metadata.name" $([ "$(jget "$tmp/o" "[i['metadata']['name'] for i in d['items']]")" = "['node-0002']" ]; echo $?)
code=$(c "$tmp/o" GET "/api/v1/nodes?fieldSelector=spec.podCIDR%3Dx")
check "an unsupported field selector is 400 'field label not supported'" $([ "$code" = 400 ] && [ "$(jget "$tmp/o" "d['message']")" = "field label not supported: spec.podCIDR" ]; echo $?) "$(cat "$tmp/o")"
c "$tmp/o" GET "/api/v1/nodes?limit=4" >/dev/null
cont=$(jget "$tmp/o" "d['metadata']['continue']")
rv1=$(jget "$tmp/o" "d['metadata']['resourceVersion']")
c "$tmp/o2" GET "/api/v1/nodes?limit=4&continue=$cont" >/dev/null
check "limit + continue: 4 then 2, same list resourceVersion" $([ "$(jget "$tmp/o" "len(d['items'])")" = 4 ] && [ "$(jget "$tmp/o2" "len(d['items']), d['metadata']['resourceVersion'], d['metadata'].get('continue')")" = "2 $rv1 None" ]; echo $?) "$(jget "$tmp/o2" "d['metadata']")"
curl -s -o "$tmp/o" -H "$H" -H 'Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json' "$SERVER/api/v1/nodes"
check "Table for nodes: NAME STATUS ROLES AGE VERSION" $([ "$(jget "$tmp/o" "[c['name'] for c in d['columnDefinitions']], d['rows'][0]['cells'][1]")" = "['Name', 'Status', 'Roles', 'Age', 'Version'] Ready" ]; echo $?) "$(head -c 300 "$tmp/o")"

# ---- CRUD and Status bodies ----
JOB='{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"%s"},"spec":{"template":{"spec":{"restartPolicy":"%s","containers":[{"name":"c","image":"busybox:1.36","command":["sleep","3600"]}]}}}}'
code=$(c "$tmp/o" POST /apis/batch/v1/namespaces/default/jobs "$(printf "$JOB" j1 Never)")
check "create a Job: 201 with defaults (backoffLimit 6, selector, labels)" $([ "$code" = 201 ] && [ "$(jget "$tmp/o" "d['spec']['backoffLimit'], d['spec']['template']['metadata']['labels']['job-name'], d['spec']['selector']['matchLabels']['batch.kubernetes.io/controller-uid']==d['metadata']['uid']")" = "6 j1 True" ]; echo $?) "$code $(head -c 300 "$tmp/o")"
code=$(c "$tmp/o" POST /apis/batch/v1/namespaces/default/jobs "$(printf "$JOB" j1 Never)")
check "409 AlreadyExists with the real message" $([ "$code" = 409 ] && [ "$(jget "$tmp/o" "d['reason'], d['message']")" = 'AlreadyExists jobs.batch "j1" already exists' ]; echo $?) "$(cat "$tmp/o")"
code=$(c "$tmp/o" POST /apis/batch/v1/namespaces/default/jobs "$(printf "$JOB" j2 Always)")
check "422 Invalid for restartPolicy Always, with causes" $([ "$code" = 422 ] && [ "$(jget "$tmp/o" "d['message']")" = 'Job.batch "j2" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"' ] && [ "$(jget "$tmp/o" "d['details']['causes'][0]['field']")" = spec.template.spec.restartPolicy ]; echo $?) "$(cat "$tmp/o")"
code=$(c "$tmp/o" POST /api/v1/namespaces/default/pods '{"metadata":{"name":"UPPER"},"spec":{"containers":[{"name":"c"}]}}')
check "422 for a bad name and a container without image" $([ "$code" = 422 ] && jget "$tmp/o" "d['message']" | grep -q 'metadata.name: Invalid value: "UPPER"' && jget "$tmp/o" "d['message']" | grep -q 'spec.containers\[0\].image: Required value'; echo $?) "$(cat "$tmp/o")"
code=$(c "$tmp/o" POST /apis/batch/v1/namespaces/missing/jobs "$(printf "$JOB" j3 Never)")
check "404 for a missing namespace" $([ "$code" = 404 ] && [ "$(jget "$tmp/o" "d['message']")" = 'namespaces "missing" not found' ]; echo $?)
code=$(c "$tmp/o" GET /apis/batch/v1/namespaces/default/jobs/nope)
check "404 NotFound with the real message" $([ "$code" = 404 ] && [ "$(jget "$tmp/o" "d['message']")" = 'jobs.batch "nope" not found' ]; echo $?)
c "$tmp/o" POST /apis/coordination.k8s.io/v1/namespaces/default/leases '{"metadata":{"name":"lead"},"spec":{"holderIdentity":"a"}}' >/dev/null
lrv=$(jget "$tmp/o" "d['metadata']['resourceVersion']")
c "$tmp/o" PUT /apis/coordination.k8s.io/v1/namespaces/default/leases/lead "{\"metadata\":{\"name\":\"lead\",\"resourceVersion\":\"$lrv\"},\"spec\":{\"holderIdentity\":\"b\"}}" >/dev/null
code=$(c "$tmp/o" PUT /apis/coordination.k8s.io/v1/namespaces/default/leases/lead "{\"metadata\":{\"name\":\"lead\",\"resourceVersion\":\"$lrv\"},\"spec\":{\"holderIdentity\":\"c\"}}")
check "PUT with a stale resourceVersion: 409 Conflict" $([ "$code" = 409 ] && [ "$(jget "$tmp/o" "d['reason']")" = Conflict ]; echo $?) "$(cat "$tmp/o")"
code=$(c "$tmp/o" PATCH /api/v1/nodes/node-0001 '{"metadata":{"labels":{"team":"x"}}}' application/merge-patch+json)
code2=$(c "$tmp/o2" PATCH /api/v1/nodes/node-0001 '{"spec":{"taints":[{"key":"k","effect":"NoSchedule"}]}}' application/strategic-merge-patch+json)
check "merge and strategic-merge patches" $([ "$code$code2" = 200200 ] && [ "$(jget "$tmp/o2" "d['metadata']['labels']['team'], d['spec']['taints'][0]['key']")" = "x k" ]; echo $?)

# ---- watch ----
c "$tmp/o" GET /api/v1/namespaces/default/secrets >/dev/null
wrv=$(jget "$tmp/o" "d['metadata']['resourceVersion']")
curl -sN -H "$H" "$SERVER/api/v1/namespaces/default/secrets?watch=true&resourceVersion=$wrv&allowWatchBookmarks=true&timeoutSeconds=3" >"$tmp/watch" &
wpid=$!
sleep 0.3
c "$tmp/o" POST /api/v1/namespaces/default/secrets '{"metadata":{"name":"s1"}}' >/dev/null
c "$tmp/o" DELETE /api/v1/namespaces/default/secrets/s1 >/dev/null
wait $wpid
types=$(python3 -c "
import json
print(' '.join(json.loads(l)['type'] for l in open('$tmp/watch') if l.strip()))" 2>/dev/null)
check "watch from a resourceVersion: ADDED, DELETED and BOOKMARKs, one per line" $(echo "$types" | grep -Eq '^ADDED DELETED( BOOKMARK)+$'; echo $?) "$types"
code=$(c "$tmp/o" POST /sim/v1/faults '{"compact":true}')
curl -sN -m 5 -H "$H" "$SERVER/api/v1/namespaces/default/secrets?watch=true&resourceVersion=$wrv" >"$tmp/watch2"
check "after POST /sim/v1/faults {compact:true}: one ERROR event 410 Expired" $([ "$code" = 200 ] && [ "$(python3 -c "
import json
ls=[json.loads(l) for l in open('$tmp/watch2') if l.strip()]
print(len(ls), ls[0]['type'], ls[0]['object']['code'], ls[0]['object']['reason'], ls[0]['object']['message'].startswith('too old resource version: $wrv'))")" = "1 ERROR 410 Expired True" ]; echo $?) "$(cat "$tmp/watch2")"
c "$tmp/o" POST /sim/v1/faults '{}' >/dev/null

# ---- delete propagation of a Job's pods (the world's Job controller makes them) ----
waitpods() { # waitpods JOB WANT: waits until the number of pods with job-name=JOB is WANT (bounded)
    for _ in $(seq 100); do
        c "$tmp/p" GET "/api/v1/namespaces/default/pods?labelSelector=job-name%3D$1" >/dev/null
        [ "$(jget "$tmp/p" "len(d['items'])")" = "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
c "$tmp/o" POST /apis/batch/v1/namespaces/default/jobs "$(printf "$JOB" bg Never)" >/dev/null
if waitpods bg 1; then
    code=$(c "$tmp/o" DELETE /apis/batch/v1/namespaces/default/jobs/bg '{"propagationPolicy":"Background"}')
    waitpods bg 0
    check "DELETE a Job with Background: 200 Success, its pod is garbage-collected" $([ "$code" = 200 ] && [ "$(jget "$tmp/o" "d['status']")" = Success ] && [ "$(jget "$tmp/p" "len(d['items'])")" = 0 ]; echo $?) "$code $(cat "$tmp/o")"
else
    nok "DELETE a Job with Background: its pod is garbage-collected" "the Job controller made no pod"
fi
c "$tmp/o" POST /apis/batch/v1/namespaces/default/jobs "$(printf "$JOB" orph Never)" >/dev/null
if waitpods orph 1; then
    c "$tmp/o" DELETE /apis/batch/v1/namespaces/default/jobs/orph >/dev/null
    sleep 0.5
    c "$tmp/p" GET "/api/v1/namespaces/default/pods?labelSelector=job-name%3Dorph" >/dev/null
    check "DELETE a Job without a policy orphans its pod (ownerReferences stripped)" $([ "$(jget "$tmp/p" "len(d['items']), d['items'][0]['metadata'].get('ownerReferences')")" = "1 None" ]; echo $?) "$(head -c 400 "$tmp/p")"
else
    nok "DELETE a Job without a policy orphans its pod" "the Job controller made no pod"
fi
c "$tmp/o" POST /apis/batch/v1/namespaces/default/jobs "$(printf "$JOB" fg Never)" >/dev/null
if waitpods fg 1; then
    c "$tmp/o" DELETE /apis/batch/v1/namespaces/default/jobs/fg '{"propagationPolicy":"Foreground"}' >/dev/null
    fin=$(jget "$tmp/o" "d['metadata']['finalizers']")
    waitpods fg 0
    gone=1
    for _ in $(seq 50); do
        [ "$(c "$tmp/o2" GET /apis/batch/v1/namespaces/default/jobs/fg)" = 404 ] && { gone=0; break; }
        sleep 0.1
    done
    check "Foreground: foregroundDeletion finalizer, pod gone, then the Job" $([ "$fin" = "['foregroundDeletion']" ] && [ $gone = 0 ]; echo $?) "$fin"
else
    nok "Foreground deletion" "the Job controller made no pod"
fi

# ---- stats ----
c "$tmp/o" GET /sim/v1/stats >/dev/null
check "/sim/v1/stats counts create jobs 201 and the watches" $([ "$(jget "$tmp/o" "[r['count'] for r in d['requests'] if r['verb']=='create' and r['resource']=='jobs' and r['code']==201][0] >= 4, d['watches']['total'] >= 2")" = "True True" ]; echo $?) "$(head -c 300 "$tmp/o")"

# ---- HTTPS: token and client certificate ----
if start tls; then
    KC2=$tmp/tls.kubeconfig
    S2=$(grep -m1 'server:' "$KC2" | sed 's/.*server: *//; s/"//g')
    T2=$(grep -m1 'token:' "$KC2" | sed 's/.*token: *//; s/"//g')
    grep -m1 'certificate-authority-data:' "$KC2" | sed 's/.*: *//' | base64 -d >"$tmp/ca.pem"
    grep -m1 'client-certificate-data:' "$KC2" | sed 's/.*: *//' | base64 -d >"$tmp/cert.pem"
    grep -m1 'client-key-data:' "$KC2" | sed 's/.*: *//' | base64 -d >"$tmp/key.pem"
    c1=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$tmp/ca.pem" "$S2/api/v1/nodes")
    c2=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$tmp/ca.pem" -H "Authorization: Bearer $T2" "$S2/api/v1/nodes")
    c3=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$tmp/ca.pem" --cert "$tmp/cert.pem" --key "$tmp/key.pem" "$S2/api/v1/nodes")
    check "HTTPS: 401 without credentials, 200 with the token, 200 with the client certificate" $([ "$c1$c2$c3" = 401200200 ]; echo $?) "$c1 $c2 $c3"
else
    nok "HTTPS kubesim starts" "$(tail -5 "$tmp/tls.log")"
fi
# ---- clean shutdown: SIGTERM, then no sanitizer report in the logs ----
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
pids=()
bad=$(grep -l -E 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "$tmp"/*.log 2>/dev/null)
check "kubesim stops on SIGTERM with no sanitizer report" $([ -z "$bad" ]; echo $?) "$(cat $bad 2>/dev/null | grep -A12 -m1 -E 'ERROR|runtime error')"
echo "1..$n"
