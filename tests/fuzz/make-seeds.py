#!/usr/bin/env python3
"""Regenerate the seed corpus of fuzz_api (tests/fuzz/corpus/api/) from the
OVH API stand-in (tests/ovhapi/standin.py) and its example fixture: every
reply is what the stand-in answers, i.e. the real API's shapes as recorded
in tests/ovhapi/PROTOCOL.md. Not run by the tests (the seeds are committed);
run it after a change of the stand-in:  python3 tests/fuzz/make-seeds.py
"""
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "ovhapi"))
import standin  # noqa: E402

SEP = b"\n%%\n"
OFFERS = {"exchange": 0, "emailpro": 1, "mxplan": 2, "legacy": 3}
MODES = {"status": 0, "list": 1, "chpw": 2, "redir": 3, "find": 4, "messages": 5,
         "reply": 6, "credential": 7, "gather": 8, "watch": 9}

with open(os.path.join(here, "..", "ovhapi", "fixture-example.json")) as f:
    fixture = json.load(f)
st = standin.State(fixture, 0, lambda: 8080)
cred = {"application_key": "AK", "consumer_key": "CK"}


def get(method, path, body=None):
    fn, params, _ = standin.match_route(method, path.strip("/").split("?")[0].split("/"))
    query = standin.parse_qs(path.partition("?")[2])
    ctx = standin.Ctx(st, method, path, query, body, cred)
    try:
        status, payload = fn(ctx, params)
    except standin.ApiError as e:
        return ("!%d %s" % (e.status, e.payload.get("errorCode", ""))).strip().encode()
    return b"" if payload is None else standin.dumps(payload)


def acc_path(rec, suffix=""):
    o = rec["offer"]
    if o == "exchange":
        p = "email/exchange/%s/service/%s/account/%s" % (rec["organization"], rec["service"],
                                                        rec["address"])
    elif o == "emailpro":
        p = "email/pro/%s/account/%s" % (rec["service"], rec["address"])
    elif o == "mxplan":
        p = "email/mxplan/%s/account/%s" % (rec["service"], rec["address"])
    else:
        p = "email/domain/%s/account/%s" % (rec["domain"], rec["local"])
    return p + suffix


out = os.path.join(here, "corpus", "api")
os.makedirs(out, exist_ok=True)
for old in os.listdir(out):
    os.unlink(os.path.join(out, old))


def seed(name, mode, offer, replies, opt=0):
    data = bytes([MODES[mode], OFFERS[offer] | opt]) + SEP.join(replies)
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


ADDR = {"exchange": "boss@example.com", "emailpro": "sales@example.com",
        "mxplan": "info@example.org", "legacy": "fax@example.net"}
# before any block
for offer, addr in ADDR.items():
    rec = st.account(addr)
    seed("status-ok-" + offer, "status", offer, [get("GET", acc_path(rec))])
seed("list-exchange", "list", "exchange",
     [get("GET", "email/exchange"), get("GET", "email/exchange/org1/service"),
      get("GET", "email/exchange/org1/service/ex1/account")])
seed("list-emailpro", "list", "emailpro",
     [get("GET", "email/pro"), get("GET", "email/pro/pro1/account")])
seed("list-mxplan", "list", "mxplan",
     [get("GET", "email/mxplan"), get("GET", "email/mxplan/mx1/account")])
seed("list-legacy", "list", "legacy",
     [get("GET", "email/domain"), get("GET", "email/domain/example.net/account")])
rec = st.account("assistant@example.com")
seed("redir-exchange", "redir", "exchange", [get("GET", acc_path(rec))])
ids = get("GET", "email/domain/example.net/redirection?from=fax@example.net")
seed("redir-legacy", "redir", "legacy",
     [ids] + [get("GET", "email/domain/example.net/redirection/%s" % i)
              for i in json.loads(ids)])
body = json.dumps({"password": "Tr0ub4dor&3xyz"}).encode()
for offer, addr in ADDR.items():
    seed("chpw-" + offer, "chpw", offer,
         [get("POST", acc_path(st.account(addr), "/changePassword"), body)])
seed("credential", "credential", "emailpro",
     [get("POST", "auth/credential",
          json.dumps({"accessRules": [{"method": "GET", "path": "/email/*"}]}).encode())], 4)
seed("error-403", "status", "emailpro", [b"!403 INVALID_CREDENTIAL"])
seed("error-404", "find", "emailpro", [b"!404", b"[]"], 4)

# blocked: tickets and their messages
for offer, addr in ADDR.items():
    st.block(addr, {})
    rec = st.account(addr)
    status = get("GET", acc_path(rec))
    seed("status-blocked-" + offer, "status", offer, [status])
    if offer == "legacy":
        seed("gather-legacy", "gather", offer,
             [status, ids] + [get("GET", "email/domain/example.net/redirection/%s" % i)
                              for i in json.loads(ids)])
        seed("watch-legacy", "watch", offer, [status, status])
        continue
    number = json.loads(status)["spamTicketNumber"]
    tid = rec["ticketId"]
    by_number = [get("GET", "support/tickets?ticketNumber=%d" % number),
                 get("GET", "support/tickets/%d" % tid)]
    msgs = get("GET", "support/tickets/%d/messages" % tid)
    seed("find-number-" + offer, "find", offer, by_number, 4)
    opened = get("GET", "support/tickets?status=open&subject=Account%20locked%20for%20spam.")
    seed("find-search-" + offer, "find", offer,
         [opened] + sum([[get("GET", "support/tickets/%d" % i),
                          get("GET", "support/tickets/%d/messages" % i)]
                         for i in json.loads(opened)], []))
    seed("messages-" + offer, "messages", offer, [msgs])
    gather = [status] + by_number + [msgs]
    if offer == "exchange":
        gather.append(status)
    seed("gather-" + offer, "gather", offer, gather)
    seed("watch-" + offer, "watch", offer, [status] + by_number + [msgs, status])
    st.language = "fr"
seed("reply", "reply", "emailpro", [b""])
seed("closed-ticket", "find", "emailpro",
     [b"[9000001]", get("GET", "support/tickets/9000001")], 4)
print("%d seeds in %s" % (len(os.listdir(out)), out))


# --------------------------------------------------------------------------
# The other targets' seeds (small, from real shapes)
def write(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# fuzz_evidence: the store's evidence report in the target's line format
# (fuzz_evidence.c) around the target's now (2026-01-01T00:00Z), and
# OVHcloud's ticket texts.
NOW = 1767225600000
H = 3600000


def evidence(spike, days=2):
    now_hour = NOW // H
    lines = ["l %d" % (NOW - 60000)]
    lines += ["h %d %d 9 0" % (h, 300 if spike and h == now_hour - 1 else 5)
              for h in range(now_hour - days * 24 + 1, now_hour + 1)]
    lines += ["i 240 %d 192.0.2.10" % (NOW - 40 * H),
              "m 240 %d Microsoft Outlook 16.0" % (NOW - 40 * H),
              "d 50 gmail.com", "d 400 example.org", "d 7 yahoo.fr",
              "x %d" % (300 if spike else 0)]
    if spike:
        lines += ["i 300 %d 203.0.113.66" % (NOW - 2 * H + 60000),
                  "m 300 %d PHPMailer 5.2.9 (https://github.com/PHPMailer/PHPMailer)"
                  % (NOW - 2 * H + 60000)]
    return "\n".join(lines) + "\n"


write("evidence", "quiet", bytes([1]) + evidence(False).encode())
write("evidence", "spike-fr", bytes([0x04 | 0x08 | 0x10]) + evidence(True).encode())
write("evidence", "spike-legacy", bytes([3 | 0x20]) + evidence(True, 1).encode())
write("evidence", "empty-store", bytes([0]) + b"l -1\nx 0\n")
write("evidence", "far-hours", bytes([2]) + (
    "h %d 7 9 1\nh -1 18446744073709551615 1 1\nh 9223372036854775807 3 3 3\n"
    "i 5 -1 \ni 18446744073709551615 9223372036854775807 198.51.100.7\n"
    "m 1 -9223372036854775808 x\nd 0 \n" % (NOW // H - 60)).encode())
for lang in ("en", "fr"):
    st.language = lang
    body = standin.spam_message(lang, "sales@example.com", "pro1", 312, st.date())
    write("evidence", "ticket-" + lang, bytes([0x80 | 0x08 | (0x04 if lang == "fr" else 0)])
          + body.encode())

# fuzz_address: settings byte, escape size, "pattern\nidentity"
for name, opt, cap, text in [
        ("plain", 1, 255, "*@example.com\nSales@Example.COM"),
        ("tag", 3, 64, "sales@example.com\n<sales+newsletter@example.com>"),
        ("null-sender", 1, 16, "*\n<>"),
        ("login", 1, 255, "backup@*\nbackup"),
        ("quoted", 1, 100, "*@example.com\n\"john doe\"@example.com"),
        ("utf8", 0, 80, "*@xn--bcher-kva.example\n<j\xc3\xbcrgen@b\xc3\xbccher.example>"),
        ("log-forgery", 1, 200, "x\nuser@example.com> status=sent\r\nfake=<line"),
        ("long", 3, 40, "*\n" + "a" * 330 + "@example.com")]:
    write("address", name, bytes([opt, cap]) + text.encode("utf-8", "surrogateescape"))

# fuzz_request: missing-mask byte, then auth, MAIL FROM, ip, qid, mailer,
# From, Message-ID, recipients
for name, miss, lines in [
    ("submission", 0, ["sales@example.com", "<sales@example.com>", "192.0.2.10", "4ZxY1p2Qk3z",
                       "Microsoft Outlook 16.0", "Sales <sales@example.com>",
                       "<1234@example.com>", "<a@gmail.com>", "<b@example.org>"]),
    ("no-auth", 1, ["", "<bob+x@Example.COM>", "192.0.2.11", "ABCDEF", "Thunderbird",
                    "\"Bob, the boss\" <bob@example.com>", "<x@y>", "<c@yahoo.fr>"]),
    ("null-sender", 1 | 8, ["", "<>", "::1", "", "", "MAILER-DAEMON", "", "<d@example.net>"]),
    ("mismatch", 0, ["info@example.org", "<info@example.org>", "203.0.113.66", "Q1",
                     "PHPMailer 5.2.9", "CEO <ceo@evil.example>", "<z@evil>"]
     + ["<r%d@example.com>" % i for i in range(12)]),
    ("allowed", 0, ["postmaster@example.com", "<postmaster@example.com>", "127.0.0.1", "Q2",
                    "", "", "", "<root@example.com>"]),
]:
    write("request", name, bytes([miss]) + "\n".join(lines).encode())

# fuzz_conf: the tree's configuration files and small ones
top = os.path.join(here, "..", "..")
with open(os.path.join(top, "conf", "sendguard.conf"), "rb") as f:
    write("conf", "sendguard.conf", f.read())
with open(os.path.join(top, "debian", "sendguard.conf"), "rb") as f:
    write("conf", "debian-sendguard.conf", f.read())
write("conf", "accounts", """store = { backend = "redis"; on_error = "tempfail";
  redis = { host = "127.0.0.1"; port = 6379; prefix = "sg:"; }; };
identity = { lowercase = true; strip_tag = true; tag_separator = "+"; };
allow = [ "postmaster@example.com", "*@monitoring.example.com" ];
limits = ( { name = "minute"; window = "1m"; messages = 30; action = "tempfail"; },
           { name = "day"; window = "1d"; recipients = 5000; bytes = 5000000000L;
             distinct_recipients = 1000; action = "hold"; warn_at = 0.9; } );
accounts = (
  { address = "boss@example.com"; offer = "exchange"; organization = "org1"; service = "ex1";
    senders = [ "boss@example.com", "*@boss.example.com" ]; on_block = "tempfail"; },
  { address = "sales@example.com"; offer = "emailpro"; service = "pro1";
    sasl_map_file = "/etc/postfix/sasl_passwd"; auto_reply = true; },
  { address = "info@example.org"; offer = "mxplan"; service = "mx1"; mode = "observe"; },
  { address = "fax@example.net"; offer = "mxplan-legacy";
    limits = ( { name = "h"; window = "1h"; messages = 10; action = "reject"; } ); } );
ovh = { endpoint = "ovh-eu"; credentials = "/etc/sendguard/ovh.conf"; poll_interval = "5m"; };
alert = { command = [ "/usr/local/bin/page", "postmaster" ]; interval = "1h"; };
metrics = { textfile = "/var/lib/node_exporter/sendguard.prom"; interval = "15s"; };
""")
write("conf", "include", '@include "accounts.conf"\nmode = "observe";\n')
write("conf", "errors", 'limits = ( { name = "x"; window = "0s"; messages = -1; } );\n'
      'milter = { socket = "tcp:1"; timeout = 5; };\nbogus = 1;\n')

# fuzz_ovhconf: the example ovh.conf and the other shapes of the official clients
with open(os.path.join(top, "contrib", "examples", "ovh.conf"), "rb") as f:
    write("ovhconf", "example", f.read())
write("ovhconf", "oauth2", "[default]\nendpoint=ovh-eu\n\n[ovh-eu]\nclient_id=0123456789abcdef\n"
      "client_secret=S3CR3Tfedcba9876543210fedcba98\n")
write("ovhconf", "literal-url", "[default]\nendpoint = http://127.0.0.1:8080/1.0\n"
      "[http://127.0.0.1:8080/1.0]\napplication_key = AK\napplication_secret = S3CR3T-as\n"
      "consumer_key = S3CR3T-ck\n")
write("ovhconf", "sections", "; comment\n# other comment\n[default]\nendpoint=ovh-ca\n"
      "application_key=defaultkey\n[ovh-ca]\napplication_key=cakey1234\n"
      "application_secret=S3CR3Tcasecret\nconsumer_key=S3CR3Tcaconsumer\n[kimsufi-eu]\n"
      "consumer_key=S3CR3Tunused\n")
write("ovhconf", "malformed", "[default\nendpoint=\n[ovh-eu]\n=novalue\napplication_key\n")

# the decoders below sg_ovh_call (byte 0 >= 0xF0; byte 1 + 400 = the error's status)
DECODED = {
    "decode-time": b"1767225600",
    "decode-token": b'{"access_token":"eyJhbGciOi.fuzz","token_type":"Bearer","expires_in":3600}',
    "decode-error": b'{"class":"Client::Forbidden","message":"This credential is not valid",'
                    b'"errorCode":"INVALID_CREDENTIAL"}',
    "decode-oauth2-error": b'{"error":"invalid_client","error_description":"bad client"}',
    "decode-html": b"<html><body>502 Bad Gateway</body></html>",
}
for name, body in DECODED.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([0xF0, 3]) + body)
print("all corpora written")
