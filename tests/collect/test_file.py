"""File input: tail -F semantics on a real audit log (msticpy's 1,708-line audit.log), through the real pipeline."""
from __future__ import annotations

import json
import os

import pytest

from auoms_py.collect.base import CollectorError
from auoms_py.collect.file import STATE_FILE, FileCollector
from auoms_py.format import mstic
from auoms_py.pipeline import Pipeline, UserDB
from tests.paths import AUOMS_REF, REFERENCE
from tests.pipeline.helpers import split_lines

LOG = (REFERENCE / "msticpy" / "auditd_log.txt").read_bytes()
LINES = LOG.splitlines(keepends=True)


def new_pipe() -> Pipeline:
    return Pipeline(UserDB(str(AUOMS_REF / "passwd"), str(AUOMS_REF / "group")))


def mstic_of(events) -> list[str]:
    return [line for event in events for rec in event for line in [mstic.format_record(rec)] if line is not None]


def expected(data: bytes) -> list[str]:
    pipe = new_pipe()
    events = []
    for line in split_lines(data):
        events += pipe.feed_line(line, 0.0)
    return mstic_of(events + pipe.flush())


class Follower:
    """A collector and its pipeline, read the way the agent reads them."""

    def __init__(self, path, data_dir, once=False):
        self.pipe = new_pipe()
        self.collector = FileCollector(str(path), str(data_dir), once=once, poll_interval=0.01)
        self.collector.open()
        self.events: list = []

    def read(self, rounds: int = 3) -> None:
        for _ in range(rounds):
            self.events += self.collector.read(self.pipe, 0.0)
            while self.collector.has_more:
                self.events += self.collector.read(self.pipe, 0.0)

    def close(self) -> list[str]:
        self.events += self.collector.close(self.pipe, 0.0)
        self.events += self.pipe.flush()
        return mstic_of(self.events)


def test_once_reads_everything_and_finishes(tmp_path):
    path = tmp_path / "audit.log"
    path.write_bytes(LOG)
    f = Follower(path, tmp_path / "data", once=True)
    f.read()
    assert f.collector.finished
    assert f.close() == expected(LOG)
    assert f.collector.counters["records"] == len([x for x in LINES if x.strip()])
    state = json.loads((tmp_path / "data" / STATE_FILE).read_text())
    assert state["offset"] == len(LOG) and state["ino"] == path.stat().st_ino


def test_restart_continues_from_the_saved_position(tmp_path):
    path = tmp_path / "audit.log"
    first = b"".join(LINES[:900])
    path.write_bytes(first)
    f = Follower(path, tmp_path / "data", once=True)
    f.read()
    part1 = f.close()
    with open(path, "ab") as out:
        out.write(b"".join(LINES[900:]))
    f = Follower(path, tmp_path / "data", once=True)
    f.read()
    part2 = f.close()
    assert f.collector.counters["records"] == len([x for x in LINES[900:] if x.strip()])
    # every record read exactly once across the two runs (an event cut at the restart comes out in two parts)
    assert len(part1) + len(part2) >= len(expected(LOG))
    assert part1 == expected(first)
    assert part2 == expected(b"".join(LINES[900:]))


def test_partial_last_line_waits_until_complete(tmp_path):
    path = tmp_path / "audit.log"
    head = b"".join(LINES[:10])
    line = LINES[10]
    path.write_bytes(head + line[:40])
    f = Follower(path, tmp_path / "data")
    f.read()
    assert f.collector.counters["records"] == 10 and f.collector.offset == len(head)
    f.collector.save_state()
    assert json.loads((tmp_path / "data" / STATE_FILE).read_text())["offset"] == len(head)
    with open(path, "ab") as out:
        out.write(line[40:])
    f.read()
    assert f.collector.counters["records"] == 11 and f.collector.counters["malformed"] == 0
    assert f.close() == expected(head + line)


def test_once_leaves_an_incomplete_last_line_for_the_next_run(tmp_path):
    path = tmp_path / "audit.log"
    path.write_bytes(b"".join(LINES[:20]) + LINES[20][:30])
    f = Follower(path, tmp_path / "data", once=True)
    f.read()
    assert f.collector.finished and f.collector.counters["records"] == 20
    f.close()
    with open(path, "ab") as out:
        out.write(LINES[20][30:])
    f = Follower(path, tmp_path / "data", once=True)
    f.read()
    assert f.collector.counters["records"] == 1 and f.collector.counters["malformed"] == 0


def test_rotation_reads_the_old_tail_then_the_new_file(tmp_path):
    path = tmp_path / "audit.log"
    path.write_bytes(b"".join(LINES[:500]))
    f = Follower(path, tmp_path / "data")
    f.read()
    # auditd rotates: the old file is renamed (and may still get a last write), a new one takes the name
    os.rename(path, tmp_path / "audit.log.1")
    with open(tmp_path / "audit.log.1", "ab") as old:
        old.write(b"".join(LINES[500:600]))
    path.write_bytes(b"".join(LINES[600:]))
    f.read()
    assert f.collector.counters["rotations"] == 1
    assert f.collector.counters["records"] == len([x for x in LINES if x.strip()])
    assert f.close() == expected(LOG)


def test_truncation_starts_again_at_the_beginning(tmp_path):
    path = tmp_path / "audit.log"
    path.write_bytes(b"".join(LINES[:800]))
    f = Follower(path, tmp_path / "data")
    f.read()
    with open(path, "r+b") as out:  # logrotate copytruncate
        out.truncate(0)
    with open(path, "ab") as out:
        out.write(b"".join(LINES[800:850]))
    f.read()
    assert f.collector.counters["truncations"] == 1
    assert f.collector.counters["records"] == 850 - sum(1 for x in LINES[:850] if not x.strip())
    assert f.close() == expected(b"".join(LINES[:850]))


def test_a_different_file_under_the_name_is_read_from_its_beginning(tmp_path):
    path = tmp_path / "audit.log"
    path.write_bytes(b"".join(LINES[:100]))
    f = Follower(path, tmp_path / "data", once=True)
    f.read()
    f.close()
    os.rename(path, tmp_path / "audit.log.1")  # rotated while the agent was stopped
    path.write_bytes(b"".join(LINES[100:150]))
    f = Follower(path, tmp_path / "data", once=True)
    f.read()
    assert f.collector.counters["records"] == 50
    f.close()


def test_missing_file_is_waited_for_or_refused_with_once(tmp_path):
    path = tmp_path / "audit.log"
    with pytest.raises(CollectorError, match="does not exist"):
        FileCollector(str(path), str(tmp_path / "data"), once=True).open()
    f = Follower(path, tmp_path / "data")
    f.read()
    assert f.collector.counters["records"] == 0
    path.write_bytes(b"".join(LINES[:5]))
    f.read()
    assert f.collector.counters["records"] == 5
