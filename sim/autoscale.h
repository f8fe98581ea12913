/* autoscale.h: kubesim's autoscaler stand-in (autoscale.c): a schedule of node additions in model
 * time, `/sim/v1/nodes/schedule` (POST adds entries, GET lists them, DELETE cancels the pending ones).
 * Each entry adds N nodes to a pool at model time T, optionally with startup taints the nodes register
 * with (e.g. prewarm.io/warming:NoSchedule, as Karpenter's startupTaints), NotReady for a delay and then
 * Ready (the kubelet starts, the not-ready taints go). Body and answers in docs/kubesim.md.
 *
 * Thread model: the handler takes world->lock; the timer runs on the world thread with it held. */
#ifndef SIM_AUTOSCALE_H
#define SIM_AUTOSCALE_H

#include "http/http.h"

struct sim_world;

/* The route "/sim/v1/nodes/schedule" (any method; ctx is the struct sim). */
void sim_autoscale_route(pw_http_req *req, void *ctx);
/* A timer of kind SIM_T_SCALE. */
void sim_autoscale_timer(struct sim_world *w, const char *key);
void sim_autoscale_fini(struct sim_world *w);

#endif
