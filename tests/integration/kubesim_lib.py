"""kubesim_lib: helpers for kubesim's own suites (kubesim_python, kubesim_tokens, kubesim_sched,
kubesim_rbac), which drive kubesim with real clients: kubectl, the official Python client and plain
HTTPS. Not a suite itself (prewarmd_lib is the one for suites that also run prewarmd).

TAP: tap() prints one line (a failure with up to 30 lines of diagnosis under it), @case(name) runs a
function as one case (ok when it returns, not ok with the traceback when it raises), finish() closes
the suite's kubesim, prints the plan and exits 1 when a case failed.

Kubesim(args) starts a kubesim on 127.0.0.1:0 in a temporary directory, waits (bounded) for its
kubeconfig and reads the server, the CA and the admin token from it; it offers raw calls as any
token, kubectl (PATH's or another binary), Python clients and kubeconfigs for other users. close()
stops it by PID (SIGTERM, SIGKILL after 30 s) and says how it exited and whether its log holds a
sanitizer report."""
import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import sanitizer_report  # noqa: E402

ROOT = os.environ.get("PW_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("PW_BIN") or os.path.join(ROOT, "build", "asan", "bin")
# kubectl on PATH; other versions are installed beside it as kubectl.<minor> (see kubectl_beside)
KUBECTL = shutil.which("kubectl")

results = []


def tap(ok, name, diag=None):
    results.append(bool(ok))
    print(("ok - " if ok else "not ok - ") + name, flush=True)
    if not ok and diag:
        for line in str(diag).splitlines()[:30]:
            print("#   " + line, flush=True)


def case(name):
    """Runs the decorated function as one case: ok when it returns without raising."""
    def run(fn):
        try:
            fn()
            tap(True, name)
        except Exception:  # noqa: BLE001 - every failure is reported as a case
            tap(False, name, traceback.format_exc())
        return fn
    return run


def wait_until(pred, timeout, step=0.1):
    """pred()'s first true value within timeout seconds, else its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def kubectl_beside(name):
    """The path of kubectl binary name (e.g. "kubectl.1.33") installed beside PATH's kubectl, or None."""
    if not KUBECTL:
        return None
    path = os.path.join(os.path.dirname(os.path.realpath(KUBECTL)), name)
    return path if os.access(path, os.X_OK) else None


class Kubesim:
    """One kubesim with flags args (--listen and --kubeconfig-out are added). Raises RuntimeError
    (with the log) when it does not write its kubeconfig within start_timeout seconds."""

    def __init__(self, args, prefix="kubesim.", start_timeout=60):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.log_path = os.path.join(self.dir, "kubesim.log")
        self.log = open(self.log_path, "w")
        self.closed = None
        self.proc = subprocess.Popen([os.path.join(BIN, "kubesim"), "--listen", "127.0.0.1:0", "--kubeconfig-out",
                                      self.kubeconfig] + list(args), stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: os.path.exists(self.kubeconfig) or self.proc.poll() is not None, start_timeout)
        if not os.path.exists(self.kubeconfig):
            exited = self.proc.poll()
            self.close()
            raise RuntimeError("kubesim %s: %s" % ("exited with %s" % exited if exited is not None else "did not start",
                                                   self.closed[2][-3000:]))
        with open(self.kubeconfig) as f:
            kc = yaml.safe_load(f)
        ctx = next(c for c in kc["contexts"] if c["name"] == kc["current-context"])["context"]
        cl = next(c for c in kc["clusters"] if c["name"] == ctx["cluster"])["cluster"]
        self.server = cl["server"]
        self.admin = next(u for u in kc["users"] if u["name"] == ctx["user"])["user"]["token"]
        self.ca = os.path.join(self.dir, "ca.crt")
        with open(self.ca, "wb") as f:
            f.write(base64.b64decode(cl["certificate-authority-data"]))
        self.ssl = ssl.create_default_context(cafile=self.ca)

    def call(self, method, path, token=None, body=None):
        """One request with a bearer token (default: the admin's): (HTTP status, the JSON body, None
        when empty, or the text when it is not JSON)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Authorization": "Bearer " + (token or self.admin),
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.ssl) as r:
                code, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            code, raw = e.code, e.read()
        try:
            return code, json.loads(raw) if raw else None
        except ValueError:
            return code, raw.decode(errors="replace")

    def kubectl(self, *args, kb=None, kubeconfig=None, stdin=None, cache=None):
        """Runs kubectl (kb: another binary) on kubeconfig (default: the admin's); the
        CompletedProcess. Each binary has its own discovery cache unless cache names one."""
        kb = kb or KUBECTL
        cache = cache or os.path.join(self.dir, "kcache-" + os.path.basename(kb))
        return subprocess.run([kb, "--kubeconfig", kubeconfig or self.kubeconfig, "--cache-dir", cache] + list(args),
                              input=stdin, capture_output=True, text=True, timeout=60)

    def py(self, token=None):
        """An official Python client (ApiClient) calling as token (default: the admin's)."""
        from kubernetes import client
        c = client.Configuration()
        c.host = self.server
        c.ssl_ca_cert = self.ca
        c.api_key = {"authorization": "Bearer " + (token or self.admin)}
        return client.ApiClient(c)

    def _kubeconfig_user(self, name, user):
        path = os.path.join(self.dir, "kubeconfig-" + name)
        doc = {"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "kubesim", "cluster": {
            "server": self.server, "certificate-authority": self.ca}}],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": "kubesim", "user": name, "namespace": "default"}}],
            "current-context": name}
        with open(path, "w") as f:
            yaml.safe_dump(doc, f)
        os.chmod(path, 0o600)
        return path

    def kubeconfig_for(self, token, name):
        """A kubeconfig (path) whose user name presents token."""
        return self._kubeconfig_user(name, {"token": token})

    def kubeconfig_cert(self, cert, key, name):
        """A kubeconfig (path) whose user name presents a client certificate (files)."""
        return self._kubeconfig_user(name, {"client-certificate": cert, "client-key": key})

    def close(self):
        """Stops kubesim (SIGTERM, SIGKILL after 30 s) and removes its directory (kept with
        PW_KEEP_TMP set): (exit status, the first sanitizer report of its log or ""). Idempotent."""
        if self.closed is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.log.close()
            with open(self.log_path, errors="replace") as f:
                text = f.read()
            self.closed = (self.proc.returncode, sanitizer_report(text), text)
            if not os.environ.get("PW_KEEP_TMP"):
                shutil.rmtree(self.dir, ignore_errors=True)
        return self.closed[0], self.closed[1]

    def check_close(self, name="SIGTERM: kubesim exits 0 without sanitizer reports"):
        """close(), reported as the case name."""
        rc, rep = self.close()
        tap(rc == 0 and not rep, name, "exit status %s\n%s" % (rc, rep or self.closed[2][-3000:]))


def start(args, prefix, name="kubesim starts and writes its kubeconfig"):
    """The suite's Kubesim, reported as the case name; when it does not start, that case fails and the
    suite finishes."""
    try:
        sim = Kubesim(args, prefix)
    except RuntimeError as e:
        tap(False, name, str(e))
        finish()
    tap(True, name)
    return sim


def finish(sim=None):
    """Closes sim (check_close), prints the plan and exits: 0 when every case passed."""
    if sim is not None:
        sim.check_close()
    print("1..%d" % len(results))
    sys.exit(0 if all(results) else 1)
