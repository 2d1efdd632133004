/*
 * redis_harness.h - what the Redis store tests share (redis_harness.c):
 * throwaway redis-server processes on free 127.0.0.1 ports in a temporary
 * directory, a store opened on them, small builders of limits and charges,
 * and the group setup/teardown that starts the shared server and kills
 * every server started.
 */
#ifndef REDIS_HARNESS_H
#define REDIS_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <hiredis/hiredis.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "sg_store_redis.h"

struct srv {
    pid_t pid;
    int port;
    char dir[200];
    char sock[260];
    char name[32];
};

extern char g_tmp[128];
extern struct srv g_srv;
extern struct sg_store_redis *g_st;
extern sg_store_t *g_store;
extern pid_t g_pids[32];

void track(pid_t pid, bool add);
uint64_t now_ms(void);
void sleep_ms(int ms);
const char *bin(const char *env, const char *def);
int free_port(void);
redisContext *admin(const struct srv *s);
redisReply *cmd(const struct srv *s, const char *fmt, ...);
int ping(const struct srv *s);
void srv_kill(struct srv *s, int sig);
int spawn(struct srv *s, char *const argv[]);
int srv_start(struct srv *s, const char *name, const char *const *extra);
int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw);
uint64_t test_clock(void *ctx);
struct sg_store_redis *open_store_clock(int port, const char *unix_path, int64_t *now);
struct sg_store_redis *open_store(int port, const char *unix_path);
struct sg_limit lim(const char *name, uint64_t window_ms, uint64_t msgs,
                           uint64_t rcpts, uint64_t bytes, uint64_t distinct);
struct sg_charge chg(uint64_t rcpts, uint64_t bytes, const uint64_t *hashes,
                            size_t nhashes);
enum sg_store_status decide(struct sg_store_redis *st, const char *acct,
                                   const struct sg_limit *l, size_t nl,
                                   const struct sg_charge *c, struct sg_store_result *res);
void unique(char *buf, size_t n, const char *what);
int group_teardown(void **state);
int group_setup(void **state);

#endif
