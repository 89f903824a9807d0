"""Real output events for output tests: AUOMS's reference inputs and crafted execs, through the real pipeline."""
from __future__ import annotations

from auoms_py.pipeline import Pipeline, UserDB
from tests.paths import AUOMS_REF, REFERENCE
from tests.pipeline.helpers import read_lines, run_lines


def reference_events() -> list[list]:
    """Every output event of AUOMS's raw_test_events.log and msticpy's audit.log (reference user db)."""
    return (run_lines(read_lines(AUOMS_REF / "raw_test_events.log"))
            + run_lines(read_lines(REFERENCE / "msticpy" / "auditd_log.txt")))


def _value(arg: bytes) -> str:
    text = arg.decode("latin-1")
    if arg and all(0x21 <= b < 0x7F and b != 0x22 for b in arg):
        return f'"{text}"'
    return arg.hex().upper()


def execve_lines(serial: int, argv: list[bytes], *, sec: int = 1795336975, pid: int = 7964) -> list[str]:
    """An exec event as auditd's plugin stream has it (records as the kernel writes them, EOE last)."""
    stamp = f"audit({sec}.946:{serial})"
    exe = argv[0].decode("latin-1") if argv and argv[0].startswith(b"/") else "/usr/bin/echo"
    args = " ".join(f"a{i}={_value(a)}" for i, a in enumerate(argv))
    return [
        f"type=SYSCALL msg={stamp}: arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=1 "
        f"ppid=1 pid={pid} auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=3 "
        f'comm="echo" exe="{exe}" key="test"',
        f"type=EXECVE msg={stamp}: argc={len(argv)} {args}",
        f'type=CWD msg={stamp}: cwd="/tmp"',
        f'type=PATH msg={stamp}: item=0 name="{exe}" inode=1 dev=fe:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 '
        f"nametype=NORMAL",
        f"type=EOE msg={stamp}: ",
    ]


def execve_event(argv: list[bytes], serial: int = 1) -> list:
    """The one output event (list of OutputRecord) for an exec of argv."""
    pipe = Pipeline(UserDB(str(AUOMS_REF / "passwd"), str(AUOMS_REF / "group")))
    events = []
    for line in execve_lines(serial, argv):
        events += pipe.feed_line(line, 0.0)
    events += pipe.flush()
    assert len(events) == 1, events
    return events[0]
