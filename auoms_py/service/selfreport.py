"""The agent's own events: AUOMS_METRIC (counts over an interval) and AUOMS_STATUS (health), as OutputRecords that
every output writes in its own format, beside the audit events (reference §11: they travel on the same outputs).

AUOMS_METRIC, every `metrics_interval` seconds: one event of several records, one per namespace, in AUOMS's shape
(`version StartTime EndTime Namespace Name ...`, Metrics.cpp) with the values as fields:

    type=AUOMS_METRIC audit(1700000060.000:0): version=0.1.0 StartTime=2023-11-14T22:13:20.000Z
        EndTime=2023-11-14T22:14:20.000Z Namespace=agent Name=auoms-py SamplePeriod=60 input=netlink
        input_records=48008 input_lost=0 kernel_lost=0 input_malformed=0 ... cpu_percent=16.6 rss_kib=33072
    type=AUOMS_METRIC audit(1700000060.000:0): version=... Namespace=output Name=central output_type=syslog output_format=mstic
        messages=6002 delivered=6002 dropped=0 errors=0 ... queued=0 spool_bytes=5807543

Counters are the counts of the interval StartTime..EndTime (their totals since start are in `auoms-py ctl status`);
gauges (queued, spool_depth, spool_bytes, kernel_backlog, process_tree_size, rss_kib) are the value at EndTime.
AUOMS sends one record per metric with Min/Max/Avg of per-second samples; auoms-py sends the counts themselves,
which is what a query sums (`lost`, `dropped`) and what `ctl status` shows.

AUOMS_STATUS, at start (once collection runs), whenever the health changes, every `status_interval` seconds and at
stop: `version status reason pid uptime input outputs [errors]` (OperationalStatus.cpp sends `version` and `errors`).
`status` is healthy, degraded or stopping; `errors` lists each problem as `category: message` (JSON: an object).

Event id: the wall-clock time of sending and serial 0, as AUOMS. These events never pass through the process
filters (they describe the agent, not a process); an output's own record-type drops (filters.yaml `outputs:`)
still apply, so an output can leave them out.
JSON: numbers are written as numbers (the `extra` of the record), `errors` as an object.
"""
from __future__ import annotations

import time

from auoms_py import __version__
from auoms_py.pipeline.model import AUOMS_METRIC, AUOMS_STATUS, BARE, TEXT, OutputRecord

# values that are a level at the end of the interval, not a count over it
GAUGES = frozenset((
    "uptime", "kernel_backlog", "process_tree_size", "filters_active", "filters_disabled", "rss_kib",
    "rss_peak_kib", "cpu_seconds", "queued", "spool_depth", "spool_bytes", "spool_segments", "SamplePeriod",
))

# what the agent record carries: (field, section of the metrics snapshot, key there)
AGENT_FIELDS = (
    ("input_records", "input", "records"), ("input_bytes", "input", "bytes"), ("input_lost", "input", "lost"),
    ("kernel_lost", "input", "kernel_lost"), ("input_enobufs", "input", "enobufs"),
    ("input_malformed", "input", "malformed"), ("kernel_backlog", "input", "backlog"),
    ("pipeline_events", "pipeline", "events"), ("pipeline_output_records", "pipeline", "output_records"),
    ("pipeline_malformed", "pipeline", "malformed"),
    ("records_dropped_over_limit", "pipeline", "records_dropped_over_limit"),
    ("events", "agent", "events"), ("filtered", "agent", "filtered"), ("event_errors", "agent", "event_errors"),
    ("self_events", "agent", "self_events"), ("reloads", "agent", "reloads"),
    ("reload_failures", "agent", "reload_failures"), ("input_pauses", "agent", "input_pauses"),
    ("filter_reload_errors", "filters", "filter_reload_errors"), ("process_tree_size", "filters", "process_tree_size"),
)
# output counters written when the output has them (delivering outputs have all; file/stdout the first ones)
OUTPUT_FIELDS = ("events", "messages", "bytes", "sent", "delivered", "resent", "dropped", "too_large", "cut", "errors",
                 "reconnects", "queued", "spool_depth", "spool_bytes", "spool_segments", "spool_write_errors")


def iso(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall * 1000) % 1000:03d}Z"


def _number_text(value) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def make_record(code: int, type_name: str, wall: float, values: list[tuple[str, object]]) -> OutputRecord:
    """One record; numbers are bare fields (typed numbers in JSON), strings quoted text."""
    sec = int(wall)
    rec = OutputRecord(code, type_name, f"{sec}.{int(wall * 1000) % 1000:03d}:0", None)
    fields = []
    typed: dict = {}
    for name, value in values:
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)):
            fields.append((name, _number_text(value), BARE))
            typed[name] = round(value, 1) if isinstance(value, float) else value
        elif isinstance(value, dict):  # JSON gets the object; the text formats a readable list
            text = "; ".join(f"{k}: {v}" for k, v in value.items())
            fields.append((name, _clean(text), TEXT))
            typed[name] = value
        else:
            text = str(value)
            style = BARE if text and all(c.isalnum() or c in "-_.:/,+@" for c in text) else TEXT
            fields.append((name, _clean(text), style))
    rec.fields = fields
    rec.extra = typed
    return rec


def _clean(text: str) -> str:
    """A value the quoting of the text formats cannot be confused by (mstic writes name="value" unescaped)."""
    return text.replace('"', "'").replace("\n", " ")


class MetricReporter:
    """Turns successive metric snapshots (auoms_py.service.metrics.snapshot) into AUOMS_METRIC events."""

    def __init__(self, wall: float | None = None, cpu_seconds: float = 0.0):
        self.start_wall = time.time() if wall is None else wall
        self.start_cpu = cpu_seconds
        self.previous: dict[tuple[str, str], float] = {}

    def _delta(self, scope: str, name: str, value):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or name in GAUGES:
            return value
        key = (scope, name)
        before = self.previous.get(key, 0)
        self.previous[key] = value
        return value - before if value >= before else value  # a replaced output counts from 0 again

    def event(self, snap: dict, wall: float | None = None) -> list[OutputRecord]:
        end = time.time() if wall is None else wall
        period = max(end - self.start_wall, 1e-6)
        head = [("version", __version__), ("StartTime", iso(self.start_wall)), ("EndTime", iso(end))]
        proc = snap.get("process", {})
        cpu = proc.get("cpu_seconds", 0.0)
        agent = head + [("Namespace", "agent"), ("Name", "auoms-py"), ("SamplePeriod", round(period)),
                        ("uptime", round(snap.get("uptime", 0))), ("input", snap.get("input", {}).get("type", ""))]
        for field, section, key in AGENT_FIELDS:
            value = snap.get(section, {}).get(key)
            if value is not None:
                agent.append((field, self._delta("agent", field, value)))
        agent += [("cpu_percent", round(100.0 * max(cpu - self.start_cpu, 0.0) / period, 1)),
                  ("cpu_seconds", round(cpu, 1)), ("rss_kib", proc.get("rss_kib", 0)),
                  ("rss_peak_kib", proc.get("max_rss_kib", 0))]
        records = [make_record(AUOMS_METRIC, "AUOMS_METRIC", end, agent)]
        for name, out in snap.get("outputs", {}).items():
            values = head + [("Namespace", "output"), ("Name", name),
                             ("output_type", out.get("type", "")), ("output_format", out.get("format", ""))]
            for field in OUTPUT_FIELDS:
                if field in out:
                    values.append((field, self._delta(f"output:{name}", field, out[field])))
            records.append(make_record(AUOMS_METRIC, "AUOMS_METRIC", end, values))
        self.start_wall = end
        self.start_cpu = cpu
        return records


def status_event(health: dict, reason: str, wall: float | None = None) -> list[OutputRecord]:
    """An AUOMS_STATUS event from a health report (Agent.health())."""
    values = [("version", __version__), ("status", health["status"]), ("reason", reason), ("pid", health["pid"]),
              ("uptime", round(health["uptime"])), ("input", health["input"]),
              ("outputs", ",".join(f"{name}:{state}" for name, state in health["outputs"].items()))]
    if health["errors"]:
        values.append(("errors", dict(health["errors"])))
    return [make_record(AUOMS_STATUS, "AUOMS_STATUS", time.time() if wall is None else wall, values)]
