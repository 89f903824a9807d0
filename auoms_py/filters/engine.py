"""The filter engine: judges output events against a loaded filter file.

    engine = FilterEngine.load("conf/filters.yaml", tree=tree)   # FilterConfigError: file, line, reason
    proc = tree.observe(event)       # first: the tree learns from the event (an execve sets the new program)
    verdict = engine.judge(event)    # falsy when a filter drops the event; verdict.filter names the filter
    engine.counters                  # {filter name: events dropped}, for metrics
    records = engine.output("syslog").apply(event)   # per-output record-type / field drops

Semantics (reference §8, AUOMS FiltersEngine/ProcessTree): only syscall events are process-filtered (user-space
events pass). The filters that apply to a process are the ones matching the process itself; when none does, those
of its nearest ancestor that matches any filter whose depth reaches that far (depth -1: all descendants, N: N
generations, 0: the process only). The event is dropped when one of them lists its syscall. Key filters: an event
carrying a key in `keys.drop` is dropped; with `keys.keep`, a syscall event carrying none of those keys is dropped.

Matching work is done once per process and engine (cached on the tree's entry), so judging an event costs a
dictionary lookup and a few attribute reads.
"""
from __future__ import annotations

import copy
import itertools

from auoms_py.filters.match import to_subject_text
from auoms_py.filters.schema import (ALL_OUTPUTS, FilterConfig, OutputFilterSpec, ProcessFilterSpec, load_file,
                                     lookup_group, lookup_user)
from auoms_py.pipeline.model import OutputRecord

KEYS_DROP = "keys.drop"  # counter names of the key filter
KEYS_KEEP = "keys.keep"

_generations = itertools.count(1)


def known_syscalls() -> frozenset:
    """Every syscall name of every architecture the pipeline interprets (for typo warnings)."""
    from auoms_py.pipeline.tables.syscalls import SYSCALL_NAMES

    return frozenset(name for table in SYSCALL_NAMES.values() for name in table.values())


def userdb_lookups(userdb):
    """name -> id functions over a pipeline UserDB (its passwd/group files), first entry of a name winning."""
    def users(name: str):
        for uid, uname in userdb.users.items():
            if uname == name:
                return uid
        return None

    def groups(name: str):
        for gid, gname in userdb.groups.items():
            if gname == name:
                return gid
        return None

    return users, groups


class Verdict:
    """The engine's answer for one event: truthy = send it; falsy = dropped by `filter` (its name)."""

    __slots__ = ("keep", "filter")

    def __init__(self, keep: bool, filter: str | None):
        self.keep = keep
        self.filter = filter

    def __bool__(self) -> bool:
        return self.keep

    def __repr__(self) -> str:
        return "Verdict(keep)" if self.keep else f"Verdict(drop by {self.filter!r})"


KEEP = Verdict(True, None)


class ProcessFilter:
    """One active process filter, compiled for matching."""

    __slots__ = ("spec", "name", "depth", "user", "group", "exe", "cmdline", "syscalls", "verdict")

    def __init__(self, spec: ProcessFilterSpec):
        self.spec = spec
        self.name = spec.name
        self.depth = spec.depth
        self.user = spec.user
        self.group = spec.group
        self.exe = spec.exe
        self.cmdline = tuple(spec.cmdline)
        self.syscalls = spec.syscalls
        self.verdict = Verdict(False, spec.name)

    def matches(self, proc) -> bool:
        """Does the process itself (uid, gid, exe, cmdline) meet every criterion?"""
        if self.user is not None and proc.uid != self.user:
            return False
        if self.group is not None and proc.gid != self.group:
            return False
        if self.exe is not None:
            exe = proc.exe
            if exe is None or not self.exe.test(exe):
                return False
        if self.cmdline:
            cmdline = proc.cmdline
            if cmdline is None:
                return False
            for match in self.cmdline:
                if not match.test(cmdline):
                    return False
        return True

    def reaches(self, height: int) -> bool:
        return self.depth == -1 or self.depth >= height


class OutputFilter:
    """What one output leaves out: record types (pass-through records and merged parts) and fields."""

    __slots__ = ("name", "drop_record_types", "drop_fields", "noop")

    def __init__(self, name: str, drop_record_types: frozenset = frozenset(), drop_fields: frozenset = frozenset()):
        self.name = name
        self.drop_record_types = frozenset(drop_record_types)
        self.drop_fields = frozenset(drop_fields)
        self.noop = not self.drop_record_types and not self.drop_fields

    def excluded_types(self, base: frozenset = frozenset()) -> frozenset:
        """The formatter's excluded record types plus this output's."""
        return base | self.drop_record_types if self.drop_record_types else base

    def apply(self, records: list[OutputRecord]) -> list[OutputRecord]:
        """The records this output writes; the input list itself when nothing is left out (records are copied,
        never changed, since other outputs format the same records)."""
        if self.noop:
            return records
        types = self.drop_record_types
        fields = self.drop_fields
        out = []
        for rec in records:
            if rec.type_name in types:
                continue
            new_fields = None  # reading rec.fields only when fields are dropped keeps the mstic fast path
            if fields:
                current = rec.fields
                if any(name in fields for name, _v, _s in current):
                    new_fields = [f for f in current if f[0] not in fields]
            merged = rec.merged
            if merged and (types or fields):
                new_merged = []
                changed = False
                for sub in merged:
                    if sub.type_name in types:
                        changed = True
                        continue
                    if fields:
                        prefix = sub.type_name + "_"
                        kept = [f for f in sub.fields if prefix + f[0] not in fields]
                        if len(kept) != len(sub.fields):
                            changed = True
                            sub = sub.with_fields(kept)
                    new_merged.append(sub)
                if changed:
                    merged = new_merged
            if new_fields is None and merged is rec.merged:
                out.append(rec)
            else:
                copy = _copy_record(rec)
                if new_fields is not None:
                    copy.fields = new_fields
                copy.merged = merged
                out.append(copy)
        return out


def _copy_record(rec: OutputRecord) -> OutputRecord:
    return copy.copy(rec)


NO_OUTPUT_FILTER = OutputFilter("*")


class FilterEngine:
    def __init__(self, config: FilterConfig | None = None, tree=None, counters: dict | None = None):
        """`counters`: a dict carried over from the previous engine (hot reload), so metrics stay monotonic."""
        self.config = config or FilterConfig("<none>")
        self.tree = tree
        self.generation = next(_generations)
        self.filters = [ProcessFilter(spec) for spec in self.config.process_filters if spec.disabled is None]
        self.disabled = [spec for spec in self.config.process_filters if spec.disabled is not None]
        # candidates by exact exe (most filters name one program), the rest tried on every process; file order kept
        # so that the first filter of the file that drops an event is the one counted
        self._order = {f: i for i, f in enumerate(self.filters)}
        self._by_exe: dict[str, list[ProcessFilter]] = {}
        self._by_uid: dict[int, list[ProcessFilter]] = {}
        self._generic: list[ProcessFilter] = []
        for f in self.filters:
            if f.exe is not None and f.exe.kind == "equals":
                for value in f.exe.values:
                    self._by_exe.setdefault(to_subject_text(value), []).append(f)
            elif f.user is not None:
                self._by_uid.setdefault(f.user, []).append(f)
            else:
                self._generic.append(f)
        keys = self.config.keys
        self.keys_drop = keys.drop
        self.keys_keep = keys.keep
        self._verdict_keys_drop = Verdict(False, KEYS_DROP)
        self._verdict_keys_keep = Verdict(False, KEYS_KEEP)
        self._check_keys = bool(keys.drop) or keys.keep is not None
        self.counters = counters if counters is not None else {}
        for f in self.filters:
            self.counters.setdefault(f.name, 0)
        if keys.drop:
            self.counters.setdefault(KEYS_DROP, 0)
        if keys.keep is not None:
            self.counters.setdefault(KEYS_KEEP, 0)
        self._outputs: dict[str, OutputFilter] = {}

    @classmethod
    def load(cls, path: str, tree=None, counters: dict | None = None, *, userdb=None,
             users=None, groups=None) -> "FilterEngine":
        """Load a filter file (FilterConfigError on any problem). Names resolve through `userdb` (a pipeline
        UserDB) when given, else `users`/`groups` functions, else this host's user database."""
        if userdb is not None:
            users, groups = userdb_lookups(userdb)
        config = load_file(path, users=users or lookup_user, groups=groups or lookup_group,
                           known_syscalls=known_syscalls())
        return cls(config, tree, counters)

    @property
    def warnings(self) -> list[str]:
        return self.config.warnings

    # ---- judging --------------------------------------------------------------------------------------------
    def judge(self, event: list[OutputRecord]) -> Verdict:
        rec = event[0]
        if not rec.is_syscall:
            return KEEP
        if self._check_keys:
            keys = rec.keys
            if self.keys_drop and not self.keys_drop.isdisjoint(keys):
                self.counters[KEYS_DROP] += 1
                return self._verdict_keys_drop
            if self.keys_keep is not None and self.keys_keep.isdisjoint(keys):
                self.counters[KEYS_KEEP] += 1
                return self._verdict_keys_keep
        syscall = rec.syscall
        if syscall is None or not self.filters or self.tree is None:
            return KEEP
        proc = self.tree.procs.get(rec.pid)
        if proc is None:
            return KEEP
        matched = proc.matched if proc.match_gen == self.generation else self.resolve(proc)
        for f in matched:
            if f.syscalls.drops(syscall):
                self.counters[f.name] += 1
                return f.verdict
        return KEEP

    def own_matches(self, proc) -> tuple:
        """Filters the process itself meets (whatever their depth)."""
        if proc.self_gen == self.generation:
            return proc.self_matched
        if not proc.known:
            found = ()
        else:
            found = [f for f in self._generic if f.matches(proc)]
            for candidates in (self._by_exe.get(proc.exe), self._by_uid.get(proc.uid)):
                if candidates:
                    found += [f for f in candidates if f.matches(proc)]
            if len(found) > 1:
                found.sort(key=self._order.__getitem__)
            found = tuple(found)
        proc.self_matched = found
        proc.self_gen = self.generation
        return found

    def resolve(self, proc) -> tuple:
        """The filters that apply to a process: its own, else those of the nearest ancestor reaching it."""
        matched = self.own_matches(proc)
        if not matched:
            height = 0
            for ancestor in proc.ancestors():
                height += 1
                own = self.own_matches(ancestor)
                if own:
                    matched = tuple(f for f in own if f.reaches(height))
                    if matched:
                        break
        proc.matched = matched
        proc.match_gen = self.generation
        return matched

    # ---- outputs --------------------------------------------------------------------------------------------
    def output(self, name: str) -> OutputFilter:
        """The record-type/field filter of one output (its own section plus the "*" section)."""
        found = self._outputs.get(name)
        if found is None:
            specs: list[OutputFilterSpec] = [s for key, s in self.config.outputs.items() if key in (ALL_OUTPUTS, name)]
            if specs:
                found = OutputFilter(name, frozenset().union(*(s.drop_record_types for s in specs)),
                                     frozenset().union(*(s.drop_fields for s in specs)))
            else:
                found = NO_OUTPUT_FILTER
            self._outputs[name] = found
        return found
