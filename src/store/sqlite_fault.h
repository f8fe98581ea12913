/* sqlite_fault.h: the fault seam of the "sqlite:" store back end, for tests only.
 *
 * Every database file of the back end is opened through a thin VFS ("pw-fault", in sqlite_faultvfs.c)
 * that forwards to SQLite's default VFS, and every statement the back end runs goes through one step
 * function. While no fault is armed both cost one atomic load. A test arms a fault to make the next
 * writes, syncs or statements fail with a chosen SQLite result code, which is how disk full
 * (SQLITE_FULL from a write), I/O errors (SQLITE_IOERR_WRITE / SQLITE_IOERR_FSYNC), a busy database
 * (SQLITE_BUSY from a statement) and corruption found late (SQLITE_CORRUPT from a statement) are
 * simulated.
 *
 * The fault state is process-wide (all stores). Thread model: safe from any thread. */
#ifndef PW_STORE_SQLITE_FAULT_H
#define PW_STORE_SQLITE_FAULT_H

enum pw_store_sqlite_fault_point {
    PW_STORE_SQLITE_FAULT_WRITE = 0, /* the VFS xWrite/xTruncate of any file (db, -wal, journal) */
    PW_STORE_SQLITE_FAULT_SYNC = 1,  /* the VFS xSync of any file */
    PW_STORE_SQLITE_FAULT_STEP = 2,  /* a statement of the back end (sqlite3_step), before it runs */
    PW_STORE_SQLITE_FAULT_POINTS = 3
};

/* Arms point: after `skip` more calls succeed, the next `count` calls fail with `code` (an SQLite
 * result code such as SQLITE_FULL; count < 0 means every call until cleared). Replaces what was
 * armed at that point. */
void pw_store_sqlite_fault_set(enum pw_store_sqlite_fault_point point, int skip, int count, int code);
/* Makes every statement of the back end sleep ms before it runs (0: no stall), so a test can hold
 * connections checked out of the pool. */
void pw_store_sqlite_fault_stall(unsigned ms);
/* How long a call waits for a free pool connection before it fails with PW_EUNAVAIL (default
 * 30 s; 0 restores the default). */
void pw_store_sqlite_pool_wait_set(unsigned ms);
/* Disarms every point, the stall and the pool wait, and zeroes the hit counter. */
void pw_store_sqlite_fault_clear(void);
/* How many calls failed by injection since the last clear. */
unsigned pw_store_sqlite_fault_hits(void);

#endif
