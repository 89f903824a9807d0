"""oms output: AUOMS's `oms` JSON events to a stream socket, with AUOMS's acknowledgement protocol.

    - {name: omsagent, type: oms, address: "unix:///var/run/auoms-py/oms.socket", ack: true}

Each event is one JSON array (reference §11, auoms_py.format.oms) followed by a newline (AUOMS writes the arrays back
to back; a JSON stream reader does not mind the newline, a line reader needs it). With `ack: true` (AUOMS's
`enable_ack_mode`) the receiver answers each event it has taken with its id, 43 bytes:

    SSSSSSSSSSSSSSSS:MMMMMMMM:NNNNNNNNNNNNNNNN\\n     seconds (16 hex digits), milliseconds (8), serial (16)

and an acknowledgement covers every event sent before that one too (AUOMS's AckQueue). At most `ack_queue_size`
events wait for their acknowledgement; one unacknowledged for `ack_timeout` seconds means the connection is taken
as broken: reconnect and send again from the first unacknowledged event. Without acks, an event counts as delivered
once the kernel reports its bytes read by the receiver (a unix stream socket's send queue).
"""
from __future__ import annotations

import collections
import select
import time

from auoms_py.outputs import net
from auoms_py.outputs.base import Format
from auoms_py.outputs.delivery import DeliveryOutput, Link, StreamLink
from auoms_py.service.config import OmsOptions

ACK_SIZE = 43  # len("%016X:%08X:%016X\n")


def ack_line(sec: int, msec: int, serial: int) -> bytes:
    return b"%016X:%08X:%016X\n" % (sec, msec, serial)


def parse_ack(line: bytes) -> tuple[int, int, int] | None:
    """An acknowledgement as AUOMS's TextEventWriter::ReadAck reads it; None when malformed."""
    if len(line) != ACK_SIZE or line[16:17] != b":" or line[25:26] != b":" or line[42:43] != b"\n":
        return None
    try:
        return int(line[:16], 16), int(line[17:25], 16), int(line[26:42], 16)
    except ValueError:
        return None


def _strip_id(message: bytes) -> bytes:
    return message[ACK_SIZE:]


class OmsAckLink(Link):
    """Events written to the socket; confirmed by the receiver's acknowledgements (cumulative)."""

    def __init__(self, sock):
        self.sock = sock
        self.sent = 0
        self.done = 0
        self._sent_ids: dict[tuple, int] = {}  # event id -> events sent up to and including it
        self._order: collections.deque = collections.deque()  # event ids in sending order (to forget acked ones)
        self._buffer = b""
        self._poller = select.poll()
        self._poller.register(sock.fileno(), select.POLLIN | net.POLL_CLOSED)

    def send(self, messages: list[bytes]) -> int:
        self._read_acks(0)
        self.sock.sendall(b"".join([m[ACK_SIZE:] for m in messages]))
        for m in messages:
            self.sent += 1
            ident = parse_ack(m[:ACK_SIZE])  # the receiver may answer in lower or upper case hex
            self._sent_ids[ident] = self.sent
            self._order.append(ident)
        return 0

    def confirmed(self, timeout: float) -> int:
        if self.done < self.sent:
            self._read_acks(timeout)
        return self.done

    def _read_acks(self, timeout: float) -> None:
        if not self._poller.poll(int(timeout * 1000)):
            return
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, TimeoutError):
            return
        if not data:
            raise ConnectionResetError(104, "receiver closed the connection")
        data = self._buffer + data
        end = len(data) - len(data) % ACK_SIZE
        self._buffer = data[end:]
        for i in range(0, end, ACK_SIZE):
            line = data[i:i + ACK_SIZE]
            ident = parse_ack(line)
            if ident is None:
                raise ConnectionResetError(104, f"malformed acknowledgement {line!r}")
            count = self._sent_ids.get(ident)
            if count is not None and count > self.done:
                self.done = count
        order = self._order
        while order and self._sent_ids.get(order[0], 0) <= self.done:
            del self._sent_ids[order.popleft()]


class OmsOutput(DeliveryOutput):
    kind = "oms"

    def __init__(self, name: str, fmt: Format | str, opts: OmsOptions, *, queue=None):
        super().__init__(name, fmt, opts, queue=queue)
        self.ack_timeout = opts.ack_timeout
        self.batch_count = min(100, opts.ack_queue_size)
        self.window = opts.ack_queue_size  # events waiting for their acknowledgement, at most

    @property
    def target(self) -> str:
        return str(self.opts.address)

    def connect(self) -> Link:
        sock = net.open_stream(self.opts.address, timeout=self.opts.send_timeout)
        if self.opts.ack:
            return OmsAckLink(sock)
        return StreamLink(sock, _strip_id)

    def write_event(self, event) -> None:
        self.counters["events"] += 1
        if not event:
            return
        text = self.format.format_event(event)
        if text is None:  # no record of a type the format writes
            return
        first = event[0]
        self.enqueue([ack_line(first.sec, first.msec, first.serial) + text.encode("utf-8", "backslashreplace")
                      + b"\n"])

    def write_messages(self, messages: list[bytes]) -> None:
        """Ready JSON texts (self-reports), identified by the current time and serial 0."""
        now = time.time()
        ident = ack_line(int(now), int(now * 1000) % 1000, 0)
        self.enqueue([ident + m + b"\n" for m in messages])
