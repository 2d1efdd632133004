/*
 * fuzz_ovhconf - ovh.conf, the OVHcloud API credentials file (INI, the
 * format of the official clients), read by ovh/sg_ovh_cred.c. The input is
 * written to a 0600 file in a private directory and read as the explicit
 * `ovh.credentials` file (sg_ovh_creds_load_files, what sg_ovh_creds_load
 * does for a configured path). The OVH_* variables are cleared first so
 * only the file counts.
 * Checks: an error is one line that fits its buffer and never quotes a
 * secret (the values of application_secret, consumer_key, client_secret;
 * see MARK);
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

static char tmpl[4096];            /* DIR/sg-fuzz-ovhconf-XXXXXX */
static char dir[sizeof(tmpl)], path[sizeof(tmpl) + 32];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *vars[] = { "OVH_ENDPOINT", "OVH_APPLICATION_KEY", "OVH_APPLICATION_SECRET",
                                  "OVH_CONSUMER_KEY", "OVH_CLIENT_ID", "OVH_CLIENT_SECRET" };
    const char *t = getenv("TMPDIR");

    (void)argc;
    (void)argv;
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    /* $TMPDIR, else /dev/shm (a file is written per input), else /tmp; a
     * private directory per input, removed after it. */
    if (!t || !*t)
        t = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(tmpl, sizeof(tmpl) - 32, "%s/sg-fuzz-ovhconf-XXXXXX", t);
    return 0;
}

/* Secrets are recognised by a marker: the seeds' secret values hold
 * "S3CR3T" (so does the dictionary). An error text holding the marker while
 * every occurrence of it in the input is in the value of a secret key
 * (application_secret, consumer_key, client_secret: key first on its line)
 * quotes a secret. (Matching any secret value instead gives false alarms:
 * an error may rightly quote the endpoint, which can hold the same text.) */
#define MARK "S3CR3T"

static bool in_secret_value(const char *in, const char *at)
{
    static const char *const keys[] = { "application_secret", "consumer_key", "client_secret" };
    const char *line = at;

    while (line > in && line[-1] != '\n')
        line--;
    while (*line == ' ' || *line == '\t')
        line++;
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        size_t kl = strlen(keys[k]);
        const char *v = line + kl;
        if (strncmp(line, keys[k], kl) != 0)
            continue;
        while (*v == ' ' || *v == '\t')
            v++;
        if (*v == '=' && v < at)
            return true;
    }
    return false;
}

static bool secret_leaked(const char *in, const char *err)
{
    if (!strstr(err, MARK))
        return false;
    for (const char *p = strstr(in, MARK); p; p = strstr(p + 1, MARK))
        if (!in_secret_value(in, p))
            return false;         /* the marker is also elsewhere: may be quoted */
    return strstr(in, MARK) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *paths[1] = { path };
    char err[512], *text;
    sg_ovh_creds_t *c;
    FILE *f;

    memcpy(dir, tmpl, sizeof(dir));
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof(path), "%s/ovh.conf", dir);
    if (!(f = fopen(path, "w")))
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    if (fclose(f) != 0 || chmod(path, 0600) != 0)
        abort();
    err[0] = '\0';
    c = sg_ovh_creds_load_files(paths, 1, true, NULL, err, sizeof(err));
    unlink(path);
    rmdir(dir);
    if (!c) {
        if (err[0] == '\0' || strnlen(err, sizeof(err)) >= sizeof(err))
            abort();
        if (!(text = malloc(size + 1)))
            return 0;
        memcpy(text, data, size);
        text[size] = '\0';
        if (secret_leaked(text, err))
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
