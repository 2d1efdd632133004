/*
 * sg_trace.c - the header sample of a spam ticket: parsing it (sg_trace.h).
 * Matching it against the records is in sg_trace_match.c, the renderings in
 * sg_trace_render.c.
 *
 * The body is first made plain (CRLF, HTML tags and entities), then read
 * line by line: quote marks ("> ", ">> ") taken off, folded headers joined,
 * each header block cut into samples when a header repeats. Everything is
 * bounded (SG_TRACE_* in the header): a field is cut, never overflowed, and
 * nothing is read past `len`.
 *
 * Must NOT: do I/O, read the clock, talk to the store (the caller's lookup
 * does), or trust a byte of the sample.
 */
#include "sg_trace.h"
#include "sg_trace_internal.h"

#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HDR_MAX 4096              /* an unfolded header value, cut */

/* --- small helpers ------------------------------------------------------- */

/* sg_trace_copy - n bytes of s into dst (size), cut, NUL-terminated, spaces trimmed */
void sg_trace_copy(char *dst, size_t size, const char *s, size_t n)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n >= size)
        n = size - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static bool ieq(const char *a, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(a, lit, n) == 0;
}

static bool has_ci(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);

    for (size_t i = 0; i + l <= n; i++)
        if (strncasecmp(s + i, lit, l) == 0)
            return true;
    return false;
}

/* --- 1. plain text: CRLF, HTML --------------------------------------------- */

static const char *const html_break[] = { "br", "p", "div", "tr", "li", "blockquote", "pre",
                                          "hr", "table", "h1", "h2", "h3", NULL };
static const char *const html_drop[] = { "span", "font", "b", "i", "u", "strong", "em", "a",
                                         "html", "body", "head", "meta", "tt", "code", "td",
                                         "th", "tbody", "thead", "small", "big", "center",
                                         "o:p", "style", "title", NULL };

static int tag_kind(const char *name, size_t n)   /* 1 break, 2 drop, 0 not HTML */
{
    for (size_t i = 0; html_break[i]; i++)
        if (ieq(name, n, html_break[i]))
            return 1;
    for (size_t i = 0; html_drop[i]; i++)
        if (ieq(name, n, html_drop[i]))
            return 2;
    return 0;
}

/* An HTML tag at s[0] == '<' (at most 200 bytes to its '>'): its length,
 * *kind set; 0 when it is not a known tag (a Message-ID, an address). */
static size_t html_tag(const char *s, size_t n, int *kind)
{
    size_t i = 1, name;

    if (i < n && s[i] == '/')
        i++;
    name = i;
    while (i < n && i < 16 && (isalnum((unsigned char)s[i]) || s[i] == ':'))
        i++;
    if (i == name || (*kind = tag_kind(s + name, i - name)) == 0)
        return 0;
    for (; i < n && i < 200; i++) {
        if (s[i] == '>')
            return i + 1;
        if (s[i] == '<')
            return 0;
    }
    return 0;
}

/* An entity at s[0] == '&': its length, the byte it stands for in *c
 * (non-ASCII code points become a space or '?'); 0 when not one. */
static size_t html_entity(const char *s, size_t n, char *c)
{
    static const struct { const char *name; char c; } named[] = {
        { "lt", '<' }, { "gt", '>' }, { "amp", '&' }, { "quot", '"' }, { "apos", '\'' },
        { "nbsp", ' ' }, { "#39", '\'' },
    };
    size_t i = 1;

    while (i < n && i < 10 && (isalnum((unsigned char)s[i]) || s[i] == '#'))
        i++;
    if (i >= n || s[i] != ';' || i == 1)
        return 0;
    for (size_t k = 0; k < sizeof(named) / sizeof(named[0]); k++)
        if (ieq(s + 1, i - 1, named[k].name)) {
            *c = named[k].c;
            return i + 1;
        }
    if (s[1] == '#') {
        long v = 0;
        bool hex = i > 2 && (s[2] == 'x' || s[2] == 'X');
        size_t d = hex ? 3 : 2;
        if (d >= i)
            return 0;
        for (size_t k = d; k < i; k++) {
            int x = hex ? (isxdigit((unsigned char)s[k]) ? (isdigit((unsigned char)s[k])
                      ? s[k] - '0' : (tolower((unsigned char)s[k]) - 'a' + 10)) : -1)
                        : (isdigit((unsigned char)s[k]) ? s[k] - '0' : -1);
            if (x < 0)
                return 0;
            v = v * (hex ? 16 : 10) + x;
            if (v > 0x10FFFF)
                return 0;
        }
        *c = (v >= 0x20 && v < 0x7f) ? (char)v : (v == 9 || v == 10 || v == 0xa0) ? ' ' : '?';
        return i + 1;
    }
    return 0;
}

static bool looks_html(const char *s, size_t n)
{
    return has_ci(s, n, "<br") || has_ci(s, n, "<p>") || has_ci(s, n, "<p ") ||
           has_ci(s, n, "</p>") || has_ci(s, n, "<div") || has_ci(s, n, "&lt;") ||
           has_ci(s, n, "&gt;") || has_ci(s, n, "&nbsp;");
}

/* plain - a NUL-terminated copy with LF line ends, HTML undone; *outlen. */
static char *plain(const char *s, size_t n, size_t *outlen)
{
    bool html = looks_html(s, n), at_break = false, pre = false;
    char *o = malloc(n + 1);
    size_t k = 0;

    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        size_t t;
        int kind;
        char c;

        if (html && at_break && (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r')) {
            i++;                  /* HTML: the source's layout after a break is no fold */
            continue;
        }
        at_break = false;
        if (ch == '\r') {
            o[k++] = '\n';
            i += (i + 1 < n && s[i + 1] == '\n') ? 2 : 1;
        } else if (html && ch == '<' && (t = html_tag(s + i, n - i, &kind)) > 0) {
            if (kind == 1) {
                o[k++] = '\n';
                at_break = true;
            }
            if (t > 4 && strncasecmp(s + i + 1, "pre", 3) == 0)
                pre = true;       /* <pre>: its own line ends count */
            else if (t > 5 && strncasecmp(s + i + 1, "/pre", 4) == 0)
                pre = false;
            i += t;
        } else if (html && ch == '&' && (t = html_entity(s + i, n - i, &c)) > 0) {
            o[k++] = c;
            i += t;
        } else if (html && ch == '\n') {
            o[k++] = pre ? '\n' : ' ';   /* HTML: only tags break lines, but in <pre> */
            i++;
        } else if (ch == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] == 0xa0) {
            o[k++] = ' ';         /* UTF-8 no-break space */
            i += 2;
        } else {
            o[k++] = ch == '\0' ? ' ' : (char)ch;
            i++;
        }
    }
    o[k] = '\0';
    *outlen = k;
    return o;
}

/* --- 2. dates -------------------------------------------------------------- */

static int64_t days_from_civil(int64_t y, int m, int d)    /* Howard Hinnant's */
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

struct cur {
    const char *s;
    size_t n, i;
};

static void skip_cfws(struct cur *c)    /* spaces, commas, (comments) */
{
    for (;;) {
        while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == ','))
            c->i++;
        if (c->i < c->n && c->s[c->i] == '(') {
            int depth = 0;
            for (; c->i < c->n; c->i++) {
                if (c->s[c->i] == '(')
                    depth++;
                else if (c->s[c->i] == ')' && --depth == 0) {
                    c->i++;
                    break;
                }
            }
            continue;
        }
        return;
    }
}

static int num(struct cur *c, int maxdigits, int *out)     /* digits read, 0 none */
{
    int d = 0, v = 0;

    while (c->i < c->n && d < maxdigits && isdigit((unsigned char)c->s[c->i])) {
        v = v * 10 + (c->s[c->i++] - '0');
        d++;
    }
    *out = v;
    return d;
}

static size_t word(struct cur *c)     /* letters at c->i */
{
    size_t j = c->i;

    while (j < c->n && isalpha((unsigned char)c->s[j]))
        j++;
    return j - c->i;
}

static int zone_minutes(struct cur *c, bool *ok)
{
    static const struct { const char *n; int m; } names[] = {
        { "UT", 0 }, { "UTC", 0 }, { "GMT", 0 }, { "Z", 0 }, { "EST", -300 }, { "EDT", -240 },
        { "CST", -360 }, { "CDT", -300 }, { "MST", -420 }, { "MDT", -360 }, { "PST", -480 },
        { "PDT", -420 }, { "CET", 60 }, { "CEST", 120 }, { "MET", 60 }, { "MEST", 120 },
        { "BST", 60 }, { "WET", 0 }, { "WEST", 60 },
    };
    size_t w;

    skip_cfws(c);
    *ok = true;
    if (c->i < c->n && (c->s[c->i] == '+' || c->s[c->i] == '-')) {
        int sign = c->s[c->i++] == '-' ? -1 : 1, hh, mm = 0;
        if (num(c, 2, &hh) != 2)
            return *ok = false, 0;
        if (c->i < c->n && c->s[c->i] == ':')
            c->i++;
        if (num(c, 2, &mm) == 1)
            return *ok = false, 0;
        if (hh > 23 || mm > 59)
            return *ok = false, 0;
        return sign * (hh * 60 + mm);
    }
    w = word(c);
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
        if (ieq(c->s + c->i, w, names[k].n))
            return names[k].m;
    return 0;                     /* missing or unknown (RFC 5322: treat as +0000) */
}

static int month_of(const char *s, size_t n)
{
    static const char m[] = "janfebmaraprmayjunjulaugsepoctnovdec";

    if (n < 3)
        return 0;
    for (int k = 0; k < 12; k++)
        if (strncasecmp(s, m + 3 * k, 3) == 0)
            return k + 1;
    return 0;
}

int64_t sg_trace_date(const char *s, size_t len)
{
    struct cur c = { s, len > 200 ? 200 : len, 0 };
    int day, mon, year, hh, mi, ss = 0, yd;
    size_t w;
    bool ok;

    if (s == NULL)
        return -1;
    skip_cfws(&c);
    if ((w = word(&c)) > 0 && month_of(c.s + c.i, w) == 0) {   /* weekday */
        c.i += w;
        skip_cfws(&c);
    }
    if (num(&c, 4, &day) == 4 && c.i < c.n && c.s[c.i] == '-') {   /* ISO 8601 */
        year = day;
        c.i++;
        if (num(&c, 2, &mon) != 2 || c.i >= c.n || c.s[c.i++] != '-' || num(&c, 2, &day) != 2)
            return -1;
        if (c.i < c.n && (c.s[c.i] == 'T' || c.s[c.i] == ' '))
            c.i++;
    } else {
        if (day == 0 && (w = word(&c)) > 0) {      /* "Dec 2 2026" (asctime-ish) */
            mon = month_of(c.s + c.i, w);
            c.i += w;
            skip_cfws(&c);
            if (num(&c, 2, &day) == 0)
                return -1;
        } else {
            skip_cfws(&c);
            while (c.i < c.n && (c.s[c.i] == '-' || c.s[c.i] == ' '))
                c.i++;
            w = word(&c);
            mon = month_of(c.s + c.i, w);
            c.i += w;
        }
        skip_cfws(&c);
        while (c.i < c.n && c.s[c.i] == '-')
            c.i++;
        if ((yd = num(&c, 4, &year)) == 0)
            return -1;
        if (yd <= 2)
            year += year < 50 ? 2000 : 1900;
        else if (yd == 3)
            year += 1900;
        skip_cfws(&c);
    }
    if (mon < 1 || mon > 12 || day < 1 || day > 31 || year < 1970 || year > 9999)
        return -1;
    if (num(&c, 2, &hh) == 0 || c.i >= c.n || c.s[c.i++] != ':' || num(&c, 2, &mi) != 2)
        return -1;
    if (c.i < c.n && c.s[c.i] == ':') {
        c.i++;
        if (num(&c, 2, &ss) != 2)
            return -1;
    }
    if (c.i < c.n && c.s[c.i] == '.')     /* fractions (ISO) */
        while (++c.i < c.n && isdigit((unsigned char)c.s[c.i]))
            ;
    if (hh > 23 || mi > 59 || ss > 60)
        return -1;
    int z = zone_minutes(&c, &ok);
    if (!ok)
        return -1;
    int64_t t = days_from_civil(year, mon, day) * 86400 + hh * 3600 + mi * 60 + ss - z * 60LL;
    return t < 0 ? -1 : t * 1000;
}

/* --- 3. headers ------------------------------------------------------------ */

/* The Message-ID's content: inside the first <...>, spaces removed. */
void sg_trace_msgid(char *dst, size_t size, const char *v, size_t n)
{
    const char *lt = memchr(v, '<', n), *end = v + n;
    size_t k = 0;

    if (lt != NULL) {
        const char *gt = memchr(lt, '>', (size_t)(end - lt));
        v = lt + 1;
        end = gt ? gt : end;
    }
    for (; v < end && k + 1 < size; v++)
        if (!isspace((unsigned char)*v) && *v != '<' && *v != '>')
            dst[k++] = *v;
    dst[k] = '\0';
}

/* The address inside [..] of s (comment or word): "IPv6:" taken off; only
 * hex digits, '.' and ':' accepted. */
static void ip_of(char *dst, size_t size, const char *s, size_t n)
{
    const char *lb = memchr(s, '[', n), *rb, *a;
    size_t k = 0;

    if (lb == NULL || (rb = memchr(lb, ']', (size_t)(s + n - lb))) == NULL)
        return;
    lb++;
    if (rb - lb > 5 && strncasecmp(lb, "IPv6:", 5) == 0)
        lb += 5;
    for (a = lb; a < rb; a++)
        if (!isxdigit((unsigned char)*a) && *a != '.' && *a != ':')
            return;
    for (a = lb; a < rb && k + 1 < size; a++)
        dst[k++] = *a;
    dst[k] = '\0';
}

enum rstate { R_NONE, R_FROM, R_BY, R_VIA, R_WITH, R_ID, R_FOR };

/* One Received: value (unfolded) into h; false when it has no ';' date part
 * (a hop cut off). */
static bool parse_received(struct sg_trace_hop *h, const char *v, size_t n)
{
    const char *semi = NULL;
    enum rstate st = R_NONE;
    size_t i = 0, clause;

    memset(h, 0, sizeof(*h));
    h->t_ms = -1;
    for (size_t k = n; k > 0; k--)
        if (v[k - 1] == ';') {
            semi = v + k - 1;
            break;
        }
    clause = semi ? (size_t)(semi - v) : n;
    if (semi)
        h->t_ms = sg_trace_date(semi + 1, n - clause - 1);
    while (i < clause) {
        if (v[i] == ' ' || v[i] == '\t') {
            i++;
        } else if (v[i] == '(') {           /* a comment: IP, rDNS, authenticated sender */
            size_t j = i + 1;
            int depth = 1;
            for (; j < clause && depth > 0; j++)
                depth += v[j] == '(' ? 1 : v[j] == ')' ? -1 : 0;
            const char *cm = v + i + 1;
            size_t cn = j - i - 1 - (depth == 0 ? 1 : 0);
            const char *au;
            if (cn > 21 && (au = memchr(cm, ':', cn)) != NULL && has_ci(cm, (size_t)(au - cm),
                                                                          "authenticated sender"))
                sg_trace_copy(h->auth, sizeof(h->auth), au + 1, cn - (size_t)(au + 1 - cm));
            else if (st == R_FROM && h->ip[0] == '\0' && memchr(cm, '[', cn)) {
                const char *lb = memchr(cm, '[', cn);
                ip_of(h->ip, sizeof(h->ip), cm, cn);
                if (h->from_rdns[0] == '\0')
                    sg_trace_copy(h->from_rdns, sizeof(h->from_rdns), cm, (size_t)(lb - cm));
            }
            i = j;
        } else {
            size_t j = i;
            while (j < clause && v[j] != ' ' && v[j] != '\t' && v[j] != '(')
                j++;
            const char *w = v + i;
            size_t wn = j - i;
            if (ieq(w, wn, "from"))
                st = R_FROM;
            else if (ieq(w, wn, "by"))
                st = R_BY;
            else if (ieq(w, wn, "via"))
                st = R_VIA;
            else if (ieq(w, wn, "with"))
                st = R_WITH;
            else if (ieq(w, wn, "id"))
                st = R_ID;
            else if (ieq(w, wn, "for"))
                st = R_FOR;
            else if (st == R_FROM && h->from[0] == '\0') {
                sg_trace_copy(h->from, sizeof(h->from), w, wn);
                if (w[0] == '[')
                    ip_of(h->ip, sizeof(h->ip), w, wn);
            } else if (st == R_BY && h->by[0] == '\0')
                sg_trace_copy(h->by, sizeof(h->by), w, wn);
            else if (st == R_WITH && h->with[0] == '\0')
                sg_trace_copy(h->with, sizeof(h->with), w, wn);
            else if (st == R_ID && h->id[0] == '\0')
                sg_trace_copy(h->id, sizeof(h->id), w, wn);
            i = j;
        }
    }
    return semi != NULL;
}

/* --- 4. samples ------------------------------------------------------------- */

enum hdr { H_OTHER, H_RECEIVED, H_MSGID, H_DATE, H_FROM, H_XMAILER, H_UA, H_SUBJECT, H_TO,
           H_NKINDS };

struct parser {
    struct sg_trace_samples *out;
    struct sg_trace_sample *cur;  /* NULL: no block open */
    bool seen[H_NKINDS];          /* in cur */
    bool nonrecv;                 /* cur has a header other than Received */
    bool last_hop_open;           /* cur's last hop had no date part */
    char name[72];
    size_t namelen;
    char val[HDR_MAX];
    size_t vlen;
    bool open;                    /* a header being read */
    bool cut_mark;                /* a "..." seen in cur */
};

static enum hdr kind_of(const char *n, size_t len)
{
    static const struct { const char *n; enum hdr k; } t[] = {
        { "received", H_RECEIVED }, { "message-id", H_MSGID }, { "date", H_DATE },
        { "from", H_FROM }, { "x-mailer", H_XMAILER }, { "user-agent", H_UA },
        { "subject", H_SUBJECT }, { "to", H_TO },
    };
    for (size_t k = 0; k < sizeof(t) / sizeof(t[0]); k++)
        if (ieq(n, len, t[k].n))
            return t[k].k;
    return H_OTHER;
}

/* close the current block: kept if it has a Message-ID or a hop */
static void end_block(struct parser *p)
{
    struct sg_trace_sample *s = p->cur;

    if (s == NULL)
        return;
    if (p->last_hop_open || p->cut_mark)
        s->truncated = true;
    if (s->msgid[0] == '\0' && s->nhops == 0) {
        p->out->unreadable++;     /* the slot is taken again by the next block */
    } else {
        p->out->n++;
    }
    p->cur = NULL;
    memset(p->seen, 0, sizeof(p->seen));
    p->nonrecv = p->last_hop_open = p->cut_mark = false;
}

static void header(struct parser *p, const char *name, size_t nlen, const char *v, size_t vn)
{
    enum hdr k = kind_of(name, nlen);
    struct sg_trace_sample *s;

    if (k == H_OTHER)
        return;
    if (p->cur && ((k == H_RECEIVED && p->nonrecv) || (k != H_RECEIVED && p->seen[k])))
        end_block(p);             /* a header repeats: the next sample */
    if (p->cur == NULL) {
        if (p->out->n >= SG_TRACE_MAX_SAMPLES) {
            p->out->more = true;
            return;
        }
        p->cur = &p->out->s[p->out->n];
        /* the hops are cleared one by one as they are read (parse_received) */
        memset(p->cur, 0, offsetof(struct sg_trace_sample, hops));
        p->cur->nhops = 0;
        p->cur->hops_cut = p->cur->truncated = false;
        p->cur->date_ms = -1;
    }
    s = p->cur;
    p->seen[k] = true;
    if (k != H_RECEIVED)
        p->nonrecv = true;
    switch (k) {
    case H_RECEIVED:
        if (s->nhops >= SG_TRACE_MAX_HOPS) {
            s->hops_cut = true;
            break;
        }
        p->last_hop_open = !parse_received(&s->hops[s->nhops++], v, vn);
        return;
    case H_MSGID:
        sg_trace_msgid(s->msgid, sizeof(s->msgid), v, vn);
        break;
    case H_DATE:
        s->date_seen = true;
        s->date_ms = sg_trace_date(v, vn);
        break;
    case H_FROM:
        sg_trace_copy(s->from, sizeof(s->from), v, vn);
        break;
    case H_XMAILER:
        sg_trace_copy(s->mailer, sizeof(s->mailer), v, vn);
        break;
    case H_UA:
        if (!p->seen[H_XMAILER])
            sg_trace_copy(s->mailer, sizeof(s->mailer), v, vn);
        break;
    default:
        break;
    }
    p->last_hop_open = false;
}

static void flush(struct parser *p)
{
    if (!p->open)
        return;
    p->open = false;
    /* a value cut by "..." or "[...]" (the ticket shortened it) */
    if (p->vlen >= 3 && (memcmp(p->val + p->vlen - 3, "...", 3) == 0 ||
                         memcmp(p->val + p->vlen - 3, "\xe2\x80\xa6", 3) == 0))
        p->cut_mark = true;
    header(p, p->name, p->namelen, p->val, p->vlen);
}

static void append(struct parser *p, const char *s, size_t n)
{
    if (p->vlen > 0 && p->vlen < sizeof(p->val) - 1)
        p->val[p->vlen++] = ' ';
    if (n > sizeof(p->val) - 1 - p->vlen)
        n = sizeof(p->val) - 1 - p->vlen;
    memcpy(p->val + p->vlen, s, n);
    p->vlen += n;
    /* drop trailing spaces */
    while (p->vlen > 0 && (p->val[p->vlen - 1] == ' ' || p->val[p->vlen - 1] == '\t'))
        p->vlen--;
}

static bool is_cut_line(const char *s, size_t n)
{
    return ieq(s, n, "...") || ieq(s, n, "[...]") || ieq(s, n, "(...)") ||
           ieq(s, n, "\xe2\x80\xa6") || ieq(s, n, "[\xe2\x80\xa6]") || has_ci(s, n, "[truncated]") ||
           has_ci(s, n, "[tronqu");
}

static void line(struct parser *p, const char *s, size_t n)
{
    size_t i = 0, q;

    /* quote marks: "> ", ">> ", "> > " */
    for (;;) {
        q = i;
        while (q < n && q - i < 3 && (s[q] == ' ' || s[q] == '\t'))
            q++;
        if (q < n && s[q] == '>') {
            i = q + 1;
            if (i < n && s[i] == ' ')
                i++;
            continue;
        }
        break;
    }
    s += i;
    n -= i;
    size_t t = 0;                 /* trimmed view */
    while (t < n && (s[t] == ' ' || s[t] == '\t'))
        t++;
    size_t e = n;
    while (e > t && (s[e - 1] == ' ' || s[e - 1] == '\t'))
        e--;
    if (t == e) {                 /* blank: a header ends, the sample goes on */
        flush(p);
        return;
    }
    if (is_cut_line(s + t, e - t)) {
        flush(p);
        if (p->cur)
            p->cut_mark = true;
        return;
    }
    if (t > 0) {                  /* folded */
        if (p->open)
            append(p, s + t, e - t);
        return;
    }
    size_t k = 0;
    while (k < e && k < 64 && (isalnum((unsigned char)s[k]) || s[k] == '-'))
        k++;
    size_t c = k;
    while (c < e && s[c] == ' ' && c - k < 2)
        c++;
    flush(p);
    if (k == 0 || c >= e || s[c] != ':')
        return;                   /* prose */
    memcpy(p->name, s, k);
    p->namelen = k;
    p->vlen = 0;
    p->open = true;
    append(p, s + c + 1, e - c - 1);
}

struct sg_trace_samples *sg_trace_parse(const char *body, size_t len)
{
    struct sg_trace_samples *out = malloc(sizeof(*out));   /* 90 KB: not all cleared */
    struct parser *p;
    char *txt;
    size_t n, at = 0;

    if (out == NULL)
        return NULL;
    out->n = out->unreadable = 0;
    out->more = out->input_cut = false;
    if (body == NULL)
        return out;
    if (len > SG_TRACE_INPUT_MAX) {
        len = SG_TRACE_INPUT_MAX;
        out->input_cut = true;
    }
    if ((p = calloc(1, sizeof(*p))) == NULL || (txt = plain(body, len, &n)) == NULL) {
        free(p);
        free(out);
        return NULL;
    }
    p->out = out;
    while (at < n) {
        char *nl = memchr(txt + at, '\n', n - at);
        size_t l = nl ? (size_t)(nl - (txt + at)) : n - at;
        line(p, txt + at, l);
        at += l + 1;
    }
    flush(p);
    if (out->input_cut && p->cur)
        p->cut_mark = true;
    end_block(p);
    free(txt);
    free(p);
    return out;
}
