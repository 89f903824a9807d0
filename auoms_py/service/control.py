"""The control socket: `auoms-py ctl status` asks the running agent how it is doing.

A unix stream socket (`control_socket`, default DATA_DIR/control.sock), mode 0600 and owned by the agent's user
(root), and every connection's peer credentials are checked (SO_PEERCRED): only root or the agent's own user is
answered. Protocol: the client sends one line, `status` (or `metrics`), the agent answers one JSON object and
closes. The agent serves it from its main loop (the answer is a consistent snapshot, taken between two batches);
a client gets 0.5 s to send its request and read the answer, so a stuck client cannot stall collection.

A socket left by an agent that died is replaced at start; one that a live agent answers on is refused (two agents
on one data_dir would fight over the spool and the kernel). Paths longer than a unix socket address holds
(107 bytes) are reached through the directory's /proc/self/fd entry.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import struct

REQUEST_TIMEOUT = 0.5
MAX_REQUEST = 256
COMMANDS = ("status", "metrics")


class ControlError(Exception):
    pass


@contextlib.contextmanager
def _address(path: str):
    """An address for `path` that fits in sockaddr_un (through the directory's descriptor when it is too long)."""
    if len(os.fsencode(path)) < 100:
        yield path
        return
    directory, name = os.path.split(os.path.abspath(path))
    fd = os.open(directory or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)


class ControlServer:
    def __init__(self, path: str):
        self.path = path
        self.sock: socket.socket | None = None
        self.requests = 0
        self.refused = 0

    def open(self) -> None:
        """Bind and listen (raises ControlError naming the path and the reason)."""
        try:
            self._open()
        except OSError as exc:
            raise ControlError(f"control_socket: cannot listen on {self.path}: {exc.strerror or exc}") from None

    def _open(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o750, exist_ok=True)
        if os.path.lexists(self.path):
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                raise ControlError(f"control_socket: {self.path} exists and is not a socket")
            try:
                request(self.path, "status", timeout=1.0)
            except (OSError, ControlError, ValueError):
                os.unlink(self.path)  # left by an agent that is gone
            else:
                raise ControlError(f"control_socket: an agent is already running and answering on {self.path}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        old_umask = os.umask(0o177)  # the socket is created 0600: no window in which others may connect
        try:
            with _address(self.path) as address:
                sock.bind(address)
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        sock.listen(8)
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def serve(self, answer) -> None:
        """Answer the connections waiting now: `answer(command) -> dict`."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            with conn:
                try:
                    self._serve_one(conn, answer)
                except OSError:
                    pass

    def _serve_one(self, conn: socket.socket, answer) -> None:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        conn.settimeout(REQUEST_TIMEOUT)
        data = b""
        while b"\n" not in data and len(data) < MAX_REQUEST:
            chunk = conn.recv(MAX_REQUEST)
            if not chunk:
                break
            data += chunk
        command = data.split(b"\n", 1)[0].strip().decode("ascii", "replace") or "status"
        if uid not in (0, os.geteuid()):
            self.refused += 1
            reply = {"error": f"refused: uid {uid} may not ask (root only)"}
        elif command not in COMMANDS:
            reply = {"error": f"unknown command {command!r} (known: {', '.join(COMMANDS)})"}
        else:
            self.requests += 1
            reply = answer(command)
        conn.sendall(json.dumps(reply, sort_keys=True, default=str).encode("utf-8") + b"\n")

    def close(self) -> None:
        if self.sock is None:
            return
        self.sock.close()
        self.sock = None
        try:
            os.unlink(self.path)
        except OSError:
            pass


def request(path: str, command: str = "status", timeout: float = 5.0) -> dict:
    """Ask the agent listening on `path`; raises OSError when none answers, ControlError for a refusal."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        with _address(path) as address:
            sock.connect(address)
        sock.sendall(command.encode("ascii") + b"\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data:
        raise ControlError(f"{path}: the agent closed the connection without an answer")
    reply = json.loads(data)
    if "error" in reply:
        raise ControlError(f"{path}: {reply['error']}")
    return reply
