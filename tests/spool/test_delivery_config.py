"""The delivery keys: the issue's two output lines exactly as written, defaults, and clear errors."""
from __future__ import annotations

import pytest

from auoms_py.service.config import ConfigError, loads

ISSUE_KEYS = """
input: {type: netlink}
outputs:
  - {name: central, type: syslog, format: mstic, address: "tcp://127.0.0.1:6514"}   # tls: {ca: ..., cert: ..., key: ...}
  - {name: oms, type: forward, format: fluent, address: "unix:///var/run/auoms-py/fwd.socket", tag: LINUX_AUDITD_BLOB}
"""


def test_the_issue_keys_exactly():
    central, oms = loads(ISSUE_KEYS, base_dir="/etc/auoms-py").outputs
    assert (central.name, central.type, central.format) == ("central", "syslog", "mstic")
    assert (central.syslog.transport, central.syslog.host, central.syslog.port) == ("tcp", "127.0.0.1", 6514)
    assert central.syslog.framing == "octet-counting" and central.syslog.tls is None
    assert (oms.name, oms.type, oms.format, oms.forward.tag) == ("oms", "forward", "fluent", "LINUX_AUDITD_BLOB")
    assert (oms.forward.address.scheme, oms.forward.address.path) == ("unix", "/var/run/auoms-py/fwd.socket")
    assert oms.forward.require_ack
    # both spooled with the defaults
    assert central.spool.max_bytes == oms.spool.max_bytes == 128 * 1024 * 1024
    assert central.spool.fsync == "interval" and central.spool.when_full == "drop_oldest"


def test_tls_paths_resolve_and_spool_overrides(tmp_path):
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("x")
    cfg = loads("""
input: netlink
spool: {max_size: 64M, fsync: always}
outputs:
  - {name: central, type: syslog, address: "tcp://logs:6514", tls: {ca: ca.pem, cert: client.pem, key: client.key},
     spool: {when_full: block}}
  - {name: mem, type: forward, address: "tcp://127.0.0.1:24224", spool: false}
  - {name: local, type: file, path: /tmp/x.jsonl}
""", base_dir=tmp_path)
    central, mem, local = cfg.outputs
    assert central.syslog.tls.ca == str(tmp_path / "ca.pem") and central.syslog.tls.key == str(tmp_path / "client.key")
    assert (central.spool.max_bytes, central.spool.fsync, central.spool.when_full) == (64 << 20, "always", "block")
    assert mem.spool is None and local.spool is None


@pytest.mark.parametrize("output,expected", [
    ('{type: syslog, format: fluent}', "outputs[0].format: a syslog output writes mstic or json or oms, not fluent"),
    ('{type: forward, address: "udp://h:1"}', "outputs[0].address: must be unix:///PATH or tcp://HOST:PORT"),
    ('{type: forward, address: "unix://relative"}', "outputs[0].address: must be unix:///ABSOLUTE/PATH"),
    ('{type: forward}', "outputs[0].address: required"),
    ('{type: syslog, address: "udp://h:514", tls: {}}', "outputs[0].tls: applies to tcp:// addresses only"),
    ('{type: forward, address: "unix:///x", tls: {}}', "outputs[0].tls: applies to tcp:// addresses only"),
    ('{type: syslog, address: "tcp://h:6514", tls: {ca: /nonexistent/ca.pem}}',
     "outputs[0].tls.ca: /nonexistent/ca.pem is not a file"),
    ('{type: syslog, address: "tcp://h:6514", tls: {cafile: x}}', "outputs[0].tls.cafile: unknown key"),
    ('{type: file, path: /tmp/x, spool: {max_size: 1M}}', "outputs[0].spool: applies to syslog, forward, oms, "
                                                          "journald outputs only"),
    ('{type: syslog, spool: {when_full: wait}}', "outputs[0].spool.when_full: must be one of drop_oldest, block"),
    ('{type: syslog, spool: {max_size: 1M, segment_size: 1M}}', "outputs[0].spool.segment_size: must be at most "
                                                               "half of max_size"),
    ('{type: oms, address: "unix:///x", format: json}', "outputs[0].format: an oms output writes oms, not json"),
    ('{type: journald, identifier: "a b"}', "outputs[0].identifier: must be 1 to 64 printable characters"),
])
def test_problems_name_their_key(output, expected):
    with pytest.raises(ConfigError) as info:
        loads(f"input: netlink\noutputs:\n  - {output}\n", base_dir="/etc/auoms-py")
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems


def test_top_level_spool_false_is_refused_with_the_way_to_do_it():
    with pytest.raises(ConfigError, match="write `spool: false` in an output instead"):
        loads("input: netlink\nspool: false\noutputs: [{type: stdout}]\n")
