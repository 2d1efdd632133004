-- accept.lua - under the cap every message is accepted, none quarantined.
-- -D socket=... -D libdir=... [-D count=N] [-D sender=<...>]
dofile(libdir .. "/lib.lua")
sg.run_plan("accept:" .. tostring(count or 3), sender or "<alice@example.com>", "ACC")
