#!/usr/bin/env python3
"""prewarmd against kubesim: API faults (issue 3 point 12). With 5% of API calls failing (500 and
429) and watch streams dropped every few seconds, a 100-node task still ends with exact counts, every
node holds the image per kubesim's truth, and no node got a second Job."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import Env, finish, holds, scenario, tap  # noqa: E402


def faults():
    env = Env(100, time_scale=20)
    try:
        code, _ = env.kube("POST", "/sim/v1/faults", {
            "errors": [{"verb": "*", "resource": "*", "code": 500, "rate": 0.025},
                       {"verb": "*", "resource": "*", "code": 429, "rate": 0.025}],
            "dropWatchesEverySeconds": 3})
        tap(code == 200, "faults: injected", str(code))
        tid = env.create_task({"images": ["redis:7.4", "busybox:1.36"], "batchSize": 30})
        t = env.wait_task(tid, timeout=600)
        env.kube("POST", "/sim/v1/faults", {})
        p = t["progress"]
        tap(t["status"] == "succeeded" and p["totalNodes"] == 100 and p["succeededNodes"] == 100
            and p["failedNodes"] == 0, "faults: task ends with exact counts", "%s %s" % (p, t["message"]))
        truth = env.truth()
        tap(all(holds(v, "redis:7.4") and holds(v, "busybox:1.36") for v in truth.values()),
            "faults: every node holds the images")
        created = sum(r["count"] for r in env.stats()["requests"]
                      if r.get("verb") == "create" and r.get("resource") == "jobs" and r.get("code") == 201)
        injected = sum(r["count"] for r in env.stats()["requests"] if r.get("code") in (500, 429))
        tap(injected > 0, "faults: some API calls really failed", "injected %d" % injected)
        tap(created == 100, "faults: no duplicate Job (one 201 create per node)", "created %d" % created)
        tap(env.wait_no_jobs(60), "faults: no prewarm Job left")
    finally:
        env.close()


scenario("API faults", faults)
finish()
