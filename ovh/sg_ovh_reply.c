/*
 * sg_ovh_reply.c - what the client makes of the bytes the API answers and
 * how it reports errors: decoding a success body, an error body
 * (message/errorCode, OAuth2's error/error_description), the /auth/time
 * and OAuth2 token replies; error texts; checked JSON field readers.
 * sg_ovh_http.c calls the decoders on the reply it received; the fuzz
 * target fuzz_api calls them on its input.
 * Must not: touch curl or the network, trust a byte of a reply before
 * checking its shape, put unescaped outside text in an error, or keep a
 * copy of a token beyond the one handed back.
 */
#include "sg_ovh_internal.h"
#include "sg_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_LIFE_MAX_S 86400       /* an OAuth2 token said to live longer: a day */

/* ---- small helpers -------------------------------------------------------- */

void sg_ovh_err_clear(struct sg_ovh_err *e)
{
    if (e)
        memset(e, 0, sizeof(*e));
}

/* sg_ovh_err_field - outside text for a human-readable error: printable
 * ASCII and spaces kept, every other byte (controls, DEL, non-ASCII, and
 * the backslash itself) as \xHH, so no reply can move a cursor or forge a
 * line; a cut value ends in "...". (Log lines escape further, with
 * sg_log_escape, where a value sits in key=value.) */
void sg_ovh_err_field(char *dst, size_t dstsize, const char *src, size_t srclen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (dstsize == 0)
        return;
    for (size_t i = 0; src && i < srclen; i++) {
        unsigned char ch = (unsigned char)src[i];
        bool keep = ch >= 0x20 && ch < 0x7f && ch != '\\';
        size_t need = keep ? 1 : 4;

        if (o + need + 1 > dstsize) {
            if (dstsize >= 4) {
                o = o < dstsize - 4 ? o : dstsize - 4;
                memcpy(dst + o, "...", 3);
                o += 3;
            }
            break;
        }
        if (keep) {
            dst[o++] = (char)ch;
        } else {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[ch >> 4];
            dst[o++] = hex[ch & 15];
        }
    }
    dst[o] = '\0';
}

void sg_ovh_err_set(struct sg_ovh_err *e, enum sg_ovh_rc rc, const char *fmt, ...)
{
    char raw[512];
    va_list ap;

    if (!e)
        return;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    e->rc = rc;
    e->http_status = 0;
    e->code[0] = e->query_id[0] = '\0';
    /* Our own text is already printable; values in it were escaped by the caller. */
    snprintf(e->message, sizeof(e->message), "%s", raw);
}

char *sg_ovh_strerror(const struct sg_ovh_err *e, char *buf, size_t len)
{
    size_t o = 0;

#define ADD(...) do { if (o < len) { int n_ = snprintf(buf + o, len - o, __VA_ARGS__); \
                                     if (n_ > 0) o += (size_t)n_; } } while (0)
    if (len == 0)
        return buf;
    buf[0] = '\0';
    if (*e->request)
        ADD("%s: ", e->request);
    if (e->http_status)
        ADD("HTTP %ld ", e->http_status);
    if (*e->code)
        ADD("%s: ", e->code);
    ADD("%s", *e->message ? e->message : "error");
    if (*e->query_id)
        ADD(" (query id %s)", e->query_id);
#undef ADD
    return buf;
}

bool sg_ovh_err_is_auth(const struct sg_ovh_err *e)
{
    if (e->rc == SG_OVH_E_CONFIG)
        return true;
    if (e->rc != SG_OVH_E_API)
        return false;
    return e->http_status == 401 || strcmp(e->code, "INVALID_CREDENTIAL") == 0 ||
           strcmp(e->code, "INVALID_KEY") == 0 || strcmp(e->code, "NOT_CREDENTIAL") == 0;
}

void sg_ovh_set_request(struct sg_ovh_err *e, const char *method, const char *what)
{
    char esc[sizeof(e->request) - 8];

    sg_log_esc(esc, sizeof(esc), what);
    snprintf(e->request, sizeof(e->request), "%s %s", method, esc);
}

/* ---- JSON shape checks ---------------------------------------------------- */

bool sg_ovh_json_bool(const json_t *obj, const char *key, bool *out,
                      const char *what, struct sg_ovh_err *err)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

    if (!json_is_boolean(v)) {
        sg_ovh_err_set(err, SG_OVH_E_REPLY, "reply to %s has no boolean \"%s\"", what, key);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

bool sg_ovh_json_int_or_null(const json_t *obj, const char *key, int64_t *out,
                             const char *what, struct sg_ovh_err *err)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

    if (!v || json_is_null(v)) {
        *out = -1;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        sg_ovh_err_set(err, SG_OVH_E_REPLY, "reply to %s: \"%s\" is not a number", what, key);
        return false;
    }
    *out = (int64_t)json_integer_value(v);
    return true;
}

bool sg_ovh_json_str(const json_t *obj, const char *key, char *buf, size_t len,
                     const char *what, struct sg_ovh_err *err)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

    buf[0] = '\0';
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v)) {
        sg_ovh_err_set(err, SG_OVH_E_REPLY, "reply to %s: \"%s\" is not a string", what, key);
        return false;
    }
    snprintf(buf, len, "%s", json_string_value(v));
    return true;
}

/* ---- reply decoders ------------------------------------------------------- */

int sg_ovh_decode_body(const char *buf, size_t len, const char *query_id, json_t **reply,
                       struct sg_ovh_err *err)
{
    json_error_t jerr;
    json_t *j;

    if (len == 0) {
        j = json_null();
    } else {
        j = json_loadb(buf, len, JSON_DECODE_ANY, &jerr);
        if (!j) {
            char esc[200], txt[200];
            sg_ovh_err_field(esc, sizeof(esc), buf, len < 40 ? len : 40);
            sg_ovh_err_field(txt, sizeof(txt), jerr.text, strlen(jerr.text));
            sg_ovh_err_set(err, SG_OVH_E_REPLY, "reply is not JSON (%s at byte %d; %zu bytes, starting \"%s\")",
                           txt, jerr.position, len, esc);
            snprintf(err->query_id, sizeof(err->query_id), "%s", query_id);
            return -1;
        }
    }
    if (reply)
        *reply = j;
    else
        json_decref(j);
    return 0;
}

/* sg_ovh_decode_error - fill err from an error reply (JSON {message, errorCode} or not) */
void sg_ovh_decode_error(const char *buf, size_t len, long status, const char *query_id,
                         struct sg_ovh_err *err)
{
    json_t *j = len ? json_loadb(buf, len, 0, NULL) : NULL;
    json_t *m = json_is_object(j) ? json_object_get(j, "message") : NULL;
    json_t *code = json_is_object(j) ? json_object_get(j, "errorCode") : NULL;

    if (!json_is_string(code) && json_is_object(j)) {
        /* OAuth2 errors: {"error": "invalid_client", "error_description": "..."} */
        code = json_object_get(j, "error");
        if (!json_is_string(m))
            m = json_object_get(j, "error_description");
    }
    err->rc = SG_OVH_E_API;
    err->http_status = status;
    if (json_is_string(m)) {
        sg_ovh_err_field(err->message, sizeof(err->message), json_string_value(m),
                         json_string_length(m));
    } else if (len) {
        char esc[360];
        sg_ovh_err_field(esc, sizeof(esc), buf, len < 80 ? len : 80);
        snprintf(err->message, sizeof(err->message), "error reply not in the API's format: %s", esc);
    } else {
        snprintf(err->message, sizeof(err->message), "empty error reply");
    }
    if (json_is_string(code))
        sg_ovh_err_field(err->code, sizeof(err->code), json_string_value(code),
                         json_string_length(code));
    snprintf(err->query_id, sizeof(err->query_id), "%s", query_id);
    json_decref(j);
}

/* sg_ovh_decode_time - the reply to GET /auth/time: a Unix time */
int sg_ovh_decode_time(const char *buf, size_t len, const char *query_id, int64_t *server,
                       struct sg_ovh_err *err)
{
    json_t *j = NULL;

    if (sg_ovh_decode_body(buf, len, query_id, &j, err) != 0)
        return -1;
    if (!json_is_integer(j) || json_integer_value(j) <= 0) {
        json_decref(j);
        sg_ovh_err_set(err, SG_OVH_E_REPLY, "reply is not a Unix time");
        return -1;
    }
    *server = (int64_t)json_integer_value(j);
    json_decref(j);
    return 0;
}

/* sg_ovh_decode_token - the OAuth2 token reply: access_token (copied into
 * *token, the caller's to wipe and free) and expires_in (seconds, kept
 * within [0, TOKEN_LIFE_MAX_S]) */
int sg_ovh_decode_token(const char *buf, size_t len, const char *query_id, char **token,
                        bool *has_exp, int64_t *exp_s, struct sg_ovh_err *err)
{
    json_t *j = NULL, *tok, *exp;

    *token = NULL;
    if (sg_ovh_decode_body(buf, len, query_id, &j, err) != 0)
        return -1;
    tok = json_is_object(j) ? json_object_get(j, "access_token") : NULL;
    exp = json_is_object(j) ? json_object_get(j, "expires_in") : NULL;
    if (!json_is_string(tok) || json_string_length(tok) == 0 || json_string_length(tok) > 4096 ||
        strpbrk(json_string_value(tok), "\r\n") || (exp && !json_is_integer(exp))) {
        json_decref(j);
        sg_ovh_err_set(err, SG_OVH_E_REPLY, "OAuth2 token reply lacks access_token/expires_in");
        return -1;
    }
    if (!(*token = strdup(json_string_value(tok)))) {
        json_decref(j);
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
        return -1;
    }
    *has_exp = exp != NULL;
    *exp_s = exp ? (int64_t)json_integer_value(exp) : 0;
    /* a hostile or broken lifetime must not overflow the caller's ms
     * arithmetic: below 0 is 0 (fetch a new token at once), above a day is
     * a day (OVHcloud's tokens live an hour) */
    if (*exp_s < 0)
        *exp_s = 0;
    else if (*exp_s > TOKEN_LIFE_MAX_S)
        *exp_s = TOKEN_LIFE_MAX_S;
    json_decref(j);
    return 0;
}
