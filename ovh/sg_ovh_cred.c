/*
 * sg_ovh_cred.c - API credentials from ovh.conf files and OVH_* variables,
 * read the way the official OVH clients read them.
 *
 * Lookup: the `ovh.credentials` file alone when configured, else
 * /etc/ovh.conf, ~/.ovh.conf, ./ovh.conf, a later file winning key by key;
 * OVH_* environment variables win over every file. The endpoint comes from
 * `ovh.endpoint`, else OVH_ENDPOINT, else [default] endpoint=; the keys
 * from the section named by the endpoint (alias or URL).
 * Must not: accept a file that group or others can read or write, or put a
 * secret value in an error message. Secrets are wiped when freed.
 */
#include "sg_ovh_internal.h"
#include "sg_log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { F_AK, F_AS, F_CK, F_CID, F_CSECRET, F_COUNT };

static const char *const field_key[F_COUNT] = {
    "application_key", "application_secret", "consumer_key", "client_id", "client_secret",
};
static const char *const field_env[F_COUNT] = {
    "OVH_APPLICATION_KEY", "OVH_APPLICATION_SECRET", "OVH_CONSUMER_KEY",
    "OVH_CLIENT_ID", "OVH_CLIENT_SECRET",
};

struct sg_ovh_creds {
    char *endpoint;
    char *field[F_COUNT];
    char files[1024];
    enum sg_ovh_auth auth;
};

/* One "[section] key=value" of the files read so far. */
struct entry {
    char *section;
    char *key;
    char *value;
    struct entry *next;
};

/* esc_text - a file name or endpoint made safe for an error message */
static const char *esc_text(char *dst, size_t size, const char *src)
{
    sg_ovh_err_field(dst, size, src, strlen(src));
    return dst;
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void entries_free(struct entry *e)
{
    while (e) {
        struct entry *next = e->next;
        free(e->section);
        free(e->key);
        wipe_free(e->value);
        free(e);
        e = next;
    }
}

static struct entry *entry_find(struct entry *e, const char *section, const char *key)
{
    for (; e; e = e->next)
        if (strcmp(e->section, section) == 0 && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* check_mode - the refusal every reader of API secrets should make */
static bool check_mode(const char *path, const struct stat *st, char *err, size_t errlen)
{
    char esc[300];

    esc_text(esc, sizeof(esc), path);
    if (!S_ISREG(st->st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", esc);
        return false;
    }
    if (st->st_mode & (S_IRGRP | S_IROTH)) {
        snprintf(err, errlen, "%s: mode %04o lets other users read the API secrets; run: chmod 600 %s",
                 esc, (unsigned)(st->st_mode & 07777), esc);
        return false;
    }
    if (st->st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(err, errlen, "%s: mode %04o lets other users change the API credentials; run: chmod 600 %s",
                 esc, (unsigned)(st->st_mode & 07777), esc);
        return false;
    }
    return true;
}

/* parse_file - add a file's keys to *list (later wins). Returns 1 read,
 * 0 skipped (missing, when allowed), -1 error. */
static int parse_file(const char *path, bool must_exist, struct entry **list,
                      char *err, size_t errlen)
{
    char esc[300];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    esc_text(esc, sizeof(esc), path);
    if (fd < 0) {
        if (!must_exist && (errno == ENOENT || errno == ENOTDIR || errno == EACCES))
            return 0;
        snprintf(err, errlen, "%s: %s", esc, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", esc, strerror(errno));
        close(fd);
        return -1;
    }
    if (!check_mode(path, &st, err, errlen)) {
        close(fd);
        return -1;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", esc, strerror(errno));
        close(fd);
        return -1;
    }

    char *line = NULL, *section = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned lineno = 0;
    int rc = 1;

    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if ((size_t)len != strlen(line) || len > 8192) {
            snprintf(err, errlen, "%s:%u: line too long or holds a NUL byte", esc, lineno);
            rc = -1;
            break;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end || end[1] != '\0' || end == s + 1) {
                snprintf(err, errlen, "%s:%u: malformed section header", esc, lineno);
                rc = -1;
                break;
            }
            *end = '\0';
            free(section);
            section = strdup(trim(s + 1));
            if (!section) {
                snprintf(err, errlen, "out of memory");
                rc = -1;
                break;
            }
            continue;
        }
        char *sep = s + strcspn(s, "=:");
        if (*sep == '\0') {
            snprintf(err, errlen, "%s:%u: expected key=value", esc, lineno);
            rc = -1;
            break;
        }
        if (!section) {
            snprintf(err, errlen, "%s:%u: key outside any [section]", esc, lineno);
            rc = -1;
            break;
        }
        *sep = '\0';
        char *key = trim(s), *value = trim(sep + 1);
        if (*key == '\0') {
            snprintf(err, errlen, "%s:%u: empty key", esc, lineno);
            rc = -1;
            break;
        }
        for (char *k = key; *k; k++)
            *k = (char)tolower((unsigned char)*k);

        struct entry *e = entry_find(*list, section, key);
        char *v = strdup(value);
        if (!v) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        if (e) {
            wipe_free(e->value);
            e->value = v;
        } else {
            e = calloc(1, sizeof(*e));
            if (!e || !(e->section = strdup(section)) || !(e->key = strdup(key))) {
                if (e) {
                    free(e->section);
                    free(e);
                }
                wipe_free(v);
                snprintf(err, errlen, "out of memory");
                rc = -1;
                break;
            }
            e->value = v;
            e->next = *list;
            *list = e;
        }
    }
    if (line) {
        explicit_bzero(line, cap);
        free(line);
    }
    free(section);
    fclose(f);
    return rc;
}

static const char *nonempty(const char *s)
{
    return s && *s ? s : NULL;
}

sg_ovh_creds_t *sg_ovh_creds_load_files(const char *const *paths, size_t npaths,
                                        bool explicit_files, const char *endpoint,
                                        char *err, size_t errlen)
{
    struct entry *list = NULL;
    sg_ovh_creds_t *c = calloc(1, sizeof(*c));
    char esc[300], base[512];

    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < npaths; i++) {
        int r = parse_file(paths[i], explicit_files, &list, err, errlen);
        if (r < 0)
            goto fail;
        if (r > 0) {
            size_t used = strlen(c->files);
            snprintf(c->files + used, sizeof(c->files) - used, "%s%s", used ? ", " : "",
                     esc_text(esc, sizeof(esc), paths[i]));
        }
    }

    /* The endpoint: the config, the environment, the files. */
    const char *ep = nonempty(endpoint);
    if (!ep)
        ep = nonempty(getenv("OVH_ENDPOINT"));
    if (!ep) {
        struct entry *e = entry_find(list, "default", "endpoint");
        ep = e ? nonempty(e->value) : NULL;
    }
    if (!ep) {
        snprintf(err, errlen, "no OVHcloud API endpoint: set ovh.endpoint in the config, "
                 "endpoint= under [default] in %s, or OVH_ENDPOINT",
                 *c->files ? c->files : "an ovh.conf file");
        goto fail;
    }
    if (!sg_ovh_endpoint_url(ep, base, sizeof(base))) {
        snprintf(err, errlen, "endpoint \"%s\": neither an alias (ovh-eu, ovh-ca, ovh-us, "
                 "kimsufi-eu, kimsufi-ca, soyoustart-eu, soyoustart-ca) nor an https URL "
                 "(plain http only on loopback)", esc_text(esc, sizeof(esc), ep));
        goto fail;
    }
    if (!(c->endpoint = strdup(ep)))
        goto oom;

    for (int f = 0; f < F_COUNT; f++) {
        const char *v = nonempty(getenv(field_env[f]));
        if (!v) {
            struct entry *e = entry_find(list, ep, field_key[f]);
            v = e ? nonempty(e->value) : NULL;
        }
        if (v && !(c->field[f] = strdup(v)))
            goto oom;
    }

    esc_text(esc, sizeof(esc), ep);
    const char *where = *c->files ? c->files : "the OVH_* environment variables";
    bool signed_ = c->field[F_AK] || c->field[F_AS];
    bool oauth = c->field[F_CID] || c->field[F_CSECRET];
    if (signed_ && oauth) {
        snprintf(err, errlen, "[%s] in %s: both application_key/application_secret and "
                 "client_id/client_secret are set; keep one way of authenticating", esc, where);
        goto fail;
    }
    if (signed_ && !(c->field[F_AK] && c->field[F_AS])) {
        snprintf(err, errlen, "[%s] in %s: application_key and application_secret go together; %s is missing",
                 esc, where, c->field[F_AK] ? "application_secret" : "application_key");
        goto fail;
    }
    if (oauth && !(c->field[F_CID] && c->field[F_CSECRET])) {
        snprintf(err, errlen, "[%s] in %s: client_id and client_secret go together; %s is missing",
                 esc, where, c->field[F_CID] ? "client_secret" : "client_id");
        goto fail;
    }
    if (!signed_ && !oauth) {
        snprintf(err, errlen, "no credentials for endpoint %s in %s: put application_key, "
                 "application_secret and consumer_key (or client_id and client_secret) under [%s]",
                 esc, *c->files ? c->files : "any ovh.conf file nor OVH_* variables", esc);
        goto fail;
    }
    if (oauth && !sg_ovh_endpoint_token_url(ep, base, sizeof(base))) {
        snprintf(err, errlen, "endpoint %s has no OAuth2 client credentials; use application keys", esc);
        goto fail;
    }
    c->auth = oauth ? SG_OVH_AUTH_OAUTH2 : SG_OVH_AUTH_SIGNED;
    entries_free(list);
    return c;

oom:
    snprintf(err, errlen, "out of memory");
fail:
    entries_free(list);
    sg_ovh_creds_free(c);
    return NULL;
}

sg_ovh_creds_t *sg_ovh_creds_load(const char *path, const char *endpoint, char *err, size_t errlen)
{
    if (path && *path) {
        const char *one[1] = { path };
        return sg_ovh_creds_load_files(one, 1, true, endpoint, err, errlen);
    }

    char home[1024] = "";
    const char *h = getenv("HOME");
    if (!h || !*h) {
        struct passwd pw, *res = NULL;
        char buf[4096];
        if (getpwuid_r(getuid(), &pw, buf, sizeof(buf), &res) == 0 && res)
            h = res->pw_dir;
    }
    if (h && *h)
        snprintf(home, sizeof(home), "%s/.ovh.conf", h);

    const char *std[3];
    size_t n = 0;
    std[n++] = "/etc/ovh.conf";
    if (*home)
        std[n++] = home;
    std[n++] = "./ovh.conf";
    return sg_ovh_creds_load_files(std, n, false, endpoint, err, errlen);
}

void sg_ovh_creds_free(sg_ovh_creds_t *c)
{
    if (!c)
        return;
    free(c->endpoint);
    for (int f = 0; f < F_COUNT; f++)
        wipe_free(c->field[f]);
    free(c);
}

const char *sg_ovh_creds_endpoint(const sg_ovh_creds_t *c)
{
    return c->endpoint;
}

enum sg_ovh_auth sg_ovh_creds_auth(const sg_ovh_creds_t *c)
{
    return c->auth;
}

const char *sg_ovh_creds_files(const sg_ovh_creds_t *c)
{
    return c->files;
}

const char *sg_ovh_creds_get(const sg_ovh_creds_t *c, const char *key)
{
    if (strcmp(key, "endpoint") == 0)
        return c->endpoint;
    for (int f = 0; f < F_COUNT; f++)
        if (strcmp(key, field_key[f]) == 0)
            return c->field[f];
    return NULL;
}
