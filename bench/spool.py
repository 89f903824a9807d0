#!/usr/bin/env python3
"""Delivery and spool benchmark (docs/performance.md, "Delivery and spool").

    .venv/bin/python bench/spool.py                 # both parts
    .venv/bin/python bench/spool.py --events 50000 --part agent

Part 1, the spool alone: append throughput (put + flush) for batch sizes and fsync policies, and delivery
throughput (read + ack + cursor saves), with real messages: the mstic lines of the shared bench corpus.

Part 2, the agent: `auoms-py run` on the same corpus (file input, `once: true`) with a syslog output over TCP to a
sink that reads and discards, with the spool (fsync interval / always) and without it (`spool: false`, in memory):
wall and CPU seconds of the agent process until everything was delivered, events/s.

Timings on shared machines are noisy: compare the rows of one run.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from run import make_corpus  # noqa: E402  (bench/run.py: the shared corpus, generated once)


def corpus_messages(path: Path) -> list[bytes]:
    from auoms_py.format import mstic
    from auoms_py.pipeline import Pipeline, UserDB

    pipe = Pipeline(UserDB("/etc/passwd", "/etc/group"))
    out = []
    for line in path.read_bytes().decode("latin-1").splitlines():
        for event in pipe.feed_line(line, 0.0):
            out += [b for b in (mstic.format_record(r) for r in event) if b is not None]
    for event in pipe.flush():
        out += [b for b in (mstic.format_record(r) for r in event) if b is not None]
    return [m.encode("latin-1") for m in out]


def bench_spool(messages: list[bytes], directory: Path) -> list[tuple]:
    from auoms_py.spool import Spool, SpoolOptions

    rows = []
    total_bytes = sum(map(len, messages))
    for fsync in ("never", "interval", "always"):
        for batch in (1, 16, 256, 4096):
            if fsync == "always" and batch == 1:
                count = min(len(messages), 5000)  # one fsync per message: a few thousand say enough
            else:
                count = len(messages)
            msgs = messages[:count]
            size = sum(map(len, msgs))
            spool_dir = directory / f"s-{fsync}-{batch}"
            spool = Spool(str(spool_dir), SpoolOptions(max_bytes=4 << 30, fsync=fsync))
            spool.open()
            start = time.perf_counter()
            for i in range(0, count, batch):
                spool.put(msgs[i:i + batch])
                spool.flush()
            append = time.perf_counter() - start
            start = time.perf_counter()
            delivered = 0
            while True:
                first, got = spool.read(500)
                if not got:
                    break
                delivered += len(got)
                spool.ack(first + len(got))
                spool.save()
            deliver = time.perf_counter() - start
            spool.close()
            shutil.rmtree(spool_dir)
            assert delivered == count
            rows.append((fsync, batch, count, count / append, size / append / 1e6, append / (count / batch) * 1e6,
                         count / deliver))
    del total_bytes
    return rows


class Sink:
    """A TCP receiver that reads and discards; counts octet-counted frames."""

    def __init__(self):
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.port = self.server.getsockname()[1]
        self.bytes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        with conn:
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    return
                self.bytes += len(data)


def bench_agent(corpus: Path, events: int, directory: Path) -> list[tuple]:
    rows = []
    sink = Sink()
    variants = [("spool: false (memory)", False), ("spool, fsync interval", {"fsync": "interval"}),
                ("spool, fsync always", {"fsync": "always"}), ("spool, fsync never", {"fsync": "never"})]
    for label, spool in variants:
        run_dir = directory / label.split(",")[0].replace(" ", "_").replace(":", "") / (
            spool["fsync"] if spool else "memory")
        run_dir.mkdir(parents=True, exist_ok=True)
        output = {"name": "central", "type": "syslog", "format": "mstic", "address": f"tcp://127.0.0.1:{sink.port}",
                  "drain_timeout": 600, "queue_size": 10_000_000}
        output["spool"] = spool if spool else False
        config = {"input": {"type": "file", "path": str(corpus), "once": True}, "data_dir": str(run_dir / "data"),
                  "log_level": "warning", "metrics_interval": 0, "outputs": [output]}
        (run_dir / "auoms.yaml").write_text(yaml.safe_dump(config))
        before = sink.bytes
        start = time.perf_counter()
        with open(run_dir / "agent.log", "wb") as log:
            child = subprocess.Popen([sys.executable, "-m", "auoms_py", "run", "-c", str(run_dir / "auoms.yaml"),
                                      "--foreground"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            _pid, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"agent failed: {(run_dir / 'agent.log').read_text()[-2000:]}")
        cpu = usage.ru_utime + usage.ru_stime
        rows.append((label, wall, cpu, events / wall, (sink.bytes - before) / 1e6, usage.ru_maxrss / 1024))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--part", choices=("spool", "agent", "both"), default="both")
    ap.add_argument("--dir", help="where the spools go (default: a temporary directory under bench/out)")
    args = ap.parse_args()
    corpus = make_corpus(args.events, 1, 2, False)
    directory = Path(args.dir or tempfile.mkdtemp(prefix="spool-", dir=REPO / "bench" / "out"))
    print(f"# {platform.machine()} {os.cpu_count()} CPU, Python {platform.python_version()}, corpus {corpus.name}, "
          f"spools in {directory} ({subprocess.run(['df', '--output=fstype', str(directory)], capture_output=True, text=True).stdout.split()[-1]})")
    try:
        if args.part in ("spool", "both"):
            messages = corpus_messages(corpus)
            avg = sum(map(len, messages)) / len(messages)
            print(f"\n## spool alone: {len(messages)} mstic messages, {avg:.0f} bytes on average\n")
            print("| fsync | messages per flush | messages | append msg/s | append MB/s | us per flush | deliver msg/s |")
            print("|---|---|---|---|---|---|---|")
            for fsync, batch, count, rate, mbs, per_flush, deliver in bench_spool(messages, directory):
                print(f"| {fsync} | {batch} | {count:,} | {rate:,.0f} | {mbs:.1f} | {per_flush:,.0f} | {deliver:,.0f} |")
        if args.part in ("agent", "both"):
            print(f"\n## agent: `auoms-py run`, file input once, {args.events:,} events, syslog over TCP to a sink\n")
            print("| output queue | wall s | cpu s | events/s | MB sent | peak RSS MiB |")
            print("|---|---|---|---|---|---|")
            for label, wall, cpu, rate, mb, rss in bench_agent(corpus, args.events, directory):
                print(f"| {label} | {wall:.2f} | {cpu:.2f} | {rate:,.0f} | {mb:.1f} | {rss:.0f} |")
    finally:
        if not args.dir:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
