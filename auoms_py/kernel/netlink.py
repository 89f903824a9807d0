"""The kernel audit netlink protocol (NETLINK_AUDIT): status, audit pid, rules, reading records.

API (one socket per ``AuditNetlink``; needs root, or CAP_AUDIT_READ for a read-only multicast socket)::

    from auoms_py.kernel.netlink import AuditNetlink
    with AuditNetlink() as nl:                       # unicast: requests, or reading as the audit daemon
        st = nl.get_status()                         # AuditStatus(enabled=1, failure=1, pid=0, backlog_limit=64, ...)
        nl.set_status(backlog_limit=8192, backlog_wait_time=0)   # only the fields given are sent (mask)
        raws = nl.list_rules()                       # list[bytes]: one struct audit_rule_data each
        nl.add_rule(raw); nl.del_rule(raw)           # raises AuditNetlinkError (an OSError) with the errno
        nl.register()                                # become the audit daemon (pid = this process)
        rec = nl.recv_record(timeout=0.5)            # (msg_type, text) or None when the timeout passes
        nl.deregister()                              # pid 0 again: ALWAYS do this before exit
    with AuditNetlink(multicast=True) as nl:         # group AUDIT_NLGRP_READLOG: read-only copy of every record
        msg_type, text = nl.recv_record(timeout=1.0) or (None, None)

Records are ``(msg_type, text)``: the netlink type (1300 SYSCALL, 1320 EOE ...) and the text
``audit(1700000000.123:42): field=value ...`` decoded as latin-1 (one char per byte, lossless).

Kernel quirks handled here (see docs/machine-notes):
- In audit records the kernel sets ``nlmsg_len`` to the payload length only, so the record's length is taken from
  the datagram (one record per datagram), never from ``nlmsg_len``.
- The ACK of a request may arrive before or after its reply; both are awaited (matched by sequence number).
- Records keep arriving while a request waits for its reply: they are queued, and ``recv_record`` returns them
  first, so none is lost.
- A blocking ``recv`` would make SIGTERM wait for the next record: ``recv_record`` waits with ``poll`` and a timeout.
- The receive buffer is large (SO_RCVBUFFORCE as root). When it overflows anyway the kernel drops records and
  ``recv`` fails with ENOBUFS: that is counted in ``enobufs`` (records lost, count unknown) and reading goes on.
"""
from __future__ import annotations

import collections
import dataclasses
import errno
import os
import select
import socket
import struct
import time

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1

# netlink message types and flags
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4

# audit control messages (1000-1099 command the audit system)
AUDIT_GET = 1000
AUDIT_SET = 1001
AUDIT_USER = 1005
AUDIT_SIGNAL_INFO = 1010
AUDIT_ADD_RULE = 1011
AUDIT_DEL_RULE = 1012
AUDIT_LIST_RULES = 1013
AUDIT_SET_FEATURE = 1018
AUDIT_GET_FEATURE = 1019
AUDIT_FIRST_USER_MSG = 1100  # every type from here on is a record (user, daemon, kernel event)

AUDIT_STATUS_ENABLED = 0x0001
AUDIT_STATUS_FAILURE = 0x0002
AUDIT_STATUS_PID = 0x0004
AUDIT_STATUS_RATE_LIMIT = 0x0008
AUDIT_STATUS_BACKLOG_LIMIT = 0x0010
AUDIT_STATUS_BACKLOG_WAIT_TIME = 0x0020
AUDIT_STATUS_LOST = 0x0040

_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_NLMSG_TYPE = struct.Struct("=H")  # nlmsg_type, at offset 4 of the header
_STATUS = struct.Struct("=11I")  # struct audit_status, 11 x __u32 (kernel >= 5.9; older kernels send 10)
_RECV_SIZE = 1 << 16  # larger than any audit record (MAX_AUDIT_MESSAGE_LENGTH 8970) or reply
_REQUEST_NAMES = {AUDIT_GET: "AUDIT_GET", AUDIT_SET: "AUDIT_SET", AUDIT_ADD_RULE: "AUDIT_ADD_RULE",
                  AUDIT_DEL_RULE: "AUDIT_DEL_RULE", AUDIT_LIST_RULES: "AUDIT_LIST_RULES", AUDIT_USER: "AUDIT_USER",
                  AUDIT_GET_FEATURE: "AUDIT_GET_FEATURE", AUDIT_SET_FEATURE: "AUDIT_SET_FEATURE"}

DEFAULT_RCVBUF = 16 * 1024 * 1024
DEFAULT_REQUEST_TIMEOUT = 5.0


class AuditNetlinkError(OSError):
    """The kernel refused a request: ``errno`` is the kernel's error (EPERM, EEXIST, ENOENT, EINVAL ...)."""


@dataclasses.dataclass(frozen=True)
class AuditStatus:
    """Kernel audit status (struct audit_status), as `auditctl -s` prints it."""
    enabled: int  # 0 off, 1 on, 2 on and locked (immutable: rules and status can no longer change until reboot)
    failure: int  # 0 silent, 1 printk, 2 panic when a record cannot be delivered
    pid: int  # process registered as audit daemon, 0 = none
    rate_limit: int  # records per second, 0 = unlimited
    backlog_limit: int  # records queued for the daemon before the kernel waits/drops
    lost: int  # records the kernel dropped since boot (or since the last reset)
    backlog: int  # records queued right now
    feature_bitmap: int
    backlog_wait_time: int  # jiffies an audited task may wait when the backlog is full
    backlog_wait_time_actual: int = 0

    @property
    def immutable(self) -> bool:
        return self.enabled == 2

    def as_text(self) -> str:
        """The `auditctl -s` layout (first lines), one `name value` a line."""
        names = ("enabled", "failure", "pid", "rate_limit", "backlog_limit", "lost", "backlog",
                 "backlog_wait_time", "backlog_wait_time_actual")
        return "\n".join(f"{name} {getattr(self, name)}" for name in names)


_SETTABLE = {
    "enabled": AUDIT_STATUS_ENABLED,
    "failure": AUDIT_STATUS_FAILURE,
    "pid": AUDIT_STATUS_PID,
    "rate_limit": AUDIT_STATUS_RATE_LIMIT,
    "backlog_limit": AUDIT_STATUS_BACKLOG_LIMIT,
    "backlog_wait_time": AUDIT_STATUS_BACKLOG_WAIT_TIME,
    "lost": AUDIT_STATUS_LOST,  # any value: resets the kernel's lost counter
}


def _is_record(msg_type: int) -> bool:
    return msg_type >= AUDIT_FIRST_USER_MSG


class AuditNetlink:
    """One NETLINK_AUDIT socket. Not thread-safe: use one per thread."""

    def __init__(self, *, multicast: bool = False, rcvbuf: int = DEFAULT_RCVBUF,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        self.multicast = multicast
        self.request_timeout = request_timeout
        self.enobufs = 0  # receive-buffer overflows (the kernel dropped records for this socket)
        self.records_received = 0
        self._seq = int(time.monotonic_ns() & 0x7FFFFFFF)
        self._queued: collections.deque[tuple[int, str]] = collections.deque()
        self._buf = bytearray(_RECV_SIZE)
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_AUDIT)
        try:
            self._set_rcvbuf(rcvbuf)
            self._sock.bind((0, (1 << (AUDIT_NLGRP_READLOG - 1)) if multicast else 0))
            self._poll = select.poll()
            self._poll.register(self._sock.fileno(), select.POLLIN)
        except BaseException:
            self._sock.close()
            raise
        self.portid = self._sock.getsockname()[0]

    def _set_rcvbuf(self, size: int) -> None:
        if size <= 0:
            return
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)  # ignores rmem_max; needs CAP_NET_ADMIN
        except PermissionError:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)  # capped at net.core.rmem_max

    @property
    def rcvbuf(self) -> int:
        """Receive buffer size the kernel actually granted (it doubles the requested value)."""
        return self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "AuditNetlink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- status ---------------------------------------------------------------------------------------------------

    def get_status(self) -> AuditStatus:
        payload = self.request(AUDIT_GET, b"", reply_type=AUDIT_GET)[0]
        padded = bytes(payload[:_STATUS.size]).ljust(_STATUS.size, b"\0")
        (_mask, enabled, failure, pid, rate_limit, backlog_limit, lost, backlog, feature_bitmap,
         wait_time, wait_time_actual) = _STATUS.unpack(padded)
        return AuditStatus(enabled, failure, pid, rate_limit, backlog_limit, lost, backlog, feature_bitmap,
                           wait_time, wait_time_actual)

    def set_status(self, **values: int) -> None:
        """Set the named status fields only (enabled, failure, pid, rate_limit, backlog_limit, backlog_wait_time,
        lost). Each is sent with its mask bit, as the kernel applies them one by one; a refusal raises."""
        mask = 0
        fields = dict.fromkeys(("enabled", "failure", "pid", "rate_limit", "backlog_limit", "lost"), 0)
        wait_time = 0
        for name, value in values.items():
            if name not in _SETTABLE:
                raise TypeError(f"set_status: unknown field {name!r}")
            mask |= _SETTABLE[name]
            if name == "backlog_wait_time":
                wait_time = int(value)
            else:
                fields[name] = int(value)
        if not mask:
            return
        payload = _STATUS.pack(mask, fields["enabled"], fields["failure"], fields["pid"], fields["rate_limit"],
                               fields["backlog_limit"], fields["lost"], 0, 0, wait_time, 0)
        self.request(AUDIT_SET, payload)

    def register(self) -> None:
        """Become the audit daemon: the kernel then sends every record to this socket (unicast, with flow control:
        audited tasks wait up to backlog_wait_time when nobody reads). Call deregister() before exiting."""
        self.set_status(pid=os.getpid())  # the kernel wants the thread group id, i.e. the process id

    def deregister(self) -> None:
        """Give up the audit pid (only the registered process may set 0)."""
        self.set_status(pid=0)

    # ---- rules ----------------------------------------------------------------------------------------------------

    def list_rules(self) -> list[bytes]:
        """Every rule in the kernel, in kernel order, as raw struct audit_rule_data."""
        return [bytes(p) for p in self.request(AUDIT_LIST_RULES, b"", reply_type=AUDIT_LIST_RULES, multi=True)]

    def add_rule(self, rule_data: bytes) -> None:
        """Add one rule (raw struct audit_rule_data). EEXIST when the kernel already has an identical rule."""
        self.request(AUDIT_ADD_RULE, rule_data)

    def del_rule(self, rule_data: bytes) -> None:
        """Delete the rule identical to rule_data. ENOENT when the kernel has none."""
        self.request(AUDIT_DEL_RULE, rule_data)

    def send_user_message(self, msg_type: int, text: str) -> None:
        """Log a user-space record (AUDIT_USER_* type, 1100-1199 or 2100-2999) through the kernel."""
        self.request(msg_type, text.encode("latin-1") + b"\0")

    # ---- requests -------------------------------------------------------------------------------------------------

    def request(self, msg_type: int, payload: bytes, *, reply_type: int | None = None,
                multi: bool = False) -> list[bytes]:
        """Send one request with an ACK asked for; return the reply payloads (none when reply_type is None).

        Waits for the ACK and, when a reply is expected, for the reply (multi: for NLMSG_DONE), in either order.
        Records arriving meanwhile are queued for recv_record()."""
        self._seq = (self._seq + 1) & 0x7FFFFFFF or 1
        seq = self._seq
        payload = bytes(payload).ljust((len(payload) + 3) & ~3, b"\0")  # NLMSG_SPACE, as libaudit sends it
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), msg_type, NLM_F_REQUEST | NLM_F_ACK, seq, 0)
        self._sock.sendto(header + payload, (0, 0))
        name = _REQUEST_NAMES.get(msg_type, str(msg_type))
        replies: list[bytes] = []
        acked = False
        done = reply_type is None
        deadline = time.monotonic() + self.request_timeout
        while not (acked and done):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._wait_readable(remaining):
                raise TimeoutError(f"{name}: no answer from the kernel within {self.request_timeout:g} s")
            for rtype, rflags, rseq, body in self._read_datagram():
                if _is_record(rtype):
                    self._queued.append((rtype, body))
                    continue
                if rseq != seq:
                    continue  # a late answer to an earlier request that timed out
                if rtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0] if len(body) >= 4 else errno.EPROTO
                    if code:
                        raise AuditNetlinkError(code, f"{name}: {os.strerror(code)}")
                    acked = True
                elif rtype == NLMSG_DONE:
                    done = True
                elif rtype == reply_type:
                    replies.append(body)
                    if not multi:
                        done = True
        return replies

    # ---- records --------------------------------------------------------------------------------------------------

    def recv_record(self, timeout: float | None = None) -> tuple[int, str] | None:
        """The next audit record as (msg_type, text), or None when `timeout` seconds pass without one
        (None = wait forever; a signal handler's exception still interrupts the wait)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._queued:
                msg_type, body = self._queued.popleft()
                self.records_received += 1
                return msg_type, _record_text(body)
            if deadline is None:
                wait = None
            else:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    return None
            if not self._wait_readable(wait):
                return None
            for rtype, _flags, _seq, body in self._read_datagram():
                if _is_record(rtype):
                    self._queued.append((rtype, body))
                # anything else: an answer to a request that gave up waiting; nobody wants it now

    def recv_records(self, timeout: float | None = None, limit: int = 1024) -> list[tuple[int, str]]:
        """Up to `limit` records: waits up to `timeout` for the first, then takes what is already readable."""
        first = self.recv_record(timeout)
        if first is None:
            return []
        out = [first]
        while len(out) < limit:
            rec = self.recv_record(0)
            if rec is None:
                break
            out.append(rec)
        return out

    def read_available(self, limit: int = 4096) -> list[tuple[int, str]]:
        """Records queued or readable right now, up to `limit`, without waiting: one non-blocking recv per
        datagram and no poll per record (for a caller whose own poll said the socket is readable)."""
        out = []
        queued = self._queued
        while queued and len(out) < limit:
            msg_type, body = queued.popleft()
            out.append((msg_type, _record_text(body)))
        recv = self._sock.recv
        message_type = _NLMSG_TYPE.unpack_from
        while len(out) < limit:
            try:
                data = recv(_RECV_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.enobufs += 1  # the kernel dropped records for us; the caller's next poll comes back
                break
            rtype = message_type(data, 4)[0] if len(data) >= _NLMSGHDR.size else 0
            if rtype >= AUDIT_FIRST_USER_MSG:
                # the usual datagram: one record, whose length is the datagram's (see _split_datagram)
                out.append((rtype, data[_NLMSGHDR.size:].rstrip(b"\0\n").decode("latin-1")))
                continue
            for rtype, _flags, _seq, body in _split_datagram(data):
                if _is_record(rtype):
                    out.append((rtype, _record_text(body)))
        self.records_received += len(out)
        return out

    def _wait_readable(self, timeout: float | None) -> bool:
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        return bool(self._poll.poll(ms))

    def _read_datagram(self) -> list[tuple[int, int, int, bytes]]:
        """Read one datagram (non-blocking) and split it into (type, flags, seq, payload) messages."""
        try:
            size = self._sock.recv_into(self._buf, _RECV_SIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return []
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                self.enobufs += 1  # the kernel dropped records for us; the socket keeps working
                return []
            raise
        return _split_datagram(bytes(self._buf[:size]))


def _split_datagram(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """One datagram's (type, flags, seq, payload) messages."""
    out = []
    offset = 0
    size = len(data)
    while offset + _NLMSGHDR.size <= size:
        length, msg_type, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if _is_record(msg_type):
            # one record per datagram, and nlmsg_len may count the payload only: take the datagram's rest
            out.append((msg_type, flags, seq, data[offset + _NLMSGHDR.size:]))
            break
        if length < _NLMSGHDR.size:
            break
        out.append((msg_type, flags, seq, data[offset + _NLMSGHDR.size:offset + length]))
        offset += (length + 3) & ~3
    return out


def _record_text(body: bytes) -> str:
    return body.rstrip(b"\0\n").decode("latin-1")  # some producers NUL- or newline-terminate
