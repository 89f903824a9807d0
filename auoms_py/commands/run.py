"""`auoms-py run`: run the agent (docs/config.md, docs/collection.md).

    auoms-py run [-c /etc/auoms-py/auoms.yaml] [--foreground] [--input TYPE[:PATH]] [--check]

Without --foreground the agent detaches into the background once it has started (the command waits for the
start, so a configuration or kernel problem is still printed here and gives a non-zero exit status). The plugin
input always stays in the foreground (auditd owns the process). --input replaces the configured input
(`--input plugin` is what auditd's plugin configuration uses: its `args` line takes two words at most).
"""
from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys

from auoms_py.service.config import DEFAULT_CONFIG, INPUT_TYPES, ConfigError, load

log = logging.getLogger("auoms_py")


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run the agent: collect audit events and forward them",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"configuration file (default {DEFAULT_CONFIG})")
    p.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground, log to stderr")
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
    foreground = args.foreground or config.input.type == "plugin"
    agent = Agent(config, config_path=args.config, input_override=args.input)
    if foreground:
        setup_logging(config.log_level, config.log_file, foreground=True)
        return agent.run()
    return _run_detached(agent, config)


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


def _run_detached(agent, config) -> int:
    """Classic double fork; the first process waits until the daemon reports its start (or why it failed)."""
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
    # first child: new session, then the daemon itself
    os.close(read_fd)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    os.umask(0o027)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    setup_logging(config.log_level, config.log_file, foreground=False)
    pid_file = config.pid_file or os.path.join(config.data_dir, "auoms-py.pid")

    def started(error: str | None) -> None:
        if error is None:
            try:
                with open(pid_file, "w", encoding="ascii") as f:
                    f.write(f"{os.getpid()}\n")
            except OSError as exc:
                logging.getLogger("auoms_py").warning("pid file %s not written: %s", pid_file, exc)
        os.write(write_fd, b"ok" if error is None else error.encode("utf-8", "replace"))
        os.close(write_fd)

    code = 1
    try:
        code = agent.run(on_started=started)
    finally:
        try:
            if os.path.exists(pid_file):
                with open(pid_file, encoding="ascii") as f:
                    if f.read().strip() == str(os.getpid()):
                        os.unlink(pid_file)
        except OSError:
            pass
        os._exit(code)
