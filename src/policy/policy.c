/* policy.c: the policy controller (policy.h): the policies in memory with their per-node progress,
 * the feeds' queue, one round of decisions (pw_policy_tick) and the thread that runs rounds.
 *
 * Per policy, every node its selectors match has an entry {"state", "task", "at", ...}:
 *   pending  -> matched, waiting until it is Ready and schedulable and the coalescing window passed;
 *   inflight -> in the wave task "task";
 *   warm     -> the wave succeeded (every image is on the node);
 *   failed   -> the wave failed; pending again at "retry" (wall ms).
 * A node that stops matching (labels, deletion) loses its entry: forgotten. Entries live in a JSON
 * object so that the progress written to the store is the same object.
 *
 * A round: apply the queued feeds (node names that changed, tasks and nodes that finished), compare
 * the changed nodes (or, each rescan period, every node) with the selectors, plan the waves and the
 * refreshes, then with the lock released ask the predictor, create the tasks through the env,
 * remove startup taints, settle tasks that ended with nodes unreported, and write the progress.
 *
 * Locks, in order: wmu (store writes of specs and progress, one at a time) -> mu (the policies) ->
 * qmu (the feeds' queue). No store call, task creation or Kubernetes call runs under mu (the node
 * cache is read under it: its lock comes after mu, and its hooks never take mu). */
#include "policy/polint.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "policy/polspec.h"
#include "store/store.h"

#define STATE_WRITE_EVERY_MS 1000
#define UNTAINT_RETRY_MS 5000
#define TICK_MS 200

/* ---- helpers ---- */

struct pol *pw_policy_find(pw_policy *pc, const char *name, size_t *idx)
{
    for (size_t i = 0; i < pc->n; i++)
        if (strcmp(pc->v[i]->spec.name, name) == 0) {
            if (idx)
                *idx = i;
            return pc->v[i];
        }
    return NULL;
}

void pw_policy_pol_free(struct pol *p)
{
    if (!p)
        return;
    pw_polspec_fini(&p->spec);
    json_decref(p->nodes);
    json_decref(p->tasks);
    free(p->refresh_task);
    free(p->current_task);
    free(p);
}

static const char *entry_state(const json_t *e)
{
    const char *s = json_string_value(json_object_get(e, "state"));
    return s ? s : "pending";
}

static bool state_is(const json_t *e, const char *s)
{
    return strcmp(entry_state(e), s) == 0;
}

static void entry_set(json_t *e, const char *state, const char *task)
{
    json_object_set_new(e, "state", json_string(state));
    if (task)
        json_object_set_new(e, "task", json_string(task));
    else
        json_object_del(e, "task");
    json_object_set_new(e, "at", json_integer(pw_clock_real_ms()));
    json_object_del(e, "since");
}

static void time_json(json_t *o, const char *key, int64_t ms)
{
    if (ms <= 0) {
        json_object_set_new(o, key, json_null());
        return;
    }
    char buf[40];
    pw_time_rfc3339_micro(ms, buf);
    json_object_set_new(o, key, json_string(buf));
}

/* The policy as the API shows it (under mu): a new object. */
json_t *pw_policy_pol_json(const struct pol *p)
{
    json_t *o = json_deep_copy(p->spec.doc);
    size_t counts[4] = {0};
    static const char *const names[] = {"pending", "inflight", "warm", "failed"};
    const char *k;
    json_t *e;
    json_object_foreach(p->nodes, k, e) {
        for (size_t i = 0; i < 4; i++)
            if (state_is(e, names[i]))
                counts[i]++;
    }
    json_t *st = json_object();
    json_object_set_new(st, "matchingNodes", json_integer((json_int_t)json_object_size(p->nodes)));
    json_object_set_new(st, "warmNodes", json_integer((json_int_t)counts[2]));
    json_object_set_new(st, "pendingNodes", json_integer((json_int_t)counts[0]));
    json_object_set_new(st, "inflightNodes", json_integer((json_int_t)counts[1]));
    json_object_set_new(st, "failedNodes", json_integer((json_int_t)counts[3]));
    size_t untainted = 0;
    json_object_foreach(p->nodes, k, e) untainted += json_is_true(json_object_get(e, "untainted"));
    json_object_set_new(st, "untaintedNodes", json_integer((json_int_t)untainted));
    time_json(st, "lastRefresh", p->last_refresh_ms);
    int64_t base = p->last_refresh_ms ? p->last_refresh_ms : p->created_ms;
    time_json(st, "nextRefresh", p->spec.refresh_ms && p->spec.enabled ? base + p->spec.refresh_ms : 0);
    json_object_set_new(st, "currentTask", p->current_task ? json_string(p->current_task) : json_null());
    json_object_set_new(st, "refreshTask", p->refresh_task && *p->refresh_task ? json_string(p->refresh_task) : json_null());
    json_object_set(st, "activeTasks", p->tasks);
    json_object_set_new(o, "status", st);
    time_json(o, "createdAt", p->created_ms);
    time_json(o, "updatedAt", p->updated_ms);
    return o;
}

/* What the store keeps of the spec: {"spec": the spec as shown, "createdMs", "updatedMs"}. */
json_t *pw_policy_spec_record(const struct pol *p)
{
    return json_pack("{s:O, s:I, s:I}", "spec", p->spec.doc, "createdMs", (json_int_t)p->created_ms, "updatedMs",
                     (json_int_t)p->updated_ms);
}

/* ... and of the progress (under mu): the entries without their transient fields. */
static json_t *state_record(const struct pol *p)
{
    json_t *nodes = json_object();
    const char *k;
    json_t *e;
    json_object_foreach(p->nodes, k, e) {
        if (state_is(e, "pending"))
            continue; /* found again by the first pass after a restart */
        json_t *c = json_deep_copy(e);
        json_object_del(c, "since");
        json_object_set_new(nodes, k, c);
    }
    return json_pack("{s:o, s:O, s:s?, s:s?, s:I}", "nodes", nodes, "tasks", p->tasks, "refreshTask", p->refresh_task,
                     "currentTask", p->current_task, "lastRefreshMs", (json_int_t)p->last_refresh_ms);
}

void pw_policy_wake(pw_policy *pc)
{
    pthread_mutex_lock(&pc->qmu);
    pthread_cond_signal(&pc->qcond);
    pthread_mutex_unlock(&pc->qmu);
}

/* ---- feeds ---- */

void pw_policy_node_event(void *arg, enum pw_k8s_event type, const json_t *obj, const json_t *old)
{
    pw_policy *pc = arg;
    (void)type;
    (void)old;
    const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
    if (!name)
        return;
    pthread_mutex_lock(&pc->qmu);
    json_object_set_new(pc->q_nodes, name, json_true());
    pthread_cond_signal(&pc->qcond);
    pthread_mutex_unlock(&pc->qmu);
}

void pw_policy_observe(pw_policy *pc, enum pw_engine_change what, const char *task_id, const json_t *doc)
{
    if (!pc || !task_id)
        return;
    json_t *ev = NULL;
    if (what == PW_ENGINE_NODE_DONE) {
        const char *node = json_string_value(json_object_get(doc, "nodeName"));
        const char *state = json_string_value(json_object_get(doc, "state"));
        if (node && state)
            ev = json_pack("{s:s, s:s, s:s}", "task", task_id, "node", node, "state", state);
    } else if (json_is_string(json_object_get(doc, "policy")) &&
               pw_store_status_final(json_string_value(json_object_get(doc, "status")))) {
        ev = json_pack("{s:s, s:b}", "task", task_id, "final", 1);
    }
    if (!ev)
        return;
    pthread_mutex_lock(&pc->qmu);
    json_array_append_new(pc->q_done, ev);
    pthread_cond_signal(&pc->qcond);
    pthread_mutex_unlock(&pc->qmu);
}

/* ---- applying what finished (under mu) ---- */

static struct pol *pol_of_task(pw_policy *pc, const char *task, bool *refresh, size_t *slot)
{
    for (size_t i = 0; i < pc->n; i++) {
        struct pol *p = pc->v[i];
        if (p->refresh_task && strcmp(p->refresh_task, task) == 0) {
            *refresh = true;
            return p;
        }
        size_t j;
        const json_t *t;
        json_array_foreach(p->tasks, j, t) if (strcmp(json_string_value(t), task) == 0)
        {
            *refresh = false;
            *slot = j;
            return p;
        }
    }
    return NULL;
}

/* A node of wave task reached state (a node state name). */
static void node_done(pw_policy *pc, struct pol *p, const char *task, const char *node, const char *state)
{
    json_t *e = json_object_get(p->nodes, node);
    const char *et = json_string_value(json_object_get(e, "task"));
    if (!e || !et || strcmp(et, task) != 0 || !state_is(e, "inflight"))
        return;
    if (strcmp(state, "succeeded") == 0 || strcmp(state, "skipped") == 0) {
        entry_set(e, "warm", task);
        if (p->spec.untaint)
            json_object_set_new(e, "untaint", json_integer(0)); /* due now */
    } else {
        entry_set(e, "failed", task);
        json_object_set_new(e, "retry", json_integer(pw_clock_real_ms() + pc->cfg.retry_ms));
        PW_INFO("policy %s: node %s: its wave %s ended %s; trying again in %llds", p->spec.name, node, task, state,
                (long long)(pc->cfg.retry_ms / 1000));
    }
    p->dirty = true;
}

static void apply_done(pw_policy *pc, const json_t *ev)
{
    const char *task = json_string_value(json_object_get(ev, "task"));
    bool refresh = false;
    size_t slot = 0;
    struct pol *p = pol_of_task(pc, task, &refresh, &slot);
    if (!p)
        return;
    if (json_is_true(json_object_get(ev, "final"))) {
        if (refresh) {
            free(p->refresh_task);
            p->refresh_task = NULL;
            p->last_refresh_ms = pw_clock_real_ms();
            PW_INFO("policy %s: refresh task %s ended", p->spec.name, task);
        } else {
            json_array_append_new(pc->settle, json_string(task)); /* nodes it never reported: look */
        }
        p->dirty = true;
        return;
    }
    if (!refresh)
        node_done(pc, p, task, json_string_value(json_object_get(ev, "node")),
                  json_string_value(json_object_get(ev, "state")));
}

/* ---- matching nodes (under mu) ---- */

/* node (NULL: gone) against p: a new match gets a pending entry, a lost one is forgotten. */
static void match_node(struct pol *p, const char *name, const json_t *node)
{
    bool sel = node && pw_polspec_selects(&p->spec, node);
    json_t *e = json_object_get(p->nodes, name);
    if (sel && !e) {
        json_object_set_new(p->nodes, name, json_pack("{s:s}", "state", "pending"));
        p->dirty = true;
    } else if (!sel && e) {
        json_object_del(p->nodes, name);
        p->dirty = true;
    }
}

struct scan {
    pw_policy *pc;
    json_t *seen; /* per policy index: object of names seen matching */
};

static int scan_one(void *arg, const json_t *node)
{
    struct scan *s = arg;
    const char *name = json_string_value(json_object_get(json_object_get(node, "metadata"), "name"));
    if (!name)
        return 0;
    for (size_t i = 0; i < s->pc->n; i++) {
        struct pol *p = s->pc->v[i];
        if (!p->rescan)
            continue;
        match_node(p, name, node);
        if (json_object_get(p->nodes, name))
            json_object_set_new(json_array_get(s->seen, i), name, json_true());
    }
    return 0;
}

/* Every cached node against the policies marked rescan; entries of nodes not in the cache go. */
static void rescan(pw_policy *pc)
{
    struct scan s = {pc, json_array()};
    for (size_t i = 0; i < pc->n; i++)
        json_array_append_new(s.seen, json_object());
    pc->env.node_each(pc->env.arg, scan_one, &s);
    for (size_t i = 0; i < pc->n; i++) {
        struct pol *p = pc->v[i];
        if (!p->rescan)
            continue;
        const char *k;
        json_t *e;
        void *tmp;
        json_t *seen = json_array_get(s.seen, i);
        json_object_foreach_safe(p->nodes, tmp, k, e) {
            if (!json_object_get(seen, k)) {
                json_object_del(p->nodes, k);
                p->dirty = true;
            }
        }
        p->rescan = false;
    }
    json_decref(s.seen);
}

/* ---- planning (under mu) ---- */

/* One wave to create: the policy, its nodes with their labels. */
struct wave {
    char *policy;
    json_t *nodes;   /* [{"name", "labels"}] */
    json_t *predict; /* copy of the policy's predict, or NULL */
    bool refresh;
};

struct plan {
    struct wave *w;
    size_t n;
    json_t *untaint; /* [{"policy", "node", "key"}] */
};

static void plan_add(struct plan *pl, struct wave w)
{
    pl->w = pw_xrealloc(pl->w, (pl->n + 1) * sizeof *pl->w);
    pl->w[pl->n++] = w;
}

/* p's pending nodes that are eligible now; a wave of them once the oldest has waited coalesce_ms.
 * Failed nodes whose retry time came are pending again. */
static void plan_waves(pw_policy *pc, struct pol *p, int64_t now, struct plan *pl)
{
    int64_t real = pw_clock_real_ms();
    json_t *ready = json_array();
    int64_t oldest = now;
    const char *k;
    json_t *e;
    json_object_foreach(p->nodes, k, e) {
        if (state_is(e, "failed") && json_integer_value(json_object_get(e, "retry")) <= real)
            entry_set(e, "pending", NULL);
        if (!state_is(e, "pending"))
            continue;
        json_t *node = pc->env.node_get(pc->env.arg, k);
        if (node && pw_polspec_node_eligible(node)) {
            if (!json_object_get(e, "since"))
                json_object_set_new(e, "since", json_integer(now));
            int64_t since = json_integer_value(json_object_get(e, "since"));
            oldest = since < oldest ? since : oldest;
            json_t *labels = json_object_get(json_object_get(node, "metadata"), "labels");
            /* a copy: the predictor reads it with the lock released */
            json_array_append_new(ready, json_pack("{s:s, s:o}", "name", k, "labels",
                                                   labels ? json_deep_copy(labels) : json_null()));
        } else {
            json_object_del(e, "since");
        }
        json_decref(node);
    }
    if (json_array_size(ready) == 0 || now - oldest < pc->cfg.coalesce_ms) {
        json_decref(ready);
        return;
    }
    size_t i;
    json_t *r;
    json_array_foreach(ready, i, r) entry_set(json_object_get(p->nodes, json_string_value(json_object_get(r, "name"))),
                                              "inflight", "");
    p->dirty = true;
    plan_add(pl, (struct wave){pw_xstrdup(p->spec.name), ready, p->spec.predict ? json_deep_copy(p->spec.predict) : NULL,
                               false});
}

static void plan_refresh(struct pol *p, struct plan *pl)
{
    if (p->refresh_task)
        return;
    int64_t base = p->last_refresh_ms ? p->last_refresh_ms : p->created_ms;
    if (!pw_polspec_refresh_due(&p->spec, base, pw_clock_real_ms()))
        return;
    p->refresh_task = pw_xstrdup(""); /* planned: no second one meanwhile */
    plan_add(pl, (struct wave){pw_xstrdup(p->spec.name), NULL, NULL, true});
}

static void plan_untaint(struct pol *p, struct plan *pl)
{
    if (!p->spec.untaint)
        return;
    int64_t real = pw_clock_real_ms();
    const char *k;
    json_t *e;
    json_object_foreach(p->nodes, k, e) {
        json_t *due = json_object_get(e, "untaint");
        if (!due || !state_is(e, "warm") || json_integer_value(due) > real)
            continue;
        json_object_set_new(e, "untaint", json_integer(real + UNTAINT_RETRY_MS)); /* until it is done */
        json_array_append_new(pl->untaint, json_pack("{s:s, s:s, s:s}", "policy", p->spec.name, "node", k, "key",
                                                     p->spec.untaint));
    }
}

/* ---- acting (mu released) ---- */

/* The image sets of a wave's nodes: {"<images joined>": {"images": [...], "nodes": [names]}}. */
static json_t *group_by_images(pw_policy *pc, const struct pw_policy_predictor *pred, bool has_pred,
                               const struct wave *w, const json_t *static_images)
{
    json_t *groups = json_object();
    size_t i;
    json_t *n;
    json_array_foreach(w->nodes, i, n) {
        const char *name = json_string_value(json_object_get(n, "name"));
        json_t *predicted = NULL;
        if (w->predict && has_pred && pred->images_for_node)
            predicted = pred->images_for_node(pred->ud, w->predict, name, json_object_get(n, "labels"));
        pthread_mutex_lock(&pc->mu);
        struct pol *p = pw_policy_find(pc, w->policy, NULL);
        json_t *imgs = p ? pw_polspec_images(&p->spec, predicted, NULL) : json_incref((json_t *)static_images);
        pthread_mutex_unlock(&pc->mu);
        json_decref(predicted);
        char *key = json_dumps(imgs, JSON_COMPACT);
        json_t *g = json_object_get(groups, key);
        if (!g) {
            g = json_pack("{s:O, s:[]}", "images", imgs, "nodes");
            json_object_set_new(groups, key, g);
        }
        json_array_append_new(json_object_get(g, "nodes"), json_string(name));
        free(key);
        json_decref(imgs);
    }
    return groups;
}

/* Marks names (an array) of p with the task id (or, id NULL, failed: tried again later). */
static void wave_created(pw_policy *pc, const char *policy, const json_t *names, const char *id)
{
    pthread_mutex_lock(&pc->mu);
    struct pol *p = pw_policy_find(pc, policy, NULL);
    size_t i;
    const json_t *v;
    json_array_foreach(names, i, v) {
        json_t *e = p ? json_object_get(p->nodes, json_string_value(v)) : NULL;
        if (!e || !state_is(e, "inflight"))
            continue;
        if (id) {
            json_object_set_new(e, "task", json_string(id));
        } else {
            entry_set(e, "failed", NULL);
            json_object_set_new(e, "retry", json_integer(pw_clock_real_ms() + pc->cfg.retry_ms));
        }
    }
    if (p && id) {
        json_array_append_new(p->tasks, json_string(id));
        free(p->current_task);
        p->current_task = pw_xstrdup(id);
    }
    if (p)
        p->dirty = true;
    pthread_mutex_unlock(&pc->mu);
}

/* Builds (under mu, from the policy as it is now) and submits one task; its id (caller frees) or NULL. */
static char *submit_wave(pw_policy *pc, const char *policy, const json_t *images, const json_t *names, bool refresh)
{
    size_t n = json_array_size(names);
    char **v = pw_xcalloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (char *)json_string_value(json_array_get(names, i));
    struct pw_taskspec ts;
    char *why = NULL;
    pthread_mutex_lock(&pc->mu);
    struct pol *p = pw_policy_find(pc, policy, NULL);
    int rc = p ? pw_polspec_wave(&p->spec, images, v, n, refresh, &ts, &why) : PW_ENOTFOUND;
    pthread_mutex_unlock(&pc->mu);
    free(v);
    if (rc != 0) {
        if (rc != PW_ENOTFOUND)
            PW_WARN("policy %s: cannot make its task: %s", policy, why ? why : pw_strerror(rc));
        free(why);
        return NULL;
    }
    json_t *task = NULL;
    rc = pc->env.submit(pc->env.arg, &ts, &task);
    pw_taskspec_fini(&ts);
    if (rc != 0) {
        PW_WARN("policy %s: the task could not be created: %s", policy, pw_strerror(rc));
        return NULL;
    }
    char *id = pw_xstrdup(json_string_value(json_object_get(task, "id")));
    json_decref(task);
    PW_INFO("policy %s: %s task %s on %zu node(s)", policy, refresh ? "refresh" : "wave", id,
            refresh ? (size_t)0 : n);
    return id;
}

static void run_wave(pw_policy *pc, const struct pw_policy_predictor *pred, bool has_pred, struct wave *w)
{
    if (w->refresh) {
        pthread_mutex_lock(&pc->mu);
        struct pol *p = pw_policy_find(pc, w->policy, NULL);
        json_t *imgs = p ? pw_polspec_images(&p->spec, NULL, NULL) : NULL;
        pthread_mutex_unlock(&pc->mu);
        char *id = imgs ? submit_wave(pc, w->policy, imgs, NULL, true) : NULL;
        json_decref(imgs);
        pthread_mutex_lock(&pc->mu);
        p = pw_policy_find(pc, w->policy, NULL);
        if (p) {
            free(p->refresh_task);
            p->refresh_task = id; /* NULL on failure: tried again next round */
            if (id) {
                free(p->current_task);
                p->current_task = pw_xstrdup(id);
            }
            p->dirty = true;
        } else {
            free(id);
        }
        pthread_mutex_unlock(&pc->mu);
        return;
    }
    json_t *empty = json_array();
    json_t *groups = group_by_images(pc, pred, has_pred, w, empty);
    json_decref(empty);
    const char *k;
    json_t *g;
    json_object_foreach(groups, k, g) {
        json_t *imgs = json_object_get(g, "images");
        json_t *names = json_object_get(g, "nodes");
        if (json_array_size(imgs) == 0) {
            /* nothing to pull (a predict-only policy with no prediction for these nodes): warm */
            pthread_mutex_lock(&pc->mu);
            struct pol *p = pw_policy_find(pc, w->policy, NULL);
            size_t i;
            json_t *nm;
            json_array_foreach(names, i, nm) {
                json_t *e = p ? json_object_get(p->nodes, json_string_value(nm)) : NULL;
                if (e && state_is(e, "inflight"))
                    entry_set(e, "warm", NULL);
            }
            if (p)
                p->dirty = true;
            pthread_mutex_unlock(&pc->mu);
            continue;
        }
        char *id = submit_wave(pc, w->policy, imgs, names, false);
        wave_created(pc, w->policy, names, id);
        free(id);
    }
    json_decref(groups);
}

static void run_untaint(pw_policy *pc, const json_t *op)
{
    const char *policy = json_string_value(json_object_get(op, "policy"));
    const char *node = json_string_value(json_object_get(op, "node"));
    const char *key = json_string_value(json_object_get(op, "key"));
    char *why = NULL;
    int rc = pc->env.untaint(pc->env.arg, node, key, &why);
    if (rc != 0) {
        PW_WARN("policy %s: cannot remove taint %s from node %s: %s (trying again)", policy, key, node,
                why ? why : pw_strerror(rc));
        free(why);
        return;
    }
    PW_INFO("policy %s: node %s is warm: taint %s removed", policy, node, key);
    pthread_mutex_lock(&pc->mu);
    struct pol *p = pw_policy_find(pc, policy, NULL);
    json_t *e = p ? json_object_get(p->nodes, node) : NULL;
    if (e) {
        json_object_del(e, "untaint");
        json_object_set_new(e, "untainted", json_true());
        p->dirty = true;
    }
    pthread_mutex_unlock(&pc->mu);
}

/* A wave task that ended, or one reloaded after a restart: its finished nodes are applied; when it
 * ended, its nodes still inflight (never reported: not selected) fail and are tried again later. */
static void settle_task(pw_policy *pc, const char *task)
{
    json_t *t = NULL;
    int rc = pc->env.task_get(pc->env.arg, task, &t);
    bool ended = rc == PW_ENOTFOUND || (rc == 0 && pw_store_status_final(json_string_value(json_object_get(t, "status"))));
    json_decref(t);
    if (rc != 0 && rc != PW_ENOTFOUND)
        return; /* the store failed: the next settle tries again */
    json_t *nodes = NULL;
    if (rc == 0 && pc->env.task_nodes(pc->env.arg, task, &nodes) != 0)
        nodes = NULL;
    pthread_mutex_lock(&pc->mu);
    bool refresh = false;
    size_t slot = 0;
    struct pol *p = pol_of_task(pc, task, &refresh, &slot);
    if (p && refresh && ended) {
        free(p->refresh_task);
        p->refresh_task = NULL;
        p->last_refresh_ms = pw_clock_real_ms();
        p->dirty = true;
    } else if (p && !refresh) {
        size_t i;
        json_t *n;
        json_array_foreach(json_object_get(nodes, "items"), i, n) {
            const char *st = json_string_value(json_object_get(n, "state"));
            if (st && strcmp(st, "pending") != 0 && strcmp(st, "running") != 0)
                node_done(pc, p, task, json_string_value(json_object_get(n, "nodeName")), st);
        }
        if (ended) {
            const char *k;
            json_t *e;
            json_object_foreach(p->nodes, k, e) {
                const char *et = json_string_value(json_object_get(e, "task"));
                if (state_is(e, "inflight") && et && strcmp(et, task) == 0)
                    node_done(pc, p, task, k, "failed");
            }
            json_array_remove(p->tasks, slot);
        }
        p->dirty = true;
    }
    pthread_mutex_unlock(&pc->mu);
    json_decref(nodes);
}

/* Writes the progress of the policies that changed (at most once a second, or now when force). */
void pw_policy_write_progress(pw_policy *pc, int64_t now, bool force)
{
    if (!force && now < pc->next_write)
        return;
    pc->next_write = now + STATE_WRITE_EVERY_MS;
    pthread_mutex_lock(&pc->wmu);
    pthread_mutex_lock(&pc->mu);
    size_t n = 0;
    char **names = pw_xcalloc(pc->n ? pc->n : 1, sizeof *names);
    json_t **docs = pw_xcalloc(pc->n ? pc->n : 1, sizeof *docs);
    for (size_t i = 0; i < pc->n; i++) {
        struct pol *p = pc->v[i];
        if (!p->dirty)
            continue;
        p->dirty = false;
        names[n] = pw_xstrdup(p->spec.name);
        docs[n++] = state_record(p);
    }
    pthread_mutex_unlock(&pc->mu);
    for (size_t i = 0; i < n; i++) {
        int rc = pw_store_rec_put(pc->cfg.store, PW_POLICY_KIND_STATE, names[i], docs[i], PW_STORE_REC_UPSERT);
        if (rc != 0) {
            PW_WARN("policy %s: its progress could not be stored: %s (trying again)", names[i], pw_strerror(rc));
            pthread_mutex_lock(&pc->mu);
            struct pol *p = pw_policy_find(pc, names[i], NULL);
            if (p)
                p->dirty = true;
            pthread_mutex_unlock(&pc->mu);
        }
        free(names[i]);
        json_decref(docs[i]);
    }
    pthread_mutex_unlock(&pc->wmu);
    free(names);
    free(docs);
}

/* ---- the round ---- */

void pw_policy_tick(pw_policy *pc, int64_t now)
{
    if (!pc->env.nodes_synced(pc->env.arg))
        return; /* nothing is decided on a partial view of the nodes */
    pthread_mutex_lock(&pc->qmu);
    json_t *changed = pc->q_nodes, *done = pc->q_done;
    pc->q_nodes = json_object();
    pc->q_done = json_array();
    pthread_mutex_unlock(&pc->qmu);

    struct plan pl = {NULL, 0, json_array()};
    pthread_mutex_lock(&pc->mu);
    size_t i;
    json_t *ev;
    json_array_foreach(done, i, ev) apply_done(pc, ev);
    if (now >= pc->next_rescan) {
        for (size_t k = 0; k < pc->n; k++)
            pc->v[k]->rescan = true;
        pc->next_rescan = now + pc->cfg.rescan_ms;
    }
    rescan(pc); /* the policies marked rescan (new, updated, reloaded, or the period) */
    const char *name;
    json_t *dummy;
    json_object_foreach(changed, name, dummy) {
        json_t *node = pc->env.node_get(pc->env.arg, name);
        for (size_t k = 0; k < pc->n; k++)
            match_node(pc->v[k], name, node);
        json_decref(node);
    }
    for (size_t k = 0; k < pc->n; k++) {
        struct pol *p = pc->v[k];
        if (!p->spec.enabled)
            continue;
        plan_waves(pc, p, now, &pl);
        plan_refresh(p, &pl);
        plan_untaint(p, &pl);
    }
    struct pw_policy_predictor pred = pc->pred;
    bool has_pred = pc->has_pred;
    json_t *settle = pc->settle;
    pc->settle = json_array();
    pthread_mutex_unlock(&pc->mu);
    json_decref(changed);
    json_decref(done);

    for (size_t k = 0; k < pl.n; k++) {
        run_wave(pc, &pred, has_pred, &pl.w[k]);
        free(pl.w[k].policy);
        json_decref(pl.w[k].nodes);
        json_decref(pl.w[k].predict);
    }
    free(pl.w);
    json_array_foreach(pl.untaint, i, ev) run_untaint(pc, ev);
    json_decref(pl.untaint);
    json_array_foreach(settle, i, ev) settle_task(pc, json_string_value(ev));
    json_decref(settle);
    pw_policy_write_progress(pc, now, false);
}

void *pw_policy_loop(void *arg)
{
    pw_policy *pc = arg;
    pthread_mutex_lock(&pc->qmu);
    while (!pc->stopping) {
        pthread_mutex_unlock(&pc->qmu);
        pw_policy_tick(pc, pw_clock_mono_ms());
        /* unsynced (a follower, or nodes still listing): the round left the queues for later, so their
         * being non-empty is no reason to go again at once (a follower spun a core on them) */
        bool synced = pc->env.nodes_synced(pc->env.arg);
        pthread_mutex_lock(&pc->qmu);
        if (pc->stopping)
            break;
        struct timespec ts;
        pw_clock_deadline_ts(TICK_MS, &ts);
        if (!synced || (json_object_size(pc->q_nodes) == 0 && json_array_size(pc->q_done) == 0))
            pthread_cond_timedwait(&pc->qcond, &pc->qmu, &ts);
    }
    pthread_mutex_unlock(&pc->qmu);
    pw_policy_write_progress(pc, pw_clock_mono_ms(), true);
    return NULL;
}
