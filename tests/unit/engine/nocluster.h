/* nocluster.h: for unit tests whose engine must see no cluster at all: a Kubernetes client of an
 * API server that never answers (127.0.0.1:9, where nothing listens on loopback), so the engine's
 * node informer keeps retrying and never syncs. Such an engine accepts, lists and cancels tasks,
 * which stay pending (nothing starts before the node cache is complete), and is not ready. With a
 * fake executor (fakeexec.h) nothing is ever sent anywhere. */
#ifndef PW_TESTS_NOCLUSTER_H
#define PW_TESTS_NOCLUSTER_H

#include "engine/engine.h"
#include "k8s/k8s.h"

struct pw_nocluster {
    pw_k8s_config *kcfg;
    pw_k8s_client *client;
    pw_executor *fakes[2]; /* the engine's fake executors (borrowed: the engine frees them) */
};

/* Fills nc (0, or a PW_E* with nothing to free). */
int pw_nocluster_init(struct pw_nocluster *nc);
/* cfg's client and executors: nc's client and fake executors. */
void pw_nocluster_apply(struct pw_nocluster *nc, struct pw_engine_config *cfg);
/* Frees the client (after the engine). */
void pw_nocluster_fini(struct pw_nocluster *nc);

#endif
