/*
 * test_ovh_cred.c - ovh.conf parsing, the lookup order (later file wins
 * key by key), OVH_* environment overrides, the refusal of files other
 * users can read, and the rule that no secret appears in an error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sg_ovh_internal.h"

static char dir[256];

static const char *const env_names[] = {
    "OVH_ENDPOINT", "OVH_APPLICATION_KEY", "OVH_APPLICATION_SECRET", "OVH_CONSUMER_KEY",
    "OVH_CLIENT_ID", "OVH_CLIENT_SECRET",
};

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
        unsetenv(env_names[i]);
}

/* write_file - dir/name with text and mode; returns the path (static buffer ring) */
static const char *write_file(const char *name, const char *text, mode_t mode)
{
    static char paths[8][512];
    static int next;
    char *p = paths[next++ % 8];
    FILE *f;

    snprintf(p, 512, "%s/%s", dir, name);
    f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(p, mode), 0);
    return p;
}

static int setup(void **state)
{
    (void)state;
    clear_env();
    return 0;
}

static sg_ovh_creds_t *load1(const char *path, const char *endpoint, char *err, size_t errlen)
{
    return sg_ovh_creds_load(path, endpoint, err, errlen);
}

static void test_basic_file(void **state)
{
    char err[1024] = "";
    const char *p = write_file("basic.conf",
        "; comment\n"
        "# another\n"
        "[default]\n"
        "endpoint = ovh-eu\n"
        "\n"
        "[ovh-eu]\n"
        "  Application_Key = AK1  \n"
        "application_secret: SECRETVALUE\n"
        "consumer_key=CK1\r\n"
        "[ovh-ca]\n"
        "application_key=OTHER\n", 0600);
    sg_ovh_creds_t *c = load1(p, NULL, err, sizeof(err));

    (void)state;
    assert_non_null(c);
    assert_string_equal(sg_ovh_creds_endpoint(c), "ovh-eu");
    assert_int_equal(sg_ovh_creds_auth(c), SG_OVH_AUTH_SIGNED);
    assert_string_equal(sg_ovh_creds_get(c, "application_key"), "AK1");
    assert_string_equal(sg_ovh_creds_get(c, "application_secret"), "SECRETVALUE");
    assert_string_equal(sg_ovh_creds_get(c, "consumer_key"), "CK1");
    assert_null(sg_ovh_creds_get(c, "client_id"));
    assert_string_equal(sg_ovh_creds_files(c), p);
    sg_ovh_creds_free(c);

    /* The config's ovh.endpoint picks the section. */
    c = load1(p, "ovh-ca", err, sizeof(err));
    assert_null(c);                                  /* AK without AS under [ovh-ca] */
    assert_non_null(strstr(err, "application_key and application_secret go together"));
    assert_null(strstr(err, "OTHER"));
}

static void test_mode_refused(void **state)
{
    char err[1024] = "", expect[1200];
    const char *p = write_file("open.conf",
        "[default]\nendpoint=ovh-eu\n[ovh-eu]\napplication_key=AK\n"
        "application_secret=SECRETVALUE\nconsumer_key=CK\n", 0644);

    (void)state;
    assert_null(load1(p, NULL, err, sizeof(err)));
    snprintf(expect, sizeof(expect),
             "%s: mode 0644 lets other users read the API secrets; run: chmod 600 %s", p, p);
    assert_string_equal(err, expect);

    assert_int_equal(chmod(p, 0640), 0);
    assert_null(load1(p, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "mode 0640 lets other users read the API secrets; run: chmod 600"));

    assert_int_equal(chmod(p, 0604), 0);
    assert_null(load1(p, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "mode 0604 lets other users read"));

    assert_int_equal(chmod(p, 0620), 0);
    assert_null(load1(p, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "mode 0620 lets other users change the API credentials; run: chmod 600"));

    assert_int_equal(chmod(p, 0400), 0);
    sg_ovh_creds_t *c = load1(p, NULL, err, sizeof(err));
    assert_non_null(c);
    sg_ovh_creds_free(c);

    /* The refusal applies in the standard lookup too (any file used). */
    assert_int_equal(chmod(p, 0644), 0);
    const char *files[] = { "/nonexistent/ovh.conf", p };
    assert_null(sg_ovh_creds_load_files(files, 2, false, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "chmod 600"));
    assert_null(strstr(err, "SECRETVALUE"));
}

static void test_missing_explicit(void **state)
{
    char err[1024] = "", path[600];

    (void)state;
    snprintf(path, sizeof(path), "%s/nope.conf", dir);
    assert_null(load1(path, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "nope.conf"));
    assert_non_null(strstr(err, "No such file"));
}

static void test_layering(void **state)
{
    char err[1024] = "";
    const char *etc = write_file("etc.conf",
        "[default]\nendpoint=ovh-eu\n[ovh-eu]\napplication_key=AK_ETC\n"
        "application_secret=AS_ETC\nconsumer_key=CK_ETC\n", 0600);
    const char *home = write_file("home.conf", "[ovh-eu]\nconsumer_key=CK_HOME\n", 0600);
    const char *cwd = write_file("cwd.conf", "[ovh-eu]\napplication_secret=AS_CWD\n", 0600);
    char missing[600];
    snprintf(missing, sizeof(missing), "%s/missing.conf", dir);
    const char *files[] = { etc, missing, home, cwd };

    (void)state;
    sg_ovh_creds_t *c = sg_ovh_creds_load_files(files, 4, false, NULL, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(sg_ovh_creds_get(c, "application_key"), "AK_ETC");
    assert_string_equal(sg_ovh_creds_get(c, "application_secret"), "AS_CWD");
    assert_string_equal(sg_ovh_creds_get(c, "consumer_key"), "CK_HOME");
    assert_non_null(strstr(sg_ovh_creds_files(c), "home.conf"));
    assert_null(strstr(sg_ovh_creds_files(c), "missing.conf"));
    sg_ovh_creds_free(c);

    /* explicit mode: a missing file is an error */
    assert_null(sg_ovh_creds_load_files(files, 4, true, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "missing.conf"));
}

static void test_env_overrides(void **state)
{
    char err[1024] = "";
    const char *p = write_file("env.conf",
        "[default]\nendpoint=ovh-eu\n"
        "[ovh-eu]\napplication_key=AK_EU\napplication_secret=AS_EU\nconsumer_key=CK_EU\n"
        "[ovh-ca]\napplication_key=AK_CA\napplication_secret=AS_CA\nconsumer_key=CK_CA\n", 0600);

    (void)state;
    setenv("OVH_CONSUMER_KEY", "CK_ENV", 1);
    sg_ovh_creds_t *c = load1(p, NULL, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(sg_ovh_creds_get(c, "consumer_key"), "CK_ENV");
    assert_string_equal(sg_ovh_creds_get(c, "application_key"), "AK_EU");
    sg_ovh_creds_free(c);

    setenv("OVH_ENDPOINT", "ovh-ca", 1);
    c = load1(p, NULL, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(sg_ovh_creds_endpoint(c), "ovh-ca");
    assert_string_equal(sg_ovh_creds_get(c, "application_key"), "AK_CA");
    sg_ovh_creds_free(c);

    /* ovh.endpoint in sendguard's config wins over OVH_ENDPOINT */
    c = load1(p, "ovh-eu", err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(sg_ovh_creds_get(c, "application_key"), "AK_EU");
    sg_ovh_creds_free(c);
    clear_env();

    /* environment only, no file at all */
    const char *none[] = { "/nonexistent/a", "/nonexistent/b" };
    setenv("OVH_ENDPOINT", "http://127.0.0.1:1/1.0", 1);
    setenv("OVH_CLIENT_ID", "cid", 1);
    setenv("OVH_CLIENT_SECRET", "SECRETVALUE", 1);
    c = sg_ovh_creds_load_files(none, 2, false, NULL, err, sizeof(err));
    assert_non_null(c);
    assert_int_equal(sg_ovh_creds_auth(c), SG_OVH_AUTH_OAUTH2);
    assert_string_equal(sg_ovh_creds_files(c), "");
    sg_ovh_creds_free(c);

    /* OAuth2 on an endpoint without it */
    setenv("OVH_ENDPOINT", "kimsufi-eu", 1);
    assert_null(sg_ovh_creds_load_files(none, 2, false, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no OAuth2"));
    assert_null(strstr(err, "SECRETVALUE"));
    clear_env();
}

static void test_url_section(void **state)
{
    char err[1024] = "";
    const char *p = write_file("url.conf",
        "[default]\nendpoint=http://127.0.0.1:4242/1.0\n"
        "[http://127.0.0.1:4242/1.0]\napplication_key=AK\napplication_secret=AS\nconsumer_key=CK\n", 0600);

    (void)state;
    sg_ovh_creds_t *c = load1(p, NULL, err, sizeof(err));
    assert_non_null(c);
    assert_string_equal(sg_ovh_creds_endpoint(c), "http://127.0.0.1:4242/1.0");
    assert_string_equal(sg_ovh_creds_get(c, "consumer_key"), "CK");
    sg_ovh_creds_free(c);
}

static void test_bad_files(void **state)
{
    char err[1024] = "";
    const char *p;

    (void)state;
    p = write_file("b1.conf", "application_key=AK\n", 0600);
    assert_null(load1(p, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "b1.conf:1: key outside any [section]"));

    p = write_file("b2.conf", "[default]\nendpoint=ovh-eu\n[ovh-eu\n", 0600);
    assert_null(load1(p, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "b2.conf:3: malformed section header"));

    p = write_file("b3.conf", "[ovh-eu]\njust some words\n", 0600);
    assert_null(load1(p, "ovh-eu", err, sizeof(err)));
    assert_non_null(strstr(err, "b3.conf:2: expected key=value"));

    p = write_file("b4.conf", "[ovh-eu]\napplication_key=AK\n", 0600);
    assert_null(load1(p, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no OVHcloud API endpoint"));

    p = write_file("b5.conf", "[default]\nendpoint=ovh-mars\n", 0600);
    assert_null(load1(p, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "ovh-mars"));

    p = write_file("b6.conf", "[default]\nendpoint=ovh-eu\n[ovh-eu]\n", 0600);
    assert_null(load1(p, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "no credentials for endpoint ovh-eu"));

    p = write_file("b7.conf", "[default]\nendpoint=ovh-eu\n[ovh-eu]\napplication_key=AK\n"
                   "application_secret=SECRETVALUE\nclient_id=cid\nclient_secret=SECRET2\n", 0600);
    assert_null(load1(p, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "keep one way of authenticating"));
    assert_null(strstr(err, "SECRETVALUE"));
    assert_null(strstr(err, "SECRET2"));

    p = write_file("b8.conf", "[default]\nendpoint=http://api.example.net/1.0\n", 0600);
    assert_null(load1(p, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "plain http only on loopback"));
}

static void test_consumer_key_optional(void **state)
{
    char err[1024] = "";
    const char *p = write_file("nock.conf",
        "[default]\nendpoint=ovh-eu\n[ovh-eu]\napplication_key=AK\napplication_secret=AS\n", 0600);

    (void)state;
    sg_ovh_creds_t *c = load1(p, NULL, err, sizeof(err));
    assert_non_null(c);                              /* enough for `ovh credential` */
    assert_null(sg_ovh_creds_get(c, "consumer_key"));
    sg_ovh_creds_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_basic_file, setup),
        cmocka_unit_test_setup(test_mode_refused, setup),
        cmocka_unit_test_setup(test_missing_explicit, setup),
        cmocka_unit_test_setup(test_layering, setup),
        cmocka_unit_test_setup(test_env_overrides, setup),
        cmocka_unit_test_setup(test_url_section, setup),
        cmocka_unit_test_setup(test_bad_files, setup),
        cmocka_unit_test_setup(test_consumer_key_optional, setup),
    };
    int rc;
    char cmd[300];

    snprintf(dir, sizeof(dir), "/tmp/test_ovh_cred.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return rc;
}
