"""The AUOMS defects of reference §10 that live in the pipeline stages, each shown fixed on real-shaped input."""
from tests.kql import run_parser
from tests.paths import AUOMS_REF, REFERENCE, SAMPLES
from tests.pipeline.helpers import json_objects, mstic_lines, read_lines, records, reference_pipeline, run_lines

SENTINEL = REFERENCE / "sentinel"
EXECVE_PARSER = SENTINEL / "Parsers__SyslogAUOMS__SyslogExecve.txt"
SYSCALL_HEAD = ('type=SYSCALL msg=audit(1795338939.098:{serial}): arch=c000003e syscall={nr} success=yes exit=0 '
                'a0=3 a1=7ffd a2=10 a3=0 items={items} ppid=1 pid=42 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 '
                'egid=0 sgid=0 fsgid=0 tty=(none) ses=3 comm="x" exe="/usr/bin/x" key="t"')


def syscall(serial, nr=42, items=0):
    return SYSCALL_HEAD.format(serial=serial, nr=nr, items=items)


def eoe(serial):
    return f"type=EOE msg=audit(1795338939.098:{serial}): "


def test_1_event_with_many_execve_records_and_over_112_kib_is_kept_whole():
    events = run_lines(read_lines(AUOMS_REF / "master-inputs" / "oversized_event.log"))
    (record,) = records(events)
    assert record.type_name == "AUOMS_EXECVE"
    assert len(record.argv) == int(record.get("argc"))
    assert "<" not in record.cmdline.replace("<<", "")  # no missing argument or piece marker
    assert sum(map(len, record.argv)) > 112 * 1024


def test_1_events_over_the_size_bound_are_cut_and_say_so():
    pipeline = reference_pipeline(max_event_bytes=64 * 1024)
    events = run_lines(read_lines(AUOMS_REF / "master-inputs" / "oversized_event.log"), pipeline)
    (record,) = records(events)
    assert record.dropped_records > 0
    assert pipeline.counters["records_dropped_over_limit"] == record.dropped_records
    assert json_objects(events)[0]["dropped_records"] == record.dropped_records
    assert "<" in record.cmdline  # the cut arguments are visible as <N...M> / <...>


def test_2_sockaddr_port_is_byte_swapped():
    lines = [syscall(1), "type=SOCKADDR msg=audit(1795338939.098:1): saddr=020000507F0000010000000000000000", eoe(1)]
    (line,) = mstic_lines(run_lines(lines))
    assert " saddr={ fam=inet laddr=127.0.0.1 lport=80 } saddr_r=020000507F0000010000000000000000 " in line


def test_3_split_quoted_and_hex_pieces_are_reassembled_exactly():
    lines = [syscall(2, nr=59, items=1),
             'type=EXECVE msg=audit(1795338939.098:2): argc=3 a0="x" a1_len=12 a1[0]="abcdef" a1[1]="ghijkl"',
             "type=EXECVE msg=audit(1795338939.098:2): a2_len=8 a2[0]=6120 a2[1]=2062",
             eoe(2)]
    (record,) = records(run_lines(lines))
    assert record.argv == ["x", "abcdefghijkl", "a  b"]
    assert record.cmdline == 'x abcdefghijkl "a  b"'


def test_4_proctitle_that_looks_like_hex_is_decoded_once():
    # proctitle "dd" is logged as hex 6464; decoding the result again gave \xDD
    lines = [syscall(3), "type=PROCTITLE msg=audit(1795338939.098:3): proctitle=646400414243", eoe(3)]
    (line,) = mstic_lines(run_lines(lines))
    assert " proctitle=dd ABC containerid=" in line


def test_5_path_records_are_sorted_by_item_and_arrays_align():
    lines = [syscall(4, items=2),
             'type=PATH msg=audit(1795338939.098:4): item=1 name="/lib/ld.so" inode=2 dev=00:01 mode=0100755 ouid=0 '
             'ogid=0 rdev=00:00 nametype=NORMAL',
             'type=PATH msg=audit(1795338939.098:4): item=0 name="/bin/x" inode=1 dev=00:01 mode=0104755 ouid=1000 '
             'ogid=0 rdev=00:00 nametype=CREATE',
             eoe(4)]
    (line,) = mstic_lines(run_lines(lines))
    assert ' name="/bin/x" inode=1 ' in line
    assert ('path_name=["/bin/x","/lib/ld.so"] path_nametype=["CREATE","NORMAL"] '
            'path_mode=["0104755","0100755"] path_ouid=["1000","0"] path_ogid=["0","0"]') in line


def test_9_nul_byte_is_escaped_not_cutting_the_line():
    lines = [syscall(5, items=1),
             "type=PATH msg=audit(1795338939.098:5): item=0 name=2F746D702F610062 inode=1 dev=00:01 mode=0100644 "
             "ouid=0 ogid=0 rdev=00:00 nametype=NORMAL",
             eoe(5)]
    (line,) = mstic_lines(run_lines(lines))
    assert ' name="/tmp/a\\x00b" ' in line and line.endswith(" containerid=")


def test_10_netlink_sockaddr_has_its_space():
    events = run_lines(read_lines(SAMPLES / "netlink-multicast-head200.txt"))
    lines = [line for line in mstic_lines(events) if "fam=netlink" in line]
    assert lines and all("{ fam=netlink nlnk-fam=16 nlnk-pid=0 }" in line for line in lines)


def test_11_bprm_fcaps_stays_out_of_the_merged_execve():
    events = run_lines(read_lines(SAMPLES / "plugin-enriched-execve-ls.raw"))
    (line,) = mstic_lines(events)
    assert "BPRM_FCAPS" not in line
    assert '" containerid=' in line
    parsed = run_parser(EXECVE_PARSER, line)
    assert parsed["cmdline"] == "/bin/ls -l \"/etc/host name with space\" /etc/hostname"
    assert parsed["comm"] == "ls" and parsed["exe"] == "/usr/bin/ls"
    # the JSON format keeps what MSTIC leaves out
    assert "BPRM_FCAPS_fver" in json_objects(events)[0]


def test_12_quoted_value_with_spaces_stays_one_field():
    lines = ['type=AVC msg=audit(1634728455.294:53732): apparmor="STATUS" operation="profile_replace" '
             'info="same as current profile, skipping" profile="unconfined" name="snap-update-ns.amazon-ssm-agent" '
             'pid=3981295 comm="apparmor_parser"',
             syscall(53732).replace("1795338939.098", "1634728455.294"),
             "type=EOE msg=audit(1634728455.294:53732): "]
    (line,) = mstic_lines(run_lines(lines))
    assert ' AVC_info="same as current profile, skipping" AVC_profile="unconfined" ' in line
