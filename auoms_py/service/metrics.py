"""Agent metrics: one snapshot of every counter (collector, pipeline, outputs, process), logged as one line every
metrics_interval seconds, sent as AUOMS_METRIC events (auoms_py.service.selfreport), written to
`data_dir/metrics.json` every 5 s and answered on the control socket (`auoms-py ctl status`)."""
from __future__ import annotations

import json
import os
import resource
import time


def snapshot(agent) -> dict:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss = rss_kib()  # ru_maxrss lags behind the current RSS a little: the peak is at least what is resident now
    return {
        "time": time.time(),
        "uptime": round(time.monotonic() - agent.started, 3),
        "input": {"type": agent.collector.kind, **agent.collector.status()} if agent.collector else {},
        "pipeline": dict(getattr(agent.pipe, "counters", {}) or {}),
        "outputs": {out.name: {"type": out.kind, "format": out.format.name, **out.status()} for out in agent.outputs},
        "agent": dict(agent.counters),
        "filters": agent.filters.metrics() if agent.filters is not None else {},
        "process": {"cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3), "max_rss_kib": max(usage.ru_maxrss, rss),
                    "rss_kib": rss, "pid": os.getpid()},
    }


_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def rss_kib() -> int:
    """The resident set size now (ru_maxrss is the peak)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_KIB
    except (OSError, ValueError, IndexError):
        return 0


def summary(snap: dict) -> str:
    """One log line: the counters that tell whether all is well."""
    inp = snap["input"]
    parts = [f"input {inp.get('type')}: records={inp.get('records', 0)} lost={inp.get('lost', 0)} "
             f"malformed={inp.get('malformed', 0)}"]
    pipe = snap["pipeline"]
    if pipe:
        parts.append("pipeline: " + " ".join(f"{k}={v}" for k, v in sorted(pipe.items())
                                             if isinstance(v, (int, float))))
    for name, out in snap["outputs"].items():
        keys = ("messages", "sent", "queued", "dropped", "cut", "errors")
        parts.append(f"output {name}: " + " ".join(f"{k}={out[k]}" for k in keys if k in out))
    dropped = snap.get("filters", {}).get("filter_dropped")
    if dropped:
        parts.append("filters dropped: " + " ".join(f"{k}={v}" for k, v in sorted(dropped.items())))
    proc = snap["process"]
    parts.append(f"cpu={proc['cpu_seconds']:.1f}s rss={proc.get('rss_kib', 0) // 1024}MiB "
                 f"(peak {proc['max_rss_kib'] // 1024}MiB)")
    return "; ".join(parts)


def write(snap: dict, path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(snap, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
