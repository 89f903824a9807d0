"""Configuration: the shipped files load, every problem is reported with its key, nothing half-configured."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from auoms_py.service.config import ConfigError, load, loads
from tests.paths import REPO


def test_shipped_default_is_netlink_rules_from_the_repo_and_stdout_mstic():
    cfg = load(REPO / "conf" / "auoms.yaml")
    assert cfg.input.type == "netlink" and cfg.input.backlog_limit == 8192
    assert Path(cfg.rules_dir) == (REPO / "rules").resolve()
    assert [(o.type, o.format) for o in cfg.outputs] == [("stdout", "mstic")]


def test_example_has_the_issue_keys_exactly():
    cfg = load(REPO / "conf" / "auoms.example.yaml")
    assert cfg.input.type == "netlink"
    assert cfg.rules_dir == "/etc/auoms-py/rules.d" and cfg.filters == "/etc/auoms-py/filters.yaml"
    assert cfg.data_dir == "/var/lib/auoms-py"
    sentinel, local = cfg.outputs
    assert (sentinel.name, sentinel.type, sentinel.format, sentinel.syslog.socket) == \
        ("sentinel", "syslog", "mstic", "/dev/log")
    assert sentinel.syslog.transport == "unix" and sentinel.syslog.max_size == 65536
    assert (local.name, local.type, local.format, local.file.path) == \
        ("local", "file", "json", "/var/log/auoms-py/events.jsonl")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads(text, base_dir="/etc/auoms-py")
    return info.value.problems


@pytest.mark.parametrize("text,expected", [
    ("outputs: [{type: stdout}]", "input: required"),
    ("input: {type: kernel}\noutputs: [{type: stdout}]", "input.type: must be one of netlink, multicast, plugin, file"),
    ("input: {type: file}\noutputs: [{type: stdout}]", "input.path: required"),
    ("input: netlink\noutputs: []", "outputs: must be a list with at least one output"),
    ("input: netlink\noutputs: [{type: syslog, address: 'tcp://host'}]",
     "outputs[0].address: must be tcp://HOST:PORT with a port from 1 to 65535"),
    ("input: netlink\noutputs: [{type: syslog, address: 'http://h:1'}]",
     "outputs[0].address: must be udp://HOST:PORT or tcp://HOST:PORT"),
    ("input: netlink\noutputs: [{type: syslog, socket: /dev/log, address: 'udp://h:514'}]",
     "outputs[0].address: give either socket (unix) or address"),
    ("input: netlink\noutputs: [{type: syslog, address: 'udp://h:514', max_size: 70000}]",
     "outputs[0].max_size: a UDP datagram holds at most 65507 bytes"),
    ("input: netlink\noutputs: [{type: syslog, max_size: 12}]", "outputs[0].max_size: must be between 1024"),
    ("input: netlink\noutputs: [{type: stdout}]\npriority_boost: 40", "priority_boost: must be"),
    ("input: netlink\noutputs: [{type: syslog, framing: newline}]", "outputs[0].framing: applies to tcp://"),
    ("input: netlink\noutputs: [{type: file, format: xml, path: /x}]", "outputs[0].format: must be one of mstic"),
    ("input: netlink\noutputs: [{type: stdout, name: a}, {type: stdout, name: a}]",
     "outputs[1].name: 'a' is already the name of outputs[0]"),
    ("input: netlink\noutputs: [{type: stdout, colour: red}]", "outputs[0].colour: unknown key"),
    ("input: {type: netlink, backlog_limit: lots}\noutputs: [{type: stdout}]", "input.backlog_limit: must be an integer"),
    ("input: {type: netlink, path: /x}\noutputs: [{type: stdout}]", "input.path: unknown key"),
    ("input: netlink\nlog_level: loud\noutputs: [{type: stdout}]", "log_level: must be one of debug, info"),
    ("input: netlink\noutputs: [{type: stdout}]\nrules: /x", "rules: unknown key"),
    ("input: netlink\noutputs: [{type: stdout}]\npipeline: {flush_timeout: soon}", "pipeline.flush_timeout: must be a number"),
    ("input: [netlink\n", "not valid YAML: line 2"),
    ("- a\n- b\n", "the file: must be a mapping of keys"),
])
def test_each_problem_names_its_key(text, expected):
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_all_problems_at_once():
    found = problems("input: {type: file}\noutputs: [{type: file}, {type: syslog, tag: 'a b'}]\nextra: 1\n")
    assert [p.split(":")[0] for p in found] == ["input.path", "outputs[0].path", "outputs[1].tag", "extra"]


def test_relative_paths_resolve_against_the_config_directory(tmp_path):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "a.yaml"
    path.write_text("input: {type: file, path: ../log/audit.log}\nrules_dir: rules.d\ndata_dir: ../state\n"
                    "outputs: [{type: file, path: out.jsonl, mode: '0600'}]\n")
    cfg = load(path)
    assert cfg.input.path == str(tmp_path / "log" / "audit.log")
    assert cfg.rules_dir == str(tmp_path / "conf" / "rules.d")
    assert cfg.data_dir == str(tmp_path / "state")
    assert cfg.outputs[0].file.path == str(tmp_path / "conf" / "out.jsonl") and cfg.outputs[0].file.mode == 0o600


def test_sizes_and_short_input_forms():
    cfg = loads("input: multicast\noutputs: [{type: syslog, address: 'tcp://[::1]:6514', max_size: 64k}]")
    assert cfg.input.type == "multicast"
    opts = cfg.outputs[0].syslog
    assert (opts.transport, opts.host, opts.port, opts.max_size) == ("tcp", "::1", 6514, 65536)


def test_broken_config_is_reported_and_nothing_starts(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("input: {type: netlink, backlog_limit: -5}\noutputs: [{type: file}]\n")
    proc = subprocess.run([sys.executable, "-m", "auoms_py", "run", "-c", str(path), "--foreground"],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2
    assert "input.backlog_limit: must be between 1 and" in proc.stderr
    assert "outputs[0].path: required" in proc.stderr
    assert proc.stdout == ""


def test_check_option_validates_and_exits(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "auoms_py", "run", "-c", str(REPO / "conf" / "auoms.example.yaml"),
                           "--check"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0 and "OK" in proc.stdout
