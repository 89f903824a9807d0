"""Merge: an assembled event -> output records (reference §3).

A syscall event (SYSCALL, EXECVE, CWD, PATH, SOCKADDR or INTEGRITY_RULE among its records; the SYSCALL record
goes first) becomes ONE record, AUOMS_EXECVE / AUOMS_SYSCALL / AUOMS_SYSCALL_FRAGMENT, with its fields in the
order Sentinel's parsers need. Any other event passes through: one output record per input record.

Speed: this stage is most of the pipeline's cost, so the records the kernel writes in its usual layout take a
fast path (`FastMerger`): records, or sections of them, are looked up whole in caches of what they become, with
the values that differ in every event (exit, a0..a3, ppid, pid; a PATH record's inode) cut out of the key and
written as read; a miss is interpreted token by token (`uid=0` -> `user=root uid=0`, tokens cached too).
Anything unusual (another layout, a quoted value holding spaces, hex split arguments, several EXECVE records) takes
the general path, which handles every input; tests run both over the same corpora and require identical output.
"""
from __future__ import annotations

import json
import re

from auoms_py.pipeline import model
from auoms_py.pipeline.cache import CACHE_LIMIT, BoundedCache
from auoms_py.pipeline.escape import bash_escape, join_args, split_proctitle, tty_escape, unescape
from auoms_py.pipeline.execve import build_argv, quoted_argv
from auoms_py.pipeline.interpret import Interpreter, split_keys, syscall_name
from auoms_py.pipeline.model import BARE, TEXT, Event, MergedRecord, OutputRecord
from auoms_py.pipeline.parse import record_fields, record_value, split_fields, unwrap_msg

SYSCALL_EVENT_TYPES = frozenset((model.SYSCALL, model.EXECVE, model.CWD, model.PATH, model.SOCKADDR,
                                 model.INTEGRITY_RULE))
_SKIP_SYSCALL_FIELDS = frozenset(("type", "items"))
_SKIP_PATH_FIELDS = frozenset(("item", "node"))


def _int(value: str | None) -> int | None:
    if value is not None and value.isdecimal():
        return int(value)
    return None


def _json_string(value: str) -> str:
    """A JSON string literal as json.dumps writes it (non-ASCII and control characters as \\u escapes)."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'  # the common case, without the json module's overhead
    return json.dumps(value)


def _json_array(values) -> str:
    """JSON array text, as AUOMS writes path_* (json.dumps of the list, compact)."""
    return "[" + ",".join([_json_string(value) for value in values]) + "]"


PATH_ARRAYS = ("path_name", "path_nametype", "path_mode", "path_ouid", "path_ogid")


def _json_name(raw: str | None) -> str:
    if raw is None:
        return ""
    return unescape(raw)[0].encode("latin-1").decode("utf-8", "backslashreplace")


def render(name: str, value: str, style: int) -> str:
    """One field as the MSTIC line writes it (before the line's final escaping of control bytes)."""
    return f'{name}="{value}"' if style == TEXT else f"{name}={value}"


def _item_number(fields: list[tuple[str, str]]) -> int:
    for name, value in fields:
        if name == "item":
            return int(value) if value.isdecimal() else 1 << 30
    return 1 << 30


# record types of which a syscall event uses the first only (a second SYSCALL record is kept as an "other" record)
_FIRST_ONLY = frozenset((model.SYSCALL, model.CWD, model.PROCTITLE, model.SOCKADDR, model.INTEGRITY_RULE))


class _Classified:
    """The records of a syscall event by role."""

    __slots__ = ("syscall", "cwd", "sockaddr", "integrity", "proctitle", "paths", "execves", "others")

    def __init__(self, records, _path=model.PATH, _execve=model.EXECVE, _syscall=model.SYSCALL,
                 _first_only=_FIRST_ONLY):
        # (the default arguments make the constants locals: this runs for every syscall event)
        self.paths = paths = []
        self.execves = execves = []
        self.others = others = []
        firsts = {}
        for record in records:
            code = record[0]
            if code == _path:
                paths.append(record)
            elif code == _execve:
                execves.append(record)
            elif code in _first_only:
                if code not in firsts:
                    firsts[code] = record
                elif code == _syscall:
                    others.append(record)
            else:
                others.append(record)
        get = firsts.get
        self.syscall, self.cwd, self.sockaddr, self.integrity, self.proctitle = (
            get(_syscall), get(model.CWD), get(model.SOCKADDR), get(model.INTEGRITY_RULE), get(model.PROCTITLE))


class Merger:
    """The general path: any event, any record layout."""

    def __init__(self, interpreter: Interpreter):
        self.interpreter = interpreter

    def event_records(self, event: Event) -> list[OutputRecord]:
        """The output records of one event."""
        records = event.records
        for record in records:
            if record[0] in SYSCALL_EVENT_TYPES:
                return [self.merge_syscall_event(event)]
        return [self.pass_through(event, record) for record in records]

    def pass_through(self, event: Event, record) -> OutputRecord:
        code, _, node, _, body = record
        out = OutputRecord(code, record[1], event.event_id, node)
        out.raw_text = body
        fields = out.fields
        if node is not None:
            fields.append(("node", node, BARE))
        record_fields = split_fields(code, body)
        self.interpreter.add_fields(fields, code, record_fields)
        for name, value in record_fields:
            if name == "pid":
                out.pid = _int(value)
            elif name == "uid":
                out.uid = _int(value)
            elif name == "exe":
                out.exe = unescape(value)[0]
        return out

    def merge_syscall_event(self, event: Event) -> OutputRecord:
        roles = _Classified(event.records)
        out = self._syscall_part(event, roles)
        self._rest(out, roles)
        if event.dropped_records:
            out.dropped_records = event.dropped_records
        return out

    # -- the sections of a merged record, in the order they are written -------------------------------------------

    def _syscall_part(self, event: Event, roles: _Classified) -> OutputRecord:
        """The output record with the SYSCALL record's fields (or an AUOMS_SYSCALL_FRAGMENT without them)."""
        syscall = roles.syscall
        if syscall is None:
            out = OutputRecord(model.AUOMS_SYSCALL_FRAGMENT, "AUOMS_SYSCALL_FRAGMENT", event.event_id,
                               event.records[0][2])
            out.is_syscall = True
            out.fields  # an empty field list: the general sections append to it
            return out
        sys_fields = record_fields(syscall)
        values = dict(sys_fields[::-1])  # first occurrence wins
        arch_raw = values.get("arch")
        raw_number = values.get("syscall")
        syscall_readable = syscall_name(raw_number, arch_raw) if raw_number is not None else None
        out = self._new_syscall_record(event, syscall, syscall_readable)
        fields = out.fields
        if syscall[2] is not None:
            fields.append(("node", syscall[2], BARE))
        self.interpreter.add_fields(fields, model.SYSCALL, sys_fields, arch_raw, skip=_SKIP_SYSCALL_FIELDS)
        out.pid = _int(values.get("pid"))
        out.ppid = _int(values.get("ppid"))
        out.uid = _int(values.get("uid"))
        out.gid = _int(values.get("gid"))
        exe = values.get("exe")
        out.exe = unescape(exe)[0] if exe is not None else None
        out.keys = split_keys(values.get("key"))
        out.success = values.get("success")
        return out

    @staticmethod
    def _new_syscall_record(event: Event, syscall, syscall_readable: str | None) -> OutputRecord:
        if syscall_readable is not None and syscall_readable.startswith("execve"):
            code, type_name = model.AUOMS_EXECVE, "AUOMS_EXECVE"
        else:
            code, type_name = model.AUOMS_SYSCALL, "AUOMS_SYSCALL"
        out = OutputRecord(code, type_name, event.event_id, syscall[2])
        out.is_syscall = True
        out.syscall = syscall_readable
        return out

    def _rest(self, out: OutputRecord, roles: _Classified) -> None:
        """cwd, PATH item 0 and path_* arrays, argc/cmdline, saddr, hash, proctitle, other records (§3)."""
        add = self.interpreter.add_fields
        fields = out.fields
        arch_raw = record_value(roles.syscall, "arch") if roles.syscall is not None else None
        if roles.cwd is not None:
            value = record_value(roles.cwd, "cwd")
            if value is not None:
                add(fields, model.CWD, [("cwd", value)])
        if roles.paths:
            self._paths(fields, roles.paths, arch_raw)
        if roles.execves:
            argv, cmdline, argc = (quoted_argv([record[4] for record in roles.execves])
                                   or build_argv([record_fields(record) for record in roles.execves]))
            fields.append(("argc", str(argc), BARE))
            fields.append(("cmdline", cmdline, TEXT))
            out.argv = argv
            out.cmdline = cmdline
        if roles.sockaddr is not None:
            value = record_value(roles.sockaddr, "saddr")
            if value is not None:
                add(fields, model.SOCKADDR, [("saddr", value)], arch_raw)
        if roles.integrity is not None:
            value = record_value(roles.integrity, "hash")
            if value is not None:
                fields.append(("hash", value, BARE))
        if roles.proctitle is not None:
            value = record_value(roles.proctitle, "proctitle")
            if value is not None:
                self._proctitle(out, fields, value, bool(roles.execves))
        self._others(out, roles.others, arch_raw)

    def _paths(self, fields: list, paths: list, arch_raw: str | None) -> None:
        # sort by item number so the path_* arrays line up (AUOMS defect §10.5)
        path_fields = sorted((record_fields(path) for path in paths), key=_item_number)
        first = path_fields[0]
        if any(name == "item" and value == "0" for name, value in first):
            self.interpreter.add_fields(fields, model.PATH, first, arch_raw, skip=_SKIP_PATH_FIELDS)
        names, nametypes, modes, ouids, ogids = [], [], [], [], []
        for pf_list in path_fields:
            pf = dict(pf_list[::-1])  # first occurrence wins
            names.append(_json_name(pf.get("name")))
            nametypes.append(pf.get("nametype", pf.get("objtype", "")))
            modes.append(pf.get("mode", ""))
            ouids.append(pf.get("ouid", ""))
            ogids.append(pf.get("ogid", ""))
        _append_path_arrays(fields, names, nametypes, modes, ouids, ogids)

    @staticmethod
    def _proctitle(out: OutputRecord, fields: list, value: str, has_execve: bool) -> None:
        args = split_proctitle(unescape(value)[0])  # decoded once (AUOMS defect §10.4)
        out.proctitle_argv = args
        if not has_execve:
            text = join_args(args)
            fields.append(("proctitle", text, BARE))  # AUOMS writes proctitle bare
            out.cmdline = text

    def _others(self, out: OutputRecord, others: list, arch_raw: str | None) -> None:
        if others:
            interpret = self._merged_fields
            out.merged = [MergedRecord(record[1], record, interpret, arch_raw) for record in others]

    def _merged_fields(self, record, arch_raw: str | None) -> list:
        fields: list = []
        self.interpreter.add_fields(fields, record[0], record_fields(record), arch_raw, renamed=False)
        return fields


def _append_path_arrays(fields: list, names, nametypes, modes, ouids, ogids) -> None:
    for name, values in zip(PATH_ARRAYS, (names, nametypes, modes, ouids, ogids)):
        fields.append((name, _json_array(values), BARE))


class _NotFast(Exception):
    """The record is not in the layout the fast path knows: use the general path."""


# names whose values differ in most records (a token cache entry would be used once) and are never interpreted
_UNIQUE_NAMES = frozenset(("a0", "a1", "a2", "a3", "pid", "ppid", "exit", "inode", "opid"))
_BARES = (BARE,) * len(PATH_ARRAYS)
# The SYSCALL fields between `success=` and `auid=` differ in every event and are written as read, but items. One
# C-level match checks their names and values (8 startswith calls, a split and a join cost 3x more) and cuts them.
_SYSCALL_MIDDLE = re.compile(r"(exit=-?[0-9]+ a0=[0-9a-f]+ a1=[0-9a-f]+ a2=[0-9a-f]+ a3=[0-9a-f]+) items=[0-9]+ "
                             r"(ppid=[0-9]+ pid=[0-9]+)")
_TAIL_FORBIDDEN = frozenset(("items", "type", "arch", "syscall"))


def _plain_tokens(text: str) -> list[str]:
    """The tokens of text made of tokens separated by single spaces; anything else (tabs, runs of spaces, other
    whitespace the general path splits on) is for the general path."""
    tokens = text.split(" ")
    if tokens != text.split():
        raise _NotFast
    return tokens


def _cut_number(text: str, marker: str) -> tuple[str, int | None, str | None]:
    """(text without `marker`N, where that was, N): `_cut_number("a=1 ses=5 b=2", " ses=")` is ("a=1 b=2", 3, "5");
    (text, None, None) when marker is not there or not followed by digits."""
    at = text.find(marker)
    if at >= 0:
        start = at + len(marker)
        end = text.find(" ", start)
        if end < 0:
            end = len(text)
        number = text[start:end]
        if number.isdecimal():
            return text[:at] + text[end:], at, number
    return text, None, None


def _tail_facts(values: dict) -> tuple:
    """(uid, gid, exe, keys) from the raw values of a SYSCALL record's tail (`auid=.. ... key=..`)."""
    if "exe" not in values or not _TAIL_FORBIDDEN.isdisjoint(values):
        raise _NotFast  # fields the general path skips or reads from the head
    return (_int(values.get("uid")), _int(values.get("gid")), unescape(values["exe"])[0], split_keys(values.get("key")))


class CachedSyscallRecord(OutputRecord):
    """An AUOMS_EXECVE / AUOMS_SYSCALL record the fast path made from cache entries. Its process facts (syscall,
    success, uid, gid, exe, keys; pid and ppid from the SYSCALL record's text) are read from those entries when a
    stage asks (filters, the process tree): replay's MSTIC output never does, so it does not pay for ten stores
    and two int() per event."""

    is_syscall = True
    # Its parts' texts are as the MSTIC line writes them: tokens are escaped when cached (FastMerger._token), the
    # command line and proctitle are shell words in printable ASCII (bash_escape), the path_* arrays JSON in
    # ASCII, the rest digits (a test holds every part of such records to printable ASCII). Not so with a node.
    parts_escaped = True

    def __init__(self, head: tuple, tail: tuple, ppid_pid: str, event_id: str, node: str | None):
        self.code = head[5]
        self.type_name = head[6]
        self.event_id = event_id
        self.node = node
        self._head = head  # FastMerger._syscall_head's entry
        self._tail = tail  # FastMerger._syscall_tail's entry
        self._ppid_pid = ppid_pid  # `ppid=N pid=M`

    syscall = property(lambda self: self._head[2])
    success = property(lambda self: self._head[4])
    uid = property(lambda self: self._tail[2])
    gid = property(lambda self: self._tail[3])
    exe = property(lambda self: self._tail[4])
    keys = property(lambda self: self._tail[5])
    ppid = property(lambda self: int(self._ppid_pid[5:self._ppid_pid.index(" ")]))
    pid = property(lambda self: int(self._ppid_pid[self._ppid_pid.rindex("=") + 1:]))


class FastMerger(Merger):
    """The general Merger plus caches keyed by whole record text, for records in the kernel's usual layout.

    What a record becomes depends only on its text (and the user db, whose reload empties the caches), and most
    record texts repeat: the PATH, CWD and EXECVE records of every `ls` in /tmp are the same, and so is the tail of
    its SYSCALL record (`auid=... uid=... comm="ls" exe="/usr/bin/ls" key=...`). So each record, or each
    section of a SYSCALL record, is looked up whole; what differs in every event is cut out of the key and written
    as read: `exit a0..a3 ppid pid` of SYSCALL, the inodes of PATH records (put back for item 0). A missed SYSCALL
    tail is built from a cache keyed without its session. Other misses are interpreted token by token (tokens
    cached too), with the same Interpreter the general path uses.
    """

    _CACHES = ("heads", "tails", "tail_rests", "cwds", "saddrs", "path_sets", "execves", "proctitles", "tokens",
               "merged_fields")
    _CACHE_LIMITS = {"path_sets": 1024}  # an entry per program (and interpreter) run, each ~1 KiB: a host runs fewer

    def __init__(self, interpreter: Interpreter):
        super().__init__(interpreter)
        self._generation = None
        for name in self._CACHES:
            setattr(self, name, BoundedCache(self._CACHE_LIMITS.get(name, CACHE_LIMIT)))
        self.tokens: dict[tuple[int, str | None], BoundedCache] = {}  # (record code, arch) -> token cache
        self.fast_events = 0
        self.general_events = 0

    def event_records(self, event: Event, _syscall=model.SYSCALL, _path=model.PATH, _cwd=model.CWD,
                      _proctitle=model.PROCTITLE, _execve=model.EXECVE, _sockaddr=model.SOCKADDR,
                      _integrity=model.INTEGRITY_RULE) -> list[OutputRecord]:
        """The output records of one event. A syscall event with one SYSCALL record and at most one EXECVE record
        (nearly all of them) is sorted by role here, inline, and merged by the fast path; any other event, or one
        the fast path steps aside from, goes the general way. (Constants as default arguments: locals.)"""
        syscall = cwd = proctitle = sockaddr = execve = None
        paths = []
        others = []
        for record in event.records:
            code = record[0]
            if code == _syscall:
                if syscall is None:
                    syscall = record
                else:
                    others.append(record)  # a second SYSCALL record is folded in as an other record
            elif code == _proctitle:
                if proctitle is None:
                    proctitle = record
            elif code == _cwd:
                if cwd is None:
                    cwd = record
            elif code == _path:
                paths.append(record)
            elif code == _execve:
                if execve is not None:
                    return super().event_records(event)  # several EXECVE records: split arguments, general path
                execve = record
            elif code == _sockaddr:
                if sockaddr is None:
                    sockaddr = record
            elif code == _integrity:
                return super().event_records(event)
            else:
                others.append(record)
        if syscall is None:
            return super().event_records(event)
        self._check_names()
        try:
            out = self._fast(event, syscall, cwd, paths, execve, sockaddr, proctitle, others)
        except _NotFast:
            self.general_events += 1
            return [Merger.merge_syscall_event(self, event)]
        self.fast_events += 1
        if event.dropped_records:
            out.dropped_records = event.dropped_records
        return [out]

    def merge_syscall_event(self, event: Event) -> OutputRecord:
        """Only events event_records did not take (no SYSCALL record, several EXECVE records...) come here."""
        self.general_events += 1
        return super().merge_syscall_event(event)

    def _check_names(self) -> None:
        """Empty every cache if the user db was re-read since they were filled: they hold names. (Called where
        cached interpretations are used: a syscall event, a pass-through record, a folded record's fields.)"""
        userdb = self.interpreter.userdb
        generation = userdb.generation if userdb is not None else 0
        if generation != self._generation:
            self._generation = generation
            for name in self._CACHES:
                getattr(self, name).clear()

    # -- interpreting a miss ------------------------------------------------------------------------------------------

    def _token_cache(self, code: int, arch_raw: str | None) -> BoundedCache:
        cache = self.tokens.get((code, arch_raw))
        if cache is None:
            cache = self.tokens[(code, arch_raw)] = BoundedCache()
        return cache

    def _token(self, cache: BoundedCache, code: int, token: str, arch_raw: str | None):
        """(text, triples, name, raw value) for one name=value token (cached unless its value is one of a kind)."""
        name, sep, raw = token.partition("=")
        if not sep or not name or (raw[:1] == '"' and (len(raw) < 2 or raw[-1] != '"')):
            raise _NotFast  # a token without '=' or a quoted value cut at a space
        if name in _UNIQUE_NAMES:  # plain numbers, written as read
            return (tty_escape(token), ((name, raw, BARE),), name, raw)
        triples: list = []
        self.interpreter.add_fields(triples, code, ((name, raw),), arch_raw)
        text = tty_escape(" ".join([render(*triple) for triple in triples]))  # as the MSTIC line writes it
        return cache.put(token, (text, tuple(triples), name, raw))

    def _section(self, code: int, text: str, arch_raw: str | None = None) -> tuple[str, tuple, dict]:
        """(text, triples, {name: first raw value}) for a run of name=value tokens separated by single spaces."""
        cache = self._token_cache(code, arch_raw)
        get = cache.get
        texts = []
        triples = []
        values = {}
        for token in _plain_tokens(text):
            entry = get(token) or self._token(cache, code, token, arch_raw)
            texts.append(entry[0])
            triples += entry[1]
            if entry[2] not in values:
                values[entry[2]] = entry[3]
        return " ".join(texts), tuple(triples), values

    # -- the fast path ------------------------------------------------------------------------------------------------

    def _fast(self, event: Event, syscall, cwd, paths: list, execve, sockaddr, proctitle, others: list,
              _new=CachedSyscallRecord, _middle=_SYSCALL_MIDDLE.fullmatch) -> OutputRecord:
        body = syscall[4]
        # arch=.. syscall=.. success=.. | exit=.. a0=.. a1=.. a2=.. a3=.. items=.. ppid=.. pid=.. | auid=.. ... key=..
        exit_at = body.find(" exit=")
        auid_at = body.find(" auid=", exit_at)
        if exit_at < 0 or auid_at < 0:
            raise _NotFast
        head = self.heads.get(body[:exit_at]) or self._syscall_head(body[:exit_at])
        tail = self.tails.get(body[auid_at + 1:]) or self._syscall_tail(body[auid_at + 1:])
        middle = _middle(body, exit_at + 1, auid_at)
        if middle is None:
            raise _NotFast
        exit_to_a3, ppid_pid = middle.groups()
        out = _new(head, tail, ppid_pid, event.event_id, syscall[2])
        arch_raw = head[3]
        if syscall[2] is None:
            out.parts = parts = [(head[0], head[1]), (f"{exit_to_a3} {ppid_pid}", None), (tail[0], tail[1])]
        else:
            out.parts = parts = [("node=" + syscall[2], None), (head[0], head[1]), (f"{exit_to_a3} {ppid_pid}", None),
                                 (tail[0], tail[1])]
            out.parts_escaped = False  # the node's text is written as read
        if cwd is not None:
            cwd = cwd[4]
            parts.append(self.cwds.get(cwd) or self.cwds.put(cwd, self._single(model.CWD, "cwd", cwd, None)))
        if paths:
            self._fast_paths(parts, paths)
        if execve is not None:
            execve = execve[4]
            entry = self.execves.get(execve) or self.execves.put(execve, self._execve(execve))
            parts += entry[0]
            out.argv, out.cmdline = entry[1], entry[2]
        if sockaddr is not None:
            key = (arch_raw, sockaddr[4])
            parts.append(self.saddrs.get(key)
                         or self.saddrs.put(key, self._single(model.SOCKADDR, "saddr", key[1], arch_raw)))
        if proctitle is not None:
            proctitle = proctitle[4]
            if execve is None:
                args, text, part = (self.proctitles.get(proctitle)
                                    or self.proctitles.put(proctitle, self._proctitle_entry(proctitle)))
                out.proctitle_argv = args
                parts.append(part)
                out.cmdline = text
            elif proctitle[:10] == "proctitle=" and proctitle.split() == [proctitle]:  # one token, no whitespace
                out._proctitle_raw = proctitle[10:]  # not written beside EXECVE: decoded only if a format asks
            else:
                raise _NotFast
        if others:
            interpret = self._cached_merged_fields
            out.merged = [MergedRecord(record[1], record, interpret, arch_raw) for record in others]
        return out

    def pass_through(self, event: Event, record) -> OutputRecord:
        """A record of a non-syscall event (USER_LOGIN, USER_ERR, ...): its tokens looked up in the token cache
        (pids and other one-of-a-kind values are written as read); anything unusual goes the general way."""
        code = record[0]
        if code == model.INTEGRITY_POLICY_RULE:
            return super().pass_through(event, record)
        self._check_names()
        try:
            tokens = _plain_tokens(unwrap_msg(record[4]).strip(" "))
            cache = self._token_cache(code, None)
            get = cache.get
            parts = [] if record[2] is None else [("node=" + record[2], None)]
            pid = uid = exe = None
            for token in tokens:
                text, triples, name, raw = get(token) or self._token(cache, code, token, None)
                parts.append((text, triples))
                if name == "pid":  # (the last of a name wins, as in the general path)
                    pid = raw
                elif name == "uid":
                    uid = raw
                elif name == "exe":
                    exe = raw
        except _NotFast:
            return super().pass_through(event, record)
        out = OutputRecord(code, record[1], event.event_id, record[2])
        out.raw_text = record[4]
        out.parts = parts
        if pid is not None:
            out.pid = _int(pid)
        if uid is not None:
            out.uid = _int(uid)
        if exe is not None:
            out.exe = unescape(exe)[0]
        return out

    def _cached_merged_fields(self, record, arch_raw: str | None) -> list:
        """The fields of a folded record, when a format asks (json and oms write BPRM_FCAPS, whose text repeats on
        every exec by root): looked up by its text. The list is shared: readers must not change it."""
        self._check_names()  # (a format may ask after the names were re-read)
        key = (record[0], record[4], arch_raw)
        fields = self.merged_fields.get(key)
        if fields is None:
            fields = self.merged_fields.put(key, self._merged_fields(record, arch_raw))
        return fields

    def _syscall_head(self, head: str):
        """(text, triples, syscall name, arch raw, success, output record code and type name) for
        `arch=.. syscall=.. success=..`."""
        tokens = _plain_tokens(head)
        if (len(tokens) != 3 or not tokens[0].startswith("arch=") or not tokens[1].startswith("syscall=")
                or not tokens[2].startswith("success=")):
            raise _NotFast
        arch_raw = tokens[0][5:]
        text, triples, _values = self._section(model.SYSCALL, head, arch_raw)
        name = next(value for field, value, _style in triples if field == "syscall")
        if name.startswith("execve"):
            code, type_name = model.AUOMS_EXECVE, "AUOMS_EXECVE"
        else:
            code, type_name = model.AUOMS_SYSCALL, "AUOMS_SYSCALL"
        return self.heads.put(head, (text, triples, name, arch_raw, tokens[2][8:], code, type_name))

    def _syscall_tail(self, tail: str):
        """(text, triples, uid, gid, exe, keys) for `auid=.. uid=.. ... ses=.. comm=.. exe=.. [subj=..] [key=..]`.

        A tail differs from the last one of the same user and program mostly by its session: the rest, and what
        is read from it, is looked up with `ses=` cut out, and the session's field joins it."""
        stripped = tail[:-1] if tail.endswith(" ") else tail  # records without a key field end with a space
        cut, at, ses = _cut_number(stripped, " ses=")
        if ses is None:
            text, triples, values = self._section(model.SYSCALL, stripped)
            facts = _tail_facts(values)
        else:
            key = (cut, at)
            prefix, suffix, before_triples, after_triples, facts = self.tail_rests.get(key) or self._tail_rest(key)
            cache = self._token_cache(model.SYSCALL, None)
            token = "ses=" + ses
            ses_text, ses_triples = (cache.get(token) or self._token(cache, model.SYSCALL, token, None))[:2]
            text = prefix + ses_text + suffix
            triples = before_triples + ses_triples + after_triples
        return self.tails.put(tail, (text, triples, *facts))

    def _tail_rest(self, key: tuple):
        """(text before the session's field and a space, a space and the text after it, their triples, and the
        facts of _tail_facts) for a SYSCALL tail whose session was cut out: the key of _cut_number's cut."""
        (before_text, before_triples), (after_text, after_triples), values = self._sections_around(model.SYSCALL, *key)
        prefix = f"{before_text} " if before_text else ""
        suffix = f" {after_text}" if after_text else ""
        return self.tail_rests.put(key, (prefix, suffix, before_triples, after_triples, _tail_facts(values)))

    def _single(self, code: int, name: str, body: str, arch_raw: str | None):
        """(text, triples) of a record that is one `name=value` field (CWD, SOCKADDR)."""
        if len(_plain_tokens(body)) != 1 or not body.startswith(name + "="):
            raise _NotFast
        cache = self._token_cache(code, arch_raw)
        return (cache.get(body) or self._token(cache, code, body, arch_raw))[:2]

    def _fast_paths(self, parts: list, paths: list) -> None:
        # An execve's PATH records (the program, its interpreter) come back together, event after event, but their
        # inodes differ from file to file (and, for one program, from host to host): the set is looked up with
        # the inodes cut out, and item 0's, the only one written, is put back. Each record is in the key as the
        # text before ` inode=N`, the space after N (or ""), the rest; or as (its text, None, None) without one.
        before, marker, rest = paths[0][4].partition(" inode=")
        inode, space, after = rest.partition(" ")
        if marker and inode.isdecimal():
            key = [before, space, after]
        else:
            key = [paths[0][4], None, None]
            inode = None
        for path in paths[1:]:
            body = path[4]
            path_before, marker, rest = body.partition(" inode=")
            number, path_space, path_after = rest.partition(" ")
            key += (path_before, path_space, path_after) if marker and number.isdecimal() else (body, None, None)
        key = tuple(key)
        entry = self.path_sets.get(key) or self._path_set(key)
        parts += entry[0]
        if inode is not None:  # a part of its own, so the parts around it stay shared (json and oms cache them)
            parts.append(("inode=" + inode, None))
            parts += entry[1]
        parts.append(entry[2])

    def _path_set(self, key: tuple):
        """For an event's PATH records (item 0, 1, 2... in order), given as their key (see _fast_paths): (the parts
        of item 0 before its inode, those after it, the path_* arrays part). Without an inode, all of item 0's
        fields are before."""
        entries = []
        for number, (before, space, after) in enumerate(zip(key[0::3], key[1::3], key[2::3])):
            # each record's text without ` inode=N`, and where that was (None: it had no inode)
            entry = self._path_entry(before, None) if space is None else self._path_entry(before + space + after,
                                                                                           len(before))
            if entry[0] != number:
                raise _NotFast  # not item 0, 1, 2... in order: the general path sorts them
            entries.append(entry)
        before, after = entries[0][1:3]
        # each entry holds its path's five JSON array elements, so the arrays are a few joins
        if len(entries) == 1:
            arrays = [f"[{element}]" for element in entries[0][3]]
        else:
            arrays = ["[" + ",".join(column) + "]" for column in zip(*[entry[3] for entry in entries])]
        arrays_part = (f"path_name={arrays[0]} path_nametype={arrays[1]} path_mode={arrays[2]} "  # (JSON: ASCII)
                       f"path_ouid={arrays[3]} path_ogid={arrays[4]}", tuple(zip(PATH_ARRAYS, arrays, _BARES)))
        return self.path_sets.put(key, ((before,) if before[0] else (), (after,) if after[0] else (), arrays_part))

    def _path_entry(self, cut: str, at: int | None):
        """(item number, (text, triples) of the fields before the inode, and after it, JSON elements of name,
        nametype, mode, ouid, ogid) for a PATH record whose inode was cut out at `at` (None: it had none)."""
        stripped = cut[:-1] if cut.endswith(" ") else cut
        item, _, rest = stripped.partition(" ")
        if not item.startswith("item=") or not item[5:].isdecimal() or not (rest or at is not None):
            raise _NotFast  # not the kernel's layout, or nothing but the item number
        before, after, values = self._sections_around(model.PATH, rest, None if at is None else at - len(item) - 1)
        if "item" in values or "node" in values:
            raise _NotFast  # fields the general path skips
        columns = (_json_name(values.get("name")), values.get("nametype", values.get("objtype", "")),
                   values.get("mode", ""), values.get("ouid", ""), values.get("ogid", ""))
        columns = tuple([_json_string(value) for value in columns])  # JSON array elements
        return (int(item[5:]), before, after, columns)

    def _sections_around(self, code: int, text: str, at: int | None):
        """((text, triples) before, (text, triples) after, {name: first raw value}) of a run of name=value tokens
        from which `_cut_number` cut one out at `at` (-1: at the start; None: none was cut, all is before)."""
        before = text if at is None else text[:at] if at > 0 else ""
        after = text[at + 1:] if at is not None else ""
        before_text, before_triples, values = self._section(code, before) if before else ("", (), {})
        if after:
            after_text, after_triples, after_values = self._section(code, after)
            values = {**after_values, **values}  # the first occurrence wins
        else:
            after_text, after_triples = "", ()
        return (before_text, before_triples), (after_text, after_triples), values

    def _execve(self, body: str):
        """([argc part, cmdline part], argv, cmdline) for a whole EXECVE record."""
        quick = quoted_argv([body])  # every argument quoted (the usual): a few C-level passes
        if quick is not None:
            argv, cmdline, argc = quick
            return ([(f"argc={argc}", None), (f'cmdline="{cmdline}"', (("cmdline", cmdline, TEXT),))], argv, cmdline)
        if "[" in body or "_len=" in body:
            raise _NotFast  # split arguments: the general path reassembles them
        tokens = _plain_tokens(body)
        argc_token = tokens[0]
        if not argc_token.startswith("argc=") or not argc_token[5:].isdecimal():
            raise _NotFast
        argc = int(argc_token[5:])
        if len(tokens) != argc + 1 or argc_token[5:] != str(argc):
            raise _NotFast  # missing arguments, or a quoted value cut at a space
        argv = []
        words = []
        for number in range(argc):
            name, _, raw = tokens[number + 1].partition("=")
            if name != f"a{number}" or (raw[:1] == '"' and (len(raw) < 2 or raw[-1] != '"')):
                raise _NotFast
            text = unescape(raw)[0]
            argv.append(text)
            words.append(bash_escape(text))
        cmdline = " ".join(words)
        return ([(argc_token, None), (f'cmdline="{cmdline}"', (("cmdline", cmdline, TEXT),))], argv, cmdline)

    @staticmethod
    def _proctitle_entry(body: str):
        if not body.startswith("proctitle=") or len(_plain_tokens(body)) != 1:
            raise _NotFast
        args = split_proctitle(unescape(body[10:])[0])
        text = join_args(args)
        return (args, text, ("proctitle=" + text, (("proctitle", text, BARE),)))
