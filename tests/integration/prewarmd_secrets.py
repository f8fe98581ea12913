#!/usr/bin/env python3
"""Secrets hygiene for the secrets that came after the token files (issue 10 point 9): one run of
prewarmd against kubesim uses every kind, then every log of the run, the audit log, the API's answers
(tasks, node results, agents, policies, clusters, whoami, openapi), /metrics, the webhook deliveries
received and the store's own data (Redis's append-only file) are searched for each secret's text:
- a Redis password in the --store URL (redis-server with requirepass; prewarmd logs the URL redacted);
- webhook signing keys: --webhook-secret-file's and a task webhook's secretRef Secret (its value and
  the Secret's base64 of it);
- private keys: the client certificate's (the caller's, used for requests with --client-ca-file) and
  prewarmd's own --tls-key;
- pull credentials, for Jobs and for agents (kubesim --agents, a task in mode agent: prewarmd hands the
  agents the Secret's credentials), as the password, the base64 "user:password" auth and the Secret's
  base64 .dockerconfigjson;
- the token-file token the run authenticates with.
Each phase first checks that the secret was really used (the deliveries are signed with it, the Redis
store holds the tasks, the client certificate authenticates, the private image is pulled with the
credentials), so a test that finds nothing has looked where the secret went. SKIP without
redis-server."""
import base64
import hashlib
import hmac
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import BIN, REDIS, Env, finish, free_port, holds, scenario, tap  # noqa: E402

REDIS_PASS = "rds-pw-4b1e97c2d0"
GLOBAL_SECRET = "whsec-global-7d2a90e1c4"
TASK_SECRET = "whsec-task-3f68b15e2a"
PULL_USER, PULL_PASS = "team-bot", "pw-s3cret"  # what kubesim's registry for PRIVATE takes
TOKEN = "tok-admin-secrets-0a9b8c7d6e"
PRIVATE = "registry.example.com/team/private-app:1.0"
NS_AGENT = "prewarm-agent"

WORK = tempfile.mkdtemp(prefix="pwsecrets-")
SECRETS = {}  # name -> text that must appear nowhere
LOGS = []     # files searched at the end
ANSWERS = []  # (what, text) of API answers searched at the end


def ossl(*argv):
    subprocess.run(["openssl"] + list(argv), check=True, capture_output=True, timeout=60, cwd=WORK)


def key_body(path):
    """The longest base64 line of a PEM private key: text only the key holds."""
    with open(path) as f:
        lines = [x.strip() for x in f if x.strip() and not x.startswith("-----")]
    return max(lines, key=len)


def make_tls():
    """A server CA and certificate for 127.0.0.1, a client CA and a client certificate (CN secrets-user,
    O prewarm:admins); the private keys' text goes into SECRETS."""
    ext = os.path.join(WORK, "srv.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "srv-ca.key",
         "-out", "srv-ca.crt", "-days", "2", "-subj", "/CN=secrets server CA")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "tls.key", "-out",
         "tls.csr", "-subj", "/CN=prewarmd")
    ossl("x509", "-req", "-in", "tls.csr", "-CA", "srv-ca.crt", "-CAkey", "srv-ca.key", "-CAcreateserial", "-out",
         "tls.crt", "-days", "1", "-extfile", ext)
    cext = os.path.join(WORK, "cli.ext")
    with open(cext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "users-ca.key",
         "-out", "users-ca.crt", "-days", "2", "-subj", "/CN=secrets users CA")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "user.key", "-out",
         "user.csr", "-subj", "/CN=secrets-user/O=prewarm:admins")
    ossl("x509", "-req", "-in", "user.csr", "-CA", "users-ca.crt", "-CAkey", "users-ca.key", "-CAcreateserial",
         "-out", "user.crt", "-days", "1", "-extfile", cext)
    SECRETS["the --tls-key private key"] = key_body(os.path.join(WORK, "tls.key"))
    SECRETS["the client certificate's private key"] = key_body(os.path.join(WORK, "user.key"))


class Receiver:
    """A webhook receiver on 127.0.0.1 recording every POST (path, headers, body)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with rec.lock:
                    rec.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                         "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def wait(self, path, n, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                got = [r for r in self.requests if r["path"] == path]
            if len(got) >= n:
                return got
            time.sleep(0.1)
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def signed_with(req, secret):
    sig = dict(p.split("=", 1) for p in req["headers"].get("prewarm-signature", "").split(","))
    want = hmac.new(secret.encode(), (sig.get("t", "") + ".").encode() + req["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(sig.get("v1", ""), want)


class RedisPw:
    """A redis-server of the run's own with requirepass, appendonly (its AOF is the store's data)."""

    def __init__(self, d):
        self.dir = d
        self.port = free_port()
        self.log = os.path.join(d, "redis.log")
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", d, "--appendonly", "yes",
             "--appendfsync", "always", "--save", "", "--requirepass", REDIS_PASS, "--logfile", self.log],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as c:
                    c.sendall(b"AUTH " + REDIS_PASS.encode() + b"\r\nPING\r\n")
                    time.sleep(0.05)
                    if b"+PONG" in c.recv(64):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def url(self):
        return "redis://:%s@127.0.0.1:%d/0" % (REDIS_PASS, self.port)

    def data(self):
        """Every byte of the append-only files: what the store wrote."""
        out = b""
        for root, _, files in os.walk(self.dir):
            for f in files:
                if f.startswith("appendonly") or f.endswith(".aof"):
                    with open(os.path.join(root, f), "rb") as fh:
                        out += fh.read()
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def call(base, method, path, body=None, ctx=None, cert=False):
    """A request to prewarmd with the token (or, cert true, the client certificate alone)."""
    h = {} if cert else {"Authorization": "Bearer " + TOKEN}
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
            code, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        code, raw = e.code, e.read()
    text = raw.decode(errors="replace")
    ANSWERS.append(("%s %s" % (method, path.split("?")[0]), text))
    try:
        return code, json.loads(text) if text else None
    except ValueError:
        return code, text


def wait_task(base, tid, ctx, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        code, t = call(base, "GET", "/api/v1/tasks/" + tid, ctx=ctx)
        if code == 200 and t["status"] in ("succeeded", "failed", "cancelled"):
            return t
        time.sleep(0.3)
    raise RuntimeError("task %s did not finish" % tid)


def make_secrets(env):
    """The pull secret and the task webhook's Secret in prewarmd's namespace."""
    cfg = {"auths": {"registry.example.com": {"username": PULL_USER, "password": PULL_PASS}}}
    cfg_b64 = base64.b64encode(json.dumps(cfg).encode()).decode()
    SECRETS["the pull password"] = PULL_PASS
    SECRETS["the pull auth (base64 user:password)"] = base64.b64encode(
        ("%s:%s" % (PULL_USER, PULL_PASS)).encode()).decode()
    SECRETS["the pull Secret's .dockerconfigjson"] = cfg_b64[8:48]
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
              "metadata": {"name": "regcred", "namespace": "prewarm"}, "data": {".dockerconfigjson": cfg_b64}}
    code, body = env.kube("POST", "/api/v1/namespaces/prewarm/secrets", secret)
    if code not in (201, 409):
        raise RuntimeError("pull secret: %s %s" % (code, body))
    hook = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "task-hook", "namespace": "prewarm"},
            "data": {"secret": base64.b64encode(TASK_SECRET.encode()).decode()}}
    code, body = env.kube("POST", "/api/v1/namespaces/prewarm/secrets", hook)
    if code not in (201, 409):
        raise RuntimeError("hook secret: %s %s" % (code, body))
    SECRETS["the task webhook's secret"] = TASK_SECRET
    SECRETS["the task webhook's secret (base64)"] = base64.b64encode(TASK_SECRET.encode()).decode()


def read_api(base, ctx, tids):
    for p in ("/api/v1/tasks", "/api/v1/policies", "/api/v1/agents", "/api/v1/clusters", "/api/v1/whoami",
              "/metrics", "/openapi.json"):
        call(base, "GET", p, ctx=ctx)
    for tid in tids:
        call(base, "GET", "/api/v1/tasks/" + tid, ctx=ctx)
        call(base, "GET", "/api/v1/tasks/%s/nodes?limit=500" % tid, ctx=ctx)


def keep_logs(env, prefix):
    """Stops prewarmd (its last lines written), keeps copies of both servers' logs, closes env."""
    env.stop_prewarmd()
    for name in ("prewarmd.log", "kubesim.log"):
        try:
            shutil.copy(os.path.join(env.dir, name), os.path.join(WORK, prefix + name))
            LOGS.append(os.path.join(WORK, prefix + name))
        except OSError:
            pass
    env.close()


def server_phase(redis, r):
    """prewarmd with the Redis store (password), token file, TLS with client certificates, the audit log,
    a server-wide webhook with --webhook-secret-file and a task webhook with secretRef, pull secrets."""
    make_tls()
    tf = os.path.join(WORK, "tokens.csv")
    with open(tf, "w") as f:
        f.write('%s,sec-admin,uid-sec,"prewarm:admins"\n' % TOKEN)
    SECRETS["the token-file token"] = TOKEN
    sf = os.path.join(WORK, "webhook-secret")
    with open(sf, "w") as f:
        f.write(GLOBAL_SECRET + "\n")
    SECRETS["--webhook-secret-file's key"] = GLOBAL_SECRET
    SECRETS["the Redis password"] = REDIS_PASS
    audit = os.path.join(WORK, "audit.log")
    env = Env(4, time_scale=50, pw_args=[
        "--store", redis.url(), "--auth", "token-file:" + tf, "--audit-log", audit,
        "--tls-cert", os.path.join(WORK, "tls.crt"), "--tls-key", os.path.join(WORK, "tls.key"),
        "--client-ca-file", os.path.join(WORK, "users-ca.crt"),
        "--webhook", r.url("/global"), "--webhook-secret-file", sf, "--webhook-allow-private",
        "--log-level", "debug"])
    try:
        make_secrets(env)
        ctx = ssl.create_default_context(cafile=os.path.join(WORK, "srv-ca.crt"))
        cctx = ssl.create_default_context(cafile=os.path.join(WORK, "srv-ca.crt"))
        cctx.load_cert_chain(os.path.join(WORK, "user.crt"), os.path.join(WORK, "user.key"))
        base = env.api_base
        code, me = call(base, "GET", "/api/v1/whoami", ctx=cctx, cert=True)
        tap(code == 200 and me.get("username") == "secrets-user",
            "the client certificate authenticates (whoami: secrets-user)", "%s %s" % (code, me))
        code, t = call(base, "POST", "/api/v1/tasks", {
            "images": [PRIVATE], "imagePullSecrets": ["regcred"],
            "webhooks": [{"url": r.url("/task"), "secretRef": "task-hook"}]}, ctx=cctx, cert=True)
        if code != 201:
            raise RuntimeError("create: %s %s" % (code, t))
        t = wait_task(base, t["id"], ctx)
        tap(t["status"] == "succeeded" and t.get("createdBy") == "secrets-user",
            "a task with a pull secret, created with the client certificate, succeeds (the credentials were used)",
            "%s %s" % (t["status"], t.get("message")))
        got = r.wait("/task", 2)
        tap(len(got) >= 2 and all(signed_with(q, TASK_SECRET) for q in got),
            "the task webhook's deliveries are signed with its secretRef's key", str(len(got)))
        got = r.wait("/global", 2)
        tap(len(got) >= 2 and all(signed_with(q, GLOBAL_SECRET) for q in got),
            "the server-wide deliveries are signed with --webhook-secret-file's key", str(len(got)))
        # a bad create and a denied one: the audit log gets denials too
        call(base, "POST", "/api/v1/tasks", {"images": [PRIVATE], "imagePullSecrets": ["regcred"]}, ctx=ctx,
             cert=True)
        call(base, "POST", "/api/v1/tasks", {"images": ["bad image"], "webhooks": [{"url": "x"}]}, ctx=ctx)
        read_api(base, ctx, [t["id"]])
        for q in r.requests:
            ANSWERS.append(("the webhook delivery to %s" % q["path"], q["body"].decode(errors="replace")))
        p = subprocess.run([os.path.join(BIN, "prewarmctl"), "--server", base, "--certificate-authority",
                            os.path.join(WORK, "srv-ca.crt"), "--client-certificate", os.path.join(WORK, "user.crt"),
                            "--client-key", os.path.join(WORK, "user.key"), "get", t["id"]],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, KUBECONFIG=os.path.join(WORK, "none")))
        ANSWERS.append(("prewarmctl get", p.stdout + p.stderr))
        tap(p.returncode == 0, "prewarmctl with the client certificate reads the task", p.stderr[-300:])
        data = redis.data()
        tap(t["id"].encode() in data, "the Redis store holds the task (the password let prewarmd in)",
            "%d bytes of AOF" % len(data))
        ANSWERS.append(("the Redis store (its append-only file)", data.decode(errors="replace")))
    finally:
        keep_logs(env, "server-")
        LOGS.append(audit)


def agent_phase(redis):
    """Agent mode over TLS (prewarmd hands agents credentials only over TLS): kubesim's simulated agents
    (PREWARM_SERVER_CA: the server CA) sync with prewarmd, which hands them the pull credentials."""
    port = free_port()
    env = Env(3, time_scale=20, sim_args=["--agents", "--namespaces", "prewarm," + NS_AGENT, "--arm64-percent", "0"],
              pw_args=["--store", redis.url(), "--agents", "--agent-listen", "127.0.0.1:%d" % port,
                       "--agent-namespace", NS_AGENT, "--log-level", "debug",
                       "--tls-cert", os.path.join(WORK, "tls.crt"), "--tls-key", os.path.join(WORK, "tls.key")])
    try:
        make_secrets(env)
        env.kube("POST", "/api/v1/namespaces/%s/serviceaccounts" % NS_AGENT,
                 {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prewarm-agent"}})
        tmpl = {"metadata": {"labels": {"app": "prewarm-agent"}},
                "spec": {"serviceAccountName": "prewarm-agent", "tolerations": [{"operator": "Exists"}],
                         "containers": [{"name": "agent", "image": "ghcr.io/prewarm/prewarm:0.1.0",
                                         "command": ["/prewarm-agent"],
                                         "env": [{"name": "PREWARM_SERVER", "value": "https://127.0.0.1:%d" % port},
                                                 {"name": "PREWARM_SERVER_CA",
                                                  "value": os.path.join(WORK, "srv-ca.crt")}]}]}}
        ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "prewarm-agent"},
              "spec": {"selector": {"matchLabels": {"app": "prewarm-agent"}}, "template": tmpl}}
        code, body = env.kube("POST", "/apis/apps/v1/namespaces/%s/daemonsets" % NS_AGENT, ds)
        if code != 201:
            raise RuntimeError("daemonset: %s %s" % (code, body))
        deadline = time.time() + 60
        healthy = []
        while time.time() < deadline and len(healthy) < 3:
            code, a = env.api("GET", "/api/v1/agents")
            healthy = [x["node"] for x in (a or {}).get("items", []) if x.get("healthy")] if code == 200 else []
            time.sleep(0.3)
        tap(len(healthy) == 3, "every node has a healthy agent", str(healthy))
        tid = env.create_task({"images": [PRIVATE], "mode": "agent", "imagePullSecrets": ["regcred"]})
        t = env.wait_task(tid, 300)
        nodes = env.task_nodes(tid)
        truth = env.truth()
        truth = truth if isinstance(truth, dict) else {n["name"]: n for n in truth}
        tap(t["status"] == "succeeded" and all(n["mode"] == "agent" for n in nodes)
            and all(holds(truth[n["nodeName"]], PRIVATE) for n in nodes),
            "a task in mode agent pulls the private image on every agent (the agents got the credentials)",
            "%s %s" % (t["status"], t.get("message")))
        read_api(env.api_base, ssl.create_default_context(cafile=os.path.join(WORK, "srv-ca.crt")), [tid])
        data = redis.data()
        ANSWERS.append(("the Redis store after agent mode (its append-only file)", data.decode(errors="replace")))
    finally:
        keep_logs(env, "agent-")


def hygiene(redis):
    LOGS.append(redis.log)
    found = []
    for path in LOGS:
        for rotated in [path] + ["%s.%d" % (path, i) for i in range(1, 6)]:
            try:
                with open(rotated, errors="replace") as f:
                    text = f.read()
            except OSError:
                continue
            found += ["%s in %s" % (name, os.path.basename(rotated)) for name, s in SECRETS.items() if s in text]
    for what, text in ANSWERS:
        found += ["%s in %s" % (name, what) for name, s in SECRETS.items() if s in text]
    tap(len(SECRETS) >= 10 and len(LOGS) >= 6 and len(ANSWERS) >= 20 and not found,
        "no secret of the run (%d) appears in its logs (%d files), API answers, deliveries or store (%d texts)"
        % (len(SECRETS), len(LOGS), len(ANSWERS)), "; ".join(sorted(set(found))))
    # the redacted store URL is what prewarmd logged instead
    with open(os.path.join(WORK, "server-prewarmd.log"), errors="replace") as f:
        log = f.read()
    tap("redis://:***@127.0.0.1:%d" % redis.port in log, "prewarmd logs the store URL with the password as ***",
        log[:300])


def main():
    if not REDIS:
        print("1..0 # SKIP: redis-server is not installed (scripts/install-deps installs it)")
        return
    rdir = os.path.join(WORK, "redis")
    os.makedirs(rdir)
    redis = RedisPw(rdir)
    r = Receiver()
    try:
        scenario("server secrets", server_phase, redis, r)
        scenario("agent pull credentials", agent_phase, redis)
        scenario("hygiene", hygiene, redis)
    finally:
        r.close()
        redis.stop()
        shutil.rmtree(WORK, ignore_errors=True)
    finish()


main()
