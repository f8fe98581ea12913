#!/usr/bin/env bash
# openapi.sh: src/api/openapi.json is a valid OpenAPI 3.1 document (checked by @apidevtools/swagger-parser,
# installed from tests/openapi/package-lock.json by scripts/install-deps), prewarmd serves exactly it at
# /openapi.json, its own examples match its schemas, and the response checker that every prewarmd
# suite runs (tests/integration/openapi_check.py) rejects bodies that drift from it.
set -u
cd "$(dirname "$0")/../.."
root=$(pwd)
BIN=${PW_BIN:-$root/build/asan/bin}
doc=src/api/openapi.json
n=0
fails=0
tap() { # tap OK NAME [WHY]
    n=$((n + 1))
    if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2${3:+ # $3}"; fails=$((fails + 1)); fi
}
echo "1..5"
tmp=$(mktemp -d)
sim_pid=""
pw_pid=""
cleanup() {
    [ -n "$pw_pid" ] && kill "$pw_pid" 2>/dev/null && wait "$pw_pid" 2>/dev/null
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# 1. The validator we did not write.
if [ ! -d tests/openapi/node_modules/@apidevtools/swagger-parser ]; then
    tap 1 "swagger-parser validates openapi.json" "tests/openapi/node_modules missing: run scripts/install-deps"
else
    out=$(node tests/openapi/validate.js "$doc" 2>&1)
    tap $? "swagger-parser validates openapi.json ($out)" "$out"
fi

# 2. It is not a validator that accepts anything: a dangling $ref and a missing info.version fail.
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
d["paths"]["/api/v1/tasks"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] = "#/components/schemas/Nope"
json.dump(d, open(sys.argv[2], "w"))' "$doc" "$tmp/broken.json"
if [ -d tests/openapi/node_modules/@apidevtools/swagger-parser ] && ! node tests/openapi/validate.js "$tmp/broken.json" >/dev/null 2>&1; then
    tap 0 "swagger-parser rejects a document with a dangling \$ref"
else
    tap 1 "swagger-parser rejects a document with a dangling \$ref" "accepted"
fi

# 3. The document's examples match the schemas they illustrate; the checker flags drift both ways.
out=$(python3 - "$doc" <<'PY' 2>&1
import json, sys
sys.path.insert(0, "tests/integration")
import jsonschema
import openapi_check as oc
d = json.load(open(sys.argv[1]))
n = 0
for path, item in d["paths"].items():
    for method, op in item.items():
        if not isinstance(op, dict) or "responses" not in op:
            continue
        rb = op.get("requestBody", {}).get("content", {}).get("application/json")
        if rb and "example" in rb:
            s = dict(rb["schema"], components=d["components"])
            jsonschema.validate(rb["example"], s, cls=jsonschema.Draft202012Validator)
            n += 1
        for code, r in op["responses"].items():
            if "$ref" in r:
                r = oc._resolve_ref(r["$ref"])
            c = r.get("content", {}).get("application/json")
            if c and "example" in c:
                s = dict(c["schema"], components=d["components"])
                jsonschema.validate(c["example"], s, cls=jsonschema.Draft202012Validator)
                n += 1
ex = d["paths"]["/api/v1/tasks"]["post"]["responses"]["201"]["content"]["application/json"]["example"]
extra = dict(ex, surprise=1)
missing = {k: v for k, v in ex.items() if k != "progress"}
oc.check("GET", "/api/v1/tasks/" + ex["id"], 200, ex)
assert not oc.problems, oc.problems
oc.check("GET", "/api/v1/tasks/" + ex["id"], 200, extra)
oc.check("GET", "/api/v1/tasks/" + ex["id"], 200, missing)
oc.check("GET", "/api/v1/nowhere", 200, {})
oc.check("GET", "/api/v1/tasks/" + ex["id"], 418, {})
assert len(oc.problems) == 4, oc.problems
print("%d examples valid; 4 drifts caught" % n)
PY
)
tap $? "examples match their schemas, and the response checker catches drift ($out)" "$out"

# 4-5. prewarmd serves exactly the file, as application/json.
"$BIN/kubesim" --nodes 3 --listen 127.0.0.1:0 --kubeconfig-out "$tmp/kc" >"$tmp/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 100); do [ -s "$tmp/kc" ] && break; sleep 0.1; done
"$BIN/prewarmd" --kubeconfig "$tmp/kc" --listen 127.0.0.1:0 --store memory: >"$tmp/pw.out" 2>"$tmp/pw.log" &
pw_pid=$!
port=""
for _ in $(seq 100); do
    port=$(grep -oE 'listening on [^ ]*:[0-9]+' "$tmp/pw.out" 2>/dev/null | grep -oE '[0-9]+$' | head -1)
    [ -n "$port" ] && break
    sleep 0.1
done
curl -s -D "$tmp/h" -o "$tmp/served.json" "http://127.0.0.1:$port/openapi.json"
cmp -s "$tmp/served.json" "$doc"
tap $? "GET /openapi.json serves src/api/openapi.json byte for byte" "$(head -c 200 "$tmp/served.json")"
grep -qi '^content-type: application/json' "$tmp/h"
tap $? "GET /openapi.json is application/json" "$(cat "$tmp/h")"
[ "$fails" -eq 0 ]
