"""File output: one message a line (JSON lines or mstic lines), appended; reopened on SIGHUP for logrotate.

A write that fails (disk full, file system gone read-only) keeps the unwritten lines in memory, up to
`max_pending` bytes, and tries again at the next flush; beyond that the oldest lines are dropped and counted.
"""
from __future__ import annotations

import collections
import logging
import os
import time

from auoms_py.outputs.base import Format, Output

log = logging.getLogger("auoms_py.outputs.file")


class FileOutput(Output):
    kind = "file"

    def __init__(self, name: str, fmt: Format | str, path: str, *, mode: int = 0o640,
                 max_pending: int = 256 * 1024 * 1024):
        super().__init__(name, fmt)
        self.path = path
        self.mode = mode
        self.max_pending = max_pending
        self._fd: int | None = None
        self._pending: collections.deque[bytes] = collections.deque()
        self._pending_bytes = 0
        self._failing_since: float | None = None
        self.counters.update(reopens=0, pending=0)

    def describe(self) -> str:
        return f"file output {self.name!r} ({self.format.name} to {self.path})"

    def open(self) -> None:
        directory = os.path.dirname(self.path)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory, mode=0o750, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self.mode)

    def write_messages(self, messages: list[bytes]) -> None:
        pending = self._pending
        for msg in messages:
            pending.append(msg)
            pending.append(b"\n")
            self._pending_bytes += len(msg) + 1
        self.counters["messages"] += len(messages)
        if self._pending_bytes > self.max_pending:
            self._drop_oldest()
        if self._pending_bytes >= 1 << 20:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        if self._fd is None:
            try:
                self.open()
            except OSError as exc:
                self._failed(exc)
                return
        data = b"".join(self._pending)
        self._pending.clear()
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            self._pending.append(data[written:])  # kept whole: retried at the next flush
            self._pending_bytes = len(data) - written
            self.counters["bytes"] += written
            self._failed(exc)
            return
        self._pending_bytes = 0
        self.counters["bytes"] += written
        if self._failing_since is not None:
            log.warning("%s: writing again after %.0f s of errors", self.describe(),
                        time.monotonic() - self._failing_since)
            self._failing_since = None

    def _failed(self, exc: OSError) -> None:
        self.counters["errors"] += 1
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.error("%s: cannot write (%s); keeping up to %d MiB in memory and retrying", self.describe(),
                      exc.strerror or exc, self.max_pending >> 20)

    def _drop_oldest(self) -> None:
        data = b"".join(self._pending)
        self._pending.clear()
        cut = len(data) - self.max_pending // 2
        cut = data.find(b"\n", cut) + 1 or len(data)
        self.counters["dropped"] += data.count(b"\n", 0, cut)
        self._pending.append(data[cut:])
        self._pending_bytes = len(data) - cut
        log.error("%s: dropped the oldest unwritten lines (%d lost so far)", self.describe(), self.counters["dropped"])

    def reopen(self) -> None:
        """Close and open the path again (after logrotate moved the file away)."""
        self.flush()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            self.open()
            self.counters["reopens"] += 1
        except OSError as exc:
            self._failed(exc)

    def close(self) -> None:
        self.flush()
        if self._pending:
            log.error("%s: %d bytes could not be written at exit", self.describe(), self._pending_bytes)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def status(self) -> dict:
        self.counters["pending"] = self._pending_bytes
        return dict(self.counters)
