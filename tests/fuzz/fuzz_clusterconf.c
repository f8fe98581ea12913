/* fuzz_clusterconf.c: which clusters prewarmd serves (src/cluster/clusterconf.c): a --cluster flag
 * value, then the --clusters-file YAML on top of it, as prewarmd takes them (flags first; the file's
 * names count against the flags' for duplicates).
 * Input: the flag value up to the first '\n' (empty: no flag), then the file's text.
 * Checks: a refusal says why and leaves what came before as it was; an accepted file gives clusters
 * with valid, unique names, exactly one of kubeconfig / kubeconfigData, and labels that are strings;
 * pw_clusterdef_same_connection is reflexive. */
#include <jansson.h>

#include "cluster/clusterconf.h"
#include "fuzz.h"

static void check_def(const struct pw_clusterdef *d, bool from_file)
{
    if (!pw_clusterconf_name_ok(d->name) || !json_is_object(d->labels))
        abort();
    if (from_file && !d->kubeconfig == !d->kubeconfig_data)
        abort(); /* exactly one of the two */
    if (!from_file && (!d->kubeconfig || !*d->kubeconfig || d->kubeconfig_data))
        abort();
    if (d->qps < 0 || d->burst < 0 || d->max_in_flight < 0)
        abort();
    const char *k;
    json_t *v;
    json_object_foreach(d->labels, k, v) {
        if (!*k || !json_is_string(v))
            abort();
    }
    if (!pw_clusterdef_same_connection(d, d))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *rest;
    size_t rest_n;
    char *flag = fuzz_head(data, size, &rest, &rest_n);
    struct pw_clusterconf c = {0};
    char *err = NULL;
    if (*flag) {
        struct pw_clusterdef d;
        if (pw_clusterconf_parse_flag(flag, &d, &err) == 0) {
            check_def(&d, false);
            if (pw_clusterconf_add(&c, &d, &err) != 0)
                abort(); /* the first one cannot be a duplicate */
        } else if (!err) {
            abort();
        }
        free(err);
        err = NULL;
    }
    size_t before = c.n;
    char *text = fuzz_cstr(rest, rest_n);
    int rc = pw_clusterconf_parse_yaml(text, rest_n, "fuzz.yaml", &c, &err);
    if (rc == 0) {
        if (err)
            abort();
        for (size_t i = 0; i < c.n; i++) {
            check_def(&c.v[i], i >= before);
            for (size_t j = 0; j < i; j++)
                if (strcmp(c.v[i].name, c.v[j].name) == 0)
                    abort(); /* names are unique */
        }
    } else {
        if (!err || c.n != before)
            abort(); /* a refusal says why and adds nothing */
        free(err);
    }
    pw_clusterconf_fini(&c);
    free(text);
    free(flag);
    return 0;
}
