/*
 * fuzz_address - addresses and log escaping: what the MTA hands sendguard
 * (MAIL FROM, RCPT TO, {auth_authen}, header values) through
 * sg_policy_normalize, sg_policy_match, sg_policy_rcpt_hash and the three
 * escapers of util/sg_log.h.
 *
 * Input: byte 0 = settings (bit 0 lowercase, bit 1 strip_tag, bits 2-3 the
 * tag separator), byte 1 = the escape buffer size (1..256); the rest up to
 * the first NUL or end is split at the first '\n' into a pattern and an
 * identity (no '\n': both are the same text).
 * Checks beyond the sanitizers: normalised identities are non-empty and
 * fit SG_ADDR_MAX; escaped text never leaves its exact-size buffer (ASan),
 * is NUL-terminated, and is one clean line (sg_log.h's contract).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sg_log.h"
#include "sg_policy.h"

static void check_line(const char *s, size_t size, int text)
{
    size_t len = strnlen(s, size);

    if (len >= size)
        abort();                  /* not terminated inside its buffer */
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            abort();              /* a control byte would break the log line */
        if (!text && (*p >= 0x7f || *p == ' ' || *p == '"' || *p == '=' || *p == '<' ||
                      *p == '>'))
            abort();              /* sg_log_escape: printable ASCII, no delimiters */
    }
}

/* src: len bytes, any of them NUL; terminated says src[len] is a NUL. */
static void escape_all(const char *src, size_t len, size_t cap, int terminated)
{
    char *dst = malloc(cap);      /* exactly cap bytes: ASan sees any overflow */

    if (!dst)
        return;
    sg_log_escape(dst, cap, src, len);
    check_line(dst, cap, 0);
    sg_log_escape_text(dst, cap, src, len);
    check_line(dst, cap, 1);
    if (terminated) {
        sg_log_esc(dst, cap, src);
        check_line(dst, cap, 0);
    }
    free(dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char seps[4] = { '+', '-', '_', '.' };
    struct sg_settings s = { 0 };
    char *text, *nl, *pattern, *ident;
    char out[SG_ADDR_MAX + 1], out2[SG_ADDR_MAX + 1];
    size_t len, cap;

    if (size < 2)
        return 0;
    s.lowercase = data[0] & 1;
    s.strip_tag = (data[0] >> 1) & 1;
    s.tag_separator = seps[(data[0] >> 2) & 3];
    cap = 1 + data[1];
    data += 2;
    size -= 2;
    /* every byte, NULs included, from an exact-size copy */
    if (!(text = malloc(size ? size : 1)))
        return 0;
    memcpy(text, data, size);
    escape_all(text, size, cap, 0);
    free(text);

    len = strnlen((const char *)data, size);
    if (!(text = malloc(len + 1)))
        return 0;
    memcpy(text, data, len);
    text[len] = '\0';
    escape_all(text, len, cap, 1);

    nl = strchr(text, '\n');
    pattern = text;
    ident = text;
    if (nl) {
        *nl = '\0';
        ident = nl + 1;
    }
    sg_policy_normalize(&s, ident, out);
    if (out[0] == '\0' || strlen(out) > SG_ADDR_MAX)
        abort();
    sg_policy_normalize(&s, out, out2);
    if (out2[0] == '\0' || strlen(out2) > SG_ADDR_MAX)
        abort();
    (void)sg_policy_match(pattern, out);
    (void)sg_policy_match(pattern, ident);
    (void)sg_policy_match(out, pattern);
    (void)sg_policy_rcpt_hash(out);
    free(text);
    return 0;
}
