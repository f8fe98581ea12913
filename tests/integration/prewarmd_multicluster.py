#!/usr/bin/env python3
"""prewarmd_multicluster: one prewarmd over three kubesims (different seeds, node counts and
catalogues: c lacks alpine), docs/multicluster.md. A task over all three matches each kubesim's
ground truth; a cluster selector picks two; bad cluster configuration fails at start with a clear
error and on reload keeps the running configuration; a cluster added to the clusters file is picked
up without a restart; prewarmd killed mid-task (SQLite) resumes in every cluster; a kubesim killed
mid-task fails its nodes ClusterUnreachable after --cluster-unreachable-timeout while the others
finish, and the task's outcome and message say so."""
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import BIN, Env, Sim, finish, holds, scenario, tap, wait_for  # noqa: E402

import prewarmd_lib  # noqa: E402


def default_catalog():
    src = open(os.path.join(os.environ.get("PW_ROOT", "."), "sim", "catalog_default.c")).read()
    body = src[src.index("sim_catalog_default_json[] ="):]
    body = body[:body.index(";")]
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', body)
    return json.loads("".join(parts).encode().decode("unicode_escape"))


def write_clusters(path, entries):
    with open(path + ".tmp", "w") as f:
        f.write("clusters:\n")
        for e in entries:
            f.write("  - name: %s\n    kubeconfig: %s\n" % (e["name"], e["kubeconfig"]))
            if e.get("labels"):
                f.write("    labels:\n")
                for k, v in e["labels"].items():
                    f.write("      %s: %s\n" % (k, v))
            if e.get("context"):
                f.write("    context: %s\n" % e["context"])
    os.replace(path + ".tmp", path)


def by_cluster(env, tid):
    out = {}
    for n in env.task_nodes(tid):
        out.setdefault(n.get("cluster", "default"), []).append(n)
    return out


def check_truth(name, sims, env, tid, image):
    """Every succeeded node holds image in its own kubesim's truth; every cluster's count matches."""
    nodes = by_cluster(env, tid)
    bad = []
    for cname, sim in sims.items():
        truth = sim.truth()
        mine = nodes.get(cname, [])
        if len(mine) != len(truth):
            bad.append("%s: %d results for %d nodes" % (cname, len(mine), len(truth)))
        for n in mine:
            if n["state"] in ("succeeded", "skipped") and not holds(truth[n["nodeName"]], image):
                bad.append("%s/%s does not hold %s" % (cname, n["nodeName"], image))
    tap(not bad, name, "; ".join(bad[:5]))


def clusters(env):
    code, out = env.api("GET", "/api/v1/clusters")
    return {c["name"]: c for c in out["items"]} if code == 200 else {}, out


def bad_start(name, args, want):
    p = subprocess.run([os.path.join(BIN, "prewarmd"), "--listen", "127.0.0.1:0", "--store", "memory:",
                        "--log-format", "text"] + args, capture_output=True, text=True, timeout=60)
    tap(p.returncode != 0 and want in p.stderr, name, "rc %s, stderr: %s" % (p.returncode, p.stderr[-400:]))


def main():
    tmp = os.environ.get("TMPDIR", "/tmp")
    cat = default_catalog()
    cat["images"] = [i for i in cat["images"] if "alpine:3.20" not in i["names"]]
    cat_path = os.path.join(tmp, "pw-multi-catalog-%d.json" % os.getpid())
    with open(cat_path, "w") as f:
        json.dump(cat, f)
    sims, env, d = {}, None, None
    try:
        sims["b"] = Sim(40, ["--seed", "2"], name="kubesim-b")
        sims["c"] = Sim(25, ["--seed", "3", "--catalog", cat_path], time_scale=5, name="kubesim-c")
        cfile = os.path.join(sims["b"].dir, "clusters.yaml")
        write_clusters(cfile, [
            {"name": "b", "kubeconfig": sims["b"].kubeconfig, "labels": {"region": "eu-west"}},
            {"name": "c", "kubeconfig": sims["c"].kubeconfig, "labels": {"region": "eu-west", "tier": "gpu"}}])

        # bad configuration at start: a clear error, a non-zero exit
        bad_start("start: an unknown context is refused", ["--cluster", "x=%s#nope" % sims["b"].kubeconfig], "nope")
        bad_start("start: an unreadable kubeconfig is refused", ["--cluster", "x=/nonexistent/kubeconfig"],
                  "/nonexistent/kubeconfig")
        bad_start("start: a duplicate cluster name is refused",
                  ["--cluster", "b=%s" % sims["b"].kubeconfig, "--clusters-file", cfile], "configured twice")

        env = Env(30, ["--seed", "1"], ["--cluster", "a={dir}/kubeconfig", "--clusters-file", cfile,
                                        "--store", "sqlite:{dir}/pw.db", "--cluster-unreachable-timeout", "4s"])
        sims_all = {"a": env, "b": sims["b"], "c": sims["c"]}
        got = wait_for(lambda: all(c.get("synced") and c.get("reachable") for c in clusters(env)[0].values())
                       and len(clusters(env)[0]) == 3, 60)
        cl, _ = clusters(env)
        tap(bool(got) and cl["a"]["nodes"] == 30 and cl["b"]["nodes"] == 40 and cl["c"]["nodes"] == 25 and
            cl["c"]["labels"] == {"region": "eu-west", "tier": "gpu"} and cl["b"]["serverVersion"],
            "GET /api/v1/clusters lists the three clusters with labels, nodes and server versions", json.dumps(cl)[:600])

        def over_all():
            tid = env.create_task({"images": ["busybox:1.36"], "batchSize": 5})
            t = env.wait_task(tid, timeout=240)
            pc = {c["name"]: c for c in t["progress"].get("clusters", [])}
            tap(t["status"] == "succeeded" and t["progress"]["totalNodes"] == 95 and
                [pc[n]["totalNodes"] for n in "abc"] == [30, 40, 25] and all(pc[n]["state"] == "succeeded" for n in "abc"),
                "a task over all three clusters succeeds with a per-cluster breakdown", json.dumps(t["progress"])[:600])
            check_truth("each kubesim's ground truth matches the task's node results", sims_all, env, tid, "busybox:1.36")
            code, page = env.api("GET", "/api/v1/tasks/%s/nodes?cluster=c&limit=7" % tid)
            items, cont = page["items"], page.get("continue")
            while cont:
                code, page = env.api("GET", "/api/v1/tasks/%s/nodes?cluster=c&limit=7&continue=%s" % (tid, cont))
                items += page["items"]
                cont = page.get("continue")
            tap(len(items) == 25 and all(n["cluster"] == "c" for n in items),
                "GET /nodes?cluster=c pages through c's 25 nodes only", "%d items" % len(items))
        scenario("over all", over_all)

        def selector():
            tid = env.create_task({"images": ["nginx:1.27"], "clusterSelector": "region in (eu-west)"})
            t = env.wait_task(tid, timeout=240)
            names = [c["name"] for c in t["progress"]["clusters"]]
            tap(t["status"] == "succeeded" and names == ["b", "c"] and t["progress"]["totalNodes"] == 65,
                "clusterSelector region in (eu-west) picks b and c", json.dumps(t["progress"])[:400])
            tid = env.create_task({"images": ["alpine:3.20"], "clusters": ["a", "c"]})
            t = env.wait_task(tid, timeout=240)
            pc = {c["name"]: c for c in t["progress"]["clusters"]}
            tap(t["status"] == "failed" and pc["a"]["state"] == "succeeded" and pc["c"]["state"] == "failed" and
                "clusters failed: c" in t["message"],
                "clusters [a, c] with an image c's catalogue lacks: a succeeds, c fails, the message names c",
                t["message"][:400])
            code, out = env.api("POST", "/api/v1/tasks", {"images": ["busybox:1.36"], "clusters": ["zz"]})
            tap(code == 400 and out["details"][0]["field"] == "clusters[0]" and "zz" in out["message"],
                "a task naming an unknown cluster is refused with 400 naming the field", json.dumps(out)[:300])
        scenario("selector", selector)

        def reload_bad_and_add():
            write_clusters(cfile, [
                {"name": "b", "kubeconfig": sims["b"].kubeconfig, "labels": {"region": "eu-west"}},
                {"name": "c", "kubeconfig": sims["c"].kubeconfig, "context": "nope"}])
            got = wait_for(lambda: "reloadError" in clusters(env)[1], timeout=20)
            cl, out = clusters(env)
            tap(bool(got) and "nope" in out.get("reloadError", "") and set(cl) == {"a", "b", "c"} and
                cl["c"]["labels"].get("tier") == "gpu",
                "a reload with an unknown context is refused and keeps the running configuration", json.dumps(out)[:400])
            write_clusters(cfile, [
                {"name": "b", "kubeconfig": sims["b"].kubeconfig, "labels": {"region": "eu-west"}},
                {"name": "b", "kubeconfig": sims["c"].kubeconfig}])
            got = wait_for(lambda: "twice" in clusters(env)[1].get("reloadError", ""), timeout=20)
            tap(bool(got) and set(clusters(env)[0]) == {"a", "b", "c"},
                "a reload with a duplicate name is refused and keeps the running configuration")
            sims["d"] = Sim(12, ["--seed", "4"], name="kubesim-d")
            write_clusters(cfile, [
                {"name": "b", "kubeconfig": sims["b"].kubeconfig, "labels": {"region": "eu-west"}},
                {"name": "c", "kubeconfig": sims["c"].kubeconfig, "labels": {"region": "eu-west", "tier": "gpu"}},
                {"name": "d", "kubeconfig": sims["d"].kubeconfig, "labels": {"region": "us-east"}}])
            got = wait_for(lambda: clusters(env)[0].get("d", {}).get("synced"), timeout=30)
            cl, out = clusters(env)
            tap(bool(got) and cl["d"]["nodes"] == 12 and "reloadError" not in out,
                "a cluster added to the clusters file is picked up without a restart", json.dumps(out)[:400])
            tid = env.create_task({"images": ["redis:7.4"], "clusterSelector": "region=us-east"})
            t = env.wait_task(tid, timeout=240)
            check_truth("a task on the added cluster matches its ground truth", {"d": sims["d"]}, env, tid, "redis:7.4")
            tap(t["status"] == "succeeded", "the task on the added cluster succeeds", t["message"])
        scenario("reload", reload_bad_and_add)

        def restart():
            tid = env.create_task({"images": ["postgres:16"], "batchSize": 3, "clusters": ["a", "b", "c"]})
            env.wait_task(tid, timeout=60, until=("running",))
            wait_for(lambda: env.api("GET", "/api/v1/tasks/" + tid)[1]["progress"]["succeededNodes"] > 0, timeout=60, step=0.1)
            env.stop_prewarmd(signal.SIGKILL)
            env.start_prewarmd()
            t = env.wait_task(tid, timeout=300)
            pc = {c["name"]: c for c in t["progress"]["clusters"]}
            tap(t["status"] == "succeeded" and all(pc[n]["state"] == "succeeded" for n in "abc") and
                t["progress"]["totalNodes"] == 95,
                "prewarmd killed mid-task (SQLite) resumes and finishes in all clusters", json.dumps(t["progress"])[:500])
            check_truth("after the restart every kubesim's truth matches", sims_all, env, tid, "postgres:16")
        scenario("restart", restart)

        def unreachable():
            tid = env.create_task({"images": ["python:3.12"], "batchSize": 2, "clusters": ["a", "b", "c"]})
            wait_for(lambda: env.api("GET", "/api/v1/tasks/" + tid)[1]["status"] == "running", timeout=60, step=0.1)
            time.sleep(1)
            sims["c"].kill()
            t = env.wait_task(tid, timeout=300)
            pc = {c["name"]: c for c in t["progress"]["clusters"]}
            nodes = by_cluster(env, tid)
            c_reasons = {n["reason"] for n in nodes["c"] if n["state"] == "failed"}
            tap(pc["a"]["state"] == "succeeded" and pc["b"]["state"] == "succeeded" and pc["c"]["state"] == "failed" and
                "ClusterUnreachable" in c_reasons and pc["c"]["failedNodes"] > 0,
                "a kubesim killed mid-task: its nodes fail ClusterUnreachable, the other two finish",
                json.dumps(pc)[:600] + " " + str(c_reasons))
            frac = t["progress"]["succeededNodes"] / (t["progress"]["totalNodes"] - t["progress"]["skippedNodes"])
            want = "succeeded" if frac >= 0.9 else "failed"
            tap(t["status"] == want and "clusters failed: c" in t["message"],
                "the task's outcome uses the threshold over all nodes and its message names cluster c",
                "%s (%.2f) %s" % (t["status"], frac, t["message"][:300]))
            cl, _ = clusters(env)
            tap(cl["c"]["reachable"] is False and cl["c"]["lastError"] and cl["a"]["reachable"],
                "GET /api/v1/clusters shows c unreachable with its last error", json.dumps(cl["c"])[:300])
        scenario("unreachable", unreachable)
    except Exception as e:  # noqa: BLE001
        tap(False, "multi-cluster suite", "exception: %s" % e)
    finally:
        if env:
            env.close()
        for s in sims.values():
            s.close()
        os.unlink(cat_path)
    finish()
    return 1 if prewarmd_lib.failures else 0


if __name__ == "__main__":
    sys.exit(main())
