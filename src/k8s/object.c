/* object.c: small accessors on Kubernetes objects held as jansson values (metadata fields, labels,
 * Status messages). Pure functions over borrowed values. */
#include "k8s/k8s.h"

#include <string.h>

/* metadata.<field> as a string, or NULL. */
static const char *meta_str(const json_t *obj, const char *field)
{
    if (!json_is_object(obj))
        return NULL;
    const json_t *meta = json_object_get(obj, "metadata");
    return json_string_value(json_object_get(meta, field));
}

const char *pw_k8s_name(const json_t *obj)
{
    return meta_str(obj, "name");
}

const char *pw_k8s_namespace(const json_t *obj)
{
    return meta_str(obj, "namespace");
}

const char *pw_k8s_resource_version(const json_t *obj)
{
    return meta_str(obj, "resourceVersion");
}

const char *pw_k8s_label(const json_t *obj, const char *key)
{
    if (!json_is_object(obj) || !key)
        return NULL;
    const json_t *labels = json_object_get(json_object_get(obj, "metadata"), "labels");
    return json_string_value(json_object_get(labels, key));
}

const char *pw_k8s_status_message(const json_t *status_body)
{
    if (!json_is_object(status_body))
        return NULL;
    return json_string_value(json_object_get(status_body, "message"));
}
