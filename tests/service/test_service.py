"""The agent as a service, without the kernel (input: a log file we append numbered events to): sd_notify on a test
NOTIFY_SOCKET, AUOMS_METRIC / AUOMS_STATUS events in every format, health and `ctl status` over the control socket,
refusal of files others can write, daemon mode, SIGHUP under load, the bounded stop, the memory limit."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from auoms_py.service.control import request
from tests.outputs.fluent_receiver import ForwardReceiver
from tests.paths import REPO
from tests.service.agent_proc import AgentExited, wait_until
from tests.service.notify_socket import NotifySocket
from tests.spool.agent_run import AgentRun
from tests.spool.feed import numbers
from tests.spool.test_agent_delivery import Feeder, forward_output


def json_output(path, name: str = "json", **keys) -> dict:
    return {"name": name, "type": "file", "format": "json", "path": str(path), **keys}


def ctl(*args: str, user: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "auoms_py", "ctl", *args]
    if user:
        command = ["setpriv", f"--reuid={user}", f"--regid={user if user != 'nobody' else 'nogroup'}",
                   "--clear-groups", *command]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)


def self_records(path: Path, type_name: str) -> list[dict]:
    if not path.exists():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("type") == type_name]


# ---- sd_notify ----------------------------------------------------------------------------------------------------

def test_sd_notify_ready_after_start_then_status_watchdog_reload_and_stop(tmp_path):
    notify = NotifySocket(tmp_path / "notify.sock")
    agent = AgentRun(tmp_path / "agent", [json_output(tmp_path / "out.jsonl")])
    ready_seen_started: list[bool] = []
    notify.on_message = lambda a: ready_seen_started.append("started: " in agent.log()) if "READY=1" in a else None
    agent.env = notify.env(WATCHDOG_USEC="400000")  # a ping every 0.2 s
    try:
        agent.start()
        assert wait_until(lambda: notify.times("READY=1"), 10), notify.all()
        assert ready_seen_started[0], "READY=1 came before the collector and outputs were started"
        assert notify.statuses()[0].startswith("collecting from file input")
        time.sleep(1.2)
        assert len(notify.times("WATCHDOG=1")) >= 4, notify.all()
        # the main loop stops (SIGSTOP): no more pings; it turns again: pings again
        agent.proc.send_signal(signal.SIGSTOP)
        time.sleep(0.3)
        stopped_at = len(notify.times("WATCHDOG=1"))
        time.sleep(1.0)
        assert len(notify.times("WATCHDOG=1")) == stopped_at
        agent.proc.send_signal(signal.SIGCONT)
        assert wait_until(lambda: len(notify.times("WATCHDOG=1")) > stopped_at + 2, 5)
        # the status line follows health: healthy while collecting
        assert wait_until(lambda: any(s.startswith("healthy: collecting from file input") for s in notify.statuses()))
        agent.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: notify.times("RELOADING=1"), 10)
        assert wait_until(lambda: max(notify.times("READY=1")) > notify.times("RELOADING=1")[0], 10)
        agent.append_events(5)
        out = tmp_path / "out.jsonl"
        assert wait_until(lambda: out.exists() and len(out.read_text().splitlines()) == 5, 10)
        assert agent.stop() == 0
        assert notify.times("STOPPING=1")
        assert notify.times("STOPPING=1")[0] > max(notify.times("WATCHDOG=1")) - 0.3
    finally:
        if agent.alive():
            agent.kill()
        notify.close()


@pytest.mark.parametrize("env", [{}, {"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"}], ids=["no-watchdog", "other-pid"])
def test_no_watchdog_pings_unless_systemd_watches_this_process(tmp_path, env):
    notify = NotifySocket(tmp_path / "notify.sock")
    agent = AgentRun(tmp_path / "agent", [json_output(tmp_path / "out.jsonl")])
    agent.env = notify.env(**env)
    try:
        agent.start()
        assert wait_until(lambda: notify.times("READY=1"), 10)
        time.sleep(1.0)
        assert not notify.times("WATCHDOG=1")
        assert agent.stop() == 0
    finally:
        if agent.alive():
            agent.kill()
        notify.close()


# ---- AUOMS_METRIC / AUOMS_STATUS -------------------------------------------------------------------------------------

def test_metric_and_status_events_in_every_format_past_the_process_filters(tmp_path):
    """A filter drops every audit event (exe /usr/bin/echo); the agent's own events still reach every output, as
    OutputRecords each format writes; an output's drop_record_types still applies to them."""
    filters = tmp_path / "filters.yaml"
    filters.write_text(yaml.safe_dump({
        "version": 1,
        "process_filters": [{"name": "every-echo", "exe": "/usr/bin/echo"}],
        "outputs": {"mstic": {"drop_record_types": ["AUOMS_METRIC"]}},
    }))
    fwd_path = tmp_path / "fwd.sock"
    outputs = [json_output(tmp_path / "out.jsonl"),
               {"name": "mstic", "type": "file", "format": "mstic", "path": str(tmp_path / "out.mstic")},
               {"name": "oms", "type": "file", "format": "oms", "path": str(tmp_path / "out.oms")},
               forward_output(fwd_path, name="fwd")]
    agent = AgentRun(tmp_path / "agent", outputs, extra={"filters": str(filters), "self_events": True,
                                                         "metrics_interval": 1, "status_interval": 0})
    with ForwardReceiver(str(fwd_path)) as receiver:
        agent.start()
        try:
            agent.append_events(200)
            assert wait_until(lambda: agent.metrics().get("pipeline", {}).get("events") == 200, 20)
            assert wait_until(lambda: len(self_records(tmp_path / "out.jsonl", "AUOMS_METRIC")) >= 8, 20)
        finally:
            assert agent.stop() == 0
        fluent = receiver.records()
    final = agent.metrics()
    metric = self_records(tmp_path / "out.jsonl", "AUOMS_METRIC")
    status = self_records(tmp_path / "out.jsonl", "AUOMS_STATUS")
    assert not [r for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())
                if r["type"] == "AUOMS_EXECVE"]  # every audit event was filtered
    agent_records = [r for r in metric if r["Namespace"] == "agent"]
    # counts over consecutive intervals: they add up to the totals (the last one is sent at stop)
    assert sum(r["filtered"] for r in agent_records) == final["agent"]["filtered"] == 200
    assert sum(r["pipeline_events"] for r in agent_records) == 200
    assert sum(r["input_records"] for r in agent_records) == final["input"]["records"] == 200 * 5
    assert sum(r["events"] for r in agent_records) == 0
    for earlier, later in zip(agent_records, agent_records[1:]):
        assert later["StartTime"] == earlier["EndTime"]
    first = agent_records[0]
    assert first["version"] and first["Name"] == "auoms-py" and first["input"] == "file"
    assert isinstance(first["rss_kib"], int) and first["rss_kib"] > 1000 and isinstance(first["cpu_percent"], float)
    per_output = {r["Name"] for r in metric if r["Namespace"] == "output"}
    assert per_output == {"json", "mstic", "oms", "fwd"}
    fwd_metric = [r for r in metric if r["Namespace"] == "output" and r["Name"] == "fwd"][-1]
    assert {"delivered", "queued", "spool_bytes", "dropped", "errors"} <= set(fwd_metric)
    assert (status[0]["status"], status[0]["reason"]) == ("healthy", "start")
    assert (status[-1]["status"], status[-1]["reason"]) == ("stopping", "stop")
    assert status[0]["outputs"] == "json:up,mstic:up,oms:up,fwd:up"
    # mstic: the status lines, not the metric lines (dropped for this output)
    mstic = (tmp_path / "out.mstic").read_text().splitlines()
    assert mstic and all(line.startswith("type=AUOMS_STATUS audit(") for line in mstic)
    assert re.match(r"type=AUOMS_STATUS audit\(\d+\.\d{3}:0\): version=\S+ status=healthy reason=start pid=\d+ "
                    r"uptime=\d+ input=\"file input [^\"]+\" outputs=json:up,mstic:up,oms:up,fwd:up$", mstic[0]), mstic[0]
    # oms: AUOMS's JSON array per event, every value a string
    oms = [json.loads(line) for line in (tmp_path / "out.oms").read_text().splitlines()]
    oms_types = {rec["RecordType"] for _t, msg in oms for rec in msg["records"]}
    assert oms_types == {"AUOMS_METRIC", "AUOMS_STATUS"}
    oms_metric = next(rec for _t, msg in oms for rec in msg["records"] if rec["RecordType"] == "AUOMS_METRIC")
    assert oms_metric["RecordTypeCode"] == 10006 and isinstance(oms_metric["SamplePeriod"], str)
    # fluent (forward protocol): AUOMS's record map
    fluent_types = {r["RecordType"] for r in fluent}
    assert fluent_types == {"AUOMS_METRIC", "AUOMS_STATUS"}
    fluent_status = next(r for r in fluent if r["RecordType"] == "AUOMS_STATUS")
    assert fluent_status["RecordTypeCode"] == "10005" and fluent_status["status"] == "healthy"


def test_spool_limit_loss_is_reported_in_auoms_metric_and_the_agent_keeps_running(tmp_path):
    """The issue's disk-limit case seen from the outputs: the forward output's spool bound (256 KiB, drop_oldest) is
    reached while its receiver is away; the loss is in the AUOMS_METRIC records of that output (a JSON file gets
    them), `loss` makes the agent degraded, and collection goes on."""
    out_path = tmp_path / "out.jsonl"
    agent = AgentRun(tmp_path / "agent", [json_output(out_path),
                                          forward_output(tmp_path / "fwd.sock", name="fwd",
                                                         spool={"max_size": "256k", "segment_size": "32k"})],
                     extra={"self_events": True, "metrics_interval": 1, "status_interval": 0})
    agent.start()
    try:
        agent.append_events(3000)
        assert wait_until(lambda: agent.metrics().get("outputs", {}).get("fwd", {}).get("dropped", 0) > 0, 30)
        assert wait_until(lambda: any(r["Namespace"] == "output" and r["Name"] == "fwd" and r["dropped"] > 0
                                      for r in self_records(out_path, "AUOMS_METRIC")), 10)
        assert wait_until(lambda: "loss" in request(str(agent.data_dir / "control.sock"))["health"]["errors"], 10)
        agent.append_events(100)  # still collecting
        assert wait_until(lambda: agent.metrics()["agent"]["events"] == 3100, 20)
        assert agent.stop() == 0
    finally:
        if agent.alive():
            agent.kill()
    fwd = [r for r in self_records(out_path, "AUOMS_METRIC") if r["Namespace"] == "output" and r["Name"] == "fwd"]
    assert sum(r["dropped"] for r in fwd) == agent.metrics()["outputs"]["fwd"]["dropped"] > 0
    assert any("loss" in r.get("errors", {}) for r in self_records(out_path, "AUOMS_STATUS"))


def test_health_follows_a_receiver_going_away_and_coming_back(tmp_path):
    fwd_path = tmp_path / "fwd.sock"
    out_path = tmp_path / "out.jsonl"
    agent = AgentRun(tmp_path / "agent", [json_output(out_path), forward_output(fwd_path, name="fwd")],
                     extra={"self_events": True, "metrics_interval": 0, "status_interval": 0})
    agent.start()
    try:
        agent.append_events(20)
        control = str(agent.data_dir / "control.sock")
        # the receiver is missing: after its grace (10 s) the agent says so
        assert wait_until(lambda: any(r["status"] == "degraded" for r in self_records(out_path, "AUOMS_STATUS")), 30)
        degraded = [r for r in self_records(out_path, "AUOMS_STATUS") if r["status"] == "degraded"][0]
        assert degraded["reason"] == "change" and degraded["outputs"] == "json:up,fwd:down"
        # waiting: the 20 events and the AUOMS_STATUS sent at start
        assert "unavailable" in degraded["errors"]["output fwd"] and "21 messages waiting" in degraded["errors"]["output fwd"]
        shown = ctl("status", "--socket", control)
        assert shown.returncode == 1, shown.stdout + shown.stderr
        assert "status: degraded (1 problem(s))" in shown.stdout
        assert re.search(r"output fwd: receiver unix://\S+ unavailable for \d+ s", shown.stdout)
        with ForwardReceiver(str(fwd_path)) as receiver:
            assert wait_until(lambda: self_records(out_path, "AUOMS_STATUS")[-1]["status"] == "healthy", 30)
            assert len(receiver.wait_for(20)) >= 20
            shown = ctl("status", "--socket", control)
            assert shown.returncode == 0 and "status: healthy" in shown.stdout
            assert re.search(r"fwd \(forward, fluent\) \[up\]: messages \d+, delivered \d+, queued 0", shown.stdout)
            assert agent.stop() == 0
    finally:
        if agent.alive():
            agent.kill()
    reasons = [(r["status"], r["reason"]) for r in self_records(out_path, "AUOMS_STATUS")]
    assert reasons[0] == ("healthy", "start") and ("degraded", "change") in reasons and ("healthy", "change") in reasons
    assert reasons[-1] == ("stopping", "stop")


# ---- control socket ---------------------------------------------------------------------------------------------

def test_ctl_status_answers_root_only_and_says_when_nothing_runs(tmp_path):
    shared = Path(tempfile.mkdtemp(prefix="auoms-ctl-", dir="/tmp"))
    shared.chmod(0o755)  # anyone may reach the socket's directory: the socket's own mode and the check must hold
    control = str(shared / "control.sock")
    agent = AgentRun(tmp_path / "agent", [json_output(tmp_path / "out.jsonl")], extra={"control_socket": control})
    try:
        missing = ctl("status", "--socket", control)
        assert missing.returncode == 3 and "not running" in missing.stdout
        agent.start()
        assert os.stat(control).st_mode & 0o777 == 0o600
        answer = ctl("status", "-c", str(agent.config_path), "--json")
        assert answer.returncode == 0, answer.stderr
        reply = json.loads(answer.stdout)
        assert reply["health"]["status"] == "healthy" and reply["health"]["pid"] == agent.proc.pid
        assert reply["metrics"]["input"]["type"] == "file" and reply["config"] == str(agent.config_path)
        assert request(control, "metrics")["outputs"]["json"]["type"] == "file"
        # another user: the socket's mode keeps it out
        denied = ctl("status", "--socket", control, user="nobody")
        assert denied.returncode == 4 and "Permission denied" in denied.stderr, denied.stdout + denied.stderr
        # even when the mode is opened up, the agent checks the caller's credentials and does not answer
        os.chmod(control, 0o666)
        refused = ctl("status", "--socket", control, user="nobody")
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert f"refused: uid 65534 may not ask (root only)" in refused.stderr
        assert ctl("status", "--socket", control).returncode == 0
        # a second agent on the same socket is refused at start, naming it
        second = AgentRun(tmp_path / "second", [json_output(tmp_path / "second.jsonl")],
                          extra={"control_socket": control})
        with pytest.raises(AgentExited) as exc:
            second.start()
        assert f"an agent is already running and answering on {control}" in exc.value.log
        assert agent.stop() == 0
        assert not os.path.exists(control)
        # a socket left behind by a killed agent is replaced
        agent.start()
        agent.kill()
        assert os.path.exists(control)
        agent.start()
        assert ctl("status", "--socket", control).returncode == 0
        assert agent.stop() == 0
    finally:
        if agent.alive():
            agent.kill()
        shutil.rmtree(shared, ignore_errors=True)


def test_control_socket_path_longer_than_a_socket_address(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    control = str(deep / "control.sock")
    assert len(control) > 108
    agent = AgentRun(tmp_path / "agent", [json_output(tmp_path / "out.jsonl")], extra={"control_socket": control})
    agent.start()
    try:
        assert request(control)["health"]["status"] == "healthy"
    finally:
        assert agent.stop() == 0


# ---- hygiene --------------------------------------------------------------------------------------------------------

def test_files_others_can_write_are_refused_with_the_fix(tmp_path):
    agent = AgentRun(tmp_path / "agent", [json_output(tmp_path / "out.jsonl")])
    agent.config_path.chmod(0o666)
    proc = subprocess.run(agent.command(), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert (f"configuration refused: {agent.config_path}: this file is writable by other users (mode 0666); auoms-py "
            f"runs as root and takes orders from it, so it refuses it: chmod go-w {agent.config_path}") in proc.stderr
    checked = ctl("check-config", str(agent.config_path))
    assert checked.returncode == 1 and f"refused: {agent.config_path}: this file is writable by other users" in checked.stderr
    # group-writable is fine when the group is root's
    agent.config_path.chmod(0o664)
    os.chown(agent.config_path, 0, 0)
    assert subprocess.run([*agent.command(), "--check"], cwd=REPO, capture_output=True).returncode == 0
    # a filter file owned by another user
    agent.config_path.chmod(0o644)
    filters = tmp_path / "filters.yaml"
    filters.write_text("version: 1\nprocess_filters: []\n")
    os.chown(filters, 65534, 65534)
    config = yaml.safe_load(agent.config_path.read_text())
    config["filters"] = str(filters)
    agent.config_path.write_text(yaml.safe_dump(config))
    with pytest.raises(AgentExited) as exc:
        agent.start()
    assert f"{filters}: this file is owned by uid 65534, not root; auoms-py refuses it: chown root {filters}" in exc.value.log
    # a configuration directory others can write (not sticky): someone could put another file in its place
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    moved = loose / "auoms.yaml"
    shutil.copy(agent.config_path, moved)
    proc = subprocess.run([sys.executable, "-m", "auoms_py", "run", "-c", str(moved), "--check"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and f"its directory {loose} is writable by other users" in proc.stderr


def test_reload_of_a_config_others_can_write_keeps_the_running_one(tmp_path):
    agent = AgentRun(tmp_path / "agent", [json_output(tmp_path / "out.jsonl")])
    agent.start()
    try:
        agent.config_path.chmod(0o646)
        agent.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "keeping the running configuration" in agent.log(), 10)
        assert "this file is writable by other users (mode 0646)" in agent.log()
        status = request(str(agent.data_dir / "control.sock"))["health"]
        assert status["status"] == "degraded" and "writable by other users" in status["errors"]["config"]
        agent.append_events(3)
        assert wait_until(lambda: len((tmp_path / "out.jsonl").read_text().splitlines()) == 3
                          if (tmp_path / "out.jsonl").exists() else False, 10)
        agent.config_path.chmod(0o644)
        agent.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: request(str(agent.data_dir / "control.sock"))["health"]["status"] == "healthy", 10)
    finally:
        assert agent.stop() == 0


# ---- daemon mode ------------------------------------------------------------------------------------------------------

def test_daemon_mode_pid_file_is_locked_and_a_stale_one_taken_over(tmp_path):
    agent = AgentRun(tmp_path / "agent", [json_output(tmp_path / "out.jsonl")],
                     extra={"log_file": str(tmp_path / "daemon.log")})
    pid_file = tmp_path / "run" / "auoms-py.pid"
    pid_file.parent.mkdir()
    pid_file.write_text("999999\n")  # left by an agent that died: no lock on it
    command = [sys.executable, "-m", "auoms_py", "run", "-c", str(agent.config_path), "--daemon",
               "--pidfile", str(pid_file)]
    started = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    pid = int(pid_file.read_text())
    try:
        assert pid != 999999 and os.path.exists(f"/proc/{pid}")
        # detached: a session of its own, of which it is not the leader (it can never get a terminal again)
        assert os.getsid(pid) not in (os.getsid(0), pid)
        again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert again.returncode == 1
        assert f"{pid_file}: another agent (pid {pid}) is running with this pid file" in again.stderr
        agent.append_events(4)
        assert wait_until(lambda: (tmp_path / "out.jsonl").exists()
                          and len((tmp_path / "out.jsonl").read_text().splitlines()) == 4, 10)
        os.kill(pid, signal.SIGHUP)
        assert wait_until(lambda: "reload: configuration" in (tmp_path / "daemon.log").read_text(), 10)
        assert ctl("status", "-c", str(agent.config_path)).returncode == 0
        os.kill(pid, signal.SIGTERM)
        assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 30)
        assert not pid_file.exists()
        assert "stopping (SIGTERM)" in (tmp_path / "daemon.log").read_text()
    finally:
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)


# ---- reload under load, bounded stop, memory limit ------------------------------------------------------------------

def test_sighup_under_load_reloads_outputs_and_filters_without_losing_events(tmp_path):
    filters = tmp_path / "filters.yaml"
    filters.write_text("version: 1\nprocess_filters: []\n")
    fwd_path = tmp_path / "fwd.sock"

    def outputs(step: int) -> list[dict]:
        return [json_output(tmp_path / "kept.jsonl", name="kept"),
                # a changed output is replaced at every reload: the new one opens the same file, the spool of the
                # forward output is handed over
                json_output(tmp_path / "swapped.jsonl", name="swapped", mode="0640" if step % 2 else "0600"),
                forward_output(fwd_path, name="fwd", retry_interval=0.1 + step / 100)]

    agent = AgentRun(tmp_path / "agent", outputs(0), extra={"filters": str(filters)})
    with ForwardReceiver(str(fwd_path)) as receiver:
        agent.start()
        try:
            with Feeder(agent, per_step=10, every=0.02) as feeder:
                for step in range(1, 7):
                    time.sleep(0.4)
                    config = yaml.safe_load(agent.config_path.read_text())
                    config["outputs"] = outputs(step)
                    agent.config_path.write_text(yaml.safe_dump(config))
                    filters.write_text("version: 1\nprocess_filters:\n"
                                       f"  - {{name: nothing-{step}, exe: /nonexistent/{step}}}\n")
                    agent.proc.send_signal(signal.SIGHUP)
                    assert wait_until(lambda: agent.log().count("reload: configuration") == step, 10)
                time.sleep(0.3)
                total = feeder.stop()
            assert wait_until(lambda: len(set(numbers(r.get("cmdline", "") for r in receiver.records()))) == total, 30)
            assert agent.stop() == 0
        finally:
            if agent.alive():
                agent.kill()
    assert total > 500
    assert "keeping the running configuration" not in agent.log()
    for name in ("kept", "swapped"):
        got = numbers(json.loads(line).get("cmdline", "") for line in (tmp_path / f"{name}.jsonl").read_text().splitlines())
        assert sorted(got) == list(range(total)), f"{name}: {len(got)} of {total}"
    fwd = numbers(r.get("cmdline", "") for r in receiver.records())
    assert set(fwd) == set(range(total))


class SilentReceiver:
    """Takes connections and never reads: a receiver that hangs."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.conns: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.conns.append(conn)

    def close(self) -> None:
        self._stop = True
        self.thread.join()
        for conn in self.conns:
            conn.close()
        self.sock.close()


def test_sigterm_drains_every_output_at_once_and_the_stop_is_bounded(tmp_path):
    paths = [tmp_path / f"fwd{i}.sock" for i in range(3)]
    outputs = [forward_output(p, name=f"fwd{i}", drain_timeout=3) for i, p in enumerate(paths)]
    agent = AgentRun(tmp_path / "agent", outputs)
    agent.start()
    agent.append_events(300)
    assert wait_until(lambda: agent.metrics().get("agent", {}).get("events") == 300, 20)
    began = time.monotonic()
    assert agent.stop() == 0
    took = time.monotonic() - began
    assert 2.5 < took < 7.0, f"{took:.1f} s: the three outputs drained one after the other?"
    assert agent.log().count("300 messages not delivered at exit") == 3
    # what they could not deliver is in their spools: a restart with the receivers up delivers it
    receivers = [ForwardReceiver(str(p)).start() for p in paths]
    try:
        agent.start()
        for receiver in receivers:
            assert wait_until(lambda: set(numbers(r.get("cmdline", "") for r in receiver.records())) == set(range(300)), 20)
        assert agent.stop() == 0
    finally:
        for receiver in receivers:
            receiver.stop()
    # a receiver that hangs (takes the connection, never reads): stop_timeout ends the stop
    hang_path = tmp_path / "hang.sock"
    hang = SilentReceiver(hang_path)
    stuck = AgentRun(tmp_path / "stuck", [forward_output(hang_path, name="hang", drain_timeout=60, send_timeout=60,
                                                         ack_timeout=120)],
                     extra={"stop_timeout": 3})
    try:
        stuck.start()
        stuck.append_events(3000)
        assert wait_until(lambda: stuck.metrics().get("agent", {}).get("events") == 3000, 30)
        began = time.monotonic()
        code = stuck.stop()
        took = time.monotonic() - began
        assert code == 1 and 2.5 < took < 6, (code, took)
        assert "stop took longer than stop_timeout (3 s): exiting now" in stuck.log()
    finally:
        if stuck.alive():
            stuck.kill()
        hang.close()
    with ForwardReceiver(str(hang_path)) as receiver:  # nothing was lost: it is all in the spool
        stuck.start()
        assert wait_until(lambda: set(numbers(r.get("cmdline", "") for r in receiver.records())) == set(range(3000)), 30)
        assert stuck.stop() == 0


def test_memory_limit_sets_the_data_rlimit(tmp_path):
    agent = AgentRun(tmp_path / "agent", [json_output(tmp_path / "out.jsonl")],
                     extra={"memory_limit": "256M"})
    agent.start()
    try:
        with open(f"/proc/{agent.proc.pid}/limits") as f:
            line = next(line for line in f if line.startswith("Max data size"))
        assert line.split()[3] == str(256 * 1024 * 1024), line
        assert "memory limit: 256 MiB of data (RLIMIT_DATA)" in agent.log()
    finally:
        assert agent.stop() == 0


def test_priority_boost_lowers_the_nice_value_as_auditd_does(tmp_path):
    agent = AgentRun(tmp_path / "agent", [json_output(tmp_path / "out.jsonl")])  # the default: 4
    agent.start()
    try:
        assert os.getpriority(os.PRIO_PROCESS, agent.proc.pid) == -4
        assert "priority: nice -4 (priority_boost 4)" in agent.log()
    finally:
        assert agent.stop() == 0
    off = AgentRun(tmp_path / "off", [json_output(tmp_path / "off.jsonl")], extra={"priority_boost": 0})
    off.start()
    try:
        assert os.getpriority(os.PRIO_PROCESS, off.proc.pid) == os.getpriority(os.PRIO_PROCESS, 0)
    finally:
        assert off.stop() == 0
