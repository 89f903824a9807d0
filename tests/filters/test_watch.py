"""Hot reload through the file watcher (watchdog, real inotify): saves apply, broken files keep the last good
filters, reading the file does not trigger reloads, a new user in the user db enables a filter naming it."""
import os
import time

from auoms_py.filters import Filters
from auoms_py.pipeline import UserDB
from tests.filters.events import History


def wait_until(condition, timeout: float = 5.0) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)
    return time.monotonic() - start


def test_saves_apply_quickly_and_a_broken_file_keeps_the_last_good(tmp_path):
    path = tmp_path / "filters.yaml"
    path.write_text("process_filters:\n  - {name: a, exe: /bin/a}\n")
    filters = Filters(str(path))
    filters.watch()
    history = History()
    try:
        assert not filters.process(history.syscall(10, 1, "/bin/a", "openat"))
        path.write_text("process_filters:\n  - {name: b, exe: /bin/b}\n")  # in place
        assert wait_until(lambda: filters.reloads == 1) < 2.0
        assert filters.process(history.syscall(10, 1, "/bin/a", "openat"))
        assert not filters.process(history.syscall(11, 1, "/bin/b", "openat"))
        time.sleep(1.0)
        assert filters.reloads == 1  # reading the file ourselves is not a change (no reload loop)

        path.write_text("process_filters:\n  - {name: b, exe: {regex: '('}}\n")
        wait_until(lambda: filters.reload_errors == 1)
        assert filters.last_error.startswith(f"{path}:2: filter 'b': exe: regex")
        assert not filters.process(history.syscall(11, 1, "/bin/b", "openat"))  # last good still applies

        tmp = tmp_path / ".filters.yaml.swp"
        tmp.write_text("process_filters: []\n")
        os.replace(tmp, path)  # saved by rename
        wait_until(lambda: filters.reloads == 2)
        assert filters.last_error is None
        assert filters.process(history.syscall(11, 1, "/bin/b", "openat"))
    finally:
        filters.close()


def test_a_user_created_later_enables_the_filter_naming_it(tmp_path):
    passwd, group = tmp_path / "passwd", tmp_path / "group"
    passwd.write_text("root:x:0:0:root:/root:/bin/sh\n")
    group.write_text("root:x:0:\n")
    path = tmp_path / "filters.yaml"
    path.write_text("process_filters:\n  - {name: agent, user: omsagent, exe: /opt/agent}\n")
    filters = Filters(str(path), userdb=UserDB(str(passwd), str(group)))
    filters.watch()
    history = History()
    try:
        assert [s.name for s in filters.engine.disabled] == ["agent"]
        assert filters.process(history.syscall(20, 1, "/opt/agent", "openat", uid=998))
        with open(passwd, "a") as f:
            f.write("omsagent:x:998:998::/var/opt/microsoft/omsagent:/bin/bash\n")
        wait_until(lambda: filters.reloads == 1)
        assert filters.engine.disabled == []
        assert not filters.process(history.syscall(20, 1, "/opt/agent", "openat", uid=998))
    finally:
        filters.close()


def _inotify_masks() -> dict[int, int]:
    """{watched inode: inotify mask} of this process's inotify watches (from /proc/self/fdinfo)."""
    masks = {}
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            text = open(f"/proc/self/fdinfo/{fd}").read()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("inotify wd:"):
                fields = dict(part.split(":", 1) for part in line.split()[1:] if ":" in part)
                masks[int(fields["ino"], 16)] = int(fields["mask"], 16)
    return masks


def test_watched_directories_report_changes_only_not_opens_and_reads(tmp_path):
    """The filter watcher follows /etc/passwd through /etc, where every program start opens /etc/ld.so.cache:
    the kernel must not wake the agent for opens, reads and closes without writing."""
    from auoms_py.filters.watch import FileWatcher
    from auoms_py.rules.sync import RulesSync
    from auoms_py.rules.watch import RulesWatcher
    (tmp_path / "rules.d").mkdir()
    watcher = FileWatcher([str(tmp_path / "filters.yaml")], lambda: None)
    rules = RulesWatcher(RulesSync(str(tmp_path / "rules.d"), "t", netlink=None), recheck_interval=3600)
    watcher.start()
    rules._arm()
    try:
        masks = _inotify_masks()
        for directory in (tmp_path, tmp_path / "rules.d"):
            mask = masks[os.stat(directory).st_ino]
            assert mask & 0x002 and mask & 0x008 and mask & 0x100 and mask & 0x200  # modify, close-write, create, delete
            assert mask & (0x040 | 0x080) == 0x040 | 0x080  # renames
            assert mask & (0x001 | 0x010 | 0x020) == 0, hex(mask)  # access, close-nowrite, open
    finally:
        watcher.stop()
        rules._disarm()
