"""The MSTIC syslog body (reference §7): `type=NAME audit(SEC.MSEC:SERIAL): name=value ...`.

This is exactly what goes after the syslog header; Sentinel's AUOMS parsers read it. Values are written as AUOMS
writes them: bare, or `name="text"` for decoded text with bytes < 0x20 or > 0x7E as `\\xNN` (so a NUL can no
longer cut the message, AUOMS defect §10.9). Record types the output does not write are left out, also from
merged syscall records (defect §10.11: BPRM_FCAPS fields broke the `cmdline="..." containerid=` adjacency).
"""
from __future__ import annotations

from auoms_py.pipeline.escape import tty_escape
from auoms_py.pipeline.model import MSEC_TEXTS, TEXT, OutputRecord

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
    line = _unchecked_line(record, excluded_types)
    if line is None or _clean(line):
        return line
    return tty_escape(line)


def format_lines(output_events, excluded_types: frozenset = DEFAULT_EXCLUDED_TYPES) -> list[str]:
    """The syslog bodies of many output events (lists of records), as format_record writes them one by one; the
    control-byte check runs once over all of them (one C-level pass instead of one per line)."""
    lines = []
    append = lines.append
    for records in output_events:
        for record in records:
            line = _unchecked_line(record, excluded_types)
            if line is not None:
                append(line)
    text = "\n".join(lines)
    if _clean(text, _CONTROL_BYTES_BUT_NEWLINE) and text.count("\n") == len(lines) - 1:  # newlines only between
        return lines
    return [line if _clean(line) else tty_escape(line) for line in lines]


def _clean(text: str, controls: bytes = _CONTROL_BYTES) -> bool:
    """No byte of `controls` (C0 and DEL) and none above 0x7F. Deleting them changes nothing: in C, twice as fast
    as str.isprintable's per-character test."""
    return text.isascii() and len(text.encode("ascii").translate(None, controls)) == len(text)


def _unchecked_line(record: OutputRecord, excluded_types: frozenset) -> str | None:
    """The line before control and non-ASCII bytes are escaped, or None if its record type is not written."""
    if record.type_name in excluded_types:
        return None
    head = f"type={record.type_name} audit({record.sec}.{MSEC_TEXTS[record.msec]}:{record.serial}):"
    texts = record.field_texts()
    if texts is not None:
        parts = [head, *texts]
    else:
        parts = [head]
        _write_fields(parts, record.fields)
    for merged in record.merged:
        type_name = merged.type_name
        if type_name not in excluded_types:
            _write_fields(parts, merged.fields, type_name + "_")
    if record.is_syscall:
        parts.append(f"containerid={record.containerid}")
    return " ".join(parts)
