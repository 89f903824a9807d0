"""String matches for process filters: equals, prefix, contains, regex, glob.

A match is compiled once, when the filter file is loaded, into one bound method or closure that takes the
subject string (an exe path or a cmdline, latin-1-decoded bytes as everywhere in the pipeline) and answers
True/False. A match may name several values: it then holds when any of them does.

Filter values are written in YAML as Unicode text; the subjects are bytes decoded as latin-1. `to_subject_text`
turns a value into the same form (UTF-8 bytes read as latin-1) so that a non-ASCII path in the filter file matches
the same path in an event.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Callable

# The kinds a match may have, in the order the docs list them.
KINDS = ("equals", "prefix", "contains", "regex", "glob")


def to_subject_text(value: str) -> str:
    """A filter value (Unicode) as the pipeline holds the same bytes: UTF-8 encoded, decoded as latin-1."""
    return value.encode("utf-8", "surrogateescape").decode("latin-1")


def _any_of(tests: list[Callable[[str], bool]]) -> Callable[[str], bool]:
    def test(subject: str) -> bool:
        for one in tests:
            if one(subject):
                return True
        return False

    return test


class StringMatch:
    """One compiled match: `kind` over `values` (any of them); `test(subject)` answers it.

    Raises ValueError (with a readable reason) for an unknown kind or a regex that does not compile.
    """

    __slots__ = ("kind", "values", "test", "line")

    def __init__(self, kind: str, values: list[str], line: int = 0):
        if kind not in KINDS:
            raise ValueError(f"unknown match kind {kind!r} (use one of: {', '.join(KINDS)})")
        if not values:
            raise ValueError(f"{kind}: no value given")
        self.kind = kind
        self.values = list(values)
        self.line = line
        subjects = [to_subject_text(v) for v in values]
        if kind == "equals":
            if len(subjects) == 1:
                self.test = subjects[0].__eq__
            else:
                self.test = frozenset(subjects).__contains__
        elif kind == "prefix":
            prefixes = tuple(subjects)
            self.test = lambda subject: subject.startswith(prefixes)
        elif kind == "contains":
            tests = [_contains(s) for s in subjects]
            self.test = tests[0] if len(tests) == 1 else _any_of(tests)
        elif kind == "regex":
            try:
                # one alternation compiled once: a single search per subject whatever the number of values
                pattern = "|".join(f"(?:{s})" for s in subjects) if len(subjects) > 1 else subjects[0]
                self.test = re.compile(pattern, re.DOTALL).search
            except re.error as exc:
                raise ValueError(f"regex {values!r} does not compile: {exc}") from None
        else:  # glob: fnmatch rules over the whole subject ('*' crosses '/', as in a shell case pattern)
            pattern = "|".join(f"(?:{fnmatch.translate(s)})" for s in subjects)
            self.test = re.compile(pattern, re.DOTALL).match

    def __call__(self, subject: str | None) -> bool:
        return subject is not None and bool(self.test(subject))

    def describe(self) -> str:
        verb = {
            "equals": "is",
            "prefix": "starts with",
            "contains": "contains",
            "regex": "matches regex",
            "glob": "matches glob",
        }[self.kind]
        values = " or ".join(repr(v) for v in self.values)
        return f"{verb} {values}"

    def to_yaml(self) -> dict | str:
        """The match as the filter file writes it (a bare string for a single `equals`)."""
        value = self.values[0] if len(self.values) == 1 else list(self.values)
        if self.kind == "equals" and isinstance(value, str):
            return value
        return {self.kind: value}

    def __repr__(self) -> str:
        return f"StringMatch({self.kind!r}, {self.values!r})"


def _contains(needle: str) -> Callable[[str], bool]:
    return lambda subject: needle in subject
