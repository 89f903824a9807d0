"""`auoms-py run`: run the agent (docs/config.md, docs/collection.md, docs/service.md).

    auoms-py run [-c /etc/auoms-py/auoms.yaml] [--daemon [--pidfile PATH]] [--input TYPE[:PATH]] [--check]

The agent stays in the foreground (what systemd's Type=notify unit and auditd's plugin launcher want) and logs to
stderr unless `log_file` is set. `--daemon` is for hosts without systemd: it detaches (python-daemon: new session,
cwd /, umask 027, no core dumps), writes and locks a pid file (`--pidfile`, `pid_file:`, default
DATA_DIR/auoms-py.pid; a second agent on the same pid file is refused), logs to `log_file` or syslog, and the
command returns once the agent has started, so a configuration or kernel problem is still printed here with a
non-zero exit status. The plugin input always stays in the foreground (auditd owns the process). --input replaces
the configured input (`--input plugin` is what auditd's plugin configuration uses: its `args` line takes two words
at most). A configuration file that other users can write is refused (docs/service.md, hygiene).
"""
from __future__ import annotations

import argparse
import fcntl
import logging
import logging.handlers
import os
import signal
import sys

from auoms_py.service.config import DEFAULT_CONFIG, INPUT_TYPES, ConfigError, load

log = logging.getLogger("auoms_py")


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run the agent: collect audit events and forward them",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"configuration file (default {DEFAULT_CONFIG})")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-f", "--foreground", action="store_true",
                      help="stay in the foreground (the default; kept for scripts that say so)")
    mode.add_argument("-d", "--daemon", action="store_true",
                      help="detach into the background once started (hosts without systemd)")
    p.add_argument("--pidfile", metavar="PATH", help="with --daemon: the pid file (default: pid_file, or "
                                                     "DATA_DIR/auoms-py.pid)")
    p.add_argument("--input", metavar="TYPE[:PATH]", type=_input_override,
                   help="use this input instead of the configured one: netlink, multicast, plugin, file:PATH")
    p.add_argument("--check", action="store_true", help="check the configuration, print the result and exit")
    p.set_defaults(func=main)


def _input_override(text: str) -> dict:
    kind, _, path = text.partition(":")
    if kind not in INPUT_TYPES or (kind == "file") != bool(path):
        raise argparse.ArgumentTypeError(f"must be one of netlink, multicast, plugin, file:PATH; got {text!r}")
    return {"type": kind, "path": os.path.abspath(path) if path else None}


def main(args) -> int:
    from auoms_py.service.agent import Agent, apply_input_override
    from auoms_py.service.hygiene import untrusted

    refused = untrusted(args.config)
    if refused:
        print(f"auoms-py: configuration refused: {refused}", file=sys.stderr)
        return 2
    try:
        config = load(args.config)
        if args.input:
            apply_input_override(config, args.input)
    except ConfigError as exc:
        print(f"auoms-py: configuration error in {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: OK (input {config.input.type}, outputs "
              f"{', '.join(f'{o.name} ({o.type}, {o.format})' for o in config.outputs)})")
        return 0
    agent = Agent(config, config_path=args.config, input_override=args.input)
    if args.daemon and config.input.type != "plugin":
        pid_file = args.pidfile or config.pid_file or os.path.join(config.data_dir, "auoms-py.pid")
        return _run_daemon(agent, config, os.path.abspath(pid_file))
    setup_logging(config.log_level, config.log_file, foreground=True)
    return agent.run()


def setup_logging(level: str, log_file: str | None, *, foreground: bool) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if log_file:
        os.makedirs(os.path.dirname(log_file) or ".", exist_ok=True)
        handler: logging.Handler = logging.handlers.WatchedFileHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s auoms-py[%(process)d] %(levelname)s %(message)s"))
    elif foreground:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s auoms-py %(levelname)s %(message)s"))
    elif os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler("/dev/log", facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        handler.setFormatter(logging.Formatter("auoms-py[%(process)d]: %(levelname)s %(message)s"))
    else:
        handler = logging.NullHandler()
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))


class PidFileError(Exception):
    pass


class PidFile:
    """A pid file held with an exclusive lock for the daemon's life (python-daemon's `pidfile` context): a second
    agent on the same file is refused, a file left by a killed agent is simply taken over (its lock died with it)."""

    def __init__(self, path: str):
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> "PidFile":
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o750, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise PidFileError(f"{self.path}: another agent (pid {other}) is running with this pid file") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def _run_daemon(agent, config, pid_file: str) -> int:
    """Detach with python-daemon; this process waits until the daemon reports its start (or why it failed)."""
    import daemon

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as reader:
            answer = reader.read().decode("utf-8", "replace")
        os.waitpid(pid, 0)
        if answer.startswith("ok"):
            return 0
        print(f"auoms-py: {answer or 'the agent ended before it started'}", file=sys.stderr)
        return 1
    os.close(read_fd)
    context = daemon.DaemonContext(
        working_directory="/", umask=0o027, detach_process=True, prevent_core=True, files_preserve=[write_fd],
        pidfile=PidFile(pid_file),
        # the agent installs its own SIGTERM/SIGINT/SIGHUP/SIGUSR1 handlers; terminal job control is ignored
        signal_map={signal.SIGTSTP: None, signal.SIGTTIN: None, signal.SIGTTOU: None})
    code = 1
    try:
        try:
            context.open()  # the processes in between exit here; what follows runs in the daemon
        except (PidFileError, OSError, daemon.daemon.DaemonError) as exc:
            os.write(write_fd, str(exc).encode("utf-8", "replace"))
            os._exit(1)
        setup_logging(config.log_level, config.log_file, foreground=False)

        def started(error: str | None) -> None:
            os.write(write_fd, b"ok" if error is None else error.encode("utf-8", "replace"))
            os.close(write_fd)

        code = agent.run(on_started=started)
    finally:
        try:
            context.close()  # releases and removes the pid file
        except Exception:  # noqa: BLE001
            pass
        os._exit(code)
