/* fuzz_tokenfile.c: the static token file (kube-apiserver --token-auth-file CSV) as both readers see
 * it: prewarmd's (pw_auth_tokenfile_parse, src/auth) and kubesim's (sim_tokenfile_parse, sim/).
 * Input: the file's text. A refusal must say why; an accepted file must give one record per token. */
#include <jansson.h>

#include "auth/auth.h"
#include "fuzz.h"
#include "sim/tokenfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[256] = "";
    json_t *tokens = NULL;
    if (pw_auth_tokenfile_parse((const char *)data, size, &tokens, why, sizeof why) == 0) {
        if (!json_is_object(tokens))
            abort();
        const char *key;
        json_t *rec;
        json_object_foreach(tokens, key, rec) {
            if (strlen(key) != 64 || !json_is_string(json_object_get(rec, "username")))
                abort(); /* keyed by the token's SHA-256, never the token */
        }
        json_decref(tokens);
    } else if (!why[0]) {
        abort();
    }
    sim_tokenfile *t = NULL;
    char *err = NULL;
    if (sim_tokenfile_parse("fuzz.csv", (const char *)data, size, &t, &err) == 0) {
        (void)sim_tokenfile_count(t);
        json_decref(sim_tokenfile_user(t, "token"));
        sim_tokenfile_free(t);
    } else if (!err) {
        abort();
    }
    free(err);
    return 0;
}
