"""The process tree: who runs what, under which parent, in which container.

Process filters need to know, for the process of each syscall event, its program, command line and real uid/gid
and those of its ancestors (depth); the output needs its container id (reference §3.10) and, in the JSON format,
its parent's exe and cmdline. The tree learns from:
- the events themselves (`observe`): an execve sets the program of its process (before the event is judged, so an
  execve is judged by the program it executes, as AUOMS does); any syscall event carries pid, ppid, uid, gid, exe
  and its proctitle, enough to place a process seen for the first time;
- /proc, live only (`read_proc=True`): seeded with every running process at start, then read for a process or
  parent seen for the first time (full command line, cgroup for the container id);
- the kernel's process connector (fork/exit), live only, when `ProcConnector` runs (auoms_py.procs.connector):
  a fork links a child to its parent even when the parent exits before the child's first audited syscall.

Bounded memory: at most `max_processes` entries. An exited process (process connector, exit_group event, or
gone from /proc) is forgotten `exit_grace` seconds after its exit; past the bound the oldest entries go first.
A child keeps a reference to its parent's entry, so ancestry survives the parent's exit (and reparenting to init).

Clock: the events' own time (`sec`), so replay and live behave alike. Replay builds the tree from the log only
(`read_proc=False`, the default): it never reads this host's /proc.
"""
from __future__ import annotations

import collections
import operator

from auoms_py.pipeline.model import AUOMS_EXECVE
from auoms_py.procs import containers, procfs

MAX_CMDLINE = 4096  # characters of a command line kept per process (filters see this much)
_MAX_ANCESTRY = 1024  # bound on parent walks (a pid-reuse loop in the links cannot hang the agent)


_LAST_SEEN = operator.attrgetter("last_seen")


class Proc:
    """One process (one incarnation of a pid). Attributes are latin-1-decoded text like the pipeline's."""

    __slots__ = ("pid", "ppid", "uid", "gid", "exe", "cmdline", "containerid", "child_containerid", "parent",
                 "last_seen", "exited_at", "exit_noted", "known", "match_gen", "matched", "self_gen", "self_matched")

    def __init__(self, pid: int, ppid: int | None = None, uid: int | None = None, gid: int | None = None,
                 exe: str | None = None, cmdline: str | None = None, parent: "Proc | None" = None,
                 known: bool = True, now: float = 0.0):
        self.pid = pid
        self.ppid = ppid
        self.uid = uid
        self.gid = gid
        self.exe = exe
        self.cmdline = cmdline[:MAX_CMDLINE] if cmdline else cmdline
        self.containerid = ""
        self.child_containerid = ""  # set on a container shim: the id its descendants get
        self.parent = parent
        self.last_seen = now
        self.exited_at: float | None = None
        self.exit_noted = False  # its exit came from the process connector, which runs ahead of the audit events
        self.known = known  # False: a placeholder for a parent seen only as someone's ppid (replay)
        # filter match caches, valid while *_gen equals the judging engine's generation
        self.match_gen = -1
        self.matched: tuple = ()
        self.self_gen = -1
        self.self_matched: tuple = ()

    def invalidate(self) -> None:
        self.match_gen = self.self_gen = -1

    def inherit_container(self) -> None:
        parent = self.parent
        if parent is not None:
            self.containerid = parent.child_containerid or parent.containerid

    def ancestors(self):
        """Parent, grandparent, ... (bounded)."""
        p = self.parent
        n = 0
        while p is not None and n < _MAX_ANCESTRY:
            yield p
            p = p.parent
            n += 1

    def __repr__(self) -> str:
        return f"<Proc {self.pid} ppid={self.ppid} uid={self.uid} exe={self.exe!r}>"


def _json_text(value: str) -> str:
    return value if value.isascii() else value.encode("latin-1").decode("utf-8", "backslashreplace")


class ProcessTree:
    def __init__(self, *, read_proc: bool = False, proc_root: str = "/proc", max_processes: int = 32768,
                 exit_grace: float = 60.0, check_interval: float = 30.0, parent_info: bool = True):
        self.read_proc = read_proc
        self.proc_root = proc_root
        self.max_processes = max_processes
        self.exit_grace = exit_grace
        self.check_interval = check_interval
        self.parent_info = parent_info  # write the parent's exe/cmdline into OutputRecord.extra (JSON format)
        self.procs: dict[int, Proc] = {}
        self.clock = 0.0  # latest event time seen
        self._next_sweep = 0.0
        # (kind, pid, ppid) from the process connector, applied on the next event; bounded for an agent that sees
        # no events for a long time on a busy host (the oldest notes go: /proc and the events cover for them)
        self._pending: collections.deque = collections.deque(maxlen=100_000)
        self.counters = {"seeded": 0, "execs": 0, "first_seen": 0, "proc_reads": 0, "forks": 0, "exits": 0,
                         "expired": 0, "evicted": 0, "pid_reused": 0, "execs_after_exit": 0}

    def __len__(self) -> int:
        return len(self.procs)

    def get(self, pid: int | None) -> Proc | None:
        return self.procs.get(pid) if pid is not None else None

    # ---- seeding (live) -------------------------------------------------------------------------------------
    def seed_from_proc(self) -> int:
        """Load every running process from /proc (live agent start). Returns how many were added."""
        infos = {}
        for pid in procfs.list_pids(self.proc_root):
            info = procfs.read_process(pid, self.proc_root)
            if info is not None:
                infos[pid] = info
        for pid, info in infos.items():
            if pid not in self.procs:
                self.procs[pid] = self._from_info(info, None)
        # link parents, then containers top-down (a parent's id must be known before its children inherit it)
        for pid, proc in self.procs.items():
            if proc.parent is None and proc.ppid:
                proc.parent = self.procs.get(proc.ppid)
        for pid in infos:
            self._settle_container(self.procs[pid], infos[pid].cgroup)
        self.counters["seeded"] += len(infos)
        return len(infos)

    def _from_info(self, info: procfs.ProcInfo, parent: Proc | None) -> Proc:
        proc = Proc(info.pid, info.ppid, info.uid, info.gid, info.exe, info.cmdline, parent, True, self.clock)
        proc.child_containerid = containers.from_shim(info.exe, containers.split_cmdline(info.cmdline))
        return proc

    def _settle_container(self, proc: Proc, cgroup: str | None) -> None:
        cid = containers.from_cgroup(cgroup) if cgroup else ""
        if cid:
            proc.containerid = cid
            return
        # inherit (walks up only through entries not yet settled in seeding order: bounded)
        parent = proc.parent
        if parent is not None:
            proc.containerid = parent.child_containerid or parent.containerid

    # ---- the process connector (live): called from its thread, applied in observe() -------------------------
    def note_fork(self, child: int, parent: int) -> None:
        self._pending.append((1, child, parent))

    def note_exit(self, pid: int) -> None:
        self._pending.append((2, pid, 0))

    def _apply_pending(self) -> None:
        pending = self._pending
        procs = self.procs
        now = self.clock
        while pending:
            kind, pid, ppid = pending.popleft()
            if kind == 1:
                self.counters["forks"] += 1
                existing = procs.get(pid)
                if existing is not None and existing.exited_at is None and existing.ppid == ppid:
                    continue  # already placed by its own audit event (the connector lagged)
                parent = self._parent(ppid)
                child = Proc(pid, ppid, None, None, None, None, parent, True, now)
                if parent is not None:
                    child.uid, child.gid, child.exe, child.cmdline = parent.uid, parent.gid, parent.exe, parent.cmdline
                    child.known = parent.known
                    child.inherit_container()
                if existing is not None:
                    self.counters["pid_reused"] += 1
                procs[pid] = child
            else:
                proc = procs.get(pid)
                if proc is not None and proc.exited_at is None:
                    self.counters["exits"] += 1
                    proc.exited_at = now
                    proc.exit_noted = True

    # ---- events ---------------------------------------------------------------------------------------------
    def observe(self, event) -> Proc | None:
        """Update the tree from one output event (list[OutputRecord]) and return the process of its syscall
        (None for user-space events). Sets the record's `containerid` and, with parent_info, `extra`."""
        rec = event[0]
        if not rec.is_syscall or rec.pid is None:
            return None
        now = rec.sec
        if now > self.clock:
            self.clock = now
        if self._pending:
            self._apply_pending()
        if now >= self._next_sweep:
            self._sweep(now)
        pid = rec.pid
        proc = self.procs.get(pid)
        if rec.code == AUOMS_EXECVE and rec.success != "no":
            proc = self._exec(proc, rec, now)
        else:
            if proc is None or not proc.known:
                proc = self._first_sight(proc, rec, now)
            elif rec.ppid is not None and rec.ppid != proc.ppid:
                proc = self._ppid_changed(proc, rec, now)
            elif rec.exe is not None and rec.exe != proc.exe:
                self._exec_unseen(proc, rec)
            proc.last_seen = now
            if rec.syscall == "exit_group" and proc.exited_at is None:
                self.counters["exits"] += 1
                proc.exited_at = now
        if len(self.procs) > self.max_processes:
            self._evict()
        rec.containerid = proc.containerid
        if self.parent_info:
            parent = proc.parent
            if parent is not None and parent.known:
                info = {"parent_exe": _json_text(parent.exe) if parent.exe is not None else None,
                        "parent_cmdline": _json_text(parent.cmdline) if parent.cmdline is not None else None}
                if rec.extra:
                    rec.extra.update(info)
                else:
                    rec.extra = info
        return proc

    def _exec(self, proc: Proc | None, rec, now: float) -> Proc:
        """A successful execve: from now on the process runs rec.exe with rec.cmdline."""
        self.counters["execs"] += 1
        pid = rec.pid
        ppid = rec.ppid
        exited = None
        if proc is None or (proc.known and ppid is not None and proc.ppid != ppid):
            if proc is not None:
                self.counters["pid_reused"] += 1  # (or a missed fork+exit: either way a new process)
            proc = Proc(pid, ppid, known=True, now=now)
            proc.parent = self._parent(ppid)
            self.procs[pid] = proc
        else:
            # the process connector runs ahead of audit: a short-lived program has often exited (and been noted)
            # before its execve event is read. It stays exited, and its /proc entry is not read: gone, or the pid's
            # next owner's. (An exit known from an exit_group event came before this execve in the log: the pid's
            # next process, then, which lives on.)
            if proc.exit_noted:
                exited = proc.exited_at
            if not proc.known:
                proc.parent = self._parent(ppid)
        proc.known = True
        proc.ppid = ppid
        proc.uid = rec.uid
        proc.gid = rec.gid
        proc.exe = rec.exe
        cmdline = rec.cmdline
        proc.cmdline = cmdline[:MAX_CMDLINE] if cmdline else cmdline
        proc.last_seen = now
        proc.exited_at = exited
        proc.invalidate()
        proc.child_containerid = containers.from_shim(rec.exe, rec.argv)
        if exited is None:
            self._container_of(proc)
        else:
            self.counters["execs_after_exit"] += 1
            proc.inherit_container()
        return proc

    def _first_sight(self, stub: Proc | None, rec, now: float) -> Proc:
        """A process not seen before (or known only as someone's parent): place it from the event."""
        self.counters["first_seen"] += 1
        pid = rec.pid
        proc = stub if stub is not None else Proc(pid, now=now)
        proc.known = True
        proc.ppid = rec.ppid
        proc.uid = rec.uid
        proc.gid = rec.gid
        proc.exe = rec.exe
        if proc.parent is None or proc.parent.pid != rec.ppid:
            proc.parent = self._parent(rec.ppid)
        proc.cmdline = self._cmdline_for(proc, rec)
        proc.last_seen = now
        proc.invalidate()
        self._container_of(proc)
        self.procs[pid] = proc
        return proc

    def _cmdline_for(self, proc: Proc, rec) -> str | None:
        """The best command line for a process first seen in a non-execve event: /proc's (full) when it still
        runs the event's program, else its parent's when it is a fork of it, else the proctitle (128 bytes)."""
        if self.read_proc:
            exe = procfs.read_exe(proc.pid, self.proc_root)
            if exe is not None and exe == rec.exe:
                info = procfs.read_process(proc.pid, self.proc_root, with_cgroup=False)
                self.counters["proc_reads"] += 1
                if info is not None:
                    return info.cmdline[:MAX_CMDLINE]
        parent = proc.parent
        if parent is not None and parent.known and parent.exe == rec.exe and parent.cmdline:
            return parent.cmdline
        cmdline = rec.cmdline
        return cmdline[:MAX_CMDLINE] if cmdline else cmdline

    def _exec_unseen(self, proc: Proc, rec) -> None:
        """Same process, another program: it executed without an audited execve (no execve rule)."""
        proc.exe = rec.exe
        proc.uid = rec.uid
        proc.gid = rec.gid
        proc.cmdline = self._cmdline_for(proc, rec)
        proc.child_containerid = ""
        proc.invalidate()

    def _ppid_changed(self, proc: Proc, rec, now: float) -> Proc:
        if rec.exe == proc.exe:
            # reparented (its parent exited): same process; keep the birth parent for ancestry
            proc.ppid = rec.ppid
            return proc
        # the pid now belongs to another process
        self.counters["pid_reused"] += 1
        fresh = Proc(rec.pid, now=now)
        return self._first_sight(fresh, rec, now)

    def _container_of(self, proc: Proc) -> None:
        if self.read_proc:
            cid = containers.from_cgroup(procfs.read_cgroup(proc.pid, self.proc_root))
            if cid:
                proc.containerid = cid
                return
        proc.inherit_container()

    def _parent(self, ppid: int | None, depth: int = 0) -> Proc | None:
        """The entry of a parent pid: known, read from /proc (live), or a placeholder (replay)."""
        if not ppid:
            return None
        parent = self.procs.get(ppid)
        if parent is not None:
            return parent
        if self.read_proc and depth < 64:
            info = procfs.read_process(ppid, self.proc_root)
            self.counters["proc_reads"] += 1
            if info is not None:
                grandparent = self._parent(info.ppid, depth + 1) if info.ppid != ppid else None
                parent = self._from_info(info, grandparent)
                parent.last_seen = self.clock
                self._settle_container(parent, info.cgroup)
                self.procs[ppid] = parent
                return parent
        parent = Proc(ppid, known=False, now=self.clock)
        self.procs[ppid] = parent
        return parent

    # ---- expiry ---------------------------------------------------------------------------------------------
    def _sweep(self, now: float) -> None:
        """Forget processes that exited more than exit_grace ago; live, notice exits via /proc; keep the bound."""
        self._next_sweep = now + self.check_interval
        procs = self.procs
        grace = self.exit_grace
        gone = []
        idle_before = now - self.check_interval
        for pid, proc in procs.items():
            exited = proc.exited_at
            if exited is None:
                if self.read_proc and proc.last_seen < idle_before and not procfs.exists(pid, self.proc_root):
                    proc.exited_at = now
                    self.counters["exits"] += 1
            elif now - exited > grace:
                gone.append(pid)
        for pid in gone:
            del procs[pid]
        self.counters["expired"] += len(gone)
        if len(procs) > self.max_processes:
            self._evict()

    def _evict(self) -> None:
        """Over the bound: drop exited processes first, then the longest unseen, down to 75 % of the bound (a
        quarter at a time, so a log full of short-lived processes does not sort the table every few events)."""
        procs = self.procs
        excess = len(procs) - int(self.max_processes * 0.75)
        if excess <= 0:
            return
        # exited ones first, then the running, each group sorted by last_seen in C (attrgetter, no Python key)
        exited = [proc for proc in procs.values() if proc.exited_at is not None]
        victims = sorted(exited, key=_LAST_SEEN)[:excess]
        if len(victims) < excess:
            running = [proc for proc in procs.values() if proc.exited_at is None]
            victims += sorted(running, key=_LAST_SEEN)[:excess - len(victims)]
        for proc in victims:
            del procs[proc.pid]
        self.counters["evicted"] += excess

    def check_bound(self) -> None:
        if len(self.procs) > self.max_processes:
            self._evict()
