#!/usr/bin/python3
"""make_catalog.py: writes bench/catalog.json, the image catalogue of the benchmarks: prewarm's helper
image (copied from kubesim's built-in catalogue, so the init-container trick works), busybox, and three
"ML" images of 1.3, 2.2 and 4.6 GB (amd64; arm64 slightly smaller) sharing one 0.8 GB base layer.
Digests are sha256 of descriptive strings, so the file is reproducible. Run from the repository root."""
import ast
import hashlib
import json
import re


def dg(s):
    return "sha256:" + hashlib.sha256(s.encode()).hexdigest()


def default_catalog():
    src = open("sim/catalog_default.c").read()
    body = src[src.index("sim_catalog_default_json[] ="):].split(";")[0]
    lits = re.findall(r'"((?:[^"\\]|\\.)*)"', body)
    return json.loads("".join(ast.literal_eval('"' + l + '"') for l in lits))


MB = 1000 * 1000
# (name, own layers in MB) on top of the shared base (800 MB)
BENCH = [
    ("bench.example.com/ml/serve:1.0", [350, 150]),
    ("bench.example.com/ml/train:1.0", [900, 500]),
    ("bench.example.com/ml/notebook:1.0", [2400, 1000, 400]),
]
BASE_MB = 800
EXES = ["/bin/sh", "/bin/true"]


def image(name, own):
    plats = []
    for arch, factor in (("amd64", 1.0), ("arm64", 0.97)):
        layers = [{"digest": dg("layer/bench-base/" + arch), "size": int(BASE_MB * MB * factor)}]
        for i, mb in enumerate(own):
            layers.append({"digest": dg("layer/%s/%d/%s" % (name, i, arch)), "size": int(mb * MB * factor)})
        plats.append({"os": "linux", "arch": arch, "digest": dg("manifest/%s/%s" % (name, arch)), "layers": layers})
    return {"names": [name], "digest": dg("index/" + name), "platforms": plats, "executables": EXES}


def main():
    d = default_catalog()
    keep = [im for im in d["images"] if im["names"][0] in ("ghcr.io/prewarm/prewarm:0.1.0", "busybox:1.36")]
    cat = {"images": keep + [image(n, own) for n, own in BENCH]}
    with open("bench/catalog.json", "w") as f:
        json.dump(cat, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
