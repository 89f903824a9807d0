"""Running the pure pipeline over text in tests (the same code `replay` and the agent use)."""
from __future__ import annotations

from auoms_py.format import json as json_format
from auoms_py.format import mstic, oms
from auoms_py.pipeline import Pipeline, UserDB
from tests.paths import AUOMS_REF

REFERENCE_USERDB = (str(AUOMS_REF / "passwd"), str(AUOMS_REF / "group"))


def reference_pipeline(**kwargs) -> Pipeline:
    return Pipeline(UserDB(*REFERENCE_USERDB), log_time=True, flush_timeout=1.0, **kwargs)


def run_lines(lines, pipeline: Pipeline | None = None) -> list[list]:
    """Output events for text lines (comments and blank lines skipped), flushed at the end."""
    pipeline = pipeline or reference_pipeline()
    out = []
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        out += pipeline.feed_line(line)
    out += pipeline.flush()
    return out


def read_lines(path) -> list[str]:
    return split_lines(path.read_bytes())


def split_lines(data: bytes) -> list[str]:
    """Audit text's lines as replay reads them: split at newlines only (str.splitlines also splits at 0x1C-0x1E,
    0x85..., which would cut auditd's ENRICHED tails off as lines of their own)."""
    lines = data.decode("latin-1").replace("\r\n", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def mstic_lines(events) -> list[str]:
    return [body for records in events for record in records
            for body in [mstic.format_record(record)] if body is not None]


def oms_lines(events) -> list[str]:
    return [line for records in events for line in [oms.format_event(records)] if line is not None]


def json_objects(events) -> list[dict]:
    import json

    return [json.loads(json_format.format_record(record)) for records in events for record in records]


def records(events) -> list:
    return [record for records in events for record in records]
