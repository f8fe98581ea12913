/* fuzz_imageref.c: image references (pw_imageref_parse), as a create request's images[] carries
 * them. Input: the reference, then after a '\n' an optional JSON array, a node's status.images, for
 * pw_imageref_present. A reference that parses normalises to one that parses again to itself. */
#include <jansson.h>

#include "engine/imageref.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *rest;
    size_t rest_n;
    char *text = fuzz_head(data, size, &rest, &rest_n);
    struct pw_imageref r;
    char *msg = NULL;
    if (pw_imageref_parse(text, &r, &msg) != 0) {
        if (!msg)
            abort();
        free(msg);
        free(text);
        return 0;
    }
    char *norm = pw_imageref_normalized(&r);
    struct pw_imageref r2;
    if (pw_imageref_parse(norm, &r2, NULL) != 0)
        abort(); /* the normalised form must parse */
    char *norm2 = pw_imageref_normalized(&r2);
    if (strcmp(norm, norm2) != 0)
        abort(); /* normalising is idempotent */
    json_t *images = json_loadb((const char *)rest, rest_n, 0, NULL);
    (void)pw_imageref_present(&r, images);
    json_decref(images);
    free(norm2);
    free(norm);
    pw_imageref_fini(&r2);
    pw_imageref_fini(&r);
    free(text);
    return 0;
}
