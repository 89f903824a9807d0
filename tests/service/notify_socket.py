"""A test NOTIFY_SOCKET: what systemd would receive from a Type=notify service (machine-notes: bind an AF_UNIX
datagram socket, set NOTIFY_SOCKET to its path, read READY=1 etc.)."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path


class NotifySocket:
    def __init__(self, path: Path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, list[str]]] = []  # (arrival, assignments)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.on_message = None  # called in the reader thread with the assignments, before they are stored
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            assignments = data.decode("utf-8", "replace").split("\n")
            if self.on_message:
                self.on_message(assignments)
            with self._lock:
                self.messages.append((time.monotonic(), assignments))

    def env(self, **extra: str) -> dict:
        return {"NOTIFY_SOCKET": self.path, **extra}

    def all(self) -> list[str]:
        with self._lock:
            return [a for _t, assignments in self.messages for a in assignments]

    def times(self, assignment: str) -> list[float]:
        with self._lock:
            return [t for t, assignments in self.messages if assignment in assignments]

    def statuses(self) -> list[str]:
        return [a[len("STATUS="):] for a in self.all() if a.startswith("STATUS=")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
