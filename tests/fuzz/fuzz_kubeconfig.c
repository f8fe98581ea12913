/* fuzz_kubeconfig.c: kubeconfig files (YAML through libyaml into pw_k8s_config_load's merge and
 * build steps). The input is written to files in a private directory, as the loader reads paths;
 * a line "#---" splits it into two files loaded as KUBECONFIG=a:b (the merge rules). Paths inside
 * (certificate-authority, tokenFile, ...) resolve against that directory. Nothing is executed: an
 * exec plugin runs only when a client asks for credentials. */
#include <stdio.h>
#include <unistd.h>

#include "fuzz.h"
#include "k8s/k8s.h"

static char dir[64];

static void put(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (n && fwrite(p, 1, n, f) != n)
        abort();
    fclose(f);
}

static void cleanup(void)
{
    char p[96];
    snprintf(p, sizeof p, "%s/a", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/b", dir);
    unlink(p);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/pw-fuzz-kubeconfig-XXXXXX");
        if (!mkdtemp(dir))
            abort();
        atexit(cleanup);
    }
    char a[96], b[96], list[200];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    const uint8_t *sep = memmem(data, size, "\n#---\n", 6);
    if (sep) {
        put(a, data, (size_t)(sep - data));
        put(b, sep + 6, size - (size_t)(sep - data) - 6);
        snprintf(list, sizeof list, "%s:%s", a, b);
    } else {
        put(a, data, size);
        snprintf(list, sizeof list, "%s", a);
    }
    pw_k8s_config *cfg = NULL;
    char *msg = NULL;
    if (pw_k8s_config_load(list, NULL, &cfg, &msg) == 0) {
        if (!pw_k8s_config_server(cfg) || !pw_k8s_config_namespace(cfg))
            abort();
        pw_k8s_config_free(cfg);
    } else {
        if (!msg)
            abort();
        free(msg);
    }
    return 0;
}
