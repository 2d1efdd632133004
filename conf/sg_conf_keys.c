/*
 * sg_conf_keys.c - every key sendguard knows: the tables (type, default,
 * bounds, flags) that sg_conf_parse.c walks a file against, the string
 * checks they name, the built-in defaults, and the names of the enums.
 *
 * Adding a key: one line in a table below, a field in struct sg_settings
 * (sg_conf.h), and a comment in conf/sendguard.conf.
 *
 * Must not: parse, report problems or allocate: this file is data and
 * pure functions of a string.
 */
#include "sg_conf_internal.h"

#include <string.h>

_Static_assert(sizeof(enum sg_action) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum sg_offer) == sizeof(int), "enums are stored as int");

/* ------------------------------------------------------------------------ */
/* Value checks: NULL when fine, else what is wrong (never the value)       */

bool sgc_has_ctl_or_space(const char *v)
{
    for (; *v; v++)
        if ((unsigned char)*v <= ' ' || (unsigned char)*v == 0x7f)
            return true;
    return false;
}

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
    if (*v == '\0' || sgc_has_ctl_or_space(v))
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
    if (*v == '\0' || sgc_has_ctl_or_space(v) || strlen(v) > MAX_ADDRESS)
        return "must be a sender pattern (\"*@example.com\", \"user@example.com\", "
               "\"login\"), without spaces or control characters";
    return NULL;
}

static const char *check_address(const char *v)
{
    const char *at = strchr(v, '@');

    if (at == NULL || at == v || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
        sgc_has_ctl_or_space(v) || strlen(v) > MAX_ADDRESS || strchr(v, '*') != NULL)
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
        if (v[5] != '/' || sgc_has_ctl_or_space(v + 5))
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
        sgc_has_ctl_or_space(at + 1))
        return "must be inet:PORT@HOST (or inet6:PORT@HOST) with PORT from 1 to 65535";
    return NULL;
}

static const char *check_hostport(const char *v)
{
    static const char *bad = "must be host:port with port from 1 to 65535";
    const char *colon;

    if (sgc_has_ctl_or_space(v))
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

    if (n == 0 || n > 64 || sgc_has_ctl_or_space(v) || strpbrk(v, "{}") != NULL)
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
        if (sgc_has_ctl_or_space(v) || v[n - 1] == '/')
            return "a URL must have no spaces and no trailing '/'";
        return NULL;
    }
    return "must be ovh-eu, ovh-ca, ovh-us, kimsufi-eu, kimsufi-ca, soyoustart-eu, "
           "soyoustart-ca or an https:// URL";
}

/* ------------------------------------------------------------------------ */
/* The tables                                                                */

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

static const char *const default_release[] = { "postsuper", "-H", "-" };

/* Used when the file has no top-level `limits`: below OVHcloud's only
 * published figure (~200 messages per hour per account). */
const struct sg_limit sgc_default_limits[] = {
    { .name = "hourly", .window_ms = HOUR,
      .cap = { [SG_UNIT_MESSAGES] = 150, [SG_UNIT_RECIPIENTS] = 500 },
      .action = SG_ACT_TEMPFAIL, .warn_at = 0.8 },
    { .name = "daily", .window_ms = DAY,
      .cap = { [SG_UNIT_MESSAGES] = 1000 },
      .action = SG_ACT_TEMPFAIL, .warn_at = 0.8 },
};
const size_t sgc_ndefault_limits = sizeof(sgc_default_limits) / sizeof(sgc_default_limits[0]);

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
    { KEY("trace_max", K_INT, R(trace_max)), .min = 100, .max = 10000000, .idef = 50000 },
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

const struct key sgc_limit_keys[] = {      /* base: struct sg_limit */
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

const struct key sgc_account_keys[] = {    /* base: struct sg_account */
    { KEY("address", K_STR, ACC(address)), .flags = F_REQUIRED, .check = check_address },
    { KEY("offer", K_ENUM, ACC(offer)), .flags = F_REQUIRED, .names = offer_names,
      .idef = SG_OFFER_NONE },
    { KEY("organization", K_STR, ACC(organization)), .check = check_word },
    { KEY("service", K_STR, ACC(service)), .check = check_word },
    { LIST("senders", K_STRV, ACC(senders), ACC(nsenders)), .check = check_pattern },
    { LIST("limits", K_LIMITS, ACC(limits), ACC(nlimits)) },
    /* on_block and auto_reply default to the top-level values (see sgc_finish()) */
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

const struct key sgc_root_keys[] = {
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
    { LIST("limits", K_LIMITS, S(limits), S(nlimits)) },   /* default: sgc_default_limits */
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
/* Names, for logs and output                                                */

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
