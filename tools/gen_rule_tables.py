#!/usr/bin/env python3
"""Generate auoms_py/rules/tables.py (audit rule constants) from the kernel's UAPI headers.

Numbers come from the headers (package linux-libc-dev): linux/audit.h (fields, operators, filter lists, actions,
field comparisons, perms, arches), linux/elf-em.h (EM_* used by AUDIT_ARCH_*), asm-generic/errno*.h (names for
`-F exit=-EPERM`), linux/stat.h (`-F filetype=`), linux/magic.h (`-F fstype=`). What this script adds by hand is
only auditctl's spelling of names where it is not the lower-cased macro suffix (e.g. AUDIT_LOGINUID is `auid`,
AUDIT_WATCH is `path`), mirroring audit-userspace's lib/*tab.h.

    python3 tools/gen_rule_tables.py [--include /usr/include]     # rewrites auoms_py/rules/tables.py

The output is checked in; tests/rules/test_tables.py checks it is current.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "auoms_py" / "rules" / "tables.py"

# auditctl field names (lib/fieldtab.h order: the first name of a number is the one listed)
FIELD_SPELLING = {
    "LOGINUID": ["auid", "loginuid"],
    "WATCH": ["path"],
    "FILTERKEY": ["key"],
    "ARG0": ["a0"], "ARG1": ["a1"], "ARG2": ["a2"], "ARG3": ["a3"],
}
# fields auditctl does not accept by name (kernel-internal)
FIELD_SKIP = {"LOGINUID_SET", "NEGATE"}
OPERATOR_SYMBOLS = {  # lib/optab.h
    "EQUAL": "=", "NOT_EQUAL": "!=", "GREATER_THAN": ">", "GREATER_THAN_OR_EQUAL": ">=",
    "LESS_THAN": "<", "LESS_THAN_OR_EQUAL": "<=", "BIT_MASK": "&", "BIT_TEST": "&=",
}
LIST_NAMES = {  # lib/flagtab.h (+ io_uring, audit-userspace >= 3.1)
    "TASK": "task", "EXIT": "exit", "USER": "user", "EXCLUDE": "exclude", "FS": "filesystem",
    "URING_EXIT": "io_uring",
}
# lib/machinetab.h: machine names -> AUDIT_ARCH_* suffix
MACHINE_ARCH = {
    "i386": "I386", "i486": "I386", "i586": "I386", "i686": "I386", "x86_64": "X86_64",
    "ppc64": "PPC64", "ppc64le": "PPC64LE", "ppc": "PPC", "s390x": "S390X", "s390": "S390",
    "armeb": "ARM", "arm": "ARM", "armv5tejl": "ARM", "armv5tel": "ARM", "armv6l": "ARM", "armv7l": "ARM",
    "aarch64": "AARCH64", "armv8l": "AARCH64",
}
# 32-bit sibling of each 64-bit machine (what `-F arch=b32` means on it)
MACHINE_32BIT = {"x86_64": "i386", "ppc64": "ppc", "s390x": "s390", "aarch64": "arm"}
FILE_TYPES = {  # lib/ftypetab.h order
    "S_IFSOCK": "socket", "S_IFLNK": "link", "S_IFREG": "file", "S_IFBLK": "block", "S_IFDIR": "dir",
    "S_IFCHR": "character", "S_IFIFO": "fifo",
}
FS_TYPES = {  # lib/fstypetab.h (cgroup, cgroup2: audit-userspace >= 4.1)
    "TRACEFS_MAGIC": "tracefs", "DEBUGFS_MAGIC": "debugfs", "CGROUP_SUPER_MAGIC": "cgroup",
    "CGROUP2_SUPER_MAGIC": "cgroup2",
}
FS_TYPES_LISTED = {"tracefs", "debugfs"}  # the ones auditctl 3.0.9 prints by name


def read_defines(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        m = re.match(r"#define\s+(\w+)\s+(.+?)\s*(/\*.*)?$", line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def evaluate(defines: list[tuple[str, str]]) -> dict[str, int]:
    values: dict[str, int] = {}
    for name, expr in defines:
        text = expr.replace("\\", "").strip()
        text = re.sub(r"\b0([0-7]+)\b", r"0o\1", text)  # C octal
        text = re.sub(r"(\b0x[0-9a-fA-F]+|\b\d+)[uUlL]+\b", r"\1", text)
        text = re.sub(r"\(__u32\)", "", text)
        try:
            values[name] = int(eval(text, {"__builtins__": {}}, dict(values)))  # noqa: S307 (header constants)
        except Exception:
            continue
    return values


def section(header: str, start: str, end: str) -> list[tuple[str, str]]:
    text = header.split(start, 1)[1].split(end, 1)[0]
    return [(m.group(1), m.group(2)) for m in re.finditer(r"#define\s+(\w+)\s+([^\n/]+)", text)]


def generate(include: Path) -> str:
    audit_h = (include / "linux" / "audit.h").read_text()
    consts = evaluate(read_defines(include / "linux" / "elf-em.h") + read_defines(include / "linux" / "audit.h"))

    fields: list[tuple[str, int]] = []
    for macro, _expr in section(audit_h, "/* Rule fields */", "#define AUDIT_NEGATE"):
        suffix = macro.removeprefix("AUDIT_")
        if suffix in FIELD_SKIP or macro not in consts:
            continue
        for name in FIELD_SPELLING.get(suffix, [suffix.lower()]):
            fields.append((name, consts[macro]))

    operators = {sym: consts[f"AUDIT_{m}"] for m, sym in OPERATOR_SYMBOLS.items()}
    lists = {name: consts[f"AUDIT_FILTER_{m}"] for m, name in LIST_NAMES.items()}
    actions = {name: consts[f"AUDIT_{name.upper()}"] for name in ("never", "possible", "always")}

    comparisons = []
    for macro, value in consts.items():
        m = re.fullmatch(r"AUDIT_COMPARE_(\w+)_TO_(\w+)", macro)
        if m:
            comparisons.append((m.group(1).lower(), m.group(2).lower(), value))

    machines = {name: consts[f"AUDIT_ARCH_{suffix}"] for name, suffix in MACHINE_ARCH.items()}
    perms = {letter: consts[f"AUDIT_PERM_{word}"]
             for letter, word in (("r", "READ"), ("w", "WRITE"), ("x", "EXEC"), ("a", "ATTR"))}

    errnos: list[tuple[str, int]] = []
    errno_values = evaluate(read_defines(include / "asm-generic" / "errno-base.h")
                            + read_defines(include / "asm-generic" / "errno.h"))
    for name, value in errno_values.items():
        if name.startswith("E"):
            errnos.append((name, value))

    stat_values = evaluate(read_defines(include / "linux" / "stat.h"))
    file_types = {name: stat_values[macro] for macro, name in FILE_TYPES.items()}
    magic = evaluate(read_defines(include / "linux" / "magic.h"))
    fs_types = {name: magic[macro] for macro, name in FS_TYPES.items()}

    def mapping(name: str, items, key_fmt="{!r}", value_fmt="{!r}") -> str:
        lines = [f"{name} = {{\n"]
        lines += [f"    {key_fmt.format(k)}: {value_fmt.format(v)},\n" for k, v in items]
        lines.append("}\n\n")
        return "".join(lines)

    first_name: dict[int, str] = {}
    for name, number in fields:
        first_name.setdefault(number, name)
    first_errno: dict[int, str] = {}
    for name, number in errnos:
        first_errno.setdefault(number, name)

    out = ['"""GENERATED by tools/gen_rule_tables.py from the kernel UAPI headers (linux/audit.h, elf-em.h, stat.h,\n'
           'magic.h, asm-generic/errno*.h) and auditctl\'s name spellings. Do not edit."""\n\n']
    out.append(mapping("FIELD_NUMBERS", fields))
    out.append(mapping("FIELD_NAMES", sorted(first_name.items())))
    out.append(mapping("OPERATORS", operators.items(), value_fmt="0x{:08X}"))
    out.append(mapping("LISTS", lists.items()))
    out.append(mapping("ACTIONS", actions.items()))
    out.append(mapping("COMPARISONS", [((a, b), v) for a, b, v in sorted(comparisons, key=lambda c: c[2])]))
    out.append(mapping("MACHINE_ARCH", machines.items(), value_fmt="0x{:08X}"))
    out.append(mapping("MACHINE_32BIT", MACHINE_32BIT.items()))
    out.append(f"ARCH_64BIT = 0x{consts['__AUDIT_ARCH_64BIT']:08X}\n\n")
    out.append(mapping("PERMS", perms.items()))
    out.append(mapping("ERRNO_NUMBERS", errnos))
    out.append(mapping("ERRNO_NAMES", sorted(first_errno.items())))
    out.append(mapping("FILE_TYPES", file_types.items(), value_fmt="0o{:o}"))
    out.append(mapping("FS_TYPES", fs_types.items(), value_fmt="0x{:X}"))
    out.append(f"FS_TYPES_LISTED = {sorted(FS_TYPES_LISTED)!r}\n")
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--include", type=Path, default=Path("/usr/include"))
    parser.add_argument("--check", action="store_true", help="exit 1 if the checked-in file differs")
    args = parser.parse_args()
    text = generate(args.include)
    if args.check:
        raise SystemExit(0 if OUT.read_text() == text else 1)
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
