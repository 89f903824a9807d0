"""`auoms-py top [--live | FILE...]`: which processes, syscalls and rule keys make the most events and bytes, what
share the filters already drop, and filters to paste for the heaviest remaining noise (docs/top.md).

FILE input (auditd log, plugin stream, saved netlink text) goes through the same pipeline, process tree and filters
as the agent, built from the log alone (this host's /proc is not read). --live reads a copy of every record from
the audit multicast group (read-only, beside auditd or a running auoms-py) and refreshes the tables until Ctrl-C or
--duration.
"""
from __future__ import annotations

import os
import select
import sys
import time

DEFAULT_CONFIG = "/etc/auoms-py/auoms.yaml"


def register(subparsers) -> None:
    parser = subparsers.add_parser("top", help="find the noisiest processes, syscalls and keys; suggest filters",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", metavar="FILE", help="audit logs to read (- for stdin)")
    parser.add_argument("--live", action="store_true", help="read the live audit stream (multicast, read-only)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--filters", metavar="FILE", help="filter file whose drops to show")
    source.add_argument("--config", metavar="FILE", help="agent configuration whose filter file to use "
                        f"(default: {DEFAULT_CONFIG} when it exists)")
    source.add_argument("--no-filters", action="store_true", help="show everything as if nothing were filtered")
    parser.add_argument("--passwd", default=None, help="user db for uid names (default: /etc/passwd, or the "
                        "config's)")
    parser.add_argument("--group", default=None, help="group db for gid names")
    parser.add_argument("--limit", type=int, default=15, help="rows per table (the rest is summed; default 15)")
    parser.add_argument("--by", choices=("events", "bytes"), default="events", help="order rows by (default events)")
    parser.add_argument("--cmdline-width", type=int, default=60, metavar="N",
                        help="characters of the command line that tell processes apart (default 60)")
    parser.add_argument("--suggest", type=int, default=3, metavar="N", help="filters to suggest (default 3; 0: none)")
    parser.add_argument("--interval", type=float, default=2.0, help="live: seconds between refreshes (default 2)")
    parser.add_argument("--duration", type=float, default=None, help="live: stop after this many seconds")
    parser.add_argument("--plain", action="store_true", help="ASCII tables without colour (for scripts and mail)")
    parser.set_defaults(func=run)


def _filter_file(args) -> tuple[str | None, str | None, str | None, str]:
    """(filters path, passwd, group, what the header says about it)."""
    if args.no_filters:
        return None, None, None, "no filters (--no-filters)"
    if args.filters:
        return args.filters, None, None, f"filters from {args.filters}"
    config_path = args.config or (DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None)
    if config_path is None:
        return None, None, None, f"no filters ({DEFAULT_CONFIG} not found; use --filters FILE)"
    from auoms_py.service.config import load

    config = load(config_path)
    if not config.filters:
        return None, config.pipeline.passwd, config.pipeline.group, f"no filters ({config_path} names none)"
    return config.filters, config.pipeline.passwd, config.pipeline.group, f"filters from {config.filters}"


def run(args) -> int:
    from auoms_py.filters import FilterConfigError, Filters
    from auoms_py.filters.stats import NoiseStats
    from auoms_py.pipeline import Pipeline, UserDB

    import logging

    # warnings (a filter disabled for an unknown user, lost records) on stderr, apart from the tables on stdout
    logging.basicConfig(level=logging.WARNING, format="auoms-py top: %(levelname)s: %(message)s")
    if args.live and args.files:
        print("auoms-py top: give FILEs or --live, not both", file=sys.stderr)
        return 2
    try:
        filters_path, passwd, group, filters_note = _filter_file(args)
    except Exception as exc:  # ConfigError: the message names the key
        print(f"auoms-py top: {exc}", file=sys.stderr)
        return 1
    userdb = UserDB(args.passwd or passwd or "/etc/passwd", args.group or group or "/etc/group")
    try:
        filters = Filters(filters_path, live=args.live, userdb=userdb)
    except FilterConfigError as exc:
        print(f"auoms-py top: {exc}", file=sys.stderr)
        return 1
    stats = NoiseStats(args.cmdline_width)
    view = View(args, filters_note)
    try:
        if args.live:
            pipeline = Pipeline(userdb, flush_timeout=0.5)
            return _live(args, pipeline, filters, stats, view)
        pipeline = Pipeline(userdb, flush_timeout=1.0, log_time=True)
        return _files(args, pipeline, filters, stats, view)
    finally:
        filters.close()


def _count(events, filters, stats) -> None:
    for event in events:
        verdict = filters.process(event)
        rec = event[0]
        proc = filters.tree.get(rec.pid) if rec.is_syscall else None
        stats.add(event, proc, verdict)


def _files(args, pipeline, filters, stats, view) -> int:
    names = args.files or ["-"]
    for name in names:
        try:
            stream = sys.stdin.buffer if name == "-" else open(name, "rb")
        except OSError as exc:
            print(f"auoms-py top: {name}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        with stream:
            for raw in stream:
                line = raw.decode("latin-1")
                if line[:1] == "#" or not line.strip():
                    continue
                _count(pipeline.feed_line(line), filters, stats)
    _count(pipeline.flush(), filters, stats)
    source = ", ".join(names)
    view.print(stats, f"{source}: {pipeline.counters['records']} records, {pipeline.counters['malformed']} malformed")
    return 0


def _live(args, pipeline, filters, stats, view) -> int:
    from auoms_py.collect.base import CollectorError
    from auoms_py.collect.multicast import MulticastCollector

    collector = MulticastCollector(64 << 20, 5.0)
    try:
        collector.open()
    except CollectorError as exc:
        print(f"auoms-py top: {exc}", file=sys.stderr)
        return 1
    start = time.monotonic()
    deadline = start + args.duration if args.duration else None

    def header() -> str:
        c = collector.counters
        return (f"live (multicast) for {time.monotonic() - start:.0f} s: {c['records']} records, "
                f"{c['lost']} lost; Ctrl-C to stop")

    try:
        with view.live() as live:
            next_draw = 0.0
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                fd = collector.fileno()
                if not collector.has_more:
                    select.select([fd], [], [], min(0.2, args.interval))
                now = time.monotonic()
                _count(collector.read(pipeline, now), filters, stats)
                _count(pipeline.tick(now), filters, stats)
                collector.periodic(now)
                if now >= next_draw:
                    live.update(view.render(stats, header()))
                    next_draw = now + args.interval
    except KeyboardInterrupt:
        pass
    finally:
        _count(collector.close(pipeline, time.monotonic()), filters, stats)
        _count(pipeline.flush(), filters, stats)
    view.print(stats, header().replace("; Ctrl-C to stop", ""), final_only=True)
    return 0


class View:
    """The tables, drawn with rich."""

    def __init__(self, args, filters_note: str):
        from rich.console import Console

        self.args = args
        self.filters_note = filters_note
        interactive = sys.stdout.isatty() and not args.plain
        self.console = Console(no_color=args.plain, width=None if interactive else 200,
                               highlight=False, soft_wrap=False)

    def live(self):
        from rich.live import Live

        return Live(console=self.console, refresh_per_second=4, screen=False, transient=True)

    def print(self, stats, header: str, final_only: bool = False) -> None:
        self.console.print(self.render(stats, header))
        if self.args.suggest > 0:
            self.console.print(stats.suggestions_yaml(self.args.suggest), markup=False, highlight=False)

    def render(self, stats, header: str):
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        from auoms_py.filters.stats import human_bytes

        args = self.args
        total = stats.total
        style = box.ASCII if args.plain else box.SIMPLE_HEAVY
        events_total = total.events or 1
        bytes_total = total.bytes or 1

        def pct(n: int, of: int) -> str:
            return f"{100.0 * n / of:.1f}"

        def numbers(row) -> list[str]:
            return [str(row.events), pct(row.events, events_total), human_bytes(row.bytes), pct(row.bytes, bytes_total),
                    pct(row.dropped, row.events) if row.events else "0.0"]

        def table(title: str, key_columns: list[str], data: dict, key_cells) -> Table:
            t = Table(title=title, box=style, title_justify="left", show_footer=True)
            for i, name in enumerate(key_columns):
                t.add_column(name, footer="total" if i == 0 else "", overflow="fold" if name == "cmdline" else "ellipsis",
                             max_width=args.cmdline_width + 2 if name == "cmdline" else 60)
            for name, footer in zip(("events", "%ev", "bytes", "%bytes", "%dropped"), numbers(total)):
                t.add_column(name, justify="right", footer=footer)
            shown, others, n_others = stats.top(data, args.limit, args.by)
            for key, row in shown:
                t.add_row(*key_cells(key), *numbers(row))
            if others is not None:
                t.add_row(f"({n_others} others)", *[""] * (len(key_columns) - 1), *numbers(others))
            return t

        parts = [Text(f"{header}. {total.events} events, {human_bytes(total.bytes)} as MSTIC syslog; "
                      f"{total.dropped} dropped ({pct(total.dropped, events_total)} %) by {self.filters_note}.")]
        parts.append(table("Processes", ["exe", "cmdline", "user"], stats.processes,
                           lambda key: [_clean(key[0]), _clean(key[1]), _clean(key[2])]))
        parts.append(table("Syscalls (\\[record types] of other events)", ["syscall"], stats.syscalls,
                           lambda key: [_clean(key)]))
        parts.append(table("Rule keys", ["key"], stats.keys, lambda key: [_clean(key)]))
        if stats.filters:
            t = Table(title="Filters (what each already drops)", box=style, title_justify="left")
            t.add_column("filter")
            for name in ("events dropped", "% of all events", "bytes saved", "% of all bytes"):
                t.add_column(name, justify="right")
            for name, row in sorted(stats.filters.items(), key=lambda item: -item[1].events):
                t.add_row(name, str(row.events), pct(row.events, events_total), human_bytes(row.bytes),
                          pct(row.bytes, bytes_total))
            parts.append(t)
        return Group(*parts)


def _clean(text: str) -> str:
    """Table cells: control and non-UTF-8 bytes shown escaped, never sent to the terminal raw."""
    from auoms_py.pipeline.escape import tty_escape

    value = tty_escape(text) if not text.isascii() or not text.isprintable() else text
    return value.replace("[", "\\[")  # rich markup
