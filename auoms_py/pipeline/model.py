"""The values that flow through the pipeline: raw records, assembled events, output records.

Text convention: every string that holds audit data is a *byte string decoded as latin-1* (one character per
byte, lossless). The kernel's bytes, including invalid UTF-8, survive every stage unchanged; formatters turn them
into what their format needs (raw bytes for syslog, `\\xNN` escapes, or real Unicode for JSON).
"""
from __future__ import annotations

from typing import NamedTuple

from auoms_py.pipeline.escape import split_proctitle, unescape

# Output field styles: how a formatter writes the value of a field.
BARE = 0  # written as is: name=value
TEXT = 1  # decoded text: mstic writes name="value" with control and non-ASCII bytes as \xNN

# Record type codes the pipeline itself needs (full table: auoms_py.pipeline.tables.record_types).
SYSCALL = 1300
PATH = 1302
SOCKADDR = 1306
CWD = 1307
EXECVE = 1309
EOE = 1320
BPRM_FCAPS = 1321
PROCTITLE = 1327
INTEGRITY_RULE = 1805
INTEGRITY_POLICY_RULE = 1807
AUOMS_SYSCALL = 10001
AUOMS_SYSCALL_FRAGMENT = 10002
AUOMS_DROPPED_RECORDS = 10004
AUOMS_STATUS = 10005
AUOMS_METRIC = 10006
AUOMS_EXECVE = 14688


def event_id_numbers(event_id: str) -> tuple[int, int, int]:
    """(sec, msec, serial) of an event id in the form every format writes, `1521757638.392:262332`."""
    stamp, _, serial = event_id.partition(":")
    sec, _, msec = stamp.partition(".")
    return int(sec), int(msec), int(serial)


def _id_number(index: int) -> property:
    """sec (0), msec (1) or serial (2) of an object's event id, read from its text when asked: most events are
    written with the id's text alone (the object's id_numbers() says how)."""
    return property(lambda self: self.id_numbers()[index])


def bare_fields(text: str) -> list[tuple[str, str, int]]:
    """The fields of a part whose triples are None: bare `name=value` tokens, values without spaces."""
    return [(name, value, BARE) for name, _, value in [token.partition("=") for token in text.split(" ")]]


class Record(NamedTuple):
    """The layout of a record as read: its type, its event id as logged (`SEC.MSEC:SERIAL`) and the text after
    `audit(...): `. The parsers give records as plain 5-tuples of this layout and the pipeline indexes them
    (record[0] is the code, record[4] the body): a tuple is made for every line, and an instance of a tuple
    subclass costs four times as much to make and free (replay 5 % slower). `Record(*record)` names the fields
    where that reads better (tests). Fields are split only by the stages that need them (`fields()`)."""

    code: int
    type_name: str
    node: str | None
    key: str  # event id text, e.g. "1521757638.392:262332"
    body: str

    def fields(self) -> list[tuple[str, str]]:
        """The record's fields as (name, raw value) pairs in order (parse.record_fields, for any record)."""
        from auoms_py.pipeline.parse import record_fields

        return record_fields(self)

    def get(self, name: str, default: str | None = None) -> str | None:
        from auoms_py.pipeline.parse import record_value

        return record_value(self, name, default)


class Event:
    """The records of one audit event (same event id), in arrival order, without the EOE record."""

    __slots__ = ("key", "event_id", "records", "node", "size", "touched", "dropped_records", "dropped_bytes",
                 "mixed_nodes", "complete")

    def __init__(self, key: str, event_id: str):
        self.key = key  # the id as logged, which groups the records
        self.event_id = event_id  # the same as written: SEC.MSEC:SERIAL with three-digit milliseconds
        self.records: list[Record] = []
        self.node: str | None = None  # node= of the first record
        self.size = 0  # bytes of record text held
        self.touched = 0.0  # clock time of the last record added (idle events are flushed)
        self.dropped_records = 0  # records cut because the event exceeded its size bound
        self.dropped_bytes = 0
        self.mixed_nodes = False  # records named different node= values (kept together, as AUOMS does)
        self.complete = False  # ended by EOE or a single-record type (False: flushed by timeout / limit / end)

    def id_numbers(self) -> tuple[int, int, int]:
        return event_id_numbers(self.event_id)  # (not kept: the pipeline itself never asks)

    sec, msec, serial = _id_number(0), _id_number(1), _id_number(2)

    def __repr__(self) -> str:
        types = ",".join(r[1] for r in self.records)
        return f"<Event {self.event_id} [{types}]>"


class MergedRecord:
    """A record folded into a merged syscall record as `<TYPE>_<field>` fields (OBJ_PID, MMAP, AVC, BPRM_FCAPS...).

    Its fields are interpreted when a format first asks for them: an output that leaves the type out
    (BPRM_FCAPS, on every exec by root, in the MSTIC output) never pays for them.
    """

    __slots__ = ("type_name", "record", "arch", "_interpret", "_fields")

    def __init__(self, type_name: str, record: Record, interpret, arch: str | None = None):
        self.type_name = type_name
        self.record = record
        self.arch = arch  # the event's raw arch (syscall names, sockaddr byte order)
        self._interpret = interpret  # (record, arch) -> list of (name, value, style)
        self._fields = None

    @property
    def fields(self) -> list[tuple[str, str, int]]:
        if self._fields is None:
            self._fields = self._interpret(self.record, self.arch)
        return self._fields

    def with_fields(self, fields: list[tuple[str, str, int]]) -> MergedRecord:
        """A copy with other fields (per-output field drops)."""
        copy = MergedRecord(self.type_name, self.record, self._interpret, self.arch)
        copy._fields = fields
        return copy


class OutputRecord:
    """One record ready for the formatters: AUOMS_EXECVE / AUOMS_SYSCALL / AUOMS_SYSCALL_FRAGMENT merged from a
    syscall event, or a pass-through record of any other event.

    `fields` are (name, value, style) with names already as written (renamed, `_r` suffixes); `merged` holds the
    other records of a syscall event (MergedRecord) so that each output can leave out the record types it does
    not write before prefixing the names (`OBJ_PID_opid`). The process attributes (pid, ppid, uid, gid, exe,
    cmdline, syscall, key) are the raw facts filters and the process tree work on.

    The merge stage's fast path fills `parts` instead of `fields`: (text, triples) pairs where `text` is one or
    more fields as the MSTIC line writes them (`user=root uid=0`) and `triples` their (name, value, style), or
    None when `text` is bare fields whose values hold no space (`a0=3 a1=7ffd pid=42`). The MSTIC formatter joins
    the texts, and the JSON and oms formatters cache what they make of each `triples` (a tuple shared by every
    event whose record had the same text); `fields` is derived from the parts the first time a format asks.
    Assign `fields` to change a record (a copy, for per-output edits): the parts then no longer describe it and
    every format works from `fields`.
    """

    # Defaults at class level: a record is made per event, and most attributes keep their default, so __init__
    # sets only what every record has (no __slots__, on purpose: 27 slot stores per record cost more).
    parts: list | None = None
    parts_escaped = False  # the parts' texts hold no control or non-ASCII byte (the fast path escapes what it caches)
    _fields: list[tuple[str, str, int]] | None = None
    _fields_set = False
    merged: tuple | list = ()  # MergedRecord
    is_syscall = False  # merged from a syscall event: writes `containerid` last
    containerid = ""
    argv: list[str] | None = None  # decoded arguments (AUOMS_EXECVE)
    _proctitle_argv: list[str] | None = None
    _proctitle_raw: str | None = None  # the PROCTITLE value as logged, decoded when proctitle_argv is first read
    syscall: str | None = None  # syscall name
    pid: int | None = None
    ppid: int | None = None
    uid: int | None = None
    gid: int | None = None
    exe: str | None = None  # decoded executable path
    cmdline: str | None = None  # cmdline as written (shell-escaped), or the proctitle text
    keys: tuple[str, ...] = ()  # audit rule keys
    success: str | None = None
    dropped_records = 0
    extra: dict | None = None  # additions by later stages for the JSON format (e.g. parent process)
    raw_text: str | None = None  # a pass-through record's text as read (fluent's RecordText)

    _numbers: tuple[int, int, int] | None = None

    def __init__(self, code: int, type_name: str, event_id: str, node: str | None):
        self.code = code
        self.type_name = type_name
        self.event_id = event_id  # SEC.MSEC:SERIAL, three-digit milliseconds, as every format writes it
        self.node = node

    def id_numbers(self) -> tuple[int, int, int]:
        numbers = self._numbers  # kept: a format may read sec, msec and serial of every record
        if numbers is None:
            numbers = self._numbers = event_id_numbers(self.event_id)
        return numbers

    sec, msec, serial = _id_number(0), _id_number(1), _id_number(2)

    @property
    def fields(self) -> list[tuple[str, str, int]]:
        fields = self._fields
        if fields is None:
            fields = self._fields = []
            if self.parts:
                for text, triples in self.parts:
                    fields.extend(bare_fields(text) if triples is None else triples)
        return fields

    @fields.setter
    def fields(self, fields: list[tuple[str, str, int]]) -> None:
        self._fields = fields
        self._fields_set = True

    @property
    def proctitle_argv(self) -> list[str] | None:
        """The decoded PROCTITLE, split at NUL. Decoded on first use: an AUOMS_EXECVE's MSTIC line does not write
        it (its cmdline comes from EXECVE), so only the formats that do pay for it."""
        argv = self._proctitle_argv
        if argv is None and self._proctitle_raw is not None:
            argv = self._proctitle_argv = split_proctitle(unescape(self._proctitle_raw)[0])
        return argv

    @proctitle_argv.setter
    def proctitle_argv(self, argv: list[str] | None) -> None:
        self._proctitle_argv = argv
        self._proctitle_raw = None

    def get(self, name: str, default: str | None = None) -> str | None:
        for fname, value, _style in self.fields:
            if fname == name:
                return value
        return default

    def __repr__(self) -> str:
        return f"<OutputRecord type={self.type_name} audit({self.event_id}) {len(self.fields)} fields>"
