"""The MSTIC syslog body (reference §7): `type=NAME audit(SEC.MSEC:SERIAL): name=value ...`.

This is exactly what goes after the syslog header; Sentinel's AUOMS parsers read it. Values are written as AUOMS
writes them: bare, or `name="text"` for decoded text with bytes < 0x20 or > 0x7E as `\\xNN` (so a NUL can no
longer cut the message, AUOMS defect §10.9). Record types the output does not write are left out, also from
merged syscall records (defect §10.11: BPRM_FCAPS fields broke the `cmdline="..." containerid=` adjacency).
"""
from __future__ import annotations

from operator import itemgetter

from auoms_py.pipeline.escape import tty_escape
from auoms_py.pipeline.model import TEXT, OutputRecord

# AUOMS's MSTIC output configuration (testout.conf filter_record_types)
DEFAULT_EXCLUDED_TYPES = frozenset((
    "BPRM_FCAPS", "CRED_ACQ", "CRED_DISP", "CRED_REFR", "CRYPTO_KEY_USER", "CRYPTO_SESSION", "LOGIN", "PROCTITLE",
    "USER_ACCT", "USER_CMD", "USER_END", "USER_LOGOUT", "USER_START",
))

_CONTROL_BYTES = bytes(range(0x20)) + b"\x7f"
_CONTROL_BYTES_BUT_NEWLINE = _CONTROL_BYTES.replace(b"\n", b"")


def _write_fields(parts: list, fields, prefix: str = "") -> None:
    for name, value, style in fields:
        if style == TEXT:
            parts.append(f'{prefix}{name}="{value}"')
        else:
            parts.append(f"{prefix}{name}={value}")


def format_record(record: OutputRecord, excluded_types: frozenset = DEFAULT_EXCLUDED_TYPES) -> str | None:
    """The syslog body for one output record, or None if its record type is not written."""
    lines = format_lines(((record,),), excluded_types)
    return lines[0] if lines else None


def format_lines(output_events, excluded_types: frozenset = DEFAULT_EXCLUDED_TYPES, _first=itemgetter(0)) -> list[str]:
    """The syslog bodies of many output events (lists of records), one per record whose type is written. A line
    holding a control or non-ASCII byte is escaped (tty_escape). Lines made of parts the fast path escaped when
    it cached them (with the event id, type name and digits) need no check; the others are checked together (one
    C-level pass instead of one per line)."""
    lines = []
    append = lines.append
    unchecked = []  # indexes of the lines to check
    for records in output_events:
        for record in records:
            type_name = record.type_name
            if type_name in excluded_types:
                continue
            head = f"type={type_name} audit({record.event_id}):"
            parts = record.parts
            if parts is not None and not record._fields_set:  # the fast path's texts, as they are written
                words = [head, *map(_first, parts)]
                escaped = record.parts_escaped
            else:
                words = [head]
                _write_fields(words, record.fields)
                escaped = False
            for merged in record.merged:
                merged_type = merged.type_name
                if merged_type not in excluded_types:
                    _write_fields(words, merged.fields, merged_type + "_")
                    escaped = False
            if record.is_syscall:
                if record.containerid:
                    escaped = False
                words.append(f"containerid={record.containerid}")
            if not escaped:
                unchecked.append(len(lines))
            append(" ".join(words))
    if unchecked:
        text = "\n".join([lines[index] for index in unchecked])
        if not (_clean(text, _CONTROL_BYTES_BUT_NEWLINE) and text.count("\n") == len(unchecked) - 1):
            for index in unchecked:  # newlines only between
                line = lines[index]
                if not _clean(line):
                    lines[index] = tty_escape(line)
    return lines


def _clean(text: str, controls: bytes = _CONTROL_BYTES) -> bool:
    """No byte of `controls` (C0 and DEL) and none above 0x7F. Deleting them changes nothing: in C, twice as fast
    as str.isprintable's per-character test."""
    return text.isascii() and len(text.encode("ascii").translate(None, controls)) == len(text)
