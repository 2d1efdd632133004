/*
 * sg_conf_parse.c - the value parsers: check each member of a libconfig
 * group against a table of keys (sg_conf_keys.c) and store it, converted,
 * into the snapshot; report each wrong, unknown or missing key as
 * "FILE:LINE: key.path: problem", with a "did you mean" for near misses.
 * Also the built-in defaults of a table and the duration syntax.
 *
 * Keys are written as paths: "milter.socket", "limits[hourly].window",
 * "accounts[sales@example.com].senders[1]" (an element is named by its
 * name/address when it has a usable one, else by its 0-based index).
 *
 * Must not: print the value of a F_SECRET key, keep a pointer into the
 * libconfig tree (strings are copied into the snapshot's arena), or know
 * about accounts and limits beyond handing them to sg_conf_accounts.c.
 */
#include "sg_conf_internal.h"
#include "sg_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* What messages are made of                                                 */

/* sgc_quote - "value" for a message: at most ~64 bytes, unprintables as \xHH. */
const char *sgc_quote(char *buf, size_t n, const char *v)
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

const char *sgc_type_name(const config_setting_t *s)
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

static bool sgc_is_int(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_INT ||
           config_setting_type(s) == CONFIG_TYPE_INT64;
}

static bool sgc_is_string(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_STRING;
}

/* sgc_keyfmt - snprintf for key paths, where cutting a very long path is fine. */
static void sgc_keyfmt(char *out, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void sgc_keyfmt(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out, n, fmt, ap);
    va_end(ap);
}

void sgc_key_join(char *out, size_t n, const char *prefix, const char *name)
{
    sgc_keyfmt(out, n, "%s%s%s", prefix, *prefix ? "." : "", name);
}

/* sgc_key_elem - "prefix[label]" with the element's `member` string when it is
 * plain enough to read, else "prefix[index]". */
void sgc_key_elem(char *out, size_t n, const char *prefix, const config_setting_t *e,
                     const char *member)
{
    const config_setting_t *m = config_setting_is_group(e) ?
                                config_setting_get_member(e, member) : NULL;
    const char *v = m && sgc_is_string(m) ? config_setting_get_string(m) : NULL;
    bool plain = v != NULL && *v != '\0' && strlen(v) <= 64;

    for (const char *p = v; plain && *p; p++)
        if (*p <= ' ' || *p >= 0x7f || *p == '[' || *p == ']' || *p == '"')
            plain = false;
    if (plain)
        snprintf(out, n, "%s[%s]", prefix, v);
    else
        snprintf(out, n, "%s[%d]", prefix, config_setting_index(e));
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

static void store_duration(const struct key *k, void *base, uint64_t ms)
{
    switch (k->dur) {
    case D_MS64:    *AT(base, k->off, uint64_t) = ms; break;
    case D_SEC_INT: *AT(base, k->off, int) = (int)(ms / SEC); break;
    case D_MS_INT:  *AT(base, k->off, int) = (int)ms; break;
    }
}

void sgc_apply_defaults(const struct key *tab, void *base)
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
        case K_GROUP:    sgc_apply_defaults(k->sub, (char *)base + k->off); break;
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

void sgc_bad_type(struct loader *L, const config_setting_t *m, const char *path,
                     const char *want)
{
    sgc_problem(L, m, path, "must be %s (got %s)", want, sgc_type_name(m));
}

/* bad_value - "what (got "value")", the value left out for secrets. */
static void bad_value(struct loader *L, const config_setting_t *m, const char *path,
                      const struct key *k, const char *what, const char *value)
{
    char q[96];

    if (k->flags & F_SECRET)
        sgc_problem(L, m, path, "%s", what);
    else
        sgc_problem(L, m, path, "%s (got %s)", what, sgc_quote(q, sizeof(q), value));
}

static void parse_duration_value(struct loader *L, const config_setting_t *m,
                                 const struct key *k, void *base, const char *path)
{
    char lo[32], hi[32], got[96];
    uint64_t ms;

    if (sgc_is_int(m)) {
        long long v = config_setting_get_int64(m);

        snprintf(got, sizeof(got), "%lld", v);
        if (v <= 0 || (unsigned long long)v > UINT64_MAX / SEC) {
            sgc_problem(L, m, path, "must be a positive number of seconds or a duration "
                    "such as \"90s\", \"5m\", \"1h\" or \"2d\" (got %s)", got);
            return;
        }
        ms = (uint64_t)v * SEC;
    } else if (sgc_is_string(m)) {
        const char *v = config_setting_get_string(m);

        sgc_quote(got, sizeof(got), v);
        if ((k->flags & F_OFF) && strcmp(v, "off") == 0) {
            store_duration(k, base, 0);
            return;
        }
        if (!sg_conf_parse_duration(v, &ms)) {
            sgc_problem(L, m, path, "must be a duration such as \"90s\", \"5m\", \"1h\" or "
                    "\"2d\"%s (got %s)", (k->flags & F_OFF) ? ", or \"off\"" : "", got);
            return;
        }
    } else {
        sgc_problem(L, m, path, "must be a duration such as \"90s\", \"5m\", \"1h\" or \"2d\" "
                "(got %s)", sgc_type_name(m));
        return;
    }
    if (ms < (uint64_t)k->min || ms > (uint64_t)k->max) {
        sgc_problem(L, m, path, "must be between %s and %s (got %s)",
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

    if (sgc_is_string(m)) {
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
    if (sgc_is_string(m))
        sgc_problem(L, m, path, "must be %s (got %s)", list,
                sgc_quote(q, sizeof(q), config_setting_get_string(m)));
    else
        sgc_problem(L, m, path, "must be %s (got %s)", list, sgc_type_name(m));
}

static void parse_strv(struct loader *L, const config_setting_t *m, const struct key *k,
                       void *base, const char *path)
{
    int n;
    const char **v;
    bool ok = true;

    if (config_setting_type(m) != CONFIG_TYPE_ARRAY && !config_setting_is_list(m)) {
        sgc_bad_type(L, m, path, (k->flags & F_ARGV) ? "a command: an array of strings"
                                                 : "an array of strings");
        return;
    }
    n = config_setting_length(m);
    if (n < k->min) {
        sgc_problem(L, m, path, "must not be empty");
        return;
    }
    v = sgc_array(L, (size_t)n, sizeof(*v));
    if (v == NULL)
        return;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(m, (unsigned)i);
        char epath[KEYLEN];
        const char *why;

        sgc_keyfmt(epath, sizeof(epath), "%s[%d]", path, i);
        if (!sgc_is_string(e)) {
            sgc_bad_type(L, e, epath, "a string");
            ok = false;
            continue;
        }
        v[i] = config_setting_get_string(e);
        if (i == 0 && (k->flags & F_ARGV) && *v[i] == '\0') {
            sgc_problem(L, e, epath, "must not be empty (it is the program to run)");
            ok = false;
        } else if (k->check && (why = k->check(v[i])) != NULL) {
            bad_value(L, e, epath, k, why, v[i]);
            ok = false;
        } else if ((v[i] = sgc_strdup(L, v[i])) == NULL) {
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

        if (!sgc_is_string(m)) {
            sgc_bad_type(L, m, path, "a string");
            return;
        }
        v = config_setting_get_string(m);
        if (k->check && (why = k->check(v)) != NULL) {
            bad_value(L, m, path, k, why, v);
            return;
        }
        *AT(base, k->off, const char *) = sgc_strdup(L, v);
        return;
    }
    case K_BOOL:
        if (config_setting_type(m) != CONFIG_TYPE_BOOL) {
            sgc_bad_type(L, m, path, "true or false");
            return;
        }
        *AT(base, k->off, bool) = config_setting_get_bool(m) != 0;
        return;
    case K_INT:
    case K_COUNT: {
        long long v;

        if (!sgc_is_int(m)) {
            sgc_bad_type(L, m, path, k->kind == K_COUNT ? "a positive integer" : "an integer");
            return;
        }
        v = config_setting_get_int64(m);
        if (k->kind == K_COUNT) {
            if (v < 1)
                sgc_problem(L, m, path, "must be a positive integer (got %lld)", v);
            else
                *AT(base, k->off, uint64_t) = (uint64_t)v;
        } else if (v < k->min || v > k->max) {
            sgc_problem(L, m, path, "must be between %lld and %lld (got %lld)", k->min, k->max, v);
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

        if (!sgc_is_int(m) && config_setting_type(m) != CONFIG_TYPE_FLOAT) {
            sgc_bad_type(L, m, path, "a number");
            return;
        }
        v = sgc_is_int(m) ? (double)config_setting_get_int64(m) : config_setting_get_float(m);
        if (!(v > 0.0 && v <= 1.0))
            sgc_problem(L, m, path, "must be more than 0 and at most 1 (got %g)", v);
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

        if (!sgc_is_string(m)) {
            sgc_bad_type(L, m, path, "an octal string such as \"0660\"");
            return;
        }
        v = config_setting_get_string(m);
        n = strlen(v);
        mode = strtol(v, NULL, 8);
        if (n < 3 || n > 4 || strspn(v, "01234567") != n || mode > 0777) {
            sgc_problem(L, m, path, "must be an octal mode such as \"0660\" (got %s)",
                    sgc_quote(q, sizeof(q), v));
            return;
        }
        *AT(base, k->off, int) = (int)mode;
        return;
    }
    case K_FACILITY: {
        int f;

        if (!sgc_is_string(m)) {
            sgc_bad_type(L, m, path, "a string");
            return;
        }
        f = sg_log_facility(config_setting_get_string(m));
        if (f < 0) {
            sgc_problem(L, m, path, "must be mail, daemon, user or local0 to local7 (got %s)",
                    sgc_quote(q, sizeof(q), config_setting_get_string(m)));
            return;
        }
        *AT(base, k->off, int) = f;
        return;
    }
    case K_CHAR: {
        const char *v;

        if (!sgc_is_string(m)) {
            sgc_bad_type(L, m, path, "a string");
            return;
        }
        v = config_setting_get_string(m);
        if (strlen(v) != 1 || v[0] <= ' ' || v[0] >= 0x7f || v[0] == '@' || v[0] == '*' ||
            strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", v[0])) {
            sgc_problem(L, m, path, "must be one character other than a letter, digit, space, "
                    "'@' or '*' (got %s)", sgc_quote(q, sizeof(q), v));
            return;
        }
        *AT(base, k->off, char) = v[0];
        return;
    }
    case K_GROUP:
        if (!config_setting_is_group(m)) {
            sgc_bad_type(L, m, path, "a group { ... }");
            return;
        }
        sgc_walk(L, m, k->sub, (char *)base + k->off, path);
        return;
    case K_LIMITS:
        sgc_parse_limits(L, m, k, base, path);
        return;
    case K_ACCOUNTS:
        sgc_parse_accounts(L, m, k, base, path);
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
        sgc_problem(L, m, path, "unknown key (did you mean \"%s\"?)", best);
    else
        sgc_problem(L, m, path, "unknown key");
}

/* sgc_walk - check every member of grp against tab and store it into base. */
void sgc_walk(struct loader *L, const config_setting_t *grp, const struct key *tab,
                 void *base, const char *prefix)
{
    int n = config_setting_length(grp);
    char path[KEYLEN];

    for (int i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(grp, (unsigned)i);
        const char *name = config_setting_name(m);
        const struct key *k;

        sgc_key_join(path, sizeof(path), prefix, name);
        for (k = tab; k->name && strcmp(k->name, name) != 0; k++)
            ;
        if (k->name == NULL)
            unknown_key(L, m, path, tab);
        else
            parse_value(L, m, k, base, path);
    }
    for (const struct key *k = tab; k->name; k++) {
        if ((k->flags & F_REQUIRED) && config_setting_get_member(grp, k->name) == NULL) {
            sgc_key_join(path, sizeof(path), prefix, k->name);
            sgc_problem(L, grp, path, "is required");
        }
    }
}
