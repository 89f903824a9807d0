"""systemd's notification protocol (sd_notify): READY=1, RELOADING=1, STOPPING=1, STATUS=..., WATCHDOG=1.

Sent with systemd-python (`systemd.daemon.notify`, the `[systemd]` extra, installed by the Debian package); without
it, the same datagram is sent to $NOTIFY_SOCKET directly (the protocol is one datagram of newline-separated
assignments). Both do nothing when NOTIFY_SOCKET is unset (not started by systemd with Type=notify).

The watchdog: systemd sets WATCHDOG_USEC (and WATCHDOG_PID) when the unit has WatchdogSec=; the agent then sends
WATCHDOG=1 every half period from its main loop, and only while it is healthy (the loop turns and the collector is
alive: auoms_py.service.agent), so a stuck loop or a dead input gets the service restarted (Restart=on-failure).
"""
from __future__ import annotations

import os
import socket

try:
    from systemd import daemon as _sd_daemon
except ImportError:  # the [systemd] extra is not installed: speak the protocol ourselves
    _sd_daemon = None


def notify(*states: str) -> bool:
    """Send the assignments (e.g. "READY=1", "STATUS=collecting"); True when a notification socket took them."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    message = "\n".join(states)
    if _sd_daemon is not None:
        try:
            return bool(_sd_daemon.notify(message))
        except (OSError, ValueError):
            return False
    return _send(message)


def _send(message: str) -> bool:
    path = os.environ.get("NOTIFY_SOCKET", "")
    if path.startswith("@"):  # abstract socket
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode("utf-8", "replace"), path)
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC, as sd_watchdog_enabled() advises), or None when
    systemd does not watch this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    if not usec.isdecimal() or int(usec) == 0 or not os.environ.get("NOTIFY_SOCKET"):
        return None
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):  # meant for another process (e.g. the one that detached us)
        return None
    return int(usec) / 2e6
