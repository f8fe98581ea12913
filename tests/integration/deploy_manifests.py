#!/usr/bin/python3
"""deploy_manifests.py: checks deploy/ and the prewarm-true helper.

- prewarm-true (the release build): static, tiny, exits 0, and `install DEST` copies itself to DEST
  (mode 0755 whatever the umask) and the copy runs; errors exit 1.
- every YAML file in deploy/ parses; the kinds are there; kustomization.yaml lists every manifest;
  names, namespaces and references agree (bindings -> roles and the ServiceAccount, Service ->
  pod labels and port); the Deployment's pod passes the `restricted` Pod Security Standard, runs as
  65532 with a read-only root filesystem, probes /healthz and /readyz on 8080, has requests and
  limits, PREWARM_LISTEN 0.0.0.0:8080, PREWARM_NAMESPACE from the pod's namespace, and its store path
  on a volume.
- RBAC is least privilege, both ways: (1) the Kubernetes calls found in the source (src/, outside the
  generic client src/k8s and prewarm's own REST API) and (2) the calls a real task makes against
  kubesim (GET /sim/v1/stats before and after) must each be allowed by the rules, and every
  (verb, resource) the rules grant must be one of those calls.
- deploy/ha/ (docs/ha.md): parses and renders, matches the client's models; its Deployment is the base
  one with exactly the HA changes (3 replicas, anti-affinity, Redis URL from a Secret, leader
  election); the PDB, the Lease Role and its binding, Redis. Its Lease Role counts in the RBAC checks
  (the source scan covers src/ha/ and finds the Lease calls).
- `kubectl apply --dry-run=client -k deploy/` against kubesim.
One TAP line per case."""
import base64
import json
import os
import re
import signal
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kubesim_lib as kl  # noqa: E402
from kubesim_lib import case, tap, wait_until  # noqa: E402

ROOT = os.environ.get("PW_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("PW_BIN") or os.path.join(ROOT, "build", "asan", "bin")
BIN_RELEASE = os.environ.get("PW_BIN_RELEASE") or os.path.join(ROOT, "build", "release", "bin")
DEPLOY = os.path.join(ROOT, "deploy")
NAMESPACE = "prewarm"
SA = "prewarmd"

work = tempfile.mkdtemp(prefix="deploy-manifests.")
procs = []


def skip(name, why):
    kl.results.append(True)
    print("ok - %s # SKIP %s" % (name, why), flush=True)


def stop(p, timeout=15):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return -9
    return p.returncode


# ---- prewarm-true ----------------------------------------------------------------------------------

TRUE = os.path.join(BIN_RELEASE, "prewarm-true")


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, timeout=20, **kw)


@case("prewarm-true: static (no interpreter, no dynamic section), under 8 KiB, exits 0")
def _true_basic():
    data = open(TRUE, "rb").read()
    assert len(data) < 8192, len(data)
    assert data[:4] == b"\x7fELF", data[:4]
    hdr = run(["readelf", "-lW", TRUE]).stdout.decode()
    assert "INTERP" not in hdr and "DYNAMIC" not in hdr, hdr
    assert run([TRUE]).returncode == 0
    assert run([TRUE, "anything", "at", "all"]).returncode == 0
    assert run([TRUE], env={}).returncode == 0


@case("prewarm-true install DEST: copies itself (mode 0755 under umask 077) and the copy runs")
def _true_install():
    d = tempfile.mkdtemp(dir=work)
    dest = os.path.join(d, "true")
    r = run(["sh", "-c", 'umask 077 && exec "$0" install "$1"', TRUE, dest])
    assert r.returncode == 0, r
    assert r.stdout == b"" and r.stderr == b"", r
    assert open(dest, "rb").read() == open(TRUE, "rb").read()
    mode = stat.S_IMODE(os.stat(dest).st_mode)
    assert mode == 0o755, oct(mode)
    assert run([dest]).returncode == 0
    # the copy can install again, over an existing file (truncated, not appended)
    with open(os.path.join(d, "again"), "wb") as f:
        f.write(b"x" * 20000)
    assert run([dest, "install", os.path.join(d, "again")]).returncode == 0
    assert open(os.path.join(d, "again"), "rb").read() == open(TRUE, "rb").read()


@case("prewarm-true install: a bad destination or missing argument exits 1 with a message")
def _true_errors():
    r = run([TRUE, "install", os.path.join(work, "no", "such", "dir", "true")])
    assert r.returncode == 1, r
    assert b"cannot create" in r.stderr, r.stderr
    r = run([TRUE, "install"])
    assert r.returncode == 1 and b"usage" in r.stderr, r
    r = run([TRUE, "install", "a", "b"])
    assert r.returncode == 1, r


# ---- the manifests ---------------------------------------------------------------------------------

docs = {}  # file -> list of documents
objs = []  # every Kubernetes object, with its file


@case("every YAML file in deploy/ parses, each document has apiVersion, kind, metadata.name")
def _parse():
    files = sorted(f for f in os.listdir(DEPLOY) if f.endswith((".yaml", ".yml")))
    assert files, "no YAML in deploy/"
    for f in files:
        with open(os.path.join(DEPLOY, f)) as fh:
            ds = [d for d in yaml.safe_load_all(fh) if d is not None]
        assert ds, f
        docs[f] = ds
        for d in ds:
            assert isinstance(d, dict) and d.get("apiVersion") and d.get("kind"), (f, d)
            if d["kind"] != "Kustomization":
                assert d.get("metadata", {}).get("name"), (f, d)
                objs.append((f, d))


def find(kind, name=None):
    got = [d for _, d in objs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(got) == 1, "%s %s: %d objects" % (kind, name, len(got))
    return got[0]


@case("the kinds: Namespace, ServiceAccount, 2 ClusterRole(+Binding), Role(+Binding), Deployment, Service, "
      "2 users' ClusterRoles")
def _kinds():
    kinds = sorted(d["kind"] for _, d in objs)
    want = sorted(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ClusterRole",
                   "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "Service", "ClusterRole",
                   "ClusterRole"])
    assert kinds == want, kinds
    assert find("Namespace")["metadata"]["name"] == NAMESPACE
    labels = find("Namespace")["metadata"].get("labels", {})
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted", labels
    for _, d in objs:
        if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"].get("namespace") == NAMESPACE, d["metadata"]
        else:
            assert "namespace" not in d["metadata"], d["metadata"]


@case("kustomization.yaml lists every manifest file, and kubectl kustomize renders them all")
def _kustomization():
    k = docs["kustomization.yaml"][0]
    assert k["kind"] == "Kustomization"
    listed = sorted(k["resources"])
    files = sorted(f for f in docs if f != "kustomization.yaml")
    assert listed == files, (listed, files)
    r = run(["kubectl", "kustomize", DEPLOY])
    assert r.returncode == 0, r.stderr
    rendered = [d for d in yaml.safe_load_all(r.stdout) if d]
    assert sorted(d["kind"] for d in rendered) == sorted(d["kind"] for _, d in objs)


MODEL_OF = {"Namespace": "V1Namespace", "ServiceAccount": "V1ServiceAccount", "ClusterRole": "V1ClusterRole",
            "ClusterRoleBinding": "V1ClusterRoleBinding", "Role": "V1Role", "RoleBinding": "V1RoleBinding",
            "Deployment": "V1Deployment", "Service": "V1Service"}


def strict(data, typ, where):
    """Checks data against the official client's model of typ: every field known (a typo such as
    "readinessprobe" or a field at the wrong level fails) and of the declared shape."""
    import kubernetes.client as kc
    if typ.startswith("list["):
        assert isinstance(data, list), where
        for i, v in enumerate(data):
            strict(v, typ[5:-1], "%s[%d]" % (where, i))
    elif typ.startswith("dict("):
        assert isinstance(data, dict), where
        inner = typ[5:-1].split(", ", 1)[1]
        for k, v in data.items():
            strict(v, inner, "%s.%s" % (where, k))
    elif typ in ("str", "int", "bool", "float"):
        want = {"str": str, "int": int, "bool": bool, "float": (int, float)}[typ]
        assert isinstance(data, want) and not (typ == "int" and isinstance(data, bool)), (where, data, typ)
    elif typ in ("object", "datetime"):
        pass
    else:
        model = getattr(kc, typ)
        assert isinstance(data, dict), (where, data)
        fields = {v: k for k, v in model.attribute_map.items()}
        for k, v in data.items():
            assert k in fields, "%s: unknown field %r for %s" % (where, k, typ)
            strict(v, model.openapi_types[fields[k]], where + "." + k)


@case("every object matches the official Python client's models (no unknown field, required ones set)")
def _models():
    import kubernetes.client as kc
    api = kc.ApiClient()
    for f, d in objs:
        typ = MODEL_OF[d["kind"]]
        strict(d, typ, "%s:%s/%s" % (f, d["kind"], d["metadata"]["name"]))
        # the client's own deserialisation raises on a missing required field
        api._ApiClient__deserialize(d, typ)


@case("RBAC bindings reference the roles and the ServiceAccount that exist")
def _bindings():
    find("ServiceAccount", SA)
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        for _, b in [(f, d) for f, d in objs if d["kind"] == kind]:
            ref = b["roleRef"]
            assert ref["apiGroup"] == "rbac.authorization.k8s.io" and ref["kind"] == role_kind, ref
            find(role_kind, ref["name"])
            assert b["subjects"] == [{"kind": "ServiceAccount", "name": SA, "namespace": NAMESPACE}], b["subjects"]


RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def check_restricted(spec):
    """The `restricted` Pod Security Standard (baseline + restricted rules) on a pod spec."""
    for k in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(k), k
    psc = spec.get("securityContext", {})
    assert "sysctls" not in psc and "seLinuxOptions" not in psc, psc
    for v in spec.get("volumes", []):
        types = set(v) - {"name"}
        assert types <= RESTRICTED_VOLUMES, types
    containers = spec.get("initContainers", []) + spec["containers"]
    for c in containers:
        sc = c.get("securityContext", {})
        assert sc.get("allowPrivilegeEscalation") is False, (c["name"], "allowPrivilegeEscalation")
        assert not sc.get("privileged"), c["name"]
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], (c["name"], sc.get("capabilities"))
        assert set(sc.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}, c["name"]
        assert "procMount" not in sc and "seLinuxOptions" not in sc, c["name"]
        nonroot = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        assert nonroot is True, (c["name"], "runAsNonRoot")
        assert sc.get("runAsUser", psc.get("runAsUser", 1)) != 0, c["name"]
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        assert seccomp in ("RuntimeDefault", "Localhost"), (c["name"], seccomp)
        for p in c.get("ports", []):
            assert "hostPort" not in p, p


@case("Deployment: 1 replica, Recreate, the ServiceAccount, passes the restricted Pod Security Standard")
def _deployment_security():
    d = find("Deployment", "prewarmd")
    assert d["apiVersion"] == "apps/v1"
    assert d["spec"]["replicas"] == 1
    assert d["spec"]["strategy"]["type"] == "Recreate"
    tmpl = d["spec"]["template"]
    sel = d["spec"]["selector"]["matchLabels"]
    assert all(tmpl["metadata"]["labels"].get(k) == v for k, v in sel.items()), (sel, tmpl["metadata"])
    spec = tmpl["spec"]
    assert spec["serviceAccountName"] == SA
    check_restricted(spec)
    psc = spec["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532 and psc["runAsGroup"] == 65532, psc
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert len(spec["containers"]) == 1
    c = spec["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


@case("Deployment: probes /healthz and /readyz on 8080, requests and limits, env, store on a volume")
def _deployment_runtime():
    d = find("Deployment", "prewarmd")
    spec = d["spec"]["template"]["spec"]
    c = spec["containers"][0]
    ports = {p.get("name"): p["containerPort"] for p in c["ports"]}
    assert ports.get("http") == 8080, ports

    def port_of(probe):
        p = probe["httpGet"]["port"]
        return ports.get(p) if isinstance(p, str) else p

    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and port_of(c["livenessProbe"]) == 8080
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and port_of(c["readinessProbe"]) == 8080
    res = c["resources"]
    for k in ("cpu", "memory"):
        assert res["requests"][k] and res["limits"][k], res
    env = {e["name"]: e for e in c["env"]}
    assert env["PREWARM_LISTEN"]["value"] == "0.0.0.0:8080"
    assert env["PREWARM_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["PREWARM_HELPER_IMAGE"]["value"] == c["image"], "the helper image is prewarm's own image"
    store = env["PREWARM_STORE"]["value"]
    assert store.startswith("sqlite:"), store
    db_dir = os.path.dirname(store[len("sqlite:"):])
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert db_dir in mounts, (db_dir, mounts)
    vols = {v["name"] for v in spec["volumes"]}
    assert set(mounts.values()) <= vols, (mounts, vols)
    # every env var prewarmd is given is one of its flags' twins
    src = open(os.path.join(ROOT, "src", "cmd", "prewarmd.c")).read()
    for name in env:
        if name.startswith("PREWARM_"):
            assert '"%s"' % name in src, "prewarmd has no flag for " + name


@case("Service: ClusterIP 8080 to the Deployment's pods")
def _service():
    s = find("Service", "prewarmd")
    d = find("Deployment", "prewarmd")
    assert s["spec"].get("type", "ClusterIP") == "ClusterIP"
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert s["spec"]["selector"] and all(labels.get(k) == v for k, v in s["spec"]["selector"].items())
    (p,) = s["spec"]["ports"]
    assert p["port"] == 8080 and p["targetPort"] in ("http", 8080), p


@case("Dockerfile: two stages, non-root 65532, ENTRYPOINT prewarmd, /prewarm-true where the Job runs it")
def _dockerfile():
    text = open(os.path.join(ROOT, "Dockerfile")).read()
    lines = [ln.strip() for ln in re.sub(r"\\\n", " ", text).splitlines() if ln.strip() and not ln.startswith("#")]
    froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
    assert len(froms) == 2 and " AS " in froms[0].upper(), froms
    final = lines[lines.index(froms[1]):]
    users = [ln.split()[1] for ln in final if ln.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] == "65532", users
    entry = [ln for ln in final if ln.upper().startswith("ENTRYPOINT ")]
    assert entry and json.loads(entry[-1][len("ENTRYPOINT "):])[0].endswith("/prewarmd"), entry
    copies = [ln.split() for ln in final if ln.upper().startswith("COPY ")]
    dests = {c[-1]: c[-2] for c in copies}
    assert dests.get("/prewarm-true", "").endswith("/prewarm-true"), dests
    # the init container of every Job runs exactly that path
    js = open(os.path.join(ROOT, "src", "engine", "jobspec.c")).read()
    assert '"/prewarm-true", "install"' in js, "jobspec.c does not run /prewarm-true install"
    # a runtime library for every library prewarmd links (the Makefile's pkg-config list)
    mk = open(os.path.join(ROOT, "Makefile")).read()
    pkgs = re.search(r"^PKGS\s*:=\s*(.+)$", mk, re.M).group(1).split()
    runtime = {"libcurl": "libcurl4", "libmicrohttpd": "libmicrohttpd12", "gnutls": "libgnutls30",
               "jansson": "libjansson4", "yaml-0.1": "libyaml-0-2", "sqlite3": "libsqlite3-0", "openssl": "libssl3",
               "hiredis": "libhiredis0.14", "libprotobuf-c": "libprotobuf-c1"}
    final_text = " ".join(final)
    for p in pkgs:
        assert p in runtime, "no runtime package known for " + p
        assert re.search(r"\b%s\b" % re.escape(runtime[p]), final_text), "runtime stage lacks " + runtime[p]


JOB_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "engine/jobspec.h"
int main(void)
{
    const char *images[] = {"nginx:1.27", "gcr.io/distroless/static-debian12:nonroot"};
    const char *secrets[] = {"regcred"};
    struct pw_jobspec_params p = {.task_id = "t-01jd5x3k9m2q", .node_name = "node-7", .namespace_ = "prewarm",
        .images = images, .n_images = 2, .pull_policy = "IfNotPresent", .pull_secrets = secrets,
        .n_pull_secrets = 1, .backoff_limit = 3, .active_deadline_s = 600, .ttl_s = 3600,
        .helper_image = "ghcr.io/prewarm/prewarm:0.1.0", .tolerations = NULL};
    json_t *job = pw_jobspec_build(&p);
    char *s = json_dumps(job, JSON_INDENT(2));
    puts(s);
    free(s);
    json_decref(job);
    return 0;
}
"""


def job_manifest():
    libs = [os.path.join(ROOT, "build", "release", "lib", "libpw_%s.a" % m) for m in ("engine", "base")]
    if not all(os.path.exists(x) for x in libs):
        return None
    src, exe = os.path.join(work, "jobdrv.c"), os.path.join(work, "jobdrv")
    open(src, "w").write(JOB_DRIVER)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "jansson", "openssl"], capture_output=True,
                           text=True).stdout.split()
    r = run(["cc", "-std=c11", "-I" + os.path.join(ROOT, "src"), "-o", exe, src] + libs + flags)
    assert r.returncode == 0, r.stderr
    return json.loads(run([exe]).stdout)


@case("the Job of src/engine/jobspec.c matches the client's V1Job model and passes `restricted`")
def _job_model():
    job = job_manifest()
    assert job is not None, "build/release/lib/libpw_{engine,base}.a missing: run make first"
    import kubernetes.client as kc
    strict(job, "V1Job", "Job")
    kc.ApiClient()._ApiClient__deserialize(job, "V1Job")
    spec = job["spec"]["template"]["spec"]
    check_restricted(spec)
    assert spec["initContainers"][0]["command"][0] == "/prewarm-true"
    # the namespace's enforce label admits it: same rules as the Deployment's pod
    assert find("Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# ---- deploy/agent: the agent DaemonSet and what it needs ----------------------------------------------

AGENT_DEPLOY = os.path.join(DEPLOY, "agent")
AGENT_NS = "prewarm-agent"
agent_objs = []


@case("deploy/agent/ parses; its kustomization lists every manifest; the kinds are there")
def _agent_parse():
    files = sorted(f for f in os.listdir(AGENT_DEPLOY) if f.endswith((".yaml", ".yml")))
    kust = None
    for f in files:
        with open(os.path.join(AGENT_DEPLOY, f)) as fh:
            for d in yaml.safe_load_all(fh):
                if d is None:
                    continue
                assert d.get("apiVersion") and d.get("kind"), (f, d)
                if d["kind"] == "Kustomization":
                    kust = d
                else:
                    agent_objs.append((f, d))
    assert kust is not None
    assert sorted(kust["resources"]) == sorted(f for f in files if f != "kustomization.yaml"), kust
    kinds = sorted(d["kind"] for _, d in agent_objs)
    assert kinds == sorted(["Namespace", "ServiceAccount", "Role", "RoleBinding", "DaemonSet", "Service",
                            "ConfigMap"]), kinds


def agent_find(kind):
    got = [d for _, d in agent_objs if d["kind"] == kind]
    assert len(got) == 1, kind
    return got[0]


@case("the agent DaemonSet: tolerates every taint, only the CRI socket from the host, root only for it, "
      "ALL capabilities dropped, read-only root, RuntimeDefault seccomp, no service links, small requests")
def _agent_daemonset():
    ds = agent_find("DaemonSet")
    assert ds["metadata"]["namespace"] == AGENT_NS
    spec = ds["spec"]["template"]["spec"]
    assert {"operator": "Exists"} in spec["tolerations"], spec.get("tolerations")
    assert spec["enableServiceLinks"] is False and spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == agent_find("ServiceAccount")["metadata"]["name"]
    for k in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(k), k
    host = [v for v in spec["volumes"] if "hostPath" in v]
    assert len(host) == 1 and host[0]["hostPath"]["type"] == "Socket", host
    assert host[0]["hostPath"]["path"].endswith(".sock"), host
    proj = [v for v in spec["volumes"] if "projected" in v]
    tok = proj[0]["projected"]["sources"][0]["serviceAccountToken"]
    assert tok["audience"] == "prewarm" and tok["expirationSeconds"] <= 3600, tok
    (c,) = spec["containers"]
    sc = c["securityContext"]
    assert sc["runAsUser"] == 0 and sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], sc
    assert sc["seccompProfile"]["type"] == "RuntimeDefault" and not sc.get("privileged")
    req = c["resources"]["requests"]
    assert req["cpu"] in ("5m", "10m", "20m") and req["memory"] in ("16Mi", "32Mi", "64Mi"), req
    assert "memory" in c["resources"]["limits"]
    mounts = {m["name"] for m in c["volumeMounts"]}
    assert mounts == {v["name"] for v in spec["volumes"]}, mounts
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["PREWARM_SERVER"]["value"].startswith("https://"), env["PREWARM_SERVER"]
    ns = agent_find("Namespace")
    assert ns["metadata"]["name"] == AGENT_NS
    # hostPath is beyond `baseline`: the agents' namespace must be privileged, and only for them
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


@case("agent mode config: prewarmd's Deployment reads the optional ConfigMap and TLS Secret of deploy/agent")
def _agent_config():
    cm = agent_find("ConfigMap")
    dep = find("Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    refs = [e["configMapRef"] for e in c.get("envFrom", []) if "configMapRef" in e]
    assert refs == [{"name": cm["metadata"]["name"], "optional": True}], refs
    assert cm["metadata"]["namespace"] == NAMESPACE and cm["data"]["PREWARM_AGENTS"] == "true"
    assert cm["data"]["PREWARM_AGENT_NAMESPACE"] == AGENT_NS
    sec = [v for v in dep["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert sec and sec[0]["secret"]["optional"] is True
    mount = [m for m in c["volumeMounts"] if m["name"] == sec[0]["name"]][0]
    assert cm["data"]["PREWARM_TLS_CERT"].startswith(mount["mountPath"] + "/"), (cm["data"], mount)
    svc = agent_find("Service")
    port = svc["spec"]["ports"][0]["targetPort"]
    assert port in {p["name"] for p in c["ports"]}, port
    assert cm["data"]["PREWARM_AGENT_LISTEN"].endswith(":%d" % [p for p in c["ports"] if p["name"] == port][0]["containerPort"])


# ---- deploy/ha/ (docs/ha.md) ----------------------------------------------------------------------

HA_DEPLOY = os.path.join(DEPLOY, "ha")
ha_objs = []
MODEL_OF.update({"PodDisruptionBudget": "V1PodDisruptionBudget", "StatefulSet": "V1StatefulSet", "Secret": "V1Secret"})


def ha_find(kind):
    got = [d for _, d in ha_objs if d["kind"] == kind]
    assert len(got) == 1, kind
    return got[0]


@case("deploy/ha/ parses; its kustomization lists every manifest and renders; the kinds are there; every "
      "object matches the official client's models")
def _ha_parse():
    import kubernetes.client as kc
    files = sorted(f for f in os.listdir(HA_DEPLOY) if f.endswith((".yaml", ".yml")))
    kust = None
    for f in files:
        with open(os.path.join(HA_DEPLOY, f)) as fh:
            for d in yaml.safe_load_all(fh):
                if d is None:
                    continue
                assert d.get("apiVersion") and d.get("kind"), (f, d)
                if d["kind"] == "Kustomization":
                    kust = d
                else:
                    ha_objs.append((f, d))
    assert kust is not None
    assert sorted(kust["resources"]) == sorted(f for f in files if f != "kustomization.yaml"), kust
    r = run(["kubectl", "kustomize", HA_DEPLOY])
    assert r.returncode == 0, r.stderr
    kinds = sorted(d["kind"] for _, d in ha_objs)
    assert kinds == sorted(["Deployment", "Role", "RoleBinding", "PodDisruptionBudget", "Secret", "Service",
                            "StatefulSet"]), kinds
    api = kc.ApiClient()
    for f, d in ha_objs:
        assert d["metadata"].get("namespace") == NAMESPACE, d["metadata"]
        strict(d, MODEL_OF[d["kind"]], "ha/%s:%s/%s" % (f, d["kind"], d["metadata"]["name"]))
        api._ApiClient__deserialize(d, MODEL_OF[d["kind"]])


@case("deploy/ha/deployment.yaml is deploy/deployment.yaml with exactly the HA changes: 3 replicas, "
      "rolling one at a time, anti-affinity across nodes, the Redis URL from a Secret, leader election "
      "with the pod name as identity")
def _ha_deployment():
    import copy
    base, ha = copy.deepcopy(find("Deployment")), copy.deepcopy(ha_find("Deployment"))
    assert ha["spec"]["replicas"] == 3
    assert ha["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    pod = ha["spec"]["template"]["spec"]
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == ha["spec"]["selector"]["matchLabels"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["PREWARM_STORE"] == {"name": "PREWARM_STORE",
                                    "valueFrom": {"secretKeyRef": {"name": "prewarm-redis", "key": "url"}}}
    assert env["PREWARM_LEADER_ELECT"]["value"] == "true"
    assert env["PREWARM_LEADER_ELECT_IDENTITY"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    check_restricted(pod)
    # undo the HA changes: what is left must be the base Deployment, field for field
    ha["spec"]["replicas"], ha["spec"]["strategy"] = base["spec"]["replicas"], base["spec"]["strategy"]
    del pod["affinity"]
    c = pod["containers"][0]
    c["env"] = [e for e in c["env"] if not e["name"].startswith("PREWARM_LEADER_ELECT")]
    store = next(e for e in c["env"] if e["name"] == "PREWARM_STORE")
    store.clear()
    store.update(next(e for e in base["spec"]["template"]["spec"]["containers"][0]["env"]
                      if e["name"] == "PREWARM_STORE"))
    assert ha == base, "deploy/ha/deployment.yaml drifted from deploy/deployment.yaml beyond the HA changes"


@case("deploy/ha/: the PDB keeps two of three replicas, the Lease Role is bound to prewarmd's ServiceAccount, "
      "the Redis Secret is the one the Deployment reads, Redis runs restricted with appendonly")
def _ha_rest():
    pdb, dep = ha_find("PodDisruptionBudget"), ha_find("Deployment")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": dep["spec"]["selector"]["matchLabels"]}}
    role, rb = ha_find("Role"), ha_find("RoleBinding")
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "create", "update"]}], role["rules"]
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": SA, "namespace": NAMESPACE}]
    sec = ha_find("Secret")
    assert sec["metadata"]["name"] == "prewarm-redis" and sec["stringData"]["url"].startswith("redis://")
    sts, svc = ha_find("StatefulSet"), ha_find("Service")
    assert svc["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
    assert sts["spec"]["selector"]["matchLabels"] != dep["spec"]["selector"]["matchLabels"]
    assert svc["metadata"]["name"] in sec["stringData"]["url"]
    check_restricted(sts["spec"]["template"]["spec"])
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes", args


# ---- RBAC against the calls --------------------------------------------------------------------------

GROUP_OF = {"nodes": "", "pods": "", "jobs": "batch", "events": "", "secrets": "", "leases": "coordination.k8s.io",
            "tokenreviews": "authentication.k8s.io", "subjectaccessreviews": "authorization.k8s.io"}


def granted(with_ha=True):
    """{(verb, group, resource, scope)}: scope "cluster" (ClusterRole) or the Role's namespace; deploy/,
    deploy/agent/ (prewarmd's rights in the agents' namespace are there) and, with_ha, deploy/ha/ (the
    Lease) together."""
    out = set()
    for _, d in objs + agent_objs + (ha_objs if with_ha else []):
        if d["kind"] not in ("ClusterRole", "Role"):
            continue
        scope = "cluster" if d["kind"] == "ClusterRole" else d["metadata"]["namespace"]
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "api-users":
            continue  # deploy/rbac-users.yaml: what users may do with prewarm's own API, not prewarmd's rights
        for rule in d.get("rules", []):
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
            assert "*" not in rule.get("apiGroups", []), rule
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    for v in rule["verbs"]:
                        out.add((v, g, r, scope))
    return out


def allowed(grants, verb, resource, namespaced):
    g = GROUP_OF.get(resource.split("/")[0], "?")
    if (verb, g, resource, "cluster") in grants:
        return True
    return namespaced and ((verb, g, resource, NAMESPACE) in grants or (verb, g, resource, AGENT_NS) in grants)


# Kubernetes API paths in C string literals: "/api/v1/..." or "/apis/<group>/<version>/...".
K8S_PATH = re.compile(r'"(/api/v1|/apis/[a-z0-9.-]+/v[0-9a-z]+)(/[^"]*)"')
REQUEST = re.compile(r'pw_k8s_request\(\s*[^,]+,\s*"([A-Z]+)"\s*,\s*(?:[A-Za-z_]\w*->)?([A-Za-z_][A-Za-z0-9_]*|"[^"]*")')
ASSIGN = r'\b%s\s*=\s*pw_xasprintf\(\s*"([^"]+)"'
SKIP_DIRS = ("src/k8s/", "src/api/", "src/cli/")  # the generic client; prewarm's own REST API


def parse_path(prefix, rest):
    """-> (resource, named, namespaced) for a path like /apis/batch/v1/namespaces/%s/jobs/%s?x."""
    segs = [s for s in rest.split("?")[0].split("/") if s]
    namespaced = len(segs) >= 2 and segs[0] == "namespaces"
    if namespaced:
        segs = segs[2:]
    if not segs:
        return None
    res = segs[0]
    named = len(segs) >= 2
    if len(segs) >= 3:
        res += "/" + segs[2]
    return res, named, namespaced


VERB = {("GET", True): "get", ("GET", False): "list", ("POST", False): "create", ("PUT", True): "update",
        ("PATCH", True): "patch", ("DELETE", True): "delete", ("DELETE", False): "deletecollection"}


def static_calls():
    """{(verb, resource, namespaced)} from the source: each pw_k8s_request with its method and the path
    literal it is given (directly or through a pw_xasprintf'd variable earlier in the same function),
    and every other Kubernetes collection path, which goes to an informer (list + watch)."""
    calls, unresolved = set(), []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "src")):
        for f in files:
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, ROOT)
            if not f.endswith(".c") or rel.startswith(SKIP_DIRS):
                continue
            text = open(path).read()
            literals = [(m.start(), m.group(1), m.group(2)) for m in K8S_PATH.finditer(text)
                        if not m.group(2).startswith("/tasks")]
            if not literals:
                continue
            used = set()
            for m in REQUEST.finditer(text):
                method, arg = m.group(1), m.group(2)
                if arg.startswith('"'):
                    lit = K8S_PATH.match(arg)
                    pos = m.start(2)
                else:
                    # the last assignment of the variable before the call
                    cands = [a for a in re.finditer(ASSIGN % re.escape(arg), text[:m.start()])]
                    lit = K8S_PATH.match('"' + cands[-1].group(1) + '"') if cands else None
                    pos = cands[-1].start(1) - 1 if cands else None
                if lit is None:
                    unresolved.append("%s:%d" % (rel, text[:m.start()].count("\n") + 1))
                    continue
                used.add(pos)
                parsed = parse_path(lit.group(1), lit.group(2))
                verb = VERB.get((method, parsed[1])) if parsed else None
                if verb is None:
                    unresolved.append("%s:%d" % (rel, text[:m.start()].count("\n") + 1))
                    continue
                calls.add((verb, parsed[0], parsed[2]))
            has_informer = "pw_k8s_informer_start" in text
            for pos, prefix, rest in literals:
                if pos in used:
                    continue
                parsed = parse_path(prefix, rest)
                if parsed is None or parsed[1]:
                    unresolved.append("%s:%d literal %s%s" % (rel, text[:pos].count("\n") + 1, prefix, rest))
                    continue
                if not has_informer:
                    unresolved.append("%s:%d collection path without an informer" % (rel, text[:pos].count("\n") + 1))
                    continue
                calls.add(("list", parsed[0], parsed[2]))
                calls.add(("watch", parsed[0], parsed[2]))
    return calls, unresolved


state = {}


@case("RBAC: no wildcards, and every Kubernetes call in the source is allowed by the rules")
def _rbac_static():
    grants = granted()
    calls, unresolved = static_calls()
    assert not unresolved, "calls the test cannot read: %s" % unresolved
    assert calls, "no Kubernetes calls found in src/"
    missing = sorted(c for c in calls if not allowed(grants, c[0], c[1], c[2]))
    assert not missing, "not allowed by deploy/rbac.yaml: %s (calls: %s)" % (missing, sorted(calls))
    state["static"] = calls
    print("# calls in the source: %s" % ", ".join("%s %s" % (v, r) for v, r, _ in sorted(calls)), flush=True)


@case("RBAC: least privilege: every granted (verb, resource) is a call the source makes")
def _rbac_least():
    calls = state["static"]
    used = {(v, r) for v, r, _ in calls}
    extra = sorted((v, r, s) for v, _, r, s in granted() if (v, r) not in used)
    assert not extra, "granted but never called: %s" % extra
    # cluster-wide grants only for cluster-scoped resources, or for a namespaced one the source reads
    # across namespaces (prediction's pod informer on /api/v1/pods)
    for v, g, r, s in granted():
        if s == "cluster":
            assert not any(c[1] == r and c[2] for c in calls) or (v, r, False) in calls, \
                "namespaced %s granted cluster-wide" % r


# ---- against kubesim ---------------------------------------------------------------------------------

def kube_call(kcfg, method, path, body=None):
    """One call to kubesim as its admin: (status, body)."""
    cluster = kcfg["clusters"][0]["cluster"]
    ctx_name = kcfg["current-context"]
    ctx = [c for c in kcfg["contexts"] if c["name"] == ctx_name][0]["context"]
    user = [u for u in kcfg["users"] if u["name"] == ctx["user"]][0]["user"]
    sslctx = None
    if cluster["server"].startswith("https"):
        sslctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    req = urllib.request.Request(cluster["server"] + path, data=None if body is None else json.dumps(body).encode(),
                                 method=method,
                                 headers={"Authorization": "Bearer " + user["token"],
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=sslctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def kube_http(kcfg, path):
    code, body = kube_call(kcfg, "GET", path)
    if code != 200:
        raise urllib.error.HTTPError(path, code, str(body), None, None)
    return body


def stats(kcfg):
    return {(r["verb"], r["resource"]): r["count"] for r in kube_http(kcfg, "/sim/v1/stats")["requests"]}


USER_TOKEN = None  # the caller's bearer token (the run authenticates and authorizes through the cluster)


def api(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if USER_TOKEN:
        headers["Authorization"] = "Bearer " + USER_TOKEN
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method,
                                 headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def agent_setup(kcfg):
    """The agents' ServiceAccount and a pod of it on node-0001, a token bound to the pod (audience
    prewarm), and a dockerconfigjson Secret: made by the test, before prewarmd's calls are counted."""
    def kube(method, path, body):
        return kube_call(kcfg, method, path, body)
    kube("POST", "/api/v1/namespaces/%s/serviceaccounts" % AGENT_NS,
         {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prewarm-agent"}})
    kube("POST", "/api/v1/namespaces/%s/pods" % AGENT_NS, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "prewarm-agent-x"},
        "spec": {"nodeName": "node-0001", "serviceAccountName": "prewarm-agent",
                 "containers": [{"name": "agent", "image": "ghcr.io/prewarm/prewarm:0.1.0"}]}})
    cfg = base64.b64encode(json.dumps({"auths": {"docker.io": {"username": "u", "password": "p"}}}).encode()).decode()
    kube("POST", "/api/v1/namespaces/%s/secrets" % NAMESPACE, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": cfg}})
    code, tr = kube("POST", "/api/v1/namespaces/%s/serviceaccounts/prewarm-agent/token" % AGENT_NS, {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": ["prewarm"], "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                                                              "name": "prewarm-agent-x"}}})
    assert code == 201, (code, tr)
    return tr["status"]["token"]


def agent_sync(port, token, body):
    req = urllib.request.Request("http://127.0.0.1:%d/agent/v1/sync" % port, data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json",
                                                         "Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def dynamic():
    sim_bin, pwd_bin = os.path.join(BIN, "kubesim"), os.path.join(BIN, "prewarmd")
    name_run = "RBAC: a real task against kubesim makes only calls the rules allow"
    if not (os.access(sim_bin, os.X_OK) and os.access(pwd_bin, os.X_OK)):
        skip(name_run, "no kubesim or prewarmd in %s" % BIN)
        return None
    kc = os.path.join(work, "kubeconfig")
    simlog = open(os.path.join(work, "kubesim.log"), "w")
    # --no-token-node-info: tokens as before Kubernetes 1.30, so prewarmd must read the agent's pod
    sim = subprocess.Popen([sim_bin, "--nodes", "3", "--listen", "127.0.0.1:0", "--kubeconfig-out", kc,
                            "--seed", "5", "--time-scale", "10", "--namespaces", "prewarm," + AGENT_NS,
                            "--no-token-node-info"], stdout=simlog, stderr=subprocess.STDOUT)
    procs.append(sim)
    if not wait_until(lambda: os.path.exists(kc) or sim.poll() is not None, 30, 0.1) or sim.poll() is not None:
        tap(False, name_run, "kubesim did not start: " + open(os.path.join(work, "kubesim.log")).read()[-2000:])
        return None
    time.sleep(0.2)  # the kubeconfig is written whole before the server answers; be safe
    kcfg = yaml.safe_load(open(kc))
    agent_token = agent_setup(kcfg)  # the test's own calls, before the count starts
    # a startup taint on node-0003 that a policy with untaintWhenDone removes (get + patch of a Node)
    code, _ = kube_call(kcfg, "PATCH", "/sim/v1/nodes/node-0003",
                        {"taints": [{"key": "prewarm.io/warming", "value": "true", "effect": "NoSchedule"}]})
    assert code == 200, code
    before = stats(kcfg)
    pwlog = open(os.path.join(work, "prewarmd.log"), "w")
    # users authenticated and authorized through the cluster (TokenReview + SubjectAccessReview), as
    # deploy/deployment.yaml runs it: the test calls the API with the kubeconfig's admin token
    global USER_TOKEN
    USER_TOKEN = kcfg["users"][0]["user"].get("token")
    pwd = subprocess.Popen([pwd_bin, "--listen", "127.0.0.1:0", "--kubeconfig", kc, "--namespace", NAMESPACE,
                            "--store", "memory:", "--job-ttl", "60s", "--agents", "--agent-namespace", AGENT_NS,
                            "--auth", "kubernetes", "--authz", "kubernetes"],
                           stdout=subprocess.PIPE, stderr=pwlog, text=True)
    procs.append(pwd)
    line = pwd.stdout.readline()  # "listening on 127.0.0.1:PORT"
    m = re.search(r":(\d+)\s*$", line or "")
    if not m:
        tap(False, name_run, "prewarmd did not start: %r\n%s" % (line, open(os.path.join(work, "prewarmd.log")).read()[-2000:]))
        return kcfg
    port = int(m.group(1))
    diag = []
    t0 = time.monotonic()
    try:
        assert wait_until(lambda: _ready(port), 30, 0.2), "prewarmd's /readyz did not answer 200 in 30 s"
        diag.append("ready after %.1f s" % (time.monotonic() - t0))
        code, task = api(port, "POST", "/api/v1/tasks", {"images": ["busybox:1.36"], "pullPolicy": "Always"})
        assert code == 201, (code, task)
        done = wait_until(lambda: api(port, "GET", "/api/v1/tasks/" + task["id"])[1]["status"]
                          in ("succeeded", "failed", "cancelled"), 90, 0.5)
        final = api(port, "GET", "/api/v1/tasks/" + task["id"])[1]
        diag.append("task: %s" % json.dumps(final)[:600])
        assert done, "the task did not finish in 90 s"
        state["task"] = final
        diag.append("task finished after %.1f s" % (time.monotonic() - t0))
        # a policy that removes node-0003's startup taint once its image is in
        code, pol = api(port, "POST", "/api/v1/policies", {"name": "startup", "images": ["busybox:1.36"],
                                                           "nodeSelector": {"kubernetes.io/hostname": "node-0003"},
                                                           "untaintWhenDone": "prewarm.io/warming"})
        assert code == 201, (code, pol)
        assert wait_until(lambda: api(port, "GET", "/api/v1/policies/startup")[1]["status"]["untaintedNodes"] == 1,
                          30, 0.3), api(port, "GET", "/api/v1/policies/startup")[1]
        # agent mode: a sync with the agent's pod-bound token (a TokenReview, then a get of its pod), and a
        # task with an imagePullSecret for that agent (a get of the Secret), cancelled
        sync = {"node": "node-0001", "inventory": {"full": True, "images": []}, "wait": False}
        code, ans = agent_sync(port, agent_token, sync)
        assert code == 200, (code, ans)
        code, t3 = api(port, "POST", "/api/v1/tasks", {"images": ["busybox:1.36"], "mode": "agent", "pullPolicy":
                                                       "Always", "nodeNames": ["node-0001"],
                                                       "imagePullSecrets": ["regcred"]})
        assert code == 201, (code, t3)
        # the plain-HTTP listener never carries credentials: the image whose registry the secret names fails
        assert wait_until(lambda: api(port, "GET", "/api/v1/tasks/" + t3["id"])[1]["status"] == "failed", 20, 0.3)
        n3 = api(port, "GET", "/api/v1/tasks/%s/nodes" % t3["id"])[1]["items"][0]
        assert n3["mode"] == "agent" and n3["images"][0]["reason"] == "CredentialsRequireTLS", n3
        # a second task, cancelled if still running: the cancel path's Job deletions must be allowed too
        code, t2 = api(port, "POST", "/api/v1/tasks", {"images": ["busybox:1.36.1"], "pullPolicy": "Always"})
        time.sleep(1.0)
        try:
            api(port, "DELETE", "/api/v1/tasks/" + t2["id"])
        except urllib.error.HTTPError as e:  # 409 when it finished first
            diag.append("cancel: HTTP %d" % e.code)
        time.sleep(1.0)
    except Exception:  # noqa: BLE001
        tap(False, name_run, traceback.format_exc() + "\n".join(diag) + "\n" +
            open(os.path.join(work, "prewarmd.log")).read()[-2000:])
        return kcfg
    t1 = time.monotonic()
    stop(pwd)
    diag.append("prewarmd stopped in %.1f s" % (time.monotonic() - t1))
    print("# run: " + "; ".join(d for d in diag if not d.startswith("task:")), flush=True)
    after = stats(kcfg)
    used = {}
    for k, n in after.items():
        if n - before.get(k, 0) > 0:
            used[k] = n - before.get(k, 0)
    # /sim/v1/stats itself is not a Kubernetes resource call
    used = {k: n for k, n in used.items() if k[1] and not k[1].startswith("sim")}
    grants = granted(with_ha=False)  # one replica, no leader election (prewarmd_ha.py runs the Lease calls)
    namespaced = {"nodes": False}
    bad = sorted(k for k in used if not allowed(grants, k[0], k[1], namespaced.get(k[1], True)))
    tap(not bad and bool(used), name_run,
        "not allowed: %s\nused: %s\n%s" % (bad, used, "\n".join(diag)))
    unused = sorted((v, r) for v, _, r, _ in grants if (v, r) not in used)
    tap(not unused, "RBAC: least privilege: the run used every (verb, resource) the rules grant",
        "granted, not used in the run: %s" % unused)
    print("# calls made by prewarmd in the run: %s" % json.dumps({"%s %s" % k: n for k, n in sorted(used.items())}),
          flush=True)
    state["dynamic"] = used
    final = state.get("task", {})
    tap(final.get("status") == "succeeded" and after_codes(kcfg).get(("create", "jobs", 201), 0) >= 3,
        "the Job of jobspec.c is accepted by kubesim (201) and the task pulls busybox:1.36 on 3 nodes",
        json.dumps(final)[:1500] + "\n" + json.dumps(sorted(after_codes(kcfg).items()), default=str))
    return kcfg


def after_codes(kcfg):
    return {(r["verb"], r["resource"], r["code"]): r["count"] for r in kube_http(kcfg, "/sim/v1/stats")["requests"]}


def _ready(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % port, timeout=5) as resp:
            return resp.status == 200
    except (OSError, urllib.error.HTTPError):  # 503 until the informers have synced, or not up yet
        return False


def dry_run(kcfg):
    """Client-side dry run: kubectl maps each kind through the server's discovery and validates the
    objects. Kinds the server does not serve (kubesim serves what prewarm needs, not RBAC or apps/v1)
    are reported as skipped, by name; every served kind must be accepted."""
    name = "kubectl apply --dry-run=client -k deploy/ against kubesim"
    if kcfg is None:
        skip(name, "kubesim did not run")
        return
    kc = os.path.join(work, "kubeconfig")
    r = run(["kubectl", "--kubeconfig", kc, "apply", "--dry-run=client", "-k", DEPLOY])
    out = r.stdout.decode() + r.stderr.decode()
    unserved = sorted(set(re.findall(r'no matches for kind "(\w+)"', out)))
    other_errors = [ln for ln in r.stderr.decode().splitlines()
                    if ln.strip() and "no matches for kind" not in ln and "ensure CRDs" not in ln]
    served = [d for _, d in objs if d["kind"] not in unserved]
    # kubectl names an object kind/name, or kind.group/name for a kind of a named group
    accepted = all(re.search(r"(^|\s)%s(\.[a-z0-9.-]+)?/%s\s" % (re.escape(d["kind"].lower()),
                                                                  re.escape(d["metadata"]["name"])), out.lower(), re.M)
                   for d in served)
    tap(accepted and not other_errors and bool(served),
        name + " (the kinds kubesim serves: %s)" % ", ".join(sorted({d["kind"] for d in served})), out)
    if unserved:
        skip(name + ": " + ", ".join(unserved), "kubesim does not serve these kinds")


try:
    kcfg = dynamic()
    if "dynamic" in state and "static" in state:
        static = {(v, r) for v, r, _ in state["static"]}
        missed = sorted(k for k in state["dynamic"] if k not in static)
        tap(not missed, "RBAC: every call of the run is one the source scan found", "missed: %s" % missed)
    dry_run(kcfg)
finally:
    for p in procs:
        stop(p)
    subprocess.run(["rm", "-rf", work])
kl.finish()
