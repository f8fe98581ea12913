/* polspec.c: a policy's spec: validation (through the task spec's parser for the task-like fields),
 * its JSON form, node matching and the task specs of its waves (polspec.h). */
#include "policy/polspec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "base/sv.h"
#include "engine/nodecache.h"

/* The fields a policy shares with a task: the policy's name for it, then the task's. */
static const struct {
    const char *policy, *task;
} task_fields[] = {
    {"images", "images"},
    {"nodeSelector", "nodeSelector"},
    {"labelSelector", "labelSelector"},
    {"mode", "mode"},
    {"batchSize", "batchSize"},
    {"pullSecrets", "imagePullSecrets"},
    {"timeoutSeconds", "timeoutSeconds"},
    {"retries", "retries"},
};
#define N_TASK_FIELDS (sizeof task_fields / sizeof task_fields[0])

/* The policy's own fields. */
static const char *const own_fields[] = {"name", "refreshInterval", "enabled", "untaintWhenDone", "predict"};
#define N_OWN_FIELDS (sizeof own_fields / sizeof own_fields[0])

static int task_field_of(const char *policy_name)
{
    for (size_t i = 0; i < N_TASK_FIELDS; i++)
        if (strcmp(task_fields[i].policy, policy_name) == 0)
            return (int)i;
    return -1;
}

static bool is_own_field(const char *k)
{
    for (size_t i = 0; i < N_OWN_FIELDS; i++)
        if (strcmp(own_fields[i], k) == 0)
            return true;
    return false;
}

/* Copies the task parser's failures into errs under the policy's field names
 * ("imagePullSecrets[0]" -> "pullSecrets[0]"). */
static void merge_task_errors(const struct pw_field_errors *te, struct pw_field_errors *errs)
{
    for (size_t i = 0; i < te->n; i++) {
        const char *f = te->e[i].field;
        const char *shown = f;
        char buf[160];
        for (size_t k = 0; k < N_TASK_FIELDS; k++) {
            size_t n = strlen(task_fields[k].task);
            if (strncmp(f, task_fields[k].task, n) == 0 && (f[n] == '\0' || f[n] == '[' || f[n] == '.')) {
                snprintf(buf, sizeof buf, "%s%s", task_fields[k].policy, f + n);
                shown = buf;
                break;
            }
        }
        pw_field_errors_add(errs, shown, "%s", te->e[i].message);
    }
}

static void check_name(const json_t *v, struct pw_polspec *s, struct pw_field_errors *errs)
{
    if (!json_is_string(v)) {
        pw_field_errors_add(errs, "name", "required: a string");
        return;
    }
    const char *n = json_string_value(v);
    if (!pw_dns1123_label(n)) {
        pw_field_errors_add(errs, "name", "must be a DNS-1123 label (lowercase alphanumerics and '-', starting and "
                                          "ending alphanumeric, at most 63)");
        return;
    }
    s->name = pw_xstrdup(n);
}

static void check_refresh(const json_t *v, struct pw_polspec *s, json_t *doc, struct pw_field_errors *errs)
{
    if (!json_is_string(v)) {
        pw_field_errors_add(errs, "refreshInterval", "must be a duration string such as \"24h\", \"90m\" or \"0\"");
        return;
    }
    long long ms = 0;
    if (pw_parse_duration_ms(json_string_value(v), &ms) != 0 || ms < 0) {
        pw_field_errors_add(errs, "refreshInterval", "invalid duration \"%s\" (e.g. \"24h\", \"90m\"; \"0\": never)",
                            json_string_value(v));
        return;
    }
    if (ms > 0 && ms < PW_POLSPEC_MIN_REFRESH_MS) {
        pw_field_errors_add(errs, "refreshInterval", "must be at least 1m (or \"0\": never), got \"%s\"",
                            json_string_value(v));
        return;
    }
    s->refresh_ms = ms;
    json_object_set(doc, "refreshInterval", (json_t *)v);
}

static void check_untaint(const json_t *v, struct pw_polspec *s, struct pw_field_errors *errs)
{
    if (!json_is_string(v)) {
        pw_field_errors_add(errs, "untaintWhenDone", "must be a taint key (a string)");
        return;
    }
    char *why = NULL;
    if (pw_label_key_valid(json_string_value(v), &why) != 0) {
        pw_field_errors_add(errs, "untaintWhenDone", "invalid taint key: %s", why ? why : "invalid");
        free(why);
        return;
    }
    s->untaint = pw_xstrdup(json_string_value(v));
}

static void check_predict(const json_t *v, const struct pw_policy_predictor *pred, struct pw_polspec *s,
                          struct pw_field_errors *errs)
{
    if (!json_is_object(v)) {
        pw_field_errors_add(errs, "predict", "must be an object");
        return;
    }
    if (!pred || !pred->check) {
        pw_field_errors_add(errs, "predict", "prediction is not enabled");
        return;
    }
    char *field = NULL, *msg = NULL;
    if (pred->check(pred->ud, v, &field, &msg) != 0) {
        pw_field_errors_add(errs, field ? field : "predict", "%s", msg ? msg : "invalid");
        free(field);
        free(msg);
        return;
    }
    free(field);
    free(msg);
    s->predict = json_deep_copy(v);
}

/* The policy's own fields of req into s and doc. */
static void own_fields_parse(const json_t *req, const struct pw_policy_predictor *pred, struct pw_polspec *s,
                             json_t *doc, struct pw_field_errors *errs)
{
    check_name(json_object_get(req, "name"), s, errs);
    const json_t *v = json_object_get(req, "refreshInterval");
    json_t *dflt = json_string(PW_POLSPEC_DEFAULT_REFRESH);
    check_refresh(v && !json_is_null(v) ? v : dflt, s, doc, errs);
    json_decref(dflt);
    v = json_object_get(req, "enabled");
    s->enabled = true;
    if (v && !json_is_null(v) && !json_is_boolean(v))
        pw_field_errors_add(errs, "enabled", "must be true or false");
    else if (json_is_false(v))
        s->enabled = false;
    json_object_set_new(doc, "enabled", json_boolean(s->enabled));
    v = json_object_get(req, "untaintWhenDone");
    if (v && !json_is_null(v)) {
        check_untaint(v, s, errs);
        if (s->untaint)
            json_object_set_new(doc, "untaintWhenDone", json_string(s->untaint));
    }
    v = json_object_get(req, "predict");
    if (v && !json_is_null(v)) {
        check_predict(v, pred, s, errs);
        if (s->predict)
            json_object_set(doc, "predict", s->predict);
    }
}

/* The task-like fields of req through pw_taskspec_parse; on success their values into s and doc. */
static void task_fields_parse(const json_t *req, struct pw_polspec *s, json_t *doc, struct pw_field_errors *errs)
{
    json_t *treq = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)req, k, v) {
        int i = task_field_of(k);
        if (i >= 0 && !json_is_null(v))
            json_object_set(treq, task_fields[i].task, v);
        else if (i < 0 && !is_own_field(k))
            pw_field_errors_add(errs, k, "unknown field");
    }
    /* a predict-only policy has no static images: the task parser's "required" is not for it */
    const json_t *imgs = json_object_get(treq, "images");
    bool predict = json_is_object(json_object_get(req, "predict"));
    bool no_images = !imgs || (json_is_array(imgs) && json_array_size(imgs) == 0);
    /* the task parser requires an image: for a predict-only policy a placeholder stands in while the
     * other fields are validated, and is dropped after */
    bool placeholder = no_images && predict;
    if (placeholder)
        json_object_set_new(treq, "images", json_pack("[s]", "placeholder.invalid/predict-only:0"));
    struct pw_taskspec ts;
    struct pw_field_errors te;
    if (pw_taskspec_parse(treq, &ts, &te) != 0) {
        if (no_images && !predict && te.n == 1 && strcmp(te.e[0].field, "images") == 0)
            pw_field_errors_add(errs, "images", "required: at least one image reference (or predict)");
        else
            merge_task_errors(&te, errs);
        json_decref(treq);
        return;
    }
    json_decref(treq);
    json_t *tj = pw_taskspec_to_json(&ts);
    for (size_t i = 0; i < N_TASK_FIELDS; i++) {
        json_t *tv = json_object_get(tj, task_fields[i].task);
        if (placeholder && i == 0)
            json_object_set_new(doc, task_fields[i].policy, json_array());
        else if (tv)
            json_object_set(doc, task_fields[i].policy, tv);
    }
    json_decref(tj);
    if (placeholder) {
        for (size_t i = 0; i < ts.n_images; i++) {
            free(ts.images[i]);
            pw_imageref_fini(&ts.refs[i]);
        }
        free(ts.images);
        ts.images = NULL;
        ts.n_images = 0;
    }
    s->images = ts.images;
    s->n_images = ts.n_images;
    ts.images = NULL;
    ts.n_images = 0;
    for (size_t i = 0; ts.refs && i < s->n_images; i++)
        pw_imageref_fini(&ts.refs[i]);
    free(ts.refs);
    ts.refs = NULL;
    s->node_selector = ts.node_selector;
    ts.node_selector = NULL;
    s->selector = ts.selector;
    ts.selector = NULL;
    pw_taskspec_fini(&ts);
}

int pw_polspec_parse(const json_t *req, const struct pw_policy_predictor *pred, struct pw_polspec *out,
                     struct pw_field_errors *errs)
{
    errs->n = 0;
    if (!json_is_object(req)) {
        pw_field_errors_add(errs, "body", "must be a JSON object");
        return PW_EINVAL;
    }
    struct pw_polspec s = {0};
    json_t *doc = json_object();
    own_fields_parse(req, pred, &s, doc, errs);
    task_fields_parse(req, &s, doc, errs);
    if (errs->n) {
        json_decref(doc);
        pw_polspec_fini(&s);
        return PW_EINVAL;
    }
    /* shown in a fixed order: the name, the task-like fields, the policy's own */
    json_t *shown = json_pack("{s:s}", "name", s.name);
    for (size_t i = 0; i < N_TASK_FIELDS; i++)
        if (json_object_get(doc, task_fields[i].policy))
            json_object_set(shown, task_fields[i].policy, json_object_get(doc, task_fields[i].policy));
    for (size_t i = 1; i < N_OWN_FIELDS; i++)
        if (json_object_get(doc, own_fields[i]))
            json_object_set(shown, own_fields[i], json_object_get(doc, own_fields[i]));
    json_decref(doc);
    s.doc = shown;
    *out = s;
    return 0;
}

void pw_polspec_fini(struct pw_polspec *s)
{
    if (!s)
        return;
    free(s->name);
    json_decref(s->doc);
    for (size_t i = 0; s->images && i < s->n_images; i++)
        free(s->images[i]);
    free(s->images);
    json_decref(s->node_selector);
    pw_labelsel_free(s->selector);
    free(s->untaint);
    json_decref(s->predict);
    memset(s, 0, sizeof *s);
}

bool pw_polspec_selects(const struct pw_polspec *s, const json_t *node)
{
    const json_t *labels = json_object_get(json_object_get(node, "metadata"), "labels");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)s->node_selector, k, v) {
        const char *have = json_string_value(json_object_get(labels, k));
        if (!have || strcmp(have, json_string_value(v)) != 0)
            return false;
    }
    return !s->selector || pw_labelsel_matches(s->selector, labels);
}

bool pw_polspec_node_eligible(const json_t *node)
{
    return pw_nodecache_ready(node) && !pw_nodecache_cordoned(node);
}

int pw_polspec_wave(const struct pw_polspec *s, const json_t *images, char *const *nodes, size_t n, bool refresh,
                    struct pw_taskspec *out, char **why)
{
    json_t *treq = json_object();
    for (size_t i = 0; i < N_TASK_FIELDS; i++) {
        json_t *v = json_object_get(s->doc, task_fields[i].policy);
        if (v && strcmp(task_fields[i].policy, "images") != 0)
            json_object_set(treq, task_fields[i].task, v);
    }
    json_object_set(treq, "images", (json_t *)images);
    if (refresh) {
        json_object_set_new(treq, "pullPolicy", json_string("Always"));
    } else {
        json_t *names = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(names, json_string(nodes[i]));
        json_object_set_new(treq, "nodeNames", names);
    }
    struct pw_field_errors te;
    int rc = pw_taskspec_parse(treq, out, &te);
    json_decref(treq);
    if (rc != 0) {
        if (why)
            *why = pw_xasprintf("%s: %s", te.e[0].field, te.e[0].message);
        return rc;
    }
    out->policy = pw_xstrdup(s->name);
    return 0;
}

#define MAX_WAVE_IMAGES 100 /* what a task takes */

enum added { ADDED, DUPLICATE, LEFT_OUT };

/* Appends ref to arr unless it is already there (norms: the normalised forms so far), invalid, or
 * arr is full. */
static enum added add_image(json_t *arr, json_t *norms, const char *ref)
{
    struct pw_imageref r;
    if (!ref || pw_imageref_parse(ref, &r, NULL) != 0)
        return LEFT_OUT;
    char *n = pw_imageref_normalized(&r);
    pw_imageref_fini(&r);
    enum added a = json_object_get(norms, n) ? DUPLICATE : json_array_size(arr) >= MAX_WAVE_IMAGES ? LEFT_OUT : ADDED;
    if (a == ADDED) {
        json_object_set_new(norms, n, json_true());
        json_array_append_new(arr, json_string(ref));
    }
    free(n);
    return a;
}

json_t *pw_polspec_images(const struct pw_polspec *s, const json_t *predicted, size_t *dropped)
{
    json_t *arr = json_array();
    json_t *norms = json_object();
    for (size_t i = 0; i < s->n_images; i++)
        add_image(arr, norms, s->images[i]);
    size_t left = 0;
    size_t i;
    const json_t *v;
    json_array_foreach(predicted, i, v)
        left += add_image(arr, norms, json_string_value(v)) == LEFT_OUT;
    json_decref(norms);
    if (dropped)
        *dropped = left;
    return arr;
}

bool pw_polspec_refresh_due(const struct pw_polspec *s, int64_t base_ms, int64_t now_ms)
{
    return s->refresh_ms > 0 && s->n_images > 0 && now_ms - base_ms >= s->refresh_ms;
}
