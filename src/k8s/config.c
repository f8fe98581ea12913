/* config.c: loads the client configuration the way kubectl does.
 *
 * Kubeconfig files are YAML (or JSON, which is YAML). Each file is read with libyaml's document API and
 * turned into a jansson tree; several files (KUBECONFIG=a:b:c) are merged by clientcmd's rules: for the
 * named maps (clusters, contexts, users) the first file that defines a name wins, and so does the first
 * file that sets current-context. Relative paths in an entry (certificate-authority, client-certificate,
 * client-key, tokenFile, an exec command with a '/') are resolved against the directory of the file the
 * entry came from. Without any kubeconfig the in-cluster service account is used
 * (KUBERNETES_SERVICE_HOST/PORT and /var/run/secrets/kubernetes.io/serviceaccount, whose root tests move
 * with PW_K8S_SA_DIR).
 *
 * Every failure returns a sentence naming the file and the missing or bad piece; secrets (tokens, keys,
 * passwords) never reach a message or a log line. */
#include "k8s/k8s_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <yaml.h>

#include "base/b64.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/sv.h"

#define SA_DIR_DEFAULT "/var/run/secrets/kubernetes.io/serviceaccount"
/* YAML_ALIAS_SLACK: aliases let a few hundred bytes name a billion nodes ("billion laughs"), so the
 * tree built from a file may have at most twice the nodes the file itself holds, plus this. */
enum { KUBECONFIG_MAX = 16 << 20, YAML_DEPTH_MAX = 64, YAML_ALIAS_SLACK = 10000, TOKEN_CHECK_MS = 3000,
       EXEC_TIMEOUT_MS = 60000 };

/* ---- small helpers ---- */

/* Sets *errmsg (when wanted) to a formatted sentence and returns code. */
__attribute__((format(printf, 3, 4))) static int fail(char **errmsg, int code, const char *fmt, ...)
{
    if (errmsg) {
        va_list ap;
        va_start(ap, fmt);
        char *m = NULL;
        if (vasprintf(&m, fmt, ap) < 0)
            m = NULL;
        va_end(ap);
        *errmsg = m ? m : pw_xstrdup("kubeconfig: error");
    }
    return code;
}

/* Reads a whole file (capped) into a NUL-terminated buffer; caller frees. On failure errno is kept. */
static int read_file(const char *path, size_t max, char **out, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return PW_EIO;
    pw_buf b;
    pw_buf_init(&b, max);
    char tmp[8192];
    size_t n;
    int rc = 0;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (pw_buf_append(&b, tmp, n) != 0) {
            rc = PW_ETOOLARGE;
            errno = EFBIG;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        rc = PW_EIO;
    }
    int saved = errno;
    fclose(f);
    if (rc != 0) {
        pw_buf_fini(&b);
        errno = saved;
        return rc;
    }
    *out_len = b.len;
    *out = pw_buf_steal(&b);
    return 0;
}


/* The directory part of path ("." when none); caller frees. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return pw_xstrdup(".");
    if (slash == path)
        return pw_xstrdup("/");
    return pw_xstrndup(path, (size_t)(slash - path));
}

/* path made absolute against dir when relative; caller frees. */
static char *resolve(const char *dir, const char *path)
{
    if (path[0] == '/' || !dir)
        return pw_xstrdup(path);
    return pw_xasprintf("%s/%s", dir, path);
}

/* ---- YAML to JSON ---- */

/* *budget: the nodes still allowed (each node, alias targets again each time, costs one). */
static json_t *yaml_node_to_json(yaml_document_t *doc, yaml_node_t *node, int depth, size_t *budget)
{
    if (!node || depth > YAML_DEPTH_MAX || *budget == 0)
        return NULL;
    --*budget;
    switch (node->type) {
    case YAML_SCALAR_NODE: {
        const char *v = (const char *)node->data.scalar.value;
        size_t n = node->data.scalar.length;
        if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
            (n == 0 || (n == 1 && v[0] == '~') || (n == 4 && memcmp(v, "null", 4) == 0)))
            return json_null();
        return json_stringn(v, n);
    }
    case YAML_SEQUENCE_NODE: {
        json_t *arr = json_array();
        for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top; it++) {
            json_t *v = yaml_node_to_json(doc, yaml_document_get_node(doc, *it), depth + 1, budget);
            if (!v) {
                json_decref(arr);
                return NULL;
            }
            json_array_append_new(arr, v);
        }
        return arr;
    }
    case YAML_MAPPING_NODE: {
        json_t *obj = json_object();
        for (yaml_node_pair_t *pr = node->data.mapping.pairs.start; pr < node->data.mapping.pairs.top; pr++) {
            yaml_node_t *k = yaml_document_get_node(doc, pr->key);
            if (!k || k->type != YAML_SCALAR_NODE) {
                json_decref(obj);
                return NULL;
            }
            json_t *v = yaml_node_to_json(doc, yaml_document_get_node(doc, pr->value), depth + 1, budget);
            if (!v) {
                json_decref(obj);
                return NULL;
            }
            char *key = pw_xstrndup((const char *)k->data.scalar.value, k->data.scalar.length);
            json_object_set_new(obj, key, v);
            free(key);
        }
        return obj;
    }
    default:
        return NULL;
    }
}

int pw_k8s_yaml_to_json(const char *text, size_t len, const char *what, json_t **out, char **errmsg)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        return fail(errmsg, PW_ENOMEM, "%s: cannot start the YAML parser", what);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = fail(errmsg, PW_EINVAL, "%s: invalid YAML at line %zu: %s", what,
                      parser.problem_mark.line + 1, parser.problem ? parser.problem : "parse error");
        yaml_parser_delete(&parser);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    size_t budget = 2 * (size_t)(doc.nodes.top - doc.nodes.start) + YAML_ALIAS_SLACK;
    json_t *j = root ? yaml_node_to_json(&doc, root, 0, &budget) : json_object();
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (!j && budget == 0)
        return fail(errmsg, PW_EINVAL, "%s: its aliases expand to too many nodes", what);
    if (json_is_null(j)) {
        json_decref(j);
        j = json_object();
    }
    if (!json_is_object(j)) {
        json_decref(j);
        return fail(errmsg, PW_EINVAL, "%s: the document is not a mapping", what);
    }
    *out = j;
    return 0;
}

/* ---- merging ---- */

/* One named entry of the merged configuration and the directory of the file it came from. */
struct entry {
    const char *name;
    json_t *body; /* borrowed from the file's tree (the "cluster"/"context"/"user" object) */
    const char *dir;
    const char *file;
};

struct merged {
    json_t *files; /* array of file trees (owns them) */
    char **dirs;   /* per file (owned) */
    char **paths;  /* per file (owned) */
    size_t nfiles;
    const char *current_context; /* borrowed */
    const char *current_file;
    char *sources; /* "a, b" for messages (owned) */
};

static void merged_fini(struct merged *m)
{
    json_decref(m->files);
    for (size_t i = 0; i < m->nfiles; i++) {
        free(m->dirs[i]);
        free(m->paths[i]);
    }
    free(m->dirs);
    free(m->paths);
    free(m->sources);
}

/* Finds name in the list `list` ("clusters", "contexts", "users") of the files, the first file first;
 * field is "cluster", "context" or "user". */
static bool merged_find(const struct merged *m, const char *list, const char *field, const char *name,
                        struct entry *out)
{
    for (size_t i = 0; i < m->nfiles; i++) {
        json_t *arr = json_object_get(json_array_get(m->files, i), list);
        size_t k;
        json_t *item;
        json_array_foreach(arr, k, item)
        {
            const char *n = json_string_value(json_object_get(item, "name"));
            if (n && strcmp(n, name) == 0) {
                out->name = n;
                out->body = json_object_get(item, field);
                if (!json_is_object(out->body))
                    out->body = NULL;
                out->dir = m->dirs[i];
                out->file = m->paths[i];
                return true;
            }
        }
    }
    return false;
}

/* Reads every file of the colon-separated list. Missing files are skipped when skip_missing (the
 * KUBECONFIG rule); otherwise they are an error. */
static int merged_load(struct merged *m, const char *list, bool skip_missing, char **errmsg)
{
    memset(m, 0, sizeof *m);
    m->files = json_array();
    pw_buf src;
    pw_buf_init(&src, 0);
    char *copy = pw_xstrdup(list);
    int rc = 0;
    char *save = NULL;
    for (char *p = strtok_r(copy, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
        if (!*p)
            continue;
        bool dup = false;
        for (size_t i = 0; i < m->nfiles; i++)
            dup = dup || strcmp(m->paths[i], p) == 0;
        if (dup)
            continue;
        char *text = NULL;
        size_t len = 0;
        rc = read_file(p, KUBECONFIG_MAX, &text, &len);
        if (rc != 0) {
            if (errno == ENOENT && skip_missing) {
                rc = 0;
                continue;
            }
            rc = fail(errmsg, rc == PW_ETOOLARGE ? PW_ETOOLARGE : PW_EIO, "kubeconfig %s: cannot read it: %s", p,
                      strerror(errno));
            break;
        }
        json_t *tree = NULL;
        char *what = pw_xasprintf("kubeconfig %s", p);
        rc = pw_k8s_yaml_to_json(text, len, what, &tree, errmsg);
        free(what);
        free(text);
        if (rc != 0)
            break;
        m->dirs = pw_xrealloc(m->dirs, (m->nfiles + 1) * sizeof *m->dirs);
        m->paths = pw_xrealloc(m->paths, (m->nfiles + 1) * sizeof *m->paths);
        m->dirs[m->nfiles] = dir_of(p);
        m->paths[m->nfiles] = pw_xstrdup(p);
        json_array_append_new(m->files, tree);
        const char *cc = json_string_value(json_object_get(tree, "current-context"));
        if (!m->current_context && cc && *cc) {
            m->current_context = cc;
            m->current_file = m->paths[m->nfiles];
        }
        pw_buf_printf(&src, "%s%s", m->nfiles ? ", " : "", p);
        m->nfiles++;
    }
    free(copy);
    if (rc == 0 && m->nfiles == 0)
        rc = fail(errmsg, PW_ENOTFOUND, "kubeconfig: none of the files in \"%s\" exists", list);
    m->sources = pw_buf_steal(&src);
    pw_buf_fini(&src);
    if (rc != 0)
        merged_fini(m);
    return rc;
}

/* ---- building the config ---- */

static void cfg_free_exec(struct pw_k8s_exec *ex)
{
    if (!ex)
        return;
    free(ex->command);
    for (char **a = ex->args; a && *a; a++)
        free(*a);
    free(ex->args);
    for (char **e = ex->env; e && *e; e++)
        free(*e);
    free(ex->env);
    free(ex->api_version);
    free(ex->install_hint);
    free(ex);
}

static pw_k8s_config *cfg_new(void)
{
    pw_k8s_config *cfg = pw_xcalloc(1, sizeof *cfg);
    cfg->cache = pw_xcalloc(1, sizeof *cfg->cache);
    pthread_mutex_init(&cfg->cache->mu, NULL);
    cfg->cache->check_ms = TOKEN_CHECK_MS;
    return cfg;
}

void pw_k8s_config_free(pw_k8s_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->source);
    free(cfg->context);
    free(cfg->server);
    free(cfg->ns);
    free(cfg->ca_pem);
    free(cfg->tls_server_name);
    free(cfg->proxy_url);
    free(cfg->token);
    free(cfg->token_file);
    free(cfg->cert_pem);
    free(cfg->key_pem);
    free(cfg->username);
    free(cfg->password);
    cfg_free_exec(cfg->exec);
    struct pw_k8s_cred_cache *cc = cfg->cache;
    pthread_mutex_destroy(&cc->mu);
    free(cc->file_token);
    free(cc->exec_token);
    free(cc->exec_cert);
    free(cc->exec_key);
    free(cc);
    free(cfg);
}

const char *pw_k8s_config_ca_pem(const pw_k8s_config *cfg, size_t *len)
{
    *len = cfg->ca_pem ? cfg->ca_len : 0;
    return cfg->ca_pem ? (const char *)cfg->ca_pem : NULL;
}

const char *pw_k8s_config_server(const pw_k8s_config *cfg)
{
    return cfg->server;
}

int pw_k8s_config_credential(const pw_k8s_config *cfg, char **token, char **cert_pem, char **key_pem,
                             char **errmsg)
{
    struct pw_k8s_cred cr;
    int rc = pw_k8s_cred_get(cfg, &cr, errmsg);
    if (rc != 0)
        return rc;
    *token = cr.token;
    cr.token = NULL;
    if (cert_pem && key_pem && cr.cert_pem && cr.key_pem) {
        *cert_pem = cr.cert_pem;
        *key_pem = cr.key_pem;
        cr.cert_pem = cr.key_pem = NULL;
    } else if (cert_pem && key_pem) {
        *cert_pem = *key_pem = NULL;
    }
    pw_k8s_cred_fini(&cr);
    return 0;
}

int pw_k8s_config_token(const pw_k8s_config *cfg, char **token, char **errmsg)
{
    return pw_k8s_config_credential(cfg, token, NULL, NULL, errmsg);
}

const char *pw_k8s_config_namespace(const pw_k8s_config *cfg)
{
    return cfg->ns ? cfg->ns : "default";
}

static const char *jstr(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s && *s ? s : NULL;
}

/* A boolean field: YAML true/false (plain scalars arrive as strings) or a JSON boolean. */
static bool jbool(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (json_is_boolean(v))
        return json_is_true(v);
    bool b = false;
    if (json_is_string(v) && pw_parse_bool(json_string_value(v), &b) == 0)
        return b;
    const char *s = json_string_value(v);
    return s && (strcmp(s, "yes") == 0 || strcmp(s, "on") == 0);
}

/* Loads PEM material from "<field>-data" (base64) or "<field>" (a path relative to the entry's file).
 * *out stays NULL when neither is set. what: "cluster \"x\"" for messages. */
static int load_pem(const struct entry *e, const char *field, const char *what, char **out, size_t *out_len,
                    char **errmsg)
{
    char key[96];
    snprintf(key, sizeof key, "%s-data", field);
    const char *data = jstr(e->body, key);
    if (data) {
        void *dec = NULL;
        size_t dec_len = 0;
        if (pw_b64_decode(data, strlen(data), &dec, &dec_len) != 0 || dec_len == 0) {
            free(dec);
            return fail(errmsg, PW_EINVAL, "kubeconfig %s: %s has %s that is not valid base64", e->file, what, key);
        }
        *out = dec;
        *out_len = dec_len;
        return 0;
    }
    const char *path = jstr(e->body, field);
    if (!path)
        return 0;
    char *full = resolve(e->dir, path);
    int rc = read_file(full, 1 << 20, out, out_len);
    if (rc != 0) {
        rc = fail(errmsg, PW_EIO, "kubeconfig %s: %s has %s %s, which cannot be read: %s", e->file, what, field, full,
                  strerror(errno));
    }
    free(full);
    return rc;
}

static int build_exec(const struct entry *u, const json_t *ex, pw_k8s_config *cfg, char **errmsg)
{
    const char *command = jstr(ex, "command");
    const char *api = jstr(ex, "apiVersion");
    if (!command)
        return fail(errmsg, PW_EINVAL, "kubeconfig %s: user \"%s\" has an exec plugin with no command", u->file,
                    u->name);
    if (!api)
        api = "client.authentication.k8s.io/v1";
    if (strcmp(api, "client.authentication.k8s.io/v1") != 0 && strcmp(api, "client.authentication.k8s.io/v1beta1") != 0)
        return fail(errmsg, PW_EINVAL,
                    "kubeconfig %s: user \"%s\" has an exec plugin of apiVersion %s; supported are "
                    "client.authentication.k8s.io/v1 and v1beta1",
                    u->file, u->name, api);
    const char *mode = jstr(ex, "interactiveMode");
    if (mode && strcmp(mode, "Always") == 0)
        return fail(errmsg, PW_EINVAL,
                    "kubeconfig %s: user \"%s\" has an exec plugin with interactiveMode Always, which a service "
                    "without a terminal cannot run; use IfAvailable or Never",
                    u->file, u->name);
    struct pw_k8s_exec *e = pw_xcalloc(1, sizeof *e);
    e->command = strchr(command, '/') ? resolve(u->dir, command) : pw_xstrdup(command);
    e->api_version = pw_xstrdup(api);
    e->provide_cluster_info = jbool(ex, "provideClusterInfo");
    if (jstr(ex, "installHint"))
        e->install_hint = pw_xstrdup(jstr(ex, "installHint"));
    e->timeout_ms = EXEC_TIMEOUT_MS;
    const json_t *args = json_object_get(ex, "args");
    e->args = pw_xcalloc(json_array_size(args) + 1, sizeof *e->args);
    size_t i, na = 0;
    json_t *v;
    json_array_foreach(args, i, v)
    {
        if (json_is_string(v))
            e->args[na++] = pw_xstrdup(json_string_value(v));
    }
    const json_t *env = json_object_get(ex, "env");
    e->env = pw_xcalloc(json_array_size(env) + 1, sizeof *e->env);
    size_t ne = 0;
    json_array_foreach(env, i, v)
    {
        const char *name = jstr(v, "name");
        const char *val = json_string_value(json_object_get(v, "value"));
        if (name)
            e->env[ne++] = pw_xasprintf("%s=%s", name, val ? val : "");
    }
    cfg->exec = e;
    return 0;
}

static int build_user(const struct entry *u, pw_k8s_config *cfg, char **errmsg)
{
    const json_t *b = u->body;
    if (!b)
        return 0;
    char what[300];
    snprintf(what, sizeof what, "user \"%s\"", u->name);
    const json_t *ap = json_object_get(b, "auth-provider");
    if (ap && !json_is_null(ap))
        return fail(errmsg, PW_EINVAL,
                    "kubeconfig %s: user \"%s\" uses auth-provider \"%s\", which prewarm does not support; use an "
                    "exec credential plugin instead",
                    u->file, u->name, jstr(ap, "name") ? jstr(ap, "name") : "?");
    if (jstr(b, "token"))
        cfg->token = pw_xstrdup(jstr(b, "token"));
    else if (jstr(b, "tokenFile"))
        cfg->token_file = resolve(u->dir, jstr(b, "tokenFile"));
    int rc = load_pem(u, "client-certificate", what, &cfg->cert_pem, &cfg->cert_len, errmsg);
    if (rc == 0)
        rc = load_pem(u, "client-key", what, &cfg->key_pem, &cfg->key_len, errmsg);
    if (rc != 0)
        return rc;
    if (!cfg->cert_pem != !cfg->key_pem)
        return fail(errmsg, PW_EINVAL, "kubeconfig %s: user \"%s\" has a client %s but no client %s", u->file, u->name,
                    cfg->cert_pem ? "certificate" : "key", cfg->cert_pem ? "key" : "certificate");
    if (jstr(b, "username") || jstr(b, "password")) {
        cfg->username = pw_xstrdup(jstr(b, "username") ? jstr(b, "username") : "");
        cfg->password = pw_xstrdup(jstr(b, "password") ? jstr(b, "password") : "");
    }
    const json_t *ex = json_object_get(b, "exec");
    if (json_is_object(ex))
        return build_exec(u, ex, cfg, errmsg);
    return 0;
}

static int build_cluster(const struct entry *cl, pw_k8s_config *cfg, char **errmsg)
{
    const json_t *b = cl->body;
    const char *server = jstr(b, "server");
    if (!server)
        return fail(errmsg, PW_EINVAL, "kubeconfig %s: cluster \"%s\" has no server", cl->file, cl->name);
    cfg->server = strstr(server, "://") ? pw_xstrdup(server) : pw_xasprintf("https://%s", server);
    size_t n = strlen(cfg->server);
    while (n > 0 && cfg->server[n - 1] == '/')
        cfg->server[--n] = '\0';
    cfg->insecure = jbool(b, "insecure-skip-tls-verify");
    if (jstr(b, "tls-server-name"))
        cfg->tls_server_name = pw_xstrdup(jstr(b, "tls-server-name"));
    if (jstr(b, "proxy-url"))
        cfg->proxy_url = pw_xstrdup(jstr(b, "proxy-url"));
    char what[300];
    snprintf(what, sizeof what, "cluster \"%s\"", cl->name);
    return load_pem(cl, "certificate-authority", what, &cfg->ca_pem, &cfg->ca_len, errmsg);
}

static int load_kubeconfig(const char *list, bool skip_missing, const char *context, pw_k8s_config **out, char **errmsg)
{
    struct merged m;
    int rc = merged_load(&m, list, skip_missing, errmsg);
    if (rc != 0)
        return rc;
    const char *ctx_name = context && *context ? context : m.current_context;
    struct entry ctx, cl, user;
    memset(&user, 0, sizeof user);
    if (!ctx_name) {
        rc = fail(errmsg, PW_EINVAL, "kubeconfig %s: no current-context is set and no context was given", m.sources);
        goto out;
    }
    if (!merged_find(&m, "contexts", "context", ctx_name, &ctx) || !ctx.body) {
        rc = fail(errmsg, PW_ENOTFOUND, "kubeconfig %s: context \"%s\" not found", m.sources, ctx_name);
        goto out;
    }
    const char *cluster_name = jstr(ctx.body, "cluster");
    const char *user_name = jstr(ctx.body, "user");
    if (!cluster_name) {
        rc = fail(errmsg, PW_EINVAL, "kubeconfig %s: context \"%s\" names no cluster", ctx.file, ctx_name);
        goto out;
    }
    if (!merged_find(&m, "clusters", "cluster", cluster_name, &cl) || !cl.body) {
        rc = fail(errmsg, PW_ENOTFOUND, "kubeconfig %s: context \"%s\" refers to cluster \"%s\", which is not defined",
                  m.sources, ctx_name, cluster_name);
        goto out;
    }
    if (user_name && (!merged_find(&m, "users", "user", user_name, &user) || !user.body)) {
        rc = fail(errmsg, PW_ENOTFOUND, "kubeconfig %s: context \"%s\" refers to user \"%s\", which is not defined",
                  m.sources, ctx_name, user_name);
        goto out;
    }
    pw_k8s_config *cfg = cfg_new();
    cfg->source = pw_xstrdup(m.sources);
    cfg->context = pw_xstrdup(ctx_name);
    cfg->ns = pw_xstrdup(jstr(ctx.body, "namespace") ? jstr(ctx.body, "namespace") : "default");
    rc = build_cluster(&cl, cfg, errmsg);
    if (rc == 0 && user.body)
        rc = build_user(&user, cfg, errmsg);
    if (rc != 0) {
        pw_k8s_config_free(cfg);
        goto out;
    }
    PW_DEBUG("k8s: config from %s, context %s, server %s", cfg->source, cfg->context, cfg->server);
    *out = cfg;
out:
    merged_fini(&m);
    return rc;
}

static int load_in_cluster(pw_k8s_config **out, char **errmsg)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !*host || !port || !*port)
        return fail(errmsg, PW_ENOTFOUND,
                    "no kubeconfig found ($KUBECONFIG is unset and ~/.kube/config does not exist) and not running "
                    "in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set)");
    const char *dir = getenv("PW_K8S_SA_DIR");
    if (!dir || !*dir)
        dir = SA_DIR_DEFAULT;
    pw_k8s_config *cfg = cfg_new();
    cfg->source = pw_xasprintf("in-cluster service account %s", dir);
    cfg->server =
        strchr(host, ':') ? pw_xasprintf("https://[%s]:%s", host, port) : pw_xasprintf("https://%s:%s", host, port);
    cfg->token_file = pw_xasprintf("%s/token", dir);
    /* the token must be readable now; later it is re-read whenever it rotates */
    char *tok = NULL;
    size_t len = 0;
    int rc = read_file(cfg->token_file, 1 << 20, &tok, &len);
    if (rc != 0) {
        rc = fail(errmsg, PW_EIO, "in-cluster config: cannot read the service account token %s: %s", cfg->token_file,
                  strerror(errno));
        pw_k8s_config_free(cfg);
        return rc;
    }
    free(tok);
    char *ca_path = pw_xasprintf("%s/ca.crt", dir);
    if (read_file(ca_path, 1 << 20, &cfg->ca_pem, &cfg->ca_len) != 0) {
        rc = fail(errmsg, PW_EIO, "in-cluster config: cannot read the cluster CA %s: %s", ca_path, strerror(errno));
        free(ca_path);
        pw_k8s_config_free(cfg);
        return rc;
    }
    free(ca_path);
    char *ns_path = pw_xasprintf("%s/namespace", dir);
    char *ns = NULL;
    if (read_file(ns_path, 4096, &ns, &len) == 0) {
        pw_sv t = pw_sv_trim((pw_sv){ns, len});
        if (t.n > 0)
            cfg->ns = pw_sv_dup(t);
        free(ns);
    }
    free(ns_path);
    if (!cfg->ns)
        cfg->ns = pw_xstrdup("default");
    *out = cfg;
    return 0;
}

int pw_k8s_config_load(const char *path, const char *context, pw_k8s_config **out, char **errmsg)
{
    if (path && *path)
        return load_kubeconfig(path, strchr(path, ':') != NULL, context, out, errmsg);
    const char *env = getenv("KUBECONFIG");
    if (env && *env)
        return load_kubeconfig(env, true, context, out, errmsg);
    const char *home = getenv("HOME");
    if (home && *home) {
        char *p = pw_xasprintf("%s/.kube/config", home);
        struct stat st;
        if (stat(p, &st) == 0) {
            int rc = load_kubeconfig(p, false, context, out, errmsg);
            free(p);
            return rc;
        }
        free(p);
    }
    return load_in_cluster(out, errmsg);
}
