"""Files the agent takes orders from must be safe from other users (as auditd refuses a world-writable auditd.conf or
plugin file): the configuration, the filter file, and the audit rules directory with its files.

The agent runs as root and these files decide what it loads into the kernel, what it drops and where it sends
events. A file is refused when
- it is writable by others (the "other" write bit), or by its group when that group is not root's (gid 0);
- it is owned by neither root nor the user the agent runs as;
- its directory lets others replace it: writable by others or a non-root group, without the sticky bit (a sticky
  directory such as /tmp only lets the owner rename or delete the file).
A rules *directory* is itself refused when others can write to it, sticky or not: anyone could add a rule file.

The message names the file, what is wrong and the fix (`chmod go-w FILE`, `chown root FILE`). At start a refused
file stops the agent; on reload (SIGHUP or a watched edit) it is reported and the last good version stays in force.
"""
from __future__ import annotations

import os
import stat


def untrusted(path: str | os.PathLike, *, scanned_directory: bool = False) -> str | None:
    """Why `path` must not be trusted, or None. A missing file is not this check's business (None)."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError:
        return None
    problem = _mode_problem(path, st, directory=scanned_directory)
    if problem:
        return problem
    parent = os.path.dirname(os.path.realpath(path)) or "/"
    try:
        pst = os.stat(parent)
    except OSError:
        return None
    if _others_can_write(pst) and not pst.st_mode & stat.S_ISVTX:
        who = "other users" if pst.st_mode & stat.S_IWOTH else f"group {pst.st_gid}"
        return (f"{path}: its directory {parent} is writable by {who} (mode {stat.S_IMODE(pst.st_mode):04o}), who "
                f"could replace it; auoms-py runs as root and refuses it: chmod go-w {parent}")
    return None


def _others_can_write(st: os.stat_result) -> bool:
    return bool(st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and st.st_gid != 0))


def _mode_problem(path: str, st: os.stat_result, *, directory: bool) -> str | None:
    kind = "directory" if stat.S_ISDIR(st.st_mode) else "file"
    mode = stat.S_IMODE(st.st_mode)
    if _others_can_write(st) and not (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX and not directory):
        who = "other users" if st.st_mode & stat.S_IWOTH else f"group {st.st_gid}"
        return (f"{path}: this {kind} is writable by {who} (mode {mode:04o}); auoms-py runs as root and takes orders "
                f"from it, so it refuses it: chmod go-w {path}")
    if st.st_uid not in (0, os.geteuid()):
        return (f"{path}: this {kind} is owned by uid {st.st_uid}, not root; auoms-py refuses it: chown root {path}")
    return None


def check_files(paths: list[str | None], rules_dir: str | None = None) -> list[str]:
    """Problems of the given files and of the rules directory with its *.rules files."""
    problems = [p for p in (untrusted(path) for path in paths if path) if p]
    if rules_dir and os.path.isdir(rules_dir):
        from auoms_py.rules.syntax import rules_files

        problem = untrusted(rules_dir, scanned_directory=True)
        if problem:
            problems.append(problem)
        problems += [p for p in (untrusted(path) for path in rules_files(rules_dir)) if p]
    return problems
