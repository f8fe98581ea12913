/* syncer.c: the agent's sync loop (syncer.h).
 *
 * Each sync is one POST on a curl multi handle that the syncer keeps for its life: its connection is
 * reused from one sync to the next (no TCP handshake per sync), and a poke wakes the wait in
 * curl_multi_poll at once (curl_multi_wakeup, safe from any thread), so a result reaches prewarmd as
 * soon as the puller has it. Curl's progress callback, used before, runs only about once a second
 * while a long poll is idle: each result waited up to a second, and a node's next work with it. */
#include "agent/syncer.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include <curl/curl.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/labels.h"
#include "base/log.h"
#include "base/mem.h"

#define MAX_ANSWER (16u << 20)
#define MAX_TOKEN 16384
#define REQUEST_TIMEOUT_MS 90000L /* prewarmd holds a poll for ~25 s */
#define INVENTORY_EVERY_MS 60000 /* ListImages at least this often without a change of ours */

struct pw_syncer {
    char *server, *url, *node, *cluster, *token_file, *token, *server_ca, *version;
    pw_cri *cri;
    pw_puller *puller;
    int poked;
    const volatile sig_atomic_t *stop;
    json_t *inv_now;  /* name -> true: what the runtime holds, as last listed */
    json_t *inv_sent; /* what prewarmd holds of it (NULL: send in full) */
    char *rt_name, *rt_version;
    uint64_t answered;
    CURLM *multi; /* for the syncer's life: its wakeup is the poke */
    CURL *easy;   /* reused: its connection stays open between syncs */
};

int pw_syncer_new(const struct pw_syncer_config *cfg, pw_syncer **out)
{
    if (!cfg || !cfg->server || !cfg->node || !*cfg->node || !cfg->cri)
        return PW_EINVAL;
    if (cfg->cluster && *cfg->cluster && !pw_dns1123_label(cfg->cluster))
        return PW_EINVAL;
    if (strncmp(cfg->server, "http://", 7) != 0 && strncmp(cfg->server, "https://", 8) != 0)
        return PW_EINVAL;
    pw_syncer *s = pw_xcalloc(1, sizeof *s);
    s->server = pw_xstrdup(cfg->server);
    size_t n = strlen(s->server);
    while (n && s->server[n - 1] == '/')
        s->server[--n] = 0;
    s->cluster = cfg->cluster && *cfg->cluster ? pw_xstrdup(cfg->cluster) : NULL;
    s->url = s->cluster ? pw_xasprintf("%s/agent/v1/clusters/%s/sync", s->server, s->cluster)
                        : pw_xasprintf("%s/agent/v1/sync", s->server);
    s->node = pw_xstrdup(cfg->node);
    s->token_file = cfg->token_file ? pw_xstrdup(cfg->token_file) : NULL;
    s->token = cfg->token ? pw_xstrdup(cfg->token) : NULL;
    s->server_ca = cfg->server_ca ? pw_xstrdup(cfg->server_ca) : NULL;
    s->version = pw_xstrdup(cfg->version ? cfg->version : "");
    s->cri = cfg->cri;
    s->inv_now = json_object();
    s->multi = curl_multi_init();
    s->easy = curl_easy_init();
    if (!s->multi || !s->easy) {
        pw_syncer_free(s);
        return PW_ENOMEM;
    }
    *out = s;
    return 0;
}

void pw_syncer_free(pw_syncer *s)
{
    if (!s)
        return;
    free(s->server);
    free(s->url);
    free(s->node);
    free(s->cluster);
    free(s->token_file);
    if (s->token)
        memset(s->token, 0, strlen(s->token));
    free(s->token);
    free(s->server_ca);
    free(s->version);
    free(s->rt_name);
    free(s->rt_version);
    json_decref(s->inv_now);
    json_decref(s->inv_sent);
    if (s->easy)
        curl_easy_cleanup(s->easy);
    if (s->multi)
        curl_multi_cleanup(s->multi);
    free(s);
}

void pw_syncer_set_puller(pw_syncer *s, pw_puller *p)
{
    s->puller = p;
}

void pw_syncer_poke(pw_syncer *s)
{
    __atomic_store_n(&s->poked, 1, __ATOMIC_RELEASE);
    curl_multi_wakeup(s->multi); /* a poll in flight returns; one not yet begun returns at once */
}

void pw_syncer_wake(pw_syncer *s)
{
    curl_multi_wakeup(s->multi);
}

uint64_t pw_syncer_count(pw_syncer *s)
{
    return __atomic_load_n(&s->answered, __ATOMIC_RELAXED);
}

/* ---- what the sync says ---- */

/* Lists the runtime's images into inv_now (names: tags and digests). False when it cannot. */
static bool inventory_list(pw_syncer *s)
{
    struct pw_cri_image *v = NULL;
    size_t n = 0;
    struct pw_cri_status st;
    if (pw_cri_list(s->cri, 30000, &v, &n, &st) != 0)
        return false;
    json_object_clear(s->inv_now);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < v[i].n_tags; k++)
            json_object_set_new(s->inv_now, v[i].tags[k], json_true());
        for (size_t k = 0; k < v[i].n_digests; k++)
            json_object_set_new(s->inv_now, v[i].digests[k], json_true());
    }
    pw_cri_images_free(v, n);
    return true;
}

static json_t *keys_of(const json_t *o, const json_t *minus)
{
    json_t *a = json_array();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v) {
        if (!minus || !json_object_get(minus, k))
            json_array_append_new(a, json_string(k));
    }
    return a;
}

static json_t *inventory_json(const pw_syncer *s)
{
    if (!s->inv_sent)
        return json_pack("{s:b, s:o}", "full", 1, "images", keys_of(s->inv_now, NULL));
    return json_pack("{s:b, s:o, s:o}", "full", 0, "added", keys_of(s->inv_now, s->inv_sent), "removed",
                     keys_of(s->inv_sent, s->inv_now));
}

static json_t *runtime_json(pw_syncer *s)
{
    if (!s->rt_name) {
        struct pw_cri_status st;
        char *name = NULL, *ver = NULL;
        if (pw_cri_version(s->cri, 5000, &name, &ver, &st) == 0) {
            s->rt_name = name;
            s->rt_version = ver;
        }
    }
    return json_pack("{s:s, s:s}", "name", s->rt_name ? s->rt_name : "", "version",
                     s->rt_version ? s->rt_version : "");
}

static json_t *fs_json(pw_syncer *s)
{
    struct pw_cri_fs fs;
    struct pw_cri_status st;
    if (pw_cri_fs_info(s->cri, 5000, &fs, &st) != 0)
        return json_object();
    json_t *o = json_pack("{s:s, s:I}", "mountpoint", fs.mountpoint, "usedBytes", (json_int_t)fs.used_bytes);
    struct statvfs sv;
    if (statvfs(fs.mountpoint, &sv) == 0) {
        json_object_set_new(o, "capacityBytes", json_integer((json_int_t)((unsigned long long)sv.f_blocks * sv.f_frsize)));
        json_object_set_new(o, "availableBytes", json_integer((json_int_t)((unsigned long long)sv.f_bavail * sv.f_frsize)));
    }
    return o;
}

/* The token file's text without surrounding white space; NULL when there is none (logged once per
 * change of why). */
static char *read_token(const pw_syncer *s)
{
    if (s->token)
        return pw_xstrdup(s->token);
    if (!s->token_file)
        return NULL;
    FILE *f = fopen(s->token_file, "r");
    if (!f)
        return NULL;
    char *buf = pw_xmalloc(MAX_TOKEN + 1);
    size_t n = fread(buf, 1, MAX_TOKEN, f);
    fclose(f);
    buf[n] = 0;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = 0;
    if (!n) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* ---- one request ---- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    return pw_buf_append(arg, p, size * n) == 0 ? size * n : 0;
}

/* The longest wait in curl_multi_poll: a stop flag set without pw_syncer_wake (a signal handler on
 * another thread) is seen this late at most. Not shorter: thousands of simulated agents wake this
 * often when idle. */
#define STOP_CHECK_MS 1000

/* Runs the transfer set up on s->easy. CURLE_ABORTED_BY_CALLBACK when a poke or a stop ended it. */
static CURLcode perform(pw_syncer *s)
{
    if (curl_multi_add_handle(s->multi, s->easy) != CURLM_OK)
        return CURLE_FAILED_INIT;
    CURLcode cc = CURLE_OK;
    int running = 1;
    while (running) {
        if (curl_multi_perform(s->multi, &running) != CURLM_OK) {
            cc = CURLE_FAILED_INIT;
            break;
        }
        if (!running)
            break;
        if (__atomic_load_n(&s->poked, __ATOMIC_ACQUIRE) || *s->stop) {
            cc = CURLE_ABORTED_BY_CALLBACK;
            break;
        }
        curl_multi_poll(s->multi, NULL, 0, STOP_CHECK_MS, NULL);
    }
    int left;
    CURLMsg *m;
    while (running == 0 && (m = curl_multi_info_read(s->multi, &left)))
        if (m->msg == CURLMSG_DONE && m->easy_handle == s->easy)
            cc = m->data.result;
    curl_multi_remove_handle(s->multi, s->easy); /* an aborted transfer's connection is closed */
    return cc;
}

/* POSTs body; 0 with *answer, PW_ECANCELED (poked or stopping), or another PW_E* with *why. */
static int post(pw_syncer *s, const json_t *body, json_t **answer, long *http, char *why, size_t why_n)
{
    char *text = json_dumps(body, JSON_COMPACT);
    char *token = read_token(s);
    CURL *h = s->easy;
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (token) {
        char *auth = pw_xasprintf("Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, auth);
        memset(auth, 0, strlen(auth));
        free(auth);
        memset(token, 0, strlen(token));
        free(token);
    }
    pw_buf resp;
    pw_buf_init(&resp, MAX_ANSWER);
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, s->url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, REQUEST_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    if (s->server_ca)
        curl_easy_setopt(h, CURLOPT_CAINFO, s->server_ca);
    CURLcode cc = perform(s);
    *http = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, http);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL); /* the next sync sets its own */
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
    curl_slist_free_all(hdrs);
    free(text);
    int rc = 0;
    if (cc == CURLE_ABORTED_BY_CALLBACK) {
        rc = PW_ECANCELED;
    } else if (cc != CURLE_OK) {
        snprintf(why, why_n, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
        rc = PW_EUNAVAIL;
    } else {
        json_error_t jerr;
        json_t *j = json_loadb(resp.p ? resp.p : "", resp.len, 0, &jerr);
        if (*http != 200) {
            const char *msg = json_string_value(json_object_get(j, "message"));
            snprintf(why, why_n, "HTTP %ld: %s", *http, msg ? msg : "");
            json_decref(j);
            rc = *http == 401 ? PW_EAUTH : *http == 403 ? PW_EFORBIDDEN : PW_EUNAVAIL;
        } else if (!json_is_object(j)) {
            snprintf(why, why_n, "the answer is not a JSON object (%zu bytes: %s)", resp.len,
                     j ? "not an object" : jerr.text);
            json_decref(j);
            rc = PW_EPROTO;
        } else {
            *answer = j;
        }
    }
    pw_buf_fini(&resp);
    return rc;
}

int pw_syncer_run(pw_syncer *s, const volatile sig_atomic_t *stop)
{
    s->stop = stop;
    int64_t backoff = 0;
    char last_why[256] = "";
    bool runtime_ok = true;
    int64_t listed_at = 0; /* monotonic ms of the last good ListImages; 0: list before the next sync */
    while (!*stop) {
        bool poked = __atomic_exchange_n(&s->poked, 0, __ATOMIC_ACQ_REL);
        /* the runtime's images change with our pulls (a poke) and, rarely, by others (the kubelet, its
         * image GC): list after a poke, after a failed list, and at least every INVENTORY_EVERY_MS */
        bool list = poked || !listed_at || pw_clock_mono_ms() - listed_at >= INVENTORY_EVERY_MS;
        bool listed = list ? inventory_list(s) : runtime_ok;
        listed_at = list ? (listed ? pw_clock_mono_ms() : 0) : listed_at;
        if (listed != runtime_ok) {
            if (listed)
                PW_INFO("the container runtime at %s answers again", pw_cri_socket(s->cri));
            else
                PW_WARN("the container runtime at %s does not answer", pw_cri_socket(s->cri));
            runtime_ok = listed;
            if (!listed) { /* asked again once it answers: a restarted runtime may be another version */
                free(s->rt_name);
                free(s->rt_version);
                s->rt_name = s->rt_version = NULL;
            }
        }
        json_t *body = json_pack("{s:s, s:s, s:o, s:o, s:o, s:b}", "node", s->node, "agentVersion", s->version,
                                 "runtime", runtime_json(s), "imageFs", fs_json(s), "inventory",
                                 inventory_json(s), "wait", 1);
        json_object_set_new(body, "assignments", s->puller ? pw_puller_report(s->puller) : json_array());
        if (s->cluster)
            json_object_set_new(body, "cluster", json_string(s->cluster));
        json_t *answer = NULL;
        long http = 0;
        char why[256] = "";
        int rc = post(s, body, &answer, &http, why, sizeof why);
        json_decref(body);
        if (rc == PW_ECANCELED)
            continue; /* something to say first: sync again at once */
        if (rc != 0) {
            if (strcmp(why, last_why) != 0)
                PW_WARN("sync with %s failed: %s (retrying)", s->server, why);
            snprintf(last_why, sizeof last_why, "%s", why);
            /* a prewarmd that comes back has no inventory of ours */
            json_decref(s->inv_sent);
            s->inv_sent = NULL;
            backoff = backoff ? (backoff * 2 > 10000 ? 10000 : backoff * 2) : 1000;
            for (int64_t t = 0; t < backoff && !*stop && !__atomic_load_n(&s->poked, __ATOMIC_ACQUIRE); t += 100)
                pw_clock_sleep_ms(100);
            continue;
        }
        if (last_why[0])
            PW_INFO("sync with %s works again", s->server);
        last_why[0] = 0;
        backoff = 0;
        __atomic_add_fetch(&s->answered, 1, __ATOMIC_RELAXED);
        json_decref(s->inv_sent);
        s->inv_sent = json_is_true(json_object_get(answer, "needFullInventory")) ? NULL : json_deep_copy(s->inv_now);
        if (s->puller)
            pw_puller_apply(s->puller, json_object_get(answer, "assignments"), json_object_get(answer, "cancel"));
        json_int_t after = json_integer_value(json_object_get(answer, "pollAfterSeconds"));
        json_decref(answer);
        for (int64_t t = 0; t < after * 1000 && !*stop && !__atomic_load_n(&s->poked, __ATOMIC_ACQUIRE); t += 100)
            pw_clock_sleep_ms(100);
    }
    return 0;
}
