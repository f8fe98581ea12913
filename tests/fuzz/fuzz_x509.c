/* fuzz_x509.c: client certificates (src/auth/x509.c): the subject -> user and groups conversion
 * (pw_auth_x509_subject) and the verification of a presented chain against a client CA file
 * (pw_auth_user_x509). A CA (EC P-256) is made once and written to a temporary client CA file.
 * Input: byte 0 picks the form of the rest:
 *   0: raw DER bytes, the leaf of a one-certificate chain;
 *   1: PEM text, up to 4 certificates: the chain as presented;
 *   2+: a subject built from the bytes, in a certificate the CA signs: entries of [tag][length][bytes],
 *       tag % 4 picks CN or O as UTF-8 (the bytes must be valid UTF-8), or CN / O / OU of a raw ASN.1
 *       string type (BMP, Universal, T61, IA5, Printable, UTF8) from tag / 4; byte 0's bit 2 adds an
 *       extendedKeyUsage of serverAuth only (not for clients), bit 3 an expired validity.
 * Checks: a refusal says why; an accepted subject names a non-empty user, its groups end with exactly
 * one system:authenticated; for a subject built of UTF-8 entries, the user is the last CN byte for
 * byte and the groups are the O values in order; a chain the CA signed for clients, in its validity,
 * verifies exactly when its subject converts, to the same identity; one for servers only or expired
 * does not. */
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <unistd.h>

#include "auth/auth.h"
#include "fuzz.h"

static EVP_PKEY *ca_key, *leaf_key;
static X509 *ca_cert;
static pw_auth *auth;

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!e)
        abort();
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
}

static void setup(void)
{
    ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ca_cert = X509_new();
    if (!ca_key || !leaf_key || !ca_cert)
        abort();
    X509_set_version(ca_cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(ca_cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(ca_cert), -86400);
    X509_gmtime_adj(X509_getm_notAfter(ca_cert), 86400L * 3650);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(ca_cert), "CN", MBSTRING_UTF8, (const unsigned char *)"fuzz-ca",
                               -1, -1, 0);
    X509_set_issuer_name(ca_cert, X509_get_subject_name(ca_cert));
    X509_set_pubkey(ca_cert, ca_key);
    add_ext(ca_cert, ca_cert, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(ca_cert, ca_cert, NID_key_usage, "critical,keyCertSign,digitalSignature");
    if (!X509_sign(ca_cert, ca_key, EVP_sha256()))
        abort();
    char path[] = "/tmp/pw-fuzz-x509-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f || !PEM_write_X509(f, ca_cert))
        abort();
    fclose(f);
    struct pw_auth_config cfg = {.client_ca_file = path};
    char why[256];
    if (pw_auth_new(&cfg, &auth, why, sizeof why) != 0)
        abort();
    unlink(path); /* read: the store stays in force while the file is gone */
}

/* The conversion's contract on any accepted identity: a user, and system:authenticated among the
 * groups. */
static void check_identity(const struct pw_identity *id)
{
    if (!id->user || !*id->user || !id->uid || !id->extra || id->n_groups < 1)
        abort();
    bool authenticated = false;
    for (size_t i = 0; i < id->n_groups; i++) {
        if (!id->groups[i])
            abort();
        authenticated |= strcmp(id->groups[i], "system:authenticated") == 0;
    }
    if (!authenticated)
        abort();
}

static bool same_identity(const struct pw_identity *a, const struct pw_identity *b)
{
    if (strcmp(a->user, b->user) != 0 || a->n_groups != b->n_groups)
        return false;
    for (size_t i = 0; i < a->n_groups; i++)
        if (strcmp(a->groups[i], b->groups[i]) != 0)
            return false;
    return true;
}

/* What a built subject must give: want 1: this user and groups, 0: a refusal, -1: not known. */
struct want {
    int accept;
    const char *user;
    size_t user_n;
    char **groups;
    size_t n_groups;
};

/* The subject conversion of der[0], then the verification of the chain: want_verify 0 means it must
 * not verify, -1 that it may, either way it must agree with the conversion. */
static void run(const unsigned char *const *der, const size_t *len, size_t n, int want_verify, const struct want *w)
{
    struct pw_identity id;
    char why[512] = "";
    int rc = pw_auth_x509_subject(der[0], len[0], &id, why, sizeof why);
    if (w && w->accept >= 0 && (rc == 0) != (w->accept == 1))
        abort(); /* a good UTF-8 subject refused, or one with a NUL byte accepted */
    if (rc == 0) {
        check_identity(&id);
        if (w && w->accept == 1) {
            if (strlen(id.user) != w->user_n || memcmp(id.user, w->user, w->user_n) != 0)
                abort(); /* the user is the last CN, every byte of it */
            /* the O values in order, then system:authenticated unless an O is that already */
            bool has = false;
            for (size_t i = 0; i < w->n_groups; i++)
                has |= strcmp(w->groups[i], "system:authenticated") == 0;
            if (id.n_groups != w->n_groups + !has)
                abort();
            for (size_t i = 0; i < w->n_groups; i++)
                if (strcmp(id.groups[i], w->groups[i]) != 0)
                    abort();
        }
    } else if (!why[0]) {
        abort();
    }
    struct pw_identity vid;
    char vwhy[512] = "";
    int vrc = pw_auth_user_x509(auth, der, len, n, &vid, vwhy, sizeof vwhy);
    if (vrc == 0) {
        check_identity(&vid);
        if (rc != 0 || !same_identity(&id, &vid))
            abort(); /* verified means the subject's identity */
        if (want_verify == 0)
            abort(); /* a server-only or expired certificate got in */
        pw_identity_fini(&vid);
    } else {
        if (!vwhy[0])
            abort();
        if (want_verify == 1 && rc == 0)
            abort(); /* a good chain with a good subject was refused */
    }
    if (rc == 0)
        pw_identity_fini(&id);
}

static const int RAW_TYPES[] = {V_ASN1_BMPSTRING, V_ASN1_UNIVERSALSTRING, V_ASN1_T61STRING, V_ASN1_IA5STRING,
                                V_ASN1_PRINTABLESTRING, V_ASN1_UTF8STRING};
static const int NIDS[] = {NID_commonName, NID_organizationName, NID_organizationalUnitName};

static void built(uint8_t flags, const uint8_t *p, size_t n)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 2);
    bool expired = flags & 8;
    X509_gmtime_adj(X509_getm_notBefore(x), expired ? -7200 : -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), expired ? -3600 : 3600);
    X509_NAME *name = X509_get_subject_name(x);
    const char *user = NULL;
    size_t user_n = 0;
    char *groups[64];
    size_t n_groups = 0;
    bool all_utf8 = true, user_nul = false, org_nul = false, dropped = false;
    for (size_t i = 0; i + 2 <= n;) {
        uint8_t tag = p[i], l = p[i + 1];
        const uint8_t *v = p + i + 2;
        if ((size_t)l > n - i - 2)
            l = (uint8_t)(n - i - 2);
        i += 2 + (size_t)l;
        if (tag % 4 < 2) {
            int nid = tag % 4 == 0 ? NID_commonName : NID_organizationName;
            if (!X509_NAME_add_entry_by_NID(name, nid, MBSTRING_UTF8, v, l, -1, 0))
                continue; /* not UTF-8, or too long for the attribute */
            bool has_nul = memchr(v, '\0', l) != NULL;
            if (nid == NID_commonName) { /* only the last CN counts */
                user = (const char *)v;
                user_n = l;
                user_nul = has_nul;
            } else if (n_groups < 64) {
                org_nul |= has_nul;
                groups[n_groups++] = fuzz_cstr(v, l);
            } else {
                dropped = true;
            }
        } else {
            int nid = NIDS[(tag / 4) % 3];
            if (X509_NAME_add_entry_by_NID(name, nid, RAW_TYPES[(tag / 12) % 6], v, l, -1, 0)) {
                all_utf8 = false;
                if (nid == NID_commonName) { /* the last CN is this one, of unknown text */
                    user = NULL;
                    user_nul = false;
                }
            }
        }
    }
    X509_set_issuer_name(x, X509_get_subject_name(ca_cert));
    X509_set_pubkey(x, leaf_key);
    add_ext(x, ca_cert, NID_basic_constraints, "critical,CA:FALSE");
    bool server_only = flags & 4;
    if (server_only)
        add_ext(x, ca_cert, NID_ext_key_usage, "serverAuth");
    unsigned char *der = NULL;
    /* OpenSSL cannot encode some raw strings (a UniversalString of 5 bytes): nothing to present then */
    int len = X509_sign(x, ca_key, EVP_sha256()) ? i2d_X509(x, &der) : -1;
    if (len > 0) {
        const unsigned char *chain[] = {der};
        size_t lens[] = {(size_t)len};
        /* a NUL byte in the (last) CN or an O: refused, never cut short (CN "admin\0x" is not "admin",
         * O "system:masters\0x" not system:masters) */
        struct want w = {.accept = -1, .user = user, .user_n = user_n, .groups = groups, .n_groups = n_groups};
        if (user_nul || org_nul)
            w.accept = 0;
        else if (all_utf8 && !dropped)
            w.accept = user && user_n ? 1 : 0;
        /* a subject equal to the CA's reads as self-issued: not a chain the CA signed */
        bool as_ca = X509_NAME_cmp(name, X509_get_subject_name(ca_cert)) == 0;
        run(chain, lens, 1, server_only || expired ? 0 : as_ca ? -1 : 1, &w);
    }
    OPENSSL_free(der);
    for (size_t g = 0; g < n_groups; g++)
        free(groups[g]);
    X509_free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!auth)
        setup();
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    data++, size--;
    if (mode % 4 == 0) {
        const unsigned char *chain[] = {data};
        size_t lens[] = {size};
        run(chain, lens, 1, -1, NULL);
    } else if (mode % 4 == 1) {
        BIO *b = BIO_new_mem_buf(data, (int)size);
        unsigned char *der[4] = {0};
        size_t lens[4];
        size_t n = 0;
        X509 *c;
        while (n < 4 && (c = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
            int l = i2d_X509(c, &der[n]);
            X509_free(c);
            if (l <= 0)
                break;
            lens[n++] = (size_t)l;
        }
        BIO_free(b);
        if (n)
            run((const unsigned char *const *)der, lens, n, -1, NULL);
        for (size_t i = 0; i < n; i++)
            OPENSSL_free(der[i]);
    } else {
        built(mode, data, size);
    }
    return 0;
}
