/* sqlite_faultvfs.h: private to the "sqlite:" store back end: the back end's side of its fault seam.
 *
 * sqlite_faultvfs.c holds the fault state that tests arm through sqlite_fault.h, and the thin VFS
 * ("pw-fault") that every database file of the back end is opened through: it forwards every call to
 * SQLite's default VFS and fails writes, truncates and syncs on demand. sqlite.c opens its files
 * with PW_STORE_SQLITE_FAULTVFS_NAME and runs each statement after pw_store_sqlite_fault_step.
 * While nothing is armed each hook costs an atomic load.
 *
 * Thread model: safe from any thread (the fault state is process-wide, under its own mutex). */
#ifndef PW_STORE_SQLITE_FAULTVFS_H
#define PW_STORE_SQLITE_FAULTVFS_H

/* The VFS name to pass to sqlite3_open_v2 once pw_store_sqlite_faultvfs_register succeeded. */
#define PW_STORE_SQLITE_FAULTVFS_NAME "pw-fault"

/* Registers the VFS with SQLite (not as the default), once per process: later calls return the first
 * call's result. SQLITE_OK, or an SQLite code when the default VFS is missing or older than version 2
 * (SQLITE_ERROR) or SQLite refused it. */
int pw_store_sqlite_faultvfs_register(void);

/* Called by the back end before each statement runs: sleeps the armed stall (if any), then returns
 * the SQLite code to fail the statement with, or SQLITE_OK to run it. Counts an injected failure. */
int pw_store_sqlite_fault_step(void);

/* The pool wait a test set (pw_store_sqlite_pool_wait_set) in ms; 0 when none is set (the back end's
 * default applies). */
unsigned pw_store_sqlite_fault_pool_wait_ms(void);

#endif
