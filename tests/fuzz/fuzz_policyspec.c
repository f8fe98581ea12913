/* fuzz_policyspec.c: POST /api/v1/policies bodies (docs/policies.md) as the API takes them: the codec's
 * pw_api_parse_json, then pw_polspec_parse (src/policy/polspec.c; its task-like fields through the task
 * spec's parser, "predict" through the predictor's pw_predict_parse_spec).
 * Input: the body up to the first '\n', then a node's labels (a JSON object; none when it does not
 * parse) to match against the accepted policy.
 * Checks: a refusal gives at least one field error; an accepted spec's document (what the API shows and the
 * store keeps, and what pw_policy_start validates again at a restart) parses again to the same
 * document; its waves (static images, a refresh, and a wave on one node) are task specs the task parser
 * accepts. */
#include <jansson.h>

#include "api/api.h"
#include "fuzz.h"
#include "policy/polspec.h"
#include "predict/predict.h"

/* The predictor's check without its service (pw_predict_hook_check also records the poolLabel). */
static int check(void *ud, const json_t *spec, char **field, char **msg)
{
    (void)ud;
    struct pw_predict_limits lim;
    const char *pool = NULL;
    return pw_predict_parse_spec(spec, &lim, &pool, field, msg);
}

static const struct pw_policy_predictor PRED = {.check = check};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *rest;
    size_t rest_n;
    char *body_text = fuzz_head(data, size, &rest, &rest_n);
    json_t *body = NULL, *err = NULL;
    if (pw_api_parse_json("application/json", body_text, strlen(body_text), &body, &err) != 0) {
        if (!err)
            abort();
        json_decref(err);
        free(body_text);
        return 0;
    }
    free(body_text);
    struct pw_polspec s;
    struct pw_field_errors errs;
    bool with_pred = size % 2 == 0; /* both: prediction on and off */
    if (pw_polspec_parse(body, with_pred ? &PRED : NULL, &s, &errs) != 0) {
        if (errs.n == 0 || !errs.e[0].message[0])
            abort(); /* a refusal says what is wrong (with the field, which is "" for an unknown key "") */
        json_decref(body);
        return 0;
    }
    json_decref(body);
    if (!s.name || !json_is_object(s.doc) || (s.n_images == 0 && !s.predict))
        abort();
    struct pw_polspec again;
    if (pw_polspec_parse(s.doc, with_pred ? &PRED : NULL, &again, &errs) != 0)
        abort(); /* the stored form of an accepted policy is refused */
    if (!json_equal(s.doc, again.doc))
        abort(); /* the round trip changed the policy */
    pw_polspec_fini(&again);

    json_t *labels = rest_n ? json_loadb((const char *)rest, rest_n, 0, NULL) : NULL;
    if (json_is_object(labels)) {
        json_t *node = json_pack("{s:{s:s, s:O}}", "metadata", "name", "n1", "labels", labels);
        (void)pw_polspec_selects(&s, node);
        (void)pw_polspec_node_eligible(node);
        json_decref(node);
    }
    json_decref(labels);

    json_t *predicted = json_pack("[ss]", "nginx:1.27", "not a reference");
    size_t dropped = 0;
    json_t *images = pw_polspec_images(&s, predicted, &dropped);
    json_decref(predicted);
    if (json_array_size(images) < 1 || dropped < 1)
        abort(); /* the valid predicted image is added (at most 100 static ones), the bad one dropped */
    char *const nodes[] = {"n1"};
    for (int refresh = 0; refresh < 2; refresh++) {
        struct pw_taskspec ts;
        char *why = NULL;
        if (pw_polspec_wave(&s, images, nodes, 1, refresh, &ts, &why) != 0)
            abort(); /* an accepted policy's wave is a valid task */
        if (!ts.policy || strcmp(ts.policy, s.name) != 0)
            abort();
        pw_taskspec_fini(&ts);
    }
    json_decref(images);
    pw_polspec_fini(&s);
    return 0;
}
