/* api_patch.c: the three patch formats of the Kubernetes API: JSON merge patch (RFC 7386), strategic
 * merge patch (lists merged by their patchMergeKey for the fields kubectl and controllers touch, with
 * the $patch, $retainKeys, $deleteFromPrimitiveList and $setElementOrder directives), and JSON patch
 * (RFC 6902). Pure functions on JSON values; never touch the store. */
#include "sim/api_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"

/* ---- RFC 7386 ---- */

json_t *sim_api_merge_patch(const json_t *target, const json_t *patch)
{
    if (!json_is_object(patch))
        return json_deep_copy(patch);
    json_t *out = json_is_object(target) ? json_deep_copy(target) : json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)patch, k, v)
    {
        if (json_is_null(v)) {
            json_object_del(out, k);
            continue;
        }
        json_object_set_new(out, k, sim_api_merge_patch(json_object_get(out, k), v));
    }
    return out;
}

/* ---- strategic merge patch ---- */

/* patchMergeKey of the list fields that have one (by field name: the names do not collide across the
 * types kubesim serves). Lists not named here are replaced, as for atomic lists. */
static const struct {
    const char *field;
    const char *key; /* NULL: a list of scalars merged as a set */
} MERGE_KEYS[] = {
    {"containers", "name"},       {"initContainers", "name"}, {"ephemeralContainers", "name"},
    {"volumes", "name"},          {"env", "name"},            {"imagePullSecrets", "name"},
    {"ports", "containerPort"},   {"volumeMounts", "mountPath"}, {"volumeDevices", "devicePath"},
    {"conditions", "type"},       {"ownerReferences", "uid"}, {"taints", "key"},
    {"addresses", "type"},        {"hostAliases", "ip"},      {"containerStatuses", "name"},
    {"initContainerStatuses", "name"}, {"finalizers", NULL},
};

static int merge_key(const char *field, const char **key)
{
    for (size_t i = 0; i < sizeof(MERGE_KEYS) / sizeof(MERGE_KEYS[0]); i++) {
        if (strcmp(MERGE_KEYS[i].field, field) == 0) {
            *key = MERGE_KEYS[i].key;
            return 1;
        }
    }
    return 0;
}

static json_t *strip_directives(const json_t *v)
{
    if (!json_is_object(v))
        return json_deep_copy(v);
    json_t *out = json_object();
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x)
    {
        if (k[0] == '$')
            continue;
        if (json_is_null(x))
            continue;
        json_object_set_new(out, k, strip_directives(x));
    }
    return out;
}

static json_t *smp_object(const json_t *target, const json_t *patch);

static json_t *smp_list(const json_t *target, const json_t *patch, const char *key, bool scalar_set)
{
    json_t *out = json_is_array(target) ? json_deep_copy(target) : json_array();
    size_t i;
    json_t *pe;
    if (scalar_set) {
        json_array_foreach((json_t *)patch, i, pe)
        {
            size_t j;
            json_t *te;
            bool have = false;
            json_array_foreach(out, j, te) if (json_equal(te, pe)) have = true;
            if (!have)
                json_array_append(out, pe);
        }
        return out;
    }
    json_array_foreach((json_t *)patch, i, pe)
    {
        const char *directive = json_string_value(json_object_get(pe, "$patch"));
        if (directive && strcmp(directive, "replace") == 0) {
            json_decref(out);
            out = json_array();
            size_t j;
            json_t *x;
            json_array_foreach((json_t *)patch, j, x) if (!json_object_get(x, "$patch"))
                json_array_append_new(out, strip_directives(x));
            return out;
        }
        json_t *kv = json_object_get(pe, key);
        size_t j;
        json_t *te;
        size_t found = (size_t)-1;
        if (kv)
            json_array_foreach(out, j, te) if (found == (size_t)-1 && json_equal(json_object_get(te, key), kv)) found = j;
        if (directive && strcmp(directive, "delete") == 0) {
            if (found != (size_t)-1)
                json_array_remove(out, found);
            continue;
        }
        if (found != (size_t)-1)
            json_array_set_new(out, found, smp_object(json_array_get(out, found), pe));
        else
            json_array_append_new(out, strip_directives(pe));
    }
    return out;
}

static json_t *smp_object(const json_t *target, const json_t *patch)
{
    if (!json_is_object(patch))
        return json_deep_copy(patch);
    const char *directive = json_string_value(json_object_get(patch, "$patch"));
    if (directive && strcmp(directive, "replace") == 0)
        return strip_directives(patch);
    if (directive && strcmp(directive, "delete") == 0)
        return json_null();
    json_t *out = json_is_object(target) ? json_deep_copy(target) : json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)patch, k, v)
    {
        if (strncmp(k, "$deleteFromPrimitiveList/", 25) == 0) {
            json_t *list = json_object_get(out, k + 25);
            size_t i;
            json_t *d;
            json_array_foreach(v, i, d)
            {
                for (size_t j = json_array_size(list); j-- > 0;)
                    if (json_equal(json_array_get(list, j), d))
                        json_array_remove(list, j);
            }
            continue;
        }
        if (k[0] == '$')
            continue; /* $setElementOrder, $retainKeys (handled below) */
        if (json_is_null(v)) {
            json_object_del(out, k);
            continue;
        }
        json_t *cur = json_object_get(out, k);
        const char *key = NULL;
        if (json_is_array(v) && merge_key(k, &key)) {
            json_object_set_new(out, k, smp_list(cur, v, key, key == NULL));
        } else if (json_is_object(v)) {
            json_t *m = smp_object(cur, v);
            if (json_is_null(m)) {
                json_decref(m);
                json_object_del(out, k);
            } else {
                json_object_set_new(out, k, m);
            }
        } else {
            json_object_set_new(out, k, json_deep_copy(v));
        }
    }
    json_t *retain = json_object_get(patch, "$retainKeys");
    if (json_is_array(retain)) {
        const char *rk;
        json_t *rv;
        void *tmp;
        json_object_foreach_safe(out, tmp, rk, rv)
        {
            bool keep = false;
            size_t i;
            json_t *x;
            json_array_foreach(retain, i, x) if (json_string_value(x) && strcmp(json_string_value(x), rk) == 0) keep = true;
            if (!keep)
                json_object_del(out, rk);
        }
    }
    return out;
}

json_t *sim_api_strategic_patch(const json_t *target, const json_t *patch)
{
    json_t *out = smp_object(target, patch);
    if (json_is_null(out)) {
        json_decref(out);
        out = json_object();
    }
    return out;
}

/* ---- RFC 6902 ---- */

/* An RFC 6901 array index: "0" or digits without a leading zero, nothing else (no sign, space or "-";
 * "-" is handled by its one caller that allows it, add). False also when it overflows size_t. */
static bool array_index(const char *tok, size_t *out)
{
    if (!*tok || (tok[0] == '0' && tok[1]))
        return false;
    size_t v = 0;
    for (const char *p = tok; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        size_t d = (size_t)(*p - '0');
        if (v > (SIZE_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* Resolves pointer to its parent container and last token (unescaped, caller frees). */
static int pointer_parent(json_t *doc, const char *ptr, json_t **parent, char **last)
{
    if (*ptr != '/')
        return PW_EINVAL;
    char *copy = pw_xstrdup(ptr + 1);
    json_t *cur = doc;
    char *tok = copy;
    for (;;) {
        char *slash = strchr(tok, '/');
        if (slash)
            *slash = 0;
        /* unescape ~1 -> / and ~0 -> ~ in place */
        char *w = tok;
        for (char *p = tok; *p; p++) {
            if (p[0] == '~' && p[1] == '1') {
                *w++ = '/';
                p++;
            } else if (p[0] == '~' && p[1] == '0') {
                *w++ = '~';
                p++;
            } else {
                *w++ = *p;
            }
        }
        *w = 0;
        if (!slash) {
            *parent = cur;
            *last = pw_xstrdup(tok);
            free(copy);
            return 0;
        }
        if (json_is_object(cur)) {
            cur = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            size_t idx;
            cur = array_index(tok, &idx) ? json_array_get(cur, idx) : NULL;
        } else {
            cur = NULL;
        }
        if (!cur) {
            free(copy);
            return PW_ENOTFOUND;
        }
        tok = slash + 1;
    }
}

static json_t *pointer_get(json_t *doc, const char *ptr)
{
    if (!*ptr)
        return doc;
    json_t *parent;
    char *last;
    if (pointer_parent(doc, ptr, &parent, &last))
        return NULL;
    json_t *v = NULL;
    if (json_is_object(parent)) {
        v = json_object_get(parent, last);
    } else if (json_is_array(parent)) {
        size_t idx;
        v = array_index(last, &idx) ? json_array_get(parent, idx) : NULL;
    }
    free(last);
    return v;
}

static int pointer_add(json_t *doc, const char *ptr, json_t *value, bool replace)
{
    json_t *parent;
    char *last;
    int rc = pointer_parent(doc, ptr, &parent, &last);
    if (rc)
        return rc;
    rc = 0;
    if (json_is_object(parent)) {
        if (replace && !json_object_get(parent, last))
            rc = PW_ENOTFOUND;
        else
            json_object_set(parent, last, value);
    } else if (json_is_array(parent)) {
        size_t n = json_array_size(parent);
        if (strcmp(last, "-") == 0 && !replace) {
            json_array_append(parent, value);
        } else {
            size_t idx;
            if (!array_index(last, &idx) || idx > n || (replace && idx == n))
                rc = PW_ENOTFOUND;
            else if (replace)
                json_array_set(parent, idx, value);
            else
                json_array_insert(parent, idx, value);
        }
    } else {
        rc = PW_ENOTFOUND;
    }
    free(last);
    return rc;
}

static int pointer_remove(json_t *doc, const char *ptr)
{
    json_t *parent;
    char *last;
    int rc = pointer_parent(doc, ptr, &parent, &last);
    if (rc)
        return rc;
    rc = PW_ENOTFOUND;
    if (json_is_object(parent)) {
        if (json_object_del(parent, last) == 0)
            rc = 0;
    } else if (json_is_array(parent)) {
        size_t idx;
        if (array_index(last, &idx) && json_array_remove(parent, idx) == 0)
            rc = 0;
    }
    free(last);
    return rc;
}

int sim_api_json_patch(json_t *doc, const json_t *ops, char **err)
{
    if (!json_is_array(ops)) {
        *err = pw_xstrdup("json patch: the patch must be a JSON array of operations");
        return PW_EINVAL;
    }
    size_t i;
    json_t *op;
    json_array_foreach((json_t *)ops, i, op)
    {
        const char *o = json_string_value(json_object_get(op, "op"));
        const char *path = json_string_value(json_object_get(op, "path"));
        const char *from = json_string_value(json_object_get(op, "from"));
        json_t *value = json_object_get(op, "value");
        int rc = PW_EINVAL;
        if (!o || !path) {
            rc = PW_EINVAL;
        } else if (strcmp(o, "add") == 0 && value) {
            rc = pointer_add(doc, path, value, false);
        } else if (strcmp(o, "replace") == 0 && value) {
            rc = pointer_add(doc, path, value, true);
        } else if (strcmp(o, "remove") == 0) {
            rc = pointer_remove(doc, path);
        } else if (strcmp(o, "test") == 0) {
            json_t *cur = pointer_get(doc, path);
            rc = cur && value && json_equal(cur, value) ? 0 : PW_ECONFLICT;
        } else if ((strcmp(o, "move") == 0 || strcmp(o, "copy") == 0) && from) {
            json_t *src = pointer_get(doc, from);
            if (!src) {
                rc = PW_ENOTFOUND;
            } else {
                json_t *v = json_deep_copy(src);
                rc = strcmp(o, "move") == 0 ? pointer_remove(doc, from) : 0;
                if (!rc)
                    rc = pointer_add(doc, path, v, false);
                json_decref(v);
            }
        }
        if (rc) {
            *err = pw_xasprintf("json patch operation %zu (%s %s) failed: %s", i, o ? o : "?", path ? path : "?",
                                rc == PW_ECONFLICT ? "test failed" : rc == PW_ENOTFOUND ? "path not found" : "bad operation");
            return rc == PW_EINVAL ? PW_EINVAL : PW_ECONFLICT;
        }
    }
    return 0;
}

/* ---- dispatch by media type ---- */

int sim_api_patch_apply(const char *ctype, const json_t *target, const char *patch, size_t len, bool custom,
                    json_t **out, char **err)
{
    size_t n = strcspn(ctype, ";");
    while (n > 0 && ctype[n - 1] == ' ')
        n--;
    enum { MERGE, STRATEGIC, JSONPATCH, NONE } kind = NONE;
    if (n == strlen("application/merge-patch+json") && strncmp(ctype, "application/merge-patch+json", n) == 0)
        kind = MERGE;
    else if (n == strlen("application/strategic-merge-patch+json") &&
             strncmp(ctype, "application/strategic-merge-patch+json", n) == 0)
        kind = custom ? NONE : STRATEGIC;
    else if (n == strlen("application/json-patch+json") && strncmp(ctype, "application/json-patch+json", n) == 0)
        kind = JSONPATCH;
    if (kind == NONE) {
        *err = pw_xasprintf("the body of the request was in an unknown format - accepted media types include: "
                            "application/json-patch+json, application/merge-patch+json%s",
                            custom ? ", application/apply-patch+yaml" : ", application/apply-patch+yaml, application/strategic-merge-patch+json");
        return PW_EMEDIATYPE;
    }
    json_error_t jerr;
    json_t *p = json_loadb(patch, len, JSON_DECODE_ANY, &jerr);
    if (!p) {
        *err = pw_xasprintf("error decoding patch: %s", jerr.text);
        return PW_EINVAL;
    }
    int rc = 0;
    if (kind == MERGE) {
        if (!json_is_object(p)) {
            *err = pw_xstrdup("error decoding patch: a merge patch must be a JSON object");
            rc = PW_EINVAL;
        } else {
            *out = sim_api_merge_patch(target, p);
        }
    } else if (kind == STRATEGIC) {
        if (!json_is_object(p)) {
            *err = pw_xstrdup("error decoding patch: a strategic merge patch must be a JSON object");
            rc = PW_EINVAL;
        } else {
            *out = sim_api_strategic_patch(target, p);
        }
    } else {
        json_t *doc = json_deep_copy(target);
        rc = sim_api_json_patch(doc, p, err);
        if (rc)
            json_decref(doc);
        else
            *out = doc;
    }
    json_decref(p);
    return rc;
}
