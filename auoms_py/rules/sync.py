"""Keep the kernel's audit rules in sync with a rules directory, touching only the rules this agent owns.

    from auoms_py.rules.sync import RulesSync
    syncer = RulesSync("/etc/auoms-py/rules.d", owner_key="auoms")
    report = syncer.sync()          # parse, diff against the kernel, add/delete; returns a SyncReport
    print(report.summary())         # "3 added, 1 removed, 40 kept (12 ms)" + file:line problems
    syncer.remove_owned()           # delete every rule carrying the owner key (ctl -D)

Ownership: every rule loaded here carries the owner key (default ``auoms``) as its last key (keys are joined by
0x01 in the kernel). Rules without it belong to someone else and are never deleted or changed.

What a sync does (reference §9, without AUOMS's habit of deleting other owners' look-alike rules):
- reads ``*.rules`` (augenrules order); a file with errors reports them as ``file:line: ...``; if that file loaded
  cleanly before, its previous rules stay in force, otherwise its good lines load;
- merges rules sharing operation, list, action, arch and fields (union of syscalls, or of perms for watches, and
  of keys) unless a rule of the other action sits between them in the same list;
- compares with the kernel (as the kernel lists rules back), deletes owned rules no longer wanted, adds the missing
  ones; in a list where any owned rule is ``never``, order matters (first match wins) and owned rules are kept in
  file order (``-A`` ones in front);
- refuses nothing silently: a rule the kernel rejects is reported with its file:line and the errno;
- an immutable kernel (``-e 2``) is reported, nothing is attempted;
- status: raises backlog_limit to ``backlog_limit`` (8192) unless the rules say ``-b``; applies ``-f``, ``-r``,
  ``--backlog_wait_time``, ``-e 0|1`` from the rules; ``-e 2`` only with ``allow_immutable``.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import time
from pathlib import Path

from auoms_py.kernel.netlink import AuditNetlink, AuditNetlinkError
from auoms_py.kernel.ruledata import AUDIT_MAX_KEY_LEN, KEY_SEPARATOR, RuleData
from auoms_py.rules import tables
from auoms_py.rules.encode import (F, FILTER_PREPEND, RuleError, detect_machine, format_rule,
                                   is_watch, kernel_form, with_keys)
from auoms_py.rules.syntax import Issue, ParseResult, Rule, parse_file, parse_text, rules_files, apply_deletes

DEFAULT_OWNER_KEY = "auoms"
DEFAULT_BACKLOG_LIMIT = 8192
NEVER = tables.ACTIONS["never"]


@dataclasses.dataclass
class DesiredRule:
    data: RuleData  # kernel form, owner key included
    op: str  # "add" or "prepend"
    sources: list[str]  # file:line of every line merged into it

    @property
    def list_no(self) -> int:
        return self.data.flags & 0x07

    @property
    def packed(self) -> bytes:
        return self.data.pack()


@dataclasses.dataclass
class SyncReport:
    added: list[str] = dataclasses.field(default_factory=list)  # auditctl text of rules added
    removed: list[str] = dataclasses.field(default_factory=list)
    kept: int = 0
    desired: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)  # "file:line: what is wrong" / kernel refusals
    warnings: list[str] = dataclasses.field(default_factory=list)
    status_changes: dict[str, int] = dataclasses.field(default_factory=dict)
    immutable: bool = False
    files: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.status_changes)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.immutable

    def summary(self) -> str:
        head = (f"{len(self.added)} added, {len(self.removed)} removed, {self.kept} kept of {self.desired} wanted "
                f"({self.seconds * 1000:.0f} ms)")
        if self.immutable:
            head += "; kernel audit rules are immutable (-e 2) until reboot: nothing changed"
        if self.status_changes:
            head += "; status " + ", ".join(f"{k}={v}" for k, v in self.status_changes.items())
        lines = [head]
        lines += [f"error: {e}" for e in self.errors]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


class RulesSync:
    """Loads a rules directory (or one file) into the kernel and keeps it there. One instance per owner key."""

    def __init__(self, rules_path: str | os.PathLike | None, owner_key: str = DEFAULT_OWNER_KEY, *,
                 merge: bool = True, backlog_limit: int | None = DEFAULT_BACKLOG_LIMIT, apply_controls: bool = True,
                 allow_immutable: bool = False, host_machine: str | None = None, netlink: AuditNetlink | None = None,
                 is_dir=os.path.isdir, trust_check=None) -> None:
        if not owner_key or KEY_SEPARATOR in owner_key or len(owner_key) > AUDIT_MAX_KEY_LEN:
            raise ValueError(f"owner key not usable as an audit key: {owner_key!r}")
        self.rules_path = Path(rules_path) if rules_path else None
        self.owner_key = owner_key
        self.merge = merge
        self.backlog_limit = backlog_limit
        self.apply_controls = apply_controls
        self.allow_immutable = allow_immutable
        self.host_machine = host_machine or detect_machine()
        self.is_dir = is_dir
        # trust_check(path, scanned_directory=bool) -> why the file/directory must not be used, or None (the agent
        # refuses rules that other users can write: auoms_py.service.hygiene); such a file keeps its last good rules
        self.trust_check = trust_check
        self._netlink = netlink
        self._own_netlink = netlink is None
        self._last_good: dict[str, ParseResult] = {}  # file -> last parse without errors
        self._features: int | None = None
        self.last_report: SyncReport | None = None

    # ---- plumbing -------------------------------------------------------------------------------------------------

    @property
    def netlink(self) -> AuditNetlink:
        if self._netlink is None:
            self._netlink = AuditNetlink(rcvbuf=1 << 20)
        return self._netlink

    def close(self) -> None:
        if self._own_netlink and self._netlink is not None:
            self._netlink.close()
            self._netlink = None

    def __enter__(self) -> "RulesSync":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def features(self) -> int:
        if self._features is None:
            self._features = self.netlink.get_status().feature_bitmap or 0x7F
        return self._features

    # ---- reading --------------------------------------------------------------------------------------------------

    def read_rules(self) -> ParseResult:
        """Parse the rules path; broken files fall back to their last good version (errors still reported)."""
        result = ParseResult()
        if self.rules_path is None:
            return result
        paths = rules_files(self.rules_path) if self.rules_path.is_dir() else (
            [self.rules_path] if self.rules_path.exists() else [])
        seen = set()
        refused_dir = None
        if self.trust_check is not None and self.rules_path.is_dir():
            refused_dir = self.trust_check(self.rules_path, scanned_directory=True)
        for path in paths:
            name = str(path)
            seen.add(name)
            refused = refused_dir or (self.trust_check(path) if self.trust_check is not None else None)
            if refused:
                parsed = ParseResult(errors=[Issue(name, 0, refused.removeprefix(name + ": "))], files=[name])
            else:
                parsed = parse_file(path, host_machine=self.host_machine, features=self.features())
            if parsed.errors:
                previous = self._last_good.get(name)
                if previous is not None:
                    kept = dataclasses.replace(previous, errors=list(parsed.errors), warnings=list(parsed.warnings))
                    kept.warnings.append(Issue(name, 0, "has errors: its previously loaded rules stay in force "
                                                        "until it is fixed"))
                    parsed = kept
            else:
                self._last_good[name] = parsed
            result.extend(parsed)
        for gone in set(self._last_good) - seen:
            del self._last_good[gone]
        return apply_deletes(result)

    def desired_rules(self, parsed: ParseResult) -> tuple[list[DesiredRule], list[str]]:
        """Parsed rules -> kernel rules wanted (owner key added, merged, in order); errors as text."""
        errors: list[str] = []
        out: list[DesiredRule] = []
        for rule in parsed.rules:
            if rule.op == "delete":
                continue
            try:
                data = self.owned_form(rule)
            except RuleError as exc:
                errors.append(f"{rule.where}: {exc}")
                continue
            out.append(DesiredRule(data, rule.op, [rule.where]))
        if self.merge:
            out = merge_rules(out)
        # identical rules once only (the kernel refuses a duplicate with EEXIST)
        unique: list[DesiredRule] = []
        index: dict[bytes, DesiredRule] = {}
        for d in out:
            if d.packed in index:
                index[d.packed].sources += d.sources
            else:
                index[d.packed] = d
                unique.append(d)
        return unique, errors

    def owned_form(self, rule: Rule) -> RuleData:
        keys = [k for k in rule.keys if k != self.owner_key] + [self.owner_key]
        return kernel_form(with_keys(rule.kernel_data(self.is_dir), keys))

    # ---- kernel ---------------------------------------------------------------------------------------------------

    def owned_kernel_rules(self, key: str | None = None) -> list[RuleData]:
        """Kernel rules carrying the owner key (and `key`, when given), in kernel order."""
        out = []
        for raw in self.netlink.list_rules():
            rule = RuleData.unpack(raw)
            keys = rule.keys
            if self.owner_key in keys and (key is None or key in keys):
                out.append(rule)
        return out

    def remove_owned(self, key: str | None = None) -> list[str]:
        """Delete every owned rule (with `key` too, when given); returns their auditctl text."""
        if self.netlink.get_status().immutable:
            raise AuditNetlinkError(errno.EPERM, "kernel audit rules are immutable (-e 2) until reboot")
        removed = []
        for rule in self.owned_kernel_rules(key):
            try:
                self.netlink.del_rule(rule.pack())
            except AuditNetlinkError as exc:
                if exc.errno != errno.ENOENT:
                    raise
            removed.append(format_rule(rule, self.host_machine))
        return removed

    def sync(self, parsed: ParseResult | None = None) -> SyncReport:
        """Make the kernel's owned rules equal the rules path (or `parsed`). Never raises for bad rules."""
        start = time.monotonic()
        report = SyncReport()
        if parsed is None:
            parsed = self.read_rules()
        report.files = list(parsed.files)
        report.errors += [str(e) for e in parsed.errors]
        report.warnings += [str(w) for w in parsed.warnings]
        desired, errors = self.desired_rules(parsed)
        report.errors += errors
        report.desired = len(desired)
        status = self.netlink.get_status()
        if status.immutable:
            report.immutable = True
            report.seconds = time.monotonic() - start
            self.last_report = report
            return report
        self._apply_status(parsed, status, report, before_rules=True)
        self._apply_rules(desired, report)
        self._apply_status(parsed, status, report, before_rules=False)
        report.seconds = time.monotonic() - start
        self.last_report = report
        return report

    def _apply_rules(self, desired: list[DesiredRule], report: SyncReport) -> None:
        owned = self.owned_kernel_rules()
        by_list_kernel: dict[int, list[RuleData]] = {}
        for rule in owned:
            by_list_kernel.setdefault(rule.flags & 0x07, []).append(rule)
        by_list_desired: dict[int, list[DesiredRule]] = {}
        for d in desired:
            by_list_desired.setdefault(d.list_no, []).append(d)
        for list_no in sorted(set(by_list_kernel) | set(by_list_desired)):
            kernel = by_list_kernel.get(list_no, [])
            wanted = by_list_desired.get(list_no, [])
            prepends = [d for d in wanted if d.op == "prepend"]
            appends = [d for d in wanted if d.op != "prepend"]
            expected = list(reversed(prepends)) + appends  # the kernel order auditctl would leave
            kernel_bytes = [k.pack() for k in kernel]
            ordered = any(d.data.action == NEVER for d in wanted) or any(k.action == NEVER for k in kernel)
            if ordered:
                prefix = 0
                while (prefix < len(expected) and prefix < len(kernel_bytes)
                       and expected[prefix].packed == kernel_bytes[prefix]):
                    prefix += 1
                if prefix < len(prepends) and prepends:
                    prefix = 0  # a -A rule is missing or out of place: rebuild the list's owned rules
                to_delete = kernel[prefix:]
                to_add = expected[prefix:]
                if prefix == 0 and prepends:
                    to_add = prepends + appends  # each -A goes to the front: add them in file order
            else:
                wanted_bytes = {d.packed for d in expected}
                have = set(kernel_bytes)
                to_delete = [k for k, b in zip(kernel, kernel_bytes) if b not in wanted_bytes]
                to_add = [d for d in prepends + appends if d.packed not in have]
            report.kept += len(expected) - len(to_add)
            for rule in to_delete:
                try:
                    self.netlink.del_rule(rule.pack())
                except AuditNetlinkError as exc:
                    if exc.errno != errno.ENOENT:
                        report.errors.append(f"cannot delete {format_rule(rule, self.host_machine)}: "
                                             f"{os.strerror(exc.errno)}")
                        continue
                report.removed.append(format_rule(rule, self.host_machine))
            for d in to_add:
                data = d.data
                if d.op == "prepend":
                    data = RuleData(data.flags | FILTER_PREPEND, data.action, data.mask, data.fields)
                try:
                    self.netlink.add_rule(data.pack())
                except AuditNetlinkError as exc:
                    if exc.errno == errno.EEXIST:
                        report.kept += 1
                        continue
                    report.errors.append(f"{', '.join(d.sources)}: the kernel refused the rule "
                                         f"({errno.errorcode.get(exc.errno, exc.errno)}: {os.strerror(exc.errno)}): "
                                         f"{format_rule(d.data, self.host_machine)}")
                    continue
                report.added.append(format_rule(d.data, self.host_machine))

    def _apply_status(self, parsed: ParseResult, status, report: SyncReport, *, before_rules: bool) -> None:
        changes: dict[str, int] = {}
        if before_rules:
            backlog = parsed.control("backlog_limit") if self.apply_controls else None
            if backlog is not None:
                if status.backlog_limit != backlog.value:
                    changes["backlog_limit"] = int(backlog.value)
            elif self.backlog_limit is not None and status.backlog_limit < self.backlog_limit:
                changes["backlog_limit"] = self.backlog_limit
            if self.apply_controls:
                for name in ("failure", "rate_limit", "backlog_wait_time"):
                    control = parsed.control(name)
                    if control is not None and getattr(status, name) != control.value:
                        changes[name] = int(control.value)
        elif self.apply_controls:
            enabled = parsed.control("enabled")
            if enabled is not None and enabled.value != status.enabled:
                if enabled.value == 2 and not self.allow_immutable:
                    report.warnings.append(f"{enabled.where}: -e 2 not applied (it would lock the kernel's rules "
                                           f"until reboot, and this agent could no longer keep them in sync); "
                                           f"allow it in the configuration to lock")
                else:
                    changes["enabled"] = int(enabled.value)
        for name, value in changes.items():
            try:
                self.netlink.set_status(**{name: value})
            except AuditNetlinkError as exc:
                report.errors.append(f"cannot set {name}={value}: {os.strerror(exc.errno)}")
                continue
            report.status_changes[name] = value


# ---- merging ----------------------------------------------------------------------------------------------------------

def merge_key(d: DesiredRule) -> tuple:
    """Rules with the same key merge: operation, list, action, arch fields, then every other field except perm
    and keys, in order (AUOMS's CanonicalMergeKey)."""
    data = d.data
    watch = is_watch(data)
    fields = tuple((f, op, v) for f, op, v in data.fields if f not in (F["perm"], F["key"]))
    return (d.op, data.flags & 0x07, data.action, watch, fields)


def merge_rules(rules: list[DesiredRule]) -> list[DesiredRule]:
    out: list[DesiredRule] = []
    index: dict[tuple, int] = {}
    for d in rules:
        key = merge_key(d)
        target_pos = index.get(key)
        if target_pos is not None and not _other_action_between(out, target_pos, d):
            merged = _merged(out[target_pos], d)
            if merged is not None:
                out[target_pos] = merged
                continue
        index[key] = len(out)
        out.append(d)
    return out


def _other_action_between(out: list[DesiredRule], pos: int, d: DesiredRule) -> bool:
    """Merging `d` into out[pos] moves it up past out[pos+1:]: not allowed past a rule of the other action in the
    same list (a never rule's position decides what is audited)."""
    return any(o.list_no == d.list_no and o.data.action != d.data.action for o in out[pos + 1:])


def _merged(a: DesiredRule, b: DesiredRule) -> DesiredRule | None:
    da, db = a.data, b.data
    keys = list(dict.fromkeys(da.keys + db.keys))
    owner = da.keys[-1] if da.keys else None
    if owner in keys:  # keep the owner key last
        keys.remove(owner)
        keys.append(owner)
    if len(KEY_SEPARATOR.join(keys).encode("latin-1")) > AUDIT_MAX_KEY_LEN:
        return None
    fields = list(da.fields)
    mask = list(da.mask)
    if is_watch(da):
        perms_a = next((v for f, _o, v in da.fields if f == F["perm"]), 0)
        perms_b = next((v for f, _o, v in db.fields if f == F["perm"]), 0)
        fields = [(f, o, (perms_a | perms_b) if f == F["perm"] else v) for f, o, v in fields]
    else:
        mask = [x | y for x, y in zip(da.mask, db.mask)]
    merged = with_keys(RuleData(da.flags, da.action, mask, fields), keys)
    return DesiredRule(merged, a.op, a.sources + b.sources)


def check_rules(path: str | os.PathLike, host_machine: str | None = None, features: int = 0x7F,
                owner_key: str = DEFAULT_OWNER_KEY) -> tuple[ParseResult, list[DesiredRule], list[str]]:
    """Validate a rules file or directory without touching the kernel: (parsed, rules as they would load, errors)."""
    syncer = RulesSync(path, owner_key, host_machine=host_machine)
    syncer._features = features
    parsed = syncer.read_rules()
    desired, errors = syncer.desired_rules(parsed)
    return parsed, desired, [str(e) for e in parsed.errors] + errors


__all__ = ["RulesSync", "SyncReport", "DesiredRule", "merge_rules", "check_rules", "parse_text",
           "DEFAULT_OWNER_KEY", "DEFAULT_BACKLOG_LIMIT"]
