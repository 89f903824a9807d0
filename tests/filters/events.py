"""Audit log lines for a scripted process history, run through the real pipeline into real OutputRecords.

Tests describe what processes do (exec a program, open a file, connect ...); this writes the records the kernel
would log for it (auditd log shape: SYSCALL, EXECVE, PROCTITLE, EOE) and feeds them to `Pipeline.feed_line`.
"""
from __future__ import annotations

import itertools

from auoms_py.pipeline import Pipeline, UserDB
from auoms_py.pipeline.tables.syscalls import SYSCALL_NAMES
from tests.paths import AUOMS_REF

_NUMBERS = {name: nr for nr, name in SYSCALL_NAMES["x86_64"].items()}
REFERENCE_USERDB = (str(AUOMS_REF / "passwd"), str(AUOMS_REF / "group"))


def _quoted_or_hex(text: str) -> str:
    raw = text.encode("utf-8")
    if all(0x21 <= b < 0x7F and b != 0x22 for b in raw):
        return f'"{text}"'
    return raw.hex().upper()


class History:
    """Makes output events one by one: `h.execve(pid, ppid, exe, argv)`, `h.syscall(pid, ppid, exe, "openat")`."""

    def __init__(self, start: int = 1_700_000_000, userdb: UserDB | None = None):
        self.pipeline = Pipeline(userdb or UserDB(*REFERENCE_USERDB), log_time=True, flush_timeout=1.0)
        self.serials = itertools.count(1000)
        self.sec = start
        self.lines: list[str] = []  # every line written (for tests that replay them as a file)

    def lines_for(self, pid: int, ppid: int, exe: str, syscall: str, *, uid: int = 0, gid: int = 0,
                  argv: list[str] | None = None, proctitle: list[str] | None = None, key: str | None = None,
                  success: bool = True) -> list[str]:
        serial = next(self.serials)
        self.sec += 1
        stamp = f"audit({self.sec}.000:{serial})"
        comm = exe.rpartition("/")[2][:15]
        key_text = _quoted_or_hex(key) if key else "(null)"
        lines = [
            f"type=SYSCALL msg={stamp}: arch=c000003e syscall={_NUMBERS[syscall]} success={'yes' if success else 'no'} "
            f"exit={0 if success else -2} a0=0 a1=0 a2=0 a3=0 items=0 ppid={ppid} pid={pid} auid=1000 uid={uid} "
            f"gid={gid} euid={uid} suid={uid} fsuid={uid} egid={gid} sgid={gid} fsgid={gid} tty=(none) ses=1 "
            f"comm=\"{comm}\" exe={_quoted_or_hex(exe)} key={key_text}"
        ]
        if argv is not None and syscall == "execve" and success:
            args = " ".join(f"a{i}={_quoted_or_hex(a)}" for i, a in enumerate(argv))
            lines.append(f"type=EXECVE msg={stamp}: argc={len(argv)} {args}")
        title = proctitle if proctitle is not None else (argv if argv is not None else [exe])
        lines.append(f"type=PROCTITLE msg={stamp}: proctitle={chr(0).join(title).encode()[:128].hex().upper()}")
        lines.append(f"type=EOE msg={stamp}: ")
        return lines

    def event(self, lines: list[str]) -> list:
        self.lines += lines
        out = []
        for line in lines:
            out += self.pipeline.feed_line(line)
        assert len(out) == 1, out
        return out[0]

    def execve(self, pid: int, ppid: int, exe: str, argv: list[str] | None = None, **kw) -> list:
        return self.event(self.lines_for(pid, ppid, exe, "execve", argv=argv or [exe], **kw))

    def syscall(self, pid: int, ppid: int, exe: str, syscall: str, **kw) -> list:
        return self.event(self.lines_for(pid, ppid, exe, syscall, **kw))

    def user_event(self, pid: int = 500) -> list:
        serial = next(self.serials)
        self.sec += 1
        line = (f"type=USER_LOGIN msg=audit({self.sec}.000:{serial}): pid={pid} uid=0 auid=1000 ses=3 "
                f"msg='op=login id=1000 exe=\"/usr/sbin/sshd\" hostname=? addr=10.0.0.1 terminal=sshd res=success'")
        self.lines.append(line)
        out = self.pipeline.feed_line(line)
        assert len(out) == 1, out
        return out[0]
