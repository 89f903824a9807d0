"""The fluent shape (reference §11) against AUOMS's own output for its reference inputs
(`fluent_test_events.expected.jsonl`, produced by AUOMS's FluentEventWriter from `raw_test_events.log`, with the
entry time written as "TIMESTAMP" and the host name TestHostname), and the forward message around the entries."""
from __future__ import annotations

import json

import msgpack

from auoms_py.format import fluent
from tests.paths import AUOMS_REF
from tests.pipeline.helpers import read_lines, run_lines

EXPECTED = AUOMS_REF / "fluent_test_events.expected.jsonl"


def reference_entries(**kwargs) -> list:
    events = run_lines(read_lines(AUOMS_REF / "raw_test_events.log"))
    lines = []
    for event in events:
        for entry in fluent.event_entries(event, "TestHostname", **kwargs):
            lines.append(msgpack.unpackb(entry, raw=False))
    return lines


def expected_lines() -> list:
    return [json.loads(line) for line in EXPECTED.read_text().splitlines() if line.strip()]


def by_id(records: list[dict]) -> dict:
    return {(r["AuditID"], r["RecordType"]): r for r in records}


def test_every_expected_record_is_produced_with_the_same_fields_and_values():
    got = reference_entries()
    expected = expected_lines()
    assert all(tag == "LINUX_AUDITD_BLOB" and entry[0] == "TIMESTAMP" for tag, entry in expected)
    want = by_id([entry[1] for _tag, entry in expected])
    have = by_id([record for _time, record in got])
    assert set(have) == set(want)  # LOGIN and BPRM_FCAPS events are left out, as AUOMS does
    for key, record in want.items():
        assert dict(have[key]) == record, key


def test_passed_through_records_carry_their_text():
    have = by_id([record for _time, record in reference_entries()])
    login = have[("1562867403.686:4179743", "USER_LOGIN")]
    assert login["RecordText"].startswith("type=USER_LOGIN msg=audit(1562867403.686:4179743): pid=26475 uid=0 ")


def test_entry_time_is_the_event_time_as_integer_or_eventtime():
    entries = reference_entries()
    assert [t for t, _r in entries][:3] == [1521757638] * 3
    precise = reference_entries(event_time=True)
    ext = precise[0][0]
    assert isinstance(ext, msgpack.ExtType) and ext.code == 0
    assert (int.from_bytes(ext.data[:4], "big"), int.from_bytes(ext.data[4:], "big")) == (1521757638, 392_000_000)


def test_forward_message_is_tag_entries_option_with_chunk_and_size():
    events = run_lines(read_lines(AUOMS_REF / "raw_test_events.log"))
    entries = [e for event in events for e in fluent.event_entries(event, "h")]
    message = fluent.forward_message("LINUX_AUDITD_BLOB", entries, "cGF5bG9hZA==")
    tag, decoded, option = msgpack.unpackb(message, raw=False)
    assert tag == "LINUX_AUDITD_BLOB"
    assert decoded == [msgpack.unpackb(e, raw=False) for e in entries]
    assert option == {"chunk": "cGF5bG9hZA==", "size": len(entries)}
    # the chunk id is a msgpack str, not bin (Fluent Bit's in_forward rejects bin)
    assert b"\xa5chunk\xac" in message
