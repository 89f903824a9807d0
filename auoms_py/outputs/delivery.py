"""What the delivering outputs (syslog, forward, oms, journald) share: a queue between the agent and a delivery
thread, and that thread's loop (connect, send, wait for confirmation, acknowledge, reconnect).

    agent thread:     write_event -> format -> queue.put(messages)      flush() -> queue.flush() (spool: one write)
    delivery thread:  link = connect(); batch = queue.read(); link.send(batch); link.confirmed() -> queue.ack(seq)

The queue is the durable spool (auoms_py.spool.Spool, the default) or a `MemoryQueue` (`spool: false`); both hand
out messages by sequence number and keep them until acknowledged. A *link* is one connection to the receiver; it
says how many of the messages sent on it are confirmed: at once for datagrams, once the kernel saw them taken for
stream sockets (auoms_py.outputs.net), when the receiver's ack arrives for forward and oms. When a link fails, the
unconfirmed messages are read again from the queue and sent on the next link: delivery is at least once, and
`resent` counts the messages sent more than once (the receiver may have seen some of them: docs/delivery.md).

Receiver missing or gone: reported once, retried with a growing delay (retry_interval doubling up to retry_max),
reported again when delivery resumes. Closing delivers what it can for drain_timeout seconds; what is left stays in
the spool for the next start.
"""
from __future__ import annotations

import bisect
import collections
import hashlib
import logging
import os
import re
import threading
import time

from auoms_py.outputs.base import Format, Output

log = logging.getLogger("auoms_py.outputs")


class MemoryQueue:
    """Messages waiting for delivery, in memory, bounded by count (the oldest dropped and counted beyond it).
    The interface of the spool: put/flush on the agent's side, read/ack/rewind on the delivery thread's."""

    def __init__(self, limit: int):
        self.limit = limit
        self.dropped = 0
        self.full = False
        self._items: collections.deque[bytes] = collections.deque()
        self._head = 1  # sequence number of _items[0]
        self._read = 1  # next one handed out
        self._lock = threading.Lock()

    def open(self) -> None:
        pass

    def put(self, messages: list[bytes]) -> int:
        """Queue messages; returns how many old ones were dropped to make room."""
        with self._lock:
            items = self._items
            items.extend(messages)
            over = len(items) - self.limit
            if over <= 0:
                return 0
            for _ in range(over):
                items.popleft()
            self._head += over
            self._read = max(self._read, self._head)
            self.dropped += over
            return over

    def flush(self) -> bool:
        return bool(self._items)

    def read(self, max_count: int = 1000, max_bytes: int = 1 << 20) -> tuple[int, list[bytes]]:
        with self._lock:
            start = self._read - self._head
            out = []
            size = 0
            items = self._items
            for i in range(start, min(len(items), start + max_count)):
                out.append(items[i])
                size += len(items[i])
                if size >= max_bytes:
                    break
            first = self._read
            self._read += len(out)
            return first, out

    def ack(self, next_seq: int) -> None:
        with self._lock:
            items = self._items
            while self._head < next_seq and items:
                items.popleft()
                self._head += 1

    def rewind(self) -> int:
        with self._lock:
            again = self._read - self._head
            self._read = self._head
            return again

    def peek(self) -> bytes | None:
        """The oldest message not yet delivered."""
        try:
            return self._items[0]
        except IndexError:
            return None

    def save(self, force: bool = False) -> None:
        pass

    def close(self) -> None:
        pass

    def stats(self) -> dict:
        return {"depth": len(self._items), "dropped": self.dropped}

    def __len__(self) -> int:
        return len(self._items)


def spool_dir_name(output_name: str) -> str:
    """A directory name for an output's spool: the name itself when it is a plain one, else a safe spelling."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", output_name):
        return output_name
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", output_name)[:60]
    return f"{safe}-{hashlib.sha1(output_name.encode('utf-8', 'replace')).hexdigest()[:10]}"


def make_queue(cfg, data_dir: str | None, queue_size: int):
    """The queue of a delivering output: its spool under data_dir/spool/<name>/, or in memory (`spool: false`)."""
    if cfg.spool is not None and data_dir:
        from auoms_py.spool import Spool

        return Spool(os.path.join(data_dir, "spool", spool_dir_name(cfg.name)), cfg.spool, name=cfg.name)
    return MemoryQueue(queue_size)


class _SpoolUsers:
    """Which outputs use which open spool. A reload that changes an output opens the new one before closing the
    old: the new one takes over the old one's spool (the old delivery thread stops, nothing is lost or sent twice
    more than a rewind does); if the new one is closed again (the reload failed), the old one resumes."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[str, tuple] = {}  # directory -> (spool, [outputs, the last delivering])

    def attach(self, out: "DeliveryOutput", spool):
        with self._lock:
            entry = self._entries.get(spool.dir)
            if entry is None:
                spool.open()
                self._entries[spool.dir] = (spool, [out])
                return spool
            shared, users = entry
        shared.reconfigure(spool.opts)
        users[-1]._suspend()
        users.append(out)
        return shared

    def detach(self, out: "DeliveryOutput") -> None:
        spool = out.queue
        with self._lock:
            shared, users = self._entries[spool.dir]
            active = users[-1] is out
            users.remove(out)
            if not users:
                del self._entries[spool.dir]
        if not users:
            shared.close()
        elif active:
            users[-1]._resume()


SPOOL_USERS = _SpoolUsers()


class Link:
    """One connection to the receiver. send() raises OSError when the connection failed; confirmed() returns how
    many of the messages sent on this link are confirmed so far, waiting up to `timeout` for news."""

    def send(self, messages: list[bytes]) -> int:
        """Send messages in order; returns how many were refused for good (too large) and count as consumed."""
        raise NotImplementedError

    def confirmed(self, timeout: float) -> int:
        raise NotImplementedError

    sock = None  # the connection's socket, for the links that have one

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass


class DeliveryOutput(Output):
    """An output delivering through a queue in a thread of its own. Subclasses implement connect() -> Link and
    target (a description of the receiver), and format their messages in write_event/write_messages.

    `opts` has what every delivering output's configuration has (service.config): queue_size (memory queue),
    retry_interval, retry_max, send_timeout, drain_timeout; they are read from it when used, so a changed value
    applies."""

    batch_count = 500  # messages read from the queue per send
    batch_bytes = 256 * 1024
    window = 64 * 500  # messages sent and not yet confirmed, at most
    ack_timeout = 30.0  # a batch unconfirmed this long: the link is taken as broken, the batch sent again

    def __init__(self, name: str, fmt: Format | str, opts, *, queue=None):
        super().__init__(name, fmt)
        self.opts = opts
        self.queue = queue if queue is not None else MemoryQueue(opts.queue_size)
        self.counters.update(sent=0, delivered=0, resent=0, reconnects=0, queued=0, undelivered=0, too_large=0)
        self.connected = False
        self.down_since: float | None = None  # monotonic time delivery stopped working
        self._down_reason = ""
        self._waiting_at_down = 0
        self._wake = threading.Event()  # set by the writer: messages are waiting
        self._closing_event = threading.Event()  # set by close(): ends retry sleeps early
        self._closing = False
        self._drain_deadline = 0.0
        self._thread: threading.Thread | None = None
        self._warned_drop = 0
        self._queue_dropped = 0
        self._suspended = False

    @property
    def target(self) -> str:
        return "?"

    retry_interval = property(lambda self: self.opts.retry_interval)
    retry_max = property(lambda self: max(self.opts.retry_max, self.opts.retry_interval))
    send_timeout = property(lambda self: self.opts.send_timeout)
    drain_timeout = property(lambda self: self.opts.drain_timeout)

    def describe(self) -> str:
        return f"{self.kind} output {self.name!r} ({self.format.name} to {self.target})"

    def connect(self) -> Link:
        raise NotImplementedError

    # ---- agent side ---------------------------------------------------------------------------------------------

    @property
    def spooled(self) -> bool:
        return not isinstance(self.queue, MemoryQueue)

    def open(self) -> None:
        if self.spooled:
            self.queue = SPOOL_USERS.attach(self, self.queue)
        self._start_thread()

    def _start_thread(self) -> None:
        self._closing_event.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-{self.name}", daemon=True)
        self._thread.start()

    def _suspend(self) -> None:
        """Another output (a reloaded configuration of this one) takes over the spool: stop delivering now."""
        self._suspended = True
        self._closing_event.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.send_timeout + 2)
            self._thread = None

    def _resume(self) -> None:
        self._suspended = False
        self._start_thread()

    def enqueue(self, messages: list[bytes]) -> None:
        self.counters["messages"] += len(messages)
        dropped = self.queue.put(messages)
        if dropped:
            self._count_dropped(dropped)

    def _count_dropped(self, dropped: int) -> None:
        self.counters["dropped"] += dropped
        if self.counters["dropped"] >= self._warned_drop * 2 or not self._warned_drop:
            self._warned_drop = self.counters["dropped"]
            log.error("%s: queue full (%d messages): dropped the oldest, %d lost so far", self.describe(),
                      getattr(self.queue, "limit", 0), self.counters["dropped"])

    def write_messages(self, messages: list[bytes]) -> None:
        self.enqueue(messages)

    def flush(self) -> None:
        if self.queue.flush() or len(self.queue):
            self._wake.set()

    @property
    def input_paused(self) -> bool:
        """The spool is full under `when_full: block`: the agent stops reading its input."""
        return self.queue.full

    def close(self) -> None:
        """Deliver what is queued, waiting up to drain_timeout seconds for the receiver; the rest stays queued
        (in the spool: delivered after the next start)."""
        if self._closing:
            return
        self._closing = True
        if self._suspended:  # replaced by a reloaded output that delivers from the same spool
            SPOOL_USERS.detach(self)
            return
        self.queue.flush()
        self._drain_deadline = time.monotonic() + self.drain_timeout
        self._closing_event.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.drain_timeout + self.send_timeout + 1)
            self._thread = None
        left = len(self.queue)
        self.counters["undelivered"] = left
        spooled = self.spooled
        if spooled:
            SPOOL_USERS.detach(self)
        else:
            self.queue.close()
        if left:
            log.log(logging.WARNING if spooled else logging.ERROR,
                    "%s: %d messages not delivered at exit (receiver: %s)%s", self.describe(), left,
                    self._down_reason or "too slow", "; they stay in the spool for the next start" if spooled else "")

    down_grace = 10.0  # seconds a receiver may be away (a restart, a reconnect) before it counts as a problem

    def problem(self) -> str | None:
        down_since = self.down_since
        if down_since is None or self._suspended:
            return None
        away = time.monotonic() - down_since
        if away < self.down_grace:
            return None
        return (f"receiver {self.target} unavailable for {away:.0f} s ({self._down_reason or 'no answer'}); "
                f"{len(self.queue)} messages waiting")

    def status(self) -> dict:
        counters = self.counters
        stats = self.queue.stats()
        counters["queued"] = stats["depth"]
        dropped = stats.get("dropped", 0)
        if self.spooled:  # spool losses (bound, full disk, damage) are this output's too
            lost = dropped + stats.get("corrupt", 0)
            if lost > self._queue_dropped:
                counters["dropped"] += lost - self._queue_dropped
                self._queue_dropped = lost
            out = dict(counters)
            out.update({f"spool_{k}": v for k, v in stats.items()})
            return out
        return dict(counters)

    # ---- delivery thread ----------------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._deliver()
        except Exception:  # noqa: BLE001 - a bug here must be seen, and must not leave the agent silently stuck
            log.exception("%s: delivery stopped by an error", self.describe())

    def _deliver(self) -> None:
        queue = self.queue
        counters = self.counters
        delay = self.retry_interval
        link: Link | None = None
        inflight: collections.deque = collections.deque()  # (sent on link before, first seq, count) per batch
        sent_on_link = 0
        acked_on_link = 0
        progress_at = 0.0  # last time something was sent on an idle link or confirmed
        while True:
            self._wake.clear()
            if self._suspended:
                break
            if self._closing and (time.monotonic() >= self._drain_deadline or not len(queue) and not inflight):
                break
            if link is None:
                if not len(queue):
                    queue.save()
                    self._wake.wait(1.0)
                    continue
                try:
                    link = self.connect()
                except OSError as exc:
                    self._went_down(exc)
                    queue.save(force=True)  # what the last link confirmed: no duplicates after a crash meanwhile
                    self._sleep(delay)
                    delay = min(delay * 2, self.retry_max)
                    continue
                self.connected = True
                again = queue.rewind()
                counters["resent"] += again
                inflight.clear()
                sent_on_link = acked_on_link = 0
            try:
                sent_now = 0
                room = self.window - (sent_on_link - acked_on_link)
                if room > 0:
                    first, batch = queue.read(min(self.batch_count, room), self.batch_bytes)
                    if batch:
                        if not inflight:
                            progress_at = time.monotonic()
                        refused = link.send(batch)
                        if refused:
                            counters["too_large"] += refused
                            counters["dropped"] += refused
                        sent_now = len(batch)
                        inflight.append((sent_on_link, first, sent_now))
                        sent_on_link += sent_now
                        counters["sent"] += sent_now
                        counters["bytes"] += sum(map(len, batch))
                if inflight:
                    confirmed = link.confirmed(0.0 if sent_now else 0.05)
                    if confirmed > acked_on_link:
                        counters["delivered"] += confirmed - acked_on_link
                        acked_on_link = confirmed
                        progress_at = time.monotonic()
                        queue.ack(self._confirmed_seq(inflight, confirmed))
                        if self.down_since is not None:
                            self._came_back()
                        delay = self.retry_interval
                    elif time.monotonic() - progress_at > self.ack_timeout:
                        raise TimeoutError(f"no confirmation within {self.ack_timeout:g} s")
                    queue.save()
                elif not sent_now:
                    queue.save()
                    if self._closing:
                        continue
                    self._wake.wait(1.0)
            except OSError as exc:
                counters["errors"] += 1
                counters["reconnects"] += 1
                link.close()
                link = None
                self.connected = False
                self._went_down(exc)
                queue.save(force=True)
                if not acked_on_link:  # nothing got through on this link: wait before the next one
                    self._sleep(delay)
                    delay = min(delay * 2, self.retry_max)
        if link is not None:
            link.close()
        self.connected = False
        queue.save(force=True)

    @staticmethod
    def _confirmed_seq(inflight: collections.deque, confirmed: int) -> int:
        """The sequence number after the last confirmed message (batches hold consecutive numbers)."""
        next_seq = 0
        while inflight:
            before, first, count = inflight[0]
            if before + count <= confirmed:
                next_seq = first + count
                inflight.popleft()
                continue
            if confirmed > before:
                next_seq = first + confirmed - before
            break
        return next_seq

    def _sleep(self, seconds: float) -> None:
        """Wait before the next connection attempt; new messages do not shorten it, closing does."""
        if self._closing:
            time.sleep(max(0.0, min(seconds, self._drain_deadline - time.monotonic())))
        else:
            self._closing_event.wait(seconds)

    def _went_down(self, exc: OSError) -> None:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if self.down_since is None:
            self.down_since = time.monotonic()
            self._waiting_at_down = len(self.queue)
            where = "in the spool" if self.spooled else f"in memory (up to {self.queue.limit})"
            log.warning("%s: receiver unavailable (%s); keeping messages %s and retrying", self.describe(), reason,
                        where)
        self._down_reason = reason

    def _came_back(self) -> None:
        log.warning("%s: delivering again after %.1f s (%d messages were waiting)", self.describe(),
                    time.monotonic() - self.down_since, max(self._waiting_at_down, len(self.queue)))
        self.down_since = None
        self._down_reason = ""


class StreamLink(Link):
    """Messages written to a stream socket (TCP, TLS, unix stream), framed by `frame`. A message is confirmed once
    the kernel reports all its bytes taken by the receiver (auoms_py.outputs.net.unconfirmed_bytes) *and* the
    connection is still up `hold` seconds later: a receiver that takes bytes and then drops the connection without
    using them (a TLS 1.3 server refusing our client certificate after the handshake, a receiver crashing with
    unread data) gets them again on the next connection instead of losing them."""

    hold = 0.5

    def __init__(self, sock, frame, *, tls: bool = False):
        from auoms_py.outputs import net

        self.sock = sock
        self.frame = frame
        self.tls = tls
        self._net = net
        self._poller = net.closed_poller(sock)
        self.written = 0  # bytes written on this link
        self.count = 0  # messages written
        self.taken = 0  # messages whose bytes the receiver took
        self.done = 0  # messages confirmed
        self._batches: collections.deque = collections.deque()  # (bytes before, cumulative frame ends, count before)
        self._taken_at: collections.deque = collections.deque()  # (time, messages taken by then)

    def send(self, messages: list[bytes]) -> int:
        # Plain TCP has no acknowledgement: a receiver that closed the connection would silently swallow what is
        # written next. Look for its FIN/RST first and reconnect instead.
        self._check_peer()
        frames = [self.frame(m) for m in messages]
        data = b"".join(frames)
        self.sock.sendall(data)  # a partly written frame would corrupt the stream: the caller starts a new link
        ends = []
        total = 0
        for f in frames:
            total += len(f)
            ends.append(total)
        self._batches.append((self.written, ends, self.count))
        self.written += total
        self.count += len(messages)
        return 0

    def _check_peer(self) -> None:
        if self._net.peer_closed(self.sock, self._poller, tls=self.tls):
            raise ConnectionResetError(104, "receiver closed the connection")

    def _count_taken(self) -> int:
        taken_bytes = self.written - self._net.unconfirmed_bytes(self.sock)
        batches = self._batches
        taken = self.taken
        while batches and batches[0][0] + batches[0][1][-1] <= taken_bytes:
            _start, ends, before = batches.popleft()
            taken = before + len(ends)
        if batches:
            start, ends, before = batches[0]
            taken = max(taken, before + bisect.bisect_right(ends, taken_bytes - start))
        return taken

    def confirmed(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        marks = self._taken_at
        while True:
            self._check_peer()  # nothing is confirmed on a connection the receiver dropped
            taken = self._count_taken()
            now = time.monotonic()
            if taken > self.taken:
                self.taken = taken
                marks.append((now, taken))
            while marks and now - marks[0][0] >= self.hold:
                self.done = marks.popleft()[1]
            if self.done >= self.count or now >= deadline:
                return self.done
            time.sleep(min(0.01, max(0.0, deadline - now)))
