/*
 * sg_store_redis_conn.c - the Redis backend's connections: a pool of at
 * most store.redis.pool_size hiredis contexts guarded by a mutex (a burst
 * of decisions waits for one rather than opening more); a context is used
 * by one thread at a time and discarded after any transport error (and the
 * whole pool with it: the server is probably gone). With Sentinel, the
 * master's address comes from the sentinels and is asked again after a
 * transport error or a READONLY reply. A circuit breaker turns an outage
 * into immediate errors: after a failure, calls fail at once until one
 * probe, every 250-500 ms, gets through. Also open/close, EVALSHA (loading
 * the script on NOSCRIPT), and every minute (on the decision path) INFO:
 * whether Redis evicted keys, logged as a warning, since lost counters
 * weaken the caps.
 *
 * Must not: know what a job does (sg_store_redis.c, _evidence.c), log
 * secrets, block longer than the configured timeouts, or share a hiredis
 * context between threads.
 */
#include "sg_time.h"
#include "sg_store_redis_int.h"
#include "sg_decide_lua.h"
#include "sg_log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* --- small helpers -------------------------------------------------------- */


static struct timeval ms_tv(int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    return tv;
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* --- circuit breaker ------------------------------------------------------ */

static enum gate breaker_enter(struct sg_store_redis *r)
{
    enum gate g = GATE_PASS;

    pthread_mutex_lock(&r->mu);
    if (r->open) {
        if (!r->probing && (uint64_t)sg_time_mono_ms() >= r->retry_at) {
            r->probing = true;
            g = GATE_PROBE;
        } else {
            g = GATE_DENY;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return g;
}

static void breaker_done(struct sg_store_redis *r, enum gate g, bool ok, const char *why)
{
    uint64_t now = (uint64_t)sg_time_mono_ms();
    char esc[256];

    pthread_mutex_lock(&r->mu);
    if (g == GATE_PROBE)
        r->probing = false;
    if (ok) {
        if (r->open)
            sg_log(LOG_NOTICE, "store=redis event=up down_ms=%" PRIu64, now - r->down_since);
        r->open = false;
        r->backoff = BREAKER_MIN_MS;
    } else {
        if (!r->open) {
            r->open = true;
            r->down_since = now;
            r->backoff = BREAKER_MIN_MS;
            if (sg_log_ratelimit(&r->logstamp, 60))
                sg_log(LOG_WARNING, "store=redis event=down error=\"%s\"",
                       sg_log_esc(esc, sizeof(esc), why));
        } else if (g == GATE_PROBE) {
            r->backoff = r->backoff * 2 > BREAKER_MAX_MS ? BREAKER_MAX_MS : r->backoff * 2;
        }
        r->retry_at = now + r->backoff;
    }
    pthread_mutex_unlock(&r->mu);
}

/* --- connections ---------------------------------------------------------- */

/* Send one command, read its reply. NULL with *rc set on transport error. */
redisReply *sgr_command(redisContext *c, int argc, const char **argv,
                           const size_t *lens, enum job_rc *rc)
{
    void *rep = NULL;
    int done = 0, e;

    if (redisAppendCommandArgv(c, argc, argv, lens) != REDIS_OK) {
        *rc = J_IO;
        return NULL;
    }
    do {
        if (redisBufferWrite(c, &done) == REDIS_ERR) {
            *rc = J_IO_RETRY;     /* not (fully) sent: Redis ran nothing */
            return NULL;
        }
    } while (!done);
    errno = 0;
    if (redisGetReply(c, &rep) != REDIS_OK || rep == NULL) {
        e = errno;
        /* closed or reset before any reply: the server went away without
         * running the command (an idle pooled context to a restarted
         * server); a timeout may have run it, so no retry then. */
        *rc = (c->err == REDIS_ERR_EOF || (c->err == REDIS_ERR_IO && e == ECONNRESET))
              ? J_IO_RETRY : J_IO;
        return NULL;
    }
    return rep;
}

redisReply *sgr_commandv(redisContext *c, enum job_rc *rc, int argc, ...)
{
    const char *argv[8];
    size_t lens[8];
    va_list ap;

    va_start(ap, argc);
    for (int i = 0; i < argc && i < 8; i++) {
        argv[i] = va_arg(ap, const char *);
        lens[i] = strlen(argv[i]);
    }
    va_end(ap);
    return sgr_command(c, argc, argv, lens, rc);
}

/* Classify an error reply. */
enum job_rc sgr_reply_error(const redisReply *rep)
{
    if (strncmp(rep->str, "READONLY", 8) == 0 || strstr(rep->str, " READONLY ") != NULL ||
        strncmp(rep->str, "MASTERDOWN", 10) == 0)
        return J_MOVED;
    if (strncmp(rep->str, "LOADING", 7) == 0 || strncmp(rep->str, "BUSY", 4) == 0)
        return J_IO;
    return J_ERR;
}

static redisContext *dial(struct sg_store_redis *r, const char *host, int port,
                          bool use_unix, char *err, size_t errlen)
{
    redisContext *c;

    if (use_unix)
        c = redisConnectUnixWithTimeout(r->unix_path, ms_tv(r->connect_ms));
    else
        c = redisConnectWithTimeout(host, port, ms_tv(r->connect_ms));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (c->err) {
        snprintf(err, errlen, "connect %s:%d: %s", use_unix ? r->unix_path : host,
                 use_unix ? 0 : port, c->errstr);
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, ms_tv(r->command_ms)) != REDIS_OK) {
        snprintf(err, errlen, "set timeout: %s", c->errstr);
        redisFree(c);
        return NULL;
    }
    if (!use_unix)
        redisEnableKeepAlive(c);
    return c;
}

/* Ask the sentinels, in turn, where the master is. */
static int sentinel_ask(struct sg_store_redis *r, char *host, size_t hostlen, int *port,
                        char *err, size_t errlen)
{
    size_t start;

    pthread_mutex_lock(&r->mu);
    start = r->snext;
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < r->nsent; i++) {
        size_t s = (start + i) % r->nsent;
        redisContext *c = dial(r, r->sent_host[s], r->sent_port[s], false, err, errlen);
        enum job_rc rc;
        redisReply *rep;

        if (c == NULL)
            continue;
        rep = sgr_commandv(c, &rc, 3, "SENTINEL", "get-master-addr-by-name", r->master_name);
        if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
            rep->element[0]->type == REDIS_REPLY_STRING &&
            rep->element[1]->type == REDIS_REPLY_STRING) {
            snprintf(host, hostlen, "%s", rep->element[0]->str);
            *port = atoi(rep->element[1]->str);
            freeReplyObject(rep);
            redisFree(c);
            pthread_mutex_lock(&r->mu);
            r->snext = s;
            pthread_mutex_unlock(&r->mu);
            return 0;
        }
        snprintf(err, errlen, "sentinel %s:%d: %s", r->sent_host[s], r->sent_port[s],
                 rep == NULL ? c->errstr :
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "master unknown");
        if (rep != NULL)
            freeReplyObject(rep);
        redisFree(c);
    }
    return -1;
}

/* A new, authenticated context on the right server and database. */
static redisContext *connect_new(struct sg_store_redis *r, unsigned *gen, char *err,
                                 size_t errlen)
{
    char host[256];
    int port;
    bool known;
    redisContext *c;
    redisReply *rep = NULL;
    enum job_rc rc;
    char db[16];

    pthread_mutex_lock(&r->mu);
    *gen = r->gen;
    known = r->mknown;
    snprintf(host, sizeof(host), "%s", r->mhost);
    port = r->mport;
    pthread_mutex_unlock(&r->mu);

    if (r->master_name != NULL) {
        if (!known) {
            if (sentinel_ask(r, host, sizeof(host), &port, err, errlen) < 0)
                return NULL;
            pthread_mutex_lock(&r->mu);
            if (r->gen == *gen) {
                snprintf(r->mhost, sizeof(r->mhost), "%s", host);
                r->mport = port;
                r->mknown = true;
            }
            pthread_mutex_unlock(&r->mu);
        }
        c = dial(r, host, port, false, err, errlen);
    } else {
        c = dial(r, r->host, r->port, r->unix_path != NULL, err, errlen);
    }
    if (c == NULL)
        goto forget;
    if (r->password != NULL) {
        if (r->username != NULL)
            rep = sgr_commandv(c, &rc, 3, "AUTH", r->username, r->password);
        else
            rep = sgr_commandv(c, &rc, 2, "AUTH", r->password);
        if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
            /* the reply names no secret; still, keep only its first word */
            snprintf(err, errlen, "auth: %.40s", rep ? rep->str : c->errstr);
            goto fail;
        }
        freeReplyObject(rep);
    }
    if (r->db != 0) {
        snprintf(db, sizeof(db), "%d", r->db);
        rep = sgr_commandv(c, &rc, 2, "SELECT", db);
        if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "select %d: %s", r->db, rep ? rep->str : c->errstr);
            goto fail;
        }
        freeReplyObject(rep);
    }
    if (r->master_name != NULL) {
        /* the sentinels may lag behind a failover: check */
        rep = sgr_commandv(c, &rc, 1, "ROLE");
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
            rep->element[0]->type != REDIS_REPLY_STRING ||
            strcmp(rep->element[0]->str, "master") != 0) {
            snprintf(err, errlen, "%.200s:%d is not the master", host, port);
            goto fail;
        }
        freeReplyObject(rep);
    }
    return c;
fail:
    if (rep != NULL)
        freeReplyObject(rep);
    redisFree(c);
forget:
    /* sentinel mode: whatever went wrong, ask the sentinels next time */
    pthread_mutex_lock(&r->mu);
    if (r->master_name != NULL && r->gen == *gen) {
        r->gen++;
        r->mknown = false;
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Sentinel mode: ask the sentinels again about once a second. A manual
 * failover leaves the old master writable for seconds; without this the
 * pool would keep writing there until it is demoted and drops clients. */
#define SENTINEL_RECHECK_MS 1000

static void sentinel_recheck(struct sg_store_redis *r)
{
    uint64_t now = (uint64_t)sg_time_mono_ms();
    char host[256], err[256];
    int port;
    bool moved = false;

    pthread_mutex_lock(&r->mu);
    if (r->master_name == NULL || !r->mknown || r->mchecking ||
        now - r->mchecked < SENTINEL_RECHECK_MS) {
        pthread_mutex_unlock(&r->mu);
        return;
    }
    r->mchecking = true;
    r->mchecked = now;
    pthread_mutex_unlock(&r->mu);
    if (sentinel_ask(r, host, sizeof(host), &port, err, sizeof(err)) == 0) {
        pthread_mutex_lock(&r->mu);
        if (r->mknown && (strcmp(host, r->mhost) != 0 || port != r->mport)) {
            snprintf(r->mhost, sizeof(r->mhost), "%s", host);
            r->mport = port;
            r->gen++;             /* pooled contexts to the old master are dropped */
            moved = true;
        }
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_lock(&r->mu);
    r->mchecking = false;
    pthread_mutex_unlock(&r->mu);
    if (moved)
        sg_log(LOG_NOTICE, "redis: sentinel master %s moved to %s:%d", r->master_name, host, port);
}

/* How long a decision waits for a pooled connection. Not the command
 * timeout: on a saturated relay a thread holding a connection can wait
 * that long just to be scheduled again (100 SMTP sessions on 2 CPUs: over
 * 200 ms), and that is queueing, not a Redis failure. A Redis that stops
 * answering frees the connections within the command timeout anyway. */
#define POOL_WAIT_MS 5000

/* A context: an idle one, else a new one while fewer than pool_max are out,
 * else wait for one to come back (at most POOL_WAIT_MS: then the store
 * counts as failing for this message). Never more than pool_max
 * connections: a burst of decisions queues here instead of opening (and
 * closing) a connection each. */
static int conn_get(struct sg_store_redis *r, struct conn *cn, char *err, size_t errlen)
{
    redisContext *stale[16];
    size_t nstale = 0;
    struct timespec until;
    bool waited = false;

    sentinel_recheck(r);

    cn->c = NULL;
    cn->gen = 0;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (r->nidle > 0 && cn->c == NULL) {
            r->nidle--;
            if (r->idle_gen[r->nidle] == r->gen) {
                cn->c = r->idle[r->nidle];
                cn->gen = r->gen;
            } else if (nstale < 16) {
                stale[nstale++] = r->idle[r->nidle];
            } else {
                redisFree(r->idle[r->nidle]);
            }
        }
        if (cn->c != NULL || r->nbusy < r->pool_max)
            break;
        if (!waited) {
            until = sg_time_deadline(POOL_WAIT_MS);
            waited = true;
        }
        if (pthread_cond_timedwait(&r->freed, &r->mu, &until) != 0) {
            pthread_mutex_unlock(&r->mu);
            while (nstale > 0)
                redisFree(stale[--nstale]);
            snprintf(err, errlen, "all %zu connections busy for %d ms", r->pool_max, POOL_WAIT_MS);
            return -1;
        }
    }
    r->nbusy++;
    pthread_mutex_unlock(&r->mu);
    while (nstale > 0)
        redisFree(stale[--nstale]);
    if (cn->c != NULL) {
        cn->reused = true;
        return 0;
    }
    cn->reused = false;
    cn->c = connect_new(r, &cn->gen, err, errlen);
    if (cn->c == NULL) {
        pthread_mutex_lock(&r->mu);
        r->nbusy--;
        pthread_cond_signal(&r->freed);
        pthread_mutex_unlock(&r->mu);
        return -1;
    }
    return 0;
}

static void conn_put(struct sg_store_redis *r, struct conn *cn)
{
    pthread_mutex_lock(&r->mu);
    r->nbusy--;
    if (cn->gen == r->gen && r->nidle < r->pool_max) {
        r->idle[r->nidle] = cn->c;
        r->idle_gen[r->nidle] = cn->gen;
        r->nidle++;
        cn->c = NULL;
    }
    pthread_cond_signal(&r->freed);
    pthread_mutex_unlock(&r->mu);
    if (cn->c != NULL)
        redisFree(cn->c);
    cn->c = NULL;
}

/* Drop a failed context, and with it every idle one of its generation;
 * in sentinel mode the master is asked again. */
static void conn_drop(struct sg_store_redis *r, struct conn *cn)
{
    pthread_mutex_lock(&r->mu);
    r->nbusy--;
    if (cn->gen == r->gen) {
        r->gen++;
        r->mknown = false;
    }
    pthread_cond_signal(&r->freed);
    pthread_mutex_unlock(&r->mu);
    redisFree(cn->c);
    cn->c = NULL;
}


/* Run a job through the breaker on a pooled context: once, and once more
 * on a fresh context when the first failed in a way that is safe to
 * repeat (nothing ran: a dead pooled context, or a replica's READONLY). */
int sgr_run(struct sg_store_redis *r, job_fn fn, void *arg)
{
    enum gate g = breaker_enter(r);
    char err[256] = "";
    struct conn cn;

    if (g == GATE_DENY)
        return -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        enum job_rc rc;

        if (conn_get(r, &cn, err, sizeof(err)) < 0)
            break;
        rc = fn(r, cn.c, arg, err, sizeof(err));
        if (rc == J_OK || rc == J_ERR) {
            conn_put(r, &cn);
            breaker_done(r, g, true, NULL);
            return rc == J_OK ? 0 : -1;
        }
        if (err[0] == '\0')
            snprintf(err, sizeof(err), "%s", cn.c->err ? cn.c->errstr : "transport error");
        conn_drop(r, &cn);
        if (!(rc == J_MOVED || (rc == J_IO_RETRY && cn.reused)))
            break;
    }
    breaker_done(r, g, false, err);
    return -1;
}

/* EVALSHA, loading the script on NOSCRIPT. */
redisReply *sgr_eval(struct sg_store_redis *r, redisContext *c, struct args *a,
                        enum job_rc *rc, char *err, size_t errlen)
{
    redisReply *rep = sgr_command(c, (int)a->n, a->v, a->len, rc);

    if (rep != NULL && rep->type == REDIS_REPLY_ERROR &&
        strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        const char *lv[3] = { "SCRIPT", "LOAD", sg_decide_lua };
        size_t ll[3] = { 6, 4, strlen(sg_decide_lua) };

        freeReplyObject(rep);
        rep = sgr_command(c, 3, lv, ll, rc);
        if (rep == NULL)
            return NULL;
        if (rep->type == REDIS_REPLY_ERROR) {
            *rc = sgr_reply_error(rep);
            snprintf(err, errlen, "script load: %s", rep->str);
            freeReplyObject(rep);
            return NULL;
        }
        freeReplyObject(rep);
        rep = sgr_command(c, (int)a->n, a->v, a->len, rc);
    }
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
        *rc = sgr_reply_error(rep);
        snprintf(err, errlen, "%s", rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

/* --- open / close --------------------------------------------------------- */

static int parse_hostport(const char *s, char **host, int *port)
{
    const char *colon, *h = s;
    size_t hl;
    char *end;
    long p;

    if (s[0] == '[') {            /* [v6]:port */
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - s);
    }
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (hl == 0 || *end != '\0' || errno || p < 1 || p > 65535)
        return -1;
    *host = strndup(h, hl);
    *port = (int)p;
    return *host ? 0 : -1;
}

struct sg_store_redis *sg_store_redis_open(const struct sg_redis_settings *rs,
                                           sg_clock_fn clock, void *clock_ctx,
                                           char *err, size_t errlen)
{
    struct sg_store_redis *r = calloc(1, sizeof(*r));
    const char *prefix = rs->prefix ? rs->prefix : "sg:";

    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->freed, NULL);
    r->clock = clock;
    r->clock_ctx = clock_ctx;
    r->evicted = -1;
    r->backoff = BREAKER_MIN_MS;
    if (strchr(prefix, '{') != NULL || strchr(prefix, '}') != NULL) {
        snprintf(err, errlen, "store.redis.prefix: must not contain '{' or '}'");
        goto fail;
    }
    if (rs->sentinel_master != NULL && rs->nsentinels == 0) {
        snprintf(err, errlen, "store.redis.sentinel: master set but no sentinels");
        goto fail;
    }
    if (rs->port < 0 || rs->port > 65535 || rs->db < 0) {
        snprintf(err, errlen, "store.redis: bad port or db");
        goto fail;
    }
    r->host = strdup(rs->host ? rs->host : "127.0.0.1");
    r->port = rs->port ? rs->port : 6379;
    r->unix_path = xstrdup(rs->unix_path);
    r->username = xstrdup(rs->username);
    r->password = xstrdup(rs->password);
    r->prefix = strdup(prefix);
    r->master_name = xstrdup(rs->sentinel_master);
    r->db = rs->db;
    r->connect_ms = rs->connect_timeout_ms > 0 ? rs->connect_timeout_ms : 200;
    r->command_ms = rs->command_timeout_ms > 0 ? rs->command_timeout_ms : 200;
    r->pool_max = rs->pool_size > 0 ? (size_t)rs->pool_size : 8;
    r->trace_max = rs->trace_max > 0 ? (uint64_t)rs->trace_max : TRACE_DEFAULT_MAX;
    r->idle = calloc(r->pool_max, sizeof(*r->idle));
    r->idle_gen = calloc(r->pool_max, sizeof(*r->idle_gen));
    if (r->host == NULL || r->prefix == NULL || r->idle == NULL || r->idle_gen == NULL ||
        (rs->unix_path && !r->unix_path) || (rs->username && !r->username) ||
        (rs->password && !r->password) || (rs->sentinel_master && !r->master_name)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (rs->sentinel_master != NULL) {
        r->sent_host = calloc(rs->nsentinels, sizeof(*r->sent_host));
        r->sent_port = calloc(rs->nsentinels, sizeof(*r->sent_port));
        if (r->sent_host == NULL || r->sent_port == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        for (size_t i = 0; i < rs->nsentinels; i++) {
            if (parse_hostport(rs->sentinels[i], &r->sent_host[i], &r->sent_port[i]) < 0) {
                snprintf(err, errlen, "store.redis.sentinel: bad address \"%s\" (host:port)",
                         rs->sentinels[i]);
                r->nsent = i;
                goto fail;
            }
        }
        r->nsent = rs->nsentinels;
    }
    sgr_sha1_hex(r->sha, sg_decide_lua, strlen(sg_decide_lua));
    return r;
fail:
    sg_store_redis_close(r);
    return NULL;
}

void sg_store_redis_close(struct sg_store_redis *r)
{
    if (r == NULL)
        return;
    sgr_flood_flush(r, true);
    for (size_t i = 0; i < r->nidle; i++)
        redisFree(r->idle[i]);
    for (size_t i = 0; i < r->nsent; i++)
        free(r->sent_host[i]);
    free(r->sent_host);
    free(r->sent_port);
    free(r->idle);
    free(r->idle_gen);
    free(r->host);
    free(r->unix_path);
    free(r->username);
    if (r->password != NULL) {
        explicit_bzero(r->password, strlen(r->password));
        free(r->password);
    }
    free(r->prefix);
    free(r->master_name);
    pthread_cond_destroy(&r->freed);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

uint64_t sgr_wall_ms(const struct sg_store_redis *r)
{
    return r->clock != NULL ? r->clock(r->clock_ctx) : sg_clock_realtime_ms(NULL);
}

/* --- eviction watch -------------------------------------------------------- */

struct info_job {
    long long evicted, maxmemory, used;
    char policy[64];
};

static long long info_num(const char *info, const char *name)
{
    const char *p = strstr(info, name);

    return p ? strtoll(p + strlen(name), NULL, 10) : -1;
}

static enum job_rc info_job(struct sg_store_redis *r, redisContext *c, void *arg,
                            char *err, size_t errlen)
{
    struct info_job *j = arg;
    enum job_rc rc = J_OK;
    redisReply *rep = sgr_commandv(c, &rc, 1, "INFO");
    const char *p;

    (void)r;
    if (rep == NULL)
        return rc;
    if (rep->type != REDIS_REPLY_STRING) {
        snprintf(err, errlen, "info: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
        freeReplyObject(rep);
        return J_ERR;
    }
    j->evicted = info_num(rep->str, "\nevicted_keys:");
    j->maxmemory = info_num(rep->str, "\nmaxmemory:");
    j->used = info_num(rep->str, "\nused_memory:");
    p = strstr(rep->str, "\nmaxmemory_policy:");
    if (p != NULL)
        sscanf(p + 18, "%63[a-z-]", j->policy);
    freeReplyObject(rep);
    return J_OK;
}

/* Once a minute, on the decision path: did Redis evict keys since the last
 * look? Lost window keys undercount (the caps then let more through), lost
 * state forgets a lockdown: worth a warning each time it happens. */
void sgr_evict_check(struct sg_store_redis *r)
{
    struct info_job j = { .evicted = -1 };
    uint64_t now = (uint64_t)sg_time_mono_ms();
    long long before;

    pthread_mutex_lock(&r->mu);
    if (r->evict_checking || r->open || now < r->evict_next) {
        pthread_mutex_unlock(&r->mu);
        return;
    }
    r->evict_checking = true;
    r->evict_next = now + EVICT_CHECK_MS;
    pthread_mutex_unlock(&r->mu);

    if (sgr_run(r, info_job, &j) == 0 && j.evicted >= 0) {
        if (j.maxmemory > 0 && strncmp(j.policy, "allkeys-", 8) == 0 && !r->policy_warned) {
            r->policy_warned = true;
            sg_log(LOG_WARNING, "store=redis maxmemory_policy=%s maxmemory=%lld: Redis may "
                   "evict any key, sendguard's counters and account state included; use "
                   "volatile-ttl (or noeviction) with enough maxmemory (README: Redis memory)",
                   j.policy, j.maxmemory);
        }
        pthread_mutex_lock(&r->mu);
        before = r->evicted;
        r->evicted = j.evicted;
        pthread_mutex_unlock(&r->mu);
        if (before >= 0 && j.evicted > before)
            sg_log(LOG_WARNING, "store=redis event=evicted evicted_keys=%lld "
                   "maxmemory_policy=%s used_memory=%lld maxmemory=%lld: Redis evicted keys "
                   "in the last minute, maybe sendguard's (its counters then undercount): "
                   "raise maxmemory (README: Redis memory)",
                   j.evicted - before, j.policy[0] ? j.policy : "?", j.used, j.maxmemory);
    }
    pthread_mutex_lock(&r->mu);
    r->evict_checking = false;
    pthread_mutex_unlock(&r->mu);
}

