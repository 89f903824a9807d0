"""What the file watchers (filters, rules.d, the user db) ask inotify for: changes only.

watchdog subscribes to every inotify event by default, opens and reads included. The filter watcher follows
/etc/passwd and /etc/group through their directory, where the dynamic linker opens /etc/ld.so.cache for every
program start: without this mask each exec on the host woke three watchdog threads (4 % of a CPU at 100 execs/s).
"""
from __future__ import annotations

from watchdog.events import (FileClosedEvent, FileCreatedEvent, FileDeletedEvent, FileModifiedEvent,
                             FileMovedEvent)

# written (modify, close-write, attrib), created, deleted, renamed: every way an editor or a package saves a file
CHANGE_EVENTS = [FileModifiedEvent, FileClosedEvent, FileCreatedEvent, FileDeletedEvent, FileMovedEvent]


def watch_changes(observer, handler, directory: str) -> None:
    """Schedule `handler` on the changes of `directory`'s entries (not recursive)."""
    observer.schedule(handler, directory, recursive=False, event_filter=CHANGE_EVENTS)
