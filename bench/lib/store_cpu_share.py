#!/usr/bin/env python3
"""store_cpu_share.py: the store's share of prewarmd's CPU in a 1,000-node task (issue 4 point 8):
kubesim with 1,000 nodes, prewarmd (release build) on the sqlite store (WAL, synchronous=FULL) under
`perf record --call-graph dwarf`, one task (busybox:1.36, batchSize 50); prints the inclusive share of
the store's functions (sql_nodes_put, sql_task_put, sqlite3_*) and the share by library.
Usage: nice bench/lib/store_cpu_share.py"""
import os, subprocess, sys, tempfile, time, shutil
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench", "lib"))
import benchlib as bl
from profile_prewarmd import wait_all, BIN, CATALOG
work = tempfile.mkdtemp(prefix="pw-store-prof-")
flags = ["--store", "sqlite:%s/prewarm.db" % work, "--kube-qps", "5000", "--kube-burst", "10000",
         "--max-nodes-in-flight", "1000"]
ks = bl.Kubesim(BIN, work, 1000, catalog=CATALOG, scale=100)
pd = bl.Prewarmd(BIN, work, ks.kubeconfig, flags)
try:
    names = ks.ready_nodes()
    data = os.path.join(work, "perf.data")
    perf = bl.spawn(["perf", "record", "--call-graph", "dwarf,16384", "-F", "499", "-o", data, "-p", str(pd.p.pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    c0 = pd.proc()["cpu_s"]
    tid = pd.create({"images": ["busybox:1.36"], "batchSize": 50})["id"]
    wait_all(pd, [tid])
    print("task:", pd.task(tid)["status"], pd.task(tid)["progress"])
    print("prewarmd cpu during the task: %.2f s for %d nodes" % (pd.proc()["cpu_s"] - c0, len(names)))
    bl.stop(perf, grace=10)
    rep = subprocess.run(["perf", "report", "-i", data, "--children", "--stdio", "--sort", "sym",
                          "-g", "none", "--percent-limit", "0.2"], capture_output=True, text=True)
    print("\n".join(l for l in rep.stdout.splitlines() if "store" in l or "_put" in l or "nodes_put" in l or "sqlite" in l.lower() or "Samples" in l or "task_flush" in l or "loop_round" in l or "json_dumps" in l)[:5000])
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "--sort", "dso",
                          "-g", "none"], capture_output=True, text=True)
    print(rep.stdout[:2000])
finally:
    pd.close(); ks.close()
    shutil.rmtree(work, ignore_errors=True)
