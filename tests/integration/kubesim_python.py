#!/usr/bin/python3
"""kubesim_python.py: the official Kubernetes Python client (Debian's python3-kubernetes) against
kubesim, unmodified: load_kube_config, list nodes with label selectors, create a Job, watch its pods
to Succeeded, delete the Job with propagation Background and see its pods go, and the 410 Expired
that a watch from a compacted resourceVersion gets. One TAP line per case."""
import json
import os
import sys
import time
import urllib.error
import urllib.request

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kubesim_lib as kl  # noqa: E402
from kubesim_lib import case, wait_until  # noqa: E402

NODES = 4

sim = kl.start(["--nodes", str(NODES), "--seed", "3", "--time-scale", "4"], "kubesim-python.")
kc = sim.kubeconfig


def finish():
    kl.finish(sim)


state = {}


@case("load_kube_config reads kubesim's kubeconfig (current context kubesim, token user)")
def _load():
    contexts, current = config.list_kube_config_contexts(config_file=kc)
    assert current["name"] == "kubesim", current
    assert sorted(c["name"] for c in contexts) == ["kubesim", "kubesim-cert"], contexts
    config.load_kube_config(config_file=kc)
    state["core"] = client.CoreV1Api()
    state["batch"] = client.BatchV1Api()


core = state.get("core")
batch = state.get("batch")
if core is None:
    finish()


@case("list nodes: %d nodes, every one Ready, with hostname/os/arch labels" % NODES)
def _list_nodes():
    nodes = core.list_node()
    names = sorted(n.metadata.name for n in nodes.items)
    assert names == ["node-%04d" % i for i in range(1, NODES + 1)], names
    for n in nodes.items:
        ready = [c for c in n.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True", (n.metadata.name, n.status.conditions)
        assert n.metadata.labels["kubernetes.io/hostname"] == n.metadata.name
        assert n.metadata.labels["kubernetes.io/os"] == "linux"
        assert n.metadata.labels["kubernetes.io/arch"] in ("amd64", "arm64")
    assert nodes.metadata.resource_version, nodes.metadata


@case("list nodes with label selectors (=, !=, in, exists) returns the matching count")
def _selectors():
    nodes = core.list_node().items
    arch = {n.metadata.name: n.metadata.labels["kubernetes.io/arch"] for n in nodes}
    core.patch_node("node-0002", {"metadata": {"labels": {"fidelity": "py"}}})
    sel = core.list_node(label_selector="fidelity=py").items
    assert [n.metadata.name for n in sel] == ["node-0002"], [n.metadata.name for n in sel]
    sel = core.list_node(label_selector="fidelity!=py").items
    assert len(sel) == NODES - 1, len(sel)
    sel = core.list_node(label_selector="fidelity").items
    assert len(sel) == 1, len(sel)
    amd = sum(1 for a in arch.values() if a == "amd64")
    sel = core.list_node(label_selector="kubernetes.io/arch in (amd64)").items
    assert len(sel) == amd, (len(sel), amd)
    sel = core.list_node(label_selector="kubernetes.io/arch=amd64,fidelity=py").items
    assert len(sel) == (1 if arch["node-0002"] == "amd64" else 0), sel


@case("list nodes in pages (limit + _continue): every node once, one resourceVersion")
def _pages():
    first = core.list_node(limit=3)
    assert len(first.items) == 3 and first.metadata._continue, first.metadata
    rest = core.list_node(limit=3, _continue=first.metadata._continue)
    names = [n.metadata.name for n in first.items + rest.items]
    assert names == ["node-%04d" % i for i in range(1, NODES + 1)], names
    assert not rest.metadata._continue, rest.metadata
    assert rest.metadata.resource_version == first.metadata.resource_version, (first.metadata, rest.metadata)


JOB = "py-job"


def job_body():
    return client.V1Job(
        api_version="batch/v1", kind="Job",
        metadata=client.V1ObjectMeta(name=JOB),
        spec=client.V1JobSpec(
            backoff_limit=2,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    node_name="node-0003",
                    restart_policy="Never",
                    containers=[client.V1Container(name="main", image="busybox:1.36", command=["true"])]))))


@case("create a Job (BatchV1Api): defaults and selector set by the server")
def _create_job():
    state["rv0"] = core.list_namespaced_pod("default").metadata.resource_version
    j = batch.create_namespaced_job("default", job_body())
    assert j.metadata.name == JOB and j.metadata.uid, j.metadata
    assert j.spec.completions == 1 and j.spec.parallelism == 1, j.spec
    assert j.spec.selector.match_labels["batch.kubernetes.io/controller-uid"] == j.metadata.uid, j.spec.selector
    state["job_uid"] = j.metadata.uid
    try:
        batch.create_namespaced_job("default", job_body())
        raise AssertionError("a second create did not fail")
    except ApiException as e:
        assert e.status == 409 and json.loads(e.body)["reason"] == "AlreadyExists", e.body


@case("watch the Job's pods (kubernetes.watch.Watch) to phase Succeeded")
def _watch_pods():
    w = watch.Watch()
    phases = []
    name = None
    deadline = time.monotonic() + 60
    for ev in w.stream(core.list_namespaced_pod, "default", label_selector="job-name=" + JOB,
                       resource_version=state["rv0"], timeout_seconds=60):
        pod = ev["object"]
        name = pod.metadata.name
        phases.append((ev["type"], pod.status.phase if pod.status else None))
        if pod.status and pod.status.phase == "Succeeded":
            cs = pod.status.container_statuses[0]
            assert cs.state.terminated.exit_code == 0 and cs.state.terminated.reason == "Completed", cs
            assert cs.image_id, cs
            w.stop()
            break
        if time.monotonic() > deadline:
            w.stop()
    assert phases and phases[0][0] == "ADDED", phases
    assert phases[-1][1] == "Succeeded", phases
    assert name.startswith(JOB + "-") and len(name) == len(JOB) + 6, name
    state["pod"] = name
    pod = core.read_namespaced_pod(name, "default")
    ref = pod.metadata.owner_references[0]
    assert ref.kind == "Job" and ref.uid == state["job_uid"] and ref.controller, ref
    j = wait_until(lambda: (lambda x: x if x.status.succeeded == 1 else None)(batch.read_namespaced_job(JOB, "default")), 20)
    assert j and any(c.type == "Complete" and c.status == "True" for c in j.status.conditions), j


@case("delete the Job with propagation_policy Background: the Job and its pods go")
def _delete_job():
    batch.delete_namespaced_job(JOB, "default", body=client.V1DeleteOptions(propagation_policy="Background"))
    def gone():
        try:
            batch.read_namespaced_job(JOB, "default")
            return False
        except ApiException as e:
            if e.status != 404:
                raise
        return len(core.list_namespaced_pod("default", label_selector="job-name=" + JOB).items) == 0
    assert wait_until(gone, 30), core.list_namespaced_pod("default", label_selector="job-name=" + JOB)


@case("a Job deleted with no policy orphans its pods (batch/v1 default)")
def _orphan():
    name = JOB + "-orphan"
    body = job_body()
    body.metadata.name = name
    batch.create_namespaced_job("default", body)
    pods = wait_until(lambda: core.list_namespaced_pod("default", label_selector="job-name=" + name).items, 30)
    assert pods, "the Job controller made no pod"
    batch.delete_namespaced_job(name, "default")

    def orphaned():
        try:
            batch.read_namespaced_job(name, "default")
            return None
        except ApiException as e:
            if e.status != 404:
                raise
        left = core.list_namespaced_pod("default", label_selector="job-name=" + name).items
        return left if len(left) == 1 and not left[0].metadata.owner_references else None
    left = wait_until(orphaned, 20)
    assert left, core.list_namespaced_pod("default", label_selector="job-name=" + name).items
    core.delete_namespaced_pod(left[0].metadata.name, "default")


@case("delete a Job with propagation_policy Foreground: foregroundDeletion finalizer, then Job and pods go")
def _foreground():
    name = JOB + "-fg"
    body = job_body()
    body.metadata.name = name
    batch.create_namespaced_job("default", body)
    pods = wait_until(lambda: core.list_namespaced_pod("default", label_selector="job-name=" + name).items, 30)
    assert pods, "the Job controller made no pod"
    resp = batch.delete_namespaced_job(name, "default", body=client.V1DeleteOptions(propagation_policy="Foreground"),
                                       _preload_content=False)
    obj = json.loads(resp.data)
    assert resp.status in (200, 202), resp.status
    # the reply is the Job as the delete left it: being deleted, held by the foregroundDeletion finalizer
    assert obj.get("kind") == "Job", obj
    assert obj["metadata"].get("deletionTimestamp"), obj["metadata"]
    assert "foregroundDeletion" in obj["metadata"].get("finalizers", []), obj["metadata"]

    def gone():
        try:
            batch.read_namespaced_job(name, "default")
            return False
        except ApiException as e:
            if e.status != 404:
                raise
        return not core.list_namespaced_pod("default", label_selector="job-name=" + name).items
    assert wait_until(gone, 30), core.list_namespaced_pod("default", label_selector="job-name=" + name)


@case("410: a watch from a resourceVersion compacted away (POST /sim/v1/faults {compact}) gets Expired")
def _gone():
    rv = core.list_namespaced_pod("default").metadata.resource_version
    # writes after rv, so the history holds something to compact
    core.patch_node("node-0001", {"metadata": {"labels": {"gone-test": "1"}}})
    code, body = sim.call("POST", "/sim/v1/faults", body={"compact": True})
    assert code == 200, (code, body)
    got = None
    w = watch.Watch()
    try:
        for ev in w.stream(core.list_node, resource_version=rv, timeout_seconds=10):
            if ev["type"] == "ERROR":
                got = ev["raw_object"]
                break
        else:
            got = "stream ended without an error"
    except ApiException as e:
        got = {"code": e.status, "reason": e.reason, "body": e.body}
    finally:
        w.stop()
    assert isinstance(got, dict) and got.get("code") == 410, got
    if "kind" in got:  # the raw ERROR event
        assert got["kind"] == "Status" and got["reason"] == "Expired", got
        assert "too old resource version" in got["message"], got
    else:  # the client turned it into ApiException(410, "Expired: too old resource version: ...")
        assert got["reason"].startswith("Expired: too old resource version"), got


@case("the kubesim-cert context (client certificate) lists namespaces")
def _cert():
    api = config.new_client_from_config(config_file=kc, context="kubesim-cert")
    names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
    assert "default" in names and "kube-system" in names, names


@case("an unauthenticated request gets 401 with a Status body")
def _unauth():
    try:
        urllib.request.urlopen(sim.server + "/api/v1/namespaces", context=sim.ssl, timeout=10)
        raise AssertionError("no error")
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
        assert e.code == 401 and body["kind"] == "Status" and body["code"] == 401, (e.code, body)


finish()
