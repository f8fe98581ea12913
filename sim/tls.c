/* tls.c: kubesim's TLS material, made fresh at every start with OpenSSL 3: a self-signed CA
 * ("kubesim-ca"), a serving certificate for 127.0.0.1, ::1 and localhost, and a client certificate
 * for CN "kubesim-admin", O "system:masters" (what a kubeadm admin.conf carries). Keys are EC P-256:
 * Go's crypto/tls (kubectl), Python's ssl module and GnuTLS (libmicrohttpd) all accept them, and they
 * are made in microseconds where RSA 2048 takes a noticeable part of a second.
 *
 * Every certificate is valid from one hour ago (clock skew) for one year. Everything produced is PEM
 * text owned by struct sim_tls.
 *
 * Thread model: sim_tls_generate() uses only its own objects; safe from any thread. */
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "sim/sim.h"

enum { SIM_TLS_DAYS = 365, SIM_TLS_BACKDATE_S = 3600 };

/* One certificate to make: its subject, who signs it and the extensions it carries (name, value as
 * X509V3_EXT_conf_nid takes them). */
struct cert_spec {
    const char *cn;
    const char *org; /* NULL: none */
    const char *ext[5][2];
};

static const struct cert_spec ca_spec = {
    .cn = "kubesim-ca",
    .ext = {{"basicConstraints", "critical,CA:TRUE"},
            {"keyUsage", "critical,digitalSignature,keyEncipherment,keyCertSign"},
            {"subjectKeyIdentifier", "hash"}},
};
static const struct cert_spec server_spec = {
    .cn = "kubesim",
    .ext = {{"basicConstraints", "critical,CA:FALSE"},
            {"keyUsage", "critical,digitalSignature,keyEncipherment"},
            {"extendedKeyUsage", "serverAuth"},
            {"subjectAltName", "IP:127.0.0.1,IP:0:0:0:0:0:0:0:1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default"},
            {"authorityKeyIdentifier", "keyid:always"}},
};
static const struct cert_spec client_spec = {
    .cn = "kubesim-admin",
    .org = "system:masters",
    .ext = {{"basicConstraints", "critical,CA:FALSE"},
            {"keyUsage", "critical,digitalSignature,keyEncipherment"},
            {"extendedKeyUsage", "clientAuth"},
            {"authorityKeyIdentifier", "keyid:always"}},
};

/* A new EC P-256 key, or NULL. Caller frees with EVP_PKEY_free. */
static EVP_PKEY *new_key(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* The text written to a memory BIO, as a new string (caller frees), or NULL when empty. */
static char *bio_text(BIO *bio)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n <= 0)
        return NULL;
    return pw_xstrndup(data, (size_t)n);
}

static char *cert_pem(X509 *crt)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *s = NULL;
    if (bio && PEM_write_bio_X509(bio, crt) == 1)
        s = bio_text(bio);
    BIO_free(bio);
    return s;
}

static char *key_pem(EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *s = NULL;
    if (bio && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1)
        s = bio_text(bio);
    BIO_free(bio);
    return s;
}

/* A random positive 127-bit serial number, as CAs use. */
static int set_serial(X509 *crt)
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return PW_EIO;
    raw[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(raw, sizeof raw, NULL);
    int rc = (bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(crt))) ? 0 : PW_EIO;
    BN_free(bn);
    return rc;
}

/* Makes the certificate of spec for key, signed by issuer/issuer_key (both NULL: self-signed).
 * Returns the certificate (caller frees with X509_free) or NULL. */
static X509 *make_cert(const struct cert_spec *spec, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key)
{
    X509 *crt = X509_new();
    if (!crt)
        return NULL;
    bool ok = X509_set_version(crt, 2) == 1 && set_serial(crt) == 0;
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(crt), -SIM_TLS_BACKDATE_S) != NULL;
    ok = ok && X509_gmtime_adj(X509_getm_notAfter(crt), (long)SIM_TLS_DAYS * 86400) != NULL;
    ok = ok && X509_set_pubkey(crt, key) == 1;

    X509_NAME *name = X509_get_subject_name(crt);
    if (ok && spec->org)
        ok = X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)spec->org, -1, -1, 0) == 1;
    ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)spec->cn, -1, -1, 0) == 1;
    if (!issuer) {
        issuer = crt;
        issuer_key = key;
    }
    ok = ok && X509_set_issuer_name(crt, X509_get_subject_name(issuer)) == 1;

    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, crt, NULL, NULL, 0);
    for (size_t i = 0; ok && i < sizeof spec->ext / sizeof spec->ext[0] && spec->ext[i][0]; i++) {
        X509_EXTENSION *ext = X509V3_EXT_conf(NULL, &v3, spec->ext[i][0], spec->ext[i][1]);
        ok = ext && X509_add_ext(crt, ext, -1) == 1;
        X509_EXTENSION_free(ext);
    }
    ok = ok && X509_sign(crt, issuer_key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(crt);
        return NULL;
    }
    return crt;
}

/* Makes a key and its certificate, and stores both as PEM. Returns 0 or PW_EIO. On success *crt_out
 * and *key_out (when not NULL) get the objects, owned by the caller. */
static int make_pair(const struct cert_spec *spec, X509 *issuer, EVP_PKEY *issuer_key, char **cert_text,
                     char **key_text, X509 **crt_out, EVP_PKEY **key_out)
{
    EVP_PKEY *key = new_key();
    X509 *crt = key ? make_cert(spec, key, issuer, issuer_key) : NULL;
    char *c = crt ? cert_pem(crt) : NULL;
    char *k = c ? key_pem(key) : NULL;
    if (!k) {
        free(c);
        X509_free(crt);
        EVP_PKEY_free(key);
        return PW_EIO;
    }
    *cert_text = c;
    *key_text = k;
    if (crt_out)
        *crt_out = crt;
    else
        X509_free(crt);
    if (key_out)
        *key_out = key;
    else
        EVP_PKEY_free(key);
    return 0;
}

int sim_tls_generate(struct sim_tls *out)
{
    struct sim_tls t = {0};
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    int rc = make_pair(&ca_spec, NULL, NULL, &t.ca_cert, &t.ca_key, &ca, &ca_key);
    if (rc == 0)
        rc = make_pair(&server_spec, ca, ca_key, &t.server_cert, &t.server_key, NULL, NULL);
    if (rc == 0)
        rc = make_pair(&client_spec, ca, ca_key, &t.client_cert, &t.client_key, NULL, NULL);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    if (rc != 0) {
        PW_ERROR("tls: could not generate the certificates (OpenSSL error)");
        sim_tls_fini(&t);
        return rc;
    }
    *out = t;
    return 0;
}

void sim_tls_fini(struct sim_tls *t)
{
    if (!t)
        return;
    free(t->ca_cert);
    free(t->ca_key);
    free(t->server_cert);
    free(t->server_key);
    free(t->client_cert);
    free(t->client_key);
    memset(t, 0, sizeof *t);
}
