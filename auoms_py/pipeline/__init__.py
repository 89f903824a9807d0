"""The pure core: parse -> assemble -> merge/interpret. No I/O here; callers bring lines and a clock.

    pipe = Pipeline(UserDB("/etc/passwd", "/etc/group"))
    for output_event in pipe.feed_line(line, now):   # an output event: list[OutputRecord]
        ...
    pipe.tick(now); pipe.flush()
"""
from __future__ import annotations

from auoms_py.pipeline.assemble import Assembler
from auoms_py.pipeline.interpret import Interpreter
from auoms_py.pipeline.merge import FastMerger, Merger
from auoms_py.pipeline.model import Event, OutputRecord, Record
from auoms_py.pipeline.parse import MalformedRecord, parse_line, parse_netlink
from auoms_py.pipeline.userdb import UserDB

__all__ = ["Pipeline", "UserDB", "MalformedRecord", "OutputRecord", "Record", "Event"]


class Pipeline:
    """Records in, output events out. `now` is the caller's clock: monotonic seconds live, the log's own event
    time in replay (see `log_time`), so idle events flush identically in both."""

    def __init__(self, userdb: UserDB | None = None, *, flush_timeout: float = 0.5, max_open_events: int = 256,
                 max_event_bytes: int = 4 << 20, log_time: bool = False, fast: bool = True):
        self.userdb = userdb
        self.assembler = Assembler(flush_timeout, max_open_events, max_event_bytes)
        self.merger = (FastMerger if fast else Merger)(Interpreter(userdb))
        # log_time: the clock is the records' own timestamps (replay of a saved log)
        self.log_time = log_time
        self._clock = 0
        self._clock_text = ""
        self._next_expiry = 0.0
        # records == event_records + EOE records + records cut from oversized events: nothing vanishes unseen
        self.counters = {"records": 0, "malformed": 0, "events": 0, "event_records": 0, "output_records": 0,
                         "records_dropped_over_limit": 0}
        self.malformed_samples: list[tuple[str, str]] = []  # (reason, line) of the first few malformed lines

    def feed_line(self, line: str, now: float = 0.0) -> list[list[OutputRecord]]:
        """One line of auditd log / plugin stream / saved netlink text (latin-1 str)."""
        try:
            record = parse_line(line)
        except MalformedRecord as exc:
            self._malformed(str(exc), line)
            return []
        completed: list[Event] = []
        self._add(record, now, completed, line)
        return self._events(completed) if completed else []

    def feed_lines(self, lines, now: float = 0.0, on_malformed=None) -> list[list[OutputRecord]]:
        """Many lines at once (the cheaper way for a batch); `on_malformed(index, reason)` hears of bad ones."""
        completed: list[Event] = []
        add = self._add
        for index, line in enumerate(lines):
            try:
                record = parse_line(line)
            except MalformedRecord as exc:
                self._malformed(str(exc), line)
                if on_malformed is not None:
                    on_malformed(index, str(exc))
                continue
            if not add(record, now, completed, line) and on_malformed is not None:
                on_malformed(index, self.malformed_samples[-1][0] if self.malformed_samples else "malformed")
        return self._events(completed) if completed else []

    def feed_netlink(self, code: int, text: str, now: float = 0.0) -> list[list[OutputRecord]]:
        """One kernel netlink record: its type code and its `audit(...): ...` text."""
        try:
            record = parse_netlink(code, text)
        except MalformedRecord as exc:
            self._malformed(str(exc), f"{code} {text}")
            return []
        return self.feed_record(record, now)

    def feed_record(self, record: Record, now: float = 0.0) -> list[list[OutputRecord]]:
        completed: list[Event] = []
        self._add(record, now, completed)
        return self._events(completed) if completed else []

    def _add(self, record: Record, now: float, completed: list, line: str | None = None) -> bool:
        """Assemble one record; events it completes (or that expired) go to `completed`. False if malformed."""
        self.counters["records"] += 1
        if self.log_time:
            # the log's clock, to the second: enough to flush events idle for a timeout of a second or more
            seconds = record.key.partition(".")[0]
            if seconds != self._clock_text:
                self._clock_text = seconds
                if seconds.isdigit() and int(seconds) > self._clock:
                    self._clock = int(seconds)
            now = self._clock
        assembler = self.assembler
        if now >= self._next_expiry:
            # expire idle events before this record, at most a few times per timeout period
            self._next_expiry = now + assembler.flush_timeout / 4
            completed += assembler.expire(now)
        try:
            events = assembler.add(record, now)
        except MalformedRecord as exc:
            self.counters["records"] -= 1
            self._malformed(str(exc), line if line is not None else f"{record.code} audit({record.key}): {record.body}")
            return False
        if events:
            completed += events
        return True

    def tick(self, now: float) -> list[list[OutputRecord]]:
        """Flush events idle longer than the timeout (call on a timer, also when input is idle)."""
        if self.userdb is not None:
            self.userdb.refresh()
        if self.log_time:
            return []
        return self._events(self.assembler.expire(now))

    def flush(self) -> list[list[OutputRecord]]:
        """Flush every open event (end of input, shutdown)."""
        return self._events(self.assembler.flush())

    def _events(self, events: list[Event]) -> list[list[OutputRecord]]:
        out = []
        merger = self.merger
        for event in events:
            self.counters["events"] += 1
            self.counters["event_records"] += len(event.records)
            if event.dropped_records:
                self.counters["records_dropped_over_limit"] += event.dropped_records
            records = merger.event_records(event)
            self.counters["output_records"] += len(records)
            out.append(records)
        return out

    def _malformed(self, reason: str, line: str) -> None:
        self.counters["malformed"] += 1
        if len(self.malformed_samples) < 10:
            self.malformed_samples.append((reason, line))
