"""`auoms-py replay`: run the pipeline over saved audit records and print one line per output record.

Replay is about the log, not this host: names come only from the user db it is given (default: this host's
/etc/passwd and /etc/group, or `--passwd/--group`), nothing is looked up in /proc, and only records derived from
the input are printed. Idle events are flushed by the log's own clock, so the result does not depend on how fast
the file is read.
"""
from __future__ import annotations

import sys

from auoms_py.format import mstic, oms
from auoms_py.pipeline import Pipeline, TextLines, UserDB
from auoms_py.pipeline.parse import parse_text

FORMATS = ("mstic", "oms", "json")
MALFORMED_SHOWN = 5


def register(subparsers) -> None:
    parser = subparsers.add_parser("replay", help="run the pipeline over saved audit records",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", metavar="FILE", help="audit log, plugin stream or netlink text; - or "
                        "none for stdin")
    parser.add_argument("--format", choices=FORMATS, default="mstic", help="output format (default: mstic)")
    parser.add_argument("--passwd", default="/etc/passwd", help="user db for uid names (default: /etc/passwd)")
    parser.add_argument("--group", default="/etc/group", help="group db for gid names (default: /etc/group)")
    parser.add_argument("--flush-timeout", type=float, default=1.0, metavar="SECONDS",
                        help="flush an event without EOE once the log's time has moved on this long (default: 1)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--config", metavar="FILE", help="apply the filter file this agent configuration names, to "
                       "try a filter change on a saved log before deploying it")
    which.add_argument("--filters", metavar="FILE", help="apply this filter file")
    parser.add_argument("--quiet", action="store_true", help="no summary on stderr")
    parser.set_defaults(func=run)


class Writer:
    """Formats output events and writes them to a binary stream; counts what it wrote, and the events a formatter
    failed on (a bug: each is counted and the first few reported, the others are written)."""

    def __init__(self, stream, fmt: str, excluded_types: frozenset = mstic.DEFAULT_EXCLUDED_TYPES):
        self.stream = stream
        self.fmt = fmt
        self.excluded_types = excluded_types
        self.lines = 0
        self.failed_events = 0
        self.failures: list[str] = []  # the first few: event id and the exception

    def write(self, output_events) -> None:
        try:
            lines = self._lines(output_events)
        except Exception:  # noqa: BLE001 - find the event, write the others
            lines = []
            for records in output_events:
                try:
                    lines += self._lines([records])
                except Exception as exc:  # noqa: BLE001
                    self.failed_events += 1
                    if len(self.failures) < MALFORMED_SHOWN:
                        event_id = records[0].event_id if records else "?"
                        self.failures.append(f"audit({event_id}): {type(exc).__name__}: {exc}")
        if lines:
            encoding = "latin-1" if self.fmt == "mstic" else "utf-8"  # oms is ASCII
            self.stream.write("\n".join(lines).encode(encoding) + b"\n")
            self.lines += len(lines)

    def _lines(self, output_events) -> list[str]:
        if self.fmt == "mstic":
            return mstic.format_lines(output_events, self.excluded_types)
        lines = []
        if self.fmt == "oms":
            for records in output_events:
                line = oms.format_event(records, self.excluded_types)
                if line is not None:
                    lines.append(line)
        else:
            from auoms_py.format import json as json_format  # (here: orjson's import is 5 % of a mstic replay's start)

            for records in output_events:
                for record in records:
                    line = json_format.format_record(record)
                    if line is not None:
                        lines.append(line)
        return lines


# Input read, parsed and carried through every stage in batches of this size. Small enough that a batch's records,
# events and output records are still in the CPU's caches when the next stage takes them: 64 KiB replays 1.17x
# faster than 1 MiB batches did, in 25 % less memory (bench/compare.py; 32-128 KiB measure the same).
BATCH_BYTES = 1 << 16


def _text_batches(stream, stats):
    """(line number of the first line, text, number of lines) in batches of about BATCH_BYTES of whole lines, each
    ending with a newline (the input's last line may not): one decode per batch."""
    lineno = 1
    rest = b""
    while True:
        chunk = stream.read(BATCH_BYTES)
        if not chunk:
            break
        stats["bytes"] += len(chunk)
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        if not cut:
            rest = data
            continue
        rest = data[cut:]
        data = data[:cut]
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        text = data.decode("latin-1")
        count = text.count("\n")
        stats["lines"] += count
        yield lineno, text, count
        lineno += count
    if rest:
        stats["lines"] += 1
        yield lineno, rest.decode("latin-1"), 1


def _records(lines: list[str], stats) -> list[str]:
    """The lines that are records: not comments (`#...`), not blank."""
    records = []
    for line in lines:
        if line[:1] == "#" or not line.strip():
            stats["comments"] += 1
        else:
            records.append(line)
    return records


def _position(lines: list[str], record_index: int) -> int:
    """Where the record_index-th record line (comments and blank lines skipped) is in its batch (only for the
    few malformed lines shown)."""
    seen = -1
    for position, line in enumerate(lines):
        if not (line[:1] == "#" or not line.strip()):
            seen += 1
            if seen == record_index:
                return position
    return len(lines)


def _open_inputs(names: list[str]):
    for name in names or ["-"]:
        if name == "-":
            yield "-", sys.stdin.buffer
        else:
            with open(name, "rb") as stream:
                yield name, stream


def run(args) -> int:
    pipeline = Pipeline(UserDB(args.passwd, args.group), flush_timeout=args.flush_timeout, log_time=True)
    writer = Writer(sys.stdout.buffer, args.format,
                    mstic.DEFAULT_EXCLUDED_TYPES if args.format != "json" else frozenset())
    stats = {"lines": 0, "comments": 0, "bytes": 0}
    malformed: list[tuple[str, int, str, str]] = []
    try:
        filters = _filters(args, pipeline)  # None: nothing filtered
    except ValueError as exc:  # file, line/key and reason
        print(f"auoms-py replay: {exc}", file=sys.stderr)
        return 1
    try:
        for name, stream in _open_inputs(args.files):
            for first_lineno, text, count in _text_batches(stream, stats):
                # the usual batch, all records, is parsed as read; one with comments, blank or malformed lines
                # (parse_text refuses it: a comment is no record) line by line
                parsed = parse_text(text, count)
                whole = parsed is not None
                if whole:
                    lines = records = TextLines(text)
                else:
                    lines = text.split("\n")
                    if text.endswith("\n"):
                        lines.pop()
                    records = _records(lines, stats)

                def on_malformed(index, reason, name=name, records=records, first_lineno=first_lineno,
                                 lines=lines, whole=whole):
                    if len(malformed) < MALFORMED_SHOWN:
                        lineno = first_lineno + (index if whole else _position(lines, index))
                        malformed.append((name, lineno, reason, records[index]))

                if whole:
                    out = pipeline.feed_records(parsed, lines, on_malformed=on_malformed)
                else:
                    out = pipeline.feed_lines(records, on_malformed=on_malformed)
                if out:
                    writer.write(filters.apply(out) if filters else out)
        out = pipeline.flush()
        writer.write(filters.apply(out) if filters else out)
        sys.stdout.buffer.flush()
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        print(f"auoms-py replay: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        _summary(pipeline, writer, stats, malformed)
        if filters is not None:
            dropped = ", ".join(f"{k} {v}" for k, v in sorted(filters.counters.items(), key=lambda kv: -kv[1]))
            print(f"filters ({filters.path}) dropped: {dropped or 'nothing (no active filter)'}", file=sys.stderr)
    return 0


def _filters(args, pipeline):
    """The filters of --config / --filters, judging from the log alone (this host's /proc is never read)."""
    path = args.filters
    if args.config:
        from auoms_py.service.config import ConfigError, load

        try:
            path = load(args.config).filters
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        if not path:
            print(f"auoms-py replay: {args.config} names no filter file; nothing is filtered", file=sys.stderr)
            return None
    if not path:
        return None
    from auoms_py.filters import Filters

    return Filters(path, live=False, userdb=pipeline.userdb)  # warnings (unknown users) are logged to stderr


def _summary(pipeline: Pipeline, writer: Writer, stats: dict, malformed: list) -> None:
    counters = pipeline.counters
    assembly = pipeline.assembler.counters
    err = sys.stderr
    print(f"read {stats['lines']} lines ({stats['bytes']} bytes): {counters['records']} records, "
          f"{stats['comments']} comments/blank, {counters['malformed']} malformed", file=err)
    print(f"assembled {counters['events']} events ({assembly['events_complete']} complete, "
          f"{assembly['events_timed_out'] + assembly['events_flushed']} without EOE, "
          f"{assembly['events_evicted']} evicted as too many open); "
          f"emitted {writer.lines} {writer.fmt} lines", file=err)
    if counters["records_dropped_over_limit"]:
        print(f"cut {counters['records_dropped_over_limit']} records from events over the size limit", file=err)
    if assembly["events_mixed_nodes"]:
        print(f"{assembly['events_mixed_nodes']} events had records from different nodes", file=err)
    for name, lineno, reason, line in malformed:
        shown = line if len(line) <= 120 else line[:117] + "..."
        print(f"malformed: {name}:{lineno}: {reason}: {shown!r}", file=err)
    if counters["malformed"] > len(malformed):
        print(f"malformed: ... and {counters['malformed'] - len(malformed)} more", file=err)
    if writer.failed_events:
        print(f"{writer.failed_events} events could not be written as {writer.fmt} (internal error; please report):",
              file=err)
        for failure in writer.failures:
            print(f"  {failure}", file=err)
