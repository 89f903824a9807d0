"""The pure core: parse -> assemble -> merge/interpret. No I/O here; callers bring lines and a clock.

    pipe = Pipeline(UserDB("/etc/passwd", "/etc/group"))
    for output_event in pipe.feed_line(line, now):   # an output event: list[OutputRecord]
        ...
    pipe.tick(now); pipe.flush()
"""
from __future__ import annotations

from operator import attrgetter

from auoms_py.pipeline.assemble import Assembler
from auoms_py.pipeline.interpret import Interpreter
from auoms_py.pipeline.merge import FastMerger, Merger
from auoms_py.pipeline.model import Event, OutputRecord, Record
from auoms_py.pipeline.parse import MalformedRecord, parse_line, parse_lines, parse_netlink_pair
from auoms_py.pipeline.userdb import UserDB

_records_of = attrgetter("records")

__all__ = ["Pipeline", "TextLines", "UserDB", "MalformedRecord", "OutputRecord", "Record", "Event"]


def _parsed(record: Record) -> Record:
    return record


class TextLines:
    """The lines of a batch's text, split only if one is asked for (to report a malformed record)."""

    __slots__ = ("text", "_lines")

    def __init__(self, text: str):
        self.text = text
        self._lines = None

    def __getitem__(self, index: int) -> str:
        if self._lines is None:
            self._lines = self.text.split("\n")
        return self._lines[index]


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
        self._malformed_count = 0
        self.internal_errors = 0  # records or events an unexpected exception stopped (counted as malformed too)
        self._events_count = 0
        self._event_records = 0
        self._output_records = 0
        self.malformed_samples: list[tuple[str, str]] = []  # (reason, line) of the first few malformed lines

    def feed_line(self, line: str, now: float = 0.0) -> list[list[OutputRecord]]:
        """One line of auditd log / plugin stream / saved netlink text (latin-1 str)."""
        return self._feed((line,), parse_line, now, None)

    def feed_lines(self, lines, now: float = 0.0, on_malformed=None) -> list[list[OutputRecord]]:
        """Many lines at once (the cheaper way for a batch); `on_malformed(index, reason)` hears of bad ones."""
        records = parse_lines(lines)
        if records is None:  # some line is malformed: parse them one by one
            return self._feed(lines, parse_line, now, on_malformed)
        return self.feed_records(records, lines, now, on_malformed)

    def feed_records(self, records: list[Record], lines, now: float = 0.0, on_malformed=None):
        """Records the caller parsed from `lines` (parse_text), one per line: lines[index] is reported when the
        record at index is malformed."""
        return self._feed(records, None, now, on_malformed, lines)

    def feed_netlink(self, code: int, text: str, now: float = 0.0) -> list[list[OutputRecord]]:
        """One kernel netlink record: its type code and its `audit(...): ...` text."""
        return self._feed(((code, text),), parse_netlink_pair, now, None)

    def feed_netlink_records(self, records, now: float = 0.0) -> list[list[OutputRecord]]:
        """Many kernel netlink records at once: (type code, text) pairs."""
        return self._feed(records, parse_netlink_pair, now, None)

    def feed_record(self, record: Record, now: float = 0.0) -> list[list[OutputRecord]]:
        return self._feed((record,), _parsed, now, None)

    def _feed(self, items, parse, now: float, on_malformed, lines=None) -> list[list[OutputRecord]]:
        """Parse (unless `parse` is None: items are records, parsed from `lines`) and assemble items; merge the
        events they complete (or that expired on the way)."""
        def on_error(index: int, item, exc: Exception) -> None:
            if lines is not None:
                item = lines[index]
            if isinstance(exc, MalformedRecord):
                reason = str(exc)
            else:
                reason = f"internal error {type(exc).__name__}: {exc}"
                self.internal_errors += 1
            self._malformed(reason, item if isinstance(item, str) else " ".join(map(str, item)))
            if on_malformed is not None:
                on_malformed(index, reason)

        if self.log_time:
            completed = self.assembler.add_all(items, parse, self._clock, self._log_clock, on_error)
        else:
            completed = self.assembler.add_all(items, parse, now, None, on_error)
        return self._events(completed) if completed else []

    def _log_clock(self, key: str) -> int:
        """Replay's clock: the latest second among the log's event ids so far (enough to flush events idle for a
        second or more; an id that goes back in time does not move it)."""
        seconds = key.partition(".")[0]
        if seconds != self._clock_text:
            self._clock_text = seconds
            if seconds.isdecimal() and int(seconds) > self._clock:
                self._clock = int(seconds)
        return self._clock

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
        event_records = self.merger.event_records
        out = []
        for event in events:
            try:
                out.append(event_records(event))
            except Exception as exc:  # noqa: BLE001 - a bug met by one event must not lose the others
                self.internal_errors += 1
                self._malformed(f"internal error {type(exc).__name__}: {exc}",
                                " | ".join(f"{r[1]} {r[4]}" for r in event.records)[:2000])
        self._events_count += len(events)
        self._event_records += sum(map(len, map(_records_of, events)))
        self._output_records += sum(map(len, out))
        return out

    @property
    def counters(self) -> dict[str, int]:
        """What went through. Every record is accounted for: records == event_records (in events that came out)
        + records in events still open + EOE records + records cut from oversized events."""
        assembly = self.assembler.counters
        dropped = assembly["records_over_limit"]
        return {
            "records": self._event_records + self.assembler.open_records + assembly["eoe_records"] + dropped,
            "malformed": self._malformed_count,
            "events": self._events_count,
            "event_records": self._event_records,
            "output_records": self._output_records,
            "records_dropped_over_limit": dropped,
        }

    def _malformed(self, reason: str, line: str) -> None:
        self._malformed_count += 1
        if len(self.malformed_samples) < 10:
            self.malformed_samples.append((reason, line))
