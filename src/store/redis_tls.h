/* redis_tls.h: Redis over TLS (rediss://) for the redis store back end, with OpenSSL.
 *
 * Debian 12's hiredis 0.14 speaks only plain sockets (hiredis_ssl came with 1.0), but it can drive a
 * connection over any stream socket (redisConnectFd). So a TLS connection is a TCP connection to Redis
 * with an OpenSSL session on it, and a local socket pair: hiredis gets one end, and a pump thread of
 * the connection copies bytes between the other end and the TLS session, both ways. hiredis's
 * command timeout, error handling and reconnects work unchanged on its end.
 *
 * Verification: the server's certificate must chain to the CA file given (ca=), or to the system's
 * CA store without one, and name the url's host (a DNS name or an IP address, RFC 6125 rules as
 * OpenSSL applies them); SNI carries a DNS host. A client certificate (cert= and key=) is sent when
 * given: redis-server's default tls-auth-clients yes asks for one. TLS 1.2 at least.
 *
 * Lifetime: closing hiredis's end (redisFree) ends the pump, which then closes the TLS session and
 * the TCP socket; a TLS or TCP failure ends the session too, and shuts hiredis's end down for writing
 * so that hiredis sees the connection fail (EOF) on its next read; the pump then drains what hiredis
 * still sends until hiredis closes its end. pw_rdtls_free waits for every pump it started to end.
 *
 * Thread model: a pw_rdtls is safe from any number of threads (pw_rdtls_connect from several at
 * once); each pump is a thread of its own, touching nothing but its connection and the count. */
#ifndef PW_STORE_REDIS_TLS_H
#define PW_STORE_REDIS_TLS_H

#include <stddef.h>

typedef struct pw_rdtls pw_rdtls;

/* A TLS client set-up from file paths (borrowed; ca may be NULL: the system store; cert and key
 * both or neither). 0, or PW_EINVAL with why[] naming the parameter and what is wrong with it. */
int pw_rdtls_new(const char *ca, const char *cert, const char *key, pw_rdtls **out, char *why, size_t why_n);
/* Waits (bounded, a few seconds) for the pumps still running, then frees t. NULL is a no-op. */
void pw_rdtls_free(pw_rdtls *t);

/* Connects to host:port over TCP and TLS within timeout_ms (connect plus handshake), verifying the
 * server as above; io_timeout_ms bounds each later send and each partial record's wait. 0 with *fd
 * the plain end (the caller owns it: hand it to redisConnectFd), or PW_EUNAVAIL with why[] saying
 * what failed (unreachable, handshake, certificate). */
int pw_rdtls_connect(pw_rdtls *t, const char *host, int port, int timeout_ms, int io_timeout_ms, int *fd, char *why,
                     size_t why_n);

#endif
