/* redis_tls.c: Redis over TLS for hiredis 0.14: a TCP connection with an OpenSSL session, and a pump
 * thread between it and a local socket pair whose other end hiredis drives (redis_tls.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "store/redis_tls.h"

#define RDTLS_BUF 16384
#define RDTLS_FREE_WAIT_MS 10000

struct pw_rdtls {
    SSL_CTX *ctx;
    pthread_mutex_t mu; /* guards live */
    pthread_cond_t cv;  /* a pump ended */
    int live;           /* pumps running */
};

struct pump {
    pw_rdtls *t;
    SSL *ssl;
    int tcp;   /* the socket under ssl */
    int plain; /* our end of the pair; hiredis has the other */
};

/* The first queued OpenSSL error as text into why (after prefix), the queue cleared. */
static void ssl_why(char *why, size_t n, const char *prefix)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    snprintf(why, n, "%s%s%s", prefix, buf[0] ? ": " : "", buf);
    ERR_clear_error();
}

int pw_rdtls_new(const char *ca, const char *cert, const char *key, pw_rdtls **out, char *why, size_t why_n)
{
    if ((cert != NULL) != (key != NULL)) {
        snprintf(why, why_n, "%s", cert ? "cert= needs key= (the client certificate's private key)"
                                        : "key= needs cert= (the client certificate)");
        return PW_EINVAL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_why(why, why_n, "cannot make a TLS context");
        return PW_EINVAL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* no automatic retry: a pump's SSL_read after poll must return (WANT_READ) when a record carried no
     * data (a TLS 1.3 session ticket), not wait for data while hiredis's request waits on us */
    SSL_CTX_clear_mode(ctx, SSL_MODE_AUTO_RETRY);
    char pre[300];
    if (ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(pre, sizeof pre, ca ? "ca=%s: cannot load the CA certificates" : "cannot load the system's CA certificates%s",
                 ca ? ca : "");
        ssl_why(why, why_n, pre);
        SSL_CTX_free(ctx);
        return PW_EINVAL;
    }
    if (cert && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(pre, sizeof pre, "cert=%s: cannot load the client certificate", cert);
        ssl_why(why, why_n, pre);
        SSL_CTX_free(ctx);
        return PW_EINVAL;
    }
    if (key && SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        snprintf(pre, sizeof pre, "key=%s: cannot load the private key", key);
        ssl_why(why, why_n, pre);
        SSL_CTX_free(ctx);
        return PW_EINVAL;
    }
    if (key && SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(pre, sizeof pre, "key=%s: does not match cert=%s", key, cert);
        ssl_why(why, why_n, pre);
        SSL_CTX_free(ctx);
        return PW_EINVAL;
    }
    pw_rdtls *t = pw_xcalloc(1, sizeof *t);
    t->ctx = ctx;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    *out = t;
    return 0;
}

void pw_rdtls_free(pw_rdtls *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    struct timespec deadline;
    pw_clock_deadline_ts(RDTLS_FREE_WAIT_MS, &deadline);
    while (t->live > 0 && pthread_cond_timedwait(&t->cv, &t->mu, &deadline) != ETIMEDOUT)
        ;
    int live = t->live;
    pthread_mutex_unlock(&t->mu);
    if (live > 0) { /* a pump stuck in a send: its memory must outlive it */
        PW_WARN("store: %d TLS connection pumps still running at close; their context is left allocated", live);
        return;
    }
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
}

static void set_io_timeout(int fd, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* A blocking TCP socket connected to host:port within the deadline (each address tried in turn), or
 * -1 with why set. */
static int tcp_connect(const char *host, int port, int64_t deadline_ms, char *why, size_t why_n)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(host, ps, &hints, &res);
    if (gai != 0) {
        snprintf(why, why_n, "cannot resolve %s: %s", host, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    snprintf(why, why_n, "cannot connect to %s:%d", host, port);
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            int64_t left = deadline_ms - pw_clock_mono_ms();
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int err = ETIMEDOUT;
            socklen_t len = sizeof err;
            if (left > 0 && poll(&p, 1, (int)left) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0)
                rc = err == 0 ? 0 : -1;
            errno = err;
        }
        if (rc != 0) {
            snprintf(why, why_n, "cannot connect to %s:%d: %s", host, port, strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

static bool write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* hiredis -> TLS: one read of the plain end, written whole into the session; false when done. */
static bool pump_out(struct pump *p, char *buf)
{
    ssize_t n = read(p->plain, buf, RDTLS_BUF);
    if (n < 0 && errno == EINTR)
        return true;
    if (n <= 0)
        return false; /* hiredis closed its end (or it failed) */
    return SSL_write(p->ssl, buf, (int)n) == (int)n; /* blocking: all of it, or the session failed */
}

/* TLS -> hiredis: the session's readable data written to the plain end; false when done. */
static bool pump_in(struct pump *p, char *buf)
{
    do {
        int n = SSL_read(p->ssl, buf, RDTLS_BUF);
        if (n <= 0) {
            int e = SSL_get_error(p->ssl, n);
            ERR_clear_error();
            return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE; /* a record without data */
        }
        if (!write_all(p->plain, buf, (size_t)n))
            return false;
    } while (SSL_pending(p->ssl) > 0);
    return true;
}

static void *pump_main(void *arg)
{
    struct pump *p = arg;
    /* a send on a socket the peer closed must fail, not raise SIGPIPE in a process that kept it */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
    char *buf = pw_xmalloc(RDTLS_BUF);
    for (bool go = true; go;) {
        struct pollfd fds[2] = {{.fd = p->plain, .events = POLLIN}, {.fd = p->tcp, .events = POLLIN}};
        if (poll(fds, 2, -1) < 0) {
            go = errno == EINTR;
            continue;
        }
        if (fds[1].revents)
            go = pump_in(p, buf);
        if (go && fds[0].revents)
            go = pump_out(p, buf);
    }
    /* a polite close_notify when the session still works (bounded by the socket's send timeout) */
    if (!(SSL_get_shutdown(p->ssl) & SSL_RECEIVED_SHUTDOWN))
        (void)SSL_shutdown(p->ssl);
    ERR_clear_error();
    SSL_free(p->ssl);
    close(p->tcp);
    /* hiredis's end reads EOF now; what it still sends is read and dropped until it closes its end, so
     * that its send never meets a closed peer (EPIPE, and SIGPIPE in a process that did not ignore it) */
    (void)shutdown(p->plain, SHUT_WR);
    for (ssize_t n = 1; n > 0 || (n < 0 && errno == EINTR);)
        n = read(p->plain, buf, RDTLS_BUF);
    free(buf);
    close(p->plain);
    pw_rdtls *t = p->t;
    free(p);
    /* this thread's OpenSSL state (its error queue) freed now, not by a thread-exit destructor that may
     * run after pw_rdtls_free returned and the process went on to exit */
    OPENSSL_thread_stop();
    pthread_mutex_lock(&t->mu);
    t->live--;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* Whether host is an IP address literal (IPv4 or IPv6): then it is checked as an IP SAN, and no SNI. */
static bool host_is_ip(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

int pw_rdtls_connect(pw_rdtls *t, const char *host, int port, int timeout_ms, int io_timeout_ms, int *fd, char *why,
                     size_t why_n)
{
    int64_t deadline = pw_clock_mono_ms() + timeout_ms;
    int tcp = tcp_connect(host, port, deadline, why, why_n);
    if (tcp < 0)
        return PW_EUNAVAIL;
    int64_t left = deadline - pw_clock_mono_ms();
    set_io_timeout(tcp, left > 0 ? (int)left : 1); /* the handshake's share of the deadline */
    SSL *ssl = SSL_new(t->ctx);
    bool ip = host_is_ip(host);
    bool set = ssl && SSL_set_fd(ssl, tcp) == 1 &&
               (ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1
                   : SSL_set1_host(ssl, host) == 1 && SSL_set_tlsext_host_name(ssl, host) == 1);
    if (!set) {
        ssl_why(why, why_n, "cannot set up the TLS session");
        SSL_free(ssl);
        close(tcp);
        return PW_EUNAVAIL;
    }
    if (SSL_connect(ssl) != 1) {
        long v = SSL_get_verify_result(ssl);
        char pre[300];
        if (v != X509_V_OK)
            snprintf(pre, sizeof pre, "TLS handshake with %s:%d: the server's certificate: %s", host, port,
                     X509_verify_cert_error_string(v));
        else
            snprintf(pre, sizeof pre, "TLS handshake with %s:%d failed", host, port);
        ssl_why(why, why_n, pre);
        SSL_free(ssl);
        close(tcp);
        return PW_EUNAVAIL;
    }
    set_io_timeout(tcp, io_timeout_ms);
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        snprintf(why, why_n, "socketpair: %s", strerror(errno));
        SSL_free(ssl);
        close(tcp);
        return PW_EUNAVAIL;
    }
    struct pump *p = pw_xcalloc(1, sizeof *p);
    *p = (struct pump){.t = t, .ssl = ssl, .tcp = tcp, .plain = pair[1]};
    pthread_mutex_lock(&t->mu);
    t->live++;
    pthread_mutex_unlock(&t->mu);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int rc = pthread_create(&th, &attr, pump_main, p);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_lock(&t->mu);
        t->live--;
        pthread_mutex_unlock(&t->mu);
        snprintf(why, why_n, "cannot start the TLS pump thread: %s", strerror(rc));
        SSL_free(ssl);
        close(tcp);
        close(pair[0]);
        close(pair[1]);
        free(p);
        return PW_EUNAVAIL;
    }
    *fd = pair[0];
    return 0;
}
