"""Filters in the real agent on the real kernel: which events of real processes the agent drops, and hot reload.

Two agents read the same audit multicast stream (read-only; neither holds the audit pid): A with the filters under
test, B without filters as the ground truth. The test's processes carry a login uid of their own (written to
/proc/self/loginuid before they start), and the test's rules (unique key) select `auid=` that uid, so only their
events are counted, whatever else runs on the machine.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.audit_kernel import audit_enabled, audit_key, kernel_rules, needs_kernel  # noqa: F401 (fixtures)
from tests.paths import REPO

pytestmark = [pytest.mark.kernel, needs_kernel]

SYSCALLS = "execve,openat,connect,unlink,unlinkat,fchown,chdir"
_LINE = re.compile(r"^type=(\S+) audit\((\d+)\.(\d+):(\d+)\): ")


class Event:
    def __init__(self, line: str):
        m = _LINE.match(line)
        self.type = m.group(1)
        self.time = int(m.group(2)) + int(m.group(3)) / 1000
        self.id = f"{m.group(2)}.{m.group(3)}:{m.group(4)}"
        self.line = line
        self.syscall = self._field("syscall")
        self.pid = int(self._field("pid") or 0)
        self.ppid = int(self._field("ppid") or 0)
        exe = re.search(r' exe="([^"]*)"', line)
        self.exe = exe.group(1) if exe else None
        name = re.search(r' name="([^"]*)"', line)
        self.name = name.group(1) if name else None

    def _field(self, name: str) -> str | None:
        m = re.search(rf" {name}=(\S+)", self.line)
        return m.group(1) if m else None

    def __repr__(self) -> str:
        return f"<{self.id} {self.syscall} pid={self.pid} ppid={self.ppid} exe={self.exe} name={self.name}>"


class AgentProcess:
    """`auoms-py run -f` on the multicast input, writing MSTIC lines to a file."""

    def __init__(self, workdir: Path, name: str, filters: Path | None):
        self.workdir = workdir
        self.output = workdir / f"{name}.out"
        self.log = workdir / f"{name}.log"
        self.config = workdir / f"{name}.yaml"
        config = {
            "input": {"type": "multicast"},
            "data_dir": str(workdir / f"{name}-data"),
            "metrics_interval": 0,
            "log_level": "info",
            "outputs": [{"name": "out", "type": "file", "path": str(self.output), "format": "mstic"}],
        }
        if filters is not None:
            config["filters"] = str(filters)
        self.config.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "auoms_py", "run", "-f", "-c", str(self.config)],
                                     stderr=self._log, stdout=subprocess.DEVNULL, cwd=REPO)
        deadline = time.monotonic() + 30
        while b"started:" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"agent did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._log.close()

    def events(self, key: str) -> list[Event]:
        if not self.output.exists():
            return []
        lines = self.output.read_bytes().decode("latin-1").splitlines()
        return [Event(line) for line in lines if f" key={key} " in line or line.endswith(f" key={key}")]


def run_as(auid: int, argv: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a command whose process tree carries login uid `auid` (the test rules select it)."""
    def set_loginuid() -> None:
        with open("/proc/self/loginuid", "w") as f:
            f.write(str(auid))

    return subprocess.run(argv, preexec_fn=set_loginuid, capture_output=True, timeout=60, **kw)


def popen_as(auid: int, argv: list[str], **kw) -> subprocess.Popen:
    def set_loginuid() -> None:
        with open("/proc/self/loginuid", "w") as f:
            f.write(str(auid))

    return subprocess.Popen(argv, preexec_fn=set_loginuid, **kw)


def wait_for_marker(agents: list[AgentProcess], key: str, marker: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(any(marker in e.line for e in agent.events(key)) for agent in agents):
            time.sleep(0.3)  # stragglers of the same moment
            return
        time.sleep(0.1)
    raise AssertionError(f"end marker {marker} not seen by every agent")


def write_filters(path: Path, filters: list[dict], *, atomic: bool = False, base: dict | None = None) -> None:
    data = dict(base or {})
    data["process_filters"] = list(data.get("process_filters", [])) + filters
    text = yaml.safe_dump(data, sort_keys=False)
    if atomic:  # editors that save to a temporary file and rename it over the original
        tmp = path.with_name(path.name + ".swp")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        path.write_text(text)


@pytest.fixture
def workdir():
    # outside pytest's tmp_path: a short, fixed-shape path that the filters name
    path = Path(f"/tmp/auoms-filt-{uuid.uuid4().hex[:8]}")
    path.mkdir()
    (path / "bin").mkdir()
    (path / "work").mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def copy_binary(source: str, target: Path) -> str:
    shutil.copy2(source, target)
    target.chmod(0o755)
    return str(target)


def test_default_filters_on_real_processes(audit_enabled, kernel_rules, audit_key, workdir):  # noqa: F811
    auid = random.randint(60000, 64999)
    dpkg = copy_binary("/usr/bin/dash", workdir / "bin" / "dpkg")
    depth0 = copy_binary("/usr/bin/dash", workdir / "bin" / "depth0tool")
    chatty = copy_binary("/usr/bin/logger", workdir / "bin" / "chatty")
    work = workdir / "work"
    filters = workdir / "filters.yaml"
    # the shipped defaults, plus test filters naming the temporary copies (the dpkg one exactly as the default's)
    base = yaml.safe_load((REPO / "conf" / "filters.yaml").read_text())
    default_dpkg = next(f for f in base["process_filters"] if f["name"] == "dpkg")
    write_filters(filters, [
        {**default_dpkg, "name": "test-dpkg", "exe": dpkg},
        {"name": "test-depth0", "exe": depth0, "depth": 0},
        {"name": "test-except", "exe": chatty, "syscalls": ["!connect"], "depth": 0},
    ], base=base)
    kernel_rules.add(f"-a always,exit -F arch=b64 -S {SYSCALLS} -F auid={auid}")
    agent, truth = AgentProcess(workdir, "filtered", filters), AgentProcess(workdir, "truth", None)
    agent.start()
    truth.start()
    try:
        connect = f"import socket; socket.socket().connect_ex(('127.0.0.1', 9))"
        run_as(auid, [dpkg, "-c", f"""
            cd {work}
            exec 3</etc/hostname
            cat /etc/hostname >/dev/null
            touch {work}/victim; rm -f {work}/victim
            sh -c 'cd /; cat /etc/hostname >/dev/null'
            {sys.executable} -c "{connect}"
            :
        """])  # (`:` last: a shell may exec its last command in place of itself instead of forking it)
        run_as(auid, [depth0, "-c", f"cd {work}; exec 3</etc/hostname; cat /etc/hostname >/dev/null; :"])
        run_as(auid, [chatty, "-u", str(work / "no-such-socket"), "hello"])
        marker = f"END-{uuid.uuid4().hex}"
        run_as(auid, ["/bin/true", marker])
        wait_for_marker([agent, truth], audit_key, marker)
    finally:
        agent.stop()
        truth.stop()

    kept = agent.events(audit_key)
    everything = truth.events(audit_key)
    ids = [e.id for e in kept]
    assert len(ids) == len(set(ids)), "an event written twice"
    all_ids = {e.id for e in everything}
    assert set(ids) <= all_ids, "the filtered agent wrote events the unfiltered one did not see"

    # the oracle: which events the filters must drop, from the unfiltered stream
    dpkg_start = next(e for e in everything if e.syscall == "execve" and e.exe == dpkg)
    tree = {dpkg_start.pid}
    while True:  # every descendant, however deep
        grown = tree | {e.pid for e in everything if e.ppid in tree}
        if grown == tree:
            break
        tree = grown
    def must_drop(e: Event) -> bool:
        if e.pid in tree and e.syscall in ("openat", "connect", "unlink", "fchown"):
            return True
        if e.exe == depth0:  # every syscall of the process itself (and of its forks before they exec)
            return True
        return e.exe == chatty and e.syscall != "connect"

    expected = {e.id for e in everything if not must_drop(e)}
    assert set(ids) == expected, ([e for e in everything if e.id in expected - set(ids)][:5],
                                  [e for e in kept if e.id not in expected][:5])

    # and the story in plain terms: what the oracle relied on really happened
    def has(events, **want) -> bool:
        return any(all(getattr(e, k) == v for k, v in want.items()) for e in events)

    assert has(everything, exe=dpkg, syscall="openat") and not has(kept, exe=dpkg, syscall="openat")
    assert has(kept, exe=dpkg, syscall="execve")  # the package manager's execve stays
    assert has(kept, exe=dpkg, syscall="chdir")  # not a listed syscall
    cat_under_dpkg = [e for e in everything if e.exe == "/usr/bin/cat" and e.ppid in tree]
    assert cat_under_dpkg and has(kept, exe="/usr/bin/cat", syscall="execve", ppid=dpkg_start.pid)
    assert not [e for e in kept if e.exe == "/usr/bin/cat" and e.pid in tree and e.syscall == "openat"]
    assert has(everything, syscall="connect", exe=os.path.realpath(sys.executable))
    assert not [e for e in kept if e.pid in tree and e.syscall == "connect"]  # the child's connect, dropped
    assert has(kept, exe="/usr/bin/rm", syscall="unlinkat")  # unlinkat is not unlink: kept
    assert has(kept, exe="/usr/bin/dash", syscall="chdir")  # the grandchild shell's cd /

    depth0_start = next(e for e in everything if e.syscall == "execve" and e.exe == depth0)
    assert not has(kept, exe=depth0)  # the process itself: nothing, not even its execve
    assert has(kept, exe="/usr/bin/cat", ppid=depth0_start.pid, syscall="execve")  # its child: everything
    assert has(kept, exe="/usr/bin/cat", syscall="openat") and any(
        e.exe == "/usr/bin/cat" and e.syscall == "openat" and e.ppid == depth0_start.pid for e in kept)

    assert has(kept, exe=chatty, syscall="connect")  # !connect keeps connect ...
    assert has(everything, exe=chatty, syscall="openat") and not has(kept, exe=chatty, syscall="openat")
    assert not has(kept, exe=chatty, syscall="execve")  # ... and drops the rest, execve included

    metrics = agent.log.read_text()
    assert re.search(r"filters dropped: .*test-depth0=[1-9]", metrics)
    assert re.search(r"test-dpkg=[1-9]", metrics) and re.search(r"test-except=[1-9]", metrics)


def test_editing_the_filter_file_while_the_agent_runs(audit_enabled, kernel_rules, audit_key, workdir):  # noqa: F811
    auid = random.randint(60000, 64999)
    looper = copy_binary("/usr/bin/dash", workdir / "bin" / "looper")
    marks = workdir / "m"
    count = 320
    for i in range(count):
        (marks / str(i)).mkdir(parents=True)
    filters = workdir / "filters.yaml"
    drop_chdir = [{"name": "loop-chdir", "exe": looper, "syscalls": ["chdir"], "depth": 0}]
    write_filters(filters, drop_chdir)
    kernel_rules.add(f"-a always,exit -F arch=b64 -S chdir -F auid={auid}")
    agent, truth = AgentProcess(workdir, "filtered", filters), AgentProcess(workdir, "truth", None)
    agent.start()
    truth.start()
    try:
        # one chdir every ~25 ms into marks/0, marks/1, ... for about 8 s
        loop = popen_as(auid, [looper, "-c", f"i=0; while [ $i -lt {count} ]; do cd {marks}/$i; "
                                             f"i=$((i+1)); sleep 0.02; done"])
        time.sleep(1.5)
        t_keep = time.time()
        write_filters(filters, [])  # saved in place: nothing dropped from now on
        time.sleep(2.0)
        t_broken = time.time()
        filters.write_text("process_filters:\n  - name: loop-chdir\n    depth: -7\n")  # broken: line 3
        time.sleep(2.0)
        t_drop = time.time()
        write_filters(filters, drop_chdir, atomic=True)  # saved by rename: dropping again
        assert loop.wait(timeout=60) == 0
        marker = f"END-{uuid.uuid4().hex}"
        run_as(auid, [looper, "-c", f"cd {marks}/0; cd {marker} 2>/dev/null; true"])
        # the failed cd to the marker is a chdir event too (dropped by A): wait on B, then give A as long
        wait_for_marker([truth], audit_key, marker)
        time.sleep(1.0)
    finally:
        agent.stop()
        truth.stop()

    def marks_of(events) -> list[tuple[int, float]]:
        out = []
        for e in events:
            if e.name and e.name.startswith(f"{marks}/") and e.exe == looper:
                number = e.name[len(f"{marks}/"):]
                if number.isdigit():  # (dash passes the end marker as marks/0/END-...)
                    out.append((int(number), e.time))
        return out

    truth_marks = marks_of(truth.events(audit_key))[:count]
    assert [n for n, _t in truth_marks] == list(range(count)), "the kernel or the unfiltered agent lost events"
    seen = [n for n, _t in marks_of(agent.events(audit_key))]
    # the final `cd marks/0` after the loop is dropped again (filters were restored): only loop markers remain
    assert len(seen) == len(set(seen)), "an event written twice around a switch"
    assert seen == list(range(seen[0], seen[-1] + 1)), "an event lost around a switch"
    kept = set(seen)
    for n, t in truth_marks:
        if t < t_keep:
            assert n not in kept, f"marker {n} kept before the change to keep"
        elif t_keep + 2.0 <= t < t_drop:
            assert n in kept, f"marker {n} dropped more than 2 s after the change to keep (or by the broken file)"
        elif t >= t_drop + 2.0:
            assert n not in kept, f"marker {n} kept more than 2 s after the change to drop"
    assert any(t_broken <= t < t_drop for n, t in truth_marks if n in kept)  # the broken file kept the last good
    log = agent.log.read_text()
    assert f"{filters}:3: filter 'loop-chdir': depth must be -1" in log
    assert "keeping the last good ones" in log
    assert log.count("filters reloaded from") == 2
