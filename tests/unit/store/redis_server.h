/* redis_server.h: a real redis-server for tests and benchmarks: started on a free loopback port in
 * a temporary directory of its own (appendonly yes, appendfsync always, no RDB snapshots), stopped
 * by its PID, restartable on the same port and directory (so its AOF is what it reloads). Header
 * only, for the store's unit tests and bench/store_bench.c.
 *
 * Thread model: one test thread drives it. Every wait is bounded. */
#ifndef PW_TESTS_REDIS_SERVER_H
#define PW_TESTS_REDIS_SERVER_H

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct rtest_server {
    pid_t pid;     /* 0 while stopped */
    int port;
    char dir[64];  /* its working directory (AOF, log) */
    char bin[256]; /* the redis-server found on PATH */
    const char *const *extra; /* more redis-server arguments (borrowed, NULL-terminated), or NULL */
    const char *tls_dir;      /* rtest_make_tls's directory: also serve TLS on tls_port; NULL: no TLS */
    int tls_port;             /* 0: pick a free one at the first start, kept across restarts */
};

/* Makes, with the openssl command, a test PKI in dir (which must exist): ca.crt, a server certificate
 * server.crt/server.key for IP 127.0.0.1 only (so "localhost" does not match it), a client
 * certificate client.crt/client.key from the same CA, and other-ca.crt, a CA that signed neither.
 * 0, or -1. */
static inline int rtest_make_tls(const char *dir)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && printf 'subjectAltName=IP:127.0.0.1\\n' > server.ext && "
             "printf 'extendedKeyUsage=clientAuth\\n' > client.ext && "
             "for ca in ca other-ca; do openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout $ca.key -out $ca.crt -days 2 -subj /CN=pw-test-$ca || exit 1; done && "
             "for who in server client; do openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout $who.key -out $who.csr -subj /CN=pw-test-$who && "
             "openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile $who.ext "
             "-out $who.crt || exit 1; done",
             dir);
    char full[2100];
    snprintf(full, sizeof full, "(%s) >/dev/null 2>&1", cmd);
    return system(full) == 0 ? 0 : -1;
}

/* The redis-server on PATH into bin; false when there is none (the caller SKIPs, saying so). */
static inline bool rtest_find(char *bin, size_t n)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s:/usr/bin:/usr/sbin", path ? path : "");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(bin, n, "%s/redis-server", d);
        if (access(bin, X_OK) == 0)
            return true;
    }
    return false;
}

static inline int rtest_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* true once PING answers (PONG, or NOAUTH from a server with a password), within ms. */
static inline bool rtest_wait_up(const struct rtest_server *r, int ms)
{
    for (int waited = 0; waited < ms; waited += 20) {
        int status;
        if (waitpid(r->pid, &status, WNOHANG) == r->pid)
            return false; /* it exited (e.g. the port was taken) */
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
        if (c && !c->err) {
            redisReply *rep = redisCommand(c, "PING");
            bool up = rep && (rep->type == REDIS_REPLY_STATUS ||
                              (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOAUTH", 6) == 0));
            freeReplyObject(rep);
            redisFree(c);
            if (up)
                return true;
        } else if (c) {
            redisFree(c);
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* Starts redis-server on r->port (0: pick a free one) in r->dir ("" : make one); 0 or -1. */
static inline int rtest_start(struct rtest_server *r)
{
    if (!r->bin[0] && !rtest_find(r->bin, sizeof r->bin))
        return -1;
    if (!r->dir[0]) {
        snprintf(r->dir, sizeof r->dir, "/tmp/pw-redis-XXXXXX");
        if (!mkdtemp(r->dir))
            return -1;
    }
    bool pick = r->port == 0;
    for (int attempt = 0; attempt < 5; attempt++) {
        if (pick)
            r->port = rtest_free_port();
        char port[16], log[128];
        snprintf(port, sizeof port, "%d", r->port);
        snprintf(log, sizeof log, "%s/redis.log", r->dir);
        const char *argv[40] = {r->bin, "--port", port, "--bind", "127.0.0.1", "--dir", r->dir, "--appendonly", "yes",
                                "--appendfsync", "always", "--save", "", "--daemonize", "no", "--logfile", log};
        size_t k = 17;
        char tport[16], cert[160], key[160], ca[160];
        if (r->tls_dir) {
            if (r->tls_port == 0)
                r->tls_port = rtest_free_port();
            snprintf(tport, sizeof tport, "%d", r->tls_port);
            snprintf(cert, sizeof cert, "%s/server.crt", r->tls_dir);
            snprintf(key, sizeof key, "%s/server.key", r->tls_dir);
            snprintf(ca, sizeof ca, "%s/ca.crt", r->tls_dir);
            const char *tls[] = {"--tls-port", tport, "--tls-cert-file", cert, "--tls-key-file", key,
                                 "--tls-ca-cert-file", ca};
            for (size_t i = 0; i < 8; i++)
                argv[k++] = tls[i];
        }
        for (size_t i = 0; r->extra && r->extra[i] && k < 39; i++)
            argv[k++] = r->extra[i];
        argv[k] = NULL;
        pid_t pid = fork();
        if (pid < 0)
            return -1;
        if (pid == 0) {
            /* not the test's stdout: a pipe reader would wait for the server too */
            int null = open("/dev/null", O_RDWR);
            if (null >= 0) {
                dup2(null, 0);
                dup2(null, 1);
                dup2(null, 2);
            }
            execv(r->bin, (char *const *)argv);
            _exit(127);
        }
        r->pid = pid;
        if (rtest_wait_up(r, 10000))
            return 0;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        r->pid = 0;
        if (!pick)
            return -1;
    }
    return -1;
}

/* Stops it with sig (SIGTERM: a clean shutdown; SIGKILL: a crash) and reaps it. */
static inline void rtest_stop(struct rtest_server *r, int sig)
{
    if (r->pid > 0) {
        kill(r->pid, sig);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
}

/* Stops it and removes its directory. */
static inline void rtest_cleanup(struct rtest_server *r)
{
    rtest_stop(r, SIGKILL);
    if (r->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", r->dir);
        r->dir[0] = '\0';
    }
}

#endif
