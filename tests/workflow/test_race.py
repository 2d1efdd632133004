#!/usr/bin/env python3
"""test_race.py - processes racing on one account's block state (issue 12).

A real redis-server (127.0.0.1, started here); at the same time:
  - two relays' watchers (wf_race: sg_wf_apply with what a watcher reads,
    blocked or not at random), each printing every transition it applied
    with the version it produced;
  - the real `sendguardctl lockdown ACCOUNT` and `lockdown ACCOUNT --off`,
    alternately, in a loop.
Then: the final version equals the number of transitions applied (none
lost, none applied twice); every version 1..N was produced by exactly one
writer; each watcher transition starts from the state the version before
it left (no blind write over a change it did not see); the versions no
watcher produced are sendguardctl's, each a legal lockdown/--off step; and
the watchers did lose races (so the test raced).

  test_race.py --race build/wf_race --sendguardctl build/sendguardctl
"""
import argparse
import os
import re
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import harness  # noqa: E402

ACCOUNT = "sales@example.com"
WATCH_ROUNDS = 300           # per watcher, at least (then on until sendguardctl is done)
CTL_RUNS = 150               # sendguardctl runs (lockdown and --off, alternately)
UNLOCKED = ("ok", "unblocked", "")


def env(home):
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("OVH_") and k.lower() not in ("http_proxy", "https_proxy")}
    e["HOME"] = home
    e.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")
    return e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--race", required=True)
    ap.add_argument("--sendguardctl", required=True)
    args = ap.parse_args()
    harness.require_tool("redis-server")
    harness.arm_timeout(280)
    scratch = harness.Scratch("sg-race-")
    ok = False
    redis = None
    try:
        redis = harness.RedisServer(scratch.sub("redis")).start()
        home = scratch.sub("home", mode=0o700)
        conf = scratch.file("sendguard.conf")
        with open(conf, "w") as f:
            f.write(harness.sendguard_config(
                "inet:1@127.0.0.1", [harness.limit(messages=1000, action="tempfail")],
                [{"address": ACCOUNT, "offer": "emailpro", "service": "pro1",
                  "senders": ["*@example.com"]}],
                store={"backend": "redis",
                       "redis": {"host": "127.0.0.1", "port": redis.port,
                                 "connect_timeout_ms": 5000, "command_timeout_ms": 5000}},
                relay_name="relay1"))
        e = env(home)

        outs, errs = {}, []
        stop = scratch.file("stop")

        def watcher(name, seed):
            p = subprocess.run([args.race, str(redis.port), ACCOUNT, str(WATCH_ROUNDS), str(seed),
                                stop],
                               capture_output=True, text=True, timeout=240, env=e)
            if p.returncode != 0:
                errs.append(f"{name}: rc {p.returncode}: {p.stderr}")
            outs[name] = p.stdout

        ctl_applied = []     # "lockdown" / "lockdown_off"
        ctl_nothing = [0]

        def ctl():
            try:
                ctl_runs()
            finally:
                open(stop, "w").close()     # the watchers may end

        def ctl_runs():
            for i in range(CTL_RUNS):
                off = i % 2 == 1
                p = subprocess.run([args.sendguardctl, "-c", conf, "lockdown", ACCOUNT] +
                                   (["--off"] if off else []),
                                   capture_output=True, text=True, timeout=60, env=e, cwd=home,
                                   input="")
                out = p.stdout + p.stderr
                if p.returncode == 0 and "locked down;" in p.stdout:
                    ctl_applied.append("lockdown")
                elif p.returncode == 0 and "lockdown lifted;" in p.stdout:
                    ctl_applied.append("lockdown_off")
                elif p.returncode == 0 and "nothing to do" in p.stdout:
                    ctl_nothing[0] += 1
                elif p.returncode == 1 and "is blocked at OVHcloud" in p.stderr:
                    ctl_nothing[0] += 1
                else:
                    errs.append(f"sendguardctl lockdown{' --off' if off else ''}: rc "
                                f"{p.returncode}: {out}")
                    return

        threads = [threading.Thread(target=watcher, args=("relay1", 1)),
                   threading.Thread(target=watcher, args=("relay2", 2)),
                   threading.Thread(target=ctl)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errs:
            raise AssertionError("\n".join(errs))

        # What each watcher applied, by version.
        by_version = {}
        lost = 0
        pat = re.compile(r"applied v=(\d+) from=(\w*):([01]) to=(\w*):([01]) event=(\w+) "
                         r"tries=(\d+)")
        for name, text in outs.items():
            for line in text.splitlines():
                m = pat.fullmatch(line)
                if not m:
                    raise AssertionError(f"{name}: unexpected line {line!r}")
                v = int(m.group(1))
                if v in by_version:
                    raise AssertionError(f"version {v} produced twice: {by_version[v]} and "
                                         f"{name} {line}")
                by_version[v] = (name, (m.group(2), m.group(3) == "1"),
                                 (m.group(4), m.group(5) == "1"), m.group(6))
                lost += int(m.group(7)) - 1
        final = subprocess.run([args.race, str(redis.port), ACCOUNT, "show"],
                               capture_output=True, text=True, timeout=30, env=e)
        m = re.fullmatch(r"version=(\d+) phase=(\w*) locked=([01])\s*", final.stdout)
        if not m:
            raise AssertionError(f"cannot read the final state: {final.stdout!r} {final.stderr!r}")
        n = int(m.group(1))
        final_state = (m.group(2), m.group(3) == "1")
        harness.log(f"final version {n}: watchers {len(by_version)}, sendguardctl "
                    f"{len(ctl_applied)} ({ctl_nothing[0]} runs with nothing to do), "
                    f"{lost} lost races decided again")

        # No transition lost or applied twice.
        if n != len(by_version) + len(ctl_applied):
            raise AssertionError(f"final version {n}, but {len(by_version)} watcher and "
                                 f"{len(ctl_applied)} sendguardctl transitions were applied")
        if max(by_version, default=0) > n:
            raise AssertionError(f"a watcher reports version {max(by_version)} > final {n}")
        gaps = [v for v in range(1, n + 1) if v not in by_version]
        if len(gaps) != len(ctl_applied):
            raise AssertionError(f"{len(gaps)} versions no watcher produced, "
                                 f"{len(ctl_applied)} sendguardctl transitions")
        if sorted(ctl_applied).count("lockdown") == 0:
            raise AssertionError("sendguardctl never locked down: the race did not happen")

        # Each watcher transition starts where the version before it ended.
        def state_after(v):
            if v == 0:
                return ("ok", False)
            return by_version[v][2] if v in by_version else None

        for v, (name, frm, to, event) in sorted(by_version.items()):
            before = state_after(v - 1)
            if before is not None and before != frm:
                raise AssertionError(f"version {v} ({name} {event}) started from {frm}, but "
                                     f"version {v - 1} left {before}: a blind write")
        # sendguardctl's versions: a lockdown of an unlocked account, or the
        # lift of a manual lockdown.
        for v in gaps:
            before = state_after(v - 1)
            after = by_version[v + 1][1] if v + 1 in by_version else None
            if before is None or after is None:
                continue
            legal = ((not before[1] and after == ("lockdown", True)) or
                     (before == ("lockdown", True) and after == ("unblocked", False)))
            if not legal:
                raise AssertionError(f"version {v} (sendguardctl) went from {before} to {after}")
        last = state_after(n)
        if last is not None and last != final_state:
            raise AssertionError(f"final state {final_state}, last transition left {last}")
        if lost == 0:
            raise AssertionError("no watcher lost a race: the processes did not race")
        ok = True
        print("race: ok")
    finally:
        if redis:
            redis.stop()
        scratch.finish(ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
