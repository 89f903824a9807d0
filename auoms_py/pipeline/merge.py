"""Merge: an assembled event -> output records (reference §3).

A syscall event (SYSCALL, EXECVE, CWD, PATH, SOCKADDR or INTEGRITY_RULE among its records; the SYSCALL record
goes first) becomes ONE record, AUOMS_EXECVE / AUOMS_SYSCALL / AUOMS_SYSCALL_FRAGMENT, with its fields in the
order Sentinel's parsers need. Any other event passes through: one output record per input record.
"""
from __future__ import annotations

import json

from auoms_py.pipeline import model
from auoms_py.pipeline.escape import join_args, split_proctitle, unescape
from auoms_py.pipeline.execve import build_argv
from auoms_py.pipeline.interpret import Interpreter, split_keys, syscall_name
from auoms_py.pipeline.model import BARE, TEXT, Event, MergedRecord, OutputRecord

SYSCALL_EVENT_TYPES = frozenset((model.SYSCALL, model.EXECVE, model.CWD, model.PATH, model.SOCKADDR,
                                 model.INTEGRITY_RULE))
_SKIP_SYSCALL_FIELDS = frozenset(("type", "items"))
_SKIP_PATH_FIELDS = frozenset(("item", "node"))
# records folded into dedicated fields rather than copied as <TYPE>_<field>
_FOLDED = frozenset((model.SYSCALL, model.EXECVE, model.CWD, model.PATH, model.SOCKADDR, model.INTEGRITY_RULE,
                     model.PROCTITLE, model.EOE))


def _int(value: str | None) -> int | None:
    if value is not None and value.isdigit():
        return int(value)
    return None


def _json_array(values: list[str]) -> str:
    """JSON array text, as AUOMS writes path_* (non-ASCII and control characters as \\u escapes)."""
    joined = '","'.join(values)
    plain = joined.count('"') == 2 * (len(values) - 1) and "\\" not in joined  # no quote inside a value
    if plain and joined.isascii() and joined.isprintable():
        return f'["{joined}"]'  # the common case, without the json module's overhead
    return json.dumps(values, separators=(",", ":"))


def _item_number(record) -> int:
    item = record.get("item")
    return int(item) if item is not None and item.isdigit() else 1 << 30


class Merger:
    def __init__(self, interpreter: Interpreter):
        self.interpreter = interpreter

    def event_records(self, event: Event) -> list[OutputRecord]:
        """The output records of one event."""
        records = event.records
        if any(record.code in SYSCALL_EVENT_TYPES for record in records):
            return [self.merge_syscall_event(event)]
        return [self.pass_through(event, record) for record in records]

    def pass_through(self, event: Event, record) -> OutputRecord:
        out = OutputRecord(record.code, record.type_name, event.sec, event.msec, event.serial, record.node)
        if record.node is not None:
            out.fields.append(("node", record.node, BARE))
        self.interpreter.add_fields(out.fields, record.code, record.fields())
        for name, value in record.fields():
            if name == "pid":
                out.pid = _int(value)
            elif name == "uid":
                out.uid = _int(value)
            elif name == "exe":
                out.exe = unescape(value)[0]
        return out

    def merge_syscall_event(self, event: Event) -> OutputRecord:
        syscall = cwd = sockaddr = integrity = proctitle = None
        paths = []
        execves = []
        others = []
        for record in event.records:
            code = record.code
            if code == model.SYSCALL:
                if syscall is None:
                    syscall = record
                    continue
            elif code == model.EXECVE:
                execves.append(record)
                continue
            elif code == model.PATH:
                paths.append(record)
                continue
            elif code == model.CWD:
                if cwd is None:
                    cwd = record
                continue
            elif code == model.SOCKADDR:
                if sockaddr is None:
                    sockaddr = record
                continue
            elif code == model.INTEGRITY_RULE:
                if integrity is None:
                    integrity = record
                continue
            elif code == model.PROCTITLE:
                if proctitle is None:
                    proctitle = record
                continue
            others.append(record)

        add = self.interpreter.add_fields
        arch_raw = None
        syscall_readable = None
        if syscall is not None:
            sys_fields = syscall.fields()
            values = dict(sys_fields[::-1])  # first occurrence wins
            arch_raw = values.get("arch")
            raw_number = values.get("syscall")
            syscall_readable = syscall_name(raw_number, arch_raw) if raw_number is not None else None
            if syscall_readable is not None and syscall_readable.startswith("execve"):
                code, type_name = model.AUOMS_EXECVE, "AUOMS_EXECVE"
            else:
                code, type_name = model.AUOMS_SYSCALL, "AUOMS_SYSCALL"
            out = OutputRecord(code, type_name, event.sec, event.msec, event.serial, syscall.node)
            fields = out.fields
            if syscall.node is not None:
                fields.append(("node", syscall.node, BARE))
            add(fields, model.SYSCALL, sys_fields, arch_raw, skip=_SKIP_SYSCALL_FIELDS)
            out.syscall = syscall_readable
            out.pid = _int(values.get("pid"))
            out.ppid = _int(values.get("ppid"))
            out.uid = _int(values.get("uid"))
            out.gid = _int(values.get("gid"))
            exe = values.get("exe")
            out.exe = unescape(exe)[0] if exe is not None else None
            out.keys = split_keys(values.get("key"))
            out.success = values.get("success")
        else:
            first = event.records[0]
            out = OutputRecord(model.AUOMS_SYSCALL_FRAGMENT, "AUOMS_SYSCALL_FRAGMENT", event.sec, event.msec,
                               event.serial, first.node)
            fields = out.fields
        out.is_syscall = True

        if cwd is not None:
            value = cwd.get("cwd")
            if value is not None:
                add(fields, model.CWD, [("cwd", value)])

        if paths:
            # sort by item number so the path_* arrays line up (AUOMS defect §10.5)
            paths.sort(key=_item_number)
            first_path = paths[0]
            if first_path.get("item") == "0":
                add(fields, model.PATH, first_path.fields(), arch_raw, skip=_SKIP_PATH_FIELDS)
            names, nametypes, modes, ouids, ogids = [], [], [], [], []
            for path in paths:
                pf = dict(path.fields()[::-1])  # first occurrence wins
                name = pf.get("name")
                names.append(unescape(name)[0].encode("latin-1").decode("utf-8", "backslashreplace")
                             if name is not None else "")
                nametypes.append(pf.get("nametype", pf.get("objtype", "")))
                modes.append(pf.get("mode", ""))
                ouids.append(pf.get("ouid", ""))
                ogids.append(pf.get("ogid", ""))
            fields.append(("path_name", _json_array(names), BARE))
            fields.append(("path_nametype", _json_array(nametypes), BARE))
            fields.append(("path_mode", _json_array(modes), BARE))
            fields.append(("path_ouid", _json_array(ouids), BARE))
            fields.append(("path_ogid", _json_array(ogids), BARE))

        if execves:
            argv, cmdline, argc = build_argv([record.fields() for record in execves])
            fields.append(("argc", str(argc), BARE))
            fields.append(("cmdline", cmdline, TEXT))
            out.argv = argv
            out.cmdline = cmdline

        if sockaddr is not None:
            value = sockaddr.get("saddr")
            if value is not None:
                add(fields, model.SOCKADDR, [("saddr", value)], arch_raw)

        if integrity is not None:
            value = integrity.get("hash")
            if value is not None:
                fields.append(("hash", value, BARE))

        if proctitle is not None:
            value = proctitle.get("proctitle")
            if value is not None:
                args = split_proctitle(unescape(value)[0])  # decoded once (AUOMS defect §10.4)
                out.proctitle_argv = args
                if not execves:
                    text = join_args(args)
                    # AUOMS writes proctitle bare; quoting is left to the formats that need it
                    fields.append(("proctitle", text, BARE))
                    out.cmdline = text

        if others:
            def interpret_merged(record, arch_raw=arch_raw):
                merged_fields: list = []
                add(merged_fields, record.code, record.fields(), arch_raw, renamed=False)
                return merged_fields

            out.merged = [MergedRecord(record.type_name, record, interpret_merged) for record in others]

        if event.dropped_records:
            out.dropped_records = event.dropped_records
        return out
