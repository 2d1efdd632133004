#!/usr/bin/env python3
"""
capture.py - regenerate the real Postfix-written headers of tests/workflow/data/.

Runs the end-to-end harness (tests/e2e/harness.py: a throwaway Postfix with
SASL relaying to smtp-sink, no milter), sends two messages through it and
saves the headers of each message as smtp-sink received it:
  postfix-esmtpa.txt   authenticated (SMTP AUTH as alice, no TLS), Postfix's
                       smtpd_sasl_authenticated_header on: "with ESMTPA"
  postfix-esmtp.txt    not authenticated: "with ESMTP"
  capture.txt          key=value lines the unit tests check against: the
                       queue id of each (from Postfix's "queued as" reply),
                       its Message-ID, the relay's hostname, the login.
Needs root (Postfix). Usage: tests/workflow/data/capture.py [OUTDIR]
"""
import os
import re
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "e2e"))
import harness  # noqa: E402

LOGIN, PASSWORD = "alice", "s3cret-capture"


def headers_of(raw):
    """The message's header block as the sink got it (smtp-sink -d writes
    its own X-Mail-Args/X-Rcpt-Args/X-Client-* lines first: dropped)."""
    out = []
    for line in raw.replace("\r\n", "\n").split("\n"):
        if line == "":
            break
        if line.startswith(("X-Mail-Args:", "X-Rcpt-Args:", "X-Client-", "X-Helo-Args:")):
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else here
    scratch = harness.Scratch("sg-trace-capture-")
    ok = False
    try:
        env = harness.MailEnv(scratch, sasl_users={LOGIN: PASSWORD},
                              extra_main={"smtpd_sasl_authenticated_header": "yes"})
        with env:
            r1 = env.smtp(1, "alice@example.com", ("victim1@example.net",),
                          subject="Your invoice", auth=(LOGIN, PASSWORD),
                          headers={"User-Agent": "Mozilla/5.0 Thunderbird/115.5.0"})[0]
            r2 = env.smtp(1, "bob@example.com", ("victim2@example.net",),
                          subject="Plain relay")[0]
            if r1.code != 250 or r2.code != 250 or not r1.qid or not r2.qid:
                raise harness.HarnessError(f"not queued: {r1!r} {r2!r}")
            env.sink.wait_count(2)
            msgs = env.sink.messages()
        by_rcpt, msgid = {}, {}
        for m in msgs:
            for a in m["rcpt_args"]:
                by_rcpt[a] = m
        files = {"postfix-esmtpa.txt": "victim1@example.net", "postfix-esmtp.txt": "victim2@example.net"}
        for name, rcpt in files.items():
            m = next(v for k, v in by_rcpt.items() if rcpt in k)
            hdrs = headers_of(m["raw"])
            with open(os.path.join(outdir, name), "w") as f:
                f.write(hdrs)
            msgid[name] = re.search(r"^Message-ID: (<[^>]*>)", hdrs, re.M | re.I).group(1)
        with open(os.path.join(outdir, "capture.txt"), "w") as f:
            f.write(f"esmtpa_qid={r1.qid}\nesmtp_qid={r2.qid}\n"
                    f"esmtpa_msgid={msgid['postfix-esmtpa.txt']}\nesmtp_msgid={msgid['postfix-esmtp.txt']}\nrelay=sg-e2e.example\n"
                    f"login={LOGIN}\nclient_ip=127.0.0.1\n")
        ok = True
        print(f"captured {r1.qid} {r2.qid} into {outdir}")
    finally:
        scratch.finish(ok)


if __name__ == "__main__":
    main()
