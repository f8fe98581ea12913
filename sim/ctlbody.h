/* ctlbody.h: request bodies and errors of the test-control endpoints that sched.c's neighbours serve
 * (workload.c, autoscale.c): a JSON object body, a 400 {"error": ...} naming the field, unknown fields
 * refused. Thread model: any thread. */
#ifndef SIM_CTLBODY_H
#define SIM_CTLBODY_H

#include <stdbool.h>

#include <jansson.h>

#include "http/http.h"

/* Replies status with {"error": message} (printf format). */
void sim_ctl_error(pw_http_req *req, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The body as a JSON object (a new reference; an empty body is {}), or NULL after replying 400. */
json_t *sim_ctl_body(pw_http_req *req);
/* True when every key of obj is in allowed (NULL-terminated); else replies 400 naming
 * "<where><key>" and returns false. */
bool sim_ctl_known_fields(pw_http_req *req, const json_t *obj, const char *const *allowed, const char *where);
/* A number field: absent -> def; not a number or outside [min, max] -> replies 400 naming
 * "<where><key>" and returns false. */
bool sim_ctl_number(pw_http_req *req, const json_t *obj, const char *key, double min, double max, double def,
                    const char *where, double *out);

/* Calls post, get or del (each may be NULL) by the request's method, else replies 405 naming path. */
typedef void (*sim_ctl_fn)(pw_http_req *req, void *arg);
void sim_ctl_methods(pw_http_req *req, void *arg, sim_ctl_fn post, sim_ctl_fn get, sim_ctl_fn del, const char *path);

#endif
