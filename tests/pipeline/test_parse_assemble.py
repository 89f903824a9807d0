"""Parsing every input shape, and grouping records into events."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auoms_py.format import json as json_format
from auoms_py.format import mstic, oms
from auoms_py.pipeline import Pipeline
from auoms_py.pipeline.assemble import Assembler
from auoms_py.pipeline.model import EOE, Record
from auoms_py.pipeline.parse import (event_id_text, parse_line, parse_lines, parse_netlink, parse_text,
                                     split_fields)
from tests.paths import SAMPLES
from tests.pipeline.helpers import read_lines, records, run_lines

LINE = 'type=CWD msg=audit(1795336963.334:398): cwd="/tmp"'


@pytest.mark.parametrize("line", [
    LINE,
    "node=vm " + LINE,
    LINE + '\x1dOUID="root" OGID="root"',
    'type=CWD audit(1795336963.334:398): cwd="/tmp"',
    '1307 audit(1795336963.334:398): cwd="/tmp"',
    "type=UNKNOWN[1307] msg=audit(1795336963.334:398):  cwd=\"/tmp\"\n",
])
def test_every_input_shape_gives_the_same_record(line):
    record = Record(*parse_line(line))
    assert (record.code, record.type_name, record.key) == (1307, "CWD", "1795336963.334:398")
    assert record.fields() == [("cwd", '"/tmp"')]
    assert record.node == ("vm" if line.startswith("node=") else None)


def test_netlink_text_with_code_apart():
    record = Record(*parse_netlink(1309, 'audit(1795337143.426:45848): argc=2 a0="/bin/true" a1="MCAST_MARKER_42"'))
    assert record.type_name == "EXECVE" and record.get("a1") == '"MCAST_MARKER_42"'


@pytest.mark.parametrize("line, reason", [
    ("", "no type= field"),
    ("hello world", "no type= field"),
    ("type=SYSCALL", "no audit(...) event id"),
    ("type=SYSCALL msg=audit(12x.3:4): a=b", "bad event id audit(12x.3:4)"),
    ("type=SYSCALL msg=audit(1.2:3 a=b", "unterminated"),
    ("node=", "nothing after node="),
])
def test_malformed_lines_say_why(line, reason):
    pipeline = Pipeline(None)
    assert pipeline.feed_line(line) == [] and pipeline.flush() == []
    assert pipeline.counters["malformed"] == 1 and pipeline.counters["records"] == 0
    assert reason in pipeline.malformed_samples[0][0]


@pytest.mark.parametrize("logged, written", [
    ("1521757638.392:262332", "1521757638.392:262332"),  # the kernel's form: kept as it is
    ("0.000:0", "0.000:0"),
    ("1521757638.3921:7", "1521757638.392:7"),  # AUOMS and auditd read the first three digits of the fraction
    ("1521757638.5:7", "1521757638.500:7"),
    ("01521757638.392:007", "1521757638.392:7"),  # leading zeros
])
def test_event_ids_are_written_in_one_form(logged, written):
    """The event id is kept as text (the MSTIC line writes it as is); one logged in another form is normalized,
    and every format, and the numbers read from it, agree."""
    assert event_id_text(logged) == written
    line = f"type=USER_LOGIN msg=audit({logged}): pid=1 uid=0 res=success"
    (out,), = run_lines([line])
    assert mstic.format_record(out).startswith(f"type=USER_LOGIN audit({written}): ")
    sec, msec, serial = (int(number) for number in written.replace(".", ":").split(":"))
    assert (out.sec, out.msec, out.serial) == (sec, msec, serial)
    assert json.loads(json_format.format_record(out))["serial"] == serial
    assert oms.format_event([out]).startswith(f'[{float(written.partition(":")[0])!r},{{"MessageType":"AUDIT_EVENT",'
                                              f'"Timestamp":"{written.partition(":")[0]}","SerialNumber":{serial},')


def test_user_record_msg_is_unwrapped():
    fields = split_fields(1112, "pid=26475 uid=0 auid=1000 ses=91158 msg='op=login id=1000 exe=\"/usr/sbin/sshd\" "
                                "hostname=131.107.147.6 addr=131.107.147.6 terminal=/dev/pts/0 res=success'")
    assert [name for name, _ in fields] == ["pid", "uid", "auid", "ses", "op", "id", "exe", "hostname", "addr",
                                            "terminal", "res"]
    assert fields[-1] == ("res", "success")


def test_token_without_equals_is_a_field_with_empty_value():
    fields = split_fields(1400, 'avc:  denied  { read } for  pid=5 comm="cat"')
    assert fields[:3] == [("avc:", ""), ("denied", ""), ("{", "")]
    assert fields[-1] == ("comm", '"cat"')


def test_invalid_utf8_bytes_survive_parsing():
    raw = b'type=CWD msg=audit(1.001:1): cwd="/tmp/\xff\xfe"'
    record = Record(*parse_line(raw.decode("latin-1")))
    assert record.get("cwd").encode("latin-1") == b'"/tmp/\xff\xfe"'


def _rec(serial, code_name="SYSCALL"):
    return parse_line(f"type={code_name} msg=audit(100.000:{serial}): a=1")


def test_interleaved_events_come_out_whole():
    assembler = Assembler()
    out = []
    for serial, kind in [(1, "SYSCALL"), (2, "SYSCALL"), (1, "CWD"), (2, "CWD"), (2, "EOE"), (1, "PATH"),
                         (1, "EOE")]:
        out += assembler.add(_rec(serial, kind), 0.0)
    assert [(event.serial, [r[1] for r in event.records]) for event in out] == [
        (2, ["SYSCALL", "CWD"]), (1, ["SYSCALL", "CWD", "PATH"])]
    assert assembler.open_events == 0


def test_sample_interleaved_plugin_stream_assembles_every_event():
    events = run_lines(read_lines(SAMPLES / "plugin-enriched-interleaved.raw"))
    serials = [record.serial for record in records(events)]
    assert len(serials) == len(set(serials)) == 187  # one output record per event: none split, none merged


def test_idle_event_flushes_on_timer_without_more_input():
    assembler = Assembler(flush_timeout=0.2)
    assert not assembler.add(_rec(1), now=10.0)
    assert assembler.expire(now=10.1) == []
    (event,) = assembler.expire(now=10.3)
    assert event.serial == 1 and not event.complete
    assert assembler.counters["events_timed_out"] == 1


def test_single_record_types_complete_at_once():
    assembler = Assembler()
    (event,) = assembler.add(_rec(1, "USER_LOGIN"), 0.0)
    assert event.complete and event.records[0][1] == "USER_LOGIN"


def test_too_many_open_events_flush_oldest_first():
    assembler = Assembler(max_open_events=3)
    out = []
    for serial in range(1, 6):
        out += assembler.add(_rec(serial), 0.0)
    assert [event.serial for event in out] == [1, 2]
    assert assembler.counters["events_evicted"] == 2 and assembler.open_events == 3
    assert [event.serial for event in assembler.flush()] == [3, 4, 5]


def test_log_without_eoe_gives_one_event_per_event_id():
    """auditd's log file has no EOE: with the log's own clock, idle events flush as the records move time on."""
    lines = read_lines(SAMPLES / "var-log-audit-enriched.log")
    ids = {line.split("audit(", 1)[1].split(")", 1)[0] for line in lines if "audit(" in line}
    events = run_lines(lines)
    assert sorted(f"{e[0].sec}.{e[0].msec:03d}:{e[0].serial}" for e in events) == sorted(ids)


def test_an_internal_error_on_one_event_loses_only_that_event(monkeypatch):
    """A bug met by one event (here: the merge stage raising) is counted and reported; the others come out."""
    pipeline = Pipeline(None)
    original = pipeline.merger.event_records

    def fragile(event):
        if event.serial == 2:
            raise KeyError("boom")
        return original(event)

    monkeypatch.setattr(pipeline.merger, "event_records", fragile)
    lines = [f"type=USER_LOGIN msg=audit(1.001:{serial}): pid=1 uid=0 res=success" for serial in (1, 2, 3)]
    events = pipeline.feed_lines(lines)
    assert [records[0].serial for records in events] == [1, 3]
    assert pipeline.internal_errors == 1 and pipeline.counters["malformed"] == 1
    assert "internal error KeyError" in pipeline.malformed_samples[0][0]


# ---- the batch loop (Assembler.add_all) against one `add` per record -----------------------------------------------

def _reference_add(assembler, record, now):
    """One record added, step by step (what Assembler.add did before add_all added records inline)."""
    record = Record(*record)
    key = record.key
    event = assembler._open.get(key)
    if event is None:
        return assembler._first_record(record, key, now)
    if record.code == EOE:
        assembler.counters["eoe_records"] += 1
        del assembler._open[key]
        event.complete = True
        assembler.counters["events_complete"] += 1
        return (event,)
    event.touched = now
    size = len(record.body)
    if event.size + size > assembler.max_event_bytes:
        event.dropped_records += 1
        event.dropped_bytes += size
        assembler.counters["records_over_limit"] += 1
        return ()
    if record.node != event.node and not event.mixed_nodes:
        event.mixed_nodes = True
        assembler.counters["events_mixed_nodes"] += 1
    event.records.append(record)
    event.size += size
    return ()


def _add_one_by_one(assembler, items, parse, now, clock):
    """What add_all must do, spelled out per record: the loop the pipeline ran before add_all (with the log's clock
    read at every change of event id, and idle events expired before the record that finds them idle)."""
    completed, errors = [], []
    last_key = None
    next_expiry = assembler._next_expiry
    for index, item in enumerate(items):
        try:
            record = Record(*parse(item))
            if clock is not None and record.key != last_key:
                last_key = record.key
                now = clock(last_key)
            if now >= next_expiry:
                next_expiry = now + assembler.flush_timeout / 4
                completed += assembler.expire(now)
            completed += _reference_add(assembler, record, now)
        except Exception as exc:  # noqa: BLE001
            errors.append((index, str(exc)))
    assembler._next_expiry = next_expiry
    return completed, errors


def _log_clock():
    state = {"clock": 0}

    def clock(key):
        seconds = key.partition(".")[0]
        if seconds.isdigit() and int(seconds) > state["clock"]:
            state["clock"] = int(seconds)
        return state["clock"]
    return clock


def _assemble_both(batches, parse, log_time, **bounds):
    results = []
    for batched in (True, False):
        assembler = Assembler(flush_timeout=1.0, **bounds)
        clock = _log_clock() if log_time else None
        events, errors = [], []
        for number, batch in enumerate(batches):
            now = 0.0 if log_time else number * 0.3  # live: a clock that moves between batches
            if batched:
                events += assembler.add_all(batch, parse, clock("0.0:0") if log_time else now, clock,
                                            lambda index, item, exc: errors.append((index, str(exc))))
            else:
                got, errs = _add_one_by_one(assembler, batch, parse, clock("0.0:0") if log_time else now, clock)
                events += got
                errors += errs
        events += assembler.flush()
        results.append(([(e.key, e.records, e.complete, e.node, e.touched, e.dropped_records, e.dropped_bytes,
                          e.mixed_nodes) for e in events], errors, dict(assembler.counters)))
    return results


@pytest.mark.parametrize("bounds", [{}, {"max_open_events": 3, "max_event_bytes": 600}])
def test_add_all_equals_add_per_record_on_every_reference_log(bounds):
    from tests.pipeline.test_peer_logs import RAW_LOGS
    lines = [line for path in RAW_LOGS for line in read_lines(path) if line.strip() and line[:1] != "#"]
    lines[10:10] = ["garbage", "type=EOE msg=audit(1.1:999999): ", "type=CWD msg=audit(x:1): cwd=/"]
    batches = [lines[i:i + 37] for i in range(0, len(lines), 37)]
    batched, one_by_one = _assemble_both(batches, parse_line, True, **bounds)
    assert batched == one_by_one
    assert batched[2]["events_complete"] > 100 and batched[1]  # the malformed lines were heard of
    if bounds:
        assert batched[2]["events_evicted"] and batched[2]["records_over_limit"]


def test_add_all_equals_add_per_record_on_netlink_pairs():
    from auoms_py.pipeline.parse import parse_netlink_pair
    pairs = []
    for name in ("netlink-multicast-head200.txt", "netlink-multicast-execve.txt"):  # `CODE audit(...): ...`
        for line in read_lines(SAMPLES / name):
            code, _, text = line.partition(" ")
            if code.isdigit():
                pairs.append((int(code), text))
    pairs += [(1300, "audit(1.2:3): \x1dENRICHED"), (9999, "audit(1.2:4): x=1"), (1307, "nonsense"),
              (1320, "audit(1.2:3): "), (1307, 'audit(1.2:5):  cwd="/"\n')]
    batches = [pairs[i:i + 5] for i in range(0, len(pairs), 5)]
    batched, one_by_one = _assemble_both(batches, parse_netlink_pair, False)
    assert batched == one_by_one
    assert batched[1] and batched[2]["events_complete"] > 10
    # the inline shape parses as the general path does, for every pair
    from auoms_py.pipeline.parse import _parse_netlink_text
    for code, text in pairs:
        try:
            expected = _parse_netlink_text(code, text)
        except ValueError as exc:
            expected = str(exc)
        try:
            got = parse_netlink_pair((code, text))
        except ValueError as exc:
            got = str(exc)
        assert got == expected


def _each(lines):
    out = []
    for line in lines:
        try:
            out.append(parse_line(line))
        except ValueError:
            return None
    return out


def test_parse_lines_equals_parse_line_on_every_reference_log_and_sample():
    from tests.pipeline.test_peer_logs import RAW_LOGS
    taken_whole = enriched_whole = 0
    for path in RAW_LOGS:
        lines = [line for line in read_lines(path) if line.strip() and line[:1] != "#"]
        for batch in (lines[i:i + 50] for i in range(0, len(lines), 50)):
            got = parse_lines(batch)
            assert got == _each(batch), path  # None only where some line is malformed
            assert parse_text("\n".join(batch) + "\n") == got
            taken_whole += got is not None
            enriched_whole += got is not None and "\x1d" in "".join(batch)
    assert taken_whole > 20 and enriched_whole > 5


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([
    'type=SYSCALL msg=audit(1.2:3): arch=c000003e syscall=59', "type=EOE msg=audit(1.2:3): ",
    'type=EXECVE msg=audit(1.2:3):  a9="x"', "node=h type=CWD msg=audit(1.2:3): cwd=2F", "1307 audit(1.2:3): cwd=/",
    "type=UNKNOWN[1327] msg=audit(1.2:3): proctitle=6C73", "type=NOT_A_TYPE msg=audit(1.2:3): x=1",
    'type=CWD audit(1.2:3): cwd="/"', "type=PATH msg=audit(1.2:3): item=0 name=\"/é\"",
    "node=h type=EOE msg=audit(1.2:3): ", "node= type=CWD msg=audit(1.2:3): cwd=2F",
    "node=h type=NOT_A_TYPE msg=audit(1.2:3): x=1", "node=h  type=EOE msg=audit(1.2:3): ",
]), st.sampled_from(["", "\r", " ", "\x1d x", "\x85", "\x0b", ")", "): ", "²", " \t", "\r\r"]),
    st.integers(min_value=0, max_value=60)), min_size=1, max_size=6))
def test_parse_lines_equals_parse_line_on_mutated_lines(mutated):
    """Every line: parsed in the batch exactly as alone, or the batch is handed back (None) when some line is bad."""
    lines = []
    for line, insert, at in mutated:
        at = min(at, len(line))
        lines.append(line[:at] + insert + line[at:])
    expected = _each(lines)
    got = parse_lines(lines)
    if got is None:
        assert expected is None or "\x1d" in "".join(lines)
    else:
        assert got == expected
    assert parse_text("\n".join(lines) + "\n") == got  # the same batch as read, lines ending with newlines


@pytest.mark.parametrize("odd", [
    'type=EXECVE msg=audit(1.2:3):  a9="x"\r',  # spaces before the body, and a carriage return: both stripped
    'type=EXECVE msg=audit(1.2:3): a9="x"\r',  # a carriage return alone: kept
    'type=EXECVE msg=audit(1.2:3):   ', "type=EOE msg=audit(1.2:3):", "type=NOT_A_TYPE msg=audit(1.2:3): x=1",
    "type=UNKNOWN[1327] msg=audit(1.2:3): proctitle=6C73", "type=cwd msg=audit(1.2:3): x=1",
    "type=CWD msg=audit(1.2:3)x): cwd=/", "type=CWD msg=audit(1 2): cwd=/", "type=CWD msg=audit(1.2:3):cwd=/",
    "node=h type=CWD msg=audit(1.2:3): cwd=/", "type=CWD  msg=audit(1.2:3): cwd=/", "type=CWD msg=audit(1.2:3): \x0bx",
])
def test_a_batch_of_plain_lines_and_one_odd_one_is_parsed_as_line_by_line(odd):
    """Batches of plain lines take a simpler expression; one odd line among them must be read as parse_line reads
    it (or the batch handed back)."""
    plain = ['type=SYSCALL msg=audit(1.2:3): arch=c000003e syscall=59', 'type=CWD msg=audit(1.2:3): cwd="/"']
    for lines in (plain + [odd], [odd] + plain, [odd]):
        expected = _each(lines)
        got = parse_lines(lines)
        assert got == expected or (got is None and expected is None)
        assert parse_text("\n".join(lines) + "\n") == got


def test_feed_lines_reports_malformed_lines_as_written():
    pipeline = Pipeline()
    lines = ["type=SYSCALL msg=audit(1.2:3): arch=c000003e", "type=CWD msg=audit(1.2:3): cwd=/",
             "type=EOE msg=audit(1.2:3): ", "type=CWD msg=audit(x:1): cwd=/"]
    heard = []
    out = pipeline.feed_lines(lines, on_malformed=lambda index, reason: heard.append((index, reason)))
    assert len(out) == 1 and len(out[0]) == 1
    assert heard == [(3, "bad event id audit(x:1)")]
    assert pipeline.malformed_samples == [("bad event id audit(x:1)", "type=CWD msg=audit(x:1): cwd=/")]


def test_superscript_digits_are_not_numbers_and_lose_no_event():
    """latin-1 text holds '²' '³' '¹', which str.isdigit() accepts and int() refuses: numbers are checked with
    isdecimal(), so such a value is written as read (escaped) instead of costing its event an internal error."""
    from auoms_py.format import json as json_format
    from auoms_py.format import mstic

    lines = ['type=SYSCALL msg=audit(1.2:3): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=4 items=1 '
             'ppid=² pid=² auid=² uid=² gid=² euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=³ '
             'comm="x" exe="/bin/x" key="k"',
             'type=EXECVE msg=audit(1.2:3): argc=² a0="x" a1_len=² a2[²]=41',
             'type=PATH msg=audit(1.2:3): item=² name="/x" inode=² ouid=² mode=²', "type=EOE msg=audit(1.2:3): ",
             "²1307 audit(1.2:4): cwd=2F", "type=CWD msg=audit(1.¹:5): cwd=2F",
             "type=USER_LOGIN msg=audit(1.2:6): pid=² uid=² auid=² ses=² "
             "msg='op=login id=² exe=\"/x\" res=success'"]
    pipeline = Pipeline()
    out = pipeline.feed_lines(lines) + pipeline.flush()
    assert pipeline.internal_errors == 0
    assert [reason for reason, _line in pipeline.malformed_samples] == ["no type= field", "bad event id audit(1.¹:5)"]
    assert [records[0].type_name for records in out] == ["AUOMS_EXECVE", "USER_LOGIN"]
    for records in out:
        assert "uid=\\xB2" in mstic.format_record(records[0], frozenset())
        assert '"uid":"\\\\xb2"' in json_format.format_record(records[0])
