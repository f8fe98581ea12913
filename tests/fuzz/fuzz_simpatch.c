/* fuzz_simpatch.c: kubesim's PATCH bodies (sim/api_patch.c): JSON merge patch (RFC 7386),
 * strategic merge patch, JSON patch (RFC 6902), picked by Content-Type as the handler does.
 * Input: byte 0 picks the media type (and whether the resource is a CRD's), then the stored object
 * (JSON; a pod when it does not parse as an object) up to the first '\n', then the patch. */
#include <jansson.h>

#include "fuzz.h"
#include "sim/api_int.h"

static const char *const CTYPES[] = {
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/merge-patch+json; charset=utf-8",
    "application/apply-patch+yaml",
};

static const char POD[] = "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"p\",\"namespace\":\"default\","
                          "\"labels\":{\"app\":\"x\"}},\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"nginx\","
                          "\"env\":[{\"name\":\"A\",\"value\":\"1\"}]}],\"tolerations\":[{\"key\":\"k\"}]}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *ctype = CTYPES[data[0] % 5];
    bool custom = (data[0] / 5) % 2;
    data++, size--;
    const uint8_t *patch;
    size_t patch_n;
    char *head = fuzz_head(data, size, &patch, &patch_n);
    json_t *target = json_loads(head, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(target)) {
        json_decref(target);
        target = json_loads(POD, 0, NULL);
    }
    json_t *out = NULL;
    char *err = NULL;
    int rc = sim_api_patch_apply(ctype, target, (const char *)patch, patch_n, custom, &out, &err);
    if (rc == 0) {
        if (!out || err)
            abort();
        char *text = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY);
        free(text);
        json_decref(out);
    } else {
        if (!err || out)
            abort(); /* a refusal says why and gives nothing */
        free(err);
    }
    json_decref(target);
    free(head);
    return 0;
}
