"""`auoms-py replay` as users run it: a real process, files or stdin, summary on stderr."""
import json
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.paths import AUOMS_REF, REFERENCE, SAMPLES

USERDB = ["--passwd", str(AUOMS_REF / "passwd"), "--group", str(AUOMS_REF / "group")]


def replay(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "auoms_py", "replay", *args], input=stdin, capture_output=True,
                          timeout=60)


def test_mstic_output_is_the_syslog_body():
    result = replay(*USERDB, str(AUOMS_REF / "raw_test_events.log"))
    assert result.returncode == 0
    expected = (AUOMS_REF / "raw_test_events.syslog.txt").read_bytes().replace(b"<14>", b"")
    assert result.stdout == expected
    assert b"read 46 lines" in result.stderr and b"0 malformed" in result.stderr


def test_stdin_and_dash_and_formats():
    data = (SAMPLES / "plugin-raw-node-execve-ls.raw").read_bytes()
    for args in ([], ["-"]):
        result = replay("--format", "json", "--quiet", *args, stdin=data)
        assert result.returncode == 0 and result.stderr == b""
        (obj,) = [json.loads(line) for line in result.stdout.splitlines()]
        assert obj["argv"] == ["/bin/ls", "-l", "/etc/host name with space", "/etc/hostname"]
    result = replay("--format", "oms", "--quiet", stdin=data)
    assert json.loads(result.stdout)[1]["records"][0]["RecordType"] == "AUOMS_EXECVE"


def test_malformed_lines_are_counted_and_shown_with_line_numbers(tmp_path):
    log = tmp_path / "audit.log"
    good = (SAMPLES / "plugin-raw-node-execve-ls.raw").read_bytes()
    log.write_bytes(b"# a comment\nthis is not audit\n" + good + b"type=SYSCALL msg=audit(x): \n\xff\xfe\n")
    result = replay(str(log))
    assert result.returncode == 0
    assert result.stdout.count(b"type=AUOMS_EXECVE") == 1
    err = result.stderr.decode()
    assert "3 malformed" in err
    assert f"malformed: {log}:2: no type= field: 'this is not audit'" in err
    assert f"malformed: {log}:11: bad event id audit(x)" in err


def test_malformed_lines_of_a_file_without_comments_are_shown_with_line_numbers(tmp_path):
    """A batch with no comment or blank line is parsed as read (no split into lines): a malformed line in it is
    still counted, shown with its own line number, and costs no other line."""
    log = tmp_path / "audit.log"
    good = (SAMPLES / "plugin-raw-node-execve-ls.raw").read_bytes()
    log.write_bytes(good + b"this is not audit\n" + good.replace(b"audit(", b"audit(1") + b"type=CWD msg=audit(x): \n")
    result = replay(str(log))
    assert result.returncode == 0
    assert result.stdout.count(b"type=AUOMS_EXECVE") == 2
    err = result.stderr.decode()
    lines = good.count(b"\n")
    assert "2 malformed" in err
    assert f"malformed: {log}:{lines + 1}: no type= field: 'this is not audit'" in err
    assert f"malformed: {log}:{2 * lines + 2}: bad event id audit(x)" in err


def test_unreadable_input_fails():
    result = replay("/nonexistent/audit.log")
    assert result.returncode == 1 and b"No such file" in result.stderr


def test_msticpy_log_every_event_out():
    result = replay("--format", "json", str(REFERENCE / "msticpy" / "auditd_log.txt"))
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 938 and all(json.loads(line) for line in lines)
    assert "1708 records" in result.stderr.decode()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["type=EOE msg=audit(1.2:3): ", "# c", " #x", "", " ", "\t", "\x1d", "\x85", "\xa0",
                                 "\x0b \x0c", "a\x1d", "x", " \x1c y", "##"]), min_size=1, max_size=8))
def test_a_batch_without_comments_or_blank_lines_is_taken_whole_and_others_are_filtered(lines):
    """The batch-level search must agree with the per-line rule (`#` first, or nothing left by str.strip)."""
    from auoms_py.commands.replay import _records
    from auoms_py.pipeline.parse import parse_text

    text = "\n".join(lines) + "\n"
    stats = {"comments": 0}
    expected = [line for line in lines if not (line[:1] == "#" or not line.strip())]
    assert _records(lines, stats) == expected
    assert stats["comments"] == len(lines) - len(expected)
    if expected != lines:  # a comment or blank line is no record: the batch is never taken whole
        assert parse_text(text) is None


def test_replay_loads_no_other_command():
    """`auoms-py replay` builds only its own parser: the agent's configuration (YAML, TLS, spool) stays unloaded,
    which is a third of replay's start-up."""
    code = ("import sys; from auoms_py import cli; status = cli.main(['replay', '--quiet', '/dev/null']); "
            "print(status, sorted(m for m in sys.modules if m.startswith(('auoms_py.service', 'auoms_py.commands', "
            "'yaml', 'ssl'))))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split(" ", 1) == ["0", "['auoms_py.commands', 'auoms_py.commands.replay']\n"]


def test_an_event_a_formatter_fails_on_is_counted_and_the_others_written():
    """A formatter bug met by one event must not stop replay (the merge stage has the same rule)."""
    import io

    from auoms_py.commands.replay import Writer
    from auoms_py.pipeline.model import BARE, OutputRecord
    from tests.pipeline.helpers import read_lines, run_lines

    good = run_lines(read_lines(AUOMS_REF / "raw_test_events.log"))
    broken = OutputRecord(1300, "SYSCALL", "1.002:3", None)
    broken.fields = [("pid", None, BARE)]  # a value that is not text: json and oms fail on it (mstic writes None)
    for fmt in ("oms", "json"):
        stream = io.BytesIO()
        writer = Writer(stream, fmt, frozenset())
        writer.write(good[:3] + [[broken]] + good[3:])
        expected = io.BytesIO()
        Writer(expected, fmt, frozenset()).write(good)
        assert stream.getvalue() == expected.getvalue() and writer.lines >= 10
        assert writer.failed_events == 1 and writer.failures[0].startswith("audit(1.002:3): ")


def _replay_in_process(monkeypatch, capsys, batch_bytes, *argv):
    import io

    from auoms_py.cli import build_parser
    from auoms_py.commands import replay as replay_command

    monkeypatch.setattr(replay_command, "BATCH_BYTES", batch_bytes)
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out))
    args = build_parser("replay").parse_args(["replay", *argv])
    assert args.func(args) == 0
    return out.getvalue(), capsys.readouterr().err


def test_batch_size_changes_nothing_but_speed(tmp_path, monkeypatch, capsys):
    """Lines cut anywhere by the batches (a record, a line number, an event across batches): the same output
    and the same summary, malformed lines with their own numbers, whatever the batch size."""
    log = tmp_path / "audit.log"
    good = (AUOMS_REF / "raw_test_events.log").read_bytes()
    log.write_bytes(good + b"this is not audit\n" + b"# a comment\n" + good.replace(b"audit(", b"audit(1")
                    + b"type=CWD msg=audit(x): ")  # the last line without a newline
    results = [_replay_in_process(monkeypatch, capsys, size, *USERDB, "--format", "json", str(log))
               for size in (1 << 16, 97, 1)]
    assert results[0][0].count(b"\n") >= 20
    assert results[1] == results[0] and results[2] == results[0]
    lines = good.count(b"\n")
    assert f"{log}:{lines + 1}: no type= field" in results[0][1]
    assert f"{log}:{2 * lines + 3}: bad event id audit(x)" in results[0][1]
