#!/usr/bin/env python3
"""
test_suggest.py - sendguardctl suggest-limits against a real redis-server
holding two weeks of synthetic hourly counts, written where the decide
script keeps them (PREFIX{sha1(account)}:ev:hour, fields HOUR:m accepted,
HOUR:x refused, HOUR:r recipients):

  steady@   10 messages an hour in office hours, one hour of 16
  news@     a little every day, and a newsletter of 1,500 (300 of them
            refused) on two days a week apart: a pattern, learned
  hacked@   5 an hour, and one day of 3,000: flagged, not learned

It checks the figures, the proposals (peak x 1.5, floors, ceilings from
--max-hourly/--max-daily), the flag, --json, and that the proposed blocks
pasted into a configuration pass `sendguard -t`.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import harness as h          # noqa: E402

ACCOUNTS = [{"address": a, "offer": "emailpro", "service": "pro"}
            for a in ("steady@example.com", "news@example.com", "hacked@example.com")]


class Suggest(h.ScratchTestCase):
    scratch_prefix = "sg-suggest-"

    def ctl(self, *args):
        exe = os.path.join(os.path.dirname(h.sendguard_binary()), "sendguardctl")
        return subprocess.run([exe, "-c", self.conf, "suggest-limits", *args],
                              capture_output=True, text=True, timeout=60)

    def fill(self):
        day0 = int(time.time() // 86400) - 13         # 13 whole days, then today
        data = {a["address"]: {} for a in ACCOUNTS}

        def put(acct, hour, m, r=None, x=0):
            d = data[acct]
            d[f"{hour}:m"] = m
            d[f"{hour}:r"] = r if r is not None else 2 * m
            if x:
                d[f"{hour}:x"] = x
        for day in range(day0, day0 + 13):
            for hr in range(8, 18):
                put("steady@example.com", day * 24 + hr, 10)
                put("news@example.com", day * 24 + hr, 2)
                put("hacked@example.com", day * 24 + hr, 5)
        put("steady@example.com", (day0 + 3) * 24 + 11, 16)
        for d in (day0 + 2, day0 + 9):             # the newsletter, weekly
            put("news@example.com", d * 24 + 19, 1200, r=1200, x=300)
        for hr in (1, 2, 3):                       # the compromised day
            put("hacked@example.com", (day0 + 6) * 24 + hr, 1000, r=5000)
        for acct, fields in data.items():
            key = f"sg:{{{hashlib.sha1(acct.encode()).hexdigest()}}}:ev:hour"
            args = ["HSET", key]
            for k, v in fields.items():
                args += [k, str(v)]
            self.redis.command(*args)
            self.redis.command("PEXPIRE", key, str(15 * 24 * 3600 * 1000))
        return day0

    def setUp(self):
        self.redis = h.RedisServer(self.scratch.sub("redis")).start()
        self.addCleanup(self.redis.stop)
        self.conf = self.scratch.file("sendguard.conf")
        with open(self.conf, "w") as f:
            f.write(h.sendguard_config("unix:/nonexistent/s.sock", [h.limit("hourly", "1h", 100, "tempfail")],
                                       accounts=ACCOUNTS,
                                       store={"backend": "redis",
                                              "redis": {"host": "127.0.0.1", "port": self.redis.port}}))

    def test_suggest(self):
        day0 = self.fill()
        r = self.ctl("--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        got = {x["account"]: x for x in json.loads(r.stdout)}
        s, n, k = got["steady@example.com"], got["news@example.com"], got["hacked@example.com"]
        # steady: busiest hour 16, days of 100 (one of 106), p99 of its hours 10
        self.assertEqual(s["busiest_hour"]["messages"], 16)
        self.assertEqual(s["busiest_day"]["messages"], 106)
        self.assertEqual(s["busiest_day"]["start_s"], (day0 + 3) * 86400)
        self.assertEqual(s["p99_hour"], 10)
        self.assertEqual(s["flagged_days"], [])
        self.assertEqual([(x["name"], x["messages"], x["recipients"]) for x in s["limits"]],
                         [("hourly", 24, 48), ("daily", 159, 318)])
        # the newsletter: its bursts (refused ones included: what it tried) are learned
        self.assertEqual(n["busiest_hour"]["messages"], 1500)
        self.assertEqual(n["flagged_days"], [])
        self.assertEqual([x["messages"] for x in n["limits"]], [2250, 2280])
        # the compromised day: flagged, and the proposal is what the account usually does
        self.assertEqual([(f["day_start_s"], f["messages"]) for f in k["flagged_days"]],
                         [((day0 + 6) * 86400, 3050)])
        self.assertEqual(k["busiest_hour"]["messages"], 5)
        self.assertEqual(k["busiest_day"]["messages"], 50)
        self.assertEqual([x["messages"] for x in k["limits"]], [10, 75])
        self.assertFalse(k["capped"])

        # ceilings: never above what the postmaster trusts
        r = self.ctl("news@example.com", "--max-hourly", "1000", "--max-daily", "1800", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        (only,) = json.loads(r.stdout)
        self.assertEqual(only["account"], "news@example.com")
        self.assertTrue(only["capped"])
        self.assertEqual([x["messages"] for x in only["limits"]], [1000, 1800])

        # text: the flag, and blocks ready to paste
        r = self.ctl()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("FLAGGED", r.stdout.split("account hacked@example.com")[1])
        self.assertNotIn("FLAGGED", r.stdout.split("account hacked@example.com")[0])
        blocks = re.findall(r"^    (limits = \(\n.*?\n    \);)$", r.stdout, re.S | re.M)
        self.assertEqual(len(blocks), 3, r.stdout)
        accts = "accounts = (\n" + ",\n".join(
            f'  {{ address = "{a["address"]}"; offer = "emailpro"; service = "pro";\n{b} }}'
            for a, b in zip(ACCOUNTS, blocks)) + "\n);\n"
        pasted = self.scratch.file("pasted.conf")
        with open(pasted, "w") as f:
            f.write(accts)
        t = subprocess.run([h.sendguard_binary(), "-t", "-c", pasted], capture_output=True, text=True)
        self.assertEqual(t.returncode, 0, t.stderr + accts)

        # usage errors
        self.assertEqual(self.ctl("--days", "15").returncode, 64)
        self.assertEqual(self.ctl("nobody@example.com").returncode, 64)


if __name__ == "__main__":
    unittest.main()
