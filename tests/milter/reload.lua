-- reload.lua - one phase of the reload tests: the driver runs it, changes
-- the config and sends SIGUSR1, then runs it again with the next plan.
-- -D socket=... -D libdir=... -D plan="accept:2,tempfail:1" -D tag=R1
--   [-D tempfail_text=...]
dofile(libdir .. "/lib.lua")
sg.run_plan(plan, sender or "<alice@example.com>", tag or "RLD")
