/* taskspec.c: the create request of ARCHITECTURE §3 as a validated struct: a field table drives
 * parsing (unknown fields rejected, each failure names its field), defaults are filled in, and the
 * spec converts back to the JSON the API shows and the store keeps. Also task ids. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "engine/taskspec.h"
#include "webhook/webhook.h"

#define MAX_IMAGES 100
#define MAX_NODE_NAMES 10000
#define MAX_SECRETS 32
#define MAX_LABELS 64

void pw_field_errors_add(struct pw_field_errors *errs, const char *field, const char *fmt, ...)
{
    if (errs->n >= PW_TASKSPEC_MAX_ERRORS)
        return;
    struct pw_field_error *e = &errs->e[errs->n++];
    snprintf(e->field, sizeof e->field, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

static bool get_int(const json_t *v, const char *field, long min, long max, int *out,
                    struct pw_field_errors *errs)
{
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d != floor(d)) {
            pw_field_errors_add(errs, field, "must be an integer");
            return false;
        }
        if (d < (double)min || d > (double)max) {
            pw_field_errors_add(errs, field, "must be between %ld and %ld", min, max);
            return false;
        }
        *out = (int)d;
        return true;
    }
    if (!json_is_integer(v)) {
        pw_field_errors_add(errs, field, "must be an integer");
        return false;
    }
    json_int_t i = json_integer_value(v);
    if (i < min || i > max) {
        pw_field_errors_add(errs, field, "must be between %ld and %ld", min, max);
        return false;
    }
    *out = (int)i;
    return true;
}

static bool get_bool(const json_t *v, const char *field, bool *out, struct pw_field_errors *errs)
{
    if (!json_is_boolean(v)) {
        pw_field_errors_add(errs, field, "must be a boolean");
        return false;
    }
    *out = json_is_true(v);
    return true;
}

/* A string that is one of choices (NULL-terminated); *out gets a copy. */
static bool get_enum(const json_t *v, const char *field, const char *const *choices, char **out,
                     struct pw_field_errors *errs)
{
    if (json_is_string(v))
        for (size_t i = 0; choices[i]; i++)
            if (strcmp(json_string_value(v), choices[i]) == 0) {
                free(*out);
                *out = pw_xstrdup(choices[i]);
                return true;
            }
    char list[256] = "";
    for (size_t i = 0; choices[i]; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, choices[i], sizeof list - strlen(list) - 1);
    }
    pw_field_errors_add(errs, field, "must be one of: %s", list);
    return false;
}

/* An array of strings with at most max entries, each accepted by check (may be NULL). */
static bool get_strings(const json_t *v, const char *field, size_t min, size_t max,
                        bool (*check)(const char *s, char **why), char ***out, size_t *n_out,
                        struct pw_field_errors *errs)
{
    if (!json_is_array(v)) {
        pw_field_errors_add(errs, field, "must be an array of strings");
        return false;
    }
    size_t n = json_array_size(v);
    if (n < min || n > max) {
        pw_field_errors_add(errs, field, "must have between %zu and %zu entries", min, max);
        return false;
    }
    bool ok = true;
    char **arr = pw_xcalloc(n + 1, sizeof *arr);
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_array_get(v, i);
        char f[128];
        snprintf(f, sizeof f, "%s[%zu]", field, i);
        char *why = NULL;
        if (!json_is_string(s)) {
            pw_field_errors_add(errs, f, "must be a string");
            ok = false;
        } else if (check && !check(json_string_value(s), &why)) {
            pw_field_errors_add(errs, f, "%s", why ? why : "invalid");
            ok = false;
        } else {
            for (size_t j = 0; j < i; j++)
                if (arr[j] && strcmp(arr[j], json_string_value(s)) == 0) {
                    pw_field_errors_add(errs, f, "duplicate of %s[%zu]", field, j);
                    ok = false;
                }
            if (ok)
                arr[i] = pw_xstrdup(json_string_value(s));
        }
        free(why);
    }
    if (!ok) {
        for (size_t i = 0; i < n; i++)
            free(arr[i]);
        free(arr);
        return false;
    }
    *out = arr;
    *n_out = n;
    return true;
}

/* A label map: an object of string values with valid keys and values. */
static bool get_labels(const json_t *v, const char *field, json_t **out, struct pw_field_errors *errs)
{
    if (!json_is_object(v)) {
        pw_field_errors_add(errs, field, "must be an object of strings");
        return false;
    }
    if (json_object_size(v) > MAX_LABELS) {
        pw_field_errors_add(errs, field, "must have at most %d entries", MAX_LABELS);
        return false;
    }
    bool ok = true;
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)v, k, val) {
        char f[128];
        snprintf(f, sizeof f, "%s.%s", field, k);
        char *why = NULL;
        if (pw_label_key_valid(k, &why) != 0) {
            pw_field_errors_add(errs, f, "invalid label key: %s", why ? why : "invalid");
            ok = false;
        } else if (!json_is_string(val)) {
            pw_field_errors_add(errs, f, "must be a string");
            ok = false;
        } else if (pw_label_value_valid(json_string_value(val), &why) != 0) {
            pw_field_errors_add(errs, f, "invalid label value: %s", why ? why : "invalid");
            ok = false;
        }
        free(why);
    }
    if (ok) {
        json_decref(*out);
        *out = json_deep_copy(v);
    }
    return ok;
}

static bool check_dns_subdomain(const char *s, char **why)
{
    if (pw_dns1123_subdomain(s))
        return true;
    *why = pw_xstrdup("must be a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.', at most 253)");
    return false;
}

/* ---- the field table ---- */

typedef void (*field_fn)(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs);

static void f_images(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    char **arr;
    size_t n;
    if (!get_strings(v, field, 1, MAX_IMAGES, NULL, &arr, &n, errs))
        return;
    /* each reference parsed once, kept in s->refs; distinct after normalisation: "nginx:1.27" and
     * "docker.io/library/nginx:1.27" are one image */
    struct pw_imageref *refs = pw_xcalloc(n, sizeof *refs);
    char **norm = pw_xcalloc(n, sizeof *norm);
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        char f[128];
        snprintf(f, sizeof f, "%s[%zu]", field, i);
        char *why = NULL;
        if (pw_imageref_parse(arr[i], &refs[i], &why) != 0) {
            pw_field_errors_add(errs, f, "%s", why ? why : "invalid reference format");
            free(why);
            ok = false;
            continue;
        }
        norm[i] = pw_imageref_normalized(&refs[i]);
        for (size_t j = 0; j < i; j++)
            if (norm[j] && strcmp(norm[i], norm[j]) == 0) {
                pw_field_errors_add(errs, f, "the same image as %s[%zu]", field, j);
                ok = false;
            }
    }
    for (size_t i = 0; i < n; i++)
        free(norm[i]);
    free(norm);
    if (!ok) {
        for (size_t i = 0; i < n; i++) {
            pw_imageref_fini(&refs[i]);
            free(arr[i]);
        }
        free(refs);
        free(arr);
        return;
    }
    s->images = arr;
    s->refs = refs;
    s->n_images = n;
}

static void f_batch_size(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    get_int(v, field, 1, 10000, &s->batch_size, errs);
}

static void f_strategy(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    static const char *const choices[] = {"rolling", "batch", NULL};
    get_enum(v, field, choices, &s->strategy, errs);
}

static void f_node_selector(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    get_labels(v, field, &s->node_selector, errs);
}

/* A label selector field: its text in *text and parsed form in *sel (the old ones freed). */
static void get_selector(const json_t *v, const char *field, char **text, pw_labelsel **sel_out,
                         struct pw_field_errors *errs)
{
    if (!json_is_string(v)) {
        pw_field_errors_add(errs, field, "must be a string");
        return;
    }
    pw_labelsel *sel = NULL;
    char *why = NULL;
    if (pw_labelsel_parse(json_string_value(v), &sel, &why) != 0) {
        pw_field_errors_add(errs, field, "%s", why ? why : "invalid label selector");
        free(why);
        return;
    }
    pw_labelsel_free(*sel_out);
    *sel_out = sel;
    free(*text);
    *text = pw_xstrdup(json_string_value(v));
}

static void f_label_selector(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    get_selector(v, field, &s->label_selector, &s->selector, errs);
}

static void f_cluster_selector(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    get_selector(v, field, &s->cluster_selector, &s->cluster_sel, errs);
}

static bool check_dns_label(const char *s, char **why)
{
    size_t n = strlen(s);
    bool ok = n >= 1 && n <= 63 && s[0] != '-' && s[n - 1] != '-';
    for (size_t i = 0; ok && i < n; i++)
        ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-';
    if (!ok)
        *why = pw_xstrdup("must be a cluster name (a DNS-1123 label: 1-63 lowercase alphanumerics and '-')");
    return ok;
}

static void f_clusters(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    get_strings(v, field, 1, 64, check_dns_label, &s->clusters, &s->n_clusters, errs);
}

static void f_node_names(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    if (get_strings(v, field, 0, MAX_NODE_NAMES, check_dns_subdomain, &s->node_names, &s->n_node_names, errs))
        s->has_node_names = true;
}

static void f_include_not_ready(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    get_bool(v, field, &s->include_not_ready, errs);
}

static void f_include_unschedulable(const json_t *v, const char *field, struct pw_taskspec *s,
                                    struct pw_field_errors *errs)
{
    get_bool(v, field, &s->include_unschedulable, errs);
}

static void f_pull_policy(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    static const char *const choices[] = {"IfNotPresent", "Always", "Never", NULL};
    get_enum(v, field, choices, &s->pull_policy, errs);
}

static void f_mode(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    static const char *const choices[] = {"auto", "job", "agent", NULL};
    get_enum(v, field, choices, &s->mode, errs);
}

static void f_pull_secrets(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    get_strings(v, field, 0, MAX_SECRETS, check_dns_subdomain, &s->pull_secrets, &s->n_pull_secrets, errs);
}

static void f_timeout(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    get_int(v, field, 1, 86400, &s->timeout_s, errs);
}

static void f_retries(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    get_int(v, field, 0, 10, &s->retries, errs);
}

static void f_threshold(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    if (!json_is_number(v)) {
        pw_field_errors_add(errs, field, "must be a number");
        return;
    }
    double d = json_number_value(v);
    if (!(d >= 0.0 && d <= 1.0)) {
        pw_field_errors_add(errs, field, "must be between 0 and 1");
        return;
    }
    s->success_threshold = d;
}

static void f_priority(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    get_int(v, field, -1000, 1000, &s->priority, errs);
}

static void f_labels(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    get_labels(v, field, &s->labels, errs);
}

/* One webhooks[i] entry: {url, events?, secretRef?}; the normalised copy (events filled in) or NULL. */
static json_t *webhook_entry(const json_t *v, const char *field, struct pw_field_errors *errs)
{
    if (!json_is_object(v)) {
        pw_field_errors_add(errs, field, "must be an object {\"url\": ..., \"events\": [...], \"secretRef\": ...}");
        return NULL;
    }
    size_t before = errs->n;
    char f[96];
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)v, k, val) {
        if (strcmp(k, "url") != 0 && strcmp(k, "events") != 0 && strcmp(k, "secretRef") != 0) {
            snprintf(f, sizeof f, "%s.%s", field, k);
            pw_field_errors_add(errs, f, "unknown field (url, events, secretRef)");
        }
    }
    snprintf(f, sizeof f, "%s.url", field);
    const json_t *url = json_object_get(v, "url");
    char *why = NULL;
    if (!json_is_string(url))
        pw_field_errors_add(errs, f, url ? "must be a string" : "required: an http:// or https:// URL");
    else if (pw_webhook_url_check(json_string_value(url), true, &why) != 0)
        pw_field_errors_add(errs, f, "%s", why);
    free(why);
    json_t *events = json_array();
    snprintf(f, sizeof f, "%s.events", field);
    const json_t *ev = json_object_get(v, "events");
    if (ev && !json_is_null(ev)) {
        char **names = NULL;
        size_t n = 0;
        if (get_strings(ev, f, 1, 4, NULL, &names, &n, errs)) {
            for (size_t i = 0; i < n; i++) {
                size_t c = 0;
                while (pw_webhook_event_names[c] && strcmp(pw_webhook_event_names[c], names[i]) != 0)
                    c++;
                char fi[128];
                snprintf(fi, sizeof fi, "%s[%zu]", f, i);
                if (!pw_webhook_event_names[c])
                    pw_field_errors_add(errs, fi, "unknown event \"%s\" (started, succeeded, failed, cancelled)",
                                        names[i]);
                else
                    json_array_append_new(events, json_string(names[i]));
                free(names[i]);
            }
            free(names);
        }
    } else {
        for (size_t c = 0; pw_webhook_event_names[c]; c++)
            json_array_append_new(events, json_string(pw_webhook_event_names[c]));
    }
    snprintf(f, sizeof f, "%s.secretRef", field);
    const json_t *ref = json_object_get(v, "secretRef");
    if (ref && !json_is_null(ref) && (!json_is_string(ref) || !pw_dns1123_subdomain(json_string_value(ref))))
        pw_field_errors_add(errs, f, "must be the name of a Secret (a DNS-1123 subdomain) whose data key "
                                     "\"secret\" holds the signing key");
    if (errs->n != before) {
        json_decref(events);
        return NULL;
    }
    json_t *o = json_pack("{s:O, s:o}", "url", url, "events", events);
    if (json_is_string(ref))
        json_object_set(o, "secretRef", (json_t *)ref);
    return o;
}

static void f_webhooks(const json_t *v, const char *field, struct pw_taskspec *s, struct pw_field_errors *errs)
{
    if (!json_is_array(v) || json_array_size(v) > PW_WEBHOOK_MAX_PER_TASK) {
        pw_field_errors_add(errs, field, "must be an array of at most %d webhooks", PW_WEBHOOK_MAX_PER_TASK);
        return;
    }
    json_t *out = json_array();
    bool ok = true;
    size_t i;
    const json_t *h;
    json_array_foreach(v, i, h) {
        char f[40];
        snprintf(f, sizeof f, "webhooks[%zu]", i);
        json_t *o = webhook_entry(h, f, errs);
        ok = ok && o;
        if (o)
            json_array_append_new(out, o);
    }
    if (!ok) {
        json_decref(out);
        return;
    }
    json_decref(s->webhooks);
    s->webhooks = out;
}

static const struct {
    const char *name;
    field_fn fn;
} field_table[] = {
    {"images", f_images},
    {"batchSize", f_batch_size},
    {"strategy", f_strategy},
    {"nodeSelector", f_node_selector},
    {"labelSelector", f_label_selector},
    {"nodeNames", f_node_names},
    {"clusters", f_clusters},
    {"clusterSelector", f_cluster_selector},
    {"includeNotReady", f_include_not_ready},
    {"includeUnschedulable", f_include_unschedulable},
    {"pullPolicy", f_pull_policy},
    {"mode", f_mode},
    {"imagePullSecrets", f_pull_secrets},
    {"timeoutSeconds", f_timeout},
    {"retries", f_retries},
    {"successThreshold", f_threshold},
    {"priority", f_priority},
    {"labels", f_labels},
    {"webhooks", f_webhooks},
};
#define N_FIELDS (sizeof field_table / sizeof field_table[0])

static void spec_defaults(struct pw_taskspec *s)
{
    memset(s, 0, sizeof *s);
    s->batch_size = 10;
    s->strategy = pw_xstrdup("rolling");
    s->pull_policy = pw_xstrdup("IfNotPresent");
    s->mode = pw_xstrdup("auto");
    s->timeout_s = 600;
    s->retries = 3;
    s->success_threshold = 0.9;
}

int pw_taskspec_parse(const json_t *req, struct pw_taskspec *out, struct pw_field_errors *errs)
{
    errs->n = 0;
    if (!json_is_object(req)) {
        pw_field_errors_add(errs, "body", "must be a JSON object");
        return PW_EINVAL;
    }
    struct pw_taskspec s;
    spec_defaults(&s);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)req, k, v) {
        size_t i = 0;
        while (i < N_FIELDS && strcmp(field_table[i].name, k) != 0)
            i++;
        if (i == N_FIELDS)
            pw_field_errors_add(errs, k, "unknown field");
        else if (!json_is_null(v))
            field_table[i].fn(v, k, &s, errs);
    }
    if (!s.images && errs->n == 0)
        pw_field_errors_add(errs, "images", "required: at least one image reference");
    if (errs->n) {
        pw_taskspec_fini(&s);
        return PW_EINVAL;
    }
    *out = s;
    return 0;
}

int pw_taskspec_from_task(const json_t *task, struct pw_taskspec *out, struct pw_field_errors *errs)
{
    json_t *req = json_object();
    for (size_t i = 0; i < N_FIELDS; i++) {
        json_t *v = json_object_get(task, field_table[i].name);
        if (v)
            json_object_set(req, field_table[i].name, v);
    }
    int rc = pw_taskspec_parse(req, out, errs);
    json_decref(req);
    const char *by = json_string_value(json_object_get(task, "createdBy"));
    if (rc == 0 && by)
        out->created_by = pw_xstrdup(by); /* not a request field: the API sets it, the store keeps it */
    const char *pol = json_string_value(json_object_get(task, "policy"));
    if (rc == 0 && pol)
        out->policy = pw_xstrdup(pol); /* likewise: set by the policy controller */
    return rc;
}

static void free_strings(char **a, size_t n)
{
    for (size_t i = 0; a && i < n; i++)
        free(a[i]);
    free(a);
}

void pw_taskspec_fini(struct pw_taskspec *s)
{
    if (!s)
        return;
    for (size_t i = 0; s->refs && i < s->n_images; i++)
        pw_imageref_fini(&s->refs[i]);
    free(s->refs);
    pw_labelsel_free(s->selector);
    pw_labelsel_free(s->cluster_sel);
    free(s->cluster_selector);
    free_strings(s->clusters, s->n_clusters);
    free_strings(s->images, s->n_images);
    free(s->strategy);
    json_decref(s->node_selector);
    free(s->label_selector);
    free_strings(s->node_names, s->n_node_names);
    free(s->pull_policy);
    free(s->mode);
    free_strings(s->pull_secrets, s->n_pull_secrets);
    json_decref(s->labels);
    json_decref(s->webhooks);
    free(s->created_by);
    free(s->policy);
    memset(s, 0, sizeof *s);
}

static json_t *strings_json(char *const *a, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_string(a[i]));
    return arr;
}

json_t *pw_taskspec_to_json(const struct pw_taskspec *s)
{
    json_t *o = json_object();
    json_object_set_new(o, "images", strings_json(s->images, s->n_images));
    json_object_set_new(o, "batchSize", json_integer(s->batch_size));
    json_object_set_new(o, "strategy", json_string(s->strategy));
    if (s->node_selector)
        json_object_set_new(o, "nodeSelector", json_deep_copy(s->node_selector));
    if (s->label_selector)
        json_object_set_new(o, "labelSelector", json_string(s->label_selector));
    if (s->has_node_names)
        json_object_set_new(o, "nodeNames", strings_json(s->node_names, s->n_node_names));
    if (s->clusters)
        json_object_set_new(o, "clusters", strings_json(s->clusters, s->n_clusters));
    if (s->cluster_selector)
        json_object_set_new(o, "clusterSelector", json_string(s->cluster_selector));
    json_object_set_new(o, "includeNotReady", json_boolean(s->include_not_ready));
    json_object_set_new(o, "includeUnschedulable", json_boolean(s->include_unschedulable));
    json_object_set_new(o, "pullPolicy", json_string(s->pull_policy));
    json_object_set_new(o, "mode", json_string(s->mode));
    if (s->n_pull_secrets)
        json_object_set_new(o, "imagePullSecrets", strings_json(s->pull_secrets, s->n_pull_secrets));
    json_object_set_new(o, "timeoutSeconds", json_integer(s->timeout_s));
    json_object_set_new(o, "retries", json_integer(s->retries));
    json_object_set_new(o, "successThreshold", json_real(s->success_threshold));
    json_object_set_new(o, "priority", json_integer(s->priority));
    if (s->labels)
        json_object_set_new(o, "labels", json_deep_copy(s->labels));
    if (s->webhooks)
        json_object_set_new(o, "webhooks", json_deep_copy(s->webhooks));
    return o;
}

static pthread_mutex_t id_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t id_last;

void pw_task_id_new(char *out)
{
    static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz"; /* Crockford, lowercase */
    uint64_t v = ((uint64_t)pw_clock_real_ms() & 0xffffffffffffULL) << 12;
    pthread_mutex_lock(&id_mu);
    if (v <= id_last)
        v = id_last + 1;
    id_last = v;
    pthread_mutex_unlock(&id_mu);
    out[0] = 't';
    out[1] = '-';
    for (int i = 0; i < 12; i++)
        out[2 + i] = alphabet[(v >> (5 * (11 - i))) & 31];
    out[14] = '\0';
}
