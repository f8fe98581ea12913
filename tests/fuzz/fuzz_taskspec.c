/* fuzz_taskspec.c: POST /api/v1/tasks bodies through the API's codec into a task spec
 * (pw_api_parse_create: JSON, then pw_taskspec_parse). An accepted spec must survive the store's
 * round trip: pw_taskspec_parse(pw_taskspec_to_json(s)) gives back s (taskspec.h). */
#include <jansson.h>

#include "api/api.h"
#include "engine/taskspec.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pw_taskspec spec;
    json_t *err = NULL;
    if (pw_api_parse_create("application/json", (const char *)data, size, &spec, &err) != 0) {
        if (!err)
            abort(); /* a refusal always has its error body */
        json_decref(err);
        return 0;
    }
    json_t *j = pw_taskspec_to_json(&spec);
    struct pw_taskspec again;
    struct pw_field_errors errs;
    if (pw_taskspec_parse(j, &again, &errs) != 0)
        abort(); /* the stored form of an accepted spec is refused */
    json_t *j2 = pw_taskspec_to_json(&again);
    if (!json_equal(j, j2))
        abort(); /* the round trip changed the spec */
    json_decref(j2);
    json_decref(j);
    pw_taskspec_fini(&again);
    pw_taskspec_fini(&spec);
    return 0;
}
