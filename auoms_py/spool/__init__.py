"""The durable spool between the pipeline and an output (docs/delivery.md).

    from auoms_py.spool import Spool, SpoolOptions
    spool = Spool(directory, SpoolOptions(max_bytes=..., fsync="interval", when_full="drop_oldest"))
    spool.open()                          # recovers what an earlier run left (torn tail skipped, cursor read)
    spool.put(messages); spool.flush()    # agent thread: one frame, one write() per batch
    first_seq, msgs = spool.read(...)     # delivery thread: what comes after the read position
    spool.ack(next_seq)                   # everything before next_seq was delivered (the cursor moves)
    spool.rewind()                        # the connection broke: read again from the cursor
    spool.close()

The in-memory `MemoryQueue` (auoms_py.outputs.delivery) has the same interface for outputs with `spool: false`.
"""
from auoms_py.spool.segments import Spool, SpoolError, SpoolOptions

__all__ = ["Spool", "SpoolError", "SpoolOptions"]
