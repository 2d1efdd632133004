/*
 * fuzz_conf - the configuration file: the input is written to a file in a
 * private directory (mkdtemp) and loaded with sg_conf_load, as `sendguard
 * -t` and a reload do. That directory also holds accounts.conf, so a
 * relative @include has something to read; an input that names an
 * absolute or parent path in an @include is skipped (it could read any
 * file of the machine, /dev/zero included: the file's owner is root, who
 * can do that anyway).
 * Checks: every problem is reported as "FILE:LINE: ..." or "FILE: ..."
 * (the path of the file, or of the file it includes, first), a refused file reports at least one
 * problem, and a loaded snapshot answers the read accessors.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sg_conf.h"
#include "sg_policy.h"

static char tmpl[4096];            /* DIR/sg-fuzz-conf-XXXXXX */
static char dir[sizeof(tmpl)], path[sizeof(tmpl) + 32], inc_path[sizeof(tmpl) + 32];
static bool mask_open;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *t = getenv("TMPDIR"), *m = getenv("SG_FUZZ_MASK_OPEN");

    (void)argc;
    (void)argv;
    /* $TMPDIR, else /dev/shm (a file is written per input: memory is much
     * faster than the disk), else /tmp; a private directory per input,
     * removed after it (libFuzzer leaves by _Exit: no atexit clean-up). */
    if (!t || !*t)
        t = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(tmpl, sizeof(tmpl) - 32, "%s/sg-fuzz-conf-XXXXXX", t);
    mask_open = m && strcmp(m, "1") == 0;
    return 0;
}

static void write_file(const char *p, const void *d, size_t n)
{
    FILE *f = fopen(p, "w");

    if (!f || (n && fwrite(d, 1, n, f) != n) || fclose(f) != 0)
        abort();
}

static size_t nerrors;

static void on_error(void *ctx, const char *line)
{
    size_t n = strlen(path), ni = strlen(inc_path);

    (void)ctx;
    nerrors++;
    /* a problem names its file: this one, or the one it includes */
    if (!(strncmp(line, path, n) == 0 && line[n] == ':') &&
        !(strncmp(line, inc_path, ni) == 0 && line[ni] == ':'))
        abort();
}

static bool risky_include(const uint8_t *d, size_t n)
{
    static const char kw[] = "include";

    for (size_t i = 0; i + sizeof(kw) - 1 <= n; i++)
        if (memcmp(d + i, kw, sizeof(kw) - 1) == 0)
            return memchr(d, '/', n) != NULL || memmem(d, n, "..", 2) != NULL;
    return false;
}

/* Finding 2 (RESULTS.md): an @include naming a directory ("" or "." here,
 * up to the closing quote or a NUL) makes libconfig's scanner exit(2). */
static bool known_open(const uint8_t *d, size_t n)
{
    for (const uint8_t *p = d; (p = memmem(p, n - (size_t)(p - d), "include", 7)) != NULL; p++) {
        const uint8_t *q = memchr(p, '"', n - (size_t)(p - d));
        if (!q)
            return false;
        q++;
        while (q < d + n && *q == '.')
            q++;
        if (q >= d + n || *q == '"' || *q == '\0')
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char inc[] =
        "accounts = ( { address = \"a@example.com\"; offer = \"exchange\";\n"
        "               organization = \"org1\"; service = \"ex1\"; } );\n";
    sg_conf_t *c;

    if (risky_include(data, size) || (mask_open && known_open(data, size)))
        return 0;
    memcpy(dir, tmpl, sizeof(dir));
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof(path), "%s/sendguard.conf", dir);
    snprintf(inc_path, sizeof(inc_path), "%s/accounts.conf", dir);
    write_file(inc_path, inc, sizeof(inc) - 1);
    write_file(path, data, size);
    nerrors = 0;
    c = sg_conf_load(path, on_error, NULL);
    unlink(path);
    unlink(inc_path);
    rmdir(dir);
    if (!c) {
        if (nerrors == 0)
            abort();              /* refused without saying why */
        return 0;
    }
    const struct sg_settings *s = sg_conf_settings(c);
    for (size_t i = 0; i < s->naccounts; i++) {
        const struct sg_account *a = &s->accounts[i];
        if (!a->address || sg_conf_find_account(c, a->address) == NULL)
            abort();
        for (size_t k = 0; k < a->nsenders; k++)
            (void)sg_policy_account(s, a->senders[k]);
        (void)sg_offer_name(a->offer);
        (void)sg_action_name(a->on_block);
    }
    for (size_t i = 0; i < s->nlimits; i++)
        for (int u = 0; u < SG_UNIT_COUNT; u++)
            (void)sg_unit_name((enum sg_unit)u);
    sg_conf_unref(sg_conf_ref(c));
    sg_conf_unref(c);
    return 0;
}
