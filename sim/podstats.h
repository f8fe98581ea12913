/* podstats.h: what workload pods experienced (podstats.c), for /sim/v1/stats: per pool, pods started,
 * the image hit rate (pods that started without pulling any image), start latency (creation to every
 * container started, model seconds, image pulls included) p50/p95, bytes pulled (by workload pods and by
 * everything else: prewarm's Job pods and agents) and the waste (bytes pulled by everything else onto a
 * node for an image no workload pod then ran on that node). A workload pod is one with the label
 * sim.prewarm.io/workload (the generator's; any pod may carry it); its pool is the value of its
 * nodeSelector's single key, and that key names the pool of the nodes other pulls land on.
 *
 * Thread model: hooks on the world thread with world->lock held; sim_podstats_add takes the lock. */
#ifndef SIM_PODSTATS_H
#define SIM_PODSTATS_H

#include <stdbool.h>

#include <jansson.h>

#include "http/http.h"
#include "sim/sim.h"

struct sim_world;
struct sim_change;
struct sim_model_evt;
struct sim_wnode;
struct sim_image;

/* One container of a pod that started: its image (NULL when not in the catalogue) and whether the
 * kubelet pulled it (false: already present on the node). */
struct sim_podstats_cont {
    const struct sim_image *img;
    bool pulled;
};

void sim_podstats_on_pod(struct sim_world *w, const struct sim_change *ch);
/* A model pull event (before the kubelet or an agent frees what its cookie points to). */
void sim_podstats_on_pull(struct sim_world *w, const struct sim_model_evt *e);
/* The kubelet started every container of pod key ("ns/name") on node n. */
void sim_podstats_started(struct sim_world *w, const char *key, const struct sim_wnode *n,
                          const struct sim_podstats_cont *c, int nc);
/* Adds "modelSeconds", "pools" (and with ?pods=true "pods", one record per started workload pod) to
 * the /sim/v1/stats answer out; a DELETE resets the figures after answering them. */
void sim_podstats_add(struct sim *sim, pw_http_req *req, json_t *out);
void sim_podstats_fini(struct sim_world *w);

#endif
