-- sg_decide.lua - sendguard's server side: the whole decision for one
-- message of one account, in one EVALSHA, atomically.
--
-- Embedded into sg_store_redis.c at build time (sg_decide_lua.cmake); the
-- C side computes its SHA-1 for EVALSHA and loads it on NOSCRIPT.
-- Must not: read a clock but redis TIME (except the explicit "now"
-- argument, sent only by a store opened with a clock: tests), touch a key it was not
-- given in KEYS, or leave a key without an expiry.
--
-- ARGV[1] is the mode: "decide" (a configured account), "implicit" (an
-- identity no account matches: one hash, see implicit()), "usage",
-- "iusage", "lock" or "state_cas". ARGV[2] is "now" in ms, or "" to use redis TIME (what
-- the daemon sends: its store has no clock of its own).
--
-- Limit algorithm (same as the memory backend): a bucketed sliding window
-- counting its oldest bucket whole. B = 60 buckets of width w = ceil(T/60)
-- ms; bucket k holds what was accepted in [k*w, (k+1)*w). At time t the
-- window [t-T, t] intersects the buckets floor((t-T)/w) .. floor(t/w);
-- their sum (a superset of what was accepted in that window) plus the
-- cost must not exceed the cap. So bucket k counts while
-- t < (k+1)*w + T, and no closed window of length T ever holds more than
-- the cap: at the last acceptance t* in a window [a, a+T], everything
-- accepted in [a, t*] lies in buckets that were counted.
-- Distinct recipients: a ZSET member = recipient hash (hex), score = last
-- seen; members with score < t-T are gone; check zcard + new <= cap.
-- Window hash: "m|r|b<k>" -> units of bucket k, and running totals "lo",
-- "tm", "tr", "tb", "hi" (see TOTALS); its expiry moves only when a newer
-- bucket is charged (see window_commit).
--
-- decide: KEYS
--   1 state  2 meta  3 ev:ip  4 ev:ipfirst  5 ev:mua  6 ev:muafirst
--   7 ev:dom  8 ev:fromx  9 ev:recent  10 ev:hour
--   then per limit i (1-based): 10+3i-2 window hash, 10+3i-1 distinct
--   zset, 10+3i warn marker; 10+3L+1 the relay's held set; then the
--   trace index (issue 18): 10+3L+2 ev:msg, 10+3L+3 ev:mid, 10+3L+4 ev:t
-- decide: ARGV
--   1 "decide"  2 now|""  3 charge_refused 0|1  4 account name
--   5 evidence ttl ms  6 recent list length  7 max fields per evidence hash
--   8 qid  9 client ip  10 identity  11 mailer  12 message-id
--   13 From: domain  14 from mismatch 0|1  15 relay
--   16 cost messages  17 cost recipients  18 cost bytes
--   19 L limits  20 H recipient hashes  21 D recipient domains
--   then L x (window_ms, cap_msg, cap_rcpt, cap_bytes, cap_distinct, warn_at)
--   then H hashes (hex), then D domains, then the members of the "recent"
--   record but t, action and charged, as JSON text: "qid":..,"ip":..,
--   "identity":..,"rcpts":..,"size":..,"msgid":..,"mailer":..,"relay":..
--   (the values above, ip and mailer "(none)" when empty); then
--   hold_on_lockdown 0|1, held ttl ms: with 1 and the lockdown flag on,
--   qid goes into the held set (what sg_store_held_add does, in this call);
--   then the trace index: trace_max (0 = none), keep ms (7 days), ttl ms,
--   the Message-ID's digest ("" none), and the record's middle as
--   tab-separated text: qid ip login msgid mailer relay rcpts size
--   (tabs and newlines cleaned by the C side). See trace_index().
-- decide returns {status 0 ok|1 over, limit (0-based), unit (0-based),
--   used, cap, retry_after_ms, warn_mask, lockdown 0|1, now, 0, held 0|1}
--
-- usage: KEYS per limit: window hash, distinct zset.
--   ARGV 1 "usage" 2 now|"" 3 L, then L window_ms.
--   returns 4 numbers per limit: messages, recipients, bytes, distinct.
-- lock: KEYS 1 lock key. ARGV 1 "lock" 2 now|"" (unused) 3 owner 4 ttl_ms
--   (0 = release). returns 1 acquired/renewed/released, 0 held by another.
-- state_cas: KEYS 1 state hash. ARGV 1 "state_cas" 2 now|"" (unused)
--   3 expected version (0 = none stored yet)  4 ttl ms  5.. field, value
--   pairs of the new state ("version" not among them). When the stored
--   "version" field (missing = 0) equals ARGV[3], the hash is replaced by
--   the pairs plus version = ARGV[3] + 1 and that number is returned;
--   otherwise nothing is written and the stored hash is returned (HGETALL):
--   the caller lost a race and re-decides from it.

local B = 60
local UNITS = { 'm', 'r', 'b' }            -- field prefixes: unit 1..3
local UIDX = { m = 1, r = 2, b = 3 }
local HOUR = 3600000
-- ev:hour keeps the hourly counts of 15 days: the block report reads the
-- last 48 hours, sendguardctl suggest-limits up to 14 whole days
local HIST_HOURS = 15 * 24 + 1
local CHUNK = 1000                       -- items per variadic call

local function I(x)                       -- integer to string, no %.14g rounding
    return string.format('%d', x)
end

local function now_ms()
    local o = ARGV[2]
    if o ~= nil and o ~= '' then
        return tonumber(o)
    end
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The window hash also keeps running totals beside its buckets: "lo" (the
-- oldest bucket the totals include) and "tm", "tr", "tb" (per unit), so a
-- decision reads a few fields instead of every bucket; and "hi", the
-- newest bucket charged, which tells when the expiry must move.
local TOTALS = { lo = true, tm = true, tr = true, tb = true, hi = true }

-- Sum per unit of the buckets still counting at now (index >= lo), the
-- bucket indices seen, and the stale fields to delete.
local function read_window(key, lo)
    local flat = redis.call('HGETALL', key)
    local sum, per, ks, stale = { 0, 0, 0 }, {}, {}, {}
    for j = 1, #flat, 2 do
        local f = flat[j]
        local u = UIDX[string.sub(f, 1, 1)]
        local k = tonumber(string.sub(f, 2))
        if TOTALS[f] then
            -- running totals: not a bucket
        elseif u == nil or k == nil or k < lo then
            stale[#stale + 1] = f
        else
            local n = tonumber(flat[j + 1])
            sum[u] = sum[u] + n
            if per[k] == nil then
                per[k] = { 0, 0, 0 }
                ks[#ks + 1] = k
            end
            per[k][u] = per[k][u] + n
        end
    end
    return sum, per, ks, stale
end

-- The usage of a window at bucket lo, from its running totals: buckets
-- that left the window since the last decision are subtracted and deleted
-- (usually none or one). First use, or idle for longer than the window:
-- counted from the buckets. Fills ws: sum (usage per unit), hi, and moved
-- (lo and the totals changed: window_commit writes them, charged or not,
-- which leaves them consistent with the buckets again).
local function window_totals(key, lo, ws)
    local h = redis.call('HMGET', key, 'lo', 'tm', 'tr', 'tb', 'hi')
    local old = tonumber(h[1])
    ws.hi = tonumber(h[5])
    if old ~= nil and lo <= old then
        ws.sum = { tonumber(h[2]) or 0, tonumber(h[3]) or 0, tonumber(h[4]) or 0 }
        return
    end
    local sum
    if old ~= nil and lo - old <= B + 1 then
        sum = { tonumber(h[2]) or 0, tonumber(h[3]) or 0, tonumber(h[4]) or 0 }
        local gone = {}
        for k = old, lo - 1 do
            for u = 1, 3 do gone[#gone + 1] = UNITS[u] .. I(k) end
        end
        local v = redis.call('HMGET', key, unpack(gone))
        for j = 1, #gone do
            local n = tonumber(v[j])
            if n then
                local u = UIDX[string.sub(gone[j], 1, 1)]
                sum[u] = sum[u] - n
            end
        end
        redis.call('HDEL', key, unpack(gone))
    else
        local counted, _per, _ks, stale = read_window(key, lo)
        sum = counted
        if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
    end
    ws.sum = sum
    ws.moved = true
end

-- After the decision: a charge adds the cost to bucket k (the current one)
-- and to the totals, in one HSET with "lo" when it moved and "hi" when it
-- rises; a refusal writes only a moved "lo" and its totals.
--
-- Expiry T + w + 1000 ms, set when "hi" rises (or the key has no "hi": new,
-- or written by an older script), not on every message. Bucket j counts
-- while t < (j+1)*w + T. Bucket hi was first charged at some t >= hi*w, and
-- the expiry then set, t + T + w + 1000 >= (hi+1)*w + T + 1000, outlives
-- every bucket j <= hi, i.e. every bucket in the key: a charge to bucket
-- k <= hi needs no new expiry; a charge to k > hi sets it again, at a t >=
-- k*w > the previous setting, so the expiry only ever moves later (even if
-- the clock steps back). A key with "hi" exists, so it has that expiry.
-- ws is shared by limits given the same key (never: limit names are
-- unique), which then behave as they did with one write per limit.
local function window_commit(kw, ws, lo, k, cost, costs, charged, ttl)
    local sum = ws.sum
    if not charged then
        if ws.moved then
            redis.call('HSET', kw, 'lo', I(lo), 'tm', I(sum[1]), 'tr', I(sum[2]), 'tb', I(sum[3]))
            if ws.hi == nil then redis.call('PEXPIRE', kw, I(ttl)) end
        end
        return
    end
    local ks = I(k)
    for u = 1, 3 do
        if cost[u] > 0 then
            redis.call('HINCRBY', kw, UNITS[u] .. ks, costs[u])
        end
    end
    local tm, tr, tb = I(sum[1] + cost[1]), I(sum[2] + cost[2]), I(sum[3] + cost[3])
    local rise = ws.hi == nil or k > ws.hi
    if ws.moved then
        if rise then
            redis.call('HSET', kw, 'lo', I(lo), 'tm', tm, 'tr', tr, 'tb', tb, 'hi', ks)
        else
            redis.call('HSET', kw, 'lo', I(lo), 'tm', tm, 'tr', tr, 'tb', tb)
        end
    elseif rise then
        redis.call('HSET', kw, 'tm', tm, 'tr', tr, 'tb', tb, 'hi', ks)
    else
        redis.call('HSET', kw, 'tm', tm, 'tr', tr, 'tb', tb)
    end
    if rise then
        ws.hi = k
        redis.call('PEXPIRE', kw, I(ttl))
    end
end

-- Time until enough of the oldest buckets stop counting that `need` units
-- of unit u are released (bucket k stops counting at (k+1)*w + T).
local function bucket_retry(per, ks, u, need, w, T, now)
    table.sort(ks)
    local released = 0
    for _, k in ipairs(ks) do
        released = released + per[k][u]
        if released >= need then
            local at = (k + 1) * w + T
            if at > now then return at - now end
            return 1
        end
    end
    return T
end

-- Time until enough members of the distinct set not in this message expire
-- (a member last seen at s is gone from s + T + 1 on).
local function distinct_retry(key, need, mine, nmine, T, now)
    local r = redis.call('ZRANGE', key, 0, need + nmine - 1, 'WITHSCORES')
    local released = 0
    for j = 1, #r, 2 do
        if not mine[r[j]] then
            released = released + 1
            if released >= need then
                local at = tonumber(r[j + 1]) + T + 1
                if at > now then return at - now end
                return 1
            end
        end
    end
    return T
end

-- Evidence keys get their expiry when they are created, and again at most
-- once a minute (EV_REFRESH), not on every message.
local EV_REFRESH = 60000

-- HINCRBY, but a hash never grows past maxf fields: the rest is "(other)".
-- Returns 'new' (the field was just created), 'old' or 'other'; a key it
-- creates gets its expiry. One command for a field already there.
local function capped_hincr(key, field, by, maxf, ttl)
    if redis.call('HINCRBY', key, field, by) ~= by then return 'old' end
    local n = redis.call('HLEN', key)
    if n == 1 then redis.call('PEXPIRE', key, ttl) end
    if n <= maxf then return 'new' end
    redis.call('HDEL', key, field)
    redis.call('HINCRBY', key, '(other)', by)
    return 'other'
end

-- First-seen time of a field just counted for the first time.
local function first_seen(key, field, now, ttl)
    if redis.call('HSETNX', key, field, I(now)) == 1 and redis.call('HLEN', key) == 1 then
        redis.call('PEXPIRE', key, ttl)
    end
end

-- LPUSH + LTRIM (once the list is longer than len); a list it creates gets
-- its expiry.
local function capped_push(key, value, len, ttl)
    local n = redis.call('LPUSH', key, value)
    if n == 1 then
        redis.call('PEXPIRE', key, ttl)
    end
    if n > len then
        redis.call('LTRIM', key, 0, len - 1)
    end
end

-- A message held on lockdown: its queue id into the relay's held set (30
-- days), as sg_store_held_add does. Returns 1 when recorded.
local function hold_qid(lockdown, key, flag, qid, ttl)
    if not lockdown or flag ~= '1' or qid == nil or qid == '' then return 0 end
    redis.call('SADD', key, qid)
    redis.call('PEXPIRE', key, ttl)
    return 1
end

-- The trace index of an account (issue 18): which message a ticket's
-- header sample is, for the whole evidence period.
--   ev:msg  hash "relay|qid" -> "t\tqid\tip\tlogin\tmsgid\tmailer\trelay\t
--           rcpts\tsize\taction\tdigest"
--   ev:mid  hash digest of the normalised Message-ID -> "relay|qid"
--   ev:t    zset "relay|qid" scored by t (its oldest member: where the
--           record starts)
-- Each call drops at most TRACE_TRIM entries older than `keep` and, over
-- trace_max, as many of the oldest: the work per message is bounded.
local TRACE_TRIM = 8
local function trace_drop(kmsg, kmid, kt, f)
    local rec = redis.call('HGET', kmsg, f)
    redis.call('ZREM', kt, f)
    if rec then
        redis.call('HDEL', kmsg, f)
        local dig = string.match(rec, '\t([^\t]*)$')
        if dig and dig ~= '' and redis.call('HGET', kmid, dig) == f then
            redis.call('HDEL', kmid, dig)
        end
    end
end

local function trace_index(kmsg, kmid, kt, now, field, a, action)
    local tmax, keep, ttl = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2]
    local dig, mid = ARGV[a + 3], ARGV[a + 4]
    if tmax == nil or tmax <= 0 then return end
    redis.call('HSET', kmsg, field, I(now) .. '\t' .. mid .. '\t' .. action .. '\t' .. dig)
    if dig ~= '' then redis.call('HSET', kmid, dig, field) end
    redis.call('ZADD', kt, I(now), field)
    local old = redis.call('ZRANGEBYSCORE', kt, '-inf', '(' .. I(now - keep),
                           'LIMIT', 0, TRACE_TRIM)
    for _, f in ipairs(old) do trace_drop(kmsg, kmid, kt, f) end
    local over = redis.call('ZCARD', kt) - tmax
    if over > 0 then
        if over > TRACE_TRIM then over = TRACE_TRIM end
        for _, f in ipairs(redis.call('ZRANGE', kt, 0, over - 1)) do
            trace_drop(kmsg, kmid, kt, f)
        end
    end
    redis.call('PEXPIRE', kmsg, ttl)
    redis.call('PEXPIRE', kmid, ttl)
    redis.call('PEXPIRE', kt, ttl)
end

local function decide()
    local now = now_ms()
    local charge_refused = ARGV[3] == '1'
    local account = ARGV[4]
    local ev_ttl = tonumber(ARGV[5])
    local recent_len = tonumber(ARGV[6])
    local maxf = tonumber(ARGV[7])
    local qid, ip, identity, mailer = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
    local msgid, from_dom, from_mis, relay = ARGV[12], ARGV[13], ARGV[14] == '1', ARGV[15]
    local cost = { tonumber(ARGV[16]), tonumber(ARGV[17]), tonumber(ARGV[18]) }
    local costs = { ARGV[16], ARGV[17], ARGV[18] }     -- the same, as sent (decimal)
    local L, H, D = tonumber(ARGV[19]), tonumber(ARGV[20]), tonumber(ARGV[21])
    local lbase, hbase = 21, 21 + 6 * L
    local dbase = hbase + H

    local lockdown = redis.call('HGET', KEYS[1], 'blocked') == '1'

    -- this message's distinct recipient hashes
    local hashes, mine = {}, {}
    for j = 1, H do
        local h = ARGV[hbase + j]
        if not mine[h] then
            mine[h] = true
            hashes[#hashes + 1] = h
        end
    end

    local over = nil                      -- {limit, unit, used, cap, retry}
    local best = { 0, 0, 0, 0 }           -- fullest: limit, unit, used, cap
    local fullest = -1
    local lim = {}
    local windows = {}

    for i = 1, L do
        local a = lbase + (i - 1) * 6
        local T = tonumber(ARGV[a + 1])
        local cap = { tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]),
                      tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]) }
        local w = math.ceil(T / B)
        local lo = math.floor((now - T) / w)
        local kw = KEYS[10 + 3 * i - 2]
        local kd = KEYS[10 + 3 * i - 1]
        local ws = windows[kw]
        if ws == nil then
            ws = {}
            window_totals(kw, lo, ws)
            windows[kw] = ws
        end
        local sum = ws.sum
        local x = { T = T, w = w, cap = cap, kw = kw, kd = kd, lo = lo, ws = ws,
                    warn_at = tonumber(ARGV[a + 6]), kwarn = KEYS[10 + 3 * i],
                    used = { sum[1], sum[2], sum[3], 0 },
                    c = { cost[1], cost[2], cost[3], 0 } }
        if cap[4] > 0 then
            redis.call('ZREMRANGEBYSCORE', kd, '-inf', '(' .. I(now - T))
            x.used[4] = redis.call('ZCARD', kd)
            for j0 = 1, #hashes, CHUNK do  -- unpack() is limited: chunks
                local sc = redis.call('ZMSCORE', kd,
                                      unpack(hashes, j0, math.min(j0 + CHUNK - 1, #hashes)))
                for j = 1, #sc do
                    if not sc[j] then x.c[4] = x.c[4] + 1 end
                end
            end
        end
        for u = 1, 4 do
            if cap[u] > 0 then
                local used, c = x.used[u], x.c[u]
                if over == nil and used + c > cap[u] then
                    local retry
                    if u == 4 then
                        if #hashes > cap[u] then
                            retry = 0
                        else
                            retry = distinct_retry(kd, used + c - cap[u], mine, #hashes, T, now)
                        end
                    elseif c > cap[u] then
                        retry = 0
                    else
                        local _sum, per, ks = read_window(kw, lo)   -- refusals only
                        retry = bucket_retry(per, ks, u, used + c - cap[u], w, T, now)
                    end
                    over = { i - 1, u - 1, used, cap[u], retry }
                end
                if over == nil and (used + c) / cap[u] > fullest then
                    fullest = (used + c) / cap[u]
                    best = { i - 1, u - 1, used + c, cap[u] }
                end
            end
        end
        lim[i] = x
    end

    -- commit: all limits passed, or strict mode charges refusals too
    local warn_mask = 0
    local charged = over == nil or charge_refused
    for i = 1, L do
        local x = lim[i]
        window_commit(x.kw, x.ws, x.lo, math.floor(now / x.w), cost, costs, charged,
                      x.T + x.w + 1000)
        if charged then
            if x.cap[4] > 0 and #hashes > 0 then
                local z = {}
                for j = 1, #hashes do
                    z[#z + 1] = I(now)
                    z[#z + 1] = hashes[j]
                    if #z >= 2 * CHUNK or j == #hashes then
                        redis.call('ZADD', x.kd, unpack(z))
                        z = {}
                    end
                end
                redis.call('PEXPIRE', x.kd, I(x.T + 1000))
            end
            if over == nil then
                for u = 1, 4 do
                    if x.cap[u] > 0 and x.used[u] + x.c[u] >= x.warn_at * x.cap[u] then
                        if redis.call('SET', x.kwarn, '1', 'NX', 'PX', I(x.T)) then
                            warn_mask = warn_mask + 2 ^ (i - 1)
                        end
                        break
                    end
                end
            end
        end
    end

    -- evidence, accepted or not
    local action = 'ok'
    if over ~= nil then
        action = 'over'
    elseif lockdown then
        action = 'lockdown'
    end
    local ttl = I(ev_ttl)
    local refreshed = redis.call('HGET', KEYS[2], 'ttl_ms')
    local refresh = not refreshed or now - tonumber(refreshed) >= EV_REFRESH
    if refresh then
        redis.call('HSET', KEYS[2], 'name', account, 'last_ms', I(now), 'ttl_ms', I(now))
        for j = 2, 9 do
            redis.call('PEXPIRE', KEYS[j], ttl)
        end
    else
        redis.call('HSET', KEYS[2], 'name', account, 'last_ms', I(now))
    end
    if ip == '' then ip = '(none)' end
    if mailer == '' then mailer = '(none)' end
    if capped_hincr(KEYS[3], ip, 1, maxf, ttl) == 'new' then
        first_seen(KEYS[4], ip, now, ttl)
    end
    if capped_hincr(KEYS[5], mailer, 1, maxf, ttl) == 'new' then
        first_seen(KEYS[6], mailer, now, ttl)
    end
    for j = 1, D do
        capped_hincr(KEYS[7], ARGV[dbase + j], 1, maxf, ttl)
    end
    if from_mis then
        redis.call('HINCRBY', KEYS[2], 'from_mismatch', 1)
        capped_push(KEYS[8], cjson.encode({ t = now, qid = qid, identity = identity,
            from_domain = from_dom, ip = ip }), 100, ttl)
    end
    -- the record's other members come JSON-encoded from the C side
    capped_push(KEYS[9], '{"t":' .. I(now) .. ',"action":"' .. action .. '","charged":' ..
        (charged and 'true' or 'false') .. ',' .. ARGV[dbase + D + 1] .. '}', recent_len, ttl)
    local hour = math.floor(now / HOUR)
    local fresh
    if over == nil then
        local hs = I(hour)
        fresh = redis.call('HINCRBY', KEYS[10], hs .. ':m', 1) == 1
        redis.call('HINCRBY', KEYS[10], hs .. ':r', costs[2])
    else
        fresh = redis.call('HINCRBY', KEYS[10], I(hour) .. ':x', 1) == 1
    end
    if fresh then                         -- a new hour: drop those past HIST_HOURS
        local old = {}
        for _, f in ipairs(redis.call('HKEYS', KEYS[10])) do
            local h = tonumber(string.match(f, '^(%d+):'))
            if h == nil or h <= hour - HIST_HOURS then old[#old + 1] = f end
        end
        if #old > 0 then redis.call('HDEL', KEYS[10], unpack(old)) end
        redis.call('PEXPIRE', KEYS[10], I(HIST_HOURS * HOUR))
    end

    if qid ~= '' then
        trace_index(KEYS[10 + 3 * L + 2], KEYS[10 + 3 * L + 3], KEYS[10 + 3 * L + 4], now,
                    relay .. '|' .. qid, dbase + D + 4, action)
    end

    local held = hold_qid(lockdown, KEYS[10 + 3 * L + 1], ARGV[dbase + D + 2], qid,
                          ARGV[dbase + D + 3])
    if over ~= nil then
        return { 1, over[1], over[2], over[3], over[4], over[5], 0,
                 lockdown and 1 or 0, now, 0, held }
    end
    return { 0, best[1], best[2], best[3], best[4], 0, warn_mask,
             lockdown and 1 or 0, now, 0, held }
end

local function usage()
    local now = now_ms()
    local L = tonumber(ARGV[3])
    local out = {}
    for i = 1, L do
        local T = tonumber(ARGV[3 + i])
        local w = math.ceil(T / B)
        local sum = read_window(KEYS[2 * i - 1], math.floor((now - T) / w))
        local d = redis.call('ZCOUNT', KEYS[2 * i], I(now - T), '+inf')
        out[#out + 1] = sum[1]
        out[#out + 1] = sum[2]
        out[#out + 1] = sum[3]
        out[#out + 1] = d
    end
    return out
end

local function lock()
    local owner, ttl = ARGV[3], tonumber(ARGV[4])
    local cur = redis.call('GET', KEYS[1])
    if ttl == 0 then
        if cur == owner then redis.call('DEL', KEYS[1]) end
        if cur == false or cur == owner then return 1 end
        return 0
    end
    if cur == owner then
        redis.call('PEXPIRE', KEYS[1], I(ttl))
        return 1
    end
    if cur then return 0 end
    redis.call('SET', KEYS[1], owner, 'PX', I(ttl))
    return 1
end

local function state_cas()
    local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') or 0
    if cur ~= tonumber(ARGV[3]) then
        return redis.call('HGETALL', KEYS[1])
    end
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[1], 'version', I(cur + 1), unpack(ARGV, 5))
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
    return cur + 1
end

-- implicit: the decision for an implicit identity (one no configured
-- account matches), with the same algorithm as decide, but all of it in ONE
-- hash and nothing else: no evidence keys, no distinct zset, no warn
-- marker. A flood of new envelope senders costs one small key each.
-- KEYS 1 state (read only: a lockdown set by hand)  2 the identity's hash
--   3 the relay's held set
-- ARGV 1 "implicit" 2 now|"" 3 charge_refused 0|1
--   4 cost messages 5 cost recipients 6 cost bytes 7 L limits 8 H hashes
--   then L x (field prefix (IP chars), window_ms, cap_msg, cap_rcpt,
--   cap_bytes, cap_distinct, warn_at), then H recipient hashes (hex),
--   then hold_on_lockdown 0|1, qid, held ttl ms (see decide)
-- Fields, p the limit's prefix (a tag of its name and window, from C):
--   p.."b"..k   "m,r,b": the units of bucket k (only buckets in use)
--   p.."w"      warned until (ms)
--   p.."d"..h   last seen (ms) of distinct recipient h (only with a cap)
-- Fields of buckets that no longer count, of members past the window and
-- of limits no longer configured are deleted when seen. Expiry: the
-- longest T + w + 1000 ms after the last charge (it never moves earlier),
-- which outlives every field (a bucket counts until (k+1)*w + T).
-- returns decide's 9 values, then 1 when the identity was new (no key),
-- then held 0|1.
local IP = 5

local function implicit()
    local now = now_ms()
    local charge_refused = ARGV[3] == '1'
    local cost = { tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]) }
    local L, H = tonumber(ARGV[7]), tonumber(ARGV[8])
    local hbase = 8 + 7 * L
    local key = KEYS[2]
    local lockdown = redis.call('HGET', KEYS[1], 'blocked') == '1'

    local hashes, mine = {}, {}
    for j = 1, H do
        local h = ARGV[hbase + j]
        if not mine[h] then
            mine[h] = true
            hashes[#hashes + 1] = h
        end
    end

    local lim, byp, ttl = {}, {}, 0
    for i = 1, L do
        local a = 8 + (i - 1) * 7
        local T = tonumber(ARGV[a + 2])
        local w = math.ceil(T / B)
        local x = { p = ARGV[a + 1], T = T, w = w, lo = math.floor((now - T) / w),
                    cap = { tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]),
                            tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]) },
                    warn_at = tonumber(ARGV[a + 7]), sum = { 0, 0, 0 }, per = {},
                    ks = {}, dist = {}, nd = 0, warned = 0 }
        lim[i] = x
        byp[x.p] = x
        if T + w + 1000 > ttl then ttl = T + w + 1000 end
    end

    local flat = redis.call('HGETALL', key)
    local isnew = #flat == 0
    local stale = {}
    for j = 1, #flat, 2 do
        local f, v = flat[j], flat[j + 1]
        local x = byp[string.sub(f, 1, IP)]
        local t = string.sub(f, IP + 1, IP + 1)
        local keep = false
        if x ~= nil and t == 'b' then
            local k = tonumber(string.sub(f, IP + 2))
            local m, r, b = string.match(v, '^(%d+),(%d+),(%d+)$')
            if k ~= nil and m ~= nil and k >= x.lo then
                local u = { tonumber(m), tonumber(r), tonumber(b) }
                for n = 1, 3 do x.sum[n] = x.sum[n] + u[n] end
                x.per[k] = u
                x.ks[#x.ks + 1] = k
                keep = true
            end
        elseif x ~= nil and t == 'w' then
            x.warned = tonumber(v) or 0
            keep = x.warned > now
        elseif x ~= nil and t == 'd' and x.cap[4] > 0 then
            local seen = tonumber(v)
            if seen ~= nil and seen >= now - x.T then
                x.dist[string.sub(f, IP + 2)] = seen
                x.nd = x.nd + 1
                keep = true
            end
        end
        if not keep then stale[#stale + 1] = f end
    end

    local over = nil
    local best = { 0, 0, 0, 0 }
    local fullest = -1
    for i = 1, L do
        local x = lim[i]
        x.used = { x.sum[1], x.sum[2], x.sum[3], x.nd }
        x.c = { cost[1], cost[2], cost[3], 0 }
        if x.cap[4] > 0 then
            for _, h in ipairs(hashes) do
                if x.dist[h] == nil then x.c[4] = x.c[4] + 1 end
            end
        end
        for u = 1, 4 do
            local cap = x.cap[u]
            if cap > 0 then
                local used, c = x.used[u], x.c[u]
                if over == nil and used + c > cap then
                    local retry
                    if c > cap or (u == 4 and #hashes > cap) then
                        retry = 0
                    elseif u == 4 then
                        local seen = {}
                        for h, s in pairs(x.dist) do
                            if not mine[h] then seen[#seen + 1] = s end
                        end
                        table.sort(seen)
                        local s = seen[used + c - cap]
                        retry = x.T
                        if s ~= nil then
                            retry = s + x.T + 1 - now
                            if retry < 1 then retry = 1 end
                        end
                    else
                        retry = bucket_retry(x.per, x.ks, u, used + c - cap, x.w, x.T, now)
                    end
                    over = { i - 1, u - 1, used, cap, retry }
                end
                if over == nil and (used + c) / cap > fullest then
                    fullest = (used + c) / cap
                    best = { i - 1, u - 1, used + c, cap }
                end
            end
        end
    end

    if #stale > 0 then
        for j0 = 1, #stale, CHUNK do
            redis.call('HDEL', key, unpack(stale, j0, math.min(j0 + CHUNK - 1, #stale)))
        end
    end
    local warn_mask = 0
    local charged = over == nil or charge_refused
    if charged then
        local set = {}
        for i = 1, L do
            local x = lim[i]
            local k = math.floor(now / x.w)
            local u = x.per[k] or { 0, 0, 0 }
            set[#set + 1] = x.p .. 'b' .. I(k)
            set[#set + 1] = I(u[1] + cost[1]) .. ',' .. I(u[2] + cost[2]) .. ',' ..
                            I(u[3] + cost[3])
            if x.cap[4] > 0 then
                for _, h in ipairs(hashes) do
                    set[#set + 1] = x.p .. 'd' .. h
                    set[#set + 1] = I(now)
                end
            end
            if over == nil and now >= x.warned then
                for u2 = 1, 4 do
                    if x.cap[u2] > 0 and x.used[u2] + x.c[u2] >= x.warn_at * x.cap[u2] then
                        set[#set + 1] = x.p .. 'w'
                        set[#set + 1] = I(now + x.T)
                        warn_mask = warn_mask + 2 ^ (i - 1)
                        break
                    end
                end
            end
        end
        for j0 = 1, #set, 2 * CHUNK do
            redis.call('HSET', key, unpack(set, j0, math.min(j0 + 2 * CHUNK - 1, #set)))
        end
        if redis.call('PTTL', key) < ttl then
            redis.call('PEXPIRE', key, I(ttl))
        end
    end
    local held = hold_qid(lockdown, KEYS[3], ARGV[hbase + H + 1], ARGV[hbase + H + 2],
                          ARGV[hbase + H + 3])
    if over ~= nil then
        return { 1, over[1], over[2], over[3], over[4], over[5], 0,
                 lockdown and 1 or 0, now, isnew and 1 or 0, held }
    end
    return { 0, best[1], best[2], best[3], best[4], 0, warn_mask,
             lockdown and 1 or 0, now, isnew and 1 or 0, held }
end

-- usage of an implicit identity: KEYS 1 its hash; ARGV 1 "iusage" 2 now|""
-- 3 L, then L x (prefix, window_ms). Returns 4 numbers per limit.
local function iusage()
    local now = now_ms()
    local L = tonumber(ARGV[3])
    local flat = redis.call('HGETALL', KEYS[1])
    local out = {}
    for i = 1, L do
        local p, T = ARGV[2 + 2 * i], tonumber(ARGV[3 + 2 * i])
        local w = math.ceil(T / B)
        local lo = math.floor((now - T) / w)
        local s = { 0, 0, 0, 0 }
        for j = 1, #flat, 2 do
            local f = flat[j]
            if string.sub(f, 1, IP) == p then
                local t = string.sub(f, IP + 1, IP + 1)
                if t == 'b' then
                    local k = tonumber(string.sub(f, IP + 2))
                    local m, r, b = string.match(flat[j + 1], '^(%d+),(%d+),(%d+)$')
                    if k ~= nil and m ~= nil and k >= lo then
                        s[1] = s[1] + tonumber(m)
                        s[2] = s[2] + tonumber(r)
                        s[3] = s[3] + tonumber(b)
                    end
                elseif t == 'd' and (tonumber(flat[j + 1]) or 0) >= now - T then
                    s[4] = s[4] + 1
                end
            end
        end
        for u = 1, 4 do out[#out + 1] = s[u] end
    end
    return out
end

local mode = ARGV[1]
if mode == 'decide' then return decide() end
if mode == 'implicit' then return implicit() end
if mode == 'iusage' then return iusage() end
if mode == 'usage' then return usage() end
if mode == 'lock' then return lock() end
if mode == 'state_cas' then return state_cas() end
return redis.error_reply('ERR sg_decide: unknown mode')
