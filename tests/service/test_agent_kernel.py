"""The live agent against the real kernel: netlink (the agent is the audit daemon), multicast beside Debian's
auditd, and as auditd's plugin. Every mode must deliver the same events: execs with tricky arguments, a connect,
a kill -9. Plus: a clean exit leaves the kernel as it was found (SIGTERM and SIGINT)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.audit_kernel import (_locked, audit_key, audit_on, audit_state, kernel_rules,  # noqa: F401 (fixtures)
                                needs_kernel)
from tests.paths import REPO
from tests.service.agent_proc import (Agent, AgentExited, audit_status, check_probe_events, pid_alive,
                                      probe_rules, run_connect, run_execs, run_kill9, start_as_audit_daemon,
                                      tricky_argvs, wait_audit_pid_free)

pytestmark = [pytest.mark.kernel, needs_kernel]

AUDITD = shutil.which("auditd") or "/usr/sbin/auditd"
needs_auditd = pytest.mark.skipif(not os.path.exists(AUDITD), reason="auditd not installed (make deps)")


def run_probes_and_check(agent: Agent, tag: str) -> None:
    argvs = tricky_argvs(tag)
    run_execs(argvs)
    run_connect()
    kill_pid = run_kill9()
    markers = {f"{tag}-{name}" for name in argvs}

    def all_there(events):
        seen = {e["argv"][1] for e in events if e.get("type") == "AUOMS_EXECVE" and len(e.get("argv") or ()) > 1}
        return markers <= seen and any(e.get("syscall") == "kill" and e.get("OBJ_PID_opid") == kill_pid
                                       for e in events)

    agent.wait_for(all_there, timeout=60)
    time.sleep(1.0)  # anything delivered twice would show up now
    check_probe_events(agent, tag, argvs, kill_pid)


# ---- netlink ----------------------------------------------------------------------------------------------------

def test_netlink_mode_delivers_exact_execs_connect_and_kill(tmp_path, kernel_rules):
    with audit_on():
        for rule in probe_rules(os.getpid()):
            kernel_rules.add(rule)
        agent = start_as_audit_daemon(Agent(tmp_path, {"type": "netlink"}))
        try:
            assert audit_status().pid == agent.proc.pid
            run_probes_and_check(agent, f"nl-{uuid.uuid4().hex[:8]}")
        finally:
            code = agent.stop()
        assert code == 0, agent.log()
        assert audit_status().pid != agent.proc.pid
    log = agent.log()
    assert "audit pid given up, kernel audit settings restored" in log
    assert "metrics: input netlink: records=" in log and " lost=0 " in log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_exit_restores_kernel_state(tmp_path, sig):
    """The agent raises the backlog limit and enables auditing if it is off; on SIGTERM/SIGINT it must give the
    audit pid back and put both back as found. The test holds the status lock of tests/audit_kernel.py while the
    agent runs, so no other test's status lease starts or ends meanwhile (the state seen before is stable)."""
    with audit_state():
        with _locked():
            wait_audit_pid_free()
            before = audit_status()
            agent = Agent(tmp_path, {"type": "netlink", "backlog_limit": max(before.backlog_limit + 1, 8192),
                                     "enable": True})
            agent = start_as_audit_daemon(agent)
            running = audit_status()
            assert running.pid == agent.proc.pid
            assert running.backlog_limit == max(before.backlog_limit + 1, 8192)
            assert running.enabled == 1
            code = agent.stop(sig)
            after = audit_status()
    assert code == 0, agent.log()
    assert after.pid != agent.proc.pid and not (after.pid and not pid_alive(after.pid))
    assert (after.enabled, after.backlog_limit, after.backlog_wait_time) == \
        (before.enabled, before.backlog_limit, before.backlog_wait_time)
    assert f"stopping ({signal.Signals(sig).name})" in agent.log()


def test_netlink_mode_refuses_while_another_process_holds_the_audit_pid(tmp_path):
    """Another audit daemon (here: a test socket registered by a child process) holds the pid."""
    holder_code = (
        "import sys, time\n"
        "from auoms_py.kernel.netlink import AuditNetlink\n"
        "nl = AuditNetlink(rcvbuf=1 << 20)\n"
        "deadline = time.monotonic() + 60\n"
        "while True:\n"
        "    try:\n"
        "        nl.register(); break\n"
        "    except OSError:\n"
        "        if time.monotonic() > deadline: sys.exit(3)\n"
        "        time.sleep(0.2)\n"
        "print('registered', flush=True)\n"
        "sys.stdin.read()\n"
        "nl.deregister()\n"
    )
    with audit_state():
        wait_audit_pid_free()
        holder = subprocess.Popen([os.sys.executable, "-c", holder_code], cwd=REPO, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "registered"
            before = audit_status()
            with pytest.raises(AgentExited) as info:
                Agent(tmp_path, {"type": "netlink"}).start()
            after = audit_status()
        finally:
            holder.stdin.close()  # it deregisters and exits (reading records is not its job: keep it short)
            holder.wait(30)
    assert info.value.code == 1
    assert f"audit pid is held by process {holder.pid} (python" in info.value.log
    assert "input: {type: multicast}" in info.value.log and "input: {type: plugin}" in info.value.log
    assert (after.pid, after.backlog_limit, after.enabled) == (holder.pid, before.backlog_limit, before.enabled)


# ---- beside auditd ------------------------------------------------------------------------------------------------

class Auditd:
    """Debian's auditd run by hand (machine-notes): `auditd -n -s nochange -c DIR`, log in DIR."""

    def __init__(self, directory: Path, plugin_dir: Path | None = None):
        self.dir = Path(directory) / "auditd"
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o750)
        conf = [f"log_file = {self.dir / 'audit.log'}", "log_format = RAW", "write_logs = yes", "flush = none",
                "num_logs = 2", "max_log_file = 100", "max_log_file_action = ROTATE", "space_left = 2",
                "admin_space_left = 1", "disk_full_action = IGNORE", "disk_error_action = IGNORE"]
        if plugin_dir is not None:
            conf.append(f"plugin_dir = {plugin_dir}")
        (self.dir / "auditd.conf").write_text("\n".join(conf) + "\n")
        os.chmod(self.dir / "auditd.conf", 0o640)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> "Auditd":
        deadline = time.monotonic() + timeout
        while True:
            wait_audit_pid_free(max(1.0, deadline - time.monotonic()))
            with open(self.dir / "stderr", "wb") as err:
                self.proc = subprocess.Popen([AUDITD, "-n", "-s", "nochange", "-c", str(self.dir)],
                                             stdout=subprocess.DEVNULL, stderr=err)
            registered_by = time.monotonic() + 10
            while self.proc.poll() is None and time.monotonic() < registered_by:
                if audit_status().pid == self.proc.pid:
                    return self
                time.sleep(0.1)
            self.stop()
            if time.monotonic() > deadline:
                raise RuntimeError(f"auditd did not become the audit daemon: {(self.dir / 'stderr').read_text()}")
            time.sleep(0.5)  # another process took the pid first: try again

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@needs_auditd
def test_multicast_mode_beside_auditd(tmp_path, kernel_rules):
    with audit_on():
        for rule in probe_rules(os.getpid()):
            kernel_rules.add(rule)
        auditd = Auditd(tmp_path).start()
        try:
            # the netlink input refuses, naming the ways to run beside auditd
            with pytest.raises(AgentExited) as info:
                Agent(tmp_path, {"type": "netlink"}, name="refused").start()
            assert f"audit pid is held by process {auditd.proc.pid} (auditd)" in info.value.log
            assert "input: {type: multicast}" in info.value.log

            agent = Agent(tmp_path, {"type": "multicast"}).start()
            try:
                assert audit_status().pid == auditd.proc.pid  # read-only: auditd keeps the pid
                run_probes_and_check(agent, f"mc-{uuid.uuid4().hex[:8]}")
            finally:
                code = agent.stop()
            assert code == 0, agent.log()
            assert audit_status().pid == auditd.proc.pid
        finally:
            auditd.stop()
        after = audit_status()
        assert after.pid != auditd.proc.pid  # auditd gave the pid back on SIGTERM
    assert "multicast input: reading a copy of every audit record; the audit pid is held by process" in agent.log()


@needs_auditd
def test_plugin_mode_under_auditd(tmp_path, kernel_rules):
    """auditd starts `auoms-py run --config=...` from its plugin_dir (our shipped plugin conf, with the path of
    this checkout's executable) and feeds it the record stream; SIGTERM from auditd stops it cleanly."""
    exe = REPO / ".venv" / "bin" / "auoms-py"
    if not exe.exists():
        pytest.skip("needs the venv's auoms-py executable (make venv)")
    plugin_dir = tmp_path / "plugins.d"
    plugin_dir.mkdir()
    os.chmod(plugin_dir, 0o750)
    agent = Agent(tmp_path, {"type": "plugin"}, log_to_file=True)
    shipped = (REPO / "conf" / "plugins.d" / "auoms-py.conf").read_text()
    conf = shipped.replace("path = /usr/bin/auoms-py", f"path = {exe}")
    conf = conf.replace("args = run --input=plugin", f"args = run --config={agent.config_path}")
    assert conf != shipped and f"args = run --config={agent.config_path}" in conf
    (plugin_dir / "auoms-py.conf").write_text(conf)
    os.chmod(plugin_dir / "auoms-py.conf", 0o640)
    with audit_on():
        for rule in probe_rules(os.getpid()):
            kernel_rules.add(rule)
        auditd = Auditd(tmp_path, plugin_dir).start()
        try:
            deadline = time.monotonic() + 30
            while "started: plugin input" not in plugin_log(agent) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "started: plugin input" in plugin_log(agent), plugin_log(agent)
            run_probes_and_check(agent, f"pl-{uuid.uuid4().hex[:8]}")
        finally:
            auditd.stop()
        deadline = time.monotonic() + 15
        while "stopping (SIGTERM)" not in plugin_log(agent) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert "stopping (SIGTERM)" in plugin_log(agent) or "input ended" in plugin_log(agent), plugin_log(agent)


def plugin_log(agent: Agent) -> str:
    """The plugin's log: auditd gives its plugins no stderr we can read, so the test config logs to a file."""
    return agent.log()
