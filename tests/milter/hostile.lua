-- hostile.lua - input an attacker (or a broken MTA) controls must neither
-- crash sendguard nor break or forge its one-line decision log. With a cap
-- far away, every complete message must still be accepted. The driver
-- then checks that there is exactly one well-formed decision line per
-- message (SG-EOMS below) and no sanitizer report.
-- -D socket=... -D libdir=...
-- (2,000-byte addresses and NUL bytes: see hostile_raw in run_miltertest.py,
-- miltertest's 1024-byte buffers cannot carry them.)
dofile(libdir .. "/lib.lua")

local FORGE = "2030-01-01T00:00:00.000 sendguard[info]: qid=FORGED account=<x@y> " ..
              "identity=<x@y> ip=1.2.3.4 rcpts=1 size=1 action=accept limit=x used=0 cap=1"

local function one(conn, what, m)
  local r = sg.message(conn, m)
  sg.expect(conn, r, what, "accept")
  mt.echo("ok: " .. what)
end

local conn = sg.open()
one(conn, "null sender", {from = "<>", qid = "H1"})
one(conn, "quoted local part", {from = '<"john doe"@example.com>', qid = "H2"})
one(conn, "quoted with escapes", {from = '<"a\\"b\\\\c d"@example.com>', qid = "H3"})
one(conn, "UTF-8 local part", {from = "<jöhn.dœ@exämple.com>", qid = "H4"})
one(conn, "invalid UTF-8", {from = "<\xff\xfe\x80\xc3@example.com>", qid = "H5"})
one(conn, "forged action in address",
    {from = "<evil action=accept limit=none used=0@example.com>", qid = "H6"})
one(conn, "angle brackets in address", {from = "<a> action=reject <b@example.com>", qid = "H7"})
one(conn, "CR/LF in {auth_authen}", {from = "<alice@example.com>", qid = "H8",
    auth = "jdoe\r\n" .. FORGE})
one(conn, "CR/LF in {i}", {from = "<alice@example.com>", qid = "H9\r\n" .. FORGE})
one(conn, "LF and CR alone in sender", {from = "<bob\n" .. FORGE .. "\r@example.com>", qid = "H10"})
one(conn, "900-byte address", {from = "<" .. string.rep("a", 880) .. "@example.com>", qid = "H11"})
one(conn, "CR/LF in headers", {from = "<alice@example.com>", qid = "H12", headers = {
    {"From", "alice@example.com\r\n" .. FORGE},
    {"X-Mailer", "evil\r\n" .. FORGE},
    {"User-Agent", "\r\n\r\n"},
    {"Message-ID", "<id\r\naction=accept@x>"}}})
one(conn, "CR/LF in recipients", {from = "<alice@example.com>", qid = "H13",
    rcpts = {"<bob@example.net>\r\n" .. FORGE, "<\r\n>", "<>"}})
local many = {}
for i = 1, 1000 do many[i] = "<rcpt" .. i .. "@example.net>" end
one(conn, "1,000 recipients", {from = "<alice@example.com>", qid = "H14", rcpts = many})
-- an aborted transaction leaves no verdict, and the next message is clean
sg.message(conn, {from = "<aborted@example.com>", qid = "H15", abort = true})
one(conn, "message after an abort", {from = "<alice@example.com>", qid = "H16"})
sg.close(conn)

-- no macros at all: no {i}, no {auth_authen}, on a fresh connection
conn = sg.open("198.51.100.9")
one(conn, "missing {i} and {auth_authen}", {from = "<carol@example.com>", macros = {}, eom_macros = {}})
sg.close(conn)

-- the client vanishes mid-transaction
conn = sg.open()
sg.message(conn, {from = "<gone@example.com>", qid = "H17", noeom = true})
sg.close(conn, false)

-- and the daemon still answers
conn = sg.open()
one(conn, "still alive", {from = "<alice@example.com>", qid = "H18"})
sg.close(conn)
mt.echo("SG-EOMS " .. tostring(sg.eoms))
