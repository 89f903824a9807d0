"""Syslog output: one message per output record, framed as glibc's syslog(3) sends it, or RFC 5424.

Framing (facility user, severity info, tag auoms by default; no pid, as AUOMS sends through syslog(3)):

    rfc3164, unix socket:  <14>Dec  1 21:01:34 auoms: BODY          exactly what glibc 2.36 writes to /dev/log
    rfc3164, udp/tcp:      <14>Dec  1 21:01:34 HOST auoms: BODY     a remote receiver needs the host name
    rfc5424:               <14>1 2024-12-01T21:01:34.123456+00:00 HOST auoms - - - BODY

(`send_hostname: yes|no` overrides the host name choice for rfc3164. A local syslog daemon reading /dev/log does
not expect a host name there: rsyslog's imuxsock and journald would take it for the tag.)

Transports: a unix datagram socket (`socket:`, default /dev/log; a stream socket is used when the path is one, as
glibc does), `udp://HOST:PORT`, `tcp://HOST:PORT` with octet-counting (RFC 6587 3.4.1) or newline framing. The
send path is a `Transport` object (connect / send / close), so TLS or other transports plug in without touching
the queueing, and the in-memory `MessageQueue` can be replaced by a durable spool.

Delivery runs in a thread of its own, so a slow or absent receiver never stalls collection: messages wait in
memory (`queue_size`, oldest dropped and counted beyond it) and are sent in order; a message is removed from the
queue only after the transport accepted it. When the receiver is missing or goes away the output reports it once,
retries with a growing delay (retry_interval doubling up to retry_max) and reports when delivery resumes.

Size: a message longer than `max_size` (header included, default 64 KiB) is cut inside the value of `cmdline` (or
`proctitle`), keeping its beginning and adding the marker `...[N bytes cut]`, so that the fields after it (in
mstic `cmdline="..." containerid=`, which Sentinel's parsers need adjacent) stay intact and the line parseable.
"""
from __future__ import annotations

import collections
import copy
import errno
import logging
import os
import select
import socket
import threading
import time

from auoms_py.outputs.base import Format, Output
from auoms_py.service.config import FACILITIES, SEVERITIES, SyslogOptions

log = logging.getLogger("auoms_py.outputs.syslog")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
CUT_FIELDS = ("cmdline", "proctitle")  # where an oversize message is cut, in this order
CUT_MARKER = "...[{} bytes cut]"


# ---- framing ---------------------------------------------------------------------------------------------------------

class Framer:
    """Builds the syslog header for a send time; the header is cached for the current second (rfc3164)."""

    def __init__(self, opts: SyslogOptions):
        self.pri = FACILITIES[opts.facility] * 8 + SEVERITIES[opts.severity]
        self.protocol = opts.protocol
        self.tag = opts.tag
        self.hostname = opts.hostname
        if opts.send_hostname == "auto":
            self.with_host = opts.transport != "unix"
        else:
            self.with_host = opts.send_hostname == "yes"
        self._cached_second = -1
        self._cached = b""

    def header(self, now: float) -> bytes:
        if self.protocol == "rfc5424":
            return self._rfc5424(now)
        second = int(now)
        if second != self._cached_second:
            t = time.localtime(second)
            host = f"{self.hostname} " if self.with_host else ""
            # glibc: "<%d>" then strftime "%h %e %T " in the C locale, then "TAG: "
            text = (f"<{self.pri}>{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:"
                    f"{t.tm_sec:02d} {host}{self.tag}: ")
            self._cached = text.encode("ascii", "replace")
            self._cached_second = second
        return self._cached

    def _rfc5424(self, now: float) -> bytes:
        t = time.localtime(now)
        offset = t.tm_gmtoff
        sign = "+" if offset >= 0 else "-"
        offset = abs(offset)
        micro = int((now % 1) * 1_000_000)
        stamp = (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
                 f".{micro:06d}{sign}{offset // 3600:02d}:{offset % 3600 // 60:02d}")
        return f"<{self.pri}>1 {stamp} {self.hostname or '-'} {self.tag} - - - ".encode("ascii", "replace")


# ---- cutting oversize records ----------------------------------------------------------------------------------------

def fit_record(rec, fmt: Format, limit: int) -> tuple[bytes, int]:
    """The record's message, at most `limit` bytes, and how many bytes of cmdline/proctitle were cut (0: none)."""
    enc = fmt.encoding
    format_record = fmt.format_record
    return fit_records([rec], lambda recs: format_record(recs[0]).encode(enc, "backslashreplace"), limit)


def fit_records(records: list, render, limit: int) -> tuple[bytes, int]:
    """render(records) cut to at most `limit` bytes; returns (message, characters cut from values).

    The cut shortens the value of cmdline (then proctitle; the longest first) inside copies of the records and
    renders them again, so the format's own quoting and the fields after the value stay intact; the longest
    beginning that fits is kept (binary search: a rare path, a few renders). Only when there is nothing (left) to
    cut is the end of the message cut instead."""
    msg = render(records)
    if len(msg) <= limit:
        return msg, 0
    work = [_copy_record(r) for r in records]
    candidates = []
    for ri, rec in enumerate(records):
        for name in CUT_FIELDS:
            fi = _field_index(rec, name)
            if fi is not None and rec.fields[fi][1]:
                candidates.append((CUT_FIELDS.index(name), -len(rec.fields[fi][1]), ri, fi, name))
    candidates.sort()
    cut_total = 0
    for _order, _neg_len, ri, fi, name in candidates:
        value = records[ri].fields[fi][1]

        def attempt(keep: int) -> bytes:
            _set_cut_value(work[ri], records[ri], fi, name, value[:keep] + CUT_MARKER.format(len(value) - keep),
                           keep / len(value))
            return render(work)

        smallest = attempt(0)
        if len(smallest) > limit:  # not enough even without this value: cut it all, try the next one
            msg = smallest
            cut_total += len(value)
            continue
        good, good_msg, bad = 0, smallest, len(value)  # keep=good fits, keep=bad does not
        while bad - good > 1:
            mid = (good + bad) // 2
            candidate = attempt(mid)
            if len(candidate) <= limit:
                good, good_msg = mid, candidate
            else:
                bad = mid
        attempt(good)
        return good_msg, cut_total + len(value) - good
    # no cmdline/proctitle, or not enough: cut the end of the message (the line stays one line)
    marker = CUT_MARKER.format(len(msg) - limit + 24).encode()
    return msg[:limit - len(marker)] + marker, cut_total + len(msg) - limit + len(marker)


def _field_index(rec, name: str) -> int | None:
    for i, field in enumerate(rec.fields):
        if field[0] == name:
            return i
    return None


def _copy_record(rec):
    work = copy.copy(rec)
    work.fields = list(rec.fields)
    return work


def _set_cut_value(work, original, index: int, name: str, new_value: str, share: float) -> None:
    """Write the cut value; `share` is the part of the value kept (0..1), applied to the decoded arguments too."""
    fname, _old, style = work.fields[index]
    work.fields[index] = (fname, new_value, style)
    # formats that write the decoded attributes (json) see the same cut
    if name == "cmdline":
        if original.cmdline is not None:
            work.cmdline = new_value
        if original.argv is not None:
            work.argv = _cut_argv(original.argv, share)
    elif name == "proctitle" and original.proctitle_argv is not None:
        work.proctitle_argv = _cut_argv(original.proctitle_argv, share)


def _cut_argv(argv: list[str], share: float) -> list[str]:
    """The arguments cut to `share` of their total length; the last one kept ends with the marker."""
    full = sum(map(len, argv))
    keep = int(full * share)
    if keep >= full:
        return argv
    out = []
    total = 0
    for arg in argv:
        if total + len(arg) > keep:
            room = keep - total
            out.append(arg[:room] + CUT_MARKER.format(full - keep))
            return out
        out.append(arg)
        total += len(arg)
    return out


# ---- transports ------------------------------------------------------------------------------------------------------

class Transport:
    """The send path. connect() and send() raise OSError when the receiver cannot take the message;
    MessageTooLarge when this message can never be sent (it is then dropped, not retried)."""

    description = "?"

    def connect(self) -> None:
        raise NotImplementedError

    def send(self, message: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class MessageTooLarge(Exception):
    pass


class _SocketTransport(Transport):
    _sock: socket.socket | None = None

    def _send_datagram(self, message: bytes, what: str) -> None:
        try:
            self._sock.send(message)
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:
                raise MessageTooLarge(f"{len(message)} bytes is more than {what} takes") from None
            raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class UnixTransport(_SocketTransport):
    """A unix socket path: datagram (syslog's /dev/log), or stream when the path is a stream socket (glibc then
    ends each message with a NUL byte)."""

    def __init__(self, path: str, timeout: float = 5.0, sndbuf: int = 0):
        self.path = path
        self.timeout = timeout
        self.sndbuf = sndbuf
        self.description = f"unix:{path}"
        self._sock: socket.socket | None = None
        self._stream = False

    def connect(self) -> None:
        self.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(self.timeout)
            if self.sndbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            sock.connect(self.path)
            self._stream = False
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EPROTOTYPE:
                raise
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
            self._stream = True
        self._sock = sock

    def send(self, message: bytes) -> None:
        if self._stream:
            self._sock.sendall(message + b"\0")
        else:
            self._send_datagram(message, self.path)


class UdpTransport(_SocketTransport):
    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.description = f"udp://{host}:{port}"
        self.confirm_wait = 0.05
        self._sock: socket.socket | None = None
        self._confirm = True

    def connect(self) -> None:
        self.close()
        family, kind, proto, _name, addr = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)
        try:
            sock.settimeout(self.timeout)
            sock.connect(addr)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._confirm = True

    def send(self, message: bytes) -> None:
        self._send_datagram(message, "a UDP datagram")
        # A receiver that is not listening answers with ICMP port unreachable, reported on the socket: the datagram
        # just sent is then known lost, and is sent again later. On a local address the answer is there before
        # send() returns; the first datagram of a new connection (after a failure) waits for it a little longer.
        if self._confirm:
            time.sleep(self.confirm_wait)
        err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
        self._confirm = False


class TcpTransport(Transport):
    def __init__(self, host: str, port: int, *, framing: str = "octet-counting", timeout: float = 5.0):
        self.host = host
        self.port = port
        self.framing = framing
        self.timeout = timeout
        self.description = f"tcp://{host}:{port}"
        self._sock: socket.socket | None = None
        self._poll: select.poll | None = None

    def connect(self) -> None:
        self.close()
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._sock = sock
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN | select.POLLRDHUP if hasattr(select, "POLLRDHUP")
                            else select.POLLIN)

    def send(self, message: bytes) -> None:
        # Plain TCP syslog has no acknowledgement: a receiver that closed the connection would silently swallow
        # what is written next. Look for its FIN/RST before each message and reconnect instead.
        if self._poll.poll(0):
            try:
                peek = self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                peek = b"?"
            if not peek:
                raise ConnectionResetError(errno.ECONNRESET, "receiver closed the connection")
        if self.framing == "octet-counting":
            frame = b"%d %b" % (len(message), message)
        else:
            frame = message + b"\n"
        try:
            self._sock.sendall(frame)
        except OSError:
            self.close()  # a partly written frame would corrupt the stream: start a new connection
            raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._poll = None


def make_transport(opts: SyslogOptions) -> Transport:
    if opts.transport == "udp":
        return UdpTransport(opts.host, opts.port, timeout=opts.send_timeout)
    if opts.transport == "tcp":
        return TcpTransport(opts.host, opts.port, framing=opts.framing, timeout=opts.send_timeout)
    return UnixTransport(opts.socket, timeout=opts.send_timeout, sndbuf=max(0, opts.max_size * 2 + 4096))


# ---- queue -------------------------------------------------------------------------------------------------------------

class MessageQueue:
    """Messages waiting for delivery, in memory, bounded by count (oldest dropped beyond it).

    The writer thread calls put(); the sender calls peek() and, once the transport took the message, done().
    A durable spool can stand in for it with the same four methods."""

    def __init__(self, limit: int):
        self.limit = limit
        self.dropped = 0
        self._items: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()

    def put(self, messages: list[bytes]) -> int:
        """Queue messages; returns how many old ones were dropped to make room."""
        items = self._items
        items.extend(messages)
        dropped = 0
        if len(items) > self.limit:
            with self._lock:
                while len(items) > self.limit:
                    items.popleft()
                    dropped += 1
            self.dropped += dropped
        return dropped

    def peek(self) -> bytes | None:
        try:
            return self._items[0]
        except IndexError:
            return None

    def done(self, message: bytes) -> None:
        with self._lock:
            if self._items and self._items[0] is message:
                self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)


# ---- the output ------------------------------------------------------------------------------------------------------

class SyslogOutput(Output):
    kind = "syslog"

    def __init__(self, name: str, fmt: Format | str, opts: SyslogOptions, *, transport: Transport | None = None,
                 queue: MessageQueue | None = None):
        super().__init__(name, fmt)
        self.opts = opts
        self.framer = Framer(opts)
        self.transport = transport or make_transport(opts)
        self.queue = queue or MessageQueue(opts.queue_size)
        self.counters.update(sent=0, cut=0, cut_bytes=0, too_large=0, reconnects=0, queued=0, undelivered=0)
        self.connected = False
        self.down_since: float | None = None  # monotonic time delivery stopped working
        self._down_reason = ""
        self._waiting_at_down = 0
        self._wake = threading.Event()  # set by the writer: messages are waiting
        self._closing_event = threading.Event()  # set by close(): ends retry sleeps early
        self._closing = False
        self._drain_deadline = 0.0
        self._thread: threading.Thread | None = None
        self._warned_drop = 0

    def describe(self) -> str:
        return f"syslog output {self.name!r} ({self.format.name} to {self.transport.description})"

    # -- writer side (agent thread) --

    def open(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"syslog-{self.name}", daemon=True)
        self._thread.start()

    def write_event(self, event) -> None:
        self.counters["events"] += 1
        header = self.framer.header(time.time())
        limit = self.opts.max_size - len(header)
        fmt = self.format
        if fmt.format_record is None:  # oms: one message per event
            bodies = fmt.messages(event)
            bodies = [b if len(b) <= limit else self._cut_event(event, limit) for b in bodies]
        else:
            enc = fmt.encoding
            bodies = []
            format_record = fmt.format_record
            for rec in event:
                text = format_record(rec)
                if text is None:  # a record type this format does not write
                    continue
                body = text.encode(enc, "backslashreplace")
                if len(body) > limit:
                    body, cut = fit_record(rec, fmt, limit)
                    self.counters["cut"] += 1
                    self.counters["cut_bytes"] += cut
                bodies.append(body)
        self._enqueue([header + b for b in bodies])

    def _cut_event(self, event, limit: int) -> bytes:
        """oms: one message for the whole event; cut the records' cmdline/proctitle until it fits."""
        text, cut = fit_records(event, lambda recs: self.format.messages(recs)[0], limit)
        self.counters["cut"] += 1
        self.counters["cut_bytes"] += cut
        return text

    def write_messages(self, messages: list[bytes]) -> None:
        """Send ready bodies (no header yet), e.g. self-reports; cut at the end when too long."""
        header = self.framer.header(time.time())
        limit = self.opts.max_size - len(header)
        self._enqueue([header + (m if len(m) <= limit else m[:limit]) for m in messages])

    def _enqueue(self, messages: list[bytes]) -> None:
        self.counters["messages"] += len(messages)
        dropped = self.queue.put(messages)
        if dropped:
            self.counters["dropped"] += dropped
            if self.counters["dropped"] >= self._warned_drop * 2 or not self._warned_drop:
                self._warned_drop = self.counters["dropped"]
                log.error("%s: queue full (%d messages): dropped the oldest, %d lost so far", self.describe(),
                          self.queue.limit, self.counters["dropped"])

    def flush(self) -> None:
        if len(self.queue):
            self._wake.set()

    def close(self) -> None:
        """Stop after delivering what is queued, waiting up to drain_timeout seconds for the receiver."""
        if self._thread is None:
            return
        self._drain_deadline = time.monotonic() + self.opts.drain_timeout
        self._closing = True
        self._closing_event.set()
        self._wake.set()
        self._thread.join(self.opts.drain_timeout + self.opts.send_timeout + 1)
        left = len(self.queue)
        self.counters["undelivered"] = left
        if left:
            log.error("%s: %d messages not delivered at exit (receiver: %s)", self.describe(), left,
                      self._down_reason or "too slow")
        self._thread = None

    def status(self) -> dict:
        self.counters["queued"] = len(self.queue)
        return dict(self.counters)

    # -- sender side (own thread) --

    def _run(self) -> None:
        delay = self.opts.retry_interval
        sent_on_connection = 0
        queue = self.queue
        transport = self.transport
        counters = self.counters
        while True:
            self._wake.clear()
            message = queue.peek()
            if message is None:
                if self._closing:
                    break
                self._wake.wait(1.0)
                continue
            if self._closing and time.monotonic() >= self._drain_deadline:
                break
            if not self.connected:
                try:
                    transport.connect()
                except OSError as exc:
                    self._went_down(exc)
                    self._sleep(delay)
                    delay = min(delay * 2, self.opts.retry_max)
                    continue
                self.connected = True
                sent_on_connection = 0
            try:
                transport.send(message)
            except MessageTooLarge as exc:
                queue.done(message)
                counters["too_large"] += 1
                counters["dropped"] += 1
                log.error("%s: message dropped: %s", self.describe(), exc)
                continue
            except OSError as exc:
                counters["errors"] += 1
                transport.close()
                self.connected = False
                counters["reconnects"] += 1
                self._went_down(exc)
                if not sent_on_connection:  # a fresh connection failed at once (udp: port unreachable): wait
                    self._sleep(delay)
                    delay = min(delay * 2, self.opts.retry_max)
                continue  # a connection that worked until now: reconnect at once
            queue.done(message)
            sent_on_connection += 1
            counters["sent"] += 1
            counters["bytes"] += len(message)
            if self.down_since is not None:
                self._came_back()
            delay = self.opts.retry_interval
        transport.close()
        self.connected = False

    def _sleep(self, seconds: float) -> None:
        """Wait before the next connection attempt; new messages do not shorten it, closing does."""
        if self._closing:
            time.sleep(max(0.0, min(seconds, self._drain_deadline - time.monotonic())))
        else:
            self._closing_event.wait(seconds)

    def _went_down(self, exc: OSError) -> None:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if self.down_since is None:
            self.down_since = time.monotonic()
            self._waiting_at_down = len(self.queue)
            log.warning("%s: receiver unavailable (%s); keeping messages in memory (up to %d) and retrying",
                        self.describe(), reason, self.queue.limit)
        self._down_reason = reason

    def _came_back(self) -> None:
        log.warning("%s: delivering again after %.1f s (%d messages were waiting)", self.describe(),
                    time.monotonic() - self.down_since, max(self._waiting_at_down, len(self.queue)))
        self.down_since = None
        self._down_reason = ""
