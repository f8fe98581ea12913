/* store_bench.c: throughput of the store through its public interface (store.h): tasks created per
 * second (one pw_store_task_put each, as POST /api/v1/tasks does) and node results per second at
 * several batch sizes (one pw_store_nodes_put per batch, as the engine persists them), for the
 * memory:, sqlite: and redis:// back ends in one run. The sqlite file lives on this machine's disk
 * (--dir) with the back end's settings: WAL, synchronous=FULL, so each put is one fsync. Redis is a
 * redis-server this program starts on a free loopback port with its directory under --dir, twice:
 * appendfsync always (each write fsynced before the reply) and appendfsync everysec (the redis rows
 * are skipped, saying so, when redis-server is not installed).
 *
 *   build/release/bench/store_bench [--dir DIR] [--tasks N] [--nodes N] [--batches 1,50,500]
 *
 * Prints one line per measurement: back end, what, count, seconds, rate. Not a test: no asserts on
 * timing; a failed store call stops it with exit status 1. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "store/store.h"
#include "tests/unit/store/redis_server.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A task document shaped like the API's (about 700 bytes). */
static json_t *task_doc(const char *id)
{
    return json_pack("{s:s,s:s,s:[s,s],s:i,s:s,s:{s:s},s:b,s:s,s:i,s:i,s:f,s:i,"
                     "s:{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f},s:[],s:s,s:s,s:n,s:n}",
                     "id", id, "status", "pending", "images", "registry.example.com/ml/trainer:2026.11.27",
                     "docker.io/library/redis:7", "batchSize", 50, "strategy", "rolling", "nodeSelector", "pool", "gpu",
                     "includeNotReady", 0, "pullPolicy", "IfNotPresent", "timeoutSeconds", 600, "retries", 3,
                     "successThreshold", 0.9, "priority", 0, "progress", "totalNodes", 1000, "pendingNodes", 1000,
                     "runningNodes", 0, "succeededNodes", 0, "failedNodes", 0, "skippedNodes", 0, "cancelledNodes", 0,
                     "percentage", 0.0, "failedNodes", "message", "", "createdAt", "2026-11-27T10:00:00Z", "startedAt",
                     "finishedAt");
}

/* A node result shaped like the API's (about 400 bytes). */
static json_t *node_doc(const char *name)
{
    return json_pack("{s:s,s:s,s:[{s:s,s:s,s:s,s:s,s:i,s:f},{s:s,s:s,s:s,s:s,s:i,s:f}]}", "nodeName", name, "state",
                     "succeeded", "images", "image", "registry.example.com/ml/trainer:2026.11.27", "state", "succeeded",
                     "reason", "Pulled", "message", "pulled in 12.3s", "attempts", 1, "durationSeconds", 12.3, "image",
                     "docker.io/library/redis:7", "state", "skipped", "reason", "AlreadyPresent", "message", "",
                     "attempts", 0, "durationSeconds", 0.0);
}

/* Documents are built before the clock starts: the figures are the store's own cost (serialising,
 * SQL, fsync), not jansson building test data. */
static int bench_tasks(pw_store *s, const char *be, int n)
{
    struct pw_store_task *ts = calloc((size_t)n, sizeof *ts);
    char(*ids)[32] = calloc((size_t)n, sizeof *ids);
    for (int i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "t-bench-%08d", i);
        ts[i] = (struct pw_store_task){.id = ids[i], .status = "pending", .created_ms = i, .doc = task_doc(ids[i])};
    }
    int rc = 0;
    double t0 = now_s();
    for (int i = 0; i < n && rc == 0; i++)
        rc = pw_store_task_put(s, &ts[i]);
    double dt = now_s() - t0;
    for (int i = 0; i < n; i++)
        json_decref(ts[i].doc);
    free(ts);
    free(ids);
    if (rc != 0) {
        fprintf(stderr, "task put: %s\n", pw_strerror(rc));
        return 1;
    }
    printf("%-8s tasks created (1 put each)     %7d in %7.3f s  = %9.0f tasks/s  (%.3f ms each)\n", be, n, dt, n / dt,
           dt * 1000 / n);
    return 0;
}

/* The same from several threads at once (API threads creating tasks concurrently). */
struct par_arg {
    pw_store *s;
    struct pw_store_task *ts;
    int n, rc;
};

static void *par_worker(void *p)
{
    struct par_arg *a = p;
    for (int i = 0; i < a->n && a->rc == 0; i++)
        a->rc = pw_store_task_put(a->s, &a->ts[i]);
    return NULL;
}

static int bench_tasks_parallel(pw_store *s, const char *be, int n, int threads)
{
    int per = n / threads > 0 ? n / threads : 1;
    n = per * threads;
    struct pw_store_task *ts = calloc((size_t)n, sizeof *ts);
    char(*ids)[32] = calloc((size_t)n, sizeof *ids);
    for (int i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "t-par-%08d", i);
        ts[i] = (struct pw_store_task){.id = ids[i], .status = "pending", .created_ms = i, .doc = task_doc(ids[i])};
    }
    pthread_t th[16];
    struct par_arg args[16];
    double t0 = now_s();
    for (int k = 0; k < threads; k++) {
        args[k] = (struct par_arg){.s = s, .ts = ts + (size_t)k * per, .n = per};
        pthread_create(&th[k], NULL, par_worker, &args[k]);
    }
    int rc = 0;
    for (int k = 0; k < threads; k++) {
        pthread_join(th[k], NULL);
        if (args[k].rc != 0)
            rc = args[k].rc;
    }
    double dt = now_s() - t0;
    for (int i = 0; i < n; i++)
        json_decref(ts[i].doc);
    free(ts);
    free(ids);
    if (rc != 0) {
        fprintf(stderr, "task put: %s\n", pw_strerror(rc));
        return 1;
    }
    printf("%-8s tasks created by %d threads     %7d in %7.3f s  = %9.0f tasks/s\n", be, threads, n, dt, n / dt);
    return 0;
}

static int bench_nodes(pw_store *s, const char *be, int total, int batch)
{
    int batches = total / batch > 0 ? total / batch : 1;
    int n = batches * batch;
    struct pw_store_node *ns = calloc((size_t)n, sizeof *ns);
    char(*names)[32] = calloc((size_t)n, sizeof *names);
    for (int i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "node-%05d", i);
        ns[i] = (struct pw_store_node){
            .task_id = "t-bench-00000000", .node_name = names[i], .state = "succeeded", .doc = node_doc(names[i])};
    }
    int rc = 0;
    double t0 = now_s();
    for (int b = 0; b < batches && rc == 0; b++)
        rc = pw_store_nodes_put(s, ns + (size_t)b * batch, (size_t)batch);
    double dt = now_s() - t0;
    for (int i = 0; i < n; i++)
        json_decref(ns[i].doc);
    free(ns);
    free(names);
    if (rc != 0) {
        fprintf(stderr, "nodes put: %s\n", pw_strerror(rc));
        return 1;
    }
    printf("%-8s node results, batch of %-4d    %7d in %7.3f s  = %9.0f nodes/s  (%.3f ms per batch)\n", be, batch, n,
           dt, n / dt, dt * 1000 / batches);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = "build/bench-store";
    int n_tasks = 300, n_nodes = 5000;
    char batches[128] = "1,50,500";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--dir") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--tasks") == 0)
            n_tasks = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--nodes") == 0)
            n_nodes = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--batches") == 0)
            snprintf(batches, sizeof batches, "%s", argv[i + 1]);
        else {
            fprintf(stderr, "usage: %s [--dir DIR] [--tasks N] [--nodes N] [--batches 1,50,500]\n", argv[0]);
            return 2;
        }
    }
    if (n_tasks < 1 || n_nodes < 1) {
        fprintf(stderr, "--tasks and --nodes must be positive\n");
        return 2;
    }
    pw_log_set_level(PW_LOG_WARN);
    mkdir(dir, 0755);
    char path[512], url[600], rurl[2][128];
    snprintf(path, sizeof path, "%s/store_bench.db", dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    /* redis-servers: fsync per write, and once a second */
    static const char *const everysec[] = {"--appendfsync", "everysec", NULL};
    struct rtest_server rs[2] = {{0}, {.extra = everysec}};
    bool have_redis = rtest_find(rs[0].bin, sizeof rs[0].bin);
    for (int k = 0; k < 2 && have_redis; k++) {
        snprintf(rs[k].dir, sizeof rs[k].dir, "%s/redis-%d", dir, k);
        mkdir(rs[k].dir, 0755);
        if (rtest_start(&rs[k]) != 0) {
            fprintf(stderr, "redis-server did not start\n");
            return 1;
        }
        snprintf(rurl[k], sizeof rurl[k], "redis://127.0.0.1:%d/0?prefix=bench:", rs[k].port);
    }
    const char *urls[4] = {"memory:", url, rurl[0], rurl[1]};
    const char *names[4] = {"memory", "sqlite", "redis", "redis-1s"};
    int n_be = have_redis ? 4 : 2;
    printf("store_bench: %d tasks, %d node results per batch size; sqlite file %s (WAL, synchronous=FULL); "
           "redis: redis-server appendonly yes, appendfsync always; redis-1s: appendfsync everysec\n",
           n_tasks, n_nodes, path);
    if (!have_redis)
        printf("store_bench: SKIP redis rows: redis-server is not installed\n");
    int rc = 0;
    for (int b = 0; b < n_be && rc == 0; b++) {
        char sidecar[640];
        unlink(path);
        snprintf(sidecar, sizeof sidecar, "%s-wal", path);
        unlink(sidecar);
        snprintf(sidecar, sizeof sidecar, "%s-shm", path);
        unlink(sidecar);
        pw_store *s;
        char *err = NULL;
        if (pw_store_open(urls[b], &s, &err) != 0) {
            fprintf(stderr, "open %s: %s\n", urls[b], err ? err : "?");
            free(err);
            rc = 1;
            break;
        }
        rc = bench_tasks(s, names[b], n_tasks);
        if (rc == 0)
            rc = bench_tasks_parallel(s, names[b], n_tasks, 4);
        char list[128];
        snprintf(list, sizeof list, "%s", batches);
        for (char *save = NULL, *tok = strtok_r(list, ",", &save); rc == 0 && tok; tok = strtok_r(NULL, ",", &save)) {
            int batch = atoi(tok);
            if (batch > 0)
                rc = bench_nodes(s, names[b], batch == 1 && n_nodes > 1000 ? 1000 : n_nodes, batch);
        }
        pw_store_close(s);
    }
    for (int k = 0; k < 2; k++)
        rtest_cleanup(&rs[k]);
    unlink(path);
    return rc;
}
