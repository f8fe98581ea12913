/* polint.h: the policy controller's insides, shared by its files (policy.c: the rounds; polapi.c:
 * the life cycle and the API calls; polenv.c: the engine's env). Not for other modules. */
#ifndef PW_POLICY_POLINT_H
#define PW_POLICY_POLINT_H

#include <pthread.h>

#include "policy/policy.h"
#include "policy/polspec.h"

#define PW_POLICY_KIND_SPEC "policy"
#define PW_POLICY_KIND_STATE "policy-state"

struct pol {
    struct pw_polspec spec;
    json_t *nodes;          /* node name -> entry (see the top) */
    json_t *tasks;          /* ids of the wave tasks not known to have ended */
    char *refresh_task;     /* the refresh task in flight, or NULL */
    char *current_task;     /* the last task created, or NULL */
    int64_t last_refresh_ms; /* wall ms; 0: never */
    int64_t created_ms, updated_ms;
    bool rescan;            /* compare every node with the selectors next round */
    bool dirty;             /* progress to write */
};

struct pw_policy {
    struct pw_policy_config cfg;
    struct pw_policy_env env;
    struct pw_policy_predictor pred; /* under mu */
    bool has_pred;

    pthread_mutex_t wmu;
    pthread_mutex_t mu;
    struct pol **v;
    size_t n;
    int64_t next_rescan;    /* mono ms */
    int64_t next_write;     /* mono ms */
    json_t *settle;         /* task ids to look at (ended, or reloaded): array */

    pthread_mutex_t qmu;
    pthread_cond_t qcond;
    json_t *q_nodes;        /* node names changed since the last round: object name -> true */
    json_t *q_done;         /* [{"task", "node"?, "state"?, "final"?}] */
    bool stopping, stopped;
    pthread_t th;
    bool started;
};

/* The policy named name (under mu), and its index in *idx (may be NULL); NULL when none. */
struct pol *pw_policy_find(pw_policy *pc, const char *name, size_t *idx);
void pw_policy_pol_free(struct pol *p);
/* The policy as the API shows it / its spec record as the store keeps it (under mu): new objects. */
json_t *pw_policy_pol_json(const struct pol *p);
json_t *pw_policy_spec_record(const struct pol *p);
/* Wakes the thread for a round. */
void pw_policy_wake(pw_policy *pc);
/* Writes the progress of the changed policies (takes wmu then mu; at most once a second unless force). */
void pw_policy_write_progress(pw_policy *pc, int64_t now, bool force);
/* The thread (pthread start routine; arg the pw_policy). */
void *pw_policy_loop(void *arg);
/* The env over the engine and the Kubernetes client of pc's config. */
void pw_policy_env_engine(pw_policy *pc, struct pw_policy_env *env);

#endif
