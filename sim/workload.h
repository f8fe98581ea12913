/* workload.h: kubesim's workload generator (workload.c), `/sim/v1/workload`: per pool (a node label
 * value), pods arrive as a Poisson process in model time, each with one image drawn from the pool's
 * images by a Zipf popularity (rank k with probability k^-s / sum), the pool's resource requests and a
 * nodeSelector on the pool label, without spec.nodeName (the scheduler places them); each is deleted
 * its lifetime after it started running. Body and answers in docs/kubesim.md.
 *
 * Thread model: handlers take world->lock; hooks and timers run on the world thread with it held. */
#ifndef SIM_WORKLOAD_H
#define SIM_WORKLOAD_H

#include <stdint.h>

#include "http/http.h"

/* ---- Zipf sampling (pure) ---- */
struct sim_zipf;
/* n ranks (>= 1), exponent s (>= 0; 0 is uniform). NULL for bad arguments. */
struct sim_zipf *sim_zipf_new(int n, double s);
void sim_zipf_free(struct sim_zipf *z);
/* The probability of rank index k (0-based). */
double sim_zipf_prob(const struct sim_zipf *z, int k);
/* The rank index (0-based) for a uniform u in [0, 1). */
int sim_zipf_sample(const struct sim_zipf *z, double u);
/* A uniform double in [0, 1) from a splitmix64 state (advanced). */
double sim_unit_rand(uint64_t *state);

/* ---- the world's hooks ---- */
struct sim_world;
struct sim_change;
/* The route "/sim/v1/workload" (any method; ctx is the struct sim). */
void sim_workload_route(pw_http_req *req, void *ctx);
void sim_workload_on_pod(struct sim_world *w, const struct sim_change *ch);
/* A timer of kind SIM_T_WORKLOAD. */
void sim_workload_timer(struct sim_world *w, const char *key);
void sim_workload_fini(struct sim_world *w);

#endif
