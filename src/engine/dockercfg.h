/* dockercfg.h: registry credentials from Kubernetes image pull secrets (type
 * kubernetes.io/dockerconfigjson: {"auths": {KEY: {username, password, auth, identitytoken,
 * registrytoken}}}) and which of them an image gets, matched as the kubelet's credential keyring
 * does (pkg/credentialprovider): a key is a host with an optional port and path ("https://" and
 * "http://" and a trailing "/v1/" style path are allowed; "index.docker.io" and "docker.io" both mean
 * Docker Hub); a host label "*" matches exactly one label ("*.example.com" matches
 * "a.example.com", not "example.com" nor "a.b.example.com"); ports must be equal; the key's path must
 * be a prefix of the image's repository path, on a "/" boundary; when several keys match, the most
 * specific (reverse lexicographic order, so a longer path first) wins. "auth" is base64
 * "user:password" and fills username/password when they are absent.
 *
 * Thread model: pure functions on the caller's values. Credentials are secrets: callers never log
 * them. */
#ifndef PW_ENGINE_DOCKERCFG_H
#define PW_ENGINE_DOCKERCFG_H

#include <jansson.h>

/* Parses a secret's .dockerconfigjson text (also the older .dockercfg form, a bare object of keys).
 * 0 and *out (an object KEY -> {username, password, auth?, identitytoken?, registrytoken?}, caller
 * decrefs) or PW_EINVAL with *why (a static message naming what is wrong; never secret data). */
int pw_dockercfg_parse(const char *text, size_t len, json_t **out, const char **why);

/* The credentials for image (a reference) among auths (the parsed form above, or several merged:
 * the first secret's keys win on ties): a new object {username, password, auth?, serverAddress,
 * identityToken?, registryToken?} the caller decrefs, or NULL when no key matches. serverAddress is
 * "https://" + the image's registry host (the CRI runtimes compare its host with the registry's). */
json_t *pw_dockercfg_match(const json_t *auths, const char *image);

#endif
