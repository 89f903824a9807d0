"""Watching files with watchdog and calling back, debounced, when one of them changes.

Editors save in different ways (write in place, write a temporary file and rename it over the original, delete and
re-create), so the *directories* are watched and every event naming a watched path counts. Changes within
`debounce` seconds are coalesced into one callback, run on the watcher's own thread.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Iterable

from watchdog.events import (EVENT_TYPE_CLOSED, EVENT_TYPE_CREATED, EVENT_TYPE_DELETED, EVENT_TYPE_MODIFIED,
                             EVENT_TYPE_MOVED, FileSystemEventHandler)
from watchdog.observers import Observer

from auoms_py.fswatch import watch_changes

log = logging.getLogger("auoms_py.filters")


# changes of content or of which file the name points to; not opened / closed-without-writing / attributes, which
# our own reading of the file would trigger (a reload loop)
_CHANGES = frozenset((EVENT_TYPE_CLOSED, EVENT_TYPE_CREATED, EVENT_TYPE_DELETED, EVENT_TYPE_MODIFIED, EVENT_TYPE_MOVED))


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: "FileWatcher"):
        self.watcher = watcher

    def on_any_event(self, event) -> None:
        if event.event_type not in _CHANGES:
            return
        paths = [getattr(event, "src_path", None), getattr(event, "dest_path", None)]
        for path in paths:
            if path:
                if isinstance(path, bytes):
                    path = os.fsdecode(path)
                if os.path.abspath(path) in self.watcher.paths:
                    self.watcher.changed()
                    return


class FileWatcher:
    def __init__(self, paths: Iterable[str], callback: Callable[[], None], debounce: float = 0.2):
        self.paths = {os.path.abspath(p) for p in paths}
        self.callback = callback
        self.debounce = debounce
        self._due: float | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._observer = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        observer = Observer()
        handler = _Handler(self)
        for directory in sorted({os.path.dirname(p) for p in self.paths}):
            if os.path.isdir(directory):
                watch_changes(observer, handler, directory)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._thread = threading.Thread(target=self._run, name="filter-watch", daemon=True)
        self._thread.start()

    def changed(self) -> None:
        with self._cond:
            self._due = time.monotonic() + self.debounce
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (self._due is None or time.monotonic() < self._due):
                    timeout = None if self._due is None else max(self._due - time.monotonic(), 0.0)
                    self._cond.wait(timeout)
                if self._stop:
                    return
                self._due = None
            try:
                self.callback()
            except Exception:  # a reload must never kill the watcher
                log.exception("filter reload failed")

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
