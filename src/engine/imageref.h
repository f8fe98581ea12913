/* imageref.h: container image references by the distribution reference grammar
 * (github.com/distribution/reference), their docker.io normalisation, and whether a node already
 * holds one (from the node's status.images).
 *
 *   reference := name [ ":" tag ] [ "@" digest ]
 *   name      := [ domain "/" ] path-component { "/" path-component }     (at most 255 characters)
 *   domain    := host [ ":" port ]   (a first component is a domain when it has '.' or ':' or is
 *                                      "localhost")
 *   path-component := [a-z0-9]+ { ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ }
 *   tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
 *   digest    := algorithm ":" hex    (sha256: exactly 64 lowercase hex digits)
 *
 * Normalisation follows the docker CLI and the kubelet: no domain -> docker.io, a one-component path
 * on docker.io -> library/<name>, index.docker.io -> docker.io.
 *
 * Thread model: pure functions; safe from any thread on distinct objects. */
#ifndef PW_ENGINE_IMAGEREF_H
#define PW_ENGINE_IMAGEREF_H

#include <jansson.h>
#include <stdbool.h>

/* A parsed, normalised reference. Shown because callers read its fields. Every string is owned by
 * the struct (freed by pw_imageref_fini); tag and digest may be NULL, domain and path never are.
 * domain is normalised ("docker.io" for Docker Hub), path too ("library/nginx"). */
struct pw_imageref {
    char *domain; /* "docker.io", "registry.example.com:5000", "localhost" */
    char *path;   /* "library/nginx", "team/app" */
    char *tag;    /* "1.27" or NULL */
    char *digest; /* "sha256:<64 hex>" or NULL */
};

/* Parses ref. Returns 0 and fills *out (the caller releases it with pw_imageref_fini), or PW_EINVAL
 * with *errmsg set to a message such as "invalid reference format: repository name must be
 * lowercase" (caller frees with free(); errmsg may be NULL when the message is not wanted). *out is
 * written only on success. */
int pw_imageref_parse(const char *ref, struct pw_imageref *out, char **errmsg);

/* Frees the strings of r and clears it; r may be NULL or already cleared. */
void pw_imageref_fini(struct pw_imageref *r);

/* Returns the normalised form, "docker.io/library/nginx:1.27" or "quay.io/x/y@sha256:..." (with both,
 * "domain/path:tag@digest"); a reference with neither tag nor digest gets ":latest". Caller frees
 * with free(). */
char *pw_imageref_normalized(const struct pw_imageref *r);

/* Whether node_images (a node's status.images: [{names:[...], sizeBytes}], or the compact form of
 * the engine's node cache, an array of the names themselves; borrowed, may be NULL) holds r: a digest reference matches a name "repo@digest", a tag reference a name "repo:tag", both
 * sides compared in normalised form. A reference whose tag is "latest", or with neither tag nor
 * digest, is never present (it may have moved), so it is always pulled. */
bool pw_imageref_present(const struct pw_imageref *r, const json_t *node_images);

#endif
