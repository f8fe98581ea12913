/* web_int.h: the web page's embedded assets (private to src/api): the table that scripts/embed-web
 * generates from web/ at build time (build/VARIANT/gen/api/web_assets.c) and web.c serves.
 *
 * Thread model: the table is constant; any thread may read it. */
#ifndef PW_API_WEB_INT_H
#define PW_API_WEB_INT_H

#include <stddef.h>

struct pw_api_web_asset {
    const char *path;          /* the URL path, "/web/app.js" */
    const unsigned char *data; /* the file's bytes (not NUL-terminated) */
    size_t len;
    const char *etag;          /* a strong ETag with its quotes: "\"0123456789abcdef\"" */
};

/* Ends with a row whose path is NULL. */
extern const struct pw_api_web_asset pw_api_web_assets[];

#endif
