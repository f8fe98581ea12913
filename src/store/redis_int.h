/* redis_int.h: private to the redis store back end (redis.c, redis_url.c): its url, parsed. */
#ifndef PW_STORE_REDIS_INT_H
#define PW_STORE_REDIS_INT_H

/* redis[s]://[user:password@]host[:port][/db][?prefix=P&ca=F&cert=F&key=F], parsed; strings owned
 * (pw_redis_url_fini). ca, cert and key (file paths) are rediss:// parameters: the caller refuses
 * them on redis://. */
struct pw_redis_url {
    char *host, *user, *pass, *prefix; /* user and pass NULL when absent; prefix defaulted */
    char *ca, *cert, *key;             /* NULL when absent */
    int port, db;
};

/* Parses rest (the url after "redis:" or "rediss:", i.e. "//..."). 0, or PW_EINVAL with *why
 * (static text) naming the part at fault; nothing to fini then. */
int pw_redis_url_parse(const char *rest, struct pw_redis_url *u, const char **why);
/* Frees the strings (the password zeroed first). */
void pw_redis_url_fini(struct pw_redis_url *u);

#endif
