/* Unit tests for the "sqlite:" store back end beyond the shared contract (test_store_contract.c):
 * open errors and parent directories, WAL/schema/foreign keys on disk, durability and continue
 * tokens across close/reopen, the upgrade from the version-1 schema, a newer schema refused,
 * corrupt files (garbage, damaged pages), faults through the seam (disk full, I/O error, failed
 * fsync, SQLITE_BUSY, a statement failing mid-batch), a real lock held by another connection, a
 * read-only file, and many threads at once.
 *
 * The same binary is the driver of tests/integration/store_kill9.sh: with PW_STORE_KILL9_WRITE=URL
 * it writes tasks until killed, printing each id once its put returned; with PW_STORE_KILL9_CHECK=URL
 * it reads those lines on stdin and checks the database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "store/sqlite_fault.h"
#include "store/store.h"

/* ---- fixture: a fresh directory per test ---- */

struct fx {
    char dir[64];
    char path[128]; /* <dir>/store.db */
    char url[160];  /* sqlite:<path> */
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/pw-sqlite-test-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/store.db", f->dir);
    snprintf(f->url, sizeof f->url, "sqlite:%s", f->path);
    pw_store_sqlite_fault_clear();
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    pw_store_sqlite_fault_clear();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static pw_store *open_ok(const char *url)
{
    pw_store *s = NULL;
    char *err = NULL;
    int rc = pw_store_open(url, &s, &err);
    if (rc != 0)
        fprintf(stderr, "open %s: %s\n", url, err ? err : "?");
    free(err);
    assert_int_equal(rc, 0);
    return s;
}

static int put_task_rc(pw_store *s, const char *id, const char *status, int64_t finished)
{
    json_t *doc =
        json_pack("{s:s,s:s,s:s}", "id", id, "status", status, "pad", "0123456789012345678901234567890123456789");
    struct pw_store_task t = {.id = (char *)id,
                              .status = (char *)status,
                              .priority = 3,
                              .created_ms = 1700000000000,
                              .finished_ms = finished,
                              .doc = doc};
    int rc = pw_store_task_put(s, &t);
    json_decref(doc);
    return rc;
}

static void put_task(pw_store *s, const char *id, const char *status, int64_t finished)
{
    assert_int_equal(put_task_rc(s, id, status, finished), 0);
}

/* Puts n node results "node-000".. of task in one call. */
static int put_nodes_rc(pw_store *s, const char *task, int n, const char *state)
{
    struct pw_store_node *ns = calloc((size_t)n, sizeof *ns);
    char(*names)[24] = calloc((size_t)n, sizeof *names);
    for (int i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "node-%03d", i);
        ns[i] = (struct pw_store_node){.task_id = (char *)task,
                                       .node_name = names[i],
                                       .state = (char *)state,
                                       .doc = json_pack("{s:s,s:s}", "nodeName", names[i], "state", state)};
    }
    int rc = pw_store_nodes_put(s, ns, (size_t)n);
    for (int i = 0; i < n; i++)
        json_decref(ns[i].doc);
    free(ns);
    free(names);
    return rc;
}

static size_t count_nodes(pw_store *s, const char *task)
{
    struct pw_store_node *items;
    size_t n;
    char *next;
    assert_int_equal(pw_store_nodes_list(s, task, NULL, 0, NULL, &items, &n, &next), 0);
    pw_store_nodes_free(items, n);
    return n;
}

static size_t count_tasks(pw_store *s)
{
    struct pw_store_task *items;
    size_t n;
    char *next;
    assert_int_equal(pw_store_task_list(s, NULL, 0, NULL, &items, &n, &next), 0);
    pw_store_tasks_free(items, n);
    return n;
}

static bool task_exists(pw_store *s, const char *id)
{
    struct pw_store_task t;
    int rc = pw_store_task_get(s, id, &t);
    assert_true(rc == 0 || rc == PW_ENOTFOUND);
    if (rc == 0) {
        assert_string_equal(json_string_value(json_object_get(t.doc, "id")), id);
        pw_store_task_fini(&t);
    }
    return rc == 0;
}

/* Runs one SQL statement returning one text/integer cell on a raw connection to path. */
static char *raw_query_flags(const char *path, const char *sql, int flags)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, flags, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    char *out = NULL;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(st, 0);
        out = strdup(v ? (const char *)v : "");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

static char *raw_query(const char *path, const char *sql)
{
    return raw_query_flags(path, sql, SQLITE_OPEN_READONLY);
}

static void assert_raw(const char *path, const char *sql, const char *want)
{
    char *got = raw_query(path, sql);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fprintf(stderr, "raw_exec: %s\n", err);
    sqlite3_free(err);
    sqlite3_close(db);
    assert_int_equal(rc, SQLITE_OK);
}

/* ---- open ---- */

static void test_open_errors(void **state)
{
    struct fx *f = *state;
    pw_store *s = NULL;
    char *err = NULL;
    assert_int_equal(pw_store_open("sqlite:", &s, &err), PW_EINVAL);
    assert_non_null(strstr(err, "path"));
    free(err);
    err = NULL;

    /* The scheme list names sqlite now. */
    assert_int_equal(pw_store_open("nosuch:x", &s, &err), PW_EINVAL);
    assert_non_null(strstr(err, "sqlite:"));
    free(err);
    err = NULL;

    /* A parent that is a regular file: a clear error naming the path. */
    char file[160], url[200];
    snprintf(file, sizeof file, "%s/plain", f->dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(url, sizeof url, "sqlite:%s/sub/store.db", file);
    assert_int_equal(pw_store_open(url, &s, &err), PW_EIO);
    assert_non_null(err);
    assert_non_null(strstr(err, file));
    free(err);
    err = NULL;

    /* A directory where the file should be. */
    snprintf(url, sizeof url, "sqlite:%s", f->dir);
    assert_int_equal(pw_store_open(url, &s, &err), PW_EIO);
    assert_non_null(strstr(err, f->dir));
    free(err);

    /* Missing parents are created. */
    snprintf(url, sizeof url, "sqlite:%s/a/b/c/store.db", f->dir);
    s = open_ok(url);
    put_task(s, "t-1", "pending", 0);
    pw_store_close(s);
    struct stat sb;
    char p[200];
    snprintf(p, sizeof p, "%s/a/b/c/store.db", f->dir);
    assert_int_equal(stat(p, &sb), 0);
}

/* ---- durability, schema, tokens across a restart ---- */

static void test_reopen(void **state)
{
    struct fx *f = *state;
    pw_store *s = open_ok(f->url);
    char id[32];
    for (int i = 1; i <= 10; i++) {
        snprintf(id, sizeof id, "t-%06d", i);
        put_task(s, id, i % 2 ? "running" : "succeeded", i % 2 ? 0 : 1000 + i);
    }
    assert_int_equal(put_nodes_rc(s, "t-000003", 25, "running"), 0);
    struct pw_store_task *items;
    size_t n;
    char *next;
    assert_int_equal(pw_store_task_list(s, NULL, 4, NULL, &items, &n, &next), 0);
    pw_store_tasks_free(items, n);
    assert_non_null(next);
    struct pw_store_node *nodes;
    char *nnext;
    assert_int_equal(pw_store_nodes_list(s, "t-000003", NULL, 10, NULL, &nodes, &n, &nnext), 0);
    pw_store_nodes_free(nodes, n);
    pw_store_close(s);

    /* On disk: WAL, the current schema, node results cascading with their task. */
    assert_raw(f->path, "PRAGMA journal_mode", "wal");
    assert_raw(f->path, "PRAGMA user_version", "3");
    assert_raw(f->path, "SELECT count(*) FROM tasks", "10");
    assert_raw(f->path, "SELECT \"on_delete\" FROM pragma_foreign_key_list('nodes')", "CASCADE");
    assert_raw(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'tasks_%'", "3");

    s = open_ok(f->url);
    assert_int_equal(count_tasks(s), 10);
    assert_int_equal(count_nodes(s, "t-000003"), 25);
    struct pw_store_task t;
    assert_int_equal(pw_store_task_get(s, "t-000004", &t), 0);
    assert_string_equal(t.status, "succeeded");
    assert_int_equal(t.priority, 3);
    assert_int_equal(t.created_ms, 1700000000000);
    assert_int_equal(t.finished_ms, 1004);
    pw_store_task_fini(&t);
    /* Tokens handed out before the restart continue after it. */
    char *tok = next;
    assert_int_equal(pw_store_task_list(s, NULL, 4, tok, &items, &n, &next), 0);
    free(tok);
    assert_int_equal(n, 4);
    assert_string_equal(items[0].id, "t-000006");
    pw_store_tasks_free(items, n);
    free(next);
    assert_int_equal(pw_store_nodes_list(s, "t-000003", NULL, 0, nnext, &nodes, &n, &next), 0);
    free(nnext);
    assert_int_equal(n, 15);
    assert_string_equal(nodes[0].node_name, "node-010");
    pw_store_nodes_free(nodes, n);
    assert_null(next);
    /* Malformed tokens. */
    const char *bad[] = {"x", "k", "k0", "kzz", "k00", "kAB", "t-000001"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(pw_store_task_list(s, NULL, 1, bad[i], &items, &n, &next), PW_EINVAL);
        assert_int_equal(pw_store_nodes_list(s, "t-000003", NULL, 1, bad[i], &nodes, &n, &next), PW_EINVAL);
    }
    pw_store_close(s);
}

/* ---- upgrade from schema version 1 ---- */

static const char v1_schema_and_data[] =
    /* The version-1 schema exactly as migration 0 -> 1 creates it. */
    "CREATE TABLE tasks(id TEXT PRIMARY KEY, status TEXT NOT NULL, created_ms INTEGER NOT NULL,"
    "  doc TEXT NOT NULL);"
    "CREATE INDEX tasks_status ON tasks(status);"
    "CREATE TABLE nodes(task_id TEXT NOT NULL, node_name TEXT NOT NULL, state TEXT NOT NULL,"
    "  doc TEXT NOT NULL, PRIMARY KEY(task_id, node_name));"
    "INSERT INTO tasks VALUES('t-000001', 'succeeded', 1000,"
    "  '{\"id\":\"t-000001\",\"status\":\"succeeded\",\"priority\":5,"
    "    \"finishedAt\":\"2026-11-27T10:00:03Z\"}');"
    "INSERT INTO tasks VALUES('t-000002', 'running', 2000,"
    "  '{\"id\":\"t-000002\",\"status\":\"running\",\"priority\":-20,\"finishedAt\":null}');"
    "INSERT INTO tasks VALUES('t-000003', 'pending', 3000, '{\"id\":\"t-000003\",\"status\":\"pending\"}');"
    "INSERT INTO nodes VALUES('t-000001', 'node-a', 'succeeded', '{\"nodeName\":\"node-a\"}');"
    "INSERT INTO nodes VALUES('t-000001', 'node-b', 'failed', '{\"nodeName\":\"node-b\"}');"
    "INSERT INTO nodes VALUES('t-000002', 'node-a', 'running', '{\"nodeName\":\"node-a\"}');"
    "INSERT INTO nodes VALUES('t-gone', 'node-a', 'running', '{}');" /* an orphan v1 allowed */
    "PRAGMA user_version = 1;";

static void test_upgrade_v1(void **state)
{
    struct fx *f = *state;
    raw_exec(f->path, v1_schema_and_data);
    assert_raw(f->path, "PRAGMA user_version", "1");

    pw_store *s = open_ok(f->url);
    assert_raw(f->path, "PRAGMA user_version", "3");
    assert_raw(f->path, "PRAGMA journal_mode", "wal");
    assert_raw(f->path, "SELECT count(*) FROM nodes", "3"); /* the orphan is gone */
    assert_raw(f->path, "PRAGMA integrity_check", "ok");
    assert_raw(f->path, "SELECT count(*) FROM pragma_foreign_key_check", "0");

    struct pw_store_task t;
    assert_int_equal(pw_store_task_get(s, "t-000001", &t), 0);
    assert_string_equal(t.status, "succeeded");
    assert_int_equal(t.priority, 5);
    assert_int_equal(t.created_ms, 1000);
    assert_int_equal(t.finished_ms, 1795773603000LL); /* 2026-11-27T10:00:03Z */
    assert_int_equal(json_integer_value(json_object_get(t.doc, "priority")), 5);
    pw_store_task_fini(&t);
    assert_int_equal(pw_store_task_get(s, "t-000002", &t), 0);
    assert_int_equal(t.priority, -20);
    assert_int_equal(t.finished_ms, 0);
    pw_store_task_fini(&t);

    struct pw_store_task *items;
    size_t n;
    assert_int_equal(pw_store_task_list_unfinished(s, &items, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(items[0].id, "t-000002");
    assert_string_equal(items[1].id, "t-000003");
    pw_store_tasks_free(items, n);
    assert_int_equal(count_nodes(s, "t-000001"), 2);

    /* The migrated data behaves like new data: prune by the migrated finish time cascades. */
    size_t removed;
    assert_int_equal(pw_store_prune(s, 1795773603000LL, &removed), 0);
    assert_int_equal(removed, 0);
    assert_int_equal(pw_store_prune(s, 1795773603001LL, &removed), 0);
    assert_int_equal(removed, 1);
    put_task(s, "t-000001", "running", 0);
    assert_int_equal(count_nodes(s, "t-000001"), 0);
    assert_int_equal(put_nodes_rc(s, "t-000002", 3, "succeeded"), 0);
    assert_int_equal(count_nodes(s, "t-000002"), 4); /* node-a from version 1 + 3 new */
    pw_store_close(s);

    /* Reopening an up-to-date file migrates nothing and changes nothing. */
    s = open_ok(f->url);
    assert_int_equal(count_tasks(s), 3);
    pw_store_close(s);
    assert_raw(f->path, "PRAGMA user_version", "3");
}

/* One cell through a read-write raw connection (a closed WAL database has no -shm for a read-only one). */
static void assert_raw_rw(const char *path, const char *sql, const char *want)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const unsigned char *v = sqlite3_column_text(st, 0);
    assert_string_equal(v ? (const char *)v : "", want);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* A migration that fails half-way (a statement of it fails) opens nothing and leaves the file at the
 * last step that committed (each step is one transaction: version 1, or 2 when the fault hit the step
 * to 3) with its data, and the next open migrates the rest. */
static void test_failed_migration(void **state)
{
    struct fx *f = *state;
    raw_exec(f->path, v1_schema_and_data);
    int failed = 0;
    for (int skip = 0; skip < 12; skip++) {
        pw_store_sqlite_fault_set(PW_STORE_SQLITE_FAULT_WRITE, skip, -1, SQLITE_IOERR_WRITE);
        pw_store *s = NULL;
        char *err = NULL;
        int rc = pw_store_open(f->url, &s, &err);
        unsigned hits = pw_store_sqlite_fault_hits();
        pw_store_sqlite_fault_clear();
        if (rc == 0) { /* the fault came after the migration's commit: fine, but then it is done */
            pw_store_close(s);
            assert_raw_rw(f->path, "PRAGMA user_version", "3");
            break;
        }
        assert_true(hits > 0);
        failed++;
        assert_int_equal(rc, PW_EIO);
        assert_non_null(err);
        free(err);
        char *v = raw_query_flags(f->path, "PRAGMA user_version", SQLITE_OPEN_READWRITE);
        assert_non_null(v);
        assert_true(strcmp(v, "1") == 0 || strcmp(v, "2") == 0);
        free(v);
        assert_raw_rw(f->path, "SELECT count(*) FROM tasks", "3");
    }
    assert_true(failed > 0); /* the faults did land inside the migration */
    pw_store *s = open_ok(f->url);
    assert_raw(f->path, "PRAGMA user_version", "3");
    assert_int_equal(count_tasks(s), 3);
    pw_store_close(s);
}

static void test_newer_schema(void **state)
{
    struct fx *f = *state;
    pw_store *s = open_ok(f->url);
    put_task(s, "t-1", "pending", 0);
    pw_store_close(s);
    raw_exec(f->path, "PRAGMA user_version = 4");
    char *err = NULL;
    assert_int_equal(pw_store_open(f->url, &s, &err), PW_EIO);
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "newer"));
    assert_non_null(strstr(err, "schema version 4"));
    free(err);
    assert_raw(f->path, "SELECT count(*) FROM tasks", "1"); /* untouched */
}

/* ---- corrupt files ---- */

static void test_corrupt_garbage(void **state)
{
    struct fx *f = *state;
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 2000; i++)
        fputs("this is not a database, just some text. ", fp);
    fclose(fp);
    pw_store *s = NULL;
    char *err = NULL;
    assert_int_equal(pw_store_open(f->url, &s, &err), PW_EIO);
    assert_null(s);
    assert_non_null(err);
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "not a database"));
    free(err);
}

static void test_corrupt_pages(void **state)
{
    struct fx *f = *state;
    pw_store *s = open_ok(f->url);
    char id[32];
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "t-%06d", i);
        put_task(s, id, "running", 0);
        assert_int_equal(put_nodes_rc(s, id, 20, "running"), 0);
    }
    pw_store_close(s); /* checkpoints everything into the main file */

    /* Damage every page but the first (the header and the schema). */
    int fd = open(f->path, O_RDWR);
    assert_true(fd >= 0);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    assert_true(sb.st_size > 8 * 4096);
    char junk[512];
    memset(junk, 0xa5, sizeof junk);
    for (off_t off = 4096; off < sb.st_size; off += 1024)
        assert_int_equal(pwrite(fd, junk, sizeof junk, off), (ssize_t)sizeof junk);
    close(fd);

    /* Opening may or may not notice; the first read of damaged pages must. */
    char *err = NULL;
    int rc = pw_store_open(f->url, &s, &err);
    if (rc != 0) {
        assert_int_equal(rc, PW_EIO);
        assert_non_null(strstr(err, f->path));
        free(err);
        return;
    }
    struct pw_store_task *items;
    size_t n;
    char *next;
    assert_int_equal(pw_store_task_list(s, NULL, 0, NULL, &items, &n, &next), PW_EIO);
    struct pw_store_node *nodes;
    rc = pw_store_nodes_list(s, "t-000001", NULL, 0, NULL, &nodes, &n, &next);
    assert_true(rc == PW_EIO || rc == PW_ENOTFOUND);
    if (rc == 0)
        pw_store_nodes_free(nodes, n);
    rc = put_task_rc(s, "t-new", "pending", 0);
    assert_true(rc == 0 || rc == PW_EIO);
    pw_store_close(s);
}

/* ---- faults through the seam ---- */

static void test_fault_disk_full(void **state)
{
    struct fx *f = *state;
    pw_store *s = open_ok(f->url);
    put_task(s, "t-000001", "running", 0);
    assert_int_equal(put_nodes_rc(s, "t-000001", 10, "running"), 0);

    /* Every write fails: the disk is full. */
    pw_store_sqlite_fault_set(PW_STORE_SQLITE_FAULT_WRITE, 0, -1, SQLITE_FULL);
    assert_int_equal(put_task_rc(s, "t-000002", "pending", 0), PW_EIO);
    assert_int_equal(put_nodes_rc(s, "t-000001", 50, "succeeded"), PW_EIO);
    assert_int_equal(pw_store_task_delete(s, "t-000001"), PW_EIO);
    assert_true(pw_store_sqlite_fault_hits() >= 3);
    /* Reads keep working while writes fail. */
    assert_true(task_exists(s, "t-000001"));
    assert_false(task_exists(s, "t-000002"));
    assert_int_equal(count_nodes(s, "t-000001"), 10);

    /* Space comes back: the store is consistent and usable. */
    pw_store_sqlite_fault_clear();
    assert_false(task_exists(s, "t-000002"));
    struct pw_store_node *nodes;
    size_t n;
    char *next;
    assert_int_equal(pw_store_nodes_list(s, "t-000001", "succeeded", 0, NULL, &nodes, &n, &next), 0);
    assert_int_equal(n, 0); /* the failed batch wrote nothing */
    pw_store_nodes_free(nodes, n);
    put_task(s, "t-000002", "pending", 0);
    assert_int_equal(put_nodes_rc(s, "t-000001", 50, "succeeded"), 0);
    assert_int_equal(count_nodes(s, "t-000001"), 50);

    /* The disk fills in the middle of a big batch (some WAL frames written, then ENOSPC). */
    pw_store_sqlite_fault_set(PW_STORE_SQLITE_FAULT_WRITE, 3, -1, SQLITE_FULL);
    assert_int_equal(put_nodes_rc(s, "t-000002", 500, "running"), PW_EIO);
    pw_store_sqlite_fault_clear();
    assert_int_equal(count_nodes(s, "t-000002"), 0);
    assert_int_equal(put_nodes_rc(s, "t-000002", 500, "running"), 0);
    pw_store_close(s);

    s = open_ok(f->url);
    assert_int_equal(count_tasks(s), 2);
    assert_int_equal(count_nodes(s, "t-000001"), 50);
    assert_int_equal(count_nodes(s, "t-000002"), 500);
    pw_store_close(s);
    assert_raw(f->path, "PRAGMA integrity_check", "ok");
}

static void test_fault_io(void **state)
{
    struct fx *f = *state;
    pw_store *s = open_ok(f->url);
    put_task(s, "t-000001", "running", 0);

    /* An I/O error on one write. */
    pw_store_sqlite_fault_set(PW_STORE_SQLITE_FAULT_WRITE, 0, 1, SQLITE_IOERR_WRITE);
    assert_int_equal(put_task_rc(s, "t-000002", "pending", 0), PW_EIO);
    assert_int_equal(pw_store_sqlite_fault_hits(), 1);
    assert_false(task_exists(s, "t-000002"));
    put_task(s, "t-000002", "pending", 0); /* the fault was one-shot */

    /* A failed fsync: the call fails; the task is then whole or absent, never partial. */
    pw_store_sqlite_fault_set(PW_STORE_SQLITE_FAULT_SYNC, 0, 1, SQLITE_IOERR_FSYNC);
    assert_int_equal(put_task_rc(s, "t-000003", "pending", 0), PW_EIO);
    /* Every commit fsyncs (synchronous=FULL; with NORMAL a WAL commit would not sync at all). */
    for (int i = 0; i < 3; i++) {
        pw_store_sqlite_fault_set(PW_STORE_SQLITE_FAULT_SYNC, 0, 1, SQLITE_IOERR_FSYNC);
        assert_int_equal(put_nodes_rc(s, "t-000001", 1, "running"), PW_EIO);
    }
    assert_int_equal(pw_store_sqlite_fault_hits(), 5); /* 1 write + 1 + 3 syncs */
    pw_store_sqlite_fault_clear();
    assert_int_equal(put_nodes_rc(s, "t-000002", 20, "running"), 0);
    size_t k = count_nodes(s, "t-000002");
    assert_int_equal(k, 20);
    (void)task_exists(s, "t-000003"); /* whichever: the document must match if present */
    put_task(s, "t-000003", "pending", 0);
    assert_true(task_exists(s, "t-000003"));
    pw_store_close(s);
    assert_raw(f->path, "PRAGMA integrity_check", "ok");
}

static void test_fault_busy_and_step(void **state)
{
    struct fx *f = *state;
    pw_store *s = open_ok(f->url);
    put_task(s, "t-000001", "running", 0);

    /* Busy twice, then free: the bounded retries absorb it. */
    pw_store_sqlite_fault_set(PW_STORE_SQLITE_FAULT_STEP, 0, 2, SQLITE_BUSY);
    put_task(s, "t-000002", "pending", 0);
    assert_int_equal(pw_store_sqlite_fault_hits(), 2);

    /* Busy for good: PW_EUNAVAIL (the API says 503), nothing written. */
    pw_store_sqlite_fault_set(PW_STORE_SQLITE_FAULT_STEP, 0, -1, SQLITE_BUSY);
    assert_int_equal(put_task_rc(s, "t-000003", "pending", 0), PW_EUNAVAIL);
    assert_int_equal(put_nodes_rc(s, "t-000001", 5, "running"), PW_EUNAVAIL);
    struct pw_store_task t;
    assert_int_equal(pw_store_task_get(s, "t-000001", &t), PW_EUNAVAIL);
    pw_store_sqlite_fault_clear();
    assert_false(task_exists(s, "t-000003"));
    assert_int_equal(count_nodes(s, "t-000001"), 0);

    /* The 4th statement of a batch (BEGIN, insert, insert, insert...) fails: nothing written. */
    pw_store_sqlite_fault_set(PW_STORE_SQLITE_FAULT_STEP, 3, 1, SQLITE_IOERR);
    assert_int_equal(put_nodes_rc(s, "t-000001", 10, "running"), PW_EIO);
    assert_int_equal(count_nodes(s, "t-000001"), 0);
    /* Busy in the middle of a batch: the whole transaction is retried and lands whole. */
    pw_store_sqlite_fault_set(PW_STORE_SQLITE_FAULT_STEP, 5, 1, SQLITE_BUSY);
    assert_int_equal(put_nodes_rc(s, "t-000001", 10, "running"), 0);
    assert_int_equal(pw_store_sqlite_fault_hits(), 2);
    assert_int_equal(count_nodes(s, "t-000001"), 10);

    /* Corruption found by a later statement: PW_EIO, and the store is usable after. */
    pw_store_sqlite_fault_set(PW_STORE_SQLITE_FAULT_STEP, 1, 1, SQLITE_CORRUPT);
    assert_int_equal(pw_store_task_get(s, "t-000001", &t), PW_EIO);
    struct pw_store_task *items;
    size_t n;
    char *next;
    pw_store_sqlite_fault_set(PW_STORE_SQLITE_FAULT_STEP, 1, 1, SQLITE_CORRUPT);
    assert_int_equal(pw_store_task_list(s, NULL, 0, NULL, &items, &n, &next), PW_EIO);
    pw_store_sqlite_fault_set(PW_STORE_SQLITE_FAULT_STEP, 0, 1, SQLITE_READONLY);
    assert_int_equal(pw_store_prune(s, INT64_MAX, NULL), PW_EIO);
    pw_store_sqlite_fault_clear();
    assert_int_equal(count_tasks(s), 2);
    pw_store_close(s);
}

/* A real lock: another connection holds the write lock for a while. */
struct holder {
    const char *path;
    int hold_ms;
    volatile int locked;
};

static void *hold_lock(void *arg)
{
    struct holder *h = arg;
    sqlite3 *db;
    if (sqlite3_open(h->path, &db) != SQLITE_OK)
        return NULL;
    sqlite3_exec(db,
                 "BEGIN IMMEDIATE; INSERT INTO tasks(id, status, created_ms, doc)"
                 " VALUES('t-other', 'pending', 1, '{\"id\":\"t-other\"}')",
                 NULL, NULL, NULL);
    h->locked = 1;
    struct timespec ts = {h->hold_ms / 1000, (h->hold_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    return NULL;
}

static void test_real_busy(void **state)
{
    struct fx *f = *state;
    pw_store *s = open_ok(f->url);
    put_task(s, "t-000001", "running", 0);
    struct holder h = {.path = f->path, .hold_ms = 400};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, hold_lock, &h), 0);
    for (int i = 0; i < 200 && !h.locked; i++) {
        struct timespec ts = {0, 5000000L};
        nanosleep(&ts, NULL);
    }
    assert_true(h.locked);
    /* Readers are not blocked by the writer (WAL); the write waits for the lock, then lands. */
    assert_true(task_exists(s, "t-000001"));
    assert_false(task_exists(s, "t-other"));
    put_task(s, "t-000002", "pending", 0);
    pthread_join(th, NULL);
    assert_true(task_exists(s, "t-other"));
    assert_true(task_exists(s, "t-000002"));
    pw_store_close(s);
}

/* ---- a read-only file ---- */

/* In a child (as "nobody" when we are root, since root ignores file modes): the open works,
 * reads work, writes fail with PW_EIO. The exit status names the failed check. */
static int readonly_child(const char *url)
{
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
        return 77; /* cannot drop root here: file modes cannot be tested */
    pw_store *s = NULL;
    char *err = NULL;
    if (pw_store_open(url, &s, &err) != 0) {
        fprintf(stderr, "read-only open: %s\n", err ? err : "?");
        return 11;
    }
    struct pw_store_task t;
    if (pw_store_task_get(s, "t-000001", &t) != 0)
        return 12;
    bool doc_ok = json_object_get(t.doc, "id") != NULL;
    pw_store_task_fini(&t);
    if (!doc_ok)
        return 13;
    struct pw_store_node *nodes;
    size_t n;
    char *next;
    if (pw_store_nodes_list(s, "t-000001", NULL, 0, NULL, &nodes, &n, &next) != 0 || n != 7)
        return 14;
    pw_store_nodes_free(nodes, n);
    if (put_task_rc(s, "t-000002", "pending", 0) != PW_EIO)
        return 15;
    if (put_nodes_rc(s, "t-000001", 3, "failed") != PW_EIO)
        return 16;
    if (pw_store_task_delete(s, "t-000001") != PW_EIO)
        return 17;
    if (pw_store_task_get(s, "t-000002", &t) != PW_ENOTFOUND)
        return 18;
    pw_store_close(s);
    return 0;
}

static void test_readonly_file(void **state)
{
    struct fx *f = *state;
    pw_store *s = open_ok(f->url);
    put_task(s, "t-000001", "running", 0);
    assert_int_equal(put_nodes_rc(s, "t-000001", 7, "running"), 0);
    pw_store_close(s);
    assert_int_equal(chmod(f->path, 0444), 0);
    assert_int_equal(chmod(f->dir, 0777), 0); /* the -shm/-wal may be created beside it */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(readonly_child(f->url));
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77) {
        fprintf(stderr, "test_readonly_file: running as root without setuid: skipped\n");
        assert_int_equal(chmod(f->path, 0644), 0);
        skip();
    }
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(chmod(f->path, 0644), 0);
    s = open_ok(f->url); /* writable again: nothing was lost */
    assert_int_equal(count_nodes(s, "t-000001"), 7);
    put_task(s, "t-000002", "pending", 0);
    pw_store_close(s);
}

/* ---- damaged rows, foreign tokens, a failed delete ---- */

/* A stored document that is not JSON (damage the page checks cannot see) is reported as corruption,
 * never handed out half-read; continue tokens that are not ours are PW_EINVAL; a delete whose
 * statement fails leaves the task in place. */
static void test_bad_rows_and_tokens(void **state)
{
    struct fx *f = *state;
    pw_store *s = open_ok(f->url);
    put_task(s, "t-000001", "running", 0);
    put_task(s, "t-000002", "running", 0);
    assert_int_equal(put_nodes_rc(s, "t-000002", 3, "running"), 0);
    pw_store_close(s);
    raw_exec(f->path, "UPDATE tasks SET doc = 'not json' WHERE id = 't-000001';"
                      "UPDATE nodes SET doc = '{\"cut' WHERE node_name = 'node-001'");
    s = open_ok(f->url);
    struct pw_store_task t;
    assert_int_equal(pw_store_task_get(s, "t-000001", &t), PW_EIO);
    assert_int_equal(pw_store_task_get(s, "t-000002", &t), 0);
    pw_store_task_fini(&t);
    struct pw_store_node *nodes;
    size_t n;
    char *next = NULL;
    assert_int_equal(pw_store_nodes_list(s, "t-000002", NULL, 0, NULL, &nodes, &n, &next), PW_EIO);
    static const char *const bad[] = {"k", "k4", "x4142", "kzz41", "k41zz", "k0041", "k4100"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct pw_store_task *items;
        if (pw_store_task_list(s, NULL, 5, bad[i], &items, &n, &next) != PW_EINVAL)
            fail_msg("continue token '%s' was accepted", bad[i]);
    }
    pw_store_sqlite_fault_set(PW_STORE_SQLITE_FAULT_STEP, 1, 1, SQLITE_IOERR_WRITE);
    assert_int_equal(pw_store_task_delete(s, "t-000002"), PW_EIO);
    pw_store_sqlite_fault_clear();
    assert_int_equal(pw_store_task_get(s, "t-000002", &t), 0);
    pw_store_task_fini(&t);
    assert_int_equal(pw_store_task_delete(s, "t-000002"), 0);
    assert_int_equal(pw_store_task_get(s, "t-000002", &t), PW_ENOTFOUND);
    pw_store_close(s);
}

/* ---- the connection pool ---- */

struct hold_arg {
    pw_store *s;
    int rc;
};

/* One read of t-000001; with the statement stall armed it holds its connection that long. */
static void *hold_reader(void *p)
{
    struct hold_arg *a = p;
    struct pw_store_task t;
    a->rc = pw_store_task_get(a->s, "t-000001", &t);
    if (a->rc == 0)
        pw_store_task_fini(&t);
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Four readers hold the pool's four connections (every statement stalls 1 s); a fifth call, read
 * or write, waits for a free one and then fails with PW_EUNAVAIL (the API's 503), touching nothing.
 * Once they are done the store serves again and has lost nothing. */
static void test_pool_exhausted(void **state)
{
    struct fx *f = *state;
    pw_store *s = open_ok(f->url);
    put_task(s, "t-000001", "running", 0);
    pw_store_sqlite_pool_wait_set(200);
    pw_store_sqlite_fault_stall(1000);
    pthread_t th[4];
    struct hold_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct hold_arg){.s = s, .rc = -1};
        assert_int_equal(pthread_create(&th[i], NULL, hold_reader, &args[i]), 0);
    }
    sleep_ms(300);
    struct pw_store_task t;
    assert_int_equal(pw_store_task_get(s, "t-000001", &t), PW_EUNAVAIL);
    assert_int_equal(put_task_rc(s, "t-000002", "pending", 0), PW_EUNAVAIL);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].rc, 0);
    }
    pw_store_sqlite_fault_clear();
    assert_int_equal(pw_store_task_get(s, "t-000002", &t), PW_ENOTFOUND);
    put_task(s, "t-000002", "pending", 0);
    assert_int_equal(pw_store_task_get(s, "t-000001", &t), 0);
    pw_store_task_fini(&t);
    pw_store_close(s);
}

/* A second connection that cannot open (the directory is gone for a moment) fails that call only;
 * the open connection goes on, and the next call opens one. */
static void test_pool_open_fails(void **state)
{
    struct fx *f = *state;
    pw_store *s = open_ok(f->url);
    put_task(s, "t-000001", "running", 0);
    pw_store_sqlite_fault_stall(600);
    pthread_t th;
    struct hold_arg a = {.s = s, .rc = -1};
    assert_int_equal(pthread_create(&th, NULL, hold_reader, &a), 0);
    sleep_ms(200);
    char moved[96];
    snprintf(moved, sizeof moved, "%s.moved", f->dir);
    assert_int_equal(rename(f->dir, moved), 0);
    struct pw_store_task t;
    int rc = pw_store_task_get(s, "t-000001", &t);
    assert_int_equal(rename(moved, f->dir), 0);
    assert_int_equal(rc, PW_EIO);
    pthread_join(th, NULL);
    assert_int_equal(a.rc, 0);
    pw_store_sqlite_fault_clear();
    /* two at once again: the pool opens its second connection now */
    pw_store_sqlite_fault_stall(300);
    a.rc = -1;
    assert_int_equal(pthread_create(&th, NULL, hold_reader, &a), 0);
    sleep_ms(100);
    assert_int_equal(pw_store_task_get(s, "t-000001", &t), 0);
    pw_store_task_fini(&t);
    pthread_join(th, NULL);
    assert_int_equal(a.rc, 0);
    pw_store_close(s);
}

/* Paths without a directory part (relative to the working directory) and directly under /. */
static void test_open_path_forms(void **state)
{
    struct fx *f = *state;
    char cwd[256];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(f->dir), 0);
    pw_store *s = open_ok("sqlite:plain.db");
    put_task(s, "t-000001", "running", 0);
    pw_store_close(s);
    assert_int_equal(chdir(cwd), 0);
    char path[128];
    snprintf(path, sizeof path, "%s/plain.db", f->dir);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    /* errors without an errmsg pointer still fail cleanly */
    assert_int_equal(pw_store_open("sqlite:", &s, NULL), PW_EINVAL);
    snprintf(path, sizeof path, "sqlite:%s/plain.db/x/y.db", f->dir);
    assert_int_equal(pw_store_open(path, &s, NULL), PW_EIO);
}

/* ---- many threads ---- */

#define CONC_THREADS 8
#define CONC_TASKS 30

struct conc_arg {
    pw_store *s;
    int idx;
    int errors;
};

static void *conc_worker(void *p)
{
    struct conc_arg *a = p;
    char id[32];
    for (int i = 0; i < CONC_TASKS; i++) {
        snprintf(id, sizeof id, "t-%02d-%04d", a->idx, i);
        if (put_task_rc(a->s, id, "running", 0) != 0)
            a->errors++;
        if (put_nodes_rc(a->s, id, 5, "running") != 0)
            a->errors++;
        struct pw_store_task t;
        if (pw_store_task_get(a->s, id, &t) != 0)
            a->errors++;
        else
            pw_store_task_fini(&t);
        struct pw_store_task *items;
        size_t n;
        char *next;
        if (pw_store_task_list(a->s, "running", 5, NULL, &items, &n, &next) != 0 || n == 0)
            a->errors++;
        else
            pw_store_tasks_free(items, n);
        free(next);
        struct pw_store_node *nodes;
        if (pw_store_nodes_list(a->s, id, NULL, 0, NULL, &nodes, &n, &next) != 0 || n != 5)
            a->errors++;
        else
            pw_store_nodes_free(nodes, n);
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct fx *f = *state;
    pw_store *s = open_ok(f->url);
    pthread_t th[CONC_THREADS];
    struct conc_arg args[CONC_THREADS];
    for (int i = 0; i < CONC_THREADS; i++) {
        args[i] = (struct conc_arg){.s = s, .idx = i};
        assert_int_equal(pthread_create(&th[i], NULL, conc_worker, &args[i]), 0);
    }
    for (int i = 0; i < CONC_THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].errors, 0);
    }
    assert_int_equal(count_tasks(s), CONC_THREADS * CONC_TASKS);
    pw_store_close(s);
    assert_raw(f->path, "SELECT count(*) FROM nodes", "1200"); /* 8 x 30 x 5 */
}

/* ---- the kill -9 driver (tests/integration/store_kill9.sh) ---- */

#define KILL9_NODES 10

/* Writes tasks until killed: "T <id>" once its put returned, "N <id>" once its 10 node results
 * (one transaction) did. */
static int kill9_write(const char *url, const char *prefix)
{
    pw_store *s = NULL;
    char *err = NULL;
    if (pw_store_open(url, &s, &err) != 0) {
        fprintf(stderr, "kill9 writer: %s\n", err ? err : "?");
        return 2;
    }
    char id[64];
    for (int i = 0; i < 1000000; i++) {
        snprintf(id, sizeof id, "t-%s-%07d", prefix, i);
        json_t *doc = json_pack("{s:s,s:s,s:i,s:s}", "id", id, "status", "running", "nodes", KILL9_NODES, "pad",
                                "prewarm kill -9 durability test document padding");
        struct pw_store_task t = {.id = id, .status = "running", .created_ms = i, .doc = doc};
        int rc = pw_store_task_put(s, &t);
        json_decref(doc);
        if (rc != 0)
            return 3;
        printf("T %s\n", id);
        fflush(stdout);
        if (put_nodes_rc(s, id, KILL9_NODES, "running") != 0)
            return 4;
        printf("N %s\n", id);
        fflush(stdout);
    }
    pw_store_close(s);
    return 0;
}

/* Checks stdin's "T id"/"N id" lines against the database: every T present and whole, every N with
 * all its node results, no task with a partial batch, an intact file. Prints what it found. */
static int kill9_check(const char *url)
{
    pw_store *s = NULL;
    char *err = NULL;
    if (pw_store_open(url, &s, &err) != 0) {
        fprintf(stderr, "kill9 check: open: %s\n", err ? err : "?");
        return 2;
    }
    char line[128];
    int bad = 0, seen_t = 0, seen_n = 0;
    while (fgets(line, sizeof line, stdin)) {
        char kind, id[100];
        if (!strchr(line, '\n') || sscanf(line, "%c %99s", &kind, id) != 2 || (kind != 'T' && kind != 'N'))
            continue; /* a line cut by the kill */
        struct pw_store_task t;
        if (pw_store_task_get(s, id, &t) != 0) {
            fprintf(stderr, "kill9 check: acknowledged task %s is missing\n", id);
            bad++;
            continue;
        }
        if (strcmp(json_string_value(json_object_get(t.doc, "id")), id) != 0) {
            fprintf(stderr, "kill9 check: task %s has a wrong document\n", id);
            bad++;
        }
        pw_store_task_fini(&t);
        if (kind == 'N') {
            seen_n++;
            struct pw_store_node *nodes;
            size_t n;
            char *next;
            if (pw_store_nodes_list(s, id, NULL, 0, NULL, &nodes, &n, &next) != 0 || n != KILL9_NODES) {
                fprintf(stderr, "kill9 check: acknowledged node results of %s are missing\n", id);
                bad++;
            } else {
                pw_store_nodes_free(nodes, n);
            }
        } else {
            seen_t++;
        }
    }
    /* No task anywhere holds a partial batch. */
    struct pw_store_task *items;
    size_t n_tasks;
    char *next;
    if (pw_store_task_list(s, NULL, 0, NULL, &items, &n_tasks, &next) != 0)
        return 3;
    for (size_t i = 0; i < n_tasks; i++) {
        struct pw_store_node *nodes;
        size_t n;
        char *nn;
        if (pw_store_nodes_list(s, items[i].id, NULL, 0, NULL, &nodes, &n, &nn) != 0 || (n != 0 && n != KILL9_NODES)) {
            fprintf(stderr, "kill9 check: task %s holds a partial batch\n", items[i].id);
            bad++;
            continue;
        }
        pw_store_nodes_free(nodes, n);
    }
    pw_store_tasks_free(items, n_tasks);
    pw_store_close(s);
    sqlite3 *db;
    sqlite3_stmt *st;
    const char *path = url + strlen("sqlite:");
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK)
        return 4;
    if (sqlite3_step(st) != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0) {
        fprintf(stderr, "kill9 check: integrity_check failed\n");
        bad++;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    printf("tasks=%zu acknowledged_tasks=%d acknowledged_batches=%d problems=%d\n", n_tasks, seen_t, seen_n, bad);
    return bad ? 1 : 0;
}

int main(void)
{
    const char *w = getenv("PW_STORE_KILL9_WRITE");
    if (w)
        return kill9_write(w, getenv("PW_STORE_KILL9_PREFIX") ? getenv("PW_STORE_KILL9_PREFIX") : "a");
    const char *c = getenv("PW_STORE_KILL9_CHECK");
    if (c)
        return kill9_check(c);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reopen, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_v1, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_failed_migration, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_garbage, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_pages, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_fault_disk_full, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_fault_io, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_fault_busy_and_step, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_real_busy, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_readonly_file, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_rows_and_tokens, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pool_exhausted, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pool_open_fails, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_open_path_forms, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_threads, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
