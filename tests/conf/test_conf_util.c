/*
 * test_conf_util.c - what the conf/ test files share: a scratch directory,
 * config files written in it, a collector of error lines, and the runner
 * of named test groups.
 * Must not: hold a test (tests live in test_conf.c and
 * test_conf_errors.c), or read anything outside the scratch directory.
 */
#include "test_conf_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Helpers: a scratch directory, files in it, an error collector            */

char scratch[256];
static int nfiles;

int make_scratch(void **state)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(scratch, sizeof(scratch), "%s/sg_conf_test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(scratch) == NULL) {
        fprintf(stderr, "mkdtemp %s: %s\n", scratch, strerror(errno));
        return -1;
    }
    return 0;
}

int remove_scratch(void **state)
{
    char cmd[512];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
    return system(cmd) == 0 ? 0 : -1;
}

/* write_file - scratch/NAME with text; returns the path (static buffer). */
const char *write_file(const char *name, const char *text)
{
    static char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", scratch, name);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0640), 0);    /* as a config with a secret must be */
    return path;
}

/* write_conf - a fresh file per call, so a test never reads a stale one. */
const char *write_conf(const char *text)
{
    char name[32];

    snprintf(name, sizeof(name), "t%03d.conf", ++nfiles);
    return write_file(name, text);
}

void collect(void *ctx, const char *line)
{
    struct errs *e = ctx;

    assert_true(e->n < 64);
    e->line[e->n] = strdup(line);
    assert_non_null(e->line[e->n]);
    e->n++;
}

void errs_free(struct errs *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->line[i]);
    e->n = 0;
}

void errs_print(const struct errs *e)
{
    for (size_t i = 0; i < e->n; i++)
        print_message("  got:  %s\n", e->line[i]);
}

/* load_ok - load text that must be valid; fails the test with the
 * problems otherwise. */
sg_conf_t *load_ok(const char *text)
{
    struct errs e = { .n = 0 };
    sg_conf_t *c = sg_conf_load(write_conf(text), collect, &e);

    errs_print(&e);
    assert_int_equal(e.n, 0);
    assert_non_null(c);
    errs_free(&e);
    return c;
}

int conf_test_main(const char *prog, int argc, char **argv, const struct conf_group *groups,
                   size_t ngroups)
{
    int failed = 0, ran = 0;

    for (size_t i = 0; i < ngroups; i++) {
        if (argc > 1 && strcmp(argv[1], groups[i].name) != 0)
            continue;
        ran++;
        failed += _cmocka_run_group_tests(groups[i].name, groups[i].tests, groups[i].n,
                                          make_scratch, remove_scratch);
    }
    if (ran == 0) {
        fprintf(stderr, "%s: no test group named \"%s\"\n", prog, argv[1]);
        return 1;
    }
    return failed ? 1 : 0;
}
