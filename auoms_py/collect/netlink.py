"""Netlink input: the agent is the kernel's audit daemon (it holds the audit pid and receives every record).

Start: refuse when another live process holds the audit pid (auditd): only one process can, and taking it over
would silently cut that process off; the message names the two ways to run beside it (multicast input, or as
auditd's plugin). Otherwise register, raise the backlog limit to input.backlog_limit (default 8192; a burst
beyond the kernel's default of 64 loses records; a higher limit found is kept), set backlog_wait_time when configured, and switch auditing on
(input.enable) when it is off.

Running: records are read with poll and a timeout (signals are never stuck behind a blocking recv). A receive
buffer overflow (ENOBUFS) means the kernel dropped records for us: counted in `lost` (the number of records is not
known, each overflow counts 1) and reading goes on. Every input.status_interval seconds the kernel status is read:
growth of its `lost` counter (backlog full, rate limit) is logged and counted in `kernel_lost`.

Exit (normal, SIGTERM, SIGINT, errors): auditing is switched back to the state found, the records still queued
are read, the audit pid is given up and the backlog settings are restored: the kernel is left as it was found.
A setting someone else changed meanwhile is left alone (and logged).
"""
from __future__ import annotations

import errno
import logging
import os
import time

from auoms_py.collect.base import MAX_RECORDS_PER_READ, Collector, CollectorError

log = logging.getLogger("auoms_py.collect.netlink")

ALTERNATIVES = ("To run beside it, use `input: {type: multicast}` (a read-only copy of every record) or run "
                "auoms-py as its plugin (`input: {type: plugin}`, docs/collection.md).")


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return "?"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class KernelReader(Collector):
    """What netlink and multicast share: a socket to read, status reads, lost accounting."""

    def __init__(self, receive_buffer: int, status_interval: float):
        super().__init__()
        self.receive_buffer = receive_buffer
        self.status_interval = status_interval
        self.counters.update(kernel_lost=0, enobufs=0, backlog=0)
        self.nl = None
        self._lost_seen: int | None = None
        self._enobufs_seen = 0
        self._next_status = 0.0
        self._status_ok_at: float | None = None  # monotonic time of the last good status read (None: never read)
        self._status_error = ""
        self.audit_pid: int | None = None  # the kernel's audit pid at the last status read
        self.enabled: int | None = None  # the kernel's enabled flag at the last status read

    def fileno(self) -> int | None:
        return self.nl.fileno() if self.nl is not None else None

    def read(self, pipe, now: float) -> list:
        counters = self.counters
        records = self._recv_batch(MAX_RECORDS_PER_READ)
        self.has_more = len(records) >= MAX_RECORDS_PER_READ
        out = self._feed(records, pipe, now)
        if self.nl.enobufs != self._enobufs_seen:
            new = self.nl.enobufs - self._enobufs_seen
            self._enobufs_seen = self.nl.enobufs
            counters["enobufs"] += new
            counters["lost"] += new
            log.warning("%s: receive buffer overflowed %d time(s): the kernel dropped records for us "
                        "(raise input.receive_buffer)", self.describe(), new)
        self.note_malformed(pipe)
        return out

    def _recv_batch(self, limit: int) -> list:
        """The records readable now, up to `limit` (no waiting)."""
        return self.nl.read_available(limit)

    def periodic(self, now: float) -> None:
        if now < self._next_status:
            return
        self._next_status = now + self.status_interval
        try:
            status = self.nl.get_status()
        except (OSError, TimeoutError) as exc:
            log.warning("%s: cannot read the kernel audit status (%s)", self.describe(), exc)
            self._status_error = str(exc)
            return
        self._status_ok_at = now
        self._status_error = ""
        self.check_status(status)

    def problem(self) -> str | None:
        if self.nl is None:
            return f"{self.describe()}: not open"
        if self._status_error and self._status_ok_at is not None and \
                time.monotonic() - self._status_ok_at > 3 * self.status_interval:
            return f"{self.describe()}: the kernel audit status cannot be read ({self._status_error})"
        if self.enabled == 0:
            return f"{self.describe()}: kernel auditing is off (enabled 0): no records come"
        return None

    def alive(self) -> bool:
        return self.nl is not None

    def check_status(self, status) -> None:
        self.counters["backlog"] = status.backlog
        self.audit_pid = status.pid
        self.enabled = status.enabled
        if self._lost_seen is None:
            self._lost_seen = status.lost
            return
        if status.lost > self._lost_seen:
            grown = status.lost - self._lost_seen
            self.counters["kernel_lost"] += grown
            self.counters["lost"] += grown
            log.warning("kernel audit lost %d record(s) (its lost counter is now %d, %d since start): backlog full "
                        "or rate limit reached", grown, status.lost, self.counters["kernel_lost"])
        elif status.lost < self._lost_seen:
            log.info("kernel audit lost counter was reset (%d -> %d)", self._lost_seen, status.lost)
        self._lost_seen = status.lost

    def _drain(self, pipe, now: float, quiet: float = 0.05, limit: float = 2.0) -> list:
        """Read what is still queued for us until `quiet` seconds pass without a record."""
        out: list = []
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                first = self.nl.recv_record(quiet)
            except OSError:
                break
            if first is None:
                break
            out += self._feed([first] + self._recv_batch(MAX_RECORDS_PER_READ), pipe, now)
        return out

    def _feed(self, records: list, pipe, now: float) -> list:
        """Count (type code, text) records and run them through the pipeline."""
        self.counters["records"] += len(records)
        self.counters["bytes"] += sum([len(text) for _code, text in records])
        return pipe.feed_netlink_records(records, now)


class NetlinkCollector(KernelReader):
    kind = "netlink"

    def __init__(self, *, backlog_limit: int = 8192, backlog_wait_time: int | None = None, enable: bool = True,
                 receive_buffer: int = 64 << 20, status_interval: float = 5.0):
        super().__init__(receive_buffer, status_interval)
        self.backlog_limit = backlog_limit
        self.backlog_wait_time = backlog_wait_time
        self.enable = enable
        self.found = None  # the kernel status when we started
        self._changed: dict[str, tuple[int, int]] = {}  # field -> (value found, value we set)
        self.registered = False

    def describe(self) -> str:
        return "netlink input (audit daemon)"

    def problem(self) -> str | None:
        if self.nl is not None and self.audit_pid not in (None, os.getpid()):
            return (f"{self.describe()}: the kernel's audit pid is now {self.audit_pid} "
                    f"({process_name(self.audit_pid)}), not this agent: records no longer come here")
        return super().problem()

    def alive(self) -> bool:
        return self.nl is not None and self.audit_pid in (None, os.getpid())

    def open(self) -> None:
        from auoms_py.kernel.netlink import AuditNetlink

        try:
            self.nl = AuditNetlink(rcvbuf=self.receive_buffer)
        except PermissionError:
            raise CollectorError("netlink input: opening the audit netlink socket was refused: run as root "
                                 "(CAP_AUDIT_CONTROL)") from None
        try:
            self._start()
        except BaseException:
            self._restore()
            self.nl.close()
            self.nl = None
            raise

    def _start(self) -> None:
        from auoms_py.kernel.netlink import AuditNetlinkError

        nl = self.nl
        found = self.found = nl.get_status()
        if found.pid and found.pid != os.getpid() and process_alive(found.pid):
            raise CollectorError(
                f"netlink input: the kernel's audit pid is held by process {found.pid} "
                f"({process_name(found.pid)}); only one process can be the audit daemon. {ALTERNATIVES}")
        try:
            nl.register()
        except AuditNetlinkError as exc:
            if exc.errno == errno.EEXIST:
                holder = nl.get_status().pid
                raise CollectorError(
                    f"netlink input: the kernel's audit pid is held by process {holder} ({process_name(holder)}); "
                    f"only one process can be the audit daemon. {ALTERNATIVES}") from None
            raise CollectorError(f"netlink input: registering as the audit daemon failed: {exc}") from None
        self.registered = True
        if found.immutable:
            log.warning("kernel audit is locked (enabled 2): backlog limit %d and settings stay as they are",
                        found.backlog_limit)
        else:
            if found.backlog_limit < self.backlog_limit:  # raised, never lowered (others may need more)
                self._set("backlog_limit", found.backlog_limit, self.backlog_limit)
            if self.backlog_wait_time is not None and found.backlog_wait_time != self.backlog_wait_time:
                self._set("backlog_wait_time", found.backlog_wait_time, self.backlog_wait_time)
            if self.enable and found.enabled == 0:
                self._set("enabled", 0, 1)
            elif found.enabled == 0:
                log.warning("kernel auditing is off (enabled 0) and input.enable is false: no records will come")
        self._lost_seen = found.lost
        log.info("netlink input: registered as the audit daemon (pid %d); enabled %d, backlog limit %d, "
                 "receive buffer %d bytes", os.getpid(), 1 if "enabled" in self._changed else found.enabled,
                 self.backlog_limit if "backlog_limit" in self._changed else found.backlog_limit, self.nl.rcvbuf)

    def _set(self, field: str, found: int, value: int) -> None:
        self.nl.set_status(**{field: value})
        self._changed[field] = (found, value)

    def close(self, pipe, now: float) -> list:
        if self.nl is None:
            return []
        out: list = []
        try:
            if "enabled" in self._changed:
                self._restore_field("enabled")  # no new records from here on
            out = self._drain(pipe, now)
        finally:
            self._restore()
            self.nl.close()
            self.nl = None
        return out

    def _restore_field(self, field: str) -> None:
        found, ours = self._changed.pop(field)
        try:
            current = getattr(self.nl.get_status(), field)
            if current != ours:
                log.warning("kernel audit %s was changed to %d by someone else while we ran; leaving it (found %d)",
                            field, current, found)
                return
            self.nl.set_status(**{field: found})
        except (OSError, TimeoutError) as exc:
            log.error("cannot restore kernel audit %s to %d: %s", field, found, exc)

    def _restore(self) -> None:
        """Give up the audit pid and put back what we changed. Never raises (runs on every exit path)."""
        if self.nl is None:
            return
        if self.registered:
            try:
                self.nl.deregister()
                self.registered = False
            except (OSError, TimeoutError) as exc:
                log.error("cannot give up the audit pid: %s", exc)
        for field in ("enabled", "backlog_wait_time", "backlog_limit"):
            if field in self._changed:
                self._restore_field(field)
        if not self.registered:
            log.info("netlink input: audit pid given up, kernel audit settings restored")
