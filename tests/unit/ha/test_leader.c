/* Unit tests of the Lease leader elector (src/ha) against kubesim's API in this process (its
 * coordination.k8s.io/v1 leases, 409 on a stale resourceVersion), with short durations (lease 3 s,
 * renew deadline 2 s, retry 200 ms): the first elector creates the Lease and leads, renews it, a
 * second one stays a follower while it does; a Lease written by another holder makes the leader step
 * down at its next round (and a PUT with a used resourceVersion gets 409); followers racing for a
 * released Lease end with exactly one leader and never two at once; stopping the leader releases the Lease and the follower
 * takes over at its next retry; a Lease held by a holder that never renews is taken only after the
 * lease duration has passed on the taker's own clock; bad configurations are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "ha/ha.h"
#include "k8s/k8s.h"
#include "sim/sim.h"

#define LEASE_PATH "/apis/coordination.k8s.io/v1/namespaces/prewarm/leases/prewarmd"

struct env {
    struct sim sim;
    pw_http_server *srv;
    char kubeconfig[64];
    pw_k8s_config *kcfg;
    pw_k8s_client *client;
    pw_ha *live[4]; /* electors a failed test left running: teardown stops them first */
};

static struct env E;

struct watcher {
    atomic_int leading, gains, losses;
};

static void on_change(void *arg, bool leading)
{
    struct watcher *w = arg;
    atomic_store(&w->leading, leading);
    if (leading)
        atomic_fetch_add(&w->gains, 1);
    else
        atomic_fetch_add(&w->losses, 1);
}

static int setup(void **state)
{
    (void)state;
    pw_log_set_level(PW_LOG_ERROR);
    memset(&E, 0, sizeof E);
    E.sim.opt.token = "tok";
    E.sim.opt.threads = 4;
    E.sim.opt.listen = "127.0.0.1:0";
    E.sim.opt.namespaces = "prewarm";
    E.sim.store = sim_store_new(10000);
    assert_int_equal(sim_api_start(&E.sim, NULL, &E.srv), 0);
    snprintf(E.kubeconfig, sizeof E.kubeconfig, "/tmp/pw-test-leader-%d.yaml", (int)getpid());
    FILE *f = fopen(E.kubeconfig, "w");
    assert_non_null(f);
    fprintf(f,
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster: {server: "
            "\"http://127.0.0.1:%d\"}\nusers:\n- name: u\n  user: {token: tok}\ncontexts:\n- name: c\n  context: "
            "{cluster: c, user: u}\n",
            pw_http_server_port(E.srv));
    fclose(f);
    char *msg = NULL;
    if (pw_k8s_config_load(E.kubeconfig, NULL, &E.kcfg, &msg) != 0)
        fail_msg("kubeconfig: %s", msg);
    struct pw_k8s_client_opts o = {.qps = 1000, .burst = 1000, .max_retries = -1, .timeout_ms = 1000};
    assert_int_equal(pw_k8s_client_new(E.kcfg, &o, &E.client), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 4; i++)
        pw_ha_free(E.live[i]);
    pw_k8s_client_free(E.client);
    pw_k8s_config_free(E.kcfg);
    pw_http_server_free(E.srv);
    sim_api_stop(&E.sim);
    sim_store_free(E.sim.store);
    unlink(E.kubeconfig);
    return 0;
}

static pw_ha *elector(const char *identity, struct watcher *w)
{
    struct pw_ha_config cfg = {.client = E.client, .namespace_ = "prewarm", .name = "prewarmd", .identity = identity,
                               .lease_ms = 3000, .renew_deadline_ms = 2000, .retry_ms = 200,
                               .on_change = on_change, .arg = w};
    pw_ha *h = NULL;
    assert_int_equal(pw_ha_new(&cfg, &h), 0);
    assert_int_equal(pw_ha_start(h), 0);
    for (int i = 0; i < 4; i++)
        if (!E.live[i]) {
            E.live[i] = h;
            break;
        }
    return h;
}

/* Waits up to ms for pw_ha_is_leader(h) == want; the ms it took, or -1. */
static int64_t wait_leader(pw_ha *h, bool want, int ms)
{
    int64_t t0 = pw_clock_mono_ms();
    while (pw_clock_mono_ms() - t0 < ms) {
        if (pw_ha_is_leader(h) == want)
            return pw_clock_mono_ms() - t0;
        pw_clock_sleep_ms(20);
    }
    return -1;
}

/* Stops h (and forgets it for teardown). */
static void stop(pw_ha *h)
{
    for (int i = 0; i < 4; i++)
        if (E.live[i] == h)
            E.live[i] = NULL;
    pw_ha_free(h);
}

static json_t *get_lease(void)
{
    int status = 0;
    json_t *l = NULL;
    assert_int_equal(pw_k8s_request(E.client, "GET", LEASE_PATH, NULL, NULL, &status, &l), 0);
    assert_int_equal(status, 200);
    return l;
}

static const char *holder_of(const json_t *l)
{
    return json_string_value(json_object_get(json_object_get(l, "spec"), "holderIdentity"));
}

static void test_acquire_renew_follow(void **state)
{
    (void)state;
    struct watcher wa = {0}, wb = {0};
    pw_ha *a = elector("replica-a", &wa);
    assert_true(wait_leader(a, true, 3000) >= 0);
    assert_int_equal(atomic_load(&wa.gains), 1);
    json_t *l = get_lease();
    assert_string_equal(holder_of(l), "replica-a");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(l, "spec"), "leaseDurationSeconds")), 3);
    char rv1[64];
    snprintf(rv1, sizeof rv1, "%s", json_string_value(json_object_get(json_object_get(l, "metadata"), "resourceVersion")));
    json_decref(l);

    pw_ha *b = elector("replica-b", &wb);
    /* for twice the lease duration: a renews (the record changes), b never leads */
    for (int i = 0; i < 60; i++) {
        assert_true(pw_ha_is_leader(a));
        assert_false(pw_ha_is_leader(b));
        pw_clock_sleep_ms(100);
    }
    l = get_lease();
    assert_string_equal(holder_of(l), "replica-a");
    assert_string_not_equal(json_string_value(json_object_get(json_object_get(l, "metadata"), "resourceVersion")), rv1);
    json_decref(l);
    char who[64];
    pw_ha_holder(b, who, sizeof who);
    assert_string_equal(who, "replica-a");
    assert_int_equal(atomic_load(&wb.gains), 0);

    /* a stops: it releases, b takes over at its next retry (well before the 3 s lease) */
    int64_t t0 = pw_clock_mono_ms();
    stop(a);
    assert_int_equal(atomic_load(&wa.losses), 1);
    assert_true(wait_leader(b, true, 2500) >= 0);
    assert_true(pw_clock_mono_ms() - t0 < 2500);
    l = get_lease();
    assert_string_equal(holder_of(l), "replica-b");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(l, "spec"), "leaseTransitions")), 1);
    json_decref(l);
    stop(b);
    l = get_lease();
    assert_string_equal(holder_of(l), ""); /* released */
    json_decref(l);
}

/* Another writer takes the Lease (as a replica would after judging it expired): the leader sees a
 * new holder at its next round and steps down at once, without waiting for its renew deadline. */
static void test_step_down_when_taken(void **state)
{
    (void)state;
    struct watcher w = {0};
    pw_ha *a = elector("replica-a", &w);
    assert_true(wait_leader(a, true, 3000) >= 0);
    json_t *l = get_lease();
    json_object_set_new(json_object_get(l, "spec"), "holderIdentity", json_string("intruder"));
    int status = 0;
    json_t *resp = NULL;
    assert_int_equal(pw_k8s_request(E.client, "PUT", LEASE_PATH, l, NULL, &status, &resp), 0);
    assert_int_equal(status, 200);
    json_decref(resp);
    /* the same write again with the resourceVersion already used: the 409 the elector relies on */
    assert_int_equal(pw_k8s_request(E.client, "PUT", LEASE_PATH, l, NULL, &status, &resp), 0);
    assert_int_equal(status, 409);
    json_decref(resp);
    json_decref(l);
    assert_true(wait_leader(a, false, 1000) >= 0); /* within ~one retry period, not the 2 s deadline */
    assert_int_equal(atomic_load(&w.losses), 1);
    for (int i = 0; i < 20; i++) { /* and it does not take the Lease back while the intruder's is fresh */
        assert_false(pw_ha_is_leader(a));
        pw_clock_sleep_ms(50);
    }
    stop(a);
}

/* Several followers race for a released Lease (their PUTs carry the same resourceVersion: all but
 * one get 409): at no sampled moment do two lead, and exactly one ends up leading. */
static void test_race_one_winner(void **state)
{
    (void)state;
    struct watcher w[4] = {{0}};
    pw_ha *a = elector("replica-a", &w[0]);
    assert_true(wait_leader(a, true, 3000) >= 0);
    pw_ha *f[3];
    char id[16];
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "replica-%c", 'b' + i);
        f[i] = elector(id, &w[i + 1]);
    }
    pw_clock_sleep_ms(500);
    stop(a);
    for (int k = 0; k < 150; k++) {
        int leaders = 0;
        for (int i = 0; i < 3; i++)
            leaders += pw_ha_is_leader(f[i]);
        assert_true(leaders <= 1);
        pw_clock_sleep_ms(20);
    }
    int leaders = 0, gains = 0;
    for (int i = 0; i < 3; i++) {
        leaders += pw_ha_is_leader(f[i]);
        gains += atomic_load(&w[i + 1].gains);
    }
    assert_int_equal(leaders, 1);
    assert_int_equal(gains, 1);
    for (int i = 0; i < 3; i++)
        stop(f[i]);
}

static void test_expiry_on_own_clock(void **state)
{
    (void)state;
    /* a holder that will never renew (a replica that died without releasing) */
    char now[40];
    pw_time_rfc3339_micro(pw_clock_real_ms(), now);
    json_t *obj = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s,s:i,s:s,s:s,s:i}}", "apiVersion", "coordination.k8s.io/v1",
                            "kind", "Lease", "metadata", "name", "prewarmd", "namespace", "prewarm", "spec",
                            "holderIdentity", "ghost", "leaseDurationSeconds", 3, "acquireTime", now, "renewTime",
                            now, "leaseTransitions", 4);
    int status = 0;
    json_t *resp = NULL;
    assert_int_equal(pw_k8s_request(E.client, "POST", "/apis/coordination.k8s.io/v1/namespaces/prewarm/leases", obj,
                                    NULL, &status, &resp),
                     0);
    assert_int_equal(status, 201);
    json_decref(obj);
    json_decref(resp);
    struct watcher w = {0};
    int64_t t0 = pw_clock_mono_ms();
    pw_ha *b = elector("replica-b", &w);
    int64_t took = wait_leader(b, true, 6000);
    assert_true(took >= 0);
    assert_true(pw_clock_mono_ms() - t0 >= 3000); /* not before the lease duration, as b saw it */
    json_t *l = get_lease();
    assert_string_equal(holder_of(l), "replica-b");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(l, "spec"), "leaseTransitions")), 5);
    json_decref(l);
    stop(b);
}

static void test_config(void **state)
{
    (void)state;
    pw_ha *h = NULL;
    struct pw_ha_config ok = {.client = E.client, .namespace_ = "prewarm", .name = "prewarmd", .identity = "x"};
    struct pw_ha_config c = ok;
    c.identity = "";
    assert_int_equal(pw_ha_new(&c, &h), PW_EINVAL);
    c = ok;
    c.renew_deadline_ms = 20000; /* not below the 15 s lease */
    assert_int_equal(pw_ha_new(&c, &h), PW_EINVAL);
    c = ok;
    c.retry_ms = 10000; /* not below the 10 s renew deadline */
    assert_int_equal(pw_ha_new(&c, &h), PW_EINVAL);
    assert_int_equal(pw_ha_new(NULL, &h), PW_EINVAL);
    assert_int_equal(pw_ha_new(&ok, &h), 0); /* the client-go defaults */
    assert_false(pw_ha_is_leader(h));
    pw_ha_free(h); /* never started */
    pw_ha_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_acquire_renew_follow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_step_down_when_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_race_one_winner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_on_own_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
