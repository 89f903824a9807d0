"""The oms output against a receiver that speaks AUOMS's protocol as its TextEventWriter::ReadAck expects it:
JSON events in, `SEC:MSEC:SERIAL\\n` (fixed-size hex) acknowledgements out, cumulative."""
from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from auoms_py.outputs.oms_socket import OmsOutput, parse_ack
from auoms_py.service.config import from_dict
from tests.paths import AUOMS_REF
from tests.pipeline.helpers import read_lines, run_lines
from tests.service.agent_proc import wait_until
from tests.spool.feed import events, numbers


class OmsReceiver:
    """A unix stream server reading JSON arrays back to back (whitespace between them allowed) and answering."""

    def __init__(self, path: str, *, ack: bool = True, ack_every: int = 1):
        self.path = path
        self.ack = ack
        self.ack_every = ack_every  # acknowledge every Nth event only (acks are cumulative)
        self.lose_acks = 0
        self.events: list = []
        self.acks_sent = 0
        self.connections = 0
        self._server = None
        self._running = False
        self._threads: list[threading.Thread] = []

    def start(self) -> "OmsReceiver":
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(4)
        self._server.settimeout(0.2)
        self._running = True
        self._threads.append(threading.Thread(target=self._accept, daemon=True))
        self._threads[-1].start()
        return self

    def stop(self) -> None:
        self._running = False
        for t in self._threads:
            t.join(5)
        self._threads = []
        if self._server:
            self._server.close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _accept(self) -> None:
        while self._running:
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.connections += 1
            conn.settimeout(0.2)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn) -> None:
        decoder = json.JSONDecoder()
        buf = ""
        try:
            while self._running:
                try:
                    data = conn.recv(65536)
                except (TimeoutError, socket.timeout):
                    continue
                if not data:
                    return
                buf += data.decode("utf-8")
                while True:
                    buf = buf.lstrip()
                    if not buf:
                        break
                    try:
                        event, end = decoder.raw_decode(buf)
                    except json.JSONDecodeError:
                        break  # incomplete: wait for more
                    buf = buf[end:]
                    self.events.append(event)
                    if self.ack and len(self.events) % self.ack_every == 0:
                        if self.lose_acks:
                            self.lose_acks -= 1
                            continue
                        sec, _, msec = event[1]["Timestamp"].partition(".")
                        conn.sendall(b"%016x:%08x:%016x\n" % (int(sec), int(msec), event[1]["SerialNumber"]))
                        self.acks_sent += 1
        except OSError:
            pass
        finally:
            conn.close()

    def numbers(self) -> list[int]:
        return numbers(rec.get("cmdline", "") for ev in self.events for rec in ev[1]["records"])


def make_output(path: str, **keys) -> OmsOutput:
    keys.setdefault("retry_interval", 0.05)
    keys.setdefault("retry_max", 0.2)
    cfg = from_dict({"input": "netlink", "outputs": [{"name": "o", "type": "oms", "address": f"unix://{path}",
                                                      **keys}]}).outputs[0]
    out = OmsOutput(cfg.name, cfg.format, cfg.oms)
    out.open()
    return out



def feed(out, start: int, count: int) -> None:
    for event in events(start, count):
        out.write_event(event)
    out.flush()


def test_ack_format_is_what_auoms_reads():
    assert parse_ack(b"000000005ab42dc6:00000188:000000000004010c\n") == (1521757638, 392, 262412)
    assert parse_ack(b"000000005AB42DC6:00000188:000000000004010C\n") == (1521757638, 392, 262412)
    assert parse_ack(b"000000005ab42dc6-00000188:000000000004010c\n") is None
    assert parse_ack(b"5ab42dc6:188:4010c\n") is None


def test_reference_events_arrive_as_auoms_oms_json(tmp_path):
    path = str(tmp_path / "oms.socket")
    expected = [json.loads(line) for line in (AUOMS_REF / "raw_test_events.oms.jsonl").read_text().splitlines()
                if line.startswith("[")]
    with OmsReceiver(path) as receiver:
        out = make_output(path, ack=True)
        for event in run_lines(read_lines(AUOMS_REF / "raw_test_events.log")):
            out.write_event(event)
        out.flush()
        assert wait_until(lambda: len(receiver.events) == len(expected))
        assert wait_until(lambda: out.status()["delivered"] == len(expected))
        out.close()
    key = lambda ev: (ev[1]["Timestamp"], ev[1]["SerialNumber"])  # noqa: E731
    assert sorted(receiver.events, key=key) == sorted(expected, key=key)


@pytest.mark.parametrize("ack_every", [1, 7])
def test_acknowledged_delivery_cumulative_acks(tmp_path, ack_every):
    path = str(tmp_path / "oms.socket")
    with OmsReceiver(path, ack_every=ack_every) as receiver:
        out = make_output(path, ack=True, ack_queue_size=50)
        feed(out, 0, 700)  # a multiple of 7: the last event is acknowledged too
        assert wait_until(lambda: out.status()["delivered"] == 700)
        out.close()
    assert receiver.numbers() == list(range(700))
    assert receiver.acks_sent == 700 // ack_every


def test_lost_acks_mean_resending_from_the_first_unacknowledged(tmp_path):
    path = str(tmp_path / "oms.socket")
    with OmsReceiver(path) as receiver:
        out = make_output(path, ack=True, ack_timeout=0.5, ack_queue_size=20)
        receiver.lose_acks = 40  # the receiver takes events but stays silent for a while
        feed(out, 0, 200)
        assert wait_until(lambda: out.status()["delivered"] == 200, 30)
        out.close()
    got = receiver.numbers()
    assert sorted(set(got)) == list(range(200))
    assert 0 < len(got) - len(set(got)) <= out.status()["resent"]
    assert receiver.connections >= 2


def test_receiver_absent_then_present_without_acks(tmp_path):
    path = str(tmp_path / "oms.socket")
    receiver = OmsReceiver(path, ack=False)
    out = make_output(path)
    feed(out, 0, 100)
    assert wait_until(lambda: out.down_since is not None)
    receiver.start()
    try:
        assert wait_until(lambda: out.status()["delivered"] == 100)
        out.close()
    finally:
        receiver.stop()
    assert receiver.numbers() == list(range(100))
