"""openapi_check: checks prewarmd's responses against src/api/openapi.json (not a suite itself).

prewarmd_lib's Env.api() passes every response here; finish() reports one TAP case per suite that says
how many responses were checked and lists the first mismatches. So a field added to the code but not
to the document (or the reverse, for required fields) fails the suites that see it. Schemas are
JSON Schema 2020-12 (OpenAPI 3.1), checked with the jsonschema package."""
import json
import os
import re
import urllib.parse

import jsonschema

DOC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "api", "openapi.json")

with open(DOC_PATH) as f:
    DOC = json.load(f)

# (compiled path regex, path item) for every documented path; {param} matches one segment.
ROUTES = [(re.compile("^" + re.sub(r"\{[^/}]+\}", "[^/]+", p) + "$"), item) for p, item in DOC["paths"].items()]
checked = 0
problems = []


def _resolve_ref(ref):
    node = DOC
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _response_spec(op, code):
    responses = op.get("responses", {})
    r = responses.get(str(code)) or responses.get("%dXX" % (code // 100)) or responses.get("default")
    if r and "$ref" in r:
        r = _resolve_ref(r["$ref"])
    return r


def check(method, path, code, body):
    """Checks one response; records a problem (never raises)."""
    global checked
    checked += 1
    p = urllib.parse.urlsplit(path).path
    item = next((it for rx, it in ROUTES if rx.match(p)), None)
    where = "%s %s -> %s" % (method, p, code)
    if item is None:
        problems.append(where + ": path not in openapi.json")
        return
    op = item.get(method.lower())
    if op is None:
        if code == 405:
            return  # an undocumented method on a documented path: the server's generic 405
        problems.append(where + ": method not in openapi.json")
        return
    spec = _response_spec(op, code)
    if spec is None:
        problems.append(where + ": status not documented")
        return
    content = spec.get("content", {})
    if "application/json" not in content:
        return  # text/plain bodies (healthz, readyz) have no JSON schema
    schema = dict(content["application/json"]["schema"])
    schema["components"] = DOC["components"]  # so "#/components/..." resolves inside this schema
    try:
        jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as e:
        at = "/".join(str(x) for x in e.absolute_path)
        problems.append("%s: %s (at /%s)" % (where, e.message[:300], at))


def report(tap):
    """One TAP case: every response matched the document."""
    tap(not problems, "every API response matched openapi.json (%d checked)" % checked,
        "; ".join(problems[:5]) + (" (+%d more)" % (len(problems) - 5) if len(problems) > 5 else ""))
