/* web.c: serves the web page (docs/web.md): GET / is web/index.html, GET /web/<file> the other assets
 * under web/, all embedded in the binary at build time (web_int.h), so the page works air-gapped.
 * Every answer carries its Content-Type, a strong ETag (If-None-Match answers 304), Cache-Control
 * no-cache (the browser revalidates, so a new binary's page is seen at once) and a strict
 * Content-Security-Policy: scripts, styles and API calls from this origin only, no inline script or
 * style, no framing. The page holds no data, so it is served without authentication; its API calls
 * carry the user's token. */
#include <string.h>

#include "api/api.h"
#include "api/web_int.h"
#include "base/err.h"

static const char csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                          "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/* The media type of each extension the page uses; anything else is served as bytes. */
static const struct {
    const char *ext;
    const char *type;
} media_types[] = {
    {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},   {".svg", "image/svg+xml"},
    {".png", "image/png"},                 {".json", "application/json"},
    {NULL, NULL},
};

static const char *media_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && media_types[i].ext; i++)
        if (strcmp(dot, media_types[i].ext) == 0)
            return media_types[i].type;
    return "application/octet-stream";
}

static const struct pw_api_web_asset *find_asset(const char *path)
{
    for (const struct pw_api_web_asset *a = pw_api_web_assets; a->path; a++)
        if (strcmp(a->path, path) == 0)
            return a;
    return NULL;
}

/* Whether an If-None-Match value (a list of ETags, or "*") names etag. */
static int etag_matches(const char *inm, const char *etag)
{
    if (!inm)
        return 0;
    if (strcmp(inm, "*") == 0)
        return 1;
    size_t n = strlen(etag);
    for (const char *p = strstr(inm, etag); p; p = strstr(p + 1, etag))
        if (p[n] == '\0' || p[n] == ',' || p[n] == ' ')
            return 1;
    return 0;
}

void pw_api_h_web(pw_http_req *req, void *ctx)
{
    (void)ctx;
    const char *path = pw_http_req_path(req);
    const struct pw_api_web_asset *a = find_asset(strcmp(path, "/") == 0 ? "/web/index.html" : path);
    if (!a) {
        pw_http_reply_json(req, 404, pw_api_error(PW_ENOTFOUND, "no such file", NULL));
        return;
    }
    pw_http_add_header(req, "ETag", a->etag);
    pw_http_add_header(req, "Cache-Control", "no-cache");
    pw_http_add_header(req, "Content-Security-Policy", csp);
    pw_http_add_header(req, "X-Content-Type-Options", "nosniff");
    pw_http_add_header(req, "Referrer-Policy", "no-referrer");
    if (etag_matches(pw_http_req_header(req, "If-None-Match"), a->etag)) {
        pw_http_reply(req, 304, media_type(a->path), "", 0);
        return;
    }
    pw_http_reply(req, 200, media_type(a->path), (const char *)a->data, a->len);
}
