#!/usr/bin/env python3
"""Fill the limit windows of miltload's accounts (user0..userN-1) as a day of
steady sending would: every bucket of the hourly and daily windows holds some
messages, so a decision meets full windows, not the near-empty ones of a
fresh Redis. Usage: prefill-windows.py REDIS_PORT [ACCOUNTS]"""
import hashlib
import socket
import sys
import time

port = int(sys.argv[1])
accounts = int(sys.argv[2]) if len(sys.argv) > 2 else 100
windows = (("hourly", 3600000), ("daily", 86400000))   # bench/run's LIMITS
sock = socket.create_connection(("127.0.0.1", port))
f = sock.makefile("rwb")


def command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    f.write(out)


now = int(time.time() * 1000)
n = 0
for i in range(accounts):
    tag = hashlib.sha1(("user%d" % i).encode()).hexdigest()
    for name, T in windows:
        w = -(-T // 60)
        cur = now // w
        fields = []
        for k in range(cur - 58, cur + 1):
            fields += ["m%d" % k, 3, "r%d" % k, 15]
        command("HSET", "sg:{%s}:w:%s:%d" % (tag, name, T), *fields)
        command("PEXPIRE", "sg:{%s}:w:%s:%d" % (tag, name, T), T + w + 1000)
        n += 2
f.flush()
for _ in range(n):
    line = f.readline()
    if line.startswith(b"-"):
        sys.exit("redis: " + line.decode().strip())
print("prefilled %d windows" % (n // 2))
