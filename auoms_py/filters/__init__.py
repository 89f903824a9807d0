"""Noise filters: process filters (AUOMS semantics), key filters, per-output record-type/field drops.

The API the agent and `replay` use (everything else in this package is detail):

    from auoms_py.filters import Filters, FilterConfigError

    filters = Filters("/etc/auoms-py/filters.yaml", live=True, userdb=pipeline.userdb)  # raises FilterConfigError
    filters.watch()                       # hot reload: a saved change applies within ~0.2 s (agent only)
    # (the agent uses `load(path)`: the same, live and watched; `filters.apply(events)` keeps the undropped ones)
    for event in pipeline.feed_netlink(...):            # event: list[OutputRecord]
        if filters.process(event):        # tree.observe(event) then judge; falsy = dropped
            for output in outputs:
                records = filters.output(output.name).apply(event)   # per-output drops; same list if none
                ...
    filters.reload()                      # SIGHUP: same as a watched change; False = kept the last good filters
    filters.metrics()                     # {"filter_dropped": {name: events}, "filters_active": ..., ...}
    filters.close()                       # stops the watcher and the process connector

- `live=True` (the agent): the process tree is seeded from /proc, reads /proc for processes seen for the first
  time (full cmdline, container id from the cgroup) and follows fork/exit through the kernel's process connector. `live=False` (replay, top on files, tests): the tree is built
  from the log alone; this host's /proc is never read.
- `Filters(None)` filters nothing but still keeps the process tree (container ids, parent info for JSON).
- A broken file: the constructor raises FilterConfigError (str(): `file:line: reason` per problem); a reload keeps
  the last good filters, logs the error and keeps it in `filters.last_error`.
- An unknown user/group name disables only that filter, with a warning (`filters.warnings`, also logged).
- Swapping is atomic between events: `process()` reads the current engine once per event, so no event is judged
  twice or skipped around a reload.

Lower level: `FilterEngine` (auoms_py.filters.engine), `ProcessTree` (auoms_py.procs.tree), the schema
(auoms_py.filters.schema), `describe` (what each filter does, for `ctl check-config`).
"""
from __future__ import annotations

import logging
import threading

from auoms_py.filters.engine import KEEP, FilterEngine, OutputFilter, Verdict
from auoms_py.filters.schema import FilterConfigError

__all__ = ["Filters", "FilterEngine", "FilterConfigError", "OutputFilter", "Verdict", "KEEP", "load"]

log = logging.getLogger("auoms_py.filters")


class Filters:
    def __init__(self, path: str | None, *, live: bool = False, userdb=None, tree=None,
                 max_processes: int = 32768, proc_root: str = "/proc", trust_check=None,
                 connector_thread: bool = True):
        from auoms_py.procs.tree import ProcessTree

        self.path = path
        # trust_check(path) -> why the file must not be used, or None (the agent refuses a filter file other users
        # can write: auoms_py.service.hygiene); at start that is an error, on reload the last good filters stay
        self.trust_check = trust_check
        self.userdb = userdb
        self._connector = None
        seed = tree is None and live
        if tree is None:
            tree = ProcessTree(read_proc=live, proc_root=proc_root, max_processes=max_processes)
        self.tree = tree
        self.counters: dict[str, int] = {}
        self.engine = self._load()  # raises FilterConfigError: the agent refuses to start on a broken file
        if seed:
            from auoms_py.procs.connector import ProcConnector

            connector = ProcConnector(tree)
            # connector_thread=False: the caller's loop calls drain_connector() (the agent: no second thread)
            if connector.start(thread=connector_thread):  # before seeding: no fork between the two is missed
                self._connector = connector
            tree.seed_from_proc()
        self.reloads = 0
        self.reload_errors = 0
        self.last_error: str | None = None
        self._watcher = None
        self._reload_lock = threading.Lock()
        for warning in self.engine.warnings:
            log.warning("%s", warning)

    def _load(self) -> FilterEngine:
        if self.path is None:
            return FilterEngine(None, self.tree, self.counters)
        refused = self.trust_check(self.path) if self.trust_check is not None else None
        if refused:
            raise FilterConfigError(self.path, [(0, refused.removeprefix(f"{self.path}: "))])
        users = groups = None
        if self.userdb is not None:
            # read the user db's files afresh: a user created since start resolves on the next reload
            from auoms_py.filters.engine import userdb_lookups
            from auoms_py.pipeline.userdb import UserDB

            users, groups = userdb_lookups(UserDB(self.userdb.passwd_path, self.userdb.group_path))
        return FilterEngine.load(self.path, self.tree, self.counters, users=users, groups=groups)

    @property
    def warnings(self) -> list[str]:
        return self.engine.warnings

    def process(self, event) -> Verdict:
        """Observe the event in the process tree, then judge it with the current filters."""
        engine = self.engine  # one engine per event, whatever a concurrent reload does
        self.tree.observe(event)
        return engine.judge(event)

    def apply(self, events: list) -> list:
        """The events no filter drops (each observed and judged in order)."""
        process = self.process
        return [event for event in events if process(event)]

    def output(self, name: str) -> OutputFilter:
        return self.engine.output(name)

    def reload(self) -> bool:
        """Re-read the filter file. On success the new filters apply from the next event; on failure the last good
        ones stay and the error (file:line: reason) is logged and kept in `last_error`."""
        with self._reload_lock:
            try:
                engine = self._load()
            except FilterConfigError as exc:
                self.reload_errors += 1
                self.last_error = str(exc)
                log.error("filters not reloaded, keeping the last good ones: %s", exc)
                return False
            self.engine = engine
            self.reloads += 1
            self.last_error = None
            for warning in engine.warnings:
                log.warning("%s", warning)
            log.info("filters reloaded from %s: %d active, %d disabled", self.path, len(engine.filters),
                     len(engine.disabled))
            return True

    def watch(self, debounce: float = 0.2) -> None:
        """Reload when the filter file (or the user/group db it resolves names with) changes."""
        if self.path is None or self._watcher is not None:
            return
        from auoms_py.filters.watch import FileWatcher

        paths = [self.path]
        if self.userdb is not None:
            paths += [p for p in (self.userdb.passwd_path, self.userdb.group_path) if p]
        else:
            paths += ["/etc/passwd", "/etc/group"]
        self._watcher = FileWatcher(paths, self.reload, debounce)
        self._watcher.start()

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._connector is not None:
            self._connector.stop()
            self._connector = None

    def drain_connector(self) -> None:
        """Note the forks and exits the process connector has queued (when it runs without its own thread)."""
        connector = self._connector
        if connector is not None and not connector.threaded:
            connector.drain()

    def metrics(self) -> dict:
        engine = self.engine
        return {
            "filter_dropped": dict(self.counters),
            "filters_active": len(engine.filters),
            "filters_disabled": len(engine.disabled),
            "filter_reloads": self.reloads,
            "filter_reload_errors": self.reload_errors,
            "process_tree_size": len(self.tree),
            # how the tree learns: execs, forks and exits, /proc reads, pid reuse, expiry and eviction
            "process_tree": dict(self.tree.counters),
            "process_connector": dict(self._connector.counters) if self._connector is not None else None,
        }


def load(path: str, *, live: bool = True, userdb=None, watch: bool = True) -> Filters:
    """The agent's hook: filters for the live host, hot-reloaded (FilterConfigError, a ValueError, on a bad file)."""
    filters = Filters(path, live=live, userdb=userdb)
    if watch:
        filters.watch()
    return filters
