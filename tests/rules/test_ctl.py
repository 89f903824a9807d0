"""`auoms-py ctl` end to end (a subprocess, as an operator runs it), auditctl as the oracle."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.audit_kernel import KernelRules, auditctl, needs_kernel, unique_key

MARK = f"-F ppid={os.getpid()}"


def ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auoms_py", "ctl", *args], capture_output=True, text=True)


def test_check_rules_reports_file_and_line_and_exit_status(tmp_path):
    d = tmp_path / "rules.d"
    d.mkdir()
    (d / "10-ok.rules").write_text("-a always,exit -F arch=b64 -S execve -k exec\n")
    proc = ctl("check-rules", str(d), "-v")
    assert proc.returncode == 0, proc.stderr
    assert f"{d}/10-ok.rules:1: -a always,exit -F arch=b64 -S execve -F key=exec -F key=auoms" in proc.stdout
    (d / "20-bad.rules").write_text("# x\n-a always,exit -F arch=b64 -S execve -F uid>=root -F colour=1\n-b 10\n")
    proc = ctl("check-rules", str(d))
    assert proc.returncode == 1
    assert f"{d}/20-bad.rules:2: -F unknown field: colour" in proc.stderr
    assert "2 file(s), 1 rule(s) to load, controls: backlog_limit=10, 1 error(s)" in proc.stdout
    assert ctl("check-rules", str(tmp_path / "missing")).returncode == 1


def test_help_lists_the_word_commands():
    proc = ctl("-h")
    assert proc.returncode == 0 and "check-rules" in proc.stdout




@pytest.mark.kernel
@needs_kernel
def test_status_matches_auditctl():
    ours = ctl("-s").stdout.splitlines()
    theirs = auditctl("-s").stdout.splitlines()
    names = ("enabled", "failure", "pid", "rate_limit", "backlog_limit", "backlog_wait_time")
    pick = lambda lines: [line for line in lines if line.split(" ")[0] in names]  # noqa: E731
    assert pick(ours) == pick(theirs) and len(pick(ours)) == len(names)


@pytest.mark.kernel
@needs_kernel
def test_load_list_delete_owned_only(tmp_path):
    owner = unique_key("ctl")
    rules = tmp_path / "x.rules"
    rules.write_text(f"-a always,exit -F arch=b64 -S openat {MARK} -k files\n"
                     f"-a always,exit -F arch=b64 -S unlinkat {MARK} -F uid=0 -k gone\n")
    with KernelRules(owner) as mine, KernelRules() as other:
        other.add(f"-a always,exit -F arch=b64 -S openat {MARK} -k files")
        proc = ctl("-R", str(rules), "--owner-key", owner, "--backlog-limit", "0")
        assert proc.returncode == 0, proc.stderr
        assert "2 added, 0 removed" in proc.stdout
        listed = ctl("-l", owner).stdout.splitlines()
        assert listed == mine.listed() and len(listed) == 2  # the same text as auditctl -l -k
        assert ctl("-l", "-k", owner).stdout.splitlines() == listed
        # delete the owned rules carrying key "gone" only, then the rest; the other owner's rule stays
        proc = ctl("-D", "gone", "--owner-key", owner)
        assert "1 owned rule(s) removed with key gone" in proc.stdout
        assert len(mine.listed()) == 1
        proc = ctl("-D", "--owner-key", owner)
        assert "1 owned rule(s) removed" in proc.stdout
        assert mine.listed() == [] and len(other.listed()) == 1
        assert ctl("-l", owner).stdout.strip() == "No rules"
