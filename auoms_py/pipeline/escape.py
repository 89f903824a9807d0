"""Decoding the kernel's value encodings and the escapings AUOMS writes (reference §1, §5, §6).

All strings are latin-1-decoded bytes: one character per byte.
"""
from __future__ import annotations

_HEX_DIGITS = frozenset("0123456789ABCDEF")
# byte -> \xNN for every byte that is not printable ASCII
_TTY_ESCAPES = {i: f"\\x{i:02X}" for i in list(range(0x20)) + list(range(0x7F, 0x100))}
_BASH_C_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 27: "\\e", 39: "\\'"}
_BASH_ANSI_C = {i: _BASH_C_ESCAPES.get(i, f"\\x{i:02X}") for i in list(range(0x20)) + list(range(0x7F, 0x100))}
_BASH_ANSI_C[39] = "\\'"
_DOUBLE_QUOTE_TRIGGER_CHARS = " &();<>|"
_DOUBLE_QUOTE_TRIGGERS = frozenset(_DOUBLE_QUOTE_TRIGGER_CHARS)

# kinds of raw value, as unescape() reports them
RAW = 0  # bare token: (null), (none), numbers, ?
QUOTED = 1  # "text"
HEX = 2  # kernel hex encoding of text with spaces, quotes, control or non-ASCII bytes


def is_hex(value: str) -> bool:
    """Even-length upper-case hex, as the kernel's audit_log_n_hex writes."""
    return len(value) % 2 == 0 and bool(value) and not value.strip("0123456789ABCDEF")


def unescape(value: str) -> tuple[str, int]:
    """Decode a raw field value: (text, kind). Quoted -> inner text; hex -> decoded bytes; else as is."""
    if value[:1] == '"':
        if len(value) >= 2 and value[-1] == '"':
            return value[1:-1], QUOTED
        return value[1:], QUOTED  # unterminated quote: keep what is there
    if is_hex(value):
        return bytes.fromhex(value).decode("latin-1"), HEX
    return value, RAW


def needs_escape(text: str) -> bool:
    return not (text.isascii() and text.isprintable())


def tty_escape(text: str) -> str:
    """Bytes < 0x20 or > 0x7E as \\xNN (upper case), everything else as is (AUOMS tty_escape_string)."""
    if text.isascii() and text.isprintable():
        return text
    return text.translate(_TTY_ESCAPES)


def bash_escape(arg: str) -> str:
    """One argument as a shell word, exactly as AUOMS's bash_escape_string (reference §5).

    Note: inside $'...' a backslash is not doubled (AUOMS's behaviour, kept for compatibility); the JSON format's
    `argv` list carries every argument exactly. (str.replace, not str.translate: translate with a mapping costs
    microseconds per call even when nothing changes.)
    """
    if not arg:
        return "''"
    if not (arg.isascii() and arg.isprintable()):
        return "$'" + arg.translate(_BASH_ANSI_C) + "'"
    if "!" in arg:
        if "'" in arg:
            return "$'" + arg.translate(_BASH_ANSI_C) + "'"
        return "'" + arg + "'"
    # (frozenset.isdisjoint hashes every character: the fastest test for a word, 150 us for a 20,000-character
    # argument, where eight C-level searches take 1 us)
    if (not _DOUBLE_QUOTE_TRIGGERS.isdisjoint(arg) if len(arg) < 256
            else any([char in arg for char in _DOUBLE_QUOTE_TRIGGER_CHARS])):
        return '"' + _backslash(arg, '"$`') + '"'
    if '"' in arg or "$" in arg or "'" in arg or "\\" in arg or "`" in arg:
        return _backslash(arg, "\"$'`")
    return arg


def _backslash(text: str, specials: str) -> str:
    """A backslash before every backslash and every character of `specials`."""
    text = text.replace("\\", "\\\\")
    for char in specials:
        if char in text:
            text = text.replace(char, "\\" + char)
    return text


# What makes bash_escape change a word (besides its being empty): a control byte, DEL, a space, or one of the
# shell's specials. Non-ASCII is checked apart (isascii).
_CHANGES_WORD = bytes(range(0x21)) + b"\x7f!&();<>|\"$'`\\"


def join_args(args: list[str], joined: str | None = None) -> str:
    """The arguments as shell words joined by spaces (AUOMS's cmdline). Words bash_escape leaves as they are, the
    usual case, are found in one C-level pass over the joined text instead of a call per argument. `joined`: the
    caller's " ".join(args), when it has it."""
    text = " ".join(args) if joined is None else joined
    if (text.isascii() and "" not in args
            and len(text.encode("ascii").translate(None, _CHANGES_WORD)) == len(text) - len(args) + 1):
        return text  # (the only bytes deleted were the spaces between the words)
    return " ".join([bash_escape(arg) for arg in args])


def split_proctitle(text: str) -> list[str]:
    """PROCTITLE bytes -> arguments: NUL separated, runs of NULs and trailing NULs ignored (AUOMS behaviour)."""
    return [part for part in text.split("\x00") if part]
