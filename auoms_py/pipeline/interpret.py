"""Interpret: raw field values -> readable values and the names AUOMS writes them under (reference §4, §6).

`interpret_fields()` appends (name, value, style) triples to an output list. A field whose kind has a readable
form yields the readable value under its readable name (`user`, `syscall`, `saddr` ...) followed by the raw
value under the raw name (`uid`, or `syscall_r` when the names would clash); `arch_r`, `ses_r` and `mode_r` are
left out, as AUOMS's MSTIC output does. Text fields (`exe`, `comm`, `name`, ...) are decoded from quoted or hex.
Only the kinds AUOMS interprets are interpreted, so lines stay identical to AUOMS's where it was right.
"""
from __future__ import annotations

import socket
import struct

from auoms_py.pipeline.escape import HEX, QUOTED, tty_escape, unescape
from auoms_py.pipeline.model import BARE, TEXT
from auoms_py.pipeline.tables.syscalls import ARCH_NAMES, SYSCALL_NAMES

# field kinds
UNCLASSIFIED = 0
UID = 1
GID = 2
SYSCALL = 3
ARCH = 4
SESSION = 5
MODE = 6
SOCKADDR = 7
ESCAPED = 8
KEY = 9
UNESCAPED = 10  # text we produced ourselves (no quotes/hex to undo): always written as text

FIELD_KINDS = {
    **dict.fromkeys(("auid", "uid", "euid", "suid", "fsuid", "ouid", "oauid", "old-auid", "iuid", "id",
                     "inode_uid", "sauid", "obj_uid"), UID),
    **dict.fromkeys(("gid", "egid", "sgid", "fsgid", "ogid", "igid", "inode_gid", "new_gid", "obj_gid"), GID),
    "syscall": SYSCALL,
    "arch": ARCH,
    "ses": SESSION,
    "old-ses": SESSION,
    "mode": MODE,
    "saddr": SOCKADDR,
    "key": KEY,
    # text the kernel or user space may hex-encode (auparse's "escaped" fields, as AUOMS lists them)
    **dict.fromkeys(("path", "comm", "exe", "file", "name", "watch", "cwd", "cmd", "acct", "dir", "vm",
                     "old-chardev", "new-chardev", "old-disk", "new-disk", "old-fs", "new-fs", "old-net", "new-net",
                     "device", "cgroup", "apparmor", "operation", "denied_mask", "info", "profile",
                     "requested_mask", "old-rng", "new-rng", "ocomm", "grp", "new_group", "invalid_context",
                     "proctitle", "root_dir"), ESCAPED),
    "unparsed_text": UNESCAPED,
}

# per record type exceptions (record code -> {field name: kind})
_AVC, _USER_TTY, _NETFILTER_PKT, _PATH, _MQ_OPEN, _CRYPTO_KEY_USER = 1400, 1124, 1324, 1302, 1312, 1110
_ADD_GROUP, _DEL_GROUP, _GRP_MGMT = 1116, 1117, 1132
RECORD_FIELD_KINDS = {
    _AVC: {"saddr": UNCLASSIFIED},
    _USER_TTY: {"msg": ESCAPED},
    _NETFILTER_PKT: {"saddr": UNCLASSIFIED},
    _MQ_OPEN: {"mode": UNCLASSIFIED},
    _CRYPTO_KEY_USER: {"fp": UNCLASSIFIED},
    _ADD_GROUP: {"id": GID},
    _DEL_GROUP: {"id": GID},
    _GRP_MGMT: {"id": GID},
}
EXECVE = 1309

# readable names (AUOMS testout.conf interpreted_field_names); the raw value keeps the plain name
READABLE_NAMES = {
    "uid": "user", "auid": "audit_user", "euid": "effective_user", "suid": "set_user", "fsuid": "filesystem_user",
    "inode_uid": "inode_user", "oauid": "o_audit_user", "ouid": "o_user", "obj_uid": "obj_user",
    "sauid": "sender_audit_user", "gid": "group", "egid": "effective_group", "fsgid": "filesystem_group",
    "inode_gid": "inode_group", "new_gid": "new_group", "obj_gid": "obj_group", "ogid": "owner_group",
    "sgid": "set_group",
}
KEY_SEPARATOR = "\x01"
UNSET_ID = 4294967295
_ARCH_BY_TEXT: dict[str, tuple[str, int]] = {}
LITTLE_ENDIAN_ARCH = 0x40000000  # __AUDIT_ARCH_LE


def arch_name(raw: str) -> tuple[str, int | None]:
    """(readable arch, numeric value or None) for a raw hex arch value."""
    cached = _ARCH_BY_TEXT.get(raw)
    if cached is not None:
        return cached
    try:
        value = int(raw, 16)
    except ValueError:
        return f"unknown-arch({raw})", None
    name = ARCH_NAMES.get(value)
    result = (name if name is not None else f"unknown-arch({raw})", value)
    if len(_ARCH_BY_TEXT) < 64:
        _ARCH_BY_TEXT[raw] = result
    return result


def syscall_name(raw: str, arch_raw: str | None) -> str:
    if arch_raw is None:
        return "unknown-syscall()"
    arch, value = arch_name(arch_raw)
    table = SYSCALL_NAMES.get(ARCH_NAMES.get(value)) if value is not None else None
    if table is None or not raw.lstrip("-").isdecimal():
        return f"unknown-syscall({raw})"
    name = table.get(int(raw))
    return name if name is not None else f"unknown-syscall({raw})"


def _id_number(raw: str) -> int | None:
    """A uid/gid as the kernel logs it: unsigned decimal, or -1 in some records (OBJ_PID's oauid)."""
    if raw.isdecimal():
        return int(raw)
    if raw == "-1":
        return UNSET_ID
    return None


_FILE_TYPES = {0o140000: "socket", 0o120000: "link", 0o100000: "file", 0o060000: "block", 0o040000: "dir",
               0o020000: "character", 0o010000: "fifo"}


def mode_text(raw: str) -> str | None:
    """`0100755` -> `file,755`; `041777` -> `dir,sticky,777`; `0104755` -> `file,suid,755`."""
    try:
        mode = int(raw, 8)
    except ValueError:
        return None
    kind = _FILE_TYPES.get(mode & 0o170000)
    parts = [kind if kind is not None else f"{(mode & 0o170000) >> 12:03o}"]
    if mode & 0o4000:
        parts.append("suid")
    if mode & 0o2000:
        parts.append("sgid")
    if mode & 0o1000:
        parts.append("sticky")
    parts.append(f"{mode & 0o777:03o}")
    return ",".join(parts)


_FAMILIES = {1: "local", 2: "inet", 3: "ax25", 4: "ipx", 5: "appletalk", 6: "netrom", 7: "bridge", 8: "atmpvc",
             9: "x25", 10: "inet6", 11: "rose", 12: "decnet", 13: "netbeui", 14: "security", 15: "key",
             16: "netlink", 17: "packet", 18: "ash", 19: "econet", 20: "atmsvc", 21: "rds", 22: "sna", 23: "irda",
             24: "pppox", 25: "wanpipe", 26: "llc", 29: "can", 30: "tipc", 31: "bluetooth", 32: "iucv", 33: "rxrpc",
             34: "isdn", 35: "phonet", 36: "ieee802154", 37: "caif", 38: "alg", 39: "nfc", 40: "vsock"}


def sockaddr_text(raw: str, arch: int | None = None) -> str | None:
    """A SOCKADDR's hex as AUOMS writes it: `{ fam=inet laddr=127.0.0.1 lport=80 }` (ports byte-swapped right:
    AUOMS defect §10.2), `{ fam=local path=/run/x }`, abstract `path=@name`, `{ fam=netlink nlnk-fam=16
    nlnk-pid=0 }` (defect §10.10 lacked the space). None if the value is not hex."""
    if len(raw) % 2 or len(raw) < 4:
        return None
    try:
        data = bytes.fromhex(raw)
    except ValueError:
        return None
    # sa_family is in the host's byte order: big-endian for arches without the LE bit (s390x, ppc64)
    little = arch is None or bool(arch & LITTLE_ENDIAN_ARCH)
    family = data[0] | (data[1] << 8) if little else (data[0] << 8) | data[1]
    name = _FAMILIES.get(family)
    head = f"{{ fam={name if name else f'unknown-family({family})'} "
    if family == 2:
        if len(data) < 8:
            return head + "sockaddr len too short }"
        port = (data[2] << 8) | data[3]  # network byte order
        return f"{head}laddr={socket.inet_ntop(socket.AF_INET, data[4:8])} lport={port} }}"
    if family == 10:
        if len(data) < 24:
            return head + "sockaddr6 len too short }"
        port = (data[2] << 8) | data[3]
        return f"{head}laddr={socket.inet_ntop(socket.AF_INET6, data[8:24])} lport={port} }}"
    if family == 1:
        path = data[2:]
        if path[:1] == b"\x00":
            text = "@" + path[1:].decode("latin-1")
        else:
            text = path.split(b"\x00", 1)[0].decode("latin-1")
        return f"{head}path={tty_escape(text)} }}"
    if family == 16:
        if len(data) < 12:
            return head + "netlink len too short }"
        fmt = "<HHII" if little else ">HHII"
        nl_family, _pad, nl_pid, _groups = struct.unpack(fmt, data[:12])
        return f"{head}nlnk-fam={nl_family} nlnk-pid={nl_pid} }}"
    return head + "(unsupported) }"


class Interpreter:
    """Turns fields into output triples, with the user db for names (looked up once per distinct raw id)."""

    def __init__(self, userdb):
        self.userdb = userdb
        self._generation = None
        self._users: dict[str, str | None] = {}
        self._groups: dict[str, str | None] = {}

    def _check_userdb(self) -> None:
        generation = self.userdb.generation if self.userdb is not None else 0
        if generation != self._generation or len(self._users) > 4096 or len(self._groups) > 4096:
            self._generation = generation
            self._users.clear()
            self._groups.clear()

    def user(self, raw: str) -> str | None:
        """Readable value of a uid field: name, `unset`, `unknown-uid(N)`, or None when raw is not an id."""
        name = self._users.get(raw, False)
        if name is False:
            name = self._users[raw] = self._id_label(raw, "uid")
        return name

    def group(self, raw: str) -> str | None:
        name = self._groups.get(raw, False)
        if name is False:
            name = self._groups[raw] = self._id_label(raw, "gid")
        return name

    def _id_label(self, raw: str, kind: str) -> str | None:
        number = _id_number(raw)
        if number is None:
            return None
        if number == UNSET_ID:
            return "unset"
        name = None
        if self.userdb is not None:
            name = self.userdb.user_name(number) if kind == "uid" else self.userdb.group_name(number)
        return name if name is not None else f"unknown-{kind}({number})"

    def add_fields(self, out: list, code: int, fields, arch_raw: str | None = None, renamed: bool = True,
                   skip: frozenset = frozenset()) -> None:
        """Append the output triples of `fields` (a record's (name, raw) pairs) to `out`.

        renamed=False is for fields that will be prefixed with their record type (`OBJ_PID_ouid`): AUOMS does
        not rename those, so the readable value keeps the name and the raw one gets `_r`.
        """
        self._check_userdb()
        append = out.append
        exceptions = RECORD_FIELD_KINDS.get(code)
        kinds = FIELD_KINDS
        id_names = _RENAMED_ID_NAMES if renamed else _PLAIN_ID_NAMES
        for name, raw in fields:
            if name in skip:
                continue
            if exceptions is not None and name in exceptions:
                kind = exceptions[name]
            elif code == EXECVE and name[:1] == "a" and name != "argc" and not name.endswith("_len"):
                kind = ESCAPED
            else:
                kind = kinds.get(name, UNCLASSIFIED)
            if kind == UNCLASSIFIED:
                append((name, raw, BARE))
            elif kind == UID or kind == GID:
                readable = self.user(raw) if kind == UID else self.group(raw)
                if readable is None:
                    append((name, raw, BARE))
                    continue
                readable_name, raw_name = id_names.get(name) or (name, name + "_r")
                append((readable_name, readable, BARE))
                append((raw_name, raw, BARE))
            elif kind == ESCAPED:
                text, how = unescape(raw)
                append((name, text, TEXT if how else BARE))
            elif kind == SYSCALL:
                append((name, syscall_name(raw, arch_raw), BARE))
                append((name + "_r", raw, BARE))
            elif kind == ARCH:
                append((name, arch_name(raw)[0], BARE))
                if not renamed:
                    append((name + "_r", raw, BARE))
            elif kind == SESSION:
                if raw == "4294967295" or raw == "-1":
                    append((name, "-1", TEXT))  # AUOMS writes an unset session as ses="-1"
                    if not renamed:
                        append((name + "_r", raw, BARE))
                else:
                    append((name, raw, BARE))
            elif kind == MODE:
                text = mode_text(raw)
                if text is None:
                    append((name, raw, BARE))
                    continue
                append((name, text, BARE))
                if not renamed:
                    append((name + "_r", raw, BARE))
            elif kind == SOCKADDR:
                text = sockaddr_text(raw, arch_name(arch_raw)[1] if arch_raw else None)
                if text is None:
                    append((name, raw, BARE))
                    continue
                append((name, text, BARE))
                append((name + "_r", raw, BARE))
            elif kind == KEY:
                text, how = unescape(raw)
                if how == QUOTED or how == HEX:
                    append((name, text.replace(KEY_SEPARATOR, ","), BARE))
                    append((name + "_r", raw, BARE))
                else:
                    append((name, raw, BARE))
            else:  # UNESCAPED: our own text
                append((name, raw, TEXT))


_ID_FIELDS = [name for name, kind in FIELD_KINDS.items() if kind in (UID, GID)]
# (readable name, raw name) of id fields: renamed as AUOMS's MSTIC output does, or plain for prefixed records
_RENAMED_ID_NAMES = {name: (READABLE_NAMES[name], name) if name in READABLE_NAMES else (name, name + "_r")
                     for name in _ID_FIELDS}
_PLAIN_ID_NAMES = {name: (name, name + "_r") for name in _ID_FIELDS}


def split_keys(raw: str | None) -> tuple[str, ...]:
    """The audit rule keys of a raw key value (quoted or hex, joined by 0x01); () for (null) or none."""
    if not raw:
        return ()
    text, how = unescape(raw)
    if how != QUOTED and how != HEX:
        return ()
    return tuple(key for key in text.split(KEY_SEPARATOR) if key)
