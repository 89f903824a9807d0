"""AuditNetlink against the real kernel, with auditctl as the oracle."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import time

import pytest

from auoms_py.kernel.netlink import AuditNetlink, AuditNetlinkError
from auoms_py.kernel.ruledata import RuleData
from tests.audit_kernel import (STATE_DIR, audit_enabled, audit_key, audit_state, auditctl,  # noqa: F401
                                kernel_rules, needs_kernel, registered_daemon)

pytestmark = [pytest.mark.kernel, needs_kernel]

AUDIT_ARCH_X86_64 = 0xC000003E
EQUAL = 0x40000000
SYSCALL_EXECVE_X86_64 = 59
SYSCALL_OPENAT_X86_64 = 257


def auditctl_status() -> dict[str, int]:
    out = auditctl("-s").stdout
    status = {}
    for line in out.splitlines():
        name, _, value = line.partition(" ")
        if value.split()[0].isdigit():
            status[name] = int(value.split()[0])
    return status


def execve_rule(key: str) -> RuleData:
    """-a always,exit -F arch=b64 -S execve -F ppid=<this process> -k key: only our own children's execs."""
    mask = [0] * 64
    mask[SYSCALL_EXECVE_X86_64 // 32] |= 1 << (SYSCALL_EXECVE_X86_64 % 32)
    return RuleData(flags=4, action=2, mask=mask,
                    fields=[(11, EQUAL, AUDIT_ARCH_X86_64), (18, EQUAL, os.getpid()), (210, EQUAL, key)])


def records_with(nl: AuditNetlink, needle: str, want: int = 1, timeout: float = 5.0,
                 msg_type: int | None = 1300) -> list[tuple[int, str]]:
    """Records containing `needle` (SYSCALL records by default: the rule's CONFIG_CHANGE carries the key too)."""
    found = []
    deadline = time.monotonic() + timeout
    while len(found) < want and time.monotonic() < deadline:
        rec = nl.recv_record(timeout=0.2)
        if rec and needle in rec[1] and msg_type in (None, rec[0]):
            found.append(rec)
    return found


def test_status_matches_auditctl():
    with AuditNetlink() as nl:
        ours = nl.get_status()
    theirs = auditctl_status()
    for name in ("enabled", "failure", "pid", "rate_limit", "backlog_limit", "backlog_wait_time"):
        assert getattr(ours, name) == theirs[name], name
    assert "backlog_limit" in ours.as_text()


def test_set_status_sets_only_masked_fields_and_is_restored():
    with audit_state() as nl:
        before = nl.get_status()
        nl.set_status(backlog_limit=before.backlog_limit + 4321)
        after = nl.get_status()
        assert after.backlog_limit == before.backlog_limit + 4321
        assert auditctl_status()["backlog_limit"] == before.backlog_limit + 4321
        # fields outside the mask are untouched
        assert (after.enabled, after.failure, after.rate_limit, after.backlog_wait_time) == \
            (before.enabled, before.failure, before.rate_limit, before.backlog_wait_time)
        nl.set_status(backlog_wait_time=before.backlog_wait_time + 1)
        assert nl.get_status().backlog_wait_time == before.backlog_wait_time + 1
    if not list(STATE_DIR.glob("lease-*")):  # no other test run holds the status: it must be back as it was
        with AuditNetlink() as nl:
            restored = nl.get_status()
        assert restored.backlog_limit == before.backlog_limit
        assert restored.backlog_wait_time == before.backlog_wait_time


def test_set_status_rejects_unknown_field():
    with AuditNetlink() as nl, pytest.raises(TypeError):
        nl.set_status(colour=1)


def test_rule_add_list_delete_raw(kernel_rules):
    key = kernel_rules.key
    raw = execve_rule(key).pack()
    with AuditNetlink() as nl:
        nl.add_rule(raw)
        assert kernel_rules.listed() == [f"-a always,exit -F arch=b64 -S execve -F ppid={os.getpid()} -F key={key}"]
        listed = [r for r in nl.list_rules() if key in RuleData.unpack(r).keys]
        assert listed == [raw]  # the kernel lists the very bytes it was given
        with pytest.raises(AuditNetlinkError) as exc:
            nl.add_rule(raw)
        assert exc.value.errno == errno.EEXIST
        nl.del_rule(raw)
        assert kernel_rules.listed() == []
        with pytest.raises(AuditNetlinkError) as exc:
            nl.del_rule(raw)
        assert exc.value.errno == errno.ENOENT


def test_rules_added_by_auditctl_are_listed_and_decoded(kernel_rules):
    kernel_rules.add("-a always,exit -F arch=b64 -S openat -F dir=/etc -F success=0 -k second")
    (raw,) = kernel_rules.raw()
    rule = RuleData.unpack(raw)
    assert rule.keys == ["second", kernel_rules.key]
    assert (107, EQUAL, "/etc") in rule.fields
    assert rule.mask[SYSCALL_OPENAT_X86_64 // 32] == 1 << (SYSCALL_OPENAT_X86_64 % 32)
    assert rule.pack() == raw


def test_multicast_socket_receives_whole_records(audit_enabled, kernel_rules):
    key = kernel_rules.key
    with AuditNetlink(multicast=True) as mc:
        kernel_rules.add_raw(execve_rule(key).pack())
        subprocess.run(["/bin/true", "marker-" + key], check=True)
        (syscall,) = records_with(mc, f'key="{key}"')
        assert syscall[0] == 1300
        assert syscall[1].startswith("audit(") and syscall[1].endswith(f'key="{key}"')
        # the rest of the event follows: EXECVE carries the marker argument, EOE closes it
        serial = syscall[1][:syscall[1].index(")")]
        rest = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(t == 1320 for t, _ in rest):
            rec = mc.recv_record(0.2)
            if rec and rec[1].startswith(serial):
                rest.append(rec)
        types = [t for t, _ in rest]
        assert 1309 in types and types[-1] == 1320
        execve = next(text for t, text in rest if t == 1309)
        assert execve.endswith(f'a1="marker-{key}"')


def test_registered_daemon_gets_records_whole_despite_short_nlmsg_len(audit_enabled, kernel_rules):
    key = kernel_rules.key
    with AuditNetlink() as daemon, registered_daemon(daemon), AuditNetlink(multicast=True) as mc:
        assert daemon.get_status().pid == os.getpid()
        kernel_rules.add_raw(execve_rule(key).pack())
        subprocess.run(["/bin/true", "marker-" + key], check=True)
        unicast = records_with(daemon, f'key="{key}"')
        multicast = records_with(mc, f'key="{key}"')
        assert unicast and multicast
        assert unicast[0][1].endswith(f'key="{key}"')  # nlmsg_len would have cut the last 16 bytes
        assert unicast == multicast
    with AuditNetlink() as nl:
        assert nl.get_status().pid != os.getpid()  # deregistered


def test_records_arriving_during_requests_are_kept(audit_enabled, kernel_rules):
    key = kernel_rules.key
    with AuditNetlink(multicast=True) as mc:
        kernel_rules.add_raw(execve_rule(key).pack())
        for i in range(5):
            subprocess.run(["/bin/true", f"marker-{i}"], check=True)
        time.sleep(0.2)
        # requests on the same socket read the queued records while waiting for their replies
        mc.get_status()
        mc.list_rules()
        got = records_with(mc, f'key="{key}"', want=5)
        assert len(got) == 5


def test_receive_buffer_overflow_is_counted(audit_enabled, kernel_rules):
    key = kernel_rules.key
    with AuditNetlink(multicast=True, rcvbuf=4096) as mc:
        kernel_rules.add_raw(execve_rule(key).pack())
        subprocess.run(["/bin/sh", "-c", "i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done"],
                       check=True)
        # /bin/true's parent is the shell, not us: only the shell's own exec matches ppid; make more noise
        for _ in range(60):
            subprocess.run(["/bin/true"], check=True)
        got = 0
        while mc.recv_record(timeout=0.3) is not None:
            got += 1
        assert mc.enobufs >= 1
        assert got > 0  # reading goes on after the overflow


def test_recv_timeout_and_signal_interrupt():
    with AuditNetlink() as nl:
        start = time.monotonic()
        assert nl.recv_record(timeout=0.3) is None
        assert 0.25 <= time.monotonic() - start < 2

        class Stop(Exception):
            pass

        def handler(signum, frame):
            raise Stop

        old = signal.signal(signal.SIGALRM, handler)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            start = time.monotonic()
            with pytest.raises(Stop):
                nl.recv_record(timeout=None)
            assert time.monotonic() - start < 2
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


def test_user_message_comes_back_as_record(audit_enabled):
    marker = f"auoms-py-test-{os.getpid()}-{time.monotonic_ns()}"
    with AuditNetlink(multicast=True) as mc, AuditNetlink() as nl:
        nl.send_user_message(1105, f"msg={marker}")  # AUDIT_USER_LOGIN-ish user record
        (rec,) = records_with(mc, marker, msg_type=1105)
        assert rec[0] == 1105
