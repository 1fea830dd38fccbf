"""A fast reader for the FETCH responses the engine asks for, over imaplib's raw response data.

IMAPClient's general parser reads a response one character at a time in Python: listing a
100,000-message folder spent ~3.5 s of CPU there (bench: `python -m bench.run --only many`).
The engine only ever asks for UID, RFC822.SIZE, INTERNALDATE, FLAGS and one body section, so
this module reads exactly that grammar with a few regular expressions per message. Anything
else in a response (an item the server added, such as MODSEQ, an unusual quoting, a malformed
line) makes it return None, and the caller parses the same data with IMAPClient instead: the
fast path may only ever be faster, never different.

imaplib hands over an untagged FETCH as ``b"12 (UID 7 ... {62}"`` and, for every literal, a
``(line, octets)`` pair followed by the rest of the line, e.g.
``[(b'12 (UID 7 BODY[] {3}', b'abc'), b')']``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

_START = re.compile(rb"(\d+) \(")
# an item name and the space after it; a BODY[...] section name is read whole
_NAME = re.compile(rb"(UID|RFC822\.SIZE|INTERNALDATE|FLAGS|BODY\[[^\]]*\](?:<\d+>)?) ", re.IGNORECASE)
_NUMBER = re.compile(rb"\d+")
_QUOTED = re.compile(rb'"((?:[^"\\\r\n]|\\["\\])*)"')
_ESCAPED = re.compile(rb'\\(["\\])')
_FLAGS = re.compile(rb"\(([^()\"{}\r\n]*)\)")
_LITERAL = re.compile(rb"\{(\d+)\}$")
_NIL = re.compile(rb"NIL", re.IGNORECASE)
_DATE = re.compile(rb" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$")
_MONTHS = {m: i for i, m in enumerate(b"jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_ZONES: dict[bytes, dt.timezone] = {}
_FLAG_TUPLES: dict[bytes, tuple[str, ...]] = {}


@dataclass(slots=True)
class FetchItems:
    """One message's items from a FETCH response (None: not in the response)."""

    uid: int | None = None
    size: int | None = None
    internaldate: dt.datetime | None = None
    flags: tuple[str, ...] | None = None
    section: bytes | None = None  # the body section asked for (BODY[], BODY[HEADER.FIELDS (…)]); NIL: None

    def update(self, other: FetchItems) -> None:
        """Add what another response for the same message holds (a server may send two)."""
        for name in ("size", "internaldate", "flags", "section"):
            value = getattr(other, name)
            if value is not None:
                setattr(self, name, value)


class _Unexpected(Exception):
    """The response is not in the grammar this module reads: the caller uses the general parser."""


def parse(data: Sequence[bytes | tuple[bytes, bytes]]) -> list[FetchItems] | None:
    """Every message of imaplib's FETCH response data, in order; None if anything is unexpected."""
    out: list[FetchItems] = []
    i, n = 0, len(data)
    try:
        while i < n:
            lines: list[bytes] = []
            literals: list[bytes] = []
            while True:  # a message: (line, literal) pairs, then the rest of its last line
                if i >= n:
                    raise _Unexpected()
                item = data[i]
                i += 1
                if isinstance(item, tuple):
                    if len(item) != 2 or not isinstance(item[0], bytes) or not isinstance(item[1], bytes):
                        raise _Unexpected()
                    lines.append(item[0])
                    literals.append(item[1])
                    continue
                if not isinstance(item, bytes):
                    raise _Unexpected()
                lines.append(item)
                break
            out.append(_message(lines, literals))
    except _Unexpected:
        return None
    return out


def _message(lines: list[bytes], literals: list[bytes]) -> FetchItems:
    m = _START.match(lines[0])
    if not m:
        raise _Unexpected()
    items = FetchItems()
    sections = 0
    line_no, line, pos = 0, lines[0], m.end()
    while True:
        if line.startswith(b")", pos):
            if pos + 1 != len(line) or line_no != len(lines) - 1:
                raise _Unexpected()
            return items
        m = _NAME.match(line, pos)
        if not m:
            raise _Unexpected()
        name = m.group(1).upper()
        pos = m.end()
        if name in (b"UID", b"RFC822.SIZE"):
            v = _NUMBER.match(line, pos)
            if not v:
                raise _Unexpected()
            if name == b"UID":
                items.uid = int(v.group())
            else:
                items.size = int(v.group())
            pos = v.end()
        elif name == b"INTERNALDATE":
            v = _QUOTED.match(line, pos)
            if not v:
                raise _Unexpected()
            items.internaldate = internaldate(v.group(1))
            pos = v.end()
        elif name == b"FLAGS":
            v = _FLAGS.match(line, pos)
            if not v:
                raise _Unexpected()
            items.flags = _flags(v.group(1))
            pos = v.end()
        else:  # the body section: a literal ending this line, a quoted string, or NIL
            sections += 1
            if sections > 1:
                raise _Unexpected()  # two sections: not what the engine asks for
            lit = _LITERAL.match(line, pos)
            if lit:
                if line_no >= len(literals) or len(literals[line_no]) != int(lit.group(1)):
                    raise _Unexpected()
                items.section = literals[line_no]
                line_no += 1
                line, pos = lines[line_no], 0
            elif v := _QUOTED.match(line, pos):
                items.section = _ESCAPED.sub(rb"\1", v.group(1))
                pos = v.end()
            elif v := _NIL.match(line, pos):
                pos = v.end()
            else:
                raise _Unexpected()
        if line.startswith(b" ", pos):
            pos += 1
        elif not line.startswith(b")", pos):
            raise _Unexpected()


def internaldate(text: bytes) -> dt.datetime:
    """An IMAP date-time (``" 7-Jul-2019 02:44:25 +0200"``) with its own UTC offset."""
    m = _DATE.match(text)
    month = _MONTHS.get(m.group(2).lower()) if m else None
    if not m or month is None:
        raise _Unexpected()
    zone = m.group(7) + m.group(8) + m.group(9)
    tz = _ZONES.get(zone)
    if tz is None:
        minutes = int(m.group(8)) * 60 + int(m.group(9))
        tz = _ZONES.setdefault(zone, dt.timezone(dt.timedelta(minutes=-minutes if zone[0:1] == b"-" else minutes)))
    try:
        return dt.datetime(
            int(m.group(3)), month, int(m.group(1)), int(m.group(4)), int(m.group(5)), int(m.group(6)), tzinfo=tz
        )
    except ValueError:
        raise _Unexpected() from None


def _flags(text: bytes) -> tuple[str, ...]:
    """The flags as str, one shared tuple per distinct set (a folder has few combinations)."""
    flags = _FLAG_TUPLES.get(text)
    if flags is None:
        if len(_FLAG_TUPLES) > 10_000:
            _FLAG_TUPLES.clear()
        flags = _FLAG_TUPLES.setdefault(text, tuple(f.decode("utf-8", "replace") for f in text.split()))
    return flags
