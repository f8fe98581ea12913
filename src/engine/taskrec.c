/* taskrec.c: task records and their JSON codec (taskrec.h). */
#include "engine/taskrec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/mem.h"
#include "engine/jobspec.h"
#include "engine/nodekey.h"

const char *const pw_taskrec_exec_names[N_EXEC] = {"job", "agent"};


void pw_taskrec_set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = src && *src ? pw_xstrdup(src) : NULL;
}

void pw_taskrec_time_json(json_t *o, const char *key, int64_t ms)
{
    if (!ms) {
        json_object_set_new(o, key, json_null());
        return;
    }
    char buf[PW_RFC3339_LEN];
    pw_time_rfc3339((time_t)(ms / 1000), buf);
    json_object_set_new(o, key, json_string(buf));
}

/* x rounded to 1/scale (ms for seconds), so the JSON shows 0.131, not 0.13099999725818634. */
static double round_to(double x, double scale)
{
    double y = x * scale;
    return (double)(int64_t)(y < 0 ? y - 0.5 : y + 0.5) / scale;
}

struct tnode *pw_taskrec_node_find(struct task *t, const char *name)
{
    size_t lo = 0, hi = t->n_nodes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->nodes[mid].name, name);
        if (c == 0)
            return &t->nodes[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void tnode_fini(struct tnode *n, size_t n_images)
{
    for (size_t i = 0; n->imgs && i < n_images; i++) {
        free(n->imgs[i].reason);
        free(n->imgs[i].message);
    }
    free(n->imgs);
    free(n->name);
    free(n->reason);
    free(n->message);
}

void pw_taskrec_free(struct task *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_nodes; i++)
        tnode_fini(&t->nodes[i], t->spec.n_images);
    free(t->nodes);
    free(t->dirty_idx);
    pw_taskspec_fini(&t->spec);
    json_decref(t->failed);
    free(t->message);
    free(t->note);
    for (size_t i = 0; i < t->n_cl; i++) {
        free(t->cl[i].name);
        free(t->cl[i].failed);
    }
    free(t->cl);
    free(t);
}

size_t pw_taskrec_cluster(struct task *t, const char *name)
{
    for (size_t i = 0; i < t->n_cl; i++)
        if (strcmp(t->cl[i].name, name) == 0)
            return i;
    if (t->n_cl >= PW_TASKREC_MAX_CLUSTERS - 1)
        return t->n_cl - 1;
    t->cl = pw_xrealloc(t->cl, (t->n_cl + 1) * sizeof *t->cl);
    struct tcluster *c = &t->cl[t->n_cl];
    memset(c, 0, sizeof *c);
    c->name = pw_xstrdup(name);
    c->sched = t->sched;
    c->sched.running = false;
    c->sched.batch_left = 0;
    c->sched.batch_started = false;
    c->sched.pause_until_ms = 0;
    return t->n_cl++;
}

static json_t *counts_json(json_t *p, const struct pw_outcome_counts *c)
{
    json_object_set_new(p, "totalNodes", json_integer((json_int_t)c->total));
    json_object_set_new(p, "pendingNodes", json_integer((json_int_t)c->pending));
    json_object_set_new(p, "runningNodes", json_integer((json_int_t)c->running));
    json_object_set_new(p, "succeededNodes", json_integer((json_int_t)c->succeeded));
    json_object_set_new(p, "failedNodes", json_integer((json_int_t)c->failed));
    json_object_set_new(p, "skippedNodes", json_integer((json_int_t)c->skipped));
    json_object_set_new(p, "cancelledNodes", json_integer((json_int_t)c->cancelled));
    return p;
}

/* progress.clusters[]: one entry per cluster the task spans (absent when that is the default cluster
 * alone, as before clusters existed). */
static json_t *clusters_json(const struct task *t)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < t->n_cl; i++) {
        const struct tcluster *c = &t->cl[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(c->name));
        counts_json(o, &c->counts);
        const char *state;
        if (c->failed)
            state = "failed";
        else if (t->status == PW_TASK_CANCELLED)
            state = "cancelled";
        else if (!t->selected || t->status == PW_TASK_PENDING)
            state = "pending";
        else if (!pw_outcome_done(&c->counts))
            state = "running";
        else
            state = pw_task_status_names[pw_outcome_status(&c->counts, t->spec.success_threshold)];
        json_object_set_new(o, "state", json_string(state));
        if (c->failed)
            json_object_set_new(o, "message", json_string(c->failed));
        json_array_append_new(arr, o);
    }
    return arr;
}

size_t *pw_taskrec_count_slot(struct pw_outcome_counts *c, enum pw_node_state s)
{
    size_t *slots[] = {&c->pending, &c->running, &c->succeeded, &c->failed, &c->skipped, &c->cancelled};
    return slots[s];
}

/* Notes that node n of t changed and must be written (each store write visits only these). */
void pw_taskrec_mark_dirty(struct task *t, struct tnode *n)
{
    if (n->dirty)
        return;
    n->dirty = true;
    if (t->n_dirty == t->cap_dirty) {
        t->cap_dirty = t->cap_dirty ? t->cap_dirty * 2 : 64;
        t->dirty_idx = pw_xrealloc(t->dirty_idx, t->cap_dirty * sizeof *t->dirty_idx);
    }
    t->dirty_idx[t->n_dirty++] = (size_t)(n - t->nodes);
}

/* Moves node n to state s, keeping the task's counts. */
void pw_taskrec_set_state(struct task *t, struct tnode *n, enum pw_node_state s)
{
    (*pw_taskrec_count_slot(&t->counts, n->state))--;
    (*pw_taskrec_count_slot(&t->counts, s))++;
    if (n->cl < t->n_cl) {
        (*pw_taskrec_count_slot(&t->cl[n->cl].counts, n->state))--;
        (*pw_taskrec_count_slot(&t->cl[n->cl].counts, s))++;
    }
    n->state = s;
    pw_taskrec_mark_dirty(t, n);
    t->dirty = true;
}

json_t *pw_taskrec_task_json(const struct task *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(t->id));
    json_object_set_new(o, "status", json_string(pw_task_status_names[t->status]));
    json_t *spec = pw_taskspec_to_json(&t->spec);
    json_object_update(o, spec);
    json_decref(spec);
    if (t->spec.created_by)
        json_object_set_new(o, "createdBy", json_string(t->spec.created_by));
    if (t->spec.policy)
        json_object_set_new(o, "policy", json_string(t->spec.policy));
    const struct pw_outcome_counts *c = &t->counts;
    json_t *p = counts_json(json_object(), c);
    json_object_set_new(p, "percentage", json_real(t->selected ? round_to(pw_outcome_percentage(c), 100) : 0.0));
    if (t->n_cl > 1 || (t->n_cl == 1 && strcmp(t->cl[0].name, PW_CLUSTER_DEFAULT) != 0))
        json_object_set_new(p, "clusters", clusters_json(t));
    json_object_set_new(o, "progress", p);
    /* a copy: the document is written and published after the engine lock is released */
    json_object_set_new(o, "failedNodes", json_deep_copy(t->failed));
    json_object_set_new(o, "message", json_string(t->message ? t->message : ""));
    pw_taskrec_time_json(o, "createdAt", t->created_ms);
    pw_taskrec_time_json(o, "startedAt", t->started_ms);
    pw_taskrec_time_json(o, "finishedAt", t->finished_ms);
    return o;
}

json_t *pw_taskrec_node_json(const struct task *t, const struct tnode *n)
{
    json_t *o = json_object();
    json_object_set_new(o, "nodeName", json_string(pw_nodekey_node(n->name)));
    if (n->cl < t->n_cl && strcmp(t->cl[n->cl].name, PW_CLUSTER_DEFAULT) != 0)
        json_object_set_new(o, "cluster", json_string(t->cl[n->cl].name));
    json_object_set_new(o, "state", json_string(pw_node_state_names[n->state]));
    json_object_set_new(o, "reason", json_string(n->reason ? n->reason : ""));
    json_object_set_new(o, "message", json_string(n->message ? n->message : ""));
    json_object_set_new(o, "attempts", json_integer(n->attempts));
    if (n->exec)
        json_object_set_new(o, "mode", json_string(pw_taskrec_exec_names[n->exec - 1]));
    pw_taskrec_time_json(o, "startedAt", n->started_ms);
    pw_taskrec_time_json(o, "finishedAt", n->finished_ms);
    json_t *imgs = json_array();
    for (size_t i = 0; i < t->spec.n_images; i++) {
        const struct img_res *r = &n->imgs[i];
        json_t *io = json_object();
        json_object_set_new(io, "image", json_string(t->spec.images[i]));
        json_object_set_new(io, "state", json_string(pw_node_state_names[r->state]));
        json_object_set_new(io, "reason", json_string(r->reason ? r->reason : ""));
        json_object_set_new(io, "message", json_string(r->message ? r->message : ""));
        json_object_set_new(io, "attempts", json_integer(r->attempts));
        json_object_set_new(io, "durationSeconds", json_real(round_to((double)r->duration_s, 1000)));
        json_array_append_new(imgs, io);
    }
    json_object_set_new(o, "images", imgs);
    return o;
}

void pw_taskrec_store_record(const struct task *t, struct pw_store_task *rec, json_t *doc)
{
    rec->id = (char *)t->id;
    rec->status = (char *)pw_task_status_names[t->status];
    rec->priority = t->spec.priority;
    rec->created_ms = t->created_ms;
    rec->finished_ms = t->finished_ms;
    rec->doc = doc;
}

/* The hint row of outcome.c for a pull failure's class (the kubelet's reason word stays). */
const char *pw_taskrec_hint(unsigned char cls)
{
    static const char *const rows[] = {[PW_PULL_FAILED_NOTFOUND] = "ImageNotFound",
                                       [PW_PULL_FAILED_AUTH] = "ImagePullUnauthorized"};
    return cls < sizeof rows / sizeof rows[0] ? rows[cls] : NULL;
}

/* The class of the failure of image (one of t's references, or a ", "-joined list, or NULL). */
unsigned char pw_taskrec_failure_class(const struct task *t, const struct tnode *n, const char *image)
{
    for (size_t i = 0; image && i < t->spec.n_images; i++)
        if (strcmp(t->spec.images[i], image) == 0)
            return n->imgs[i].cls;
    return PW_PULL_WAITING;
}

/* The task image index behind the executor's image j (its work lists only the images not skipped). */
size_t pw_taskrec_work_index(const struct task *t, const struct tnode *n, size_t j)
{
    for (size_t i = 0; i < t->spec.n_images; i++) {
        if (n->imgs[i].state == PW_NODE_SKIPPED)
            continue;
        if (j-- == 0)
            return i;
    }
    return t->spec.n_images;
}

size_t pw_taskrec_work_count(const struct task *t, const struct tnode *n)
{
    size_t k = 0;
    for (size_t i = 0; i < t->spec.n_images; i++)
        k += n->imgs[i].state != PW_NODE_SKIPPED;
    return k;
}

/* ---- reading records back from the store ---- */

int64_t pw_taskrec_time_ms(const json_t *v)
{
    time_t t;
    if (!json_is_string(v) || pw_time_parse_rfc3339(json_string_value(v), &t) != 0)
        return 0;
    return (int64_t)t * 1000;
}

static enum pw_node_state state_of(const char *s)
{
    int v = pw_node_state_of(s);
    return v < 0 ? PW_NODE_PENDING : (enum pw_node_state)v;
}

const char *pw_taskrec_str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s && *s ? s : NULL;
}

/* Fills n from a stored node result of t. */
static void tnode_from_doc(const struct task *t, const json_t *doc, struct tnode *n)
{
    memset(n, 0, sizeof *n);
    n->name = pw_nodekey_make(pw_taskrec_str(doc, "cluster"), json_string_value(json_object_get(doc, "nodeName")));
    n->state = state_of(json_string_value(json_object_get(doc, "state")));
    pw_taskrec_set_str(&n->reason, pw_taskrec_str(doc, "reason"));
    pw_taskrec_set_str(&n->message, pw_taskrec_str(doc, "message"));
    n->attempts = (int)json_integer_value(json_object_get(doc, "attempts"));
    const char *mode = json_string_value(json_object_get(doc, "mode"));
    for (int k = 0; k < N_EXEC; k++)
        if (mode && strcmp(mode, pw_taskrec_exec_names[k]) == 0)
            n->exec = (unsigned char)(k + 1);
    if (!n->exec && n->state == PW_NODE_RUNNING)
        n->exec = EXEC_JOB + 1; /* stored before modes existed: a Job */
    n->started_ms = pw_taskrec_time_ms(json_object_get(doc, "startedAt"));
    n->finished_ms = pw_taskrec_time_ms(json_object_get(doc, "finishedAt"));
    int64_t age = n->started_ms ? pw_clock_real_ms() - n->started_ms : 0;
    n->started_mono = pw_clock_mono_ms() - (age > 0 ? age : 0);
    n->imgs = pw_xcalloc(t->spec.n_images, sizeof *n->imgs);
    const json_t *imgs = json_object_get(doc, "images");
    for (size_t i = 0; i < t->spec.n_images; i++) {
        const json_t *im = json_array_get(imgs, i);
        struct img_res *r = &n->imgs[i];
        r->state = (unsigned char)state_of(json_string_value(json_object_get(im, "state")));
        r->attempts = (unsigned char)json_integer_value(json_object_get(im, "attempts"));
        pw_taskrec_set_str(&r->reason, pw_taskrec_str(im, "reason"));
        pw_taskrec_set_str(&r->message, pw_taskrec_str(im, "message"));
        r->duration_s = (float)json_number_value(json_object_get(im, "durationSeconds"));
    }
}

int pw_taskrec_node_cmp(const void *a, const void *b)
{
    return strcmp(((const struct tnode *)a)->name, ((const struct tnode *)b)->name);
}

/* Reloads the node results of a running task t (sorted by name, as the store lists them). */
int pw_taskrec_load_nodes(pw_store *store, struct task *t)
{
    struct pw_store_node *items = NULL;
    size_t n = 0;
    char *next = NULL;
    int rc = pw_store_nodes_list(store, t->id, NULL, 0, NULL, &items, &n, &next);
    free(next);
    if (rc != 0)
        return rc;
    t->nodes = pw_xcalloc(n ? n : 1, sizeof *t->nodes);
    t->n_nodes = n;
    memset(&t->counts, 0, sizeof t->counts);
    t->counts.total = n;
    for (size_t i = 0; i < n; i++) {
        struct tnode *tn = &t->nodes[i];
        tnode_from_doc(t, items[i].doc, tn);
        (*pw_taskrec_count_slot(&t->counts, tn->state))++;
        char cl[128];
        pw_nodekey_cluster(tn->name, cl, sizeof cl);
        tn->cl = (unsigned char)pw_taskrec_cluster(t, cl);
        t->cl[tn->cl].counts.total++;
        (*pw_taskrec_count_slot(&t->cl[tn->cl].counts, tn->state))++;
        if (tn->state == PW_NODE_FAILED) {
            /* the image at fault and its class (for the hint) as the stored result tells them */
            const char *img = NULL;
            for (size_t k = 0; k < t->spec.n_images && !img; k++) {
                struct img_res *r = &tn->imgs[k];
                if (r->state == PW_NODE_FAILED && r->reason &&
                    (strcmp(r->reason, "ErrImagePull") == 0 || strcmp(r->reason, "ImagePullBackOff") == 0)) {
                    r->cls = (unsigned char)pw_jobspec_classify_message(r->message);
                    img = t->spec.images[k];
                }
            }
            pw_outcome_add_failure_hint(&t->reasons, tn->reason, pw_taskrec_hint(pw_taskrec_failure_class(t, tn, img)), tn->name,
                                        img, tn->message);
        }
    }
    pw_store_nodes_free(items, n);
    if (n > 1)
        qsort(t->nodes, n, sizeof *t->nodes, pw_taskrec_node_cmp);
    t->selected = true;
    return 0;
}
