"""Real audit logs no one here wrote (laurel, go-libaudit, audit-userspace, auditbeat, msticpy, samples from this
kind of machine): each replays without a crash, every line is accounted for, every output is valid in every
format, and arguments come out exactly as the kernel logged them."""
import json
import re

import pytest

from auoms_py.format import json as json_format
from auoms_py.format import mstic, oms
from tests.paths import AUOMS_REF, REFERENCE, SAMPLES
from tests.pipeline.helpers import read_lines, records, reference_pipeline

PEERS = REFERENCE / "peers"
RAW_LOGS = sorted(
    list((PEERS / "laurel").glob("*.txt")) + list((PEERS / "laurel" / "tree").glob("*.txt"))
    + list(PEERS.glob("go-libaudit/**/*.log")) + list(PEERS.glob("audit-userspace/**/*.log"))
    + list((PEERS / "auditbeat").glob("*.log")) + [REFERENCE / "msticpy" / "auditd_log.txt"]
    + list(SAMPLES.iterdir()) + list(AUOMS_REF.glob("*.log")) + list((AUOMS_REF / "master-inputs").glob("*.log"))
)


def test_the_corpus_is_there():
    assert len(RAW_LOGS) > 50  # a moved reference folder must fail loudly, not skip everything


@pytest.mark.parametrize("path", RAW_LOGS, ids=lambda path: str(path.relative_to(path.parents[1])))
def test_replays_whole(path):
    pipeline = reference_pipeline()
    lines = read_lines(path)
    comments = 0
    events = []
    for line in lines:
        if line.startswith("#") or not line.strip():
            comments += 1
            continue
        events += pipeline.feed_line(line)
    events += pipeline.flush()
    counters, assembly = pipeline.counters, pipeline.assembler.counters
    # every line is a comment, a record or a counted malformed line
    assert comments + counters["records"] + counters["malformed"] == len(lines)
    # every record is in an event, is an EOE, or was counted as cut
    assert counters["records"] == (counters["event_records"] + assembly["eoe_records"]
                                   + counters["records_dropped_over_limit"])
    assert len(events) == counters["events"]
    for record in records(events):
        line = mstic.format_record(record, frozenset())
        assert line.startswith(f"type={record.type_name} audit(")
        assert "\n" not in line and "\x00" not in line
        obj = json.loads(json_format.format_record(record))
        assert obj["type"] == record.type_name
    for output_event in events:
        line = oms.format_event(output_event, frozenset())
        json.loads(line)


def _run(path):
    pipeline = reference_pipeline()
    events = []
    for line in read_lines(path):
        events += pipeline.feed_line(line)
    return events + pipeline.flush()


def _argv_of(path) -> dict[int, list[str]]:
    return {record.serial: [arg.encode("latin-1").decode("utf-8", "backslashreplace") for arg in record.argv]
            for record in records(_run(path)) if record.argv is not None}


LAUREL_WITH_ARGV = [path for path in sorted((PEERS / "laurel").glob("record-*.json"))
                    if '"EXECVE"' in path.read_text()]


@pytest.mark.parametrize("golden", LAUREL_WITH_ARGV, ids=lambda path: path.stem)
def test_argv_equals_laurels_reading(golden):
    """laurel reassembles aN_len/aN[i] pieces; its golden ARGV is what the kernel had."""
    ours = _argv_of(golden.with_suffix(".txt"))
    checked = 0
    for line in golden.read_text().splitlines():
        event = json.loads(line)
        if "EXECVE" not in event:
            continue
        serial = int(event["ID"].split(":")[1])
        assert ours[serial] == event["EXECVE"]["ARGV"]
        checked += 1
    assert checked


def test_execve_long_has_split_hex_argument_whole():
    argv = _argv_of(PEERS / "laurel" / "record-execve-long.txt")
    (args,) = argv.values()
    # a1_len=16384 logged hex digits = 8192 bytes, over two records; AUOMS cut hex chunks to about half (§10.3)
    assert len(args[1]) == 8192
    assert args[1][0] == "b" and args[1][-1] == "g"


@pytest.mark.parametrize("argc", [48, 216])
def test_auparse_test4_arguments_exact(argc):
    """audit-userspace's test4.log: EXECVE with argc 48 and 216 (quoted arguments; the oracle decodes them)."""
    path = PEERS / "audit-userspace" / "auparse" / "test" / "test4.log"
    text = path.read_text()
    execve = next(line for line in text.splitlines() if f"argc={argc} " in line)
    serial = int(re.search(r":(\d+)\)", execve).group(1))
    expected = [value for _number, value in sorted(
        ((int(n), v) for n, v in re.findall(r' a(\d+)="([^"]*)"', execve)))]
    assert len(expected) == argc
    assert _argv_of(path)[serial] == expected
