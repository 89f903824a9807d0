"""auditctl rule syntax: rules files and rules directories, parsed the way `auditctl -R` / `augenrules` read them.

    from auoms_py.rules.syntax import parse_text, load_rules_dir
    result = parse_text(text, "/etc/auoms/rules.d/10-base.rules")
    result.rules        # [Rule]: -a/-A/-d rules and -w/-W watches, each with .data (kernel RuleData), .op, .where
    result.controls     # [Control]: -b, -f, -e, -r, --backlog_wait_time, -D ...
    result.errors       # [Issue]: str(issue) == "file:line: what is wrong"; every other line still loads
    result.warnings     # [Issue]: accepted, but worth saying (e.g. 32/64-bit syscall mismatch)

One line is one auditctl command. Supported: ``-a|-A|-d action,list`` (lists exit, task, user, exclude, filesystem,
io_uring; actions always, never), ``-S`` (names, numbers, ``all``, comma lists, repeated; names per the rule's
``-F arch``), ``-F`` (every field auditctl knows, operators ``= != < > <= >= & &=``), ``-C`` (field comparisons),
``-k`` (several), ``-w``/``-W path [-p rwxa]``, and control lines ``-D [-k key]``, ``-b``, ``-f``, ``-e``, ``-r``,
``--backlog_wait_time``, ``--loginuid-immutable``, ``-i``, ``-c``. ``#`` comment lines and blank lines are skipped.
Words are split on blanks; ``\\ `` is a space inside a word, ``\\\\`` a backslash (as auditctl), and a whole word may be
quoted with '...' or "..." (an extension, as go-libaudit).

A directory is read like augenrules: ``*.rules`` files in natural (``ls -v``) order; the last ``-b``, ``-f`` and
``-e`` win and ``-e`` applies after all rules; a bare ``-D`` is a no-op (the agent always replaces its own rules),
``-D -k KEY`` drops the rules read so far whose keys contain KEY.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from auoms_py.kernel.ruledata import AUDIT_MAX_KEY_LEN, KEY_SEPARATOR, RuleData
from auoms_py.rules import tables
from auoms_py.rules.encode import (ALL_FEATURES, ALL_SYSCALLS, F, OP, FieldEncoder, RuleError, c_integer,
                                   detect_machine, perm_bits)

# short options of auditctl; a trailing ':' takes an argument
_SHORT = {c: takes for c, takes in re.findall(r"([a-zA-Z])(:?)", "hicslDvtC:e:f:r:b:a:A:d:S:F:m:R:w:W:k:p:q:")}
_LONG = {"loginuid-immutable": False, "backlog_wait_time": True, "reset-lost": False,
         "reset_backlog_wait_time_actual": False, "signal": True}
_NOT_IN_FILES = {"h": "help", "s": "status", "l": "list", "v": "version", "m": "user message", "t": "trim",
                 "q": "make-equivalent", "R": "nested rule files", "signal": "signal",
                 "reset_backlog_wait_time_actual": "reset counters", "reset-lost": "reset counters"}


@dataclasses.dataclass(frozen=True)
class Issue:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclasses.dataclass
class Rule:
    """One -a/-A/-d rule or -w/-W watch, in kernel form."""
    file: str
    line: int
    text: str  # the line as written
    op: str  # "add" (-a, -w), "prepend" (-A), "delete" (-d, -W)
    data: RuleData  # flags = list number (no PREPEND bit), keys included
    watch_path: str | None = None  # -w/-W: the kernel field is dir or path depending on what the path is

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def keys(self) -> list[str]:
        return self.data.keys

    def kernel_data(self, is_dir=os.path.isdir) -> RuleData:
        """The struct to send: a watch on an existing directory becomes a `dir` field (auditctl stats the path)."""
        if self.watch_path is not None and is_dir(self.watch_path):
            fields = list(self.data.fields)
            fields[0] = (F["dir"], fields[0][1], fields[0][2])
            return RuleData(self.data.flags, self.data.action, list(self.data.mask), fields)
        return self.data


@dataclasses.dataclass
class Control:
    """A status setting or list command: name in delete_all, backlog_limit, failure, enabled, rate_limit,
    backlog_wait_time, loginuid_immutable, ignore_errors, continue_on_errors."""
    file: str
    line: int
    text: str
    name: str
    value: int | str | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclasses.dataclass
class ParseResult:
    rules: list[Rule] = dataclasses.field(default_factory=list)
    controls: list[Control] = dataclasses.field(default_factory=list)
    errors: list[Issue] = dataclasses.field(default_factory=list)
    warnings: list[Issue] = dataclasses.field(default_factory=list)
    files: list[str] = dataclasses.field(default_factory=list)

    def extend(self, other: "ParseResult") -> None:
        self.rules += other.rules
        self.controls += other.controls
        self.errors += other.errors
        self.warnings += other.warnings
        self.files += other.files

    def control(self, name: str) -> Control | None:
        """The last control line of that name (later files override earlier ones, as augenrules)."""
        found = [c for c in self.controls if c.name == name]
        return found[-1] if found else None


# ---- words ------------------------------------------------------------------------------------------------------------

def split_words(line: str) -> list[str]:
    """Split one line into words: blanks separate; backslash-space and double backslash escape (auditctl);
    a word wholly inside '...' or "..." keeps its blanks (a quote that does not close a word is data)."""
    words: list[str] = []
    current: list[str] = []
    in_word = False
    quote = ""
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        if quote:
            if c == quote:
                quote = ""
            else:
                current.append(c)
        elif c in " \t":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        elif c == "\\" and i + 1 < n and line[i + 1] in " \\":
            current.append(line[i + 1])
            in_word = True
            i += 1
        elif c in "'\"" and not in_word and line.find(c, i + 1) > 0 and _quote_ends_word(line, i):
            quote = c
            in_word = True
        else:
            current.append(c)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(current))
    return words


def _quote_ends_word(line: str, start: int) -> bool:
    end = line.find(line[start], start + 1)
    return end == len(line) - 1 or line[end + 1] in " \t"


def _value_index(words: list[str], i: int, option: str) -> int:
    """The index of the word after words[i], which holds the option's value."""
    if i + 1 >= len(words):
        raise RuleError(f"option {option} needs a value")
    return i + 1


def _options(words: list[str]) -> list[tuple[str, str | None]]:
    """getopt_long over one line's words: [(option, argument)]. A stray word is an error."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--") and len(word) > 2:
            name, eq, arg = word[2:].partition("=")
            if name not in _LONG:
                raise RuleError(f"unknown option --{name}")
            if _LONG[name]:
                if not eq:
                    i = _value_index(words, i, f"--{name}")
                    arg = words[i]
                out.append((name, arg))
            else:
                if eq:
                    raise RuleError(f"option --{name} takes no value")
                out.append((name, None))
        elif word.startswith("-") and len(word) > 1:
            j = 1
            while j < len(word):
                c = word[j]
                if c not in _SHORT:
                    raise RuleError(f"unknown option -{c}")
                if _SHORT[c]:
                    arg = word[j + 1:]
                    if not arg:
                        i = _value_index(words, i, f"-{c}")
                        arg = words[i]
                    out.append((c, arg))
                    break
                out.append((c, None))
                j += 1
        else:
            raise RuleError(f"unexpected word {word!r}: not after an option that takes it")
        i += 1
    return out


# ---- one line ---------------------------------------------------------------------------------------------------------

def _lookup_list_action(arg: str) -> tuple[int, int]:
    """`-a always,exit` or `-a exit,always` -> (list number, action)."""
    parts = arg.split(",")
    if len(parts) != 2:
        raise RuleError(f"expected list,action such as always,exit: {arg}")
    a, b = parts
    for first, second in ((a, b), (b, a)):
        if first in tables.ACTIONS and second in tables.LISTS:
            if first == "possible":
                raise RuleError("action possible is deprecated (use always or never)")
            return tables.LISTS[second], tables.ACTIONS[first]
    for word in (a, b):
        if word not in tables.ACTIONS and word not in tables.LISTS:
            raise RuleError(f"unknown list or action {word!r} (lists: {', '.join(tables.LISTS)}; "
                            f"actions: always, never)")
    raise RuleError(f"expected one list and one action: {arg}")


def check_watch_path(path: str, warnings: list[str]) -> str:
    """auditctl's checks on a -w path; returns it without trailing slashes."""
    if len(path) >= 4096:
        raise RuleError("the watch path is too long")
    if not path.startswith("/"):
        raise RuleError(f"the watch path must start with '/': {path}")
    if len(os.path.basename(path.rstrip("/") or "/")) > 255:
        raise RuleError("the base name of the watch path is too long")
    if ".." in path:
        warnings.append("relative path notation (..) is not supported in watches")
    if "*" in path or "?" in path:
        warnings.append("wildcards are not supported in watches")
    if len(path) > 2:
        while len(path) > 1 and path.endswith("/"):
            path = path[:-1]
    return path


def parse_line(words: list[str], *, host_machine: str, features: int, warnings: list[str]) -> tuple | None:
    """One line's words -> ("rule", op, RuleData, watch_path) or ("controls", [(name, value)]), None when empty;
    raises RuleError."""
    opts = _options(words)
    if not opts:
        return None
    enc = FieldEncoder(list_no=None, host_machine=host_machine, features=features)
    op: str | None = None
    action = -1
    exclude = False
    watch: str | None = None
    keys: list[str] = []
    controls: list[tuple[str, int | str | None]] = []
    delete_all_key: str | None = None
    unknown_arch_syscalls: list[str] = []

    def number(option: str, arg: str) -> int:
        if not arg[:1].isdecimal():
            raise RuleError(f"{option} must be a number, was {arg}")
        try:
            return c_integer(arg, signed=False)
        except ValueError:
            raise RuleError(f"{option} must be a number, was {arg}") from None

    names = [name for name, _ in opts]
    for index, (name, arg) in enumerate(opts):
        if name in ("a", "A", "d"):
            if op is not None:
                raise RuleError("only one -a, -A, -d, -w or -W per line")
            if "task" in arg and enc.syscall_added:
                raise RuleError("syscall auditing requested for the task list")
            enc.list_no, action = _lookup_list_action(arg)
            exclude = enc.list_no == tables.LISTS["exclude"]
            op = {"a": "add", "A": "prepend", "d": "delete"}[name]
        elif name in ("w", "W"):
            if op is not None and name == "w":
                raise RuleError("-w can't be given with -a, -A or -d")
            if op is not None:
                raise RuleError("only one -a, -A, -d, -w or -W per line")
            if enc.fields:
                raise RuleError("-w/-W must come before -F")
            watch = check_watch_path(arg, warnings)
            op = "add" if name == "w" else "delete"
            enc.list_no, action = tables.LISTS["exit"], tables.ACTIONS["always"]
            enc.mask = list(ALL_SYSCALLS)
            enc.fields = [(F["path"], OP["="], watch), (F["perm"], OP["="], perm_bits("rwxa"))]
            enc.syscall_added = enc.perm_added = True
        elif name == "S":
            listno = enc.list_no
            if listno == tables.LISTS["task"]:
                raise RuleError("syscalls can't be given for the task list")
            if listno == tables.LISTS["user"]:
                raise RuleError("syscalls can't be given for the user list")
            if listno == tables.LISTS["filesystem"]:
                raise RuleError("syscalls can't be given for the filesystem list")
            if exclude:
                raise RuleError("syscalls can't be given for the exclude list")
            if listno == tables.LISTS["io_uring"]:
                for op_number in arg.split(","):
                    if op_number != "all" and not op_number.isdecimal():
                        raise RuleError(f"the io_uring list takes io_uring operation numbers with -S, not names: "
                                        f"{op_number}")
            elif not enc.arch:
                unknown_arch_syscalls.append(arg)
            for syscall in arg.split(","):
                if syscall:
                    enc.syscall(syscall)
        elif name == "F":
            if enc.list_no is None:
                raise RuleError("the list (-a/-A/-d) must be given before -F")
            if arg.lower().startswith("key="):
                keys.append(_check_key(arg[4:], keys))
                continue
            enc.field(arg)
        elif name == "C":
            enc.compare(arg)
        elif name == "k":
            if delete_all_key is None and "D" in names and names.index("D") < index:
                delete_all_key = arg
                continue
            if not (enc.syscall_added or enc.perm_added or enc.exe_added or enc.filterfs_added) or op is None:
                raise RuleError("-k needs a watch or syscall given before it")
            keys.append(_check_key(arg, keys))
        elif name == "p":
            if op is None:
                raise RuleError("-p needs a watch given before it")
            enc.set_perms(perm_bits(arg))
        elif name == "D":
            if len(opts) > 2 or (len(opts) == 2 and opts[1][0] != "k"):
                raise RuleError("-D takes only -k KEY with it")
            controls.append(("delete_all", None))
        elif name == "b":
            controls.append(("backlog_limit", number("backlog", arg)))
        elif name == "r":
            controls.append(("rate_limit", number("rate", arg)))
        elif name == "backlog_wait_time":
            controls.append(("backlog_wait_time", number("backlog_wait_time", arg)))
        elif name in ("e", "f"):
            if arg not in ("0", "1", "2"):
                raise RuleError(f"-{name} must be 0, 1 or 2, was {arg}")
            controls.append(("enabled" if name == "e" else "failure", int(arg)))
        elif name == "i":
            controls.append(("ignore_errors", None))
        elif name == "c":
            controls.append(("continue_on_errors", None))
        elif name == "loginuid-immutable":
            controls.append(("loginuid_immutable", None))
        elif name in _NOT_IN_FILES:
            raise RuleError(f"-{'-' if len(name) > 1 else ''}{name} ({_NOT_IN_FILES[name]}) is not a rules file command")
    if controls:
        if op is not None:
            raise RuleError("a control option can't be on a rule line")
        return ("controls", [(n, delete_all_key if n == "delete_all" else v) for n, v in controls])
    if op is None:
        raise RuleError("no rule: a line needs -a, -A, -d, -w or -W")
    if keys:
        enc.field("key=" + KEY_SEPARATOR.join(keys))
    if enc.list_no != tables.LISTS["task"] and not enc.syscall_added and watch is None:
        enc.mask = list(ALL_SYSCALLS)
    if unknown_arch_syscalls and op != "delete" and _syscalls_differ_between_arches(unknown_arch_syscalls,
                                                                                   host_machine):
        # auditctl's check_rule_mismatch: the same names give other numbers in the 32-bit table
        warnings.append("32/64 bit syscall mismatch, you should specify an arch (-F arch=b64 or b32)")
    data = RuleData(flags=enc.list_no, action=action, mask=enc.mask, fields=enc.fields)
    return ("rule", op, data, watch)


def _syscalls_differ_between_arches(specs: list[str], host_machine: str) -> bool:
    sibling = tables.MACHINE_32BIT.get(host_machine)
    if not sibling:
        return False
    masks = []
    for machine in (host_machine, sibling):
        enc = FieldEncoder(list_no=tables.LISTS["exit"], host_machine=machine)
        try:
            for spec in specs:
                for name in spec.split(","):
                    if name:
                        enc.syscall(name)
        except RuleError:
            return True
        masks.append(enc.mask)
    return masks[0] != masks[1]


def _check_key(key: str, keys: list[str]) -> str:
    if not key:
        raise RuleError("-k needs a value")
    if KEY_SEPARATOR in key:
        raise RuleError("key contains the illegal character 0x01")
    total = len(KEY_SEPARATOR.join(keys + [key]).encode("latin-1"))
    if total > AUDIT_MAX_KEY_LEN:
        raise RuleError(f"keys exceed {AUDIT_MAX_KEY_LEN} bytes together")
    return key


# ---- files and directories ----------------------------------------------------------------------------------------

def parse_text(text: str, filename: str = "<rules>", *, host_machine: str | None = None,
               features: int = ALL_FEATURES) -> ParseResult:
    """Parse one rules file's text. Every line is tried; errors name the file and line."""
    host_machine = host_machine or detect_machine()
    result = ParseResult(files=[filename])
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line_warnings: list[str] = []
        try:
            parsed = parse_line(split_words(line), host_machine=host_machine, features=features,
                                warnings=line_warnings)
        except RuleError as exc:
            result.errors.append(Issue(filename, lineno, str(exc)))
            continue
        except UnicodeEncodeError:
            result.errors.append(Issue(filename, lineno, "characters outside latin-1 in a value"))
            continue
        result.warnings += [Issue(filename, lineno, w) for w in line_warnings]
        if parsed is None:
            continue
        if parsed[0] == "controls":
            result.controls += [Control(filename, lineno, line, name, value) for name, value in parsed[1]]
        else:
            _, op, data, watch = parsed
            result.rules.append(Rule(filename, lineno, line, op, data, watch))
    return result


def parse_file(path: str | Path, **kwargs) -> ParseResult:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        result = ParseResult(files=[str(path)])
        result.errors.append(Issue(str(path), 0, f"cannot read: {exc.strerror or exc}"))
        return result
    return parse_text(raw.decode("latin-1"), str(path), **kwargs)


def natural_key(name: str) -> list:
    """`ls -v` order: digit runs compare as numbers (9-x.rules before 10-x.rules)."""
    return [(0, int(part), part) if part.isdecimal() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]


def rules_files(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if p.name.endswith(".rules") and p.is_file()),
                  key=lambda p: natural_key(p.name))


def parse_path(path: str | Path, **kwargs) -> ParseResult:
    """A rules file, or a directory of *.rules files (augenrules order). A missing path gives no rules."""
    path = Path(path)
    if path.is_dir():
        return load_rules_dir(path, **kwargs)
    if not path.exists():
        return ParseResult()
    return apply_deletes(parse_file(path, **kwargs))


def load_rules_dir(directory: str | Path, **kwargs) -> ParseResult:
    result = ParseResult()
    for path in rules_files(directory):
        result.extend(parse_file(path, **kwargs))
    return apply_deletes(result)


def apply_deletes(result: ParseResult) -> ParseResult:
    """Apply `-D -k KEY` lines in reading order (drop earlier rules whose keys contain KEY); bare -D is a no-op;
    `-d`/`-W` rules drop an identical earlier rule."""
    order: list[tuple[int, int, object]] = []
    for item in result.rules + [c for c in result.controls if c.name == "delete_all"]:
        order.append((result.files.index(item.file) if item.file in result.files else 0, item.line, item))
    order.sort(key=lambda t: (t[0], t[1]))
    kept: list[Rule] = []
    for _, _, item in order:
        if isinstance(item, Control):
            if item.value:
                kept = [r for r in kept if item.value not in KEY_SEPARATOR.join(r.keys)]
            continue
        if item.op == "delete":
            target = _comparable(item.data)
            kept = [r for r in kept if _comparable(r.data) != target]
            continue
        kept.append(item)
    result.rules = kept
    return result


def _comparable(data: RuleData) -> tuple:
    return (data.flags & 0x07, data.action, tuple(data.mask), tuple(data.fields))
