"""Running the real agent (`python -m auoms_py run`) from a test, and the probes that make the kernel log events.

The agent writes JSON and mstic lines to files (never a pipe a test could forget to read); its log goes to a file.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from auoms_py.kernel.netlink import AuditNetlink
from tests.kql import run_parser
from tests.paths import REFERENCE, REPO

EXECVE_PARSER = REFERENCE / "sentinel" / "Parsers__SyslogAUOMS__SyslogExecve.txt"


class Agent:
    """One agent process with a configuration of ours: input as given, outputs json + mstic files."""

    def __init__(self, directory: Path, input_section: dict, *, extra: dict | None = None, name: str = "agent",
                 log_to_file: bool = False):
        self.dir = Path(directory) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.json_path = self.dir / "events.jsonl"
        self.mstic_path = self.dir / "events.mstic"
        self.log_path = self.dir / "agent.log"
        self.config_path = self.dir / "auoms.yaml"
        config = {
            "input": input_section,
            "data_dir": str(self.dir / "data"),
            "log_level": "debug",
            "pipeline": {"flush_timeout": 0.3},
            "self_events": False,  # tests that want AUOMS_STATUS / AUOMS_METRIC events say so (exact outputs)
            "outputs": [{"name": "json", "type": "file", "format": "json", "path": str(self.json_path)},
                        {"name": "mstic", "type": "file", "format": "mstic", "path": str(self.mstic_path)}],
        }
        if log_to_file:  # when someone else starts the agent (auditd): its log goes to our file
            config["log_file"] = str(self.log_path)
        config.update(extra or {})
        self.config_path.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}  # added to the agent's environment (NOTIFY_SOCKET, WATCHDOG_USEC ...)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "auoms_py", "run", "-c", str(self.config_path), "--foreground"]

    def start(self, wait: bool = True) -> "Agent":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=REPO, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        if wait:
            self.wait_started()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_started(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "started: " in self.log():
                return
            if self.proc.poll() is not None:
                raise AgentExited(self.proc.returncode, self.log())
            time.sleep(0.05)
        raise TimeoutError(f"agent did not start:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            raise AssertionError(f"agent did not stop on {signal.Signals(sig).name}:\n{self.log()}")
        finally:
            self._log.close()
        return code

    def events(self) -> list[dict]:
        if not self.json_path.exists():
            return []
        data = self.json_path.read_bytes()
        return [json.loads(line) for line in data[:data.rfind(b"\n") + 1].splitlines() if line]

    def mstic_lines(self) -> list[str]:
        if not self.mstic_path.exists():
            return []
        return self.mstic_path.read_bytes().decode("latin-1").splitlines()

    def wait_for(self, predicate, timeout: float = 30.0) -> list[dict]:
        """Events (JSON) once predicate(events) holds; the last events seen when the time is up."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if predicate(events) or time.monotonic() > deadline:
                return events
            if self.proc is not None and self.proc.poll() is not None:
                return events
            time.sleep(0.1)


def wait_until(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class AgentExited(Exception):
    def __init__(self, code: int, log: str):
        self.code = code
        self.log = log
        super().__init__(f"agent exited with {code}:\n{log}")


def start_as_audit_daemon(agent: Agent, timeout: float = 90.0) -> Agent:
    """Start a netlink-mode agent; while another test's process holds the audit pid, wait and try again."""
    deadline = time.monotonic() + timeout
    while True:
        wait_audit_pid_free(max(1.0, deadline - time.monotonic()))
        try:
            return agent.start()
        except AgentExited as exc:
            if "audit pid is held by" not in exc.log or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def audit_status():
    with AuditNetlink(rcvbuf=0) as nl:
        return nl.get_status()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_audit_pid_free(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pid = audit_status().pid
        if pid == 0 or not pid_alive(pid):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"audit pid still held by {pid}")
        time.sleep(0.2)


# ---- probes -------------------------------------------------------------------------------------------------------

def tricky_argvs(tag: str) -> dict[str, list[bytes]]:
    """One exec per case: /bin/echo MARKER ARGS... (the marker names the case)."""
    cases = {
        "spaces": [b"two words", b" lead", b"trail ", b"a  b"],
        "quotes": [b"it's", b'say "hi"', b"both ' and \"", b"`uname`"],
        "dollar": [b"$HOME", b"${PATH}", b"$(echo injected)", b"cost: $5"],
        "bang": [b"bang!", b"!!", b"it's!"],
        "newline": [b"line1\nline2", b"\n"],
        "tab": [b"col1\tcol2", b"\t"],
        "utf8": ["h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c".encode()],
        "invalid_utf8": [b"\xff\xfe bad", b"caf\xe9", b"\xc3"],
        "empty": [b"", b"after-empty", b""],
        "long_20000": [b"L" * 19990 + b"0123456789"],
        "args_3000": [b"arg%d" % i for i in range(3000)],
    }
    return {name: [b"/bin/echo", f"{tag}-{name}".encode(), *args] for name, args in cases.items()}


def run_execs(argvs: dict[str, list[bytes]]) -> None:
    for argv in argvs.values():
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)


def run_connect() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", 80))
        except OSError:
            pass  # refused or not: the connect() call is what is audited


def run_kill9() -> int:
    child = subprocess.Popen(["/bin/sleep", "60"])
    time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    return child.pid


def probe_rules(pid: int) -> list[str]:
    """Rules for the probes of process `pid` (its execs' children and its own connect/kill), narrow enough that
    other processes on the machine do not flood the test."""
    return [f"-a always,exit -F arch=b64 -S execve -F ppid={pid}",
            f"-a always,exit -F arch=b64 -S connect -S kill -F pid={pid}"]


def shell_words(cmdline: str) -> list[bytes]:
    """bash's own reading of a cmdline (the oracle for the escaping): the words as bytes."""
    proc = subprocess.run(["bash", "-c", 'eval "set -- $1"; for a; do printf "%s\\0" "$a"; done', "_", cmdline],
                          capture_output=True, check=True)
    return proc.stdout.split(b"\0")[:-1]


def check_probe_events(agent: Agent, tag: str, argvs: dict[str, list[bytes]], kill_pid: int) -> None:
    """The checks every collection mode must pass (assertion messages say which case failed)."""
    import pwd

    json_events = agent.events()
    mstic = agent.mstic_lines()
    me = pwd.getpwuid(os.getuid()).pw_name
    with open("/proc/self/loginuid") as f:
        auid = int(f.read())
    audit_user = "unset" if auid == 4294967295 else pwd.getpwuid(auid).pw_name
    for name, argv in argvs.items():
        marker = f"{tag}-{name}"
        found = [e for e in json_events if e.get("type") == "AUOMS_EXECVE" and e.get("argv", [None, None])[1:2] == [marker]]
        assert len(found) == 1, f"{name}: {len(found)} AUOMS_EXECVE events (want exactly 1)"
        event = found[0]
        assert event["argv"] == [a.decode("utf-8", "backslashreplace") for a in argv], name
        assert event["argc"] == len(argv), name
        assert (event["user"], event["audit_user"], event["exe"]) == (me, audit_user, "/usr/bin/echo"), name
        lines = [line for line in mstic if line.startswith("type=AUOMS_EXECVE ")
                 and f' pid={event["pid"]} ' in line and f':{event["serial"]}): ' in line]
        assert len(lines) == 1, f"{name}: {len(lines)} mstic lines"
        columns = run_parser(EXECVE_PARSER, lines[0])
        assert columns is not None, f"{name}: Sentinel's execve parser cannot read the line"
        assert (columns["user"], columns["audit_user"], columns["containerid"]) == (me, audit_user, ""), name
        assert shell_words(columns["cmdline"]) == argv, f"{name}: cmdline does not read back as the argv run"
    connects = [line for line in mstic if line.startswith("type=AUOMS_SYSCALL ") and " syscall=connect " in line
                and "saddr={ fam=inet laddr=127.0.0.1 lport=80 }" in line and f" pid={os.getpid()} " in line]
    assert len(connects) == 1, f"{len(connects)} connect lines"
    kills = [line for line in mstic if line.startswith("type=AUOMS_SYSCALL ") and " syscall=kill " in line
             and f" OBJ_PID_opid={kill_pid} " in line]
    assert len(kills) == 1, f"{len(kills)} kill lines"
    assert ' OBJ_PID_ocomm="sleep"' in kills[0] and " a1=9 " in kills[0]
    assert " OBJ_PID_ouid=" in kills[0] and kills[0].endswith(" containerid=")
