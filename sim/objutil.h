/* objutil.h: small read-only helpers on Kubernetes objects (jansson values) shared by kubesim's API
 * server and its controllers. Thread model: pure functions over borrowed values. */
#ifndef SIM_OBJUTIL_H
#define SIM_OBJUTIL_H

#include <stdbool.h>

#include <jansson.h>

#include "base/buf.h"

/* True when obj.status.conditions has an entry of this type whose status is "True" (a Job's Complete,
 * Failed, ...; a Pod's Ready). obj may be NULL or lack conditions (false then). */
bool sim_obj_has_condition(const json_t *obj, const char *type);

/* Appends s quoted as Go's %q does for the strings the real messages carry (", \\ and control bytes
 * escaped), as the API server's messages quote names. */
void sim_go_quote(pw_buf *b, const char *s);

#endif
