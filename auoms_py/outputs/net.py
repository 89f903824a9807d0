"""Connections for the delivery outputs: stream sockets (unix, TCP, TLS over TCP) and what they can tell about
delivery.

Plain TCP and unix stream sockets have no application acknowledgement, but the kernel knows how much of what was
written the other side has taken: `SIOCOUTQ` gives the bytes not yet acknowledged by the peer's TCP (for a unix
stream socket: not yet read by the receiving process). A message counts as delivered only once its last byte is
out of that queue, so the bytes still in flight when a receiver goes away are sent again on the next connection
instead of being lost with the socket. With TLS the queue holds ciphertext, which is never shorter than the
plaintext it carries: taking that many plaintext bytes as unconfirmed errs on the side of sending again.
"""
from __future__ import annotations

import array
import dataclasses
import errno
import fcntl
import select
import socket
import ssl
import termios

POLL_CLOSED = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0x2000)


@dataclasses.dataclass
class TlsOptions:
    ca: str | None = None  # CA bundle that signed the receiver's certificate (None: the system's CAs)
    cert: str | None = None  # client certificate, when the receiver asks for one
    key: str | None = None
    server_name: str | None = None  # name checked in the receiver's certificate (default: the address's host)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx


@dataclasses.dataclass
class Address:
    scheme: str  # unix | tcp | udp
    host: str | None = None
    port: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_address(text: str, schemes: tuple[str, ...]) -> Address | str:
    """'tcp://host:514', 'unix:///run/x.sock' -> Address; a message string when it is not usable."""
    scheme, sep, rest = text.partition("://")
    shapes = " or ".join("unix:///PATH" if s == "unix" else f"{s}://HOST:PORT" for s in schemes)
    if not sep or scheme not in schemes:
        return f"must be {shapes}, got {text!r}"
    if scheme == "unix":
        if not rest.startswith("/"):
            return f"must be unix:///ABSOLUTE/PATH (three slashes), got {text!r}"
        return Address("unix", path=rest)
    if rest.startswith("["):  # [v6]:port
        host, _, port = rest[1:].partition("]")
        port = port[1:] if port.startswith(":") else ""
    else:
        host, _, port = rest.rpartition(":")
    if not host or not port.isdecimal() or not 0 < int(port) < 65536:
        return f"must be {scheme}://HOST:PORT with a port from 1 to 65535, got {text!r}"
    return Address(scheme, host=host, port=int(port))


def open_stream(address: Address, *, timeout: float, tls: TlsOptions | None = None,
                context: ssl.SSLContext | None = None) -> socket.socket:
    """A connected stream socket (TLS handshake done when tls is given); raises OSError (ssl.SSLError is one)."""
    if address.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(timeout)
            sock.connect(address.path)
        except OSError:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((address.host, address.port), timeout=timeout)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            ctx = context or tls.context()
            sock = ctx.wrap_socket(sock, server_hostname=tls.server_name or address.host)
    except OSError:
        sock.close()
        raise
    return sock


def unconfirmed_bytes(sock: socket.socket) -> int:
    """Bytes written to a stream socket that the peer has not acknowledged (TCP) or read (unix) yet."""
    buf = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf, True)  # TIOCOUTQ == SIOCOUTQ
    return buf[0]


def peer_closed(sock: socket.socket, poller: select.poll, *, tls: bool) -> bool:
    """True when the receiver closed its side (FIN/RST seen). Readable data is left alone, except on a plain
    socket where a zero-byte peek tells a FIN from data the receiver sent."""
    events = poller.poll(0)
    if not events:
        return False
    mask = events[0][1]
    if mask & POLL_CLOSED:
        return True
    if tls or not mask & select.POLLIN:
        return False
    try:
        return not sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError as exc:
        return exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN)


def closed_poller(sock: socket.socket) -> select.poll:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | POLL_CLOSED)
    return poller
