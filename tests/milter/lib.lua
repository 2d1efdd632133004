-- lib.lua - helpers shared by sendguard's miltertest scripts.
--
-- Loaded with dofile(libdir .. "/lib.lua"); the driver (run_miltertest.py)
-- passes -D socket=unix:/... -D libdir=... and the case's parameters.
--
-- Quirks of miltertest 1.5/2.11 (Debian 12) this file works around:
--  * mt.data() is never called (it checks the wrong state); mt.eom() sends
--    DATA itself when the filter did not negotiate SMFIP_NODATA.
--  * a step the filter negotiated away (SMFIP_NO*) must not be sent, or the
--    script dies, often without a message: every step is guarded with
--    mt.test_option(); and a reply is read only when SMFIP_NR_* is not set.
--  * mt.eom_check(conn, MT_SMTPREPLY, code) with the code alone compares
--    against "451(null)...": code, enhanced code and text are always given.
--  * mt.mailfrom()/mt.header() copy into a 1024-byte buffer without a bound,
--    mt.rcptto()/mt.macro() refuse more: keep each under ~900 bytes (longer
--    input is sent by the Python client, milterclient.py).
-- Every failure goes through sg.fail(), which raises a Lua error with a
-- message, so miltertest prints it and exits 1.

sg = {}

local SMFIC_EOM = string.byte("E")   -- not exported by miltertest

function sg.fail(msg)
  error("FAIL: " .. msg, 0)
end

function sg.check(ret, what)
  if ret ~= nil then
    sg.fail(what .. " returned " .. tostring(ret))
  end
end

local OPTIONS = {
  "SMFIP_NOCONNECT", "SMFIP_NOHELO", "SMFIP_NOMAIL", "SMFIP_NORCPT", "SMFIP_NOBODY",
  "SMFIP_NOHDRS", "SMFIP_NOEOH", "SMFIP_NR_HDR", "SMFIP_NOUNKNOWN", "SMFIP_NODATA",
  "SMFIP_SKIP", "SMFIP_RCPT_REJ", "SMFIP_NR_CONN", "SMFIP_NR_HELO", "SMFIP_NR_MAIL",
  "SMFIP_NR_RCPT", "SMFIP_NR_DATA", "SMFIP_NR_UNKN", "SMFIP_NR_EOH", "SMFIP_NR_BODY",
  "SMFIP_HDR_LEADSPC",
}

-- true when the filter negotiated option `name` (nil-safe for old builds)
function sg.opt(conn, name)
  local v = _G[name]
  if v == nil then return false end
  return mt.test_option(conn, v)
end

function sg.open(ip)
  local conn = mt.connect(socket, 40, 0.25)
  if conn == nil then sg.fail("mt.connect(" .. tostring(socket) .. ") failed") end
  mt.set_timeout(tonumber(timeout or 20))
  sg.check(mt.negotiate(conn, nil, nil, nil), "mt.negotiate")
  local got = {}
  for _, name in ipairs(OPTIONS) do
    if sg.opt(conn, name) then got[#got + 1] = name end
  end
  mt.echo("negotiated: " .. table.concat(got, " "))
  if SMFIF_QUARANTINE ~= nil and not mt.test_action(conn, SMFIF_QUARANTINE) then
    sg.fail("the filter did not ask for SMFIF_QUARANTINE")
  end
  if not sg.opt(conn, "SMFIP_NOCONNECT") then
    sg.check(mt.conninfo(conn, "client.example", ip or "192.0.2.7"), "mt.conninfo")
    sg.expect_continue(conn, "SMFIP_NR_CONN", "connect")
  end
  return conn
end

function sg.close(conn, polite)
  if polite == nil then polite = true end
  mt.disconnect(conn, polite)
end

-- after a step: the reply must be "continue" unless the step is NR
function sg.expect_continue(conn, nr, what)
  if sg.opt(conn, nr) then return end
  local r = mt.getreply(conn)
  if r ~= SMFIR_CONTINUE then
    sg.fail(what .. ": expected SMFIR_CONTINUE, got " .. tostring(r))
  end
end

-- One message, MAIL to EOM. m = {
--   from = "<a@example.com>", rcpts = {"<b@example.net>"},
--   qid = "QID", auth = "login" (or nil: no {auth_authen}),
--   macros = {name, value, ...} (replaces the MAIL macros; {} = none at all),
--   eom_macros = {...} (default {"i", qid}; {} = none),
--   headers = {{"From", "..."}, ...}, body = "...",
--   abort = true (stop before EOM with mt.abort: no verdict expected),
--   noeom = true (stop before EOM, send nothing more) }
-- Returns mt.getreply() after EOM (nil when aborted).
function sg.message(conn, m)
  local from = m.from or "<alice@example.com>"
  local macros = m.macros
  if macros == nil then
    macros = {}
    if m.qid then macros[#macros + 1] = "i"; macros[#macros + 1] = m.qid end
    if m.auth then macros[#macros + 1] = "{auth_authen}"; macros[#macros + 1] = m.auth end
  end
  if #macros > 0 then
    sg.check(mt.macro(conn, SMFIC_MAIL, table.unpack(macros)), "mt.macro(MAIL)")
  end
  if not sg.opt(conn, "SMFIP_NOMAIL") then
    sg.check(mt.mailfrom(conn, from), "mt.mailfrom")
    sg.expect_continue(conn, "SMFIP_NR_MAIL", "MAIL FROM " .. from)
  end
  if not sg.opt(conn, "SMFIP_NORCPT") then
    for _, r in ipairs(m.rcpts or {"<rcpt@example.net>"}) do
      sg.check(mt.rcptto(conn, r), "mt.rcptto")
      sg.expect_continue(conn, "SMFIP_NR_RCPT", "RCPT TO " .. r)
    end
  end
  if not sg.opt(conn, "SMFIP_NOHDRS") then
    local headers = m.headers or {
      {"From", from}, {"To", "rcpt@example.net"}, {"Subject", "miltertest"},
      {"Message-ID", "<" .. tostring(m.qid or "x") .. "@miltertest.example>"},
    }
    for _, hv in ipairs(headers) do
      sg.check(mt.header(conn, hv[1], hv[2]), "mt.header(" .. hv[1] .. ")")
      sg.expect_continue(conn, "SMFIP_NR_HDR", "header " .. hv[1])
    end
  end
  if not sg.opt(conn, "SMFIP_NOEOH") then
    sg.check(mt.eoh(conn), "mt.eoh")
    sg.expect_continue(conn, "SMFIP_NR_EOH", "EOH")
  end
  if not sg.opt(conn, "SMFIP_NOBODY") then
    sg.check(mt.bodystring(conn, m.body or "Hello from miltertest.\r\n"), "mt.bodystring")
    sg.expect_continue(conn, "SMFIP_NR_BODY", "body")
  end
  if m.noeom then
    return nil                       -- the caller drops the connection
  end
  if m.abort then
    sg.check(mt.abort(conn), "mt.abort")
    return nil
  end
  local em = m.eom_macros
  if em == nil then em = m.qid and {"i", m.qid} or {} end
  if #em > 0 then
    sg.check(mt.macro(conn, SMFIC_EOM, table.unpack(em)), "mt.macro(EOM)")
  end
  sg.check(mt.eom(conn), "mt.eom")
  sg.eoms = (sg.eoms or 0) + 1
  return mt.getreply(conn)
end

local function is_accept(r)
  return r == SMFIR_ACCEPT or r == SMFIR_CONTINUE
end

function sg.expect_accept(conn, r, what)
  if not is_accept(r) then
    sg.fail(what .. ": expected accept, got reply " .. tostring(r))
  end
  if mt.eom_check(conn, MT_QUARANTINE) then
    sg.fail(what .. ": accepted but quarantined")
  end
end

function sg.expect_hold(conn, r, what, reason)
  if not is_accept(r) then
    sg.fail(what .. ": expected accept + quarantine, got reply " .. tostring(r))
  end
  if not mt.eom_check(conn, MT_QUARANTINE) then
    sg.fail(what .. ": no quarantine requested")
  end
  if reason ~= nil and reason ~= "" and not mt.eom_check(conn, MT_QUARANTINE, reason) then
    sg.fail(what .. ": quarantine reason is not \"" .. reason .. "\"")
  end
end

-- Retry-after as sendguard words it: 59s, 12m, 3h, 2d.
local function retry_candidates()
  local c = {}
  for s = 0, 119 do c[#c + 1] = s .. "s" end
  for m = 1, 120 do c[#c + 1] = m .. "m" end
  for h = 1, 48 do c[#c + 1] = h .. "h" end
  for d = 1, 60 do c[#c + 1] = d .. "d" end
  return c
end

-- A refusal by SMTP reply: code, enhanced code and text all given to
-- mt.eom_check. text is exact, or, when it ends in "%RETRY%", a prefix
-- followed by any retry-after duration.
function sg.expect_reply(conn, r, what, code, xcode, text)
  if r ~= SMFIR_REPLYCODE then
    sg.fail(what .. ": expected SMFIR_REPLYCODE " .. code .. ", got reply " .. tostring(r))
  end
  if mt.eom_check(conn, MT_QUARANTINE) then
    sg.fail(what .. ": refused but also quarantined")
  end
  local prefix = text:match("^(.*)%%RETRY%%$")
  if prefix == nil then
    if not mt.eom_check(conn, MT_SMTPREPLY, code, xcode, text) then
      sg.fail(what .. ": reply is not \"" .. code .. " " .. xcode .. " " .. text .. "\"")
    end
    return text
  end
  for _, d in ipairs(retry_candidates()) do
    if mt.eom_check(conn, MT_SMTPREPLY, code, xcode, prefix .. d) then
      return prefix .. d
    end
  end
  sg.fail(what .. ": reply is not \"" .. code .. " " .. xcode .. " " .. prefix .. "<duration>\"")
end

-- expect: "accept", "hold", "tempfail", "reject"; texts from the driver:
-- tempfail_text, reject_text, hold_reason (globals from -D).
function sg.expect(conn, r, what, expect)
  if expect == "accept" then
    sg.expect_accept(conn, r, what)
  elseif expect == "hold" then
    sg.expect_hold(conn, r, what, hold_reason)
  elseif expect == "tempfail" then
    local t = sg.expect_reply(conn, r, what, "451", "4.7.1", tempfail_text or "")
    mt.echo(what .. ": 451 4.7.1 " .. t)
  elseif expect == "reject" then
    local t = sg.expect_reply(conn, r, what, "550", "5.7.1", reject_text or "")
    mt.echo(what .. ": 550 5.7.1 " .. t)
  else
    sg.fail("unknown expectation " .. tostring(expect))
  end
end

-- "accept:3,tempfail:2" -> {"accept","accept","accept","tempfail","tempfail"}
function sg.parse_plan(plan)
  local out = {}
  for item in string.gmatch(plan, "[^,]+") do
    local what, n = item:match("^%s*(%a+):?(%d*)%s*$")
    if what == nil then sg.fail("bad plan item " .. item) end
    for _ = 1, tonumber(n ~= "" and n or "1") do out[#out + 1] = what end
  end
  return out
end

-- Send one message per plan entry on one connection and check each verdict.
function sg.run_plan(plan, from, tag)
  local conn = sg.open()
  local steps = sg.parse_plan(plan)
  for i, expect in ipairs(steps) do
    local qid = (tag or "Q") .. i
    local r = sg.message(conn, {from = from, qid = qid})
    sg.expect(conn, r, "message " .. i .. " (" .. qid .. ")", expect)
  end
  sg.close(conn)
  mt.echo("SG-EOMS " .. tostring(sg.eoms or 0))
end
