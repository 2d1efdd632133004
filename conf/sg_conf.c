/*
 * sg_conf.c - the configuration file: parse it (libconfig), check it
 * against one table of keys, copy it into an immutable snapshot, share it.
 *
 * Every key sendguard knows is in the tables below, with its type, default
 * and bounds; any other key is an error. Problems are collected, sorted by
 * file and line, and reported as "FILE:LINE: key: problem"; a single one
 * makes the load fail. Keys are written as paths: "milter.socket",
 * "limits[hourly].window", "accounts[sales@example.com].senders[1]" (an
 * element is named by its name/address when it has a usable one, else by
 * its 0-based index: "limits[2]").
 *
 * The snapshot owns every byte it points to: strings and arrays are copied
 * into its arena and the libconfig tree is destroyed before sg_conf_load
 * returns. Built-in defaults point to static data.
 *
 * Must not: log (problems go to the caller's sink), do I/O beyond reading
 * the config files, or print the value of a secret (store.redis.password)
 * in any message.
 *
 * BUGS: libconfig 1.5 silently truncates an integer literal that does not
 * fit in 32 bits unless it ends in L; the files are re-scanned for such
 * literals (scan_wide_ints) so that a quota never shrinks unnoticed.
 */
#include "sg_conf.h"
#include "sg_log.h"

#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LIMITS   32          /* = SG_STORE_MAX_LIMITS in policy/sg_store.h */
#define MAX_ADDRESS  320         /* = SG_ADDR_MAX in policy/sg_policy.h */
#define KEYLEN       256         /* a key path in a message */

_Static_assert(sizeof(enum sg_action) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum sg_offer) == sizeof(int), "enums are stored as int");

/* ------------------------------------------------------------------------ */
/* The snapshot                                                              */

struct chunk {
    struct chunk *next;
    max_align_t data[];
};

struct sg_conf {
    atomic_int refs;
    char *path;
    struct sg_settings s;
    const struct sg_account **by_address;   /* sorted, for find_account */
    size_t naddr;
    struct chunk *mem;                      /* every allocation of the snapshot */
};

/* ------------------------------------------------------------------------ */
/* The tables                                                                */

enum kind {
    K_STR,        /* const char *; check() validates */
    K_BOOL,       /* bool */
    K_INT,        /* int in [min, max] */
    K_COUNT,      /* uint64_t >= 1 (int or int64 in the file); 0 = absent */
    K_DUR,        /* duration; bounds in ms; stored as `dur` says */
    K_FRAC,       /* double in (0, 1] */
    K_ENUM,       /* int, from names */
    K_STRV,       /* const char *const * at off, size_t count at off2 */
    K_MODE,       /* int, octal string "0660" */
    K_FACILITY,   /* int, syslog facility name */
    K_CHAR,       /* char, a one-character string */
    K_GROUP,      /* sub-table; base moves by off */
    K_LIMITS,     /* struct sg_limit array at off, count at off2 */
    K_ACCOUNTS,   /* struct sg_account array at off, count at off2 */
};

enum dur_store { D_MS64, D_SEC_INT, D_MS_INT };

#define F_REQUIRED 0x01
#define F_SECRET   0x02           /* never print the value */
#define F_OFF      0x04           /* duration: the string "off" means 0 */
#define F_ARGV     0x08           /* string list is a command: argv[0] non-empty */

struct enum_name {
    const char *name;
    int value;
};

/* Returns NULL when value is fine, else the problem (static text). */
typedef const char *(*check_fn)(const char *value);

struct key {
    const char *name;
    enum kind kind;
    size_t off, off2;
    unsigned flags;
    long long min, max;           /* K_INT value, K_DUR ms, K_STRV min count */
    long long idef;               /* K_BOOL, K_INT, K_ENUM, K_MODE default */
    double fdef;                  /* K_FRAC default */
    const char *sdef;             /* K_STR, K_DUR, K_FACILITY, K_CHAR default */
    const char *const *vdef;      /* K_STRV default */
    size_t nvdef;
    enum dur_store dur;
    const struct enum_name *names;
    check_fn check;
    const struct key *sub;        /* K_GROUP */
};

static const char *check_word(const char *v);
static const char *check_nonempty(const char *v);
static const char *check_abs_path(const char *v);
static const char *check_token(const char *v);
static const char *check_pattern(const char *v);
static const char *check_address(const char *v);
static const char *check_socket(const char *v);
static const char *check_hostport(const char *v);
static const char *check_prefix(const char *v);
static const char *check_endpoint(const char *v);

static const struct enum_name action_names[] = {
    { "warn", SG_ACT_WARN }, { "tempfail", SG_ACT_TEMPFAIL },
    { "hold", SG_ACT_HOLD }, { "reject", SG_ACT_REJECT }, { NULL, 0 }
};
static const struct enum_name block_names[] = {
    { "hold", SG_ACT_HOLD }, { "tempfail", SG_ACT_TEMPFAIL }, { NULL, 0 }
};
static const struct enum_name mode_names[] = {
    { "enforce", 0 }, { "observe", 1 }, { NULL, 0 }
};
static const struct enum_name backend_names[] = {
    { "memory", SG_STORE_MEMORY }, { "redis", SG_STORE_REDIS }, { NULL, 0 }
};
static const struct enum_name on_error_names[] = {
    { "accept", SG_ON_ERROR_ACCEPT }, { "tempfail", SG_ON_ERROR_TEMPFAIL }, { NULL, 0 }
};
static const struct enum_name offer_names[] = {
    { "exchange", SG_OFFER_EXCHANGE }, { "emailpro", SG_OFFER_EMAILPRO },
    { "mxplan", SG_OFFER_MXPLAN }, { "mxplan-legacy", SG_OFFER_MXPLAN_LEGACY },
    { NULL, 0 }
};

#define SEC  1000LL
#define MIN  (60 * SEC)
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)

static const char *const default_release[] = { "postsuper", "-H", "-" };

/* Used when the file has no top-level `limits`: below OVHcloud's only
 * published figure (~200 messages per hour per account). */
static const struct sg_limit default_limits[] = {
    { .name = "hourly", .window_ms = HOUR,
      .cap = { [SG_UNIT_MESSAGES] = 150, [SG_UNIT_RECIPIENTS] = 500 },
      .action = SG_ACT_TEMPFAIL, .warn_at = 0.8 },
    { .name = "daily", .window_ms = DAY,
      .cap = { [SG_UNIT_MESSAGES] = 1000 },
      .action = SG_ACT_TEMPFAIL, .warn_at = 0.8 },
};

/* KEY(name, kind, offset): one entry; LIST(name, offset, count offset) for
 * the kinds stored as an array and its length. */
#define KEY(n, k, o)     .name = n, .kind = k, .off = o
#define LIST(n, k, o, c) .name = n, .kind = k, .off = o, .off2 = c
#define END              { .name = NULL }

#define S(f)   offsetof(struct sg_settings, f)
#define R(f)   offsetof(struct sg_redis_settings, f)
#define LIM(f) offsetof(struct sg_limit, f)
#define ACC(f) offsetof(struct sg_account, f)

static const struct key milter_keys[] = {
    { KEY("socket", K_STR, S(milter_socket)),
      .sdef = "unix:/var/spool/postfix/sendguard/sendguard.sock", .check = check_socket },
    { KEY("socket_mode", K_MODE, S(socket_mode)), .idef = 0660 },
    { KEY("socket_group", K_STR, S(socket_group)), .check = check_word },  /* default: postfix */
    { KEY("timeout", K_DUR, S(milter_timeout_s)), .dur = D_SEC_INT, .sdef = "7210s",
      .min = SEC, .max = DAY },
    END
};

static const struct key identity_keys[] = {
    { KEY("lowercase", K_BOOL, S(lowercase)), .idef = 1 },
    { KEY("strip_tag", K_BOOL, S(strip_tag)), .idef = 0 },
    { KEY("tag_separator", K_CHAR, S(tag_separator)), .sdef = "+" },
    { KEY("batv", K_BOOL, S(batv)), .idef = 0 },
    { KEY("srs", K_BOOL, S(srs)), .idef = 0 },
    { LIST("verp", K_STRV, S(verp), S(nverp)), .check = check_pattern },
    { KEY("flood_threshold", K_INT, S(flood_threshold)), .min = 0, .max = 100000000,
      .idef = 1000 },
    END
};

static const struct key sentinel_keys[] = {   /* base: struct sg_redis_settings */
    { KEY("master", K_STR, R(sentinel_master)), .flags = F_REQUIRED, .check = check_word },
    { LIST("servers", K_STRV, R(sentinels), R(nsentinels)), .flags = F_REQUIRED, .min = 1,
      .check = check_hostport },
    END
};

static const struct key redis_keys[] = {      /* base: struct sg_redis_settings */
    { KEY("host", K_STR, R(host)), .sdef = "127.0.0.1", .check = check_word },
    { KEY("port", K_INT, R(port)), .min = 1, .max = 65535, .idef = 6379 },
    { KEY("unix", K_STR, R(unix_path)), .check = check_abs_path },
    { KEY("username", K_STR, R(username)), .check = check_word },
    { KEY("password", K_STR, R(password)), .flags = F_SECRET, .check = check_nonempty },
    { KEY("db", K_INT, R(db)), .min = 0, .max = 65535, .idef = 0 },
    { KEY("prefix", K_STR, R(prefix)), .sdef = "sg:", .check = check_prefix },
    { KEY("connect_timeout_ms", K_INT, R(connect_timeout_ms)), .min = 1, .max = 60000,
      .idef = 200 },
    { KEY("command_timeout_ms", K_INT, R(command_timeout_ms)), .min = 1, .max = 60000,
      .idef = 200 },
    { KEY("pool_size", K_INT, R(pool_size)), .min = 1, .max = 1024, .idef = 8 },
    { KEY("sentinel", K_GROUP, 0), .sub = sentinel_keys },
    END
};

static const struct key memory_keys[] = {
    { KEY("max_identities", K_INT, S(memory_max_identities)), .min = 0, .max = 100000000,
      .idef = 0 },        /* 0: from the machine's memory (sg_store_memory_default_max) */
    END
};

static const struct key store_keys[] = {
    { KEY("backend", K_ENUM, S(store_backend)), .names = backend_names,
      .idef = SG_STORE_MEMORY },
    { KEY("on_error", K_ENUM, S(store_on_error)), .names = on_error_names,
      .idef = SG_ON_ERROR_ACCEPT },
    { KEY("redis", K_GROUP, S(redis)), .sub = redis_keys },
    { KEY("memory", K_GROUP, 0), .sub = memory_keys },
    END
};

static const struct key limit_keys[] = {      /* base: struct sg_limit */
    { KEY("name", K_STR, LIM(name)), .flags = F_REQUIRED, .check = check_token },
    { KEY("window", K_DUR, LIM(window_ms)), .flags = F_REQUIRED, .dur = D_MS64,
      .min = SEC, .max = 31 * DAY },
    { KEY("messages", K_COUNT, LIM(cap[SG_UNIT_MESSAGES])) },
    { KEY("recipients", K_COUNT, LIM(cap[SG_UNIT_RECIPIENTS])) },
    { KEY("bytes", K_COUNT, LIM(cap[SG_UNIT_BYTES])) },
    { KEY("distinct_recipients", K_COUNT, LIM(cap[SG_UNIT_DISTINCT])) },
    { KEY("action", K_ENUM, LIM(action)), .names = action_names, .idef = SG_ACT_TEMPFAIL },
    { KEY("warn_at", K_FRAC, LIM(warn_at)), .fdef = 0.8 },
    END
};

static const struct key account_keys[] = {    /* base: struct sg_account */
    { KEY("address", K_STR, ACC(address)), .flags = F_REQUIRED, .check = check_address },
    { KEY("offer", K_ENUM, ACC(offer)), .flags = F_REQUIRED, .names = offer_names,
      .idef = SG_OFFER_NONE },
    { KEY("organization", K_STR, ACC(organization)), .check = check_word },
    { KEY("service", K_STR, ACC(service)), .check = check_word },
    { LIST("senders", K_STRV, ACC(senders), ACC(nsenders)), .check = check_pattern },
    { LIST("limits", K_LIMITS, ACC(limits), ACC(nlimits)) },
    /* on_block and auto_reply default to the top-level values (see finish()) */
    { KEY("on_block", K_ENUM, ACC(on_block)), .names = block_names, .idef = SG_ACT_HOLD },
    { KEY("sasl_map_file", K_STR, ACC(sasl_map_file)), .check = check_abs_path },
    { KEY("auto_reply", K_BOOL, ACC(auto_reply)) },
    { KEY("mode", K_ENUM, ACC(observe)), .names = mode_names },   /* default: top level */
    END
};

static const struct key ovh_keys[] = {
    { KEY("endpoint", K_STR, S(ovh_endpoint)), .check = check_endpoint },
    { KEY("credentials", K_STR, S(ovh_credentials)), .check = check_abs_path },
    { KEY("poll_interval", K_DUR, S(ovh_poll_interval_ms)), .flags = F_OFF, .dur = D_MS64,
      .sdef = "5m", .min = 5 * SEC, .max = DAY },
    { KEY("timeout", K_DUR, S(ovh_timeout_ms)), .dur = D_MS_INT, .sdef = "60s",
      .min = SEC, .max = 5 * MIN },
    END
};

static const struct key alert_keys[] = {
    { LIST("command", K_STRV, S(alert_command), S(nalert_command)), .flags = F_ARGV },
    { KEY("interval", K_DUR, S(alert_interval_ms)), .dur = D_MS64, .sdef = "1h",
      .min = MIN, .max = 7 * DAY },
    END
};

static const struct key metrics_keys[] = {
    { KEY("textfile", K_STR, S(metrics_textfile)), .check = check_abs_path },
    { KEY("interval", K_DUR, S(metrics_interval_ms)), .dur = D_MS64, .sdef = "15s",
      .min = SEC, .max = 3600 * SEC },
    END
};

static const struct key root_keys[] = {
    { KEY("milter", K_GROUP, 0), .sub = milter_keys },
    { KEY("syslog_facility", K_FACILITY, S(syslog_facility)), .sdef = "mail" },
    { KEY("user", K_STR, S(user)), .sdef = "sendguard", .check = check_word },
    { KEY("pidfile", K_STR, S(pidfile)), .check = check_abs_path },
    { KEY("relay_name", K_STR, S(relay_name)), .check = check_token },  /* default: hostname */
    { KEY("identity", K_GROUP, 0), .sub = identity_keys },
    { LIST("allow", K_STRV, S(allow), S(nallow)), .check = check_pattern },
    { KEY("store", K_GROUP, 0), .sub = store_keys },
    { KEY("strict", K_BOOL, S(strict)), .idef = 0 },
    { KEY("mode", K_ENUM, S(observe)), .names = mode_names, .idef = 0 },
    { KEY("observe_lockdown", K_BOOL, S(observe_lockdown)), .idef = 0 },
    { LIST("limits", K_LIMITS, S(limits), S(nlimits)) },   /* default: default_limits */
    { LIST("accounts", K_ACCOUNTS, S(accounts), S(naccounts)) },
    { KEY("ovh", K_GROUP, 0), .sub = ovh_keys },
    { KEY("on_block", K_ENUM, S(on_block)), .names = block_names, .idef = SG_ACT_HOLD },
    { LIST("release_command", K_STRV, S(release_command), S(nrelease_command)),
      .flags = F_ARGV, .min = 1, .vdef = default_release, .nvdef = 3 },
    { KEY("release_helper", K_STR, S(release_helper)), .check = check_abs_path },
    { LIST("after_password_change", K_STRV, S(after_password_change),
           S(nafter_password_change)), .flags = F_ARGV },
    { KEY("auto_reply", K_BOOL, S(auto_reply)), .idef = 0 },
    { KEY("alert", K_GROUP, 0), .sub = alert_keys },
    { KEY("metrics", K_GROUP, 0), .sub = metrics_keys },
    END
};

/* ------------------------------------------------------------------------ */
/* Loading state                                                             */

struct problem {
    const char *file;             /* libconfig's copy, or the load path */
    unsigned line;
    size_t seq;
    char *text;
};

struct loader {
    struct sg_conf *conf;
    const char *path;
    config_t cf;
    struct problem *probs;
    size_t nprobs, capprobs;
    bool oom;
    const config_setting_t **acct_grp;   /* per account: its group, or NULL */
    char *dir;                           /* of path, where @include looks; or NULL */
    struct shown { const char *raw; char *shown; } *names;  /* included files */
    size_t nnames;
    size_t nwide;                        /* lines with a too-wide integer: */
    struct { const char *file; unsigned line; } wide[16];   /* say nothing more there */
};

static void add_problem(struct loader *L, const char *file, unsigned line, const char *text)
{
    if (L->nprobs == L->capprobs) {
        size_t cap = L->capprobs ? 2 * L->capprobs : 16;
        struct problem *p = realloc(L->probs, cap * sizeof(*p));

        if (p == NULL) {
            L->oom = true;
            return;
        }
        L->probs = p;
        L->capprobs = cap;
    }
    L->probs[L->nprobs].text = strdup(text);
    if (L->probs[L->nprobs].text == NULL) {
        L->oom = true;
        return;
    }
    L->probs[L->nprobs].file = file;
    L->probs[L->nprobs].line = line;
    L->probs[L->nprobs].seq = L->nprobs;
    L->nprobs++;
}

/* display_file - the name to print for a file libconfig read: it records an
 * included file by the name written in @include, relative to L->dir. */
static const char *display_file(struct loader *L, const char *f)
{
    struct shown *names;
    char *name;
    size_t n;

    if (f == NULL)
        return L->path;
    if (strcmp(f, L->path) == 0 || f[0] == '/' || L->dir == NULL)
        return f;
    for (size_t i = 0; i < L->nnames; i++)
        if (strcmp(L->names[i].raw, f) == 0)
            return L->names[i].shown;
    n = strlen(L->dir) + strlen(f) + 2;
    if ((name = malloc(n)) == NULL ||
        (names = realloc(L->names, (L->nnames + 1) * sizeof(*names))) == NULL) {
        free(name);
        L->oom = true;
        return f;
    }
    snprintf(name, n, "%s%s%s", L->dir, L->dir[strlen(L->dir) - 1] == '/' ? "" : "/", f);
    L->names = names;
    L->names[L->nnames].raw = f;
    L->names[L->nnames++].shown = name;
    return name;
}

static const char *setting_file(struct loader *L, const config_setting_t *s)
{
    return display_file(L, s ? config_setting_source_file(s) : NULL);
}

/* problem - report "FILE:LINE: key: what" about setting `at`. */
static void problem(struct loader *L, const config_setting_t *at, const char *key,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void problem(struct loader *L, const config_setting_t *at, const char *key,
                    const char *fmt, ...)
{
    char what[768], line[1280];
    const char *file = setting_file(L, at);
    unsigned ln = at ? config_setting_source_line(at) : 0;
    va_list ap;

    for (size_t i = 0; i < L->nwide; i++)
        if (L->wide[i].line == ln && strcmp(L->wide[i].file, file) == 0)
            return;                   /* libconfig's truncated value: misleading */
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (ln > 0)
        snprintf(line, sizeof(line), "%s:%u: %s: %s", file, ln, key, what);
    else
        snprintf(line, sizeof(line), "%s: %s: %s", file, key, what);
    add_problem(L, file, ln, line);
}

static int problem_cmp(const void *a, const void *b, void *path)
{
    const struct problem *x = a, *y = b;
    int xm = strcmp(x->file, path) != 0, ym = strcmp(y->file, path) != 0;
    int c;

    if (xm != ym)
        return xm - ym;                      /* the main file first */
    if ((c = strcmp(x->file, y->file)) != 0)
        return c;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* ------------------------------------------------------------------------ */
/* Arena                                                                     */

static void *ar_alloc(struct loader *L, size_t n)
{
    struct chunk *c = n < SIZE_MAX - sizeof(*c) ? calloc(1, sizeof(*c) + (n ? n : 1)) : NULL;

    if (c == NULL) {
        L->oom = true;
        return NULL;
    }
    c->next = L->conf->mem;
    L->conf->mem = c;
    return c->data;
}

static void *ar_array(struct loader *L, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size) {
        L->oom = true;
        return NULL;
    }
    return ar_alloc(L, n * size);
}

static char *ar_strndup(struct loader *L, const char *s, size_t n)
{
    char *d = ar_alloc(L, n + 1);

    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static char *ar_strdup(struct loader *L, const char *s)
{
    return ar_strndup(L, s, strlen(s));
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */

/* quote - "value" for a message: at most ~64 bytes, unprintables as \xHH. */
static const char *quote(char *buf, size_t n, const char *v)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    buf[o++] = '"';
    for (; *v && o + 8 < n; v++) {
        unsigned char c = (unsigned char)*v;

        if (o > 64) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            buf[o++] = (char)c;
        } else {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

static const char *type_name(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:  return "an integer";
    case CONFIG_TYPE_FLOAT:  return "a number with a fraction";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL:   return "a boolean";
    case CONFIG_TYPE_ARRAY:  return "an array [ ]";
    case CONFIG_TYPE_LIST:   return "a list ( )";
    case CONFIG_TYPE_GROUP:  return "a group { }";
    default:                 return "nothing";
    }
}

static bool is_int(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_INT ||
           config_setting_type(s) == CONFIG_TYPE_INT64;
}

static bool is_string(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_STRING;
}

/* keyfmt - snprintf for key paths, where cutting a very long path is fine. */
static void keyfmt(char *out, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void keyfmt(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out, n, fmt, ap);
    va_end(ap);
}

static void key_join(char *out, size_t n, const char *prefix, const char *name)
{
    keyfmt(out, n, "%s%s%s", prefix, *prefix ? "." : "", name);
}

/* key_elem - "prefix[label]" with the element's `member` string when it is
 * plain enough to read, else "prefix[index]". */
static void key_elem(char *out, size_t n, const char *prefix, const config_setting_t *e,
                     const char *member)
{
    const config_setting_t *m = config_setting_is_group(e) ?
                                config_setting_get_member(e, member) : NULL;
    const char *v = m && is_string(m) ? config_setting_get_string(m) : NULL;
    bool plain = v != NULL && *v != '\0' && strlen(v) <= 64;

    for (const char *p = v; plain && *p; p++)
        if (*p <= ' ' || *p >= 0x7f || *p == '[' || *p == ']' || *p == '"')
            plain = false;
    if (plain)
        snprintf(out, n, "%s[%s]", prefix, v);
    else
        snprintf(out, n, "%s[%d]", prefix, config_setting_index(e));
}

static bool has_ctl_or_space(const char *v)
{
    for (; *v; v++)
        if ((unsigned char)*v <= ' ' || (unsigned char)*v == 0x7f)
            return true;
    return false;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[64];

    if (la >= 63 || lb >= 63)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];

        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);

            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* fmt_duration - the shortest exact spelling of ms: "90s", "5m", "1d". */
static const char *fmt_duration(char *buf, size_t n, uint64_t ms)
{
    if (ms % DAY == 0)
        snprintf(buf, n, "%llud", (unsigned long long)(ms / DAY));
    else if (ms % HOUR == 0)
        snprintf(buf, n, "%lluh", (unsigned long long)(ms / HOUR));
    else if (ms % MIN == 0)
        snprintf(buf, n, "%llum", (unsigned long long)(ms / MIN));
    else if (ms % SEC == 0)
        snprintf(buf, n, "%llus", (unsigned long long)(ms / SEC));
    else
        snprintf(buf, n, "%llums", (unsigned long long)ms);
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Value checks: NULL when fine, else what is wrong (never the value)       */

static const char *check_nonempty(const char *v)
{
    if (*v == '\0')
        return "must not be empty";
    for (; *v; v++)
        if ((unsigned char)*v < ' ' || (unsigned char)*v == 0x7f)
            return "must not contain control characters";
    return NULL;
}

static const char *check_word(const char *v)
{
    if (*v == '\0' || has_ctl_or_space(v))
        return "must be a non-empty word, without spaces or control characters";
    return NULL;
}

static const char *check_abs_path(const char *v)
{
    if (*v != '/')
        return "must be an absolute path";
    for (; *v; v++)
        if ((unsigned char)*v < ' ' || (unsigned char)*v == 0x7f)
            return "must not contain control characters";
    return NULL;
}

static const char *check_token(const char *v)
{
    size_t n = strlen(v);

    if (n == 0 || n > 64 || strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789._-") != n)
        return "must be 1 to 64 letters, digits, '.', '_' or '-'";
    return NULL;
}

static const char *check_pattern(const char *v)
{
    if (*v == '\0' || has_ctl_or_space(v) || strlen(v) > MAX_ADDRESS)
        return "must be a sender pattern (\"*@example.com\", \"user@example.com\", "
               "\"login\"), without spaces or control characters";
    return NULL;
}

static const char *check_address(const char *v)
{
    const char *at = strchr(v, '@');

    if (at == NULL || at == v || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
        has_ctl_or_space(v) || strlen(v) > MAX_ADDRESS || strchr(v, '*') != NULL)
        return "must be an address such as \"user@example.com\"";
    return NULL;
}

static bool parse_port(const char *s, size_t n)
{
    unsigned long port = 0;

    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        port = port * 10 + (unsigned long)(s[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

static const char *check_socket(const char *v)
{
    const char *spec;

    if (strncmp(v, "unix:", 5) == 0) {
        if (v[5] != '/' || has_ctl_or_space(v + 5))
            return "must be unix:/absolute/path";
        return NULL;
    }
    if (strncmp(v, "inet:", 5) == 0)
        spec = v + 5;
    else if (strncmp(v, "inet6:", 6) == 0)
        spec = v + 6;
    else
        return "must start with inet:, inet6: or unix:";

    const char *at = strchr(spec, '@');

    if (at == NULL || !parse_port(spec, (size_t)(at - spec)) || at[1] == '\0' ||
        has_ctl_or_space(at + 1))
        return "must be inet:PORT@HOST (or inet6:PORT@HOST) with PORT from 1 to 65535";
    return NULL;
}

static const char *check_hostport(const char *v)
{
    static const char *bad = "must be host:port with port from 1 to 65535";
    const char *colon;

    if (has_ctl_or_space(v))
        return bad;
    if (v[0] == '[') {                        /* [IPv6]:port */
        const char *end = strchr(v, ']');

        if (end == NULL || end == v + 1 || end[1] != ':')
            return bad;
        colon = end + 1;
    } else {
        colon = strchr(v, ':');
        if (colon == NULL || colon == v || strchr(colon + 1, ':') != NULL)
            return bad;
    }
    return parse_port(colon + 1, strlen(colon + 1)) ? NULL : bad;
}

static const char *check_prefix(const char *v)
{
    size_t n = strlen(v);

    if (n == 0 || n > 64 || has_ctl_or_space(v) || strpbrk(v, "{}") != NULL)
        return "must be 1 to 64 printable characters, without spaces, '{' or '}'";
    return NULL;
}

static const char *check_endpoint(const char *v)
{
    static const char *const aliases[] = {
        "ovh-eu", "ovh-ca", "ovh-us", "kimsufi-eu", "kimsufi-ca",
        "soyoustart-eu", "soyoustart-ca", NULL
    };
    size_t n = strlen(v);

    for (size_t i = 0; aliases[i]; i++)
        if (strcmp(v, aliases[i]) == 0)
            return NULL;
    if ((strncmp(v, "https://", 8) == 0 && n > 8) || (strncmp(v, "http://", 7) == 0 && n > 7)) {
        if (has_ctl_or_space(v) || v[n - 1] == '/')
            return "a URL must have no spaces and no trailing '/'";
        return NULL;
    }
    return "must be ovh-eu, ovh-ca, ovh-us, kimsufi-eu, kimsufi-ca, soyoustart-eu, "
           "soyoustart-ca or an https:// URL";
}

/* ------------------------------------------------------------------------ */
/* Durations                                                                 */

bool sg_conf_parse_duration(const char *s, uint64_t *ms)
{
    uint64_t n = 0, mult;
    const char *p = s;

    if (s == NULL || *p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (UINT64_MAX - 9) / 10)
            return false;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    switch (*p) {
    case '\0':
    case 's': mult = SEC; break;
    case 'm': mult = MIN; break;
    case 'h': mult = HOUR; break;
    case 'd': mult = DAY; break;
    default: return false;
    }
    if (*p != '\0' && p[1] != '\0')
        return false;
    if (n == 0 || n > UINT64_MAX / mult)
        return false;
    *ms = n * mult;
    return true;
}

/* ------------------------------------------------------------------------ */
/* Walking a group against a table                                           */

#define AT(base, off, type) ((type *)(void *)((char *)(base) + (off)))

static void walk(struct loader *L, const config_setting_t *grp, const struct key *tab,
                 void *base, const char *prefix);
static void parse_limits(struct loader *L, const config_setting_t *m, const struct key *k,
                         void *base, const char *path);
static void parse_accounts(struct loader *L, const config_setting_t *m, const struct key *k,
                           void *base, const char *path);

static void store_duration(const struct key *k, void *base, uint64_t ms)
{
    switch (k->dur) {
    case D_MS64:    *AT(base, k->off, uint64_t) = ms; break;
    case D_SEC_INT: *AT(base, k->off, int) = (int)(ms / SEC); break;
    case D_MS_INT:  *AT(base, k->off, int) = (int)ms; break;
    }
}

static void apply_defaults(const struct key *tab, void *base)
{
    for (const struct key *k = tab; k->name; k++) {
        uint64_t ms = 0;

        switch (k->kind) {
        case K_STR:      *AT(base, k->off, const char *) = k->sdef; break;
        case K_BOOL:     *AT(base, k->off, bool) = k->idef != 0; break;
        case K_INT:
        case K_ENUM:
        case K_MODE:     *AT(base, k->off, int) = (int)k->idef; break;
        case K_COUNT:    *AT(base, k->off, uint64_t) = 0; break;
        case K_DUR:
            if (k->sdef && !sg_conf_parse_duration(k->sdef, &ms))
                abort();                        /* a bad table: caught by any test */
            store_duration(k, base, ms);
            break;
        case K_FRAC:     *AT(base, k->off, double) = k->fdef; break;
        case K_FACILITY: *AT(base, k->off, int) = sg_log_facility(k->sdef); break;
        case K_CHAR:     *AT(base, k->off, char) = k->sdef[0]; break;
        case K_GROUP:    apply_defaults(k->sub, (char *)base + k->off); break;
        case K_STRV:
            *AT(base, k->off, const char *const *) = k->vdef;
            *AT(base, k->off2, size_t) = k->nvdef;
            break;
        case K_LIMITS:
            *AT(base, k->off, const struct sg_limit *) = NULL;
            *AT(base, k->off2, size_t) = 0;
            break;
        case K_ACCOUNTS:
            *AT(base, k->off, const struct sg_account *) = NULL;
            *AT(base, k->off2, size_t) = 0;
            break;
        }
    }
}

static void bad_type(struct loader *L, const config_setting_t *m, const char *path,
                     const char *want)
{
    problem(L, m, path, "must be %s (got %s)", want, type_name(m));
}

/* bad_value - "what (got "value")", the value left out for secrets. */
static void bad_value(struct loader *L, const config_setting_t *m, const char *path,
                      const struct key *k, const char *what, const char *value)
{
    char q[96];

    if (k->flags & F_SECRET)
        problem(L, m, path, "%s", what);
    else
        problem(L, m, path, "%s (got %s)", what, quote(q, sizeof(q), value));
}

static void parse_duration_value(struct loader *L, const config_setting_t *m,
                                 const struct key *k, void *base, const char *path)
{
    char lo[32], hi[32], got[96];
    uint64_t ms;

    if (is_int(m)) {
        long long v = config_setting_get_int64(m);

        snprintf(got, sizeof(got), "%lld", v);
        if (v <= 0 || (unsigned long long)v > UINT64_MAX / SEC) {
            problem(L, m, path, "must be a positive number of seconds or a duration "
                    "such as \"90s\", \"5m\", \"1h\" or \"2d\" (got %s)", got);
            return;
        }
        ms = (uint64_t)v * SEC;
    } else if (is_string(m)) {
        const char *v = config_setting_get_string(m);

        quote(got, sizeof(got), v);
        if ((k->flags & F_OFF) && strcmp(v, "off") == 0) {
            store_duration(k, base, 0);
            return;
        }
        if (!sg_conf_parse_duration(v, &ms)) {
            problem(L, m, path, "must be a duration such as \"90s\", \"5m\", \"1h\" or "
                    "\"2d\"%s (got %s)", (k->flags & F_OFF) ? ", or \"off\"" : "", got);
            return;
        }
    } else {
        problem(L, m, path, "must be a duration such as \"90s\", \"5m\", \"1h\" or \"2d\" "
                "(got %s)", type_name(m));
        return;
    }
    if (ms < (uint64_t)k->min || ms > (uint64_t)k->max) {
        problem(L, m, path, "must be between %s and %s (got %s)",
                fmt_duration(lo, sizeof(lo), (uint64_t)k->min),
                fmt_duration(hi, sizeof(hi), (uint64_t)k->max), got);
        return;
    }
    store_duration(k, base, ms);
}

static void parse_enum(struct loader *L, const config_setting_t *m, const struct key *k,
                       void *base, const char *path)
{
    char list[160] = "", q[96];

    if (is_string(m)) {
        const char *v = config_setting_get_string(m);

        for (const struct enum_name *e = k->names; e->name; e++) {
            if (strcmp(v, e->name) == 0) {
                *AT(base, k->off, int) = e->value;
                return;
            }
        }
    }
    for (const struct enum_name *e = k->names; e->name; e++) {
        size_t o = strlen(list);

        snprintf(list + o, sizeof(list) - o, "%s%s", o ? (e[1].name ? ", " : " or ") : "",
                 e->name);
    }
    if (is_string(m))
        problem(L, m, path, "must be %s (got %s)", list,
                quote(q, sizeof(q), config_setting_get_string(m)));
    else
        problem(L, m, path, "must be %s (got %s)", list, type_name(m));
}

static void parse_strv(struct loader *L, const config_setting_t *m, const struct key *k,
                       void *base, const char *path)
{
    int n;
    const char **v;
    bool ok = true;

    if (config_setting_type(m) != CONFIG_TYPE_ARRAY && !config_setting_is_list(m)) {
        bad_type(L, m, path, (k->flags & F_ARGV) ? "a command: an array of strings"
                                                 : "an array of strings");
        return;
    }
    n = config_setting_length(m);
    if (n < k->min) {
        problem(L, m, path, "must not be empty");
        return;
    }
    v = ar_array(L, (size_t)n, sizeof(*v));
    if (v == NULL)
        return;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(m, (unsigned)i);
        char epath[KEYLEN];
        const char *why;

        keyfmt(epath, sizeof(epath), "%s[%d]", path, i);
        if (!is_string(e)) {
            bad_type(L, e, epath, "a string");
            ok = false;
            continue;
        }
        v[i] = config_setting_get_string(e);
        if (i == 0 && (k->flags & F_ARGV) && *v[i] == '\0') {
            problem(L, e, epath, "must not be empty (it is the program to run)");
            ok = false;
        } else if (k->check && (why = k->check(v[i])) != NULL) {
            bad_value(L, e, epath, k, why, v[i]);
            ok = false;
        } else if ((v[i] = ar_strdup(L, v[i])) == NULL) {
            return;
        }
    }
    if (ok) {
        *AT(base, k->off, const char *const *) = v;
        *AT(base, k->off2, size_t) = (size_t)n;
    }
}

static void parse_value(struct loader *L, const config_setting_t *m, const struct key *k,
                        void *base, const char *path)
{
    char q[96];
    const char *why;

    switch (k->kind) {
    case K_STR: {
        const char *v;

        if (!is_string(m)) {
            bad_type(L, m, path, "a string");
            return;
        }
        v = config_setting_get_string(m);
        if (k->check && (why = k->check(v)) != NULL) {
            bad_value(L, m, path, k, why, v);
            return;
        }
        *AT(base, k->off, const char *) = ar_strdup(L, v);
        return;
    }
    case K_BOOL:
        if (config_setting_type(m) != CONFIG_TYPE_BOOL) {
            bad_type(L, m, path, "true or false");
            return;
        }
        *AT(base, k->off, bool) = config_setting_get_bool(m) != 0;
        return;
    case K_INT:
    case K_COUNT: {
        long long v;

        if (!is_int(m)) {
            bad_type(L, m, path, k->kind == K_COUNT ? "a positive integer" : "an integer");
            return;
        }
        v = config_setting_get_int64(m);
        if (k->kind == K_COUNT) {
            if (v < 1)
                problem(L, m, path, "must be a positive integer (got %lld)", v);
            else
                *AT(base, k->off, uint64_t) = (uint64_t)v;
        } else if (v < k->min || v > k->max) {
            problem(L, m, path, "must be between %lld and %lld (got %lld)", k->min, k->max, v);
        } else {
            *AT(base, k->off, int) = (int)v;
        }
        return;
    }
    case K_DUR:
        parse_duration_value(L, m, k, base, path);
        return;
    case K_FRAC: {
        double v;

        if (!is_int(m) && config_setting_type(m) != CONFIG_TYPE_FLOAT) {
            bad_type(L, m, path, "a number");
            return;
        }
        v = is_int(m) ? (double)config_setting_get_int64(m) : config_setting_get_float(m);
        if (!(v > 0.0 && v <= 1.0))
            problem(L, m, path, "must be more than 0 and at most 1 (got %g)", v);
        else
            *AT(base, k->off, double) = v;
        return;
    }
    case K_ENUM:
        parse_enum(L, m, k, base, path);
        return;
    case K_STRV:
        parse_strv(L, m, k, base, path);
        return;
    case K_MODE: {
        const char *v;
        size_t n;
        long mode;

        if (!is_string(m)) {
            bad_type(L, m, path, "an octal string such as \"0660\"");
            return;
        }
        v = config_setting_get_string(m);
        n = strlen(v);
        mode = strtol(v, NULL, 8);
        if (n < 3 || n > 4 || strspn(v, "01234567") != n || mode > 0777) {
            problem(L, m, path, "must be an octal mode such as \"0660\" (got %s)",
                    quote(q, sizeof(q), v));
            return;
        }
        *AT(base, k->off, int) = (int)mode;
        return;
    }
    case K_FACILITY: {
        int f;

        if (!is_string(m)) {
            bad_type(L, m, path, "a string");
            return;
        }
        f = sg_log_facility(config_setting_get_string(m));
        if (f < 0) {
            problem(L, m, path, "must be mail, daemon, user or local0 to local7 (got %s)",
                    quote(q, sizeof(q), config_setting_get_string(m)));
            return;
        }
        *AT(base, k->off, int) = f;
        return;
    }
    case K_CHAR: {
        const char *v;

        if (!is_string(m)) {
            bad_type(L, m, path, "a string");
            return;
        }
        v = config_setting_get_string(m);
        if (strlen(v) != 1 || v[0] <= ' ' || v[0] >= 0x7f || v[0] == '@' || v[0] == '*' ||
            strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", v[0])) {
            problem(L, m, path, "must be one character other than a letter, digit, space, "
                    "'@' or '*' (got %s)", quote(q, sizeof(q), v));
            return;
        }
        *AT(base, k->off, char) = v[0];
        return;
    }
    case K_GROUP:
        if (!config_setting_is_group(m)) {
            bad_type(L, m, path, "a group { ... }");
            return;
        }
        walk(L, m, k->sub, (char *)base + k->off, path);
        return;
    case K_LIMITS:
        parse_limits(L, m, k, base, path);
        return;
    case K_ACCOUNTS:
        parse_accounts(L, m, k, base, path);
        return;
    }
}

static void unknown_key(struct loader *L, const config_setting_t *m, const char *path,
                        const struct key *tab)
{
    const char *name = config_setting_name(m), *best = NULL;
    size_t bestd = 3;

    for (const struct key *k = tab; k->name; k++) {
        size_t d = edit_distance(name, k->name);

        if (d < bestd && d < strlen(k->name)) {
            bestd = d;
            best = k->name;
        }
    }
    if (best)
        problem(L, m, path, "unknown key (did you mean \"%s\"?)", best);
    else
        problem(L, m, path, "unknown key");
}

/* walk - check every member of grp against tab and store it into base. */
static void walk(struct loader *L, const config_setting_t *grp, const struct key *tab,
                 void *base, const char *prefix)
{
    int n = config_setting_length(grp);
    char path[KEYLEN];

    for (int i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(grp, (unsigned)i);
        const char *name = config_setting_name(m);
        const struct key *k;

        key_join(path, sizeof(path), prefix, name);
        for (k = tab; k->name && strcmp(k->name, name) != 0; k++)
            ;
        if (k->name == NULL)
            unknown_key(L, m, path, tab);
        else
            parse_value(L, m, k, base, path);
    }
    for (const struct key *k = tab; k->name; k++) {
        if ((k->flags & F_REQUIRED) && config_setting_get_member(grp, k->name) == NULL) {
            key_join(path, sizeof(path), prefix, k->name);
            problem(L, grp, path, "is required");
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Limits and accounts                                                       */

static bool list_of_groups(struct loader *L, const config_setting_t *m, const char *path,
                           const char *what)
{
    if (config_setting_is_list(m) ||
        (config_setting_type(m) == CONFIG_TYPE_ARRAY && config_setting_length(m) == 0))
        return true;
    problem(L, m, path, "must be a list ( { ... }, ... ) of %s (got %s)", what, type_name(m));
    return false;
}

static const char *where(char *buf, size_t n, struct loader *L,
                         const config_setting_t *first, const config_setting_t *here)
{
    const char *f1 = setting_file(L, first), *f2 = setting_file(L, here);

    if (strcmp(f1, f2) == 0)
        snprintf(buf, n, "line %u", config_setting_source_line(first));
    else
        snprintf(buf, n, "%s:%u", f1, config_setting_source_line(first));
    return buf;
}

static void parse_limits(struct loader *L, const config_setting_t *m, const struct key *k,
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
        problem(L, m, path, "at most %d limits per list (got %d)", MAX_LIMITS, n);
    lim = ar_array(L, (size_t)n, sizeof(*lim));
    if (lim == NULL)
        return;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(m, (unsigned)i);
        char epath[KEYLEN], npath[KEYLEN], w[KEYLEN];
        bool counted = false;

        key_elem(epath, sizeof(epath), path, e, "name");
        if (!config_setting_is_group(e)) {
            bad_type(L, e, epath, "a group { name = ...; window = ...; ... }");
            continue;
        }
        apply_defaults(limit_keys, &lim[i]);
        walk(L, e, limit_keys, &lim[i], epath);
        for (int u = 0; u < SG_UNIT_COUNT; u++)
            if (config_setting_get_member(e, units[u]) != NULL)
                counted = true;
        if (!counted)
            problem(L, e, epath, "needs at least one of messages, recipients, bytes, "
                    "distinct_recipients");
        for (int j = 0; j < i && lim[i].name; j++) {
            if (lim[j].name && strcasecmp(lim[j].name, lim[i].name) == 0) {
                const config_setting_t *first = config_setting_get_member(
                    config_setting_get_elem(m, (unsigned)j), "name");
                const config_setting_t *here = config_setting_get_member(e, "name");

                key_join(npath, sizeof(npath), epath, "name");
                problem(L, here, npath, "duplicate limit name \"%s\" (first at %s)",
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

        key_join(path, sizeof(path), epath, fields[f]);
        if (need[f] && m == NULL)
            problem(L, e, path, "is required for offer %s", sg_offer_name(a->offer));
        else if (!need[f] && m != NULL)
            problem(L, m, path, "does not apply to offer %s", sg_offer_name(a->offer));
    }
}

static void parse_accounts(struct loader *L, const config_setting_t *m, const struct key *k,
                           void *base, const char *path)
{
    struct sg_account *acc;
    int n;

    if (!list_of_groups(L, m, path, "accounts"))
        return;
    n = config_setting_length(m);
    acc = ar_array(L, (size_t)n, sizeof(*acc));
    L->acct_grp = ar_array(L, (size_t)n, sizeof(*L->acct_grp));
    if (acc == NULL || L->acct_grp == NULL)
        return;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(m, (unsigned)i);
        struct sg_account *a = &acc[i];
        char epath[KEYLEN];

        key_elem(epath, sizeof(epath), path, e, "address");
        if (!config_setting_is_group(e)) {
            bad_type(L, e, epath, "a group { address = ...; offer = ...; ... }");
            continue;
        }
        L->acct_grp[i] = e;
        apply_defaults(account_keys, a);
        walk(L, e, account_keys, a, epath);
        check_offer(L, e, epath, a);
        if (a->address != NULL) {
            char *addr = (char *)a->address;   /* our arena copy */
            char *at = strchr(addr, '@');

            lower(addr);
            a->local = ar_strndup(L, addr, (size_t)(at - addr));
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
    const char **v = ar_array(L, a->nsenders + 1, sizeof(*v));
    size_t n = 0;

    if (v == NULL)
        return;
    v[n++] = a->address;
    refs[(*nrefs)++] = (struct sender_ref){ a->address, ai, -1 };
    for (size_t i = 0; i < a->nsenders; i++) {
        char *p = ar_strdup(L, a->senders[i]);
        bool dup = false;

        if (p == NULL)
            return;
        if (L->conf->s.lowercase)
            lower(p);
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
            continue;                  /* the same address twice: finish() says so */
        g1 = L->acct_grp[refs[first].acct];
        g2 = L->acct_grp[refs[i].acct];
        key_elem(p1, sizeof(p1), "accounts", g1, "address");
        key_elem(p2, sizeof(p2), "accounts", g2, "address");
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
        problem(L, at2, p2, "%s already belongs to %s (%s), which comes first",
                quote(q, sizeof(q), refs[i].pattern), p1, where(w, sizeof(w), L, at1, at2));
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
        problem(L, m, key, "is a secret, and %s is readable by every user; run: chmod o-r %s",
                setting_file(L, m), file);
}

static void finish(struct loader *L)
{
    struct sg_settings *s = &L->conf->s;
    struct sg_account *acc = (struct sg_account *)s->accounts;
    const config_setting_t *root = config_root_setting(&L->cf);
    struct sender_ref *refs = NULL;
    size_t nrefs = 0, cap = 0;
    char host[256];

    check_secret_file(L, "store.redis.password");
    if (config_setting_get_member(root, "limits") == NULL) {
        s->limits = default_limits;
        s->nlimits = sizeof(default_limits) / sizeof(default_limits[0]);
    }
    for (size_t i = 0; i < s->nallow; i++) {
        char *p = ar_strdup(L, s->allow[i]);

        if (p == NULL)
            return;
        if (s->lowercase)
            lower(p);
        ((const char **)s->allow)[i] = p;
    }
    for (size_t i = 0; i < s->nverp; i++) {
        char *p = ar_strdup(L, s->verp[i]);

        if (p == NULL)
            return;
        if (s->lowercase)
            lower(p);
        ((const char **)s->verp)[i] = p;
    }

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
        const struct sg_account **idx = ar_array(L, s->naccounts, sizeof(*idx));
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
            key_elem(path, sizeof(path), "accounts", L->acct_grp[idx[i] - acc], "address");
            strncat(path, ".address", sizeof(path) - strlen(path) - 1);
            problem(L, a2, path, "duplicate address \"%s\" (first at %s)", idx[i]->address,
                    where(w, sizeof(w), L, a1, a2));
        }
        L->conf->by_address = idx;
        L->conf->naddr = n;
    }

    if (s->redis.unix_path != NULL && s->redis.sentinel_master != NULL)
        problem(L, config_lookup(&L->cf, "store.redis.unix"), "store.redis.unix",
                "cannot be used with store.redis.sentinel");

    if (s->relay_name == NULL) {
        if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        s->relay_name = ar_strdup(L, host);
    }
}

/* ------------------------------------------------------------------------ */
/* libconfig's own limits                                                    */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t cap = 0, n = 0;

    if (f == NULL)
        return NULL;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            char *nb;

            if (cap > (64u << 20)) {            /* a config file this big: give up */
                free(buf);
                fclose(f);
                return NULL;
            }
            cap = cap ? 2 * cap : 16384;
            if ((nb = realloc(buf, cap)) == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);

        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* scan_wide_ints - report integer literals libconfig 1.5 would silently
 * truncate to 32 bits (no L suffix). Follows libconfig's lexical rules for
 * comments, strings, names and floats. */
static void scan_wide_ints(struct loader *L, const char *file)
{
    size_t len;
    char *text = read_file(file, &len);
    const char *p, *end;
    unsigned line = 1;

    if (text == NULL)
        return;                                 /* libconfig read it a moment ago */
    for (p = text, end = text + len; p < end;) {
        if (*p == '\n') {
            line++;
            p++;
        } else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
            while (p < end && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            for (p += 2; p < end && !(p[0] == '*' && p[1] == '/'); p++)
                line += *p == '\n';
            p += 2;
        } else if (*p == '"') {
            for (p++; p < end && *p != '"'; p++) {
                if (*p == '\\' && p + 1 < end)
                    p++;
                line += *p == '\n';
            }
            p++;
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '*' ||
                   *p == '@') {
            while (p < end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                               (*p >= '0' && *p <= '9') || (*p && strchr("-_*@", *p))))
                p++;
        } else if ((*p >= '0' && *p <= '9') ||
                   ((*p == '-' || *p == '+') && p[1] >= '0' && p[1] <= '9')) {
            const char *start = p, *digits;
            bool neg = *p == '-', hex, wide;
            unsigned long long v = 0, lim;
            bool over = false;

            if (*p == '-' || *p == '+')
                p++;
            hex = p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
            if (hex)
                p += 2;
            digits = p;
            while (p < end && (hex ? strchr("0123456789abcdefABCDEF", *p) != NULL
                                   : (*p >= '0' && *p <= '9')) && *p)
                p++;
            if (!hex && (*p == '.' || *p == 'e' || *p == 'E')) {   /* a float */
                while (p < end && *p && strchr("0123456789.eE+-", *p))
                    p++;
                continue;
            }
            wide = *p == 'L';
            while (p < end && *p == 'L')
                p++;
            if (wide)
                continue;
            lim = hex ? 0x7fffffffULL : (neg ? 0x80000000ULL : 0x7fffffffULL);
            for (const char *d = digits; d < p; d++) {
                unsigned dv = (unsigned)(*d <= '9' ? *d - '0' : (*d | 0x20) - 'a' + 10);

                if (v > (lim - dv) / (hex ? 16 : 10)) {
                    over = true;
                    break;
                }
                v = v * (hex ? 16 : 10) + dv;
            }
            if (over) {
                char lit[64], msg[192];

                snprintf(lit, sizeof(lit), "%.*s", (int)(p - start), start);
                snprintf(msg, sizeof(msg), "%s:%u: syntax: integer %s does not fit in 32 bits;"
                         " write %sL", file, line, lit, lit);
                add_problem(L, file, line, msg);
                if (L->nwide < sizeof(L->wide) / sizeof(L->wide[0])) {
                    L->wide[L->nwide].file = file;
                    L->wide[L->nwide++].line = line;
                }
            }
        } else {
            p++;
        }
    }
    free(text);
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */

static void free_conf(struct sg_conf *c)
{
    while (c->mem) {
        struct chunk *next = c->mem->next;

        free(c->mem);
        c->mem = next;
    }
    free(c->path);
    free(c);
}

static void say(sg_conf_err_fn err, void *ctx, const char *line)
{
    if (err)
        err(ctx, line);
    else
        fprintf(stderr, "%s\n", line);
}

/* unsafe_one - why a config file, or a directory above it, could be
 * changed by someone else than who may (NULL when safe). The file names
 * commands that are run (as root by the release helper and by sendguardctl
 * under sudo): nobody but its owner may write it, and a root reader wants
 * root as that owner; a directory must not let others replace it (a sticky
 * directory such as /tmp does not). */
static const char *unsafe_one(const char *p, bool is_file, const char *file, char *why,
                              size_t len)
{
    uid_t me = geteuid();
    struct stat st;

    if (stat(p, &st) != 0)
        return NULL;               /* readable() says why it cannot be read */
    if (is_file) {
        if (st.st_mode & (S_IWGRP | S_IWOTH))
            snprintf(why, len, "%s: mode %04o lets other users change the commands sendguard "
                     "runs; run: chmod go-w %s", p, (unsigned)(st.st_mode & 07777), p);
        else if (me == 0 && st.st_uid != 0)
            snprintf(why, len, "%s: owned by uid %ld, and root would run the commands it "
                     "names; run: chown root %s", p, (long)st.st_uid, p);
        else
            return NULL;
        return why;
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
        snprintf(why, len, "%s: directory mode %04o lets other users replace %s; run: chmod "
                 "go-w %s", p, (unsigned)(st.st_mode & 07777), file, p);
    else if (st.st_uid != 0 && st.st_uid != me)
        snprintf(why, len, "%s: directory owned by uid %ld, who could replace %s; run: chown "
                 "root %s", p, (long)st.st_uid, file, p);
    else
        return NULL;
    return why;
}

/* unsafe_path - unsafe_one for the file and every directory above it, on
 * the path as written (made absolute) and on its real path (symlinks). */
static const char *unsafe_path(const char *path, char *why, size_t len)
{
    char abs[PATH_MAX], real[PATH_MAX], *v[2] = { abs, real };

    if (path[0] == '/')
        snprintf(abs, sizeof(abs), "%s", path);
    else if (getcwd(real, sizeof(real)) != NULL)
        snprintf(abs, sizeof(abs), "%s/%s", real, path);
    else
        return NULL;
    if (realpath(path, real) == NULL)
        return NULL;
    for (int k = 0; k < 2; k++) {
        char *slash;

        if (unsafe_one(v[k], true, path, why, len) != NULL)
            return why;
        while ((slash = strrchr(v[k], '/')) != NULL) {
            if (slash == v[k]) {
                v[k][1] = '\0';
                if (unsafe_one(v[k], false, path, why, len) != NULL)
                    return why;
                break;
            }
            *slash = '\0';
            if (unsafe_one(v[k], false, path, why, len) != NULL)
                return why;
        }
    }
    return NULL;
}

/* readable - NULL when path can be read, else why not. libconfig only says
 * "file I/O error". */
static const char *readable(const char *path)
{
    struct stat st;
    FILE *f = fopen(path, "r");
    int e;

    if (f == NULL)
        return strerror(errno);
    e = fstat(fileno(f), &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
    fclose(f);
    return e ? strerror(e) : NULL;
}

/* check_includes - every @include names a regular file (or none, which
 * libconfig reports itself): libconfig 1.5's scanner calls exit(2) on a
 * directory ("input in flex scanner failed") and would block on a FIFO, so
 * a reload with `@include "."` would stop the daemon. Followed to the depth
 * libconfig allows. true when one is refused (reported). */
static bool check_includes(struct loader *L, const char *file, int depth)
{
    FILE *f = fopen(file, "r");
    char buf[4096], full[PATH_MAX], text[PATH_MAX + 256];
    unsigned lineno = 0;
    bool bad = false;

    if (f == NULL)
        return false;
    while (fgets(buf, sizeof(buf), f) != NULL) {
        char *p = buf + strspn(buf, " \t"), *q;
        struct stat st;

        lineno++;
        if (strncmp(p, "@include", 8) != 0)
            continue;
        p += 8;
        p += strspn(p, " \t");
        if (*p != '"' || (q = strchr(p + 1, '"')) == NULL)
            continue;
        *q = '\0';
        p++;
        if (p[0] != '/' && L->dir != NULL)
            snprintf(full, sizeof(full), "%s/%s", L->dir, p);
        else
            snprintf(full, sizeof(full), "%s", p);
        if (stat(full, &st) != 0)
            continue;
        if (!S_ISREG(st.st_mode)) {
            snprintf(text, sizeof(text), "%s:%u: @include: \"%s\" is not a regular file",
                     depth == 0 ? L->path : file, lineno, p);
            add_problem(L, L->path, lineno, text);
            bad = true;
        } else if (depth < 10) {
            bad |= check_includes(L, full, depth + 1);
        }
    }
    fclose(f);
    return bad;
}

static void parse(struct loader *L)
{
    char line[1024];

    if (check_includes(L, L->path, 0))
        return;
    if (!config_read_file(&L->cf, L->path)) {
        const char *file = display_file(L, config_error_file(&L->cf));

        if (config_error_type(&L->cf) == CONFIG_ERR_FILE_IO)    /* an @include */
            snprintf(line, sizeof(line), "%s: cannot read: %s", file,
                     config_error_text(&L->cf));
        else
            snprintf(line, sizeof(line), "%s:%d: syntax: %s", file,
                     config_error_line(&L->cf), config_error_text(&L->cf));
        add_problem(L, file, (unsigned)config_error_line(&L->cf), line);
        return;
    }
    for (unsigned i = 0; L->cf.filenames && i < L->cf.num_filenames; i++) {
        const char *f = L->cf.filenames[i];
        char full[PATH_MAX];

        if (f[0] != '/' && L->dir != NULL)
            snprintf(full, sizeof(full), "%s/%s", L->dir, f);
        else
            snprintf(full, sizeof(full), "%s", f);
        if (unsafe_path(full, line, sizeof(line)) != NULL) {
            add_problem(L, display_file(L, L->cf.filenames[i]), 0, line);
            return;
        }
        scan_wide_ints(L, display_file(L, L->cf.filenames[i]));
    }
    apply_defaults(root_keys, &L->conf->s);
    walk(L, config_root_setting(&L->cf), root_keys, &L->conf->s, "");
    if (!L->oom)
        finish(L);
}

sg_conf_t *sg_conf_load(const char *path, sg_conf_err_fn err, void *ctx)
{
    struct loader L = { .path = path };
    sg_conf_t *conf = NULL;
    const char *why;
    char line[1024];
    char *slash;

    if ((why = readable(path)) != NULL) {
        snprintf(line, sizeof(line), "%s: cannot read: %s", path, why);
        say(err, ctx, line);
        return NULL;
    }
    if (unsafe_path(path, line, sizeof(line)) != NULL) {
        say(err, ctx, line);
        return NULL;
    }
    L.conf = calloc(1, sizeof(*L.conf));
    /* The snapshot keeps an absolute path: a reload must find the same file
     * once the daemon works in "/". */
    if (path[0] != '/' && getcwd(line, sizeof(line) - 2) != NULL &&
        strlen(line) + strlen(path) + 2 <= sizeof(line)) {
        strcat(line, "/");
        strcat(line, path);
    } else {
        snprintf(line, sizeof(line), "%s", path);
    }
    if (L.conf == NULL || (L.conf->path = strdup(line)) == NULL ||
        (L.dir = strdup(path)) == NULL) {
        snprintf(line, sizeof(line), "%s: out of memory", path);
        say(err, ctx, line);
        if (L.conf)
            free(L.conf->path);
        free(L.conf);
        return NULL;
    }
    atomic_init(&L.conf->refs, 1);
    config_init(&L.cf);
    if ((slash = strrchr(L.dir, '/')) != NULL) {   /* @include: relative to path's dir */
        slash[slash == L.dir] = '\0';               /* "/x.conf" keeps "/" */
        config_set_include_dir(&L.cf, L.dir);
    } else {
        free(L.dir);
        L.dir = NULL;
    }

    parse(&L);

    if (L.nprobs > 1)
        qsort_r(L.probs, L.nprobs, sizeof(*L.probs), problem_cmp, (void *)path);
    for (size_t i = 0; i < L.nprobs; i++) {
        say(err, ctx, L.probs[i].text);
        free(L.probs[i].text);
    }
    if (L.oom) {
        snprintf(line, sizeof(line), "%s: out of memory", path);
        say(err, ctx, line);
    }
    if (L.nprobs > 0 || L.oom)
        free_conf(L.conf);
    else
        conf = L.conf;
    config_destroy(&L.cf);
    for (size_t i = 0; i < L.nnames; i++)
        free(L.names[i].shown);
    free(L.names);
    free(L.probs);
    free(L.dir);
    return conf;
}

const struct sg_settings *sg_conf_settings(const sg_conf_t *conf)
{
    return &conf->s;
}

const char *sg_conf_path(const sg_conf_t *conf)
{
    return conf->path;
}

sg_conf_t *sg_conf_ref(sg_conf_t *conf)
{
    if (conf != NULL)
        atomic_fetch_add(&conf->refs, 1);
    return conf;
}

void sg_conf_unref(sg_conf_t *conf)
{
    if (conf != NULL && atomic_fetch_sub(&conf->refs, 1) == 1)
        free_conf(conf);
}

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static sg_conf_t *current;

sg_conf_t *sg_conf_current(void)
{
    sg_conf_t *c;

    pthread_mutex_lock(&current_lock);
    c = sg_conf_ref(current);
    pthread_mutex_unlock(&current_lock);
    return c;
}

void sg_conf_swap(sg_conf_t *conf)
{
    sg_conf_t *old;

    pthread_mutex_lock(&current_lock);
    old = current;
    current = conf;
    pthread_mutex_unlock(&current_lock);
    sg_conf_unref(old);                         /* outside the lock: may free */
}

const char *sg_action_name(enum sg_action a)
{
    switch (a) {
    case SG_ACT_ACCEPT:   return "accept";
    case SG_ACT_WARN:     return "warn";
    case SG_ACT_TEMPFAIL: return "tempfail";
    case SG_ACT_HOLD:     return "hold";
    case SG_ACT_REJECT:   return "reject";
    }
    return "?";
}

const char *sg_unit_name(enum sg_unit u)
{
    switch (u) {
    case SG_UNIT_MESSAGES:   return "messages";
    case SG_UNIT_RECIPIENTS: return "recipients";
    case SG_UNIT_BYTES:      return "bytes";
    case SG_UNIT_DISTINCT:   return "distinct_recipients";
    case SG_UNIT_COUNT:      break;
    }
    return "?";
}

const char *sg_offer_name(enum sg_offer o)
{
    switch (o) {
    case SG_OFFER_NONE:          return "none";
    case SG_OFFER_EXCHANGE:      return "exchange";
    case SG_OFFER_EMAILPRO:      return "emailpro";
    case SG_OFFER_MXPLAN:        return "mxplan";
    case SG_OFFER_MXPLAN_LEGACY: return "mxplan-legacy";
    }
    return "?";
}

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
