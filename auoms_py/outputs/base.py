"""What every output shares: the format it writes, counters, and the life cycle the agent drives.

An output receives *events* (a list of OutputRecord, as the pipeline returns them), turns them into messages in its
format (mstic / json / oms) and delivers them. The agent calls, from its single loop thread:

    out.open()                    at start (raises OSError naming what failed; nothing is half-started)
    out.write_event(records)      for every event
    out.flush()                   after each batch (file/stdout flush; syslog wakes its sender)
    out.reopen()                  on SIGHUP (files: logrotate)
    out.close()                   at exit (syslog: tries to deliver what is queued for drain_timeout seconds)

Message text: mstic bodies are latin-1 strings (the kernel's bytes, one char each) and are written as those bytes;
json and oms are Unicode and written as UTF-8.
"""
from __future__ import annotations

import logging
from typing import Callable

from auoms_py.pipeline.model import OutputRecord

log = logging.getLogger("auoms_py.outputs")

# a record formatter: one record -> its text (mstic: latin-1 str, json: Unicode str)
RecordFormatter = Callable[[OutputRecord], str]


class Format:
    """One output format: how records become messages.

    `per_record` formats give one message per record (mstic, json); `oms` gives one message per event."""

    def __init__(self, name: str):
        self.name = name
        self.encoding = "latin-1" if name == "mstic" else "utf-8"
        if name == "mstic":
            from auoms_py.format import mstic
            self.format_record: RecordFormatter | None = mstic.format_record
            self.format_event = None
        elif name == "json":
            from auoms_py.format import json as jsonfmt
            self.format_record = jsonfmt.format_record
            self.format_event = None
        elif name == "oms":
            from auoms_py.format import oms
            self.format_record = None
            self.format_event = oms.format_event
        elif name == "fluent":  # msgpack entries: the forward output formats them itself (auoms_py.format.fluent)
            self.encoding = "msgpack"
            self.format_record = None
            self.format_event = None
        else:
            raise ValueError(f"unknown format {name!r}")

    def messages(self, event: list[OutputRecord]) -> list[bytes]:
        """The event's messages, encoded (no line end)."""
        enc = self.encoding
        if self.format_record is not None:
            fmt = self.format_record
            out = []
            for rec in event:
                text = fmt(rec)
                if text is not None:  # None: a record type this format does not write (mstic: PROCTITLE ...)
                    out.append(text.encode(enc, "backslashreplace"))
            return out
        text = self.format_event(event)
        return [] if text is None else [text.encode(enc, "backslashreplace")]


class Output:
    """Base class. Subclasses implement deliver(messages) and, when they hold resources, open/close/reopen."""

    kind = "output"

    def __init__(self, name: str, fmt: Format | str):
        self.name = name
        self.format = fmt if isinstance(fmt, Format) else Format(fmt)
        self.counters = {"events": 0, "messages": 0, "bytes": 0, "errors": 0, "dropped": 0}

    def describe(self) -> str:
        return f"{self.kind} output {self.name!r} ({self.format.name})"

    def open(self) -> None:
        pass

    def write_event(self, event: list[OutputRecord]) -> None:
        self.counters["events"] += 1
        self.write_messages(self.format.messages(event))

    def write_messages(self, messages: list[bytes]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass

    def status(self) -> dict:
        """Counters and state for metrics (a copy)."""
        return dict(self.counters)

    @property
    def input_paused(self) -> bool:
        """True while the agent must stop reading its input (a full spool with `when_full: block`)."""
        return False

    def problem(self) -> str | None:
        """Why this output is not delivering, or None (the agent's health: AUOMS_STATUS, `ctl status`)."""
        return None


def build_outputs(configs, data_dir: str | None = None) -> list[Output]:
    """Outputs for a validated list of OutputConfig (not opened yet). The delivering ones (syslog, forward, oms,
    journald) get their spool under data_dir/spool/<name>/ (docs/delivery.md)."""
    from auoms_py.outputs.delivery import make_queue
    from auoms_py.outputs.file import FileOutput
    from auoms_py.outputs.stdout import StdoutOutput
    from auoms_py.outputs.syslog import SyslogOutput

    outputs: list[Output] = []
    for cfg in configs:
        if cfg.type == "syslog":
            outputs.append(SyslogOutput(cfg.name, cfg.format, cfg.syslog,
                                        queue=make_queue(cfg, data_dir, cfg.syslog.queue_size)))
        elif cfg.type == "forward":
            from auoms_py.outputs.forward import ForwardOutput
            outputs.append(ForwardOutput(cfg.name, cfg.format, cfg.forward,
                                         queue=make_queue(cfg, data_dir, cfg.forward.queue_size)))
        elif cfg.type == "oms":
            from auoms_py.outputs.oms_socket import OmsOutput
            outputs.append(OmsOutput(cfg.name, cfg.format, cfg.oms, queue=make_queue(cfg, data_dir, cfg.oms.queue_size)))
        elif cfg.type == "journald":
            from auoms_py.outputs.journald import JournaldOutput
            outputs.append(JournaldOutput(cfg.name, cfg.format, cfg.journald,
                                          queue=make_queue(cfg, data_dir, cfg.journald.queue_size)))
        elif cfg.type == "file":
            outputs.append(FileOutput(cfg.name, cfg.format, cfg.file.path, mode=cfg.file.mode))
        elif cfg.type == "stdout":
            outputs.append(StdoutOutput(cfg.name, cfg.format))
        else:  # config validation rejects it first
            raise ValueError(f"unknown output type {cfg.type!r}")
    return outputs
