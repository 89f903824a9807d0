"""Numbered audit events for delivery tests: each an exec of `/usr/bin/echo evt-NNNNNNN`, so that a receiver can
tell which events arrived, which are missing and which came twice."""
from __future__ import annotations

import re

from auoms_py.pipeline import Pipeline, UserDB
from tests.outputs.events import execve_lines
from tests.paths import AUOMS_REF

MARK = re.compile(r"evt-(\d{7})")


def marker(n: int) -> bytes:
    return b"evt-%07d" % n


def event_lines(start: int, count: int, *, sec: int = 1795336975) -> list[str]:
    """Plugin-stream lines (EOE included) of events start .. start+count-1 (serial = n + 1)."""
    lines: list[str] = []
    for n in range(start, start + count):
        lines += execve_lines(n + 1, [b"/usr/bin/echo", marker(n)], sec=sec + n // 1000)
    return lines


def events(start: int, count: int) -> list[list]:
    """The output events (lists of OutputRecord) of event_lines()."""
    pipe = Pipeline(UserDB(str(AUOMS_REF / "passwd"), str(AUOMS_REF / "group")))
    out: list = []
    for line in event_lines(start, count):
        out += pipe.feed_line(line, 0.0)
    out += pipe.flush()
    return out


def numbers(texts) -> list[int]:
    """The event numbers found in received texts (bytes or str), in order."""
    found = []
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode("latin-1")
        match = MARK.search(text)
        if match:
            found.append(int(match.group(1)))
    return found
