/* redis.h: the "redis://" store back end's ops, for the back-end table in store.c. Everything else
 * goes through store.h.
 *
 * URL: redis://[user:password@]host[:port][/db][?prefix=P]: port 6379 and db 0 by default; every
 * key the store writes starts with P (default "prewarm:"), so several installations share one Redis;
 * user, password and prefix are percent-decoded. rediss://...[?prefix=P&ca=FILE&cert=FILE&key=FILE]
 * is the same over TLS: the server verified against the CA file (the system's CAs without ca=) and
 * the url's host, a client certificate sent when cert= and key= are given (redis_tls.h). */
#ifndef PW_STORE_REDIS_H
#define PW_STORE_REDIS_H

#include "store/store.h"

/* The redis back end (redis.c): a Lua script per write, a small connection pool, reconnects with
 * backoff; see redis.c's top. */
extern const struct pw_store_ops pw_store_redis_ops;
/* "rediss": the same back end over TLS. */
extern const struct pw_store_ops pw_store_rediss_ops;

/* The default key prefix. */
#define PW_STORE_REDIS_DEFAULT_PREFIX "prewarm:"

#endif
