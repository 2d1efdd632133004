-- tempfail.lua - `cap` messages accepted, then `over` refused with
-- 451 4.7.1 and a text naming the limit (tempfail_text, with %RETRY% for
-- the retry-after duration).
-- -D socket=... -D libdir=... -D cap=N [-D over=M] -D tempfail_text=...
dofile(libdir .. "/lib.lua")
sg.run_plan("accept:" .. cap .. ",tempfail:" .. tostring(over or 2),
            sender or "<alice@example.com>", "TMP")
