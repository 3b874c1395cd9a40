#!/usr/bin/env python3
"""A Graphite plaintext receiver for the StatsD benchmark: appends every line it is sent to
a file, so what each StatsD server flushed can be summed afterwards. Usage:
graphite_dump.py PORT FILE (listens on 127.0.0.1:PORT; prints "listening" when ready)."""
import socket
import sys
import threading

port, path = int(sys.argv[1]), sys.argv[2]
out = open(path, "ab", buffering=0)
lock = threading.Lock()


def serve(conn):
    with conn:
        while True:
            data = conn.recv(1 << 16)
            if not data:
                return
            with lock:
                out.write(data)


srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(16)
print("listening", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
