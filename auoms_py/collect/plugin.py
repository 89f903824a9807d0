"""auditd plugin input: the record stream auditd 3.x writes to its plugins' stdin (`format = string`).

One record a line (`type=SYSCALL msg=audit(...): ...`, EOE records included; with auditd's ENRICHED log format a
0x1D byte and the interpreted tail follow, which the pipeline drops). auditd sends SIGHUP when it reconfigures and
SIGTERM when it stops the plugin; the agent handles both. End of input (auditd closed the pipe) ends the agent.
"""
from __future__ import annotations

import os
import sys

from auoms_py.collect.base import MAX_RECORDS_PER_READ, Collector

CHUNK = 1 << 20


class PluginCollector(Collector):
    kind = "plugin"

    def __init__(self, fd: int | None = None):
        super().__init__()
        self._fd = fd
        self._partial = b""

    def describe(self) -> str:
        return "plugin input (auditd stream on stdin)"

    def open(self) -> None:
        if self._fd is None:
            self._fd = sys.stdin.fileno()
        os.set_blocking(self._fd, False)

    def fileno(self) -> int | None:
        return self._fd

    def read(self, pipe, now: float) -> list:
        out: list = []
        budget = MAX_RECORDS_PER_READ
        while budget > 0:
            try:
                chunk = os.read(self._fd, CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                self.finished = True
                if self._partial:  # a last line without its newline: auditd is gone, it will not be completed
                    out.extend(self.feed_lines([self._partial], pipe, now))
                    self._partial = b""
                break
            data = self._partial + chunk if self._partial else chunk
            lines = data.split(b"\n")
            self._partial = lines.pop()
            budget -= len(lines)
            out.extend(self.feed_lines(lines, pipe, now))
        self.note_malformed(pipe)
        return out
