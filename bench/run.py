#!/usr/bin/env python3
"""Pipeline benchmark: auoms-py replay beside `ausearch -i` on the same generated corpus, and the cost per stage.

    make bench                      # = .venv/bin/python bench/run.py
    bench/run.py --events 100000 --interleave 4 --no-eoe

The corpus comes from ../shared/bench/make_corpus.py (real captured events, deterministic). Timings on shared
machines are noisy: compare the side-by-side ratio in one run, not absolute figures across runs. Replay is timed on
the interpreter of .venv and, when that is another one, on Debian's python3, which the .deb package runs on (see
debian_python_venv).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
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
    """CPU seconds of the pipeline's stages in this process, each measured alone on the same records."""
    from auoms_py.format import mstic
    from auoms_py.pipeline import Pipeline, UserDB
    from auoms_py.pipeline.assemble import Assembler
    from auoms_py.pipeline.interpret import Interpreter
    from auoms_py.pipeline.merge import FastMerger, Merger
    from auoms_py.pipeline.parse import parse_lines

    from auoms_py.cli import tune_gc

    tune_gc()  # collect as replay does: with Python's default, scans of the records kept here would be charged
    lines = path.read_bytes().decode("latin-1").split("\n")  # (not splitlines: it also splits at 0x1D, 0x85...)
    if lines[-1] == "":
        lines.pop()
    results = []
    clock = time.process_time

    batches = [lines[i:i + 400] for i in range(0, len(lines), 400)]  # about replay's 64 KiB batches
    start = clock()
    record_batches = [parse_lines(batch) for batch in batches]
    results.append(("parse (lines -> records)", clock() - start))

    start = clock()
    assembler = Assembler()
    events = []
    for records in record_batches:
        events += assembler.add_all(records, None, 0.0)
    events += assembler.flush()
    results.append(("assemble (records -> events)", clock() - start))

    for label, merger_class in (("merge + interpret, general path only", Merger),
                                ("merge + interpret, fast path", FastMerger)):
        merger = merger_class(Interpreter(UserDB()))
        out = None  # the previous path's output is freed here, not inside the next measurement
        start = clock()
        out = [merger.event_records(event) for event in events]
        results.append((label, clock() - start))

    start = clock()
    for i in range(0, len(out), 1000):
        mstic.format_lines(out[i:i + 1000])
    results.append(("format mstic", clock() - start))

    pipeline = Pipeline(UserDB(), log_time=True)
    start = clock()
    for batch in batches:
        mstic.format_lines(pipeline.feed_lines(batch))
    mstic.format_lines(pipeline.flush())
    results.append(("whole pipeline + mstic, in process", clock() - start))
    return results


def count_events(path: Path) -> tuple[int, int]:
    ids = set()
    records = 0
    with open(path, "rb") as stream:
        for line in stream:
            records += 1
            start = line.find(b"audit(")
            ids.add(line[start:line.find(b")", start)])
    return len(ids), records


def compile_byte_code(tree: Path) -> None:
    """Byte code compiled ahead, as an installed package has it. The environment may say PYTHONDONTWRITEBYTECODE:
    then every run of an edited (or exported) tree would compile its modules again, 40 ms of start-up here."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "auoms_py")], check=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
                   stdout=subprocess.DEVNULL)


DEBIAN_PYTHON = Path("/usr/bin/python3")


def debian_python_venv() -> Path | None:
    """A virtual environment of Debian's python3, the interpreter the .deb package runs the agent on
    (packaging/build-deb.sh) and `make` picks on a fresh Debian 12, made once under bench/out/; None when this
    benchmark already runs on it, or there is none. A development machine may put another CPython 3.11 first on
    PATH (here pyenv's, built without profile-guided and link-time optimization: replay is ~1.25x slower on it), so
    the benchmark shows both."""
    if not DEBIAN_PYTHON.exists() or os.path.realpath(DEBIAN_PYTHON) == os.path.realpath(sys._base_executable):
        return None
    venv = OUT / "venv-debian-python3"
    python = venv / "bin" / "python"
    if not (venv / "bin" / "auoms-py").exists():
        subprocess.run([str(DEBIAN_PYTHON), "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", str(REPO)],
                       check=True)
    return venv


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--interleave", type=int, default=2)
    parser.add_argument("--no-eoe", action="store_true")
    parser.add_argument("--skip-stages", action="store_true")
    parser.add_argument("--no-debian-python", action="store_true", help="leave out the rows of Debian's python3")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of all commands, one after the other; the "
                        "table gives each command's median (default 3)")
    args = parser.parse_args()

    corpus = make_corpus(args.events, args.seed, args.interleave, args.no_eoe)
    compile_byte_code(REPO)
    debian = None if args.no_debian_python else debian_python_venv()
    events, records = count_events(corpus)
    size_mb = corpus.stat().st_size / 1e6
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(f"corpus: {corpus.name}: {events} events, {records} records, {size_mb:.1f} MB")
    print()
    print("| command | wall s | cpu s | events/s | records/s | MB/s | peak RSS MiB | vs ausearch -i (wall) |")
    print("|---|---|---|---|---|---|---|---|")
    auoms = [str(REPO / ".venv" / "bin" / "auoms-py") if (REPO / ".venv/bin/auoms-py").exists() else "auoms-py"]
    runs = [("ausearch -i (auditd 3.0.9, C)", ["ausearch", "-i", "--input", str(corpus)])]
    interpreters = [(auoms, f"Python {platform.python_version()}")]
    if debian is not None:
        version = subprocess.run([str(debian / "bin" / "python"), "-c", "import platform; print("
                                  "platform.python_version())"], capture_output=True, text=True).stdout.strip()
        interpreters.append(([str(debian / "bin" / "auoms-py")], f"Debian's python3 {version}"))
    for command, interpreter in interpreters:
        for fmt in ("mstic", "json", "oms"):
            runs.append((f"auoms-py replay --format {fmt} ({interpreter})",
                         command + ["replay", "--quiet", "--format", fmt, str(corpus)]))
    # rounds of every command in turn, so that a change in the machine's load touches all of them alike
    rounds = [[timed(cmd) for _label, cmd in runs] for _ in range(args.repeat)]
    baseline = statistics.median(round_[0][0] for round_ in rounds)
    for index, (label, _cmd) in enumerate(runs):
        wall = statistics.median(round_[index][0] for round_ in rounds)
        cpu = statistics.median(round_[index][1] for round_ in rounds)
        rss = max(round_[index][2] for round_ in rounds)
        ratios = sorted(round_[index][0] / round_[0][0] for round_ in rounds)
        spread = f" ({ratios[0]:.2f}-{ratios[-1]:.2f})" if len(ratios) > 1 else ""
        print(f"| {label} | {wall:.2f} | {cpu:.2f} | {events / wall:,.0f} | {records / wall:,.0f} | "
              f"{size_mb / wall:.1f} | {rss:.0f} | {wall / baseline:.2f}x{spread} |")
    if args.repeat > 1:
        print(f"\nmedians of {args.repeat} rounds; in brackets, the lowest and highest ratio within one round")
    if not args.skip_stages:
        print()
        print("| stage (in process, CPU time) | seconds | µs per event | events/s |")
        print("|---|---|---|---|")
        for label, seconds in stage_costs(corpus):
            print(f"| {label} | {seconds:.2f} | {seconds / events * 1e6:.1f} | {events / seconds:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
