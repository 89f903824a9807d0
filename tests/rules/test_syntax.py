"""auditctl syntax: what parses, what is refused (file:line), control lines, directories."""
from __future__ import annotations

import pytest

from auoms_py.rules import tables
from auoms_py.rules.encode import OP
from auoms_py.rules.syntax import load_rules_dir, natural_key, parse_path, parse_text, split_words

EXIT = tables.LISTS["exit"]


def parse(text: str, **kwargs):
    return parse_text(text, "x.rules", host_machine=kwargs.pop("host_machine", "x86_64"), **kwargs)


def errors(text: str, **kwargs) -> list[str]:
    return [str(e) for e in parse(text, **kwargs).errors]


def test_bad_lines_are_reported_with_file_and_line_and_the_rest_loads():
    text = "\n".join([
        "# comment",
        "-a always,exit -F arch=b64 -S execve -k exec",
        "-a always,exit -F arch=b64 -S nosuchcall",
        "",
        "   # indented comment",
        "-a always,sometimes -S open",
        "-w /etc/passwd -p wa -k identity",
        "-F uid=0",
        "-a always,exit -F arch=b64 -S openat -F colour=red",
        "-a always,exit -F arch=b64 -S openat -F uid",
    ])
    result = parse(text)
    assert [r.line for r in result.rules] == [2, 7]
    assert [str(e) for e in result.errors] == [
        "x.rules:3: syscall name unknown on x86_64: nosuchcall",
        "x.rules:6: unknown list or action 'sometimes' (lists: task, exit, user, exclude, filesystem, io_uring; "
        "actions: always, never)",
        "x.rules:8: the list (-a/-A/-d) must be given before -F",
        "x.rules:9: -F unknown field: colour",
        "x.rules:10: -F missing operator in 'uid' (one of = != < > <= >= & &=)",
    ]


@pytest.mark.parametrize("symbol", ["=", "!=", "<", ">", "<=", ">=", "&", "&="])
def test_every_operator(symbol):
    (rule,) = parse(f"-a always,exit -F arch=b64 -S openat -F a2{symbol}0x40").rules
    assert rule.data.fields[1] == (202, OP[symbol], 0x40)


def test_syscalls_names_numbers_lists_repeats_and_all():
    (rule,) = parse("-a always,exit -F arch=b64 -S open,openat -S 59 -S CONNECT").rules
    bits = {nr for nr in range(2048) if rule.data.mask[nr // 32] & (1 << (nr % 32))}
    assert bits == {2, 257, 59, 42}
    (rule,) = parse("-a always,exit -S all -F exit=-EPERM").rules
    assert rule.data.mask == [0xFFFFFFFF] * 64
    (rule,) = parse("-a always,exit -F arch=b32 -S open").rules
    assert rule.data.mask[0] == 1 << 5  # i386 open


def test_rule_without_syscalls_covers_all_except_on_task_list():
    (rule,) = parse("-a always,exit -F path=/etc/shadow -F perm=r").rules
    assert rule.data.mask == [0xFFFFFFFF] * 64
    (rule,) = parse("-a never,task -F uid=0").rules
    assert rule.data.mask == [0] * 64


def test_keys_several_and_as_field():
    (rule,) = parse("-a always,exit -F arch=b64 -S execve -k one -F key=two -k three").rules
    assert rule.keys == ["one", "two", "three"]
    assert rule.data.fields[-1] == (210, OP["="], "one\x01two\x01three")


@pytest.mark.parametrize("text, message", [
    ("-a always,exit -F arch=b64 -k early -S execve", "-k needs a watch or syscall given before it"),
    ("-a always,exit -S execve -F arch=b64", "arch must be given before -S"),
    ("-a always,task -S execve", "syscalls can't be given for the task list"),
    ("-a always,exclude -S execve", "syscalls can't be given for the exclude list"),
    ("-a always,exit -F arch=b64 -S execve -k " + "k" * 257, "keys exceed 256 bytes together"),
    ("-a always,task -F exit=1", "exit can only be used with the exit list"),
    ("-a always,exit -F arch=b64 -S open -F msgtype=CWD", "msgtype can only be used with the exclude or user list"),
    ("-a always,exclude -F msgtype=NOPE", "msgtype=NOPE: unknown message type"),
    ("-a always,exit -F arch=b64 -S open -F exit=-EWHATEVER", "-F unknown errno: -EWHATEVER"),
    ("-a always,exit -F arch=b64 -S open -F uid=nosuchuser", "unknown user: nosuchuser"),
    ("-a always,exit -F arch=b64 -S open -F gid=nosuchgroup", "unknown group: nosuchgroup"),
    ("-a always,exit -F arch=b64 -S open -F pid=abc", "-F value should be a number for pid"),
    ("-a always,exit -F arch=b64 -S open -F a0=12abc", "-F value should be a number for a0: 12abc"),
    ("-a always,exit -F arch=b64 -S open -F exe>/bin/ls", "exe only takes = or != operators"),
    ("-a always,exit -F arch=sparc -S open", "arch=sparc: unknown machine type (use b64, b32, or a name such as x86_64)"),
    ("-a always,exit -F arch=b64 -S open -F perm=rwz", "permission z is not supported (only r, w, x, a)"),
    ("-a always,exit -F arch=b64 -S open -F filetype=pipe", "-F unknown file type: pipe (use socket, link, file, "
                                                             "block, dir, character, fifo)"),
    ("-a always,exit -F arch=b64 -S open -C uid=gid", "-C incompatible comparison: uid=gid"),
    ("-a always,exit -F arch=b64 -S open -C uid>euid", "-C only takes = or != operators: uid>euid"),
    ("-a always,user -C uid=euid", "-C can only be used with the exit list"),
    ("-a always,exit -F saddr_fam=99", "value is too large for field saddr_fam (address families end at 45)"),
    ("-a always,exit,never", "expected list,action such as always,exit: always,exit,never"),
    ("-a possible,exit", "action possible is deprecated (use always or never)"),
    ("-a always,exit -a always,exit", "only one -a, -A, -d, -w or -W per line"),
    ("-w etc/passwd", "the watch path must start with '/': etc/passwd"),
    ("-a always,exit -w /etc/passwd", "-w can't be given with -a, -A or -d"),
    ("-p wa", "-p needs a watch given before it"),
    ("-a always,exit stray", "unexpected word 'stray': not after an option that takes it"),
    ("-e 3", "-e must be 0, 1 or 2, was 3"),
    ("-b lots", "backlog must be a number, was lots"),
    ("-l", "-l (list) is not a rules file command"),
    ("-R other.rules", "-R (nested rule files) is not a rules file command"),
    ("-x", "unknown option -x"),
    ("-a always,io_uring -S openat", "the io_uring list takes io_uring operation numbers with -S, not names: openat"),
    ("-a always,exit -k", "option -k needs a value"),
    ("-w '/unclosed", "the watch path must start with '/': '/unclosed"),  # an unclosed quote is data
])
def test_refusals_say_what_is_wrong(text, message):
    assert errors(text) == [f"x.rules:1: {message}"]


def test_io_uring_list_takes_operation_numbers():
    from auoms_py.rules.encode import format_rule
    (rule,) = parse("-a always,io_uring -S 18,19 -F uid=0 -k ring").rules
    assert format_rule(rule.data, "x86_64") == "-a always,io_uring -S 18,19 -F uid=0 -F key=ring"


def test_exclude_list_fields():
    assert not errors("-a never,exclude -F msgtype=CWD -F uid=0 -F exe=/bin/ls")
    assert errors("-a never,exclude -F ppid=1") == [
        "x.rules:1: only msgtype, pid, uid, gid, auid, subj_* and exe can be used on the exclude list"]
    assert errors("-a never,exclude -F uid=0", features=0) == [
        "x.rules:1: field uid not supported by this kernel on the exclude list"]


def test_watch_forms():
    (rule,) = parse("-w /var/log/audit/ -p wxa -k audittampering").rules
    assert rule.watch_path == "/var/log/audit"
    assert rule.data.fields[:2] == [(105, OP["="], "/var/log/audit"), (106, OP["="], 1 | 2 | 8)]
    assert rule.kernel_data(is_dir=lambda p: True).fields[0][0] == 107
    (rule,) = parse("-w /etc/passwd").rules
    assert rule.data.fields == [(105, OP["="], "/etc/passwd"), (106, OP["="], 15)]
    (rule,) = parse("-W /etc/passwd -p wa").rules
    assert rule.op == "delete"


def test_words_escapes_and_quotes():
    assert split_words(r"-w /a\ b -k x\\y") == ["-w", "/a b", "-k", "x\\y"]
    assert split_words("-w '/a b' -k \"c d\"") == ["-w", "/a b", "-k", "c d"]
    assert split_words('-F key="abc"') == ["-F", 'key="abc"']  # inside a word, quotes are data (as auditctl)
    assert split_words("-a\talways,exit") == ["-a", "always,exit"]
    assert split_words("-Farch=b64") == ["-Farch=b64"]
    (rule,) = parse("-a always,exit -Farch=b64 -Sexecve -kx").rules
    assert rule.keys == ["x"]


def test_control_lines():
    result = parse("-D\n-b 8192\n-f 1\n-e 1\n-r 100\n--backlog_wait_time 60000\n--backlog_wait_time=1\n"
                   "--loginuid-immutable\n-i\n-c\n-D -k old")
    assert [(c.name, c.value) for c in result.controls] == [
        ("delete_all", None), ("backlog_limit", 8192), ("failure", 1), ("enabled", 1), ("rate_limit", 100),
        ("backlog_wait_time", 60000), ("backlog_wait_time", 1), ("loginuid_immutable", None),
        ("ignore_errors", None), ("continue_on_errors", None), ("delete_all", "old")]
    assert not result.errors
    assert result.control("backlog_wait_time").value == 1


def test_32_64_mismatch_warning_without_arch():
    result = parse("-a always,exit -S open")
    assert [str(w) for w in result.warnings] == [
        "x.rules:1: 32/64 bit syscall mismatch, you should specify an arch (-F arch=b64 or b32)"]
    assert not parse("-a always,exit -S all").warnings


def test_directory_natural_order_and_delete_by_key(tmp_path):
    (tmp_path / "10-a.rules").write_text("-a always,exit -F arch=b64 -S openat -k old\n")
    (tmp_path / "9-b.rules").write_text("-D\n-a always,exit -F arch=b64 -S execve -k first\n")
    (tmp_path / "20-c.rules").write_text("-D -k ol\n-a always,exit -F arch=b64 -S connect -k new\n")
    (tmp_path / "30-ignored.conf").write_text("-a always,exit -S all\n")
    result = load_rules_dir(tmp_path, host_machine="x86_64")
    assert [r.keys for r in result.rules] == [["first"], ["new"]]
    assert [p.rsplit("/", 1)[1] for p in result.files] == ["9-b.rules", "10-a.rules", "20-c.rules"]
    assert sorted(["10-x", "9-x", "100-x"], key=natural_key) == ["9-x", "10-x", "100-x"]


def test_missing_or_empty_path_gives_no_rules(tmp_path):
    assert parse_path(tmp_path / "nothing").rules == []
    assert load_rules_dir(tmp_path).rules == []


def test_delete_line_drops_an_identical_earlier_rule(tmp_path):
    path = tmp_path / "x.rules"
    path.write_text("-a always,exit -F arch=b64 -S execve -k e\n-w /etc/passwd -p wa\n"
                    "-d always,exit -F arch=b64 -S execve -k e\n-W /etc/passwd -p wa\n")
    assert parse_path(path).rules == []


def test_reference_files_parse_with_only_known_refusals():
    """AUOMS's research set: the only line auditctl refuses (timerfd is no x86_64 syscall) is refused here too."""
    from tests.paths import AUOMS_REF
    result = parse_path(AUOMS_REF / "mstic-research.rules")
    assert [(e.line, e.message) for e in result.errors] == [(2, "syscall name unknown on x86_64: timerfd")]
    assert len(result.rules) == 34
