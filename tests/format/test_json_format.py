"""The JSON format (docs/json-format.md): typed fields, exact argv, valid JSON for any input bytes."""
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from auoms_py.format import json as json_format
from auoms_py.format import mstic, oms
from auoms_py.pipeline import Pipeline
from tests.paths import AUOMS_REF, SAMPLES
from tests.pipeline.helpers import json_objects, read_lines, run_lines


def test_execve_record_as_json():
    (obj,) = json_objects(run_lines(read_lines(AUOMS_REF / "raw_test_events.log"))[:1])
    assert obj["type"] == "AUOMS_EXECVE"
    assert obj["time"] == "2018-03-22T22:27:18.392Z" and obj["serial"] == 262332
    assert obj["pid"] == 26918 and obj["uid"] == 0 and obj["user"] == "root" and obj["ses"] == 842
    assert obj["syscall"] == "execve" and obj["syscall_r"] == 59
    assert obj["argv"] == ["logger", "-t", "zfs-backup", "-p", "daemon.err",
                           "zfs incremental backup of rpool/lxd failed: "]
    assert obj["path_name"] == ["/usr/bin/logger", "/lib64/ld-linux-x86-64.so.2"]
    assert obj["path_ouid"] == [0, 0]
    assert obj["proctitle_argv"][0] == "logger"
    assert obj["cmdline"] == 'logger -t zfs-backup -p daemon.err "zfs incremental backup of rpool/lxd failed: "'
    assert obj["containerid"] == "" and obj["key"] == "auoms,execve"
    keys = list(obj)
    assert keys[:3] == ["type", "time", "serial"]


def test_unset_session_is_a_number_and_node_is_kept():
    objs = json_objects(run_lines(read_lines(SAMPLES / "plugin-raw-node-execve-ls.raw")))
    assert objs[0]["node"] == "vm" and objs[0]["ses"] == -1 and objs[0]["auid"] == 4294967295


def test_hex_arguments_decoded_to_unicode():
    line = ('type=EXECVE msg=audit(1.001:1): argc=3 a0="printf" a1=C3A9E282AC a2=FF41')
    (obj,) = json_objects(run_lines([line]))
    assert obj["argv"] == ["printf", "é€", "\\xffA"]  # invalid UTF-8 as the characters \xNN
    assert obj["cmdline"] == "printf $'\\xC3\\xA9\\xE2\\x82\\xAC' $'\\xFFA'"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_any_bytes_give_valid_output_in_every_format(chunks):
    pipeline = Pipeline(None, log_time=True)
    prefix = b'type=SYSCALL msg=audit(1.001:1): arch=c000003e syscall=59 items=1 a0='
    lines = [prefix + chunks[0] if chunks else prefix]
    lines += [b"type=EXECVE msg=audit(1.001:1): argc=2 a0=" + chunk for chunk in chunks[1:]]
    lines += [b'type=PATH msg=audit(1.001:1): item=0 name=' + chunk for chunk in chunks[:2]]
    lines += [b"type=USER_LOGIN msg=audit(1.001:2): msg='" + chunk + b"'" for chunk in chunks[:1]]
    events = []
    for line in lines:
        events += pipeline.feed_line(line.decode("latin-1"))
    events += pipeline.flush()
    for records in events:
        line = oms.format_event(records, frozenset())
        json.loads(line)
        for record in records:
            json.loads(json_format.format_record(record))
            body = mstic.format_record(record, frozenset())
            assert "\n" not in body and "\x00" not in body
    # the batch formatter checks control bytes once over all lines: it must write what format_record writes
    assert mstic.format_lines(events, frozenset()) == [mstic.format_record(record, frozenset())
                                                       for records in events for record in records]


def test_batch_mstic_lines_equal_one_by_one_on_clean_and_escaped_events():
    events = run_lines(read_lines(AUOMS_REF / "raw_test_events.log"))
    one_by_one = [line for records in events for record in records
                  if (line := mstic.format_record(record)) is not None]
    assert mstic.format_lines(events) == one_by_one and len(one_by_one) == 8
    (escaped,) = run_lines(["type=CWD msg=audit(1.001:1): cwd=610A62C3A9"])  # a newline and UTF-8 in the cwd
    assert mstic.format_lines(events + [escaped]) == one_by_one + [mstic.format_record(escaped[0])]
    assert 'cwd="a\\x0Ab\\xC3\\xA9"' in mstic.format_lines([escaped])[0]
    (newline,) = run_lines(["type=CWD msg=audit(1.001:1): cwd=610A62"])  # ASCII, and a newline only
    assert mstic.format_lines(events + [newline])[-1] == mstic.format_record(newline[0])
    assert 'cwd="a\\x0Ab"' in mstic.format_lines([newline])[0]


def test_a_records_own_path_field_that_is_no_array_stays_text():
    """path_* are typed as arrays because the merge writes them as JSON arrays; the same name in a record of
    its own (a user-space message can say anything) used to stop the record with a JSONDecodeError."""
    (event,) = run_lines(["type=USER_CMD msg=audit(1.2:3): pid=1 uid=0 msg='path_name=x path_ouid=[1] "
                          "path_mode=[[[[ path_ogid=[\"5\",\"x\"]'"])
    obj = json.loads(json_format.format_record(event[0]))
    assert obj["path_name"] == "x" and obj["path_ouid"] == "[1]" and obj["path_mode"] == "[[[["
    assert obj["path_ogid"] == [5, "x"]


def test_time_is_right_whichever_second_came_before():
    """The seconds' text is kept from one record to the next: a change of second must not reuse it."""
    from auoms_py.format.json import iso_time

    stamps = ["1521757638.392", "0.005", "1521757638.001", "1521757639.999", "1521757639.000"]
    assert [iso_time(stamp) for stamp in stamps] == [
        "2018-03-22T22:27:18.392Z", "1970-01-01T00:00:00.005Z", "2018-03-22T22:27:18.001Z",
        "2018-03-22T22:27:19.999Z", "2018-03-22T22:27:19.000Z"]


def test_orjson_is_installed_and_writes_what_the_json_module_writes():
    """orjson (a dependency) is ~9x faster; the json module is the fallback. Both must write the same text."""
    assert json_format.orjson is not None
    obj = {"type": "AUOMS_EXECVE", "serial": 7, "uid": 0, "exit": -2, "argv": ["ls", "é\u2028", "\x00\x1f\x7f\"\\"],
           "empty": [], "ses": -1, "n": None, "t": True, "\xe9_key": "x"}
    assert json_format._encode(obj) == json_format._stdlib_encode(obj)
    huge = {"inode": 2 ** 70, "x": "y"}  # orjson refuses integers beyond 64 bits: the json module writes them
    assert json.loads(json_format._encode(huge)) == huge


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.one_of(
    st.text(st.characters(blacklist_categories=())), st.integers(min_value=-(2 ** 80), max_value=2 ** 80), st.lists(st.text(), max_size=4),
    st.lists(st.integers(min_value=-(2 ** 63), max_value=2 ** 64 - 1), max_size=4)), max_size=8))
def test_encoding_equals_the_json_module_for_any_text_and_integers(obj):
    """Any text, surrogates included (orjson refuses them: the json module writes them), any integer."""
    assert json_format._encode(obj) == json_format._stdlib_encode(obj)
