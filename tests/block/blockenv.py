"""
blockenv - helpers for the block-workflow end-to-end tests (test_block_e2e.py).

Builds on tests/e2e/harness.py: a throwaway Postfix, smtp-sink, a real
redis-server and the sendguard daemon, plus here:

  Standin       the stand-in OVHcloud API (tests/ovhapi/standin.py) on 127.0.0.1
  BlockEnv      stand-in + redis + sink + sendguard (Redis store, watcher on,
                on_block hold, release through `postsuper -c DIR -H -`) + Postfix
  seed_baseline old evidence written straight into Redis (an old client IP,
                low hourly traffic 26-40 h ago) so "new IP" and "spike" mean something
  ReleaseHelper `sendguardctl release-helper --listen SOCKET` as root: the
                one privileged path (issue 10)
  ctl()         run sendguardctl against the test's config

The daemon runs unprivileged, as it does in production: started by root with
`-u nobody`, its socket in a directory nobody owns, releasing held mail
through the root helper (release_helper); the files it writes (SASL map,
after_password_change marker, alert output) live in a directory nobody owns,
as /etc/postfix/sendguard/ would be the sendguard user's.

Everything listens on 127.0.0.1; everything started is registered with the
harness and stopped at the end. A missing tool is a failure, never a skip.
"""
from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import re
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("SG_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))

import harness  # noqa: E402
from harness import HarnessError, LOOPBACK, log, wait_until  # noqa: E402,F401

STANDIN = os.path.join(SRC, "tests", "ovhapi", "standin.py")

AK = "ak-block-e2e"
AS = "as-SECRET-block-e2e-7f3a"
CK = "ck-SECRET-block-e2e-91c2"
SECRETS = (AS, CK)
DAEMON_USER = "nobody"            # the daemon's user in these tests (-u)

# The four offers, one account each (all unblocked at start).
ACCOUNTS = {
    "exchange": {"address": "boss@example.com", "offer": "exchange", "organization": "org1",
                 "service": "ex1", "senders": ["*@example.com"]},
    "emailpro": {"address": "sales@example.com", "offer": "emailpro", "service": "pro1",
                 "senders": ["*@example.com"]},
    "mxplan": {"address": "info@example.org", "offer": "mxplan", "service": "mx1",
               "senders": ["*@example.org"]},
    "mxplan-legacy": {"address": "fax@example.net", "offer": "mxplan-legacy",
                      "senders": ["*@example.net"]},
}
# an envelope sender that maps to each account (not the account itself)
SENDERS = {"exchange": "app@example.com", "emailpro": "app@example.com",
           "mxplan": "app@example.org", "mxplan-legacy": "scanner2@example.net"}

OLD_PASSWORD = "oldpassword"
OLD_IP = "192.0.2.10"


def fixture(blocked=()):
    """The stand-in's fixture: one account per offer; `blocked`: offers blocked at start."""
    return {
        "credentials": [{"application_key": AK, "application_secret": AS, "consumer_key": CK}],
        "exchange": [{"organization": "org1", "service": "ex1", "address": "boss@example.com",
                      "blocked": "exchange" in blocked}],
        "emailpro": [{"service": "pro1", "address": "sales@example.com",
                      "blocked": "emailpro" in blocked, "suspicious": 42}],
        "mxplan": [{"service": "mx1", "address": "info@example.org",
                    "blocked": "mxplan" in blocked}],
        "legacy": [{"domain": "example.net", "local": "fax",
                    "blocked": "mxplan-legacy" in blocked}],
        "ticket_language": "en",
    }


def clean_env(home, extra=None):
    """Environment for our binaries: no proxy (curl honours *_proxy), no
    OVH_* variables, HOME in the scratch dir (no ~/.ovh.conf of the machine)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OVH_") and k.lower() not in ("http_proxy", "https_proxy",
                                                             "all_proxy", "no_proxy")}
    env["HOME"] = home
    env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    if extra:
        env.update(extra)
    return env


# --------------------------------------------------------------------------
# the stand-in OVHcloud API
# --------------------------------------------------------------------------
class Standin:
    """tests/ovhapi/standin.py on 127.0.0.1 with --clock-offset 3600."""

    def __init__(self, workdir, fixture_obj, port=0, clock_offset=3600):
        self.workdir = workdir
        self.fixture_path = os.path.join(workdir, "fixture.json")
        with open(self.fixture_path, "w") as f:
            json.dump(fixture_obj, f)
        self.port = port
        self.clock_offset = clock_offset
        self.proc = None
        self.stderr_path = os.path.join(workdir, "standin.stderr")
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def start(self, timeout=15):
        if not os.path.exists(STANDIN):
            raise HarnessError(f"stand-in API not found: {STANDIN}")
        self._err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, STANDIN, "--port", str(self.port), "--fixture", self.fixture_path,
             "--clock-offset", str(self.clock_offset)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err,
            start_new_session=True, preexec_fn=harness._child_setup)
        harness._register(self)
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if r else ""
        m = re.fullmatch(r"READY (\d+)\s*", line)
        if not m:
            raise HarnessError(f"stand-in did not start: {line!r}\n{harness.tail(self.stderr_path)}")
        self.port = int(m.group(1))
        self.base = f"http://{LOOPBACK}:{self.port}"
        return self

    def stop(self):
        harness._unregister(self)
        if self.proc is not None:
            harness._kill_process(self.proc, 10)
            try:
                self.proc.stdout.close()
            except Exception:
                pass
            self.proc = None
        if getattr(self, "_err", None):
            self._err.close()
            self._err = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def __repr__(self):
        return f"Standin(port={self.port})"

    # -- control ---------------------------------------------------------
    def control(self, name, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + "/__control/" + name, data=data,
                                     method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with self.opener.open(req, timeout=10) as r:
                return json.loads(r.read().decode())
        except urllib.error.HTTPError as e:
            raise HarnessError(f"stand-in control {name} {body!r} -> {e.code}: {e.read()!r}")

    def block(self, address, **kw):
        return self.control("block", dict(address=address, **kw))

    def unblock(self, address):
        return self.control("unblock", {"address": address})

    def state(self):
        return self.control("state")

    def log(self):
        return self.control("log")

    def replies(self, ticket_id=None):
        """Bodies of the POST .../reply calls the API accepted (status 200)."""
        out = []
        for e in self.log():
            if e["method"] == "POST" and re.search(r"/support/tickets/\d+/reply$", e["path"]) \
                    and e["status"] == 200:
                if ticket_id is None or f"/tickets/{ticket_id}/" in e["path"]:
                    out.append(json.loads(e["body"])["body"])
        return out

    def calls(self, method, pattern):
        return [e for e in self.log() if e["method"] == method and re.search(pattern, e["path"])]

    def account(self, address):
        return self.state()["accounts"][address]

    def ticket(self, ticket_id):
        for t in self.state()["tickets"]:
            if t["ticketId"] == ticket_id:
                return t
        return None

    def write_ovh_conf(self, path):
        ep = f"{self.base}/1.0"
        with open(path, "w") as f:
            f.write(f"[default]\nendpoint={ep}\n\n[{ep}]\napplication_key={AK}\n"
                    f"application_secret={AS}\nconsumer_key={CK}\n")
        os.chmod(path, 0o600)
        return path


# --------------------------------------------------------------------------
# evidence baseline
# --------------------------------------------------------------------------
def account_tag(address):
    return hashlib.sha1(address.encode()).hexdigest()


def seed_baseline(redis, address, prefix="sg:", now=None):
    """Older history for an account, written as sg_decide.lua would have:
    OLD_IP first seen 3 days ago (30 messages), the same for a mailer, and
    1 message per hour 40..26 hours ago (so "usual hour" is 1 and 20 in one
    hour is a spike, and anything first seen in the last 24 h is new)."""
    now = now or time.time()
    now_ms = int(now * 1000)
    hour = int(now // 3600)
    k = f"{prefix}{{{account_tag(address)}}}:"
    three_days = now_ms - 3 * 86400 * 1000
    redis.command("HSET", k + "ev:ip", OLD_IP, 30)
    redis.command("HSET", k + "ev:ipfirst", OLD_IP, three_days)
    redis.command("HSET", k + "ev:mua", "OldMailer 1.0", 30)
    redis.command("HSET", k + "ev:muafirst", "OldMailer 1.0", three_days)
    redis.command("HSET", k + "ev:dom", "example.net", 30)
    for h in range(hour - 40, hour - 25):
        redis.command("HSET", k + "ev:hour", f"{h}:m", 1, f"{h}:r", 1)
    redis.command("HSET", k + "meta", "name", address, "last_ms", now_ms - 26 * 3600 * 1000)
    for s in ("ev:ip", "ev:ipfirst", "ev:mua", "ev:muafirst", "ev:dom", "meta"):
        redis.command("PEXPIRE", k + s, 7 * 86400 * 1000)
    redis.command("PEXPIRE", k + "ev:hour", 49 * 3600 * 1000)
    return k


def held_key(address, relay="relay1", prefix="sg:"):
    return f"{prefix}{{{account_tag(address)}}}:held:{relay}"


# --------------------------------------------------------------------------
# everything together
# --------------------------------------------------------------------------
ALERT_SH = """#!/bin/sh
# alert.command of the block tests: one line per alert
echo "$SG_EVENT $SG_ACCOUNT $SG_TICKET" >> {out}
"""


class ReleaseHelper:
    """`sendguardctl -c CONFIG release-helper --listen SOCKET --group G`, as root:
    takes queue ids from the daemon and runs the config's release_command."""

    def __init__(self, ctl_binary, config_path, sockdir, group, env):
        self.ctl_binary = ctl_binary
        self.config_path = config_path
        self.path = os.path.join(sockdir, "release.sock")
        self.group = group
        self.env = env
        self.logfile = os.path.join(sockdir, "release-helper.log")
        self.proc = None
        self._log_fh = None

    def start(self, timeout=10):
        self._log_fh = open(self.logfile, "ab", buffering=0)
        self.proc = subprocess.Popen(
            [self.ctl_binary, "-c", self.config_path, "release-helper", "--listen", self.path,
             "--group", self.group],
            stdin=subprocess.DEVNULL, stdout=self._log_fh, stderr=self._log_fh, env=self.env,
            start_new_session=True, preexec_fn=harness._child_setup)
        harness._register(self)

        def ready():
            if self.proc.poll() is not None:
                raise HarnessError(f"release helper exited with status {self.proc.returncode}:"
                                   f"\n{harness.tail(self.logfile)}")
            return harness.unix_accepts(self.path)
        wait_until(ready, timeout, f"release helper socket {self.path}")
        return self

    def stop(self):
        harness._unregister(self)
        if self.proc is not None:
            harness._kill_process(self.proc, 10)
            self.proc = None
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def log_text(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def __repr__(self):
        return f"ReleaseHelper({self.path})"


class BlockEnv:
    """stand-in + redis + (sink, sendguard, Postfix) for one offer's account."""

    def __init__(self, scratch, offer, binary, ctl_binary, blocked=(), extra_top=None,
                 seed=True, mail_env=None):
        self.scratch = scratch
        self.offer = offer
        self.acct = dict(ACCOUNTS[offer])
        self.address = self.acct["address"]
        self.sender = SENDERS[offer]
        self.binary = binary
        self.ctl_binary = ctl_binary
        self.home = scratch.sub("home", mode=0o700)
        self.standin = Standin(scratch.sub("standin"), fixture(blocked))
        self.redis = harness.RedisServer(scratch.sub("redis"))
        pw = pwd.getpwnam(DAEMON_USER)
        self.daemon_uid, self.daemon_gid = pw.pw_uid, pw.pw_gid
        # what the unprivileged daemon writes: a directory of its own
        self.daemon_dir = scratch.sub("daemon", owner=DAEMON_USER, mode=0o755)
        # the release helper's socket: a directory only root writes
        self.release_dir = scratch.sub("release", mode=0o755)
        self.release_sock = os.path.join(self.release_dir, "release.sock")
        self.helper = None
        self.alert_out = os.path.join(self.daemon_dir, "alerts.txt")
        self.alert_sh = scratch.file("alert.sh")
        self.sasl_map = os.path.join(self.daemon_dir, "sasl_passwd")
        self.marker = os.path.join(self.daemon_dir, "after_password_change.marker")
        self.ovh_conf = scratch.file("ovh.conf")
        self.extra_top = dict(extra_top or {})
        self.seed = seed
        # the MTA side: harness.MailEnv (Postfix) unless told otherwise, e.g.
        # tests/e2e/sendmail_harness.SendmailEnv (same sendguard/sink attributes)
        self.mail_env = mail_env or harness.MailEnv
        self.env = None
        self.sg = None
        self.postfix = None
        self.sink = None

    # -- config ------------------------------------------------------------
    def sendguard_text(self, socket_spec):
        acct = dict(self.acct)
        if self.offer == "mxplan-legacy":
            acct["sasl_map_file"] = self.sasl_map
        top = dict(
            relay_name="relay1",
            ovh={"credentials": self.ovh_conf, "poll_interval": "5s", "timeout": "5s"},
            on_block="hold",
            release_command=["postsuper", "-c", self.postfix_config_dir, "-H", "-"],
            release_helper=self.release_sock,
            after_password_change=["touch", self.marker],
            alert={"command": [self.alert_sh], "interval": "1h"},
        )
        top.update(self.extra_top)
        return harness.sendguard_config(
            socket_spec,
            [harness.limit("hourly", "1h", 1000, "tempfail")],
            accounts=[acct],
            store={"backend": "redis", "on_error": "tempfail",
                   "redis": {"host": LOOPBACK, "port": self.redis.port}},
            **top)

    @property
    def postfix_config_dir(self):
        # harness.MailEnv puts Postfix in <scratch>/postfix, config in etc/
        return os.path.join(self.scratch.path, "postfix", "etc")

    @property
    def config_path(self):
        return self.sg.config_path

    # -- lifecycle ---------------------------------------------------------
    def start(self):
        t0 = time.monotonic()
        for tool in ("postfix", "postsuper", "postqueue", "smtp-sink", "redis-server"):
            harness.require_tool(tool, "postfix" if tool.startswith("post") or tool == "smtp-sink"
                                 else "redis-server")
        harness.require_root("the block end-to-end tests (Postfix)")
        for b in (self.binary, self.ctl_binary):
            if not b or not os.access(b, os.X_OK):
                raise HarnessError(f"binary not found or not executable: {b!r}")
        self.standin.start()
        self.standin.write_ovh_conf(self.ovh_conf)
        os.chown(self.ovh_conf, self.daemon_uid, self.daemon_gid)    # 0600, the daemon's
        with open(self.alert_sh, "w") as f:
            f.write(ALERT_SH.format(out=self.alert_out))
        os.chmod(self.alert_sh, 0o755)
        # appended to by the daemon (nobody) and by sendguardctl (root)
        open(self.alert_out, "a").close()
        os.chown(self.alert_out, self.daemon_uid, self.daemon_gid)
        with open(self.sasl_map, "w") as f:
            f.write("# relay credentials\n"
                    "[smtp.other.example]:587 someone@example.org:keepme123\n"
                    f"[127.0.0.1]:2525 {self.address}:{OLD_PASSWORD}\n")
        os.chmod(self.sasl_map, 0o600)
        os.chown(self.sasl_map, self.daemon_uid, self.daemon_gid)
        self.redis.start()
        if self.seed:
            seed_baseline(self.redis, self.address)
        self.env = self.mail_env(self.scratch, self.binary, config=self.sendguard_text,
                                 user=DAEMON_USER)
        self.sg, self.postfix, self.sink = self.env.sendguard, self.env.postfix, self.env.sink
        self.sg.env = clean_env(self.home, {k: v for k, v in self.sg.env.items()
                                            if k in ("ASAN_OPTIONS", "UBSAN_OPTIONS")})
        self.helper = ReleaseHelper(self.ctl_binary, self.sg.config_path, self.release_dir,
                                    grp.getgrgid(self.daemon_gid).gr_name, clean_env(self.home))
        self.helper.start()
        self.env.start()
        # the daemon really runs as DAEMON_USER (not root)
        with open(f"/proc/{self.sg.pid}/status") as f:
            uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)", f.read(), re.M).groups()
        if {int(u) for u in uids} != {self.daemon_uid}:
            raise HarnessError(f"sendguard runs with uids {uids}, not {DAEMON_USER}")
        # the watcher's first round: the account is known to be fine
        self.wait_phase(lambda st: st.get("checked_ms", 0) > 0, 15, "the watcher's first poll")
        log(f"block env ({self.offer}) up in {time.monotonic() - t0:.1f}s")
        return self

    def stop(self):
        for part in (self.env, self.helper, self.redis, self.standin):
            if part is not None:
                try:
                    part.stop()
                except Exception as e:
                    log(f"stopping {part!r}: {e}")

    # -- sendguardctl --------------------------------------------------------
    def ctl(self, *args, timeout=60, input=None):
        t0 = time.monotonic()
        p = subprocess.run([self.ctl_binary, "-c", self.config_path, *args], capture_output=True,
                           text=True, timeout=timeout, env=clean_env(self.home), cwd=self.home,
                           input=input if input is not None else "",
                           )
        p.elapsed = time.monotonic() - t0
        if args[0] != "status":
            log(f"sendguardctl {' '.join(args)} -> {p.returncode} in {p.elapsed:.1f}s")
        if p.returncode != 0:
            log(f"  stdout: {p.stdout.strip()[-600:]!r}\n  stderr: {p.stderr.strip()[-600:]!r}")
        if p.returncode < 0:
            raise AssertionError(f"sendguardctl {args} died of signal {-p.returncode}\n"
                                 f"stdout: {p.stdout}\nstderr: {p.stderr}")
        for m in harness.SANITIZER_MARKERS:
            if m in p.stderr:
                raise AssertionError(f"sanitizer report from sendguardctl {args}:\n{p.stderr}")
        for s in SECRETS:
            if s in p.stdout or s in p.stderr:
                raise AssertionError(f"sendguardctl {args} printed an API secret")
        return p

    def status(self):
        p = self.ctl("status", self.address, "--json")
        if p.returncode != 0:
            raise AssertionError(f"status -> {p.returncode}: {p.stderr}")
        j = json.loads(p.stdout)
        if isinstance(j, list):
            j = next(x for x in j if x.get("account") == self.address)
        elif isinstance(j, dict) and "accounts" in j:
            j = next(x for x in j["accounts"] if x.get("account") == self.address)
        return j

    def wait_phase(self, pred, timeout, what):
        return wait_until(lambda: (lambda s: pred(s) and s)(self.status()), timeout, what,
                          interval=0.3)

    def kick(self):
        """SIGUSR1: reload + the watcher polls at once."""
        self.sg.signal(signal.SIGUSR1)

    # -- helpers -------------------------------------------------------------
    def alerts(self):
        try:
            with open(self.alert_out) as f:
                return [ln.split() for ln in f.read().splitlines() if ln.strip()]
        except OSError:
            return []

    def held_ids(self):
        return sorted(self.redis.command("SMEMBERS", held_key(self.address)) or [])

    def hold_queue_ids(self):
        return sorted(m["queue_id"] for m in self.postfix.queue() if m["queue_name"] == "hold")

    def sink_message_ids(self):
        ids = []
        for m in self.sink.messages():
            mm = re.search(r"^Message-ID:\s*(\S+)", m["raw"], re.M | re.I)
            ids.append(mm.group(1) if mm else None)
        return ids

    def diagnostics(self):
        parts = [self.env.diagnostics() if self.env else "-"]
        try:
            parts.append("--- stand-in log (last 15 calls) ---\n" + "\n".join(
                f"{e['method']} {e['path']} -> {e['status']}" for e in self.standin.log()[-15:]))
        except Exception as e:
            parts.append(f"stand-in log: {e}")
        parts.append(f"alerts: {self.alerts()}")
        if self.helper is not None:
            parts.append("--- release helper log ---\n" + self.helper.log_text()[-2000:])
        return "\n".join(parts)
