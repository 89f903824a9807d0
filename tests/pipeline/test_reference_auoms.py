"""AUOMS's own test vectors: our output must equal what the real AUOMS code produced for them."""
import json

import pytest

from auoms_py.pipeline.escape import bash_escape, tty_escape, unescape
from auoms_py.pipeline.execve import build_argv
from auoms_py.pipeline.model import Record
from auoms_py.pipeline.parse import parse_line
from tests.paths import AUOMS_REF
from tests.pipeline.helpers import mstic_lines, oms_lines, read_lines, run_lines

RAW_EVENTS = AUOMS_REF / "raw_test_events.log"


def test_mstic_lines_equal_auoms_syslog_output():
    expected = [line.removeprefix("<14>") for line in read_lines(AUOMS_REF / "raw_test_events.syslog.txt")]
    got = mstic_lines(run_lines(read_lines(RAW_EVENTS)))
    # No line differs: none of these inputs hits an AUOMS defect of reference §10 (those have their own tests).
    assert got == expected


def test_oms_lines_equal_auoms_oms_output():
    # '#NOOP' lines mark events AUOMS's writer filtered out entirely (BPRM_FCAPS alone, LOGIN): no line for them
    expected = [line for line in read_lines(AUOMS_REF / "raw_test_events.oms.jsonl") if not line.startswith("#")]
    got = oms_lines(run_lines(read_lines(RAW_EVENTS)))
    assert got == expected


def _execve_cases():
    return json.loads((AUOMS_REF / "execve_converter_cases.json").read_text())["cases"]


@pytest.mark.parametrize("case", _execve_cases(), ids=lambda case: case["test_name"])
def test_execve_converter_cases(case):
    records = [Record(*parse_line(text)) for text in case["event_records"]]
    _argv, cmdline, _argc = build_argv([record.fields() for record in records])
    assert cmdline == case["cmdline"]


def _escape_cases(function):
    cases = json.loads((AUOMS_REF / "string_escape_cases.json").read_text())["cases"]
    return [case for case in cases if case["function"] == function]


def _text(hex_value: str) -> str:
    return bytes.fromhex(hex_value).decode("latin-1")


@pytest.mark.parametrize("case", _escape_cases("bash_escape_string"), ids=lambda case: case["test"])
def test_bash_escape_cases(case):
    assert bash_escape(_text(case["input_hex"])) == _text(case["expected_output_hex"])


@pytest.mark.parametrize("case", _escape_cases("tty_escape_string"), ids=lambda case: case["test"])
def test_tty_escape_cases(case):
    assert tty_escape(_text(case["input_hex"])) == _text(case["expected_output_hex"])


@pytest.mark.parametrize("case", _escape_cases("unescape_raw_field") + _escape_cases("decode_hex"),
                         ids=lambda case: case["test"])
def test_unescape_cases(case):
    # AUOMS's return codes: -1 odd-length / empty (value kept as is), 0 bare, 1 quoted, 2 hex, 3 hex needing escape.
    # Our unescape() decodes; whether the text needs \xNN escaping is decided when it is written (tty_escape).
    raw = _text(case["input_hex"])
    text, _kind = unescape(raw)
    assert text == _text(case["expected_output_hex"])
