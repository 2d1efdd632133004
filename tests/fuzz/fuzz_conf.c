/*
 * fuzz_conf - the configuration file: the input is written to a file in a
 * private directory (mkdtemp) and loaded with sg_conf_load, as `sendguard
 * -t` and a reload do. That directory also holds accounts.conf, so a
 * relative @include has something to read; an input that names an
 * absolute or parent path in an @include is skipped (it could read any
 * file of the machine, /dev/zero included: the file's owner is root, who
 * can do that anyway).
 * Checks: every problem is reported as "FILE:LINE: ..." or "FILE: ..."
 * (the file's own path first), a refused file reports at least one
 * problem, and a loaded snapshot answers the read accessors.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sg_conf.h"
#include "sg_policy.h"

static char dir[] = "/tmp/sg-fuzz-conf-XXXXXX";
static char path[sizeof(dir) + 32];

static void at_exit(void)
{
    char p[sizeof(dir) + 32];

    unlink(path);
    snprintf(p, sizeof(p), "%s/accounts.conf", dir);
    unlink(p);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char inc[] =
        "accounts = ( { address = \"a@example.com\"; offer = \"exchange\";\n"
        "               organization = \"org1\"; service = \"ex1\"; } );\n";
    char p[sizeof(dir) + 32];
    FILE *f;

    (void)argc;
    (void)argv;
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof(path), "%s/sendguard.conf", dir);
    snprintf(p, sizeof(p), "%s/accounts.conf", dir);
    if (!(f = fopen(p, "w")) || fwrite(inc, 1, sizeof(inc) - 1, f) != sizeof(inc) - 1 ||
        fclose(f) != 0)
        abort();
    atexit(at_exit);
    return 0;
}

static size_t nerrors;

static void on_error(void *ctx, const char *line)
{
    size_t n = strlen(path);

    (void)ctx;
    nerrors++;
    if (strncmp(line, path, n) != 0 || line[n] != ':')
        abort();                  /* a problem that does not name its file */
}

static bool risky_include(const uint8_t *d, size_t n)
{
    static const char kw[] = "include";

    for (size_t i = 0; i + sizeof(kw) - 1 <= n; i++)
        if (memcmp(d + i, kw, sizeof(kw) - 1) == 0)
            return memchr(d, '/', n) != NULL || memmem(d, n, "..", 2) != NULL;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f;
    sg_conf_t *c;

    if (risky_include(data, size))
        return 0;
    if (!(f = fopen(path, "w")))
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    if (fclose(f) != 0)
        abort();
    nerrors = 0;
    c = sg_conf_load(path, on_error, NULL);
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
