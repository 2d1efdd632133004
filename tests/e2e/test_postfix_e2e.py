#!/usr/bin/env python3
"""
End-to-end acceptance: a real (throwaway) Postfix calls the real sendguard
binary for every message and relays to a real smtp-sink. Counts at the sink
and in the queues prove that exactly the cap got through and nothing was
lost.

Run one test:   SG_SENDGUARD=build/sendguard python3 tests/e2e/test_postfix_e2e.py E2E.test_hold
Environment:    SG_SENDGUARD (binary), SG_SOURCE_DIR (repo), SG_TEST_TMPDIR (default /tmp)
Needs root (Postfix, smtp-sink -u postfix). A missing tool is a FAIL.
"""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

N = 5                    # the cap: N messages per hour
SENDER = "alice@example.com"
OTHER = "bob@example.org"
SASL_USERS = {"alice": "Al1ce-secret", "bob": "B0b-secret"}
# one SMTP AUTH login behind several envelope senders (an application, a scanner, a fax)
SASL_SENDERS = ["app@example.com", "scanner@example.org", "fax@example.net"]


def one_limit(action, cap=N, window="1h"):
    return [h.limit("hourly", window, cap, action)]


class E2E(h.ScratchTestCase):
    scratch_prefix = "sg-e2e-"

    def env(self, limits=None, accounts=(), milter=True, socket="unix", **postfix_kw):
        if milter:
            cfg = (lambda sock: h.sendguard_config(sock, limits, accounts))
            env = h.MailEnv(self.scratch, h.sendguard_binary(), cfg, socket=socket, **postfix_kw)
        else:
            env = h.MailEnv(self.scratch, **postfix_kw)
        self.addCleanup(env.stop)
        env.start()
        self._env = env
        return env

    def fail_with(self, msg):
        self.fail(f"{msg}\n{self._env.diagnostics() if getattr(self, '_env', None) else ''}")

    def assertAccounted(self, env, sink, hold, note=""):
        """Wait for the queues to settle; then exactly `sink` at the sink,
        `hold` in the hold queue, nothing anywhere else."""
        counts = env.postfix.wait_settled(timeout=30)
        got_sink = env.sink.count()
        if got_sink < sink:          # a delivery may still be in the smtp client
            try:
                env.sink.wait_count(sink, timeout=10)
            except h.HarnessError:
                pass
            got_sink = env.sink.count()
            counts = env.postfix.queue_counts()
        want = {"maildrop": 0, "incoming": 0, "active": 0, "deferred": 0, "hold": hold,
                "total": hold}
        if got_sink != sink or counts != want:
            self.fail_with(f"{note}: expected sink={sink} queues={want}, got sink={got_sink} queues={counts}")
        disk = env.postfix.files_in_queue_dirs()
        if disk["hold"] != hold or disk["corrupt"] or disk["deferred"]:
            self.fail_with(f"{note}: queue files on disk disagree: {disk}")
        return counts

    def assertDecisions(self, sg, expected, since=0):
        """expected: list of actions, in order."""
        d = sg.wait_decisions(len(expected), since=since)
        time.sleep(0.2)
        d = sg.decisions(since)
        actions = [x.get("action") for x in d]
        if actions != list(expected):
            self.fail_with(f"decisions: expected {expected}, got {actions}")
        for x in d:
            problems = h.check_decision_line(x["_line"])
            if problems:
                self.fail_with(f"malformed decision line {x['_line']!r}: {problems}")
        return d

    def assertSanitizerClean(self, env):
        if env.sendguard:
            reports = env.sendguard.sanitizer_reports()
            if reports:
                self.fail_with("sanitizer reports in sendguard's log:\n" + "\n".join(reports))
            self.assertTrue(env.sendguard.alive(), "sendguard died")

    # ------------------------------------------------------------------
    def test_smoke_relay_without_milter(self):
        """The harness itself: Postfix relays 3 messages to smtp-sink and
        the queue is empty afterwards (no sendguard involved)."""
        env = self.env(milter=False)
        res = env.smtp(3, SENDER)
        self.assertEqual(h.tally(res)["2xx"], 3, res)
        self.assertTrue(all(r.qid for r in res), res)
        env.sink.wait_count(3, timeout=20)
        self.assertAccounted(env, sink=3, hold=0, note="smoke")
        msgs = env.sink.messages()
        self.assertEqual(len(msgs), 3)
        self.assertTrue(all(m.get("mail_args", "").startswith(f"<{SENDER}>") for m in msgs), msgs)
        # a local submission goes through pickup too
        self.assertEqual(env.postfix.sendmail(SENDER, ["rcpt@example.net"]), 0)
        env.sink.wait_count(4, timeout=20)
        self.assertAccounted(env, sink=4, hold=0, note="smoke sendmail")

    def test_hold(self):
        """3N messages, cap N, action hold: N at the sink, 2N held, all
        accepted at SMTP; released, all 3N reach the sink without being
        checked again."""
        env = self.env(one_limit("hold"))
        res = env.smtp(3 * N, SENDER)
        t = h.tally(res)
        self.assertEqual(t["2xx"], 3 * N, f"hold must accept at SMTP: {res}")
        self.assertAccounted(env, sink=N, hold=2 * N, note="after 3N with hold")
        d = self.assertDecisions(env.sendguard, ["accept"] * N + ["hold"] * (2 * N))
        self.assertEqual({x["identity"] for x in d}, {f"<{SENDER}>"})
        self.assertEqual([x.get("limit") for x in d[N:]], ["hourly"] * (2 * N))
        # the held ones are exactly the ones sendguard said hold
        held_ids = {m["queue_id"] for m in env.postfix.queue() if m["queue_name"] == "hold"}
        self.assertEqual(held_ids, {x["qid"] for x in d[N:]})
        self.assertEqual(held_ids, {r.qid for r in res[N:]})

        mark = env.sendguard.log_size()
        env.postfix.release_hold()
        env.sink.wait_count(3 * N, timeout=30)
        self.assertAccounted(env, sink=3 * N, hold=0, note="after release")
        self.assertEqual(env.sendguard.decisions(mark), [],
                         "released mail must not go through the milter again")
        self.assertSanitizerClean(env)

    def test_tempfail(self):
        """3N messages, cap N, action tempfail: N accepted with 2xx, 2N
        refused with 451 4.7.1 at end of data, N at the sink, queue empty."""
        env = self.env(one_limit("tempfail"))
        res = env.smtp(3 * N, SENDER)
        t = h.tally(res)
        self.assertEqual((t["2xx"], t["4xx"], t["5xx"], t["error"]), (N, 2 * N, 0, 0), res)
        self.assertTrue(all(r.stage == "data" for r in res), res)
        self.assertTrue(all(r.code == 250 for r in res[:N]), res[:N])
        for r in res[N:]:
            self.assertEqual(r.code, 451, r)
            self.assertTrue(r.text.startswith("4.7.1 "), r)
            self.assertIn("hourly", r.text, f"reply should name the limit: {r}")
        self.assertAccounted(env, sink=N, hold=0, note="after 3N with tempfail")
        self.assertDecisions(env.sendguard, ["accept"] * N + ["tempfail"] * (2 * N))
        self.assertSanitizerClean(env)

    def test_reject(self):
        """Cap N, action reject: N accepted, the rest 550 5.7.1, N at the sink."""
        env = self.env(one_limit("reject"))
        res = env.smtp(N + 2, SENDER)
        self.assertEqual([r.code for r in res], [250] * N + [550] * 2, res)
        self.assertTrue(all(r.text.startswith("5.7.1 ") for r in res[N:]), res)
        self.assertAccounted(env, sink=N, hold=0, note="reject")
        self.assertDecisions(env.sendguard, ["accept"] * N + ["reject"] * 2)
        self.assertSanitizerClean(env)

    def test_sendmail_submissions_counted(self):
        """Local submissions (sendmail -C DIR -> pickup -> cleanup, i.e.
        non_smtpd_milters) count against the same budget: with cap N and
        hold, 3N submissions leave N at the sink and 2N held."""
        env = self.env(one_limit("hold"))
        for i in range(3 * N):
            self.assertEqual(env.postfix.sendmail(SENDER, ["rcpt@example.net"]), 0)
        env.sendguard.wait_decisions(3 * N, timeout=30)
        self.assertAccounted(env, sink=N, hold=2 * N, note="sendmail submissions")
        d = self.assertDecisions(env.sendguard, ["accept"] * N + ["hold"] * (2 * N))
        self.assertEqual({x["identity"] for x in d}, {f"<{SENDER}>"})
        # SMTP and local submissions share the budget: one more over SMTP is held too
        res = env.smtp(1, SENDER)
        self.assertEqual(res[0].code, 250, res)
        self.assertAccounted(env, sink=N, hold=2 * N + 1, note="smtp after sendmail")
        self.assertSanitizerClean(env)

    def test_identity_is_envelope_sender_and_budgets_are_separate(self):
        """No SASL: the identity is the envelope sender (lower-cased); a
        second sender (an implicit account of its own) has its own budget."""
        env = self.env(one_limit("tempfail", cap=2))
        a = env.smtp(3, "Alice@Example.COM")
        b = env.smtp(3, OTHER)
        self.assertEqual([r.code for r in a], [250, 250, 451], a)
        self.assertEqual([r.code for r in b], [250, 250, 451], b)
        self.assertAccounted(env, sink=4, hold=0, note="two senders")
        d = self.assertDecisions(env.sendguard, ["accept", "accept", "tempfail"] * 2)
        self.assertEqual([x["identity"] for x in d], ["<alice@example.com>"] * 3 + [f"<{OTHER}>"] * 3)
        self.assertEqual([x["account"] for x in d], ["<alice@example.com>"] * 3 + [f"<{OTHER}>"] * 3)
        self.assertSanitizerClean(env)

    def test_configured_account_shares_budget(self):
        """Two senders matched by one configured account ("*@example.com")
        draw on that account's single budget."""
        acct = {"address": "relay@example.com", "offer": "mxplan", "service": "mx1",
                "senders": ["*@example.com"]}
        env = self.env(one_limit("tempfail", cap=3), accounts=[acct])
        a = env.smtp(2, "alice@example.com")
        b = env.smtp(2, "carol@example.com")
        self.assertEqual([r.code for r in a + b], [250, 250, 250, 451], a + b)
        d = self.assertDecisions(env.sendguard, ["accept"] * 3 + ["tempfail"])
        self.assertEqual({x["account"] for x in d}, {"<relay@example.com>"})
        self.assertEqual([x["identity"] for x in d],
                         ["<alice@example.com>"] * 2 + ["<carol@example.com>"] * 2)
        self.assertAccounted(env, sink=3, hold=0, note="shared account")
        self.assertSanitizerClean(env)

    def test_inet_socket(self):
        """The same guard over a TCP milter socket (inet:PORT@127.0.0.1)."""
        env = self.env(one_limit("tempfail", cap=3), socket="inet")
        res = env.smtp(5, SENDER)
        self.assertEqual([r.code for r in res], [250] * 3 + [451] * 2, res)
        self.assertAccounted(env, sink=3, hold=0, note="inet socket")
        self.assertDecisions(env.sendguard, ["accept"] * 3 + ["tempfail"] * 2)
        self.assertSanitizerClean(env)

    def test_sendguard_down_tempfails(self):
        """sendguard not running: Postfix's milter_default_action=tempfail
        refuses with 4xx; nothing is accepted unchecked, nothing lost."""
        env = self.env(one_limit("hold"))
        self.assertEqual(env.smtp(1, SENDER)[0].code, 250)
        env.sink.wait_count(1)
        env.sendguard.stop()
        res = env.smtp(3, SENDER)
        self.assertEqual([r.code // 100 for r in res], [4, 4, 4], res)
        self.assertEqual(env.postfix.sendmail(SENDER, ["rcpt@example.net"]), 0)
        # the local submission waits in the queue (cleanup cannot reach the
        # milter: the queue file stays in maildrop) instead of slipping through
        time.sleep(2)
        self.assertEqual(env.sink.count(), 1, "nothing may pass while sendguard is down")
        c = env.postfix.queue_counts()
        self.assertEqual(c["total"], 1, c)
        # sendguard back: the waiting submission is checked and delivered
        env.sendguard.start()
        env.sink.wait_count(2, timeout=60)
        self.assertAccounted(env, sink=2, hold=0, note="after sendguard came back")

    # -- SMTP AUTH (Cyrus SASL, sasldb) and the macros ----------------------
    def send_as_login(self, env, count, login, password):
        res = []
        for i in range(count):
            res += env.smtp(1, SASL_SENDERS[i % len(SASL_SENDERS)], auth=(login, password))
        return res

    def test_sasl_identity(self):
        """SMTP AUTH through Postfix: the identity is the login
        ({auth_authen}); one login behind three envelope senders is one
        account with one budget; the same senders unauthenticated, and
        another login, have their own; a failed login is never counted."""
        env = self.env(one_limit("tempfail", cap=3), sasl_users=SASL_USERS)
        res = self.send_as_login(env, 9, "alice", SASL_USERS["alice"])
        self.assertEqual([r.code for r in res], [250] * 3 + [451] * 6, res)
        bad = env.smtp(1, SASL_SENDERS[0], auth=("alice", "wrong-password"))
        self.assertEqual((bad[0].stage, bad[0].code), ("auth", 535), bad)
        other = env.smtp(1, SASL_SENDERS[0]) + self.send_as_login(env, 1, "bob", SASL_USERS["bob"])
        self.assertEqual([r.code for r in other], [250, 250], other)
        self.assertAccounted(env, sink=5, hold=0, note="SASL identities")
        d = self.assertDecisions(env.sendguard, ["accept"] * 3 + ["tempfail"] * 6 + ["accept"] * 2)
        self.assertEqual([x["identity"] for x in d],
                         ["<alice>"] * 9 + [f"<{SASL_SENDERS[0]}>", "<bob>"])
        self.assertEqual([x["account"] for x in d], [x["identity"] for x in d])
        self.assertSanitizerClean(env)

    def test_sasl_local_domain(self):
        """With smtpd_sasl_local_domain set, Postfix hands {auth_authen} on
        as login@realm: an account's senders must name it that way (here
        "alice@*"), and then every message of the login counts against it."""
        acct = {"address": "relay@example.com", "offer": "mxplan", "service": "mx1",
                "senders": ["alice@*"]}
        env = self.env(one_limit("tempfail", cap=2), accounts=[acct],
                       sasl_users=SASL_USERS, sasl_realm="example.com")
        res = self.send_as_login(env, 3, "alice", SASL_USERS["alice"])
        self.assertEqual([r.code for r in res], [250, 250, 451], res)
        d = self.assertDecisions(env.sendguard, ["accept", "accept", "tempfail"])
        self.assertEqual({x["identity"] for x in d}, {"<alice@example.com>"})
        self.assertEqual({x["account"] for x in d}, {"<relay@example.com>"})
        self.assertAccounted(env, sink=2, hold=0, note="SASL realm")
        self.assertSanitizerClean(env)

    def test_macros_not_configured(self):
        """milter_mail_macros and milter_end_of_data_macros without i or
        {auth_authen}: sendguard asks for both when it negotiates (milter
        protocol 6) and Postfix sends them: identity and queue id are right,
        no warning."""
        env = self.env(one_limit("hold", cap=1), sasl_users=SASL_USERS,
                       extra_main={"milter_mail_macros": "{mail_addr}",
                                   "milter_end_of_data_macros": ""})
        res = self.send_as_login(env, 2, "alice", SASL_USERS["alice"])
        self.assertEqual([r.code for r in res], [250, 250], res)
        d = self.assertDecisions(env.sendguard, ["accept", "hold"])
        self.assertEqual([x["qid"] for x in d], [r.qid for r in res])
        self.assertEqual({x["identity"] for x in d}, {"<alice>"})
        self.assertAccounted(env, sink=1, hold=1, note="macros not configured")
        self.assertNotIn(b"sends no {i} macro", env.sendguard.log_bytes())
        self.assertSanitizerClean(env)

    def test_macros_missing(self):
        """Postfix speaking milter protocol 2 (no macro negotiation in the
        protocol) with i removed from every macro list: libmilter still asks
        for i and {auth_authen} in its negotiation reply and Postfix 3.7 sends
        them, so decisions carry the queue id and no warning is logged. (What
        sendguard does when an MTA really sends no i is checked at the milter
        level: milter_macros_missing.)"""
        env = self.env(one_limit("hold", cap=1), sasl_users=SASL_USERS,
                       extra_main={"milter_protocol": "2",
                                   "milter_mail_macros": "{auth_authen} {mail_addr}",
                                   "milter_rcpt_macros": "{rcpt_addr}",
                                   "milter_data_macros": "",
                                   "milter_end_of_header_macros": "",
                                   "milter_end_of_data_macros": ""})
        res = self.send_as_login(env, 3, "alice", SASL_USERS["alice"])
        self.assertEqual([r.code for r in res], [250, 250, 250], res)
        d = self.assertDecisions(env.sendguard, ["accept", "hold", "hold"])
        self.assertNotIn("-", {x["qid"] for x in d}, [x["_line"] for x in d])
        self.assertEqual(len({x["qid"] for x in d}), 3, [x["_line"] for x in d])
        self.assertEqual({x["identity"] for x in d}, {"<alice>"})
        log = env.sendguard.log_bytes().decode("latin-1")
        self.assertNotIn("the MTA sends no {i} macro", log)
        self.assertAccounted(env, sink=1, hold=2, note="macros missing")
        self.assertSanitizerClean(env)

    def test_load_smtp_source(self):
        """smtp-source load under the cap: every message checked once and
        delivered once (no loss, no duplicate) with parallel sessions."""
        count = 200
        env = self.env(one_limit("tempfail", cap=10 * count))
        t0 = time.monotonic()
        r = h.smtp_source(env.postfix.smtpd_port, count, sender=SENDER, sessions=10)
        self.assertEqual(r.returncode, 0, f"smtp-source: {r.stdout} {r.stderr}")
        env.sink.wait_count(count, timeout=60)
        self.assertAccounted(env, sink=count, hold=0, note="load")
        d = env.sendguard.wait_decisions(count)
        self.assertEqual(len(d), count)
        self.assertEqual({x["action"] for x in d}, {"accept"})
        self.assertEqual(len({x["qid"] for x in d}), count, "one decision per queue id")
        h.log(f"{count} messages through Postfix+sendguard in {time.monotonic() - t0:.1f}s")
        self.assertSanitizerClean(env)


if __name__ == "__main__":
    unittest.main(verbosity=2)
