/* fuzz_labelsel.c: Kubernetes label selectors (pw_labelsel_parse: a task's labelSelector, kubesim's
 * ?labelSelector=) and label key/value checks. Input: the selector, then after a '\n' an optional
 * JSON object of labels to match it against. */
#include <jansson.h>

#include "base/labels.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *rest;
    size_t rest_n;
    char *text = fuzz_head(data, size, &rest, &rest_n);
    char *msg = NULL;
    pw_labelsel *sel = NULL;
    if (pw_labelsel_parse(text, &sel, &msg) == 0) {
        json_t *labels = json_loadb((const char *)rest, rest_n, 0, NULL);
        bool m = pw_labelsel_matches(sel, labels);
        if (pw_labelsel_empty(sel) && !m)
            abort(); /* an empty selector matches everything */
        json_decref(labels);
        pw_labelsel_free(sel);
    } else {
        if (!msg)
            abort();
        free(msg);
    }
    msg = NULL;
    if (pw_label_key_valid(text, &msg) != 0)
        free(msg);
    msg = NULL;
    if (pw_label_value_valid(text, &msg) != 0)
        free(msg);
    (void)pw_dns1123_subdomain(text);
    (void)pw_dns1123_label(text);
    free(text);
    return 0;
}
