-- reject.lua - `cap` messages accepted, then `over` refused with
-- 550 5.7.1 and the text reject_text.
-- -D socket=... -D libdir=... -D cap=N [-D over=M] -D reject_text=...
dofile(libdir .. "/lib.lua")
sg.run_plan("accept:" .. cap .. ",reject:" .. tostring(over or 2),
            sender or "<alice@example.com>", "REJ")
