#!/usr/bin/env python3
"""Hold N TCP connections to HOST:PORT that send nothing, from SOURCES, for SECS seconds.

Whenever the agent closes one (at its connection cap, or when its header deadline passes),
it is opened again about a second later (REOPEN_SECS, give or take half, so the reopens do
not march in step), so the agent keeps facing N silent sockets without the flooder turning
into a connect loop that measures only CPU contention. Prints how many connects were made
and how many were closed by the far end.
usage: silent_sockets.py HOST PORT N SECS [SOURCES] [REOPEN_SECS]
SOURCES: comma-separated local addresses the N sockets are spread over (127.0.0.3).
"""
import heapq
import random
import selectors
import socket
import sys
import time

host, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sources = (sys.argv[5] if len(sys.argv) > 5 else "127.0.0.3").split(",")
reopen_secs = float(sys.argv[6]) if len(sys.argv) > 6 else 1.0
sel = selectors.DefaultSelector()
connects = closed = 0


def open_one():
    global connects
    s = socket.socket()
    s.setblocking(False)
    s.bind((sources[connects % len(sources)], 0))
    try:
        s.connect((host, port))
    except BlockingIOError:
        pass
    sel.register(s, selectors.EVENT_READ)
    connects += 1


for _ in range(n):
    open_one()
end = time.monotonic() + secs
reopen = []  # when each closed socket is opened again (a heap)
while time.monotonic() < end:
    now = time.monotonic()
    while reopen and reopen[0] <= now:
        heapq.heappop(reopen)
        open_one()
    for key, _ in sel.select(timeout=0.05):
        s = key.fileobj
        try:
            data = s.recv(1)
        except OSError:
            data = b""
        if not data:
            sel.unregister(s)
            s.close()
            closed += 1
            heapq.heappush(reopen, time.monotonic() + reopen_secs * random.uniform(0.5, 1.5))
print(f"silent sockets: {n} held from {len(sources)} address(es), {connects} connects, {closed} closed by the agent")
