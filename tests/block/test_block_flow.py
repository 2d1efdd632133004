#!/usr/bin/env python3
"""test_block_flow.py - characterization of two block-workflow paths that had
no end-to-end test before the workflow module (issue 12): they must behave
the same before and after the refactor.

The real sendguardctl and (auto_reply) the real sendguard daemon, a real
redis-server and the stand-in OVHcloud API (tests/ovhapi/standin.py), no
Postfix. Checked: what the API was asked, what the SASL map holds, what the
store says (`sendguardctl status --json`).

  rotate_password   `sendguardctl rotate-password` on an account that is not
                    blocked (phase stays ok, lockdown stays off) and on one
                    locked down by hand (phase stays "lockdown", still locked
                    down): one changePassword POST each, the map rewritten
                    with the password OVHcloud set, after_password_change run
  auto_reply        the daemon's watcher sees a block of an account with
                    auto_reply: the draft is posted on the ticket exactly once
                    (phase "replied", still locked down); a legacy MX Plan
                    account gets a new password in its map (phase
                    "password_changed"); once OVHcloud unblocks them, phase
                    "unblocked" and the lockdown is lifted

    SG_SENDGUARD=build/sendguard SG_SENDGUARDCTL=build/sendguardctl \
      python3 tests/block/test_block_flow.py -v Flow.test_auto_reply
"""
import os
import pwd
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockenv  # noqa: E402
from blockenv import harness  # noqa: E402
from test_block_writes import LEGACY, OLD, PRO, Writes  # noqa: E402

POLL = "5s"


class Flow(Writes):
    scratch_prefix = "sg-flow-"

    # Writes' own cases are run by test_block_writes.py, not again here.
    for _name in [n for n in dir(Writes) if n.startswith("test_")]:
        locals()[_name] = None
    del _name

    def phase(self, address):
        return self.status(address)["phase"]

    def check_rotated(self, address):
        pw = self.api_password(address)
        self.assertIsNotNone(pw, "the password was changed at OVHcloud")
        self.assertNotEqual(pw, OLD)
        self.assertEqual(self.map_password(address), pw, "the map has the password OVHcloud set")
        self.assertIn("[smtp.other.example]:587 someone@example.org:keepme123\n",
                      self.map_text(address), "the other lines are kept")

    # -- cases --------------------------------------------------------------
    def test_rotate_password(self):
        p = self.ctl("rotate-password", PRO, "--yes")
        self.assertEqual(p.returncode, 0, self.out(p))
        self.assertIn("password of %s changed" % PRO, p.stdout, self.out(p))
        self.check_rotated(PRO)
        self.assertNotIn(self.api_password(PRO), p.stdout + p.stderr, "not printed")
        self.assertEqual(len(self.posts(r"/changePassword$")), 1, "one POST")
        self.assertTrue(os.path.exists(self.marker), "after_password_change ran")
        st = self.status(PRO)
        self.assertEqual(st["phase"], "ok", st)
        self.assertFalse(st["blocked"], st)

        # Locked down by hand: a rotation changes the password, not the state.
        p = self.ctl("lockdown", LEGACY)
        self.assertEqual(p.returncode, 0, self.out(p))
        os.unlink(self.marker)
        p = self.ctl("rotate-password", LEGACY, "--yes")
        self.assertEqual(p.returncode, 0, self.out(p))
        self.check_rotated(LEGACY)
        self.assertEqual(len(self.posts(r"/changePassword$")), 2, "one more POST")
        self.assertTrue(os.path.exists(self.marker))
        st = self.status(LEGACY)
        self.assertEqual(st["phase"], "lockdown", st)
        self.assertTrue(st["blocked"], "still locked down: %r" % st)
        # Not confirmed: nothing done.
        p = self.ctl("rotate-password", PRO)
        self.assertEqual(p.returncode, 1, self.out(p))
        self.assertIn("not confirmed", p.stderr)
        self.assertEqual(len(self.posts(r"/changePassword$")), 2)

    def start_daemon(self):
        """The daemon as nobody with the watcher on and auto_reply for both
        accounts; the maps in a directory nobody owns (the daemon rewrites
        them)."""
        nobody = pwd.getpwnam(blockenv.DAEMON_USER)
        mapdir = self.scratch.sub("maps", mode=0o700)
        os.chown(mapdir, nobody.pw_uid, nobody.pw_gid)
        accounts = []
        for offer in ("emailpro", "mxplan-legacy"):
            acct = dict(blockenv.ACCOUNTS[offer])
            path = os.path.join(mapdir, "sasl_passwd." + offer)
            os.replace(self.maps[acct["address"]], path)
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
            self.maps[acct["address"]] = path
            acct["sasl_map_file"] = path
            acct["auto_reply"] = True
            accounts.append(acct)
        os.chown(self.ovh_conf, nobody.pw_uid, nobody.pw_gid)
        store = {"backend": "redis", "on_error": "tempfail",
                 "redis": {"host": harness.LOOPBACK, "port": self.redis.port,
                           "connect_timeout_ms": 2000, "command_timeout_ms": 2000}}
        conf = lambda sock: harness.sendguard_config(  # noqa: E731
            sock, [harness.limit("hourly", "1h", 1000, "tempfail")], accounts=accounts,
            store=store, relay_name="relay1",
            ovh={"credentials": self.ovh_conf, "poll_interval": POLL, "timeout": "5s"})
        # sendguardctl reads the same accounts
        with open(self.conf, "w") as f:
            f.write(conf("inet:1@127.0.0.1"))
        d = harness.Sendguard(harness.sendguard_binary(), self.scratch.sub("daemon"), conf,
                              env={"SG_OVH_TEST_TASK_WAIT_MS": "20000",
                                   "SG_OVH_TEST_MINUTE_MS": "6000"})
        d.start()
        self.addCleanup(d.stop)
        return d

    def wait_phase(self, d, address, phase, timeout=40):
        """Kick a poll once (a kick restarts the round), then let the
        watcher's own polls (every POLL) bring the phase."""
        d.signal(signal.SIGUSR1)
        harness.wait_until(lambda: self.phase(address) == phase, timeout,
                           "%s in phase %s" % (address, phase), interval=1.0)

    def test_auto_reply(self):
        d = self.start_daemon()
        # Email Pro: the draft is posted on the ticket, once.
        r = self.standin.block(PRO)
        self.wait_phase(d, PRO, "replied")
        st = self.status(PRO)
        self.assertTrue(st["blocked"], "locked down until OVHcloud unblocks: %r" % st)
        self.assertIn("sendguard (auto_reply)", st["note"], st)
        replies = self.standin.replies(r["ticketId"])
        self.assertEqual(len(replies), 1, "posted once: %r" % replies)
        self.assertIn(str(r["ticketNumber"]), replies[0], "the draft names the ticket")
        d.wait_log(r"auto_reply: account=<%s>: reply posted" % PRO, timeout=10)
        d.wait_log(r"event=blocked", timeout=10)
        # Legacy MX Plan: a new password, in the map once its task is done.
        self.standin.block(LEGACY)
        self.wait_phase(d, LEGACY, "password_changed")
        self.check_rotated(LEGACY)
        self.assertEqual(len(self.posts(r"/changePassword$")), 1, "one POST")
        self.assertTrue(self.status(LEGACY)["blocked"])
        # More polls while blocked: nothing posted or changed again.
        time.sleep(11)                          # two more polls
        d.wait_log(r"auto_reply: account=<%s>: password of" % LEGACY, timeout=10)
        self.assertEqual(len(self.standin.replies(r["ticketId"])), 1, "not posted again")
        self.assertEqual(len(self.posts(r"/changePassword$")), 1, "not changed again")
        # OVHcloud unblocks: the lockdown ends.
        for a in (PRO, LEGACY):
            self.standin.unblock(a)
            self.wait_phase(d, a, "unblocked")
            self.assertFalse(self.status(a)["blocked"])
        self.assertEqual(d.sanitizer_reports(), [], "no sanitizer report")
        self.assertEqual(d.log_bytes().count(b"event=blocked"), 2, "one block alert each")


if __name__ == "__main__":
    unittest.main()
