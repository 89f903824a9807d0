"""The real agent process for delivery tests (tests/service/agent_proc.Agent with our outputs): a log file we append
numbered events to as the input (deterministic), the agent's metrics from data_dir/metrics.json, restarts."""
from __future__ import annotations

import json
import time
from pathlib import Path

from tests.paths import AUOMS_REF
from tests.service.agent_proc import Agent, AgentExited, wait_until  # noqa: F401 - wait_until: for the tests here
from tests.spool.feed import event_lines


class AgentRun(Agent):
    def __init__(self, directory: Path, outputs: list[dict], *, extra: dict | None = None,
                 wrapper: list[str] | None = None):
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.input = directory / "audit.log"
        self.input.touch()
        config = {
            "metrics_interval": 0,
            "pipeline": {"flush_timeout": 0.2, "passwd": str(AUOMS_REF / "passwd"), "group": str(AUOMS_REF / "group")},
            "outputs": outputs,
        }
        config.update(extra or {})
        super().__init__(directory.parent, {"type": "file", "path": str(self.input), "poll_interval": 0.05},
                         extra=config, name=directory.name)
        self.data_dir = Path(config.get("data_dir", self.dir / "data"))
        self.wrapper = wrapper or []
        self.written = 0  # events appended to the input so far
        self._log_start = 0

    def command(self) -> list[str]:
        return self.wrapper + super().command()

    def append_events(self, count: int) -> None:
        """Append events written..written+count-1 to the input log (plugin-stream lines, EOE included)."""
        with open(self.input, "a", encoding="latin-1") as f:
            f.write("\n".join(event_lines(self.written, count)) + "\n")
        self.written += count

    def start(self, wait: bool = True) -> "AgentRun":
        self._log_start = len(self.log())
        return super().start(wait)

    def wait_started(self, timeout: float = 30.0) -> None:
        """This start's `started:` line (the log holds the earlier runs' too)."""
        deadline = time.monotonic() + timeout
        while "started: " not in self.log()[self._log_start:]:
            if self.proc.poll() is not None:
                raise AgentExited(self.proc.returncode, self.log())
            if time.monotonic() > deadline:
                raise TimeoutError(f"agent did not start:\n{self.log()}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, *args, **kwargs) -> int:
        code = super().stop(*args, **kwargs)
        self.proc = None
        return code

    def kill(self) -> None:
        import signal

        self.stop(signal.SIGKILL)

    def metrics(self) -> dict:
        path = self.data_dir / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {}
