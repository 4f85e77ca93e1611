#!/usr/bin/env python3
"""Memory per idle keep-alive connection of an HTTP server.

Opens N connections (default 10,000) to HOST:PORT, sends one request on each
and reads its response, so every connection is a keep-alive connection past
its first request, then reports how much the resident memory (RSS) of the
server grew, divided by N. The server is given by PID; the RSS of its child
processes counts too (nginx's workers).

    bench/http-idle-memory.py --port 18481 --pid "$(pgrep -f static_server)"

Used the same way for kinema and nginx (bench/http-throughput.sh starts both;
bench/http-idle-memory.sh runs this against each). Raise the open-file limit
first if N is large: this script raises its own soft limit to the hard one.
"""

import argparse
import os
import resource
import socket
import sys
import time


def rss_bytes(pid):
    """RSS of pid and all its descendants, in bytes."""
    total = 0
    pids = [pid]
    seen = set()
    while pids:
        current = pids.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except FileNotFoundError:
            continue
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pids.extend(int(child) for child in children.read().split())
        except FileNotFoundError:
            pass
    return total


def read_response(sock):
    """Reads one response with a Content-Length body; raises on anything else."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed before responding")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise ValueError("response without content-length")
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed mid-body")
        body += chunk
    return head.split(b"\r\n")[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True, help="the server's process id")
    parser.add_argument("--path", default="/playlist.m3u8", help="what each connection requests once")
    parser.add_argument("-n", "--connections", type=int, default=10_000)
    parser.add_argument("--label", default="server")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.connections + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if hard < args.connections + 100:
            sys.exit(f"http-idle-memory: open-file limit {hard} is below {args.connections} connections")

    request = f"GET {args.path} HTTP/1.1\r\nHost: {args.host}\r\n\r\n".encode()
    # Warm up: let the server reach its steady state (allocator arenas,
    # runtime structures) so the growth measured is per connection.
    for _ in range(200):
        with socket.create_connection((args.host, args.port)) as sock:
            sock.sendall(request)
            read_response(sock)
    time.sleep(0.5)
    before = rss_bytes(args.pid)

    sockets = []
    started = time.monotonic()
    for i in range(args.connections):
        sock = socket.create_connection((args.host, args.port))
        sock.sendall(request)
        status = read_response(sock)
        if not status.startswith(b"HTTP/1.1 200"):
            sys.exit(f"http-idle-memory: connection {i}: {status!r}")
        sockets.append(sock)
    # Let the server settle (freed per-request buffers returned to its allocator).
    time.sleep(1.0)
    after = rss_bytes(args.pid)
    # Every connection must still be open: a server that dropped them
    # would look cheap.
    alive = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            alive += 1 if sock.recv(1) != b"" else 0
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    for sock in sockets:
        sock.close()
    growth = after - before
    print(
        f"{args.label}: {args.connections} idle keep-alive connections ({alive} still open) "
        f"in {time.monotonic() - started:.1f}s: RSS {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB, "
        f"{growth / args.connections:.0f} B per connection"
    )
    if alive != args.connections:
        sys.exit(f"http-idle-memory: only {alive} of {args.connections} connections stayed open")


if __name__ == "__main__":
    main()
