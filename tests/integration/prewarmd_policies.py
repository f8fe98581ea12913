#!/usr/bin/python3
"""prewarmd against kubesim: standing policies (docs/policies.md, issue 14) on a 50-node cluster with
the SQLite store. Every matching node warm (kubesim's ground truth); 10 nodes added NotReady then made
Ready: each dispatched within a generous bound in model time of its Ready transition, sharing few
tasks; a node relabelled into the selector warmed, one relabelled out forgotten; a startup taint
removed only once the images are on the node; a refresh every refreshInterval re-pulls with pullPolicy
Always; a restart keeps the policies and their progress; bad policies get 400 naming the field."""
import json
import os
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import BIN, Env, finish, holds, scenario, tap, wait_for  # noqa: E402

TIME_SCALE = 5
READY_BOUND_MODEL_S = 60.0  # generous: a wave is meant to start within ~1 s of wall time


def policy(env, name):
    code, p = env.api("GET", "/api/v1/policies/" + name)
    return p if code == 200 else None


def settled(env, name):
    p = policy(env, name)
    st = p["status"] if p else {}
    ok = p and st["matchingNodes"] > 0 and st["warmNodes"] == st["matchingNodes"]
    return p if ok else None


def policy_tasks(env, name):
    items, cont = [], ""
    for _ in range(100):
        q = "?limit=500" + ("&continue=" + cont if cont else "")
        page = env.api("GET", "/api/v1/tasks" + q)[1]
        items += [t for t in page["items"] if t.get("policy") == name]
        cont = page.get("continue") or ""
        if not cont:
            return items
    return items


def node_names(env, selector):
    return sorted(n["metadata"]["name"] for n in env.nodes(selector))


def relabel(env, node, key, value):
    return env.kube("PATCH", "/api/v1/nodes/" + node, {"metadata": {"labels": {key: value}}},
                    content_type="application/merge-patch+json")[0]


def bad_policies(env):
    cases = [
        ({"name": "bad-field", "images": ["busybox:1.36"], "imagez": ["x"]}, "imagez", "unknown field"),
        ({"name": "bad-image", "images": ["busybox:1.36", "Nginx:1.27"]}, "images[1]", "invalid reference format"),
        ({"name": "bad-refresh", "images": ["busybox:1.36"], "refreshInterval": "30s"}, "refreshInterval", "at least 1m"),
        ({"name": "Bad_Name", "images": ["busybox:1.36"]}, "name", "DNS-1123"),
        ({"name": "bad-batch", "images": ["busybox:1.36"], "batchSize": 0}, "batchSize", ""),
        ({"name": "bad-secret", "images": ["busybox:1.36"], "pullSecrets": ["Not A Name"]}, "pullSecrets[0]", ""),
        ({"name": "bad-taint", "images": ["busybox:1.36"], "untaintWhenDone": "not a key!"}, "untaintWhenDone", ""),
        ({"name": "no-images"}, "images", "required"),
        ({"name": "general", "images": ["busybox:1.36"]}, "name", "already exists"),  # created before
        ({"name": "bad-predict", "images": ["busybox:1.36"], "predict": {"surelyNotAField": 1}}, "predict", ""),
    ]
    for body, field, words in cases:
        code, err = env.api("POST", "/api/v1/policies", body)
        fields = [d["field"] for d in (err or {}).get("details", [])] if isinstance(err, dict) else []
        ok = code == 400 and any(f == field or f.startswith(field + ".") for f in fields) and words in json.dumps(err)
        tap(ok, "bad policy -> 400 naming %s (%s)" % (field, words or "any message"), "%s %s" % (code, err))
    code, err = env.api("PUT", "/api/v1/policies/general", {"name": "other", "images": ["busybox:1.36"]})
    tap(code == 400 and err["details"][0]["field"] == "name", "PUT cannot rename a policy (400 naming name)",
        "%s %s" % (code, err))
    code, err = env.api("GET", "/api/v1/policies/does-not-exist")
    tap(code == 404, "GET of a missing policy -> 404", "%s %s" % (code, err))
    code, err = env.api("DELETE", "/api/v1/policies/does-not-exist")
    tap(code == 404, "DELETE of a missing policy -> 404", "%s %s" % (code, err))
    names = [p["name"] for p in env.api("GET", "/api/v1/policies")[1]["items"]]
    tap(not any(n.startswith("bad") or n == "no-images" for n in names), "no refused policy was stored", str(names))


def all_warm(env, st):
    general = node_names(env, "pool=general")
    p = wait_for(lambda: settled(env, "general"), 120)
    tap(bool(p) and p["status"]["matchingNodes"] == len(general),
        "policy general: every one of the %d general nodes warm" % len(general), json.dumps(p and p["status"]))
    truth = env.truth()
    cold = [n for n in general if not (holds(truth[n], "nginx:1.27") and holds(truth[n], "redis:7.4"))]
    tap(not cold, "kubesim's ground truth: every general node holds nginx:1.27 and redis:7.4", "cold: %s" % cold)
    tasks = policy_tasks(env, "general")
    outside = [t["id"] for t in tasks if t.get("nodeSelector") != {"pool": "general"}]
    tap(tasks and not outside, "the waves are tasks with \"policy\": \"general\" and its selector (%d)" % len(tasks),
        "outside: %s" % outside)
    st["general_tasks"] = len(tasks)


def joiners(env, st):
    code, r = env.kube("POST", "/sim/v1/nodes", {"count": 10, "pool": "general", "ready": False})
    assert code == 201, (code, r)
    new = r["nodes"]
    time.sleep(1.5)  # they exist, NotReady: nothing may start on them
    jobs = env.prewarm_jobs() or []
    early = [j for j in jobs if j["metadata"].get("annotations", {}).get("prewarm.io/node") in new]
    tap(not early, "no wave for nodes that are not Ready yet", str(len(early)))
    ready_at = {}
    for n in new:
        code, _ = env.kube("PATCH", "/sim/v1/nodes/" + n, {"ready": True})
        ready_at[n] = time.time()
        assert code == 200, code
    seen = {}
    deadline = time.time() + 60
    while len(seen) < len(new) and time.time() < deadline:
        now = time.time()
        for j in env.prewarm_jobs() or []:
            node = j["metadata"].get("annotations", {}).get("prewarm.io/node")
            if node in ready_at and node not in seen:
                seen[node] = now
        time.sleep(0.1)
    lat = sorted((seen[n] - ready_at[n]) * TIME_SCALE for n in seen)
    print("# ready -> dispatch (model seconds, time scale %d): %s" % (TIME_SCALE, ", ".join("%.1f" % x for x in lat)),
          flush=True)
    tap(len(seen) == len(new) and lat[-1] <= READY_BOUND_MODEL_S,
        "10 nodes made Ready: each dispatched within %.0f model seconds of its Ready transition" % READY_BOUND_MODEL_S,
        "dispatched %d of %d, latencies %s" % (len(seen), len(new), lat))
    p = wait_for(lambda: settled(env, "general") if settled(env, "general") and
                 settled(env, "general")["status"]["matchingNodes"] == st["general"] + 10 else None, 90)
    truth = env.truth()
    cold = [n for n in new if not holds(truth[n], "nginx:1.27")]
    tap(bool(p) and not cold, "the 10 new nodes are warm (ground truth) and counted", "cold %s, %s" % (cold, p and p["status"]))
    waves = [t for t in policy_tasks(env, "general") if set(t.get("nodeNames", [])) & set(new)]
    tap(1 <= len(waves) <= 4, "nodes that joined together share a task (%d wave(s) for 10 nodes)" % len(waves),
        str([t.get("nodeNames") for t in waves]))


def relabelled(env, st):
    batch = node_names(env, "pool=batch")
    victim = batch[0]
    assert relabel(env, victim, "pool", "general") == 200
    ok = wait_for(lambda: holds(env.truth()[victim], "nginx:1.27") and holds(env.truth()[victim], "redis:7.4"), 60)
    tap(bool(ok), "a node relabelled into the selector (%s) is warmed" % victim)
    leaver = node_names(env, "pool=general")[0]
    before = policy(env, "general")["status"]["matchingNodes"]
    assert relabel(env, leaver, "pool", "batch") == 200
    gone = wait_for(lambda: policy(env, "general")["status"]["matchingNodes"] == before - 1, 30)
    tap(bool(gone), "a node relabelled out of the selector (%s) is forgotten" % leaver,
        json.dumps(policy(env, "general")["status"]))


def taint_of(env, node):
    code, n = env.kube("GET", "/api/v1/nodes/" + node)
    return [t for t in (n.get("spec", {}).get("taints") or []) if t["key"] == "prewarm.io/warming"] if code == 200 else None


def startup_taint(env, st):
    code, r = env.kube("POST", "/sim/v1/nodes", {"count": 3, "pool": "gpu", "labels": {"startup": "yes"}, "ready": False})
    assert code == 201, (code, r)
    new = r["nodes"]
    for n in new:
        code, _ = env.kube("PATCH", "/sim/v1/nodes/" + n,
                           {"taints": [{"key": "prewarm.io/warming", "value": "true", "effect": "NoSchedule"}]})
        assert code == 200, code
    code, p = env.api("POST", "/api/v1/policies", {"name": "startup", "images": ["python:3.12"],
                                                   "nodeSelector": {"startup": "yes"},
                                                   "untaintWhenDone": "prewarm.io/warming"})
    assert code == 201, (code, p)
    for n in new:
        assert env.kube("PATCH", "/sim/v1/nodes/" + n, {"ready": True})[0] == 200
    early, untainted = [], {}
    deadline = time.time() + 90
    while len(untainted) < len(new) and time.time() < deadline:
        for n in new:
            if n in untainted:
                continue
            t = taint_of(env, n)
            if t == []:
                # the taint is gone: the image must be on the node already
                untainted[n] = True
                if not holds(env.truth()[n], "python:3.12"):
                    early.append(n)
        time.sleep(0.1)
    tap(len(untainted) == len(new), "the startup taint is removed from every new node (%d/%d)" % (len(untainted), len(new)))
    tap(not early and untainted, "the taint went only after python:3.12 was on the node", "too early: %s" % early)
    others = [n for n in node_names(env, "pool=general")[:3] if taint_of(env, n)]
    tap(not others, "nodes outside the policy keep their taints (none added, none removed)", str(others))


def refresh_start(env, st):
    gpu = node_names(env, "pool=gpu,!startup")
    st["gpu"] = gpu
    code, p = env.api("POST", "/api/v1/policies", {"name": "refresh", "images": ["busybox:1.36"],
                                                   "nodeSelector": {"pool": "gpu"}, "labelSelector": "!startup",
                                                   "refreshInterval": "1m", "batchSize": 2})
    assert code == 201, (code, p)
    st["refresh_created"] = time.time()
    wait_for(lambda: settled(env, "refresh"), 60)
    st["pulls_before"] = {n: env.truth()[n]["pulls"] for n in gpu}


def refresh_check(env, st):
    left = 75 - (time.time() - st["refresh_created"])
    p = wait_for(lambda: (policy(env, "refresh") or {}).get("status", {}).get("lastRefresh") and policy(env, "refresh"),
                 max(left, 0) + 60, 0.5)
    tap(bool(p), "the refresh policy refreshed after its refreshInterval (1m)", json.dumps(p and p["status"]))
    refreshes = [t for t in policy_tasks(env, "refresh") if t["pullPolicy"] == "Always"]
    tap(len(refreshes) >= 1 and all(t["batchSize"] == 2 and "nodeNames" not in t for t in refreshes),
        "the refresh is a task with pullPolicy Always over the selectors, rolling at batchSize 2",
        json.dumps([(t["id"], t["pullPolicy"], t["batchSize"]) for t in refreshes]))
    done = wait_for(lambda: refreshes and env.wait_task(refreshes[0]["id"], 60)["status"] == "succeeded", 70)
    truth = env.truth()
    pulled = [n for n in st["gpu"] if truth[n]["pulls"] > st["pulls_before"][n]]
    tap(bool(done) and len(pulled) == len(st["gpu"]),
        "the refresh re-pulled busybox:1.36 on every gpu node (kubesim counts %d/%d pulls)" % (len(pulled), len(st["gpu"])))


def restart(env, st):
    before = {p["name"]: p for p in env.api("GET", "/api/v1/policies")[1]["items"]}
    n_tasks = len(policy_tasks(env, "general"))
    env.stop_prewarmd()
    env.start_prewarmd()
    after = {p["name"]: p for p in env.api("GET", "/api/v1/policies")[1]["items"]}
    spec = lambda p: {k: v for k, v in p.items() if k != "status"}  # noqa: E731
    tap(set(before) == set(after) and all(spec(before[k]) == spec(after[k]) for k in before),
        "a restart keeps every policy (%s)" % ", ".join(sorted(after)))
    tap(all(after[k]["status"]["warmNodes"] == before[k]["status"]["warmNodes"] for k in before) and
        after["refresh"]["status"]["lastRefresh"] == before["refresh"]["status"]["lastRefresh"],
        "... and their progress (warm nodes, last refresh)",
        json.dumps({k: (before[k]["status"], after[k]["status"]) for k in before}))
    time.sleep(3)
    tap(len(policy_tasks(env, "general")) == n_tasks, "no new wave after the restart for nodes already warm",
        "%d -> %d" % (n_tasks, len(policy_tasks(env, "general"))))
    code, r = env.kube("POST", "/sim/v1/nodes", {"count": 1, "pool": "general"})
    node = r["nodes"][0]
    ok = wait_for(lambda: holds(env.truth()[node], "nginx:1.27"), 60)
    tap(bool(ok), "after the restart a new node is warmed again (%s)" % node)


def lifecycle(env, st):
    code, p = env.api("PUT", "/api/v1/policies/startup", {"images": ["python:3.12"], "nodeSelector": {"startup": "yes"},
                                                          "enabled": False})
    tap(code == 200 and p["enabled"] is False and "untaintWhenDone" not in p, "PUT replaces a policy's spec",
        "%s %s" % (code, p))
    code, p = env.api("DELETE", "/api/v1/policies/startup")
    tap(code == 200 and policy(env, "startup") is None, "DELETE removes a policy", "%s %s" % (code, p))


def ctl(env, *args):
    p = subprocess.run([os.path.join(BIN, "prewarmctl"), "--server", env.api_base] + list(args),
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def cli(env, st):
    rc, out, err = ctl(env, "policy", "create", "cli-demo", "busybox:1.36", "alpine:3.20", "--node-selector", "pool=gpu",
                       "-l", "!startup", "--refresh-interval", "12h", "--pull-secret", "regcred", "--batch-size", "3")
    tap(rc == 0 and "policy cli-demo created" in out, "prewarmctl policy create", "%d %s %s" % (rc, out, err))
    rc, out, err = ctl(env, "policy", "get", "cli-demo", "-o", "json")
    p = json.loads(out) if rc == 0 else {}
    tap(p.get("images") == ["busybox:1.36", "alpine:3.20"] and p.get("pullSecrets") == ["regcred"] and
        p.get("nodeSelector") == {"pool": "gpu"} and p.get("labelSelector") == "!startup" and
        p.get("refreshInterval") == "12h" and p.get("batchSize") == 3, "prewarmctl policy get -o json", out + err)
    ok = wait_for(lambda: "cli-demo" in ctl(env, "policy", "list")[1] and settled(env, "cli-demo"), 60)
    rc, out, err = ctl(env, "policy", "list")
    row = [ln for ln in out.splitlines() if ln.startswith("cli-demo")]
    tap(bool(ok) and out.startswith("NAME") and row and "pool=gpu" in row[0], "prewarmctl policy list shows it warm",
        out + err)
    rc, out, err = ctl(env, "policy", "create", "cli-bad", "Busybox:1")
    tap(rc == 4 and "error: images[0]: invalid reference format" in err, "prewarmctl policy create: a bad image is "
        "refused naming the field (exit 4)", "%d %s %s" % (rc, out, err))
    rc, out, err = ctl(env, "policy", "delete", "cli-demo")
    tap(rc == 0 and policy(env, "cli-demo") is None, "prewarmctl policy delete", "%d %s %s" % (rc, out, err))


def main():
    env = Env(50, time_scale=TIME_SCALE, pw_args=["--store", "sqlite:{dir}/prewarm.db"])
    st = {}
    try:
        st["general"] = len(node_names(env, "pool=general"))
        code, p = env.api("POST", "/api/v1/policies", {"name": "general", "images": ["nginx:1.27", "redis:7.4"],
                                                       "nodeSelector": {"pool": "general"}, "batchSize": 20})
        tap(code == 201 and p["status"]["matchingNodes"] >= 0 and p["refreshInterval"] == "24h",
            "create a policy: 201 with its defaults", "%s %s" % (code, p))
        scenario("refresh", refresh_start, env, st)
        scenario("bad policies", bad_policies, env)
        scenario("every matching node warm", all_warm, env, st)
        scenario("joining nodes", joiners, env, st)
        scenario("relabelled nodes", relabelled, env, st)
        scenario("startup taint", startup_taint, env, st)
        scenario("refresh", refresh_check, env, st)
        scenario("restart", restart, env, st)
        scenario("update and delete", lifecycle, env, st)
        scenario("prewarmctl", cli, env, st)
    finally:
        env.close()
    finish()


if __name__ == "__main__":
    main()
