"""Loss is counted and reported, for real: a multicast reader whose receive buffer overflows (ENOBUFS), and a
netlink agent that stops reading until the kernel drops records (its `lost` counter grows)."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import pytest

from tests.audit_kernel import (_live_leases, _locked, audit_key, audit_on, audit_state,  # noqa: F401 (fixtures)
                                kernel_rules, needs_kernel)
from tests.service.agent_proc import Agent, audit_status, start_as_audit_daemon, wait_audit_pid_free, wait_until

pytestmark = [pytest.mark.kernel, needs_kernel]


def burst_of_audited_kills(count: int) -> None:
    """kill(self, 0): each call one audited event (SYSCALL, OBJ_PID, PROCTITLE, EOE) under the test's rule."""
    me = os.getpid()
    for _ in range(count):
        os.kill(me, 0)


def wait_log(agent: Agent, text: str, timeout: float = 20.0) -> bool:
    return wait_until(lambda: text in agent.log(), timeout)


def burst_while_stopped(agent: Agent, count: int, expect_in_log: str) -> None:
    """Stop the agent, make `count` audited calls, let it go on; it must say `expect_in_log`, then log metrics."""
    agent.proc.send_signal(signal.SIGSTOP)
    try:
        burst_of_audited_kills(count)
    finally:
        agent.proc.send_signal(signal.SIGCONT)
    assert wait_log(agent, expect_in_log), agent.log()
    agent.proc.send_signal(signal.SIGUSR1)
    assert wait_log(agent, "metrics: input ")


def test_multicast_receive_buffer_overflow_is_counted_as_lost(tmp_path, kernel_rules):
    """Harmless to anyone else: only our own socket overflows (the multicast group has no flow control)."""
    with audit_on():
        kernel_rules.add(f"-a always,exit -F arch=b64 -S kill -F pid={os.getpid()}")
        agent = Agent(tmp_path, {"type": "multicast", "receive_buffer": 65536, "status_interval": 0.2}).start()
        try:
            burst_while_stopped(agent, 3000, "receive buffer overflowed")
        finally:
            assert agent.stop() == 0
    metrics = json.loads((agent.dir / "data" / "metrics.json").read_text())
    assert metrics["input"]["enobufs"] >= 1 and metrics["input"]["lost"] >= metrics["input"]["enobufs"]
    got = sum(1 for e in agent.events() if e.get("syscall") == "kill" and e.get("pid") == os.getpid())
    assert 0 < got < 3000  # some came, the overflow lost others


@contextlib.contextmanager
def kernel_to_ourselves(timeout: float = 120.0):
    """The status lock of tests/audit_kernel.py, taken only when no other test holds a status lease: a
    test that makes the kernel drop records must not do it while another test relies on its events."""
    deadline = time.monotonic() + timeout
    with audit_state():
        while True:
            with _locked():
                if len(_live_leases()) == 1:  # ours
                    yield
                    return
            if time.monotonic() > deadline:
                pytest.skip("other tests kept using kernel audit; not dropping records under them")
            time.sleep(0.5)


def test_kernel_lost_growth_is_logged_and_counted(tmp_path, kernel_rules):
    """The agent (audit daemon) stops reading (SIGSTOP) with backlog_wait_time 0: the kernel drops what does not
    fit its backlog and counts it in `lost`; the agent must report that growth. It also puts backlog_wait_time
    back at exit."""
    kernel_rules.add(f"-a always,exit -F arch=b64 -S kill -F pid={os.getpid()}")
    with kernel_to_ourselves():
        wait_audit_pid_free()
        before = audit_status()
        agent = Agent(tmp_path, {"type": "netlink", "backlog_limit": 64, "backlog_wait_time": 0,
                                 "receive_buffer": 65536, "status_interval": 0.2})
        start_as_audit_daemon(agent)
        try:
            assert audit_status().backlog_wait_time == 0
            burst_while_stopped(agent, max(before.backlog_limit, 64) + 5000, "kernel audit lost ")
        finally:
            code = agent.stop()
        after = audit_status()
    assert code == 0
    assert (after.backlog_wait_time, after.backlog_limit, after.enabled) == \
        (before.backlog_wait_time, before.backlog_limit, before.enabled)
    metrics = json.loads((agent.dir / "data" / "metrics.json").read_text())
    assert metrics["input"]["kernel_lost"] > 0 and metrics["input"]["lost"] >= metrics["input"]["kernel_lost"]
    assert after.lost - before.lost >= metrics["input"]["kernel_lost"]
