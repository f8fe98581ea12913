#!/usr/bin/env python3
"""Three prewarmd replicas with --leader-elect on one kubesim and one real redis-server (appendonly,
appendfsync always, on a free loopback port): exactly one leader, and the replicas agree on it; tasks
created through any replica (followers included) run once, each node's Job created exactly once
(kubesim's stats) and never by a follower (kubesim's writes per User-Agent, and each replica's
prewarm_kube_requests_total); a cancel sent to a follower is applied by the leader; SIGKILL of the leader
mid-task -> another replica leads within the lease duration and the task ends with every node's result
right; the old leader restarted becomes a follower; Redis SIGKILLed and restarted under the replicas ->
503 meanwhile, then they recover and run a new task; the leader cut off from the API server (kubesim
faults by User-Agent) steps down before its Lease expires and another takes over. Short Lease timings
(lease 4 s, renew deadline 3 s, retry 0.5 s) keep the suite quick. SKIP without redis-server."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import BIN, REDIS, Env, Redis, finish, holds, sanitizer_logs, sanitizer_reports, \
    sanitizer_report, scenario, tap  # noqa: E402
import openapi_check  # noqa: E402

IMAGES = ["python:3.12", "busybox:1.36"]
LEASE_S, RENEW_S, RETRY_S = 4, 3, 0.5


class Replica:
    def __init__(self, env, name):
        self.env, self.name, self.proc, self.base = env, name, None, None

    def start(self):
        log = open(os.path.join(self.env.dir, "prewarmd-%s.log" % self.name), "a")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "prewarmd"), "--kubeconfig", self.env.kubeconfig, "--listen", "127.0.0.1:0",
             "--log-format", "text", "--store", self.env.redis.url(), "--store-prefix", "ha:", "--instance", "ha-it",
             "--leader-elect", "--leader-elect-identity", self.name,
             "--leader-elect-lease-duration", "%ds" % LEASE_S, "--leader-elect-renew-deadline", "%ds" % RENEW_S,
             "--leader-elect-retry-period", "%dms" % int(RETRY_S * 1000), "--job-ttl", "1h"],
            stdout=subprocess.PIPE, stderr=log, text=True)
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


class HA(Env):
    """kubesim (from Env), a redis-server, three replicas r0, r1, r2."""

    def __init__(self, nodes, time_scale=5):
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
    return sum(r["count"] for r in env.stats()["requests"]
               if r.get("resource") == "jobs" and r.get("verb") == "create" and r.get("code") == 201)


def writes_by(env, name):
    """kubesim's count of Job creates and deletes sent with replica name's User-Agent."""
    c = env.stats().get("clients", {})
    return sum(n for ua, v in c.items() if "(%s)" % name in ua for k, n in v.items() if k.endswith(" jobs"))


def wait_final(replica_for, tid, timeout):
    """Waits for tid to finish, asking whichever replica replica_for() gives (reads from any replica)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        code, t = replica_for().api("GET", "/api/v1/tasks/" + tid)
        if code == 200 and t["status"] in ("succeeded", "failed", "cancelled"):
            return t
        time.sleep(0.3)
    raise RuntimeError("task %s did not finish in %ss" % (tid, timeout))


def check_nodes(env, via, tid, n, what):
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
    tap(all(holds(truth[x["nodeName"]], i) for x in nodes for i in IMAGES),
        what + ": kubesim's truth: every node holds the images")


def basics(env):
    leader, _ = env.wait_leader(LEASE_S + 10)
    tap(leader is not None, "ha: exactly one of three replicas leads")
    if not leader:
        return
    deadline = time.time() + LEASE_S
    while True:  # a replica names the holder once it has read the Lease (every retry period)
        views = [r.leader() for r in env.replicas]
        if all(v and v["holder"] == leader.name for v in views) or time.time() > deadline:
            break
        time.sleep(0.1)
    tap(all(v and v["leaderElection"] and v["holder"] == leader.name for v in views),
        "ha: every replica names the same holder in GET /api/v1/leader", str(views))
    tap([r.metric("prewarm_leader") for r in env.replicas].count(1.0) == 1, "ha: prewarm_leader is 1 on one replica")
    tap(all(r.api("GET", "/readyz")[0] == 200 for r in env.replicas), "ha: /readyz is 200 on followers too")
    # one task through each replica: followers store it, the leader picks it up
    tids = []
    for r in env.replicas:
        code, t = r.api("POST", "/api/v1/tasks", {"images": IMAGES, "batchSize": 10})
        tap(code == 201, "ha: create through %s (%s) answers 201" % (r.name, "leader" if r is leader else "follower"),
            "%s %s" % (code, t))
        tids.append(t["id"] if code == 201 else None)
    f1, f2 = [r for r in env.replicas if r is not leader]
    for tid, r in zip(tids, env.replicas):
        if not tid:
            continue
        t = wait_final(lambda: f1, tid, 300)
        tap(t["status"] == "succeeded" and t["progress"]["succeededNodes"] == 20,
            "ha: the task created on %s ran to succeeded" % r.name, "%s %s" % (t["progress"], t["message"]))
    creates = job_creates(env)
    tap(creates == 60, "ha: kubesim saw exactly one Job create per node (3 tasks x 20 nodes)", "created %d" % creates)
    for r in (f1, f2):
        tap(writes_by(env, r.name) == 0, "ha: follower %s sent no Job write (kubesim's writes by User-Agent)" % r.name,
            str(env.stats().get("clients")))
        tap(r.metric("prewarm_kube_requests_total", 'verb="create",resource="jobs"') == 0,
            "ha: follower %s's prewarm_kube_requests_total shows no Job create" % r.name)
    tap(writes_by(env, leader.name) >= 60, "ha: the leader sent the Job creates", str(env.stats().get("clients")))
    check_nodes(env, f2, tids[0], 20, "ha")
    # policies: written through the leader only, and only its controller makes waves
    pol = {"name": "ha-warm", "images": ["busybox:1.36"], "batchSize": 10}
    code, body = f1.api("POST", "/api/v1/policies", pol)
    tap(code == 503 and leader.name in body.get("message", ""),
        "ha: a policy write on a follower answers 503 naming the leader", "%s %s" % (code, body))
    code, body = leader.api("POST", "/api/v1/policies", pol)
    tap(code == 201, "ha: the leader creates the policy", "%s %s" % (code, body))
    deadline, waves = time.time() + 120, []
    while time.time() < deadline:
        code, l = leader.api("GET", "/api/v1/tasks?limit=100")
        waves = [t for t in l.get("items", []) if t.get("policy") == "ha-warm"] if code == 200 else []
        if waves and all(t["status"] in ("succeeded", "failed", "cancelled") for t in waves):
            break
        time.sleep(0.5)
    time.sleep(3)  # room for a duplicate wave from a follower's controller, were there one
    code, l = leader.api("GET", "/api/v1/tasks?limit=100")
    waves = [t for t in l.get("items", []) if t.get("policy") == "ha-warm"] if code == 200 else []
    nodes = sum(t["progress"]["totalNodes"] for t in waves)
    tap(len(waves) >= 1 and nodes == 20 and all(t["status"] == "succeeded" for t in waves),
        "ha: the policy's waves cover each of the 20 nodes once (no wave from a follower)",
        json.dumps([(t["id"], t["status"], t["progress"]["totalNodes"]) for t in waves]))
    # a cancel sent to a follower, of a task created on the other follower
    code, t = f1.api("POST", "/api/v1/tasks", {"images": ["nginx:1.27"], "batchSize": 1, "strategy": "batch"})
    victim = t["id"] if code == 201 else None
    code, t = f2.api("DELETE", "/api/v1/tasks/%s" % victim)
    tap(code == 200 and t["status"] == "cancelled", "ha: a cancel sent to a follower is applied by the leader",
        "%s %s" % (code, t))


def takeover(env):
    leader, _ = env.wait_leader(LEASE_S + 10)
    if not leader:
        tap(False, "takeover: a leader to kill")
        return
    f = env.follower(leader)
    code, t = f.api("POST", "/api/v1/tasks", {"images": IMAGES, "batchSize": 10, "strategy": "batch"})
    tid = t["id"]
    deadline = time.time() + 120
    while time.time() < deadline:  # mid-task: some nodes done, most not
        code, t = f.api("GET", "/api/v1/tasks/" + tid)
        if code == 200 and t["progress"]["succeededNodes"] >= 10 and t["progress"]["runningNodes"] > 0:
            break
        time.sleep(0.2)
    before = t["progress"]["succeededNodes"]
    reads_failed = 0
    leader.stop(signal.SIGKILL)
    killed = time.time()
    new, seen = None, killed
    while time.time() - killed < LEASE_S + 10:
        code, _ = f.api("GET", "/api/v1/tasks/" + tid)
        reads_failed += code != 200
        new, seen = env.wait_leader(0.2, exclude=(leader,))
        if new:
            break
    took = seen - killed
    tap(new is not None and took <= LEASE_S + 1.5,
        "takeover: another replica leads %.1fs after SIGKILL of the leader (lease %ds)" % (took, LEASE_S),
        "new %s" % (new.name if new else None))
    tap(reads_failed == 0, "takeover: reads on a follower never failed during the takeover", str(reads_failed))
    t = wait_final(lambda: f, tid, 600)
    p = t["progress"]
    tap(t["status"] == "succeeded" and p["succeededNodes"] == 50 and before < 50,
        "takeover: the task ends succeeded after the leader died at %d/50" % before, "%s %s" % (p, t["message"]))
    tap(job_creates(env) == 50, "takeover: exactly one Job create per node across both leaders",
        "created %d" % job_creates(env))
    check_nodes(env, f, tid, 50, "takeover")
    leader.start()  # the old leader again, same identity: the Lease names the new one
    time.sleep(LEASE_S)
    v = leader.leader() or {}
    tap(v.get("leading") is False and new and v.get("holder") == new.name,
        "takeover: the old leader restarted is a follower", str(v))
    tap(len(env.leaders()) == 1, "takeover: still exactly one leader")


def redis_restart(env):
    leader, _ = env.wait_leader(LEASE_S + 10)
    f = env.follower(leader)
    env.redis.kill(signal.SIGKILL)
    time.sleep(1)
    codes = {r.name: r.api("GET", "/api/v1/tasks")[0] for r in env.replicas}
    tap(all(c == 503 for c in codes.values()), "redis down: every replica answers 503 on reads", str(codes))
    env.redis.start()
    deadline = time.time() + 30
    while time.time() < deadline and not all(r.api("GET", "/api/v1/tasks")[0] == 200 for r in env.replicas):
        time.sleep(0.3)
    codes = {r.name: r.api("GET", "/api/v1/tasks")[0] for r in env.replicas}
    tap(all(c == 200 for c in codes.values()), "redis back: every replica reads again", str(codes))
    code, t = f.api("POST", "/api/v1/tasks", {"images": IMAGES, "batchSize": 10})
    tap(code == 201, "redis back: a create through a follower is stored", "%s %s" % (code, t))
    t = wait_final(lambda: f, t["id"], 300)
    tap(t["status"] == "succeeded" and t["progress"]["succeededNodes"] == 20, "redis back: the new task runs",
        "%s %s" % (t["progress"], t["message"]))
    tap(len(env.leaders()) == 1, "redis back: exactly one leader")


def partition(env):
    leader, _ = env.wait_leader(LEASE_S + 10)
    code, _ = env.kube("POST", "/sim/v1/faults",
                       {"errors": [{"verb": "*", "resource": "*", "code": 500, "rate": 1.0,
                                    "userAgent": "(%s)" % leader.name}]})
    cut = time.time()
    stepped = None
    while time.time() - cut < LEASE_S + 5:
        v = leader.leader() or {}
        if v.get("leading") is False:
            stepped = time.time() - cut
            break
        time.sleep(0.05)
    # the Lease can be taken LEASE_S after the last renewal a follower saw, which was before the cut
    tap(stepped is not None and stepped < LEASE_S,
        "partition: the leader cut off from the API server steps down %.1fs after the cut, before its %ds "
        "Lease could expire" % (stepped or -1, LEASE_S))
    new, _ = env.wait_leader(LEASE_S + 10, exclude=(leader,))
    tap(new is not None, "partition: another replica takes over", str([r.name for r in env.leaders()]))
    env.kube("POST", "/sim/v1/faults", {})
    time.sleep(LEASE_S)
    tap(len(env.leaders()) == 1, "partition healed: exactly one leader")


def with_ha(nodes, fn):
    env = None
    try:
        env = HA(nodes)
        fn(env)
    finally:
        if env:
            env.close()


if not REDIS:
    print("1..0 # SKIP: redis-server is not installed (scripts/install-deps installs it)")
    sys.exit(0)
scenario("ha basics", with_ha, 20, basics)
scenario("ha takeover", with_ha, 50, takeover)
scenario("ha redis restart", with_ha, 20, redis_restart)
scenario("ha partition", with_ha, 20, partition)
finish()
