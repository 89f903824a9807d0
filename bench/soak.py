#!/usr/bin/env python3
"""Soak: the real agent under a steady exec rate for a long time, its RSS and CPU sampled; RSS must stay flat.

    .venv/bin/python bench/soak.py [--seconds 3600] [--rate 100] [--warmup 300] [--input multicast]

A generator process runs `/bin/true MARKER` `--rate` times a second, evenly spaced, for `--seconds`; one audit rule
(keyed, `-F ppid=<generator>`) makes the kernel log exactly those execs. The agent (`python -m auoms_py run`, the
shipped filters, the process tree on, self-metric events every 60 s) reads them (multicast by default: the audit
pid stays free for other runs on the machine; `--input netlink` makes the agent the audit daemon) and sends MSTIC
lines over TCP with octet counting, through its durable spool, to a receiver in this process that counts them.

Every `--sample` seconds: the agent's RSS (VmRSS) and CPU seconds, execs run, lines received. Reported: RSS at the
end of the warm-up and at the end, the growth between them, the least-squares slope after the warm-up (MiB per
hour), peak RSS, mean CPU %, execs vs AUOMS_EXECVE lines received. Results: bench/out/soak-<time>/ (samples.csv,
results.json, agent.log). Root only; the kernel is left as found (tests/audit_kernel.py's lease and keyed rule).

`soak()` is also what the short CI version runs (tests/service/test_service_kernel.py,
test_short_soak_rss_stays_flat_after_warm_up).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
sys.path.insert(0, str(REPO))

from tests.audit_kernel import KernelRules, audit_state  # noqa: E402

GENERATOR = r"""
import os, sys, time
rate, seconds, marker = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
sys.stdin.readline()                      # go (the rule on our pid is in place)
argv = ["/bin/true", marker]
start = time.monotonic()
n = 0
while True:
    due = start + n / rate                # evenly spaced; a late exec does not shift the ones after it
    now = time.monotonic()
    if due - start >= seconds:
        break
    if due > now:
        time.sleep(due - now)
    pid = os.posix_spawn("/bin/true", argv, {})
    os.waitpid(pid, 0)
    n += 1
print(n, flush=True)
"""


class OctetCountingReceiver:
    """A TCP syslog receiver (RFC 6587 octet counting) that counts what it gets: AUOMS_EXECVE lines carrying the
    marker, AUOMS_METRIC and AUOMS_STATUS lines. Keeps the last self-metric lines for the report."""

    def __init__(self, marker: str):
        self.marker = marker.encode()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.execs = 0
        self.metrics = 0
        self.status = 0
        self.messages = 0
        self.last_status = b""
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.5)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    return
                buf += data
                while True:
                    space = buf.find(b" ")
                    if space < 0:
                        break
                    length = int(buf[:space])
                    end = space + 1 + length
                    if len(buf) < end:
                        break
                    self._count(buf[space + 1:end])
                    buf = buf[end:]

    def _count(self, message: bytes) -> None:
        self.messages += 1
        body = message[message.find(b"type="):]
        if body.startswith(b"type=AUOMS_EXECVE ") and self.marker in body:
            self.execs += 1
        elif body.startswith(b"type=AUOMS_METRIC "):
            self.metrics += 1
        elif body.startswith(b"type=AUOMS_STATUS "):
            self.status += 1
            self.last_status = body

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def proc_sample(pid: int) -> tuple[int, float]:
    """(RSS KiB, CPU seconds) of a process."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return rss, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def agent_counts(workdir: Path) -> dict:
    """From the agent's metrics.json (rewritten every 5 s): every record it read (the soak's and, through the
    multicast group, whatever else the machine's audit rules produce) and the process tree's size."""
    try:
        snap = json.loads((workdir / "data" / "metrics.json").read_text())
    except (OSError, ValueError):
        return {"records": 0, "tree": 0}
    return {"records": snap["input"].get("records", 0), "tree": snap.get("filters", {}).get("process_tree_size", 0)}


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if not var:
        return 0.0
    return sum((t - mx) * (v - my) for t, v in points) / var * 3600


def soak(workdir: Path, *, seconds: float, rate: float, warmup: float, sample: float = 10.0,
         input_type: str = "multicast", progress=None) -> dict:
    """Run one soak; returns the results (also written to workdir/results.json) and writes workdir/samples.csv."""
    workdir.mkdir(parents=True, exist_ok=True)
    key = f"soak-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    marker = f"soak-{uuid.uuid4().hex[:8]}"
    receiver = OctetCountingReceiver(marker)
    config = {
        "input": {"type": input_type, **({"backlog_limit": 8192} if input_type == "netlink" else {})},
        "filters": str(REPO / "conf" / "filters.yaml"),
        "data_dir": str(workdir / "data"),
        "metrics_interval": 60,
        "log_file": str(workdir / "agent.log"),
        "outputs": [{"name": "central", "type": "syslog", "format": "mstic",
                     "address": f"tcp://127.0.0.1:{receiver.port}"}],
    }
    (workdir / "auoms.yaml").write_text(json.dumps(config, indent=1))
    log_path = workdir / "agent.log"
    samples: list[dict] = []
    with audit_state(enabled=1, backlog_limit=8192), KernelRules(key) as rules:
        agent = subprocess.Popen([sys.executable, "-m", "auoms_py", "run", "-c", str(workdir / "auoms.yaml"),
                                  "--foreground"], cwd=REPO, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=open(workdir / "agent.stderr", "wb"))
        generator = None
        try:
            deadline = time.monotonic() + 120
            while "started: " not in (log_path.read_text() if log_path.exists() else ""):
                if agent.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("agent did not start:\n" + (log_path.read_text() if log_path.exists() else "")
                                       + (workdir / "agent.stderr").read_text())
                time.sleep(0.1)
            generator = subprocess.Popen([sys.executable, "-c", GENERATOR, str(rate), str(seconds), marker],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            rules.add(f"-a always,exit -F arch=b64 -S execve -F ppid={generator.pid}")
            generator.stdin.write("go\n")
            generator.stdin.flush()
            start = time.monotonic()
            cpu0 = proc_sample(agent.pid)[1]

            def take_sample(elapsed: float) -> dict:
                rss, cpu = proc_sample(agent.pid)
                return {"t": round(elapsed, 1), "rss_kib": rss, "cpu_s": round(cpu - cpu0, 2),
                        "received": receiver.execs, **agent_counts(workdir)}
            next_sample = start
            while generator.poll() is None:
                now = time.monotonic()
                if now >= next_sample:
                    if agent.poll() is not None:
                        raise RuntimeError(f"agent died during the soak:\n{log_path.read_text()[-3000:]}")
                    samples.append(take_sample(now - start))
                    if progress:
                        progress(samples[-1])
                    next_sample += sample
                time.sleep(min(1.0, max(0.0, next_sample - time.monotonic())))
            execs = int(generator.stdout.readline() or 0)
            generator.wait()
            elapsed = time.monotonic() - start
            settle = time.monotonic() + 60
            while receiver.execs < execs and time.monotonic() < settle:
                time.sleep(0.5)
            samples.append(take_sample(time.monotonic() - start))
        finally:
            if generator is not None and generator.poll() is None:
                generator.kill()
                generator.wait()
            if agent.poll() is None:
                agent.terminate()
                try:
                    agent.wait(60)
                except subprocess.TimeoutExpired:
                    agent.kill()
                    agent.wait()
            receiver.close()
    with open(workdir / "samples.csv", "w") as f:
        f.write("seconds,rss_kib,cpu_s,received,records,tree\n")
        for s in samples:
            f.write(f"{s['t']},{s['rss_kib']},{s['cpu_s']},{s['received']},{s['records']},{s['tree']}\n")
    after = [s for s in samples if s["t"] >= warmup]
    at_warmup = after[0] if after else samples[-1]
    end = samples[-1]
    cpu_after = (end["cpu_s"] - at_warmup["cpu_s"]) / max(end["t"] - at_warmup["t"], 1e-9)
    results = {
        "seconds": round(elapsed, 1), "rate": rate, "input": input_type, "warmup_s": warmup, "sample_s": sample,
        "execs": execs, "received": receiver.execs, "metric_events": receiver.metrics,
        "status_events": receiver.status,
        "rss_start_mib": round(samples[0]["rss_kib"] / 1024, 1),
        "rss_at_warmup_mib": round(at_warmup["rss_kib"] / 1024, 1),
        "rss_end_mib": round(end["rss_kib"] / 1024, 1),
        "rss_peak_mib": round(max(s["rss_kib"] for s in samples) / 1024, 1),
        "rss_growth_after_warmup_mib": round((end["rss_kib"] - at_warmup["rss_kib"]) / 1024, 2),
        "rss_max_after_warmup_mib": round(max(s["rss_kib"] for s in after or samples) / 1024, 1),
        "rss_slope_mib_per_h": round(slope_per_hour([(s["t"], s["rss_kib"] / 1024) for s in after]), 2),
        # settling (tree, caches, allocator arenas) shows in the first half; a leak keeps the second half rising
        "rss_slope_second_half_mib_per_h": round(slope_per_hour(
            [(s["t"], s["rss_kib"] / 1024) for s in after if s["t"] >= (warmup + end["t"]) / 2]), 2),
        "cpu_percent_mean": round(100 * end["cpu_s"] / max(end["t"], 1e-9), 1),
        "cpu_percent_after_warmup": round(100 * cpu_after, 1),
        "records": end["records"], "other_records": max(0, end["records"] - 8 * execs),
        "tree_max": max(s["tree"] for s in samples),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, kernel {platform.release()}",
    }
    (workdir / "results.json").write_text(json.dumps(results, indent=1))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3600.0)
    parser.add_argument("--rate", type=float, default=100.0, help="execs per second (default 100)")
    parser.add_argument("--warmup", type=float, default=300.0, help="seconds before RSS is taken as settled")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--input", choices=("multicast", "netlink"), default="multicast")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (kernel audit)")
    workdir = OUT / f"soak-{int(time.time())}"

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")  # unwinds through soak()'s cleanup: agent stopped, rule deleted

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)  # a shell starting us in the background may have set it to ignore

    def progress(s: dict) -> None:
        print(f"{s['t']:8.0f} s  rss {s['rss_kib'] / 1024:7.1f} MiB  cpu {s['cpu_s']:8.1f} s  received "
              f"{s['received']:,}  records {s['records']:,}  tree {s['tree']:,}", flush=True)

    r = soak(workdir, seconds=args.seconds, rate=args.rate, warmup=args.warmup, sample=args.sample,
             input_type=args.input, progress=progress)
    print(f"\nsoak: {r['seconds']:g} s at {r['rate']:g} execs/s ({r['input']}), {r['machine']}; results in {workdir}")
    print("| execs | received | RSS start | RSS after warm-up | RSS end | growth after warm-up | slope "
          "| slope, second half | peak RSS | CPU mean |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {r['execs']:,} | {r['received']:,} | {r['rss_start_mib']} MiB | {r['rss_at_warmup_mib']} MiB | "
          f"{r['rss_end_mib']} MiB | {r['rss_growth_after_warmup_mib']:+} MiB | {r['rss_slope_mib_per_h']:+} MiB/h | "
          f"{r['rss_slope_second_half_mib_per_h']:+} MiB/h | {r['rss_peak_mib']} MiB | {r['cpu_percent_mean']} % |")
    print(f"self-metric events received: AUOMS_METRIC {r['metric_events']}, AUOMS_STATUS {r['status_events']}; "
          f"records read {r['records']:,} ({r['other_records']:,} not the soak's); process tree at most "
          f"{r['tree_max']:,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
