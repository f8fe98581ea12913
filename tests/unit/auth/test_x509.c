/* Unit tests for src/auth's client certificates (x509.c): the subject conversion (CN the user, the
 * last of several; the O values in order as groups, then system:authenticated; no CN refused; not a
 * certificate refused) and the verification against the client CA file: a good chain, an expired
 * certificate, another CA's, one whose extendedKeyUsage lacks clientAuth, no chain or no CA file
 * (PW_ENOTFOUND), and the CA file replaced under a live pw_auth. Certificates are made here with
 * OpenSSL (EC P-256). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "base/err.h"
#include "base/mem.h"

struct cert {
    X509 *x;
    EVP_PKEY *key;
    unsigned char *der;
    size_t len;
};

/* A certificate with subject cns/orgs (NULL-terminated lists), signed by ca (NULL: self-signed, a
 * CA), valid from now + from_s to now + to_s, with eku (NULL: none) for a leaf. */
static struct cert make(const char *const *cns, const char *const *orgs, const struct cert *ca, long from_s,
                        long to_s, const char *eku)
{
    static long serial = 1;
    struct cert c = {0};
    c.key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(c.key);
    c.x = X509_new();
    X509_set_version(c.x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c.x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(c.x), from_s);
    X509_gmtime_adj(X509_getm_notAfter(c.x), to_s);
    X509_NAME *name = X509_get_subject_name(c.x);
    for (size_t i = 0; orgs && orgs[i]; i++)
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)orgs[i], -1, -1, 0);
    for (size_t i = 0; cns && cns[i]; i++)
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cns[i], -1, -1, 0);
    X509_set_issuer_name(c.x, ca ? X509_get_subject_name(ca->x) : name);
    X509_set_pubkey(c.x, c.key);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca ? ca->x : c.x, c.x, NULL, NULL, 0);
    const char *ext[][2] = {{"basicConstraints", ca ? "critical,CA:FALSE" : "critical,CA:TRUE"},
                            {"keyUsage", ca ? "critical,digitalSignature" : "critical,keyCertSign,digitalSignature"},
                            {"extendedKeyUsage", eku}};
    for (size_t i = 0; i < 3; i++) {
        if (!ext[i][1])
            continue;
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, &ctx, ext[i][0], ext[i][1]);
        assert_non_null(e);
        X509_add_ext(c.x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(c.x, ca ? ca->key : c.key, EVP_sha256()) > 0);
    int n = i2d_X509(c.x, &c.der);
    assert_true(n > 0);
    c.len = (size_t)n;
    return c;
}

static void cert_free(struct cert *c)
{
    X509_free(c->x);
    EVP_PKEY_free(c->key);
    OPENSSL_free(c->der);
}

static void write_pem(const char *path, const struct cert *c)
{
    char *tmp = pw_xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    PEM_write_X509(f, c->x);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0); /* a new inode: seen whatever the mtime */
    free(tmp);
}

static const char *const ONE_CN[] = {"carol", NULL};

static void test_subject(void **state)
{
    (void)state;
    const char *const orgs[] = {"prewarm:editors", "team-a", NULL};
    struct cert ca = make((const char *const[]){"ca", NULL}, NULL, NULL, -60, 3600, NULL);
    struct cert c = make(ONE_CN, orgs, &ca, -60, 3600, "clientAuth");
    struct pw_identity id;
    char why[256];
    assert_int_equal(pw_auth_x509_subject(c.der, c.len, &id, why, sizeof why), 0);
    assert_string_equal(id.user, "carol");
    assert_string_equal(id.uid, "");
    assert_int_equal(id.n_groups, 3);
    assert_string_equal(id.groups[0], "prewarm:editors");
    assert_string_equal(id.groups[1], "team-a");
    assert_string_equal(id.groups[2], "system:authenticated");
    assert_int_equal(json_object_size(id.extra), 0);
    pw_identity_fini(&id);

    /* several CNs: the last one, as Go's pkix.Name keeps it; no O: only system:authenticated */
    struct cert two = make((const char *const[]){"first", "second", NULL}, NULL, &ca, -60, 3600, "clientAuth");
    assert_int_equal(pw_auth_x509_subject(two.der, two.len, &id, why, sizeof why), 0);
    assert_string_equal(id.user, "second");
    assert_int_equal(id.n_groups, 1);
    pw_identity_fini(&id);

    struct cert none = make(NULL, orgs, &ca, -60, 3600, "clientAuth");
    assert_int_equal(pw_auth_x509_subject(none.der, none.len, &id, why, sizeof why), PW_EINVAL);
    assert_non_null(strstr(why, "no common name"));
    assert_int_equal(pw_auth_x509_subject((const unsigned char *)"nope", 4, &id, why, sizeof why), PW_EINVAL);
    assert_int_equal(pw_auth_x509_subject(NULL, 0, &id, why, sizeof why), PW_EINVAL);
    cert_free(&none);
    cert_free(&two);
    cert_free(&c);
    cert_free(&ca);
}

/* A self-signed certificate whose subject is one CN and one O of n bytes each (NUL bytes allowed). */
static struct cert make_raw(const char *cn, size_t cn_n, const char *o, size_t o_n)
{
    struct cert c = {0};
    c.key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    c.x = X509_new();
    X509_set_version(c.x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c.x), 99);
    X509_gmtime_adj(X509_getm_notBefore(c.x), -60);
    X509_gmtime_adj(X509_getm_notAfter(c.x), 3600);
    X509_NAME *name = X509_get_subject_name(c.x);
    assert_true(X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_UTF8, (const unsigned char *)o,
                                           (int)o_n, -1, 0));
    assert_true(X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn,
                                           (int)cn_n, -1, 0));
    X509_set_issuer_name(c.x, name);
    X509_set_pubkey(c.x, c.key);
    assert_true(X509_sign(c.x, c.key, EVP_sha256()) > 0);
    int n = i2d_X509(c.x, &c.der);
    assert_true(n > 0);
    c.len = (size_t)n;
    return c;
}

/* A NUL byte in a CN or an O is refused, never cut short at it (found by tests/fuzz/fuzz_x509.c): the
 * CN "system:admin\0.evil" is not the user system:admin, the O "system:masters\0x" not that group.
 * An O named system:authenticated stands for the group: it is not added twice. */
static void test_subject_nul_and_authenticated(void **state)
{
    (void)state;
    struct pw_identity id;
    char why[256];
    struct cert cn = make_raw("system:admin\0.evil", 18, "devs", 4);
    assert_int_equal(pw_auth_x509_subject(cn.der, cn.len, &id, why, sizeof why), PW_EINVAL);
    assert_non_null(strstr(why, "NUL"));
    struct cert o = make_raw("mallory", 7, "system:masters\0x", 16);
    assert_int_equal(pw_auth_x509_subject(o.der, o.len, &id, why, sizeof why), PW_EINVAL);
    assert_non_null(strstr(why, "NUL"));
    struct cert dup = make_raw("carol", 5, "system:authenticated", 20);
    assert_int_equal(pw_auth_x509_subject(dup.der, dup.len, &id, why, sizeof why), 0);
    assert_int_equal(id.n_groups, 1);
    assert_string_equal(id.groups[0], "system:authenticated");
    pw_identity_fini(&id);
    cert_free(&dup);
    cert_free(&o);
    cert_free(&cn);
}

static int verify(pw_auth *a, const struct cert *c, struct pw_identity *id, char *why, size_t n)
{
    const unsigned char *der[1] = {c->der};
    size_t len[1] = {c->len};
    return pw_auth_user_x509(a, der, len, 1, id, why, n);
}

static void test_verify_and_reload(void **state)
{
    (void)state;
    char dir[] = "/tmp/pw-x509-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *ca_path = pw_xasprintf("%s/ca.pem", dir);
    struct cert ca = make((const char *const[]){"client CA", NULL}, NULL, NULL, -60, 86400, NULL);
    struct cert other = make((const char *const[]){"other CA", NULL}, NULL, NULL, -60, 86400, NULL);
    const char *const orgs[] = {"devs", NULL};
    struct cert good = make(ONE_CN, orgs, &ca, -60, 3600, "clientAuth");
    struct cert expired = make(ONE_CN, orgs, &ca, -7200, -3600, "clientAuth");
    struct cert stranger = make((const char *const[]){"mallory", NULL}, orgs, &other, -60, 3600, "clientAuth");
    struct cert server = make(ONE_CN, orgs, &ca, -60, 3600, "serverAuth");
    struct cert no_eku = make(ONE_CN, orgs, &ca, -60, 3600, NULL);
    write_pem(ca_path, &ca);

    char why[512];
    pw_auth *a = NULL;
    struct pw_auth_config cfg = {.client_ca_file = ca_path};
    assert_int_equal(pw_auth_new(&cfg, &a, why, sizeof why), 0);
    struct pw_identity id;
    assert_int_equal(verify(a, &good, &id, why, sizeof why), 0);
    assert_string_equal(id.user, "carol");
    assert_string_equal(id.groups[0], "devs");
    pw_identity_fini(&id);
    assert_int_equal(verify(a, &no_eku, &id, why, sizeof why), 0); /* no EKU: any use, as in Go */
    pw_identity_fini(&id);
    assert_int_equal(verify(a, &expired, &id, why, sizeof why), PW_EAUTH);
    assert_non_null(strstr(why, "certificate has expired"));
    assert_non_null(strstr(why, "\"carol\""));
    assert_int_equal(verify(a, &stranger, &id, why, sizeof why), PW_EAUTH);
    assert_non_null(strstr(why, "issuer"));
    assert_int_equal(verify(a, &server, &id, why, sizeof why), PW_EAUTH);
    assert_int_equal(pw_auth_user_x509(a, NULL, NULL, 0, &id, why, sizeof why), PW_ENOTFOUND);
    const unsigned char *junk[1] = {(const unsigned char *)"junk"};
    size_t junk_len[1] = {4};
    assert_int_equal(pw_auth_user_x509(a, junk, junk_len, 1, &id, why, sizeof why), PW_EAUTH);

    /* the file replaced by the other CA: within the check interval the stranger gets in, carol not */
    write_pem(ca_path, &other);
    int rc = -1;
    for (int i = 0; i < 30 && rc != 0; i++) {
        usleep(100 * 1000);
        rc = verify(a, &stranger, &id, why, sizeof why);
    }
    assert_int_equal(rc, 0);
    assert_string_equal(id.user, "mallory");
    pw_identity_fini(&id);
    assert_int_equal(verify(a, &good, &id, why, sizeof why), PW_EAUTH);
    assert_int_equal(pw_auth_client_ca_reloads(a), 1);
    /* a file that no longer loads leaves the previous CAs in force */
    FILE *f = fopen(ca_path, "w");
    fputs("not a certificate\n", f);
    fclose(f);
    sleep(1);
    usleep(200 * 1000);
    assert_int_equal(verify(a, &stranger, &id, why, sizeof why), 0);
    pw_identity_fini(&id);
    assert_int_equal(pw_auth_client_ca_reloads(a), 1);
    pw_auth_free(a);

    /* without a client CA file certificates are not looked at; a bad file refuses to start */
    struct pw_auth_config plain = {0};
    assert_int_equal(pw_auth_new(&plain, &a, why, sizeof why), 0);
    assert_int_equal(verify(a, &good, &id, why, sizeof why), PW_ENOTFOUND);
    pw_auth_free(a);
    assert_int_equal(pw_auth_new(&cfg, &a, why, sizeof why), PW_EINVAL);
    assert_non_null(strstr(why, "no PEM certificate"));

    unlink(ca_path);
    rmdir(dir);
    free(ca_path);
    struct cert *all[] = {&ca, &other, &good, &expired, &stranger, &server, &no_eku};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        cert_free(all[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subject),
        cmocka_unit_test(test_subject_nul_and_authenticated),
        cmocka_unit_test(test_verify_and_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
