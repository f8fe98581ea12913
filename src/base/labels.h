/* labels.h: Kubernetes label selectors (the full string grammar) and label key/value validation.
 * In base because both programs need the grammar: prewarmd (task selectors, label checks) and kubesim
 * (the API server's labelSelector on list and watch); it uses only libc, jansson and base.
 *
 * Grammar (apimachinery labels.Parse): requirements separated by commas, ANDed:
 *   key=value  key==value  key!=value  key in (v1,v2)  key notin (v1,v2)  key  !key
 * (also `key>N` / `key<N` as the real parser accepts them). Keys are qualified names ([prefix/]name,
 * name <= 63 chars, alphanumerics with - _ . inside; prefix a DNS-1123 subdomain <= 253); values <= 63
 * chars, empty or alphanumeric at both ends with - _ . inside. `!=` and `notin` match objects
 * without the key. An empty selector matches everything.
 *
 * Thread model: a parsed selector is immutable and may be shared between threads. */
#ifndef PW_BASE_LABELS_H
#define PW_BASE_LABELS_H

#include <stdbool.h>

#include <jansson.h>

typedef struct pw_labelsel pw_labelsel;

/* Parses text (NULL or "" -> matches everything). On failure returns PW_EINVAL and, when errmsg is not
 * NULL, *errmsg gets a message naming the offending part (caller frees with free()); *out untouched.
 * *out: free with pw_labelsel_free. */
int pw_labelsel_parse(const char *text, pw_labelsel **out, char **errmsg);
void pw_labelsel_free(pw_labelsel *sel);
/* labels: a JSON object of string values (metadata.labels), or NULL for no labels. */
bool pw_labelsel_matches(const pw_labelsel *sel, const json_t *labels);
/* True for a selector that matches everything. */
bool pw_labelsel_empty(const pw_labelsel *sel);

/* Validation as the API server does it: 0 or PW_EINVAL with *errmsg (caller frees) saying why. */
int pw_label_key_valid(const char *key, char **errmsg);
int pw_label_value_valid(const char *value, char **errmsg);
/* DNS-1123 subdomain (object names: <= 253, lowercase alphanumerics, '-' and '.'). */
bool pw_dns1123_subdomain(const char *s);
/* DNS-1123 label (<= 63, lowercase alphanumerics and '-', alphanumeric at both ends). */
bool pw_dns1123_label(const char *s);

#endif
