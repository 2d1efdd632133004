/*
 * wf_race.c - a relay's watcher for the race test (test_race.py): applies
 * what a watcher would (the API reads blocked / not blocked, at random)
 * to one account's state in a real Redis through sg_wf_apply, and prints
 * each transition it applied, with the version it produced:
 *
 *   wf_race PORT ACCOUNT ROUNDS SEED STOPFILE
 *                  at least ROUNDS rounds, then on until STOPFILE exists (the
 *                  other racers are done), a pause of 0-5 ms between rounds;
 *                  "applied v=N from=PHASE:LOCK to=PHASE:LOCK event=E tries=T"
 *                  per applied event
 *   wf_race PORT ACCOUNT show          "version=N phase=PHASE locked=0|1"
 *
 * tries counts the decisions (the fill hook is called once per decision):
 * above 1, the event lost a race and was decided again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sg_time.h"
#include "sg_log.h"
#include "sg_store.h"
#include "sg_workflow.h"

struct tries {
    int n;
    char from[48];
};

static void count(void *ctx, const struct sg_account_state *cur, const struct sg_wf_step *sp,
                  struct sg_account_state *next)
{
    struct tries *t = ctx;

    (void)sp, (void)next;
    t->n++;
    snprintf(t->from, sizeof(t->from), "%s:%d", cur->phase, cur->blocked);
}

int main(int argc, char **argv)
{
    struct sg_redis_settings rs = { .host = "127.0.0.1", .prefix = "sg:",
                                    .connect_timeout_ms = 5000, .command_timeout_ms = 5000,
                                    .pool_size = 2 };
    struct sg_account_state s;
    char err[256];
    sg_store_t *st;
    int rc = 0;

    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: wf_race PORT ACCOUNT ROUNDS SEED STOPFILE | PORT ACCOUNT show\n");
        return 64;
    }
    sg_log_open("wf_race", LOG_USER, true);
    rs.port = atoi(argv[1]);
    if ((st = sg_store_redis_new(&rs, NULL, NULL, err, sizeof(err))) == NULL) {
        fprintf(stderr, "wf_race: %s\n", err);
        return 1;
    }
    if (strcmp(argv[3], "show") == 0) {
        if (sg_store_state_get(st, argv[2], &s) != 0) {
            fprintf(stderr, "wf_race: cannot read the state\n");
            rc = 1;
        } else {
            printf("version=%llu phase=%s locked=%d\n", (unsigned long long)s.version,
                   s.phase, s.blocked);
        }
        sg_store_free(st);
        return rc;
    }
    int rounds = atoi(argv[3]);
    srand((unsigned)atoi(argv[4]));
    for (int i = 0; i < rounds || access(argv[5], F_OK) != 0; i++) {
        struct tries t = { 0 };
        struct timespec pause = { 0, (rand() % 6) * 1000000L };
        struct sg_wf_step sp;
        struct sg_wf_event_in in = {
            /* blocked one read in four: room for the lockdowns */
            .event = rand() % 4 == 0 ? SG_WF_EV_API_BLOCKED : SG_WF_EV_API_CLEAR,
            .now_ms = sg_time_real_ms(), .api_state = "ok", .ticket = 1000 + rand() % 3,
            .fill = count, .ctx = &t,
        };
        int r = sg_wf_apply(st, argv[2], &in, &sp, &s);
        if (r < 0) {
            fprintf(stderr, "wf_race: store error at round %d\n", i);
            rc = 1;
            break;
        }
        nanosleep(&pause, NULL);
        if (r == 1)
            printf("applied v=%llu from=%s to=%s:%d event=%s tries=%d\n",
                   (unsigned long long)s.version, t.from, s.phase, s.blocked,
                   sg_wf_event_name(in.event), t.n);
    }
    fflush(stdout);
    sg_store_free(st);
    return rc;
}
