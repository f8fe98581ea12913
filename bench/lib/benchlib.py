"""benchlib.py: helpers of bench/run: start and stop kubesim and prewarmd (release builds, loopback, port
0, PIDs tracked and every child stopped at exit or on a signal), small HTTP clients for both, kubesim's
request counters, and a process's peak RSS and CPU time from /proc."""
import atexit
import http.client
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
import urllib.parse

CHILDREN = []  # subprocess.Popen objects still to stop


def stop(p, grace=10.0):
    """Stops one child we started: SIGTERM, then SIGKILL after grace seconds."""
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=120)  # a kubesim with 15,000 agent threads takes a while to die on a loaded machine
    if p in CHILDREN:
        CHILDREN.remove(p)


def stop_all():
    for p in list(CHILDREN):
        try:
            stop(p, grace=5.0)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def _on_signal(signum, _frame):
    stop_all()
    sys.exit(128 + signum)


atexit.register(stop_all)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


def spawn(argv, **kw):
    p = subprocess.Popen(argv, **kw)
    CHILDREN.append(p)
    return p


class Http:
    """One keep-alive connection (http or https without verification: loopback only)."""

    def __init__(self, base, token=None, timeout=120):
        u = urllib.parse.urlsplit(base)
        self.host, self.port, self.https = u.hostname, u.port, u.scheme == "https"
        self.token, self.timeout = token, timeout
        self.c = None

    def _conn(self):
        if self.c is None:
            if self.https:
                ctx = ssl._create_unverified_context()  # noqa: S323 - loopback benchmark
                self.c = http.client.HTTPSConnection(self.host, self.port, context=ctx, timeout=self.timeout)
            else:
                self.c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.c

    def req(self, method, path, body=None):
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(3):
            try:
                c = self._conn()
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                raw = r.read()
                return r.status, (json.loads(raw) if raw[:1] in (b"{", b"[") else raw)
            except (http.client.HTTPException, ConnectionError, OSError):
                self.c = None
                if attempt == 2:
                    raise
                time.sleep(0.2)


def read_kubeconfig(path):
    server = token = None
    for line in open(path):
        s = line.strip()
        if s.startswith("server:"):
            server = s.split(None, 1)[1]
        elif s.startswith("token:") and token is None:
            token = s.split(None, 1)[1].strip('"')
    return server, token


class Kubesim:
    def __init__(self, bindir, workdir, nodes, catalog=None, seed=1, scale=1.0, registry=None, node_bw=None,
                 extra=()):
        self.dir = tempfile.mkdtemp(prefix="kubesim-", dir=workdir)
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        argv = [os.path.join(bindir, "kubesim"), "--nodes", str(nodes), "--kubeconfig-out", self.kubeconfig,
                "--seed", str(seed), "--time-scale", str(scale), "--log-level", "warn"]
        if catalog:
            argv += ["--catalog", catalog]
        if registry:
            argv += ["--registry-bandwidth", str(registry)]
        if node_bw:
            argv += ["--node-bandwidth", str(node_bw)]
        argv += list(extra)
        self.log = open(os.path.join(self.dir, "kubesim.log"), "w")
        self.p = spawn(argv, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not (os.path.exists(self.kubeconfig) and os.path.getsize(self.kubeconfig) > 0):
            if self.p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("kubesim did not start (see %s)" % self.log.name)
            time.sleep(0.05)
        self.url, self.token = read_kubeconfig(self.kubeconfig)
        self.http = Http(self.url, self.token)

    def get(self, path):
        st, body = self.http.req("GET", path)
        if st != 200:
            raise RuntimeError("kubesim GET %s: %s %s" % (path, st, body))
        return body

    def stats(self):
        return self.get("/sim/v1/stats")

    def ready_nodes(self):
        return [n["name"] for n in self.get("/sim/v1/nodes")["nodes"] if n["ready"]]

    def bound(self, nodes, images):
        st, body = self.http.req("POST", "/sim/v1/bound", {"nodes": nodes, "images": images})
        if st != 200:
            raise RuntimeError("bound: %s %s" % (st, body))
        return body

    def close(self):
        stop(self.p)
        self.log.close()


def stats_delta(before, after):
    """{verb/resource: count} of the requests made between two /sim/v1/stats snapshots."""
    def flat(s):
        d = {}
        for r in s["requests"]:
            k = "%s %s" % (r["verb"], r["resource"])
            d[k] = d.get(k, 0) + r["count"]
        return d
    b, a = flat(before), flat(after)
    return {k: a[k] - b.get(k, 0) for k in a if a[k] - b.get(k, 0) > 0}


WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def writes(delta):
    return sum(v for k, v in delta.items() if k.split()[0] in WRITE_VERBS)


class Prewarmd:
    def __init__(self, bindir, workdir, kubeconfig, flags=()):
        self.dir = tempfile.mkdtemp(prefix="prewarmd-", dir=workdir)
        self.log = open(os.path.join(self.dir, "prewarmd.log"), "w")
        self.out = os.path.join(self.dir, "stdout")
        argv = [os.path.join(bindir, "prewarmd"), "--listen", "127.0.0.1:0", "--kubeconfig", kubeconfig,
                "--store", "memory:", "--log-level", "warn"] + list(flags)
        self.p = spawn(argv, stdout=open(self.out, "w"), stderr=self.log)
        self.port = None
        deadline = time.monotonic() + 60
        while self.port is None:
            if self.p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("prewarmd did not start (see %s)" % self.log.name)
            for line in open(self.out):
                if line.startswith("listening on "):
                    self.port = int(line.rsplit(":", 1)[1])
            time.sleep(0.05)
        self.base = "http://127.0.0.1:%d" % self.port
        self.http = Http(self.base)
        while True:  # readyz: store open and node informer synced
            st, _ = self.http.req("GET", "/readyz")
            if st == 200:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("prewarmd not ready")
            time.sleep(0.05)

    def create(self, body):
        st, t = self.http.req("POST", "/api/v1/tasks", body)
        if st != 201:
            raise RuntimeError("create task: %s %s" % (st, t))
        return t

    def task(self, tid):
        st, t = self.http.req("GET", "/api/v1/tasks/" + tid)
        if st != 200:
            raise RuntimeError("get task: %s %s" % (st, t))
        return t

    def proc(self):
        return proc_figures(self.p.pid)

    def close(self):
        stop(self.p)
        self.log.close()


def proc_figures(pid):
    """{'hwm_kb', 'rss_kb', 'cpu_s'} of a live process from /proc."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                out["hwm_kb"] = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                out["rss_kb"] = int(line.split()[1])
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    out["cpu_s"] = (int(fields[11]) + int(fields[12])) / tck  # utime, stime (fields 14, 15)
    return out


FINISHED = ("succeeded", "failed", "cancelled")
REDIS = shutil.which("redis-server")


class Redis:
    """A redis-server of the bench's own on a free loopback port (appendonly yes, appendfsync always:
    every acknowledged write on disk, as docs/operations.md recommends at the safe end)."""

    def __init__(self, workdir):
        self.dir = tempfile.mkdtemp(prefix="redis-", dir=workdir)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.p = spawn([REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir, "--appendonly",
                        "yes", "--appendfsync", "always", "--save", "", "--logfile",
                        os.path.join(self.dir, "redis.log")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def close(self):
        stop(self.p)


def done_nodes(p):
    g = p["progress"]
    return g["succeededNodes"] + g["failedNodes"] + g["skippedNodes"] + g["cancelledNodes"]
