/* pb.h: a minimal reader of the protobuf wire format and of the envelope Kubernetes wraps protobuf
 * bodies in ("k8s\0" + a runtime.Unknown {typeMeta {apiVersion, kind}, raw, contentEncoding,
 * contentType}), for the few request bodies kubesim accepts as application/vnd.kubernetes.protobuf
 * (kubectl 1.33 sends its typed requests that way; a TokenRequest is one).
 *
 * Readers are views over borrowed bytes: nothing is allocated or copied.
 * Thread model: pure functions over caller-owned memory. */
#ifndef SIM_PB_H
#define SIM_PB_H

#include <stddef.h>
#include <stdint.h>

/* The bytes still to read. */
struct sim_pb {
    const unsigned char *p, *end;
};

/* One field as read: its number, and a varint's value (wire type 0) or a length-delimited field's bytes
 * (wire type 2). Fixed 32/64-bit fields are skipped over and reported with wire 5 or 1 and no value. */
struct sim_pb_field {
    uint32_t num;
    int wire;
    uint64_t varint;
    struct sim_pb bytes;
};

/* A reader over n bytes at p (borrowed). */
struct sim_pb sim_pb_view(const void *p, size_t n);

/* Reads the next field of r into *f. Returns 1 when a field was read, 0 at the end of r, PW_EINVAL on
 * malformed input (a truncated varint or length, a group, an unknown wire type); *f is then undefined
 * and r should be dropped. */
int sim_pb_next(struct sim_pb *r, struct sim_pb_field *f);

/* Unwraps a Kubernetes protobuf body: *raw gets the view of the object's own message and kind (kn
 * bytes, NUL-terminated, may be cut) the envelope's typeMeta.kind. PW_EINVAL when the magic is missing
 * or the envelope is malformed; the outputs are written only on success. */
int sim_pb_unwrap(const void *body, size_t len, struct sim_pb *raw, char *kind, size_t kn);

#endif
