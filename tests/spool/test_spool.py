"""The durable spool on its own: order, cursor, recovery after a torn write and after SIGKILL, damaged frames,
the size bound with both policies, a real full disk (a tiny tmpfs), one user at a time."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from auoms_py.spool import Spool, SpoolError, SpoolOptions
from auoms_py.spool.segments import HEADER, SUFFIX
from tests.paths import REPO


def make(path, **opts) -> Spool:
    spool = Spool(str(path), SpoolOptions(**opts))
    spool.open()
    return spool


def fill(spool: Spool, batches: int, per_batch: int, start: int = 0, size: int = 0) -> list[bytes]:
    sent = []
    for b in range(batches):
        msgs = [b"msg-%08d" % (start + b * per_batch + i) + b"x" * size for i in range(per_batch)]
        spool.put(msgs)
        spool.flush()
        sent += msgs
    return sent


def drain(spool: Spool, chunk: int = 333) -> list[bytes]:
    got = []
    while True:
        first, msgs = spool.read(chunk)
        if not msgs:
            return got
        assert first == spool.acked or got  # consecutive numbering from the cursor
        got += msgs
        spool.ack(first + len(msgs))


def segments(path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(SUFFIX))


def test_messages_come_out_in_order_across_segments_and_batches(tmp_path):
    spool = make(tmp_path, segment_bytes=4096)
    sent = fill(spool, 50, 37, size=20)
    assert len(segments(tmp_path)) > 5
    assert drain(spool) == sent
    assert spool.stats()["depth"] == 0 and spool.stats()["delivered"] == len(sent)
    spool.close()


def test_cursor_survives_a_restart_and_delivered_segments_are_deleted(tmp_path):
    spool = make(tmp_path, segment_bytes=4096)
    sent = fill(spool, 40, 25, size=30)
    first, msgs = spool.read(700)
    spool.ack(first + 700)
    spool.save(force=True)
    before = len(segments(tmp_path))
    spool.close()
    again = make(tmp_path, segment_bytes=4096)
    assert again.stats()["recovered"] == len(sent) - 700
    assert drain(again) == sent[700:]
    again.save(force=True)
    assert len(segments(tmp_path)) < before
    again.close()


def test_rewind_hands_out_again_what_was_not_acknowledged(tmp_path):
    spool = make(tmp_path)
    sent = fill(spool, 3, 10)
    first, msgs = spool.read(25)
    assert msgs == sent[:25]
    spool.ack(first + 12)  # only 12 confirmed, then the connection broke
    assert spool.rewind() == 13
    first, msgs = spool.read(100)
    assert first == 13 and msgs == sent[12:]
    spool.close()


def test_unacknowledged_messages_are_delivered_after_restart(tmp_path):
    spool = make(tmp_path)
    sent = fill(spool, 4, 10)
    first, msgs = spool.read(40)  # sent, never confirmed
    spool.close()
    spool = make(tmp_path)
    assert drain(spool) == sent
    spool.close()


@pytest.mark.parametrize("cut", [1, HEADER.size - 1, HEADER.size + 5, -1])
def test_a_torn_last_frame_is_skipped_and_counted_not_fatal(tmp_path, cut):
    spool = make(tmp_path)
    sent = fill(spool, 5, 10)
    spool.close()
    seg = tmp_path / segments(tmp_path)[-1]
    size = seg.stat().st_size
    frame = (size) // 5
    # keep 4 whole frames and `cut` bytes of the fifth (a write cut in the middle by SIGKILL or a crash)
    keep = 4 * frame + (cut if cut > 0 else frame - 1)
    os.truncate(seg, keep)
    spool = make(tmp_path)
    assert spool.stats()["torn_bytes"] == keep - 4 * frame
    assert drain(spool) == sent[:40]
    more = fill(spool, 1, 3, start=1000)
    assert drain(spool) == more
    spool.close()


def test_garbage_after_the_last_frame_is_skipped(tmp_path):
    spool = make(tmp_path)
    sent = fill(spool, 2, 10)
    spool.close()
    with open(tmp_path / segments(tmp_path)[-1], "ab") as f:
        f.write(b"\0" * 4096)  # what a power loss can leave: a zero-filled tail
    spool = make(tmp_path)
    assert spool.stats()["torn_bytes"] == 4096
    assert drain(spool) == sent
    spool.close()


def test_a_damaged_frame_costs_the_rest_of_its_segment_only(tmp_path):
    spool = make(tmp_path, segment_bytes=2048)
    sent = fill(spool, 30, 10, size=10)
    spool.close()
    names = segments(tmp_path)
    assert len(names) >= 4
    victim = tmp_path / names[1]
    data = bytearray(victim.read_bytes())
    data[HEADER.size + 3] ^= 0xFF  # inside the first frame's payload: its crc no longer matches
    victim.write_bytes(bytes(data))
    spool = make(tmp_path, segment_bytes=2048)
    got = drain(spool)
    lost_from = int(names[1][:-len(SUFFIX)]) - 1
    lost_to = int(names[2][:-len(SUFFIX)]) - 1
    assert got == sent[:lost_from] + sent[lost_to:]
    assert spool.stats()["corrupt"] == lost_to - lost_from
    spool.close()


def test_damaged_cursor_means_everything_is_delivered_again(tmp_path):
    spool = make(tmp_path)
    sent = fill(spool, 3, 10)
    first, msgs = spool.read(20)
    spool.ack(first + 20)
    spool.close()
    (tmp_path / "cursor").write_text("garbage\n")
    spool = make(tmp_path)
    assert drain(spool) == sent  # at least once: never skip what might not have been delivered
    spool.close()


def test_drop_oldest_keeps_the_bound_and_counts_every_lost_message(tmp_path):
    spool = make(tmp_path, max_bytes=64 * 1024, segment_bytes=8 * 1024)
    sent = fill(spool, 200, 10, size=60)
    stats = spool.stats()
    assert stats["bytes"] <= 64 * 1024
    got = drain(spool)
    assert stats["dropped"] > 0
    assert len(got) + spool.stats()["dropped"] == len(sent)
    assert got == sent[-len(got):]  # the newest survive, in order, none missing among them
    spool.close()


def test_drop_oldest_while_delivery_is_in_flight(tmp_path):
    spool = make(tmp_path, max_bytes=32 * 1024, segment_bytes=4 * 1024)
    sent = fill(spool, 10, 10, size=60)
    first, inflight = spool.read(50)  # being sent when the bound is hit
    sent += fill(spool, 100, 10, start=100, size=60)
    spool.ack(first + 50)  # a late confirmation of messages that were dropped meanwhile: ignored
    got = drain(spool)
    assert got == sent[-len(got):]
    assert len(got) + spool.stats()["dropped"] == len(sent)
    spool.close()


def test_block_policy_reports_full_and_loses_nothing(tmp_path):
    spool = make(tmp_path, max_bytes=32 * 1024, segment_bytes=4 * 1024, when_full="block")
    sent = []
    while not spool.full:
        sent += fill(spool, 1, 10, start=len(sent), size=60)
    sent += fill(spool, 5, 10, start=len(sent), size=60)  # what comes before the input stops waits in memory
    assert spool.full and spool.stats()["dropped"] == 0
    got = drain(spool)
    spool.save(force=True)  # delivered segments deleted: room again
    spool.flush()
    got += drain(spool)
    assert got == sent
    spool.save(force=True)
    assert not spool.full
    spool.close()


def test_a_second_user_of_the_same_spool_is_refused(tmp_path):
    spool = make(tmp_path)
    with pytest.raises(SpoolError, match="in use by another process"):
        make(tmp_path)
    spool.close()
    make(tmp_path).close()


WRITER = textwrap.dedent("""
    import sys
    from auoms_py.spool import Spool, SpoolOptions
    spool = Spool(sys.argv[1], SpoolOptions(fsync=sys.argv[2], segment_bytes=256 * 1024))
    spool.open()
    n = 0
    while True:
        spool.put([b"msg-%09d" % (n + i) + b"y" * 200 for i in range(500)])
        spool.flush()
        n += 500
        sys.stdout.write(f"{n}\\n")
        sys.stdout.flush()
""")


@pytest.mark.parametrize("fsync", ["never", "interval"])
def test_sigkill_in_mid_stream_loses_no_flushed_message(tmp_path, fsync):
    """A real writer process killed with SIGKILL while it writes: everything whose flush() had returned is there,
    in order; a frame cut by the kill is skipped and counted, and writing goes on."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    spool_dir = tmp_path / "spool"
    proc = subprocess.Popen([sys.executable, str(script), str(spool_dir), fsync], cwd=REPO, stdout=subprocess.PIPE)
    flushed = 0
    for line in proc.stdout:
        flushed = int(line)
        if flushed >= 60_000:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rest = proc.stdout.read().split()
    flushed = int(rest[-1]) if rest else flushed
    proc.stdout.close()
    spool = make(spool_dir)
    got = drain(spool, 5000)
    assert len(got) >= flushed
    assert got == [b"msg-%09d" % i + b"y" * 200 for i in range(len(got))]
    spool.close()


def test_a_full_disk_keeps_the_batch_and_drop_oldest_makes_room(tmp_path):
    """A real ENOSPC: the spool on a 1 MiB tmpfs with a bound far above it."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        spool = make(mnt / "spool", max_bytes=64 << 20, segment_bytes=128 * 1024, max_pending_bytes=256 * 1024)
        sent = fill(spool, 400, 20, size=200)
        stats = spool.stats()
        assert stats["write_errors"] > 0 and stats["dropped"] > 0
        got = drain(spool)
        assert len(got) + spool.stats()["dropped"] == len(sent)
        assert got == sent[-len(got):]
        spool.close()
        blocking = make(mnt / "blocking", max_bytes=64 << 20, segment_bytes=128 * 1024, when_full="block",
                        max_pending_bytes=1 << 30)
        fill(blocking, 400, 20, size=200)
        assert blocking.full  # the disk refuses: the input must stop (nothing dropped, batches in memory)
        assert blocking.stats()["dropped"] == 0
        blocking.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)])
