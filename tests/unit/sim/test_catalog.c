/* Unit tests for kubesim's image catalogue: reference normalisation, lookup by tag and digest,
 * platforms, shared layers, executables, credentials, and the parser's rejections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "sim/world_int.h"

static void test_normalize(void **state)
{
    (void)state;
    char out[SIM_REF_MAX];
    static const struct {
        const char *in, *want;
    } ok[] = {
        {"nginx", "docker.io/library/nginx:latest"},
        {"nginx:1.27", "docker.io/library/nginx:1.27"},
        {"docker.io/library/nginx:1.27", "docker.io/library/nginx:1.27"},
        {"docker.io/nginx:1.27", "docker.io/library/nginx:1.27"},
        {"index.docker.io/library/nginx:1.27", "docker.io/library/nginx:1.27"},
        {"pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime", "docker.io/pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime"},
        {"gcr.io/distroless/static-debian12:nonroot", "gcr.io/distroless/static-debian12:nonroot"},
        {"localhost:5000/app", "localhost:5000/app:latest"},
        {"localhost/app:v1", "localhost/app:v1"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(sim_ref_normalize(ok[i].in, out, sizeof out), 0);
        assert_string_equal(out, ok[i].want);
    }
    const char *d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char ref[256];
    snprintf(ref, sizeof ref, "busybox:1.36@%s", d);
    assert_int_equal(sim_ref_normalize(ref, out, sizeof out), 0);
    char want[256];
    snprintf(want, sizeof want, "docker.io/library/busybox@%s", d);
    assert_string_equal(out, want);
    static const char *bad[] = {"",     "Nginx:1.27", "nginx:",      "nginx@sha256:12",
                                "a//b", "-x",         "nginx:1.27 ", "nginx:bad/tag"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sim_ref_normalize(bad[i], out, sizeof out), PW_EINVAL);
    sim_ref_repo("docker.io/library/nginx:1.27", out, sizeof out);
    assert_string_equal(out, "docker.io/library/nginx");
    sim_ref_repo("localhost:5000/app:v1", out, sizeof out);
    assert_string_equal(out, "localhost:5000/app");
    sim_ref_registry("registry.example.com/team/private-app:1.0", out, sizeof out);
    assert_string_equal(out, "registry.example.com");
    assert_true(sim_ref_is_latest("nginx"));
    assert_true(sim_ref_is_latest("localhost:5000/app"));
    assert_false(sim_ref_is_latest("localhost:5000/app:v1"));
}

static void test_default_catalog(void **state)
{
    (void)state;
    sim_catalog *cat = NULL;
    char err[256] = "";
    assert_int_equal(sim_catalog_load(NULL, &cat, err, sizeof err), 0);
    static const char *must[] = {"busybox:1.36",
                                 "nginx:1.27",
                                 "redis:7.4",
                                 "postgres:16",
                                 "python:3.12",
                                 "gcr.io/distroless/static-debian12:nonroot",
                                 "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime",
                                 "nvcr.io/nvidia/pytorch:24.08-py3",
                                 "vllm/vllm-openai:v0.6.3",
                                 "registry.example.com/team/private-app:1.0",
                                 "ghcr.io/prewarm/prewarm:0.1.0",
                                 "docker.io/library/nginx:1.27",
                                 "docker.io/nginx:1.27"};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        assert_non_null(sim_catalog_find(cat, must[i]));
    assert_null(sim_catalog_find(cat, "nginx:does-not-exist"));
    assert_null(sim_catalog_find(cat, "NGINX:1.27"));
    assert_ptr_equal(sim_catalog_find(cat, "nginx:1.27"), sim_catalog_find(cat, "docker.io/library/nginx:1.27"));

    const struct sim_image *bb = sim_catalog_find(cat, "busybox:1.36");
    assert_true(sim_image_has_exe(bb, "/bin/sh"));
    assert_true(sim_image_has_exe(bb, "/bin/true"));
    const struct sim_image *dl = sim_catalog_find(cat, "gcr.io/distroless/static-debian12:nonroot");
    assert_false(sim_image_has_exe(dl, "/bin/sh"));
    assert_false(sim_image_has_exe(dl, "/bin/true"));
    const struct sim_image *helper = sim_catalog_find(cat, "ghcr.io/prewarm/prewarm:0.1.0");
    assert_true(sim_image_has_exe(helper, "/prewarm-true"));
    assert_non_null(sim_image_platform(helper, "arm64"));

    /* digests: by index digest and by platform digest, with the repository */
    char ref[SIM_REF_MAX];
    snprintf(ref, sizeof ref, "busybox@%s", bb->digest);
    assert_ptr_equal(sim_catalog_find(cat, ref), bb);
    snprintf(ref, sizeof ref, "docker.io/library/busybox@%s", sim_image_platform(bb, "arm64")->digest);
    assert_ptr_equal(sim_catalog_find(cat, ref), bb);
    snprintf(ref, sizeof ref, "nginx@%s", bb->digest);
    assert_null(sim_catalog_find(cat, ref));
    assert_int_equal(strlen(bb->digest), 71);

    /* vllm amd64 only; the AI images are big and share CUDA layers */
    const struct sim_image *vllm = sim_catalog_find(cat, "vllm/vllm-openai:v0.6.3");
    assert_non_null(sim_image_platform(vllm, "amd64"));
    assert_null(sim_image_platform(vllm, "arm64"));
    const struct sim_platform *v = sim_image_platform(vllm, "amd64");
    const struct sim_platform *pt =
        sim_image_platform(sim_catalog_find(cat, "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime"), "amd64");
    const struct sim_platform *nv =
        sim_image_platform(sim_catalog_find(cat, "nvcr.io/nvidia/pytorch:24.08-py3"), "amd64");
    assert_true(v->size > 5000000000ULL && nv->size > 5000000000ULL && pt->size > 5000000000ULL);
    assert_true(nv->size < 30000000000ULL);
    int shared = 0;
    for (int i = 0; i < v->nlayers; i++)
        for (int j = 0; j < pt->nlayers; j++)
            if (v->layers[i] == pt->layers[j])
                shared++;
    assert_true(shared >= 3);
    /* debian base shared by nginx and python */
    const struct sim_platform *ng = sim_image_platform(sim_catalog_find(cat, "nginx:1.27"), "amd64");
    const struct sim_platform *py = sim_image_platform(sim_catalog_find(cat, "python:3.12"), "amd64");
    assert_int_equal(ng->layers[0], py->layers[0]);
    assert_string_not_equal(ng->digest, sim_image_platform(sim_catalog_find(cat, "nginx:1.27"), "arm64")->digest);

    const struct sim_image *priv = sim_catalog_find(cat, "registry.example.com/team/private-app:1.0");
    assert_non_null(priv->auth_user);
    assert_string_equal(priv->auth_registry, "registry.example.com");
    assert_null(bb->auth_user);
    sim_catalog_free(cat);
}

static void test_parse_errors(void **state)
{
    (void)state;
    sim_catalog *cat = NULL;
    char err[256];
    assert_int_equal(sim_catalog_parse("{", &cat, err, sizeof err), PW_EINVAL);
    assert_int_equal(sim_catalog_parse("{\"images\":[]}", &cat, err, sizeof err), PW_EINVAL);
    const char *d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const char *d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    char doc[2048];
    /* the same layer with two sizes */
    snprintf(doc, sizeof doc,
             "{\"images\":[{\"names\":[\"a:1\"],\"digest\":\"%s\",\"platforms\":[{\"arch\":\"amd64\",\"digest\":\"%s\","
             "\"layers\":[{\"digest\":\"%s\",\"size\":10},{\"digest\":\"%s\",\"size\":11}]}]}]}",
             d1, d2, d1, d1);
    assert_int_equal(sim_catalog_parse(doc, &cat, err, sizeof err), PW_EINVAL);
    assert_non_null(strstr(err, "two sizes"));
    /* a good small one */
    snprintf(doc, sizeof doc,
             "{\"images\":[{\"names\":[\"a:1\",\"quay.io/x/"
             "a:1\"],\"digest\":\"%s\",\"platforms\":[{\"arch\":\"amd64\",\"digest\":\"%s\","
             "\"layers\":[{\"digest\":\"%s\",\"size\":10}]}],\"executables\":[\"/a\"]}]}",
             d1, d2, d1);
    assert_int_equal(sim_catalog_parse(doc, &cat, err, sizeof err), 0);
    assert_int_equal(cat->nimages, 1);
    assert_int_equal(cat->nlayers, 1);
    assert_non_null(sim_catalog_find(cat, "docker.io/library/a:1"));
    assert_non_null(sim_catalog_find(cat, "quay.io/x/a:1"));
    assert_null(sim_catalog_find(cat, "a:2"));
    sim_catalog_free(cat);
    /* a name that is not valid */
    snprintf(doc, sizeof doc,
             "{\"images\":[{\"names\":[\"A:1\"],\"digest\":\"%s\",\"platforms\":[{\"arch\":\"amd64\",\"digest\":\"%s\","
             "\"layers\":[{\"digest\":\"%s\",\"size\":10}]}]}]}",
             d1, d2, d1);
    assert_int_equal(sim_catalog_parse(doc, &cat, err, sizeof err), PW_EINVAL);
}

/* --catalog FILE: the file replaces the built-in catalogue; a missing file is an error */
static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/pw-catalog-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *doc =
        "{\"images\":[{\"names\":[\"example.com/x:1\"],"
        "\"digest\":\"sha256:3333333333333333333333333333333333333333333333333333333333333333\","
        "\"platforms\":[{\"arch\":\"arm64\","
        "\"digest\":\"sha256:4444444444444444444444444444444444444444444444444444444444444444\","
        "\"layers\":[{\"digest\":\"sha256:5555555555555555555555555555555555555555555555555555555555555555\","
        "\"size\":42}]}],\"executables\":[\"/x\"]}]}";
    assert_int_equal(write(fd, doc, strlen(doc)), (ssize_t)strlen(doc));
    close(fd);
    sim_catalog *cat = NULL;
    char err[256];
    assert_int_equal(sim_catalog_load(path, &cat, err, sizeof err), 0);
    unlink(path);
    assert_int_equal(cat->nimages, 1);
    assert_null(sim_catalog_find(cat, "busybox:1.36"));
    const struct sim_image *x = sim_catalog_find(cat, "example.com/x:1");
    assert_non_null(x);
    assert_null(sim_image_platform(x, "amd64"));
    assert_int_equal(sim_image_platform(x, "arm64")->size, 42);
    assert_string_equal(sim_image_platform(x, "arm64")->os, "linux");
    sim_catalog_free(cat);
    assert_int_equal(sim_catalog_load("/nonexistent/catalog.json", &cat, err, sizeof err), PW_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_default_catalog),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
