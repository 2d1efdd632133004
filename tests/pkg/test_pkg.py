#!/usr/bin/env python3
"""
test_pkg - the Debian package, built, installed, used and purged for real.

One test (ctest: pkg_deb), in order:
  1. copy the source tree to a scratch directory and run
     `dpkg-buildpackage -us -uc -b` there (the unit tests run at build time);
  2. lintian on the .changes: no error; a warning only if
     debian/README.source names it;
  3. `dpkg -i` the .deb; check the package's files, their modes and owners,
     the conffile, the dependencies (a package for every library the
     programs link), the sendguard user and group, postfix in that group,
     the socket directory in Postfix's chroot; the same made again by the
     file trigger on /usr/sbin/postfix (Postfix installed later); a second
     `dpkg -i` (the upgrade path) keeps all of it and an edited conffile;
  4. `sendguard -t -c /etc/sendguard/sendguard.conf`;
  5. the installed daemon with the installed configuration, in the
     foreground (no systemd here): it runs as sendguard, its socket is
     closed to other users and open to the postfix user (with only its
     primary group, as Postfix's daemons run), a reload reads the 0640
     configuration, and a throwaway Postfix (tests/e2e/harness.py) pointed
     at that socket gets one message accepted, logged and relayed;
  6. `dpkg -r` (conffile kept, programs gone, nothing running), then
     `dpkg -P` (nothing of the package left: files, directories, permission
     overrides, systemd enablement links).
Whatever happens, the machine is put back: daemons stopped, the package
purged, the sendguard user and group removed if this test created them.

Needs root, dpkg-dev, debhelper, lintian, fakeroot, the build dependencies,
postfix and python3 (contrib/sg-setup test installs them). It refuses to run
(FAILS) when sendguard is already installed on the machine, rather than
touch that installation. Runs hold a lock: two suites on one machine take
turns.

    ctest -R '^pkg_' --output-on-failure
    python3 tests/pkg/test_pkg.py -v            (by hand, as root)
"""
from __future__ import annotations

import errno
import fcntl
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
# The whole test may take minutes on a loaded machine (the package build);
# ctest gives 600 s and sets 540 (tests/pkg/CMakeLists.txt).
os.environ.setdefault("SG_TEST_TIMEOUT", "940")
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import harness as h  # noqa: E402

SOURCE = os.environ.get("SG_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
PKG = "sendguard"
CONF = "/etc/sendguard/sendguard.conf"
SPOOL_DIR = "/var/spool/postfix/sendguard"
SOCKET = SPOOL_DIR + "/sendguard.sock"
LOCK = "/run/lock/sendguard-pkg-test.lock"
# Paths that must not exist before (a hand installation this test would
# clobber) nor after a purge.
OWN_PATHS = ("/etc/sendguard", "/usr/sbin/sendguard", "/usr/sbin/sendguardctl",
             "/lib/systemd/system/sendguard.service", "/usr/lib/systemd/system/sendguard.service",
             "/usr/share/doc/sendguard", SPOOL_DIR,
             "/etc/systemd/system/multi-user.target.wants/sendguard.service",
             "/var/lib/systemd/deb-systemd-helper-enabled/sendguard.service.dsh-also",
             "/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/sendguard.service")
CLEAN_ENV = {"PATH": h.SBIN_PATH, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}


def log(msg):
    print(f"[pkg {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(args, timeout=60, env=None, logfile=None, check=True, cwd=None):
    """Run a command; its output goes to logfile (or is kept). AssertionError
    with the tail of the output when check and it fails."""
    e = dict(CLEAN_ENV, **(env or {}))
    if logfile:
        with open(logfile, "ab") as f:
            f.write(f"\n$ {' '.join(args)}\n".encode())
            f.flush()
            r = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, timeout=timeout,
                               env=e, cwd=cwd, stdin=subprocess.DEVNULL)
        out = h.tail(logfile, 60)
    else:
        r = subprocess.run(args, capture_output=True, timeout=timeout, env=e, cwd=cwd,
                           stdin=subprocess.DEVNULL)
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        r.out = out
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> exit {r.returncode}\n{out}")
    return r


def dpkg(args, logfile, timeout=180):
    """dpkg, waiting for the dpkg lock while someone else's apt or dpkg holds it."""
    deadline = time.monotonic() + timeout
    while True:
        r = run(["dpkg", *args], timeout=timeout, logfile=None, check=False)
        with open(logfile, "ab") as f:
            f.write(f"\n$ dpkg {' '.join(args)} -> {r.returncode}\n{r.out}".encode())
        if r.returncode == 0:
            return r
        if re.search(r"lock|locked", r.out) and time.monotonic() < deadline:
            time.sleep(2)
            continue
        raise AssertionError(f"dpkg {' '.join(args)} -> exit {r.returncode}\n{r.out}")


def pkg_status():
    """dpkg's two-letter status of the package ('ii', 'rc', ...), or None if unknown."""
    r = run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", PKG], check=False)
    return r.stdout.decode().strip() or None if r.returncode == 0 else None


def pkg_installed_or_configured():
    s = pkg_status()
    return s is not None and len(s) >= 2 and s[1] != "n"


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def processes_of(exe_prefix):
    """pids whose executable is exe_prefix (also '... (deleted)')."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{d}/exe")
        except OSError:
            continue
        if exe == exe_prefix or exe.startswith(exe_prefix + " "):
            out.append(int(d))
    return out


def describe(path):
    st = os.lstat(path)
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{stat.filemode(st.st_mode)} {owner}:{group} ({oct(stat.S_IMODE(st.st_mode))})"


def connect_as(uid, gid, path):
    """Connect to a unix socket as uid with gid as its only group (what
    Postfix's set_ugid() leaves its daemons); None, or the error text."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(path)
            os._exit(0)
        except BaseException as e:   # the child must never return into the test
            os.write(w, str(e).encode()[:500])
            os._exit(1)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    return None if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 else (msg or f"status {status}")


class Lock:
    """An exclusive flock on LOCK, waited for up to `timeout` seconds."""

    def __init__(self, timeout=300):
        self.fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    os.close(self.fd)
                    raise AssertionError(f"cannot take {LOCK} (another package test?): {e}")
                time.sleep(1)

    def release(self):
        os.close(self.fd)


class Package(h.ScratchTestCase):
    scratch_prefix = "sg-pkg-"

    # ------------------------------------------------------------------ set-up
    def setUp(self):
        h.require_root("installing a package")
        for tool, deb in (("dpkg-buildpackage", "dpkg-dev"), ("dh", "debhelper"),
                          ("lintian", "lintian"), ("fakeroot", "fakeroot"),
                          ("postfix", "postfix"), ("smtp-sink", "postfix"),
                          ("readelf", "binutils"), ("adduser", "adduser")):
            h.require_tool(tool, deb)
        self.lock = Lock()
        self.addCleanup(self.lock.release)
        self.log = self.scratch.file("commands.log")
        # Never clobber an installation that was there before.
        if pkg_installed_or_configured():
            self.fail(f"{PKG} is installed on this machine (dpkg status {pkg_status()!r}): "
                      "this test installs and purges its own package; it will not touch yours "
                      "(dpkg -P sendguard first, or run it on a test machine)")
        present = [p for p in OWN_PATHS if os.path.lexists(p)]
        if present:
            self.fail("files of a sendguard installation are present, not from a package: "
                      f"{present}; this test would remove them: refusing")
        running = processes_of("/usr/sbin/sendguard")
        if running:
            self.fail(f"/usr/sbin/sendguard is running (pids {running}): refusing")
        self.had_user = user_exists("sendguard")
        self.had_group = group_exists("sendguard")
        self.daemon = None
        self.addCleanup(self.restore_machine)

    def restore_machine(self):
        """Put the machine back as it was: nothing of the package, no user
        or group this test created. Runs even when the test failed."""
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait(10)
        h.stop_everything()
        if pkg_installed_or_configured():
            log("cleanup: purging the package")
            try:
                dpkg(["-P", PKG], self.log)
            except AssertionError as e:
                log(f"cleanup: dpkg -P failed: {e}")
        if not self.had_user and user_exists("sendguard"):
            run(["deluser", "--system", "--quiet", "sendguard"], check=False)
        if not self.had_group and group_exists("sendguard"):
            run(["delgroup", "--system", "--quiet", "sendguard"], check=False)

    # ------------------------------------------------------------------ helpers
    def assertPath(self, path, kind, mode, owner="root", group="root"):
        """kind: 'f', 'd', 's' (socket) or 'l' (symlink, mode/owner ignored)."""
        with self.subTest(path=path):
            self.assertTrue(os.path.lexists(path), f"{path}: missing")
            st = os.lstat(path)
            want = {"f": stat.S_ISREG, "d": stat.S_ISDIR, "s": stat.S_ISSOCK,
                    "l": stat.S_ISLNK}[kind]
            self.assertTrue(want(st.st_mode), f"{path}: not of kind {kind}: {describe(path)}")
            if kind == "l":
                return
            got = (stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name,
                   grp.getgrgid(st.st_gid).gr_name)
            self.assertEqual(got, (mode, owner, group),
                             f"{path}: want {oct(mode)} {owner}:{group}, got {describe(path)}")

    def phase(self, name):
        now = time.monotonic()
        if getattr(self, "_phase", None):
            log(f"{self._phase[0]}: {now - self._phase[1]:.1f} s")
        self._phase = (name, now) if name else None

    # ------------------------------------------------------------------ steps
    def build(self):
        """Copy the tree (no build dirs, no .git) and build the binary package."""
        src = os.path.join(self.scratch.sub("src"), PKG)

        def ignore(d, names):
            top = os.path.abspath(d) == os.path.abspath(SOURCE)
            out = {n for n in names if n in ("__pycache__", ".git") or n.endswith(".pyc")}
            if top:
                out |= {n for n in names if n.startswith(("build", "obj-"))}
            if os.path.basename(d) == "debian" and os.path.dirname(os.path.abspath(d)) == \
                    os.path.abspath(SOURCE):
                out |= {n for n in names if n in ("build", PKG, "tmp", ".debhelper",
                                                  "debhelper-build-stamp", "files")
                        or n.endswith((".substvars", ".log"))}
            return out
        shutil.copytree(SOURCE, src, symlinks=True, ignore=ignore)
        with open(os.path.join(src, "debian", "changelog")) as f:
            m = re.match(r"sendguard \(([^)]+)\)", f.readline())
        self.assertTrue(m, "debian/changelog: no version on its first line")
        self.version = m.group(1)
        jobs = min(2, os.cpu_count() or 1)
        run(["dpkg-buildpackage", "-us", "-uc", "-b"], timeout=720, cwd=src,
            env={"DEB_BUILD_OPTIONS": f"parallel={jobs}", "HOME": self.scratch.path},
            logfile=self.scratch.file("build.log"))
        with open(self.scratch.file("build.log"), "rb") as f:
            build_log = f.read().decode("utf-8", "replace")
        # the unit tests did run at build time, and all passed
        m = re.search(r"100% tests passed, 0 tests failed out of (\d+)", build_log)
        self.assertTrue(m and int(m.group(1)) >= 10,
                        "dh_auto_test did not run the unit tests (no '100% tests passed' "
                        f"line in the build log):\n{h.tail(self.scratch.file('build.log'))}")
        self.deb = os.path.join(os.path.dirname(src), f"{PKG}_{self.version}_amd64.deb")
        self.changes = os.path.join(os.path.dirname(src), f"{PKG}_{self.version}_amd64.changes")
        self.assertTrue(os.path.isfile(self.deb), f"no {self.deb} after the build")
        self.src = src
        # the objects are not needed any more (a failed test keeps its scratch dir)
        shutil.rmtree(os.path.join(src, "debian", "build"), ignore_errors=True)

    def lintian(self):
        r = run(["lintian", "--pedantic", "-I", "--fail-on", "none", self.changes], timeout=180,
                check=False)
        with open(self.log, "ab") as f:
            f.write(f"\n$ lintian ...\n{r.out}".encode())
        self.assertEqual(r.returncode, 0, f"lintian itself failed:\n{r.out}")
        with open(os.path.join(self.src, "debian", "README.source")) as f:
            explained = f.read()
        tags = re.findall(r"^([EWIPX]): [^:]+: (\S+)", r.out, re.M)
        errors = [t for k, t in tags if k == "E"]
        unexplained = [t for k, t in tags if k == "W" and t not in explained]
        self.assertEqual(errors, [], f"lintian errors:\n{r.out}")
        self.assertEqual(unexplained, [], f"lintian warnings not explained in "
                         f"debian/README.source:\n{r.out}")
        log(f"lintian: {len(tags)} tags, none an error: {sorted(set(t for _, t in tags))}")

    def check_installed(self):
        self.assertEqual(pkg_status(), "ii", "package not installed and configured")
        r = run(["dpkg-query", "-W", "-f=${Version}\n${Depends}\n${Recommends}\n${Conffiles}\n",
                 PKG])
        version, depends, recommends, conffiles = (r.stdout.decode().split("\n", 3) + [""])[:4]
        self.assertEqual(version, self.version)
        self.assertIn("redis-server", recommends)
        self.assertIn(f" {CONF} ", conffiles + " ", "the configuration is not a conffile")
        self.dep_names = {re.split(r"[\s(:]", d.strip())[0] for alt in depends.split(",")
                          for d in alt.split("|")}
        # Programs, configuration, unit, man pages, examples.
        self.assertPath("/usr/sbin/sendguard", "f", 0o755)
        self.assertPath("/usr/sbin/sendguardctl", "f", 0o755)
        self.assertPath("/etc/sendguard", "d", 0o750, "root", "sendguard")
        self.assertPath(CONF, "f", 0o640, "root", "sendguard")
        self.assertPath("/lib/systemd/system/sendguard.service", "f", 0o644)
        for page in ("man8/sendguard.8.gz", "man8/sendguardctl.8.gz", "man5/sendguard.conf.5.gz"):
            self.assertPath("/usr/share/man/" + page, "f", 0o644)
        for ex in ("sendguard.conf", "ovh.conf", "postfix-main.cf", "sendmail.mc", "sendguard.json"):
            self.assertPath("/usr/share/doc/sendguard/examples/" + ex, "f", 0o644)
        self.assertPath("/usr/share/doc/sendguard/examples/sendguard-release-sendmail", "f", 0o755)
        for unit in ("sendguard.service", "sendguard-release.socket", "sendguard-release@.service"):
            self.assertPath("/lib/systemd/system/" + unit, "f", 0o644)
        self.assertPath("/usr/share/doc/sendguard/copyright", "f", 0o644)
        with open("/lib/systemd/system/sendguard.service") as f:
            unit = f.read()
        self.assertRegex(unit, r"(?m)^ExecStart=/usr/sbin/sendguard .*-c /etc/sendguard/sendguard\.conf")
        self.assertRegex(unit, r"(?m)^ExecStartPre=/usr/sbin/sendguard -t ")
        # enabled by dh_installsystemd (links are made even without systemd)
        self.assertPath("/etc/systemd/system/multi-user.target.wants/sendguard.service", "l", 0)
        # The user and group; postfix in the group; the socket directory.
        pw = pwd.getpwnam("sendguard")
        self.assertLess(pw.pw_uid, 1000, "sendguard is not a system user")
        self.assertEqual(grp.getgrgid(pw.pw_gid).gr_name, "sendguard")
        self.assertIn(pw.pw_shell, ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false"))
        self.assertFalse(os.path.exists(pw.pw_dir) and pw.pw_dir != "/nonexistent",
                         f"a home directory was made: {pw.pw_dir}")
        self.assertIn("postfix", grp.getgrnam("sendguard").gr_mem)
        self.assertPath(SPOOL_DIR, "d", 0o2750, "sendguard", "postfix")
        # Dependencies: a package in Depends for every library a program
        # links (its NEEDED entries), as dh_shlibdeps should have made them.
        links = []     # (program, soname, resolved path)
        for exe in ("/usr/sbin/sendguard", "/usr/sbin/sendguardctl"):
            needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                                run(["readelf", "-d", exe]).out)
            self.assertTrue(needed, f"{exe}: no NEEDED entries?")
            ldd = run(["ldd", exe]).out
            for soname in needed:
                m = re.search(rf"^\s*{re.escape(soname)} => (\S+)", ldd, re.M)
                self.assertTrue(m, f"{exe}: {soname} not resolved by ldd:\n{ldd}")
                links.append((exe, soname, m.group(1)))
        owners = self.packages_of([p for _, _, p in links])
        for exe, soname, path in links:
            with self.subTest(exe=exe, lib=soname):
                self.assertIn(owners.get(path), self.dep_names,
                              f"{exe} links {soname} ({path}, package {owners.get(path)}) but "
                              f"Depends is {depends!r}")
        # statoverrides the postinst added
        r = run(["dpkg-statoverride", "--list", "/etc/sendguard*"], check=False)
        self.assertRegex(r.out, r"(?m)^root sendguard 0?750 /etc/sendguard$")
        self.assertRegex(r.out, rf"(?m)^root sendguard 0?640 {re.escape(CONF)}$")

    def check_trigger(self):
        """Postfix installed after sendguard: dpkg's file trigger on
        /usr/sbin/postfix makes the postinst prepare what configure would
        have (simulated: undo it, activate the trigger, process it)."""
        run(["deluser", "--quiet", "postfix", "sendguard"])
        os.rmdir(SPOOL_DIR)
        self.assertNotIn("postfix", grp.getgrnam("sendguard").gr_mem)
        run(["dpkg-trigger", "--no-await", "/usr/sbin/postfix"])
        dpkg(["--triggers-only", PKG], self.log)
        self.assertIn("postfix", grp.getgrnam("sendguard").gr_mem,
                      "the trigger did not add postfix to the sendguard group")
        self.assertPath(SPOOL_DIR, "d", 0o2750, "sendguard", "postfix")
        self.assertEqual(pkg_status(), "ii")

    def check_reinstall(self):
        """dpkg -i of the same version again (what an upgrade runs): the
        maintainer scripts are idempotent, the permissions stay, an edited
        conffile is kept."""
        with open(CONF, "a") as f:
            f.write("# edited by the package test\n")
        dpkg(["-i", "--force-confold", self.deb], self.log)
        self.assertEqual(pkg_status(), "ii")
        with open(CONF) as f:
            self.assertIn("# edited by the package test", f.read(), "the edited conffile was replaced")
        self.assertPath("/etc/sendguard", "d", 0o750, "root", "sendguard")
        self.assertPath(CONF, "f", 0o640, "root", "sendguard")
        self.assertPath(SPOOL_DIR, "d", 0o2750, "sendguard", "postfix")
        r = run(["dpkg-statoverride", "--list"])
        self.assertEqual(len(re.findall(r"/etc/sendguard", r.out)), 2, r.out)

    def packages_of(self, paths):
        """{path: the package that owns it}, in one dpkg-query (a library may
        be known to dpkg under /usr/lib or /lib: merged /usr)."""
        alias = {}
        for p in paths:
            for c in {p, os.path.realpath(p)}:
                for a in (c, c[4:] if c.startswith("/usr/") else "/usr" + c):
                    alias.setdefault(a, set()).add(p)
        r = run(["dpkg-query", "-S", *sorted(alias)], check=False)
        out = {}
        for line in r.out.splitlines():
            m = re.match(r"^([^:,\s]+)(?::[^:\s]+)?: (/\S+)$", line)
            if m:
                for p in alias.get(m.group(2), ()):
                    out.setdefault(p, m.group(1))
        missing = [p for p in paths if p not in out]
        self.assertEqual(missing, [], f"no package owns these libraries:\n{r.out}")
        return out

    def run_daemon(self):
        """The installed daemon, installed config, foreground; Postfix on its socket."""
        log_path = self.scratch.file("sendguard.log")
        self.daemon_log = log_path
        fh = open(log_path, "ab", buffering=0)
        self.addCleanup(fh.close)
        self.daemon = subprocess.Popen(["/usr/sbin/sendguard", "-f", "-c", CONF],
                                       stdin=subprocess.DEVNULL, stdout=fh, stderr=fh,
                                       env=CLEAN_ENV, start_new_session=True)

        def listening():
            if self.daemon.poll() is not None:
                raise AssertionError(f"sendguard exited with {self.daemon.returncode}:\n"
                                     f"{h.tail(log_path)}")
            with open(log_path, "rb") as f:
                return b"listening on" in f.read() and h.unix_accepts(SOCKET)
        h.wait_until(listening, 20, f"the installed sendguard listening on {SOCKET}")
        sg = pwd.getpwnam("sendguard")
        with open(f"/proc/{self.daemon.pid}/status") as f:
            status = f.read()
        uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
        gids = re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()
        self.assertEqual(set(uids), {str(sg.pw_uid)}, f"the daemon does not run as sendguard: Uid {uids}")
        self.assertEqual(set(gids), {str(sg.pw_gid)}, f"the daemon's group is not sendguard: Gid {gids}")
        # The socket: nothing for other users; usable by the postfix user
        # with only its primary group (Postfix's set_ugid() drops the
        # supplementary groups, so membership in sendguard does not count).
        st = os.stat(SOCKET)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode) & 0o007, 0,
                         f"{SOCKET} is open to other users: {describe(SOCKET)}")
        log(f"socket {SOCKET}: {describe(SOCKET)}")
        pf = pwd.getpwnam("postfix")
        err = connect_as(pf.pw_uid, pf.pw_gid, SOCKET)
        self.assertIsNone(err, f"the postfix user (primary group only, as Postfix's daemons run) "
                          f"cannot connect to {SOCKET} ({describe(SOCKET)}; directory "
                          f"{describe(SPOOL_DIR)}): {err}")
        # A reload: the daemon, now sendguard, reads the 0640 root:sendguard file.
        mark = os.path.getsize(log_path)
        os.kill(self.daemon.pid, signal.SIGUSR1)

        def reloaded():
            with open(log_path, "rb") as f:
                f.seek(mark)
                text = f.read().decode("latin-1")
            if "reload of" in text and "failed" in text:
                raise AssertionError(f"reload failed:\n{text}")
            return "reloaded " + CONF in text
        h.wait_until(reloaded, 10, "the reload")

        # A throwaway Postfix (own config and queue, loopback) on that socket.
        sink = h.SmtpSink(self.scratch.sub("sink")).start()
        postfix = h.Postfix(self.scratch.sub("postfix"), relay_port=sink.port,
                            milter="unix:" + SOCKET).start()
        res = h.smtp_send(postfix.smtpd_port, 1, "pkgtest@example.com",
                          recipients=("rcpt@example.net",), subject="package test")
        self.assertEqual([r.klass for r in res], ["2xx"],
                         f"Postfix did not accept the message: {res}\n{postfix.maillog_text()[-3000:]}"
                         f"\nsendguard:\n{h.tail(log_path)}")
        qid = res[0].qid
        sink.wait_count(1, timeout=30)

        def decision():
            with open(log_path, "rb") as f:
                lines = f.read().decode("latin-1").split("\n")
            return [ln for ln in lines if h.is_decision(h.split_log_line(ln)[1])]
        lines = h.wait_until(decision, 15, "sendguard's decision line")
        self.assertEqual(len(lines), 1, lines)
        kv = h.parse_kv(h.split_log_line(lines[0])[1])
        self.assertEqual(kv.get("action"), "accept", lines[0])
        self.assertEqual(kv.get("qid"), qid, lines[0])
        self.assertEqual(kv.get("identity"), "<pkgtest@example.com>", lines[0])
        self.assertEqual(h.check_decision_line(lines[0]), [], lines[0])
        trouble = [ln for ln in postfix.maillog_text().splitlines()
                   if "milter" in ln and re.search(r"\b(warning|error|fatal|panic):", ln)]
        self.assertEqual(trouble, [], "Postfix complained about the milter")
        log(f"accepted and logged: {lines[0]}")
        postfix.stop()
        sink.stop()
        # SIGTERM: a clean exit, the socket removed.
        self.daemon.send_signal(signal.SIGTERM)
        rc = self.daemon.wait(15)
        self.assertEqual(rc, 0, f"sendguard exited with {rc} on SIGTERM:\n{h.tail(log_path)}")
        self.assertFalse(os.path.lexists(SOCKET), f"{SOCKET} left behind")

    def remove_and_purge(self):
        files = run(["dpkg-query", "-L", PKG]).out.split("\n")
        dpkg(["-r", PKG], self.log)
        self.assertEqual(pkg_status(), "rc", "after dpkg -r: want config-files state")
        self.assertTrue(os.path.isfile(CONF), "dpkg -r removed the conffile")
        for p in ("/usr/sbin/sendguard", "/usr/sbin/sendguardctl",
                  "/lib/systemd/system/sendguard.service"):
            self.assertFalse(os.path.lexists(p), f"{p} still there after dpkg -r")
        self.assertEqual(processes_of("/usr/sbin/sendguard"), [], "sendguard still running")
        dpkg(["-P", PKG], self.log)
        self.assertFalse(pkg_installed_or_configured(), f"after dpkg -P: status {pkg_status()!r}")
        left = [p for p in files if p and not os.path.isdir(p) and os.path.lexists(p)]
        left += [p for p in files if "sendguard" in p and os.path.lexists(p)]
        left += [p for p in OWN_PATHS if os.path.lexists(p)]
        self.assertEqual(sorted(set(left)), [], "left behind after dpkg -P")
        r = run(["dpkg-statoverride", "--list"], check=False)
        self.assertNotIn("sendguard", r.out, "dpkg-statoverride entries left after purge")
        self.assertEqual(processes_of("/usr/sbin/sendguard"), [])
        # Debian's convention: purge keeps the system user (files of its uid
        # may remain somewhere); this test removes it afterwards if it made it.
        self.assertTrue(user_exists("sendguard"), "purge removed the sendguard user")

    # ------------------------------------------------------------------ the test
    def test_package(self):
        t0 = time.monotonic()
        self.phase("build (dpkg-buildpackage -us -uc -b)")
        self.build()
        self.phase("lintian")
        self.lintian()
        self.phase("install (dpkg -i)")
        dpkg(["-i", self.deb], self.log)
        if os.path.isdir("/run/systemd/system"):
            # A machine with systemd: the postinst started the unit; it must
            # be running. Stop it so the foreground run below has the socket.
            r = run(["systemctl", "is-active", "sendguard"], check=False)
            self.assertEqual(r.out.strip(), "active", f"sendguard.service is not active: {r.out}")
            run(["systemctl", "stop", "sendguard"])
        self.phase("installed files")
        self.check_installed()
        self.phase("Postfix installed later (trigger)")
        self.check_trigger()
        self.phase("reinstall (dpkg -i again: upgrade path)")
        self.check_reinstall()
        self.phase("sendguard -t")
        r = run(["/usr/sbin/sendguard", "-t", "-c", CONF], check=False)
        self.assertEqual(r.returncode, 0, f"sendguard -t -c {CONF}: {r.out}")
        self.phase("daemon + Postfix")
        self.run_daemon()
        self.phase("dpkg -r, dpkg -P")
        self.remove_and_purge()
        self.phase(None)
        log(f"total {time.monotonic() - t0:.1f} s")


if __name__ == "__main__":
    unittest.main()
