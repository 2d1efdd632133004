#!/usr/bin/env python3
"""
test_priv - issue 10 (least privilege), the attacks that need the real
binaries: the root release helper takes nothing but queue ids (the client
is nobody); the daemon, running as nobody, refuses a queue id with spaces
or newlines from the {i} macro (and from the store) and logs it, and
releases the good ones through the helper; a config file others can write
is refused by sendguard and sendguardctl; the shipped unit's
`systemd-analyze security --offline=yes` exposure is at most 3.0.

Needs root (the helper, -u nobody), redis-server, python3, systemd-analyze.
A missing tool FAILS the test.
"""
import grp
import os
import pwd
import re
import socket
import stat
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("SG_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
sys.path.insert(0, os.path.join(SRC, "tests", "milter"))
sys.path.insert(0, os.path.join(SRC, "tests", "block"))

import harness  # noqa: E402
import milterclient as mc  # noqa: E402
from blockenv import ReleaseHelper, held_key  # noqa: E402
from harness import HarnessError, LOOPBACK, wait_until  # noqa: E402

SENDGUARD = os.environ.get("SG_SENDGUARD", "")
CTL = os.environ.get("SG_SENDGUARDCTL", "")
USER = "nobody"
ACCOUNT = "sales@example.com"

RECORDER = """#!/bin/sh
# release_command of these tests: what it was given, as it was given
cat >> {out}
"""


def talk_as(user, path, payload):
    """In a child that became `user` (no supplementary group): connect to the
    helper at path, send payload, read its answer. Returns the answer, or
    'CONNECT-ERROR errno'."""
    pw = pwd.getpwnam(user)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(20)
            try:
                s.connect(path)
            except OSError as e:
                os.write(w, f"CONNECT-ERROR {e.errno}".encode())
                os._exit(0)
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            while True:
                b = s.recv(4096)
                if not b:
                    break
                os.write(w, b)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(w)
    data = b""
    while True:
        b = os.read(r, 4096)
        if not b:
            break
        data += b
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise AssertionError(f"client as {user} failed (status {status})")
    return data.decode()


def nobody_ids():
    pw = pwd.getpwnam(USER)
    return pw.pw_uid, pw.pw_gid, grp.getgrgid(pw.pw_gid).gr_name


class Priv(unittest.TestCase):
    def setUp(self):
        harness.require_root("the privilege tests (helper as root, daemon as nobody)")
        for b in (SENDGUARD, CTL):
            if not b or not os.access(b, os.X_OK):
                raise HarnessError(f"binary not found or not executable: {b!r}")
        harness.arm_timeout()
        self.scratch = harness.Scratch(prefix="sg-priv-")
        self.ok = False
        self.parts = []

    def tearDown(self):
        for p in reversed(self.parts):
            try:
                p.stop()
            except Exception as e:
                harness.log(f"stopping {p!r}: {e}")
        self.scratch.finish(self.ok)

    # -- helpers -------------------------------------------------------------
    def recorder(self):
        out = self.scratch.file("released.txt")
        sh = self.scratch.file("record.sh")
        with open(sh, "w") as f:
            f.write(RECORDER.format(out=out))
        os.chmod(sh, 0o755)
        return sh, out

    def helper(self, config_path):
        d = self.scratch.sub("release", mode=0o755)
        h = ReleaseHelper(CTL, config_path, d, nobody_ids()[2], harness_env())
        h.start()
        self.parts.append(h)
        return h

    def as_nobody(self, path, payload, user=USER):
        return talk_as(user, path, payload)

    # -- the release helper ----------------------------------------------------
    def test_helper_only_queue_ids(self):
        sh, out = self.recorder()
        conf = self.scratch.file("helper.conf")
        with open(conf, "w") as f:
            f.write(harness.sendguard_config("inet:1@127.0.0.1", [harness.limit()],
                                             release_command=[sh]))
        h = self.helper(conf)
        st = os.stat(h.path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        self.assertEqual((st.st_uid, st.st_gid), (0, nobody_ids()[1]))
        good = b"4F2A1C3\n0123456789ABCDEF\n4VgRkq0BT1zJ9xx\nABCDEFGH12\n"
        self.assertEqual(self.as_nobody(h.path, good).strip(), "OK 4")
        wait_until(lambda: os.path.exists(out), 10, "release_command ran")
        with open(out, "rb") as f:
            self.assertEqual(f.read(), good)
        bad = [b"4F2A1C3 -H ALL\n", b"ALL\n", b"-H\n", b"4F2A1C3\n../../x\n",
               b"4F2A1C3\nrm -rf /\n", b"ABCDE\n", b"abcdef\n", b"4F2A1C3", b"\n",
               b"4F2A1C3\r\n", b"A" * 33 + b"\n", b"4F2A1C3\x00X\n"]
        for payload in bad:
            mark = len(h.log_text())
            reply = self.as_nobody(h.path, payload)
            self.assertTrue(reply.startswith("ERR refused"), f"{payload!r} -> {reply!r}")
            wait_until(lambda: "refused" in h.log_text()[mark:], 5, f"refusal of {payload!r} logged")
        with open(out, "rb") as f:
            self.assertEqual(f.read(), good, "nothing run for a refused request")
        # socket activation (sendguard-release@.service): the connection is stdin/stdout
        for payload, want in ((b"0123456789AB\n", "OK 1"), (b"4F2A1C3 ALL\n", "ERR refused")):
            a, b = socket.socketpair()
            p = subprocess.Popen([CTL, "-c", conf, "release-helper"], stdin=b, stdout=b,
                                 stderr=subprocess.PIPE, env=harness_env())
            b.close()
            a.sendall(payload)
            a.shutdown(socket.SHUT_WR)
            a.settimeout(30)
            reply = b""
            while True:
                chunk = a.recv(4096)
                if not chunk:
                    break
                reply += chunk
            a.close()
            self.assertEqual(p.wait(30), 0 if want.startswith("OK") else 1)
            p.stderr.close()
            self.assertTrue(reply.decode().startswith(want), reply)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), good + b"0123456789AB\n")
        # a user outside the socket's group cannot even connect
        other = next((u for u in ("daemon", "bin", "sys") if _exists(u)), None)
        self.assertIsNotNone(other, "a second unprivileged user (daemon/bin/sys)")
        self.assertIn("CONNECT-ERROR 13", self.as_nobody(h.path, good, user=other))
        self.ok = True

    # -- the daemon, unprivileged, with queue ids from the MTA -------------------
    def test_daemon_queue_ids(self):
        harness.require_tool("redis-server", "redis-server")
        sh, out = self.recorder()
        redis = harness.RedisServer(self.scratch.sub("redis"))
        redis.start()
        self.parts.append(redis)
        sock = {}
        sg = harness.Sendguard(SENDGUARD, self.scratch.sub("sendguard"), lambda s: sock.get("t", ""),
                               user=USER)
        rel_sock = os.path.join(self.scratch.path, "release", "release.sock")
        sock["t"] = harness.sendguard_config(
            sg.socket, [harness.limit("hourly", "1h", 1000, "tempfail")],
            accounts=[{"address": ACCOUNT, "offer": "emailpro", "service": "pro1",
                       "senders": ["*@example.com"]}],
            store={"backend": "redis", "redis": {"host": LOOPBACK, "port": redis.port}},
            relay_name="relay1", on_block="hold", release_command=[sh], release_helper=rel_sock)
        sg.write_config(sg.render(lambda s: sock["t"]))
        sg.env = harness_env(sg.env)
        h = self.helper(sg.config_path)
        self.assertEqual(h.path, rel_sock)
        sg.start()
        self.parts.append(sg)
        with open(f"/proc/{sg.pid}/status") as f:
            uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)", f.read(), re.M).groups()
        self.assertEqual({int(u) for u in uids}, {nobody_ids()[0]}, "the daemon runs as nobody")
        p = ctl(sg.config_path, "lockdown", ACCOUNT)
        self.assertEqual(p.returncode, 0, p.stderr)

        qids = {"good": "4F2A1C3", "space": "4F2A1C3 -H ALL", "newline": "ABCDEF1\nBADBAD1",
                "dash": "-H", "short": "ABC"}
        for name, qid in qids.items():
            c = mc.MilterClient(sg.socket)
            try:
                c.negotiate()
                c.connect("client.example", "192.0.2.7")
                r = c.message("<app@example.com>", ["<rcpt@example.net>"],
                              mail_macros={"i": qid}, eom_macros={"i": qid})
            finally:
                c.close()
            self.assertEqual(r.verdict, "hold", f"{name}: still held (nothing lost)")
        key = held_key(ACCOUNT)
        wait_until(lambda: redis.command("SMEMBERS", key) == ["4F2A1C3"], 10,
                   "only the good queue id recorded")
        log = "\n".join(sg.log_lines())
        for name in ("space", "newline", "dash", "short"):
            esc = qids[name].replace("\n", "\\x0a").replace(" ", "\\x20")
            self.assertRegex(log, r"refusing to record qid=\S*%s" % re.escape(esc.split("\\")[0]),
                             f"{name} refused and logged")
        self.assertEqual(len(re.findall(r"refusing to record qid=", log)), 4, log)
        # someone with Redis access slips a bad id in: dropped, logged, not released
        redis.command("SADD", key, "X; rm -rf /")
        p = ctl(sg.config_path, "lockdown", ACCOUNT, "--off")
        self.assertEqual(p.returncode, 0, p.stderr)
        wait_until(lambda: os.path.exists(out), 15, "release through the helper")
        wait_until(lambda: redis.command("SMEMBERS", key) in ([], None), 10, "held list emptied")
        with open(out) as f:
            self.assertEqual(f.read(), "4F2A1C3\n")
        sg.wait_log(r"which is not a queue id: dropped", timeout=5)
        sg.wait_log(r"released account=<%s> relay=relay1 messages=1" % re.escape(ACCOUNT))
        self.assertIn("released messages=1", h.log_text())
        self.ok = True

    # -- no credentials from the working directory -------------------------------
    def test_daemon_cwd_ovh_conf(self):
        """A local user who owns the directory the daemon is started from plants
        ./ovh.conf (0600, theirs) pointing the API at their own listener; with
        ovh.credentials unset, the daemon must not read it."""
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.bind((LOOPBACK, 0))
        lst.listen(16)
        lst.setblocking(False)
        self.parts.append(_Closer(lst))
        port = lst.getsockname()[1]
        sg = harness.Sendguard(SENDGUARD, self.scratch.sub("sendguard"), "", user=USER)
        uid, gid, _ = nobody_ids()
        planted = os.path.join(sg.workdir, "ovh.conf")
        ep = f"http://{LOOPBACK}:{port}/1.0"
        with open(planted, "w") as f:
            f.write(f"[default]\nendpoint={ep}\n[{ep}]\napplication_key=evil\n"
                    "application_secret=evil-secret\nconsumer_key=evil-ck\n")
        os.chmod(planted, 0o600)
        os.chown(planted, uid, gid)
        home = self.scratch.sub("home", mode=0o700)
        sg.write_config(harness.sendguard_config(
            sg.socket, [harness.limit()],
            accounts=[{"address": ACCOUNT, "offer": "emailpro", "service": "pro1",
                       "senders": ["*@example.com"]}],
            ovh={"poll_interval": "5s", "timeout": "2s"}))
        sg.env = harness_env(sg.env)
        sg.env["HOME"] = home
        sg.start()                      # cwd: sg.workdir, where ovh.conf was planted
        self.parts.append(sg)
        sg.wait_log(r"OVHcloud|ovh", timeout=10)
        time.sleep(2)
        try:
            conn, _ = lst.accept()
            conn.close()
            self.fail("the daemon read ./ovh.conf and called the endpoint it names")
        except BlockingIOError:
            pass
        self.assertNotIn("evil", "\n".join(sg.log_lines()))
        self.ok = True

    # -- config files --------------------------------------------------------
    def test_config_refused(self):
        d = self.scratch.sub("conf", mode=0o755)
        path = os.path.join(d, "sendguard.conf")
        with open(path, "w") as f:
            f.write(harness.sendguard_config("inet:1@127.0.0.1", [harness.limit()],
                                             alert={"command": ["/bin/true"]}))
        os.chmod(path, 0o666)
        for cmd in ([SENDGUARD, "-t", "-c", path], [CTL, "-c", path, "check"]):
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 78, p)
            self.assertIn(f"{path}: mode 0666 lets other users change the commands sendguard "
                          f"runs; run: chmod go-w {path}", p.stderr)
        os.chmod(path, 0o620)
        p = subprocess.run([CTL, "-c", path, "check"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 78, p)
        # owned by nobody: root refuses it (alert.command would run as root) ...
        os.chmod(path, 0o644)
        uid, gid, _ = nobody_ids()
        os.chown(path, uid, gid)
        p = subprocess.run([CTL, "-c", path, "check"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 78, p)
        self.assertIn(f"{path}: owned by uid {uid}, and root would run the commands it names; "
                      f"run: chown root {path}", p.stderr)
        # ... and nobody may use its own file
        p = subprocess.run([CTL, "-c", path, "check"], capture_output=True, text=True,
                           user=uid, group=gid, extra_groups=[])
        self.assertEqual(p.returncode, 0, p)
        # root's file, but in a directory others can write: refused too
        os.chown(path, 0, 0)
        os.chmod(d, 0o777)
        p = subprocess.run([SENDGUARD, "-t", "-c", path], capture_output=True, text=True)
        self.assertEqual(p.returncode, 78, p)
        self.assertIn(f"{d}: directory mode 0777 lets other users replace", p.stderr)
        os.chmod(d, 0o755)
        p = subprocess.run([SENDGUARD, "-t", "-c", path], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p)
        # an @include others can write: refused like the file itself
        inc = os.path.join(d, "alert.conf")
        with open(inc, "w") as f:
            f.write('alert = { command = [ "/bin/true" ]; };\n')
        os.chmod(inc, 0o666)
        with open(path, "w") as f:
            f.write(harness.sendguard_config("inet:1@127.0.0.1", [harness.limit()]) +
                    '@include "alert.conf"\n')
        p = subprocess.run([SENDGUARD, "-t", "-c", path], capture_output=True, text=True)
        self.assertEqual(p.returncode, 78, p)
        self.assertIn(f"{inc}: mode 0666 lets other users change the commands", p.stderr)
        os.chmod(inc, 0o644)
        p = subprocess.run([SENDGUARD, "-t", "-c", path], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p)
        self.ok = True

    # -- the unit ------------------------------------------------------------
    def test_unit_exposure(self):
        harness.require_tool("systemd-analyze", "systemd")
        unit = os.path.join(SRC, "contrib", "systemd", "sendguard.service")
        p = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit],
                           capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", p.stdout + p.stderr)
        self.assertIsNotNone(m, p.stdout + p.stderr)
        harness.log(f"systemd-analyze security: {m.group(1)}")
        self.assertLessEqual(float(m.group(1)), 3.0, p.stdout)
        for line in open(unit):
            if line.startswith("ReadWritePaths="):
                for path in line.split("=", 1)[1].split():
                    self.assertTrue(path.startswith("-"), path)
                    self.assertNotIn(path.lstrip("-").rstrip("/"), ("/etc/postfix", "/etc"))
        self.ok = True


class _Closer:
    def __init__(self, sock):
        self.sock = sock

    def stop(self):
        self.sock.close()


def _exists(user):
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


def harness_env(base=None):
    env = {k: v for k, v in (base or os.environ).items() if not k.startswith("OVH_")}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")
    return env


def ctl(config, *args):
    return subprocess.run([CTL, "-c", config, *args], capture_output=True, text=True, timeout=60,
                          env=harness_env())


if __name__ == "__main__":
    unittest.main()
