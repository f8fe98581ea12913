#!/usr/bin/python3
"""kubesim_sched.py: kubesim's scheduler, workload generator, autoscaler stand-in and per-pool pod
figures, with the official Python client (Debian's python3-kubernetes) and real kubectl.

Scheduler: a pod without nodeName is bound (spec.nodeName, PodScheduled True, a Scheduled event) and
runs; nodeSelector and required node affinity (In, NotIn, Exists) are honoured; a pod that fits
nowhere is Pending with PodScheduled False / Unschedulable and the real "0/N nodes are available: ..."
message and a FailedScheduling Warning, and is bound once a node changes (a label, a taint removed, an
uncordon) or a pod goes away (resources freed); NoSchedule taints, cordon and cpu requests against
allocatable are respected; the pods/binding subresource (Python client) binds, refuses a second
binding (409) and a binding without target (422). Workload generator: the images of a seeded sample
of 2,000 pods follow the requested Zipf popularity (chi-square); pods are deleted their lifetime after
they started. Autoscaler: nodes appear at the scheduled model time with the startup taint, NotReady
and then Ready after the delay. Stats: per pool, consistent with the pods' own events. One TAP line
per case."""
import json
import os
import sys
import time

from kubernetes import client, config
from kubernetes.client.rest import ApiException

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kubesim_lib as kl  # noqa: E402
from kubesim_lib import case, wait_until  # noqa: E402

NODES = 6
SCALE = 20

sim = kl.start(["--nodes", str(NODES), "--seed", "5", "--time-scale", str(SCALE), "--arm64-percent", "0",
                "--log-level", "warn"], "kubesim-sched.")


def simreq(method, path, body=None):
    return sim.call(method, path, body=body)


def kubectl(*args):
    r = sim.kubectl(*args)
    return r.returncode, r.stdout + r.stderr


def now():
    return simreq("GET", "/sim/v1/nodes/schedule")[1]["now"]


config.load_kube_config(config_file=sim.kubeconfig)
core = client.CoreV1Api()


def pod(name, ns="default"):
    try:
        return core.read_namespaced_pod(name, ns)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def mkpod(name, image="busybox:1.36", selector=None, affinity=None, tolerations=None, cpu=None, scheduler=None,
          labels=None):
    res = client.V1ResourceRequirements(requests={"cpu": cpu}) if cpu else None
    spec = client.V1PodSpec(containers=[client.V1Container(name="c", image=image, resources=res)],
                            node_selector=selector, affinity=affinity, tolerations=tolerations,
                            scheduler_name=scheduler)
    return core.create_namespaced_pod("default", client.V1Pod(metadata=client.V1ObjectMeta(name=name, labels=labels),
                                                              spec=spec))


def sched_cond(p):
    for c in (p.status.conditions or []) if p else []:
        if c.type == "PodScheduled":
            return c
    return None


def node_of(name):
    p = pod(name)
    return p.spec.node_name if p else None


def events(name, reason):
    evs = core.list_namespaced_event("default", field_selector="involvedObject.name=%s,reason=%s" % (name, reason))
    return evs.items


def unschedulable(name, timeout=10):
    """The pod's PodScheduled False condition once it is Unschedulable (None when it never is)."""
    def get():
        c = sched_cond(pod(name))
        return c if c and c.status == "False" and c.reason == "Unschedulable" else None
    return wait_until(get, timeout)


def label(node, key, value):
    core.patch_node(node, {"metadata": {"labels": {key: value}}})


def expr(key, op, values=None):
    return client.V1NodeSelectorRequirement(key=key, operator=op, values=values)


def required(*exprs):
    return client.V1Affinity(node_affinity=client.V1NodeAffinity(
        required_during_scheduling_ignored_during_execution=client.V1NodeSelector(
            node_selector_terms=[client.V1NodeSelectorTerm(match_expressions=list(exprs))])))


NOT_HELPFUL = "preemption: 0/%d nodes are available: %d Preemption is not helpful for scheduling."


@case("a pod without nodeName is bound by default-scheduler: nodeName, PodScheduled True, Scheduled event, Running")
def _basic():
    mkpod("plain")
    n = wait_until(lambda: node_of("plain"), 10)
    assert n and n.startswith("node-"), n
    p = wait_until(lambda: (pod("plain").status.phase == "Running") and pod("plain"), 15)
    assert p, pod("plain").status
    c = sched_cond(p)
    assert c and c.status == "True", p.status.conditions
    ev = events("plain", "Scheduled")
    assert ev and ev[0].message == "Successfully assigned default/plain to %s" % n, ev
    assert ev[0].source.component == "default-scheduler" and ev[0].type == "Normal", ev[0]


@case("nodeSelector: the pod lands on the only node with the label")
def _selector():
    label("node-0002", "tier", "gold")
    mkpod("sel", selector={"tier": "gold"})
    assert wait_until(lambda: node_of("sel") == "node-0002", 10), node_of("sel")


@case("no node matches: Pending, PodScheduled False Unschedulable with the real message, FailedScheduling event")
def _nomatch():
    mkpod("silver", affinity=required(expr("tier", "In", ["silver"])))
    c = unschedulable("silver")
    want = ("0/%d nodes are available: %d node(s) didn't match Pod's node affinity/selector. " % (NODES, NODES)
            + NOT_HELPFUL % (NODES, NODES))
    assert c and c.message == want, (c, want)
    p = pod("silver")
    assert p.status.phase == "Pending" and not p.spec.node_name, p.status
    ev = wait_until(lambda: events("silver", "FailedScheduling"), 5)
    assert ev and ev[0].type == "Warning" and ev[0].message == want and ev[0].source.component == "default-scheduler", ev
    rc, out = kubectl("describe", "pod", "silver")
    assert rc == 0 and "FailedScheduling" in out and "didn't match Pod's node affinity/selector" in out, out


@case("a node relabelled into the affinity: the pending pod is retried and bound there")
def _retry_label():
    label("node-0003", "tier", "silver")
    assert wait_until(lambda: node_of("silver") == "node-0003", 15), pod("silver").status
    assert wait_until(lambda: sched_cond(pod("silver")).status == "True", 5), pod("silver").status.conditions


@case("node affinity NotIn and Exists: only a node with the key and another value")
def _notin_exists():
    mkpod("notgold", affinity=required(expr("tier", "Exists"), expr("tier", "NotIn", ["gold"])))
    assert wait_until(lambda: node_of("notgold") == "node-0003", 10), node_of("notgold")


@case("a NoSchedule taint (kubectl taint): the message names it; with a toleration the pod lands there")
def _taint():
    label("node-0004", "tier", "bronze")
    rc, out = kubectl("taint", "nodes", "node-0004", "dedicated=infra:NoSchedule")
    assert rc == 0, out
    mkpod("bronze", selector={"tier": "bronze"})
    c = unschedulable("bronze")
    want = ("0/%d nodes are available: 1 node(s) had untolerated taint {dedicated: infra}, %d node(s) didn't match "
            "Pod's node affinity/selector. " % (NODES, NODES - 1) + NOT_HELPFUL % (NODES, NODES))
    assert c and c.message == want, (c and c.message, want)
    mkpod("bronze-tol", selector={"tier": "bronze"},
          tolerations=[client.V1Toleration(key="dedicated", operator="Equal", value="infra", effect="NoSchedule")])
    assert wait_until(lambda: node_of("bronze-tol") == "node-0004", 10), node_of("bronze-tol")
    assert not node_of("bronze")


@case("the taint removed (kubectl taint ...-): the waiting pod is bound")
def _untaint():
    rc, out = kubectl("taint", "nodes", "node-0004", "dedicated=infra:NoSchedule-")
    assert rc == 0, out
    assert wait_until(lambda: node_of("bronze") == "node-0004", 15), pod("bronze").status


@case("a cordoned node (kubectl cordon): 'node(s) were unschedulable'; uncordon binds the pod")
def _cordon():
    label("node-0005", "tier", "copper")
    rc, out = kubectl("cordon", "node-0005")
    assert rc == 0, out
    mkpod("copper", selector={"tier": "copper"})
    c = unschedulable("copper")
    want = ("0/%d nodes are available: 1 node(s) were unschedulable, %d node(s) didn't match Pod's node "
            "affinity/selector. " % (NODES, NODES - 1) + NOT_HELPFUL % (NODES, NODES))
    assert c and c.message == want, (c and c.message, want)
    rc, out = kubectl("uncordon", "node-0005")
    assert rc == 0, out
    assert wait_until(lambda: node_of("copper") == "node-0005", 15), pod("copper").status


@case("cpu requests against allocatable: k pods fit node-0006, the next is 'Insufficient cpu'; a deletion frees room")
def _resources():
    label("node-0006", "tier", "tin")
    alloc = core.read_node("node-0006").status.allocatable["cpu"]
    milli = int(alloc[:-1]) if alloc.endswith("m") else int(alloc) * 1000
    k = milli // 4000
    for i in range(k + 1):
        mkpod("tin-%d" % i, selector={"tier": "tin"}, cpu="4")
    assert wait_until(lambda: sum(1 for i in range(k + 1) if node_of("tin-%d" % i) == "node-0006") == k, 15)
    waiting = [i for i in range(k + 1) if not node_of("tin-%d" % i)]
    assert len(waiting) == 1, waiting
    last = "tin-%d" % waiting[0]
    c = unschedulable(last)
    want = ("0/%d nodes are available: 1 Insufficient cpu, %d node(s) didn't match Pod's node affinity/selector. "
            "preemption: 0/%d nodes are available: 1 No preemption victims found for incoming pod, %d Preemption is "
            "not helpful for scheduling." % (NODES, NODES - 1, NODES, NODES - 1))
    assert c and c.message == want, (c and c.message, want)
    big = mkpod("huge", cpu="1000")
    assert big
    c = unschedulable("huge")
    assert c and c.message.startswith("0/%d nodes are available: %d Insufficient cpu." % (NODES, NODES)), c
    core.delete_namespaced_pod("tin-0" if waiting[0] != 0 else "tin-1", "default")
    assert wait_until(lambda: node_of(last) == "node-0006", 15), pod(last).status


@case("pods/binding (Python client): binds a pod of another scheduler; a second binding 409; no target 422")
def _binding():
    mkpod("mine", scheduler="my-scheduler")
    time.sleep(0.5)
    assert not node_of("mine") and not sched_cond(pod("mine")), pod("mine").status  # not ours to schedule
    body = client.V1Binding(metadata=client.V1ObjectMeta(name="mine"),
                            target=client.V1ObjectReference(kind="Node", name="node-0001"))
    r = core.create_namespaced_pod_binding("mine", "default", body, _preload_content=False)
    st = json.loads(r.data)
    assert r.status == 201 and st["kind"] == "Status" and st["status"] == "Success" and st["code"] == 201, st
    p = pod("mine")
    assert p.spec.node_name == "node-0001" and sched_cond(p).status == "True", p
    assert wait_until(lambda: pod("mine").status.phase == "Running", 15), pod("mine").status
    try:
        core.create_namespaced_pod_binding("mine", "default", body, _preload_content=False)
        raise AssertionError("a second binding did not fail")
    except ApiException as e:
        st = json.loads(e.body)
        assert e.status == 409 and st["reason"] == "Conflict", e.body
        assert st["message"] == ('Operation cannot be fulfilled on pods/binding "mine": pod mine is already assigned '
                                 'to node "node-0001"'), st
    mkpod("mine2", scheduler="my-scheduler")
    c, st = simreq("POST", "/api/v1/namespaces/default/pods/mine2/binding",
                   {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "mine2"}, "target": {"kind": "Node"}})
    assert c == 422 and st["reason"] == "Invalid" and st["details"]["causes"][0]["field"] == "target.name", st
    c, st = simreq("POST", "/api/v1/namespaces/default/pods/ghost/binding",
                   {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "ghost"},
                    "target": {"kind": "Node", "name": "node-0001"}})
    assert c == 404 and st["reason"] == "NotFound", st


@case("kubectl get pods -o wide shows the scheduler's nodes; unschedulable pods Pending")
def _kubectl_wide():
    rc, out = kubectl("get", "pods", "-o", "wide")
    assert rc == 0, out
    rows = {l.split()[0]: l.split() for l in out.splitlines()[1:]}
    assert rows["sel"][6] == "node-0002" and rows["silver"][6] == "node-0003", out
    assert rows["huge"][2] == "Pending" and rows["huge"][6] == "<none>", out


# ---- autoscaler stand-in ----

@case("autoscaler: POST /sim/v1/nodes/schedule validates its body (400 naming the field)")
def _as_bad():
    for body, field in (({"count": 2}, "pool"), ({"pool": "x", "count": 0}, "count"), ({"pool": "x", "bogus": 1}, "bogus"),
                        ({"pool": "x", "at": 1, "after": 1}, "at"),
                        ({"pool": "x", "startupTaints": [{"key": "k", "effect": "Sometimes"}]}, "startupTaints[0]")):
        c, out = simreq("POST", "/sim/v1/nodes/schedule", body)
        assert c == 400 and field in out["error"], (body, c, out)


state = {}


@case("autoscaler: 2 nodes of pool 'late' appear at the scheduled model time, tainted, NotReady, Ready after 20 s")
def _as_add():
    t0 = now()
    at = t0 + 60
    c, out = simreq("POST", "/sim/v1/nodes/schedule",
                    {"pool": "late", "count": 2, "at": at, "readyAfterSeconds": 20,
                     "startupTaints": [{"key": "prewarm.io/warming", "effect": "NoSchedule"}]})
    assert c == 201 and out["entries"][0]["state"] == "pending" and \
        abs(out["entries"][0]["at"] - at) < 0.01, out  # the answer rounds model seconds to 1/100
    eid = out["entries"][0]["id"]
    assert not core.list_node(label_selector="pool=late").items
    entry = lambda: next(e for e in simreq("GET", "/sim/v1/nodes/schedule")[1]["entries"] if e["id"] == eid)
    e = wait_until(lambda: entry()["state"] != "pending" and entry(), 60 / SCALE + 10, 0.05)
    assert e and e["state"] == "added" and len(e["nodes"]) == 2, e
    assert at <= e["addedAt"] < at + 3.0, e  # model seconds: the first world step at or after it
    nodes = core.list_node(label_selector="pool=late").items
    assert sorted(n.metadata.name for n in nodes) == sorted(e["nodes"]), nodes
    for n in nodes:
        keys = {(t.key, t.effect) for t in n.spec.taints}
        assert ("prewarm.io/warming", "NoSchedule") in keys and ("node.kubernetes.io/not-ready", "NoSchedule") in keys, keys
        ready = [x for x in n.status.conditions if x.type == "Ready"][0]
        assert ready.status == "False", ready
    e = wait_until(lambda: entry()["state"] == "ready" and entry(), 20 / SCALE + 10, 0.05)
    assert e and 20.0 <= e["readyAt"] - e["addedAt"] < 23.0, e
    for n in core.list_node(label_selector="pool=late").items:
        keys = {(t.key, t.effect) for t in n.spec.taints}
        assert keys == {("prewarm.io/warming", "NoSchedule")}, keys
        assert [x for x in n.status.conditions if x.type == "Ready"][0].status == "True"
    state["late"] = e["nodes"]


@case("a pod for the new pool waits on the startup taint; once it is removed (node patch) the pod is bound there")
def _as_taint():
    mkpod("late-pod", selector={"pool": "late"})
    c = unschedulable("late-pod")
    assert c and "2 node(s) had untolerated taint {prewarm.io/warming: }" in c.message, c
    n = state["late"][0]
    core.patch_node(n, {"spec": {"taints": None}})
    assert wait_until(lambda: node_of("late-pod") == n, 15), pod("late-pod").status


@case("autoscaler: DELETE cancels pending entries")
def _as_cancel():
    c, out = simreq("POST", "/sim/v1/nodes/schedule", {"entries": [{"pool": "never", "after": 100000}]})
    assert c == 201, out
    c, out = simreq("DELETE", "/sim/v1/nodes/schedule")
    assert c == 200 and out["cancelled"] == 1, out
    c, out = simreq("GET", "/sim/v1/nodes/schedule")
    assert [e["state"] for e in out["entries"]][-1] == "cancelled", out


# ---- workload generator ----

POP = ["nginx:1.27", "redis:7.4", "postgres:16", "python:3.12", "busybox:1.36", "alpine:3.20",
       "debian:bookworm-slim", "ubuntu:22.04", "gcr.io/distroless/static-debian12:nonroot", "ghcr.io/prewarm/prewarm:0.1.0"]
N_POP = 2000


@case("workload: bad bodies get 400 naming the field")
def _wl_bad():
    base = {"pool": "x", "images": ["nginx:1.27"], "ratePerSecond": 1, "lifetimeSeconds": 1}
    for body, field in (({"pools": []}, "pools"), ({"pools": [dict(base, images=["nope:1"])]}, "pools[0].images[0]"),
                        ({"pools": [dict(base, zipf=-1)]}, "pools[0].zipf"),
                        ({"pools": [dict(base, ratePerSecond=0)]}, "pools[0].ratePerSecond"),
                        ({"pools": [dict(base, requests={"cpu": "lots"})]}, "pools[0].requests.cpu"),
                        ({"pools": [dict(base, color="red")]}, "pools[0].color"),
                        ({"namespace": "nowhere", "pools": [base]}, "namespace")):
        c, out = simreq("POST", "/sim/v1/workload", body)
        assert c == 400 and field in out["error"], (body, c, out)


@case("workload: a seeded sample of %d pods follows the Zipf popularity (chi-square, 9 d.f., p > 0.001)" % N_POP)
def _wl_zipf():
    c, out = simreq("POST", "/sim/v1/workload",
                    {"name": "pop", "seed": 11, "pools": [{"pool": "nowhere", "images": POP, "zipf": 1.1,
                                                           "ratePerSecond": 100, "lifetimeSeconds": 1000,
                                                           "maxPods": N_POP}]})
    assert c == 201 and out["pools"][0]["images"][0]["rank"] == 1, out
    probs = [i["probability"] for i in out["pools"][0]["images"]]
    h = sum(k ** -1.1 for k in range(1, 11))
    assert all(abs(p - (k + 1) ** -1.1 / h) < 1e-9 for k, p in enumerate(probs)), probs
    done = lambda: simreq("GET", "/sim/v1/workload?name=pop")[1]["workloads"][0]["pools"][0]
    assert wait_until(lambda: done()["created"] == N_POP and done()["done"], N_POP / 100 / SCALE + 30), done()
    pods = []
    cont = None
    while True:
        page = core.list_namespaced_pod("default", label_selector="sim.prewarm.io/workload=pop", limit=500,
                                        _continue=cont)
        pods += page.items
        cont = page.metadata._continue
        if not cont:
            break
    assert len(pods) == N_POP, len(pods)
    counts = {i: 0 for i in POP}
    for p in pods:
        counts[p.spec.containers[0].image] += 1
        assert p.spec.node_selector == {"pool": "nowhere"} and not p.spec.node_name, p.spec
    gen = {i["image"]: i["created"] for i in done()["images"]}
    assert gen == counts, (gen, counts)
    chi2 = sum((counts[img] - N_POP * p) ** 2 / (N_POP * p) for img, p in zip(POP, probs))
    assert chi2 < 27.88, (chi2, counts)
    top = sorted(POP, key=lambda i: -counts[i])[:3]
    assert top[0] == POP[0], top
    c = unschedulable(pods[0].metadata.name)
    assert c and "node(s) didn't match Pod's node affinity/selector" in c.message, c
    c, out = simreq("DELETE", "/sim/v1/workload?name=pop")
    assert c == 200 and out["deleted"] == ["pop"] and out["podsDeleted"] == N_POP, out
    assert wait_until(lambda: not core.list_namespaced_pod("default", label_selector="sim.prewarm.io/workload=pop",
                                                           limit=1).items, 30)


@case("workload + stats: a 'prewarm' pull used by the workload and one wasted; pods live their lifetime; the "
      "per-pool figures agree with the pods' own Pulled events")
def _wl_stats():
    wl_nodes = []
    c, out = simreq("POST", "/sim/v1/nodes/schedule", {"pool": "wl", "count": 3})
    assert c == 201, out
    wl_nodes = wait_until(lambda: [n.metadata.name for n in core.list_node(label_selector="pool=wl").items
                                   if n.metadata.name] if len(core.list_node(label_selector="pool=wl").items) == 3
                          else None, 10)
    assert wl_nodes, wl_nodes
    # a "prewarm" pod (no workload label) pulls busybox on every wl node and postgres on the first
    for i, n in enumerate(wl_nodes):
        core.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "warm-%d" % i},
                                               "spec": {"nodeName": n, "restartPolicy": "Never",
                                                        "containers": [{"name": "c", "image": "busybox:1.36",
                                                                        "command": ["/bin/true"]}]}})
    core.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "warm-pg"},
                                           "spec": {"nodeName": wl_nodes[0], "restartPolicy": "Never",
                                                    "containers": [{"name": "c", "image": "postgres:16",
                                                                    "command": ["/bin/sh", "-c", "exit 0"]}]}})
    assert wait_until(lambda: all((pod(n) or client.V1Pod()).status and pod(n).status.phase == "Succeeded"
                                  for n in ["warm-0", "warm-1", "warm-2", "warm-pg"]), 30)
    c, out = simreq("POST", "/sim/v1/workload",
                    {"name": "life", "seed": 2, "pools": [{"pool": "wl", "images": ["busybox:1.36", "alpine:3.20"],
                                                           "zipf": 1.0, "ratePerSecond": 2, "lifetimeSeconds": 10,
                                                           "maxPods": 30, "requests": {"cpu": "100m"}}]})
    assert c == 201, out
    st = lambda: simreq("GET", "/sim/v1/workload?name=life")[1]["workloads"][0]["pools"][0]
    assert wait_until(lambda: st()["deleted"] == 30, 30 / 2 / SCALE + 10 / SCALE + 30), st()
    assert not core.list_namespaced_pod("default", label_selector="sim.prewarm.io/workload=life").items
    c, s = simreq("GET", "/sim/v1/stats?pods=true")
    assert c == 200 and s["poolLabel"] == "pool", s.keys()
    wl = s["pools"]["wl"]
    recs = [r for r in s["pods"] if r["pool"] == "wl"]
    assert wl["podsStarted"] == 30 == len(recs), (wl, len(recs))
    hits = sum(1 for r in recs if not r["pulled"])
    assert wl["podsWithoutPull"] == hits and abs(wl["imageHitRate"] - hits / 30) < 1e-9, wl
    assert all(r["node"] in wl_nodes for r in recs), recs
    lat = sorted(r["startSeconds"] for r in recs)
    assert wl["startSeconds"]["p50"] == lat[14] and wl["startSeconds"]["p95"] == lat[28], (wl, lat)
    assert 0 < wl["startSeconds"]["min"] <= wl["startSeconds"]["p50"] <= wl["startSeconds"]["p95"] <= wl["startSeconds"]["max"]
    assert wl["newNodes"]["podsStarted"] == 30, wl  # the wl nodes came after start
    # busybox was on every node before: every busybox pod is a hit
    for r in recs:
        if r["images"][0]["image"].startswith("busybox"):
            assert not r["pulled"], r
    # the records agree with the kubelet's own events
    for r in recs[:10]:
        name = r["pod"].split("/")[1]
        ev = events(name, "Pulled")
        assert ev, name
        present = "already present on machine" in ev[0].message
        assert present == (not r["pulled"]), (r, ev[0].message)
    assert wl["prewarmBytesPulled"] > 0 and wl["wasteBytes"] > 0 and wl["prewarmBytesUsed"] > 0, wl
    assert wl["prewarmBytesPulled"] == wl["prewarmBytesUsed"] + wl["wasteBytes"], wl
    assert wl["bytesPulled"] == wl["workloadBytesPulled"] + wl["prewarmBytesPulled"], wl
    # DELETE answers the figures, then forgets them
    c, s2 = simreq("DELETE", "/sim/v1/stats")
    assert c == 200 and s2["pools"]["wl"]["podsStarted"] == 30, s2["pools"]
    c, s3 = simreq("GET", "/sim/v1/stats")
    assert "wl" not in s3["pools"], s3["pools"]


kl.finish(sim)
