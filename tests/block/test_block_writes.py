#!/usr/bin/env python3
"""test_block_writes.py - the block workflow's writes are done exactly once,
and the SASL map follows OVHcloud's password task (issue 11).

The real sendguardctl against a real redis-server (the store) and the
stand-in OVHcloud API (tests/ovhapi/standin.py, --clock-offset 3600), no
Postfix and no daemon: what is checked is what the API was asked, what the
SASL map holds and what the store says.

  reply_lost        a reply whose answer is lost (the stand-in carries it out,
                    then cuts the connection) is on the ticket exactly once
  password_lost     a changePassword whose answer is lost: the new password
                    reaches the SASL map exactly when the task is done
                    (legacy MX Plan through `unblock`, Email Pro through
                    `rotate-password`); one POST each
  task_error        a task in error leaves the map byte for byte and the
                    account locked down
  task_pending      a task still running after the bounded wait: exit 75,
                    "still pending: run `sendguardctl status ...`"; `status`
                    finishes it once the task is done
  legacy_force      legacy account reading unblocked: without --force
                    explains and exits non-zero (nothing posted); with
                    --force the password changes and the map is rewritten
  reopen            a ticket support closed while the account is still
                    blocked is reopened (once), then the reply is posted

    SG_SENDGUARDCTL=build/sendguardctl python3 tests/block/test_block_writes.py -v
"""
import json
import os
import re
import stat
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blockenv  # noqa: E402
from blockenv import harness  # noqa: E402

OLD = "oldpassword"
LEGACY = "fax@example.net"
PRO = "sales@example.com"


def ctl_binary():
    ctl = os.environ.get("SG_SENDGUARDCTL")
    if not ctl:
        sg = harness.sendguard_binary()
        ctl = os.path.join(os.path.dirname(sg), "sendguardctl")
    return ctl


class Writes(harness.ScratchTestCase):
    scratch_prefix = "sg-writes-"

    def setUp(self):
        self.ctl_bin = ctl_binary()
        if not os.access(self.ctl_bin, os.X_OK):
            raise harness.HarnessError(f"sendguardctl not found: {self.ctl_bin!r}")
        self.home = self.scratch.sub("home", mode=0o700)
        self.standin = blockenv.Standin(self.scratch.sub("standin"), blockenv.fixture())
        self.standin.start()
        self.addCleanup(self.standin.stop)
        self.redis = harness.RedisServer(self.scratch.sub("redis"))
        self.redis.start()
        self.addCleanup(self.redis.stop)
        self.ovh_conf = self.standin.write_ovh_conf(self.scratch.file("ovh.conf"))
        self.maps = {}
        self.marker = self.scratch.file("after_password_change.marker")
        accounts = []
        for offer in ("emailpro", "mxplan-legacy"):
            acct = dict(blockenv.ACCOUNTS[offer])
            path = self.scratch.file("sasl_passwd." + offer)
            with open(path, "w") as f:
                f.write("# relay credentials\n"
                        "[smtp.other.example]:587 someone@example.org:keepme123\n"
                        f"[127.0.0.1]:2525 {acct['address']}:{OLD}\n")
            os.chmod(path, 0o600)
            acct["sasl_map_file"] = path
            self.maps[acct["address"]] = path
            accounts.append(acct)
        self.conf = self.scratch.file("sendguard.conf")
        with open(self.conf, "w") as f:
            f.write(harness.sendguard_config(
                "inet:1@127.0.0.1", [harness.limit("hourly", "1h", 1000, "tempfail")],
                accounts=accounts,
                store={"backend": "redis", "on_error": "tempfail",
                       "redis": {"host": harness.LOOPBACK, "port": self.redis.port,
                                 # a loaded CI machine: no spurious store timeouts
                                 "connect_timeout_ms": 2000, "command_timeout_ms": 2000}},
                relay_name="relay1",
                ovh={"credentials": self.ovh_conf, "poll_interval": "off", "timeout": "5s"},
                after_password_change=["touch", self.marker]))

    # -- helpers ------------------------------------------------------------
    def ctl(self, *args, env=None):
        e = blockenv.clean_env(self.home, env)
        p = subprocess.run([self.ctl_bin, "-c", self.conf, *args], capture_output=True,
                           text=True, timeout=90, env=e, cwd=self.home, input="")
        self.assertGreaterEqual(p.returncode, 0, f"died of a signal: {p.stderr}")
        for m in harness.SANITIZER_MARKERS:
            self.assertNotIn(m, p.stderr, f"sanitizer report from {args}")
        for s in blockenv.SECRETS:
            self.assertNotIn(s, p.stdout + p.stderr, "an API secret was printed")
        return p

    def out(self, p):
        return f"\n--- rc {p.returncode}\n--- stdout:\n{p.stdout}\n--- stderr:\n{p.stderr}"

    def map_text(self, address):
        with open(self.maps[address]) as f:
            return f.read()

    def map_password(self, address):
        m = re.search(r"^\[127\.0\.0\.1\]:2525 %s:(.*)$" % re.escape(address),
                      self.map_text(address), re.M)
        return m.group(1) if m else None

    def api_password(self, address):
        return self.standin.state()["passwords"].get(address)

    def status(self, address):
        p = self.ctl("status", address, "--json")
        self.assertIn(p.returncode, (0, 1), self.out(p))
        j = json.loads(p.stdout)
        return next(x for x in j if x.get("account") == address) if isinstance(j, list) else j

    def posts(self, pattern):
        return [e for e in self.standin.log() if e["method"] == "POST" and re.search(pattern, e["path"])]

    # -- cases --------------------------------------------------------------
    def test_reply_lost(self):
        r = self.standin.block(PRO)
        self.standin.control("fault", {"mode": "drop", "path": "/support/tickets/%d/reply" % r["ticketId"]})
        p = self.ctl("unblock", PRO, "--yes")
        self.assertEqual(p.returncode, 0, "the reply is found on the ticket after the lost answer" + self.out(p))
        self.assertIn("reply posted", p.stdout, self.out(p))
        posts = self.posts(r"/reply$")
        self.assertEqual(len(posts), 1, "one POST, never resent: %r" % posts)
        self.assertTrue(posts[0].get("dropped"), "the answer was really lost")
        msgs = [m for m in self.standin.ticket(r["ticketId"])["messages"] if m["from"] == "customer"]
        self.assertEqual(len(msgs), 1, "the reply is on the ticket exactly once")
        self.assertEqual(self.status(PRO)["phase"], "replied")
        # Run again: recognised, not posted twice.
        p = self.ctl("unblock", PRO, "--yes")
        self.assertEqual(p.returncode, 0, self.out(p))
        self.assertEqual(len(self.posts(r"/reply$")), 1, "not posted again")

    def test_password_lost(self):
        # Legacy MX Plan, through unblock (its unblock is the password change).
        self.standin.block(LEGACY)
        self.standin.control("fault", {"mode": "drop", "path": "/email/domain/example.net/account/fax/changePassword"})
        p = self.ctl("unblock", LEGACY, "--yes")
        self.assertEqual(p.returncode, 0, self.out(p))
        pw = self.api_password(LEGACY)
        self.assertIsNotNone(pw, "the change was carried out")
        self.assertEqual(self.map_password(LEGACY), pw, "the map has the password OVHcloud set")
        self.assertEqual(len(self.posts(r"/changePassword$")), 1, "one POST, never resent")
        self.assertIn("[smtp.other.example]:587 someone@example.org:keepme123\n", self.map_text(LEGACY))
        self.assertEqual(stat.S_IMODE(os.stat(self.maps[LEGACY]).st_mode), 0o600)
        self.assertTrue(os.path.exists(self.marker), "after_password_change ran")
        self.assertNotIn(pw, p.stdout + p.stderr)
        # The map was written only after the task read "done" (legacy: gone).
        reads = [e for e in self.standin.log() if e["method"] == "GET" and "/task/account/" in e["path"]]
        self.assertTrue(reads and reads[-1]["status"] == 404, "followed to done: %r" % reads)
        self.assertEqual(self.status(LEGACY)["phase"], "password_changed")
        # Email Pro, through rotate-password: a task with a status.
        os.unlink(self.marker)
        self.standin.control("clear_log", {})
        self.standin.control("fault", {"mode": "drop", "path": "/email/pro/pro1/account/%s/changePassword" % PRO})
        p = self.ctl("rotate-password", PRO, "--yes")
        self.assertEqual(p.returncode, 0, self.out(p))
        pw = self.api_password(PRO)
        self.assertEqual(self.map_password(PRO), pw)
        self.assertEqual(len(self.posts(r"/changePassword$")), 1)
        statuses = [e for e in self.standin.log() if re.search(r"/tasks/\d+$", e["path"])]
        self.assertGreaterEqual(len(statuses), 2, "todo/doing then done were read: %r" % statuses)

    def test_task_error(self):
        self.standin.block(PRO)
        p = self.ctl("lockdown", PRO)
        self.assertEqual(p.returncode, 0, self.out(p))
        before = open(self.maps[PRO], "rb").read()
        st_before = os.stat(self.maps[PRO])
        # The answer is lost and the task ends in error.
        self.standin.control("task_outcome", {"outcome": "error"})
        self.standin.control("fault", {"mode": "drop", "path": "/email/pro/pro1/account/%s/changePassword" % PRO})
        p = self.ctl("rotate-password", PRO, "--yes")
        self.assertEqual(p.returncode, 1, self.out(p))
        self.assertIn("ended in error", p.stderr, self.out(p))
        self.assertEqual(open(self.maps[PRO], "rb").read(), before, "map untouched")
        self.assertEqual(os.stat(self.maps[PRO]).st_ino, st_before.st_ino, "map not replaced")
        self.assertFalse(os.path.exists(self.marker), "after_password_change not run")
        self.assertEqual(len(self.posts(r"/changePassword$")), 1)
        st = self.status(PRO)
        self.assertTrue(st["blocked"], f"still locked down: {st}")
        self.assertIn("error", st["note"], st)

    def test_task_pending(self):
        self.standin.block(LEGACY)
        p = self.ctl("lockdown", LEGACY)       # as the watcher would have
        self.assertEqual(p.returncode, 0, self.out(p))
        before = open(self.maps[LEGACY], "rb").read()
        self.standin.control("task_outcome", {"outcome": "stuck"})
        p = self.ctl("unblock", LEGACY, "--yes", env={"SG_OVH_TEST_TASK_WAIT_MS": "1500"})
        self.assertEqual(p.returncode, 75, self.out(p))
        self.assertIn("still pending: run `sendguardctl status %s`" % LEGACY, p.stderr, self.out(p))
        self.assertEqual(open(self.maps[LEGACY], "rb").read(), before, "nothing written yet")
        pending = self.maps[LEGACY] + ".sendguard-pending"
        self.assertEqual(stat.S_IMODE(os.stat(pending).st_mode), 0o600, "the pending password is private")
        st = self.status(LEGACY)
        self.assertEqual(st["phase"], "password_pending", st)
        self.assertTrue(st["blocked"], "locked down while pending")
        # Another change meanwhile is refused.
        p = self.ctl("rotate-password", LEGACY, "--yes")
        self.assertEqual(p.returncode, 1, self.out(p))
        self.assertIn("pending", p.stderr)
        self.assertEqual(len(self.posts(r"/changePassword$")), 1)
        # Still running: status says so and writes nothing.
        p = self.ctl("status", LEGACY)
        self.assertIn("still pending", p.stdout, self.out(p))
        self.assertEqual(open(self.maps[LEGACY], "rb").read(), before)
        # Done at OVHcloud: status finishes it.
        self.standin.control("finish_tasks", {"outcome": "done"})
        p = self.ctl("status", LEGACY)
        for _ in range(3):                 # legacy: listed, then gone (404) = done
            if self.map_password(LEGACY) != OLD:
                break
            p = self.ctl("status", LEGACY)
        self.assertEqual(p.returncode, 0, self.out(p))
        self.assertEqual(self.map_password(LEGACY), self.api_password(LEGACY), self.out(p))
        self.assertFalse(os.path.exists(pending), "the pending file is gone")
        self.assertTrue(os.path.exists(self.marker))
        self.assertEqual(self.status(LEGACY)["phase"], "password_changed")

    def test_legacy_force(self):
        self.assertFalse(self.standin.account(LEGACY)["blocked"])
        p = self.ctl("unblock", LEGACY, "--yes")
        self.assertNotEqual(p.returncode, 0, self.out(p))
        self.assertIn("--force", p.stderr, "says how")
        self.assertIn("can be blocked while it reads", p.stderr, "says why")
        self.assertEqual(self.posts(r"/changePassword$"), [], "nothing changed without --force")
        self.assertEqual(self.map_password(LEGACY), OLD)
        p = self.ctl("unblock", LEGACY, "--yes", "--force")
        self.assertEqual(p.returncode, 0, self.out(p))
        pw = self.api_password(LEGACY)
        self.assertIsNotNone(pw)
        self.assertEqual(self.map_password(LEGACY), pw, "map rewritten")
        self.assertEqual(len(self.posts(r"/changePassword$")), 1)
        # --force without --yes and no terminal: not confirmed, nothing done.
        p = self.ctl("unblock", LEGACY, "--force")
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(len(self.posts(r"/changePassword$")), 1)
        # --force means nothing for the other offers.
        p = self.ctl("unblock", PRO, "--yes", "--force")
        self.assertEqual(p.returncode, 0, self.out(p))
        self.assertIn("not blocked", p.stdout)
        self.assertEqual(len(self.posts(r"/changePassword$")), 1)

    def test_reopen(self):
        r = self.standin.block(PRO)
        self.standin.control("close_ticket", {"ticketId": r["ticketId"]})
        self.assertEqual(self.standin.ticket(r["ticketId"])["state"], "closed")
        p = self.ctl("unblock", PRO, "--yes")
        self.assertEqual(p.returncode, 0, self.out(p))
        self.assertEqual(len(self.posts(r"/tickets/%d/reopen$" % r["ticketId"])), 1)
        t = self.standin.ticket(r["ticketId"])
        self.assertEqual(t["state"], "open")
        self.assertEqual(len([m for m in t["messages"] if m["from"] == "customer"]), 1)
        # The search asked for autogenerated tickets explicitly.
        searches = [e for e in self.standin.log() if e["method"] == "GET" and "/support/tickets?" in e["path"]]
        self.assertTrue(searches and all("excludeAutogenerated=false" in e["path"] for e in searches),
                        searches)


if __name__ == "__main__":
    unittest.main()
