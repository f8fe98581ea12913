/* cri.h: a client of a node's container runtime through the CRI (package runtime.v1): the
 * ImageService calls prewarm-agent needs (image status, pull, list, remove, image-fs usage) and the
 * RuntimeService's Version. Each call is one unary gRPC request, HTTP/2 with prior knowledge over
 * the runtime's unix socket (containerd, CRI-O), messages encoded with protobuf-c (cri.proto).
 *
 * Thread model: a pw_cri may be used from several threads at once; every call blocks until the
 * runtime answers or its timeout passes (each call uses its own connection, so one slow pull never
 * holds up another call).
 *
 * Failure: every call returns 0, or a PW_E* code with *st (when not NULL) saying why:
 *   PW_EUNAVAIL   the runtime cannot be reached (socket missing, refused, reset): st->grpc -1
 *   PW_ECANCELED  the caller's stop flag ended the call
 *   PW_ETIMEDOUT  the timeout passed (st->grpc 4, DEADLINE_EXCEEDED, if the runtime said so)
 *   PW_EPROTO     the answer was not a gRPC response we can read
 *   PW_EIO        the runtime answered with a gRPC error: st->grpc its status code, st->message the
 *                 runtime's own text (e.g. containerd's "failed to pull and unpack image ...: 401
 *                 Unauthorized")
 * Outputs are written only on success. */
#ifndef PW_AGENT_CRI_H
#define PW_AGENT_CRI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pw_cri pw_cri;

/* gRPC status codes the callers look at. */
#define PW_CRI_GRPC_INVALID_ARGUMENT 3
#define PW_CRI_GRPC_DEADLINE_EXCEEDED 4
#define PW_CRI_GRPC_NOT_FOUND 5
#define PW_CRI_GRPC_UNAUTHENTICATED 16
#define PW_CRI_GRPC_UNAVAILABLE 14

struct pw_cri_status {
    int grpc;          /* the gRPC status code; -1 when the runtime gave none */
    char message[1024]; /* the runtime's message or the transport's error ("" if none), truncated */
};

/* One image the runtime holds. */
struct pw_cri_image {
    char *id;
    char **tags;    /* n_tags repo tags, e.g. "127.0.0.1:5000/small:1" */
    size_t n_tags;
    char **digests; /* n_digests repo digests, "repo@sha256:..." */
    size_t n_digests;
    uint64_t size;
    bool pinned;
};

/* Registry credentials for one pull (CRI AuthConfig; NULL or "" fields are left out). Borrowed. */
struct pw_cri_auth {
    const char *username, *password;
    const char *auth; /* base64 "user:password" */
    const char *server_address;
    const char *identity_token, *registry_token;
};

/* The runtime's image filesystem (its first one). */
struct pw_cri_fs {
    char mountpoint[512];
    uint64_t used_bytes;
    uint64_t inodes_used;
};

/* endpoint: "unix:///path/to.sock" or an absolute path. PW_EINVAL otherwise. Nothing is connected
 * yet. *out: free with pw_cri_free. */
int pw_cri_new(const char *endpoint, pw_cri **out);
void pw_cri_free(pw_cri *c);
/* The socket path (borrowed). */
const char *pw_cri_socket(const pw_cri *c);

/* RuntimeService/Version: the runtime's name and version (caller frees both with free()). */
int pw_cri_version(pw_cri *c, int timeout_ms, char **name, char **version, struct pw_cri_status *st);
/* ImageStatus of image: *out is the image (free with pw_cri_images_free(*out, 1)), or NULL when the
 * runtime does not hold it. */
int pw_cri_image_status(pw_cri *c, const char *image, int timeout_ms, struct pw_cri_image **out,
                        struct pw_cri_status *st);
/* PullImage of image (auth NULL: anonymous); *image_ref (may be NULL; caller frees) is the id the
 * runtime gives the pulled image. stop (may be NULL): another thread sets *stop to non-zero to end
 * the call (PW_ECANCELED; the connection closes, which cancels the runtime's pull). */
int pw_cri_pull(pw_cri *c, const char *image, const struct pw_cri_auth *auth, int timeout_ms, const int *stop,
                char **image_ref, struct pw_cri_status *st);
/* ListImages: every image the runtime holds (free with pw_cri_images_free). */
int pw_cri_list(pw_cri *c, int timeout_ms, struct pw_cri_image **out, size_t *n, struct pw_cri_status *st);
/* RemoveImage (idempotent: an image not held is 0). */
int pw_cri_remove(pw_cri *c, const char *image, int timeout_ms, struct pw_cri_status *st);
/* ImageFsInfo: the first image filesystem's mountpoint and usage. PW_ENOTFOUND when none listed. */
int pw_cri_fs_info(pw_cri *c, int timeout_ms, struct pw_cri_fs *out, struct pw_cri_status *st);

void pw_cri_images_free(struct pw_cri_image *v, size_t n);

/* ---- another runtime behind the same calls ----
 * A backend answers the calls instead of a CRI socket (kubesim's simulated agents run the real agent
 * code over its model of the nodes' runtimes). Each function has the contract of the call of the
 * same name; timeouts are the callers'. The backend and arg are borrowed for the pw_cri's life. */
struct pw_cri_backend {
    const char *name; /* what pw_cri_socket shows */
    int (*version)(void *arg, char **name, char **version, struct pw_cri_status *st);
    int (*image_status)(void *arg, const char *image, struct pw_cri_image **out, struct pw_cri_status *st);
    int (*pull)(void *arg, const char *image, const struct pw_cri_auth *auth, int timeout_ms, const int *stop,
                char **image_ref, struct pw_cri_status *st);
    int (*list)(void *arg, struct pw_cri_image **out, size_t *n, struct pw_cri_status *st);
    int (*remove)(void *arg, const char *image, struct pw_cri_status *st);
    int (*fs_info)(void *arg, struct pw_cri_fs *out, struct pw_cri_status *st);
};
int pw_cri_new_backend(const struct pw_cri_backend *be, void *arg, pw_cri **out);

#endif
