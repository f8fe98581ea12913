/* tokenfile.c: the static token file of kube-apiserver's --token-auth-file (see tokenfile.h): a small
 * RFC 4180 reader with Go encoding/csv's rules and messages, and the lookup. */
#include "sim/tokenfile.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/mem.h"

#define FILE_MAX (16u << 20)

struct record {
    char *token, *user, *uid;
    char *groups; /* NULL when the record has no fourth field */
};

struct sim_tokenfile {
    struct record *v;
    size_t n, cap;
};

/* The reader's position. */
struct csv {
    const char *p, *end;
    int line; /* 1-based line of p */
    const char *line_start;
};

static int csv_error(const struct csv *c, const char *name, const char *what, char **err)
{
    if (err)
        *err = pw_xasprintf("%s: parse error on line %d, column %d: %s", name, c->line,
                            (int)(c->p - c->line_start) + 1, what);
    return PW_EINVAL;
}

/* Reads one field into f; *last says the record ended after it. 0 or PW_EINVAL. */
static int csv_field(struct csv *c, const char *name, pw_buf *f, bool *last, char **err)
{
    pw_buf_reset(f);
    pw_buf_puts(f, "");
    if (c->p < c->end && *c->p == '"') {
        c->p++;
        for (;;) {
            if (c->p >= c->end)
                return csv_error(c, name, "extraneous or missing \" in quoted-field", err);
            if (*c->p == '"') {
                if (c->p + 1 < c->end && c->p[1] == '"') {
                    pw_buf_append(f, "\"", 1);
                    c->p += 2;
                    continue;
                }
                c->p++;
                break;
            }
            if (*c->p == '\n') {
                c->line++;
                c->line_start = c->p + 1;
            }
            pw_buf_append(f, c->p++, 1);
        }
        if (c->p < c->end && *c->p == '\r' && c->p + 1 < c->end && c->p[1] == '\n')
            c->p++;
        if (c->p < c->end && *c->p != ',' && *c->p != '\n')
            return csv_error(c, name, "extraneous or missing \" in quoted-field", err);
    } else {
        while (c->p < c->end && *c->p != ',' && *c->p != '\n') {
            if (*c->p == '"')
                return csv_error(c, name, "bare \" in non-quoted-field", err);
            if (!(*c->p == '\r' && c->p + 1 < c->end && c->p[1] == '\n'))
                pw_buf_append(f, c->p, 1);
            c->p++;
        }
    }
    *last = c->p >= c->end || *c->p == '\n';
    if (c->p < c->end) {
        if (*c->p == '\n') {
            c->line++;
            c->line_start = c->p + 1;
        }
        c->p++;
    }
    return 0;
}

static void add_record(struct sim_tokenfile *t, char **fields, size_t nf)
{
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->v[i].token, fields[0]) == 0) { /* the later record wins */
            free(t->v[i].token);
            free(t->v[i].user);
            free(t->v[i].uid);
            free(t->v[i].groups);
            t->v[i] = (struct record){fields[0], fields[1], fields[2], nf >= 4 ? fields[3] : NULL};
            fields[0] = fields[1] = fields[2] = NULL;
            if (nf >= 4)
                fields[3] = NULL;
            return;
        }
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->v = pw_xrealloc(t->v, t->cap * sizeof(*t->v));
    }
    t->v[t->n++] = (struct record){fields[0], fields[1], fields[2], nf >= 4 ? fields[3] : NULL};
    fields[0] = fields[1] = fields[2] = NULL;
    if (nf >= 4)
        fields[3] = NULL;
}

/* Reads one record's fields (the first four kept in fields, owned); *nf gets the field count. */
static int csv_record(struct csv *c, const char *name, char *fields[4], size_t *nf, char **err)
{
    pw_buf f;
    pw_buf_init(&f, FILE_MAX);
    bool last = false;
    size_t n = 0;
    int rc = 0;
    while (!last) {
        rc = csv_field(c, name, &f, &last, err);
        if (rc)
            break;
        if (n < 4)
            fields[n] = pw_xstrdup(f.p);
        n++;
    }
    pw_buf_fini(&f);
    *nf = n;
    return rc;
}

int sim_tokenfile_parse(const char *name, const char *text, size_t len, sim_tokenfile **out, char **err)
{
    struct sim_tokenfile *t = pw_xcalloc(1, sizeof(*t));
    struct csv c = {text, text + len, 1, text};
    int rc = 0;
    while (c.p < c.end && rc == 0) {
        if (*c.p == '\n' || (*c.p == '\r' && c.p + 1 < c.end && c.p[1] == '\n')) { /* blank lines are skipped */
            c.p += *c.p == '\r' ? 2 : 1;
            c.line++;
            c.line_start = c.p;
            continue;
        }
        char *fields[4] = {NULL, NULL, NULL, NULL};
        size_t nf = 0;
        rc = csv_record(&c, name, fields, &nf, err);
        if (rc == 0 && nf < 3) {
            if (err)
                *err = pw_xasprintf("token file '%s' must have at least 3 columns (token, user name, user uid), "
                                    "found %zu",
                                    name, nf);
            rc = PW_EINVAL;
        }
        if (rc == 0 && *fields[0]) /* an empty token is skipped, as the real reader warns and skips */
            add_record(t, fields, nf);
        for (size_t i = 0; i < 4; i++)
            free(fields[i]);
    }
    if (rc) {
        sim_tokenfile_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int sim_tokenfile_load(const char *path, sim_tokenfile **out, char **err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err)
            *err = pw_xasprintf("cannot read token file '%s'", path);
        return PW_EIO;
    }
    pw_buf b;
    pw_buf_init(&b, FILE_MAX);
    pw_buf_puts(&b, "");
    char chunk[8192];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = pw_buf_append(&b, chunk, n);
    bool bad = ferror(f);
    fclose(f);
    if (rc == 0 && bad)
        rc = PW_EIO;
    if (rc) {
        if (err)
            *err = pw_xasprintf(rc == PW_EIO ? "cannot read token file '%s'" : "token file '%s' is over 16 MiB", path);
        pw_buf_fini(&b);
        return rc == PW_EIO ? PW_EIO : PW_ETOOLARGE;
    }
    rc = sim_tokenfile_parse(path, b.p, b.len, out, err);
    pw_buf_fini(&b);
    return rc;
}

void sim_tokenfile_free(sim_tokenfile *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].token);
        free(t->v[i].user);
        free(t->v[i].uid);
        free(t->v[i].groups);
    }
    free(t->v);
    free(t);
}

size_t sim_tokenfile_count(const sim_tokenfile *t)
{
    return t ? t->n : 0;
}

json_t *sim_tokenfile_user(const sim_tokenfile *t, const char *token)
{
    if (!t || !token)
        return NULL;
    for (size_t i = 0; i < t->n; i++) {
        const struct record *r = &t->v[i];
        if (strcmp(r->token, token) != 0)
            continue;
        json_t *groups = json_array();
        bool authed = false;
        if (r->groups) {
            for (const char *g = r->groups;;) { /* strings.Split(field, ",") */
                size_t k = strcspn(g, ",");
                json_array_append_new(groups, json_stringn(g, k));
                authed = authed || (k == 20 && strncmp(g, "system:authenticated", 20) == 0);
                if (!g[k])
                    break;
                g += k + 1;
            }
        }
        if (!authed)
            json_array_append_new(groups, json_string("system:authenticated"));
        return json_pack("{s:s, s:s, s:o}", "username", r->user, "uid", r->uid, "groups", groups);
    }
    return NULL;
}
