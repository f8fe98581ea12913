/* sqlite.h: the "sqlite:PATH" store back end's ops, for the back-end table in store.c. Everything
 * else goes through store.h; tests reach the back end's fault seam through sqlite_fault.h. */
#ifndef PW_STORE_SQLITE_H
#define PW_STORE_SQLITE_H

#include "store/store.h"

/* The sqlite back end (sqlite.c): WAL, synchronous=FULL, schema migrations; see sqlite.c's top. */
extern const struct pw_store_ops pw_store_sqlite_ops;

#endif
