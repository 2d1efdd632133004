/*
 * sg_conf_accounts.c - the lists of limits and accounts, and what can only
 * be checked once the whole file is read: the values an account inherits
 * from the top level (limits, on_block, auto_reply, mode), each sender
 * pattern owned by one account only, unique addresses (and the sorted
 * index sg_conf_find_account searches), a secret in a file others can
 * read, the relay's name.
 *
 * Must not: look up an account anywhere but in the snapshot's index
 * (sg_conf_find_account), or resolve an identity to an account: that is
 * policy (sg_policy_resolve), which also applies identity rules.
 */
#include "sg_conf_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Limits and accounts                                                       */

static bool list_of_groups(struct loader *L, const config_setting_t *m, const char *path,
                           const char *what)
{
    if (config_setting_is_list(m) ||
        (config_setting_type(m) == CONFIG_TYPE_ARRAY && config_setting_length(m) == 0))
        return true;
    sgc_problem(L, m, path, "must be a list ( { ... }, ... ) of %s (got %s)", what, sgc_type_name(m));
    return false;
}

static const char *where(char *buf, size_t n, struct loader *L,
                         const config_setting_t *first, const config_setting_t *here)
{
    const char *f1 = sgc_setting_file(L, first), *f2 = sgc_setting_file(L, here);

    if (strcmp(f1, f2) == 0)
        snprintf(buf, n, "line %u", config_setting_source_line(first));
    else
        snprintf(buf, n, "%s:%u", f1, config_setting_source_line(first));
    return buf;
}

void sgc_parse_limits(struct loader *L, const config_setting_t *m, const struct key *k,
                         void *base, const char *path)
{
    static const char *const units[SG_UNIT_COUNT] = {
        "messages", "recipients", "bytes", "distinct_recipients"
    };
    struct sg_limit *lim;
    int n;

    if (!list_of_groups(L, m, path, "limits"))
        return;
    n = config_setting_length(m);
    if (n > MAX_LIMITS)
        sgc_problem(L, m, path, "at most %d limits per list (got %d)", MAX_LIMITS, n);
    lim = sgc_array(L, (size_t)n, sizeof(*lim));
    if (lim == NULL)
        return;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(m, (unsigned)i);
        char epath[KEYLEN], npath[KEYLEN], w[KEYLEN];
        bool counted = false;

        sgc_key_elem(epath, sizeof(epath), path, e, "name");
        if (!config_setting_is_group(e)) {
            sgc_bad_type(L, e, epath, "a group { name = ...; window = ...; ... }");
            continue;
        }
        sgc_apply_defaults(sgc_limit_keys, &lim[i]);
        sgc_walk(L, e, sgc_limit_keys, &lim[i], epath);
        for (int u = 0; u < SG_UNIT_COUNT; u++)
            if (config_setting_get_member(e, units[u]) != NULL)
                counted = true;
        if (!counted)
            sgc_problem(L, e, epath, "needs at least one of messages, recipients, bytes, "
                    "distinct_recipients");
        for (int j = 0; j < i && lim[i].name; j++) {
            if (lim[j].name && strcasecmp(lim[j].name, lim[i].name) == 0) {
                const config_setting_t *first = config_setting_get_member(
                    config_setting_get_elem(m, (unsigned)j), "name");
                const config_setting_t *here = config_setting_get_member(e, "name");

                sgc_key_join(npath, sizeof(npath), epath, "name");
                sgc_problem(L, here, npath, "duplicate limit name \"%s\" (first at %s)",
                        lim[i].name, where(w, sizeof(w), L, first, here));
                break;
            }
        }
    }
    *AT(base, k->off, const struct sg_limit *) = lim;
    *AT(base, k->off2, size_t) = (size_t)n;
}

static void check_offer(struct loader *L, const config_setting_t *e, const char *epath,
                        const struct sg_account *a)
{
    static const char *const fields[] = { "organization", "service" };
    bool need[2] = { false, false };
    char path[KEYLEN];

    switch (a->offer) {
    case SG_OFFER_EXCHANGE:       need[0] = need[1] = true; break;
    case SG_OFFER_EMAILPRO:
    case SG_OFFER_MXPLAN:         need[1] = true; break;
    case SG_OFFER_MXPLAN_LEGACY:  break;
    default:                      return;    /* offer missing or wrong: said already */
    }
    for (int f = 0; f < 2; f++) {
        const config_setting_t *m = config_setting_get_member(e, fields[f]);

        sgc_key_join(path, sizeof(path), epath, fields[f]);
        if (need[f] && m == NULL)
            sgc_problem(L, e, path, "is required for offer %s", sg_offer_name(a->offer));
        else if (!need[f] && m != NULL)
            sgc_problem(L, m, path, "does not apply to offer %s", sg_offer_name(a->offer));
    }
}

void sgc_parse_accounts(struct loader *L, const config_setting_t *m, const struct key *k,
                           void *base, const char *path)
{
    struct sg_account *acc;
    int n;

    if (!list_of_groups(L, m, path, "accounts"))
        return;
    n = config_setting_length(m);
    acc = sgc_array(L, (size_t)n, sizeof(*acc));
    L->acct_grp = sgc_array(L, (size_t)n, sizeof(*L->acct_grp));
    if (acc == NULL || L->acct_grp == NULL)
        return;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(m, (unsigned)i);
        struct sg_account *a = &acc[i];
        char epath[KEYLEN];

        sgc_key_elem(epath, sizeof(epath), path, e, "address");
        if (!config_setting_is_group(e)) {
            sgc_bad_type(L, e, epath, "a group { address = ...; offer = ...; ... }");
            continue;
        }
        L->acct_grp[i] = e;
        sgc_apply_defaults(sgc_account_keys, a);
        sgc_walk(L, e, sgc_account_keys, a, epath);
        check_offer(L, e, epath, a);
        if (a->address != NULL) {
            char *addr = (char *)a->address;   /* our arena copy */
            char *at = strchr(addr, '@');

            sgc_lower(addr);
            a->local = sgc_strndup(L, addr, (size_t)(at - addr));
            a->domain = at + 1;
        }
    }
    *AT(base, k->off, const struct sg_account *) = acc;
    *AT(base, k->off2, size_t) = (size_t)n;
}

/* ------------------------------------------------------------------------ */
/* Cross-key checks and inherited values, once the whole file is read        */

struct sender_ref {
    const char *pattern;
    size_t acct;
    int idx;                      /* index in the file's senders list; -1 = address */
};

static int sender_ref_cmp(const void *a, const void *b)
{
    const struct sender_ref *x = a, *y = b;
    int c = strcmp(x->pattern, y->pattern);

    if (c != 0)
        return c;
    return x->acct < y->acct ? -1 : x->acct > y->acct;
}

static int addr_cmp(const void *a, const void *b)
{
    const struct sg_account *x = *(const struct sg_account *const *)a;
    const struct sg_account *y = *(const struct sg_account *const *)b;
    int c = strcmp(x->address, y->address);

    if (c != 0)
        return c;
    return x < y ? -1 : x > y;               /* file order among duplicates */
}

/* build_senders - address first, then the listed patterns (lower-cased when
 * identity.lowercase), each once. */
static void build_senders(struct loader *L, struct sg_account *a, struct sender_ref *refs,
                          size_t *nrefs, size_t ai)
{
    const char **v = sgc_array(L, a->nsenders + 1, sizeof(*v));
    size_t n = 0;

    if (v == NULL)
        return;
    v[n++] = a->address;
    refs[(*nrefs)++] = (struct sender_ref){ a->address, ai, -1 };
    for (size_t i = 0; i < a->nsenders; i++) {
        char *p = sgc_strdup(L, a->senders[i]);
        bool dup = false;

        if (p == NULL)
            return;
        if (L->conf->s.lowercase)
            sgc_lower(p);
        for (size_t j = 0; j < n && !dup; j++)
            dup = strcmp(v[j], p) == 0;
        if (!dup) {
            v[n++] = p;
            refs[(*nrefs)++] = (struct sender_ref){ p, ai, (int)i };
        }
    }
    a->senders = v;
    a->nsenders = n;
}

static void check_sender_owners(struct loader *L, struct sender_ref *refs, size_t nrefs)
{
    if (nrefs < 2)
        return;
    qsort(refs, nrefs, sizeof(*refs), sender_ref_cmp);
    for (size_t i = 1, first = 0; i < nrefs; i++) {
        const config_setting_t *g1, *g2, *at1, *at2;
        char p1[KEYLEN], p2[KEYLEN], w[KEYLEN], q[96];

        if (strcmp(refs[i].pattern, refs[first].pattern) != 0) {
            first = i;
            continue;
        }
        if (refs[i].idx < 0 && refs[first].idx < 0)
            continue;                  /* the same address twice: sgc_finish() says so */
        g1 = L->acct_grp[refs[first].acct];
        g2 = L->acct_grp[refs[i].acct];
        sgc_key_elem(p1, sizeof(p1), "accounts", g1, "address");
        sgc_key_elem(p2, sizeof(p2), "accounts", g2, "address");
        at1 = refs[first].idx < 0 ? config_setting_get_member(g1, "address") :
              config_setting_get_elem(config_setting_get_member(g1, "senders"),
                                      (unsigned)refs[first].idx);
        if (refs[i].idx < 0) {
            at2 = config_setting_get_member(g2, "address");
            strncat(p2, ".address", sizeof(p2) - strlen(p2) - 1);
        } else {
            size_t o = strlen(p2);

            at2 = config_setting_get_elem(config_setting_get_member(g2, "senders"),
                                          (unsigned)refs[i].idx);
            snprintf(p2 + o, sizeof(p2) - o, ".senders[%d]", refs[i].idx);
        }
        sgc_problem(L, at2, p2, "%s already belongs to %s (%s), which comes first",
                sgc_quote(q, sizeof(q), refs[i].pattern), p1, where(w, sizeof(w), L, at1, at2));
    }
}

/* A secret in the config (store.redis.password) must not sit in a file
 * every user can read. */
static void check_secret_file(struct loader *L, const char *key)
{
    const config_setting_t *m = config_lookup(&L->cf, key);
    const char *file = m ? config_setting_source_file(m) : NULL;
    struct stat st;

    if (file != NULL && stat(file, &st) == 0 && (st.st_mode & S_IROTH))
        sgc_problem(L, m, key, "is a secret, and %s is readable by every user; run: chmod o-r %s",
                sgc_setting_file(L, m), file);
}

/* fold_patterns - a pattern list made our own copy, lower-cased when
 * identity.lowercase. false when out of memory. */
static bool fold_patterns(struct loader *L, const char *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *p = sgc_strdup(L, v[i]);

        if (p == NULL)
            return false;
        if (L->conf->s.lowercase)
            sgc_lower(p);
        ((const char **)v)[i] = p;
    }
    return true;
}

void sgc_finish(struct loader *L)
{
    struct sg_settings *s = &L->conf->s;
    struct sg_account *acc = (struct sg_account *)s->accounts;
    const config_setting_t *root = config_root_setting(&L->cf);
    struct sender_ref *refs = NULL;
    size_t nrefs = 0, cap = 0;
    char host[256];

    check_secret_file(L, "store.redis.password");
    if (config_setting_get_member(root, "limits") == NULL) {
        s->limits = sgc_default_limits;
        s->nlimits = sgc_ndefault_limits;
    }
    if (!fold_patterns(L, s->allow, s->nallow) || !fold_patterns(L, s->verp, s->nverp))
        return;

    for (size_t i = 0; i < s->naccounts; i++)
        cap += acc[i].nsenders + 1;
    if (cap > 0 && (refs = calloc(cap, sizeof(*refs))) == NULL) {
        L->oom = true;
        return;
    }
    for (size_t i = 0; i < s->naccounts; i++) {
        const config_setting_t *g = L->acct_grp[i];
        struct sg_account *a = &acc[i];

        if (g == NULL || a->address == NULL)
            continue;                          /* reported already */
        if (config_setting_get_member(g, "limits") == NULL) {
            a->limits = s->limits;
            a->nlimits = s->nlimits;
        }
        if (config_setting_get_member(g, "on_block") == NULL)
            a->on_block = s->on_block;
        if (config_setting_get_member(g, "auto_reply") == NULL)
            a->auto_reply = s->auto_reply;
        if (config_setting_get_member(g, "mode") == NULL)
            a->observe = s->observe;
        build_senders(L, a, refs, &nrefs, i);
    }
    check_sender_owners(L, refs, nrefs);
    free(refs);

    /* Addresses: unique, and the sorted index for sg_conf_find_account. */
    if (s->naccounts > 0) {
        const struct sg_account **idx = sgc_array(L, s->naccounts, sizeof(*idx));
        size_t n = 0;

        if (idx == NULL)
            return;
        for (size_t i = 0; i < s->naccounts; i++)
            if (acc[i].address != NULL)
                idx[n++] = &acc[i];
        qsort(idx, n, sizeof(*idx), addr_cmp);
        for (size_t i = 1, first = 0; i < n; i++) {
            const config_setting_t *a1, *a2;
            char path[KEYLEN], w[KEYLEN];

            if (strcmp(idx[i]->address, idx[first]->address) != 0) {
                first = i;
                continue;
            }
            a1 = config_setting_get_member(L->acct_grp[idx[first] - acc], "address");
            a2 = config_setting_get_member(L->acct_grp[idx[i] - acc], "address");
            sgc_key_elem(path, sizeof(path), "accounts", L->acct_grp[idx[i] - acc], "address");
            strncat(path, ".address", sizeof(path) - strlen(path) - 1);
            sgc_problem(L, a2, path, "duplicate address \"%s\" (first at %s)", idx[i]->address,
                    where(w, sizeof(w), L, a1, a2));
        }
        L->conf->by_address = idx;
        L->conf->naddr = n;
    }

    if (s->redis.unix_path != NULL && s->redis.sentinel_master != NULL)
        sgc_problem(L, config_lookup(&L->cf, "store.redis.unix"), "store.redis.unix",
                "cannot be used with store.redis.sentinel");

    if (s->relay_name == NULL) {
        if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        s->relay_name = sgc_strdup(L, host);
    }
}

/* ------------------------------------------------------------------------ */
/* Lookup                                                                    */

static int find_cmp(const void *key, const void *elem)
{
    return strcasecmp(key, (*(const struct sg_account *const *)elem)->address);
}

const struct sg_account *sg_conf_find_account(const sg_conf_t *conf, const char *address)
{
    const struct sg_account *const *hit;

    if (conf == NULL || address == NULL || conf->by_address == NULL)
        return NULL;
    hit = bsearch(address, conf->by_address, conf->naddr, sizeof(*conf->by_address), find_cmp);
    return hit ? *hit : NULL;
}
