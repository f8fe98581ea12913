#!/usr/bin/env python3
"""kubesim_agents: kubesim's DaemonSet controller and its simulated prewarm-agents (--agents) with a
real prewarmd. A DaemonSet with a nodeSelector gets one pod per matching node (not on a tainted node
it does not tolerate, then on it once it tolerates), with an ownerReference and the daemon
tolerations; a deleted pod is replaced; the status counts follow. Every Running agent pod gets an
in-process agent (the real src/agent code over the world's pull model) that syncs with prewarmd with
a token bound to its pod: prewarmd lists them healthy, a task in mode agent pulls on every agent node
with no Job and no API write per node, the pulled images show in the nodes' status.images, and a
second task of the same image is all skipped. One TAP line per case."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prewarmd_lib as pl  # noqa: E402
from prewarmd_lib import tap  # noqa: E402

NS = "prewarm-agent"
IMAGE = "nginx:1.27"


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_for(pred, timeout, step=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def main():
    port = free_port()
    env = pl.Env(nodes=4, sim_args=["--agents", "--namespaces", "prewarm," + NS, "--arm64-percent", "0"],
                 pw_args=["--agents", "--agent-listen", "127.0.0.1:%d" % port, "--agent-namespace", NS],
                 time_scale=20)
    try:
        # node-0004 is tainted and labelled out; node-0003 is tainted NoSchedule
        env.kube("PATCH", "/api/v1/nodes/node-0004", {"metadata": {"labels": {"pool": "other"}}},
                 "application/merge-patch+json")
        env.kube("PATCH", "/api/v1/nodes/node-0003", {"spec": {"taints": [{"key": "gpu", "value": "yes",
                                                                             "effect": "NoSchedule"}]}},
                 "application/merge-patch+json")
        for n in ("node-0001", "node-0002", "node-0003"):
            env.kube("PATCH", "/api/v1/nodes/" + n, {"metadata": {"labels": {"pool": "main"}}},
                     "application/merge-patch+json")
        env.kube("POST", "/api/v1/namespaces/%s/serviceaccounts" % NS,
                 {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prewarm-agent"}})
        tmpl = {"metadata": {"labels": {"app": "prewarm-agent"}},
                "spec": {"serviceAccountName": "prewarm-agent", "nodeSelector": {"pool": "main"},
                         "containers": [{"name": "agent", "image": "ghcr.io/prewarm/prewarm:0.1.0",
                                         "command": ["/prewarm-agent"],
                                         "env": [{"name": "PREWARM_SERVER", "value": "http://127.0.0.1:%d" % port}]}]}}
        ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "prewarm-agent"},
              "spec": {"selector": {"matchLabels": {"app": "prewarm-agent"}}, "template": tmpl}}
        code, body = env.kube("POST", "/apis/apps/v1/namespaces/%s/daemonsets" % NS, ds)
        tap(code == 201, "kubesim serves DaemonSets (create 201)", "%s %s" % (code, body))

        def pods():
            code, l = env.kube("GET", "/api/v1/namespaces/%s/pods" % NS)
            return {p["spec"].get("nodeName"): p for p in l["items"]} if code == 200 else {}

        got = wait_for(lambda: len(pods()) == 2 and pods(), 20)
        p1 = got.get("node-0001", {}) if got else {}
        refs = p1.get("metadata", {}).get("ownerReferences", [])
        tols = {t.get("key") for t in p1.get("spec", {}).get("tolerations", [])}
        tap(sorted(got or {}) == ["node-0001", "node-0002"] and refs and refs[0]["kind"] == "DaemonSet" and
            refs[0]["controller"] and "node.kubernetes.io/unreachable" in tols,
            "one daemon pod per matching node, none on the tainted or unselected ones; owned, with the "
            "daemon tolerations", json.dumps(sorted(got or {})))
        # tolerate the taint: node-0003 gets its pod
        tmpl["spec"]["tolerations"] = [{"operator": "Exists"}]
        code, cur = env.kube("GET", "/apis/apps/v1/namespaces/%s/daemonsets/prewarm-agent" % NS)
        cur["spec"]["template"] = tmpl
        env.kube("PUT", "/apis/apps/v1/namespaces/%s/daemonsets/prewarm-agent" % NS, cur)
        got = wait_for(lambda: len(pods()) == 3 and pods(), 20)
        tap(sorted(got or {}) == ["node-0001", "node-0002", "node-0003"],
            "a template that tolerates the taint gets the tainted node its pod", json.dumps(sorted(got or {})))
        # a deleted daemon pod is replaced
        old = got["node-0002"]["metadata"]["name"]
        env.kube("DELETE", "/api/v1/namespaces/%s/pods/%s?gracePeriodSeconds=0" % (NS, old))
        rep = wait_for(lambda: pods().get("node-0002", {}).get("metadata", {}).get("name") not in (None, old), 20)
        tap(bool(rep), "a deleted daemon pod is replaced on its node")

        def status():
            code, d = env.kube("GET", "/apis/apps/v1/namespaces/%s/daemonsets/prewarm-agent" % NS)
            return d.get("status", {})
        st = wait_for(lambda: status().get("numberReady") == 3 and status(), 30)
        tap(bool(st) and st["desiredNumberScheduled"] == 3 and st["currentNumberScheduled"] == 3,
            "the DaemonSet's status counts its pods", json.dumps(status()))

        def agents():
            code, a = env.api("GET", "/api/v1/agents")
            return {x["node"]: x for x in a["items"]} if code == 200 else {}
        ok = wait_for(lambda: sorted(n for n, a in agents().items() if a["healthy"]) ==
                      ["node-0001", "node-0002", "node-0003"], 30)
        a = agents()
        tap(bool(ok) and a["node-0001"]["runtime"]["name"] == "kubesim",
            "every Running agent pod has a simulated agent syncing with prewarmd (its pod-bound token)",
            json.dumps(a)[:600])
        before = env.stats()
        tid = env.create_task({"images": [IMAGE], "mode": "agent", "nodeNames": ["node-0001", "node-0002",
                                                                                 "node-0003"]})
        t = env.wait_task(tid, 120)
        res = {n["nodeName"]: n for n in env.task_nodes(tid)}
        after = env.stats()
        writes = [r for r in after["requests"] if r["verb"] in ("create", "update", "patch", "delete") and
                  r["resource"] in ("jobs", "pods") and r["count"] > next(
                      (b["count"] for b in before["requests"] if b["verb"] == r["verb"] and
                       b["resource"] == r["resource"] and b.get("code") == r.get("code")), 0)]
        tap(t["status"] == "succeeded" and all(res[n]["mode"] == "agent" for n in res) and not env.prewarm_jobs(),
            "a task in mode agent succeeds on every agent node, with no Job", json.dumps(t)[:500])
        tap(not writes, "no Job or pod was written for the task", json.dumps(writes)[:500])
        tr = env.truth()
        truth = tr if isinstance(tr, dict) else {n["name"]: n for n in tr}
        tap(all(pl.holds(truth[n], IMAGE) for n in res), "the model holds the image on those nodes")
        def names():
            node = env.kube("GET", "/api/v1/nodes/node-0001")[1]
            return [x for i in node["status"].get("images", []) for x in i.get("names", [])]
        shown = wait_for(lambda: any("nginx" in x for x in names()), 10)
        tap(bool(shown), "the node's status.images shows what its agent pulled", json.dumps(names())[:400])
        tid = env.create_task({"images": [IMAGE], "mode": "agent", "nodeNames": ["node-0001", "node-0002"]})
        t = env.wait_task(tid, 60)
        tap(t["status"] == "succeeded" and t["progress"]["skippedNodes"] == 2,
            "a second task of the same image is all skipped", json.dumps(t["progress"]))
        # the controller follows node changes: a node labelled into the selector gets its pod, one
        # labelled out loses it (the taint on node-0004 is tolerated by the template now)
        env.kube("PATCH", "/api/v1/nodes/node-0004", {"metadata": {"labels": {"pool": "main"}}},
                 "application/merge-patch+json")
        got = wait_for(lambda: "node-0004" in pods() and pods(), 20)
        tap(bool(got), "a node relabelled into the DaemonSet's selector gets a daemon pod", json.dumps(sorted(pods())))
        env.kube("PATCH", "/api/v1/nodes/node-0002", {"metadata": {"labels": {"pool": "other"}}},
                 "application/merge-patch+json")
        gone = wait_for(lambda: "node-0002" not in pods(), 30)
        tap(bool(gone), "a node relabelled out of the selector loses its daemon pod", json.dumps(sorted(pods())))
    except Exception as e:  # noqa: BLE001
        tap(False, "kubesim agents", "exception: %s\n%s" % (e, env.tail("kubesim.log")))
    finally:
        env.close()
    pl.finish()


if __name__ == "__main__":
    main()
