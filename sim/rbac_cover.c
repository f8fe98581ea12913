/* rbac_cover.c: RBAC escalation prevention's rule arithmetic (rbac.h), as kube-apiserver's
 * registry/rbac/validation does it: a requester may create or update a role, or bind one, only with
 * rules it holds itself. Covers breaks every rule of the servant down to atoms (one verb on one group
 * and resource and, when the rule names some, one resource name; or one verb on one non-resource
 * URL) and asks whether some owner rule covers each atom: its verbs hold the verb or a star, its
 * apiGroups the group or a star, its resources the resource, a star, or for "res/sub" star-slash-sub;
 * no resourceNames covers any name; its nonResourceURLs the URL, a star, or a prefix ending in a
 * star. The atoms not covered are compacted back (atoms differing only in the verb merged) for the
 * 403's message. */
#include "sim/rbac.h"
#include "sim/objutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/mem.h"

#define MSG_MAX (64u << 10)

static bool has(const json_t *list, const char *want)
{
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *s = json_string_value(v);
        if (s && strcmp(s, want) == 0)
            return true;
    }
    return false;
}

static bool has_or_star(const json_t *list, const char *want)
{
    return has(list, "*") || has(list, want);
}

/* resourceCoversAll for one resource. */
static bool resource_covers(const json_t *owner, const char *res)
{
    if (has_or_star(owner, res))
        return true;
    const char *slash = strchr(res, '/');
    if (!slash)
        return false;
    char *star = pw_xasprintf("*%s", slash);
    bool ok = has(owner, star);
    free(star);
    return ok;
}

static bool url_covers(const json_t *owner, const char *url)
{
    size_t i;
    const json_t *v;
    json_array_foreach(owner, i, v)
    {
        const char *o = json_string_value(v);
        if (!o)
            continue;
        size_t n = strlen(o);
        if (strcmp(o, url) == 0 || (n > 0 && o[n - 1] == '*' && strncmp(o, url, n - 1) == 0))
            return true;
    }
    return false;
}

/* One atom: exactly one verb, and either one group + resource (+ name) or one URL. */
struct atom {
    const char *verb, *group, *resource, *name, *url; /* NULL: absent */
};

static bool rule_covers(const json_t *rule, const struct atom *a)
{
    if (!has_or_star(json_object_get(rule, "verbs"), a->verb))
        return false;
    if (a->url)
        return url_covers(json_object_get(rule, "nonResourceURLs"), a->url);
    if (!has_or_star(json_object_get(rule, "apiGroups"), a->group) ||
        !resource_covers(json_object_get(rule, "resources"), a->resource))
        return false;
    const json_t *names = json_object_get(rule, "resourceNames");
    return json_array_size(names) == 0 || (a->name && has(names, a->name));
}

static bool covered(const json_t *owner, const struct atom *a)
{
    size_t i;
    const json_t *rule;
    json_array_foreach(owner, i, rule)
    {
        if (rule_covers(rule, a))
            return true;
    }
    return false;
}

static json_t *strs1(const char *s)
{
    return json_pack("[s]", s);
}

/* Adds the uncovered atom to out, merging it into a rule that differs only in verbs. */
static void add_uncovered(json_t *out, const struct atom *a)
{
    size_t i;
    json_t *r;
    json_array_foreach(out, i, r)
    {
        const json_t *g = json_object_get(r, "apiGroups"), *res = json_object_get(r, "resources");
        const json_t *n = json_object_get(r, "resourceNames"), *u = json_object_get(r, "nonResourceURLs");
        bool same = a->url ? u && has(u, a->url)
                           : !u && g && has(g, a->group) && res && has(res, a->resource) &&
                                 (a->name ? n && has(n, a->name) : !n);
        if (same) {
            if (!has(json_object_get(r, "verbs"), a->verb))
                json_array_append_new(json_object_get(r, "verbs"), json_string(a->verb));
            return;
        }
    }
    json_t *rule = json_object();
    if (a->url) {
        json_object_set_new(rule, "nonResourceURLs", strs1(a->url));
    } else {
        json_object_set_new(rule, "apiGroups", strs1(a->group));
        json_object_set_new(rule, "resources", strs1(a->resource));
        if (a->name)
            json_object_set_new(rule, "resourceNames", strs1(a->name));
    }
    json_object_set_new(rule, "verbs", strs1(a->verb));
    json_array_append_new(out, rule);
}

static const char *str_at(const json_t *list, size_t i)
{
    const char *s = json_string_value(json_array_get(list, i));
    return s ? s : "";
}

json_t *sim_rbac_uncovered(const json_t *owner, const json_t *servant)
{
    json_t *out = json_array();
    size_t i;
    const json_t *rule;
    json_array_foreach(servant, i, rule)
    {
        const json_t *verbs = json_object_get(rule, "verbs"), *groups = json_object_get(rule, "apiGroups");
        const json_t *res = json_object_get(rule, "resources"), *names = json_object_get(rule, "resourceNames");
        const json_t *urls = json_object_get(rule, "nonResourceURLs");
        size_t nn = json_array_size(names) ? json_array_size(names) : 1;
        for (size_t v = 0; v < json_array_size(verbs); v++) {
            for (size_t g = 0; g < json_array_size(groups); g++)
                for (size_t r = 0; r < json_array_size(res); r++)
                    for (size_t n = 0; n < nn; n++) {
                        struct atom a = {.verb = str_at(verbs, v), .group = str_at(groups, g),
                                         .resource = str_at(res, r),
                                         .name = json_array_size(names) ? str_at(names, n) : NULL};
                        if (!covered(owner, &a))
                            add_uncovered(out, &a);
                    }
            for (size_t u = 0; u < json_array_size(urls); u++) {
                struct atom a = {.verb = str_at(verbs, v), .url = str_at(urls, u)};
                if (!covered(owner, &a))
                    add_uncovered(out, &a);
            }
        }
    }
    return out;
}

/* Go's %q of a []string: ["a" "b"]. */
static void go_strings(pw_buf *b, const json_t *list)
{
    pw_buf_puts(b, "[");
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v)
    {
        if (i)
            pw_buf_puts(b, " ");
        sim_go_quote(b, json_string_value(v) ? json_string_value(v) : "");
    }
    pw_buf_puts(b, "]");
}

char *sim_rbac_escalation_message(const json_t *user, const json_t *uncovered, const char *errors)
{
    pw_buf b;
    pw_buf_init(&b, MSG_MAX);
    pw_buf_puts(&b, "user ");
    const char *name = json_string_value(json_object_get(user, "username"));
    sim_go_quote(&b, name ? name : "");
    pw_buf_puts(&b, " (groups=");
    go_strings(&b, json_object_get(user, "groups"));
    pw_buf_puts(&b, ") is attempting to grant RBAC permissions not currently held:");
    static const char *const FIELDS[][2] = {{"apiGroups", "APIGroups"},
                                            {"resources", "Resources"},
                                            {"nonResourceURLs", "NonResourceURLs"},
                                            {"resourceNames", "ResourceNames"},
                                            {"verbs", "Verbs"}};
    size_t i;
    const json_t *rule;
    json_array_foreach(uncovered, i, rule)
    {
        pw_buf_puts(&b, "\n{");
        bool first = true;
        for (size_t f = 0; f < sizeof FIELDS / sizeof FIELDS[0]; f++) {
            const json_t *list = json_object_get(rule, FIELDS[f][0]);
            if (json_array_size(list) == 0)
                continue;
            pw_buf_printf(&b, "%s%s:", first ? "" : ", ", FIELDS[f][1]);
            go_strings(&b, list);
            first = false;
        }
        pw_buf_puts(&b, "}");
    }
    if (errors && *errors)
        pw_buf_printf(&b, "; resolution errors: %s", errors);
    char *msg = pw_buf_steal(&b);
    pw_buf_fini(&b);
    return msg;
}
