"""prewarmd_lib: helpers for prewarmd's integration tests against kubesim (not a suite itself).

Env starts kubesim (waits for its kubeconfig), then prewarmd on 127.0.0.1:0 (reads the port from its
first stdout line, waits for /readyz), and offers calls to both. Every wait is bounded; close() stops
both processes by PID and removes the temporary directory. Results are TAP lines via tap()."""
import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

import openapi_check

BIN = os.environ.get("PW_BIN") or os.path.join(os.path.dirname(__file__), "..", "..", "build", "asan", "bin")
FINAL = ("succeeded", "failed", "cancelled")
REDIS = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
failures = 0


def tap(ok, name, why=""):
    global failures
    if not ok:
        failures += 1
    print(("ok - " if ok else "not ok - ") + name + ((" # " + why) if (why and not ok) else ""), flush=True)


class Env:
    def __init__(self, nodes, sim_args=(), pw_args=(), time_scale=20):
        self.dir = tempfile.mkdtemp(prefix="pwtest-")
        self.sim = self.pw = None
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.sim_log = open(os.path.join(self.dir, "kubesim.log"), "w")
        self.sim = subprocess.Popen(
            [os.path.join(BIN, "kubesim"), "--nodes", str(nodes), "--listen", "127.0.0.1:0",
             "--kubeconfig-out", self.kubeconfig, "--time-scale", str(time_scale), "--log-level", "warn"]
            + list(sim_args), stdout=self.sim_log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while not os.path.exists(self.kubeconfig):
            if time.time() > deadline or self.sim.poll() is not None:
                raise RuntimeError("kubesim did not start: " + self.tail("kubesim.log"))
            time.sleep(0.1)
        with open(self.kubeconfig) as f:
            kc = yaml.safe_load(f)
        ctx = next(c for c in kc["contexts"] if c["name"] == kc["current-context"])["context"]
        cl = next(c for c in kc["clusters"] if c["name"] == ctx["cluster"])["cluster"]
        user = next(u for u in kc["users"] if u["name"] == ctx["user"])["user"]
        self.server = cl["server"]
        self.token = user.get("token")
        self.ssl = None
        if self.server.startswith("https"):
            self.ssl = ssl.create_default_context()
            if "certificate-authority-data" in cl:
                self.ssl.load_verify_locations(cadata=base64.b64decode(cl["certificate-authority-data"]).decode())
            elif "certificate-authority" in cl:
                self.ssl.load_verify_locations(cafile=cl["certificate-authority"])
        self.pw_args = list(pw_args)
        # the Jobs' namespace, as deploy/ creates it (409: kubesim made it already)
        code, body = self.kube("POST", "/api/v1/namespaces",
                               {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prewarm"}})
        if code not in (201, 409):
            raise RuntimeError("cannot create namespace prewarm: %s %s" % (code, body))
        self.start_prewarmd()

    def start_prewarmd(self):
        """Starts prewarmd with self.pw_args ("{dir}" in them becomes the test's temporary directory)."""
        self.pw_log = open(os.path.join(self.dir, "prewarmd.log"), "a")
        self.pw = subprocess.Popen(
            [os.path.join(BIN, "prewarmd"), "--kubeconfig", self.kubeconfig, "--listen", "127.0.0.1:0", "--store", "memory:",
             "--log-format", "text"] + [a.replace("{dir}", self.dir) for a in self.pw_args], stdout=subprocess.PIPE, stderr=self.pw_log, text=True)
        line = self.pw.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError("prewarmd did not start: " + self.tail("prewarmd.log"))
        # with --tls-cert the API serves HTTPS (prewarmd_auth.py checks the certificate itself)
        tls = "--tls-cert" in self.pw_args
        self.api_base = ("https://" if tls else "http://") + line.split()[-1]
        self.api_ssl = ssl._create_unverified_context() if tls else None
        deadline = time.time() + 60
        while True:
            code, _ = self.api("GET", "/readyz")
            if code == 200:
                break
            if time.time() > deadline:
                raise RuntimeError("prewarmd never became ready: " + self.tail("prewarmd.log"))
            time.sleep(0.2)

    def tail(self, name, n=30):
        try:
            with open(os.path.join(self.dir, name)) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def _call(self, url, method, body, headers, ctx):
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers = dict(headers, **{"Content-Type": headers.get("Content-Type", "application/json")})
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
                raw = r.read()
                code = r.status
        except urllib.error.HTTPError as e:
            raw = e.read()
            code = e.code
        try:
            return code, json.loads(raw) if raw else None
        except ValueError:
            return code, raw.decode(errors="replace")

    def api(self, method, path, body=None):
        code, out = self._call(self.api_base + path, method, body, {}, self.api_ssl)
        openapi_check.check(method, path, code, out)
        return code, out

    def kube(self, method, path, body=None, content_type=None):
        h = {"Authorization": "Bearer " + self.token} if self.token else {}
        if content_type:
            h["Content-Type"] = content_type
        return self._call(self.server + path, method, body, h, self.ssl)

    def create_task(self, spec):
        code, t = self.api("POST", "/api/v1/tasks", spec)
        if code != 201:
            raise RuntimeError("create failed: %s %s" % (code, t))
        return t["id"]

    def wait_task(self, tid, timeout=300, until=FINAL):
        deadline = time.time() + timeout
        while True:
            code, t = self.api("GET", "/api/v1/tasks/" + tid)
            if code == 200 and t["status"] in until:
                return t
            if time.time() > deadline:
                raise RuntimeError("task %s still %s after %ss" % (tid, t.get("status") if t else code, timeout))
            time.sleep(0.3)

    def task_nodes(self, tid, state=None):
        items, cont = [], ""
        for _ in range(1000):
            q = "?limit=500" + ("&state=" + state if state else "") + ("&continue=" + cont if cont else "")
            code, page = self.api("GET", "/api/v1/tasks/%s/nodes%s" % (tid, q))
            if code != 200:
                raise RuntimeError("nodes list: %s %s" % (code, page))
            items += page["items"]
            cont = page.get("continue") or ""
            if not cont:
                return items
        raise RuntimeError("endless node pagination")

    def truth(self):
        return self.kube("GET", "/sim/v1/truth")[1]["nodes"]

    def stats(self):
        return self.kube("GET", "/sim/v1/stats")[1]

    def nodes(self, selector=None):
        q = "?labelSelector=" + urllib.request.quote(selector) if selector else ""
        return self.kube("GET", "/api/v1/nodes" + q)[1]["items"]

    def prewarm_jobs(self, ns="prewarm"):
        code, l = self.kube("GET", "/apis/batch/v1/namespaces/%s/jobs?labelSelector=app.kubernetes.io%%2Fmanaged-by%%3Dprewarm" % ns)
        return l["items"] if code == 200 else None

    def wait_no_jobs(self, timeout=60):
        deadline = time.time() + timeout
        while True:
            jobs = self.prewarm_jobs()
            if jobs == []:
                return True
            if time.time() > deadline:
                return False
            time.sleep(0.3)

    def stop_prewarmd(self, sig=signal.SIGTERM):
        if self.pw and self.pw.poll() is None:
            self.pw.send_signal(sig)
            try:
                return self.pw.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.pw.kill()
                self.pw.wait()
                return None
        return self.pw.returncode if self.pw else None

    def close(self):
        self.stop_prewarmd()
        if self.sim and self.sim.poll() is None:
            self.sim.terminate()
            try:
                self.sim.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.sim.kill()
                self.sim.wait()
        # the sanitizers write to the servers' stderr (their logs): a report there fails the suite
        for name in ("kubesim.log", "prewarmd.log"):
            path = os.path.join(self.dir, name)
            try:
                with open(path, errors="replace") as f:
                    rep = sanitizer_report(f.read())
            except OSError:
                continue
            sanitizer_logs.append(name)
            if rep:
                sanitizer_reports.append("%s:\n%s" % (name, rep))
        if os.environ.get("PW_KEEP_TMP"):
            print("# logs kept in " + self.dir, flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


REDIS = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)


def free_port():
    """A loopback port free now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_redis_pki(d):
    """A test PKI in d with the openssl command: ca.crt, server.crt/key for IP 127.0.0.1, client.crt/key."""
    def ossl(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True, capture_output=True, timeout=60)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    ossl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=pw-it-ca")
    for who in ("server", "client"):
        ossl("req", *ec, "-keyout", who + ".key", "-out", who + ".csr", "-subj", "/CN=pw-it-" + who)
        ossl("x509", "-req", "-in", who + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
             "-extfile", who + ".ext", "-out", who + ".crt")


class Redis:
    """A redis-server of the test's own, in dir (kept across restarts: its AOF is the data). With tls,
    it also serves TLS on tls_port with a test PKI made in dir/pki (client certificates required)."""

    def __init__(self, dir_, tls=False):
        self.dir = dir_
        self.port = free_port()
        self.pki = None
        if tls:
            self.pki = os.path.join(dir_, "pki")
            os.makedirs(self.pki, exist_ok=True)
            make_redis_pki(self.pki)
            self.tls_port = free_port()
        self.proc = None
        self.start()

    def start(self):
        tls = []
        if self.pki:
            tls = ["--tls-port", str(self.tls_port), "--tls-cert-file", os.path.join(self.pki, "server.crt"),
                   "--tls-key-file", os.path.join(self.pki, "server.key"),
                   "--tls-ca-cert-file", os.path.join(self.pki, "ca.crt")]
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--appendonly", "yes",
             "--appendfsync", "always", "--save", "", "--logfile", os.path.join(self.dir, "redis.log")] + tls,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def url(self):
        """redis://, or with tls rediss:// to the TLS port with the test CA and client certificate."""
        if not self.pki:
            return "redis://127.0.0.1:%d/0" % self.port
        return "rediss://127.0.0.1:%d/0?ca=%s/ca.crt&cert=%s/client.crt&key=%s/client.key" % (
            self.tls_port, self.pki, self.pki, self.pki)


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "WARNING: ThreadSanitizer",
                   "SUMMARY: UndefinedBehaviorSanitizer")
sanitizer_logs = []     # server logs scanned by Env.close()
sanitizer_reports = []  # the reports found in them


def sanitizer_report(text):
    """The first sanitizer report in a server's log (its first 30 lines), or "" when there is none."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if any(m in line for m in SANITIZER_MARKS):
            return "\n".join(lines[i:i + 30])
    return ""


def norm(ref):
    """A loose normalisation for comparing against kubesim's truth: drop docker.io/library/."""
    for p in ("docker.io/library/", "docker.io/"):
        if ref.startswith(p):
            return ref[len(p):]
    return ref


def holds(truth_node, image):
    return norm(image) in {norm(i) for i in truth_node.get("images", [])}


def wait_for(pred, timeout, step=0.2):
    """pred()'s first true value within timeout seconds, else its last value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def scenario(name, fn, *args, **kw):
    """Runs fn(*args) catching exceptions into a failing TAP line."""
    try:
        fn(*args, **kw)
    except Exception as e:  # noqa: BLE001 - a test must report, not crash
        tap(False, name, "exception: %s" % e)


def finish():
    if openapi_check.checked:
        openapi_check.report(tap)
    if sanitizer_logs:
        tap(not sanitizer_reports, "no sanitizer report in the servers' logs (%d scanned)" % len(sanitizer_logs),
            "\n".join(sanitizer_reports)[:4000])
    sys.exit(1 if failures else 0)


class Sim:
    """One more kubesim (for the multi-cluster suites): its kubeconfig, the calls Env offers on it,
    and close() by PID. Its log is scanned for sanitizer reports like Env's."""

    def __init__(self, nodes, sim_args=(), time_scale=20, name="sim"):
        self.dir = tempfile.mkdtemp(prefix="pwsim-")
        self.name = name
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.log = open(os.path.join(self.dir, "kubesim.log"), "w")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "kubesim"), "--nodes", str(nodes), "--listen", "127.0.0.1:0",
             "--kubeconfig-out", self.kubeconfig, "--time-scale", str(time_scale), "--log-level", "warn"]
            + list(sim_args), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while not os.path.exists(self.kubeconfig):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("kubesim %s did not start" % name)
            time.sleep(0.1)
        with open(self.kubeconfig) as f:
            kc = yaml.safe_load(f)
        ctx = next(c for c in kc["contexts"] if c["name"] == kc["current-context"])["context"]
        cl = next(c for c in kc["clusters"] if c["name"] == ctx["cluster"])["cluster"]
        self.server = cl["server"]
        self.token = next(u for u in kc["users"] if u["name"] == ctx["user"])["user"].get("token")
        self.ssl = ssl.create_default_context()
        self.ssl.load_verify_locations(cadata=base64.b64decode(cl["certificate-authority-data"]).decode())
        self.kube("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prewarm"}})

    def kube(self, method, path, body=None):
        h = {"Authorization": "Bearer " + self.token} if self.token else {}
        return Env._call(self, self.server + path, method, body, h, self.ssl)

    truth = Env.truth

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            with open(os.path.join(self.dir, "kubesim.log"), errors="replace") as f:
                rep = sanitizer_report(f.read())
            sanitizer_logs.append(self.name)
            if rep:
                sanitizer_reports.append("%s:\n%s" % (self.name, rep))
        except OSError:
            pass
        if not os.environ.get("PW_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)
