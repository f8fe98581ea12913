"""cli_fake_server.py: a small stand-in for prewarmd that speaks the REST contract of ARCHITECTURE.md §3
(tasks, per-node results, list pages with "continue", the JSON error shape), so prewarmctl's own tests do
not depend on the real service. Not a test by itself (not executable; cli_fake.sh runs it).

Tasks progress by the clock: nodes finish at RATE nodes/s, at most batchSize in flight. An image whose
name contains "does-not-exist" fails on every node with ErrImagePull; "slow" makes a task take minutes
(for cancel and Ctrl-C tests). GET /fake/outage?seconds=N makes every API call answer 503 for N seconds;
GET /fake/requests lists the requests seen. Nodes named node-000.. ; every 10th node already holds the images and is
skipped.

Usage: python3 cli_fake_server.py PORT_FILE [--nodes N] [--rate R] [--port P]
Writes the bound port to PORT_FILE once listening on 127.0.0.1:P (default 0: any free port).
"""
import json
import re
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

NODES = 30
RATE = 40.0
PORT = 0
for i, a in enumerate(sys.argv):
    if a == "--port":
        PORT = int(sys.argv[i + 1])
    if a == "--nodes":
        NODES = int(sys.argv[i + 1])
    if a == "--rate":
        RATE = float(sys.argv[i + 1])

REF = re.compile(r"^(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$")
FIELDS = {"images", "batchSize", "strategy", "nodeSelector", "labelSelector", "nodeNames", "includeNotReady",
          "includeUnschedulable", "pullPolicy", "imagePullSecrets", "timeoutSeconds", "retries",
          "successThreshold", "priority", "labels"}
lock = threading.Lock()
tasks = {}  # id -> dict
order = []  # ids, oldest first
seq = [0]
requests_seen = []  # (method, path, body) for the tests to inspect via /fake/requests
outage_until = [0.0]  # /fake/outage?seconds=N: every API call answers 503 until then


def rfc3339(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def error(code, reason, message, details=None):
    return code, {"code": code, "reason": reason, "message": message, "details": details or []}


def node_states(t, now):
    """Per-node state list for task t at time now."""
    total = t["total"]
    end = t["cancelledAt"] or now
    rate = 0.2 if any("slow" in i for i in t["images"]) else RATE
    finished = min(total, int((end - t["created"]) * rate))
    failing = any("does-not-exist" in i for i in t["images"])
    states = []
    for n in range(total):
        if n < finished:
            if n % 10 == 0:
                states.append("skipped")
            elif failing:
                states.append("failed")
            else:
                states.append("succeeded")
        elif t["cancelledAt"]:
            states.append("cancelled")
        elif n < finished + t["batchSize"]:
            states.append("running")
        else:
            states.append("pending")
    return states


def render(t, now):
    states = node_states(t, now)
    c = {s: states.count(s) for s in ("pending", "running", "succeeded", "failed", "skipped", "cancelled")}
    total = t["total"]
    done = c["succeeded"] + c["failed"] + c["skipped"] + c["cancelled"]
    if t["cancelledAt"]:
        status = "cancelled"
    elif done == total:
        denom = total - c["skipped"]
        status = "succeeded" if denom == 0 or c["succeeded"] / denom >= t["successThreshold"] else "failed"
    else:
        status = "running"
    failed = [{"nodeName": "node-%03d" % n, "image": t["images"][0], "reason": "ErrImagePull",
               "message": "rpc error: code = NotFound desc = %s: not found" % t["images"][0],
               "time": rfc3339(now)} for n, s in enumerate(states) if s == "failed"][:100]
    finished_at = None
    if status != "running":
        finished_at = rfc3339(t["cancelledAt"] or t["created"] + total / RATE)
    msg = ""
    if status == "failed":
        msg = "%d of %d nodes failed: ErrImagePull" % (c["failed"], total - c["skipped"])
    out = {"id": t["id"], "status": status, "images": t["images"], "batchSize": t["batchSize"],
           "strategy": t["strategy"], "priority": t["priority"], "successThreshold": t["successThreshold"],
           "progress": {"totalNodes": total, "pendingNodes": c["pending"], "runningNodes": c["running"],
                        "succeededNodes": c["succeeded"], "failedNodes": c["failed"],
                        "skippedNodes": c["skipped"], "cancelledNodes": c["cancelled"],
                        "percentage": round(100.0 * done / total, 1) if total else 100.0},
           "failedNodes": failed, "message": msg, "labels": t["labels"],
           "createdAt": rfc3339(t["created"]), "startedAt": rfc3339(t["created"]), "finishedAt": finished_at}
    return out, states


def node_item(t, n, state, now):
    imgs = []
    for im in t["images"]:
        e = {"image": im, "state": state, "reason": "", "message": "", "attempts": 0, "durationSeconds": 0}
        if state == "failed":
            e.update(reason="ErrImagePull", attempts=1 + t["retries"],
                     message="rpc error: code = NotFound desc = %s: not found" % im)
        elif state == "succeeded":
            e.update(attempts=1, durationSeconds=1.5)
        imgs.append(e)
    item = {"nodeName": "node-%03d" % n, "state": state, "reason": "", "message": "",
            "attempts": 1 if state in ("succeeded", "failed") else 0,
            "startedAt": rfc3339(t["created"]) if state != "pending" else None,
            "finishedAt": rfc3339(now) if state in ("succeeded", "failed", "skipped") else None,
            "images": imgs}
    if state == "failed":
        item.update(reason="ErrImagePull", message="%s: not found" % t["images"][0])
    if state == "skipped":
        item.update(reason="ImagePresent")
    return item


def page(items, q):
    limit = int(q.get("limit", ["50"])[0])
    start = int(q.get("continue", ["0"])[0] or 0)
    sl = items[start:start + limit]
    body = {"items": sl}
    if start + limit < len(items):
        body["continue"] = str(start + limit)
    return body


def create(body):
    if not isinstance(body, dict):
        return error(400, "Invalid", "the body must be a JSON object")
    for k in body:
        if k not in FIELDS:
            return error(400, "Invalid", "%s: unknown field" % k, [{"field": k, "message": "unknown field"}])
    images = body.get("images")
    if not isinstance(images, list) or not images:
        return error(400, "Invalid", "images: required", [{"field": "images", "message": "required"}])
    for i, im in enumerate(images):
        if not isinstance(im, str) or not REF.match(im):
            return error(400, "Invalid", "images[%d]: invalid reference format" % i,
                         [{"field": "images[%d]" % i, "message": "invalid reference format"}])
    with lock:
        seq[0] += 1
        tid = "t-fake%06d" % seq[0]
        total = NODES
        if body.get("nodeNames"):
            total = len(body["nodeNames"])
        t = {"id": tid, "images": images, "batchSize": body.get("batchSize", 10),
             "strategy": body.get("strategy", "rolling"), "priority": body.get("priority", 0),
             "successThreshold": body.get("successThreshold", 0.9), "retries": body.get("retries", 3),
             "labels": body.get("labels", {}), "created": time.time(), "cancelledAt": None, "total": total}
        tasks[tid] = t
        order.append(tid)
        return 201, render(t, time.time())[0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, code, obj, extra=None):
        data = (json.dumps(obj) if not isinstance(obj, str) else obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json" if not isinstance(obj, str) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def route(self, method):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        parts = [p for p in u.path.split("/") if p]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with lock:
            requests_seen.append({"method": method, "path": self.path, "body": raw.decode("utf-8", "replace")})
        now = time.time()
        if u.path in ("/healthz", "/readyz"):
            return self.reply(200, "ok")
        if u.path == "/fake/requests":
            with lock:
                return self.reply(200, {"items": list(requests_seen)})
        if u.path == "/fake/outage":
            outage_until[0] = now + float(q.get("seconds", ["3"])[0])
            return self.reply(200, {})
        if now < outage_until[0]:
            return self.reply(*error(503, "Unavailable", "the store is not open"))
        if parts[:3] != ["api", "v1", "tasks"]:
            return self.reply(*error(404, "NotFound", "no route for %s" % u.path))
        if len(parts) == 3 and method == "POST":
            if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
                return self.reply(*error(415, "UnsupportedMediaType", "want Content-Type: application/json"))
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                return self.reply(*error(400, "Invalid", "the body is not valid JSON"))
            code, obj = create(body)
            return self.reply(code, obj, {"Location": "/api/v1/tasks/%s" % obj.get("id", "")} if code == 201 else None)
        if len(parts) == 3 and method == "GET":
            with lock:
                items = [render(tasks[i], now)[0] for i in reversed(order)]
            st = q.get("status", [None])[0]
            if st:
                items = [i for i in items if i["status"] == st]
            return self.reply(200, page(items, q))
        tid = parts[3] if len(parts) > 3 else ""
        with lock:
            t = tasks.get(tid)
        if not t:
            return self.reply(*error(404, "NotFound", "task %s not found" % tid))
        if len(parts) == 4 and method == "GET":
            return self.reply(200, render(t, now)[0])
        if len(parts) == 4 and method == "DELETE":
            with lock:
                cur, _ = render(t, now)
                if cur["status"] in ("succeeded", "failed"):
                    return self.reply(*error(409, "Conflict", "task %s already %s" % (tid, cur["status"])))
                if not t["cancelledAt"]:
                    t["cancelledAt"] = now
                return self.reply(200, render(t, now)[0])
        if len(parts) == 5 and parts[4] == "nodes" and method == "GET":
            _, states = render(t, now)
            items = [node_item(t, n, s, now) for n, s in enumerate(states)]
            st = q.get("state", [None])[0]
            if st:
                items = [i for i in items if i["state"] == st]
            return self.reply(200, page(items, q))
        return self.reply(*error(405, "MethodNotAllowed", "method not allowed"))

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    srv.daemon_threads = True
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    srv.serve_forever()


if __name__ == "__main__":
    main()
