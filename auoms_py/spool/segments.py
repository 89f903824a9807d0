"""A durable FIFO of messages on disk: segment files, one frame per batch, a cursor, a size bound.

Layout of a spool directory (one per output: `data_dir/spool/<output name>/`):

    lock                        flock()ed while a process uses the spool (a second agent is refused)
    00000000000000000000.seg    segment files, named by the sequence number of their first message
    00000000000000052114.seg
    cursor                      "v1 SEQ SEGMENT OFFSET FRAME_SEQ": the first message not yet delivered and where its
                                frame starts (written to cursor.tmp, then renamed over: never half written)

Every message gets a sequence number (1, 2, 3 ... for the life of the spool). A segment holds frames; a frame holds
the messages of one batch (what the agent formatted in one loop turn) and is written with one write():

    magic "AQF1" | payload length u32 | crc32 u32 | message count u32 | first sequence number u64 | payload
    payload = msgpack array of the messages (bin)                             (little-endian; crc over count,
                                                                               first seq and the payload)

Recovery (open): the last segment is scanned and cut after its last whole frame: a frame torn by SIGKILL or a
crash in the middle of a write() is detected by its length or crc, counted (`torn_bytes`) and skipped, never fatal.
A damaged frame found later while reading (disk corruption, power loss with `fsync: never`) costs the rest of its
segment, counted in `corrupt`. Nothing else is ever deleted at start: unlike AUOMS, a crash never wipes the spool.

Delivery: the reader hands out messages after its read position; `ack(seq)` moves the cursor (everything before
seq was delivered); `rewind()` goes back to the cursor after a broken connection, so what was sent but not
confirmed is sent again (at least once). The cursor is saved at most every `cursor_interval` seconds while it
moves, and at close: after SIGKILL, what was delivered since the last save is delivered again (the *cursor window*;
docs/delivery.md). A segment is deleted once the saved cursor has passed it.

The bound (`max_bytes`, all segments): with `when_full: drop_oldest` the oldest segments are deleted to make room
and their undelivered messages counted in `dropped`; with `when_full: block` the spool reports `full` and the agent
stops reading its input (the kernel then counts what it cannot queue), nothing in the spool is lost. A write that
fails (disk full, I/O error) keeps the batch in memory and retries at the next flush; with `drop_oldest` it first
makes room by dropping old segments; a batch that still cannot be written after `max_pending_bytes` piled up in
memory is dropped and counted.

Threads: the agent thread calls put/flush, the output's delivery thread read/ack/rewind/save; one lock guards all
state (the reads are page-cache copies, the critical sections short).
"""
from __future__ import annotations

import bisect
import collections
import dataclasses
import errno
import fcntl
import logging
import os
import struct
import threading
import time
import zlib

import msgpack

log = logging.getLogger("auoms_py.spool")

MAGIC = b"AQF1"
HEADER = struct.Struct("<4sIIIQ")  # magic, payload length, crc32, message count, first sequence number
CRC_FIELDS = struct.Struct("<IQ")  # what the crc covers beside the payload: count, first sequence number
MAX_FRAME = 1 << 30
SUFFIX = ".seg"
CURSOR = "cursor"
LOCK = "lock"
FSYNC_POLICIES = ("always", "interval", "never")
FULL_POLICIES = ("drop_oldest", "block")


class SpoolError(OSError):
    """The spool cannot be used (directory not writable, in use by another process)."""


@dataclasses.dataclass
class SpoolOptions:
    max_bytes: int = 128 * 1024 * 1024  # all segments together
    segment_bytes: int = 0  # a segment is closed once it holds this much; 0: max_bytes / 16, between 64 KiB and 16 MiB
    fsync: str = "interval"  # always (every batch) | interval (at most every fsync_interval s) | never (page cache)
    fsync_interval: float = 1.0
    when_full: str = "drop_oldest"  # drop_oldest | block
    cursor_interval: float = 0.5  # seconds between cursor saves while delivery moves it
    max_pending_bytes: int = 64 * 1024 * 1024  # batches kept in memory while the disk refuses them

    def segment_size(self) -> int:
        if self.segment_bytes:
            return self.segment_bytes
        return max(64 * 1024, min(16 * 1024 * 1024, self.max_bytes // 16))


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SUFFIX}"


class _Reader:
    """Read position of the delivery side: the frame being handed out and where the next frame starts."""

    __slots__ = ("seg", "off", "fd", "fd_seg", "msgs", "idx", "frame_seq", "frame_seg", "frame_off", "seq")

    def __init__(self):
        self.seg = 0  # segment of the next frame to read
        self.off = 0  # its offset
        self.fd: int | None = None
        self.fd_seg = -1
        self.msgs: list = []  # messages of the current frame
        self.idx = 0  # next one to hand out
        self.frame_seq = 0
        self.frame_seg = 0  # where the current frame starts
        self.frame_off = 0
        self.seq = 0  # sequence number of the next message handed out


class Spool:
    def __init__(self, directory: str, options: SpoolOptions | None = None, *, name: str | None = None):
        self.dir = str(directory)
        self.opts = options or SpoolOptions()
        self.name = name or os.path.basename(self.dir.rstrip("/"))
        self.segment_bytes = self.opts.segment_size()
        self.frame_limit = max(16 * 1024, min(1 << 20, self.segment_bytes // 2))
        self.counters = {
            "appended": 0,  # messages written to disk
            "delivered": 0,  # messages acknowledged
            "dropped": 0,  # messages lost: bound reached (drop_oldest), disk refusing writes
            "torn_bytes": 0,  # bytes of a torn last frame skipped at recovery
            "corrupt": 0,  # messages lost to a damaged frame
            "write_errors": 0,
            "frames": 0,
            "recovered": 0,  # messages found undelivered at open
        }
        self._lock = threading.Lock()
        self._segments: list[int] = []  # first sequence numbers, ascending
        self._sizes: dict[int, int] = {}  # bytes of whole frames in each segment
        self._bytes = 0
        self._lock_fd: int | None = None
        # writer
        self._wfd: int | None = None
        self._wseg = -1  # the segment written to (the last one)
        self._next_seq = 1
        self._pending: list[bytes] = []
        self._dirty = False
        self._last_sync = 0.0
        self._write_failing = False
        self._drop_logged = 0
        # cursor (delivery side)
        self._acked = 1  # first message not yet delivered
        self._cursor_loc = (0, 0, 1)  # (segment, offset, first seq) of the frame holding it
        self._handed: collections.deque = collections.deque()  # [frame_seq, count, seg, off] handed out, not acked
        self._reader = _Reader()
        self._saved_cursor: tuple | None = None
        self._last_save = 0.0
        self.opened = False

    def reconfigure(self, options: SpoolOptions) -> None:
        """New bound and policies for an open spool (a reloaded configuration); takes effect at the next flush."""
        with self._lock:
            self.opts = options
            self.segment_bytes = options.segment_size()
            self.frame_limit = max(16 * 1024, min(1 << 20, self.segment_bytes // 2))

    # ---- open / recover -----------------------------------------------------------------------------------------

    def open(self) -> None:
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            self._lock_fd = os.open(os.path.join(self.dir, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise SpoolError(f"spool {self.dir}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._lock_fd, 32, 0).decode("ascii", "replace").strip()
            os.close(self._lock_fd)
            self._lock_fd = None
            raise SpoolError(f"spool {self.dir} is in use by another process (pid {holder or '?'})") from None
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, f"{os.getpid()}\n".encode(), 0)
        try:
            self._recover()
        except OSError as exc:
            self._unlock()
            raise SpoolError(f"spool {self.dir}: cannot recover: {exc.strerror or exc}") from None
        self.opened = True

    def _recover(self) -> None:
        names = []
        for entry in os.listdir(self.dir):
            if entry.endswith(SUFFIX) and entry[:-len(SUFFIX)].isdecimal():
                names.append(int(entry[:-len(SUFFIX)]))
            elif entry.endswith(".tmp"):
                os.unlink(os.path.join(self.dir, entry))
        names.sort()
        next_seq = 1
        for seg in names:
            self._segments.append(seg)
            self._sizes[seg] = os.path.getsize(self._path(seg))
            next_seq = max(next_seq, seg)
        if names:
            last = names[-1]
            end, last_seq = self._scan(last)
            size = self._sizes[last]
            if end < size:
                self.counters["torn_bytes"] += size - end
                log.warning("spool %s: %d bytes after the last whole frame of %s (a write cut by a crash or kill) "
                            "skipped", self.name, size - end, _segment_name(last))
                os.truncate(self._path(last), end)
                self._sizes[last] = end
            next_seq = max(next_seq, last_seq)
        self._bytes = sum(self._sizes.values())
        acked, loc = self._load_cursor(names)
        if acked > next_seq:  # segments lost behind our back: continue numbering after the cursor
            next_seq = acked
        self._next_seq = next_seq
        self._acked = acked
        self._cursor_loc = loc
        self._saved_cursor = (acked, *loc)
        self._reset_reader()
        if names and self._sizes[names[-1]] < self.segment_bytes and names[-1] <= next_seq:
            self._open_writer(names[-1])
        else:
            self._new_segment()
        self.counters["recovered"] = max(0, self._next_seq - self._acked)
        if self.counters["recovered"]:
            log.info("spool %s: %d undelivered messages from an earlier run (%d bytes in %d segments)", self.name,
                     self.counters["recovered"], self._bytes, len(self._segments))

    def _scan(self, seg: int) -> tuple[int, int]:
        """(offset after the last whole frame, sequence number after its last message) of a segment."""
        with open(self._path(seg), "rb") as f:
            data = f.read()
        off = 0
        next_seq = seg
        while off + HEADER.size <= len(data):
            magic, length, crc, count, first = HEADER.unpack_from(data, off)
            end = off + HEADER.size + length
            if magic != MAGIC or length > MAX_FRAME or end > len(data):
                break
            payload = memoryview(data)[off + HEADER.size:end]
            if zlib.crc32(payload, zlib.crc32(CRC_FIELDS.pack(count, first))) != crc:
                break
            off = end
            next_seq = first + count
        return off, next_seq

    def _load_cursor(self, segments: list[int]) -> tuple[int, tuple[int, int, int]]:
        first = segments[0] if segments else 1
        start = (first, (first, 0, first))
        try:
            with open(os.path.join(self.dir, CURSOR), encoding="ascii") as f:
                text = f.read()
        except FileNotFoundError:
            return start
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("spool %s: cursor unreadable (%s): delivering everything in the spool", self.name, exc)
            return start
        parts = text.split()
        if len(parts) != 5 or parts[0] != "v1" or not all(p.isdecimal() for p in parts[1:]):
            log.warning("spool %s: cursor damaged (%r): delivering everything in the spool", self.name, text[:80])
            return start
        acked, seg, off, frame_seq = map(int, parts[1:])
        if not segments:
            return acked, (acked, 0, acked)
        if acked <= first:  # what came before the oldest segment was delivered or dropped
            return first, (first, 0, first)
        if seg in self._sizes and off <= self._sizes[seg]:
            return acked, (seg, off, frame_seq)
        # the cursor names a place that is gone: find the frame holding `acked`
        return acked, self._locate(acked)

    def _locate(self, seq: int) -> tuple[int, int, int]:
        i = bisect.bisect_right(self._segments, seq) - 1
        seg = self._segments[max(i, 0)]
        off = 0
        frame_seq = seg
        with open(self._path(seg), "rb") as f:
            while off + HEADER.size <= self._sizes[seg]:
                f.seek(off)
                magic, length, _crc, count, first = HEADER.unpack(f.read(HEADER.size))
                if magic != MAGIC or first + count > seq:
                    frame_seq = first if magic == MAGIC else frame_seq
                    break
                off += HEADER.size + length
                frame_seq = first + count
        return seg, off, frame_seq

    # ---- writer side (agent thread) -----------------------------------------------------------------------------

    def put(self, messages: list[bytes]) -> int:
        """Queue messages for the next flush (no I/O here). Returns 0: losses are counted in `dropped`."""
        self._pending.extend(messages)
        return 0

    def flush(self) -> bool:
        """Write what was put since the last flush as one frame; True when something was written."""
        if not self._pending:
            return False
        with self._lock:
            return self._write_pending()

    def _write_pending(self) -> bool:
        """Write the pending messages: one frame, or several of at most frame_limit bytes for a large batch (so
        that the bound drops old data a segment at a time, never a whole large batch). Messages that could not be
        written stay pending for the next flush."""
        pending = self._pending
        limit = self.frame_limit
        wrote = False
        start = 0
        while start < len(pending):
            end = start + 1
            size = len(pending[start])
            while end < len(pending) and size + len(pending[end]) <= limit:
                size += len(pending[end])
                end += 1
            try:
                result = self._write_frame(pending[start:end])
            except OSError as exc:  # a new segment could not be created
                result = exc
            if result is None or isinstance(result, OSError):
                self._pending = pending[start:]
                if result is None:
                    self._hold_pending()
                else:
                    self._write_failed(result)
                return wrote
            wrote = wrote or result
            start = end
        self._pending = []
        if self._write_failing:
            self._write_failing = False
            log.warning("spool %s: writing again", self.name)
        return wrote

    def _write_frame(self, messages: list[bytes]):
        """True: written; False: dropped by the bound (counted); None: no room yet (block); an OSError: the write
        failed (nothing written)."""
        payload = msgpack.packb(messages, use_bin_type=True)
        count = len(messages)
        first = self._next_seq
        crc = zlib.crc32(payload, zlib.crc32(CRC_FIELDS.pack(count, first)))
        frame = HEADER.pack(MAGIC, len(payload), crc, count, first) + payload
        room = self._make_room(len(frame), count)
        if not room:
            return room
        if self._wfd is None or self._sizes[self._wseg] >= self.segment_bytes:
            self._new_segment()
        start = self._sizes[self._wseg]
        try:
            written = os.write(self._wfd, frame)
            if written != len(frame):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # the rest would fail with it
        except OSError as exc:
            self._undo_write(start)
            return exc
        self._sizes[self._wseg] = start + len(frame)
        self._bytes += len(frame)
        self._next_seq = first + count
        self.counters["appended"] += count
        self.counters["frames"] += 1
        self._dirty = True
        policy = self.opts.fsync
        if policy == "always" or policy == "interval" and time.monotonic() - self._last_sync >= self.opts.fsync_interval:
            self._sync()
        return True

    def _make_room(self, size: int, count: int) -> bool | None:
        """Apply the bound before a frame of `size` bytes is written: True to write it, False when it was dropped,
        None to keep it pending (`block`: it goes to disk once delivery made room; the input stops meanwhile)."""
        limit = self.opts.max_bytes
        if self._bytes + size <= limit or not self._bytes:
            return True
        if self.opts.when_full == "block":
            return None
        while self._bytes + size > limit and len(self._segments) > 1:
            self._drop_segment(self._segments[0])
        if self._bytes + size > limit and self._sizes[self._wseg] > 0:
            self._new_segment()
            self._drop_segment(self._segments[0])
        if size > limit:
            self._drop_batch(count, f"a batch of {size} bytes is larger than the spool ({limit} bytes)")
            return False
        return True

    def _drop_segment(self, seg: int, why: str = "the spool reached its size limit") -> None:
        """Delete the oldest segment to make room; its undelivered messages are lost and counted."""
        index = self._segments.index(seg)
        following = self._segments[index + 1] if index + 1 < len(self._segments) else self._next_seq
        lost = max(0, following - max(self._acked, seg))
        self._remove_segment(seg)
        if lost or self._cursor_loc[0] == seg:
            self._acked = max(self._acked, following)
            self._cursor_loc = (following if following in self._sizes else self._wseg, 0, self._acked)
            self._handed.clear()  # what was in flight from there is counted lost; a late ack for it is ignored
            self._reset_reader()
        if lost:
            self.counters["dropped"] += lost
            self._report_drop(lost, f"{why}: the oldest undelivered messages were dropped")

    def _drop_batch(self, count: int, why: str) -> None:
        self.counters["dropped"] += count
        self._report_drop(count, why)

    def _report_drop(self, count: int, why: str) -> None:
        total = self.counters["dropped"]
        if total >= 2 * self._drop_logged or not self._drop_logged:
            self._drop_logged = total
            log.error("spool %s: %s (%d lost now, %d so far; max_size %d bytes)", self.name, why, count, total,
                      self.opts.max_bytes)

    def _hold_pending(self) -> None:
        """`block` and the spool is full: the batch waits in memory (the agent stopped reading); beyond
        max_pending_bytes it is dropped and counted (an input that does not stop)."""
        pending = sum(map(len, self._pending))
        if pending > self.opts.max_pending_bytes:
            self._drop_batch(len(self._pending), "the spool is full and the input did not stop")
            self._pending = []

    def _undo_write(self, start: int) -> None:
        try:
            os.ftruncate(self._wfd, start)  # a partly written frame must not stay
            os.lseek(self._wfd, start, os.SEEK_SET)
        except OSError:
            self._new_segment_quietly()

    def _write_failed(self, exc: OSError) -> None:
        """The disk refused a write: keep the pending messages for the next flush (up to max_pending_bytes)."""
        self.counters["write_errors"] += 1
        if not self._write_failing:
            self._write_failing = True
            log.error("spool %s: cannot write (%s); keeping up to %d KiB in memory and retrying", self.name,
                      exc.strerror or exc, self.opts.max_pending_bytes >> 10)
        if self.opts.when_full == "drop_oldest" and len(self._segments) > 1 and exc.errno in (errno.ENOSPC,
                                                                                             errno.EDQUOT):
            self._drop_segment(self._segments[0], "the disk is full")  # the next flush tries again
        pending = sum(map(len, self._pending))
        if pending > self.opts.max_pending_bytes:
            self._drop_batch(len(self._pending), f"the disk refuses writes ({exc.strerror or exc})")
            self._pending = []

    def _new_segment_quietly(self) -> None:
        try:
            self._new_segment()
        except OSError:
            pass

    @property
    def full(self) -> bool:
        """True while the input should stop: `when_full: block` and the bound is reached, or the disk refuses
        writes (batches pile up in memory)."""
        if self.opts.when_full != "block":
            return False
        return self._bytes >= self.opts.max_bytes or self._write_failing or bool(self._pending)

    def _new_segment(self) -> None:
        if self._wfd is not None:
            if self._dirty and self.opts.fsync != "never":
                os.fdatasync(self._wfd)
            os.close(self._wfd)
            self._wfd = None
        seg = self._next_seq
        if seg in self._sizes:  # the last segment is empty and starts at this number already
            self._open_writer(seg)
            return
        fd = os.open(self._path(seg), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self._wfd = fd
        self._wseg = seg
        self._segments.append(seg)
        self._sizes[seg] = 0
        if self.opts.fsync != "never":
            self._sync_dir()

    def _open_writer(self, seg: int) -> None:
        fd = os.open(self._path(seg), os.O_WRONLY | os.O_CLOEXEC)
        os.lseek(fd, self._sizes[seg], os.SEEK_SET)
        self._wfd = fd
        self._wseg = seg

    def _sync(self) -> None:
        if self._wfd is not None and self._dirty:
            try:
                os.fdatasync(self._wfd)
            except OSError as exc:
                log.error("spool %s: fsync failed: %s", self.name, exc.strerror or exc)
            self._dirty = False
        self._last_sync = time.monotonic()

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # ---- reader side (delivery thread) --------------------------------------------------------------------------

    def read(self, max_count: int = 1000, max_bytes: int = 1 << 20) -> tuple[int, list[bytes]]:
        """Up to max_count messages (about max_bytes) after the read position: (seq of the first, messages).
        The messages of one call have consecutive sequence numbers."""
        with self._lock:
            r = self._reader
            out: list[bytes] = []
            first = r.seq
            size = 0
            while len(out) < max_count and size < max_bytes:
                if r.idx >= len(r.msgs) and not self._next_frame(r):
                    break
                if not out:
                    first = r.seq
                elif r.frame_seq + r.idx != first + len(out):  # a gap (lost messages): end this batch here
                    break
                take = min(max_count - len(out), len(r.msgs) - r.idx)
                chunk = r.msgs[r.idx:r.idx + take]
                handed = self._handed
                if not handed or handed[-1][0] != r.frame_seq:
                    handed.append((r.frame_seq, len(r.msgs), r.frame_seg, r.frame_off))
                out.extend(chunk)
                size += sum(map(len, chunk))
                r.idx += take
                r.seq = r.frame_seq + r.idx
            return first, out

    def _next_frame(self, r: _Reader) -> bool:
        """Load the next frame into the reader; False when there is none (yet)."""
        while True:
            if r.seg not in self._sizes:  # its segment was dropped or delivered: go to the cursor's
                nxt = self._following_segment(r.seg)
                if nxt is None:
                    return False
                r.seg, r.off = nxt, 0
            end = self._sizes[r.seg]
            if r.off + HEADER.size > end:
                if r.seg == self._wseg:
                    return False
                nxt = self._following_segment(r.seg)
                if nxt is None:
                    return False
                r.seg, r.off = nxt, 0
                continue
            if r.fd_seg != r.seg:
                if r.fd is not None:
                    os.close(r.fd)
                r.fd = os.open(self._path(r.seg), os.O_RDONLY | os.O_CLOEXEC)
                r.fd_seg = r.seg
            header = os.pread(r.fd, HEADER.size, r.off)
            frame = self._decode(r, header, end)
            if frame is None:
                continue  # damaged: the rest of the segment was skipped
            first, msgs, length = frame
            r.frame_seg, r.frame_off = r.seg, r.off
            r.off += HEADER.size + length
            if first + len(msgs) <= r.seq:  # wholly before the read position (after a rewind into the frame)
                continue
            r.msgs = msgs
            r.frame_seq = first
            r.idx = max(0, r.seq - first)
            r.seq = first + r.idx
            return True

    def _decode(self, r: _Reader, header: bytes, end: int):
        if len(header) == HEADER.size:
            magic, length, crc, count, first = HEADER.unpack(header)
            if magic == MAGIC and r.off + HEADER.size + length <= end:
                payload = os.pread(r.fd, length, r.off + HEADER.size)
                if len(payload) == length and zlib.crc32(payload, zlib.crc32(CRC_FIELDS.pack(count, first))) == crc:
                    try:
                        msgs = msgpack.unpackb(payload, raw=True, use_list=True)
                    except (ValueError, msgpack.UnpackException):
                        msgs = None
                    if isinstance(msgs, list) and len(msgs) == count:
                        return first, msgs, length
        # damaged frame: the rest of this segment cannot be trusted
        following = self._following_segment(r.seg)
        upto = following if following is not None else self._next_seq
        lost = max(0, upto - r.seq)
        self.counters["corrupt"] += lost
        log.error("spool %s: damaged frame in %s at byte %d: %d messages lost", self.name, _segment_name(r.seg),
                  r.off, lost)
        if following is None:  # the segment being written: continue in a new one
            self._new_segment()
            following = self._wseg
        r.seg, r.off = following, 0
        r.seq = max(r.seq, following)
        return None

    def _following_segment(self, seg: int) -> int | None:
        i = bisect.bisect_right(self._segments, seg)
        return self._segments[i] if i < len(self._segments) else None

    def ack(self, next_seq: int) -> None:
        """Every message before next_seq was delivered."""
        with self._lock:
            if next_seq <= self._acked:
                return
            self.counters["delivered"] += next_seq - self._acked
            self._acked = next_seq
            handed = self._handed
            while handed and handed[0][0] + handed[0][1] <= next_seq:
                handed.popleft()
            r = self._reader
            if handed:
                frame_seq, _count, seg, off = handed[0]
                self._cursor_loc = (seg, off, frame_seq)
            elif r.idx < len(r.msgs):  # the reader holds a frame none of which was handed out yet
                self._cursor_loc = (r.frame_seg, r.frame_off, r.frame_seq)
            else:
                self._cursor_loc = (r.seg, r.off, next_seq)

    def rewind(self) -> int:
        """Read again from the cursor (what was handed out but not acknowledged). Returns how many messages."""
        with self._lock:
            again = max(0, self._reader.seq - self._acked)
            self._handed.clear()
            self._reset_reader()
            return again

    def _reset_reader(self) -> None:
        r = self._reader
        seg, off, frame_seq = self._cursor_loc
        r.seg, r.off = seg, off
        r.msgs, r.idx = [], 0
        r.frame_seq = frame_seq
        r.seq = self._acked

    def save(self, force: bool = False) -> None:
        """Persist the cursor (at most every cursor_interval s unless forced) and delete delivered segments."""
        now = time.monotonic()
        if not force and now - self._last_save < self.opts.cursor_interval:
            return
        with self._lock:
            cursor = (self._acked, *self._cursor_loc)
            if cursor == self._saved_cursor:
                self._last_save = now
                return
            tmp = os.path.join(self.dir, CURSOR + ".tmp")
            try:
                with open(tmp, "w", encoding="ascii") as f:
                    f.write("v1 %d %d %d %d\n" % cursor)
                    if self.opts.fsync == "always":
                        f.flush()
                        os.fsync(f.fileno())
                os.replace(tmp, os.path.join(self.dir, CURSOR))
            except OSError as exc:
                log.error("spool %s: cannot save the cursor: %s", self.name, exc.strerror or exc)
                return
            self._saved_cursor = cursor
            self._last_save = now
            # segments wholly before the saved cursor's segment are delivered
            cursor_seg = self._cursor_loc[0]
            while len(self._segments) > 1 and self._segments[0] < cursor_seg and self._segments[0] != self._wseg:
                self._remove_segment(self._segments[0])

    def _remove_segment(self, seg: int) -> None:
        self._segments.remove(seg)
        self._bytes -= self._sizes.pop(seg)
        try:
            os.unlink(self._path(seg))
        except FileNotFoundError:
            pass
        r = self._reader
        if r.fd_seg == seg and r.fd is not None:
            os.close(r.fd)
            r.fd, r.fd_seg = None, -1

    # ---- state ------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Messages not yet delivered (on disk and waiting for the next flush)."""
        return max(0, self._next_seq - self._acked) + len(self._pending)

    @property
    def acked(self) -> int:
        return self._acked

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def stats(self) -> dict:
        with self._lock:
            return {
                **self.counters,
                "depth": len(self),
                "bytes": self._bytes,
                "segments": len(self._segments),
                "full": self.full,
                "unsaved": max(0, self._acked - (self._saved_cursor or (self._acked,))[0]),
            }

    def close(self) -> None:
        """Write what is pending, save the cursor, release the directory."""
        if not self.opened:
            return
        try:
            self.flush()
        except OSError:
            pass
        self.save(force=True)
        with self._lock:
            if self._wfd is not None:
                if self._dirty and self.opts.fsync != "never":
                    try:
                        os.fdatasync(self._wfd)
                    except OSError:
                        pass
                os.close(self._wfd)
                self._wfd = None
            if self._reader.fd is not None:
                os.close(self._reader.fd)
                self._reader.fd, self._reader.fd_seg = None, -1
            if self._pending:
                log.error("spool %s: %d messages could not be written at exit", self.name, len(self._pending))
        self._unlock()
        self.opened = False

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _path(self, seg: int) -> str:
        return os.path.join(self.dir, _segment_name(seg))
