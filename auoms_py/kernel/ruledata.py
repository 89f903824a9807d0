"""struct audit_rule_data: the binary form of one audit rule, as the kernel takes and lists it.

    flags u32 (filter list), action u32, field_count u32, mask[64] u32 (syscall bitmap),
    fields[64] u32, values[64] u32, fieldflags[64] u32 (operators), buflen u32, buf[buflen]

String fields (paths, keys, exe, LSM labels) keep their length in ``values[i]`` and their bytes, in field order,
in ``buf`` (not NUL-terminated). Several keys share one AUDIT_FILTERKEY field, joined by 0x01.
"""
from __future__ import annotations

import dataclasses
import struct

AUDIT_BITMASK_SIZE = 64
AUDIT_MAX_FIELDS = 64
AUDIT_MAX_KEY_LEN = 256
KEY_SEPARATOR = "\x01"

AUDIT_FILTERKEY = 210
# fields whose value is a string in buf (kernel auditfilter.c audit_data_to_entry)
STRING_FIELDS = frozenset({
    13, 14, 15, 16, 17,  # AUDIT_SUBJ_USER, _ROLE, _TYPE, _SEN, _CLR
    19, 20, 21, 22, 23,  # AUDIT_OBJ_USER, _ROLE, _TYPE, _LEV_LOW, _LEV_HIGH
    105, 107, 112,  # AUDIT_WATCH, AUDIT_DIR, AUDIT_EXE
    AUDIT_FILTERKEY,
})

_HEAD = struct.Struct("=3I")
_ARRAYS = struct.Struct(f"={AUDIT_BITMASK_SIZE}I{AUDIT_MAX_FIELDS}I{AUDIT_MAX_FIELDS}I{AUDIT_MAX_FIELDS}II")
FIXED_SIZE = _HEAD.size + _ARRAYS.size  # 1040 bytes before buf


@dataclasses.dataclass
class RuleData:
    """One rule in kernel terms. ``fields`` are (field, op_flags, value) with value an int, or a str (latin-1)
    for string fields; ``mask`` is the 64-word syscall bitmap."""
    flags: int
    action: int
    mask: list[int]
    fields: list[tuple[int, int, int | str]]

    def pack(self) -> bytes:
        if len(self.fields) > AUDIT_MAX_FIELDS:
            raise ValueError(f"a rule has at most {AUDIT_MAX_FIELDS} fields, this one {len(self.fields)}")
        numbers = [0] * AUDIT_MAX_FIELDS
        values = [0] * AUDIT_MAX_FIELDS
        ops = [0] * AUDIT_MAX_FIELDS
        buf = bytearray()
        for i, (field, op, value) in enumerate(self.fields):
            numbers[i] = field
            ops[i] = op
            if isinstance(value, str):
                raw = value.encode("latin-1")
                values[i] = len(raw)
                buf += raw
            else:
                values[i] = value & 0xFFFFFFFF
        mask = list(self.mask) + [0] * (AUDIT_BITMASK_SIZE - len(self.mask))
        return (_HEAD.pack(self.flags, self.action, len(self.fields))
                + _ARRAYS.pack(*mask, *numbers, *values, *ops, len(buf)) + bytes(buf))

    @classmethod
    def unpack(cls, data: bytes) -> "RuleData":
        if len(data) < FIXED_SIZE:
            raise ValueError(f"audit_rule_data too short: {len(data)} bytes, need {FIXED_SIZE}")
        flags, action, count = _HEAD.unpack_from(data, 0)
        arrays = _ARRAYS.unpack_from(data, _HEAD.size)
        mask = list(arrays[:AUDIT_BITMASK_SIZE])
        numbers = arrays[AUDIT_BITMASK_SIZE:AUDIT_BITMASK_SIZE + AUDIT_MAX_FIELDS]
        values = arrays[AUDIT_BITMASK_SIZE + AUDIT_MAX_FIELDS:AUDIT_BITMASK_SIZE + 2 * AUDIT_MAX_FIELDS]
        ops = arrays[AUDIT_BITMASK_SIZE + 2 * AUDIT_MAX_FIELDS:AUDIT_BITMASK_SIZE + 3 * AUDIT_MAX_FIELDS]
        buflen = arrays[-1]
        buf = data[FIXED_SIZE:FIXED_SIZE + buflen]
        if count > AUDIT_MAX_FIELDS:
            raise ValueError(f"audit_rule_data claims {count} fields")
        fields: list[tuple[int, int, int | str]] = []
        pos = 0
        for i in range(count):
            if numbers[i] in STRING_FIELDS:
                fields.append((numbers[i], ops[i], buf[pos:pos + values[i]].decode("latin-1")))
                pos += values[i]
            else:
                fields.append((numbers[i], ops[i], values[i]))
        return cls(flags, action, mask, fields)

    @property
    def keys(self) -> list[str]:
        """The rule's keys (`-k`), in order; [] when it has none."""
        for field, _op, value in self.fields:
            if field == AUDIT_FILTERKEY and isinstance(value, str):
                return value.split(KEY_SEPARATOR) if value else []
        return []


def rule_keys(data: bytes) -> list[str]:
    """Keys of a raw struct audit_rule_data."""
    return RuleData.unpack(data).keys
