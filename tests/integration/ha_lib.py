"""ha_lib: prewarmd replicas with --leader-elect on one kubesim and one redis-server, for the HA suites
(prewarmd_ha.py, prewarmd_ha_kills.py; not a suite itself).

HA(nodes, timings) starts kubesim (prewarmd_lib.Env), a redis-server of its own (appendonly,
appendfsync always, on a free loopback port) and three replicas r0, r1, r2 on it; timings is
(lease s, renew deadline s, retry s), or None for prewarmd's defaults (client-go's: 15 s, 10 s, 2 s).
close() stops everything by PID and scans the replicas' logs for sanitizer reports."""
import os
import shutil
import signal
import subprocess
import time
import urllib.request

from prewarmd_lib import BIN, Env, Redis, holds, sanitizer_logs, sanitizer_reports, sanitizer_report, tap
import openapi_check

LEASE_NAME = "prewarmd"  # prewarmd's --leader-elect-lease-name default, in --namespace (prewarm)


class Replica:
    def __init__(self, env, name):
        self.env, self.name, self.proc, self.base = env, name, None, None

    def start(self):
        log = open(os.path.join(self.env.dir, "prewarmd-%s.log" % self.name), "a")
        timing = []
        if self.env.timings:
            lease, renew, retry = self.env.timings
            timing = ["--leader-elect-lease-duration", "%dms" % int(lease * 1000),
                      "--leader-elect-renew-deadline", "%dms" % int(renew * 1000),
                      "--leader-elect-retry-period", "%dms" % int(retry * 1000)]
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "prewarmd"), "--kubeconfig", self.env.kubeconfig, "--listen", "127.0.0.1:0",
             "--log-format", "text", "--store", self.env.redis.url(), "--store-prefix", "ha:", "--instance", "ha-it",
             "--leader-elect", "--leader-elect-identity", self.name, "--job-ttl", "1h"] + timing
            + list(self.env.replica_args), stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError("replica %s did not start: %s" % (self.name, self.env.tail("prewarmd-%s.log" % self.name)))
        self.base = "http://" + line.split()[-1]
        deadline = time.time() + 60
        while self.api("GET", "/readyz")[0] != 200:  # a follower is ready too (its node cache synced)
            if time.time() > deadline:
                raise RuntimeError("replica %s never became ready" % self.name)
            time.sleep(0.2)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def api(self, method, path, body=None):
        try:
            code, out = self.env._call(self.base + path, method, body, {}, None)
        except OSError as e:  # a replica being killed
            return 0, str(e)
        openapi_check.check(method, path, code, out)  # every answer against src/api/openapi.json
        return code, out

    def leader(self):
        code, doc = self.api("GET", "/api/v1/leader")
        return doc if code == 200 else None

    def metric(self, name, labels=""):
        try:
            with urllib.request.urlopen(self.base + "/metrics", timeout=10) as r:
                text = r.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + ("{" if labels else " ")) and labels in line:
                return float(line.split()[-1])
        return 0.0

    def stop(self, sig=signal.SIGTERM):
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()


class HA(Env):
    """kubesim (from Env), a redis-server, three replicas r0, r1, r2."""

    def __init__(self, nodes, timings=None, time_scale=5, replica_args=()):
        self.timings = timings
        self.replica_args = list(replica_args)
        self.rdir = os.path.join("/tmp", "pw-ha-it-%d" % os.getpid())
        os.makedirs(self.rdir, exist_ok=True)
        self.redis = Redis(self.rdir)
        self.replicas = []
        super().__init__(nodes, time_scale=time_scale)

    def start_prewarmd(self):  # Env's hook: the three replicas instead of one prewarmd
        self.replicas = [Replica(self, "r%d" % i) for i in range(3)]
        for r in self.replicas:
            r.start()
        self.api_base = self.replicas[0].base
        self.api_ssl = None

    def leaders(self):
        return [r for r in self.replicas if r.alive() and (r.leader() or {}).get("leading")]

    def wait_leader(self, timeout, exclude=()):
        """The one leader among the live replicas (not in exclude), and when it was seen."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            ls = [r for r in self.leaders() if r not in exclude]
            if len(ls) == 1:
                return ls[0], time.time()
            time.sleep(0.05)
        return None, time.time()

    def follower(self, leader):
        return next(r for r in self.replicas if r is not leader and r.alive())

    def lease_holder(self):
        """The Lease's holderIdentity as kubesim has it ("" when none or no Lease yet)."""
        code, lease = self.kube("GET", "/apis/coordination.k8s.io/v1/namespaces/prewarm/leases/" + LEASE_NAME)
        return ((lease or {}).get("spec") or {}).get("holderIdentity") or "" if code == 200 else ""

    def stop_prewarmd(self, sig=signal.SIGTERM):
        for r in self.replicas:
            r.stop(sig)

    def close(self):
        self.stop_prewarmd()
        for r in self.replicas:
            name = "prewarmd-%s.log" % r.name
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    rep = sanitizer_report(f.read())
            except OSError:
                continue
            sanitizer_logs.append(name)
            if rep:
                sanitizer_reports.append("%s:\n%s" % (name, rep))
        super().close()
        self.redis.kill()
        shutil.rmtree(self.rdir, ignore_errors=True)


def job_creates(env):
    """kubesim's count of Job creates answered 201 (every client)."""
    return sum(r["count"] for r in env.stats()["requests"]
               if r.get("resource") == "jobs" and r.get("verb") == "create" and r.get("code") == 201)


def writes_by(env, name, stats=None):
    """kubesim's count of Job creates and deletes sent with replica name's User-Agent."""
    c = (stats or env.stats()).get("clients", {})
    return sum(n for ua, v in c.items() if "(%s)" % name in ua for k, n in v.items() if k.endswith(" jobs"))


def kube_writes(stats, names):
    """{replica: its Kubernetes writes but the Lease's} from kubesim's per-User-Agent counts of write
    attempts (the elector's own client says "leader-election" in its User-Agent)."""
    c = stats.get("clients", {})
    return {n: sum(k for ua, v in c.items() if "(%s)" % n in ua and "leader-election" not in ua
                   for key, k in v.items() if not key.endswith(" leases"))
            for n in names}


def wait_final(replica_for, tid, timeout):
    """Waits for tid to finish, asking whichever replica replica_for() gives (reads from any replica)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        code, t = replica_for().api("GET", "/api/v1/tasks/" + tid)
        if code == 200 and t["status"] in ("succeeded", "failed", "cancelled"):
            return t
        time.sleep(0.3)
    raise RuntimeError("task %s did not finish in %ss" % (tid, timeout))


def check_nodes(env, via, tid, n, images, what):
    """TAP: tid's n node results read through replica via all succeeded, and kubesim's truth agrees."""
    nodes = []
    cont = ""
    for _ in range(100):
        code, page = via.api("GET", "/api/v1/tasks/%s/nodes?limit=500%s" % (tid, "&continue=" + cont if cont else ""))
        if code != 200:
            break
        nodes += page["items"]
        cont = page.get("continue") or ""
        if not cont:
            break
    tap(len(nodes) == n and all(x["state"] == "succeeded" for x in nodes), what + ": every node's result succeeded",
        "%d nodes, states %s" % (len(nodes), sorted({x["state"] for x in nodes})))
    truth = env.truth()
    tap(all(holds(truth[x["nodeName"]], i) for x in nodes for i in images),
        what + ": kubesim's truth: every node holds the images")
    return nodes
