/* policy.c: the webhook rules that need no state (webhook_int.h): signature, retry schedule,
 * Retry-After, status verdicts, private addresses. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "webhook/webhook_int.h"

void pw_wh_sign(const char *secret, size_t secret_len, int64_t unix_s, const char *body, size_t body_len, char *out)
{
    char ts[24];
    int tn = snprintf(ts, sizeof ts, "%lld.", (long long)unix_s);
    unsigned char *msg = malloc((size_t)tn + body_len + 1);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (msg) {
        memcpy(msg, ts, (size_t)tn);
        memcpy(msg + tn, body, body_len);
        if (!HMAC(EVP_sha256(), secret, (int)secret_len, msg, (size_t)tn + body_len, mac, &mac_len))
            mac_len = 0;
        free(msg);
    }
    int n = snprintf(out, PW_WH_SIG_MAX, "t=%lld,v1=", (long long)unix_s);
    for (unsigned int i = 0; i < mac_len && n + 2 < PW_WH_SIG_MAX; i++)
        n += snprintf(out + n, (size_t)(PW_WH_SIG_MAX - n), "%02x", mac[i]);
}

int64_t pw_wh_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms, double rnd)
{
    if (attempt < 1)
        attempt = 1;
    int64_t d = base_ms;
    for (int i = 1; i < attempt && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    if (rnd < 0 || rnd >= 1)
        rnd = 0;
    return d / 2 + (int64_t)((double)(d - d / 2) * rnd);
}

int64_t pw_wh_retry_after_ms(const char *value, int64_t now_real_ms)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    if (!*value)
        return -1;
    if (isdigit((unsigned char)*value)) {
        char *end;
        long long s = strtoll(value, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        if (*end == '\0' && s >= 0 && s < 100LL * 365 * 86400)
            return s * 1000;
    }
    time_t t = curl_getdate(value, NULL);
    /* a date more than 100 years ahead is no more a delay than so many seconds (and t * 1000 would
     * overflow for curl's far years: found by tests/fuzz/fuzz_retryafter.c) */
    if (t == (time_t)-1 || (int64_t)t > now_real_ms / 1000 + 100LL * 365 * 86400)
        return -1;
    int64_t d = (int64_t)t * 1000 - now_real_ms;
    return d > 0 ? d : 0;
}

enum pw_wh_verdict pw_wh_verdict_of(int status)
{
    if (status >= 200 && status < 300)
        return PW_WH_DELIVERED;
    if (status == 0 || status == 408 || status == 429 || status >= 500)
        return PW_WH_RETRY;
    return PW_WH_PERMANENT; /* 1xx as a final answer, 3xx (redirects are never followed), other 4xx */
}

static bool v4_private(uint32_t a)
{
    static const struct {
        uint32_t net, mask;
    } nets[] = {
        {0x00000000, 0xff000000}, /* 0/8 "this network" */
        {0x0a000000, 0xff000000}, /* 10/8 */
        {0x64400000, 0xffc00000}, /* 100.64/10 shared (carrier NAT) */
        {0x7f000000, 0xff000000}, /* 127/8 loopback */
        {0xa9fe0000, 0xffff0000}, /* 169.254/16 link-local, the cloud metadata service */
        {0xac100000, 0xfff00000}, /* 172.16/12 */
        {0xc0000000, 0xffffff00}, /* 192.0.0/24 protocol assignments */
        {0xc0a80000, 0xffff0000}, /* 192.168/16 */
        {0xc6120000, 0xfffe0000}, /* 198.18/15 benchmarking */
        {0xe0000000, 0xe0000000}, /* 224/4 multicast and 240/4 reserved, broadcast */
    };
    for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++)
        if ((a & nets[i].mask) == nets[i].net)
            return true;
    return false;
}

static bool v6_private(const struct in6_addr *a)
{
    const unsigned char *b = a->s6_addr;
    static const unsigned char zero[16];
    if (memcmp(b, zero, 15) == 0 && (b[15] == 0 || b[15] == 1)) /* :: and ::1 */
        return true;
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, zero, 12) == 0) /* ::ffff:a.b.c.d, ::a.b.c.d */
        return v4_private(((uint32_t)b[12] << 24) | ((uint32_t)b[13] << 16) | ((uint32_t)b[14] << 8) | b[15]);
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(b, nat64, 12) == 0) /* 64:ff9b::a.b.c.d reaches a.b.c.d */
        return v4_private(((uint32_t)b[12] << 24) | ((uint32_t)b[13] << 16) | ((uint32_t)b[14] << 8) | b[15]);
    return (b[0] & 0xfe) == 0xfc                    /* fc00::/7 unique local */
           || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) /* fe80::/10 link-local */
           || b[0] == 0xff;                           /* multicast */
}

bool pw_wh_addr_private(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return v4_private(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family == AF_INET6)
        return v6_private(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return true; /* not an internet address: nothing a webhook should reach */
}

bool pw_wh_host_literal_private(const char *host)
{
    char buf[64];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n >= sizeof buf)
        return false;
    memcpy(buf, host, n);
    buf[n] = '\0';
    char *pct = strchr(buf, '%'); /* a zone id: fe80::1%eth0 */
    if (pct)
        *pct = '\0';
    /* read as the connection will (getaddrinfo), so the old numeric forms count too: "127.1",
     * "2130706433", "0x7f.1", and a host libcurl did not normalise because it came percent-encoded
     * ("http://%31%32%37.1/" has the host "127.1": found by tests/fuzz/fuzz_webhookurl.c) */
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST, .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(buf, NULL, &hints, &res) != 0)
        return false;
    bool priv = false;
    for (const struct addrinfo *a = res; a; a = a->ai_next)
        priv = priv || pw_wh_addr_private(a->ai_addr);
    freeaddrinfo(res);
    return priv;
}
