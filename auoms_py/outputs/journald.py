"""journald output: one journal entry per output record, with structured fields, through systemd-python
(`systemd.journal.sendv`, libsystemd's sd_journal_sendv: the journal's native protocol on
/run/systemd/journal/socket).

    - {name: journal, type: journald, format: mstic}        # MESSAGE in mstic (or json); identifier: auoms

Fields of an entry:

    MESSAGE=<the record in the output's format>     PRIORITY=6   SYSLOG_FACILITY=1   SYSLOG_IDENTIFIER=auoms
    AUDIT_TYPE=14688  AUDIT_TYPE_NAME=AUOMS_EXECVE  AUDIT_ID=1521757638.392:262332
    AUDIT_FIELD_<NAME>=<value> for every field of the record, the name upper-cased (journal field names are
    A-Z, 0-9 and _), e.g. AUDIT_FIELD_EXE=/usr/bin/logger, AUDIT_FIELD_CMDLINE=..., AUDIT_FIELD_OBJ_PID_OPID=...
    Values are the kernel's bytes (the journal stores binary values as they are).

`journalctl -o verbose SYSLOG_IDENTIFIER=auoms AUDIT_FIELD_COMM=sshd` then finds them. (journald's own audit
fields start with an underscore, which only journald may write: hence AUDIT_ without it.)

Delivery: libsystemd reports a journal that refuses a message (ECONNREFUSED, EAGAIN ...) but drops the message
silently when the socket file does not exist. So the output checks that the socket is there and accepts
connections before sending, and again after each batch: a journal missing or gone keeps the messages queued
(spool) and retries, as for any receiver.
"""
from __future__ import annotations

import os
import socket
import stat

import msgpack

from auoms_py.outputs.base import Format
from auoms_py.outputs.delivery import DeliveryOutput, Link
from auoms_py.service.config import JournaldOptions

JOURNAL_SOCKET = "/run/systemd/journal/socket"  # where libsystemd sends, fixed in the library
_NAME_OK = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_field_names: dict[str, bytes] = {}


def field_name(name: str) -> bytes:
    """`AUDIT_FIELD_` + the audit field name as a valid journal field name (cached: names repeat)."""
    cached = _field_names.get(name)
    if cached is None:
        upper = "".join(c if c in _NAME_OK else "_" for c in name.upper())
        cached = ("AUDIT_FIELD_" + upper)[:64].encode("ascii")
        if len(_field_names) < 10_000:
            _field_names[name] = cached
    return cached


def journal_fields(record, message: bytes, identifier: bytes) -> list[bytes]:
    """The fields of one record's journal entry, each `NAME=value` (bytes)."""
    items = [b"MESSAGE=" + message, b"PRIORITY=6", b"SYSLOG_FACILITY=1", b"SYSLOG_IDENTIFIER=" + identifier,
             b"AUDIT_TYPE=%d" % record.code, b"AUDIT_TYPE_NAME=" + record.type_name.encode("latin-1"),
             b"AUDIT_ID=%d.%03d:%d" % (record.sec, record.msec, record.serial)]
    for name, value, _style in record.fields:
        items.append(field_name(name) + b"=" + value.encode("latin-1"))
    for merged in record.merged:
        prefix = merged.type_name + "_"
        for name, value, _style in merged.fields:
            items.append(field_name(prefix + name) + b"=" + value.encode("latin-1"))
    if record.is_syscall:
        items.append(b"AUDIT_FIELD_CONTAINERID=" + record.containerid.encode("latin-1"))
    return items


def journal_is_there(path: str = JOURNAL_SOCKET) -> None:
    """Raise OSError unless a journal listens on path."""
    st = os.stat(path)
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        probe.connect(path)  # ECONNREFUSED when the file is there but journald is not
    finally:
        probe.close()


class JournaldLink(Link):
    def __init__(self, sendv):
        self.sendv = sendv
        self.count = 0

    def send(self, messages: list[bytes]) -> int:
        sendv = self.sendv
        for message in messages:
            sendv(*msgpack.unpackb(message, raw=True))
        # libsystemd drops silently when the socket vanished: only a journal still there confirms the batch
        journal_is_there()
        self.count += len(messages)
        return 0

    def confirmed(self, timeout: float) -> int:
        return self.count


class JournaldOutput(DeliveryOutput):
    kind = "journald"

    def __init__(self, name: str, fmt: Format | str, opts: JournaldOptions, *, queue=None):
        super().__init__(name, fmt, opts, queue=queue)
        self.batch_count = 200
        self._identifier = opts.identifier.encode("ascii", "replace")
        self._sendv = None

    @property
    def target(self) -> str:
        return f"journal {JOURNAL_SOCKET}"

    def open(self) -> None:
        try:
            from systemd import journal
        except ImportError:
            raise OSError("the journald output needs systemd-python (pip install 'auoms-py[systemd]'; "
                          "Debian: libsystemd-dev to build it)") from None
        self._sendv = journal.sendv
        super().open()

    def connect(self) -> Link:
        journal_is_there()
        return JournaldLink(self._sendv)

    def write_event(self, event) -> None:
        self.counters["events"] += 1
        fmt = self.format
        enc = fmt.encoding
        out = []
        for rec in event:
            text = fmt.format_record(rec)
            if text is None:  # a record type this format does not write
                continue
            fields = journal_fields(rec, text.encode(enc, "backslashreplace"), self._identifier)
            out.append(msgpack.packb(fields, use_bin_type=True))
        if out:
            self.enqueue(out)

    def write_messages(self, messages: list[bytes]) -> None:
        """Ready text (self-reports): MESSAGE and the identifier only."""
        self.enqueue([msgpack.packb([b"MESSAGE=" + m, b"PRIORITY=6", b"SYSLOG_IDENTIFIER=" + self._identifier],
                                    use_bin_type=True) for m in messages])
