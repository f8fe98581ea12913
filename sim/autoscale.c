/* autoscale.c: the autoscaler stand-in (autoscale.h): scheduled node additions in model time.
 *
 * Each entry is kept for GET with its state: "pending" (waiting for its time), "added" (the nodes
 * exist, NotReady until readyAfterSeconds passed), "ready", or "cancelled". Timers (kind SIM_T_SCALE)
 * carry "add:<id>" and "ready:<id>".
 *
 * Thread model: the handler takes world->lock; timers run on the world thread with it held. */
#include "sim/autoscale.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/labels.h"
#include "base/log.h"
#include "base/mem.h"
#include "sim/ctlbody.h"
#include "sim/world_int.h"

enum as_state { AS_PENDING, AS_ADDED, AS_READY, AS_CANCELLED };
static const char *const STATE_NAMES[] = {"pending", "added", "ready", "cancelled"};

struct as_entry {
    int id;
    char *pool, *pool_label;
    int count;
    double at, ready_after;
    json_t *opts;  /* for sim_world_add_nodes: labels, pool, arch, bandwidthMBps, taints */
    json_t *nodes; /* names, once added */
    enum as_state state;
    double added_at, ready_at; /* NAN until then */
};

struct as_state_all {
    struct as_entry **e;
    int n, cap;
    int next_id;
};

static struct as_state_all *ast(struct sim_world *w)
{
    if (!w->autoscale)
        w->autoscale = pw_xcalloc(1, sizeof(struct as_state_all));
    return w->autoscale;
}

static struct as_entry *find(struct as_state_all *s, int id)
{
    for (int i = 0; i < s->n; i++)
        if (s->e[i]->id == id)
            return s->e[i];
    return NULL;
}

static json_t *entry_json(const struct as_entry *e)
{
    json_t *o = json_pack("{s:i, s:s, s:s, s:i, s:f, s:f, s:O, s:O, s:s}", "id", e->id, "pool", e->pool, "poolLabel",
                          e->pool_label, "count", e->count, "at", e->at, "readyAfterSeconds", e->ready_after,
                          "startupTaints", json_object_get(e->opts, "taints"), "nodes", e->nodes, "state",
                          STATE_NAMES[e->state]);
    json_object_set_new(o, "addedAt", isnan(e->added_at) ? json_null() : json_real(e->added_at));
    json_object_set_new(o, "readyAt", isnan(e->ready_at) ? json_null() : json_real(e->ready_at));
    return o;
}

static void free_entry(struct as_entry *e)
{
    free(e->pool);
    free(e->pool_label);
    json_decref(e->opts);
    json_decref(e->nodes);
    free(e);
}

/* Validates one entry of a POST; NULL after replying 400. where: "" or "entries[i]." */
static struct as_entry *parse_entry(pw_http_req *req, const json_t *b, double now, const char *where)
{
    static const char *const FIELDS[] = {"pool",   "poolLabel", "count",          "at",     "after",
                                         "labels", "arch",      "bandwidthMBps",  "startupTaints",
                                         "readyAfterSeconds", NULL};
    if (!sim_ctl_known_fields(req, b, FIELDS, where))
        return NULL;
    const char *pool = json_string_value(json_object_get(b, "pool"));
    const char *plabel = json_object_get(b, "poolLabel") ? json_string_value(json_object_get(b, "poolLabel")) : "pool";
    char *why = NULL;
    if (!pool || pw_label_value_valid(pool, &why) != 0 || !*pool) {
        sim_ctl_error(req, 400, "%spool: required, a label value%s%s", where, why ? ": " : "", why ? why : "");
        free(why);
        return NULL;
    }
    if (!plabel || pw_label_key_valid(plabel, &why) != 0) {
        sim_ctl_error(req, 400, "%spoolLabel: must be a label key%s%s", where, why ? ": " : "", why ? why : "");
        free(why);
        return NULL;
    }
    double count, at, after, ready_after, bw;
    if (!sim_ctl_number(req, b, "count", 1, 10000, 1, where, &count) ||
        !sim_ctl_number(req, b, "at", 0, 1e9, NAN, where, &at) ||
        !sim_ctl_number(req, b, "after", 0, 1e9, NAN, where, &after) ||
        !sim_ctl_number(req, b, "readyAfterSeconds", 0, 1e6, 0, where, &ready_after) ||
        !sim_ctl_number(req, b, "bandwidthMBps", 0.001, 1e6, 0, where, &bw))
        return NULL;
    if (count != floor(count)) {
        sim_ctl_error(req, 400, "%scount: must be an integer", where);
        return NULL;
    }
    if (!isnan(at) && !isnan(after)) {
        sim_ctl_error(req, 400, "%sat: give at (model seconds since start) or after (from now), not both", where);
        return NULL;
    }
    const char *arch = json_string_value(json_object_get(b, "arch"));
    if (json_object_get(b, "arch") && (!arch || (strcmp(arch, "amd64") != 0 && strcmp(arch, "arm64") != 0))) {
        sim_ctl_error(req, 400, "%sarch: must be amd64 or arm64", where);
        return NULL;
    }
    json_t *labels = json_object_get(b, "labels");
    if (labels && !json_is_object(labels)) {
        sim_ctl_error(req, 400, "%slabels: must be an object of strings", where);
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(labels, k, v)
    {
        if (!json_is_string(v) || pw_label_key_valid(k, &why) != 0 ||
            pw_label_value_valid(json_string_value(v), &why) != 0) {
            sim_ctl_error(req, 400, "%slabels.%s: %s", where, k, why ? why : "must be a string");
            free(why);
            return NULL;
        }
    }
    json_t *taints = json_object_get(b, "startupTaints");
    if (taints && !json_is_array(taints)) {
        sim_ctl_error(req, 400, "%sstartupTaints: must be an array", where);
        return NULL;
    }
    json_t *clean = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(taints, i, t)
    {
        const char *tk = json_string_value(json_object_get(t, "key"));
        const char *te = json_string_value(json_object_get(t, "effect"));
        json_t *tv = json_object_get(t, "value");
        bool bad_effect = !te || (strcmp(te, "NoSchedule") != 0 && strcmp(te, "PreferNoSchedule") != 0 &&
                                  strcmp(te, "NoExecute") != 0);
        if (!json_is_object(t) || !tk || pw_label_key_valid(tk, &why) != 0 || bad_effect ||
            (tv && (!json_is_string(tv) || pw_label_value_valid(json_string_value(tv), &why) != 0))) {
            sim_ctl_error(req, 400,
                          "%sstartupTaints[%zu]: needs key (a label key), effect NoSchedule, PreferNoSchedule or "
                          "NoExecute, value (optional) a label value%s%s",
                          where, i, why ? ": " : "", why ? why : "");
            free(why);
            json_decref(clean);
            return NULL;
        }
        json_t *ct = json_pack("{s:s, s:s}", "key", tk, "effect", te);
        if (tv && *json_string_value(tv))
            json_object_set(ct, "value", tv);
        json_array_append_new(clean, ct);
    }
    struct as_entry *e = pw_xcalloc(1, sizeof *e);
    e->pool = pw_xstrdup(pool);
    e->pool_label = pw_xstrdup(plabel);
    e->count = (int)count;
    e->at = !isnan(at) ? at : now + (isnan(after) ? 0 : after);
    e->ready_after = ready_after;
    e->added_at = e->ready_at = NAN;
    e->nodes = json_array();
    json_t *l = labels ? json_deep_copy(labels) : json_object();
    json_object_set_new(l, plabel, json_string(pool));
    e->opts = json_pack("{s:o, s:s, s:o}", "labels", l, "pool", pool, "taints", clean);
    if (arch)
        json_object_set_new(e->opts, "arch", json_string(arch));
    if (bw > 0)
        json_object_set_new(e->opts, "bandwidthMBps", json_real(bw));
    return e;
}

static void timer_key(char *out, size_t n, const char *what, int id)
{
    snprintf(out, n, "%s:%d", what, id);
}

static void h_post(pw_http_req *req, void *arg)
{
    struct sim_world *w = arg;
    json_t *body = sim_ctl_body(req);
    if (!body)
        return;
    json_t *list = json_object_get(body, "entries");
    if (list && (!json_is_array(list) || json_object_size(body) != 1 || json_array_size(list) == 0)) {
        json_decref(body);
        sim_ctl_error(req, 400, "entries: must be a non-empty array of entries, alone in the body");
        return;
    }
    size_t n = list ? json_array_size(list) : 1;
    struct as_entry **made = pw_xcalloc(n + 1, sizeof *made);
    pthread_mutex_lock(&w->lock);
    double now = sim_world_now(w);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        char where[48] = "";
        if (list)
            snprintf(where, sizeof where, "entries[%zu].", i);
        json_t *one = list ? json_array_get(list, i) : body;
        if (!json_is_object(one)) {
            sim_ctl_error(req, 400, "%s: must be an object", where);
            ok = false;
            break;
        }
        made[i] = parse_entry(req, one, now, where);
        ok = made[i] != NULL;
    }
    json_t *out = NULL;
    if (ok) {
        struct as_state_all *s = ast(w);
        out = json_array();
        for (size_t i = 0; i < n; i++) {
            struct as_entry *e = made[i];
            e->id = ++s->next_id;
            if (s->n == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 16;
                s->e = pw_xrealloc(s->e, sizeof *s->e * (size_t)s->cap);
            }
            s->e[s->n++] = e;
            char key[32];
            timer_key(key, sizeof key, "add", e->id);
            sim_world_timer(w, e->at, SIM_T_SCALE, key);
            json_array_append_new(out, entry_json(e));
        }
        sim_world_kick(w);
    } else {
        for (size_t i = 0; i < n; i++)
            if (made[i])
                free_entry(made[i]);
    }
    pthread_mutex_unlock(&w->lock);
    free(made);
    json_decref(body);
    if (ok)
        pw_http_reply_json(req, 201, json_pack("{s:f, s:o}", "now", now, "entries", out));
}

static void h_get(pw_http_req *req, void *arg)
{
    struct sim_world *w = arg;
    json_t *arr = json_array();
    pthread_mutex_lock(&w->lock);
    struct as_state_all *s = ast(w);
    for (int i = 0; i < s->n; i++)
        json_array_append_new(arr, entry_json(s->e[i]));
    double now = sim_world_now(w);
    pthread_mutex_unlock(&w->lock);
    pw_http_reply_json(req, 200, json_pack("{s:f, s:o}", "now", now, "entries", arr));
}

static void h_delete(pw_http_req *req, void *arg)
{
    struct sim_world *w = arg;
    int cancelled = 0;
    pthread_mutex_lock(&w->lock);
    struct as_state_all *s = ast(w);
    for (int i = 0; i < s->n; i++)
        if (s->e[i]->state == AS_PENDING) {
            s->e[i]->state = AS_CANCELLED;
            cancelled++;
        }
    pthread_mutex_unlock(&w->lock);
    pw_http_reply_json(req, 200, json_pack("{s:i}", "cancelled", cancelled));
}

void sim_autoscale_route(pw_http_req *req, void *ctx)
{
    struct sim_world *w = ((struct sim *)ctx)->world;
    sim_ctl_methods(req, w, h_post, h_get, h_delete, "/sim/v1/nodes/schedule");
}

void sim_autoscale_timer(struct sim_world *w, const char *key)
{
    struct as_state_all *s = ast(w);
    const char *colon = strchr(key, ':');
    if (!colon)
        return;
    struct as_entry *e = find(s, atoi(colon + 1));
    if (!e)
        return;
    double now = sim_world_now(w);
    if (strncmp(key, "add:", 4) == 0 && e->state == AS_PENDING) {
        bool ready = e->ready_after <= 0;
        int rc = sim_world_add_nodes(w, e->count, e->opts, ready, e->nodes);
        if (rc != 0)
            PW_WARN("kubesim autoscale: entry %d: cannot add nodes: %s", e->id, pw_strerror(rc));
        e->added_at = now;
        e->state = ready ? AS_READY : AS_ADDED;
        if (ready) {
            e->ready_at = now;
        } else {
            char k[32];
            timer_key(k, sizeof k, "ready", e->id);
            sim_world_timer(w, now + e->ready_after, SIM_T_SCALE, k);
        }
    } else if (strncmp(key, "ready:", 6) == 0 && e->state == AS_ADDED) {
        size_t i;
        json_t *nm;
        json_array_foreach(e->nodes, i, nm)
        {
            struct sim_wnode *n = sim_world_node(w, json_string_value(nm));
            if (n && !n->gone && !n->ready)
                sim_world_set_ready(w, n, true);
        }
        e->ready_at = now;
        e->state = AS_READY;
    }
}

void sim_autoscale_fini(struct sim_world *w)
{
    struct as_state_all *s = w->autoscale;
    if (!s)
        return;
    for (int i = 0; i < s->n; i++)
        free_entry(s->e[i]);
    free(s->e);
    free(s);
    w->autoscale = NULL;
}
