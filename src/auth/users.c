/* users.c: the user side of auth.h: the authenticators (kubernetes, token-file:PATH, none) tried in
 * order, and the authorizers (kubernetes: SubjectAccessReview; static: the token file's groups;
 * allow-all). The token file is kept as a table keyed by the SHA-256 of each token, so no token is
 * held in memory longer than the parse; it is re-read when its inode, size or mtime change (looked
 * at most once a second), and a file that no longer parses leaves the previous table in force. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "auth/auth.h"
#include "auth/auth_int.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "k8s/k8s.h"

enum auth_mode { MODE_KUBERNETES, MODE_TOKEN_FILE, MODE_NONE };

#define TOKENFILE_CHECK_MS 1000
#define TOKENFILE_MAX (8u << 20)
#define API_GROUP "prewarm.io"

struct auth_tokenfile {
    char *path;
    pthread_mutex_t mu;
    json_t *table; /* sha256 hex of token -> user */
    struct stat st;
    int64_t checked_ms;
};

/* ---- the token file ---- */

/* One CSV field starting at *p (the line ends at end): quoted ("" for a quote) or bare, copied into
 * a new string *out; *p moves past the field and its comma. 1 when a comma followed (another field
 * comes), 0 at the line's end, -1 on an unterminated quote. */
static int csv_field(const char **p, const char *end, char **out)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    char *v = pw_xmalloc((size_t)(end - s) + 1);
    size_t n = 0;
    if (s < end && *s == '"') {
        for (s++;; s++) {
            if (s >= end) {
                free(v);
                return -1;
            }
            if (*s == '"' && s + 1 < end && s[1] == '"')
                v[n++] = *s++;
            else if (*s == '"')
                break;
            else
                v[n++] = *s;
        }
        s++;
        while (s < end && *s != ',')
            s++;
    } else {
        while (s < end && *s != ',')
            v[n++] = *s++;
        while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            n--;
    }
    v[n] = '\0';
    *out = v;
    if (s < end) {
        *p = s + 1; /* the comma */
        return 1;
    }
    *p = s;
    return 0;
}

/* The fields of one line into f (more than 4 is an error): their count, or -1. */
static int csv_line(const char *p, const char *end, char *f[4])
{
    int n = 0, more = 1;
    while (more == 1) {
        if (n == 4 || (more = csv_field(&p, end, &f[n])) < 0) {
            for (int i = 0; i < n; i++)
                free(f[i]);
            return -1;
        }
        n++;
    }
    return n;
}

static json_t *groups_json(const char *csv)
{
    json_t *arr = json_array();
    const char *p = csv;
    while (*p) {
        size_t n = strcspn(p, ",");
        const char *s = p;
        size_t m = n;
        while (m && *s == ' ') {
            s++;
            m--;
        }
        while (m && s[m - 1] == ' ')
            m--;
        if (m)
            json_array_append_new(arr, json_stringn(s, m));
        p += n;
        if (*p == ',')
            p++;
    }
    return arr;
}

int pw_auth_tokenfile_parse(const char *text, size_t len, json_t **out, char *why, size_t why_n)
{
    json_t *table = json_object();
    const char *p = text, *end = text + len;
    for (int line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        if (le > p && le[-1] == '\r')
            le--;
        const char *q = p;
        while (q < le && (*q == ' ' || *q == '\t'))
            q++;
        if (q == le || *q == '#') {
            p = next;
            continue;
        }
        char *f[4] = {0};
        int n = csv_line(p, le, f);
        const char *bad = n < 0 ? "an unterminated quote or more than 4 columns"
                          : n < 3 ? "fewer than 3 columns (token, user name, user uid)"
                          : !f[0][0] ? "an empty token"
                          : !f[1][0] ? "an empty user name"
                          : memchr(p, '\0', (size_t)(le - p)) ? "a NUL byte"
                                                               : NULL;
        if (bad) {
            snprintf(why, why_n, "line %d: %s", line, bad);
            for (int i = 0; i < n; i++)
                free(f[i]);
            json_decref(table);
            return PW_EINVAL;
        }
        char key[65];
        pw_auth_sha256_hex("", 0, f[0], strlen(f[0]), key);
        if (json_object_get(table, key))
            PW_WARN("auth: token file line %d repeats an earlier token; the later line wins", line);
        json_object_set_new(table, key,
                            json_pack("{s:s, s:s, s:o}", "username", f[1], "uid", f[2], "groups",
                                      n == 4 ? groups_json(f[3]) : json_array()));
        memset(f[0], 0, strlen(f[0]));
        for (int i = 0; i < n; i++)
            free(f[i]);
        p = next;
    }
    *out = table;
    return 0;
}

/* Reads and parses the file; 0 with *table and *st, or PW_EIO/PW_EINVAL (why). */
static int tokenfile_read(const char *path, json_t **table, struct stat *st, char *why, size_t why_n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, why_n, "cannot read the token file %s", path);
        return PW_EIO;
    }
    if (fstat(fileno(f), st) != 0 || (size_t)st->st_size > TOKENFILE_MAX) {
        fclose(f);
        snprintf(why, why_n, "the token file %s is not readable or over 8 MiB", path);
        return PW_EIO;
    }
    char *buf = pw_xmalloc((size_t)st->st_size + 1);
    size_t n = fread(buf, 1, (size_t)st->st_size, f);
    fclose(f);
    char sub[256];
    int rc = pw_auth_tokenfile_parse(buf, n, table, sub, sizeof sub);
    memset(buf, 0, n);
    free(buf);
    if (rc != 0)
        snprintf(why, why_n, "the token file %s: %s", path, sub);
    return rc;
}

static bool st_changed(const struct stat *a, const struct stat *b)
{
    return a->st_ino != b->st_ino || a->st_size != b->st_size || a->st_mtim.tv_sec != b->st_mtim.tv_sec ||
           a->st_mtim.tv_nsec != b->st_mtim.tv_nsec;
}

/* The user of token in the file (a new reference) or NULL; re-reads a changed file first. */
static json_t *tokenfile_lookup(struct auth_tokenfile *tf, const char *token)
{
    pthread_mutex_lock(&tf->mu);
    int64_t now = pw_clock_mono_ms();
    if (now - tf->checked_ms >= TOKENFILE_CHECK_MS) {
        tf->checked_ms = now;
        struct stat st;
        if (stat(tf->path, &st) == 0 && st_changed(&st, &tf->st)) {
            json_t *t = NULL;
            char why[512];
            if (tokenfile_read(tf->path, &t, &st, why, sizeof why) == 0) {
                json_decref(tf->table);
                tf->table = t;
                tf->st = st;
                PW_INFO("auth: token file %s re-read: %zu tokens", tf->path, json_object_size(t));
            } else {
                PW_WARN("auth: %s; the previous tokens stay in force", why);
            }
        }
    }
    char key[65];
    pw_auth_sha256_hex("", 0, token, strlen(token), key);
    json_t *u = json_incref(json_object_get(tf->table, key));
    pthread_mutex_unlock(&tf->mu);
    return u;
}

static void tokenfile_free(struct auth_tokenfile *tf)
{
    if (!tf)
        return;
    json_decref(tf->table);
    pthread_mutex_destroy(&tf->mu);
    free(tf->path);
    free(tf);
}

/* ---- configuration ---- */

static int parse_modes(pw_auth *a, const char *spec, char *why, size_t why_n)
{
    char *copy = pw_xstrdup(spec);
    int rc = 0;
    char *save = NULL;
    for (char *m = strtok_r(copy, ",", &save); m && rc == 0; m = strtok_r(NULL, ",", &save)) {
        while (*m == ' ')
            m++;
        if (a->n_modes == AUTH_MAX_MODES) {
            snprintf(why, why_n, "--auth: more than %d modes", AUTH_MAX_MODES);
            rc = PW_EINVAL;
        } else if (strcmp(m, "kubernetes") == 0) {
            a->modes[a->n_modes++] = MODE_KUBERNETES;
        } else if (strcmp(m, "none") == 0) {
            a->modes[a->n_modes++] = MODE_NONE;
        } else if (strncmp(m, "token-file:", 11) == 0 && m[11]) {
            if (a->tokenfile) {
                snprintf(why, why_n, "--auth: one token-file: at most");
                rc = PW_EINVAL;
                break;
            }
            struct auth_tokenfile *tf = pw_xcalloc(1, sizeof *tf);
            tf->path = pw_xstrdup(m + 11);
            pthread_mutex_init(&tf->mu, NULL);
            tf->checked_ms = pw_clock_mono_ms();
            a->tokenfile = tf;
            rc = tokenfile_read(tf->path, &tf->table, &tf->st, why, why_n);
            if (rc == 0)
                a->modes[a->n_modes++] = MODE_TOKEN_FILE;
            else
                rc = PW_EINVAL;
        } else {
            snprintf(why, why_n, "--auth: unknown mode \"%s\" (kubernetes, token-file:PATH, none)", m);
            rc = PW_EINVAL;
        }
    }
    free(copy);
    if (rc == 0 && a->n_modes == 0) {
        snprintf(why, why_n, "--auth: no mode given (kubernetes, token-file:PATH, none)");
        rc = PW_EINVAL;
    }
    return rc;
}

static bool has_mode(const pw_auth *a, int mode)
{
    for (size_t i = 0; i < a->n_modes; i++)
        if (a->modes[i] == mode)
            return true;
    return false;
}

static const char *const authz_names[] = {[AUTHZ_ALLOW_ALL] = "allow-all", [AUTHZ_STATIC] = "static",
                                          [AUTHZ_KUBERNETES] = "kubernetes"};

int pw_auth_users_init(pw_auth *a, const struct pw_auth_config *cfg, char *why, size_t why_n)
{
    a->namespace_ = pw_xstrdup(cfg->namespace_ ? cfg->namespace_ : "default");
    a->authz = AUTHZ_KUBERNETES;
    if (!cfg->authn)
        return 0;
    int rc = parse_modes(a, cfg->authn, why, why_n);
    if (rc != 0)
        return rc;
    if (cfg->authz) {
        size_t i = 0;
        while (i < 3 && strcmp(authz_names[i], cfg->authz) != 0)
            i++;
        if (i == 3) {
            snprintf(why, why_n, "--authz: unknown authorizer \"%s\" (kubernetes, static, allow-all)", cfg->authz);
            return PW_EINVAL;
        }
        a->authz = (enum auth_authz)i;
    } else if (!has_mode(a, MODE_KUBERNETES)) {
        a->authz = has_mode(a, MODE_TOKEN_FILE) ? AUTHZ_STATIC : AUTHZ_ALLOW_ALL;
    }
    if (!a->client && (has_mode(a, MODE_KUBERNETES) || a->authz == AUTHZ_KUBERNETES)) {
        snprintf(why, why_n, "--auth kubernetes and --authz kubernetes need a Kubernetes client");
        return PW_EINVAL;
    }
    if (a->authz == AUTHZ_STATIC && !a->tokenfile)
        PW_WARN("auth: --authz static reads the groups prewarm:viewers/editors/admins, which only users of a "
                "token file or of the cluster's own groups carry");
    return 0;
}

void pw_auth_users_fini(pw_auth *a)
{
    tokenfile_free(a->tokenfile);
    free(a->namespace_);
}

bool pw_auth_allows_anonymous(const pw_auth *a)
{
    return has_mode(a, MODE_NONE);
}

const char *pw_auth_authorizer(const pw_auth *a)
{
    return authz_names[a->authz];
}

/* ---- authentication ---- */

void pw_identity_anonymous(struct pw_identity *id)
{
    json_t *u = json_pack("{s:s, s:s, s:[s]}", "username", "system:anonymous", "uid", "", "groups",
                          "system:unauthenticated");
    pw_auth_identity_from(u, id);
    json_decref(u);
}

int pw_auth_user(pw_auth *a, const char *authorization, struct pw_identity *id, char *why, size_t why_n)
{
    const char *token = pw_auth_bearer(authorization);
    bool unavailable = false;
    snprintf(why, why_n, "%s", authorization && !token ? "the Authorization header is not \"Bearer <token>\""
                               : token             ? "the token was not accepted"
                                                   : "a bearer token is required");
    for (size_t i = 0; i < a->n_modes; i++) {
        switch (a->modes[i]) {
        case MODE_NONE:
            /* alone it lets everyone in; after other modes only those who sent no credential */
            if (a->n_modes == 1 || !authorization) {
                pw_identity_anonymous(id);
                return 0;
            }
            break;
        case MODE_TOKEN_FILE:
            if (token) {
                json_t *u = tokenfile_lookup(a->tokenfile, token);
                if (u) {
                    pw_auth_identity_from(u, id);
                    json_decref(u);
                    pw_auth_identity_authenticated(id); /* as kube-apiserver adds it to token-file users */
                    return 0;
                }
            }
            break;
        case MODE_KUBERNETES:
            if (token) {
                char sub[512];
                int rc = pw_auth_review(a, token, NULL, id, sub, sizeof sub);
                if (rc == 0)
                    return 0;
                if (rc == PW_EUNAVAIL)
                    unavailable = true;
                snprintf(why, why_n, "%s", sub);
            }
            break;
        default:
            break;
        }
    }
    if (unavailable) {
        snprintf(why, why_n, "the cluster cannot review tokens now; retry later");
        return PW_EUNAVAIL;
    }
    return PW_EAUTH;
}

/* ---- authorization ---- */

static bool in_group(const struct pw_identity *id, const char *g)
{
    for (size_t i = 0; i < id->n_groups; i++)
        if (strcmp(id->groups[i], g) == 0)
            return true;
    return false;
}

static void describe(const struct pw_auth_attrs *at, char *out, size_t n)
{
    if (at->resource)
        snprintf(out, n, "%s %s.%s%s%s", at->verb, at->resource, API_GROUP, at->name ? " " : "",
                 at->name ? at->name : "");
    else
        snprintf(out, n, "%s %s", at->verb, at->path ? at->path : "");
}

/* static: viewers read, editors also create and delete tasks and policies, admins do anything. */
static int authorize_static(const struct pw_identity *id, const struct pw_auth_attrs *at, char *why, size_t why_n)
{
    int have = in_group(id, "prewarm:admins") ? 3 : in_group(id, "prewarm:editors") ? 2
                                                : in_group(id, "prewarm:viewers")  ? 1
                                                                                   : 0;
    bool read = strcmp(at->verb, "get") == 0 || strcmp(at->verb, "list") == 0 || strcmp(at->verb, "watch") == 0;
    bool editable = at->resource && (strcmp(at->resource, "tasks") == 0 || strcmp(at->resource, "policies") == 0);
    int need = read ? 1 : editable ? 2 : 3;
    if (have >= need)
        return 0;
    char what[256];
    describe(at, what, sizeof what);
    snprintf(why, why_n, "user \"%s\" may not %s: the static authorizer needs the group %s", id->user, what,
             need == 1 ? "prewarm:viewers, prewarm:editors or prewarm:admins"
             : need == 2 ? "prewarm:editors or prewarm:admins"
                         : "prewarm:admins");
    return PW_EFORBIDDEN;
}

static json_t *sar_spec(const pw_auth *a, const struct pw_identity *id, const struct pw_auth_attrs *at)
{
    json_t *groups = json_array();
    for (size_t i = 0; i < id->n_groups; i++)
        json_array_append_new(groups, json_string(id->groups[i]));
    json_t *spec = json_pack("{s:s, s:o}", "user", id->user, "groups", groups);
    if (id->uid && *id->uid)
        json_object_set_new(spec, "uid", json_string(id->uid));
    if (id->extra && json_object_size(id->extra))
        json_object_set(spec, "extra", id->extra);
    if (at->resource) {
        json_t *ra = json_pack("{s:s, s:s, s:s, s:s}", "namespace", a->namespace_, "verb", at->verb, "group",
                               API_GROUP, "resource", at->resource);
        if (at->name)
            json_object_set_new(ra, "name", json_string(at->name));
        json_object_set_new(spec, "resourceAttributes", ra);
    } else {
        json_object_set_new(spec, "nonResourceAttributes",
                            json_pack("{s:s, s:s}", "path", at->path ? at->path : "/", "verb", at->verb));
    }
    return spec;
}

static int authorize_kubernetes(pw_auth *a, const struct pw_identity *id, const struct pw_auth_attrs *at, char *why,
                                size_t why_n)
{
    json_t *spec = sar_spec(a, id, at);
    char *text = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
    char key[65];
    pw_auth_sha256_hex("sar", 4, text, strlen(text), key);
    free(text);
    int64_t now = pw_clock_mono_ms();
    json_t *e = pw_auth_cache_get(a, key, now, &a->access_reviews);
    if (!e) {
        json_t *body = json_pack("{s:s, s:s, s:o}", "apiVersion", "authorization.k8s.io/v1", "kind",
                                 "SubjectAccessReview", "spec", json_incref(spec));
        int status = 0;
        json_t *resp = NULL;
        int rc = pw_k8s_request(a->client, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body, NULL,
                                &status, &resp);
        json_decref(body);
        const json_t *st = json_object_get(resp, "status");
        if (rc != 0 || status != 201 || !json_is_object(st)) {
            const char *m = pw_k8s_status_message(resp);
            snprintf(why, why_n, "the SubjectAccessReview could not be made: %s",
                     rc != 0 ? pw_strerror(rc) : m ? m : "bad answer");
            PW_WARN("auth: %s (HTTP %d)", why, status);
            json_decref(resp);
            json_decref(spec);
            return PW_EUNAVAIL;
        }
        bool ok = json_is_true(json_object_get(st, "allowed")) && !json_is_true(json_object_get(st, "denied"));
        const char *reason = json_string_value(json_object_get(st, "reason"));
        const char *everr = json_string_value(json_object_get(st, "evaluationError"));
        e = json_pack("{s:I, s:b, s:s}", "exp", (json_int_t)(now + (ok ? a->ttl_ms : a->neg_ttl_ms)), "ok", ok,
                      "error", reason && *reason ? reason : everr && *everr ? everr : "");
        json_decref(resp);
        pw_auth_cache_put(a, key, json_incref(e));
    }
    json_decref(spec);
    int rc = 0;
    if (!json_is_true(json_object_get(e, "ok"))) {
        char what[256];
        describe(at, what, sizeof what);
        const char *reason = json_string_value(json_object_get(e, "error"));
        snprintf(why, why_n, "user \"%s\" may not %s in namespace %s%s%s", id->user, what, a->namespace_,
                 reason && *reason ? ": " : " (no RBAC rule allows it)", reason && *reason ? reason : "");
        rc = PW_EFORBIDDEN;
    }
    json_decref(e);
    return rc;
}

int pw_auth_authorize(pw_auth *a, const struct pw_identity *id, const struct pw_auth_attrs *attrs, char *why,
                      size_t why_n)
{
    switch (a->authz) {
    case AUTHZ_ALLOW_ALL:
        return 0;
    case AUTHZ_STATIC:
        return authorize_static(id, attrs, why, why_n);
    case AUTHZ_KUBERNETES:
    default:
        return authorize_kubernetes(a, id, attrs, why, why_n);
    }
}
