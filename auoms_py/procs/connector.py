"""The kernel's process connector (NETLINK_CONNECTOR, CN_IDX_PROC): fork and exit of every process, as they happen.

Audit rules rarely log fork and exit, yet the tree needs both: a fork links a child to its parent even if the parent
exits before the child's first audited syscall (a daemon started by a package script), and an exit lets the entry
expire. Root only (CAP_NET_ADMIN); when the kernel lacks CONFIG_PROC_EVENTS `start()` returns False and the tree
falls back to /proc and the events themselves.

Messages (linux/cn_proc.h, linux/connector.h): nlmsghdr (16 bytes), cn_msg {idx u32, val u32, seq u32, ack u32,
len u16, flags u16} (20 bytes), then proc_event {what u32, cpu u32, timestamp_ns u64, union}. Threads are left out:
only events whose pid equals its thread group id count.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import select
import socket
import struct
import threading

log = logging.getLogger("auoms_py.procs")

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
NLMSG_DONE = 3
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXIT = 0x80000000

_NLMSGHDR = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_EVENT_HEAD = struct.Struct("=IIQ")
_FORK = struct.Struct("=iiii")  # parent_pid parent_tgid child_pid child_tgid
_EXIT = struct.Struct("=ii")  # process_pid process_tgid (exit_code ... follow)
_HEADERS = _NLMSGHDR.size + _CN_MSG.size
# nlmsghdr (its length), cn_msg, proc_event head (`what`), then the union's first four ints (fork: parent pid/tgid,
# child pid/tgid; exit: pid, tgid, exit code, signal): one unpack for a datagram that holds one message
_ONE_EVENT = struct.Struct("=I12x20xI12xiiii")
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def _control_message(op: int, events: int | None = None) -> bytes:
    """LISTEN/IGNORE; with `events` (a mask of PROC_EVENT_*), a struct proc_input that asks the kernel (6.6 and
    later) to send only those events. Older kernels ignore a message of that size, hence kernel_filters_events()."""
    payload = struct.pack("=I", op) if events is None else struct.pack("=II", op, events)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, os.getpid()) + cn


def kernel_filters_events(release: str | None = None) -> bool:
    """Linux 6.6 added per-listener event filters to the process connector (struct proc_input)."""
    numbers = re.findall(r"^(\d+)\.(\d+)", release or os.uname().release)
    return bool(numbers) and tuple(map(int, numbers[0])) >= (6, 6)


def parse(data: bytes):
    """(kind, pid, ppid) tuples of one datagram: ("fork", child, parent) / ("exit", pid, 0) / ("other", 0, 0)."""
    if len(data) >= _ONE_EVENT.size:  # the usual datagram: one message, one fork or exit, read in one unpack
        length, what, first, second, third, fourth = _ONE_EVENT.unpack_from(data)
        if length == len(data):
            if what == PROC_EVENT_FORK:
                return [("fork", third, second)] if third == fourth else []  # child pid == tgid: not a thread
            if what == PROC_EVENT_EXIT:
                return [("exit", first, 0)] if first == second else []
    return _parse_messages(data)


def _parse_messages(data: bytes):
    """parse(), message by message: datagrams of several messages, and events other than fork and exit."""
    out = []
    offset = 0
    while offset + _HEADERS + _EVENT_HEAD.size <= len(data):
        length = _NLMSGHDR.unpack_from(data, offset)[0]
        if length < _HEADERS:
            break
        body = offset + _HEADERS
        what = _EVENT_HEAD.unpack_from(data, body)[0]
        union = body + _EVENT_HEAD.size
        if what == PROC_EVENT_FORK and union + _FORK.size <= len(data):
            _ppid, parent_tgid, child_pid, child_tgid = _FORK.unpack_from(data, union)
            if child_pid == child_tgid:
                out.append(("fork", child_pid, parent_tgid))
        elif what == PROC_EVENT_EXIT and union + _EXIT.size <= len(data):
            pid, tgid = _EXIT.unpack_from(data, union)
            if pid == tgid:
                out.append(("exit", pid, 0))
        elif what:  # exec, id, sid, comm... changes (0 is the kernel's ack of our LISTEN)
            out.append(("other", 0, 0))
        offset += (length + 3) & ~3
    return out


class ProcConnector:
    """Feeds a ProcessTree with fork/exit notifications: from a background thread (`start()`), or from the caller's
    loop (`start(thread=False)`, then `drain()` before each batch of audit records and on a timer).

    The agent drains in its own loop: a second thread would wake every few milliseconds of an exec storm and take
    the interpreter lock from the thread reading audit records. Its socket buffer holds seconds of notifications."""

    def __init__(self, tree, rcvbuf: int = 8 << 20):
        self.tree = tree
        self.rcvbuf = rcvbuf
        self.sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.threaded = False
        self.counters = {"forks": 0, "exits": 0, "other": 0, "overruns": 0}

    def start(self, thread: bool = True) -> bool:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except OSError as exc:
            log.info("process connector unavailable (%s): the process tree relies on audit events and /proc", exc)
            return False
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, self.rcvbuf)  # beyond rmem_max (CAP_NET_ADMIN)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.bind((0, CN_IDX_PROC))
            # only fork and exit: exec, comm and id changes would triple the wake-ups of an exec storm for nothing
            events = PROC_EVENT_FORK | PROC_EVENT_EXIT if kernel_filters_events() else None
            sock.send(_control_message(PROC_CN_MCAST_LISTEN, events))
        except OSError as exc:
            sock.close()
            log.info("process connector unavailable (%s): the process tree relies on audit events and /proc", exc)
            return False
        self.sock = sock
        self.threaded = thread
        if thread:
            self._thread = threading.Thread(target=self._run, name="proc-connector", daemon=True)
            self._thread.start()
        else:
            sock.setblocking(False)
        return True

    def drain(self, limit: int = 4096) -> int:
        """Note every fork and exit already queued (up to `limit` datagrams, without waiting); returns how many
        datagrams were read."""
        sock = self.sock
        if sock is None:
            return 0
        recv = sock.recv
        datagrams = []
        while len(datagrams) < limit:
            try:
                datagrams.append(recv(65536, socket.MSG_DONTWAIT))
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.counters["overruns"] += 1  # the kernel dropped notifications; the tree copes via /proc
                break
        if datagrams:
            self._note(datagrams)
        return len(datagrams)

    def _note(self, datagrams: list[bytes]) -> None:
        tree = self.tree
        counters = self.counters
        for data in datagrams:
            for kind, pid, ppid in parse(data):
                if kind == "fork":
                    counters["forks"] += 1
                    tree.note_fork(pid, ppid)
                elif kind == "exit":
                    counters["exits"] += 1
                    tree.note_exit(pid)
                else:
                    counters["other"] += 1

    def _run(self) -> None:
        sock = self.sock
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], 0.5)
                if not ready:
                    continue
                # An exec storm brings a fork and an exit per process (more before 6.6), one datagram each:
                # take all that are queued per wake-up instead of one select per datagram.
                read = self.drain(256)
            except OSError as exc:
                if self._stop.is_set():
                    return
                log.warning("process connector stopped: %s", exc)
                return
            if read < 256:
                # let notifications gather for a moment: one wake-up per few ms instead of one per process; the
                # tree copes with a fork noted after the child's own audit event (it is placed by its ppid)
                self._stop.wait(0.005)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self.sock is not None:
            try:
                self.sock.send(_control_message(PROC_CN_MCAST_IGNORE))
            except OSError:
                pass
            self.sock.close()
            self.sock = None
