"""User and group names for ids, from passwd/group files, re-read when the files change.

The interpret stage calls `user_name(uid)` / `group_name(gid)`; the files are checked for changes (mtime, size,
inode) at most once every `check_interval` seconds, so a new user shows by name soon after `useradd` without a
stat per record. Replay passes the files it is told to use, never the host's unless asked.
"""
from __future__ import annotations

import os
import time


def _read_db(path: str | None) -> dict[int, str]:
    names: dict[int, str] = {}
    if not path:
        return names
    try:
        with open(path, "rb") as db:
            data = db.read().decode("latin-1")
    except OSError:
        return names
    for line in data.splitlines():
        if not line or line[0] == "#":
            continue
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdecimal():
            names.setdefault(int(parts[2]), parts[0])  # first entry wins, as getpwuid does
    return names


def _stamp(path: str | None):
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class UserDB:
    def __init__(self, passwd: str | None = "/etc/passwd", group: str | None = "/etc/group",
                 check_interval: float = 5.0, clock=time.monotonic):
        self.passwd_path = passwd
        self.group_path = group
        self.check_interval = check_interval
        self._clock = clock
        self._stamps = (None, None)
        self._next_check = 0.0
        self.users: dict[int, str] = {}
        self.groups: dict[int, str] = {}
        self.generation = 0  # bumped on every (re)load: lets callers drop names they cached
        self.reload()

    def reload(self) -> None:
        self._stamps = (_stamp(self.passwd_path), _stamp(self.group_path))
        self.users = _read_db(self.passwd_path)
        self.groups = _read_db(self.group_path)
        self.generation += 1
        self._next_check = self._clock() + self.check_interval

    def refresh(self) -> bool:
        """Re-read the files if they changed since the last read; True if they were re-read."""
        now = self._clock()
        if now < self._next_check:
            return False
        self._next_check = now + self.check_interval
        stamps = (_stamp(self.passwd_path), _stamp(self.group_path))
        if stamps != self._stamps:
            self.reload()
            return True
        return False

    def user_name(self, uid: int) -> str | None:
        return self.users.get(uid)

    def group_name(self, gid: int) -> str | None:
        return self.groups.get(gid)
