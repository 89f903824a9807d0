#!/usr/bin/env python3
"""Filter stage benchmark: events/s of the process tree + filter engine with no filters, the shipped defaults and a
large filter file, alone and behind the pipeline (docs/performance.md, "Filters").

    .venv/bin/python bench/filters.py [--events 50000] [--seed 1]

Input: ../shared/bench/make_corpus.py (70 % execve with fresh pids: nearly every event brings a new process, the
worst case for the tree and for matching, which is done once per process). Replay mode: the tree is built from the
log alone, as `auoms-py replay --config` does. Compare the rows of one run; absolute figures vary on shared machines.
"""
from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _corpus(events: int, seed: int) -> Path:
    # the pipeline benchmark's corpus cache (bench/run.py): same input, generated once
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
    bench_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_run)
    return bench_run.make_corpus(events, seed, 2, False)


def many_filters(path: Path, count: int = 100) -> Path:
    """A large filter file of every match kind, none matching the corpus: every filter is tried on every process."""
    lines = ["process_filters:"]
    kinds = [
        ("exe", lambda i: f"/opt/vendor{i}/bin/agent"),
        ("exe", lambda i: f"{{prefix: /opt/vendor{i}/}}"),
        ("exe", lambda i: f"{{glob: '/opt/tool{i}/*/bin/*'}}"),
        ("cmdline", lambda i: f"{{regex: '^/usr/bin/python3 .*/collector{i}\\.py'}}"),
        ("cmdline", lambda i: f"[{{prefix: /bin/sh -c}}, {{contains: 'job{i}.sh'}}]"),
    ]
    for i in range(count):
        field, value = kinds[i % len(kinds)]
        lines.append(f"  - {{name: f{i}, user: root, {field}: {value(i)}, syscalls: [openat, connect], depth: -1}}")
    path.write_text("\n".join(lines) + "\n")
    return path


def run_filters(events: list, filters_path: str | None, with_filters: bool) -> tuple[float, int]:
    from auoms_py.filters import Filters

    if not with_filters:
        start = time.perf_counter()
        kept = sum(1 for _event in events)
        return time.perf_counter() - start, kept
    filters = Filters(filters_path)
    process = filters.process
    start = time.perf_counter()
    kept = 0
    for event in events:
        if process(event):
            kept += 1
    return time.perf_counter() - start, kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    import logging

    from auoms_py.pipeline import Pipeline, UserDB

    from auoms_py.cli import tune_gc

    tune_gc()  # as `auoms-py run` and `replay` do: the default collector would charge its scans to the tree
    logging.disable(logging.WARNING)  # the shipped file's omsagent filters are disabled here: said once per load
    corpus = _corpus(args.events, args.seed)
    lines = corpus.read_bytes().decode("latin-1").splitlines()
    out_dir = REPO / "bench" / "out"
    big = many_filters(out_dir / "filters-100.yaml")
    default = str(REPO / "conf" / "filters.yaml")

    def pipeline_events() -> list:
        pipe = Pipeline(UserDB("/etc/passwd", "/etc/group"), flush_timeout=1.0, log_time=True)
        events = []
        for line in lines:
            events += pipe.feed_line(line)
        return events + pipe.flush()

    events = pipeline_events()
    n = len(events)
    print(f"corpus: {corpus.name}, {len(lines)} records, {n} events; {platform.machine()}, "
          f"Python {platform.python_version()}, {platform.node()}", file=sys.stderr)
    rows = []
    for label, path, active in (("no filter stage (loop only)", None, False),
                                ("process tree, no filter file", None, True),
                                ("shipped defaults (conf/filters.yaml, 10 filters)", default, True),
                                ("100 filters (equals/prefix/glob/regex/cmdline)", str(big), True)):
        best = None
        for _ in range(3):  # (the tree's annotations of the records are overwritten on each run: no carry-over)
            seconds, kept = run_filters(events, path, active)
            best = seconds if best is None or seconds < best else best
        rows.append((label, best, kept))
    # end to end: pipeline alone vs pipeline + shipped filters, in one process over the same lines
    from auoms_py.filters import Filters

    def end_to_end(filters_path: str | None, use: bool) -> float:
        pipe = Pipeline(UserDB("/etc/passwd", "/etc/group"), flush_timeout=1.0, log_time=True)
        filters = Filters(filters_path) if use else None
        start = time.perf_counter()
        for line in lines:
            out = pipe.feed_line(line)
            if out and filters is not None:
                filters.apply(out)
        out = pipe.flush()
        if filters is not None:
            filters.apply(out)
        return time.perf_counter() - start

    pipe_alone = min(end_to_end(None, False) for _ in range(2))
    pipe_filtered = min(end_to_end(default, True) for _ in range(2))

    print("| filter stage | seconds | events/s | events kept |")
    print("|---|---|---|---|")
    for label, seconds, kept in rows:
        rate = f"{n / seconds:,.0f}" if seconds > 0 else "-"
        print(f"| {label} | {seconds:.3f} | {rate} | {kept:,} |")
    print()
    print("| pipeline (parse, assemble, merge/interpret) | seconds | events/s |")
    print("|---|---|---|")
    print(f"| without filters | {pipe_alone:.2f} | {n / pipe_alone:,.0f} |")
    print(f"| with the shipped filters | {pipe_filtered:.2f} | {n / pipe_filtered:,.0f} |")
    print(f"\nfilter stage share of the pipeline's time: {100 * (pipe_filtered - pipe_alone) / pipe_alone:.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
