"""Reading a process from /proc: parent, real uid/gid, executable, command line, cgroup.

Used by the live agent only (replay never looks at this host). Every read may race with the process exiting:
a vanished process gives None, never an exception.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from auoms_py.pipeline.escape import join_args, split_proctitle

_DELETED = " (deleted)"


@dataclass(slots=True)
class ProcInfo:
    pid: int
    ppid: int
    uid: int | None
    gid: int | None
    exe: str | None  # latin-1-decoded path; None for kernel threads or when unreadable
    cmdline: str  # arguments joined and shell-escaped as AUOMS writes a proctitle (reference §5)
    cgroup: str  # /proc/PID/cgroup text ("" when unreadable)


def format_cmdline(raw: bytes) -> str:
    """/proc/PID/cmdline bytes -> the cmdline text filters match (NUL-separated arguments, shell-escaped)."""
    return join_args(split_proctitle(raw.decode("latin-1")))


def list_pids(root: str = "/proc") -> list[int]:
    try:
        return [int(name) for name in os.listdir(root) if name.isdecimal()]
    except OSError:
        return []


def exists(pid: int, root: str = "/proc") -> bool:
    return os.path.exists(f"{root}/{pid}")


def _read(path: str) -> bytes | None:
    # os.open/os.read: a buffered file object costs several times the read itself, once per exec in a storm
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_exe(pid: int, root: str = "/proc") -> str | None:
    try:
        target = os.readlink(f"{root}/{pid}/exe".encode())
    except OSError:
        return None
    text = target.decode("latin-1")
    if text.endswith(_DELETED):  # the binary was replaced or removed since it started (package upgrade)
        text = text[: -len(_DELETED)]
    return text


def read_cgroup(pid: int, root: str = "/proc") -> str:
    data = _read(f"{root}/{pid}/cgroup")
    return data.decode("latin-1") if data else ""


def read_process(pid: int, root: str = "/proc", with_cgroup: bool = True) -> ProcInfo | None:
    """One process, or None if it is gone (or is a kernel thread: no executable and no command line)."""
    stat = _read(f"{root}/{pid}/stat")
    if stat is None:
        return None
    # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'
    _, _, rest = stat.rpartition(b")")
    parts = rest.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    ppid = int(parts[1])
    uid = gid = None
    status = _read(f"{root}/{pid}/status")
    if status:
        for line in status.split(b"\n"):
            if line.startswith(b"Uid:"):
                uid = int(line.split()[1])
            elif line.startswith(b"Gid:"):
                gid = int(line.split()[1])
                break
    exe = read_exe(pid, root)
    raw_cmdline = _read(f"{root}/{pid}/cmdline") or b""
    if exe is None and not raw_cmdline:
        return None  # kernel thread (or a zombie): never the subject of a filter
    cgroup = read_cgroup(pid, root) if with_cgroup else ""
    return ProcInfo(pid, ppid, uid, gid, exe, format_cmdline(raw_cmdline), cgroup)
