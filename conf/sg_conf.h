/*
 * sg_conf - the configuration: a libconfig file turned into a validated,
 * immutable, reference-counted snapshot.
 *
 * A snapshot never changes once built. Reload builds a new one and swaps
 * it in (sg_conf_swap); whoever holds a reference keeps a consistent view
 * until it lets go. The contents are plain read-only data (struct
 * sg_settings); the lifetime is the opaque handle's.
 */
#ifndef SG_CONF_H
#define SG_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sg_action {
    SG_ACT_ACCEPT = 0,
    SG_ACT_WARN,
    SG_ACT_TEMPFAIL,
    SG_ACT_HOLD,
    SG_ACT_REJECT,
};

enum sg_unit {
    SG_UNIT_MESSAGES = 0,
    SG_UNIT_RECIPIENTS,
    SG_UNIT_BYTES,
    SG_UNIT_DISTINCT,             /* distinct_recipients */
    SG_UNIT_COUNT
};

enum sg_offer {
    SG_OFFER_NONE = 0,            /* implicit account: not an OVHcloud mailbox we know */
    SG_OFFER_EXCHANGE,
    SG_OFFER_EMAILPRO,
    SG_OFFER_MXPLAN,
    SG_OFFER_MXPLAN_LEGACY,
};

struct sg_limit {
    const char *name;
    uint64_t window_ms;           /* > 0 */
    uint64_t cap[SG_UNIT_COUNT];  /* 0 = this unit is not capped */
    enum sg_action action;        /* warn, tempfail, hold or reject */
    double warn_at;               /* fraction in (0,1], default 0.8 */
};

struct sg_account {
    const char *address;          /* lower-cased, the OVHcloud mailbox */
    enum sg_offer offer;
    const char *organization;     /* exchange */
    const char *service;          /* exchange, emailpro, mxplan */
    const char *domain;           /* part after '@' of address */
    const char *local;            /* part before '@' of address */
    const char *const *senders;   /* patterns, lower-cased; address is always first */
    size_t nsenders;
    const struct sg_limit *limits;/* own limits, or the default ones */
    size_t nlimits;
    enum sg_action on_block;      /* hold or tempfail */
    const char *sasl_map_file;    /* NULL when unset */
    bool auto_reply;
    int observe;                  /* mode: 1 = "observe" (default: the top-level mode) */
};

struct sg_redis_settings {
    const char *host;             /* default 127.0.0.1 */
    int port;                     /* default 6379 */
    const char *unix_path;        /* NULL unless set; wins over host/port */
    const char *username;         /* ACL user, NULL */
    const char *password;         /* NULL; never logged */
    int db;
    const char *prefix;           /* default "sg:" */
    int connect_timeout_ms;       /* default 200 */
    int command_timeout_ms;       /* default 200 */
    int pool_size;                /* default 8 */
    const char *sentinel_master;  /* NULL unless sentinel mode */
    const char *const *sentinels; /* "host:port" */
    size_t nsentinels;
    int trace_max;                /* messages in an account's trace index; 0 = 50,000 */
};

struct sg_settings {
    /* milter */
    const char *milter_socket;    /* "inet:PORT@HOST" or "unix:/path" */
    int socket_mode;              /* unix socket mode, default 0660 */
    const char *socket_group;     /* group of a unix socket; NULL = "postfix" if it exists */
    int milter_timeout_s;         /* libmilter I/O timeout */
    int syslog_facility;          /* LOG_MAIL by default */
    const char *user;             /* run as this user; default "sendguard" ("root": stay) */
    const char *pidfile;          /* NULL */

    /* identity */
    bool lowercase;               /* default true */
    bool strip_tag;               /* strip "+tag" from the local part; default false */
    char tag_separator;           /* default '+' */
    const char *const *allow;     /* sender patterns never throttled */
    size_t nallow;
    bool batv;                    /* "prvs=TAG=local@domain" -> local@domain; default false */
    bool srs;                     /* SRS0/SRS1 -> the original sender; default false */
    const char *const *verp;      /* patterns: a matching identity becomes the pattern */
    size_t nverp;
    int flood_threshold;          /* new implicit identities per 10 min to log; 0 = off */

    /* store */
    enum { SG_STORE_MEMORY, SG_STORE_REDIS } store_backend;
    enum { SG_ON_ERROR_ACCEPT, SG_ON_ERROR_TEMPFAIL } store_on_error;
    struct sg_redis_settings redis;
    int memory_max_identities;    /* implicit identities the memory store holds; 0 = auto */

    /* limits and accounts */
    const struct sg_limit *limits;        /* defaults */
    size_t nlimits;
    const struct sg_account *accounts;
    size_t naccounts;
    bool strict;                  /* charge refused messages too; default false */
    int observe;                  /* mode: 1 = "observe": decide and log, accept anyway */
    bool observe_lockdown;        /* in observe mode, accept a locked-down account's mail too */

    /* OVHcloud API */
    const char *ovh_endpoint;     /* alias or URL; NULL = from credentials */
    const char *ovh_credentials;  /* path of ovh.conf; NULL = standard lookup */
    uint64_t ovh_poll_interval_ms;/* default 5m; 0 = watcher off */
    int ovh_timeout_ms;           /* default 10000 */

    /* block workflow */
    enum sg_action on_block;      /* hold (default) or tempfail */
    const char *const *release_command;   /* argv, default postsuper -H - */
    size_t nrelease_command;
    const char *release_helper;   /* unix socket of the root release helper; NULL = run
                                     release_command ourselves */
    const char *const *after_password_change; /* argv or none */
    size_t nafter_password_change;
    const char *const *alert_command;     /* argv or none */
    size_t nalert_command;
    uint64_t alert_interval_ms;   /* default 1h */

    /* metrics: Prometheus textfile */
    const char *metrics_textfile; /* NULL: none written */
    uint64_t metrics_interval_ms; /* default 15s */
    bool auto_reply;              /* default false */
    const char *relay_name;       /* this relay's name, default hostname */
};

typedef struct sg_conf sg_conf_t;

/* Error sink: one call per problem, already formatted "FILE:LINE: key: problem". */
typedef void (*sg_conf_err_fn)(void *ctx, const char *line);

/* Load and validate. NULL on any error, after reporting every problem found
 * through err (stderr when err is NULL). The returned snapshot holds one
 * reference.
 * The file (and every @include) is refused, before anything else, when
 * someone else than its owner can write it (group/other write bit), when a
 * root reader finds it owned by another user than root, or when a
 * directory above it lets others replace it (not sticky and group/other
 * writable, or owned by another user than root and the reader): it names
 * commands that run as root. The problem says what to run ("chmod go-w
 * FILE", "chown root FILE"). */
sg_conf_t *sg_conf_load(const char *path, sg_conf_err_fn err, void *ctx);

const struct sg_settings *sg_conf_settings(const sg_conf_t *conf);
const char *sg_conf_path(const sg_conf_t *conf);     /* absolute */

sg_conf_t *sg_conf_ref(sg_conf_t *conf);
void sg_conf_unref(sg_conf_t *conf);

/* The process-wide current snapshot, for the daemon: get returns a new
 * reference (release with sg_conf_unref); swap installs conf (taking over
 * the caller's reference) and drops the old one. Thread-safe. */
sg_conf_t *sg_conf_current(void);
void sg_conf_swap(sg_conf_t *conf);

/* Names, for logs and output. */
const char *sg_action_name(enum sg_action a);
const char *sg_unit_name(enum sg_unit u);
const char *sg_offer_name(enum sg_offer o);

/* "90s", "5m", "1h", "2d" (a bare number means seconds) → milliseconds.
 * Returns false on a malformed or zero/overflowing value. */
bool sg_conf_parse_duration(const char *s, uint64_t *ms);

/* Find a configured account by address (case-insensitive); NULL if none. */
const struct sg_account *sg_conf_find_account(const sg_conf_t *conf, const char *address);

#endif
