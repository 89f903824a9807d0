"""Numbers into names (reference §4), and the names they are written under (§6)."""
import pytest

from auoms_py.pipeline import UserDB
from auoms_py.pipeline.interpret import Interpreter, mode_text, sockaddr_text, syscall_name
from tests.pipeline.helpers import REFERENCE_USERDB


@pytest.fixture
def interpreter():
    return Interpreter(UserDB(*REFERENCE_USERDB))


def names(interpreter, code, fields, **kwargs):
    out = []
    interpreter.add_fields(out, code, fields, **kwargs)
    return [(name, value) for name, value, _style in out]


def test_ids_to_names_and_renames(interpreter):
    fields = [("auid", "4294967295"), ("uid", "0"), ("gid", "132"), ("euid", "123"), ("ouid", "777"),
              ("ogid", "4242"), ("id", "1000")]
    assert names(interpreter, 1300, fields) == [
        ("audit_user", "unset"), ("auid", "4294967295"), ("user", "root"), ("uid", "0"), ("group", "_chrony"),
        ("gid", "132"), ("effective_user", "_chrony"), ("euid", "123"), ("o_user", "unknown-uid(777)"),
        ("ouid", "777"), ("owner_group", "unknown-gid(4242)"), ("ogid", "4242"), ("id", "user"), ("id_r", "1000")]


def test_record_type_prefixed_fields_are_not_renamed(interpreter):
    fields = [("opid", "21394"), ("oauid", "-1"), ("ouid", "0"), ("oses", "-1"), ("ocomm", '"sleep"')]
    assert names(interpreter, 1318, fields, renamed=False) == [
        ("opid", "21394"), ("oauid", "unset"), ("oauid_r", "-1"), ("ouid", "root"), ("ouid_r", "0"),
        ("oses", "-1"), ("ocomm", "sleep")]


@pytest.mark.parametrize("arch, number, name", [
    ("c000003e", "59", "execve"), ("40000003", "11", "execve"), ("c00000b7", "221", "execve"),
    ("40000028", "11", "execve"), ("c000003e", "99999", "unknown-syscall(99999)"),
    ("deadbeef", "59", "unknown-syscall(59)"), (None, "59", "unknown-syscall()"),
])
def test_syscall_names_per_arch(arch, number, name):
    assert syscall_name(number, arch) == name


def test_arch_session_mode_key(interpreter):
    fields = [("arch", "c00000b7"), ("ses", "4294967295"), ("mode", "041777"), ("key", "61756F6D7301657865637665"),
              ("key", "(null)"), ("arch", "1234")]
    assert names(interpreter, 1300, fields) == [
        ("arch", "aarch64"), ("ses", "-1"), ("mode", "dir,sticky,777"), ("key", "auoms,execve"),
        ("key_r", "61756F6D7301657865637665"), ("key", "(null)"), ("arch", "unknown-arch(1234)")]


@pytest.mark.parametrize("mode, text", [("0100755", "file,755"), ("041777", "dir,sticky,777"),
                                        ("0104755", "file,suid,755"), ("020666", "character,666"),
                                        ("0140777", "socket,777"), ("0120777", "link,777"), ("010600", "fifo,600"),
                                        ("060660", "block,660"), ("02755", "000,sgid,755")])
def test_modes(mode, text):
    assert mode_text(mode) == text


@pytest.mark.parametrize("saddr, text", [
    ("020000507F0000010000000000000000", "{ fam=inet laddr=127.0.0.1 lport=80 }"),
    ("0A0001BB000000000000000000000000000000000000000100000000", "{ fam=inet6 laddr=::1 lport=443 }"),
    ("01002F746D702F61707063616368652E736F636B00", "{ fam=local path=/tmp/appcache.sock }"),
    ("0100006162632D6162737472616374", "{ fam=local path=@abc-abstract }"),
    ("100000000000000000000000", "{ fam=netlink nlnk-fam=16 nlnk-pid=0 }"),
    ("11000300020000000000000000000000000000", "{ fam=packet (unsupported) }"),
    ("FF00", "{ fam=unknown-family(255) (unsupported) }"),
    ("0200", "{ fam=inet sockaddr len too short }"),
])
def test_sockaddr(saddr, text):
    assert sockaddr_text(saddr) == text


def test_sockaddr_of_big_endian_arch():
    # laurel's record-bind-ipv4-bigendian: ppc64 (arch 80000015) logs sa_family big-endian
    assert sockaddr_text("000200160A000001", 0x80000015) == "{ fam=inet laddr=10.0.0.1 lport=22 }"


def test_not_hex_sockaddr_stays_raw(interpreter):
    assert names(interpreter, 1306, [("saddr", "zz")]) == [("saddr", "zz")]


def test_user_db_is_reread_when_it_changes(tmp_path):
    passwd, group = tmp_path / "passwd", tmp_path / "group"
    passwd.write_text("root:x:0:0::/root:/bin/sh\n")
    group.write_text("root:x:0:\n")
    clock = [0.0]
    db = UserDB(str(passwd), str(group), check_interval=1.0, clock=lambda: clock[0])
    assert db.user_name(1001) is None
    passwd.write_text("root:x:0:0::/root:/bin/sh\nnewbie:x:1001:1001::/home/newbie:/bin/sh\n")
    assert not db.refresh()  # not yet time to look
    clock[0] = 2.0
    assert db.refresh() and db.user_name(1001) == "newbie"
