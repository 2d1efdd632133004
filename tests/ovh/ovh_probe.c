/*
 * ovh_probe.c - a test driver for the sg_ovh calls no sendguardctl command
 * exposes yet (ticket messages, replies, password changes, redirections)
 * and for the watcher. Output: one JSON document per result on stdout;
 * exit 0 on success, 1 on an API error (the error as JSON), 64 on usage.
 *
 *   ovh_probe -k OVH.CONF CMD ...
 *     status ACCT | find ACCT NUMBER | messages TICKET_ID | reply TICKET_ID (text on stdin)
 *     password ACCT (password on stdin) | redirections ACCT | delta
 *     script ACCT...   commands on stdin: "round", "quit": the watcher round
 *                      over a memory store, states printed after each round
 *     watcher CONFIG   commands on stdin: "kick", "state ADDR", "stop"
 *   ACCT = offer:address[:organization:service] (offer as in the config)
 *
 * Built twice: ovh_probe, the API client alone (no store: `ldd` shows no
 * hiredis, test_ovh_link.py), and watch_probe (SG_PROBE_WATCH: with the
 * workflow's watcher for script and watcher).
 *
 * Secrets are read from files or stdin, never from argv.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "sg_log.h"
#include "sg_ovh.h"
#ifdef SG_PROBE_WATCH
#include "sg_store.h"
#include "sg_watch.h"
#endif

static const char *creds_path;

static int usage(void)
{
    fprintf(stderr, "usage: ovh_probe -k OVH.CONF status|find|messages|reply|password|"
                    "redirections|delta|script|watcher ...\n");
    return 64;
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    printf("%s\n", s ? s : "null");
    fflush(stdout);
    free(s);
    json_decref(j);
}

static int fail(const struct sg_ovh_err *e)
{
    char msg[1024];

    print_json(json_pack("{s:s,s:i,s:I,s:s,s:s,s:s}", "error", sg_ovh_strerror(e, msg, sizeof(msg)),
                         "rc", (int)e->rc, "http_status", (json_int_t)e->http_status,
                         "code", e->code, "query_id", e->query_id, "message", e->message));
    return 1;
}

/* Strings the parsed accounts point into, freed at exit. */
static char *arena[64];
static size_t narena;

static char *keep(char *p)
{
    if (p && narena < sizeof(arena) / sizeof(arena[0]))
        arena[narena++] = p;
    return p;
}

static void arena_free(void)
{
    while (narena > 0)
        free(arena[--narena]);
}

/* parse_account - "offer:address[:org:service]" into an account */
static bool parse_account(const char *spec, struct sg_account *a)
{
    char *s = keep(strdup(spec)), *save = NULL;
    char *offer = strtok_r(s, ":", &save), *addr = strtok_r(NULL, ":", &save);
    char *org = strtok_r(NULL, ":", &save), *svc = strtok_r(NULL, ":", &save);

    memset(a, 0, sizeof(*a));
    if (!offer || !addr || !strchr(addr, '@'))
        return false;
    if (strcmp(offer, "exchange") == 0) {
        a->offer = SG_OFFER_EXCHANGE;
        a->organization = org;
        a->service = svc;
    } else if (strcmp(offer, "emailpro") == 0) {
        a->offer = SG_OFFER_EMAILPRO;
        a->service = org;
    } else if (strcmp(offer, "mxplan") == 0) {
        a->offer = SG_OFFER_MXPLAN;
        a->service = org;
    } else if (strcmp(offer, "mxplan-legacy") == 0) {
        a->offer = SG_OFFER_MXPLAN_LEGACY;
    } else {
        return false;
    }
    a->address = addr;
    a->local = keep(strndup(addr, (size_t)(strchr(addr, '@') - addr)));
    a->domain = strchr(addr, '@') + 1;
    return true;
}

static char *read_stdin(void)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;

    while ((r = fread(buf + n, 1, cap - n - 1, stdin)) > 0) {
        n += r;
        if (n + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[n] = '\0';
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    return buf;
}

static sg_ovh_t *client(struct sg_ovh_err *e)
{
    char err[sizeof(e->message)];
    struct sg_ovh_opts o;
    sg_ovh_creds_t *c = sg_ovh_creds_load(creds_path, NULL, err, sizeof(err));
    sg_ovh_t *cl;

    if (!c) {
        memset(e, 0, sizeof(*e));
        e->rc = SG_OVH_E_CONFIG;
        snprintf(e->message, sizeof(e->message), "%s", err);
        return NULL;
    }
    sg_ovh_opts_default(&o);
    o.timeout_ms = getenv("PROBE_TIMEOUT_MS") ? atoi(getenv("PROBE_TIMEOUT_MS")) : 5000;
    cl = sg_ovh_new(c, &o, e);
    sg_ovh_creds_free(c);
    return cl;
}

#ifdef SG_PROBE_WATCH
static json_t *state_json(const char *addr, const struct sg_account_state *s)
{
    return json_pack("{s:s,s:b,s:I,s:s,s:s,s:s,s:I,s:I}", "account", addr, "blocked", s->blocked,
                     "ticket", (json_int_t)s->ticket, "phase", s->phase, "state", s->state,
                     "note", s->note, "checked_ms", (json_int_t)s->checked_ms,
                     "since_ms", (json_int_t)s->since_ms);
}

static int changes;

static void on_change(void *ctx, const struct sg_account *a, const struct sg_account_state *st)
{
    (void)ctx;
    (void)a;
    (void)st;
    changes++;
}

static int cmd_script(sg_ovh_t *c, int n, char **specs)
{
    struct sg_account *accts = calloc((size_t)n, sizeof(*accts));
    sg_store_t *store = sg_store_memory_new(NULL, NULL);
    struct sg_watch_hooks hooks = { .on_change = on_change };
    char line[256];

    for (int i = 0; i < n; i++)
        if (!parse_account(specs[i], &accts[i]))
            return usage();
    while (fgets(line, sizeof(line), stdin)) {
        if (strncmp(line, "quit", 4) == 0)
            break;
        if (strncmp(line, "round", 5) != 0)
            continue;
        size_t failed = sg_watch_round(c, store, NULL, accts, (size_t)n, &hooks,
                                       (int64_t)time(NULL) * 1000);
        json_t *states = json_array();
        for (int i = 0; i < n; i++) {
            struct sg_account_state s;
            sg_store_state_get(store, accts[i].address, &s);
            json_array_append_new(states, state_json(accts[i].address, &s));
        }
        print_json(json_pack("{s:I,s:i,s:o}", "failed", (json_int_t)failed, "changes", changes,
                             "states", states));
    }
    sg_store_free(store);
    free(accts);
    return 0;
}

static sg_conf_t *g_conf;

static sg_conf_t *get_conf(void)
{
    return sg_conf_ref(g_conf);
}

static int cmd_watcher(const char *config)
{
    char err[512], line[512];
    sg_store_t *store;
    sg_watch_t *w;

    if (!(g_conf = sg_conf_load(config, NULL, NULL)))
        return 78;
    store = sg_store_memory_new(NULL, NULL);
    if (!(w = sg_watch_start(get_conf, store, NULL, err, sizeof(err)))) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    print_json(json_pack("{s:s}", "started", "yes"));
    while (fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strcmp(line, "kick") == 0) {
            sg_watch_kick(w);
            print_json(json_pack("{s:s}", "kicked", "yes"));
        } else if (strncmp(line, "state ", 6) == 0) {
            struct sg_account_state s;
            sg_store_state_get(store, line + 6, &s);
            print_json(state_json(line + 6, &s));
        } else if (strcmp(line, "stop") == 0) {
            break;
        }
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sg_watch_stop(w);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    print_json(json_pack("{s:I}", "stop_ms",
                         (json_int_t)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000)));
    sg_store_free(store);
    sg_conf_unref(g_conf);
    return 0;
}

#endif

int main(int argc, char **argv)
{
    int opt;
    struct sg_ovh_err e;
    struct sg_account a;

    while ((opt = getopt(argc, argv, "+k:")) != -1) {
        if (opt == 'k')
            creds_path = optarg;
        else
            return usage();
    }
    argc -= optind;
    argv += optind;
    if (argc < 1)
        return usage();
    sg_log_open("ovh_probe", LOG_USER, true);
    if (sg_ovh_global_init() != 0)
        return 1;
#ifdef SG_PROBE_WATCH
    if (strcmp(argv[0], "watcher") == 0)
        return argc == 2 ? cmd_watcher(argv[1]) : usage();
#endif

    sg_ovh_t *c = client(&e);
    if (!c)
        return fail(&e);
    int rc = 0;
    const char *cmd = argv[0];

    if (strcmp(cmd, "delta") == 0) {
        int64_t d;
        rc = sg_ovh_time_delta(c, &d, &e) == 0 ? (print_json(json_pack("{s:I}", "delta", (json_int_t)d)), 0)
                                               : fail(&e);
    } else if (strcmp(cmd, "status") == 0 && argc == 2 && parse_account(argv[1], &a)) {
        struct sg_ovh_status st;
        if (sg_ovh_account_status(c, &a, &st, &e) != 0)
            rc = fail(&e);
        else
            print_json(json_pack("{s:b,s:I,s:s}", "blocked", st.blocked, "ticket", (json_int_t)st.ticket,
                                 "state", st.state));
    } else if (strcmp(cmd, "find") == 0 && argc == 3 && parse_account(argv[1], &a)) {
        struct sg_ovh_ticket t;
        if (sg_ovh_ticket_find(c, &a, strtoll(argv[2], NULL, 10), &t, &e) != 0)
            rc = fail(&e);
        else
            print_json(json_pack("{s:I,s:I,s:s,s:s,s:s,s:s}", "id", (json_int_t)t.id,
                                 "number", (json_int_t)t.number, "subject", t.subject, "state", t.state,
                                 "service", t.service, "last_from", t.last_from));
    } else if (strcmp(cmd, "messages") == 0 && argc == 2) {
        struct sg_ovh_message *m;
        size_t n;
        if (sg_ovh_ticket_messages(c, strtoll(argv[1], NULL, 10), &m, &n, &e) != 0) {
            rc = fail(&e);
        } else {
            struct sg_ovh_evidence ev;
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, json_pack("{s:I,s:s,s:s,s:s}", "id", (json_int_t)m[i].id,
                                                     "from", m[i].from, "date", m[i].date, "body", m[i].body));
            sg_ovh_ticket_evidence(m, n, &ev);
            print_json(json_pack("{s:o,s:i,s:s?}", "messages", arr, "suspicious", (int)ev.suspicious,
                                 "headers", ev.headers));
            sg_ovh_evidence_clear(&ev);
            sg_ovh_messages_free(m, n);
        }
    } else if (strcmp(cmd, "reply") == 0 && argc == 2) {
        char *text = read_stdin();
        rc = sg_ovh_ticket_reply(c, strtoll(argv[1], NULL, 10), text, &e) == 0
             ? (print_json(json_pack("{s:s}", "replied", "yes")), 0) : fail(&e);
        free(text);
    } else if (strcmp(cmd, "password") == 0 && argc == 2 && parse_account(argv[1], &a)) {
        char *pw = read_stdin();
        int64_t task;
        rc = sg_ovh_change_password(c, &a, pw, &task, &e) == 0
             ? (print_json(json_pack("{s:I}", "task", (json_int_t)task)), 0) : fail(&e);
        free(pw);
    } else if (strcmp(cmd, "redirections") == 0 && argc == 2 && parse_account(argv[1], &a)) {
        char **to;
        size_t n;
        if (sg_ovh_redirections(c, &a, &to, &n, &e) != 0) {
            rc = fail(&e);
        } else {
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, json_string(to[i]));
            print_json(json_pack("{s:o}", "to", arr));
            sg_ovh_strv_free(to, n);
        }
#ifdef SG_PROBE_WATCH
    } else if (strcmp(cmd, "script") == 0 && argc >= 2) {
        rc = cmd_script(c, argc - 1, argv + 1);
#endif
    } else {
        rc = usage();
    }
    sg_ovh_free(c);
    arena_free();
    return rc;
}
