#!/usr/bin/python3
"""profile_prewarmd.py: where prewarmd's CPU and memory go (the analysis behind docs/performance.md).
Starts kubesim (N nodes) and prewarmd, then either
  --what cpu   : runs one task on every node (busybox) under `perf record -g` and prints `perf report`;
  --what mem   : prints prewarmd's VmRSS/VmHWM after the node informer sync, after creating T tasks of
                 100 nodes each, and at the end (and smaps_rollup: anonymous vs file-backed); with
                 --trim also glibc's live heap (malloc_stats) and the RSS after malloc_trim(0), via gdb;
  --what rest  : `perf record` while wrk GETs one task (64 connections).
Usage: bench/lib/profile_prewarmd.py --what cpu|mem|rest [--nodes 2000] [--tasks 20] [--trim] [--out DIR]"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN = os.path.join(ROOT, "build", "release", "bin")
CATALOG = os.path.join(ROOT, "bench", "catalog.json")


def wait_all(pd, ids, limit=600):
    t0 = time.monotonic()
    pending = set(ids)
    while pending and time.monotonic() - t0 < limit:
        for tid in list(pending):
            if pd.task(tid)["status"] in bl.FINISHED:
                pending.discard(tid)
        time.sleep(0.25)


def rollup(pid):
    out = {}
    for line in open("/proc/%d/smaps_rollup" % pid):
        k = line.split(":")[0]
        if k in ("Rss", "Anonymous", "Pss_File", "Private_Dirty"):
            out[k] = line.split(":")[1].strip()
    return out


def heap_report(pd, when):
    """Live heap vs RSS: glibc's malloc_stats() (written to prewarmd's stderr: per arena 'system bytes'
    and 'in use bytes'), then malloc_trim(0) (returns free pages inside the arenas to the kernel), both
    called in the live process with gdb; prints VmRSS before and after the trim."""
    before = pd.proc()["rss_kb"]
    pd.log.flush()
    start = os.path.getsize(pd.log.name)
    subprocess.run(["gdb", "-p", str(pd.p.pid), "-batch", "-ex", "call (void)malloc_stats()", "-ex",
                    "call (int)malloc_trim(0)"], capture_output=True, text=True, timeout=120)
    time.sleep(0.3)
    after = pd.proc()["rss_kb"]
    with open(pd.log.name) as f:
        f.seek(start)
        stats = [l.strip() for l in f if "bytes" in l]
    total = [l for l in stats]
    print("%s: VmRSS %.1f MB before malloc_trim(0), %.1f MB after; malloc_stats: %s" % (
        when, before / 1024.0, after / 1024.0, " | ".join(total[-3:])))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--what", choices=("cpu", "mem", "rest"), required=True)
    ap.add_argument("--nodes", type=int, default=2000)
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--out", default=tempfile.gettempdir())
    ap.add_argument("--trim", action="store_true",
                    help="mem: live heap (malloc_stats) and RSS after malloc_trim(0), via gdb")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="pw-prof-")
    flags = ["--kube-qps", "5000", "--kube-burst", "10000", "--max-nodes-in-flight", "1000", "--max-running-tasks",
             "100"]
    ks = bl.Kubesim(BIN, work, a.nodes if a.what != "rest" else 3, catalog=CATALOG, scale=100)
    pd = bl.Prewarmd(BIN, work, ks.kubeconfig, flags)
    try:
        names = ks.ready_nodes()
        if a.what == "cpu":
            data = os.path.join(a.out, "perf-cpu.data")
            perf = bl.spawn(["perf", "record", "--call-graph", "dwarf,16384", "-F", "199", "-o", data, "-p", str(pd.p.pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            c0 = pd.proc()["cpu_s"]
            wait_all(pd, [pd.create({"images": ["busybox:1.36"], "batchSize": 1000})["id"]])
            print("cpu during the task: %.2f s for %d nodes" % (pd.proc()["cpu_s"] - c0, len(names)))
            bl.stop(perf, grace=10)
            rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "--sort", "dso,sym",
                                  "--percent-limit", "1.5", "-g", "none"], capture_output=True, text=True)
            print(rep.stdout[:6000])
        elif a.what == "mem":
            print("after sync (%d nodes): %s %s" % (len(names), pd.proc(), rollup(pd.p.pid)))
            if a.trim:
                heap_report(pd, "after sync")
            ids = []
            for i in range(a.tasks):
                sel = names[i * 100:(i + 1) * 100]
                ids.append(pd.create({"images": ["busybox:1.36"], "batchSize": 100, "nodeNames": sel})["id"])
            print("after %d creates: %s" % (a.tasks, pd.proc()))
            wait_all(pd, ids)
            print("at the end: %s %s" % (pd.proc(), rollup(pd.p.pid)))
            if a.trim and ids:
                heap_report(pd, "at the end")
        else:
            tid = pd.create({"images": ["busybox:1.36"], "nodeNames": ["no-such-node"]})["id"]
            data = os.path.join(a.out, "perf-rest.data")
            perf = bl.spawn(["perf", "record", "--call-graph", "dwarf,16384", "-F", "199", "-o", data, "-p", str(pd.p.pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            w = subprocess.run(["wrk", "-t2", "-c64", "-d5s", "--latency", pd.base + "/api/v1/tasks/" + tid],
                               capture_output=True, text=True)
            print(w.stdout)
            bl.stop(perf, grace=10)
            rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "--sort", "dso,sym",
                                  "--percent-limit", "1.5", "-g", "none"], capture_output=True, text=True)
            print(rep.stdout[:6000])
    finally:
        pd.close()
        ks.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
