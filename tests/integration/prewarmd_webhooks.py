#!/usr/bin/env python3
"""prewarmd's webhooks (issue 11 point 4) against kubesim and a real HTTP receiver this test runs
(Python's http.server on loopback, so prewarmd runs with --webhook-allow-private except where the
refusal is tested):
- a server-wide --webhook receives every task's started and succeeded events in order, each a valid
  CloudEvents 1.0 structured-mode request (content type, id, source, specversion, type, subject,
  time, data) signed with --webhook-secret-file (Prewarm-Signature checked with Python's hmac);
- a task's own webhook gets only that task's events it asked for, signed with its Kubernetes Secret;
  GET task shows the delivery state and never a secret;
- 500 then 200: delivered on the retry; 429 and 503 with Retry-After (seconds, then an HTTP-date)
  honoured; 410: failed for good after one attempt; a redirect is not followed; a receiver down at
  first gets the event once it is up;
- kill -9 of prewarmd (SQLite store, then Redis with a real redis-server) with deliveries pending:
  after the restart every one arrives, none lost, in order;
- bad webhooks in a task -> 400 naming the field; without --webhook-allow-private a loopback or
  metadata URL is refused at create, a host name resolving to loopback is refused at connect, and a
  private --webhook stops prewarmd from starting;
- the webhook metrics move on /metrics."""
import base64
import email.utils
import hashlib
import hmac
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import BIN, REDIS, Env, Redis, finish, free_port, scenario, tap  # noqa: E402

GLOBAL_SECRET = "global-key-7f3a9c"
TASK_SECRET = "task-key-19be02"
IMAGE = {"images": ["busybox:1.36"], "batchSize": 10, "pullPolicy": "Always"}  # Always: every task runs


class Receiver:
    """An HTTP receiver on 127.0.0.1: records every request (path, headers, body, time) and answers
    each path from its script (a list of (status, headers), one per request, then its default)."""

    def __init__(self, port=0):
        self.lock = threading.Lock()
        self.requests = []
        self.scripts = {}
        self.defaults = {}
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with rec.lock:
                    rec.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                         "body": body, "time": time.time()})
                    script = rec.scripts.get(self.path)
                    status, headers = script.pop(0) if script else rec.defaults.get(self.path, (200, {}))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v() if callable(v) else v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def script(self, path, answers, default=None):
        with self.lock:
            self.scripts[path] = list(answers)
            if default:
                self.defaults[path] = default

    def got(self, path):
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def wait(self, path, n, timeout=60, ok_only=False):
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.got(path)
            if len(got) >= n:
                return got
            time.sleep(0.1)
        return self.got(path)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def verify(req, secret):
    """'' when req is a valid signed CloudEvent, else what is wrong."""
    h = req["headers"]
    if not h.get("content-type", "").startswith("application/cloudevents+json"):
        return "content type %r" % h.get("content-type")
    try:
        ce = json.loads(req["body"])
    except ValueError:
        return "body is not JSON"
    for k in ("id", "source", "specversion", "type", "subject", "time", "data"):
        if not ce.get(k):
            return "no %s" % k
    if ce["specversion"] != "1.0" or not ce["type"].startswith("io.prewarm.task."):
        return "specversion %s type %s" % (ce["specversion"], ce["type"])
    if ce["source"] != "/prewarmd/default" or ce["subject"] != ce["data"].get("id"):
        return "source %s subject %s" % (ce["source"], ce["subject"])
    if ce.get("datacontenttype") != "application/json":
        return "datacontenttype %s" % ce.get("datacontenttype")
    when = time.mktime(time.strptime(ce["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    if not ce["time"].endswith("Z") or abs(when - time.time()) > 600:
        return "time %s" % ce["time"]
    sig = h.get("prewarm-signature", "")
    parts = dict(p.split("=", 1) for p in sig.split(",") if "=" in p)
    if "t" not in parts or "v1" not in parts:
        return "signature header %r" % sig
    if abs(int(parts["t"]) - time.time()) > 300:
        return "signature time %s" % parts["t"]
    want = hmac.new(secret.encode(), parts["t"].encode() + b"." + req["body"], hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, parts["v1"]):
        return "bad signature"
    return ""


def ce(req):
    return json.loads(req["body"])


def hook_state(env, tid, i=0):
    code, t = env.api("GET", "/api/v1/tasks/" + tid)
    return t["webhooks"][i] if code == 200 else None


def wait_state(env, tid, pred, i=0, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        h = hook_state(env, tid, i)
        if h and pred(h):
            return h
        time.sleep(0.2)
    return hook_state(env, tid, i)


def create_raw(env, body):
    return env.api("POST", "/api/v1/tasks", body)


# ---- the main prewarmd: --webhook-allow-private, a server-wide receiver, quick retries ----

def order_and_signatures(env, r):
    code, _ = env.kube("POST", "/api/v1/namespaces/prewarm/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook-key"},
        "data": {"secret": base64.b64encode(TASK_SECRET.encode()).decode()}})
    tap(code == 201, "the task webhook's Secret is created in kubesim", str(code))
    t1 = env.create_task(IMAGE)
    t2 = env.create_task(dict(IMAGE, webhooks=[{"url": r.url("/t2"), "events": ["succeeded"], "secretRef": "hook-key"}]))
    env.wait_task(t1)
    env.wait_task(t2)
    got = r.wait("/global", 4, timeout=60)
    mine = [g for g in got if ce(g)["subject"] in (t1, t2)]
    tap(len(mine) == 4, "the server-wide webhook gets started and succeeded of both tasks", str(len(mine)))
    bad = [verify(g, GLOBAL_SECRET) for g in mine]
    tap(not any(bad), "every delivery is a CloudEvents 1.0 structured event with a valid signature", str(bad))
    for tid in (t1, t2):
        types = [ce(g)["type"] for g in mine if ce(g)["subject"] == tid]
        tap(types == ["io.prewarm.task.started", "io.prewarm.task.succeeded"],
            "task %s: started arrives before succeeded" % tid, str(types))
    ids = [int(ce(g)["id"]) for g in got]
    tap(ids == sorted(ids) and len(set(ids)) == len(ids), "one receiver gets its events in event order, each once",
        str(ids))
    done = [ce(g) for g in mine if ce(g)["type"] == "io.prewarm.task.succeeded"]
    tap(all(d["data"]["status"] == "succeeded" and "progress" in d["data"] for d in done),
        "the data is the task with its status and progress")
    t2s = r.wait("/t2", 1, timeout=30)
    time.sleep(1)
    t2s = r.got("/t2")
    tap(len(t2s) == 1 and ce(t2s[0])["subject"] == t2 and ce(t2s[0])["type"] == "io.prewarm.task.succeeded",
        "a task's own webhook gets only that task's events it asked for", str([ce(g)["subject"] for g in t2s]))
    tap(bool(t2s) and verify(t2s[0], TASK_SECRET) == "", "... signed with its Secret's key",
        verify(t2s[0], TASK_SECRET) if t2s else "none")
    h = wait_state(env, t2, lambda h: h.get("delivered") == 1)
    tap(h and h["scope"] == "task" and h["delivered"] == 1 and h["attempts"] == 1 and h["lastStatus"] == 200
        and h["secretRef"] == "hook-key" and h["nextAttemptAt"] is None,
        "GET task shows the task webhook delivered", json.dumps(h))
    s = wait_state(env, t2, lambda h: h.get("delivered") == 2, i=1)
    tap(s and s["scope"] == "server" and s["url"] == r.url("/global") and s["delivered"] == 2,
        "GET task shows the server-wide webhook's deliveries of that task", json.dumps(s))
    raw = json.dumps([env.api("GET", "/api/v1/tasks/" + t)[1] for t in (t1, t2)])
    tap(GLOBAL_SECRET not in raw and TASK_SECRET not in raw, "no secret in GET task")


def retry_500_then_200(env, r):
    r.script("/flaky", [(500, {}), (200, {})])
    tid = env.create_task(dict(IMAGE, webhooks=[{"url": r.url("/flaky"), "events": ["succeeded"]}]))
    env.wait_task(tid)
    got = r.wait("/flaky", 2, timeout=30)
    tap(len(got) == 2 and ce(got[0])["id"] == ce(got[1])["id"], "500 then 200: retried with the same event id",
        str(len(got)))
    h = wait_state(env, tid, lambda h: h["delivered"] == 1)
    tap(h["delivered"] == 1 and h["attempts"] == 2 and h["lastStatus"] == 200, "... and shown delivered after 2 attempts",
        json.dumps(h))


def retry_after(env, r):
    # the date is made as the answer goes out: 3 s ahead, whole seconds, so 2 to 3 s from then
    r.script("/busy", [(429, {"Retry-After": "2"}),
                       (503, {"Retry-After": lambda: email.utils.formatdate(time.time() + 3, usegmt=True)}),
                       (200, {})])
    tid = env.create_task(dict(IMAGE, webhooks=[{"url": r.url("/busy"), "events": ["succeeded"]}]))
    env.wait_task(tid)
    got = r.wait("/busy", 3, timeout=40)
    gaps = [got[i + 1]["time"] - got[i]["time"] for i in range(len(got) - 1)]
    tap(len(got) == 3 and gaps[0] >= 1.8, "429 with Retry-After: 2 waits 2 s (not the 0.2 s backoff)", str(gaps))
    tap(len(got) == 3 and gaps[1] >= 1.9, "503 with Retry-After as an HTTP-date waits until that date", str(gaps))
    h = wait_state(env, tid, lambda h: h["delivered"] == 1)
    tap(h["delivered"] == 1 and h["attempts"] == 3, "... delivered on the third attempt", json.dumps(h))


def gone_410(env, r):
    r.script("/gone", [], default=(410, {}))
    tid = env.create_task(dict(IMAGE, webhooks=[{"url": r.url("/gone"), "events": ["started", "succeeded"]}]))
    env.wait_task(tid)
    h = wait_state(env, tid, lambda h: h["failed"] == 2)
    time.sleep(1.5)
    got = r.got("/gone")
    tap(len(got) == 2, "410: one attempt per event, never retried", str(len(got)))
    tap(h["failed"] == 2 and h["pending"] == 0 and h["lastStatus"] == 410 and h["nextAttemptAt"] is None
        and all(d["state"] == "failed" and d["attempts"] == 1 for d in h["deliveries"]),
        "... shown failed for good in GET task", json.dumps(h))


def redirect(env, r):
    r.script("/moved", [], default=(302, {"Location": r.url("/target")}))
    tid = env.create_task(dict(IMAGE, webhooks=[{"url": r.url("/moved"), "events": ["succeeded"]}]))
    env.wait_task(tid)
    h = wait_state(env, tid, lambda h: h["failed"] == 1)
    time.sleep(1)
    tap(len(r.got("/moved")) == 1 and not r.got("/target"), "a redirect is not followed",
        "%d %d" % (len(r.got("/moved")), len(r.got("/target"))))
    tap(h["failed"] == 1 and h["lastStatus"] == 302 and "redirect" in (h["lastError"] or ""),
        "... the delivery fails with the redirect named", json.dumps(h))


def down_then_up(env):
    port = free_port()
    url = "http://127.0.0.1:%d/late" % port
    tid = env.create_task(dict(IMAGE, webhooks=[{"url": url, "events": ["succeeded"]}]))
    env.wait_task(tid)
    h = wait_state(env, tid, lambda h: h["attempts"] >= 2, timeout=30)
    tap(h["pending"] == 1 and h["attempts"] >= 2 and h["lastError"] and h["nextAttemptAt"],
        "receiver down: the delivery stays pending with its error and next attempt", json.dumps(h))
    late = Receiver(port)
    try:
        got = late.wait("/late", 1, timeout=60)
        tap(len(got) == 1 and ce(got[0])["subject"] == tid, "receiver up: the event arrives after retries", str(len(got)))
        h = wait_state(env, tid, lambda h: h["delivered"] == 1)
        tap(h["delivered"] == 1, "... shown delivered", json.dumps(h))
    finally:
        late.close()


def bad_webhooks(env):
    cases = [
        ({"url": "ftp://example.com/x"}, "webhooks[0].url"),
        ({"url": "https://example.com/", "events": ["finished"]}, "webhooks[0].events[0]"),
        ({"url": "https://example.com/", "secret": "x"}, "webhooks[0].secret"),
        ({"events": ["failed"]}, "webhooks[0].url"),
    ]
    for hook, field in cases:
        code, err = create_raw(env, dict(IMAGE, webhooks=[hook]))
        fields = [d["field"] for d in (err or {}).get("details", [])] if isinstance(err, dict) else []
        tap(code == 400 and field in fields, "bad webhook %s -> 400 naming %s" % (json.dumps(hook), field),
            "%s %s" % (code, err))


def metrics(env):
    with urllib.request.urlopen(env.api_base + "/metrics", timeout=30) as resp:
        text = resp.read().decode()

    def value(prefix):
        for line in text.splitlines():
            if line.startswith(prefix + " "):
                return float(line.split()[-1])
        return None
    delivered = value('prewarm_webhook_deliveries_total{result="delivered"}')
    failed = value('prewarm_webhook_deliveries_total{result="failed"}')
    tap(delivered and delivered >= 6 and failed and failed >= 3, "metrics: deliveries by result",
        "%s %s" % (delivered, failed))
    tap((value('prewarm_webhook_attempts_total{code="5xx"}') or 0) >= 2
        and (value('prewarm_webhook_attempts_total{code="2xx"}') or 0) >= 6
        and (value('prewarm_webhook_attempts_total{code="error"}') or 0) >= 2, "metrics: attempts by status class")
    tap(value("prewarm_webhook_outbox_pending") == 0, "metrics: the outbox is empty", str(value("prewarm_webhook_outbox_pending")))
    tap((value("prewarm_webhook_delivery_latency_seconds_count") or 0) >= 6
        and value('prewarm_webhook_delivery_latency_seconds_bucket{le="+Inf"}') is not None,
        "metrics: the delivery latency histogram")


# ---- without --webhook-allow-private ----

def private_refused(env, r):
    for url in ("http://127.0.0.1:%d/x" % r.port, "http://169.254.169.254/latest/meta-data/", "http://[::1]/",
                "http://localhost:%d/" % r.port):
        code, err = create_raw(env, dict(IMAGE, webhooks=[{"url": url}]))
        msg = json.dumps(err)
        tap(code == 400 and "webhooks[0].url" in msg and "--webhook-allow-private" in msg,
            "without --webhook-allow-private %s -> 400 naming webhooks[0].url" % url, "%s %s" % (code, msg))
    host = socket.gethostname()
    try:
        addr = socket.gethostbyname(host)
    except OSError:
        addr = ""
    if not addr.startswith("127."):
        print("ok - a host name resolving to loopback is refused at connect # SKIP %s resolves to %r" % (host, addr))
        return
    tid = env.create_task(dict(IMAGE, webhooks=[{"url": "http://%s:%d/sneaky" % (host, r.port), "events": ["succeeded"]}]))
    env.wait_task(tid)
    h = wait_state(env, tid, lambda h: h["failed"] == 1, timeout=30)
    tap(h["failed"] == 1 and "refused" in (h["lastError"] or "") and not r.got("/sneaky"),
        "a host name (%s) resolving to loopback is refused at connect, for good" % host, json.dumps(h))


def private_global_refused(env):
    p = subprocess.run([os.path.join(BIN, "prewarmd"), "--kubeconfig", env.kubeconfig, "--listen", "127.0.0.1:0",
                        "--store", "memory:", "--log-format", "text", "--webhook", "http://10.0.0.1/hook"],
                       capture_output=True, text=True, timeout=60)
    tap(p.returncode != 0 and "--webhook http://10.0.0.1/hook" in p.stderr,
        "a private --webhook without --webhook-allow-private: prewarmd does not start", p.stderr[-300:])


# ---- kill -9 with deliveries pending (SQLite) ----

def kill9(r, store, name):
    env = Env(10, time_scale=50, pw_args=["--store", store, "--webhook-allow-private", "--webhook-retry-base", "300ms"])
    try:
        r.script("/k9", [], default=(503, {}))
        with r.lock:
            r.requests = [q for q in r.requests if q["path"] != "/k9"]
        tids = [env.create_task(dict(IMAGE, webhooks=[{"url": r.url("/k9"), "events": ["started", "succeeded"]}]))
                for _ in range(3)]
        for t in tids:
            env.wait_task(t)
        pend = [wait_state(env, t, lambda h: h["pending"] == 2, timeout=30) for t in tids]
        tap(all(h["pending"] == 2 for h in pend), "receiver failing: 6 deliveries pending",
            json.dumps([h["pending"] for h in pend]))
        tap(len(r.got("/k9")) >= 1, "... the first one is being retried", str(len(r.got("/k9"))))
        env.stop_prewarmd(signal.SIGKILL)
        r.script("/k9", [], default=(200, {}))
        env.start_prewarmd()
        seen = []
        deadline = time.time() + 60
        while time.time() < deadline:
            seen = [ce(g)["id"] for g in r.got("/k9")]
            if len(set(seen)) >= 6 and all(hook_state(env, t)["delivered"] == 2 for t in tids):
                break
            time.sleep(0.3)
        subjects = {}
        for g in r.got("/k9"):
            c = ce(g)
            subjects.setdefault(c["subject"], set()).add(c["type"])
        tap(all(subjects.get(t) == {"io.prewarm.task.started", "io.prewarm.task.succeeded"} for t in tids),
            "kill -9 with deliveries pending (%s): after the restart all 6 arrive, none lost" % name, json.dumps(
                {k: sorted(v) for k, v in subjects.items()}))
        firsts = []
        for i in seen:
            if i not in firsts:
                firsts.append(i)
        tap(firsts == sorted(firsts, key=int), "... in event order", str(firsts))
        tap(all(hook_state(env, t)["delivered"] == 2 for t in tids), "... and GET task shows them delivered")
    finally:
        env.close()


def main():
    r = Receiver()
    secret_dir = tempfile.mkdtemp(prefix="pwhook-")
    secret_file = os.path.join(secret_dir, "secret")
    with open(secret_file, "w") as f:
        f.write(GLOBAL_SECRET + "\n")
    env = Env(10, time_scale=50, pw_args=["--webhook", r.url("/global"), "--webhook-secret-file", secret_file,
                                          "--webhook-allow-private", "--webhook-retry-base", "200ms",
                                          "--webhook-timeout", "3s"])
    try:
        scenario("order and signatures", order_and_signatures, env, r)
        scenario("500 then 200", retry_500_then_200, env, r)
        scenario("Retry-After", retry_after, env, r)
        scenario("410", gone_410, env, r)
        scenario("redirect", redirect, env, r)
        scenario("down then up", down_then_up, env)
        scenario("bad webhooks", bad_webhooks, env)
        scenario("metrics", metrics, env)
    finally:
        env.close()
    env = Env(5, time_scale=50)
    try:
        scenario("private refused", private_refused, env, r)
        scenario("private --webhook refused", private_global_refused, env)
    finally:
        env.close()
    scenario("kill -9 (SQLite)", kill9, r, "sqlite:{dir}/prewarm.db", "SQLite")
    if REDIS:
        rdir = tempfile.mkdtemp(prefix="pwhook-redis-")
        redis = Redis(rdir)
        try:
            scenario("kill -9 (Redis)", kill9, r, redis.url(), "Redis")
        finally:
            redis.kill()
            shutil.rmtree(rdir, ignore_errors=True)
    else:
        print("ok - kill -9 with deliveries pending (Redis) # SKIP redis-server is not installed")
    r.close()
    os.unlink(secret_file)
    os.rmdir(secret_dir)
    finish()


if __name__ == "__main__":
    main()
