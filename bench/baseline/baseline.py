#!/usr/bin/python3
"""baseline.py: the original design (the Go MVP of ../shared/origin/000_96f91187ff912487.txt) re-implemented
as a benchmark baseline, with the official Kubernetes Python client. One task, start to finish:

  1. list nodes; filter them by label selector and readiness (the Ready condition True);
  2. split them into batches of batchSize nodes; for each batch, in order:
     - create one Job per node (nodeName set) holding every image, backoffLimit 3 (the "3 retries"),
       ttlSecondsAfterFinished 3600;
     - every 5 s (a ticker: the first check 5 s after the batch started), GET every unfinished Job of the
       batch; a Job is finished when it has the Complete or Failed condition (or succeeded >= 1, or
       failed > backoffLimit);
     - when the whole batch has finished, update progress, pause 2 s, start the next batch;
  3. the task succeeds when succeeded / total >= 0.9.

The pods pull the same images as prewarm's (src/engine/jobspec.c): an init container from prewarm's
helper image copies prewarm-true into an emptyDir, and one container per image runs /prewarm/true.
Jobs are not deleted (the original relies on the TTL).

--time-scale X divides the 5 s poll and the 2 s pause (default 1: the original's real-time constants).
Progress lines "t_seconds done_nodes" go to --progress FILE (one per poll, as the original observes
them); the summary is one JSON line on stdout."""
import argparse
import hashlib
import json
import sys
import time

from kubernetes import client, config


def parse_args():
    p = argparse.ArgumentParser(description="the original prewarm algorithm (benchmark baseline)")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--namespace", default="prewarm")
    p.add_argument("--image", action="append", required=True, dest="images")
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--label-selector", default="")
    p.add_argument("--poll", type=float, default=5.0, help="seconds between status polls [5]")
    p.add_argument("--pause", type=float, default=2.0, help="seconds between batches [2]")
    p.add_argument("--time-scale", type=float, default=1.0, help="divides --poll and --pause [1]")
    p.add_argument("--retries", type=int, default=3)
    p.add_argument("--ttl", type=int, default=3600)
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--helper-image", default="ghcr.io/prewarm/prewarm:0.1.0")
    p.add_argument("--task-id", default="base")
    p.add_argument("--progress", default=None)
    p.add_argument("--timeout", type=float, default=1800.0)
    return p.parse_args()


def node_ready(n):
    for c in (n.status.conditions or []):
        if c.type == "Ready":
            return c.status == "True"
    return False


def job_manifest(a, node):
    h = hashlib.sha256(node.encode()).hexdigest()[:10]
    name = ("base-%s-%s" % (a.task_id, h))[:63]
    sec = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
           "capabilities": {"drop": ["ALL"]}}
    res = {"requests": {"cpu": "1m", "memory": "4Mi"}, "limits": {"cpu": "10m", "memory": "16Mi"}}
    containers = [{"name": "img-%d" % i, "image": img, "imagePullPolicy": "IfNotPresent",
                   "command": ["/prewarm/true"], "volumeMounts": [{"name": "prewarm", "mountPath": "/prewarm",
                                                                   "readOnly": True}],
                   "resources": res, "securityContext": sec} for i, img in enumerate(a.images)]
    init = {"name": "install", "image": a.helper_image, "imagePullPolicy": "IfNotPresent",
            "command": ["/prewarm-true", "install", "/prewarm/true"],
            "volumeMounts": [{"name": "prewarm", "mountPath": "/prewarm"}], "resources": res, "securityContext": sec}
    labels = {"app": "image-prewarm", "task-id": a.task_id}
    return name, {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": a.namespace, "labels": labels},
        "spec": {
            "backoffLimit": a.retries, "ttlSecondsAfterFinished": a.ttl,
            "template": {"metadata": {"labels": labels}, "spec": {
                "nodeName": node, "restartPolicy": "Never", "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 0,
                "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
                "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "volumes": [{"name": "prewarm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}],
                "initContainers": [init], "containers": containers}}}}


def job_outcome(job, retries):
    """None while running, True succeeded, False failed."""
    st = job.status
    for c in (st.conditions or []):
        if c.status == "True" and c.type == "Complete":
            return True
        if c.status == "True" and c.type == "Failed":
            return False
    if (st.succeeded or 0) >= 1:
        return True
    if (st.failed or 0) > retries:
        return False
    return None


def main():
    a = parse_args()
    poll, pause = a.poll / a.time_scale, a.pause / a.time_scale
    config.load_kube_config(config_file=a.kubeconfig)
    core, batch = client.CoreV1Api(), client.BatchV1Api()
    prog = open(a.progress, "w") if a.progress else None
    t0 = time.monotonic()
    deadline = t0 + a.timeout

    def record(done):
        if prog:
            prog.write("%.3f %d\n" % (time.monotonic() - t0, done))
            prog.flush()

    nodes = [n.metadata.name for n in core.list_node(label_selector=a.label_selector).items if node_ready(n)]
    total, succeeded, failed = len(nodes), 0, 0
    reasons = {}  # why nodes failed, for the summary

    def fail(why):
        reasons[why] = reasons.get(why, 0) + 1
    record(0)
    batches = [nodes[i:i + a.batch_size] for i in range(0, total, a.batch_size)]
    for bi, names in enumerate(batches):
        pending = {}
        for node in names:
            name, body = job_manifest(a, node)
            try:
                batch.create_namespaced_job(a.namespace, body)
            except client.exceptions.ApiException as e:
                if e.status != 409:
                    failed += 1
                    fail("create %d" % e.status)
                    continue
            pending[name] = node
        next_tick = time.monotonic() + poll
        while pending and time.monotonic() < deadline:
            time.sleep(max(0.0, next_tick - time.monotonic()))
            next_tick += poll
            for name in list(pending):
                try:
                    job = batch.read_namespaced_job_status(name, a.namespace)
                except client.exceptions.ApiException as e:
                    if e.status == 404:
                        failed += 1
                        fail("Job gone (404)")
                        del pending[name]
                    continue
                out = job_outcome(job, a.retries)
                if out is None:
                    continue
                if out:
                    succeeded += 1
                else:
                    failed += 1
                    conds = [c.reason or c.type for c in (job.status.conditions or []) if c.status == "True"]
                    fail("Job failed: " + ",".join(conds or ["?"]))
                del pending[name]
            record(succeeded + failed)
        failed += len(pending)
        if pending:
            fail("timeout")
        if bi + 1 < len(batches):
            time.sleep(pause)
    makespan = time.monotonic() - t0
    record(succeeded + failed)
    ok = total == 0 or succeeded / total >= a.threshold
    print(json.dumps({"status": "succeeded" if ok else "failed", "totalNodes": total, "succeededNodes": succeeded,
                      "failedNodes": failed, "batches": len(batches), "makespanSeconds": round(makespan, 3),
                      "failures": reasons}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
