/*
 * fuzz_request - a whole decision on what the MTA sends: the envelope
 * (MAIL FROM, RCPT TO), the macros ({auth_authen}, {i}, client address)
 * and the three headers sendguard keeps (From, Message-ID, X-Mailer /
 * User-Agent), through sg_policy_decide with a memory store. This is what
 * sendguard parses itself in the milter layer: libmilter parses the
 * protocol, milter/sg_milter.c only copies these strings (cut to size).
 *
 * Input: byte 0 = which of the 7 strings are missing (bit set = NULL),
 * then '\n'-separated: auth, envfrom, client ip, qid, mailer, From, Message-ID,
 * then one recipient per line (at most 200). A fresh store per input.
 * Checks: the action is one of the five; the reply text has no control
 * byte and no '%' (it goes into smfi_setreply).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sg_conf.h"
#include "sg_policy.h"
#include "sg_store.h"

static sg_conf_t *conf;

static const char conf_text[] =
    "store = { backend = \"memory\"; };\n"
    "identity = { lowercase = true; strip_tag = true; };\n"
    "allow = [ \"postmaster@example.com\" ];\n"
    "limits = ( { name = \"minute\"; window = \"1m\"; messages = 3; action = \"tempfail\"; },\n"
    "           { name = \"hour\"; window = \"1h\"; messages = 50; recipients = 20;\n"
    "             distinct_recipients = 10; bytes = 1000000; action = \"hold\"; } );\n"
    "accounts = ( { address = \"sales@example.com\"; offer = \"emailpro\"; service = \"pro1\";\n"
    "               senders = [ \"*@example.com\", \"bob@*\" ]; },\n"
    "             { address = \"info@example.org\"; offer = \"mxplan\"; service = \"mx1\";\n"
    "               limits = ( { name = \"day\"; window = \"1d\"; recipients = 5;\n"
    "                            action = \"reject\"; } ); } );\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[] = "/tmp/sg-fuzz-request-XXXXXX";
    int fd = mkstemp(path);

    (void)argc;
    (void)argv;
    if (fd < 0 || write(fd, conf_text, sizeof(conf_text) - 1) != (ssize_t)sizeof(conf_text) - 1)
        abort();
    close(fd);
    conf = sg_conf_load(path, NULL, NULL);
    unlink(path);
    if (!conf)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *field[7] = { 0 };
    const char *rcpts[200];
    size_t nrcpts = 0, nf = 0;
    struct sg_request req = { 0 };
    struct sg_verdict v;
    sg_store_t *st;
    char *text, *p;
    unsigned missing;

    if (size < 1)
        return 0;
    missing = data[0];
    data++;
    size--;
    size = strnlen((const char *)data, size);
    if (!(text = malloc(size + 1)))
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    for (p = text; p && nf + nrcpts < 7 + 200;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        if (nf < 7)
            field[nf++] = p;
        else
            rcpts[nrcpts++] = p;
        p = nl ? nl + 1 : NULL;
    }
    for (int i = 0; i < 7; i++)
        if (missing & (1u << i))
            field[i] = NULL;
    req.auth_authen = field[0];
    req.envfrom = field[1];
    req.client_ip = field[2];
    req.qid = field[3];
    req.mailer = field[4];
    req.from_header = field[5];
    req.msgid = field[6];
    req.rcpts = rcpts;
    req.nrcpts = nrcpts;
    req.size = size * 1000;
    req.relay = "relay1";

    if (!(st = sg_store_memory_new(NULL, NULL))) {
        free(text);
        return 0;
    }
    for (int round = 0; round < 2; round++) {   /* twice: the second sees counts */
        sg_policy_decide(conf, st, NULL, &req, &v);
        if (v.action < SG_ACT_ACCEPT || v.action > SG_ACT_REJECT)
            abort();
        if (strnlen(v.reason, sizeof(v.reason)) >= sizeof(v.reason))
            abort();
        for (const unsigned char *r = (const unsigned char *)v.reason; *r; r++)
            if (*r < 0x20 || *r == 0x7f || *r == '%')
                abort();
        if (strnlen(v.identity, sizeof(v.identity)) >= sizeof(v.identity) ||
            strnlen(v.account, sizeof(v.account)) >= sizeof(v.account))
            abort();
    }
    sg_store_free(st);
    free(text);
    return 0;
}
