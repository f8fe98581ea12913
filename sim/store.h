/* store.h: kubesim's object store, the etcd + registry of the simulated API server.
 *
 * Objects are jansson objects keyed by (resource, namespace, name); "resource" is the plural with its
 * group ("pods", "nodes", "jobs.batch", "leases.coordination.k8s.io", "<plural>.<group>" for custom
 * resources). One global resourceVersion counter is raised by every write, whatever the type, as etcd
 * does. A bounded history of changes backs watches that start from an older resourceVersion; asking for
 * one older than the history gives PW_EGONE (the API turns it into 410 Expired).
 *
 * Stored objects are IMMUTABLE and SHARED: every json_t * handed out is a new reference the caller must
 * json_decref(), and must never modify (json_deep_copy() it to make a changed version). A write always
 * stores a new object. This makes list and watch fan-out cheap (no copies).
 *
 * The store sets metadata.resourceVersion on every write, and on create: uid (unless metadata.uid is
 * already set: the API layer chooses it when defaults depend on it), creationTimestamp, generation (1),
 * name from generateName. It does not validate (the API layer does) and runs no
 * controller logic: deletion here is immediate removal; finalizers, propagation and garbage collection
 * are the API layer's and the controllers' business, done with sim_store_mutate() and sim_store_delete().
 *
 * Thread model: every function is safe from any thread (one internal lock). Subscriber callbacks run
 * synchronously inside the write, under the store lock, in commit order: they must be quick, must not
 * call back into the store, and typically queue work for their own thread. */
#ifndef SIM_STORE_H
#define SIM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct sim_store sim_store;

enum sim_event { SIM_ADDED = 0, SIM_MODIFIED = 1, SIM_DELETED = 2 };

/* A change as delivered to subscribers and kept in history. obj is the new object (for DELETED, the last
 * state with the deletion's resourceVersion); old is the previous state or NULL for ADDED. Both borrowed
 * for the duration of the callback (json_incref to keep). */
struct sim_change {
    enum sim_event type;
    const char *resource;
    const char *ns; /* "" for cluster-scoped */
    const char *name;
    uint64_t rv;
    json_t *obj;
    json_t *old;
};

typedef void (*sim_store_fn)(void *arg, const struct sim_change *ch);

/* The default bound on the history's memory (estimated bytes of the objects it holds). Every change
 * keeps a whole object version, so a count alone lets the history hold most of the process's memory at
 * scale (100,000 changes of 10 KB pods are ~1 GB); the oldest changes go when either bound is hit. */
#define SIM_STORE_HISTORY_BYTES ((size_t)192 << 20)

/* history: how many changes to keep for watches (e.g. 100000); the byte bound starts at
 * SIM_STORE_HISTORY_BYTES. Never fails (aborts on OOM). */
sim_store *sim_store_new(size_t history);
/* Sets the history's byte bound (0: none, the count alone). Changes beyond it are forgotten at the next
 * write, oldest first; the newest change is always kept. */
void sim_store_set_history_bytes(sim_store *st, size_t max_bytes);
void sim_store_free(sim_store *st);

/* The current (latest committed) resourceVersion. */
uint64_t sim_store_rv(sim_store *st);

/* Creates obj (takes ownership). ns "" for cluster-scoped. Names come from metadata.name or, when that
 * is absent, metadata.generateName + 5 random characters. PW_EEXIST when the name is taken, PW_EINVAL
 * when there is neither name nor generateName. On success *out (may be NULL) gets a new reference to the
 * stored object. */
int sim_store_create(sim_store *st, const char *resource, const char *ns, json_t *obj, json_t **out);

/* *out gets a new reference, or PW_ENOTFOUND. */
int sim_store_get(sim_store *st, const char *resource, const char *ns, const char *name, json_t **out);

/* Replaces the object (takes ownership of obj). When expect_rv is non-zero it must equal the stored
 * object's resourceVersion, else PW_ECONFLICT. PW_ENOTFOUND when absent. uid, creationTimestamp and name
 * are kept from the stored object; generation rises when "spec" changed. *out may be NULL. */
int sim_store_update(sim_store *st, const char *resource, const char *ns, const char *name, json_t *obj,
                     uint64_t expect_rv, json_t **out);

/* Read-modify-write under the store lock: fn gets a private deep copy of the current object and changes
 * it in place; returning 0 commits it (with the same rules as update), returning 1 commits nothing and
 * is not an error (no change needed), a negative code aborts with that code. PW_ENOTFOUND when absent.
 * fn must not call the store. */
typedef int (*sim_mutate_fn)(void *arg, json_t *obj);
int sim_store_mutate(sim_store *st, const char *resource, const char *ns, const char *name, sim_mutate_fn fn,
                     void *arg, json_t **out);

/* Removes the object now (a DELETED event). *out (may be NULL) gets its last state. PW_ENOTFOUND when
 * absent. */
int sim_store_delete(sim_store *st, const char *resource, const char *ns, const char *name, json_t **out);

/* Lists objects of resource in ns (NULL: all namespaces) in name order (namespace, then name), starting
 * after the key `after` ("ns/name"; NULL from the start). filter (may be NULL) keeps an object when it
 * returns true; it runs under the lock and must not call the store. At most limit (0: no limit) items
 * are returned in *items (a new JSON array; caller decrefs); *more is set when items remain, *rv to the
 * store's resourceVersion at the time of the list. */
typedef bool (*sim_filter_fn)(void *arg, const json_t *obj);
int sim_store_list(sim_store *st, const char *resource, const char *ns, const char *after, size_t limit,
                   sim_filter_fn filter, void *arg, json_t **items, bool *more, uint64_t *rv);

/* Counts the objects of a resource (all namespaces). */
size_t sim_store_count(sim_store *st, const char *resource);

/* Subscribes fn to every committed change of every resource, from now on. Returns an id for
 * sim_store_unsubscribe(). */
int sim_store_subscribe(sim_store *st, sim_store_fn fn, void *arg);
void sim_store_unsubscribe(sim_store *st, int id);

/* For watches: atomically delivers every change (of every resource: fn filters) after from_rv still in
 * history to fn (in order) and subscribes fn for the changes after them, so nothing is missed or seen
 * twice. A from_rv at or after the current resourceVersion replays nothing.
 * PW_EGONE when from_rv is older than the history kept (nothing subscribed). Returns the id (>= 0). */
int sim_store_subscribe_from(sim_store *st, uint64_t from_rv, sim_store_fn fn, void *arg);

/* Forgets history up to the current resourceVersion (a compaction): watches from older versions
 * then get PW_EGONE. */
void sim_store_compact(sim_store *st);

#endif
