"""Reload audit rules when the rules directory changes, and re-check the kernel periodically.

    from auoms_py.rules.sync import RulesSync
    from auoms_py.rules.watch import RulesWatcher
    watcher = RulesWatcher(RulesSync(rules_dir, owner_key="auoms"), on_report=log_report)
    watcher.start()        # first sync right away, then: file saved -> sync within `debounce` s (0.2 by default);
                           # every `recheck_interval` s (15) a sync puts back rules deleted behind our back
    watcher.trigger()      # sync now (e.g. on SIGHUP)
    watcher.stop()

``on_report(report)`` is called from the watcher thread after a sync that changed something, or whose errors or
warnings differ from the previous one (so a broken file is said once, not every 15 s). ``last_report`` holds the
latest report. A missing rules directory loads no rules; creating it later is noticed.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from auoms_py.fswatch import watch_changes
from auoms_py.rules.sync import RulesSync, SyncReport

log = logging.getLogger(__name__)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: "RulesWatcher") -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path, getattr(event, "dest_path", "") or ""]
        if any(self.watcher.concerns(os.fsdecode(p)) for p in paths if p):
            self.watcher.trigger()


class RulesWatcher:
    def __init__(self, syncer: RulesSync, *, debounce: float = 0.2, recheck_interval: float = 15.0,
                 on_report: Callable[[SyncReport], None] | None = None) -> None:
        if syncer.rules_path is None:
            raise ValueError("RulesWatcher needs a rules path")
        self.syncer = syncer
        self.rules_path = Path(syncer.rules_path)
        self.debounce = debounce
        self.recheck_interval = recheck_interval
        self.on_report = on_report
        self.last_report: SyncReport | None = None
        self.syncs = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: Observer | None = None
        self._watched: Path | None = None
        self._said: tuple = ()

    # ---- control --------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rules-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._disarm()

    def trigger(self) -> None:
        """Ask for a sync soon (after the debounce delay)."""
        self._wake.set()

    def concerns(self, path: str) -> bool:
        """A change at `path` may change the rules: a *.rules file in the directory, or the directory itself."""
        p = Path(path)
        target = self.rules_path
        if p == target:
            return True
        if target.is_dir() or not target.suffix:
            return p.parent == target and p.name.endswith(".rules")
        return False

    # ---- loop -----------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        next_check = 0.0  # first sync at once
        while not self._stop.is_set():
            self._arm()
            woke = self._wake.wait(max(0.0, next_check - time.monotonic()))
            if self._stop.is_set():
                break
            if woke:
                # debounce: editors write in several steps; wait for quiet, but never delay past 1 s
                deadline = time.monotonic() + 1.0
                self._wake.clear()
                while time.monotonic() < deadline and self._wake.wait(self.debounce):
                    self._wake.clear()
                    if self._stop.is_set():
                        return
            self._sync_once()
            next_check = time.monotonic() + self.recheck_interval

    def _sync_once(self) -> None:
        try:
            report = self.syncer.sync()
        except Exception as exc:  # netlink trouble: say it, keep running, try again at the next check
            log.error("audit rules sync failed: %s", exc)
            report = SyncReport(errors=[f"sync failed: {exc}"])
        self.syncs += 1
        self.last_report = report
        said = (tuple(report.errors), tuple(report.warnings), report.immutable)
        if report.changed or said != self._said:
            self._said = said
            if self.on_report is not None:
                try:
                    self.on_report(report)
                except Exception:
                    log.exception("on_report callback failed")

    # ---- filesystem watch -----------------------------------------------------------------------------------------

    def _arm(self) -> None:
        """Watch the rules directory (or, while it does not exist, its parent, to see it appear)."""
        target = self.rules_path if self.rules_path.is_dir() else self.rules_path.parent
        while not target.is_dir() and target != target.parent:
            target = target.parent
        if target == self._watched and self._observer is not None:
            return
        self._disarm()
        observer = Observer()
        watch_changes(observer, _Handler(self), str(target))
        observer.daemon = True
        observer.start()
        self._observer, self._watched = observer, target
        if target != self.rules_path:
            self._wake.set()  # the directory may have appeared between checks

    def _disarm(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(2)
            self._observer = None
            self._watched = None
