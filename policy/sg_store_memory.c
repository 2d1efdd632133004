/*
 * sg_store_memory.c - the in-process store: per account and limit, a ring
 * of buckets (sliding window counting its oldest bucket whole) and an
 * exact set of recipient hashes; per account, the block state.
 *
 * One relay only: nothing here is shared with other processes. Used as the
 * "memory" backend and as the fallback while Redis is unreachable.
 * Must not: block on anything but its own mutex, or keep idle entries
 * forever (a sweep frees what no window can still see).
 */
#include "sg_store_backend.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING (SG_STORE_BUCKETS + 2)
#define SWEEP_EVERY_MS 60000u

struct bucket {
    int64_t idx;                  /* bucket number = time / width */
    uint64_t u[SG_UNIT_DISTINCT]; /* messages, recipients, bytes */
};

struct dset {                     /* open addressing: hash -> last seen */
    uint64_t *keys;               /* 0 = empty slot (hash 0 is remapped to 1) */
    uint64_t *seen;
    size_t cap, used;
};

struct entry {                    /* one (account, limit) or one account state */
    struct entry *next;
    uint64_t hash;
    uint64_t touched_ms;
    uint64_t keep_ms;             /* how long after touched it still matters */
    int is_state;
    struct bucket ring[RING];
    struct dset distinct;
    uint64_t warned_until_ms;
    struct sg_account_state state;
    char **held;                  /* state entries: queue ids held on lockdown */
    size_t nheld;
    char lock_owner[128];         /* lock entries */
    uint64_t lock_until_ms;
    char key[];                   /* account '\0' limit name '\0' window */
};

struct sg_store_memory {
    pthread_mutex_t lock;
    sg_clock_fn clock;
    void *clock_ctx;
    struct entry **tab;
    size_t nbuckets, count;
    uint64_t last_sweep_ms;
};

/* FNV-1a over a key made of several NUL-terminated parts. */
static uint64_t key_hash(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static size_t make_key(char *buf, size_t bufsize, const char *account,
                       const char *name, uint64_t window_ms)
{
    size_t a = strlen(account), n = strlen(name);
    int w;

    if (a + n + 2 + 21 > bufsize)
        return 0;
    memcpy(buf, account, a + 1);
    memcpy(buf + a + 1, name, n + 1);
    w = snprintf(buf + a + n + 2, bufsize - a - n - 2, "%llu", (unsigned long long)window_ms);
    return a + n + 2 + (size_t)w + 1;
}

static void entry_free(struct entry *e)
{
    for (size_t i = 0; i < e->nheld; i++)
        free(e->held[i]);
    free(e->held);
    free(e->distinct.keys);
    free(e->distinct.seen);
    free(e);
}

static void table_grow(struct sg_store_memory *m)
{
    size_t nb = m->nbuckets * 2;
    struct entry **tab = calloc(nb, sizeof(*tab));

    if (tab == NULL)
        return;                   /* keep the old, longer chains */
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct entry *e = m->tab[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            e->next = tab[e->hash & (nb - 1)];
            tab[e->hash & (nb - 1)] = e;
        }
    }
    free(m->tab);
    m->tab = tab;
    m->nbuckets = nb;
}

static struct entry *lookup(struct sg_store_memory *m, const char *key, size_t klen,
                            int create)
{
    uint64_t h = key_hash(key, klen);
    struct entry *e;

    for (e = m->tab[h & (m->nbuckets - 1)]; e != NULL; e = e->next)
        if (e->hash == h && memcmp(e->key, key, klen) == 0)
            return e;
    if (!create)
        return NULL;
    e = calloc(1, sizeof(*e) + klen);
    if (e == NULL)
        return NULL;
    e->hash = h;
    memcpy(e->key, key, klen);
    for (size_t i = 0; i < RING; i++)
        e->ring[i].idx = INT64_MIN;
    e->next = m->tab[h & (m->nbuckets - 1)];
    m->tab[h & (m->nbuckets - 1)] = e;
    if (++m->count > m->nbuckets)
        table_grow(m);
    return e;
}

/* Free entries no window can see any more. Called under the lock. */
static void sweep(struct sg_store_memory *m, uint64_t now)
{
    if (now - m->last_sweep_ms < SWEEP_EVERY_MS && now >= m->last_sweep_ms)
        return;
    m->last_sweep_ms = now;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct entry **pp = &m->tab[i];
        while (*pp != NULL) {
            struct entry *e = *pp;
            if (!e->is_state && e->touched_ms + e->keep_ms < now) {
                *pp = e->next;
                entry_free(e);
                m->count--;
            } else {
                pp = &e->next;
            }
        }
    }
}

/* --- window arithmetic ------------------------------------------------- */

static uint64_t bucket_width(uint64_t window_ms)
{
    uint64_t w = (window_ms + SG_STORE_BUCKETS - 1) / SG_STORE_BUCKETS;
    return w ? w : 1;
}

static size_t slot(int64_t k)
{
    return (size_t)(((k % RING) + RING) % RING);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Sum per unit of the buckets that intersect [now - T, now]. */
static void window_sum(const struct entry *e, const struct sg_limit *l, uint64_t now,
                       uint64_t sum[SG_UNIT_DISTINCT])
{
    int64_t w = (int64_t)bucket_width(l->window_ms);
    int64_t lo = floor_div((int64_t)now - (int64_t)l->window_ms, w);
    int64_t hi = floor_div((int64_t)now, w);

    memset(sum, 0, sizeof(uint64_t) * SG_UNIT_DISTINCT);
    for (size_t i = 0; i < RING; i++) {
        const struct bucket *b = &e->ring[i];
        if (b->idx >= lo && b->idx <= hi)
            for (int u = 0; u < SG_UNIT_DISTINCT; u++)
                sum[u] += b->u[u];
    }
}

/* When will enough old buckets stop counting that `need` units of unit u
 * are released? A bucket k stops counting at (k+1)*w + T. */
static uint64_t retry_after(const struct entry *e, const struct sg_limit *l, uint64_t now,
                            int u, uint64_t need)
{
    int64_t w = (int64_t)bucket_width(l->window_ms);
    int64_t lo = floor_div((int64_t)now - (int64_t)l->window_ms, w);
    int64_t hi = floor_div((int64_t)now, w);
    uint64_t released = 0;

    for (int64_t k = lo; k <= hi; k++) {
        const struct bucket *b = &e->ring[slot(k)];
        if (b->idx != k)
            continue;
        released += b->u[u];
        if (released >= need) {
            int64_t at = (k + 1) * w + (int64_t)l->window_ms;
            return at > (int64_t)now ? (uint64_t)(at - (int64_t)now) : 1;
        }
    }
    return l->window_ms;          /* not reachable when need <= used */
}

static void bucket_add(struct entry *e, const struct sg_limit *l, uint64_t now,
                       const uint64_t units[SG_UNIT_COUNT])
{
    int64_t w = (int64_t)bucket_width(l->window_ms);
    int64_t k = floor_div((int64_t)now, w);
    struct bucket *b = &e->ring[slot(k)];

    if (b->idx != k) {
        memset(b, 0, sizeof(*b));
        b->idx = k;
    }
    for (int u = 0; u < SG_UNIT_DISTINCT; u++)
        b->u[u] += units[u];
}

/* --- distinct recipients ----------------------------------------------- */

static uint64_t dkey(uint64_t h)
{
    return h ? h : 1;
}

static size_t dfind(const struct dset *d, uint64_t h)
{
    size_t i = (size_t)(h * 0x9E3779B97F4A7C15ULL) & (d->cap - 1);
    while (d->keys[i] != 0 && d->keys[i] != h)
        i = (i + 1) & (d->cap - 1);
    return i;
}

/* Rebuild without entries last seen before `oldest`, at a size fitting
 * `need` more. Returns -1 on allocation failure (set unchanged). */
static int drebuild(struct dset *d, uint64_t oldest, size_t need)
{
    struct dset n = { 0 };
    size_t live = 0;

    for (size_t i = 0; i < d->cap; i++)
        if (d->keys[i] != 0 && d->seen[i] >= oldest)
            live++;
    n.cap = 16;
    while (n.cap < (live + need) * 2)
        n.cap *= 2;
    n.keys = calloc(n.cap, sizeof(uint64_t));
    n.seen = calloc(n.cap, sizeof(uint64_t));
    if (n.keys == NULL || n.seen == NULL) {
        free(n.keys);
        free(n.seen);
        return -1;
    }
    for (size_t i = 0; i < d->cap; i++) {
        if (d->keys[i] != 0 && d->seen[i] >= oldest) {
            size_t j = dfind(&n, d->keys[i]);
            n.keys[j] = d->keys[i];
            n.seen[j] = d->seen[i];
            n.used++;
        }
    }
    free(d->keys);
    free(d->seen);
    *d = n;
    return 0;
}

/* Distinct recipients in the window, and how many of this message's are new. */
static int distinct_count(struct entry *e, const struct sg_limit *l, uint64_t now,
                          const struct sg_charge *c, uint64_t *inwin, uint64_t *fresh)
{
    uint64_t oldest = now >= l->window_ms ? now - l->window_ms : 0;

    if (drebuild(&e->distinct, oldest, c->nrcpt_hashes) < 0)
        return -1;
    *inwin = e->distinct.used;
    *fresh = 0;
    for (size_t i = 0; i < c->nrcpt_hashes; i++) {
        size_t j = dfind(&e->distinct, dkey(c->rcpt_hashes[i]));
        if (e->distinct.keys[j] == 0)
            (*fresh)++;
    }
    return 0;
}

static void distinct_commit(struct entry *e, uint64_t now, const struct sg_charge *c)
{
    for (size_t i = 0; i < c->nrcpt_hashes; i++) {
        uint64_t h = dkey(c->rcpt_hashes[i]);
        size_t j = dfind(&e->distinct, h);
        if (e->distinct.keys[j] == 0) {
            e->distinct.keys[j] = h;
            e->distinct.used++;
        }
        e->distinct.seen[j] = now;
    }
}

/* --- the backend -------------------------------------------------------- */

struct sg_store_memory *sg_store_memory_open(sg_clock_fn clock, void *clock_ctx)
{
    struct sg_store_memory *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return NULL;
    m->nbuckets = 64;
    m->tab = calloc(m->nbuckets, sizeof(*m->tab));
    if (m->tab == NULL) {
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    m->clock = clock;
    m->clock_ctx = clock_ctx;
    return m;
}

static void mem_close(void *be)
{
    struct sg_store_memory *m = be;

    for (size_t i = 0; i < m->nbuckets; i++) {
        struct entry *e = m->tab[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            entry_free(e);
        }
    }
    free(m->tab);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static struct entry *limit_entry(struct sg_store_memory *m, const char *account,
                                 const struct sg_limit *l, int create)
{
    char key[1024];
    size_t klen = make_key(key, sizeof(key), account, l->name, l->window_ms);

    return klen ? lookup(m, key, klen, create) : NULL;
}

static struct entry *state_entry(struct sg_store_memory *m, const char *account, int create)
{
    char key[1024];
    size_t klen = make_key(key, sizeof(key), account, "", 0);
    struct entry *e;

    if (klen == 0)
        return NULL;
    e = lookup(m, key, klen, create);
    if (e != NULL)
        e->is_state = 1;
    return e;
}

static int mem_decide(void *be, const char *account, const struct sg_limit *limits,
                      size_t nlimits, const struct sg_charge *c,
                      const struct sg_evidence *ev, bool charge_refused,
                      struct sg_store_result *out)
{
    struct sg_store_memory *m = be;
    struct entry *ents[SG_STORE_MAX_LIMITS];
    uint64_t now = m->clock(m->clock_ctx);
    double fullest = -1.0;
    int over = 0;

    (void)ev;
    pthread_mutex_lock(&m->lock);
    sweep(m, now);
    {
        struct entry *s = state_entry(m, account, 0);
        out->lockdown = s != NULL && s->state.blocked;
    }
    for (size_t i = 0; i < nlimits; i++) {
        const struct sg_limit *l = &limits[i];
        uint64_t sum[SG_UNIT_DISTINCT], dist = 0, fresh = 0;

        ents[i] = limit_entry(m, account, l, 1);
        if (ents[i] == NULL)
            goto fail;
        ents[i]->touched_ms = now;
        ents[i]->keep_ms = l->window_ms + bucket_width(l->window_ms);
        window_sum(ents[i], l, now, sum);
        if (l->cap[SG_UNIT_DISTINCT] && distinct_count(ents[i], l, now, c, &dist, &fresh) < 0)
            goto fail;
        for (int u = 0; u < SG_UNIT_COUNT; u++) {
            uint64_t used = u == SG_UNIT_DISTINCT ? dist : sum[u];
            uint64_t cost = u == SG_UNIT_DISTINCT ? fresh : c->units[u];
            double ratio;

            if (l->cap[u] == 0)
                continue;
            if (!over && used + cost > l->cap[u]) {
                over = 1;
                out->status = SG_STORE_OVER;
                out->limit = i;
                out->unit = (enum sg_unit)u;
                out->used = used;
                out->cap = l->cap[u];
                if (cost > l->cap[u])
                    out->retry_after_ms = 0;
                else if (u == SG_UNIT_DISTINCT)
                    out->retry_after_ms = l->window_ms;  /* upper bound: sets expire per entry */
                else
                    out->retry_after_ms = retry_after(ents[i], l, now, u, used + cost - l->cap[u]);
            }
            ratio = (double)(used + cost) / (double)l->cap[u];
            if (!over && ratio > fullest) {
                fullest = ratio;
                out->limit = i;
                out->unit = (enum sg_unit)u;
                out->used = used + cost;
                out->cap = l->cap[u];
            }
        }
    }
    if (!over || charge_refused) {
        for (size_t i = 0; i < nlimits; i++) {
            const struct sg_limit *l = &limits[i];
            uint64_t sum[SG_UNIT_DISTINCT];

            bucket_add(ents[i], l, now, c->units);
            if (l->cap[SG_UNIT_DISTINCT])
                distinct_commit(ents[i], now, c);
            if (over)
                continue;
            window_sum(ents[i], l, now, sum);
            for (int u = 0; u < SG_UNIT_COUNT; u++) {
                uint64_t used = u == SG_UNIT_DISTINCT ? ents[i]->distinct.used : sum[u];
                if (l->cap[u] && (double)used >= l->warn_at * (double)l->cap[u] &&
                    now >= ents[i]->warned_until_ms) {
                    ents[i]->warned_until_ms = now + l->window_ms;
                    out->warn_mask |= 1u << i;
                    break;
                }
            }
        }
    }
    if (!over)
        out->status = SG_STORE_OK;
    pthread_mutex_unlock(&m->lock);
    return 0;
fail:
    pthread_mutex_unlock(&m->lock);
    out->status = SG_STORE_ERROR;
    return -1;
}

static int mem_usage(void *be, const char *account, const struct sg_limit *limits,
                     size_t nlimits, struct sg_usage *usage)
{
    struct sg_store_memory *m = be;
    uint64_t now = m->clock(m->clock_ctx);

    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < nlimits; i++) {
        struct entry *e = limit_entry(m, account, &limits[i], 0);
        uint64_t sum[SG_UNIT_DISTINCT];
        uint64_t oldest = now >= limits[i].window_ms ? now - limits[i].window_ms : 0;

        if (e == NULL)
            continue;
        window_sum(e, &limits[i], now, sum);
        memcpy(usage[i].used, sum, sizeof(sum));
        for (size_t j = 0; j < e->distinct.cap; j++)
            if (e->distinct.keys[j] != 0 && e->distinct.seen[j] >= oldest)
                usage[i].used[SG_UNIT_DISTINCT]++;
    }
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static int mem_reset(void *be, const char *account)
{
    struct sg_store_memory *m = be;
    size_t alen = strlen(account) + 1;

    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct entry **pp = &m->tab[i];
        while (*pp != NULL) {
            struct entry *e = *pp;
            if (!e->is_state && memcmp(e->key, account, alen) == 0) {
                *pp = e->next;
                entry_free(e);
                m->count--;
            } else {
                pp = &e->next;
            }
        }
    }
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static int mem_state_get(void *be, const char *account, struct sg_account_state *out)
{
    struct sg_store_memory *m = be;
    struct entry *e;

    pthread_mutex_lock(&m->lock);
    e = state_entry(m, account, 0);
    if (e != NULL)
        *out = e->state;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static int mem_state_set(void *be, const char *account, const struct sg_account_state *in)
{
    struct sg_store_memory *m = be;
    struct entry *e;

    pthread_mutex_lock(&m->lock);
    e = state_entry(m, account, 1);
    if (e != NULL)
        e->state = *in;
    pthread_mutex_unlock(&m->lock);
    return e != NULL ? 0 : -1;
}

/* Locks share the table: key "\1lock" '\0' name '\0' "0", never swept. */
static int mem_lock(void *be, const char *name, const char *owner, uint64_t ttl_ms)
{
    struct sg_store_memory *m = be;
    uint64_t now = m->clock(m->clock_ctx);
    struct entry *e;
    int rc;

    pthread_mutex_lock(&m->lock);
    {
        char key[1024];
        size_t klen = make_key(key, sizeof(key), "\1lock", name, 0);
        e = klen ? lookup(m, key, klen, 1) : NULL;
    }
    if (e == NULL) {
        pthread_mutex_unlock(&m->lock);
        return -1;
    }
    e->is_state = 1;
    {
        bool free_ = e->lock_owner[0] == '\0' || e->lock_until_ms <= now;
        bool mine = !free_ && strcmp(e->lock_owner, owner) == 0;

        if (ttl_ms == 0) {
            rc = free_ || mine;
            if (mine)
                e->lock_owner[0] = '\0';
        } else if (free_ || mine) {
            snprintf(e->lock_owner, sizeof(e->lock_owner), "%s", owner);
            e->lock_until_ms = now + ttl_ms;
            rc = 1;
        } else {
            rc = 0;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

/* The memory store records no evidence (it lives in one process; status
 * and report read the shared Redis store): the same shape, empty. */
static int mem_evidence_json(void *be, const char *account, char **json_out)
{
    static const char fmt[] = "{\"account\":\"\",\"last_seen\":null,\"by_ip\":{},"
        "\"by_mailer\":{},\"by_domain\":{},\"from_mismatch\":0,\"from_mismatch_recent\":[],"
        "\"hourly\":{},\"recent\":[]}";

    (void)be;
    (void)account;
    *json_out = strdup(fmt);
    return *json_out ? 0 : -1;
}

static int mem_held_add(void *be, const char *account, const char *relay, const char *qid)
{
    struct sg_store_memory *m = be;
    struct entry *e;
    char **v;
    int rc = -1;

    (void)relay;                  /* one process, one relay */
    pthread_mutex_lock(&m->lock);
    e = state_entry(m, account, 1);
    if (e != NULL) {
        for (size_t i = 0; i < e->nheld; i++)
            if (strcmp(e->held[i], qid) == 0) {
                rc = 0;
                goto out;
            }
        v = realloc(e->held, (e->nheld + 1) * sizeof(*v));
        if (v != NULL) {
            e->held = v;
            if ((v[e->nheld] = strdup(qid)) != NULL) {
                e->nheld++;
                rc = 0;
            }
        }
    }
out:
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static int mem_held_list(void *be, const char *account, const char *relay, char ***qids,
                         size_t *n)
{
    struct sg_store_memory *m = be;
    struct entry *e;
    int rc = 0;

    (void)relay;
    pthread_mutex_lock(&m->lock);
    e = state_entry(m, account, 0);
    if (e != NULL && e->nheld > 0) {
        *qids = calloc(e->nheld, sizeof(**qids));
        if (*qids == NULL)
            rc = -1;
        for (size_t i = 0; rc == 0 && i < e->nheld; i++)
            if (((*qids)[i] = strdup(e->held[i])) != NULL)
                (*n)++;
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static int mem_held_del(void *be, const char *account, const char *relay,
                        const char *const *qids, size_t n)
{
    struct sg_store_memory *m = be;
    struct entry *e;

    (void)relay;
    pthread_mutex_lock(&m->lock);
    e = state_entry(m, account, 0);
    for (size_t k = 0; e != NULL && k < n; k++)
        for (size_t i = 0; i < e->nheld; i++)
            if (strcmp(e->held[i], qids[k]) == 0) {
                free(e->held[i]);
                e->held[i] = e->held[--e->nheld];
                break;
            }
    pthread_mutex_unlock(&m->lock);
    return 0;
}

const struct sg_store_ops sg_store_memory_ops = {
    .name = "memory",
    .evidence = false,
    .decide = mem_decide,
    .usage = mem_usage,
    .reset = mem_reset,
    .state_get = mem_state_get,
    .state_set = mem_state_set,
    .lock = mem_lock,
    .evidence_json = mem_evidence_json,
    .held_add = mem_held_add,
    .held_list = mem_held_list,
    .held_del = mem_held_del,
    .close = mem_close,
};
