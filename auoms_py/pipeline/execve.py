"""EXECVE records -> the argument list and AUOMS's `cmdline` string (reference §5).

The kernel logs `argc=N a0=... a1=...` over one or more EXECVE records; a long argument is split into
`aN_len=L aN[0]=... aN[1]=...` pieces, each piece quoted or hex on its own. Every piece is decoded separately and
the bytes concatenated (AUOMS defect §10.3 concatenated the raw pieces: literal `""` at quoted boundaries, hex cut
in half). `L` is the logged length (hex digits when hex-encoded), so a shortfall means pieces are missing.

Missing arguments are shown as `<first...last>`, a missing piece as `<...>`, as AUOMS does; arguments missing
after the last one logged get no marker (AUOMS's test vectors expect none): `argc` shows how many there were.
"""
from __future__ import annotations

import re
from operator import itemgetter

from auoms_py.pipeline.escape import bash_escape, join_args, unescape

MISSING_PIECE = "<...>"
_first = itemgetter(0)
_second = itemgetter(1)


class _LongArg:
    __slots__ = ("length", "pieces", "logged")

    def __init__(self, length: int):
        self.length = length
        self.pieces: dict[int, str] = {}  # piece index -> raw value
        self.logged = 0


def _logged_length(raw: str) -> int:
    return len(raw) - 2 if raw[:1] == '"' else len(raw)


def collect_args(execve_fields: list[list[tuple[str, str]]]) -> tuple[int | None, dict[int, object]]:
    """argc and {arg number: raw value | _LongArg} from the fields of every EXECVE record of an event."""
    argc = None
    args: dict[int, object] = {}
    for fields in execve_fields:
        for name, value in fields:
            if name[:1] != "a":
                continue
            if name == "argc":
                if value.isdecimal():
                    argc = int(value)
                continue
            rest = name[1:]
            if rest.isdecimal():
                args[int(rest)] = value
                continue
            number, sep, tail = rest.partition("_")
            if sep and tail == "len" and number.isdecimal():
                if value.isdecimal():
                    existing = args.get(int(number))
                    if not isinstance(existing, _LongArg):
                        args[int(number)] = _LongArg(int(value))
                    else:
                        existing.length = int(value)
                continue
            number, sep, tail = rest.partition("[")
            if sep and number.isdecimal() and tail[:-1].isdecimal() and tail[-1:] == "]":
                long_arg = args.get(int(number))
                if isinstance(long_arg, _LongArg):
                    long_arg.pieces[int(tail[:-1])] = value
                    long_arg.logged += _logged_length(value)
                # pieces without their aN_len are ignored, as AUOMS does: the argument shows as missing
    return argc, args


def _decode_long(long_arg: _LongArg) -> list[str | None]:
    """The decoded text of a split argument as segments; None marks where pieces are missing."""
    segments: list[str | None] = []
    current: list[str] = []
    expected = 0
    for index in sorted(long_arg.pieces):
        if index != expected:
            if current:
                segments.append("".join(current))
                current = []
            segments.append(None)
        current.append(unescape(long_arg.pieces[index])[0])
        expected = index + 1
    if current:
        segments.append("".join(current))
    if long_arg.logged < long_arg.length:
        segments.append(None)
    return segments


def build_argv(execve_fields: list[list[tuple[str, str]]]) -> tuple[list[str], str, int]:
    """(argv, cmdline, argc). argv holds the decoded arguments that are there (whole or not);
    cmdline is AUOMS's shell-escaped string with markers for what is missing."""
    argc, args = collect_args(execve_fields)
    highest = max(args) + 1 if args else 0
    count = max(argc or 0, highest)
    argv: list[str] = []
    words: list[str] = []
    gap_start = None
    for number in range(count):
        value = args.get(number)
        if isinstance(value, _LongArg) and not value.pieces:
            value = None  # aN_len with no piece at all: the whole argument is missing
        if value is None:
            if gap_start is None:
                gap_start = number
            continue
        if gap_start is not None:
            words.append(f"<{gap_start}...{number - 1}>")
            gap_start = None
        if isinstance(value, _LongArg):
            segments = _decode_long(value)
            argv.append("".join(segment for segment in segments if segment is not None))
            words.append("".join(MISSING_PIECE if segment is None else bash_escape(segment) for segment in segments))
        else:
            text = unescape(value)[0]
            argv.append(text)
            words.append(bash_escape(text))
    # arguments missing at the end get no marker, as in AUOMS (its test vectors expect none); argc tells
    return argv, " ".join(words), argc if argc is not None else len(argv)


# A long argument split into quoted pieces (`aN_len=L aN[0]="..." aN[1]="..."`), the pieces one after the other.
_QUOTED_PIECES = re.compile(r'a([0-9]+)_len=([0-9]+)((?: a\1\[[0-9]+\]="[^" ]*")+)(?= |$)')
_QUOTED_PIECE = re.compile(r'\[([0-9]+)\]="([^" ]*)"')
_ARG_NAMES: list[str] = ["a0="]  # what comes between the quoted values of `a0="..." a1="..."`: a0=, " a1=", ...
_NUMBER_TEXTS: list[str] = []  # "0", "1", "2"...


_KEPT_NAMES = 4096  # names kept made beyond this many arguments are made per use: a forged argc grows no table


def _number_texts(count: int) -> list[str]:
    if count > _KEPT_NAMES:
        return list(map(str, range(count)))
    if len(_NUMBER_TEXTS) < count:
        _NUMBER_TEXTS.extend(map(str, range(len(_NUMBER_TEXTS), count)))
    return _NUMBER_TEXTS[:count]


def _arg_names(count: int) -> list[str]:
    if count > _KEPT_NAMES:
        return ["a0=", *[f" a{number}=" for number in range(1, count)]]
    if len(_ARG_NAMES) < count:
        _ARG_NAMES.extend([f" a{number}=" for number in range(len(_ARG_NAMES), count)])
    return _ARG_NAMES[:count]


def _joined_pieces(text: str) -> str | None:
    """The text with each split argument (`aN_len=L` and its quoted pieces, all there, in order) written as the
    whole quoted argument build_argv makes of it; None if one is not like that."""
    out = []
    done = 0
    at = text.find("_len=")
    while at >= 0:
        start = text.rfind(" ", 0, at) + 1
        match = _QUOTED_PIECES.match(text, start)
        if match is None:
            return None
        number, length, pieces = match.groups()
        found = _QUOTED_PIECE.findall(pieces)
        texts = list(map(_second, found))
        if list(map(_first, found)) != _number_texts(len(found)) or sum(map(len, texts)) < int(length):
            return None  # a piece missing: build_argv marks where
        out += (text[done:start], f'a{number}="', *texts, '"')
        done = match.end()
        at = text.find("_len=", done)
    out.append(text[done:])
    return "".join(out)


def quoted_argv(bodies: list[str]) -> tuple[list[str], str, int] | None:
    """build_argv for the commonest EXECVE records, in a few C-level passes whatever the number of arguments:
    `argc=N` then a0..aN-1 in order, each quoted (or split into quoted pieces, all there), tokens separated by
    single spaces. None for any other records: the general build_argv decides. (A long command line, thousands
    of arguments over several records, otherwise costs a Python step per argument in four places.)"""
    argc_text, _, text = bodies[0].partition(" ")
    if argc_text[:5] != "argc=" or not argc_text[5:].isdecimal():
        return None
    argc = int(argc_text[5:])
    if len(bodies) > 1:
        text = " ".join([text, *bodies[1:]])
    if "_len=" in text:
        text = _joined_pieces(text)
        if text is None:
            return None
    parts = text.split('"')  # names and quoted values alternate: a0= VALUE " a1=" VALUE ... ""
    argv = parts[1::2]
    if len(parts) != 2 * argc + 1 or parts[-1] or parts[0:-1:2] != _arg_names(argc):
        return None  # tokens of another kind (hex, a piece on its own...), or spacing the general path reads
    text = " ".join(argv)
    if not (text.isascii() and text.isprintable()) or text.count(" ") != argc - 1:
        return None  # a space or other whitespace inside a value: the general path decides how to split
    return argv, join_args(argv, text), argc
