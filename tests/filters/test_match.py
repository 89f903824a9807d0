import pytest

from auoms_py.filters.match import StringMatch, to_subject_text


@pytest.mark.parametrize("kind,values,subject,expected", [
    ("equals", ["/usr/bin/dpkg"], "/usr/bin/dpkg", True),
    ("equals", ["/usr/bin/dpkg"], "/usr/bin/dpkg-deb", False),
    ("equals", ["/bin/rpm", "/usr/bin/rpm"], "/usr/bin/rpm", True),
    ("equals", ["/bin/rpm", "/usr/bin/rpm"], "/usr/bin/rpmbuild", False),
    ("prefix", ["/bin/sh -c"], "/bin/sh -c 'ls'", True),
    ("prefix", ["/bin/sh -c"], "/bin/bash -c ls", False),
    ("prefix", ["/a", "/b"], "/bcd", True),
    ("contains", [" -u /usr/sbin/waagent -daemon"], "/usr/bin/python3 -u /usr/sbin/waagent -daemon", True),
    ("contains", ["waagent"], "/usr/bin/python3 agent", False),
    ("contains", ["x", "waagent"], "/usr/sbin/waagent", True),
    ("regex", [r"^/usr/bin/python3\.\d+$"], "/usr/bin/python3.11", True),
    ("regex", [r"^/usr/bin/python3\.\d+$"], "/usr/bin/python3.11-dbg", False),
    ("regex", ["waagent"], "/usr/sbin/waagent -daemon", True),  # search, not fullmatch (AUOMS regex_search)
    ("regex", ["^a$", "^b$"], "b", True),
    ("glob", ["/opt/*/bin/ruby"], "/opt/microsoft/omsagent/bin/ruby", True),  # '*' crosses '/'
    ("glob", ["/usr/lib/systemd/systemd-*"], "/usr/lib/systemd/systemd-resolved", True),
    ("glob", ["/usr/bin/python3.?"], "/usr/bin/python3.11", False),
    ("glob", ["/usr/bin/python3.[0-9]*"], "/usr/bin/python3.11", True),
])
def test_match_kinds(kind, values, subject, expected):
    assert StringMatch(kind, values)(subject) is expected


def test_missing_subject_never_matches():
    assert StringMatch("prefix", ["/"])(None) is False
    assert StringMatch("regex", [".*"])(None) is False


def test_non_ascii_value_matches_the_bytes_the_kernel_logged():
    # the pipeline holds UTF-8 bytes decoded as latin-1; a filter file holds Unicode text
    subject = "/opt/büro/bin/tool".encode("utf-8").decode("latin-1")
    assert StringMatch("equals", ["/opt/büro/bin/tool"])(subject)
    assert StringMatch("glob", ["/opt/b?ro/*"])(subject) is False  # one character in the file, two bytes logged
    assert StringMatch("contains", ["büro"])(subject)
    assert to_subject_text("ü") == "\xc3\xbc"


def test_bad_regex_and_kind_are_reported():
    with pytest.raises(ValueError, match="does not compile"):
        StringMatch("regex", ["(unclosed"])
    with pytest.raises(ValueError, match="unknown match kind"):
        StringMatch("startswith", ["/"])


def test_describe_and_yaml_round_trip():
    m = StringMatch("equals", ["/usr/bin/dpkg"])
    assert m.to_yaml() == "/usr/bin/dpkg"
    assert StringMatch("prefix", ["/a", "/b"]).to_yaml() == {"prefix": ["/a", "/b"]}
    assert StringMatch("contains", ["x"]).describe() == "contains 'x'"
