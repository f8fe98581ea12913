/* objutil.c: small read-only helpers on Kubernetes objects (see objutil.h). */
#include "sim/objutil.h"

#include <string.h>

bool sim_obj_has_condition(const json_t *obj, const char *type)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(json_object_get(obj, "status"), "conditions"), i, c)
    {
        const char *t = json_string_value(json_object_get(c, "type"));
        const char *s = json_string_value(json_object_get(c, "status"));
        if (t && s && strcmp(t, type) == 0 && strcmp(s, "True") == 0)
            return true;
    }
    return false;
}

void sim_go_quote(pw_buf *b, const char *s)
{
    pw_buf_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            pw_buf_printf(b, "\\%c", *p);
        else if (*p == '\n')
            pw_buf_puts(b, "\\n");
        else if (*p == '\t')
            pw_buf_puts(b, "\\t");
        else if (*p == '\r')
            pw_buf_puts(b, "\\r");
        else if (*p < 0x20 || *p == 0x7f)
            pw_buf_printf(b, "\\x%02x", *p);
        else
            pw_buf_append(b, p, 1);
    }
    pw_buf_puts(b, "\"");
}
