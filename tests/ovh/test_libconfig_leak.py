#!/usr/bin/env python3
"""test_libconfig_leak.py - a config file holding only `""` under LSan.

libconfig 1.5 (Debian 12) leaks one byte in libconfig_yylex on such a file
(a syntax error). The suite's suppressions (tests/lsan.supp) must cover that
path, and sendguardctl must still say FILE:LINE and exit 78.

    test_libconfig_leak.py SENDGUARDCTL LSAN_SUPP
    test_libconfig_leak.py --valgrind VALGRIND SENDGUARDCTL VALGRIND_SUPP
                                         (a build without sanitizers)
"""
import os
import subprocess
import sys
import tempfile


def run(ctl, conf, supp):
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1"
    env["LSAN_OPTIONS"] = ("suppressions=%s" % supp) if supp else ""
    return subprocess.run([ctl, "-c", conf, "check"], capture_output=True, text=True, env=env,
                          timeout=60)


def valgrind(vg, ctl, conf, supp):
    args = [vg, "--leak-check=full", "--errors-for-leak-kinds=definite", "--error-exitcode=99"]
    if supp:
        args.append("--suppressions=%s" % supp)
    return subprocess.run(args + [ctl, "-c", conf, "check"], capture_output=True, text=True,
                          timeout=120)


def main_valgrind(vg, ctl, supp):
    d = tempfile.mkdtemp(prefix="sg-libconfig.")
    conf = os.path.join(d, "empty-string.conf")
    with open(conf, "w") as f:
        f.write('""')
    bare = valgrind(vg, ctl, conf, None)
    if bare.returncode != 99 or "libconfig_yylex" not in bare.stderr:
        print("FAIL: valgrind without suppressions does not see the libconfig_yylex leak "
              "(rc %d):\n%s" % (bare.returncode, bare.stderr[-2000:]))
        return 1
    p = valgrind(vg, ctl, conf, supp)
    os.unlink(conf)
    os.rmdir(d)
    if p.returncode != 78 or ("%s:1: " % conf) not in p.stderr:
        print("FAIL: with the suppressions: expected exit 78 and %s:1:, got %d:\n%s"
              % (conf, p.returncode, p.stderr[-2000:]))
        return 1
    print("ok: valgrind: libconfig's leak on `\"\"` is suppressed")
    return 0


def main():
    if sys.argv[1] == "--valgrind":
        return main_valgrind(sys.argv[2], sys.argv[3], sys.argv[4])
    ctl, supp = sys.argv[1], sys.argv[2]
    for f in (ctl, supp):
        if not os.path.exists(f):
            print("FAIL: %s does not exist" % f)
            return 1
    d = tempfile.mkdtemp(prefix="sg-libconfig.")
    conf = os.path.join(d, "empty-string.conf")
    with open(conf, "w") as f:
        f.write('""')
    bare = run(ctl, conf, None)
    if "AddressSanitizer" not in bare.stderr and "LeakSanitizer" not in bare.stderr:
        # Not an ASan build, or a libconfig without the leak: the check below
        # would prove nothing.
        print("FAIL: no leak report without suppressions: is this the ASan build? %r" % bare.stderr)
        return 1
    if "libconfig_yylex" not in bare.stderr:
        print("FAIL: the unsuppressed leak is not the libconfig_yylex one:\n%s" % bare.stderr)
        return 1
    p = run(ctl, conf, supp)
    os.unlink(conf)
    os.rmdir(d)
    if "LeakSanitizer" in p.stderr or "AddressSanitizer" in p.stderr:
        print("FAIL: the suppressions do not cover the leak:\n%s" % p.stderr)
        return 1
    # 78 (EX_CONFIG) for a bad config; 23 would be LeakSanitizer's own.
    if p.returncode != 78 or ("%s:1: " % conf) not in p.stderr:
        print("FAIL: expected exit 78 and %s:1: ..., got %d: %r" % (conf, p.returncode, p.stderr))
        return 1
    print("ok: libconfig's leak on `\"\"` is suppressed; the error says %s" % p.stderr.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
