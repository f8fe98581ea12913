/* sqlite.c: the "sqlite:PATH" store back end: tasks and node results in one SQLite database file.
 *
 * Durability. The database runs in WAL mode with synchronous=FULL: each commit appends its pages to
 * the -wal file and fsyncs it before the call returns, so whatever a put reported as done survives a
 * kill -9 and the loss of the OS cache. Every write call is one transaction (BEGIN IMMEDIATE ..
 * COMMIT), so a failed call writes nothing: a task is never half-written and a batch of node results
 * lands whole or not at all.
 *
 * Threads. A store owns a small pool of connections (at most SQL_POOL_MAX, opened on demand). A call
 * checks one connection out, uses it alone and gives it back, so no connection is ever used by two
 * threads at once (the house rule) while readers run in parallel under WAL. Writers also take the
 * store's write lock before they check out a connection: writers of this process queue on a mutex
 * instead of polling in SQLite's busy handler, and SQLITE_BUSY can only come from another process
 * holding the database (busy_timeout, then SQL_BUSY_RETRIES whole-transaction retries, then
 * PW_EUNAVAIL). Each connection caches its prepared statements (sql_text, prepared on first use).
 *
 * Schema. PRAGMA user_version is the schema version; sql_migrations holds the forward migrations as
 * SQL text, row N taking version N to N+1, each run in one transaction with its version bump. An
 * empty file goes 0 -> 1 -> 2, a file of an older prewarmd goes from where it is, a file newer than
 * this build is refused.
 *
 * Errors. SQLite result codes become PW_* through sql_errors (busy -> PW_EUNAVAIL, disk full,
 * read-only, corrupt, I/O -> PW_EIO; the API answers both with 503), with one log line naming the
 * file, the operation and the cause. Faults are injected in tests through sqlite_fault.h; the seam
 * and the VFS behind it live in sqlite_faultvfs.c. */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "store/sqlite.h"
#include "store/sqlite_faultvfs.h"
#include "store/store.h"

#define SQL_SCHEMA_VERSION 3
#define SQL_POOL_MAX 4
#define SQL_BUSY_TIMEOUT_MS 1000
#define SQL_BUSY_RETRIES 3
#define SQL_POOL_WAIT_S 30

/* ---- schema and migrations ---- */

/* Row i takes user_version i to i + 1. Version 1 was the first released schema: tasks with id,
 * status, created time and the document; node results keyed by (task, node) with no foreign key.
 * Version 2 adds priority and finished time (filled from the documents), indexes for status
 * listing, creation and pruning, and makes node results cascade with their task. Version 3 adds
 * records (store.h): documents of other kinds keyed by (kind, key). */
static const char *const sql_migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE tasks(id TEXT PRIMARY KEY, status TEXT NOT NULL, created_ms INTEGER NOT NULL,"
    "  doc TEXT NOT NULL);"
    "CREATE INDEX tasks_status ON tasks(status);"
    "CREATE TABLE nodes(task_id TEXT NOT NULL, node_name TEXT NOT NULL, state TEXT NOT NULL,"
    "  doc TEXT NOT NULL, PRIMARY KEY(task_id, node_name));",
    /* 1 -> 2 */
    "ALTER TABLE tasks ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN finished_ms INTEGER NOT NULL DEFAULT 0;"
    "UPDATE tasks SET priority = coalesce(json_extract(doc, '$.priority'), 0),"
    "  finished_ms = coalesce(CAST((julianday(json_extract(doc, '$.finishedAt')) - 2440587.5)"
    "    * 86400000 AS INTEGER), 0)"
    "  WHERE json_valid(doc);"
    "DROP INDEX tasks_status;"
    "CREATE INDEX tasks_status_id ON tasks(status, id);"
    "CREATE INDEX tasks_created ON tasks(created_ms);"
    "CREATE INDEX tasks_finished ON tasks(finished_ms);"
    "CREATE TABLE nodes_v2(task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,"
    "  node_name TEXT NOT NULL, state TEXT NOT NULL, doc TEXT NOT NULL,"
    "  PRIMARY KEY(task_id, node_name)) WITHOUT ROWID;"
    "INSERT INTO nodes_v2 SELECT n.task_id, n.node_name, n.state, n.doc FROM nodes n"
    "  JOIN tasks t ON t.id = n.task_id;" /* drops orphans the old schema allowed */
    "DROP TABLE nodes;"
    "ALTER TABLE nodes_v2 RENAME TO nodes;"
    "CREATE INDEX nodes_state ON nodes(task_id, state, node_name);",
    /* 2 -> 3 */
    ("CREATE TABLE records(kind TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL,"
     "  PRIMARY KEY(kind, key)) WITHOUT ROWID;"),
};
_Static_assert(sizeof sql_migrations / sizeof sql_migrations[0] == SQL_SCHEMA_VERSION,
               "one migration per schema version");

/* ---- statements (prepared once per connection) ---- */

enum sql_stmt_id {
    ST_BEGIN_READ,
    ST_BEGIN_WRITE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_TASK_PUT,
    ST_TASK_GET,
    ST_TASK_EXISTS,
    ST_TASK_LIST,
    ST_TASK_LIST_AFTER,
    ST_TASK_LIST_STATUS,
    ST_TASK_LIST_STATUS_AFTER,
    ST_TASK_UNFINISHED,
    ST_TASK_DELETE,
    ST_PRUNE,
    ST_NODE_PUT,
    ST_NODES_LIST,
    ST_NODES_LIST_AFTER,
    ST_NODES_LIST_STATE,
    ST_NODES_LIST_STATE_AFTER,
    ST_REC_UPSERT,
    ST_REC_CREATE,
    ST_REC_UPDATE,
    ST_REC_GET,
    ST_REC_LIST,
    ST_REC_LIST_AFTER,
    ST_REC_DELETE,
    ST_COUNT
};

#define TASK_COLS "SELECT id, status, priority, created_ms, finished_ms, doc FROM tasks "
#define NODE_COLS "SELECT task_id, node_name, state, doc FROM nodes "

/* Parameters are named (:id, :status, :after, :limit ...) so one binder serves every variant. */
static const char *const sql_text[ST_COUNT] = {
    [ST_BEGIN_READ] = "BEGIN",
    [ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_TASK_PUT] = "INSERT INTO tasks(id, status, priority, created_ms, finished_ms, doc)"
                    " VALUES(:id, :status, :priority, :created, :finished, :doc)"
                    " ON CONFLICT(id) DO UPDATE SET status = excluded.status,"
                    " priority = excluded.priority, created_ms = excluded.created_ms,"
                    " finished_ms = excluded.finished_ms, doc = excluded.doc",
    [ST_TASK_GET] = TASK_COLS "WHERE id = :id",
    [ST_TASK_EXISTS] = "SELECT 1 FROM tasks WHERE id = :id",
    [ST_TASK_LIST] = TASK_COLS "ORDER BY id DESC LIMIT :limit",
    [ST_TASK_LIST_AFTER] = TASK_COLS "WHERE id < :after ORDER BY id DESC LIMIT :limit",
    [ST_TASK_LIST_STATUS] = TASK_COLS "WHERE status = :status ORDER BY id DESC LIMIT :limit",
    [ST_TASK_LIST_STATUS_AFTER] = TASK_COLS "WHERE status = :status AND id < :after"
                                            " ORDER BY id DESC LIMIT :limit",
    [ST_TASK_UNFINISHED] = TASK_COLS "WHERE status IN ('pending', 'running') ORDER BY id ASC",
    [ST_TASK_DELETE] = "DELETE FROM tasks WHERE id = :id",
    [ST_PRUNE] = "DELETE FROM tasks WHERE status IN ('succeeded', 'failed', 'cancelled')"
                 " AND finished_ms < :before",
    [ST_NODE_PUT] = "INSERT INTO nodes(task_id, node_name, state, doc)"
                    " VALUES(:task, :name, :state, :doc)"
                    " ON CONFLICT(task_id, node_name) DO UPDATE SET state = excluded.state,"
                    " doc = excluded.doc",
    [ST_NODES_LIST] = NODE_COLS "WHERE task_id = :task ORDER BY node_name LIMIT :limit",
    [ST_NODES_LIST_AFTER] = NODE_COLS "WHERE task_id = :task AND node_name > :after"
                                      " ORDER BY node_name LIMIT :limit",
    [ST_NODES_LIST_STATE] = NODE_COLS "WHERE task_id = :task AND state = :state"
                                      " ORDER BY node_name LIMIT :limit",
    [ST_NODES_LIST_STATE_AFTER] = NODE_COLS "WHERE task_id = :task AND state = :state"
                                            " AND node_name > :after ORDER BY node_name LIMIT :limit",
    [ST_REC_UPSERT] = "INSERT INTO records(kind, key, doc) VALUES(:kind, :key, :doc)"
                      " ON CONFLICT(kind, key) DO UPDATE SET doc = excluded.doc",
    [ST_REC_CREATE] = "INSERT INTO records(kind, key, doc) VALUES(:kind, :key, :doc)"
                      " ON CONFLICT(kind, key) DO NOTHING",
    [ST_REC_UPDATE] = "UPDATE records SET doc = :doc WHERE kind = :kind AND key = :key",
    [ST_REC_GET] = "SELECT key, doc FROM records WHERE kind = :kind AND key = :key",
    [ST_REC_LIST] = "SELECT key, doc FROM records WHERE kind = :kind ORDER BY key LIMIT :limit",
    [ST_REC_LIST_AFTER] = "SELECT key, doc FROM records WHERE kind = :kind AND key > :after"
                          " ORDER BY key LIMIT :limit",
    [ST_REC_DELETE] = "DELETE FROM records WHERE kind = :kind AND key = :key",
};

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
    int newer_version;        /* set when open refused a schema newer than SQL_SCHEMA_VERSION */
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

/* The cached statement id, reset and unbound; NULL with *rc set when it cannot be prepared. */
static sqlite3_stmt *conn_stmt(struct sql_conn *c, enum sql_stmt_id id, int *rc)
{
    if (!c->st[id]) {
        *rc = sqlite3_prepare_v3(c->db, sql_text[id], -1, SQLITE_PREPARE_PERSISTENT, &c->st[id], NULL);
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

/* sqlite3_step through the fault seam. */
static int stmt_step(sqlite3_stmt *st)
{
    int code = pw_store_sqlite_fault_step();
    if (code != SQLITE_OK) {
        sqlite3_reset(st);
        return code;
    }
    return sqlite3_step(st);
}

static void bind_text(sqlite3_stmt *st, const char *name, const char *v)
{
    int i = sqlite3_bind_parameter_index(st, name);
    if (i > 0)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

static void bind_int64(sqlite3_stmt *st, const char *name, int64_t v)
{
    int i = sqlite3_bind_parameter_index(st, name);
    if (i > 0)
        sqlite3_bind_int64(st, i, v);
}

/* Runs a cached statement that returns no rows. */
static int conn_run(struct sql_conn *c, enum sql_stmt_id id)
{
    int rc;
    sqlite3_stmt *st = conn_stmt(c, id, &rc);
    if (!st)
        return rc;
    rc = stmt_step(st);
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

/* Brings the schema to SQL_SCHEMA_VERSION, one transaction per step. *msg (static) says why not. */
static int conn_migrate(struct sql_store *ss, struct sql_conn *c, const char **msg)
{
    int v = 0;
    int rc = conn_user_version(c, &v);
    if (rc != SQLITE_OK) {
        *msg = "cannot read the schema version";
        return rc;
    }
    if (v > SQL_SCHEMA_VERSION) {
        ss->newer_version = v;
        *msg = "the database was written by a newer prewarmd";
        return SQLITE_ERROR;
    }
    for (; v < SQL_SCHEMA_VERSION; v++) {
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
        rc = conn_exec(c, "BEGIN IMMEDIATE");
        if (rc == SQLITE_OK)
            rc = conn_exec(c, sql_migrations[v]);
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
        if (sqlite3_db_readonly(c->db, "main") == 1 && conn_user_version(c, &v) == SQLITE_OK && v == SQL_SCHEMA_VERSION)
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

/* ---- transactions ---- */

/* The body of a transaction: returns an SQLite code (SQLITE_OK on success); arg is the op's own. */
typedef int (*sql_body)(struct sql_conn *c, void *arg);

/* Runs body in one transaction (BEGIN IMMEDIATE for writes), retrying the whole transaction on
 * SQLITE_BUSY up to SQL_BUSY_RETRIES times. Returns 0 or a PW_E* code, logging store faults. */
static int sql_txn(struct sql_store *ss, const char *what, bool write, sql_body body, void *arg)
{
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
            sqlite3_stmt *rb = conn_stmt(c, ST_ROLLBACK, &rc);
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

/* ---- rows ---- */

static char *col_str(sqlite3_stmt *st, int i)
{
    const unsigned char *v = sqlite3_column_text(st, i);
    return pw_xstrdup(v ? (const char *)v : "");
}

/* Parses a stored document; NULL when it is not JSON (corruption, reported as such). */
static json_t *col_json(sqlite3_stmt *st, int i)
{
    const char *v = (const char *)sqlite3_column_text(st, i);
    int n = sqlite3_column_bytes(st, i);
    return v ? json_loadb(v, (size_t)n, JSON_DECODE_ANY, NULL) : NULL;
}

static int row_task(sqlite3_stmt *st, struct pw_store_task *t)
{
    json_t *doc = col_json(st, 5);
    if (!doc)
        return SQLITE_CORRUPT;
    t->id = col_str(st, 0);
    t->status = col_str(st, 1);
    t->priority = sqlite3_column_int(st, 2);
    t->created_ms = sqlite3_column_int64(st, 3);
    t->finished_ms = sqlite3_column_int64(st, 4);
    t->doc = doc;
    return SQLITE_OK;
}

static int row_node(sqlite3_stmt *st, struct pw_store_node *n)
{
    json_t *doc = col_json(st, 3);
    if (!doc)
        return SQLITE_CORRUPT;
    n->task_id = col_str(st, 0);
    n->node_name = col_str(st, 1);
    n->state = col_str(st, 2);
    n->doc = doc;
    return SQLITE_OK;
}

static char *doc_text(const json_t *doc)
{
    return json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* ---- operations ---- */

static int sql_open(const char *rest, pw_store **out, char **errmsg);
static void sql_close(pw_store *s);

struct task_put_arg {
    const struct pw_store_task *t;
    const char *doc;
};

static int body_task_put(struct sql_conn *c, void *arg)
{
    const struct task_put_arg *a = arg;
    int rc;
    sqlite3_stmt *st = conn_stmt(c, ST_TASK_PUT, &rc);
    if (!st)
        return rc;
    bind_text(st, ":id", a->t->id);
    bind_text(st, ":status", a->t->status);
    bind_int64(st, ":priority", a->t->priority);
    bind_int64(st, ":created", a->t->created_ms);
    bind_int64(st, ":finished", a->t->finished_ms);
    bind_text(st, ":doc", a->doc);
    rc = stmt_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int sql_task_put(pw_store *s, const struct pw_store_task *t)
{
    struct task_put_arg a = {.t = t, .doc = doc_text(t->doc)};
    if (!a.doc)
        return PW_EINVAL;
    int rc = sql_txn(sql_of(s), "task put", true, body_task_put, &a);
    free((char *)a.doc);
    return rc;
}

struct task_get_arg {
    const char *id;
    struct pw_store_task t;
    bool found;
};

static int body_task_get(struct sql_conn *c, void *arg)
{
    struct task_get_arg *a = arg;
    pw_store_task_fini(&a->t); /* a retried transaction starts over */
    a->found = false;
    int rc;
    sqlite3_stmt *st = conn_stmt(c, ST_TASK_GET, &rc);
    if (!st)
        return rc;
    bind_text(st, ":id", a->id);
    rc = stmt_step(st);
    if (rc == SQLITE_ROW) {
        rc = row_task(st, &a->t);
        a->found = rc == SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_reset(st);
    return rc;
}

static int sql_task_get(pw_store *s, const char *id, struct pw_store_task *out)
{
    struct task_get_arg a = {.id = id};
    int rc = sql_txn(sql_of(s), "task get", false, body_task_get, &a);
    if (rc != 0) {
        pw_store_task_fini(&a.t);
        return rc;
    }
    if (!a.found)
        return PW_ENOTFOUND;
    *out = a.t;
    return 0;
}

/* Row readers with one signature, for step_page. */
static int row_task_any(sqlite3_stmt *st, void *out)
{
    return row_task(st, out);
}

static int row_node_any(sqlite3_stmt *st, void *out)
{
    return row_node(st, out);
}

/* Steps st (bound with :limit = limit + 1) and appends each row, read by row, to a growing array of
 * elem-byte records (*items, *n, *cap: realloc'd here); sets *more when a row past limit exists (limit
 * 0: no limit). Resets st. Returns SQLITE_OK or the SQLite error. Serves every paged list. */
static int step_page(sqlite3_stmt *st, size_t limit, size_t elem, int (*row)(sqlite3_stmt *, void *), void **items,
                     size_t *n, size_t *cap, bool *more)
{
    int rc;
    while ((rc = stmt_step(st)) == SQLITE_ROW) {
        if (limit && *n == limit) {
            *more = true;
            break;
        }
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *items = pw_xrealloc(*items, *cap * elem);
        }
        rc = row(st, (char *)*items + *n * elem);
        if (rc != SQLITE_OK)
            break;
        (*n)++;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* A list of tasks from one statement: fills items, asks for limit + 1 rows to know if more remain. */
struct task_list_arg {
    enum sql_stmt_id stmt;
    const char *status, *after;
    size_t limit; /* 0: no limit */
    struct pw_store_task *items;
    size_t n, cap;
    bool more;
};

static int body_task_list(struct sql_conn *c, void *arg)
{
    struct task_list_arg *a = arg;
    pw_store_tasks_free(a->items, a->n); /* a retried transaction starts over */
    a->items = NULL;
    a->n = a->cap = 0;
    a->more = false;
    int rc;
    sqlite3_stmt *st = conn_stmt(c, a->stmt, &rc);
    if (!st)
        return rc;
    bind_text(st, ":status", a->status);
    bind_text(st, ":after", a->after);
    bind_int64(st, ":limit", a->limit ? (int64_t)a->limit + 1 : -1);
    void *items = a->items;
    rc = step_page(st, a->limit, sizeof *a->items, row_task_any, &items, &a->n, &a->cap, &a->more);
    a->items = items;
    return rc;
}

static const enum sql_stmt_id task_list_stmts[2][2] = {
    /* [status given][after given] */
    {ST_TASK_LIST, ST_TASK_LIST_AFTER},
    {ST_TASK_LIST_STATUS, ST_TASK_LIST_STATUS_AFTER},
};

static int sql_task_list(pw_store *s, const char *status, size_t limit, const char *cont, struct pw_store_task **items,
                         size_t *n, char **next)
{
    char *after = NULL;
    if (cont && pw_store_token_decode(cont, &after) != 0)
        return PW_EINVAL;
    struct task_list_arg a = {
        .stmt = task_list_stmts[status != NULL][after != NULL], .status = status, .after = after, .limit = limit};
    int rc = sql_txn(sql_of(s), "task list", false, body_task_list, &a);
    free(after);
    if (rc != 0) {
        pw_store_tasks_free(a.items, a.n);
        return rc;
    }
    *items = a.items;
    *n = a.n;
    *next = a.more ? pw_store_token_encode(a.items[a.n - 1].id) : NULL;
    return 0;
}

static int sql_task_list_unfinished(pw_store *s, struct pw_store_task **items, size_t *n)
{
    struct task_list_arg a = {.stmt = ST_TASK_UNFINISHED};
    int rc = sql_txn(sql_of(s), "unfinished task list", false, body_task_list, &a);
    if (rc != 0) {
        pw_store_tasks_free(a.items, a.n);
        return rc;
    }
    *items = a.items;
    *n = a.n;
    return 0;
}

struct delete_arg {
    enum sql_stmt_id stmt;
    const char *id;
    int64_t before;
    int changes;
};

static int body_delete(struct sql_conn *c, void *arg)
{
    struct delete_arg *a = arg;
    int rc;
    sqlite3_stmt *st = conn_stmt(c, a->stmt, &rc);
    if (!st)
        return rc;
    bind_text(st, ":id", a->id);
    bind_int64(st, ":before", a->before);
    rc = stmt_step(st);
    sqlite3_reset(st);
    a->changes = sqlite3_changes(c->db); /* the tasks only: cascaded node rows are not counted */
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int sql_task_delete(pw_store *s, const char *id)
{
    struct delete_arg a = {.stmt = ST_TASK_DELETE, .id = id};
    int rc = sql_txn(sql_of(s), "task delete", true, body_delete, &a);
    if (rc != 0)
        return rc;
    return a.changes > 0 ? 0 : PW_ENOTFOUND;
}

static int sql_prune(pw_store *s, int64_t before_ms, size_t *removed)
{
    struct delete_arg a = {.stmt = ST_PRUNE, .before = before_ms};
    int rc = sql_txn(sql_of(s), "prune", true, body_delete, &a);
    if (rc != 0)
        return rc;
    if (removed)
        *removed = (size_t)a.changes;
    return 0;
}

struct nodes_put_arg {
    const struct pw_store_node *nodes;
    char **docs;
    size_t n;
};

static int body_nodes_put(struct sql_conn *c, void *arg)
{
    const struct nodes_put_arg *a = arg;
    int rc;
    sqlite3_stmt *st = conn_stmt(c, ST_NODE_PUT, &rc);
    if (!st)
        return rc;
    for (size_t i = 0; i < a->n; i++) {
        sqlite3_reset(st);
        bind_text(st, ":task", a->nodes[i].task_id);
        bind_text(st, ":name", a->nodes[i].node_name);
        bind_text(st, ":state", a->nodes[i].state);
        bind_text(st, ":doc", a->docs[i]);
        rc = stmt_step(st);
        if (rc != SQLITE_DONE) {
            sqlite3_reset(st);
            return rc;
        }
    }
    sqlite3_reset(st);
    return SQLITE_OK;
}

static void docs_free(char **docs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(docs[i]);
    free(docs);
}

static int sql_nodes_put(pw_store *s, const struct pw_store_node *nodes, size_t n)
{
    struct nodes_put_arg a = {.nodes = nodes, .docs = pw_xcalloc(n, sizeof(char *)), .n = n};
    for (size_t i = 0; i < n; i++) {
        a.docs[i] = doc_text(nodes[i].doc);
        if (!a.docs[i]) {
            docs_free(a.docs, n);
            return PW_EINVAL;
        }
    }
    int rc = sql_txn(sql_of(s), "node results put", true, body_nodes_put, &a);
    docs_free(a.docs, n);
    return rc;
}

struct nodes_list_arg {
    enum sql_stmt_id stmt;
    const char *task_id, *state, *after;
    size_t limit;
    struct pw_store_node *items;
    size_t n, cap;
    bool more, task_found;
};

static int body_nodes_list(struct sql_conn *c, void *arg)
{
    struct nodes_list_arg *a = arg;
    pw_store_nodes_free(a->items, a->n);
    a->items = NULL;
    a->n = a->cap = 0;
    a->more = a->task_found = false;
    int rc;
    sqlite3_stmt *st = conn_stmt(c, ST_TASK_EXISTS, &rc);
    if (!st)
        return rc;
    bind_text(st, ":id", a->task_id);
    rc = stmt_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? SQLITE_OK : rc;
    a->task_found = true;
    st = conn_stmt(c, a->stmt, &rc);
    if (!st)
        return rc;
    bind_text(st, ":task", a->task_id);
    bind_text(st, ":state", a->state);
    bind_text(st, ":after", a->after);
    bind_int64(st, ":limit", a->limit ? (int64_t)a->limit + 1 : -1);
    void *items = a->items;
    rc = step_page(st, a->limit, sizeof *a->items, row_node_any, &items, &a->n, &a->cap, &a->more);
    a->items = items;
    return rc;
}

static const enum sql_stmt_id nodes_list_stmts[2][2] = {
    /* [state given][after given] */
    {ST_NODES_LIST, ST_NODES_LIST_AFTER},
    {ST_NODES_LIST_STATE, ST_NODES_LIST_STATE_AFTER},
};

static int sql_nodes_list(pw_store *s, const char *task_id, const char *state, size_t limit, const char *cont,
                          struct pw_store_node **items, size_t *n, char **next)
{
    char *after = NULL;
    if (cont && pw_store_token_decode(cont, &after) != 0)
        return PW_EINVAL;
    struct nodes_list_arg a = {.stmt = nodes_list_stmts[state != NULL][after != NULL],
                               .task_id = task_id,
                               .state = state,
                               .after = after,
                               .limit = limit};
    int rc = sql_txn(sql_of(s), "node results list", false, body_nodes_list, &a);
    free(after);
    if (rc == 0 && !a.task_found)
        rc = PW_ENOTFOUND;
    if (rc != 0) {
        pw_store_nodes_free(a.items, a.n);
        return rc;
    }
    *items = a.items;
    *n = a.n;
    *next = a.more ? pw_store_token_encode(a.items[a.n - 1].node_name) : NULL;
    return 0;
}

/* ---- records ---- */

/* One statement over one record: put (any mode), get or delete. */
struct rec_arg {
    enum sql_stmt_id stmt;
    const char *kind, *key, *doc;
    int changes;
    json_t *found; /* get */
};

static int body_rec(struct sql_conn *c, void *arg)
{
    struct rec_arg *a = arg;
    json_decref(a->found); /* a retried transaction starts over */
    a->found = NULL;
    int rc;
    sqlite3_stmt *st = conn_stmt(c, a->stmt, &rc);
    if (!st)
        return rc;
    bind_text(st, ":kind", a->kind);
    bind_text(st, ":key", a->key);
    bind_text(st, ":doc", a->doc);
    rc = stmt_step(st);
    if (rc == SQLITE_ROW) {
        a->found = col_json(st, 1);
        rc = a->found ? SQLITE_DONE : SQLITE_CORRUPT;
    }
    a->changes = sqlite3_changes(c->db);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int sql_rec_put(pw_store *s, const char *kind, const char *key, const json_t *doc,
                       enum pw_store_rec_mode mode)
{
    static const enum sql_stmt_id stmts[] = {
        [PW_STORE_REC_UPSERT] = ST_REC_UPSERT, [PW_STORE_REC_CREATE] = ST_REC_CREATE,
        [PW_STORE_REC_UPDATE] = ST_REC_UPDATE};
    struct rec_arg a = {.stmt = stmts[mode], .kind = kind, .key = key, .doc = doc_text(doc)};
    if (!a.doc)
        return PW_EINVAL;
    int rc = sql_txn(sql_of(s), "record put", true, body_rec, &a);
    free((char *)a.doc);
    if (rc == 0 && a.changes == 0)
        rc = mode == PW_STORE_REC_CREATE ? PW_EEXIST : PW_ENOTFOUND;
    return rc;
}

static int sql_rec_get(pw_store *s, const char *kind, const char *key, json_t **doc)
{
    struct rec_arg a = {.stmt = ST_REC_GET, .kind = kind, .key = key};
    int rc = sql_txn(sql_of(s), "record get", false, body_rec, &a);
    if (rc != 0) {
        json_decref(a.found);
        return rc;
    }
    if (!a.found)
        return PW_ENOTFOUND;
    *doc = a.found;
    return 0;
}

static int sql_rec_delete(pw_store *s, const char *kind, const char *key)
{
    struct rec_arg a = {.stmt = ST_REC_DELETE, .kind = kind, .key = key};
    int rc = sql_txn(sql_of(s), "record delete", true, body_rec, &a);
    if (rc != 0)
        return rc;
    return a.changes > 0 ? 0 : PW_ENOTFOUND;
}

static int row_rec_any(sqlite3_stmt *st, void *out)
{
    struct pw_store_rec *r = out;
    r->doc = col_json(st, 1);
    if (!r->doc)
        return SQLITE_CORRUPT;
    r->key = col_str(st, 0);
    return SQLITE_OK;
}

struct rec_list_arg {
    const char *kind, *after;
    size_t limit;
    struct pw_store_rec *items;
    size_t n, cap;
    bool more;
};

static int body_rec_list(struct sql_conn *c, void *arg)
{
    struct rec_list_arg *a = arg;
    pw_store_recs_free(a->items, a->n); /* a retried transaction starts over */
    a->items = NULL;
    a->n = a->cap = 0;
    a->more = false;
    int rc;
    sqlite3_stmt *st = conn_stmt(c, a->after ? ST_REC_LIST_AFTER : ST_REC_LIST, &rc);
    if (!st)
        return rc;
    bind_text(st, ":kind", a->kind);
    bind_text(st, ":after", a->after);
    bind_int64(st, ":limit", a->limit ? (int64_t)a->limit + 1 : -1);
    void *items = a->items;
    rc = step_page(st, a->limit, sizeof *a->items, row_rec_any, &items, &a->n, &a->cap, &a->more);
    a->items = items;
    return rc;
}

static int sql_rec_list(pw_store *s, const char *kind, size_t limit, const char *cont, struct pw_store_rec **items,
                        size_t *n, char **next)
{
    char *after = NULL;
    if (cont && pw_store_token_decode(cont, &after) != 0)
        return PW_EINVAL;
    struct rec_list_arg a = {.kind = kind, .after = after, .limit = limit};
    int rc = sql_txn(sql_of(s), "record list", false, body_rec_list, &a);
    free(after);
    if (rc != 0) {
        pw_store_recs_free(a.items, a.n);
        return rc;
    }
    *items = a.items;
    *n = a.n;
    *next = a.more ? pw_store_token_encode(a.items[a.n - 1].key) : NULL;
    return 0;
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

static int sql_open(const char *rest, pw_store **out, char **errmsg)
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
    ss->base.ops = &pw_store_sqlite_ops;
    ss->path = pw_xstrdup(rest);
    pthread_mutex_init(&ss->mu, NULL);
    pthread_cond_init(&ss->cv, NULL);
    pthread_mutex_init(&ss->write_mu, NULL);
    const char *msg;
    struct sql_conn *c = NULL;
    int src = conn_open(ss, true, &c, &msg);
    if (src != SQLITE_OK && ss->newer_version) {
        PW_ERROR("store sqlite:%s: %s (schema version %d; this build knows up to %d)", rest, msg, ss->newer_version,
                 SQL_SCHEMA_VERSION);
        if (errmsg)
            *errmsg = pw_xasprintf("sqlite:%s: %s (schema version %d; this build knows up to %d)", rest, msg,
                                   ss->newer_version, SQL_SCHEMA_VERSION);
        sql_close(&ss->base);
        return PW_EIO;
    }
    if (src != SQLITE_OK) {
        PW_ERROR("store sqlite:%s: %s: %s (%s)", rest, msg, sql_cause(src), sqlite3_errstr(src));
        if (errmsg)
            *errmsg = pw_xasprintf("sqlite:%s: %s: %s (%s)", rest, msg, sql_cause(src), sqlite3_errstr(src));
        sql_close(&ss->base);
        return PW_EIO;
    }
    ss->conns[ss->n_conns++] = c;
    *out = &ss->base;
    return 0;
}

static void sql_close(pw_store *s)
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

const struct pw_store_ops pw_store_sqlite_ops = {
    .scheme = "sqlite",
    .open = sql_open,
    .close = sql_close,
    .task_put = sql_task_put,
    .task_get = sql_task_get,
    .task_list = sql_task_list,
    .task_list_unfinished = sql_task_list_unfinished,
    .task_delete = sql_task_delete,
    .prune = sql_prune,
    .nodes_put = sql_nodes_put,
    .nodes_list = sql_nodes_list,
    .rec_put = sql_rec_put,
    .rec_get = sql_rec_get,
    .rec_list = sql_rec_list,
    .rec_delete = sql_rec_delete,
};
