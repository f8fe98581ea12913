#!/usr/bin/env python3
"""agent_e2e: agent mode end to end on real programs (issue 9). A Debian docker-registry on 127.0.0.1
holds images this test builds offline; three real containerd instances (own root, state, socket and
config each) are three nodes of a kubesim cluster; three real prewarm-agent processes, one per node,
sync with prewarmd using ServiceAccount tokens kubesim issued (TokenRequest bound to each agent's
pod), and pull through each containerd's CRI. A fourth kubesim node has no agent (mode auto falls
back to a Job there). Checked from outside with `ctr` and the registry's access log. Needs root
(containerd): prints a SKIP line otherwise."""
import hashlib
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


def fake_digest(text):
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def openssl(*args):
    r = sh(["openssl"] + list(args))
    if r.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (args[0], r.stderr))


class World:
    def __init__(self):
        self.dir = w.workdir()
        self.reg = w.Registry(self.dir)
        self.preg = w.Registry(self.dir, users={"alice": "s3cret-pw"})  # the private one
        self.img = w.ImageBuilder(self.reg)
        self.build_images()
        self.ctrd = {n: w.Containerd(self.dir, n, [self.reg.host, self.preg.host]) for n in AGENT_NODES}
        self.make_tls()
        self.api_port, self.agent_port = w.free_port(), w.free_port()
        self.pw_args = ["--agents", "--store", "sqlite:{dir}/pw.db", "--agent-timeout", "4s", "--agent-poll", "3s",
                        "--listen", "127.0.0.1:%d" % self.api_port, "--agent-listen", "127.0.0.1:%d" % self.agent_port,
                        "--tls-cert", self.cert, "--tls-key", self.key, "--log-level", "debug"]
        self.env = pl.Env(nodes=4, sim_args=["--catalog", self.catalog(), "--arm64-percent", "0"],
                          pw_args=self.pw_args, time_scale=20)
        self.agent_url = "https://127.0.0.1:%d" % self.agent_port
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
        self.k_layers = {}
        for k in ("k1", "k2", "k3", "k4"):
            layer = w.layer_tar({k + ".bin": os.urandom(4 << 20)})
            self.k_layers[k] = "sha256:" + hashlib.sha256(layer).hexdigest()
            self.img.image(k, "1", [layer])
        self.big = w.layer_tar({"big.bin": os.urandom(48 << 20)})
        self.img.image("big", "1", [self.big])
        self.huge_layer = w.layer_tar({"huge.bin": os.urandom(200 << 20)})  # 200 MB: kills land mid-pull
        self.huge_digest = "sha256:" + hashlib.sha256(self.huge_layer).hexdigest()
        self.img.image("huge", "1", [self.huge_layer])
        w.ImageBuilder(self.preg).image("private", "1", [w.layer_tar({"secret.txt": b"private\n"})])
        self.names = {k: "%s/%s:1" % (h, k) for k in ("small", "shared-a", "shared-b", "multi", "second", "third", "big",
                                                      "huge", "k1", "k2", "k3", "k4")}
        self.names["private"] = "%s/private:1" % self.preg.host

    def make_tls(self):
        """A CA and prewarmd's agent-listener certificate for 127.0.0.1 (openssl, offline)."""
        d = self.dir
        self.ca, self.cert, self.key = (os.path.join(d, f) for f in ("ca.pem", "server.pem", "server.key"))
        cakey = os.path.join(d, "ca.key")
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", cakey, "-out", self.ca, "-days", "2",
                "-subj", "/CN=prewarm-e2e-ca")
        csr = os.path.join(d, "server.csr")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out", csr, "-subj", "/CN=127.0.0.1")
        ext = os.path.join(d, "ext.cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", cakey, "-CAcreateserial", "-out", self.cert,
                "-days", "2", "-extfile", ext)

    def catalog(self):
        """kubesim's image catalogue: prewarm's helper image (the agentless node's Jobs run it) and the
        registry's images, so a Job on a simulated node can pull them too."""
        def img(names, execs):
            return {"names": names, "digest": fake_digest("idx" + names[0]),
                    "platforms": [{"os": "linux", "arch": "amd64", "digest": fake_digest("m" + names[0]),
                                   "layers": [{"digest": fake_digest("l" + names[0]), "size": 100000}]}],
                    "executables": execs}
        cat = {"images": [img(["ghcr.io/prewarm/prewarm:0.1.0"], ["/bin/sh", "/bin/true", "/prewarm-true"])] +
               [img([n], ["/true"]) for n in self.names.values()]}
        path = os.path.join(self.dir, "catalog.json")
        with open(path, "w") as f:
            json.dump(cat, f)
        return path

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
        p = subprocess.Popen([os.path.join(BIN, "prewarm-agent"), "--server", self.agent_url, "--server-ca", self.ca,
                              "--node", node, "--runtime-endpoint", "unix://" + self.ctrd[node].sock, "--token-file",
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

    def tls_ctx(self):
        import ssl
        ctx = ssl.create_default_context(cafile=self.ca)
        return ctx

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
        # --tls-cert serves the API over HTTPS too (issue 10): prewarmctl verifies it with the test's CA
        return sh([os.path.join(BIN, "prewarmctl"), "--server", self.env.api_base, "--certificate-authority", self.ca]
                  + list(args), timeout=timeout)

    def close(self):
        for n in list(self.agents):
            self.stop_agent(n)
        for c in self.ctrd.values():
            c.close()
        self.reg.close()
        self.preg.close()
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
    code, out = W.env._call(W.agent_url + "/agent/v1/sync", "POST", body, {"Authorization": "Bearer " + tok}, W.tls_ctx())
    tap(code == 403 and "node-0001" in json.dumps(out), "node-0001's token syncing as node-0002 gets 403",
        "%s %s" % (code, out))
    code, out = W.env._call(W.agent_url + "/agent/v1/sync", "POST", {"node": "node-0001", "wait": False},
                            {"Authorization": "Bearer " + W.other_token}, W.tls_ctx())
    tap(code == 403, "another ServiceAccount's token gets 403", "%s %s" % (code, out))
    code, out = W.env._call(W.agent_url + "/agent/v1/sync", "POST", {"node": "node-0001"},
                            {"Authorization": "Bearer not-a-token"}, W.tls_ctx())
    tap(code == 401, "a token kubesim never issued gets 401", "%s %s" % (code, out))
    code, out = W.env._call(W.agent_url + "/agent/v1/sync", "POST", {"node": "node-0001", "assignments": [{"id": "x"}]},
                            {"Authorization": "Bearer " + W.tokens["node-0001"]}, W.tls_ctx())
    tap(code == 400 and "assignments[0].id" in json.dumps(out), "a malformed sync gets 400 naming the field",
        "%s %s" % (code, out))


def wait_for(pred, timeout, step=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def test_private(W):
    e = W.env
    host = W.preg.host
    cfg = {"auths": {host: {"username": "alice", "password": "s3cret-pw",
                            "auth": __import__("base64").b64encode(b"alice:s3cret-pw").decode()}}}
    data = __import__("base64").b64encode(json.dumps(cfg).encode()).decode()
    code, body = e.kube("POST", "/api/v1/namespaces/prewarm/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": data}})
    if code not in (201, 409):
        raise RuntimeError("secret: %s %s" % (code, body))
    img = W.names["private"]
    tid = e.create_task({"images": [img], "mode": "agent", "nodeNames": ["node-0001"], "imagePullSecrets": ["regcred"]})
    t = e.wait_task(tid, 120)
    tap(t["status"] == "succeeded" and img in W.ctrd["node-0001"].images(),
        "a private image pulls with its imagePullSecret, the credentials sent over TLS", json.dumps(t)[:600])
    tid = e.create_task({"images": [img], "mode": "agent", "nodeNames": ["node-0002"], "retries": 0})
    t = e.wait_task(tid, 120)
    n = node_results(W, tid)["node-0002"]
    im = n["images"][0]
    tap(t["status"] == "failed" and im["reason"] == "ErrImagePull" and "401 Unauthorized" in im["message"],
        "without the secret it fails ErrImagePull with the registry's 401", json.dumps(n)[:600])
    texts = [open(os.path.join(e.dir, "prewarmd.log"), errors="replace").read()] + [W.agent_log(x) for x in AGENT_NODES]
    code, tasks = e.api("GET", "/api/v1/tasks?limit=50")
    texts.append(json.dumps(tasks))
    tap(not any("s3cret-pw" in x or "YWxpY2U6czNjcmV0LXB3" in x for x in texts),
        "the password appears in no log of prewarmd or the agents and not in the task API")


def test_disk(W):
    W.stop_agent("node-0003")
    W.start_agent("node-0003", ["--min-free-bytes", "1000Ti"])
    try:
        W.wait_healthy(["node-0003"])
        img = W.names["big"]
        tid = W.env.create_task({"images": [img], "mode": "agent", "nodeNames": ["node-0003"]})
        t = W.env.wait_task(tid, 120)
        im = node_results(W, tid)["node-0003"]["images"][0]
        tap(t["status"] == "failed" and im["reason"] == "InsufficientDiskSpace" and img not in W.ctrd["node-0003"].images(),
            "free space below --min-free-bytes fails InsufficientDiskSpace and nothing is pulled", json.dumps(im))
    finally:
        W.stop_agent("node-0003")
        W.start_agent("node-0003")
        W.wait_healthy(["node-0003"])


def test_runtime_down(W):
    c = W.ctrd["node-0002"]
    c.stop()
    try:
        tid = W.env.create_task({"images": [W.names["third"]], "mode": "agent", "nodeNames": ["node-0002"],
                                 "retries": 0})
        t = W.env.wait_task(tid, 120)
        im = node_results(W, tid)["node-0002"]["images"][0]
        tap(t["status"] == "failed" and im["reason"] == "RuntimeUnavailable",
            "containerd stopped under an agent: RuntimeUnavailable", json.dumps(im))
    finally:
        c.start()
    tid = W.env.create_task({"images": [W.names["third"]], "mode": "agent", "nodeNames": ["node-0002"]})
    t = W.env.wait_task(tid, 120)
    tap(t["status"] == "succeeded" and W.names["third"] in c.images(),
        "containerd back: the same agent pulls again", json.dumps(t)[:400])


def test_agent_kill(W):
    small, huge = W.names["k4"], W.names["huge"]
    tid = W.env.create_task({"images": [small, huge], "mode": "agent", "nodeNames": ["node-0001"]})
    # the small image done and the 200 MB one in flight: then the agent dies
    active = wait_for(lambda: small in W.ctrd["node-0001"].images() and
                      W.agents_list().get("node-0001", {}).get("assignments") == 1, 60, 0.02)
    time.sleep(0.3)
    W.stop_agent("node-0001", signal.SIGKILL)
    mid = huge not in W.ctrd["node-0001"].images()
    W.start_agent("node-0001")
    t = W.env.wait_task(tid, 180)
    small_gets, huge_gets = W.reg.blob_gets(W.k_layers["k4"]), W.reg.blob_gets(W.huge_digest)
    print("# agent SIGKILLed %s the 200 MB pull; its layer was served %d times, the finished image's layer %d" %
          ("during" if mid else "after", huge_gets, small_gets), flush=True)
    tap(bool(active) and t["status"] == "succeeded" and huge in W.ctrd["node-0001"].images() and small_gets == 1,
        "SIGKILL of an agent mid-pull: restarted, it finishes the task right; what it had pulled is not pulled again",
        json.dumps({"active": bool(active), "mid": mid, "small_gets": small_gets, "status": t["status"]}))


def test_prewarmd_kill(W):
    e = W.env
    imgs = [W.names[k] for k in ("k1", "k2", "k3")]
    tid = e.create_task({"images": imgs, "mode": "agent", "nodeNames": AGENT_NODES})
    wait_for(lambda: e.api("GET", "/api/v1/tasks/" + tid)[1]["progress"]["runningNodes"] > 0, 30, 0.02)
    e.pw.send_signal(signal.SIGKILL)
    e.pw.wait()
    e.start_prewarmd()
    t = e.wait_task(tid, 180)
    ok_all = all(i in W.ctrd[n].images() for n in AGENT_NODES for i in imgs)
    dup = {}
    for n in AGENT_NODES:
        log = W.agent_log(n)
        for i in imgs:
            c = sum(1 for line in log.splitlines() if "(%s): succeeded" % i in line)
            if c != 1:
                dup["%s %s" % (n, i)] = c
    tap(t["status"] == "succeeded" and ok_all and not dup,
        "SIGKILL of prewarmd mid-task (SQLite store): agents reconnect, the task completes, each image pulled once "
        "per node", json.dumps({"status": t["status"], "all": ok_all, "counts": dup}))


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
        pl.scenario("private", test_private, W)
        pl.scenario("disk", test_disk, W)
        pl.scenario("runtime down", test_runtime_down, W)
        pl.scenario("agent kill", test_agent_kill, W)
        pl.scenario("prewarmd kill", test_prewarmd_kill, W)
    finally:
        W.close()
    pl.finish()


if __name__ == "__main__":
    sys.exit(main())
