/* fleet.c: the live clusters: their clients, probers, the clusters file's reloads (fleet.h). */
#include "cluster/fleet.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"

/* One cluster. Its state fields are under mu, which is never held across a network call. */
struct fcl {
    struct pw_clusterdef def;
    pw_k8s_config *kcfg;
    pw_k8s_client *client, *probe;
    pthread_t th;
    bool th_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, probed;
    int64_t down_since; /* mono ms, 0: reachable */
    int64_t probe_ms;
    char *version, *last_error;
};

struct pw_fleet {
    struct pw_fleet_opts opts;
    char *file, *user_agent;
    pthread_mutex_t mu;  /* the cluster list; reloads hold rmu */
    pthread_mutex_t rmu; /* one reload at a time */
    struct fcl **v;
    size_t n;
    size_t n_flags;      /* the first n_flags definitions came from --cluster (kept on reload) */
    struct pw_clusterdef *flag_defs;
    char *reload_error;
    pw_engine *engine;
    pthread_t watcher;
    bool watching;
    atomic_bool want_reload, stop;
    struct stat last;
};

/* ---- one cluster ---- */

static void fcl_free(struct fcl *c)
{
    if (!c)
        return;
    if (c->th_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->th, NULL);
    }
    pw_k8s_client_free(c->probe);
    pw_k8s_client_free(c->client);
    pw_k8s_config_free(c->kcfg);
    pw_clusterdef_fini(&c->def);
    free(c->version);
    free(c->last_error);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

/* The kubeconfig of d: its path, or its inline text through a private temporary file. */
static int load_kubeconfig(const struct pw_clusterdef *d, pw_k8s_config **out, char **errmsg)
{
    char *err = NULL;
    int rc;
    if (d->kubeconfig_data) {
        char path[] = "/tmp/prewarm-kubeconfig-XXXXXX";
        int fd = mkstemp(path);
        if (fd < 0) {
            *errmsg = pw_xasprintf("cluster %s: cannot write its inline kubeconfig to a temporary file", d->name);
            return PW_EIO;
        }
        size_t len = strlen(d->kubeconfig_data);
        bool ok = write(fd, d->kubeconfig_data, len) == (ssize_t)len;
        close(fd);
        rc = ok ? pw_k8s_config_load(path, d->context, out, &err) : PW_EIO;
        unlink(path);
    } else {
        rc = pw_k8s_config_load(d->kubeconfig, d->context, out, &err);
    }
    if (rc != 0) {
        *errmsg = pw_xasprintf("cluster %s: %s", d->name, err ? err : "cannot load its kubeconfig");
        free(err);
    }
    return rc;
}

/* A cluster loaded from d (taken), its clients made, its prober not started. */
static int fcl_new(struct pw_clusterdef *d, const struct pw_fleet_opts *o, struct fcl **out, char **errmsg)
{
    struct fcl *c = pw_xcalloc(1, sizeof *c);
    c->def = *d;
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->probe_ms = o->probe_ms > 0 ? o->probe_ms : 2000;
    int rc = load_kubeconfig(&c->def, &c->kcfg, errmsg);
    if (rc == 0) {
        struct pw_k8s_client_opts ko = {.qps = c->def.qps > 0 ? c->def.qps : o->qps,
                                        .burst = c->def.burst > 0 ? c->def.burst : o->burst,
                                        .user_agent = o->user_agent};
        struct pw_k8s_client_opts po = {.qps = 5, .burst = 5, .max_retries = -1,
                                        .timeout_ms = (int)(c->probe_ms < 5000 ? 5000 : c->probe_ms)};
        rc = pw_k8s_client_new(c->kcfg, &ko, &c->client);
        if (rc == 0)
            rc = pw_k8s_client_new(c->kcfg, &po, &c->probe);
        if (rc != 0)
            *errmsg = pw_xasprintf("cluster %s: cannot create its Kubernetes client (%s)", c->def.name, pw_strerror(rc));
    }
    if (rc != 0) {
        fcl_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static void *probe_main(void *arg)
{
    struct fcl *c = arg;
    for (;;) {
        int status = 0;
        json_t *body = NULL;
        int rc = pw_k8s_request(c->probe, "GET", "/version", NULL, NULL, &status, &body);
        char *why = NULL;
        if (rc != 0)
            why = pw_xasprintf("GET /version: %s", pw_strerror(rc));
        else if (status != 200)
            why = pw_xasprintf("GET /version: HTTP %d", status);
        pthread_mutex_lock(&c->mu);
        int64_t now = pw_clock_mono_ms();
        if (!why) {
            if (c->down_since)
                PW_INFO("cluster %s is reachable again", c->def.name);
            c->down_since = 0;
            free(c->version);
            const char *v = json_string_value(json_object_get(body, "gitVersion"));
            c->version = v ? pw_xstrdup(v) : NULL;
        } else {
            if (!c->down_since) {
                c->down_since = now;
                PW_WARN("cluster %s is unreachable: %s", c->def.name, why);
            }
            free(c->last_error);
            c->last_error = why;
        }
        c->probed = true;
        json_decref(body);
        struct timespec ts;
        pw_clock_deadline_ts(c->probe_ms, &ts);
        while (!c->stop && pthread_cond_timedwait(&c->cv, &c->mu, &ts) == 0) {
        }
        bool stop = c->stop;
        pthread_mutex_unlock(&c->mu);
        if (stop)
            return NULL;
    }
}

static int64_t fcl_down_since(void *arg)
{
    struct fcl *c = arg;
    pthread_mutex_lock(&c->mu);
    int64_t v = c->down_since;
    pthread_mutex_unlock(&c->mu);
    return v;
}

static int fcl_start(struct fcl *c)
{
    if (pthread_create(&c->th, NULL, probe_main, c) != 0)
        return PW_ENOMEM;
    c->th_started = true;
    return 0;
}

static int fcl_attach(pw_engine *e, struct fcl *c)
{
    struct pw_engine_cluster ec = {.name = c->def.name, .labels = c->def.labels, .client = c->client,
                                   .max_nodes_in_flight = c->def.max_in_flight, .down_since = fcl_down_since,
                                   .arg = c};
    return pw_engine_cluster_set(e, &ec);
}

/* ---- the fleet ---- */

static void defs_free(struct pw_clusterdef *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pw_clusterdef_fini(&v[i]);
    free(v);
}

static struct pw_clusterdef defcopy(const struct pw_clusterdef *d)
{
    struct pw_clusterdef c = {
        .name = pw_xstrdup(d->name),
        .kubeconfig = d->kubeconfig ? pw_xstrdup(d->kubeconfig) : NULL,
        .kubeconfig_data = d->kubeconfig_data ? pw_xstrdup(d->kubeconfig_data) : NULL,
        .context = d->context ? pw_xstrdup(d->context) : NULL,
        .labels = d->labels ? json_deep_copy(d->labels) : json_object(),
        .qps = d->qps,
        .burst = d->burst,
        .max_in_flight = d->max_in_flight,
    };
    return c;
}

/* The whole configuration now: the flags' clusters then the file's. */
static int read_conf(pw_fleet *f, struct pw_clusterconf *out, char **errmsg)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < f->n_flags; i++) {
        struct pw_clusterdef d = defcopy(&f->flag_defs[i]);
        pw_clusterconf_add(out, &d, NULL);
    }
    if (!f->file)
        return 0;
    int rc = pw_clusterconf_load_file(f->file, out, errmsg);
    if (rc == 0 && out->n == 0) {
        *errmsg = pw_xasprintf("clusters file %s: no cluster configured", f->file);
        rc = PW_EINVAL;
    }
    if (rc != 0)
        pw_clusterconf_fini(out);
    return rc;
}

int pw_fleet_new(struct pw_clusterconf *conf, const struct pw_fleet_opts *opts, pw_fleet **out, char **errmsg)
{
    pw_fleet *f = pw_xcalloc(1, sizeof *f);
    f->opts = *opts;
    f->file = opts->file ? pw_xstrdup(opts->file) : NULL;
    f->opts.file = f->file;
    f->user_agent = opts->user_agent ? pw_xstrdup(opts->user_agent) : NULL;
    f->opts.user_agent = f->user_agent;
    pthread_mutex_init(&f->mu, NULL);
    pthread_mutex_init(&f->rmu, NULL);
    f->n_flags = conf->n;
    f->flag_defs = pw_xcalloc(conf->n ? conf->n : 1, sizeof *f->flag_defs);
    for (size_t i = 0; i < conf->n; i++)
        f->flag_defs[i] = defcopy(&conf->v[i]);
    pw_clusterconf_fini(conf);
    if (f->file)
        stat(f->file, &f->last);
    struct pw_clusterconf all;
    int rc = read_conf(f, &all, errmsg);
    if (rc == 0 && all.n == 0) {
        *errmsg = pw_xstrdup("no cluster configured");
        rc = PW_EINVAL;
    }
    for (size_t i = 0; i < all.n && rc == 0; i++) {
        struct fcl *c = NULL;
        rc = fcl_new(&all.v[i], &f->opts, &c, errmsg);
        if (rc == 0) {
            f->v = pw_xrealloc(f->v, (f->n + 1) * sizeof *f->v);
            f->v[f->n++] = c;
        }
    }
    pw_clusterconf_fini(&all);
    if (rc != 0) {
        pw_fleet_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

int pw_fleet_from_flags(struct pw_clusterconf *flags, const char *kubeconfig, const char *context,
                        const struct pw_fleet_opts *opts, pw_fleet **out, char **errmsg)
{
    if (flags->n == 0 && !opts->file) {
        struct pw_clusterdef d = {.name = pw_xstrdup("default"),
                                  .kubeconfig = kubeconfig ? pw_xstrdup(kubeconfig) : NULL,
                                  .context = context ? pw_xstrdup(context) : NULL,
                                  .labels = json_object()};
        pw_clusterconf_add(flags, &d, NULL);
    }
    return pw_fleet_new(flags, opts, out, errmsg);
}

static json_t *fleet_json_cb(void *arg)
{
    return pw_fleet_json(arg);
}

json_t *(*const pw_fleet_json_fn)(void *arg) = fleet_json_cb;

const char *pw_fleet_first_name(pw_fleet *f)
{
    return f->v[0]->def.name;
}

pw_k8s_client *pw_fleet_first_client(pw_fleet *f)
{
    return f->v[0]->client;
}

const pw_k8s_config *pw_fleet_first_config(pw_fleet *f)
{
    return f->v[0]->kcfg;
}

static void file_changed_check(pw_fleet *f)
{
    struct stat st;
    if (!f->file || stat(f->file, &st) != 0)
        return;
    if (st.st_mtim.tv_sec != f->last.st_mtim.tv_sec || st.st_mtim.tv_nsec != f->last.st_mtim.tv_nsec ||
        st.st_size != f->last.st_size || st.st_ino != f->last.st_ino) {
        f->last = st;
        atomic_store(&f->want_reload, true);
    }
}

static void *watch_main(void *arg)
{
    pw_fleet *f = arg;
    while (!atomic_load(&f->stop)) {
        struct timespec ts = {0, 250 * 1000 * 1000};
        nanosleep(&ts, NULL);
        file_changed_check(f);
        if (atomic_exchange(&f->want_reload, false)) {
            char *err = NULL;
            pw_fleet_reload(f, &err);
            free(err);
        }
    }
    return NULL;
}

int pw_fleet_attach(pw_fleet *f, pw_engine *e)
{
    f->engine = e;
    int rc = 0;
    for (size_t i = 0; i < f->n && rc == 0; i++) {
        rc = fcl_attach(e, f->v[i]);
        if (rc == 0)
            rc = fcl_start(f->v[i]);
        if (rc != 0)
            PW_ERROR("cluster %s cannot be attached: %s", f->v[i]->def.name, pw_strerror(rc));
    }
    if (rc == 0 && pthread_create(&f->watcher, NULL, watch_main, f) == 0)
        f->watching = true;
    return rc;
}

void pw_fleet_request_reload(pw_fleet *f)
{
    if (f)
        atomic_store(&f->want_reload, true);
}

static struct fcl *find(pw_fleet *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->v[i]->def.name, name) == 0)
            return f->v[i];
    return NULL;
}

static bool in_conf(const struct pw_clusterconf *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].name, name) == 0)
            return true;
    return false;
}

static int reload_locked(pw_fleet *f, char **errmsg)
{
    struct pw_clusterconf conf;
    int rc = read_conf(f, &conf, errmsg);
    if (rc != 0)
        return rc;
    if (!in_conf(&conf, f->v[0]->def.name)) {
        *errmsg = pw_xasprintf("cluster %s is the first cluster (the engine's own) and cannot be removed without a restart",
                               f->v[0]->def.name);
        pw_clusterconf_fini(&conf);
        return PW_EINVAL;
    }
    /* load everything new first: a failure changes nothing */
    struct fcl **fresh = pw_xcalloc(conf.n, sizeof *fresh);
    for (size_t i = 0; i < conf.n && rc == 0; i++) {
        struct fcl *old = find(f, conf.v[i].name);
        if (old && pw_clusterdef_same_connection(&old->def, &conf.v[i]))
            continue;
        if (old && old == f->v[0]) {
            *errmsg = pw_xasprintf("cluster %s: the first cluster's kubeconfig or context cannot change without a restart",
                                   old->def.name);
            rc = PW_EINVAL;
            break;
        }
        struct pw_clusterdef d = defcopy(&conf.v[i]);
        rc = fcl_new(&d, &f->opts, &fresh[i], errmsg);
    }
    if (rc != 0) {
        for (size_t i = 0; i < conf.n; i++)
            fcl_free(fresh[i]);
        free(fresh);
        pw_clusterconf_fini(&conf);
        return rc;
    }
    /* removed (or replaced) clusters leave the engine, then the fleet */
    for (size_t i = 0; i < f->n;) {
        struct fcl *c = f->v[i];
        bool keep = false;
        for (size_t j = 0; j < conf.n; j++)
            if (strcmp(conf.v[j].name, c->def.name) == 0 && !fresh[j])
                keep = true;
        if (keep) {
            i++;
            continue;
        }
        if (f->engine)
            pw_engine_cluster_remove(f->engine, c->def.name);
        pthread_mutex_lock(&f->mu);
        memmove(&f->v[i], &f->v[i + 1], (f->n - i - 1) * sizeof *f->v);
        f->n--;
        pthread_mutex_unlock(&f->mu);
        fcl_free(c);
    }
    /* kept ones take their new labels and cap; new ones join */
    for (size_t j = 0; j < conf.n; j++) {
        struct fcl *c = fresh[j];
        if (!c) {
            c = find(f, conf.v[j].name);
            pthread_mutex_lock(&f->mu);
            json_decref(c->def.labels);
            c->def.labels = json_deep_copy(conf.v[j].labels);
            c->def.max_in_flight = conf.v[j].max_in_flight;
            pthread_mutex_unlock(&f->mu);
            if (f->engine)
                fcl_attach(f->engine, c);
            continue;
        }
        int arc = f->engine ? fcl_attach(f->engine, c) : 0;
        if (arc == 0)
            arc = fcl_start(c);
        if (arc != 0) {
            PW_ERROR("cluster %s cannot be added: %s", c->def.name, pw_strerror(arc));
            if (f->engine)
                pw_engine_cluster_remove(f->engine, c->def.name);
            fcl_free(c);
            continue;
        }
        pthread_mutex_lock(&f->mu);
        f->v = pw_xrealloc(f->v, (f->n + 1) * sizeof *f->v);
        f->v[f->n++] = c;
        pthread_mutex_unlock(&f->mu);
    }
    free(fresh);
    pw_clusterconf_fini(&conf);
    return 0;
}

int pw_fleet_reload(pw_fleet *f, char **errmsg)
{
    char *err = NULL;
    pthread_mutex_lock(&f->rmu);
    int rc = reload_locked(f, &err);
    pthread_mutex_lock(&f->mu);
    free(f->reload_error);
    f->reload_error = rc != 0 ? pw_xstrdup(err ? err : pw_strerror(rc)) : NULL;
    size_t n = f->n;
    pthread_mutex_unlock(&f->mu);
    pthread_mutex_unlock(&f->rmu);
    if (rc != 0)
        PW_ERROR("clusters not reloaded, the running configuration stays: %s", err ? err : pw_strerror(rc));
    else
        PW_INFO("clusters reloaded: %zu clusters", n);
    if (errmsg)
        *errmsg = err;
    else
        free(err);
    return rc;
}

json_t *pw_fleet_json(pw_fleet *f)
{
    json_t *eng = f->engine ? pw_engine_clusters(f->engine) : json_array();
    json_t *items = json_array();
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < f->n; i++) {
        struct fcl *c = f->v[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(c->def.name));
        json_object_set_new(o, "labels", json_deep_copy(c->def.labels));
        pthread_mutex_lock(&c->mu);
        json_object_set_new(o, "reachable", json_boolean(c->probed && !c->down_since));
        json_object_set_new(o, "serverVersion", c->version ? json_string(c->version) : json_null());
        json_object_set_new(o, "lastError", c->last_error && c->down_since ? json_string(c->last_error) : json_null());
        pthread_mutex_unlock(&c->mu);
        json_object_set_new(o, "server", json_string(pw_k8s_config_server(c->kcfg)));
        size_t k;
        json_t *ec;
        json_array_foreach(eng, k, ec) {
            if (strcmp(json_string_value(json_object_get(ec, "name")), c->def.name) != 0)
                continue;
            const char *keys[] = {"synced", "nodes", "readyNodes", "agents", "nodesInFlight"};
            for (size_t q = 0; q < sizeof keys / sizeof keys[0]; q++)
                json_object_set(o, keys[q], json_object_get(ec, keys[q]));
        }
        json_array_append_new(items, o);
    }
    json_t *out = json_object();
    json_object_set_new(out, "items", items);
    if (f->reload_error)
        json_object_set_new(out, "reloadError", json_string(f->reload_error));
    pthread_mutex_unlock(&f->mu);
    json_decref(eng);
    return out;
}

void pw_fleet_free(pw_fleet *f)
{
    if (!f)
        return;
    if (f->watching) {
        atomic_store(&f->stop, true);
        pthread_join(f->watcher, NULL);
    }
    for (size_t i = 0; i < f->n; i++)
        fcl_free(f->v[i]);
    free(f->v);
    defs_free(f->flag_defs, f->n_flags);
    free(f->reload_error);
    free(f->file);
    free(f->user_agent);
    pthread_mutex_destroy(&f->mu);
    pthread_mutex_destroy(&f->rmu);
    free(f);
}
