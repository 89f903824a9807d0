"""The merge stage's fast path (whole-record caches) must write exactly what the general path writes."""
import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auoms_py.format import json as json_format
from auoms_py.format import mstic, oms
from auoms_py.pipeline import Pipeline, UserDB
from tests.paths import SHARED
from tests.pipeline.helpers import REFERENCE_USERDB, read_lines
from tests.pipeline.test_peer_logs import RAW_LOGS


FACTS = ("code", "type_name", "event_id", "node", "is_syscall", "syscall", "success", "pid", "ppid", "uid", "gid",
         "exe", "keys", "cmdline", "argv", "proctitle_argv", "dropped_records")


def outputs(lines, fast):
    pipeline = Pipeline(UserDB(*REFERENCE_USERDB), log_time=True, flush_timeout=1.0, fast=fast)
    events = []
    for line in lines:
        if line[:1] != "#" and line.strip():
            events += pipeline.feed_line(line)
    events += pipeline.flush()
    result = []
    for records in events:
        result.append(oms.format_event(records, frozenset()))
        for record in records:
            result.append(mstic.format_record(record, frozenset()))
            result.append(json_format.format_record(record))
            result.append({name: getattr(record, name) for name in FACTS})  # what filters and the process tree read
    return result, pipeline


def assert_same(lines):
    fast, pipeline = outputs(lines, True)
    general, _ = outputs(lines, False)
    assert fast == general
    return pipeline


@pytest.mark.parametrize("path", RAW_LOGS, ids=lambda path: str(path.relative_to(path.parents[1])))
def test_same_output_on_every_reference_log(path):
    assert_same(read_lines(path))


def test_same_output_on_the_benchmark_corpus_and_the_fast_path_is_taken(tmp_path):
    corpus = tmp_path / "corpus.raw"
    subprocess.run([sys.executable, str(SHARED / "bench" / "make_corpus.py"), "--events", "3000", "--seed", "7",
                    "--big-rate", "0.01", "-o", str(corpus)], check=True, capture_output=True)
    lines = read_lines(corpus)
    pipeline = assert_same(lines + lines)  # the second half runs on warm caches
    assert pipeline.merger.fast_events > 0.9 * (pipeline.merger.fast_events + pipeline.merger.general_events)


SYSCALL = ("type=SYSCALL msg=audit(1.001:{n}): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 "
           "items=1 ppid=1 pid=2 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 "
           'comm="x" exe="/bin/x" key="k"')


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([
    ' comm="a b"', " exe=2F62696E", "  ", " ", ' key=(null)', ' subj=unconfined', " items=3", ' a0="x y"',
    ' name="/a b"', " item=1", " nametype=", ' cwd="/"', " argc=2", ' a1="-l"', "\t", "=", ' "', "",
    " pid=7", " saddr=0100", " path_name=x", " argv=1",  # names another part of the record writes too
]), min_size=1, max_size=6), st.integers(min_value=0, max_value=5))
def test_same_output_on_mutated_records(mutations, where):
    """Records bent out of the kernel's layout: the fast path must notice and step aside, never differ."""
    records = [SYSCALL.format(n=1),
               'type=EXECVE msg=audit(1.001:1): argc=2 a0="x" a1="y"',
               'type=CWD msg=audit(1.001:1): cwd="/tmp"',
               'type=PATH msg=audit(1.001:1): item=0 name="/bin/x" inode=5 dev=fe:00 mode=0100755 ouid=0 ogid=0 '
               'rdev=00:00 nametype=NORMAL cap_fp=0',
               "type=PROCTITLE msg=audit(1.001:1): proctitle=7800790A",
               "type=SOCKADDR msg=audit(1.001:1): saddr=020000507F0000010000000000000000"]
    index = where % len(records)
    for mutation in mutations:
        records[index] += mutation
    records.append("type=EOE msg=audit(1.001:1): ")
    assert_same(records + [line.replace(":1)", ":2)") for line in records])


PATH_BODIES = [
    'item=0 name="/bin/x" inode={inode} dev=fe:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0',
    "item=0 inode={inode} name=2F612062 nametype=NORMAL",  # inode first
    'item=0 name="/x" nametype=NORMAL inode={inode}',  # inode last
    'item=0 name="/x" nametype=NORMAL inode={inode} ',  # and a trailing space
    "item=0 inode={inode}",
    'item=0 name="/tmp/gone" nametype=UNKNOWN cap_fp=0',  # no inode
    "item=0",
]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(PATH_BODIES) - 1),
                          st.sampled_from(["5", "260601", "0", "x", '"7"', "5\t", "", "-3", "5 inode=6"]),
                          st.integers(min_value=0, max_value=2), st.sampled_from(["9", "17", "a"])),
                min_size=1, max_size=5))
def test_same_output_when_only_inodes_differ(events):
    """The PATH set cache is keyed without inodes: events that differ only there must still write their own."""
    lines = []
    for serial, (layout, inode, more_paths, other_inode) in enumerate(events, start=1):
        lines.append(SYSCALL.format(n=serial).replace("items=1", f"items={1 + more_paths}"))
        lines.append(f"type=PATH msg=audit(1.001:{serial}): " + PATH_BODIES[layout].format(inode=inode))
        for item in range(1, 1 + more_paths):
            lines.append(f'type=PATH msg=audit(1.001:{serial}): item={item} name="/lib64/ld.so" inode={other_inode} '
                         "dev=fe:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL")
        lines.append(f"type=EOE msg=audit(1.001:{serial}): ")
    assert_same(lines)


def test_inodes_are_written_per_event_from_one_cached_path_set():
    lines = []
    for serial, inode in enumerate(("11", "22", "33"), start=1):
        lines += [SYSCALL.format(n=serial),
                  f"type=PATH msg=audit(1.001:{serial}): " + PATH_BODIES[0].format(inode=inode),
                  f"type=EOE msg=audit(1.001:{serial}): "]
    fast, pipeline = outputs(lines, True)
    written = [line for line in fast if isinstance(line, str) and line.startswith("type=AUOMS_EXECVE")]
    assert [line.split(" inode=")[1].split(" ")[0] for line in written] == ["11", "22", "33"]
    assert pipeline.merger.fast_events == 3 and len(pipeline.merger.path_sets) == 1


SYSCALL_TAILS = [
    'auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses={ses} comm="x" exe="/bin/x" key="k"',
    "ses={ses} auid=1000 uid=1000 gid=1000 tty=pts0 comm=\"x\" exe=\"/bin/x\" ",  # first, and no key
    'auid=0 uid=0 gid=0 comm="x" exe="/bin/x" ses={ses}',  # last
    'auid=0 uid=0 ses={ses} gid=0 ses=7 comm="x" exe="/bin/x" key=(null)',  # twice
    'auid=4294967295 uid=33 gid=33 tty=(none) comm="x" exe="/bin/x" key="k"',  # none
]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(SYSCALL_TAILS) - 1),
                          st.sampled_from(["1", "254", "4294967295", "-1", "x", '"3"', "", "5\t"])),
                min_size=1, max_size=6))
def test_same_output_when_only_sessions_differ(events):
    """A SYSCALL tail that misses is built from a cache keyed without `ses=`: each event keeps its own session."""
    lines = []
    for serial, (layout, ses) in enumerate(events, start=1):
        head = SYSCALL.format(n=serial).split(" auid=")[0]
        lines += [f"{head} {SYSCALL_TAILS[layout].format(ses=ses)}", f"type=EOE msg=audit(1.001:{serial}): "]
    assert_same(lines)


def test_a_second_syscall_record_is_folded_in_and_a_second_cwd_left_out():
    """The kernel writes one SYSCALL and one CWD per event; should a log hold two, the first makes the record,
    a second SYSCALL is kept as SYSCALL_* fields (nothing it says is lost) and a second CWD is left out."""
    lines = [SYSCALL.format(n=1), 'type=CWD msg=audit(1.001:1): cwd="/a"',
             SYSCALL.format(n=1).replace("pid=2", "pid=9"), 'type=CWD msg=audit(1.001:1): cwd="/b"',
             "type=EOE msg=audit(1.001:1): "]
    assert_same(lines)
    fast, _pipeline = outputs(lines, True)
    line = next(text for text in fast if text and text.startswith("type=AUOMS_EXECVE"))
    assert " pid=2 " in line and " SYSCALL_pid=9 " in line and 'cwd="/a"' in line and 'cwd="/b"' not in line


def test_cached_interpretations_follow_a_user_db_reload(tmp_path):
    """Names cached by the fast path (the SYSCALL tail, a folded OBJ_PID record) change when the user db does."""
    passwd, group = tmp_path / "passwd", tmp_path / "group"
    passwd.write_text("root:x:0:0::/:/bin/sh\nalice:x:1000:1000::/:/bin/sh\n")
    group.write_text("root:x:0:\n")
    clock = [0.0]
    pipeline = Pipeline(UserDB(str(passwd), str(group), check_interval=1.0, clock=lambda: clock[0]))
    event = [SYSCALL.format(n=1).replace("syscall=59", "syscall=62").replace("auid=0", "auid=1000"),
             "type=OBJ_PID msg=audit(1.001:1): opid=7 oauid=1000 ouid=1000 oses=1 ocomm=\"x\"",
             "type=EOE msg=audit(1.001:1): "]

    def fields(serial):
        out = []
        for line in event:
            out += pipeline.feed_line(line.replace(":1)", f":{serial})"))
        record = out[0][0]
        return record.get("audit_user"), record.merged[0].fields

    def login_user(serial):
        login = f"type=USER_LOGIN msg=audit(1.001:{serial}): pid=7 uid=1000 auid=1000 ses=3 msg='op=login res=success'"
        return pipeline.feed_line(login)[0][0].get("user")

    assert fields(1)[0] == "alice" and ("ouid", "alice", 0) in fields(2)[1]
    assert login_user(10) == "alice"
    passwd.write_text("root:x:0:0::/:/bin/sh\nbob:x:1000:1000::/:/bin/sh\n")
    clock[0] = 2.0
    pipeline.tick(clock[0])
    assert login_user(11) == "bob"  # a pass-through record first after the reload: its token cache is stale too
    user, merged = fields(3)
    assert pipeline.merger.fast_events == 3
    assert user == "bob" and ("ouid", "bob", 0) in merged and ("ouid", "alice", 0) not in merged


@pytest.mark.parametrize("whitespace", ["\t", "\x0b", "\x85", "\xa0", " ", "  x"])
def test_a_proctitle_beside_execve_with_whitespace_in_it_is_left_to_the_general_path(whitespace):
    """An AUOMS_EXECVE's PROCTITLE is kept raw, decoded only if a format asks: what is kept must be what the general
    path would read (str.split() splits at more than spaces)."""
    records = [SYSCALL.format(n=1), 'type=EXECVE msg=audit(1.001:1): argc=1 a0="x"',
               f"type=PROCTITLE msg=audit(1.001:1): proctitle=7800790A{whitespace}", "type=EOE msg=audit(1.001:1): "]
    assert_same(records + [line.replace(":1)", ":2)") for line in records])


USER_LOGIN = ("type=USER_LOGIN msg=audit(1.001:{n}): pid=7 uid=0 auid=1000 ses=3 subj=unconfined "
              "msg='op=login id=1000 exe=\"/usr/sbin/sshd\" hostname=? addr=10.0.0.1 terminal=ssh res=success'")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([
    ' acct="a b"', " exe=2F62696E", "  ", " ", " x", "\t", "=", ' "', "", " msg='", "'", " uid=x", " pid=8",
    " node=h", " uid=1000", ' exe="/x"', " ses=4294967295", " saddr=0100", "\x0b", " a=b=c",
]), min_size=1, max_size=6), st.integers(min_value=0, max_value=200), st.booleans())
def test_same_output_on_mutated_pass_through_records(mutations, at, with_node):
    """Records of non-syscall events take the token cache: bent out of shape, they must step aside, never differ."""
    record = USER_LOGIN.format(n=1)
    for mutation in mutations:
        position = min(at, len(record))
        record = record[:position] + mutation + record[position:]
    if with_node:
        record = "node=web-01 " + record
    assert_same([record, record.replace(":1)", ":2)"), "type=USER_ERR msg=audit(1.001:3): pid=1 uid=0 res=failed"])


@pytest.mark.parametrize("odd", ["\x01", "\x7f", "\x07\x1b(B", "\xe9", "\xff\xfe"])
@pytest.mark.parametrize("where", ["comm", "exe", "key", "cwd", "name", "arg", "proctitle", "saddr", "node", "pid",
                                   "opid"])
def test_control_and_non_ascii_bytes_are_escaped_wherever_they_come_from(odd, where):
    """The fast path escapes the texts it caches, and MSTIC lines made only of them are not checked again: a control
    or non-ASCII byte in any cached part (or in what is written as read) must come out escaped, as the general
    path writes it."""
    hexed = odd.encode("latin-1").hex().upper()
    quoted = {"comm": "comm", "exe": "exe", "key": "key", "cwd": "cwd", "name": "name", "arg": "a1"}
    syscall = SYSCALL if where != "pid" else SYSCALL.replace(" pid=2 ", f" pid=2{odd} ")
    if where == "opid":  # a name whose values are written as read, in a cached section
        syscall += f" opid=7{odd}"
    records = [syscall, 'type=EXECVE msg=audit(1.001:{n}): argc=2 a0="x" a1="y"',
               'type=CWD msg=audit(1.001:{n}): cwd="/tmp"',
               'type=PATH msg=audit(1.001:{n}): item=0 name="/bin/x" inode=5 dev=fe:00 mode=0100755 ouid=0 ogid=0 '
               "rdev=00:00 nametype=NORMAL cap_fp=0", "type=EOE msg=audit(1.001:{n}): "]
    if where in quoted:
        name = quoted[where]
        for index, record in enumerate(records):
            for value in ('"x"', '"/bin/x"', '"k"', '"/tmp"', '"y"'):
                if f" {name}={value}" in record:
                    kept = value.strip('"')
                    records[index] = record.replace(f" {name}={value}", f' {name}="{kept}{odd}"', 1)
                    break
    elif where == "proctitle":  # without EXECVE: the proctitle is written
        records[1] = f"type=PROCTITLE msg=audit(1.001:{{n}}): proctitle=78{hexed}79"
    elif where == "saddr":  # a local socket whose path holds the byte
        records.insert(1, f"type=SOCKADDR msg=audit(1.001:{{n}}): saddr=01002F74{hexed}00")
    elif where == "node":
        records = [f"node=h{odd} " + record for record in records]
    lines = [record.format(n=n) for n in (1, 2) for record in records]
    assert_same(lines)
    fast, pipeline = outputs(lines, True)
    assert pipeline.merger.fast_events == 2 or where == "pid"  # (a pid that is no number: the general path)
    written = [line for line in fast if isinstance(line, str) and line.startswith("type=")]  # the MSTIC lines
    assert written and odd not in "".join(written)
    assert all(line.isascii() and line.isprintable() for line in written)
    # the invariant format_lines trusts: every part of a record marked escaped is printable ASCII already
    pipeline = Pipeline(UserDB(*REFERENCE_USERDB), log_time=True, flush_timeout=1.0)
    escaped = [record for line in lines for records in pipeline.feed_line(line) for record in records
               if record.parts_escaped]
    assert len(escaped) == (0 if where in ("node", "pid") else 2)
    assert all(text.isascii() and text.isprintable() for record in escaped for text, _ in record.parts)
