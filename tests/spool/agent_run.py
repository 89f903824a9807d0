"""The real agent process (`python -m auoms_py run --foreground`) for delivery tests: a configuration of ours,
a log file as the input (deterministic), the log of the agent in a file, its metrics from data_dir/metrics.json."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.paths import REPO
from tests.service.agent_proc import wait_until  # noqa: F401 - the tests of this package use it from here
from tests.spool.feed import event_lines


class AgentRun:
    def __init__(self, directory: Path, outputs: list[dict], *, extra: dict | None = None,
                 wrapper: list[str] | None = None, input_path: Path | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.input = input_path or self.dir / "audit.log"
        self.input.touch()
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "agent.log"
        self.config_path = self.dir / "auoms.yaml"
        self.wrapper = wrapper or []
        config = {
            "input": {"type": "file", "path": str(self.input), "poll_interval": 0.05},
            "data_dir": str(self.data_dir),
            "log_level": "debug",
            "metrics_interval": 0,
            "pipeline": {"flush_timeout": 0.2, "passwd": str(REPO / ".." / "shared" / "reference" / "auoms" / "passwd"),
                         "group": str(REPO / ".." / "shared" / "reference" / "auoms" / "group")},
            "outputs": outputs,
        }
        config.update(extra or {})
        self.config_path.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen | None = None
        self._log = None
        self.written = 0  # events appended to the input so far

    def append_events(self, count: int) -> None:
        """Append events written..written+count-1 to the input log (plugin-stream lines, EOE included)."""
        with open(self.input, "a", encoding="latin-1") as f:
            f.write("\n".join(event_lines(self.written, count)) + "\n")
        self.written += count

    def start(self, wait: bool = True) -> "AgentRun":
        self._log = open(self.log_path, "ab")
        log_start = self.log_path.stat().st_size
        command = [sys.executable, "-m", "auoms_py", "run", "-c", str(self.config_path), "--foreground"]
        self.proc = subprocess.Popen(self.wrapper + command, cwd=REPO, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        if wait:
            deadline = time.monotonic() + 30
            while "started: " not in self.log()[log_start:]:
                if self.proc.poll() is not None:
                    raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"agent did not start:\n{self.log()}")
                time.sleep(0.05)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
            raise AssertionError(f"agent did not stop:\n{self.log()}")
        finally:
            self._log.close()
            self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def metrics(self) -> dict:
        path = self.data_dir / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {}

