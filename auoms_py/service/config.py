"""The agent's YAML configuration: schema, defaults and validation (docs/config.md documents every key).

`load(path)` returns a `Config` or raises `ConfigError` listing every problem found, each naming its key
(`outputs[1].address: ...`). Nothing is opened or started here: the agent validates the whole file first, so a
broken file never leaves it half-configured, and a reload that fails keeps the last good configuration running.

Relative paths in the file (rules_dir, filters, data_dir, output and input paths ...) are resolved against the
directory of the configuration file, so a checkout's `conf/auoms.yaml` can name `../rules`.
"""
from __future__ import annotations

import dataclasses
import os
import re
import socket
from pathlib import Path
from typing import Any

import yaml

from auoms_py.outputs.net import Address, TlsOptions, parse_address
from auoms_py.spool import SpoolOptions

INPUT_TYPES = ("netlink", "multicast", "plugin", "file")
OUTPUT_TYPES = ("syslog", "file", "stdout", "forward", "oms", "journald")
FORMATS = ("mstic", "json", "oms", "fluent")
# formats each output type can write (the first is the default)
OUTPUT_FORMATS = {"syslog": ("mstic", "json", "oms"), "file": ("mstic", "json", "oms"), "stdout": ("mstic", "json", "oms"),
                  "forward": ("fluent", "json"), "oms": ("oms",), "journald": ("mstic", "json")}
DELIVERING_TYPES = ("syslog", "forward", "oms", "journald")  # outputs that deliver through the spool
LOG_LEVELS = ("debug", "info", "warning", "error")

DEFAULT_DATA_DIR = "/var/lib/auoms-py"
DEFAULT_CONFIG = "/etc/auoms-py/auoms.yaml"

# syslog(3) facility and severity numbers (RFC 5424 table 1 and 2)
FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8,
    "cron": 9, "authpriv": 10, "ftp": 11, "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20,
    "local5": 21, "local6": 22, "local7": 23,
}
SEVERITIES = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7}


class ConfigError(Exception):
    """The configuration cannot be used. `problems` lists each as `key: what is wrong`."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + ("\n  ".join([""] + problems) if len(problems) > 1 else problems[0]))


@dataclasses.dataclass
class InputConfig:
    type: str
    path: str | None = None  # file
    once: bool = False  # file: read to the end, deliver, exit
    poll_interval: float = 0.25  # file: seconds between checks for new data / rotation
    backlog_limit: int = 8192  # netlink: kernel backlog limit while the agent runs (restored on exit)
    backlog_wait_time: int | None = None  # netlink: set this too (jiffies); None = leave as found
    enable: bool = True  # netlink: switch auditing on while the agent runs (restored on exit)
    receive_buffer: int = 64 * 1024 * 1024  # netlink, multicast: socket receive buffer (bytes)
    status_interval: float = 5.0  # netlink, multicast: seconds between reads of the kernel's lost counter


@dataclasses.dataclass
class SyslogOptions:
    socket: str | None = "/dev/log"  # unix datagram socket path (None when address is used)
    address: str | None = None  # udp://HOST:PORT or tcp://HOST:PORT
    transport: str = "unix"  # unix | udp | tcp (derived)
    host: str | None = None
    port: int | None = None
    protocol: str = "rfc3164"  # rfc3164 (glibc syslog(3) framing) | rfc5424
    facility: str = "user"
    severity: str = "info"
    tag: str = "auoms"
    hostname: str = ""  # written in the header (default: this machine's host name)
    send_hostname: str = "auto"  # rfc3164: auto (not on a unix socket, as glibc; yes on udp/tcp) | yes | no
    max_size: int = 65536  # longest message sent (header included); longer ones are cut inside cmdline
    framing: str = "octet-counting"  # tcp: octet-counting (RFC 6587 3.4.1) | newline
    queue_size: int = 100_000  # messages held in memory while the receiver is away; beyond: oldest dropped
    retry_interval: float = 1.0  # first reconnect delay; doubles up to retry_max
    retry_max: float = 30.0
    send_timeout: float = 5.0  # seconds a connect/send may block the delivery thread
    drain_timeout: float = 5.0  # at exit: seconds to keep trying to deliver what is queued
    tls: TlsOptions | None = None  # tcp: TLS with these certificates (docs/delivery.md)


@dataclasses.dataclass
class FileOptions:
    path: str = ""
    mode: int = 0o640  # permissions of a file the output creates


@dataclasses.dataclass
class OutputConfig:
    name: str
    type: str
    format: str
    syslog: SyslogOptions | None = None
    file: FileOptions | None = None
    forward: ForwardOptions | None = None
    oms: OmsOptions | None = None
    journald: JournaldOptions | None = None
    spool: SpoolOptions | None = None  # delivering outputs: the durable spool (None: in memory, `spool: false`)


@dataclasses.dataclass
class PipelineConfig:
    flush_timeout: float = 0.5  # seconds an event may stay open without its EOE record
    max_open_events: int = 256
    passwd: str = "/etc/passwd"
    group: str = "/etc/group"


@dataclasses.dataclass
class Config:
    source: str  # the file read ("<string>" when loaded from text)
    input: InputConfig
    outputs: list[OutputConfig]
    rules_dir: str | None = None
    rules_owner_key: str = "auoms"  # key that marks the rules the agent owns (keeps in sync, may remove)
    remove_rules_on_exit: bool = False
    filters: str | None = None
    data_dir: str = DEFAULT_DATA_DIR
    log_level: str = "info"
    log_file: str | None = None  # None: stderr in the foreground, syslog (daemon facility) in the background
    pid_file: str | None = None
    metrics_interval: float = 60.0  # seconds between metric lines in the log and AUOMS_METRIC events (0 = never)
    status_interval: float = 3600.0  # AUOMS_STATUS at least this often (also at start, on change, at stop; 0 = never)
    self_events: bool = True  # AUOMS_METRIC / AUOMS_STATUS events on the outputs (false: log and ctl status only)
    control_socket: str | None = None  # `ctl status` socket; None: DATA_DIR/control.sock; "" (false): none
    stop_timeout: float = 20.0  # SIGTERM: seconds the whole stop may take (kernel restored first, outputs drained)
    memory_limit: int | None = None  # bytes: RLIMIT_DATA of the agent (hosts without systemd's MemoryMax)
    priority_boost: int = 4  # run at nice -N at most, like auditd's priority_boost (0: leave the nice value alone)
    pipeline: PipelineConfig = dataclasses.field(default_factory=PipelineConfig)
    spool: SpoolOptions = dataclasses.field(default_factory=SpoolOptions)  # defaults for every output's spool


class _Section:
    """Reads one mapping of the file, recording each problem with the key's full name."""

    def __init__(self, data: Any, where: str, errors: list[str], base_dir: Path):
        self.where = where
        self.errors = errors
        self.base_dir = base_dir
        self.seen: set[str] = set()
        if data is None:
            data = {}
        if not isinstance(data, dict):
            errors.append(f"{where or 'the file'}: must be a mapping of keys, got {_kind(data)}")
            data = {}
        self.data = data

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def error(self, name: str, problem: str) -> None:
        self.errors.append(f"{self.key(name)}: {problem}")

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def raw(self, name: str) -> Any:
        self.seen.add(name)
        return self.data.get(name)

    def string(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.raw(name)
        if value is None:
            if required:
                self.error(name, "required")
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.error(name, f"must be a string, got {_kind(value)}")
            return default
        value = str(value)
        if required and not value:
            self.error(name, "must not be empty")
        return value

    def choice(self, name: str, choices: tuple[str, ...] | dict, default: str | None = None, *,
               required: bool = False) -> str | None:
        value = self.string(name, None, required=required)
        if value is None:
            return default
        if value not in choices:
            self.error(name, f"must be one of {', '.join(choices)}, got {value!r}")
            return default
        return value

    def integer(self, name: str, default: int | None, *, minimum: int | None = None,
                maximum: int | None = None) -> int | None:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, str):
            value = _parse_size(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(name, f"must be an integer, got {_kind(value)} {self.data.get(name)!r}")
            return default
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            self.error(name, f"must be {_range(minimum, maximum)}, got {value}")
            return default
        return value

    def number(self, name: str, default: float, *, minimum: float | None = None,
               maximum: float | None = None) -> float:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error(name, f"must be a number (seconds), got {_kind(value)} {value!r}")
            return default
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            self.error(name, f"must be {_range(minimum, maximum)}, got {value}")
            return default
        return float(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(name, f"must be true or false, got {value!r}")
            return default
        return value

    def path(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.string(name, None, required=required)
        if value is None or value == "":
            return default
        return str(resolve_path(value, self.base_dir))

    def finish(self) -> None:
        for name in self.data:
            if name not in self.seen:
                known = ", ".join(sorted(self.seen)) or "none"
                self.errors.append(f"{self.key(str(name))}: unknown key (known here: {known})")


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "nothing"
    return type(value).__name__


def _range(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f"between {minimum} and {maximum}"
    if minimum is not None:
        return f">= {minimum}"
    return f"<= {maximum}"


_SIZE = re.compile(r"^\s*(\d+)\s*([kKmMgG])?i?[bB]?\s*$")


def _parse_size(text: str):
    """'64k', '64KiB', '32M' -> bytes; anything else is returned unchanged (and then reported)."""
    match = _SIZE.match(text)
    if not match:
        return text
    factor = {None: 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[match.group(2) and match.group(2).lower()]
    return int(match.group(1)) * factor


def resolve_path(value: str, base_dir: Path) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base_dir / path).resolve()


def load(path: str | os.PathLike) -> Config:
    """Read and validate a configuration file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the configuration: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    return loads(text, source=str(path), base_dir=path.resolve().parent)


def loads(text: str, *, source: str = "<string>", base_dir: str | os.PathLike | None = None) -> Config:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"not valid YAML: {where}{problem}"]) from None
    return from_dict(data, source=source, base_dir=Path(base_dir) if base_dir else Path.cwd())


def from_dict(data: Any, *, source: str = "<dict>", base_dir: Path | None = None) -> Config:
    errors: list[str] = []
    base_dir = base_dir or Path.cwd()
    top = _Section(data, "", errors, base_dir)

    inp = _input(top, errors, base_dir)
    spool_defaults = _spool_options(top.raw("spool"), "spool", SpoolOptions(), errors, base_dir)
    outputs = _outputs(top, errors, base_dir, spool_defaults)
    pipeline = _pipeline(top, errors, base_dir)
    config = Config(
        source=source,
        input=inp,
        outputs=outputs,
        rules_dir=top.path("rules_dir"),
        rules_owner_key=top.string("rules_owner_key", "auoms"),
        remove_rules_on_exit=top.boolean("remove_rules_on_exit", False),
        filters=top.path("filters"),
        data_dir=top.path("data_dir", DEFAULT_DATA_DIR),
        log_level=top.choice("log_level", LOG_LEVELS, "info"),
        log_file=top.path("log_file"),
        pid_file=top.path("pid_file"),
        metrics_interval=top.number("metrics_interval", 60.0, minimum=0),
        status_interval=top.number("status_interval", 3600.0, minimum=0),
        self_events=top.boolean("self_events", True),
        control_socket=_control_socket(top),
        stop_timeout=top.number("stop_timeout", 20.0, minimum=1, maximum=3600),
        memory_limit=top.integer("memory_limit", None, minimum=64 * 1024 * 1024),
        priority_boost=top.integer("priority_boost", 4, minimum=0, maximum=20),
        pipeline=pipeline,
        spool=spool_defaults,
    )
    top.finish()
    if config.control_socket is None:
        config.control_socket = os.path.join(config.data_dir, "control.sock")
    if config.rules_dir and os.path.exists(config.rules_dir) and not os.path.isdir(config.rules_dir):
        errors.append(f"rules_dir: {config.rules_dir} is not a directory")
    if not config.rules_owner_key or "\x01" in config.rules_owner_key or len(config.rules_owner_key) > 128:
        errors.append("rules_owner_key: must be 1 to 128 characters (an audit rule key)")
    if config.filters and os.path.isdir(config.filters):
        errors.append(f"filters: {config.filters} is a directory; name the filter file")
    if errors:
        raise ConfigError(source, errors)
    return config


def _control_socket(top: _Section) -> str | None:
    """`control_socket: PATH`, or false for none (None here: the default under data_dir, filled in later)."""
    if top.data.get("control_socket") is False:
        top.raw("control_socket")
        return ""
    return top.path("control_socket")


def _input(top: _Section, errors: list[str], base_dir: Path) -> InputConfig:
    raw = top.raw("input")
    if raw is None:
        errors.append("input: required (netlink, multicast, plugin or {type: file, path: ...})")
        return InputConfig(type="netlink")
    if isinstance(raw, str):  # `input: netlink` is accepted as short for `input: {type: netlink}`
        raw = {"type": raw}
    sec = _Section(raw, "input", errors, base_dir)
    kind = sec.choice("type", INPUT_TYPES, required=True) or "netlink"
    inp = InputConfig(type=kind)
    if kind == "file":
        inp.path = sec.path("path", required=True)
        inp.once = sec.boolean("once", False)
        inp.poll_interval = sec.number("poll_interval", 0.25, minimum=0.01, maximum=60)
    if kind == "netlink":
        inp.backlog_limit = sec.integer("backlog_limit", 8192, minimum=1, maximum=2 ** 31 - 1)
        inp.backlog_wait_time = sec.integer("backlog_wait_time", None, minimum=0, maximum=600000)
        inp.enable = sec.boolean("enable", True)
    if kind in ("netlink", "multicast"):
        inp.receive_buffer = sec.integer("receive_buffer", 64 * 1024 * 1024, minimum=65536, maximum=2 ** 31 - 1)
        inp.status_interval = sec.number("status_interval", 5.0, minimum=0.1, maximum=3600)
    sec.finish()
    return inp


def _outputs(top: _Section, errors: list[str], base_dir: Path, spool_defaults: SpoolOptions) -> list[OutputConfig]:
    raw = top.raw("outputs")
    if raw is None:
        errors.append("outputs: required (a list with at least one output)")
        return []
    if not isinstance(raw, list) or not raw:
        errors.append(f"outputs: must be a list with at least one output, got {_kind(raw)}")
        return []
    outputs = []
    names: dict[str, int] = {}
    for index, item in enumerate(raw):
        sec = _Section(item, f"outputs[{index}]", errors, base_dir)
        kind = sec.choice("type", OUTPUT_TYPES, required=True)
        name = sec.string("name", None) or f"{kind or 'output'}{index}"
        if name in names:
            sec.error("name", f"{name!r} is already the name of outputs[{names[name]}]")
        names[name] = index
        allowed = OUTPUT_FORMATS.get(kind or "", FORMATS)
        fmt = sec.choice("format", FORMATS, allowed[0])
        if fmt not in allowed:
            article = "an" if kind and kind[0] in "aeiou" else "a"
            sec.error("format", f"{article} {kind} output writes {' or '.join(allowed)}, not {fmt}")
        out = OutputConfig(name=name, type=kind or "stdout", format=fmt)
        if kind == "syslog":
            out.syslog = _syslog_options(sec)
        elif kind == "file":
            out.file = FileOptions(path=sec.path("path", required=True) or "",
                                   mode=_file_mode(sec))
        elif kind == "forward":
            out.forward = _forward_options(sec)
        elif kind == "oms":
            out.oms = _oms_options(sec)
        elif kind == "journald":
            out.journald = _journald_options(sec)
        if kind in DELIVERING_TYPES:
            out.spool = _spool_options(sec.raw("spool"), sec.key("spool"), spool_defaults, errors, base_dir)
        elif sec.has("spool"):
            sec.raw("spool")
            sec.error("spool", f"applies to {', '.join(DELIVERING_TYPES)} outputs only")
        sec.finish()
        outputs.append(out)
    return outputs


def _file_mode(sec: _Section) -> int:
    value = sec.raw("mode")
    if value is None:
        return 0o640
    if isinstance(value, str) and re.fullmatch(r"0?[0-7]{3}", value):
        return int(value, 8)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0o777:
        return value  # YAML 1.1 reads 0640 as octal already
    sec.error("mode", f"must be octal permissions such as '0640', got {value!r}")
    return 0o640


def _syslog_options(sec: _Section) -> SyslogOptions:
    opts = SyslogOptions()
    address = sec.string("address")
    sock = sec.path("socket")
    if address is not None and sock is not None:
        sec.error("address", "give either socket (unix) or address (udp://, tcp://), not both")
    if address is not None:
        parsed = _parse_address(address)
        if isinstance(parsed, str):
            sec.error("address", parsed)
        else:
            opts.transport, opts.host, opts.port = parsed
            opts.address = address
            opts.socket = None
    else:
        opts.socket = sock or "/dev/log"
    opts.protocol = sec.choice("protocol", ("rfc3164", "rfc5424"), "rfc3164")
    opts.facility = sec.choice("facility", FACILITIES, "user")
    opts.severity = sec.choice("severity", SEVERITIES, "info")
    opts.tag = sec.string("tag", "auoms")
    if opts.tag is not None and not re.fullmatch(r"[!-9;-~]{1,48}", opts.tag):
        sec.error("tag", f"must be 1 to 48 printable characters without spaces or ':', got {opts.tag!r}")
    opts.hostname = sec.string("hostname", "") or socket.gethostname()
    if " " in opts.hostname:
        sec.error("hostname", "must not contain spaces")
    opts.send_hostname = sec.choice("send_hostname", ("auto", "yes", "no"), "auto")
    max_udp = 65507
    opts.max_size = sec.integer("max_size", 65536, minimum=1024, maximum=16 * 1024 * 1024)
    if opts.transport == "udp" and opts.max_size > max_udp:
        if sec.has("max_size"):
            sec.error("max_size", f"a UDP datagram holds at most {max_udp} bytes, got {opts.max_size}")
        opts.max_size = max_udp
    opts.framing = sec.choice("framing", ("octet-counting", "newline"), "octet-counting")
    if sec.has("framing") and opts.transport != "tcp":
        sec.error("framing", "applies to tcp:// addresses only")
    opts.queue_size = sec.integer("queue_size", 100_000, minimum=1)
    opts.retry_interval = sec.number("retry_interval", 1.0, minimum=0.01, maximum=3600)
    opts.retry_max = max(opts.retry_interval, sec.number("retry_max", 30.0, minimum=0.01, maximum=3600))
    opts.send_timeout = sec.number("send_timeout", 5.0, minimum=0.1, maximum=600)
    opts.drain_timeout = sec.number("drain_timeout", 5.0, minimum=0, maximum=3600)
    opts.tls = _tls_options(sec)
    if opts.tls is not None and opts.transport != "tcp":
        sec.error("tls", "applies to tcp:// addresses only")
    return opts


def _parse_address(text: str):
    """'udp://host:514' -> ('udp', 'host', 514); a message string when it is not usable."""
    parsed = parse_address(text, ("udp", "tcp"))
    if isinstance(parsed, str):
        return parsed
    return parsed.scheme, parsed.host, parsed.port


def _pipeline(top: _Section, errors: list[str], base_dir: Path) -> PipelineConfig:
    sec = _Section(top.raw("pipeline"), "pipeline", errors, base_dir)
    cfg = PipelineConfig(
        flush_timeout=sec.number("flush_timeout", 0.5, minimum=0.01, maximum=60),
        max_open_events=sec.integer("max_open_events", 256, minimum=1, maximum=1_000_000),
        passwd=sec.path("passwd", "/etc/passwd"),
        group=sec.path("group", "/etc/group"),
    )
    sec.finish()
    return cfg


# ---- delivery: spool, tls, forward, oms, journald (docs/delivery.md) ----------------------------------------------

@dataclasses.dataclass
class DeliveryOptions:
    """What every delivering output (forward, oms, journald) has beside its own keys."""
    queue_size: int = 100_000  # messages held in memory with `spool: false`
    retry_interval: float = 1.0  # first reconnect delay; doubles up to retry_max
    retry_max: float = 30.0
    send_timeout: float = 5.0  # seconds a connect/send may block the delivery thread
    drain_timeout: float = 5.0  # at exit: seconds to keep trying to deliver what is queued


@dataclasses.dataclass
class ForwardOptions(DeliveryOptions):
    address: Address | None = None  # unix:///PATH or tcp://HOST:PORT
    tag: str = "LINUX_AUDITD_BLOB"
    hostname: str = ""  # the records' Computer field (default: this machine's host name)
    require_ack: bool = True  # send a chunk id, wait for the receiver's {"ack": id} before the cursor moves
    ack_timeout: float = 60.0  # a chunk unacknowledged this long: reconnect and send it again
    time_as_integer: bool = True  # entry time as integer seconds (Fluentd 0.12, the OMS agent); false: EventTime
    chunk_size: int = 500  # events per forward message
    tls: TlsOptions | None = None


@dataclasses.dataclass
class OmsOptions(DeliveryOptions):
    address: Address | None = None  # unix:///PATH (AUOMS's output_socket) or tcp://HOST:PORT
    ack: bool = False  # AUOMS's enable_ack_mode: the receiver answers "SEC:MSEC:SERIAL\n" (hex) per event
    ack_timeout: float = 10.0
    ack_queue_size: int = 1000  # events sent and not yet acknowledged, at most
    retry_max: float = 60.0  # AUOMS's longest reconnect delay


@dataclasses.dataclass
class JournaldOptions(DeliveryOptions):
    identifier: str = "auoms"  # SYSLOG_IDENTIFIER


def _spool_options(raw: Any, where: str, defaults: SpoolOptions, errors: list[str],
                   base_dir: Path) -> SpoolOptions | None:
    """`spool:` (top level: the defaults; in an output: overrides, or false for an in-memory queue)."""
    if raw is False:
        if where == "spool":
            errors.append("spool: the top-level section sets defaults; write `spool: false` in an output instead")
            return defaults
        return None
    if raw is True:
        raw = None
    sec = _Section(raw, where, errors, base_dir)
    opts = dataclasses.replace(defaults)
    opts.max_bytes = sec.integer("max_size", defaults.max_bytes, minimum=64 * 1024)
    opts.segment_bytes = sec.integer("segment_size", defaults.segment_bytes, minimum=16 * 1024)
    if opts.segment_bytes and opts.segment_bytes > opts.max_bytes // 2:
        sec.error("segment_size", f"must be at most half of max_size ({opts.max_bytes // 2}), got {opts.segment_bytes}")
    opts.fsync = sec.choice("fsync", ("always", "interval", "never"), defaults.fsync)
    opts.fsync_interval = sec.number("fsync_interval", defaults.fsync_interval, minimum=0.01, maximum=3600)
    opts.when_full = sec.choice("when_full", ("drop_oldest", "block"), defaults.when_full)
    opts.cursor_interval = sec.number("cursor_interval", defaults.cursor_interval, minimum=0.01, maximum=60)
    sec.finish()
    return opts


def _tls_options(sec: _Section) -> TlsOptions | None:
    raw = sec.raw("tls")
    if raw is None or raw is False:
        return None
    tls_sec = _Section({} if raw is True else raw, sec.key("tls"), sec.errors, sec.base_dir)
    opts = TlsOptions(ca=tls_sec.path("ca"), cert=tls_sec.path("cert"), key=tls_sec.path("key"),
                      server_name=tls_sec.string("server_name"))
    if opts.key and not opts.cert:
        tls_sec.error("cert", "a client key needs its certificate")
    for name in ("ca", "cert", "key"):
        value = getattr(opts, name)
        if value and not os.path.isfile(value):
            tls_sec.error(name, f"{value} is not a file")
    tls_sec.finish()
    return opts


def _delivery_keys(sec: _Section, opts, retry_max: float = 30.0) -> None:
    opts.queue_size = sec.integer("queue_size", 100_000, minimum=1)
    opts.retry_interval = sec.number("retry_interval", 1.0, minimum=0.01, maximum=3600)
    opts.retry_max = max(opts.retry_interval, sec.number("retry_max", retry_max, minimum=0.01, maximum=3600))
    opts.send_timeout = sec.number("send_timeout", 5.0, minimum=0.1, maximum=600)
    opts.drain_timeout = sec.number("drain_timeout", 5.0, minimum=0, maximum=3600)


def _stream_address(sec: _Section) -> Address | None:
    text = sec.string("address", required=True)
    if text is None:
        return None
    parsed = parse_address(text, ("unix", "tcp"))
    if isinstance(parsed, str):
        sec.error("address", parsed)
        return None
    return parsed


def _forward_options(sec: _Section) -> ForwardOptions:
    opts = ForwardOptions(address=_stream_address(sec))
    opts.tag = sec.string("tag", "LINUX_AUDITD_BLOB")
    if not opts.tag or not re.fullmatch(r"[!-~]{1,256}", opts.tag):
        sec.error("tag", f"must be 1 to 256 printable characters without spaces, got {opts.tag!r}")
    opts.hostname = sec.string("hostname", "") or socket.gethostname()
    opts.require_ack = sec.boolean("require_ack", True)
    opts.ack_timeout = sec.number("ack_timeout", 60.0, minimum=0.1, maximum=3600)
    opts.time_as_integer = sec.boolean("time_as_integer", True)
    opts.chunk_size = sec.integer("chunk_size", 500, minimum=1, maximum=100_000)
    opts.tls = _tls_options(sec)
    if opts.tls is not None and opts.address is not None and opts.address.scheme != "tcp":
        sec.error("tls", "applies to tcp:// addresses only")
    _delivery_keys(sec, opts)
    return opts


def _oms_options(sec: _Section) -> OmsOptions:
    opts = OmsOptions(address=_stream_address(sec))
    opts.ack = sec.boolean("ack", False)
    opts.ack_timeout = sec.number("ack_timeout", 10.0, minimum=0.1, maximum=3600)
    opts.ack_queue_size = sec.integer("ack_queue_size", 1000, minimum=1, maximum=1_000_000)
    _delivery_keys(sec, opts, retry_max=60.0)
    return opts


def _journald_options(sec: _Section) -> JournaldOptions:
    opts = JournaldOptions()
    opts.identifier = sec.string("identifier", "auoms")
    if not opts.identifier or not re.fullmatch(r"[!-~]{1,64}", opts.identifier):
        sec.error("identifier", f"must be 1 to 64 printable characters without spaces, got {opts.identifier!r}")
    _delivery_keys(sec, opts)
    return opts
