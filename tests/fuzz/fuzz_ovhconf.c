/*
 * fuzz_ovhconf - ovh.conf, the OVHcloud API credentials file (INI, the
 * format of the official clients), read by ovh/sg_ovh_cred.c. The input is
 * written to a 0600 file in a private directory and read as the explicit
 * `ovh.credentials` file (sg_ovh_creds_load_files, what sg_ovh_creds_load
 * does for a configured path). The OVH_* variables are cleared first so
 * only the file counts.
 * Checks: an error names the file and never holds a secret (the values of
 * application_secret, consumer_key, client_secret must not show in it);
 * loaded credentials answer the accessors.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sg_ovh.h"
#include "sg_ovh_internal.h"

static char dir[] = "/tmp/sg-fuzz-ovhconf-XXXXXX";
static char path[sizeof(dir) + 32];

static void at_exit(void)
{
    unlink(path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *vars[] = { "OVH_ENDPOINT", "OVH_APPLICATION_KEY", "OVH_APPLICATION_SECRET",
                                  "OVH_CONSUMER_KEY", "OVH_CLIENT_ID", "OVH_CLIENT_SECRET" };

    (void)argc;
    (void)argv;
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof(path), "%s/ovh.conf", dir);
    atexit(at_exit);
    return 0;
}

/* The value of a `key=` line of the input (key first on its line), when it
 * is long enough that finding it in an error text is no coincidence. */
static bool secret_leaked(const char *in, const char *key, const char *err)
{
    size_t kl = strlen(key);

    for (const char *p = strstr(in, key); p; p = strstr(p + 1, key)) {
        const char *v = p + kl, *end, *b = p;
        char val[256];
        size_t n;

        while (b > in && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (b > in && b[-1] != '\n')
            continue;             /* not the line's key */
        while (*v == ' ' || *v == '\t')
            v++;
        if (*v != '=')
            continue;
        v++;
        while (*v == ' ' || *v == '\t')
            v++;
        end = strchr(v, '\n');
        n = end ? (size_t)(end - v) : strlen(v);
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r'))
            n--;
        if (n < 8 || n >= sizeof(val))
            continue;
        memcpy(val, v, n);
        val[n] = '\0';
        /* the same text elsewhere (say as the endpoint) may be quoted */
        const char *first = strstr(in, val);
        if (first && strstr(first + 1, val) == NULL && strstr(err, val))
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *paths[1] = { path };
    char err[512], *text;
    sg_ovh_creds_t *c;
    FILE *f;

    if (!(f = fopen(path, "w")))
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    if (fclose(f) != 0 || chmod(path, 0600) != 0)
        abort();
    err[0] = '\0';
    c = sg_ovh_creds_load_files(paths, 1, true, NULL, err, sizeof(err));
    if (!c) {
        if (err[0] == '\0' || strnlen(err, sizeof(err)) >= sizeof(err))
            abort();
        if (!(text = malloc(size + 1)))
            return 0;
        memcpy(text, data, size);
        text[size] = '\0';
        if (secret_leaked(text, "application_secret", err) ||
            secret_leaked(text, "consumer_key", err) || secret_leaked(text, "client_secret", err))
            abort();              /* a secret in an error text (it goes to logs) */
        free(text);
        return 0;
    }
    (void)sg_ovh_creds_endpoint(c);
    (void)sg_ovh_creds_auth(c);
    (void)sg_ovh_creds_files(c);
    (void)sg_ovh_creds_get(c, "application_key");
    sg_ovh_creds_free(c);
    return 0;
}
