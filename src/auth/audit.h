/* audit.h: prewarmd's audit log: one JSON line per write and per denial (time, user, groups, verb,
 * method, path, task id, code, source address, reason) to a file rotated by size, or to stderr.
 * Nothing that identifies a credential is ever written: the caller passes who, never how.
 *
 * Thread model: pw_audit_write from any thread (one lock; a line is written whole with one write).
 * A failed write is counted and logged once, never fatal. */
#ifndef PW_AUTH_AUDIT_H
#define PW_AUTH_AUDIT_H

#include <stddef.h>

typedef struct pw_audit pw_audit;

struct pw_audit_config {
    const char *path;    /* NULL or "-": stderr */
    long long max_bytes; /* rotate when the file would pass this (0: 100 MiB) */
    int keep;            /* rotated files kept: PATH.1 (newest) .. PATH.keep (0: 5) */
};

/* 0 with *out (pw_audit_free); PW_EIO when the file cannot be opened for appending (why). */
int pw_audit_new(const struct pw_audit_config *cfg, pw_audit **out, char *why, size_t why_n);
void pw_audit_free(pw_audit *a);

/* One event; every pointer borrowed, NULL fields are left out. */
struct pw_audit_event {
    const char *user;
    char *const *groups;
    size_t n_groups;
    const char *verb;   /* get, list, create, delete */
    const char *method; /* HTTP */
    const char *path;
    const char *task_id;
    int code; /* the HTTP status sent */
    const char *source; /* host:port of the client */
    const char *reason; /* why it was refused (denials) */
};

void pw_audit_write(pw_audit *a, const struct pw_audit_event *ev);
/* Lines written and rotations made (tests). */
void pw_audit_counts(pw_audit *a, size_t *lines, size_t *rotations);

#endif
