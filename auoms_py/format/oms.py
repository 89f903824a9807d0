"""AUOMS's `oms` format (reference §11): one JSON array per event,
`[SEC.MSEC, {"MessageType": ..., "Timestamp": ..., "SerialNumber": N, "ProcessFlags": 0, "records": [...]}]`,
every field value a string written as the MSTIC output writes it.
"""
from __future__ import annotations

from json.encoder import encode_basestring_ascii as _json_string

from auoms_py.format.mstic import DEFAULT_EXCLUDED_TYPES
from auoms_py.pipeline.cache import BoundedCache
from auoms_py.pipeline.escape import tty_escape
from auoms_py.pipeline.model import OutputRecord, bare_fields


def _pair(name: str, value: str) -> str:
    return f"{_json_string(name)}:{_json_string(tty_escape(value))}"


# The fast path's parts hold tuples of fields shared by every event whose record had the same text: their JSON
# text is made once per tuple.
_json_of_fields = BoundedCache()


def _fields_json(triples: tuple) -> str:
    return _json_of_fields.put(triples, ",".join([_pair(name, value) for name, value, _style in triples]))


def _record_json(record: OutputRecord, excluded_types) -> str:
    parts = [f'{{"RecordTypeCode":{record.code},"RecordType":{_json_string(record.type_name)}']
    if record.parts is None or record._fields_set:
        for name, value, _style in record.fields:
            parts.append(_pair(name, value))
    else:
        get = _json_of_fields.get
        for part_text, triples in record.parts:
            if triples is None:  # bare fields whose values differ in every event (pid, a0...)
                parts += [_pair(name, value) for name, value, _style in bare_fields(part_text)]
            elif triples:
                parts.append(get(triples) or _fields_json(triples))
    for merged in record.merged:
        type_name = merged.type_name
        if type_name not in excluded_types:
            for name, value, _style in merged.fields:
                parts.append(_pair(type_name + "_" + name, value))
    if record.is_syscall:
        parts.append(f'"containerid":{_json_string(record.containerid)}')
    return ",".join(parts) + "}"


def format_event(records: list[OutputRecord], excluded_types: frozenset = DEFAULT_EXCLUDED_TYPES) -> str | None:
    """One line for an output event, or None when none of its records is written."""
    written = [_record_json(record, excluded_types) for record in records if record.type_name not in excluded_types]
    if not written:
        return None
    first = records[0]
    stamp, _, serial = first.event_id.partition(":")
    message_type = "AUOMS_EVENT" if first.is_syscall else "AUDIT_EVENT"
    return (f'[{float(stamp)!r},{{"MessageType":"{message_type}","Timestamp":"{stamp}",'
            f'"SerialNumber":{serial},"ProcessFlags":0,"records":[{",".join(written)}]}}]')
