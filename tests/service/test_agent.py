"""The agent process without the kernel: file and plugin inputs, signals (SIGHUP reload and reopen, SIGTERM,
SIGUSR1), the idle timer, start failures, and running detached."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import yaml

from auoms_py.format import mstic
from auoms_py.pipeline import Pipeline, UserDB
from tests.paths import REFERENCE, REPO, SAMPLES
from tests.pipeline.helpers import split_lines
from tests.service.agent_proc import Agent, AgentExited, wait_until

LOG = REFERENCE / "msticpy" / "auditd_log.txt"


def expected_mstic(data: bytes) -> list[str]:
    pipe = Pipeline(UserDB())
    events = []
    for line in split_lines(data):
        events += pipe.feed_line(line, 0.0)
    events += pipe.flush()
    return [x for event in events for rec in event for x in [mstic.format_record(rec)] if x is not None]


def event_boundary(lines: list[bytes], near: int) -> int:
    """The first index at or after `near` where a new event id starts (so appends never split an event)."""
    def event_id(line: bytes) -> bytes:
        return line.partition(b"msg=audit(")[2].partition(b")")[0]
    while event_id(lines[near]) == event_id(lines[near - 1]):
        near += 1
    return near



def test_file_once_delivers_everything_and_exits(tmp_path):
    agent = Agent(tmp_path, {"type": "file", "path": str(LOG), "once": True})
    agent.start(wait=False)
    assert agent.proc.wait(60) == 0, agent.log()
    assert agent.mstic_lines() == expected_mstic(LOG.read_bytes())
    assert len(agent.events()) >= len(agent.mstic_lines())
    metrics = json.loads((agent.dir / "data" / "metrics.json").read_text())
    assert metrics["input"]["records"] == LOG.read_bytes().count(b"\n")
    assert metrics["outputs"]["json"]["messages"] == len(agent.events())
    assert "file input " in agent.log() and "input ended" in agent.log()


def test_idle_input_still_flushes_events_on_the_timer(tmp_path):
    """auditd's log has no EOE: the last event only comes out through the flush timer, input idle or not."""
    path = tmp_path / "audit.log"
    lines = (SAMPLES / "auditlog-raw-node-execve-ls.log").read_bytes()
    path.write_bytes(lines)
    agent = Agent(tmp_path, {"type": "file", "path": str(path), "poll_interval": 0.05}).start()
    try:
        assert wait_until(lambda: len(agent.mstic_lines()) == len(expected_mstic(lines)), 10), agent.log()
    finally:
        assert agent.stop() == 0


def test_sighup_reopens_outputs_and_reloads_config_keeping_the_last_good_one(tmp_path):
    source = tmp_path / "audit.log"
    data = LOG.read_bytes().splitlines(keepends=True)
    cut1, cut2 = event_boundary(data, 200), event_boundary(data, 400)
    source.write_bytes(b"".join(data[:cut1]))
    agent = Agent(tmp_path, {"type": "file", "path": str(source), "poll_interval": 0.05}).start()
    try:
        assert wait_until(lambda: len(agent.mstic_lines()) > 50)
        # logrotate: move the output away, HUP, new lines land in a new file
        rotated = agent.mstic_path.with_suffix(".mstic.1")
        time.sleep(1.0)
        os.rename(agent.mstic_path, rotated)
        agent.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "reload: configuration" in agent.log())
        with open(source, "ab") as out:
            out.write(b"".join(data[cut1:cut2]))
        assert wait_until(lambda: agent.mstic_path.exists() and len(agent.mstic_lines()) > 20)
        # a broken configuration: reported, the running one kept
        good = agent.config_path.read_text()
        agent.config_path.write_text(good.replace("type: file", "type: fiel", 1))
        agent.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "keeping the running configuration" in agent.log())
        assert "input.type: must be one of netlink, multicast, plugin, file, got 'fiel'" in agent.log()
        # a good one that adds an output: the new output gets what comes next, the others keep going
        config = yaml.safe_load(good)
        extra = tmp_path / "extra.jsonl"
        config["outputs"].append({"name": "extra", "type": "file", "format": "oms", "path": str(extra)})
        agent.config_path.write_text(yaml.safe_dump(config))
        agent.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: agent.log().count("reload: configuration") == 2)
        with open(source, "ab") as out:
            out.write(b"".join(data[cut2:]))
        assert wait_until(lambda: extra.exists() and extra.stat().st_size > 0)
        assert agent.proc.poll() is None
    finally:
        assert agent.stop() == 0
    # nothing lost, nothing twice (the order of events flushed by the timer depends on timing)
    everything = expected_mstic(LOG.read_bytes())
    assert sorted(rotated.read_text(encoding="latin-1").splitlines() + agent.mstic_lines()) == sorted(everything)
    for line in extra.read_text().splitlines():
        assert json.loads(line)[1]["records"]


def test_plugin_input_on_stdin_until_end_of_input(tmp_path):
    stream = (SAMPLES / "plugin-enriched-interleaved.raw").read_bytes()
    agent = Agent(tmp_path, {"type": "plugin"})
    proc = subprocess.run(agent.command(), input=stream, cwd=REPO, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert agent.mstic_lines() == expected_mstic(stream)
    assert b"plugin input (auditd stream on stdin): input ended" in proc.stderr


def test_plugin_input_stops_on_sigterm_and_flushes_open_events(tmp_path):
    stream = (SAMPLES / "plugin-raw-node-execve-ls.raw").read_bytes()
    stream = stream[:stream.rfind(b"type=EOE")]  # no EOE: the event is still open when auditd stops us
    agent = Agent(tmp_path, {"type": "plugin"}, extra={"pipeline": {"flush_timeout": 30}})
    with open(agent.log_path, "ab") as log:
        proc = subprocess.Popen(agent.command(), stdin=subprocess.PIPE, cwd=REPO, stdout=log, stderr=log)
    proc.stdin.write(stream)
    proc.stdin.flush()
    assert wait_until(lambda: "started:" in agent.log())
    time.sleep(0.5)
    assert agent.mstic_lines() == []
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    proc.stdin.close()
    assert len(agent.mstic_lines()) == 1 and agent.mstic_lines()[0].startswith("type=AUOMS_EXECVE ")


def test_sigusr1_logs_the_metrics_now(tmp_path):
    agent = Agent(tmp_path, {"type": "file", "path": str(LOG)}, extra={"metrics_interval": 0}).start()
    try:
        agent.proc.send_signal(signal.SIGUSR1)
        assert wait_until(lambda: "metrics: input file: records=" in agent.log())
    finally:
        agent.stop()


def test_start_failures_name_the_problem_and_start_nothing(tmp_path):
    agent = Agent(tmp_path, {"type": "file", "path": str(tmp_path / "missing.log"), "once": True}, name="a")
    try:
        agent.start()
        raise AssertionError("started")
    except AgentExited as exc:
        assert exc.code == 1 and "input.path: " in exc.log and "missing.log does not exist" in exc.log
    bad_output = Agent(tmp_path, {"type": "file", "path": str(LOG)}, name="b")
    config = yaml.safe_load(bad_output.config_path.read_text())
    config["outputs"].append({"type": "file", "name": "nowhere", "path": "/proc/auoms-py/x.jsonl"})
    bad_output.config_path.write_text(yaml.safe_dump(config))
    try:
        bad_output.start()
        raise AssertionError("started")
    except AgentExited as exc:
        assert exc.code == 1 and "file output 'nowhere'" in exc.log and "cannot open" in exc.log
    assert not (bad_output.dir / "data" / "file-input.json").exists()  # the input never started


def test_detached_run_reports_its_start_and_stops_on_sigterm(tmp_path):
    agent = Agent(tmp_path, {"type": "file", "path": str(LOG)}, extra={"log_file": str(tmp_path / "agent.log")})
    command = [sys.executable, "-m", "auoms_py", "run", "-c", str(agent.config_path), "--daemon"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    pid_file = agent.dir / "data" / "auoms-py.pid"
    pid = int(pid_file.read_text())
    assert wait_until(lambda: len(agent.mstic_lines()) == len(expected_mstic(LOG.read_bytes())))
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 30)
    assert not pid_file.exists()
    assert "stopping (SIGTERM)" in (tmp_path / "agent.log").read_text()
    # a start failure in the background is still reported by the command that started it
    broken = Agent(tmp_path, {"type": "file", "path": str(tmp_path / "nope"), "once": True}, name="broken")
    proc = subprocess.run([sys.executable, "-m", "auoms_py", "run", "-c", str(broken.config_path), "--daemon"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "nope does not exist" in proc.stderr
