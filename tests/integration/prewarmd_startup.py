#!/usr/bin/env python3
"""prewarmd's start-up: the "listening on ADDR" line names the address actually bound (127.0.0.2,
[::1], localhost), and that address answers; every start-up failure (a bad flag value, an unknown
flag, a bad listen address, one in use, a store that cannot open, a kubeconfig that cannot load)
exits non-zero at once with a message naming what is wrong, and no listening line.
TAP output. The kubeconfig points at a port nobody listens on: prewarmd serves its API (healthz)
before its cluster answers."""
import os
import socket
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from prewarmd_lib import sanitizer_report  # noqa: E402

BIN = os.environ.get("PW_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "asan", "bin"))
PREWARMD = os.path.join(BIN, "prewarmd")
results = []


def tap(ok, name, diag=""):
    results.append(ok)
    print("%s %d - %s" % ("ok" if ok else "not ok", len(results), name))
    if not ok and diag:
        for line in str(diag).splitlines()[-20:]:
            print("# " + line)
    sys.stdout.flush()


def kubeconfig(d):
    path = os.path.join(d, "kubeconfig")
    with open(path, "w") as f:
        f.write("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster: {server: "
                "\"http://127.0.0.1:9\"}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: c\n"
                "  context: {cluster: c, user: u}\n")
    return path


def start(d, args):
    err = open(os.path.join(d, "stderr-%d" % len(results)), "w+")
    p = subprocess.Popen([PREWARMD, "--store", "memory:", "--log-format", "text"] + args, stdout=subprocess.PIPE,
                         stderr=err, text=True)
    return p, err


def stop(p, err):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    err.seek(0)
    return err.read()


def ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def listen_case(d, kc, listen, want_host):
    name = "--listen %s prints the bound address %s:PORT and it answers" % (listen, want_host)
    p, err = start(d, ["--kubeconfig", kc, "--listen", listen])
    line = p.stdout.readline().strip()
    ok, diag = False, line
    if line.startswith("listening on "):
        addr = line.split()[-1]
        host, _, port = addr.rpartition(":")
        if host == want_host and port.isdigit() and int(port) > 0:
            try:
                with urllib.request.urlopen("http://%s/healthz" % addr, timeout=10) as r:
                    ok = r.status == 200
            except OSError as e:
                diag = "%s: %s" % (addr, e)
        else:
            diag = "printed %r, want host %s" % (line, want_host)
    log = stop(p, err)
    rep = sanitizer_report(log)
    tap(ok and not rep, name, diag + ("\n" + rep if rep else "") + "\n" + log[-1500:])


def failure_case(d, name, args, want_text):
    p, err = start(d, args)
    try:
        out, _ = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        tap(False, name, "still running after 30 s")
        return
    log = stop(p, err)
    ok = p.returncode != 0 and "listening on" not in out and want_text in log
    tap(ok and not sanitizer_report(log), name, "exit %s, stdout %r\n%s" % (p.returncode, out, log))


def main():
    d = tempfile.mkdtemp(prefix="pw-startup-")
    kc = kubeconfig(d)
    cases_v6 = ipv6_loopback()
    print("1..%d" % (9 + (1 if cases_v6 else 0)))
    listen_case(d, kc, "127.0.0.2:0", "127.0.0.2")
    listen_case(d, kc, "localhost:0", "127.0.0.1")
    if cases_v6:
        listen_case(d, kc, "[::1]:0", "[::1]")
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    failure_case(d, "a listen address in use: exit non-zero, says so", ["--kubeconfig", kc, "--listen",
                                                                         "127.0.0.1:%d" % port], "in use")
    busy.close()
    failure_case(d, "a bad listen address: exit non-zero, names it", ["--kubeconfig", kc, "--listen", "nowhere"],
                 "nowhere")
    failure_case(d, "a bad flag value: exit non-zero, names the flag",
                 ["--kubeconfig", kc, "--listen", "127.0.0.1:0", "--max-nodes-in-flight", "lots"],
                 "max-nodes-in-flight")
    failure_case(d, "an unknown flag: exit non-zero, names it", ["--kubeconfig", kc, "--no-such-flag"],
                 "no-such-flag")
    with open(os.path.join(d, "a-file"), "w") as f:
        f.write("not a directory\n")
    failure_case(d, "a store that cannot open (its directory is a file): exit non-zero, says why",
                 ["--kubeconfig", kc, "--listen", "127.0.0.1:0", "--store",
                  "sqlite:" + os.path.join(d, "a-file", "x.db")], "store")
    failure_case(d, "an unknown store scheme: exit non-zero, names it",
                 ["--kubeconfig", kc, "--listen", "127.0.0.1:0", "--store", "etcd:x"], "etcd")
    failure_case(d, "a kubeconfig that cannot load: exit non-zero, names the file",
                 ["--kubeconfig", os.path.join(d, "missing.yaml"), "--listen", "127.0.0.1:0"], "missing.yaml")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
