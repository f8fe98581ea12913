/* api_rest.c: the REST verbs of kubesim's API server (get, list, create, update, patch, delete,
 * deletecollection; watch is handed to api_watch.c), the built-in resource table with each resource's
 * validation, defaults, field selectors and Table columns, and the Status bodies real servers send.
 *
 * Writes go through sim_store_mutate() so a read-modify-write (status rules, patches, preconditions)
 * is atomic with respect to the controllers writing the same object. */
#include "sim/api_int.h"
#include "sim/objutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/b64.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/mem.h"
#include "base/sv.h"

/* ---- validation helpers ---- */

static void cause(json_t *causes, const char *reason, const char *field, const char *message)
{
    json_array_append_new(causes, json_pack("{s:s, s:s, s:s}", "reason", reason, "message", message, "field", field));
}

static void cause_required(json_t *causes, const char *field, const char *detail)
{
    char *m = detail ? pw_xasprintf("Required value: %s", detail) : pw_xstrdup("Required value");
    cause(causes, "FieldValueRequired", field, m);
    free(m);
}

static void cause_invalid(json_t *causes, const char *field, const char *value, const char *detail)
{
    char *m = pw_xasprintf("Invalid value: \"%s\": %s", value, detail);
    cause(causes, "FieldValueInvalid", field, m);
    free(m);
}

static const char SUBDOMAIN_MSG[] =
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
static const char LABEL_MSG[] =
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

static void validate_meta(const struct rdef *rd, const json_t *obj, json_t *causes)
{
    json_t *m = json_object_get(obj, "metadata");
    const char *name = json_string_value(json_object_get(m, "name"));
    const char *gen = json_string_value(json_object_get(m, "generateName"));
    bool label_names = strcmp(rd->plural, "namespaces") == 0;
    if ((!name || !*name) && (!gen || !*gen)) {
        cause_required(causes, "metadata.name", "name or generateName is required");
    } else if (name && *name) {
        bool ok = label_names ? pw_dns1123_label(name) : pw_dns1123_subdomain(name);
        if (!ok)
            cause_invalid(causes, "metadata.name", name, label_names ? LABEL_MSG : SUBDOMAIN_MSG);
    } else {
        /* generateName: the prefix plus 5 characters must make a valid name */
        char probe[300];
        snprintf(probe, sizeof(probe), "%.58sx", gen);
        bool ok = label_names ? pw_dns1123_label(probe) : pw_dns1123_subdomain(probe);
        if (!ok)
            cause_invalid(causes, "metadata.generateName", gen, label_names ? LABEL_MSG : SUBDOMAIN_MSG);
    }
    json_t *labels = json_object_get(m, "labels");
    const char *k;
    json_t *v;
    json_object_foreach(labels, k, v)
    {
        char *why = NULL;
        if (pw_label_key_valid(k, &why) != 0) {
            cause_invalid(causes, "metadata.labels", k, why);
            free(why);
            continue;
        }
        if (!json_is_string(v) && !json_is_null(v)) {
            cause_invalid(causes, "metadata.labels", k, "label values must be strings");
            continue;
        }
        if (pw_label_value_valid(json_string_value(v), &why) != 0) {
            cause_invalid(causes, "metadata.labels", json_string_value(v), why);
            free(why);
        }
    }
    json_object_foreach(json_object_get(m, "annotations"), k, v)
    {
        char *why = NULL;
        if (pw_label_key_valid(k, &why) != 0) {
            cause_invalid(causes, "metadata.annotations", k, why);
            free(why);
        }
    }
}

static void validate_containers(const json_t *list, const char *path, bool required, json_t *causes)
{
    char f[256];
    if (json_array_size(list) == 0) {
        if (required)
            cause_required(causes, path, NULL);
        return;
    }
    size_t i, j;
    json_t *c, *d;
    json_array_foreach(list, i, c)
    {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *image = json_string_value(json_object_get(c, "image"));
        snprintf(f, sizeof(f), "%s[%zu].name", path, i);
        if (!name || !*name)
            cause_required(causes, f, NULL);
        else if (!pw_dns1123_label(name))
            cause_invalid(causes, f, name, LABEL_MSG);
        else
            json_array_foreach(list, j, d) if (j < i && json_equal(json_object_get(d, "name"), json_object_get(c, "name")))
            {
                char *m = pw_xasprintf("Duplicate value: \"%s\"", name);
                cause(causes, "FieldValueDuplicate", f, m);
                free(m);
                break;
            }
        snprintf(f, sizeof(f), "%s[%zu].image", path, i);
        if (!image || !*image)
            cause_required(causes, f, NULL);
    }
}

static void validate_pod_spec(const json_t *spec, const char *path, bool job, json_t *causes)
{
    char f[256];
    snprintf(f, sizeof(f), "%s.containers", path);
    validate_containers(json_object_get(spec, "containers"), f, true, causes);
    snprintf(f, sizeof(f), "%s.initContainers", path);
    validate_containers(json_object_get(spec, "initContainers"), f, false, causes);
    const char *rp = json_string_value(json_object_get(spec, "restartPolicy"));
    snprintf(f, sizeof(f), "%s.restartPolicy", path);
    if (job) {
        const char *v = rp && *rp ? rp : "Always";
        if (strcmp(v, "OnFailure") != 0 && strcmp(v, "Never") != 0) {
            char *m = pw_xasprintf("Unsupported value: \"%s\": supported values: \"OnFailure\", \"Never\"", v);
            cause(causes, "FieldValueNotSupported", f, m);
            free(m);
        }
    } else if (rp && strcmp(rp, "Always") != 0 && strcmp(rp, "OnFailure") != 0 && strcmp(rp, "Never") != 0) {
        char *m = pw_xasprintf("Unsupported value: \"%s\": supported values: \"Always\", \"OnFailure\", \"Never\"", rp);
        cause(causes, "FieldValueNotSupported", f, m);
        free(m);
    }
}

static void v_pod(const struct rdef *rd, const json_t *obj, json_t *causes)
{
    (void)rd;
    validate_pod_spec(json_object_get(obj, "spec"), "spec", false, causes);
}

static void v_job(const struct rdef *rd, const json_t *obj, json_t *causes)
{
    (void)rd;
    json_t *spec = json_object_get(obj, "spec");
    json_t *tmpl = json_object_get(spec, "template");
    validate_pod_spec(json_object_get(tmpl, "spec"), "spec.template.spec", true, causes);
    static const char *const NONNEG[] = {"backoffLimit", "parallelism", "completions", "activeDeadlineSeconds",
                                         "ttlSecondsAfterFinished"};
    for (size_t i = 0; i < sizeof(NONNEG) / sizeof(NONNEG[0]); i++) {
        json_t *v = json_object_get(spec, NONNEG[i]);
        if (json_is_integer(v) && json_integer_value(v) < 0) {
            char f[64], val[32];
            snprintf(f, sizeof(f), "spec.%s", NONNEG[i]);
            snprintf(val, sizeof(val), "%lld", (long long)json_integer_value(v));
            char *m = pw_xasprintf("Invalid value: %s: must be greater than or equal to 0", val);
            cause(causes, "FieldValueInvalid", f, m);
            free(m);
        }
    }
}

static void v_ds(const struct rdef *rd, const json_t *obj, json_t *causes)
{
    (void)rd;
    json_t *tmpl = json_object_get(json_object_get(obj, "spec"), "template");
    validate_pod_spec(json_object_get(tmpl, "spec"), "spec.template.spec", false, causes);
}

static void v_crd(const struct rdef *rd, const json_t *obj, json_t *causes)
{
    (void)rd;
    json_t *spec = json_object_get(obj, "spec");
    const char *group = json_string_value(json_object_get(spec, "group"));
    json_t *names = json_object_get(spec, "names");
    const char *plural = json_string_value(json_object_get(names, "plural"));
    if (!group || !*group)
        cause_required(causes, "spec.group", NULL);
    if (!plural || !*plural)
        cause_required(causes, "spec.names.plural", NULL);
    if (!json_string_value(json_object_get(names, "kind")))
        cause_required(causes, "spec.names.kind", NULL);
    if (json_array_size(json_object_get(spec, "versions")) == 0)
        cause_required(causes, "spec.versions", "must have exactly one version marked as storage version");
    const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
    if (group && plural && name) {
        char *want = pw_xasprintf("%s.%s", plural, group);
        if (strcmp(want, name) != 0)
            cause_invalid(causes, "metadata.name", name, "must be spec.names.plural+\".\"+spec.group");
        free(want);
    }
}

/* ---- defaults ---- */

static json_t *obj_child(json_t *o, const char *key)
{
    json_t *c = json_object_get(o, key);
    if (!json_is_object(c)) {
        c = json_object();
        json_object_set_new(o, key, c);
    }
    return c;
}

static void set_default(json_t *o, const char *key, json_t *v)
{
    if (!json_object_get(o, key))
        json_object_set_new(o, key, v);
    else
        json_decref(v);
}

static void container_defaults(json_t *list)
{
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        const char *image = json_string_value(json_object_get(c, "image"));
        const char *policy = "IfNotPresent";
        if (image) {
            const char *slash = strrchr(image, '/');
            const char *last = slash ? slash + 1 : image;
            const char *colon = strchr(last, ':');
            if (!strchr(last, '@') && (!colon || strcmp(colon, ":latest") == 0))
                policy = "Always";
        }
        set_default(c, "imagePullPolicy", json_string(policy));
        set_default(c, "terminationMessagePath", json_string("/dev/termination-log"));
        set_default(c, "terminationMessagePolicy", json_string("File"));
        set_default(c, "resources", json_object());
    }
}

static void pod_spec_defaults(json_t *spec, bool is_template)
{
    if (!is_template)
        set_default(spec, "restartPolicy", json_string("Always"));
    set_default(spec, "dnsPolicy", json_string("ClusterFirst"));
    set_default(spec, "schedulerName", json_string("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json_integer(30));
    set_default(spec, "securityContext", json_object());
    container_defaults(json_object_get(spec, "containers"));
    container_defaults(json_object_get(spec, "initContainers"));
}

static void d_pod(struct sim *sim, const struct rdef *rd, json_t *obj)
{
    (void)sim, (void)rd;
    json_t *spec = obj_child(obj, "spec");
    pod_spec_defaults(spec, false);
    set_default(spec, "serviceAccountName", json_string("default"));
    set_default(spec, "enableServiceLinks", json_true());
    set_default(spec, "preemptionPolicy", json_string("PreemptLowerPriority"));
    set_default(spec, "priority", json_integer(0));
    json_object_set_new(obj, "status", json_pack("{s:s, s:s}", "phase", "Pending", "qosClass", "BestEffort"));
}

static void d_job(struct sim *sim, const struct rdef *rd, json_t *obj)
{
    (void)sim, (void)rd;
    json_t *m = obj_child(obj, "metadata");
    json_t *spec = obj_child(obj, "spec");
    const char *uid = json_string_value(json_object_get(m, "uid"));
    const char *name = json_string_value(json_object_get(m, "name"));
    set_default(spec, "backoffLimit", json_integer(6));
    set_default(spec, "parallelism", json_integer(1));
    set_default(spec, "completions", json_integer(1));
    set_default(spec, "completionMode", json_string("NonIndexed"));
    set_default(spec, "suspend", json_false());
    set_default(spec, "podReplacementPolicy", json_string("TerminatingOrFailed"));
    set_default(spec, "manualSelector", json_false());
    json_t *tmpl = obj_child(spec, "template");
    json_t *tm = obj_child(tmpl, "metadata");
    json_t *tl = obj_child(tm, "labels");
    if (uid && name && !json_is_true(json_object_get(spec, "manualSelector"))) {
        json_object_set_new(tl, "controller-uid", json_string(uid));
        json_object_set_new(tl, "job-name", json_string(name));
        json_object_set_new(tl, "batch.kubernetes.io/controller-uid", json_string(uid));
        json_object_set_new(tl, "batch.kubernetes.io/job-name", json_string(name));
        if (!json_object_get(spec, "selector"))
            json_object_set_new(spec, "selector",
                                json_pack("{s:{s:s}}", "matchLabels", "batch.kubernetes.io/controller-uid", uid));
    }
    json_t *labels = json_object_get(m, "labels");
    if (!json_is_object(labels) || json_object_size(labels) == 0)
        json_object_set(m, "labels", tl);
    pod_spec_defaults(obj_child(tmpl, "spec"), true);
    json_object_set_new(obj, "status", json_object());
}

static void d_ds(struct sim *sim, const struct rdef *rd, json_t *obj)
{
    (void)sim, (void)rd;
    json_t *spec = obj_child(obj, "spec");
    json_t *tspec = obj_child(obj_child(spec, "template"), "spec");
    pod_spec_defaults(tspec, true);
    set_default(tspec, "restartPolicy", json_string("Always"));
    set_default(spec, "revisionHistoryLimit", json_integer(10));
    set_default(spec, "updateStrategy",
                json_pack("{s:s, s:{s:i, s:i}}", "type", "RollingUpdate", "rollingUpdate", "maxUnavailable", 1,
                          "maxSurge", 0));
    json_object_set_new(obj, "status", json_pack("{s:i, s:i, s:i, s:i}", "currentNumberScheduled", 0,
                                                 "desiredNumberScheduled", 0, "numberMisscheduled", 0, "numberReady", 0));
}

static void d_ns(struct sim *sim, const struct rdef *rd, json_t *obj)
{
    (void)sim, (void)rd;
    json_t *m = obj_child(obj, "metadata");
    const char *name = json_string_value(json_object_get(m, "name"));
    if (name)
        json_object_set_new(obj_child(m, "labels"), "kubernetes.io/metadata.name", json_string(name));
    set_default(obj_child(obj, "spec"), "finalizers", json_pack("[s]", "kubernetes"));
    json_object_set_new(obj, "status", json_pack("{s:s}", "phase", "Active"));
}

static void d_secret(struct sim *sim, const struct rdef *rd, json_t *obj)
{
    (void)sim, (void)rd;
    set_default(obj, "type", json_string("Opaque"));
}

static void d_crd(struct sim *sim, const struct rdef *rd, json_t *obj)
{
    (void)sim, (void)rd;
    char now[32];
    sim_api_now_rfc3339(now);
    json_t *spec = obj_child(obj, "spec");
    json_t *names = obj_child(spec, "names");
    const char *kind = json_string_value(json_object_get(names, "kind"));
    const char *plural = json_string_value(json_object_get(names, "plural"));
    if (kind && !json_object_get(names, "listKind")) {
        char *lk = pw_xasprintf("%sList", kind);
        json_object_set_new(names, "listKind", json_string(lk));
        free(lk);
    }
    if (plural && !json_object_get(names, "singular") && kind) {
        char *s = pw_xstrdup(kind);
        for (char *p = s; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        json_object_set_new(names, "singular", json_string(s));
        free(s);
    }
    set_default(spec, "scope", json_string("Namespaced"));
    json_t *stored = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(spec, "versions"), i, v) if (json_is_true(json_object_get(v, "storage")))
        json_array_append(stored, json_object_get(v, "name"));
    json_object_set_new(
        obj, "status",
        json_pack("{s:O, s:[{s:s, s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s, s:s}], s:o}", "acceptedNames", names,
                  "conditions", "type", "NamesAccepted", "status", "True", "lastTransitionTime", now, "reason",
                  "NoConflicts", "message", "no conflicts found", "type", "Established", "status", "True",
                  "lastTransitionTime", now, "reason", "InitialNamesAccepted", "message",
                  "the initial names have been accepted", "storedVersions", stored));
}

/* ---- Table output ---- */

static void human_age(int64_t secs, char *out, size_t n)
{
    if (secs < -1) {
        snprintf(out, n, "<invalid>");
        return;
    }
    if (secs < 0)
        secs = 0;
    int64_t m = secs / 60, h = secs / 3600, d = h / 24, y = d / 365;
    if (secs < 120)
        snprintf(out, n, "%llds", (long long)secs);
    else if (m < 10 && secs % 60)
        snprintf(out, n, "%lldm%llds", (long long)m, (long long)(secs % 60));
    else if (m < 10)
        snprintf(out, n, "%lldm", (long long)m);
    else if (h < 3)
        snprintf(out, n, "%lldm", (long long)m);
    else if (h < 8 && m % 60)
        snprintf(out, n, "%lldh%lldm", (long long)h, (long long)(m % 60));
    else if (h < 48)
        snprintf(out, n, "%lldh", (long long)h);
    else if (h < 192 && h % 24)
        snprintf(out, n, "%lldd%lldh", (long long)d, (long long)(h % 24));
    else if (y < 2)
        snprintf(out, n, "%lldd", (long long)d);
    else if (y < 8 && d % 365)
        snprintf(out, n, "%lldy%lldd", (long long)y, (long long)(d % 365));
    else
        snprintf(out, n, "%lldy", (long long)y);
}

static json_t *age_cell(const json_t *obj, int64_t now_s)
{
    const char *ts = json_string_value(json_object_get(json_object_get(obj, "metadata"), "creationTimestamp"));
    time_t t;
    if (!ts || pw_time_parse_rfc3339(ts, &t) != 0)
        return json_string("<unknown>");
    char b[32];
    human_age(now_s - (int64_t)t, b, sizeof(b));
    return json_string(b);
}

static json_t *coldef(const char *name, const char *type, const char *format, const char *desc, int prio)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:i}", "name", name, "type", type, "format", format, "description", desc,
                     "priority", prio);
}

static json_t *col_name(void)
{
    return coldef("Name", "string", "name",
                  "Name must be unique within a namespace. Is required when creating resources, although some "
                  "resources may allow a client to request the generation of an appropriate name automatically.",
                  0);
}

static json_t *col_age(void)
{
    return coldef("Age", "string", "",
                  "CreationTimestamp is a timestamp representing the server time when this object was created.", 0);
}

static json_t *cols_default(void)
{
    return json_pack("[o, o]", col_name(), col_age());
}

static json_t *cols_node(void)
{
    return json_pack("[o, o, o, o, o]", col_name(), coldef("Status", "string", "", "The status of the node", 0),
                     coldef("Roles", "string", "", "The roles of the node", 0), col_age(),
                     coldef("Version", "string", "", "Kubelet Version reported by the node.", 0));
}

static void cells_node(const json_t *obj, json_t *cells, int64_t now_s)
{
    const char *ready = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(json_object_get(obj, "status"), "conditions"), i, c)
    {
        const char *t = json_string_value(json_object_get(c, "type"));
        if (t && strcmp(t, "Ready") == 0)
            ready = json_string_value(json_object_get(c, "status"));
    }
    char status[64];
    snprintf(status, sizeof(status), "%s",
             !ready ? "Unknown" : strcmp(ready, "True") == 0 ? "Ready" : "NotReady"); /* as printNode */
    if (json_is_true(json_object_get(json_object_get(obj, "spec"), "unschedulable")))
        strncat(status, ",SchedulingDisabled", sizeof(status) - strlen(status) - 1);
    char roles[256] = "";
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(json_object_get(obj, "metadata"), "labels"), k, v)
    {
        const char *role = NULL;
        if (strncmp(k, "node-role.kubernetes.io/", 24) == 0)
            role = k + 24;
        else if (strcmp(k, "kubernetes.io/role") == 0)
            role = json_string_value(v);
        if (role && *role) {
            if (*roles)
                strncat(roles, ",", sizeof(roles) - strlen(roles) - 1);
            strncat(roles, role, sizeof(roles) - strlen(roles) - 1);
        }
    }
    const char *ver = json_string_value(
        json_object_get(json_object_get(json_object_get(obj, "status"), "nodeInfo"), "kubeletVersion"));
    json_array_append_new(cells, json_string(status));
    json_array_append_new(cells, json_string(*roles ? roles : "<none>"));
    json_array_append_new(cells, age_cell(obj, now_s));
    json_array_append_new(cells, json_string(ver ? ver : ""));
}

static json_t *cols_pod(void)
{
    return json_pack(
        "[o, o, o, o, o, o, o, o, o]", col_name(),
        coldef("Ready", "string", "", "The aggregate readiness state of this pod for accepting traffic.", 0),
        coldef("Status", "string", "", "The aggregate status of the containers in this pod.", 0),
        coldef("Restarts", "string", "", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
        col_age(), coldef("IP", "string", "", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.", 1),
        coldef("Node", "string", "", "NodeName is a request to schedule this pod onto a specific node.", 1),
        coldef("Nominated Node", "string", "", "nominatedNodeName is set when this pod preempts other pods on the node.", 1),
        coldef("Readiness Gates", "string", "", "If specified, all readiness gates will be evaluated for pod readiness.", 1));
}

/* The STATUS kubectl shows for a pod (printPod in kubernetes/pkg/printers/internalversion). */
static void pod_status_text(const json_t *obj, char *out, size_t n, int *ready, int *total, long *restarts)
{
    json_t *st = json_object_get(obj, "status");
    const char *phase = json_string_value(json_object_get(st, "phase"));
    const char *reason = json_string_value(json_object_get(st, "reason"));
    snprintf(out, n, "%s", reason && *reason ? reason : phase ? phase : "Pending");
    *ready = 0;
    *restarts = 0;
    *total = (int)json_array_size(json_object_get(json_object_get(obj, "spec"), "containers"));
    size_t i;
    json_t *cs;
    bool initializing = false;
    json_t *ics = json_object_get(st, "initContainerStatuses");
    size_t nic = json_array_size(ics);
    json_array_foreach(ics, i, cs)
    {
        *restarts += (long)json_integer_value(json_object_get(cs, "restartCount"));
        json_t *state = json_object_get(cs, "state");
        json_t *term = json_object_get(state, "terminated");
        json_t *wait = json_object_get(state, "waiting");
        if (term && json_integer_value(json_object_get(term, "exitCode")) == 0)
            continue;
        initializing = true;
        const char *r = json_string_value(json_object_get(term, "reason"));
        const char *wr = json_string_value(json_object_get(wait, "reason"));
        if (term) {
            if (r && *r)
                snprintf(out, n, "Init:%s", r);
            else
                snprintf(out, n, "Init:ExitCode:%lld", (long long)json_integer_value(json_object_get(term, "exitCode")));
        } else if (wr && *wr && strcmp(wr, "PodInitializing") != 0) {
            snprintf(out, n, "Init:%s", wr);
        } else {
            snprintf(out, n, "Init:%zu/%zu", i, nic);
        }
        break;
    }
    bool has_running = false;
    json_t *css = json_object_get(st, "containerStatuses");
    size_t ncs = json_array_size(css);
    for (size_t k = ncs; k-- > 0;) {
        cs = json_array_get(css, k);
        *restarts += initializing ? 0 : (long)json_integer_value(json_object_get(cs, "restartCount"));
        if (initializing)
            continue;
        json_t *state = json_object_get(cs, "state");
        json_t *term = json_object_get(state, "terminated");
        json_t *wait = json_object_get(state, "waiting");
        const char *wr = json_string_value(json_object_get(wait, "reason"));
        const char *tr = json_string_value(json_object_get(term, "reason"));
        if (wait && wr && *wr) {
            snprintf(out, n, "%s", wr);
        } else if (term && tr && *tr) {
            snprintf(out, n, "%s", tr);
        } else if (term) {
            long long sig = json_integer_value(json_object_get(term, "signal"));
            if (sig)
                snprintf(out, n, "Signal:%lld", sig);
            else
                snprintf(out, n, "ExitCode:%lld", (long long)json_integer_value(json_object_get(term, "exitCode")));
        } else if (json_object_get(state, "running") && json_is_true(json_object_get(cs, "ready"))) {
            has_running = true;
            (*ready)++;
        }
    }
    if (!initializing && strcmp(out, "Completed") == 0 && has_running)
        snprintf(out, n, "Running");
    if (json_string_value(json_object_get(json_object_get(obj, "metadata"), "deletionTimestamp")))
        snprintf(out, n, "Terminating");
}

static void cells_pod(const json_t *obj, json_t *cells, int64_t now_s)
{
    char status[128], readyb[32], rs[32];
    int ready, total;
    long restarts;
    pod_status_text(obj, status, sizeof(status), &ready, &total, &restarts);
    snprintf(readyb, sizeof(readyb), "%d/%d", ready, total);
    snprintf(rs, sizeof(rs), "%ld", restarts);
    json_t *st = json_object_get(obj, "status");
    const char *ip = json_string_value(json_object_get(st, "podIP"));
    const char *node = json_string_value(json_object_get(json_object_get(obj, "spec"), "nodeName"));
    const char *nom = json_string_value(json_object_get(st, "nominatedNodeName"));
    json_array_append_new(cells, json_string(readyb));
    json_array_append_new(cells, json_string(status));
    json_array_append_new(cells, json_string(rs));
    json_array_append_new(cells, age_cell(obj, now_s));
    json_array_append_new(cells, json_string(ip && *ip ? ip : "<none>"));
    json_array_append_new(cells, json_string(node && *node ? node : "<none>"));
    json_array_append_new(cells, json_string(nom && *nom ? nom : "<none>"));
    json_array_append_new(cells, json_string("<none>"));
}

static json_t *cols_ns(void)
{
    return json_pack("[o, o, o]", col_name(), coldef("Status", "string", "", "The status of the namespace", 0), col_age());
}

static void cells_ns(const json_t *obj, json_t *cells, int64_t now_s)
{
    const char *phase = json_string_value(json_object_get(json_object_get(obj, "status"), "phase"));
    json_array_append_new(cells, json_string(phase ? phase : "Active"));
    json_array_append_new(cells, age_cell(obj, now_s));
}

static json_t *cols_event(void)
{
    return json_pack("[o, o, o, o, o, o, o, o, o, o]", coldef("Last Seen", "string", "", "Time since the event was last seen.", 0),
                     coldef("Type", "string", "", "Type of this event.", 0),
                     coldef("Reason", "string", "", "Short, machine understandable string that gives the reason for this event.", 0),
                     coldef("Object", "string", "", "The object that this event is about.", 0),
                     coldef("Subobject", "string", "", "The subobject that this event is about.", 1),
                     coldef("Source", "string", "", "The component reporting this event.", 1),
                     coldef("Message", "string", "", "A human-readable description of the status of this operation.", 0),
                     coldef("First Seen", "string", "", "Time since the event was first seen.", 1),
                     coldef("Count", "string", "", "The number of times this event has occurred.", 1),
                     coldef("Name", "string", "name", "Name must be unique within a namespace.", 1));
}

static json_t *ts_age_cell(const json_t *obj, const char *field, int64_t now_s)
{
    const char *ts = json_string_value(json_object_get(obj, field));
    time_t t;
    if (!ts || pw_time_parse_rfc3339(ts, &t) != 0)
        return age_cell(obj, now_s);
    char b[32];
    human_age(now_s - (int64_t)t, b, sizeof(b));
    return json_string(b);
}

/* Events put NAME last (priority 1), as the real printer does: the cells start over. */
static void cells_event(const json_t *obj, json_t *cells, int64_t now_s)
{
    json_t *name = json_incref(json_array_get(cells, 0));
    json_array_clear(cells);
    json_t *io = json_object_get(obj, "involvedObject");
    const char *kind = json_string_value(json_object_get(io, "kind"));
    const char *iname = json_string_value(json_object_get(io, "name"));
    char object[400], lk[100];
    snprintf(lk, sizeof(lk), "%s", kind ? kind : "");
    for (char *p = lk; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    snprintf(object, sizeof(object), "%s/%s", lk, iname ? iname : "");
    const char *fp = json_string_value(json_object_get(io, "fieldPath"));
    json_t *src = json_object_get(obj, "source");
    const char *comp = json_string_value(json_object_get(src, "component"));
    const char *host = json_string_value(json_object_get(src, "host"));
    char source[300];
    snprintf(source, sizeof(source), "%s%s%s", comp ? comp : "", host ? ", " : "", host ? host : "");
    char count[32];
    snprintf(count, sizeof(count), "%lld", (long long)json_integer_value(json_object_get(obj, "count")));
    const char *type = json_string_value(json_object_get(obj, "type"));
    const char *reason = json_string_value(json_object_get(obj, "reason"));
    const char *msg = json_string_value(json_object_get(obj, "message"));
    json_array_append_new(cells, ts_age_cell(obj, "lastTimestamp", now_s));
    json_array_append_new(cells, json_string(type ? type : ""));
    json_array_append_new(cells, json_string(reason ? reason : ""));
    json_array_append_new(cells, json_string(object));
    json_array_append_new(cells, json_string(fp ? fp : ""));
    json_array_append_new(cells, json_string(source));
    json_array_append_new(cells, json_string(msg ? msg : ""));
    json_array_append_new(cells, ts_age_cell(obj, "firstTimestamp", now_s));
    json_array_append_new(cells, json_string(count));
    json_array_append_new(cells, name);
}

static json_t *cols_job(void)
{
    return json_pack("[o, o, o, o, o, o, o, o]", col_name(), coldef("Status", "string", "", "Status of the job.", 0),
                     coldef("Completions", "string", "", "The completion status of the job.", 0),
                     coldef("Duration", "string", "", "Time required to complete the job.", 0), col_age(),
                     coldef("Containers", "string", "", "Names of each container in the template.", 1),
                     coldef("Images", "string", "", "Images referenced by each container in the template.", 1),
                     coldef("Selector", "string", "", "A label query over pods that should match the pod count.", 1));
}

static void cells_job(const json_t *obj, json_t *cells, int64_t now_s)
{
    json_t *spec = json_object_get(obj, "spec");
    json_t *st = json_object_get(obj, "status");
    const char *status = sim_obj_has_condition(obj, "Complete")      ? "Complete"
                         : sim_obj_has_condition(obj, "Failed")      ? "Failed"
                         : json_is_true(json_object_get(spec, "suspend")) ? "Suspended"
                         : sim_obj_has_condition(obj, "FailureTarget") ? "FailureTarget"
                         : sim_obj_has_condition(obj, "SuccessCriteriaMet") ? "SuccessCriteriaMet"
                                                                    : "Running";
    char comp[64];
    json_t *completions = json_object_get(spec, "completions");
    long long succ = json_integer_value(json_object_get(st, "succeeded"));
    if (json_is_integer(completions))
        snprintf(comp, sizeof(comp), "%lld/%lld", succ, (long long)json_integer_value(completions));
    else
        snprintf(comp, sizeof(comp), "%lld/1 of %lld", succ, (long long)json_integer_value(json_object_get(spec, "parallelism")));
    char dur[32] = "";
    time_t start, end;
    const char *ss = json_string_value(json_object_get(st, "startTime"));
    const char *es = json_string_value(json_object_get(st, "completionTime"));
    if (ss && pw_time_parse_rfc3339(ss, &start) == 0) {
        if (!es || pw_time_parse_rfc3339(es, &end) != 0)
            end = (time_t)now_s;
        human_age((int64_t)(end - start), dur, sizeof(dur));
    }
    pw_buf names, images;
    pw_buf_init(&names, 0);
    pw_buf_init(&images, 0);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(json_object_get(json_object_get(spec, "template"), "spec"), "containers"), i, c)
    {
        pw_buf_printf(&names, "%s%s", i ? "," : "", json_string_value(json_object_get(c, "name")) ? json_string_value(json_object_get(c, "name")) : "");
        pw_buf_printf(&images, "%s%s", i ? "," : "", json_string_value(json_object_get(c, "image")) ? json_string_value(json_object_get(c, "image")) : "");
    }
    pw_buf sel;
    pw_buf_init(&sel, 0);
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(json_object_get(spec, "selector"), "matchLabels"), k, v)
        pw_buf_printf(&sel, "%s%s=%s", sel.len ? "," : "", k, json_string_value(v) ? json_string_value(v) : "");
    json_array_append_new(cells, json_string(status));
    json_array_append_new(cells, json_string(comp));
    json_array_append_new(cells, json_string(dur));
    json_array_append_new(cells, age_cell(obj, now_s));
    json_array_append_new(cells, json_string(names.p ? names.p : ""));
    json_array_append_new(cells, json_string(images.p ? images.p : ""));
    json_array_append_new(cells, json_string(sel.p ? sel.p : "<none>"));
    pw_buf_fini(&names);
    pw_buf_fini(&images);
    pw_buf_fini(&sel);
}

int sim_api_table_include(pw_http_req *req)
{
    const char *io = pw_http_req_query(req, "includeObject");
    if (io && strcmp(io, "None") == 0)
        return 0;
    if (io && strcmp(io, "Object") == 0)
        return 2;
    return 1;
}

bool sim_api_wants_table(pw_http_req *req)
{
    const char *a = pw_http_req_header(req, "Accept");
    return a && strstr(a, "as=Table") != NULL;
}

json_t *sim_api_table(const struct rdef *rd, json_t *items, const char *rv, int include_object, int64_t now_s)
{
    json_t *rows = json_array();
    size_t i;
    json_t *obj;
    char gv[256];
    sim_api_gv(rd, gv, sizeof(gv));
    json_array_foreach(items, i, obj)
    {
        json_t *m = json_object_get(obj, "metadata");
        json_t *cells = json_pack("[s]", json_string_value(json_object_get(m, "name")) ? json_string_value(json_object_get(m, "name")) : "");
        if (rd->cells)
            rd->cells(obj, cells, now_s);
        else
            json_array_append_new(cells, age_cell(obj, now_s));
        json_t *row = json_pack("{s:o}", "cells", cells);
        if (include_object == 2) {
            json_object_set_new(row, "object", sim_api_with_kind(rd, obj));
        } else if (include_object) {
            json_t *pm = json_copy(m);
            json_object_del(pm, "managedFields");
            json_object_set_new(row, "object", json_pack("{s:s, s:s, s:o}", "kind", "PartialObjectMetadata",
                                                         "apiVersion", "meta.k8s.io/v1", "metadata", pm));
        }
        json_array_append_new(rows, row);
    }
    return json_pack("{s:s, s:s, s:{s:s}, s:o, s:o}", "kind", "Table", "apiVersion", "meta.k8s.io/v1", "metadata",
                     "resourceVersion", rv, "columnDefinitions", rd->columns ? rd->columns() : cols_default(), "rows",
                     rows);
}

/* ---- field selectors ---- */

static const char *const POD_FIELDS[] = {"spec.nodeName",       "spec.restartPolicy", "spec.schedulerName",
                                         "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                                         "status.podIP",        "status.nominatedNodeName", NULL};
static const char *const NODE_FIELDS[] = {"spec.unschedulable", NULL};
static const char *const JOB_FIELDS[] = {"status.successful", NULL};
static const char *const EVENT_FIELDS[] = {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                                           "involvedObject.uid", "involvedObject.apiVersion",
                                           "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                                           "reportingComponent", "source", "type", NULL};
static const char *const NS_FIELDS[] = {"status.phase", NULL};
static const char *const SECRET_FIELDS[] = {"type", NULL};

struct freq {
    char *field;
    char *value;
    bool neq;
};

struct fieldsel {
    struct freq *v;
    size_t n;
};

void sim_api_fieldsel_free(struct fieldsel *fs)
{
    if (!fs)
        return;
    for (size_t i = 0; i < fs->n; i++) {
        free(fs->v[i].field);
        free(fs->v[i].value);
    }
    free(fs->v);
    free(fs);
}

static bool field_known(const struct rdef *rd, const char *f)
{
    if (strcmp(f, "metadata.name") == 0 || (rd->namespaced && strcmp(f, "metadata.namespace") == 0))
        return true;
    if (rd->fields)
        for (const char *const *p = rd->fields; *p; p++)
            if (strcmp(*p, f) == 0)
                return true;
    return false;
}

int sim_api_fieldsel_parse(const struct rdef *rd, const char *text, struct fieldsel **out, char **err)
{
    struct fieldsel *fs = pw_xcalloc(1, sizeof(*fs));
    char *copy = pw_xstrdup(text ? text : ""), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        pw_sv term = pw_sv_trim(pw_sv_from(t));
        if (term.n == 0)
            continue;
        char *s = pw_sv_dup(term);
        char *op = strstr(s, "!=");
        bool neq = op != NULL;
        size_t oplen = 2;
        if (!op) {
            op = strstr(s, "==");
            if (!op) {
                op = strchr(s, '=');
                oplen = 1;
            }
        }
        if (!op) {
            *err = pw_xasprintf("invalid selector: '%s'; can't understand '%s'", text, s);
            free(s);
            free(copy);
            sim_api_fieldsel_free(fs);
            return PW_EINVAL;
        }
        *op = 0;
        pw_sv f = pw_sv_trim(pw_sv_from(s)), v = pw_sv_trim(pw_sv_from(op + oplen));
        char *field = pw_sv_dup(f);
        if (!field_known(rd, field)) {
            *err = pw_xasprintf("field label not supported: %s", field);
            free(field);
            free(s);
            free(copy);
            sim_api_fieldsel_free(fs);
            return PW_EINVAL;
        }
        fs->v = pw_xrealloc(fs->v, (fs->n + 1) * sizeof(*fs->v));
        fs->v[fs->n++] = (struct freq){field, pw_sv_dup(v), neq};
        free(s);
    }
    free(copy);
    *out = fs;
    return 0;
}

/* The text a field has for selection, as the real field-label conversion functions render it. */
static void field_value(const json_t *obj, const char *field, char *out, size_t n)
{
    json_t *cur = (json_t *)obj;
    char *copy = pw_xstrdup(field), *save = NULL;
    for (char *t = strtok_r(copy, ".", &save); t && cur; t = strtok_r(NULL, ".", &save))
        cur = json_object_get(cur, t);
    free(copy);
    if (strcmp(field, "spec.unschedulable") == 0 || strcmp(field, "spec.hostNetwork") == 0)
        snprintf(out, n, "%s", json_is_true(cur) ? "true" : "false");
    else if (json_is_string(cur))
        snprintf(out, n, "%s", json_string_value(cur));
    else if (json_is_integer(cur))
        snprintf(out, n, "%lld", (long long)json_integer_value(cur));
    else if (json_is_boolean(cur))
        snprintf(out, n, "%s", json_is_true(cur) ? "true" : "false");
    else if (strcmp(field, "status.successful") == 0 || strcmp(field, "status.succeeded") == 0)
        snprintf(out, n, "0");
    else if (strcmp(field, "source") == 0)
        snprintf(out, n, "%s", json_string_value(json_object_get(json_object_get(obj, "source"), "component"))
                                   ? json_string_value(json_object_get(json_object_get(obj, "source"), "component"))
                                   : "");
    else
        snprintf(out, n, "%s", "");
}

bool sim_api_fieldsel_matches(const struct fieldsel *fs, const json_t *obj)
{
    if (!fs)
        return true;
    for (size_t i = 0; i < fs->n; i++) {
        char v[512];
        const char *f = fs->v[i].field;
        if (strcmp(f, "status.successful") == 0)
            field_value(obj, "status.succeeded", v, sizeof(v));
        else
            field_value(obj, f, v, sizeof(v));
        bool eq = strcmp(v, fs->v[i].value) == 0;
        if (eq == fs->v[i].neq)
            return false;
    }
    return true;
}

/* ---- the built-in registry ---- */

const struct rdef sim_api_builtin[] = {
    {"", "v1", "namespaces", "namespace", "Namespace", false, "ns", true, V_ALL & ~V_DELETECOLLECTION, "namespaces",
     NS_FIELDS, NULL, d_ns, cols_ns, cells_ns, false, false, {0}},
    {"", "v1", "nodes", "node", "Node", false, "no", true, V_ALL, "nodes", NODE_FIELDS, NULL, NULL, cols_node,
     cells_node, false, false, {0}},
    {"", "v1", "pods", "pod", "Pod", true, "po", true, V_ALL, "pods", POD_FIELDS, v_pod, d_pod, cols_pod, cells_pod,
     false, false, {0}},
    {"", "v1", "events", "event", "Event", true, "ev", false, V_ALL, "events", EVENT_FIELDS, NULL, NULL, cols_event, cells_event,
     false, false, {0}},
    {"", "v1", "secrets", "secret", "Secret", true, "", false, V_ALL, "secrets", SECRET_FIELDS, NULL, d_secret, NULL,
     NULL, false, false, {0}},
    {"", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, "sa", false, V_ALL, "serviceaccounts",
     NULL, NULL, NULL, NULL, NULL, false, false, {0}},
    {"batch", "v1", "jobs", "job", "Job", true, "", true, V_ALL, "jobs.batch", JOB_FIELDS, v_job, d_job, cols_job,
     cells_job, false, false, {0}},
    {"apps", "v1", "daemonsets", "daemonset", "DaemonSet", true, "ds", true, V_ALL, "daemonsets.apps", NULL, v_ds,
     d_ds, NULL, NULL, false, false, {0}},
    {"coordination.k8s.io", "v1", "leases", "lease", "Lease", true, "", false, V_ALL, "leases.coordination.k8s.io",
     NULL, NULL, NULL, NULL, NULL, false, false, {0}},
    {"authentication.k8s.io", "v1", "tokenreviews", "tokenreview", "TokenReview", false, "", false, V_CREATE,
     "tokenreviews.authentication.k8s.io", NULL, NULL, NULL, NULL, NULL, false, false, {0}},
    {"authentication.k8s.io", "v1", "selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview", false, "", false,
     V_CREATE, "selfsubjectreviews.authentication.k8s.io", NULL, NULL, NULL, NULL, NULL, false, false, {0}},
    {"authorization.k8s.io", "v1", "subjectaccessreviews", "subjectaccessreview", "SubjectAccessReview", false, "",
     false, V_CREATE, "subjectaccessreviews.authorization.k8s.io", NULL, NULL, NULL, NULL, NULL, false, false, {0}},
    {"authorization.k8s.io", "v1", "selfsubjectaccessreviews", "selfsubjectaccessreview", "SelfSubjectAccessReview",
     false, "", false, V_CREATE, "selfsubjectaccessreviews.authorization.k8s.io", NULL, NULL, NULL, NULL, NULL, false,
     false, {0}},
    {"authorization.k8s.io", "v1", "selfsubjectrulesreviews", "selfsubjectrulesreview", "SelfSubjectRulesReview",
     false, "", false, V_CREATE, "selfsubjectrulesreviews.authorization.k8s.io", NULL, NULL, NULL, NULL, NULL, false,
     false, {0}},
    {"authorization.k8s.io", "v1", "localsubjectaccessreviews", "localsubjectaccessreview",
     "LocalSubjectAccessReview", true, "", false, V_CREATE, "localsubjectaccessreviews.authorization.k8s.io", NULL,
     NULL, NULL, NULL, NULL, false, false, {0}},
    {"rbac.authorization.k8s.io", "v1", "roles", "role", "Role", true, "", false, V_ALL,
     "roles.rbac.authorization.k8s.io", NULL, sim_api_rbac_validate, sim_api_rbac_defaults, NULL, NULL, false, false,
     {0}},
    {"rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", false, "", false, V_ALL,
     "clusterroles.rbac.authorization.k8s.io", NULL, sim_api_rbac_validate, sim_api_rbac_defaults, NULL, NULL, false,
     false, {0}},
    {"rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", true, "", false, V_ALL,
     "rolebindings.rbac.authorization.k8s.io", NULL, sim_api_rbac_validate, sim_api_rbac_defaults, NULL, NULL, false,
     false, {0}},
    {"rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", false, "",
     false, V_ALL, "clusterrolebindings.rbac.authorization.k8s.io", NULL, sim_api_rbac_validate, sim_api_rbac_defaults,
     NULL, NULL, false, false, {0}},
    {"apiextensions.k8s.io", "v1", "customresourcedefinitions", "customresourcedefinition",
     "CustomResourceDefinition", false, "crd,crds", true, V_ALL, "customresourcedefinitions.apiextensions.k8s.io",
     NULL, v_crd, d_crd, NULL, NULL, false, false, {0}},
    {NULL, NULL, NULL, NULL, NULL, false, NULL, false, 0, NULL, NULL, NULL, NULL, NULL, NULL, false, false, {0}},
};

/* ---- replies ---- */

static void rreply(struct rreq *r, int code, json_t *obj)
{
    char res[200];
    snprintf(res, sizeof(res), "%s%s%s", r->rd->plural, r->sub ? "/" : "", r->sub ? r->sub : "");
    sim_api_stat(r->api, r->verb, res, code);
    pw_http_reply_json(r->req, code, obj);
}

static void rfail(struct rreq *r, int code, const char *reason, const char *msg, json_t *details)
{
    rreply(r, code, sim_api_status_obj(code, reason, msg, details));
}

static json_t *details_for(const struct rreq *r, const char *name)
{
    return json_pack("{s:s, s:s, s:s}", "name", name ? name : "", "group", r->rd->group, "kind", r->rd->plural);
}

/* The Status of a store error, as the real server words it: before + `<resource> "<name>"` + after. */
static const struct {
    int rc;
    int code;
    const char *reason;
    const char *before, *after;
} STORE_ERRORS[] = {
    {PW_ENOTFOUND, 404, "NotFound", "", " not found"},
    {PW_EEXIST, 409, "AlreadyExists", "", " already exists"},
    {PW_ECONFLICT, 409, "Conflict", "Operation cannot be fulfilled on ",
     ": the object has been modified; please apply your changes to the latest version and try again"},
};

static void rfail_code(struct rreq *r, int rc, const char *name)
{
    char q[160];
    sim_api_qres(r->rd, q, sizeof(q));
    for (size_t i = 0; i < sizeof(STORE_ERRORS) / sizeof(STORE_ERRORS[0]); i++) {
        if (STORE_ERRORS[i].rc != rc)
            continue;
        char msg[512];
        snprintf(msg, sizeof(msg), "%s%s \"%s\"%s", STORE_ERRORS[i].before, q, name, STORE_ERRORS[i].after);
        rfail(r, STORE_ERRORS[i].code, STORE_ERRORS[i].reason, msg, details_for(r, name));
        return;
    }
    char *msg = pw_xasprintf("Internal error occurred: %s", pw_strerror(rc));
    rfail(r, 500, "InternalError", msg, NULL);
    free(msg);
}

static void rfail_invalid(struct rreq *r, const char *name, json_t *causes)
{
    pw_buf b;
    pw_buf_init(&b, 0);
    char kind[200];
    if (*r->rd->group)
        snprintf(kind, sizeof(kind), "%s.%s", r->rd->kind, r->rd->group);
    else
        snprintf(kind, sizeof(kind), "%s", r->rd->kind);
    pw_buf_printf(&b, "%s \"%s\" is invalid: ", kind, name ? name : "");
    size_t n = json_array_size(causes), i;
    json_t *c;
    if (n > 1)
        pw_buf_puts(&b, "[");
    json_array_foreach(causes, i, c)
    {
        pw_buf_printf(&b, "%s%s: %s", i ? ", " : "", json_string_value(json_object_get(c, "field")),
                      json_string_value(json_object_get(c, "message")));
    }
    if (n > 1)
        pw_buf_puts(&b, "]");
    rfail(r, 422, "Invalid", b.p,
          json_pack("{s:s, s:s, s:s, s:o}", "name", name ? name : "", "group", r->rd->group, "kind", r->rd->kind,
                    "causes", causes));
    pw_buf_fini(&b);
}

json_t *sim_api_with_kind(const struct rdef *rd, json_t *obj)
{
    if (json_object_get(obj, "kind") && json_object_get(obj, "apiVersion"))
        return json_incref(obj);
    json_t *c = json_copy(obj);
    char gv[256];
    json_object_set_new(c, "apiVersion", json_string(sim_api_gv(rd, gv, sizeof(gv))));
    json_object_set_new(c, "kind", json_string(rd->kind));
    return c;
}

static void reply_obj(struct rreq *r, int code, json_t *obj)
{
    if (sim_api_wants_table(r->req)) {
        json_t *items = json_pack("[O]", obj);
        const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
        json_t *t = sim_api_table(r->rd, items, rv ? rv : "", sim_api_table_include(r->req), time(NULL));
        json_decref(items);
        json_decref(obj);
        rreply(r, code, t);
        return;
    }
    json_t *o = sim_api_with_kind(r->rd, obj);
    json_decref(obj);
    rreply(r, code, o);
}

static const char *ns_key(const struct rreq *r)
{
    return r->rd->namespaced ? r->ns : "";
}

/* ---- get and list ---- */

static void do_get(struct rreq *r)
{
    json_t *obj;
    int rc = sim_store_get(r->api->sim->store, r->rd->store_key, ns_key(r), r->name, &obj);
    if (rc) {
        rfail_code(r, rc, r->name);
        return;
    }
    reply_obj(r, 200, obj);
}

struct selectors {
    pw_labelsel *ls;
    struct fieldsel *fs;
};

static bool sel_filter(void *arg, const json_t *obj)
{
    struct selectors *s = arg;
    json_t *m = json_object_get(obj, "metadata");
    return pw_labelsel_matches(s->ls, json_object_get(m, "labels")) && sim_api_fieldsel_matches(s->fs, obj);
}

/* Parses labelSelector and fieldSelector; replies 400 and returns false on an error. */
static bool parse_selectors(struct rreq *r, struct selectors *s)
{
    s->ls = NULL;
    s->fs = NULL;
    char *err = NULL;
    if (pw_labelsel_parse(pw_http_req_query(r->req, "labelSelector"), &s->ls, &err) != 0) {
        rfail(r, 400, "BadRequest", err ? err : "invalid label selector", NULL);
        free(err);
        return false;
    }
    if (sim_api_fieldsel_parse(r->rd, pw_http_req_query(r->req, "fieldSelector"), &s->fs, &err) != 0) {
        pw_labelsel_free(s->ls);
        s->ls = NULL;
        rfail(r, 400, "BadRequest", err, NULL);
        free(err);
        return false;
    }
    return true;
}

static void do_list(struct rreq *r)
{
    struct selectors s;
    if (!parse_selectors(r, &s))
        return;
    long limit = 0;
    const char *lq = pw_http_req_query(r->req, "limit");
    if (lq && *lq && pw_parse_long(lq, 0, 1000000000L, &limit) != 0)
        limit = 0;
    char *after = NULL;
    uint64_t token_rv = 0;
    const char *cont = pw_http_req_query(r->req, "continue");
    if (cont && *cont) {
        void *txt = NULL;
        size_t txt_len = 0;
        json_t *tok = pw_b64_decode(cont, strlen(cont), &txt, &txt_len) == 0 ? json_loadb(txt, txt_len, 0, NULL) : NULL;
        free(txt);
        const char *start = json_string_value(json_object_get(tok, "start"));
        token_rv = (uint64_t)json_integer_value(json_object_get(tok, "rv"));
        if (!start || !token_rv) {
            json_decref(tok);
            pw_labelsel_free(s.ls);
            sim_api_fieldsel_free(s.fs);
            rfail(r, 400, "BadRequest", "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)", NULL);
            return;
        }
        after = pw_xstrdup(start);
        json_decref(tok);
        pthread_mutex_lock(&r->api->mu);
        uint64_t floor = r->api->compact_rv;
        pthread_mutex_unlock(&r->api->mu);
        if (token_rv < floor) {
            free(after);
            pw_labelsel_free(s.ls);
            sim_api_fieldsel_free(s.fs);
            rfail(r, 410, "Expired",
                  "The provided continue parameter is too old to display a consistent list result. You can start a "
                  "new list without the continue parameter, or use the continue token in this response to retrieve "
                  "the remainder of the results. Continuing with the provided token results in an inconsistent "
                  "list - objects that were created, modified, or deleted between the time the first chunk was "
                  "returned and now may show up in the list.",
                  NULL);
            return;
        }
    }
    json_t *items;
    bool more;
    uint64_t rv;
    bool filter = !pw_labelsel_empty(s.ls) || (s.fs && s.fs->n);
    sim_store_list(r->api->sim->store, r->rd->store_key, r->rd->namespaced ? r->ns : "", after, (size_t)limit,
                   filter ? sel_filter : NULL, &s, &items, &more, &rv);
    free(after);
    pw_labelsel_free(s.ls);
    sim_api_fieldsel_free(s.fs);
    if (token_rv)
        rv = token_rv;
    char rvs[32];
    snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)rv);
    char *next = NULL;
    if (more && json_array_size(items)) {
        json_t *last = json_object_get(json_array_get(items, json_array_size(items) - 1), "metadata");
        const char *lns = json_string_value(json_object_get(last, "namespace"));
        char *key = pw_xasprintf("%s/%s", r->rd->namespaced && lns ? lns : "",
                                 json_string_value(json_object_get(last, "name")));
        json_t *tok = json_pack("{s:s, s:I, s:s}", "v", "meta.k8s.io/v1", "rv", (json_int_t)rv, "start", key);
        char *txt = json_dumps(tok, JSON_COMPACT);
        next = pw_b64_encode(txt, strlen(txt), true);
        free(txt);
        free(key);
        json_decref(tok);
    }
    if (sim_api_wants_table(r->req)) {
        json_t *t = sim_api_table(r->rd, items, rvs, sim_api_table_include(r->req), time(NULL));
        if (next)
            json_object_set_new(json_object_get(t, "metadata"), "continue", json_string(next));
        free(next);
        json_decref(items);
        rreply(r, 200, t);
        return;
    }
    char gv[256], kind[200];
    snprintf(kind, sizeof(kind), "%sList", r->rd->kind);
    json_t *head = json_pack("{s:s, s:s, s:{s:s}}", "kind", kind, "apiVersion", sim_api_gv(r->rd, gv, sizeof(gv)),
                             "metadata", "resourceVersion", rvs);
    if (next)
        json_object_set_new(json_object_get(head, "metadata"), "continue", json_string(next));
    free(next);
    /* Items are appended one by one into one buffer from the text cache: several times faster than
     * dumping one huge document with jansson, and the stored objects are shared, never copied. */
    char *htext = json_dumps(head, JSON_COMPACT);
    json_decref(head);
    pw_buf b;
    pw_buf_init(&b, 0);
    pw_buf_append(&b, htext, strlen(htext) - 1); /* without the closing brace */
    free(htext);
    pw_buf_puts(&b, ",\"items\":[");
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        if (i)
            pw_buf_append(&b, ",", 1);
        sim_api_cache_append(r->api->objcache, r->rd, it, &b); /* items carry kind and apiVersion (CRs must; harmless for others) */
    }
    pw_buf_puts(&b, "]}");
    json_decref(items);
    char res[200];
    snprintf(res, sizeof(res), "%s", r->rd->plural);
    sim_api_stat(r->api, r->verb, res, 200);
    pw_http_reply(r->req, 200, "application/json", b.p, b.len);
    pw_buf_fini(&b);
}

static void do_watch(struct rreq *r)
{
    struct selectors s;
    if (!parse_selectors(r, &s))
        return;
    sim_api_stat(r->api, "watch", r->rd->plural, 200);
    sim_api_watch_serve(r, s.ls, s.fs);
}

/* ---- create ---- */

static json_t *parse_body(struct rreq *r)
{
    char *m = NULL;
    json_t *obj = sim_api_body_object(r->rd, r->req, &m); /* JSON, or protobuf for the RBAC kinds */
    if (!obj) {
        rfail(r, 400, "BadRequest", m, NULL);
        free(m);
    }
    return obj;
}

static void strip_server_fields(json_t *m)
{
    static const char *const F[] = {"uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                                    "deletionGracePeriodSeconds", "generation", "selfLink", "managedFields"};
    for (size_t i = 0; i < sizeof(F) / sizeof(F[0]); i++)
        json_object_del(m, F[i]);
}

/* A TokenReview: the admin token (kubesim's own user), a --token-auth-file token, a ServiceAccount token kubesim issued
 * (api_token.c), or nothing known. An empty token is refused as the real server refuses it. */
static void do_tokenreview(struct rreq *r)
{
    json_t *obj = parse_body(r);
    if (!obj)
        return;
    const json_t *spec = json_object_get(obj, "spec");
    const char *tok = json_string_value(json_object_get(spec, "token"));
    if (!tok || !*tok) {
        json_decref(obj);
        rfail(r, 400, "BadRequest", "token is required for TokenReview in authentication", NULL);
        return;
    }
    json_t *status = sim_api_static_token_review(r->api, tok, json_object_get(spec, "audiences"));
    if (!status) /* not the admin's, not from --token-auth-file */
        status = sim_api_token_review(r->api, tok, json_object_get(spec, "audiences"));
    json_object_set_new(obj, "status", status);
    json_object_set_new(obj, "apiVersion", json_string("authentication.k8s.io/v1"));
    json_object_set_new(obj, "kind", json_string("TokenReview"));
    json_object_set_new(obj, "metadata", json_pack("{s:n}", "creationTimestamp"));
    rreply(r, 201, obj);
}

/* dryRun=All: everything but the write. */
static bool dry_run(const struct rreq *r)
{
    const char *d = pw_http_req_query(r->req, "dryRun");
    return d && strcmp(d, "All") == 0;
}

/* A read-modify-write that is not committed: fn runs on a copy of the stored object. */
static int mutate_dry(struct rreq *r, sim_mutate_fn fn, void *arg, json_t **out)
{
    json_t *cur;
    int rc = sim_store_get(r->api->sim->store, r->rd->store_key, ns_key(r), r->name, &cur);
    if (rc)
        return rc;
    json_t *copy = json_deep_copy(cur);
    json_decref(cur);
    rc = fn(arg, copy);
    if (rc < 0) {
        json_decref(copy);
        return rc;
    }
    *out = copy;
    return 0;
}

static void do_create(struct rreq *r)
{
    if (strcmp(r->rd->plural, "tokenreviews") == 0) {
        do_tokenreview(r);
        return;
    }
    if (sim_api_is_review(r->rd)) { /* api_authz.c */
        sim_api_review(r);
        return;
    }
    json_t *obj = parse_body(r);
    if (!obj)
        return;
    json_t *m = obj_child(obj, "metadata");
    const char *bns = json_string_value(json_object_get(m, "namespace"));
    if (r->rd->namespaced) {
        if (bns && *bns && strcmp(bns, r->ns) != 0) {
            json_decref(obj);
            rfail(r, 400, "BadRequest",
                  "the namespace of the provided object does not match the namespace sent on the request", NULL);
            return;
        }
        json_object_set_new(m, "namespace", json_string(r->ns));
    } else {
        json_object_del(m, "namespace");
    }
    strip_server_fields(m);
    char gv[256];
    json_object_set_new(obj, "apiVersion", json_string(sim_api_gv(r->rd, gv, sizeof(gv))));
    json_object_set_new(obj, "kind", json_string(r->rd->kind));
    const char *name = json_string_value(json_object_get(m, "name"));
    char *shown = pw_xstrdup(name ? name : "");
    json_t *causes = json_array();
    validate_meta(r->rd, obj, causes);
    if (r->rd->validate)
        r->rd->validate(r->rd, obj, causes);
    if (json_array_size(causes)) {
        json_decref(obj);
        rfail_invalid(r, shown, causes);
        free(shown);
        return;
    }
    json_decref(causes);
    if (!sim_api_rbac_may_write(r, obj)) { /* api_escalate.c: replied */
        json_decref(obj);
        free(shown);
        return;
    }
    if (r->rd->namespaced) {
        json_t *nsobj;
        if (sim_store_get(r->api->sim->store, "namespaces", "", r->ns, &nsobj) != 0) {
            json_decref(obj);
            char *msg = pw_xasprintf("namespaces \"%s\" not found", r->ns);
            rfail(r, 404, "NotFound", msg, json_pack("{s:s, s:s, s:s}", "name", r->ns, "group", "", "kind", "namespaces"));
            free(msg);
            free(shown);
            return;
        }
        bool terminating = json_object_get(json_object_get(nsobj, "metadata"), "deletionTimestamp") != NULL;
        json_decref(nsobj);
        if (terminating) {
            json_decref(obj);
            char *msg = pw_xasprintf("%s \"%s\" is forbidden: unable to create new content in namespace %s because "
                                     "it is being terminated", r->rd->plural, shown, r->ns);
            rfail(r, 403, "Forbidden", msg, NULL);
            free(msg);
            free(shown);
            return;
        }
    }
    char uid[37];
    sim_api_uid(uid);
    json_object_set_new(m, "uid", json_string(uid));
    if (r->rd->has_status && r->rd->custom)
        json_object_del(obj, "status");
    if (r->rd->defaults)
        r->rd->defaults(r->api->sim, r->rd, obj);
    if (dry_run(r)) { /* validated and defaulted, not stored */
        json_t *exists;
        if (*shown && sim_store_get(r->api->sim->store, r->rd->store_key, ns_key(r), shown, &exists) == 0) {
            json_decref(exists);
            json_decref(obj);
            rfail_code(r, PW_EEXIST, shown);
        } else {
            char ts[32];
            sim_api_now_rfc3339(ts);
            json_object_set_new(m, "creationTimestamp", json_string(ts));
            reply_obj(r, 201, obj);
        }
        free(shown);
        return;
    }
    json_t *out;
    int rc = sim_store_create(r->api->sim->store, r->rd->store_key, ns_key(r), obj, &out);
    if (rc) {
        rfail_code(r, rc, shown);
        free(shown);
        return;
    }
    free(shown);
    if (strcmp(r->rd->plural, "customresourcedefinitions") == 0)
        sim_api_crd_changed(r->api, out, false);
    reply_obj(r, 201, out);
}

/* ---- update and patch: one read-modify-write under the store lock ---- */

struct rmw {
    struct rreq *r;
    json_t *body;         /* PUT: the new object */
    const char *patch;    /* PATCH: the patch text */
    size_t patch_len;
    const char *ctype;
    json_t *causes;       /* validation failures */
    char *err;            /* a patch failure message */
    int err_code;         /* its HTTP code */
};

static uint64_t rv_of(const json_t *obj)
{
    const char *s = json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
    return s ? strtoull(s, NULL, 10) : 0;
}

/* A Job's selector and pod template cannot change after creation (compared after defaulting, so a
 * client that sends the template without the server's defaults is not refused). */
static void job_immutable(struct sim *sim, const struct rdef *rd, const json_t *cur, json_t *next, json_t *causes)
{
    json_t *norm = json_deep_copy(next);
    d_job(sim, rd, norm);
    json_t *ns = json_object_get(norm, "spec"), *os = json_object_get(cur, "spec");
    static const char *const FIELDS[] = {"selector", "template"};
    for (size_t i = 0; i < sizeof(FIELDS) / sizeof(FIELDS[0]); i++) {
        json_t *nv = json_object_get(ns, FIELDS[i]);
        if (!json_equal(nv, json_object_get(os, FIELDS[i]))) {
            char f[64];
            snprintf(f, sizeof(f), "spec.%s", FIELDS[i]);
            char *text = json_dumps(nv, JSON_COMPACT | JSON_ENCODE_ANY);
            char *m = pw_xasprintf("Invalid value: %s: field is immutable", text ? text : "null");
            cause(causes, "FieldValueInvalid", f, m);
            free(m);
            free(text);
        }
    }
    /* the server stores the defaulted spec, as it defaults every request it decodes */
    json_object_set(next, "spec", ns);
    json_decref(norm);
}

/* Makes cur (the private copy of the stored object) become next, with the status-subresource rules
 * and the fields the server owns; next is borrowed. */
static int rmw_apply(struct rmw *w, json_t *cur, const json_t *next)
{
    struct rreq *r = w->r;
    const char *nrv = json_string_value(json_object_get(json_object_get(next, "metadata"), "resourceVersion"));
    if (nrv && *nrv && strtoull(nrv, NULL, 10) != rv_of(cur))
        return PW_ECONFLICT;
    json_t *result;
    if (r->sub) {
        result = json_deep_copy(cur);
        json_t *st = json_object_get(next, "status");
        if (st)
            json_object_set(result, "status", st);
        else
            json_object_del(result, "status");
    } else {
        result = json_deep_copy(next);
        if (r->rd->has_status) {
            json_t *st = json_object_get(cur, "status");
            if (st)
                json_object_set(result, "status", st);
            else
                json_object_del(result, "status");
        }
        json_t *m = obj_child(result, "metadata");
        json_t *cm = json_object_get(cur, "metadata");
        static const char *const KEEP[] = {"deletionTimestamp", "deletionGracePeriodSeconds", "generation",
                                           "creationTimestamp", "uid"};
        for (size_t i = 0; i < sizeof(KEEP) / sizeof(KEEP[0]); i++) {
            json_t *v = json_object_get(cm, KEEP[i]);
            if (v)
                json_object_set(m, KEEP[i], v);
            else
                json_object_del(m, KEEP[i]);
        }
        if (r->rd->namespaced)
            json_object_set(m, "namespace", json_object_get(cm, "namespace"));
        json_t *name = json_object_get(cm, "name");
        json_object_set(m, "name", name);
        char gv[256];
        json_object_set_new(result, "apiVersion", json_string(sim_api_gv(r->rd, gv, sizeof(gv))));
        json_object_set_new(result, "kind", json_string(r->rd->kind));
        sim_api_rbac_update(r->rd, cur, result, w->causes); /* bindings: defaults, roleRef immutable */
        validate_meta(r->rd, result, w->causes);
        if (r->rd->validate)
            r->rd->validate(r->rd, result, w->causes);
        if (strcmp(r->rd->store_key, "jobs.batch") == 0)
            job_immutable(r->api->sim, r->rd, cur, result, w->causes);
        if (json_array_size(w->causes)) {
            json_decref(result);
            return PW_EINVAL;
        }
    }
    json_object_set(obj_child(result, "metadata"), "resourceVersion",
                    json_object_get(json_object_get(cur, "metadata"), "resourceVersion"));
    bool same = json_equal(result, cur);
    json_object_clear(cur);
    json_object_update(cur, result);
    json_decref(result);
    return same ? 1 : 0;
}

static int rmw_put(void *arg, json_t *cur)
{
    struct rmw *w = arg;
    return rmw_apply(w, cur, w->body);
}

static int rmw_patch(void *arg, json_t *cur)
{
    struct rmw *w = arg;
    json_t *next;
    int rc = sim_api_patch_apply(w->ctype, cur, w->patch, w->patch_len, w->r->rd->custom, &next, &w->err);
    if (rc) {
        w->err_code = rc == PW_EMEDIATYPE ? 415 : rc == PW_EINVAL ? 400 : 422;
        return PW_EPROTO;
    }
    rc = rmw_apply(w, cur, next);
    json_decref(next);
    return rc;
}

static void finish_write(struct rreq *r, struct rmw *w, int rc, json_t *out)
{
    if (rc == PW_EINVAL) {
        rfail_invalid(r, r->name, w->causes);
        w->causes = NULL;
    } else if (rc == PW_EPROTO) {
        if (w->err_code == 415)
            rfail(r, 415, "UnsupportedMediaType", w->err, NULL);
        else if (w->err_code == 422)
            rfail(r, 422, "Invalid", w->err, NULL);
        else
            rfail(r, 400, "BadRequest", w->err, NULL);
    } else if (rc) {
        rfail_code(r, rc, r->name);
    } else {
        if (!dry_run(r)) {
            if (strcmp(r->rd->plural, "customresourcedefinitions") == 0)
                sim_api_crd_changed(r->api, out, false);
            sim_api_finalize_check(r->api, r->rd, out);
        }
        reply_obj(r, 200, out);
        out = NULL;
    }
    json_decref(out);
    json_decref(w->causes);
    free(w->err);
}

static void do_update(struct rreq *r)
{
    json_t *body = parse_body(r);
    if (!body)
        return;
    const char *bname = json_string_value(json_object_get(json_object_get(body, "metadata"), "name"));
    if (bname && strcmp(bname, r->name) != 0) {
        char *m = pw_xasprintf("the name of the object (%s) does not match the name on the URL (%s)", bname, r->name);
        rfail(r, 400, "BadRequest", m, NULL);
        free(m);
        json_decref(body);
        return;
    }
    if (!sim_api_rbac_may_write(r, body)) { /* api_escalate.c: replied */
        json_decref(body);
        return;
    }
    struct rmw w = {r, body, NULL, 0, NULL, json_array(), NULL, 0};
    json_t *out = NULL;
    int rc = dry_run(r) ? mutate_dry(r, rmw_put, &w, &out)
                        : sim_store_mutate(r->api->sim->store, r->rd->store_key, ns_key(r), r->name, rmw_put, &w, &out);
    json_decref(body);
    finish_write(r, &w, rc, out);
}

/* Escalation prevention for a patch of an RBAC object: the patch applied to the stored object first
 * (outside the store's lock, which the rule resolver needs), then checked; a patch that does not
 * apply is left to the write to report. */
static bool patch_may_write(struct rreq *r, const char *ct, const char *body, size_t len)
{
    json_t *cur = NULL, *next = NULL;
    char *err = NULL;
    if (!r->api->enforce_rbac || strcmp(r->rd->group, "rbac.authorization.k8s.io") != 0 ||
        sim_store_get(r->api->sim->store, r->rd->store_key, ns_key(r), r->name, &cur) != 0)
        return true;
    bool ok = true;
    if (sim_api_patch_apply(ct, cur, body, len, r->rd->custom, &next, &err) == 0)
        ok = sim_api_rbac_may_write(r, next);
    json_decref(next);
    json_decref(cur);
    free(err);
    return ok;
}

static void do_patch(struct rreq *r)
{
    const char *ct = pw_http_req_header(r->req, "Content-Type");
    size_t len;
    const char *body = pw_http_req_body(r->req, &len);
    if (!patch_may_write(r, ct ? ct : "", body, len))
        return;
    struct rmw w = {r, NULL, body, len, ct ? ct : "", json_array(), NULL, 0};
    json_t *out = NULL;
    int rc = dry_run(r) ? mutate_dry(r, rmw_patch, &w, &out)
                        : sim_store_mutate(r->api->sim->store, r->rd->store_key, ns_key(r), r->name, rmw_patch, &w, &out);
    finish_write(r, &w, rc, out);
}

/* ---- delete ---- */

static char *delete_policy(struct rreq *r)
{
    const char *q = pw_http_req_query(r->req, "propagationPolicy");
    if (q && *q)
        return pw_xstrdup(q);
    size_t len;
    const char *body = pw_http_req_body(r->req, &len);
    if (!len)
        return NULL;
    json_t *opts = json_loadb(body, len, 0, NULL);
    const char *p = json_string_value(json_object_get(opts, "propagationPolicy"));
    char *out = p ? pw_xstrdup(p) : NULL;
    if (!out && json_is_boolean(json_object_get(opts, "orphanDependents")))
        out = pw_xstrdup(json_is_true(json_object_get(opts, "orphanDependents")) ? "Orphan" : "Background");
    const char *qo = pw_http_req_query(r->req, "orphanDependents");
    if (!out && qo)
        out = pw_xstrdup(strcmp(qo, "true") == 0 ? "Orphan" : "Background");
    json_decref(opts);
    return out;
}

static bool policy_ok(struct rreq *r, const char *policy)
{
    if (!policy || strcmp(policy, "Background") == 0 || strcmp(policy, "Foreground") == 0 ||
        strcmp(policy, "Orphan") == 0)
        return true;
    char *m = pw_xasprintf("DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"%s\": "
                           "supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\"", policy);
    rfail(r, 422, "Invalid", m, NULL);
    free(m);
    return false;
}

static void do_delete(struct rreq *r)
{
    char *policy = delete_policy(r);
    if (!policy_ok(r, policy)) {
        free(policy);
        return;
    }
    long grace = -1;
    const char *gq = pw_http_req_query(r->req, "gracePeriodSeconds");
    size_t blen;
    const char *body = pw_http_req_body(r->req, &blen);
    json_t *opts = blen ? json_loadb(body, blen, 0, NULL) : NULL;
    if (gq && *gq)
        pw_parse_long(gq, 0, 1000000000L, &grace);
    else if (json_is_integer(json_object_get(opts, "gracePeriodSeconds")))
        grace = (long)json_integer_value(json_object_get(opts, "gracePeriodSeconds"));
    json_t *pre = json_object_get(opts, "preconditions");
    if (json_is_object(pre)) { /* DeleteOptions.preconditions: uid and resourceVersion must match */
        json_t *cur;
        if (sim_store_get(r->api->sim->store, r->rd->store_key, ns_key(r), r->name, &cur) == 0) {
            const char *pu = json_string_value(json_object_get(pre, "uid"));
            const char *prv = json_string_value(json_object_get(pre, "resourceVersion"));
            json_t *cm = json_object_get(cur, "metadata");
            bool bad = (pu && strcmp(pu, json_string_value(json_object_get(cm, "uid")) ? json_string_value(json_object_get(cm, "uid")) : "") != 0) ||
                       (prv && strcmp(prv, json_string_value(json_object_get(cm, "resourceVersion")) ? json_string_value(json_object_get(cm, "resourceVersion")) : "") != 0);
            json_decref(cur);
            if (bad) {
                json_decref(opts);
                free(policy);
                rfail_code(r, PW_ECONFLICT, r->name);
                return;
            }
        }
    }
    json_decref(opts);
    json_t *out = NULL;
    int rc;
    if (dry_run(r)) {
        rc = sim_store_get(r->api->sim->store, r->rd->store_key, ns_key(r), r->name, &out);
    } else {
        rc = sim_api_delete_grace(r->api, r->rd, ns_key(r), r->name, policy, grace, &out);
    }
    free(policy);
    if (rc) {
        rfail_code(r, rc, r->name);
        return;
    }
    if (json_string_value(json_object_get(out, "kind")) && strcmp(json_string_value(json_object_get(out, "kind")), "Status") == 0)
        rreply(r, 200, out);
    else
        reply_obj(r, 200, out);
}

static void do_deletecollection(struct rreq *r)
{
    struct selectors s;
    if (!parse_selectors(r, &s))
        return;
    char *policy = delete_policy(r);
    if (!policy_ok(r, policy)) {
        free(policy);
        pw_labelsel_free(s.ls);
        sim_api_fieldsel_free(s.fs);
        return;
    }
    json_t *items;
    bool more;
    uint64_t rv;
    sim_store_list(r->api->sim->store, r->rd->store_key, r->rd->namespaced ? r->ns : "", NULL, 0, sel_filter, &s,
                   &items, &more, &rv);
    pw_labelsel_free(s.ls);
    sim_api_fieldsel_free(s.fs);
    json_t *deleted = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        json_t *m = json_object_get(it, "metadata");
        const char *ns = json_string_value(json_object_get(m, "namespace"));
        const char *name = json_string_value(json_object_get(m, "name"));
        if (!name)
            continue;
        json_t *out = NULL;
        if (sim_api_delete_rd(r->api, r->rd, r->rd->namespaced && ns ? ns : "", name, policy, &out) == 0)
            json_array_append(deleted, it);
        json_decref(out);
    }
    free(policy);
    json_decref(items);
    char gv[256], kind[200], rvs[32];
    snprintf(kind, sizeof(kind), "%sList", r->rd->kind);
    snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)sim_store_rv(r->api->sim->store));
    rreply(r, 200, json_pack("{s:s, s:s, s:{s:s}, s:o}", "kind", kind, "apiVersion", sim_api_gv(r->rd, gv, sizeof(gv)),
                             "metadata", "resourceVersion", rvs, "items", deleted));
}

/* ---- dispatch ---- */

static const struct {
    const char *verb;
    unsigned bit;
    bool needs_ns; /* for namespaced resources */
    void (*fn)(struct rreq *r);
} VERBS[] = {
    {"get", V_GET, true, do_get},
    {"list", V_LIST, false, do_list},
    {"watch", V_WATCH, false, do_watch},
    {"create", V_CREATE, true, do_create},
    {"update", V_UPDATE, true, do_update},
    {"patch", V_PATCH, true, do_patch},
    {"delete", V_DELETE, true, do_delete},
    {"deletecollection", V_DELETECOLLECTION, true, do_deletecollection},
};

void sim_api_rest_dispatch(struct rreq *r)
{
    for (size_t i = 0; i < sizeof(VERBS) / sizeof(VERBS[0]); i++) {
        if (strcmp(VERBS[i].verb, r->verb) != 0)
            continue;
        if (!(r->rd->verbs & VERBS[i].bit) || (r->sub && VERBS[i].bit != V_GET && VERBS[i].bit != V_UPDATE &&
                                               VERBS[i].bit != V_PATCH)) {
            rfail(r, 405, "MethodNotAllowed", "the server does not allow this method on the requested resource", NULL);
            return;
        }
        if (r->rd->namespaced && VERBS[i].needs_ns && !r->ns) {
            rfail(r, 404, "NotFound", "the server could not find the requested resource", NULL);
            return;
        }
        VERBS[i].fn(r);
        return;
    }
    rfail(r, 405, "MethodNotAllowed", "the server does not allow this method on the requested resource", NULL);
}
