/* syncer.h: prewarm-agent's side of the agent protocol (docs/agent.md): one long poll at a time,
 * POST <server>/agent/v1/sync (or /agent/v1/clusters/<cluster>/sync) with the agent's bearer token (its projected ServiceAccount token,
 * re-read from the file before every sync, so a rotated token is used at once). Each sync carries
 * the node name, the agent and runtime versions, the image filesystem's usage, the inventory (in full
 * on the first sync and whenever prewarmd asks, else what changed since the last sync prewarmd
 * answered; the runtime is listed after each change of the agent's own pulls and at least once a
 * minute) and the state of every assignment; the answer's assignments go to the puller. A change
 * in the puller (poke) ends the poll in flight, so a result reaches prewarmd at once. Failures back
 * off (1 s doubling to 10 s) and never end the loop; an unreachable runtime is reported, not fatal.
 *
 * Thread model: pw_syncer_poke from any thread; pw_syncer_run on one thread. */
#ifndef PW_AGENT_SYNCER_H
#define PW_AGENT_SYNCER_H

#include <signal.h>
#include <stdint.h>

#include "agent/cri.h"
#include "agent/puller.h"

typedef struct pw_syncer pw_syncer;

struct pw_syncer_config {
    const char *server;     /* "https://prewarm.prewarm.svc:8443" (copied) */
    const char *node;       /* this node's name (copied) */
    const char *cluster;    /* the cluster this node is in, as prewarmd names it (copied; NULL: prewarmd's
                             * first cluster): syncs go to /agent/v1/clusters/<cluster>/sync, whose
                             * TokenReview is that cluster's (docs/multicluster.md) */
    const char *token_file; /* the bearer token's file (copied; NULL: send none) */
    const char *token;      /* or the token itself (copied; kubesim's simulated agents) */
    const char *server_ca;  /* PEM file to verify an https server with (copied; NULL: the system's) */
    const char *version;    /* the agent's version (copied) */
    pw_cri *cri;            /* borrowed */
};

/* PW_EINVAL for a server that is not an http:// or https:// URL, or a cluster that is not a cluster
 * name (a DNS-1123 label). */
int pw_syncer_new(const struct pw_syncer_config *cfg, pw_syncer **out);
void pw_syncer_free(pw_syncer *s);
/* The puller to feed (set once, before run). */
void pw_syncer_set_puller(pw_syncer *s, pw_puller *p);
/* Something changed: report now (ends a poll in flight). */
void pw_syncer_poke(pw_syncer *s);
/* Syncs until *stop becomes non-zero: seen at once after pw_syncer_wake or a signal delivered to
 * the running thread (a signal interrupts the wait), else within a second. Returns 0. */
int pw_syncer_run(pw_syncer *s, const volatile sig_atomic_t *stop);
/* *stop was set: pw_syncer_run looks at it now (any thread; not from a signal handler). */
void pw_syncer_wake(pw_syncer *s);
/* Syncs answered by prewarmd (tests and logs). */
uint64_t pw_syncer_count(pw_syncer *s);

#endif
