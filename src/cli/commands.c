/* commands.c: prewarmctl's commands: the command and option tables (the single description from
 * which parsing, validation and --help are generated), one function per command (parse -> call the
 * API -> print), the shared API-call helper that turns every failure into one readable "error:" line
 * and an exit code, and pw_cli_main. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/file.h"
#include "base/mem.h"
#include "cli/cli.h"
#include "cli/cli_int.h"
#include "k8s/k8s.h"

#define OFF(field) offsetof(pw_cli_args, field)
#define PAGE_TASKS 100L
#define PAGE_NODES 500L
#define MAX_PAGES 10000

const pw_cli_opt pw_cli_global_opts[] = {
    {"server", 0, PW_CLI_OPT_STR, OFF(server), "URL", NULL, 0, 0,
     "prewarmd's URL (default: $PREWARM_SERVER, else " PW_CLI_DEFAULT_SERVER ")"},
    {"output", 'o', PW_CLI_OPT_STR, OFF(output), "FORMAT", "table|wide|json|yaml", 0, 0,
     "output format: table (default), wide, json or yaml"},
    {"no-color", 0, PW_CLI_OPT_FLAG, OFF(no_color), NULL, NULL, 0, 0, "no colours (also when NO_COLOR is set)"},
    {"token", 0, PW_CLI_OPT_STR, OFF(token), "TOKEN", NULL, 0, 0,
     "bearer token for prewarmd (default: $PREWARM_TOKEN, else the kubeconfig context's user)"},
    {"kubeconfig", 0, PW_CLI_OPT_STR, OFF(kubeconfig), "FILE", NULL, 0, 0,
     "kubeconfig whose credentials to send (default: $KUBECONFIG, else ~/.kube/config)"},
    {"context", 0, PW_CLI_OPT_STR, OFF(context), "NAME", NULL, 0, 0, "kubeconfig context (default: current)"},
    {"certificate-authority", 0, PW_CLI_OPT_STR, OFF(ca_file), "FILE", NULL, 0, 0,
     "PEM CA bundle to verify an https:// prewarmd with"},
    {"insecure-skip-tls-verify", 0, PW_CLI_OPT_FLAG, OFF(insecure), NULL, NULL, 0, 0,
     "do not verify prewarmd's TLS certificate (insecure)"},
    {"client-certificate", 0, PW_CLI_OPT_STR, OFF(client_cert), "FILE", NULL, 0, 0,
     "PEM client certificate for an https:// prewarmd (default: the kubeconfig context's user's)"},
    {"client-key", 0, PW_CLI_OPT_STR, OFF(client_key), "FILE", NULL, 0, 0, "PEM private key of --client-certificate"},
    {"help", 'h', PW_CLI_OPT_FLAG, OFF(help), NULL, NULL, 0, 0, "show help and exit"},
    {NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL},
};

static const pw_cli_opt create_opts[] = {
    {"batch-size", 0, PW_CLI_OPT_INT, OFF(batch_size), "N", NULL, 1, 10000,
     "most nodes of this task in flight at once (server default 10)"},
    {"strategy", 0, PW_CLI_OPT_STR, OFF(strategy), "rolling|batch", "rolling|batch", 0, 0,
     "rolling: a finished node starts the next at once (default); batch: batch after batch"},
    {"selector", 'l', PW_CLI_OPT_STR, OFF(selector), "SELECTOR", NULL, 0, 0,
     "label selector of the nodes, e.g. 'zone in (a,b),!spot'"},
    {"node", 0, PW_CLI_OPT_LIST, OFF(nodes), "NAME", NULL, 0, 0, "only this node (repeatable)"},
    {"node-selector", 0, PW_CLI_OPT_KV, OFF(node_selectors), "KEY=VALUE", NULL, 0, 0,
     "only nodes with this label (repeatable; all must match)"},
    {"cluster", 0, PW_CLI_OPT_LIST, OFF(clusters), "NAME", NULL, 0, 0,
     "only this cluster (repeatable; prewarmctl clusters lists them; default: every cluster)"},
    {"cluster-selector", 0, PW_CLI_OPT_STR, OFF(cluster_selector), "SELECTOR", NULL, 0, 0,
     "label selector of the clusters, e.g. 'region in (eu-west)'"},
    {"pull-secret", 0, PW_CLI_OPT_LIST, OFF(pull_secrets), "NAME", NULL, 0, 0,
     "an imagePullSecret in prewarm's namespace (repeatable)"},
    {"timeout", 0, PW_CLI_OPT_DURATION, OFF(timeout_s), "DURATION", NULL, 1, 86400,
     "give up on a node after this, e.g. 90s, 10m, 1h30m; at most 24h (server default 10m)"},
    {"retries", 0, PW_CLI_OPT_INT, OFF(retries), "N", NULL, 0, 10, "pull retries per node, 0 to 10 (server default 3)"},
    {"success-threshold", 0, PW_CLI_OPT_RATIO, OFF(success_threshold), "RATIO", NULL, 0, 0,
     "succeed when succeeded/(total-skipped) >= RATIO, 0 to 1 (server default 0.9)"},
    {"priority", 0, PW_CLI_OPT_INT, OFF(priority), "N", NULL, -1000, 1000,
     "-1000 to 1000; higher priority tasks are served first (default 0)"},
    {"pull-policy", 0, PW_CLI_OPT_STR, OFF(pull_policy), "POLICY", "IfNotPresent|Always|Never", 0, 0,
     "imagePullPolicy: IfNotPresent (default) skips nodes that have the image"},
    {"mode", 0, PW_CLI_OPT_STR, OFF(mode), "MODE", "auto|job|agent", 0, 0,
     "how nodes pull: auto (a node's prewarm-agent when healthy, else a Job; default), job, agent"},
    {"include-not-ready", 0, PW_CLI_OPT_FLAG, OFF(include_not_ready), NULL, NULL, 0, 0,
     "also nodes that are not Ready"},
    {"include-unschedulable", 0, PW_CLI_OPT_FLAG, OFF(include_unschedulable), NULL, NULL, 0, 0, "also cordoned nodes"},
    {"label", 0, PW_CLI_OPT_KV, OFF(labels), "KEY=VALUE", NULL, 0, 0, "a label on the task (repeatable)"},
    {"wait", 0, PW_CLI_OPT_FLAG, OFF(wait), NULL, NULL, 0, 0,
     "wait for the task to finish, showing progress; the exit code tells the outcome"},
    {NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL},
};

static const pw_cli_opt list_opts[] = {
    {"status", 0, PW_CLI_OPT_STR, OFF(status), "STATUS", "pending|running|succeeded|failed|cancelled", 0, 0,
     "only tasks with this status"},
    {"limit", 0, PW_CLI_OPT_INT, OFF(limit), "N", NULL, 1, 1000000, "show at most N tasks (newest first)"},
    {NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL},
};

static const pw_cli_opt nodes_opts[] = {
    {"state", 0, PW_CLI_OPT_STR, OFF(state), "STATE", "pending|running|succeeded|failed|skipped|cancelled", 0, 0,
     "only nodes in this state"},
    {"limit", 0, PW_CLI_OPT_INT, OFF(limit), "N", NULL, 1, 10000000, "show at most N nodes"},
    {"cluster", 0, PW_CLI_OPT_STR, OFF(cluster), "NAME", NULL, 0, 0, "only nodes of this cluster"},
    {NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL},
};

static int cmd_create(pw_cli_ctx *ctx);
static int cmd_get(pw_cli_ctx *ctx);
static int cmd_list(pw_cli_ctx *ctx);
static int cmd_nodes(pw_cli_ctx *ctx);
static int cmd_cancel(pw_cli_ctx *ctx);
static int cmd_wait(pw_cli_ctx *ctx);
static int cmd_version(pw_cli_ctx *ctx);
static int cmd_agents(pw_cli_ctx *ctx);
static int cmd_auth(pw_cli_ctx *ctx);
static int cmd_clusters(pw_cli_ctx *ctx);

const pw_cli_cmd pw_cli_commands[] = {
    {"create", "IMAGE...",
     "Create a task that pulls IMAGE... onto the selected nodes (all Ready, schedulable nodes by default).",
     create_opts, 1, -1, cmd_create},
    {"get", "ID", "Show one task.", NULL, 1, 1, cmd_get},
    {"list", "", "List tasks, newest first.", list_opts, 0, 0, cmd_list},
    {"nodes", "ID", "Show a task's per-node results.", nodes_opts, 1, 1, cmd_nodes},
    {"cancel", "ID...", "Cancel tasks: stop dispatch and delete their in-flight Jobs.", NULL, 1, -1, cmd_cancel},
    {"wait", "ID", "Wait for a task to finish, showing progress; the exit code tells the outcome.", NULL, 1, 1,
     cmd_wait},
    {"agents", "", "List the prewarm-agents prewarmd hears from (agent mode).", NULL, 0, 0, cmd_agents},
    {"policy", "create NAME IMAGE... | list | get NAME | delete NAME...",
     "Standing policies: keep IMAGE... on every matching node, new ones included (docs/policies.md).",
     pw_cli_policy_opts, 1, -1, pw_cli_cmd_policy},
    {"clusters", "", "List the clusters prewarmd serves: labels, reachability, nodes, agents.", NULL, 0, 0,
     cmd_clusters},
    {"auth", "whoami", "auth whoami: show the user and groups prewarmd sees for your credentials.", NULL, 1, 1,
     cmd_auth},
    {"version", "", "Show prewarmctl's version.", NULL, 0, 0, cmd_version},
    {NULL, NULL, NULL, NULL, 0, 0, NULL},
};

/* ---------------------------------------------------------------- API calls */

void pw_cli_print_api_error(FILE *f, long status, const json_t *resp)
{
    const json_t *details = json_object_get(resp, "details");
    size_t printed = 0;
    size_t i;
    const json_t *d;
    json_array_foreach(details, i, d)
    {
        const char *field = json_string_value(json_object_get(d, "field"));
        const char *msg = json_string_value(json_object_get(d, "message"));
        if (!msg)
            continue;
        if (field && *field)
            fprintf(f, "error: %s: %s\n", field, msg);
        else
            fprintf(f, "error: %s\n", msg);
        printed++;
    }
    if (printed)
        return;
    const char *msg = json_string_value(json_object_get(resp, "message"));
    const char *reason = json_string_value(json_object_get(resp, "reason"));
    if (msg && *msg)
        fprintf(f, "error: %s\n", msg);
    else
        fprintf(f, "error: prewarmd answered HTTP %ld%s%s\n", status, reason ? " " : "", reason ? reason : "");
}

int pw_cli_api(pw_cli_ctx *ctx, const char *method, const char *path, const json_t *body, json_t **out)
{
    long status = 0;
    json_t *resp = NULL;
    char err[512];
    int rc = pw_cli_client_call(ctx->client, method, path, body, &status, &resp, err, sizeof(err));
    if (rc == PW_ECANCELED)
        return PW_CLI_EXIT_INTERRUPTED;
    if (rc != 0) {
        fprintf(ctx->err, "error: %s\n", err);
        return PW_CLI_EXIT_API;
    }
    ctx->server_seen = true;
    if (status == 401 || status == 403) {
        const char *msg = json_string_value(json_object_get(resp, "message"));
        fprintf(ctx->err, "error: %s: %s\n",
                status == 401 ? "prewarmd did not accept your credentials (401 Unauthorized)"
                              : "prewarmd refused this request (403 Forbidden)",
                msg ? msg : "no reason given");
        fprintf(ctx->err, "%s\n",
                status == 401 ? "hint: pass --token, set PREWARM_TOKEN, --client-certificate/--client-key, or use a "
                                "kubeconfig context (--kubeconfig, --context) whose user prewarmd accepts"
                              : "hint: ask an admin for the right (a RoleBinding to prewarm-viewer or prewarm-editor, "
                                "or a prewarm:viewers/editors group in prewarmd's token file); 'prewarmctl auth "
                                "whoami' shows who you are to prewarmd");
        json_decref(resp);
        return PW_CLI_EXIT_API;
    }
    if (status < 200 || status > 299) {
        pw_cli_print_api_error(ctx->err, status, resp);
        json_decref(resp);
        return PW_CLI_EXIT_API;
    }
    if (out && !json_is_object(resp)) {
        fprintf(ctx->err, "error: prewarmd answered HTTP %ld without a JSON object\n", status);
        json_decref(resp);
        return PW_CLI_EXIT_API;
    }
    if (out)
        *out = resp;
    else
        json_decref(resp);
    return 0;
}

/* Fetches every page of path (which ends with "?" or a query) into one array, following "continue" until
 * it ends or max items are collected (max <= 0: all). */
static int api_list(pw_cli_ctx *ctx, const char *path, long page, long max, json_t **out)
{
    json_t *all = json_array();
    char *token = NULL;
    int rc = 0;
    for (int pages = 0; pages < MAX_PAGES; pages++) {
        long want = page;
        if (max > 0 && max - (long)json_array_size(all) < want)
            want = max - (long)json_array_size(all);
        char *esc = token ? pw_cli_escape(token) : NULL;
        const char *sep = path[strlen(path) - 1] == '?' ? "" : "&";
        char *url = pw_xasprintf("%s%slimit=%ld%s%s", path, sep, want, esc ? "&continue=" : "", esc ? esc : "");
        free(esc);
        json_t *resp = NULL;
        rc = pw_cli_api(ctx, "GET", url, NULL, &resp);
        free(url);
        if (rc != 0)
            break;
        json_array_extend(all, json_is_array(json_object_get(resp, "items")) ? json_object_get(resp, "items")
                                                                             : json_array());
        const char *next = json_string_value(json_object_get(resp, "continue"));
        free(token);
        token = next && *next ? pw_xstrdup(next) : NULL;
        json_decref(resp);
        if (!token || (max > 0 && (long)json_array_size(all) >= max))
            break;
    }
    free(token);
    if (rc != 0) {
        json_decref(all);
        return rc;
    }
    while (max > 0 && (long)json_array_size(all) > max)
        json_array_remove(all, json_array_size(all) - 1);
    *out = all;
    return 0;
}

/* ---------------------------------------------------------------- printing */

bool pw_cli_structured(const pw_cli_ctx *ctx)
{
    return strcmp(ctx->args->output, "json") == 0 || strcmp(ctx->args->output, "yaml") == 0;
}

static bool structured(const pw_cli_ctx *ctx)
{
    return pw_cli_structured(ctx);
}

static bool wide(const pw_cli_ctx *ctx)
{
    return strcmp(ctx->args->output, "wide") == 0;
}

void pw_cli_print_doc(pw_cli_ctx *ctx, const json_t *doc)
{
    if (strcmp(ctx->args->output, "yaml") == 0) {
        pw_buf b;
        pw_buf_init(&b, 0);
        pw_cli_yaml(doc, &b);
        fputs(b.p ? b.p : "", ctx->out);
        pw_buf_fini(&b);
        return;
    }
    char *s = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
    fprintf(ctx->out, "%s\n", s ? s : "null");
    free(s);
}

static const char *str_or(const json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

static char *images_cell(const json_t *images, bool all)
{
    pw_buf b;
    pw_buf_init(&b, 0);
    size_t n = json_array_size(images);
    for (size_t i = 0; i < n; i++) {
        const char *img = json_string_value(json_array_get(images, i));
        if (!all && i == 1) {
            pw_buf_printf(&b, ",+%zu", n - 1);
            break;
        }
        pw_buf_printf(&b, "%s%s", i ? "," : "", img ? img : "?");
    }
    return pw_buf_steal(&b);
}

void pw_cli_print_tasks(pw_cli_ctx *ctx, const json_t *doc, bool list)
{
    if (structured(ctx)) {
        if (list) {
            json_t *wrap = json_pack("{sO}", "items", (json_t *)doc);
            pw_cli_print_doc(ctx, wrap);
            json_decref(wrap);
        } else {
            pw_cli_print_doc(ctx, doc);
        }
        return;
    }
    bool w = wide(ctx);
    static const char *const hdr[] = {"ID",       "STATUS", "IMAGES",   "NODES", "SUCCEEDED", "FAILED", "SKIPPED",
                                      "PROGRESS", "AGE",    "STRATEGY", "BATCH", "PRIORITY",  "MESSAGE"};
    size_t ncols = w ? 13 : 9;
    pw_cli_table *t = pw_cli_table_new(ncols, hdr);
    time_t now = time(NULL);
    size_t n = list ? json_array_size(doc) : 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *task = list ? json_array_get(doc, i) : doc;
        pw_cli_progress p;
        memset(&p, 0, sizeof(p));
        pw_cli_progress_from_task(task, &p);
        char nodes[24], ok[24], failed[24], skipped[24], pct[24], age[24], batch[24], prio[24];
        snprintf(nodes, sizeof(nodes), "%ld", p.total);
        snprintf(ok, sizeof(ok), "%ld", p.succeeded);
        snprintf(failed, sizeof(failed), "%ld", p.failed);
        snprintf(skipped, sizeof(skipped), "%ld", p.skipped);
        snprintf(pct, sizeof(pct), "%.1f%%", p.total > 0 ? 100.0 * pw_cli_progress_done(&p) / p.total : p.percentage);
        pw_cli_fmt_age_of(str_or(task, "createdAt", NULL), now, age, sizeof(age));
        snprintf(batch, sizeof(batch), "%lld", (long long)json_integer_value(json_object_get(task, "batchSize")));
        snprintf(prio, sizeof(prio), "%lld", (long long)json_integer_value(json_object_get(task, "priority")));
        char *imgs = images_cell(json_object_get(task, "images"), w);
        const char *row[] = {str_or(task, "id", "?"),
                             p.status,
                             imgs,
                             nodes,
                             ok,
                             failed,
                             skipped,
                             pct,
                             age,
                             str_or(task, "strategy", ""),
                             batch,
                             prio,
                             str_or(task, "message", "")};
        pw_cli_table_add(t, row);
        free(imgs);
    }
    pw_buf b;
    pw_buf_init(&b, 0);
    pw_cli_table_render(t, &b);
    fputs(b.p, ctx->out);
    pw_buf_fini(&b);
    pw_cli_table_free(t);
}

/* The first image of node item that failed, or NULL. */
static const json_t *first_failed_image(const json_t *node)
{
    size_t i;
    const json_t *img;
    json_array_foreach(json_object_get(node, "images"), i, img)
    {
        if (strcmp(str_or(img, "state", ""), "failed") == 0)
            return img;
    }
    return NULL;
}

/* Writes the reason and message of a node result (its own, else its first failed image's). */
static void node_reason(const json_t *node, const char **reason, char **message)
{
    const json_t *img = first_failed_image(node);
    *reason = str_or(node, "reason", "");
    if (!**reason && img)
        *reason = str_or(img, "reason", "");
    const char *msg = str_or(node, "message", "");
    if (*msg || !img)
        *message = pw_xstrdup(msg);
    else
        *message = pw_xasprintf("%s: %s", str_or(img, "image", "?"), str_or(img, "message", ""));
}

static void node_duration(const json_t *node, time_t now, char *out, size_t n)
{
    time_t start, end = now;
    const char *s = str_or(node, "startedAt", NULL);
    const char *f = str_or(node, "finishedAt", NULL);
    if (!s || pw_time_parse_rfc3339(s, &start) != 0) {
        snprintf(out, n, "-");
        return;
    }
    if (f && pw_time_parse_rfc3339(f, &end) != 0)
        end = now;
    pw_cli_fmt_duration((double)(end - start), out, n);
}

/* Renders node results (borrowed array) as a table: NODE STATE MODE IMAGES ATTEMPTS DURATION REASON
 * (wide: + MESSAGE), or the failed-nodes table of a wait summary (NODE IMAGE REASON MESSAGE). */
/* NODE column: "cluster/node" for a node of a named cluster, else the node's name. */
static const char *node_label(const json_t *node, char *buf, size_t n)
{
    const char *cl = str_or(node, "cluster", NULL);
    if (!cl)
        return str_or(node, "nodeName", "?");
    snprintf(buf, n, "%s/%s", cl, str_or(node, "nodeName", "?"));
    return buf;
}

static void print_nodes_table(FILE *f, const json_t *items, bool w, bool failed_only, size_t max_width)
{
    static const char *const hdr[] = {"NODE",     "STATE",  "MODE",   "IMAGES", "ATTEMPTS",
                                      "DURATION", "REASON", "MESSAGE"};
    static const char *const fhdr[] = {"NODE", "IMAGE", "REASON", "MESSAGE"};
    pw_cli_table *t = failed_only ? pw_cli_table_new(4, fhdr) : pw_cli_table_new(w ? 8 : 7, hdr);
    time_t now = time(NULL);
    size_t i;
    const json_t *node;
    json_array_foreach(items, i, node)
    {
        const char *reason;
        char *message, label[384];
        node_reason(node, &reason, &message);
        if (failed_only) {
            const json_t *img = first_failed_image(node);
            const char *row[] = {node_label(node, label, sizeof label), img ? str_or(img, "image", "") : "", reason,
                                 message};
            pw_cli_table_add(t, row);
        } else {
            size_t nimg = json_array_size(json_object_get(node, "images")), ok = 0;
            size_t j;
            const json_t *img;
            json_array_foreach(json_object_get(node, "images"), j, img)
            {
                const char *st = str_or(img, "state", "");
                if (strcmp(st, "succeeded") == 0 || strcmp(st, "skipped") == 0)
                    ok++;
            }
            char imgs[48], attempts[24], dur[32];
            snprintf(imgs, sizeof(imgs), "%zu/%zu", ok, nimg);
            snprintf(attempts, sizeof(attempts), "%lld",
                     (long long)json_integer_value(json_object_get(node, "attempts")));
            node_duration(node, now, dur, sizeof(dur));
            const char *row[] = {node_label(node, label, sizeof label), str_or(node, "state", "?"), str_or(node, "mode", "-"),
                                 imgs, attempts, dur, reason, message};
            pw_cli_table_add(t, row);
        }
        free(message);
    }
    pw_buf b;
    pw_buf_init(&b, 0);
    pw_cli_table_render_fit(t, &b, max_width);
    fputs(b.p, f);
    pw_buf_fini(&b);
    pw_cli_table_free(t);
}

int pw_cli_print_failed_nodes(pw_cli_ctx *ctx, FILE *f, const char *id, long failed_count, size_t max_width)
{
    char *esc = pw_cli_escape(id);
    char *path = pw_xasprintf("/api/v1/tasks/%s/nodes?state=failed&limit=20", esc);
    free(esc);
    json_t *resp = NULL;
    int rc = pw_cli_api(ctx, "GET", path, NULL, &resp);
    free(path);
    if (rc != 0)
        return rc;
    const json_t *items = json_object_get(resp, "items");
    size_t shown = json_array_size(items);
    if (shown > 20)
        shown = 20;
    while (json_array_size(items) > shown)
        json_array_remove((json_t *)items, shown);
    if (shown > 0) {
        fprintf(f, "\nFailed nodes (%ld):\n", failed_count > (long)shown ? failed_count : (long)shown);
        print_nodes_table(f, items, false, true, max_width);
        if (failed_count > (long)shown)
            fprintf(f, "... and %ld more (prewarmctl nodes %s --state failed)\n", failed_count - (long)shown, id);
    }
    json_decref(resp);
    return 0;
}

/* ---------------------------------------------------------------- commands */

static char *task_path(const char *id, const char *suffix)
{
    char *esc = pw_cli_escape(id);
    char *p = pw_xasprintf("/api/v1/tasks/%s%s", esc, suffix);
    free(esc);
    return p;
}

static int cmd_create(pw_cli_ctx *ctx)
{
    json_t *body = pw_cli_create_body(ctx->args);
    json_t *task = NULL;
    int rc = pw_cli_api(ctx, "POST", "/api/v1/tasks", body, &task);
    json_decref(body);
    if (rc != 0)
        return rc;
    const char *id = json_string_value(json_object_get(task, "id"));
    if (!id) {
        fprintf(ctx->err, "error: prewarmd's answer has no task id\n");
        json_decref(task);
        return PW_CLI_EXIT_API;
    }
    if (structured(ctx) && !ctx->args->wait)
        pw_cli_print_doc(ctx, task);
    else
        fprintf(structured(ctx) ? ctx->err : ctx->out, "task %s created\n", id);
    if (ctx->args->wait) {
        fflush(ctx->out);
        rc = pw_cli_wait(ctx, id);
    }
    json_decref(task);
    return rc;
}

static int cmd_get(pw_cli_ctx *ctx)
{
    char *path = task_path(ctx->args->pos.v[0], "");
    json_t *task = NULL;
    int rc = pw_cli_api(ctx, "GET", path, NULL, &task);
    free(path);
    if (rc != 0)
        return rc;
    pw_cli_print_tasks(ctx, task, false);
    json_decref(task);
    return 0;
}

static int cmd_list(pw_cli_ctx *ctx)
{
    const pw_cli_args *a = ctx->args;
    char *path = a->status ? pw_xasprintf("/api/v1/tasks?status=%s", a->status) : pw_xstrdup("/api/v1/tasks?");
    json_t *items = NULL;
    int rc = api_list(ctx, path, PAGE_TASKS, a->limit.set ? a->limit.v : 0, &items);
    free(path);
    if (rc != 0)
        return rc;
    if (json_array_size(items) == 0 && !structured(ctx))
        fprintf(ctx->err, "No tasks found.\n");
    else
        pw_cli_print_tasks(ctx, items, true);
    json_decref(items);
    return 0;
}

static int cmd_nodes(pw_cli_ctx *ctx)
{
    const pw_cli_args *a = ctx->args;
    char *ecl = a->cluster ? curl_easy_escape(NULL, a->cluster, 0) : NULL;
    char *suffix = pw_xasprintf("/nodes?%s%s%s%s", a->state ? "state=" : "", a->state ? a->state : "",
                                ecl ? (a->state ? "&cluster=" : "cluster=") : "", ecl ? ecl : "");
    curl_free(ecl);
    char *path = task_path(a->pos.v[0], suffix);
    free(suffix);
    json_t *items = NULL;
    int rc = api_list(ctx, path, PAGE_NODES, a->limit.set ? a->limit.v : 0, &items);
    free(path);
    if (rc != 0)
        return rc;
    if (structured(ctx)) {
        json_t *wrap = json_pack("{sO}", "items", items);
        pw_cli_print_doc(ctx, wrap);
        json_decref(wrap);
    } else if (json_array_size(items) == 0) {
        fprintf(ctx->err, "No nodes found.\n");
    } else {
        print_nodes_table(ctx->out, items, wide(ctx), false, 0);
    }
    json_decref(items);
    return 0;
}

/* "12.3Gi" for bytes (json integer), "-" when unknown. */
static void fmt_bytes(const json_t *v, char *out, size_t n)
{
    if (!json_is_integer(v)) {
        snprintf(out, n, "-");
        return;
    }
    double b = (double)json_integer_value(v);
    static const char *const units[] = {"B", "Ki", "Mi", "Gi", "Ti"};
    size_t u = 0;
    while (b >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        b /= 1024;
        u++;
    }
    snprintf(out, n, u ? "%.1f%s" : "%.0f%s", b, units[u]);
}

static int cmd_agents(pw_cli_ctx *ctx)
{
    json_t *doc = NULL;
    int rc = pw_cli_api(ctx, "GET", "/api/v1/agents", NULL, &doc);
    if (rc != 0)
        return rc;
    const json_t *items = json_object_get(doc, "items");
    if (structured(ctx)) {
        pw_cli_print_doc(ctx, doc);
    } else if (json_array_size(items) == 0) {
        fprintf(ctx->err, "No agents found (is prewarmd running with --agents, and the agent DaemonSet applied?).\n");
    } else {
        static const char *const hdr[] = {"CLUSTER", "NODE", "HEALTHY", "VERSION", "RUNTIME", "IMAGES", "IMAGE-FS",
                                          "ACTIVE", "LAST SEEN"};
        pw_cli_table *t = pw_cli_table_new(9, hdr);
        time_t now = time(NULL);
        size_t i;
        const json_t *a;
        json_array_foreach(items, i, a)
        {
            const json_t *rt = json_object_get(a, "runtime"), *fs = json_object_get(a, "imageFs");
            char runtime[160], images[24], used[24], cap[24], fsb[64], active[24], seen[32];
            snprintf(runtime, sizeof runtime, "%s %s", str_or(rt, "name", ""), str_or(rt, "version", ""));
            snprintf(images, sizeof images, "%lld", (long long)json_integer_value(json_object_get(a, "images")));
            fmt_bytes(json_object_get(fs, "usedBytes"), used, sizeof used);
            fmt_bytes(json_object_get(fs, "capacityBytes"), cap, sizeof cap);
            snprintf(fsb, sizeof fsb, "%s/%s", used, cap);
            snprintf(active, sizeof active, "%lld", (long long)json_integer_value(json_object_get(a, "assignments")));
            pw_cli_fmt_age_of(str_or(a, "lastSeen", ""), now, seen, sizeof seen);
            const char *row[] = {str_or(a, "cluster", "-"), str_or(a, "node", "?"),
                                 json_is_true(json_object_get(a, "healthy")) ? "yes" : "no",
                                 str_or(a, "agentVersion", ""), runtime, images, fsb, active, seen};
            pw_cli_table_add(t, row);
        }
        pw_buf b;
        pw_buf_init(&b, 0);
        pw_cli_table_render(t, &b);
        fputs(b.p, ctx->out);
        pw_buf_fini(&b);
        pw_cli_table_free(t);
    }
    json_decref(doc);
    return 0;
}

static int cmd_clusters(pw_cli_ctx *ctx)
{
    json_t *doc = NULL;
    int rc = pw_cli_api(ctx, "GET", "/api/v1/clusters", NULL, &doc);
    if (rc != 0)
        return rc;
    if (structured(ctx)) {
        pw_cli_print_doc(ctx, doc);
        json_decref(doc);
        return 0;
    }
    static const char *const hdr[] = {"NAME", "REACHABLE", "VERSION", "NODES", "READY", "AGENTS", "IN-FLIGHT",
                                      "LABELS", "LAST ERROR"};
    pw_cli_table *t = pw_cli_table_new(9, hdr);
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(doc, "items"), i, c)
    {
        char nodes[24], ready[24], agents[24], inflight[24];
        snprintf(nodes, sizeof nodes, "%lld", (long long)json_integer_value(json_object_get(c, "nodes")));
        snprintf(ready, sizeof ready, "%lld", (long long)json_integer_value(json_object_get(c, "readyNodes")));
        snprintf(agents, sizeof agents, "%lld", (long long)json_integer_value(json_object_get(c, "agents")));
        snprintf(inflight, sizeof inflight, "%lld", (long long)json_integer_value(json_object_get(c, "nodesInFlight")));
        pw_buf labels;
        pw_buf_init(&labels, 0);
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)json_object_get(c, "labels"), k, v)
            pw_buf_printf(&labels, "%s%s=%s", labels.len ? "," : "", k, json_string_value(v));
        const char *row[] = {str_or(c, "name", "?"), json_is_true(json_object_get(c, "reachable")) ? "yes" : "no",
                             str_or(c, "serverVersion", "-"), nodes, ready, agents, inflight,
                             labels.len ? labels.p : "-", str_or(c, "lastError", "")};
        pw_cli_table_add(t, row);
        pw_buf_fini(&labels);
    }
    pw_buf b;
    pw_buf_init(&b, 0);
    pw_cli_table_render(t, &b);
    fputs(b.p, ctx->out);
    pw_buf_fini(&b);
    pw_cli_table_free(t);
    const char *re = str_or(doc, "reloadError", NULL);
    if (re)
        fprintf(ctx->err, "The clusters file was not reloaded (the running configuration stays): %s\n", re);
    json_decref(doc);
    return 0;
}

static int cmd_cancel(pw_cli_ctx *ctx)
{
    int worst = 0;
    for (size_t i = 0; i < ctx->args->pos.n; i++) {
        const char *id = ctx->args->pos.v[i];
        char *path = task_path(id, "");
        json_t *task = NULL;
        int rc = pw_cli_api(ctx, "DELETE", path, NULL, &task);
        free(path);
        if (rc == PW_CLI_EXIT_INTERRUPTED)
            return rc;
        if (rc != 0) {
            worst = rc;
            continue;
        }
        if (structured(ctx))
            pw_cli_print_doc(ctx, task);
        else
            fprintf(ctx->out, "task %s cancelled\n", id);
        json_decref(task);
    }
    return worst;
}

static int cmd_wait(pw_cli_ctx *ctx)
{
    return pw_cli_wait(ctx, ctx->args->pos.v[0]);
}

static int cmd_version(pw_cli_ctx *ctx)
{
    const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    if (structured(ctx)) {
        json_t *doc = json_pack("{ss ss ss ss}", "clientVersion", PW_CLI_VERSION, "server", ctx->args->server,
                                "libcurl", cv->version, "jansson", JANSSON_VERSION);
        pw_cli_print_doc(ctx, doc);
        json_decref(doc);
        return 0;
    }
    fprintf(ctx->out, "prewarmctl %s (libcurl %s, jansson %s)\nserver: %s\n", PW_CLI_VERSION, cv->version,
            JANSSON_VERSION, ctx->args->server);
    return 0;
}

static int cmd_auth(pw_cli_ctx *ctx)
{
    if (strcmp(ctx->args->pos.v[0], "whoami") != 0) {
        fprintf(ctx->err, "error: unknown auth command \"%s\" (want: prewarmctl auth whoami)\n", ctx->args->pos.v[0]);
        return PW_CLI_EXIT_USAGE;
    }
    json_t *me = NULL;
    int rc = pw_cli_api(ctx, "GET", "/api/v1/whoami", NULL, &me);
    if (rc != 0)
        return rc;
    if (structured(ctx)) {
        pw_cli_print_doc(ctx, me);
        json_decref(me);
        return 0;
    }
    fprintf(ctx->out, "ATTRIBUTE  VALUE\nUsername   %s\n", json_string_value(json_object_get(me, "username")));
    const char *uid = json_string_value(json_object_get(me, "uid"));
    if (uid && *uid)
        fprintf(ctx->out, "UID        %s\n", uid);
    fprintf(ctx->out, "Groups     [");
    size_t i;
    const json_t *g;
    json_array_foreach(json_object_get(me, "groups"), i, g) {
        fprintf(ctx->out, "%s%s", i ? " " : "", json_string_value(g));
    }
    fprintf(ctx->out, "]\n");
    json_decref(me);
    return 0;
}

/* What prewarmctl presents to prewarmd, like kubectl: a bearer token and a client certificate. */
struct creds {
    char *token;            /* NULL: none */
    char *cert_pem, *key_pem; /* NULL: none */
};

static void creds_fini(struct creds *c)
{
    if (c->token)
        memset(c->token, 0, strlen(c->token));
    if (c->key_pem)
        memset(c->key_pem, 0, strlen(c->key_pem));
    free(c->token);
    free(c->cert_pem);
    free(c->key_pem);
    memset(c, 0, sizeof *c);
}

/* The text of a PEM file named by flag (a new string), or NULL after saying why. */
static char *read_pem(const char *flag, const char *path)
{
    char *text = NULL;
    size_t n = 0;
    int rc = pw_file_read(path, 1u << 20, &text, &n);
    if (rc != 0 || !strstr(text, "-----BEGIN ")) {
        fprintf(stderr, "error: %s %s: %s\n", flag, path,
                rc == PW_EIO ? strerror(errno) : rc == PW_ETOOLARGE ? "over 1 MiB" : "not a PEM file");
        free(text);
        return NULL;
    }
    return text;
}

/* The credentials to send: the token --token, else $PREWARM_TOKEN, else the kubeconfig context's
 * user's (static, token file or exec plugin); the client certificate --client-certificate and
 * --client-key, else the kubeconfig user's (client-certificate/-key or their -data forms, or the
 * plugin's). An explicit token skips the kubeconfig (but for the CA below). 0 with *out (caller
 * creds_fini), or PW_CLI_EXIT_USAGE after saying why (an explicit --kubeconfig or --context that
 * cannot be used, a certificate flag without its pair or a file that does not read). Without
 * --certificate-authority, a server that is an in-cluster Service is verified with the kubeconfig
 * cluster's CA (set on client). */
static int resolve_creds(const pw_cli_args *a, pw_cli_client *client, struct creds *out)
{
    memset(out, 0, sizeof *out);
    if (!a->client_cert != !a->client_key) {
        fprintf(stderr, "error: --client-certificate and --client-key go together\n");
        return PW_CLI_EXIT_USAGE;
    }
    if (a->client_cert) {
        out->cert_pem = read_pem("--client-certificate", a->client_cert);
        out->key_pem = out->cert_pem ? read_pem("--client-key", a->client_key) : NULL;
        if (!out->key_pem) {
            creds_fini(out);
            return PW_CLI_EXIT_USAGE;
        }
    }
    const char *env = getenv("PREWARM_TOKEN");
    const char *given = a->token ? a->token : env && *env ? env : NULL;
    bool want_ca = !a->ca_file && !a->insecure && pw_cli_client_in_cluster_service(client);
    if (given)
        out->token = pw_xstrdup(given);
    if (given && !want_ca)
        return 0;
    pw_k8s_config *cfg = NULL;
    char *why = NULL;
    if (pw_k8s_config_load(a->kubeconfig, a->context, &cfg, &why) != 0) {
        bool explicit = a->kubeconfig || a->context;
        if (!given && explicit)
            fprintf(stderr, "error: cannot use the kubeconfig: %s\n", why ? why : "unknown error");
        free(why);
        if (!given && explicit) {
            creds_fini(out);
            return PW_CLI_EXIT_USAGE;
        }
        return 0; /* only the CA was wanted (the system's CAs then), or no kubeconfig at all */
    }
    if (want_ca) {
        size_t n;
        const char *pem = pw_k8s_config_ca_pem(cfg, &n);
        pw_cli_client_set_ca_pem(client, pem, n);
    }
    int rc = 0;
    if (!given) {
        char *tok = NULL, *cert = NULL, *key = NULL;
        rc = pw_k8s_config_credential(cfg, &tok, out->cert_pem ? NULL : &cert, out->cert_pem ? NULL : &key, &why);
        if (rc != 0) {
            fprintf(stderr, "error: cannot get the kubeconfig user's credentials: %s\n", why ? why : pw_strerror(rc));
            free(why);
            creds_fini(out);
            rc = PW_CLI_EXIT_API;
        } else {
            out->token = tok;
            if (cert) {
                out->cert_pem = cert;
                out->key_pem = key;
            }
        }
    }
    pw_k8s_config_free(cfg);
    return rc;
}

/* ---------------------------------------------------------------- main */

static bool want_color(const pw_cli_args *a)
{
    const char *nc = getenv("NO_COLOR");
    const char *term = getenv("TERM");
    if (a->no_color || (nc && *nc) || (term && strcmp(term, "dumb") == 0))
        return false;
    return true;
}

int pw_cli_main(int argc, char **argv)
{
    pw_cli_args args;
    char err[512];
    int rc = pw_cli_args_parse(argc, argv, getenv("PREWARM_SERVER"), &args, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err);
        fprintf(stderr, "Run 'prewarmctl%s%s --help' for usage.\n", args.cmd ? " " : "",
                args.cmd ? args.cmd->name : "");
        pw_cli_args_fini(&args);
        return PW_CLI_EXIT_USAGE;
    }
    if (args.help) {
        pw_cli_usage(stdout, args.cmd);
        pw_cli_args_fini(&args);
        return 0;
    }
    pw_cli_ctx ctx = {
        .args = &args,
        .out = stdout,
        .err = stderr,
        .out_tty = isatty(STDOUT_FILENO) == 1,
        .color = want_color(&args),
    };
    ctx.client = pw_cli_client_new(args.server);
    if (!ctx.client) {
        fprintf(stderr, "error: cannot start libcurl\n");
        pw_cli_args_fini(&args);
        return PW_CLI_EXIT_API;
    }
    struct creds cr = {0};
    rc = args.cmd->run == cmd_version ? 0 : resolve_creds(&args, ctx.client, &cr);
    if (rc != 0) {
        pw_cli_client_free(ctx.client);
        pw_cli_args_fini(&args);
        return rc;
    }
    pw_cli_client_set_auth(ctx.client, cr.token, args.ca_file, args.insecure);
    pw_cli_client_set_client_cert(ctx.client, cr.cert_pem, cr.key_pem);
    creds_fini(&cr);
    rc = args.cmd->run(&ctx);
    fflush(stdout);
    pw_cli_client_free(ctx.client);
    pw_cli_args_fini(&args);
    return rc;
}
