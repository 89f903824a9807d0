"""Filter semantics on real pipeline records: depth, inheritance, !exceptions, users, keys, execve, outputs."""
import textwrap

from auoms_py.filters import Filters
from auoms_py.filters.engine import FilterEngine
from auoms_py.filters.schema import load_text
from auoms_py.procs.tree import ProcessTree
from tests.filters.events import History

USERS = {"root": 0, "alice": 1000}


def engine_for(text: str, tree: ProcessTree | None = None) -> FilterEngine:
    config = load_text(textwrap.dedent(text), "test.yaml", users=USERS.get, groups={"root": 0}.get)
    return FilterEngine(config, tree if tree is not None else ProcessTree())


class Run:
    """A history, a tree and an engine: `run.judge(event)` observes then judges, like the agent."""

    def __init__(self, text: str):
        self.history = History()
        self.tree = ProcessTree()
        self.engine = engine_for(text, self.tree)

    def judge(self, event):
        self.tree.observe(event)
        return self.engine.judge(event)

    def execve(self, *args, **kw):
        return self.judge(self.history.execve(*args, **kw))

    def syscall(self, *args, **kw):
        return self.judge(self.history.syscall(*args, **kw))


DPKG = """
    process_filters:
      - name: dpkg
        user: root
        exe: /usr/bin/dpkg
        syscalls: [openat, connect, unlink, fchown]
        depth: -1
"""


def test_dpkg_and_all_descendants_lose_listed_syscalls_but_keep_execve():
    run = Run(DPKG)
    assert run.execve(100, 1, "/usr/bin/dpkg", ["dpkg", "-i", "x.deb"])  # the execve stays
    verdict = run.syscall(100, 1, "/usr/bin/dpkg", "openat")
    assert not verdict and verdict.filter == "dpkg"
    assert run.syscall(100, 1, "/usr/bin/dpkg", "write")  # not listed
    assert run.execve(101, 100, "/bin/sh", ["sh", "-c", "postinst"])  # child's execve stays
    assert not run.syscall(101, 100, "/bin/sh", "unlink")
    assert run.execve(102, 101, "/usr/bin/cp", ["cp", "a", "b"])
    assert not run.syscall(102, 101, "/usr/bin/cp", "openat")  # grandchild: depth -1 reaches
    assert not run.syscall(102, 101, "/usr/bin/cp", "connect")
    assert run.engine.counters == {"dpkg": 4}


def test_other_user_or_other_program_is_not_filtered():
    run = Run(DPKG)
    run.execve(200, 1, "/usr/bin/dpkg", ["dpkg", "-l"], uid=1000)
    assert run.syscall(200, 1, "/usr/bin/dpkg", "openat", uid=1000)  # user: root only
    run.execve(201, 1, "/usr/bin/dpkg-query", ["dpkg-query", "-l"])
    assert run.syscall(201, 1, "/usr/bin/dpkg-query", "openat")


def test_depth_0_drops_the_process_but_not_its_child():
    run = Run("""
        process_filters:
          - {name: tool, exe: /opt/tool, depth: 0}
    """)
    assert not run.execve(300, 1, "/opt/tool")  # every syscall, execve included (judged by the new program)
    assert not run.syscall(300, 1, "/opt/tool", "openat")
    assert run.execve(301, 300, "/bin/true")
    assert run.syscall(301, 300, "/bin/true", "openat")


def test_depth_n_counts_generations():
    run = Run("""
        process_filters:
          - {name: tool, exe: /opt/tool, depth: 2, syscalls: [openat]}
    """)
    run.execve(400, 1, "/opt/tool")
    run.execve(401, 400, "/bin/a")
    run.execve(402, 401, "/bin/b")
    run.execve(403, 402, "/bin/c")
    assert not run.syscall(400, 1, "/opt/tool", "openat")
    assert not run.syscall(401, 400, "/bin/a", "openat")
    assert not run.syscall(402, 401, "/bin/b", "openat")
    assert run.syscall(403, 402, "/bin/c", "openat")  # 3 generations down


def test_exception_keeps_connect_and_drops_the_rest():
    run = Run("""
        process_filters:
          - {name: chatty, exe: /opt/chatty, syscalls: ["!connect"], depth: -1}
    """)
    assert not run.execve(500, 1, "/opt/chatty")
    assert run.syscall(500, 1, "/opt/chatty", "connect")
    assert not run.syscall(500, 1, "/opt/chatty", "openat")
    assert not run.syscall(500, 1, "/opt/chatty", "unlink")
    run.execve(501, 500, "/usr/bin/curl")
    assert run.syscall(501, 500, "/usr/bin/curl", "connect")
    assert not run.syscall(501, 500, "/usr/bin/curl", "openat")


def test_a_process_matching_a_filter_itself_ignores_inherited_ones():
    run = Run("""
        process_filters:
          - {name: dpkg, exe: /usr/bin/dpkg, syscalls: [openat, connect], depth: -1}
          - {name: resolver, exe: /usr/lib/systemd/systemd-resolved, syscalls: [connect], depth: 0}
    """)
    run.execve(600, 1, "/usr/bin/dpkg")
    run.execve(601, 600, "/usr/lib/systemd/systemd-resolved")
    assert not run.syscall(601, 600, "/usr/lib/systemd/systemd-resolved", "connect")  # its own filter
    assert run.syscall(601, 600, "/usr/lib/systemd/systemd-resolved", "openat")  # dpkg's does not apply


def test_an_ancestor_whose_filter_does_not_reach_lets_the_walk_go_on():
    # AUOMS: the nearest ancestor with a filter *reaching* the process decides, not the nearest matched one
    run = Run("""
        process_filters:
          - {name: outer, exe: /opt/outer, syscalls: [openat], depth: -1}
          - {name: inner, exe: /opt/inner, syscalls: [connect], depth: 0}
    """)
    run.execve(700, 1, "/opt/outer")
    run.execve(701, 700, "/opt/inner")
    run.execve(702, 701, "/bin/leaf")
    assert not run.syscall(701, 700, "/opt/inner", "connect")
    assert run.syscall(701, 700, "/opt/inner", "openat")  # inner matched itself: outer ignored
    assert not run.syscall(702, 701, "/bin/leaf", "openat")  # inner (depth 0) does not reach; outer does
    assert run.syscall(702, 701, "/bin/leaf", "connect")


def test_execve_is_judged_by_the_program_it_executes():
    run = Run("""
        process_filters:
          - {name: noisy, exe: /opt/noisy, depth: 0}
    """)
    run.execve(800, 1, "/bin/bash")
    assert run.syscall(800, 1, "/bin/bash", "openat")
    assert not run.execve(800, 1, "/opt/noisy")  # bash exec'ing noisy: the event is noisy's
    assert not run.syscall(800, 1, "/opt/noisy", "openat")


def test_failed_execve_does_not_change_the_program():
    run = Run("""
        process_filters:
          - {name: noisy, exe: /opt/noisy, depth: 0}
    """)
    run.execve(810, 1, "/bin/bash")
    # a failed exec: exe= is still the caller's program, no EXECVE record
    assert run.syscall(810, 1, "/bin/bash", "execve", success=False)
    assert run.tree.get(810).exe == "/bin/bash"


def test_cmdline_matches_all_must_hold():
    run = Run("""
        process_filters:
          - name: waagent
            user: root
            cmdline:
              - prefix: /usr/bin/python
              - contains: " -u /usr/sbin/waagent -daemon"
            depth: -1
    """)
    assert not run.execve(900, 1, "/usr/bin/python3.11", ["/usr/bin/python3", "-u", "/usr/sbin/waagent", "-daemon"])
    assert not run.syscall(900, 1, "/usr/bin/python3.11", "connect")
    assert run.execve(901, 1, "/usr/bin/python3.11", ["/usr/bin/python3", "-u", "/usr/sbin/other", "-daemon"])


def test_cmdline_of_a_process_seen_first_without_execve_is_its_proctitle():
    run = Run("""
        process_filters:
          - {name: job, cmdline: {prefix: "/bin/sh -c \\"/usr/sbin/logrotate"}, depth: -1}
    """)
    # started before the log began: only its proctitle tells its command line
    title = ["/bin/sh", "-c", "/usr/sbin/logrotate /etc/logrotate.d/omsagent* >/dev/null"]
    assert not run.syscall(950, 1, "/usr/bin/dash", "openat", proctitle=title)


def test_user_and_group_by_id():
    run = Run("""
        process_filters:
          - {name: by-uid, user: 1000, exe: /bin/a}
          - {name: by-gid, group: 50, exe: /bin/b}
    """)
    assert not run.syscall(1000, 1, "/bin/a", "openat", uid=1000)
    assert run.syscall(1001, 1, "/bin/a", "openat", uid=1001)
    assert not run.syscall(1002, 1, "/bin/b", "openat", gid=50)
    assert run.syscall(1003, 1, "/bin/b", "openat", gid=51)


def test_unknown_user_disables_only_that_filter():
    run = Run("""
        process_filters:
          - {name: ghost, user: nosuchuser, exe: /bin/a}
          - {name: real, user: alice, exe: /bin/b}
    """)
    assert run.syscall(1100, 1, "/bin/a", "openat")
    assert not run.syscall(1101, 1, "/bin/b", "openat", uid=1000)
    assert [s.name for s in run.engine.disabled] == ["ghost"]
    assert "ghost" not in run.engine.counters


def test_user_space_events_are_never_process_filtered():
    run = Run("""
        process_filters:
          - {name: everyone, syscalls: ["*"]}
    """)
    assert run.judge(run.history.user_event())
    assert not run.syscall(1200, 1, "/bin/x", "openat")


def test_key_filters():
    run = Run("""
        keys:
          drop: [noisy]
    """)
    assert not run.syscall(1300, 1, "/bin/x", "openat", key="noisy")
    assert run.syscall(1300, 1, "/bin/x", "openat", key="wanted")
    assert run.syscall(1300, 1, "/bin/x", "openat")
    keep = Run("""
        keys:
          keep: [auoms]
    """)
    assert keep.syscall(1301, 1, "/bin/x", "openat", key="auoms")
    assert not keep.syscall(1301, 1, "/bin/x", "openat", key="other")
    assert not keep.syscall(1301, 1, "/bin/x", "openat")
    assert keep.judge(keep.history.user_event())  # user-space events are not keyed
    assert run.engine.counters == {"keys.drop": 1} and keep.engine.counters == {"keys.keep": 2}


def test_a_new_engine_on_the_same_tree_judges_with_its_own_filters():
    history = History()
    tree = ProcessTree()
    old = engine_for(DPKG, tree)
    new = engine_for("process_filters: []", tree)
    event = history.execve(1400, 1, "/usr/bin/dpkg")
    tree.observe(event)
    event = history.syscall(1400, 1, "/usr/bin/dpkg", "openat")
    tree.observe(event)
    assert not old.judge(event)
    assert new.judge(event)
    assert not old.judge(event)  # caches are per engine: switching back and forth is exact


def test_filters_facade_counts_and_keeps_counters_across_reload(tmp_path):
    path = tmp_path / "filters.yaml"
    path.write_text(textwrap.dedent(DPKG))
    filters = Filters(str(path))
    history = History()
    filters.process(history.execve(1500, 1, "/usr/bin/dpkg"))
    assert not filters.process(history.syscall(1500, 1, "/usr/bin/dpkg", "openat"))
    path.write_text(textwrap.dedent(DPKG) + "  - {name: more, exe: /bin/more}\n")
    assert filters.reload()
    assert not filters.process(history.syscall(1500, 1, "/usr/bin/dpkg", "openat"))
    assert filters.metrics()["filter_dropped"] == {"dpkg": 2, "more": 0}
    path.write_text("process_filters:\n  - {name: x, depth: nope}\n")
    assert not filters.reload()
    assert filters.last_error.startswith(f"{path}:2: ")
    assert not filters.process(history.syscall(1500, 1, "/usr/bin/dpkg", "openat"))  # last good still applies
    assert filters.metrics()["filter_reload_errors"] == 1


def test_output_filter_leaves_out_types_and_fields_without_touching_the_shared_records():
    engine = engine_for("""
        outputs:
          "*":
            drop_fields: [a0]
          syslog:
            drop_record_types: [USER_LOGIN]
            drop_fields: [exe]
    """)
    history = History()
    event = history.syscall(1600, 1, "/bin/x", "openat")
    out = engine.output("syslog").apply(event)
    names = [f[0] for f in out[0].fields]
    assert "a0" not in names and "exe" not in names and "a1" in names
    assert "a0" in [f[0] for f in event[0].fields]  # the original (other outputs) is unchanged
    assert engine.output("syslog").apply(history.user_event()) == []
    other = engine.output("file")
    assert "exe" in [f[0] for f in other.apply(event)[0].fields]
    assert engine.output("nothing-set") is engine.output("nothing-set")


def test_output_filter_noop_returns_the_same_list():
    engine = engine_for("process_filters: []")
    event = History().syscall(1700, 1, "/bin/x", "openat")
    assert engine.output("any").apply(event) is event


def test_the_first_filter_of_the_file_that_drops_is_counted_whatever_its_kind():
    for first, second in (("by-cmdline", "by-exe"), ("by-exe", "by-cmdline")):
        filters = {
            "by-cmdline": "{name: by-cmdline, user: root, cmdline: {prefix: /usr/bin/tool}}",
            "by-exe": "{name: by-exe, exe: /usr/bin/tool}",
        }
        run = Run(f"process_filters:\n  - {filters[first]}\n  - {filters[second]}\n"
                  f"  - {{name: by-glob, exe: {{glob: '/usr/bin/t*'}}}}\n")
        run.execve(1800, 1, "/usr/bin/tool")
        verdict = run.syscall(1800, 1, "/usr/bin/tool", "openat")
        assert verdict.filter == first
        assert run.engine.counters == {first: 2, second: 0, "by-glob": 0}


def test_output_filter_drops_merged_record_types_and_prefixed_fields():
    """Per-output drops reach the records folded into a syscall record (OBJ_PID_..., BPRM_FCAPS_...), and the
    MSTIC line of the copy shows them gone while the shared record keeps them."""
    from auoms_py.format import mstic
    from auoms_py.pipeline import Pipeline

    lines = [
        'type=SYSCALL msg=audit(1.001:5): arch=c000003e syscall=62 success=yes exit=0 a0=5 a1=9 a2=0 a3=0 items=0 '
        'ppid=1 pid=2 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm="kill" '
        'exe="/bin/kill" key="k"',
        'type=OBJ_PID msg=audit(1.001:5): opid=5 oauid=-1 ouid=0 oses=-1 ocomm="sleep"',
        "type=BPRM_FCAPS msg=audit(1.001:5): fver=0 fp=0",
        "type=EOE msg=audit(1.001:5): ",
    ]
    pipeline = Pipeline(None)
    (event,) = [e for line in lines for e in pipeline.feed_line(line)]
    engine = engine_for("""
        outputs:
          syslog:
            drop_record_types: [BPRM_FCAPS]
            drop_fields: [OBJ_PID_ocomm, a0]
    """)
    (out,) = engine.output("syslog").apply(event)
    line = mstic.format_record(out, frozenset())
    assert "OBJ_PID_opid=5" in line and "OBJ_PID_ocomm" not in line and "BPRM_FCAPS" not in line
    assert " a0=" not in line and " a1=9 " in line
    shared = mstic.format_record(event[0], frozenset())
    assert 'OBJ_PID_ocomm="sleep"' in shared and "BPRM_FCAPS_fver=0" in shared and " a0=5 " in shared


def test_metrics_carry_the_process_trees_counters():
    h = History()
    filters = Filters(None)
    filters.process(h.execve(50, 1, "/usr/bin/bash", ["bash"]))
    filters.process(h.syscall(51, 50, "/usr/bin/bash", "openat"))
    tree = filters.metrics()["process_tree"]
    assert tree["execs"] == 1 and tree["first_seen"] == 1 and tree["execs_after_exit"] == 0
    assert filters.metrics()["process_connector"] is None  # replay: no connector
