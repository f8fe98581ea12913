/* fuzz_simselector.c: kubesim's list and watch selectors: ?fieldSelector= (sim_api_fieldsel_parse,
 * for a resource with pods' extra fields) and ?labelSelector= (pw_labelsel_parse, shared with
 * prewarmd). Input: the field selector, a '\n', the label selector, a '\n', then an object (JSON)
 * both are matched against. */
#include <jansson.h>

#include "base/labels.h"
#include "fuzz.h"
#include "sim/api_int.h"

static const char *const FIELDS[] = {"spec.nodeName", "spec.restartPolicy", "status.phase", "status.podIP",
                                     "spec.unschedulable", "status.successful", "source", NULL};
static const struct rdef RD = {
    .group = "", .version = "v1", .plural = "pods", .singular = "pod", .kind = "Pod", .namespaced = true,
    .short_names = "po", .store_key = "pods", .fields = FIELDS,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *rest, *obj_text;
    size_t rest_n, obj_n;
    char *fsel = fuzz_head(data, size, &rest, &rest_n);
    char *lsel = fuzz_head(rest, rest_n, &obj_text, &obj_n);
    json_t *obj = json_loadb((const char *)obj_text, obj_n, 0, NULL);
    struct fieldsel *fs = NULL;
    char *err = NULL;
    if (sim_api_fieldsel_parse(&RD, fsel, &fs, &err) == 0) {
        json_t *empty = json_object();
        (void)sim_api_fieldsel_matches(fs, obj ? obj : empty);
        json_decref(empty);
        sim_api_fieldsel_free(fs);
    } else {
        if (!err)
            abort();
        free(err);
    }
    pw_labelsel *ls = NULL;
    err = NULL;
    if (pw_labelsel_parse(lsel, &ls, &err) == 0) {
        (void)pw_labelsel_matches(ls, json_object_get(json_object_get(obj, "metadata"), "labels"));
        pw_labelsel_free(ls);
    } else {
        free(err);
    }
    json_decref(obj);
    free(lsel);
    free(fsel);
    return 0;
}
