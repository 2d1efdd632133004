/*
 * fuzz_api - every parser of OVHcloud API replies, with the HTTP layer
 * replaced by the input. This target is linked with
 * -Wl,--wrap=sg_ovh_call: every call the ovh/ code makes gets the
 * next reply of the input, decoded as sg_ovh_call decodes a success body
 * (json_loadb with JSON_DECODE_ANY; an empty body is JSON null).
 *
 * Input: byte 0 = what to run, byte 1 = the account's offer (0 Exchange,
 * 1 Email Pro, 2 MX Plan, 3 legacy MX Plan) and options; then the replies,
 * separated by lines "%%". A reply "!NNN CODE" stands for an API error
 * (HTTP NNN, errorCode CODE), "!net" for no reply at all. When the replies
 * run out, every further call fails as "!net".
 *   0 sg_ovh_account_status      5 sg_ovh_ticket_messages + ticket_evidence
 *   1 sg_ovh_list_accounts       6 sg_ovh_ticket_reply
 *   2 sg_ovh_change_password     7 sg_ovh_credential_request
 *   3 sg_ovh_redirections        8 sg_block_gather + sg_block_case_draft
 *   4 sg_ovh_ticket_find         9 sg_watch_round (memory store)
 * Byte 0 >= 0xF0: the decoders below sg_ovh_call instead (the seam of
 * ovh/sg_ovh_internal.h, what sg_ovh_call and its authentication use on
 * the bytes curl received): the whole rest of the input as one reply, to
 * sg_ovh_decode_body, sg_ovh_decode_error (HTTP 400 + byte 1),
 * sg_ovh_decode_time and sg_ovh_decode_token.
 * Open findings (RESULTS.md, inputs in tests/fuzz/crashes/): with
 * SG_FUZZ_MASK_OPEN=1 in the environment (tests/fuzz/run sets it while
 * fuzzing, not while replaying tests/fuzz/crashes/), an empty array
 * answered to the two calls that then qsort(NULL, 0) is turned into "no
 * reply" (finding 1), and a path with a dot segment into a refused call
 * (finding 3), so that fuzzing goes on past them.
 * Checks: every path the code builds (from API-supplied names too) is a
 * well-formed API path (starts with '/', no space, control byte or '#',
 * no "." or ".." segment, which a server or proxy may resolve); every error text is
 * one escaped line; returned strings are NUL-terminated in their fields.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sg_block.h"
#include "sg_log.h"
#include "sg_ovh.h"
#include "sg_ovh_internal.h"
#include "sg_store.h"
#include "sg_watch.h"

#define NOW_MS 1767225600000LL     /* 2026-01-01T00:00:00Z */

static const char *in_p, *in_end; /* replies not consumed yet */
static size_t ncalls;
static bool mask_open;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *m = getenv("SG_FUZZ_MASK_OPEN");

    (void)argc;
    (void)argv;
    mask_open = m && strcmp(m, "1") == 0;
    return 0;
}

/* Finding 1 (RESULTS.md): "[]" for a ticket's messages or for the open
 * spam tickets reaches qsort(NULL, 0, ...). */
static bool known_open(const char *path, const char *r, size_t len)
{
    size_t pl = strlen(path);
    json_t *j;
    bool empty;

    if (!((pl > 9 && strcmp(path + pl - 9, "/messages") == 0) ||
          strncmp(path, "/support/tickets?status=open", 28) == 0))
        return false;
    if (!(j = json_loadb(r, len, JSON_DECODE_ANY, NULL)))
        return false;
    empty = json_is_array(j) && json_array_size(j) == 0;
    json_decref(j);
    return empty;
}

static void check_text(const char *s, size_t size)
{
    if (strnlen(s, size) >= size)
        abort();
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p >= 0x7f)
            abort();              /* err fields are escaped, printable ASCII */
}

static void check_err(const struct sg_ovh_err *e)
{
    char buf[1400];

    check_text(e->code, sizeof(e->code));
    check_text(e->message, sizeof(e->message));
    check_text(e->query_id, sizeof(e->query_id));
    check_text(e->request, sizeof(e->request));
    check_text(sg_ovh_strerror(e, buf, sizeof(buf)), sizeof(buf));
}

/* false for a dot segment (finding 3), which is masked under
 * SG_FUZZ_MASK_OPEN; anything else wrong aborts. */
static bool check_path(const char *path)
{
    const char *seg, *end;

    if (!path || path[0] != '/')
        abort();
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || *p == '#')
            abort();
    end = path + strcspn(path, "?");
    for (seg = path + 1; seg <= end; ) {
        size_t n = strcspn(seg, "/?");
        if (seg + n > end)
            n = (size_t)(end - seg);
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) {
            if (!mask_open)
                abort();          /* a dot segment: a server or proxy may resolve it */
            return false;
        }
        seg += n + 1;
    }
    return true;
}

/* The next reply: [*start, *len); false when there is none left. */
static bool next_reply(const char **start, size_t *len)
{
    const char *sep;

    if (!in_p || in_p > in_end)
        return false;
    *start = in_p;
    sep = memmem(in_p, (size_t)(in_end - in_p), "\n%%\n", 4);
    if (sep) {
        *len = (size_t)(sep - in_p);
        in_p = sep + 4;
    } else {
        *len = (size_t)(in_end - in_p);
        in_p = NULL;
    }
    return true;
}

int __real_sg_ovh_call(sg_ovh_t *c, const char *method, const char *path, const json_t *body,
                       bool signed_, json_t **reply, struct sg_ovh_err *err);
int __wrap_sg_ovh_call(sg_ovh_t *c, const char *method, const char *path, const json_t *body,
                       bool signed_, json_t **reply, struct sg_ovh_err *err);

int __wrap_sg_ovh_call(sg_ovh_t *c, const char *method, const char *path, const json_t *body,
                       bool signed_, json_t **reply, struct sg_ovh_err *err)
{
    const char *r;
    size_t len;
    json_t *j;

    (void)c;
    (void)body;
    (void)signed_;
    memset(err, 0, sizeof(*err));
    if (reply)
        *reply = NULL;
    if (!check_path(path)) {
        err->rc = SG_OVH_E_INVAL;
        snprintf(err->message, sizeof(err->message), "bad API path (masked)");
        return -1;
    }
    snprintf(err->request, sizeof(err->request), "%s %s", method, path);
    if (++ncalls > 500 || !next_reply(&r, &len) || (len == 4 && memcmp(r, "!net", 4) == 0)) {
        err->rc = SG_OVH_E_NET;
        snprintf(err->message, sizeof(err->message), "connection refused");
        return -1;
    }
    if (mask_open && known_open(path, r, len)) {
        err->rc = SG_OVH_E_NET;
        snprintf(err->message, sizeof(err->message), "connection refused (masked)");
        return -1;
    }
    if (len > 0 && r[0] == '!') {    /* "!404 CODE" */
        char line[80] = "";
        long status;

        memcpy(line, r + 1, len - 1 < sizeof(line) - 1 ? len - 1 : sizeof(line) - 1);
        status = strtol(line, NULL, 10);
        err->rc = SG_OVH_E_API;   /* as api_error() in sg_ovh_http.c, 404 included */
        err->http_status = status;
        if (strchr(line, ' '))
            sg_log_escape(err->code, sizeof(err->code), strchr(line, ' ') + 1,
                          strcspn(strchr(line, ' ') + 1, "\n"));
        snprintf(err->message, sizeof(err->message), "API error");
        return -1;
    }
    if (len == 0) {
        j = json_null();
    } else if (!(j = json_loadb(r, len, JSON_DECODE_ANY, NULL))) {
        err->rc = SG_OVH_E_REPLY;
        snprintf(err->message, sizeof(err->message), "reply is not JSON");
        return -1;
    }
    if (reply)
        *reply = j;
    else
        json_decref(j);
    return 0;
}

/* The reply decoders of sg_ovh_reply.c on one reply. */
static void fuzz_decoders(const uint8_t *data, size_t size, long status)
{
    static const char qid[] = "EU.ext-1.fuzz";
    struct sg_ovh_err err;
    json_t *j = NULL;
    char *tok = NULL;
    bool has_exp = false;
    int64_t v = 0;

    memset(&err, 0, sizeof(err));
    if (sg_ovh_decode_body((const char *)data, size, qid, &j, &err) == 0)
        json_decref(j);
    else
        check_err(&err);
    memset(&err, 0, sizeof(err));
    sg_ovh_decode_error((const char *)data, size, status, qid, &err);
    if (err.rc != SG_OVH_E_API || err.http_status != status)
        abort();
    check_err(&err);
    memset(&err, 0, sizeof(err));
    if (sg_ovh_decode_time((const char *)data, size, qid, &v, &err) == 0) {
        if (v <= 0)
            abort();
    } else {
        check_err(&err);
    }
    memset(&err, 0, sizeof(err));
    if (sg_ovh_decode_token((const char *)data, size, qid, &tok, &has_exp, &v, &err) == 0) {
        if (!tok || !*tok || strpbrk(tok, "\r\n") || strlen(tok) > 4096)
            abort();
        if (v < 0 || v > 86400)   /* the lifetime the caller multiplies by 1000 */
            abort();
        free(tok);
    } else {
        if (tok)
            abort();
        check_err(&err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum sg_offer offers[4] = { SG_OFFER_EXCHANGE, SG_OFFER_EMAILPRO,
                                             SG_OFFER_MXPLAN, SG_OFFER_MXPLAN_LEGACY };
    static const char *const senders[1] = { "sales@example.com" };
    static struct sg_limit lim = { "hour", 3600000, { 10, 0, 0, 0 }, SG_ACT_TEMPFAIL, 0.8 };
    struct sg_account a = { .address = "sales@example.com", .domain = "example.com",
                            .local = "sales", .organization = "org1", .service = "pro1",
                            .senders = senders, .nsenders = 1, .limits = &lim, .nlimits = 1,
                            .on_block = SG_ACT_HOLD };
    sg_ovh_t *c = (sg_ovh_t *)(uintptr_t)0x1000;   /* never dereferenced: calls are wrapped */
    struct sg_ovh_err err;
    unsigned mode, opt;
    char *copy;

    if (size < 2)
        return 0;
    if (data[0] >= 0xF0) {
        fuzz_decoders(data + 2, size - 2, 400 + data[1]);
        return 0;
    }
    mode = data[0] % 10;
    opt = data[1];
    a.offer = offers[opt & 3];
    if (!(copy = malloc(size - 2 + 1)))
        return 0;
    memcpy(copy, data + 2, size - 2);
    copy[size - 2] = '\0';
    in_p = copy;
    in_end = copy + (size - 2);
    ncalls = 0;
    memset(&err, 0, sizeof(err));

    switch (mode) {
    case 0: {
        struct sg_ovh_status st;
        if (sg_ovh_account_status(c, &a, &st, &err) == 0)
            check_text(st.state, sizeof(st.state));
        else
            check_err(&err);
        break;
    }
    case 1: {
        struct sg_ovh_found *v = NULL;
        size_t n = 0;
        if (sg_ovh_list_accounts(c, a.offer, &v, &n, &err) == 0) {
            for (size_t i = 0; i < n; i++)
                if (!v[i].address)
                    abort();
            sg_ovh_found_free(v, n);
        } else {
            check_err(&err);
        }
        break;
    }
    case 2: {
        int64_t task;
        if (sg_ovh_change_password(c, &a, "Tr0ub4dor&3xyz", &task, &err) != 0)
            check_err(&err);
        break;
    }
    case 3: {
        char **to = NULL;
        size_t n = 0;
        if (sg_ovh_redirections(c, &a, &to, &n, &err) == 0)
            sg_ovh_strv_free(to, n);
        else
            check_err(&err);
        break;
    }
    case 4: {
        struct sg_ovh_ticket t;
        if (sg_ovh_ticket_find(c, &a, (opt & 4) ? 7654321 : -1, &t, &err) == 0) {
            check_text(t.state, sizeof(t.state));
            if (strnlen(t.subject, sizeof(t.subject)) >= sizeof(t.subject) ||
                strnlen(t.service, sizeof(t.service)) >= sizeof(t.service) ||
                strnlen(t.last_from, sizeof(t.last_from)) >= sizeof(t.last_from))
                abort();
        } else {
            check_err(&err);
        }
        break;
    }
    case 5: {
        struct sg_ovh_message *v = NULL;
        size_t n = 0;
        if (sg_ovh_ticket_messages(c, 42, &v, &n, &err) == 0) {
            struct sg_ovh_evidence ev;
            sg_ovh_ticket_evidence(v, n, &ev);
            sg_ovh_evidence_clear(&ev);
            sg_ovh_messages_free(v, n);
        } else {
            check_err(&err);
        }
        break;
    }
    case 6:
        if (sg_ovh_ticket_reply(c, 42, "Hello,\nwe fixed it.\n", &err) != 0)
            check_err(&err);
        break;
    case 7: {
        struct sg_ovh_credential cr = { 0 };
        static const char *const ips[] = { "192.0.2.10/32" };
        if (sg_ovh_credential_request(c, SG_OVH_OFFERS_ALL, (opt & 4) ? "https://x.example/" : NULL,
                                      ips, (opt & 8) ? 1 : 0, &cr, &err) == 0)
            sg_ovh_credential_clear(&cr);
        else
            check_err(&err);
        break;
    }
    case 8: {
        sg_store_t *st = sg_store_memory_new(NULL, NULL);
        struct sg_block_case bc;
        char *d;
        if (!st)
            break;
        sg_block_gather(c, st, &a, NOW_MS, NOW_MS - 86400000LL, &bc);
        check_text(bc.api_error, sizeof(bc.api_error));
        if ((d = sg_block_case_draft(&bc)) == NULL)
            abort();
        free(d);
        sg_block_case_free(&bc);
        sg_store_free(st);
        break;
    }
    case 9: {
        sg_store_t *st = sg_store_memory_new(NULL, NULL);
        if (!st)
            break;
        for (int round = 0; round < 2 && in_p; round++)
            (void)sg_watch_round(c, st, NULL, &a, 1, NULL, NOW_MS + round * 300000LL);
        sg_store_free(st);
        break;
    }
    }
    free(copy);
    return 0;
}
