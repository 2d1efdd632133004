#!/usr/bin/env python3
"""
test_relays.py - several sendguard relays on one shared Redis.

Two `sendguard -f -c CONF` processes (each on its own unix socket, each with
its own relay_name) count in one throwaway redis-server (random loopback
port, no persistence, scratch dir). The MTA side is tests/milter/
milterclient.py, driven from threads: one milter connection per message,
queue id passed in the {i} macro so that every reply can be matched with
its decision line (and with Redis' own record of the message).

Cases (one ctest entry each, relays_<name>):
  alternating       cap N, 3N messages alternating between the relays:
                    exactly N accepted in total, the rest 451 4.7.1
  commandstats      M accepted messages = M EVALSHA, nothing else per message;
                    32 parallel senders open at most pool_size (2) connections a relay
  redis_killed      SIGKILL redis mid-run (on_error accept, then tempfail):
                    no crash, no hang, the fail mode on every message during
                    the outage, store=redis again after the restart
  sentinel          master + replica + sentinel, SENTINEL FAILOVER:
                    decisions continue on the new master
  window_property   16 parallel clients on two relays, random recipients:
                    no closed sliding window holds more than a cap
  status_reset      sendguardctl status [--json] / reset on the shared state
  flood             random senders: one key each, caps of an account exact,
                    the flood: log line and sendguardctl report --flood
  evicted           Redis under maxmemory, allkeys-lru: the policy warning and
                    the event=evicted line (waits a minute)

A missing redis-server, redis-sentinel, sendguard or sendguardctl is a
FAILURE, never a skip. Everything started is stopped (harness safety net
plus try/finally); the scratch dir is removed when the test passed and kept
(path printed) when it failed.

  SG_SENDGUARD=build/sendguard SG_SENDGUARDCTL=build/sendguardctl \\
      python3 tests/relays/test_relays.py -v Relays.test_alternating
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "milter"))
import harness as h          # noqa: E402
import milterclient as mc    # noqa: E402

LOOPBACK = h.LOOPBACK


def sendguardctl_binary():
    b = os.environ.get("SG_SENDGUARDCTL")
    if not b:
        b = os.path.join(os.path.dirname(h.sendguard_binary()), "sendguardctl")
    return b


# --------------------------------------------------------------------------
# the MTA side: one message on one milter connection
# --------------------------------------------------------------------------
class Sent:
    """One message as the client saw it. t_send: just before EOM was sent;
    t_recv: just after its final reply arrived (time.time(), the same
    CLOCK_REALTIME that redis TIME reads)."""

    __slots__ = ("qid", "relay", "sender", "rcpts", "verdict", "reply", "t_send", "t_recv", "error")

    def __init__(self, qid, relay, sender, rcpts):
        self.qid, self.relay, self.sender, self.rcpts = qid, relay, sender, list(rcpts)
        self.verdict = self.reply = self.error = None
        self.t_send = self.t_recv = None

    @property
    def latency(self):
        return None if self.t_recv is None else self.t_recv - self.t_send

    def __repr__(self):
        return (f"<{self.qid} via {self.relay} {self.verdict} {self.reply!r}"
                f"{' ERROR ' + self.error if self.error else ''}>")


def send_one(relay, sender, rcpts, qid, ip="192.0.2.10", timeout=10.0):
    """MAIL .. EOM of one message through `relay` (a Relay). Never raises
    for a milter/socket problem: Sent.error says what happened."""
    s = Sent(qid, relay.name, sender, rcpts)
    c = None
    try:
        c = mc.MilterClient(relay.sg.socket, timeout=timeout)
        c.negotiate()
        c.connect("client.example", ip)
        c.macro("M", {"i": qid})
        c.mail([f"<{sender}>"])
        for r in rcpts:
            c.rcpt([f"<{r}>"])
        c.data()
        c.header("From", f"<{sender}>")
        c.header("Message-ID", f"<{qid}@relays.test>")
        c.eoh()
        c.body(b"relay test\r\n")
        c.macro("E", {"i": qid})
        s.t_send = time.time()
        res = c.eom()
        s.t_recv = time.time()
        s.verdict, s.reply = res.verdict, res.reply
    except (mc.MilterError, OSError) as e:
        if s.t_send is None:
            s.t_send = time.time()
        s.error = f"{type(e).__name__}: {e}"
    finally:
        if c is not None:
            c.quit()
    return s


class QidSource:
    def __init__(self, prefix):
        self.prefix, self.n, self.lock = prefix, 0, threading.Lock()

    def __call__(self):
        with self.lock:
            self.n += 1
            return f"{self.prefix}{self.n:05d}"


def parallel(jobs, nthreads):
    """Run callables on nthreads threads; returns their results in order."""
    out = [None] * len(jobs)
    it = iter(enumerate(jobs))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                try:
                    i, fn = next(it)
                except StopIteration:
                    return
            out[i] = fn()
    ts = [threading.Thread(target=worker, daemon=True) for _ in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return out


class Stream:
    """Background senders: one thread per (relay, slot) sending messages
    one after the other until stopped; every Sent kept in order."""

    def __init__(self, relays, sender, rcpts_fn, qids, per_relay=1, pause=0.0):
        self.relays, self.sender, self.rcpts_fn, self.qids = relays, sender, rcpts_fn, qids
        self.per_relay, self.pause = per_relay, pause
        self.sent = []
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = []

    def _run(self, relay, seed):
        rnd = random.Random(seed)
        while not self.stop_ev.is_set():
            s = send_one(relay, self.sender, self.rcpts_fn(rnd), self.qids())
            with self.lock:
                self.sent.append(s)
            if self.pause:
                self.stop_ev.wait(self.pause * (0.5 + rnd.random()))

    def start(self):
        n = 0
        for relay in self.relays:
            for _ in range(self.per_relay):
                n += 1
                t = threading.Thread(target=self._run, args=(relay, n), daemon=True)
                t.start()
                self.threads.append(t)
        return self

    def stop(self, timeout=30):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout)
        alive = [t for t in self.threads if t.is_alive()]
        if alive:
            raise AssertionError(f"{len(alive)} sender threads still blocked {timeout}s after stop: "
                                 "a milter reply never came (hang)")
        with self.lock:
            return list(self.sent)

    def count(self):
        with self.lock:
            return len(self.sent)


# --------------------------------------------------------------------------
# sendguard relays
# --------------------------------------------------------------------------
def redis_store(port=None, on_error="accept", sentinel=None, **more):
    r = {"host": LOOPBACK, "port": port, "connect_timeout_ms": 200, "command_timeout_ms": 200,
         "pool_size": 8}
    if sentinel is not None:
        del r["host"], r["port"]
        r["sentinel"] = sentinel
    r.update(more)
    return {"backend": "redis", "on_error": on_error, "redis": r}


class Relay:
    def __init__(self, scratch, name, limits, store, accounts=(), extra=None):
        self.name = name
        self.sg = h.Sendguard(sendguard_binary(), scratch.sub(name),
                              lambda sock: h.sendguard_config(sock, limits, accounts=accounts,
                                                              store=store, relay_name=name,
                                                              **(extra or {})))

    def start(self):
        self.sg.start()
        return self

    def decisions(self):
        out = []
        for d in self.sg.decisions():
            d["_relay"] = self.name
            out.append(d)
        return out


def sendguard_binary():
    b = h.sendguard_binary()
    if not os.access(b, os.X_OK):
        raise h.HarnessError(f"sendguard binary not found or not executable: {b!r}")
    return b


class Sentinel:
    """A real redis-sentinel on a free loopback port watching one master."""

    def __init__(self, workdir, master_port, name="mymaster", down_after_ms=1000):
        self.workdir = workdir
        self.port = h.free_port()
        self.name = name
        self.conf = os.path.join(workdir, "sentinel.conf")
        self.logfile = os.path.join(workdir, "sentinel.log")
        self.proc = None
        os.makedirs(workdir, exist_ok=True)
        with open(self.conf, "w") as f:      # sentinel rewrites this file: keep it writable
            f.write(f"port {self.port}\nbind {LOOPBACK}\ndaemonize no\n"
                    f"logfile \"{self.logfile}\"\ndir \"{workdir}\"\n"
                    f"sentinel monitor {name} {LOOPBACK} {master_port} 1\n"
                    f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
                    f"sentinel failover-timeout {name} 10000\n"
                    f"sentinel parallel-syncs {name} 1\n")

    def start(self, timeout=10):
        exe = h.require_tool("redis-sentinel", "redis-sentinel")
        self.proc = subprocess.Popen([exe, self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, preexec_fn=h._child_setup)
        h._register(self)

        def ready():
            if self.proc.poll() is not None:
                raise h.HarnessError(f"redis-sentinel exited ({self.proc.returncode}):\n"
                                     f"{h.tail(self.logfile)}")
            try:
                return self.command("PING") == "PONG"
            except OSError:
                return False
        h.wait_until(ready, timeout, f"redis-sentinel on port {self.port}")
        return self

    def command(self, *args, timeout=5):
        return redis_call(self.port, *args, timeout=timeout)

    def stop(self):
        h._unregister(self)
        if self.proc is not None:
            h._kill_process(self.proc, 5)

    def __repr__(self):
        return f"Sentinel(port={self.port})"


def info(redis, section):
    """INFO section -> {key: value} (values as strings)."""
    out = {}
    for line in redis.command("INFO", section).splitlines():
        if ":" in line and not line.startswith("#"):
            k, _, v = line.partition(":")
            out[k] = v
    return out


def commandstats(redis):
    """{command: {'calls': n, 'failed_calls': n, 'rejected_calls': n}}"""
    out = {}
    for k, v in info(redis, "commandstats").items():
        if not k.startswith("cmdstat_"):
            continue
        d = {}
        for kv in v.split(","):
            a, _, b = kv.partition("=")
            try:
                d[a] = int(b)
            except ValueError:
                pass
        out[k[len("cmdstat_"):]] = d
    return out


class Monitor:
    """A MONITOR connection read by a thread: who sent which command.
    Commands a Lua script runs show up with the source "lua", the clients'
    own with their address; admin commands (CONFIG, INFO, ...) and AUTH do
    not show up at all (commandstats still counts them)."""

    LINE = re.compile(r'^\+?\d+\.\d+ \[\d+ ([^\]]+)\] "((?:[^"\\]|\\.)*)"(?: "((?:[^"\\]|\\.)*)")?')
    END = "sg-relays-monitor-end"

    def __init__(self, redis):
        self.redis = redis
        self.sock = socket.create_connection((LOOPBACK, redis.port), timeout=30)
        self.f = self.sock.makefile("rwb")
        self.f.write(h._resp_encode(["MONITOR"]))
        self.f.flush()
        if self.f.readline().strip() != b"+OK":
            raise h.HarnessError("MONITOR refused")
        self.lua, self.client = {}, {}
        self.done = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            while True:
                line = self.f.readline()
                if not line:
                    raise OSError("MONITOR connection closed")
                m = self.LINE.match(line.decode("utf-8", "replace").rstrip("\r\n"))
                if not m:
                    continue
                src, cmd, sub = m.group(1), m.group(2).lower(), (m.group(3) or "").lower()
                if cmd == "echo" and sub == self.END:
                    return
                name = f"{cmd}|{sub}" if cmd in ("script", "client", "config", "cluster", "command") else cmd
                d = self.lua if src == "lua" else self.client
                d[name] = d.get(name, 0) + 1
        except Exception as e:   # noqa: BLE001 - reported by stop()
            self.error = e
        finally:
            self.done.set()

    def stop(self, timeout=30):
        """Wait until everything up to now has been read; (lua, client) counts."""
        self.redis.command("ECHO", self.END)
        self.done.wait(timeout)
        self.sock.close()
        if self.error is not None or not self.done.is_set():
            raise h.HarnessError(f"MONITOR reader: {self.error or 'timed out'}")
        return self.lua, self.client


def evalsha_ok(redis):
    st = commandstats(redis).get("evalsha", {})
    return st.get("calls", 0) - st.get("failed_calls", 0)


def redis_call(port, *args, timeout=5):
    """One command to a redis-server or redis-sentinel on 127.0.0.1:port
    (no password) over a fresh connection; the decoded RESP reply."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sk:
        f = sk.makefile("rwb")
        f.write(h._resp_encode(args))
        f.flush()
        return h._resp_read(f)


def role(port):
    """ROLE of the server on port ("master", "slave"), None if unreachable."""
    try:
        return redis_call(port, "ROLE")[0]
    except (OSError, h.HarnessError):
        return None


def recent_key(account, prefix="sg:"):
    """Key of an account's list of recent message summaries
    (policy/sg_store_redis.c: P{sha1hex(account)}:ev:recent)."""
    return f"{prefix}{{{hashlib.sha1(account.encode()).hexdigest()}}}:ev:recent"


# --------------------------------------------------------------------------
# the sliding-window checker (see test_window_property for the reasoning)
# --------------------------------------------------------------------------
def window_violations(events, T, caps):
    """events: accepted messages as (t, rcpts) with t an integer (ms) and
    rcpts a list of recipient addresses. caps: {'messages': n,
    'recipients': n, 'distinct_recipients': n} (missing = no cap).
    Returns (violations, peak): every closed window [a, a+T] whose content
    exceeds a cap (it suffices to look at windows starting at an event:
    shifting a window's start right to its first event keeps its content),
    and the highest usage seen per unit."""
    ev = sorted(events, key=lambda e: e[0])
    bad = []
    peak = {"messages": 0, "recipients": 0, "distinct_recipients": 0}
    j = 0
    n = len(ev)
    for i in range(n):
        a = ev[i][0]
        if j < i:
            j = i
        while j < n and ev[j][0] <= a + T:
            j += 1
        chunk = ev[i:j]
        use = {"messages": len(chunk),
               "recipients": sum(len(r) for _, r in chunk),
               "distinct_recipients": len({x for _, r in chunk for x in r})}
        for u, v in use.items():
            peak[u] = max(peak[u], v)
            if u in caps and v > caps[u]:
                bad.append((a, u, v, caps[u]))
    return bad, peak


def ideal_accepts(offered, T, caps):
    """How many of the offered messages (t, rcpts), in time order, an exact
    greedy sliding-window limiter (closed windows [t-T, t], no buckets)
    would accept: the reference for "not trivially refusing"."""
    acc = []
    for t, rcpts in sorted(offered, key=lambda e: e[0]):
        win = [(u, r) for u, r in acc if u >= t - T]
        use_m = len(win) + 1
        use_r = sum(len(r) for _, r in win) + len(rcpts)
        use_d = len({x for _, r in win for x in r} | set(rcpts))
        if (use_m <= caps.get("messages", use_m) and use_r <= caps.get("recipients", use_r)
                and use_d <= caps.get("distinct_recipients", use_d)):
            acc.append((t, rcpts))
    return len(acc)


# --------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------
class Relays(h.ScratchTestCase):
    scratch_prefix = "sg-relays-"

    # -- set-up helpers ---------------------------------------------------------
    def start_redis(self, name="redis", port=None, extra_args=()):
        r = h.RedisServer(self.scratch.sub(name), port=port, extra_args=extra_args)
        r.start()
        self.addCleanup(r.stop)
        return r

    def start_relays(self, limits, store, accounts=(), n=2, names=None, extra=None):
        relays = []
        for i in range(n):
            name = names[i] if names else f"relay{i + 1}"
            rl = Relay(self.scratch, name, limits, store, accounts, extra)
            self.addCleanup(rl.sg.stop)
            rl.start()
            relays.append(rl)
        return relays

    def finish(self, relays):
        """Every relay still alive, no sanitizer report, clean exit on SIGTERM."""
        for rl in relays:
            self.assertTrue(rl.sg.alive(), f"{rl.name} died (status {rl.sg.proc.returncode}):\n"
                                           f"{h.tail(rl.sg.logfile, 60)}")
        # stopped in parallel: libmilter notices the stop only every 5 s
        rcs = parallel([rl.sg.stop for rl in relays], len(relays))
        for rl, rc in zip(relays, rcs):
            reports = rl.sg.sanitizer_reports()
            self.assertEqual(reports, [], f"{rl.name}: sanitizer reports:\n{h.tail(rl.sg.logfile, 80)}")
            self.assertEqual(rc, 0, f"{rl.name} exited {rc} on SIGTERM:\n{h.tail(rl.sg.logfile, 30)}")

    def decisions_by_qid(self, relays, sent, timeout=20):
        """Wait for one decision line per sent message; {qid: decision}.
        Each qid must be decided exactly once, by the relay it was sent to."""
        want = {}
        for s in sent:
            want.setdefault(s.relay, 0)
            want[s.relay] += 1
        for rl in relays:
            if want.get(rl.name):
                rl.sg.wait_decisions(want[rl.name], timeout=timeout)
        time.sleep(0.2)          # a duplicate would show up now
        out = {}
        for rl in relays:
            for d in rl.decisions():
                q = d.get("qid")
                self.assertNotIn(q, out, f"qid {q} decided twice:\n{out.get(q, {}).get('_line')}\n{d['_line']}")
                out[q] = d
        for s in sent:
            self.assertIn(s.qid, out, f"no decision line for {s}")
            self.assertEqual(out[s.qid]["_relay"], s.relay, f"{s.qid} decided by the wrong relay")
        self.assertEqual(len(out), len(sent), "decision lines for messages never sent")
        for d in out.values():
            self.assertEqual(h.check_decision_line(d["_line"]), [], d["_line"])
        return out

    def assert_answers(self, sent, max_latency=None):
        errors = [s for s in sent if s.error or s.verdict is None]
        self.assertEqual(errors, [], f"{len(errors)} messages got no milter answer")
        if max_latency is not None:
            slow = [(s.qid, round(s.latency, 3)) for s in sent if s.latency > max_latency]
            self.assertEqual(slow, [], f"replies slower than {max_latency}s (hang?)")

    def assert_verdicts_match(self, sent, dec):
        for s in sent:
            self.assertEqual(dec[s.qid]["action"], s.verdict,
                             f"{s}: the reply and the decision line disagree: {dec[s.qid]['_line']}")

    # -- 1 ----------------------------------------------------------------------
    def test_alternating(self):
        """Cap N=20 messages/1h; 60 messages alternating between the two
        relays, one after the other: exactly the first 20 accepted in total,
        the other 40 answered 451 4.7.1, by the replies and by the logs.
        Then 60 messages of another account from 12 threads at once over
        both relays: still exactly 20 accepted."""
        N = 20
        redis = self.start_redis()
        relays = self.start_relays([h.limit("hourly", "1h", N, "tempfail")], redis_store(redis.port))
        qid = QidSource("ALT")
        sent = [send_one(relays[i % 2], "alt@example.com", ["rcpt@example.net"], qid())
                for i in range(3 * N)]
        self.assert_answers(sent)
        verdicts = [s.verdict for s in sent]
        self.assertEqual(verdicts.count("accept"), N, verdicts)
        self.assertEqual(verdicts, ["accept"] * N + ["tempfail"] * (2 * N),
                         "with one shared counter, the first N (and only they) are accepted")
        for s in sent[N:]:
            self.assertTrue(s.reply and s.reply.startswith("451 4.7.1 "), f"{s}: expected 451 4.7.1")
            self.assertIn("hourly", s.reply)
        dec = self.decisions_by_qid(relays, sent)
        self.assert_verdicts_match(sent, dec)
        acts = [dec[s.qid]["action"] for s in sent]
        self.assertEqual(acts.count("accept"), N)
        self.assertEqual(acts.count("tempfail"), 2 * N)
        for rl in relays:
            mine = [d for d in dec.values() if d["_relay"] == rl.name]
            self.assertEqual(len(mine), 3 * N // 2, f"{rl.name} decided {len(mine)}")
            self.assertEqual(sum(d["action"] == "accept" for d in mine), N // 2,
                             f"{rl.name}: accepted every other message of the first {N}")
        for s in sent:
            d = dec[s.qid]
            self.assertEqual(d.get("store"), "redis", d["_line"])
            self.assertNotIn("store_error", d, d["_line"])
        # the counter is shared: the accepted ones count 1..N across both relays
        used = [int(dec[s.qid]["used"]) for s in sent[:N]]
        self.assertEqual(used, list(range(1, N + 1)), "used= of the accepted messages")
        for s in sent[N:]:
            d = dec[s.qid]
            self.assertEqual((d.get("limit"), d.get("used"), d.get("cap")), ("hourly", str(N), str(N)),
                             d["_line"])
        # the same, all at once: 3N messages of another account from 12
        # threads over both relays; the check-and-commit is atomic, so still N
        jobs = [lambda i=i: send_one(relays[i % 2], "par@example.com", ["rcpt@example.net"], qid())
                for i in range(3 * N)]
        par = parallel(jobs, 12)
        self.assert_answers(par)
        self.assertEqual(sum(s.verdict == "accept" for s in par), N, [s.verdict for s in par])
        self.assertEqual(sum(s.verdict == "tempfail" for s in par), 2 * N)
        dec = self.decisions_by_qid(relays, sent + par)
        self.assert_verdicts_match(par, dec)
        self.assertEqual(sorted(int(dec[s.qid]["used"]) for s in par if s.verdict == "accept"),
                         list(range(1, N + 1)), "each accepted message saw its own count")
        self.finish(relays)

    # -- 2 ----------------------------------------------------------------------
    def test_commandstats(self):
        """M accepted messages over both relays cost exactly M successful
        EVALSHA in Redis, plus one NOSCRIPT + SCRIPT LOAD (fresh server), and
        no other command whose count grows with M; 32 parallel senders
        make each relay open at most its pool_size (2 here) connections."""
        M = 200
        redis = self.start_redis()
        relays = self.start_relays([h.limit("hourly", "1h", 100000, "tempfail", recipients=1000000)],
                                   redis_store(redis.port, pool_size=2,
                                               command_timeout_ms=2000))
        redis.command("CONFIG", "RESETSTAT")
        mon = Monitor(redis)
        qid = QidSource("CS")
        rnd = random.Random(2)
        # the first message of each relay alone, so that only one connection
        # can meet NOSCRIPT; then the rest from 8 threads at once
        sent = [send_one(relays[0], "stats@example.com", ["a@example.net"], qid()),
                send_one(relays[1], "stats@example.com", ["a@example.net"], qid())]
        jobs = []
        for i in range(M - 2):
            rl = relays[i % 2]
            rc = [f"r{rnd.randrange(50)}@example.net" for _ in range(rnd.randint(1, 4))]
            jobs.append(lambda rl=rl, rc=rc: send_one(rl, "stats@example.com", rc, qid()))
        conns0 = int(info(redis, "stats")["total_connections_received"])
        sent += parallel(jobs, 32)
        # 32 senders, 16 a relay, and a pool of 2 each: a burst waits for a
        # pooled connection instead of opening (and closing) more
        conns = int(info(redis, "stats")["total_connections_received"]) - conns0 - 1
        self.assertLessEqual(conns, 2 * 2, f"{conns} Redis connections opened by two relays "
                                           f"with pool_size 2 during {M - 2} messages")
        self.assert_answers(sent)
        self.assertEqual([s.verdict for s in sent].count("accept"), M,
                         [s for s in sent if s.verdict != "accept"][:5])
        dec = self.decisions_by_qid(relays, sent)
        self.assertTrue(all(d.get("store") == "redis" and "store_error" not in d for d in dec.values()))
        lua, client = mon.stop()
        stats = commandstats(redis)
        h.log("commandstats: " + json.dumps(stats, sort_keys=True))
        h.log(f"MONITOR: from clients {client}; from the script {lua}")
        ev = stats.get("evalsha", {})
        self.assertEqual(ev.get("calls", 0) - ev.get("failed_calls", 0), M,
                         f"successful EVALSHA calls for {M} messages: {ev}")
        self.assertLessEqual(ev.get("failed_calls", 0), 1, f"more than one NOSCRIPT: {ev}")
        self.assertEqual(ev.get("rejected_calls", 0), 0, ev)
        load = stats.get("script|load", {}).get("calls", 0)
        self.assertEqual(load, ev.get("failed_calls", 0), "one SCRIPT LOAD per NOSCRIPT")
        self.assertNotIn("eval", stats, "EVAL (the script text every time) instead of EVALSHA")
        # commandstats also counts what the script runs (redis.call):
        # MONITOR tells those ("lua") from the clients' own commands
        self.assertEqual(client.get("evalsha", 0), ev.get("calls", 0), "MONITOR saw every EVALSHA")
        self.assertGreater(sum(lua.values()), M, "MONITOR shows the script's own commands")
        for k, n in lua.items():
            self.assertLessEqual(n, stats.get(k, {}).get("calls", 0), f"{k}: MONITOR vs commandstats")
        others = {k: v.get("calls", 0) - lua.get(k, 0) for k, v in stats.items()
                  if k not in ("evalsha", "script|load")}
        others = {k: n for k, n in others.items() if n >= 10}
        self.assertEqual(others, {}, f"commands sent by the relays, besides EVALSHA, whose calls grow "
                                     f"with M={M}")
        self.finish(relays)

    # -- 3 ----------------------------------------------------------------------
    def _outage_run(self, redis, on_error, tag):
        """One run: traffic on both relays, SIGKILL redis, traffic, restart
        redis on the same port, traffic. Returns redis (the new one)."""
        relays = self.start_relays([h.limit("hourly", "1h", 100000, "tempfail", recipients=1000000)],
                                   redis_store(redis.port, on_error=on_error),
                                   names=[f"{tag}1", f"{tag}2"])
        qid = QidSource(tag.upper())
        stream = Stream(relays, "outage@example.com", lambda rnd: ["x@example.net"], qid,
                        per_relay=2, pause=0.02).start()
        try:
            h.wait_until(lambda: stream.count() >= 40, 10, "traffic before the kill")
            time.sleep(0.5)
            t_kill = time.time()
            redis.proc.kill()                              # SIGKILL: no goodbye to the clients
            redis.proc.wait(5)
            t_killed = time.time()
            h.log(f"[{tag}] redis SIGKILLed at {stream.count()} messages")
            # enough traffic during the outage, however slow the machine is
            # (a fixed sleep gave too few messages under a loaded ASan run)
            c0 = stream.count()
            h.wait_until(lambda: stream.count() >= c0 + 30 and time.time() >= t_killed + 2.5, 60,
                         "traffic during the outage")
            for rl in relays:
                self.assertTrue(rl.sg.alive(), f"{rl.name} died when redis was killed:\n"
                                               f"{h.tail(rl.sg.logfile, 60)}")
            t_restart = time.time()
            redis = h.RedisServer(redis.workdir, port=redis.port)
            redis.start()
            self.addCleanup(redis.stop)
            t_up = time.time()
            h.log(f"[{tag}] redis back after {t_up - t_restart:.2f}s at {stream.count()} messages")
            time.sleep(max(0.0, t_up + 2.0 - time.time()))
            c1 = stream.count()
            h.wait_until(lambda: stream.count() >= c1 + 30, 60, "traffic after the restart")
        finally:
            sent = stream.stop()
        # a hang shows as a reply that never comes or takes the whole wait;
        # a loaded 2-core ASan run makes single replies take a second
        self.assert_answers(sent, max_latency=5.0)
        dec = self.decisions_by_qid(relays, sent)
        self.assert_verdicts_match(sent, dec)
        before = [s for s in sent if s.t_recv < t_kill]            # answered before the kill
        during = [s for s in sent if s.t_send > t_killed and s.t_recv < t_restart]
        after = [s for s in sent if s.t_send > t_up + 2.0]         # "within a couple of seconds"
        h.log(f"[{tag}] {len(sent)} messages: {len(before)} before, {len(during)} during the outage, "
              f"{len(after)} after recovery; max latency {max(s.latency for s in sent):.3f}s")
        self.assertGreaterEqual(len(before), 20)
        self.assertGreaterEqual(len(during), 20, "too few messages during the outage")
        self.assertGreaterEqual(len(after), 20, "too few messages after the restart")
        for s in before:
            d = dec[s.qid]
            self.assertEqual((d["action"], d.get("store"), d.get("store_error")), ("accept", "redis", None),
                             d["_line"])
        for s in during:
            d = dec[s.qid]
            if on_error == "accept":
                # decided by the in-process memory store (caps far away: accept)
                self.assertEqual((s.verdict, d.get("store"), d.get("store_error")), ("accept", "memory", "1"),
                                 f"during the outage: {s} {d['_line']}")
            else:
                self.assertEqual((s.verdict, d.get("store_error")), ("tempfail", "1"),
                                 f"during the outage: {s} {d['_line']}")
                self.assertTrue(s.reply and s.reply.startswith("451 4.3.0 "),
                                f"on_error=tempfail answers 451 4.3.0: {s}")
        for s in after:
            d = dec[s.qid]
            self.assertEqual((s.verdict, d.get("store"), d.get("store_error")), ("accept", "redis", None),
                             f"after the restart: {s} {d['_line']}")
        for rl in relays:
            down = [ln for ln in rl.sg.log_lines() if "store=redis event=down" in ln]
            up = [ln for ln in rl.sg.log_lines() if "store=redis event=up" in ln]
            self.assertEqual(len(down), 1, f"{rl.name}: the outage logged once: {down}")
            self.assertGreaterEqual(len(up), 1, f"{rl.name}: the recovery logged: {up}")
        self.assertGreater(evalsha_ok(redis), 0, "the restarted redis got the relays' scripts")
        self.finish(relays)
        return redis

    def test_redis_killed(self):
        """Redis SIGKILLed mid-run, then restarted on the same port: with
        on_error=accept the relays decide with the memory store
        (store=memory store_error=1), with on_error=tempfail they answer
        451 4.3.0; every message answered within 1 s; store=redis again
        within a couple of seconds of the restart; no crash."""
        redis = self.start_redis()
        redis = self._outage_run(redis, "accept", "acc")
        self._outage_run(redis, "tempfail", "tmp")

    # -- 4 ----------------------------------------------------------------------
    def test_sentinel(self):
        """master + replica + one sentinel; the relays find the master through
        the sentinel; SENTINEL FAILOVER: decisions continue on the new master."""
        master = self.start_redis("master")
        replica = self.start_redis("replica", extra_args=["--replicaof", LOOPBACK, str(master.port)])
        h.wait_until(lambda: info(replica, "replication").get("master_link_status") == "up", 15,
                     "replica in sync")
        sent_dir = self.scratch.sub("sentinel")
        sentinel = Sentinel(sent_dir, master.port)
        self.addCleanup(sentinel.stop)
        sentinel.start()

        def sentinel_knows_replica():
            reps = sentinel.command("SENTINEL", "REPLICAS", "mymaster")
            for r in reps or []:
                d = dict(zip(r[0::2], r[1::2]))
                if d.get("port") == str(replica.port) and d.get("flags") == "slave" \
                        and d.get("master-link-status") == "ok":
                    return True
            return False
        h.wait_until(sentinel_knows_replica, 20, "the sentinel to know the replica")
        addr = sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
        self.assertEqual(addr, [LOOPBACK, str(master.port)])

        store = redis_store(on_error="accept",
                            sentinel={"master": "mymaster", "servers": [f"{LOOPBACK}:{sentinel.port}"]})
        relays = self.start_relays([h.limit("hourly", "1h", 100000, "tempfail", recipients=1000000)], store)
        qid = QidSource("SEN")
        stream = Stream(relays, "ha@example.com", lambda rnd: ["y@example.net"], qid,
                        per_relay=2, pause=0.02).start()
        try:
            h.wait_until(lambda: stream.count() >= 30, 10, "traffic before the failover")
            self.assertGreater(evalsha_ok(master), 0, "the relays write to the sentinel's master")
            self.assertEqual(evalsha_ok(replica), 0)
            n_before = stream.count()
            t_failover = time.time()
            self.assertEqual(sentinel.command("SENTINEL", "FAILOVER", "mymaster"), "OK")
            h.wait_until(lambda: role(replica.port) == "master", 20, "the replica promoted")
            t_promoted = time.time()
            h.log(f"failover: replica is master after {t_promoted - t_failover:.2f}s "
                  f"({stream.count() - n_before} messages meanwhile)")
            # the old master keeps taking writes until the sentinel turns it
            # into a replica (up to ~10 s); the store asks the sentinels
            # about once a second, so the relays move well before that
            base = evalsha_ok(replica)
            h.wait_until(lambda: evalsha_ok(replica) > base + 20, 30,
                         "the relays' EVALSHA on the new master")
            t_moved = time.time()
            h.log(f"relays on the new master {t_moved - t_promoted:.2f}s after the promotion")
            time.sleep(2.0)
            mid = evalsha_ok(replica)
            time.sleep(1.0)
        finally:
            sent = stream.stop()
        self.assertGreater(evalsha_ok(replica), mid, "EVALSHA calls keep growing on the new master")
        self.assert_answers(sent, max_latency=5.0)
        dec = self.decisions_by_qid(relays, sent)
        self.assert_verdicts_match(sent, dec)
        self.assertTrue(all(s.verdict == "accept" for s in sent), "caps are far: everything accepted")
        errs = [s for s in sent if "store_error" in dec[s.qid]]
        late = [s for s in sent if s.t_send > t_moved + 0.5]
        h.log(f"sentinel: {len(sent)} messages, {len(errs)} with store_error, {len(late)} after the switch")
        self.assertLessEqual(len(errs), max(10, len(sent) // 5), "store errors beyond a short window")
        self.assertGreaterEqual(len(late), 20)
        for s in late:
            d = dec[s.qid]
            self.assertEqual((d.get("store"), d.get("store_error")), ("redis", None),
                             f"after the switch: {d['_line']}")
        self.assertLess(t_moved - t_promoted, 5.0, "the relays follow the new master within seconds")
        h.wait_until(lambda: role(master.port) == "slave", 30,
                     "the old master turned into a replica")
        self.finish(relays)

    # -- 5 ----------------------------------------------------------------------
    def test_window_property(self):
        """The guarantee, under concurrency: in no closed sliding window of
        length T are more messages, recipients or distinct recipients
        accepted than the caps, across two relays and 16 parallel clients.

        Which timestamps? The limiter decides with redis TIME, read inside
        the script; the client only knows that the decision of message i
        happened at some t_i in [send_i, recv_i] (time.time() before EOM and
        after the reply; same host, same CLOCK_REALTIME as redis TIME).
        - Checking windows on the receive times (or the send times) alone
          can fail spuriously: with a cap reached exactly and latencies of a
          few ms, a legitimately accepted message at the edge of a window
          can look inside it; and widening the windows to make up for that
          can pass spuriously.
        - A check that cannot fail spuriously from client times: a set of
          accepted messages is *certainly* inside one window when
          max(recv) - min(send) <= T; flag a window only then (check 2
          below). It may still pass a real violation by up to one latency.
        - A check that can neither fail nor pass spuriously needs the very
          timestamps the limiter used. The script records them: every
          decision (accepted or not) pushes {t, qid, rcpts, relay, action,
          charged} onto the account's capped list of recent summaries
          (P{sha1(account)}:ev:recent, 1,000 entries). A poller reads that
          list every 0.3 s during the run (~60 messages/s here, so nothing
          is trimmed away unread) and keeps every entry by queue id. Those
          entries are tied to what the client saw: every message sent has
          exactly one entry, through the relay it was sent to, charged iff
          the reply was an accept, with the client's recipient count, and
          t inside [send, recv] (1 ms of rounding). The windows are then
          checked exactly on those t (check 1): closed windows [a, a+T],
          anchored at every accepted t (a window's content only grows when
          its start moves right onto the next event, so these are the
          maxima). The checker itself is shown to flag a fixed-window trace.
        - Not trivially refusing: the offered load (all messages, at their
          redis times) is replayed through an exact greedy sliding-window
          limiter; sendguard must accept at least 60 % of what it accepts,
          and some window must have reached 90 % of a cap."""
        T_MS = 10000
        caps = {"messages": 40, "recipients": 120, "distinct_recipients": 60}
        POOL = [f"p{i:03d}@pool.example" for i in range(80)]
        RUN_S = 24.0
        THREADS_PER_RELAY = 8
        PAUSE = 0.24            # per thread, jittered x0.5..1.5: ~60 messages/s offered
        sender = "burst@example.com"

        # the checker must be able to fail: a fixed-window counter's trace
        fixed = [(9990 + i % 5, ["a@x"]) for i in range(40)] + [(10001 + i % 5, ["a@x"]) for i in range(40)]
        bad, _ = window_violations(fixed, T_MS, caps)
        self.assertTrue(bad, "the window checker misses 80 messages within 20 ms")
        ok, _ = window_violations([(i * 251, ["a@x"]) for i in range(200)], T_MS, caps)
        self.assertEqual(ok, [], "the window checker flags 40 per 10 s spread evenly")

        redis = self.start_redis()
        lim = h.limit("short", "10s", caps["messages"], "tempfail", recipients=caps["recipients"],
                      distinct_recipients=caps["distinct_recipients"])
        # a configured account: only those record evidence (the "recent"
        # list this test reads); implicit identities have one key each
        acct = [{"address": sender, "offer": "mxplan-legacy"}]
        relays = self.start_relays([lim], redis_store(redis.port), accounts=acct)
        key = recent_key(sender)
        seen = {}
        poll_stop = threading.Event()
        poll_err = []

        def poller():
            while not poll_stop.is_set():
                try:
                    for raw in redis.command("LRANGE", key, 0, -1) or []:
                        e = json.loads(raw)
                        seen.setdefault(e["qid"], e)
                except Exception as e:   # noqa: BLE001 - reported below
                    poll_err.append(repr(e))
                poll_stop.wait(0.3)
        pt = threading.Thread(target=poller, daemon=True)
        pt.start()
        qid = QidSource("W")
        stream = Stream(relays, sender, lambda rnd: rnd.sample(POOL, rnd.randint(1, 5)), qid,
                        per_relay=THREADS_PER_RELAY, pause=PAUSE)
        t0 = time.time()
        try:
            stream.start()
            time.sleep(RUN_S)
        finally:
            sent = stream.stop()
            time.sleep(0.4)
            poll_stop.set()
            pt.join(10)
        run_s = time.time() - t0
        for raw in redis.command("LRANGE", key, 0, -1) or []:
            e = json.loads(raw)
            seen.setdefault(e["qid"], e)
        self.assertEqual(poll_err, [], "reading the recent list failed")
        self.assert_answers(sent, max_latency=5.0)
        acc = [s for s in sent if s.verdict == "accept"]
        refused = [s for s in sent if s.verdict != "accept"]
        h.log(f"window: {len(sent)} messages in {run_s:.1f}s, {len(acc)} accepted, {len(refused)} refused, "
              f"max latency {max(s.latency for s in sent) * 1000:.1f} ms")
        self.assertGreaterEqual(len(sent), 800, "the run offered too little load")
        self.assertTrue(all(s.verdict == "tempfail" and s.reply.startswith("451 4.7.1 ") for s in refused),
                        [s for s in refused if s.verdict != "tempfail"][:5])

        dec = self.decisions_by_qid(relays, sent)
        self.assert_verdicts_match(sent, dec)
        for d in dec.values():
            self.assertEqual((d.get("store"), d.get("store_error")), ("redis", None), d["_line"])

        # tie redis' record of every decision to what the client saw
        missing = [s.qid for s in sent if s.qid not in seen]
        self.assertEqual(missing, [], "messages absent from redis' recent list (poller too slow?)")
        self.assertEqual(set(seen), {s.qid for s in sent}, "recent entries for messages never sent")
        for s in sent:
            e = seen[s.qid]
            self.assertEqual(e.get("relay"), s.relay, e)
            self.assertEqual(e.get("identity"), sender, e)
            self.assertEqual(int(e.get("rcpts")), len(s.rcpts), e)
            self.assertEqual(bool(e.get("charged")), s.verdict == "accept", (s, e))
            self.assertEqual(e.get("action"), "ok" if s.verdict == "accept" else "over", (s, e))
            t = int(e["t"])
            self.assertTrue(int(s.t_send * 1000) - 1 <= t <= int(s.t_recv * 1000) + 1,
                            f"{s.qid}: redis time {t} outside the client's [{s.t_send * 1000:.1f}, "
                            f"{s.t_recv * 1000:.1f}]")

        # check 1: exact, on the limiter's own timestamps
        events = [(int(seen[s.qid]["t"]), s.rcpts) for s in acc]
        bad, peak = window_violations(events, T_MS, caps)
        self.assertEqual(bad[:10], [], f"{len(bad)} windows over a cap (start ms, unit, used, cap)")
        # check 2: from the client's times alone, only certain violations
        by_send = sorted(acc, key=lambda s: s.t_send)
        for i, a in enumerate(by_send):
            inside = [s for s in by_send[i:] if s.t_recv <= a.t_send + T_MS / 1000.0]
            use = {"messages": len(inside), "recipients": sum(len(s.rcpts) for s in inside),
                   "distinct_recipients": len({r for s in inside for r in s.rcpts})}
            over = {u: v for u, v in use.items() if v > caps[u]}
            self.assertEqual(over, {}, f"messages certainly within {T_MS} ms of {a.qid} exceed the caps")

        # not trivially refusing
        offered = [(int(seen[s.qid]["t"]), s.rcpts) for s in sent]
        ideal = ideal_accepts(offered, T_MS, caps)
        h.log(f"window: peak usage {peak}; exact greedy limiter would accept {ideal}, sendguard {len(acc)}")
        self.assertGreater(len(refused), len(sent) // 3, "the caps were never under pressure")
        self.assertGreaterEqual(len(acc), 0.6 * ideal, f"accepted {len(acc)} of an ideal {ideal}")
        self.assertTrue(any(peak[u] >= 0.9 * caps[u] for u in caps), f"no cap ever approached: {peak}")
        self.finish(relays)

    # -- 6 ----------------------------------------------------------------------
    def ctl(self, conf, *args, expect=0):
        exe = sendguardctl_binary()
        if not os.access(exe, os.X_OK):
            raise h.HarnessError(f"sendguardctl not found or not executable: {exe!r}")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")
        r = subprocess.run([exe, "-c", conf, *args], capture_output=True, text=True, timeout=30, env=env)
        self.assertFalse(any(m in r.stderr for m in h.SANITIZER_MARKERS), f"sendguardctl: {r.stderr}")
        if expect is not None:
            self.assertEqual(r.returncode, expect, f"sendguardctl {' '.join(args)} -> {r.returncode}\n"
                                                   f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def status_json(self, conf, who):
        r = self.ctl(conf, "status", who, "--json")
        try:
            data = json.loads(r.stdout)
        except ValueError:
            self.fail(f"status --json is not JSON: {r.stdout!r}")
        self.assertIsInstance(data, list)
        self.assertEqual(len(data), 1, data)
        return data[0]

    def test_flood(self):
        """A flood of random envelope senders (each an implicit identity of
        one key) while a configured account sends: the account's cap stays
        exact across both relays; every flood message is accepted under the
        default limits; each relay logs a `flood:` warning naming the
        flood's client IP; `sendguardctl report --flood` shows the new
        identities and the IP; an implicit identity left no evidence keys."""
        ACCOUNT = "acct@example.com"
        FLOOD, CAP, SENT = 240, 10, 25
        redis = self.start_redis()
        accounts = [{"address": ACCOUNT, "offer": "mxplan-legacy", "senders": ["*@shop.example"],
                     "limits": [h.limit("hourly", "1h", CAP, "tempfail")]}]
        relays = self.start_relays([h.limit("hourly", "1h", 5, "tempfail"),
                                    h.limit("daily", "1d", 20, "hold")],
                                   redis_store(redis.port), accounts=accounts,
                                   extra={"identity": {"flood_threshold": 50}})
        conf = relays[0].sg.config_path
        qid = QidSource("FL")
        rnd = random.Random(15)
        flood_from = [f"r{rnd.getrandbits(48):012x}@spam{i % 7}.example" for i in range(FLOOD)]
        jobs = [("flood", f) for f in flood_from]
        shop = [("shop", "app@shop.example")] * SENT
        # the account's messages spread through the flood
        for k, j in enumerate(shop):
            jobs.insert((k * len(jobs)) // SENT + k, j)

        def one(k_job):
            k, (kind, sender) = k_job
            ip = "203.0.113.66" if kind == "flood" else "192.0.2.10"
            return kind, send_one(relays[k % 2], sender, ["x@example.net"], qid(), ip=ip)

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            res = list(ex.map(one, enumerate(jobs)))
        sent = [s for _, s in res]
        self.assert_answers(sent)
        shop_v = [s.verdict for kind, s in res if kind == "shop"]
        flood_v = [s.verdict for kind, s in res if kind == "flood"]
        self.assertEqual(shop_v.count("accept"), CAP, shop_v)
        self.assertEqual(shop_v.count("tempfail"), SENT - CAP, shop_v)
        self.assertEqual(flood_v, ["accept"] * FLOOD)
        dec = self.decisions_by_qid(relays, sent)
        self.assert_verdicts_match(sent, dec)
        o = self.status_json(conf, ACCOUNT)
        self.assertEqual(o["limits"][0]["messages"], {"used": CAP, "cap": CAP}, o)

        # the log line, on each relay (half the flood each, threshold 50)
        for rl in relays:
            with open(rl.sg.logfile, errors="replace") as f:
                text = f.read()
            self.assertRegex(text, r"flood: \d+ new implicit identities in the last \d+m "
                                   r"\(top ip=203\.0\.113\.66, mailer=", rl.name)

        # one key per implicit identity, no evidence keys
        tag = hashlib.sha1(flood_from[0].encode()).hexdigest()
        keys = subprocess.run(["redis-cli", "-p", str(redis.port), "--raw", "KEYS",
                               f"sg:{{{tag}}}:*"], capture_output=True, text=True).stdout.split()
        self.assertEqual(keys, [f"sg:{{{tag}}}:i"])

        # the summary is written every 10 s, on the decision path: one more
        # message per relay after that makes both write theirs
        time.sleep(10.5)
        late = [send_one(rl, f"late-{rl.name}@spam.example", ["x@example.net"], qid(),
                         ip="203.0.113.66") for rl in relays]
        self.assert_answers(late)
        r = self.ctl(conf, "report", "--flood", "--json")
        rep = json.loads(r.stdout)
        self.assertGreaterEqual(rep["new"], FLOOD, rep)
        self.assertGreaterEqual(rep["messages"], FLOOD, rep)
        ips = {x["value"]: x["count"] for x in rep["ips"]}
        self.assertGreaterEqual(ips.get("203.0.113.66", 0), FLOOD, rep)
        text = self.ctl(conf, "report", "--flood").stdout
        self.assertRegex(text, r"new identities \d+")
        self.assertIn("203.0.113.66", text)
        self.finish(relays)

    def test_evicted(self):
        """Redis under maxmemory with an allkeys policy: the relay warns at its
        first look that any key may be evicted, and, when Redis has evicted
        keys since the previous look (once a minute), logs event=evicted."""
        redis = self.start_redis(extra_args=["--maxmemory", "3mb",
                                              "--maxmemory-policy", "allkeys-lru"])
        relays = self.start_relays([h.limit("hourly", "1h", 100, "tempfail")],
                                   redis_store(redis.port), n=1)
        qid = QidSource("EV")
        first = [send_one(relays[0], "one@example.org", ["x@example.net"], qid())]
        self.assert_answers(first)
        log = relays[0].sg.logfile

        def text():
            with open(log, errors="replace") as f:
                return f.read()
        deadline = time.time() + 10
        while "maxmemory_policy=allkeys-lru" not in text() and time.time() < deadline:
            time.sleep(0.2)
        self.assertRegex(text(), r"store=redis maxmemory_policy=allkeys-lru maxmemory=\d+: Redis may "
                                 r"evict any key")
        self.assertNotIn("event=evicted", text())
        # fill Redis past maxmemory: it evicts (its own keys and maybe ours)
        cmds = "".join(f"SET junk:{i} {'x' * 200}\r\n" for i in range(40000))
        subprocess.run(["redis-cli", "-p", str(redis.port), "--pipe"], input=cmds, text=True,
                       capture_output=True, timeout=60)
        info = subprocess.run(["redis-cli", "-p", str(redis.port), "INFO", "stats"],
                              capture_output=True, text=True).stdout
        self.assertRegex(info, r"evicted_keys:[1-9]", "Redis did not evict: the test proves nothing")
        time.sleep(61)                   # the next look is a minute after the first
        more = [send_one(relays[0], "two@example.org", ["x@example.net"], qid())]
        self.assert_answers(more)
        deadline = time.time() + 10
        while "event=evicted" not in text() and time.time() < deadline:
            time.sleep(0.2)
        self.assertRegex(text(), r"store=redis event=evicted evicted_keys=[1-9]\d* "
                                 r"maxmemory_policy=allkeys-lru used_memory=\d+ maxmemory=\d+: "
                                 r"Redis evicted keys")
        self.finish(relays)

    def test_status_reset(self):
        """sendguardctl status [ACCOUNT] [--json] shows the shared usage
        (what both relays accepted); reset ACCOUNT zeroes it and mail flows
        again."""
        ACCOUNT = "acct@example.com"
        redis = self.start_redis()
        accounts = [{"address": ACCOUNT, "offer": "mxplan-legacy", "senders": ["*@shop.example"],
                     "limits": [h.limit("hourly", "1h", 10, "tempfail", recipients=30,
                                        distinct_recipients=50)]}]
        relays = self.start_relays([h.limit("hourly", "1h", 1000, "tempfail")], redis_store(redis.port),
                                   accounts=accounts)
        conf = relays[0].sg.config_path
        qid = QidSource("ST")
        rc2 = ["one@example.net", "two@example.org"]
        sent = [send_one(relays[i % 2], "app@shop.example", rc2, qid()) for i in range(14)]
        self.assert_answers(sent)
        self.assertEqual([s.verdict for s in sent], ["accept"] * 10 + ["tempfail"] * 4)
        dec = self.decisions_by_qid(relays, sent)
        self.assert_verdicts_match(sent, dec)
        self.assertTrue(all(d["account"] == f"<{ACCOUNT}>" and d["store"] == "redis" for d in dec.values()))
        n_acc = sum(d["action"] == "accept" for d in dec.values())

        o = self.status_json(conf, ACCOUNT)
        self.assertEqual(o["account"], ACCOUNT)
        self.assertFalse(o["blocked"])
        lim = {x["name"]: x for x in o["limits"]}
        self.assertEqual(list(lim), ["hourly"], o)
        self.assertEqual(lim["hourly"]["messages"], {"used": n_acc, "cap": 10}, o)
        self.assertEqual(lim["hourly"]["recipients"], {"used": 2 * n_acc, "cap": 30}, o)
        self.assertEqual(lim["hourly"]["distinct_recipients"], {"used": 2, "cap": 50}, o)
        # the evidence, made from the store's typed report: the documented shape
        ev = o["evidence"]
        self.assertEqual(sorted(ev), sorted(["account", "last_seen", "by_ip", "by_mailer", "by_domain",
                                             "from_mismatch", "from_mismatch_recent", "hourly",
                                             "recent"]), ev)
        self.assertEqual(ev["account"], ACCOUNT)
        self.assertIsInstance(ev["last_seen"], int)
        self.assertTrue(ev["by_ip"] and all(sorted(v) == ["count", "first_seen"]
                                            for v in ev["by_ip"].values()), ev)
        self.assertEqual(ev["by_domain"], {"example.net": len(sent), "example.org": len(sent)}, ev)
        self.assertEqual(sum(x["messages"] for x in ev["hourly"].values()), n_acc, ev)
        self.assertTrue(all(sorted(x) == ["messages", "recipients", "refused"]
                            for x in ev["hourly"].values()), ev)
        self.assertEqual({m["action"] for m in ev["recent"]} - {"ok", "over"}, set(), ev)
        # an identity of the account resolves to it; the other config's view is the same
        self.assertEqual(self.status_json(conf, "app@shop.example"), o)
        self.assertEqual(self.status_json(relays[1].sg.config_path, ACCOUNT)["limits"], o["limits"])

        text = self.ctl(conf, "status").stdout
        self.assertIn(ACCOUNT, text, "status without an account lists the configured ones")
        text = self.ctl(conf, "status", ACCOUNT).stdout
        self.assertRegex(text, rf"(?m)^{re.escape(ACCOUNT)}: ok")
        self.assertRegex(text, r"hourly\s+messages 10/10 \(100%\)\s+recipients 20/30 \(66%\)")

        # an identity no account matches is an account of its own (default limits)
        solo = [send_one(relays[i % 2], "solo@example.org", ["x@example.net"], qid()) for i in range(3)]
        self.assert_answers(solo)
        self.assertEqual([s.verdict for s in solo], ["accept"] * 3)
        o2 = self.status_json(conf, "solo@example.org")
        self.assertEqual(o2["account"], "solo@example.org")
        self.assertEqual(o2["limits"][0]["messages"], {"used": 3, "cap": 1000}, o2)

        r = self.ctl(conf, "reset", ACCOUNT)
        self.assertIn(f"{ACCOUNT}: counters reset", r.stdout)
        o = self.status_json(conf, ACCOUNT)
        lim = {x["name"]: x for x in o["limits"]}
        self.assertEqual(lim["hourly"]["messages"]["used"], 0, o)
        self.assertEqual(lim["hourly"]["recipients"]["used"], 0, o)
        self.assertEqual(lim["hourly"]["distinct_recipients"]["used"], 0, o)
        self.assertEqual(self.status_json(conf, "solo@example.org")["limits"][0]["messages"]["used"], 3,
                         "reset touches only the account it names")
        self.assertRegex(self.ctl(conf, "status", ACCOUNT).stdout, r"messages 0/10 \(0%\)")

        more = [send_one(relays[i % 2], "app@shop.example", rc2, qid()) for i in range(3)]
        self.assert_answers(more)
        self.assertEqual([s.verdict for s in more], ["accept"] * 3, "accepted again after the reset")
        dec = self.decisions_by_qid(relays, sent + solo + more)
        self.assertEqual([int(dec[s.qid]["used"]) for s in more], [1, 2, 3],
                         [dec[s.qid]["_line"] for s in more])
        o = self.status_json(conf, ACCOUNT)
        lim = {x["name"]: x for x in o["limits"]}
        self.assertEqual(lim["hourly"]["messages"]["used"], 3, o)
        self.assertEqual(lim["hourly"]["recipients"]["used"], 6, o)
        self.finish(relays)


if __name__ == "__main__":
    unittest.main()
