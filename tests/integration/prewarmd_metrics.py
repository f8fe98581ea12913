#!/usr/bin/env python3
"""prewarmd's /metrics (issue 11 point 3) against kubesim: the scrape passes `promtool check metrics`
(which does reject a bad one), has every family the issue lists, and no task id or node name in any
label; a real Prometheus server (Debian's) scraping prewarmd on loopback every second during a task
sees the series move (image pulls, Job creates, finished tasks) through its HTTP query API."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import Env, finish, scenario, tap  # noqa: E402

FAMILIES = {
    "prewarm_build_info": "gauge",
    "prewarm_tasks": "gauge",
    "prewarm_tasks_created_total": "counter",
    "prewarm_tasks_finished_total": "counter",
    "prewarm_nodes": "gauge",
    "prewarm_image_pulls_total": "counter",
    "prewarm_node_pull_duration_seconds": "histogram",
    "prewarm_nodes_in_flight": "gauge",
    "prewarm_nodes_in_flight_max": "gauge",
    "prewarm_task_queue_length": "gauge",
    "prewarm_kube_requests_total": "counter",
    "prewarm_kube_request_duration_seconds": "histogram",
    "prewarm_kube_watch_restarts_total": "counter",
    "prewarm_kube_relists_total": "counter",
    "prewarm_kube_informer_objects": "gauge",
    "prewarm_store_operation_duration_seconds": "histogram",
    "prewarm_store_errors_total": "counter",
    "prewarm_http_requests_total": "counter",
    "prewarm_http_request_duration_seconds": "histogram",
    "prewarm_sse_streams": "gauge",
    "prewarm_events_published_total": "counter",
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
}


def scrape(env):
    with urllib.request.urlopen(env.api_base + "/metrics", timeout=30) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


def samples(text, name):
    """{labels-text: value} of the samples of one metric name."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^" + re.escape(name) + r"(\{.*\})? (\S+)$", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


def promtool(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Prometheus:
    def __init__(self, target):
        self.dir = tempfile.mkdtemp(prefix="pwprom-")
        self.port = free_port()
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: prewarmd\n    static_configs:\n"
                    "      - targets: ['%s']\n" % target)
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            ["prometheus", "--config.file", cfg, "--storage.tsdb.path", os.path.join(self.dir, "data"),
             "--web.listen-address", "127.0.0.1:%d" % self.port, "--storage.tsdb.retention.time", "1h"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def query(self, q):
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (self.port, urllib.parse.urlencode({"query": q}))
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = json.loads(r.read())
        except (OSError, ValueError):
            return None
        if body.get("status") != "success":
            return None
        res = body["data"]["result"]
        return float(res[0]["value"][1]) if res else None

    def wait(self, q, pred, timeout=120):
        deadline = time.time() + timeout
        v = None
        while time.time() < deadline:
            v = self.query(q)
            if v is not None and pred(v):
                return True, v
            time.sleep(0.5)
        return False, v

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def metrics_scenario():
    env = Env(150, time_scale=5, pw_args=["--max-nodes-in-flight", "20"])
    prom = None
    try:
        hostport = env.api_base.replace("http://", "")
        prom = Prometheus(hostport)
        ok, _ = prom.wait('up{job="prewarmd"}', lambda v: v == 1, 60)
        tap(ok, "Prometheus scrapes prewarmd (up == 1)", env.tail("prewarmd.log", 5))
        tid = env.create_task({"images": ["busybox:1.36", "nginx:1.27"], "batchSize": 20})
        # during the task
        ok, v1 = prom.wait('sum(prewarm_image_pulls_total)', lambda v: v > 0, 180)
        ok2, v2 = prom.wait('sum(prewarm_image_pulls_total)', lambda v: v > (v1 or 0), 180)
        tap(ok and ok2, "Prometheus sees image pulls grow during the task", "%s then %s" % (v1, v2))
        ok, v = prom.wait('prewarm_nodes_in_flight', lambda v: v > 0, 60)
        tap(ok and v <= 20, "nodes in flight seen above 0, within the cap of 20", str(v))
        ok, v = prom.wait('prewarm_nodes_in_flight_max', lambda v: v == 20, 30)
        tap(ok, "the in-flight cap is exported", str(v))
        ok, v = prom.wait('prewarm_tasks{status="running"}', lambda v: v == 1, 60)
        tap(ok, "one running task seen", str(v))
        _, _, text_mid = scrape(env)
        rc, out = promtool(text_mid)
        tap(rc == 0, "promtool check metrics passes a scrape taken during the task", out[:500])
        t = env.wait_task(tid, timeout=600)
        ok, v = prom.wait('prewarm_tasks_finished_total{outcome="succeeded"}', lambda v: v == 1, 60)
        tap(t["status"] == "succeeded" and ok, "Prometheus sees the task finish", "%s %s" % (t["status"], v))
        ok, v = prom.wait('sum(prewarm_kube_requests_total{verb="create",resource="jobs",code="201"})',
                          lambda v: v >= t["progress"]["succeededNodes"], 60)
        tap(ok, "Job creates counted by verb, resource and code", str(v))
        ok, v = prom.wait('histogram_quantile(0.9, sum by (le) (rate(prewarm_node_pull_duration_seconds_bucket[5m])))',
                          lambda v: v > 0, 60)
        tap(ok, "the node pull duration histogram answers a quantile", str(v))

        status, ctype, text = scrape(env)
        tap(status == 200 and ctype.startswith("text/plain; version=0.0.4"), "/metrics is text format 0.0.4", ctype)
        rc, out = promtool(text)
        tap(rc == 0, "promtool check metrics passes after the task", out[:500])
        bad_rc, bad_out = promtool("# HELP things Things.\n# TYPE things counter\nthings 1\n")
        tap(bad_rc != 0 and "_total" in bad_out, "promtool does reject a counter without _total", bad_out[:200])
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
        missing = {k: v for k, v in FAMILIES.items() if types.get(k) != v}
        tap(not missing, "every family the issue lists, with its type (%d)" % len(FAMILIES), str(missing))
        nodes = {n["metadata"]["name"] for n in env.nodes()}
        leaks = [line for line in text.splitlines() if not line.startswith("#") and
                 (tid in line or any('"%s"' % n in line for n in nodes))]
        tap(not leaks, "no task id or node name in any label", str(leaks[:3]))
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        tap(series < 3000, "the scrape stays small (%d series)" % series)
        pulls = samples(text, "prewarm_image_pulls_total")
        want = t["progress"]["succeededNodes"] * 2
        got = sum(v for k, v in pulls.items() if 'mode="job"' in k and 'result="succeeded"' in k)
        tap(got == want, "image pulls add up to the task's (2 images x nodes)", "%s vs %d" % (pulls, want))
        fin = samples(text, "prewarm_tasks_finished_total")
        created = samples(text, "prewarm_tasks_created_total")
        tap(fin.get('{outcome="succeeded"}') == 1 and fin.get('{outcome="failed"}') == 0 and created.get("") == 1,
            "created and finished counters", "%s %s" % (created, fin))
        objs = samples(text, "prewarm_kube_informer_objects")
        tap(objs.get('{resource="nodes"}') == 150, "the node informer's cache size", str(objs))
        http_ = samples(text, "prewarm_http_requests_total")
        tap(any('route="/api/v1/tasks",method="POST",code="201"' in k for k in http_),
            "REST requests by route pattern, method and code", str(list(http_)[:5]))
        store = samples(text, "prewarm_store_operation_duration_seconds_count")
        tap(store.get('{op="task_put"}', 0) > 0 and store.get('{op="nodes_put"}', 0) > 0,
            "store operation latency by operation", str(store))
        code, _ = env.api("GET", "/api/v1/tasks/t-000000000000")
        key = '{route="/api/v1/tasks/{id}",method="GET",code="404"}'
        for _ in range(50):  # counted when the server sees the response complete, just after the client
            nf = samples(scrape(env)[2], "prewarm_http_requests_total")
            if nf.get(key):
                break
            time.sleep(0.1)
        tap(nf.get(key, 0) >= 1, "a 404 is counted under its route",
            str([k for k in nf if "404" in k]))
    finally:
        if prom:
            prom.close()
        env.close()


if not shutil.which("promtool") or not shutil.which("prometheus"):
    print("1..0 # SKIP promtool/prometheus missing: run scripts/install-deps")
    sys.exit(0)
scenario("metrics", metrics_scenario)
finish()
