"""The MSTIC syslog body (reference §7): `type=NAME audit(SEC.MSEC:SERIAL): name=value ...`.

This is exactly what goes after the syslog header; Sentinel's AUOMS parsers read it. Values are written as AUOMS
writes them: bare, or `name="text"` for decoded text with bytes < 0x20 or > 0x7E as `\\xNN` (so a NUL can no
longer cut the message, AUOMS defect §10.9). Record types the output does not write are left out, also from
merged syscall records (defect §10.11: BPRM_FCAPS fields broke the `cmdline="..." containerid=` adjacency).
"""
from __future__ import annotations

from auoms_py.pipeline.escape import tty_escape
from auoms_py.pipeline.model import TEXT, OutputRecord

# AUOMS's MSTIC output configuration (testout.conf filter_record_types)
DEFAULT_EXCLUDED_TYPES = frozenset((
    "BPRM_FCAPS", "CRED_ACQ", "CRED_DISP", "CRED_REFR", "CRYPTO_KEY_USER", "CRYPTO_SESSION", "LOGIN", "PROCTITLE",
    "USER_ACCT", "USER_CMD", "USER_END", "USER_LOGOUT", "USER_START",
))

_CONTROL_BYTES = bytes(range(0x20)) + b"\x7f"


def _write_fields(parts: list, fields, prefix: str = "") -> None:
    for name, value, style in fields:
        if style == TEXT:
            parts.append(f'{prefix}{name}="{value}"')
        else:
            parts.append(f"{prefix}{name}={value}")


def format_record(record: OutputRecord, excluded_types: frozenset = DEFAULT_EXCLUDED_TYPES) -> str | None:
    """The syslog body for one output record, or None if its record type is not written."""
    if record.type_name in excluded_types:
        return None
    head = f"type={record.type_name} audit({record.sec}.{record.msec:03d}:{record.serial}):"
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
    line = " ".join(parts)
    # no C0 or DEL byte: deleting them changes nothing (in C, twice as fast as str.isprintable's per-character test)
    if line.isascii() and len(line.encode("ascii").translate(None, _CONTROL_BYTES)) == len(line):
        return line
    # control and non-ASCII bytes, wherever they are (values, odd field names), as \xNN: one pass, rarely taken
    return tty_escape(line)
