"""Audit rules in kernel form: building struct audit_rule_data the way auditctl does, and listing it back as text.

This mirrors libaudit (audit-userspace 3.0.x) so that a rule built here is byte for byte what `auditctl` sends,
and ``format_rule`` prints what `auditctl -l` prints:

- ``FieldEncoder.field(pair)``: one ``-F name<op>value`` (audit_rule_fieldpair_data): value conversion per field
  (user/group names, errno names, message types, arches, perms, file types), and the list/operator checks.
- ``FieldEncoder.compare(pair)``: one ``-C a<op>b`` (AUDIT_FIELD_COMPARE).
- ``FieldEncoder.syscall(name)``: one syscall name/number/`all` into the bitmap of the rule's arch.
- ``format_rule(RuleData)``: the canonical `auditctl -l` line.

Problems raise ``RuleError`` with a message fit for `file:line: message`.
"""
from __future__ import annotations

import dataclasses
import grp
import platform
import pwd

from auoms_py.kernel.ruledata import (AUDIT_BITMASK_SIZE, AUDIT_FILTERKEY, AUDIT_MAX_FIELDS, AUDIT_MAX_KEY_LEN,
                                      KEY_SEPARATOR, RuleData)
from auoms_py.pipeline.tables.record_types import RECORD_TYPE_NAMES
from auoms_py.pipeline.tables.syscalls import SYSCALL_NAMES
from auoms_py.rules import tables

F = tables.FIELD_NUMBERS
OP = tables.OPERATORS
OP_SYMBOL = {v: k for k, v in OP.items()}
OPERATOR_MASK = OP["="] | OP["!="] | OP["&"]  # AUDIT_OPERATORS
LIST_NAME = {v: k for k, v in tables.LISTS.items()}
ACTION_NAME = {v: k for k, v in tables.ACTIONS.items()}
FILTER_MASK = 0x07
FILTER_PREPEND = 0x10
ALL_SYSCALLS = [0xFFFFFFFF] * AUDIT_BITMASK_SIZE
UNSET_ID = 0xFFFFFFFF  # "unset" auid / sessionid
PATH_MAX = 4096
AF_MAX = 46  # linux/socket.h (AF_MAX as of 6.x); auditctl rejects saddr_fam >= AF_MAX

FEATURE_EXECUTABLE_PATH = 0x04
FEATURE_EXCLUDE_EXTEND = 0x08
FEATURE_SESSIONID_FILTER = 0x10
FEATURE_FILTER_FS = 0x40
ALL_FEATURES = 0x7F

# machine name -> the syscall table it uses (libaudit: every ppc flavour shares one table)
SYSCALL_TABLE_OF_MACHINE = {"i386": "i386", "x86_64": "x86_64", "ppc": "ppc64", "ppc64": "ppc64",
                            "ppc64le": "ppc64le", "s390x": "s390x", "arm": "arm", "aarch64": "aarch64"}
# arch value -> canonical machine name (first name machinetab gives it)
MACHINE_OF_ARCH: dict[int, str] = {}
for _name, _arch in tables.MACHINE_ARCH.items():
    if _arch not in MACHINE_OF_ARCH or (MACHINE_OF_ARCH[_arch] not in SYSCALL_TABLE_OF_MACHINE
                                        and _name in SYSCALL_TABLE_OF_MACHINE):
        MACHINE_OF_ARCH[_arch] = _name  # prefer the name that has a syscall table (arm, not armeb)
_SYSCALL_NUMBERS = {table: {name: nr for nr, name in names.items()} for table, names in SYSCALL_NAMES.items()}
_MSG_TYPE_NUMBERS = {name: code for code, name in RECORD_TYPE_NAMES.items() if code < 10000}
_MSG_TYPE_NAMES = {code: name for code, name in RECORD_TYPE_NAMES.items() if code < 10000}

_EXCLUDE_EXTENDED_FIELDS = {F["pid"], F["uid"], F["gid"], F["auid"], F["msgtype"], F["subj_user"], F["subj_role"],
                            F["subj_type"], F["subj_sen"], F["subj_clr"], F["exe"]}
_UID_FIELDS = {F["uid"], F["euid"], F["suid"], F["fsuid"], F["auid"], F["obj_uid"]}
_GID_FIELDS = {F["gid"], F["egid"], F["sgid"], F["fsgid"], F["obj_gid"]}
_EXIT_ONLY_STRINGS = {F["obj_user"], F["obj_role"], F["obj_type"], F["obj_lev_low"], F["obj_lev_high"],
                      F["path"], F["dir"]}
_STRING_FIELDS = _EXIT_ONLY_STRINGS | {F["subj_user"], F["subj_role"], F["subj_type"], F["subj_sen"],
                                       F["subj_clr"], F["key"], F["exe"]}
_LSM_FIRST, _LSM_LAST = F["subj_user"], F["obj_lev_high"]


class RuleError(ValueError):
    """A rule auditctl would refuse (or the kernel cannot take); the message says why."""


def detect_machine() -> str:
    """This host's machine name as libaudit knows it (x86_64, aarch64 ...)."""
    machine = platform.machine()
    return machine if machine in tables.MACHINE_ARCH else {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def c_integer(text: str, *, signed: bool = True) -> int:
    """C strtol/strtoul(text, NULL, 0) on a whole string: decimal, 0x hex or 0 octal, optional sign.
    Raises ValueError on anything else (auditctl would silently stop at the first bad character)."""
    s = text.strip()
    negative = s.startswith("-")
    if s[:1] in "+-":
        s = s[1:]
    if not s:
        raise ValueError(text)
    if s[:2].lower() == "0x":
        value = int(s[2:], 16)
    elif s.startswith("0") and len(s) > 1:
        value = int(s[1:], 8)
    else:
        if not s.isdecimal():
            raise ValueError(text)
        value = int(s)
    if negative:
        value = -value
    if signed:
        value = max(-(1 << 63), min(value, (1 << 63) - 1))  # strtol saturates
    else:
        value = min(value, (1 << 64) - 1) if value >= 0 else (-value ^ ((1 << 64) - 1)) + 1  # strtoul wraps '-'
    return value & 0xFFFFFFFF


def arch_value(text: str, host_machine: str) -> int:
    """`-F arch=` value: b64/b32 (relative to the host), a machine name, or a number."""
    lowered = text.lower()
    if lowered in ("b64", "b32"):
        machine = host_machine
        if lowered == "b32":
            machine = tables.MACHINE_32BIT.get(machine, machine)
            if tables.MACHINE_ARCH.get(machine, 0) & tables.ARCH_64BIT:
                raise RuleError(f"arch={text}: this {host_machine} machine has no 32-bit syscall table")
        elif not tables.MACHINE_ARCH.get(machine, 0) & tables.ARCH_64BIT:
            raise RuleError(f"arch={text}: this {host_machine} machine is not 64-bit")
        if machine not in tables.MACHINE_ARCH:
            raise RuleError(f"arch={text}: unknown machine {machine}")
        return tables.MACHINE_ARCH[machine]
    if lowered in tables.MACHINE_ARCH:
        return tables.MACHINE_ARCH[lowered]
    if text[:1].isdecimal():
        try:
            value = c_integer(text, signed=False)
        except ValueError:
            raise RuleError(f"arch={text}: not a machine name or number") from None
        if value not in MACHINE_OF_ARCH:
            raise RuleError(f"arch={text}: no machine has this arch number (elf mapping not found)")
        return value
    raise RuleError(f"arch={text}: unknown machine type (use b64, b32, or a name such as x86_64)")


def syscall_numbers(machine: str) -> dict[str, int]:
    table = SYSCALL_TABLE_OF_MACHINE.get(machine)
    if table is None or table not in _SYSCALL_NUMBERS:
        raise RuleError(f"no syscall table for machine {machine}")
    return _SYSCALL_NUMBERS[table]


def syscall_name(number: int, machine: str | None) -> str | None:
    table = SYSCALL_TABLE_OF_MACHINE.get(machine or "")
    return SYSCALL_NAMES.get(table, {}).get(number) if table else None


def msg_type_number(text: str) -> int:
    upper = text.upper()
    if upper in _MSG_TYPE_NUMBERS:
        return _MSG_TYPE_NUMBERS[upper]
    if upper.startswith("UNKNOWN[") and upper.endswith("]") and upper[8:-1].isdecimal():
        return int(upper[8:-1])
    if text.isdecimal():
        return int(text)
    raise RuleError(f"msgtype={text}: unknown message type")


@dataclasses.dataclass
class FieldEncoder:
    """Builds one rule the way auditctl's option loop does; holds the per-rule state auditctl keeps in globals."""
    list_no: int | None  # AUDIT_FILTER_* of -a/-A/-d, None until given
    host_machine: str = dataclasses.field(default_factory=detect_machine)
    features: int = ALL_FEATURES  # kernel feature_bitmap (AUDIT_GET)
    fields: list[tuple[int, int, int | str]] = dataclasses.field(default_factory=list)
    mask: list[int] = dataclasses.field(default_factory=lambda: [0] * AUDIT_BITMASK_SIZE)
    arch: int = 0  # _audit_elf: 0 until -F arch or -S sets it
    syscall_added: bool = False
    perm_added: bool = False
    exe_added: bool = False
    filterfs_added: bool = False

    # ---- -S --------------------------------------------------------------------------------------------------------

    def syscall(self, name: str) -> None:
        if name == "all":
            self.mask = list(ALL_SYSCALLS)
            self.syscall_added = True
            return
        machine = MACHINE_OF_ARCH[self.arch] if self.arch else self.host_machine
        numbers = syscall_numbers(machine)
        nr = numbers.get(name.lower())
        if nr is None:
            if not name[:1].isdecimal():
                raise RuleError(f"syscall name unknown on {machine}: {name}")
            try:
                nr = c_integer(name)
            except ValueError:
                raise RuleError(f"syscall number not valid: {name}") from None
        if nr >= AUDIT_BITMASK_SIZE * 32:
            raise RuleError(f"syscall number too large: {name}")
        self.mask[nr // 32] |= 1 << (nr % 32)
        self.syscall_added = True

    # ---- -F --------------------------------------------------------------------------------------------------------

    def field(self, pair: str) -> None:
        """One -F pair (audit_rule_fieldpair_data)."""
        if len(self.fields) >= AUDIT_MAX_FIELDS - 1:
            raise RuleError(f"too many fields in rule (at most {AUDIT_MAX_FIELDS - 1}): {pair}")
        name, op, value = split_pair(pair)
        if not name:
            raise RuleError(f"-F missing field name before operator: {pair}")
        if not value:
            raise RuleError(f"-F missing value after operator: {pair}")
        field = F.get(name.lower())
        if field is None:
            raise RuleError(f"-F unknown field: {name}")
        flags = self.list_no
        if flags == tables.LISTS["exclude"]:
            if not self.features & FEATURE_EXCLUDE_EXTEND:
                if field != F["msgtype"]:
                    raise RuleError(f"field {name} not supported by this kernel on the exclude list")
            elif field not in _EXCLUDE_EXTENDED_FIELDS:
                raise RuleError("only msgtype, pid, uid, gid, auid, subj_* and exe can be used on the exclude list")
        if flags == tables.LISTS["filesystem"] and not self.features & FEATURE_FILTER_FS:
            raise RuleError("the filesystem list is not supported by this kernel")
        self.fields.append((field, op, self._value(field, name, op, value, flags)))

    def _value(self, field: int, name: str, op: int, v: str, flags: int | None) -> int | str:
        exit_list = tables.LISTS["exit"]
        if field in _UID_FIELDS:
            if v[:1].isdecimal():
                return self._number(name, v, signed=False)
            if len(v) >= 2 and v[0] == "-" and v[1].isdecimal():
                return self._number(name, v)
            if v == "unset":
                return UNSET_ID
            try:
                return pwd.getpwnam(v).pw_uid
            except KeyError:
                raise RuleError(f"unknown user: {v}") from None
        if field in _GID_FIELDS:
            if v[:1].isdecimal():
                return self._number(name, v)
            try:
                return grp.getgrnam(v).gr_gid
            except KeyError:
                raise RuleError(f"unknown group: {v}") from None
        if field == F["exit"]:
            if flags != exit_list:
                raise RuleError(f"{name} can only be used with the exit list")
            if v[:1].isdecimal() or (len(v) >= 2 and v[0] == "-" and v[1].isdecimal()):
                return self._number(name, v)
            negative = v.startswith("-")
            nr = tables.ERRNO_NUMBERS.get(v.lstrip("-").upper())
            if not nr:
                raise RuleError(f"-F unknown errno: {v}")
            return (-nr if negative else nr) & 0xFFFFFFFF
        if field == F["msgtype"]:
            if flags not in (tables.LISTS["exclude"], tables.LISTS["user"]):
                raise RuleError("msgtype can only be used with the exclude or user list")
            return msg_type_number(v)
        if field in _STRING_FIELDS:
            if field in _EXIT_ONLY_STRINGS:
                if flags != exit_list:
                    raise RuleError(f"{name} can only be used with the exit list")
                if field in (F["path"], F["dir"]):
                    self.perm_added = True
            if field == F["exe"]:
                if not self.features & FEATURE_EXECUTABLE_PATH:
                    raise RuleError("field exe not supported by this kernel")
                if op not in (OP["="], OP["!="]):
                    raise RuleError(f"{name} only takes = or != operators")
                self.exe_added = True
            if field == F["key"]:
                if not (self.syscall_added or self.perm_added or self.exe_added or self.filterfs_added):
                    raise RuleError("key needs a watch, syscall or exe path given before it")
                if len(v.encode("latin-1")) > AUDIT_MAX_KEY_LEN:
                    raise RuleError(f"key too long (at most {AUDIT_MAX_KEY_LEN} bytes)")
            elif len(v.encode("latin-1")) > PATH_MAX:
                raise RuleError(f"{name} value too long (at most {PATH_MAX} bytes)")
            return v
        if field == F["arch"]:
            if self.syscall_added:
                raise RuleError("arch must be given before -S")
            if op not in (OP["="], OP["!="]):
                raise RuleError("arch only takes = or != operators")
            self.arch = arch_value(v, self.host_machine)
            return self.arch
        if field == F["perm"]:
            if flags != exit_list:
                raise RuleError("perm can only be used with the exit list")
            if op != OP["="]:
                raise RuleError("perm only takes the = operator")
            self.perm_added = True
            return perm_bits(v)
        if field == F["filetype"]:
            if flags != exit_list:
                raise RuleError("filetype can only be used with the exit list")
            if v.lower() not in tables.FILE_TYPES:
                raise RuleError(f"-F unknown file type: {v} (use {', '.join(tables.FILE_TYPES)})")
            return tables.FILE_TYPES[v.lower()]
        if field == F["fstype"]:
            if flags != tables.LISTS["filesystem"]:
                raise RuleError("fstype is only valid on the filesystem list")
            if op not in (OP["="], OP["!="]):
                raise RuleError("fstype only takes = or != operators")
            self.filterfs_added = True
            if v[:1].isdecimal():
                return self._number(name, v, signed=False)
            if v.lower() not in tables.FS_TYPES:
                raise RuleError(f"file system type is unknown: {v}")
            return tables.FS_TYPES[v.lower()]
        if F["a0"] <= field <= F["a3"]:
            if v[:1].isdecimal():
                return self._number(name, v, signed=False)
            if len(v) >= 2 and v[0] == "-" and v[1].isdecimal():
                return self._number(name, v)
            raise RuleError(f"-F value should be a number for {name}")
        if field == F["sessionid"]:
            if not self.features & FEATURE_SESSIONID_FILTER:
                raise RuleError("field sessionid not supported by this kernel")
            if flags not in (tables.LISTS["exclude"], tables.LISTS["user"], exit_list):
                raise RuleError("sessionid must be used with the exclude, user or exit list")
            if v == "unset":
                return UNSET_ID
            if v[:1].isdecimal():
                return self._number(name, v, signed=False)
            if len(v) >= 2 and v[0] == "-" and v[1].isdecimal():
                return self._number(name, v)
            raise RuleError(f"-F value should be a number or unset for {name}")
        if field == F["saddr_fam"]:
            value = self._number(name, v, signed=False)
            if value >= AF_MAX:
                raise RuleError(f"value is too large for field {name} (address families end at {AF_MAX - 1})")
            return value
        if field == F["field_compare"]:
            raise RuleError("field_compare is set with -C, not -F")
        # devmajor, devminor, inode, success, pid, ppid, pers, loginuid-like numbers ...
        if field in (F["devmajor"], F["devminor"], F["inode"], F["success"]) and flags != exit_list:
            raise RuleError(f"{name} can only be used with the exit list")
        if field == F["inode"] and op not in (OP["="], OP["!="]):
            raise RuleError("inode only takes = or != operators")
        if field == F["ppid"] and flags != exit_list:
            raise RuleError("ppid can only be used with the exit list")
        if not v[:1].isdecimal():
            raise RuleError(f"-F value should be a number for {name}")
        return self._number(name, v, signed=field != F["inode"])

    @staticmethod
    def _number(name: str, v: str, signed: bool = True) -> int:
        try:
            return c_integer(v, signed=signed)
        except ValueError:
            raise RuleError(f"-F value should be a number for {name}: {v}") from None

    # ---- -C --------------------------------------------------------------------------------------------------------

    def compare(self, pair: str) -> None:
        if len(self.fields) >= AUDIT_MAX_FIELDS - 1:
            raise RuleError(f"too many fields in rule: {pair}")
        if "!=" in pair:
            left, _, right = pair.partition("!=")
            op = OP["!="]
        elif "=" in pair:
            left, _, right = pair.partition("=")
            op = OP["="]
        else:
            raise RuleError(f"-C only takes = or != operators: {pair}")
        if not left:
            raise RuleError(f"-C missing field name before operator: {pair}")
        if not right:
            raise RuleError(f"-C missing value after operator: {pair}")
        f1, f2 = F.get(left.lower()), F.get(right.lower())
        if f1 is None:
            raise RuleError(f"-C unknown field: {left}")
        if f2 is None:
            raise RuleError(f"-C unknown right hand value for comparison: {right}")
        if self.list_no != tables.LISTS["exit"]:
            raise RuleError("-C can only be used with the exit list")
        for (a, b), value in tables.COMPARISONS.items():
            if {F[a], F[b]} == {f1, f2} and f1 != f2:
                self.fields.append((F["field_compare"], op, value))
                return
        raise RuleError(f"-C incompatible comparison: {pair}")

    # ---- result ----------------------------------------------------------------------------------------------------

    def set_perms(self, perms: int) -> None:
        """-p: update the rule's perm field, or add one (audit_update_watch_perms)."""
        if not self.fields:
            raise RuleError("permissions should be preceded by other fields")
        for i, (field, op, _value) in enumerate(self.fields):
            if field == F["perm"]:
                self.fields[i] = (field, op, perms)
                self.perm_added = True
                return
        if len(self.fields) >= AUDIT_MAX_FIELDS - 1:
            raise RuleError("too many fields when adding permissions")
        self.fields.append((F["perm"], OP["="], perms))
        self.perm_added = True


def split_pair(pair: str) -> tuple[str, int, str]:
    """name, operator flag, value of `name<op>value` (auditctl looks for 2-char operators first)."""
    for symbol in ("!=", ">=", "<=", "&=", "=", ">", "<", "&"):
        idx = pair.find(symbol)
        if idx >= 0:
            return pair[:idx], OP[symbol], pair[idx + len(symbol):]
    raise RuleError(f"-F missing operator in {pair!r} (one of = != < > <= >= & &=)")


def perm_bits(text: str) -> int:
    if len(text) > 4:
        raise RuleError(f"permission {text} is too long (letters r, w, x, a)")
    value = 0
    for letter in text.lower():
        if letter not in tables.PERMS:
            raise RuleError(f"permission {letter} is not supported (only r, w, x, a)")
        value |= tables.PERMS[letter]
    return value


def perm_text(value: int) -> str:
    return "".join(letter for letter in "rwxa" if value & tables.PERMS[letter])


# ---- listing (auditctl -l) ------------------------------------------------------------------------------------------

def is_watch(rule: RuleData) -> bool:
    """auditctl lists a rule as `-w` when it has only path/dir/perm/key fields, a perm, and all syscalls."""
    perm = False
    for field, _op, _value in rule.fields:
        if field == F["perm"]:
            perm = True
        if field not in (F["perm"], F["key"], F["dir"], F["path"]):
            return False
    listno = rule.flags & FILTER_MASK
    if listno not in (tables.LISTS["user"], tables.LISTS["task"], tables.LISTS["exclude"],
                      tables.LISTS["filesystem"]):
        if any(word != 0xFFFFFFFF for word in rule.mask[:AUDIT_BITMASK_SIZE - 1]):
            return False
    return perm


def _signed(value: int) -> int:
    return value - (1 << 32) if value & 0x80000000 else value


def format_rule(rule: RuleData, host_machine: str | None = None) -> str:
    """The rule as `auditctl -l` prints it (auditctl-listing.c print_rule, interpret off)."""
    host_machine = host_machine or detect_machine()
    watch = is_watch(rule)
    out: list[str] = []
    machine: str | None = host_machine
    if not watch:
        list_name = LIST_NAME.get(rule.flags & FILTER_MASK, "(null)")
        out.append(f"-a {ACTION_NAME.get(rule.action, '(null)')},{list_name}")
        for field, op, value in rule.fields:
            if field == F["arch"]:
                symbol = OP_SYMBOL.get(op & OPERATOR_MASK, "?")
                machine = MACHINE_OF_ARCH.get(value)
                if machine is None:
                    out.append(f" -F arch{symbol}0x{value:X}")
                else:
                    out.append(f" -F arch{symbol}{'b64' if value & tables.ARCH_64BIT else 'b32'}")
        out.append(_format_syscalls(rule, machine))
    for field, op, value in rule.fields:
        symbol = OP_SYMBOL.get(op & OPERATOR_MASK, "?")
        name = tables.FIELD_NAMES.get(field)
        if field == F["arch"]:
            continue
        if name is None:
            out.append(f" f{field}{symbol}{_signed(value) if isinstance(value, int) else value}")
        elif field == F["msgtype"]:
            out.append(f" -F {name}{symbol}{_MSG_TYPE_NAMES.get(value, _signed(value))}")
        elif _LSM_FIRST <= field <= _LSM_LAST and field != F["ppid"]:
            out.append(f" -F {name}{symbol}{value}")
        elif field in (F["path"], F["dir"]):
            out.append(f"-w {value}" if watch else f" -F {name}={value}")
        elif field == F["exe"]:
            out.append(f" -F exe={value}")
        elif field == F["key"]:
            for key in str(value).split(KEY_SEPARATOR):
                if key:
                    out.append(f" -k {key}" if watch else f" -F key={key}")
        elif field == F["perm"]:
            out.append(f" -p {perm_text(value)}" if watch else f" -F perm={perm_text(value)}")
        elif field == F["inode"]:
            out.append(f" -F {name}{symbol}{value}")
        elif field == F["field_compare"]:
            out.append(_format_compare(value, symbol))
        elif F["a0"] <= field <= F["a3"]:
            out.append(f" -F {name}{symbol}0x{value:X}")
        elif field == F["exit"]:
            err = tables.ERRNO_NAMES.get(abs(_signed(value)))
            out.append(f" -F {name}{symbol}-{err}" if _signed(value) < 0 and err else f" -F {name}{symbol}{_signed(value)}")
        elif field == F["fstype"]:
            fs = {v: k for k, v in tables.FS_TYPES.items() if k in tables.FS_TYPES_LISTED}.get(value)
            out.append(f" -F {name}{symbol}{fs if fs else _signed(value)}")
        else:
            out.append(f" -F {name}{symbol}{_signed(value)}")
    return "".join(out)


def _format_syscalls(rule: RuleData, machine: str | None) -> str:
    listno = rule.flags & FILTER_MASK
    if listno in (tables.LISTS["user"], tables.LISTS["task"], tables.LISTS["exclude"], tables.LISTS["filesystem"]):
        return ""
    if all(word == 0xFFFFFFFF for word in rule.mask[:AUDIT_BITMASK_SIZE - 1]):
        return " -S all"
    names = []
    for nr in range(AUDIT_BITMASK_SIZE * 32):
        if rule.mask[nr // 32] & (1 << (nr % 32)):
            uring = listno == tables.LISTS["io_uring"]  # io_uring operation numbers, not syscalls
            names.append((None if uring else syscall_name(nr, machine)) or str(nr))
    return f" -S {','.join(names)}" if names else ""


def _format_compare(value: int, symbol: str) -> str:
    for (a, b), number in tables.COMPARISONS.items():
        if number == value:
            return f" -C {a}{symbol}{b}"
    return ""


def rule_keys(rule: RuleData) -> list[str]:
    return rule.keys


def with_keys(rule: RuleData, keys: list[str]) -> RuleData:
    """A copy of `rule` whose key field holds `keys` (replaced in place, or appended last as auditctl does)."""
    fields = [f for f in rule.fields if f[0] != AUDIT_FILTERKEY]
    if keys:
        joined = KEY_SEPARATOR.join(keys)
        if len(joined.encode("latin-1")) > AUDIT_MAX_KEY_LEN:
            raise RuleError(f"keys too long together (at most {AUDIT_MAX_KEY_LEN} bytes): {','.join(keys)}")
        position = next((i for i, f in enumerate(rule.fields) if f[0] == AUDIT_FILTERKEY), len(fields))
        fields.insert(min(position, len(fields)), (AUDIT_FILTERKEY, OP["="], joined))
    return RuleData(rule.flags, rule.action, list(rule.mask), fields)


SYSCALL_CLASS_BITS = 0xFFFF0000  # top 16 bits of the last mask word: syscall classes, consumed by the kernel


def kernel_form(rule: RuleData) -> RuleData:
    """The rule as the kernel lists it back: flags without the prepend bit, and the syscall-class bits of the last
    mask word cleared (the kernel expands classes into the bitmap; an `all` rule already has every bit)."""
    mask = list(rule.mask)
    if mask[-1] & SYSCALL_CLASS_BITS:
        if any(word != 0xFFFFFFFF for word in mask[:-1]):
            raise RuleError("syscall class bits are only supported with -S all")
        mask[-1] &= ~SYSCALL_CLASS_BITS & 0xFFFFFFFF
    return RuleData(rule.flags & ~FILTER_PREPEND, rule.action, mask, list(rule.fields))
