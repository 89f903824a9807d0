"""Multicast input: a read-only copy of every audit record from the audit netlink multicast group
(AUDIT_NLGRP_READLOG), beside auditd or with no audit daemon at all.

Needs root or CAP_AUDIT_READ; holds no audit pid and changes nothing in the kernel (rules excepted, when rules_dir
is configured). There is no flow control on a multicast socket: a large receive buffer (input.receive_buffer)
absorbs bursts, and an overflow (ENOBUFS) is counted as lost. The kernel's `lost` counter is read every
input.status_interval seconds like in netlink mode. Joining the group makes the kernel log a record of type 1335
(AUDIT_EVENT_LISTENER), which comes out like any other event.
"""
from __future__ import annotations

import logging

from auoms_py.collect.base import CollectorError
from auoms_py.collect.netlink import KernelReader, process_name

log = logging.getLogger("auoms_py.collect.multicast")


class MulticastCollector(KernelReader):
    """Read-only: a copy of every record from the audit multicast group, beside auditd (or with no daemon).
    Changes nothing in the kernel."""

    kind = "multicast"

    def describe(self) -> str:
        return "multicast input"

    def open(self) -> None:
        from auoms_py.kernel.netlink import AuditNetlink

        try:
            self.nl = AuditNetlink(multicast=True, rcvbuf=self.receive_buffer)
        except PermissionError:
            raise CollectorError("multicast input: joining the audit multicast group was refused: run as root or "
                                 "with CAP_AUDIT_READ") from None
        try:
            status = self.nl.get_status()
        except (OSError, TimeoutError) as exc:
            log.warning("multicast input: cannot read the kernel audit status (%s); lost records are not tracked",
                        exc)
            return
        self._lost_seen = status.lost
        holder = f"process {status.pid} ({process_name(status.pid)})" if status.pid else "nobody"
        log.info("multicast input: reading a copy of every audit record; the audit pid is held by %s", holder)
        if status.enabled == 0:
            log.warning("kernel auditing is off (enabled 0): no records will come until it is switched on")

    def close(self, pipe, now: float) -> list:
        if self.nl is None:
            return []
        try:
            return self._drain(pipe, now, quiet=0.01, limit=0.5)
        finally:
            self.nl.close()
            self.nl = None
