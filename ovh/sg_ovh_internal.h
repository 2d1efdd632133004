/*
 * sg_ovh_internal.h - what the ovh/ files share with each other and with
 * the unit tests, and nobody else.
 */
#ifndef SG_OVH_INTERNAL_H
#define SG_OVH_INTERNAL_H

#include "sg_ovh.h"

#include <stdarg.h>

/* Credentials from an explicit list of files (tests use it to stand for
 * /etc/ovh.conf, ~/.ovh.conf, ./ovh.conf). explicit_files: a missing or
 * unreadable file is an error (the `ovh.credentials` case) rather than
 * skipped. Environment OVH_* still overrides. */
sg_ovh_creds_t *sg_ovh_creds_load_files(const char *const *paths, size_t npaths,
                                        bool explicit_files, const char *endpoint,
                                        char *err, size_t errlen);

/* Error helpers: set clears the struct, then formats message (escaped). */
void sg_ovh_err_clear(struct sg_ovh_err *e);
void sg_ovh_err_set(struct sg_ovh_err *e, enum sg_ovh_rc rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* err->request = "METHOD what" (escaped). */
void sg_ovh_set_request(struct sg_ovh_err *e, const char *method, const char *what);
/* Copy outside text into an error field, escaped. */
void sg_ovh_err_field(char *dst, size_t dstsize, const char *src, size_t srclen);

/* A checked JSON reading of a reply: the helpers set err (SG_OVH_E_REPLY,
 * naming the request and the field) and return false on a wrong shape. */
bool sg_ovh_json_bool(const json_t *obj, const char *key, bool *out,
                      const char *what, struct sg_ovh_err *err);
/* Integer or null (-1) or absent (-1). */
bool sg_ovh_json_int_or_null(const json_t *obj, const char *key, int64_t *out,
                             const char *what, struct sg_ovh_err *err);
/* String copied into buf (escaped is NOT applied), null/absent → "". */
bool sg_ovh_json_str(const json_t *obj, const char *key, char *buf, size_t len,
                     const char *what, struct sg_ovh_err *err);

/* The reply decoders (sg_ovh_reply.c): what sg_ovh_call and the client's
 * authentication make of a reply's bytes, a seam below curl for tests and
 * fuzzing. query_id: the reply's X-Ovh-QueryID ("" if none), copied into
 * err. Each returns 0, or -1 with err set (SG_OVH_E_REPLY, or NOMEM).
 * A success body: JSON (any value); empty is JSON null. reply may be NULL. */
int sg_ovh_decode_body(const char *buf, size_t len, const char *query_id, json_t **reply,
                       struct sg_ovh_err *err);
/* An error body for HTTP status: {message, errorCode}, OAuth2's
 * {error, error_description}, or anything else quoted; rc SG_OVH_E_API. */
void sg_ovh_decode_error(const char *buf, size_t len, long status, const char *query_id,
                         struct sg_ovh_err *err);
/* GET /auth/time's reply: a positive Unix time. */
int sg_ovh_decode_time(const char *buf, size_t len, const char *query_id, int64_t *server,
                       struct sg_ovh_err *err);
/* The OAuth2 token reply: *token (malloc'd: wipe and free it), expires_in
 * if present (*has_exp). */
int sg_ovh_decode_token(const char *buf, size_t len, const char *query_id, char **token,
                        bool *has_exp, int64_t *exp_s, struct sg_ovh_err *err);

/* Entries accepted from one listing call. */
#define SG_OVH_LIST_MAX 100000

/* Shared by the request files (sg_ovh_account.c, sg_ovh_password.c,
 * sg_ovh_ticket.c). */
const char *sg_ovh_offer_label(enum sg_offer o);
/* The account's route plus suffix ("" or "/changePassword"); NULL with err. */
char *sg_ovh_account_path(const struct sg_account *a, const char *suffix,
                          struct sg_ovh_err *err);
/* "GET <path>" for shape errors, escaped, in buf. */
const char *sg_ovh_what(char *buf, size_t len, const char *method, const char *path);
void sg_ovh_shape_error(struct sg_ovh_err *err, const char *w, const char *expected);
/* GET path answering an array of ids (tickets, tasks). */
int sg_ovh_get_ids(sg_ovh_t *c, const char *path, int64_t **ids, size_t *n,
                   struct sg_ovh_err *err);
/* qsort comparator: int64_t, largest first. */
int sg_ovh_cmp_desc(const void *a, const void *b);

#endif
