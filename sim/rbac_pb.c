/* rbac_pb.c: protobuf bodies of the RBAC and review kinds into JSON, by schema tables (see rbac_pb.h).
 * The field numbers are k8s.io/api's generated.proto ones. */
#include "sim/rbac_pb.h"
#include "sim/pb.h"

#include <string.h>
#include <strings.h>

enum pbt { T_STR, T_STRS, T_MSG, T_MSGS, T_MAP, T_END };

struct pbf {
    unsigned num;
    const char *name;
    enum pbt t;
    const struct pbf *sub; /* T_MSG, T_MSGS */
};

static const struct pbf META[] = {
    {1, "name", T_STR, NULL},        {2, "generateName", T_STR, NULL}, {3, "namespace", T_STR, NULL},
    {6, "resourceVersion", T_STR, NULL}, {11, "labels", T_MAP, NULL},  {12, "annotations", T_MAP, NULL},
    {0, NULL, T_END, NULL},
};
static const struct pbf RULE[] = {
    {1, "verbs", T_STRS, NULL},         {2, "apiGroups", T_STRS, NULL},       {3, "resources", T_STRS, NULL},
    {4, "resourceNames", T_STRS, NULL}, {5, "nonResourceURLs", T_STRS, NULL}, {0, NULL, T_END, NULL},
};
static const struct pbf EXPR[] = {
    {1, "key", T_STR, NULL}, {2, "operator", T_STR, NULL}, {3, "values", T_STRS, NULL}, {0, NULL, T_END, NULL},
};
static const struct pbf SELECTOR[] = {
    {1, "matchLabels", T_MAP, NULL}, {2, "matchExpressions", T_MSGS, EXPR}, {0, NULL, T_END, NULL},
};
static const struct pbf AGG[] = {{1, "clusterRoleSelectors", T_MSGS, SELECTOR}, {0, NULL, T_END, NULL}};
static const struct pbf ROLE[] = {{1, "metadata", T_MSG, META}, {2, "rules", T_MSGS, RULE}, {0, NULL, T_END, NULL}};
static const struct pbf CLUSTERROLE[] = {
    {1, "metadata", T_MSG, META}, {2, "rules", T_MSGS, RULE}, {3, "aggregationRule", T_MSG, AGG}, {0, NULL, T_END, NULL},
};
static const struct pbf SUBJECT[] = {
    {1, "kind", T_STR, NULL}, {2, "apiGroup", T_STR, NULL}, {3, "name", T_STR, NULL}, {4, "namespace", T_STR, NULL},
    {0, NULL, T_END, NULL},
};
static const struct pbf ROLEREF[] = {
    {1, "apiGroup", T_STR, NULL}, {2, "kind", T_STR, NULL}, {3, "name", T_STR, NULL}, {0, NULL, T_END, NULL},
};
static const struct pbf BINDING[] = {
    {1, "metadata", T_MSG, META}, {2, "subjects", T_MSGS, SUBJECT}, {3, "roleRef", T_MSG, ROLEREF}, {0, NULL, T_END, NULL},
};
static const struct pbf RES_ATTRS[] = {
    {1, "namespace", T_STR, NULL}, {2, "verb", T_STR, NULL},        {3, "group", T_STR, NULL},
    {4, "version", T_STR, NULL},   {5, "resource", T_STR, NULL},    {6, "subresource", T_STR, NULL},
    {7, "name", T_STR, NULL},      {0, NULL, T_END, NULL},
};
static const struct pbf NONRES_ATTRS[] = {{1, "path", T_STR, NULL}, {2, "verb", T_STR, NULL}, {0, NULL, T_END, NULL}};
static const struct pbf SAR_SPEC[] = {
    {1, "resourceAttributes", T_MSG, RES_ATTRS}, {2, "nonResourceAttributes", T_MSG, NONRES_ATTRS},
    {3, "user", T_STR, NULL},                    {4, "groups", T_STRS, NULL},
    {6, "uid", T_STR, NULL},                     {0, NULL, T_END, NULL},
};
static const struct pbf SSAR_SPEC[] = {
    {1, "resourceAttributes", T_MSG, RES_ATTRS}, {2, "nonResourceAttributes", T_MSG, NONRES_ATTRS}, {0, NULL, T_END, NULL},
};
static const struct pbf SAR[] = {{1, "metadata", T_MSG, META}, {2, "spec", T_MSG, SAR_SPEC}, {0, NULL, T_END, NULL}};
static const struct pbf SSAR[] = {{1, "metadata", T_MSG, META}, {2, "spec", T_MSG, SSAR_SPEC}, {0, NULL, T_END, NULL}};
static const struct pbf SSR[] = {{1, "metadata", T_MSG, META}, {0, NULL, T_END, NULL}};

static const struct {
    const char *kind;
    const struct pbf *schema;
} KINDS[] = {
    {"Role", ROLE},
    {"ClusterRole", CLUSTERROLE},
    {"RoleBinding", BINDING},
    {"ClusterRoleBinding", BINDING},
    {"SubjectAccessReview", SAR},
    {"LocalSubjectAccessReview", SAR},
    {"SelfSubjectAccessReview", SSAR},
    {"SelfSubjectReview", SSR},
};

bool sim_rbac_pb_content(const char *ct)
{
    static const char PB[] = "application/vnd.kubernetes.protobuf";
    return ct && strncasecmp(ct, PB, sizeof(PB) - 1) == 0 && (ct[sizeof(PB) - 1] == '\0' || ct[sizeof(PB) - 1] == ';');
}

static const struct pbf *schema_of(const char *kind)
{
    for (size_t i = 0; i < sizeof(KINDS) / sizeof(KINDS[0]); i++)
        if (strcmp(KINDS[i].kind, kind) == 0)
            return KINDS[i].schema;
    return NULL;
}

bool sim_rbac_pb_known(const char *kind)
{
    return schema_of(kind) != NULL;
}

static json_t *pb_string(const struct sim_pb *v)
{
    return json_stringn((const char *)v->p, (size_t)(v->end - v->p)); /* NULL when not UTF-8 */
}

/* A map<string,string> entry {key = 1, value = 2} into obj. */
static bool pb_map_entry(struct sim_pb m, json_t *obj)
{
    json_t *k = NULL, *v = NULL;
    struct sim_pb_field f;
    int rc;
    bool ok = true;
    while (ok && (rc = sim_pb_next(&m, &f)) == 1) {
        if (f.wire != 2 || (f.num != 1 && f.num != 2))
            continue;
        json_t **slot = f.num == 1 ? &k : &v;
        json_decref(*slot);
        *slot = pb_string(&f.bytes);
        ok = *slot != NULL;
    }
    ok = ok && rc == 0;
    if (ok)
        json_object_set_new(obj, k ? json_string_value(k) : "", v ? v : json_string(""));
    else
        json_decref(v);
    json_decref(k);
    return ok;
}

static bool pb_msg(struct sim_pb m, const struct pbf *schema, json_t *out, int depth);

/* One field f of schema row d into out. */
static bool pb_field(const struct pbf *d, const struct sim_pb_field *f, json_t *out, int depth)
{
    if (f->wire != 2)
        return true; /* none of ours is a varint */
    json_t *v;
    switch (d->t) {
    case T_STR: /* Go's JSON leaves empty strings out (omitempty) where it matters here */
        if (f->bytes.p == f->bytes.end)
            return true;
        v = pb_string(&f->bytes);
        return v && json_object_set_new(out, d->name, v) == 0;
    case T_STRS:
    case T_MSGS:
        if (!json_is_array(json_object_get(out, d->name)))
            json_object_set_new(out, d->name, json_array());
        v = d->t == T_STRS ? pb_string(&f->bytes) : json_object();
        if (!v)
            return false;
        json_array_append_new(json_object_get(out, d->name), v);
        return d->t == T_STRS || pb_msg(f->bytes, d->sub, v, depth + 1);
    case T_MSG:
        if (!json_is_object(json_object_get(out, d->name)))
            json_object_set_new(out, d->name, json_object());
        return pb_msg(f->bytes, d->sub, json_object_get(out, d->name), depth + 1);
    case T_MAP:
        if (!json_is_object(json_object_get(out, d->name)))
            json_object_set_new(out, d->name, json_object());
        return pb_map_entry(f->bytes, json_object_get(out, d->name));
    case T_END:
        break;
    }
    return true;
}

static bool pb_msg(struct sim_pb m, const struct pbf *schema, json_t *out, int depth)
{
    if (depth > 8)
        return false;
    struct sim_pb_field f;
    int rc;
    while ((rc = sim_pb_next(&m, &f)) == 1) {
        for (const struct pbf *d = schema; d->t != T_END; d++)
            if (d->num == f.num && !pb_field(d, &f, out, depth))
                return false;
    }
    return rc == 0;
}

json_t *sim_rbac_pb_decode(const char *kind, const char *api_version, const void *body, size_t len)
{
    const struct pbf *schema = schema_of(kind);
    struct sim_pb raw;
    char k[64];
    if (!schema || sim_pb_unwrap(body, len, &raw, k, sizeof(k)) != 0 || (*k && strcmp(k, kind) != 0))
        return NULL;
    json_t *doc = json_pack("{s:s, s:s}", "apiVersion", api_version, "kind", kind);
    if (!pb_msg(raw, schema, doc, 0)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}
