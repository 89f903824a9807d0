"""File input: follows an audit log file by name, like `tail -F`.

- The first time, the file is read from its beginning; afterwards from the position saved in `data_dir`
  (`file-input.json`: path, device, inode, offset), as long as it is the same file (same device and inode, not
  shorter than the saved offset). A different file under that name (rotated while the agent was stopped) is read
  from its beginning; a shorter one (truncated) too.
- Rotation (the name now points to another file): the old file is read to its end first, then the new one from
  its beginning. Truncation (the file got shorter than what was read, e.g. logrotate's copytruncate): reading starts
  again at its beginning. A vanished file is waited for.
- A last line without its newline waits until the writer completes it (or, in a rotated-away file, is taken as is).
- `once: true`: read to the end of the file, then `finished` (the agent delivers and exits). An incomplete last
  line is left for the next run (the saved position stops before it).

The saved offset always points just after a complete line that was fed to the pipeline.
"""
from __future__ import annotations

import json
import logging
import os

from auoms_py.collect.base import MAX_RECORDS_PER_READ, Collector

log = logging.getLogger("auoms_py.collect.file")

CHUNK = 1 << 20
STATE_FILE = "file-input.json"
SAVE_EVERY = 1.0  # seconds between saves of the position while it moves


class FileCollector(Collector):
    kind = "file"

    def __init__(self, path: str, data_dir: str | None, *, once: bool = False, poll_interval: float = 0.25):
        super().__init__()
        self.path = path
        self.data_dir = data_dir
        self.once = once
        self.poll_interval = poll_interval
        self.counters.update(rotations=0, truncations=0, offset=0)
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self.offset = 0  # bytes of the open file consumed up to the end of the last complete line
        self._partial = b""
        self._saved: tuple | None = None
        self._last_save = 0.0
        self._waiting_logged = False

    def describe(self) -> str:
        return f"file input {self.path}"

    @property
    def state_path(self) -> str | None:
        return os.path.join(self.data_dir, STATE_FILE) if self.data_dir else None

    # ---- life cycle -----------------------------------------------------------------------------------------------

    def open(self) -> None:
        saved = self._load_state()
        if not self._open_file(saved):
            if self.once:
                from auoms_py.collect.base import CollectorError
                raise CollectorError(f"input.path: {self.path} does not exist")
            log.warning("%s: the file does not exist yet; waiting for it", self.describe())
            self._waiting_logged = True

    def read(self, pipe, now: float) -> list:
        out: list = []
        if self._fd is None:
            if not self._open_file(None):
                return out
        out.extend(self._read_available(pipe, now, MAX_RECORDS_PER_READ * 64))
        if self._fd is None:
            return out
        # read everything there is before looking at the name again: the old file's tail comes first
        if self._more_to_read():
            self.has_more = True
            return out
        self.has_more = False
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        fst = os.fstat(self._fd)
        if st is not None and (st.st_dev, st.st_ino) != self._ident:
            out.extend(self._flush_partial(pipe, now))  # the rotated-away file will not be completed
            log.info("%s: rotated; reading the new file from its beginning", self.describe())
            self.counters["rotations"] += 1
            self._close_file()
            self._open_file(None)
            out.extend(self._read_available(pipe, now, MAX_RECORDS_PER_READ * 64))
        elif fst.st_size < self.offset + len(self._partial):
            log.warning("%s: truncated (size %d < position %d); reading again from the beginning",
                        self.describe(), fst.st_size, self.offset + len(self._partial))
            self.counters["truncations"] += 1
            self._partial = b""
            self.offset = 0
            os.lseek(self._fd, 0, os.SEEK_SET)
            out.extend(self._read_available(pipe, now, MAX_RECORDS_PER_READ * 64))
        elif self.once and not self._more_to_read():
            self.finished = True
        return out

    def periodic(self, now: float) -> None:
        if now - self._last_save >= SAVE_EVERY:
            self._last_save = now
            self.save_state()

    def close(self, pipe, now: float) -> list:
        out: list = []
        if self._fd is not None and not self.once:
            out.extend(self._read_available(pipe, now, 1 << 62))
        self.save_state()
        self._close_file()
        return out

    def status(self) -> dict:
        self.counters["offset"] = self.offset
        return dict(self.counters)

    # ---- reading --------------------------------------------------------------------------------------------------

    def _open_file(self, saved: dict | None) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if not self._waiting_logged:
                log.error("%s: cannot open (%s); retrying", self.describe(), exc.strerror)
                self._waiting_logged = True
            return False
        st = os.fstat(fd)
        self._fd = fd
        self._ident = (st.st_dev, st.st_ino)
        self._partial = b""
        self.offset = 0
        self._waiting_logged = False
        if saved and saved.get("path") == self.path and (saved.get("dev"), saved.get("ino")) == self._ident:
            offset = int(saved.get("offset", 0))
            if offset <= st.st_size:
                self.offset = offset
                os.lseek(fd, offset, os.SEEK_SET)
                log.info("%s: continuing at byte %d (saved position)", self.describe(), offset)
            else:
                log.warning("%s: shorter than the saved position %d; reading from the beginning",
                            self.describe(), offset)
        elif saved and saved.get("path") == self.path:
            log.info("%s: not the file of the saved position (rotated meanwhile); reading from the beginning",
                     self.describe())
        return True

    def _close_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _more_to_read(self) -> bool:
        return os.fstat(self._fd).st_size > self.offset + len(self._partial)

    def _read_available(self, pipe, now: float, budget: int) -> list:
        out: list = []
        while budget > 0:
            chunk = os.read(self._fd, CHUNK)
            if not chunk:
                break
            budget -= len(chunk)
            data = self._partial + chunk if self._partial else chunk
            end = data.rfind(b"\n") + 1
            self._partial = data[end:]
            if end:
                out.extend(self.feed_lines(data[:end - 1].split(b"\n"), pipe, now))
                self.offset += end
        self.note_malformed(pipe)
        return out

    def _flush_partial(self, pipe, now: float) -> list:
        """Take an incomplete last line as it is (its file was rotated away: it will not be completed)."""
        partial, self._partial = self._partial, b""
        if not partial:
            return []
        self.offset += len(partial)
        return self.feed_lines([partial], pipe, now)

    # ---- position -------------------------------------------------------------------------------------------------

    def _load_state(self) -> dict | None:
        path = self.state_path
        if not path:
            return None
        try:
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("%s: saved position unreadable (%s); reading from the beginning", self.describe(), exc)
            return None
        return state if isinstance(state, dict) else None

    def save_state(self) -> None:
        path = self.state_path
        if not path or self._ident is None:
            return
        state = (self.path, self._ident, self.offset)
        if state == self._saved:
            return
        data = json.dumps({"path": self.path, "dev": self._ident[0], "ino": self._ident[1], "offset": self.offset})
        tmp = f"{path}.tmp"
        try:
            os.makedirs(self.data_dir, mode=0o750, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(data + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            log.error("%s: cannot save the position to %s (%s)", self.describe(), path, exc.strerror or exc)
            return
        self._saved = state
