#!/usr/bin/env python3
"""test_ovh_link.py API_ONLY WITH_STORE - the OVHcloud API client (ovh/)
links no store: `ldd API_ONLY` (a program using only sg_ovh) names no
libhiredis, while `ldd WITH_STORE` (the same probe with the workflow's
watcher) does, which shows the check can see it."""
import subprocess
import sys


def libs(binary):
    p = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise SystemExit(f"ldd {binary} failed: {p.stderr}")
    return p.stdout


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: test_ovh_link.py API_ONLY WITH_STORE")
    api_only, with_store = sys.argv[1:]
    out = libs(with_store)
    if "libhiredis" not in out:
        raise SystemExit(f"{with_store} links no libhiredis: the check sees nothing\n{out}")
    out = libs(api_only)
    if "libhiredis" in out:
        raise SystemExit(f"{api_only} (the API client alone) links libhiredis:\n{out}")
    print(f"ok: {api_only} has no libhiredis; {with_store} has it")


if __name__ == "__main__":
    main()
