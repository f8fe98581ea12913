#!/usr/bin/env python3
"""prewarmd_multicluster_agents: agent mode in every cluster (docs/multicluster.md, issue 13). One
prewarmd over two kubesims (a: 5 nodes, b: 6 nodes, different seeds), each running simulated
prewarm-agents (kubesim --agents: the real src/agent code) whose DaemonSet names its cluster
(PREWARM_CLUSTER, prewarm-agent --cluster). Every agent syncs on /agent/v1/clusters/NAME/sync and
its token is reviewed by its own cluster's TokenReview: GET /api/v1/agents and prewarmctl agents show
each agent's cluster, GET /api/v1/clusters counts them per cluster; a task in mode agent over both
clusters succeeds with no Job created in either; a token issued by cluster a is refused by cluster
b (401, nothing recorded), a body claiming another cluster is refused (403, nothing recorded), an
unknown cluster is 404. The node and pull metric families carry a cluster label with one series
per cluster, and promtool accepts the scrape. One TAP line per case."""
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prewarmd_lib as pl  # noqa: E402
from prewarmd_lib import BIN, tap, wait_for  # noqa: E402

NS = "prewarm-agent"
IMAGES = ["nginx:1.27", "busybox:1.36"]
SIM_ARGS = ["--agents", "--namespaces", "prewarm," + NS, "--arm64-percent", "0"]


def deploy_agents(kube, port, cluster):
    """The agent's ServiceAccount and DaemonSet (every node) in one kubesim, naming its cluster."""
    kube("POST", "/api/v1/namespaces/%s/serviceaccounts" % NS,
         {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prewarm-agent"}})
    env = [{"name": "PREWARM_SERVER", "value": "http://127.0.0.1:%d" % port},
           {"name": "PREWARM_CLUSTER", "value": cluster}]
    tmpl = {"metadata": {"labels": {"app": "prewarm-agent"}},
            "spec": {"serviceAccountName": "prewarm-agent", "tolerations": [{"operator": "Exists"}],
                     "containers": [{"name": "agent", "image": "ghcr.io/prewarm/prewarm:0.1.0",
                                     "command": ["/prewarm-agent"], "env": env}]}}
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "prewarm-agent"},
          "spec": {"selector": {"matchLabels": {"app": "prewarm-agent"}}, "template": tmpl}}
    return kube("POST", "/apis/apps/v1/namespaces/%s/daemonsets" % NS, ds)[0]


def pod_token(kube):
    """A token of the agent's ServiceAccount bound to one of its pods (audience prewarm), as the
    kubelet projects it, and that pod's node."""
    code, pods = kube("GET", "/api/v1/namespaces/%s/pods" % NS)
    pod = next(p for p in pods["items"] if p["spec"].get("nodeName"))
    req = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
           "spec": {"audiences": ["prewarm"], "expirationSeconds": 3600,
                    "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod["metadata"]["name"],
                                       "uid": pod["metadata"]["uid"]}}}
    code, out = kube("POST", "/api/v1/namespaces/%s/serviceaccounts/prewarm-agent/token" % NS, req)
    if code != 201:
        raise RuntimeError("TokenRequest: %s %s" % (code, out))
    return out["status"]["token"], pod["spec"]["nodeName"]


def sync(port, path, token, body):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json",
                                                         "Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def job_creates(stats):
    return sum(r["count"] for r in stats["requests"] if r["verb"] == "create" and r["resource"] == "jobs")


def samples(text, name):
    out = {}
    for line in text.splitlines():
        m = re.match(r"^" + re.escape(name) + r"(\{.*\})? (\S+)$", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


def main():
    port = pl.free_port()
    simb, env = None, None
    try:
        simb = pl.Sim(6, ["--seed", "7"] + SIM_ARGS, name="kubesim-b")
        env = pl.Env(5, ["--seed", "3"] + SIM_ARGS,
                     ["--cluster", "a={dir}/kubeconfig", "--cluster", "b=" + simb.kubeconfig, "--agents",
                      "--agent-listen", "127.0.0.1:%d" % port, "--agent-namespace", NS])
        kubes = {"a": env.kube, "b": simb.kube}
        codes = {c: deploy_agents(k, port, c) for c, k in kubes.items()}
        tap(codes == {"a": 201, "b": 201}, "each kubesim runs an agent DaemonSet naming its cluster", str(codes))

        def agents():
            code, a = env.api("GET", "/api/v1/agents")
            return a["items"] if code == 200 else []

        def healthy():
            got = {}
            for a in agents():
                if a["healthy"]:
                    got.setdefault(a["cluster"], set()).add(a["node"])
            return got
        got = wait_for(lambda: {c: len(n) for c, n in healthy().items()} == {"a": 5, "b": 6} and healthy(), 60)
        tap(bool(got), "every agent of both clusters syncs and GET /api/v1/agents shows its cluster",
            json.dumps([(a["cluster"], a["node"], a["healthy"]) for a in agents()])[:600])
        code, cl = env.api("GET", "/api/v1/clusters")
        per = {c["name"]: c["agents"] for c in cl.get("items", [])} if code == 200 else {}
        tap(per == {"a": 5, "b": 6}, "GET /api/v1/clusters counts the agents per cluster", json.dumps(per))
        p = subprocess.run([os.path.join(BIN, "prewarmctl"), "--server", env.api_base, "agents"],
                           capture_output=True, text=True, timeout=60)
        rows = [ln.split() for ln in p.stdout.splitlines()[1:] if ln.strip()]
        tap(p.returncode == 0 and p.stdout.split()[0] == "CLUSTER" and
            sorted({(r[0], r[1]) for r in rows}) == sorted((c, n) for c, ns in got.items() for n in ns),
            "prewarmctl agents lists every agent with its cluster", p.stdout[:600] + p.stderr[:300])

        before = {c: job_creates(pl.Env.stats(s)) for c, s in (("a", env), ("b", simb))}
        tid = env.create_task({"images": IMAGES, "mode": "agent"})
        t = env.wait_task(tid, 180)
        res = env.task_nodes(tid)
        pc = {c["name"]: c for c in t["progress"].get("clusters", [])}
        tap(t["status"] == "succeeded" and t["progress"]["totalNodes"] == 11 and
            pc.get("a", {}).get("totalNodes") == 5 and pc.get("b", {}).get("totalNodes") == 6 and
            all(n.get("mode") == "agent" or n["state"] == "skipped" for n in res),
            "a task in mode agent over both clusters succeeds, every node by its own cluster's agent",
            json.dumps(t["progress"])[:600])
        after = {c: job_creates(pl.Env.stats(s)) for c, s in (("a", env), ("b", simb))}
        tap(after == before and not env.prewarm_jobs() and not pl.Env.prewarm_jobs(simb),
            "no Job was created in either cluster", "%s -> %s" % (before, after))
        bad = []
        for c, s in (("a", env), ("b", simb)):
            truth = s.truth()
            truth = truth if isinstance(truth, dict) else {n["name"]: n for n in truth}
            mine = [n for n in res if n.get("cluster", "default") == c]
            for n in mine:
                for img in IMAGES:
                    if not pl.holds(truth[n["nodeName"]], img):
                        bad.append("%s/%s lacks %s" % (c, n["nodeName"], img))
            if len(mine) != len(truth):
                bad.append("%s: %d results for %d nodes" % (c, len(mine), len(truth)))
        tap(not bad, "each kubesim's model holds both images on all its nodes", "; ".join(bad[:5]))

        # metrics: one series per cluster
        with urllib.request.urlopen(env.api_base + "/metrics", timeout=30) as r:
            text = r.read().decode()
        pulls = samples(text, "prewarm_image_pulls_total")
        by = {c: sum(v for k, v in pulls.items() if 'cluster="%s"' % c in k and 'mode="agent"' in k and
                     'result="succeeded"' in k) for c in ("a", "b")}
        want = {c: float(sum(1 for n in res if n.get("cluster", "default") == c for i in n["images"]
                             if i["state"] == "succeeded")) for c in ("a", "b")}
        tap(by == want and want["a"] > 0 and want["b"] > 0,
            "prewarm_image_pulls_total has a cluster label: each cluster's series counts its own pulls",
            json.dumps(by) + " want " + json.dumps(want) + " " + json.dumps(pulls)[:400])
        dur = samples(text, "prewarm_node_pull_duration_seconds_count")
        dc = {c: sum(v for k, v in dur.items() if 'cluster="%s"' % c in k) for c in ("a", "b")}
        dwant = {c: float(sum(1 for n in res if n.get("cluster", "default") == c and n.get("mode") == "agent"))
                 for c in ("a", "b")}
        tap(dc == dwant, "the node pull duration histogram counts each cluster's nodes apart",
            json.dumps(dur)[:400] + " want " + json.dumps(dwant))
        cap = samples(text, "prewarm_nodes_in_flight_max")
        nodes = samples(text, "prewarm_nodes")
        tap(set(cap) == {'{cluster="a"}', '{cluster="b"}'} and
            {k for k in nodes if 'state="running"' in k} == {'{cluster="a",state="running"}',
                                                              '{cluster="b",state="running"}'},
            "nodes by state and the in-flight cap are per cluster", json.dumps(cap) + json.dumps(nodes)[:300])
        p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        tap(p.returncode == 0, "promtool check metrics passes the multi-cluster scrape", (p.stdout + p.stderr)[:400])

        # who may speak for which cluster
        tok_a, node_a = pod_token(env.kube)
        code, out = sync(port, "/agent/v1/clusters/a/sync", tok_a, {"node": node_a, "wait": False})
        tap(code == 200 and "assignments" in (out or {}), "cluster a's token syncs on cluster a's path",
            "%s %s" % (code, json.dumps(out)[:300]))
        code, out = sync(port, "/agent/v1/clusters/b/sync", tok_a,
                         {"node": node_a, "agentVersion": "intruder", "wait": False})
        tap(code == 401 and "cluster b" in out.get("message", ""),
            "a token of cluster a's agent is refused by cluster b's TokenReview (401)", "%s %s" % (code, out))
        code, out = sync(port, "/agent/v1/clusters/a/sync", tok_a,
                         {"node": node_a, "cluster": "b", "agentVersion": "intruder", "wait": False})
        tap(code == 403 and out.get("details", [{}])[0].get("field") == "cluster",
            "a body claiming cluster b on cluster a's path is refused (403, field cluster)", "%s %s" % (code, out))
        code, out = sync(port, "/agent/v1/sync", tok_a,
                         {"node": node_a, "cluster": "b", "agentVersion": "intruder", "wait": False})
        tap(code == 403, "the default path (the first cluster, a) refuses a body claiming cluster b (403)",
            "%s %s" % (code, out))
        code, out = sync(port, "/agent/v1/clusters/zz/sync", tok_a, {"node": node_a})
        tap(code == 404 and "zz" in out.get("message", ""), "an unknown cluster is 404 naming it", "%s %s" % (code, out))
        intruded = [(a["cluster"], a["node"]) for a in agents() if a["agentVersion"] == "intruder"]
        tap(not intruded, "nothing of a refused sync was recorded", json.dumps(intruded))
    except Exception as e:  # noqa: BLE001
        tap(False, "multi-cluster agents", "exception: %s\n%s" % (e, env.tail("prewarmd.log") if env else ""))
    finally:
        if env:
            env.close()
        if simb:
            simb.close()
    pl.finish()
    return 1 if pl.failures else 0


if __name__ == "__main__":
    sys.exit(main())
