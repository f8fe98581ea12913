/* nodekey.c: node keys across clusters (nodekey.h). */
#include "engine/nodekey.h"

#include <stdio.h>
#include <string.h>

#include "base/mem.h"

char *pw_nodekey_make(const char *cluster, const char *node)
{
    if (!cluster || strcmp(cluster, PW_CLUSTER_DEFAULT) == 0)
        return pw_xstrdup(node);
    return pw_xasprintf("%s/%s", cluster, node);
}

const char *pw_nodekey_node(const char *key)
{
    const char *slash = strchr(key, '/');
    return slash ? slash + 1 : key;
}

bool pw_nodekey_in(const char *key, const char *cluster)
{
    const char *slash = strchr(key, '/');
    if (!slash)
        return strcmp(cluster, PW_CLUSTER_DEFAULT) == 0;
    size_t n = (size_t)(slash - key);
    return strlen(cluster) == n && memcmp(key, cluster, n) == 0;
}

void pw_nodekey_cluster(const char *key, char *buf, size_t cap)
{
    const char *slash = strchr(key, '/');
    if (!slash)
        snprintf(buf, cap, "%s", PW_CLUSTER_DEFAULT);
    else
        snprintf(buf, cap, "%.*s", (int)(slash - key), key);
}
