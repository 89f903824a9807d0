"""`auoms-py ctl check-config [FILE]`: validate an agent configuration and the filter file it names (or a filter
file alone) and print what each filter will do, and name the files the agent would refuse because other users can
write them (config, filters, rules directory and files). Touches nothing; exit status 1 when something is wrong."""
from __future__ import annotations

import sys

DEFAULT_CONFIG = "/etc/auoms-py/auoms.yaml"


def register(words) -> None:
    parser = words.add_parser("check-config", help="validate the configuration and filters; say what each filter does",
                              description=__doc__)
    parser.add_argument("file", nargs="?", default=DEFAULT_CONFIG, metavar="FILE",
                        help=f"agent configuration or filter file (default {DEFAULT_CONFIG})")
    parser.add_argument("--passwd", default=None, help="user db to resolve user names (default: the config's, or "
                        "/etc/passwd)")
    parser.add_argument("--group", default=None, help="group db to resolve group names")
    parser.set_defaults(func=run)


def _is_filter_file(path: str) -> bool:
    """A filter file has process_filters/keys, or `outputs` as a mapping (the agent's is a list)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return path.endswith(("filters.yaml", "filters.yml"))
    if not isinstance(data, dict):
        return False
    return "process_filters" in data or "keys" in data or isinstance(data.get("outputs"), dict)


def run(args) -> int:
    code = check_config(args)
    return untrusted_files(args.file) or code


def untrusted_files(path: str) -> int:
    """Files the agent would refuse because other users can write them (auoms_py.service.hygiene)."""
    from auoms_py.service.config import ConfigError, load
    from auoms_py.service.hygiene import check_files

    files, rules_dir = [path], None
    if not _is_filter_file(path):
        try:
            config = load(path)
        except ConfigError:
            config = None
        if config is not None:
            files.append(config.filters)
            rules_dir = config.rules_dir
    problems = check_files(files, rules_dir)
    for problem in problems:
        print(f"refused: {problem}", file=sys.stderr)
    return 1 if problems else 0


def check_config(args) -> int:
    from auoms_py.service.config import ConfigError, load

    path = args.file
    passwd, group = args.passwd, args.group
    output_names: list[str] | None = None
    if _is_filter_file(path):
        filters_path = path
    else:
        try:
            config = load(path)
        except ConfigError as exc:
            print(f"{exc}", file=sys.stderr)
            return 1
        outputs = ", ".join(f"{o.name} ({o.type}, {o.format})" for o in config.outputs)
        print(f"{path}: OK (input {config.input.type}; outputs {outputs})")
        output_names = [o.name for o in config.outputs]
        passwd = passwd or config.pipeline.passwd
        group = group or config.pipeline.group
        filters_path = config.filters
        if not filters_path:
            print("filters: none configured (nothing is filtered)")
            return 0
    return check_filters(filters_path, passwd or "/etc/passwd", group or "/etc/group", output_names)


def check_filters(path: str, passwd: str, group: str, output_names: list[str] | None) -> int:
    import os

    from auoms_py.filters.describe import describe
    from auoms_py.filters.engine import known_syscalls, userdb_lookups
    from auoms_py.filters.schema import ALL_OUTPUTS, FilterConfigError, load_file
    from auoms_py.pipeline.userdb import UserDB

    if not os.path.exists(path):
        print(f"filters: {path} does not exist: the agent starts without filters")
        return 0
    users, groups = userdb_lookups(UserDB(passwd, group))
    try:
        config = load_file(path, users=users, groups=groups, known_syscalls=known_syscalls())
    except FilterConfigError as exc:
        print(f"{exc}", file=sys.stderr)
        print(f"filters: {path}: {len(exc.problems)} problem(s); a running agent keeps its last good filters",
              file=sys.stderr)
        return 1
    active = [s for s in config.process_filters if s.disabled is None]
    print(f"filters {path}: OK, {len(active)} process filter(s) active, "
          f"{len(config.process_filters) - len(active)} disabled")
    warnings = list(config.warnings)
    if output_names is not None:
        for name, spec in config.outputs.items():
            if name != ALL_OUTPUTS and name not in output_names:
                warnings.append(f"{path}:{spec.line}: outputs: {name!r} is not an output of the configuration "
                                f"({', '.join(output_names)}); it applies to nothing")
    for warning in warnings:
        print(f"warning: {warning}")
    for line in describe(config):
        print(f"  {line}")
    return 0
