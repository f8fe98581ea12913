#!/usr/bin/env python3
"""Three prewarmd replicas with --leader-elect on one kubesim and one real redis-server (appendonly,
appendfsync always, on a free loopback port): exactly one leader, and the replicas agree on it; tasks
created through any replica (followers included) run once, each node's Job created exactly once
(kubesim's stats) and never by a follower (kubesim's writes per User-Agent, and each replica's
prewarm_kube_requests_total); a cancel sent to a follower is applied by the leader; SIGKILL of the leader
mid-task -> another replica leads within the lease duration and the task ends with every node's result
right; the old leader restarted becomes a follower; Redis SIGKILLed and restarted under the replicas ->
503 meanwhile, then they recover and run a new task; Redis and the leader killed
together -> the new leader's takeover waits for Redis, then resumes the task; the leader cut off from
the API server (kubesim faults by User-Agent) steps down before its Lease expires and another takes
over. Short Lease timings
(lease 4 s, renew deadline 3 s, retry 0.5 s) keep the suite quick. SKIP without redis-server."""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import REDIS, finish, scenario, tap  # noqa: E402
from ha_lib import HA, check_nodes, job_creates, wait_final, writes_by  # noqa: E402

IMAGES = ["python:3.12", "busybox:1.36"]
LEASE_S, RENEW_S, RETRY_S = 4, 3, 0.5


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
    check_nodes(env, f2, tids[0], 20, IMAGES, "ha")
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
    check_nodes(env, f, tid, 50, IMAGES, "takeover")
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


def redis_takeover(env):
    """Redis and the leader die together: the new leader wins the Lease while the store is down, so its
    takeover cannot read the unfinished tasks; it must retry until Redis is back and then resume the
    task (not lead with nothing in memory while the task stays running in the store)."""
    leader, _ = env.wait_leader(LEASE_S + 10)
    f = env.follower(leader)
    code, t = f.api("POST", "/api/v1/tasks", {"images": IMAGES, "batchSize": 5})
    tid = t["id"]
    deadline = time.time() + 120
    while time.time() < deadline:
        code, t = f.api("GET", "/api/v1/tasks/" + tid)
        if code == 200 and t["progress"]["succeededNodes"] >= 5 and t["progress"]["runningNodes"] > 0:
            break
        time.sleep(0.2)
    env.redis.kill(signal.SIGKILL)
    leader.stop(signal.SIGKILL)
    new, _ = env.wait_leader(LEASE_S + 10, exclude=(leader,))
    tap(new is not None, "redis down at the takeover: another replica wins the Lease meanwhile")
    time.sleep(2 * RETRY_S + 1)  # its takeover tries to read the store, and fails
    env.redis.start()
    t = wait_final(lambda: f, tid, 120)
    tap(t["status"] == "succeeded" and t["progress"]["succeededNodes"] == 20,
        "redis down at the takeover: once Redis is back the new leader resumes the task to succeeded",
        "%s %s" % (t["progress"], t["message"]))
    tap(job_creates(env) == 20, "redis down at the takeover: one Job create per node", "created %d" % job_creates(env))
    leader.start()
    tap(len(env.leaders()) == 1, "redis down at the takeover: exactly one leader after")


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
        env = HA(nodes, timings=(LEASE_S, RENEW_S, RETRY_S))
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
scenario("ha redis down at the takeover", with_ha, 20, redis_takeover)
scenario("ha partition", with_ha, 20, partition)
finish()
