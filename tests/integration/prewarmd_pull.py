#!/usr/bin/env python3
"""prewarmd against kubesim: pull outcomes (issue 3 point 12). A distroless image (no shell, no
`true`) prewarms; a reference that does not exist fails each node with ErrImagePull and the
registry's message, fails the task, and does not wait for timeoutSeconds; the image behind a pull
secret fails without the secret and succeeds with it."""
import base64
import json
import os
import re
import urllib.request
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import Env, finish, holds, scenario, tap  # noqa: E402

PRIVATE = "registry.example.com/team/private-app:1.0"


def pulls():
    env = Env(6, time_scale=50)
    try:
        t = env.wait_task(env.create_task({"images": ["gcr.io/distroless/static-debian12:nonroot"]}))
        truth = env.truth()
        tap(t["status"] == "succeeded" and all(holds(v, "gcr.io/distroless/static-debian12:nonroot")
                                               for v in truth.values()),
            "distroless image prewarms", "%s: %s" % (t["status"], t["message"]))

        start = time.time()
        tid = env.create_task({"images": ["nginx:does-not-exist"], "retries": 2, "timeoutSeconds": 3600})
        t = env.wait_task(tid, timeout=300)
        took = time.time() - start
        nodes = env.task_nodes(tid)
        ok_nodes = all(n["state"] == "failed" and n["reason"] == "ErrImagePull" and "not found" in n["message"]
                       and n["images"][0]["state"] == "failed" and n["images"][0]["attempts"] >= 2
                       for n in nodes)
        tap(t["status"] == "failed" and len(nodes) == 6 and ok_nodes,
            "missing image: every node fails with ErrImagePull and the registry's message",
            "%s %s" % (t["status"], json.dumps(nodes[:1])))
        tap(took < 300 and t["failedNodes"] and t["failedNodes"][0]["image"] == "nginx:does-not-exist"
            and "ErrImagePull" in t["message"] and "not found" in t["message"],
            "missing image: the task fails without waiting for timeoutSeconds, message names the cause",
            "%.0fs %s" % (took, t["message"]))

        t = env.wait_task(env.create_task({"images": [PRIVATE], "retries": 1}), timeout=300)
        tap(t["status"] == "failed" and t["progress"]["failedNodes"] == 6
            and "authorize" in json.dumps(t["failedNodes"]),
            "pull secret: fails without the secret", "%s %s" % (t["status"], t["message"]))
        tap("imagePullSecrets" in t["message"] and "reachability" not in t["message"]
            and ("401" in t["message"] or "nauthorized" in t["message"]),
            "pull secret: the message keeps the cause and points to imagePullSecrets", t["message"])
        raw = urllib.request.urlopen(env.api_base + "/api/v1/tasks/" + t["id"], timeout=30).read().decode()
        tap(re.search(r'"successThreshold":0\.9[,}]', raw) and not re.search(r"\d\.\d{9,}", raw),
            "JSON numbers without float noise", raw[:300])
        cfg = {"auths": {"registry.example.com": {"username": "team-bot", "password": "pw-s3cret"}}}
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                  "metadata": {"name": "regcred", "namespace": "prewarm"},
                  "data": {".dockerconfigjson": base64.b64encode(json.dumps(cfg).encode()).decode()}}
        code, body = env.kube("POST", "/api/v1/namespaces/prewarm/secrets", secret)
        tap(code == 201, "pull secret: created", "%s %s" % (code, body))
        t = env.wait_task(env.create_task({"images": [PRIVATE], "imagePullSecrets": ["regcred"]}), timeout=300)
        truth = env.truth()
        tap(t["status"] == "succeeded" and all(holds(v, PRIVATE) for v in truth.values()),
            "pull secret: succeeds with the secret", "%s %s" % (t["status"], t["message"]))
        tap(env.wait_no_jobs(60), "pulls: no prewarm Job left")

        # a pull slower than timeoutSeconds: the Job's deadline fails the node with DeadlineExceeded
        t = env.wait_task(env.create_task({"images": ["nvcr.io/nvidia/pytorch:24.08-py3"], "timeoutSeconds": 1,
                                           "nodeNames": ["node-0001"]}), timeout=300)
        n = env.task_nodes(t["id"])[0]
        tap(t["status"] == "failed" and n["reason"] == "DeadlineExceeded" and "timeoutSeconds" in t["message"],
            "timeout: the node fails with DeadlineExceeded and the message says what to raise",
            "%s %s %s" % (t["status"], n, t["message"]))
        tap(t["failedNodes"] and t["failedNodes"][0]["image"] == "nvcr.io/nvidia/pytorch:24.08-py3",
            "timeout: failedNodes names the image not pulled yet", json.dumps(t["failedNodes"][:1]))
        raw = urllib.request.urlopen(env.api_base + "/api/v1/tasks/%s/nodes" % t["id"], timeout=30).read().decode()
        tap(not re.search(r"\d\.\d{9,}", raw), "node results without float noise", raw[:300])

        # unknown names in nodeNames are said in the message, not an error
        t = env.wait_task(env.create_task({"images": ["busybox:1.36"], "nodeNames": ["node-0003", "node-x",
                                                                                   "node-y"]}), timeout=300)
        tap(t["status"] == "succeeded" and t["progress"]["totalNodes"] == 1
            and "2 of the 3 requested nodeNames do not exist: node-x, node-y" in t["message"],
            "nodeNames: unknown names are named in the message", "%s %s" % (t["status"], t["message"]))
        tap(env.wait_no_jobs(60), "timeout: the failed node's Job is deleted")

        # --keep-failed-jobs keeps the Job of a failed node for debugging
        tap(env.stop_prewarmd() == 0, "restart: SIGTERM exits 0")
        env.pw_args = ["--keep-failed-jobs"]
        env.start_prewarmd()
        t = env.wait_task(env.create_task({"images": ["nginx:does-not-exist"], "retries": 1,
                                           "nodeNames": ["node-0002"]}), timeout=300)
        jobs = env.prewarm_jobs() or []
        tap(t["status"] == "failed" and len(jobs) == 1
            and jobs[0]["metadata"]["labels"].get("prewarm.io/task") == t["id"],
            "--keep-failed-jobs: the failed node's Job stays", "%s %d jobs" % (t["status"], len(jobs)))
        tap(jobs and jobs[0]["metadata"]["labels"].get("prewarm.io/instance") == "default",
            "instance: the Job carries prewarm.io/instance", json.dumps(jobs[0]["metadata"] if jobs else None))
        # a second prewarmd with another store (another instance) leaves this one's Jobs alone
        env.stop_prewarmd()
        env.pw_args = ["--store", "sqlite:{dir}/other.db"]
        env.start_prewarmd()
        time.sleep(2)
        jobs2 = env.prewarm_jobs() or []
        tap(len(jobs2) == 1, "instance: another instance's start-up sweep keeps the Job", "%d jobs" % len(jobs2))
        code, lst = env.api("GET", "/api/v1/tasks")
        tap(code == 200 and lst["items"] == [], "instance: the other store knows no task", str(lst)[:200])
        # the other instance keeps a failed Job of its own; a default instance that starts with a fresh
        # store then sweeps the (unknown) default Job and leaves the other instance's alone
        env.stop_prewarmd()
        env.pw_args = ["--store", "sqlite:{dir}/other.db", "--keep-failed-jobs"]
        env.start_prewarmd()
        t = env.wait_task(env.create_task({"images": ["nginx:does-not-exist"], "retries": 1,
                                           "nodeNames": ["node-0003"]}), timeout=300)
        env.stop_prewarmd()
        env.pw_args = []
        env.start_prewarmd()
        deadline, jobs3 = time.time() + 30, []
        while time.time() < deadline:
            jobs3 = env.prewarm_jobs() or []
            if len(jobs3) <= 1:
                break
            time.sleep(0.3)
        insts = [j["metadata"]["labels"].get("prewarm.io/instance") for j in jobs3]
        tap(t["status"] == "failed" and len(insts) == 1 and insts[0] not in (None, "default"),
            "instance: the default instance sweeps its own unknown Job, not the other instance's",
            "%s %s" % (t["status"], insts))
    finally:
        env.close()


scenario("pull outcomes", pulls)
finish()
