#!/usr/bin/env python3
"""prewarmd against kubesim: restart safety of the engine's resume path (with the sqlite store).
prewarmd is killed with SIGKILL three times during a 40-node task and restarted each time; the task
ends succeeded, kubesim's truth shows every node holding the images, no node got a second Job (one
201 create per node), and no prewarm Job is left."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import Env, finish, holds, scenario, tap  # noqa: E402

IMAGES = ["python:3.12", "busybox:1.36"]


def resume():
    env = Env(40, time_scale=5, pw_args=["--store", "sqlite:{dir}/prewarm.db"])
    try:
        tid = env.create_task({"images": IMAGES, "batchSize": 10})
        for _ in range(3):
            time.sleep(1.2)
            env.stop_prewarmd(signal.SIGKILL)
            env.start_prewarmd()
        t = env.wait_task(tid, timeout=600)
        p = t["progress"]
        tap(t["status"] == "succeeded" and p["succeededNodes"] == 40, "resume: the task ends succeeded after 3 kills",
            "%s %s" % (p, t["message"]))
        truth = env.truth()
        tap(all(holds(v, i) for v in truth.values() for i in IMAGES), "resume: every node holds the images")
        reqs = [r for r in env.stats()["requests"] if r.get("resource") == "jobs" and r.get("verb") == "create"]
        created = sum(r["count"] for r in reqs if r.get("code") == 201)
        tap(created == 40, "resume: no node got a second Job", str(reqs))
        tap(env.wait_no_jobs(60), "resume: no prewarm Job left")
        nodes = env.task_nodes(tid)
        tap(len(nodes) == 40 and all(n["state"] == "succeeded" and n["startedAt"] and n["finishedAt"] for n in nodes),
            "resume: the per-node history is complete")
    finally:
        env.close()


scenario("resume after SIGKILL", resume)
finish()
