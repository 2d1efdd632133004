#!/usr/bin/env python3
"""Stand-in for the OVHcloud API, for sendguard's tests.

The contract is tests/ovhapi/PROTOCOL.md; read it first.  Python 3.11 standard
library only.  Listens on 127.0.0.1 only.

    python3 tests/ovhapi/standin.py --port 0 --fixture FILE \
        [--clock-offset SECONDS] [--state FILE] [--verbose]

Prints "READY <port>" once listening; exits 0 on SIGTERM or SIGINT.
"""

import argparse
import base64
import copy
import hashlib
import json
import os
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

TIME_TOLERANCE = 180            # seconds either side of the server clock
TZ = timezone(timedelta(hours=1))  # dates are rendered like the EU API: +01:00
SPAM_SUBJECT = "Account locked for spam."
DEFAULT_SUSPICIOUS = 312
FIRST_TICKET_ID = 9000001
FIRST_TICKET_NUMBER = 1234567
FIRST_MESSAGE_ID = 7000001
FIRST_TASK_ID = 50001
FIRST_ACCOUNT_ID = 1001
FIRST_REDIRECTION_ID = 8100001
FIRST_CREDENTIAL_ID = 300001
FAULT_MODES = ("503", "500", "429", "slow", "garbage", "truncated", "huge", "drop")
TASK_OUTCOMES = ("done", "error", "stuck")
REJECT_WHAT = ("reply", "changePassword")
HUGE_SIZE = 20 * 1024 * 1024
OFFERS = ("exchange", "emailpro", "mxplan", "legacy")


# --------------------------------------------------------------------------
# Signature


def _b(x):
    if isinstance(x, bytes):
        return x
    return str(x).encode("utf-8")


def signature(application_secret, consumer_key, method, url, body, timestamp):
    """X-Ovh-Signature exactly as the real API computes it.

    "$1$" + sha1_hex(AS+"+"+CK+"+"+METHOD+"+"+URL+"+"+BODY+"+"+TIMESTAMP).
    Every argument may be str (encoded UTF-8) or bytes (used as is).
    """
    h = hashlib.sha1()
    h.update(b"+".join([_b(application_secret), _b(consumer_key), _b(method),
                        _b(url), _b(body), _b(timestamp)]))
    return "$1$" + h.hexdigest()


# --------------------------------------------------------------------------
# Errors and helpers


class ApiError(Exception):
    def __init__(self, status, payload, headers=None):
        super().__init__(status, payload)
        self.status = status
        self.payload = payload
        self.headers = headers or {}


def err(status, message, code=None):
    payload = {"message": message}
    if code:
        payload["errorCode"] = code
    return ApiError(status, payload)


def not_found(what, value):
    return err(404, "The requested object (%s = %s) does not exist" % (what, value))


def bad_type(name, value, typ):
    return err(400, "[%s] Given data (%s) is not valid for type %s" % (name, value, typ))


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_json_body(body):
    if not body:
        return None
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise err(400, "Invalid JSON received")


def require_string(obj, name):
    if not isinstance(obj, dict) or name not in obj or obj[name] is None:
        raise err(400, "[%s] Property is mandatory" % name)
    val = obj[name]
    if not isinstance(val, str):
        raise bad_type(name, val, "string")
    return val


# --------------------------------------------------------------------------
# State


class State:
    """Everything the stand-in knows.  All access under self.lock."""

    def __init__(self, fixture, clock_offset, port_ref, state_file=None):
        self.fixture = fixture
        self.initial_clock_offset = clock_offset
        self.clock_offset = clock_offset
        self.port_ref = port_ref          # callable returning the bound port
        self.state_file = state_file
        self.lock = threading.RLock()
        self.query_counter = 0            # never reset: X-Ovh-QueryID stays unique
        self.reset()

    # ---- clock ----------------------------------------------------------
    def now(self):
        return time.time() + self.clock_offset

    def date(self, delta_seconds=0):
        return datetime.fromtimestamp(int(self.now() + delta_seconds), TZ).isoformat()

    def next_query_id(self):
        with self.lock:
            self.query_counter += 1
            return "EU.ext-%d" % self.query_counter

    # ---- (re)build from fixture ---------------------------------------
    def reset(self):
        with self.lock:
            fx = self.fixture
            self.clock_offset = self.initial_clock_offset
            self.next_ticket_id = FIRST_TICKET_ID
            self.next_ticket_number = FIRST_TICKET_NUMBER
            self.next_message_id = FIRST_MESSAGE_ID
            self.next_task_id = FIRST_TASK_ID
            self.next_account_id = FIRST_ACCOUNT_ID
            self.next_redirection_id = FIRST_REDIRECTION_ID
            self.next_credential_id = FIRST_CREDENTIAL_ID
            self.language = fx.get("ticket_language", "en")
            self.auto_unblock = False
            self.faults = []
            self.rejects = {w: 0 for w in REJECT_WHAT}
            self.log = []
            self.passwords = {}
            self.tasks = {}
            self.task_outcomes = []        # outcomes for the next tasks, in order
            self.tokens = {}
            self.pending_tokens = {}       # credentialToken -> consumer key
            self.tickets = {}              # ticketId -> {"ticket":..., "messages":[...], "address":...}
            self.accounts = {}             # lower(address) -> record
            self.redirections = {}         # id -> {"domain":..., "obj":{id,from,to}}
            self.migrated = {d.lower(): n for d, n in fx.get("migrated_domains", {}).items()}

            self.applications = {}         # AK -> {"secret":..., "applicationId":...}
            self.credentials = []
            for i, c in enumerate(fx.get("credentials", [])):
                ak = c["application_key"]
                if ak not in self.applications:
                    self.applications[ak] = {"secret": c["application_secret"],
                                             "applicationId": 100 + len(self.applications)}
                self._add_credential(ak, c["consumer_key"],
                                     "expired" if c.get("expired") else c.get("state", "validated"),
                                     c.get("rules"), c.get("allowedIPs"), c.get("expires_in_days"))
            self.oauth2 = {o["client_id"]: dict(o) for o in fx.get("oauth2", [])}

            for e in fx.get("exchange", []):
                self._add_account("exchange", e)
            for e in fx.get("emailpro", []):
                self._add_account("emailpro", e)
            for e in fx.get("mxplan", []):
                self._add_account("mxplan", e)
            for e in fx.get("legacy", []):
                self._add_account("legacy", e)
            for t in fx.get("tickets", []):
                self._add_fixture_ticket(t)
            # Accounts blocked in the fixture get their ticket now.
            for rec in list(self.accounts.values()):
                if rec["fixture"].get("blocked"):
                    self.block(rec["address"], {})
            self.dump()

    def _add_credential(self, ak, ck, state, rules, allowed_ips=None, expires_days=None):
        cred = {
            "allowedIPs": allowed_ips,
            "application_key": ak,
            "consumer_key": ck,
            "state": state,
            "rules": rules,
            "credentialId": self.next_credential_id,
            "applicationId": self.applications[ak]["applicationId"],
            "creation": self.date(-86400 * 30),
            "expiration": self.date(-86400) if state == "expired" else
                          (self.date(86400 * expires_days) if expires_days is not None else None),
            "lastUse": None,
        }
        self.next_credential_id += 1
        self.credentials.append(cred)
        return cred

    def _add_account(self, offer, e):
        if offer == "legacy":
            domain = e["domain"]
            local = e["local"]
            address = "%s@%s" % (local, domain)
        else:
            address = e["address"]
            local, _, domain = address.partition("@")
        key = address.lower()
        if key in self.accounts:
            raise SystemExit("fixture: address %s appears twice" % address)
        rec = {
            "offer": offer,
            "address": address,
            "local": local,
            "domain": domain,
            "organization": e.get("organization"),
            "service": e.get("service"),
            "blocked": False,
            "ticketId": None,
            "suspicious": e.get("suspicious", DEFAULT_SUSPICIOUS),
            "fixture": e,
        }
        if offer == "legacy":
            rec["object"] = {
                "accountName": local,
                "description": e.get("description", ""),
                "domain": domain,
                "email": address,
                "isBlocked": False,
                "size": e.get("size", 5000000000),
                "quota": e.get("quota", 5000000000),
            }
            for r in e.get("redirections", []):
                rid = str(self.next_redirection_id)
                self.next_redirection_id += 1
                self.redirections[rid] = {"domain": domain, "obj": {
                    "id": rid, "from": r.get("from", address), "to": r["to"]}}
        else:
            obj = {
                "SAMAccountName": None,
                "configured": e.get("configured", True),
                "creationDate": self.date(-86400 * 400),
                "currentUsage": e.get("currentUsage", 123456789),
                "deleteAtExpiration": None,
                "displayName": e.get("displayName", local.capitalize()),
                "domain": domain,
                "expirationDate": None,
                "expirationOutlookDate": None,
                "firstName": e.get("firstName"),
                "hiddenFromGAL": False,
                "id": self.next_account_id,
                "initial": None,
                "lastLogoffDate": None,
                "lastLogonDate": self.date(-3600 * 5),
                "lastName": e.get("lastName"),
                "lastUpdateDate": self.date(-86400 * 10),
                "login": local,
                "mailingFilter": ["vaderetro"],
                "passwordLastUpdate": self.date(-86400 * 200),
                "primaryEmailAddress": address,
                "renewPeriod": None,
                "spamAndVirusConfiguration": {
                    "checkDKIM": False, "checkSPF": False, "deleteSpam": False,
                    "deleteVirus": True, "putInJunk": True, "tagSpam": True,
                    "tagVirus": False},
                "spamDetected": False,
                "spamTicketNumber": None,
                "state": e.get("state", "ok"),
                "taskPendingId": None,
            }
            self.next_account_id += 1
            if offer == "exchange":
                obj.update({
                    "accountLicense": e.get("accountLicense", "standard"),
                    "city": None, "company": None, "countryCode": None,
                    "customIsolationId": None,
                    "deleteOutlookAtExpiration": None,
                    "description": None,
                    "exchangeGuid": None,
                    "fax": None,
                    "forwardingEmail": e.get("forwardingEmail"),
                    "guid": None,
                    "jobDepartment": None, "jobTitle": None,
                    "litigation": False, "litigationPeriod": None,
                    "mailSenderDisplay": None,
                    "mobile": None,
                    "numberOfAliases": 0,
                    "office": None,
                    "outlookLicense": False,
                    "owaLimited": False,
                    "phone": None, "postalCode": None, "region": None,
                    "renewOutlookPeriod": None,
                    "sbrDestination": None, "sendConnectorId": None,
                    "storeCopyOfEmail": False,
                    "streetAddress": None,
                    "quota": e.get("quota", 50),
                })
            elif offer == "emailpro":
                obj["quota"] = e.get("quota", 10)
            else:
                obj["quota"] = float(e.get("quota", 5.0))
            rec["object"] = dict(sorted(obj.items()))
        self.accounts[key] = rec

    def _new_ticket(self, subject, service, product, address, state="open",
                    created=None, autogenerated=False):
        tid = self.next_ticket_id
        self.next_ticket_id += 1
        number = self.next_ticket_number
        self.next_ticket_number += 1
        created = created or self.date()
        ticket = {
            "accountId": self.fixture.get("account_id", "xx12345-ovh"),
            "canBeClosed": state == "open",
            "category": "assistance",
            "creationDate": created,
            "lastMessageFrom": "support",
            "product": product,
            "score": "",
            "serviceName": service,
            "state": state,
            "subject": subject,
            "ticketId": tid,
            "ticketNumber": number,
            "type": "genericRequest",
            "updateDate": created,
        }
        self.tickets[tid] = {"ticket": ticket, "messages": [], "address": address,
                             "autogenerated": autogenerated}
        return self.tickets[tid]

    def _add_message(self, entry, sender, body, date=None):
        date = date or self.date()
        msg = {
            "body": body,
            "creationDate": date,
            "from": sender,
            "messageId": self.next_message_id,
            "ticketId": entry["ticket"]["ticketId"],
            "updateDate": date,
        }
        self.next_message_id += 1
        entry["messages"].append(msg)
        entry["ticket"]["lastMessageFrom"] = sender
        entry["ticket"]["updateDate"] = date
        return msg

    def _add_fixture_ticket(self, t):
        created = self.date(-86400 * t.get("age_days", 30))
        entry = self._new_ticket(t.get("subject", SPAM_SUBJECT), t.get("serviceName"),
                                 t.get("product", "mail"), t.get("address"),
                                 t.get("state", "closed"), created,
                                 t.get("autogenerated", t.get("subject", SPAM_SUBJECT) == SPAM_SUBJECT))
        for m in t.get("messages", []):
            self._add_message(entry, m.get("from", "support"), m.get("body", ""), created)
        if not t.get("messages") and t.get("address"):
            self._add_message(entry, "support",
                              spam_message(self.language, t["address"],
                                           t.get("serviceName") or "", DEFAULT_SUSPICIOUS,
                                           created), created)

    # ---- lookups --------------------------------------------------------
    def account(self, address):
        return self.accounts.get(address.lower())

    def accounts_of(self, offer):
        return [r for r in self.accounts.values() if r["offer"] == offer]

    # ---- block / unblock ----------------------------------------------
    def block(self, address, opts):
        rec = self.account(address)
        if rec is None:
            raise not_found("address", address)
        if rec["offer"] == "legacy":
            rec["blocked"] = True
            rec["object"]["isBlocked"] = True
            return {"address": rec["address"], "offer": "legacy",
                    "ticketId": None, "ticketNumber": None}
        if rec["blocked"] and rec["ticketId"] is not None:
            entry = self.tickets[rec["ticketId"]]
        else:
            count = int(opts.get("suspicious", rec["suspicious"]))
            service = rec["service"]
            product = "exchange" if rec["offer"] == "exchange" else "mail"
            entry = self._new_ticket(SPAM_SUBJECT, service, product, rec["address"],
                                     autogenerated=True)
            self._add_message(entry, "support",
                              spam_message(self.language, rec["address"], service, count,
                                           entry["ticket"]["creationDate"],
                                           opts.get("sample")))
            rec["ticketId"] = entry["ticket"]["ticketId"]
        rec["blocked"] = True
        obj = rec["object"]
        obj["spamDetected"] = True
        link = opts.get("link", "number")
        if link == "null":
            obj["spamTicketNumber"] = None
        elif link == "other":
            obj["spamTicketNumber"] = entry["ticket"]["ticketNumber"] + 500000
        else:
            obj["spamTicketNumber"] = entry["ticket"]["ticketNumber"]
        return {"address": rec["address"], "offer": rec["offer"],
                "ticketId": entry["ticket"]["ticketId"],
                "ticketNumber": entry["ticket"]["ticketNumber"]}

    def unblock(self, address):
        rec = self.account(address)
        if rec is None:
            raise not_found("address", address)
        rec["blocked"] = False
        if rec["offer"] == "legacy":
            rec["object"]["isBlocked"] = False
            return {"address": rec["address"], "offer": "legacy"}
        rec["object"]["spamDetected"] = False
        rec["object"]["spamTicketNumber"] = None
        if rec["ticketId"] is not None:
            t = self.tickets[rec["ticketId"]]["ticket"]
            t["state"] = "closed"
            t["canBeClosed"] = False
            t["updateDate"] = self.date()
        rec["ticketId"] = None
        return {"address": rec["address"], "offer": rec["offer"]}

    # ---- dumps ----------------------------------------------------------
    def snapshot(self):
        with self.lock:
            accounts = {}
            for rec in self.accounts.values():
                accounts[rec["address"]] = {
                    "offer": rec["offer"],
                    "organization": rec["organization"],
                    "service": rec["service"],
                    "domain": rec["domain"],
                    "blocked": rec["blocked"],
                    "ticketId": rec["ticketId"],
                    "object": rec["object"],
                }
            tickets = []
            for tid in sorted(self.tickets):
                e = self.tickets[tid]
                t = dict(e["ticket"])
                t["address"] = e["address"]
                t["messages"] = e["messages"]
                tickets.append(t)
            return copy.deepcopy({
                "server_time": int(self.now()),
                "clock_offset": self.clock_offset,
                "ticket_language": self.language,
                "auto_unblock": self.auto_unblock,
                "accounts": accounts,
                "tickets": tickets,
                "passwords": self.passwords,
                "tasks": [self.tasks[k] for k in sorted(self.tasks)],
                "task_outcomes": self.task_outcomes,
                "redirections": [self.redirections[k]["obj"] for k in sorted(self.redirections)],
                "credentials": [{k: v for k, v in c.items()} for c in self.credentials],
                "faults": self.faults,
                "rejects": self.rejects,
            })

    def dump(self):
        if not self.state_file:
            return
        with self.lock:
            data = json.dumps(self.snapshot(), indent=1, ensure_ascii=False)
            d = os.path.dirname(os.path.abspath(self.state_file))
            fd, tmp = tempfile.mkstemp(prefix=".standin-state.", dir=d)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
            os.replace(tmp, self.state_file)


# --------------------------------------------------------------------------
# The spam ticket's first message

HEADER_SAMPLE = (
    "Received: from [203.0.113.45] (unknown [203.0.113.45])\n"
    "\t(Authenticated sender: {address})\n"
    "\tby {service}.mail.ovh.net (Postfix) with ESMTPSA id 4F2A1C3B7\n"
    "\tfor <victim1@example.invalid>; {rfcdate}\n"
    "From: \"Invoice Department\" <{address}>\n"
    "To: victim1@example.invalid\n"
    "Subject: Your invoice #88412 is ready\n"
    "Date: {rfcdate}\n"
    "Message-ID: <20240115102030.4F2A1C3B7@{domain}>\n"
    "X-Mailer: PHPMailer 5.2.7 (https://github.com/PHPMailer/PHPMailer/)\n"
)

SPAM_BODY = {
    "en": (
        "Dear Customer,\n"
        "\n"
        "Our system has detected that the address {address} hosted on our systems "
        "under the service {service} is sending unsolicited e-mails (spam).\n"
        "Sending e-mail has therefore been temporarily disabled.\n"
        "\n"
        "We have currently detected {count} suspicious message(s).\n"
        "\n"
        "To help us re-enable sending for the address: {address},\n"
        "please reply to this e-mail answering the following questions:\n"
        "\n"
        "1. Are you the sender of the e-mail in question (see the header below)?\n"
        "\n"
        "2. Do you have a redirection rule to another e-mail address?\n"
        "\n"
        "3. Have you replied to a spam?\n"
        "\n"
        "These answers will help us re-enable your account quickly.\n"
        "\n"
        "Sample of the headers of the e-mails sent:\n"
        "\n"
    ),
    "fr": (
        "Cher Client,\n"
        "\n"
        "Notre système a détecté que l'adresse {address} hébergée sur nos systèmes "
        "sous le service {service} est source d'envoi de courriers indésirables (spams).\n"
        "L'envoi d'e-mail a donc été temporairement désactivé.\n"
        "\n"
        "Nous avons actuellement détecté {count} message(s) suspect(s).\n"
        "\n"
        "Afin de nous aider à réactiver l'envoi d'e-mail pour l'adresse : {address},\n"
        "répondez à cet e-mail en complétant les questions suivantes :\n"
        "\n"
        "1. Êtes-vous l'émetteur de l'e-mail en question (voir l'entête ci-dessous) ?\n"
        "\n"
        "2. Avez-vous une règle de redirection vers une autre adresse e-mail ?\n"
        "\n"
        "3. Avez-vous répondu à un Spam ?\n"
        "\n"
        "Ces réponses nous aideront à réactiver votre compte rapidement.\n"
        "\n"
        "Échantillon d'en-têtes des e-mails envoyés :\n"
        "\n"
    ),
}


def spam_message(language, address, service, count, iso_date, sample=None):
    """sample: the header sample to quote instead of HEADER_SAMPLE (tests)."""
    lang = language if language in SPAM_BODY else "en"
    when = datetime.fromisoformat(iso_date)
    rfcdate = when.strftime("%a, %d %b %Y %H:%M:%S %z")
    domain = address.partition("@")[2]
    if isinstance(sample, str):
        return SPAM_BODY[lang].format(address=address, service=service, count=count) + sample
    return (SPAM_BODY[lang].format(address=address, service=service, count=count)
            + HEADER_SAMPLE.format(address=address, service=service, rfcdate=rfcdate,
                                   domain=domain))


# --------------------------------------------------------------------------
# Routing

ROUTES = []   # (method, [segments], handler, auth) ; auth: "none" | "ak" | "full"


def route(method, pattern, auth="full"):
    def deco(fn):
        ROUTES.append((method, pattern.strip("/").split("/"), fn, auth))
        return fn
    return deco


def match_route(method, segs):
    """-> (handler, params, auth) ; handler None + auth "405"/"404"."""
    path_known = False
    for m, pat, fn, auth in ROUTES:
        if len(pat) != len(segs):
            continue
        params = {}
        ok = True
        for p, s in zip(pat, segs):
            if p.startswith("{"):
                if s == "":
                    ok = False
                    break
                params[p[1:-1]] = s
            elif p != s:
                ok = False
                break
        if not ok:
            continue
        path_known = True
        if m == method:
            return fn, params, auth
    return None, None, ("405" if path_known else "404")


class Ctx:
    """One API request as seen by a handler."""

    def __init__(self, st, method, api_path, query, body, cred):
        self.st = st
        self.method = method
        self.api_path = api_path
        self.query = query
        self.body = body
        self.cred = cred

    def q(self, name):
        v = self.query.get(name)
        return v[0] if v else None


def int_param(name, value):
    if not re.fullmatch(r"-?[0-9]+", value or ""):
        raise bad_type(name, value, "long")
    return int(value)


def take_reject(st, what):
    if st.rejects.get(what, 0) > 0:
        st.rejects[what] -= 1
        if what == "reply":
            raise err(400, "Unable to post your reply on this ticket")
        raise err(400, "The password does not match the password policy")


# ---- auth ---------------------------------------------------------------

@route("GET", "auth/time", auth="none")
def h_time(ctx, p):
    return 200, int(ctx.st.now())


@route("POST", "auth/credential", auth="ak")
def h_credential(ctx, p):
    st = ctx.st
    body = parse_json_body(ctx.body)
    if not isinstance(body, dict) or not isinstance(body.get("accessRules"), list):
        raise err(400, "[accessRules] Property is mandatory")
    rules = []
    for r in body["accessRules"]:
        if (not isinstance(r, dict) or r.get("method") not in ("GET", "POST", "PUT", "DELETE")
                or not isinstance(r.get("path"), str)):
            raise err(400, "Invalid access rule")
        rules.append({"method": r["method"], "path": r["path"]})
    ips = body.get("allowedIPs")
    if ips is not None and (not isinstance(ips, list) or
                            not all(isinstance(x, str) and x for x in ips)):
        raise err(400, "[allowedIPs] Given data is not valid for type ipBlock[]")
    ck = secrets.token_hex(16)
    cred = st._add_credential(ctx.cred["application_key"], ck, "pendingValidation", rules, ips)
    token = secrets.token_hex(16)
    st.pending_tokens[token] = cred["consumer_key"]
    port = st.port_ref()
    st.dump()
    return 200, {
        "consumerKey": ck,
        "state": "pendingValidation",
        "validationUrl": "http://127.0.0.1:%d/__control/validate?credentialToken=%s" % (port, token),
    }


@route("GET", "auth/currentCredential")
def h_current_credential(ctx, p):
    c = ctx.cred
    return 200, {
        "allowedIPs": c.get("allowedIPs"),
        "applicationId": c["applicationId"],
        "creation": c["creation"],
        "credentialId": c["credentialId"],
        "expiration": c["expiration"],
        "lastUse": c["lastUse"],
        "ovhSupport": False,
        "rules": c["rules"] if c["rules"] is not None else [
            {"method": m, "path": "/*"} for m in ("GET", "POST", "PUT", "DELETE")],
        "status": c["state"],
    }


# ---- e-mail offers --------------------------------------------------------

def _uniq(seq):
    out = []
    for x in seq:
        if x not in out:
            out.append(x)
    return out


def _offer_account(st, offer, param_name, address, **where):
    rec = st.account(address)
    if rec is None or rec["offer"] != offer or any(rec[k] != v for k, v in where.items()):
        raise not_found(param_name, address)
    return rec


def _task_new(st, rec):
    tid = st.next_task_id
    st.next_task_id += 1
    if rec["offer"] == "legacy":
        obj = {"action": "changePassword", "date": st.date(), "domain": rec["domain"],
               "id": tid, "name": rec["local"]}
    else:
        obj = {"finishDate": None, "function": "changePassword", "id": tid,
               "status": "todo", "todoDate": st.date()}
    outcome = st.task_outcomes.pop(0) if st.task_outcomes else "done"
    st.tasks[tid] = {"offer": rec["offer"], "address": rec["address"], "object": obj,
                     "outcome": outcome, "step": 0, "gone": False}
    return obj


def _task_advance(st, t):
    """Each read moves a task one step: todo -> doing -> done|error ("stuck"
    stays doing). Legacy tasks have no status: they are listed while
    pending and gone (404) once done."""
    obj = t["object"]
    if t["step"] >= 2 or t["gone"]:
        return
    t["step"] += 1
    final = t["step"] == 2 and t["outcome"] != "stuck"
    if t["step"] == 2 and t["outcome"] == "stuck":
        t["step"] = 1
    if t["offer"] == "legacy":
        if final:
            t["gone"] = True
    else:
        obj["status"] = t["outcome"] if final else "doing"
        if final:
            obj["finishDate"] = st.date()
    st.dump()


def _task_get(st, rec, tid_s):
    tid = int_param("id", tid_s)
    t = st.tasks.get(tid)
    if t is None or t["address"] != rec["address"]:
        raise not_found("id", tid_s)
    _task_advance(st, t)
    return t["object"]


def legacy_password_problem(pw):
    if len(pw) < 9 or len(pw) > 30:
        return "The password must be 9 to 30 characters long"
    if pw != pw.strip(" "):
        return "The password cannot start or end with a space"
    if any(ord(ch) > 127 for ch in pw):
        return "The password cannot contain accented characters"
    return None


def _change_password(ctx, rec):
    st = ctx.st
    take_reject(st, "changePassword")
    pw = require_string(parse_json_body(ctx.body), "password")
    if rec["offer"] == "legacy":
        problem = legacy_password_problem(pw)
        if problem:
            raise err(400, problem)
    elif pw == "":
        raise err(400, "[password] Property is mandatory")
    st.passwords[rec["address"]] = pw
    if rec["offer"] != "legacy":
        rec["object"]["passwordLastUpdate"] = st.date()
        rec["object"]["lastUpdateDate"] = st.date()
    task = _task_new(st, rec)
    if rec["offer"] == "legacy" and st.auto_unblock and rec["blocked"]:
        st.unblock(rec["address"])
    st.dump()
    return 200, task


def _tasks_of(st, rec):
    return [k for k in sorted(st.tasks) if st.tasks[k]["address"] == rec["address"]
            and not st.tasks[k]["gone"]]


# Exchange
@route("GET", "email/exchange")
def h_ex_orgs(ctx, p):
    return 200, _uniq(r["organization"] for r in ctx.st.accounts_of("exchange"))


def _ex_org(st, org):
    recs = [r for r in st.accounts_of("exchange") if r["organization"] == org]
    if not recs:
        raise not_found("organizationName", org)
    return recs


def _ex_svc(st, org, svc):
    recs = [r for r in _ex_org(st, org) if r["service"] == svc]
    if not recs:
        raise not_found("exchangeService", svc)
    return recs


def _ex_acc(st, p):
    _ex_svc(st, p["org"], p["svc"])
    return _offer_account(st, "exchange", "primaryEmailAddress", p["addr"],
                          organization=p["org"], service=p["svc"])


@route("GET", "email/exchange/{org}/service")
def h_ex_services(ctx, p):
    return 200, _uniq(r["service"] for r in _ex_org(ctx.st, p["org"]))


@route("GET", "email/exchange/{org}/service/{svc}/account")
def h_ex_accounts(ctx, p):
    return 200, [r["address"] for r in _ex_svc(ctx.st, p["org"], p["svc"])]


@route("GET", "email/exchange/{org}/service/{svc}/account/{addr}")
def h_ex_account(ctx, p):
    return 200, _ex_acc(ctx.st, p)["object"]


@route("POST", "email/exchange/{org}/service/{svc}/account/{addr}/changePassword")
def h_ex_chpw(ctx, p):
    return _change_password(ctx, _ex_acc(ctx.st, p))


@route("GET", "email/exchange/{org}/service/{svc}/account/{addr}/tasks")
def h_ex_tasks(ctx, p):
    return 200, _tasks_of(ctx.st, _ex_acc(ctx.st, p))


@route("GET", "email/exchange/{org}/service/{svc}/account/{addr}/tasks/{id}")
def h_ex_task(ctx, p):
    return 200, _task_get(ctx.st, _ex_acc(ctx.st, p), p["id"])


# Email Pro and MX Plan (new): same shape
def _svc_recs(st, offer, svc):
    recs = [r for r in st.accounts_of(offer) if r["service"] == svc]
    if not recs:
        raise not_found("service", svc)
    return recs


def _svc_acc(st, offer, p):
    _svc_recs(st, offer, p["svc"])
    return _offer_account(st, offer, "email", p["addr"], service=p["svc"])


def _register_service_offer(prefix, offer, task_word):
    def services(ctx, p):
        return 200, _uniq(r["service"] for r in ctx.st.accounts_of(offer))

    def accounts(ctx, p):
        return 200, [r["address"] for r in _svc_recs(ctx.st, offer, p["svc"])]

    def account(ctx, p):
        return 200, _svc_acc(ctx.st, offer, p)["object"]

    def chpw(ctx, p):
        return _change_password(ctx, _svc_acc(ctx.st, offer, p))

    def tasks(ctx, p):
        return 200, _tasks_of(ctx.st, _svc_acc(ctx.st, offer, p))

    def task(ctx, p):
        return 200, _task_get(ctx.st, _svc_acc(ctx.st, offer, p), p["id"])

    route("GET", prefix)(services)
    route("GET", prefix + "/{svc}/account")(accounts)
    route("GET", prefix + "/{svc}/account/{addr}")(account)
    route("POST", prefix + "/{svc}/account/{addr}/changePassword")(chpw)
    route("GET", prefix + "/{svc}/account/{addr}/" + task_word)(tasks)
    route("GET", prefix + "/{svc}/account/{addr}/" + task_word + "/{id}")(task)


_register_service_offer("email/pro", "emailpro", "tasks")
_register_service_offer("email/mxplan", "mxplan", "task")


# MX Plan legacy (/email/domain)
def _dom_recs(st, dom):
    recs = [r for r in st.accounts_of("legacy") if r["domain"].lower() == dom.lower()]
    if not recs:
        raise not_found("domain", dom)
    return recs


def _legacy_acc(st, p):
    recs = _dom_recs(st, p["dom"])
    for r in recs:
        if r["local"].lower() == p["local"].lower():
            return r
    raise not_found("accountName", p["local"])


@route("GET", "email/domain")
def h_dom_list(ctx, p):
    return 200, _uniq(r["domain"] for r in ctx.st.accounts_of("legacy"))


@route("GET", "email/domain/{dom}")
def h_dom(ctx, p):
    st = ctx.st
    recs = _dom_recs(st, p["dom"])
    dom = recs[0]["domain"]
    return 200, {"allowedAccountSize": [1, 5, 1000], "creationDate": st.date(-86400 * 800),
                 "domain": dom, "filerz": 123, "isMXValid": True, "isSPFValid": True,
                 "linkTo": None, "migratedMXPlanServiceName": st.migrated.get(dom.lower()),
                 "offer": "MXPLAN", "status": "ok"}


@route("GET", "email/domain/{dom}/account")
def h_dom_accounts(ctx, p):
    return 200, [r["local"] for r in _dom_recs(ctx.st, p["dom"])]


@route("GET", "email/domain/{dom}/account/{local}")
def h_dom_account(ctx, p):
    return 200, _legacy_acc(ctx.st, p)["object"]


@route("POST", "email/domain/{dom}/account/{local}/changePassword")
def h_dom_chpw(ctx, p):
    return _change_password(ctx, _legacy_acc(ctx.st, p))


@route("GET", "email/domain/{dom}/task/account")
def h_dom_tasks(ctx, p):
    st = ctx.st
    recs = _dom_recs(st, p["dom"])
    name = ctx.q("name")
    out = []
    for r in recs:
        if name is None or r["local"] == name:
            out.extend(_tasks_of(st, r))
    return 200, sorted(out)


@route("GET", "email/domain/{dom}/task/account/{id}")
def h_dom_task(ctx, p):
    st = ctx.st
    _dom_recs(st, p["dom"])
    tid = int_param("id", p["id"])
    t = st.tasks.get(tid)
    if t is None or t["offer"] != "legacy" or t["object"]["domain"].lower() != p["dom"].lower() \
            or t["gone"]:
        raise not_found("id", p["id"])
    obj = copy.deepcopy(t["object"])
    _task_advance(st, t)
    return 200, obj


@route("GET", "email/domain/{dom}/redirection")
def h_dom_redirections(ctx, p):
    st = ctx.st
    _dom_recs(st, p["dom"])
    frm, to = ctx.q("from"), ctx.q("to")
    out = []
    for rid in sorted(st.redirections):
        r = st.redirections[rid]
        if r["domain"].lower() != p["dom"].lower():
            continue
        if frm is not None and r["obj"]["from"].lower() != frm.lower():
            continue
        if to is not None and r["obj"]["to"].lower() != to.lower():
            continue
        out.append(rid)
    return 200, out


@route("GET", "email/domain/{dom}/redirection/{id}")
def h_dom_redirection(ctx, p):
    st = ctx.st
    _dom_recs(st, p["dom"])
    r = st.redirections.get(p["id"])
    if r is None or r["domain"].lower() != p["dom"].lower():
        raise not_found("id", p["id"])
    return 200, r["obj"]


# ---- support tickets ------------------------------------------------------

@route("GET", "support/tickets")
def h_tickets(ctx, p):
    st = ctx.st
    number = ctx.q("ticketNumber")
    status = ctx.q("status")
    subject = ctx.q("subject")
    service = ctx.q("serviceName")
    # The API's default for excludeAutogenerated is undocumented: the stand-in
    # assumes the worst (left out unless asked for with "false").
    exclude_auto = (ctx.q("excludeAutogenerated") or "true").lower() != "false"
    if status is not None and status not in ("open", "closed", "unknown"):
        raise err(400, "[status] Given data (%s) does not belong to the "
                       "TicketStatusEnum enumeration" % status)
    out = []
    for tid in sorted(st.tickets):
        t = st.tickets[tid]["ticket"]
        if number is not None and str(t["ticketNumber"]) != number:
            continue
        if status is not None and t["state"] != status:
            continue
        if subject is not None and t["subject"] != subject:
            continue
        if service is not None and t["serviceName"] != service:
            continue
        if exclude_auto and st.tickets[tid]["autogenerated"]:
            continue
        out.append(tid)
    return 200, out


def _ticket(st, p):
    tid = int_param("ticketId", p["id"])
    e = st.tickets.get(tid)
    if e is None:
        raise not_found("ticketId", p["id"])
    return e


@route("GET", "support/tickets/{id}")
def h_ticket(ctx, p):
    return 200, _ticket(ctx.st, p)["ticket"]


@route("GET", "support/tickets/{id}/messages")
def h_messages(ctx, p):
    return 200, _ticket(ctx.st, p)["messages"]


@route("POST", "support/tickets/{id}/reply")
def h_reply(ctx, p):
    st = ctx.st
    e = _ticket(st, p)
    take_reject(st, "reply")
    text = require_string(parse_json_body(ctx.body), "body")
    if text.strip() == "":
        raise err(400, "[body] Property is mandatory")
    if e["ticket"]["state"] == "closed":
        raise err(400, "This ticket is closed")
    st._add_message(e, "customer", text)
    if st.auto_unblock and e["address"]:
        rec = st.account(e["address"])
        if rec and rec["blocked"] and rec["ticketId"] == e["ticket"]["ticketId"]:
            st.unblock(rec["address"])
    st.dump()
    return 200, None


@route("POST", "support/tickets/{id}/reopen")
def h_reopen(ctx, p):
    st = ctx.st
    e = _ticket(st, p)
    t = e["ticket"]
    if t["state"] != "closed":
        raise err(400, "This ticket is not closed")
    t["state"] = "open"
    t["canBeClosed"] = True
    t["updateDate"] = st.date()
    rec = st.account(e["address"]) if e["address"] else None
    if rec and rec["blocked"] and rec["ticketId"] is None:
        rec["ticketId"] = t["ticketId"]
    st.dump()
    return 200, None


# --------------------------------------------------------------------------
# Authentication


def rule_matches(rule, method, api_path):
    if rule.get("method") != method:
        return False
    rx = "^" + ".*".join(re.escape(part) for part in rule.get("path", "").split("*")) + "$"
    return re.match(rx, api_path) is not None


def authenticate(st, handler, auth, method, url_bytes, body, api_path):
    """Returns a credential dict (or None for unauthenticated routes)."""
    if auth == "none":
        return None
    hdr = handler.headers
    authz = hdr.get("Authorization", "")
    if auth == "full" and authz[:7].lower() == "bearer ":
        tok = st.tokens.get(authz[7:].strip())
        if tok is None or tok["expires_at"] <= time.time():
            raise err(403, "This credential is not valid", "INVALID_CREDENTIAL")
        return tok["cred"]
    ak = hdr.get("X-Ovh-Application")
    if not ak or ak not in st.applications:
        raise err(403, "Invalid application key", "INVALID_KEY")
    if auth == "ak":
        return {"application_key": ak}
    ck = hdr.get("X-Ovh-Consumer")
    if not ck:
        raise err(403, "You must login first", "NOT_CREDENTIAL")
    cred = None
    for c in st.credentials:
        if c["consumer_key"] == ck and c["application_key"] == ak:
            cred = c
    if cred is None or cred["state"] != "validated":
        raise err(403, "This credential is not valid", "INVALID_CREDENTIAL")
    ts = hdr.get("X-Ovh-Timestamp")
    if ts is None or not re.fullmatch(r"[0-9]{1,12}", ts.strip()) \
            or abs(int(ts) - st.now()) > TIME_TOLERANCE:
        raise err(400, "Query out of time", "QUERY_TIME_OUT")
    sig = hdr.get("X-Ovh-Signature")
    expected = signature(st.applications[ak]["secret"], ck, method, url_bytes, body,
                         ts.encode("latin-1"))
    if sig != expected:
        raise err(400, "Invalid signature", "INVALID_SIGNATURE")
    if cred["rules"] is not None and not api_path.startswith("/auth/") and \
            not any(rule_matches(r, method, api_path) for r in cred["rules"]):
        raise err(403, "This call has not been granted", "NOT_GRANTED_CALL")
    cred["lastUse"] = st.date()
    return cred


def oauth2_token(st, handler, body):
    client_id = client_secret = None
    authz = handler.headers.get("Authorization", "")
    form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    if authz[:6].lower() == "basic ":
        try:
            raw = base64.b64decode(authz[6:].strip(), validate=True).decode("utf-8")
            client_id, _, client_secret = raw.partition(":")
            client_id, client_secret = unquote(client_id), unquote(client_secret)
        except (ValueError, UnicodeDecodeError):
            pass
    if client_id is None and "client_id" in form:
        client_id = form["client_id"][0]
        client_secret = form.get("client_secret", [""])[0]
    grant = form.get("grant_type", [None])[0]
    if grant != "client_credentials":
        raise ApiError(400, {"error": "unsupported_grant_type",
                             "error_description": "grant_type must be client_credentials"})
    c = st.oauth2.get(client_id or "")
    if c is None or c.get("client_secret") != client_secret:
        raise ApiError(401, {"error": "invalid_client",
                             "error_description": "Client authentication failed"},
                       {"WWW-Authenticate": 'Basic realm="ovh"'})
    tok = secrets.token_hex(20)
    n = int(c.get("expires_in", 3600))
    st.tokens[tok] = {"client_id": client_id, "expires_at": time.time() + n, "cred": {
        "application_key": None, "consumer_key": None, "state": "validated", "rules": None,
        "credentialId": 0, "applicationId": 0, "creation": st.date(), "expiration": None,
        "lastUse": None, "client_id": client_id}}
    st.dump()
    return 200, {"access_token": tok, "token_type": "Bearer", "expires_in": n, "scope": "all"}


# --------------------------------------------------------------------------
# Control (/__control/)


def control(st, method, path, query, body):
    name = path[len("/__control/"):].strip("/")
    if method == "GET" and name == "log":
        return 200, copy.deepcopy(st.log)
    if method == "GET" and name == "state":
        return 200, st.snapshot()
    if name == "validate" and method in ("GET", "POST"):
        tok = (query.get("credentialToken") or [None])[0]
        ck = st.pending_tokens.pop(tok, None) if tok else None
        if ck is None:
            raise not_found("credentialToken", tok)
        for c in st.credentials:
            if c["consumer_key"] == ck:
                c["state"] = "validated"
        st.dump()
        return 200, {"ok": True, "consumerKey": ck, "state": "validated"}
    if method != "POST":
        raise err(404, "Unknown control endpoint")
    args = parse_json_body(body) or {}
    if not isinstance(args, dict):
        raise err(400, "Control body must be a JSON object")
    if name == "block":
        res = st.block(require_string(args, "address"), args)
    elif name == "unblock":
        res = st.unblock(require_string(args, "address"))
    elif name == "fault":
        mode = str(args.get("mode", ""))
        if mode == "clear":
            st.faults = []
        elif mode not in FAULT_MODES:
            raise err(400, "mode must be one of %s or clear" % "|".join(FAULT_MODES))
        else:
            f = {"mode": mode, "count": int(args.get("count", 1)),
                 "path": args.get("path") or "",
                 "retry_after": int(args.get("retry_after", 1)),
                 "delay": float(args.get("delay", 5))}
            if f["count"] > 0:
                st.faults.append(f)
        res = {"faults": st.faults}
    elif name == "reject":
        what = args.get("what")
        if what not in REJECT_WHAT:
            raise err(400, "what must be reply or changePassword")
        st.rejects[what] += int(args.get("count", 1))
        res = {"rejects": st.rejects}
    elif name == "task_outcome":
        outcome = args.get("outcome")
        if outcome not in TASK_OUTCOMES:
            raise err(400, "outcome must be one of %s" % "|".join(TASK_OUTCOMES))
        st.task_outcomes.extend([outcome] * int(args.get("count", 1)))
        res = {"task_outcomes": st.task_outcomes}
    elif name == "finish_tasks":
        # Stuck tasks end at their next read, with this outcome.
        outcome = args.get("outcome", "done")
        if outcome not in ("done", "error"):
            raise err(400, "outcome must be done or error")
        for t in st.tasks.values():
            if t["outcome"] == "stuck":
                t["outcome"] = outcome
        res = {}
    elif name == "close_ticket":
        tid = int(args.get("ticketId", 0))
        if tid not in st.tickets:
            raise not_found("ticketId", tid)
        t = st.tickets[tid]["ticket"]
        t["state"] = "closed"
        t["canBeClosed"] = False
        res = {"ticketId": tid}
    elif name == "auto_unblock":
        st.auto_unblock = bool(args.get("on", True))
        res = {"auto_unblock": st.auto_unblock}
    elif name == "reset":
        st.reset()
        res = {}
    elif name == "clear_log":
        st.log = []
        res = {}
    elif name == "clock":
        st.clock_offset = _number(args.get("offset", 0))
        res = {"clock_offset": st.clock_offset, "server_time": int(st.now())}
    elif name == "expire_tokens":
        for t in st.tokens.values():
            t["expires_at"] = 0
        res = {}
    elif name == "credential":
        ck = require_string(args, "consumer_key")
        state = args.get("state", "expired")
        if state not in ("expired", "validated", "refused", "pendingValidation"):
            raise err(400, "bad state")
        found = [c for c in st.credentials if c["consumer_key"] == ck]
        if not found:
            raise not_found("consumer_key", ck)
        for c in found:
            c["state"] = state
        res = {"consumer_key": ck, "state": state}
    else:
        raise err(404, "Unknown control endpoint")
    st.dump()
    res = dict(res)
    res["ok"] = True
    return 200, res


# --------------------------------------------------------------------------
# HTTP


def api_segments(path_only):
    """Raw request path (no query) -> (api_path, decoded segments) or None."""
    for prefix in ("/1.0/", "/v1/"):
        if path_only.startswith(prefix):
            rest = path_only[len(prefix):]
            segs = [unquote(s) for s in rest.split("/")]
            return "/" + "/".join(segs), segs
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ovhapi-standin/1.0"

    def version_string(self):
        return self.server_version

    # ---- plumbing -------------------------------------------------------
    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("standin: %s - %s\n" % (self.address_string(), fmt % args))

    def send_error(self, code, message=None, explain=None):
        # Malformed HTTP: still a JSON body and a query id.
        try:
            self.close_connection = True
            self._reply(code, dumps({"message": message or "Bad request"}), {})
        except OSError:
            pass

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _reply(self, status, body, headers):
        st = self.server.st
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Ovh-QueryID", st.next_query_id())
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            view = memoryview(body)
            for i in range(0, len(body), 1 << 20):
                self.wfile.write(view[i:i + (1 << 20)])
        self.wfile.flush()

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    # ---- the request ----------------------------------------------------
    def _dispatch(self):
        st = self.server.st
        self._t0 = time.time()
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.send_error(400, "Bad request body")
            return
        method = self.command.upper()
        raw_path = self.path
        split = urlsplit(raw_path)
        path_only = split.path
        query = parse_qs(split.query, keep_blank_values=True)

        if path_only.startswith("/__control/"):
            with st.lock:
                try:
                    status, obj = control(st, method, path_only, query, body)
                    out = dumps(obj)
                except ApiError as e:
                    status, out = e.status, dumps(e.payload)
                except (ValueError, TypeError) as e:
                    status, out = 400, dumps({"message": "bad control request: %s" % e})
            self._reply(status, out, {})
            return

        # Fault injection, before anything else (like a front-end failing).
        fault = self._take_fault(raw_path)
        if fault is not None and fault["mode"] == "slow":
            time.sleep(fault["delay"])
            fault = None
        drop = fault is not None and fault["mode"] == "drop"
        if drop:
            fault = None
        if fault is not None:
            status, out, headers = fault_response(fault)
            self._log(method, raw_path, body, status)
            self._reply(status, out, headers)
            return

        headers = {}
        with st.lock:
            try:
                status, obj = self._api(method, raw_path, path_only, query, body)
                out = dumps(obj)
            except ApiError as e:
                status, out, headers = e.status, dumps(e.payload), e.headers
            except Exception as e:  # a bug in the stand-in: say so loudly
                sys.stderr.write("standin: internal error on %s %s: %r\n" % (method, raw_path, e))
                status, out = 500, dumps({"message": "Internal server error (stand-in bug: %r)" % e})
            self._log(method, raw_path, body, status, dropped=drop)
        if drop:
            # Carried out, but the answer is lost: the connection is cut.
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        self._reply(status, out, headers)

    def _take_fault(self, raw_path):
        st = self.server.st
        cands = {raw_path, raw_path.split("?")[0], unquote(raw_path.split("?")[0])}
        for c in list(cands):
            for prefix in ("/1.0", "/v1"):
                if c.startswith(prefix + "/"):
                    cands.add(c[len(prefix):])
        with st.lock:
            for f in st.faults:
                if f["count"] > 0 and any(c.startswith(f["path"]) for c in cands):
                    f["count"] -= 1
                    taken = dict(f)
                    st.faults = [x for x in st.faults if x["count"] > 0]
                    st.dump()
                    return taken
        return None

    def _log(self, method, raw_path, body, status, dropped=False):
        st = self.server.st
        with st.lock:
            e = {"method": method, "path": raw_path,
                 "body": body.decode("utf-8", "replace"), "status": status,
                 "t": getattr(self, "_t0", time.time()), "host": self.headers.get("Host", "")}
            if dropped:
                e["dropped"] = True
            st.log.append(e)

    def _api(self, method, raw_path, path_only, query, body):
        st = self.server.st
        if path_only == "/auth/oauth2/token":
            if method != "POST":
                raise err(405, "Method not allowed")
            return oauth2_token(st, self, body)
        parsed = api_segments(path_only)
        if parsed is None:
            raise err(404, "Got an invalid (or empty) URL")
        api_path, segs = parsed
        fn, params, auth = match_route(method, segs)
        url = b"http://127.0.0.1:%d" % st.port_ref() + raw_path.encode("latin-1")
        cred = authenticate(st, self, auth if fn else "full", method, url, body, api_path)
        if fn is None:
            if auth == "405":
                raise err(405, "Received request for an unknown method on %s" % api_path)
            raise err(404, "Got an invalid (or empty) URL")
        ctx = Ctx(st, method, api_path, query, body, cred)
        return fn(ctx, params)


def fault_response(f):
    mode = f["mode"]
    if mode == "503":
        return 503, dumps({"message": "Service Unavailable", "errorCode": "SERVICE_UNAVAILABLE"}), {}
    if mode == "500":
        return 500, dumps({"message": "Internal server error", "errorCode": "INTERNAL_SERVER_ERROR"}), {}
    if mode == "429":
        return 429, dumps({"message": "Too Many Requests", "errorCode": "TOO_MANY_REQUESTS"}), \
            {"Retry-After": str(f["retry_after"])}
    if mode == "garbage":
        return 200, b"<html><body><h1>502 Bad Gateway</h1>\x00\xff\xfe not json</body></html>\n", {}
    if mode == "truncated":
        full = dumps({"message": "this body was cut in half", "padding": "x" * 64,
                      "items": list(range(16))})
        return 200, full[:len(full) // 2], {}
    if mode == "huge":
        return 200, b'"' + b"A" * HUGE_SIZE + b'"', {}
    raise AssertionError(mode)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def _number(x):
    v = float(x)
    return int(v) if v == int(v) else v


def main(argv=None):
    ap = argparse.ArgumentParser(description="Stand-in OVHcloud API (see PROTOCOL.md)")
    ap.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = any free)")
    ap.add_argument("--fixture", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "fixture-example.json"))
    ap.add_argument("--clock-offset", type=_number, default=0,
                    help="server clock = local clock + this many seconds")
    ap.add_argument("--state", default=None, help="dump the state to FILE after every change")
    ap.add_argument("--verbose", action="store_true", help="access log on stderr")
    args = ap.parse_args(argv)

    with open(args.fixture, encoding="utf-8") as f:
        fixture = json.load(f)

    holder = {}
    st = State(fixture, args.clock_offset, lambda: holder["port"], None)
    httpd = Server(("127.0.0.1", args.port), Handler)
    httpd.st = st
    httpd.verbose = args.verbose
    holder["port"] = httpd.server_address[1]
    st.state_file = args.state
    st.dump()

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    sys.stdout.write("READY %d\n" % holder["port"])
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    httpd.shutdown()
    httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
