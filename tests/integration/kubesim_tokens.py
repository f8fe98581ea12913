#!/usr/bin/python3
"""kubesim_tokens.py: ServiceAccount tokens against kubesim with real clients, checked against what
kube-apiserver answers: `kubectl create token` (unbound, bound to a Pod, Secret and Node, the errors it
prints), the official Python client's create_namespaced_service_account_token and create_token_review
(the user, groups, uid and extras of a pod-bound token; audiences intersected; wrong audiences; a
deleted or recreated bound pod, secret or ServiceAccount; expiry with the minute of leeway through the
/sim/v1/tokens age hook), the Status of every refused TokenRequest (404, 422, 400, 409, 405), requests to
kubesim itself bearing a token (200 for the API server's audience, 401 for another, for an expired one
or once the bound pod is gone), discovery and stats rows. One TAP line per case."""
import datetime
import json
import os
import sys
import tempfile
import uuid

from kubernetes import client, config
from kubernetes.client.rest import ApiException

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kubesim_lib as kl  # noqa: E402
from kubesim_lib import case, tap, wait_until  # noqa: E402

API_AUD = "https://kubernetes.default.svc.cluster.local"
NS = "prewarm"
SA = "robot"

sim = kl.start(["--nodes", "2", "--seed", "5", "--time-scale", "4"], "kubesim-tokens.")
config.load_kube_config(config_file=sim.kubeconfig)
core = client.CoreV1Api()
authn = client.AuthenticationV1Api()
ADMIN = sim.admin


def raw(method, path, token, body=None):
    """One request to kubesim with a bearer token: (HTTP status, parsed JSON body or None)."""
    return sim.call(method, path, token, body)


def request_token(name=SA, ns=NS, audiences=None, seconds=None, ref=None):
    """TokenRequest through the Python client; ref is a dict of BoundObjectReference fields."""
    spec = client.V1TokenRequestSpec(audiences=audiences or [], expiration_seconds=seconds,
                                     bound_object_ref=client.V1BoundObjectReference(**ref) if ref else None)
    return core.create_namespaced_service_account_token(name, ns, client.AuthenticationV1TokenRequest(spec=spec))


def review(token, audiences=None):
    spec = client.V1TokenReviewSpec(token=token, audiences=audiences)
    return authn.create_token_review(client.V1TokenReview(spec=spec)).status


def status_of(fn):
    """Calls fn, which must fail with ApiException: (HTTP status, the Status body)."""
    try:
        fn()
    except ApiException as e:
        return e.status, json.loads(e.body)
    raise AssertionError("the call did not fail")


def make_pod(name, sa=SA, node="node-0001"):
    # a pod on no node: of a scheduler that does not run, so kubesim's scheduler leaves it unbound
    spec = client.V1PodSpec(service_account_name=sa, node_name=node, scheduler_name=None if node else "none",
                            containers=[client.V1Container(name="c", image="busybox:1.36", command=["sleep", "1d"])])
    return core.create_namespaced_pod(NS, client.V1Pod(metadata=client.V1ObjectMeta(name=name), spec=spec))


def delete_pod_and_wait(name):
    core.delete_namespaced_pod(name, NS, grace_period_seconds=0)

    def gone():
        try:
            core.read_namespaced_pod(name, NS)
            return False
        except ApiException as e:
            return e.status == 404
    assert wait_until(gone, 20), "pod %s still there" % name


state = {}


@case("setup: a ServiceAccount, two pods running as it (one on node-0001, one on no node), a Secret")
def _setup():
    state["sa"] = core.create_namespaced_service_account(NS, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name=SA)))
    state["p1"] = make_pod("p1")
    state["p2"] = make_pod("p2", node=None)
    state["other"] = make_pod("other-sa", sa="default")
    state["secret"] = core.create_namespaced_secret(NS, client.V1Secret(metadata=client.V1ObjectMeta(name="s1"),
                                                                         string_data={"k": "v"}))
    state["node"] = core.read_node("node-0001")


# ---- kubectl ----

# kubectl on PATH, and the newest and oldest beside it: 1.33 sends its typed requests as protobuf
kubectls = [kb for kb in (kl.KUBECTL, kl.kubectl_beside("kubectl.1.33"), kl.kubectl_beside("kubectl.1.27")) if kb]


def kubectl(kb, *args):
    return sim.kubectl(*args, kb=kb, cache=tempfile.mkdtemp(dir=sim.dir, prefix="kcache."))


def ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ")


if not kubectls:
    tap(False, "kubectl is installed (PATH or beside it)")
for kb in kubectls:
    v = os.path.basename(kb) + ("" if kb != kl.KUBECTL else " (PATH)")

    @case("%s create token %s -n %s: a token for the API server's audience, 3600 s, unbound" % (v, SA, NS))
    def _kubectl_plain():
        p = kubectl(kb, "create", "token", SA, "-n", NS)
        assert p.returncode == 0 and p.stdout.startswith("kubesim-sa-"), (p.returncode, p.stdout, p.stderr)
        st = review(p.stdout.strip())
        assert st.authenticated and st.audiences == [API_AUD], st
        p = kubectl(kb, "create", "token", SA, "-n", NS, "-o", "json")
        o = json.loads(p.stdout)
        assert o["kind"] == "TokenRequest" and o["apiVersion"] == "authentication.k8s.io/v1", o
        assert o["spec"] == {"audiences": [API_AUD], "expirationSeconds": 3600, "boundObjectRef": None}, o["spec"]
        assert o["metadata"]["name"] == SA and o["metadata"]["namespace"] == NS, o["metadata"]
        assert o["metadata"]["uid"] == state["sa"].metadata.uid, o["metadata"]
        d = ts(o["status"]["expirationTimestamp"]) - ts(o["metadata"]["creationTimestamp"])
        assert d.total_seconds() == 3600, d
        state["default_token"] = o["status"]["token"]

    @case("%s create token --audience prewarm --bound-object-kind Pod --bound-object-name p1 --duration 1h" % v)
    def _kubectl_pod():
        args = ["create", "token", SA, "-n", NS, "--audience", "prewarm", "--bound-object-kind", "Pod",
                "--bound-object-name", "p1", "--duration", "1h"]
        p = kubectl(kb, *args)
        assert p.returncode == 0 and p.stdout.startswith("kubesim-sa-"), (p.returncode, p.stdout, p.stderr)
        st = review(p.stdout.strip(), ["prewarm"])
        assert st.authenticated and st.user.extra["authentication.kubernetes.io/pod-uid"] == [state["p1"].metadata.uid]
        p = kubectl(kb, *(args + ["-o", "json"]))
        assert p.returncode == 0, p.stderr
        o = json.loads(p.stdout)
        assert o["spec"]["audiences"] == ["prewarm"] and o["spec"]["expirationSeconds"] == 3600, o["spec"]
        assert o["spec"]["boundObjectRef"] == {"kind": "Pod", "apiVersion": "v1", "name": "p1"}, o["spec"]
        st = review(o["status"]["token"], ["prewarm"])
        assert st.authenticated and st.user.extra["authentication.kubernetes.io/pod-name"] == ["p1"], st
        state["kubectl_pod_token"] = o["status"]["token"]

    @case("%s create token: a missing ServiceAccount and a 1m duration fail with the server's message" % v)
    def _kubectl_errors():
        p = kubectl(kb, "create", "token", "nobody", "-n", NS)
        assert p.returncode != 0 and 'serviceaccounts "nobody" not found' in p.stderr, p.stderr
        p = kubectl(kb, "create", "token", SA, "-n", NS, "--duration", "1m")
        want = ('TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 60: '
                'may not specify a duration less than 10 minutes')
        assert p.returncode != 0 and want in p.stderr, p.stderr


@case("kubectl create token --bound-object-kind Secret and Node: bound tokens that review with the right extras")
def _kubectl_secret_node():
    kb = kubectls[0]  # PATH's
    p = kubectl(kb, "create", "token", SA, "-n", NS, "--bound-object-kind", "Secret", "--bound-object-name", "s1")
    assert p.returncode == 0, p.stderr
    st = review(p.stdout.strip())
    assert st.authenticated, st
    assert sorted(st.user.extra) == ["authentication.kubernetes.io/credential-id"], st.user.extra
    state["secret_token"] = p.stdout.strip()
    p = kubectl(kb, "create", "token", SA, "-n", NS, "--bound-object-kind", "Node", "--bound-object-name", "node-0002")
    if p.returncode != 0 and "supported" in p.stderr.lower():
        return  # an old kubectl without Node binding
    assert p.returncode == 0, p.stderr
    st = review(p.stdout.strip())
    node = core.read_node("node-0002")
    assert st.authenticated, st
    assert st.user.extra.get("authentication.kubernetes.io/node-name") == ["node-0002"], st.user.extra
    assert st.user.extra.get("authentication.kubernetes.io/node-uid") == [node.metadata.uid], st.user.extra
    assert "authentication.kubernetes.io/pod-name" not in st.user.extra, st.user.extra


# ---- the Python client ----

@case("create_namespaced_service_account_token: bound to p1 by name and uid, audience prewarm, 600 s")
def _py_request():
    p1 = state["p1"]
    tr = request_token(audiences=["prewarm"], seconds=600,
                       ref={"kind": "Pod", "api_version": "v1", "name": "p1", "uid": p1.metadata.uid})
    assert tr.status.token.startswith("kubesim-sa-") and len(tr.status.token) == len("kubesim-sa-") + 48, tr.status
    assert tr.spec.audiences == ["prewarm"] and tr.spec.expiration_seconds == 600, tr.spec
    assert tr.spec.bound_object_ref.name == "p1" and tr.spec.bound_object_ref.uid == p1.metadata.uid, tr.spec
    assert tr.metadata.name == SA and tr.metadata.namespace == NS, tr.metadata
    d = tr.status.expiration_timestamp - tr.metadata.creation_timestamp
    assert d.total_seconds() == 600, d
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((tr.status.expiration_timestamp - now).total_seconds() - 600) < 30, (tr.status, now)
    state["pod_token"] = tr.status.token


@case("create_token_review of the pod-bound token: user, uid, groups, pod/node/credential extras, audiences")
def _py_review():
    st = review(state["pod_token"], ["prewarm"])
    assert st.authenticated is True and not st.error, st
    assert st.audiences == ["prewarm"], st.audiences
    u = st.user
    assert u.username == "system:serviceaccount:%s:%s" % (NS, SA), u
    assert u.uid == state["sa"].metadata.uid, u
    assert u.groups == ["system:serviceaccounts", "system:serviceaccounts:" + NS, "system:authenticated"], u.groups
    ex = u.extra
    assert ex["authentication.kubernetes.io/pod-name"] == ["p1"], ex
    assert ex["authentication.kubernetes.io/pod-uid"] == [state["p1"].metadata.uid], ex
    assert ex["authentication.kubernetes.io/node-name"] == ["node-0001"], ex
    assert ex["authentication.kubernetes.io/node-uid"] == [state["node"].metadata.uid], ex
    cred = ex["authentication.kubernetes.io/credential-id"]
    assert len(cred) == 1 and cred[0].startswith("JTI=") and uuid.UUID(cred[0][4:]).version == 4, cred
    # a second token has its own JTI
    other = review(request_token(audiences=["prewarm"]).status.token, ["prewarm"])
    assert other.user.extra["authentication.kubernetes.io/credential-id"] != cred, other.user.extra


@case("a pod on no node: pod extras, no node extras")
def _py_no_node():
    tok = request_token(ref={"kind": "Pod", "api_version": "v1", "name": "p2"}).status.token
    st = review(tok)
    assert st.authenticated and st.user.extra["authentication.kubernetes.io/pod-name"] == ["p2"], st
    assert not any(k.startswith("authentication.kubernetes.io/node") for k in st.user.extra), st.user.extra


@case("audiences: the asked ones the token is for, in the order asked; none in common -> not authenticated")
def _py_audiences():
    tok = request_token(audiences=["prewarm", "x"]).status.token
    st = review(tok, ["y", "x", "prewarm"])
    assert st.authenticated and st.audiences == ["x", "prewarm"], st
    st = review(state["pod_token"], ["other"])
    assert st.authenticated is not True and not st.user, st
    assert st.error == 'token audiences ["prewarm"] is invalid for the target audiences ["other"]', st.error
    st = review(state["pod_token"])  # no audiences: the API server's
    assert st.authenticated is not True, st
    assert st.error == 'token audiences ["prewarm"] is invalid for the target audiences ["%s"]' % API_AUD, st.error
    st = review(state["default_token"])
    assert st.authenticated and st.audiences == [API_AUD], st


@case("TokenReview: an unknown token -> invalid bearer token; an empty one -> 400; the admin token as before")
def _py_review_others():
    st = review("kubesim-sa-" + "0" * 48)
    assert st.authenticated is not True and st.error == "invalid bearer token", st
    code, body = raw("POST", "/apis/authentication.k8s.io/v1/tokenreviews", ADMIN,
                     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": ""}})
    assert code == 400 and body["reason"] == "BadRequest", (code, body)
    assert body["message"] == "token is required for TokenReview in authentication", body
    st = review(ADMIN)
    assert st.authenticated and st.user.username == "kubesim-admin", st


@case("requests to kubesim: a token for the API server -> 200, one for audience prewarm -> 401 Status")
def _requests():
    code, body = raw("GET", "/api/v1/nodes", state["default_token"])
    assert code == 200 and body["kind"] == "NodeList", (code, body)
    code, body = raw("GET", "/api/v1/nodes", state["pod_token"])
    assert code == 401 and body["kind"] == "Status" and body["reason"] == "Unauthorized", (code, body)
    # the Python client with the ServiceAccount's token instead of the admin's
    c = client.Configuration.get_default_copy()
    c.api_key = {"authorization": "Bearer " + state["default_token"]}
    names = [n.metadata.name for n in client.CoreV1Api(client.ApiClient(c)).list_node().items]
    assert names == ["node-0001", "node-0002"], names


@case("a deleted bound pod: not authenticated (token invalidated), its requests 401; a recreated pod: uid mismatch")
def _deleted_pod():
    make_pod("p3")
    tok = request_token(ref={"kind": "Pod", "api_version": "v1", "name": "p3"}).status.token
    assert review(tok).authenticated, review(tok)
    assert raw("GET", "/api/v1/namespaces", tok)[0] == 200
    old_uid = core.read_namespaced_pod("p3", NS).metadata.uid
    delete_pod_and_wait("p3")
    st = review(tok)
    assert st.authenticated is not True and st.error == "service account token has been invalidated", st
    code, body = raw("GET", "/api/v1/namespaces", tok)
    assert code == 401, (code, body)
    new = make_pod("p3")
    st = review(tok)
    want = "pod UID (%s) does not match service account pod ref claim (%s)" % (new.metadata.uid, old_uid)
    assert st.authenticated is not True and st.error == want, st
    delete_pod_and_wait("p3")


@case("a deleted bound Secret and a deleted or recreated ServiceAccount invalidate their tokens")
def _deleted_secret_sa():
    core.delete_namespaced_secret("s1", NS)
    st = review(state["secret_token"])
    assert st.authenticated is not True and st.error == "service account token has been invalidated", st
    sa2 = core.create_namespaced_service_account(NS, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="robot2")))
    tok = request_token(name="robot2").status.token
    assert review(tok).authenticated
    core.delete_namespaced_service_account("robot2", NS)
    st = review(tok)
    assert st.authenticated is not True and st.error == 'serviceaccounts "robot2" not found', st
    again = core.create_namespaced_service_account(NS, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="robot2")))
    st = review(tok)
    want = "service account UID (%s) does not match claim (%s)" % (again.metadata.uid, sa2.metadata.uid)
    assert st.authenticated is not True and st.error == want, st


@case("refused TokenRequests: missing SA 404, 60 s 422 Invalid, over 2^32 s 422, name mismatch 422")
def _refused():
    code, body = status_of(lambda: request_token(name="nobody"))
    assert code == 404 and body["reason"] == "NotFound" and body["message"] == 'serviceaccounts "nobody" not found', body
    assert body["details"] == {"name": "nobody", "group": "", "kind": "serviceaccounts"}, body
    code, body = status_of(lambda: request_token(seconds=60))
    assert code == 422 and body["reason"] == "Invalid", (code, body)
    assert body["message"] == ('TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid '
                               'value: 60: may not specify a duration less than 10 minutes'), body
    cause = body["details"]["causes"][0]
    assert cause["field"] == "spec.expirationSeconds" and cause["reason"] == "FieldValueInvalid", body
    assert body["details"]["kind"] == "TokenRequest" and body["details"]["group"] == "authentication.k8s.io", body
    code, body = status_of(lambda: request_token(seconds=(1 << 32) + 1))
    assert code == 422 and "may not specify a duration larger than 2^32 seconds" in body["message"], body
    code, body = raw("POST", "/api/v1/namespaces/%s/serviceaccounts/%s/token" % (NS, SA), ADMIN,
                     {"metadata": {"name": "someone-else"}, "spec": {}})
    assert code == 422 and body["message"] == (
        'TokenRequest.authentication.k8s.io "robot" is invalid: metadata.name: Invalid value: "someone-else": '
        'must match the service account name if specified'), body
    code, body = raw("POST", "/api/v1/namespaces/%s/serviceaccounts/%s/token" % (NS, SA), ADMIN,
                     {"spec": {"expirationSeconds": "600"}})
    assert code == 400 and "cannot unmarshal string into Go struct field TokenRequestSpec.spec.expirationSeconds" \
        in body["message"], body
    # 2^32 is the largest allowed, and no server maximum is configured: it is granted as asked
    tr = request_token(seconds=1 << 32)
    assert tr.spec.expiration_seconds == 1 << 32, tr.spec


@case("refused bindings: missing pod 404, pod of another SA 400, wrong uid 409 Conflict, kind ConfigMap 400")
def _refused_bindings():
    code, body = status_of(lambda: request_token(ref={"kind": "Pod", "api_version": "v1", "name": "ghost"}))
    assert code == 404 and body["message"] == 'pods "ghost" not found', body
    code, body = status_of(lambda: request_token(ref={"kind": "Pod", "api_version": "v1", "name": "other-sa"}))
    assert code == 400 and body["reason"] == "BadRequest", body
    assert body["message"] == ('cannot bind token for serviceaccount "robot" to pod running with different '
                               'serviceaccount name.'), body
    bad = str(uuid.uuid4())
    code, body = status_of(lambda: request_token(ref={"kind": "Pod", "api_version": "v1", "name": "p1", "uid": bad}))
    assert code == 409 and body["reason"] == "Conflict", body
    assert body["message"] == ('Operation cannot be fulfilled on Pod "p1": the UID in the bound object reference (%s) '
                               'does not match the UID in record. The object might have been deleted and then '
                               'recreated' % bad), body
    code, body = status_of(lambda: request_token(ref={"kind": "ConfigMap", "api_version": "v1", "name": "c"}))
    assert code == 400 and body["message"] == "cannot bind token to object of type /v1, Kind=ConfigMap", body
    code, body = status_of(lambda: request_token(ref={"kind": "Pod", "api_version": "apps/v1", "name": "p1"}))
    assert code == 400 and body["message"] == "cannot bind token to object of type apps/v1, Kind=Pod", body
    code, body = status_of(lambda: request_token(ref={"kind": "Node", "api_version": "v1", "name": "node-9"}))
    assert code == 404 and body["message"] == 'nodes "node-9" not found', body


@case("serviceaccounts/token: GET and PUT -> 405 MethodNotAllowed; discovery lists serviceaccounts/token (create)")
def _methods_discovery():
    for m in ("GET", "PUT"):
        code, body = raw(m, "/api/v1/namespaces/%s/serviceaccounts/%s/token" % (NS, SA), ADMIN,
                         {} if m == "PUT" else None)
        assert code == 405 and body["reason"] == "MethodNotAllowed", (m, code, body)
    code, body = raw("GET", "/api/v1", ADMIN)
    rows = [r for r in body["resources"] if r["name"] == "serviceaccounts/token"]
    assert rows == [{"name": "serviceaccounts/token", "singularName": "", "namespaced": True,
                     "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest",
                     "verbs": ["create"]}], rows


@case("expiry: a 600 s token authenticates through the minute of leeway, then has expired (age hook)")
def _expiry():
    tr = request_token(seconds=600)
    tok = tr.status.token
    assert (tr.status.expiration_timestamp - tr.metadata.creation_timestamp).total_seconds() == 600
    code, body = raw("POST", "/sim/v1/tokens", ADMIN, {"ageSeconds": 600 + 60 - 15})
    assert code == 200 and body["agedSeconds"] == 645 and body["count"] >= 1, (code, body)
    st = review(tok)
    assert st.authenticated, st  # 600 s old, within the leeway
    assert raw("GET", "/api/v1/nodes", tok)[0] == 200
    raw("POST", "/sim/v1/tokens", ADMIN, {"ageSeconds": 30})
    st = review(tok)
    assert st.authenticated is not True and st.error == "service account token has expired", st
    code, body = raw("GET", "/api/v1/nodes", tok)
    assert code == 401, (code, body)
    code, body = raw("POST", "/sim/v1/tokens", ADMIN, {"ageSeconds": -1})
    assert code == 400, (code, body)
    code, body = raw("GET", "/sim/v1/tokens", ADMIN)
    assert code == 200 and body["max"] == 100000 and body["count"] >= 10, body


@case("a kubelet's pod-bound 3607 s token for the API server really lasts a year; other 3607 s tokens do not")
def _extended():
    kubelet = request_token(seconds=3607, ref={"kind": "Pod", "api_version": "v1", "name": "p1"})
    plain = request_token(seconds=3607)
    other = request_token(audiences=["prewarm"], seconds=3607, ref={"kind": "Pod", "api_version": "v1", "name": "p1"})
    for tr in (kubelet, plain, other):  # the answer says 3607 s for all three
        assert tr.spec.expiration_seconds == 3607, tr.spec
        assert (tr.status.expiration_timestamp - tr.metadata.creation_timestamp).total_seconds() == 3607, tr.status
    code, body = raw("POST", "/sim/v1/tokens", ADMIN, {"ageSeconds": 3607 + 3600})
    assert code == 200, (code, body)
    st = review(kubelet.status.token)
    assert st.authenticated, st
    assert review(plain.status.token).error == "service account token has expired"
    assert review(other.status.token, ["prewarm"]).error == "service account token has expired"


@case("fault injection reaches the subresource: create serviceaccounts/token at rate 1 -> 500 with Retry-After")
def _faults():
    rule = {"errors": [{"verb": "create", "resource": "serviceaccounts/token", "code": 500, "rate": 1}]}
    assert raw("POST", "/sim/v1/faults", ADMIN, rule)[0] == 200
    try:
        code, body = status_of(lambda: request_token())
        assert code == 500 and body["reason"] == "InternalError", (code, body)
        assert raw("GET", "/api/v1/namespaces/%s/serviceaccounts/%s" % (NS, SA), ADMIN)[0] == 200  # others untouched
    finally:
        raw("POST", "/sim/v1/faults", ADMIN, {})
    assert request_token().status.token


@case("stats: TokenRequests counted as create serviceaccounts/token by code (201, 404, 422, 400, 409, 405)")
def _stats():
    code, body = raw("GET", "/sim/v1/stats", ADMIN)
    rows = {(r["verb"], r["code"]): r["count"] for r in body["requests"] if r["resource"] == "serviceaccounts/token"}
    for want in (("create", 201), ("create", 404), ("create", 422), ("create", 400), ("create", 409), ("get", 405),
                 ("update", 405)):
        assert rows.get(want, 0) >= 1, (want, rows)
    assert rows[("create", 201)] >= 12, rows


kl.finish(sim)
