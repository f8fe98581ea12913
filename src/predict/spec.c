/* spec.c: the inputs of prediction (predict.h): a policy's "predict" object, a node's pool, and a pod
 * trimmed to what the model needs. */
#include "predict/predict.h"

#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/buf.h"
#include "base/labels.h"
#include "base/mem.h"
#include "engine/imageref.h"

static int spec_error(const char *field, char *msg, char **field_out, char **msg_out)
{
    *field_out = pw_xasprintf("predict.%s", field);
    *msg_out = msg;
    return PW_EINVAL;
}

struct pw_predict_limits pw_predict_default_limits(void)
{
    return (struct pw_predict_limits){.min_probability = PW_PREDICT_DEFAULT_MIN_PROBABILITY,
                                      .max_images = PW_PREDICT_DEFAULT_MAX_IMAGES,
                                      .target_hit_rate = PW_PREDICT_DEFAULT_TARGET_HIT_RATE};
}

int pw_predict_parse_spec(const json_t *spec, struct pw_predict_limits *lim, const char **pool_label, char **field,
                          char **msg)
{
    struct pw_predict_limits l = pw_predict_default_limits();
    const char *pl = NULL;
    if (spec && !json_is_object(spec)) {
        *field = pw_xstrdup("predict");
        *msg = pw_xstrdup("must be an object");
        return PW_EINVAL;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)spec, k, v) {
        if (strcmp(k, "poolLabel") == 0) {
            char *why = NULL;
            if (!json_is_string(v) || pw_label_key_valid(json_string_value(v), &why) != 0) {
                char *m = pw_xasprintf("must be a label key%s%s", why ? ": " : "", why ? why : "");
                free(why);
                return spec_error(k, m, field, msg);
            }
            pl = json_string_value(v);
        } else if (strcmp(k, "maxBytesPerNode") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0)
                return spec_error(k, pw_xstrdup("must be a number of bytes >= 0 (0: no budget)"),
                                  field, msg);
            l.max_bytes_per_node = (int64_t)json_integer_value(v);
        } else if (strcmp(k, "minProbability") == 0) {
            if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1)
                return spec_error(k, pw_xstrdup("must be a number from 0 to 1"), field, msg);
            l.min_probability = json_number_value(v);
        } else if (strcmp(k, "targetHitRate") == 0) {
            if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1)
                return spec_error(k, pw_xstrdup("must be a number from 0 to 1"), field, msg);
            l.target_hit_rate = json_number_value(v);
        } else if (strcmp(k, "maxImages") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 100)
                return spec_error(k, pw_xstrdup("must be an integer from 1 to 100"), field, msg);
            l.max_images = (int)json_integer_value(v);
        } else {
            return spec_error(k,
                              pw_xstrdup("unknown field (known: poolLabel, maxBytesPerNode, minProbability, "
                                         "maxImages, targetHitRate)"),
                              field, msg);
        }
    }
    *lim = l;
    *pool_label = pl;
    return 0;
}

char *pw_predict_pool_of(const json_t *labels, const char *pool_label)
{
    if (pool_label) {
        const char *v = json_string_value(json_object_get(labels, pool_label));
        return v ? pw_xasprintf("%s=%s", pool_label, v) : NULL;
    }
    for (size_t i = 0; PW_PREDICT_POOL_KEYS[i]; i++) {
        const char *v = json_string_value(json_object_get(labels, PW_PREDICT_POOL_KEYS[i]));
        if (v)
            return pw_xasprintf("%s=%s", PW_PREDICT_POOL_KEYS[i], v);
    }
    return NULL;
}

/* Appends the normalised images of containers (an array; may be NULL) to b, space-separated, once
 * each (a reference holds no space). */
static void add_images(pw_buf *b, const json_t *containers)
{
    size_t i;
    const json_t *c;
    json_array_foreach(containers, i, c) {
        const char *ref = json_string_value(json_object_get(c, "image"));
        struct pw_imageref r;
        if (!ref || pw_imageref_parse(ref, &r, NULL) != 0)
            continue;
        char *norm = pw_imageref_normalized(&r);
        pw_imageref_fini(&r);
        size_t n = strlen(norm);
        bool dup = false;
        for (const char *p = b->p; p && *p && !dup; p = strchr(p, ' ') ? strchr(p, ' ') + 1 : p + strlen(p))
            dup = strncmp(p, norm, n) == 0 && (p[n] == ' ' || p[n] == 0);
        if (!dup)
            pw_buf_printf(b, "%s%s", b->len ? " " : "", norm);
        free(norm);
    }
}

json_t *pw_predict_trim_pod(const json_t *pod)
{
    const json_t *md = json_object_get(pod, "metadata"), *spec = json_object_get(pod, "spec");
    const char *name = json_string_value(json_object_get(md, "name"));
    if (!name || json_object_get(json_object_get(md, "labels"), "prewarm.io/task"))
        return NULL;
    const char *ns = json_string_value(json_object_get(md, "namespace"));
    char *key = ns && *ns ? pw_xasprintf("%s/%s", ns, name) : pw_xstrdup(name);
    pw_buf b;
    pw_buf_init(&b, 0);
    add_images(&b, json_object_get(spec, "initContainers"));
    add_images(&b, json_object_get(spec, "containers"));
    json_t *out = json_pack("{s:{s:s}, s:s}", "metadata", "name", key, "i", b.p ? b.p : "");
    free(key);
    pw_buf_fini(&b);
    const char *node = json_string_value(json_object_get(spec, "nodeName"));
    if (node && *node)
        json_object_set_new(out, "n", json_string(node));
    time_t st;
    const char *start = json_string_value(json_object_get(json_object_get(pod, "status"), "startTime"));
    if (start && pw_time_parse_rfc3339(start, &st) == 0)
        json_object_set_new(out, "t", json_integer((json_int_t)st * 1000));
    return out;
}
