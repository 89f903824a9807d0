"""systemd's sd_notify protocol, without libsystemd: one datagram to $NOTIFY_SOCKET (READY=1, RELOADING=1,
STOPPING=1, STATUS=...). Does nothing when the variable is unset (not started by systemd with Type=notify)."""
from __future__ import annotations

import os
import socket


def notify(*states: str) -> bool:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):  # abstract socket
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(states).encode("utf-8", "replace"), path)
    except OSError:
        return False
    return True
