/* sqlite.c: the "sqlite:PATH" store back end: tasks, node results and records in one SQLite database
 * file, each store operation one transaction of prepared statements over the connection layer of
 * sqlite_db.c (which says what is durable when, how threads share the file, and how SQLite errors
 * become PW_E*).
 *
 * Every write call is one transaction, so a failed call writes nothing: a task is never half-written
 * and a batch of node results lands whole or not at all. Lists page by key (:after, :limit + 1 rows
 * to know whether more remain) with the store's continue tokens.
 *
 * Schema. PRAGMA user_version is the schema version; pw_store_sql_migrations holds the forward
 * migrations as SQL text, row N taking version N to N+1. An empty file goes 0 -> 1 -> 2 -> 3, a
 * file of an older prewarmd goes from where it is, a file newer than this build is refused. Faults
 * are injected in tests through sqlite_fault.h (the seam lives in sqlite_faultvfs.c). */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "base/err.h"
#include "base/mem.h"
#include "store/sqlite.h"
#include "store/sqlite_int.h"
#include "store/store.h"

/* ---- schema and migrations ---- */

/* Row i takes user_version i to i + 1. Version 1 was the first released schema: tasks with id,
 * status, created time and the document; node results keyed by (task, node) with no foreign key.
 * Version 2 adds priority and finished time (filled from the documents), indexes for status
 * listing, creation and pruning, and makes node results cascade with their task. Version 3 adds
 * records (store.h): documents of other kinds keyed by (kind, key). */
const char *const pw_store_sql_migrations[] = {
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
_Static_assert(sizeof pw_store_sql_migrations / sizeof pw_store_sql_migrations[0] == PW_STORE_SQL_SCHEMA_VERSION,
               "one migration per schema version");

/* ---- statements (prepared once per connection) ---- */

#define TASK_COLS "SELECT id, status, priority, created_ms, finished_ms, doc FROM tasks "
#define NODE_COLS "SELECT task_id, node_name, state, doc FROM nodes "

/* Parameters are named (:id, :status, :after, :limit ...) so one binder serves every variant. */
const char *const pw_store_sql_text[ST_COUNT] = {
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

struct task_put_arg {
    const struct pw_store_task *t;
    const char *doc;
};

static int body_task_put(struct sql_conn *c, void *arg)
{
    const struct task_put_arg *a = arg;
    int rc;
    sqlite3_stmt *st = pw_store_sql_stmt(c, ST_TASK_PUT, &rc);
    if (!st)
        return rc;
    pw_store_sql_bind_text(st, ":id", a->t->id);
    pw_store_sql_bind_text(st, ":status", a->t->status);
    pw_store_sql_bind_int64(st, ":priority", a->t->priority);
    pw_store_sql_bind_int64(st, ":created", a->t->created_ms);
    pw_store_sql_bind_int64(st, ":finished", a->t->finished_ms);
    pw_store_sql_bind_text(st, ":doc", a->doc);
    rc = pw_store_sql_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int sql_task_put(pw_store *s, const struct pw_store_task *t)
{
    struct task_put_arg a = {.t = t, .doc = doc_text(t->doc)};
    if (!a.doc)
        return PW_EINVAL;
    int rc = pw_store_sql_txn(s, "task put", true, body_task_put, &a);
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
    sqlite3_stmt *st = pw_store_sql_stmt(c, ST_TASK_GET, &rc);
    if (!st)
        return rc;
    pw_store_sql_bind_text(st, ":id", a->id);
    rc = pw_store_sql_step(st);
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
    int rc = pw_store_sql_txn(s, "task get", false, body_task_get, &a);
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
    while ((rc = pw_store_sql_step(st)) == SQLITE_ROW) {
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
    sqlite3_stmt *st = pw_store_sql_stmt(c, a->stmt, &rc);
    if (!st)
        return rc;
    pw_store_sql_bind_text(st, ":status", a->status);
    pw_store_sql_bind_text(st, ":after", a->after);
    pw_store_sql_bind_int64(st, ":limit", a->limit ? (int64_t)a->limit + 1 : -1);
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
    int rc = pw_store_sql_txn(s, "task list", false, body_task_list, &a);
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
    int rc = pw_store_sql_txn(s, "unfinished task list", false, body_task_list, &a);
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
    sqlite3_stmt *st = pw_store_sql_stmt(c, a->stmt, &rc);
    if (!st)
        return rc;
    pw_store_sql_bind_text(st, ":id", a->id);
    pw_store_sql_bind_int64(st, ":before", a->before);
    rc = pw_store_sql_step(st);
    sqlite3_reset(st);
    a->changes = pw_store_sql_changes(c); /* the tasks only: cascaded node rows are not counted */
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int sql_task_delete(pw_store *s, const char *id)
{
    struct delete_arg a = {.stmt = ST_TASK_DELETE, .id = id};
    int rc = pw_store_sql_txn(s, "task delete", true, body_delete, &a);
    if (rc != 0)
        return rc;
    return a.changes > 0 ? 0 : PW_ENOTFOUND;
}

static int sql_prune(pw_store *s, int64_t before_ms, size_t *removed)
{
    struct delete_arg a = {.stmt = ST_PRUNE, .before = before_ms};
    int rc = pw_store_sql_txn(s, "prune", true, body_delete, &a);
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
    sqlite3_stmt *st = pw_store_sql_stmt(c, ST_NODE_PUT, &rc);
    if (!st)
        return rc;
    for (size_t i = 0; i < a->n; i++) {
        sqlite3_reset(st);
        pw_store_sql_bind_text(st, ":task", a->nodes[i].task_id);
        pw_store_sql_bind_text(st, ":name", a->nodes[i].node_name);
        pw_store_sql_bind_text(st, ":state", a->nodes[i].state);
        pw_store_sql_bind_text(st, ":doc", a->docs[i]);
        rc = pw_store_sql_step(st);
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
    int rc = pw_store_sql_txn(s, "node results put", true, body_nodes_put, &a);
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
    sqlite3_stmt *st = pw_store_sql_stmt(c, ST_TASK_EXISTS, &rc);
    if (!st)
        return rc;
    pw_store_sql_bind_text(st, ":id", a->task_id);
    rc = pw_store_sql_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? SQLITE_OK : rc;
    a->task_found = true;
    st = pw_store_sql_stmt(c, a->stmt, &rc);
    if (!st)
        return rc;
    pw_store_sql_bind_text(st, ":task", a->task_id);
    pw_store_sql_bind_text(st, ":state", a->state);
    pw_store_sql_bind_text(st, ":after", a->after);
    pw_store_sql_bind_int64(st, ":limit", a->limit ? (int64_t)a->limit + 1 : -1);
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
    int rc = pw_store_sql_txn(s, "node results list", false, body_nodes_list, &a);
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
    sqlite3_stmt *st = pw_store_sql_stmt(c, a->stmt, &rc);
    if (!st)
        return rc;
    pw_store_sql_bind_text(st, ":kind", a->kind);
    pw_store_sql_bind_text(st, ":key", a->key);
    pw_store_sql_bind_text(st, ":doc", a->doc);
    rc = pw_store_sql_step(st);
    if (rc == SQLITE_ROW) {
        a->found = col_json(st, 1);
        rc = a->found ? SQLITE_DONE : SQLITE_CORRUPT;
    }
    a->changes = pw_store_sql_changes(c);
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
    int rc = pw_store_sql_txn(s, "record put", true, body_rec, &a);
    free((char *)a.doc);
    if (rc == 0 && a.changes == 0)
        rc = mode == PW_STORE_REC_CREATE ? PW_EEXIST : PW_ENOTFOUND;
    return rc;
}

static int sql_rec_get(pw_store *s, const char *kind, const char *key, json_t **doc)
{
    struct rec_arg a = {.stmt = ST_REC_GET, .kind = kind, .key = key};
    int rc = pw_store_sql_txn(s, "record get", false, body_rec, &a);
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
    int rc = pw_store_sql_txn(s, "record delete", true, body_rec, &a);
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
    sqlite3_stmt *st = pw_store_sql_stmt(c, a->after ? ST_REC_LIST_AFTER : ST_REC_LIST, &rc);
    if (!st)
        return rc;
    pw_store_sql_bind_text(st, ":kind", a->kind);
    pw_store_sql_bind_text(st, ":after", a->after);
    pw_store_sql_bind_int64(st, ":limit", a->limit ? (int64_t)a->limit + 1 : -1);
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
    int rc = pw_store_sql_txn(s, "record list", false, body_rec_list, &a);
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

/* ---- open ---- */

static int sql_open(const char *rest, pw_store **out, char **errmsg)
{
    return pw_store_sql_open(rest, &pw_store_sqlite_ops, out, errmsg);
}

const struct pw_store_ops pw_store_sqlite_ops = {
    .scheme = "sqlite",
    .open = sql_open,
    .close = pw_store_sql_close,
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
