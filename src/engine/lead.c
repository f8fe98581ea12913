/* lead.c: leadership (engine.h cfg.may_lead, docs/ha.md). Before each round the loop asks whether
 * this replica may lead: a replica that gains the Lease takes over (a restart resume: every
 * unfinished task read from the store, the first cluster's executors made again and started with
 * the running nodes to adopt); one that loses it steps down (tasks dropped from memory, executors
 * freed, their queued reports dropped; the Jobs stay for the next leader). While leading, the store
 * is rescanned for tasks created and cancels requested on other replicas (cancel-request records).
 * Fencing: the executors ask pw_eng_may_write before every Kubernetes write and the loop before
 * every flush, so a replica whose Lease lapsed writes nothing. Locks: engine_int.h. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/engine_int.h"
#include "engine/resume.h"
#include "store/store.h"

bool pw_eng_may_write_now(pw_engine *e)
{
    return !e->cfg.may_lead || (atomic_load(&e->leading) && e->cfg.may_lead(e->cfg.may_lead_arg));
}

bool pw_eng_may_write(void *arg)
{
    return pw_eng_may_write_now(((struct ecl *)arg)->e);
}

/* Makes the first cluster's executors again at a takeover (may_lead: one cluster only). On failure
 * none is left. */
static int executors_new(pw_engine *e)
{
    return pw_eng_ecl_executors_new(e, e->cl[0]);
}

/* Starts the first cluster's executors with the running nodes of the tasks in memory to adopt
 * (under e->mu). On failure the executors are freed (a started one cannot start again). */
static int executors_start(pw_engine *e)
{
    return pw_eng_ecl_executors_start(e, e->cl[0]);
}

/* Drops every task, intent and queued report from memory (under e->wmu and e->mu: a flush's
 * snapshot never outlives them). */
static void drop_tasks(pw_engine *e)
{
    pw_eng_intents_free(e);
    for (size_t i = 0; i < e->n_tasks; i++)
        pw_taskrec_free(e->tasks[i]);
    free(e->tasks);
    e->tasks = NULL;
    e->n_tasks = 0;
    e->store_failing = false;
}

/* Loop thread: this replica no longer leads. Nothing more is dispatched or written; the Jobs stay for
 * the next leader to adopt. */
static void step_down(pw_engine *e, const char *why)
{
    atomic_store(&e->leading, false);
    pw_executor *x[N_EXEC];
    pthread_mutex_lock(&e->wmu);
    pthread_mutex_lock(&e->mu);
    size_t n = e->n_tasks;
    drop_tasks(e);
    for (int k = 0; k < N_EXEC; k++) {
        x[k] = e->x[k];
        e->x[k] = NULL;
    }
    pthread_mutex_unlock(&e->mu);
    pthread_mutex_unlock(&e->wmu);
    for (int k = 0; k < N_EXEC; k++)
        pw_executor_free(x[k]); /* its threads stop; queued creates and deletes are dropped */
    pthread_mutex_lock(&e->qmu);
    struct event **pp = &e->q_head; /* the old executors' reports: the next leader reads the Jobs anew */
    e->q_tail = NULL;
    while (*pp) {
        if ((*pp)->kind == EV_REPORT) {
            struct event *ev = *pp;
            *pp = ev->next;
            pw_eng_ev_free(ev);
        } else {
            e->q_tail = *pp;
            pp = &(*pp)->next;
        }
    }
    pthread_mutex_unlock(&e->qmu);
    PW_WARN("engine: following (%s): dispatch stopped, %zu unfinished tasks left in the store for the leader",
            why, n);
}

/* Loop thread: this replica leads now: a restart resume (every unfinished task from the store,
 * running nodes' Jobs adopted by new executors). On failure it stays a follower (tried next round). */
static void take_over(pw_engine *e)
{
    int rc = e->x[EXEC_JOB] ? 0 : executors_new(e);
    if (rc == 0) {
        int rrc = pw_eng_resume(e); /* a task missed here would stay running, unowned, until the next takeover */
        pthread_mutex_lock(&e->wmu);
        pthread_mutex_lock(&e->mu);
        rc = rrc != 0 ? rrc : executors_start(e); /* not started: kept for the next try */
        if (rc != 0)
            drop_tasks(e);
        pthread_mutex_unlock(&e->mu);
        pthread_mutex_unlock(&e->wmu);
    }
    if (rc != 0) {
        PW_ERROR("engine: cannot take over as leader: %s (retrying)", pw_strerror(rc));
        return;
    }
    pthread_mutex_lock(&e->mu);
    size_t n = e->n_tasks, running = 0;
    for (size_t i = 0; i < n; i++)
        running += e->tasks[i]->counts.running;
    pthread_mutex_unlock(&e->mu);
    e->next_pickup_mono = pw_clock_mono_ms() + PW_ENGINE_PICKUP_MS;
    atomic_store(&e->leading, true);
    PW_INFO("engine: leading: %zu unfinished tasks resumed from the store, %zu running nodes' Jobs to adopt", n, running);
}

#define CANCEL_KIND "cancel-request" /* store records: a follower's cancel, keyed by task id */

/* Loop thread, leading: the tasks and cancels other replicas stored since the last scan. */
static void pickup(pw_engine *e)
{
    e->next_pickup_mono = pw_clock_mono_ms() + PW_ENGINE_PICKUP_MS;
    atomic_store(&e->pickup_now, false);
    struct pw_store_task *items = NULL;
    size_t n = 0;
    if (pw_store_task_list_unfinished(e->cfg.store, &items, &n) != 0)
        return; /* the store is down: the flush says so; the next scan retries */
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&e->mu);
        bool known = pw_eng_task_find(e, items[i].id) != NULL;
        pthread_mutex_unlock(&e->mu);
        if (known)
            continue;
        if (pw_task_status_of(items[i].status) != PW_TASK_PENDING) {
            /* running but not in memory: only a leader writing after our takeover read the store (the
             * fencing above prevents it) could do that; the next takeover resumes it */
            PW_DEBUG("task %s is %s in the store but not in this leader's memory: left alone", items[i].id,
                     items[i].status);
            continue;
        }
        struct task *t = pw_resume_task(e->cfg.store, &items[i]);
        if (!t)
            continue;
        pthread_mutex_lock(&e->mu);
        if (!pw_eng_task_find(e, t->id)) {
            t->sched.seq = ++e->seq;
            e->tasks = pw_xrealloc(e->tasks, (e->n_tasks + 1) * sizeof *e->tasks);
            e->tasks[e->n_tasks++] = t;
            t = NULL;
        }
        pthread_mutex_unlock(&e->mu);
        if (t)
            pw_taskrec_free(t);
        else
            PW_INFO("task %s picked up from the store (created on another replica)", items[i].id);
    }
    pw_store_tasks_free(items, n);
    struct pw_store_rec *recs = NULL;
    char *next = NULL;
    int lrc = pw_store_rec_list(e->cfg.store, CANCEL_KIND, 0, NULL, &recs, &n, &next);
    free(next);
    if (lrc != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&e->mu);
        struct task *t = pw_eng_task_find(e, recs[i].key);
        bool fresh = t && !pw_task_status_is_final(t->status);
        if (fresh)
            pw_eng_task_cancel(e, t);
        pthread_mutex_unlock(&e->mu);
        if (fresh) {
            int rc = 0;
            pw_eng_flush(e, false, recs[i].key, &rc, NULL);
            if (rc != 0)
                continue; /* kept: the next scan applies it again */
            PW_INFO("task %s cancelled (asked on another replica)", recs[i].key);
        } else if (!t) {
            struct pw_store_task rec; /* not in memory: done with the request once the task is over or gone */
            int grc = pw_store_task_get(e->cfg.store, recs[i].key, &rec);
            bool over = grc == PW_ENOTFOUND || (grc == 0 && pw_store_status_final(rec.status));
            if (grc == 0)
                pw_store_task_fini(&rec);
            if (!over)
                continue;
        }
        pw_store_rec_delete(e->cfg.store, CANCEL_KIND, recs[i].key);
    }
    pw_store_recs_free(recs, n);
}

/* Loop thread, before a round: follows leadership changes, rescans the store while leading. */
void pw_eng_lead_round(pw_engine *e)
{
    if (!e->cfg.may_lead)
        return;
    bool may = e->cfg.may_lead(e->cfg.may_lead_arg);
    bool leading = atomic_load(&e->leading);
    if (leading && !may)
        step_down(e, "the Lease is not held");
    else if (!leading && may)
        take_over(e);
    else if (leading && (atomic_load(&e->pickup_now) || pw_clock_mono_ms() >= e->next_pickup_mono))
        pickup(e);
}

/* A follower's cancel: a request in the store for the leader, then wait for the task to show it. */
int pw_eng_cancel_by_request(pw_engine *e, const char *id)
{
    json_t *doc = json_pack("{s:s,s:I}", "id", id, "requestedAt", (json_int_t)pw_clock_real_ms());
    int rc = pw_store_rec_put(e->cfg.store, CANCEL_KIND, id, doc, PW_STORE_REC_UPSERT);
    json_decref(doc);
    if (rc != 0)
        return rc;
    PW_INFO("task %s: cancel stored for the leader to apply", id);
    atomic_store(&e->pickup_now, true);
    pw_eng_wake(e);
    for (int64_t until = pw_clock_mono_ms() + PW_ENGINE_HANDOFF_MS; pw_clock_mono_ms() < until;) {
        struct pw_store_task rec;
        if (pw_store_task_get(e->cfg.store, id, &rec) == 0) {
            bool final = pw_store_status_final(rec.status);
            pw_store_task_fini(&rec);
            if (final)
                return 0;
        }
        pw_clock_sleep_ms(100);
    }
    return PW_EUNAVAIL;
}

void pw_engine_wake(pw_engine *e)
{
    pw_eng_wake(e);
}

bool pw_engine_leading(pw_engine *e)
{
    return atomic_load(&e->leading);
}
