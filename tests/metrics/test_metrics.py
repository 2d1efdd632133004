#!/usr/bin/env python3
"""
test_metrics.py - sendguard's Prometheus textfile, read by the real thing.

The daemon (with -u nobody, as in production) writes metrics.textfile
every second into a directory that Debian's prometheus-node-exporter reads
with its textfile collector; node_exporter runs on 127.0.0.1 on a free port.
Messages go through the daemon with the milter client; /metrics is scraped
before and after, and the counters must have moved by exactly what was
sent. Then the Grafana dashboard in contrib/grafana is checked: valid JSON,
and every sendguard_* metric its queries use is one the daemon exports.

A missing prometheus-node-exporter is a FAIL (contrib/sg-setup test
installs it), never a skip.
"""
import json
import os
import re
import subprocess
import sys
import time
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "milter"))
import harness as h          # noqa: E402
import milterclient as mc    # noqa: E402

DASHBOARD = os.path.join(HERE, "..", "..", "contrib", "grafana", "sendguard.json")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$')


def parse(text):
    """{(name, frozenset(labels)): value} of a text exposition."""
    out = {}
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        m = SAMPLE.match(ln)
        if not m:
            raise AssertionError(f"not a sample line: {ln!r}")
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def val(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


class Metrics(h.ScratchTestCase):
    scratch_prefix = "sg-metrics-"

    def start(self, textfile):
        self.exporter = h.require_tool("prometheus-node-exporter", "prometheus-node-exporter")
        # the API watcher polls a loopback port where nothing listens: every
        # call fails, and is counted as such
        dead = h.free_port()
        ovh_conf = self.scratch.file("ovh.conf")
        with open(ovh_conf, "w") as f:
            f.write(f"[default]\nendpoint=http://127.0.0.1:{dead}/1.0\n[http://127.0.0.1:{dead}/1.0]\n"
                    "application_key=AK\napplication_secret=AS\nconsumer_key=CK\n")
        os.chmod(ovh_conf, 0o600)
        pw = h.pwd.getpwnam("nobody")
        os.chown(ovh_conf, pw.pw_uid, pw.pw_gid)
        cfg = lambda sock: h.sendguard_config(
            sock, [h.limit("hourly", "1h", 3, "tempfail")],
            accounts=[{"address": "sales@example.com", "offer": "emailpro", "service": "pro"}],
            metrics={"textfile": textfile, "interval": "1s"},
            ovh={"credentials": ovh_conf, "poll_interval": "5s", "timeout": "2s"})
        self.sg = h.Sendguard(h.sendguard_binary(), self.scratch.sub("sendguard"), cfg).start()
        port = h.free_port()
        self.url = f"http://127.0.0.1:{port}/metrics"
        log = open(self.scratch.file("node_exporter.log"), "wb")
        self.ne = subprocess.Popen(
            [self.exporter, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
             "--collector.textfile", f"--collector.textfile.directory={os.path.dirname(textfile)}"],
            stdout=log, stderr=log)
        self.addCleanup(self.ne.wait, 10)
        self.addCleanup(self.ne.terminate)
        h.wait_until(lambda: self.scrape(quiet=True) is not None, 20, "node_exporter to answer")

    def scrape(self, quiet=False):
        try:
            with urllib.request.urlopen(self.url, timeout=5) as r:
                return parse(r.read().decode())
        except OSError:
            if quiet:
                return None
            raise

    def fresh(self, after):
        """A scrape whose file was written after `after` (epoch seconds)."""
        box = {}

        def ok():
            s = self.scrape()
            box["s"] = s
            return val(s, "sendguard_metrics_written_timestamp_seconds") > after
        h.wait_until(ok, 20, "a metrics file written after the messages")
        return box["s"]

    def test_counters_move_by_what_was_sent(self):
        promdir = self.scratch.sub("prom", owner="nobody")
        textfile = os.path.join(promdir, "sendguard.prom")
        self.start(textfile)
        before = self.fresh(0)
        self.assertEqual(val(before, "node_textfile_scrape_error"), 0.0, "node_exporter could not read the file")
        self.assertEqual(val(before, "sendguard_build_info", version=h.sendguard_version(), store="memory"), 1.0,
                         [k for k in before if k[0] == "sendguard_build_info"])
        c = mc.MilterClient(self.sg.socket)
        c.negotiate()
        c.connect("client.example", "192.0.2.9")
        verdicts = []
        for i in range(5):
            r = c.message("<sales@example.com>", ["<r1@example.net>", "<r2@example.net>"],
                          mail_macros={"i": f"MET{i}"}, eom_macros={"i": f"MET{i}"})
            verdicts.append(r.verdict)
        c.quit()
        self.assertEqual(verdicts, ["accept"] * 3 + ["tempfail"] * 2)
        self.sg.reload(expect=r"reloaded ")
        with open(self.sg.config_path) as f:
            good = f.read()
        self.sg.reload("limits = ( broken", expect=r"reload of .* failed")
        self.sg.write_config(good)
        t = time.time()
        after = self.fresh(t)

        def delta(name, **labels):
            return val(after, name, **labels) - val(before, name, **labels)
        self.assertEqual(delta("sendguard_decisions_total", action="accept", limit="", observe="0"), 3)
        self.assertEqual(delta("sendguard_decisions_total", action="tempfail", limit="hourly", observe="0"), 2)
        self.assertEqual(delta("sendguard_decision_duration_seconds_count"), 5)
        self.assertEqual(delta("sendguard_decision_duration_seconds_bucket", le="+Inf"), 5)
        self.assertEqual(delta("sendguard_store_roundtrip_seconds_count"), 5)
        self.assertEqual(delta("sendguard_config_reloads_total", result="ok"), 1)
        self.assertEqual(delta("sendguard_config_reloads_total", result="failed"), 1)
        self.assertEqual(delta("sendguard_store_errors_total"), 0)
        self.assertEqual(val(after, "sendguard_store_up"), 1)
        self.assertEqual(val(after, "sendguard_limit_usage_ratio", account="sales@example.com", limit="hourly"), 1.0)
        self.assertEqual(val(after, "sendguard_account_blocked", account="sales@example.com"), 0)
        self.assertEqual(val(after, "sendguard_held_messages", account="sales@example.com"), 0)
        self.assertEqual(val(after, "node_textfile_scrape_error"), 0.0)
        self.assertGreaterEqual(val(after, "sendguard_api_calls_total", result="failed"), 1,
                                "the watcher's failed API calls are not counted")
        self.assertEqual(val(after, "sendguard_api_calls_total", result="ok"), 0)
        # nothing but the file itself is left in the directory (no temp files)
        self.assertEqual(sorted(os.listdir(promdir)), ["sendguard.prom"])
        self.assertEqual(os.stat(textfile).st_uid, h.pwd.getpwnam("nobody").pw_uid)
        self.sg.stop()

        # the dashboard: JSON, and only metrics the daemon writes
        with open(DASHBOARD) as f:
            dash = json.load(f)
        exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        self.assertGreaterEqual(len(exprs), 6, "the dashboard has too few queries")
        exported = {k[0] for k in after}
        used = set()
        for e in exprs:
            for m in re.findall(r"\b(sendguard_[a-z_]+)", e):
                used.add(m)
        self.assertTrue(used, "no sendguard_ metric in the dashboard")
        missing = sorted(u for u in used if u not in exported)
        self.assertEqual(missing, [], "dashboard queries metrics the daemon does not write")


if __name__ == "__main__":
    unittest.main()
