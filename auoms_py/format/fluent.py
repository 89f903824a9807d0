"""AUOMS's `fluent` shape (reference §11): what its FluentEventWriter sends to Fluentd / the OMS agent.

One entry per output record, `[time, {field: "string", ...}]`; the forward output puts entries into
`[tag, [entry, ...], {"chunk": id}]` (Fluentd forward protocol, Forward mode; tag LINUX_AUDITD_BLOB by default).
Every value is a string, as AUOMS writes them:

    Timestamp       "2018-03-22T22:27:18.392Z" (the event's time, UTC, milliseconds)
    AuditID         "1521757638.392:262332"
    Computer        the host name
    SerialNumber    "262332"
    MessageType     "AUOMS_EVENT" (a merged syscall event) or "AUDIT_EVENT" (a passed-through record)
    ProcessFlags    "" (AUOMS writes an empty value here)
    RecordType      "AUOMS_EXECVE", RecordTypeCode "14688"
    RecordText      the record as logged (`type=USER_LOGIN msg=audit(...): ...`) for passed-through records,
                    "" for merged ones
    and the record's fields with the names and values of the oms format (tty-escaped text), `<TYPE>_<field>` for
    the records folded into a syscall record, `containerid` last; not the raw syscall number (`syscall_r`), which
    AUOMS's fluent output does not write either.

Record types the MSTIC output leaves out (PROCTITLE, LOGIN, BPRM_FCAPS ...) are left out here too.

Entry time: the event's own time in whole seconds (AUOMS used the time of sending; the event time is what a SIEM
should index, and the millisecond time is in Timestamp). `event_time=True` writes Fluentd's EventTime (msgpack ext
type 0: seconds and nanoseconds, big-endian) instead, for Fluentd >= 0.14 and Fluent Bit.
"""
from __future__ import annotations

import struct
import time

import msgpack

from auoms_py.format.mstic import DEFAULT_EXCLUDED_TYPES
from auoms_py.pipeline.escape import tty_escape
from auoms_py.pipeline.model import OutputRecord

SKIPPED_FIELDS = frozenset(("syscall_r",))
_EVENT_TIME = struct.Struct(">II")

_packer = msgpack.Packer(use_bin_type=True)


def record_text(record: OutputRecord) -> str:
    """The record as logged, for a passed-through record (the pipeline keeps its text in `raw_text`)."""
    body = getattr(record, "raw_text", None)
    if body is None or record.is_syscall:
        return ""
    return tty_escape(f"type={record.type_name} msg=audit({record.sec}.{record.msec:03d}:{record.serial}): "
                      f"{body}")


def record_map(record: OutputRecord, hostname: str, message_type: str) -> dict:
    stamp = f"{record.sec}.{record.msec:03d}"
    fields = {
        "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.sec)) + f".{record.msec:03d}Z",
        "AuditID": f"{stamp}:{record.serial}",
        "Computer": hostname,
        "SerialNumber": str(record.serial),
        "MessageType": message_type,
        "ProcessFlags": "",
        "RecordType": record.type_name,
        "RecordTypeCode": str(record.code),
        "RecordText": record_text(record),
    }
    for name, value, _style in record.fields:
        if name not in SKIPPED_FIELDS:
            fields[name] = tty_escape(value)
    for merged in record.merged:
        type_name = merged.type_name
        if type_name not in DEFAULT_EXCLUDED_TYPES:
            prefix = type_name + "_"
            for name, value, _style in merged.fields:
                fields[prefix + name] = tty_escape(value)
    if record.is_syscall:
        fields["containerid"] = record.containerid
    return fields


def entry_time(record: OutputRecord, event_time: bool):
    if event_time:
        return msgpack.ExtType(0, _EVENT_TIME.pack(record.sec, record.msec * 1_000_000))
    return record.sec


def event_entries(records: list[OutputRecord], hostname: str, *, event_time: bool = False) -> list[bytes]:
    """The msgpack-encoded entries `[time, {fields}]` of one output event (none for record types left out).
    Called from the agent thread only (the module's packer is not shared with the delivery thread)."""
    if not records:
        return []
    message_type = "AUOMS_EVENT" if records[0].is_syscall else "AUDIT_EVENT"
    pack = _packer.pack
    return [pack([entry_time(rec, event_time), record_map(rec, hostname, message_type)])
            for rec in records if rec.type_name not in DEFAULT_EXCLUDED_TYPES]


def forward_message(tag: str, entries: list[bytes], chunk: str | None) -> bytes:
    """`[tag, [entry, ...], {"chunk": id, "size": n}]` (Forward mode) from entries packed already: the entries are
    copied as they are, not decoded and packed again."""
    option = {"size": len(entries)}
    if chunk is not None:
        option["chunk"] = chunk
    header = msgpack.Packer(use_bin_type=True)  # this runs in the delivery thread: a packer of its own
    return b"".join([b"\x93", header.pack(tag), header.pack_array_header(len(entries)), *entries, header.pack(option)])
