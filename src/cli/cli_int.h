/* cli_int.h: the pieces of prewarmctl, private to src/cli (and its unit tests): the argument model and
 * its option tables, the HTTP client to prewarmd, the pure formatters (ages, tables, the progress line,
 * YAML) and the wait loop. prewarmctl talks to prewarmd only over its public REST API.
 *
 * Thread model: single-threaded (prewarmctl is one thread); the one exception is the interrupt flag,
 * which a signal handler sets. */
#ifndef PW_CLI_INT_H
#define PW_CLI_INT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/version.h"

#define PW_CLI_VERSION PW_VERSION
#define PW_CLI_DEFAULT_SERVER "http://127.0.0.1:8080"

/* Exit codes, as `prewarmctl --help` documents them. */
enum {
    PW_CLI_EXIT_OK = 0,           /* the command worked; for wait: the task succeeded */
    PW_CLI_EXIT_FAILED = 1,       /* the task failed */
    PW_CLI_EXIT_USAGE = 2,        /* bad arguments */
    PW_CLI_EXIT_CANCELLED = 3,    /* the task was cancelled */
    PW_CLI_EXIT_API = 4,          /* prewarmd unreachable, or it answered with an error */
    PW_CLI_EXIT_INTERRUPTED = 130 /* Ctrl-C stopped the waiting (the task goes on) */
};

/* ---------------------------------------------------------------- arguments */

/* A list of strings borrowed from argv (the array itself is owned by pw_cli_args). */
typedef struct pw_cli_strv {
    const char **v;
    size_t n;
} pw_cli_strv;

typedef struct pw_cli_num {
    bool set;
    long v;
} pw_cli_num;

typedef struct pw_cli_real {
    bool set;
    double v;
} pw_cli_real;

struct pw_cli_cmd;

/* Everything the command line said. Strings are borrowed from argv. */
typedef struct pw_cli_args {
    const struct pw_cli_cmd *cmd; /* NULL when only global options were given */
    /* global */
    const char *server; /* --server, else $PREWARM_SERVER, else the default */
    const char *output; /* table (default), wide, json, yaml */
    bool no_color;
    bool help;
    /* credentials, like kubectl: --token, else $PREWARM_TOKEN, else the kubeconfig context's user */
    const char *token;
    const char *kubeconfig; /* --kubeconfig (else $KUBECONFIG, ~/.kube/config) */
    const char *context;    /* --context (else current-context) */
    const char *ca_file;    /* --certificate-authority: PEM bundle prewarmd's certificate must chain to */
    bool insecure;          /* --insecure-skip-tls-verify */
    const char *client_cert; /* --client-certificate, --client-key: PEM files (else the kubeconfig user's) */
    const char *client_key;
    pw_cli_strv pos; /* positional arguments after the command */
    /* create */
    pw_cli_num batch_size;
    const char *strategy;
    const char *selector;
    pw_cli_strv nodes;
    pw_cli_strv node_selectors; /* k=v */
    pw_cli_strv clusters;       /* --cluster (create) */
    const char *cluster_selector;
    const char *cluster;        /* --cluster (nodes) */
    pw_cli_strv pull_secrets;
    pw_cli_num timeout_s; /* from a duration */
    pw_cli_num retries;
    pw_cli_real success_threshold;
    pw_cli_num priority;
    const char *pull_policy;
    const char *mode;
    bool include_not_ready;
    bool include_unschedulable;
    pw_cli_strv labels; /* k=v */
    bool wait;
    /* list, nodes */
    const char *status;
    pw_cli_num limit;
    const char *state;
    /* policy create */
    const char *refresh_interval;
    const char *untaint;
    const char *predict; /* a JSON object */
    bool disabled;
} pw_cli_args;

enum pw_cli_opt_kind {
    PW_CLI_OPT_FLAG,     /* bool; takes no value (--flag=false is accepted) */
    PW_CLI_OPT_STR,      /* const char *; one of choices when choices is set */
    PW_CLI_OPT_LIST,     /* pw_cli_strv; repeatable */
    PW_CLI_OPT_KV,       /* pw_cli_strv of "key=value"; repeatable */
    PW_CLI_OPT_INT,      /* pw_cli_num within [min, max] */
    PW_CLI_OPT_DURATION, /* pw_cli_num of whole seconds within [min, max], from "90s", "10m", "1h30m" */
    PW_CLI_OPT_RATIO     /* pw_cli_real within [0, 1] */
};

/* One row of an option table. */
typedef struct pw_cli_opt {
    const char *name; /* long name without "--" */
    char short_name;  /* 0 when none */
    enum pw_cli_opt_kind kind;
    size_t offset; /* of the field in pw_cli_args */
    const char *metavar;
    const char *choices; /* "a|b|c" for PW_CLI_OPT_STR, or NULL */
    long min, max;       /* for INT and DURATION */
    const char *help;
} pw_cli_opt;

typedef struct pw_cli_ctx pw_cli_ctx;

/* One row of the command table. */
typedef struct pw_cli_cmd {
    const char *name;
    const char *args_usage; /* "IMAGE..." */
    const char *summary;
    const pw_cli_opt *opts; /* ends with a row whose name is NULL; may be NULL */
    int min_pos, max_pos;   /* positional argument counts (max -1: no limit) */
    int (*run)(pw_cli_ctx *ctx);
} pw_cli_cmd;

extern const pw_cli_cmd pw_cli_commands[]; /* ends with a row whose name is NULL */
extern const pw_cli_opt pw_cli_global_opts[];

/* Parses argv (argv[0] is the program) into *a, whose lists it allocates (free with pw_cli_args_fini;
 * also after a failure). env_server is $PREWARM_SERVER (may be NULL). Returns 0, or PW_EINVAL with a
 * one-line message in err (no "error: " prefix). --help anywhere sets a->help and skips the positional
 * count checks. */
int pw_cli_args_parse(int argc, char **argv, const char *env_server, pw_cli_args *a, char *err, size_t errlen);
void pw_cli_args_fini(pw_cli_args *a);

/* Parses a duration ("90s", "10m", "1h30m", "45") into whole seconds within [min, max]; PW_EINVAL with
 * a message in err otherwise. *out is written only on success. */
int pw_cli_parse_duration_s(const char *s, long min, long max, long *out, char *err, size_t errlen);

/* Builds the POST /api/v1/tasks body from the create arguments; caller json_decref()s. Fields left
 * unset are left out (the server applies its defaults). */
json_t *pw_cli_create_body(const pw_cli_args *a);

/* Writes the usage of cmd (or of the whole program when cmd is NULL) to f. */
void pw_cli_usage(FILE *f, const pw_cli_cmd *cmd);

/* ---------------------------------------------------------------- HTTP client */

typedef struct pw_cli_client pw_cli_client;

/* A client for the prewarmd at base_url (copied), with one reused curl handle. NULL when curl cannot
 * start. Free with pw_cli_client_free (NULL is a no-op). */
pw_cli_client *pw_cli_client_new(const char *base_url);
void pw_cli_client_free(pw_cli_client *c);
/* A transfer in progress is aborted (PW_ECANCELED) once *flag becomes non-zero. flag is borrowed. */
void pw_cli_client_set_interrupt(pw_cli_client *c, volatile sig_atomic_t *flag);
/* Credentials and TLS for every call: token (copied; NULL: none) sent as "Authorization: Bearer",
 * ca_file (copied; NULL: the system's roots), insecure skips verifying prewarmd's certificate. TLS 1.2
 * at least. */
void pw_cli_client_set_auth(pw_cli_client *c, const char *token, const char *ca_file, bool insecure);
/* The CA (PEM, copied) that verifies prewarmd when no CA file was set: the kubeconfig cluster's, for
 * a server that is an in-cluster Service (pw_cli_client_in_cluster_service). NULL: none. */
void pw_cli_client_set_ca_pem(pw_cli_client *c, const char *pem, size_t len);
/* The client certificate and key (PEM, copied; the key wiped when replaced or freed) presented to an
 * https:// prewarmd; NULL: none. */
void pw_cli_client_set_client_cert(pw_cli_client *c, const char *cert_pem, const char *key_pem);
/* Whether the server URL is https to a cluster Service name (NAME.NAMESPACE.svc[.DOMAIN]). */
bool pw_cli_client_in_cluster_service(const pw_cli_client *c);
/* Connect and transfer timeouts in seconds (<= 0: the defaults, 5 and 30). */
void pw_cli_client_set_timeouts(pw_cli_client *c, long connect_s, long transfer_s);
/* Response bodies over this are refused (PW_ETOOLARGE). */
#define PW_CLI_RESPONSE_CAP (16u << 20)
/* Sends METHOD base_url+path (path starts with "/", query already encoded) with body (borrowed,
 * may be NULL) as JSON. On a completed exchange returns 0 with *status and *out: the parsed response
 * (caller json_decref()s; NULL when the body is empty or not JSON). On a transport failure returns
 * PW_EUNAVAIL (cannot connect), PW_ETIMEDOUT, PW_ETOOLARGE (response over the cap), PW_ECANCELED
 * (interrupted) or PW_EIO, with a message in err; *status and *out are then untouched. Blocks for at
 * most the connect plus transfer timeouts. */
int pw_cli_client_call(pw_cli_client *c, const char *method, const char *path, const json_t *body, long *status,
                       json_t **out, char *err, size_t errlen);
/* Receives a Server-Sent Events response's bytes as they arrive; non-zero stops the transfer. */
typedef int (*pw_cli_stream_fn)(void *arg, const char *data, size_t n);
/* GET base_url+path as an event stream (Accept: text/event-stream; Last-Event-ID when last_id is not
 * NULL): while the answer is 200 text/event-stream, its body goes to fn as it arrives, until the
 * server ends it, fn stops it (0), or nothing (not even a heartbeat) came for idle_s seconds
 * (PW_ETIMEDOUT). *streamed tells whether it was a stream; when it was not (an error, or a server
 * without the route), *status and *out are as pw_cli_client_call gives them. Transport failures as
 * pw_cli_client_call. */
int pw_cli_client_stream(pw_cli_client *c, const char *path, const char *last_id, long idle_s, pw_cli_stream_fn fn,
                         void *arg, bool *streamed, long *status, json_t **out, char *err, size_t errlen);
/* Percent-encodes s for a URL path segment or query value; caller frees with free(). */
char *pw_cli_escape(const char *s);

/* ---------------------------------------------------------------- formatting (pure) */

/* "5s", "3m", "2h", "4d", "3y" for an age in seconds (negative ages print as "0s"). */
void pw_cli_fmt_age(int64_t secs, char *out, size_t n);
/* "25s", "3m05s", "2h03m" for a duration in seconds (rounded). */
void pw_cli_fmt_duration(double secs, char *out, size_t n);
/* The age of an RFC 3339 time at now (seconds since the epoch); "<unknown>" when ts is NULL or bad. */
void pw_cli_fmt_age_of(const char *ts, time_t now, char *out, size_t n);

/* A table printed kubectl-style: upper-case headers, columns padded to their widest cell and separated
 * by three spaces, the last column not padded. */
typedef struct pw_cli_table pw_cli_table;
/* headers: ncols strings, copied. Free with pw_cli_table_free. */
pw_cli_table *pw_cli_table_new(size_t ncols, const char *const *headers);
void pw_cli_table_free(pw_cli_table *t);
/* Adds a row of ncols cells (copied; NULL prints as ""). */
void pw_cli_table_add(pw_cli_table *t, const char *const *cells);
/* Renders into b (appended). */
void pw_cli_table_render(const pw_cli_table *t, pw_buf *b);
/* The same, cutting the last column ("...") so lines fit max_width characters, though never below 20
 * characters for it; max_width 0: no limit. */
void pw_cli_table_render_fit(const pw_cli_table *t, pw_buf *b, size_t max_width);

/* The numbers a progress line shows. */
typedef struct pw_cli_progress {
    long total, pending, running, succeeded, failed, skipped, cancelled;
    double percentage; /* as the server reports it */
    double rate;       /* finished nodes per second; < 0 when not known yet */
    double eta_s;      /* < 0 when not known */
    double elapsed_s;
    const char *status; /* borrowed */
} pw_cli_progress;

/* Finished nodes: succeeded + failed + skipped + cancelled. */
long pw_cli_progress_done(const pw_cli_progress *p);
/* The terminal line: "[=====>    ] 412/1000 41.2%  ok 400 failed 2 skipped 10  23.4 nodes/s  ETA 25s",
 * the bar bar_width characters wide inside the brackets (no bar when bar_width <= 0); with color, the
 * ok and failed counts are coloured with ANSI escapes. Writes into out (always NUL-terminated). */
void pw_cli_progress_bar(const pw_cli_progress *p, int bar_width, bool color, char *out, size_t n);
/* The plain line for logs: "[  12s] running 412/1000 41.2% ok 400 failed 2 skipped 10 running 50
 * pending 538 23.4 nodes/s ETA 25s". No escapes, no carriage return. */
void pw_cli_progress_plain(const pw_cli_progress *p, char *out, size_t n);
/* Fills p's counters from a task object (borrowed); rate, eta and elapsed are left untouched. */
void pw_cli_progress_from_task(const json_t *task, pw_cli_progress *p);

/* A rate over a sliding window of recent samples. */
#define PW_CLI_RATE_SAMPLES 32
typedef struct pw_cli_rate {
    int64_t t_ms[PW_CLI_RATE_SAMPLES];
    long done[PW_CLI_RATE_SAMPLES];
    size_t n, head;
    int64_t window_ms;
} pw_cli_rate;
void pw_cli_rate_init(pw_cli_rate *r, int64_t window_ms);
/* Records that `done` items were finished at time t_ms (monotonic, non-decreasing). */
void pw_cli_rate_add(pw_cli_rate *r, int64_t t_ms, long done);
/* Items per second over the window; -1 until two samples at least 1 s apart exist. */
double pw_cli_rate_get(const pw_cli_rate *r);

/* Appends v as YAML (block style, keys in object order, strings quoted when plain style would change
 * their meaning) to b. */
void pw_cli_yaml(const json_t *v, pw_buf *b);

/* ---------------------------------------------------------------- commands */

struct pw_cli_ctx {
    const pw_cli_args *args;
    pw_cli_client *client;
    FILE *out, *err;
    bool out_tty; /* stdout is a terminal */
    bool color;
    volatile sig_atomic_t *interrupted; /* set by SIGINT/SIGTERM while waiting */
    bool server_seen;                   /* prewarmd has answered once (outages after that are retried) */
};

/* Whether -o asks for json or yaml; prints doc (borrowed) as JSON or YAML per -o. */
bool pw_cli_structured(const pw_cli_ctx *ctx);
void pw_cli_print_doc(pw_cli_ctx *ctx, const json_t *doc);
/* prewarmctl policy create|list|get|delete (policy.c) and its options. */
int pw_cli_cmd_policy(pw_cli_ctx *ctx);
extern const pw_cli_opt pw_cli_policy_opts[];

/* Calls the API and reports failures on ctx->err ("error: images[1]: invalid reference format").
 * Returns 0 with *out (caller json_decref()s; may be NULL when want_json is false) on a 2xx, else
 * PW_CLI_EXIT_API, or PW_CLI_EXIT_INTERRUPTED when interrupted. */
int pw_cli_api(pw_cli_ctx *ctx, const char *method, const char *path, const json_t *body, json_t **out);
/* Writes the API error in resp (borrowed, may be NULL) for HTTP status into f, one "error: " line per
 * detail (field: message), or the message, never raw JSON. */
void pw_cli_print_api_error(FILE *f, long status, const json_t *resp);

/* Writes to f the first 20 failed nodes of task id with their reasons, then "... and N more" when
 * failed_count (the task's count) is larger; lines are cut to max_width (0: no limit). Returns 0 or an
 * exit code as pw_cli_api does. */
int pw_cli_print_failed_nodes(pw_cli_ctx *ctx, FILE *f, const char *id, long failed_count, size_t max_width);
/* Waits for task id to finish, showing progress; returns the exit code for its outcome. */
int pw_cli_wait(pw_cli_ctx *ctx, const char *id);
/* Writes the task (borrowed) in ctx's output format; for table and wide, one row under headers. */
void pw_cli_print_tasks(pw_cli_ctx *ctx, const json_t *items, bool list);

#endif
