"""
sendmail_harness - a throwaway Sendmail 8.17 (Debian 12's) in front of sendguard.

Debian's sendmail-bin conflicts with the Postfix the other tests use, so it is
never installed: `contrib/sg-setup test` downloads sendmail-bin and
sendmail-cf (`apt-get download`) into $SG_SENDMAIL_DEBS (the build tree's
sendmail-debs/), and every test unpacks them (`dpkg-deb -x`, 0.1 s) into its
own scratch directory. Its runtime libraries (libwrap0, liblockfile1...), m4
and saslpasswd2 (sasl2-bin) are ordinary test dependencies of sg-setup.

Every sendmail command (daemon, mailq, queue runs, quarantine release) runs
through <run>/sm, which enters a private mount namespace (`unshare -m`, as
root: the mounts are invisible outside it) where
  - <run>/hosts replaces /etc/hosts: the machine's hostname resolves to a
    dotted name (else every sendmail start sleeps 60 s) and the smart host
    name sink.example.test to 127.0.0.1;
  - <run>/nsswitch.conf ("hosts: files"): no DNS at all;
  - <run>/sasl replaces /usr/lib/sasl2 (and /etc/sasl2): Sendmail.conf, the
    Cyrus SASL config of service "Sendmail" (sasldb in <run>); sendmail
    scrubs its environment, so SASL_CONF_PATH cannot be used;
  - <run>/dev replaces /dev: null, zero, random, urandom bound from the real
    /dev, and `log`, a datagram socket read by SyslogSink, so Sendmail's own
    log lines land in <run>/maillog (this machine has no syslog daemon).
Everything listens on 127.0.0.1; what is started is stopped (registered with
harness.stop_everything) and the scratch directory removed when a test passes.
A missing package or download raises HarnessError: the test FAILS, never skips.
"""
from __future__ import annotations

import glob
import os
import pwd
import re
import signal
import socket
import subprocess
import threading
import time

import harness
from harness import HarnessError, LOOPBACK, log, require_tool, tail, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("SG_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
MC_TEMPLATE = os.path.join(HERE, "sendmail.mc.in")
SUBMIT_TEMPLATE = os.path.join(HERE, "submit.mc.in")
SNIPPET = os.path.join(SRC, "contrib", "sendmail", "sendguard.mc")
RELEASE_SCRIPT = os.path.join(SRC, "contrib", "sendmail", "sendguard-release-sendmail")
SNIPPET_SOCKET = "local:/run/sendguard/sendguard.sock"
PACKAGES = ("sendmail-bin", "sendmail-cf")
REALM = "mta.example.test"

SM_WRAPPER = r"""#!/bin/sh
# Written by tests/e2e/sendmail_harness.py: run the unpacked sendmail with
# this test's {cf} inside a private mount namespace (see there).
exec unshare -m -- sh -c '
run=$0 sm=$1; shift
mount --bind "$run/hosts" /etc/hosts &&
mount --bind "$run/nsswitch.conf" /etc/nsswitch.conf &&
mount --bind "$run/sasl" /usr/lib/sasl2 &&
{ [ ! -d /etc/sasl2 ] || mount --bind "$run/sasl" /etc/sasl2; } &&
for n in null zero random urandom; do mount --bind "/dev/$n" "$run/dev/$n" || exit 71; done &&
mount --bind "$run/dev" /dev &&
exec "$sm" {opts} "$@"' '{run}' '{sendmail}' "$@"
"""


def sendmail_debs():
    """The downloaded .deb files; HarnessError naming the fix when absent."""
    d = os.environ.get("SG_SENDMAIL_DEBS", "")
    found = []
    for p in PACKAGES:
        hits = sorted(glob.glob(os.path.join(d, f"{p}_*.deb"))) if d else []
        if not hits:
            raise HarnessError(
                f"Debian's {p} package is not in SG_SENDMAIL_DEBS={d!r}: run `contrib/sg-setup test`"
                f" (or `contrib/sg-setup sendmail-debs DIR` and set SG_SENDMAIL_DEBS=DIR)")
        found.append(hits[-1])
    return found


class SyslogSink:
    """A unix datagram socket standing in for /dev/log: every message is
    appended, one a line, to a file."""

    def __init__(self, path, out):
        self.path, self.out = path, out
        self.sock = None
        self.thread = None

    def start(self):
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._loop, name="syslog-sink", daemon=True)
        self.thread.start()
        harness._register(self)
        return self

    def _loop(self):
        with open(self.out, "ab", buffering=0) as f:
            while self.running:
                try:
                    data = self.sock.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                f.write(data.rstrip(b"\0\n") + b"\n")

    def stop(self):
        harness._unregister(self)
        self.running = False
        if self.thread is not None:
            self.thread.join(2)
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Sendmail:
    """Debian 12's Sendmail, unpacked into workdir/root, state in workdir/run:
    a daemon on 127.0.0.1:port relaying everything to the smart host
    127.0.0.1:relay_port, with sendguard as its milter.

    milter: libmilter socket spec of sendguard (None: no milter at all).
    snippet: the sendguard lines of sendmail.mc (default: the text of
    contrib/sendmail/sendguard.mc), with its socket replaced by `milter`.
    extra_mc: more sendmail.mc lines. users: {login: password} in the sasldb."""

    def __init__(self, workdir, relay_port, milter=None, port=None, snippet=None, extra_mc="",
                 users=None):
        self.workdir = workdir
        self.root = os.path.join(workdir, "root")
        self.run = os.path.join(workdir, "run")
        self.queue_dir = os.path.join(self.run, "mqueue")
        self.maillog = os.path.join(self.run, "maillog")
        self.sm = os.path.join(self.run, "sm")            # the MTA: sendmail -C sendmail.cf
        self.submit_cmd = os.path.join(self.run, "submit")  # the MSP: sendmail -Ac -C submit.cf
        self.binary = os.path.join(self.root, "usr", "libexec", "sendmail", "sendmail")
        self.relay_port = relay_port
        self.port = self.smtpd_port = port or harness.free_port()
        self.milter = milter
        self.snippet = snippet
        self.extra_mc = extra_mc
        self.users = dict(users or {})
        self.proc = None
        self.syslog = None
        self.started = False

    # -- installation and configuration ------------------------------------
    def unpack(self):
        dpkg_deb = require_tool("dpkg-deb", "dpkg")
        os.makedirs(self.root, exist_ok=True)
        for deb in sendmail_debs():
            r = subprocess.run([dpkg_deb, "-x", deb, self.root], capture_output=True, text=True)
            if r.returncode != 0:
                raise HarnessError(f"dpkg-deb -x {deb}: {r.stderr}")
        if not os.access(self.binary, os.X_OK):
            raise HarnessError(f"no sendmail binary in the unpacked packages: {self.binary}")
        os.chmod(self.binary, 0o755)    # drop setgid smmsp: a group this machine may lack

    def milter_lines(self):
        text = self.snippet
        if text is None:
            with open(SNIPPET) as f:
                text = f.read()
        if self.milter is None:
            return "dnl (no milter)"
        if SNIPPET_SOCKET not in text:
            raise HarnessError(f"the sendguard snippet does not name {SNIPPET_SOCKET}: {text!r}")
        return text.replace(SNIPPET_SOCKET, "local:" + self.milter.split(":", 1)[1]
                            if self.milter.startswith(("unix:", "local:")) else self.milter)

    def write_config(self):
        run = self.run
        for d, mode in ((run, 0o755), (self.queue_dir, 0o700), (os.path.join(run, "sasl"), 0o755),
                        (os.path.join(run, "dev"), 0o755), (os.path.join(run, "clientmqueue"), 0o770)):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, mode)
        pw = pwd.getpwnam("nobody")             # the MSP's RunAsUser (it refuses root)
        os.chown(os.path.join(run, "clientmqueue"), pw.pw_uid, pw.pw_gid)
        host = socket.gethostname()
        files = {
            "hosts": f"127.0.0.1\tlocalhost\n127.0.0.1\t{REALM} {host}\n127.0.0.1\tsink.example.test\n",
            "service.switch": "hosts\tfiles\naliases\tfiles\n",
            "aliases": "postmaster: root\nMAILER-DAEMON: postmaster\n",
            "statistics": "", "local-host-names": "", "helpfile": "",
            "sasl/Sendmail.conf": ("pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
                                   f"mech_list: PLAIN LOGIN\nsasldb_path: {run}/sasldb2\n"),
        }
        with open("/etc/nsswitch.conf") as f:
            nss = re.sub(r"(?m)^hosts:.*\n?", "", f.read())
        files["nsswitch.conf"] = nss + ("" if nss.endswith("\n") or not nss else "\n") + "hosts: files\n"
        for name, text in files.items():
            with open(os.path.join(run, name), "w") as f:
                f.write(text)
        for n in ("null", "zero", "random", "urandom"):
            open(os.path.join(run, "dev", n), "w").close()
        for n, t in (("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                     ("stderr", "/proc/self/fd/2"), ("fd", "/proc/self/fd")):
            os.symlink(t, os.path.join(run, "dev", n))
        for name, template in (("sendmail", MC_TEMPLATE), ("submit", SUBMIT_TEMPLATE)):
            with open(template) as f:
                mc = f.read()
            for k, v in (("@RUN@", run), ("@SMPORT@", str(self.port)),
                         ("@SINKPORT@", str(self.relay_port)),
                         ("@SGMILTER@", self.milter_lines()), ("@EXTRA@", self.extra_mc)):
                mc = mc.replace(k, v)
            self.m4(mc, name)
        saslpasswd2 = require_tool("saslpasswd2", "sasl2-bin")
        for login, pw in self.users.items():
            r = subprocess.run([saslpasswd2, "-f", os.path.join(run, "sasldb2"), "-p", "-c",
                                "-u", REALM, login], input=pw, capture_output=True, text=True)
            if r.returncode != 0:
                raise HarnessError(f"saslpasswd2 {login}: {r.stderr}")
        if self.users:
            os.chmod(os.path.join(run, "sasldb2"), 0o600)
        for path, cf, opts in ((self.sm, "sendmail.cf", '-C "$run/sendmail.cf"'),
                               (self.submit_cmd, "submit.cf", '-Ac -C "$run/submit.cf"')):
            with open(path, "w") as f:
                f.write(SM_WRAPPER.replace("{run}", run).replace("{sendmail}", self.binary)
                        .replace("{cf}", cf).replace("{opts}", opts))
            os.chmod(path, 0o755)

    def m4(self, mc, name):
        """<run>/NAME.mc -> <run>/NAME.cf with the unpacked sendmail-cf."""
        mcpath = os.path.join(self.run, name + ".mc")
        with open(mcpath, "w") as f:
            f.write(mc)
        cfdir = os.path.join(self.root, "usr", "share", "sendmail", "cf")
        m4 = require_tool("m4", "m4")
        r = subprocess.run([m4, f"-D_CF_DIR_={cfdir}/", os.path.join(cfdir, "m4", "cf.m4"), mcpath],
                           capture_output=True, text=True)
        # cf.m4's own notices (the promiscuous_relay warning) are fine; an m4
        # warning (e.g. "excess arguments to builtin `define'") is a broken .mc
        if r.returncode != 0 or "m4:" in r.stderr or "ERROR" in r.stderr:
            raise HarnessError(f"m4 {name}.mc -> {r.returncode}: {r.stderr}")
        with open(os.path.join(self.run, name + ".cf"), "w") as f:
            f.write(r.stdout)

    def cf_option(self, name):
        """The value of `O name=value` in the generated sendmail.cf (None if absent)."""
        with open(os.path.join(self.run, "sendmail.cf")) as f:
            m = re.search(r"(?m)^O %s=(.*)$" % re.escape(name), f.read())
        return m.group(1) if m else None

    # -- commands ------------------------------------------------------------
    def cmd(self, *args, check=True, timeout=60, input=None):
        """Run `sendmail -C <cf> ARGS` in the namespace (text in, text out)."""
        r = subprocess.run([self.sm, *args], capture_output=True, text=True, timeout=timeout,
                           input=input)
        if check and r.returncode != 0:
            raise HarnessError(f"sendmail {' '.join(args)} -> {r.returncode}\nstdout: {r.stdout}\n"
                               f"stderr: {r.stderr}\nmaillog:\n{tail(self.maillog)}")
        return r

    def start(self, timeout=30):
        harness.require_root("Sendmail (unshare -m, mount --bind, the daemon)")
        for t, p in (("unshare", "util-linux"), ("mount", "mount")):
            require_tool(t, p)
        t0 = time.monotonic()
        self.unpack()
        self.write_config()
        self.syslog = SyslogSink(os.path.join(self.run, "dev", "log"), self.maillog).start()
        _ = self.cmd("-bi")            # newaliases: aliases.db
        harness._register(self)
        with open(os.path.join(self.run, "daemon.stderr"), "wb") as err:
            self.proc = subprocess.Popen([self.sm, "-bD", "-L", "sm-sg"], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True, preexec_fn=harness._child_setup)
        self.started = True

        def up():
            if self.proc.poll() is not None:
                raise HarnessError(f"sendmail exited ({self.proc.returncode}):\n"
                                   f"{tail(os.path.join(self.run, 'daemon.stderr'))}\n{tail(self.maillog)}")
            return harness.tcp_accepts(self.port)
        wait_until(up, timeout, f"sendmail on port {self.port}")
        log(f"sendmail up in {time.monotonic() - t0:.1f}s (pid {self.proc.pid}, port {self.port})")
        return self

    def own_pids(self):
        """Every process running this test's sendmail binary (daemon, SMTP
        server children, delivery and queue-run children)."""
        out = []
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    if os.readlink(f"/proc/{p}/exe") == self.binary:
                        out.append(int(p))
                except OSError:
                    pass
        return out

    def stop(self):
        harness._unregister(self)
        if self.started:
            self.started = False
            harness._kill_process(self.proc, 10)
            deadline = time.monotonic() + 10
            while self.own_pids() and time.monotonic() < deadline:
                for pid in self.own_pids():
                    try:
                        os.kill(pid, signal.SIGTERM if time.monotonic() < deadline - 5
                                else signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.1)
        if self.syslog is not None:
            self.syslog.stop()
            self.syslog = None

    def __repr__(self):
        return f"Sendmail(port={self.port}, run={self.run})"

    # -- queue ---------------------------------------------------------------
    def mailq(self, quarantined=False):
        """`mailq` (sendmail -bp), or `mailq -qQ` (the quarantine): a list of
        dicts {qid, sender, recipients, reason (the QUARANTINE: text or None)}."""
        r = self.cmd("-bp", *(("-qQ",) if quarantined else ()))
        return parse_mailq(r.stdout), r.stdout

    def queue_files(self):
        """Queue files on disk: {'qf': n (queued), 'hf': n (quarantined),
        'df': n (bodies), 'other': n}."""
        out = {"qf": 0, "hf": 0, "df": 0, "other": 0}
        for f in os.listdir(self.queue_dir):
            out[f[:2] if f[:2] in out else "other"] += 1
        return out

    def submit(self, sender, recipients, subject="local submission", msp=True, timeout=60):
        """A program's submission: `sendmail -i -f SENDER RCPT...` through the
        MSP (submit.cf, as Debian's /usr/sbin/sendmail does), or straight
        into the MTA binary with sendmail.cf (msp=False). Returns the
        CompletedProcess."""
        msg = harness.make_message(sender, recipients, subject)
        return subprocess.run([self.submit_cmd if msp else self.sm, "-i", "-f", sender, "--",
                               *recipients], input=msg, capture_output=True, timeout=timeout)

    def client_queue_files(self):
        return os.listdir(os.path.join(self.run, "clientmqueue"))

    maillog_text = harness.Postfix.maillog_text     # the whole of self.maillog, as text


_MAILQ_ENTRY = re.compile(r"^([A-Za-z0-9]{8,})[*X-]?\s+\d+\s")


def parse_mailq(text):
    entries = []
    for line in text.splitlines():
        m = _MAILQ_ENTRY.match(line)
        if m:
            sender = line.split()[-1]
            entries.append({"qid": m.group(1), "sender": sender, "recipients": [], "reason": None,
                            "status": None})
        elif entries and line[:1].isspace() and line.strip():
            s = line.strip()
            if s.startswith("QUARANTINE:"):
                entries[-1]["reason"] = s[len("QUARANTINE:"):].strip()
            elif s.startswith("(") and s.endswith(")"):
                entries[-1]["status"] = s[1:-1]
            elif s.startswith("Total requests") or "(1 request" in s or " requests)" in s:
                continue
            else:
                entries[-1]["recipients"].append(s)
    return entries


class SendmailEnv(harness.MailEnv):
    """smtp-sink + sendguard + Sendmail in one scratch directory: harness.MailEnv
    (start, stop, smtp, the sink and sendguard attributes) with a Sendmail as
    its MTA (.sendmail; .postfix is None)."""

    postfix = None

    def __init__(self, scratch, binary=None, config=None, socket="unix", user="nobody",
                 **sendmail_kw):
        self.sink_and_sendguard(scratch, binary, config, socket, user=user)
        self.sendmail = Sendmail(scratch.sub("sendmail"), self.sink.port,
                                 milter=self.sendguard.socket if self.sendguard else None,
                                 **sendmail_kw)
        self.mta = self.sendmail

    def release(self, qids, *extra_args):
        """Run contrib/sendmail/sendguard-release-sendmail -S <sm> with the
        queue ids on stdin, as sendguard's release_command would."""
        return subprocess.run([RELEASE_SCRIPT, "-S", self.sendmail.sm, *extra_args],
                              input="".join(q + "\n" for q in qids), capture_output=True,
                              text=True, timeout=120)

    def release_command(self):
        """release_command for sendguard.conf: the shipped script, told
        where this test's sendmail is."""
        return [RELEASE_SCRIPT, "-S", self.sendmail.sm]

    def settled(self, sink, held, timeout=30):
        """Wait until `sink` messages reached the sink and the queue holds
        exactly `held` quarantined messages and nothing else; return
        (sink count, quarantined mailq entries, queue files) as seen then."""
        def state():
            files = self.sendmail.queue_files()
            return (self.sink.count(), files["hf"], files["qf"])
        try:
            wait_until(lambda: state() == (sink, held, 0), timeout, "sink/queue counts",
                       interval=0.2)
            harness.wait_stable(state, 1.0, timeout, "sink/queue counts")
        except HarnessError:
            pass
        q, _ = self.sendmail.mailq(quarantined=True)
        return self.sink.count(), q, self.sendmail.queue_files()

    def diagnostics(self):
        parts = [f"sink count: {self.sink.count()}"]
        try:
            parts.append(f"queue files: {self.sendmail.queue_files()}")
            parts.append("--- mailq ---\n" + self.sendmail.mailq()[1])
            parts.append("--- mailq -qQ ---\n" + self.sendmail.mailq(True)[1])
        except Exception as e:
            parts.append(f"mailq: {e}")
        parts.append(f"--- sendmail maillog (tail) ---\n{tail(self.sendmail.maillog, 30)}")
        if self.sendguard:
            parts.append(f"--- sendguard log (tail) ---\n{tail(self.sendguard.logfile, 30)}")
        return "\n".join(parts)
