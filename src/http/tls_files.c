/* tls_files.c: HTTPS from a certificate and key file that may change under a running server
 * (http_int.h). libmicrohttpd asks for the certificate of each handshake through a GnuTLS retrieve
 * callback (MHD_OPTION_HTTPS_CERT_CALLBACK); the callback checks the files (at most once a second,
 * by mtime, size and inode) and loads a changed pair. Connections already open keep the generation
 * they shook hands with: every loaded generation stays alive until the server is freed (a rotation
 * is rare; each costs one certificate chain and key). GnuTLS's callback carries no user pointer, so
 * each server with TLS files takes one of a few slots, each with its own trampoline. */
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "http/http_int.h"

#define TLS_CHECK_MS 1000
#define TLS_MAX_CHAIN 16
#define TLS_MAX_FILE (1u << 20)

struct tls_gen {
    gnutls_pcert_st pcert[TLS_MAX_CHAIN];
    unsigned n;
    gnutls_privkey_t key;
    struct tls_gen *older;
};

struct http_tls {
    int slot;
    char *cert_path, *key_path;
    pthread_mutex_t mu;
    struct tls_gen *cur; /* newest; ->older the ones before */
    struct stat cert_st, key_st;
    int64_t checked_ms;
    unsigned reloads;
};

static pthread_mutex_t slots_mu = PTHREAD_MUTEX_INITIALIZER;
static http_tls *slots[HTTP_TLS_SLOTS];

static int file_datum(const char *path, gnutls_datum_t *d, struct stat *st)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return PW_EIO;
    if (fstat(fileno(f), st) != 0 || st->st_size <= 0 || (size_t)st->st_size > TLS_MAX_FILE) {
        fclose(f);
        return PW_EIO;
    }
    unsigned char *buf = pw_xmalloc((size_t)st->st_size + 1);
    size_t n = fread(buf, 1, (size_t)st->st_size, f);
    fclose(f);
    buf[n] = 0;
    d->data = buf;
    d->size = (unsigned)n;
    return 0;
}

static void gen_free(struct tls_gen *g)
{
    while (g) {
        struct tls_gen *o = g->older;
        for (unsigned i = 0; i < g->n; i++)
            gnutls_pcert_deinit(&g->pcert[i]);
        if (g->key)
            gnutls_privkey_deinit(g->key);
        free(g);
        g = o;
    }
}

/* Loads the pair into a new generation; 0 or PW_EIO/PW_EINVAL (why logged by the caller). The key
 * text is wiped before it is freed. */
static int gen_load(const char *cert_path, const char *key_path, struct tls_gen **out, struct stat *cst,
                    struct stat *kst)
{
    gnutls_datum_t cert = {0}, key = {0};
    if (file_datum(cert_path, &cert, cst) != 0)
        return PW_EIO;
    if (file_datum(key_path, &key, kst) != 0) {
        free(cert.data);
        return PW_EIO;
    }
    struct tls_gen *g = pw_xcalloc(1, sizeof *g);
    g->n = TLS_MAX_CHAIN;
    int rc = gnutls_pcert_list_import_x509_raw(g->pcert, &g->n, &cert, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0 || g->n == 0) {
        g->n = 0;
        rc = PW_EINVAL;
    } else if (gnutls_privkey_init(&g->key) < 0 ||
               gnutls_privkey_import_x509_raw(g->key, &key, GNUTLS_X509_FMT_PEM, NULL, 0) < 0) {
        rc = PW_EINVAL;
    } else {
        /* the key must be the certificate's: a half-written rotation is refused, not served */
        gnutls_pubkey_t pub = NULL;
        gnutls_datum_t a = {0}, b = {0};
        rc = PW_EINVAL;
        if (gnutls_pubkey_init(&pub) == 0 && gnutls_pubkey_import_privkey(pub, g->key, 0, 0) == 0 &&
            gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &a) == 0 &&
            gnutls_pubkey_export2(g->pcert[0].pubkey, GNUTLS_X509_FMT_DER, &b) == 0 && a.size == b.size &&
            memcmp(a.data, b.data, a.size) == 0)
            rc = 0;
        gnutls_free(a.data);
        gnutls_free(b.data);
        if (pub)
            gnutls_pubkey_deinit(pub);
    }
    memset(key.data, 0, key.size);
    free(key.data);
    free(cert.data);
    if (rc != 0) {
        gen_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

static bool st_changed(const struct stat *a, const struct stat *b)
{
    return a->st_ino != b->st_ino || a->st_size != b->st_size || a->st_mtim.tv_sec != b->st_mtim.tv_sec ||
           a->st_mtim.tv_nsec != b->st_mtim.tv_nsec;
}

/* Reloads the pair when a file changed (t->mu held). */
static void tls_maybe_reload(http_tls *t)
{
    int64_t now = pw_clock_mono_ms();
    if (now - t->checked_ms < TLS_CHECK_MS)
        return;
    t->checked_ms = now;
    struct stat cs, ks;
    if (stat(t->cert_path, &cs) != 0 || stat(t->key_path, &ks) != 0)
        return;
    if (!st_changed(&cs, &t->cert_st) && !st_changed(&ks, &t->key_st))
        return;
    struct tls_gen *g = NULL;
    if (gen_load(t->cert_path, t->key_path, &g, &cs, &ks) != 0) {
        /* probably caught between the two files' writes: keep serving the old pair, look again soon */
        PW_WARN("http: the changed TLS certificate %s / key %s does not load; still serving the previous one",
                t->cert_path, t->key_path);
        return;
    }
    g->older = t->cur;
    t->cur = g;
    t->cert_st = cs;
    t->key_st = ks;
    t->reloads++;
    PW_INFO("http: TLS certificate %s reloaded", t->cert_path);
}

static int tls_retrieve(int slot, gnutls_pcert_st **pcert, unsigned int *n, gnutls_privkey_t *key)
{
    pthread_mutex_lock(&slots_mu);
    http_tls *t = slots[slot];
    pthread_mutex_unlock(&slots_mu);
    if (!t)
        return -1;
    pthread_mutex_lock(&t->mu);
    tls_maybe_reload(t);
    *pcert = t->cur->pcert;
    *n = t->cur->n;
    *key = t->cur->key;
    pthread_mutex_unlock(&t->mu);
    return 0;
}

#define TLS_TRAMPOLINE(i)                                                                                      \
    static int tls_cb##i(gnutls_session_t s, const gnutls_datum_t *rdn, int nreqs,                             \
                         const gnutls_pk_algorithm_t *algos, int n_algos, gnutls_pcert_st **pcert,             \
                         unsigned int *n, gnutls_privkey_t *key)                                              \
    {                                                                                                          \
        (void)s;                                                                                               \
        (void)rdn;                                                                                             \
        (void)nreqs;                                                                                           \
        (void)algos;                                                                                           \
        (void)n_algos;                                                                                         \
        return tls_retrieve(i, pcert, n, key);                                                                 \
    }
TLS_TRAMPOLINE(0)
TLS_TRAMPOLINE(1)
TLS_TRAMPOLINE(2)
TLS_TRAMPOLINE(3)
static gnutls_certificate_retrieve_function2 *const trampolines[HTTP_TLS_SLOTS] = {tls_cb0, tls_cb1, tls_cb2,
                                                                                   tls_cb3};

int http_tls_new(const char *cert_path, const char *key_path, http_tls **out)
{
    http_tls *t = pw_xcalloc(1, sizeof *t);
    int rc = gen_load(cert_path, key_path, &t->cur, &t->cert_st, &t->key_st);
    if (rc != 0) {
        PW_ERROR("http: cannot load the TLS certificate %s and key %s (PEM; the key must match the "
                 "certificate)", cert_path, key_path);
        free(t);
        return rc;
    }
    pthread_mutex_lock(&slots_mu);
    t->slot = -1;
    for (int i = 0; i < HTTP_TLS_SLOTS && t->slot < 0; i++)
        if (!slots[i]) {
            slots[i] = t;
            t->slot = i;
        }
    pthread_mutex_unlock(&slots_mu);
    if (t->slot < 0) {
        PW_ERROR("http: more than %d servers with TLS files in one process", HTTP_TLS_SLOTS);
        gen_free(t->cur);
        free(t);
        return PW_EINVAL;
    }
    t->cert_path = pw_xstrdup(cert_path);
    t->key_path = pw_xstrdup(key_path);
    pthread_mutex_init(&t->mu, NULL);
    t->checked_ms = pw_clock_mono_ms();
    *out = t;
    return 0;
}

gnutls_certificate_retrieve_function2 *http_tls_callback(const http_tls *t)
{
    return trampolines[t->slot];
}

unsigned http_tls_reloads(http_tls *t)
{
    if (!t)
        return 0;
    pthread_mutex_lock(&t->mu);
    unsigned n = t->reloads;
    pthread_mutex_unlock(&t->mu);
    return n;
}

void http_tls_free(http_tls *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&slots_mu);
    slots[t->slot] = NULL;
    pthread_mutex_unlock(&slots_mu);
    gen_free(t->cur);
    pthread_mutex_destroy(&t->mu);
    free(t->cert_path);
    free(t->key_path);
    free(t);
}
