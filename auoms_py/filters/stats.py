"""Noise accounting for `auoms-py top`: who produces how many events and bytes, what the filters already drop,
and ready-to-paste filters for the heaviest remaining noise.

Every event is counted exactly once in each table (process, syscall/record type, rule key), so each table's rows
add up to the number of events seen; rows past the shown limit are summed into one "others" row.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

import yaml

from auoms_py.format import mstic

EXECVE_SYSCALLS = frozenset(("execve", "execveat"))
# programs whose exe says little: a suggestion for them also names the command line
INTERPRETERS = frozenset(("sh", "bash", "dash", "zsh", "ksh", "busybox", "perl", "ruby", "node", "java", "php",
                          "env", "sudo", "timeout", "nice", "xargs"))
NO_KEY = "(no key)"
NOT_SYSCALL = "(not a syscall event)"
NONE = "-"


def _is_interpreter(exe: str) -> bool:
    base = exe.rpartition("/")[2]
    return base in INTERPRETERS or base.startswith(("python", "perl", "ruby", "php", "node", "lua", "java"))


@dataclass
class Row:
    events: int = 0
    bytes: int = 0
    dropped: int = 0
    dropped_bytes: int = 0

    def add(self, size: int, dropped: bool) -> None:
        self.events += 1
        self.bytes += size
        if dropped:
            self.dropped += 1
            self.dropped_bytes += size

    def merge(self, other: "Row") -> None:
        self.events += other.events
        self.bytes += other.bytes
        self.dropped += other.dropped
        self.dropped_bytes += other.dropped_bytes


@dataclass
class ProcessRow(Row):
    syscalls: collections.Counter = field(default_factory=collections.Counter)  # kept events per syscall


def event_size(event, excluded_types: frozenset = mstic.DEFAULT_EXCLUDED_TYPES) -> int:
    """Bytes the MSTIC output sends for an event (syslog bodies plus newline; header not counted)."""
    size = 0
    for rec in event:
        body = mstic.format_record(rec, excluded_types)
        if body is not None:
            size += len(body) + 1
    return size


class NoiseStats:
    def __init__(self, cmdline_width: int = 60):
        self.cmdline_width = cmdline_width
        self.total = Row()
        self.processes: dict[tuple[str, str, str], ProcessRow] = {}
        self.syscalls: dict[str, Row] = {}
        self.keys: dict[str, Row] = {}
        self.filters: dict[str, Row] = {}  # dropped events per filter (events == dropped)

    def add(self, event, proc=None, verdict=None, size: int | None = None) -> None:
        """Count one output event. `proc`: its process in the tree (after observe); `verdict`: the engine's."""
        rec = event[0]
        if size is None:
            size = event_size(event)
        dropped = verdict is not None and not verdict
        self.total.add(size, dropped)
        if rec.is_syscall:
            exe = (proc.exe if proc is not None and proc.exe is not None else rec.exe) or NONE
            cmdline = (proc.cmdline if proc is not None and proc.cmdline is not None else rec.cmdline) or NONE
            label = rec.syscall or "(no SYSCALL record)"
            key = ",".join(rec.keys) if rec.keys else NO_KEY
        else:
            exe = rec.exe or NONE
            cmdline = NONE
            label = rec.type_name if len(event) == 1 else "+".join(dict.fromkeys(r.type_name for r in event))
            key = NOT_SYSCALL
        user = rec.get("user") or (str(rec.uid) if rec.uid is not None else NONE)
        pkey = (exe, cmdline[: self.cmdline_width], user)
        prow = self.processes.get(pkey)
        if prow is None:
            prow = self.processes[pkey] = ProcessRow()
        prow.add(size, dropped)
        if rec.is_syscall and not dropped and rec.syscall:
            prow.syscalls[rec.syscall] += 1
        self._row(self.syscalls, label if rec.is_syscall else f"[{label}]").add(size, dropped)
        self._row(self.keys, key).add(size, dropped)
        if dropped:
            self._row(self.filters, verdict.filter).add(size, True)

    @staticmethod
    def _row(table: dict, name: str) -> Row:
        row = table.get(name)
        if row is None:
            row = table[name] = Row()
        return row

    @staticmethod
    def top(table: dict, limit: int, by: str = "events") -> tuple[list, Row | None, int]:
        """(the `limit` biggest rows as (key, row), the rest summed (None if none), how many rows the rest holds)."""
        ordered = sorted(table.items(), key=lambda item: (-getattr(item[1], by), str(item[0])))
        shown, rest = ordered[:limit], ordered[limit:]
        if not rest:
            return shown, None, 0
        others = Row()
        for _key, row in rest:
            others.merge(row)
        return shown, others, len(rest)

    # ---- suggestions ----------------------------------------------------------------------------------------
    def suggestions(self, count: int = 3, min_share: float = 0.01) -> list[tuple[dict, str]]:
        """Filters for the processes with the most events still kept: (filter as YAML data, comment)."""
        total = self.total.events or 1
        by_program: dict[tuple[str, str, str], ProcessRow] = {}
        for (exe, cmdline, user), row in self.processes.items():
            if exe == NONE or not row.syscalls:
                continue
            # group a plain program's rows over its command lines; an interpreter's stay per command line
            key = (exe, cmdline if _is_interpreter(exe) else "", user)
            merged = by_program.get(key)
            if merged is None:
                merged = by_program[key] = ProcessRow()
            merged.merge(row)
            merged.syscalls.update(row.syscalls)
        def droppable(row: ProcessRow) -> int:
            return sum(n for name, n in row.syscalls.items() if name not in EXECVE_SYSCALLS)

        ranked = sorted(by_program.items(), key=lambda item: -droppable(item[1]))
        out = []
        used_names: set[str] = set()
        for (exe, cmdline, user), row in ranked:
            if len(out) >= count:
                break
            would_drop = droppable(row)
            syscalls = [name for name, _n in row.syscalls.most_common() if name not in EXECVE_SYSCALLS]
            if would_drop / total < min_share or not syscalls:
                continue
            base = exe.rpartition("/")[2] or "process"
            name = f"noise-{base}"
            n = 2
            while name in used_names:
                name = f"noise-{base}-{n}"
                n += 1
            used_names.add(name)
            spec: dict = {"name": name, "exe": exe}
            if cmdline and cmdline != NONE:
                spec["cmdline"] = [{"prefix": cmdline}]
            if user != NONE and not user.startswith(("unknown", "unset")):
                spec["user"] = int(user) if user.isdecimal() else user
            spec["syscalls"] = syscalls
            spec["depth"] = 0
            counts = ", ".join(f"{name} {row.syscalls[name]}" for name in syscalls[:6])
            comment = (f"would drop {would_drop} events ({100.0 * would_drop / total:.1f} % of all): "
                       f"{counts}{' ...' if len(syscalls) > 6 else ''}; its execve stays visible")
            out.append((spec, comment))
        return out

    def suggestions_yaml(self, count: int = 3) -> str:
        items = self.suggestions(count)
        if not items:
            return "# no filter to suggest: no process makes 1 % or more of the events with syscalls other than execve\n"
        lines = ["# Suggested filters (review before use: a filter hides these events from the SOC too)",
                 "process_filters:"]
        for spec, comment in items:
            lines.append(f"  # {comment}")
            dumped = yaml.safe_dump([spec], sort_keys=False, allow_unicode=True, width=1000,
                                    default_flow_style=None)
            lines += ["  " + line for line in dumped.splitlines()]
        return "\n".join(lines) + "\n"


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


human_bytes = _human
