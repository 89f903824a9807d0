"""Parse: one line of audit text -> a record (model.Record's layout: type, event id, body); a body -> its fields.

Input shapes (reference §1):
  auditd log / audisp plugin:  [node=NAME ]type=NAME msg=audit(SEC.MSEC:SERIAL): k=v ...  [0x1D ENRICHED tail]
  the same without `msg=`:      type=NAME audit(SEC.MSEC:SERIAL): k=v ...
  kernel netlink text:          audit(SEC.MSEC:SERIAL): k=v ...   (type code given apart)
  netlink text saved to a file: CODE audit(SEC.MSEC:SERIAL): k=v ...

All text is latin-1-decoded bytes (see model.py). One line: find/partition, no regex; a batch of lines: one
regular expression over the whole batch (one C-level pass instead of a call per line).
"""
from __future__ import annotations

import re

from auoms_py.pipeline.model import INTEGRITY_POLICY_RULE, Record
from auoms_py.pipeline.tables.record_types import RECORD_TYPE_NAMES

RECORD_TYPE_CODES = {name: code for code, name in RECORD_TYPE_NAMES.items()}
ENRICHED_SEPARATOR = "\x1d"


class MalformedRecord(ValueError):
    """A line that is not an audit record; the message says what is wrong with it."""


def record_type_name(code: int) -> str:
    name = RECORD_TYPE_NAMES.get(code)
    return name if name is not None else f"UNKNOWN[{code}]"


def record_type_code(name: str) -> int:
    """The code for a type name; `UNKNOWN[1327]` gives 1327; an unknown name gives 0."""
    code = RECORD_TYPE_CODES.get(name)
    if code is not None:
        return code
    if name.startswith("UNKNOWN[") and name.endswith("]") and name[8:-1].isdecimal():
        return int(name[8:-1])
    return 0


def parse_line(line: str, _codes=RECORD_TYPE_CODES, _enriched=ENRICHED_SEPARATOR) -> Record:
    """Parse one line of auditd log / plugin / saved netlink text. Raises MalformedRecord.

    The event id is kept as logged (`SEC.MSEC:SERIAL`); the assembler checks it once per event.
    (The default arguments bind module globals as locals: this runs for every line.)"""
    if _enriched in line:
        line = line[:line.index(_enriched)]  # auditd's ENRICHED tail: interpretations we redo ourselves
    # the common shape, in a few C-level string operations: type=NAME msg=audit(ID): body
    head, sep, body = line.partition("): ")
    if sep and head[:5] == "type=":
        space = head.find(" ", 5)
        if head[space + 1:space + 11] == "msg=audit(":
            type_name = head[5:space]
            code = _codes.get(type_name)
            if code is not None:
                if body[:1] == " " or body[-1:] == "\n":
                    body = body.lstrip(" ").rstrip("\r\n")
                return (code, type_name, None, head[space + 11:], body)
    return _parse_any(line.rstrip("\r\n"))


# A batch of lines at once: each line is either the usual `[node=NAME ]type=NAME msg=audit(SEC.MSEC:SERIAL): body`
# (body not starting with a space, line not ending with a carriage return, which parse_line strips from some
# lines and not others) or, whole, the last group. One C-level pass over the batch instead of a call per line.
_USUAL_OR_OTHER_LINE = re.compile(r"^(?:(?:node=(\S+) )?type=(\w+) msg=audit\(([0-9]+\.[0-9]+:[0-9]+)\): (?! )(.*)"
                                  r"(?<!\r)|(.*))$", re.MULTILINE)


# The plain line, as the kernel and auditd write it: `type=NAME msg=audit(ID): body`. A batch of nothing else (no
# node= prefix, no carriage return) is parsed by this simpler expression, 1.3x faster than the one above: where it
# leaves a line out, the count of matches tells, and the batch is parsed by the one above. The spaces before the
# body are skipped as parse_line strips them (it also strips a carriage return then: hence none in the batch); the
# event id is not checked here: the assembler checks each event's.
_PLAIN_LINE = re.compile(r"^type=([A-Z0-9_]+) msg=audit\(([^)\n]*)\): +(.*)$", re.MULTILINE)


# auditd's ENRICHED tails (0x1D and its interpretations, to the end of the line), which parse_line cuts off first
_ENRICHED_TAILS = re.compile("\x1d[^\n]*")


def parse_lines(lines: list[str]) -> list[Record] | None:
    """The records of many lines, in order, the same as `parse_line` gives one by one; None when some line is
    malformed (then parse line by line, to hear of each bad one)."""
    text = "\n".join(lines)
    return _parse_batch(text, len(text), len(lines))


def parse_text(text: str, count: int | None = None) -> list[Record] | None:
    """parse_lines for a batch as read, `count` lines each ending with a newline (no split and join again); None
    also when some line is no record (a comment, a blank line)."""
    if not text.endswith("\n"):
        return None
    return _parse_batch(text, len(text) - 1, text.count("\n") if count is None else count)


def _parse_batch(text: str, end: int, count: int, _findall=_USUAL_OR_OTHER_LINE.findall,
                 _findall_plain=_PLAIN_LINE.findall, _codes=RECORD_TYPE_CODES,
                 _enriched=ENRICHED_SEPARATOR) -> list[Record] | None:
    """The records of the `count` lines of text[:end] (lines joined by newlines)."""
    if _enriched in text:
        after = len(text) - end
        text = _ENRICHED_TAILS.sub("", text)  # what parse_line does to each line, in one pass
        end = len(text) - after
    get = _codes.get
    plain = text[:5] != "node=" and "\r" not in text
    if plain:
        matches = _findall_plain(text, 0, end)
        plain = len(matches) == count  # every line is plain
    if not plain:
        matches = _findall(text, 0, end)
        if len(matches) != count:  # one match per line, always: a safety net
            return None
    try:
        # the usual line is made a record here; any other (netlink text, unknown types...) by parse_line
        if plain:
            return [(code, type_name, None, key, body) if (code := get(type_name))
                    else parse_line(f"type={type_name} msg=audit({key}): {body}")  # an unknown type's line
                    for type_name, key, body in matches]
        return [(code, type_name, node or None, key, body) if (code := get(type_name))
                else parse_line(line or f"{'node=' + node + ' ' if node else ''}type={type_name} msg=audit({key}): "
                                        f"{body}")  # an unknown type's line, whole
                for node, type_name, key, body, line in matches]
    except Exception:  # noqa: BLE001 - malformed, or a bug: the line-by-line path counts and reports each
        return None


def _parse_any(line: str) -> Record:
    """Every other shape: node= prefix, no msg=, UNKNOWN[N] or unknown type names, netlink text with its code."""
    if line[:1].isdecimal():  # netlink text saved with its type code first
        code_text, _, rest = line.partition(" ")
        if not code_text.isdecimal():
            raise MalformedRecord("no record type")
        return parse_netlink(int(code_text), rest)
    node = None
    pos = 0
    if line.startswith("node="):
        pos = line.find(" ")
        if pos < 0:
            raise MalformedRecord("nothing after node=")
        node = line[5:pos]
        pos += 1
    if not line.startswith("type=", pos):
        raise MalformedRecord("no type= field")
    end = line.find(" ", pos)
    if end < 0:
        raise MalformedRecord("no audit(...) event id")
    type_name = line[pos + 5:end]
    code = record_type_code(type_name)
    if code:
        type_name = record_type_name(code)  # UNKNOWN[1327] -> PROCTITLE
    return _parse_event_id(line, end + 1, code, type_name, node)


def parse_netlink(code: int, text: str) -> Record:
    """Parse the text of one kernel netlink record whose type code is known."""
    return parse_netlink_pair((code, text))


def _parse_netlink_text(code: int, text: str) -> Record:
    """Every netlink text parse_netlink_pair does not take inline: an ENRICHED tail, padding, unknown codes."""
    if ENRICHED_SEPARATOR in text:
        text = text[:text.index(ENRICHED_SEPARATOR)]
    head, sep, body = text.partition("): ")
    if sep and head.startswith("audit("):
        type_name = RECORD_TYPE_NAMES.get(code)
        if type_name is not None:
            if body[:1] == " ":
                body = body.lstrip(" ")
            if body[-1:] in ("\n", "\x00"):
                body = body.rstrip("\r\n\x00")
            return (code, type_name, None, head[6:], body)
    return _parse_event_id(text.rstrip("\r\n\x00"), 0, code, record_type_name(code), None)


def parse_netlink_pair(pair: tuple[int, str], _names=RECORD_TYPE_NAMES, _enriched=ENRICHED_SEPARATOR) -> Record:
    """A kernel netlink record as the netlink reader gives it, a (type code, text) pair; the usual shape inline."""
    code, text = pair
    if text[:6] == "audit(" and _enriched not in text:
        close = text.find("): ")
        type_name = _names.get(code)
        if close > 0 and type_name is not None:
            body = text[close + 3:]
            if body[:1] != " " and body[-1:] not in ("\n", "\x00"):
                return (code, type_name, None, text[6:close], body)
    return _parse_netlink_text(code, text)


def _parse_event_id(line: str, pos: int, code: int, type_name: str, node: str | None) -> Record:
    # accept "msg=audit(" or "audit(" here, with any spacing the writers produce
    start = line.find("audit(", pos)
    if start < 0 or line[pos:start].strip() not in ("", "msg="):
        raise MalformedRecord("no audit(...) event id")
    close = line.find("):", start)
    if close < 0:
        raise MalformedRecord("unterminated audit(...) event id")
    key = line[start + 6:close]
    parse_event_id(key)
    body = line[close + 2:]
    if body[:1] == " ":
        body = body.lstrip(" ")
    return (code, type_name, node, key, body)


# An event id in the form the kernel writes it (and every format): no leading zeros, three-digit milliseconds
_WRITTEN_EVENT_ID = re.compile(r"(?:0|[1-9][0-9]*)\.[0-9]{3}:(?:0|[1-9][0-9]*)").fullmatch


def event_id_text(key: str, _written=_WRITTEN_EVENT_ID) -> str:
    """An event id as logged -> as written, `SEC.MSEC:SERIAL` with three-digit milliseconds: the id itself when the
    kernel wrote it (one C-level check; numbers are made only where a format needs them), else normalized as
    parse_event_id reads it. Raises MalformedRecord."""
    if _written(key):
        return key
    sec, msec, serial = parse_event_id(key)
    return f"{sec}.{msec:03d}:{serial}"


def parse_event_id(key: str) -> tuple[int, int, int]:
    """(sec, msec, serial) of an event id as logged, `1521757638.392:262332`. Raises MalformedRecord."""
    stamp, _, serial_text = key.partition(":")
    sec_text, _, msec_text = stamp.partition(".")
    # AUOMS and auditd take the first 3 digits of the fraction as milliseconds
    msec_text = msec_text[:3]
    if not (sec_text.isdecimal() and msec_text.isdecimal() and serial_text.isdecimal()):
        raise MalformedRecord(f"bad event id audit({key})")
    return int(sec_text), int(msec_text.ljust(3, "0")), int(serial_text)


def split_fields(code: int, body: str) -> list[tuple[str, str]]:
    """A record body as (name, raw value) pairs in order.

    - `msg='k=v k=v'` of user-space records is unwrapped: its fields become ordinary fields.
    - A double-quoted value is one value even when it holds spaces (AUOMS defect §10.12 split it).
    - A token without `=` (AVC's `avc:  denied  { read } for`) becomes a field with an empty value.
    - IMA's INTEGRITY_POLICY_RULE text does not follow the k=v format: kept whole as `unparsed_text`.
    """
    if code == INTEGRITY_POLICY_RULE:
        return [("unparsed_text", body)]
    body = unwrap_msg(body)
    if not _has_spaced_quote(body):
        return [(name, value) for name, _, value in [token.partition("=") for token in body.split()]]
    fields: list[tuple[str, str]] = []
    append = fields.append
    parts = body.split(" ")
    count = len(parts)
    i = 0
    while i < count:
        token = parts[i]
        i += 1
        if not token:
            continue
        name, _, value = token.partition("=")
        if value[:1] == '"' and (len(value) == 1 or value[-1] != '"'):
            # a quoted value holding spaces: take tokens up to the one that closes the quote
            pieces = [value]
            while i < count:
                piece = parts[i]
                i += 1
                pieces.append(piece)
                if piece.endswith('"'):
                    break
            value = " ".join(pieces)
        append((name, value))
    return fields


def record_fields(record: Record) -> list[tuple[str, str]]:
    """A record's fields as (name, raw value) pairs in order (values keep quotes / hex as logged)."""
    return split_fields(record[0], record[4])


def record_value(record: Record, name: str, default: str | None = None) -> str | None:
    """The raw value of a record's first field of that name."""
    for field_name, value in split_fields(record[0], record[4]):
        if field_name == name:
            return value
    return default


def unwrap_msg(body: str) -> str:
    """A user-space record's body with its `msg='k=v k=v'` unwrapped: the message's fields become the record's."""
    start = body.find("msg='")
    if start >= 0 and (start == 0 or body[start - 1] == " "):
        end = body.rfind("'")
        if end > start + 4:
            return f"{body[:start]}{body[start + 5:end]} {body[end + 1:]}"
        return body[:start] + body[start + 5:]  # no closing quote: take the rest as the message
    return body


# Whether some double-quoted value holds a space or tab (rare: the kernel hex-encodes such text). One C-level search:
# an EXECVE record of thousands of quoted arguments would otherwise cost a Python step per argument.
_has_spaced_quote = re.compile(r'="[^"]*[ \t]').search
