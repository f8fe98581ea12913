/* b64.c: base64 encoding and decoding (see b64.h). */
#include "base/b64.h"

#include <stdlib.h>

#include "base/err.h"
#include "base/mem.h"

static const char STD[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *pw_b64_encode(const void *p, size_t n, bool url)
{
    const unsigned char *in = p;
    const char *t = url ? URL : STD;
    char *out = pw_xmalloc((n + 2) / 3 * 4 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = t[(v >> 6) & 63];
        else if (!url)
            out[o++] = '=';
        if (i + 2 < n)
            out[o++] = t[v & 63];
        else if (!url)
            out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

/* The 6-bit value of c in either alphabet; -1 for any other character. */
static int digit(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

int pw_b64_decode(const char *s, size_t n, void **out, size_t *out_len)
{
    unsigned char *res = pw_xmalloc(n / 4 * 3 + 4);
    size_t len = 0, chars = 0, pad = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int d = digit(c);
        if (d < 0 || pad > 0)
            goto bad;
        chars++;
        acc = (acc << 6) | (unsigned)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            res[len++] = (unsigned char)((acc >> bits) & 0xff);
        }
    }
    /* chars % 4 == 1 cannot encode a byte; padding, when present, must complete the last quantum. */
    if (chars % 4 == 1 || (pad > 0 && (chars + pad) % 4 != 0) || pad > 2)
        goto bad;
    res[len] = '\0';
    *out = res;
    *out_len = len;
    return 0;
bad:
    free(res);
    return PW_EINVAL;
}
