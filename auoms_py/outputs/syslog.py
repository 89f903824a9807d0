"""Syslog output: one message per output record, framed as glibc's syslog(3) sends it, or RFC 5424.

Framing (facility user, severity info, tag auoms by default; no pid, as AUOMS sends through syslog(3)):

    rfc3164, unix socket:  <14>Dec  1 21:01:34 auoms: BODY          exactly what glibc 2.36 writes to /dev/log
    rfc3164, udp/tcp:      <14>Dec  1 21:01:34 HOST auoms: BODY     a remote receiver needs the host name
    rfc5424:               <14>1 2024-12-01T21:01:34.123456+00:00 HOST auoms - - - BODY

(`send_hostname: yes|no` overrides the host name choice for rfc3164. A local syslog daemon reading /dev/log does
not expect a host name there: rsyslog's imuxsock and journald would take it for the tag.)

Transports: a unix datagram socket (`socket:`, default /dev/log; a stream socket is used when the path is one, as
glibc does), `udp://HOST:PORT`, `tcp://HOST:PORT` with octet-counting (RFC 6587 3.4.1) or newline framing, and TLS
over TCP (`tls: {ca, cert, key}`). Each connection is a `Link` (auoms_py.outputs.delivery).

Delivery runs in a thread of its own (auoms_py.outputs.delivery), so a slow or absent receiver never stalls
collection: messages wait in the durable spool (`spool:`, the agent's default) or in memory (`spool: false`:
`queue_size` messages, oldest dropped and counted beyond it) and are sent in order. A message leaves the queue only
once it is confirmed: a datagram once the socket took it, a TCP/TLS frame once the receiver's TCP acknowledged its
bytes, so what was in flight when a receiver went away is sent again on the next connection. When the receiver is
missing or goes away the output reports it once, retries with a growing delay (retry_interval doubling up to
retry_max) and reports when delivery resumes.

Size: a message longer than `max_size` (header included, default 64 KiB) is cut inside the value of `cmdline` (or
`proctitle`), keeping its beginning and adding the marker `...[N bytes cut]`, so that the fields after it (in
mstic `cmdline="..." containerid=`, which Sentinel's parsers need adjacent) stay intact and the line parseable.
"""
from __future__ import annotations

import copy
import errno
import logging
import os
import socket
import time

from auoms_py.outputs import net
from auoms_py.outputs.base import Format
from auoms_py.outputs.delivery import DeliveryOutput, Link, MemoryQueue, StreamLink
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


# ---- links (one connection each) ---------------------------------------------------------------------------------

class MessageTooLarge(Exception):
    pass


class DatagramLink(Link):
    """A connected datagram socket (unix /dev/log, UDP): a message is confirmed once the socket took it; one that
    can never be sent (EMSGSIZE) is dropped and counted, not retried."""

    def __init__(self, sock: socket.socket, what: str, *, confirm_wait: float = 0.0):
        self.sock = sock
        self.what = what
        self.count = 0
        self.confirm_wait = confirm_wait  # udp: wait this long after the first datagram for ICMP unreachable

    def send(self, messages: list[bytes]) -> int:
        refused = 0
        sock = self.sock
        for message in messages:
            try:
                sock.send(message)
            except OSError as exc:
                if exc.errno != errno.EMSGSIZE:
                    raise
                refused += 1
                log.error("syslog: message of %d bytes dropped: more than %s takes", len(message), self.what)
            if self.confirm_wait:
                # A UDP receiver that is not listening answers with ICMP port unreachable, reported on the socket:
                # what was sent is then known lost and sent again on the next link. On a local address the answer
                # is there before send() returns; the first datagram of a link waits for it a little longer.
                if self.count == 0:
                    time.sleep(self.confirm_wait)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
            self.count += 1
        return refused

    def confirmed(self, timeout: float) -> int:
        return self.count


def _unix_link(path: str, timeout: float, sndbuf: int) -> Link:
    """syslog's /dev/log is a datagram socket; when the path is a stream socket, glibc ends each message with NUL."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        if sndbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sock.connect(path)
        return DatagramLink(sock, path)
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EPROTOTYPE:
            raise
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return StreamLink(sock, lambda m: m + b"\0")


def _udp_link(host: str, port: int, timeout: float) -> Link:
    family, kind, proto, _name, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    sock = socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)
    try:
        sock.settimeout(timeout)
        sock.connect(addr)
    except OSError:
        sock.close()
        raise
    return DatagramLink(sock, "a UDP datagram", confirm_wait=0.05)


def _octet_counted(message: bytes) -> bytes:
    return b"%d %b" % (len(message), message)  # RFC 6587 3.4.1


def _newline_framed(message: bytes) -> bytes:
    return message + b"\n"


# the in-memory queue used with `spool: false` (same interface as the durable spool)
MessageQueue = MemoryQueue


# ---- the output ------------------------------------------------------------------------------------------------------

class SyslogOutput(DeliveryOutput):
    kind = "syslog"

    def __init__(self, name: str, fmt: Format | str, opts: SyslogOptions, *, queue=None):
        super().__init__(name, fmt, opts, queue=queue)
        self.framer = Framer(opts)
        self.counters.update(cut=0, cut_bytes=0)
        self._tls_context = None

    @property
    def target(self) -> str:
        opts = self.opts
        if opts.transport == "unix":
            return f"unix:{opts.socket}"
        return f"{opts.transport}://{opts.host}:{opts.port}" + (" with TLS" if opts.tls else "")

    def open(self) -> None:
        if self.opts.tls is not None:
            self._tls_context = self.opts.tls.context()  # a missing or bad certificate file stops the start here
        super().open()

    def connect(self) -> Link:
        opts = self.opts
        if opts.transport == "udp":
            return _udp_link(opts.host, opts.port, opts.send_timeout)
        if opts.transport == "tcp":
            address = net.Address("tcp", host=opts.host, port=opts.port)
            sock = net.open_stream(address, timeout=opts.send_timeout, tls=opts.tls, context=self._tls_context)
            frame = _octet_counted if opts.framing == "octet-counting" else _newline_framed
            return StreamLink(sock, frame, tls=opts.tls is not None)
        return _unix_link(opts.socket, opts.send_timeout, max(0, opts.max_size * 2 + 4096))

    # -- writer side (agent thread) --

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
        self.enqueue([header + b for b in bodies])

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
        self.enqueue([header + (m if len(m) <= limit else m[:limit]) for m in messages])
