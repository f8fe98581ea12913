/* fuzz_dockercfg.c: image pull secrets' .dockerconfigjson (and .dockercfg) text
 * (pw_dockercfg_parse) and the kubelet-style key match. Input: an image reference, then after a '\n'
 * the secret's text. */
#include <jansson.h>

#include "engine/dockercfg.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *rest;
    size_t rest_n;
    char *image = fuzz_head(data, size, &rest, &rest_n);
    json_t *auths = NULL;
    const char *why = NULL;
    if (pw_dockercfg_parse((const char *)rest, rest_n, &auths, &why) == 0) {
        json_decref(pw_dockercfg_match(auths, image));
        json_decref(pw_dockercfg_match(auths, "docker.io/library/nginx:1.27"));
        json_decref(auths);
    } else if (!why) {
        abort(); /* a refusal names what is wrong */
    }
    free(image);
    return 0;
}
