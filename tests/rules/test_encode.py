"""Encoding against go-libaudit's goldens (auditctl's own bytes), listing text, and the generated tables."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from auoms_py.kernel.ruledata import RuleData
from auoms_py.rules.encode import RuleError, c_integer, format_rule, kernel_form, with_keys
from auoms_py.rules.syntax import parse_text
from tests.paths import REFERENCE, REPO

GOLDENS = REFERENCE / "peers/go-libaudit/rule/testdata"


def golden_cases(path: Path) -> list[dict]:
    return [case for doc in yaml.safe_load_all(path.read_text()) if doc for case in doc["rules"]]


def only_rule(text: str, **kwargs):
    result = parse_text(text, "t.rules", host_machine=kwargs.pop("host_machine", "x86_64"), **kwargs)
    assert not result.errors, [str(e) for e in result.errors]
    assert len(result.rules) == 1
    return result.rules[0]


@pytest.mark.parametrize("golden", sorted(GOLDENS.glob("*.rules.golden.yml")), ids=lambda p: p.name)
def test_go_libaudit_goldens_byte_for_byte(golden: Path):
    """*.golden.yml hold the rule as the kernel listed it after auditctl loaded it (x86_64 host), padded to 4 bytes
    as netlink carries it. Watches: auditctl stats the path; the golden's first field says what the path was."""
    cases = golden_cases(golden)
    assert cases
    for case in cases:
        expected = case["bytes"]
        was_dir = RuleData.unpack(expected).fields[0][0] == 107
        rule = only_rule(case["flags"])
        got = kernel_form(rule.kernel_data(is_dir=lambda _p: was_dir)).pack()
        assert got.ljust((len(got) + 3) & ~3, b"\0") == expected, case["flags"]


def test_go_libaudit_rule_data_send_form():
    """rule_data.yml holds what auditctl sends (before the kernel clears syscall-class bits)."""
    cases = golden_cases(GOLDENS / "rule_data.yml")
    assert len(cases) == 3
    for case in cases:
        assert only_rule(case["flags"]).data.pack() == case["bytes"], case["flags"]


@pytest.mark.parametrize("golden", sorted(GOLDENS.glob("*.golden.yml")), ids=lambda p: p.name)
def test_listing_text_parses_back_to_the_same_rule(golden: Path):
    for case in golden_cases(golden):
        data = RuleData.unpack(case["bytes"])
        text = format_rule(data, "x86_64")
        if any(isinstance(v, str) and (" " in v or v.endswith("/")) for _f, _o, v in data.fields):
            continue  # auditctl -l prints blanks in paths as they are, and -w drops a trailing slash
        again = only_rule(text)
        assert kernel_form(again.kernel_data(is_dir=lambda _p: data.fields[0][0] == 107)).pack() == data.pack(), text


@pytest.mark.parametrize("text, listed", [
    ("-a always,exit -F arch=b64 -S open,openat -F exit=-EACCES -k access",
     "-a always,exit -F arch=b64 -S open,openat -F exit=-EACCES -F key=access"),
    ("-a exit,always -S all -F auid>=1000 -F auid!=unset -F key=a -F key=b",
     "-a always,exit -S all -F auid>=1000 -F auid!=-1 -F key=a -F key=b"),
    ("-w /etc/shadow/ -p wa -k one -k two", "-w /etc/shadow -p wa -k one -k two"),
    ("-a always,exit -F path=/etc/x -F perm=wa", "-w /etc/x -p wa"),
    ("-a always,exit -F arch=b32 -S 11 -F a0&0x10 -F a1&=0x6", "-a always,exit -F arch=b32 -S execve -F a0&0x10 -F a1&=0x6"),
    ("-a always,exit -F arch=b64 -S execve -C uid!=euid -C auid=obj_uid",
     "-a always,exit -F arch=b64 -S execve -C uid!=euid -C auid=obj_uid"),
    ("-a always,exit -F arch=b64 -S execve -C euid!=uid", "-a always,exit -F arch=b64 -S execve -C uid!=euid"),
    ("-a always,exclude -F msgtype=CWD", "-a always,exclude -F msgtype=CWD"),
    ("-a never,exclude -F msgtype>=1300 -F msgtype<=1301", "-a never,exclude -F msgtype>=SYSCALL -F msgtype<=1301"),
    ("-a always,user -F uid=root -F gid=root", "-a always,user -F uid=0 -F gid=0"),
    ("-a never,filesystem -F fstype=tracefs", "-a never,filesystem -F fstype=tracefs"),
    ("-a always,exit -F arch=b64 -S openat -F filetype=dir -F inode=4294967295",
     "-a always,exit -F arch=b64 -S openat -F filetype=16384 -F inode=4294967295"),
    ("-a always,exit -F arch=b64 -S connect -F saddr_fam=10 -F success=1 -F exit=-115",
     "-a always,exit -F arch=b64 -S connect -F saddr_fam=10 -F success=1 -F exit=-EINPROGRESS"),
    ("-a always,exit -F arch=x86_64 -S execve -F exe=/usr/bin/sudo", "-a always,exit -F arch=b64 -S execve -F exe=/usr/bin/sudo"),
    ("-A always,exit -F arch=i386 -S socketcall", "-a always,exit -F arch=b32 -S socketcall"),
    ("-a always,exit -F arch=b64 -S execve -F subj_type=unconfined_t -F obj_user=x",
     "-a always,exit -F arch=b64 -S execve -F subj_type=unconfined_t -F obj_user=x"),
    ("-a always,exit -F arch=b64 -S execve -F sessionid=unset -F ppid=1 -F pers=0x10",
     "-a always,exit -F arch=b64 -S execve -F sessionid=-1 -F ppid=1 -F pers=16"),
])
def test_listing_is_auditctl_text(text, listed):
    assert format_rule(kernel_form(only_rule(text).data), "x86_64") == listed


def test_aarch64_host_resolves_names_in_its_own_table():
    rule = only_rule("-a always,exit -S openat -k x", host_machine="aarch64")
    assert rule.data.mask[56 // 32] == 1 << (56 % 32)  # openat is 56 on aarch64
    b32 = only_rule("-a always,exit -F arch=b32 -S openat", host_machine="aarch64")
    assert b32.data.fields[0][2] == 0x40000028  # arm


def test_with_keys_keeps_key_field_place_and_checks_length():
    data = only_rule("-a always,exit -F arch=b64 -S execve -k a -F uid=0").data
    assert [f[0] for f in data.fields] == [11, 1, 210]  # auditctl adds the keys last
    owned = with_keys(data, ["a", "auoms"])
    assert owned.keys == ["a", "auoms"] and [f[0] for f in owned.fields] == [11, 1, 210]
    with pytest.raises(RuleError):
        with_keys(data, ["k" * 200, "l" * 60])


@pytest.mark.parametrize("text, value", [("10", 10), ("0x10", 16), ("010", 8), ("-1", 0xFFFFFFFF),
                                         ("4294967296", 0), ("99999999999999999999", 0xFFFFFFFF)])
def test_c_integer_follows_strtol(text, value):
    assert c_integer(text) == value


@pytest.mark.parametrize("text", ["", "12abc", "0x", "08", "--1"])
def test_c_integer_refuses_garbage(text):
    with pytest.raises(ValueError):
        c_integer(text)


def test_generated_tables_are_current():
    if not Path("/usr/include/linux/audit.h").exists():
        pytest.skip("kernel headers (linux-libc-dev) not installed")
    proc = subprocess.run([sys.executable, str(REPO / "tools/gen_rule_tables.py"), "--check"])
    assert proc.returncode == 0, "auoms_py/rules/tables.py differs from tools/gen_rule_tables.py output"
