"""The rules auoms-py ships: valid, and the optional network set really reports connections despite the research
set's early exits (its file sorts first; order is kept in the kernel)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from auoms_py.kernel.netlink import AuditNetlink
from auoms_py.rules.sync import RulesSync, check_rules
from tests.audit_kernel import KernelRules, audit_enabled, needs_kernel, unique_key  # noqa: F401 (fixture)
from tests.paths import REPO

RESEARCH = REPO / "rules" / "30-auoms-research.rules"
NETWORK = REPO / "rules" / "optional" / "20-auoms-network.rules"


def test_shipped_rules_check_clean():
    for path in (REPO / "rules", NETWORK):
        parsed, desired, errors = check_rules(path, host_machine="x86_64")
        assert errors == [] and [str(w) for w in parsed.warnings] == []
        assert desired
    # the optional set is not loaded by default (it lives in a subdirectory)
    parsed, _desired, _errors = check_rules(REPO / "rules", host_machine="x86_64")
    assert parsed.files == [str(RESEARCH)]


def only_for_children(text: str) -> str:
    """The same rules restricted to this process's children (a shared machine must not get our never rules);
    watches are left out."""
    out = []
    for line in text.splitlines():
        if line.startswith("-a "):
            out.append(f"{line} -F ppid={os.getpid()}")
    return "\n".join(out) + "\n"


def decode_key(text: str) -> list[str]:
    value = text.rsplit(" key=", 1)[1]
    if value.startswith('"'):
        return [value.strip('"')]
    return bytes.fromhex(value).decode().split("\x01")


@pytest.mark.kernel
@needs_kernel
def test_network_set_reports_connections_before_research_never_rules(tmp_path, audit_enabled):
    owner = unique_key("net")
    d = tmp_path / "rules.d"
    d.mkdir()
    (d / RESEARCH.name).write_text(only_for_children(RESEARCH.read_text()))
    (d / NETWORK.name).write_text(only_for_children(NETWORK.read_text()))
    child = ("import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); c=socket.socket(); "
             "c.connect(s.getsockname()); a, _ = s.accept()")
    with KernelRules(owner), AuditNetlink(multicast=True) as mc:
        with RulesSync(d, owner, apply_controls=False, backlog_limit=None) as syncer:
            report = syncer.sync()
        assert report.ok, report.summary()
        subprocess.run([sys.executable, "-c", child], check=True)
        seen: dict[int, list[str]] = {}
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not {42, 49, 50, 288} <= set(seen):
            rec = mc.recv_record(0.2)
            if rec and rec[0] == 1300 and f" ppid={os.getpid()} " in rec[1] and " key=" in rec[1]:
                nr = int(rec[1].split(" syscall=", 1)[1].split(" ", 1)[0])
                seen[nr] = decode_key(rec[1])
    assert seen.get(49) == ["net-server", owner]  # bind: in the research set's never list, reported anyway
    assert seen.get(50) == ["net-server", owner]  # listen
    assert seen.get(42) == ["net-connect", owner]  # connect
    assert seen.get(288) == ["net-server", owner]  # accept4
    assert seen.get(59) == [owner]  # the child's execve, from the research set
