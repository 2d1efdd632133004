#!/usr/bin/env python3
"""
End to end through a real Sendmail 8.17 (Debian 12's, unpacked by
tests/e2e/sendmail_harness.py, never installed): Sendmail calls the real
sendguard with the lines of contrib/sendmail/sendguard.mc, authenticates
clients (SMTP AUTH, Cyrus sasldb) and relays to smtp-sink. Counts at the sink
and in Sendmail's queue and quarantine prove that exactly the cap got through
and nothing was lost; held mail is released by the shipped
contrib/sendmail/sendguard-release-sendmail.

Run one test:  SG_SENDGUARD=build/sendguard SG_SENDMAIL_DEBS=build/sendmail-debs \\
                   python3 tests/e2e/test_sendmail_e2e.py SendmailE2E.test_hold
Needs root (mount namespace, the Sendmail daemon), the packages of
`contrib/sg-setup test`, and the downloaded Sendmail packages. A missing tool
or download is a FAIL, never a skip.
"""
import os
import re
import signal
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness as h  # noqa: E402
import sendmail_harness as smh  # noqa: E402

N = 4                              # the cap: N messages per hour
LOGIN, PASSWORD = "alice", "Al1ce-secret"
USERS = {LOGIN: PASSWORD, "bob": "B0b-secret"}
# one SMTP AUTH login behind several envelope senders (an application, a
# scanner, a fax...): one identity, one account, one budget
SENDERS = ["app@example.com", "scanner@example.org", "fax@example.net"]


def one_limit(action, cap=N):
    return [h.limit("hourly", "1h", cap, action)]


class SendmailE2E(h.ScratchTestCase):
    scratch_prefix = "sg-sendmail-"

    def env(self, limits, snippet=None, **kw):
        cfg = (lambda sock: h.sendguard_config(sock, limits, **kw))
        env = smh.SendmailEnv(self.scratch, h.sendguard_binary(), cfg, snippet=snippet,
                              users=USERS)
        self.addCleanup(env.stop)
        self._env = env
        env.start()
        return env

    def diagnostics(self):                       # printed when a test fails
        env = getattr(self, "_env", None)
        return env.diagnostics() if env is not None else None

    def send_as_login(self, env, count, login=LOGIN, password=PASSWORD):
        """count messages authenticated as login, cycling through SENDERS."""
        res = []
        for i in range(count):
            res += env.smtp(1, SENDERS[i % len(SENDERS)], auth=(login, password),
                            subject="sendmail e2e")
        return res

    def assertSettled(self, env, sink, held, note):
        got_sink, quarantine, files = env.settled(sink, held)
        if got_sink != sink or len(quarantine) != held or files["qf"] or files["hf"] != held \
                or files["other"]:
            self.fail(f"{note}: expected sink={sink} quarantined={held} and nothing else queued, got"
                      f" sink={got_sink} mailq -qQ={len(quarantine)} files={files}")
        return quarantine

    def assertDecisions(self, sg, expected, since=0):
        sg.wait_decisions(len(expected), since=since)
        time.sleep(0.2)
        d = sg.decisions(since)
        self.assertEqual([x.get("action") for x in d], list(expected), [x["_line"] for x in d])
        for x in d:
            self.assertEqual(h.check_decision_line(x["_line"]), [], x["_line"])
        return d

    def assertClean(self, env):
        self.assertEqual(env.sendguard.sanitizer_reports(), [])
        self.assertTrue(env.sendguard.alive(), "sendguard died")

    # ------------------------------------------------------------------
    def test_snippet_macros(self):
        """The shipped sendmail.mc lines give sendmail.cf the filter with
        F=T and its timeouts, and add {auth_authen} and i to the macro lists
        Sendmail sends (keeping its defaults) without an m4 warning."""
        env = self.env(one_limit("tempfail"))
        sm = env.sendmail
        self.assertEqual(sm.cf_option("InputMailFilters"), "sendguard")
        with open(os.path.join(sm.run, "sendmail.cf")) as f:
            xlines = [ln for ln in f.read().splitlines() if ln.startswith("Xsendguard")]
        self.assertEqual(len(xlines), 1, xlines)
        self.assertIn("F=T", xlines[0])
        self.assertIn("T=C:10s;S:30s;R:30s;E:2m", xlines[0])
        envfrom = [m.strip() for m in sm.cf_option("Milter.macros.envfrom").split(",")]
        eom = [m.strip() for m in sm.cf_option("Milter.macros.eom").split(",")]
        for m in ("i", "{auth_authen}", "{auth_type}", "{mail_addr}"):
            self.assertIn(m, envfrom, f"Milter.macros.envfrom={envfrom}")
        self.assertIn("i", eom, f"Milter.macros.eom={eom}")
        self.assertIn("{msg_id}", eom, f"Sendmail's default kept: {eom}")

    def test_release_script_checks(self):
        """contrib/sendmail/sendguard-release-sendmail against a stand-in
        sendmail that records its calls: an id that is a substring of another
        quarantined id is not released (exit 75, sendguard keeps it), a
        failing release is reported (75), -C is passed on, ids not in the
        quarantine are left alone, one delivery run carries every released id."""
        d = self.scratch.sub("stub")
        calls = os.path.join(d, "calls")
        stub = os.path.join(d, "sendmail")
        with open(stub, "w") as f:
            f.write(f"""#!/bin/sh
echo "$*" >> {calls}
case "$*" in
*"-bp -qQ") printf '%s\\n' '-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------' \\
    'AAAA1111       12 Wed Dec  2 12:36 <a@example.com>' '     QUARANTINE: x' '                 <r@example.net>' \\
    'AAAA11112      12 Wed Dec  2 12:36 <a@example.com>' '     QUARANTINE: x' '                 <r@example.net>' \\
    'BBBB2222*      12 Wed Dec  2 12:36 <a@example.com>' '     QUARANTINE: x' '                 <r@example.net>' \\
    'FAIL3333       12 Wed Dec  2 12:36 <a@example.com>' '     QUARANTINE: x' '                 <r@example.net>' \\
    '		Total requests: 4' ;;
*-qIFAIL3333*-Q) echo "cannot lock" >&2; exit 75 ;;
esac
exit 0
""")
        os.chmod(stub, 0o755)
        p = subprocess.run([smh.RELEASE_SCRIPT, "-S", stub, "-C", "/etc/mail/x.cf"],
                           input="AAAA1111\nBBBB2222\nFAIL3333\nAAAA11112\nCCCC4444\n",
                           capture_output=True, text=True, timeout=30)
        with open(calls) as f:
            got = f.read().splitlines()
        self.assertEqual(p.returncode, 75, p.stderr)
        self.assertIn("AAAA1111 is part of 2 quarantined queue ids", p.stderr)
        self.assertIn("sendmail -qIFAIL3333 -qQ -Q failed: cannot lock", p.stderr)
        self.assertIn("released 2 message(s)", p.stdout)
        self.assertEqual(got, ["-C /etc/mail/x.cf -bp -qQ",
                               "-C /etc/mail/x.cf -qIBBBB2222 -qQ -Q",
                               "-C /etc/mail/x.cf -qIFAIL3333 -qQ -Q",
                               "-C /etc/mail/x.cf -qIAAAA11112 -qQ -Q",
                               "-C /etc/mail/x.cf -qIBBBB2222 -qIAAAA11112"])
        p = subprocess.run([smh.RELEASE_SCRIPT, "-S", stub, "extra-arg"], input="",
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 64, "ids come on stdin only")

    def test_tempfail(self):
        """Cap N, tempfail: 3N messages from one SMTP AUTH login behind three
        envelope senders: N delivered, 2N refused 451 4.7.1 naming the limit,
        all counted against the login; another client has its own budget."""
        env = self.env(one_limit("tempfail"))
        res = self.send_as_login(env, 3 * N)
        self.assertEqual([r.code for r in res], [250] * N + [451] * (2 * N), res)
        self.assertTrue(all(r.stage == "data" for r in res), res)
        for r in res[N:]:
            self.assertTrue(r.text.startswith("4.7.1 "), r)
            self.assertIn("hourly", r.text, r)
        self.assertSettled(env, sink=N, held=0, note="3N with tempfail")
        d = self.assertDecisions(env.sendguard, ["accept"] * N + ["tempfail"] * (2 * N))
        self.assertEqual({x["identity"] for x in d}, {f"<{LOGIN}>"}, "identity: the SASL login")
        self.assertEqual({x["account"] for x in d}, {f"<{LOGIN}>"}, "one account")
        self.assertEqual([x["qid"] for x in d[:N]], [r.qid for r in res[:N]],
                         "decision lines carry Sendmail's queue ids ({i})")
        # the same envelope senders without the login: their own budgets
        other = env.smtp(1, SENDERS[0])
        other += env.smtp(1, "carol@example.com", auth=("bob", USERS["bob"]))
        self.assertEqual([r.code for r in other], [250, 250], other)
        d = self.assertDecisions(env.sendguard, ["accept"] * N + ["tempfail"] * (2 * N) + ["accept"] * 2)
        self.assertEqual([x["identity"] for x in d[-2:]], [f"<{SENDERS[0]}>", "<bob>"])
        self.assertSettled(env, sink=N + 2, held=0, note="other identities")
        self.assertClean(env)

    def test_hold(self):
        """Cap N, hold: 3N accepted at SMTP, N delivered, 2N in Sendmail's
        quarantine (mailq -qQ lists them with sendguard's reason); released
        with the shipped script, all 3N reach the sink, none checked again."""
        env = self.env(one_limit("hold"))
        res = self.send_as_login(env, 3 * N)
        self.assertEqual([r.code for r in res], [250] * (3 * N), f"hold accepts at SMTP: {res}")
        quarantine = self.assertSettled(env, sink=N, held=2 * N, note="3N with hold")
        d = self.assertDecisions(env.sendguard, ["accept"] * N + ["hold"] * (2 * N))
        self.assertEqual({x["identity"] for x in d}, {f"<{LOGIN}>"})
        held = sorted(q["qid"] for q in quarantine)
        self.assertEqual(held, sorted(r.qid for r in res[N:]), "the quarantine = the refused ones")
        self.assertEqual(held, sorted(x["qid"] for x in d[N:]))
        for q in quarantine:
            self.assertRegex(q["reason"], r"^sending limit hourly reached \(%d messages per 60m\)$" % N,
                             f"mailq -qQ shows sendguard's reason: {q}")
            self.assertIn(q["sender"][1:-1], SENDERS, q)
        self.assertEqual(env.sendmail.mailq()[0], [], "nothing in the ordinary queue")
        self.assertIn("quarantine=sending limit hourly", env.sendmail.maillog_text())

        # release: ids on stdin as sendguard gives them, plus lines that are
        # not queue ids (refused, exit 65) and an id that is not quarantined
        mark = env.sendguard.log_size()
        p = env.release(held[:1] + ["../../etc/passwd", "", "-qQ"] + held[1:] + ["ZZ0000000000"])
        self.assertEqual(p.returncode, 65, f"bad lines refused: {p.stdout} {p.stderr}")
        self.assertIn("not a queue id, skipped: ../../etc/passwd", p.stderr)
        self.assertIn(f"released {2 * N} message(s)", p.stdout)
        env.sink.wait_count(3 * N, timeout=30)
        self.assertSettled(env, sink=3 * N, held=0, note="after release")
        self.assertEqual(env.sendguard.decisions(mark), [], "released mail is not checked again")
        ids = [re.search(r"(?m)^Message-ID:\s*(\S+)", m["raw"]).group(1) for m in env.sink.messages()]
        self.assertEqual(len(set(ids)), 3 * N, "each message delivered once")
        # again: nothing left to release, nothing delivered twice
        p = env.release(held)
        self.assertEqual((p.returncode, p.stdout.strip().endswith("released 0 message(s)")), (0, True),
                         p.stdout + p.stderr)
        time.sleep(1)
        self.assertEqual(env.sink.count(), 3 * N)
        self.assertClean(env)

    def test_macros_not_configured(self):
        """Macro lists without i or {auth_authen}: sendguard asks for both
        itself when it negotiates (milter protocol 6) and Sendmail 8.17 sends
        them, so identity and queue id are still right and no warning is
        logged (the warning is for MTAs that ignore the request)."""
        snippet = ("INPUT_MAIL_FILTER(`sendguard', `S=local:/run/sendguard/sendguard.sock, F=T, "
                   "T=C:10s;S:30s;R:30s;E:2m')dnl\n"
                   "define(`confMILTER_MACROS_ENVFROM', `{mail_addr}')dnl\n"
                   "define(`confMILTER_MACROS_EOM', `{msg_id}')dnl\n")
        env = self.env(one_limit("hold", cap=1), snippet=snippet)
        self.assertEqual(env.sendmail.cf_option("Milter.macros.envfrom"), "{mail_addr}")
        self.assertEqual(env.sendmail.cf_option("Milter.macros.eom"), "{msg_id}")
        res = self.send_as_login(env, 2)
        self.assertEqual([r.code for r in res], [250, 250], res)
        d = self.assertDecisions(env.sendguard, ["accept", "hold"])
        self.assertEqual([x["qid"] for x in d], [r.qid for r in res],
                         "queue ids arrive although i is not configured")
        self.assertEqual({x["identity"] for x in d}, {f"<{LOGIN}>"},
                         "{auth_authen} arrives although it is not configured")
        q = self.assertSettled(env, sink=1, held=1, note="macros not configured")
        self.assertEqual(q[0]["qid"], res[1].qid)
        log = env.sendguard.log_bytes().decode("latin-1")
        self.assertNotIn("sends no {i} macro", log)
        self.assertClean(env)

    def test_sendguard_down(self):
        """sendguard not running: with F=T Sendmail answers 4xx and accepts
        nothing; once sendguard is back the client's retry is checked and
        delivered. Without F=T (Sendmail's default) the same outage lets mail
        through unchecked: why the README's line has F=T."""
        env = self.env(one_limit("hold"))
        self.assertEqual(env.smtp(1, SENDERS[0])[0].code, 250)
        env.sink.wait_count(1)
        env.sendguard.stop()
        t0 = time.monotonic()
        res = env.smtp(2, SENDERS[0]) + self.send_as_login(env, 1)
        self.assertEqual([r.code // 100 for r in res], [4, 4, 4], res)
        self.assertLess(time.monotonic() - t0, 10, "refused at once (C:10s not waited: no socket)")
        h.log(f"sendguard down, Sendmail says: {res[0].stage} {res[0].code} {res[0].text}")
        time.sleep(1)
        self.assertSettled(env, sink=1, held=0, note="sendguard down")
        self.assertRegex(env.sendmail.maillog_text(), r"Milter \(sendguard\): .*error",
                         "Sendmail logs the milter error")
        # back: the retries go through the check and are delivered
        env.sendguard.start()
        mark = env.sendguard.log_size()
        res = env.smtp(2, SENDERS[0]) + self.send_as_login(env, 1)
        self.assertEqual([r.code for r in res], [250] * 3, res)
        self.assertDecisions(env.sendguard, ["accept"] * 3, since=mark)
        self.assertSettled(env, sink=4, held=0, note="sendguard back")

        # the same outage without F=T: Sendmail carries on without the filter
        env.sendguard.stop()
        with open(smh.SNIPPET) as f:
            no_t = f.read().replace("F=T, ", "")
        sm2 = smh.Sendmail(self.scratch.sub("sendmail-noT"), env.sink.port,
                           milter=env.sendguard.socket, snippet=no_t)
        self.addCleanup(sm2.stop)
        sm2.start()
        res = h.smtp_send(sm2.port, 1, SENDERS[0])
        self.assertEqual(res[0].code, 250, f"without F=T the message is accepted unchecked: {res}")
        env.sink.wait_count(5, timeout=20)
        sm2.stop()

    def test_sendguard_stalled(self):
        """sendguard alive but not answering (SIGSTOP): Sendmail gives up
        after the filter's T= timeouts and, with F=T, answers 4xx; nothing
        passes unchecked. Once it answers again mail flows."""
        with open(smh.SNIPPET) as f:
            snippet = f.read().replace("T=C:10s;S:30s;R:30s;E:2m", "T=C:2s;S:2s;R:2s;E:5s")
        env = self.env(one_limit("hold"), snippet=snippet)
        self.assertEqual(env.smtp(1, SENDERS[0])[0].code, 250)
        env.sink.wait_count(1)
        pid = env.sendguard.pid
        os.kill(pid, signal.SIGSTOP)
        self.addCleanup(lambda: os.kill(pid, signal.SIGCONT) if env.sendguard.alive() else None)
        t0 = time.monotonic()
        res = env.smtp(2, SENDERS[0])
        took = time.monotonic() - t0
        self.assertEqual([r.code // 100 for r in res], [4, 4], res)
        h.log(f"sendguard stalled: {res[0].stage} {res[0].code} {res[0].text} ({took:.1f}s for 2)")
        self.assertRegex(env.sendmail.maillog_text(), r"Milter \(sendguard\): timeout",
                         "Sendmail logs the filter's timeout")
        os.kill(pid, signal.SIGCONT)
        mark = env.sendguard.log_size()
        res = env.smtp(2, SENDERS[0])
        self.assertEqual([r.code for r in res], [250, 250], res)
        self.assertDecisions(env.sendguard, ["accept", "accept"], since=mark)
        self.assertSettled(env, sink=3, held=0, note="sendguard answering again")
        self.assertClean(env)

    def test_local_submission(self):
        """A program's sendmail(1) goes through the MSP (submit.cf, Debian's
        default), which hands it over SMTP to the MTA: counted like any
        client (cap 1, hold: 1 delivered, 2 quarantined); with sendguard down
        the MSP keeps the message in its queue and its queue run delivers it
        once sendguard is back. The MTA binary run with sendmail.cf itself is
        not filtered (milters see SMTP only)."""
        env = self.env(one_limit("hold", cap=1))
        for i in range(3):
            p = env.sendmail.submit("cron@example.com", ["rcpt@example.net"])
            self.assertEqual(p.returncode, 0, p.stderr)
        d = self.assertDecisions(env.sendguard, ["accept", "hold", "hold"])
        self.assertEqual({x["identity"] for x in d}, {"<cron@example.com>"})
        self.assertSettled(env, sink=1, held=2, note="MSP submissions")
        self.assertEqual(env.sendmail.client_queue_files(), [], "nothing left in clientmqueue")
        # sendguard down: the MTA answers 4xx, the MSP keeps the message in
        # its own queue (nothing lost, nothing unchecked) until its queue run
        env.sendguard.stop()
        p = env.sendmail.submit("other@example.com", ["rcpt@example.net"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len([f for f in env.sendmail.client_queue_files() if f.startswith("qf")]),
                         1, "kept in clientmqueue while sendguard is down")
        time.sleep(0.5)
        self.assertEqual(env.sink.count(), 1)
        env.sendguard.start()
        mark = env.sendguard.log_size()
        r = subprocess.run([env.sendmail.submit_cmd, "-q"], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([x["identity"] for x in env.sendguard.wait_decisions(1, since=mark)],
                         ["<other@example.com>"])
        env.sink.wait_count(2, timeout=20)
        self.assertEqual(env.sendmail.client_queue_files(), [])
        # the MTA binary with its own sendmail.cf: delivered, never seen by sendguard
        mark = env.sendguard.log_size()
        p = env.sendmail.submit("cron@example.com", ["rcpt@example.net"], msp=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        env.sink.wait_count(3, timeout=20)
        time.sleep(0.5)
        self.assertEqual(env.sendguard.decisions(mark), [], "no milter for command-line mail")
        self.assertClean(env)

    def test_lockdown_release(self):
        """The block workflow on Sendmail: the stand-in API blocks the
        account -> lockdown -> its mail is quarantined and the ids recorded ->
        the API unblocks it -> sendguard runs release_command (the shipped
        sendguard-release-sendmail) with the ids -> the mail reaches the sink."""
        sys.path.insert(0, os.path.join(smh.SRC, "tests", "block"))
        import blockenv
        sg = h.sendguard_binary()
        ctl = os.environ.get("SG_SENDGUARDCTL") or os.path.join(os.path.dirname(sg), "sendguardctl")
        sm_path = os.path.join(self.scratch.path, "sendmail", "run", "sm")   # SendmailEnv's
        e = blockenv.BlockEnv(
            self.scratch, "mxplan", sg, ctl,
            extra_top={"release_command": [smh.RELEASE_SCRIPT, "-S", sm_path]},
            mail_env=lambda scratch, binary, config, user: smh.SendmailEnv(scratch, binary, config,
                                                                           users=USERS, user=user))
        self.addCleanup(e.stop)
        e.start()
        self._env = e.env
        self.assertEqual(e.env.sendmail.sm, sm_path)
        e.standin.block(e.address)
        mark = e.sg.log_size()
        e.kick()
        e.sg.wait_log(r"ovh: account=<%s> offer=mxplan event=blocked " % re.escape(e.address),
                      since=mark, timeout=8)
        e.wait_phase(lambda s: s["blocked"], 5, "status blocked")

        n = 6
        res = e.env.smtp(n, e.sender, subject="held on sendmail")
        self.assertEqual([r.code for r in res], [250] * n, res)
        qids = sorted(r.qid for r in res)
        quarantine = self.assertSettled(e.env, sink=0, held=n, note="locked down")
        self.assertEqual(sorted(q["qid"] for q in quarantine), qids)
        for q in quarantine:
            self.assertIn("blocked", q["reason"], f"the quarantine says why: {q}")
        dec = e.sg.wait_decisions(n, since=mark)
        self.assertEqual([d["action"] for d in dec], ["hold"] * n)
        self.assertTrue(all(d.get("lockdown") == "1" for d in dec), [d["_line"] for d in dec])
        h.wait_until(lambda: e.held_ids() == qids, 5, "held queue ids recorded in Redis")
        self.assertEqual(e.sink.count(), 0)

        mark = e.sg.log_size()
        e.standin.unblock(e.address)
        e.kick()
        e.sg.wait_log(r"ovh: account=<%s> offer=mxplan event=unblocked" % re.escape(e.address),
                      since=mark, timeout=8)
        e.sg.wait_log(r"released account=<%s> relay=relay1 messages=%d" % (
            re.escape(e.address), n), since=mark, timeout=10)
        e.sink.wait_count(n, timeout=30)
        self.assertSettled(e.env, sink=n, held=0, note="released")
        self.assertEqual(len(set(e.sink_message_ids())), n, "each held message delivered once")
        self.assertEqual(e.held_ids(), [], "held ids cleared")
        self.assertFalse(e.status()["blocked"])
        self.assertEqual(e.sg.sanitizer_reports(), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
