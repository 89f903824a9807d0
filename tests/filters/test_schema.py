"""The filter file's schema: what is accepted, and errors that name file, line and reason."""
import textwrap

import pytest

from auoms_py.filters.engine import known_syscalls
from auoms_py.filters.schema import FilterConfigError, load_file, load_text
from tests.paths import REPO

USERS = {"root": 0, "omsagent": 998, "alice": 1000}
GROUPS = {"root": 0, "adm": 4}


def load(text: str, **kw):
    return load_text(textwrap.dedent(text), "test.yaml", users=USERS.get, groups=GROUPS.get, **kw)


def problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(FilterConfigError) as info:
        load(text)
    return info.value.problems


def test_full_filter_is_read():
    config = load("""
        version: 1
        process_filters:
          - name: dpkg
            user: root
            group: adm
            exe: /usr/bin/dpkg
            cmdline:
              - prefix: dpkg
              - contains: [" -i ", " --install "]
            syscalls: [openat, connect]
            depth: -1
        keys:
          drop: [noisy]
        outputs:
          "*":
            drop_record_types: [SERVICE_START]
          syslog:
            drop_fields: [a0, a1]
    """)
    (spec,) = config.process_filters
    assert (spec.name, spec.line, spec.user, spec.group, spec.depth) == ("dpkg", 4, 0, 4, -1)
    assert spec.exe.kind == "equals" and spec.exe("/usr/bin/dpkg")
    assert [m.kind for m in spec.cmdline] == ["prefix", "contains"]
    assert spec.syscalls.drops("openat") and not spec.syscalls.drops("execve")
    assert config.keys.drop == {"noisy"} and config.keys.keep is None
    assert config.outputs["*"].drop_record_types == {"SERVICE_START"}
    assert config.outputs["syslog"].drop_fields == {"a0", "a1"}
    assert config.warnings == []


def test_defaults_depth_0_every_syscall_and_generated_name():
    config = load("""
        process_filters:
          - exe: {prefix: /opt/}
    """)
    (spec,) = config.process_filters
    assert spec.name == "process_filters[0]" and spec.depth == 0
    assert spec.syscalls.all and spec.syscalls.drops("execve")


def test_empty_file_means_no_filters():
    assert load("").process_filters == []
    assert load("# only comments\n").process_filters == []


def test_yaml_syntax_error_names_its_line():
    [(line, reason)] = problems("""
        process_filters:
          - name: a
            exe: /bin/a
           depth: 0
    """)
    assert line == 5 and "YAML syntax" in reason


def test_unknown_key_names_line_and_suggests():
    [(line, reason)] = problems("""
        process_filters:
          - name: a
            exe: /bin/a
            dept: 0
    """)
    assert line == 5
    assert "unknown key 'dept'" in reason and "did you mean 'depth'" in reason


def test_every_problem_is_reported_at_once_with_its_line():
    found = problems("""
        process_filters:
          - name: a
            depth: -2
          - name: b
            exe: {regex: "(unclosed"}
          - name: c
            syscalls: [openat, "!openat"]
          - name: a
            exe: /bin/x
          - name: d
            exe: {startswith: /x}
          - name: e
            syscalls: [openat, "!connect"]
          - name: f
            user: [root]
        bogus: 1
    """)
    lines = {line: reason for line, reason in found}
    assert "depth must be -1" in lines[4]
    assert "does not compile" in lines[6]
    assert "both dropped and excepted" in lines[8]
    assert "already used on line 3" in lines[9]
    assert "unknown match kind 'startswith'" in lines[12] and "prefix" in lines[12]
    assert "mixes names and !exceptions" in lines[14]
    assert "user must be a name or a number" in lines[16]
    assert "unknown key 'bogus'" in lines[17]


def test_error_text_is_file_line_reason():
    with pytest.raises(FilterConfigError) as info:
        load("process_filters:\n  - depth: x\n")
    assert str(info.value).startswith("test.yaml:2: ")
    assert info.value.line == 2 and "depth" in info.value.reason


def test_unknown_user_disables_only_that_filter_with_a_warning():
    config = load("""
        process_filters:
          - name: ghost
            user: nosuchuser
            exe: /bin/a
          - name: real
            user: alice
            exe: /bin/b
          - name: by-id
            user: 4242
            exe: /bin/c
          - name: ghost-group
            group: nosuchgroup
            exe: /bin/d
    """)
    by_name = {s.name: s for s in config.process_filters}
    assert by_name["ghost"].disabled == "unknown user 'nosuchuser'"
    assert by_name["real"].disabled is None and by_name["real"].user == 1000
    assert by_name["by-id"].disabled is None and by_name["by-id"].user == 4242  # ids need no user db entry
    assert by_name["ghost-group"].disabled == "unknown group 'nosuchgroup'"
    assert len(config.warnings) == 2
    assert config.warnings[0].startswith("test.yaml:4: filter 'ghost' disabled: unknown user 'nosuchuser'")


def test_enabled_false_disables_without_warning():
    config = load("""
        process_filters:
          - name: off
            exe: /bin/a
            enabled: false
    """)
    assert config.process_filters[0].disabled == "enabled: false" and config.warnings == []


def test_syscall_exceptions_and_star():
    config = load("""
        process_filters:
          - {name: a, exe: /a, syscalls: ["!connect"]}
          - {name: b, exe: /b, syscalls: ["*", "!connect", "!execve"]}
          - {name: c, exe: /c, syscalls: ["*"]}
    """)
    a, b, c = (s.syscalls for s in config.process_filters)
    assert not a.drops("connect") and a.drops("openat") and a.drops("execve")
    assert not b.drops("connect") and not b.drops("execve") and b.drops("openat")
    assert c.drops("anything")


def test_unknown_syscall_name_is_a_warning():
    config = load("""
        process_filters:
          - {name: a, exe: /a, syscalls: [opennat, connect]}
    """, known_syscalls=known_syscalls())
    assert len(config.warnings) == 1 and "'opennat' is not a syscall name" in config.warnings[0]
    assert ":3:" in config.warnings[0]


def test_filter_without_criteria_is_warned():
    config = load("""
        process_filters:
          - {name: everyone, syscalls: [mmap]}
    """)
    assert "applies to every process" in config.warnings[0]


def test_empty_values_and_lists_are_rejected():
    found = dict(problems("""
        process_filters:
          - {name: a, exe: ""}
          - {name: b, exe: {prefix: ""}}
          - {name: c, exe: /c, syscalls: []}
          - {name: d, cmdline: []}
        keys:
          keep: []
    """))
    assert "empty value" in found[3]
    assert "matches everything" in found[4]
    assert "syscalls is empty" in found[5]
    assert "empty list" in found[6]
    assert "keep is empty" in found[8]


def test_duplicate_keys_are_errors():
    [(line, reason)] = problems("""
        process_filters:
          - name: a
            exe: /a
            exe: /b
    """)
    assert line == 5 and "given twice (first on line 4)" in reason


def test_exe_takes_one_match():
    [(line, reason)] = problems("""
        process_filters:
          - name: a
            exe: [/a, /b]
    """)
    assert line == 4 and "{equals: [a, b]}" in reason


def test_unreadable_and_non_utf8_files(tmp_path):
    with pytest.raises(FilterConfigError, match="cannot read"):
        load_file(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"process_filters:\n  - exe: /opt/\xff\n")
    with pytest.raises(FilterConfigError) as info:
        load_file(str(bad))
    assert info.value.line == 2 and "UTF-8" in info.value.reason


def test_shipped_default_file_is_valid():
    config = load_file(str(REPO / "conf" / "filters.yaml"), users=USERS.get, groups=GROUPS.get,
                       known_syscalls=known_syscalls())
    names = [s.name for s in config.process_filters]
    assert {"dpkg", "rpm", "systemd-resolved", "nscd", "omsagent-logrotate", "azure-waagent", "oms-agent",
            "omiserver"} <= set(names)
    by_name = {s.name: s for s in config.process_filters}
    assert by_name["rpm"].exe("/usr/bin/rpm") and by_name["rpm"].exe("/bin/rpm")
    assert by_name["systemd-resolved"].exe("/usr/lib/systemd/systemd-resolved")
    assert by_name["systemd-resolved"].exe("/lib/systemd/systemd-resolved")
    assert by_name["dpkg"].syscalls.names == {"openat", "connect", "unlink", "fchown"}
    assert config.warnings == []
