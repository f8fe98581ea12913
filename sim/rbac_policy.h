/* rbac_policy.h: the RBAC objects a real cluster starts with, and the ClusterRole aggregation
 * controller of kube-controller-manager (pkg/controller/clusterroleaggregation).
 *
 * Bootstrap (as kube-apiserver's storage_rbac post-start hook, the subset that matters to kubesim's
 * resources): ClusterRoles cluster-admin (everything; bound to the group system:masters),
 * system:discovery and system:public-info-viewer (the discovery and health paths; bound to
 * system:authenticated, the latter also to system:unauthenticated), system:basic-user (self subject
 * access and self subject reviews; system:authenticated), and the user-facing admin, edit and view,
 * which aggregate the ClusterRoles labelled rbac.authorization.k8s.io/aggregate-to-admin,
 * -to-edit and -to-view ("true"); edit is itself labelled aggregate-to-admin and view
 * aggregate-to-edit, and system:aggregate-to-admin/-edit/-view carry the real rules for the
 * resources kubesim serves. Every bootstrapped object carries the label
 * kubernetes.io/bootstrapping: rbac-defaults and the annotation
 * rbac.authorization.kubernetes.io/autoupdate: "true".
 *
 * Aggregation: a ClusterRole with aggregationRule.clusterRoleSelectors gets as its rules the rules
 * of every other ClusterRole that one of the selectors matches (selector by selector, roles in name
 * order, duplicate rules once), written only when they differ from what it holds.
 *
 * Thread model: sim_rbac_bootstrap and sim_rbac_aggregate are safe from any thread (they only use the
 * store). The controller runs one thread of its own; start and stop it from one thread. */
#ifndef SIM_RBAC_POLICY_H
#define SIM_RBAC_POLICY_H

#include "sim/store.h"

/* Creates the default ClusterRoles and ClusterRoleBindings that do not exist yet (existing ones are
 * left alone, as a restarted API server with autoupdate would reconcile only missing ones here).
 * Never fails. */
void sim_rbac_bootstrap(sim_store *st);

/* Brings every aggregated ClusterRole up to date (repeats until nothing changes, at most 16 passes:
 * aggregated roles aggregate each other). Returns how many roles it wrote. */
int sim_rbac_aggregate(sim_store *st);

typedef struct sim_rbac_ctl sim_rbac_ctl;

/* Starts the aggregation controller on st: it aggregates once, then after every ClusterRole change.
 * *out gets the controller. 0, or PW_ENOMEM when its thread cannot start (nothing left running). */
int sim_rbac_ctl_start(sim_store *st, sim_rbac_ctl **out);
/* Stops and frees the controller (waits for its thread). NULL: no-op. */
void sim_rbac_ctl_stop(sim_rbac_ctl *c);

#endif
