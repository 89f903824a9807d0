"""The Debian package on this machine: build two revisions (`make dist`, packaging/build-deb.sh), install the first
(dpkg -i), run the installed agent (no systemd here: `auoms-py run --daemon`, the packaged configuration) and ask it
`auoms-py ctl status`; upgrade to the second while a conffile is edited (the edit is kept, the agent restarted);
purge (files gone, no rule of the agent left in the kernel, the audit pid released). Whatever happens, the test
purges the package and stops what it started.

The edit made to the conffile is a rules owner key of this test's own, so that the rules the installed agent loads
(the shipped research set) and removes at purge are exactly this test's (other tests may run on the machine).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from auoms_py import __version__
from tests.audit_kernel import audit_state, kernel_rules_with_key, needs_kernel, unique_key
from tests.paths import REPO
from tests.service.agent_proc import audit_status, pid_alive, wait_audit_pid_free, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.kernel, needs_kernel,
              pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian)")]

AGENT = "/opt/auoms-py/bin/auoms-py"
CONFIG = Path("/etc/auoms-py/auoms.yaml")
PIDFILE = Path("/var/lib/auoms-py/auoms-py.pid")
PACKAGE_PATHS = ["/opt/auoms-py", "/usr/bin/auoms-py", "/etc/auoms-py", "/lib/systemd/system/auoms-py.service",
                 "/etc/audit/plugins.d/auoms-py.conf", "/var/lib/auoms-py", "/usr/share/doc/auoms-py"]


def run(*command: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(command)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def installed_version() -> str | None:
    proc = run("dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", "auoms-py", check=False)
    if proc.returncode or not proc.stdout.startswith(("ii", "iU", "iF", "rc")):
        return None
    return proc.stdout.split()[-1]


@pytest.fixture(scope="module")
def debs(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("debs")
    run("make", "dist", cwd=REPO)
    built = []
    for revision in ("1", "2"):
        proc = run(str(REPO / "packaging" / "build-deb.sh"), revision, env={**os.environ, "DEB_OUT": str(out)})
        built.append(Path(proc.stdout.strip().splitlines()[-1]))
    return built


def agent_pids() -> list[int]:
    """Processes running the installed agent."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if len(cmdline) > 2 and cmdline[1] in (AGENT.encode(), b"/usr/bin/auoms-py") and cmdline[2] == b"run":
                pids.append(int(entry.name))
    return pids


def start_daemon(deadline: float = 120) -> int:
    """`auoms-py run --daemon` with the packaged configuration; waits while another test holds the audit pid."""
    end = time.monotonic() + deadline
    while True:
        wait_audit_pid_free(max(1.0, end - time.monotonic()))
        proc = run(AGENT, "run", "-c", str(CONFIG), "--daemon", check=False)
        if proc.returncode == 0:
            return int(PIDFILE.read_text())
        if "audit pid is held by" not in proc.stderr or time.monotonic() > end:
            raise AssertionError(f"the installed agent did not start: {proc.stderr}")
        time.sleep(0.5)


def test_install_run_upgrade_keep_edits_and_purge(debs):
    if installed_version() is not None:
        pytest.skip("auoms-py is installed on this machine already: not touching it")
    key = unique_key("pkg")
    started: list[int] = []
    try:
        with audit_state():
            # ---- install ----
            run("dpkg", "-i", str(debs[0]))
            assert installed_version() == f"{__version__}-1"
            for path in PACKAGE_PATHS:
                assert os.path.exists(path), path
            conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "auoms-py").stdout
            for name in ("/etc/auoms-py/auoms.yaml", "/etc/auoms-py/filters.yaml",
                         "/etc/auoms-py/rules.d/30-auoms-research.rules", "/etc/audit/plugins.d/auoms-py.conf"):
                assert name in conffiles, conffiles
            assert run(AGENT, "--version").stdout.strip() == f"auoms-py {__version__}"
            assert run("auoms-py", "--version").stdout.strip() == f"auoms-py {__version__}"  # /usr/bin
            assert run(AGENT, "run", "-c", str(CONFIG), "--check").returncode == 0
            if shutil.which("systemd-analyze"):
                verify = run("systemd-analyze", "verify", "/lib/systemd/system/auoms-py.service", check=False)
                assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
            # the edit (a conffile): this test's own owner key for the rules the agent loads
            CONFIG.write_text(CONFIG.read_text() + f"\n# local edit\nrules_owner_key: {key}\n")

            # ---- run the installed agent, ask it ----
            pid = start_daemon()
            started.append(pid)
            assert audit_status().pid == pid
            assert wait_until(lambda: len(kernel_rules_with_key(key)) > 10, 30)
            status = run("auoms-py", "ctl", "status", check=False)
            assert status.returncode in (0, 1), status.stdout + status.stderr  # 1: degraded (no /dev/log here)
            assert status.stdout.startswith(f"auoms-py {__version__}, pid {pid}, up ")
            assert "input: netlink input (audit daemon): records " in status.stdout
            assert re.search(r"syslog \(syslog, mstic\) \[(up|down)\]: messages \d+", status.stdout)

            # ---- upgrade, the edit kept, the agent running again ----
            run("dpkg", "-i", str(debs[1]))
            assert installed_version() == f"{__version__}-2"
            assert f"rules_owner_key: {key}" in CONFIG.read_text()
            assert not pid_alive(pid)
            assert wait_until(lambda: PIDFILE.exists() and PIDFILE.read_text().strip().isdigit()
                              and int(PIDFILE.read_text()) != pid, 30)
            new_pid = int(PIDFILE.read_text())
            started.append(new_pid)
            assert wait_until(lambda: run("auoms-py", "ctl", "status", check=False).returncode in (0, 1), 30)
            assert audit_status().pid == new_pid and kernel_rules_with_key(key)

            # ---- purge: files gone, kernel clean ----
            run("dpkg", "--purge", "auoms-py")
            assert installed_version() is None
            for path in PACKAGE_PATHS:
                assert not os.path.lexists(path), path
            assert not pid_alive(new_pid) and not agent_pids()
            assert not kernel_rules_with_key(key)
            assert audit_status().pid not in (pid, new_pid)
    finally:
        if installed_version() is not None:
            subprocess.run(["dpkg", "--purge", "auoms-py"], capture_output=True, timeout=300)
        for pid in started + agent_pids():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if kernel_rules_with_key(key):  # the purge did not clean up: do it, and fail
            subprocess.run([sys.executable, "-m", "auoms_py", "ctl", "-D", "--owner-key", key], cwd=REPO,
                           capture_output=True)
