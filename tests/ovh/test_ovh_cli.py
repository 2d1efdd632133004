#!/usr/bin/env python3
"""test_ovh_cli.py - `sendguardctl ovh ...` and the sg_ovh library against the
stand-in OVHcloud API (tests/ovhapi/standin.py), on 127.0.0.1 only.

    test_ovh_cli.py --sendguardctl BIN --probe BIN --standin standin.py CASE

Each CASE starts its own stand-in (--clock-offset 3600, so a client that
ignores /auth/time fails), writes a sendguard config and an ovh.conf (mode
0600) into a temporary directory and runs the real binaries. Anything that
cannot run is a failure, never a skip.
"""

import argparse
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request

AK = "ak-test-2f1e"
AS = "as-SECRET-9c4d7e1a"
CK = "ck-SECRET-valid-51b0"
OLD_CK = "ck-SECRET-expired-77aa"
SECRETS = (AS, CK, OLD_CK, "csecret-SECRET-3e")

FIXTURE = {
    "credentials": [
        {"application_key": AK, "application_secret": AS, "consumer_key": CK},
        {"application_key": AK, "application_secret": AS, "consumer_key": OLD_CK, "expired": True},
    ],
    "oauth2": [{"client_id": "cid-test", "client_secret": "csecret-SECRET-3e", "expires_in": 3600}],
    "exchange": [
        {"organization": "org1", "service": "ex1", "address": "boss@example.com", "blocked": False,
         "forwardingEmail": "boss.home@example.org"},
        {"organization": "org1", "service": "ex1", "address": "spammer@example.com", "blocked": True},
    ],
    "emailpro": [
        {"service": "pro1", "address": "sales@example.com", "blocked": True, "suspicious": 42},
        {"service": "pro1", "address": "desk@example.com", "blocked": False},
    ],
    "mxplan": [
        {"service": "mx1", "address": "info@example.org", "blocked": False},
        {"service": "mx1", "address": "news@example.org", "blocked": True},
    ],
    "legacy": [
        {"domain": "example.net", "local": "fax", "blocked": False,
         "redirections": [{"to": "x@y.example"}, {"to": "archive@example.org"}]},
        {"domain": "example.net", "local": "scanner", "blocked": True},
    ],
    "tickets": [
        {"subject": "Account locked for spam.", "state": "closed", "serviceName": "pro1",
         "address": "old@example.com", "age_days": 90},
    ],
    "ticket_language": "en",
}

# address -> (offer, organization, service, blocked in the fixture)
ACCOUNTS = {
    "boss@example.com": ("exchange", "org1", "ex1", False),
    "spammer@example.com": ("exchange", "org1", "ex1", True),
    "sales@example.com": ("emailpro", None, "pro1", True),
    "desk@example.com": ("emailpro", None, "pro1", False),
    "info@example.org": ("mxplan", None, "mx1", False),
    "news@example.org": ("mxplan", None, "mx1", True),
    "fax@example.net": ("mxplan-legacy", None, None, False),
    "scanner@example.net": ("mxplan-legacy", None, None, True),
}
UNBLOCKED = [a for a, v in ACCOUNTS.items() if not v[3]]


class Fail(Exception):
    pass


def check(cond, msg, *ctx):
    if not cond:
        extra = "".join("\n--- %s" % c for c in ctx)
        raise Fail(msg + extra)


def probe_spec(addr):
    offer, org, svc, _ = ACCOUNTS.get(addr, ("emailpro", None, "pro1", False))
    parts = [offer, addr] + [x for x in (org, svc) if x]
    return ":".join(parts)


class Env:
    def __init__(self, args, fixture=None):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="sg-ovh-test.")
        fx = os.path.join(self.dir, "fixture.json")
        with open(fx, "w") as f:
            json.dump(fixture or FIXTURE, f)
        self.proc = subprocess.Popen(
            [sys.executable, args.standin, "--port", "0", "--fixture", fx, "--clock-offset", "3600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self._readline(30)              # a loaded machine starts Python slowly
        m = re.fullmatch(r"READY (\d+)\s*", line or "")
        check(m is not None, "stand-in did not start: %r" % line, self.proc.stderr.read()
              if self.proc.poll() is not None else "")
        self.port = int(m.group(1))
        self.base = "http://127.0.0.1:%d" % self.port
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _readline(self, timeout):
        import select
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline() if r else None

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- the stand-in's control API --------------------------------------
    def control(self, name, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + "/__control/" + name, data=data,
                                     method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        with self.opener.open(req, timeout=10) as r:
            return json.loads(r.read().decode())

    def fault(self, mode, count=1, path="", **kw):
        body = {"mode": mode, "count": count, "path": path}
        body.update(kw)
        return self.control("fault", body)

    def log(self):
        return self.control("log")

    def clear_log(self):
        self.control("clear_log", {})

    # ---- files -------------------------------------------------------------
    def ovh_conf(self, ck=CK, mode=0o600, name="ovh.conf", oauth=False, endpoint=None):
        ep = endpoint or (self.base + "/1.0")
        path = os.path.join(self.dir, name)
        if oauth:
            keys = "client_id=cid-test\nclient_secret=csecret-SECRET-3e\n"
        else:
            keys = "application_key=%s\napplication_secret=%s\n" % (AK, AS)
            if ck:
                keys += "consumer_key=%s\n" % ck
        with open(path, "w") as f:
            f.write("[default]\nendpoint=%s\n\n[%s]\n%s" % (ep, ep, keys))
        os.chmod(path, mode)
        return path

    def config(self, accounts, creds=None, timeout="5s", extra="", name="sendguard.conf",
               accounts_text=None):
        creds = creds or self.ovh_conf()
        if accounts_text is None:
            entries = []
            for a in accounts:
                offer, org, svc, _ = ACCOUNTS.get(a, ("emailpro", None, "pro1", False))
                e = '{ address = "%s"; offer = "%s";' % (a, offer)
                if org:
                    e += ' organization = "%s";' % org
                if svc:
                    e += ' service = "%s";' % svc
                entries.append(e + " }")
            accounts_text = "accounts = (\n  " + ",\n  ".join(entries) + "\n);\n"
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(accounts_text)
            f.write('ovh = { credentials = "%s"; timeout = "%s"; %s };\n' % (creds, timeout, extra))
        return path

    # ---- running -----------------------------------------------------------
    def clean_env(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("OVH_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        env["HOME"] = self.dir          # no ~/.ovh.conf of the machine
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
        return env

    def ctl(self, conf, *args, timeout=90, env=None, sub="ovh"):
        t0 = time.monotonic()
        e = self.clean_env()
        e.update(env or {})
        p = subprocess.run([self.args.sendguardctl, "-c", conf] + ([sub] if sub else []) + list(args),
                           capture_output=True, text=True, timeout=timeout, env=e,
                           cwd=self.dir)
        p.elapsed = time.monotonic() - t0
        check(p.returncode >= 0, "sendguardctl died of signal %d" % -p.returncode, p.stdout, p.stderr)
        check("AddressSanitizer" not in p.stderr and "runtime error" not in p.stderr,
              "sanitizer report", p.stderr)
        for s in SECRETS:
            check(s not in p.stdout and s not in p.stderr, "a secret was printed", p.stdout, p.stderr)
        return p

    def probe(self, *args, stdin=None, creds=None, timeout=90, env=None):
        e = self.clean_env()
        e.update(env or {})
        p = subprocess.run([self.args.probe, "-k", creds or self.ovh_conf()] + list(args),
                           input=stdin, capture_output=True, text=True, timeout=timeout, env=e,
                           cwd=self.dir)
        check(p.returncode >= 0, "ovh_probe died of signal %d" % -p.returncode, p.stdout, p.stderr)
        check("AddressSanitizer" not in p.stderr and "runtime error" not in p.stderr,
              "sanitizer report", p.stderr)
        for s in SECRETS:
            check(s not in p.stdout and s not in p.stderr, "a secret was printed", p.stdout, p.stderr)
        out = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else None
        return p, out


def api_calls(log, fragment, method=None):
    return [e for e in log if fragment in e["path"] and (method is None or e["method"] == method)]


def parse_lines(out):
    rows = {}
    for line in out.strip().splitlines():
        f = line.split()
        rows[f[0]] = f
    return rows


# ---- cases -------------------------------------------------------------------

def case_offers(env):
    conf = env.config(list(ACCOUNTS))
    p = env.ctl(conf, "check")
    check(p.returncode == 2, "some accounts are blocked: exit 2 expected, got %d" % p.returncode,
          p.stdout, p.stderr)
    rows = parse_lines(p.stdout)
    state = env.control("state")
    check(set(rows) == set(ACCOUNTS), "one line per account", p.stdout)
    for addr, (offer, _, _, blocked) in ACCOUNTS.items():
        f = rows[addr]
        check(f[1] == offer, "%s: offer %s expected" % (addr, offer), p.stdout)
        check(f[2] == ("BLOCKED" if blocked else "ok"), "%s: blocked=%s expected" % (addr, blocked),
              p.stdout)
        if blocked and offer != "mxplan-legacy":
            check(re.fullmatch(r"ticket=\d+", f[3]) is not None, "%s: a ticket number" % addr, p.stdout)
        else:
            check(f[3] == "ticket=-", "%s: no ticket" % addr, p.stdout)
        check(f[4] == ("state=-" if offer == "mxplan-legacy" else "state=ok"), "%s: state" % addr,
              p.stdout)
    # Each account alone: exit 0 or 2.
    for addr, (_, _, _, blocked) in ACCOUNTS.items():
        p = env.ctl(conf, "check", addr)
        check(p.returncode == (2 if blocked else 0), "%s alone: exit %d" % (addr, p.returncode),
              p.stdout, p.stderr)
    # The time delta is fetched once per process, and every call was signed.
    env.clear_log()
    env.ctl(conf, "check")
    log = env.log()
    check(len(api_calls(log, "/auth/time")) == 1, "one GET /auth/time per run", json.dumps(log))
    check(all(e["status"] == 200 for e in log), "every call succeeded", json.dumps(log))
    check(any("/email/exchange/org1/service/ex1/account/boss@example.com" in e["path"] for e in log),
          "the '@' of an address is sent literally", json.dumps(log))


def case_exit_codes(env):
    conf = env.config(UNBLOCKED)
    p = env.ctl(conf, "check")
    check(p.returncode == 0, "none blocked: exit 0", p.stdout, p.stderr)
    for addr in UNBLOCKED:
        env.control("block", {"address": addr})
        p = env.ctl(conf, "check")
        check(p.returncode == 2, "%s blocked: exit 2" % addr, p.stdout, p.stderr)
        check("BLOCKED" in parse_lines(p.stdout)[addr], "%s shows BLOCKED" % addr, p.stdout)
        env.control("unblock", {"address": addr})
        p = env.ctl(conf, "check")
        check(p.returncode == 0, "%s unblocked again: exit 0" % addr, p.stdout, p.stderr)
    # Not a configured account, bad usage.
    p = env.ctl(conf, "check", "nobody@example.com")
    check(p.returncode == 3, "unknown account: exit 3", p.stdout, p.stderr)
    for args in ([], ["check", "--bogus"], ["frobnicate"], ["accounts", "extra"],
                 ["credential", "--redirection"]):
        p = env.ctl(conf, *args)
        check(p.returncode == 64, "usage %r: exit 64, got %d" % (args, p.returncode), p.stderr)
        check("usage:" in p.stderr, "usage printed", p.stderr)
    # No API at all (stand-in gone): exit 3, quickly enough, with the reason.
    env.proc.send_signal(signal.SIGTERM)
    env.proc.wait(10)
    p = env.ctl(conf, "check")
    check(p.returncode == 3, "API unreachable: exit 3, got %d" % p.returncode, p.stdout, p.stderr)
    check("UNKNOWN" in p.stdout and ("connect" in p.stdout.lower() or "refused" in p.stdout.lower()),
          "the connection error is shown", p.stdout)


def case_json(env):
    conf = env.config(list(ACCOUNTS) + ["ghost@example.com"])
    p = env.ctl(conf, "check", "--json")
    check(p.returncode == 2, "blocked accounts: exit 2 even with one unknown", p.stdout, p.stderr)
    data = json.loads(p.stdout)
    check(isinstance(data, list) and len(data) == len(ACCOUNTS) + 1, "an array, one per account", p.stdout)
    for o in data:
        check({"account", "offer", "blocked", "ticket", "state"} <= set(o), "keys", json.dumps(o))
        if o["account"] == "ghost@example.com":
            check(o["blocked"] is None and "error" in o, "the unknown one has an error", json.dumps(o))
            check(o["error"]["http_status"] == 404, "404", json.dumps(o))
            check(o["error"]["query_id"].startswith("EU.ext-"), "query id", json.dumps(o))
            continue
        check(set(o) == {"account", "offer", "blocked", "ticket", "state"}, "exactly the five keys",
              json.dumps(o))
        offer, _, _, blocked = ACCOUNTS[o["account"]]
        check(o["offer"] == offer, "offer", json.dumps(o))
        check(o["blocked"] is blocked, "blocked is a boolean", json.dumps(o))
        if blocked and offer != "mxplan-legacy":
            check(isinstance(o["ticket"], int) and o["ticket"] > 0, "ticket number", json.dumps(o))
        else:
            check(o["ticket"] is None, "ticket null", json.dumps(o))
        check(o["state"] == (None if offer == "mxplan-legacy" else "ok"), "state", json.dumps(o))
    # Unblocked only: exit 0, valid JSON.
    p = env.ctl(env.config(UNBLOCKED, name="u.conf"), "check", "--json")
    check(p.returncode == 0 and all(o["blocked"] is False for o in json.loads(p.stdout)),
          "none blocked", p.stdout)
    # Matching the ticket numbers of the stand-in's state.
    st = env.control("state")
    check("sales@example.com" in json.dumps(st), "stand-in state readable")


def case_not_found(env):
    conf = env.config(["ghost@example.com", "desk@example.com"])
    env.clear_log()
    p = env.ctl(conf, "check")
    check(p.returncode == 3, "a 404 account: exit 3, got %d" % p.returncode, p.stdout, p.stderr)
    rows = parse_lines(p.stdout)
    check(rows["ghost@example.com"][2] == "UNKNOWN", "the missing account is UNKNOWN", p.stdout)
    check("HTTP 404" in p.stdout and "does not exist" in p.stdout, "the API's message", p.stdout)
    check(re.search(r"query id EU\.ext-\d+", p.stdout), "the query id", p.stdout)
    check(rows["desk@example.com"][2] == "ok", "the other account is still checked", p.stdout)
    log = env.log()
    check(len(api_calls(log, "ghost@example.com")) == 1, "a 404 is never retried", json.dumps(log))


def case_expired_credential(env):
    conf = env.config(["desk@example.com", "info@example.org", "fax@example.net"],
                      creds=env.ovh_conf(ck=OLD_CK))
    env.clear_log()
    p = env.ctl(conf, "check")
    check(p.returncode == 3, "expired CK: exit 3, got %d" % p.returncode, p.stdout, p.stderr)
    check("This credential is not valid" in p.stdout, "the API's message", p.stdout)
    check("INVALID_CREDENTIAL" in p.stdout and "HTTP 403" in p.stdout, "the error code", p.stdout)
    check(re.search(r"query id EU\.ext-\d+", p.stdout), "the query id", p.stdout)
    log = env.log()
    acct = [e for e in log if "/email/" in e["path"]]
    check(len(acct) == 1, "no retry, and no use trying the other accounts", json.dumps(log))
    p = env.ctl(conf, "check", "--json")
    check(p.returncode == 3, "json: exit 3", p.stdout)
    data = json.loads(p.stdout)
    check(all(o["error"]["code"] == "INVALID_CREDENTIAL" for o in data), "each has the error", p.stdout)
    # No consumer key at all: a clear local error.
    conf = env.config(["desk@example.com"], creds=env.ovh_conf(ck=None, name="nock.conf"), name="n.conf")
    p = env.ctl(conf, "check")
    check(p.returncode == 3 and "no consumer_key" in p.stdout + p.stderr, "missing CK explained",
          p.stdout, p.stderr)


def case_retry_503(env):
    conf = env.config(["desk@example.com"])
    env.clear_log()
    env.fault("503", count=2, path="/email/pro")
    p = env.ctl(conf, "check")
    check(p.returncode == 0, "503 twice then OK: exit 0, got %d" % p.returncode, p.stdout, p.stderr)
    calls = api_calls(env.log(), "/email/pro")
    check([c["status"] for c in calls] == [503, 503, 200], "three attempts", json.dumps(calls))
    env.clear_log()
    env.fault("500", count=10, path="/email/pro")
    p = env.ctl(conf, "check")
    check(p.returncode == 3, "5xx every time: exit 3", p.stdout, p.stderr)
    check("HTTP 500" in p.stdout and "query id EU.ext-" in p.stdout, "the last error shown", p.stdout)
    calls = api_calls(env.log(), "/email/pro")
    check(len(calls) == 3, "gives up after 3 attempts, got %d" % len(calls), json.dumps(calls))
    env.control("fault", {"mode": "clear"})


def case_retry_429(env):
    conf = env.config(["info@example.org"])
    env.clear_log()
    env.fault("429", count=1, path="/email/mxplan", retry_after=2)
    p = env.ctl(conf, "check")
    check(p.returncode == 0, "429 then OK: exit 0", p.stdout, p.stderr)
    check(p.elapsed >= 2.0, "Retry-After: 2 honoured (took %.2fs)" % p.elapsed)
    calls = api_calls(env.log(), "/email/mxplan")
    check([c["status"] for c in calls] == [429, 200], "two attempts", json.dumps(calls))
    # A 4xx other than 429 is never retried: a rejected reply.
    env.clear_log()
    env.fault("429", count=1, path="/email/mxplan", retry_after=100000)
    p = env.ctl(conf, "check")
    check(p.returncode == 0 and p.elapsed < 40, "a huge Retry-After is capped (%.1fs)" % p.elapsed,
          p.stdout, p.stderr)


def case_timeout_retry(env):
    conf = env.config(["info@example.org"], timeout="1s")
    env.clear_log()
    # a 6 s answer against a 1 s timeout: abandoned and retried well before
    # the answer would come (the bound leaves a loaded 2-core run room)
    env.fault("slow", count=1, path="/email/mxplan", delay=6)
    p = env.ctl(conf, "check")
    check(p.returncode == 0, "a timeout then OK: exit 0, got %d" % p.returncode, p.stdout, p.stderr)
    check(p.elapsed < 5.0, "the slow call was abandoned after the 1s timeout (%.2fs)" % p.elapsed)
    env.fault("slow", count=3, path="/email/mxplan", delay=2)
    p = env.ctl(conf, "check")
    check(p.returncode == 3, "timeouts every time: exit 3", p.stdout, p.stderr)
    check("timed out" in p.stdout.lower() or "timeout" in p.stdout.lower(), "says timeout", p.stdout)


def case_bad_replies(env):
    conf = env.config(["desk@example.com"])
    expect = {"garbage": "not JSON", "truncated": "not JSON", "huge": "larger than"}
    for mode, text in expect.items():
        env.clear_log()
        env.fault(mode, count=1, path="/email/pro")
        p = env.ctl(conf, "check")
        check(p.returncode == 3, "%s reply: exit 3, got %d" % (mode, p.returncode), p.stdout, p.stderr)
        check(text in p.stdout, "%s: clear error (%s)" % (mode, text), p.stdout)
        check(len(p.stdout) < 2000, "%s: the reply is not dumped" % mode, p.stdout[:300])
        check("\x00" not in p.stdout and "\ufffd" not in p.stdout, "%s: no raw bytes" % mode, p.stdout)
        calls = api_calls(env.log(), "/email/pro")
        check(len(calls) == 1, "%s: not retried" % mode, json.dumps(calls))
    # Wrong shape: garbage on /auth/time breaks the delta: still exit 3, no crash.
    env.fault("garbage", count=1, path="/auth/time")
    p = env.ctl(conf, "check")
    check(p.returncode == 3 and "/auth/time" in p.stdout, "a bad /auth/time is reported", p.stdout)
    p = env.ctl(conf, "check")
    check(p.returncode == 0, "and the next run is fine", p.stdout, p.stderr)


def case_accounts(env):
    conf = env.config(["desk@example.com"])
    p = env.ctl(conf, "accounts")
    check(p.returncode == 0, "ovh accounts: exit 0, got %d" % p.returncode, p.stdout, p.stderr)
    for addr in ACCOUNTS:
        check(('address = "%s"' % addr) in p.stdout, "%s listed" % addr, p.stdout)
    check('offer = "exchange"; organization = "org1"; service = "ex1";' in p.stdout, "exchange entry",
          p.stdout)
    check('address = "fax@example.net"; offer = "mxplan-legacy"; }' in p.stdout, "legacy entry", p.stdout)
    check(re.search(r'"desk@example.com".*# already configured', p.stdout), "configured one marked",
          p.stdout)
    # The output is itself a valid config fragment: load it and use it.
    path = env.config([], accounts_text=p.stdout, name="pasted.conf")
    chk = subprocess.run([env.args.sendguardctl, "-c", path, "check"], capture_output=True, text=True,
                         env=env.clean_env(), timeout=60)
    check(chk.returncode == 0, "pasted output is a valid config (sendguardctl check)", chk.stdout,
          chk.stderr, p.stdout)
    q = env.ctl(path, "check", "--json")
    check(q.returncode == 2, "pasted config checks every account", q.stdout, q.stderr)
    check(len(json.loads(q.stdout)) == len(ACCOUNTS), "all of them", q.stdout)
    # Expired credentials: a clear failure.
    conf = env.config([], creds=env.ovh_conf(ck=OLD_CK, name="old.conf"), name="old.conf.sg")
    p = env.ctl(conf, "accounts")
    check(p.returncode == 1 and "INVALID_CREDENTIAL" in p.stderr, "expired: exit 1 with the reason",
          p.stdout, p.stderr)


def case_credential(env):
    creds = env.ovh_conf(ck=None, name="new.conf")
    conf = env.config(["desk@example.com", "fax@example.net"], creds=creds)
    env.clear_log()
    p = env.ctl(conf, "credential")
    check(p.returncode == 0, "ovh credential: exit 0, got %d" % p.returncode, p.stdout, p.stderr)
    m = re.search(r"(http://127\.0\.0\.1:%d/\S*validate\S*)" % env.port, p.stdout)
    check(m is not None, "the validation URL is printed", p.stdout)
    ck = re.search(r"consumer_key=([0-9a-f]+)", p.stdout)
    check(ck is not None, "the new consumer key is printed for ovh.conf", p.stdout)
    post = api_calls(env.log(), "/auth/credential", "POST")
    check(len(post) == 1, "one POST /auth/credential", json.dumps(env.log()))
    rules = json.loads(post[0]["body"])["accessRules"]
    want = {("GET", "/email/exchange/*"), ("GET", "/email/pro/*"), ("GET", "/email/mxplan/*"),
            ("GET", "/email/domain/*"), ("GET", "/support/tickets"), ("GET", "/support/tickets/*"),
            ("POST", "/support/tickets/*/reply"), ("POST", "/email/pro/*/account/*/changePassword"),
            ("POST", "/email/domain/*/account/*/changePassword")}
    got = {(r["method"], r["path"]) for r in rules}
    check(want <= got, "the rules sendguard needs", json.dumps(rules))
    check(all(r["method"] in ("GET", "POST") for r in rules), "nothing but GET and POST", json.dumps(rules))
    check(not any("changePassword" in r["path"] and ("exchange" in r["path"] or "mxplan/" in r["path"])
                  for r in rules), "changePassword only for the offers in use", json.dumps(rules))
    check(not any(r["path"] in ("/*", "/email/*") for r in rules), "no blanket rule", json.dumps(rules))
    # Validate it as the user would, then use it.
    with env.opener.open(m.group(1), timeout=10) as r:
        check(r.status == 200, "validated")
    good = env.ovh_conf(ck=ck.group(1), name="validated.conf")
    conf2 = env.config(["desk@example.com", "fax@example.net"], creds=good, name="v.conf")
    q = env.ctl(conf2, "check")
    check(q.returncode == 0, "the new key works for ovh check", q.stdout, q.stderr)
    # With a redirection.
    env.clear_log()
    p = env.ctl(conf, "credential", "--redirection", "https://example.com/done")
    check(p.returncode == 0, "with --redirection", p.stdout, p.stderr)
    body = json.loads(api_calls(env.log(), "/auth/credential", "POST")[0]["body"])
    check(body.get("redirection") == "https://example.com/done", "redirection sent", json.dumps(body))


def case_oauth2(env):
    creds = env.ovh_conf(oauth=True, name="oauth.conf")
    conf = env.config(["desk@example.com", "sales@example.com"], creds=creds)
    env.clear_log()
    p = env.ctl(conf, "check")
    check(p.returncode == 2, "OAuth2: works, sales blocked: exit 2, got %d" % p.returncode,
          p.stdout, p.stderr)
    log = env.log()
    check(len(api_calls(log, "/auth/oauth2/token", "POST")) == 1, "one token for the run", json.dumps(log))
    check(not api_calls(log, "/auth/time"), "no time delta needed", json.dumps(log))
    # Expired token mid-run (probe, two rounds): renewed once, transparently.
    env.clear_log()
    proc = subprocess.Popen([env.args.probe, "-k", creds, "script", probe_spec("desk@example.com")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env.clean_env())
    proc.stdin.write("round\n")
    proc.stdin.flush()
    r1 = json.loads(proc.stdout.readline())
    env.control("expire_tokens", {})
    proc.stdin.write("round\nquit\n")
    proc.stdin.flush()
    r2 = json.loads(proc.stdout.readline())
    proc.wait(30)
    check(r1["failed"] == 0 and r2["failed"] == 0, "both rounds fine", json.dumps([r1, r2]))
    check(len(api_calls(env.log(), "/auth/oauth2/token")) == 2, "token fetched again after a 403/401",
          json.dumps(env.log()))
    # Wrong client secret: exit 3 with the reason, no secret shown.
    bad = os.path.join(env.dir, "bad-oauth.conf")
    with open(bad, "w") as f:
        f.write("[default]\nendpoint=%s/1.0\n[%s/1.0]\nclient_id=cid-test\nclient_secret=wrong\n"
                % (env.base, env.base))
    os.chmod(bad, 0o600)
    p = env.ctl(env.config(["desk@example.com"], creds=bad, name="bad.conf"), "check")
    check(p.returncode == 3 and "401" in p.stdout, "bad client: exit 3, HTTP 401", p.stdout, p.stderr)


def case_clock_skew(env):
    # The stand-in's clock runs 3600 s ahead: every test passing proves the
    # delta is used. Here: the clock jumps during a run; the client notices
    # QUERY_TIME_OUT, fetches the delta again and retries once.
    creds = env.ovh_conf()
    env.clear_log()
    proc = subprocess.Popen([env.args.probe, "-k", creds, "script", probe_spec("desk@example.com")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env.clean_env())
    proc.stdin.write("round\n")
    proc.stdin.flush()
    r1 = json.loads(proc.stdout.readline())
    env.control("clock", {"offset": 7200})
    proc.stdin.write("round\nquit\n")
    proc.stdin.flush()
    r2 = json.loads(proc.stdout.readline())
    proc.wait(30)
    check(r1["failed"] == 0 and r2["failed"] == 0, "both rounds fine", json.dumps([r1, r2]), proc.stderr.read())
    log = env.log()
    check(len(api_calls(log, "/auth/time")) == 2, "delta fetched again after QUERY_TIME_OUT", json.dumps(log))
    check(any(e["status"] == 400 for e in log), "the stand-in did refuse the stale timestamp",
          json.dumps(log))
    p, out = env.probe("delta", creds=creds)
    check(p.returncode == 0 and abs(out["delta"] - 7200) <= 5, "delta ~7200", p.stdout)


def case_file_mode(env):
    creds = env.ovh_conf(mode=0o644, name="open.conf")
    conf = env.config(["desk@example.com"], creds=creds)
    p = env.ctl(conf, "check")
    check(p.returncode == 3, "world-readable ovh.conf: exit 3", p.stdout, p.stderr)
    msg = "%s: mode 0644 lets other users read the API secrets; run: chmod 600 %s" % (creds, creds)
    check(msg in p.stderr, "says how to fix it", p.stderr)
    os.chmod(creds, 0o640)
    p = env.ctl(conf, "check")
    check(p.returncode == 3 and "mode 0640" in p.stderr, "group-readable too", p.stderr)
    os.chmod(creds, 0o600)
    p = env.ctl(conf, "check")
    check(p.returncode == 0, "0600 is fine", p.stdout, p.stderr)
    p = env.ctl(conf, "accounts")
    os.chmod(creds, 0o644)
    p = env.ctl(conf, "credential")
    check(p.returncode == 1 and "chmod 600" in p.stderr, "credential refuses it too", p.stderr)


def case_ticket_fallback(env):
    # By number.
    st = env.control("state")
    p, out = env.probe("find", probe_spec("sales@example.com"), "-1")
    check(p.returncode == 0 and out["subject"] == "Account locked for spam.", "found by search",
          p.stdout, p.stderr)
    q, s = env.probe("status", probe_spec("sales@example.com"))
    p, by_number = env.probe("find", probe_spec("sales@example.com"), str(s["ticket"]))
    check(p.returncode == 0 and by_number["number"] == s["ticket"] and by_number["id"] == out["id"],
          "found by ticketNumber", p.stdout)
    # spamTicketNumber null, or a number that matches nothing: the fallback.
    env.control("block", {"address": "desk@example.com", "link": "null"})
    q, s = env.probe("status", probe_spec("desk@example.com"))
    check(s["blocked"] and s["ticket"] == -1, "blocked without a number", q.stdout)
    p, t = env.probe("find", probe_spec("desk@example.com"), "-1")
    check(p.returncode == 0 and t["state"] == "open", "fallback finds the open ticket", p.stdout)
    check(t["id"] != out["id"], "the ticket naming desk@, not sales@", p.stdout)
    env.control("block", {"address": "info@example.org", "link": "other"})
    q, s = env.probe("status", probe_spec("info@example.org"))
    p, t2 = env.probe("find", probe_spec("info@example.org"), str(s["ticket"]))
    check(p.returncode == 0 and t2["number"] != s["ticket"], "wrong number: fallback by address", p.stdout)
    # The closed ticket of old@ is never picked; nobody@ has none.
    p, e = env.probe("find", "emailpro:old@example.com:pro1", "-1")
    check(p.returncode == 1 and e["rc"] == 5, "closed ticket ignored: not found", p.stdout)


def case_workflow(env):
    q, s = env.probe("status", probe_spec("sales@example.com"))
    p, t = env.probe("find", probe_spec("sales@example.com"), str(s["ticket"]))
    p, m = env.probe("messages", str(t["id"]))
    check(p.returncode == 0 and len(m["messages"]) >= 1, "messages read", p.stdout, p.stderr)
    check(m["suspicious"] == 42, "suspicious count from the ticket", p.stdout)
    check(m["headers"] and m["headers"].startswith("Received:"), "header sample", p.stdout)
    check("sales@example.com" in m["messages"][0]["body"], "body names the address", p.stdout)
    # Reply.
    env.clear_log()
    p, r = env.probe("reply", str(t["id"]), stdin="1. No.\n2. No.\n3. No.\n")
    check(p.returncode == 0, "reply posted", p.stdout, p.stderr)
    post = api_calls(env.log(), "/reply", "POST")
    check(len(post) == 1 and json.loads(post[0]["body"]) == {"body": "1. No.\n2. No.\n3. No."},
          "reply body", json.dumps(post))
    p, m2 = env.probe("messages", str(t["id"]))
    check(m2["messages"][-1]["from"] == "customer", "our reply is the last message", p.stdout)
    env.clear_log()
    env.control("reject", {"what": "reply", "count": 1})
    p, e = env.probe("reply", str(t["id"]), stdin="again")
    check(p.returncode == 1 and e["http_status"] == 400, "a rejected reply is an error", p.stdout)
    check(len(api_calls(env.log(), "/reply")) == 1, "a 400 is not retried", json.dumps(env.log()))
    # Password changes on each offer.
    for addr in ("boss@example.com", "desk@example.com", "info@example.org", "fax@example.net"):
        env.clear_log()
        p, r = env.probe("password", probe_spec(addr), stdin="Str0ng-Passw0rd-42\n")
        check(p.returncode == 0, "%s: password changed" % addr, p.stdout, p.stderr)
        post = api_calls(env.log(), "/changePassword", "POST")
        check(len(post) == 1 and json.loads(post[0]["body"]) == {"password": "Str0ng-Passw0rd-42"},
              "%s: one POST changePassword" % addr, json.dumps(post))
        check("Str0ng-Passw0rd-42" not in p.stdout + p.stderr, "password not printed", p.stdout, p.stderr)
    env.clear_log()
    p, e = env.probe("password", probe_spec("fax@example.net"), stdin="short\n")
    check(p.returncode == 1 and e["rc"] == 7, "legacy rule checked locally", p.stdout)
    check(not api_calls(env.log(), "/changePassword"), "nothing sent", json.dumps(env.log()))
    env.control("reject", {"what": "changePassword", "count": 1})
    p, e = env.probe("password", probe_spec("desk@example.com"), stdin="Another-Passw0rd-1\n")
    check(p.returncode == 1 and e["http_status"] == 400, "a rejected change is an error", p.stdout)
    # Redirections.
    p, r = env.probe("redirections", probe_spec("boss@example.com"))
    check(p.returncode == 0 and r["to"] == ["boss.home@example.org"], "exchange forwardingEmail", p.stdout)
    p, r = env.probe("redirections", probe_spec("spammer@example.com"))
    check(p.returncode == 0 and r["to"] == [], "exchange without forwarding", p.stdout)
    p, r = env.probe("redirections", probe_spec("fax@example.net"))
    check(p.returncode == 0 and sorted(r["to"]) == ["archive@example.org", "x@y.example"],
          "legacy redirections", p.stdout)
    check(any("redirection?from=fax@example.net" in x["path"] for x in env.log()), "from= filter",
          json.dumps(env.log()))
    p, r = env.probe("redirections", probe_spec("desk@example.com"))
    check(p.returncode == 1 and r["rc"] == 6, "Email Pro: not supported", p.stdout)
    # A 404 account through the library: API error with the query id.
    p, e = env.probe("status", "emailpro:ghost@example.com:pro1")
    check(p.returncode == 1 and e["http_status"] == 404 and e["query_id"].startswith("EU.ext-"),
          "404 with query id", p.stdout)


def case_watcher(env):
    specs = [probe_spec(a) for a in ("boss@example.com", "desk@example.com", "info@example.org",
                                     "fax@example.net", "sales@example.com")]
    proc = subprocess.Popen([env.args.probe, "-k", env.ovh_conf(), "script"] + specs,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env.clean_env())

    def rnd():
        proc.stdin.write("round\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    def by(r, a):
        return next(s for s in r["states"] if s["account"] == a)

    r = rnd()
    check(r["failed"] == 0, "first round", json.dumps(r))
    check(by(r, "sales@example.com")["blocked"] and by(r, "sales@example.com")["phase"] == "blocked",
          "sales blocked in the store", json.dumps(r))
    check("suspicious=42" in by(r, "sales@example.com")["note"], "ticket evidence noted", json.dumps(r))
    check(by(r, "desk@example.com")["phase"] == "ok", "desk ok", json.dumps(r))
    for a in ("desk@example.com", "fax@example.net"):
        env.control("block", {"address": a})
    r = rnd()
    check(by(r, "desk@example.com")["blocked"] and by(r, "fax@example.net")["blocked"], "new blocks seen",
          json.dumps(r))
    check(by(r, "desk@example.com")["ticket"] > 0 and by(r, "fax@example.net")["ticket"] == -1, "tickets",
          json.dumps(r))
    r = rnd()                                   # nothing changes: no new alert
    for a in ("desk@example.com", "fax@example.net"):
        env.control("unblock", {"address": a})
    r = rnd()
    check(not by(r, "desk@example.com")["blocked"] and by(r, "desk@example.com")["phase"] == "unblocked",
          "back to normal", json.dumps(r))
    env.fault("503", count=30, path="/email")
    r = rnd()
    check(r["failed"] >= 1, "an outage counts as failed", json.dumps(r))
    check(by(r, "sales@example.com")["blocked"], "an outage changes no state", json.dumps(r))
    env.control("fault", {"mode": "clear"})
    proc.stdin.write("quit\n")
    proc.stdin.flush()
    proc.wait(30)
    err = proc.stderr.read()
    check("AddressSanitizer" not in err and "runtime error" not in err, "sanitizers", err)
    alerts = [l for l in err.splitlines() if "[alert]" in l and "event=blocked" in l]
    check(sorted(re.search(r"account=<([^>]+)>", l).group(1) for l in alerts) ==
          ["desk@example.com", "fax@example.net", "sales@example.com"],
          "one LOG_ALERT per block, never repeated", err)
    notices = [l for l in err.splitlines() if "[notice]" in l and "event=unblocked" in l]
    check(len(notices) == 2, "one LOG_NOTICE per return to normal", err)
    for s in SECRETS:
        check(s not in err, "no secret in logs", err)

    # The thread: polls at start, on kick, and stops at once even mid-call.
    conf = env.config(["desk@example.com", "sales@example.com"], extra='poll_interval = "30s";',
                      name="watch.conf", timeout="20s")
    w = subprocess.Popen([env.args.probe, "watcher", conf], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env.clean_env())
    check(json.loads(w.stdout.readline()).get("started") == "yes", "watcher started")

    def state(a):
        w.stdin.write("state %s\n" % a)
        w.stdin.flush()
        return json.loads(w.stdout.readline())

    deadline = time.monotonic() + 20
    while state("sales@example.com")["checked_ms"] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    check(state("sales@example.com")["blocked"], "the thread's first round saw the block")
    env.control("block", {"address": "desk@example.com"})
    w.stdin.write("kick\n")
    w.stdin.flush()
    w.stdout.readline()
    deadline = time.monotonic() + 20
    while not state("desk@example.com")["blocked"] and time.monotonic() < deadline:
        time.sleep(0.2)
    check(state("desk@example.com")["blocked"], "kick polls at once")
    env.fault("slow", count=5, path="/email", delay=15)
    w.stdin.write("kick\n")
    w.stdin.flush()
    w.stdout.readline()
    time.sleep(1.0)                                   # the round is now stuck in a slow call
    w.stdin.write("stop\n")
    w.stdin.flush()
    out = json.loads(w.stdout.readline())
    w.wait(30)
    check(out["stop_ms"] < 2000, "stop aborts the call in progress (%d ms)" % out["stop_ms"])
    err = w.stderr.read()
    check(w.returncode == 0 and "AddressSanitizer" not in err, "clean exit", err)


# ---- issue 11 and 17 --------------------------------------------------------

def restart(env, fixture):
    """A new stand-in on another fixture (the Env's own is stopped)."""
    env.close()
    env.__init__(env.args, fixture)


def case_empty_lists(env):
    # The API answers [] (no open spam ticket) and a ticket has no message:
    # before the fix both went to qsort(NULL, 0, ...) (UBSan nonnull-attribute).
    fx = json.loads(json.dumps(FIXTURE))
    for offer in ("exchange", "emailpro", "mxplan", "legacy"):
        for a in fx[offer]:
            a["blocked"] = False
    fx["tickets"] = [{"subject": "Invoice question", "state": "open", "serviceName": "pro1",
                      "autogenerated": False, "messages": []}]
    restart(env, fx)
    st = env.control("state")
    empty = [t for t in st["tickets"] if t["subject"] == "Invoice question"][0]
    check(empty["messages"] == [], "the fixture ticket has no message", json.dumps(empty))
    p, out = env.probe("messages", str(empty["ticketId"]))
    check(p.returncode == 0 and out["messages"] == [], "no messages: an empty list", p.stdout, p.stderr)
    p, out = env.probe("find", probe_spec("desk@example.com"), "-1")
    check(p.returncode == 1 and out["rc"] == 5, "no open spam ticket: not found", p.stdout, p.stderr)
    log = env.log()
    searches = [e for e in log if e["path"].startswith("/1.0/support/tickets?")]
    check(searches and all(e["status"] == 200 for e in searches), "the search answered []", json.dumps(log))
    check(all("excludeAutogenerated=false" in e["path"] for e in searches),
          "ticket searches ask for autogenerated tickets explicitly", json.dumps(searches))
    # report --since with a duration that wraps: refused with a clear error.
    conf = env.config(["desk@example.com"])
    p = env.ctl(conf, "desk@example.com", "--since", "18446744073702351", sub="report")
    check(p.returncode == 64 and "--since" in p.stderr, "absurd --since refused", p.stdout, p.stderr)


def case_accounts_skip(env):
    fx = json.loads(json.dumps(FIXTURE))
    fx["emailpro"].append({"service": "pro1", "address": "slot@example.com", "configured": False})
    fx["emailpro"].append({"service": "pro1", "address": "x7k2p9@configureme.me"})
    fx["legacy"].append({"domain": "moved.example", "local": "old", "blocked": False})
    fx["migrated_domains"] = {"moved.example": "mxplan-moved.example"}
    restart(env, fx)
    conf = env.config(["desk@example.com"])
    p = env.ctl(conf, "accounts")
    check(p.returncode == 0, "ovh accounts: exit 0", p.stdout, p.stderr)
    for addr in ACCOUNTS:
        check(('address = "%s"' % addr) in p.stdout, "%s listed" % addr, p.stdout)
    for addr in ("slot@example.com", "configureme.me", "old@moved.example"):
        check(addr not in p.stdout, "%s not listed (unconfigured slot, placeholder or migrated "
              "legacy domain)" % addr, p.stdout)
    check("# %d OVHcloud e-mail accounts" % len(ACCOUNTS) in p.stdout, "the count", p.stdout)
    log = env.log()
    check(any(e["path"] == "/1.0/email/domain/moved.example" for e in log), "domain object read",
          json.dumps(log))


def case_credential_check(env):
    fx = json.loads(json.dumps(FIXTURE))
    fx["credentials"].append({"application_key": AK, "application_secret": AS,
                              "consumer_key": "ck-SECRET-partial", "expires_in_days": 3,
                              "rules": [{"method": "GET", "path": "/email/*"},
                                        {"method": "GET", "path": "/support/*"}]})
    restart(env, fx)
    conf = env.config(["desk@example.com", "fax@example.net"])
    p = env.ctl(conf, "credential", "--check")
    check(p.returncode == 0, "a key with every right, no expiry: exit 0, got %d" % p.returncode,
          p.stdout, p.stderr)
    check("status: validated" in p.stdout and "expires: never" in p.stdout and "all granted" in p.stdout,
          "status, expiry, rules", p.stdout)
    check(any(e["path"] == "/1.0/auth/currentCredential" for e in env.log()), "GET /auth/currentCredential")
    part = env.ovh_conf(ck="ck-SECRET-partial", name="partial.conf")
    conf2 = env.config(["desk@example.com", "fax@example.net"], creds=part, name="partial.sg")
    p = env.ctl(conf2, "credential", "--check")
    check(p.returncode == 2, "missing rules and expiry within a week: exit 2, got %d" % p.returncode,
          p.stdout, p.stderr)
    check("within a week" in p.stdout, "the expiry is flagged", p.stdout)
    for rule in ("POST   /support/tickets/*/reply", "POST   /email/pro/*/account/*/changePassword",
                 "POST   /email/domain/*/account/*/changePassword"):
        check(rule in p.stdout.split("lacks")[-1], "missing rule %s listed" % rule, p.stdout)
    p = env.ctl(conf2, "credential", "--check", "--json")
    j = json.loads(p.stdout)
    check(p.returncode == 2 and j["validated"] and j["expires_within_a_week"], "json", p.stdout)
    missing = {(r["method"], r["path"]) for r in j["missing"]}
    check(("POST", "/support/tickets/*/reopen") in missing and
          not any(m == "GET" for m, _ in missing), "json: only the POST rules missing", p.stdout)
    # Expired key: a finding (2); no API: unknown (3).
    conf3 = env.config(["desk@example.com"], creds=env.ovh_conf(ck=OLD_CK, name="old.conf"), name="old.sg")
    p = env.ctl(conf3, "credential", "--check")
    check(p.returncode == 2 and "INVALID_CREDENTIAL" in p.stdout, "expired key: exit 2", p.stdout, p.stderr)
    # Asking for a key restricted to the relays' addresses.
    creds = env.ovh_conf(ck=None, name="new.conf")
    conf4 = env.config(["desk@example.com"], creds=creds, name="new.sg")
    env.clear_log()
    p = env.ctl(conf4, "credential", "--allowed-ip", "192.0.2.10", "--allowed-ip", "2001:db8::/64")
    check(p.returncode == 0 and "Usable only from: 192.0.2.10 2001:db8::/64" in p.stdout,
          "allowed IPs requested", p.stdout, p.stderr)
    body = json.loads(api_calls(env.log(), "/auth/credential", "POST")[0]["body"])
    check(body.get("allowedIPs") == ["192.0.2.10", "2001:db8::/64"], "allowedIPs sent", json.dumps(body))
    p = env.ctl(conf4, "credential", "--allowed-ip", "not an ip")
    check(p.returncode == 64, "a bad --allowed-ip is a usage error", p.stdout, p.stderr)
    # The daemon's watcher warns a week before the key expires.
    wconf = env.config(["desk@example.com"], creds=part, extra='poll_interval = "30s";', name="w.sg")
    w = subprocess.Popen([env.args.probe, "watcher", wconf], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env.clean_env())
    check(json.loads(w.stdout.readline()).get("started") == "yes", "watcher started")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        w.stdin.write("state desk@example.com\n")
        w.stdin.flush()
        if json.loads(w.stdout.readline())["checked_ms"]:
            break
        time.sleep(0.2)
    w.stdin.write("stop\n")
    w.stdin.flush()
    w.stdout.readline()
    w.wait(30)
    err = w.stderr.read()
    check(re.search(r"\[warning\].*consumer key expires on .*\(in (6\d|7\d) hours\)", err),
          "the watcher warns of the key's expiry", err)
    check("runtime error" not in err and "AddressSanitizer" not in err, "sanitizers", err)


def case_oauth2_regions(env):
    regions = {"ovh-eu": ("www.ovh.com", "eu.api.ovh.com"),
               "ovh-ca": ("ca.ovh.com", "ca.api.ovh.com"),
               "ovh-us": ("us.ovhcloud.com", "api.us.ovhcloud.com")}
    for ep, (token_host, api_host) in regions.items():
        path = os.path.join(env.dir, "oauth-%s.conf" % ep)
        with open(path, "w") as f:
            f.write("[default]\nendpoint=%s\n[%s]\nclient_id=cid-test\nclient_secret=csecret-SECRET-3e\n"
                    % (ep, ep))
        os.chmod(path, 0o600)
        conf = env.config(["desk@example.com"], creds=path, name="oauth-%s.sg" % ep)
        # Test-only: these two origins are served by the stand-in on loopback.
        origins = "https://%s=%s,https://%s=%s" % (token_host, env.base, api_host, env.base)
        env.clear_log()
        p = env.ctl(conf, "check", env={"SG_OVH_TEST_ORIGINS": origins})
        check(p.returncode == 0, "%s: OAuth2 check works, got %d" % (ep, p.returncode), p.stdout, p.stderr)
        log = env.log()
        tok = [e for e in log if e["path"] == "/auth/oauth2/token"]
        check(len(tok) == 1 and tok[0]["host"] == token_host and tok[0]["method"] == "POST",
              "%s: the token from https://%s/auth/oauth2/token" % (ep, token_host), json.dumps(log))
        api = [e for e in log if e["path"].startswith("/1.0/email/")]
        check(api and all(e["host"] == api_host for e in api), "%s: API calls on %s" % (ep, api_host),
              json.dumps(log))


def windows(times, span):
    """The largest number of entries of sorted times inside any window of span seconds."""
    best, j = 0, 0
    for i in range(len(times)):
        while times[i] - times[j] >= span:
            j += 1
        best = max(best, i - j + 1)
    return best


def case_budget(env):
    # One process, 152 calls, a test "minute" of 3 s (SG_OVH_TEST_MINUTE_MS,
    # test-only; without the budget the stand-in answers them in about 2.5 s):
    # never more than 60 calls in any 3 s, so the run spreads over more than
    # two such minutes.
    fx = json.loads(json.dumps(FIXTURE))
    extra = ["user%03d@example.com" % i for i in range(150)]
    fx["emailpro"] += [{"service": "pro1", "address": a} for a in extra]
    restart(env, fx)
    conf = env.config(["desk@example.com"] + extra)
    env.clear_log()
    p = env.ctl(conf, "check", env={"SG_OVH_TEST_MINUTE_MS": "3000"})
    check(p.returncode == 0, "151 accounts checked: exit 0, got %d" % p.returncode, p.stdout, p.stderr)
    times = sorted(e["t"] for e in env.log())
    check(len(times) == 152, "151 checks and /auth/time: %d calls" % len(times))
    worst = windows(times, 3.0)
    check(worst <= 60, "no (test) minute above the budget of 60: %d calls in 3 s" % worst)
    check(times[-1] - times[0] >= 6.0, "the budget spread them over more than two (test) minutes "
          "(%.2f s)" % (times[-1] - times[0]))


def case_watcher_pacing(env):
    # 30 accounts at the shortest poll_interval (5 s); a test "minute" of 10 s
    # (SG_OVH_TEST_MINUTE_MS, test-only): the budget is 60 calls per 10 s and
    # the watcher checks at most 50 accounts per 10 s, so 30 accounts take
    # 6 s > 5 s: each is checked every 6 s, spread. Then 8 of them get
    # blocked at once (3 ticket calls each, more than the 10 left over): the
    # budget still holds (never more than 60 calls in any 10 s) and delays
    # checks, which is logged, and every account is still checked.
    minute = 10.0
    fx = json.loads(json.dumps(FIXTURE))
    addrs = ["box%02d@example.com" % i for i in range(30)]
    fx["emailpro"] = [{"service": "pro1", "address": a} for a in addrs]
    fx["exchange"], fx["mxplan"], fx["legacy"], fx["tickets"] = [], [], [], []
    restart(env, fx)
    conf = env.config(addrs, extra='poll_interval = "5s";', name="pace.conf")
    e = env.clean_env()
    e["SG_OVH_TEST_MINUTE_MS"] = str(int(minute * 1000))
    env.clear_log()
    w = subprocess.Popen([env.args.probe, "watcher", conf], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    check(json.loads(w.stdout.readline()).get("started") == "yes", "watcher started")
    time.sleep(14)
    t_block = time.time()
    for a in addrs[10:18]:
        env.control("block", {"address": a})
    time.sleep(10)
    w.stdin.write("stop\n")
    w.stdin.flush()
    w.stdout.readline()
    w.wait(30)
    err = w.stderr.read()
    check("runtime error" not in err and "AddressSanitizer" not in err, "sanitizers", err)
    log = env.log()
    times = sorted(x["t"] for x in log)
    worst = windows(times, minute)
    check(worst <= 60, "at most 60 calls in any (test) minute: %d" % worst)
    checks = [x for x in log if re.fullmatch(r"/1\.0/email/pro/pro1/account/box\d\d@example\.com", x["path"])]
    by = {}
    for x in checks:
        by.setdefault(x["path"].rsplit("/", 1)[1], []).append(x["t"])
    check(sorted(by) == sorted(addrs), "every account checked", sorted(by))
    eff = 30 * minute / 50                  # 6 s: the interval the pace allows
    for a, ts in by.items():
        calm = [t for t in ts if t < t_block]
        check(len(calm) >= 2, "%s checked at least twice in 14 s" % a, ts)
        gaps = [b - x for x, b in zip(calm, calm[1:])]
        check(max(gaps) <= eff + 1.0, "%s: checked every %.1f s at most (gaps %s)" % (a, eff, gaps))
        check(any(t > t_block + 1 for t in ts), "%s still checked after the blocks" % a, ts)
    ct = sorted(x["t"] for x in checks if x["t"] < t_block)
    check(windows(ct, 1.0) <= 8, "checks spread, not bursts: %d in one second" % windows(ct, 1.0))
    check("each account is checked every 6 s instead" in err, "the stretched interval is logged", err)
    check(re.search(r"check delayed \d+ ms by the API request budget", err),
          "a check the budget delayed is logged", err)
    lookups = [x for x in log if x["path"].startswith("/1.0/support/")]
    check(len(lookups) >= 8 * 3, "the blocks were looked up (%d ticket calls)" % len(lookups))


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sendguardctl", required=True)
    ap.add_argument("--probe", required=True)
    ap.add_argument("--standin", required=True)
    ap.add_argument("case", choices=sorted(CASES))
    args = ap.parse_args()
    for b in (args.sendguardctl, args.probe, args.standin):
        if not os.path.exists(b):
            print("FAIL: %s does not exist" % b)
            return 1
    env = Env(args)
    try:
        CASES[args.case](env)
    except Fail as e:
        print("FAIL: %s: %s" % (args.case, e))
        return 1
    finally:
        env.close()
    print("ok: %s" % args.case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
