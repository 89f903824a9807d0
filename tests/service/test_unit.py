"""The systemd unit (systemd/auoms-py.service): its keys, and systemd's own check of it (`systemd-analyze verify`,
when installed). PID 1 is not systemd on this machine, so the unit cannot be started here: the sandbox it sets is
checked for what the agent needs by running the agent under the same capability bounding set
(test_service_kernel.py), and sd_notify on a test NOTIFY_SOCKET (test_service.py)."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from auoms_py.service.config import Config
from tests.paths import REPO

UNIT = REPO / "systemd" / "auoms-py.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(UNIT)
    return parser


def seconds(value: str) -> float:
    return float(value.removesuffix("s"))


def test_the_unit_is_a_notify_service_that_reloads_restarts_and_is_limited():
    service = unit()["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["ExecStart"] == "/opt/auoms-py/bin/auoms-py run -c /etc/auoms-py/auoms.yaml"  # foreground
    assert service["ExecStartPre"].endswith("run -c /etc/auoms-py/auoms.yaml --check")
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert seconds(service["WatchdogSec"]) >= 10
    # the stop the agent bounds itself (stop_timeout) fits in systemd's
    assert seconds(service["TimeoutStopSec"]) > Config.__dataclass_fields__["stop_timeout"].default + 10
    assert service["CPUQuota"].endswith("%") and service["MemoryMax"].endswith("M")
    assert int(service["MemoryHigh"][:-1]) < int(service["MemoryMax"][:-1])
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def test_the_sandbox_leaves_what_the_agent_needs():
    service = unit()["Service"]
    assert set(service["CapabilityBoundingSet"].split()) == {"CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_NET_ADMIN",
                                                             "CAP_SYS_PTRACE"}
    assert service["User"] == "root" and service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert (service["StateDirectory"], service["RuntimeDirectory"], service["LogsDirectory"]) == ("auoms-py",) * 3
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    # audit watches (-w PATH) resolve in the agent's mount namespace; audit netlink only in the first network one
    assert service.get("PrivateTmp", "no") == "no" and service.get("ProtectHome") in (None, "no", "read-only")
    assert "PrivateNetwork" not in service and "ProtectProc" not in service and "PrivateUsers" not in service
    # the data dir of the shipped configuration is the StateDirectory
    packaged = (REPO / "packaging" / "conf" / "auoms.yaml")
    if packaged.exists():
        import yaml
        assert yaml.safe_load(packaged.read_text())["data_dir"] == "/var/lib/auoms-py"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    """systemd's own parser; the executable path is pointed at this checkout's (the package installs it in /opt)."""
    exe = Path(sys.executable).with_name("auoms-py")
    text = UNIT.read_text().replace("/opt/auoms-py/bin/auoms-py", str(exe))
    copy = tmp_path / "auoms-py.service"
    copy.write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip() and not proc.stdout.strip(), proc.stdout + proc.stderr
    # and it does complain about a broken key (the check is real)
    copy.write_text(text.replace("Type=notify", "Type=notfy"))
    broken = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True)
    assert "Failed to parse service type" in broken.stderr


def test_the_unit_runs_the_agent_at_auditds_priority_boost():
    assert unit()["Service"]["Nice"] == str(-Config.__dataclass_fields__["priority_boost"].default)
