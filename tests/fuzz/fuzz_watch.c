/* fuzz_watch.c: a watch response body (JSON events, one per line) through the parser the informers
 * use, handed over in slices the way libcurl does. The first byte picks the slice size; a small
 * event cap makes the over-the-cap path reachable. */
#include "fuzz.h"
#include "k8s/k8s_int.h"

static int on_event(void *arg, const char *type, json_t *obj)
{
    size_t *n = arg;
    if (!type || !json_is_object(obj))
        abort(); /* the parser hands only well-formed events on */
    return ++*n > 1000; /* stop after many, as an informer that is told to stop does */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t slice = (size_t)data[0] % 64 + 1;
    data++, size--;
    size_t events = 0;
    struct pw_k8s_watch_parser p;
    pw_k8s_watch_parser_init(&p, 4096, on_event, &events);
    int rc = 0;
    for (size_t off = 0; off < size && rc == 0; off += slice)
        rc = pw_k8s_watch_parser_feed(&p, (const char *)data + off, size - off < slice ? size - off : slice);
    if (rc == 0)
        (void)pw_k8s_watch_parser_finish(&p);
    pw_k8s_watch_parser_fini(&p);
    return 0;
}
