/* The executor contract (executor.h) run against every executor: one table of executors, every case
 * runs once per row, through a real engine (memory store) on kubesim's API server in this process
 * (sim_api_start on 127.0.0.1:0, three Ready nodes, no world: no kubelet, no Job controller). Each
 * row has a driver that plays what lies beyond its executor:
 *   fake  (fakeexec.h): the test sends the reports itself;
 *   job   (jobexec.h):  the test writes Job conditions and pod statuses into the simulator's store,
 *                       as the Job controller and the kubelet would;
 *   agent (agentexec.h): the test syncs as the node's prewarm-agent would (pw_agentexec_sync, the
 *                       entry point src/api/agents.c calls for POST /agent/v1/sync).
 * Cases: dispatch -> report -> the node's final state; a repeated dispatch is one work; cancel of a
 * task with a running and a pending node; a failure's reason and message carried to the node's
 * result; healthy(); the node's deadline; start after records exist (a restarted engine resumes the
 * running node with its executor, and its result still counts). And, through the fake only, the
 * task state machine: retries, the outcome at the threshold, images found present, selection with an
 * agent's inventory, mode auto, a node deleted before its turn, a start that fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/agentexec.h"
#include "engine/engine.h"
#include "engine/jobexec.h"
#include "engine/jobspec.h"
#include "fakeexec.h"
#include "k8s/k8s.h"
#include "sim/sim.h"
#include "store/store.h"

enum kind { FAKE, JOB, AGENT };

struct row {
    enum kind kind;
    const char *name;
    const char *fail_reason; /* the reason the driver's failure carries, as the node's result shows it */
};

static const struct row rows[] = {
    {FAKE, "fake", "ErrImagePull"},
    {JOB, "job", "InvalidImageName"},
    {AGENT, "agent", "ErrImagePull"},
};

struct fx {
    const struct row *row;
    struct sim sim;
    pw_http_server *srv;
    char kubeconfig[64];
    pw_k8s_config *kcfg;
    pw_k8s_client *client;
    pw_store *store;
    pw_engine *engine;
    pw_executor *fakes[2]; /* FAKE: the engine's executors */
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static json_t *node_obj(const char *name)
{
    return json_pack("{s:s,s:s,s:{s:s,s:{s:s}},s:{},s:{s:[{s:s,s:s}],s:[]}}", "apiVersion", "v1", "kind", "Node",
                     "metadata", "name", name, "labels", "pool", "p", "spec", "status", "conditions", "type",
                     "Ready", "status", "True", "images");
}

static void engine_up(struct fx *f)
{
    struct pw_engine_config cfg = {.client = f->client, .store = f->store, .namespace_ = "prewarm"};
    if (f->row->kind == FAKE) {
        cfg.executor_new = pw_fakeexec_factory;
        cfg.executor_arg = f->fakes;
        cfg.agent.enabled = true; /* the fake stands in for both modes */
    } else if (f->row->kind == AGENT) {
        cfg.agent = (struct pw_agentexec_settings){.enabled = true, .agent_timeout_s = 60, .poll_ms = 2000};
    }
    assert_int_equal(pw_engine_new(&cfg, &f->engine), 0);
    assert_int_equal(pw_engine_start(f->engine), 0);
    for (int i = 0; i < 400; i++) {
        const char *why;
        if (pw_engine_ready(f->engine, &why))
            return;
        sleep_ms(25);
    }
    fail_msg("the node informer did not sync");
}

static int fx_setup(void **state)
{
    pw_log_set_level(PW_LOG_ERROR);
    struct fx *f = pw_xcalloc(1, sizeof *f);
    f->row = *state;
    f->sim.opt.token = "tok";
    f->sim.opt.threads = 4;
    f->sim.opt.listen = "127.0.0.1:0";
    f->sim.opt.namespaces = "prewarm";
    f->sim.store = sim_store_new(10000);
    for (int i = 1; i <= 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "node-%d", i);
        if (sim_store_create(f->sim.store, "nodes", "", node_obj(name), NULL) != 0)
            return -1;
    }
    if (sim_api_start(&f->sim, NULL, &f->srv) != 0)
        return -1;
    snprintf(f->kubeconfig, sizeof f->kubeconfig, "/tmp/pw-test-xc-%d.yaml", (int)getpid());
    FILE *k = fopen(f->kubeconfig, "w");
    if (!k)
        return -1;
    fprintf(k,
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster: {server: "
            "\"http://127.0.0.1:%d\"}\nusers:\n- name: u\n  user: {token: tok}\ncontexts:\n- name: c\n  context: "
            "{cluster: c, user: u}\n",
            pw_http_server_port(f->srv));
    fclose(k);
    char *msg = NULL;
    if (pw_k8s_config_load(f->kubeconfig, NULL, &f->kcfg, &msg) != 0)
        return -1;
    struct pw_k8s_client_opts o = {.qps = 500, .burst = 500};
    if (pw_k8s_client_new(f->kcfg, &o, &f->client) != 0 || pw_store_open("memory:", &f->store, NULL) != 0)
        return -1;
    engine_up(f);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    pw_engine_free(f->engine);
    pw_store_close(f->store);
    pw_k8s_client_free(f->client);
    pw_k8s_config_free(f->kcfg);
    pw_http_server_free(f->srv);
    sim_api_stop(&f->sim);
    sim_store_free(f->sim.store);
    unlink(f->kubeconfig);
    free(f);
    return 0;
}

/* ---- the engine side ---- */

/* Submits the task of body with mode (NULL: as body says); its id (caller frees). */
static char *submit_mode(struct fx *f, const char *body, const char *mode)
{
    json_error_t jerr;
    json_t *req = json_loads(body, 0, &jerr);
    assert_non_null(req);
    if (mode)
        json_object_set_new(req, "mode", json_string(mode));
    struct pw_taskspec spec;
    struct pw_field_errors errs;
    assert_int_equal(pw_taskspec_parse(req, &spec, &errs), 0);
    json_decref(req);
    json_t *task = NULL;
    assert_int_equal(pw_engine_submit(f->engine, &spec, &task), 0);
    char *id = pw_xstrdup(json_string_value(json_object_get(task, "id")));
    json_decref(task);
    return id;
}

/* Every row's executor serves the task: the fake and agent rows ask for agent mode. */
static char *submit(struct fx *f, const char *body)
{
    return submit_mode(f, body, f->row->kind == JOB ? NULL : "agent");
}

static json_t *task_get(struct fx *f, const char *id)
{
    json_t *t = NULL;
    assert_int_equal(pw_engine_get_task(f->engine, id, &t), 0);
    return t;
}

static const char *str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static json_int_t prog(const json_t *t, const char *k)
{
    return json_integer_value(json_object_get(json_object_get(t, "progress"), k));
}

static json_t *wait_status(struct fx *f, const char *id, const char *status)
{
    for (int i = 0; i < 400; i++) {
        json_t *t = task_get(f, id);
        if (strcmp(str(t, "status"), status) == 0)
            return t;
        json_decref(t);
        sleep_ms(25);
    }
    json_t *t = task_get(f, id);
    fail_msg("task %s is %s, not %s: %s", id, str(t, "status"), status, str(t, "message"));
    return NULL;
}

static json_t *node_result(struct fx *f, const char *task, const char *node)
{
    json_t *list = NULL;
    assert_int_equal(pw_engine_list_nodes(f->engine, task, NULL, 0, NULL, &list), 0);
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(list, "items"), i, n) {
        if (strcmp(str(n, "nodeName"), node) == 0) {
            json_incref(n);
            json_decref(list);
            return n;
        }
    }
    json_decref(list);
    return NULL;
}

/* Waits for the node's result to reach state; returns it (caller decrefs). */
static json_t *wait_node(struct fx *f, const char *task, const char *node, const char *state)
{
    for (int i = 0; i < 400; i++) {
        json_t *n = node_result(f, task, node);
        if (n && strcmp(str(n, "state"), state) == 0)
            return n;
        json_decref(n);
        sleep_ms(25);
    }
    json_t *n = node_result(f, task, node);
    fail_msg("node %s of task %s is %s, not %s", node, task, n ? str(n, "state") : "(none)", state);
    return NULL;
}

/* ---- the drivers: what lies beyond each executor ---- */

static pw_executor *fake(struct fx *f)
{
    return f->fakes[1]; /* tasks ask for agent mode */
}

static char *job_name(const char *task, const char *node)
{
    return pw_jobspec_name(task, node);
}

static bool job_exists(struct fx *f, const char *task, const char *node, json_t **out)
{
    char *name = job_name(task, node);
    json_t *job = NULL;
    bool ok = sim_store_get(f->sim.store, "jobs.batch", "prewarm", name, &job) == 0;
    free(name);
    if (out)
        *out = job;
    else
        json_decref(job);
    return ok;
}

/* The agent's side of one sync: the answer (caller decrefs). results: the "assignments" array's
 * JSON text ("" for none). */
struct answer {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    json_t *resp;
};

static void on_answer(void *arg, json_t *resp)
{
    struct answer *a = arg;
    pthread_mutex_lock(&a->mu);
    a->resp = resp;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->mu);
}

static json_t *agent_sync(struct fx *f, const char *node, const char *results)
{
    char body[2048];
    snprintf(body, sizeof body,
             "{\"agentVersion\":\"test\",\"runtime\":{\"name\":\"containerd\",\"version\":\"1.7\"},"
             "\"inventory\":{\"full\":true,\"images\":[]},\"assignments\":[%s],\"wait\":false}",
             results);
    json_error_t jerr;
    json_t *b = json_loads(body, 0, &jerr);
    assert_non_null(b);
    struct answer a = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    struct pw_field_errors errs;
    assert_int_equal(pw_agentexec_sync(pw_engine_agents(f->engine), node, b, on_answer, &a, &errs), 0);
    json_decref(b);
    pthread_mutex_lock(&a.mu);
    while (!a.resp)
        pthread_cond_wait(&a.cond, &a.mu);
    pthread_mutex_unlock(&a.mu);
    return a.resp;
}

/* Whether the agent's answer assigns image of task. */
static bool assigned(const json_t *resp, const char *task)
{
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(resp, "assignments"), i, a) {
        if (strcmp(str(a, "task"), task) == 0)
            return true;
    }
    return false;
}

/* An agent's node must be healthy (it synced) before a task in mode agent reaches it. */
static void agents_connect(struct fx *f)
{
    if (f->row->kind != AGENT)
        return;
    for (int i = 1; i <= 3; i++) {
        char node[16];
        snprintf(node, sizeof node, "node-%d", i);
        json_decref(agent_sync(f, node, ""));
    }
}

/* Waits until the executor holds (task, node)'s work. */
static void await_work(struct fx *f, const char *task, const char *node)
{
    for (int i = 0; i < 400; i++) {
        bool has = false;
        if (f->row->kind == FAKE) {
            has = pw_fakeexec_live(fake(f), task, node, NULL);
        } else if (f->row->kind == JOB) {
            has = job_exists(f, task, node, NULL);
        } else {
            json_t *r = agent_sync(f, node, "");
            has = assigned(r, task);
            json_decref(r);
        }
        if (has)
            return;
        sleep_ms(25);
    }
    fail_msg("the %s executor never got the work of node %s", f->row->name, node);
}

/* Waits until the executor holds no work of (task, node) any more. */
static void await_no_work(struct fx *f, const char *task, const char *node)
{
    for (int i = 0; i < 400; i++) {
        bool has;
        if (f->row->kind == FAKE) {
            has = pw_fakeexec_live(fake(f), task, node, NULL);
        } else if (f->row->kind == JOB) {
            has = job_exists(f, task, node, NULL);
        } else {
            json_t *r = agent_sync(f, node, "");
            has = assigned(r, task);
            json_decref(r);
        }
        if (!has)
            return;
        sleep_ms(25);
    }
    fail_msg("the %s executor still runs the work of node %s", f->row->name, node);
}

static int set_job_condition(void *arg, json_t *job)
{
    const char *const *c = arg; /* type, reason, message */
    json_t *st = json_object_get(job, "status");
    if (!st) {
        st = json_object();
        json_object_set_new(job, "status", st);
    }
    json_object_set_new(st, "conditions",
                        json_pack("[{s:s,s:s,s:s,s:s}]", "type", c[0], "status", "True", "reason", c[1], "message", c[2]));
    return 0;
}

static void job_condition(struct fx *f, const char *task, const char *node, const char *type, const char *reason,
                          const char *message)
{
    char *name = job_name(task, node);
    const char *c[3] = {type, reason, message};
    int rc = -1;
    for (int i = 0; i < 400 && rc != 0; i++) {
        rc = sim_store_mutate(f->sim.store, "jobs.batch", "prewarm", name, set_job_condition, (void *)c, NULL);
        if (rc != 0)
            sleep_ms(25);
    }
    free(name);
    assert_int_equal(rc, 0);
}

/* One agent result per image of task on node: "state" (and reason/message for failed). */
static void agent_results(struct fx *f, const char *task, const char *node, const char *const *images, size_t n,
                          const char *state, const char *reason, const char *message)
{
    char buf[1536] = "";
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        char id[33];
        pw_agentexec_assignment_id(task, node, images[i], id);
        off += (size_t)snprintf(buf + off, sizeof buf - off,
                                "%s{\"id\":\"%s\",\"state\":\"%s\",\"attempts\":1,\"reason\":\"%s\",\"message\":\"%s\"}",
                                i ? "," : "", id, state, reason ? reason : "", message ? message : "");
    }
    json_decref(agent_sync(f, node, buf));
}

/* Every image of node's work pulled. */
static void drive_success(struct fx *f, const char *task, const char *node, const char *const *images, size_t n)
{
    if (f->row->kind == FAKE) {
        struct pw_image_status st[8] = {0};
        for (size_t i = 0; i < n; i++)
            st[i].cls = PW_PULL_DONE;
        struct pw_exec_report r = {.task_id = task, .node = node, .verdict = PW_EXEC_SUCCEEDED, .images = st,
                                   .n_images = n, .attempts = 1};
        pw_fakeexec_report(fake(f), &r);
    } else if (f->row->kind == JOB) {
        job_condition(f, task, node, "Complete", "Completed", "");
    } else {
        agent_results(f, task, node, images, n, "succeeded", NULL, NULL);
    }
}

/* The first image of node's work fails for good with message (the row's reason). */
static void drive_failure(struct fx *f, const char *task, const char *node, const char *image, const char *message)
{
    if (f->row->kind == FAKE) {
        struct pw_image_status st = {.cls = PW_PULL_FAILED_NOTFOUND, .final = true};
        snprintf(st.reason, sizeof st.reason, "%s", f->row->fail_reason);
        snprintf(st.message, sizeof st.message, "%s", message);
        struct pw_exec_report r = {.task_id = task, .node = node, .verdict = PW_EXEC_PROGRESS, .images = &st,
                                   .n_images = 1};
        pw_fakeexec_report(fake(f), &r);
    } else if (f->row->kind == JOB) {
        /* the kubelet's word on the pod's only container */
        char *job = job_name(task, node);
        char *pod_name = pw_xasprintf("%s-pod", job);
        json_t *pod = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s,s:s}},s:{s:s},s:{s:s,s:[{s:s,s:{s:{s:s,s:s}}}]}}",
                                "apiVersion", "v1", "kind", "Pod", "metadata", "name", pod_name, "namespace", "prewarm",
                                "labels", "prewarm.io/task", task, "app.kubernetes.io/managed-by", "prewarm", "spec",
                                "nodeName", node, "status", "phase", "Pending", "containerStatuses", "name", "img-0",
                                "state", "waiting", "reason", f->row->fail_reason, "message", message);
        assert_int_equal(sim_store_create(f->sim.store, "pods", "prewarm", pod, NULL), 0);
        free(pod_name);
        free(job);
    } else {
        agent_results(f, task, node, &image, 1, "failed", f->row->fail_reason, message);
    }
}

/* ---- the cases ---- */

static const char *const ONE[] = {"busybox:1.36"};
static const char *const TWO[] = {"busybox:1.36", "redis:7"};

/* dispatch -> report -> the node's final state, and the task's */
static void test_dispatch_report_final(void **state)
{
    struct fx *f = *state;
    agents_connect(f);
    char *id = submit(f, "{\"images\":[\"busybox:1.36\",\"redis:7\"],\"nodeNames\":[\"node-1\"]}");
    await_work(f, id, "node-1");
    json_t *n = wait_node(f, id, "node-1", "running");
    assert_string_equal(str(n, "mode"), f->row->kind == JOB ? "job" : "agent");
    json_decref(n);
    drive_success(f, id, "node-1", TWO, 2);
    json_t *t = wait_status(f, id, "succeeded");
    assert_int_equal(prog(t, "succeededNodes"), 1);
    json_decref(t);
    n = wait_node(f, id, "node-1", "succeeded");
    json_t *imgs = json_object_get(n, "images");
    assert_int_equal(json_array_size(imgs), 2);
    assert_string_equal(str(json_array_get(imgs, 1), "state"), "succeeded");
    json_decref(n);
    /* the core is done with the node: the executor lets its work go */
    await_no_work(f, id, "node-1");
    if (f->row->kind == FAKE) {
        size_t failed = 9;
        assert_int_equal(pw_fakeexec_cancels(fake(f), id, "node-1", &failed), 1);
        assert_int_equal(failed, 0);
    }
    free(id);
}

static int succeeded_reports; /* the standalone Job executor's SUCCEEDED verdicts */

static void count_report(void *arg, const struct pw_exec_report *r)
{
    (void)arg;
    if (r->verdict == PW_EXEC_SUCCEEDED)
        __atomic_add_fetch(&succeeded_reports, 1, __ATOMIC_SEQ_CST);
}

static enum pw_exec_fate fate_active(void *arg, const char *task_id, const char *node)
{
    (void)arg;
    (void)task_id;
    (void)node;
    return PW_EXEC_FATE_ACTIVE;
}

/* The same work dispatched twice is one work: one Job, the same assignment ids, one live work; the
 * node's one result follows. Driven on the engine's executor directly, as a restarted engine would. */
static void test_repeated_dispatch_idempotent(void **state)
{
    struct fx *f = *state;
    agents_connect(f);
    char *id = submit(f, "{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"node-2\"]}");
    await_work(f, id, "node-2");
    json_t *n = wait_node(f, id, "node-2", "running");
    json_decref(n);
    struct pw_exec_work w = {.task_id = id, .node = "node-2", .images = ONE, .n_images = 1,
                             .pull_policy = "IfNotPresent", .timeout_s = 600};
    if (f->row->kind == FAKE) {
        pw_executor_dispatch(fake(f), &w);
        assert_int_equal(pw_fakeexec_dispatches(fake(f), id, "node-2"), 2);
    } else if (f->row->kind == AGENT) {
        pw_executor_dispatch(pw_engine_agents(f->engine), &w);
        json_t *r = agent_sync(f, "node-2", "");
        size_t count = 0, i;
        json_t *a;
        json_array_foreach(json_object_get(r, "assignments"), i, a) {
            count += strcmp(str(a, "task"), id) == 0;
        }
        assert_int_equal(count, 1);
        json_decref(r);
    } else {
        /* Job mode on its own executor (another instance, so the engine's informers ignore it): a
         * repeated dispatch creates the same Job name again (AlreadyExists, adopted), one Job */
        struct pw_jobexec_config jc = {.client = f->client, .namespace_ = "prewarm", .instance = "other",
                                       .hooks = {.report = count_report, .fate = fate_active}};
        pw_executor *x = NULL;
        assert_int_equal(pw_jobexec_new(&jc, &x), 0);
        assert_int_equal(pw_executor_start(x, NULL, 0), 0);
        w.task_id = "t-000000000dup";
        pw_executor_dispatch(x, &w);
        pw_executor_dispatch(x, &w);
        await_work(f, "t-000000000dup", "node-2");
        sleep_ms(300); /* both creates answered */
        assert_int_equal(sim_store_count(f->sim.store, "jobs.batch"), 2); /* the engine's and this one */
        job_condition(f, "t-000000000dup", "node-2", "Complete", "Completed", "");
        for (int i = 0; i < 400 && !__atomic_load_n(&succeeded_reports, __ATOMIC_SEQ_CST); i++)
            sleep_ms(25);
        assert_true(__atomic_load_n(&succeeded_reports, __ATOMIC_SEQ_CST) >= 1);
        pw_executor_cancel(x, "t-000000000dup", "node-2", false);
        await_no_work(f, "t-000000000dup", "node-2");
        pw_executor_free(x);
        w.task_id = id;
    }
    drive_success(f, id, "node-2", ONE, 1);
    json_t *t = wait_status(f, id, "succeeded");
    assert_int_equal(prog(t, "totalNodes"), 1);
    assert_int_equal(prog(t, "succeededNodes"), 1);
    json_decref(t);
    if (f->row->kind == JOB)
        assert_true(sim_store_count(f->sim.store, "jobs.batch") <= 1);
    free(id);
}

/* Cancel with one node in flight and one pending (batchSize 1): the running node's work is stopped,
 * the pending one never dispatched, both cancelled; a report arriving late changes nothing. */
static void test_cancel_pending_and_in_flight(void **state)
{
    struct fx *f = *state;
    agents_connect(f);
    char *id = submit(f, "{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"node-1\",\"node-2\"],\"batchSize\":1}");
    await_work(f, id, "node-1");
    json_t *t = NULL;
    assert_int_equal(pw_engine_cancel(f->engine, id, &t), 0);
    assert_string_equal(str(t, "status"), "cancelled");
    assert_int_equal(prog(t, "cancelledNodes"), 2);
    assert_int_equal(prog(t, "runningNodes"), 0);
    json_decref(t);
    await_no_work(f, id, "node-1");
    if (f->row->kind == FAKE) {
        assert_int_equal(pw_fakeexec_dispatches(fake(f), id, "node-2"), 0);
        assert_int_equal(pw_fakeexec_cancels(fake(f), id, "node-1", NULL), 1);
    } else if (f->row->kind == JOB) {
        assert_false(job_exists(f, id, "node-2", NULL));
    }
    if (f->row->kind != JOB) /* (Job mode: the Job is gone, nothing is left to report) */
        drive_success(f, id, "node-1", ONE, 1); /* too late: ignored */
    sleep_ms(200);
    json_t *n = node_result(f, id, "node-1");
    assert_string_equal(str(n, "state"), "cancelled");
    assert_string_equal(str(n, "reason"), "Cancelled");
    json_decref(n);
    n = node_result(f, id, "node-2");
    assert_string_equal(str(n, "state"), "cancelled");
    json_decref(n);
    assert_int_equal(pw_engine_cancel(f->engine, id, NULL), 0); /* idempotent */
    free(id);
}

/* A failure's reason and the runtime's message reach the node's result, the task's failedNodes and
 * its message; the executor is told the node failed. */
static void test_failure_reason_carried(void **state)
{
    struct fx *f = *state;
    agents_connect(f);
    char *id = submit(f, "{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"node-3\"],\"successThreshold\":1}");
    await_work(f, id, "node-3");
    drive_failure(f, id, "node-3", ONE[0], "manifest for busybox:1.36 not found");
    json_t *t = wait_status(f, id, "failed");
    json_t *fn = json_array_get(json_object_get(t, "failedNodes"), 0);
    assert_string_equal(str(fn, "nodeName"), "node-3");
    assert_string_equal(str(fn, "reason"), f->row->fail_reason);
    assert_non_null(strstr(str(fn, "message"), "not found"));
    assert_non_null(strstr(str(t, "message"), "node-3"));
    json_decref(t);
    json_t *n = node_result(f, id, "node-3");
    assert_string_equal(str(n, "reason"), f->row->fail_reason);
    json_t *img = json_array_get(json_object_get(n, "images"), 0);
    assert_string_equal(str(img, "state"), "failed");
    assert_non_null(strstr(str(img, "message"), "manifest for busybox:1.36 not found"));
    json_decref(n);
    if (f->row->kind == FAKE) {
        size_t failed = 0;
        assert_int_equal(pw_fakeexec_cancels(fake(f), id, "node-3", &failed), 1);
        assert_int_equal(failed, 1);
    }
    await_no_work(f, id, "node-3");
    free(id);
}

/* healthy(): Job mode serves any node; an agent only once it syncs; the fake as told. In mode agent a
 * node without a healthy agent fails AgentUnavailable without a dispatch. */
static void test_healthy(void **state)
{
    struct fx *f = *state;
    if (f->row->kind == JOB) {
        /* Job mode serves every node, whatever it is: a task in mode job on any node runs */
        char *id = submit(f, "{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"node-2\"]}");
        await_work(f, id, "node-2");
        drive_success(f, id, "node-2", ONE, 1);
        json_decref(wait_status(f, id, "succeeded"));
        free(id);
        return;
    }
    pw_executor *x = f->row->kind == FAKE ? fake(f) : pw_engine_agents(f->engine);
    if (f->row->kind == FAKE) {
        pw_fakeexec_set_healthy(x, "node-1", false);
    } else {
        assert_false(pw_executor_healthy(x, "node-1")); /* never synced */
        json_decref(agent_sync(f, "node-2", ""));
    }
    assert_false(pw_executor_healthy(x, "node-1"));
    assert_true(pw_executor_healthy(x, "node-2"));
    char *id = submit(f, "{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"node-1\",\"node-2\"],\"successThreshold\":0.5}");
    json_t *n = wait_node(f, id, "node-1", "failed");
    assert_string_equal(str(n, "reason"), "AgentUnavailable");
    json_decref(n);
    await_work(f, id, "node-2");
    drive_success(f, id, "node-2", ONE, 1);
    json_t *t = wait_status(f, id, "succeeded"); /* 1 of 2 meets 0.5 */
    assert_int_equal(prog(t, "failedNodes"), 1);
    json_decref(t);
    if (f->row->kind == FAKE)
        assert_int_equal(pw_fakeexec_dispatches(x, id, "node-1"), 0);
    free(id);
}

/* The node's deadline (timeoutSeconds) reaches the executor, and when it passes with images not pulled
 * the node fails DeadlineExceeded naming them. Job mode's deadline is the Job controller's
 * (activeDeadlineSeconds): the driver plays that controller. */
static void test_deadline(void **state)
{
    struct fx *f = *state;
    agents_connect(f);
    char *id = submit(f, "{\"images\":[\"busybox:1.36\",\"redis:7\"],\"nodeNames\":[\"node-1\"],\"timeoutSeconds\":1}");
    await_work(f, id, "node-1");
    if (f->row->kind == FAKE) {
        struct pw_fakeexec_work w;
        assert_true(pw_fakeexec_live(fake(f), id, "node-1", &w));
        assert_int_equal(w.timeout_s, 1);
        assert_int_equal(w.n_images, 2);
    } else if (f->row->kind == JOB) {
        json_t *job = NULL;
        assert_true(job_exists(f, id, "node-1", &job));
        assert_int_equal(json_integer_value(json_object_get(json_object_get(job, "spec"), "activeDeadlineSeconds")), 1);
        json_decref(job);
        job_condition(f, id, "node-1", "Failed", "DeadlineExceeded", "Job was active longer than specified deadline");
    } else {
        json_t *r = agent_sync(f, "node-1", "");
        json_t *a = json_array_get(json_object_get(r, "assignments"), 0);
        json_int_t dl = json_integer_value(json_object_get(a, "deadlineUnixMs"));
        assert_true(dl > 0 && dl <= pw_clock_real_ms() + 1500);
        json_decref(r);
    }
    json_t *n = wait_node(f, id, "node-1", "failed");
    assert_string_equal(str(n, "reason"), "DeadlineExceeded");
    assert_non_null(strstr(str(n, "message"), "busybox:1.36, redis:7"));
    json_decref(n);
    json_decref(wait_status(f, id, "failed"));
    free(id);
}

/* Start after records exist: the engine stops with a node running; a new engine on the same store
 * hands the running node to its executor at start (resume), which adopts or restarts the work, and
 * the node's result, when it comes, finishes the task. */
static void test_restart_resume(void **state)
{
    struct fx *f = *state;
    agents_connect(f);
    char *id = submit(f, "{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"node-2\"]}");
    await_work(f, id, "node-2");
    json_decref(wait_node(f, id, "node-2", "running"));
    pw_engine_free(f->engine);
    f->engine = NULL;
    memset(f->fakes, 0, sizeof f->fakes);
    engine_up(f);
    if (f->row->kind == FAKE) {
        assert_int_equal(pw_fakeexec_resumed(fake(f), id, "node-2"), 1);
        assert_true(pw_fakeexec_live(fake(f), id, "node-2", NULL));
        assert_int_equal(pw_fakeexec_dispatches(fake(f), id, "node-2"), 0);
    }
    await_work(f, id, "node-2"); /* Job mode: the Job adopted; agent mode: assigned again */
    if (f->row->kind == JOB)
        assert_int_equal(sim_store_count(f->sim.store, "jobs.batch"), 1);
    drive_success(f, id, "node-2", ONE, 1);
    json_t *t = wait_status(f, id, "succeeded");
    assert_int_equal(prog(t, "succeededNodes"), 1);
    json_decref(t);
    free(id);
}


/* ---- the task state machine through the fake (fake row only) ---- */

static void report_image(struct fx *f, const char *task, const char *node, enum pw_pull_class cls, const char *reason,
                         const char *message, bool final)
{
    struct pw_image_status st = {.cls = cls, .final = final};
    snprintf(st.reason, sizeof st.reason, "%s", reason);
    snprintf(st.message, sizeof st.message, "%s", message);
    struct pw_exec_report r = {.task_id = task, .node = node, .verdict = PW_EXEC_PROGRESS, .images = &st,
                               .n_images = 1};
    pw_fakeexec_report(fake(f), &r);
}

/* Retries: a not-found image is retried until the task's retries are used (each move into
 * ErrImagePull is an attempt); a later back-off keeps the more specific cause; the node then fails. A
 * retryable failure the executor calls final fails at once. */
static void test_sm_retries(void **state)
{
    struct fx *f = *state;
    char *id = submit(f, "{\"images\":[\"busybox:1.36\"],\"nodeNames\":[\"node-1\",\"node-2\"],\"retries\":2,"
                         "\"successThreshold\":1}");
    await_work(f, id, "node-1");
    await_work(f, id, "node-2");
    report_image(f, id, "node-1", PW_PULL_FAILED_NOTFOUND, "ErrImagePull", "not found", false);
    report_image(f, id, "node-1", PW_PULL_FAILED_RETRYABLE, "ImagePullBackOff", "Back-off pulling image", false);
    sleep_ms(300);
    json_t *n = node_result(f, id, "node-1");
    assert_string_equal(str(n, "state"), "running");
    json_t *img = json_array_get(json_object_get(n, "images"), 0);
    assert_string_equal(str(img, "reason"), "ErrImagePull"); /* not the back-off */
    assert_int_equal(json_integer_value(json_object_get(img, "attempts")), 1);
    json_decref(n);
    report_image(f, id, "node-1", PW_PULL_FAILED_NOTFOUND, "ErrImagePull", "not found", false); /* attempt 2 */
    n = wait_node(f, id, "node-1", "failed");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(n, "images"), 0), "attempts")), 2);
    json_decref(n);
    report_image(f, id, "node-2", PW_PULL_FAILED_RETRYABLE, "ErrImagePull", "connection reset", true);
    n = wait_node(f, id, "node-2", "failed");
    assert_non_null(strstr(str(n, "message"), "connection reset"));
    json_decref(n);
    json_t *t = wait_status(f, id, "failed");
    assert_int_equal(prog(t, "failedNodes"), 2);
    json_decref(t);
    free(id);
}

/* The outcome at the threshold: 2 of 3 succeeded meets 0.66, one image found present at the pull
 * counts as pulled, a report for a node the task does not have changes nothing, and a FAILED verdict
 * with the last pull error cited. */
static void test_sm_threshold_and_present(void **state)
{
    struct fx *f = *state;
    char *id = submit(f, "{\"images\":[\"busybox:1.36\"],\"successThreshold\":0.66}");
    for (int i = 1; i <= 3; i++) {
        char node[16];
        snprintf(node, sizeof node, "node-%d", i);
        await_work(f, id, node);
    }
    report_image(f, id, "node-9", PW_PULL_DONE, "", "", false); /* no such node: ignored */
    report_image(f, id, "node-1", PW_PULL_PRESENT, "", "", false);
    drive_success(f, id, "node-2", ONE, 1);
    report_image(f, id, "node-3", PW_PULL_FAILED_RETRYABLE, "ErrImagePull", "i/o timeout", false);
    struct pw_exec_report r = {.task_id = id, .node = "node-3", .verdict = PW_EXEC_FAILED, .reason = "BackoffLimitExceeded",
                               .message = "gave up", .cite_pending = true};
    pw_fakeexec_report(fake(f), &r);
    json_t *t = wait_status(f, id, "succeeded");
    assert_int_equal(prog(t, "succeededNodes"), 2);
    assert_int_equal(prog(t, "failedNodes"), 1);
    json_decref(t);
    json_t *n = node_result(f, id, "node-1");
    assert_string_equal(str(json_array_get(json_object_get(n, "images"), 0), "reason"), "AlreadyPresent");
    json_decref(n);
    n = node_result(f, id, "node-3");
    assert_string_equal(str(n, "reason"), "BackoffLimitExceeded");
    assert_non_null(strstr(str(n, "message"), "last pull error: ErrImagePull: i/o timeout"));
    json_decref(n);
    free(id);
}

/* Selection and dispatch paths: an image the node's agent reports is skipped (a node holding every
 * image is skipped without a dispatch); mode auto takes the agent where it is healthy, else Job mode;
 * a node deleted before its turn fails NodeDeleted; an executor that cannot start fails the start. */
static void test_sm_selection_and_dispatch(void **state)
{
    struct fx *f = *state;
    json_t *inv = json_pack("[s]", "docker.io/library/busybox:1.36");
    pw_fakeexec_set_inventory(f->fakes[1], "node-1", inv);
    json_decref(inv);
    pw_fakeexec_set_healthy(f->fakes[1], "node-2", false);
    char *id = submit_mode(f, "{\"images\":[\"busybox:1.36\"],\"batchSize\":1}", "auto");
    /* node-1 skipped; node-2 (agent unhealthy) goes to Job mode; node-3 waits its turn and is deleted */
    for (int i = 0; i < 400 && !pw_fakeexec_live(f->fakes[0], id, "node-2", NULL); i++)
        sleep_ms(25);
    assert_true(pw_fakeexec_live(f->fakes[0], id, "node-2", NULL));
    json_t *gone = NULL;
    assert_int_equal(sim_store_delete(f->sim.store, "nodes", "", "node-3", &gone), 0);
    json_decref(gone);
    sleep_ms(300);
    struct pw_exec_report r = {.task_id = id, .node = "node-2", .verdict = PW_EXEC_SUCCEEDED};
    pw_fakeexec_report(f->fakes[0], &r);
    json_t *t = wait_status(f, id, "failed"); /* 1 of 2 (one skipped) is below 0.9 */
    assert_int_equal(prog(t, "skippedNodes"), 1);
    json_decref(t);
    json_t *n = node_result(f, id, "node-2");
    assert_string_equal(str(n, "mode"), "job");
    json_decref(n);
    n = node_result(f, id, "node-3");
    assert_string_equal(str(n, "reason"), "NodeDeleted");
    json_decref(n);
    assert_int_equal(pw_fakeexec_dispatches(f->fakes[1], id, "node-1"), 0);
    assert_true(pw_fakeexec_ticks(f->fakes[0]) > 0);
    free(id);
    /* a start that fails leaves an engine that can only be freed */
    pw_engine_free(f->engine);
    memset(f->fakes, 0, sizeof f->fakes);
    struct pw_engine_config cfg = {.client = f->client, .store = f->store, .executor_new = pw_fakeexec_factory,
                                   .executor_arg = f->fakes, .agent = {.enabled = true}};
    assert_int_equal(pw_engine_new(&cfg, &f->engine), 0);
    pw_fakeexec_fail_start(f->fakes[1], PW_EIO);
    assert_int_equal(pw_engine_start(f->engine), PW_EIO);
    assert_int_equal(pw_engine_start(f->engine), PW_EINVAL);
    struct pw_engine_config none = {.store = f->store};
    pw_engine *e2 = NULL;
    assert_int_equal(pw_engine_new(&none, &e2), PW_EINVAL); /* no client: refused */
}

#define CASE(fn, r) cmocka_unit_test_prestate_setup_teardown(fn, fx_setup, fx_teardown, (void *)&rows[r])
#define ROW(r)                                                                                                     \
    CASE(test_dispatch_report_final, r), CASE(test_repeated_dispatch_idempotent, r),                               \
        CASE(test_cancel_pending_and_in_flight, r), CASE(test_failure_reason_carried, r), CASE(test_healthy, r),   \
        CASE(test_deadline, r), CASE(test_restart_resume, r)

int main(void)
{
    const struct CMUnitTest tests[] = {
        ROW(FAKE),
        ROW(JOB),
        ROW(AGENT),
        CASE(test_sm_retries, FAKE),
        CASE(test_sm_threshold_and_present, FAKE),
        CASE(test_sm_selection_and_dispatch, FAKE),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
