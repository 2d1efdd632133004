-- hold.lua - `cap` messages accepted, then `over` accepted with a
-- quarantine request (Postfix: hold queue), reason hold_reason if given.
-- -D socket=... -D libdir=... -D cap=N [-D over=M] [-D hold_reason=...]
dofile(libdir .. "/lib.lua")
sg.run_plan("accept:" .. cap .. ",hold:" .. tostring(over or 2),
            sender or "<alice@example.com>", "HLD")
