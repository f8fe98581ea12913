/* sqlite_faultvfs.c: the fault seam of the "sqlite:" store back end (sqlite_fault.h for tests,
 * sqlite_faultvfs.h for sqlite.c): the armed fault points, the statement stall, the pool wait, and the
 * "pw-fault" VFS that forwards every call to SQLite's default VFS, failing writes and syncs on demand.
 *
 * Why a VFS: disk full and I/O errors happen below SQLite, in the file calls of a commit (the -wal
 * append, its fsync, a checkpoint); only a VFS sees those calls, so only a VFS makes SQLite meet the
 * error where a real disk would give it. While no fault is armed each file call costs one relaxed
 * atomic load on top of the default VFS's work. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "store/sqlite_fault.h"
#include "store/sqlite_faultvfs.h"

/* ---- the fault state (sqlite_fault.h) ---- */

struct fault_point {
    int skip, count, code;
};
static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;
static struct fault_point fault_points[PW_STORE_SQLITE_FAULT_POINTS];
static atomic_int fault_armed;
static atomic_uint fault_hit_count;
static atomic_uint fault_stall_ms;
static atomic_uint pool_wait_ms; /* 0: the back end's default */

void pw_store_sqlite_fault_set(enum pw_store_sqlite_fault_point point, int skip, int count, int code)
{
    if ((unsigned)point >= PW_STORE_SQLITE_FAULT_POINTS)
        return;
    pthread_mutex_lock(&fault_mu);
    fault_points[point] = (struct fault_point){.skip = skip, .count = count, .code = code};
    atomic_store(&fault_armed, 1);
    pthread_mutex_unlock(&fault_mu);
}

void pw_store_sqlite_fault_stall(unsigned ms)
{
    atomic_store(&fault_stall_ms, ms);
    if (ms)
        atomic_store(&fault_armed, 1);
}

void pw_store_sqlite_pool_wait_set(unsigned ms)
{
    atomic_store(&pool_wait_ms, ms);
}

void pw_store_sqlite_fault_clear(void)
{
    pthread_mutex_lock(&fault_mu);
    memset(fault_points, 0, sizeof fault_points);
    atomic_store(&fault_stall_ms, 0);
    atomic_store(&pool_wait_ms, 0);
    atomic_store(&fault_armed, 0);
    atomic_store(&fault_hit_count, 0);
    pthread_mutex_unlock(&fault_mu);
}

unsigned pw_store_sqlite_fault_hits(void)
{
    return atomic_load(&fault_hit_count);
}

/* Returns the code to fail this call with, or SQLITE_OK to let it run. */
static int fault_take(enum pw_store_sqlite_fault_point point)
{
    if (!atomic_load_explicit(&fault_armed, memory_order_relaxed))
        return SQLITE_OK;
    int code = SQLITE_OK;
    pthread_mutex_lock(&fault_mu);
    struct fault_point *f = &fault_points[point];
    if (f->code != SQLITE_OK) {
        if (f->skip > 0) {
            f->skip--;
        } else if (f->count != 0) {
            code = f->code;
            if (f->count > 0 && --f->count == 0)
                f->code = SQLITE_OK;
            atomic_fetch_add(&fault_hit_count, 1);
        }
    }
    pthread_mutex_unlock(&fault_mu);
    return code;
}

/* ---- the pw-fault VFS: forwards everything to the default VFS, failing writes/syncs on demand ---- */

struct fvfs_file {
    sqlite3_file base;
    sqlite3_file *real; /* follows this struct in the same allocation */
};

static sqlite3_vfs *fvfs_real(sqlite3_vfs *v)
{
    return (sqlite3_vfs *)v->pAppData;
}
static sqlite3_file *fvfs_r(sqlite3_file *f)
{
    return ((struct fvfs_file *)f)->real;
}

static int fvfs_close(sqlite3_file *f)
{
    return fvfs_r(f)->pMethods->xClose(fvfs_r(f));
}
static int fvfs_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
    return fvfs_r(f)->pMethods->xRead(fvfs_r(f), p, n, off);
}
static int fvfs_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    int code = fault_take(PW_STORE_SQLITE_FAULT_WRITE);
    if (code != SQLITE_OK)
        return code;
    return fvfs_r(f)->pMethods->xWrite(fvfs_r(f), p, n, off);
}
static int fvfs_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    int code = fault_take(PW_STORE_SQLITE_FAULT_WRITE);
    if (code != SQLITE_OK)
        return code;
    return fvfs_r(f)->pMethods->xTruncate(fvfs_r(f), size);
}
static int fvfs_sync(sqlite3_file *f, int flags)
{
    int code = fault_take(PW_STORE_SQLITE_FAULT_SYNC);
    if (code != SQLITE_OK)
        return code;
    return fvfs_r(f)->pMethods->xSync(fvfs_r(f), flags);
}
static int fvfs_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return fvfs_r(f)->pMethods->xFileSize(fvfs_r(f), size);
}
static int fvfs_lock(sqlite3_file *f, int lock)
{
    return fvfs_r(f)->pMethods->xLock(fvfs_r(f), lock);
}
static int fvfs_unlock(sqlite3_file *f, int lock)
{
    return fvfs_r(f)->pMethods->xUnlock(fvfs_r(f), lock);
}
static int fvfs_check_reserved(sqlite3_file *f, int *out)
{
    return fvfs_r(f)->pMethods->xCheckReservedLock(fvfs_r(f), out);
}
static int fvfs_file_control(sqlite3_file *f, int op, void *arg)
{
    return fvfs_r(f)->pMethods->xFileControl(fvfs_r(f), op, arg);
}
static int fvfs_sector_size(sqlite3_file *f)
{
    return fvfs_r(f)->pMethods->xSectorSize(fvfs_r(f));
}
static int fvfs_device_chars(sqlite3_file *f)
{
    return fvfs_r(f)->pMethods->xDeviceCharacteristics(fvfs_r(f));
}
static int fvfs_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
    sqlite3_file *r = fvfs_r(f);
    if (r->pMethods->iVersion < 2 || !r->pMethods->xShmMap)
        return SQLITE_IOERR_SHMMAP;
    return r->pMethods->xShmMap(r, pg, pgsz, extend, pp);
}
static int fvfs_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return fvfs_r(f)->pMethods->xShmLock(fvfs_r(f), off, n, flags);
}
static void fvfs_shm_barrier(sqlite3_file *f)
{
    fvfs_r(f)->pMethods->xShmBarrier(fvfs_r(f));
}
static int fvfs_shm_unmap(sqlite3_file *f, int del)
{
    return fvfs_r(f)->pMethods->xShmUnmap(fvfs_r(f), del);
}
static int fvfs_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    sqlite3_file *r = fvfs_r(f);
    if (r->pMethods->iVersion < 3 || !r->pMethods->xFetch) {
        *pp = NULL;
        return SQLITE_OK;
    }
    return r->pMethods->xFetch(r, off, n, pp);
}
static int fvfs_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    sqlite3_file *r = fvfs_r(f);
    if (r->pMethods->iVersion < 3 || !r->pMethods->xUnfetch)
        return SQLITE_OK;
    return r->pMethods->xUnfetch(r, off, p);
}

static const sqlite3_io_methods fvfs_io = {
    .iVersion = 3,
    .xClose = fvfs_close,
    .xRead = fvfs_read,
    .xWrite = fvfs_write,
    .xTruncate = fvfs_truncate,
    .xSync = fvfs_sync,
    .xFileSize = fvfs_file_size,
    .xLock = fvfs_lock,
    .xUnlock = fvfs_unlock,
    .xCheckReservedLock = fvfs_check_reserved,
    .xFileControl = fvfs_file_control,
    .xSectorSize = fvfs_sector_size,
    .xDeviceCharacteristics = fvfs_device_chars,
    .xShmMap = fvfs_shm_map,
    .xShmLock = fvfs_shm_lock,
    .xShmBarrier = fvfs_shm_barrier,
    .xShmUnmap = fvfs_shm_unmap,
    .xFetch = fvfs_fetch,
    .xUnfetch = fvfs_unfetch,
};

static int fvfs_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    struct fvfs_file *ff = (struct fvfs_file *)f;
    ff->real = (sqlite3_file *)(ff + 1);
    int rc = fvfs_real(v)->xOpen(fvfs_real(v), name, ff->real, flags, out_flags);
    /* SQLite calls xClose after a failed xOpen only when pMethods is set. */
    ff->base.pMethods = ff->real->pMethods ? &fvfs_io : NULL;
    return rc;
}
static int fvfs_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    return fvfs_real(v)->xDelete(fvfs_real(v), name, sync_dir);
}
static int fvfs_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    return fvfs_real(v)->xAccess(fvfs_real(v), name, flags, out);
}
static int fvfs_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    return fvfs_real(v)->xFullPathname(fvfs_real(v), name, n, out);
}
static void *fvfs_dlopen(sqlite3_vfs *v, const char *name)
{
    return fvfs_real(v)->xDlOpen(fvfs_real(v), name);
}
static void fvfs_dlerror(sqlite3_vfs *v, int n, char *msg)
{
    fvfs_real(v)->xDlError(fvfs_real(v), n, msg);
}
static void (*fvfs_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    return fvfs_real(v)->xDlSym(fvfs_real(v), h, sym);
}
static void fvfs_dlclose(sqlite3_vfs *v, void *h)
{
    fvfs_real(v)->xDlClose(fvfs_real(v), h);
}
static int fvfs_randomness(sqlite3_vfs *v, int n, char *out)
{
    return fvfs_real(v)->xRandomness(fvfs_real(v), n, out);
}
static int fvfs_sleep(sqlite3_vfs *v, int us)
{
    return fvfs_real(v)->xSleep(fvfs_real(v), us);
}
static int fvfs_current_time(sqlite3_vfs *v, double *out)
{
    return fvfs_real(v)->xCurrentTime(fvfs_real(v), out);
}
static int fvfs_last_error(sqlite3_vfs *v, int n, char *out)
{
    return fvfs_real(v)->xGetLastError(fvfs_real(v), n, out);
}
static int fvfs_current_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    return fvfs_real(v)->xCurrentTimeInt64(fvfs_real(v), out);
}

static sqlite3_vfs fvfs;
static pthread_once_t fvfs_once = PTHREAD_ONCE_INIT;
static int fvfs_rc = SQLITE_ERROR;

static void fvfs_register(void)
{
    sqlite3_vfs *real = sqlite3_vfs_find(NULL);
    if (!real || real->iVersion < 2)
        return;
    fvfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(struct fvfs_file) + real->szOsFile,
        .mxPathname = real->mxPathname,
        .zName = PW_STORE_SQLITE_FAULTVFS_NAME,
        .pAppData = real,
        .xOpen = fvfs_open,
        .xDelete = fvfs_delete,
        .xAccess = fvfs_access,
        .xFullPathname = fvfs_full_pathname,
        .xDlOpen = fvfs_dlopen,
        .xDlError = fvfs_dlerror,
        .xDlSym = fvfs_dlsym,
        .xDlClose = fvfs_dlclose,
        .xRandomness = fvfs_randomness,
        .xSleep = fvfs_sleep,
        .xCurrentTime = fvfs_current_time,
        .xGetLastError = fvfs_last_error,
        .xCurrentTimeInt64 = fvfs_current_time64,
    };
    fvfs_rc = sqlite3_vfs_register(&fvfs, 0);
}

int pw_store_sqlite_faultvfs_register(void)
{
    pthread_once(&fvfs_once, fvfs_register);
    return fvfs_rc;
}

int pw_store_sqlite_fault_step(void)
{
    unsigned stall = atomic_load_explicit(&fault_stall_ms, memory_order_relaxed);
    if (stall) {
        struct timespec ts = {stall / 1000, (long)(stall % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return fault_take(PW_STORE_SQLITE_FAULT_STEP);
}

unsigned pw_store_sqlite_fault_pool_wait_ms(void)
{
    return atomic_load(&pool_wait_ms);
}
