#!/usr/bin/env python3
"""Replay CPU time of two versions of auoms-py on the same corpus, run in turn (A/B), to measure one change.

    bench/compare.py OLD_REV [NEW_REV] [--events 50000] [--rounds 5] [--format mstic]

A revision is anything git names (a commit, HEAD~3, a tag); NEW_REV defaults to the working tree. Each version
is exported once under bench/out/rev-<commit>/ and run with the repository's .venv. The rounds alternate old and
new so that a change in the shared machine's load touches both alike; the medians and their ratio are printed.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
PYTHON = REPO / ".venv" / "bin" / "python"
sys.path.insert(0, str(REPO / "bench"))


def export(rev: str) -> Path:
    """The source tree of a git revision, exported once."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"], check=True,
                            capture_output=True, text=True).stdout.strip()
    tree = OUT / f"rev-{commit[:12]}"
    if not (tree / "auoms_py").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "auoms_py"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def cpu_seconds(tree: Path, corpus: Path, fmt: str) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([str(PYTHON), "-m", "auoms_py", "replay", "--quiet", "--format", fmt, str(corpus)], cwd=tree,
                   env={**os.environ, "PYTHONPATH": str(tree)}, stdout=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new", nargs="?", help="default: the working tree")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--format", default="mstic", choices=("mstic", "json", "oms"))
    args = parser.parse_args()
    from run import compile_byte_code, make_corpus  # bench/run.py: the same corpus as the benchmark

    corpus = make_corpus(args.events, 1, 2, False)
    trees = {args.old: export(args.old), args.new or "working tree": export(args.new) if args.new else REPO}
    for tree in trees.values():  # so that neither pays compiling in its rounds
        compile_byte_code(tree)
    times: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            times[name].append(cpu_seconds(tree, corpus, args.format))
    (old, old_times), (new, new_times) = times.items()
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.3f} s CPU  ({' '.join(f'{v:.2f}' for v in values)})")
    ratio = statistics.median(old_times) / statistics.median(new_times)
    print(f"{corpus.name}, --format {args.format}: {new} is {ratio:.2f}x as fast as {old}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
