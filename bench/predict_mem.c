/* bench/predict_mem: what prediction's pod informer costs at N pods (default 100,000; issue 14).
 *
 * Builds N pods shaped like the API server's (metadata with labels, uid, ownerReferences and
 * managedFields-free annotations; a spec with two containers and the usual defaults; a status with
 * conditions and container statuses), trims each with pw_predict_trim_pod (the informer's transform)
 * and keeps the trimmed objects keyed "ns/name" in a JSON object, as the informer's cache does. Each
 * started pod is also counted into a pw_predict (no cluster, no store) on one of 100 nodes of 4 pools.
 * Prints the heap in use (glibc mallinfo2) for the cache and for the model, per pod, and the trim rate.
 * Usage: predict_mem [N] */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/clock.h"
#include "predict/predict.h"

static size_t heap_used(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static json_t *make_pod(int i)
{
    char name[64], uid[40], node[32], img1[96], img2[96];
    snprintf(name, sizeof name, "web-%d-7f9c8d6b5-%05x", i / 50, (unsigned)i * 2654435761u & 0xfffff);
    snprintf(uid, sizeof uid, "%08x-1c2d-4e5f-8a9b-%012x", (unsigned)i, (unsigned)i * 7919u);
    snprintf(node, sizeof node, "node-%04d", i % 100);
    snprintf(img1, sizeof img1, "registry.example.com/team-%d/service-%d:1.%d.0", i % 7, i % 30, i % 5);
    snprintf(img2, sizeof img2, "docker.io/library/envoy-sidecar:1.%d", i % 3);
    return json_pack(
        "{s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s}, s:{s:s}, s:[{s:s, s:s, s:s, s:s, s:b, s:b}]},"
        " s:{s:s, s:s, s:s, s:i, s:s, s:s, s:[{s:s, s:s, s:s, s:{s:{s:s, s:s}}, s:[{s:i, s:s}], s:s}, {s:s, s:s, s:s}]},"
        " s:{s:s, s:s, s:s, s:s, s:s, s:[{s:s, s:s, s:s}, {s:s, s:s, s:s}], s:[{s:s, s:s, s:s, s:b, s:i, s:{s:{s:s}}}]}}",
        "apiVersion", "v1", "kind", "Pod", "metadata", "name", name, "namespace", "apps", "uid", uid,
        "resourceVersion", "123456789", "creationTimestamp", "2026-12-07T10:00:00Z", "labels", "app", "web",
        "pod-template-hash", "7f9c8d6b5", "tier", "frontend", "annotations", "kubectl.kubernetes.io/restartedAt",
        "2026-12-06T08:00:00Z", "ownerReferences", "apiVersion", "apps/v1", "kind", "ReplicaSet", "name",
        "web-7f9c8d6b5", "uid", "0a1b2c3d-0000-4000-8000-000000000000", "controller", 1, "blockOwnerDeletion", 1,
        "spec", "nodeName", node, "restartPolicy", "Always", "dnsPolicy", "ClusterFirst",
        "terminationGracePeriodSeconds", 30, "schedulerName", "default-scheduler", "serviceAccountName", "default",
        "containers", "name", "app", "image", img1, "imagePullPolicy", "IfNotPresent", "resources", "requests", "cpu",
        "500m", "memory", "512Mi", "ports", "containerPort", 8080, "protocol", "TCP", "terminationMessagePath",
        "/dev/termination-log", "name", "sidecar", "image", img2, "imagePullPolicy", "IfNotPresent", "status",
        "phase", "Running", "hostIP", "10.0.1.17", "podIP", "10.244.3.41", "startTime", "2026-12-07T10:00:05Z",
        "qosClass", "Burstable", "conditions", "type", "Ready", "status", "True", "lastTransitionTime",
        "2026-12-07T10:00:09Z", "type", "PodScheduled", "status", "True", "lastTransitionTime",
        "2026-12-07T10:00:00Z", "containerStatuses", "name", "app", "image", img1, "imageID",
        "registry.example.com/team@sha256:4f1c0e0d9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d", "ready",
        1, "restartCount", 0, "state", "running", "startedAt", "2026-12-07T10:00:08Z");
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 100000;
    if (n <= 0) {
        fprintf(stderr, "usage: predict_mem [N > 0]\n");
        return 2;
    }
    json_t *full = make_pod(0);
    char *dump = json_dumps(full, JSON_COMPACT);
    size_t full_json = strlen(dump);
    free(dump);
    json_decref(full);

    json_t *labels[4];
    for (int p = 0; p < 4; p++) {
        char v[16];
        snprintf(v, sizeof v, "pool-%d", p);
        labels[p] = json_pack("{s:s, s:s}", "karpenter.sh/nodepool", v, "node.kubernetes.io/instance-type", "m6i.4xlarge");
    }
    struct pw_predict_config cfg = {0};
    pw_predict *pr = NULL;
    if (pw_predict_new(&cfg, &pr) != 0)
        return 1;

    size_t h0 = heap_used();
    json_t *cache = json_object();
    for (int i = 0; i < n; i++) {
        json_t *pod = make_pod(i);
        json_t *t = pw_predict_trim_pod(pod);
        json_decref(pod);
        char key[96];
        snprintf(key, sizeof key, "%s/%s", json_string_value(json_object_get(json_object_get(t, "metadata"), "namespace")),
                 json_string_value(json_object_get(json_object_get(t, "metadata"), "name")));
        json_object_set_new(cache, key, t);
    }
    size_t h1 = heap_used();
    const char *k;
    json_t *t;
    int i = 0;
    json_object_foreach(cache, k, t) pw_predict_observe_pod(pr, t, labels[i++ % 4]);
    size_t h2 = heap_used();
    json_t *one = make_pod(1);
    int64_t t0 = pw_clock_mono_ms();
    for (int r = 0; r < n; r++)
        json_decref(pw_predict_trim_pod(one));
    int64_t trim_ms = pw_clock_mono_ms() - t0;
    json_decref(one);

    printf("pods: %d (a full pod is %zu bytes of JSON)\n", n, full_json);
    printf("informer cache (trimmed pods keyed ns/name): %.1f MB, %zu bytes per pod\n", (double)(h1 - h0) / 1e6,
           (h1 - h0) / (size_t)n);
    printf("model (%d pods counted, 4 pools x 2 tracked keys, 33 images, 30 image sets, 100 nodes): %.1f KB\n", n,
           (double)(h2 - h1) / 1e3);
    printf("trim: %.2f us per pod\n", trim_ms * 1000.0 / n);
    json_decref(cache);
    pw_predict_free(pr);
    for (int p = 0; p < 4; p++)
        json_decref(labels[p]);
    return 0;
}
