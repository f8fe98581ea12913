/* leader.c: GET /api/v1/leader and the leadership metrics (prewarm_leader, prewarm_leader_changes_total)
 * from the elector's status (ha.h). Without leader election the replica is the leader of one. */
#include <string.h>

#include "api/api.h"
#include "base/clock.h"
#include "base/mem.h"
#include "ha/ha.h"
#include "metrics/metrics.h"

static json_t *leader_json(pw_ha *ha)
{
    if (!ha)
        return json_pack("{s:b,s:b}", "leaderElection", 0, "leading", 1);
    struct pw_ha_status st;
    pw_ha_status(ha, &st);
    char since[40];
    pw_time_rfc3339_micro(st.since_ms, since);
    json_t *o = json_pack("{s:b,s:s,s:b,s:s,s:s,s:I,s:I}", "leaderElection", 1, "identity", st.identity, "leading",
                          st.leading, "holder", st.holder, "since", since, "leaseTransitions",
                          (json_int_t)st.lease_transitions, "changes", (json_int_t)st.changes);
    if (*st.acquire_time)
        json_object_set_new(o, "acquireTime", json_string(st.acquire_time));
    if (*st.renew_time)
        json_object_set_new(o, "renewTime", json_string(st.renew_time));
    json_object_set_new(o, "lease",
                        json_pack("{s:s,s:s,s:f,s:f,s:f}", "namespace", st.lease_namespace, "name", st.lease_name,
                                  "durationSeconds", st.lease_ms / 1000.0, "renewDeadlineSeconds",
                                  st.renew_deadline_ms / 1000.0, "retryPeriodSeconds", st.retry_ms / 1000.0));
    return o;
}

void pw_api_h_leader(pw_http_req *req, void *ctx)
{
    pw_http_reply_json(req, 200, leader_json(((struct pw_api_ctx *)ctx)->ha));
}

struct pw_api_leader_metrics {
    pw_ha *ha;
    pw_metric *leader, *changes;
};

static void collect(void *arg)
{
    struct pw_api_leader_metrics *m = arg;
    struct pw_ha_status st;
    if (m->ha)
        pw_ha_status(m->ha, &st);
    pw_metric_set(m->leader, NULL, m->ha ? st.leading : 1);
    pw_metric_set(m->changes, NULL, m->ha ? (double)st.changes : 0);
}

pw_api_leader_metrics *pw_api_leader_metrics_new(pw_ha *ha)
{
    pw_api_leader_metrics *m = pw_xcalloc(1, sizeof *m);
    m->ha = ha;
    pw_metrics *r = pw_metrics_default();
    m->leader = pw_metrics_gauge(r, "prewarm_leader",
                                 "1 while this replica leads (dispatches work), else 0; 1 without --leader-elect.", NULL);
    m->changes = pw_metrics_counter(r, "prewarm_leader_changes_total",
                                    "Times this replica gained or lost leadership (--leader-elect).", NULL);
    pw_metrics_add_collector(r, collect, m);
    return m;
}

void pw_api_leader_metrics_free(pw_api_leader_metrics *m)
{
    if (!m)
        return;
    pw_metrics_remove_collector(pw_metrics_default(), collect, m);
    free(m);
}
