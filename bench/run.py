#!/usr/bin/env python3
"""Pipeline benchmark: auoms-py replay beside `ausearch -i` on the same generated corpus, and the cost per stage.

    make bench                      # = .venv/bin/python bench/run.py
    bench/run.py --events 100000 --interleave 4 --no-eoe

The corpus comes from ../shared/bench/make_corpus.py (real captured events, deterministic). Timings on shared
machines are noisy: compare the side-by-side ratio in one run, not absolute figures across runs.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()
OUT = REPO / "bench" / "out"
sys.path.insert(0, str(REPO))


def make_corpus(events: int, seed: int, interleave: int, no_eoe: bool) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    name = f"corpus-{events}-s{seed}-i{interleave}{'-noeoe' if no_eoe else ''}.raw"
    path = OUT / name
    if not path.exists():
        cmd = [sys.executable, str(SHARED / "bench" / "make_corpus.py"), "--events", str(events), "--seed", str(seed),
               "--interleave", str(interleave), "-o", str(path)]
        if no_eoe:
            cmd.append("--no-eoe")
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    return path


def timed(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, cpu seconds, peak RSS MiB) of one child process writing to /dev/null."""
    start = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=devnull, stderr=devnull)
        _pid, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{cmd[0]} failed with {child.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def stage_costs(path: Path) -> list[tuple[str, float]]:
    """Seconds for cumulative stages in this process: parse, +fields, +assemble, +merge/interpret, +format."""
    from auoms_py.format import mstic
    from auoms_py.pipeline import Pipeline, UserDB
    from auoms_py.pipeline.assemble import Assembler
    from auoms_py.pipeline.parse import parse_line

    lines = path.read_bytes().decode("latin-1").splitlines()
    results = []

    start = time.perf_counter()
    parsed = [parse_line(line) for line in lines]
    results.append(("parse (line -> record)", time.perf_counter() - start))

    start = time.perf_counter()
    for record in parsed:
        record.fields()
    results.append(("split fields", time.perf_counter() - start))

    start = time.perf_counter()
    assembler = Assembler()
    events = []
    for record in parse_all(lines):
        events += assembler.add(record, 0.0)
    events += assembler.flush()
    results.append(("parse + assemble", time.perf_counter() - start))

    pipeline = Pipeline(UserDB(), log_time=True)
    start = time.perf_counter()
    out = []
    for line in lines:
        out += pipeline.feed_line(line)
    out += pipeline.flush()
    results.append(("parse + assemble + merge/interpret", time.perf_counter() - start))

    start = time.perf_counter()
    for records in out:
        for record in records:
            mstic.format_record(record)
    results.append(("format mstic (alone)", time.perf_counter() - start))
    return results


def parse_all(lines):
    from auoms_py.pipeline.parse import parse_line

    for line in lines:
        yield parse_line(line)


def count_events(path: Path) -> tuple[int, int]:
    ids = set()
    records = 0
    with open(path, "rb") as stream:
        for line in stream:
            records += 1
            start = line.find(b"audit(")
            ids.add(line[start:line.find(b")", start)])
    return len(ids), records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--interleave", type=int, default=2)
    parser.add_argument("--no-eoe", action="store_true")
    parser.add_argument("--skip-stages", action="store_true")
    args = parser.parse_args()

    corpus = make_corpus(args.events, args.seed, args.interleave, args.no_eoe)
    events, records = count_events(corpus)
    size_mb = corpus.stat().st_size / 1e6
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(f"corpus: {corpus.name}: {events} events, {records} records, {size_mb:.1f} MB")
    print()
    print("| command | wall s | cpu s | events/s | MB/s | peak RSS MiB | vs ausearch -i (wall) |")
    print("|---|---|---|---|---|---|---|")
    auoms = [str(REPO / ".venv" / "bin" / "auoms-py") if (REPO / ".venv/bin/auoms-py").exists() else "auoms-py"]
    runs = [
        ("ausearch -i (auditd 3.0.9, C)", ["ausearch", "-i", "--input", str(corpus)]),
        ("auoms-py replay --format mstic", auoms + ["replay", "--quiet", str(corpus)]),
        ("auoms-py replay --format json", auoms + ["replay", "--quiet", "--format", "json", str(corpus)]),
        ("auoms-py replay --format oms", auoms + ["replay", "--quiet", "--format", "oms", str(corpus)]),
    ]
    baseline = None
    for label, cmd in runs:
        wall, cpu, rss = timed(cmd)
        if baseline is None:
            baseline = wall
        print(f"| {label} | {wall:.2f} | {cpu:.2f} | {events / wall:,.0f} | {size_mb / wall:.1f} | {rss:.0f} | "
              f"{wall / baseline:.2f}x |")
    if not args.skip_stages:
        print()
        print("| stage (in process, cumulative where marked +) | seconds | records/s |")
        print("|---|---|---|")
        for label, seconds in stage_costs(corpus):
            print(f"| {label} | {seconds:.2f} | {records / seconds:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
