/* rbac_pb.h: protobuf request bodies of the RBAC and review kinds, turned into the JSON documents
 * kubesim works on. kubectl's typed commands (`kubectl create rolebinding`, `create clusterrole`,
 * `auth can-i` in some versions) send application/vnd.kubernetes.protobuf; the fields are those of
 * k8s.io/api's generated.proto (rbac/v1, authorization/v1, authentication/v1), read by schema
 * tables: ObjectMeta (name, generateName, namespace, resourceVersion, labels, annotations), Role and
 * ClusterRole rules and aggregationRule, bindings' subjects and roleRef, the access reviews' spec.
 * Fields not in the tables are skipped, as they are not needed to create these objects.
 *
 * Thread model: pure functions over borrowed bytes. */
#ifndef SIM_RBAC_PB_H
#define SIM_RBAC_PB_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* True when the Content-Type (may be NULL) is application/vnd.kubernetes.protobuf (with parameters). */
bool sim_rbac_pb_content(const char *ctype);

/* True when kind ("RoleBinding", ...) has a table here. */
bool sim_rbac_pb_known(const char *kind);

/* The body (the "k8s\0" envelope) as a JSON object with apiVersion and kind set to api_version and
 * kind: a new object, or NULL when it is malformed, not UTF-8, or of another kind. */
json_t *sim_rbac_pb_decode(const char *kind, const char *api_version, const void *body, size_t len);

#endif
