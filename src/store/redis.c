/* redis.c: the "redis://" store back end: tasks and node results in a Redis (7.x, or Valkey) shared
 * by several prewarmd replicas, all under one key prefix.
 *
 * Keys (P is the prefix, "prewarm:" by default):
 *   P schema             string: the layout's version (RD_SCHEMA_VERSION)
 *   P t:<id>             hash: status, priority, created, finished, doc (the task's JSON)
 *   P ids                zset (all scores 0, so ordered by id bytes): every task id
 *   P ix:<status>        zset (scores 0): the ids with that status
 *   P fin                zset: the ids of finished tasks scored by finished_ms (for prune)
 *   P n:<id>             hash: node name -> the node result's JSON
 *   P ns:<id>            hash: node name -> state
 *   P ni:<id>            zset (scores 0): the task's node names
 *   P nx:<id>:<state>    zset (scores 0): the task's node names in that state
 *   P r:<kind>           hash: record key -> the record's JSON (store.h "records")
 *   P ri:<kind>          zset (scores 0): the record keys of that kind
 * (The record keys came after version 1 without a version bump: a build that does not know them
 * leaves them alone, and they need nothing from an older prefix.)
 * Lex-ordered zsets compare bytes like SQLite's BINARY collation, so listings have the order and the
 * continue tokens (store.h's pw_store_token_*) of the SQLite back end: a page is ZREVRANGEBYLEX /
 * ZRANGEBYLEX from just past the token's key.
 *
 * Durability and atomicity. Every write is one Lua script (EVALSHA, falling back to EVAL when the
 * server lost its script cache), which Redis runs atomically: nobody sees half a task, and since
 * a script's effects reach the append-only file as one unit, a crash of Redis keeps all or none of
 * it. The reply comes after Redis wrote the AOF: with `appendonly yes` and `appendfsync always` an
 * acknowledged write survives a crash of Redis and of its machine; with `everysec` at most the last
 * second can be lost on a power failure (docs/operations.md). Redis does not roll a script back when
 * a command in it fails, so each script checks everything (the tasks a node batch names exist) before
 * its first write, and its writes are commands that cannot fail on well-formed keys. No WAIT: a
 * replica of Redis is Redis's business.
 *
 * Reads are Lua scripts too (one round trip, one consistent snapshot), except a task get (HMGET).
 *
 * Schema. P schema holds the version; rd_migrations holds the forward migrations, row N taking
 * version N to N+1, each run as one script that first checks the version is still N (several
 * replicas may start at once: the first one migrates, the others see the new version). A prefix
 * newer than this build is refused.
 *
 * Connections, failures, backoff. A store owns a pool of at most RD_POOL_MAX hiredis connections
 * (opened on demand, each used by one thread at a time; calls wait for a free one). A connection
 * error or a command timeout drops the connection and marks Redis down: from then on calls answer
 * PW_EUNAVAIL at once (the API's 503; the engine then holds its Kubernetes writes, as for a failing
 * SQLite) except that one call per backoff period (100 ms doubling to 5 s) tries to reconnect. A call
 * that fails on a pooled connection (e.g. Redis restarted under it) drops every idle connection and
 * retries once on a new one, so recovery costs no failed call. Server replies LOADING (Redis reading
 * its AOF), BUSY, READONLY and MASTERDOWN are PW_EUNAVAIL; OOM, MISCONF and the rest PW_EIO; both are
 * 503s. Log lines name host:port/db, never the password.
 *
 * TLS. rediss:// runs each connection over TLS (OpenSSL) through a local socket pair that hiredis
 * drives (redis_tls.h: Debian 12's hiredis 0.14 has no TLS of its own); everything above is the same.
 *
 * Thread model: a store is safe from any number of threads; each call holds one pooled connection. */
#include <assert.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "store/redis.h"
#include "store/redis_int.h"
#include "store/redis_tls.h"
#include "store/store.h"

#define RD_SCHEMA_VERSION 1
#define RD_POOL_MAX 4
#define RD_CONNECT_TIMEOUT_MS 1000
#define RD_COMMAND_TIMEOUT_MS 5000
#define RD_BACKOFF_MIN_MS 100
#define RD_BACKOFF_MAX_MS 5000
#define RD_POOL_WAIT_MS 30000
#define RD_PRUNE_BATCH 100

/* ---- the scripts (ARGV[1] is always the prefix) ---- */

/* Appends one task row (id, status, priority, created, finished, doc) to out, if the task exists. */
#define LUA_PUSH_TASK                                                                                        \
    "local function push_task(p, out, id)\n"                                                                 \
    "  local r = redis.call('HMGET', p .. 't:' .. id, 'status', 'priority', 'created', 'finished', 'doc')\n" \
    "  if r[1] then\n"                                                                                       \
    "    out[#out + 1] = id\n"                                                                               \
    "    for i = 1, 5 do out[#out + 1] = r[i] or '' end\n"                                                   \
    "  end\n"                                                                                                \
    "end\n"

/* Deletes a task with its node results and index entries; 1 if it existed, else 0. */
#define LUA_DEL_TASK                                                                                     \
    "local function del_task(p, id)\n"                                                                   \
    "  local tk = p .. 't:' .. id\n"                                                                     \
    "  local st = redis.call('HGET', tk, 'status')\n"                                                    \
    "  if not st then return 0 end\n"                                                                    \
    "  local seen = {}\n"                                                                                \
    "  for _, s in ipairs(redis.call('HVALS', p .. 'ns:' .. id)) do\n"                                   \
    "    if not seen[s] then seen[s] = true; redis.call('DEL', p .. 'nx:' .. id .. ':' .. s) end\n"      \
    "  end\n"                                                                                            \
    "  redis.call('DEL', tk, p .. 'n:' .. id, p .. 'ns:' .. id, p .. 'ni:' .. id)\n"                     \
    "  redis.call('ZREM', p .. 'ids', id)\n"                                                             \
    "  redis.call('ZREM', p .. 'ix:' .. st, id)\n"                                                       \
    "  redis.call('ZREM', p .. 'fin', id)\n"                                                             \
    "  return 1\n"                                                                                       \
    "end\n"

enum rd_script_id { RS_TASK_PUT, RS_TASK_LIST, RS_UNFINISHED, RS_TASK_DELETE, RS_PRUNE, RS_NODES_PUT, RS_NODES_LIST,
                    RS_REC_PUT, RS_REC_LIST, RS_REC_DELETE, RS_COUNT };

static const char *const rd_scripts[RS_COUNT] = {
    /* prefix id status priority created finished doc final(0|1) */
    [RS_TASK_PUT] = "local p, id, st = ARGV[1], ARGV[2], ARGV[3]\n"
                    "local tk = p .. 't:' .. id\n"
                    "local old = redis.call('HGET', tk, 'status')\n"
                    "if old and old ~= st then redis.call('ZREM', p .. 'ix:' .. old, id) end\n"
                    "redis.call('HSET', tk, 'status', st, 'priority', ARGV[4], 'created', ARGV[5],"
                    " 'finished', ARGV[6], 'doc', ARGV[7])\n"
                    "redis.call('ZADD', p .. 'ids', 0, id)\n"
                    "redis.call('ZADD', p .. 'ix:' .. st, 0, id)\n"
                    "if ARGV[8] == '1' then redis.call('ZADD', p .. 'fin', ARGV[6], id)\n"
                    "else redis.call('ZREM', p .. 'fin', id) end\n"
                    "return 1\n",
    /* prefix status|'' after|'' limit|0 -> task rows, newest first */
    [RS_TASK_LIST] = LUA_PUSH_TASK "local p = ARGV[1]\n"
                                   "local key = p .. 'ids'\n"
                                   "if ARGV[2] ~= '' then key = p .. 'ix:' .. ARGV[2] end\n"
                                   "local max = '+'\n"
                                   "if ARGV[3] ~= '' then max = '(' .. ARGV[3] end\n"
                                   "local n = tonumber(ARGV[4])\n"
                                   "local ids\n"
                                   "if n > 0 then ids = redis.call('ZREVRANGEBYLEX', key, max, '-', 'LIMIT', 0, n)\n"
                                   "else ids = redis.call('ZREVRANGEBYLEX', key, max, '-') end\n"
                                   "local out = {}\n"
                                   "for _, id in ipairs(ids) do push_task(p, out, id) end\n"
                                   "return out\n",
    /* prefix -> the rows of pending and running tasks (sorted by the caller) */
    [RS_UNFINISHED] = LUA_PUSH_TASK "local p = ARGV[1]\n"
                                    "local out = {}\n"
                                    "for _, st in ipairs({'pending', 'running'}) do\n"
                                    "  for _, id in ipairs(redis.call('ZRANGE', p .. 'ix:' .. st, 0, -1)) do\n"
                                    "    push_task(p, out, id)\n"
                                    "  end\n"
                                    "end\n"
                                    "return out\n",
    /* prefix id -> 1 deleted | 0 not found */
    [RS_TASK_DELETE] = LUA_DEL_TASK "return del_task(ARGV[1], ARGV[2])\n",
    /* prefix before batch -> {deleted, looked at} */
    [RS_PRUNE] = LUA_DEL_TASK "local p = ARGV[1]\n"
                              "local ids = redis.call('ZRANGEBYSCORE', p .. 'fin', '-inf', '(' .. ARGV[2],"
                              " 'LIMIT', 0, tonumber(ARGV[3]))\n"
                              "local n = 0\n"
                              "for _, id in ipairs(ids) do n = n + del_task(p, id) end\n"
                              "return {n, #ids}\n",
    /* prefix (task name state doc)... -> 1 | 0 when a task does not exist (nothing written) */
    [RS_NODES_PUT] = "local p = ARGV[1]\n"
                     "local seen = {}\n"
                     "for i = 2, #ARGV, 4 do\n"
                     "  local t = ARGV[i]\n"
                     "  if not seen[t] then\n"
                     "    if redis.call('EXISTS', p .. 't:' .. t) == 0 then return 0 end\n"
                     "    seen[t] = true\n"
                     "  end\n"
                     "end\n"
                     "for i = 2, #ARGV, 4 do\n"
                     "  local t, name, st = ARGV[i], ARGV[i + 1], ARGV[i + 2]\n"
                     "  local old = redis.call('HGET', p .. 'ns:' .. t, name)\n"
                     "  if old ~= st then\n"
                     "    if old then redis.call('ZREM', p .. 'nx:' .. t .. ':' .. old, name) end\n"
                     "    redis.call('ZADD', p .. 'nx:' .. t .. ':' .. st, 0, name)\n"
                     "  end\n"
                     "  redis.call('HSET', p .. 'ns:' .. t, name, st)\n"
                     "  redis.call('HSET', p .. 'n:' .. t, name, ARGV[i + 3])\n"
                     "  redis.call('ZADD', p .. 'ni:' .. t, 0, name)\n"
                     "end\n"
                     "return 1\n",
    /* prefix task state|'' after|'' limit|0 -> nil when the task does not exist, else (name state doc)... */
    [RS_NODES_LIST] = "local p, t = ARGV[1], ARGV[2]\n"
                      "if redis.call('EXISTS', p .. 't:' .. t) == 0 then return false end\n"
                      "local key = p .. 'ni:' .. t\n"
                      "if ARGV[3] ~= '' then key = p .. 'nx:' .. t .. ':' .. ARGV[3] end\n"
                      "local min = '-'\n"
                      "if ARGV[4] ~= '' then min = '(' .. ARGV[4] end\n"
                      "local n = tonumber(ARGV[5])\n"
                      "local names\n"
                      "if n > 0 then names = redis.call('ZRANGEBYLEX', key, min, '+', 'LIMIT', 0, n)\n"
                      "else names = redis.call('ZRANGEBYLEX', key, min, '+') end\n"
                      "local out = {}\n"
                      "for _, name in ipairs(names) do\n"
                      "  out[#out + 1] = name\n"
                      "  out[#out + 1] = redis.call('HGET', p .. 'ns:' .. t, name) or ''\n"
                      "  out[#out + 1] = redis.call('HGET', p .. 'n:' .. t, name) or ''\n"
                      "end\n"
                      "return out\n",
    /* prefix kind key doc mode(0 upsert|1 create|2 update) -> 1 | 0 exists (create) | -1 missing (update) */
    [RS_REC_PUT] = "local p, k, key = ARGV[1], ARGV[2], ARGV[3]\n"
                   "local h = p .. 'r:' .. k\n"
                   "local there = redis.call('HEXISTS', h, key) == 1\n"
                   "if ARGV[5] == '1' and there then return 0 end\n"
                   "if ARGV[5] == '2' and not there then return -1 end\n"
                   "redis.call('HSET', h, key, ARGV[4])\n"
                   "redis.call('ZADD', p .. 'ri:' .. k, 0, key)\n"
                   "return 1\n",
    /* prefix kind after|'' limit|0 -> (key doc)... in key order */
    [RS_REC_LIST] = "local p, k = ARGV[1], ARGV[2]\n"
                    "local min = '-'\n"
                    "if ARGV[3] ~= '' then min = '(' .. ARGV[3] end\n"
                    "local n = tonumber(ARGV[4])\n"
                    "local keys\n"
                    "if n > 0 then keys = redis.call('ZRANGEBYLEX', p .. 'ri:' .. k, min, '+', 'LIMIT', 0, n)\n"
                    "else keys = redis.call('ZRANGEBYLEX', p .. 'ri:' .. k, min, '+') end\n"
                    "local out = {}\n"
                    "for _, key in ipairs(keys) do\n"
                    "  out[#out + 1] = key\n"
                    "  out[#out + 1] = redis.call('HGET', p .. 'r:' .. k, key) or ''\n"
                    "end\n"
                    "return out\n",
    /* prefix kind key -> 1 deleted | 0 not found */
    [RS_REC_DELETE] = "local p, k, key = ARGV[1], ARGV[2], ARGV[3]\n"
                      "redis.call('ZREM', p .. 'ri:' .. k, key)\n"
                      "return redis.call('HDEL', p .. 'r:' .. k, key)\n",
};

/* ---- schema and migrations ---- */

/* Row i takes version i to i + 1: a Lua body run inside rd_migrate_wrap, with p the prefix.
 * Version 1 is the first layout (the key table above); an empty prefix needs no keys for it. */
static const char *const rd_migrations[] = {
    /* 0 -> 1 */
    "",
};
_Static_assert(sizeof rd_migrations / sizeof rd_migrations[0] == RD_SCHEMA_VERSION, "one migration per version");

/* ARGV: prefix from to. Runs the body only while the version is still `from`; returns the version
 * after the call (-1: the version key holds no number). */
static const char rd_migrate_head[] = "local p = ARGV[1]\n"
                                      "local v = tonumber(redis.call('GET', p .. 'schema') or '0')\n"
                                      "if v == nil then return -1 end\n"
                                      "if v ~= tonumber(ARGV[2]) then return v end\n";
static const char rd_migrate_tail[] = "\nredis.call('SET', p .. 'schema', ARGV[3])\n"
                                      "return tonumber(ARGV[3])\n";

/* ---- the store ---- */

struct rd_store {
    struct pw_store base;
    char *host, *user, *pass, *prefix;
    int port, db;
    pw_rdtls *tls;   /* rediss://: every connection over TLS; NULL for redis:// */
    char where[300]; /* "redis[s]://host:port/db" for log lines (no credentials) */
    char sha[RS_COUNT][41];

    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;  /* a connection came back */
    redisContext *idle[RD_POOL_MAX];
    size_t n_idle, n_open;
    bool down;           /* the last attempt to reach Redis failed */
    int64_t backoff_ms;  /* while down: the current backoff */
    int64_t retry_at_ms; /* while down: no reconnect before this (monotonic) */
    char last_why[256];  /* why the last attempt failed (no credentials in it) */
};

static struct rd_store *rd_of(pw_store *s)
{
    return (struct rd_store *)s;
}

static void rd_mark_down(struct rd_store *rs, const char *why)
{
    pthread_mutex_lock(&rs->mu);
    snprintf(rs->last_why, sizeof rs->last_why, "%s", why);
    if (!rs->down) {
        PW_ERROR("store %s: unreachable: %s (store calls answer 503 until it is back; reconnecting with backoff)",
                 rs->where, why);
        rs->down = true;
        rs->backoff_ms = RD_BACKOFF_MIN_MS;
    } else if (rs->backoff_ms < RD_BACKOFF_MAX_MS) {
        rs->backoff_ms = rs->backoff_ms * 2 > RD_BACKOFF_MAX_MS ? RD_BACKOFF_MAX_MS : rs->backoff_ms * 2;
    }
    rs->retry_at_ms = pw_clock_mono_ms() + rs->backoff_ms;
    pthread_mutex_unlock(&rs->mu);
}

static void rd_mark_up(struct rd_store *rs)
{
    pthread_mutex_lock(&rs->mu);
    if (rs->down)
        PW_INFO("store %s: reachable again", rs->where);
    rs->down = false;
    rs->backoff_ms = 0;
    pthread_mutex_unlock(&rs->mu);
}

/* Runs one command on c; the reply (caller frees with freeReplyObject) or NULL on a connection error. */
static redisReply *rd_cmd(redisContext *c, int argc, const char **argv, const size_t *lens)
{
    return redisCommandArgv(c, argc, argv, lens);
}

/* Authenticates and selects the db on a new connection; 0, or PW_EIO with *why set. */
static int rd_handshake(struct rd_store *rs, redisContext *c, char *why, size_t why_n)
{
    if (rs->pass) {
        const char *argv[3] = {"AUTH", rs->user ? rs->user : rs->pass, rs->pass};
        size_t lens[3] = {4, strlen(argv[1]), strlen(rs->pass)};
        redisReply *r = rd_cmd(c, rs->user ? 3 : 2, argv, lens);
        if (!r) {
            snprintf(why, why_n, "AUTH: %s", c->errstr);
            return PW_EUNAVAIL;
        }
        bool ok = r->type != REDIS_REPLY_ERROR;
        if (!ok) /* the server's message names no password ("WRONGPASS invalid username-password pair") */
            snprintf(why, why_n, "authentication failed: %s", r->str);
        freeReplyObject(r);
        if (!ok)
            return PW_EIO;
    }
    if (rs->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", rs->db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, strlen(db)};
        redisReply *r = rd_cmd(c, 2, argv, lens);
        if (!r) {
            snprintf(why, why_n, "SELECT: %s", c->errstr);
            return PW_EUNAVAIL;
        }
        bool ok = r->type != REDIS_REPLY_ERROR;
        if (!ok)
            snprintf(why, why_n, "SELECT %d: %s", rs->db, r->str);
        freeReplyObject(r);
        if (!ok)
            return PW_EIO;
    }
    return 0;
}

/* A new connection, or PW_EUNAVAIL/PW_EIO with *why set. Called without rs->mu. */
static int rd_connect(struct rd_store *rs, redisContext **out, char *why, size_t why_n)
{
    redisContext *c;
    if (rs->tls) {
        int fd;
        int rc = pw_rdtls_connect(rs->tls, rs->host, rs->port, RD_CONNECT_TIMEOUT_MS, RD_COMMAND_TIMEOUT_MS, &fd, why,
                                  why_n);
        if (rc != 0)
            return rc;
        c = redisConnectFd(fd); /* c owns fd now, closed by redisFree (which ends the TLS pump) */
    } else {
        struct timeval ct = {RD_CONNECT_TIMEOUT_MS / 1000, (RD_CONNECT_TIMEOUT_MS % 1000) * 1000};
        c = redisConnectWithTimeout(rs->host, rs->port, ct);
    }
    if (!c) {
        snprintf(why, why_n, "cannot allocate a connection");
        return PW_EUNAVAIL;
    }
    if (c->err) {
        snprintf(why, why_n, "%s", c->errstr);
        redisFree(c);
        return PW_EUNAVAIL;
    }
    struct timeval t = {RD_COMMAND_TIMEOUT_MS / 1000, (RD_COMMAND_TIMEOUT_MS % 1000) * 1000};
    redisSetTimeout(c, t);
    int rc = rd_handshake(rs, c, why, why_n);
    if (rc != 0) {
        redisFree(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Checks a connection out: an idle one (*fresh false) or a new one (*fresh true). PW_EUNAVAIL at once
 * while Redis is down and its backoff has not passed, or when no connection frees up in time. */
static int pool_get(struct rd_store *rs, redisContext **out, bool *fresh)
{
    pthread_mutex_lock(&rs->mu);
    struct timespec deadline;
    pw_clock_deadline_ts(RD_POOL_WAIT_MS, &deadline);
    while (rs->n_idle == 0 && rs->n_open >= RD_POOL_MAX) {
        if (pthread_cond_timedwait(&rs->cv, &rs->mu, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&rs->mu);
            PW_WARN("store %s: no free connection after %d ms", rs->where, RD_POOL_WAIT_MS);
            return PW_EUNAVAIL;
        }
    }
    if (rs->n_idle > 0) {
        *out = rs->idle[--rs->n_idle];
        *fresh = false;
        pthread_mutex_unlock(&rs->mu);
        return 0;
    }
    if (rs->down && pw_clock_mono_ms() < rs->retry_at_ms) {
        pthread_mutex_unlock(&rs->mu);
        return PW_EUNAVAIL;
    }
    rs->n_open++;
    pthread_mutex_unlock(&rs->mu);

    char why[256] = "";
    int rc = rd_connect(rs, out, why, sizeof why);
    if (rc != 0) {
        pthread_mutex_lock(&rs->mu);
        rs->n_open--;
        pthread_cond_signal(&rs->cv);
        pthread_mutex_unlock(&rs->mu);
        rd_mark_down(rs, why);
        return rc;
    }
    *fresh = true;
    return 0;
}

static void pool_put(struct rd_store *rs, redisContext *c)
{
    pthread_mutex_lock(&rs->mu);
    rs->idle[rs->n_idle++] = c;
    pthread_cond_signal(&rs->cv);
    pthread_mutex_unlock(&rs->mu);
}

/* Frees a broken connection; with all_idle, also every idle one (they share its fate: Redis went away
 * or restarted under them). */
static void pool_drop(struct rd_store *rs, redisContext *c, bool all_idle)
{
    redisContext *idle[RD_POOL_MAX];
    size_t n = 0;
    pthread_mutex_lock(&rs->mu);
    if (all_idle) {
        n = rs->n_idle;
        memcpy(idle, rs->idle, n * sizeof idle[0]);
        rs->n_idle = 0;
    }
    rs->n_open -= 1 + n;
    pthread_cond_broadcast(&rs->cv);
    pthread_mutex_unlock(&rs->mu);
    redisFree(c);
    for (size_t i = 0; i < n; i++)
        redisFree(idle[i]);
}

/* Error replies that mean "not now" rather than "broken". */
static const char *const rd_transient[] = {"LOADING", "BUSY", "READONLY", "MASTERDOWN", "TRYAGAIN", NULL};

/* rd_call's answer to NOSCRIPT (never returned beyond rd_script). */
#define RD_NOSCRIPT 1

static int rd_reply_error(const struct rd_store *rs, const char *what, const redisReply *r)
{
    if (strncmp(r->str, "NOSCRIPT", 8) == 0)
        return RD_NOSCRIPT;
    for (size_t i = 0; rd_transient[i]; i++) {
        size_t n = strlen(rd_transient[i]);
        if (strncmp(r->str, rd_transient[i], n) == 0 && (r->str[n] == ' ' || r->str[n] == '\0')) {
            PW_WARN("store %s: %s: %s", rs->where, what, r->str);
            return PW_EUNAVAIL;
        }
    }
    PW_ERROR("store %s: %s: %s", rs->where, what, r->str);
    return PW_EIO;
}

/* Runs one command (argv[0..argc)) with one retry on a new connection when a pooled one turns out to
 * be broken. *out (caller frees with freeReplyObject) gets a reply that is not an error. */
static int rd_call(struct rd_store *rs, const char *what, int argc, const char **argv, const size_t *lens,
                   redisReply **out)
{
    for (int attempt = 0;; attempt++) {
        redisContext *c;
        bool fresh;
        int rc = pool_get(rs, &c, &fresh);
        if (rc != 0)
            return rc;
        redisReply *r = rd_cmd(c, argc, argv, lens);
        if (!r) {
            char why[200];
            snprintf(why, sizeof why, "%s: %s", what, c->errstr[0] ? c->errstr : "connection lost");
            pool_drop(rs, c, !fresh);
            if (!fresh && attempt == 0)
                continue; /* a pooled connection from before an outage: try a new one */
            rd_mark_down(rs, why);
            return PW_EUNAVAIL;
        }
        pool_put(rs, c);
        rd_mark_up(rs);
        if (r->type == REDIS_REPLY_ERROR) {
            rc = rd_reply_error(rs, what, r);
            freeReplyObject(r);
            return rc;
        }
        *out = r;
        return 0;
    }
}

/* Runs script id with args (the prefix is prepended as ARGV[1]): EVALSHA, then EVAL when the server
 * does not know the script (a restart or SCRIPT FLUSH emptied its cache). */
static int rd_script(struct rd_store *rs, enum rd_script_id id, const char *what, int nargs, const char **args,
                     const size_t *arg_lens, redisReply **out)
{
    int argc = 4 + nargs;
    const char **argv = pw_xcalloc((size_t)argc, sizeof *argv);
    size_t *lens = pw_xcalloc((size_t)argc, sizeof *lens);
    argv[0] = "EVALSHA";
    lens[0] = 7;
    argv[1] = rs->sha[id];
    lens[1] = 40;
    argv[2] = "0";
    lens[2] = 1;
    argv[3] = rs->prefix;
    lens[3] = strlen(rs->prefix);
    for (int i = 0; i < nargs; i++) {
        argv[4 + i] = args[i];
        lens[4 + i] = arg_lens ? arg_lens[i] : strlen(args[i]);
    }
    redisReply *r = NULL;
    int rc = rd_call(rs, what, argc, argv, lens, &r);
    if (rc == RD_NOSCRIPT) { /* a cold script cache (restart, SCRIPT FLUSH): send the text */
        argv[0] = "EVAL";
        lens[0] = 4;
        argv[1] = rd_scripts[id];
        lens[1] = strlen(rd_scripts[id]);
        rc = rd_call(rs, what, argc, argv, lens, &r);
        if (rc == RD_NOSCRIPT)
            rc = PW_EPROTO;
    }
    free(argv);
    free(lens);
    if (rc != 0)
        return rc;
    *out = r;
    return 0;
}

/* ---- reply decoding ---- */

static bool rd_is_str(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS;
}

static int64_t rd_int64(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return (int64_t)r->integer;
    return rd_is_str(r) ? strtoll(r->str, NULL, 10) : 0;
}

static json_t *rd_json(const redisReply *r)
{
    return rd_is_str(r) ? json_loadb(r->str, r->len, JSON_DECODE_ANY, NULL) : NULL;
}

/* A task from 6 consecutive elements (id status priority created finished doc); PW_EIO when the
 * document is not JSON (corruption, logged). */
static int rd_task_row(const struct rd_store *rs, redisReply *const *e, struct pw_store_task *t)
{
    json_t *doc = rd_json(e[5]);
    if (!doc || !rd_is_str(e[0]) || !rd_is_str(e[1])) {
        json_decref(doc);
        PW_ERROR("store %s: task %s: the stored record is damaged", rs->where, rd_is_str(e[0]) ? e[0]->str : "?");
        return PW_EIO;
    }
    t->id = pw_xstrdup(e[0]->str);
    t->status = pw_xstrdup(e[1]->str);
    t->priority = (int)rd_int64(e[2]);
    t->created_ms = rd_int64(e[3]);
    t->finished_ms = rd_int64(e[4]);
    t->doc = doc;
    return 0;
}

/* Tasks from a flat array of rows; *items (caller frees) and *n. */
static int rd_task_rows(const struct rd_store *rs, const redisReply *r, struct pw_store_task **items, size_t *n)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 6 != 0)
        return PW_EPROTO;
    size_t count = r->elements / 6;
    struct pw_store_task *ts = pw_xcalloc(count ? count : 1, sizeof *ts);
    for (size_t i = 0; i < count; i++) {
        int rc = rd_task_row(rs, r->element + 6 * i, &ts[i]);
        if (rc != 0) {
            pw_store_tasks_free(ts, i);
            return rc;
        }
    }
    *items = ts;
    *n = count;
    return 0;
}

/* ---- operations ---- */

static int rd_task_put(pw_store *s, const struct pw_store_task *t)
{
    struct rd_store *rs = rd_of(s);
    char *doc = json_dumps(t->doc, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!doc)
        return PW_EINVAL;
    char prio[24], created[24], finished[24];
    snprintf(prio, sizeof prio, "%d", t->priority);
    snprintf(created, sizeof created, "%lld", (long long)t->created_ms);
    snprintf(finished, sizeof finished, "%lld", (long long)t->finished_ms);
    const char *args[7] = {t->id, t->status, prio, created, finished, doc, pw_store_status_final(t->status) ? "1" : "0"};
    redisReply *r = NULL;
    int rc = rd_script(rs, RS_TASK_PUT, "task put", 7, args, NULL, &r);
    free(doc);
    freeReplyObject(r);
    return rc;
}

static int rd_task_get(pw_store *s, const char *id, struct pw_store_task *out)
{
    struct rd_store *rs = rd_of(s);
    char *key = pw_xasprintf("%st:%s", rs->prefix, id);
    const char *argv[7] = {"HMGET", key, "status", "priority", "created", "finished", "doc"};
    size_t lens[7];
    for (int i = 0; i < 7; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = NULL;
    int rc = rd_call(rs, "task get", 7, argv, lens, &r);
    free(key);
    if (rc != 0)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
        rc = PW_EPROTO;
    } else if (r->element[0]->type == REDIS_REPLY_NIL) {
        rc = PW_ENOTFOUND;
    } else {
        redisReply id_reply = {.type = REDIS_REPLY_STRING, .str = (char *)id, .len = strlen(id)};
        redisReply *row[6] = {&id_reply, r->element[0], r->element[1], r->element[2], r->element[3], r->element[4]};
        struct pw_store_task t = {0};
        rc = rd_task_row(rs, row, &t);
        if (rc == 0)
            *out = t;
    }
    freeReplyObject(r);
    return rc;
}

/* Runs a page script: its arguments are lead (n_lead of them), then the key after the continue
 * token cont ("" for none) and the row limit + 1 (0: no limit; one row more says whether more
 * remain). PW_EINVAL for a malformed token. */
static int rd_page_script(struct rd_store *rs, enum rd_script_id id, const char *what, const char *const *lead,
                          int n_lead, const char *cont, size_t limit, redisReply **out)
{
    char *after = NULL;
    if (cont && pw_store_token_decode(cont, &after) != 0)
        return PW_EINVAL;
    char lim[24];
    snprintf(lim, sizeof lim, "%zu", limit ? limit + 1 : 0);
    const char *args[4];
    for (int i = 0; i < n_lead; i++)
        args[i] = lead[i];
    args[n_lead] = after ? after : "";
    args[n_lead + 1] = lim;
    int rc = rd_script(rs, id, what, n_lead + 2, args, NULL, out);
    free(after);
    return rc;
}

static int rd_task_list(pw_store *s, const char *status, size_t limit, const char *cont, struct pw_store_task **items,
                        size_t *n, char **next)
{
    struct rd_store *rs = rd_of(s);
    const char *lead[] = {status ? status : ""};
    redisReply *r = NULL;
    int rc = rd_page_script(rs, RS_TASK_LIST, "task list", lead, 1, cont, limit, &r);
    if (rc != 0)
        return rc;
    struct pw_store_task *ts = NULL;
    size_t count = 0;
    rc = rd_task_rows(rs, r, &ts, &count);
    freeReplyObject(r);
    if (rc != 0)
        return rc;
    bool more = limit && count > limit;
    if (more) {
        pw_store_task_fini(&ts[limit]);
        count = limit;
    }
    *items = ts;
    *n = count;
    *next = more ? pw_store_token_encode(ts[count - 1].id) : NULL;
    return 0;
}

static int task_id_cmp(const void *a, const void *b)
{
    return strcmp(((const struct pw_store_task *)a)->id, ((const struct pw_store_task *)b)->id);
}

static int rd_task_list_unfinished(pw_store *s, struct pw_store_task **items, size_t *n)
{
    struct rd_store *rs = rd_of(s);
    redisReply *r = NULL;
    int rc = rd_script(rs, RS_UNFINISHED, "unfinished task list", 0, NULL, NULL, &r);
    if (rc != 0)
        return rc;
    rc = rd_task_rows(rs, r, items, n);
    freeReplyObject(r);
    if (rc == 0)
        qsort(*items, *n, sizeof **items, task_id_cmp);
    return rc;
}

static int rd_task_delete(pw_store *s, const char *id)
{
    struct rd_store *rs = rd_of(s);
    const char *args[1] = {id};
    redisReply *r = NULL;
    int rc = rd_script(rs, RS_TASK_DELETE, "task delete", 1, args, NULL, &r);
    if (rc != 0)
        return rc;
    rc = r->type != REDIS_REPLY_INTEGER ? PW_EPROTO : r->integer == 1 ? 0 : PW_ENOTFOUND;
    freeReplyObject(r);
    return rc;
}

static int rd_prune(pw_store *s, int64_t before_ms, size_t *removed)
{
    struct rd_store *rs = rd_of(s);
    char before[24], batch[16];
    snprintf(before, sizeof before, "%lld", (long long)before_ms);
    snprintf(batch, sizeof batch, "%d", RD_PRUNE_BATCH);
    const char *args[2] = {before, batch};
    size_t total = 0;
    /* in batches, so a large backlog does not hold Redis in one long script */
    for (;;) {
        redisReply *r = NULL;
        int rc = rd_script(rs, RS_PRUNE, "prune", 2, args, NULL, &r);
        if (rc != 0)
            return rc;
        bool ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2;
        long long deleted = ok ? r->element[0]->integer : 0, looked = ok ? r->element[1]->integer : 0;
        freeReplyObject(r);
        if (!ok)
            return PW_EPROTO;
        total += (size_t)deleted;
        if (looked < RD_PRUNE_BATCH)
            break;
    }
    if (removed)
        *removed = total;
    return 0;
}

static int rd_nodes_put(pw_store *s, const struct pw_store_node *nodes, size_t n)
{
    struct rd_store *rs = rd_of(s);
    if (n > (INT_MAX - 8) / 4)
        return PW_ETOOLARGE;
    const char **args = pw_xcalloc(4 * n, sizeof *args);
    char **docs = pw_xcalloc(n, sizeof *docs);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        docs[i] = json_dumps(nodes[i].doc, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!docs[i])
            rc = PW_EINVAL;
        args[4 * i] = nodes[i].task_id;
        args[4 * i + 1] = nodes[i].node_name;
        args[4 * i + 2] = nodes[i].state;
        args[4 * i + 3] = docs[i];
    }
    redisReply *r = NULL;
    if (rc == 0)
        rc = rd_script(rs, RS_NODES_PUT, "node results put", (int)(4 * n), args, NULL, &r);
    if (rc == 0) {
        rc = r->type != REDIS_REPLY_INTEGER ? PW_EPROTO : r->integer == 1 ? 0 : PW_ENOTFOUND;
        freeReplyObject(r);
    }
    for (size_t i = 0; i < n; i++)
        free(docs[i]);
    free(docs);
    free(args);
    return rc;
}

static int rd_nodes_list(pw_store *s, const char *task_id, const char *state, size_t limit, const char *cont,
                         struct pw_store_node **items, size_t *n, char **next)
{
    struct rd_store *rs = rd_of(s);
    const char *lead[] = {task_id, state ? state : ""};
    redisReply *r = NULL;
    int rc = rd_page_script(rs, RS_NODES_LIST, "node results list", lead, 2, cont, limit, &r);
    if (rc != 0)
        return rc;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return PW_ENOTFOUND;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 3 != 0) {
        freeReplyObject(r);
        return PW_EPROTO;
    }
    size_t count = r->elements / 3;
    bool more = limit && count > limit;
    if (more)
        count = limit;
    struct pw_store_node *ns = pw_xcalloc(count ? count : 1, sizeof *ns);
    for (size_t i = 0; i < count; i++) {
        redisReply *const *e = r->element + 3 * i;
        json_t *doc = rd_json(e[2]);
        if (!doc || !rd_is_str(e[0]) || !rd_is_str(e[1])) {
            json_decref(doc);
            PW_ERROR("store %s: task %s: a stored node result is damaged", rs->where, task_id);
            pw_store_nodes_free(ns, i);
            freeReplyObject(r);
            return PW_EIO;
        }
        ns[i] = (struct pw_store_node){.task_id = pw_xstrdup(task_id),
                                       .node_name = pw_xstrdup(e[0]->str),
                                       .state = pw_xstrdup(e[1]->str),
                                       .doc = doc};
    }
    freeReplyObject(r);
    *items = ns;
    *n = count;
    *next = more ? pw_store_token_encode(ns[count - 1].node_name) : NULL;
    return 0;
}

/* ---- records ---- */

static int rd_rec_put(pw_store *s, const char *kind, const char *key, const json_t *doc,
                      enum pw_store_rec_mode mode)
{
    struct rd_store *rs = rd_of(s);
    char *text = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return PW_EINVAL;
    char m[4];
    snprintf(m, sizeof m, "%d", (int)mode);
    const char *args[4] = {kind, key, text, m};
    redisReply *r = NULL;
    int rc = rd_script(rs, RS_REC_PUT, "record put", 4, args, NULL, &r);
    free(text);
    if (rc != 0)
        return rc;
    rc = r->type != REDIS_REPLY_INTEGER ? PW_EPROTO
         : r->integer == 1              ? 0
         : r->integer == 0              ? PW_EEXIST
                                        : PW_ENOTFOUND;
    freeReplyObject(r);
    return rc;
}

static int rd_rec_get(pw_store *s, const char *kind, const char *key, json_t **doc)
{
    struct rd_store *rs = rd_of(s);
    char *hkey = pw_xasprintf("%sr:%s", rs->prefix, kind);
    const char *argv[3] = {"HGET", hkey, key};
    size_t lens[3] = {4, strlen(hkey), strlen(key)};
    redisReply *r = NULL;
    int rc = rd_call(rs, "record get", 3, argv, lens, &r);
    free(hkey);
    if (rc != 0)
        return rc;
    if (r->type == REDIS_REPLY_NIL) {
        rc = PW_ENOTFOUND;
    } else if ((*doc = rd_json(r)) == NULL) {
        PW_ERROR("store %s: record %s/%s is damaged", rs->where, kind, key);
        rc = PW_EIO;
    }
    freeReplyObject(r);
    return rc;
}

static int rd_rec_list(pw_store *s, const char *kind, size_t limit, const char *cont, struct pw_store_rec **items,
                       size_t *n, char **next)
{
    struct rd_store *rs = rd_of(s);
    const char *lead[] = {kind};
    redisReply *r = NULL;
    int rc = rd_page_script(rs, RS_REC_LIST, "record list", lead, 1, cont, limit, &r);
    if (rc != 0)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
        freeReplyObject(r);
        return PW_EPROTO;
    }
    size_t count = r->elements / 2;
    bool more = limit && count > limit;
    if (more)
        count = limit;
    struct pw_store_rec *out = pw_xcalloc(count ? count : 1, sizeof *out);
    for (size_t i = 0; i < count; i++) {
        redisReply *const *e = r->element + 2 * i;
        json_t *doc = rd_json(e[1]);
        if (!doc || !rd_is_str(e[0])) {
            json_decref(doc);
            PW_ERROR("store %s: a stored %s record is damaged", rs->where, kind);
            pw_store_recs_free(out, i);
            freeReplyObject(r);
            return PW_EIO;
        }
        out[i] = (struct pw_store_rec){.key = pw_xstrndup(e[0]->str, e[0]->len), .doc = doc};
    }
    freeReplyObject(r);
    *items = out;
    *n = count;
    *next = more ? pw_store_token_encode(out[count - 1].key) : NULL;
    return 0;
}

static int rd_rec_delete(pw_store *s, const char *kind, const char *key)
{
    struct rd_store *rs = rd_of(s);
    const char *args[2] = {kind, key};
    redisReply *r = NULL;
    int rc = rd_script(rs, RS_REC_DELETE, "record delete", 2, args, NULL, &r);
    if (rc != 0)
        return rc;
    rc = r->type != REDIS_REPLY_INTEGER ? PW_EPROTO : r->integer == 1 ? 0 : PW_ENOTFOUND;
    freeReplyObject(r);
    return rc;
}

/* ---- url, open, close ---- */

static void rd_free(struct rd_store *rs)
{
    for (size_t i = 0; i < rs->n_idle; i++)
        redisFree(rs->idle[i]);
    pw_rdtls_free(rs->tls); /* after the connections: it waits for their pumps */
    pthread_mutex_destroy(&rs->mu);
    pthread_cond_destroy(&rs->cv);
    free(rs->host);
    free(rs->user);
    if (rs->pass)
        memset(rs->pass, 0, strlen(rs->pass));
    free(rs->pass);
    free(rs->prefix);
    free(rs);
}

/* Brings the prefix's schema to RD_SCHEMA_VERSION; *msg names a failure. */
static int rd_migrate(struct rd_store *rs, char **msg)
{
    for (int guard = 0; guard <= RD_SCHEMA_VERSION + 1; guard++) {
        char *key = pw_xasprintf("%sschema", rs->prefix);
        const char *argv[2] = {"GET", key};
        size_t lens[2] = {3, strlen(key)};
        redisReply *r = NULL;
        int rc = rd_call(rs, "schema version", 2, argv, lens, &r);
        free(key);
        if (rc != 0) {
            pthread_mutex_lock(&rs->mu);
            *msg = pw_xasprintf("cannot read the schema version: %s", rs->down ? rs->last_why : pw_strerror(rc));
            pthread_mutex_unlock(&rs->mu);
            return rc;
        }
        char *e = NULL;
        long v = r->type == REDIS_REPLY_NIL ? 0 : rd_is_str(r) ? strtol(r->str, &e, 10) : -1;
        bool bad = v < 0 || (e && *e);
        freeReplyObject(r);
        if (bad) {
            *msg = pw_xasprintf("the key %sschema holds no schema version", rs->prefix);
            return PW_EIO;
        }
        if (v == RD_SCHEMA_VERSION)
            return 0;
        if (v > RD_SCHEMA_VERSION) {
            *msg = pw_xasprintf("the store's schema version %ld is newer than this prewarmd's (%d): upgrade prewarmd",
                                v, RD_SCHEMA_VERSION);
            return PW_EIO;
        }
        char *text = pw_xasprintf("%s%s%s", rd_migrate_head, rd_migrations[v], rd_migrate_tail);
        char from[16], to[16];
        snprintf(from, sizeof from, "%ld", v);
        snprintf(to, sizeof to, "%ld", v + 1);
        const char *ev[6] = {"EVAL", text, "0", rs->prefix, from, to};
        size_t evl[6] = {4, strlen(text), 1, strlen(rs->prefix), strlen(from), strlen(to)};
        rc = rd_call(rs, "schema migration", 6, ev, evl, &r);
        free(text);
        if (rc != 0) {
            *msg = pw_xasprintf("schema migration %ld -> %ld failed: %s", v, v + 1, pw_strerror(rc));
            return rc;
        }
        freeReplyObject(r);
        PW_INFO("store %s: schema at version %ld (migrated from %ld or by another replica)", rs->where, v + 1, v);
    }
    *msg = pw_xasprintf("the schema version keeps changing");
    return PW_EIO;
}

/* Opens a redis:// (tls false) or rediss:// store from rest, the url after the scheme's colon. */
static int rd_open_url(const char *rest, bool tls, pw_store **out, char **errmsg)
{
    struct pw_redis_url u;
    const char *why = NULL;
    const char *scheme = tls ? "rediss" : "redis";
    if (pw_redis_url_parse(rest, &u, &why) != 0) {
        if (errmsg)
            *errmsg = pw_xasprintf("bad %s store url: %s", scheme, why);
        return PW_EINVAL;
    }
    if (!tls && (u.ca || u.cert || u.key)) {
        pw_redis_url_fini(&u);
        if (errmsg)
            *errmsg = pw_xasprintf("bad redis store url: ca, cert and key are TLS parameters: use rediss://");
        return PW_EINVAL;
    }
    pw_rdtls *t = NULL;
    char twhy[512];
    if (tls && pw_rdtls_new(u.ca, u.cert, u.key, &t, twhy, sizeof twhy) != 0) {
        pw_redis_url_fini(&u);
        if (errmsg)
            *errmsg = pw_xasprintf("bad rediss store url: %s", twhy);
        return PW_EINVAL;
    }
    free(u.ca);
    free(u.cert);
    free(u.key);
    struct rd_store *rs = pw_xcalloc(1, sizeof *rs);
    rs->base.ops = tls ? &pw_store_rediss_ops : &pw_store_redis_ops;
    rs->tls = t;
    rs->host = u.host;
    rs->user = u.user;
    rs->pass = u.pass;
    rs->prefix = u.prefix;
    rs->port = u.port;
    rs->db = u.db;
    snprintf(rs->where, sizeof rs->where, "%s://%s%s%s:%d/%d", scheme, strchr(rs->host, ':') ? "[" : "", rs->host,
             strchr(rs->host, ':') ? "]" : "", rs->port, rs->db);
    pthread_mutex_init(&rs->mu, NULL);
    pthread_cond_init(&rs->cv, NULL);
    for (int i = 0; i < RS_COUNT; i++) {
        unsigned char md[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)rd_scripts[i], strlen(rd_scripts[i]), md);
        for (int k = 0; k < SHA_DIGEST_LENGTH; k++)
            snprintf(rs->sha[i] + 2 * k, 3, "%02x", md[k]);
    }
    char *msg = NULL;
    int rc = rd_migrate(rs, &msg);
    if (rc != 0) {
        if (errmsg)
            *errmsg = pw_xasprintf("%s: %s", rs->where, msg);
        free(msg);
        rd_free(rs);
        return rc;
    }
    PW_INFO("store %s: open (prefix \"%s\", schema version %d)", rs->where, rs->prefix, RD_SCHEMA_VERSION);
    *out = &rs->base;
    return 0;
}

static void rd_close(pw_store *s)
{
    struct rd_store *rs = rd_of(s);
    assert(rs->n_idle == rs->n_open); /* no call in flight */
    rd_free(rs);
}

static int rd_open(const char *rest, pw_store **out, char **errmsg)
{
    return rd_open_url(rest, false, out, errmsg);
}

static int rediss_open(const char *rest, pw_store **out, char **errmsg)
{
    return rd_open_url(rest, true, out, errmsg);
}

/* Both schemes' ops: the same back end, rediss:// connecting over TLS (redis_tls.h). */
#define RD_OPS(SCHEME, OPEN)                                                                                    \
    {                                                                                                           \
        .scheme = SCHEME, .open = OPEN, .close = rd_close, .task_put = rd_task_put, .task_get = rd_task_get,   \
        .task_list = rd_task_list, .task_list_unfinished = rd_task_list_unfinished,                            \
        .task_delete = rd_task_delete, .prune = rd_prune, .nodes_put = rd_nodes_put,                           \
        .nodes_list = rd_nodes_list, .rec_put = rd_rec_put, .rec_get = rd_rec_get, .rec_list = rd_rec_list,    \
        .rec_delete = rd_rec_delete,                                                                            \
    }

const struct pw_store_ops pw_store_redis_ops = RD_OPS("redis", rd_open);
const struct pw_store_ops pw_store_rediss_ops = RD_OPS("rediss", rediss_open);
