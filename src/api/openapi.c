/* openapi.c: the OpenAPI 3.1 document of the REST API (src/api/openapi.json, the source of truth for
 * every endpoint, schema and error), embedded in the binary at build time and served at
 * GET /openapi.json. Embedding with the assembler's .incbin keeps the document one file that editors,
 * validators and the tests read as it is, with no generated C in the tree. */
#include <string.h>

#include "api/api.h"

/* The path is relative to the repository root, where make runs the compiler; the Makefile makes this
 * object depend on the JSON file. A NUL follows the document so it is also a C string. */
__asm__(".section .rodata\n"
        ".global pw_api_openapi_json\n"
        ".type pw_api_openapi_json, @object\n"
        ".balign 16\n"
        "pw_api_openapi_json:\n"
        ".incbin \"src/api/openapi.json\"\n"
        ".byte 0\n"
        ".size pw_api_openapi_json, . - pw_api_openapi_json\n"
        ".previous\n");

void pw_api_h_openapi(pw_http_req *req, void *ctx)
{
    (void)ctx;
    pw_http_reply(req, 200, "application/json", pw_api_openapi_json, strlen(pw_api_openapi_json));
}
