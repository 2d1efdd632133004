"""Self-test of the OVHcloud API stand-in (tests/ovhapi/standin.py).

Run from the top of the tree:
    python3 -m unittest tests/ovhapi/test_standin.py -v

Starts the stand-in as a subprocess on 127.0.0.1, port 0, with --clock-offset 3600,
and talks to it with its own small signer (not the stand-in's code).
"""

import hashlib
import http.client
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.join(HERE, "standin.py")
FIXTURE = os.path.join(HERE, "fixture-example.json")
OFFSET = 3600


def _find_vectors():
    cands = [os.environ.get("OVH_SIGNATURE_VECTORS", ""),
             os.path.join(HERE, "..", "data", "ovh-signature-vectors.tsv")]
    for c in cands:
        if c and os.path.exists(c):
            return c
    return None


VECTORS = _find_vectors()


def sign(app_secret, consumer_key, method, url, body, ts):
    """The test's own signer (independent of standin.py)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    pre = ("%s+%s+%s+%s+" % (app_secret, consumer_key, method, url)).encode("utf-8") \
        + body + ("+%s" % ts).encode("utf-8")
    return "$1$" + hashlib.sha1(pre).hexdigest()


def load_vectors():
    rows = []
    with open(VECTORS, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#") or line.startswith("source\t"):
                continue
            cols = line.split("\t")
            rows.append(dict(zip(["source", "as", "ck", "ts", "method", "url", "body",
                                  "expected"], cols)))
    return rows


def start_standin(fixture=FIXTURE, extra=()):
    proc = subprocess.Popen(
        [sys.executable, STANDIN, "--port", "0", "--fixture", fixture,
         "--clock-offset", str(OFFSET)] + list(extra),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    if not ready:
        proc.kill()
        raise RuntimeError("stand-in did not print READY in time")
    line = proc.stdout.readline().decode()
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError("unexpected first line %r; stderr: %s"
                           % (line, proc.stderr.read().decode()))
    return proc, int(line.split()[1])


class Client:
    def __init__(self, port, ak="AK", app_secret="AS", ck="CK"):
        self.port = port
        self.ak, self.app_secret, self.ck = ak, app_secret, ck
        self.delta = None

    def raw(self, method, path, body=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return r.status, r, data
        finally:
            conn.close()

    def json(self, method, path, body=None, headers=None, timeout=30):
        st, r, data = self.raw(method, path, body, headers, timeout)
        return st, r, json.loads(data) if data else None

    def control(self, name, obj=None):
        if obj is None and name in ("log", "state"):
            return self.json("GET", "/__control/" + name)[2]
        st, _, res = self.json("POST", "/__control/" + name,
                               json.dumps(obj or {}).encode())
        assert st == 200, (name, st, res)
        return res

    def server_time(self):
        st, _, t = self.json("GET", "/1.0/auth/time")
        assert st == 200
        return t

    def call(self, method, path, obj=None, raw_body=None, ts=None, sig=None, ck=None,
             ak=None, app_secret=None):
        if self.delta is None:
            self.delta = self.server_time() - int(time.time())
        body = raw_body if raw_body is not None else (
            json.dumps(obj, separators=(",", ":")).encode() if obj is not None else b"")
        ts = str(ts if ts is not None else int(time.time()) + self.delta)
        ck = ck or self.ck
        url = "http://127.0.0.1:%d%s" % (self.port, path)
        h = {"X-Ovh-Application": ak or self.ak, "X-Ovh-Consumer": ck,
             "X-Ovh-Timestamp": ts,
             "X-Ovh-Signature": sig or sign(app_secret or self.app_secret, ck, method, url,
                                            body, ts)}
        if body:
            h["Content-Type"] = "application/json"
        st, r, data = self.raw(method, path, body if body else None, h)
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data
        return st, r, parsed


EX_BOSS = "/1.0/email/exchange/org1/service/ex1/account/boss@example.com"


class SignatureVectors(unittest.TestCase):
    def test_vectors(self):
        self.assertIsNotNone(VECTORS, "ovh-signature-vectors.tsv not found")
        rows = load_vectors()
        self.assertEqual(len(rows), 21)
        spec = importlib.util.spec_from_file_location("standin", STANDIN)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for v in rows:
            args = (v["as"], v["ck"], v["method"], v["url"], v["body"], v["ts"])
            self.assertEqual(sign(*args), v["expected"], v)
            self.assertEqual(mod.signature(*args), v["expected"], v)
            self.assertEqual(mod.signature(*[a.encode() for a in args]), v["expected"], v)


class StandinTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.state_file = os.path.join(cls.tmp.name, "state.json")
        cls.proc, cls.port = start_standin(extra=["--state", cls.state_file])

    @classmethod
    def tearDownClass(cls):
        cls.proc.send_signal(signal.SIGTERM)
        try:
            cls.proc.wait(10)
        finally:
            if cls.proc.poll() is None:
                cls.proc.kill()
            cls.proc.stdout.close()
            cls.proc.stderr.close()
            cls.tmp.cleanup()

    def setUp(self):
        self.c = Client(self.port)
        self.c.control("reset")

    # ---- clock and signatures ----------------------------------------
    def test_time_has_offset(self):
        st, r, t = self.c.json("GET", "/1.0/auth/time")
        self.assertEqual(st, 200)
        self.assertIsInstance(t, int)
        self.assertLess(abs(t - (time.time() + OFFSET)), 5)
        self.assertRegex(r.getheader("X-Ovh-QueryID"), r"^EU\.ext-[0-9]+$")
        self.assertEqual(r.getheader("Content-Type"), "application/json")

    def test_good_signature(self):
        st, r, acc = self.c.call("GET", EX_BOSS)
        self.assertEqual(st, 200, acc)
        self.assertRegex(r.getheader("X-Ovh-QueryID"), r"^EU\.ext-[0-9]+$")
        self.assertEqual(acc["primaryEmailAddress"], "boss@example.com")
        self.assertEqual(acc["login"], "boss")
        self.assertEqual(acc["domain"], "example.com")
        self.assertIs(acc["spamDetected"], False)
        self.assertIsNone(acc["spamTicketNumber"])
        self.assertIn(acc["state"], ("ok", "suspended"))
        self.assertIsNone(acc["forwardingEmail"])
        self.assertIsInstance(acc["id"], int)
        self.assertIsInstance(acc["quota"], int)
        self.assertIn(acc["accountLicense"], ("basic", "standard", "enterprise"))
        self.assertRegex(acc["passwordLastUpdate"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")

    def test_percent_encoded_at(self):
        path = "/1.0/email/exchange/org1/service/ex1/account/" + quote("boss@example.com", safe="")
        self.assertIn("%40", path)
        st, _, acc = self.c.call("GET", path)
        self.assertEqual(st, 200, acc)
        self.assertEqual(acc["primaryEmailAddress"], "boss@example.com")

    def test_wrong_signature(self):
        st, _, e = self.c.call("GET", EX_BOSS, app_secret="WRONG")
        self.assertEqual(st, 400)
        self.assertEqual(e["errorCode"], "INVALID_SIGNATURE")
        # Signature over a different URL (host name) is wrong too.
        ts = int(time.time()) + OFFSET
        sig = sign("AS", "CK", "GET", "http://localhost:%d%s" % (self.port, EX_BOSS), "", ts)
        st, _, e = self.c.call("GET", EX_BOSS, ts=ts, sig=sig)
        self.assertEqual(st, 400)
        self.assertEqual(e["errorCode"], "INVALID_SIGNATURE")

    def test_body_is_signed(self):
        self.c.control("block", {"address": "boss@example.com"})
        tid = self.ticket_of("boss@example.com")
        path = "/1.0/support/tickets/%d/reply" % tid
        ts = int(time.time()) + OFFSET
        url = "http://127.0.0.1:%d%s" % (self.port, path)
        sig = sign("AS", "CK", "POST", url, b'{"body":"hello"}', ts)
        st, _, e = self.c.call("POST", path, raw_body=b'{"body":"hellO"}', ts=ts, sig=sig)
        self.assertEqual(st, 400)
        self.assertEqual(e["errorCode"], "INVALID_SIGNATURE")
        st, _, e = self.c.call("POST", path, raw_body=b'{"body":"hello"}', ts=ts, sig=sig)
        self.assertEqual(st, 200, e)

    def test_local_clock_is_out_of_time(self):
        st, _, e = self.c.call("GET", EX_BOSS, ts=int(time.time()))
        self.assertEqual(st, 400)
        self.assertEqual(e, {"message": "Query out of time", "errorCode": "QUERY_TIME_OUT"})
        # within 180 s is fine
        st, _, _ = self.c.call("GET", EX_BOSS, ts=int(time.time()) + OFFSET - 170)
        self.assertEqual(st, 200)

    def test_expired_and_unknown_ck(self):
        for ck in ("OLD", "NOPE"):
            st, _, e = self.c.call("GET", EX_BOSS, ck=ck)
            self.assertEqual(st, 403)
            self.assertEqual(e["errorCode"], "INVALID_CREDENTIAL")

    def test_unknown_ak(self):
        st, _, e = self.c.call("GET", EX_BOSS, ak="NOPE")
        self.assertEqual(st, 403)
        self.assertEqual(e, {"message": "Invalid application key", "errorCode": "INVALID_KEY"})

    def test_access_rules(self):
        st, _, _ = self.c.call("GET", EX_BOSS, ck="READONLY")
        self.assertEqual(st, 200)
        st, _, e = self.c.call("POST", EX_BOSS + "/changePassword", {"password": "x" * 12},
                               ck="READONLY")
        self.assertEqual(st, 403)
        self.assertEqual(e["errorCode"], "NOT_GRANTED_CALL")

    def test_credential_request_and_validation(self):
        st, _, res = self.c.json("POST", "/1.0/auth/credential",
                                 json.dumps({"accessRules": [{"method": "GET", "path": "/*"}]}).encode(),
                                 {"X-Ovh-Application": "AK", "Content-Type": "application/json"})
        self.assertEqual(st, 200, res)
        self.assertEqual(res["state"], "pendingValidation")
        new_ck = res["consumerKey"]
        st, _, e = self.c.call("GET", EX_BOSS, ck=new_ck)
        self.assertEqual(st, 403)
        vpath = res["validationUrl"].split(str(self.port), 1)[1]
        st, _, _ = self.c.json("GET", vpath)
        self.assertEqual(st, 200)
        st, _, cur = self.c.call("GET", "/1.0/auth/currentCredential", ck=new_ck)
        self.assertEqual(st, 200)
        self.assertEqual(cur["status"], "validated")
        self.assertEqual(cur["rules"], [{"method": "GET", "path": "/*"}])

    def test_oauth2(self):
        import base64
        basic = base64.b64encode(b"cid:csecret").decode()
        st, _, tok = self.c.json("POST", "/auth/oauth2/token",
                                 b"grant_type=client_credentials&scope=all",
                                 {"Authorization": "Basic " + basic,
                                  "Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(st, 200, tok)
        self.assertEqual(tok["token_type"], "Bearer")
        st, _, acc = self.c.json("GET", EX_BOSS, headers={"Authorization": "Bearer " + tok["access_token"]})
        self.assertEqual(st, 200)
        self.assertEqual(acc["primaryEmailAddress"], "boss@example.com")
        bad = base64.b64encode(b"cid:wrong").decode()
        st, _, e = self.c.json("POST", "/auth/oauth2/token", b"grant_type=client_credentials&scope=all",
                               {"Authorization": "Basic " + bad})
        self.assertEqual(st, 401)
        self.c.control("expire_tokens")
        st, _, e = self.c.json("GET", EX_BOSS, headers={"Authorization": "Bearer " + tok["access_token"]})
        self.assertEqual(st, 403)
        self.assertEqual(e["errorCode"], "INVALID_CREDENTIAL")

    def test_clock_control(self):
        self.c.call("GET", EX_BOSS)  # caches the delta
        self.c.control("clock", {"offset": OFFSET + 1000})
        st, _, e = self.c.call("GET", EX_BOSS)
        self.assertEqual(st, 400)
        self.assertEqual(e["errorCode"], "QUERY_TIME_OUT")
        self.c.delta = None
        st, _, _ = self.c.call("GET", EX_BOSS)
        self.assertEqual(st, 200)

    # ---- objects -------------------------------------------------------
    def test_404(self):
        st, _, e = self.c.call("GET", "/1.0/email/exchange/org1/service/ex1/account/nobody@example.com")
        self.assertEqual(st, 404)
        self.assertEqual(e["message"],
                         "The requested object (primaryEmailAddress = nobody@example.com) does not exist")
        st, _, e = self.c.call("GET", "/1.0/email/pro/pro1/account/nobody@example.com")
        self.assertEqual(st, 404)
        st, _, e = self.c.call("GET", "/1.0/support/tickets/123")
        self.assertEqual(st, 404)
        st, _, e = self.c.call("GET", "/1.0/email/domain/example.net/account/nobody")
        self.assertEqual(st, 404)

    def test_listing(self):
        self.assertEqual(self.c.call("GET", "/1.0/email/exchange")[2], ["org1"])
        self.assertEqual(self.c.call("GET", "/1.0/email/exchange/org1/service")[2], ["ex1"])
        self.assertEqual(self.c.call("GET", "/1.0/email/exchange/org1/service/ex1/account")[2],
                         ["boss@example.com", "assistant@example.com"])
        self.assertEqual(self.c.call("GET", "/1.0/email/pro")[2], ["pro1"])
        self.assertEqual(self.c.call("GET", "/1.0/email/mxplan/mx1/account")[2], ["info@example.org"])
        self.assertEqual(self.c.call("GET", "/1.0/email/domain/example.net/account")[2],
                         ["fax", "contact"])

    def test_other_offers(self):
        st, _, pro = self.c.call("GET", "/1.0/email/pro/pro1/account/sales@example.com")
        self.assertEqual(st, 200)
        self.assertIs(pro["spamDetected"], True)   # blocked in the fixture
        self.assertIsInstance(pro["spamTicketNumber"], int)
        st, _, ids = self.c.call("GET", "/1.0/support/tickets?excludeAutogenerated=false&ticketNumber=%d" % pro["spamTicketNumber"])
        self.assertEqual(len(ids), 1)
        st, _, mx = self.c.call("GET", "/1.0/email/mxplan/mx1/account/info@example.org")
        self.assertEqual(st, 200)
        self.assertIs(mx["spamDetected"], False)
        self.assertIsInstance(mx["quota"], float)
        st, _, leg = self.c.call("GET", "/1.0/email/domain/example.net/account/fax")
        self.assertEqual(st, 200)
        self.assertEqual((leg["accountName"], leg["domain"], leg["email"], leg["isBlocked"]),
                         ("fax", "example.net", "fax@example.net", False))
        st, _, rids = self.c.call("GET", "/1.0/email/domain/example.net/redirection?from=fax%40example.net")
        self.assertEqual(st, 200)
        self.assertEqual(len(rids), 1)
        st, _, red = self.c.call("GET", "/1.0/email/domain/example.net/redirection/%s" % rids[0])
        self.assertEqual(red, {"id": rids[0], "from": "fax@example.net", "to": "x@y.z"})
        st, _, acc = self.c.call("GET", "/1.0/email/exchange/org1/service/ex1/account/assistant@example.com")
        self.assertEqual(acc["forwardingEmail"], "assistant.home@example.org")

    # ---- the block workflow -------------------------------------------
    def ticket_of(self, address):
        st = self.c.control("state")
        return st["accounts"][address]["ticketId"]

    def test_block_ticket_messages(self):
        res = self.c.control("block", {"address": "boss@example.com"})
        st, _, acc = self.c.call("GET", EX_BOSS)
        self.assertIs(acc["spamDetected"], True)
        number = acc["spamTicketNumber"]
        self.assertIsInstance(number, int)
        self.assertEqual(number, res["ticketNumber"])
        st, _, ids = self.c.call("GET", "/1.0/support/tickets?excludeAutogenerated=false&ticketNumber=%d" % number)
        self.assertEqual(st, 200)
        self.assertEqual(len(ids), 1)
        tid = ids[0]
        self.assertNotEqual(tid, number)
        st, _, t = self.c.call("GET", "/1.0/support/tickets/%d" % tid)
        self.assertEqual(t["ticketId"], tid)
        self.assertEqual(t["ticketNumber"], number)
        self.assertEqual(t["subject"], "Account locked for spam.")
        self.assertEqual(t["state"], "open")
        self.assertEqual(t["serviceName"], "ex1")
        self.assertEqual(t["lastMessageFrom"], "support")
        for k in ("canBeClosed", "creationDate", "updateDate", "product", "category", "type",
                  "score", "accountId"):
            self.assertIn(k, t)
        st, _, msgs = self.c.call("GET", "/1.0/support/tickets/%d/messages" % tid)
        self.assertEqual(len(msgs), 1)
        m = msgs[0]
        self.assertEqual(m["from"], "support")
        self.assertEqual(m["ticketId"], tid)
        self.assertIsInstance(m["messageId"], int)
        body = m["body"]
        for needle in ("boss@example.com", "ex1", "312",
                       "1. Are you the sender of the e-mail in question (see the header below)?",
                       "2. Do you have a redirection rule to another e-mail address?",
                       "3. Have you replied to a spam?",
                       "\nReceived: ", "\nFrom: ", "\nTo: ", "\nSubject: ", "\nX-Mailer: "):
            self.assertIn(needle, body)
        # filters
        q = "/1.0/support/tickets?excludeAutogenerated=false&status=open&subject=" + quote("Account locked for spam.")
        st, _, open_ids = self.c.call("GET", q)
        self.assertIn(tid, open_ids)
        st, _, closed = self.c.call("GET", "/1.0/support/tickets?status=closed&excludeAutogenerated=false")
        self.assertNotIn(tid, closed)
        self.assertTrue(closed)   # the fixture's old ticket
        st, _, none = self.c.call("GET", "/1.0/support/tickets?ticketNumber=1")
        self.assertEqual(none, [])
        st, _, e = self.c.call("GET", "/1.0/support/tickets?status=bogus")
        self.assertEqual(st, 400)

    def test_reply_without_auto_unblock(self):
        self.c.control("block", {"address": "boss@example.com"})
        tid = self.ticket_of("boss@example.com")
        st, _, res = self.c.call("POST", "/1.0/support/tickets/%d/reply" % tid, {"body": "1. no"})
        self.assertEqual(st, 200)
        self.assertIsNone(res)
        st, _, t = self.c.call("GET", "/1.0/support/tickets/%d" % tid)
        self.assertEqual(t["lastMessageFrom"], "customer")
        st, _, acc = self.c.call("GET", EX_BOSS)
        self.assertIs(acc["spamDetected"], True)

    def test_reply_with_auto_unblock(self):
        self.c.control("block", {"address": "boss@example.com"})
        self.c.control("auto_unblock", {"on": True})
        tid = self.ticket_of("boss@example.com")
        answer = "1. No.\n2. No.\n3. No."
        st, _, _ = self.c.call("POST", "/1.0/support/tickets/%d/reply" % tid, {"body": answer})
        self.assertEqual(st, 200)
        st, _, acc = self.c.call("GET", EX_BOSS)
        self.assertIs(acc["spamDetected"], False)
        st, _, msgs = self.c.call("GET", "/1.0/support/tickets/%d/messages" % tid)
        self.assertEqual([m["from"] for m in msgs], ["support", "customer"])
        self.assertEqual(msgs[1]["body"], answer)
        st, _, t = self.c.call("GET", "/1.0/support/tickets/%d" % tid)
        self.assertEqual(t["lastMessageFrom"], "customer")

    def test_block_link_variants(self):
        self.c.control("block", {"address": "info@example.org", "link": "null"})
        st, _, acc = self.c.call("GET", "/1.0/email/mxplan/mx1/account/info@example.org")
        self.assertIs(acc["spamDetected"], True)
        self.assertIsNone(acc["spamTicketNumber"])
        self.c.control("block", {"address": "boss@example.com", "link": "other"})
        st, _, acc = self.c.call("GET", EX_BOSS)
        st, _, ids = self.c.call("GET", "/1.0/support/tickets?excludeAutogenerated=false&ticketNumber=%d" % acc["spamTicketNumber"])
        self.assertEqual(ids, [])

    def test_reject_reply(self):
        self.c.control("block", {"address": "boss@example.com"})
        tid = self.ticket_of("boss@example.com")
        self.c.control("reject", {"what": "reply", "count": 1})
        st, _, _ = self.c.call("POST", "/1.0/support/tickets/%d/reply" % tid, {"body": "x"})
        self.assertEqual(st, 400)
        st, _, _ = self.c.call("POST", "/1.0/support/tickets/%d/reply" % tid, {"body": "x"})
        self.assertEqual(st, 200)

    def test_change_password(self):
        st, _, task = self.c.call("POST", EX_BOSS + "/changePassword", {"password": "N3w-Str0ng-Pass"})
        self.assertEqual(st, 200, task)
        self.assertEqual(task["function"], "changePassword")
        self.assertIn(task["status"], ("todo", "doing", "done"))
        st, _, t2 = self.c.call("GET", EX_BOSS + "/tasks/%d" % task["id"])
        self.assertEqual(t2["status"], "doing")
        st, _, t2 = self.c.call("GET", EX_BOSS + "/tasks/%d" % task["id"])
        self.assertEqual(t2["status"], "done")
        self.assertIsNotNone(t2["finishDate"])
        self.assertEqual(self.c.control("state")["passwords"]["boss@example.com"], "N3w-Str0ng-Pass")
        self.c.control("reject", {"what": "changePassword"})
        st, _, _ = self.c.call("POST", EX_BOSS + "/changePassword", {"password": "N3w-Str0ng-Pass"})
        self.assertEqual(st, 400)

    def test_legacy_password_rules_and_auto_unblock(self):
        path = "/1.0/email/domain/example.net/account/fax/changePassword"
        for bad in ("short1", "x" * 31, " leadingspace", "trailingspace ", "mötdepasse1"):
            st, _, e = self.c.call("POST", path, {"password": bad})
            self.assertEqual(st, 400, bad)
        self.c.control("block", {"address": "fax@example.net"})
        st, _, acc = self.c.call("GET", "/1.0/email/domain/example.net/account/fax")
        self.assertIs(acc["isBlocked"], True)
        self.c.control("auto_unblock", {"on": True})
        st, _, task = self.c.call("POST", path, {"password": "GoodPass123"})
        self.assertEqual(st, 200, task)
        self.assertEqual(task["action"], "changePassword")
        self.assertEqual(task["name"], "fax")
        st, _, acc = self.c.call("GET", "/1.0/email/domain/example.net/account/fax")
        self.assertIs(acc["isBlocked"], False)

    def test_task_outcomes(self):
        # error: todo -> doing -> error; stuck stays doing.
        self.c.control("task_outcome", {"outcome": "error"})
        self.c.control("task_outcome", {"outcome": "stuck"})
        st, _, t = self.c.call("POST", EX_BOSS + "/changePassword", {"password": "N3w-Str0ng-Pass"})
        seen = [self.c.call("GET", EX_BOSS + "/tasks/%d" % t["id"])[2]["status"] for _ in range(3)]
        self.assertEqual(seen, ["doing", "error", "error"])
        st, _, t = self.c.call("POST", EX_BOSS + "/changePassword", {"password": "N3w-Str0ng-Pass"})
        seen = [self.c.call("GET", EX_BOSS + "/tasks/%d" % t["id"])[2]["status"] for _ in range(4)]
        self.assertEqual(seen, ["doing"] * 4)
        st, _, ids = self.c.call("GET", EX_BOSS + "/tasks")
        self.assertEqual(len(ids), 2)
        # Legacy: listed while pending, gone (404) once done.
        base = "/1.0/email/domain/example.net"
        st, _, t = self.c.call("POST", base + "/account/fax/changePassword", {"password": "GoodPass123"})
        st, _, ids = self.c.call("GET", base + "/task/account?name=fax")
        self.assertEqual(ids, [t["id"]])
        self.assertEqual(self.c.call("GET", base + "/task/account/%d" % t["id"])[0], 200)
        self.assertEqual(self.c.call("GET", base + "/task/account/%d" % t["id"])[0], 200)
        self.assertEqual(self.c.call("GET", base + "/task/account/%d" % t["id"])[0], 404)
        st, _, ids = self.c.call("GET", base + "/task/account?name=fax")
        self.assertEqual(ids, [])

    def test_autogenerated_and_reopen(self):
        r = self.c.control("block", {"address": "sales@example.com"})
        tid = r["ticketId"]
        st, _, ids = self.c.call("GET", "/1.0/support/tickets?status=open")
        self.assertNotIn(tid, ids, "autogenerated tickets left out by default")
        st, _, ids = self.c.call("GET", "/1.0/support/tickets?status=open&excludeAutogenerated=false")
        self.assertIn(tid, ids)
        st, _, e = self.c.call("POST", "/1.0/support/tickets/%d/reopen" % tid)
        self.assertEqual(st, 400, "an open ticket cannot be reopened")
        self.c.control("unblock", {"address": "sales@example.com"})
        st, _, t = self.c.call("GET", "/1.0/support/tickets/%d" % tid)
        self.assertEqual(t["state"], "closed")
        st, _, e = self.c.call("POST", "/1.0/support/tickets/%d/reopen" % tid)
        self.assertEqual(st, 200, e)
        st, _, t = self.c.call("GET", "/1.0/support/tickets/%d" % tid)
        self.assertEqual(t["state"], "open")

    def test_fault_drop(self):
        self.c.control("clear_log", {})
        self.c.control("fault", {"mode": "drop", "path": "/email/exchange"})
        with self.assertRaises(Exception):
            self.c.call("POST", EX_BOSS + "/changePassword", {"password": "Dropped-Pass-1"})
        # Carried out all the same.
        self.assertEqual(self.c.control("state")["passwords"]["boss@example.com"], "Dropped-Pass-1")
        log = self.c.control("log")
        self.assertTrue(log[-1].get("dropped"))
        self.assertIn("t", log[-1])
        self.assertIn("host", log[-1])

    # ---- faults ----------------------------------------------------------
    def test_fault_503(self):
        self.c.call("GET", EX_BOSS)
        self.c.control("fault", {"mode": "503", "count": 2})
        for _ in range(2):
            st, r, e = self.c.call("GET", EX_BOSS)
            self.assertEqual(st, 503)
            self.assertIn("message", e)
            self.assertTrue(r.getheader("X-Ovh-QueryID"))
        st, _, _ = self.c.call("GET", EX_BOSS)
        self.assertEqual(st, 200)

    def test_fault_429_path(self):
        self.c.call("GET", EX_BOSS)
        self.c.control("fault", {"mode": "429", "retry_after": 7, "path": "/support/"})
        st, _, _ = self.c.call("GET", EX_BOSS)
        self.assertEqual(st, 200)
        st, r, _ = self.c.call("GET", "/1.0/support/tickets")
        self.assertEqual(st, 429)
        self.assertEqual(r.getheader("Retry-After"), "7")
        st, _, _ = self.c.call("GET", "/1.0/support/tickets")
        self.assertEqual(st, 200)

    def test_fault_garbage_truncated_500(self):
        self.c.call("GET", EX_BOSS)
        self.c.control("fault", {"mode": "garbage"})
        self.c.control("fault", {"mode": "truncated"})
        self.c.control("fault", {"mode": "500"})
        st, _, data = self.c.raw("GET", EX_BOSS)
        self.assertEqual(st, 200)
        self.assertRaises(ValueError, json.loads, data)
        st, r, data = self.c.raw("GET", EX_BOSS)
        self.assertEqual(st, 200)
        self.assertEqual(int(r.getheader("Content-Length")), len(data))
        self.assertRaises(ValueError, json.loads, data)
        st, _, e = self.c.json("GET", EX_BOSS)
        self.assertEqual(st, 500)
        self.assertIn("message", e)

    def test_fault_slow_and_huge(self):
        self.c.call("GET", EX_BOSS)
        self.c.control("fault", {"mode": "slow", "delay": 1})
        t0 = time.monotonic()
        st, _, _ = self.c.call("GET", EX_BOSS)
        self.assertEqual(st, 200)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        self.c.control("fault", {"mode": "huge"})
        st, _, data = self.c.raw("GET", EX_BOSS)
        self.assertEqual(st, 200)
        self.assertGreater(len(data), 19 * 1024 * 1024)
        self.assertIsInstance(json.loads(data), str)

    def test_slow_call_does_not_block_others(self):
        import threading
        self.c.call("GET", EX_BOSS)
        self.c.control("fault", {"mode": "slow", "delay": 2, "path": "/support/tickets"})
        done = {}
        th = threading.Thread(target=lambda: done.setdefault("st", self.c.call("GET", "/1.0/support/tickets")[0]))
        th.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        st, _, _ = self.c.call("GET", EX_BOSS)
        self.assertEqual(st, 200)
        self.assertLess(time.monotonic() - t0, 1.0)
        th.join(10)
        self.assertEqual(done.get("st"), 200)

    # ---- control ---------------------------------------------------------
    def test_log_and_state_file(self):
        self.c.control("clear_log")
        self.c.call("GET", EX_BOSS)
        self.c.call("POST", EX_BOSS + "/changePassword", {"password": "Another-Pass-9"})
        log = self.c.control("log")
        self.assertEqual([(e["method"], e["status"]) for e in log],
                         [("GET", 200), ("GET", 200), ("POST", 200)])
        self.assertEqual(log[0]["path"], "/1.0/auth/time")
        self.assertEqual(log[2]["body"], '{"password":"Another-Pass-9"}')
        with open(self.state_file, encoding="utf-8") as f:
            dumped = json.load(f)
        self.assertEqual(dumped["passwords"]["boss@example.com"], "Another-Pass-9")


class Lifecycle(unittest.TestCase):
    def test_french_ticket_and_signals(self):
        with open(FIXTURE, encoding="utf-8") as f:
            fx = json.load(f)
        fx["ticket_language"] = "fr"
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(fx, f)
            path = f.name
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                proc, port = start_standin(path)
                try:
                    c = Client(port)
                    c.control("block", {"address": "boss@example.com", "suspicious": 17})
                    st = c.control("state")
                    msgs = [t for t in st["tickets"] if t["address"] == "boss@example.com"][0]["messages"]
                    body = msgs[0]["body"]
                    self.assertIn("Êtes-vous l'émetteur de l'e-mail en question", body)
                    self.assertIn("17 message(s) suspect(s)", body)
                    self.assertIn("boss@example.com", body)
                    proc.send_signal(sig)
                    self.assertEqual(proc.wait(10), 0)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                    proc.stdout.close()
                    proc.stderr.close()
        finally:
            os.unlink(path)


if __name__ == "__main__":
    unittest.main()
