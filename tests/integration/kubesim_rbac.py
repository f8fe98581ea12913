#!/usr/bin/python3
"""kubesim_rbac.py: kubesim's RBAC with real clients, checked against what kube-apiserver answers.

Part 1, kubesim --enforce-rbac --token-auth-file: the default ClusterRoles (`kubectl get clusterroles`),
aggregation (a ClusterRole labelled aggregate-to-view adds its rules to view, edit and admin),
`kubectl apply -f` of RBAC YAML and `kubectl create rolebinding` (kubectl on PATH and 1.33, which
sends protobuf), the token file's users (TokenReview through the official Python client; 403 with the
real message; 200 once a RoleBinding grants it), `kubectl auth can-i` with --as (impersonation, also
of a ServiceAccount; for tasks.prewarm.io, which no discovery serves, it asks what a real server
would be asked), SelfSubjectAccessReview of the virtual resource tasks in group prewarm.io, `kubectl auth whoami`,
SubjectAccessReview and SelfSubjectAccessReview through the Python client (allowed with the real
reason, 422 without user or groups), validation (a ClusterRoleBinding to a Role, a changed roleRef),
`kubectl auth can-i --list` (SelfSubjectRulesReview, also through the Python client, incomplete for a
missing role), escalation prevention (a Role with rules the creator lacks, created or patched, -> 403
with the real message unless it holds escalate; a RoleBinding to a role whose rules it lacks -> 403
unless it holds bind on that role), and x509 users of a --client-ca-file (kubectl and the Python
client with a certificate made by openssl: CN the user, O the groups; an expired one -> 401).
Without --enforce-rbac nothing is refused.

Part 2, the proof: deploy/'s namespace, ServiceAccount and RBAC (and deploy/agent's) applied with
kubectl to a kubesim that enforces RBAC, prewarmd run with the prewarmd ServiceAccount's token
(`kubectl create token`) runs a task to success and no request of it was refused; in agent mode its
TokenReviews of the agents' tokens are allowed too (the Secret read for imagePullSecrets needs TLS to
the agents, which the simulated agents do not speak: that grant is checked with kubectl auth can-i); a
RoleBinding taken away is refused at once (403). One TAP line per case."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kubesim_lib as kl  # noqa: E402
import prewarmd_lib as pl  # noqa: E402
from kubesim_lib import case, tap, wait_until  # noqa: E402

ROOT = kl.ROOT
DEPLOY = os.path.join(ROOT, "deploy")
on_path = kl.KUBECTL
k133 = kl.kubectl_beside("kubectl.1.33")


def Sim(args):
    """A kubesim of our own (its flags), its kubeconfig, and calls as any token."""
    return kl.Kubesim(["--nodes", "3", "--log-level", "warn", "--time-scale", "20"] + args, prefix="pwrbac-")


TOKENS = 'tok-alice,alice,uid-alice,"team-a,prewarm:viewers"\n' + "tok-bob,bob,uid-bob\n\n" + '"tok-carol",carol,uid-c,""\n'


def forbidden(user, verb, resource, group, ns=None, name=None, qres=None):
    q = qres or (resource + ("." + group if group else ""))
    head = q + (' "%s"' % name if name else "") + " is forbidden: "
    where = ' in the namespace "%s"' % ns if ns else " at the cluster scope"
    return head + 'User "%s" cannot %s resource "%s" in API group "%s"%s' % (user, verb, resource, group, where)


def part1():
    tokfile = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False)
    tokfile.write(TOKENS)
    tokfile.close()
    pki = tempfile.mkdtemp(prefix="pwrbac-pki-")  # kube-apiserver's --client-ca-file: read at start
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", os.path.join(pki, "ca.key"), "-out", os.path.join(pki, "ca.crt"), "-days", "2",
                    "-subj", "/CN=users CA"], check=True, capture_output=True, timeout=60)
    sim = Sim(["--enforce-rbac", "--token-auth-file", tokfile.name, "--client-ca-file", os.path.join(pki, "ca.crt")])
    try:
        @case("kubectl get clusterroles lists the defaults; clusterrolebinding cluster-admin binds system:masters")
        def _defaults():
            p = sim.kubectl("get", "clusterroles", "-o", "name")
            names = set(p.stdout.split())
            want = {"clusterrole.rbac.authorization.k8s.io/" + n for n in
                    ("cluster-admin", "admin", "edit", "view", "system:discovery", "system:basic-user",
                     "system:public-info-viewer", "system:aggregate-to-view")}
            assert p.returncode == 0 and want <= names, (p.returncode, p.stdout, p.stderr)
            p = sim.kubectl("get", "clusterrolebinding", "cluster-admin", "-o", "json")
            b = json.loads(p.stdout)
            assert b["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                      "name": "system:masters"}], b
            assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                    "name": "cluster-admin"}, b

        @case("aggregation: view holds system:aggregate-to-view's rules, edit holds view's, admin holds edit's")
        def _aggregated():
            rbac = client.RbacAuthorizationV1Api(sim.py(sim.admin))

            def rules(n):
                return [r.to_dict() for r in (rbac.read_cluster_role(n).rules or [])]
            base = rules("system:aggregate-to-view")
            assert base and all(r in rules("view") for r in base), rules("view")
            assert all(r in rules("edit") for r in rules("view")), rules("edit")
            assert all(r in rules("admin") for r in rules("edit")), rules("admin")

        viewer = ("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: prewarm-viewer\n"
                  "  labels:\n    rbac.authorization.k8s.io/aggregate-to-view: \"true\"\nrules:\n"
                  "  - apiGroups: [\"prewarm.io\"]\n    resources: [\"tasks\"]\n    verbs: [\"get\", \"list\"]\n")

        @case("kubectl apply -f of a ClusterRole labelled aggregate-to-view: view, edit and admin get its rule")
        def _apply_agg():
            p = sim.kubectl("apply", "-f", "-", stdin=viewer)
            assert p.returncode == 0 and "prewarm-viewer created" in p.stdout, (p.stdout, p.stderr)
            rbac = client.RbacAuthorizationV1Api(sim.py(sim.admin))
            want = {"api_groups": ["prewarm.io"], "resources": ["tasks"], "verbs": ["get", "list"]}

            def has(n):
                return any({k: v for k, v in r.to_dict().items() if v is not None} == want
                           for r in (rbac.read_cluster_role(n).rules or []))
            assert wait_until(lambda: has("view") and has("edit") and has("admin"), 10), "not aggregated"
            p = sim.kubectl("delete", "clusterrole", "prewarm-viewer")
            assert p.returncode == 0, p.stderr
            assert wait_until(lambda: not has("view") and not has("admin"), 10), "rule stays after the delete"
            p = sim.kubectl("apply", "-f", "-", stdin=viewer)
            assert p.returncode == 0 and wait_until(lambda: has("view"), 10), p.stderr

        @case("token file: TokenReview (Python client) gives the user, uid and groups + system:authenticated")
        def _review():
            auth = client.AuthenticationV1Api(sim.py(sim.admin))
            st = auth.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(token="tok-alice"))).status
            assert st.authenticated and st.user.username == "alice" and st.user.uid == "uid-alice", st
            assert st.user.groups == ["team-a", "prewarm:viewers", "system:authenticated"], st.user.groups
            st = auth.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(token="tok-carol"))).status
            assert st.authenticated and st.user.username == "carol" and st.user.groups == ["", "system:authenticated"], st
            st = auth.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(
                token="tok-alice", audiences=["prewarm"]))).status
            assert not st.authenticated, st
            st = auth.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(token="tok-nobody"))).status
            assert not st.authenticated, st
            st = auth.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(token=sim.admin))).status
            assert st.authenticated and "system:masters" in st.user.groups, st

        @case("enforced: a token-file user without a grant gets 403 with the real message and details")
        def _forbidden():
            code, st = sim.call("GET", "/api/v1/namespaces/prewarm/pods", "tok-alice")
            assert code == 403 and st["reason"] == "Forbidden" and st["code"] == 403, (code, st)
            assert st["message"] == forbidden("alice", "list", "pods", "", ns="prewarm"), st["message"]
            assert st["details"] == {"kind": "pods"}, st
            code, st = sim.call("GET", "/apis/batch/v1/namespaces/prewarm/jobs/x", "tok-bob")
            assert code == 403 and st["message"] == forbidden("bob", "get", "jobs", "batch", ns="prewarm", name="x")
            assert st["details"] == {"name": "x", "group": "batch", "kind": "jobs"}, st
            code, st = sim.call("GET", "/api/v1/nodes?watch=true", "tok-bob")
            assert code == 403 and st["message"] == forbidden("bob", "watch", "nodes", ""), st
            code, st = sim.call("POST", "/api", "tok-bob", {})  # discovery is get only
            assert code == 403 and st["message"] == 'forbidden: User "bob" cannot post path "/api"', st
            code, _ = sim.call("GET", "/api", "tok-bob")  # system:discovery
            assert code == 200, code
            code, st = sim.call("GET", "/api/v1/pods", "wrong-token")
            assert code == 401, (code, st)

        for kb, label in ((on_path, "kubectl"), (k133, "kubectl 1.33 (protobuf)")):
            if not os.access(kb or "", os.X_OK):
                tap(False, label + " is installed")
                continue

            @case(label + " create rolebinding: the user may list pods in that namespace only, not secrets")
            def _rolebinding(kb=kb):
                name = "alice-view-" + ("133" if kb == k133 else "path")
                ns = "prewarm" if kb != k133 else "default"
                p = sim.kubectl("create", "rolebinding", name, "--clusterrole=view", "--user=alice", "-n", ns, kb=kb)
                assert p.returncode == 0, p.stderr
                b = json.loads(sim.kubectl("get", "rolebinding", name, "-n", ns, "-o", "json").stdout)
                assert b["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                          "name": "alice"}], b["subjects"]
                code, _ = sim.call("GET", "/api/v1/namespaces/%s/pods" % ns, "tok-alice")
                assert code == 200, code
                code, st = sim.call("GET", "/api/v1/namespaces/%s/secrets" % ns, "tok-alice")
                assert code == 403 and st["message"] == forbidden("alice", "list", "secrets", "", ns=ns), st
                code, st = sim.call("GET", "/api/v1/namespaces/kube-system/pods", "tok-alice")
                assert code == 403, code

        @case("kubectl auth can-i --as (impersonation): yes/no as RBAC says, tasks.prewarm.io included")
        def _can_i():
            def can(*a):
                p = sim.kubectl("auth", "can-i", *a)
                return p.stdout.strip().split("\n")[-1], p.returncode
            assert can("list", "pods", "-n", "prewarm", "--as=alice") == ("yes", 0)
            assert can("get", "pods", "--subresource=log", "-n", "prewarm", "--as=alice") == ("yes", 0)
            assert can("get", "secrets", "-n", "prewarm", "--as=alice")[0] == "no"
            # tasks.prewarm.io is served by prewarmd, not by the API server: kubectl's discovery does not
            # know it, so (as against a real cluster) it warns and asks for resource "tasks.prewarm.io" in
            # group "" (kubectl's CanIOptions.resourceFor); the view grant is for group prewarm.io, so: no
            p = sim.kubectl("auth", "can-i", "list", "tasks.prewarm.io", "-n", "prewarm", "--as=alice")
            assert p.stdout.strip() == "no" and ("doesn't have a resource type 'tasks' in group 'prewarm.io'"
                                                 in p.stderr), (p.stdout, p.stderr)
            code, st = sim.call("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "tok-alice", {
                "spec": {"resourceAttributes": {"namespace": "prewarm", "verb": "list", "group": "prewarm.io",
                                                "resource": "tasks"}}})
            assert code == 201 and st["status"]["allowed"] is True, (code, st)
            code, st = sim.call("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "tok-alice", {
                "spec": {"resourceAttributes": {"namespace": "prewarm", "verb": "create", "group": "prewarm.io",
                                                "resource": "tasks"}}})
            assert code == 201 and st["status"] == {"allowed": False}, (code, st)
            assert can("list", "pods", "-n", "kube-system", "--as=alice")[0] == "no"
            assert can("create", "pods", "--as=system:serviceaccount:prewarm:robot", "-n", "prewarm")[0] == "no"
            p = sim.kubectl("create", "rolebinding", "robot-edit", "--clusterrole=edit",
                            "--serviceaccount=prewarm:robot", "-n", "prewarm")
            assert p.returncode == 0, p.stderr
            assert can("create", "pods", "--as=system:serviceaccount:prewarm:robot", "-n", "prewarm") == ("yes", 0)
            assert can("create", "pods") == ("yes", 0)  # the admin
            # alice's own token, no impersonation
            kc = sim.kubeconfig_for("tok-alice", "alice")
            p = sim.kubectl("auth", "can-i", "list", "pods", "-n", "prewarm", kubeconfig=kc)
            assert p.stdout.strip() == "yes", (p.stdout, p.stderr)
            p = sim.kubectl("auth", "can-i", "list", "pods", "--as=bob", kubeconfig=kc)
            assert p.returncode != 0 and 'cannot impersonate resource "users"' in p.stderr, (p.stdout, p.stderr)

        @case("kubectl auth whoami (SelfSubjectReview) with a token-file token and with --as")
        def _whoami():
            kc = sim.kubeconfig_for("tok-alice", "alice")
            p = sim.kubectl("auth", "whoami", "-o", "json", kubeconfig=kc)
            o = json.loads(p.stdout)
            assert o["status"]["userInfo"] == {"username": "alice", "uid": "uid-alice",
                                               "groups": ["team-a", "prewarm:viewers", "system:authenticated"]}, o
            p = sim.kubectl("auth", "whoami", "-o", "json", "--as=system:serviceaccount:prewarm:robot")
            o = json.loads(p.stdout)["status"]["userInfo"]
            assert o["username"] == "system:serviceaccount:prewarm:robot" and o["groups"] == [
                "system:serviceaccounts", "system:serviceaccounts:prewarm", "system:authenticated"], o

        @case("SubjectAccessReview (Python client): allowed with the real reason, denied, non-resource, 422")
        def _sar():
            az = client.AuthorizationV1Api(sim.py(sim.admin))

            def sar(**spec):
                return az.create_subject_access_review(client.V1SubjectAccessReview(
                    spec=client.V1SubjectAccessReviewSpec(**spec))).status
            st = sar(user="alice", resource_attributes=client.V1ResourceAttributes(
                namespace="prewarm", verb="list", resource="pods"))
            assert st.allowed and st.reason == ('RBAC: allowed by RoleBinding "alice-view-path/prewarm" of '
                                                'ClusterRole "view" to User "alice"'), st
            st = sar(user="alice", resource_attributes=client.V1ResourceAttributes(
                namespace="prewarm", verb="list", group="prewarm.io", resource="tasks"))
            assert st.allowed, st
            st = sar(user="alice", resource_attributes=client.V1ResourceAttributes(
                namespace="prewarm", verb="delete", group="prewarm.io", resource="tasks"))
            assert st.allowed is False and not st.denied and not st.reason, st
            st = sar(user="x", groups=["system:masters"], resource_attributes=client.V1ResourceAttributes(
                verb="delete", resource="nodes"))
            assert st.allowed and not st.reason, st
            st = sar(user="bob", groups=["system:authenticated"],
                     non_resource_attributes=client.V1NonResourceAttributes(path="/healthz", verb="get"))
            assert st.allowed and st.reason in ('RBAC: allowed by ClusterRoleBinding "%s" of ClusterRole "%s" to Group '
                                                '"system:authenticated"' % (n, n) for n in
                                                ("system:discovery", "system:public-info-viewer")), st
            st = sar(user="bob", non_resource_attributes=client.V1NonResourceAttributes(path="/healthz", verb="get"))
            assert not st.allowed, st
            try:
                sar(resource_attributes=client.V1ResourceAttributes(verb="get", resource="pods"))
                raise AssertionError("no 422")
            except ApiException as e:
                body = json.loads(e.body)
                assert e.status == 422 and body["reason"] == "Invalid" and body["message"] == (
                    'SubjectAccessReview.authorization.k8s.io "" is invalid: spec.user: Invalid value: "": at least '
                    'one of user or group must be specified'), e.body
            # alice may not create SubjectAccessReviews at all (only the self kind, system:basic-user)
            code, st = sim.call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", "tok-alice",
                                {"spec": {"user": "x", "resourceAttributes": {"verb": "get", "resource": "pods"}}})
            assert code == 403 and st["message"] == forbidden("alice", "create", "subjectaccessreviews",
                                                              "authorization.k8s.io"), st

        @case("SelfSubjectAccessReview (Python client with a token-file token) answers for the caller")
        def _ssar():
            az = client.AuthorizationV1Api(sim.py("tok-alice"))
            st = az.create_self_subject_access_review(client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=client.V1ResourceAttributes(
                    namespace="prewarm", verb="get", group="prewarm.io", resource="tasks")))).status
            assert st.allowed and "ClusterRole \"view\"" in st.reason, st
            st = client.AuthorizationV1Api(sim.py("tok-bob")).create_self_subject_access_review(
                client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(namespace="prewarm", verb="get",
                                                                    resource="pods")))).status
            assert st.allowed is False, st

        @case("kubectl auth can-i --list (SelfSubjectRulesReview): the caller's rules in the namespace")
        def _can_i_list():
            kc = sim.kubeconfig_for("tok-alice", "alice")
            p = sim.kubectl("auth", "can-i", "--list", "-n", "prewarm", kubeconfig=kc)
            lines = [ln.split() for ln in p.stdout.splitlines()]
            assert p.returncode == 0 and lines[0][:2] == ["Resources", "Non-Resource"], (p.stdout, p.stderr)
            # view (alice-view-path in prewarm): pods get/list/watch; system:basic-user: the self reviews
            assert any(ln[0] == "pods" and ln[-3:] == ["[get", "list", "watch]"] for ln in lines), p.stdout
            assert any(ln[0] == "tasks.prewarm.io" for ln in lines), p.stdout
            assert any(ln[0] == "selfsubjectrulesreviews.authorization.k8s.io" and ln[-1] == "[create]"
                       for ln in lines), p.stdout
            assert any(ln[0] == "[/api/*]" and ln[-1] == "[get]" for ln in lines), p.stdout  # system:discovery
            assert not any(ln[0] == "secrets" for ln in lines), p.stdout
            p = sim.kubectl("auth", "can-i", "--list", "-n", "kube-system", kubeconfig=kc)
            assert p.returncode == 0 and not any(ln.split()[0] == "pods" for ln in p.stdout.splitlines()), p.stdout
            p = sim.kubectl("auth", "can-i", "--list", "-n", "prewarm")  # the admin: cluster-admin's stars
            assert p.returncode == 0 and any(ln.split()[:1] == ["*.*"] and ln.split()[-1] == "[*]"
                                             for ln in p.stdout.splitlines()), p.stdout
            p = sim.kubectl("create", "rolebinding", "phantom", "--role=phantom", "--user=bob", "-n", "kube-public")
            assert p.returncode == 0, p.stderr
            az = client.AuthorizationV1Api(sim.py("tok-bob"))
            st = az.create_self_subject_rules_review(client.V1SelfSubjectRulesReview(
                spec=client.V1SelfSubjectRulesReviewSpec(namespace="kube-public"))).status
            # bob's RoleBinding names a Role that does not exist: incomplete, and the error says so
            assert st.incomplete is True and st.evaluation_error == (
                'role.rbac.authorization.k8s.io "phantom" not found'), st
            assert any(r.verbs == ["create"] and "selfsubjectaccessreviews" in r.resources
                       for r in st.resource_rules), st
            code, st = sim.call("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", "tok-bob",
                                {"spec": {}})
            assert code == 400 and st["message"] == "no namespace on request", (code, st)

        def escalation_msg(kind, name, user, groups, rules):
            return ('%s.rbac.authorization.k8s.io "%s" is forbidden: user "%s" (groups=[%s]) is attempting to '
                    'grant RBAC permissions not currently held:\n%s' % (kind, name, user,
                                                                         " ".join('"%s"' % g for g in groups),
                                                                         "\n".join(rules)))

        @case("escalation prevention: a Role with rules the creator lacks -> 403 unless it holds escalate")
        def _escalate():
            for argv in (["create", "role", "rbac-manager", "--verb=create,update,patch,get",
                          "--resource=roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io"],
                         ["create", "role", "pod-reader", "--verb=get,list", "--resource=pods"],
                         ["create", "rolebinding", "bob-rbac", "--role=rbac-manager", "--user=bob"],
                         ["create", "rolebinding", "bob-pods", "--role=pod-reader", "--user=bob"]):
                p = sim.kubectl(*argv, "-n", "default")
                assert p.returncode == 0, (argv, p.stderr)
            kc = sim.kubeconfig_for("tok-bob", "bob")
            p = sim.kubectl("create", "role", "sub-reader", "--verb=get", "--resource=pods", "-n", "default",
                            kubeconfig=kc)
            assert p.returncode == 0, ("a subset of bob's rules", p.stderr)
            p = sim.kubectl("create", "role", "secret-reader", "--verb=get,list", "--resource=secrets,pods",
                            "-n", "default", kubeconfig=kc)
            want = escalation_msg("roles", "secret-reader", "bob", ["system:authenticated"],
                                  ['{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}'])
            assert p.returncode != 0 and want in p.stderr, (want, p.stderr)
            # an update that adds a rule is checked too (kubectl patch: the patched object)
            p = sim.kubectl("patch", "role", "sub-reader", "-n", "default", "--type=json", "-p",
                            '[{"op":"add","path":"/rules/-","value":{"apiGroups":["apps"],"resources":'
                            '["deployments"],"verbs":["delete"]}}]', kubeconfig=kc)
            want = escalation_msg("roles", "sub-reader", "bob", ["system:authenticated"],
                                  ['{APIGroups:["apps"], Resources:["deployments"], Verbs:["delete"]}'])
            assert p.returncode != 0 and want in p.stderr, (want, p.stderr)
            rbac = client.RbacAuthorizationV1Api(sim.py("tok-bob"))
            try:
                rbac.create_namespaced_role("default", client.V1Role(
                    metadata=client.V1ObjectMeta(name="nodes-too"),
                    rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get"],
                                               resource_names=["a"]),
                           client.V1PolicyRule(api_groups=[""], resources=["pods/log"], verbs=["get"])]))
                raise AssertionError("no 403")
            except ApiException as e:
                body = json.loads(e.body)
                assert e.status == 403 and body["reason"] == "Forbidden" and body["details"] == {
                    "name": "nodes-too", "group": "rbac.authorization.k8s.io", "kind": "roles"} and (
                    '{APIGroups:[""], Resources:["pods/log"], Verbs:["get"]}' in body["message"]) and (
                    'pods"], ResourceNames' not in body["message"]), e.body
            # with escalate on roles, the same Role may be created
            p = sim.kubectl("create", "role", "escalator", "--verb=escalate",
                            "--resource=roles.rbac.authorization.k8s.io", "-n", "default")
            assert p.returncode == 0, p.stderr
            p = sim.kubectl("create", "rolebinding", "bob-escalate", "--role=escalator", "--user=bob", "-n",
                            "default")
            assert p.returncode == 0, p.stderr
            p = sim.kubectl("create", "role", "secret-reader", "--verb=get,list", "--resource=secrets,pods",
                            "-n", "default", kubeconfig=kc)
            assert p.returncode == 0, ("with escalate", p.stderr)

        @case("escalation prevention: binding a role needs its rules or the bind verb on it")
        def _bind():
            kc = sim.kubeconfig_for("tok-bob", "bob")
            p = sim.kubectl("create", "rolebinding", "carol-pods", "--role=sub-reader", "--user=carol", "-n",
                            "default", kubeconfig=kc)
            assert p.returncode == 0, ("bob holds sub-reader's rules", p.stderr)
            p = sim.kubectl("create", "rolebinding", "carol-edit", "--clusterrole=edit", "--user=carol", "-n",
                            "default", kubeconfig=kc)
            assert p.returncode != 0 and ('rolebindings.rbac.authorization.k8s.io "carol-edit" is forbidden: user '
                                          '"bob" (groups=["system:authenticated"]) is attempting to grant RBAC '
                                          'permissions not currently held:') in p.stderr, p.stderr
            p = sim.kubectl("create", "clusterrole", "edit-binder", "--verb=bind",
                            "--resource=clusterroles.rbac.authorization.k8s.io", "--resource-name=edit")
            assert p.returncode == 0, p.stderr
            p = sim.kubectl("create", "rolebinding", "bob-binder", "--clusterrole=edit-binder", "--user=bob", "-n",
                            "default")
            assert p.returncode == 0, p.stderr
            p = sim.kubectl("create", "rolebinding", "carol-edit", "--clusterrole=edit", "--user=carol", "-n",
                            "default", kubeconfig=kc)
            assert p.returncode == 0, ("with bind on clusterrole edit", p.stderr)
            p = sim.kubectl("create", "rolebinding", "carol-admin", "--clusterrole=admin", "--user=carol", "-n",
                            "default", kubeconfig=kc)
            assert p.returncode != 0 and "carol-admin" in p.stderr and "not currently held" in p.stderr, p.stderr
            p = sim.kubectl("auth", "can-i", "create", "jobs.batch", "-n", "default", "--as=carol")
            assert p.stdout.strip() == "yes", p.stdout

        @case("kubesim --client-ca-file: a client certificate's CN is the user and its O values the groups")
        def _x509():
            d = pki
            ca_key, ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")

            def ossl(*a):
                subprocess.run(["openssl"] + list(a), check=True, capture_output=True, timeout=60)
            ext = os.path.join(d, "ext")
            with open(ext, "w") as f:
                f.write("extendedKeyUsage=clientAuth\n")
            certs = {}
            for name, subj, days in (("dave", "/CN=dave/O=devs/O=oncall", "1"), ("old", "/CN=dave/O=devs", "-1")):
                key, csr, crt = (os.path.join(d, name + x) for x in (".key", ".csr", ".crt"))
                ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                     "-out", csr, "-subj", subj)
                ossl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
                     "-days", days, "-extfile", ext)
                certs[name] = (crt, key)
            kc = sim.kubeconfig_cert(*certs["dave"], "dave")
            p = sim.kubectl("auth", "whoami", "-o", "json", kubeconfig=kc)
            assert p.returncode == 0, p.stderr
            o = json.loads(p.stdout)["status"]["userInfo"]
            assert o == {"username": "dave", "groups": ["devs", "oncall", "system:authenticated"]}, o
            p = sim.kubectl("auth", "can-i", "list", "pods", "-n", "prewarm", kubeconfig=kc)
            assert p.stdout.strip() == "no", p.stdout
            p = sim.kubectl("create", "rolebinding", "devs-view", "--clusterrole=view", "--group=devs", "-n",
                            "prewarm")
            assert p.returncode == 0, p.stderr
            p = sim.kubectl("get", "pods", "-n", "prewarm", kubeconfig=kc)
            assert p.returncode == 0, p.stderr
            p = sim.kubectl("get", "secrets", "-n", "prewarm", kubeconfig=kc)
            assert p.returncode != 0 and 'User "dave" cannot list resource "secrets"' in p.stderr, p.stderr
            p = sim.kubectl("get", "pods", "-n", "prewarm", kubeconfig=sim.kubeconfig_cert(*certs["old"], "old"))
            assert p.returncode != 0 and "Unauthorized" in p.stderr, p.stderr
            # the official Python client with the same certificate
            c = client.Configuration()
            c.host, c.ssl_ca_cert = sim.server, sim.ca
            c.cert_file, c.key_file = certs["dave"]
            core = client.CoreV1Api(client.ApiClient(c))
            assert core.list_namespaced_pod("prewarm").items is not None
            try:
                core.list_namespaced_secret("prewarm")
                raise AssertionError("no 403")
            except ApiException as e:
                assert e.status == 403 and json.loads(e.body)["message"] == forbidden("dave", "list", "secrets", "",
                                                                                    ns="prewarm"), e.body

        @case("validation: a ClusterRoleBinding to a Role, a rule without verbs: 422; roleRef cannot change")
        def _validation():
            code, st = sim.call("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", sim.admin, {
                "metadata": {"name": "bad"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                         "name": "x"}, "subjects": []})
            assert code == 422 and st["details"]["causes"][0]["field"] == "roleRef.kind", st
            code, st = sim.call("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", sim.admin, {
                "metadata": {"name": "bad"}, "rules": [{"apiGroups": [""], "resources": ["pods"]}]})
            assert code == 422 and st["details"]["causes"][0]["field"] == "rules[0].verbs", st
            code, st = sim.call("PATCH", "/apis/rbac.authorization.k8s.io/v1/namespaces/prewarm/rolebindings/"
                                "robot-edit", sim.admin, {"roleRef": {"name": "admin"}})
            assert code in (415, 422), (code, st)
            p = sim.kubectl("patch", "rolebinding", "robot-edit", "-n", "prewarm", "--type=merge", "-p",
                            '{"roleRef":{"name":"admin"}}')
            assert p.returncode != 0 and "cannot change roleRef" in p.stderr, (p.stdout, p.stderr)
            p = sim.kubectl("label", "rolebinding", "robot-edit", "-n", "prewarm", "team=a")
            assert p.returncode == 0, p.stderr

        @case("a RoleBinding to a missing Role: no grant, and the reason names it")
        def _missing():
            p = sim.kubectl("create", "rolebinding", "ghost", "--role=ghost", "--user=bob", "-n", "prewarm")
            assert p.returncode == 0, p.stderr
            az = client.AuthorizationV1Api(sim.py(sim.admin))
            st = az.create_subject_access_review(client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
                user="bob", resource_attributes=client.V1ResourceAttributes(namespace="prewarm", verb="get",
                                                                            resource="pods")))).status
            assert not st.allowed and st.reason == 'RBAC: role.rbac.authorization.k8s.io "ghost" not found', st
    finally:
        rc, rep = sim.close()
        os.unlink(tokfile.name)
        shutil.rmtree(pki, ignore_errors=True)
        tap(rc == 0 and not rep, "kubesim --enforce-rbac: SIGTERM exits 0, no sanitizer report", "rc %s %s" % (rc, rep))

    sim = Sim(["--token-auth-file", "/dev/null"])
    try:
        @case("without --enforce-rbac nothing is refused (a ServiceAccount token lists secrets), SSAR still answers")
        def _unenforced():
            sim.kubectl("create", "serviceaccount", "robot", "-n", "prewarm")
            tok = sim.kubectl("create", "token", "robot", "-n", "prewarm").stdout.strip()
            code, _ = sim.call("GET", "/api/v1/namespaces/prewarm/secrets", tok)
            assert code == 200, code
            code, st = sim.call("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", tok,
                                {"spec": {"resourceAttributes": {"verb": "list", "resource": "secrets",
                                                                 "namespace": "prewarm"}}})
            assert code == 201 and st["status"] == {"allowed": False}, (code, st)
    finally:
        rc, rep = sim.close()
        tap(rc == 0 and not rep, "kubesim: SIGTERM exits 0, no sanitizer report", "rc %s %s" % (rc, rep))


class RbacEnv(pl.Env):
    """prewarmd_lib's Env, with prewarmd started only once asked, on a kubeconfig of our choice."""

    pw_kubeconfig = None

    def start_prewarmd(self):
        if not self.pw_kubeconfig:
            return
        self.kubeconfig, admin = self.pw_kubeconfig, self.kubeconfig
        try:
            super().start_prewarmd()
        finally:
            self.kubeconfig = admin


def refused(env):
    """The stats rows of requests kubesim refused with 403."""
    return [r for r in env.stats().get("requests", []) if r.get("code") == 403]


def part2():
    port = pl.free_port()
    env = RbacEnv(nodes=4, sim_args=["--enforce-rbac", "--agents", "--namespaces", "prewarm,prewarm-agent",
                                     "--arm64-percent", "0"],
                  pw_args=["--agents", "--agent-listen", "127.0.0.1:%d" % port, "--agent-namespace", "prewarm-agent"],
                  time_scale=20)
    cache = os.path.join(env.dir, "kcache")

    def kubectl(*args, stdin=None):
        return subprocess.run([on_path, "--kubeconfig", env.kubeconfig, "--cache-dir", cache] + list(args),
                              input=stdin, capture_output=True, text=True, timeout=60)
    try:
        files = [os.path.join(DEPLOY, f) for f in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml")]
        files += [os.path.join(DEPLOY, "agent", f) for f in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml")]
        args = ["apply"]
        for f in files:
            args += ["-f", f]
        p = kubectl(*args)
        tap(p.returncode == 0, "kubectl apply -f deploy/{namespace,serviceaccount,rbac}.yaml and deploy/agent's",
            p.stdout + p.stderr)
        p = kubectl("create", "token", "prewarmd", "-n", "prewarm", "--duration", "2h")
        token = p.stdout.strip()
        tap(p.returncode == 0 and token, "kubectl create token prewarmd -n prewarm", p.stderr)
        with open(env.kubeconfig) as f:
            kc = yaml.safe_load(f)
        kc["users"] = [{"name": "prewarmd", "user": {"token": token}}]
        kc["contexts"] = [{"name": "prewarmd", "context": {"cluster": kc["clusters"][0]["name"], "user": "prewarmd",
                                                          "namespace": "prewarm"}}]
        kc["current-context"] = "prewarmd"
        env.pw_kubeconfig = os.path.join(env.dir, "kubeconfig-prewarmd")
        with open(env.pw_kubeconfig, "w") as f:
            yaml.safe_dump(kc, f)
        code, st = env.kube("GET", "/api/v1/namespaces/prewarm/pods?limit=1")
        tap(code == 200, "the admin's kubeconfig stays allowed under --enforce-rbac", "%s %s" % (code, st))
        code, _ = env._call(env.server + "/api/v1/namespaces/prewarm/secrets", "GET", None,
                            {"Authorization": "Bearer " + token}, env.ssl)
        tap(code == 403, "the prewarmd token may not list secrets (deploy/ grants get only)", str(code))
        before = refused(env)  # that one

        env.start_prewarmd()
        tid = env.create_task({"images": ["busybox:1.36"], "mode": "job"})
        t = env.wait_task(tid, timeout=180)
        tap(t["status"] == "succeeded" and t["progress"]["succeededNodes"] == 4,
            "prewarmd with deploy/'s RBAC and the prewarmd token: a Job-mode task on 4 nodes succeeds",
            json.dumps(t)[:600] + "\n" + env.tail("prewarmd.log"))
        tap(refused(env) == before, "no request of prewarmd was refused (403) by kubesim", json.dumps(refused(env)))

        # agent mode: the agents' pod-bound tokens are reviewed by prewarmd (tokenreviews create), a
        # task with an imagePullSecret makes it read the Secret (secrets get)
        env.kube("POST", "/api/v1/namespaces/prewarm-agent/serviceaccounts",
                 {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prewarm-agent"}})
        tmpl = {"metadata": {"labels": {"app": "prewarm-agent"}},
                "spec": {"serviceAccountName": "prewarm-agent",
                         "containers": [{"name": "agent", "image": "ghcr.io/prewarm/prewarm:0.1.0",
                                         "command": ["/prewarm-agent"],
                                         "env": [{"name": "PREWARM_SERVER", "value": "http://127.0.0.1:%d" % port}]}]}}
        ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "prewarm-agent"},
              "spec": {"selector": {"matchLabels": {"app": "prewarm-agent"}}, "template": tmpl}}
        code, body = env.kube("POST", "/apis/apps/v1/namespaces/prewarm-agent/daemonsets", ds)

        def healthy():
            code, a = env.api("GET", "/api/v1/agents")
            items = a.get("items", a) if isinstance(a, dict) else []
            return [x for x in items if isinstance(x, dict) and x.get("healthy")] if code == 200 else []
        ok = wait_until(lambda: len(healthy()) == 4, 60, 0.5)
        tap(bool(ok), "agent mode: the 4 simulated agents sync with prewarmd (their tokens reviewed by it)",
            "%s %s\n%s" % (code, body, env.tail("prewarmd.log")))
        tid = env.create_task({"images": ["nginx:1.27"], "mode": "agent"})
        t = env.wait_task(tid, timeout=180)
        tap(t["status"] == "succeeded" and t["progress"]["succeededNodes"] == 4,
            "agent mode: a task pulled by the 4 agents succeeds", json.dumps(t)[:600] + "\n" + env.tail("prewarmd.log"))
        st = env.stats().get("requests", [])
        reviews = sum(r["count"] for r in st if r.get("resource") == "tokenreviews" and r.get("code") == 201)
        tap(reviews > 0 and refused(env) == before,
            "agent mode: prewarmd's TokenReviews of the agents' tokens were allowed, nothing refused",
            "reviews %d refused %s" % (reviews, json.dumps(refused(env))))
        # the Secret read of agent mode needs TLS to the agents (CredentialsRequireTLS), which the
        # simulated agents do not speak: the grant is checked as prewarmd would be asked
        p = kubectl("auth", "can-i", "get", "secrets/regcred", "-n", "prewarm",
                    "--as=system:serviceaccount:prewarm:prewarmd")
        tap(p.stdout.strip() == "yes", "kubectl auth can-i get secrets/regcred as the prewarmd ServiceAccount: yes",
            p.stdout + p.stderr)

        # a grant taken away is refused at once, with the real message
        p = kubectl("delete", "rolebinding", "prewarm-jobs", "-n", "prewarm")
        code, st = env._call(env.server + "/apis/batch/v1/namespaces/prewarm/jobs", "GET", None,
                             {"Authorization": "Bearer " + token}, env.ssl)
        want = forbidden("system:serviceaccount:prewarm:prewarmd", "list", "jobs", "batch", ns="prewarm")
        tap(p.returncode == 0 and code == 403 and isinstance(st, dict) and st.get("message") == want,
            "the RoleBinding deleted: the prewarmd token's list of Jobs is refused (403, the real message)",
            "%s %s" % (code, st))
        rc = env.stop_prewarmd()
        tap(rc == 0, "prewarmd exits 0 on SIGTERM", str(rc))
    except Exception:  # noqa: BLE001
        tap(False, "part 2", traceback.format_exc() + "\n" + env.tail("prewarmd.log") + env.tail("kubesim.log"))
    finally:
        env.close()
        tap(not pl.sanitizer_reports, "no sanitizer report in kubesim's and prewarmd's logs",
            "\n".join(pl.sanitizer_reports)[:3000])


part1()
part2()
kl.finish()
