#!/usr/bin/env bash
# k8s_client.sh: prewarm's Kubernetes client library (src/k8s) against a real kubesim with 1,000 nodes:
# starts kubesim (HTTPS, its generated CA, token and client-certificate users), then runs the probe
# build/asan/tests/unit/k8s/test_kubesim with PW_KUBESIM_KUBECONFIG pointing at it. The probe checks
# HTTPS with the kubeconfig's CA, both users, a merged kubeconfig, an exec credential plugin, an
# informer over every node that syncs and sees label changes, a label-selected informer, and the
# re-list after a 410 forced with /sim/v1/faults {"compact":true}. Prints TAP lines.
set -u
root=${PW_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${PW_BIN:-$root/build/asan/bin}
probe=$root/build/asan/tests/unit/k8s/test_kubesim
nodes=${PW_K8S_NODES:-1000}

if [ ! -x "$bin/kubesim" ] || [ ! -x "$probe" ]; then
    echo "ok - k8s client against kubesim # SKIP $bin/kubesim or $probe is not built"
    exit 0
fi

tmp=$(mktemp -d /tmp/pw-k8s-client.XXXXXX)
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

"$bin/kubesim" --nodes "$nodes" --listen 127.0.0.1:0 --kubeconfig-out "$tmp/kubeconfig" >"$tmp/kubesim.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    [ -s "$tmp/kubeconfig" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [ ! -s "$tmp/kubeconfig" ]; then
    echo "not ok - kubesim --nodes $nodes started and wrote its kubeconfig"
    tail -20 "$tmp/kubesim.log" | sed 's/^/# /'
    exit 1
fi
echo "ok - kubesim --nodes $nodes started and wrote its kubeconfig"

PW_KUBESIM_KUBECONFIG="$tmp/kubeconfig" PW_KUBESIM_NODES="$nodes" CMOCKA_MESSAGE_OUTPUT=TAP "$probe"
rc=$?
if ! kill -0 "$pid" 2>/dev/null; then
    echo "not ok - kubesim still running after the probe"
    tail -20 "$tmp/kubesim.log" | sed 's/^/# /'
    exit 1
fi
# stop kubesim so LeakSanitizer runs, then any sanitizer report in its log fails the suite
kill -TERM "$pid" 2>/dev/null
for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$tmp/kubesim.log"; then
    echo "not ok - kubesim reported a sanitizer error"
    grep -E -A12 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$tmp/kubesim.log" | head -30 | sed 's/^/# /'
    exit 1
fi
echo "ok - no sanitizer report in kubesim's log"
exit $rc
