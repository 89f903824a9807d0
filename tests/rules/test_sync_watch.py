"""RulesSync and RulesWatcher against the real kernel: ownership, order, merge, re-check, reload on edit."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from auoms_py.kernel.netlink import AuditNetlink, AuditStatus
from auoms_py.rules.encode import format_rule
from auoms_py.rules.sync import RulesSync, check_rules
from auoms_py.rules.watch import RulesWatcher
from tests.audit_kernel import KernelRules, audit_state, needs_kernel, unique_key

pytestmark = [pytest.mark.kernel, needs_kernel]

MARK = f"-F ppid={os.getpid()}"  # rules that only match this test's children: harmless on a shared machine


def owned_text(syncer: RulesSync) -> list[str]:
    return [format_rule(r) for r in syncer.owned_kernel_rules()]


def rules_dir(tmp_path: Path, **files: str) -> Path:
    d = tmp_path / "rules.d"
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


@pytest.fixture
def owner():
    key = unique_key("own")
    with KernelRules(key):  # whatever a test leaves under its owner key is deleted afterwards
        yield key


def syncer_for(path, owner, **kwargs) -> RulesSync:
    kwargs.setdefault("apply_controls", False)
    kwargs.setdefault("backlog_limit", None)
    return RulesSync(path, owner, **kwargs)


def test_sync_adds_owned_rules_and_leaves_other_owners_alone(tmp_path, owner):
    d = rules_dir(tmp_path, **{"10-a.rules": f"-a always,exit -F arch=b64 -S openat {MARK} -k files\n"
                                              f"-w /etc/hostname -p wa -k host\n"})
    with KernelRules() as other, syncer_for(d, owner) as syncer:
        # another owner's rule identical in every field but the key: never touched
        other.add(f"-a always,exit -F arch=b64 -S openat {MARK} -k files")
        report = syncer.sync()
        assert report.ok and len(report.added) == 2
        assert owned_text(syncer) == [
            f"-a always,exit -F arch=b64 -S openat {MARK} -F key=files -F key={owner}",
            f"-w /etc/hostname -p wa -k host -k {owner}"]
        again = syncer.sync()
        assert not again.changed and again.kept == 2
        (d / "10-a.rules").write_text("")
        report = syncer.sync()
        assert len(report.removed) == 2 and owned_text(syncer) == []
        assert other.listed() == [f"-a always,exit -F arch=b64 -S openat {MARK} -F key=files -F key={other.key}"]


def test_rule_deleted_behind_our_back_comes_back(tmp_path, owner):
    d = rules_dir(tmp_path, **{"a.rules": f"-a always,exit -F arch=b64 -S openat {MARK}\n"
                                          f"-a always,exit -F arch=b64 -S unlinkat {MARK} -F uid=0\n"})
    with syncer_for(d, owner) as syncer, AuditNetlink() as nl:
        syncer.sync()
        first = syncer.owned_kernel_rules()[0]
        nl.del_rule(first.pack())
        report = syncer.sync()
        assert report.added == [format_rule(first)]
        assert len(syncer.owned_kernel_rules()) == 2


def test_never_rules_keep_file_order(tmp_path, owner):
    d = rules_dir(tmp_path, **{"a.rules": f"-a always,exit -F arch=b64 -S openat {MARK} -k all-opens\n"})
    with syncer_for(d, owner) as syncer:
        syncer.sync()
        # a never rule put before it must end up before it in the kernel (first match wins)
        (d / "a.rules").write_text(f"-a never,exit -F arch=b64 -S openat {MARK} -F uid=0\n"
                                   f"-a always,exit -F arch=b64 -S openat {MARK} -k all-opens\n")
        syncer.sync()
        assert owned_text(syncer) == [
            f"-a never,exit -F arch=b64 -S openat {MARK} -F uid=0 -F key={owner}",
            f"-a always,exit -F arch=b64 -S openat {MARK} -F key=all-opens -F key={owner}"]
        # -A goes in front, as auditctl would put it
        (d / "a.rules").write_text(f"-a never,exit -F arch=b64 -S openat {MARK} -F uid=0\n"
                                   f"-a always,exit -F arch=b64 -S openat {MARK} -k all-opens\n"
                                   f"-A never,exit -F arch=b64 -S openat {MARK} -F uid=1\n")
        syncer.sync()
        assert owned_text(syncer)[0] == f"-a never,exit -F arch=b64 -S openat {MARK} -F uid=1 -F key={owner}"
        assert not syncer.sync().changed


def test_merge_unions_syscalls_perms_and_keys_but_not_across_the_other_action(tmp_path, owner):
    d = rules_dir(tmp_path, **{"a.rules": "\n".join([
        f"-a always,exit -F arch=b64 -S openat {MARK} -k open",
        f"-a always,exit -F arch=b64 -S creat {MARK} -k create",
        "-w /etc/hostname -p w -k host",
        "-w /etc/hostname -p a",
        f"-a never,exit -F arch=b64 -S unlinkat {MARK} -F uid=0",
        f"-a always,exit -F arch=b64 -S unlinkat {MARK} -F uid=0",
        f"-a never,exit -F arch=b64 -S renameat {MARK} -F uid=0",
    ]) + "\n"})
    with syncer_for(d, owner) as syncer:
        report = syncer.sync()
        assert report.ok
        assert owned_text(syncer) == [
            f"-a always,exit -F arch=b64 -S creat,openat {MARK} -F key=open -F key=create -F key={owner}",
            f"-w /etc/hostname -p wa -k host -k {owner}",
            f"-a never,exit -F arch=b64 -S unlinkat {MARK} -F uid=0 -F key={owner}",
            f"-a always,exit -F arch=b64 -S unlinkat {MARK} -F uid=0 -F key={owner}",
            f"-a never,exit -F arch=b64 -S renameat {MARK} -F uid=0 -F key={owner}"]


def test_kernel_refusal_is_reported_with_file_and_line(tmp_path, owner):
    d = rules_dir(tmp_path, **{"a.rules": f"-a always,exit -F arch=b64 -S openat {MARK}\n"
                                          f"-a always,exit -F dir=/nonexistent-{owner}/ -F perm=w\n"})
    with syncer_for(d, owner) as syncer:
        report = syncer.sync()
        assert len(report.added) == 1
        assert len(report.errors) == 1 and report.errors[0].startswith(f"{d}/a.rules:2: the kernel refused the rule "
                                                                       "(ENOENT: No such file or directory)")


def test_immutable_kernel_is_reported_and_left_alone(tmp_path, owner):
    """A kernel locked with -e 2 stays locked until reboot, so it cannot be produced on this shared machine:
    this one test reads its status from a socket that reports enabled=2 (everything else is the real kernel)."""
    class LockedKernel(AuditNetlink):
        requests = 0

        def get_status(self):
            st = super().get_status()
            return AuditStatus(**{**st.__dict__, "enabled": 2})

        def add_rule(self, raw):
            LockedKernel.requests += 1

        def del_rule(self, raw):
            LockedKernel.requests += 1

    d = rules_dir(tmp_path, **{"a.rules": f"-a always,exit -F arch=b64 -S openat {MARK}\n"})
    with LockedKernel() as nl:
        report = RulesSync(d, owner, netlink=nl, apply_controls=False).sync()
    assert report.immutable and not report.ok and LockedKernel.requests == 0
    assert "immutable (-e 2)" in report.summary()


def test_status_controls_and_backlog_raise(tmp_path, owner):
    with audit_state() as nl:
        before = nl.get_status()
        d = rules_dir(tmp_path, **{"a.rules": f"--backlog_wait_time {before.backlog_wait_time + 7}\n-e 2\n"
                                              f"-a always,exit -F arch=b64 -S openat {MARK}\n"})
        with RulesSync(d, owner, backlog_limit=before.backlog_limit + 5) as syncer:
            report = syncer.sync()
        after = nl.get_status()
        assert after.backlog_limit == before.backlog_limit + 5
        assert after.backlog_wait_time == before.backlog_wait_time + 7
        assert after.enabled == before.enabled  # -e 2 is not applied unless allowed
        assert report.status_changes == {"backlog_limit": before.backlog_limit + 5,
                                         "backlog_wait_time": before.backlog_wait_time + 7}
        assert any("-e 2 not applied" in w for w in report.warnings)


def test_check_rules_validates_without_the_kernel(tmp_path):
    d = rules_dir(tmp_path, **{"a.rules": "-a always,exit -F arch=b64 -S openat -k x\n-a always,exit -S bogus\n"})
    parsed, desired, errors = check_rules(d, host_machine="x86_64")
    assert len(desired) == 1 and errors == [f"{d}/a.rules:2: syscall name unknown on x86_64: bogus"]


# ---- reload on edit ---------------------------------------------------------------------------------------------------

def wait_for(syncer_view: RulesSync, expected: list[str], timeout: float = 2.0) -> float:
    """Seconds until the kernel's owned rules are `expected`; fails after `timeout`."""
    start = time.monotonic()
    while True:
        got = owned_text(syncer_view)
        elapsed = time.monotonic() - start
        if got == expected:
            return elapsed
        if elapsed > timeout:
            raise AssertionError(f"after {timeout} s the kernel has {got}, expected {expected}")
        time.sleep(0.02)


def test_editing_the_watched_dir_reaches_the_kernel_within_2s(tmp_path, owner):
    d = rules_dir(tmp_path, **{"10-base.rules": f"-a always,exit -F arch=b64 -S openat {MARK} -k one\n"})
    reports = []
    line1 = f"-a always,exit -F arch=b64 -S openat {MARK} -F key=one -F key={owner}"
    with KernelRules() as other, syncer_for(d, owner) as view:
        other.add(f"-a always,exit -F arch=b64 -S openat {MARK} -k one")  # another owner, same rule
        other_before = other.listed()
        watcher = RulesWatcher(syncer_for(d, owner), recheck_interval=60, on_report=reports.append)
        watcher.start()
        try:
            times = [wait_for(view, [line1])]
            # add a rule (new file)
            (d / "20-more.rules").write_text(f"-a always,exit -F arch=b64 -S unlinkat {MARK} -F uid=0 -k gone\n")
            line2 = f"-a always,exit -F arch=b64 -S unlinkat {MARK} -F uid=0 -F key=gone -F key={owner}"
            times.append(wait_for(view, [line1, line2]))
            # change a rule
            (d / "20-more.rules").write_text(f"-a always,exit -F arch=b64 -S unlinkat,renameat {MARK} -F uid=0 -k gone\n")
            line2b = f"-a always,exit -F arch=b64 -S unlinkat,renameat {MARK} -F uid=0 -F key=gone -F key={owner}"
            times.append(wait_for(view, [line1, line2b]))
            # break it: the previous rules stay, the error names file and line
            (d / "20-more.rules").write_text(f"# broken\n-a always,exit -F arch=b64 -S unlinkat {MARK} -F uid=0 "
                                             f"-k gone\n-a always,exit -S nosuchcall\n")
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and not any(r.errors for r in reports):
                time.sleep(0.02)
            assert any(f"{d}/20-more.rules:3: syscall name unknown on x86_64: nosuchcall" in r.errors
                       for r in reports)
            assert owned_text(view) == [line1, line2b]
            # delete a rule (the whole file): its rules go
            (d / "20-more.rules").unlink()
            times.append(wait_for(view, [line1]))
            # an editor's save: write a temp file, rename over
            tmp = d / ".10-base.rules.swp"
            tmp.write_text(f"-a always,exit -F arch=b64 -S openat,creat {MARK} -k one\n")
            os.replace(tmp, d / "10-base.rules")
            times.append(wait_for(view, [f"-a always,exit -F arch=b64 -S creat,openat {MARK} -F key=one -F key={owner}"]))
            assert other.listed() == other_before  # the other owner's rule never moved
            assert max(times) < 2.0, times
        finally:
            watcher.stop()
            watcher.syncer.close()


def test_periodic_recheck_restores_and_missing_dir_loads_nothing(tmp_path, owner):
    d = tmp_path / "rules.d"
    with syncer_for(d, owner) as view, AuditNetlink() as nl:
        watcher = RulesWatcher(syncer_for(d, owner), recheck_interval=0.3)
        watcher.start()
        try:
            time.sleep(0.5)
            assert watcher.last_report is not None and watcher.last_report.ok and owned_text(view) == []
            d.mkdir()
            (d / "a.rules").write_text(f"-a always,exit -F arch=b64 -S openat {MARK}\n")
            line = f"-a always,exit -F arch=b64 -S openat {MARK} -F key={owner}"
            wait_for(view, [line])
            nl.del_rule(view.owned_kernel_rules()[0].pack())  # behind the agent's back
            wait_for(view, [line], timeout=1.5)
        finally:
            watcher.stop()
            watcher.syncer.close()
