#!/usr/bin/env python3
"""Slow-connection attack on fieldsync-server, repeated, reporting the server's RSS after each round.

Each round opens N connections that finish the TLS handshake, send the start of an HTTP upgrade request and
then stall, waits until the server has cut them all (its --ws-timeout-ms), and reads VmRSS of the server
process. Memory that an attack leaves behind in allocator caches stays flat across rounds; a leak grows
with every round. Also runs one round of connections that stall before the TLS handshake.

usage: scripts/slow_attack_rss.py BUILD/bin/fieldsync-server [--rounds 5] [--connections 150]
Extra environment for the server (e.g. TCMALLOC_RELEASE_RATE=10) is passed through.
"""
import argparse
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def metrics(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    out = {}
    for name in (b"fieldsync_sessions", b"fieldsync_heap_allocated_bytes", b"fieldsync_heap_free_bytes"):
        m = re.search(rb"\n" + name + rb" ([0-9.e+]+)", data)
        out[name.decode()] = float(m.group(1)) if m else -1
    out["fieldsync_sessions"] -= 1  # this request's own connection
    return out


def sessions(port):
    return metrics(port)["fieldsync_sessions"]


def attack(port, n, tls):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    held = []
    for _ in range(n):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        if tls:
            s = ctx.wrap_socket(raw)
            s.sendall(b"GET /sync HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")  # and never the rest
            held.append(s)
        else:
            held.append(raw)
    return held


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=150)
    ap.add_argument("--timeout-ms", type=int, default=1000)
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="fieldsync-slow-attack-")
    proc = subprocess.Popen(
        [args.server, "--dev", "--dev-tokens", "--listen", "127.0.0.1:0", "--data-dir", data, "--threads", "2",
         "--tls-timeout-ms", str(args.timeout_ms), "--ws-timeout-ms", str(args.timeout_ms)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = None
    for line in proc.stdout:
        m = re.search(r"listening on wss://[^:]+:(\d+)/", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        sys.exit("server did not start")
    try:
        time.sleep(0.5)
        print(f"before      rss {rss_kib(proc.pid) / 1024:6.1f} MiB", flush=True)
        rounds = [("tls", True), ("tcp", False)] * args.rounds
        for i, (kind, tls) in enumerate(rounds, 1):
            held = attack(port, args.connections, tls)
            peak = rss_kib(proc.pid)
            deadline = time.time() + args.timeout_ms / 1000 * 3 + 10
            while time.time() < deadline and sessions(port) > 0:
                time.sleep(0.2)
            for s in held:
                s.close()
            time.sleep(0.5)
            m = metrics(port)
            print(f"round {i} ({kind}, {args.connections} stalled) peak {peak / 1024:6.1f} MiB, after cut "
                  f"{rss_kib(proc.pid) / 1024:6.1f} MiB (heap allocated "
                  f"{m['fieldsync_heap_allocated_bytes'] / 2**20:5.2f} MiB, tcmalloc free "
                  f"{m['fieldsync_heap_free_bytes'] / 2**20:5.2f} MiB; anon {rss_kib(proc.pid, 'RssAnon') / 1024:5.1f}, "
                  f"file {rss_kib(proc.pid, 'RssFile') / 1024:5.1f} MiB), sessions left {m['fieldsync_sessions']:.0f}",
                  flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        subprocess.run(["rm", "-rf", data])


if __name__ == "__main__":
    main()
