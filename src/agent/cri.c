/* cri.c: unary gRPC calls to the CRI over libcurl (cri.h). A call is a POST of one length-prefixed
 * protobuf message to /runtime.v1.<Service>/<Method> with HTTP/2 prior knowledge over the unix
 * socket; the answer is one length-prefixed message and the grpc-status/grpc-message trailers
 * (curl hands trailers to the header callback; a failing call may send them as headers instead,
 * with an empty body). */
#include "agent/cri.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "agent/cri.pb-c.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/mem.h"

#define MAX_RESPONSE (64u << 20) /* ListImages of a node with thousands of images stays far below */
#define IMAGE_SERVICE "/runtime.v1.ImageService/"
#define RUNTIME_SERVICE "/runtime.v1.RuntimeService/"

struct pw_cri {
    char *socket;
    const struct pw_cri_backend *be; /* NULL: the socket */
    void *be_arg;
};

int pw_cri_new_backend(const struct pw_cri_backend *be, void *arg, pw_cri **out)
{
    if (!be || !be->version || !be->image_status || !be->pull || !be->list || !be->remove || !be->fs_info)
        return PW_EINVAL;
    pw_cri *c = pw_xcalloc(1, sizeof *c);
    c->socket = pw_xstrdup(be->name ? be->name : "backend");
    c->be = be;
    c->be_arg = arg;
    *out = c;
    return 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int pw_cri_new(const char *endpoint, pw_cri **out)
{
    if (!endpoint)
        return PW_EINVAL;
    const char *path = strncmp(endpoint, "unix://", 7) == 0 ? endpoint + 7 : endpoint;
    if (path[0] != '/' || strlen(path) >= 108) /* sun_path */
        return PW_EINVAL;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return PW_ENOMEM;
    pw_cri *c = pw_xcalloc(1, sizeof *c);
    c->socket = pw_xstrdup(path);
    *out = c;
    return 0;
}

void pw_cri_free(pw_cri *c)
{
    if (!c)
        return;
    free(c->socket);
    free(c);
}

const char *pw_cri_socket(const pw_cri *c)
{
    return c->socket;
}

/* ---- one call ---- */

struct reply {
    pw_buf body;
    int grpc; /* -1 until a grpc-status header or trailer */
    char message[1024];
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    return pw_buf_append(&r->body, p, size * n) == 0 ? size * n : 0;
}

/* grpc-message is percent-encoded (gRPC over HTTP/2 spec). */
static void pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) && isxdigit((unsigned char)s[i + 2])) {
            char hex[3] = {s[i + 1], s[i + 2], 0};
            out[k++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    size_t len = size * n;
    while (len && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;
    const char *colon = memchr(p, ':', len);
    if (!colon)
        return size * n;
    size_t klen = (size_t)(colon - p);
    const char *v = colon + 1;
    size_t vlen = len - klen - 1;
    while (vlen && *v == ' ') {
        v++;
        vlen--;
    }
    if (klen == 11 && strncasecmp(p, "grpc-status", 11) == 0) {
        char num[16];
        snprintf(num, sizeof num, "%.*s", (int)(vlen < 15 ? vlen : 15), v);
        r->grpc = atoi(num);
    } else if (klen == 12 && strncasecmp(p, "grpc-message", 12) == 0) {
        pct_decode(v, vlen, r->message, sizeof r->message);
    }
    return size * n;
}

static void status_set(struct pw_cri_status *st, int grpc, const char *msg)
{
    if (!st)
        return;
    st->grpc = grpc;
    snprintf(st->message, sizeof st->message, "%s", msg ? msg : "");
}

static int curl_rc(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_PARTIAL_FILE:
        return PW_EUNAVAIL;
    case CURLE_OPERATION_TIMEDOUT:
        return PW_ETIMEDOUT;
    case CURLE_OUT_OF_MEMORY:
        return PW_ENOMEM;
    case CURLE_WRITE_ERROR:
        return PW_ETOOLARGE;
    default:
        return PW_EPROTO;
    }
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return __atomic_load_n((const int *)arg, __ATOMIC_ACQUIRE) != 0; /* non-zero aborts the transfer */
}

/* Calls path with req; on success *resp is the decoded answer of type desc (caller frees with
 * protobuf_c_message_free_unpacked). stop: see pw_cri_pull. */
static int call(pw_cri *c, const char *path, const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                int timeout_ms, const int *stop, ProtobufCMessage **resp, struct pw_cri_status *st)
{
    size_t n = protobuf_c_message_get_packed_size(req);
    unsigned char *frame = pw_xmalloc(n + 5);
    frame[0] = 0; /* not compressed */
    frame[1] = (unsigned char)(n >> 24);
    frame[2] = (unsigned char)(n >> 16);
    frame[3] = (unsigned char)(n >> 8);
    frame[4] = (unsigned char)n;
    protobuf_c_message_pack(req, frame + 5);

    CURL *h = curl_easy_init();
    if (!h) {
        free(frame);
        status_set(st, -1, "cannot make a curl handle");
        return PW_ENOMEM;
    }
    struct reply r = {.grpc = -1};
    pw_buf_init(&r.body, MAX_RESPONSE);
    char *url = pw_xasprintf("http://localhost%s", path);
    struct curl_slist *hdrs = NULL;
    hdrs = curl_slist_append(hdrs, "Content-Type: application/grpc");
    hdrs = curl_slist_append(hdrs, "TE: trailers");
    hdrs = curl_slist_append(hdrs, "User-Agent: prewarm-agent");
    char tmo[48];
    if (timeout_ms > 0) {
        /* the runtime learns the deadline too (at most 8 digits: whole seconds past ~27 h) */
        if (timeout_ms < 100000000)
            snprintf(tmo, sizeof tmo, "grpc-timeout: %dm", timeout_ms);
        else
            snprintf(tmo, sizeof tmo, "grpc-timeout: %dS", timeout_ms / 1000);
        hdrs = curl_slist_append(hdrs, tmo);
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->socket);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, (const char *)frame);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(n + 5));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    if (timeout_ms > 0)
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms + 1000); /* the runtime ends it first */
    if (stop) {
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)stop);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    }
    CURLcode cc = curl_easy_perform(h);
    long http = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    free(url);
    free(frame);

    int rc = 0;
    if (cc == CURLE_ABORTED_BY_CALLBACK) {
        rc = PW_ECANCELED;
        status_set(st, -1, "cancelled");
    } else if (cc != CURLE_OK) {
        rc = curl_rc(cc);
        char msg[512];
        snprintf(msg, sizeof msg, "%s: %s", c->socket, errbuf[0] ? errbuf : curl_easy_strerror(cc));
        status_set(st, rc == PW_ETIMEDOUT ? PW_CRI_GRPC_DEADLINE_EXCEEDED : -1, msg);
    } else if (r.grpc > 0) {
        rc = r.grpc == PW_CRI_GRPC_DEADLINE_EXCEEDED ? PW_ETIMEDOUT : PW_EIO;
        status_set(st, r.grpc, r.message);
    } else if (http != 200 || r.grpc != 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "not a gRPC answer (HTTP %ld, %s)", http,
                 r.grpc < 0 ? "no grpc-status" : "bad grpc-status");
        rc = PW_EPROTO;
        status_set(st, -1, msg);
    } else {
        const unsigned char *b = (const unsigned char *)r.body.p;
        size_t blen = r.body.len;
        size_t mlen = blen >= 5 ? ((size_t)b[1] << 24 | (size_t)b[2] << 16 | (size_t)b[3] << 8 | b[4]) : 0;
        ProtobufCMessage *m = NULL;
        if (blen == 0) /* an empty message may come as no frame at all */
            m = protobuf_c_message_unpack(desc, NULL, 0, (const uint8_t *)"");
        else if (blen >= 5 && b[0] == 0 && mlen == blen - 5)
            m = protobuf_c_message_unpack(desc, NULL, mlen, b + 5);
        if (!m) {
            rc = PW_EPROTO;
            status_set(st, -1, "the runtime's answer does not decode");
        } else {
            *resp = m;
        }
    }
    pw_buf_fini(&r.body);
    return rc;
}

/* ---- the calls ---- */

static char *dup_or_null(const char *s)
{
    return s && *s ? pw_xstrdup(s) : NULL;
}

static void image_from(const Runtime__V1__Image *in, struct pw_cri_image *out)
{
    memset(out, 0, sizeof *out);
    out->id = pw_xstrdup(in->id ? in->id : "");
    out->tags = pw_xcalloc(in->n_repo_tags ? in->n_repo_tags : 1, sizeof *out->tags);
    for (size_t i = 0; i < in->n_repo_tags; i++)
        out->tags[i] = pw_xstrdup(in->repo_tags[i]);
    out->n_tags = in->n_repo_tags;
    out->digests = pw_xcalloc(in->n_repo_digests ? in->n_repo_digests : 1, sizeof *out->digests);
    for (size_t i = 0; i < in->n_repo_digests; i++)
        out->digests[i] = pw_xstrdup(in->repo_digests[i]);
    out->n_digests = in->n_repo_digests;
    out->size = in->size;
    out->pinned = in->pinned;
}

void pw_cri_images_free(struct pw_cri_image *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].id);
        for (size_t k = 0; k < v[i].n_tags; k++)
            free(v[i].tags[k]);
        free(v[i].tags);
        for (size_t k = 0; k < v[i].n_digests; k++)
            free(v[i].digests[k]);
        free(v[i].digests);
    }
    free(v);
}

int pw_cri_version(pw_cri *c, int timeout_ms, char **name, char **version, struct pw_cri_status *st)
{
    if (c->be)
        return c->be->version(c->be_arg, name, version, st);
    Runtime__V1__VersionRequest req = RUNTIME__V1__VERSION_REQUEST__INIT;
    req.version = "v1";
    ProtobufCMessage *m = NULL;
    int rc = call(c, RUNTIME_SERVICE "Version", &req.base, &runtime__v1__version_response__descriptor, timeout_ms,
                  NULL, &m, st);
    if (rc != 0)
        return rc;
    Runtime__V1__VersionResponse *r = (Runtime__V1__VersionResponse *)m;
    *name = pw_xstrdup(r->runtime_name ? r->runtime_name : "");
    *version = pw_xstrdup(r->runtime_version ? r->runtime_version : "");
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

int pw_cri_image_status(pw_cri *c, const char *image, int timeout_ms, struct pw_cri_image **out,
                        struct pw_cri_status *st)
{
    if (c->be)
        return c->be->image_status(c->be_arg, image, out, st);
    Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
    spec.image = (char *)image;
    Runtime__V1__ImageStatusRequest req = RUNTIME__V1__IMAGE_STATUS_REQUEST__INIT;
    req.image = &spec;
    ProtobufCMessage *m = NULL;
    int rc = call(c, IMAGE_SERVICE "ImageStatus", &req.base, &runtime__v1__image_status_response__descriptor,
                  timeout_ms, NULL, &m, st);
    if (rc != 0)
        return rc;
    Runtime__V1__ImageStatusResponse *r = (Runtime__V1__ImageStatusResponse *)m;
    struct pw_cri_image *img = NULL;
    if (r->image && r->image->id && *r->image->id) {
        img = pw_xcalloc(1, sizeof *img);
        image_from(r->image, img);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    *out = img;
    return 0;
}

int pw_cri_pull(pw_cri *c, const char *image, const struct pw_cri_auth *auth, int timeout_ms, const int *stop,
                char **image_ref, struct pw_cri_status *st)
{
    if (c->be)
        return c->be->pull(c->be_arg, image, auth, timeout_ms, stop, image_ref, st);
    Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
    spec.image = (char *)image;
    Runtime__V1__AuthConfig ac = RUNTIME__V1__AUTH_CONFIG__INIT;
    Runtime__V1__PullImageRequest req = RUNTIME__V1__PULL_IMAGE_REQUEST__INIT;
    req.image = &spec;
    if (auth) {
        /* protobuf-c's proto3 strings are "" when unset: never NULL */
        ac.username = (char *)(auth->username ? auth->username : "");
        ac.password = (char *)(auth->password ? auth->password : "");
        ac.auth = (char *)(auth->auth ? auth->auth : "");
        ac.server_address = (char *)(auth->server_address ? auth->server_address : "");
        ac.identity_token = (char *)(auth->identity_token ? auth->identity_token : "");
        ac.registry_token = (char *)(auth->registry_token ? auth->registry_token : "");
        req.auth = &ac;
    }
    ProtobufCMessage *m = NULL;
    int rc = call(c, IMAGE_SERVICE "PullImage", &req.base, &runtime__v1__pull_image_response__descriptor,
                  timeout_ms, stop, &m, st);
    if (rc != 0)
        return rc;
    Runtime__V1__PullImageResponse *r = (Runtime__V1__PullImageResponse *)m;
    if (image_ref)
        *image_ref = dup_or_null(r->image_ref);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

int pw_cri_list(pw_cri *c, int timeout_ms, struct pw_cri_image **out, size_t *n, struct pw_cri_status *st)
{
    if (c->be)
        return c->be->list(c->be_arg, out, n, st);
    Runtime__V1__ListImagesRequest req = RUNTIME__V1__LIST_IMAGES_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    int rc = call(c, IMAGE_SERVICE "ListImages", &req.base, &runtime__v1__list_images_response__descriptor,
                  timeout_ms, NULL, &m, st);
    if (rc != 0)
        return rc;
    Runtime__V1__ListImagesResponse *r = (Runtime__V1__ListImagesResponse *)m;
    struct pw_cri_image *v = pw_xcalloc(r->n_images ? r->n_images : 1, sizeof *v);
    for (size_t i = 0; i < r->n_images; i++)
        image_from(r->images[i], &v[i]);
    *n = r->n_images;
    *out = v;
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

int pw_cri_remove(pw_cri *c, const char *image, int timeout_ms, struct pw_cri_status *st)
{
    if (c->be)
        return c->be->remove(c->be_arg, image, st);
    Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
    spec.image = (char *)image;
    Runtime__V1__RemoveImageRequest req = RUNTIME__V1__REMOVE_IMAGE_REQUEST__INIT;
    req.image = &spec;
    ProtobufCMessage *m = NULL;
    int rc = call(c, IMAGE_SERVICE "RemoveImage", &req.base, &runtime__v1__remove_image_response__descriptor,
                  timeout_ms, NULL, &m, st);
    if (rc == 0)
        protobuf_c_message_free_unpacked(m, NULL);
    return rc;
}

int pw_cri_fs_info(pw_cri *c, int timeout_ms, struct pw_cri_fs *out, struct pw_cri_status *st)
{
    if (c->be)
        return c->be->fs_info(c->be_arg, out, st);
    Runtime__V1__ImageFsInfoRequest req = RUNTIME__V1__IMAGE_FS_INFO_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    int rc = call(c, IMAGE_SERVICE "ImageFsInfo", &req.base, &runtime__v1__image_fs_info_response__descriptor,
                  timeout_ms, NULL, &m, st);
    if (rc != 0)
        return rc;
    Runtime__V1__ImageFsInfoResponse *r = (Runtime__V1__ImageFsInfoResponse *)m;
    if (r->n_image_filesystems == 0) {
        protobuf_c_message_free_unpacked(m, NULL);
        status_set(st, -1, "the runtime lists no image filesystem");
        return PW_ENOTFOUND;
    }
    const Runtime__V1__FilesystemUsage *u = r->image_filesystems[0];
    memset(out, 0, sizeof *out);
    snprintf(out->mountpoint, sizeof out->mountpoint, "%s", u->fs_id && u->fs_id->mountpoint ? u->fs_id->mountpoint : "");
    out->used_bytes = u->used_bytes ? u->used_bytes->value : 0;
    out->inodes_used = u->inodes_used ? u->inodes_used->value : 0;
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
