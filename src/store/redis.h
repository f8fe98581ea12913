/* redis.h: the "redis://" store back end's ops, for the back-end table in store.c. Everything else
 * goes through store.h.
 *
 * URL: redis://[user:password@]host[:port][/db][?prefix=P]: port 6379 and db 0 by default; every
 * key the store writes starts with P (default "prewarm:"), so several installations share one Redis;
 * user, password and prefix are percent-decoded. rediss:// (TLS) is recognised and refused with a
 * message saying why (Debian 12's hiredis 0.14 has no TLS; see redis.c's top). */
#ifndef PW_STORE_REDIS_H
#define PW_STORE_REDIS_H

#include "store/store.h"

/* The redis back end (redis.c): a Lua script per write, a small connection pool, reconnects with
 * backoff; see redis.c's top. */
extern const struct pw_store_ops pw_store_redis_ops;
/* "rediss": parses the url like redis:// and refuses it (PW_EINVAL, *errmsg says why). */
extern const struct pw_store_ops pw_store_rediss_ops;

/* The default key prefix. */
#define PW_STORE_REDIS_DEFAULT_PREFIX "prewarm:"

#endif
