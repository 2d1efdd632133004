/*
 * sg_store_memory.c - the in-process store: per account, for each limit
 * the buckets in use (sliding window counting its oldest bucket whole,
 * held sparsely: an identity that sent one message costs one bucket per
 * limit) and an exact set of recipient hashes; the block state when set.
 * At most max_identities implicit identities: past that, new ones share
 * the overflow account (configured accounts are never refused an entry).
 *
 * One relay only: nothing here is shared with other processes. Used as the
 * "memory" backend and as the fallback while Redis is unreachable.
 * Must not: block on anything but its own mutex, or keep idle entries
 * forever (a sweep frees what no window can still see).
 */
#include "sg_store_backend.h"
#include "sg_log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SWEEP_EVERY_MS 60000u
#define OVERFLOW_LOG_S 600
#define MAX_DEFAULT_MIN 10000u
#define MAX_DEFAULT_MAX 4000000u

struct bucket {
    int64_t idx;                  /* bucket number = time / width */
    uint64_t u[SG_UNIT_DISTINCT]; /* messages, recipients, bytes */
};

struct dset {                     /* open addressing: hash -> last seen */
    uint64_t *keys;               /* 0 = empty slot (hash 0 is remapped to 1) */
    uint64_t *seen;
    size_t cap, used;
};

struct lim {                      /* one limit's window of an account */
    uint64_t id;                  /* hash of the limit's name and window */
    uint64_t warned_until_ms;
    struct bucket *b;             /* only the buckets in use, in no order */
    uint32_t nb, capb;
    struct dset *distinct;        /* NULL unless distinct recipients are capped */
};

struct extra {                    /* what few entries have: state, held ids, a lock */
    struct sg_account_state state;
    char **held;                  /* queue ids held on lockdown */
    size_t nheld;
    char lock_owner[128];
    uint64_t lock_until_ms;
};

struct entry {                    /* one account (or one lock) */
    struct entry *next;
    uint64_t hash;
    uint64_t touched_ms;
    uint64_t keep_ms;             /* how long after touched its windows still matter */
    struct extra *x;              /* NULL for a plain account: never swept while set */
    struct lim *lims;
    uint16_t nlims;
    bool implicit;                /* counts against max_identities */
    char key[];                   /* 'a' account | 'l' lock name, NUL-terminated */
};

struct sg_store_memory {
    pthread_mutex_t lock;
    sg_clock_fn clock;
    void *clock_ctx;
    struct entry **tab;
    size_t nbuckets, count;
    size_t nimplicit;             /* entries of implicit identities */
    uint64_t last_sweep_ms;
    long overflow_log;            /* sg_log_ratelimit stamp */
    uint64_t overflowed;          /* new identities sent to the overflow account */
};

size_t sg_store_memory_default_max(void)
{
    static _Atomic size_t cached;  /* the machine's memory does not change */
    size_t v = cached;

    if (v == 0) {
        long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
        uint64_t n = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize / 8192u : 0;

        v = n < MAX_DEFAULT_MIN ? MAX_DEFAULT_MIN : n > MAX_DEFAULT_MAX ? MAX_DEFAULT_MAX
                                                                        : (size_t)n;
        cached = v;
    }
    return v;
}

/* FNV-1a. */
static uint64_t key_hash(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t limit_id(const struct sg_limit *l)
{
    char buf[32];
    const char *name = l->name ? l->name : "";
    uint64_t h = key_hash(name, strlen(name) + 1);
    int n = snprintf(buf, sizeof(buf), "%llu", (unsigned long long)l->window_ms);

    for (int i = 0; i < n; i++)
        h = (h ^ (unsigned char)buf[i]) * 1099511628211ULL;
    return h;
}

static void dset_free(struct dset *d)
{
    if (d != NULL) {
        free(d->keys);
        free(d->seen);
        free(d);
    }
}

static void lims_free(struct entry *e)
{
    for (size_t i = 0; i < e->nlims; i++) {
        free(e->lims[i].b);
        dset_free(e->lims[i].distinct);
    }
    free(e->lims);
    e->lims = NULL;
    e->nlims = 0;
}

static void entry_free(struct entry *e)
{
    lims_free(e);
    if (e->x != NULL) {
        for (size_t i = 0; i < e->x->nheld; i++)
            free(e->x->held[i]);
        free(e->x->held);
        free(e->x);
    }
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

/* Entry of type 'a' (account) or 'l' (lock) named name. */
static struct entry *lookup(struct sg_store_memory *m, char type, const char *name, int create)
{
    size_t n = strlen(name), klen = n + 2;
    char stackkey[512], *key = klen <= sizeof(stackkey) ? stackkey : malloc(klen);
    struct entry *e = NULL;
    uint64_t h;

    if (key == NULL)
        return NULL;
    key[0] = type;
    memcpy(key + 1, name, n + 1);
    h = key_hash(key, klen);
    for (e = m->tab[h & (m->nbuckets - 1)]; e != NULL; e = e->next)
        if (e->hash == h && memcmp(e->key, key, klen) == 0)
            goto out;
    if (!create)
        goto out;
    e = calloc(1, sizeof(*e) + klen);
    if (e == NULL)
        goto out;
    e->hash = h;
    memcpy(e->key, key, klen);
    e->next = m->tab[h & (m->nbuckets - 1)];
    m->tab[h & (m->nbuckets - 1)] = e;
    if (++m->count > m->nbuckets)
        table_grow(m);
out:
    if (key != stackkey)
        free(key);
    return e;
}

static struct extra *extra_of(struct entry *e)
{
    if (e != NULL && e->x == NULL)
        e->x = calloc(1, sizeof(*e->x));
    return e ? e->x : NULL;
}

static void unlink_free(struct sg_store_memory *m, struct entry **pp)
{
    struct entry *e = *pp;

    *pp = e->next;
    if (e->implicit)
        m->nimplicit--;
    entry_free(e);
    m->count--;
}

/* Free what no window can see any more. Called under the lock. */
static void sweep(struct sg_store_memory *m, uint64_t now)
{
    if (now - m->last_sweep_ms < SWEEP_EVERY_MS && now >= m->last_sweep_ms)
        return;
    m->last_sweep_ms = now;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct entry **pp = &m->tab[i];
        while (*pp != NULL) {
            struct entry *e = *pp;
            if (e->touched_ms + e->keep_ms < now && e->lims != NULL)
                lims_free(e);
            if (e->x == NULL && e->lims == NULL) {
                unlink_free(m, pp);
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

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t window_lo(const struct sg_limit *l, uint64_t now)
{
    return floor_div((int64_t)now - (int64_t)l->window_ms, (int64_t)bucket_width(l->window_ms));
}

/* Sum per unit of the buckets that intersect [now - T, now]. */
static void window_sum(const struct lim *x, const struct sg_limit *l, uint64_t now,
                       uint64_t sum[SG_UNIT_DISTINCT])
{
    int64_t w = (int64_t)bucket_width(l->window_ms);
    int64_t lo = window_lo(l, now);
    int64_t hi = floor_div((int64_t)now, w);

    memset(sum, 0, sizeof(uint64_t) * SG_UNIT_DISTINCT);
    for (size_t i = 0; i < x->nb; i++) {
        const struct bucket *b = &x->b[i];
        if (b->idx >= lo && b->idx <= hi)
            for (int u = 0; u < SG_UNIT_DISTINCT; u++)
                sum[u] += b->u[u];
    }
}

static int cmp_bucket(const void *a, const void *b)
{
    int64_t x = ((const struct bucket *)a)->idx, y = ((const struct bucket *)b)->idx;
    return x < y ? -1 : x > y;
}

/* When will enough old buckets stop counting that `need` units of unit u
 * are released? A bucket k stops counting at (k+1)*w + T. */
static uint64_t retry_after(const struct lim *x, const struct sg_limit *l, uint64_t now,
                            int u, uint64_t need)
{
    int64_t w = (int64_t)bucket_width(l->window_ms);
    int64_t lo = window_lo(l, now);
    int64_t hi = floor_div((int64_t)now, w);
    struct bucket in[SG_STORE_BUCKETS + 2];
    size_t n = 0;
    uint64_t released = 0;

    for (size_t i = 0; i < x->nb && n < sizeof(in) / sizeof(in[0]); i++)
        if (x->b[i].idx >= lo && x->b[i].idx <= hi)
            in[n++] = x->b[i];
    qsort(in, n, sizeof(in[0]), cmp_bucket);
    for (size_t i = 0; i < n; i++) {
        released += in[i].u[u];
        if (released >= need) {
            int64_t at = (in[i].idx + 1) * w + (int64_t)l->window_ms;
            return at > (int64_t)now ? (uint64_t)(at - (int64_t)now) : 1;
        }
    }
    return l->window_ms;          /* not reachable when need <= used */
}

/* Charge bucket k; buckets that no longer count make room first. */
static int bucket_add(struct lim *x, const struct sg_limit *l, uint64_t now,
                      const uint64_t units[SG_UNIT_COUNT])
{
    int64_t k = floor_div((int64_t)now, (int64_t)bucket_width(l->window_ms));
    int64_t lo = window_lo(l, now);
    struct bucket *b = NULL;

    for (uint32_t i = 0; i < x->nb;) {
        if (x->b[i].idx == k) {
            b = &x->b[i];
            break;
        }
        if (x->b[i].idx < lo)
            x->b[i] = x->b[--x->nb];
        else
            i++;
    }
    if (b == NULL) {
        if (x->nb == x->capb) {
            uint32_t cap = x->capb ? x->capb * 2 : 1;
            struct bucket *nbk = realloc(x->b, cap * sizeof(*nbk));
            if (nbk == NULL)
                return -1;
            x->b = nbk;
            x->capb = cap;
        }
        b = &x->b[x->nb++];
        memset(b, 0, sizeof(*b));
        b->idx = k;
    }
    for (int u = 0; u < SG_UNIT_DISTINCT; u++)
        b->u[u] += units[u];
    return 0;
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
static int distinct_count(struct lim *x, const struct sg_limit *l, uint64_t now,
                          const struct sg_charge *c, uint64_t *inwin, uint64_t *fresh)
{
    uint64_t oldest = now >= l->window_ms ? now - l->window_ms : 0;

    if (x->distinct == NULL && (x->distinct = calloc(1, sizeof(*x->distinct))) == NULL)
        return -1;
    if (drebuild(x->distinct, oldest, c->nrcpt_hashes) < 0)
        return -1;
    *inwin = x->distinct->used;
    *fresh = 0;
    for (size_t i = 0; i < c->nrcpt_hashes; i++) {
        size_t j = dfind(x->distinct, dkey(c->rcpt_hashes[i]));
        if (x->distinct->keys[j] == 0)
            (*fresh)++;
    }
    return 0;
}

static void distinct_commit(struct lim *x, uint64_t now, const struct sg_charge *c)
{
    struct dset *d = x->distinct;

    for (size_t i = 0; d != NULL && i < c->nrcpt_hashes; i++) {
        uint64_t h = dkey(c->rcpt_hashes[i]);
        size_t j = dfind(d, h);
        if (d->keys[j] == 0) {
            d->keys[j] = h;
            d->used++;
        }
        d->seen[j] = now;
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

/* The window of limit l in account entry e (created when asked). */
static struct lim *lim_of(struct entry *e, const struct sg_limit *l, int create)
{
    uint64_t id = limit_id(l);
    struct lim *v;

    for (size_t i = 0; i < e->nlims; i++)
        if (e->lims[i].id == id)
            return &e->lims[i];
    if (!create || e->nlims == UINT16_MAX)
        return NULL;
    v = realloc(e->lims, (e->nlims + 1u) * sizeof(*v));
    if (v == NULL)
        return NULL;
    e->lims = v;
    memset(&v[e->nlims], 0, sizeof(v[0]));
    v[e->nlims].id = id;
    return &v[e->nlims++];
}

/* The account entry a decision charges. An implicit identity not yet known
 * while max of them are held is charged to the overflow account (nothing
 * new is allocated for it). */
static struct entry *account_entry(struct sg_store_memory *m, const char *account,
                                   const struct sg_charge *c, struct sg_store_result *out)
{
    struct entry *e = lookup(m, 'a', account, 0);
    size_t max;

    if (e != NULL)
        return e;
    if (!c->implicit)
        return lookup(m, 'a', account, 1);
    max = c->implicit_max ? c->implicit_max : sg_store_memory_default_max();
    if (m->nimplicit >= max) {
        out->overflow = true;
        m->overflowed++;
        if (sg_log_ratelimit(&m->overflow_log, OVERFLOW_LOG_S))
            sg_log(LOG_WARNING, "store=memory event=overflow max_identities=%zu "
                   "overflowed=%llu: new implicit identities share the account <%s> "
                   "with the default limits (throttled together) until older ones "
                   "expire; raise store.memory.max_identities if this is not a flood",
                   max, (unsigned long long)m->overflowed, SG_STORE_OVERFLOW_ACCOUNT);
        return lookup(m, 'a', SG_STORE_OVERFLOW_ACCOUNT, 1);
    }
    e = lookup(m, 'a', account, 1);
    if (e != NULL) {
        e->implicit = true;
        m->nimplicit++;
        out->new_identity = true;
    }
    return e;
}

/* Record a held queue id (m->lock held). 0 or -1. */
static int held_add_locked(struct sg_store_memory *m, const char *account, const char *qid)
{
    struct extra *e = extra_of(lookup(m, 'a', account, 1));
    char **v;

    if (e == NULL)
        return -1;
    for (size_t i = 0; i < e->nheld; i++)
        if (strcmp(e->held[i], qid) == 0)
            return 0;
    v = realloc(e->held, (e->nheld + 1) * sizeof(*v));
    if (v == NULL)
        return -1;
    e->held = v;
    if ((v[e->nheld] = strdup(qid)) == NULL)
        return -1;
    e->nheld++;
    return 0;
}

static int mem_decide(void *be, const char *account, const struct sg_limit *limits,
                      size_t nlimits, const struct sg_charge *c,
                      const struct sg_evidence *ev, bool charge_refused,
                      struct sg_store_result *out)
{
    struct sg_store_memory *m = be;
    struct lim *xs[SG_STORE_MAX_LIMITS];
    struct entry *e;
    uint64_t now = m->clock(m->clock_ctx);
    double fullest = -1.0;
    int over = 0;

    pthread_mutex_lock(&m->lock);
    sweep(m, now);
    e = account_entry(m, account, c, out);
    if (e == NULL)
        goto fail;
    out->lockdown = e->x != NULL && e->x->state.blocked;
    e->touched_ms = now;
    for (size_t i = 0; i < nlimits; i++)        /* first create: lims may move */
        if (lim_of(e, &limits[i], 1) == NULL)
            goto fail;
    for (size_t i = 0; i < nlimits; i++) {
        const struct sg_limit *l = &limits[i];
        uint64_t sum[SG_UNIT_DISTINCT], dist = 0, fresh = 0;
        uint64_t keep = l->window_ms + bucket_width(l->window_ms);

        xs[i] = lim_of(e, l, 0);
        if (keep > e->keep_ms)
            e->keep_ms = keep;
        window_sum(xs[i], l, now, sum);
        if (l->cap[SG_UNIT_DISTINCT] && distinct_count(xs[i], l, now, c, &dist, &fresh) < 0)
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
                    out->retry_after_ms = retry_after(xs[i], l, now, u, used + cost - l->cap[u]);
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

            if (bucket_add(xs[i], l, now, c->units) < 0)
                goto fail;
            if (l->cap[SG_UNIT_DISTINCT])
                distinct_commit(xs[i], now, c);
            if (over)
                continue;
            window_sum(xs[i], l, now, sum);
            for (int u = 0; u < SG_UNIT_COUNT; u++) {
                uint64_t used = u == SG_UNIT_DISTINCT
                                ? (xs[i]->distinct ? xs[i]->distinct->used : 0) : sum[u];
                if (l->cap[u] && (double)used >= l->warn_at * (double)l->cap[u] &&
                    now >= xs[i]->warned_until_ms) {
                    xs[i]->warned_until_ms = now + l->window_ms;
                    out->warn_mask |= 1u << i;
                    break;
                }
            }
        }
    }
    if (!over)
        out->status = SG_STORE_OK;
    /* held on lockdown: its queue id, under the same lock (one relay) */
    if (out->lockdown && ev != NULL && ev->hold_on_lockdown && ev->qid != NULL &&
        ev->qid[0] != '\0')
        out->held = held_add_locked(m, account, ev->qid) == 0;
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
    struct entry *e;

    pthread_mutex_lock(&m->lock);
    e = lookup(m, 'a', account, 0);
    for (size_t i = 0; e != NULL && i < nlimits; i++) {
        struct lim *x = lim_of(e, &limits[i], 0);
        uint64_t sum[SG_UNIT_DISTINCT];
        uint64_t oldest = now >= limits[i].window_ms ? now - limits[i].window_ms : 0;

        if (x == NULL)
            continue;
        window_sum(x, &limits[i], now, sum);
        memcpy(usage[i].used, sum, sizeof(sum));
        for (size_t j = 0; x->distinct != NULL && j < x->distinct->cap; j++)
            if (x->distinct->keys[j] != 0 && x->distinct->seen[j] >= oldest)
                usage[i].used[SG_UNIT_DISTINCT]++;
    }
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static int mem_reset(void *be, const char *account)
{
    struct sg_store_memory *m = be;
    struct entry *e;

    pthread_mutex_lock(&m->lock);
    e = lookup(m, 'a', account, 0);
    if (e != NULL)
        lims_free(e);             /* the entry itself goes at the next sweep */
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static int mem_state_get(void *be, const char *account, struct sg_account_state *out)
{
    struct sg_store_memory *m = be;
    struct entry *e;

    pthread_mutex_lock(&m->lock);
    e = lookup(m, 'a', account, 0);
    if (e != NULL && e->x != NULL)
        *out = e->x->state;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

static int mem_state_cas(void *be, const char *account, uint64_t expect_version,
                         const struct sg_account_state *next, struct sg_account_state *cur)
{
    struct sg_store_memory *m = be;
    struct extra *x;
    int rc;

    pthread_mutex_lock(&m->lock);
    x = extra_of(lookup(m, 'a', account, 1));
    if (x == NULL) {
        rc = -1;
    } else if (x->state.version != expect_version) {
        if (x->state.version != 0)
            *cur = x->state;
        rc = 0;
    } else {
        x->state = *next;
        x->state.version = expect_version + 1;
        *cur = x->state;
        rc = 1;
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

/* Locks share the table: entries of type 'l', never swept. */
static int mem_lock(void *be, const char *name, const char *owner, uint64_t ttl_ms)
{
    struct sg_store_memory *m = be;
    uint64_t now = m->clock(m->clock_ctx);
    struct extra *e;
    int rc;

    pthread_mutex_lock(&m->lock);
    e = extra_of(lookup(m, 'l', name, 1));
    if (e == NULL) {
        pthread_mutex_unlock(&m->lock);
        return -1;
    }
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

static int mem_held_add(void *be, const char *account, const char *relay, const char *qid)
{
    struct sg_store_memory *m = be;
    int rc;

    (void)relay;                  /* one process, one relay */
    pthread_mutex_lock(&m->lock);
    rc = held_add_locked(m, account, qid);
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static int mem_held_list(void *be, const char *account, const char *relay, char ***qids,
                         size_t *n)
{
    struct sg_store_memory *m = be;
    struct entry *a;
    struct extra *e;
    int rc = 0;

    (void)relay;
    pthread_mutex_lock(&m->lock);
    a = lookup(m, 'a', account, 0);
    e = a ? a->x : NULL;
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
    struct entry *a;
    struct extra *e;

    (void)relay;
    pthread_mutex_lock(&m->lock);
    a = lookup(m, 'a', account, 0);
    e = a ? a->x : NULL;
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
    .state_cas = mem_state_cas,
    .lock = mem_lock,
    .evidence_get = NULL,         /* records none: an empty report */
    /* no trace index either: every lookup says "nothing recorded" */
    .trace_by_msgid = NULL,
    .trace_by_qid = NULL,
    .trace_same_hour = NULL,
    .trace_oldest = NULL,
    .held_add = mem_held_add,
    .held_list = mem_held_list,
    .held_del = mem_held_del,
    .close = mem_close,
};
