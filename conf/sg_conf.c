/*
 * sg_conf.c - the snapshot: load a configuration file into a validated,
 * immutable, reference-counted snapshot (sg_conf_load), share it
 * (ref/unref), and swap the process-wide current one on reload.
 *
 * Loading: refuse a file (or @include, or directory above) others could
 * change, parse it with libconfig, walk it against the tables
 * (sg_conf_parse.c, sg_conf_keys.c), run the cross-key checks
 * (sg_conf_accounts.c). Problems are collected, sorted by file and line,
 * and reported as "FILE:LINE: key: problem"; a single one makes the load
 * fail and frees everything built so far.
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
#include "sg_conf_internal.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Loading state                                                             */

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

const char *sgc_setting_file(struct loader *L, const config_setting_t *s)
{
    return display_file(L, s ? config_setting_source_file(s) : NULL);
}

/* sgc_problem - report "FILE:LINE: key: what" about setting `at`. */
void sgc_problem(struct loader *L, const config_setting_t *at, const char *key,
                    const char *fmt, ...)
{
    char what[768], line[1280];
    const char *file = sgc_setting_file(L, at);
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

static void *arena_alloc(struct loader *L, size_t n)
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

void *sgc_array(struct loader *L, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size) {
        L->oom = true;
        return NULL;
    }
    return arena_alloc(L, n * size);
}

char *sgc_strndup(struct loader *L, const char *s, size_t n)
{
    char *d = arena_alloc(L, n + 1);

    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

char *sgc_strdup(struct loader *L, const char *s)
{
    return sgc_strndup(L, s, strlen(s));
}

void sgc_lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
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
    sgc_apply_defaults(sgc_root_keys, &L->conf->s);
    sgc_walk(L, config_root_setting(&L->cf), sgc_root_keys, &L->conf->s, "");
    if (!L->oom)
        sgc_finish(L);
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
