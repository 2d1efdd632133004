/*
 * sg_ovh_sign.c - endpoints, URL paths and request signatures.
 *
 * Pure functions: no I/O, no allocation except sg_ovh_path's result. The
 * signature covers the exact URL and body bytes that go on the wire, so the
 * caller builds them once and hands the same bytes to curl.
 * Must not: keep a copy of the application secret (it is fed to the digest
 * and nowhere else).
 */
#include "sg_ovh_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

static const struct {
    const char *alias;
    const char *url;
    const char *token;            /* OAuth2 token URL, NULL = none */
} endpoints[] = {
    { "ovh-eu", "https://eu.api.ovh.com/1.0", "https://www.ovh.com/auth/oauth2/token" },
    { "ovh-ca", "https://ca.api.ovh.com/1.0", "https://ca.ovh.com/auth/oauth2/token" },
    { "ovh-us", "https://api.us.ovhcloud.com/1.0", "https://us.ovhcloud.com/auth/oauth2/token" },
    { "kimsufi-eu", "https://eu.api.kimsufi.com/1.0", NULL },
    { "kimsufi-ca", "https://ca.api.kimsufi.com/1.0", NULL },
    { "soyoustart-eu", "https://eu.api.soyoustart.com/1.0", NULL },
    { "soyoustart-ca", "https://ca.api.soyoustart.com/1.0", NULL },
};

/* is_loopback_host - host part (without port or brackets) of a URL */
static bool is_loopback_host(const char *h, size_t n)
{
    if ((n == 9 && strncasecmp(h, "localhost", 9) == 0) || (n == 3 && memcmp(h, "::1", 3) == 0))
        return true;
    return n >= 4 && strncmp(h, "127.", 4) == 0 && strspn(h, "0123456789.") >= n;
}

/* split_url - scheme length, host start/length and the end of the authority
 * of an http(s) URL; false when it is not one. */
static bool split_url(const char *u, bool *https, const char **host, size_t *hostlen,
                      size_t *authority_end)
{
    const char *p;

    if (strncasecmp(u, "https://", 8) == 0) {
        *https = true;
        p = u + 8;
    } else if (strncasecmp(u, "http://", 7) == 0) {
        *https = false;
        p = u + 7;
    } else {
        return false;
    }
    size_t alen = strcspn(p, "/?#");
    if (alen == 0 || memchr(p, '@', alen))      /* no userinfo in an endpoint */
        return false;
    if (*p == '[') {
        const char *rb = memchr(p, ']', alen);
        if (!rb)
            return false;
        *host = p + 1;
        *hostlen = (size_t)(rb - p - 1);
    } else {
        *host = p;
        *hostlen = strcspn(p, ":/?#");
    }
    if (*hostlen == 0)
        return false;
    *authority_end = (size_t)(p - u) + alen;
    return true;
}

static bool literal_ok(const char *endpoint)
{
    bool https;
    const char *host;
    size_t hostlen, aend;

    if (!split_url(endpoint, &https, &host, &hostlen, &aend))
        return false;
    if (strpbrk(endpoint, "?# \t\r\n"))
        return false;
    return https || is_loopback_host(host, hostlen);
}

bool sg_ovh_endpoint_url(const char *endpoint, char *buf, size_t len)
{
    if (!endpoint || !*endpoint || len == 0)
        return false;
    if (strchr(endpoint, '/')) {
        size_t n = strlen(endpoint);

        if (!literal_ok(endpoint))
            return false;
        while (n > 0 && endpoint[n - 1] == '/')
            n--;
        if (n >= len)
            return false;
        memcpy(buf, endpoint, n);
        buf[n] = '\0';
        return true;
    }
    for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
        if (strcmp(endpoint, endpoints[i].alias) == 0)
            return (size_t)snprintf(buf, len, "%s", endpoints[i].url) < len;
    }
    return false;
}

bool sg_ovh_endpoint_token_url(const char *endpoint, char *buf, size_t len)
{
    if (!endpoint || !*endpoint || len == 0)
        return false;
    if (strchr(endpoint, '/')) {
        bool https;
        const char *host;
        size_t hostlen, aend, elen = strlen(endpoint);

        if (!literal_ok(endpoint) || !split_url(endpoint, &https, &host, &hostlen, &aend))
            return false;
        while (elen > 0 && endpoint[elen - 1] == '/')
            elen--;
        /* A region's API written as a URL: that region's token URL, which
         * lives on another host than the API (never derived from it). */
        for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++)
            if (strlen(endpoints[i].url) == elen &&
                strncasecmp(endpoint, endpoints[i].url, elen) == 0)
                return endpoints[i].token &&
                       (size_t)snprintf(buf, len, "%s", endpoints[i].token) < len;
        /* Only a loopback stand-in (tests) gets a token URL on its own host. */
        if (https || !is_loopback_host(host, hostlen))
            return false;
        return (size_t)snprintf(buf, len, "%.*s/auth/oauth2/token", (int)aend, endpoint) < len;
    }
    for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
        if (strcmp(endpoint, endpoints[i].alias) == 0) {
            if (!endpoints[i].token)
                return false;
            return (size_t)snprintf(buf, len, "%s", endpoints[i].token) < len;
        }
    }
    return false;
}

void sg_ovh_sign(const char *as, const char *ck, const char *method,
                 const char *url, const char *body, size_t bodylen,
                 int64_t ts, char out[SG_OVH_SIG_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char tsbuf[32];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    snprintf(tsbuf, sizeof(tsbuf), "%" PRId64, ts);
    out[0] = '\0';
    if (!ctx)
        return;
    /* Fed piece by piece: the pre-image, which holds the secret, is never
     * assembled in memory. */
    if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
        EVP_DigestUpdate(ctx, as, strlen(as)) == 1 && EVP_DigestUpdate(ctx, "+", 1) == 1 &&
        EVP_DigestUpdate(ctx, ck, strlen(ck)) == 1 && EVP_DigestUpdate(ctx, "+", 1) == 1 &&
        EVP_DigestUpdate(ctx, method, strlen(method)) == 1 && EVP_DigestUpdate(ctx, "+", 1) == 1 &&
        EVP_DigestUpdate(ctx, url, strlen(url)) == 1 && EVP_DigestUpdate(ctx, "+", 1) == 1 &&
        (bodylen == 0 || EVP_DigestUpdate(ctx, body, bodylen) == 1) &&
        EVP_DigestUpdate(ctx, "+", 1) == 1 &&
        EVP_DigestUpdate(ctx, tsbuf, strlen(tsbuf)) == 1 &&
        EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 20) {
        memcpy(out, "$1$", 3);
        for (unsigned i = 0; i < mdlen; i++) {
            out[3 + 2 * i] = hex[md[i] >> 4];
            out[3 + 2 * i + 1] = hex[md[i] & 15];
        }
        out[3 + 2 * mdlen] = '\0';
    }
    EVP_MD_CTX_free(ctx);
}

/* ---- paths ---------------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 128;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_encode(struct sbuf *b, const char *s, bool query)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        /* Unreserved characters, and '@' (sent literally by the official
         * clients); in a path segment also the sub-delimiters an address
         * may hold. Everything else, '/' '?' '#' '%' included, encoded. */
        bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~' || c == '@' ||
                    (!query && strchr("!$'()*+,;=:", c) && c != '\0');
        if (keep) {
            sb_add(b, (const char *)&c, 1);
        } else {
            char e[3] = { '%', hex[c >> 4], hex[c & 15] };
            sb_add(b, e, 3);
        }
    }
}

char *sg_ovh_path(const char *fmt, ...)
{
    struct sbuf b = { 0 };
    va_list ap;

    va_start(ap, fmt);
    sb_add(&b, "", 0);
    for (const char *p = fmt; *p; p++) {
        if (*p == '%' && (p[1] == 's' || p[1] == 'q')) {
            const char *arg = va_arg(ap, const char *);
            /* "." and ".." would be dot segments (the request is sent as is,
             * CURLOPT_PATH_AS_IS): a name from a hostile or broken reply
             * must not move the signed request to another route */
            if (p[1] == 's' && arg != NULL && (strcmp(arg, ".") == 0 || strcmp(arg, "..") == 0))
                b.oom = true;
            sb_encode(&b, arg ? arg : "", p[1] == 'q');
            p++;
        } else if (*p == '%' && p[1] == 'I') {
            char num[32];
            int n = snprintf(num, sizeof(num), "%" PRId64, va_arg(ap, int64_t));
            sb_add(&b, num, (size_t)n);
            p++;
        } else {
            sb_add(&b, p, 1);
        }
    }
    va_end(ap);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
