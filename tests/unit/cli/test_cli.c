/* Unit tests for src/cli (prewarmctl): argument parsing and validation, the create request body,
 * durations, ages, tables, the progress line (bar and plain), the rate window, API error printing and
 * the YAML writer (checked exactly, and read back with libyaml into JSON for tricky strings). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "base/buf.h"
#include "base/err.h"
#include "cli/cli_int.h"
#include "http/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

/* Parses a NULL-terminated argument list (argv[0] added). */
static int parse(pw_cli_args *a, char *err, size_t errlen, const char *env, ...)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "prewarmctl";
    va_list ap;
    va_start(ap, env);
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL && argc < 63)
        argv[argc++] = (char *)s;
    va_end(ap);
    argv[argc] = NULL;
    return pw_cli_args_parse(argc, argv, env, a, err, errlen);
}

static void test_parse_create_full(void **state)
{
    (void)state;
    pw_cli_args a;
    char err[256] = "";
    int rc =
        parse(&a, err, sizeof(err), NULL, "--server", "http://10.0.0.1:9000", "create", "nginx:1.27", "redis:7.4",
              "--batch-size", "50", "--strategy=batch", "-l", "zone in (a,b),!spot", "--node", "n1", "--node", "n2",
              "--node-selector", "pool=gpu", "--node-selector", "tier=", "--pull-secret", "regcred", "--timeout",
              "1h30m", "--retries", "0", "--success-threshold", "0.75", "--priority", "-5", "--pull-policy", "Always",
              "--include-not-ready", "--include-unschedulable", "--label", "team=ml", "--wait", "-ojson", NULL);
    assert_int_equal(rc, 0);
    assert_string_equal(a.cmd->name, "create");
    assert_string_equal(a.server, "http://10.0.0.1:9000");
    assert_string_equal(a.output, "json");
    assert_true(a.wait);
    json_t *body = pw_cli_create_body(&a);
    json_t *want = json_loads("{\"images\":[\"nginx:1.27\",\"redis:7.4\"],\"batchSize\":50,\"strategy\":\"batch\","
                              "\"nodeSelector\":{\"pool\":\"gpu\",\"tier\":\"\"},\"labelSelector\":\"zone in "
                              "(a,b),!spot\",\"nodeNames\":[\"n1\",\"n2\"],\"includeNotReady\":true,"
                              "\"includeUnschedulable\":true,\"pullPolicy\":\"Always\",\"imagePullSecrets\":"
                              "[\"regcred\"],\"timeoutSeconds\":5400,\"retries\":0,\"successThreshold\":0.75,"
                              "\"priority\":-5,\"labels\":{\"team\":\"ml\"}}",
                              0, NULL);
    assert_non_null(want);
    if (!json_equal(body, want)) {
        char *s = json_dumps(body, JSON_COMPACT);
        fail_msg("body: %s", s);
    }
    json_decref(want);
    json_decref(body);
    pw_cli_args_fini(&a);
}

static void test_parse_create_minimal(void **state)
{
    (void)state;
    pw_cli_args a;
    char err[256] = "";
    assert_int_equal(parse(&a, err, sizeof(err), "http://env:1", "create", "busybox", NULL), 0);
    assert_string_equal(a.server, "http://env:1"); /* PREWARM_SERVER when --server is absent */
    assert_string_equal(a.output, "table");
    json_t *body = pw_cli_create_body(&a);
    char *s = json_dumps(body, JSON_COMPACT);
    assert_string_equal(s, "{\"images\":[\"busybox\"]}"); /* unset options are left to the server */
    free(s);
    json_decref(body);
    pw_cli_args_fini(&a);

    assert_int_equal(parse(&a, err, sizeof(err), NULL, "list", NULL), 0);
    assert_string_equal(a.server, PW_CLI_DEFAULT_SERVER);
    pw_cli_args_fini(&a);
}

struct bad_case {
    const char *args[6];
    const char *want; /* a substring of the message */
};

static void test_parse_errors(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {{NULL}, "no command given"},
        {{"frobnicate", NULL}, "unknown command \"frobnicate\""},
        {{"create", NULL}, "\"create\" needs at least one IMAGE"},
        {{"get", NULL}, "\"get\" needs one ID"},
        {{"get", "a", "b", NULL}, "\"get\" takes 1 argument (got 2)"},
        {{"list", "x", NULL}, "\"list\" takes no arguments"},
        {{"create", "x", "--timeout", "5x", NULL}, "--timeout \"5x\" is not a duration"},
        {{"create", "x", "--timeout", "500ms", NULL}, "want whole seconds"},
        {{"create", "x", "--timeout", "0s", NULL}, "out of range"},
        {{"create", "x", "--batch-size", "0", NULL}, "--batch-size \"0\": want a whole number from 1 to 10000"},
        {{"create", "x", "--batch-size", "ten", NULL}, "want a whole number"},
        {{"create", "x", "--retries", "-1", NULL}, "--retries \"-1\""},
        {{"create", "x", "--success-threshold", "1.5", NULL}, "want a number from 0 to 1"},
        {{"create", "x", "--success-threshold", "nan", NULL}, "want a number from 0 to 1"},
        {{"create", "x", "--node-selector", "pool", NULL}, "--node-selector \"pool\": want KEY=VALUE"},
        {{"create", "x", "--label", "=v", NULL}, "want KEY=VALUE"},
        {{"create", "x", "--strategy", "fast", NULL}, "want one of rolling|batch"},
        {{"create", "x", "--batch-size", NULL}, "--batch-size needs a value (N)"},
        {{"create", "x", "--bogus", NULL}, "unknown option --bogus for \"create\""},
        {{"--wait", "create", "x", NULL}, "command options go after the command"},
        {{"get", "t-1", "-o", "xml", NULL}, "want one of table|wide|json|yaml"},
        {{"get", "t-1", "--server", "10.0.0.1:8080", NULL}, "want an http:// or https:// URL"},
        {{"list", "--status", "done", NULL}, "--status \"done\""},
        {{"nodes", "t-1", "--state", "ok", NULL}, "--state \"ok\""},
        {{"create", "x", "--wait=maybe", NULL}, "--wait=maybe: want true or false"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[8] = {"prewarmctl"};
        int argc = 1;
        for (int j = 0; cases[i].args[j]; j++)
            argv[argc++] = (char *)cases[i].args[j];
        pw_cli_args a;
        char err[256] = "";
        int rc = pw_cli_args_parse(argc, argv, NULL, &a, err, sizeof(err));
        pw_cli_args_fini(&a);
        if (rc != PW_EINVAL || !strstr(err, cases[i].want))
            fail_msg("case %zu: rc %d, message \"%s\", want \"%s\"", i, rc, err, cases[i].want);
    }
}

static void test_parse_misc(void **state)
{
    (void)state;
    pw_cli_args a;
    char err[256] = "";
    /* --help skips the argument count checks; "help CMD" works too. */
    assert_int_equal(parse(&a, err, sizeof(err), NULL, "get", "--help", NULL), 0);
    assert_true(a.help);
    assert_string_equal(a.cmd->name, "get");
    pw_cli_args_fini(&a);
    assert_int_equal(parse(&a, err, sizeof(err), NULL, "help", "create", NULL), 0);
    assert_true(a.help);
    assert_string_equal(a.cmd->name, "create");
    pw_cli_args_fini(&a);
    /* Global options before the command, "--" ends options. */
    assert_int_equal(parse(&a, err, sizeof(err), NULL, "-o", "yaml", "--no-color", "get", "--", "-odd", NULL), 0);
    assert_string_equal(a.output, "yaml");
    assert_true(a.no_color);
    assert_int_equal(a.pos.n, 1);
    assert_string_equal(a.pos.v[0], "-odd");
    pw_cli_args_fini(&a);
    /* The last of a repeated scalar wins; --wait=false is accepted. */
    assert_int_equal(parse(&a, err, sizeof(err), NULL, "create", "x", "--retries", "1", "--retries=2", "--wait=false",
                           "--output=wide", NULL),
                     0);
    assert_int_equal(a.retries.v, 2);
    assert_false(a.wait);
    assert_string_equal(a.output, "wide");
    pw_cli_args_fini(&a);
    assert_int_equal(parse(&a, err, sizeof(err), NULL, "list", "--limit", "3", "--status", "running", NULL), 0);
    assert_true(a.limit.set);
    assert_int_equal(a.limit.v, 3);
    assert_string_equal(a.status, "running");
    pw_cli_args_fini(&a);
}

static void test_duration(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        long want; /* -1: an error */
    } cases[] = {
        {"10m", 600}, {"90s", 90}, {"1h30m", 5400}, {"45", 45},  {"2h", 7200}, {"1m30s", 90},    {"500ms", -1},
        {"0", -1},    {"", -1},    {"abc", -1},     {"10x", -1}, {"-5s", -1},  {"1000000h", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long v = -42;
        char err[128] = "";
        int rc = pw_cli_parse_duration_s(cases[i].in, 1, 30L * 86400, &v, err, sizeof(err));
        if (cases[i].want < 0) {
            if (rc != PW_EINVAL || v != -42 || !err[0])
                fail_msg("\"%s\": want an error, got rc %d v %ld", cases[i].in, rc, v);
        } else if (rc != 0 || v != cases[i].want) {
            fail_msg("\"%s\": want %ld, got rc %d v %ld (%s)", cases[i].in, cases[i].want, rc, v, err);
        }
    }
}

static void test_age_and_duration(void **state)
{
    (void)state;
    static const struct {
        int64_t secs;
        const char *want;
    } ages[] = {
        {0, "0s"},    {5, "5s"},    {59, "59s"},    {60, "1m"},        {180, "3m"},          {3599, "59m"},
        {3600, "1h"}, {7200, "2h"}, {86399, "23h"}, {4 * 86400, "4d"}, {400L * 86400, "1y"}, {-3, "0s"},
    };
    char out[32];
    for (size_t i = 0; i < sizeof(ages) / sizeof(ages[0]); i++) {
        pw_cli_fmt_age(ages[i].secs, out, sizeof(out));
        assert_string_equal(out, ages[i].want);
    }
    pw_cli_fmt_duration(25.4, out, sizeof(out));
    assert_string_equal(out, "25s");
    pw_cli_fmt_duration(185, out, sizeof(out));
    assert_string_equal(out, "3m05s");
    pw_cli_fmt_duration(7380, out, sizeof(out));
    assert_string_equal(out, "2h03m");
    pw_cli_fmt_duration(-1, out, sizeof(out));
    assert_string_equal(out, "0s");
    pw_cli_fmt_age_of("2026-11-27T10:00:00Z", 1795780800 + 0, out, sizeof(out)); /* arbitrary now */
    assert_true(out[0] != '<');
    pw_cli_fmt_age_of("2026-11-27T10:00:00Z", 0, out, sizeof(out)); /* in the future: clamps */
    assert_string_equal(out, "0s");
    pw_cli_fmt_age_of("yesterday", 0, out, sizeof(out));
    assert_string_equal(out, "<unknown>");
    pw_cli_fmt_age_of(NULL, 0, out, sizeof(out));
    assert_string_equal(out, "<unknown>");
}

static void test_table(void **state)
{
    (void)state;
    static const char *const hdr[] = {"ID", "STATUS", "MESSAGE"};
    pw_cli_table *t = pw_cli_table_new(3, hdr);
    const char *r1[] = {"t-1", "running", ""};
    const char *r2[] = {"t-0000002", "succeeded", "all done"};
    const char *r3[] = {"t-3", NULL, "x"};
    pw_cli_table_add(t, r1);
    pw_cli_table_add(t, r2);
    pw_cli_table_add(t, r3);
    pw_buf b;
    pw_buf_init(&b, 0);
    pw_cli_table_render(t, &b);
    assert_string_equal(b.p, "ID          STATUS      MESSAGE\n"
                             "t-1         running\n"
                             "t-0000002   succeeded   all done\n"
                             "t-3                     x\n");
    pw_buf_fini(&b);
    /* Fitting a width cuts the last column only, never below 20 characters. */
    const char *r4[] = {"t-4", "failed", "rpc error: code = NotFound desc = failed to pull"};
    pw_cli_table_add(t, r4);
    pw_buf_init(&b, 0);
    pw_cli_table_render_fit(t, &b, 60);
    assert_non_null(strstr(b.p, "\nt-4         failed      rpc error: code = NotFound desc =...\n"));
    assert_non_null(strstr(b.p, "all done\n"));
    pw_buf_reset(&b);
    pw_cli_table_render_fit(t, &b, 10);
    assert_non_null(strstr(b.p, "\nt-4         failed      rpc error: code =...\n"));
    pw_buf_reset(&b);
    pw_cli_table_render_fit(t, &b, 0);
    assert_non_null(strstr(b.p, "failed to pull\n"));
    pw_buf_fini(&b);
    pw_cli_table_free(t);
    pw_cli_table_free(NULL);
}

static pw_cli_progress sample_progress(void)
{
    pw_cli_progress p = {.total = 1000,
                         .pending = 538,
                         .running = 50,
                         .succeeded = 400,
                         .failed = 2,
                         .skipped = 10,
                         .cancelled = 0,
                         .percentage = 41.2,
                         .rate = 23.4,
                         .eta_s = 25.2,
                         .elapsed_s = 12,
                         .status = "running"};
    return p;
}

static void test_progress_bar(void **state)
{
    (void)state;
    pw_cli_progress p = sample_progress();
    char line[256];
    pw_cli_progress_bar(&p, 16, false, line, sizeof(line));
    assert_string_equal(line, "[======>         ] 412/1000 41.2%  ok 400 failed 2 skipped 10  23.4 nodes/s  ETA 25s");
    pw_cli_progress_bar(&p, 0, false, line, sizeof(line));
    assert_string_equal(line, "412/1000 41.2%  ok 400 failed 2 skipped 10  23.4 nodes/s  ETA 25s");
    /* Colour: ok in green, failed in red only when there are failures. */
    pw_cli_progress_bar(&p, 0, true, line, sizeof(line));
    assert_non_null(strstr(line, "\033[32mok 400\033[0m"));
    assert_non_null(strstr(line, "\033[31mfailed 2\033[0m"));
    p.failed = 0;
    pw_cli_progress_bar(&p, 0, true, line, sizeof(line));
    assert_non_null(strstr(line, " failed 0 "));
    /* Unknown rate and ETA are left out; a full bar has no head; no ETA once done. */
    p = sample_progress();
    p.rate = -1;
    p.eta_s = -1;
    pw_cli_progress_bar(&p, 4, false, line, sizeof(line));
    assert_string_equal(line, "[=>  ] 412/1000 41.2%  ok 400 failed 2 skipped 10");
    p.succeeded = 988;
    p.eta_s = 3;
    pw_cli_progress_bar(&p, 4, false, line, sizeof(line));
    assert_string_equal(line, "[====] 1000/1000 100.0%  ok 988 failed 2 skipped 10");
    p.cancelled = 5;
    p.succeeded = 0;
    p.total = 0;
    p.percentage = 0;
    pw_cli_progress_bar(&p, 4, false, line, sizeof(line));
    assert_string_equal(line, "[>   ] 17/0 0.0%  ok 0 failed 2 skipped 10 cancelled 5");
    /* Truncation is safe. */
    char tiny[10];
    p = sample_progress();
    pw_cli_progress_bar(&p, 16, false, tiny, sizeof(tiny));
    assert_string_equal(tiny, "[======> ");
}

static void test_progress_plain(void **state)
{
    (void)state;
    pw_cli_progress p = sample_progress();
    char line[256];
    pw_cli_progress_plain(&p, line, sizeof(line));
    assert_string_equal(line, "[12s] running: 412/1000 nodes (41.2%), ok 400, failed 2, skipped 10, in flight 50, "
                              "pending 538, 23.4 nodes/s, ETA 25s");
    assert_null(strchr(line, '\r'));
    assert_null(strchr(line, '\033'));
    p.rate = -1;
    p.eta_s = -1;
    p.cancelled = 3;
    p.status = "cancelled";
    pw_cli_progress_plain(&p, line, sizeof(line));
    assert_string_equal(line, "[12s] cancelled: 415/1000 nodes (41.5%), ok 400, failed 2, skipped 10, cancelled 3, "
                              "in flight 50, pending 538");
}

static void test_progress_from_task(void **state)
{
    (void)state;
    json_t *task = json_loads("{\"id\":\"t-1\",\"status\":\"running\",\"progress\":{\"totalNodes\":120,"
                              "\"pendingNodes\":80,\"runningNodes\":10,\"succeededNodes\":28,\"failedNodes\":1,"
                              "\"skippedNodes\":1,\"cancelledNodes\":0,\"percentage\":25.0}}",
                              0, NULL);
    pw_cli_progress p;
    memset(&p, 0, sizeof(p));
    pw_cli_progress_from_task(task, &p);
    assert_int_equal(p.total, 120);
    assert_int_equal(p.pending, 80);
    assert_int_equal(p.running, 10);
    assert_int_equal(p.succeeded, 28);
    assert_int_equal(p.failed, 1);
    assert_int_equal(p.skipped, 1);
    assert_int_equal(pw_cli_progress_done(&p), 30);
    assert_true(fabs(p.percentage - 25.0) < 1e-9);
    assert_string_equal(p.status, "running");
    json_decref(task);
    /* A task without progress reads as zeros and an unknown status. */
    json_t *empty = json_object();
    pw_cli_progress_from_task(empty, &p);
    assert_int_equal(p.total, 0);
    assert_string_equal(p.status, "unknown");
    json_decref(empty);
}

static void test_rate(void **state)
{
    (void)state;
    pw_cli_rate r;
    pw_cli_rate_init(&r, 10000);
    assert_true(pw_cli_rate_get(&r) < 0);
    pw_cli_rate_add(&r, 0, 0);
    pw_cli_rate_add(&r, 500, 5);
    assert_true(pw_cli_rate_get(&r) < 0); /* under a second of data */
    pw_cli_rate_add(&r, 1000, 10);
    assert_true(fabs(pw_cli_rate_get(&r) - 10.0) < 1e-9);
    /* 40 more samples at 20/s: the window forgets the old 10/s. */
    long done = 10;
    for (int i = 1; i <= 40; i++) {
        done += 10;
        pw_cli_rate_add(&r, 1000 + i * 500, done);
    }
    assert_true(fabs(pw_cli_rate_get(&r) - 20.0) < 1e-9);
    assert_true(r.n <= PW_CLI_RATE_SAMPLES);
}

/* Captures what pw_cli_print_api_error writes. */
static char *api_error_text(long status, const char *body)
{
    json_t *resp = body ? json_loads(body, 0, NULL) : NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    pw_cli_print_api_error(f, status, resp);
    fclose(f);
    json_decref(resp);
    return text;
}

static void test_api_error(void **state)
{
    (void)state;
    char *s = api_error_text(400, "{\"code\":400,\"reason\":\"Invalid\",\"message\":\"images[1]: invalid reference "
                                  "format\",\"details\":[{\"field\":\"images[1]\",\"message\":\"invalid reference "
                                  "format\"}]}");
    assert_string_equal(s, "error: images[1]: invalid reference format\n");
    free(s);
    s = api_error_text(400, "{\"code\":400,\"reason\":\"Invalid\",\"message\":\"2 errors\",\"details\":[{\"field\":"
                            "\"batchSize\",\"message\":\"must be 1-10000\"},{\"field\":\"\",\"message\":\"x\"}]}");
    assert_string_equal(s, "error: batchSize: must be 1-10000\nerror: x\n");
    free(s);
    s = api_error_text(404, "{\"code\":404,\"reason\":\"NotFound\",\"message\":\"task t-9 not found\"}");
    assert_string_equal(s, "error: task t-9 not found\n");
    free(s);
    s = api_error_text(503, "{\"code\":503,\"reason\":\"Unavailable\"}");
    assert_string_equal(s, "error: prewarmd answered HTTP 503 Unavailable\n");
    free(s);
    s = api_error_text(502, NULL);
    assert_string_equal(s, "error: prewarmd answered HTTP 502\n");
    free(s);
}

static void test_escape(void **state)
{
    (void)state;
    char *s = pw_cli_escape("t-1/../x y?&=");
    assert_string_equal(s, "t-1%2F..%2Fx%20y%3F%26%3D");
    free(s);
}

/* ---- YAML: read back with libyaml into JSON (plain scalars resolved as YAML 1.1 core does) ---- */

static json_t *yaml_node_to_json(yaml_document_t *doc, yaml_node_t *node)
{
    if (node->type == YAML_SCALAR_NODE) {
        const char *v = (const char *)node->data.scalar.value;
        if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
            return json_string(v);
        if (strcmp(v, "null") == 0 || strcmp(v, "~") == 0)
            return json_null();
        if (strcmp(v, "true") == 0)
            return json_true();
        if (strcmp(v, "false") == 0)
            return json_false();
        json_t *num = json_loads(v, JSON_DECODE_ANY, NULL);
        if (num && json_is_number(num))
            return num;
        json_decref(num);
        return json_string(v);
    }
    if (node->type == YAML_SEQUENCE_NODE) {
        json_t *arr = json_array();
        for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top; it++)
            json_array_append_new(arr, yaml_node_to_json(doc, yaml_document_get_node(doc, *it)));
        return arr;
    }
    json_t *obj = json_object();
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        json_object_set_new(obj, (const char *)k->data.scalar.value,
                            yaml_node_to_json(doc, yaml_document_get_node(doc, p->value)));
    }
    return obj;
}

static json_t *yaml_load(const char *text)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    json_t *out = NULL;
    if (yaml_parser_load(&parser, &doc)) {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root)
            out = yaml_node_to_json(&doc, root);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    return out;
}

static char *to_yaml(const char *json)
{
    json_t *v = json_loads(json, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    pw_buf b;
    pw_buf_init(&b, 0);
    pw_cli_yaml(v, &b);
    json_decref(v);
    return pw_buf_steal(&b);
}

static void test_yaml_exact(void **state)
{
    (void)state;
    char *y = to_yaml("{\"id\":\"t-1\",\"images\":[\"nginx:1.27\",\"redis:7\"],\"batchSize\":10,\"ok\":true,"
                      "\"finishedAt\":null,\"progress\":{\"totalNodes\":3,\"percentage\":25.5},"
                      "\"failedNodes\":[{\"nodeName\":\"n-7\",\"reason\":\"ErrImagePull\"}],\"labels\":{},"
                      "\"nodeNames\":[],\"message\":\"\",\"nested\":[[1,2],{\"a\":[\"x\"]}]}");
    assert_string_equal(y, "id: t-1\n"
                           "images:\n"
                           "- nginx:1.27\n"
                           "- redis:7\n"
                           "batchSize: 10\n"
                           "ok: true\n"
                           "finishedAt: null\n"
                           "progress:\n"
                           "  totalNodes: 3\n"
                           "  percentage: 25.5\n"
                           "failedNodes:\n"
                           "- nodeName: n-7\n"
                           "  reason: ErrImagePull\n"
                           "labels: {}\n"
                           "nodeNames: []\n"
                           "message: \"\"\n"
                           "nested:\n"
                           "- - 1\n"
                           "  - 2\n"
                           "- a:\n"
                           "  - x\n");
    free(y);
    y = to_yaml("\"yes\"");
    assert_string_equal(y, "\"yes\"\n");
    free(y);
    y = to_yaml("[]");
    assert_string_equal(y, "[]\n");
    free(y);
}

static void test_yaml_round_trip(void **state)
{
    (void)state;
    static const char *const docs[] = {
        "{\"s\":[\"true\",\"False\",\"no\",\"ON\",\"null\",\"~\",\"1.27\",\"007\",\"0x1f\",\"1e3\",\"-\",\"- x\","
        "\"a: b\",\"a #b\",\"#c\",\"x:\",\" lead\",\"trail \",\"line\\nbreak\",\"tab\\there\",\"quote\\\"d\","
        "\"back\\\\slash\",\"[x]\",\"{y}\",\"*ref\",\"&anchor\",\"!tag\",\"|\",\">\",\"%p\",\"@a\",\"`b\","
        "\"2026-11-27T10:00:00Z\",\".inf\",\"+1\",\"zone in (a,b),!spot\",\"caf\\u00e9\",\"12:30\",\"\"]}",
        "{\"a\":{\"b\":{\"c\":[{\"d\":1,\"e\":[{\"f\":\"g\"}]},{}]}},\"n\":-3,\"r\":0.9,\"t\":false,\"z\":null}",
        "[{\"k\":\"v\"},[],{},\"s\",1]",
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        json_t *want = json_loads(docs[i], 0, NULL);
        assert_non_null(want);
        char *y = to_yaml(docs[i]);
        json_t *got = yaml_load(y);
        if (!got || !json_equal(got, want)) {
            char *g = got ? json_dumps(got, JSON_COMPACT) : NULL;
            fail_msg("doc %zu: YAML\n%s\nreads back as %s", i, y, g ? g : "(parse error)");
        }
        json_decref(got);
        json_decref(want);
        free(y);
    }
}

/* ---- the client's transport errors, against a server in this process ---- */

static void h_huge(pw_http_req *req, void *ctx)
{
    (void)ctx;
    /* a JSON document just over the client's cap */
    size_t n = PW_CLI_RESPONSE_CAP + 1024;
    char *s = malloc(n + 1);
    memset(s, 'x', n);
    s[n] = '\0';
    json_t *o = json_pack("{s:s}", "items", s);
    free(s);
    pw_http_reply_json(req, 200, o);
}

static void h_small(pw_http_req *req, void *ctx)
{
    (void)ctx;
    pw_http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static const struct pw_http_route cli_routes[] = {
    {"GET", "/huge", h_huge},
    {"GET", "/small", h_small},
    {NULL, NULL, NULL},
};

static void test_transport_errors(void **state)
{
    (void)state;
    struct pw_http_config cfg = {.listen = "127.0.0.1:0", .routes = cli_routes, .threads = 2};
    pw_http_server *srv = NULL;
    assert_int_equal(pw_http_server_new(&cfg, &srv), 0);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", pw_http_server_port(srv));
    pw_cli_client *c = pw_cli_client_new(base);
    assert_non_null(c);
    long status = 0;
    json_t *out = NULL;
    char err[512];
    assert_int_equal(pw_cli_client_call(c, "GET", "/small", NULL, &status, &out, err, sizeof err), 0);
    assert_int_equal(status, 200);
    json_decref(out);
    /* a response over the cap */
    out = NULL;
    assert_int_equal(pw_cli_client_call(c, "GET", "/huge", NULL, &status, &out, err, sizeof err), PW_ETOOLARGE);
    assert_non_null(strstr(err, "MiB"));
    assert_null(out);
    /* interrupted (Ctrl-C sets the flag): the transfer is abandoned */
    volatile sig_atomic_t flag = 1;
    pw_cli_client_set_interrupt(c, &flag);
    assert_int_equal(pw_cli_client_call(c, "GET", "/small", NULL, &status, &out, err, sizeof err), PW_ECANCELED);
    assert_string_equal(err, "interrupted");
    pw_cli_client_set_interrupt(c, NULL);
    pw_cli_client_free(c);
    pw_http_server_free(srv);

    /* a server that accepts and never answers: the transfer timeout */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    snprintf(base, sizeof base, "http://127.0.0.1:%d", ntohs(a.sin_port));
    c = pw_cli_client_new(base);
    pw_cli_client_set_timeouts(c, 1, 1);
    assert_int_equal(pw_cli_client_call(c, "GET", "/small", NULL, &status, &out, err, sizeof err), PW_ETIMEDOUT);
    assert_non_null(strstr(err, "did not answer in time"));
    pw_cli_client_free(c);
    close(fd);
    /* nobody listens: cannot reach, with the OS's reason */
    c = pw_cli_client_new(base);
    assert_int_equal(pw_cli_client_call(c, "GET", "/small", NULL, &status, &out, err, sizeof err), PW_EUNAVAIL);
    assert_non_null(strstr(err, "cannot reach prewarmd"));
    pw_cli_client_free(c);
}

static void test_usage(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    pw_cli_usage(f, NULL);
    fclose(f);
    /* Every command is listed, and the exit codes are documented. */
    for (const pw_cli_cmd *c = pw_cli_commands; c->name; c++)
        assert_non_null(strstr(text, c->name));
    assert_non_null(strstr(text, "Exit codes:"));
    assert_non_null(strstr(text, "3    the task was cancelled"));
    assert_non_null(strstr(text, "PREWARM_SERVER"));
    free(text);
    text = NULL;
    f = open_memstream(&text, &len);
    pw_cli_usage(f, &pw_cli_commands[0]);
    fclose(f);
    assert_non_null(strstr(text, "--batch-size N"));
    assert_non_null(strstr(text, "-l, --selector SELECTOR"));
    assert_non_null(strstr(text, "4    prewarmd unreachable"));
    free(text);
}

/* Which servers prewarmctl verifies with the kubeconfig cluster's CA: https to a cluster Service. */
static void test_in_cluster_service(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        bool want;
    } cases[] = {
        {"https://prewarmd.prewarm.svc", true},
        {"https://prewarmd.prewarm.svc:8443", true},
        {"https://prewarmd.prewarm.svc.cluster.local:443/", true},
        {"http://prewarmd.prewarm.svc:8080", false}, /* no TLS: nothing to verify */
        {"https://prewarm.example.com", false},
        {"https://svc.example.com", false},
        {"https://prewarmd.prewarm.svcx:443", false},
        {"https://127.0.0.1:8443/x.svc", false}, /* the path is not the host */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pw_cli_client *c = pw_cli_client_new(cases[i].url);
        assert_non_null(c);
        if (pw_cli_client_in_cluster_service(c) != cases[i].want)
            fail_msg("%s: want %d", cases[i].url, cases[i].want);
        pw_cli_client_set_ca_pem(c, "-----BEGIN CERTIFICATE-----\n", 28);
        pw_cli_client_free(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_cluster_service),
        cmocka_unit_test(test_parse_create_full),
        cmocka_unit_test(test_parse_create_minimal),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_misc),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_age_and_duration),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_progress_bar),
        cmocka_unit_test(test_progress_plain),
        cmocka_unit_test(test_progress_from_task),
        cmocka_unit_test(test_rate),
        cmocka_unit_test(test_api_error),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_yaml_exact),
        cmocka_unit_test(test_yaml_round_trip),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_transport_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
