"""A small emulator of Kusto's `parse` operator (simple mode), to check our lines against Azure Sentinel's AUOMS
parsers as written in ../shared/reference/sentinel/ (the parser files are read, not retyped).

Simple-mode semantics: the pattern is a sequence of string literals, column names and `*`; each literal is found
at its first occurrence after the current position, and a column (or `*`) takes the text in between. If any
literal is missing the whole parse fails and every column is empty.
"""
from __future__ import annotations

from pathlib import Path


def tokenize(pattern: str) -> list[tuple[str, str]]:
    tokens = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch.isspace():
            i += 1
        elif ch == '"':
            j = i + 1
            literal = []
            while pattern[j] != '"':
                if pattern[j] == "\\":
                    j += 1
                literal.append(pattern[j])
                j += 1
            tokens.append(("literal", "".join(literal)))
            i = j + 1
        elif ch == "*":
            tokens.append(("star", "*"))
            i += 1
        else:
            j = i
            while j < len(pattern) and (pattern[j].isalnum() or pattern[j] == "_"):
                j += 1
            tokens.append(("column", pattern[i:j]))
            i = j
    return tokens


def parse(text: str, pattern: str) -> dict[str, str] | None:
    """Columns captured by `parse text with pattern`, or None when the pattern does not match."""
    tokens = tokenize(pattern)
    columns: dict[str, str] = {}
    pos = 0
    pending = None  # column or star waiting for the next literal
    for kind, value in tokens:
        if kind == "literal":
            idx = text.find(value, pos)
            if idx < 0 or (pending is None and idx != pos):
                return None
            if pending is not None and pending[0] == "column":
                columns[pending[1]] = text[pos:idx]
            pos = idx + len(value)
            pending = None
        else:
            pending = (kind, value)
    if pending is not None and pending[0] == "column":
        columns[pending[1]] = text[pos:]
    return columns


def parser_patterns(path: Path) -> list[str]:
    """The `parse X with PATTERN` patterns of a Sentinel parser / hunting query file, in order."""
    patterns = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("| parse "):
            patterns.append(line.split(" with ", 1)[1])
    return patterns


def run_parser(path: Path, syslog_message: str) -> dict[str, str] | None:
    """Apply a parser file's two parse steps (SyslogMessage -> EventData -> columns) to one message."""
    first, *rest = parser_patterns(path)
    outer = parse(syslog_message, first)
    if outer is None:
        return None
    if not rest:
        return outer
    inner = parse(outer["EventData"], rest[0])
    if inner is None:
        return None
    return {**outer, **inner}
