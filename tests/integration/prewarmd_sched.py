#!/usr/bin/env python3
"""prewarmd against kubesim: scheduling across tasks (issue 3 point 12). Under a global cap on nodes
in flight, a higher-priority task submitted later is served before an earlier lower-priority one;
the cap on running tasks queues tasks (pending) behind it; the batch strategy finishes."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import FINAL, Env, finish, scenario, tap  # noqa: E402


def priority():
    env = Env(12, time_scale=5, pw_args=["--max-nodes-in-flight", "4", "--max-running-tasks", "3"])
    try:
        # a blocker holds the cap; then low and high priority tasks queue behind it
        blocker = env.create_task({"images": ["python:3.12"], "batchSize": 4, "priority": 50})
        deadline = time.time() + 60
        while env.api("GET", "/api/v1/tasks/" + blocker)[1]["progress"]["runningNodes"] < 4:
            if time.time() > deadline:
                raise RuntimeError("blocker never ran")
            time.sleep(0.1)
        low = env.create_task({"images": ["busybox:1.36"], "batchSize": 12, "priority": 0})
        high = env.create_task({"images": ["nginx:1.27"], "batchSize": 12, "priority": 100})
        # sample both tasks in one list call until they finish: while the high task still has more
        # pending nodes than the cap, the low one (submitted first) must not have started any node
        violations, samples = [], 0
        deadline = time.time() + 600
        while time.time() < deadline:
            items = {t["id"]: t for t in env.api("GET", "/api/v1/tasks")[1]["items"]}
            lo, hi = items[low]["progress"], items[high]["progress"]
            samples += 1
            if hi["totalNodes"] and hi["pendingNodes"] > 4 and lo["totalNodes"] and lo["pendingNodes"] < lo["totalNodes"]:
                violations.append((hi, lo))
            if items[low]["status"] in FINAL and items[high]["status"] in FINAL:
                break
            time.sleep(0.05)
        env.wait_task(blocker, timeout=600)
        tap(not violations and samples > 3,
            "priority: the later high-priority task gets the cap before the earlier low one",
            "%d samples, violations %s" % (samples, violations[:2]))
        lo_nodes = env.task_nodes(low)
        hi_nodes = env.task_nodes(high)
        lo_first = min(n["startedAt"] for n in lo_nodes)
        hi_last = max(n["startedAt"] for n in hi_nodes)
        tap(hi_last <= lo_first, "priority: every node of the high task started before any of the low one",
            "high last %s, low first %s" % (hi_last, lo_first))
        st = env.stats()
        tap(all(env.api("GET", "/api/v1/tasks/" + t)[1]["status"] == "succeeded" for t in (blocker, low, high)),
            "priority: all three tasks succeed")
        _ = st
    finally:
        env.close()


def running_cap_and_batch():
    env = Env(8, time_scale=20, pw_args=["--max-running-tasks", "1", "--batch-pause", "1s"])
    try:
        a = env.create_task({"images": ["python:3.12"], "strategy": "batch", "batchSize": 3})
        b = env.create_task({"images": ["busybox:1.36"]})
        time.sleep(0.5)
        tb = env.api("GET", "/api/v1/tasks/" + b)[1]
        ta = env.api("GET", "/api/v1/tasks/" + a)[1]
        tap(tb["status"] == "pending" and ta["status"] == "running",
            "running-task cap: the second task waits pending", "%s %s" % (ta["status"], tb["status"]))
        ta = env.wait_task(a, timeout=600)
        tb = env.wait_task(b, timeout=600)
        tap(ta["status"] == "succeeded" and ta["progress"]["succeededNodes"] == 8,
            "batch strategy: all batches finish", str(ta["progress"]))
        tap(tb["startedAt"] >= ta["finishedAt"], "running-task cap: the queued task starts after the first ends",
            "%s %s" % (tb["startedAt"], ta["finishedAt"]))
    finally:
        env.close()


scenario("priority under a global cap", priority)
scenario("running-task cap and batch strategy", running_cap_and_batch)
finish()
