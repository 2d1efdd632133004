/*
 * sg_block.c - the block workflow's logic that needs no API call: the
 * evidence read as facts (spike, new client IPs and mailers), the draft
 * answers to the ticket, a strong password, the SASL map rewrite, audit.
 *
 * Must not: print a password anywhere (only sg_block_password's caller
 * decides to), or write a map file other than atomically.
 */
#include "sg_time.h"
#include "sg_block.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include <openssl/rand.h>

#include "sg_log.h"
#include "sg_run.h"
#include "sg_store.h"

#define HOUR_MS 3600000LL
#define SPIKE_MIN 10              /* an hour below this is never a spike */
#define SPIKE_FACTOR 3            /* ... nor below 3 times the usual hour */

/* --- analysis ------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_seen(const void *a, const void *b)
{
    const struct sg_block_seen *x = a, *y = b;
    return x->count > y->count ? -1 : x->count < y->count;
}

/* The seen list of the report, sorted by count; flags new ones. */
static struct sg_block_seen *seen_list(const struct sg_ev_seen *in, size_t nin, int64_t since,
                                       size_t *n, bool *older)
{
    struct sg_block_seen *v = calloc(nin + 1, sizeof(*v));

    *n = 0;
    if (v == NULL)
        return NULL;
    for (size_t i = 0; i < nin; i++) {
        struct sg_block_seen *s = &v[(*n)++];

        snprintf(s->name, sizeof(s->name), "%s", in[i].value ? in[i].value : "");
        s->count = in[i].count;
        s->first_seen_ms = in[i].first_seen_ms >= 0 ? in[i].first_seen_ms : -1;
        if (s->first_seen_ms >= 0 && s->first_seen_ms < since)
            *older = true;
    }
    qsort(v, *n, sizeof(*v), cmp_seen);
    return v;
}

int sg_block_analyse(const struct sg_evidence_report *ev, int64_t now_ms, int64_t since_ms,
                     struct sg_block_facts *f, char *err, size_t errlen)
{
    int64_t now_hour = now_ms / HOUR_MS;
    uint64_t before[64];
    size_t nbefore = 0;

    memset(f, 0, sizeof(*f));
    if (ev == NULL) {
        snprintf(err, errlen, "no evidence");
        return -1;
    }
    /* A period that starts after now (a `since` beyond now, or one that
     * wrapped around) is the empty period [now, now]: one hour shown. */
    if (since_ms > now_ms)
        since_ms = now_ms;
    f->now_ms = now_ms;
    f->since_ms = since_ms;
    f->first_hour = since_ms / HOUR_MS;
    if (now_hour - f->first_hour + 1 > SG_BLOCK_HOURS)
        f->first_hour = now_hour - SG_BLOCK_HOURS + 1;
    f->nhours = (size_t)(now_hour - f->first_hour + 1);    /* 1..SG_BLOCK_HOURS */

    for (size_t j = 0; j < ev->nhours; j++) {
        const struct sg_ev_hour *x = &ev->hours[j];

        if (x->hour >= f->first_hour && x->hour <= now_hour) {
            size_t i = (size_t)(x->hour - f->first_hour);
            f->period_msgs -= f->msgs[i];         /* an hour given twice: the last wins */
            f->period_rcpts -= f->rcpts[i];
            f->msgs[i] = x->messages;
            f->rcpts[i] = x->recipients;
            f->refused[i] = x->refused;
            f->period_msgs += f->msgs[i];
            f->period_rcpts += f->rcpts[i];
        } else if (x->hour < f->first_hour && x->messages > 0 && nbefore < 64) {
            before[nbefore++] = x->messages;
            f->have_baseline = true;
        }
    }
    if (nbefore == 0)             /* no history: the usual hour is the period's median */
        for (size_t i = 0; i < f->nhours && nbefore < 64; i++)
            if (f->msgs[i] > 0)
                before[nbefore++] = f->msgs[i];
    if (nbefore > 0) {
        qsort(before, nbefore, sizeof(before[0]), cmp_u64);
        f->baseline_per_hour = before[nbefore / 2];
    }
    {
        uint64_t thr = f->baseline_per_hour * SPIKE_FACTOR;
        int first = -1, last = -1;

        if (thr < SPIKE_MIN)
            thr = SPIKE_MIN;
        for (size_t i = 0; i < f->nhours; i++)
            if (f->msgs[i] > thr) {
                if (first < 0)
                    first = (int)i;
                last = (int)i;
            }
        if (first >= 0) {
            f->spike = true;
            f->spike_from_ms = (f->first_hour + first) * HOUR_MS;
            f->spike_to_ms = (f->first_hour + last + 1) * HOUR_MS;
            for (int i = first; i <= last; i++)
                f->spike_msgs += f->msgs[i];
        }
    }
    f->ips = seen_list(ev->ips, ev->nips, since_ms, &f->nips, &f->have_baseline);
    f->mailers = seen_list(ev->mailers, ev->nmailers, since_ms, &f->nmailers,
                           &f->have_baseline);
    for (size_t i = 0; f->have_baseline && i < f->nips; i++)
        if ((f->ips[i].is_new = f->ips[i].first_seen_ms >= since_ms))
            f->new_ips++;
    for (size_t i = 0; f->have_baseline && i < f->nmailers; i++)
        if ((f->mailers[i].is_new = f->mailers[i].first_seen_ms >= since_ms))
            f->new_mailers++;
    for (size_t j = 0; j < ev->ndomains; j++) {
        uint64_t c = ev->domains[j].count;
        size_t pos = f->ntop;
        while (pos > 0 && f->top_domain_count[pos - 1] < c)
            pos--;
        if (pos >= 5)
            continue;
        memmove(&f->top_domains[pos + 1], &f->top_domains[pos],
                (size_t)(4 - pos) * sizeof(f->top_domains[0]));
        memmove(&f->top_domain_count[pos + 1], &f->top_domain_count[pos],
                (size_t)(4 - pos) * sizeof(f->top_domain_count[0]));
        snprintf(f->top_domains[pos], sizeof(f->top_domains[pos]), "%s",
                 ev->domains[j].value ? ev->domains[j].value : "");
        f->top_domain_count[pos] = c;
        if (f->ntop < 5)
            f->ntop++;
    }
    f->from_mismatch = ev->from_mismatch;
    if (f->ips == NULL || f->mailers == NULL) {
        snprintf(err, errlen, "out of memory");
        sg_block_facts_free(f);
        return -1;
    }
    return 0;
}

void sg_block_facts_free(struct sg_block_facts *f)
{
    free(f->ips);
    free(f->mailers);
    f->ips = f->mailers = NULL;
}

void sg_block_spark(const uint64_t *v, size_t n, char *out, size_t size)
{
    static const char *bars[] = { "\u2581", "\u2582", "\u2583", "\u2584",
                                  "\u2585", "\u2586", "\u2587", "\u2588" };
    uint64_t max = 0;
    size_t o = 0;

    for (size_t i = 0; i < n; i++)
        if (v[i] > max)
            max = v[i];
    for (size_t i = 0; i < n && o + 4 < size; i++) {
        const char *b = v[i] == 0 ? " " : bars[v[i] * 7 / max];
        size_t len = strlen(b);
        memcpy(out + o, b, len);
        o += len;
    }
    out[o] = '\0';
}

bool sg_block_looks_legitimate(const struct sg_block_facts *f)
{
    return f->period_msgs > 0 && !f->spike && f->new_ips == 0 && f->new_mailers == 0;
}

/* --- the draft ----------------------------------------------------------- */

struct buf {
    char *s;
    size_t len, cap;
};

static void bprintf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->s == NULL)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        {
            size_t ncap = (b->cap + (size_t)n) * 2;
            char *ns = realloc(b->s, ncap);
            if (ns == NULL) {
                free(b->s);
                b->s = NULL;
                return;
            }
            b->s = ns;
            b->cap = ncap;
        }
    }
}

/* "1.2.3.4 (12 messages), 5.6.7.8 (3 messages)" for the new (or all) entries. */
static void list_seen(struct buf *b, const struct sg_block_seen *v, size_t n, bool only_new,
                      bool fr)
{
    size_t shown = 0;

    for (size_t i = 0; i < n && shown < 5; i++) {
        if (only_new && !v[i].is_new)
            continue;
        bprintf(b, "%s%s (%llu message%s)", shown ? ", " : "", v[i].name,
                (unsigned long long)v[i].count, v[i].count == 1 ? "" : "s");
        shown++;
    }
    if (shown == 0)
        bprintf(b, fr ? "aucun" : "none");
}

char *sg_block_draft(const struct sg_account *a, const struct sg_block_facts *f,
                     const struct sg_block_ticket_info *t, const char *const *redirections,
                     size_t nredir, bool redir_readable)
{
    struct buf b = { malloc(2048), 0, 2048 };
    bool fr = t->french, legit = sg_block_looks_legitimate(f);
    char t1[32], t2[32];

    sg_time_utc(t1, sizeof(t1), f->spike ? f->spike_from_ms : f->since_ms, SG_TIME_MINUTE);
    sg_time_utc(t2, sizeof(t2), f->spike ? f->spike_to_ms : f->now_ms, SG_TIME_MINUTE);
    if (fr)
        bprintf(&b, "Bonjour,\n\nCompte %s", a->address);
    else
        bprintf(&b, "Hello,\n\nAccount %s", a->address);
    if (t->number >= 0)
        bprintf(&b, fr ? ", ticket %lld" : ", ticket %lld", (long long)t->number);
    if (t->suspicious >= 0)
        bprintf(&b, fr ? " (%ld messages suspects signal\u00e9s)" : " (%ld suspicious messages reported)",
                t->suspicious);
    bprintf(&b, ".\n\n");

    /* 1. the sender */
    bprintf(&b, fr ? "1. \u00cates-vous l'exp\u00e9diteur des e-mails en question ?\n"
                   : "1. Are you the sender of the e-mails in question?\n");
    if (legit) {
        bprintf(&b, fr ? "Oui. Entre %s et %s, notre relais a envoy\u00e9 %llu messages "
                         "(%llu destinataires) pour ce compte, uniquement depuis des adresses IP "
                         "et des logiciels de messagerie connus, \u00e0 un volume habituel "
                         "(environ %llu messages par heure).\n"
                       : "Yes. Between %s and %s our relay sent %llu messages (%llu recipients) "
                         "for this account, only from known client IP addresses and mail "
                         "programs, at its usual volume (about %llu messages per hour).\n",
                t1, t2, (unsigned long long)f->period_msgs, (unsigned long long)f->period_rcpts,
                (unsigned long long)f->baseline_per_hour);
    } else if (f->period_msgs == 0) {
        bprintf(&b, fr ? "Non. Entre %s et %s, notre relais n'a envoy\u00e9 aucun message pour ce "
                         "compte : ces e-mails ne viennent pas de nous. Son mot de passe a "
                         "probablement \u00e9t\u00e9 d\u00e9rob\u00e9 ; nous le changeons. "
                         "[\u00e0 compl\u00e9ter]\n"
                       : "No. Between %s and %s our relay sent no mail at all for this account: "
                         "these messages did not come from us. Its password has probably leaked; "
                         "we are changing it. [to be completed]\n", t1, t2);
    } else {
        bprintf(&b, fr ? "Non. Entre %s et %s, notre relais a vu %llu messages pour ce compte "
                         "(d'habitude environ %llu par heure)"
                       : "No. Between %s and %s our relay saw %llu messages for this account "
                         "(usually about %llu per hour)",
                t1, t2, (unsigned long long)(f->spike ? f->spike_msgs : f->period_msgs),
                (unsigned long long)f->baseline_per_hour);
        if (f->new_ips) {
            bprintf(&b, fr ? ", depuis %zu nouvelle(s) adresse(s) IP : " :
                             ", from %zu new client IP address(es): ", f->new_ips);
            list_seen(&b, f->ips, f->nips, true, fr);
        }
        if (f->new_mailers) {
            bprintf(&b, fr ? ", avec un logiciel d'envoi inconnu jusque-l\u00e0 : "
                           : ", with a mail program not seen before: ");
            list_seen(&b, f->mailers, f->nmailers, true, fr);
        }
        bprintf(&b, fr ? ".\nNous avons identifi\u00e9 la source et pris les mesures suivantes : "
                         "[\u00e0 compl\u00e9ter : poste analys\u00e9 par l'antivirus, logiciel "
                         "corrig\u00e9, mot de passe chang\u00e9].\n"
                       : ".\nWe have identified the source and taken these measures: [to be "
                         "completed: machine scanned for viruses, software fixed, password "
                         "changed].\n");
    }
    /* 2. redirections */
    bprintf(&b, fr ? "\n2. Avez-vous une r\u00e8gle de redirection vers une autre adresse e-mail ?\n"
                   : "\n2. Do you have a redirection rule to another e-mail address?\n");
    if (!redir_readable)
        bprintf(&b, fr ? "[\u00e0 compl\u00e9ter : les redirections de cette offre ne sont pas "
                         "lisibles par l'API ; v\u00e9rifier dans l'espace client.]\n"
                       : "[to be completed: this offer's redirections could not be read through "
                         "the API; check in the Control Panel.]\n");
    else if (nredir == 0)
        bprintf(&b, fr ? "Non, aucune redirection n'est configur\u00e9e sur ce compte.\n"
                       : "No, there is no redirection rule on this account.\n");
    else {
        bprintf(&b, fr ? "Oui, vers : " : "Yes, to: ");
        for (size_t i = 0; i < nredir; i++)
            bprintf(&b, "%s%s", i ? ", " : "", redirections[i]);
        bprintf(&b, fr ? ". [\u00e0 compl\u00e9ter : est-elle voulue ?]\n"
                       : ". [to be completed: is it intended?]\n");
    }
    /* 3. replied to a spam: the postmaster's call */
    bprintf(&b, fr ? "\n3. Avez-vous r\u00e9pondu \u00e0 un spam ?\n[\u00e0 compl\u00e9ter "
                     "avec les utilisateurs.] Nos journaux montrent %llu message(s) dont l'en-t\u00eate "
                     "From: ne correspond pas au domaine du compte"
                   : "\n3. Have you replied to a spam?\n[to be completed with the users.] Our logs "
                     "show %llu message(s) whose From: header does not match the account's domain",
            (unsigned long long)f->from_mismatch);
    if (f->ntop) {
        bprintf(&b, fr ? " ; principaux domaines destinataires : " : "; top recipient domains: ");
        for (size_t i = 0; i < f->ntop; i++)
            bprintf(&b, "%s%s (%llu)", i ? ", " : "", f->top_domains[i],
                    (unsigned long long)f->top_domain_count[i]);
    }
    bprintf(&b, fr ? ".\n\nLe courrier du compte est retenu sur nos relais et sera envoy\u00e9 "
                     "d\u00e8s le d\u00e9blocage. Merci.\n"
                   : ".\n\nThe account's mail is held on our relays and will be sent once it is "
                     "unblocked. Thank you.\n");
    return b.s;
}

/* --- password ------------------------------------------------------------ */

static int rand_below(unsigned n, unsigned *out)
{
    unsigned char x;
    unsigned limit = 256 - 256 % n;

    do {
        if (RAND_bytes(&x, 1) != 1)
            return -1;
    } while (x >= limit);          /* no modulo bias */
    *out = x % n;
    return 0;
}

int sg_block_password(char *out, size_t len)
{
    static const char *classes[] = { "ABCDEFGHJKLMNPQRSTUVWXYZ", "abcdefghijkmnopqrstuvwxyz",
                                     "23456789", "-_.!#%+=" };
    static const char all[] = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.!#%+=";

    if (len < 12 || len > 30)
        return -1;
    for (size_t i = 0; i < len; i++) {
        const char *set = i < 4 ? classes[i] : all;
        unsigned r;
        if (rand_below((unsigned)strlen(set), &r) != 0)
            return -1;
        out[i] = set[r];
    }
    for (size_t i = len - 1; i > 0; i--) {     /* Fisher-Yates: classes anywhere */
        unsigned r;
        char c;
        if (rand_below((unsigned)i + 1, &r) != 0)
            return -1;
        c = out[i];
        out[i] = out[r];
        out[r] = c;
    }
    out[len] = '\0';
    return 0;
}

/* --- alerts -------------------------------------------------------------- */

void sg_block_summary(struct sg_store *st, const char *account, int64_t now_ms,
                      char *buf, size_t size)
{
    struct sg_evidence_report ev;
    struct sg_block_facts f;
    char err[128], ip[140], mua[140];
    int rc;

    if ((rc = sg_store_evidence_get(st, account, &ev)) == 0)
        rc = sg_block_analyse(&ev, now_ms, now_ms - 24 * HOUR_MS, &f, err, sizeof(err));
    sg_evidence_report_free(&ev);
    if (rc != 0) {
        snprintf(buf, size, "evidence=unavailable");
        return;
    }
    snprintf(buf, size, "messages_24h=%llu recipients_24h=%llu new_ips=%zu new_mailers=%zu "
             "spike=%s from_mismatch=%llu top_ip=%s top_mailer=%s",
             (unsigned long long)f.period_msgs, (unsigned long long)f.period_rcpts, f.new_ips,
             f.new_mailers, f.spike ? "yes" : "no", (unsigned long long)f.from_mismatch,
             sg_log_esc(ip, sizeof(ip), f.nips ? f.ips[0].name : NULL),
             sg_log_esc(mua, sizeof(mua), f.nmailers ? f.mailers[0].name : NULL));
    sg_block_facts_free(&f);
}

int sg_block_alert(const struct sg_settings *s, struct sg_store *st, const char *account,
                   enum sg_offer offer, const char *event, int64_t ticket,
                   const char *summary, const char *relay)
{
    char lock[512], owner[128], out[512], e[6][600];
    const char *env[6];
    struct timespec ts;
    int rc;

    if (s->nalert_command == 0)
        return -2;
    /* A fresh owner each time: the lock is taken only if nobody (not even
     * this relay) took it within alert.interval. */
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(lock, sizeof(lock), "alert:%s:%s", event, account);
    snprintf(owner, sizeof(owner), "%s:%ld:%ld.%09ld", relay, (long)getpid(), (long)ts.tv_sec,
             ts.tv_nsec);
    if (sg_store_lock(st, lock, owner, s->alert_interval_ms) == 0)
        return -2;                /* sent recently; a store error still alerts */
    snprintf(e[0], sizeof(e[0]), "SG_EVENT=%s", event);
    snprintf(e[1], sizeof(e[1]), "SG_ACCOUNT=%s", account);
    snprintf(e[2], sizeof(e[2]), "SG_OFFER=%s", sg_offer_name(offer));
    snprintf(e[3], sizeof(e[3]), "SG_TICKET=%lld", (long long)ticket);
    snprintf(e[4], sizeof(e[4]), "SG_RELAY=%s", relay);
    snprintf(e[5], sizeof(e[5]), "SG_SUMMARY=%s", summary ? summary : "");
    for (int i = 0; i < 6; i++)
        env[i] = e[i];
    rc = sg_run(s->alert_command, s->nalert_command, env, 6, NULL, 30, out, sizeof(out));
    if (rc != 0) {
        char esc[600];
        sg_log(LOG_ERR, "alert.command failed for event=%s (status %d): %s", event, rc,
               sg_log_esc(esc, sizeof(esc), out));
    }
    return rc;
}

/* --- audit --------------------------------------------------------------- */

void sg_block_audit(const char *who, const char *what, const char *account,
                    const char *detail)
{
    char w[200], a[400], d[800];

    sg_log(LOG_NOTICE, "audit: who=<%s> what=%s account=<%s> detail=%s",
           sg_log_esc(w, sizeof(w), who), what, sg_log_esc(a, sizeof(a), account),
           sg_log_escape_text(d, sizeof(d), detail ? detail : "-",
                              strlen(detail ? detail : "-")));
}

const char *sg_block_who(char *buf, size_t size)
{
    const char *sudo = getenv("SUDO_USER");
    struct passwd *pw = getpwuid(getuid());

    if (sudo != NULL && *sudo)
        snprintf(buf, size, "%s (sudo as %s)", sudo, pw ? pw->pw_name : "?");
    else
        snprintf(buf, size, "%s", pw ? pw->pw_name : "?");
    return buf;
}
