#!/usr/bin/env python3
"""agent_e2e: agent mode end to end on real programs (issue 9). A Debian docker-registry on 127.0.0.1
holds images this test builds offline; three real containerd instances (own root, state, socket and
config each) are three nodes of a kubesim cluster; three real prewarm-agent processes, one per node,
sync with prewarmd using ServiceAccount tokens kubesim issued (TokenRequest bound to each agent's
pod), and pull through each containerd's CRI. A fourth kubesim node has no agent (mode auto falls
back to a Job there). Checked from outside with `ctr` and the registry's access log. Needs root
(containerd): prints a SKIP line otherwise."""
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import cri_world as w  # noqa: E402
import prewarmd_lib as pl  # noqa: E402
from prewarmd_lib import tap  # noqa: E402

BIN = pl.BIN
ROOT = os.path.join(HERE, "..", "..")
PROBE = os.path.join(BIN, "..", "tests", "e2e", "cri_probe")
AGENT_NODES = ["node-0001", "node-0002", "node-0003"]


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)


class World:
    def __init__(self):
        self.dir = w.workdir()
        self.reg = w.Registry(self.dir)
        self.img = w.ImageBuilder(self.reg)
        self.build_images()
        self.ctrd = {n: w.Containerd(self.dir, n, [self.reg.host]) for n in AGENT_NODES}
        self.env = pl.Env(nodes=4, pw_args=["--agents", "--store", "sqlite:{dir}/pw.db", "--agent-timeout", "4s",
                                            "--agent-poll", "3s", "--log-level", "debug"], time_scale=20)
        self.kubectl_env = dict(os.environ, KUBECONFIG=self.env.kubeconfig)
        self.setup_identities()
        self.agents = {}
        for n in AGENT_NODES:
            self.start_agent(n)

    # ---- images ----
    def build_images(self):
        h = self.reg.host
        self.base = w.layer_tar({"base/blob.bin": os.urandom(8 << 20)})  # shared by two images
        self.base_digest = "sha256:" + __import__("hashlib").sha256(self.base).hexdigest()
        self.img.image("small", "1", [w.layer_tar({"hello.txt": b"hello from prewarm\n"})])
        self.img.image("shared-a", "1", [self.base, w.layer_tar({"a.txt": b"a"})])
        self.img.image("shared-b", "1", [self.base, w.layer_tar({"b.txt": b"b"})])
        self.img.index("multi", "1", {"amd64": [w.layer_tar({"arch.txt": b"amd64"})],
                                      "arm64": [w.layer_tar({"arch.txt": b"arm64"})]})
        self.img.image("second", "1", [w.layer_tar({"second.txt": b"2"})])
        self.img.image("third", "1", [w.layer_tar({"third.txt": b"3"})])
        self.big = w.layer_tar({"big.bin": os.urandom(48 << 20)})
        self.img.image("big", "1", [self.big])
        self.names = {k: "%s/%s:1" % (h, k) for k in ("small", "shared-a", "shared-b", "multi", "second", "third", "big")}

    # ---- kubesim identities: the agents' ServiceAccount, a pod per agent node, a token bound to it ----
    def setup_identities(self):
        e = self.env
        code, body = e.kube("POST", "/api/v1/namespaces/prewarm/serviceaccounts",
                            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prewarm-agent"}})
        if code not in (201, 409):
            raise RuntimeError("cannot create the ServiceAccount: %s %s" % (code, body))
        e.kube("POST", "/api/v1/namespaces/prewarm/serviceaccounts",
               {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "someone-else"}})
        self.tokens = {}
        for n in AGENT_NODES:
            pod = "prewarm-agent-" + n
            code, body = e.kube("POST", "/api/v1/namespaces/prewarm/pods", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "labels": {"app": "prewarm-agent"}},
                "spec": {"nodeName": n, "serviceAccountName": "prewarm-agent",
                         "containers": [{"name": "agent", "image": "ghcr.io/prewarm/prewarm:0.1.0"}]}})
            if code not in (201, 409):
                raise RuntimeError("cannot create pod %s: %s %s" % (pod, code, body))
            self.tokens[n] = self.token_for("prewarm-agent", pod)
        self.other_token = self.token_for("someone-else", None)

    def token_for(self, sa, pod):
        cmd = ["kubectl", "create", "token", sa, "-n", "prewarm", "--audience", "prewarm", "--duration", "1h"]
        if pod:
            cmd += ["--bound-object-kind", "Pod", "--bound-object-name", pod]
        r = sh(cmd, env=self.kubectl_env)
        if r.returncode != 0:
            raise RuntimeError("kubectl create token: " + r.stderr)
        return r.stdout.strip()

    def token_file(self, node, token=None):
        path = os.path.join(self.dir, "token-" + node)
        with open(path, "w") as f:
            f.write(token or self.tokens[node])
        return path

    # ---- agents ----
    def start_agent(self, node, extra=()):
        log = open(os.path.join(self.dir, "agent-%s.log" % node), "a")
        p = subprocess.Popen([os.path.join(BIN, "prewarm-agent"), "--server", self.env.api_base, "--node", node,
                              "--runtime-endpoint", "unix://" + self.ctrd[node].sock, "--token-file",
                              self.token_file(node), "--log-format", "text"] + list(extra),
                             stdout=log, stderr=subprocess.STDOUT)
        self.agents[node] = (p, log)
        return p

    def stop_agent(self, node, sig=signal.SIGTERM):
        p, log = self.agents.pop(node)
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()
        return p.returncode

    def agent_log(self, node):
        with open(os.path.join(self.dir, "agent-%s.log" % node), errors="replace") as f:
            return f.read()

    def agents_list(self):
        code, body = self.env.api("GET", "/api/v1/agents")
        return {a["node"]: a for a in body["items"]} if code == 200 else {}

    def wait_healthy(self, nodes, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            a = self.agents_list()
            if all(n in a and a[n]["healthy"] for n in nodes):
                return True
            time.sleep(0.2)
        return False

    def prewarmctl(self, *args, timeout=180):
        return sh([os.path.join(BIN, "prewarmctl"), "--server", self.env.api_base] + list(args), timeout=timeout)

    def close(self):
        for n in list(self.agents):
            self.stop_agent(n)
        for c in self.ctrd.values():
            c.close()
        self.reg.close()
        logs = [os.path.join(self.dir, f) for f in os.listdir(self.dir) if f.startswith("agent-")]
        for path in logs:
            with open(path, errors="replace") as f:
                rep = pl.sanitizer_report(f.read())
            pl.sanitizer_logs.append(os.path.basename(path))
            if rep:
                pl.sanitizer_reports.append("%s:\n%s" % (os.path.basename(path), rep))
        self.env.close()
        if os.environ.get("PW_KEEP_TMP"):
            print("# e2e files kept in " + self.dir, flush=True)
        else:
            w.cleanup(self.dir)


def node_results(W, tid):
    return {n["nodeName"]: n for n in W.env.task_nodes(tid)}


def test_agents_listed(W):
    ok = W.wait_healthy(AGENT_NODES)
    a = W.agents_list()
    tap(ok and sorted(a) == AGENT_NODES and all(a[n]["runtime"]["name"] == "containerd" for n in AGENT_NODES),
        "three agents sync with their tokens and report containerd", json.dumps(a)[:500])
    r = W.prewarmctl("agents")
    tap(r.returncode == 0 and all(n in r.stdout for n in AGENT_NODES) and "containerd" in r.stdout,
        "prewarmctl agents lists them", r.stdout + r.stderr)


def test_pull_all(W):
    imgs = [W.names[k] for k in ("small", "shared-a", "shared-b", "multi")]
    r = W.prewarmctl("create", *imgs, "--mode", "agent", "--wait", *sum((["--node", n] for n in AGENT_NODES), []))
    tap(r.returncode == 0, "a task of four images in mode agent succeeds (prewarmctl --wait exit 0)",
        r.stdout[-800:] + r.stderr[-800:])
    held = {n: W.ctrd[n].images() for n in AGENT_NODES}
    missing = {n: [i for i in imgs if i not in held[n]] for n in AGENT_NODES}
    tap(all(not m for m in missing.values()), "every containerd holds every image (ctr images ls)", json.dumps(missing))
    gets = W.reg.blob_gets(W.base_digest)
    tap(gets == len(AGENT_NODES), "the shared base layer was fetched once per node (%d GETs for 3 nodes)" % gets)
    code, tasks = W.env.api("GET", "/api/v1/tasks?limit=1")
    tid = tasks["items"][0]["id"]
    res = node_results(W, tid)
    tap(all(res[n]["mode"] == "agent" and res[n]["state"] == "succeeded" for n in AGENT_NODES),
        "per-node results say mode agent, succeeded", json.dumps(res)[:800])
    jobs = W.env.prewarm_jobs()
    tap(jobs == [], "no Job was made in agent mode", json.dumps(jobs)[:300])
    return imgs


def test_second_task_skipped(W, imgs):
    before = {n: W.agent_log(n).count("assignment ") for n in AGENT_NODES}
    tid = W.env.create_task({"images": imgs, "mode": "agent", "nodeNames": AGENT_NODES})
    t = W.env.wait_task(tid, 120)
    res = node_results(W, tid)
    after = {n: W.agent_log(n).count("assignment ") for n in AGENT_NODES}
    tap(t["status"] == "succeeded" and all(res[n]["state"] == "skipped" for n in AGENT_NODES) and before == after,
        "a second task of the same images is all skipped from the agents' inventories, no assignment made",
        json.dumps({"task": t["status"], "states": {n: res[n]["state"] for n in res}}))


def test_not_found(W):
    bad = W.reg.host + "/does-not-exist:1"
    tid = W.env.create_task({"images": [bad], "mode": "agent", "nodeNames": ["node-0001"], "retries": 0})
    t = W.env.wait_task(tid, 120)
    n = node_results(W, tid)["node-0001"]
    im = n["images"][0]
    tap(t["status"] == "failed" and n["state"] == "failed" and im["reason"] == "ErrImagePull" and "not found" in im["message"],
        "a missing repository fails ErrImagePull with the runtime's message", json.dumps(n)[:600])


def test_auto_mixes(W):
    tid = W.env.create_task({"images": [W.names["second"]], "mode": "auto"})
    t = W.env.wait_task(tid, 180)
    res = node_results(W, tid)
    modes = {n: res[n].get("mode") for n in res}
    want = {n: "agent" for n in AGENT_NODES}
    want["node-0004"] = "job"
    tap(t["status"] == "succeeded" and modes == want and W.names["second"] in W.ctrd["node-0002"].images(),
        "mode auto: agent nodes pull through their agents, the agentless node through a Job", json.dumps(modes))


def test_foreign_node_token(W):
    body = {"node": "node-0002", "assignments": [], "wait": False}
    tok = W.tokens["node-0001"]
    code, out = W.env._call(W.env.api_base + "/agent/v1/sync", "POST", body, {"Authorization": "Bearer " + tok}, None)
    tap(code == 403 and "node-0001" in json.dumps(out), "node-0001's token syncing as node-0002 gets 403",
        "%s %s" % (code, out))
    code, out = W.env._call(W.env.api_base + "/agent/v1/sync", "POST", {"node": "node-0001", "wait": False},
                            {"Authorization": "Bearer " + W.other_token}, None)
    tap(code == 403, "another ServiceAccount's token gets 403", "%s %s" % (code, out))
    code, out = W.env._call(W.env.api_base + "/agent/v1/sync", "POST", {"node": "node-0001"},
                            {"Authorization": "Bearer not-a-token"}, None)
    tap(code == 401, "a token kubesim never issued gets 401", "%s %s" % (code, out))
    code, out = W.env._call(W.env.api_base + "/agent/v1/sync", "POST", {"node": "node-0001", "assignments": [{"id": "x"}]},
                            {"Authorization": "Bearer " + W.tokens["node-0001"]}, None)
    tap(code == 400 and "assignments[0].id" in json.dumps(out), "a malformed sync gets 400 naming the field",
        "%s %s" % (code, out))


def main():
    if w.needs_root():
        print("1..1")
        print("ok 1 - agent e2e # SKIP needs root (containerd)")
        return 0
    W = World()
    try:
        pl.scenario("agents listed", test_agents_listed, W)
        imgs = None
        try:
            imgs = test_pull_all(W)
        except Exception as e:  # noqa: BLE001
            tap(False, "pull all", "exception: %s" % e)
        if imgs:
            pl.scenario("second task", test_second_task_skipped, W, imgs)
        pl.scenario("not found", test_not_found, W)
        pl.scenario("auto", test_auto_mixes, W)
        pl.scenario("foreign token", test_foreign_node_token, W)
    finally:
        W.close()
    pl.finish()


if __name__ == "__main__":
    sys.exit(main())
