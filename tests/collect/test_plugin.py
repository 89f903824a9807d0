"""Plugin input: auditd's plugin stream (captured from Debian's auditd 3.0.9, ENRICHED, interleaved events) on a
real pipe, in chunks that cut lines anywhere; the same events as reading the stream whole."""
from __future__ import annotations

import os
import threading

from auoms_py.collect.plugin import PluginCollector
from auoms_py.format import mstic
from auoms_py.pipeline import Pipeline, UserDB
from tests.paths import SAMPLES
from tests.pipeline.helpers import split_lines

STREAM = (SAMPLES / "plugin-enriched-interleaved.raw").read_bytes()


def mstic_of(events):
    return [line for event in events for rec in event for line in [mstic.format_record(rec)] if line is not None]


def whole() -> list[str]:
    pipe = Pipeline(UserDB())
    events = []
    for line in split_lines(STREAM):
        events += pipe.feed_line(line, 0.0)
    return mstic_of(events + pipe.flush())


def test_stream_through_a_pipe_in_odd_chunks_gives_the_same_events():
    r, w = os.pipe()
    pipe = Pipeline(UserDB())
    collector = PluginCollector(fd=r)
    collector.open()

    def writer():
        for start in range(0, len(STREAM), 977):  # chunks that cut lines (and the 0x1D tails) anywhere
            os.write(w, STREAM[start:start + 977])
        os.close(w)

    thread = threading.Thread(target=writer)
    thread.start()
    events = []
    import select
    poller = select.poll()
    poller.register(r, select.POLLIN)
    while not collector.finished:
        poller.poll(1000)
        events += collector.read(pipe, 0.0)
    thread.join()
    events += pipe.flush()
    os.close(r)
    assert mstic_of(events) == whole()
    assert collector.counters["records"] == STREAM.count(b"\n")
    assert collector.counters["bytes"] == len(STREAM) - STREAM.count(b"\n")
    assert collector.counters["malformed"] == 0


def test_last_line_without_newline_is_taken_at_end_of_input_and_garbage_is_counted():
    r, w = os.pipe()
    data = b"this is not an audit record\n" + STREAM.rstrip(b"\n")
    thread = threading.Thread(target=lambda: (os.write(w, data), os.close(w)))  # more than a pipe holds
    thread.start()
    pipe = Pipeline(UserDB())
    collector = PluginCollector(fd=r)
    collector.open()
    events = []
    while not collector.finished:
        events += collector.read(pipe, 0.0)
    thread.join()
    events += pipe.flush()
    os.close(r)
    assert collector.counters["records"] == STREAM.count(b"\n") + 1
    assert collector.counters["malformed"] == 1
    assert mstic_of(events) == whole()
