/* clusterconf.h: which clusters prewarmd serves (docs/multicluster.md): `--cluster
 * NAME=KUBECONFIG[#CONTEXT]` flags (repeatable) and the `--clusters-file` YAML, parsed and checked
 * (names, duplicates, fields) without touching a cluster. Loading the kubeconfigs is the fleet's
 * (fleet.h), so a bad context or an unreadable file is found there, before anything changes.
 *
 * The file:
 *   clusters:
 *     - name: eu-1                  # a DNS-1123 label, unique
 *       kubeconfig: /etc/prewarm/eu-1.yaml   # a path, or kubeconfigData: the file's text inline
 *       context: eu-1-admin         # optional: else the kubeconfig's current-context
 *       labels: {region: eu-west}   # optional: what clusterSelector matches
 *       qps: 50                     # optional: this cluster's client rate (else --kube-qps)
 *       burst: 100                  # optional (else --kube-burst)
 *       maxNodesInFlight: 200       # optional: this cluster's cap (never above --max-nodes-in-flight)
 *
 * Thread model: pure functions on the caller's structs. Ownership: a conf owns every string and
 * JSON value in it (pw_clusterconf_fini). */
#ifndef PW_CLUSTER_CLUSTERCONF_H
#define PW_CLUSTER_CLUSTERCONF_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define PW_CLUSTERCONF_MAX 64

struct pw_clusterdef {
    char *name;
    char *kubeconfig;      /* a path, or NULL */
    char *kubeconfig_data; /* the kubeconfig's text, or NULL (one of the two, or neither: the default
                            * loading rules, for the cluster of the single-cluster flags) */
    char *context;         /* NULL: current-context */
    json_t *labels;        /* object of strings (never NULL) */
    double qps;            /* 0: prewarmd's --kube-qps */
    int burst;             /* 0: --kube-burst */
    int max_in_flight;     /* 0: the engine's cap */
};

struct pw_clusterconf {
    struct pw_clusterdef *v;
    size_t n;
};

void pw_clusterdef_fini(struct pw_clusterdef *d);
void pw_clusterconf_fini(struct pw_clusterconf *c);
/* Whether s is a cluster name (a DNS-1123 label). */
bool pw_clusterconf_name_ok(const char *s);
/* One --cluster value "NAME=KUBECONFIG[#CONTEXT]" into *out. 0, or PW_EINVAL with *errmsg. */
int pw_clusterconf_parse_flag(const char *text, struct pw_clusterdef *out, char **errmsg);
/* Appends d (taken: *d is left empty) to c. PW_EINVAL with *errmsg for a duplicate name or too
 * many clusters (d is then freed). */
int pw_clusterconf_add(struct pw_clusterconf *c, struct pw_clusterdef *d, char **errmsg);
/* The clusters file's text (what names it in messages) into *out (appended to). 0, or PW_EINVAL
 * with *errmsg naming the entry and field; *out is then as before. */
int pw_clusterconf_parse_yaml(const char *text, size_t len, const char *what, struct pw_clusterconf *out,
                              char **errmsg);
/* Reads and parses the file at path. PW_EIO/PW_EINVAL with *errmsg. */
int pw_clusterconf_load_file(const char *path, struct pw_clusterconf *out, char **errmsg);
/* Takes every "--cluster VALUE" / "--cluster=VALUE" out of argv (argc updated, order kept) into
 * *out. 0, or PW_EINVAL with *errmsg (a missing value, a bad one, a duplicate name). */
int pw_clusterconf_take_flags(int *argc, char **argv, struct pw_clusterconf *out, char **errmsg);
/* Whether a and b describe the same cluster connection (kubeconfig, context, rate). */
bool pw_clusterdef_same_connection(const struct pw_clusterdef *a, const struct pw_clusterdef *b);

#endif
