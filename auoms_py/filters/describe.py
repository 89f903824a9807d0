"""What each filter will do, in words (`auoms-py ctl check-config`)."""
from __future__ import annotations

from auoms_py.filters.schema import ALL_OUTPUTS, FilterConfig, ProcessFilterSpec


def _identity(text: str | None, resolved: int | None, what: str) -> str:
    if text is None:
        return ""
    if text.isdecimal():
        return f"{what} id {text}"
    return f"{what} {text} ({'id ' + str(resolved) if resolved is not None else 'unknown here'})"


def describe_process_filter(spec: ProcessFilterSpec) -> str:
    whose = []
    if spec.exe is not None:
        whose.append(f"exe {spec.exe.describe()}")
    for match in spec.cmdline:
        whose.append(f"cmdline {match.describe()}")
    ids = []
    if spec.user_text is not None:
        ids.append("run by " + _identity(spec.user_text, spec.user, "user"))
    if spec.group_text is not None:
        ids.append("with " + _identity(spec.group_text, spec.group, "group"))
    if not whose and not ids:
        subject = "EVERY process"
    else:
        subject = "processes"
        if whose:
            subject += " whose " + " and ".join(whose)
        if ids:
            subject += (", " if whose else " ") + " and ".join(ids)
    if spec.depth == 0:
        reach = "the process only, not its children"
    elif spec.depth == -1:
        reach = "and all their descendants"
    else:
        reach = f"and their descendants up to {spec.depth} generation{'s' if spec.depth > 1 else ''}"
    text = f"drops {spec.syscalls.describe()} of {subject} ({reach})"
    if spec.disabled is not None:
        text = f"DISABLED ({spec.disabled}); would drop" + text[len("drops"):]
    return text


def describe(config: FilterConfig) -> list[str]:
    """One line per filter, plus the key and output sections."""
    lines = []
    if not config.process_filters:
        lines.append("process filters: none")
    for spec in config.process_filters:
        lines.append(f"{spec.name} (line {spec.line}): {describe_process_filter(spec)}")
    keys = config.keys
    if keys.drop:
        lines.append(f"keys (line {keys.line}): drops syscall events with key {', '.join(sorted(keys.drop))}")
    if keys.keep is not None:
        lines.append(f"keys (line {keys.line}): drops syscall events without one of the keys "
                     f"{', '.join(sorted(keys.keep))}")
    for name, out in config.outputs.items():
        target = "every output" if name == ALL_OUTPUTS else f"output {name!r}"
        parts = []
        if out.drop_record_types:
            parts.append("record types " + ", ".join(sorted(out.drop_record_types)))
        if out.drop_fields:
            parts.append("fields " + ", ".join(sorted(out.drop_fields)))
        lines.append(f"{target} (line {out.line}): leaves out " + ("; ".join(parts) or "nothing"))
    lines.append("user-space events (USER_*, LOGIN, CONFIG_CHANGE ...) are never process-filtered")
    return lines
