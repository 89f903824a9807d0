"""Assemble: records -> events, grouped by event id (reference §2).

Records of concurrent events interleave, so events are keyed by id, not by adjacency. An event is complete on
its EOE record or at once when its type is a single-record type. Events that never see EOE (auditd's log file,
audisp-remote) are flushed when idle longer than `flush_timeout`, when more than `max_open_events` are open
(oldest first), and at the end. The clock is the caller's: `time.monotonic()` for live input, the log's own
time for replay, so the same code serves both and tests need no sleeping.

Bounds: an event holds at most `max_event_bytes` of record text; records beyond it are dropped and counted on
the event (AUOMS defect §10.1 was to throw on big events and crash-loop).
"""
from __future__ import annotations

from auoms_py.pipeline.model import EOE, Event, Record
from auoms_py.pipeline.parse import event_id_text


def _as_is(record: Record) -> Record:
    return record


def is_single_record_type(code: int) -> bool:
    """Types that never get an EOE: everything below 1300, 2000 (KERNEL) and 2100 and above (user space)."""
    return code < 1300 or code >= 2100 or code == 2000


class Assembler:
    def __init__(self, flush_timeout: float = 0.5, max_open_events: int = 256, max_event_bytes: int = 4 << 20):
        self.flush_timeout = flush_timeout
        self.max_open_events = max_open_events
        self.max_event_bytes = max_event_bytes
        # open events in insertion order, by event id text
        self._open: dict[str, Event] = {}
        self._next_expiry = 0.0  # add_all: the clock time before which no open event can be idle long enough
        self.counters = {
            "events_complete": 0,  # ended by EOE or single-record type
            "events_timed_out": 0,  # flushed idle, without EOE
            "events_evicted": 0,  # flushed because too many were open
            "events_flushed": 0,  # flushed at the end of input / shutdown
            "events_mixed_nodes": 0,
            "records_over_limit": 0,  # records dropped because their event exceeded max_event_bytes
            "eoe_records": 0,  # EOE records (they end events and are not kept)
            "eoe_without_event": 0,
        }

    @property
    def open_events(self) -> int:
        return len(self._open)

    @property
    def open_records(self) -> int:
        return sum([len(event.records) for event in self._open.values()])

    def add(self, record: Record, now: float) -> list[Event]:
        """Add one record; return the events it completes (possibly evicted or expired ones first).
        Raises MalformedRecord when a record starts an event with an invalid event id."""
        return self.add_all((record,), _as_is, now)

    def add_all(self, items, parse, now: float, clock=None, on_error=None) -> list[Event]:
        """Parse each item (`parse` None: items are records) and add the record; returns the events completed,
        expired or evicted on the way.

        The loop every input goes through: the usual record (one more of an open event, or its EOE) is added
        inline, without a call per record (a test holds it equal to the same steps spelled out per record).
        `clock(key) -> now`, when given (replay: the log's own time), is asked for the time at
        each record of an event not open yet, the only records that can move a log's clock (the others carry
        the id, and so the time, of a record seen before). Idle events expire before the record that finds
        them idle, at most four times per flush timeout. `on_error(index, item, exc)` hears of an item that
        raised (MalformedRecord or a bug): the others go on; without it the exception propagates."""
        completed: list[Event] = []
        open_events = self._open
        open_event = open_events.get
        max_event_bytes = self.max_event_bytes
        eoe_records = 0
        if items and now >= self._next_expiry:
            self._next_expiry = now + self.flush_timeout / 4
            completed += self.expire(now)
        try:
            for index, item in enumerate(items):
                try:
                    record = item if parse is None else parse(item)
                    key = record[3]
                    event = open_event(key)
                    if event is None:
                        if clock is not None:
                            now = clock(key)
                            if now >= self._next_expiry:
                                self._next_expiry = now + self.flush_timeout / 4
                                completed += self.expire(now)
                        events = self._first_record(record, key, now)
                        if events:
                            completed += events
                        continue
                    if record[0] == EOE:
                        eoe_records += 1
                        del open_events[key]
                        event.complete = True
                        completed.append(event)
                        continue
                    event.touched = now
                    size = len(record[4])
                    if event.size + size > max_event_bytes:
                        event.dropped_records += 1
                        event.dropped_bytes += size
                        self.counters["records_over_limit"] += 1
                        continue
                    node = record[2]
                    if node is not event.node and node != event.node and not event.mixed_nodes:
                        event.mixed_nodes = True
                        self.counters["events_mixed_nodes"] += 1
                    event.records.append(record)
                    event.size += size
                except Exception as exc:  # noqa: BLE001 - one bad record must not stop the others
                    if on_error is None:
                        raise
                    on_error(index, item, exc)
        finally:
            if eoe_records:
                self.counters["eoe_records"] += eoe_records
                self.counters["events_complete"] += eoe_records
        return completed

    def _first_record(self, record: Record, key: str, now: float):
        code = record[0]
        if code == EOE:
            self.counters["eoe_records"] += 1
            self.counters["eoe_without_event"] += 1
            return ()
        event = Event(key, event_id_text(key))
        event.records.append(record)
        event.node = record[2]
        event.size = len(record[4])
        if code and is_single_record_type(code):
            event.complete = True
            self.counters["events_complete"] += 1
            return (event,)
        event.touched = now
        self._open[key] = event
        if len(self._open) > self.max_open_events:
            return self._evict()
        return ()

    def _evict(self) -> list[Event]:
        out = []
        while len(self._open) > self.max_open_events:
            key = next(iter(self._open))
            out.append(self._open.pop(key))
            self.counters["events_evicted"] += 1
        return out

    def expire(self, now: float) -> list[Event]:
        """Events idle for longer than flush_timeout at time `now`, oldest first."""
        if not self._open:
            return []
        limit = now - self.flush_timeout
        expired = [key for key, event in self._open.items() if event.touched < limit]
        self.counters["events_timed_out"] += len(expired)
        return [self._open.pop(key) for key in expired]

    def flush(self) -> list[Event]:
        """Every open event, oldest first (end of input, shutdown)."""
        out = list(self._open.values())
        self._open.clear()
        self.counters["events_flushed"] += len(out)
        return out
