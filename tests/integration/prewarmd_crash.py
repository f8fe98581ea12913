#!/usr/bin/env python3
"""prewarmd against kubesim: the crash test of issue 4 and a restart with tasks in every state.

1. kubesim with 500 nodes, one task with batchSize 50 on the sqlite store; prewarmd is killed with
   SIGKILL at 5 random moments of the task and restarted each time. The task ends succeeded; kubesim's
   truth shows every node holding the images; no node got a second Job (a watch on the prewarm Jobs
   records every Job that ever existed: exactly one per node, and kubesim counts 500 Job creates with
   201); the per-node history is complete (every node has a final state, times, and each image a
   result); no prewarm Job is left.
2. A restart (SIGKILL) while 3 tasks are queued, running and finished keeps all three exactly:
   status, counts and node results as the API showed them before the kill (the running one then goes
   on to finish).
3. Retention: with --history 3s a finished task is pruned (GET 404, its nodes too), and stays pruned
   across a restart."""
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import Env, finish, holds, scenario, tap  # noqa: E402

IMAGES = ["python:3.12", "busybox:1.36"]
NODES = 500
SEL = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dprewarm"


class JobWatch:
    """Records every prewarm Job (uid -> node annotation) through list + watch, re-listing on a drop."""

    def __init__(self, env):
        self.env, self.jobs, self.stop = env, {}, False
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def note(self, job):
        md = job.get("metadata", {})
        with self.lock:
            self.jobs[md.get("uid")] = ((md.get("annotations") or {}).get("prewarm.io/node"), md.get("name"))

    def run(self):
        env = self.env
        while not self.stop:
            code, l = env.kube("GET", "/apis/batch/v1/namespaces/prewarm/jobs?" + SEL)
            if code != 200:
                time.sleep(0.2)
                continue
            for j in l["items"]:
                self.note(j)
            rv = l["metadata"]["resourceVersion"]
            h = {"Authorization": "Bearer " + env.token} if env.token else {}
            url = env.server + "/apis/batch/v1/namespaces/prewarm/jobs?watch=1&allowWatchBookmarks=true&%s" \
                "&resourceVersion=%s&timeoutSeconds=30" % (SEL, rv)
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=h), timeout=60,
                                            context=env.ssl) as r:
                    for line in r:
                        if self.stop:
                            return
                        ev = json.loads(line)
                        if ev.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                            self.note(ev["object"])
            except Exception:  # noqa: BLE001 - a dropped watch: list again
                time.sleep(0.1)

    def close(self):
        self.stop = True

    def per_node(self):
        with self.lock:
            by = {}
            for uid, (node, name) in self.jobs.items():
                by.setdefault(node, []).append(name)
            return by


def crash():
    env = Env(NODES, time_scale=20, pw_args=["--store", "sqlite:{dir}/prewarm.db"])
    watch = JobWatch(env)
    rnd = random.Random(int(os.environ.get("PW_CRASH_SEED", str(int(time.time())))))
    try:
        tid = env.create_task({"images": IMAGES, "batchSize": 50})
        kills = []
        for i in range(5):
            time.sleep(rnd.uniform(0.5, 3.0))
            code, t = env.api("GET", "/api/v1/tasks/" + tid)
            kills.append("%.0f%%" % (t["progress"]["percentage"] if code == 200 else -1))
            env.stop_prewarmd(signal.SIGKILL)
            env.start_prewarmd()
        print("# killed at " + ", ".join(kills), flush=True)
        t = env.wait_task(tid, timeout=900)
        p = t["progress"]
        tap(t["status"] == "succeeded" and p["succeededNodes"] == NODES,
            "crash: the 500-node task ends succeeded after 5 SIGKILLs", "%s %s" % (p, t["message"]))
        truth = env.truth()
        tap(len(truth) == NODES and all(holds(v, i) for v in truth.values() for i in IMAGES),
            "crash: kubesim's truth shows every node holding the images")
        reqs = [r for r in env.stats()["requests"] if r.get("resource") == "jobs" and r.get("verb") == "create"]
        created = sum(r["count"] for r in reqs if r.get("code") == 201)
        tap(created == NODES, "crash: kubesim counts exactly one Job create (201) per node", str(reqs))
        tap(env.wait_no_jobs(90), "crash: no prewarm Job left")
        time.sleep(0.5)
        by = watch.per_node()
        twice = {n: v for n, v in by.items() if len(v) != 1}
        tap(len(by) == NODES and not twice, "crash: every node had exactly one Job (watched)",
            "%d nodes seen, %d with != 1 Job: %s" % (len(by), len(twice), list(twice.items())[:3]))
        nodes = env.task_nodes(tid)
        complete = [n for n in nodes if n["state"] == "succeeded" and n["startedAt"] and n["finishedAt"]
                    and len(n["images"]) == len(IMAGES)
                    and all(im["state"] in ("succeeded", "skipped") and im["attempts"] >= 1 for im in n["images"])]
        tap(len(nodes) == NODES and len(complete) == NODES, "crash: the per-node history is complete",
            "%d nodes, %d complete; e.g. %s" % (len(nodes), len(complete),
                                                 [n for n in nodes if n not in complete][:1]))
    finally:
        watch.close()
        env.close()


def snapshot(env, tid):
    code, t = env.api("GET", "/api/v1/tasks/" + tid)
    return t, env.task_nodes(tid)


def three_states():
    env = Env(60, time_scale=5, pw_args=["--store", "sqlite:{dir}/prewarm.db", "--max-running-tasks", "1"])
    try:
        done = env.create_task({"images": ["busybox:1.36"], "nodeNames": ["node-0001", "node-0002"]})
        env.wait_task(done, timeout=300)
        running = env.create_task({"images": ["python:3.12"], "batchSize": 5})
        queued = env.create_task({"images": ["busybox:1.36"]})
        deadline = time.time() + 120
        while time.time() < deadline:
            code, t = env.api("GET", "/api/v1/tasks/" + running)
            if t["status"] == "running" and t["progress"]["succeededNodes"] > 0:
                break
            time.sleep(0.2)
        # stop the world for the snapshot: kill prewarmd, read the store through a fresh prewarmd
        env.stop_prewarmd(signal.SIGKILL)
        env.start_prewarmd()
        before = {tid: snapshot(env, tid) for tid in (done, running, queued)}
        env.stop_prewarmd(signal.SIGKILL)
        env.start_prewarmd()
        after = {tid: snapshot(env, tid) for tid in (done, running, queued)}
        b, a = before[done], after[done]
        tap(a[0] == b[0] and a[1] == b[1] and a[0]["status"] == "succeeded",
            "restart: the finished task is kept exactly (status, counts, node results)", "%s\n%s" % (b[0], a[0]))
        b, a = before[queued], after[queued]
        tap(a[0]["status"] == "pending" and a[0] == b[0] and a[1] == [],
            "restart: the queued task is kept exactly and still queued", "%s\n%s" % (b[0], a[0]))
        b, a = before[running], after[running]
        fin = [n for n in b[1] if n["state"] in ("succeeded", "failed", "skipped")]
        same = all(n in a[1] for n in fin)
        tap(a[0]["status"] == "running" and b[0]["status"] == "running" and fin and same
            and a[0]["progress"]["totalNodes"] == b[0]["progress"]["totalNodes"]
            and a[0]["progress"]["succeededNodes"] >= b[0]["progress"]["succeededNodes"],
            "restart: the running task keeps its finished node results and goes on",
            "%s\n%s" % (b[0]["progress"], a[0]["progress"]))
        t = env.wait_task(running, timeout=600)
        q = env.wait_task(queued, timeout=600)
        tap(t["status"] == "succeeded" and t["progress"]["succeededNodes"] == 60 and q["status"] == "succeeded",
            "restart: the running and the queued task then finish", "%s %s" % (t["progress"], q["progress"]))
        reqs = [r for r in env.stats()["requests"] if r.get("resource") == "jobs" and r.get("verb") == "create"]
        created = sum(r["count"] for r in reqs if r.get("code") == 201)
        want = sum(1 for tid in (done, running, queued) for n in env.task_nodes(tid) if n["state"] != "skipped")
        tap(created == want, "restart: no node got a second Job", "%d creates for %d nodes: %s" % (created, want, reqs))
    finally:
        env.close()


def history():
    env = Env(5, time_scale=50, pw_args=["--store", "sqlite:{dir}/prewarm.db", "--history", "3s"])
    try:
        old = env.create_task({"images": ["busybox:1.36"]})
        t = env.wait_task(old, timeout=120)
        code, _ = env.api("GET", "/api/v1/tasks/" + old)
        tap(t["status"] == "succeeded" and code == 200, "history: a finished task is kept at first", str(code))
        deadline, code = time.time() + 30, 200
        while code == 200 and time.time() < deadline:
            time.sleep(0.5)
            code, body = env.api("GET", "/api/v1/tasks/" + old)
        tap(code == 404 and body.get("reason") == "NotFound", "history: the task is pruned after --history; GET is 404",
            "%s %s" % (code, body))
        code, nodes = env.api("GET", "/api/v1/tasks/%s/nodes" % old)
        tap(code == 404, "history: its node results are gone too", str(code))
        env.stop_prewarmd(signal.SIGKILL)
        env.start_prewarmd()
        code, _ = env.api("GET", "/api/v1/tasks/" + old)
        tap(code == 404, "history: still gone after a restart", str(code))
    finally:
        env.close()


scenario("crash: 5 SIGKILLs during a 500-node task", crash)
scenario("restart with queued, running and finished tasks", three_states)
scenario("retention by --history", history)
finish()
