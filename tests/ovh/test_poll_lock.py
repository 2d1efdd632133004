#!/usr/bin/env python3
"""Two relays on one Redis, both with the OVHcloud watcher on: only one polls
the API at a time (a lock with expiry in Redis), a block is alerted once in
all, and when the polling relay stops the other takes over.

Real redis-server, the real sendguard daemon twice, the stand-in API on
127.0.0.1. Usage: test_poll_lock.py --sendguard BIN --standin standin.py
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import harness  # noqa: E402

POLL = 5                    # seconds: ovh.poll_interval
ACCOUNTS = [
    {"address": "boss@example.com", "offer": "exchange", "organization": "org1", "service": "ex1"},
    {"address": "sales@example.com", "offer": "emailpro", "service": "pro1"},
    {"address": "info@example.org", "offer": "mxplan", "service": "mx1"},
]
FIXTURE = {
    "credentials": [{"application_key": "AK", "application_secret": "AS", "consumer_key": "CK"}],
    "exchange": [{"organization": "org1", "service": "ex1", "address": "boss@example.com",
                  "blocked": False}],
    "emailpro": [{"service": "pro1", "address": "sales@example.com", "blocked": False}],
    "mxplan": [{"service": "mx1", "address": "info@example.org", "blocked": False}],
    "legacy": [],
}


class Standin:
    def __init__(self, path, workdir):
        fx = os.path.join(workdir, "fixture.json")
        with open(fx, "w") as f:
            json.dump(FIXTURE, f)
        self.proc = subprocess.Popen([sys.executable, path, "--port", "0", "--fixture", fx,
                                      "--clock-offset", "3600"], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        m = re.fullmatch(r"READY (\d+)\s*", line or "")
        if not m:
            raise harness.HarnessError("stand-in did not start: %r" % line)
        self.port = int(m.group(1))
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def control(self, name, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request("http://127.0.0.1:%d/__control/%s" % (self.port, name),
                                     data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        with self.opener.open(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def account_calls(self):
        return [e for e in self.control("log")
                if e["method"] == "GET" and "/account/" in e["path"]]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sendguard", required=True)
    ap.add_argument("--standin", required=True)
    args = ap.parse_args()
    harness.require_tool("redis-server")
    harness.arm_timeout(100)
    scratch = harness.Scratch("sg-poll-lock-")
    ok = False
    api = relays = redis = None
    try:
        redis = harness.RedisServer(scratch.sub("redis")).start()
        api = Standin(args.standin, scratch.path)
        ovh_conf = scratch.file("ovh.conf")
        with open(ovh_conf, "w") as f:
            f.write("[default]\nendpoint=http://127.0.0.1:%d/1.0\n[http://127.0.0.1:%d/1.0]\n"
                    "application_key=AK\napplication_secret=AS\nconsumer_key=CK\n"
                    % (api.port, api.port))
        os.chmod(ovh_conf, 0o600)
        pw = harness.pwd.getpwnam("nobody")      # the user the daemons run as
        os.chown(ovh_conf, pw.pw_uid, pw.pw_gid)
        relays = []
        for name in ("relay1", "relay2"):
            conf = lambda sock, name=name: harness.sendguard_config(
                sock, [harness.limit(messages=1000, action="tempfail")], ACCOUNTS,
                store={"backend": "redis", "redis": {"host": "127.0.0.1", "port": redis.port}},
                ovh={"credentials": ovh_conf, "poll_interval": "%ds" % POLL, "timeout": "5s"},
                relay_name=name)
            relays.append(harness.Sendguard(args.sendguard, scratch.sub(name), conf).start())

        # 1. Both running for ~3 polls: the calls are those of one relay.
        time.sleep(1)
        api.control("clear_log", {})
        window = 3 * POLL - 1
        time.sleep(window)
        n = len(api.account_calls())
        rounds = n / len(ACCOUNTS)
        # one poller: a round per POLL s, the holder renewing its lock; two
        # unlocked pollers would make ~2x that.
        bound = (int(window / POLL) + 1) * len(ACCOUNTS)
        harness.log(f"{n} account calls in {window}s with two relays (bound {bound})")
        if not (len(ACCOUNTS) <= n <= bound):
            raise AssertionError(f"{n} account GETs in {window}s: expected one poller "
                                 f"({len(ACCOUNTS)}..{bound}), i.e. {rounds:.1f} rounds")
        owner = redis.command("GET", "sg:lock:ovh-poll")
        if not owner or not owner.startswith(("relay1:", "relay2:")):
            raise AssertionError(f"no poll lock in Redis: {owner!r}")

        # 2. A block is alerted once across both relays.
        api.control("block", {"address": "sales@example.com"})
        for r in relays:
            r.signal(signal.SIGUSR1)              # poll now (only the lock holder does)
        harness.wait_until(lambda: any(b"event=blocked" in r.log_bytes() for r in relays),
                           3 * POLL, "the block alert")
        time.sleep(2 * POLL)                        # more polls: no new alert
        alerts = sum(r.log_bytes().count(b"[alert]: ovh: account=<sales@example.com>")
                     for r in relays)
        if alerts != 1:
            raise AssertionError(f"{alerts} block alerts across the relays, expected 1")

        # 3. The polling relay stops: the other takes over once the lock expires.
        holder = relays[0] if owner.startswith("relay1:") else relays[1]
        other = relays[1] if holder is relays[0] else relays[0]
        holder.stop()
        api.control("clear_log", {})
        time.sleep(3 * POLL)
        n = len(api.account_calls())
        if n < len(ACCOUNTS):
            raise AssertionError(f"after the poller stopped, {n} account calls in {3 * POLL}s: "
                                 "the other relay did not take over")
        if not other.alive():
            raise AssertionError("the remaining relay died")
        ok = True
        print("poll lock: ok")
    finally:
        for r in relays or []:
            r.stop()
        if api:
            api.stop()
        if redis:
            redis.stop()
        scratch.finish(ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
