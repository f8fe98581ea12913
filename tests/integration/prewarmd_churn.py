#!/usr/bin/env python3
"""prewarmd against kubesim: cancel and node churn (issue 3 point 12). Cancelling in the middle
leaves no prewarm Job and counts that add up, repeating the cancel is harmless and cancelling a
finished task is 409; a node deleted mid-task fails with NodeDeleted and one NotReady past the grace
period with NodeNotReady."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import Env, finish, scenario, tap  # noqa: E402

BIG = "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime"


def wait_running(env, tid, n, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        t = env.api("GET", "/api/v1/tasks/" + tid)[1]
        if t["progress"]["runningNodes"] >= n:
            return t
        time.sleep(0.2)
    raise RuntimeError("task %s never had %d nodes running" % (tid, n))


def cancel():
    env = Env(30, time_scale=5)
    try:
        tid = env.create_task({"images": [BIG], "batchSize": 10})
        wait_running(env, tid, 10)
        code, t = env.api("DELETE", "/api/v1/tasks/" + tid)
        tap(code == 200 and t["status"] == "cancelled", "cancel: 200 and cancelled", "%s %s" % (code, t))
        code2, t2 = env.api("DELETE", "/api/v1/tasks/" + tid)
        tap(code2 == 200 and t2["status"] == "cancelled", "cancel: repeating it is harmless", str(code2))
        tap(env.wait_no_jobs(60), "cancel: no prewarm Job remains", str(len(env.prewarm_jobs() or [])))
        time.sleep(1)
        t = env.api("GET", "/api/v1/tasks/" + tid)[1]
        p = t["progress"]
        nodes = env.task_nodes(tid)
        by_state = {}
        for n in nodes:
            by_state[n["state"]] = by_state.get(n["state"], 0) + 1
        tap(p["totalNodes"] == 30 and p["pendingNodes"] == 0 and p["runningNodes"] == 0
            and p["succeededNodes"] + p["failedNodes"] + p["skippedNodes"] + p["cancelledNodes"] == 30
            and p["cancelledNodes"] >= 20 and by_state.get("cancelled", 0) == p["cancelledNodes"]
            and len(nodes) == 30, "cancel: counts add up", "%s %s" % (p, by_state))
        # a finished task cannot be cancelled
        t3 = env.wait_task(env.create_task({"images": ["busybox:1.36"], "nodeNames": ["node-0001"]}))
        code, body = env.api("DELETE", "/api/v1/tasks/" + t3["id"])
        tap(code == 409 and body["reason"] == "Conflict", "cancel: 409 on a finished task", "%s %s" % (code, body))
    finally:
        env.close()


def churn():
    env = Env(12, time_scale=5, pw_args=["--not-ready-grace", "2s"])
    try:
        tid = env.create_task({"images": [BIG], "batchSize": 12, "successThreshold": 0.5})
        wait_running(env, tid, 12)
        code, _ = env.kube("DELETE", "/sim/v1/nodes/node-0003")
        code2, _ = env.kube("PATCH", "/sim/v1/nodes/node-0005", {"ready": False})
        tap(code in (200, 202) and code2 == 200, "churn: node deleted and made NotReady", "%s %s" % (code, code2))
        t = env.wait_task(tid, timeout=600)
        nodes = {n["nodeName"]: n for n in env.task_nodes(tid)}
        d, nr = nodes.get("node-0003", {}), nodes.get("node-0005", {})
        tap(d.get("state") == "failed" and d.get("reason") == "NodeDeleted", "churn: deleted node fails NodeDeleted",
            str(d))
        tap(nr.get("state") == "failed" and nr.get("reason") == "NodeNotReady", "churn: NotReady node fails NodeNotReady",
            str(nr))
        p = t["progress"]
        tap(t["status"] == "succeeded" and p["failedNodes"] == 2 and p["succeededNodes"] == 10,
            "churn: the other nodes succeed, task succeeds over the threshold", "%s %s" % (p, t["message"]))
        tap(env.wait_no_jobs(60), "churn: no prewarm Job left")
    finally:
        env.close()


def sigterm():
    env = Env(6, time_scale=2)
    try:
        tid = env.create_task({"images": [BIG], "batchSize": 6})
        wait_running(env, tid, 6)
        time.sleep(0.5)
        before = len(env.prewarm_jobs() or [])
        rc = env.stop_prewarmd()
        after = len(env.prewarm_jobs() or [])
        tap(rc == 0 and before == 6 and after == 6, "SIGTERM mid-task: exits 0 and leaves the Jobs running",
            "rc %s jobs %d -> %d" % (rc, before, after))
    finally:
        env.close()


scenario("cancel", cancel)
scenario("SIGTERM", sigterm)
scenario("node churn", churn)
finish()
