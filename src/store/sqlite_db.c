/* sqlite_db.c: the connection layer of the "sqlite:" store back end (sqlite_int.h); sqlite.c writes
 * the store's operations as SQL over it.
 *
 * Durability. The database runs in WAL mode with synchronous=FULL: each commit appends its pages to
 * the -wal file and fsyncs it before the call returns, so whatever a put reported as done survives a
 * kill -9 and the loss of the OS cache. Every call is one transaction (BEGIN IMMEDIATE .. COMMIT for
 * writes, pw_store_sql_txn), so a failed call writes nothing.
 *
 * Threads. A store owns a small pool of connections (at most SQL_POOL_MAX, opened on demand). A call
 * checks one connection out, uses it alone and gives it back, so no connection is ever used by two
 * threads at once (the house rule) while readers run in parallel under WAL. Writers also take the
 * store's write lock before they check out a connection: writers of this process queue on a mutex
 * instead of polling in SQLite's busy handler, and SQLITE_BUSY can only come from another process
 * holding the database (busy_timeout, then SQL_BUSY_RETRIES whole-transaction retries, then
 * PW_EUNAVAIL). Each connection caches its prepared statements (pw_store_sql_text, prepared on first
 * use).
 *
 * Schema. PRAGMA user_version is the schema version; the first connection of a store runs the forward
 * migrations (sqlite.c's pw_store_sql_migrations), each in one transaction with its version bump, and
 * refuses a file newer than this build.
 *
 * Errors. SQLite result codes become PW_* through sql_errors (busy -> PW_EUNAVAIL, disk full,
 * read-only, corrupt, I/O -> PW_EIO; the API answers both with 503), with one log line naming the
 * file, the operation and the cause. Every file is opened through the fault seam's VFS and every
 * statement stepped through it (sqlite_faultvfs.h). */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "store/sqlite_faultvfs.h"
#include "store/sqlite_int.h"
#include "store/store.h"

#define SQL_POOL_MAX 4
#define SQL_BUSY_TIMEOUT_MS 1000
#define SQL_BUSY_RETRIES 3
#define SQL_POOL_WAIT_S 30

/* ---- errors ---- */

/* By primary result code. The only constraint a checked call can break is a node result's task
 * foreign key (keys are upserted, NOT NULL columns are checked in store.c). */
static const struct {
    int code;
    int pw;
    const char *cause;
} sql_errors[] = {
    {SQLITE_BUSY, PW_EUNAVAIL, "the database is locked by another connection (busy)"},
    {SQLITE_LOCKED, PW_EUNAVAIL, "a table is locked"},
    {SQLITE_PROTOCOL, PW_EUNAVAIL, "a locking protocol race"},
    {SQLITE_FULL, PW_EIO, "the disk is full"},
    {SQLITE_READONLY, PW_EIO, "the database is read-only"},
    {SQLITE_CORRUPT, PW_EIO, "the database file is corrupt"},
    {SQLITE_NOTADB, PW_EIO, "the file is not a database"},
    {SQLITE_IOERR, PW_EIO, "an I/O error"},
    {SQLITE_CANTOPEN, PW_EIO, "the database file cannot be opened"},
    {SQLITE_PERM, PW_EIO, "permission denied"},
    {SQLITE_NOMEM, PW_ENOMEM, "out of memory"},
    {SQLITE_TOOBIG, PW_ETOOLARGE, "a document is too large"},
    {SQLITE_CONSTRAINT, PW_ENOTFOUND, "a node result names a task that does not exist"},
};

static int sql_error_index(int code)
{
    for (size_t i = 0; i < sizeof sql_errors / sizeof sql_errors[0]; i++)
        if (sql_errors[i].code == (code & 0xff))
            return (int)i;
    return -1;
}

static int sql_pw_code(int code)
{
    int i = sql_error_index(code);
    return i < 0 ? PW_EIO : sql_errors[i].pw;
}

static const char *sql_cause(int code)
{
    int i = sql_error_index(code);
    return i < 0 ? "a database error" : sql_errors[i].cause;
}

/* ---- connections and the pool ---- */

struct sql_conn {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    bool in_use;
};

struct sql_store {
    struct pw_store base; /* first: the public handle */
    char *path;
    pthread_mutex_t mu; /* guards conns, n_conns, in_use */
    pthread_cond_t cv;  /* a connection was given back */
    struct sql_conn *conns[SQL_POOL_MAX];
    size_t n_conns;
    pthread_mutex_t write_mu; /* one writer at a time in this process */
    int newer_version;        /* set when open refused a schema newer than PW_STORE_SQL_SCHEMA_VERSION */
};

static struct sql_store *sql_of(pw_store *s)
{
    return (struct sql_store *)s;
}

static void sql_log_fail(const struct sql_store *ss, const char *what, int code, sqlite3 *db)
{
    if ((code & 0xff) == SQLITE_CONSTRAINT)
        return; /* a caller error reported as PW_ENOTFOUND, not a store fault */
    const char *detail = db && sqlite3_errcode(db) == code ? sqlite3_errmsg(db) : sqlite3_errstr(code);
    if ((code & 0xff) == SQLITE_BUSY)
        PW_WARN("store sqlite:%s: %s failed: %s (%s, code %d)", ss->path, what, sql_cause(code), detail, code);
    else
        PW_ERROR("store sqlite:%s: %s failed: %s (%s, code %d)", ss->path, what, sql_cause(code), detail, code);
}

static void conn_close(struct sql_conn *c)
{
    if (!c)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close(c->db);
    free(c);
}

/* Runs a statement with no result rows outside the cache (pragmas, migrations). */
static int conn_exec(struct sql_conn *c, const char *sql)
{
    return sqlite3_exec(c->db, sql, NULL, NULL, NULL);
}

sqlite3_stmt *pw_store_sql_stmt(struct sql_conn *c, enum sql_stmt_id id, int *rc)
{
    if (!c->st[id]) {
        *rc = sqlite3_prepare_v3(c->db, pw_store_sql_text[id], -1, SQLITE_PREPARE_PERSISTENT, &c->st[id], NULL);
        if (*rc != SQLITE_OK) {
            c->st[id] = NULL;
            return NULL;
        }
    }
    sqlite3_reset(c->st[id]);
    sqlite3_clear_bindings(c->st[id]);
    *rc = SQLITE_OK;
    return c->st[id];
}

int pw_store_sql_step(sqlite3_stmt *st)
{
    int code = pw_store_sqlite_fault_step();
    if (code != SQLITE_OK) {
        sqlite3_reset(st);
        return code;
    }
    return sqlite3_step(st);
}

void pw_store_sql_bind_text(sqlite3_stmt *st, const char *name, const char *v)
{
    int i = sqlite3_bind_parameter_index(st, name);
    if (i > 0)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

void pw_store_sql_bind_int64(sqlite3_stmt *st, const char *name, int64_t v)
{
    int i = sqlite3_bind_parameter_index(st, name);
    if (i > 0)
        sqlite3_bind_int64(st, i, v);
}

/* Runs a cached statement that returns no rows. */
static int conn_run(struct sql_conn *c, enum sql_stmt_id id)
{
    int rc;
    sqlite3_stmt *st = pw_store_sql_stmt(c, id, &rc);
    if (!st)
        return rc;
    rc = pw_store_sql_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int conn_user_version(struct sql_conn *c, int *out)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Brings the schema to PW_STORE_SQL_SCHEMA_VERSION, one transaction per step. *msg (static) says why not. */
static int conn_migrate(struct sql_store *ss, struct sql_conn *c, const char **msg)
{
    int v = 0;
    int rc = conn_user_version(c, &v);
    if (rc != SQLITE_OK) {
        *msg = "cannot read the schema version";
        return rc;
    }
    if (v > PW_STORE_SQL_SCHEMA_VERSION) {
        ss->newer_version = v;
        *msg = "the database was written by a newer prewarmd";
        return SQLITE_ERROR;
    }
    for (; v < PW_STORE_SQL_SCHEMA_VERSION; v++) {
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
        rc = conn_exec(c, "BEGIN IMMEDIATE");
        if (rc == SQLITE_OK)
            rc = conn_exec(c, pw_store_sql_migrations[v]);
        if (rc == SQLITE_OK)
            rc = conn_exec(c, bump);
        if (rc == SQLITE_OK)
            rc = conn_exec(c, "COMMIT");
        if (rc != SQLITE_OK) {
            PW_ERROR("store sqlite:%s: migration %d -> %d failed: %s", ss->path, v, v + 1, sqlite3_errmsg(c->db));
            if (!sqlite3_get_autocommit(c->db))
                conn_exec(c, "ROLLBACK");
            *msg = "the schema migration failed";
            return rc;
        }
        PW_INFO("store sqlite:%s: schema migrated from version %d to %d", ss->path, v, v + 1);
    }
    return SQLITE_OK;
}

/* Sets WAL mode (persistent in the file). A file system without shared memory can refuse it and
 * keep a rollback journal: commits stay durable (synchronous=FULL), readers then wait for writers. */
static int conn_set_wal(const struct sql_store *ss, struct sql_conn *c)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        if (!mode || strcmp(mode, "wal") != 0)
            PW_WARN("store sqlite:%s: journal mode is %s, not wal: readers will wait for writers", ss->path,
                    mode ? mode : "unknown");
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Opens one connection. The first of a store (first true) also sets WAL and migrates. On failure
 * *msg (static text) names the cause and the SQLite code is returned. */
static int conn_open(struct sql_store *ss, bool first, struct sql_conn **out, const char **msg)
{
    struct sql_conn *c = pw_xcalloc(1, sizeof *c);
    int rc = sqlite3_open_v2(ss->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             PW_STORE_SQLITE_FAULTVFS_NAME);
    *msg = "cannot open the database file";
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(c->db, 1);
        sqlite3_busy_timeout(c->db, SQL_BUSY_TIMEOUT_MS);
        /* The first real read of the file: a garbage file fails here with SQLITE_NOTADB. */
        *msg = "cannot read the database";
        rc = conn_exec(c, "SELECT count(*) FROM sqlite_master");
    }
    if (rc == SQLITE_OK && first) {
        *msg = "cannot switch to WAL mode";
        rc = conn_set_wal(ss, c);
    }
    if (rc == SQLITE_OK) {
        *msg = "cannot set synchronous=FULL";
        rc = conn_exec(c, "PRAGMA synchronous = FULL");
    }
    if (rc == SQLITE_OK && first) {
        int v = 0;
        /* A read-only file that already has the current schema is usable for reads. */
        if (sqlite3_db_readonly(c->db, "main") == 1 && conn_user_version(c, &v) == SQLITE_OK &&
            v == PW_STORE_SQL_SCHEMA_VERSION)
            PW_WARN("store sqlite:%s: the database is read-only: writes will fail", ss->path);
        else
            rc = conn_migrate(ss, c, msg);
    }
    if (rc == SQLITE_OK) {
        *msg = "cannot enable foreign keys";
        rc = conn_exec(c, "PRAGMA foreign_keys = ON"); /* after migrating: it rebuilds tables */
    }
    if (rc != SQLITE_OK) {
        if (c->db && sqlite3_errcode(c->db) != SQLITE_OK)
            rc = sqlite3_extended_errcode(c->db) ? sqlite3_extended_errcode(c->db) : rc;
        conn_close(c);
        return rc;
    }
    *out = c;
    return SQLITE_OK;
}

/* Checks a connection out; PW_EUNAVAIL when none frees up in time or a new one cannot open. */
static int pool_get(struct sql_store *ss, struct sql_conn **out)
{
    struct timespec deadline;
    unsigned wait_ms = pw_store_sqlite_fault_pool_wait_ms();
    pw_clock_deadline_ts(wait_ms ? (int64_t)wait_ms : SQL_POOL_WAIT_S * 1000, &deadline);
    int rc = 0;
    pthread_mutex_lock(&ss->mu);
    for (;;) {
        for (size_t i = 0; i < ss->n_conns; i++) {
            if (!ss->conns[i]->in_use) {
                ss->conns[i]->in_use = true;
                *out = ss->conns[i];
                pthread_mutex_unlock(&ss->mu);
                return 0;
            }
        }
        if (ss->n_conns < SQL_POOL_MAX) {
            const char *msg;
            struct sql_conn *c;
            int src = conn_open(ss, false, &c, &msg);
            if (src != SQLITE_OK) {
                PW_ERROR("store sqlite:%s: %s: %s", ss->path, msg, sqlite3_errstr(src));
                rc = sql_pw_code(src);
                break;
            }
            c->in_use = true;
            ss->conns[ss->n_conns++] = c;
            *out = c;
            break;
        }
        if (pthread_cond_timedwait(&ss->cv, &ss->mu, &deadline) == ETIMEDOUT) {
            PW_ERROR("store sqlite:%s: no database connection free after %u ms", ss->path,
                     wait_ms ? wait_ms : SQL_POOL_WAIT_S * 1000);
            rc = PW_EUNAVAIL;
            break;
        }
    }
    pthread_mutex_unlock(&ss->mu);
    return rc;
}

static void pool_put(struct sql_store *ss, struct sql_conn *c)
{
    pthread_mutex_lock(&ss->mu);
    c->in_use = false;
    pthread_cond_signal(&ss->cv);
    pthread_mutex_unlock(&ss->mu);
}

int pw_store_sql_changes(struct sql_conn *c)
{
    return sqlite3_changes(c->db);
}

/* ---- transactions ---- */

/* pw_store_sql_txn: SQLITE_BUSY retries the whole transaction up to SQL_BUSY_RETRIES times. */
int pw_store_sql_txn(pw_store *s, const char *what, bool write, sql_body body, void *arg)
{
    struct sql_store *ss = sql_of(s);
    if (write)
        pthread_mutex_lock(&ss->write_mu);
    struct sql_conn *c = NULL;
    int rc = pool_get(ss, &c);
    if (rc != 0) {
        if (write)
            pthread_mutex_unlock(&ss->write_mu);
        return rc;
    }
    int src = SQLITE_OK;
    if (!sqlite3_get_autocommit(c->db)) /* a rollback that failed last time: never build on it */
        conn_exec(c, "ROLLBACK");
    for (int attempt = 0;; attempt++) {
        src = conn_run(c, write ? ST_BEGIN_WRITE : ST_BEGIN_READ);
        if (src == SQLITE_OK)
            src = body(c, arg);
        if (src == SQLITE_OK)
            src = conn_run(c, ST_COMMIT);
        if (src == SQLITE_OK)
            break;
        if (!sqlite3_get_autocommit(c->db)) {
            sqlite3_stmt *rb = pw_store_sql_stmt(c, ST_ROLLBACK, &rc);
            if (rb) {
                sqlite3_step(rb); /* never through the fault seam: always undo */
                sqlite3_reset(rb);
            }
        }
        if ((src & 0xff) != SQLITE_BUSY || attempt >= SQL_BUSY_RETRIES)
            break;
        PW_WARN("store sqlite:%s: %s: database busy, retry %d of %d", ss->path, what, attempt + 1, SQL_BUSY_RETRIES);
        struct timespec ts = {0, 20000000L * (attempt + 1)};
        nanosleep(&ts, NULL);
    }
    if (src != SQLITE_OK)
        sql_log_fail(ss, what, src, c->db);
    pool_put(ss, c);
    if (write)
        pthread_mutex_unlock(&ss->write_mu);
    return src == SQLITE_OK ? 0 : sql_pw_code(src);
}

/* ---- open and close ---- */

/* mkdir -p of the directory part of path; 0 or errno. */
static int make_parent_dirs(const char *path)
{
    char *dir = pw_xstrdup(path);
    char *slash = strrchr(dir, '/');
    int err = 0;
    if (slash && slash != dir) {
        *slash = '\0';
        for (char *p = dir + 1; err == 0; p++) {
            if (*p != '/' && *p != '\0')
                continue;
            char saved = *p;
            *p = '\0';
            if (mkdir(dir, 0755) != 0 && errno != EEXIST)
                err = errno;
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    free(dir);
    return err;
}

int pw_store_sql_open(const char *rest, const struct pw_store_ops *ops, pw_store **out, char **errmsg)
{
    if (!rest || !*rest) {
        if (errmsg)
            *errmsg = pw_xstrdup("store url sqlite: needs a file path (sqlite:PATH)");
        return PW_EINVAL;
    }
    if (!sqlite3_threadsafe()) {
        if (errmsg)
            *errmsg = pw_xasprintf("sqlite:%s: this SQLite library was built without thread support", rest);
        return PW_EIO;
    }
    if (pw_store_sqlite_faultvfs_register() != SQLITE_OK) {
        if (errmsg)
            *errmsg = pw_xasprintf("sqlite:%s: cannot register the store's VFS", rest);
        return PW_EIO;
    }
    int err = make_parent_dirs(rest);
    if (err != 0) {
        PW_ERROR("store sqlite:%s: cannot create the parent directory: %s", rest, strerror(err));
        if (errmsg)
            *errmsg = pw_xasprintf("sqlite:%s: cannot create the parent directory: %s", rest, strerror(err));
        return PW_EIO;
    }
    struct sql_store *ss = pw_xcalloc(1, sizeof *ss);
    ss->base.ops = ops;
    ss->path = pw_xstrdup(rest);
    pthread_mutex_init(&ss->mu, NULL);
    pthread_cond_init(&ss->cv, NULL);
    pthread_mutex_init(&ss->write_mu, NULL);
    const char *msg;
    struct sql_conn *c = NULL;
    int src = conn_open(ss, true, &c, &msg);
    if (src != SQLITE_OK && ss->newer_version) {
        PW_ERROR("store sqlite:%s: %s (schema version %d; this build knows up to %d)", rest, msg, ss->newer_version,
                 PW_STORE_SQL_SCHEMA_VERSION);
        if (errmsg)
            *errmsg = pw_xasprintf("sqlite:%s: %s (schema version %d; this build knows up to %d)", rest, msg,
                                   ss->newer_version, PW_STORE_SQL_SCHEMA_VERSION);
        pw_store_sql_close(&ss->base);
        return PW_EIO;
    }
    if (src != SQLITE_OK) {
        PW_ERROR("store sqlite:%s: %s: %s (%s)", rest, msg, sql_cause(src), sqlite3_errstr(src));
        if (errmsg)
            *errmsg = pw_xasprintf("sqlite:%s: %s: %s (%s)", rest, msg, sql_cause(src), sqlite3_errstr(src));
        pw_store_sql_close(&ss->base);
        return PW_EIO;
    }
    ss->conns[ss->n_conns++] = c;
    *out = &ss->base;
    return 0;
}

void pw_store_sql_close(pw_store *s)
{
    struct sql_store *ss = sql_of(s);
    for (size_t i = 0; i < ss->n_conns; i++)
        conn_close(ss->conns[i]); /* the last one checkpoints the WAL into the database */
    pthread_mutex_destroy(&ss->write_mu);
    pthread_cond_destroy(&ss->cv);
    pthread_mutex_destroy(&ss->mu);
    free(ss->path);
    free(ss);
}
