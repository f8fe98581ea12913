/* fuzz_agentsync.c: POST /agent/v1/sync bodies (docs/agent.md) as the agent listener takes them:
 * the API codec's pw_api_parse_json, pw_agentexec_sync_validate (what agents.c checks before it
 * answers), then pw_agentexec_sync on a fresh agent executor that has one work dispatched to node
 * n1 (task t-fuzz, images a:1 and b:2), so reported results meet real assignments. Their ids are
 * pw_agentexec_assignment_id(...) and appear in the seed corpus. */
#include <jansson.h>

#include "api/api.h"
#include "engine/agentexec.h"
#include "fuzz.h"

static void on_report(void *arg, const struct pw_exec_report *r)
{
    (void)arg;
    if (!r->task_id || !r->node)
        abort();
}

static void on_answer(void *arg, json_t *resp)
{
    int *answered = arg;
    if (!json_is_object(resp))
        abort();
    (*answered)++;
    json_decref(resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = NULL, *err = NULL;
    if (pw_api_parse_json("application/json", (const char *)data, size, &body, &err) != 0) {
        json_decref(err);
        return 0;
    }
    struct pw_field_errors errs;
    int valid = pw_agentexec_sync_validate(body, &errs);
    if ((valid == 0) != (errs.n == 0))
        abort();
    struct pw_agentexec_config cfg = {
        .settings = {.enabled = true, .poll_ms = 1000},
        .hooks = {.report = on_report},
        .namespace_ = "prewarm",
    };
    pw_executor *x = NULL;
    if (pw_agentexec_new(&cfg, &x) != 0)
        abort();
    static const char *const images[] = {"a:1", "b:2"};
    struct pw_exec_work w = {
        .task_id = "t-fuzz", .node = "n1", .images = images, .n_images = 2, .pull_policy = "IfNotPresent",
        .retries = 1, .timeout_s = 600,
    };
    pw_executor_dispatch(x, &w);
    int answered = 0;
    int rc = pw_agentexec_sync(x, "n1", body, on_answer, &answered, &errs);
    if ((rc == 0) != (valid == 0))
        abort(); /* the handler's check and the sync must agree */
    json_decref(pw_agentexec_list(x));
    pw_executor_free(x); /* answers a held sync */
    if (rc == 0 && answered != 1)
        abort(); /* exactly once */
    json_decref(body);
    return 0;
}
