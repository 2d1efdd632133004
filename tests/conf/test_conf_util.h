/*
 * test_conf_util.h - helpers shared by the conf/ unit tests (see
 * test_conf_util.c).
 */
#ifndef TEST_CONF_UTIL_H
#define TEST_CONF_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sg_conf.h"

extern char scratch[256];           /* the scratch directory of the group */

int make_scratch(void **state);
int remove_scratch(void **state);
/* scratch/NAME with text, mode 0640; returns the path (static buffer). */
const char *write_file(const char *name, const char *text);
/* a fresh file per call, so a test never reads a stale one. */
const char *write_conf(const char *text);

struct errs {
    char *line[64];
    size_t n;
};
void collect(void *ctx, const char *line);
void errs_free(struct errs *e);
void errs_print(const struct errs *e);
/* load text that must be valid; fails the test with the problems otherwise. */
sg_conf_t *load_ok(const char *text);

struct conf_group {
    const char *name;
    const struct CMUnitTest *tests;
    size_t n;
};
#define CONF_GROUP(name, tests) { name, tests, sizeof(tests) / sizeof(tests[0]) }
/* Run the group named argv[1] (all without one); an unknown name fails. */
int conf_test_main(const char *prog, int argc, char **argv, const struct conf_group *groups,
                   size_t ngroups);

#endif
