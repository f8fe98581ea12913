/* fuzz_webhookurl.c: webhook receiver URLs (a task's webhooks[].url, prewarmd's --webhook) through the
 * URL policy: pw_webhook_url_check (src/webhook/webhook.c, libcurl's URL parser) and the private
 * address test of a literal host, pw_wh_host_literal_private (src/webhook/policy.c).
 * Input: the URL.
 * Checks: a refusal says why; what is accepted without allow_private is accepted with it; an accepted
 * URL (without allow_private) whose host is a numeric address (as getaddrinfo reads it, which is how
 * the connection will read it) is not a private one by pw_wh_addr_private, the check made at every
 * connection; the literal test agrees with that check on every numeric host. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "webhook/webhook.h"
#include "webhook/webhook_int.h"

/* 1 when host is a numeric address that pw_wh_addr_private calls private, 0 when a public one, -1 when
 * it is no numeric address. */
static int numeric_private(const char *host)
{
    char buf[256];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, host, n);
    buf[n] = '\0';
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST, .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(buf, NULL, &hints, &res) != 0 || !res)
        return -1;
    int priv = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        priv |= pw_wh_addr_private(a->ai_addr);
    freeaddrinfo(res);
    return priv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = fuzz_cstr(data, size);
    char *why = NULL;
    int strict = pw_webhook_url_check(url, false, &why);
    if ((strict == 0) != (why == NULL))
        abort(); /* a refusal says why, an acceptance says nothing */
    free(why);
    why = NULL;
    int loose = pw_webhook_url_check(url, true, &why);
    if ((loose == 0) != (why == NULL))
        abort();
    free(why);
    if (strict == 0 && loose != 0)
        abort(); /* allow_private only widens */
    if (strict == 0) {
        CURLU *u = curl_url();
        char *host = NULL;
        if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
            abort(); /* accepted, so it parses */
        int p = numeric_private(host);
        if (p == 1)
            abort(); /* a private numeric address got through */
        if (p >= 0 && pw_wh_host_literal_private(host) != (p == 1))
            abort();
        curl_free(host);
        curl_url_cleanup(u);
    }
    /* the literal test on its own, for the address forms a URL's host takes once libcurl normalised it
     * (dotted quad, IPv6 in brackets): it agrees with the connection's check */
    char a[64];
    unsigned char bin[16];
    size_t n = strlen(url);
    bool br = n >= 2 && url[0] == '[' && url[n - 1] == ']';
    if (n < sizeof a && !memchr(url, '%', n)) {
        memcpy(a, url + br, n - 2 * br);
        a[n - 2 * br] = '\0';
        if (inet_pton(br ? AF_INET6 : AF_INET, a, bin) == 1 || (!br && inet_pton(AF_INET6, a, bin) == 1)) {
            int p = numeric_private(url);
            if (p < 0 || pw_wh_host_literal_private(url) != (p == 1))
                abort();
        }
    }
    free(url);
    return 0;
}
