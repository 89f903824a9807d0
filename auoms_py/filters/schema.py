"""The filter file: YAML in, checked filter specifications out, with file:line in every complaint.

The file is read with PyYAML's composer (nodes carry their line) and checked by hand, so that every error names the
line of the offending value, every error of the file is reported at once, and a typo in a key is an error rather
than a silently ignored setting. Layout (full description in docs/filters.md):

    process_filters:          # drop syscall events of matching processes (AUOMS semantics, reference §8)
      - name: dpkg            # unique; used in counters, `ctl check-config` and `top`
        user: root            # name or id, matched against the process's real uid
        group: root           # name or id, real gid
        exe: /usr/bin/dpkg    # a string = equals; or {equals|prefix|contains|regex|glob: value or [values]}
        cmdline:              # list of matches, all must hold
          - prefix: /bin/sh -c
        syscalls: [openat, connect]   # default: all; "!name" = all but name
        depth: -1             # 0: the process only; N: and N generations of descendants; -1: all descendants
        enabled: true
    keys:                     # by audit rule key
      drop: [noisy]           # events carrying one of these keys are dropped
      keep: [auoms]           # when given: syscall events without one of these keys are dropped
    outputs:                  # what each output leaves out ("*" = every output)
      "*":
        drop_record_types: [PROCTITLE]
        drop_fields: [a0, a1]

An unknown user or group name does not reject the file: that one filter is disabled and a warning says why
(AUOMS disabled every filter instead, reference §10.6).
"""
from __future__ import annotations

import grp
import pwd
import re
from dataclasses import dataclass, field
from typing import Callable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from auoms_py.filters.match import KINDS, StringMatch

TOP_KEYS = ("version", "process_filters", "keys", "outputs")
FILTER_KEYS = ("name", "description", "enabled", "user", "group", "exe", "cmdline", "syscalls", "depth")
KEYS_KEYS = ("drop", "keep")
OUTPUT_KEYS = ("drop_record_types", "drop_fields")
ALL_OUTPUTS = "*"

_SYSCALL_NAME = re.compile(r"^[a-z0-9_]+$")
_RECORD_TYPE_NAME = re.compile(r"^[A-Z0-9_]+(?:\[\d+\])?$")


class FilterConfigError(ValueError):
    """The filter file cannot be used. `problems` lists (line, reason); line 0 means the file as a whole.
    (A ValueError, so callers that report any bad configuration file this way need nothing special.)"""

    def __init__(self, path: str, problems: list[tuple[int, str]]):
        self.path = path
        self.problems = sorted(problems)
        super().__init__(str(self))

    @property
    def line(self) -> int:
        return self.problems[0][0]

    @property
    def reason(self) -> str:
        return self.problems[0][1]

    def __str__(self) -> str:
        return "\n".join(f"{self.path}:{line}: {reason}" if line else f"{self.path}: {reason}" for line, reason in self.problems)


def lookup_user(name: str) -> int | None:
    """The uid of a user name in this host's user database (None when unknown)."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def lookup_group(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


class SyscallSet:
    """Which syscalls a filter drops. Plain names: those only; `!name` entries (alone or with "*"): all but those.

    AUOMS stored `!name` with its `!` and never matched it (reference §10.6); here the exception really keeps
    the syscall.
    """

    __slots__ = ("all", "names", "excepted", "written")

    def __init__(self, written: list[str] | None):
        self.written = list(written) if written else []
        plain = {s for s in self.written if s != "*" and not s.startswith("!")}
        excepted = {s[1:] for s in self.written if s.startswith("!")}
        # all syscalls when the list is empty, says "*", or has only exceptions
        self.all = not plain or "*" in self.written
        self.names = frozenset() if self.all else frozenset(plain)
        self.excepted = frozenset(excepted)

    def drops(self, syscall: str) -> bool:
        if self.all:
            return syscall not in self.excepted
        return syscall in self.names

    def describe(self) -> str:
        if self.all:
            if self.excepted:
                return "every syscall except " + ", ".join(sorted(self.excepted))
            return "every syscall (execve included)"
        return ", ".join(sorted(self.names))


@dataclass
class ProcessFilterSpec:
    name: str
    line: int
    user: int | None = None
    user_text: str | None = None
    group: int | None = None
    group_text: str | None = None
    exe: StringMatch | None = None
    cmdline: list[StringMatch] = field(default_factory=list)
    syscalls: SyscallSet = field(default_factory=lambda: SyscallSet(None))
    depth: int = 0
    description: str | None = None
    disabled: str | None = None  # why the filter is off (enabled: false, unknown user ...); None = active

    def matches_every_process(self) -> bool:
        return self.user is None and self.group is None and self.exe is None and not self.cmdline and not self.user_text and not self.group_text


@dataclass
class KeyFilterSpec:
    drop: frozenset = frozenset()
    keep: frozenset | None = None  # None: no keep list
    line: int = 0


@dataclass
class OutputFilterSpec:
    name: str
    drop_record_types: frozenset = frozenset()
    drop_fields: frozenset = frozenset()
    line: int = 0


@dataclass
class FilterConfig:
    path: str
    process_filters: list[ProcessFilterSpec] = field(default_factory=list)
    keys: KeyFilterSpec = field(default_factory=KeyFilterSpec)
    outputs: dict[str, OutputFilterSpec] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def load_file(path: str, users: Callable[[str], int | None] = lookup_user,
              groups: Callable[[str], int | None] = lookup_group,
              known_syscalls: frozenset | None = None) -> FilterConfig:
    """Read and check a filter file. Raises FilterConfigError naming file, line and reason."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise FilterConfigError(str(path), [(0, f"cannot read the filter file: {exc.strerror or exc}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FilterConfigError(str(path), [(line, "not valid UTF-8 text")]) from None
    return load_text(text, str(path), users=users, groups=groups, known_syscalls=known_syscalls)


def load_text(text: str, path: str = "<filters>", users: Callable[[str], int | None] = lookup_user,
              groups: Callable[[str], int | None] = lookup_group,
              known_syscalls: frozenset | None = None) -> FilterConfig:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        reason = f"YAML syntax: {exc.problem or exc.context}"
        if exc.context and exc.problem:
            reason = f"YAML syntax: {exc.problem} ({exc.context})"
        raise FilterConfigError(path, [(line, reason)]) from None
    except yaml.YAMLError as exc:
        raise FilterConfigError(path, [(0, f"YAML: {exc}")]) from None
    checker = _Checker(path, users, groups, known_syscalls)
    config = checker.config(root)
    if checker.problems:
        raise FilterConfigError(path, checker.problems)
    return config


class _Checker:
    """Walks the node tree, building specs and collecting every problem with its line."""

    def __init__(self, path: str, users, groups, known_syscalls):
        self.path = path
        self.users = users
        self.groups = groups
        self.known_syscalls = known_syscalls
        self.problems: list[tuple[int, str]] = []
        self.warnings: list[str] = []
        self._constructor = yaml.constructor.SafeConstructor()

    # ---- helpers
    def problem(self, node: Node | None, reason: str) -> None:
        self.problems.append((_line(node), reason))

    def warn(self, node: Node | None, text: str) -> None:
        line = _line(node)
        self.warnings.append(f"{self.path}:{line}: {text}" if line else f"{self.path}: {text}")

    def value(self, node: ScalarNode):
        return self._constructor.construct_object(node, deep=True)

    def mapping(self, node: Node, what: str, allowed: tuple[str, ...]) -> dict[str, tuple[Node, Node]] | None:
        """A mapping's entries as {key: (key node, value node)}; unknown and repeated keys are problems."""
        if not isinstance(node, MappingNode):
            self.problem(node, f"{what} must be a mapping (key: value), not {_kind(node)}")
            return None
        entries: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str):
                self.problem(key_node, f"{what}: keys must be plain words")
                continue
            if key in entries:
                self.problem(key_node, f"{what}: {key!r} given twice (first on line {_line(entries[key][0])})")
                continue
            if allowed and key not in allowed:
                hint = _closest(key, allowed)
                self.problem(key_node, f"{what}: unknown key {key!r}" + (f" (did you mean {hint!r}?)" if hint else "")
                             + f"; known keys: {', '.join(allowed)}")
                continue
            entries[key] = (key_node, value_node)
        return entries

    def string(self, node: Node, what: str, allow_int: bool = False) -> str | None:
        """A text scalar; with allow_int a number is taken as the text written (a key named 2024)."""
        if not isinstance(node, ScalarNode):
            self.problem(node, f"{what} must be a text value, not {_kind(node)}")
            return None
        value = self.value(node)
        if isinstance(value, str):
            return value
        if allow_int and isinstance(value, int) and not isinstance(value, bool):
            return node.value
        self.problem(node, f"{what} must be a text value, not {node.value!r}" + (" (quote it)" if node.value else ""))
        return None

    def string_list(self, node: Node, what: str, allow_int: bool = False) -> list[tuple[str, Node]]:
        """A list of strings (a single string is a list of one)."""
        if isinstance(node, ScalarNode):
            s = self.string(node, what, allow_int)
            return [(s, node)] if s is not None else []
        if not isinstance(node, SequenceNode):
            self.problem(node, f"{what} must be a list, not {_kind(node)}")
            return []
        out = []
        for item in node.value:
            s = self.string(item, f"{what} entry", allow_int)
            if s is not None:
                out.append((s, item))
        return out

    # ---- sections
    def config(self, root: Node | None) -> FilterConfig:
        config = FilterConfig(self.path)
        config.warnings = self.warnings
        if root is None:  # empty file: no filters
            return config
        top = self.mapping(root, "the filter file", TOP_KEYS)
        if top is None:
            return config
        if "version" in top:
            node = top["version"][1]
            if not (isinstance(node, ScalarNode) and self.value(node) == 1):
                self.problem(node, "version: this agent reads version 1 filter files")
        if "process_filters" in top:
            config.process_filters = self.process_filters(top["process_filters"][1])
        if "keys" in top:
            config.keys = self.keys(top["keys"][1])
        if "outputs" in top:
            config.outputs = self.outputs(top["outputs"][1])
        return config

    def process_filters(self, node: Node) -> list[ProcessFilterSpec]:
        if isinstance(node, ScalarNode) and node.value in ("", "null", "~"):
            return []
        if not isinstance(node, SequenceNode):
            self.problem(node, f"process_filters must be a list of filters, not {_kind(node)}")
            return []
        specs: list[ProcessFilterSpec] = []
        names: dict[str, int] = {}
        for index, item in enumerate(node.value):
            spec = self.process_filter(item, index)
            if spec is None:
                continue
            if spec.name in names:
                self.problem(item, f"filter name {spec.name!r} is already used on line {names[spec.name]}")
                continue
            names[spec.name] = spec.line
            specs.append(spec)
        return specs

    def process_filter(self, node: Node, index: int) -> ProcessFilterSpec | None:
        where = f"process_filters[{index}]"
        entries = self.mapping(node, where, FILTER_KEYS)
        if entries is None:
            return None
        n_problems = len(self.problems)
        spec = ProcessFilterSpec(name=where, line=_line(node))
        if "name" in entries:
            name_node = entries["name"][1]
            # any scalar as written: a filter may be called `off` or `2024` (YAML would read a bool, a number)
            name = name_node.value if isinstance(name_node, ScalarNode) else self.string(name_node, f"{where}: name")
            if name is not None:
                if not name.strip():
                    self.problem(entries["name"][1], f"{where}: name is empty")
                spec.name = name
        where = f"filter {spec.name!r}"
        if "description" in entries:
            spec.description = self.string(entries["description"][1], f"{where}: description")
        if "user" in entries:
            spec.user, spec.user_text = self.identity(entries["user"][1], where, "user", self.users)
        if "group" in entries:
            spec.group, spec.group_text = self.identity(entries["group"][1], where, "group", self.groups)
        if "exe" in entries:
            matches = self.matches(entries["exe"][1], f"{where}: exe", single=True)
            spec.exe = matches[0] if matches else None
        if "cmdline" in entries:
            spec.cmdline = self.matches(entries["cmdline"][1], f"{where}: cmdline", single=False)
        if "syscalls" in entries:
            spec.syscalls = self.syscalls(entries["syscalls"][1], where)
        if "depth" in entries:
            depth_node = entries["depth"][1]
            depth = self.value(depth_node) if isinstance(depth_node, ScalarNode) else None
            if not isinstance(depth, int) or isinstance(depth, bool) or depth < -1:
                shown = repr(depth_node.value) if isinstance(depth_node, ScalarNode) else _kind(depth_node)
                self.problem(depth_node, f"{where}: depth must be -1 (all descendants), 0 (the process only) or a "
                                         f"number of generations, not {shown}")
            else:
                spec.depth = depth
        if "enabled" in entries:
            enabled_node = entries["enabled"][1]
            enabled = self.value(enabled_node) if isinstance(enabled_node, ScalarNode) else None
            if not isinstance(enabled, bool):
                self.problem(enabled_node, f"{where}: enabled must be true or false")
            elif not enabled:
                spec.disabled = "enabled: false"
        if len(self.problems) > n_problems:
            return spec  # the file is rejected anyway; the spec still takes part in the name check
        if spec.disabled is None:
            for what, text, resolved in (("user", spec.user_text, spec.user), ("group", spec.group_text, spec.group)):
                if text is not None and resolved is None:
                    spec.disabled = f"unknown {what} {text!r}"
                    node_ = entries[what][1]
                    self.warn(node_, f"filter {spec.name!r} disabled: unknown {what} {text!r} "
                                     f"(not in the {'user' if what == 'user' else 'group'} database); the other filters apply")
                    break
        if spec.disabled is None and spec.matches_every_process():
            self.warn(node, f"filter {spec.name!r} names no user, group, exe or cmdline: it applies to every process")
        return spec

    def identity(self, node: Node, where: str, what: str, lookup) -> tuple[int | None, str | None]:
        if not isinstance(node, ScalarNode):
            self.problem(node, f"{where}: {what} must be a name or a number, not {_kind(node)}")
            return None, None
        value = self.value(node)
        if isinstance(value, bool) or value is None:
            self.problem(node, f"{where}: {what} must be a name or a number, not {node.value!r}")
            return None, None
        if isinstance(value, int):
            if value < 0 or value > 0xFFFFFFFF:
                self.problem(node, f"{where}: {what} id {value} is out of range")
                return None, None
            return value, str(value)
        text = str(value)
        if text.isdecimal():
            return int(text), text
        return lookup(text), text

    def matches(self, node: Node, what: str, single: bool) -> list[StringMatch]:
        """exe: one match; cmdline: a match or a list of matches (all must hold)."""
        items = [node]
        if isinstance(node, SequenceNode) and not single:
            items = node.value
            if not items:
                self.problem(node, f"{what}: empty list")
        elif isinstance(node, SequenceNode):
            self.problem(node, f"{what} takes one match; to match any of several values write "
                               f"{{equals: [a, b]}} (or prefix/contains/regex/glob)")
            return []
        out = []
        for item in items:
            m = self.match(item, what)
            if m is not None:
                out.append(m)
        return out

    def match(self, node: Node, what: str) -> StringMatch | None:
        if isinstance(node, ScalarNode):
            text = self.string(node, what, allow_int=True)
            if text is None:
                return None
            if not text:
                self.problem(node, f"{what}: empty value")
                return None
            return StringMatch("equals", [text], _line(node))
        entries = self.mapping(node, what, ())
        if entries is None:
            return None
        if len(entries) != 1:
            self.problem(node, f"{what}: give exactly one of {', '.join(KINDS)} (found: {', '.join(entries) or 'none'})")
            return None
        kind, (key_node, value_node) = next(iter(entries.items()))
        if kind not in KINDS:
            hint = _closest(kind, KINDS)
            self.problem(key_node, f"{what}: unknown match kind {kind!r}" + (f" (did you mean {hint!r}?)" if hint else "")
                         + f"; use one of {', '.join(KINDS)}")
            return None
        values = [v for v, _n in self.string_list(value_node, f"{what}: {kind}", allow_int=True)]
        if not values:
            self.problem(value_node, f"{what}: {kind} needs a value")
            return None
        if any(v == "" for v in values):
            self.problem(value_node, f"{what}: {kind} with an empty value matches everything; remove it instead")
            return None
        try:
            return StringMatch(kind, values, _line(value_node))
        except ValueError as exc:
            self.problem(value_node, f"{what}: {exc}")
            return None

    def syscalls(self, node: Node, where: str) -> SyscallSet:
        items = self.string_list(node, f"{where}: syscalls")
        if isinstance(node, SequenceNode) and not node.value:
            self.problem(node, f"{where}: syscalls is empty; leave it out to mean every syscall")
        seen: dict[str, tuple[bool, Node]] = {}
        written = []
        for text, item in items:
            name = text[1:] if text.startswith("!") else text
            if text == "*":
                written.append(text)
                continue
            if not _SYSCALL_NAME.match(name):
                self.problem(item, f"{where}: {text!r} is not a syscall name (write e.g. openat or !connect)")
                continue
            negated = text.startswith("!")
            if name in seen:
                if seen[name][0] != negated:
                    self.problem(item, f"{where}: syscall {name!r} is both dropped and excepted "
                                       f"(see line {_line(seen[name][1])})")
                continue
            seen[name] = (negated, item)
            if self.known_syscalls is not None and name not in self.known_syscalls:
                self.warn(item, f"{where}: {name!r} is not a syscall name this agent knows; it will never match")
            written.append(text)
        has_plain = any(not t.startswith("!") and t != "*" for t in written)
        has_except = any(t.startswith("!") for t in written)
        if has_plain and has_except and "*" not in written:
            self.problem(node, f"{where}: syscalls mixes names and !exceptions; a list of names drops only those, "
                               f"a list of !exceptions (or \"*\" with them) drops all others")
        return SyscallSet(written)

    def keys(self, node: Node) -> KeyFilterSpec:
        spec = KeyFilterSpec(line=_line(node))
        entries = self.mapping(node, "keys", KEYS_KEYS)
        if entries is None:
            return spec
        if "drop" in entries:
            spec.drop = frozenset(v for v, _n in self.string_list(entries["drop"][1], "keys: drop", allow_int=True))
        if "keep" in entries:
            spec.keep = frozenset(v for v, _n in self.string_list(entries["keep"][1], "keys: keep", allow_int=True))
            if not spec.keep:
                self.problem(entries["keep"][1], "keys: keep is empty (it would drop every syscall event); leave it out")
        if spec.keep and spec.drop & spec.keep:
            self.problem(node, f"keys: {', '.join(sorted(spec.drop & spec.keep))} both dropped and kept")
        return spec

    def outputs(self, node: Node) -> dict[str, OutputFilterSpec]:
        entries = self.mapping(node, "outputs", ())
        if entries is None:
            return {}
        out = {}
        for name, (key_node, value_node) in entries.items():
            what = f"outputs: {name}"
            spec = OutputFilterSpec(name=name, line=_line(key_node))
            fields = self.mapping(value_node, what, OUTPUT_KEYS)
            if fields is None:
                continue
            if "drop_record_types" in fields:
                types = []
                for text, item in self.string_list(fields["drop_record_types"][1], f"{what}: drop_record_types"):
                    if not _RECORD_TYPE_NAME.match(text):
                        self.problem(item, f"{what}: {text!r} is not a record type name (upper case, e.g. PROCTITLE)")
                    types.append(text)
                spec.drop_record_types = frozenset(types)
            if "drop_fields" in fields:
                spec.drop_fields = frozenset(v for v, _n in self.string_list(fields["drop_fields"][1], f"{what}: drop_fields"))
            out[name] = spec
        return out


def _line(node: Node | None) -> int:
    return node.start_mark.line + 1 if node is not None and node.start_mark is not None else 0


def _kind(node: Node | None) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, ScalarNode):
        return f"the value {node.value!r}" if node.value else "an empty value"
    return "nothing"


def _closest(word: str, candidates: tuple[str, ...]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return found[0] if found else None
