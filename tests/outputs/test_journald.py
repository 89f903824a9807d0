"""journald output. PID 1 is not systemd here and there is no journal socket (machine-notes), and libsystemd sends
to the fixed path /run/systemd/journal/socket: the agent runs in a private mount namespace whose
/run/systemd/journal is a directory of ours, where a socket of ours reads the datagrams and checks they are the
journal's native protocol with the fields the output sent."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from auoms_py.format import mstic
from auoms_py.outputs.journald import JOURNAL_SOCKET, JournaldOutput, field_name, journal_fields
from auoms_py.service.config import from_dict
from tests.outputs.events import execve_lines
from tests.outputs.journal_receiver import JournalReceiver, parse_native
from tests.spool.agent_run import AgentRun, wait_until
from tests.spool.feed import events, numbers

systemd = pytest.importorskip("systemd.journal", reason="systemd-python not installed (make venv)")

NAMESPACE = ('mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && '
             'mount --bind "$0" /run/systemd/journal && exec "$@"')


def private_journal(directory) -> list[str]:
    """A command prefix: run in a mount namespace where /run/systemd/journal is `directory`."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or not unshare:
        pytest.skip("needs root and unshare(1)")
    probe = subprocess.run([unshare, "-m", "sh", "-c", NAMESPACE, str(directory), "true"], capture_output=True)
    if probe.returncode:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode().strip()}")
    return [unshare, "-m", "sh", "-c", NAMESPACE, str(directory)]


def test_field_names_are_valid_journal_names():
    assert field_name("exe") == b"AUDIT_FIELD_EXE"
    assert field_name("OBJ_PID_opid") == b"AUDIT_FIELD_OBJ_PID_OPID"
    assert field_name("avc:") == b"AUDIT_FIELD_AVC_"
    assert field_name("a0[1]") == b"AUDIT_FIELD_A0_1_"
    assert len(field_name("x" * 100)) == 64


def test_native_protocol_parser_reads_both_field_forms():
    data = b"MESSAGE=hello\nMULTI\n" + (7).to_bytes(8, "little") + b"a\nb\x00c d\nPRIORITY=6\n"
    assert parse_native(data) == [(b"MESSAGE", b"hello"), (b"MULTI", b"a\nb\x00c d"), (b"PRIORITY", b"6")]


def test_without_a_journal_nothing_is_lost_silently(tmp_path):
    """libsystemd drops messages when the socket file is missing: the output must see that and keep them."""
    if os.path.exists(JOURNAL_SOCKET):
        pytest.skip("this machine has a journal")
    cfg = from_dict({"input": "netlink", "outputs": [{"name": "j", "type": "journald", "retry_interval": 0.05,
                                                      "drain_timeout": 0.3}]}).outputs[0]
    out = JournaldOutput(cfg.name, cfg.format, cfg.journald)
    out.open()
    for event in events(0, 20):
        out.write_event(event)
    out.flush()
    assert wait_until(lambda: out.down_since is not None, 10)
    out.close()
    assert out.status()["delivered"] == 0 and out.status()["undelivered"] == 20


def journal_output(**keys) -> dict:
    return {"name": "journal", "type": "journald", "format": "mstic", "retry_interval": 0.1, "retry_max": 0.5,
            **keys}


def test_agent_sends_structured_entries_in_the_native_protocol(tmp_path):
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    agent = AgentRun(tmp_path / "agent", [journal_output()], wrapper=private_journal(journal_dir))
    agent.append_events(200)
    big = execve_lines(90_000, [b"/usr/bin/echo", b"evt-9999999", b"x" * 300_000])
    # a value with a newline (a directory name): the native protocol's binary field form
    newline = [line.replace('cwd="/tmp"', "cwd=2F746D700A6E6C") for line in
               execve_lines(90_001, [b"/usr/bin/echo", b"evt-9999998"])]
    with open(agent.input, "a", encoding="latin-1") as f:
        f.write("\n".join(big + newline) + "\n")
    with JournalReceiver(str(journal_dir / "socket")) as receiver:
        agent.start()
        try:
            assert wait_until(lambda: len(receiver.entries) >= 202, 60), agent.log()
        finally:
            agent.stop()
    assert receiver.errors == []
    entries = receiver.as_dicts()
    assert numbers(e["MESSAGE"] for e in entries[:200]) == list(range(200))
    first = entries[0]
    expected = {name.split(b"=", 1)[0].decode(): name.split(b"=", 1)[1]
                for name in journal_fields(events(0, 1)[0][0], b"", b"auoms")}
    assert first["SYSLOG_IDENTIFIER"] == b"auoms" and first["PRIORITY"] == b"6" and first["SYSLOG_FACILITY"] == b"1"
    assert first["AUDIT_TYPE_NAME"] == b"AUOMS_EXECVE" and first["AUDIT_TYPE"] == b"14688"
    assert first["AUDIT_FIELD_EXE"] == b"/usr/bin/echo" and first["AUDIT_FIELD_CMDLINE"] == b"/usr/bin/echo evt-0000000"
    assert first["MESSAGE"] == mstic.format_record(events(0, 1)[0][0]).encode("latin-1")
    assert set(first) == set(expected)  # every field the output put in, and nothing else
    assert entries[200]["AUDIT_FIELD_CMDLINE"] == b"/usr/bin/echo evt-9999999 " + b"x" * 300_000
    assert entries[201]["AUDIT_FIELD_CWD"] == b"/tmp\nnl"


def test_journal_absent_at_start_then_present_gets_everything(tmp_path):
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    agent = AgentRun(tmp_path / "agent", [journal_output()], wrapper=private_journal(journal_dir))
    agent.append_events(100)
    agent.start()
    try:
        assert wait_until(lambda: "receiver unavailable" in agent.log(), 30), agent.log()
        agent.append_events(100)
        with JournalReceiver(str(journal_dir / "socket")) as receiver:
            assert wait_until(lambda: len(receiver.entries) >= 200, 60), agent.log()
    finally:
        agent.stop()
    assert numbers(e["MESSAGE"] for e in receiver.as_dicts()) == list(range(200))
