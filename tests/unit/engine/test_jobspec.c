/* Unit tests for src/engine/jobspec: the Job manifest field by field (and against the `restricted`
 * Pod Security Standard, checked here rule by rule), the Job name, and the classification of pod
 * statuses written as the kubelet and containerd write them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"
#include "engine/jobspec.h"

#define DIGEST_REF                                                                                                     \
    "registry.example.com:5000/team/app@sha256:"                                                                       \
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
static const char *const IMAGES[] = {"nginx:1.27", "gcr.io/distroless/static-debian12:nonroot", DIGEST_REF};
static const char *const SECRETS[] = {"regcred", "other"};

static struct pw_jobspec_params params(void)
{
    struct pw_jobspec_params p = {
        .task_id = "t-01jd5x3k9m2q",
        .node_name = "node-7",
        .namespace_ = "prewarm",
        .images = IMAGES,
        .n_images = 3,
        .pull_policy = "IfNotPresent",
        .pull_secrets = SECRETS,
        .n_pull_secrets = 2,
        .backoff_limit = 3,
        .active_deadline_s = 600,
        .ttl_s = 3600,
        .helper_image = "ghcr.io/prewarm/prewarm:0.1.0",
        .tolerations = NULL,
    };
    return p;
}

/* path like "spec.template.spec.nodeName" or "containers.1.image" (numbers index arrays). */
static json_t *at(json_t *root, const char *path)
{
    char *copy = pw_xstrdup(path);
    json_t *cur = root;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ".", &save); tok != NULL && cur != NULL; tok = strtok_r(NULL, ".", &save)) {
        if (json_is_array(cur))
            cur = json_array_get(cur, strtoul(tok, NULL, 10));
        else
            cur = json_object_get(cur, tok);
    }
    free(copy);
    return cur;
}

static const char *str(json_t *root, const char *path)
{
    json_t *v = at(root, path);
    if (!json_is_string(v))
        fail_msg("%s: not a string", path);
    return json_string_value(v);
}

static long long num(json_t *root, const char *path)
{
    json_t *v = at(root, path);
    if (!json_is_integer(v))
        fail_msg("%s: not an integer", path);
    return json_integer_value(v);
}

static bool is_true(json_t *root, const char *path)
{
    return json_is_true(at(root, path));
}

static bool is_false(json_t *root, const char *path)
{
    return json_is_false(at(root, path));
}

/* The `restricted` Pod Security Standard (v1.32), as the admission plugin checks it. Every rule of
 * the baseline and restricted profiles that the spec could break is checked. */
static void assert_restricted(json_t *spec)
{
    static const char *const ALLOWED_VOLUMES[] = {
        "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"};
    assert_null(json_object_get(spec, "hostNetwork"));
    assert_null(json_object_get(spec, "hostPID"));
    assert_null(json_object_get(spec, "hostIPC"));
    assert_null(json_object_get(spec, "hostUsers"));
    json_t *psc = json_object_get(spec, "securityContext");
    assert_true(is_true(psc, "runAsNonRoot"));
    assert_true(num(psc, "runAsUser") != 0);
    assert_string_equal(str(psc, "seccompProfile.type"), "RuntimeDefault");
    assert_null(json_object_get(psc, "sysctls"));
    assert_null(json_object_get(psc, "seLinuxOptions"));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(spec, "volumes"), i, v)
    {
        const char *key;
        json_t *val;
        json_object_foreach(v, key, val)
        {
            if (strcmp(key, "name") == 0)
                continue;
            bool ok = false;
            for (size_t k = 0; k < sizeof ALLOWED_VOLUMES / sizeof ALLOWED_VOLUMES[0]; k++)
                ok = ok || strcmp(key, ALLOWED_VOLUMES[k]) == 0;
            if (!ok)
                fail_msg("volume type %s not allowed by restricted", key);
        }
    }
    const char *lists[] = {"initContainers", "containers"};
    for (size_t l = 0; l < 2; l++) {
        json_t *c;
        size_t n = 0;
        json_array_foreach(json_object_get(spec, lists[l]), i, c)
        {
            n++;
            json_t *sc = json_object_get(c, "securityContext");
            assert_non_null(sc);
            assert_true(is_false(sc, "allowPrivilegeEscalation"));
            assert_null(json_object_get(sc, "privileged"));
            assert_null(json_object_get(sc, "procMount"));
            assert_null(json_object_get(sc, "capabilities.add"));
            json_t *drop = at(sc, "capabilities.drop");
            assert_int_equal(json_array_size(drop), 1);
            assert_string_equal(json_string_value(json_array_get(drop, 0)), "ALL");
            json_t *user = json_object_get(sc, "runAsUser");
            assert_true(user == NULL || json_integer_value(user) != 0);
            json_t *nonroot = json_object_get(sc, "runAsNonRoot");
            assert_true(nonroot == NULL || json_is_true(nonroot));
            json_t *sec = json_object_get(sc, "seccompProfile");
            assert_true(sec == NULL || strcmp(str(sec, "type"), "Unconfined") != 0);
            json_t *port;
            size_t j;
            json_array_foreach(json_object_get(c, "ports"), j, port) assert_null(json_object_get(port, "hostPort"));
        }
        assert_true(n > 0);
    }
}

/* Labels have dots in their keys, so they are read with json_object_get. */
static const char *label(json_t *labels, const char *key)
{
    return json_string_value(json_object_get(labels, key));
}

/* The instance label goes on the Job and its pod when given, and only then. */
static void test_instance_label(void **state)
{
    (void)state;
    struct pw_jobspec_params p = params();
    p.instance = "blue";
    json_t *job = pw_jobspec_build(&p);
    assert_non_null(job);
    assert_int_equal(json_object_size(at(job, "metadata.labels")), 3);
    assert_string_equal(label(at(job, "metadata.labels"), "prewarm.io/instance"), "blue");
    assert_string_equal(label(at(job, "spec.template.metadata.labels"), "prewarm.io/instance"), "blue");
    json_decref(job);
    p.instance = "";
    job = pw_jobspec_build(&p);
    assert_null(json_object_get(at(job, "metadata.labels"), "prewarm.io/instance"));
    json_decref(job);
}

static void test_manifest_fields(void **state)
{
    (void)state;
    struct pw_jobspec_params p = params();
    json_t *job = pw_jobspec_build(&p);
    assert_non_null(job);
    char *name = pw_jobspec_name(p.task_id, p.node_name);

    assert_string_equal(str(job, "apiVersion"), "batch/v1");
    assert_string_equal(str(job, "kind"), "Job");
    assert_string_equal(str(job, "metadata.name"), name);
    assert_string_equal(str(job, "metadata.namespace"), "prewarm");
    json_t *labels = at(job, "metadata.labels");
    assert_int_equal(json_object_size(labels), 2);
    assert_string_equal(label(labels, "app.kubernetes.io/managed-by"), "prewarm");
    assert_string_equal(label(labels, "prewarm.io/task"), "t-01jd5x3k9m2q");
    json_t *ann = at(job, "metadata.annotations");
    assert_string_equal(label(ann, "prewarm.io/node"), "node-7");

    assert_int_equal(num(job, "spec.backoffLimit"), 3);
    assert_int_equal(num(job, "spec.activeDeadlineSeconds"), 600);
    assert_int_equal(num(job, "spec.ttlSecondsAfterFinished"), 3600);
    json_t *tl = at(job, "spec.template.metadata.labels");
    assert_int_equal(json_object_size(tl), 2);
    assert_string_equal(label(tl, "app.kubernetes.io/managed-by"), "prewarm");
    assert_string_equal(label(tl, "prewarm.io/task"), "t-01jd5x3k9m2q");

    json_t *spec = at(job, "spec.template.spec");
    assert_string_equal(str(spec, "nodeName"), "node-7");
    assert_string_equal(str(spec, "restartPolicy"), "Never");
    assert_true(is_false(spec, "automountServiceAccountToken"));
    assert_true(is_false(spec, "enableServiceLinks"));
    assert_int_equal(num(spec, "terminationGracePeriodSeconds"), 0);
    assert_int_equal(json_array_size(at(spec, "tolerations")), 1);
    assert_string_equal(str(spec, "tolerations.0.operator"), "Exists");
    assert_string_equal(str(spec, "tolerations.0.effect"), "NoExecute");
    assert_null(at(spec, "tolerations.0.key"));
    assert_int_equal(json_array_size(at(spec, "imagePullSecrets")), 2);
    assert_string_equal(str(spec, "imagePullSecrets.0.name"), "regcred");
    assert_string_equal(str(spec, "imagePullSecrets.1.name"), "other");
    assert_true(is_true(spec, "securityContext.runAsNonRoot"));
    assert_int_equal(num(spec, "securityContext.runAsUser"), 65532);
    assert_int_equal(num(spec, "securityContext.runAsGroup"), 65532);
    assert_string_equal(str(spec, "securityContext.seccompProfile.type"), "RuntimeDefault");
    assert_null(at(spec, "serviceAccountName"));
    assert_null(at(spec, "nodeSelector"));
    assert_null(at(spec, "affinity"));

    assert_int_equal(json_array_size(at(spec, "volumes")), 1);
    assert_string_equal(str(spec, "volumes.0.name"), "prewarm");
    assert_string_equal(str(spec, "volumes.0.emptyDir.medium"), "Memory");
    assert_string_equal(str(spec, "volumes.0.emptyDir.sizeLimit"), "1Mi");

    assert_int_equal(json_array_size(at(spec, "initContainers")), 1);
    json_t *init = at(spec, "initContainers.0");
    assert_string_equal(str(init, "name"), "install");
    assert_string_equal(str(init, "image"), "ghcr.io/prewarm/prewarm:0.1.0");
    assert_int_equal(json_array_size(at(init, "command")), 3);
    assert_string_equal(str(init, "command.0"), "/prewarm-true");
    assert_string_equal(str(init, "command.1"), "install");
    assert_string_equal(str(init, "command.2"), "/prewarm/true");
    assert_string_equal(str(init, "volumeMounts.0.name"), "prewarm");
    assert_string_equal(str(init, "volumeMounts.0.mountPath"), "/prewarm");
    assert_null(at(init, "volumeMounts.0.readOnly")); /* it writes there */

    json_t *containers = at(spec, "containers");
    assert_int_equal(json_array_size(containers), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *c = json_array_get(containers, i);
        char want[16];
        snprintf(want, sizeof want, "img-%zu", i);
        assert_string_equal(str(c, "name"), want);
        assert_string_equal(str(c, "image"), IMAGES[i]);
        assert_string_equal(str(c, "imagePullPolicy"), "IfNotPresent");
        assert_int_equal(json_array_size(at(c, "command")), 1);
        assert_string_equal(str(c, "command.0"), "/prewarm/true");
        assert_null(at(c, "args"));
        assert_string_equal(str(c, "volumeMounts.0.name"), "prewarm");
        assert_string_equal(str(c, "volumeMounts.0.mountPath"), "/prewarm");
        assert_true(is_true(c, "volumeMounts.0.readOnly"));
        assert_string_equal(str(c, "resources.requests.cpu"), "1m");
        assert_string_equal(str(c, "resources.requests.memory"), "4Mi");
        assert_string_equal(str(c, "resources.limits.cpu"), "10m");
        assert_string_equal(str(c, "resources.limits.memory"), "16Mi");
        assert_true(is_false(c, "securityContext.allowPrivilegeEscalation"));
        assert_true(is_true(c, "securityContext.readOnlyRootFilesystem"));
        assert_string_equal(str(c, "securityContext.capabilities.drop.0"), "ALL");
    }
    assert_restricted(spec);

    /* the manifest serialises and reloads unchanged */
    char *text = json_dumps(job, JSON_COMPACT | JSON_SORT_KEYS);
    json_t *again = json_loads(text, 0, NULL);
    assert_true(json_equal(job, again));
    json_decref(again);
    free(text);
    free(name);
    json_decref(job);
}

static void test_manifest_options(void **state)
{
    (void)state;
    struct pw_jobspec_params p = params();
    json_t *tol = json_loads("[{\"key\":\"node.kubernetes.io/unreachable\",\"operator\":\"Exists\","
                             "\"effect\":\"NoExecute\",\"tolerationSeconds\":30}]",
                             0, NULL);
    p.tolerations = tol;
    p.pull_policy = NULL;
    p.n_pull_secrets = 0;
    p.pull_secrets = NULL;
    p.active_deadline_s = 0;
    p.ttl_s = -1;
    p.backoff_limit = 0;
    p.n_images = 1;
    json_t *job = pw_jobspec_build(&p);
    assert_non_null(job);
    json_t *spec = at(job, "spec.template.spec");
    assert_true(json_equal(at(spec, "tolerations"), tol));
    assert_true(at(spec, "tolerations") != tol); /* a copy */
    assert_string_equal(str(spec, "containers.0.imagePullPolicy"), "IfNotPresent");
    assert_int_equal(json_array_size(at(spec, "containers")), 1);
    assert_int_equal(json_array_size(at(spec, "imagePullSecrets")), 0);
    assert_null(at(job, "spec.activeDeadlineSeconds"));
    assert_null(at(job, "spec.ttlSecondsAfterFinished"));
    assert_int_equal(num(job, "spec.backoffLimit"), 0);
    json_decref(job);

    p.pull_policy = "Always";
    p.tolerations = NULL;
    p.n_images = 3;
    job = pw_jobspec_build(&p);
    assert_string_equal(str(job, "spec.template.spec.containers.2.imagePullPolicy"), "Always");
    json_decref(job);

    /* what the Job cannot be without */
    struct pw_jobspec_params bad = params();
    bad.helper_image = NULL;
    assert_null(pw_jobspec_build(&bad));
    bad = params();
    bad.n_images = 0;
    assert_null(pw_jobspec_build(&bad));
    bad = params();
    bad.node_name = NULL;
    assert_null(pw_jobspec_build(&bad));
    assert_null(pw_jobspec_build(NULL));
    /* a string that cannot be JSON fails the whole Job, not just its container */
    static const char *const bad_images[] = {"nginx:1.27", "bad\xff:1"};
    bad = params();
    bad.images = bad_images;
    bad.n_images = 2;
    assert_null(pw_jobspec_build(&bad));
    static const char *const bad_secrets[] = {"regcred", NULL};
    bad = params();
    bad.pull_secrets = bad_secrets;
    assert_null(pw_jobspec_build(&bad));
    bad = params();
    bad.node_name = "node\xfe";
    assert_null(pw_jobspec_build(&bad));
    json_decref(tol);
}

static bool dns1123_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !(c == '-' && i > 0 && i + 1 < n))
            return false;
    }
    return true;
}

static void test_name(void **state)
{
    (void)state;
    /* SHA-256("node-7") starts with the 10 hex below (printf node-7 | sha256sum) */
    char *a = pw_jobspec_name("t-01jd5x3k9m2q", "node-7");
    assert_string_equal(a, "pw-t-01jd5x3k9m2q-c346d3879a");
    char *b = pw_jobspec_name("t-01jd5x3k9m2q", "node-7");
    assert_string_equal(a, b); /* deterministic */
    char *c = pw_jobspec_name("t-01jd5x3k9m2q", "node-8");
    assert_string_not_equal(a, c);
    char *d = pw_jobspec_name("T-01JD5X3K9M2Q", "node-7");
    assert_string_equal(a, d); /* lowercased */
    free(a);
    free(b);
    free(c);
    free(d);

    char long_node[300];
    memset(long_node, 'n', 253);
    long_node[253] = '\0';
    char long_task[200];
    memset(long_task, 'x', 150);
    long_task[150] = '\0';
    const char *tasks[] = {"t-1", long_task, "Task_With.Odd/Chars", "", "t-01jd5x3k9m2q"};
    const char *nodes[] = {"node-1", long_node, "ip-10-0-0-1.ec2.internal", "", "N"};
    for (size_t i = 0; i < 5; i++) {
        for (size_t j = 0; j < 5; j++) {
            char *n = pw_jobspec_name(tasks[i], nodes[j]);
            if (!dns1123_label(n))
                fail_msg("'%s' is not a DNS-1123 label", n);
            assert_true(strncmp(n, "pw-", 3) == 0);
            free(n);
        }
    }
    /* long names stay distinct per node: the hash is never cut */
    char other_node[300];
    memcpy(other_node, long_node, sizeof long_node);
    other_node[252] = 'm';
    char *x = pw_jobspec_name(long_task, long_node);
    char *y = pw_jobspec_name(long_task, other_node);
    assert_int_equal(strlen(x), 63);
    assert_string_not_equal(x, y);
    free(x);
    free(y);
    char *odd = pw_jobspec_name("Task_With.Odd/Chars", "node-7");
    assert_string_equal(odd, "pw-task-with-odd-chars-c346d3879a");
    free(odd);
}

/* ---- pod statuses ------------------------------------------------------------------------------ */

#define POD_HEAD                                                                                                       \
    "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"pw-t-1-c346d3879a-x7k2p\","                      \
    "\"namespace\":\"prewarm\"},\"spec\":{\"nodeName\":\"node-7\"},"

/* A container status in the kubelet's shape with the given state object. */
#define CS(name, image, state)                                                                                         \
    "{\"name\":\"" name "\",\"image\":\"" image "\",\"imageID\":\"\",\"ready\":false,"                                 \
    "\"restartCount\":0,\"started\":false,\"state\":" state "}"

static json_t *load(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (j == NULL)
        fail_msg("fixture: %s at %d", err.text, err.position);
    return j;
}

static void classify(const char *pod_text, size_t n, struct pw_image_status *out)
{
    json_t *pod = load(pod_text);
    assert_int_equal(pw_jobspec_pod_status(pod, n, out), 0);
    json_decref(pod);
}

static void test_pod_creating(void **state)
{
    (void)state;
    struct pw_image_status st[2];
    classify(
        POD_HEAD
        "\"status\":{\"phase\":\"Pending\",\"hostIP\":\"10.0.0.7\","
        "\"startTime\":\"2026-11-27T10:00:00Z\","
        "\"initContainerStatuses\":[" CS(
            "install", "ghcr.io/prewarm/prewarm:0.1.0",
            "{\"running\":{\"startedAt\":"
            "\"2026-11-27T10:00:01Z\"}}") "],"
                                          "\"containerStatuses\":[" CS(
                                              "img-0", "nginx:1.27",
                                              "{\"waiting\":{\"reason\":\"PodInitializing\"}}") "," CS("img-1",
                                                                                                       "redis:7",
                                                                                                       "{\"waiting\":{"
                                                                                                       "\"reason\":"
                                                                                                       "\"ContainerCrea"
                                                                                                       "ting\"}}") "]}"
                                                                                                                   "}",
        2, st);
    assert_int_equal(st[0].cls, PW_PULL_WAITING);
    assert_string_equal(st[0].reason, "PodInitializing");
    assert_int_equal(st[1].cls, PW_PULL_WAITING);
    /* no status at all yet */
    classify(POD_HEAD "\"status\":{\"phase\":\"Pending\"}}", 2, st);
    assert_int_equal(st[0].cls, PW_PULL_WAITING);
    assert_string_equal(st[0].reason, "");
    assert_int_equal(st[1].cls, PW_PULL_WAITING);
}

static void test_pod_done(void **state)
{
    (void)state;
    struct pw_image_status st[3];
    classify(POD_HEAD
             "\"status\":{\"phase\":\"Running\",\"containerStatuses\":["
             "{\"name\":\"img-0\",\"image\":\"docker.io/library/nginx:1.27\","
             "\"imageID\":\"docker.io/library/nginx@sha256:"
             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
             "\"containerID\":\"containerd://4c2a\",\"ready\":false,\"restartCount\":0,"
             "\"started\":false,\"state\":{\"terminated\":{\"exitCode\":0,\"reason\":\"Completed\","
             "\"startedAt\":\"2026-11-27T10:00:03Z\",\"finishedAt\":\"2026-11-27T10:00:03Z\","
             "\"containerID\":\"containerd://4c2a\"}}}," CS(
                 "img-1", "redis:7",
                 "{\"running\":{\"startedAt\":\"2026-11-27T10:00:04Z\"}}") "," CS("img-2", "busybox:1.36",
                                                                                  "{\"waiting\":{\"reason\":"
                                                                                  "\"ContainerCreating\"}}") "]}}",
             3, st);
    assert_int_equal(st[0].cls, PW_PULL_DONE);
    assert_string_equal(st[0].reason, "Completed");
    assert_int_equal(st[1].cls, PW_PULL_DONE);
    assert_int_equal(st[2].cls, PW_PULL_WAITING);
}

/* Real containerd and CRI-O messages and the class each must get. */
static const struct {
    const char *reason, *message;
    enum pw_pull_class cls;
} PULL_ERRORS[] = {
    {"ErrImagePull",
     "rpc error: code = NotFound desc = failed to pull and unpack image "
     "\\\"docker.io/library/nginx:1.99-nope\\\": failed to resolve reference "
     "\\\"docker.io/library/nginx:1.99-nope\\\": docker.io/library/nginx:1.99-nope: not found",
     PW_PULL_FAILED_NOTFOUND},
    {"ErrImagePull",
     "failed to pull and unpack image \\\"registry.example.com/team/app:v9\\\": failed to resolve "
     "reference \\\"registry.example.com/team/app:v9\\\": registry.example.com/team/app:v9: not "
     "found",
     PW_PULL_FAILED_NOTFOUND},
    {"ErrImagePull",
     "initializing source docker://quay.io/x/y:1: reading manifest 1 in quay.io/x/y: manifest "
     "unknown: manifest unknown",
     PW_PULL_FAILED_NOTFOUND},
    {"ErrImagePull",
     "rpc error: code = Unknown desc = failed to pull and unpack image "
     "\\\"docker.io/private/app:1\\\": failed to resolve reference \\\"docker.io/private/app:1\\\": "
     "pull access denied, repository does not exist or may require authorization: server message: "
     "insufficient_scope: authorization failed",
     PW_PULL_FAILED_AUTH},
    {"ErrImagePull",
     "rpc error: code = Unknown desc = failed to pull and unpack image "
     "\\\"registry.example.com/team/app:1\\\": failed to resolve reference "
     "\\\"registry.example.com/team/app:1\\\": failed to authorize: failed to fetch anonymous "
     "token: unexpected status from GET request to https://registry.example.com/token?scope="
     "repository%3Ateam%2Fapp%3Apull: 401 Unauthorized",
     PW_PULL_FAILED_AUTH},
    {"ErrImagePull",
     "rpc error: code = Unknown desc = failed to pull and unpack image \\\"r.io/a:1\\\": failed to "
     "resolve reference \\\"r.io/a:1\\\": unexpected status from HEAD request to "
     "https://r.io/v2/a/manifests/1: 403 Forbidden",
     PW_PULL_FAILED_AUTH},
    {"ErrImagePull",
     "reading manifest v1 in quay.io/private/app: unauthorized: access to the requested resource "
     "is not authorized",
     PW_PULL_FAILED_AUTH},
    {"ErrImagePull",
     "rpc error: code = Unknown desc = failed to pull and unpack image \\\"docker.io/library/"
     "nginx:1.27\\\": failed to copy: httpReadSeeker: failed open: failed to do request: Get "
     "\\\"https://production.cloudflare.docker.com/registry-v2/docker/registry/v2/blobs/sha256/"
     "40/4013f1a0b40134031bcd/data\\\": dial tcp 104.16.99.215:443: i/o timeout",
     PW_PULL_FAILED_RETRYABLE},
    {"ErrImagePull",
     "rpc error: code = Unknown desc = failed to pull and unpack image "
     "\\\"docker.io/library/nginx:1.27\\\": failed to copy: httpReadSeeker: failed open: "
     "unexpected status code https://registry-1.docker.io/v2/library/nginx/blobs/sha256:"
     "4013f1a0b40134031bcd0403401a: 500 Internal Server Error",
     PW_PULL_FAILED_RETRYABLE},
    {"ErrImagePull",
     "rpc error: code = Unknown desc = failed to pull and unpack image "
     "\\\"docker.io/library/nginx:1.27\\\": failed to copy: httpReadSeeker: failed open: "
     "unexpected status code https://registry-1.docker.io/v2/library/nginx/manifests/sha256:"
     "4013f1a0b40134031bcd: 429 Too Many Requests - Server message: toomanyrequests: You have "
     "reached your pull rate limit.",
     PW_PULL_FAILED_RETRYABLE},
    {"ErrImagePull",
     "rpc error: code = Unknown desc = failed to pull and unpack image \\\"reg.local/a:1\\\": "
     "failed to resolve reference \\\"reg.local/a:1\\\": failed to do request: Head "
     "\\\"https://reg.local/v2/a/manifests/1\\\": dial tcp: lookup reg.local: no such host",
     PW_PULL_FAILED_RETRYABLE},
    {"ImagePullBackOff", "Back-off pulling image \\\"nginx:1.99-nope\\\"", PW_PULL_FAILED_RETRYABLE},
    {"ImagePullBackOff",
     "Back-off pulling image \\\"nginx:1.99-nope\\\": ErrImagePull: rpc error: code = NotFound "
     "desc = failed to pull and unpack image \\\"docker.io/library/nginx:1.99-nope\\\": failed to "
     "resolve reference \\\"docker.io/library/nginx:1.99-nope\\\": "
     "docker.io/library/nginx:1.99-nope: not found",
     PW_PULL_FAILED_NOTFOUND},
    {"InvalidImageName",
     "Failed to apply default image tag \\\"nginx:Bad Tag\\\": couldn't parse "
     "image name \\\"nginx:Bad Tag\\\": invalid reference format",
     PW_PULL_FAILED_PERMANENT},
    {"ErrImageNeverPull", "Container image \\\"nginx:1.27\\\" is not present with pull policy of Never",
     PW_PULL_FAILED_PERMANENT},
    {"ContainerCreating", "", PW_PULL_WAITING},
};

static void test_pull_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof PULL_ERRORS / sizeof PULL_ERRORS[0]; i++) {
        char *text = pw_xasprintf(POD_HEAD "\"status\":{\"phase\":\"Pending\",\"containerStatuses\":["
                                           "{\"name\":\"img-0\",\"image\":\"x\",\"imageID\":\"\",\"ready\":false,"
                                           "\"restartCount\":0,\"started\":false,\"state\":{\"waiting\":{"
                                           "\"reason\":\"%s\",\"message\":\"%s\"}}}]}}",
                                  PULL_ERRORS[i].reason, PULL_ERRORS[i].message);
        struct pw_image_status st;
        classify(text, 1, &st);
        if (st.cls != PULL_ERRORS[i].cls)
            fail_msg("case %zu (%s): class %d, want %d", i, PULL_ERRORS[i].reason, st.cls, PULL_ERRORS[i].cls);
        assert_string_equal(st.reason, PULL_ERRORS[i].reason);
        /* the message is the kubelet's, cut to fit */
        assert_true(strlen(st.message) < sizeof st.message);
        if (PULL_ERRORS[i].message[0] != '\0')
            assert_true(strncmp(st.message, "Back-off", 8) == 0 || strstr(st.message, "image") ||
                        strstr(st.message, "manifest") || strstr(st.message, "unauthorized"));
        free(text);
    }
}

static void test_terminated_failures(void **state)
{
    (void)state;
    struct pw_image_status st[3];
    classify(
        POD_HEAD "\"status\":{\"phase\":\"Failed\",\"containerStatuses\":[" CS(
            "img-0", "a:1",
            "{\"terminated\":{\"exitCode\":128,\"reason\":\"StartError\",\"message\":"
            "\"failed to create containerd task: failed to create shim task: OCI runtime "
            "create failed: runc create failed: unable to start container process: exec: "
            "\\\"/prewarm/true\\\": permission denied: unknown\"}}") "," CS("img-1", "b:1",
                                                                            "{\"terminated\":{\"exitCode\":1,"
                                                                            "\"reason\":\"Error\"}}") "," CS("img-2",
                                                                                                             "c:1",
                                                                                                             "{\"termin"
                                                                                                             "ated\":{"
                                                                                                             "\"exitCod"
                                                                                                             "e\":0,"
                                                                                                             "\"reason"
                                                                                                             "\":"
                                                                                                             "\"Complet"
                                                                                                             "ed\"}}") "]}}",
        3, st);
    assert_int_equal(st[0].cls, PW_PULL_FAILED_PERMANENT);
    assert_string_equal(st[0].reason, "StartError");
    assert_non_null(strstr(st[0].message, "OCI runtime create failed"));
    assert_int_equal(st[1].cls, PW_PULL_FAILED_PERMANENT);
    assert_string_equal(st[1].reason, "Error");
    assert_string_equal(st[1].message, "container exited with code 1");
    assert_int_equal(st[2].cls, PW_PULL_DONE);

    /* lastState.terminated is preferred over a later waiting state */
    struct pw_image_status one;
    classify(POD_HEAD "\"status\":{\"phase\":\"Pending\",\"containerStatuses\":[{\"name\":\"img-0\","
                      "\"image\":\"a:1\",\"imageID\":\"\",\"ready\":false,\"restartCount\":1,"
                      "\"started\":false,\"state\":{\"waiting\":{\"reason\":\"ContainerCreating\"}},"
                      "\"lastState\":{\"terminated\":{\"exitCode\":128,\"reason\":\"StartError\","
                      "\"message\":\"exec format error\"}}}]}}",
             1, &one);
    assert_int_equal(one.cls, PW_PULL_FAILED_PERMANENT);
    assert_string_equal(one.reason, "StartError");
    assert_string_equal(one.message, "exec format error");
}

static void test_pod_rejected(void **state)
{
    (void)state;
    struct pw_image_status st[2];
    classify(POD_HEAD "\"status\":{\"phase\":\"Failed\",\"reason\":\"TaintToleration\","
                      "\"message\":\"Pod was rejected: Predicate TaintToleration failed: node(s) "
                      "had taints that the pod didn't tolerate\",\"startTime\":"
                      "\"2026-11-27T10:00:00Z\"}}",
             2, st);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(st[i].cls, PW_PULL_FAILED_PERMANENT);
        assert_string_equal(st[i].reason, "TaintToleration");
        assert_non_null(strstr(st[i].message, "Predicate TaintToleration failed"));
    }
    /* an image already done keeps its verdict; an evicted pod may be retried */
    classify(POD_HEAD
             "\"status\":{\"phase\":\"Failed\",\"reason\":\"Evicted\",\"message\":"
             "\"The node was low on resource: memory.\",\"containerStatuses\":[" CS(
                 "img-0", "a:1",
                 "{\"terminated\":{\"exitCode\":0,\"reason\":\"Completed\"}}") "," CS("img-1", "b:1",
                                                                                      "{\"waiting\":{\"reason\":"
                                                                                      "\"ContainerCreating\"}}") "]}}",
             2, st);
    assert_int_equal(st[0].cls, PW_PULL_DONE);
    assert_int_equal(st[1].cls, PW_PULL_FAILED_RETRYABLE);
    assert_string_equal(st[1].reason, "Evicted");
    /* a failed pod without a reason still fails its images */
    classify(POD_HEAD "\"status\":{\"phase\":\"Failed\"}}", 1, st);
    assert_int_equal(st[0].cls, PW_PULL_FAILED_PERMANENT);
    assert_string_equal(st[0].reason, "PodFailed");
}

static void test_helper_failure(void **state)
{
    (void)state;
    struct pw_image_status st[2];
    classify(POD_HEAD "\"status\":{\"phase\":\"Pending\",\"initContainerStatuses\":[" CS(
                 "install", "ghcr.io/prewarm/prewarm:0.1.0",
                 "{\"waiting\":{\"reason\":\"ErrImagePull\",\"message\":\"rpc error: code = "
                 "NotFound desc = failed to pull and unpack image \\\"ghcr.io/prewarm/prewarm:0.1.0"
                 "\\\": ghcr.io/prewarm/prewarm:0.1.0: not found\"}}") "],"
                                                                       "\"containerStatuses\":[" CS(
                                                                           "img-0", "a:1",
                                                                           "{\"waiting\":{"
                                                                           "\"reason\":"
                                                                           "\"PodInitializing"
                                                                           "\"}}") "," CS("img"
                                                                                          "-1",
                                                                                          "b:"
                                                                                          "1",
                                                                                          "{\""
                                                                                          "wai"
                                                                                          "tin"
                                                                                          "g\""
                                                                                          ":{"
                                                                                          "\"r"
                                                                                          "eas"
                                                                                          "on"
                                                                                          "\":"
                                                                                          "\"P"
                                                                                          "odI"
                                                                                          "nit"
                                                                                          "ial"
                                                                                          "izi"
                                                                                          "ng"
                                                                                          "\"}"
                                                                                          "}") "]}}",
             2, st);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(st[i].cls, PW_PULL_FAILED_PERMANENT);
        assert_string_equal(st[i].reason, "ErrImagePull");
        assert_non_null(strstr(st[i].message, "helper image"));
    }
}

static void test_pod_odd(void **state)
{
    (void)state;
    struct pw_image_status st[2] = {{.cls = PW_PULL_DONE, .reason = "keep", .message = "keep"}, {.cls = PW_PULL_DONE}};
    json_t *arr = json_array();
    assert_int_equal(pw_jobspec_pod_status(arr, 2, st), PW_EINVAL);
    assert_int_equal(pw_jobspec_pod_status(NULL, 2, st), PW_EINVAL);
    assert_string_equal(st[0].reason, "keep"); /* untouched on error */
    json_decref(arr);
    /* unknown containers, bad indexes and a long message are handled */
    char big[2000];
    memset(big, 'm', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char *text = pw_xasprintf(POD_HEAD "\"status\":{\"phase\":\"Pending\",\"containerStatuses\":["
                                       "{\"name\":\"sidecar\",\"state\":{\"running\":{}}},"
                                       "{\"name\":\"img-9\",\"state\":{\"running\":{}}},"
                                       "{\"name\":\"img-01x\",\"state\":{\"running\":{}}},"
                                       "{\"name\":\"img-\",\"state\":{\"running\":{}}},"
                                       "{\"name\":7},"
                                       "{\"name\":\"img-1\",\"state\":{\"waiting\":{\"reason\":\"ErrImagePull\","
                                       "\"message\":\"%s\"}}}]}}",
                              big);
    classify(text, 2, st);
    free(text);
    assert_int_equal(st[0].cls, PW_PULL_WAITING);
    assert_int_equal(st[1].cls, PW_PULL_FAILED_RETRYABLE);
    assert_int_equal(strlen(st[1].message), sizeof st[1].message - 1);
}

/* One image container's status in each shape the kubelet can report, and what it reads as. */
static void test_container_states(void **state)
{
    (void)state;
    static const struct {
        const char *cs; /* the container status object of img-0 */
        enum pw_pull_class cls;
        const char *reason, *message; /* message: a substring, "" matches anything */
    } cases[] = {
        {"{\"name\":\"img-0\",\"state\":{\"terminated\":{\"exitCode\":0}}}", PW_PULL_DONE, "Completed", ""},
        {"{\"name\":\"img-0\",\"state\":{\"terminated\":{\"exitCode\":2,\"message\":\"\"}}}", PW_PULL_FAILED_PERMANENT,
         "Error", "container exited with code 2"},
        {"{\"name\":\"img-0\",\"state\":{\"terminated\":{\"exitCode\":137,\"reason\":\"OOMKilled\",\"message\":\"oom\"}}}",
         PW_PULL_FAILED_PERMANENT, "OOMKilled", "oom"},
        {"{\"name\":\"img-0\",\"state\":{\"waiting\":{\"message\":\"no reason given\"}}}", PW_PULL_WAITING, "",
         "no reason given"},
        {"{\"name\":\"img-0\",\"state\":{\"waiting\":{\"reason\":\"ErrImagePull\"}}}", PW_PULL_FAILED_RETRYABLE,
         "ErrImagePull", ""},
        {"{\"name\":\"img-0\",\"state\":{\"waiting\":{\"reason\":\"SomethingNew\",\"message\":\"m\"}}}", PW_PULL_WAITING,
         "SomethingNew", "m"},
        /* waiting again after a failed run: the termination says why */
        {"{\"name\":\"img-0\",\"state\":{\"waiting\":{\"reason\":\"CrashLoopBackOff\"}},"
         "\"lastState\":{\"terminated\":{\"exitCode\":127,\"reason\":\"StartError\",\"message\":\"exec failed\"}}}",
         PW_PULL_FAILED_PERMANENT, "StartError", "exec failed"},
        /* an earlier clean exit does not decide a container now waiting */
        {"{\"name\":\"img-0\",\"state\":{\"waiting\":{\"reason\":\"ContainerCreating\"}},"
         "\"lastState\":{\"terminated\":{\"exitCode\":0}}}",
         PW_PULL_WAITING, "ContainerCreating", ""},
        /* malformed states say nothing */
        {"{\"name\":\"img-0\",\"state\":{\"terminated\":\"yes\",\"running\":true,\"waiting\":7}}", PW_PULL_WAITING, "",
         ""},
        {"{\"name\":\"img-0\"}", PW_PULL_WAITING, "", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = pw_xasprintf(POD_HEAD "\"status\":{\"phase\":\"Pending\",\"containerStatuses\":[%s]}}", cases[i].cs);
        struct pw_image_status st[1];
        classify(text, 1, st);
        if (st[0].cls != cases[i].cls || strcmp(st[0].reason, cases[i].reason) != 0 ||
            strstr(st[0].message, cases[i].message) == NULL)
            fail_msg("case %zu (%s): class %d reason '%s' message '%s'", i, cases[i].cs, (int)st[0].cls, st[0].reason,
                     st[0].message);
        free(text);
    }
}

/* The install init container: a retryable failure of the helper image stays retryable; init
 * containers of other names are not ours; a finished install decides nothing. */
static void test_install_states(void **state)
{
    (void)state;
    static const struct {
        const char *inits;
        enum pw_pull_class cls;
        const char *reason;
    } cases[] = {
        {"{\"name\":\"install\",\"state\":{\"waiting\":{\"reason\":\"ImagePullBackOff\",\"message\":\"Back-off "
         "pulling image\"}}}",
         PW_PULL_FAILED_RETRYABLE, "ImagePullBackOff"},
        {"{\"name\":\"install\",\"state\":{\"terminated\":{\"exitCode\":1}}}", PW_PULL_FAILED_PERMANENT, "Error"},
        {"{\"name\":\"istio-init\",\"state\":{\"waiting\":{\"reason\":\"ErrImagePull\"}}},"
         "{\"state\":{\"waiting\":{\"reason\":\"ErrImagePull\"}}}",
         PW_PULL_WAITING, "PodInitializing"},
        {"{\"name\":\"install\",\"state\":{\"terminated\":{\"exitCode\":0,\"reason\":\"Completed\"}}}", PW_PULL_WAITING,
         "PodInitializing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = pw_xasprintf(POD_HEAD "\"status\":{\"phase\":\"Pending\",\"initContainerStatuses\":[%s],"
                                           "\"containerStatuses\":[" CS("img-0", "a:1",
                                                                        "{\"waiting\":{\"reason\":\"PodInitializing\"}}") ","
                                           CS("img-1", "b:1", "{\"running\":{}}") "]}}",
                                  cases[i].inits);
        struct pw_image_status st[2];
        classify(text, 2, st);
        if (st[0].cls != cases[i].cls || strcmp(st[0].reason, cases[i].reason) != 0)
            fail_msg("case %zu: class %d reason '%s'", i, (int)st[0].cls, st[0].reason);
        if (cases[i].cls != PW_PULL_WAITING)
            assert_non_null(strstr(st[0].message, "helper image"));
        assert_int_equal(st[1].cls, PW_PULL_DONE); /* decided images keep their result */
        free(text);
    }
}

/* Missing parameters build nothing; NULL names make a valid name. */
static void test_build_refuses(void **state)
{
    (void)state;
    const char *imgs[] = {"busybox:1.36"};
    const struct pw_jobspec_params good = {.task_id = "t-1", .node_name = "node-1", .namespace_ = "prewarm",
                                           .images = imgs, .n_images = 1, .helper_image = "h:1", .ttl_s = -1};
    json_t *job = pw_jobspec_build(&good);
    assert_non_null(job);
    json_decref(job);
    assert_null(pw_jobspec_build(NULL));
    struct pw_jobspec_params p = good;
    p.task_id = NULL;
    assert_null(pw_jobspec_build(&p));
    p = good;
    p.node_name = NULL;
    assert_null(pw_jobspec_build(&p));
    p = good;
    p.namespace_ = NULL;
    assert_null(pw_jobspec_build(&p));
    p = good;
    p.helper_image = NULL;
    assert_null(pw_jobspec_build(&p));
    p = good;
    p.images = NULL;
    assert_null(pw_jobspec_build(&p));
    p = good;
    p.n_images = 0;
    assert_null(pw_jobspec_build(&p));
    char *n = pw_jobspec_name(NULL, NULL);
    assert_true(dns1123_label(n));
    free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest_fields),
        cmocka_unit_test(test_instance_label),
        cmocka_unit_test(test_manifest_options),
        cmocka_unit_test(test_name),
        cmocka_unit_test(test_pod_creating),
        cmocka_unit_test(test_pod_done),
        cmocka_unit_test(test_pull_errors),
        cmocka_unit_test(test_terminated_failures),
        cmocka_unit_test(test_pod_rejected),
        cmocka_unit_test(test_helper_failure),
        cmocka_unit_test(test_pod_odd),
        cmocka_unit_test(test_container_states),
        cmocka_unit_test(test_install_states),
        cmocka_unit_test(test_build_refuses),
    };
    return cmocka_run_group_tests_name("engine/jobspec", tests, NULL, NULL);
}
