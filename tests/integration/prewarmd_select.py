#!/usr/bin/env python3
"""prewarmd against kubesim: node selection (issue 3 point 12). nodeSelector, labelSelector and
nodeNames select exactly the nodes they name (checked against kubesim's ground truth: the nodes
holding the image are exactly the expected ones), NotReady nodes are left out unless
includeNotReady, cordoned nodes unless includeUnschedulable, and no matching node is a succeeded
task that says so."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import Env, finish, holds, scenario, tap  # noqa: E402


def holders(env, image):
    return {n for n, v in env.truth().items() if holds(v, image)}


def ready(node):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))


def selection():
    env = Env(30, time_scale=50)
    try:
        nodes = {n["metadata"]["name"]: n for n in env.nodes()}
        lab = {k: v["metadata"]["labels"] for k, v in nodes.items()}
        pools = sorted({l["pool"] for l in lab.values()})
        pool = max(pools, key=lambda p: sum(1 for l in lab.values() if l["pool"] == p))
        in_pool = sorted(n for n in lab if lab[n]["pool"] == pool)
        cordoned, notready = in_pool[0], in_pool[1]
        code, _ = env.kube("PATCH", "/api/v1/nodes/" + cordoned, {"spec": {"unschedulable": True}},
                           content_type="application/merge-patch+json")
        code2, _ = env.kube("PATCH", "/sim/v1/nodes/" + notready, {"ready": False})
        deadline = time.time() + 30
        while time.time() < deadline:
            if not ready(env.kube("GET", "/api/v1/nodes/" + notready)[1]):
                break
            time.sleep(0.2)
        time.sleep(1)  # let prewarmd's node informer see both changes
        tap(code == 200 and code2 == 200, "setup: cordon and NotReady accepted", "%s %s" % (code, code2))

        before = env.truth()
        ours = ["busybox:1.36", "nginx:1.27", "redis:7.4", "postgres:16", "python:3.12"]
        tap(not any(holds(v, i) for v in before.values() for i in ours), "setup: no node holds a test image yet")

        # nodeSelector: the pool, minus the cordoned and the NotReady node
        t = env.wait_task(env.create_task({"images": ["busybox:1.36"], "nodeSelector": {"pool": pool}}))
        want = set(in_pool) - {cordoned, notready}
        got = holders(env, "busybox:1.36")
        tap(t["status"] == "succeeded" and got == want and t["progress"]["totalNodes"] == len(want),
            "nodeSelector: exactly the pool's Ready, uncordoned nodes pulled",
            "got %s want %s; %s" % (sorted(got), sorted(want), t["progress"]))

        # labelSelector with set-based and negated terms
        zone = lab[in_pool[2]]["topology.kubernetes.io/zone"]
        sel = "topology.kubernetes.io/zone in (%s),pool!=%s" % (zone, pool)
        t = env.wait_task(env.create_task({"images": ["nginx:1.27"], "labelSelector": sel}))
        want = {n for n in lab if lab[n]["topology.kubernetes.io/zone"] == zone and lab[n]["pool"] != pool}
        got = holders(env, "nginx:1.27")
        tap(t["status"] == "succeeded" and got == want and len(want) > 0,
            "labelSelector: exactly the matching nodes pulled", "got %s want %s" % (sorted(got), sorted(want)))

        # nodeNames with includeUnschedulable: the cordoned node is included
        others = [n for n in sorted(lab) if n not in (cordoned, notready)][:2]
        names = others + [cordoned]
        t = env.wait_task(env.create_task({"images": ["redis:7.4"], "nodeNames": names,
                                           "includeUnschedulable": True}))
        got = holders(env, "redis:7.4")
        tap(t["status"] == "succeeded" and got == set(names),
            "nodeNames + includeUnschedulable: the named nodes, the cordoned one too",
            "got %s want %s; %s" % (sorted(got), sorted(names), t["message"]))

        # the NotReady node alone: nothing matches; the task succeeds with 0 nodes and says so
        t = env.wait_task(env.create_task({"images": ["postgres:16"], "nodeNames": [notready]}))
        tap(t["status"] == "succeeded" and t["progress"]["totalNodes"] == 0 and "no node matched" in t["message"]
            and not holders(env, "postgres:16"),
            "NotReady node excluded: 0 nodes, succeeded, message says why", "%s %s" % (t["progress"], t["message"]))

        # nodeSelector AND labelSelector AND nodeNames intersect
        outside = next(n for n in sorted(lab) if lab[n]["pool"] != pool)
        t = env.wait_task(env.create_task({"images": ["python:3.12"], "nodeSelector": {"pool": pool},
                                           "labelSelector": "pool", "nodeNames": [in_pool[2], outside]}))
        want = {in_pool[2]}
        got = holders(env, "python:3.12")
        tap(got == want and t["status"] == "succeeded", "selectors AND together",
            "got %s want %s" % (sorted(got), sorted(want)))
        tap(env.wait_no_jobs(60), "selection: no prewarm Job left")
    finally:
        env.close()


scenario("node selection", selection)
finish()
