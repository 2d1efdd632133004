"""
milterclient - the MTA side of the milter protocol (version 6), in Python.

miltertest covers the ordinary cases, but its fixed 1024-byte buffers
(mt.mailfrom and mt.header copy without a bound; mt.rcptto and mt.macro
refuse more) and its NUL-terminated strings cannot send a 2,000-byte
address or a NUL inside a macro value, and it cannot show the reply text
it got. This client sends any bytes and returns every reply.

    c = MilterClient("unix:/tmp/x/sendguard.sock")
    c.negotiate()
    c.connect("client.example", "127.0.0.1")
    c.macro("M", {"i": "QID1", "{auth_authen}": "jdoe"})
    c.mail(["<a@example.com>"]); c.rcpt(["<b@example.net>"])
    c.header("From", "a@example.com"); c.eoh(); c.body(b"hi\r\n")
    r = c.eom()   # r.final ('a','c','y','t','r',...), r.reply, r.quarantine
"""
import socket
import struct

# protocol step flags (SMFIP_*)
SMFIP = {
    "NOCONNECT": 0x1, "NOHELO": 0x2, "NOMAIL": 0x4, "NORCPT": 0x8, "NOBODY": 0x10,
    "NOHDRS": 0x20, "NOEOH": 0x40, "NR_HDR": 0x80, "NOUNKNOWN": 0x100, "NODATA": 0x200,
    "SKIP": 0x400, "RCPT_REJ": 0x800, "NR_CONN": 0x1000, "NR_HELO": 0x2000,
    "NR_MAIL": 0x4000, "NR_RCPT": 0x8000, "NR_DATA": 0x10000, "NR_UNKN": 0x20000,
    "NR_EOH": 0x40000, "NR_BODY": 0x80000, "HDR_LEADSPC": 0x100000,
}
# actions (SMFIF_*)
SMFIF = {
    "ADDHDRS": 0x1, "CHGBODY": 0x2, "ADDRCPT": 0x4, "DELRCPT": 0x8, "CHGHDRS": 0x10,
    "QUARANTINE": 0x20, "CHGFROM": 0x40, "ADDRCPT_PAR": 0x80, "SETSYMLIST": 0x100,
}
ALL_STEPS = 0x1FFFFF
ALL_ACTIONS = 0x1FF
TERMINAL = set(b"acdrty")     # accept continue discard reject tempfail replycode


def flag_names(value, table):
    return [k for k, v in table.items() if value & v]


class MilterError(Exception):
    pass


class EomResult:
    def __init__(self, final, data, actions):
        self.final = chr(final)              # 'a', 'c', 'y', 't', 'r', 'd'
        self.data = data
        self.actions = actions               # [(cmd char, bytes)] before the final one
        self.reply = data.rstrip(b"\0").decode("latin-1") if final == ord("y") else None
        q = [d for c, d in actions if c == "q"]
        self.quarantine = q[0].rstrip(b"\0").decode("latin-1") if q else None

    @property
    def verdict(self):
        """accept / hold / tempfail / reject / discard, as the MTA would act."""
        if self.final in "ac":
            return "hold" if self.quarantine is not None else "accept"
        if self.final == "t" or (self.final == "y" and self.reply[:1] == "4"):
            return "tempfail"
        if self.final == "r" or (self.final == "y" and self.reply[:1] == "5"):
            return "reject"
        return {"d": "discard"}.get(self.final, "?" + self.final)

    def __repr__(self):
        return f"<eom {self.final} reply={self.reply!r} quarantine={self.quarantine!r}>"


class MilterClient:
    def __init__(self, spec, timeout=20):
        if spec.startswith(("unix:", "local:")):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            addr = spec.split(":", 1)[1]
        elif spec.startswith("inet:"):
            port, _, host = spec[5:].partition("@")
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            addr = (host or "127.0.0.1", int(port))
        else:
            raise MilterError(f"bad socket spec {spec!r}")
        self.sock.settimeout(timeout)
        self.sock.connect(addr)
        self.steps = 0
        self.actions = 0
        self.version = 0

    # -- wire ----------------------------------------------------------------
    def send(self, cmd, data=b""):
        pkt = struct.pack("!IB", len(data) + 1, ord(cmd)) + data
        self.sock.sendall(pkt)

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise MilterError(f"filter closed the connection ({len(buf)}/{n} bytes read)")
            buf += chunk
        return buf

    def recv(self):
        (length,) = struct.unpack("!I", self._recv_exact(4))
        if length < 1 or length > 1 << 24:
            raise MilterError(f"bad packet length {length}")
        body = self._recv_exact(length)
        return body[0], body[1:]

    def _step(self, cmd, data, no_flag, nr_flag):
        """Send a step unless negotiated away; read its reply unless NR."""
        if no_flag and self.steps & SMFIP[no_flag]:
            return None
        self.send(cmd, data)
        if nr_flag and self.steps & SMFIP[nr_flag]:
            return None
        c, d = self.recv()
        while c == ord("p"):                  # progress
            c, d = self.recv()
        return chr(c), d

    # -- protocol --------------------------------------------------------------
    def negotiate(self, version=6, actions=ALL_ACTIONS, steps=ALL_STEPS):
        self.send("O", struct.pack("!III", version, actions, steps))
        c, d = self.recv()
        if c != ord("O") or len(d) < 12:
            raise MilterError(f"negotiation answered {chr(c)!r} {d!r}")
        self.version, self.actions, self.steps = struct.unpack("!III", d[:12])
        return self.version, self.actions, self.steps

    def macro(self, stage, pairs):
        """stage: 'C', 'H', 'M', 'R', 'T', 'L', 'N', 'E'. pairs: dict or list
        of (name, value) (str or bytes, any bytes: NULs are sent as they are),
        or raw bytes to send verbatim after the stage byte."""
        if isinstance(pairs, (bytes, bytearray)):
            payload = bytes(pairs)
        else:
            items = pairs.items() if isinstance(pairs, dict) else pairs
            payload = b"".join(_b(k) + b"\0" + _b(v) + b"\0" for k, v in items)
        self.send("D", stage.encode() + payload)

    def connect(self, host="client.example", ip="127.0.0.1", port=12345):
        if ":" in ip:
            fam = b"6"
        elif ip == "unspec":
            return self._step("C", _b(host) + b"\0U", "NOCONNECT", "NR_CONN")
        else:
            fam = b"4"
        data = _b(host) + b"\0" + fam + struct.pack("!H", port) + _b(ip) + b"\0"
        return self._step("C", data, "NOCONNECT", "NR_CONN")

    def helo(self, name="client.example"):
        return self._step("H", _b(name) + b"\0", "NOHELO", "NR_HELO")

    def mail(self, args):
        return self._step("M", b"".join(_b(a) + b"\0" for a in args), "NOMAIL", "NR_MAIL")

    def rcpt(self, args):
        return self._step("R", b"".join(_b(a) + b"\0" for a in args), "NORCPT", "NR_RCPT")

    def data(self):
        return self._step("T", b"", "NODATA", "NR_DATA")

    def header(self, name, value):
        return self._step("L", _b(name) + b"\0" + _b(value) + b"\0", "NOHDRS", "NR_HDR")

    def eoh(self):
        return self._step("N", b"", "NOEOH", "NR_EOH")

    def body(self, chunk):
        if self.steps & SMFIP["NOBODY"]:
            return None
        out = None
        for i in range(0, max(len(chunk), 1), 65535):
            out = self._step("B", _b(chunk)[i:i + 65535], "NOBODY", "NR_BODY")
        return out

    def eom(self, chunk=b""):
        self.send("E", _b(chunk))
        actions = []
        while True:
            c, d = self.recv()
            if c in TERMINAL:
                return EomResult(c, d, actions)
            if c != ord("p"):
                actions.append((chr(c), d))

    def abort(self):
        self.send("A")

    def quit(self):
        try:
            self.send("Q")
        except OSError:
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- one whole message -------------------------------------------------
    def message(self, sender, rcpts, mail_macros=None, eom_macros=None, headers=(),
                body=b"test body\r\n"):
        """MAIL .. EOM for one message; returns the EomResult."""
        if mail_macros is not None:
            self.macro("M", mail_macros)
        self.mail([sender])
        for r in rcpts:
            self.rcpt([r])
        self.data()
        for k, v in headers:
            self.header(k, v)
        self.eoh()
        if body:
            self.body(body)
        if eom_macros is not None:
            self.macro("E", eom_macros)
        return self.eom()


def _b(x):
    return x if isinstance(x, (bytes, bytearray)) else str(x).encode("utf-8")
