/* api_binding.c: the pods/binding subresource (POST /api/v1/namespaces/{ns}/pods/{name}/binding), as
 * a scheduler binds a pod: a v1 Binding {metadata: {name, annotations?}, target: {kind: Node, name}}.
 * The real server's answers: 201 with a Success Status; 400 when the body's name is not the URL's;
 * 422 Invalid without target.name or with a target kind other than Node; 404 for a missing pod; 409
 * Conflict when the pod is already assigned or is being deleted. The node is not checked (a real API
 * server does not either). The write itself is sim_sched_bind (sched.c), the one the scheduler uses.
 *
 * Thread model: HTTP threads; only the store is touched. */
#include "sim/api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "sim/sched.h"

static void reply(struct rreq *r, int code, json_t *body)
{
    sim_api_stat(r->api, "create", "pods/binding", code);
    pw_http_reply_json(r->req, code, body);
}

static void invalid(struct rreq *r, const char *name, const char *field, const char *reason, const char *what)
{
    char *msg = pw_xasprintf("Binding \"%s\" is invalid: %s: %s", name, field, what);
    json_t *details = json_pack("{s:s, s:s, s:[{s:s, s:s, s:s}]}", "name", name, "kind", "Binding", "causes", "reason",
                                reason, "message", what, "field", field);
    reply(r, 422, sim_api_status_obj(422, "Invalid", msg, details));
    free(msg);
}

void sim_api_pod_binding(struct rreq *r)
{
    if (strcmp(pw_http_req_method(r->req), "POST") != 0) {
        sim_api_stat(r->api, "unknown", "pods/binding", 405);
        sim_api_status(r->req, 405, "MethodNotAllowed", "the server does not allow this method on the requested resource",
                       NULL);
        return;
    }
    size_t len = 0;
    const char *text = pw_http_req_body(r->req, &len);
    json_t *body = len ? json_loadb(text, len, 0, NULL) : NULL;
    if (!json_is_object(body)) {
        json_decref(body);
        reply(r, 400, sim_api_status_obj(400, "BadRequest",
                                         "the body of the request was in an unknown format - accepted media types "
                                         "include: application/json, application/yaml, "
                                         "application/vnd.kubernetes.protobuf",
                                         NULL));
        return;
    }
    json_t *md = json_object_get(body, "metadata");
    const char *bname = json_string_value(json_object_get(md, "name"));
    if (bname && *bname && strcmp(bname, r->name) != 0) {
        char *msg = pw_xasprintf("the name of the object (%s) does not match the name on the URL (%s)", bname, r->name);
        reply(r, 400, sim_api_status_obj(400, "BadRequest", msg, NULL));
        free(msg);
        json_decref(body);
        return;
    }
    json_t *target = json_object_get(body, "target");
    const char *kind = json_string_value(json_object_get(target, "kind"));
    const char *node = json_string_value(json_object_get(target, "name"));
    if (kind && *kind && strcmp(kind, "Node") != 0) {
        invalid(r, r->name, "target.kind", "FieldValueNotSupported", "must be empty or 'Node'");
        json_decref(body);
        return;
    }
    if (!node || !*node) {
        invalid(r, r->name, "target.name", "FieldValueRequired", "Required value");
        json_decref(body);
        return;
    }
    const char *uid = json_string_value(json_object_get(json_object_get(md, "preconditions"), "uid"));
    if (!uid)
        uid = json_string_value(json_object_get(md, "uid"));
    char *msg = NULL;
    int rc = sim_sched_bind(r->api->sim->store, r->ns, r->name, uid && *uid ? uid : NULL, node,
                            json_object_get(md, "annotations"), &msg);
    if (rc == 0) {
        reply(r, 201, json_pack("{s:s, s:s, s:{}, s:s, s:i}", "kind", "Status", "apiVersion", "v1", "metadata", "status",
                                "Success", "code", 201));
    } else if (rc == PW_ENOTFOUND) {
        char *m = pw_xasprintf("pods \"%s\" not found", r->name);
        reply(r, 404, sim_api_status_obj(404, "NotFound", m,
                                          json_pack("{s:s, s:s, s:s}", "name", r->name, "group", "", "kind", "pods")));
        free(m);
    } else if (rc == PW_ECONFLICT) {
        reply(r, 409, sim_api_status_obj(409, "Conflict", msg ? msg : "conflict",
                                          json_pack("{s:s, s:s, s:s}", "name", r->name, "group", "", "kind",
                                                    "pods/binding")));
    } else {
        reply(r, 500, sim_api_status_obj(500, "InternalError", pw_strerror(rc), NULL));
    }
    free(msg);
    json_decref(body);
}
