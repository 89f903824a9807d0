"""AUOMS output configuration (outconf.d/*.conf) -> an auoms-py filter file.

The .conf format, as AUOMS's Config::Load reads it: `key = value` lines, `#` comment lines; a value that starts
with `{` or `[` is JSON and continues over the following lines until it parses (the lines are joined without a
separator); a value in double quotes may hold `\\"`; any other value is one word. The first occurrence of a key
wins. What is converted:
- `process_filters` -> `process_filters` (depth, user, group, exeMatchType/Value, cmdlineFilters, syscalls),
- `filter_record_types` / `filter_field_names` -> `outputs.<conf name>.drop_record_types` / `drop_fields`.
Everything else configures the output itself (format, socket, field names ...) and is listed in the header of the
result for the operator to carry over to auoms.yaml by hand.
"""
from __future__ import annotations

import json
import os

import yaml

from auoms_py.filters.schema import FilterConfigError, load_text

MATCH_TYPES = {"MatchEquals": "equals", "MatchStartsWith": "prefix", "MatchContains": "contains",
               "MatchRegex": "regex"}
FILTER_KEYS = ("depth", "user", "group", "exeMatchType", "exeMatchValue", "cmdlineFilters", "syscalls")
CONVERTED = ("process_filters", "filter_record_types", "filter_field_names")


class AuomsConfError(Exception):
    def __init__(self, path: str, line: int, reason: str):
        self.path, self.line, self.reason = path, line, reason
        super().__init__(f"{path}:{line}: {reason}")


def parse_conf(text: str, path: str = "<conf>") -> dict[str, tuple[str, int]]:
    """{key: (value text, line)} with AUOMS's rules (see the module doc)."""
    values: dict[str, tuple[str, int]] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        number = i + 1
        i += 1
        stripped = line.strip(" \t\r")
        if not stripped or stripped.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raise AuomsConfError(path, number, "missing '=' (expected key = value)")
        key = key.strip(" \t")
        value = value.strip(" \t\r")
        if value.startswith('"'):
            body = value[1:].replace('\\"', "\x00")
            end = body.find('"')
            if end < 0:
                raise AuomsConfError(path, number, "value is missing its closing quote")
            rest = body[end + 1:].strip(" \t")
            if rest and not rest.startswith("#"):
                raise AuomsConfError(path, number, "characters after the quoted value")
            value = body[:end].replace("\x00", '"')
        elif value.startswith(("{", "[")):
            joined = value
            while True:
                try:
                    json.loads(joined)
                    break
                except ValueError:
                    if i >= len(lines):
                        raise AuomsConfError(path, number, "incomplete or invalid JSON value") from None
                    joined += lines[i].rstrip("\r")
                    i += 1
            value = joined
        else:
            word, _, rest = value.replace("\t", " ").partition(" ")
            if rest.strip() and not rest.strip().startswith("#"):
                raise AuomsConfError(path, number, "white space in value (quote it with \")")
            value = word
        values.setdefault(key, (value, number))
    return values


def _identity(value):
    text = str(value)
    return int(text) if text.isdecimal() else text


def _name_for(entry: dict, used: set[str]) -> str:
    base = ""
    exe = entry.get("exeMatchValue")
    if isinstance(exe, str) and exe:
        base = exe.rstrip("/").rpartition("/")[2]
    else:
        # the last path named by the cmdline matches: the script or program the filter is about
        paths = [w.strip("\"'").rstrip("/*") for cf in entry.get("cmdlineFilters") or [] if isinstance(cf, dict)
                 for w in str(cf.get("matchValue", "")).split() if "/" in w]
        if paths:
            base = paths[-1].rpartition("/")[2]
    base = "".join(c if c.isalnum() or c in "-_." else "-" for c in base).strip("-") or "filter"
    name = base
    n = 2
    while name in used:
        name = f"{base}-{n}"
        n += 1
    used.add(name)
    return name


def convert_filter(entry, index: int, line: int, source: str, used: set[str], notes: list[str]) -> dict | None:
    where = f"process_filters[{index}]"
    if not isinstance(entry, dict):
        notes.append(f"{where}: not an object; skipped")
        return None
    out: dict = {"name": _name_for(entry, used)}
    out["description"] = f"imported from {source} {where}"
    for key in entry:
        if key not in FILTER_KEYS:
            notes.append(f"{where}: key {key!r} is not an AUOMS filter key (AUOMS ignored it); left out")
    if "user" in entry:
        out["user"] = _identity(entry["user"])
    if "group" in entry:
        out["group"] = _identity(entry["group"])
    exe_type = entry.get("exeMatchType")
    exe_value = entry.get("exeMatchValue")
    if exe_type is not None:
        kind = MATCH_TYPES.get(exe_type)
        if kind is None:
            notes.append(f"{where}: exeMatchType {exe_type!r} is unknown (AUOMS rejected the whole list); skipped")
            return None
        if not exe_value:
            notes.append(f"{where}: exeMatchType without exeMatchValue (matched only an empty exe); skipped")
            return None
        out["exe"] = exe_value if kind == "equals" else {kind: exe_value}
    elif exe_value:
        notes.append(f"{where}: exeMatchValue without exeMatchType was ignored by AUOMS; left out")
    cmdline = []
    for cf in entry.get("cmdlineFilters") or []:
        kind = MATCH_TYPES.get(cf.get("matchType")) if isinstance(cf, dict) else None
        value = cf.get("matchValue") if isinstance(cf, dict) else None
        if kind is None or not isinstance(value, str):
            notes.append(f"{where}: a cmdlineFilters entry lacks a known matchType or a matchValue "
                         f"(AUOMS rejected the whole list); skipped")
            return None
        cmdline.append({kind: value})
    if cmdline:
        out["cmdline"] = cmdline
    syscalls = entry.get("syscalls")
    if syscalls:
        names = [s for s in syscalls if isinstance(s, str) and s and not s.startswith("!")]
        exceptions = [s for s in syscalls if isinstance(s, str) and s.startswith("!")]
        if names and exceptions:
            notes.append(f"{where}: syscalls mixes names and !exceptions; AUOMS dropped only the names, so the "
                         f"exceptions {', '.join(exceptions)} are left out")
            out["syscalls"] = names
        elif exceptions:
            notes.append(f"{where}: AUOMS never honoured {', '.join(exceptions)} (reference §10.6) and dropped those "
                         f"syscalls too; auoms-py keeps them as the filter says")
            out["syscalls"] = exceptions
        else:
            out["syscalls"] = names
    depth = entry.get("depth", 0)
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < -1:
        notes.append(f"{where}: depth {depth!r} is invalid (AUOMS rejected the whole list); skipped")
        return None
    out["depth"] = depth
    if "exe" not in out and "cmdline" not in out and "user" not in out and "group" not in out:
        notes.append(f"{where}: names no process at all (it applies to every process)")
    return out


def convert(text: str, path: str = "<conf>", output_name: str | None = None) -> tuple[str, list[str]]:
    """The filter file (YAML text) for an AUOMS output conf, and notes for the operator."""
    conf = parse_conf(text, path)
    source = os.path.basename(path)
    output_name = output_name or os.path.splitext(source)[0] or "output"
    notes: list[str] = []
    result: dict = {"version": 1}
    if "process_filters" in conf:
        value, line = conf["process_filters"]
        try:
            entries = json.loads(value)
        except ValueError as exc:
            raise AuomsConfError(path, line, f"process_filters is not valid JSON: {exc}") from None
        if not isinstance(entries, list):
            raise AuomsConfError(path, line, "process_filters must be a JSON array")
        used: set[str] = set()
        filters = [f for i, e in enumerate(entries) for f in [convert_filter(e, i, line, source, used, notes)] if f]
        result["process_filters"] = filters
    output: dict = {}
    for key, target in (("filter_record_types", "drop_record_types"), ("filter_field_names", "drop_fields")):
        if key in conf:
            value, line = conf[key]
            try:
                items = json.loads(value)
            except ValueError as exc:
                raise AuomsConfError(path, line, f"{key} is not valid JSON: {exc}") from None
            if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                raise AuomsConfError(path, line, f"{key} must be a JSON array of names")
            if items:
                output[target] = items
    if output:
        result["outputs"] = {output_name: output}
    others = [(k, v, line) for k, (v, line) in conf.items() if k not in CONVERTED]
    body = yaml.safe_dump(result, sort_keys=False, allow_unicode=True, width=1000, default_flow_style=None)
    header = [f"# Filters imported from AUOMS {source} by `auoms-py import-auoms` (schema: docs/filters.md).",
              "# Check before use: auoms-py ctl check-config THIS_FILE"]
    if output:
        header.append(f"# outputs.{output_name}: applies to the auoms.yaml output named {output_name!r}; rename it to "
                      f"match yours, or to \"*\" for every output.")
    if notes:
        header.append("# Notes:")
        header += [f"#   - {note}" for note in notes]
    if others:
        header.append("# Settings of the output itself, not filters (carry them over to auoms.yaml by hand):")
        header += [f"#   {k} = {_short(v)}   (line {line})" for k, v, line in others]
    yaml_text = "\n".join(header) + "\n" + body
    # what we write must load: a conversion bug shows here, not on the operator's host
    try:
        load_text(yaml_text, f"<import of {source}>", users=lambda name: 0, groups=lambda name: 0)
    except FilterConfigError as exc:
        raise AssertionError(f"import produced an invalid filter file: {exc}") from None
    return yaml_text, notes


def _short(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= 80 else value[:77] + "..."
