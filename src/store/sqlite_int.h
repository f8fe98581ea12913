/* sqlite_int.h: private to the "sqlite:" store back end, shared by its two files:
 * sqlite.c, the store operations written as SQL (the schema, its migrations, the statements, rows),
 * and sqlite_db.c, the connection layer under them (opening and migrating the database file, the
 * pool, the per-connection statement cache, transactions with busy retries, SQLite codes as PW_E*).
 *
 * Thread model: a struct sql_conn is used by one thread at a time (the one pw_store_sql_txn gave
 * it to); everything else is safe from any thread. */
#ifndef PW_STORE_SQLITE_INT_H
#define PW_STORE_SQLITE_INT_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

/* The schema version this build writes; sqlite.c's pw_store_sql_migrations has one entry per step. */
#define PW_STORE_SQL_SCHEMA_VERSION 3

/* The statements of the back end, prepared once per connection (texts: pw_store_sql_text). */
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

/* sqlite.c: the SQL text of each statement, and row i of the migrations takes user_version i to
 * i + 1 (each run in one transaction with its version bump). */
extern const char *const pw_store_sql_text[ST_COUNT];
extern const char *const pw_store_sql_migrations[PW_STORE_SQL_SCHEMA_VERSION];

/* One pooled connection (sqlite_db.c), lent to a transaction's body. */
struct sql_conn;

/* The body of a transaction: returns an SQLite code (SQLITE_OK on success); arg is the op's own. A
 * body may run more than once (a busy database retries the whole transaction), so it starts over
 * each time. */
typedef int (*sql_body)(struct sql_conn *c, void *arg);

/* Opens the store of the database file at path (its parent directories made, the schema migrated)
 * with ops as its handle's ops: 0 and *out (close with pw_store_sql_close), or PW_EINVAL / PW_EIO
 * with *errmsg (caller frees; errmsg may be NULL) saying why, logged. */
int pw_store_sql_open(const char *path, const struct pw_store_ops *ops, pw_store **out, char **errmsg);
/* Closes every connection (the last one checkpoints the WAL into the database) and frees s. */
void pw_store_sql_close(pw_store *s);

/* Runs body in one transaction (BEGIN IMMEDIATE for writes, behind the store's write lock) on a
 * connection checked out of s's pool, retrying the whole transaction on SQLITE_BUSY. Returns 0 or a
 * PW_E* code, logging store faults with what (the operation's name). */
int pw_store_sql_txn(pw_store *s, const char *what, bool write, sql_body body, void *arg);

/* The cached statement id of c, reset and unbound; NULL with *rc set when it cannot be prepared. */
sqlite3_stmt *pw_store_sql_stmt(struct sql_conn *c, enum sql_stmt_id id, int *rc);
/* sqlite3_step through the fault seam (sqlite_faultvfs.h). */
int pw_store_sql_step(sqlite3_stmt *st);
/* Bind a named parameter (":id") when st has it; text is bound without a copy (SQLITE_STATIC). */
void pw_store_sql_bind_text(sqlite3_stmt *st, const char *name, const char *v);
void pw_store_sql_bind_int64(sqlite3_stmt *st, const char *name, int64_t v);
/* The rows the last statement on c changed. */
int pw_store_sql_changes(struct sql_conn *c);

#endif
