#!/usr/bin/env bash
# kubesim's world end to end: starts $PW_BIN/kubesim (plain HTTP, a time scale so pulls take
# milliseconds) and checks through the Kubernetes API and /sim/v1: a Job pulling busybox completes and
# the truth and status.images show the image; distroless with /bin/true fails StartError 128 while the
# prewarm-style pod (helper init container filling an emptyDir) succeeds; nginx:does-not-exist gives
# ErrImagePull then ImagePullBackOff; the private image with and without the right pull secret; an
# amd64-only image on an arm64 node; InvalidImageName; Job failure, deadline and TTL; the bound; node
# NotReady, taints and deletion. Prints TAP lines.
set -u
root=${PW_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${PW_BIN:-$root/build/asan/bin}
dir=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

if [ ! -x "$bin/kubesim" ]; then
    echo "not ok - kubesim binary missing at $bin/kubesim"
    exit 1
fi
"$bin/kubesim" --nodes 4 --arm64-percent 0 --insecure-http --token world-token --kubeconfig-out "$dir/kc" \
    --time-scale 20 --seed 7 --log-level warn >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 200); do
    [ -s "$dir/kc" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
if [ ! -s "$dir/kc" ]; then
    echo "not ok - kubesim did not become ready"
    cat "$dir/log" >&2
    exit 1
fi
echo "ok - kubesim ready"
server=$(awk '/server:/ {print $2; exit}' "$dir/kc")

SERVER=$server TOKEN=world-token /usr/bin/python3 - <<'EOF'
import base64, json, os, sys, time, urllib.request, urllib.error

S, T = os.environ["SERVER"], os.environ["TOKEN"]
failed = 0

def req(method, path, body=None, ctype="application/json"):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(S + path, data=data, method=method,
                               headers={"Authorization": "Bearer " + T, "Content-Type": ctype})
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        txt = e.read()
        try:
            return e.code, json.loads(txt)
        except Exception:
            return e.code, {"raw": txt.decode(errors="replace")}

def ok(cond, name, detail=""):
    global failed
    if cond:
        print("ok - " + name)
    else:
        failed += 1
        print("not ok - " + name + (" # " + str(detail)[:600] if detail else ""))
    sys.stdout.flush()

def wait(fn, timeout=15.0):
    end = time.time() + timeout
    v = None
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    return v

def pod(name, ns="default"):
    c, p = req("GET", "/api/v1/namespaces/%s/pods/%s" % (ns, name))
    return p if c == 200 else None

def cstate(p, init=False, i=0):
    try:
        return p["status"]["initContainerStatuses" if init else "containerStatuses"][i]["state"]
    except Exception:
        return {}

def mkpod(name, node, containers, init=None, volumes=None, secrets=None, tolerations=None):
    spec = {"nodeName": node, "restartPolicy": "Never", "containers": containers}
    if init: spec["initContainers"] = init
    if volumes: spec["volumes"] = volumes
    if secrets: spec["imagePullSecrets"] = [{"name": s} for s in secrets]
    if tolerations: spec["tolerations"] = tolerations
    return req("POST", "/api/v1/namespaces/default/pods",
               {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec})

def events_for(name):
    c, l = req("GET", "/api/v1/namespaces/default/events")
    return [(e["reason"], e["message"]) for e in l.get("items", []) if e["involvedObject"].get("name") == name]

def job(name):
    c, j = req("GET", "/apis/batch/v1/namespaces/default/jobs/" + name)
    return j if c == 200 else None

def cond(j, t):
    for c in (j or {}).get("status", {}).get("conditions", []) or []:
        if c["type"] == t and c["status"] == "True":
            return c
    return None

def truth():
    return req("GET", "/sim/v1/truth")[1]["nodes"]

req("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})

# --- nodes: labels, status, an arm64 node added through /sim/v1/nodes ---
c, n1 = req("GET", "/api/v1/nodes/node-0001")
lab = n1.get("metadata", {}).get("labels", {})
ok(c == 200 and lab.get("kubernetes.io/arch") == "amd64" and lab.get("pool") and lab.get("topology.kubernetes.io/zone"),
   "node-0001 has arch, pool and zone labels", lab)
info = n1.get("status", {}).get("nodeInfo", {})
ok(all(info.get(k) for k in ("kubeletVersion", "containerRuntimeVersion", "osImage", "kernelVersion", "machineID",
                               "systemUUID", "bootID", "kubeProxyVersion", "architecture", "operatingSystem")),
   "nodeInfo fields all set", info)
ready = [x for x in n1.get("status", {}).get("conditions", []) if x["type"] == "Ready"]
ok(ready and ready[0]["status"] == "True" and ready[0]["reason"] == "KubeletReady", "node Ready True KubeletReady")
c, added = req("POST", "/sim/v1/nodes", {"count": 1, "arch": "arm64", "labels": {"team": "ml"}})
ok(c == 201 and added.get("nodes") == ["node-0005"], "POST /sim/v1/nodes adds node-0005", added)
c, n5 = req("GET", "/api/v1/nodes/node-0005")
ok(c == 200 and n5["metadata"]["labels"].get("kubernetes.io/arch") == "arm64" and n5["metadata"]["labels"].get("team") == "ml",
   "the added node is arm64 with the extra label")

# --- a Job pulling busybox completes; truth, pulls and status.images show it ---
c, j = req("POST", "/apis/batch/v1/namespaces/default/jobs",
           {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bb"},
            "spec": {"backoffLimit": 1, "template": {"spec": {"nodeName": "node-0001", "restartPolicy": "Never",
                     "containers": [{"name": "c", "image": "busybox:1.36", "command": ["/bin/true"]}]}}}})
ok(c == 201, "create Job bb", j)
j = wait(lambda: cond(job("bb"), "Complete") and job("bb"))
ok(j and j["status"].get("succeeded") == 1 and j["status"].get("completionTime"), "Job bb completes", j and j.get("status"))
c, pl = req("GET", "/api/v1/namespaces/default/pods?labelSelector=job-name%3Dbb")
pods = pl.get("items", [])
ok(len(pods) == 1 and pods[0]["metadata"]["name"].startswith("bb-") and
   pods[0]["metadata"]["ownerReferences"][0]["kind"] == "Job" and pods[0]["metadata"]["ownerReferences"][0]["controller"],
   "one pod bb-xxxxx owned by the Job", [p["metadata"] for p in pods])
if pods:
    st = pods[0]["status"]
    cs = st["containerStatuses"][0]
    ok(st["phase"] == "Succeeded" and cs["state"]["terminated"]["reason"] == "Completed" and
       cs["imageID"].startswith("docker.io/library/busybox@sha256:") and cs["containerID"].startswith("containerd://"),
       "the pod Succeeded with imageID and containerID", st)
    ev = events_for(pods[0]["metadata"]["name"])
    reasons = [r for r, m in ev]
    ok("Pulling" in reasons and "Pulled" in reasons and "Created" in reasons and "Started" in reasons, "kubelet events", ev)
    ok(any(r == "Pulled" and m.startswith('Successfully pulled image "busybox:1.36" in ') and "Image size: 2160000 bytes." in m
           for r, m in ev), "Pulled message format", ev)
je = events_for("bb")
ok(any(r == "SuccessfulCreate" and m.startswith("Created pod: bb-") for r, m in je) and any(r == "Completed" for r, m in je),
   "Job events SuccessfulCreate and Completed", je)
t = truth()
ok(t["node-0001"]["images"] == ["busybox:1.36"] and t["node-0001"]["pulls"] == 1, "truth: node-0001 holds busybox:1.36, 1 pull", t["node-0001"])
def images_of(node):
    return req("GET", "/api/v1/nodes/" + node)[1].get("status", {}).get("images", [])
imgs = wait(lambda: images_of("node-0001"), 5)
ok(imgs and imgs[0]["names"][0].startswith("docker.io/library/busybox@sha256:") and
   "docker.io/library/busybox:1.36" in imgs[0]["names"] and imgs[0]["sizeBytes"] == 2160000, "node status.images updated", imgs)

# a second pod with IfNotPresent: already present, no new pull
mkpod("again", "node-0001", [{"name": "c", "image": "busybox:1.36", "command": ["sh", "-c", "exit 0"]}])
p = wait(lambda: (pod("again") or {}).get("status", {}).get("phase") == "Succeeded" and pod("again"))
ok(p, "second busybox pod succeeds (sh -c 'exit 0')")
ok(any(r == "Pulled" and "already present on machine" in m for r, m in events_for("again")), "already present event")
ok(truth()["node-0001"]["pulls"] == 1, "no second pull for IfNotPresent")

# --- restart policies: OnFailure restarts a failing container; a service without command keeps running ---
c, _ = req("POST", "/api/v1/namespaces/default/pods",
           {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crash"},
            "spec": {"nodeName": "node-0001", "restartPolicy": "OnFailure",
                     "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sh", "-c", "exit 3"]}]}})
p = wait(lambda: ((pod("crash") or {}).get("status", {}).get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 1 and pod("crash"))
cs = p["status"]["containerStatuses"][0] if p else {}
ok(p and cs.get("lastState", {}).get("terminated", {}).get("exitCode") == 3 and p["status"]["phase"] in ("Running", "Pending"),
   "OnFailure: exit 3 restarts the container (lastState exit 3)", p and p["status"])
ok(wait(lambda: ((pod("crash") or {}).get("status", {}).get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"),
   "OnFailure: waiting CrashLoopBackOff between runs")
req("POST", "/api/v1/namespaces/default/pods",
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "svc"},
     "spec": {"nodeName": "node-0001", "containers": [{"name": "redis", "image": "redis:7.4"}]}})
p = wait(lambda: (pod("svc") or {}).get("status", {}).get("phase") == "Running" and pod("svc"))
time.sleep(0.5)
p = pod("svc")
ok(p and p["status"]["phase"] == "Running" and "running" in cstate(p) and p["status"]["containerStatuses"][0]["ready"] is True,
   "a service without command keeps running and is ready", p and p["status"])

# --- distroless: /bin/true does not exist -> StartError 128; the prewarm-style pod succeeds ---
mkpod("dl", "node-0002", [{"name": "c", "image": "gcr.io/distroless/static-debian12:nonroot", "command": ["/bin/true"]}])
p = wait(lambda: (pod("dl") or {}).get("status", {}).get("phase") == "Failed" and pod("dl"))
term = cstate(p).get("terminated", {}) if p else {}
ok(term.get("reason") == "StartError" and term.get("exitCode") == 128 and
   'exec: "/bin/true": stat /bin/true: no such file or directory' in term.get("message", ""),
   "distroless /bin/true fails StartError 128", p and p["status"])
mkpod("pw", "node-0002",
      [{"name": "img", "image": "gcr.io/distroless/static-debian12:nonroot", "command": ["/prewarm/true"],
        "volumeMounts": [{"name": "pw", "mountPath": "/prewarm", "readOnly": True}]}],
      init=[{"name": "install", "image": "ghcr.io/prewarm/prewarm:0.1.0", "command": ["/bin/cp", "/prewarm-true", "/prewarm/true"],
             "volumeMounts": [{"name": "pw", "mountPath": "/prewarm"}]}],
      volumes=[{"name": "pw", "emptyDir": {}}])
p = wait(lambda: (pod("pw") or {}).get("status", {}).get("phase") in ("Succeeded", "Failed") and pod("pw"))
ok(p and p["status"]["phase"] == "Succeeded" and cstate(p, init=True).get("terminated", {}).get("exitCode") == 0 and
   cstate(p).get("terminated", {}).get("reason") == "Completed", "prewarm-style pod (init fills emptyDir) succeeds", p and p["status"])
ok(sorted(truth()["node-0002"]["images"]) == ["gcr.io/distroless/static-debian12:nonroot", "ghcr.io/prewarm/prewarm:0.1.0"],
   "truth: node-0002 holds distroless and the helper", truth()["node-0002"])

# --- nginx:does-not-exist: ErrImagePull (not found), then ImagePullBackOff ---
mkpod("nf", "node-0003", [{"name": "c", "image": "nginx:does-not-exist"}])
p = wait(lambda: cstate(pod("nf") or {}).get("waiting", {}).get("reason") == "ErrImagePull" and pod("nf"))
msg = cstate(p).get("waiting", {}).get("message", "") if p else ""
ok(p and 'failed to resolve reference "docker.io/library/nginx:does-not-exist": docker.io/library/nginx:does-not-exist: not found' in msg,
   "nginx:does-not-exist -> ErrImagePull not found", p and p["status"])
p = wait(lambda: cstate(pod("nf") or {}).get("waiting", {}).get("reason") == "ImagePullBackOff" and pod("nf"))
ok(p and cstate(p)["waiting"]["message"] == 'Back-off pulling image "nginx:does-not-exist"' and p["status"]["phase"] == "Pending",
   "then ImagePullBackOff, phase Pending", p and p["status"])
ev = events_for("nf")
ok(any(r == "Failed" and m.startswith('Failed to pull image "nginx:does-not-exist": rpc error: code = NotFound') for r, m in ev) and
   ("Failed", "Error: ErrImagePull") in ev and any(r == "BackOff" for r, m in ev), "pull failure events", ev)

# --- InvalidImageName ---
mkpod("bad", "node-0003", [{"name": "c", "image": "Busybox:1.36"}])
p = wait(lambda: cstate(pod("bad") or {}).get("waiting", {}).get("reason") == "InvalidImageName" and pod("bad"))
ok(p and "invalid reference format" in cstate(p)["waiting"]["message"], "InvalidImageName", p and p["status"])

# --- the private image: without a secret 401, with the right one it pulls, a wrong one does not ---
mkpod("priv-no", "node-0003", [{"name": "c", "image": "registry.example.com/team/private-app:1.0", "command": ["/app/server"]}])
p = wait(lambda: cstate(pod("priv-no") or {}).get("waiting", {}).get("reason") == "ErrImagePull" and pod("priv-no"))
ok(p and "401 Unauthorized" in cstate(p)["waiting"]["message"], "private image without a secret: ErrImagePull 401", p and p["status"])
def dockercfg(user, pw):
    cfg = {"auths": {"registry.example.com": {"username": user, "password": pw,
                                              "auth": base64.b64encode((user + ":" + pw).encode()).decode()}}}
    return base64.b64encode(json.dumps(cfg).encode()).decode()
for name, pw in (("regcred", "pw-s3cret"), ("wrongcred", "nope")):
    c, s = req("POST", "/api/v1/namespaces/default/secrets",
               {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "kubernetes.io/dockerconfigjson",
                "data": {".dockerconfigjson": dockercfg("team-bot", pw)}})
    ok(c == 201, "create secret " + name, s)
mkpod("priv-yes", "node-0004", [{"name": "c", "image": "registry.example.com/team/private-app:1.0", "command": ["/app/server"]}],
      secrets=["regcred"])
mkpod("priv-wrong", "node-0004", [{"name": "c", "image": "registry.example.com/team/private-app:1.0", "command": ["/app/server"]}],
      secrets=["wrongcred"])
p = wait(lambda: (pod("priv-yes") or {}).get("status", {}).get("phase") == "Succeeded" and pod("priv-yes"))
ok(p, "private image with the right secret pulls and runs", pod("priv-yes") and pod("priv-yes")["status"])
p = wait(lambda: cstate(pod("priv-wrong") or {}).get("waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff") and pod("priv-wrong"))
ok(p, "private image with wrong credentials fails to pull", pod("priv-wrong") and pod("priv-wrong")["status"])

# --- amd64-only image on the arm64 node ---
mkpod("vllm-arm", "node-0005", [{"name": "c", "image": "vllm/vllm-openai:v0.6.3"}])
p = wait(lambda: cstate(pod("vllm-arm") or {}).get("waiting", {}).get("reason") == "ErrImagePull" and pod("vllm-arm"))
ok(p and "no match for platform in manifest: not found" in cstate(p)["waiting"]["message"], "vllm on arm64: no match for platform",
   p and p["status"])

# --- serialized pulls, seen through /sim/v1/pulls: a 19 GB image downloads, the next one waits ---
mkpod("big1", "node-0005", [{"name": "c", "image": "nvcr.io/nvidia/pytorch:24.08-py3", "command": ["/usr/bin/python3"]}])
time.sleep(0.3)
mkpod("big2", "node-0005", [{"name": "c", "image": "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime"}])
def pulls_on(node):
    return [p for p in req("GET", "/sim/v1/pulls")[1].get("pulls", []) if p["node"] == node]
pl = wait(lambda: len(pulls_on("node-0005")) == 2 and pulls_on("node-0005"), 5)
ok(pl and pl[0]["image"] == "nvcr.io/nvidia/pytorch:24.08-py3" and pl[0]["phase"] == "downloading" and
   pl[0]["bytesLeft"] > 1e9 and pl[1]["phase"] == "queued" and pl[1]["pod"] == "default/big2",
   "one pull at a time per node: the second waits (GET /sim/v1/pulls)", pl)
c, nodes = req("GET", "/sim/v1/nodes")
ok(c == 200 and [n["busy"] for n in nodes["nodes"] if n["name"] == "node-0005"] == [2], "GET /sim/v1/nodes shows 2 busy pulls", nodes)
req("DELETE", "/api/v1/namespaces/default/pods/big2")
ok(wait(lambda: len(pulls_on("node-0005")) == 1, 10), "deleting the waiting pod drops its queued pull", pulls_on("node-0005"))
req("DELETE", "/api/v1/namespaces/default/pods/big1")

# --- NoExecute taint not tolerated -> Failed TaintToleration ---
c, _ = req("PATCH", "/sim/v1/nodes/node-0003", {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]})
ok(c == 200, "PATCH taints")
mkpod("tainted", "node-0003", [{"name": "c", "image": "busybox:1.36", "command": ["/bin/true"]}])
p = wait(lambda: (pod("tainted") or {}).get("status", {}).get("phase") == "Failed" and pod("tainted"))
ok(p and p["status"].get("reason") == "TaintToleration", "untolerated NoExecute taint: Failed TaintToleration", p and p["status"])
mkpod("tolerant", "node-0003", [{"name": "c", "image": "busybox:1.36", "command": ["/bin/true"]}],
      tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}])
p = wait(lambda: (pod("tolerant") or {}).get("status", {}).get("phase") == "Succeeded" and pod("tolerant"))
ok(p, "tolerated taint: the pod runs")
req("PATCH", "/sim/v1/nodes/node-0003", {"taints": []})

# --- the taint manager: a NoExecute taint added later evicts running pods (after tolerationSeconds) ---
req("POST", "/api/v1/namespaces/default/pods",
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "evict-now"},
     "spec": {"nodeName": "node-0001", "containers": [{"name": "redis", "image": "redis:7.4"}]}})
req("POST", "/api/v1/namespaces/default/pods",
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "evict-later"},
     "spec": {"nodeName": "node-0001", "containers": [{"name": "redis", "image": "redis:7.4"}],
              "tolerations": [{"key": "maint", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 40}]}})
ok(wait(lambda: all((pod(n) or {}).get("status", {}).get("phase") == "Running" for n in ("evict-now", "evict-later"))),
   "two service pods running on node-0001")
t0 = time.time()
req("PATCH", "/sim/v1/nodes/node-0001", {"taints": [{"key": "maint", "effect": "NoExecute"}]})
ok(wait(lambda: pod("evict-now") is None, 5), "NoExecute taint added: the untolerating pod is evicted")
ok(pod("evict-later") is not None, "the pod tolerating it for 40 s stays for now")
ok(wait(lambda: pod("evict-later") is None, 10) and time.time() - t0 > 1.5, "and is evicted after tolerationSeconds (40 s / 20)")
req("PATCH", "/sim/v1/nodes/node-0001", {"taints": []})

# --- parallelism 2, completions 3: three pods succeed, never more than two at once ---
req("POST", "/apis/batch/v1/namespaces/default/jobs",
    {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "par"},
     "spec": {"parallelism": 2, "completions": 3, "template": {"spec": {"nodeName": "node-0001", "restartPolicy": "Never",
              "containers": [{"name": "c", "image": "busybox:1.36", "command": ["/bin/true"]}]}}}})
peak = 0
end = time.time() + 15
while time.time() < end and not cond(job("par"), "Complete"):
    peak = max(peak, (job("par") or {}).get("status", {}).get("active", 0) or 0)
    time.sleep(0.02)
j = job("par")
c, pl = req("GET", "/api/v1/namespaces/default/pods?labelSelector=job-name%3Dpar")
ok(cond(j, "Complete") and j["status"].get("succeeded") == 3 and len(pl.get("items", [])) == 3 and 1 <= peak <= 2,
   "parallelism 2 / completions 3: 3 pods, at most 2 active", (j or {}).get("status", {}), )

# --- Job failure: backoffLimit 1 -> two failed pods, BackoffLimitExceeded ---
req("POST", "/apis/batch/v1/namespaces/default/jobs",
    {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fails"},
     "spec": {"backoffLimit": 1, "template": {"spec": {"nodeName": "node-0001", "restartPolicy": "Never",
              "containers": [{"name": "c", "image": "busybox:1.36", "command": ["/bin/false"]}]}}}})
j = wait(lambda: cond(job("fails"), "Failed") and job("fails"), 20)
ok(j and cond(j, "Failed")["reason"] == "BackoffLimitExceeded" and j["status"].get("failed") == 2,
   "Job fails with BackoffLimitExceeded after 2 failures", j and j.get("status"))
ok(any(r == "BackoffLimitExceeded" for r, m in events_for("fails")), "BackoffLimitExceeded event")

# --- activeDeadlineSeconds: a pod stuck on a missing image -> DeadlineExceeded, pods deleted ---
req("POST", "/apis/batch/v1/namespaces/default/jobs",
    {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "late"},
     "spec": {"activeDeadlineSeconds": 20, "template": {"spec": {"nodeName": "node-0004", "restartPolicy": "Never",
              "containers": [{"name": "c", "image": "nginx:does-not-exist"}]}}}})
j = wait(lambda: cond(job("late"), "Failed") and job("late"), 20)
ok(j and cond(j, "Failed")["reason"] == "DeadlineExceeded" and
   cond(j, "Failed")["message"] == "Job was active longer than specified deadline", "Job DeadlineExceeded", j and j.get("status"))
gone = wait(lambda: not req("GET", "/api/v1/namespaces/default/pods?labelSelector=job-name%3Dlate")[1].get("items"), 10)
ok(gone, "the deadline deleted the Job's pods")

# --- ttlSecondsAfterFinished ---
req("POST", "/apis/batch/v1/namespaces/default/jobs",
    {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ttl"},
     "spec": {"ttlSecondsAfterFinished": 20, "template": {"spec": {"nodeName": "node-0001", "restartPolicy": "Never",
              "containers": [{"name": "c", "image": "busybox:1.36", "command": ["true"]}]}}}})
ok(wait(lambda: cond(job("ttl"), "Complete")), "Job ttl completes")
ok(wait(lambda: job("ttl") is None, 15), "the TTL controller deletes it")

# --- the bound ---
c, b = req("POST", "/sim/v1/bound", {"nodes": ["node-0001"], "images": ["busybox:1.36"]})
ok(c == 200 and b["seconds"] == 0, "bound 0 for an image already there", b)
c, b = req("POST", "/sim/v1/bound", {"nodes": ["node-0003", "node-0004"], "images": ["pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime"]})
# two nodes at 200 MB/s, registry 1000 MB/s: the node link is the bottleneck, 7.40 GB / 200 MB/s = 37 s, /20
ok(c == 200 and 37.0 / 20 < b["seconds"] < 40.0 / 20, "bound for pytorch on 2 nodes ~ 37 s / 20", b)
c, b2 = req("POST", "/sim/v1/bound", {"nodes": ["node-0002"], "images": ["nginx:1.27", "python:3.12"]})
# shared debian base is counted once: 70.97 MB + 364.97 MB - 29.13 MB
ok(c == 200 and abs(b2["bytes"] - (70965809 + 364970249 - 29130000)) < 10, "bound counts a shared layer once", b2)
c, b3 = req("POST", "/sim/v1/bound", {"nodes": ["node-0005"], "images": ["vllm/vllm-openai:v0.6.3"]})
ok(c == 200 and b3["seconds"] == 0 and b3["skipped"], "bound skips an image with no platform for the node", b3)
c, _ = req("POST", "/sim/v1/bound", {"nodes": ["node-0001"], "images": ["nginx:does-not-exist"]})
ok(c == 400, "bound rejects an image not in the catalogue")

# --- node NotReady, then deleted ---
c, n = req("PATCH", "/sim/v1/nodes/node-0004", {"ready": False})
r = [x for x in n.get("spec", {}).get("taints", [])]
rc = [x for x in n.get("status", {}).get("conditions", []) if x["type"] == "Ready"]
ok(c == 200 and rc and rc[0]["status"] == "Unknown" and
   {(x["key"], x["effect"]) for x in r} == {("node.kubernetes.io/unreachable", "NoSchedule"), ("node.kubernetes.io/unreachable", "NoExecute")},
   "node NotReady: Ready Unknown + unreachable taints", n.get("spec"))
# (with the tolerations a real API server's DefaultTolerationSeconds adds: 300 s, more than this test)
mkpod("stuck", "node-0004", [{"name": "c", "image": "busybox:1.36", "command": ["/bin/true"]}],
      tolerations=[{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}])
mkpod("evicted", "node-0004", [{"name": "c", "image": "busybox:1.36", "command": ["/bin/true"]}])
time.sleep(0.5)
ok((pod("stuck") or {}).get("status", {}).get("phase", "Pending") == "Pending" and not (pod("stuck") or {}).get("status", {}).get("hostIP"),
   "a pod on a NotReady node waits")
ok(wait(lambda: (pod("evicted") or {}).get("metadata", {}).get("deletionTimestamp") or pod("evicted") is None, 5),
   "a pod without the unreachable toleration is evicted by the taint manager")
c, n = req("PATCH", "/sim/v1/nodes/node-0004", {"ready": True, "unschedulable": True})
ok(c == 200 and not n["spec"].get("taints") and n["spec"].get("unschedulable") is True, "node Ready again, cordoned", n.get("spec"))
ok(wait(lambda: (pod("stuck") or {}).get("status", {}).get("phase") == "Succeeded"), "the waiting pod runs once the node is Ready")
mkpod("ghost", "node-9999", [{"name": "c", "image": "busybox:1.36"}])
time.sleep(0.3)
ok((pod("ghost") or {}).get("status", {}).get("phase", "Pending") == "Pending", "a pod on a node that does not exist stays Pending")
c, _ = req("DELETE", "/sim/v1/nodes/node-0003")
ok(c == 200 and req("GET", "/api/v1/nodes/node-0003")[0] == 404, "DELETE node: the Node object is gone")
ok(wait(lambda: pod("nf") is None and pod("bad") is None, 10), "the pod GC removes the deleted node's pods")
ok("node-0003" not in truth(), "truth drops the deleted node")

sys.exit(1 if failed else 0)
EOF
rc=$?
kill "$pid" 2>/dev/null
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then
    echo "not ok - kubesim stops on SIGTERM"
    rc=1
else
    wait "$pid"
    code=$?
    pid=
    if [ "$code" = 0 ]; then echo "ok - kubesim stops on SIGTERM (exit 0)"; else echo "not ok - kubesim exit code $code"; rc=1; fi
fi
if grep -q 'Sanitizer\|runtime error:' "$dir/log"; then
    echo "not ok - sanitizer report in kubesim's log"
    grep -A20 'Sanitizer\|runtime error:' "$dir/log" | head -40 >&2
    rc=1
fi
exit $rc
