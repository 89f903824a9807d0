"""Standard output: one message a line, for `make run` and debugging."""
from __future__ import annotations

import sys

from auoms_py.outputs.base import Format, Output


class StdoutOutput(Output):
    kind = "stdout"

    def __init__(self, name: str, fmt: Format | str, stream=None):
        super().__init__(name, fmt)
        self._stream = stream  # a binary stream; default sys.stdout's buffer (looked up at open, after daemonizing)
        self._lines: list[bytes] = []

    def open(self) -> None:
        if self._stream is None:
            self._stream = sys.stdout.buffer

    def write_messages(self, messages: list[bytes]) -> None:
        lines = self._lines
        for msg in messages:
            lines.append(msg)
            lines.append(b"\n")
        self.counters["messages"] += len(messages)

    def flush(self) -> None:
        if not self._lines:
            return
        data = b"".join(self._lines)
        self._lines.clear()
        try:
            self._stream.write(data)
            self._stream.flush()
        except BrokenPipeError:
            self.counters["dropped"] += data.count(b"\n")
            self.counters["errors"] += 1
            return
        self.counters["bytes"] += len(data)

    def close(self) -> None:
        self.flush()
