#!/usr/bin/env python3
"""The web page (issue 11 point 6) in a real browser: Debian's chromium, driven by npm playwright-core
(tests/browser/web_test.js), against prewarmd and kubesim. First the serving: / and /web/* with their
media types, ETag and 304, no-cache, the Content-Security-Policy, no inline script. Then, on 30 nodes
(a fifth of them arm64, which vllm's amd64-only image fails on): keyboard navigation to the form,
the server's field errors at their fields, a task created through the form reaching 100% without a
reload, its failed nodes grouped by reason with the registry's message, the grid's hover and
keyboard, both themes, cancelling a second task from its page, the token dialog on a 401, no console
errors. Then a 5,000-node task: the grid draws, keeps its frame rate and hovers while it runs. Screenshots go to
build/web-screenshots/."""
import os
import re
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prewarmd_lib  # noqa: E402
from prewarmd_lib import Env, finish, scenario, tap  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DRIVER = os.path.join(ROOT, "tests", "browser", "web_test.js")
SHOTS = os.path.join(ROOT, "build", "web-screenshots")
CHROMIUM = os.environ.get("PW_CHROMIUM", "/usr/bin/chromium")
# fast registry and nodes: vllm's 10.5 GB must not make the suite slow
SIM_ARGS = ["--registry-bandwidth", "200000", "--node-bandwidth", "20000"]


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def serving(env):
    base = env.api_base
    code, h, body = get(base + "/")
    tap(code == 200 and h.get("Content-Type") == "text/html; charset=utf-8", "GET / is the page, text/html", "%s %s" % (code, h))
    with open(os.path.join(ROOT, "web", "index.html"), "rb") as f:
        tap(body == f.read(), "GET / serves web/index.html as embedded at build time")
    csp = h.get("Content-Security-Policy", "")
    tap("script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
        and "frame-ancestors 'none'" in csp, "a strict Content-Security-Policy (%s)" % csp, csp)
    tap(not re.search(rb"<script(?![^>]*\bsrc=)[^>]*>", body) and not re.search(rb"\son[a-z]+\s*=", body)
        and not re.search(rb"\sstyle\s*=", body), "no inline script, event handler or style attribute in the page")
    tap(h.get("Cache-Control") == "no-cache" and h.get("X-Content-Type-Options") == "nosniff", "no-cache and nosniff", str(h))
    for path, ctype in (("/web/app.js", "text/javascript; charset=utf-8"), ("/web/app.css", "text/css; charset=utf-8"),
                        ("/web/favicon.svg", "image/svg+xml")):
        code, h, body = get(base + path)
        with open(os.path.join(ROOT, path.lstrip("/")), "rb") as f:
            same = body == f.read()
        etag = h.get("ETag", "")
        tap(code == 200 and h.get("Content-Type") == ctype and same and re.fullmatch(r'"[0-9a-f]{16}"', etag),
            "GET %s: %s, the file, ETag %s" % (path, ctype, etag), "%s %s" % (code, h))
        code2, _, body2 = get(base + path, {"If-None-Match": etag})
        tap(code2 == 304 and body2 == b"", "GET %s with If-None-Match: 304, no body" % path, str(code2))
    code, h, _ = get(base + "/web/app.js", {"If-None-Match": '"0000000000000000"'})
    tap(code == 200, "a stale ETag gets the file again", str(code))
    code, h, body = get(base + "/web/nope.js")
    tap(code == 404 and b"NotFound" in body, "an unknown asset is a JSON 404", "%s %s" % (code, body[:100]))


def browser(env, phase):
    os.makedirs(SHOTS, exist_ok=True)
    e = dict(os.environ, PW_URL=env.api_base, PW_PHASE=phase, PW_SHOTS=SHOTS, PW_CHROMIUM=CHROMIUM)
    p = subprocess.Popen(["node", DRIVER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=e,
                         cwd=os.path.join(ROOT, "tests", "browser"))
    cases = 0
    try:
        for line in p.stdout:
            line = line.rstrip("\n")
            if line.startswith("ok - ") or line.startswith("not ok - "):
                cases += 1
                tap(line.startswith("ok - "), line.split(" - ", 1)[1].split(" # ")[0],
                    line.split(" # ", 1)[1] if " # " in line else "")
            else:
                print("# " + line if not line.startswith("#") else line, flush=True)
        rc = p.wait(timeout=600)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    tap(rc == 0 and cases > 0, "the %s browser run finished (%d cases, exit %s)" % (phase, cases, rc))


def small():
    env = Env(30, sim_args=SIM_ARGS, time_scale=20)
    try:
        serving(env)
        browser(env, "small")
    finally:
        env.close()


def big():
    env = Env(5000, sim_args=SIM_ARGS, time_scale=20)
    try:
        browser(env, "big")
    finally:
        env.close()


def main():
    missing = [w for w, ok in (("chromium (%s)" % CHROMIUM, os.access(CHROMIUM, os.X_OK)),
                               ("tests/browser/node_modules", os.path.isdir(os.path.join(ROOT, "tests", "browser", "node_modules",
                                                                                        "playwright-core"))))
               if not ok]
    if missing:
        tap(False, "the browser test's tools are installed", "missing " + ", ".join(missing) + ": run scripts/install-deps")
        finish()
    scenario("serving and the small cluster", small)
    scenario("the 5,000-node grid", big)
    finish()


if __name__ == "__main__":
    main()
