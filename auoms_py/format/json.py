"""auoms-py's JSON format: one JSON object per output record (documented in docs/json-format.md).

Same fields and names as the MSTIC line, but typed: ids, pids, counts as numbers, `path_*` as arrays, text as
real Unicode (bytes that are not UTF-8 as the four characters `\\xNN`), plus `argv` (the exact arguments of an
AUOMS_EXECVE) and `proctitle_argv`. Always valid JSON, whatever the input bytes.
"""
from __future__ import annotations

import json
import time

try:
    import orjson  # ~9x faster than the json module's C encoder on our records (docs/performance.md)
except ImportError:  # the json module writes the same text
    orjson = None

from auoms_py.pipeline.cache import BoundedCache
from auoms_py.pipeline.model import BARE, OutputRecord

# raw numeric fields: typed as numbers when their value is a decimal integer (typed by name, never by look,
# so a field keeps one type across events)
NUMERIC_FIELDS = frozenset((
    "pid", "ppid", "uid", "gid", "euid", "suid", "fsuid", "egid", "sgid", "fsgid", "auid", "ouid", "ogid", "ses",
    "old-ses", "old-auid", "exit", "argc", "inode", "item", "items", "syscall_r", "id_r", "opid", "oauid", "oses",
    "oauid_r", "ouid_r", "old-auid_r", "iuid", "igid", "sauid", "obj_uid", "obj_gid", "inode_uid", "inode_gid",
    "new_gid", "oauid", "fe", "fver",
))
ARRAY_FIELDS = frozenset(("path_name", "path_nametype", "path_mode", "path_ouid", "path_ogid"))
_NUMERIC_ARRAYS = frozenset(("path_ouid", "path_ogid"))


def text(value: str) -> str:
    """latin-1-decoded bytes -> Unicode; invalid UTF-8 as \\xNN."""
    if value.isascii():
        return value
    return value.encode("latin-1").decode("utf-8", "backslashreplace")


def _number(value: str):
    if value.isdecimal() or (value[:1] == "-" and value[1:].isdecimal()):
        return int(value)
    return text(value)


def _typed(name: str, value: str, style: int):
    if style == BARE:
        if name in NUMERIC_FIELDS:
            return _number(value)
        if name in ARRAY_FIELDS:
            return _array(name, value)
    elif name == "ses" or name == "old-ses":
        return _number(value)  # "-1"
    return text(value)


def _array(name: str, value: str):
    """A path_* array as the merge writes it (JSON text of strings); a record's own field of that name that is
    not one (`path_name=x` in a user record) stays text rather than stopping the record."""
    try:
        items = json.loads(value)
    except (ValueError, RecursionError):
        return text(value)
    if not isinstance(items, list) or not all([isinstance(item, str) for item in items]):
        return text(value)
    if name in _NUMERIC_ARRAYS:
        return [int(item) if item.isdecimal() else item for item in items]
    return items


_last_second = ("", "")  # the last second formatted, and its text: events come in bursts within one second


def iso_time(stamp: str) -> str:
    """ISO-8601 UTC with milliseconds for the `SEC.MSEC` of an event id as written (three-digit milliseconds)."""
    global _last_second
    sec, _, msec = stamp.partition(".")
    last = _last_second  # one read of one tuple: outputs may format in several threads
    if sec != last[0]:
        last = _last_second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(sec))))
    return f"{last[1]}.{msec}Z"


# The fast path's parts hold tuples of fields shared by every event whose record had the same text: their JSON
# (name, value) pairs are made once per tuple and added with one dict.update.
_pairs_of_fields = BoundedCache()


def _pairs(triples: tuple) -> dict:
    pairs = {}
    for name, value, style in triples:  # a later field of the same name replaces the value, as in obj
        if name != "node":
            pairs[name] = _typed(name, value, style)
    return _pairs_of_fields.put(triples, pairs)


def _add_bare(obj: dict, part_text: str) -> None:
    """Bare `name=value` fields (values without spaces) into obj: _typed for BARE, without making the triples."""
    for token in part_text.split(" "):
        name, _, value = token.partition("=")
        if name in NUMERIC_FIELDS:
            obj[name] = _number(value)
        elif name in ARRAY_FIELDS:
            obj[name] = _array(name, value)
        elif name != "node":
            obj[name] = text(value)


# A folded record's fields are one list shared by every record of the same text (the merge caches them): their
# prefixed JSON pairs are made once per list (the entry holds the list, so its id is not reused while cached).
_merged_pairs = BoundedCache()


def _prefixed(type_name: str, fields: list) -> dict:
    entry = _merged_pairs.get(id(fields))
    if entry is None or entry[0] is not fields or entry[1] != type_name:
        pairs = {}
        for name, value, style in fields:
            pairs[f"{type_name}_{name}"] = _typed(name, value, style)
        entry = _merged_pairs.put(id(fields), (fields, type_name, pairs))
    return entry[2]


def _add_fields(obj: dict, record: OutputRecord) -> None:
    """The record's fields into obj, in order, a later one of the same name replacing the value (dict order)."""
    parts = record.parts
    if parts is None or record._fields_set:
        for name, value, style in record.fields:
            if name != "node":
                obj[name] = _typed(name, value, style)
        return
    get = _pairs_of_fields.get
    for part_text, triples in parts:
        if triples is None:  # bare fields whose values differ in every event (pid, a0...)
            _add_bare(obj, part_text)
        else:
            obj.update(get(triples) or _pairs(triples))


def to_dict(record: OutputRecord, excluded_types: frozenset = frozenset()) -> dict:
    stamp, _, serial = record.event_id.partition(":")
    obj = {"type": record.type_name, "time": iso_time(stamp), "serial": int(serial)}
    if record.node is not None:
        obj["node"] = text(record.node)
    _add_fields(obj, record)
    for merged in record.merged:
        type_name = merged.type_name
        if type_name in excluded_types:
            continue
        obj.update(_prefixed(type_name, merged.fields))
    if record.is_syscall:
        obj["containerid"] = record.containerid
    if record.argv is not None:
        obj["argv"] = [text(arg) for arg in record.argv]
    if record.proctitle_argv is not None:
        obj["proctitle_argv"] = [text(arg) for arg in record.proctitle_argv]
    if record.dropped_records:
        obj["dropped_records"] = record.dropped_records
    if record.extra:
        obj.update(record.extra)
    return obj


def format_record(record: OutputRecord, excluded_types: frozenset = frozenset()) -> str | None:
    if record.type_name in excluded_types:
        return None
    return _encode(to_dict(record, excluded_types))


_stdlib_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # one encoder, not one per record


def _encode(obj: dict) -> str:
    """The object as compact JSON, non-ASCII written as is: orjson when installed, else the json module (the same
    text, tested; also for what orjson refuses: integers beyond 64 bits, as a forged inode may be)."""
    if orjson is not None:
        try:
            return orjson.dumps(obj).decode()
        except TypeError:  # orjson.JSONEncodeError
            pass
    return _stdlib_encode(obj)
