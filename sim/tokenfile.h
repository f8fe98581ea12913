/* tokenfile.h: kube-apiserver's --token-auth-file: static bearer tokens read from a CSV file, one
 * record a line: token,user,uid[,"group1,group2"] (encoding/csv: fields may be quoted with ", a quote
 * inside a quoted field doubled; blank lines skipped; at least three fields a record, more than four
 * ignored). A record with an empty token is skipped; a repeated token: the later record wins. The
 * groups field is split on commas as the real authenticator does (strings.Split: an empty field is
 * one empty group name). The file is read once at start.
 *
 * A token from the file authenticates as its user with its groups plus system:authenticated (the
 * API server's AuthenticatedGroupAdder), for the API server's audience only (it is audience agnostic,
 * so a TokenReview asking for other audiences does not authenticate it).
 *
 * Ownership: sim_tokenfile owns its records; sim_tokenfile_user hands out a new UserInfo object.
 * Thread model: read-only after sim_tokenfile_load: any thread. */
#ifndef SIM_TOKENFILE_H
#define SIM_TOKENFILE_H

#include <stddef.h>

#include <jansson.h>

typedef struct sim_tokenfile sim_tokenfile;

/* Reads path. *out gets the tokens (free with sim_tokenfile_free). On failure PW_EIO (cannot read),
 * PW_EINVAL (bad CSV, fewer than 3 fields: *err says where, as the real one does; caller frees) or
 * PW_ETOOLARGE (over 16 MiB). */
int sim_tokenfile_load(const char *path, sim_tokenfile **out, char **err);

/* The same from text (len bytes), name used in messages. */
int sim_tokenfile_parse(const char *name, const char *text, size_t len, sim_tokenfile **out, char **err);

void sim_tokenfile_free(sim_tokenfile *t);

/* How many tokens it holds. */
size_t sim_tokenfile_count(const sim_tokenfile *t);

/* The UserInfo {username, uid, groups} of token, or NULL when the file does not hold it (t may be
 * NULL). Caller decrefs. */
json_t *sim_tokenfile_user(const sim_tokenfile *t, const char *token);

#endif
