/*
 * test_ovh_sign.c - request signatures against every vector of
 * ovh-signature-vectors.tsv (the official clients' own test vectors),
 * endpoint aliases, and URL path building.
 *
 * The vector file is argv[1]. A missing file, or one with fewer than 21
 * vectors, is a failure, never a skip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sg_ovh.h"

#define MIN_VECTORS 21

static const char *vectors_path;

/* split - cut line at tabs into at most max fields; returns the count */
static int split(char *line, char **f, int max)
{
    int n = 0;

    f[n++] = line;
    for (char *p = line; *p && n < max; p++) {
        if (*p == '\t') {
            *p = '\0';
            f[n++] = p + 1;
        }
    }
    return n;
}

static void test_vectors(void **state)
{
    FILE *fp;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, checked = 0, failed = 0;

    (void)state;
    assert_non_null(vectors_path);
    fp = fopen(vectors_path, "r");
    if (!fp)
        fail_msg("cannot open the signature vectors %s: this test must not pass without them",
                 vectors_path);
    while ((len = getline(&line, &cap, fp)) >= 0) {
        char *f[9], sig[SG_OVH_SIG_SIZE];

        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#' || strncmp(line, "source\t", 7) == 0)
            continue;
        if (split(line, f, 9) != 8) {
            print_error("%s:%d: not 8 tab-separated fields\n", vectors_path, lineno);
            failed++;
            continue;
        }
        /* source AS CK timestamp method url body expected */
        sg_ovh_sign(f[1], f[2], f[4], f[5], f[6], strlen(f[6]), strtoll(f[3], NULL, 10), sig);
        if (strcmp(sig, f[7]) != 0) {
            print_error("%s:%d: %s %s body=\"%s\": got %s, expected %s\n", vectors_path, lineno,
                        f[4], f[5], f[6], sig, f[7]);
            failed++;
        }
        checked++;
    }
    free(line);
    fclose(fp);
    if (checked < MIN_VECTORS)
        fail_msg("%s holds %d vectors, expected at least %d", vectors_path, checked, MIN_VECTORS);
    assert_int_equal(failed, 0);
    print_message("checked %d signature vectors\n", checked);
}

/* The first vector of ovh-api.md, pinned here too, with an explicit body length. */
static void test_first_vector_inline(void **state)
{
    char sig[SG_OVH_SIG_SIZE];

    (void)state;
    sg_ovh_sign("9ufkBmLaTQ9nz5yMUlg79taH0GNnzDjk", "5mBuy6SUQcRw2ZUxg0cG68BoDKpED4KY", "GET",
                "https://eu.api.ovh.com/1.0/auth", NULL, 0, 1457018875, sig);
    assert_string_equal(sig, "$1$e9556054b6309771395efa467c22e627407461ad");
    sg_ovh_sign("9ufkBmLaTQ9nz5yMUlg79taH0GNnzDjk", "5mBuy6SUQcRw2ZUxg0cG68BoDKpED4KY", "POST",
                "https://eu.api.ovh.com/1.0/auth", "{\"a\":\"b\",\"c\":\"d\"}", 17, 1457018875, sig);
    assert_string_equal(sig, "$1$ec2fb5c7a81f64723c77d2e5b609ae6f58a84fc1");
}

static void test_endpoint_aliases(void **state)
{
    static const struct { const char *alias, *url, *token; } t[] = {
        { "ovh-eu", "https://eu.api.ovh.com/1.0", "https://www.ovh.com/auth/oauth2/token" },
        { "ovh-ca", "https://ca.api.ovh.com/1.0", "https://ca.ovh.com/auth/oauth2/token" },
        { "ovh-us", "https://api.us.ovhcloud.com/1.0", "https://us.ovhcloud.com/auth/oauth2/token" },
        { "kimsufi-eu", "https://eu.api.kimsufi.com/1.0", NULL },
        { "kimsufi-ca", "https://ca.api.kimsufi.com/1.0", NULL },
        { "soyoustart-eu", "https://eu.api.soyoustart.com/1.0", NULL },
        { "soyoustart-ca", "https://ca.api.soyoustart.com/1.0", NULL },
    };
    char buf[256];

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        assert_true(sg_ovh_endpoint_url(t[i].alias, buf, sizeof(buf)));
        assert_string_equal(buf, t[i].url);
        if (t[i].token) {
            assert_true(sg_ovh_endpoint_token_url(t[i].alias, buf, sizeof(buf)));
            assert_string_equal(buf, t[i].token);
        } else {
            assert_false(sg_ovh_endpoint_token_url(t[i].alias, buf, sizeof(buf)));
        }
    }
    assert_false(sg_ovh_endpoint_url("ovh-moon", buf, sizeof(buf)));
    assert_false(sg_ovh_endpoint_url("", buf, sizeof(buf)));
    assert_false(sg_ovh_endpoint_url(NULL, buf, sizeof(buf)));
    assert_false(sg_ovh_endpoint_url("ovh-eu", buf, 5));            /* too small */
}

static void test_endpoint_literal(void **state)
{
    char buf[256];

    (void)state;
    assert_true(sg_ovh_endpoint_url("http://127.0.0.1:8080/1.0", buf, sizeof(buf)));
    assert_string_equal(buf, "http://127.0.0.1:8080/1.0");
    assert_true(sg_ovh_endpoint_url("http://127.0.0.1:8080/1.0/", buf, sizeof(buf)));
    assert_string_equal(buf, "http://127.0.0.1:8080/1.0");
    assert_true(sg_ovh_endpoint_url("https://api.example.net/1.0", buf, sizeof(buf)));
    assert_true(sg_ovh_endpoint_url("http://localhost:1/1.0", buf, sizeof(buf)));
    assert_true(sg_ovh_endpoint_url("http://[::1]:9/1.0", buf, sizeof(buf)));
    /* plain http off loopback, other schemes, userinfo, query: refused */
    assert_false(sg_ovh_endpoint_url("http://eu.api.ovh.com/1.0", buf, sizeof(buf)));
    assert_false(sg_ovh_endpoint_url("http://127.0.0.1.evil.example/1.0", buf, sizeof(buf)));
    assert_false(sg_ovh_endpoint_url("ftp://127.0.0.1/1.0", buf, sizeof(buf)));
    assert_false(sg_ovh_endpoint_url("https://user:pw@api.example.net/1.0", buf, sizeof(buf)));
    assert_false(sg_ovh_endpoint_url("https://api.example.net/1.0?x=1", buf, sizeof(buf)));
    assert_false(sg_ovh_endpoint_url("eu/api", buf, sizeof(buf)));
    assert_true(sg_ovh_endpoint_token_url("http://127.0.0.1:8080/1.0", buf, sizeof(buf)));
    assert_string_equal(buf, "http://127.0.0.1:8080/auth/oauth2/token");
    /* A region's API written as a URL: the region's token URL, not one on the API host. */
    assert_true(sg_ovh_endpoint_token_url("https://eu.api.ovh.com/1.0", buf, sizeof(buf)));
    assert_string_equal(buf, "https://www.ovh.com/auth/oauth2/token");
    assert_true(sg_ovh_endpoint_token_url("https://ca.api.ovh.com/1.0/", buf, sizeof(buf)));
    assert_string_equal(buf, "https://ca.ovh.com/auth/oauth2/token");
    assert_true(sg_ovh_endpoint_token_url("https://api.us.ovhcloud.com/1.0", buf, sizeof(buf)));
    assert_string_equal(buf, "https://us.ovhcloud.com/auth/oauth2/token");
    /* Another host (not a stand-in on loopback): no guessed token URL. */
    assert_false(sg_ovh_endpoint_token_url("https://api.example.net/1.0", buf, sizeof(buf)));
    assert_false(sg_ovh_endpoint_token_url("https://eu.api.kimsufi.com/1.0", buf, sizeof(buf)));
}

static void test_path(void **state)
{
    char *p;

    (void)state;
    p = sg_ovh_path("/email/pro/%s/account/%s", "pro1", "sales+x@example.com");
    assert_string_equal(p, "/email/pro/pro1/account/sales+x@example.com");
    free(p);
    p = sg_ovh_path("/email/domain/%s/account/%s", "ex/ample", "a b%?#");
    assert_string_equal(p, "/email/domain/ex%2Fample/account/a%20b%25%3F%23");
    free(p);
    p = sg_ovh_path("/support/tickets?ticketNumber=%I", (int64_t)1234567);
    assert_string_equal(p, "/support/tickets?ticketNumber=1234567");
    free(p);
    p = sg_ovh_path("/support/tickets?status=open&subject=%q", "Account locked for spam.");
    assert_string_equal(p, "/support/tickets?status=open&subject=Account%20locked%20for%20spam.");
    free(p);
    p = sg_ovh_path("/email/domain/%s/redirection?from=%q", "example.net", "a+b@example.net");
    assert_string_equal(p, "/email/domain/example.net/redirection?from=a%2Bb@example.net");
    free(p);
    p = sg_ovh_path("/x/%s", "\xc3\xa9t\xc3\xa9");
    assert_string_equal(p, "/x/%C3%A9t%C3%A9");
    free(p);
}

static void test_access_rules(void **state)
{
    json_t *r;
    char *s;

    (void)state;
    r = sg_ovh_access_rules(1u << SG_OFFER_MXPLAN_LEGACY);
    s = json_dumps(r, JSON_COMPACT);
    assert_non_null(strstr(s, "{\"method\":\"GET\",\"path\":\"/email/exchange/*\"}"));
    assert_non_null(strstr(s, "{\"method\":\"GET\",\"path\":\"/support/tickets\"}"));
    assert_non_null(strstr(s, "{\"method\":\"POST\",\"path\":\"/support/tickets/*/reply\"}"));
    assert_non_null(strstr(s, "{\"method\":\"POST\",\"path\":\"/support/tickets/*/reopen\"}"));
    assert_non_null(strstr(s, "/email/domain/*/account/*/changePassword"));
    assert_null(strstr(s, "/email/pro/*/account/*/changePassword"));
    assert_null(strstr(s, "DELETE"));
    assert_null(strstr(s, "PUT"));
    free(s);
    json_decref(r);
    r = sg_ovh_access_rules(SG_OVH_OFFERS_ALL);
    assert_int_equal(json_array_size(r), 10 + 2 + 4);
    json_decref(r);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_first_vector_inline),
        cmocka_unit_test(test_endpoint_aliases),
        cmocka_unit_test(test_endpoint_literal),
        cmocka_unit_test(test_path),
        cmocka_unit_test(test_access_rules),
    };

    vectors_path = argc > 1 ? argv[1] : NULL;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
