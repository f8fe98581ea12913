/* http_int.h: private to src/http: the reloadable TLS credential of a server serving from files
 * (tls_files.c).
 *
 * Thread model: http_tls_new/free from the thread that creates and frees the server; the retrieve
 * callback from libmicrohttpd's threads, any number at once (guarded inside). */
#ifndef PW_HTTP_INT_H
#define PW_HTTP_INT_H

#include <gnutls/abstract.h>

typedef struct http_tls http_tls;

#define HTTP_TLS_SLOTS 4 /* servers with TLS files at once in one process */

/* Loads cert_path and key_path (PEM, the key matching the certificate). 0 with *out (free with
 * http_tls_free after the server stopped); PW_EIO (unreadable), PW_EINVAL (bad PEM, mismatched pair,
 * no slot left), logged. */
int http_tls_new(const char *cert_path, const char *key_path, http_tls **out);
/* The retrieve function for MHD_OPTION_HTTPS_CERT_CALLBACK: serves the newest pair. */
gnutls_certificate_retrieve_function2 *http_tls_callback(const http_tls *t);
/* Reloads made since new (NULL: 0). */
unsigned http_tls_reloads(http_tls *t);
void http_tls_free(http_tls *t);

#endif
