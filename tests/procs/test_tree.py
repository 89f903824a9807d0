"""The process tree: from log events alone (replay), and live from this host's /proc and process connector."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from auoms_py.format import json as json_format
from auoms_py.format import mstic
from auoms_py.procs import containers, procfs
from auoms_py.procs.connector import ProcConnector
from auoms_py.procs.tree import ProcessTree
from tests.filters.events import History

CID = "ebe83cd204c57dc745ce21b595e6aaabf805dc4046024e8eacb84633d2461ec1"


def observe(tree, event):
    tree.observe(event)
    return event[0]


def test_container_id_comes_from_the_shim_and_is_inherited_in_replay():
    h, tree = History(), ProcessTree()
    shim = observe(tree, h.execve(50, 1, "/usr/bin/containerd-shim-runc-v2",
                                  ["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", "-id", CID,
                                   "-address", "/run/containerd/containerd.sock"]))
    assert shim.containerid == ""  # the shim runs on the host
    child = observe(tree, h.execve(51, 50, "/usr/sbin/nginx", ["nginx", "-g", "daemon off;"]))
    assert child.containerid == CID[:12]
    grandchild = observe(tree, h.syscall(52, 51, "/usr/sbin/nginx", "connect"))  # a fork of nginx
    assert grandchild.containerid == CID[:12]
    assert mstic.format_record(grandchild).endswith(f" containerid={CID[:12]}")
    host = observe(tree, h.syscall(60, 1, "/usr/bin/bash", "openat"))
    assert host.containerid == ""


def test_shim_v1_workdir_form():
    argv = ["containerd-shim", "-namespace", "moby", "-workdir",
            f"/var/lib/containerd/io.containerd.runtime.v1.linux/moby/{CID}", "-address", "/run/containerd.sock"]
    assert containers.from_shim("/usr/bin/containerd-shim", argv) == CID[:12]
    assert containers.from_shim("/usr/bin/bash", argv) == ""


@pytest.mark.parametrize("text,expected", [
    (f"0::/system.slice/docker-{CID}.scope\n", CID[:12]),
    (f"12:memory:/docker/{CID}\n11:cpu:/docker/{CID}\n", CID[:12]),
    ("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1a2b3c4d_5e6f.slice/"
     f"cri-containerd-{CID}.scope\n", CID[:12]),
    (f"0::/machine.slice/libpod-{CID}.scope/container\n", CID[:12]),
    (f"1:name=systemd:/kubepods/besteffort/pod1a2b3c4d-5e6f/{CID}\n", CID[:12]),
    ("0::/user.slice/user-1000.slice/session-3.scope\n", ""),
    ("4:memory:/process_api/4cc6cc715c25152c91c65d777017b214\n0::/\n", ""),  # 32 hex: not a container id
    ("", ""),
])
def test_container_id_from_cgroup(text, expected):
    assert containers.from_cgroup(text) == expected


def test_parent_exe_and_cmdline_reach_the_json_format():
    h, tree = History(), ProcessTree()
    observe(tree, h.execve(70, 1, "/usr/bin/bash", ["bash", "-c", "ls /tmp | wc"]))
    rec = observe(tree, h.execve(71, 70, "/usr/bin/ls", ["ls", "/tmp"]))
    assert rec.extra == {"parent_exe": "/usr/bin/bash", "parent_cmdline": 'bash -c "ls /tmp | wc"'}
    obj = json.loads(json_format.format_record(rec))
    assert obj["parent_exe"] == "/usr/bin/bash" and obj["parent_cmdline"] == 'bash -c "ls /tmp | wc"'
    assert "parent_exe" not in mstic.format_record(rec)  # the MSTIC line is unchanged


def test_a_parent_first_known_as_a_ppid_is_filled_in_later():
    h, tree = History(), ProcessTree()
    observe(tree, h.syscall(81, 80, "/usr/bin/child", "openat"))
    stub = tree.get(80)
    assert stub is not None and not stub.known and tree.get(81).parent is stub
    rec = observe(tree, h.syscall(81, 80, "/usr/bin/child", "openat"))
    assert rec.extra is None  # nothing known about the parent yet
    observe(tree, h.syscall(80, 1, "/usr/sbin/daemon", "openat"))
    assert stub.known and stub.exe == "/usr/sbin/daemon" and tree.get(80) is stub
    assert observe(tree, h.syscall(81, 80, "/usr/bin/child", "openat")).extra["parent_exe"] == "/usr/sbin/daemon"


def test_pid_reuse_and_reparenting():
    h, tree = History(), ProcessTree()
    observe(tree, h.execve(90, 1, "/usr/bin/dpkg"))
    observe(tree, h.execve(91, 90, "/usr/bin/daemon"))
    first = tree.get(91)
    observe(tree, h.syscall(91, 1, "/usr/bin/daemon", "openat"))  # dpkg exited: reparented to init
    assert tree.get(91) is first and first.parent.exe == "/usr/bin/dpkg"  # ancestry kept
    observe(tree, h.syscall(91, 33, "/usr/bin/other", "openat"))  # another process got pid 91
    assert tree.get(91) is not first and tree.counters["pid_reused"] == 1


def test_exec_without_an_audited_execve_is_noticed_from_exe():
    h, tree = History(), ProcessTree()
    observe(tree, h.execve(95, 1, "/usr/bin/bash"))
    proc = tree.get(95)
    observe(tree, h.syscall(95, 1, "/usr/bin/python3", "openat", proctitle=["python3", "x.py"]))
    assert tree.get(95) is proc and proc.exe == "/usr/bin/python3" and proc.cmdline == "python3 x.py"


def test_exited_processes_expire_and_memory_is_bounded():
    h = History()
    tree = ProcessTree(exit_grace=60, check_interval=30, max_processes=100)
    observe(tree, h.execve(100, 1, "/bin/short"))
    observe(tree, h.syscall(100, 1, "/bin/short", "exit_group"))
    assert tree.get(100).exited_at is not None
    h.sec += 200  # the log's clock moves on
    observe(tree, h.syscall(101, 1, "/bin/other", "openat"))
    assert tree.get(100) is None and tree.counters["expired"] >= 1
    for pid in range(1000, 1300):
        observe(tree, h.execve(pid, 1, "/bin/many"))
    assert len(tree) <= 100 and tree.counters["evicted"] > 0
    assert tree.get(1299) is not None  # the most recent stay


# ---- live: this host's /proc and process connector ----------------------------------------------------------

def test_procfs_reads_this_process():
    info = procfs.read_process(os.getpid())
    assert info.ppid == os.getppid() and info.uid == os.getuid() and info.gid == os.getgid()
    assert info.exe == os.path.realpath(sys.executable)
    assert "pytest" in info.cmdline
    assert procfs.read_process(2) is None  # kthreadd: a kernel thread, never a filter subject


def test_seeding_from_proc_links_this_process_to_its_parent():
    tree = ProcessTree(read_proc=True)
    assert tree.seed_from_proc() > 1
    me = tree.get(os.getpid())
    assert me.exe == os.path.realpath(sys.executable) and me.parent is tree.get(os.getppid())


def test_live_first_sight_takes_the_full_cmdline_from_proc():
    long_arg = "x" * 300  # beyond the 128 bytes of a proctitle
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", long_arg])
    try:
        time.sleep(0.2)
        h = History()
        tree = ProcessTree(read_proc=True)
        exe = os.path.realpath(sys.executable)
        event = h.syscall(child.pid, os.getpid(), exe, "openat",
                          proctitle=[sys.executable, "-c", "import time; time.sleep(30)", long_arg])
        tree.observe(event)
        proc = tree.get(child.pid)
        assert proc.cmdline.endswith(long_arg)
        assert len(event[0].cmdline) < 140  # what the event alone carried
        assert proc.parent.pid == os.getpid() and proc.parent.exe == exe  # parent read from /proc
    finally:
        child.kill()
        child.wait()


def test_live_sweep_notices_exits_through_proc():
    child = subprocess.Popen(["sleep", "30"])
    h = History()
    tree = ProcessTree(read_proc=True, check_interval=5, exit_grace=10)
    tree.observe(h.syscall(child.pid, os.getpid(), "/usr/bin/sleep", "openat"))
    child.kill()
    child.wait()
    h.sec += 10
    tree.observe(h.syscall(os.getpid(), os.getppid(), os.path.realpath(sys.executable), "openat"))
    assert tree.get(child.pid).exited_at is not None
    h.sec += 20
    tree.observe(h.syscall(os.getpid(), os.getppid(), os.path.realpath(sys.executable), "openat"))
    assert tree.get(child.pid) is None


def test_process_connector_links_a_fork_to_its_parent():
    tree = ProcessTree(read_proc=True)
    tree.seed_from_proc()
    connector = ProcConnector(tree)
    if not connector.start():
        pytest.skip("no process connector here (needs root and CONFIG_PROC_EVENTS)")
    try:
        # a shell that forks a subshell which exits at once: never seen by audit or a /proc scan
        shell = subprocess.run(["sh", "-c", "(exit 0); echo $$"], capture_output=True, text=True)
        shell_pid = int(shell.stdout)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and connector.counters["exits"] < 2:
            time.sleep(0.05)
        h = History()
        tree.observe(h.syscall(os.getpid(), os.getppid(), os.path.realpath(sys.executable), "openat"))
        sh = tree.get(shell_pid)
        assert sh is not None and sh.parent is tree.get(os.getpid())
        assert sh.exited_at is not None
        assert tree.counters["forks"] >= 2
    finally:
        connector.stop()


def test_the_connector_asks_kernels_from_6_6_for_fork_and_exit_only():
    from auoms_py.procs.connector import kernel_filters_events
    assert kernel_filters_events("6.6.0") and kernel_filters_events("6.18.44-fc-v1045")
    assert not kernel_filters_events("6.5.13-arch1") and not kernel_filters_events("5.15.0-1057-azure")
    assert not kernel_filters_events("4.19") and not kernel_filters_events("weird")


def test_process_connector_gets_no_exec_notifications_where_the_kernel_filters():
    """On this kernel (6.18) the listener's filter holds: an exec storm costs the connector thread forks and
    exits only (one datagram each), not execs, comm and id changes as well."""
    from auoms_py.procs.connector import kernel_filters_events
    if not kernel_filters_events():
        pytest.skip("kernel before 6.6: no per-listener filter")
    tree = ProcessTree(read_proc=True)
    connector = ProcConnector(tree)
    if not connector.start():
        pytest.skip("no process connector here (needs root and CONFIG_PROC_EVENTS)")
    try:
        for _ in range(20):
            subprocess.run(["/bin/true"], check=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and connector.counters["exits"] < 20:
            time.sleep(0.05)
        assert connector.counters["forks"] >= 20 and connector.counters["exits"] >= 20
        assert connector.counters["other"] == 0
    finally:
        connector.stop()


def test_over_the_bound_exited_processes_go_before_running_ones():
    h = History()
    tree = ProcessTree(exit_grace=3600, check_interval=3600, max_processes=100)
    for pid in range(2000, 2060):  # running, seen first (the longest unseen)
        observe(tree, h.execve(pid, 1, "/bin/daemon"))
    h.sec += 1
    for pid in range(3000, 3030):  # seen later, but exited
        observe(tree, h.execve(pid, 1, "/bin/short"))
        observe(tree, h.syscall(pid, 1, "/bin/short", "exit_group"))
    h.sec += 1
    for pid in range(4000, 4020):  # running, newest: over the bound now
        observe(tree, h.execve(pid, 1, "/bin/new"))
    tree.check_bound()
    evicted = tree.counters["evicted"]
    assert 0 < evicted < 30 and len(tree) <= 100  # one eviction, down to 75 % of the bound, all from the exited
    assert sum(tree.get(pid) is None for pid in range(3000, 3030)) == evicted
    assert all(tree.get(pid) is not None for pid in [*range(2000, 2060), *range(4000, 4020)])


def test_an_execve_read_after_the_connector_saw_its_process_exit_does_not_read_proc(tmp_path):
    """The process connector runs ahead of audit: a short-lived program has usually exited, and been noted, by the
    time its execve event is read. Its /proc entry is gone, or belongs to the pid's next owner, which must not lend
    the event its container id; the process stays exited."""
    (tmp_path / "51").mkdir()
    (tmp_path / "51" / "cgroup").write_text(f"0::/system.slice/docker-{CID}.scope\n")  # the pid's next owner
    h = History()
    tree = ProcessTree(read_proc=True, proc_root=str(tmp_path))
    observe(tree, h.execve(50, 1, "/usr/bin/bash", ["bash"]))
    tree.note_fork(51, 50)
    tree.note_exit(51)
    rec = observe(tree, h.execve(51, 50, "/usr/bin/true", ["true"]))
    assert rec.containerid == ""  # its parent's, not that of /proc/51 now
    proc = tree.get(51)
    assert proc.exe == "/usr/bin/true" and proc.parent is tree.get(50)
    assert proc.exited_at is not None
    assert tree.counters["execs_after_exit"] == 1
    # without the connector's note the process is taken to be alive, and /proc is read
    tree = ProcessTree(read_proc=True, proc_root=str(tmp_path))
    observe(tree, h.execve(50, 1, "/usr/bin/bash", ["bash"]))
    assert observe(tree, h.execve(51, 50, "/usr/bin/true", ["true"])).containerid == CID[:12]
    assert tree.get(51).exited_at is None and tree.counters["execs_after_exit"] == 0


def test_an_exit_group_event_before_an_execve_of_the_same_pid_is_the_previous_process():
    h, tree = History(), ProcessTree()
    observe(tree, h.execve(50, 1, "/usr/bin/bash", ["bash"]))
    observe(tree, h.execve(51, 50, "/usr/bin/true", ["true"]))
    observe(tree, h.syscall(51, 50, "/usr/bin/true", "exit_group"))
    assert tree.get(51).exited_at is not None
    observe(tree, h.execve(51, 50, "/usr/bin/sleep", ["sleep", "60"]))  # the pid's next process, from the same parent
    assert tree.get(51).exited_at is None and tree.get(51).exe == "/usr/bin/sleep"


def test_process_connector_drained_from_the_callers_loop():
    """The agent's mode: no thread; forks and exits queued on the socket are noted when the loop drains them."""
    tree = ProcessTree(read_proc=True)
    connector = ProcConnector(tree)
    if not connector.start(thread=False):
        pytest.skip("no process connector here (needs root and CONFIG_PROC_EVENTS)")
    try:
        assert connector.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 8 << 20  # seconds of a storm
        children = [subprocess.Popen(["/bin/true"]) for _ in range(40)]  # ~120 datagrams: one drain reads them all
        for child in children:
            child.wait()
        time.sleep(0.1)
        assert connector.counters["forks"] == 0  # nothing read without a drain: no thread
        read = connector.drain()
        assert read >= 80 and connector.counters["exits"] >= 40
        h = History()
        tree.observe(h.syscall(os.getpid(), os.getppid(), os.path.realpath(sys.executable), "openat"))
        for child in children:  # every child's fork and exit came from that one drain (the socket sees the whole
            proc = tree.get(child.pid)  # machine: a second drain may find other processes' events, so none is asked)
            assert proc is not None and proc.exited_at is not None and proc.parent is tree.get(os.getpid())
    finally:
        connector.stop()


def test_connector_datagrams_read_in_one_unpack_note_what_parse_finds():
    import struct

    from auoms_py.procs import connector as cn

    def message(what, *ints):
        event = struct.pack("=IIQ", what, 0, 0) + struct.pack("=6i", *(ints + (0,) * (6 - len(ints))))
        body = cn._CN_MSG.pack(cn.CN_IDX_PROC, cn.CN_VAL_PROC, 0, 0, len(event), 0) + event
        return cn._NLMSGHDR.pack(16 + len(body), cn.NLMSG_DONE, 0, 0, 0) + body

    datagrams = [message(cn.PROC_EVENT_FORK, 10, 10, 11, 11),  # a process
                 message(cn.PROC_EVENT_FORK, 10, 10, 12, 11),  # a thread of 11: not a process
                 message(cn.PROC_EVENT_EXIT, 11, 11, 0, 17), message(cn.PROC_EVENT_EXIT, 12, 11, 0, 0),
                 message(0x2, 11, 11), message(cn.PROC_EVENT_FORK, 10, 10, 13, 13) + message(cn.PROC_EVENT_EXIT, 13, 13)]
    tree = ProcessTree()
    connector = cn.ProcConnector(tree)
    connector._note(datagrams)
    assert [cn.parse(data) for data in datagrams] == [cn._parse_messages(data) for data in datagrams]
    expected = [entry for data in datagrams for entry in cn._parse_messages(data)]
    assert list(tree._pending) == [(1 if kind == "fork" else 2, pid, ppid) for kind, pid, ppid in expected
                                   if kind != "other"]
    assert list(tree._pending) == [(1, 11, 10), (2, 11, 0), (1, 13, 10), (2, 13, 0)]
    assert connector.counters == {"forks": 2, "exits": 2, "other": 1, "overruns": 0}
