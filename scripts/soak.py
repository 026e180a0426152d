#!/usr/bin/env python3
"""Soak: the load generator's default shape against one fieldsync-server for an hour, restarting it every few
minutes, and what the server's memory, descriptors, WAL and push latency do over time (issue 22, section 4;
docs/PERFORMANCE.md, "Soak"). A script to run by hand, not a CI test.

It starts fieldsync-server (--dev --dev-tokens) on a fresh data directory and a fixed loopback port, then
`fieldsync-bench-load --only soak` against it: the `org` shape (1,000 reps alone in their territories, a
manager per 10 territories writing notes), writes paced at --rate transactions a second, every session
reconnecting whenever it is cut, and --reconnect-fraction of them going offline at random (writing on). Every
--restart-every minutes the server is stopped -- SIGTERM (a drain), and every --kill-every-th time SIGKILL --
and started again on the same store and port. Every --sample-every seconds it records the server's VmRSS and
open descriptors (/proc), the WAL's and the database's size, and the generator's latest push-to-ack figures
into a CSV. After the writes stop, the generator waits for every session to come back and catch up and checks
convergence (every replica holds exactly the acknowledged records of its scope, and a head-office bootstrap
all of them).

Targets: RSS and descriptors at the end no more than 10% above their level at --reference-min minutes; no
error line in the server's logs; every replica converged (the generator's --check). The level at a time T is
the median of the samples in the minute before T (before the restart due at T, if any), so with restarts
every 5 minutes both the 5-minute and the final level are of a server about 5 minutes old.

usage: nice -n 10 scripts/soak.py [--build build] [--minutes 60] [--restart-every 5] [--kill-every 3]
                                  [--reconnect-fraction 0.1] [--rate 200] [--csv FILE] [--keep]
                                  [-- extra fieldsync-bench-load arguments]
Exit status 0 when every target is met, 1 otherwise.
"""
import argparse
import csv
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# Server log lines that are errors: the server's own error events, and anything that is not one of its
# structured lines (an abort, a sanitizer report, a message from main() on a failed start).
ERROR_EVENTS = {"error", "fatal", "accept_error", "session_refused"}
STRUCTURED = re.compile(r"^fieldsync-server event=(\w+)")
REPORT_EVERY_S = 10  # the generator's --report-every


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def scrape(port, names):
    """Gauges from the server's GET /metrics (loopback needs no token); missing ones are None."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw) as s:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while chunk := s.recv(65536):
                    data += chunk
    except (OSError, ssl.SSLError):
        pass
    out = {}
    for name in names:
        m = re.search(rb"\n" + name.encode() + rb" ([0-9.e+-]+)", data)
        out[name] = float(m.group(1)) if m else None
    return out


class Server:
    """One fieldsync-server process after another on the same data directory and port."""

    def __init__(self, binary, data_dir, port, run_dir, extra):
        self.binary, self.data_dir, self.port, self.run_dir, self.extra = binary, data_dir, port, run_dir, extra
        self.proc = None
        self.instance = 0
        self.stops = []  # (instance, how, exit description)

    def start(self):
        self.instance += 1
        out = open(os.path.join(self.run_dir, f"server-{self.instance}.out"), "w")
        log = open(os.path.join(self.run_dir, f"server-{self.instance}.log"), "w")
        argv = [self.binary, "--dev", "--dev-tokens", "--data-dir", self.data_dir, "--listen",
                f"127.0.0.1:{self.port}"] + self.extra
        self.proc = subprocess.Popen(argv, stdout=out, stderr=log)
        out.close()
        log.close()
        deadline = time.time() + 60
        while time.time() < deadline:
            with open(os.path.join(self.run_dir, f"server-{self.instance}.out")) as f:
                if "listening on wss://" in f.read():
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"fieldsync-server exited at start ({self.proc.returncode}); see "
                                   f"{self.run_dir}/server-{self.instance}.log")
            time.sleep(0.05)
        raise RuntimeError("fieldsync-server did not listen within 60 s")

    def stop(self, how):
        """how: 'sigterm' (a drain: it must exit 0) or 'sigkill'."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
        try:
            rc = self.proc.wait(timeout=60)
            end = f"exit {rc}" if rc >= 0 else f"signal {-rc}"
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            end = "did not exit within 60 s of SIGTERM: killed"
        self.stops.append((self.instance, how, end))

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


class Generator:
    """fieldsync-bench-load --only soak, its stdout read in a thread."""

    def __init__(self, argv, run_dir):
        self.intervals = []  # (time received, the soak_interval object)
        self.figures = {}  # figure name -> JSON line of the final report
        self.out = open(os.path.join(run_dir, "load.out"), "w")
        self.err = open(os.path.join(run_dir, "load.log"), "w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.out.write(line)
            self.out.flush()
            if not line.startswith("{"):
                continue
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if "soak_interval" in j:
                self.intervals.append((time.time(), j["soak_interval"]))
            elif j.get("phase") == "soak":
                self.figures[j["figure"]] = j

    def latest(self):
        return self.intervals[-1][1] if self.intervals else {}


def error_lines(run_dir):
    """The error lines of every server instance's log, and the count of each session_close reason."""
    errors, reasons = [], {}
    for name in sorted(os.listdir(run_dir)):
        if not (name.startswith("server-") and name.endswith(".log")):
            continue
        with open(os.path.join(run_dir, name), errors="replace") as f:
            for line in f:
                m = STRUCTURED.match(line)
                if m is None or m.group(1) in ERROR_EVENTS:
                    errors.append(f"{name}: {line.rstrip()}")
                elif m.group(1) == "session_close":
                    r = line.rsplit("reason=", 1)[-1].strip().split("(")[0]
                    reasons[r] = reasons.get(r, 0) + 1
    return errors, reasons


def level(rows, key, t, window_s):
    """Median of `key` over the samples in (t - window_s, t]."""
    vals = [r[key] for r in rows if t - window_s < r["t_s"] <= t and r[key] not in (None, "")]
    return statistics.median(vals) if vals else None


def fmt(v, scale=1.0, digits=1):
    return "-" if v is None else f"{v / scale:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="build directory with bin/ (default build)")
    ap.add_argument("--bin-dir", help="where fieldsync-server and fieldsync-bench-load are (default BUILD/bin)")
    ap.add_argument("--minutes", type=float, default=60, help="length of the writes (default 60)")
    ap.add_argument("--restart-every", type=float, default=5, help="minutes between server restarts (default 5; 0: "
                    "never)")
    ap.add_argument("--kill-every", type=int, default=3, help="every Nth restart is a SIGKILL, the others SIGTERM "
                    "(default 3; 0: never)")
    ap.add_argument("--reconnect-fraction", type=float, default=0.1,
                    help="fraction of sessions going offline at random, every 60 s on average (default 0.1)")
    ap.add_argument("--rate", type=float, default=200, help="reps' transactions a second, all reps together; the "
                    "managers' notes (one a second each) come on top (default 200)")
    ap.add_argument("--sample-every", type=float, default=5, help="seconds between samples (default 5)")
    ap.add_argument("--reference-min", type=float, default=5, help="the level RSS and descriptors are compared to, "
                    "in minutes (default 5)")
    ap.add_argument("--csv", help="where the samples go (default RUN_DIR/soak.csv)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra fieldsync-server argument")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (data, logs) on success too")
    ap.add_argument("--smoke", action="store_true", help="behaviour only (the ctest): no error lines, clean "
                    "drains, convergence; RSS and descriptors are printed but not judged (too short to mean "
                    "anything)")
    ap.add_argument("load_args", nargs="*", help="extra fieldsync-bench-load arguments (after --)")
    args = ap.parse_args()

    bin_dir = args.bin_dir or os.path.join(args.build, "bin")
    server_bin, load_bin = os.path.join(bin_dir, "fieldsync-server"), os.path.join(bin_dir, "fieldsync-bench-load")
    for b in (server_bin, load_bin):
        if not os.access(b, os.X_OK):
            sys.exit(f"soak: {b} not found: build fieldsync-server and fieldsync-bench-load (Release) first")
    run_dir = tempfile.mkdtemp(prefix="fieldsync-soak-")
    data_dir = os.path.join(run_dir, "data")
    csv_path = args.csv or os.path.join(run_dir, "soak.csv")
    duration_s = args.minutes * 60
    restart_s = args.restart_every * 60
    window_s = min(60.0, restart_s / 2) if restart_s > 0 else 60.0
    port = free_port()
    print(f"soak: run directory {run_dir}, server on 127.0.0.1:{port}, {args.minutes:g} min of writes at "
          f"{args.rate:g} txns/s, restarts every {args.restart_every:g} min (SIGKILL every {args.kill_every} "
          f"restarts, SIGTERM otherwise)",
          flush=True)

    server = Server(server_bin, data_dir, port, run_dir, args.server_arg)
    gen = None
    rows = []
    events = []  # (t_s, what) of each restart
    try:
        server.start()
        gen = Generator([load_bin, "--only", "soak", "--server-port", str(port), "--ca",
                         os.path.join(data_dir, "dev-cert.pem"), "--seconds", str(duration_s), "--paced-rate",
                         str(args.rate), "--reconnect-fraction", str(args.reconnect_fraction), "--report-every",
                         str(REPORT_EVERY_S), "--check"]
                        + args.load_args, run_dir)
        t0 = time.time()
        restarts = 0
        next_restart = restart_s if restart_s > 0 else float("inf")
        next_sample = 0.0
        fields = ["t_s", "instance", "pid", "rss_kib", "rss_anon_kib", "heap_allocated_bytes", "heap_free_bytes",
                  "fds", "threads", "wal_bytes", "db_bytes", "sessions_open", "pushes_acked", "push_ack_p50_ms",
                  "push_ack_p99_ms", "reconnects", "event"]
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            while gen.proc.poll() is None:
                t = time.time() - t0
                if t >= next_sample:
                    pid = server.pid
                    last = gen.latest()
                    heap = ["fieldsync_heap_allocated_bytes", "fieldsync_heap_free_bytes"]
                    gauges = scrape(port, heap) if pid else {}
                    row = {"t_s": round(t, 1), "instance": server.instance, "pid": pid,
                           "rss_kib": proc_status_kib(pid, "VmRSS") if pid else None,
                           "rss_anon_kib": proc_status_kib(pid, "RssAnon") if pid else None,
                           "heap_allocated_bytes": gauges.get("fieldsync_heap_allocated_bytes"),
                           "heap_free_bytes": gauges.get("fieldsync_heap_free_bytes"),
                           "fds": fd_count(pid) if pid else None,
                           "threads": proc_status_kib(pid, "Threads") if pid else None,
                           "wal_bytes": file_size(os.path.join(data_dir, "central.db-wal")),
                           "db_bytes": file_size(os.path.join(data_dir, "central.db")),
                           "sessions_open": last.get("sessions_open"), "pushes_acked": last.get("pushes_acked"),
                           "push_ack_p50_ms": last.get("push_ack_p50_ms"),
                           "push_ack_p99_ms": last.get("push_ack_p99_ms"), "reconnects": last.get("reconnects"),
                           "event": ""}
                    rows.append(row)
                    w.writerow(row)
                    f.flush()
                    next_sample += args.sample_every
                # Restarts only while the writes run: the convergence at the end is against a steady server.
                if t >= next_restart and t < duration_s - 1:
                    restarts += 1
                    how = "sigkill" if args.kill_every > 0 and restarts % args.kill_every == 0 else "sigterm"
                    server.stop(how)
                    server.start()
                    events.append((round(t, 1), f"{how} #{restarts} -> instance {server.instance} "
                                   f"({time.time() - t0 - t:.1f} s down) {server.stops[-1][2]}"))
                    w.writerow({"t_s": round(t, 1), "instance": server.instance, "event": how})
                    print(f"soak: {events[-1][0]:7.1f} s  {events[-1][1]}", flush=True)
                    next_restart += restart_s
                time.sleep(0.2)
        gen.reader.join(timeout=10)
        load_rc = gen.proc.returncode
        server.stop("sigterm")
    finally:
        if gen is not None and gen.proc.poll() is None:
            gen.proc.kill()
            gen.proc.wait()
        server.stop("sigkill")

    # ---- Summary
    checkpoints = [min(args.reference_min * 60, duration_s)]
    while checkpoints[-1] + 600 < duration_s:
        checkpoints.append(checkpoints[-1] + 600)  # 5, 15, 25, ... minutes
    checkpoints = sorted({c for c in checkpoints if c < duration_s} | {duration_s})
    print(f"\nsoak: level at T = median of the samples in ({window_s:.0f} s before T, T]; push-to-ack from the "
          f"generator's {REPORT_EVERY_S:g} s intervals in that window (p50: median of theirs; p99: the highest)")
    print(f"{'T (min)':>8} {'server#':>7} {'RSS MiB':>8} {'anon MiB':>8} {'heap MiB':>8} {'fds':>5} {'threads':>7} "
          f"{'WAL MiB':>8} {'DB MiB':>8} {'sessions':>8} {'push p50 ms':>11} {'push p99 ms':>11}")
    levels = {}
    for c in checkpoints:
        inst = [r["instance"] for r in rows if c - window_s < r["t_s"] <= c]
        p50s = [j["push_ack_p50_ms"] for ts, j in gen.intervals
                if c - window_s < ts - t0 <= c and j.get("push_ack_p50_ms") is not None]
        p99s = [j["push_ack_p99_ms"] for ts, j in gen.intervals
                if c - window_s < ts - t0 <= c and j.get("push_ack_p99_ms") is not None]
        lv = {k: level(rows, k, c, window_s) for k in ("rss_kib", "rss_anon_kib", "heap_allocated_bytes", "fds",
                                                        "threads", "wal_bytes", "db_bytes", "sessions_open")}
        levels[c] = lv
        print(f"{c / 60:8.1f} {('-' if not inst else str(inst[-1])):>7} {fmt(lv['rss_kib'], 1024):>8} "
              f"{fmt(lv['rss_anon_kib'], 1024):>8} {fmt(lv['heap_allocated_bytes'], 2**20):>8} "
              f"{fmt(lv['fds'], 1, 0):>5} {fmt(lv['threads'], 1, 0):>7} {fmt(lv['wal_bytes'], 2**20):>8} "
              f"{fmt(lv['db_bytes'], 2**20):>8} {fmt(lv['sessions_open'], 1, 0):>8} "
              f"{fmt(statistics.median(p50s) if p50s else None):>11} {fmt(max(p99s) if p99s else None):>11}")
    peak_rss = max((r["rss_kib"] for r in rows if r["rss_kib"]), default=None)
    peak_fds = max((r["fds"] for r in rows if r["fds"]), default=None)
    peak_wal = max((r["wal_bytes"] for r in rows if r["wal_bytes"] is not None), default=None)
    print(f"peaks over all samples: RSS {fmt(peak_rss, 1024)} MiB, fds {peak_fds}, WAL {fmt(peak_wal, 2**20)} MiB")
    print(f"restarts: {len(events)}; server stops: " +
          ", ".join(f"#{i} {how}: {end}" for i, how, end in server.stops))

    errors, reasons = error_lines(run_dir)
    print("session_close reasons in the server logs: " +
          (", ".join(f"{k} x{v}" for k, v in sorted(reasons.items())) or "none"))
    ref, end = levels[checkpoints[0]], levels[checkpoints[-1]]
    verdicts = []

    def within(key, name):
        a, b = ref[key], end[key]
        if a is None or b is None or len(checkpoints) < 2:
            verdicts.append((False, f"{name}: no level at {checkpoints[0] / 60:g} min and at the end (the run must be "
                             f"longer than --reference-min)"))
            return
        verdicts.append((b <= a * 1.10, f"{name} at the end {b / a:.3f} x its level at {checkpoints[0] / 60:g} min "
                         f"({fmt(a, 1024 if key == 'rss_kib' else 1)} -> {fmt(b, 1024 if key == 'rss_kib' else 1)}"
                         f"{' MiB' if key == 'rss_kib' else ''}; target <= 1.10)"))

    if not args.smoke:
        within("rss_kib", "RSS")
        within("fds", "descriptors")
    verdicts.append((not errors, f"error lines in the server logs: {len(errors)}"))
    for line in errors[:5]:
        print("  " + line)
    graceful_bad = [s for s in server.stops if s[1] == "sigterm" and s[2] != "exit 0"]
    verdicts.append((not graceful_bad, "every SIGTERM drained and exited 0" if not graceful_bad else
                     f"SIGTERM stops that did not exit 0: {graceful_bad}"))
    conv = gen.figures.get("replicas_converged")
    hq = gen.figures.get("head_office_records")
    written = gen.figures.get("txns_written")
    conv_note = (f"{conv['value']:.0f} replicas converged ({conv.get('note', '')}); " if conv else "no convergence "
                 "figure; ") + (f"head-office bootstrap {hq['value']:.0f} records ({hq.get('note', '')}); "
                                if hq else "") + (f"txns {written['value']:.0f} written: {written.get('note', '')}; "
                                                  if written else "")
    verdicts.append((load_rc == 0, f"convergence (generator --check exit {load_rc}): {conv_note}"
                     f"see {run_dir}/load.log"))
    ok = all(v for v, _ in verdicts)
    print()
    for v, what in verdicts:
        print(f"{'PASS' if v else 'FAIL'}  {what}")
    print(f"\nsoak: {'PASS' if ok else 'FAIL'}; samples in {csv_path}")
    if ok and args.smoke and not args.keep and not args.csv:
        shutil.rmtree(run_dir, ignore_errors=True)  # a passing smoke run leaves nothing behind
    else:
        if ok and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)  # the logs and CSV stay, the store goes
        print(f"soak: logs in {run_dir}" + ("" if ok and not args.keep else f", data in {data_dir}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
