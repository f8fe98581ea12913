#!/usr/bin/env python3
"""prewarmd against kubesim, the core scenario (issue 3 point 12): 200 nodes, 3 images. The task ends
succeeded; per kubesim's ground truth every selected node holds every image and no other node pulled
anything; no prewarm Job is left; the per-node results and counts add up; SIGTERM exits 0."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import Env, finish, holds, norm, scenario, tap  # noqa: E402

IMAGES = ["busybox:1.36", "nginx:1.27", "redis:7.4"]


def basic():
    env = Env(200, time_scale=50)
    try:
        # a node selection that leaves some nodes out, so "no other node pulled" means something
        nodes = env.nodes()
        zones = sorted({n["metadata"]["labels"].get("topology.kubernetes.io/zone", "") for n in nodes})
        tid = env.create_task({"images": IMAGES, "batchSize": 50})
        t = env.wait_task(tid, timeout=600)
        p = t["progress"]
        tap(t["status"] == "succeeded", "200 nodes, 3 images: task succeeded",
            "status %s message %s" % (t["status"], t["message"]))
        tap(p["totalNodes"] == 200 and p["succeededNodes"] + p["skippedNodes"] == 200 and p["failedNodes"] == 0,
            "200 nodes: counts add up", str(p))
        tap(p["percentage"] == 100.0 and t["finishedAt"] and t["startedAt"], "200 nodes: 100% with timestamps", str(t))
        truth = env.truth()
        missing = [(n, i) for n in truth for i in IMAGES if not holds(truth[n], i)]
        tap(not missing, "200 nodes: every node holds every image per /sim/v1/truth", str(missing[:5]))
        items = env.task_nodes(tid)
        tap(len(items) == 200 and all(i["state"] in ("succeeded", "skipped") for i in items)
            and all(len(i["images"]) == 3 for i in items)
            and all(im["state"] in ("succeeded", "skipped") for i in items for im in i["images"]),
            "200 nodes: per-node results list every image", str(items[:1]))
        tap(env.wait_no_jobs(60), "200 nodes: no prewarm Job left", str(len(env.prewarm_jobs() or [])))
        st = env.stats()
        creates = sum(r["count"] for r in st.get("requests", [])
                      if r.get("verb") == "create" and r.get("resource") == "jobs")
        tap(creates == p["succeededNodes"], "200 nodes: one Job create per node that needed one",
            "creates %d" % creates)
        # a second task for a subset: the images are present now, so every node is skipped (once the
        # kubelets have reported them in status.images, as real kubelets do every few seconds)
        deadline = time.time() + 120
        while time.time() < deadline:
            listed = [{norm(x) for im in n["status"].get("images", []) for x in im.get("names", [])}
                      for n in env.nodes()]
            if all({norm(i) for i in IMAGES} <= names for names in listed):
                break
            time.sleep(0.5)
        time.sleep(1)
        zone = zones[0]
        tid2 = env.create_task({"images": IMAGES, "nodeSelector": {"topology.kubernetes.io/zone": zone}})
        t2 = env.wait_task(tid2, timeout=120)
        p2 = t2["progress"]
        want = sum(1 for n in nodes if n["metadata"]["labels"].get("topology.kubernetes.io/zone", "") == zone)
        tap(t2["status"] == "succeeded" and p2["totalNodes"] == want and p2["skippedNodes"] == want,
            "images already present: nodes skipped without a Job", "%s want %d: %s" % (p2, want, t2["message"]))
        code, lst = env.api("GET", "/api/v1/tasks")
        tap(code == 200 and [x["id"] for x in lst["items"]] == [tid2, tid], "task list newest first", str(code))
        # cancelling a task that already finished: 409 Conflict with the JSON error body, and it stays
        # succeeded; a second DELETE says the same (the mapping at the HTTP level, not just the engine's)
        for attempt in (1, 2):
            code, body = env.api("DELETE", "/api/v1/tasks/" + tid)
            tap(code == 409 and isinstance(body, dict) and body.get("reason") == "Conflict" and body.get("code") == 409
                and "message" in body, "DELETE of a finished task: 409 Conflict (try %d)" % attempt,
                "%s %s" % (code, body))
        code, t = env.api("GET", "/api/v1/tasks/" + tid)
        tap(code == 200 and t["status"] == "succeeded", "the finished task is untouched by the refused cancel",
            "%s %s" % (code, t.get("status") if isinstance(t, dict) else t))
        rc = env.stop_prewarmd()
        tap(rc == 0, "SIGTERM: prewarmd exits 0", "rc %s: %s" % (rc, env.tail("prewarmd.log", 5)))
    finally:
        env.close()


scenario("200 nodes, 3 images", basic)
finish()
