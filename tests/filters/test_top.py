"""`auoms-py top` on saved logs: the tables add up to the events in the file; suggestions are valid filters."""
import re
import subprocess
import sys
import time

import pytest

from auoms_py.filters.schema import load_text
from auoms_py.filters.stats import NoiseStats
from tests.audit_kernel import audit_enabled, audit_key, kernel_rules, needs_kernel  # noqa: F401 (fixtures)
from tests.filters.events import History
from tests.paths import REFERENCE, REPO

MSTICPY_LOG = REFERENCE / "msticpy" / "auditd_log.txt"


def top(*args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "auoms_py", "top", "--plain", *args], capture_output=True, text=True,
                         cwd=REPO)
    assert run.returncode == 0, run.stderr
    return run.stdout


def tables(text: str) -> dict[str, dict]:
    """{title: {"columns": [...], "rows": [[cells]], "footer": [cells] | None}} from rich's ASCII tables."""
    found = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if i + 1 < len(lines) and lines[i + 1].startswith("+-") and not lines[i].startswith(("|", "+")):
            title = lines[i].strip()
            i += 2
            columns = [c.strip() for c in lines[i].strip("|").split("|")]
            i += 2  # header, separator
            rows, footer = [], None
            while not lines[i].startswith("+-"):
                if lines[i].startswith("|-"):
                    footer = [c.strip() for c in lines[i + 1].strip("|").split("|")]
                    i += 2
                    continue
                rows.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            found[title] = {"columns": columns, "rows": rows, "footer": footer}
        i += 1
    return found


def column(table: dict, name: str) -> list[int]:
    index = table["columns"].index(name)
    return [int(row[index]) for row in table["rows"]]


def events_in(path) -> int:
    """Distinct audit event ids in a log: what the file holds, counted without the pipeline."""
    return len(set(re.findall(rb"msg=audit\((\d+\.\d+:\d+)\)", path.read_bytes())))


def test_msticpy_log_tables_add_up_to_the_events_in_the_file():
    expected = events_in(MSTICPY_LOG)
    assert expected == 938
    out = top("--no-filters", "--limit", "5", str(MSTICPY_LOG))
    found = tables(out)
    assert {"Processes", "Syscalls ([record types] of other events)", "Rule keys"} <= set(found)
    for title in ("Processes", "Syscalls ([record types] of other events)", "Rule keys"):
        table = found[title]
        assert sum(column(table, "events")) == expected, title
        assert int(table["footer"][table["columns"].index("events")]) == expected
    assert found["Processes"]["rows"][-1][0].startswith("(")  # the rows past --limit are summed, not lost
    assert f"{expected} events" in out.splitlines()[0]


def test_msticpy_log_with_the_default_filters_shows_what_each_drops():
    out = top("--filters", "conf/filters.yaml", str(MSTICPY_LOG))
    found = tables(out)
    filters = {row[0]: int(row[1]) for row in found["Filters (what each already drops)"]["rows"]}
    # real AUOMS noise in this real log: OMS's keytab check and omsagent logrotate cron jobs
    assert filters == {"omi-keytab-check": 2, "omsagent-logrotate": 2}
    assert "4 dropped" in out.splitlines()[0]
    processes = found["Processes"]
    assert sum(column(processes, "events")) == 938


def test_suggested_filters_are_valid_and_drop_the_noise(tmp_path):
    history = History()
    for i in range(50):
        history.syscall(700, 1, "/usr/bin/noisyd", "openat")
        history.syscall(700, 1, "/usr/bin/noisyd", "stat")
    history.execve(701, 1, "/usr/bin/python3", ["python3", "/opt/app/poll.py"])
    for i in range(30):
        history.syscall(701, 1, "/usr/bin/python3", "connect")
    history.syscall(702, 1, "/usr/bin/python3", "connect", proctitle=["python3", "/opt/other/x.py"])
    history.execve(703, 1, "/usr/bin/ls", ["ls"])
    log = tmp_path / "audit.log"
    log.write_text("\n".join(history.lines) + "\n")
    out = top("--no-filters", str(log))
    suggestion = out[out.index("# Suggested filters"):]
    config = load_text(suggestion, "suggestion.yaml", users={"root": 0}.get)
    by_name = {s.name: s for s in config.process_filters}
    assert set(by_name) == {"noise-noisyd", "noise-python3"}
    assert by_name["noise-noisyd"].syscalls.names == {"openat", "stat"}
    assert by_name["noise-python3"].cmdline[0].values == ["python3 /opt/app/poll.py"]  # an interpreter: by cmdline
    filters = tmp_path / "suggested.yaml"
    filters.write_text(suggestion)
    found = tables(top("--filters", str(filters), str(log)))
    dropped = {row[0]: int(row[1]) for row in found["Filters (what each already drops)"]["rows"]}
    assert dropped == {"noise-noisyd": 100, "noise-python3": 30}  # the other python3 and every execve stay


def test_noise_stats_counts_each_event_once_per_table():
    history = History()
    stats = NoiseStats()
    stats.add(history.execve(1, 0, "/sbin/init"))
    stats.add(history.syscall(1, 0, "/sbin/init", "openat", key="k1"))
    stats.add(history.user_event())
    assert stats.total.events == 3
    for table in (stats.processes, stats.syscalls, stats.keys):
        assert sum(row.events for row in table.values()) == 3
    assert set(stats.keys) == {"(no key)", "k1", "(not a syscall event)"}
    assert "[USER_LOGIN]" in stats.syscalls
    shown, others, n = NoiseStats.top(stats.syscalls, 1)
    assert len(shown) == 1 and others.events == 2 and n == 2


def test_plain_output_never_writes_raw_control_bytes(tmp_path):
    history = History()
    history.execve(900, 1, "/tmp/evil\x1b[2Jname", ["evil\x1b[2J"])
    log = tmp_path / "audit.log"
    log.write_text("\n".join(history.lines) + "\n")
    out = top("--no-filters", str(log))
    assert "\x1b" not in out and "\\x1B[2Jname" in out


@pytest.mark.kernel
@needs_kernel
def test_live_mode_reads_the_multicast_stream(audit_enabled, kernel_rules, audit_key):  # noqa: F811
    import random

    auid = random.randint(60000, 64999)
    kernel_rules.add(f"-a always,exit -F arch=b64 -S openat -F auid={auid}")
    top_run = subprocess.Popen([sys.executable, "-m", "auoms_py", "top", "--live", "--duration", "4", "--plain",
                                "--no-filters", "--limit", "50"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=REPO)

    def as_auid() -> None:
        with open("/proc/self/loginuid", "w") as f:
            f.write(str(auid))

    time.sleep(1.5)  # top has joined the group
    for _ in range(10):
        subprocess.run(["cat", "/etc/hostname"], stdout=subprocess.DEVNULL, preexec_fn=as_auid, check=True)
    out, err = top_run.communicate(timeout=60)
    assert top_run.returncode == 0, err
    found = tables(out)
    keys = {row[0]: int(row[1]) for row in found["Rule keys"]["rows"]}
    assert keys.get(audit_key, 0) >= 10  # at least one openat per cat (it opens several files)
    total = int(found["Rule keys"]["footer"][1])
    assert sum(keys.values()) == total
    processes = {(row[0], row[2]): int(row[3]) for row in found["Processes"]["rows"]}
    assert processes[("/usr/bin/cat", "root")] >= 10
