"""`auoms-py ctl`: kernel audit rules and status, with auditctl's flags and word sub-commands.

    auoms-py ctl -R FILE|DIR      load rules (owned by the owner key) and remove owned rules no longer in FILE|DIR
    auoms-py ctl -l [KEY]         list kernel rules in auditctl text (all, or those carrying KEY)
    auoms-py ctl -s               kernel audit status
    auoms-py ctl -D [KEY]         delete owned rules (only those also carrying KEY, when given)
    auoms-py ctl check-rules PATH validate a rules file or directory without touching the kernel

Word sub-commands come from WORD_COMMANDS: "word" -> "module:function", the function being
``register(subparsers)`` as for top-level commands (it adds its parser and sets ``func``). A module that does not
exist yet is skipped, so another command can be listed before it lands.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import sys

# word -> "module:register function" (add a line here for a new `auoms-py ctl WORD`)
WORD_COMMANDS = {
    "check-rules": "auoms_py.commands.ctl:register_check_rules",
    "check-config": "auoms_py.commands.ctl_check_config:register",
    "status": "auoms_py.commands.ctl_status:register",
}

DEFAULT_OWNER_KEY = "auoms"


def register(subparsers) -> None:
    parser = subparsers.add_parser("ctl", help="kernel audit rules and status (auditctl-like)",
                                   description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog="\n".join(__doc__.split("\n\n")[1].splitlines()))
    action = parser.add_mutually_exclusive_group()
    action.add_argument("-R", dest="load", metavar="PATH", help="load a rules file or directory (owned rules)")
    action.add_argument("-l", dest="list", nargs="?", const="", metavar="KEY", help="list kernel rules [with KEY]")
    action.add_argument("-s", dest="status", action="store_true", help="print kernel audit status")
    action.add_argument("-D", dest="delete", nargs="?", const="", metavar="KEY",
                        help="delete owned rules [those also carrying KEY]")
    parser.add_argument("-k", dest="key", metavar="KEY", help="with -l or -D: the key (as auditctl's -l -k KEY)")
    parser.add_argument("--owner-key", default=DEFAULT_OWNER_KEY,
                        help=f"key that marks the rules auoms-py owns (default: {DEFAULT_OWNER_KEY})")
    parser.add_argument("--no-merge", action="store_true", help="with -R: load rules one for one, unmerged")
    parser.add_argument("--backlog-limit", type=int, default=8192, metavar="N",
                        help="with -R: raise the kernel backlog limit to at least N unless the rules say -b "
                             "(default 8192; 0 = leave it)")
    parser.set_defaults(func=run, parser=parser)
    words = parser.add_subparsers(dest="ctl_command", metavar="COMMAND")
    for target in WORD_COMMANDS.values():
        module_name, _, function = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        getattr(module, function)(words)


def run(args) -> int:
    try:
        if args.load is not None:
            return load(args)
        if args.list is not None:
            return list_rules(args.key or args.list or None)
        if args.status:
            return status()
        if args.delete is not None:
            return delete(args)
    except PermissionError as exc:
        print(f"auoms-py ctl: {exc} (needs root or CAP_AUDIT_CONTROL)", file=sys.stderr)
        return 4
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            print(f"auoms-py ctl: {exc.strerror or exc} (needs root or CAP_AUDIT_CONTROL)", file=sys.stderr)
            return 4
        print(f"auoms-py ctl: {exc}", file=sys.stderr)
        return 1
    args.parser.print_help(sys.stderr)
    return 2


def load(args) -> int:
    from auoms_py.rules.sync import RulesSync

    with RulesSync(args.load, args.owner_key, merge=not args.no_merge,
                   backlog_limit=args.backlog_limit or None) as syncer:
        report = syncer.sync()
    for line in report.added:
        print(f"added: {line}")
    for line in report.removed:
        print(f"removed: {line}")
    print(report.summary(), file=sys.stderr if not report.ok else sys.stdout)
    return 0 if report.ok else 1


def list_rules(key: str | None) -> int:
    from auoms_py.kernel.netlink import AuditNetlink
    from auoms_py.kernel.ruledata import RuleData
    from auoms_py.rules.encode import format_rule

    with AuditNetlink(rcvbuf=1 << 20) as nl:
        rules = [RuleData.unpack(raw) for raw in nl.list_rules()]
    lines = [format_rule(r) for r in rules if key is None or key in r.keys]
    print("\n".join(lines) if lines else "No rules")
    return 0


def status() -> int:
    from auoms_py.kernel.netlink import AuditNetlink

    with AuditNetlink(rcvbuf=1 << 20) as nl:
        st = nl.get_status()
    print(st.as_text())
    if st.immutable:
        print("(rules and status are immutable until reboot: enabled 2)")
    return 0


def delete(args) -> int:
    from auoms_py.rules.sync import RulesSync

    key = args.key or args.delete or None
    with RulesSync(None, args.owner_key) as syncer:
        removed = syncer.remove_owned(key)
    for line in removed:
        print(f"removed: {line}")
    print(f"{len(removed)} owned rule(s) removed" + (f" with key {key}" if key else ""))
    return 0


# ---- ctl check-rules ------------------------------------------------------------------------------------------------

def register_check_rules(words) -> None:
    parser = words.add_parser("check-rules", help="validate a rules file or directory (touches nothing)",
                              description="Parse and encode every rule as the agent would load it, without the "
                                          "kernel; print problems as file:line: message. Exit 1 if there are any.")
    parser.add_argument("path", metavar="FILE|DIR")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print each rule as it would load")
    parser.add_argument("--owner-key", default=DEFAULT_OWNER_KEY)
    parser.set_defaults(func=check_rules)


def check_rules(args) -> int:
    from pathlib import Path

    from auoms_py.rules.encode import format_rule
    from auoms_py.rules.sync import check_rules as validate

    path = Path(args.path)
    if not path.exists():
        print(f"{path}: no such file or directory (a missing rules directory loads no rules)", file=sys.stderr)
        return 1
    parsed, desired, errors = validate(path, owner_key=args.owner_key)
    if args.verbose:
        for d in desired:
            print(f"{', '.join(d.sources)}: {format_rule(d.data)}")
    for warning in parsed.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for error in errors:
        print(error, file=sys.stderr)
    controls = ", ".join(f"{c.name}={c.value}" if c.value is not None else c.name for c in parsed.controls)
    print(f"{len(parsed.files)} file(s), {len(desired)} rule(s) to load"
          + (f", controls: {controls}" if controls else "") + f", {len(errors)} error(s)")
    return 1 if errors else 0
