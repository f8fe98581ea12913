/* nocluster.c: an engine with no cluster for unit tests (nocluster.h). */
#include "nocluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "fakeexec.h"

int pw_nocluster_init(struct pw_nocluster *nc)
{
    memset(nc, 0, sizeof *nc);
    char path[64];
    snprintf(path, sizeof path, "/tmp/pw-test-nocluster-%d.yaml", (int)getpid());
    FILE *f = fopen(path, "w");
    if (!f)
        return PW_EIO;
    fputs("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster: {server: "
          "\"http://127.0.0.1:9\"}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: c\n  context: "
          "{cluster: c, user: u}\n",
          f);
    fclose(f);
    char *msg = NULL;
    int rc = pw_k8s_config_load(path, NULL, &nc->kcfg, &msg);
    unlink(path);
    free(msg);
    if (rc == 0)
        rc = pw_k8s_client_new(nc->kcfg, NULL, &nc->client);
    if (rc != 0) {
        pw_k8s_config_free(nc->kcfg);
        nc->kcfg = NULL;
    }
    return rc;
}

void pw_nocluster_apply(struct pw_nocluster *nc, struct pw_engine_config *cfg)
{
    cfg->client = nc->client;
    cfg->executor_new = pw_fakeexec_factory;
    cfg->executor_arg = nc->fakes;
}

void pw_nocluster_fini(struct pw_nocluster *nc)
{
    pw_k8s_client_free(nc->client);
    pw_k8s_config_free(nc->kcfg);
    memset(nc, 0, sizeof *nc);
}
