"""Forward output: the Fluentd forward protocol (v1) to Fluentd, Fluent Bit or the OMS agent, over a unix socket or
TCP (optionally TLS), in AUOMS's `fluent` shape (auoms_py.format.fluent) or as our JSON records.

    - {name: oms, type: forward, format: fluent, address: "unix:///var/run/auoms-py/fwd.socket", tag: LINUX_AUDITD_BLOB}

Protocol (https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1): each batch of entries is one
Forward-mode message `[tag, [[time, record], ...], {"size": n, "chunk": id}]`, the chunk id a fresh random 128-bit
value in base64 (a msgpack str). The server answers `{"ack": id}` once it has taken the chunk; only then does the
spool's cursor move past its entries. A chunk not acknowledged within ack_timeout, or a connection that breaks,
means the unacknowledged chunks are sent again on a new connection (with new chunk ids): at least once, and
`resent` counts what may arrive twice. `require_ack: false` sends no chunk id (for receivers that do not answer);
an entry then counts as delivered once the kernel reports its bytes taken by the receiver.

Not supported: the handshake phase (HELO/PING/PONG shared-key authentication). A server that starts one is reported
("the receiver asks for shared-key authentication") and retried like an unreachable one.
"""
from __future__ import annotations

import base64
import collections
import json
import logging
import os
import select
import time

import msgpack

from auoms_py.format import fluent
from auoms_py.outputs import net
from auoms_py.outputs.base import Format
from auoms_py.outputs.delivery import DeliveryOutput, Link, StreamLink
from auoms_py.service.config import ForwardOptions

log = logging.getLogger("auoms_py.outputs.forward")


class ProtocolError(OSError):
    """The receiver said something the forward protocol does not allow here."""


class ForwardLink(Link):
    """One connection to a forward server. Each send() is one chunk; confirmed() counts the entries of the chunks
    acknowledged so far (in the order they were sent)."""

    def __init__(self, sock, tag: str, *, require_ack: bool, tls: bool):
        self.sock = sock
        self.tag = tag
        self.require_ack = require_ack
        self.tls = tls
        self.sent = 0  # entries sent on this link
        self.done = 0  # entries whose chunk was acknowledged
        self._chunks: collections.deque = collections.deque()  # (chunk id, entries sent after it)
        self._waiting: set[str] = set()  # chunk ids sent, not yet acknowledged
        self._acked: set[str] = set()  # acknowledged, waiting for the chunks before them
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=1 << 20)
        self._poller = select.poll()
        self._poller.register(sock.fileno(), select.POLLIN | net.POLL_CLOSED)
        # without acks: the bytes the kernel reports taken by the receiver confirm whole messages
        self._stream = None if require_ack else StreamLink(sock, bytes, tls=tls)

    def send(self, entries: list[bytes]) -> int:
        if self._stream is not None:
            self._stream.send([fluent.forward_message(self.tag, entries, None)])
            self.sent += len(entries)
            self._chunks.append((self._stream.count, self.sent))
            return 0
        self._read_answers(0)  # a receiver that closed or started a handshake is noticed before we write
        chunk = base64.b64encode(os.urandom(16)).decode("ascii")
        self.sock.sendall(fluent.forward_message(self.tag, entries, chunk))
        self.sent += len(entries)
        self._chunks.append((chunk, self.sent))
        self._waiting.add(chunk)
        return 0

    def confirmed(self, timeout: float) -> int:
        chunks = self._chunks
        if self._stream is not None:
            taken = self._stream.confirmed(timeout)
            while chunks and chunks[0][0] <= taken:
                self.done = chunks.popleft()[1]
            return self.done
        if chunks:
            self._read_answers(timeout)
        while chunks and chunks[0][0] in self._acked:
            chunk, self.done = chunks.popleft()
            self._acked.discard(chunk)
            self._waiting.discard(chunk)
        return self.done

    def _read_answers(self, timeout: float) -> None:
        sock = self.sock
        pending = self.tls and sock.pending()
        if not pending and not self._poller.poll(int(timeout * 1000)):
            return
        try:
            data = sock.recv(65536)
        except (BlockingIOError, TimeoutError):
            return
        if not data:
            raise ConnectionResetError(104, "receiver closed the connection")
        self._unpacker.feed(data)
        for answer in self._unpacker:
            if isinstance(answer, dict) and isinstance(answer.get("ack"), str):
                if answer["ack"] in self._waiting:  # an unknown id (a server's mistake) is ignored
                    self._acked.add(answer["ack"])
            elif isinstance(answer, list) and answer and answer[0] == "HELO":
                raise ProtocolError("the receiver asks for shared-key authentication (HELO), which this output "
                                    "does not support")
            else:
                log.warning("forward: unexpected answer from the receiver ignored: %.200r", answer)


class ForwardOutput(DeliveryOutput):
    kind = "forward"

    def __init__(self, name: str, fmt: Format | str, opts: ForwardOptions, *, queue=None):
        super().__init__(name, fmt, opts, queue=queue)
        self.batch_count = opts.chunk_size
        self.window = 8 * opts.chunk_size  # 8 chunks waiting for their ack, at most
        self.batch_bytes = 8 << 20
        self.ack_timeout = opts.ack_timeout
        self._tls_context = None
        self._json_record = None
        if self.format.name == "json":
            from auoms_py.format import json as jsonfmt
            self._json_record = jsonfmt.format_record

    @property
    def target(self) -> str:
        return str(self.opts.address) + (" with TLS" if self.opts.tls else "")

    def open(self) -> None:
        if self.opts.tls is not None:
            self._tls_context = self.opts.tls.context()
        super().open()

    def connect(self) -> Link:
        opts = self.opts
        sock = net.open_stream(opts.address, timeout=opts.send_timeout, tls=opts.tls, context=self._tls_context)
        return ForwardLink(sock, opts.tag, require_ack=opts.require_ack, tls=opts.tls is not None)

    def write_event(self, event) -> None:
        self.counters["events"] += 1
        if self._json_record is None:
            entries = fluent.event_entries(event, self.opts.hostname, event_time=not self.opts.time_as_integer)
        else:
            event_time = not self.opts.time_as_integer
            entries = [msgpack.packb([fluent.entry_time(rec, event_time), json.loads(text)], use_bin_type=True)
                       for rec in event for text in [self._json_record(rec)] if text is not None]
        if entries:
            self.enqueue(entries)

    def write_messages(self, messages: list[bytes]) -> None:
        """Ready text (self-reports): one entry each, `{"message": text}` at the current time."""
        now = int(time.time())
        self.enqueue([msgpack.packb([now, {"message": m.decode("utf-8", "backslashreplace")}], use_bin_type=True)
                      for m in messages])
