/* fuzz_cri.c: the CRI answers prewarm-agent reads from the container runtime (src/agent/cri.c):
 * Version, ImageStatus, PullImage, ListImages and ImageFsInfo responses, decoded by protobuf-c with
 * the descriptors generated from src/agent/cri.proto, then packed again (the sizes must agree). The
 * packed form is not decoded again: protobuf-c keeps an unknown field numbered 0 (an over-long tag
 * "80 00") on unpack and then refuses its own re-encoding of it (corpus/cri/crash-protobufc-tag0);
 * the agent never re-encodes an answer, so that is protobuf-c's quirk, not a fault we can have.
 * cri.c decodes inside its transport call (after libcurl), so there is no seam to its own field
 * copies; this covers the decoding of the runtime's bytes. Byte 0 picks the message. */
#include "agent/cri.pb-c.h"
#include "fuzz.h"

static const ProtobufCMessageDescriptor *const DESCS[] = {
    &runtime__v1__version_response__descriptor,
    &runtime__v1__image_status_response__descriptor,
    &runtime__v1__pull_image_response__descriptor,
    &runtime__v1__list_images_response__descriptor,
    &runtime__v1__image_fs_info_response__descriptor,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const ProtobufCMessageDescriptor *d = DESCS[data[0] % 5];
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
    if (!m)
        return 0;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || protobuf_c_message_pack(m, buf) != n)
        abort();
    free(buf);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
