"""
harness - throwaway daemons for sendguard's milter and end-to-end tests.

Python 3 standard library only. Everything listens on 127.0.0.1 (or a unix
socket in a scratch directory) and everything started here is stopped at the
end, on success or failure (try/finally in the callers, plus an atexit and
SIGTERM safety net here). A scratch directory is removed when its test
passed and kept, with its path printed, when it failed.

Pieces, each usable on its own:
  Scratch        a temp dir under /tmp, traversable by the postfix user
  RedisServer    a real redis-server on a free loopback port (+ RESP client)
  Sendguard      the daemon under test: config text -> running, log parsed
  SmtpSink       a real smtp-sink with a message counter and dump files
  Postfix        a throwaway Postfix instance (own config and queue dirs)
  MailEnv        sink + sendguard + Postfix wired together
  smtp_send()    N messages through smtplib, one session each, codes kept
  smtp_source()  smtp-source load (stops at the first 4xx: not for counting)
  sendguard_config()/libconfig()  render sendguard.conf text

Needs root for Postfix (postfix -c DIR start) and smtp-sink -u postfix.
A missing tool raises HarnessError: the test FAILS, it is never skipped.
"""
from __future__ import annotations

import atexit
import email.utils
import json
import os
import grp
import pwd
import re
import shutil
import shlex
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

LOOPBACK = "127.0.0.1"
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class HarnessError(AssertionError):
    """Setup or environment failure. An AssertionError so unittest reports a FAIL."""


# --------------------------------------------------------------------------
# safety net: whatever was started is stopped at exit, even on SIGTERM
# --------------------------------------------------------------------------
_live = []          # objects with a .stop() method, most recent last
_live_lock = threading.Lock()


def _register(obj):
    with _live_lock:
        _live.append(obj)


def _unregister(obj):
    with _live_lock:
        if obj in _live:
            _live.remove(obj)


def stop_everything():
    """Stop every daemon still registered (newest first). Never raises."""
    while True:
        with _live_lock:
            if not _live:
                return
            obj = _live.pop()
        try:
            obj.stop()
        except Exception as e:  # pragma: no cover - best effort at exit
            print(f"harness: stopping {obj!r} failed: {e}", file=sys.stderr)


atexit.register(stop_everything)


def _on_sigterm(signum, frame):
    # ctest's timeout sends SIGTERM: turn it into a normal exit so atexit runs.
    raise SystemExit(128 + signum)


if threading.current_thread() is threading.main_thread():
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # pragma: no cover
        pass


class TestTimeout(HarnessError):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout(f"test exceeded its {os.environ.get('SG_TEST_TIMEOUT', 100)}s budget")


def arm_timeout(seconds=None):
    """Fail the running test by itself (SIGALRM -> TestTimeout) before
    ctest's TIMEOUT kills it without cleanup. 0 disarms."""
    if seconds is None:
        seconds = int(os.environ.get("SG_TEST_TIMEOUT", "100"))
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(seconds)


def _child_setup():
    """preexec_fn: die with us (PR_SET_PDEATHSIG) if we are SIGKILLed.
    (Postfix's master is a daemon, not our child: stop_everything() and the
    test's own timeout take care of it.)"""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except Exception:
        pass


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------
def log(msg):
    print(f"[harness {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def require_tool(name, package=None):
    """Absolute path of a tool, searched in PATH and the sbin dirs; HarnessError if absent."""
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":" + SBIN_PATH)
    if path is None:
        hint = f" (apt-get install {package})" if package else ""
        raise HarnessError(f"required tool not found: {name}{hint}")
    return path


def require_root(what):
    if os.geteuid() != 0:
        raise HarnessError(f"{what} needs root (running as uid {os.geteuid()})")


def free_port():
    """A TCP port free on 127.0.0.1 right now (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what, interval=0.05):
    """Poll pred() until it returns a true value (returned) or timeout (HarnessError)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def wait_stable(fn, settle, timeout, what, interval=0.1):
    """Poll fn() until its value has not changed for `settle` seconds; return it."""
    deadline = time.monotonic() + timeout
    value = fn()
    since = time.monotonic()
    while True:
        time.sleep(interval)
        now = fn()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= settle:
            return value
        if time.monotonic() >= deadline:
            raise HarnessError(f"{what} did not settle within {timeout}s (last: {value!r})")


def tcp_accepts(port, host=LOOPBACK):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def unix_accepts(path):
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def milter_socket_accepts(spec):
    """spec: 'unix:/path' or 'inet:PORT@HOST' (libmilter syntax)."""
    if spec.startswith(("unix:", "local:")):
        return unix_accepts(spec.split(":", 1)[1])
    if spec.startswith("inet:"):
        port, _, host = spec[5:].partition("@")
        return tcp_accepts(int(port), host or LOOPBACK)
    raise HarnessError(f"unsupported milter socket spec {spec!r}")


def pid_alive(pid):
    """True while pid exists and is not a zombie (a daemon we did not fork,
    such as Postfix's master, may linger as a zombie under a subreaper)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def tail(path, n=40):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError as e:
        return f"<{path}: {e}>"


def _kill_process(proc, grace=10.0, sig=signal.SIGTERM):
    """Signal a Popen, wait up to grace, then SIGKILL. Returns its exit status."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


# --------------------------------------------------------------------------
# scratch directory
# --------------------------------------------------------------------------
def _has_group(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


class Scratch:
    """A temp dir under /tmp (or $SG_TEST_TMPDIR), mode 0755 so the postfix
    user can traverse it (mkdtemp makes 0700, and Postfix daemons running as
    `postfix` must reach the queue, the sink's dump dir and the milter socket).
    finish(ok): removed when ok, kept with its path printed otherwise."""

    def __init__(self, prefix="sg-test-"):
        base = os.environ.get("SG_TEST_TMPDIR", "/tmp")
        self.path = tempfile.mkdtemp(prefix=prefix, dir=base)
        os.chmod(self.path, 0o755)
        self.kept = False

    def sub(self, name, owner=None, mode=0o755):
        p = os.path.join(self.path, name)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, mode)
        if owner is not None:
            pw = pwd.getpwnam(owner)
            os.chown(p, pw.pw_uid, pw.pw_gid)
        return p

    def file(self, name):
        return os.path.join(self.path, name)

    def finish(self, ok):
        if ok or os.environ.get("SG_TEST_KEEP") == "never":
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            self.kept = True
            print(f"\n*** test failed: scratch directory kept: {self.path}", file=sys.stderr, flush=True)

    def __repr__(self):
        return f"Scratch({self.path})"


# --------------------------------------------------------------------------
# redis-server
# --------------------------------------------------------------------------
class RedisServer:
    """A real redis-server bound to 127.0.0.1 on a free port, no persistence."""

    def __init__(self, workdir, port=None, password=None, extra_args=()):
        self.workdir = workdir
        self.port = port or free_port()
        self.password = password
        self.extra_args = list(extra_args)
        self.logfile = os.path.join(workdir, "redis.log")
        self.proc = None

    def start(self, timeout=10):
        exe = require_tool("redis-server", "redis-server")
        os.makedirs(self.workdir, exist_ok=True)
        args = [exe, "--bind", LOOPBACK, "--port", str(self.port), "--dir", self.workdir,
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--logfile", self.logfile, "--protected-mode", "yes"]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=_child_setup)
        _register(self)

        def ready():
            if self.proc.poll() is not None:
                raise HarnessError(f"redis-server exited ({self.proc.returncode}):\n{tail(self.logfile)}")
            try:
                return self.command("PING") == "PONG"
            except OSError:
                return False
        wait_until(ready, timeout, f"redis-server on port {self.port}")
        return self

    def command(self, *args, timeout=5):
        """One command over a fresh connection; returns the decoded RESP reply."""
        with socket.create_connection((LOOPBACK, self.port), timeout=timeout) as s:
            f = s.makefile("rwb")
            if self.password:
                f.write(_resp_encode(["AUTH", self.password]))
                f.flush()
                _resp_read(f)
            f.write(_resp_encode(args))
            f.flush()
            return _resp_read(f)

    def stop(self):
        _unregister(self)
        if self.proc is not None:
            _kill_process(self.proc, 5)

    def __repr__(self):
        return f"RedisServer(port={self.port})"


def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _resp_read(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise HarnessError(f"redis error: {rest.decode()}")
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise HarnessError(f"bad RESP line {line!r}")


# --------------------------------------------------------------------------
# sendguard config rendering (libconfig syntax)
# --------------------------------------------------------------------------
def _lc_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def libconfig(value, indent=0):
    """Render a Python value as libconfig text: dict -> group, list of dicts ->
    list ( ... ), other list -> array [ ... ], str/int/float/bool -> scalar."""
    pad = "  " * indent
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _lc_string(value)
    if isinstance(value, dict):
        inner = "".join(f"{pad}  {k} = {libconfig(v, indent + 1)};\n" for k, v in value.items())
        return "{\n" + inner + pad + "}"
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, dict) for v in value):
            inner = ",\n".join(f"{pad}  {libconfig(v, indent + 1)}" for v in value)
            return "(\n" + inner + "\n" + pad + ")"
        if not value:
            return "[ ]"
        return "[ " + ", ".join(libconfig(v, indent) for v in value) + " ]"
    raise TypeError(f"cannot render {value!r} as libconfig")


def sendguard_config(socket_spec, limits, accounts=(), store=None, **extra):
    """Text of a sendguard.conf. limits: list of dicts such as
    {"name": "hourly", "window": "1h", "messages": 5, "action": "hold"};
    accounts: list of dicts {"address", "offer", "service", "senders"};
    store: dict, default {"backend": "memory"}; extra: more top-level keys
    (overriding the defaults, e.g. ovh={...})."""
    milter = {"socket": socket_spec}   # unix: sendguard's default mode 0660, group postfix
    top = {
        "milter": milter,
        "syslog_facility": "mail",
        "store": store or {"backend": "memory"},
        "limits": list(limits),
        "ovh": {"poll_interval": "off"},  # tests touch no network but loopback
    }
    if accounts:
        top["accounts"] = list(accounts)
    top.update(extra)
    lines = ["# written by tests/e2e/harness.py"]
    for k, v in top.items():
        lines.append(f"{k} = {libconfig(v)};")
    return "\n".join(lines) + "\n"


def limit(name="hourly", window="1h", messages=5, action="hold", **more):
    d = {"name": name, "window": window, "messages": messages, "action": action}
    d.update(more)
    return d


# --------------------------------------------------------------------------
# sendguard
# --------------------------------------------------------------------------
DECISION_KEYS_REQUIRED = ("qid", "account", "identity", "action")
ACTIONS = ("accept", "warn", "tempfail", "hold", "reject")
_STDERR_PREFIX = re.compile(r"^\S+ sendguard\[(?P<prio>[a-z]+)\]: (?P<msg>.*)$")
_KV = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(<[^<>]*>|\S*)")


def parse_kv(text):
    """key=value pairs of a log message; <...> values keep their brackets."""
    return {m.group(1): m.group(2) for m in _KV.finditer(text)}


def split_log_line(line):
    """(priority, message) of a sendguard stderr line, or (None, line)."""
    m = _STDERR_PREFIX.match(line)
    if m:
        return m.group("prio"), m.group("msg")
    return None, line


def is_decision(msg):
    return msg.startswith("qid=")


def check_decision_line(line):
    """Problems with one decision line (empty list when well formed): one
    line, printable ASCII only, only key=value tokens, no key twice,
    account/identity in <>, a known action exactly once."""
    problems = []
    if any(c in line for c in "\r\n\0"):
        problems.append("raw CR/LF/NUL in line")
    if any(ord(c) < 0x20 or ord(c) > 0x7e for c in line):
        problems.append("non-printable or non-ASCII byte in line")
    prio, msg = split_log_line(line)
    if prio is None:
        problems.append("no 'TIME sendguard[prio]: ' prefix")
    tokens = msg.split(" ")
    seen = {}
    for t in tokens:
        m = re.fullmatch(r"([a-z_][a-z0-9_]*)=(.*)", t)
        if not m:
            problems.append(f"token {t!r} is not key=value")
            continue
        k, v = m.groups()
        if k in seen:
            problems.append(f"key {k!r} twice")
        seen[k] = v
        if "=" in v and k not in ("limit",):
            problems.append(f"'=' inside value of {k!r}: {v!r}")
    for k in DECISION_KEYS_REQUIRED:
        if k not in seen:
            problems.append(f"missing key {k!r}")
    for k in ("account", "identity"):
        v = seen.get(k)
        if v is not None and not (v.startswith("<") and v.endswith(">") and "<" not in v[1:-1]
                                  and ">" not in v[1:-1]):
            problems.append(f"{k} not a single <...> value: {v!r}")
    if seen.get("action") not in ACTIONS:
        problems.append(f"unknown action {seen.get('action')!r}")
    if msg.count("action=") != 1:
        problems.append("'action=' appears %d times" % msg.count("action="))
    return problems


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                     "ERROR: UndefinedBehaviorSanitizer", "AddressSanitizer:DEADLYSIGNAL")


class Sendguard:
    """The daemon under test, in the foreground (-f), stderr captured to a file.

    socket: 'unix' (default: <workdir>/sock/sendguard.sock, in a directory
    owned by `user`: sendguard creates the socket itself as that user, group
    postfix, mode milter.socket_mode, so Postfix daemons running as
    `postfix` can connect and nobody else), 'inet' (a free loopback port;
    note ~40 ms per message of Nagle/delayed-ACK latency with Postfix), or
    an explicit libmilter spec string.
    user: what `-u` is given (the daemon refuses to stay root unless told):
    'nobody' by default; None passes no -u.
    config: text, or a callable socket_spec -> text."""

    def __init__(self, binary, workdir, config, socket="unix", env=None, user="nobody"):
        self.binary = binary
        self.workdir = workdir
        self.user = user
        os.makedirs(workdir, exist_ok=True)
        if socket == "unix":
            sockdir = os.path.join(workdir, "s")   # short: sun_path holds 107 bytes
            os.makedirs(sockdir, exist_ok=True)
            os.chmod(sockdir, 0o750)
            if user is not None:
                pw = pwd.getpwnam(user)
                gid = grp.getgrnam("postfix").gr_gid if _has_group("postfix") else pw.pw_gid
                os.chown(sockdir, pw.pw_uid, gid)
            self.socket = f"unix:{os.path.join(sockdir, 'sg.sock')}"
        elif socket == "inet":
            self.socket = f"inet:{free_port()}@{LOOPBACK}"
        else:
            self.socket = socket
        self.config_path = os.path.join(workdir, "sendguard.conf")
        self.logfile = os.path.join(workdir, "sendguard.log")
        self.env = dict(os.environ)
        # sanitizer builds: report, do not hide; leaks are the unit tests' business
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")
        self.env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        if env:
            self.env.update(env)
        self.proc = None
        self._log_fh = None
        self.write_config(config)

    # -- config ----------------------------------------------------------
    def render(self, config):
        return config(self.socket) if callable(config) else config

    def write_config(self, config):
        text = self.render(config)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)     # a reload never sees half a file
        return text

    def check_config(self, config=None, timeout=20):
        """Run `sendguard -t -c FILE` (on a separate file when config is given)."""
        path = self.config_path
        if config is not None:
            path = os.path.join(self.workdir, "check.conf")
            with open(path, "w") as f:
                f.write(self.render(config))
        self._require_binary()
        return subprocess.run([self.binary, "-t", "-c", path], capture_output=True, text=True,
                              timeout=timeout, env=self.env)

    # -- lifecycle -------------------------------------------------------
    def _require_binary(self):
        if not self.binary or not os.access(self.binary, os.X_OK):
            raise HarnessError(f"sendguard binary not found or not executable: {self.binary!r}")

    def start(self, timeout=15):
        self._require_binary()
        # a socket left over is sendguard's to remove (stale) or refuse (live)
        self._log_fh = open(self.logfile, "ab", buffering=0)
        # SG_WRAPPER: a command to run the daemon under (valgrind, in the
        # valgrind build's milter tests)
        wrapper = shlex.split(os.environ.get("SG_WRAPPER", ""))
        user = ["-u", self.user] if self.user is not None else []
        self.proc = subprocess.Popen(wrapper + [self.binary, "-c", self.config_path, "-f"] + user
                                     + list(getattr(self, "extra_args", [])),
                                     stdin=subprocess.DEVNULL, stdout=self._log_fh,
                                     stderr=self._log_fh, env=self.env, cwd=self.workdir,
                                     start_new_session=True, preexec_fn=_child_setup)
        _register(self)

        def ready():
            if self.proc.poll() is not None:
                raise HarnessError(f"sendguard exited early with status {self.proc.returncode}:\n"
                                   f"{tail(self.logfile)}")
            return milter_socket_accepts(self.socket)
        wait_until(ready, timeout, f"sendguard socket {self.socket}")
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if not self.alive():
            raise HarnessError(f"sendguard is not running (status {self.proc and self.proc.returncode}):\n"
                               f"{tail(self.logfile)}")
        os.kill(self.proc.pid, sig)

    def reload(self, config=None, expect=None, timeout=10):
        """Optionally rewrite the config, send SIGUSR1, and when `expect` (a
        regex) is given wait for a new log line matching it; returns the line."""
        if config is not None:
            self.write_config(config)
        mark = self.log_size()
        self.signal(signal.SIGUSR1)
        if expect is None:
            return None
        return self.wait_log(expect, since=mark, timeout=timeout)

    def stop(self, timeout=10):
        """SIGTERM, wait, SIGKILL if needed. Returns the exit status."""
        _unregister(self)
        rc = None
        if self.proc is not None:
            rc = _kill_process(self.proc, timeout)
        if self._log_fh:
            self._log_fh.close()
            self._log_fh = None
        return rc

    def __repr__(self):
        return f"Sendguard(pid={self.pid}, socket={self.socket})"

    # -- log ---------------------------------------------------------------
    def log_size(self):
        try:
            return os.path.getsize(self.logfile)
        except OSError:
            return 0

    def log_bytes(self, since=0):
        try:
            with open(self.logfile, "rb") as f:
                f.seek(since)
                return f.read()
        except OSError:
            return b""

    def log_lines(self, since=0):
        """Log lines after byte offset `since` (raw bytes decoded as latin-1 so
        that nothing is hidden: any byte >= 0x80 stays visible)."""
        data = self.log_bytes(since)
        return data.decode("latin-1").split("\n")[:-1] if data else []

    def wait_log(self, pattern, since=0, timeout=10):
        rx = re.compile(pattern)

        def found():
            for line in self.log_lines(since):
                if rx.search(line):
                    return line
            if not self.alive():
                raise HarnessError(f"sendguard died while waiting for /{pattern}/:\n{tail(self.logfile)}")
            return None
        return wait_until(found, timeout, f"sendguard log line /{pattern}/")

    def decision_lines(self, since=0):
        return [ln for ln in self.log_lines(since) if is_decision(split_log_line(ln)[1])]

    def decisions(self, since=0):
        """Decision lines as dicts (plus '_line' with the raw line and
        '_prio' with its level)."""
        out = []
        for ln in self.decision_lines(since):
            prio, msg = split_log_line(ln)
            d = parse_kv(msg)
            d["_line"] = ln
            d["_prio"] = prio
            out.append(d)
        return out

    def wait_decisions(self, n, since=0, timeout=20):
        def enough():
            if not self.alive():
                raise HarnessError(f"sendguard died:\n{tail(self.logfile)}")
            d = self.decisions(since)
            return d if len(d) >= n else None
        return wait_until(enough, timeout, f"{n} decision lines")

    def sanitizer_reports(self):
        return [ln for ln in self.log_lines() if any(m in ln for m in SANITIZER_MARKERS)]


# --------------------------------------------------------------------------
# smtp-sink
# --------------------------------------------------------------------------
class SmtpSink:
    """A real smtp-sink on 127.0.0.1:PORT. -c keeps a running counter on
    stdout (mesg=N is incremented when "." is received); -d dumps every
    transaction to its own file so delivered messages can be inspected."""

    def __init__(self, workdir, port=None):
        self.workdir = workdir
        self.port = port or free_port()
        self.dumpdir = os.path.join(workdir, "dump")
        self.counterfile = os.path.join(workdir, "counter.txt")
        self.proc = None

    def start(self, timeout=10):
        require_root("smtp-sink -u postfix")
        exe = require_tool("smtp-sink", "postfix")
        os.makedirs(self.dumpdir, exist_ok=True)
        pw = pwd.getpwnam("postfix")
        for d in (self.workdir, self.dumpdir):      # -u postfix writes the dumps
            os.chown(d, pw.pw_uid, pw.pw_gid)
            os.chmod(d, 0o755)
        self._out = open(self.counterfile, "wb", buffering=0)
        # -c counter, -d per-message dump ("%Y..." via strftime + random suffix),
        # -u drop root after binding, backlog 100
        self.proc = subprocess.Popen([exe, "-c", "-u", "postfix", "-d",
                                      os.path.join(self.dumpdir, "%Y%m%d%H%M%S."),
                                      f"{LOOPBACK}:{self.port}", "100"],
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_child_setup)
        _register(self)

        def ready():
            if self.proc.poll() is not None:
                raise HarnessError(f"smtp-sink exited ({self.proc.returncode}):\n{tail(self.counterfile)}")
            return tcp_accepts(self.port)
        wait_until(ready, timeout, f"smtp-sink on port {self.port}")
        # the probe connection above counts as a session, not as a message
        return self

    def count(self):
        """Messages received so far (the last mesg=N of the -c counter)."""
        try:
            with open(self.counterfile, "rb") as f:
                data = f.read().decode("latin-1")
        except OSError:
            return 0
        m = re.findall(r"mesg=(\d+)", data)
        return int(m[-1]) if m else 0

    def wait_count(self, n, timeout=30):
        return wait_until(lambda: self.count() >= n and self.count(), timeout,
                          f"{n} messages at smtp-sink (have {self.count()})")

    def dump_files(self):
        out = []
        for root, _, files in os.walk(self.dumpdir):
            out += [os.path.join(root, f) for f in files]
        return sorted(out)

    def messages(self):
        """Parsed dump files: dicts with mail_args, rcpt_args, client, raw."""
        out = []
        for p in self.dump_files():
            with open(p, "rb") as f:
                raw = f.read().decode("utf-8", "replace")
            msg = {"path": p, "raw": raw, "rcpt_args": []}
            for line in raw.split("\n"):
                if line.startswith("X-Mail-Args: "):
                    msg["mail_args"] = line[13:].strip()
                elif line.startswith("X-Rcpt-Args: "):
                    msg["rcpt_args"].append(line[13:].strip())
                elif line.startswith("X-Client-Addr: "):
                    msg["client"] = line[15:].strip()
                elif line.strip() == "":
                    break
            out.append(msg)
        return out

    def stop(self):
        _unregister(self)
        if self.proc is not None:
            _kill_process(self.proc, 5)
        if getattr(self, "_out", None):
            self._out.close()
            self._out = None

    def __repr__(self):
        return f"SmtpSink(port={self.port})"


# --------------------------------------------------------------------------
# throwaway Postfix
# --------------------------------------------------------------------------
MASTER_CF = """\
# written by tests/e2e/harness.py: every service unchrooted (5th column n),
# the default "smtp inet" listener replaced by one on a loopback port.
{smtpd_addr} inet n       -       n       -       -       smtpd
pickup    unix  n       -       n       1       1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       1       1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_milter_spec(spec):
    """libmilter's socket syntax -> Postfix's: "inet:PORT@HOST" becomes
    "inet:HOST:PORT" (Postfix reads "inet:PORT@HOST" as a service name and
    smtpd dies with "garbage after numerical service"); unix:/path is the same."""
    if spec.startswith("inet:") and "@" in spec:
        port, _, host = spec[5:].partition("@")
        return f"inet:{host}:{port}"
    if spec.startswith("local:"):
        return "unix:" + spec[6:]
    return spec


class Postfix:
    """A throwaway Postfix: own config_directory, queue_directory and
    data_directory under workdir; smtpd on 127.0.0.1:smtpd_port; relays
    everything to [127.0.0.1]:relay_port; logs to workdir/maillog.

    milter: libmilter socket spec of sendguard (smtpd_milters and
    non_smtpd_milters), or None for a plain relay.
    sasl_users: {login: password}: SMTP AUTH with Cyrus SASL from a sasldb
    (see sasl_setup); sasl_realm: smtpd_sasl_local_domain (None: unset)."""

    def __init__(self, workdir, relay_port, milter=None, smtpd_port=None, extra_main=None,
                 sasl_users=None, sasl_realm=None):
        self.workdir = workdir
        self.config_dir = os.path.join(workdir, "etc")
        self.queue_dir = os.path.join(workdir, "spool")
        self.data_dir = os.path.join(workdir, "data")
        self.maillog = os.path.join(workdir, "maillog")
        self.relay_port = relay_port
        self.smtpd_port = smtpd_port or free_port()
        self.milter = milter
        self.extra_main = dict(extra_main or {})
        self.sasl_users = dict(sasl_users or {})
        self.sasl_realm = sasl_realm
        self.started = False

    # -- configuration -----------------------------------------------------
    def main_cf(self):
        m = postfix_milter_spec(self.milter) if self.milter else None
        settings = [
            ("compatibility_level", "3.6",
             "current defaults, no backwards-compatibility warnings in the log"),
            ("queue_directory", self.queue_dir, "own queue: never touches /var/spool/postfix"),
            ("data_directory", self.data_dir, "own data dir (must be owned by postfix)"),
            ("maillog_file", self.maillog,
             "log through postlogd to a file: no syslog daemon needed (Postfix >= 3.4)"),
            ("maillog_file_prefixes", self.workdir,
             "maillog_file must start with one of these (default /var, /dev/stdout)"),
            ("postlogd_watchdog_timeout", "600s",
             "on a loaded 2-CPU machine postlogd can miss its 10 s watchdog; killed, it"
             " leaves every Postfix process blocked on its log socket"),
            ("myhostname", "sg-e2e.example", "fixed name: no lookup of the machine's name"),
            ("mydomain", "example", None),
            ("myorigin", "$myhostname", None),
            ("mydestination", "", "nothing is local: every recipient is relayed to the sink"),
            ("local_recipient_maps", "", None),
            ("alias_maps", "", "no hash:/etc/aliases or nis: lookups"),
            ("alias_database", "", None),
            ("inet_interfaces", LOOPBACK, "loopback only"),
            ("inet_protocols", "ipv4", "no ::1 surprises"),
            ("mynetworks", "127.0.0.0/8", "test clients may relay"),
            ("smtpd_relay_restrictions", "permit_mynetworks, reject", None),
            ("relayhost", f"[{LOOPBACK}]:{self.relay_port}",
             "[ip]: the smtp client does no MX/A lookup at all"),
            ("smtp_dns_support_level", "disabled",
             "replaces the deprecated disable_dns_lookups: no DNS in the smtp client"),
            ("smtp_host_lookup", "native", "if a name ever is looked up: /etc/hosts, not DNS"),
            ("smtpd_peername_lookup", "no", "no reverse lookup of 127.0.0.1 by smtpd"),
            ("smtp_address_preference", "ipv4", None),
            ("smtp_tls_security_level", "none", "the sink speaks plain SMTP"),
            ("smtpd_tls_security_level", "none", None),
            ("biff", "no", "no comsat"),
            ("append_dot_mydomain", "no", None),
            ("notify_classes", "",
             "no postmaster notices: they would be relayed to the sink and spoil its counts"),
            ("delay_warning_time", "0h", "no delay warnings either, same reason"),
            ("queue_run_delay", "1s", "scan the deferred queue every second (default 300s)"),
            ("minimal_backoff_time", "1s", "retry deferred mail after 1s (default 300s)"),
            ("maximal_backoff_time", "2s", None),
            ("in_flow_delay", "0s", "smtpd never waits for the queue manager to catch up"),
            ("smtpd_error_sleep_time", "0s",
             "no 1s pause after every 4xx/5xx (the tempfail test makes many)"),
            ("smtpd_soft_error_limit", "1000", None),
            ("smtpd_hard_error_limit", "1000", None),
            ("smtpd_client_connection_rate_limit", "0", "no anvil throttling of the test client"),
            ("smtpd_client_message_rate_limit", "0", None),
            ("service_throttle_time", "1s",
             "a daemon that fails at startup is retried after 1s (default 60s)"),
            ("smtp_connect_timeout", "5s", None),
            ("smtputf8_enable", "no", "the sink does not announce SMTPUTF8"),
            ("message_size_limit", "10240000", None),
        ]
        if m:
            settings += [
                ("smtpd_milters", m, "sendguard sees every message received over SMTP"),
                ("non_smtpd_milters", m, "... and every local sendmail(1) submission (via cleanup)"),
                ("milter_default_action", "tempfail",
                 "sendguard down or broken: 451, nothing accepted unchecked"),
                ("milter_protocol", "6", None),
                ("milter_connect_macros", "j {daemon_name} {daemon_addr} v _", None),
                ("milter_mail_macros",
                 "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}",
                 "{auth_authen}: the SASL login, the identity when present; i: queue id"),
                ("milter_rcpt_macros", "i {rcpt_addr} {rcpt_host} {rcpt_mailer}", None),
                ("milter_end_of_data_macros", "i", "queue id again at end of message"),
                ("milter_connect_timeout", "5s", "fail fast when sendguard is not listening"),
                ("milter_command_timeout", "15s", None),
                ("milter_content_timeout", "30s", None),
            ]
        if self.sasl_users:
            settings += [
                ("smtpd_sasl_auth_enable", "yes", "SMTP AUTH (Cyrus SASL, sasldb: see sasl_setup)"),
                ("smtpd_sasl_type", "cyrus", None),
                ("smtpd_sasl_path", "smtpd",
                 "Debian's Postfix reads $config_directory/sasl/smtpd.conf for it"),
                ("smtpd_sasl_security_options", "noanonymous", "plain text is fine on loopback"),
                ("smtpd_sasl_local_domain", self.sasl_realm or "",
                 "set: {auth_authen} arrives as login@realm"),
            ]
        extra = dict(self.extra_main)       # a test's value replaces the default in place
        settings = [(k, extra.pop(k), "test-specific (default replaced)") if k in extra
                    else (k, v, why) for k, v, why in settings]
        for k, v in extra.items():
            settings.append((k, v, "test-specific"))
        out = ["# throwaway Postfix written by tests/e2e/harness.py"]
        for k, v, why in settings:
            if why:
                out.append(f"# {why}")
            out.append(f"{k} = {v}")
        return "\n".join(out) + "\n"

    def write_config(self):
        os.makedirs(self.config_dir, exist_ok=True)
        os.makedirs(self.queue_dir, exist_ok=True)
        os.makedirs(self.data_dir, exist_ok=True)
        for d in (self.workdir, self.config_dir, self.queue_dir):
            os.chmod(d, 0o755)
        pw = pwd.getpwnam("postfix")
        os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            f.write(self.main_cf())
        with open(os.path.join(self.config_dir, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(smtpd_addr=f"{LOOPBACK}:{self.smtpd_port}"))
        if self.sasl_users:
            self.sasl_setup()

    def sasl_setup(self):
        """$config_directory/sasl/smtpd.conf (auxprop sasldb) and a sasldb
        made by saslpasswd2 (sasl2-bin) with every user in the realm smtpd
        will look them up in: smtpd_sasl_local_domain, else myhostname."""
        saslpasswd2 = require_tool("saslpasswd2", "sasl2-bin")
        d = os.path.join(self.config_dir, "sasl")
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        db = os.path.join(self.workdir, "sasldb2")   # not in etc/: postfix check wants it root's
        with open(os.path.join(d, "smtpd.conf"), "w") as f:
            f.write(f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n"
                    f"sasldb_path: {db}\n")
        for login, pw in self.sasl_users.items():
            r = subprocess.run([saslpasswd2, "-f", db, "-p", "-c", "-u",
                                self.sasl_realm or "sg-e2e.example", login],
                               input=pw, capture_output=True, text=True)
            if r.returncode != 0:
                raise HarnessError(f"saslpasswd2 {login}: {r.stderr}")
        pw = pwd.getpwnam("postfix")
        os.chown(db, pw.pw_uid, pw.pw_gid)      # smtpd reads it as `postfix`
        os.chmod(db, 0o600)

    # -- commands ------------------------------------------------------------
    def _run(self, args, check=True, timeout=60, input=None):
        r = subprocess.run(args, capture_output=True, timeout=timeout, input=input,
                           env=dict(os.environ, MAIL_CONFIG=self.config_dir))
        if check and r.returncode != 0:
            raise HarnessError(f"{' '.join(args)} -> {r.returncode}\nstdout: {r.stdout.decode(errors='replace')}"
                               f"\nstderr: {r.stderr.decode(errors='replace')}\nmaillog:\n{tail(self.maillog)}")
        return r

    def postfix(self, *cmd, check=True):
        exe = require_tool("postfix", "postfix")
        return self._run([exe, "-c", self.config_dir, *cmd], check=check)

    def start(self, timeout=30):
        require_root("postfix -c DIR start")
        for t in ("postfix", "postqueue", "postsuper", "sendmail"):
            require_tool(t, "postfix")
        self.write_config()
        _register(self)
        # `postfix start` runs check-fatal, which creates the queue
        # subdirectories with their owners; a full `postfix check` would
        # add ~3 s of find(1) over the install for warnings only (check()).
        self.postfix("start")
        self.started = True
        wait_until(lambda: tcp_accepts(self.smtpd_port), timeout, f"postfix smtpd on {self.smtpd_port}")
        return self

    def master_pid(self):
        try:
            with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def check(self):
        """`postfix check` (slow: ~3 s); HarnessError on a fatal problem."""
        return self.postfix("check")

    def stop(self):
        """Stop master and make sure it and its children are gone. SIGTERM
        to master is what `postfix stop` sends (master then kills its process
        group); sending it ourselves saves the script's 1 s polling sleep."""
        _unregister(self)
        if not self.started:
            return
        self.started = False
        pid = self.master_pid()
        if pid is None:
            try:
                self.postfix("stop", check=False)
            except Exception as e:   # pragma: no cover
                log(f"postfix stop failed: {e}")
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return

        def gone():
            return not pid_alive(pid)
        try:
            wait_until(gone, 10, "postfix master to exit", interval=0.02)
        except HarnessError:
            self.postfix("abort", check=False)
            try:
                # master runs in its own session: its process group is its pid
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def __repr__(self):
        return f"Postfix({self.config_dir}, smtpd={self.smtpd_port})"

    # -- queues ------------------------------------------------------------
    def queue(self):
        """Every queued message (postqueue -j): dicts with queue_name, queue_id,
        sender, recipients..."""
        exe = require_tool("postqueue", "postfix")
        r = self._run([exe, "-c", self.config_dir, "-j"])
        return [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]

    def queue_counts(self):
        """{'hold': n, 'deferred': n, 'active': n, 'incoming': n, 'maildrop': n, 'total': n}"""
        counts = {q: 0 for q in ("maildrop", "incoming", "active", "deferred", "hold")}
        for m in self.queue():
            counts[m["queue_name"]] = counts.get(m["queue_name"], 0) + 1
        counts["total"] = sum(counts.values())
        return counts

    def files_in_queue_dirs(self):
        """Files on disk per queue directory, a cross-check of postqueue."""
        out = {}
        for q in ("maildrop", "incoming", "active", "deferred", "hold", "corrupt"):
            n = 0
            for _, _, files in os.walk(os.path.join(self.queue_dir, q)):
                n += len(files)
            out[q] = n
        return out

    def wait_queue(self, pred, timeout=30, what="queue state"):
        return wait_until(lambda: (lambda c: pred(c) and c)(self.queue_counts()), timeout, what,
                          interval=0.2)

    def wait_empty(self, timeout=30):
        return self.wait_queue(lambda c: c["total"] == 0, timeout, "empty mail queue")

    def wait_settled(self, settle=1.5, timeout=30):
        """Wait until nothing is in flight (no maildrop/incoming/active) and
        the counts have stopped changing; return them."""
        self.wait_queue(lambda c: c["maildrop"] + c["incoming"] + c["active"] == 0, timeout,
                        "no message in flight")
        return wait_stable(self.queue_counts, settle, timeout, "queue counts")

    def release_hold(self):
        """postsuper -H ALL (hold -> deferred) then postqueue -f (deliver now)."""
        exe = require_tool("postsuper", "postfix")
        self._run([exe, "-c", self.config_dir, "-H", "ALL"])
        self.flush()

    def flush(self):
        exe = require_tool("postqueue", "postfix")
        self._run([exe, "-c", self.config_dir, "-f"])

    def sendmail(self, sender, recipients, body=None, subject="sendmail test", timeout=30):
        """Local submission (sendmail -C DIR -> postdrop -> pickup -> cleanup,
        where non_smtpd_milters run). Returns the exit status."""
        exe = require_tool("sendmail", "postfix")
        msg = make_message(sender, recipients, subject, body)
        r = subprocess.run([exe, "-C", self.config_dir, "-i", "-f", sender, "--", *recipients],
                           input=msg, capture_output=True, timeout=timeout,
                           env=dict(os.environ, MAIL_CONFIG=self.config_dir))
        if r.returncode != 0:
            log(f"sendmail -> {r.returncode}: {r.stderr.decode(errors='replace')}")
        return r.returncode

    def maillog_text(self):
        try:
            with open(self.maillog, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


# --------------------------------------------------------------------------
# SMTP clients
# --------------------------------------------------------------------------
_seq = 0
_seq_lock = threading.Lock()


def make_message(sender, recipients, subject="test", body=None, size=0, headers=None):
    global _seq
    with _seq_lock:
        _seq += 1
        n = _seq
    lines = [f"From: <{sender}>", f"To: {', '.join('<%s>' % r for r in recipients)}",
             f"Subject: {subject} #{n}", f"Date: {email.utils.formatdate(localtime=True)}",
             f"Message-ID: <sg-test-{os.getpid()}-{n}-{time.time_ns()}@example.org>",
             "X-Mailer: sendguard-harness"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    text = body if body is not None else f"test message {n}\n"
    if size > len(text):
        text += ("x" * 76 + "\n") * ((size - len(text)) // 77 + 1)
    return ("\r\n".join(lines) + "\r\n\r\n" + text.replace("\n", "\r\n")).encode()


class SmtpResult:
    """Outcome of one message: the stage that decided it and its reply."""

    def __init__(self, stage, code, text):
        self.stage, self.code, self.text = stage, code, text
        # Postfix: "2.0.0 Ok: queued as 4F2A1C3"; Sendmail: "2.0.0 6B2B99jb019208 Message accepted"
        m = re.search(r"queued as ([0-9A-Za-z]+)|^2\.0\.0 ([0-9A-Za-z]+) Message accepted", text)
        self.qid = (m.group(1) or m.group(2)) if m else None

    @property
    def klass(self):
        return f"{self.code // 100}xx" if self.code else "error"

    def __repr__(self):
        return f"<{self.stage} {self.code} {self.text!r}>"


def smtp_send(port, count, sender, recipients=("rcpt@example.net",), host=LOOPBACK,
              subject="smtp test", size=0, timeout=30, headers=None, auth=None):
    """Send `count` messages, one SMTP session each (so an error limit or a
    421 never hides the next message). Returns a list of SmtpResult: stage
    'data' with the end-of-data reply when DATA was reached, else the
    refusing stage ('auth', 'connect', 'mail', 'rcpt'). auth: (login,
    password) for SMTP AUTH (PLAIN/LOGIN, as smtplib picks) before MAIL."""
    results = []
    for _ in range(count):
        try:
            with smtplib.SMTP(host, port, local_hostname="client.example", timeout=timeout) as s:
                code, text = s.ehlo()
                if auth is not None:
                    try:
                        s.login(*auth)
                    except smtplib.SMTPAuthenticationError as e:
                        results.append(SmtpResult("auth", e.smtp_code, e.smtp_error.decode(errors="replace")))
                        continue
                code, text = s.mail(sender)
                if code >= 400:
                    results.append(SmtpResult("mail", code, text.decode(errors="replace")))
                    continue
                ok_rcpt = 0
                last = None
                for r in recipients:
                    code, text = s.rcpt(r)
                    last = (code, text)
                    ok_rcpt += code < 400
                if not ok_rcpt:
                    results.append(SmtpResult("rcpt", last[0], last[1].decode(errors="replace")))
                    s.rset()
                    continue
                code, text = s.data(make_message(sender, recipients, subject, size=size,
                                                 headers=headers))
                results.append(SmtpResult("data", code, text.decode(errors="replace")))
        except smtplib.SMTPServerDisconnected as e:
            results.append(SmtpResult("connect", 0, f"disconnected: {e}"))
        except (smtplib.SMTPException, OSError) as e:
            results.append(SmtpResult("connect", 0, f"{type(e).__name__}: {e}"))
    return results


def tally(results):
    """{'2xx': n, '4xx': n, '5xx': n, 'error': n}"""
    out = {"2xx": 0, "4xx": 0, "5xx": 0, "error": 0}
    for r in results:
        out[r.klass] = out.get(r.klass, 0) + 1
    return out


def smtp_source(port, count, sender="load@example.com", recipient="rcpt@example.net",
                sessions=5, size=0, timeout=120, host=LOOPBACK):
    """smtp-source load: `count` messages over `sessions` parallel sessions.
    It stops at the first 4xx: use smtp_send() to count refusals."""
    exe = require_tool("smtp-source", "postfix")
    args = [exe, "-c", "-m", str(count), "-s", str(sessions), "-f", sender, "-t", recipient,
            "-M", "sg-e2e.example"]
    if size:
        args += ["-l", str(size)]
    args.append(f"{host}:{port}")
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------
# everything wired together
# --------------------------------------------------------------------------
class MailEnv:
    """smtp-sink + (optionally) sendguard + Postfix in one scratch directory.

        with MailEnv(scratch, binary, config=lambda sock: sendguard_config(sock, [...])) as env:
            env.smtp(15, "alice@example.com"); env.postfix.queue_counts(); env.sink.count()

    config=None: no milter (plain relay, for harness smoke tests)."""

    def __init__(self, scratch, binary=None, config=None, socket="unix", extra_main=None,
                 user="nobody", **postfix_kw):
        self.sink_and_sendguard(scratch, binary, config, socket, user=user)
        self.postfix = Postfix(scratch.sub("postfix"), self.sink.port,
                               milter=self.sendguard.socket if self.sendguard else None,
                               extra_main=extra_main, **postfix_kw)
        self.mta = self.postfix     # what start/stop/smtp use (sendmail_harness: a Sendmail)

    def sink_and_sendguard(self, scratch, binary, config, socket, user="nobody"):
        self.scratch = scratch
        self.sink = SmtpSink(scratch.sub("sink"))
        self.sendguard = None
        if config is not None:
            self.sendguard = Sendguard(binary, scratch.sub("sendguard"), config, socket=socket,
                                       user=user)

    def start(self):
        try:
            t0 = time.monotonic()
            self.sink.start()
            if self.sendguard:
                self.sendguard.start()
            self.mta.start()
            log(f"mail env up in {time.monotonic() - t0:.1f}s: {self.mta!r}, "
                f"sink {self.sink.port}, milter {self.sendguard.socket if self.sendguard else '-'}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for part in (self.mta, self.sendguard, self.sink):
            if part is not None:
                try:
                    part.stop()
                except Exception as e:
                    log(f"stopping {part!r}: {e}")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def smtp(self, count, sender, recipients=("rcpt@example.net",), **kw):
        return smtp_send(self.mta.smtpd_port, count, sender, recipients, **kw)

    def accounted(self):
        """(sink count, queue counts): where every message is now."""
        return self.sink.count(), self.postfix.queue_counts()

    def diagnostics(self):
        parts = [f"queue: {self.postfix.queue_counts() if self.postfix.started else '-'}",
                 f"sink count: {self.sink.count()}",
                 f"--- maillog (tail) ---\n{tail(self.postfix.maillog, 30)}"]
        if self.sendguard:
            parts.append(f"--- sendguard log (tail) ---\n{tail(self.sendguard.logfile, 30)}")
        return "\n".join(parts)


# --------------------------------------------------------------------------
# unittest glue
# --------------------------------------------------------------------------
def sendguard_binary():
    """The binary under test: $SG_SENDGUARD, else <repo>/build/sendguard."""
    b = os.environ.get("SG_SENDGUARD")
    if not b:
        src = os.environ.get("SG_SOURCE_DIR") or os.path.abspath(
            os.path.join(os.path.dirname(__file__), "..", ".."))
        b = os.path.join(src, "build", "sendguard")
    return b


def sendguard_version(binary=None):
    """What `sendguard -V` prints after the name."""
    out = subprocess.run([binary or sendguard_binary(), "-V"], capture_output=True, text=True,
                         timeout=20).stdout.split()
    return out[-1] if out else ""


try:
    import unittest

    class ScratchTestCase(unittest.TestCase):
        """self.scratch: a Scratch removed when the test passed, kept (path
        printed) when it failed or errored. Daemons started through the
        harness are stopped before the verdict is known (cleanups)."""

        scratch_prefix = "sg-test-"

        def diagnostics(self):
            """Text printed on stderr when the test fails (override it)."""
            return None

        def _callTestMethod(self, method):
            try:
                method()
            except BaseException:
                try:
                    text = self.diagnostics()
                except Exception as ex:          # pragma: no cover
                    text = f"(diagnostics failed: {ex})"
                if text:
                    print("\n--- diagnostics ---\n" + text, file=sys.stderr)
                raise

        def run(self, result=None):
            result = result if result is not None else self.defaultTestResult()
            self.scratch = Scratch(self.scratch_prefix + self._testMethodName + "-")
            before = len(result.failures) + len(result.errors) + len(getattr(result, "unexpectedSuccesses", []))
            arm_timeout()
            try:
                return super().run(result)
            finally:
                signal.alarm(0)
                stop_everything()
                after = len(result.failures) + len(result.errors) + len(getattr(result, "unexpectedSuccesses", []))
                self.scratch.finish(after == before)
except ImportError:  # pragma: no cover
    pass
