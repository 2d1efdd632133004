"""
faults_load - the load and the accounting of bench/faults (see bench/faults).

Fleet: N logical messages over S parallel SMTP sessions to Postfix, every 4xx
retried, every outcome kept (the stage and code of each attempt, the queue id
of the accepted one, the end-of-data latency). account_for(): where each
message ended (the sink's dump files searched for its X-Fault-Id, the queue
for its queue id) and the figures of a run. It injects no fault and starts
no daemon: bench/faults does both.
"""
from __future__ import annotations

import collections
import heapq
import re
import smtplib
import sys
import threading
import time

import harness as h

LOOPBACK = h.LOOPBACK
ACCOUNT_SENDERS = 40                  # u0..u39@load.example -> the configured account
IMPLICIT_SENDERS = 200                # o0..o199@other.example: implicit identities


def log(msg):
    print(f"[faults {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# the load: N logical messages over S sessions, 4xx retried, every outcome kept
# --------------------------------------------------------------------------
class Msg:
    __slots__ = ("id", "sender", "attempts", "final", "qid", "codes", "lat")

    def __init__(self, mid, sender):
        self.id, self.sender = mid, sender
        self.attempts = 0
        self.final = None         # '2xx' | '4xx' | '5xx' | 'noanswer'
        self.qid = None
        self.codes = []           # (stage, code) of every attempt
        self.lat = []             # end-of-data latency (s) of every attempt that reached it


def default_sender(i):
    """Two thirds from the configured account (40 senders), one third implicit."""
    if i % 3 == 2:
        return f"o{i % IMPLICIT_SENDERS}@other.example"
    return f"u{i % ACCOUNT_SENDERS}@load.example"


class Fleet:
    """Threads, one SMTP session each, up to per_session messages a session.
    A 4xx anywhere (or a dropped connection) puts the message back, retried
    retry_delay later, until `attempts` tries; then it is final. A 5xx is final."""

    def __init__(self, port, n, sessions, tag, sender_fn=default_sender, per_session=10,
                 attempts=40, retry_delay=0.5, deadline=420.0, size=800, rate=None):
        self.port, self.tag = port, tag
        self.msgs = [Msg(i, sender_fn(i)) for i in range(n)]
        self.heap = [(0.0, i) for i in range(n)]
        self.rate = rate            # messages a second at most (first tries), None: as fast as it goes
        self.lock = threading.Lock()
        self.sessions, self.per_session = sessions, per_session
        self.max_attempts, self.retry_delay = attempts, retry_delay
        self.deadline = time.monotonic() + deadline
        self.body = ("x" * 70 + "\r\n") * max(1, size // 72)
        self.done = 0
        self.accepted = 0
        self.attempts_4xx = 0
        self.replies4 = collections.Counter()    # (stage, "451 4.7.1 ...") of every 4xx
        self.threads = []
        self.t0 = self.t1 = None

    # -- queue ----------------------------------------------------------------
    def _take(self):
        while True:
            with self.lock:
                if not self.heap:
                    return None
                nb, i = self.heap[0]
                now = time.monotonic()
                if nb <= now:
                    heapq.heappop(self.heap)
                    return self.msgs[i]
                wait = nb - now
            time.sleep(min(wait, 0.1))

    def _outcome(self, m, stage, code, qid=None, text=""):
        """Record one attempt; requeue or finish the message."""
        with self.lock:
            if 400 <= code < 500:
                self.replies4[(stage, f"{code} {text}"[:60])] += 1
            m.attempts += 1
            m.codes.append((stage, code))
            if 200 <= code < 300:
                m.final, m.qid = "2xx", qid
                self.done += 1
                self.accepted += 1
            elif 500 <= code < 600:
                m.final = "5xx"
                self.done += 1
            else:                   # 4xx or no answer (code 0)
                self.attempts_4xx += 400 <= code < 500
                if m.attempts < self.max_attempts and time.monotonic() < self.deadline:
                    heapq.heappush(self.heap, (time.monotonic() + self.retry_delay, m.id))
                else:
                    m.final = "4xx" if code else "noanswer"
                    self.done += 1

    def _message(self, m):
        return (f"From: <{m.sender}>\r\nTo: <rcpt@example.net>\r\n"
                f"Subject: fault load {self.tag} {m.id}\r\n"
                f"Message-ID: <{self.tag}-{m.id}-{m.attempts}@load.example>\r\n"
                f"X-Fault-Id: {self.tag}-{m.id}\r\nX-Mailer: bench-faults\r\n\r\n"
                f"{self.body}").encode()

    # -- one session ------------------------------------------------------------
    def _worker(self):
        s = None
        used = 0
        while True:
            m = self._take()
            if m is None:
                break
            n_before = m.attempts
            try:
                if s is None or used >= self.per_session:
                    if s is not None:
                        try:
                            s.quit()
                        except Exception:
                            pass
                    s, used = None, 0
                    s = smtplib.SMTP(LOOPBACK, self.port, local_hostname="client.example",
                                     timeout=90)
                    code, _ = s.ehlo()
                    if code >= 400:
                        raise smtplib.SMTPServerDisconnected(f"EHLO {code}")
                used += 1
                code, text = s.mail(m.sender)
                if code >= 400:
                    self._outcome(m, "mail", code, text=text.decode(errors="replace"))
                    s.rset()
                    continue
                code, text = s.rcpt("rcpt@example.net")
                if code >= 400:
                    self._outcome(m, "rcpt", code, text=text.decode(errors="replace"))
                    s.rset()
                    continue
                code, text = s.docmd("DATA")
                if code != 354:
                    self._outcome(m, "data", code, text=text.decode(errors="replace"))
                    s.rset()
                    continue
                data = self._message(m)
                t = time.monotonic()
                s.send(data + b"\r\n.\r\n")
                code, text = s.getreply()
                lat = time.monotonic() - t
                with self.lock:
                    m.lat.append(lat)
                txt = text.decode(errors="replace")
                mq = re.search(r"queued as ([0-9A-Za-z]+)", txt)
                self._outcome(m, "eod", code, mq.group(1) if mq else None, text=txt)
                if code == 421:
                    raise smtplib.SMTPServerDisconnected("421")
            except (smtplib.SMTPException, OSError) as e:
                if m.attempts == n_before:
                    # this attempt got no final answer: 421 at connect, a drop...
                    code = getattr(e, "smtp_code", 0) or 0
                    self._outcome(m, "conn", code if 400 <= code < 600 else 0, text=str(e))
                try:
                    if s is not None:
                        s.close()
                except Exception:
                    pass
                s, used = None, 0
        if s is not None:
            try:
                s.quit()
            except Exception:
                pass

    def start(self):
        self.t0 = time.monotonic()
        if self.rate:
            self.heap = [(self.t0 + i / self.rate, i) for i in range(len(self.msgs))]
        for _ in range(self.sessions):
            t = threading.Thread(target=self._worker, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def wait(self):
        for t in self.threads:
            t.join()
        self.t1 = time.monotonic()
        return self

    def wait_accepted(self, n, timeout=300):
        return h.wait_until(lambda: self.accepted >= n or self.done >= len(self.msgs), timeout,
                            f"{n} messages accepted (have {self.accepted})", interval=0.05)


# --------------------------------------------------------------------------
# accounting and figures
# --------------------------------------------------------------------------
FAULT_ID = re.compile(rb"^X-Fault-Id: (\S+)", re.M)


def sink_ids(sink, tag):
    seen = {}
    for p in sink.dump_files():
        with open(p, "rb") as f:
            for mm in FAULT_ID.finditer(f.read(65536)):
                k = mm.group(1).decode()
                if k.startswith(tag + "-"):
                    seen[k] = seen.get(k, 0) + 1
    return seen


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def daemon_decisions(sg, since=0):
    out = []
    for d in sg.decisions(since):
        try:
            d["_ms"] = float(d.get("ms", "nan"))
        except ValueError:
            d["_ms"] = float("nan")
        out.append(d)
    return out


def account_for(name, fleet, postfix, sink, decisions, settle_timeout=120):
    """The figures of one run; row['lost'] > 0 means a message went missing."""
    try:
        postfix.wait_settled(settle=2.0, timeout=settle_timeout)
    except h.HarnessError as e:
        log(f"{name}: queue did not settle: {e}")
    q = postfix.queue()
    qids = {m["queue_id"]: m["queue_name"] for m in q}
    at_sink = sink_ids(sink, fleet.tag)
    row = {"scenario": name, "sent": len(fleet.msgs), "delivered": 0, "queued": 0, "hold": 0,
           "refused4": 0, "refused5": 0, "noanswer": 0, "lost": 0, "dup": 0,
           "attempts4": fleet.attempts_4xx, "lost_ids": []}
    for m in fleet.msgs:
        key = f"{fleet.tag}-{m.id}"
        n_sink = at_sink.get(key, 0)
        row["dup"] += max(0, n_sink - 1)
        if m.final == "2xx":
            if n_sink:
                row["delivered"] += 1
            elif m.qid in qids:
                row["queued"] += 1
                row["hold"] += qids[m.qid] == "hold"
            else:
                row["lost"] += 1
                row["lost_ids"].append((key, m.qid, m.codes[-3:]))
        elif m.final == "4xx":
            row["refused4"] += 1
        elif m.final == "5xx":
            row["refused5"] += 1
        elif n_sink:                      # no answer, yet delivered: not lost
            row["delivered"] += 1
        else:
            row["noanswer"] += 1
            row["lost"] += 1
            row["lost_ids"].append((key, m.qid, m.codes[-3:]))
    lat = [x for m in fleet.msgs for x in m.lat]
    ms = [d["_ms"] for d in decisions if d["_ms"] == d["_ms"]]
    row.update({
        "decisions": len(decisions),
        "fallback": sum(1 for d in decisions if d.get("store_error") and d.get("action") != "tempfail"),
        "tempfail_store": sum(1 for d in decisions if d.get("store_error") and d.get("action") == "tempfail"),
        "tempfail": sum(1 for d in decisions if d.get("action") == "tempfail"),
        "held": sum(1 for d in decisions if d.get("action") == "hold"),
        "c_p50": pct(lat, 50), "c_p99": pct(lat, 99), "c_max": max(lat) if lat else None,
        "d_p50": pct(ms, 50), "d_p99": pct(ms, 99), "d_max": max(ms) if ms else None,
        "secs": (fleet.t1 or time.monotonic()) - fleet.t0,
        "queue_left": len(q),
    })
    # every accepted message had a decision line (its queue id)
    dq = {d.get("qid") for d in decisions}
    row["undecided"] = sum(1 for m in fleet.msgs if m.final == "2xx" and m.qid not in dq)
    row["checks"] = []
    row["replies4"] = "; ".join(f"{n} x `{t}` ({st})" for (st, t), n in fleet.replies4.most_common(3))
    log(f"{name}: sent {row['sent']} delivered {row['delivered']} queued {row['queued']} "
        f"refused4 {row['refused4']} refused5 {row['refused5']} lost {row['lost']} "
        f"fallback {row['fallback']} tempfail {row['tempfail']} in {row['secs']:.0f}s")
    return row


def check(row, ok, what):
    row["checks"].append(("ok" if ok else "FAIL", what))
    if not ok:
        log(f"{row['scenario']}: CHECK FAILED: {what}")
    return ok
