"""predict_lib: the synthetic workloads of the prediction suite and bench (not a suite itself).

catalog(): a kubesim image catalogue of prewarm's helper image, busybox, and per-pool images of chosen
sizes (one layer each, amd64 and arm64). zipf_weights(): Zipf popularity. start_pods(): pods created
directly with spec.nodeName (so they need no scheduler), each using one image drawn from its pool's
popularity, restartPolicy Never (they run the image's entrypoint and complete)."""
import hashlib
import json
import os
import random

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EXES = ["/bin/sh", "/bin/true"]


def _dg(s):
    return "sha256:" + hashlib.sha256(s.encode()).hexdigest()


def _image(name, size):
    plats = [{"os": "linux", "arch": arch, "digest": _dg("manifest/%s/%s" % (name, arch)),
              "layers": [{"digest": _dg("layer/%s/%s" % (name, arch)), "size": int(size)}]}
             for arch in ("amd64", "arm64")]
    return {"names": [name], "digest": _dg("index/" + name), "platforms": plats, "executables": EXES}


def catalog(path, sizes):
    """Writes a catalogue with the images of sizes ({name: bytes}) plus prewarm's helper and busybox
    (taken from bench/catalog.json)."""
    with open(os.path.join(ROOT, "bench", "catalog.json")) as f:
        base = [im for im in json.load(f)["images"] if im["names"][0] in ("ghcr.io/prewarm/prewarm:0.1.0", "busybox:1.36")]
    with open(path, "w") as f:
        json.dump({"images": base + [_image(n, s) for n, s in sizes.items()]}, f)


def zipf_weights(n, s):
    w = [1.0 / (k ** s) for k in range(1, n + 1)]
    t = sum(w)
    return [x / t for x in w]


def pod(name, node, image, ns="default"):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": "wl"}},
            "spec": {"nodeName": node, "restartPolicy": "Never",
                     "containers": [{"name": "main", "image": image, "imagePullPolicy": "IfNotPresent"}]}}


def start_pods(env, prefix, nodes, images, weights, count, rng):
    """Creates count pods on random nodes of the list, images drawn by weights; returns {image: n}."""
    used = {}
    for i in range(count):
        img = rng.choices(images, weights)[0]
        used[img] = used.get(img, 0) + 1
        code, body = env.kube("POST", "/api/v1/namespaces/default/pods", pod("%s-%04d" % (prefix, i), rng.choice(nodes), img))
        if code != 201:
            raise RuntimeError("pod create: %s %s" % (code, body))
    return used


def seeded(seed):
    return random.Random(seed)
