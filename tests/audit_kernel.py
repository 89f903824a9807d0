"""Support for every test that touches the real kernel audit subsystem (shared by all test packages).

Kernel audit is machine-wide and other test runs use it at the same time, so:
- status changes (enabled, backlog, failure, rate) go through ``audit_state()``: a cross-process lease. The first
  holder snapshots the kernel status, the last one to leave restores it, even after failures; a holder that died
  (SIGKILL) is pruned and the next run restores the original status it had saved;
- rules are added through ``KernelRules`` with a unique key and it deletes exactly the rules carrying that key;
- ``registered_daemon()`` takes the audit pid only when it is free (waits for another test to finish) and always
  gives it back.

Use from a test module::

    import pytest
    from tests.audit_kernel import audit_enabled, kernel_rules, audit_key, needs_kernel  # noqa: F401 (fixtures)

    pytestmark = [pytest.mark.kernel, needs_kernel]

    def test_x(audit_enabled, kernel_rules):
        kernel_rules.add(f"-a always,exit -F arch=b64 -S execve")   # key appended: -k <kernel_rules.key>
        ...

or the context managers directly: ``with audit_state(enabled=1, backlog_limit=8192): ...``,
``with KernelRules(unique_key("mytest")) as rules: ...``, ``with registered_daemon(nl): ...``.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import itertools
import json
import os
import shlex
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from auoms_py.collect.netlink import process_alive
from auoms_py.kernel.netlink import AuditNetlink, AuditNetlinkError
from auoms_py.kernel.ruledata import RuleData

STATE_DIR = Path(os.environ.get("AUOMS_PY_TEST_STATE", "/run/auoms-py-tests"
                                if os.access("/run", os.W_OK) else "/tmp/auoms-py-tests"))
RESTORED_FIELDS = ("enabled", "failure", "rate_limit", "backlog_limit", "backlog_wait_time")
_counter = itertools.count(1)


@functools.lru_cache(maxsize=1)
def kernel_audit_unavailable() -> str | None:
    """Why real-kernel tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root"
    try:
        with AuditNetlink(rcvbuf=0) as nl:
            nl.get_status()
    except OSError as exc:
        return f"kernel audit netlink unusable: {exc}"
    return None


needs_kernel = pytest.mark.skipif(kernel_audit_unavailable() is not None,
                                  reason=str(kernel_audit_unavailable()))


def auditctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run auditctl (the oracle); output as text."""
    return subprocess.run(["auditctl", *args], capture_output=True, text=True, check=check)


def unique_key(label: str = "t") -> str:
    """A rule key no other test run uses: label-pid-counter-random (kept short: keys share 256 bytes)."""
    label = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)[:24]
    return f"{label}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


# ---- status lease (cross-process) ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _locked() -> Iterator[None]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _live_leases() -> list[Path]:
    live = []
    for lease in STATE_DIR.glob("lease-*"):
        pid = int(lease.name.split("-")[1])
        if process_alive(pid):
            live.append(lease)
        else:
            lease.unlink(missing_ok=True)
    return live


def _restore(nl: AuditNetlink, original: dict) -> None:
    current = nl.get_status()
    changes = {name: original[name] for name in RESTORED_FIELDS if getattr(current, name) != original[name]}
    if current.immutable:
        return  # nothing can be changed until reboot
    # backlog settings before `enabled`: setting enabled=0 first would still let the other changes through,
    # but restoring in this order keeps a burst from hitting a small backlog while audit is on
    for name in ("backlog_limit", "backlog_wait_time", "rate_limit", "failure", "enabled"):
        if name in changes:
            nl.set_status(**{name: changes[name]})


@contextlib.contextmanager
def audit_state(**settings: int) -> Iterator[AuditNetlink]:
    """Hold a lease on kernel audit status for the duration, apply `settings`, restore when the last holder leaves.

    backlog_limit is only ever raised (several holders may want different values). Yields a unicast socket."""
    lease = STATE_DIR / f"lease-{os.getpid()}-{uuid.uuid4().hex}"
    original_file = STATE_DIR / "original-status.json"
    nl = AuditNetlink(rcvbuf=1 << 20)
    try:
        with _locked():
            if not _live_leases() and not original_file.exists():
                st = nl.get_status()
                original_file.write_text(json.dumps({name: getattr(st, name) for name in RESTORED_FIELDS}))
            # (when the file exists with no live lease, a holder died: keep its snapshot, the true original)
            lease.write_text(str(os.getpid()))
            if settings:
                current = nl.get_status()
                if "backlog_limit" in settings:
                    settings["backlog_limit"] = max(settings["backlog_limit"], current.backlog_limit)
                wanted = {k: v for k, v in settings.items() if getattr(current, k) != v}
                if wanted:
                    nl.set_status(**wanted)
        yield nl
    finally:
        try:
            with _locked():
                lease.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    if nl.get_status().pid == os.getpid():
                        nl.deregister()
                if not _live_leases() and original_file.exists():
                    _restore(nl, json.loads(original_file.read_text()))
                    original_file.unlink()
        finally:
            nl.close()


@contextlib.contextmanager
def audit_on(backlog_limit: int = 8192) -> Iterator[AuditNetlink]:
    """Audit enabled (and a backlog that survives test bursts) for the duration; restored afterwards."""
    with audit_state(enabled=1, backlog_limit=backlog_limit) as nl:
        yield nl


@contextlib.contextmanager
def registered_daemon(nl: AuditNetlink, wait: float = 60.0) -> Iterator[AuditNetlink]:
    """Register `nl` as the audit daemon (this process), waiting while another live process holds the pid;
    always deregister afterwards. Use inside audit_state()/audit_on() so the status is restored too."""
    deadline = time.monotonic() + wait
    while True:
        holder = nl.get_status().pid
        if holder in (0, os.getpid()) or not process_alive(holder):
            try:
                nl.register()
                break
            except AuditNetlinkError as exc:
                if exc.errno != errno.EEXIST:
                    raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"audit pid still held by process {holder} after {wait:g} s")
        time.sleep(0.2)
    try:
        yield nl
    finally:
        with contextlib.suppress(OSError):
            if nl.get_status().pid == os.getpid():
                nl.deregister()


# ---- rules tagged with a unique key -------------------------------------------------------------------------------

class KernelRules:
    """Rules added by a test under one unique key; on exit every kernel rule carrying that key is deleted
    (rules of other keys are never touched)."""

    def __init__(self, key: str | None = None) -> None:
        self.key = key or unique_key()
        self._nl = AuditNetlink(rcvbuf=1 << 20)

    def add(self, rule: str) -> None:
        """Add with auditctl: `rule` in auditctl syntax; ` -k <key>` is appended unless the rule names the key."""
        args = shlex.split(rule)
        if self.key not in args:
            args += ["-k", self.key]
        auditctl(*args)

    def add_raw(self, rule_data: bytes) -> None:
        self._nl.add_rule(rule_data)

    def raw(self, key: str | None = None) -> list[bytes]:
        """Kernel rules (raw) carrying `key` (default: this key), kernel order."""
        key = key or self.key
        return [r for r in self._nl.list_rules() if key in RuleData.unpack(r).keys]

    def listed(self, key: str | None = None) -> list[str]:
        """`auditctl -l -k KEY` lines: the oracle's text for the rules carrying the key."""
        out = auditctl("-l", "-k", key or self.key, check=False).stdout
        return [line for line in out.splitlines() if line.strip() and line.strip() != "No rules"]

    def cleanup(self, key: str | None = None) -> int:
        """Delete every kernel rule carrying the key; returns how many."""
        deleted = 0
        for raw in self.raw(key):
            with contextlib.suppress(FileNotFoundError):
                self._nl.del_rule(raw)
                deleted += 1
        return deleted

    def close(self) -> None:
        try:
            self.cleanup()
        finally:
            self._nl.close()

    def __enter__(self) -> "KernelRules":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def kernel_rules_with_key(key: str) -> list[bytes]:
    with AuditNetlink(rcvbuf=0) as nl:
        return [r for r in nl.list_rules() if key in RuleData.unpack(r).keys]


# ---- pytest fixtures ----------------------------------------------------------------------------------------------

@pytest.fixture
def audit_key(request) -> str:
    """A unique rule key for this test."""
    return unique_key(request.node.name.split("[")[0].removeprefix("test_"))


@pytest.fixture
def kernel_rules(audit_key) -> Iterator[KernelRules]:
    """Add rules under a unique key; exactly those are deleted afterwards, pass or fail."""
    with KernelRules(audit_key) as rules:
        yield rules


@pytest.fixture
def audit_status_guard() -> Iterator[AuditNetlink]:
    """Whatever the test changes in kernel audit status (enabled, backlog, failure, rate) is restored."""
    with audit_state() as nl:
        yield nl


@pytest.fixture
def audit_enabled() -> Iterator[AuditNetlink]:
    """Audit enabled with backlog_limit >= 8192 during the test; status restored afterwards."""
    with audit_on() as nl:
        yield nl
