"""The values that flow through the pipeline: raw records, assembled events, output records.

Text convention: every string that holds audit data is a *byte string decoded as latin-1* (one character per
byte, lossless). The kernel's bytes, including invalid UTF-8, survive every stage unchanged; formatters turn them
into what their format needs (raw bytes for syslog, `\\xNN` escapes, or real Unicode for JSON).
"""
from __future__ import annotations

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


class Record:
    """One audit record as read: type, event id and the text after `audit(...): `.

    Fields are split only when a stage asks for them (`fields()`), so records that are dropped or passed
    through cost one `str.find` and a few slices.
    """

    __slots__ = ("code", "type_name", "node", "sec", "msec", "serial", "body", "_fields")

    def __init__(self, code: int, type_name: str, node: str | None, sec: int, msec: int, serial: int, body: str):
        self.code = code
        self.type_name = type_name
        self.node = node
        self.sec = sec
        self.msec = msec
        self.serial = serial
        self.body = body
        self._fields: list[tuple[str, str]] | None = None

    @property
    def event_key(self) -> tuple[int, int, int]:
        return (self.sec, self.msec, self.serial)

    def fields(self) -> list[tuple[str, str]]:
        """The record's fields as (name, raw value) pairs in order (values keep quotes / hex as logged)."""
        fields = self._fields
        if fields is None:
            from auoms_py.pipeline.parse import split_fields

            fields = self._fields = split_fields(self.code, self.body)
        return fields

    def get(self, name: str, default: str | None = None) -> str | None:
        for fname, value in self.fields():
            if fname == name:
                return value
        return default

    def __repr__(self) -> str:
        node = f"node={self.node} " if self.node else ""
        return f"<Record {node}type={self.type_name} audit({self.sec}.{self.msec:03d}:{self.serial}): {self.body[:60]!r}>"


class Event:
    """The records of one audit event (same event id), in arrival order, without the EOE record."""

    __slots__ = ("sec", "msec", "serial", "records", "size", "dropped_records", "dropped_bytes", "mixed_nodes", "complete")

    def __init__(self, sec: int, msec: int, serial: int):
        self.sec = sec
        self.msec = msec
        self.serial = serial
        self.records: list[Record] = []
        self.size = 0  # bytes of record text held
        self.dropped_records = 0  # records cut because the event exceeded its size bound
        self.dropped_bytes = 0
        self.mixed_nodes = False  # records named different node= values (kept together, as AUOMS does)
        self.complete = False  # ended by EOE or a single-record type (False: flushed by timeout / limit / end)

    def __repr__(self) -> str:
        types = ",".join(r.type_name for r in self.records)
        return f"<Event {self.sec}.{self.msec:03d}:{self.serial} [{types}]>"


class MergedRecord:
    """A record folded into a merged syscall record as `<TYPE>_<field>` fields (OBJ_PID, MMAP, AVC, BPRM_FCAPS...).

    Its fields are interpreted when a format first asks for them: an output that leaves the type out
    (BPRM_FCAPS, on every exec by root, in the MSTIC output) never pays for them.
    """

    __slots__ = ("type_name", "record", "_interpret", "_fields")

    def __init__(self, type_name: str, record: Record, interpret):
        self.type_name = type_name
        self.record = record
        self._interpret = interpret  # record -> list of (name, value, style)
        self._fields = None

    @property
    def fields(self) -> list[tuple[str, str, int]]:
        if self._fields is None:
            self._fields = self._interpret(self.record)
        return self._fields


class OutputRecord:
    """One record ready for the formatters: AUOMS_EXECVE / AUOMS_SYSCALL / AUOMS_SYSCALL_FRAGMENT merged from a
    syscall event, or a pass-through record of any other event.

    `fields` are (name, value, style) with names already as written (renamed, `_r` suffixes); `merged` holds the
    other records of a syscall event (MergedRecord) so that each output can leave out the record types it does
    not write before prefixing the names (`OBJ_PID_opid`). The process attributes (pid, ppid, uid, gid, exe,
    cmdline, syscall, key) are the raw facts filters and the process tree work on.
    """

    __slots__ = (
        "code", "type_name", "sec", "msec", "serial", "node", "fields", "merged", "is_syscall", "containerid",
        "argv", "proctitle_argv", "syscall", "pid", "ppid", "uid", "gid", "exe", "cmdline", "keys",
        "success", "dropped_records", "extra",
    )

    def __init__(self, code: int, type_name: str, sec: int, msec: int, serial: int, node: str | None):
        self.code = code
        self.type_name = type_name
        self.sec = sec
        self.msec = msec
        self.serial = serial
        self.node = node
        self.fields: list[tuple[str, str, int]] = []
        self.merged: list[MergedRecord] = []
        self.is_syscall = False  # merged from a syscall event: writes `containerid` last
        self.containerid = ""
        self.argv: list[str] | None = None  # decoded arguments (AUOMS_EXECVE)
        self.proctitle_argv: list[str] | None = None  # decoded PROCTITLE, split at NUL
        self.syscall: str | None = None  # syscall name
        self.pid: int | None = None
        self.ppid: int | None = None
        self.uid: int | None = None
        self.gid: int | None = None
        self.exe: str | None = None  # decoded executable path
        self.cmdline: str | None = None  # cmdline as written (shell-escaped), or the proctitle text
        self.keys: tuple[str, ...] = ()  # audit rule keys
        self.success: str | None = None
        self.dropped_records = 0
        self.extra: dict | None = None  # additions by later stages for the JSON format (e.g. parent process)

    @property
    def event_id(self) -> str:
        return f"{self.sec}.{self.msec:03d}:{self.serial}"

    def get(self, name: str, default: str | None = None) -> str | None:
        for fname, value, _style in self.fields:
            if fname == name:
                return value
        return default

    def __repr__(self) -> str:
        return f"<OutputRecord type={self.type_name} audit({self.event_id}) {len(self.fields)} fields>"
