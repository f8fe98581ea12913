#!/usr/bin/env python3
"""prewarmd's REST server under 1,000 concurrent connections and slow clients (issue 3 point 2).

With 1,000 connections open at once to prewarmd (idle ones, slowloris-style ones that trickle a
request header byte by byte, and keep-alive ones that finished a request and hold the connection)
the API must go on answering other clients correctly: creating and reading tasks works, every held
connection still gets a correct answer when it finally completes its request, and prewarmd is
alive and serving afterwards. Correctness only: no timing is asserted."""
import json
import os
import resource
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import Env, finish, scenario, tap  # noqa: E402

CONNS = 1000


def raw_request(path):
    return ("GET %s HTTP/1.1\r\nHost: prewarmd\r\nConnection: keep-alive\r\n\r\n" % path).encode()


def read_response(s, timeout=30):
    """Reads one HTTP/1.1 response with a Content-Length body; returns (status, body bytes)."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before the response header")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, rest[:length]


def many_connections():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, CONNS + 512)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    env = Env(5, time_scale=50)
    socks = []
    try:
        tid = env.create_task({"images": ["busybox:1.36"], "batchSize": 5})
        host, port = env.api_base[len("http://"):].rsplit(":", 1)
        addr = (host, int(port))
        idle, slow, kept = [], [], []
        for i in range(CONNS):
            s = socket.create_connection(addr, timeout=10)
            socks.append(s)
            kind = i % 4
            if kind == 0 or kind == 1:
                idle.append(s)
            elif kind == 2:
                slow.append(s)
                s.sendall(b"GET /api/v1/tasks/" + tid.encode()[:2])  # a request begun, not finished
            else:
                s.sendall(raw_request("/healthz"))
                kept.append(s)
        tap(len(socks) == CONNS, "1,000 connections accepted at once")
        ok_kept = 0
        for s in kept:
            st, body = read_response(s)
            ok_kept += st == 200 and body.strip() == b"ok"
        tap(ok_kept == len(kept), "every keep-alive connection got its answer (%d/%d)" % (ok_kept, len(kept)))

        # other clients are served correctly while the 1,000 are held
        code, t = env.api("GET", "/api/v1/tasks/" + tid)
        tap(code == 200 and t["id"] == tid, "GET a task while 1,000 connections are open")
        code, t2 = env.api("POST", "/api/v1/tasks", {"images": ["nginx:1.27"], "nodeNames": ["node-0001"]})
        tap(code == 201, "create a task while 1,000 connections are open")
        code, body = env.api("POST", "/api/v1/tasks", {"images": ["Bad:Ref"]})
        tap(code == 400 and "images[0]" in json.dumps(body), "validation still answers 400 naming the field")

        # slow clients trickle the rest of their request, a byte at a time, interleaved
        rest = tid.encode()[2:] + b" HTTP/1.1\r\nHost: prewarmd\r\n\r\n"
        for i in range(len(rest)):
            for s in slow:
                s.sendall(rest[i:i + 1])
            time.sleep(0.01)
        ok_slow = 0
        for s in slow:
            st, body = read_response(s)
            ok_slow += st == 200 and json.loads(body).get("id") == tid
        tap(ok_slow == len(slow), "every slow client got the right task (%d/%d)" % (ok_slow, len(slow)))

        # idle connections still work when they finally speak
        sample = idle[::10]
        for s in sample:
            s.sendall(raw_request("/api/v1/tasks/" + tid))
        ok_idle = 0
        for s in sample:
            st, body = read_response(s)
            ok_idle += st == 200 and json.loads(body).get("id") == tid
        tap(ok_idle == len(sample), "idle connections answered when they speak (%d/%d)" % (ok_idle, len(sample)))
    finally:
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
    try:
        t = env.wait_task(tid, timeout=120)
        tap(t["status"] == "succeeded", "the task ran to succeeded meanwhile")
        code, _ = env.api("GET", "/healthz")
        tap(code == 200 and env.pw.poll() is None, "prewarmd alive and serving after the connections close")
        env.stop_prewarmd()
        tap(env.pw.returncode == 0, "prewarmd exits 0 on SIGTERM afterwards")
    finally:
        env.close()


scenario("connections", many_connections)
finish()
