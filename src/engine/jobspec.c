/* jobspec.c: builds the per-node prewarm Job (ARCHITECTURE.md §4) and reads its pod's statuses back
 * into per-image pull verdicts.
 *
 * The verdicts are classified from the kubelet's reasons (tables below) and, for pull errors, from
 * the runtime's message, because the kubelet says only "ErrImagePull" and leaves "not found" versus
 * "unauthorized" versus "registry down" in the text. The substrings come from containerd, CRI-O and
 * the registries' own errors (distribution's "manifest unknown", Docker Hub's "pull access denied"). */
#include "engine/jobspec.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "base/digest.h"
#include "base/err.h"
#include "base/mem.h"

#define NAME_MAX_LEN 63
#define HASH_HEX 10
#define RUN_AS 65532
#define VOLUME "prewarm"
#define MOUNT "/prewarm"
#define TRUE_PATH "/prewarm/true"

/* ---- the name ---------------------------------------------------------------------------------- */

char *pw_jobspec_name(const char *task_id, const char *node_name)
{
    const char *node = node_name != NULL ? node_name : "";
    const void *part = node;
    size_t part_len = strlen(node);
    char hex[PW_SHA256_HEX_LEN + 1];
    pw_sha256_hex(&part, &part_len, 1, hex);

    /* "pw-" + task + "-" + 10 hex: the task part gets what is left of 63. */
    size_t task_max = NAME_MAX_LEN - 3 - 1 - HASH_HEX;
    const char *task = task_id != NULL ? task_id : "";
    size_t tn = strlen(task);
    if (tn > task_max)
        tn = task_max;
    char *name = pw_xmalloc(NAME_MAX_LEN + 1);
    size_t n = 0;
    memcpy(name, "pw-", 3);
    n = 3;
    for (size_t i = 0; i < tn; i++) {
        char c = (char)tolower((unsigned char)task[i]);
        name[n++] = ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) ? c : '-';
    }
    name[n++] = '-';
    memcpy(name + n, hex, HASH_HEX);
    n += HASH_HEX;
    name[n] = '\0';
    return name;
}

/* ---- the manifest ------------------------------------------------------------------------------ */

static json_t *container_security_context(void)
{
    return json_pack("{s:b, s:b, s:b, s:{s:[s]}}", "allowPrivilegeEscalation", 0, "readOnlyRootFilesystem", 1,
                     "runAsNonRoot", 1, "capabilities", "drop", "ALL");
}

static json_t *tiny_resources(void)
{
    return json_pack("{s:{s:s, s:s}, s:{s:s, s:s}}", "requests", "cpu", "1m", "memory", "4Mi", "limits", "cpu", "10m",
                     "memory", "16Mi");
}

static json_t *labels(const char *task_id, const char *instance)
{
    json_t *l = json_pack("{s:s, s:s}", PW_JOB_LABEL_MANAGED_BY, PW_JOB_MANAGED_BY, PW_JOB_LABEL_TASK, task_id);
    if (instance != NULL && *instance)
        json_object_set_new(l, PW_JOB_LABEL_INSTANCE, json_string(instance));
    return l;
}

static json_t *install_container(const char *helper_image)
{
    return json_pack("{s:s, s:s, s:s, s:[s,s,s], s:[{s:s, s:s}], s:o, s:o}", "name", "install", "image", helper_image,
                     "imagePullPolicy", "IfNotPresent", "command", "/prewarm-true", "install", TRUE_PATH,
                     "volumeMounts", "name", VOLUME, "mountPath", MOUNT, "resources", tiny_resources(),
                     "securityContext", container_security_context());
}

static json_t *image_container(size_t i, const char *image, const char *pull_policy)
{
    char name[32];
    snprintf(name, sizeof name, "img-%zu", i);
    return json_pack("{s:s, s:s, s:s, s:[s], s:[{s:s, s:s, s:b}], s:o, s:o}", "name", name, "image", image,
                     "imagePullPolicy", pull_policy, "command", TRUE_PATH, "volumeMounts", "name", VOLUME, "mountPath",
                     MOUNT, "readOnly", 1, "resources", tiny_resources(), "securityContext",
                     container_security_context());
}

static json_t *tolerations(const json_t *given)
{
    if (given != NULL)
        return json_deep_copy(given);
    return json_pack("[{s:s, s:s}]", "operator", "Exists", "effect", "NoExecute");
}

json_t *pw_jobspec_build(const struct pw_jobspec_params *p)
{
    if (p == NULL || p->task_id == NULL || p->node_name == NULL || p->namespace_ == NULL || p->helper_image == NULL ||
        p->images == NULL || p->n_images == 0)
        return NULL;
    const char *policy = p->pull_policy != NULL ? p->pull_policy : "IfNotPresent";

    /* json_pack fails only on a NULL or non-UTF-8 string; a Job missing a container would shift the
     * img-<i> indexes, so any failure fails the whole build. */
    json_t *containers = json_array();
    json_t *secrets = json_array();
    bool ok = true;
    for (size_t i = 0; i < p->n_images && ok; i++)
        ok = json_array_append_new(containers, image_container(i, p->images[i], policy)) == 0;
    for (size_t i = 0; i < p->n_pull_secrets && ok; i++)
        ok = json_array_append_new(secrets, json_pack("{s:s}", "name", p->pull_secrets[i])) == 0;
    if (!ok) {
        json_decref(containers);
        json_decref(secrets);
        return NULL;
    }

    json_t *pod_spec = json_pack(
        "{s:s, s:s, s:b, s:b, s:i, s:o, s:o, s:{s:b, s:i, s:i, s:{s:s}}, s:[{s:s, s:{s:s, s:s}}],"
        " s:[o], s:o}",
        "nodeName", p->node_name, "restartPolicy", "Never", "automountServiceAccountToken", 0, "enableServiceLinks", 0,
        "terminationGracePeriodSeconds", 0, "tolerations", tolerations(p->tolerations), "imagePullSecrets", secrets,
        "securityContext", "runAsNonRoot", 1, "runAsUser", RUN_AS, "runAsGroup", RUN_AS, "seccompProfile", "type",
        "RuntimeDefault", "volumes", "name", VOLUME, "emptyDir", "medium", "Memory", "sizeLimit", "1Mi",
        "initContainers", install_container(p->helper_image), "containers", containers);

    char *name = pw_jobspec_name(p->task_id, p->node_name);
    json_t *spec = json_pack("{s:i, s:{s:{s:o}, s:o}}", "backoffLimit", p->backoff_limit > 0 ? p->backoff_limit : 0,
                             "template", "metadata", "labels", labels(p->task_id, p->instance), "spec", pod_spec);
    if (p->active_deadline_s > 0)
        json_object_set_new(spec, "activeDeadlineSeconds", json_integer(p->active_deadline_s));
    if (p->ttl_s >= 0)
        json_object_set_new(spec, "ttlSecondsAfterFinished", json_integer(p->ttl_s));
    json_t *job = json_pack("{s:s, s:s, s:{s:s, s:s, s:o, s:{s:s}}, s:o}", "apiVersion", "batch/v1", "kind", "Job",
                            "metadata", "name", name, "namespace", p->namespace_, "labels", labels(p->task_id, p->instance),
                            "annotations", PW_JOB_ANNOTATION_NODE, p->node_name, "spec", spec);
    free(name);
    return job;
}

/* ---- reading the pod back ---------------------------------------------------------------------- */

/* Kubelet reasons for a waiting container, and what each means for the pull. Reasons absent here
 * (and ErrImagePull / ImagePullBackOff, classified by message) leave the image waiting. */
static const struct {
    const char *reason;
    enum pw_pull_class cls;
} WAITING_REASONS[] = {
    {"ContainerCreating", PW_PULL_WAITING},
    {"PodInitializing", PW_PULL_WAITING},
    {"InvalidImageName", PW_PULL_FAILED_PERMANENT},
    {"ErrImageNeverPull", PW_PULL_FAILED_PERMANENT},
    {"CreateContainerConfigError", PW_PULL_FAILED_PERMANENT},
    {"CreateContainerError", PW_PULL_FAILED_PERMANENT},
    {"RunContainerError", PW_PULL_FAILED_PERMANENT},
    {"RegistryUnavailable", PW_PULL_FAILED_RETRYABLE},
    {"ImageInspectError", PW_PULL_FAILED_RETRYABLE},
    {"SignatureValidationFailed", PW_PULL_FAILED_PERMANENT},
};

/* Pull-error reasons whose class depends on the runtime's message. */
static const char *const PULL_ERROR_REASONS[] = {"ErrImagePull", "ImagePullBackOff"};

/* Substrings of pull-error messages (matched lowercased), tried in this order: a rate limit first
 * (transient whatever else the message says), then authorization (Docker Hub's "pull access denied,
 * repository does not exist or may require authorization" is both, and a pull secret fixes it),
 * then not-found. Anything else (timeouts, 5xx, DNS, resets) may pass, so it is retryable. Entries
 * with word set are HTTP status codes, matched only as a word of their own so that the hex of a
 * digest never matches. */
static const struct {
    const char *needle;
    bool word;
    enum pw_pull_class cls;
} MESSAGE_CLASSES[] = {
    {"toomanyrequests", false, PW_PULL_FAILED_RETRYABLE},
    {"too many requests", false, PW_PULL_FAILED_RETRYABLE},
    {"rate limit", false, PW_PULL_FAILED_RETRYABLE},
    {"429", true, PW_PULL_FAILED_RETRYABLE},
    {"unauthorized", false, PW_PULL_FAILED_AUTH},
    {"forbidden", false, PW_PULL_FAILED_AUTH},
    {"denied", false, PW_PULL_FAILED_AUTH},
    {"authorization failed", false, PW_PULL_FAILED_AUTH},
    {"failed to authorize", false, PW_PULL_FAILED_AUTH},
    {"authentication required", false, PW_PULL_FAILED_AUTH},
    {"no basic auth credentials", false, PW_PULL_FAILED_AUTH},
    {"code = permissiondenied", false, PW_PULL_FAILED_AUTH},
    {"code = unauthenticated", false, PW_PULL_FAILED_AUTH},
    {"401", true, PW_PULL_FAILED_AUTH},
    {"403", true, PW_PULL_FAILED_AUTH},
    {"code = notfound", false, PW_PULL_FAILED_NOTFOUND},
    {"manifest unknown", false, PW_PULL_FAILED_NOTFOUND},
    {"name unknown", false, PW_PULL_FAILED_NOTFOUND},
    {"not found", false, PW_PULL_FAILED_NOTFOUND},
    {"repository does not exist", false, PW_PULL_FAILED_NOTFOUND},
    {"no such image", false, PW_PULL_FAILED_NOTFOUND},
    {"404", true, PW_PULL_FAILED_NOTFOUND},
};

/* Pod-level failure reasons that a new pod may get past (the node was busy or going away). Any other
 * reason (TaintToleration, NodeAffinity, DeadlineExceeded, ...) is permanent for this attempt. */
static const char *const POD_RETRYABLE_REASONS[] = {
    "Evicted",     "NodeShutdown", "Shutdown",
    "Terminated",  "Preempting",   "OutOfcpu",
    "OutOfmemory", "OutOfpods",    "UnexpectedAdmissionError",
};

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Whether code occurs in msg as a word of its own (no alphanumeric on either side). */
static bool has_word(const char *msg, const char *code)
{
    size_t n = strlen(code);
    for (const char *p = strstr(msg, code); p != NULL; p = strstr(p + 1, code)) {
        bool left = p == msg || !isalnum((unsigned char)p[-1]);
        bool right = !isalnum((unsigned char)p[n]);
        if (left && right)
            return true;
    }
    return false;
}

static enum pw_pull_class classify_message(const char *msg)
{
    size_t n = strlen(msg);
    char *low = pw_xmalloc(n + 1);
    for (size_t i = 0; i <= n; i++)
        low[i] = (char)tolower((unsigned char)msg[i]);
    enum pw_pull_class cls = PW_PULL_FAILED_RETRYABLE;
    for (size_t i = 0; i < COUNT(MESSAGE_CLASSES); i++) {
        const char *needle = MESSAGE_CLASSES[i].needle;
        bool hit = MESSAGE_CLASSES[i].word ? has_word(low, needle) : strstr(low, needle) != NULL;
        if (hit) {
            cls = MESSAGE_CLASSES[i].cls;
            break;
        }
    }
    free(low);
    return cls;
}

enum pw_pull_class pw_jobspec_classify_message(const char *msg)
{
    return classify_message(msg != NULL ? msg : "");
}

/* Copies src into dst of size n, cut to fit (the kubelet's messages can be long). */
static void copy_cut(char *dst, size_t n, const char *src)
{
    size_t len = src != NULL ? strlen(src) : 0;
    if (len >= n)
        len = n - 1;
    if (len > 0)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

static void set_status(struct pw_image_status *st, enum pw_pull_class cls, const char *reason, const char *message)
{
    st->cls = cls;
    copy_cut(st->reason, sizeof st->reason, reason);
    copy_cut(st->message, sizeof st->message, message);
}

static const char *str_at(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s;
}

/* Fills st from one container status; returns false when it says nothing (no state yet). */
static bool read_terminated(const json_t *term, struct pw_image_status *st)
{
    if (!json_is_object(term))
        return false;
    json_int_t code = json_integer_value(json_object_get(term, "exitCode"));
    const char *reason = str_at(term, "reason");
    if (code == 0) {
        set_status(st, PW_PULL_DONE, reason != NULL ? reason : "Completed", str_at(term, "message"));
        return true;
    }
    char msg[512];
    const char *m = str_at(term, "message");
    if (m == NULL || m[0] == '\0') {
        snprintf(msg, sizeof msg, "container exited with code %lld", (long long)code);
        m = msg;
    }
    set_status(st, PW_PULL_FAILED_PERMANENT, reason != NULL ? reason : "Error", m);
    return true;
}

static void read_waiting(const json_t *waiting, struct pw_image_status *st)
{
    const char *reason = str_at(waiting, "reason");
    const char *message = str_at(waiting, "message");
    if (reason == NULL) {
        set_status(st, PW_PULL_WAITING, "", message);
        return;
    }
    if (in_list(reason, PULL_ERROR_REASONS, COUNT(PULL_ERROR_REASONS))) {
        set_status(st, classify_message(message != NULL ? message : ""), reason, message);
        return;
    }
    for (size_t i = 0; i < COUNT(WAITING_REASONS); i++) {
        if (strcmp(reason, WAITING_REASONS[i].reason) == 0) {
            set_status(st, WAITING_REASONS[i].cls, reason, message);
            return;
        }
    }
    set_status(st, PW_PULL_WAITING, reason, message);
}

static void read_container(const json_t *cs, struct pw_image_status *st)
{
    const json_t *state = json_object_get(cs, "state");
    const json_t *last = json_object_get(json_object_get(cs, "lastState"), "terminated");
    if (read_terminated(json_object_get(state, "terminated"), st))
        return;
    if (json_is_object(json_object_get(state, "running"))) {
        set_status(st, PW_PULL_DONE, "Running", "");
        return;
    }
    /* a waiting container that has already terminated once: the termination says more */
    if (json_is_object(last) && json_integer_value(json_object_get(last, "exitCode")) != 0 && read_terminated(last, st))
        return;
    const json_t *waiting = json_object_get(state, "waiting");
    if (json_is_object(waiting))
        read_waiting(waiting, st);
}

/* The init container copies prewarm-true; if its own (helper) image cannot be pulled nothing else
 * starts, so its failure is reported on every undecided image, marked as the helper's. */
static void read_install(const json_t *pod_status, size_t n, struct pw_image_status *out)
{
    const json_t *inits = json_object_get(pod_status, "initContainerStatuses");
    size_t i;
    const json_t *cs;
    json_array_foreach(inits, i, cs)
    {
        const char *name = str_at(cs, "name");
        if (name == NULL || strcmp(name, "install") != 0)
            continue;
        struct pw_image_status st;
        set_status(&st, PW_PULL_WAITING, "", "");
        read_container(cs, &st);
        if (st.cls == PW_PULL_WAITING || st.cls == PW_PULL_DONE)
            return;
        /* not the image's fault: a missing or forbidden helper image will not fix itself */
        enum pw_pull_class cls =
            st.cls == PW_PULL_FAILED_RETRYABLE ? PW_PULL_FAILED_RETRYABLE : PW_PULL_FAILED_PERMANENT;
        char msg[sizeof st.message + 64];
        snprintf(msg, sizeof msg, "init container install (helper image): %s", st.message);
        for (size_t k = 0; k < n; k++)
            if (out[k].cls == PW_PULL_WAITING)
                set_status(&out[k], cls, st.reason, msg);
    }
}

static void read_pod_failure(const json_t *pod_status, size_t n, struct pw_image_status *out)
{
    const char *phase = str_at(pod_status, "phase");
    if (phase == NULL || strcmp(phase, "Failed") != 0)
        return;
    const char *reason = str_at(pod_status, "reason");
    const char *message = str_at(pod_status, "message");
    if (reason == NULL)
        reason = "PodFailed";
    if (message == NULL)
        message = "the pod failed before its containers ran";
    enum pw_pull_class cls = in_list(reason, POD_RETRYABLE_REASONS, COUNT(POD_RETRYABLE_REASONS))
                                 ? PW_PULL_FAILED_RETRYABLE
                                 : PW_PULL_FAILED_PERMANENT;
    for (size_t k = 0; k < n; k++)
        if (out[k].cls == PW_PULL_WAITING)
            set_status(&out[k], cls, reason, message);
}

int pw_jobspec_pod_status(const json_t *pod, size_t n_images, struct pw_image_status *out)
{
    if (!json_is_object(pod))
        return PW_EINVAL;
    for (size_t k = 0; k < n_images; k++)
        set_status(&out[k], PW_PULL_WAITING, "", "");
    const json_t *status = json_object_get(pod, "status");
    size_t i;
    const json_t *cs;
    json_array_foreach(json_object_get(status, "containerStatuses"), i, cs)
    {
        const char *name = str_at(cs, "name");
        char *end = NULL;
        if (name == NULL || strncmp(name, "img-", 4) != 0 || name[4] < '0' || name[4] > '9')
            continue;
        unsigned long idx = strtoul(name + 4, &end, 10);
        if (*end != '\0' || idx >= n_images)
            continue;
        read_container(cs, &out[idx]);
    }
    read_install(status, n_images, out);
    read_pod_failure(status, n_images, out);
    return 0;
}
