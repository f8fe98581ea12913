#!/usr/bin/python3
"""prewarmd_predict: images predicted from history (issue 14, point 2) against kubesim, SQLite store.

Two pools (karpenter.sh/nodepool alpha and beta, 3 nodes each), 10 images each of 0.1-2 GB with a
Zipf(1.1) popularity; 300 workload pods per pool created with spec.nodeName. Checks: the pools'
rankings (GET /api/v1/predictions) follow the workload (top-5 by probability overlaps the generator's
top-5, each probability is the pods' observed frequency, the pods per node is learnt and each node
probability follows from it); prewarm's own Job pods never count; a
predict policy warms new nodes of each pool with that pool's selected images (and none of the other
pool's); the model (with its nodes and image sets) survives a prewarmd restart and is not counted twice; bad parameters get 400/404
naming the field."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prewarmd_lib as pl  # noqa: E402
import predict_lib as wl  # noqa: E402
from prewarmd_lib import tap  # noqa: E402

KEY = "karpenter.sh/nodepool"
POOLS = ("alpha", "beta")
N_IMAGES = 10
PODS = 300
GB = 1000 ** 3


def images_of(pool):
    return ["registry.example.com/%s/app-%02d:1.0" % (pool, i) for i in range(N_IMAGES)]


def sizes():
    out = {}
    for p in POOLS:
        for i, img in enumerate(images_of(p)):
            out[img] = int((0.1 + 1.9 * ((i * 7) % N_IMAGES) / (N_IMAGES - 1)) * GB)
    return out


def norm(ref):
    return "docker.io/library/" + ref if "/" not in ref else ref


def predictions(env, pool, q=""):
    return env.api("GET", "/api/v1/predictions?pool=%s=%s%s" % (KEY, pool, q))


def wait_observations(env, pool, n, timeout=120):
    deadline = time.time() + timeout
    while True:
        code, r = predictions(env, pool)
        if code == 200 and r["observations"] >= n:
            return r
        if time.time() > deadline:
            raise RuntimeError("pool %s: %s" % (pool, (code, r.get("observations") if isinstance(r, dict) else r)))
        time.sleep(0.5)


def add_nodes(env, pool, count):
    code, out = env.kube("POST", "/sim/v1/nodes", {"count": count, "labels": {KEY: pool}})
    if code != 201:
        raise RuntimeError("add nodes: %s %s" % (code, out))
    return out["nodes"]


def check_ranking(env, used):
    for p in POOLS:
        r = wait_observations(env, p, PODS)
        probs = {im["image"]: im["probability"] for im in r["images"]}
        true_top = [norm(x) for x in images_of(p)[:5]]  # the generator's popularity order
        seen_top = sorted(probs, key=lambda i: -probs[i])[:5]
        overlap = len(set(true_top) & set(seen_top))
        tap(overlap >= 4 and seen_top[0] == true_top[0], "pool %s: top-5 by probability overlaps the generator's top-5" % p,
            "overlap %d: %s vs %s" % (overlap, seen_top, true_top))
        freq_ok = all(abs(probs.get(norm(img), 0) - n / PODS) < 0.01 for img, n in used[p].items())
        tap(freq_ok and r["observations"] == PODS, "pool %s: each probability is the pods' frequency (%d pods)" % (p, PODS),
            str([(img, n / PODS, probs.get(norm(img))) for img, n in used[p].items()]))
        k = r["podsPerNode"]
        node_ok = r["nodes"] == 3 and abs(k - PODS / 3) < 0.05 and all(
            abs(im["nodeProbability"] - k * im["probability"] / (1 + (k - 1) * im["probability"])) < 2e-3
            for im in r["images"])
        tap(node_ok, "pool %s: pods per node learnt (%d pods on 3 nodes) and nodeProbability = kp/(1+(k-1)p)" % (p, PODS),
            str((r["nodes"], k, [(im["probability"], im["nodeProbability"]) for im in r["images"]])))
        other = set(norm(x) for x in images_of("beta" if p == "alpha" else "alpha"))
        tap(not other & set(probs), "pool %s: no image of the other pool in its ranking" % p)
        deadline = time.time() + 30  # sizes come from status.images, which the kubelet reports after the pulls
        while not all(im["sizeKnown"] for im in r["images"]) and time.time() < deadline:
            time.sleep(0.5)
            r = wait_observations(env, p, PODS)
        ben = [im["benefitSeconds"] for im in r["images"]]
        tap(ben == sorted(ben, reverse=True) and all(im["sizeKnown"] for im in r["images"]),
            "pool %s: ranked by expected benefit, sizes from the nodes' status.images" % p)
        tap(not any("prewarm" in im["image"] or "busybox" in im["image"] for im in r["images"]),
            "pool %s: prewarm's own Job pods never count" % p)


def check_new_nodes(env):
    code, pol = env.api("POST", "/api/v1/policies", {"name": "predicted", "labelSelector": KEY,
                                                       "predict": {"maxImages": 3, "minProbability": 0.02}})
    tap(code == 201, "a predict-only policy is created", "%s %s" % (code, pol))
    expected = {}
    for p in POOLS:
        code, r = predictions(env, p, "&maxImages=3&minProbability=0.02")
        expected[p] = r["selected"]
    new = {p: add_nodes(env, p, 2) for p in POOLS}
    deadline = time.time() + 120
    while True:
        truth = env.truth()
        done = all(all(pl.holds(truth.get(n, {}), img) for img in expected[p]) for p in POOLS for n in new[p])
        if done or time.time() > deadline:
            break
        time.sleep(0.5)
    tap(done, "new nodes of each pool get their pool's selected images (%s)" % expected,
        str({n: truth.get(n, {}).get("images") for p in POOLS for n in new[p]}))
    foreign = [(n, img) for p in POOLS for n in new[p] for img in truth.get(n, {}).get("images", [])
               if "/" + ("beta" if p == "alpha" else "alpha") + "/" in img]
    tap(not foreign, "new nodes get none of the other pool's images", str(foreign))


def check_restart(env):
    before = {p: predictions(env, p)[1] for p in POOLS}
    time.sleep(1.5)  # one save interval
    rc = env.stop_prewarmd()
    tap(rc == 0, "prewarmd exits 0 on SIGTERM", str(rc))
    env.start_prewarmd()
    time.sleep(3)  # the informers list every pod again
    ok, why = True, []
    for p in POOLS:
        code, after = predictions(env, p)
        if code != 200 or after["observations"] != before[p]["observations"]:
            ok = False
            why.append((p, code, before[p]["observations"], after.get("observations") if isinstance(after, dict) else after))
            continue
        pb = {i["image"]: i["probability"] for i in before[p]["images"]}
        pa = {i["image"]: i["probability"] for i in after["images"]}
        if pb.keys() != pa.keys() or any(abs(pb[k] - pa[k]) > 1e-3 for k in pb):
            ok = False
            why.append((p, pb, pa))
        # the nodes and the image sets are kept too: the same pods per node, the same selection
        same = [k for k in ("nodes", "podsPerNode", "selected", "predictedHitRate") if before[p][k] != after[k]]
        if same:
            ok = False
            why.append((p, {k: (before[p][k], after[k]) for k in same}))
    tap(ok, "the model survives a restart (SQLite) with its nodes and image sets, and its pods are not counted twice",
        str(why)[:1500])
    code, r = env.api("GET", "/api/v1/predictions")
    pools = {x["pool"] for x in r.get("pools", [])} if code == 200 else set()
    tap({KEY + "=alpha", KEY + "=beta"} <= pools, "GET /api/v1/predictions lists the pools", str(r)[:500])


def field_of(r):
    d = r.get("details") if isinstance(r, dict) else None
    return d[0].get("field") if d else None


def check_errors(env):
    code, r = env.api("GET", "/api/v1/predictions?pool=nope")
    tap(code == 404 and field_of(r) == "pool", "an unknown pool: 404 naming pool", str((code, r)))
    code, r = predictions(env, "alpha", "&maxImages=0")
    tap(code == 400 and field_of(r) == "maxImages", "maxImages=0: 400 naming maxImages", str((code, r)))
    code, r = predictions(env, "alpha", "&minProbability=abc")
    tap(code == 400 and field_of(r) == "minProbability", "minProbability=abc: 400 naming it", str((code, r)))
    code, r = predictions(env, "alpha", "&targetHitRate=1.5")
    tap(code == 400 and field_of(r) == "targetHitRate", "targetHitRate=1.5: 400 naming it", str((code, r)))
    code, r = env.api("POST", "/api/v1/policies", {"name": "bad", "predict": {"maxImages": 500}})
    tap(code == 400 and "predict.maxImages" in str(r), "a policy with predict.maxImages 500: 400 naming it", str((code, r)))
    code, r = env.api("POST", "/api/v1/policies", {"name": "bad", "predict": {"halfLife": "1h"}})
    tap(code == 400 and "predict.halfLife" in str(r), "an unknown predict field: 400 naming it", str((code, r)))


def main():
    print("1..26", flush=True)
    tmp_catalog = os.path.join(os.environ.get("TMPDIR", "/tmp"), "pw-predict-catalog-%d.json" % os.getpid())
    wl.catalog(tmp_catalog, sizes())
    env = pl.Env(1, sim_args=["--catalog", tmp_catalog],
                 pw_args=["--store", "sqlite:{dir}/pw.db", "--predict-save-interval", "1s"])
    try:
        nodes = {p: add_nodes(env, p, 3) for p in POOLS}
        rng = wl.seeded(14)
        weights = wl.zipf_weights(N_IMAGES, 1.1)
        # a task whose Job pods run on the pools' nodes: they must not count
        tid = env.create_task({"images": ["busybox:1.36"], "labelSelector": KEY})
        env.wait_task(tid, timeout=120)
        used = {p: wl.start_pods(env, "wl-" + p, nodes[p], images_of(p), weights, PODS, rng) for p in POOLS}
        pl.scenario("ranking", check_ranking, env, used)
        pl.scenario("new nodes", check_new_nodes, env)
        pl.scenario("restart", check_restart, env)
        pl.scenario("errors", check_errors, env)
    finally:
        env.close()
        os.unlink(tmp_catalog)
    pl.finish()
    return 1 if pl.failures else 0


if __name__ == "__main__":
    sys.exit(main())
