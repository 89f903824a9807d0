"""`auoms-py ctl status`: how the running agent is doing, from its control socket (docs/service.md).

    auoms-py ctl status [-c /etc/auoms-py/auoms.yaml] [--socket PATH] [--json]

The socket is the configuration's `control_socket` (default DATA_DIR/control.sock); only root (or the agent's
user) is answered. Exit status as LSB `status` actions: 0 healthy, 1 degraded (the problems are listed),
3 not running (nobody answers on the socket), 4 cannot ask (permission, unreadable configuration).
"""
from __future__ import annotations

import json
import sys

from auoms_py.service.config import DEFAULT_CONFIG

EXIT_HEALTHY, EXIT_DEGRADED, EXIT_NOT_RUNNING, EXIT_UNKNOWN = 0, 1, 3, 4


def register(words) -> None:
    parser = words.add_parser("status", help="the running agent's health and counters (control socket)",
                              description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[2])
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                        help=f"the agent's configuration, to find its control socket (default {DEFAULT_CONFIG})")
    parser.add_argument("--socket", metavar="PATH", help="the control socket (instead of reading the configuration)")
    parser.add_argument("--json", action="store_true", help="print the agent's answer as JSON")
    parser.set_defaults(func=status)


def socket_path(args) -> str:
    if args.socket:
        return args.socket
    from auoms_py.service.config import load

    config = load(args.config)
    if not config.control_socket:
        raise ValueError(f"{args.config}: control_socket is off (false); the agent cannot be asked")
    return config.control_socket


def status(args) -> int:
    from auoms_py.service.config import ConfigError
    from auoms_py.service.control import ControlError, request

    try:
        path = socket_path(args)
    except (ConfigError, ValueError) as exc:
        print(f"auoms-py ctl status: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    try:
        reply = request(path, "status")
    except PermissionError as exc:
        print(f"auoms-py ctl status: {path}: {exc.strerror} (only root may ask)", file=sys.stderr)
        return EXIT_UNKNOWN
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"auoms-py is not running (nobody answers on {path})")
        return EXIT_NOT_RUNNING
    except (OSError, ControlError, ValueError) as exc:
        print(f"auoms-py ctl status: {path}: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    if args.json:
        print(json.dumps(reply, indent=1, sort_keys=True))
    else:
        print(render(reply))
    return EXIT_HEALTHY if reply["health"]["status"] == "healthy" else EXIT_DEGRADED


def _n(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def render(reply: dict) -> str:
    """The human-readable status (the totals since the agent started)."""
    health = reply["health"]
    snap = reply["metrics"]
    lines = [f"auoms-py {reply['version']}, pid {health['pid']}, up {_duration(health['uptime'])}, "
             f"config {reply['config']}"]
    if health["errors"]:
        lines.append(f"status: {health['status']} ({len(health['errors'])} problem(s))")
        lines += [f"  {category}: {message}" for category, message in health["errors"].items()]
    else:
        lines.append(f"status: {health['status']}")
    inp = snap.get("input", {})
    line = (f"input: {health['input']}: records {_n(inp.get('records', 0))}, lost {_n(inp.get('lost', 0))}"
            f" (kernel {_n(inp.get('kernel_lost', 0))}), malformed {_n(inp.get('malformed', 0))}")
    if "backlog" in inp:
        line += f", kernel backlog {_n(inp['backlog'])}"
    lines.append(line)
    agent = snap.get("agent", {})
    pipe = snap.get("pipeline", {})
    lines.append(f"pipeline: events {_n(pipe.get('events', 0))}, filtered {_n(agent.get('filtered', 0))}, "
                 f"sent to outputs {_n(agent.get('events', 0))}, event errors {_n(agent.get('event_errors', 0))}, "
                 f"records cut from oversized events {_n(pipe.get('records_dropped_over_limit', 0))}")
    filters = snap.get("filters", {})
    if filters:
        lines.append(f"filters: {filters.get('filters_active', 0)} active, {filters.get('filters_disabled', 0)} "
                     f"disabled, process tree {_n(filters.get('process_tree_size', 0))} processes")
    lines.append("outputs:")
    for name, out in snap.get("outputs", {}).items():
        state = health["outputs"].get(name, "?")
        parts = [f"messages {_n(out.get('messages', 0))}"]
        if "delivered" in out:
            parts.append(f"delivered {_n(out['delivered'])}")
            parts.append(f"queued {_n(out.get('queued', 0))}")
        if "spool_bytes" in out:
            parts.append(f"spool {_size(out['spool_bytes'])}")
        parts.append(f"dropped {_n(out.get('dropped', 0))}")
        parts.append(f"errors {_n(out.get('errors', 0))}")
        lines.append(f"  {name} ({out.get('type')}, {out.get('format')}) [{state}]: " + ", ".join(parts))
    proc = snap.get("process", {})
    lines.append(f"process: cpu {proc.get('cpu_seconds', 0):.1f} s, rss {proc.get('rss_kib', 0) / 1024:.1f} MiB "
                 f"(peak {proc.get('max_rss_kib', 0) / 1024:.1f} MiB), reloads {agent.get('reloads', 0)} "
                 f"({agent.get('reload_failures', 0)} refused)")
    return "\n".join(lines)
