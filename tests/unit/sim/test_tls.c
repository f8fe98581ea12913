/* Unit tests for sim/tls.c: the generated CA, serving and client certificates verify as a chain with
 * OpenSSL (as kubectl's and Python's TLS stacks will check them), carry the names and usages clients
 * need, match their keys, and load in GnuTLS (what the server, libmicrohttpd, uses). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "sim/sim.h"

static X509 *load_cert(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *crt = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(crt);
    return crt;
}

static EVP_PKEY *load_key(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(key);
    return key;
}

/* Verifies leaf against ca for purpose (X509_PURPOSE_SSL_SERVER / _CLIENT), with hostname or IP
 * checks when given. Returns the X509_V_* result. */
static int verify(X509 *ca, X509 *leaf, int purpose, const char *host, const char *ip)
{
    X509_STORE *store = X509_STORE_new();
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    X509_STORE_CTX_set_purpose(ctx, purpose);
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    if (host)
        X509_VERIFY_PARAM_set1_host(param, host, 0);
    if (ip)
        X509_VERIFY_PARAM_set1_ip_asc(param, ip);
    int ok = X509_verify_cert(ctx);
    int err = ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return err;
}

static void name_entry(X509 *crt, int nid, char *out, size_t n)
{
    out[0] = '\0';
    X509_NAME_get_text_by_NID(X509_get_subject_name(crt), nid, out, (int)n);
}

static void test_chain_and_names(void **state)
{
    (void)state;
    struct sim_tls t;
    assert_int_equal(sim_tls_generate(&t), 0);
    assert_non_null(strstr(t.ca_cert, "-----BEGIN CERTIFICATE-----"));
    assert_non_null(strstr(t.server_key, "PRIVATE KEY-----"));

    X509 *ca = load_cert(t.ca_cert);
    X509 *srv = load_cert(t.server_cert);
    X509 *cli = load_cert(t.client_cert);
    char buf[128];

    /* the CA: self-signed, CN kubesim-ca, a CA that signs certificates */
    name_entry(ca, NID_commonName, buf, sizeof buf);
    assert_string_equal(buf, "kubesim-ca");
    assert_int_equal(X509_check_ca(ca), 1);
    assert_true(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN);
    assert_int_equal(verify(ca, ca, X509_PURPOSE_ANY, NULL, NULL), X509_V_OK);

    /* the serving certificate: for 127.0.0.1, ::1 and localhost, not for other names */
    assert_int_equal(verify(ca, srv, X509_PURPOSE_SSL_SERVER, NULL, "127.0.0.1"), X509_V_OK);
    assert_int_equal(verify(ca, srv, X509_PURPOSE_SSL_SERVER, NULL, "::1"), X509_V_OK);
    assert_int_equal(verify(ca, srv, X509_PURPOSE_SSL_SERVER, "localhost", NULL), X509_V_OK);
    assert_int_equal(verify(ca, srv, X509_PURPOSE_SSL_SERVER, NULL, "10.0.0.1"), X509_V_ERR_IP_ADDRESS_MISMATCH);
    assert_int_equal(verify(ca, srv, X509_PURPOSE_SSL_SERVER, "example.com", NULL), X509_V_ERR_HOSTNAME_MISMATCH);
    assert_int_equal(X509_check_ca(srv), 0);
    assert_true(X509_get_extended_key_usage(srv) & XKU_SSL_SERVER);
    assert_int_equal(verify(ca, srv, X509_PURPOSE_SSL_CLIENT, NULL, NULL), X509_V_ERR_INVALID_PURPOSE);

    /* the client certificate: kubesim-admin in system:masters, for client authentication only */
    name_entry(cli, NID_commonName, buf, sizeof buf);
    assert_string_equal(buf, "kubesim-admin");
    name_entry(cli, NID_organizationName, buf, sizeof buf);
    assert_string_equal(buf, "system:masters");
    assert_int_equal(verify(ca, cli, X509_PURPOSE_SSL_CLIENT, NULL, NULL), X509_V_OK);
    assert_int_equal(verify(ca, cli, X509_PURPOSE_SSL_SERVER, NULL, NULL), X509_V_ERR_INVALID_PURPOSE);

    /* keys match their certificates */
    EVP_PKEY *k = load_key(t.server_key);
    assert_int_equal(X509_check_private_key(srv, k), 1);
    EVP_PKEY_free(k);
    k = load_key(t.client_key);
    assert_int_equal(X509_check_private_key(cli, k), 1);
    assert_int_equal(X509_check_private_key(srv, k), 0);
    EVP_PKEY_free(k);

    /* valid now, backdated a little, for about a year */
    time_t now = time(NULL);
    assert_true(X509_cmp_time(X509_get0_notBefore(srv), &now) < 0);
    time_t in_300_days = now + 300 * 86400, in_400_days = now + 400 * 86400;
    assert_true(X509_cmp_time(X509_get0_notAfter(srv), &in_300_days) > 0);
    assert_true(X509_cmp_time(X509_get0_notAfter(srv), &in_400_days) < 0);

    X509_free(ca);
    X509_free(srv);
    X509_free(cli);
    sim_tls_fini(&t);
    assert_null(t.ca_cert);
}

/* Two runs give different CAs: a client that trusted an old kubesim must not trust a new one. */
static void test_fresh_each_time(void **state)
{
    (void)state;
    struct sim_tls a, b;
    assert_int_equal(sim_tls_generate(&a), 0);
    assert_int_equal(sim_tls_generate(&b), 0);
    assert_string_not_equal(a.ca_cert, b.ca_cert);
    assert_string_not_equal(a.ca_key, b.ca_key);
    X509 *ca_a = load_cert(a.ca_cert);
    X509 *srv_b = load_cert(b.server_cert);
    assert_int_not_equal(verify(ca_a, srv_b, X509_PURPOSE_SSL_SERVER, NULL, NULL), X509_V_OK);
    X509_free(ca_a);
    X509_free(srv_b);
    sim_tls_fini(&a);
    sim_tls_fini(&b);
    sim_tls_fini(NULL);
}

/* GnuTLS (the server side) loads the serving pair and verifies the client certificate against the CA,
 * as pw_http_req_client_cert() will. */
static void test_gnutls_accepts(void **state)
{
    (void)state;
    struct sim_tls t;
    assert_int_equal(sim_tls_generate(&t), 0);

    gnutls_certificate_credentials_t cred;
    assert_int_equal(gnutls_certificate_allocate_credentials(&cred), 0);
    gnutls_datum_t c = {(unsigned char *)t.server_cert, (unsigned)strlen(t.server_cert)};
    gnutls_datum_t k = {(unsigned char *)t.server_key, (unsigned)strlen(t.server_key)};
    assert_int_equal(gnutls_certificate_set_x509_key_mem(cred, &c, &k, GNUTLS_X509_FMT_PEM), 0);
    gnutls_datum_t ca = {(unsigned char *)t.ca_cert, (unsigned)strlen(t.ca_cert)};
    assert_int_equal(gnutls_certificate_set_x509_trust_mem(cred, &ca, GNUTLS_X509_FMT_PEM), 1);
    gnutls_certificate_free_credentials(cred);

    gnutls_x509_crt_t cli, cacrt;
    assert_int_equal(gnutls_x509_crt_init(&cli), 0);
    assert_int_equal(gnutls_x509_crt_init(&cacrt), 0);
    gnutls_datum_t cc = {(unsigned char *)t.client_cert, (unsigned)strlen(t.client_cert)};
    assert_int_equal(gnutls_x509_crt_import(cli, &cc, GNUTLS_X509_FMT_PEM), 0);
    assert_int_equal(gnutls_x509_crt_import(cacrt, &ca, GNUTLS_X509_FMT_PEM), 0);
    unsigned status = 99;
    assert_int_equal(gnutls_x509_crt_verify(cli, &cacrt, 1, 0, &status), 0);
    assert_int_equal(status, 0);
    gnutls_x509_crt_deinit(cli);
    gnutls_x509_crt_deinit(cacrt);
    sim_tls_fini(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_and_names),
        cmocka_unit_test(test_fresh_each_time),
        cmocka_unit_test(test_gnutls_accepts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
