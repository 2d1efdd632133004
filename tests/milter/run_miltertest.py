#!/usr/bin/env python3
"""
run_miltertest.py - milter-level tests of the real sendguard binary.

For each case: write a config, start `sendguard -c FILE -f` on a unix
socket in a scratch dir, drive it with Debian's `miltertest` running one
of the .lua scripts here (or with milterclient.py where miltertest cannot
carry the input), change the config / send SIGUSR1 where the case says so,
then check miltertest's exit status and sendguard's log: one well-formed
decision line per message with the expected actions, no forged or broken
line, no sanitizer report, clean exit on SIGTERM.

  run_miltertest.py --binary build/sendguard --case tempfail
  run_miltertest.py --binary build/sendguard --all
  run_miltertest.py --list

A missing miltertest or binary is a failure (exit 1), never a skip.
The scratch dir is removed when the case passes and kept (path printed)
when it fails.
"""
import argparse
import os
import re
import signal
import struct
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, HERE)
import harness as h          # noqa: E402
import milterclient as mc    # noqa: E402

MILTERTEST_TIMEOUT = 90
LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} sendguard\[[a-z]+\]: ")


class CaseFailure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise CaseFailure(msg)


# -- what sendguard says (policy/sg_policy.c over_reason) -----------------
def reason(cap, name="hourly", unit="messages", window="60m"):
    return f"sending limit {name} reached ({cap} {unit} per {window})"


def tempfail_text(cap, **kw):
    return reason(cap, **kw) + ", try again in %RETRY%"


def one_limit_config(cap, action, window="1h", **extra):
    return lambda sock: h.sendguard_config(sock, [h.limit("hourly", window, cap, action)], **extra)


class Run:
    """One case: a scratch dir, a sendguard, helpers to drive and check it."""

    def __init__(self, binary, scratch, config, socket="unix"):
        self.binary = binary
        self.scratch = scratch
        self.sg = h.Sendguard(binary, scratch.sub("sendguard"), config, socket=socket)
        self.miltertest = h.require_tool("miltertest", "miltertest")
        self.expected = []          # actions of every decision so far, in order

    def start(self):
        self.sg.start()
        return self

    # -- drivers -------------------------------------------------------------
    def lua(self, script, **defines):
        """Run one .lua script; it must exit 0. Returns its stdout."""
        path = os.path.join(HERE, script)
        args = [self.miltertest, "-s", path, "-D", f"socket={self.sg.socket}",
                "-D", f"libdir={HERE}"]
        for k, v in defines.items():
            args += ["-D", f"{k}={v}"]
        h.log("miltertest " + " ".join(a if " " not in a else repr(a) for a in args[1:]))
        t0 = time.monotonic()
        r = subprocess.run(args, capture_output=True, timeout=MILTERTEST_TIMEOUT)
        out = r.stdout.decode("utf-8", "replace")
        err = r.stderr.decode("utf-8", "replace")
        h.log(f"  -> exit {r.returncode} in {time.monotonic() - t0:.1f}s")
        if r.returncode != 0 or "FAIL:" in out + err:
            raise CaseFailure(f"miltertest {script} exited {r.returncode}\n--- stdout ---\n{out}"
                              f"\n--- stderr ---\n{err}\n--- sendguard log ---\n{h.tail(self.sg.logfile)}")
        return out

    def plan(self, script, plan, **defines):
        """Run a plan script ("accept:2,tempfail:1") and remember the actions."""
        out = self.lua(script, plan=plan, **defines)
        for item in plan.split(","):
            what, _, n = item.partition(":")
            self.expected += [what] * int(n or 1)
        return out

    def client(self):
        return mc.MilterClient(self.sg.socket)

    # -- checks --------------------------------------------------------------
    def decisions(self, n=None, timeout=10):
        n = len(self.expected) if n is None else n
        if n:
            self.sg.wait_decisions(n, timeout=timeout)
        time.sleep(0.2)                 # a straggler would show up now
        return self.sg.decisions()

    def check_decisions(self, expected=None):
        expected = self.expected if expected is None else expected
        d = self.decisions(len(expected))
        got = [x.get("action") for x in d]
        check(got == expected, f"decision actions: expected {expected}, got {got}\n"
              + "\n".join(x["_line"] for x in d))
        return d

    def check_log(self):
        """Every line is one sendguard line; decision lines are well formed;
        nothing forged; no sanitizer report."""
        reports = self.sg.sanitizer_reports()
        check(not reports, "sanitizer reports:\n" + "\n".join(reports) + "\n" + h.tail(self.sg.logfile, 80))
        raw = self.sg.log_bytes()
        check(b"\r" not in raw and b"\0" not in raw, "raw CR or NUL byte in sendguard's log")
        for ln in self.sg.log_lines():
            check(LOG_PREFIX.match(ln), f"log line without the sendguard prefix (broken or injected): {ln!r}")
            _, msg = h.split_log_line(ln)
            check("FORGED" not in msg or "\\x0a" in msg or "\\x0d" in msg or h.is_decision(msg),
                  f"forged text on a line of its own: {ln!r}")
            if h.is_decision(msg):
                problems = h.check_decision_line(ln)
                check(not problems, f"malformed decision line {ln!r}: {problems}")
                check(not ln.startswith("2030-"), f"forged decision line {ln!r}")
                check(h.parse_kv(msg).get("qid") != "FORGED", f"forged qid: {ln!r}")
            elif "action=" in msg:
                raise CaseFailure(f"'action=' outside a decision line: {ln!r}")

    def finish(self):
        check(self.sg.alive(), f"sendguard died (status {self.sg.proc.returncode}):\n{h.tail(self.sg.logfile)}")
        rc = self.sg.stop()
        self.check_log()
        check(rc == 0, f"sendguard exited {rc} on SIGTERM:\n{h.tail(self.sg.logfile)}")


# --------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------
CASES = {}


def case(fn):
    CASES[fn.__name__.replace("case_", "")] = fn
    return fn


@case
def case_accept(binary, scratch):
    """Under the cap: 5 messages accepted, none quarantined."""
    r = Run(binary, scratch, one_limit_config(5, "hold")).start()
    r.lua("accept.lua", count=5)
    r.expected = ["accept"] * 5
    d = r.check_decisions()
    check([x.get("identity") for x in d] == ["<alice@example.com>"] * 5, d)
    check([x.get("qid") for x in d] == [f"ACC{i}" for i in range(1, 6)], [x.get("qid") for x in d])
    check([x.get("cap") for x in d] == ["5"] * 5, [x.get("cap") for x in d])
    check([x.get("ip") for x in d] == ["192.0.2.7"] * 5, [x.get("ip") for x in d])
    used = [int(x.get("used", -1)) for x in d]
    check(used == sorted(used) and used[-1] in (4, 5), f"used should grow to the cap: {used}")
    r.finish()


@case
def case_tempfail(binary, scratch):
    """Past the cap: 451 4.7.1 with a text naming the limit and a retry-after."""
    r = Run(binary, scratch, one_limit_config(3, "tempfail")).start()
    r.lua("tempfail.lua", cap=3, over=2, tempfail_text=tempfail_text(3))
    r.expected = ["accept"] * 3 + ["tempfail"] * 2
    d = r.check_decisions()
    for x in d[3:]:
        check(x.get("limit") == "hourly" and x.get("cap") == "3", f"refusal names the limit: {x['_line']}")
    r.finish()


@case
def case_hold(binary, scratch):
    """Past the cap with action hold: accepted with a quarantine request."""
    r = Run(binary, scratch, one_limit_config(3, "hold")).start()
    r.lua("hold.lua", cap=3, over=2, hold_reason=reason(3))
    r.expected = ["accept"] * 3 + ["hold"] * 2
    d = r.check_decisions()
    for x in d[3:]:
        check(x.get("limit") == "hourly", x["_line"])
    r.finish()


@case
def case_reject(binary, scratch):
    """Past the cap with action reject: 550 5.7.1."""
    r = Run(binary, scratch, one_limit_config(3, "reject")).start()
    r.lua("reject.lua", cap=3, over=2, reject_text=reason(3))
    r.expected = ["accept"] * 3 + ["reject"] * 2
    r.check_decisions()
    r.finish()


@case
def case_reload(binary, scratch):
    """SIGUSR1 with a higher cap: the next messages are accepted again
    (counts survive the reload), up to the new cap."""
    r = Run(binary, scratch, one_limit_config(2, "tempfail")).start()
    r.plan("reload.lua", "accept:2,tempfail:1", tag="R1_", tempfail_text=tempfail_text(2))
    r.check_decisions()
    line = r.sg.reload(one_limit_config(4, "tempfail"), expect=r"reloaded ")
    h.log(f"reload: {line}")
    r.plan("reload.lua", "accept:2,tempfail:1", tag="R2_", tempfail_text=tempfail_text(4))
    d = r.check_decisions()
    check(d[-1].get("cap") == "4", f"new cap in the log: {d[-1]['_line']}")
    r.finish()


BAD_LINE_TEXT = "limits = ( { name = \"hourly\" window = \"1h\"; } );   # missing ';' after name"


@case
def case_bad_reload(binary, scratch):
    """A reload with a syntax error keeps the running config and logs
    FILE:LINE; -t says 78 with the same FILE:LINE; a later good reload works."""
    cfg = one_limit_config(2, "tempfail")
    r = Run(binary, scratch, cfg).start()
    r.plan("reload.lua", "accept:2,tempfail:1", tag="B1_", tempfail_text=tempfail_text(2))
    good = r.sg.render(cfg).rstrip("\n").split("\n")
    bad_line = len(good) + 2
    bad = "\n".join(good) + "\n\n" + BAD_LINE_TEXT + "\n"
    r.sg.write_config(bad)
    mark = r.sg.log_size()
    r.sg.reload(expect=r"reload of .* failed")
    where = f"{r.sg.config_path}:{bad_line}"
    lines = r.sg.log_lines(mark)
    check(any(where in ln for ln in lines),
          f"expected an error naming {where}, got:\n" + "\n".join(lines))
    check(r.sg.alive(), "sendguard died on a bad reload")
    # -t agrees
    t = subprocess.run([binary, "-t", "-c", r.sg.config_path], capture_output=True, text=True,
                       timeout=20, env=r.sg.env)
    check(t.returncode == 78, f"sendguard -t on a bad file: exit {t.returncode}, expected 78")
    check(where in t.stderr + t.stdout, f"sendguard -t should name {where}: {t.stderr!r}")
    # still the old config: cap 2 already used
    r.plan("reload.lua", "tempfail:1", tag="B2_", tempfail_text=tempfail_text(2))
    # a good reload after a bad one
    r.sg.reload(one_limit_config(4, "tempfail"), expect=r"reloaded ")
    r.plan("reload.lua", "accept:2,tempfail:1", tag="B3_", tempfail_text=tempfail_text(4))
    r.check_decisions()
    r.finish()


@case
def case_check_config(binary, scratch):
    """sendguard -t: exit 0 on a good file, 78 with FILE:LINE on a bad one."""
    sg = h.Sendguard(binary, scratch.sub("sendguard"), one_limit_config(5, "hold"))
    t = sg.check_config()
    check(t.returncode == 0, f"-t on a good config: {t.returncode} {t.stderr}")
    bad = sg.render(one_limit_config(5, "hold")) + "\n" + BAD_LINE_TEXT + "\n"
    n = bad.rstrip("\n").count("\n") + 1
    t = sg.check_config(bad)
    check(t.returncode == 78, f"-t on a bad config: {t.returncode}, expected 78")
    check(re.search(re.escape(os.path.join(sg.workdir, "check.conf")) + f":{n}\\b", t.stderr + t.stdout),
          f"-t should report check.conf:{n}: {t.stderr!r}")
    bad2 = sg.render(one_limit_config(5, "sometimes"))
    t = sg.check_config(bad2)
    check(t.returncode == 78 and re.search(r"check\.conf:\d+: .*action", t.stderr + t.stdout),
          f"-t on an unknown action: {t.returncode} {t.stderr!r}")


@case
def case_hostile(binary, scratch):
    """Hostile but protocol-valid input through miltertest (hostile.lua)."""
    r = Run(binary, scratch, one_limit_config(100000, "tempfail")).start()
    out = r.lua("hostile.lua")
    m = re.search(r"SG-EOMS (\d+)", out)
    check(m, f"hostile.lua did not report its message count:\n{out}")
    n = int(m.group(1))
    r.expected = ["accept"] * n
    d = r.check_decisions()
    qids = [x.get("qid") for x in d]
    check("H15" not in qids and "H17" not in qids, f"aborted transactions must not be decided: {qids}")
    big = [x for x in d if x.get("qid") == "H14"]
    check(big and big[0].get("rcpts") == "1000", f"1,000 recipients counted: {big}")
    nomac = [x for x in d if x.get("ip") == "198.51.100.9"]
    check(nomac and nomac[0].get("qid") == "-", f"missing {{i}} logged as qid=-: {nomac}")
    # {auth_authen} through miltertest (the MTA side of Sendmail's own
    # libmilter): the login is the identity, its CR/LF escaped
    h8 = [x for x in d if x.get("qid") == "H8"]
    h.log(f"H8: {h8[0]['_line'] if h8 else None}")
    check(h8 and h8[0].get("identity", "").startswith("<jdoe\\x0d\\x0a"),
          f"identity of H8 should be its {{auth_authen}}: {h8}")
    r.finish()


@case
def case_hostile_raw(binary, scratch):
    """What miltertest cannot send: 2,000-byte addresses, NUL bytes, broken
    macro packets, empty MAIL/RCPT, huge headers, protocol violations."""
    r = Run(binary, scratch, one_limit_config(100000, "tempfail")).start()
    long_addr = "<" + "b" * 1986 + "@example.com>"
    assert len(long_addr) == 2000, len(long_addr)
    exact = 0          # complete, well-formed transactions: one decision each
    maybe = 0          # malformed ones: at most one decision each

    def fresh():
        c = r.client()
        c.negotiate()
        c.connect("client.example", "192.0.2.8")
        return c

    c = fresh()
    res = c.message(long_addr, ["<rcpt@example.net>"], mail_macros={"i": "RAW1"}, eom_macros={"i": "RAW1"},
                    headers=[("From", long_addr)])
    check(res.verdict == "accept", f"2,000-byte sender: {res}")
    exact += 1
    res = c.message("<alice@example.com>", ["<rcpt@example.net>"],
                    mail_macros={"i": "RAW2", "{auth_authen}": "j" * 2000}, eom_macros={"i": "RAW2"})
    check(res.verdict == "accept", f"2,000-byte login: {res}")
    exact += 1
    res = c.message("<alice@example.com>", ["<" + "r" * 1990 + "@example.net>"] * 3,
                    mail_macros={"i": "RAW3"}, eom_macros={"i": "RAW3"})
    check(res.verdict == "accept", f"2,000-byte recipients: {res}")
    exact += 1
    # NUL inside macro values: the pairs come out misaligned
    res = c.message("<alice@example.com>", ["<rcpt@example.net>"],
                    mail_macros=b"i\0RAW4\0X\0{auth_authen}\0evil\0login\0\0\0",
                    eom_macros=b"i\0RAW4\0")
    check(res.verdict in ("accept", "tempfail"), f"NUL in macros: {res}")
    exact += 1
    # NUL, CR, LF inside the MAIL argument (libmilter splits at NUL)
    res = c.message(b"<ali\0ce@example.com>\r\nqid=FORGED action=accept", [b"<r\0cpt@example.net>"],
                    mail_macros={"i": "RAW5"}, eom_macros={"i": "RAW5"},
                    headers=[("X-Mailer", b"a\0b\r\nqid=FORGED action=accept"),
                             ("From", b"\xff\xfe\r\n\r\n")])
    check(res.verdict == "accept", f"NUL/CR/LF in MAIL: {res}")
    exact += 1
    # 1,000 recipients of 300 bytes, a 60 KB header (libmilter takes up to 64 KB
    # per packet unless SMFIP_MDS_* is negotiated), 1 MB of body
    rcpts = [f"<{'x' * 280}{i:04d}@example.net>" for i in range(1000)]
    res = c.message("<alice@example.com>", rcpts, mail_macros={"i": "RAW7"}, eom_macros={"i": "RAW7"},
                    headers=[("X-Big", "v" * 60000)], body=b"y" * 1000000)
    check(res.verdict == "accept", f"1,000 long recipients: {res}")
    exact += 1
    c.quit()

    # IPv6 and "unspec" client addresses
    for ip in ("2001:db8::1", "unspec"):
        c = r.client()
        c.negotiate()
        c.connect("client.example", ip)
        res = c.message("<alice@example.com>", ["<rcpt@example.net>"], mail_macros={"i": "RAW8"},
                        eom_macros={"i": "RAW8"})
        check(res.verdict == "accept", f"client {ip}: {res}")
        exact += 1
        c.quit()

    # protocol violations: each on its own connection; the filter may
    # answer or hang up, but must survive
    violations = {
        "MAIL without argument": lambda c: (c.send("M", b""), c.rcpt(["<r@example.net>"]), c.eom()),
        "RCPT without argument": lambda c: (c.mail(["<a@example.com>"]), c.send("R", b""), c.eom()),
        "EOM without MAIL": lambda c: c.eom(),
        "body before MAIL": lambda c: (c.send("B", b"x" * 10), c.eom()),
        "garbage command": lambda c: (c.send("?", b"\xff" * 100), c.mail(["<a@example.com>"]), c.eom()),
        "truncated packet": lambda c: c.sock.sendall(b"\x00\x00\x10\x00M<a@"),
        "empty macro packet": lambda c: (c.macro("M", b""), c.mail(["<a@example.com>"]),
                                         c.rcpt(["<r@example.net>"]), c.eom()),
        "unknown macro stage": lambda c: (c.macro("Z", {"i": "RAW6"}), c.mail(["<a@example.com>"]),
                                          c.rcpt(["<r@example.net>"]), c.eom()),
    }
    for what, fn in violations.items():
        c = fresh()
        c.sock.settimeout(3)
        try:
            res = fn(c)
            h.log(f"{what}: {res!r}")
        except (mc.MilterError, OSError) as e:
            h.log(f"{what}: connection ended ({e})")
        maybe += 1
        c.close()
        check(r.sg.alive(), f"sendguard died after: {what}\n{h.tail(r.sg.logfile)}")

    # still answering
    c = fresh()
    res = c.message("<alice@example.com>", ["<rcpt@example.net>"], mail_macros={"i": "RAW9"},
                    eom_macros={"i": "RAW9"})
    check(res.verdict == "accept", f"after the violations: {res}")
    exact += 1
    c.quit()

    d = r.decisions(exact)
    check(exact <= len(d) <= exact + maybe,
          f"{len(d)} decision lines for {exact} complete (+{maybe} malformed) transactions:\n"
          + "\n".join(x["_line"] for x in d))
    longest = max(len(x["_line"]) for x in d)
    check(longest < 4096, f"a decision line of {longest} bytes")
    r.finish()


def _pkt(cmd, data=b""):
    return struct.pack("!IB", len(data) + 1, ord(cmd)) + data


def _session_bytes(qid, sender, ip="192.0.2.9", login=""):
    """A whole SMTP session as Postfix writes it to a milter whose steps are
    all "no reply" (after negotiation): CONNECT, MAIL, RCPT, headers, EOM."""
    out = _pkt("D", b"C" + b"j\0mx.example\0")
    out += _pkt("C", b"client.example\0" + b"4" + struct.pack("!H", 2525) + ip.encode() + b"\0")
    out += _pkt("D", b"M" + b"{i}\0" + qid.encode() + b"\0{auth_authen}\0" + login.encode() + b"\0")
    out += _pkt("M", sender.encode() + b"\0SIZE=100\0")
    out += _pkt("R", b"<r1@example.net>\0") + _pkt("R", b"<r2@example.org>\0")
    out += _pkt("L", b"From\0" + sender.encode() + b"\0") + _pkt("L", b"X-Mailer\0engine-test\0")
    out += _pkt("B", b"hello\r\n" * 10)
    out += _pkt("D", b"E" + b"i\0" + qid.encode() + b"\0")
    out += _pkt("E")
    return out


@case
def case_session(binary, scratch):
    """Through libmilter: a whole session in one write and the same one byte
    by byte give the same decision, the identity from {auth_authen} sent
    with MAIL's macros; "{i}" and "i" are one macro; a connection reused
    after QUIT_NC; an unknown command ends that connection only; SIGTERM
    with idle MTA connections open stops without waiting for them."""
    r = Run(binary, scratch, one_limit_config(100000, "tempfail")).start()

    for qid, slow in (("ENG1", False), ("ENG2", True)):
        c = r.client()
        c.negotiate()
        check(c.steps & mc.SMFIP["NR_MAIL"] and c.steps & mc.SMFIP["NR_RCPT"],
              "MAIL/RCPT should be no-reply steps")
        data = _session_bytes(qid, "<eng@example.com>", login="jdoe" if slow else "")
        if slow:
            for i in range(len(data)):
                c.sock.sendall(data[i:i + 1])
        else:
            c.sock.sendall(data)
        cmd, d = c.recv()
        check(chr(cmd) == "c", f"{qid}: expected continue, got {chr(cmd)!r} {d!r}")
        c.quit()
    d = r.decisions(2)
    check([x.get("qid") for x in d] == ["ENG1", "ENG2"], [x["_line"] for x in d])
    check([x.get("identity") for x in d] == ["<eng@example.com>", "<jdoe>"],
          f"identity from the envelope, then from {{auth_authen}}: {[x['_line'] for x in d]}")
    check(all(x.get("ip") == "192.0.2.9" and x.get("rcpts") == "2" for x in d), [x["_line"] for x in d])

    c = r.client()
    c.negotiate()
    c.sock.sendall(_session_bytes("ENG3", "<eng@example.com>", ip="192.0.2.10"))
    cmd, _ = c.recv()
    check(chr(cmd) == "c", f"ENG3: {chr(cmd)!r}")
    c.send("K")
    c.sock.sendall(_session_bytes("ENG4", "<eng@example.com>", ip="198.51.100.4"))
    cmd, _ = c.recv()
    check(chr(cmd) == "c", f"ENG4 after QUIT_NC: {chr(cmd)!r}")
    c.quit()
    d = r.decisions(4)
    check([(x.get("qid"), x.get("ip")) for x in d[2:]] == [("ENG3", "192.0.2.10"), ("ENG4", "198.51.100.4")],
          [x["_line"] for x in d])

    c = r.client()
    c.sock.settimeout(10)
    c.negotiate()
    c.sock.sendall(_pkt("?", b"x"))
    try:
        got = c.sock.recv(100)
    except OSError as e:
        got = repr(e).encode()
    check(got == b"", f"unknown command: the connection should be closed, got {got!r}")
    c.close()
    check(r.sg.alive(), "sendguard died after an unknown command")

    c = r.client()
    c.negotiate()
    c.sock.sendall(_session_bytes("ENG5", "<eng@example.com>"))
    check(chr(c.recv()[0]) == "c", "ENG5")
    idle = [r.client() for _ in range(2)]
    for x in idle:
        x.negotiate()
    t0 = time.monotonic()
    rc = r.sg.stop(timeout=30)
    took = time.monotonic() - t0
    check(rc == 0, f"exit status {rc} on SIGTERM")
    # idle connections wait for the MTA (milter.timeout: 2 h); a stop that
    # waited for them would take that long
    check(took < 20, f"SIGTERM with idle connections took {took:.1f}s")
    for x in idle + [c]:
        x.close()
    r.check_log()
    d = r.sg.decisions()
    check([x.get("qid") for x in d] == ["ENG1", "ENG2", "ENG3", "ENG4", "ENG5"], [x["_line"] for x in d])


def _connect_as(user, path):
    """Try to connect to the unix socket PATH as USER: the errno name, or 'ok'."""
    code = ("import socket,sys,errno\n"
            "s=socket.socket(socket.AF_UNIX)\n"
            "try:\n s.connect(sys.argv[1]); print('ok')\n"
            "except OSError as e: print(errno.errorcode.get(e.errno, str(e.errno)))\n")
    pw = h.pwd.getpwnam(user)

    def drop():
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    out = subprocess.run([py, "-c", code, path], capture_output=True, text=True,
                         preexec_fn=drop, timeout=20)
    return out.stdout.strip() or out.stderr.strip()


@case
def case_socket_access(binary, scratch):
    """libmilter trusts whoever connects (Debian 12's 8.17.1.9 reads past a
    macro packet with an odd number of strings), so only the MTA may: the
    unix socket is created by the service user, group postfix, mode 0660;
    an unprivileged local user gets EACCES; the postfix user connects. A
    symlink planted where the socket goes is refused and its target left
    alone. `sendguard -t` warns about inet: and about a world mode."""
    r = Run(binary, scratch, one_limit_config(100000, "tempfail")).start()
    path = r.sg.socket[5:]
    st = os.lstat(path)
    import stat as st_mod
    check(st_mod.S_ISSOCK(st.st_mode), f"{path} is not a socket")
    check(st_mod.S_IMODE(st.st_mode) == 0o660, f"socket mode {oct(st_mod.S_IMODE(st.st_mode))}")
    check(st.st_uid == h.pwd.getpwnam("nobody").pw_uid, f"socket owner uid {st.st_uid}")
    check(st.st_gid == h.grp.getgrnam("postfix").gr_gid, f"socket group gid {st.st_gid}")
    # nobody owns the socket itself (the service user here): the attacker
    # is another local user
    attacker = "daemon"
    got = _connect_as(attacker, path)
    check(got == "EACCES", f"{attacker} connecting to the milter socket: {got}")
    got = _connect_as("postfix", path)
    check(got == "ok", f"postfix connecting to the milter socket: {got}")
    r.finish()

    # a symlink where the socket goes, pointing at a root-only file
    victim = scratch.file("victim")
    with open(victim, "w") as f:
        f.write("root only\n")
    os.chmod(victim, 0o600)
    os.symlink(victim, path)
    sg2 = h.Sendguard(binary, scratch.sub("sendguard"), one_limit_config(10, "tempfail"))
    try:
        sg2.start(timeout=5)
        started = True
    except h.HarnessError:
        started = False
    sg2.stop()
    vs = os.stat(victim)
    check(not started, "sendguard started over a symlink planted at its socket path")
    check(vs.st_uid == 0 and st_mod.S_IMODE(vs.st_mode) == 0o600,
          f"the symlink's target changed: uid {vs.st_uid} mode {oct(st_mod.S_IMODE(vs.st_mode))}")
    check(open(victim).read() == "root only\n", "the symlink's target was written")
    check(any("is not a socket" in ln for ln in sg2.log_lines()), h.tail(sg2.logfile))

    # sendguard -t: warnings, exit 0
    for cfg, want in ((lambda s: h.sendguard_config("inet:8899@127.0.0.1", [h.limit("h", "1h", 5, "tempfail")]),
                       "any local user can connect"),
                      (lambda s: h.sendguard_config(s, [h.limit("h", "1h", 5, "tempfail")],
                                                    milter={"socket": s, "socket_mode": "0666"}),
                       "lets every local user connect")):
        res = sg2.check_config(cfg)
        check(res.returncode == 0, f"sendguard -t: {res.returncode} {res.stderr}")
        check(want in res.stderr, f"sendguard -t should warn '{want}': {res.stderr!r}")


@case
def case_pidfile(binary, scratch):
    """-p PIDFILE: written after the drop by the service user; SIGHUP and
    SIGUSR1 reload (the first configuration's snapshot is freed) and the
    pidfile is still removed at the stop, with ASan silent. A symlink
    planted at the pidfile path is not followed."""
    piddir = scratch.sub("run", owner="nobody")
    pidfile = os.path.join(piddir, "sendguard.pid")
    r = Run(binary, scratch, one_limit_config(100000, "tempfail"))
    r.sg.extra_args = ["-p", pidfile]
    r.start()
    r.sg.wait_log(r"listening on", timeout=30)   # the pidfile comes after the socket
    with open(pidfile) as f:
        check(f.read().strip() == str(r.sg.pid), "pidfile content")
    check(os.stat(pidfile).st_uid == h.pwd.getpwnam("nobody").pw_uid, "pidfile not written by the user")
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGHUP):
        mark = r.sg.log_size()
        r.sg.signal(sig)
        r.sg.wait_log(r"reloaded ", since=mark, timeout=10)
    check(r.sg.alive(), "sendguard stopped on SIGHUP: it must reload")
    r.lua("accept.lua", count=2)
    r.expected = ["accept"] * 2
    r.check_decisions()
    r.finish()
    check(not os.path.exists(pidfile), "pidfile left behind after the stop")

    victim = scratch.file("victim-pid")
    with open(victim, "w") as f:
        f.write("keep me\n")
    os.symlink(victim, pidfile)
    r2 = Run(binary, scratch, one_limit_config(10, "tempfail"))
    r2.sg.extra_args = ["-p", pidfile]
    try:
        r2.sg.start(timeout=5)
        started = r2.sg.alive()
    except h.HarnessError:
        started = False
    h.wait_until(lambda: not r2.sg.alive(), 10, "sendguard to refuse the planted pidfile")
    r2.sg.stop()
    check(not started or not r2.sg.alive(), "sendguard kept running over a planted pidfile symlink")
    check(open(victim).read() == "keep me\n", "the pidfile symlink's target was truncated")
    check(os.path.islink(pidfile), "the planted symlink should be left as it is")


@case
def case_observe(binary, scratch):
    """mode = "observe": over the cap the decision is logged as enforcement
    would (action=tempfail observe=1) but the MTA is told to continue; a
    reload to "enforce" refuses the next one, counted from the same
    totals (observed messages were charged)."""
    cfg = lambda mode: (lambda sock: h.sendguard_config(
        sock, [h.limit("hourly", "1h", 2, "tempfail")], mode=mode))
    r = Run(binary, scratch, cfg("observe")).start()
    c = r.client()
    c.negotiate()
    c.connect("client.example", "192.0.2.9")
    for i in range(4):
        res = c.message("<obs@example.com>", ["<r@example.net>"], mail_macros={"i": f"OBS{i}"},
                        eom_macros={"i": f"OBS{i}"})
        check(res.verdict == "accept", f"observe mode, message {i}: {res}")
    d = r.decisions(4)
    check([x.get("action") for x in d] == ["accept", "accept", "tempfail", "tempfail"],
          [x["_line"] for x in d])
    check([x.get("observe") for x in d] == [None, None, "1", "1"], [x["_line"] for x in d])
    check([x.get("used") for x in d[2:]] == ["2", "3"], [x["_line"] for x in d])
    r.sg.reload(cfg("enforce"), expect=r"reloaded ")
    res = c.message("<obs@example.com>", ["<r@example.net>"], mail_macros={"i": "OBS9"},
                    eom_macros={"i": "OBS9"})
    check(res.verdict == "tempfail", f"after the reload to enforce: {res}")
    c.quit()
    d = r.decisions(5)
    check(d[-1].get("action") == "tempfail" and d[-1].get("observe") is None
          and d[-1].get("used") == "4", d[-1]["_line"])
    r.finish()


@case
def case_macros_missing(binary, scratch):
    """An MTA that sends neither i nor {auth_authen}: decisions log qid=-,
    the identity is the envelope sender, "the MTA sends no {i} macro" is
    logged once (not per message), and after 100 messages without a login
    "no {auth_authen} macro in 100 messages" once."""
    r = Run(binary, scratch, one_limit_config(100000, "tempfail")).start()
    c = r.client()
    c.negotiate()
    c.connect("client.example", "192.0.2.9")
    for i in range(101):
        res = c.message(f"<app{i % 3}@example.com>", ["<r@example.net>"])
        check(res.verdict == "accept", f"message {i}: {res}")
    c.quit()
    d = r.decisions(101)
    check({x.get("qid") for x in d} == {"-"}, {x.get("qid") for x in d})
    check({x.get("identity") for x in d} == {f"<app{k}@example.com>" for k in range(3)},
          {x.get("identity") for x in d})
    lines = r.sg.log_lines()
    noi = [ln for ln in lines if "the MTA sends no {i} macro" in ln]
    noauth = [ln for ln in lines if "no {auth_authen} macro in 100 messages" in ln]
    check(len(noi) == 1, f"{len(noi)} warnings about the missing i macro")
    check(len(noauth) == 1, f"{len(noauth)} warnings about the missing {{auth_authen}} macro")
    check("milter_end_of_data_macros = i" in noi[0] and "confMILTER_MACROS_EOM" in noi[0], noi[0])
    r.finish()


@case
def case_warn_bytes(binary, scratch):
    """A bytes cap through the daemon: the size counted is headers + body
    (the body step is kept when a limit caps bytes), warn_at logs warn=1 at
    warning level once in the window, and the message that would cross the
    cap is refused naming bytes."""
    cfg = lambda sock: h.sendguard_config(
        sock, [h.limit("hourly", "1h", 100, "tempfail", bytes=3000, warn_at=0.5)])
    r = Run(binary, scratch, cfg).start()
    c = r.client()
    _, _, steps = c.negotiate()
    check(not steps & mc.SMFIP["NOBODY"], "a bytes cap needs the body")
    c.connect("client.example", "192.0.2.9")
    got = []
    for i in range(4):
        res = c.message("<big@example.com>", ["<r@example.net>"], mail_macros={"i": f"B{i}"},
                        eom_macros={"i": f"B{i}"}, headers=[("Subject", "s")], body=b"x" * 1000)
        got.append(res.verdict)
    c.quit()
    check(got == ["accept", "accept", "tempfail", "tempfail"], got)
    d = r.decisions(4)
    sizes = [int(x["size"]) for x in d]
    check(all(1000 < z < 1100 for z in sizes), f"size must be headers + body: {sizes}")
    warns = [x for x in d if x.get("warn") == "1"]
    check(len(warns) == 1 and warns[0]["qid"] == "B1" and warns[0]["_prio"] == "warning",
          [x["_line"] for x in d])
    check(d[2].get("cap") == "3000" and int(d[2]["used"]) == sizes[0] + sizes[1], d[2]["_line"])
    refused = [ln for ln in r.sg.log_lines() if "B2" in ln]
    check(refused, "no line for B2")
    r.finish()


@case
def case_socket_rules(binary, scratch):
    """milter.socket_mode is the socket's mode from its creation (0600: even
    the MTA's group is refused); a live socket makes a second daemon refuse
    to start (the first keeps serving); a stale one (the daemon was killed)
    is removed at the next start."""
    cfg = lambda sock: h.sendguard_config(sock, [h.limit("h", "1h", 100, "tempfail")],
                                          milter={"socket": sock, "socket_mode": "0600"})
    r = Run(binary, scratch, cfg).start()
    path = r.sg.socket[5:]
    import stat as st_mod
    check(st_mod.S_IMODE(os.lstat(path).st_mode) == 0o600, oct(os.lstat(path).st_mode))
    check(_connect_as("postfix", path) == "EACCES", "postfix connected to a 0600 socket")
    second = h.Sendguard(binary, scratch.sub("second"), cfg, socket=r.sg.socket)
    try:
        second.start(timeout=5)
    except h.HarnessError:
        pass
    h.wait_until(lambda: not second.alive(), 10, "the second daemon to give up")
    check(second.proc.returncode == 69, f"second daemon exit status {second.proc.returncode}")
    check(any("another sendguard is listening" in ln for ln in second.log_lines()),
          h.tail(second.logfile))
    second.stop()
    r.lua("accept.lua", count=1)
    r.expected = ["accept"]
    r.check_decisions()
    r.sg.signal(signal.SIGKILL)
    h.wait_until(lambda: not r.sg.alive(), 10, "the killed daemon")
    check(os.path.exists(path), "a killed daemon leaves its socket behind")
    third = h.Sendguard(binary, scratch.sub("third"), cfg, socket=r.sg.socket).start()
    check(any("removed stale socket" in ln for ln in third.log_lines()), h.tail(third.logfile))
    check(third.stop() == 0, "third daemon exit status")


@case
def case_sigterm_decision(binary, scratch):
    """SIGTERM while a decision waits for Redis (redis-server stopped with
    SIGSTOP): the decision is answered first, then the daemon exits 0."""
    redis = h.RedisServer(scratch.sub("redis")).start()
    cfg = lambda sock: h.sendguard_config(
        sock, [h.limit("h", "1h", 100, "tempfail")],
        store={"backend": "redis", "on_error": "tempfail",
               "redis": {"host": "127.0.0.1", "port": redis.port, "command_timeout_ms": 8000}})
    r = Run(binary, scratch, cfg).start()
    c = r.client()
    c.negotiate()
    c.connect("client.example", "192.0.2.9")
    res = c.message("<t@example.com>", ["<r@example.net>"], mail_macros={"i": "T0"},
                    eom_macros={"i": "T0"})
    check(res.verdict == "accept", f"warm-up: {res}")
    import threading
    box = {}

    def send():
        try:
            box["res"] = c.message("<t@example.com>", ["<r@example.net>"],
                                   mail_macros={"i": "T1"}, eom_macros={"i": "T1"})
        except Exception as e:          # noqa: BLE001 - reported below
            box["err"] = e
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        t = threading.Thread(target=send)
        t.start()
        time.sleep(1.0)                 # the decision is now waiting for Redis
        check("res" not in box, "the decision did not wait for the stopped Redis")
        r.sg.signal(signal.SIGTERM)
        time.sleep(1.0)
        check(r.sg.alive(), "sendguard exited with a decision in progress")
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    t.join(20)
    check(box.get("res") is not None and box["res"].verdict == "accept",
          f"the decision in progress was not answered: {box}")
    h.wait_until(lambda: not r.sg.alive(), 20, "sendguard to stop after the decision")
    rc = r.sg.stop()
    check(rc == 0, f"exit status {rc}")
    r.check_log()
    check([x.get("qid") for x in r.sg.decisions()] == ["T0", "T1"], [x["_line"] for x in r.sg.decisions()])
    redis.stop()


EXPECTED_STEPS = ["NOHELO", "NOUNKNOWN", "NODATA", "NOEOH", "NR_CONN", "NR_MAIL", "NR_RCPT",
                  "NR_HDR", "NR_BODY"]


@case
def case_negotiate(binary, scratch):
    """What sendguard asks for: quarantine, the steps it does not need
    skipped, no replies for the ones it only records; and with an MTA that
    offers nothing but the basics, it still decides."""
    r = Run(binary, scratch, one_limit_config(1, "hold")).start()
    c = r.client()
    vers, actions, steps = c.negotiate()
    names = mc.flag_names(steps, mc.SMFIP)
    h.log(f"negotiated version {vers}, actions {mc.flag_names(actions, mc.SMFIF)}, steps {names}")
    check(actions & mc.SMFIF["QUARANTINE"], "quarantine action not requested")
    missing = [s for s in EXPECTED_STEPS if s not in names]
    check(not missing, f"expected steps {missing} in the negotiation, got {names}")
    check(not steps & (mc.SMFIP["NOMAIL"] | mc.SMFIP["NORCPT"] | mc.SMFIP["NOCONNECT"]),
          f"sendguard must see connect, MAIL and RCPT: {names}")
    c.connect("client.example", "192.0.2.9")
    res = c.message("<alice@example.com>", ["<r@example.net>"], mail_macros={"i": "N1"},
                    eom_macros={"i": "N1"})
    check(res.verdict == "accept", res)
    c.quit()
    # an MTA that offers no quarantine action and no NR_*/NO* steps but the
    # basic ones (like a Sendmail without quarantine support)
    c = r.client()
    vers, actions, steps = c.negotiate(version=6, actions=0x1F, steps=0x7F)
    c.connect("client.example", "192.0.2.9")
    c.helo()
    res = c.message("<alice@example.com>", ["<r@example.net>"], mail_macros={"i": "N2"},
                    eom_macros={"i": "N2"}, headers=[("From", "alice@example.com")])
    check(res.verdict == "tempfail", f"hold without quarantine must fall back to tempfail: {res}")
    c.quit()
    r.expected = ["accept", "tempfail"]
    r.check_decisions()
    r.finish()


@case
def case_negotiate_tcp(binary, scratch):
    """On a TCP socket sendguard answers the DATA step (no NODATA/NR_DATA):
    Postfix writes the envelope, then headers and end of message, without
    TCP_NODELAY; a reply in between carries the ACK the second write would
    otherwise wait ~40 ms for (delayed ACK). On a unix socket it skips it."""
    r = Run(binary, scratch, one_limit_config(5, "hold"), socket="inet").start()
    c = r.client()
    vers, actions, steps = c.negotiate()
    names = mc.flag_names(steps, mc.SMFIP)
    h.log(f"TCP: negotiated steps {names}")
    check("NODATA" not in names and "NR_DATA" not in names,
          f"over TCP the DATA step must be answered: {names}")
    check("NR_MAIL" in names and "NR_RCPT" in names and "NOHELO" in names,
          f"the other steps stay negotiated away: {names}")
    c.connect("client.example", "192.0.2.9")
    res = c.message("<alice@example.com>", ["<r@example.net>"], mail_macros={"i": "T1"},
                    eom_macros={"i": "T1"})
    check(res.verdict == "accept", res)
    c.quit()
    r.expected = ["accept"]
    r.check_decisions()
    r.finish()


# --------------------------------------------------------------------------
def run_case(name, binary):
    scratch = h.Scratch(f"sg-milter-{name}-")
    ok = False
    t0 = time.monotonic()
    h.arm_timeout()
    try:
        CASES[name](binary, scratch)
        ok = True
    except Exception:
        traceback.print_exc()
    finally:
        signal.alarm(0)
        h.stop_everything()
        scratch.finish(ok)
    print(f"milter_{name}: {'PASS' if ok else 'FAIL'} ({time.monotonic() - t0:.1f}s)", flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.environ.get("SG_SENDGUARD") or h.sendguard_binary())
    ap.add_argument("--case", action="append", default=[])
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    if a.list:
        for k, fn in CASES.items():
            print(f"{k:14} {fn.__doc__.strip().splitlines()[0]}")
        return 0
    names = list(CASES) if a.all else a.case
    if not names:
        ap.error("--case NAME or --all")
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; --list shows them")
    if not os.access(a.binary, os.X_OK):
        print(f"FAIL: sendguard binary not found or not executable: {a.binary}", file=sys.stderr)
        return 1
    results = [run_case(n, a.binary) for n in names]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
