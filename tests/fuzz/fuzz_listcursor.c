/* fuzz_listcursor.c: the ?continue= tokens of the list calls (GET /api/v1/tasks, /tasks/{id}/nodes,
 * and the record lists behind policies), as the store's back ends read them: memory (src/store/memory.c)
 * and SQLite (src/store/sqlite.c, pw_store_token_decode in store.c). Each store holds 6 tasks of 5 nodes
 * and 6 records, written once.
 * Input: byte 0 picks the list, the back end, the limit and the status filter (one of the API's words or
 * none), the rest is the token.
 * Checks: a token is taken (0) or refused as malformed (PW_EINVAL), nothing else; a page is in the
 * list's order, after the token's position, at most limit long; following the continue tokens from
 * there ends, in order, without repeating an entry. */
#include <stdio.h>
#include <unistd.h>

#include <jansson.h>

#include "base/err.h"
#include "fuzz.h"
#include "store/store.h"

static pw_store *stores[2];
static char db_path[64];

static void setup(void)
{
    char *err = NULL;
    if (pw_store_open("memory:", &stores[0], &err) != 0)
        abort();
    snprintf(db_path, sizeof db_path, "/tmp/pw-fuzz-cursor-%d.db", (int)getpid());
    char url[96];
    snprintf(url, sizeof url, "sqlite:%s", db_path);
    unlink(db_path);
    if (pw_store_open(url, &stores[1], &err) != 0)
        abort();
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < 6; i++) {
            char id[32];
            snprintf(id, sizeof id, "t-0000000000%02d-fuzz", i);
            json_t *doc = json_pack("{s:s}", "id", id);
            struct pw_store_task t = {.id = id, .status = (char *)pw_task_status_names[i % 5], .created_ms = i,
                                      .finished_ms = i % 5 >= 2 ? i : 0, .doc = doc};
            if (pw_store_task_put(stores[s], &t) != 0)
                abort();
            json_decref(doc);
            struct pw_store_node nodes[5];
            char names[5][16];
            json_t *ndoc = json_object();
            for (int k = 0; k < 5; k++) {
                snprintf(names[k], sizeof names[k], "node-%d", k);
                nodes[k] = (struct pw_store_node){.task_id = id, .node_name = names[k],
                                                  .state = (char *)pw_node_state_names[k % 6], .doc = ndoc};
            }
            if (pw_store_nodes_put(stores[s], nodes, 5) != 0)
                abort();
            json_decref(ndoc);
            char key[16];
            snprintf(key, sizeof key, "rec-%d", i);
            json_t *r = json_pack("{s:i}", "i", i);
            if (pw_store_rec_put(stores[s], "fuzz", key, r, PW_STORE_REC_UPSERT) != 0)
                abort();
            json_decref(r);
        }
    }
    unlink(db_path); /* SQLite keeps the open file */
}

/* One page of list op (0 tasks, 1 nodes, 2 records) after cont: the keys in *keys (caller frees each and
 * the array), the next token in *next. */
static int page(pw_store *st, int op, const char *filter, size_t limit, const char *cont, char ***keys, size_t *n,
                char **next)
{
    int rc;
    *keys = NULL;
    *n = 0;
    if (op == 0) {
        struct pw_store_task *items = NULL;
        rc = pw_store_task_list(st, filter, limit, cont, &items, n, next);
        if (rc == 0) {
            *keys = calloc(*n + 1, sizeof **keys);
            for (size_t i = 0; i < *n; i++)
                (*keys)[i] = strdup(items[i].id);
            pw_store_tasks_free(items, *n);
        }
    } else if (op == 1) {
        struct pw_store_node *items = NULL;
        rc = pw_store_nodes_list(st, "t-000000000003-fuzz", filter, limit, cont, &items, n, next);
        if (rc == 0) {
            *keys = calloc(*n + 1, sizeof **keys);
            for (size_t i = 0; i < *n; i++)
                (*keys)[i] = strdup(items[i].node_name);
            pw_store_nodes_free(items, *n);
        }
    } else {
        struct pw_store_rec *items = NULL;
        rc = pw_store_rec_list(st, "fuzz", limit, cont, &items, n, next);
        if (rc == 0) {
            *keys = calloc(*n + 1, sizeof **keys);
            for (size_t i = 0; i < *n; i++)
                (*keys)[i] = strdup(items[i].key);
            pw_store_recs_free(items, *n);
        }
    }
    return rc;
}

static void free_keys(char **keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!stores[0])
        setup();
    if (size == 0)
        return 0;
    uint8_t b = data[0];
    int op = b % 3, be = (b / 3) % 2;
    size_t limit = (b / 6) % 4; /* 0: no limit */
    const char *filter = NULL;
    if (b & 0x80)
        filter = op == 1 ? pw_node_state_names[b % 6] : pw_task_status_names[b % 5];
    if (op == 2)
        filter = NULL;
    char *cont = fuzz_cstr(data + 1, size - 1);
    char **keys;
    size_t n;
    char *next = NULL;
    int rc = page(stores[be], op, filter, limit, cont, &keys, &n, &next);
    if (rc != 0 && rc != PW_EINVAL)
        abort(); /* a bad token is the client's error (400), never the server's */
    if (rc != 0) {
        free(cont);
        return 0;
    }
    if (limit && n > limit)
        abort();
    char *last = n ? strdup(keys[n - 1]) : NULL;
    for (size_t i = 1; i < n; i++) {
        int c = strcmp(keys[i - 1], keys[i]);
        if (op == 0 ? c <= 0 : c >= 0)
            abort(); /* out of order */
    }
    free_keys(keys, n);
    for (int pages = 0; next; pages++) {
        if (pages > 40)
            abort(); /* never ends */
        char *tok = next;
        next = NULL;
        if (page(stores[be], op, filter, limit, tok, &keys, &n, &next) != 0)
            abort(); /* a token the store made is refused */
        free(tok);
        if (n == 0 && next)
            abort();
        for (size_t i = 0; i < n; i++) {
            int c = last ? strcmp(last, keys[i]) : (op == 0 ? 1 : -1);
            if (op == 0 ? c <= 0 : c >= 0)
                abort(); /* a repeat, or out of order across pages */
            free(last);
            last = strdup(keys[i]);
        }
        free_keys(keys, n);
    }
    free(last);
    free(cont);
    return 0;
}
