/* x509.c: client certificates (auth.h), kube-apiserver's x509 authenticator: the chain a client
 * presented is verified with OpenSSL against the CAs of the client CA file for the SSL-client purpose
 * at the current time, and the leaf's subject names the user (common name) and groups
 * (organizations). The TLS layer only asks for the certificate and hands the chain over; so the CAs
 * that decide are this file's current ones. The file is kept as an X509_STORE, re-read when its
 * inode, size or mtime change (looked at most once a second); a file that does not load leaves the
 * previous store in force.
 *
 * Thread model: the store pointer is swapped under the client CA's lock; a verification holds its
 * own reference to the store it uses (X509_STORE_up_ref), so a reload never frees a store in use. */
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
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

#define CLIENTCA_CHECK_MS 1000
#define CLIENTCA_MAX (4u << 20)
#define MAX_CHAIN 16

struct auth_clientca {
    char *path;
    pthread_mutex_t mu;
    X509_STORE *store;
    struct stat st;
    int64_t checked_ms;
    unsigned reloads;
};

/* ---- the subject ---- */

/* The UTF-8 text of entry i of name (a new string) or NULL: also for a value with a NUL byte, which a
 * C string would cut short (a CN "admin\0.example.com" is not the user "admin"). */
static char *entry_text(const X509_NAME *name, int i)
{
    const ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    unsigned char *u = NULL;
    int n = v ? ASN1_STRING_to_UTF8(&u, v) : -1;
    if (n < 0)
        return NULL;
    char *s = memchr(u, '\0', (size_t)n) ? NULL : pw_xstrndup((const char *)u, (size_t)n);
    OPENSSL_free(u);
    return s;
}

/* Fills id from a parsed certificate; 0 or PW_EINVAL (no common name). */
static int subject_of(X509 *crt, struct pw_identity *id, char *why, size_t why_n)
{
    const X509_NAME *name = X509_get_subject_name(crt);
    char *cn = NULL;
    bool bad = false;
    for (int i = -1; (i = X509_NAME_get_index_by_NID(name, NID_commonName, i)) >= 0;) {
        free(cn);
        cn = entry_text(name, i); /* Go's pkix.Name keeps the last one */
        bad = !cn;
    }
    int n_org = 0;
    for (int i = -1; (i = X509_NAME_get_index_by_NID(name, NID_organizationName, i)) >= 0;)
        n_org++;
    char **orgs = pw_xcalloc((size_t)n_org + 1, sizeof *orgs);
    size_t n = 0;
    for (int i = -1; !bad && (i = X509_NAME_get_index_by_NID(name, NID_organizationName, i)) >= 0;) {
        orgs[n] = entry_text(name, i);
        bad = !orgs[n++];
    }
    if (bad || !cn || !*cn) {
        snprintf(why, why_n, "%s", bad ? "the client certificate's subject has a common name (CN) or organization "
                                         "(O) that is not text (a NUL byte, or no UTF-8 form)"
                                       : "the client certificate's subject has no common name (CN), which names the user");
        free(cn);
        for (size_t k = 0; k < n; k++)
            free(orgs[k]);
        free(orgs);
        return PW_EINVAL;
    }
    memset(id, 0, sizeof *id);
    id->user = cn;
    id->uid = pw_xstrdup("");
    id->groups = orgs;
    id->n_groups = n;
    pw_auth_identity_authenticated(id);
    id->extra = json_object();
    return 0;
}

int pw_auth_x509_subject(const unsigned char *der, size_t len, struct pw_identity *id, char *why, size_t why_n)
{
    const unsigned char *p = der;
    X509 *crt = der && len ? d2i_X509(NULL, &p, (long)len) : NULL;
    if (!crt) {
        snprintf(why, why_n, "the client certificate is not a DER X.509 certificate");
        return PW_EINVAL;
    }
    int rc = subject_of(crt, id, why, why_n);
    X509_free(crt);
    return rc;
}

/* ---- the CA file ---- */

/* Reads path into a new store; 0 with *out and *st, or PW_EIO/PW_EINVAL (why). */
static int store_read(const char *path, X509_STORE **out, struct stat *st, char *why, size_t why_n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, why_n, "cannot read the client CA file %s", path);
        return PW_EIO;
    }
    if (fstat(fileno(f), st) != 0 || (size_t)st->st_size > CLIENTCA_MAX) {
        fclose(f);
        snprintf(why, why_n, "the client CA file %s is not readable or over 4 MiB", path);
        return PW_EIO;
    }
    X509_STORE *store = X509_STORE_new();
    int n = 0;
    for (X509 *c; (c = PEM_read_X509(f, NULL, NULL, NULL)) != NULL; n++) {
        X509_STORE_add_cert(store, c);
        X509_free(c);
    }
    fclose(f);
    if (n == 0) {
        X509_STORE_free(store);
        snprintf(why, why_n, "the client CA file %s holds no PEM certificate", path);
        return PW_EINVAL;
    }
    *out = store;
    return 0;
}

int pw_auth_x509_init(pw_auth *a, const struct pw_auth_config *cfg, char *why, size_t why_n)
{
    if (!cfg->client_ca_file)
        return 0;
    struct auth_clientca *ca = pw_xcalloc(1, sizeof *ca);
    if (store_read(cfg->client_ca_file, &ca->store, &ca->st, why, why_n) != 0) {
        free(ca);
        return PW_EINVAL;
    }
    ca->path = pw_xstrdup(cfg->client_ca_file);
    pthread_mutex_init(&ca->mu, NULL);
    ca->checked_ms = pw_clock_mono_ms();
    a->clientca = ca;
    return 0;
}

void pw_auth_x509_fini(pw_auth *a)
{
    struct auth_clientca *ca = a->clientca;
    if (!ca)
        return;
    X509_STORE_free(ca->store);
    pthread_mutex_destroy(&ca->mu);
    free(ca->path);
    free(ca);
    a->clientca = NULL;
}

static bool st_changed(const struct stat *x, const struct stat *y)
{
    return x->st_ino != y->st_ino || x->st_size != y->st_size || x->st_mtim.tv_sec != y->st_mtim.tv_sec ||
           x->st_mtim.tv_nsec != y->st_mtim.tv_nsec;
}

/* The current store, re-read first when the file changed; a new reference (X509_STORE_free). */
static X509_STORE *current_store(struct auth_clientca *ca)
{
    pthread_mutex_lock(&ca->mu);
    int64_t now = pw_clock_mono_ms();
    if (now - ca->checked_ms >= CLIENTCA_CHECK_MS) {
        ca->checked_ms = now;
        struct stat st;
        if (stat(ca->path, &st) == 0 && st_changed(&st, &ca->st)) {
            X509_STORE *next = NULL;
            char why[512];
            if (store_read(ca->path, &next, &st, why, sizeof why) == 0) {
                X509_STORE_free(ca->store);
                ca->store = next;
                ca->st = st;
                ca->reloads++;
                PW_INFO("auth: client CA file %s reloaded", ca->path);
            } else {
                PW_WARN("auth: %s; the previous client CAs stay in force", why);
            }
        }
    }
    X509_STORE *s = ca->store;
    X509_STORE_up_ref(s);
    pthread_mutex_unlock(&ca->mu);
    return s;
}

unsigned pw_auth_client_ca_reloads(pw_auth *a)
{
    if (!a->clientca)
        return 0;
    pthread_mutex_lock(&a->clientca->mu);
    unsigned n = a->clientca->reloads;
    pthread_mutex_unlock(&a->clientca->mu);
    return n;
}

/* ---- verification ---- */

int pw_auth_user_x509(pw_auth *a, const unsigned char *const *der, const size_t *len, size_t n,
                      struct pw_identity *id, char *why, size_t why_n)
{
    if (n == 0 || !a->clientca)
        return PW_ENOTFOUND;
    if (n > MAX_CHAIN)
        n = MAX_CHAIN;
    X509 *leaf = NULL;
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const unsigned char *p = der[i];
        X509 *c = d2i_X509(NULL, &p, (long)len[i]);
        if (!c)
            rc = PW_EAUTH;
        else if (i == 0)
            leaf = c;
        else
            sk_X509_push(untrusted, c);
    }
    if (rc != 0) {
        snprintf(why, why_n, "the client certificate chain does not parse");
        X509_free(leaf);
        sk_X509_pop_free(untrusted, X509_free);
        return PW_EAUTH;
    }
    struct pw_identity who;
    char sub[256];
    bool named = subject_of(leaf, &who, sub, sizeof sub) == 0;
    X509_STORE *store = current_store(a->clientca);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = ctx && X509_STORE_CTX_init(ctx, store, leaf, untrusted) == 1 &&
             X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) == 1 && X509_verify_cert(ctx) == 1;
    if (!ok) {
        int err = ctx ? X509_STORE_CTX_get_error(ctx) : X509_V_ERR_UNSPECIFIED;
        snprintf(why, why_n, "the client certificate \"%s\" is not accepted: %s (verified against %s)",
                 named ? who.user : "", X509_verify_cert_error_string(err), a->clientca->path);
        rc = PW_EAUTH;
    } else if (!named) {
        snprintf(why, why_n, "%s", sub);
        rc = PW_EAUTH;
    }
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(leaf);
    sk_X509_pop_free(untrusted, X509_free);
    if (rc == 0)
        *id = who;
    else if (named)
        pw_identity_fini(&who);
    return rc;
}
