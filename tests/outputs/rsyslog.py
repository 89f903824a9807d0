"""A real rsyslogd started by a test (machine-notes: `rsyslogd -n -f CONF -i PIDFILE`), listening on a private unix
socket and/or loopback UDP/TCP ports, writing what it received to a file, one message a line:

    FACILITY|SEVERITY|PROGRAMNAME|HOSTNAME|MSG
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
TEMPLATE = "%syslogfacility-text%|%syslogseverity-text%|%programname%|%hostname%|%msg%\\n"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rsyslog:
    def __init__(self, directory: Path, *, unix_socket: bool = True, parse_hostname: str = "on",
                 udp_port: int | None = None, tcp_port: int | None = None, max_message_size: str | None = "256k"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket_path = str(self.dir / "devlog") if unix_socket else None
        self.udp_port = udp_port
        self.tcp_port = tcp_port
        self.output = self.dir / "received.log"
        self.pidfile = self.dir / "rsyslogd.pid"
        self.conf = self.dir / "rsyslog.conf"
        self.proc: subprocess.Popen | None = None
        lines = [f'global(workDirectory="{self.dir}"'
                 + (f' maxMessageSize="{max_message_size}"' if max_message_size else "") + ")"]
        if unix_socket:
            lines.append('module(load="imuxsock" SysSock.Use="off")')
            lines.append(f'input(type="imuxsock" Socket="{self.socket_path}" CreatePath="on" UseSpecialParser="off" '
                         f'ParseHostname="{parse_hostname}" IgnoreTimestamp="off" RateLimit.Interval="0")')
        if udp_port:
            lines.append('module(load="imudp")')
            lines.append(f'input(type="imudp" address="127.0.0.1" port="{udp_port}" rcvbufSize="16m")')
        if tcp_port:
            lines.append('module(load="imtcp")')
            lines.append(f'input(type="imtcp" address="127.0.0.1" port="{tcp_port}")')
        lines.append(f'template(name="fields" type="string" string="{TEMPLATE}")')
        lines.append(f'action(type="omfile" file="{self.output}" template="fields")')
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> "Rsyslog":
        if self.socket_path and os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rsyslogd exited: {self.proc.stderr.read().decode(errors='replace')}")
            if self._listening():
                return self
            time.sleep(0.05)
        raise TimeoutError("rsyslogd did not start listening")

    def _listening(self) -> bool:
        if self.socket_path and not os.path.exists(self.socket_path):
            return False
        if self.tcp_port:
            try:
                socket.create_connection(("127.0.0.1", self.tcp_port), timeout=0.2).close()
            except OSError:
                return False
        if self.udp_port:
            # imudp is up once its port is bound: binding it ourselves fails then
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind(("127.0.0.1", self.udp_port))
                    return False
                except OSError:
                    pass
        return True

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()
        self.proc = None

    def __enter__(self) -> "Rsyslog":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def messages(self) -> list[tuple[str, str, str, str, bytes]]:
        """(facility, severity, programname, hostname, msg bytes) for each message written so far."""
        if not self.output.exists():
            return []
        out = []
        for line in self.output.read_bytes().split(b"\n"):
            if not line:
                continue
            fac, sev, prog, host, msg = line.split(b"|", 4)
            out.append((fac.decode(), sev.decode(), prog.decode(), host.decode(), msg))
        return out

    def wait_for(self, count: int, timeout: float = 20.0) -> list:
        deadline = time.monotonic() + timeout
        while True:
            got = self.messages()
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.05)
