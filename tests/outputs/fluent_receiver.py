"""A forward-protocol server for tests, written from the Fluentd Forward Protocol Specification v1
(https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1). Fluentd and Fluent Bit are not
packaged on Debian 12 (and their plugin registry is unreachable here), so the output is tested against the
specification instead of a real Fluentd. What the server checks, as the spec says a server does:

- a message is a msgpack array: Message mode `[tag, time, record, option?]`, Forward mode
  `[tag, [[time, record], ...], option?]`, PackedForward `[tag, bin|str of concatenated entries, option?]`
  (CompressedPackedForward when option.compressed == "gzip");
- tag is a str; time an integer or EventTime (ext type 0, 8 bytes: seconds and nanoseconds, big-endian);
  record a map;
- option.size, when present, equals the number of entries;
- option.chunk, when present, is answered with `{"ack": chunk}` once the entries are taken.

Faults for the tests: `lose_acks` (take the next N chunks but never answer them), `close_after_chunks` (take N
chunks, then close the connection without answering the last one), `require_ack_ids` (reject chunks without an id),
`send_helo` (start the handshake phase a server with shared-key auth would), and stop()/start() on the same address.
"""
from __future__ import annotations

import gzip
import os
import socket
import ssl
import struct
import threading
import time

import msgpack


class ProtocolViolation(AssertionError):
    pass


class ForwardReceiver:
    def __init__(self, address: str | tuple[str, int], *, ssl_context: ssl.SSLContext | None = None):
        self.address = address  # a unix socket path or (host, port)
        self.ssl_context = ssl_context
        self.entries: list[tuple[str, object, dict, float]] = []  # (tag, time, record, arrival)
        self.chunks: list[tuple[str | None, int]] = []  # (chunk id, entries) in arrival order
        self.violations: list[str] = []
        self.lose_acks = 0
        self.close_after_chunks: int | None = None
        self.send_helo = False
        self.connections = 0
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._running = False

    # ---- life cycle ---------------------------------------------------------------------------------------------

    def start(self) -> "ForwardReceiver":
        if isinstance(self.address, str):
            if os.path.exists(self.address):
                os.unlink(self.address)
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(self.address)
        else:
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(self.address)
        server.listen(16)
        server.settimeout(0.2)
        self._server = server
        self._running = True
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop listening and drop every connection (as a receiver that goes away does)."""
        self._running = False
        for thread in self._threads:
            thread.join(5)
        self._threads = []
        if self._server is not None:
            self._server.close()
            self._server = None
        with self._lock:
            for conn in self._conns:
                try:
                    conn.close()
                except OSError:
                    pass
            self._conns = []
        if isinstance(self.address, str) and os.path.exists(self.address):
            os.unlink(self.address)

    def __enter__(self) -> "ForwardReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- results ------------------------------------------------------------------------------------------------

    def records(self) -> list[dict]:
        with self._lock:
            return [record for _tag, _time, record, _at in self.entries]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.entries) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.records()

    # ---- serving ------------------------------------------------------------------------------------------------

    def _accept(self) -> None:
        while self._running:
            try:
                conn, _peer = self._server.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            if self.ssl_context is not None:
                try:
                    conn = self.ssl_context.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    conn.close()
                    continue
            conn.settimeout(0.2)
            with self._lock:
                self._conns.append(conn)
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        try:
            if self.send_helo:
                conn.sendall(msgpack.packb(["HELO", {"nonce": os.urandom(16), "auth": b"", "keepalive": True}]))
            while self._running:
                try:
                    data = conn.recv(1 << 16)
                except (TimeoutError, socket.timeout):
                    continue
                except OSError:
                    return
                if not data:
                    return
                unpacker.feed(data)
                for message in unpacker:
                    if not self._take(conn, message):
                        conn.close()
                        return
        except OSError:  # the sender went away
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _violation(self, text: str) -> bool:
        self.violations.append(text)
        return False

    def _take(self, conn: socket.socket, message) -> bool:
        """Check and record one message; answer its chunk. False: close the connection."""
        if message is None:  # heartbeat over TCP (v0): allowed
            return True
        if not isinstance(message, list) or len(message) not in (2, 3, 4) or not isinstance(message[0], str):
            return self._violation(f"not [tag, ...]: {message!r:.200}")
        tag = message[0]
        if isinstance(message[1], list):  # Forward mode
            entries = message[1]
            option = message[2] if len(message) > 2 else {}
        elif isinstance(message[1], (bytes, str)):  # PackedForward (maybe compressed)
            option = message[2] if len(message) > 2 else {}
            blob = message[1].encode("latin-1") if isinstance(message[1], str) else message[1]
            if isinstance(option, dict) and option.get("compressed") == "gzip":
                blob = gzip.decompress(blob)
            entries = list(_unpack_all(blob))
        else:  # Message mode
            if len(message) < 3:
                return self._violation(f"message mode without a record: {message!r:.200}")
            entries = [[message[1], message[2]]]
            option = message[3] if len(message) > 3 else {}
        if not isinstance(option, dict):
            return self._violation(f"option is not a map: {option!r:.200}")
        for entry in entries:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)
                    and (isinstance(entry[0], int) or _is_event_time(entry[0]))):
                return self._violation(f"bad entry: {entry!r:.200}")
        if "size" in option and option["size"] != len(entries):
            return self._violation(f"option size {option['size']} != {len(entries)} entries")
        chunk = option.get("chunk")
        if chunk is not None and not isinstance(chunk, str):
            return self._violation(f"chunk id must be a str, got {type(chunk).__name__}")
        now = time.monotonic()
        with self._lock:
            self.entries.extend((tag, e[0], e[1], now) for e in entries)
            self.chunks.append((chunk, len(entries)))
            taken = len(self.chunks)
        if self.close_after_chunks is not None and taken >= self.close_after_chunks:
            self.close_after_chunks = None
            return False  # taken, never answered: the sender must send it again
        if chunk is not None:
            if self.lose_acks > 0:
                self.lose_acks -= 1
            else:
                try:
                    conn.sendall(msgpack.packb({"ack": chunk}))
                except OSError:  # the sender went away: it will send the chunk again
                    return False
        return True


def _is_event_time(value) -> bool:
    return isinstance(value, msgpack.ExtType) and value.code == 0 and len(value.data) == 8


def _unpack_all(blob: bytes):
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(blob)
    yield from unpacker


def event_time(value) -> float:
    if _is_event_time(value):
        sec, nsec = struct.unpack(">II", value.data)
        return sec + nsec / 1e9
    return float(value)
