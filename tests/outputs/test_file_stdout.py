"""File and stdout outputs: lines as the formats write them, reopen after rotation, write errors kept in memory."""
from __future__ import annotations

import io
import json
import os

from auoms_py.format import mstic
from auoms_py.outputs.file import FileOutput
from auoms_py.outputs.stdout import StdoutOutput
from tests.outputs.events import execve_event, reference_events


def test_json_lines_file_one_object_per_record(tmp_path):
    events = reference_events()
    path = tmp_path / "sub" / "events.jsonl"  # the directory is created
    out = FileOutput("local", "json", str(path))
    out.open()
    for event in events:
        out.write_event(event)
    out.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    objects = [json.loads(line) for line in lines[:-1]]
    assert len(objects) == sum(len(e) for e in events)
    assert objects[0]["type"] == events[0][0].type_name
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)


def test_mstic_lines_keep_the_bytes_and_argv_survives_json(tmp_path):
    argv = [b"/usr/bin/echo", b"caf\xc3\xa9", b"\xff\xfe", b"a b"]
    event = execve_event(argv)
    mpath, jpath = tmp_path / "m.log", tmp_path / "j.log"
    for fmt, path in (("mstic", mpath), ("json", jpath)):
        out = FileOutput("f", fmt, str(path))
        out.open()
        out.write_event(event)
        out.close()
    assert mpath.read_bytes() == mstic.format_record(event[0]).encode("latin-1") + b"\n"
    obj = json.loads(jpath.read_text(encoding="utf-8"))
    assert obj["argv"] == [a.decode("utf-8", "backslashreplace") for a in argv]


def test_reopen_after_rotation_writes_to_the_new_file(tmp_path):
    path = tmp_path / "events.jsonl"
    out = FileOutput("local", "mstic", str(path))
    out.open()
    out.write_messages([b"one", b"two"])
    out.flush()
    os.rename(path, tmp_path / "events.jsonl.1")  # logrotate moves the file away
    out.write_messages([b"three"])
    out.flush()  # still the old file: no HUP yet
    out.reopen()
    out.write_messages([b"four"])
    out.close()
    assert (tmp_path / "events.jsonl.1").read_bytes() == b"one\ntwo\nthree\n"
    assert path.read_bytes() == b"four\n"
    assert out.status()["reopens"] == 1


def test_write_errors_keep_lines_in_memory_and_retry(tmp_path):
    out = FileOutput("full", "mstic", "/dev/full")
    out.open()
    out.write_messages([b"a", b"b"])
    out.flush()
    assert out.status()["errors"] == 1 and out.status()["pending"] == 4
    # the file system comes back (here: the path now names a writable file)
    out.path = str(tmp_path / "ok.log")
    out.reopen()
    out.close()
    assert (tmp_path / "ok.log").read_bytes() == b"a\nb\n"


def test_stdout_writes_lines_and_survives_a_closed_pipe():
    stream = io.BytesIO()
    out = StdoutOutput("t", "mstic", stream=stream)
    out.open()
    out.write_messages([b"x", b"y"])
    out.flush()
    assert stream.getvalue() == b"x\ny\n"
    r, w = os.pipe()
    os.close(r)
    out = StdoutOutput("t", "mstic", stream=os.fdopen(w, "wb"))
    out.open()
    out.write_messages([b"z"])
    out.flush()
    assert out.status()["dropped"] == 1
