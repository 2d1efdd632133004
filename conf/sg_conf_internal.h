/*
 * sg_conf_internal.h - what the files of conf/ share, and nobody else may
 * use: the snapshot's layout, the key table format, the loader's state and
 * the helpers one file offers the others (prefix sgc_).
 *
 *   sg_conf.c          the snapshot: load (file safety, libconfig, problem
 *                      list), reference counting, the current snapshot
 *   sg_conf_keys.c     the tables of keys (types, defaults, bounds), the
 *                      string checks they name, and the enum names
 *   sg_conf_parse.c    the value parsers: walk a group against a table
 *   sg_conf_accounts.c limits and accounts, and the cross-key checks run
 *                      once the whole file is read
 *
 * Only conf/ includes this header; the public interface is sg_conf.h.
 */
#ifndef SG_CONF_INTERNAL_H
#define SG_CONF_INTERNAL_H

#include "sg_conf.h"

#include <libconfig.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_LIMITS   32          /* = SG_STORE_MAX_LIMITS in policy/sg_store.h */
#define MAX_ADDRESS  320         /* = SG_ADDR_MAX in policy/sg_policy.h */
#define KEYLEN       256         /* a key path in a message */

#define SEC  1000LL
#define MIN  (60 * SEC)
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)

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

/* The field at byte offset off of base, as a type. */
#define AT(base, off, type) ((type *)(void *)((char *)(base) + (off)))

/* sg_conf_keys.c */
extern const struct key sgc_root_keys[];
extern const struct key sgc_limit_keys[];       /* base: struct sg_limit */
extern const struct key sgc_account_keys[];     /* base: struct sg_account */
extern const struct sg_limit sgc_default_limits[];  /* no top-level `limits` */
extern const size_t sgc_ndefault_limits;
bool sgc_has_ctl_or_space(const char *v);

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

/* sg_conf.c: problems and the snapshot's arena */
void sgc_problem(struct loader *L, const config_setting_t *at, const char *key,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
const char *sgc_setting_file(struct loader *L, const config_setting_t *s);
void *sgc_array(struct loader *L, size_t n, size_t size);   /* zeroed; NULL sets oom */
char *sgc_strndup(struct loader *L, const char *s, size_t n);
char *sgc_strdup(struct loader *L, const char *s);
void sgc_lower(char *s);                                     /* ASCII, in place */

/* sg_conf_parse.c: the value parsers and what their messages are made of */
void sgc_apply_defaults(const struct key *tab, void *base);
void sgc_walk(struct loader *L, const config_setting_t *grp, const struct key *tab,
              void *base, const char *prefix);
void sgc_bad_type(struct loader *L, const config_setting_t *m, const char *path,
                  const char *want);
const char *sgc_quote(char *buf, size_t n, const char *v);
const char *sgc_type_name(const config_setting_t *s);
void sgc_key_join(char *out, size_t n, const char *prefix, const char *name);
void sgc_key_elem(char *out, size_t n, const char *prefix, const config_setting_t *e,
                  const char *member);

/* sg_conf_accounts.c */
void sgc_parse_limits(struct loader *L, const config_setting_t *m, const struct key *k,
                      void *base, const char *path);
void sgc_parse_accounts(struct loader *L, const config_setting_t *m, const struct key *k,
                        void *base, const char *path);
void sgc_finish(struct loader *L);   /* cross-key checks, inherited values */

#endif
