"""`auoms-py replay --config`: a filter change tried on a saved log before it is deployed."""
import subprocess
import sys

from tests.paths import REFERENCE, REPO

MSTICPY_LOG = REFERENCE / "msticpy" / "auditd_log.txt"


def replay(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auoms_py", "replay", *args], capture_output=True, text=True,
                          cwd=cwd, encoding="latin-1")


def test_replay_applies_the_filters_the_config_names(tmp_path):
    config = tmp_path / "auoms.yaml"
    config.write_text(f"input: netlink\nfilters: {REPO / 'conf' / 'filters.yaml'}\n"
                      "outputs: [{name: s, type: stdout}]\n")
    plain = replay(str(MSTICPY_LOG))
    filtered = replay("--config", str(config), str(MSTICPY_LOG))
    assert plain.returncode == 0 and filtered.returncode == 0, filtered.stderr
    plain_lines = plain.stdout.splitlines()
    filtered_lines = filtered.stdout.splitlines()
    gone = [line for line in plain_lines if line not in set(filtered_lines)]
    # the OMS keytab check (depth 0: the shell only) and the omsagent logrotate job
    assert len(gone) == 4 and len(plain_lines) - len(filtered_lines) == 4
    assert sum("krb5.keytab" in line for line in gone) == 2
    assert sum("logrotate" in line for line in gone) == 2
    assert "omi-keytab-check 2, omsagent-logrotate 2" in filtered.stderr


def test_a_broken_filter_file_is_reported_with_its_line(tmp_path):
    bad = tmp_path / "filters.yaml"
    bad.write_text("process_filters:\n  - name: x\n    exe: {regex: '(x'}\n")
    run = replay("--filters", str(bad), str(MSTICPY_LOG))
    assert run.returncode == 1 and run.stdout == ""
    assert f"{bad}:3: filter 'x': exe: regex ['(x'] does not compile" in run.stderr


def test_replay_never_reads_this_hosts_proc(tmp_path):
    # a log whose pid is this very test process: a tree reading /proc would learn our python's command line
    import os

    from tests.filters.events import History

    history = History()
    # same exe as this live process: a /proc-reading tree would take its full command line (with "pytest")
    history.syscall(os.getpid(), os.getppid(), os.path.realpath(sys.executable), "openat", proctitle=["other"])
    log = tmp_path / "audit.log"
    log.write_text("\n".join(history.lines) + "\n")
    filters = tmp_path / "filters.yaml"
    filters.write_text("process_filters:\n  - {name: py, cmdline: {contains: pytest}}\n")
    run = replay("--filters", str(filters), str(log))
    assert run.returncode == 0 and "type=AUOMS_SYSCALL" in run.stdout
