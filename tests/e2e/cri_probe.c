/* cri_probe: drives the CRI client (src/agent/cri.h) against a real runtime for tests/e2e: one
 * call per run, its result as one JSON line on stdout ({"rc": PW_E*, "grpc": N, "message": "..."}
 * plus the call's outputs). Usage: cri_probe SOCKET version|status IMAGE|pull IMAGE [USER PASS]|
 * list|remove IMAGE|fsinfo [TIMEOUT_MS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agent/cri.h"
#include "base/err.h"

static json_t *image_json(const struct pw_cri_image *im)
{
    json_t *tags = json_array(), *digests = json_array();
    for (size_t i = 0; i < im->n_tags; i++)
        json_array_append_new(tags, json_string(im->tags[i]));
    for (size_t i = 0; i < im->n_digests; i++)
        json_array_append_new(digests, json_string(im->digests[i]));
    return json_pack("{s:s, s:o, s:o, s:I}", "id", im->id, "tags", tags, "digests", digests, "size",
                     (json_int_t)im->size);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: cri_probe SOCKET CALL [ARGS]\n");
        return 2;
    }
    pw_cri *c;
    if (pw_cri_new(argv[1], &c) != 0) {
        fprintf(stderr, "cri_probe: bad endpoint %s\n", argv[1]);
        return 2;
    }
    const char *op = argv[2];
    const char *tmo_env = getenv("CRI_PROBE_TIMEOUT_MS");
    int tmo = tmo_env ? atoi(tmo_env) : 60000;
    struct pw_cri_status st = {.grpc = 0};
    json_t *out = json_object();
    int rc;
    if (strcmp(op, "version") == 0) {
        char *name = NULL, *ver = NULL;
        rc = pw_cri_version(c, tmo, &name, &ver, &st);
        if (rc == 0) {
            json_object_set_new(out, "name", json_string(name));
            json_object_set_new(out, "version", json_string(ver));
        }
        free(name);
        free(ver);
    } else if (strcmp(op, "status") == 0 && argc > 3) {
        struct pw_cri_image *im = NULL;
        rc = pw_cri_image_status(c, argv[3], tmo, &im, &st);
        if (rc == 0)
            json_object_set_new(out, "image", im ? image_json(im) : json_null());
        pw_cri_images_free(im, im ? 1 : 0);
    } else if (strcmp(op, "pull") == 0 && argc > 3) {
        struct pw_cri_auth auth = {0};
        if (argc > 5) {
            auth.username = argv[4];
            auth.password = argv[5];
        }
        char *ref = NULL;
        rc = pw_cri_pull(c, argv[3], argc > 5 ? &auth : NULL, tmo, NULL, &ref, &st);
        if (rc == 0)
            json_object_set_new(out, "ref", json_string(ref ? ref : ""));
        free(ref);
    } else if (strcmp(op, "list") == 0) {
        struct pw_cri_image *v = NULL;
        size_t n = 0;
        rc = pw_cri_list(c, tmo, &v, &n, &st);
        if (rc == 0) {
            json_t *a = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(a, image_json(&v[i]));
            json_object_set_new(out, "images", a);
            pw_cri_images_free(v, n);
        }
    } else if (strcmp(op, "remove") == 0 && argc > 3) {
        rc = pw_cri_remove(c, argv[3], tmo, &st);
    } else if (strcmp(op, "fsinfo") == 0) {
        struct pw_cri_fs fs;
        rc = pw_cri_fs_info(c, tmo, &fs, &st);
        if (rc == 0) {
            json_object_set_new(out, "mountpoint", json_string(fs.mountpoint));
            json_object_set_new(out, "used", json_integer((json_int_t)fs.used_bytes));
        }
    } else {
        fprintf(stderr, "cri_probe: unknown call %s\n", op);
        pw_cri_free(c);
        json_decref(out);
        return 2;
    }
    json_object_set_new(out, "rc", json_integer(rc));
    json_object_set_new(out, "error", json_string(rc ? pw_strerror(rc) : ""));
    if (rc != 0) {
        json_object_set_new(out, "grpc", json_integer(st.grpc));
        json_object_set_new(out, "message", json_string(st.message));
    }
    char *s = json_dumps(out, JSON_COMPACT);
    puts(s);
    free(s);
    json_decref(out);
    pw_cri_free(c);
    return 0;
}
