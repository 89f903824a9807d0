"""Rules loaded by auoms-py are what auditctl loads: same kernel bytes, same `auditctl -l` text, same refusals.

Every rule file of AUOMS's research set and of audit-userspace's sample rules.d is loaded twice, under two keys of
equal length: once by auditctl (one line at a time, the oracle) and once by RulesSync. Control lines (-D, -b, -e,
-f, --loginuid-immutable ...) are never sent to the kernel here: they change machine-wide state other test runs
rely on. `-a never,task` without fields is not loaded either: it stops auditing every process started while it is
in place, on a machine shared with other test runs; its encoding is checked without the kernel.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from auoms_py.kernel.netlink import AuditNetlink
from auoms_py.kernel.ruledata import RuleData
from auoms_py.rules import tables
from auoms_py.rules.encode import format_rule
from auoms_py.rules.sync import RulesSync
from auoms_py.rules.syntax import parse_file
from tests.audit_kernel import KernelRules, needs_kernel
from tests.paths import AUOMS_REF, REFERENCE, REPO

pytestmark = [pytest.mark.kernel, needs_kernel]

RULE_FILES = ([AUOMS_REF / "mstic-research.rules"] + sorted((REFERENCE / "peers/audit-userspace/rules").glob("*.rules"))
              + sorted((REPO / "rules").glob("**/*.rules")))  # and the rules auoms-py ships


def keys_pair() -> tuple[str, str]:
    tag = f"par{os.getpid()}{uuid.uuid4().hex[:8]}"
    return tag + "o", tag + "c"  # ours, auditctl's: same length so the structs compare byte for byte


def needs_key_dependency(words: list[str]) -> bool:
    """auditctl refuses -k on a rule without syscall, watch, exe or fstype (its own check; the kernel takes keys
    on every list)."""
    text = " ".join(words)
    return not ("-S" in words or "-w" in words or "-W" in words or "exe=" in text or "fstype=" in text
                or "path=" in text or "dir=" in text or "perm=" in text)


def is_unrestricted_never_task(rule) -> bool:
    data = rule.data
    return data.flags == tables.LISTS["task"] and data.action == tables.ACTIONS["never"] and not data.fields


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rule_file_loads_and_lists_like_auditctl(path: Path):
    ours_key, ctl_key = keys_pair()
    parsed = parse_file(path)
    rule_lines = {r.line: r for r in parsed.rules}
    error_lines = {e.line: e.message for e in parsed.errors}
    control_lines = {c.line for c in parsed.controls}
    skipped = [r for r in parsed.rules if is_unrestricted_never_task(r)]
    for rule in skipped:
        assert format_rule(rule.data) == "-a never,task"

    with KernelRules(ctl_key) as theirs, KernelRules(ours_key) as mine, AuditNetlink() as nl:
        refused_by_auditctl: dict[int, str] = {}
        for lineno, raw in enumerate(path.read_text().splitlines(), 1):
            words = raw.split()
            if not words or words[0].startswith("#") or lineno in control_lines:
                continue
            if lineno in rule_lines and is_unrestricted_never_task(rule_lines[lineno]):
                continue
            extra = [] if needs_key_dependency(words) else ["-k", ctl_key]
            proc = subprocess.run(["auditctl", *words, *extra], capture_output=True, text=True)
            if proc.returncode != 0:
                refused_by_auditctl[lineno] = proc.stderr.strip()

        # lines we call wrong are lines auditctl refuses too, and the other way round (kernel refusals included)
        parsed.rules = [r for r in parsed.rules if not is_unrestricted_never_task(r)]
        with RulesSync(path, ours_key, merge=False, apply_controls=False, backlog_limit=None) as syncer:
            report = syncer.sync(parsed)
        kernel_refused = {int(e.split(":")[1]) for e in report.errors if "the kernel refused" in e}
        ours_refused = set(error_lines) | kernel_refused
        ours_refused -= {r.line for r in skipped}
        assert ours_refused == set(refused_by_auditctl), (report.summary(), refused_by_auditctl)

        # same structs, same order, same listing
        theirs_raw = [r.replace(ctl_key.encode(), ours_key.encode()) for r in theirs.raw()]
        mine_raw = mine.raw()
        assert len(mine_raw) == len(parsed.rules) - len(kernel_refused)
        # keyless lines (auditctl cannot tag them): ours carry only our key; compare without it
        keyless_ours = [r for r in mine_raw if RuleData.unpack(r).keys == [ours_key]
                        and needs_key_dependency(format_rule(RuleData.unpack(r)).split())]
        for raw in keyless_ours:
            data = RuleData.unpack(raw)
            bare = RuleData(data.flags, data.action, data.mask, [f for f in data.fields if f[0] != 210]).pack()
            assert bare in nl.list_rules(), format_rule(data)
            nl.del_rule(bare)  # auditctl's untagged copy: exactly this rule
        mine_tagged = [r for r in mine_raw if r not in keyless_ours]
        assert mine_tagged == theirs_raw
        listed_theirs = [line.replace(ctl_key, ours_key) for line in theirs.listed()]
        listed_mine = mine.listed()
        assert len(listed_mine) == len(mine_raw)
        assert [line for line in listed_mine if line not in
                [format_rule(RuleData.unpack(r)) for r in keyless_ours]] == listed_theirs
        assert [format_rule(RuleData.unpack(r)) for r in mine_raw] == listed_mine
