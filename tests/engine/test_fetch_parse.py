"""fetch_parse: the fast FETCH reader must read what IMAPClient's parser reads, or step aside.

The responses below are imaplib's raw form (``b"12 (UID 7 … {62}"``, ``(line, literal)`` pairs).
The differential test builds many responses from the grammar's variations and compares every
message with IMAPClient's reading of the same bytes.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest
from imapclient.response_parser import parse_fetch_response

from mailmig_tui.engine import fetch_parse
from mailmig_tui.engine.fetch_parse import FetchItems
from mailmig_tui.engine.sources.imap import _items_of

HEADER = b"BODY[HEADER.FIELDS (MESSAGE-ID)]"


def general(data: list) -> list[FetchItems]:
    """The same data through IMAPClient's parser, as the engine's fallback converts it."""
    return [_items_of(values) for values in parse_fetch_response(list(data), False, False).values()]


def comparable(items: FetchItems) -> tuple:
    when = items.internaldate
    return (items.uid, items.size, when and (when.utctimetuple()[:6], when.utcoffset()), items.flags, items.section)


def test_dovecot_metadata_response_with_header_literals() -> None:
    data = [
        (
            b'1 (UID 7 RFC822.SIZE 1234 INTERNALDATE " 7-Jul-2019 02:44:25 +0200" FLAGS (\\Seen $Label1) '
            + HEADER
            + b" {22}",
            b"Message-ID: <a@b.c>\r\n\r\n"[:22],
        ),
        b")",
        b'2 (UID 9 RFC822.SIZE 77 INTERNALDATE "31-Dec-1999 23:59:59 -0130" FLAGS () ' + HEADER + b' "")',
    ]
    got = fetch_parse.parse(data)
    assert got is not None and len(got) == 2
    first, second = got
    assert (first.uid, first.size, first.flags) == (7, 1234, ("\\Seen", "$Label1"))
    assert first.internaldate == dt.datetime(2019, 7, 7, 2, 44, 25, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert first.section == b"Message-ID: <a@b.c>\r\n\r\n"[:22]
    assert second.internaldate is not None and second.internaldate.utcoffset() == -dt.timedelta(hours=1, minutes=30)
    assert (second.flags, second.section) == ((), b"")
    assert [comparable(i) for i in got] == [comparable(i) for i in general(data)]


def test_body_literal_with_items_after_it_and_nil() -> None:
    data = [(b"3 (BODY[] {5}", b"ab\r\nc"), b" UID 12)", b"4 (UID 13 BODY[] NIL)"]
    got = fetch_parse.parse(data)
    assert got is not None
    assert [(i.uid, i.section) for i in got] == [(12, b"ab\r\nc"), (13, None)]
    assert [comparable(i) for i in got] == [comparable(i) for i in general(data)]


def test_flag_tuples_are_shared_between_messages() -> None:
    line = b'%d (UID %d RFC822.SIZE 1 INTERNALDATE "01-Jan-2020 00:00:00 +0000" FLAGS (\\Seen \\Answered))'
    got = fetch_parse.parse([line % (1, 1), line % (2, 2)])
    assert got is not None and got[0].flags is got[1].flags
    assert got[0].internaldate is not None and got[1].internaldate is not None
    assert got[0].internaldate.tzinfo is got[1].internaldate.tzinfo


@pytest.mark.parametrize(
    "data",
    [
        [b"1 (UID 7 MODSEQ (12) FLAGS ())"],  # an item the engine did not ask for (CONDSTORE)
        [b'1 (UID 7 INTERNALDATE "7/7/2019")'],  # not an IMAP date-time
        [b'1 (UID 7 INTERNALDATE "31-Feb-2019 00:00:00 +0000")'],  # no such day
        [(b"1 (UID 7 BODY[] {9}", b"short"), b")"],  # the literal is not as long as announced
        [(b"1 (UID 7 BODY[] {1}", b"a"), b' BODY[HEADER] "x")'],  # two sections
        [b"1 (UID 7 FLAGS (\\Seen)"],  # not closed
        [b"1 (UID 7 FLAGS (\\Seen)) trailing"],
        [(b"1 (UID 7 BODY[] {1}", b"a")],  # the rest of the line is missing
        [b'1 (UID 7 BODY[] "with \\x escape")'],
        [b"UID 7 (FLAGS ())"],
        [b"1 (UID 7  FLAGS ())"],  # two spaces
    ],
)
def test_anything_unexpected_steps_aside(data: list) -> None:
    assert fetch_parse.parse(data) is None


def _random_response(rng: random.Random, n: int) -> list:
    data: list = []
    for seq in range(1, n + 1):
        parts: list[bytes | tuple[str, bytes]] = []
        items = ["UID", "RFC822.SIZE", "INTERNALDATE", "FLAGS", "SECTION"]
        rng.shuffle(items)
        for name in items[: rng.randint(1, len(items))]:
            if name == "UID":
                parts.append(b"UID %d" % rng.randint(1, 10**9))
            elif name == "RFC822.SIZE":
                parts.append(b"RFC822.SIZE %d" % rng.randint(0, 50 * 2**20))
            elif name == "INTERNALDATE":
                day = rng.randint(1, 28)
                month = rng.choice(b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())
                sign = rng.choice(b"+-")
                day_text = (b" %d" % day) if day < 10 and rng.random() < 0.5 else b"%02d" % day
                parts.append(
                    b'INTERNALDATE "%s-%s-%d %02d:%02d:%02d %c%02d%02d"'
                    % (
                        day_text, month, rng.randint(1970, 2037), rng.randint(0, 23), rng.randint(0, 59),
                        rng.randint(0, 59), sign, rng.randint(0, 14), rng.choice((0, 30, 45)),
                    )
                )  # fmt: skip
            elif name == "FLAGS":
                pool = [
                    "\\Seen",
                    "\\Answered",
                    "\\Flagged",
                    "\\Deleted",
                    "\\Draft",
                    "$Forwarded",
                    "Todo",
                    "client-acme",
                ]
                flags = rng.sample(pool, rng.randint(0, 4))
                parts.append(b"FLAGS (" + " ".join(flags).encode() + b")")
            else:
                kind = rng.choice(("literal", "quoted", "nil"))
                if kind == "literal":
                    octets = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
                    parts.append((HEADER.decode(), octets))
                elif kind == "quoted":
                    text = "".join(rng.choice('abc <@>.:-"\\ ') for _ in range(rng.randint(0, 20)))
                    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
                    parts.append(HEADER + b' "' + quoted.encode() + b'"')
                else:
                    parts.append(HEADER + b" NIL")
        line = b"%d (" % seq
        for i, part in enumerate(parts):
            line += b" " if i else b""
            if isinstance(part, tuple):
                name, octets = part
                data.append((line + name.encode() + b" {%d}" % len(octets), octets))
                line = b""
            else:
                line += part
        data.append(line + b")")
    return data


@pytest.mark.parametrize("seed", range(40))
def test_reads_what_imapclient_reads(seed: int) -> None:
    rng = random.Random(seed)
    data = _random_response(rng, 30)
    got = fetch_parse.parse(data)
    assert got is not None, data
    assert [comparable(i) for i in got] == [comparable(i) for i in general(data)]
