/* policy.c: prewarmctl policy create|list|get|delete over /api/v1/policies (docs/policies.md). The
 * create body reuses the task create's builder for the fields a policy shares with a task. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "base/mem.h"
#include "cli/cli_int.h"

#define OFF(field) offsetof(pw_cli_args, field)

const pw_cli_opt pw_cli_policy_opts[] = {
    {"selector", 'l', PW_CLI_OPT_STR, OFF(selector), "SELECTOR", NULL, 0, 0,
     "label selector of the nodes, e.g. 'pool=gpu,!spot'"},
    {"node-selector", 0, PW_CLI_OPT_KV, OFF(node_selectors), "KEY=VALUE", NULL, 0, 0,
     "only nodes with this label (repeatable; all must match)"},
    {"batch-size", 0, PW_CLI_OPT_INT, OFF(batch_size), "N", NULL, 1, 10000,
     "most nodes of one wave or refresh in flight at once (server default 10)"},
    {"pull-secret", 0, PW_CLI_OPT_LIST, OFF(pull_secrets), "NAME", NULL, 0, 0,
     "an imagePullSecret in prewarm's namespace (repeatable)"},
    {"mode", 0, PW_CLI_OPT_STR, OFF(mode), "MODE", "auto|job|agent", 0, 0, "how nodes pull (default auto)"},
    {"timeout", 0, PW_CLI_OPT_DURATION, OFF(timeout_s), "DURATION", NULL, 1, 86400,
     "give up on a node after this (server default 10m)"},
    {"retries", 0, PW_CLI_OPT_INT, OFF(retries), "N", NULL, 0, 10, "pull retries per node (server default 3)"},
    {"refresh-interval", 0, PW_CLI_OPT_STR, OFF(refresh_interval), "DURATION", NULL, 0, 0,
     "pull the images again with pullPolicy Always this often, at least 1m; 0: never (server default 24h)"},
    {"untaint-when-done", 0, PW_CLI_OPT_STR, OFF(untaint), "KEY", NULL, 0, 0,
     "remove this NoSchedule startup taint from a node once its images are in"},
    {"predict", 0, PW_CLI_OPT_STR, OFF(predict), "JSON", NULL, 0, 0,
     "prediction from history, a JSON object (when prewarmd has a predictor)"},
    {"disabled", 0, PW_CLI_OPT_FLAG, OFF(disabled), NULL, NULL, 0, 0, "create it disabled (no task until enabled)"},
    {NULL, 0, 0, 0, NULL, NULL, 0, 0, NULL},
};

static char *policy_path(const char *name)
{
    char *esc = pw_cli_escape(name);
    char *p = pw_xasprintf("/api/v1/policies/%s", esc);
    free(esc);
    return p;
}

/* The create body from `create NAME IMAGE...` and the options; NULL after saying why. */
static json_t *create_body(pw_cli_ctx *ctx)
{
    const pw_cli_args *a = ctx->args;
    if (a->pos.n < 2) {
        fprintf(ctx->err, "error: usage: prewarmctl policy create NAME IMAGE... [options]\n");
        return NULL;
    }
    pw_cli_args images = *a; /* the task builder reads the images from pos */
    images.pos.v = a->pos.v + 2;
    images.pos.n = a->pos.n - 2;
    json_t *o = pw_cli_create_body(&images);
    if (images.pos.n == 0)
        json_object_del(o, "images"); /* a predict-only policy */
    json_t *secrets = json_object_get(o, "imagePullSecrets");
    if (secrets) {
        json_object_set(o, "pullSecrets", secrets);
        json_object_del(o, "imagePullSecrets");
    }
    json_object_set_new(o, "name", json_string(a->pos.v[1]));
    if (a->refresh_interval)
        json_object_set_new(o, "refreshInterval", json_string(a->refresh_interval));
    if (a->untaint)
        json_object_set_new(o, "untaintWhenDone", json_string(a->untaint));
    if (a->disabled)
        json_object_set_new(o, "enabled", json_false());
    if (a->predict) {
        json_error_t jerr;
        json_t *p = json_loads(a->predict, 0, &jerr);
        if (!json_is_object(p)) {
            fprintf(ctx->err, "error: --predict: not a JSON object (%s)\n", p ? "another JSON value" : jerr.text);
            json_decref(p);
            json_decref(o);
            return NULL;
        }
        json_object_set_new(o, "predict", p);
    }
    return o;
}

static char *selector_cell(const json_t *p)
{
    char *out = NULL;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)json_object_get(p, "nodeSelector"), k, v) {
        char *n = pw_xasprintf("%s%s%s=%s", out ? out : "", out ? "," : "", k, json_string_value(v));
        free(out);
        out = n;
    }
    const char *ls = json_string_value(json_object_get(p, "labelSelector"));
    if (ls) {
        char *n = pw_xasprintf("%s%s%s", out ? out : "", out ? "," : "", ls);
        free(out);
        out = n;
    }
    return out ? out : pw_xstrdup("<all nodes>");
}

static void print_policies(pw_cli_ctx *ctx, const json_t *items)
{
    static const char *const hdr[] = {"NAME", "IMAGES", "SELECTOR", "MATCHING", "WARM", "PENDING", "FAILED",
                                      "REFRESH", "LAST-REFRESH", "AGE"};
    pw_cli_table *t = pw_cli_table_new(10, hdr);
    time_t now = time(NULL);
    size_t i;
    const json_t *p;
    json_array_foreach(items, i, p) {
        const json_t *st = json_object_get(p, "status");
        char imgs[32], m[24], w[24], pe[24], f[24], last[32], age[32];
        snprintf(imgs, sizeof imgs, "%zu%s", json_array_size(json_object_get(p, "images")),
                 json_object_get(p, "predict") ? "+predicted" : "");
        snprintf(m, sizeof m, "%lld", (long long)json_integer_value(json_object_get(st, "matchingNodes")));
        snprintf(w, sizeof w, "%lld", (long long)json_integer_value(json_object_get(st, "warmNodes")));
        snprintf(pe, sizeof pe, "%lld", (long long)(json_integer_value(json_object_get(st, "pendingNodes")) +
                                                  json_integer_value(json_object_get(st, "inflightNodes"))));
        snprintf(f, sizeof f, "%lld", (long long)json_integer_value(json_object_get(st, "failedNodes")));
        const char *lr = json_string_value(json_object_get(st, "lastRefresh"));
        if (lr)
            pw_cli_fmt_age_of(lr, now, last, sizeof last);
        else
            snprintf(last, sizeof last, "never");
        pw_cli_fmt_age_of(json_string_value(json_object_get(p, "createdAt")), now, age, sizeof age);
        char *sel = selector_cell(p);
        bool on = !json_is_false(json_object_get(p, "enabled"));
        const char *refresh = json_string_value(json_object_get(p, "refreshInterval"));
        char rcell[48];
        snprintf(rcell, sizeof rcell, "%s%s", refresh ? refresh : "-", on ? "" : " (disabled)");
        const char *cells[] = {json_string_value(json_object_get(p, "name")), imgs, sel, m, w, pe, f, rcell, last, age};
        pw_cli_table_add(t, cells);
        free(sel);
    }
    pw_buf b;
    pw_buf_init(&b, 0);
    pw_cli_table_render(t, &b);
    fputs(b.p ? b.p : "", ctx->out);
    pw_buf_fini(&b);
    pw_cli_table_free(t);
}

static int show(pw_cli_ctx *ctx, json_t *doc, bool list)
{
    if (pw_cli_structured(ctx)) {
        pw_cli_print_doc(ctx, doc);
    } else if (list && json_array_size(json_object_get(doc, "items")) == 0) {
        fprintf(ctx->err, "No policies found.\n");
    } else if (list) {
        print_policies(ctx, json_object_get(doc, "items"));
    } else {
        json_t *one = json_pack("[O]", doc);
        print_policies(ctx, one);
        json_decref(one);
    }
    json_decref(doc);
    return 0;
}

int pw_cli_cmd_policy(pw_cli_ctx *ctx)
{
    const pw_cli_args *a = ctx->args;
    const char *verb = a->pos.v[0];
    json_t *out = NULL;
    int rc;
    if (strcmp(verb, "create") == 0) {
        json_t *body = create_body(ctx);
        if (!body)
            return PW_CLI_EXIT_USAGE;
        rc = pw_cli_api(ctx, "POST", "/api/v1/policies", body, &out);
        json_decref(body);
        if (rc == 0 && !pw_cli_structured(ctx)) {
            fprintf(ctx->out, "policy %s created\n", json_string_value(json_object_get(out, "name")));
            json_decref(out);
            return 0;
        }
        return rc ? rc : show(ctx, out, false);
    }
    if (strcmp(verb, "list") == 0 && a->pos.n == 1) {
        rc = pw_cli_api(ctx, "GET", "/api/v1/policies", NULL, &out);
        return rc ? rc : show(ctx, out, true);
    }
    if (strcmp(verb, "get") == 0 && a->pos.n == 2) {
        char *path = policy_path(a->pos.v[1]);
        rc = pw_cli_api(ctx, "GET", path, NULL, &out);
        free(path);
        return rc ? rc : show(ctx, out, false);
    }
    if (strcmp(verb, "delete") == 0 && a->pos.n >= 2) {
        int worst = 0;
        for (size_t i = 1; i < a->pos.n; i++) {
            char *path = policy_path(a->pos.v[i]);
            rc = pw_cli_api(ctx, "DELETE", path, NULL, NULL);
            free(path);
            if (rc == 0)
                fprintf(ctx->out, "policy %s deleted\n", a->pos.v[i]);
            else
                worst = rc;
        }
        return worst;
    }
    fprintf(ctx->err, "error: usage: prewarmctl policy create NAME IMAGE... | list | get NAME | delete NAME...\n");
    return PW_CLI_EXIT_USAGE;
}
