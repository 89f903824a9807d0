"""What every collector shares: the life cycle the agent drives and the counters it reports.

    c.open()                       acquire the source (raises CollectorError with a message for the operator)
    c.fileno() -> int | None       a descriptor to poll for input, or None: the agent calls read() every
                                   c.poll_interval seconds
    c.read(pipe, now) -> events    feed what is available now (never blocks) into the pipeline
    c.periodic(now)                housekeeping every second or so (kernel lost counter, saving the position)
    c.has_more                     read() stopped at its budget with input left: call again at once
    c.finished                     True when no more input will come (stdin closed, `once` file read)
    c.close(pipe, now) -> events   release the source (restoring kernel state) after feeding the rest
    c.problem() -> str | None      why the input is not collecting as it should (None: all is well): health
    c.alive() -> bool              the source is open and still ours; the agent feeds systemd's watchdog only then

Counters: records, bytes (of record text), malformed (records the pipeline rejected), lost (records known lost
before they reached us: kernel drops, socket overflows), plus collector-specific ones.
"""
from __future__ import annotations

import logging

log = logging.getLogger("auoms_py.collect")

MAX_RECORDS_PER_READ = 4096  # one read() call feeds at most this many, so timers and signals keep their pace


class CollectorError(Exception):
    """The collector cannot start; the message says why and what to do."""


class Collector:
    kind = "collector"
    poll_interval: float | None = None

    def __init__(self):
        self.counters = {"records": 0, "bytes": 0, "malformed": 0, "lost": 0}
        self.finished = False
        self.has_more = False  # read() stopped at its budget: call it again without waiting
        self._failures_logged = 0

    def describe(self) -> str:
        return f"{self.kind} input"

    def open(self) -> None:
        pass

    def fileno(self) -> int | None:
        return None

    def read(self, pipe, now: float) -> list:
        raise NotImplementedError

    def periodic(self, now: float) -> None:
        pass

    def close(self, pipe, now: float) -> list:
        return []

    def status(self) -> dict:
        return dict(self.counters)

    def problem(self) -> str | None:
        """Why this input is not collecting as it should, or None (the agent's health: AUOMS_STATUS, ctl status)."""
        return None

    def alive(self) -> bool:
        """The source is open and still ours (the systemd watchdog is fed only while it is: a restart may help)."""
        return not self.finished

    def feed_lines(self, lines, pipe, now: float) -> list:
        """Feed text lines (bytes, without their newline) to the pipeline in one batch; empty lines are skipped.
        (The pipeline counts and skips what it cannot take: malformed lines, internal errors.)"""
        texts = [raw.decode("latin-1") for raw in lines if raw]
        self.counters["records"] += len(texts)
        self.counters["bytes"] += sum(map(len, texts))
        return pipe.feed_lines(texts, now)

    def note_malformed(self, pipe) -> None:
        """Take the pipeline's malformed count as ours (the agent gives each collector a pipeline of its own), and
        log the first records it could not take."""
        counters = getattr(pipe, "counters", None)
        if not counters:
            return
        self.counters["malformed"] = counters.get("malformed", 0)
        samples = getattr(pipe, "malformed_samples", ())
        while self._failures_logged < len(samples):
            reason, text = samples[self._failures_logged]
            self._failures_logged += 1
            log.warning("%s: record not processed (%s): %.300r", self.describe(), reason, text)
