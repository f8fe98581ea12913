/* labels.c: the Kubernetes label-selector grammar (a lexer and a parser shaped like apimachinery's
 * labels.Parse), matching, and the API server's key/value/name validation rules (see labels.h). */
#include "base/labels.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"

enum op { OP_EXISTS, OP_NOT_EXISTS, OP_EQ, OP_NEQ, OP_IN, OP_NOTIN, OP_GT, OP_LT };

struct req {
    char *key;
    enum op op;
    char **vals;
    size_t nvals;
    long long num; /* for OP_GT / OP_LT */
};

struct pw_labelsel {
    struct req *reqs;
    size_t n;
};

/* ---- validation ---- */

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9] over s[0..n) (n > 0) */
static bool qualified_chars(const char *s, size_t n)
{
    if (!is_alnum(s[0]) || !is_alnum(s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

static bool dns_label_n(const char *s, size_t n)
{
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0 && i + 1 < n);
        if (!ok)
            return false;
    }
    return true;
}

bool pw_dns1123_label(const char *s)
{
    return s && dns_label_n(s, strlen(s));
}

static bool subdomain_n(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (!dns_label_n(s + start, i - start))
                return false;
            start = i + 1;
        }
    }
    return true;
}

bool pw_dns1123_subdomain(const char *s)
{
    return s && subdomain_n(s, strlen(s));
}

static const char NAME_MSG[] =
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
static const char PREFIX_MSG[] =
    "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
static const char VALUE_MSG[] =
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

static int fail(char **errmsg, const char *msg)
{
    if (errmsg)
        *errmsg = pw_xstrdup(msg);
    return PW_EINVAL;
}

int pw_label_key_valid(const char *key, char **errmsg)
{
    if (!key)
        return fail(errmsg, "name part must be non-empty");
    const char *slash = strchr(key, '/');
    const char *name = key;
    if (slash) {
        if (strchr(slash + 1, '/'))
            return fail(errmsg, "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and "
                                "must start and end with an alphanumeric character (e.g. 'MyName',  or "
                                "'my.name',  or '123-abc', regex used for validation is "
                                "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain "
                                "prefix and '/' (e.g. 'example.com/MyName')");
        size_t plen = (size_t)(slash - key);
        if (plen == 0)
            return fail(errmsg, "prefix part must be non-empty");
        if (plen > 253)
            return fail(errmsg, "prefix part must be no more than 253 characters");
        if (!subdomain_n(key, plen))
            return fail(errmsg, PREFIX_MSG);
        name = slash + 1;
    }
    size_t n = strlen(name);
    if (n == 0)
        return fail(errmsg, "name part must be non-empty");
    if (n > 63)
        return fail(errmsg, "name part must be no more than 63 characters");
    if (!qualified_chars(name, n))
        return fail(errmsg, NAME_MSG);
    return 0;
}

int pw_label_value_valid(const char *value, char **errmsg)
{
    if (!value)
        return 0;
    size_t n = strlen(value);
    if (n > 63)
        return fail(errmsg, "must be no more than 63 characters");
    if (n > 0 && !qualified_chars(value, n))
        return fail(errmsg, VALUE_MSG);
    return 0;
}

/* ---- the lexer ---- */

enum tok { T_END, T_IDENT, T_COMMA, T_EQ, T_DEQ, T_NEQ, T_NOT, T_IN, T_NOTIN, T_LPAR, T_RPAR, T_GT, T_LT };

struct lexer {
    const char *s;
    size_t pos;
    /* the current token */
    enum tok t;
    char *text; /* owned for T_IDENT */
};

static bool special(char c)
{
    return c == ',' || c == '=' || c == '!' || c == '(' || c == ')' || c == '<' || c == '>' || isspace((unsigned char)c);
}

static void lex_next(struct lexer *lx)
{
    free(lx->text);
    lx->text = NULL;
    while (lx->s[lx->pos] && isspace((unsigned char)lx->s[lx->pos]))
        lx->pos++;
    const char *p = lx->s + lx->pos;
    if (!*p) {
        lx->t = T_END;
        return;
    }
    static const struct {
        const char *text;
        enum tok t;
    } SYMS[] = {{"==", T_DEQ}, {"!=", T_NEQ}, {"=", T_EQ}, {"!", T_NOT}, {",", T_COMMA},
                {"(", T_LPAR}, {")", T_RPAR}, {">", T_GT},  {"<", T_LT}};
    for (size_t i = 0; i < sizeof(SYMS) / sizeof(SYMS[0]); i++) {
        size_t n = strlen(SYMS[i].text);
        if (strncmp(p, SYMS[i].text, n) == 0) {
            lx->t = SYMS[i].t;
            lx->pos += n;
            return;
        }
    }
    size_t n = 0;
    while (p[n] && !special(p[n]))
        n++;
    lx->pos += n;
    lx->text = pw_xstrndup(p, n);
    if (strcmp(lx->text, "in") == 0)
        lx->t = T_IN;
    else if (strcmp(lx->text, "notin") == 0)
        lx->t = T_NOTIN;
    else
        lx->t = T_IDENT;
}

static const char *tok_name(const struct lexer *lx)
{
    static const char *const NAMES[] = {"end of string", "identifier", "','", "'='", "'=='", "'!='", "'!'",
                                        "'in'", "'notin'", "'('", "')'", "'>'", "'<'"};
    if (lx->t == T_IDENT && lx->text)
        return lx->text;
    return NAMES[lx->t];
}

__attribute__((format(printf, 2, 3))) static int perr(char **errmsg, const char *fmt, ...)
{
    if (errmsg) {
        char b[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b, sizeof(b), fmt, ap);
        va_end(ap);
        *errmsg = pw_xstrdup(b);
    }
    return PW_EINVAL;
}

static void req_fini(struct req *r)
{
    free(r->key);
    for (size_t i = 0; i < r->nvals; i++)
        free(r->vals[i]);
    free(r->vals);
}

void pw_labelsel_free(pw_labelsel *sel)
{
    if (!sel)
        return;
    for (size_t i = 0; i < sel->n; i++)
        req_fini(&sel->reqs[i]);
    free(sel->reqs);
    free(sel);
}

static void add_val(struct req *r, const char *v)
{
    r->vals = pw_xrealloc(r->vals, (r->nvals + 1) * sizeof(*r->vals));
    r->vals[r->nvals++] = pw_xstrdup(v);
}

static int check_value(const char *key, const char *v, char **errmsg)
{
    char *why = NULL;
    if (pw_label_value_valid(v, &why) != 0) {
        if (errmsg)
            *errmsg = pw_xasprintf("values[0][%s]: Invalid value: \"%s\": %s", key, v, why);
        free(why);
        return PW_EINVAL;
    }
    return 0;
}

/* Parses "(v1, v2, ...)" after in/notin; the current token is '('. */
static int parse_set(struct lexer *lx, struct req *r, char **errmsg)
{
    if (lx->t != T_LPAR)
        return perr(errmsg, "unable to parse requirement: found '%s', expected: '('", tok_name(lx));
    lex_next(lx);
    if (lx->t == T_RPAR) { /* "k in ()" is the set of the empty value, as apimachinery reads it */
        add_val(r, "");
        lex_next(lx);
        return 0;
    }
    for (;;) {
        if (lx->t == T_IDENT) {
            if (check_value(r->key, lx->text, errmsg))
                return PW_EINVAL;
            add_val(r, lx->text);
            lex_next(lx);
        } else if (lx->t == T_COMMA || lx->t == T_RPAR) {
            add_val(r, ""); /* an empty member, as in "(a,,b)" */
        } else {
            return perr(errmsg, "unable to parse requirement: found '%s', expected: ',', ')' or identifier",
                        tok_name(lx));
        }
        if (lx->t == T_RPAR) {
            lex_next(lx);
            return 0;
        }
        if (lx->t != T_COMMA)
            return perr(errmsg, "unable to parse requirement: found '%s', expected: ',' or ')'", tok_name(lx));
        lex_next(lx);
    }
}

static int parse_req(struct lexer *lx, struct req *r, char **errmsg)
{
    bool neg = false;
    if (lx->t == T_NOT) {
        neg = true;
        lex_next(lx);
    }
    if (lx->t != T_IDENT)
        return perr(errmsg, "unable to parse requirement: found '%s', expected: identifier", tok_name(lx));
    char *why = NULL;
    if (pw_label_key_valid(lx->text, &why) != 0) {
        perr(errmsg, "unable to parse requirement: key: Invalid value: \"%s\": %s", lx->text, why);
        free(why);
        return PW_EINVAL;
    }
    r->key = pw_xstrdup(lx->text);
    lex_next(lx);
    if (neg) {
        r->op = OP_NOT_EXISTS;
        if (lx->t != T_END && lx->t != T_COMMA)
            return perr(errmsg, "unable to parse requirement: found '%s', expected: ',' or end of string",
                        tok_name(lx));
        return 0;
    }
    switch (lx->t) {
    case T_END:
    case T_COMMA:
        r->op = OP_EXISTS;
        return 0;
    case T_IN:
    case T_NOTIN:
        r->op = lx->t == T_IN ? OP_IN : OP_NOTIN;
        lex_next(lx);
        return parse_set(lx, r, errmsg);
    case T_EQ:
    case T_DEQ:
    case T_NEQ:
    case T_GT:
    case T_LT: {
        enum tok op = lx->t;
        r->op = op == T_NEQ ? OP_NEQ : op == T_GT ? OP_GT : op == T_LT ? OP_LT : OP_EQ;
        lex_next(lx);
        const char *v = "";
        if (lx->t == T_IDENT)
            v = lx->text;
        else if (lx->t != T_END && lx->t != T_COMMA)
            return perr(errmsg, "unable to parse requirement: found '%s', expected: identifier", tok_name(lx));
        if (r->op == OP_GT || r->op == OP_LT) {
            char *end;
            errno = 0;
            r->num = strtoll(v, &end, 10);
            if (!*v || *end || errno)
                return perr(errmsg, "unable to parse requirement: values[0]: Invalid value: \"%s\": for 'Gt', 'Lt' "
                                    "operators, the value must be an integer", v);
        } else if (check_value(r->key, v, errmsg)) {
            return PW_EINVAL;
        }
        add_val(r, v);
        if (lx->t == T_IDENT)
            lex_next(lx);
        return 0;
    }
    default:
        return perr(errmsg,
                    "unable to parse requirement: found '%s', expected: in, notin, =, ==, !=, gt, lt",
                    tok_name(lx));
    }
}

int pw_labelsel_parse(const char *text, pw_labelsel **out, char **errmsg)
{
    pw_labelsel *sel = pw_xcalloc(1, sizeof(*sel));
    struct lexer lx = {text ? text : "", 0, T_END, NULL};
    lex_next(&lx);
    int rc = 0;
    while (lx.t != T_END) {
        sel->reqs = pw_xrealloc(sel->reqs, (sel->n + 1) * sizeof(*sel->reqs));
        struct req *r = &sel->reqs[sel->n++];
        memset(r, 0, sizeof(*r));
        rc = parse_req(&lx, r, errmsg);
        if (rc)
            break;
        if (lx.t == T_COMMA) {
            lex_next(&lx);
            if (lx.t == T_END) {
                rc = perr(errmsg, "found '%s', expected: identifier after ','", "end of string");
                break;
            }
        } else if (lx.t != T_END) {
            rc = perr(errmsg, "found '%s', expected: ',' or 'end of string'", tok_name(&lx));
            break;
        }
    }
    free(lx.text);
    if (rc) {
        pw_labelsel_free(sel);
        return rc;
    }
    *out = sel;
    return 0;
}

bool pw_labelsel_empty(const pw_labelsel *sel)
{
    return !sel || sel->n == 0;
}

static bool in_set(const struct req *r, const char *v)
{
    for (size_t i = 0; i < r->nvals; i++)
        if (strcmp(r->vals[i], v) == 0)
            return true;
    return false;
}

static bool req_matches(const struct req *r, const json_t *labels)
{
    json_t *jv = json_is_object(labels) ? json_object_get(labels, r->key) : NULL;
    const char *v = json_string_value(jv);
    bool has = v != NULL;
    switch (r->op) {
    case OP_EXISTS:
        return has;
    case OP_NOT_EXISTS:
        return !has;
    case OP_EQ:
    case OP_IN:
        return has && in_set(r, v);
    case OP_NEQ:
    case OP_NOTIN:
        return !has || !in_set(r, v);
    case OP_GT:
    case OP_LT: {
        if (!has)
            return false;
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (!*v || *end || errno)
            return false;
        return r->op == OP_GT ? n > r->num : n < r->num;
    }
    }
    return false;
}

bool pw_labelsel_matches(const pw_labelsel *sel, const json_t *labels)
{
    if (!sel)
        return true;
    for (size_t i = 0; i < sel->n; i++)
        if (!req_matches(&sel->reqs[i], labels))
            return false;
    return true;
}
