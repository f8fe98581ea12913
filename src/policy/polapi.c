/* polapi.c: the policy controller's life cycle (new, start: reload from the store, stop, free) and
 * the calls behind /api/v1/policies (policy.h). A create or update validates, writes the spec
 * record, then changes the controller's memory; the write is serialised by wmu, so "a name that
 * exists" is decided once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "policy/polint.h"
#include "store/store.h"

int pw_policy_new(const struct pw_policy_config *cfg, pw_policy **out)
{
    if (!cfg->store || (!cfg->engine && !cfg->env))
        return PW_EINVAL;
    pw_policy *pc = pw_xcalloc(1, sizeof *pc);
    pc->cfg = *cfg;
    if (!pc->cfg.coalesce_ms)
        pc->cfg.coalesce_ms = PW_POLICY_DEFAULT_COALESCE_MS;
    if (!pc->cfg.retry_ms)
        pc->cfg.retry_ms = PW_POLICY_DEFAULT_RETRY_MS;
    if (!pc->cfg.rescan_ms)
        pc->cfg.rescan_ms = PW_POLICY_DEFAULT_RESCAN_MS;
    if (cfg->env)
        pc->env = *cfg->env;
    else
        pw_policy_env_engine(pc, &pc->env);
    pc->cfg.env = NULL;
    pthread_mutex_init(&pc->wmu, NULL);
    pthread_mutex_init(&pc->mu, NULL);
    pthread_mutex_init(&pc->qmu, NULL);
    pthread_cond_init(&pc->qcond, NULL);
    pc->q_nodes = json_object();
    pc->q_done = json_array();
    pc->settle = json_array();
    *out = pc;
    return 0;
}

void pw_policy_set_predictor(pw_policy *pc, const struct pw_policy_predictor *pred)
{
    pthread_mutex_lock(&pc->mu);
    pc->has_pred = pred != NULL;
    pc->pred = pred ? *pred : (struct pw_policy_predictor){0};
    pthread_mutex_unlock(&pc->mu);
}

static struct pw_policy_predictor predictor_of(pw_policy *pc, bool *has)
{
    pthread_mutex_lock(&pc->mu);
    struct pw_policy_predictor p = pc->pred;
    *has = pc->has_pred;
    pthread_mutex_unlock(&pc->mu);
    return p;
}

static struct pol *pol_new(struct pw_polspec *spec, int64_t created_ms)
{
    struct pol *p = pw_xcalloc(1, sizeof *p);
    p->spec = *spec;
    memset(spec, 0, sizeof *spec);
    p->nodes = json_object();
    p->tasks = json_array();
    p->created_ms = p->updated_ms = created_ms;
    p->rescan = true;
    return p;
}

/* Adds p (under mu). */
static void pol_add(pw_policy *pc, struct pol *p)
{
    pc->v = pw_xrealloc(pc->v, (pc->n + 1) * sizeof *pc->v);
    pc->v[pc->n++] = p;
}

/* Reloads a progress record into p (under mu). */
static void state_load(pw_policy *pc, struct pol *p, const json_t *doc)
{
    const json_t *nodes = json_object_get(doc, "nodes");
    if (json_is_object(nodes)) {
        json_decref(p->nodes);
        p->nodes = json_deep_copy(nodes);
    }
    if (json_is_array(json_object_get(doc, "tasks"))) {
        json_decref(p->tasks);
        p->tasks = json_deep_copy(json_object_get(doc, "tasks"));
    }
    const char *rt = json_string_value(json_object_get(doc, "refreshTask"));
    p->refresh_task = rt && *rt ? pw_xstrdup(rt) : NULL;
    const char *ct = json_string_value(json_object_get(doc, "currentTask"));
    p->current_task = ct && *ct ? pw_xstrdup(ct) : NULL;
    p->last_refresh_ms = json_integer_value(json_object_get(doc, "lastRefreshMs"));
    /* the tasks in flight may have moved on while prewarmd was down: look at each */
    size_t i;
    json_t *t;
    json_array_foreach(p->tasks, i, t) json_array_append(pc->settle, t);
    if (p->refresh_task)
        json_array_append_new(pc->settle, json_string(p->refresh_task));
    /* a wave planned but never created (crash between the two) is planned again */
    const char *k;
    json_t *e;
    json_object_foreach(p->nodes, k, e) {
        const char *task = json_string_value(json_object_get(e, "task"));
        if (strcmp(json_string_value(json_object_get(e, "state")) ? json_string_value(json_object_get(e, "state")) : "",
                   "inflight") == 0 && (!task || !*task))
            json_object_set_new(e, "state", json_string("pending"));
    }
}

static int load(pw_policy *pc)
{
    struct pw_store_rec *specs = NULL, *states = NULL;
    size_t n = 0, ns = 0;
    char *next = NULL;
    int rc = pw_store_rec_list(pc->cfg.store, PW_POLICY_KIND_SPEC, 0, NULL, &specs, &n, &next);
    free(next);
    next = NULL;
    if (rc == 0)
        rc = pw_store_rec_list(pc->cfg.store, PW_POLICY_KIND_STATE, 0, NULL, &states, &ns, &next);
    free(next);
    if (rc != 0) {
        pw_store_recs_free(specs, n);
        return rc;
    }
    bool has = false;
    struct pw_policy_predictor pred = predictor_of(pc, &has);
    size_t loaded = 0;
    pthread_mutex_lock(&pc->mu);
    for (size_t i = 0; i < n; i++) {
        struct pw_polspec spec;
        struct pw_field_errors errs;
        if (pw_polspec_parse(json_object_get(specs[i].doc, "spec"), has ? &pred : NULL, &spec, &errs) != 0) {
            PW_ERROR("policy %s in the store does not validate (%s: %s): left alone", specs[i].key, errs.e[0].field,
                     errs.e[0].message);
            continue;
        }
        struct pol *p = pol_new(&spec, json_integer_value(json_object_get(specs[i].doc, "createdMs")));
        p->updated_ms = json_integer_value(json_object_get(specs[i].doc, "updatedMs"));
        for (size_t j = 0; j < ns; j++)
            if (strcmp(states[j].key, p->spec.name) == 0)
                state_load(pc, p, states[j].doc);
        pol_add(pc, p);
        loaded++;
    }
    pthread_mutex_unlock(&pc->mu);
    if (n)
        PW_INFO("policies: %zu of %zu reloaded from the store", loaded, n);
    pw_store_recs_free(specs, n);
    pw_store_recs_free(states, ns);
    return 0;
}

int pw_policy_start(pw_policy *pc)
{
    int rc = load(pc);
    if (rc != 0)
        return rc;
    if (pthread_create(&pc->th, NULL, pw_policy_loop, pc) != 0)
        return PW_ENOMEM;
    pc->started = true;
    return 0;
}

void pw_policy_stop(pw_policy *pc)
{
    if (!pc || !pc->started)
        return;
    pthread_mutex_lock(&pc->qmu);
    pc->stopping = true;
    pthread_cond_signal(&pc->qcond);
    pthread_mutex_unlock(&pc->qmu);
    pthread_join(pc->th, NULL);
    pc->started = false;
}

void pw_policy_free(pw_policy *pc)
{
    if (!pc)
        return;
    pw_policy_stop(pc);
    for (size_t i = 0; i < pc->n; i++)
        pw_policy_pol_free(pc->v[i]);
    free(pc->v);
    json_decref(pc->q_nodes);
    json_decref(pc->q_done);
    json_decref(pc->settle);
    pthread_cond_destroy(&pc->qcond);
    pthread_mutex_destroy(&pc->qmu);
    pthread_mutex_destroy(&pc->mu);
    pthread_mutex_destroy(&pc->wmu);
    free(pc);
}

/* ---- the API ---- */

static int parse(pw_policy *pc, const json_t *req, struct pw_polspec *spec, struct pw_field_errors *errs)
{
    bool has = false;
    struct pw_policy_predictor pred = predictor_of(pc, &has);
    return pw_polspec_parse(req, has ? &pred : NULL, spec, errs);
}

static void duplicate(struct pw_field_errors *errs, const char *name)
{
    errs->n = 0;
    pw_field_errors_add(errs, "name", "a policy named \"%s\" already exists (update it with PUT, or delete it first)",
                        name);
}

int pw_policy_create(pw_policy *pc, const json_t *req, struct pw_field_errors *errs, json_t **out)
{
    struct pw_polspec spec;
    if (parse(pc, req, &spec, errs) != 0)
        return PW_EINVAL;
    pthread_mutex_lock(&pc->wmu);
    pthread_mutex_lock(&pc->mu);
    bool exists = pw_policy_find(pc, spec.name, NULL) != NULL;
    pthread_mutex_unlock(&pc->mu);
    struct pol *p = exists ? NULL : pol_new(&spec, pw_clock_real_ms());
    int rc = PW_EEXIST;
    if (p) {
        json_t *rec = pw_policy_spec_record(p);
        rc = pw_store_rec_put(pc->cfg.store, PW_POLICY_KIND_SPEC, p->spec.name, rec, PW_STORE_REC_CREATE);
        json_decref(rec);
    }
    if (rc == PW_EEXIST) {
        duplicate(errs, p ? p->spec.name : spec.name);
        rc = PW_EINVAL;
    }
    if (rc != 0) {
        pthread_mutex_unlock(&pc->wmu);
        pw_policy_pol_free(p);
        pw_polspec_fini(&spec);
        return rc;
    }
    pthread_mutex_lock(&pc->mu);
    pol_add(pc, p);
    p->dirty = true;
    *out = pw_policy_pol_json(p);
    PW_INFO("policy %s created (%zu images, refresh every %llds)", p->spec.name, p->spec.n_images,
            (long long)(p->spec.refresh_ms / 1000));
    pthread_mutex_unlock(&pc->mu);
    pthread_mutex_unlock(&pc->wmu);
    pw_policy_wake(pc);
    return 0;
}

/* Whether the wave of a and b pulls the same images (same static images, same predict). */
static bool same_images(const struct pw_polspec *a, const struct pw_polspec *b)
{
    json_t *ia = json_object_get(a->doc, "images"), *ib = json_object_get(b->doc, "images");
    return json_equal(ia, ib) && ((!a->predict && !b->predict) || (a->predict && b->predict && json_equal(a->predict, b->predict)));
}

int pw_policy_update(pw_policy *pc, const char *name, const json_t *req, struct pw_field_errors *errs, json_t **out)
{
    json_t *body = json_is_object(req) ? json_deep_copy(req) : json_incref((json_t *)req);
    if (json_is_object(body) && !json_object_get(body, "name"))
        json_object_set_new(body, "name", json_string(name));
    struct pw_polspec spec;
    int rc = parse(pc, body, &spec, errs);
    json_decref(body);
    if (rc != 0)
        return PW_EINVAL;
    if (strcmp(spec.name, name) != 0) {
        errs->n = 0;
        pw_field_errors_add(errs, "name", "cannot change (the path names \"%s\"): create a policy of the new name", name);
        pw_polspec_fini(&spec);
        return PW_EINVAL;
    }
    pthread_mutex_lock(&pc->wmu);
    pthread_mutex_lock(&pc->mu);
    struct pol *p = pw_policy_find(pc, name, NULL);
    json_t *rec = NULL;
    if (p) {
        struct pol tmp = *p; /* the record as it will be */
        tmp.spec = spec;
        tmp.updated_ms = pw_clock_real_ms();
        rec = pw_policy_spec_record(&tmp);
    }
    pthread_mutex_unlock(&pc->mu);
    rc = rec ? pw_store_rec_put(pc->cfg.store, PW_POLICY_KIND_SPEC, name, rec, PW_STORE_REC_UPDATE) : PW_ENOTFOUND;
    json_decref(rec);
    if (rc != 0) {
        pthread_mutex_unlock(&pc->wmu);
        pw_polspec_fini(&spec);
        return rc;
    }
    pthread_mutex_lock(&pc->mu);
    p = pw_policy_find(pc, name, NULL); /* still there: deletes take wmu too */
    if (!same_images(&p->spec, &spec)) {
        /* warm for other images is not warm: every node gets a wave of the new ones */
        const char *k;
        json_t *e;
        json_object_foreach(p->nodes, k, e) json_object_set_new(e, "state", json_string("pending"));
    }
    pw_polspec_fini(&p->spec);
    p->spec = spec;
    p->updated_ms = pw_clock_real_ms();
    p->rescan = true;
    p->dirty = true;
    *out = pw_policy_pol_json(p);
    pthread_mutex_unlock(&pc->mu);
    pthread_mutex_unlock(&pc->wmu);
    PW_INFO("policy %s updated", name);
    pw_policy_wake(pc);
    return 0;
}

int pw_policy_get(pw_policy *pc, const char *name, json_t **out)
{
    pthread_mutex_lock(&pc->mu);
    struct pol *p = pw_policy_find(pc, name, NULL);
    if (p)
        *out = pw_policy_pol_json(p);
    pthread_mutex_unlock(&pc->mu);
    return p ? 0 : PW_ENOTFOUND;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "name")),
                  json_string_value(json_object_get(*(json_t *const *)b, "name")));
}

int pw_policy_list(pw_policy *pc, json_t **out)
{
    pthread_mutex_lock(&pc->mu);
    size_t n = pc->n;
    json_t **v = pw_xcalloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = pw_policy_pol_json(pc->v[i]);
    pthread_mutex_unlock(&pc->mu);
    qsort(v, n, sizeof *v, by_name);
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(items, v[i]);
    free(v);
    *out = json_pack("{s:o}", "items", items);
    return 0;
}

int pw_policy_delete(pw_policy *pc, const char *name)
{
    pthread_mutex_lock(&pc->wmu);
    pthread_mutex_lock(&pc->mu);
    bool exists = pw_policy_find(pc, name, NULL) != NULL;
    pthread_mutex_unlock(&pc->mu);
    int rc = exists ? pw_store_rec_delete(pc->cfg.store, PW_POLICY_KIND_SPEC, name) : PW_ENOTFOUND;
    if (rc == 0) {
        int src = pw_store_rec_delete(pc->cfg.store, PW_POLICY_KIND_STATE, name);
        if (src != 0 && src != PW_ENOTFOUND)
            PW_WARN("policy %s: its progress record stays in the store: %s", name, pw_strerror(src));
        pthread_mutex_lock(&pc->mu);
        size_t idx = 0;
        struct pol *p = pw_policy_find(pc, name, &idx);
        pc->v[idx] = pc->v[--pc->n];
        pw_policy_pol_free(p);
        pthread_mutex_unlock(&pc->mu);
        PW_INFO("policy %s deleted (its tasks in flight go on)", name);
    }
    pthread_mutex_unlock(&pc->wmu);
    return rc;
}
