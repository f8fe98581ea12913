"""cri_world: real container runtimes and a real registry for the agent's end-to-end tests (not a
suite itself).

Registry runs Debian's docker-registry on 127.0.0.1 (a free port, plain HTTP, its own storage dir,
optionally htpasswd basic auth on every repository) and writes its access log. ImageBuilder makes
images offline: layers are tar files the test makes, pushed with plain HTTP blob uploads, then an
OCI manifest (or an index over several platforms). Containerd runs one containerd with its own root,
state, socket and config (CRI plugin on, native snapshotter, the loopback registry as a plain-HTTP
mirror). Every wait is bounded; everything is stopped by PID; nothing binds outside loopback."""
import base64
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def stop(proc, sig_wait=5):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(sig_wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class Registry:
    """docker-registry on 127.0.0.1:<free port>. users: {name: password} turns on basic auth."""

    def __init__(self, workdir, users=None):
        self.dir = os.path.join(workdir, "registry-%d" % free_port())
        os.makedirs(self.dir)
        self.port = free_port()
        self.host = "127.0.0.1:%d" % self.port
        self.users = users or {}
        auth = ""
        if self.users:
            htpasswd = os.path.join(self.dir, "htpasswd")
            for i, (u, p) in enumerate(self.users.items()):
                subprocess.run(["htpasswd", "-Bb"] + (["-c"] if i == 0 else []) + [htpasswd, u, p],
                               check=True, capture_output=True)
            auth = "auth:\n  htpasswd:\n    realm: prewarm-test\n    path: %s\n" % htpasswd
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write("version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
                    "storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n"
                    "http:\n  addr: 127.0.0.1:%d\n%s" % (os.path.join(self.dir, "data"), self.port, auth))
        self.log_path = os.path.join(self.dir, "registry.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._up, 20, "docker-registry on " + self.host)

    def _up(self):
        if self.proc.poll() is not None:
            raise RuntimeError("docker-registry exited: " + open(self.log_path).read()[-2000:])
        try:
            urllib.request.urlopen("http://%s/v2/" % self.host, timeout=1)
            return True
        except urllib.error.HTTPError as e:
            return e.code == 401  # up, asking for credentials
        except OSError:
            return False

    def _req(self, method, path, body=None, headers=None):
        h = dict(headers or {})
        if self.users:
            u, p = next(iter(self.users.items()))
            h["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % (u, p)).encode()).decode()
        req = urllib.request.Request("http://%s%s" % (self.host, path), data=body, method=method, headers=h)
        return urllib.request.urlopen(req, timeout=60)

    def push_blob(self, repo, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        try:
            self._req("HEAD", "/v2/%s/blobs/%s" % (repo, digest))
            return digest  # already there (a shared layer)
        except urllib.error.HTTPError:
            pass
        r = self._req("POST", "/v2/%s/blobs/uploads/" % repo, b"")
        loc = r.headers["Location"]
        if loc.startswith("http"):
            loc = loc.split(self.host, 1)[1]
        loc += ("&" if "?" in loc else "?") + "digest=" + digest
        self._req("PUT", loc, data, {"Content-Type": "application/octet-stream"})
        return digest

    def push_manifest(self, repo, ref, doc, media_type):
        body = json.dumps(doc, separators=(",", ":")).encode()
        self._req("PUT", "/v2/%s/manifests/%s" % (repo, ref), body, {"Content-Type": media_type})
        return "sha256:" + hashlib.sha256(body).hexdigest(), len(body)

    def blob_gets(self, digest):
        """How many times the registry served blob digest (its access log)."""
        self.log.flush()
        with open(self.log_path) as f:
            return sum(1 for line in f if "GET /v2/" in line and "/blobs/" + digest in line and '" 200 ' in line)

    def close(self):
        stop(self.proc)
        self.log.close()


def layer_tar(files):
    """A gzip-less tar layer holding files {path: bytes}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


class ImageBuilder:
    def __init__(self, registry):
        self.reg = registry

    def _manifest(self, repo, layers, arch="amd64"):
        diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
        config = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["/true"]},
                             "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        cdig = self.reg.push_blob(repo, config)
        ldesc = []
        for l in layers:
            ldesc.append({"mediaType": OCI_LAYER, "digest": self.reg.push_blob(repo, l), "size": len(l)})
        return {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": cdig, "size": len(config)}, "layers": ldesc}

    def image(self, repo, tag, layers):
        """Pushes repo:tag made of layers (tar bytes each); returns the manifest digest."""
        doc = self._manifest(repo, layers)
        digest, _ = self.reg.push_manifest(repo, tag, doc, OCI_MANIFEST)
        return digest

    def index(self, repo, tag, per_arch):
        """A multi-arch index: per_arch {arch: [layers]}; returns the index digest."""
        manifests = []
        for arch, layers in per_arch.items():
            doc = self._manifest(repo, layers, arch)
            d, size = self.reg.push_manifest(repo, "%s-%s" % (tag, arch), doc, OCI_MANIFEST)
            manifests.append({"mediaType": OCI_MANIFEST, "digest": d, "size": size,
                              "platform": {"architecture": arch, "os": "linux"}})
        digest, _ = self.reg.push_manifest(repo, tag, {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                        "manifests": manifests}, OCI_INDEX)
        return digest


class Containerd:
    """One containerd with its own root, state, socket and config; registries: hosts served plain HTTP."""

    def __init__(self, workdir, name, registries):
        self.dir = os.path.join(workdir, "containerd-" + name)
        os.makedirs(self.dir)
        self.root = os.path.join(self.dir, "root")
        self.state = os.path.join(self.dir, "state")
        self.sock = os.path.join(self.dir, "containerd.sock")
        mirrors = "".join(
            '[plugins."io.containerd.grpc.v1.cri".registry.mirrors."%s"]\n  endpoint = ["http://%s"]\n' % (h, h)
            for h in registries)
        cfg = os.path.join(self.dir, "config.toml")
        with open(cfg, "w") as f:
            f.write('version = 2\nroot = "%s"\nstate = "%s"\n[grpc]\n  address = "%s"\n'
                    '[ttrpc]\n  address = "%s.ttrpc"\n[debug]\n  level = "info"\n'
                    '[plugins."io.containerd.grpc.v1.cri"]\n  disable_tcp_service = true\n'
                    '  stream_server_address = "127.0.0.1"\n  stream_server_port = "0"\n'
                    '[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "native"\n%s'
                    % (self.root, self.state, self.sock, self.sock, mirrors))
        self.cfg = cfg
        self.log_path = os.path.join(self.dir, "containerd.log")
        self.proc = None
        self.start()

    def start(self):
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(["containerd", "--config", self.cfg], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._up, 30, "containerd " + self.sock)

    def _up(self):
        if self.proc.poll() is not None:
            raise RuntimeError("containerd exited: " + open(self.log_path).read()[-3000:])
        if not os.path.exists(self.sock):
            return False
        r = subprocess.run(["ctr", "--address", self.sock, "version"], capture_output=True, timeout=10)
        return r.returncode == 0

    def stop(self):
        stop(self.proc, 10)
        self.proc = None
        self.log.close()

    def images(self):
        """The image names ctr lists in the CRI's namespace (k8s.io)."""
        r = subprocess.run(["ctr", "--address", self.sock, "-n", "k8s.io", "images", "ls", "-q"],
                           capture_output=True, text=True, timeout=30)
        return set(l for l in r.stdout.split("\n") if l)

    def close(self):
        if self.proc:
            self.stop()


def needs_root():
    return os.geteuid() != 0


def workdir():
    return tempfile.mkdtemp(prefix="pwe2e-")


def cleanup(path):
    shutil.rmtree(path, ignore_errors=True)
