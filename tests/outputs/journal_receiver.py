"""A journal socket of our own (PID 1 is not systemd here: machine-notes), reading what libsystemd sends in the
journal's native protocol (systemd's "Native Journal Protocol"): one datagram per entry holding fields as
`NAME=value\\n`, or `NAME\\n` + 64-bit little-endian length + value + `\\n` for values that contain a newline; an
entry too large for a datagram comes as an empty datagram carrying a memfd (SCM_RIGHTS) with the same content."""
from __future__ import annotations

import array
import os
import socket
import struct
import threading


def parse_native(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (name, value) fields of one native-protocol entry; raises ValueError on anything else."""
    fields = []
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        eq = data.find(b"=", i, nl)
        if eq >= 0:
            fields.append((data[i:eq], data[eq + 1:nl]))
            i = nl + 1
        else:
            name = data[i:nl]
            (length,) = struct.unpack_from("<Q", data, nl + 1)
            start = nl + 9
            value = data[start:start + length]
            if len(value) != length or data[start + length:start + length + 1] != b"\n":
                raise ValueError(f"binary field {name!r}: bad length or terminator")
            fields.append((name, value))
            i = start + length + 1
        name = fields[-1][0]
        if not name or not all(c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_" for c in name) or name[:1].isdigit():
            raise ValueError(f"invalid journal field name {name!r}")
    return fields


class JournalReceiver:
    def __init__(self, path: str):
        self.path = path
        self.entries: list[list[tuple[bytes, bytes]]] = []
        self.memfd_entries = 0
        self.errors: list[str] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._running = False

    def start(self) -> "JournalReceiver":
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._sock.bind(self.path)
        self._sock.settimeout(0.2)
        self._running = True
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._running = False
        if self._thread:
            self._thread.join(5)
        if self._sock:
            self._sock.close()
            self._sock = None
        if os.path.exists(self.path):
            os.unlink(self.path)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _read(self) -> None:
        fds = array.array("i")
        while self._running:
            try:
                data, ancdata, _flags, _addr = self._sock.recvmsg(1 << 20, socket.CMSG_SPACE(fds.itemsize))
            except (TimeoutError, socket.timeout):
                continue
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fd = array.array("i", cdata[:fds.itemsize])[0]
                    with os.fdopen(fd, "rb") as memfd:
                        memfd.seek(0)
                        data = memfd.read()
                    self.memfd_entries += 1
            try:
                self.entries.append(parse_native(data))
            except ValueError as exc:
                self.errors.append(str(exc))

    def as_dicts(self) -> list[dict]:
        return [{name.decode(): value for name, value in entry} for entry in self.entries]
