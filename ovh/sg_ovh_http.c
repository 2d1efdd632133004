/*
 * sg_ovh_http.c - the API client proper: one curl handle, signed or OAuth2
 * calls, the server time delta, retries, and error reports.
 *
 * A call: build the URL once, sign those bytes, hand the same bytes to
 * curl. Reads (GET, and the OAuth2 token) are retried (with backoff,
 * honouring Retry-After) on timeouts, broken transfers, 5xx and 429; never
 * on another 4xx, except one re-sync of the time delta after
 * INVALID_SIGNATURE/QUERY_TIME_OUT and one new OAuth2 token after a 401
 * (both refusals of a request that was not carried out). A write (POST...)
 * is resent only when it provably never left: a connect error; any other
 * failure after it may have reached the server is returned with
 * err->unknown_outcome set, for the caller to read back. Every request of
 * the process goes through one budget (SG_OVH_BUDGET a minute, sliding
 * window) and a 429's Retry-After holds them all.
 * Replies are capped (max_reply) and must be JSON; their bytes are decoded
 * by sg_ovh_reply.c, which also holds the error texts.
 * Must not: share a handle between threads, follow redirects, log or
 * report a secret, trust a byte of a reply before checking its shape, or
 * resend a write that may have been carried out.
 */
#include "sg_ovh_internal.h"
#include "sg_log.h"
#include "sg_time.h"

#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#define DELTA_MAX_AGE_MS (6 * 3600 * 1000LL)   /* refetch the time delta this often */
#define TOKEN_MARGIN_MS 10000                  /* renew OAuth2 tokens this early */
#define BACKOFF_CAP_MS 5000
#define WRITE_TIMEOUT_MIN_MS 60000             /* a slow write is not cut off early */

struct sg_ovh {
    CURL *curl;
    struct sg_ovh_opts o;
    char endpoint[512];
    char base[512];
    char token_url[512];
    enum sg_ovh_auth auth;
    char *ak, *as, *ck, *cid, *csecret;

    bool have_delta;
    int64_t delta;                /* server - local, seconds */
    int64_t delta_at;             /* monotonic ms of the fetch */

    char *token;                  /* OAuth2 access token */
    int64_t token_until;          /* monotonic ms after which it is renewed */

    bool (*abort_fn)(void *ctx);
    void *abort_ctx;
    int64_t budget_waited;        /* ms waited for the budget, since last asked */

    /* the reply being received */
    char *rbuf;
    size_t rlen, rcap;
    bool too_big;
    char query_id[96];
    char retry_after[64];
    char errbuf[CURL_ERROR_SIZE];
};

enum kind { K_UNSIGNED, K_SIGNED, K_TOKEN };

/* ---- the client ----------------------------------------------------------- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init_once(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int sg_ovh_global_init(void)
{
    pthread_once(&global_once, global_init_once);
    return global_rc == CURLE_OK ? 0 : -1;
}

void sg_ovh_opts_default(struct sg_ovh_opts *o)
{
    o->timeout_ms = 60000;
    o->attempts = 3;
    o->backoff_ms = 200;
    o->retry_after_max_s = 30;
    o->max_reply = 4u << 20;
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static char *dup_or_null(const char *s, bool *oom)
{
    char *d;

    if (!s)
        return NULL;
    if (!(d = strdup(s)))
        *oom = true;
    return d;
}

sg_ovh_t *sg_ovh_new(const sg_ovh_creds_t *creds, const struct sg_ovh_opts *opts,
                     struct sg_ovh_err *err)
{
    sg_ovh_t *c;
    bool oom = false;
    const char *ep = sg_ovh_creds_endpoint(creds);

    sg_ovh_err_clear(err);
    if (sg_ovh_global_init() != 0) {
        sg_ovh_err_set(err, SG_OVH_E_CONFIG, "curl_global_init failed");
        return NULL;
    }
    if (!(c = calloc(1, sizeof(*c)))) {
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
        return NULL;
    }
    sg_ovh_opts_default(&c->o);
    if (opts) {
        if (opts->timeout_ms > 0)
            c->o.timeout_ms = opts->timeout_ms;
        if (opts->attempts > 0)
            c->o.attempts = opts->attempts;
        if (opts->backoff_ms > 0)
            c->o.backoff_ms = opts->backoff_ms;
        if (opts->retry_after_max_s > 0)
            c->o.retry_after_max_s = opts->retry_after_max_s;
        if (opts->max_reply > 0)
            c->o.max_reply = opts->max_reply;
    }
    snprintf(c->endpoint, sizeof(c->endpoint), "%s", ep);
    if (!sg_ovh_endpoint_url(ep, c->base, sizeof(c->base))) {
        char esc[256];
        sg_ovh_err_set(err, SG_OVH_E_CONFIG, "endpoint \"%s\" is not usable",
                       sg_log_esc(esc, sizeof(esc), ep));
        free(c);
        return NULL;
    }
    c->auth = sg_ovh_creds_auth(creds);
    if (c->auth == SG_OVH_AUTH_OAUTH2 &&
        !sg_ovh_endpoint_token_url(ep, c->token_url, sizeof(c->token_url))) {
        sg_ovh_err_set(err, SG_OVH_E_CONFIG, "endpoint has no OAuth2 token URL");
        free(c);
        return NULL;
    }
    c->ak = dup_or_null(sg_ovh_creds_get(creds, "application_key"), &oom);
    c->as = dup_or_null(sg_ovh_creds_get(creds, "application_secret"), &oom);
    c->ck = dup_or_null(sg_ovh_creds_get(creds, "consumer_key"), &oom);
    c->cid = dup_or_null(sg_ovh_creds_get(creds, "client_id"), &oom);
    c->csecret = dup_or_null(sg_ovh_creds_get(creds, "client_secret"), &oom);
    c->curl = curl_easy_init();
    if (oom || !c->curl) {
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, oom ? "out of memory" : "curl_easy_init failed");
        sg_ovh_free(c);
        return NULL;
    }
    return c;
}

void sg_ovh_free(sg_ovh_t *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    wipe_free(c->ak);
    wipe_free(c->as);
    wipe_free(c->ck);
    wipe_free(c->cid);
    wipe_free(c->csecret);
    wipe_free(c->token);
    free(c->rbuf);
    free(c);
}

void sg_ovh_set_abort(sg_ovh_t *c, bool (*fn)(void *ctx), void *ctx)
{
    c->abort_fn = fn;
    c->abort_ctx = ctx;
}

static bool aborted(sg_ovh_t *c)
{
    return c->abort_fn && c->abort_fn(c->abort_ctx);
}

/* ---- the request budget (process-wide) ------------------------------------ */

static pthread_mutex_t budget_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t budget_slots[SG_OVH_BUDGET];   /* monotonic ms of the last requests */
static size_t budget_next;                    /* oldest slot, overwritten next */
static int64_t budget_hold_until;             /* a 429's Retry-After, for everyone */
static int64_t budget_minute = -1;

int64_t sg_ovh_budget_minute_ms(void)
{
    pthread_mutex_lock(&budget_mu);
    if (budget_minute < 0) {
        /* Test-only: a shorter "minute", so a pacing test runs in seconds. */
        const char *v = getenv("SG_OVH_TEST_MINUTE_MS");
        long long ms = v && *v ? strtoll(v, NULL, 10) : 0;
        budget_minute = ms >= 1000 && ms <= 60000 ? ms : 60000;
    }
    int64_t m = budget_minute;
    pthread_mutex_unlock(&budget_mu);
    return m;
}

/* budget_reserve - the monotonic ms at which the next request may start;
 * the slot is taken at once, so concurrent callers queue in order. */
static int64_t budget_reserve(void)
{
    /* A minute and a margin (1 % + 200 ms): the API counts arrivals, and a
     * request sent just after its slot may arrive before one sent earlier
     * on a slower path (a new connection, a loaded machine). */
    int64_t minute = sg_ovh_budget_minute_ms() * 101 / 100 + 200, now = sg_time_mono_ms(), at;

    pthread_mutex_lock(&budget_mu);
    at = now;
    /* budget_slots[budget_next] is the request SG_OVH_BUDGET ago (0 = none yet). */
    if (budget_slots[budget_next] > 0 && budget_slots[budget_next] + minute > at)
        at = budget_slots[budget_next] + minute;
    if (budget_hold_until > at)
        at = budget_hold_until;
    budget_slots[budget_next] = at;
    budget_next = (budget_next + 1) % SG_OVH_BUDGET;
    pthread_mutex_unlock(&budget_mu);
    return at;
}

static void budget_hold(int64_t ms)
{
    int64_t until = sg_time_mono_ms() + ms;

    pthread_mutex_lock(&budget_mu);
    if (until > budget_hold_until)
        budget_hold_until = until;
    pthread_mutex_unlock(&budget_mu);
}

int64_t sg_ovh_budget_waited(sg_ovh_t *c)
{
    int64_t w = c->budget_waited;

    c->budget_waited = 0;
    return w;
}

/* ---- one transfer --------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    sg_ovh_t *c = ud;
    size_t n = size * nmemb;

    if (n > c->o.max_reply - c->rlen) {
        c->too_big = true;
        return 0;                 /* curl stops with CURLE_WRITE_ERROR */
    }
    if (c->rlen + n + 1 > c->rcap) {
        size_t cap = c->rcap ? c->rcap : 4096;
        while (cap < c->rlen + n + 1)
            cap *= 2;
        char *p = realloc(c->rbuf, cap);
        if (!p)
            return 0;
        c->rbuf = p;
        c->rcap = cap;
    }
    memcpy(c->rbuf + c->rlen, data, n);
    c->rlen += n;
    c->rbuf[c->rlen] = '\0';
    return n;
}

static bool header_is(const char *line, size_t n, const char *name, const char **val, size_t *vlen)
{
    size_t k = strlen(name);

    if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return false;
    const char *v = line + k + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *val = v;
    *vlen = (size_t)(end - v);
    return true;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    sg_ovh_t *c = ud;
    size_t n = size * nmemb;
    const char *v;
    size_t vlen;

    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new response (after a 100 Continue, say): forget the last one's. */
        c->query_id[0] = c->retry_after[0] = '\0';
    } else if (header_is(data, n, "X-Ovh-QueryID", &v, &vlen)) {
        sg_log_escape(c->query_id, sizeof(c->query_id), v, vlen);
    } else if (header_is(data, n, "Retry-After", &v, &vlen)) {
        sg_ovh_err_field(c->retry_after, sizeof(c->retry_after), v, vlen);
    }
    return n;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t d, curl_off_t e)
{
    return aborted(ud) ? 1 : 0;
}

struct req {
    enum kind kind;
    const char *method;
    const char *url;              /* signed and sent as is */
    const char *body;             /* NULL = none */
    size_t bodylen;
};

static struct curl_slist *add_header(struct curl_slist *h, bool *oom, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static struct curl_slist *add_header(struct curl_slist *h, bool *oom, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    struct curl_slist *n;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    n = curl_slist_append(h, line);
    explicit_bzero(line, sizeof(line));
    if (!n) {
        *oom = true;
        return h;
    }
    return n;
}

/* test_origin - tests only: SG_OVH_TEST_ORIGINS="https://www.ovh.com=
 * http://127.0.0.1:PORT,..." sends a request for one of those origins to
 * the stand-in on loopback instead, with the original Host header, so a
 * test sees which host the client meant (a region's token URL). Mapping
 * targets other than http://127.0.0.1:PORT are ignored. */
static bool test_origin(const char *url, char *wire, size_t wlen, char *host, size_t hlen)
{
    const char *map = getenv("SG_OVH_TEST_ORIGINS");

    while (map && *map) {
        size_t n = strcspn(map, ",");
        const char *eq = memchr(map, '=', n);
        if (eq) {
            size_t olen = (size_t)(eq - map), tlen = n - olen - 1;
            const char *to = eq + 1;
            if (olen > 8 && strncmp(url, map, olen) == 0 && url[olen] == '/' &&
                tlen > 17 && strncmp(to, "http://127.0.0.1:", 17) == 0 &&
                strspn(to + 17, "0123456789") == tlen - 17) {
                const char *h = strstr(map, "://") + 3;
                snprintf(host, hlen, "%.*s", (int)(eq - h), h);
                return (size_t)snprintf(wire, wlen, "%.*s%s", (int)tlen, to, url + olen) < wlen;
            }
        }
        map += n + (map[n] == ',');
    }
    return false;
}

/* perform - one HTTP exchange; *status is 0 when none came back */
static void (*call_observer)(const char *result);

void sg_ovh_set_call_observer(void (*fn)(const char *result))
{
    call_observer = fn;
}

static CURLcode perform(sg_ovh_t *c, const struct req *r, long *status)
{
    CURL *h = c->curl;
    struct curl_slist *hdr = NULL;
    bool oom = false;
    char noproxy[512];
    const char *np = getenv("no_proxy");
    CURLcode cc;

    *status = 0;
    c->rlen = 0;
    if (c->rbuf)
        c->rbuf[0] = '\0';
    c->too_big = false;
    c->query_id[0] = c->retry_after[0] = c->errbuf[0] = '\0';

    hdr = add_header(hdr, &oom, "Accept: application/json");
    hdr = add_header(hdr, &oom, "Expect:");
    if (r->kind == K_TOKEN) {
        hdr = add_header(hdr, &oom, "Content-Type: application/x-www-form-urlencoded");
    } else {
        if (c->ak)
            hdr = add_header(hdr, &oom, "X-Ovh-Application: %s", c->ak);
        if (r->body)
            hdr = add_header(hdr, &oom, "Content-Type: application/json");
        else if (strcmp(r->method, "GET") != 0)
            hdr = add_header(hdr, &oom, "Content-Type:");   /* none: curl would add a form type */
    }
    if (r->kind == K_SIGNED && c->auth == SG_OVH_AUTH_SIGNED) {
        char sig[SG_OVH_SIG_SIZE];
        int64_t ts = (int64_t)time(NULL) + c->delta;

        sg_ovh_sign(c->as, c->ck, r->method, r->url, r->body, r->bodylen, ts, sig);
        hdr = add_header(hdr, &oom, "X-Ovh-Consumer: %s", c->ck);
        hdr = add_header(hdr, &oom, "X-Ovh-Timestamp: %" PRId64, ts);
        hdr = add_header(hdr, &oom, "X-Ovh-Signature: %s", sig);
    } else if (r->kind == K_SIGNED && c->auth == SG_OVH_AUTH_OAUTH2) {
        hdr = add_header(hdr, &oom, "Authorization: Bearer %s", c->token ? c->token : "");
    }
    char wire[1200], thost[256];
    bool mapped = test_origin(r->url, wire, sizeof(wire), thost, sizeof(thost));
    if (mapped)
        hdr = add_header(hdr, &oom, "Host: %s", thost);
    if (oom) {
        curl_slist_free_all(hdr);
        return CURLE_OUT_OF_MEMORY;
    }
    bool write = strcmp(r->method, "GET") != 0 && r->kind != K_TOKEN;
    long timeout = c->o.timeout_ms;
    if (write && timeout < WRITE_TIMEOUT_MIN_MS)
        timeout = WRITE_TIMEOUT_MIN_MS;

    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, mapped ? wire : r->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);      /* the wire URL is the signed URL */
    if (write) {
        /* A write on a connection of its own: libcurl silently resends a
         * request whose reused connection dies before the answer, which
         * for a write could carry it out twice. */
        curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    }
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(c->o.timeout_ms < 5000 ? c->o.timeout_ms : 5000));
    curl_easy_setopt(h, CURLOPT_USERAGENT, "sendguard/" SG_VERSION);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->o.max_reply);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    /* Loopback never goes through a proxy (tests, local stand-ins). */
    snprintf(noproxy, sizeof(noproxy), "%s%slocalhost,127.0.0.1,::1",
             np ? np : "", np && *np ? "," : "");
    curl_easy_setopt(h, CURLOPT_NOPROXY, noproxy);
    if (r->kind == K_TOKEN) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, c->cid);
        curl_easy_setopt(h, CURLOPT_PASSWORD, c->csecret);
    }
    if (strcmp(r->method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        if (strcmp(r->method, "POST") == 0)
            curl_easy_setopt(h, CURLOPT_POST, 1L);
        else
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
        if (r->body || strcmp(r->method, "POST") == 0) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->bodylen);
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body ? r->body : "");
        }
    }

    cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    if (call_observer != NULL)
        call_observer(cc != CURLE_OK || *status == 0 ? "failed" : *status < 400 ? "ok" :
                      *status == 429 || *status >= 500 ? "server_error" : "client_error");
    /* Forget the Basic credentials and headers in the handle right away. */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    if (r->kind == K_TOKEN) {
        curl_easy_setopt(h, CURLOPT_USERNAME, "");
        curl_easy_setopt(h, CURLOPT_PASSWORD, "");
    }
    curl_slist_free_all(hdr);
    return cc;
}

static bool transient_curl_error(CURLcode cc)
{
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return true;
    default:
        return false;
    }
}

/* never_left - the request provably did not reach the server: no
 * connection (or no TLS session) was ever made, so not a byte of HTTP
 * was sent. The only failures after which a write may be resent. */
static bool never_left(sg_ovh_t *c, CURLcode cc)
{
    long connects = -1;

    if (cc != CURLE_COULDNT_CONNECT && cc != CURLE_COULDNT_RESOLVE_HOST &&
        cc != CURLE_COULDNT_RESOLVE_PROXY && cc != CURLE_SSL_CONNECT_ERROR)
        return false;
    /* A connection reused from an earlier call would have been written to. */
    curl_easy_getinfo(c->curl, CURLINFO_NUM_CONNECTS, &connects);
    return connects <= 1;
}

/* retry_after_ms - the pause a Retry-After asks for, capped; -1 when none */
static int64_t retry_after_ms(const sg_ovh_t *c)
{
    const char *v = c->retry_after;
    int64_t s;

    if (!*v)
        return -1;
    if (strspn(v, "0123456789") == strlen(v) && strlen(v) < 10) {
        s = strtoll(v, NULL, 10);
    } else {
        time_t t = curl_getdate(v, NULL);
        if (t < 0)
            return -1;
        s = (int64_t)t - (int64_t)time(NULL);
        if (s < 0)
            s = 0;
    }
    if (s > c->o.retry_after_max_s)
        s = c->o.retry_after_max_s;
    return s * 1000;
}

/* pause_ms - sleep, waking up to honour the abort hook; false when aborted */
static bool pause_ms(sg_ovh_t *c, int64_t ms)
{
    int64_t until = sg_time_mono_ms() + ms;

    for (;;) {
        if (aborted(c))
            return false;
        int64_t left = until - sg_time_mono_ms();
        if (left <= 0)
            return true;
        if (left > 50)
            left = 50;
        struct timespec ts = { 0, (long)left * 1000000L };
        nanosleep(&ts, NULL);
    }
}

static int ensure_auth(sg_ovh_t *c, struct sg_ovh_err *err);

/* exchange - a request with the retry rules; on success the body is in
 * c->rbuf/c->rlen and *status holds the 2xx code. */
static int exchange(sg_ovh_t *c, const struct req *r, long *status, struct sg_ovh_err *err)
{
    bool resynced = false, reauthed = false;
    /* Reads may be repeated; a write only when it provably never left. */
    bool write = strcmp(r->method, "GET") != 0 && r->kind != K_TOKEN;
    int attempt = 0;

    for (;;) {
        if (r->kind == K_SIGNED && ensure_auth(c, err) != 0)
            return -1;
        err->unknown_outcome = false;

        int64_t at = budget_reserve(), waited = at - sg_time_mono_ms();
        if (waited > 0) {
            c->budget_waited += waited;
            if (!pause_ms(c, waited)) {
                sg_ovh_err_set(err, SG_OVH_E_ABORTED, "stopped");
                return -1;
            }
        }
        CURLcode cc = perform(c, r, status);
        bool transient = false;
        int64_t wait = -1;

        if (cc == CURLE_ABORTED_BY_CALLBACK || aborted(c)) {
            sg_ovh_err_set(err, SG_OVH_E_ABORTED, "stopped");
            /* Stopped mid-transfer: a write may have gone through. */
            err->unknown_outcome = write && cc != CURLE_OK ? !never_left(c, cc) : false;
            return -1;
        }
        if (cc == CURLE_OK && *status >= 200 && *status < 300)
            return 0;
        if (cc == CURLE_OUT_OF_MEMORY) {
            sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
            err->unknown_outcome = write;
            return -1;
        }
        if (c->too_big || cc == CURLE_FILESIZE_EXCEEDED) {
            sg_ovh_err_set(err, SG_OVH_E_REPLY, "reply larger than %zu bytes: refused",
                           c->o.max_reply);
            err->http_status = *status;
            snprintf(err->query_id, sizeof(err->query_id), "%s", c->query_id);
            err->unknown_outcome = write;
            return -1;
        }
        if (cc != CURLE_OK) {
            char esc[CURL_ERROR_SIZE + 8];
            const char *t = *c->errbuf ? c->errbuf : curl_easy_strerror(cc);
            sg_ovh_err_field(esc, sizeof(esc), t, strlen(t));
            sg_ovh_err_set(err, SG_OVH_E_NET, "%s", esc);
            snprintf(err->query_id, sizeof(err->query_id), "%s", c->query_id);
            if (write) {
                transient = never_left(c, cc);
                err->unknown_outcome = !transient;
            } else {
                transient = transient_curl_error(cc);
            }
        } else {
            sg_ovh_decode_error(c->rbuf, c->rlen, *status, c->query_id, err);
            if (*status == 429 || *status >= 500) {
                wait = retry_after_ms(c);
                if (*status == 429)
                    budget_hold(wait >= 0 ? wait : c->o.backoff_ms);
                /* A 5xx answer to a write says nothing of what was done. */
                err->unknown_outcome = write && *status >= 500;
                transient = !write;
            } else if (r->kind == K_SIGNED && c->auth == SG_OVH_AUTH_SIGNED && !resynced &&
                       (strcmp(err->code, "INVALID_SIGNATURE") == 0 ||
                        strcmp(err->code, "QUERY_TIME_OUT") == 0 ||
                        strcasecmp(err->message, "Invalid signature") == 0 ||
                        strcasecmp(err->message, "Query out of time") == 0)) {
                /* The clock moved (or the server's did): fetch the delta again, once.
                 * The request was refused before anything was done: safe to resend. */
                resynced = true;
                c->have_delta = false;
                continue;
            } else if (r->kind == K_SIGNED && c->auth == SG_OVH_AUTH_OAUTH2 && !reauthed &&
                       (*status == 401 ||
                        (*status == 403 && strcmp(err->code, "INVALID_CREDENTIAL") == 0))) {
                /* The token may have expired early (or been revoked): a new one, once. */
                reauthed = true;
                wipe_free(c->token);
                c->token = NULL;
                continue;
            }
        }
        if (!transient || ++attempt >= c->o.attempts)
            return -1;
        if (wait < 0) {
            wait = (int64_t)c->o.backoff_ms << (attempt - 1);
            if (wait > BACKOFF_CAP_MS)
                wait = BACKOFF_CAP_MS;
        }
        {
            char msg[700], url[300];
            /* The URL holds no secret; the path part is what identifies the call. */
            const char *shown = strstr(r->url, "://");
            shown = shown ? strchr(shown + 3, '/') : NULL;
            sg_log_esc(url, sizeof(url), shown ? shown : r->url);
            sg_log(LOG_INFO, "ovh: %s %s: %s; retry %d of %d in %" PRId64 " ms", r->method, url,
                   sg_ovh_strerror(err, msg, sizeof(msg)), attempt, c->o.attempts - 1, wait);
        }
        if (!pause_ms(c, wait)) {
            sg_ovh_err_set(err, SG_OVH_E_ABORTED, "stopped");
            return -1;
        }
    }
}

/* fetch_delta - GET /auth/time (unsigned) and cache server - local */
static int fetch_delta(sg_ovh_t *c, struct sg_ovh_err *err)
{
    char url[600];
    struct req r = { K_UNSIGNED, "GET", url, NULL, 0 };
    long status;
    int64_t server;

    snprintf(url, sizeof(url), "%s/auth/time", c->base);
    if (exchange(c, &r, &status, err) != 0 ||
        sg_ovh_decode_time(c->rbuf, c->rlen, c->query_id, &server, err) != 0) {
        sg_ovh_set_request(err, "GET", "/auth/time");
        return -1;
    }
    c->delta = server - (int64_t)time(NULL);
    c->have_delta = true;
    c->delta_at = sg_time_mono_ms();
    return 0;
}

/* fetch_token - OAuth2 client credentials grant */
static int fetch_token(sg_ovh_t *c, struct sg_ovh_err *err)
{
    static const char form[] = "grant_type=client_credentials&scope=all";
    struct req r = { K_TOKEN, "POST", c->token_url, form, sizeof(form) - 1 };
    long status;
    char *tok = NULL;
    bool has_exp;
    int64_t exp;

    if (exchange(c, &r, &status, err) != 0) {
        sg_ovh_set_request(err, "POST", c->token_url);
        return -1;
    }
    if (sg_ovh_decode_token(c->rbuf, c->rlen, c->query_id, &tok, &has_exp, &exp, err) != 0) {
        if (err->rc != SG_OVH_E_NOMEM)       /* out of memory names no request */
            sg_ovh_set_request(err, "POST", c->token_url);
        return -1;
    }
    wipe_free(c->token);
    c->token = tok;
    int64_t life = has_exp ? exp * 1000 : 3600 * 1000;
    life -= TOKEN_MARGIN_MS;
    if (life < 0)
        life = 0;
    c->token_until = sg_time_mono_ms() + life;
    return 0;
}

static int ensure_auth(sg_ovh_t *c, struct sg_ovh_err *err)
{
    if (c->auth == SG_OVH_AUTH_SIGNED) {
        if (!c->ck) {
            char esc[256];
            sg_ovh_err_set(err, SG_OVH_E_CONFIG, "no consumer_key for endpoint %s: "
                           "run `sendguardctl ovh credential` and put the key in ovh.conf",
                           sg_log_esc(esc, sizeof(esc), c->endpoint));
            return -1;
        }
        if (!c->have_delta || sg_time_mono_ms() - c->delta_at > DELTA_MAX_AGE_MS)
            return fetch_delta(c, err);
        return 0;
    }
    if (!c->token || sg_time_mono_ms() >= c->token_until)
        return fetch_token(c, err);
    return 0;
}

int sg_ovh_time_delta(sg_ovh_t *c, int64_t *delta, struct sg_ovh_err *err)
{
    sg_ovh_err_clear(err);
    if (!c->have_delta && fetch_delta(c, err) != 0)
        return -1;
    *delta = c->delta;
    return 0;
}

static int build_url(const sg_ovh_t *c, const char *path, char **out)
{
    size_t blen = strlen(c->base);

    /* "/v1/..." and "/v2/..." paths replace the "/1.0" of the base. */
    if ((strncmp(path, "/v1/", 4) == 0 || strncmp(path, "/v2/", 4) == 0) && blen >= 4 &&
        strcmp(c->base + blen - 4, "/1.0") == 0)
        blen -= 4;
    if (asprintf(out, "%.*s%s", (int)blen, c->base, path) < 0) {
        *out = NULL;
        return -1;
    }
    return 0;
}

int sg_ovh_call(sg_ovh_t *c, const char *method, const char *path, const json_t *body,
                bool signed_, json_t **reply, struct sg_ovh_err *err)
{
    char *url = NULL, *bodystr = NULL;
    long status = 0;
    int rc = -1;

    sg_ovh_err_clear(err);
    if (reply)
        *reply = NULL;
    if (!path || path[0] != '/' || strpbrk(path, " \t\r\n#")) {
        sg_ovh_err_set(err, SG_OVH_E_INVAL, "bad API path");
        goto out;
    }
    if (build_url(c, path, &url) != 0 ||
        (body && !(bodystr = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY)))) {
        sg_ovh_err_set(err, SG_OVH_E_NOMEM, "out of memory");
        goto out;
    }
    struct req r = { signed_ ? K_SIGNED : K_UNSIGNED, method, url, bodystr,
                     bodystr ? strlen(bodystr) : 0 };
    if (exchange(c, &r, &status, err) == 0) {
        if (sg_ovh_decode_body(c->rbuf, c->rlen, c->query_id, reply, err) == 0)
            rc = 0;
        else if (strcmp(method, "GET") != 0)
            err->unknown_outcome = true;      /* accepted, but the answer is unreadable */
    }
out:
    if (rc != 0 && err && !*err->request)
        sg_ovh_set_request(err, method, path);
    if (bodystr) {
        explicit_bzero(bodystr, strlen(bodystr));   /* may hold a password */
        free(bodystr);
    }
    free(url);
    return rc;
}

sg_ovh_t *sg_ovh_open(const struct sg_settings *s, struct sg_ovh_err *err)
{
    char msg[sizeof(err->message)];
    sg_ovh_creds_t *creds;
    struct sg_ovh_opts o;
    sg_ovh_t *c;

    memset(err, 0, sizeof(*err));
    if (sg_ovh_global_init() != 0) {
        err->rc = SG_OVH_E_CONFIG;
        snprintf(err->message, sizeof(err->message), "curl_global_init failed");
        return NULL;
    }
    creds = sg_ovh_creds_load(s->ovh_credentials, s->ovh_endpoint, msg, sizeof(msg));
    if (creds == NULL) {
        err->rc = SG_OVH_E_CONFIG;
        snprintf(err->message, sizeof(err->message), "%s", msg);
        return NULL;
    }
    sg_ovh_opts_default(&o);
    if (s->ovh_timeout_ms > 0)
        o.timeout_ms = s->ovh_timeout_ms;
    c = sg_ovh_new(creds, &o, err);
    sg_ovh_creds_free(creds);
    return c;
}
