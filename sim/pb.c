/* pb.c: the protobuf wire format and the Kubernetes envelope, read-only (see pb.h). */
#include "sim/pb.h"

#include <stdio.h>
#include <string.h>

#include "base/err.h"

struct sim_pb sim_pb_view(const void *p, size_t n)
{
    const unsigned char *b = p;
    struct sim_pb r = {b, n ? b + n : b}; /* no offset on a NULL view: that is undefined behaviour */
    return r;
}

static int varint(struct sim_pb *r, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p == r->end)
            return PW_EINVAL;
        unsigned char b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return PW_EINVAL; /* more than ten bytes */
}

int sim_pb_next(struct sim_pb *r, struct sim_pb_field *f)
{
    if (r->p == r->end)
        return 0;
    uint64_t key;
    if (varint(r, &key) != 0 || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
        return PW_EINVAL;
    f->num = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    f->varint = 0;
    f->bytes = sim_pb_view(r->p, 0);
    size_t left = (size_t)(r->end - r->p);
    uint64_t n;
    switch (f->wire) {
    case 0:
        return varint(r, &f->varint) == 0 ? 1 : PW_EINVAL;
    case 1:
    case 5:
        n = f->wire == 1 ? 8 : 4;
        if (left < n)
            return PW_EINVAL;
        r->p += n;
        return 1;
    case 2:
        if (varint(r, &n) != 0 || n > (uint64_t)(r->end - r->p))
            return PW_EINVAL;
        f->bytes = sim_pb_view(r->p, (size_t)n);
        r->p += n;
        return 1;
    default:
        return PW_EINVAL; /* groups (3, 4) and reserved types */
    }
}

int sim_pb_unwrap(const void *body, size_t len, struct sim_pb *raw, char *kind, size_t kn)
{
    static const unsigned char MAGIC[4] = {0x6b, 0x38, 0x73, 0x00}; /* "k8s\0" */
    if (len < sizeof(MAGIC) || memcmp(body, MAGIC, sizeof(MAGIC)) != 0)
        return PW_EINVAL;
    struct sim_pb r = sim_pb_view((const unsigned char *)body + sizeof(MAGIC), len - sizeof(MAGIC));
    struct sim_pb obj = sim_pb_view(NULL, 0);
    const char *kp = "";
    size_t kl = 0;
    struct sim_pb_field f;
    int rc = sim_pb_next(&r, &f);
    while (rc == 1) {
        if (f.num == 2 && f.wire == 2) /* raw */
            obj = f.bytes;
        if (f.num == 1 && f.wire == 2) { /* typeMeta {apiVersion = 1, kind = 2} */
            struct sim_pb tm = f.bytes;
            struct sim_pb_field g;
            int trc = sim_pb_next(&tm, &g);
            while (trc == 1) {
                if (g.num == 2 && g.wire == 2) {
                    kp = (const char *)g.bytes.p;
                    kl = (size_t)(g.bytes.end - g.bytes.p);
                }
                trc = sim_pb_next(&tm, &g);
            }
            if (trc < 0)
                return trc;
        }
        rc = sim_pb_next(&r, &f);
    }
    if (rc < 0)
        return rc;
    *raw = obj;
    if (kn)
        snprintf(kind, kn, "%.*s", (int)(kl < 256 ? kl : 256), kp);
    return 0;
}
