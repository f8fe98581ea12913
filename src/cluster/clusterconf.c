/* clusterconf.c: cluster configuration from flags and the clusters file (clusterconf.h). */
#include "cluster/clusterconf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "k8s/k8s.h"

static int fail(char **errmsg, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char **errmsg, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = NULL;
    if (vasprintf(&m, fmt, ap) < 0)
        m = NULL;
    va_end(ap);
    if (errmsg)
        *errmsg = m;
    else
        free(m);
    return rc;
}

void pw_clusterdef_fini(struct pw_clusterdef *d)
{
    if (!d)
        return;
    free(d->name);
    free(d->kubeconfig);
    free(d->kubeconfig_data);
    free(d->context);
    json_decref(d->labels);
    memset(d, 0, sizeof *d);
}

void pw_clusterconf_fini(struct pw_clusterconf *c)
{
    for (size_t i = 0; i < c->n; i++)
        pw_clusterdef_fini(&c->v[i]);
    free(c->v);
    c->v = NULL;
    c->n = 0;
}

bool pw_clusterconf_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    bool ok = n >= 1 && n <= 63 && s[0] != '-' && s[n - 1] != '-';
    for (size_t i = 0; ok && i < n; i++)
        ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-';
    return ok;
}

#define NAME_RULE "a DNS-1123 label: 1-63 lowercase alphanumerics and '-', starting and ending alphanumeric"

int pw_clusterconf_parse_flag(const char *text, struct pw_clusterdef *out, char **errmsg)
{
    const char *eq = strchr(text, '=');
    if (!eq || eq == text || !eq[1])
        return fail(errmsg, PW_EINVAL, "--cluster \"%s\": want NAME=KUBECONFIG[#CONTEXT]", text);
    memset(out, 0, sizeof *out);
    out->name = pw_xstrndup(text, (size_t)(eq - text));
    if (!pw_clusterconf_name_ok(out->name)) {
        int rc = fail(errmsg, PW_EINVAL, "--cluster \"%s\": the name must be %s", text, NAME_RULE);
        pw_clusterdef_fini(out);
        return rc;
    }
    const char *hash = strchr(eq + 1, '#');
    out->kubeconfig = hash ? pw_xstrndup(eq + 1, (size_t)(hash - eq - 1)) : pw_xstrdup(eq + 1);
    if (hash && hash[1])
        out->context = pw_xstrdup(hash + 1);
    if (!*out->kubeconfig) {
        int rc = fail(errmsg, PW_EINVAL, "--cluster \"%s\": the kubeconfig path is empty", text);
        pw_clusterdef_fini(out);
        return rc;
    }
    out->labels = json_object();
    return 0;
}

int pw_clusterconf_add(struct pw_clusterconf *c, struct pw_clusterdef *d, char **errmsg)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].name, d->name) == 0) {
            int rc = fail(errmsg, PW_EINVAL, "cluster \"%s\" is configured twice (names must be unique)", d->name);
            pw_clusterdef_fini(d);
            return rc;
        }
    if (c->n >= PW_CLUSTERCONF_MAX) {
        pw_clusterdef_fini(d);
        return fail(errmsg, PW_EINVAL, "more than %d clusters", PW_CLUSTERCONF_MAX);
    }
    c->v = pw_xrealloc(c->v, (c->n + 1) * sizeof *c->v);
    c->v[c->n++] = *d;
    memset(d, 0, sizeof *d);
    return 0;
}

static bool label_part_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && ((i == 0 || i == n - 1) || (ch != '-' && ch != '_' && ch != '.' && ch != '/')))
            return false;
    }
    return true;
}

/* One entry of the file's clusters list into *d. */
static int entry_from_json(const json_t *e, size_t i, const char *what, struct pw_clusterdef *d, char **errmsg)
{
    memset(d, 0, sizeof *d);
    d->labels = json_object();
    if (!json_is_object(e))
        return fail(errmsg, PW_EINVAL, "%s: clusters[%zu]: must be a mapping", what, i);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)e, k, v) {
        const char *s = json_string_value(v);
        if (strcmp(k, "labels") == 0) {
            if (!json_is_object(v) && !json_is_null(v))
                return fail(errmsg, PW_EINVAL, "%s: clusters[%zu].labels: must be a mapping of strings", what, i);
            const char *lk;
            json_t *lv;
            json_object_foreach(v, lk, lv) {
                if (!json_is_string(lv) || !*lk || !label_part_ok(lk, 253) || !label_part_ok(json_string_value(lv), 63))
                    return fail(errmsg, PW_EINVAL, "%s: clusters[%zu].labels.%s: not a valid label", what, i, lk);
                json_object_set(d->labels, lk, lv);
            }
            continue;
        }
        if (strcmp(k, "qps") == 0 || strcmp(k, "burst") == 0 || strcmp(k, "maxNodesInFlight") == 0) {
            char *end = NULL;
            errno = 0;
            double x = s ? strtod(s, &end) : 0;
            if (!s || !*s || *end || errno || x <= 0 || x > 1e6 || (strcmp(k, "qps") != 0 && x != (double)(long)x))
                return fail(errmsg, PW_EINVAL, "%s: clusters[%zu].%s: must be a positive number%s", what, i, k,
                            strcmp(k, "qps") == 0 ? "" : " (an integer)");
            if (strcmp(k, "qps") == 0)
                d->qps = x;
            else if (strcmp(k, "burst") == 0)
                d->burst = (int)x;
            else
                d->max_in_flight = (int)x;
            continue;
        }
        char **slot = strcmp(k, "name") == 0             ? &d->name
                      : strcmp(k, "kubeconfig") == 0     ? &d->kubeconfig
                      : strcmp(k, "kubeconfigData") == 0 ? &d->kubeconfig_data
                      : strcmp(k, "context") == 0        ? &d->context
                                                         : NULL;
        if (!slot)
            return fail(errmsg, PW_EINVAL,
                        "%s: clusters[%zu].%s: unknown field (name, kubeconfig, kubeconfigData, context, labels, "
                        "qps, burst, maxNodesInFlight)", what, i, k);
        if (!s || !*s)
            return fail(errmsg, PW_EINVAL, "%s: clusters[%zu].%s: must be a non-empty string", what, i, k);
        *slot = pw_xstrdup(s);
    }
    if (!d->name)
        return fail(errmsg, PW_EINVAL, "%s: clusters[%zu]: name is required", what, i);
    if (!pw_clusterconf_name_ok(d->name))
        return fail(errmsg, PW_EINVAL, "%s: clusters[%zu].name \"%s\": must be %s", what, i, d->name, NAME_RULE);
    if (d->kubeconfig && d->kubeconfig_data)
        return fail(errmsg, PW_EINVAL, "%s: cluster %s: kubeconfig and kubeconfigData exclude each other", what,
                    d->name);
    if (!d->kubeconfig && !d->kubeconfig_data)
        return fail(errmsg, PW_EINVAL, "%s: cluster %s: kubeconfig (a path) or kubeconfigData is required", what,
                    d->name);
    return 0;
}

int pw_clusterconf_parse_yaml(const char *text, size_t len, const char *what, struct pw_clusterconf *out,
                              char **errmsg)
{
    json_t *doc = NULL;
    int rc = pw_k8s_yaml_to_json(text, len, what, &doc, errmsg);
    if (rc != 0)
        return rc;
    const json_t *list = json_object_get(doc, "clusters");
    const char *k;
    json_t *v;
    json_object_foreach(doc, k, v) {
        if (strcmp(k, "clusters") != 0) {
            fail(errmsg, PW_EINVAL, "%s: %s: unknown field (the file holds clusters: [...])", what, k);
            json_decref(doc);
            return PW_EINVAL;
        }
    }
    if (!json_is_array(list)) {
        json_decref(doc);
        return fail(errmsg, PW_EINVAL, "%s: clusters: required, a list of clusters", what);
    }
    struct pw_clusterconf c = {0};
    for (size_t i = 0; i < out->n; i++) { /* what came before (flags) counts for duplicates */
        struct pw_clusterdef d = {.name = out->v[i].name};
        c.v = pw_xrealloc(c.v, (c.n + 1) * sizeof *c.v);
        c.v[c.n++] = d;
    }
    size_t before = c.n;
    for (size_t i = 0; i < json_array_size(list) && rc == 0; i++) {
        struct pw_clusterdef d;
        rc = entry_from_json(json_array_get(list, i), i, what, &d, errmsg);
        if (rc != 0) {
            pw_clusterdef_fini(&d);
            break;
        }
        char *dup = NULL;
        rc = pw_clusterconf_add(&c, &d, &dup);
        if (rc != 0) {
            fail(errmsg, rc, "%s: %s", what, dup ? dup : "bad entry");
            free(dup);
        }
    }
    json_decref(doc);
    for (size_t i = 0; i < before; i++)
        c.v[i].name = NULL; /* borrowed */
    if (rc != 0) {
        pw_clusterconf_fini(&c);
        return rc;
    }
    for (size_t i = before; i < c.n; i++) {
        out->v = pw_xrealloc(out->v, (out->n + 1) * sizeof *out->v);
        out->v[out->n++] = c.v[i];
    }
    free(c.v);
    return 0;
}

int pw_clusterconf_load_file(const char *path, struct pw_clusterconf *out, char **errmsg)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(errmsg, PW_EIO, "clusters file %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (16u << 20)) {
                fclose(f);
                free(buf);
                return fail(errmsg, PW_EINVAL, "clusters file %s: larger than 16 MiB", path);
            }
            buf = pw_xrealloc(buf, cap);
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return fail(errmsg, PW_EIO, "clusters file %s: read error", path);
    }
    char *what = pw_xasprintf("clusters file %s", path);
    int rc = pw_clusterconf_parse_yaml(buf ? buf : "", len, what, out, errmsg);
    free(what);
    free(buf);
    return rc;
}

int pw_clusterconf_take_flags(int *argc, char **argv, struct pw_clusterconf *out, char **errmsg)
{
    int w = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *val = NULL;
        if (strcmp(a, "--") == 0) {
            while (i < *argc)
                argv[w++] = argv[i++];
            break;
        }
        if (strcmp(a, "--cluster") == 0) {
            if (i + 1 >= *argc)
                return fail(errmsg, PW_EINVAL, "--cluster needs a value NAME=KUBECONFIG[#CONTEXT]");
            val = argv[++i];
        } else if (strncmp(a, "--cluster=", 10) == 0) {
            val = a + 10;
        } else {
            argv[w++] = argv[i];
            continue;
        }
        struct pw_clusterdef d;
        int rc = pw_clusterconf_parse_flag(val, &d, errmsg);
        if (rc == 0)
            rc = pw_clusterconf_add(out, &d, errmsg);
        if (rc != 0)
            return rc;
    }
    *argc = w;
    argv[w] = NULL;
    return 0;
}

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

bool pw_clusterdef_same_connection(const struct pw_clusterdef *a, const struct pw_clusterdef *b)
{
    return str_eq(a->kubeconfig, b->kubeconfig) && str_eq(a->kubeconfig_data, b->kubeconfig_data) &&
           str_eq(a->context, b->context) && a->qps == b->qps && a->burst == b->burst;
}
