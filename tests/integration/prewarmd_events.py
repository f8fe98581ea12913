#!/usr/bin/env python3
"""prewarmd's Server-Sent Events (issue 11 point 2) against kubesim: the all-tasks stream sees every
node's final result and the end after the task's last event, with ids that only grow; task events are
coalesced (a few a second, not one per change); a per-task stream closes after its end; Last-Event-ID
resumes without loss, and an id the server no longer holds starts with the current state; heartbeat
comments keep an idle stream alive; every event's data matches its schema in openapi.json; a 404 for an
unknown task; prewarmctl wait follows the stream (no polling) and falls back to polling when the stream
route is missing (cli_fake.sh covers a server without it)."""
import http.client
import json
import os
import subprocess
import sys
import threading
import time

import jsonschema

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openapi_check  # noqa: E402
from prewarmd_lib import BIN, Env, finish, scenario, tap  # noqa: E402

IMAGES = ["busybox:1.36", "nginx:1.27"]


def schema(name):
    return dict(openapi_check.DOC["components"]["schemas"][name], components=openapi_check.DOC["components"])


SCHEMAS = {"task": schema("Task"), "node": schema("NodeEvent"), "end": schema("EndEvent")}


class Stream:
    """An SSE client on its own thread: events (id, type, data, arrival time), comments, and whether
    the server closed the stream."""

    def __init__(self, env, path, last_id=None, timeout=120):
        host, port = env.api_base.replace("http://", "").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        self.conn.request("GET", path, headers=headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.ctype = self.resp.getheader("Content-Type", "")
        self.events, self.comments, self.closed = [], [], False
        self.lock = threading.Lock()
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        buf = b""
        ev = {"data": []}
        try:
            while True:
                chunk = self.resp.read1(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    line = line.decode()
                    if line == "":
                        if ev["data"]:
                            with self.lock:
                                self.events.append({"id": int(ev["id"]), "type": ev.get("event", "message"),
                                                    "data": json.loads("\n".join(ev["data"])), "t": time.time()})
                        ev = {"data": []}
                    elif line.startswith(":"):
                        with self.lock:
                            self.comments.append((line, time.time()))
                    else:
                        k, _, v = line.partition(":")
                        v = v[1:] if v.startswith(" ") else v
                        if k == "data":
                            ev["data"].append(v)
                        else:
                            ev[k] = v
        except (OSError, http.client.HTTPException):
            pass
        self.closed = True

    def wait(self, pred, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if pred(self):
                    return True
            if self.closed:
                with self.lock:
                    return pred(self)
            time.sleep(0.05)
        return False

    def close(self):
        try:
            self.conn.sock.shutdown(2)
        except (OSError, AttributeError):
            pass
        self.conn.close()
        self.th.join(5)


def of_task(evs, tid):
    return [e for e in evs if (e["data"].get("taskId") or e["data"].get("id")) == tid]


def schema_problems(evs):
    bad = []
    for e in evs:
        try:
            jsonschema.validate(e["data"], SCHEMAS[e["type"]], cls=jsonschema.Draft202012Validator)
        except (jsonschema.ValidationError, KeyError) as x:
            bad.append("%s %s: %s" % (e["type"], e["id"], str(x)[:200]))
    return bad


def stream_scenario():
    env = Env(120, time_scale=20, pw_args=["--sse-heartbeat", "1s", "--max-nodes-in-flight", "30"])
    try:
        all_s = Stream(env, "/api/v1/events")
        tap(all_s.status == 200 and all_s.ctype.startswith("text/event-stream"), "GET /api/v1/events is an event stream",
            "%s %s" % (all_s.status, all_s.ctype))
        tid = env.create_task({"images": IMAGES, "batchSize": 30})
        tap(all_s.wait(lambda s: any(e["type"] == "end" for e in of_task(s.events, tid)), 300),
            "all-tasks stream: the task's end arrives")
        evs = of_task(all_s.events, tid)
        code, task = env.api("GET", "/api/v1/tasks/" + tid)
        nodes = [e for e in evs if e["type"] == "node"]
        tasks = [e for e in evs if e["type"] == "task"]
        names = {e["data"]["nodeName"] for e in nodes}
        total = task["progress"]["totalNodes"]
        tap(total == 120 and len(nodes) == total and len(names) == total,
            "a node event for each of the task's nodes, once", "%d events, %d names, %d nodes" % (len(nodes), len(names), total))
        tap(all(e["data"]["state"] == "succeeded" for e in nodes), "node events carry the final result",
            str([e["data"] for e in nodes if e["data"]["state"] != "succeeded"][:2]))
        ids = [e["id"] for e in all_s.events]
        tap(ids == sorted(ids) and len(set(ids)) == len(ids), "event ids only grow", str(ids[:10]))
        end_i = max(i for i, e in enumerate(evs) if e["type"] == "end")
        last_task = max(i for i, e in enumerate(evs) if e["type"] == "task")
        last_node = max(i for i, e in enumerate(evs) if e["type"] == "node")
        tap(end_i == len(evs) - 1 and last_task == end_i - 1 and last_node < last_task,
            "end comes last, right after the final task event, after every node event",
            "end %d last task %d last node %d of %d" % (end_i, last_task, last_node, len(evs)))
        tap(evs[last_task]["data"] == task and evs[end_i]["data"] == {"taskId": tid, "status": task["status"]},
            "the final task event is the task GET shows; end names its status",
            "%s vs %s" % (evs[last_task]["data"].get("progress"), task.get("progress")))
        statuses = [e["data"]["status"] for e in tasks]
        tap(statuses[0] == "pending" and "running" in statuses and statuses[-1] == "succeeded",
            "every status the task went through is seen", str(statuses))
        # coalescing: 120 node results and as many progress changes, but at most ~4 task events a second
        span = max(evs[end_i]["t"] - evs[0]["t"], 0.001)
        running = [e for e in tasks if e["data"]["status"] == "running"]
        tap(len(tasks) < len(nodes) and len(running) <= 4 * span + 3,
            "task events coalesced (about 4 a second at most)",
            "%d task events (%d running) over %.1fs for %d node events" % (len(tasks), len(running), span, len(nodes)))
        probs = schema_problems(all_s.events)
        tap(not probs, "every event's data matches its openapi.json schema (%d events)" % len(all_s.events),
            "; ".join(probs[:3]))
        # heartbeat: the stream is idle now
        tap(all_s.wait(lambda s: any(c[0] == ": keep-alive" for c in s.comments), 10),
            "an idle stream gets heartbeat comments", str(all_s.comments[:3]))
        tap(not all_s.closed, "the all-tasks stream stays open after a task's end")

        # a per-task stream of a finished task: current state, end, closed
        done_s = Stream(env, "/api/v1/tasks/%s/events" % tid)
        tap(done_s.wait(lambda s: s.closed, 20) and [e["type"] for e in done_s.events] == ["task", "end"]
            and done_s.events[0]["data"] == task,
            "a finished task's stream: its state, end, and the stream closes", str([e["type"] for e in done_s.events]))
        done_s.close()

        # resume: a second task; a per-task stream cut after a few events, then resumed by id
        tid2 = env.create_task({"images": ["redis:7.4"], "batchSize": 10})
        ref = Stream(env, "/api/v1/events?task=" + tid2)
        first = Stream(env, "/api/v1/tasks/%s/events" % tid2)
        first.wait(lambda s: sum(1 for e in s.events if e["type"] == "node") >= 5, 120)
        with first.lock:
            part1 = list(first.events)
        first.close()
        last = part1[-1]["id"]
        second = Stream(env, "/api/v1/tasks/%s/events" % tid2, last_id=last)
        tap(second.wait(lambda s: s.closed, 300), "resumed stream ends with the task")
        tap(ref.wait(lambda s: s.closed, 60), "a ?task= stream ends with its task too")
        # part1 starts with its current state (numbered at its cursor); every real event after that
        # cursor that the reference stream saw must come through part1's rest and the resumed part
        got = [(e["id"], e["type"]) for e in part1[1:]] + [(e["id"], e["type"]) for e in second.events]
        want = [(e["id"], e["type"]) for e in ref.events if e["id"] > part1[0]["id"]]
        tap(got == want and second.events and second.events[0]["id"] > last and second.events[-1]["type"] == "end",
            "Last-Event-ID resumes without loss or repeat (%d + %d events)" % (len(part1), len(second.events)),
            "got %s want %s" % (got[:6], want[:6]))
        for s in (ref, second):
            s.close()

        # an id the server never gave (or no longer holds): the current state first
        old = Stream(env, "/api/v1/tasks/%s/events" % tid2, last_id=1)
        tap(old.wait(lambda s: s.closed, 20) and [e["type"] for e in old.events] == ["task", "end"],
            "an unknown Last-Event-ID starts with the current state", str([e["type"] for e in old.events]))
        old.close()
        # a running task, resumed from an id too old: its state, then it goes on
        tid3 = env.create_task({"images": ["alpine:3.20"], "batchSize": 5})
        s3 = Stream(env, "/api/v1/tasks/%s/events" % tid3, last_id=12345)
        tap(s3.wait(lambda s: s.events and s.events[0]["type"] == "task", 20) and s3.wait(lambda s: s.closed, 300)
            and s3.events[-1]["type"] == "end",
            "from an old id: the current state, then events to the end", str([e["type"] for e in s3.events][:5]))
        s3.close()
        all_s.close()

        # errors
        code, body = env.api("GET", "/api/v1/tasks/t-000000000000/events")
        tap(code == 404 and "not found" in body.get("message", ""), "unknown task: 404 with a JSON error", str(body))
        code, body = env.api("GET", "/api/v1/events?task=")
        tap(code == 400 and body.get("details", [{}])[0].get("field") == "task", "empty ?task=: 400 naming the field",
            str(body))

        # prewarmctl wait follows the stream
        tid4 = env.create_task({"images": ["postgres:16"], "batchSize": 20})
        out = subprocess.run([os.path.join(BIN, "prewarmctl"), "--server", env.api_base, "wait", tid4],
                             capture_output=True, text=True, timeout=300)
        log = env.tail("prewarmd.log", 100000)
        streamed = ("GET /api/v1/tasks/%s/events" % tid4) in log
        polled = ("GET /api/v1/tasks/%s " % tid4) in log
        tap(out.returncode == 0 and "succeeded" in out.stdout and streamed and not polled,
            "prewarmctl wait follows the event stream, no polling",
            "rc %d streamed %s polled %s: %s %s" % (out.returncode, streamed, polled, out.stdout[-300:], out.stderr[-300:]))
        code, m = env.api("GET", "/metrics")
        tap(code == 200 and "prewarm_sse_streams_started_total" in str(m), "the streams show in /metrics")
    finally:
        env.close()


scenario("events", stream_scenario)
finish()
