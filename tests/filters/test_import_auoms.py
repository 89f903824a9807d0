"""import-auoms on AUOMS's own testout.conf, and the conf format's corners."""
import subprocess
import sys

import pytest
import yaml

from auoms_py.filters.engine import FilterEngine
from auoms_py.filters.import_auoms import AuomsConfError, convert, parse_conf
from auoms_py.filters.schema import load_text
from auoms_py.procs.tree import ProcessTree
from tests.filters.events import History
from tests.paths import AUOMS_REF, REPO

TESTOUT = AUOMS_REF / "testout.conf"
USERS = {"root": 0, "omsagent": 998}


def imported():
    yaml_text, notes = convert(TESTOUT.read_text(), str(TESTOUT))
    return yaml_text, notes, load_text(yaml_text, "imported.yaml", users=USERS.get, groups={}.get)


def test_every_process_filter_of_testout_conf_is_converted():
    yaml_text, notes, config = imported()
    assert notes == []
    specs = config.process_filters
    assert len(specs) == 12
    by_name = {s.name: s for s in specs}
    dpkg = by_name["dpkg"]
    assert (dpkg.user, dpkg.depth, dpkg.exe.values, dpkg.syscalls.names) == \
        (0, -1, ["/usr/bin/dpkg"], {"openat", "connect", "unlink", "fchown"})
    assert by_name["rpm"].exe.values == ["/bin/rpm"]
    resolved = by_name["systemd-resolved"]
    assert resolved.user is None and resolved.depth == 0 and resolved.syscalls.names == {"connect"}
    # JSON values spanning lines, escaped quotes and trailing spaces survive exactly
    assert by_name["omi"].cmdline[0].values == ['/bin/sh -c "/usr/sbin/logrotate -s /etc/logrotate.d/omi ']
    assert by_name["OMSConsistencyInvoker"].cmdline[0].values == ['/bin/sh -c "/opt/omi/bin/OMSConsistencyInvoker']
    waagent = by_name["waagent"]
    assert [(m.kind, m.values) for m in waagent.cmdline] == [("prefix", ["/usr/bin/python"]),
                                                             ("contains", [" -u /usr/sbin/waagent -daemon"])]
    assert by_name["omi.keytab"].depth == 0 and len(by_name["omi.keytab"].cmdline) == 3
    out = config.outputs["testout"]
    assert "PROCTITLE" in out.drop_record_types and len(out.drop_record_types) == 13
    assert out.drop_fields == {"arch_r", "ses_r", "mode_r"}
    # the output's own settings are listed for the operator, not silently lost
    assert "#   output_format = syslog" in yaml_text and "interpreted_field_names" in yaml_text


def test_imported_filters_behave_like_the_shipped_defaults():
    _, _, config = imported()
    shipped = load_text((REPO / "conf" / "filters.yaml").read_text(), "filters.yaml", users=USERS.get,
                        groups={}.get)
    history = History()
    events = [
        history.execve(100, 1, "/usr/bin/dpkg", ["dpkg", "-i", "x.deb"]),
        history.syscall(100, 1, "/usr/bin/dpkg", "openat"),
        history.execve(101, 100, "/bin/sh", ["/bin/sh", "/var/lib/dpkg/info/x.postinst"]),
        history.syscall(101, 100, "/bin/sh", "unlink"),
        history.syscall(101, 100, "/bin/sh", "write"),
        history.syscall(200, 1, "/lib/systemd/systemd-resolved", "connect", uid=101),
        history.syscall(200, 1, "/lib/systemd/systemd-resolved", "openat", uid=101),
        history.execve(300, 1, "/bin/dash", ["/bin/sh", "-c", "/usr/sbin/logrotate -s /etc/logrotate.d/omi x"]),
        history.execve(301, 300, "/usr/sbin/logrotate", ["/usr/sbin/logrotate", "-s", "/etc/logrotate.d/omi"]),
        history.syscall(301, 300, "/usr/sbin/logrotate", "rename"),
        history.syscall(400, 1, "/usr/bin/cat", "openat"),
    ]
    verdicts = []
    for cfg in (config, shipped):
        tree = ProcessTree()
        engine = FilterEngine(cfg, tree)
        row = []
        for event in events:
            tree.observe(event)
            row.append(bool(engine.judge(event)))
        verdicts.append(row)
    assert verdicts[0] == verdicts[1]
    assert verdicts[0] == [True, False, True, False, True, False, True, False, False, False, True]


def test_exceptions_and_oddities_are_noted():
    conf = """
process_filters = [
  {"depth": 0, "exeMatchValue": "/x/only-value", "exeMatchType": "MatchEquals", "syscalls": ["!connect"]},
  {"depth": 0, "exeMatchType": "MatchEquals", "exeMatchValue": "/x/mixed", "syscalls": ["openat", "!connect"]},
  {"depth": 1, "exeMatchValue": "/x/no-type", "user": "0"},
  {"depth": 0, "exeMatchType": "MatchSomething", "exeMatchValue": "/x/bad"},
  {"depth": 0, "exeMatchType": "MatchRegex", "exeMatchValue": "^/opt/.*/bin/", "colour": "blue"}
]
"""
    yaml_text, notes = convert(conf, "/etc/opt/microsoft/auoms/outconf.d/syslog.conf")
    data = yaml.safe_load(yaml_text)
    filters = {f["name"]: f for f in data["process_filters"]}
    assert filters["only-value"]["syscalls"] == ["!connect"]
    assert filters["mixed"]["syscalls"] == ["openat"]
    assert "exe" not in filters["no-type"] and filters["no-type"]["user"] == 0
    assert "bad" not in filters
    assert filters["bin"]["exe"] == {"regex": "^/opt/.*/bin/"}
    text = "\n".join(notes)
    assert "never honoured !connect" in text and "mixes names and !exceptions" in text
    assert "exeMatchValue without exeMatchType" in text and "MatchSomething" in text and "'colour'" in text
    assert all(f"#   - {note}" in yaml_text for note in notes)


def test_conf_format_errors_name_the_line():
    with pytest.raises(AuomsConfError) as info:
        parse_conf("# c\nno_equals_sign\n", "x.conf")
    assert (info.value.line, str(info.value)) == (2, "x.conf:2: missing '=' (expected key = value)")
    with pytest.raises(AuomsConfError) as info:
        parse_conf('a = 1\nprocess_filters = [\n {"depth": 0,\n', "x.conf")
    assert info.value.line == 2 and "JSON" in info.value.reason
    assert parse_conf('k = "say \\"hi\\"" # c\nk = second\nw = word # c\n') == \
        {"k": ('say "hi"', 1), "w": ("word", 3)}


def test_command_line(tmp_path):
    out = tmp_path / "filters.yaml"
    run = subprocess.run([sys.executable, "-m", "auoms_py", "import-auoms", str(TESTOUT), "-o", str(out),
                          "--output-name", "*"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    config = load_text(out.read_text(), str(out), users=USERS.get, groups={}.get)
    assert "*" in config.outputs and len(config.process_filters) == 12
    again = subprocess.run([sys.executable, "-m", "auoms_py", "import-auoms", str(TESTOUT), "-o", str(out)],
                           capture_output=True, text=True)
    assert again.returncode == 1 and "exists" in again.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text("process_filters = [\n")
    failed = subprocess.run([sys.executable, "-m", "auoms_py", "import-auoms", str(bad)], capture_output=True,
                            text=True)
    assert failed.returncode == 1 and f"{bad}:1: incomplete or invalid JSON value" in failed.stderr
