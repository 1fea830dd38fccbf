"""Pure parts of the IMAP source: Message-ID parsing, FETCH metadata, Gmail's archived-only rule."""

from __future__ import annotations

import datetime as dt

import pytest

from mailmig_tui.engine.sources.imap import _items_of, archived_only, message_id_of, meta_of


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (b"Message-ID: <a@b>\r\n\r\n", "<a@b>"),
        (b"Message-Id:\r\n <folded@x.example>\r\n\r\n", "<folded@x.example>"),
        (b"MESSAGE-ID:   <spaced@x>  \r\n\r\n", "<spaced@x>"),
        (b"\r\n", None),
        (b"Message-ID: \r\n\r\n", None),
        (None, None),
    ],
)
def test_message_id_of(block: bytes | None, expected: str | None) -> None:
    assert message_id_of(block) == expected


def test_meta_of_reads_sizes_dates_flags_and_tolerates_missing_items() -> None:
    """From IMAPClient's parse (the fallback for responses fetch_parse does not read)."""
    when = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    data = {
        b"UID": 7,
        b"RFC822.SIZE": 1234,
        b"INTERNALDATE": when,
        b"FLAGS": (b"\\Seen", b"$Forwarded"),
        b"BODY[HEADER.FIELDS (MESSAGE-ID)]": b"Message-ID: <x@y>\r\n\r\n",
    }
    meta = meta_of(_items_of(data))
    assert meta is not None
    assert (meta.id, meta.size, meta.internaldate, meta.flags, meta.message_id) == (
        "7",
        1234,
        when,
        ("\\Seen", "$Forwarded"),
        "<x@y>",
    )
    assert meta_of(_items_of({b"UID": 8, b"FLAGS": ()})) is None
    assert meta_of(_items_of({k: v for k, v in data.items() if k != b"UID"})) is None  # unsolicited: no UID
    naive = meta_of(_items_of({**data, b"INTERNALDATE": dt.datetime(2020, 1, 1)}))
    assert naive is not None and naive.internaldate.tzinfo is dt.UTC


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ((), True),
        ((b"\\Important",), True),
        (("\\Starred", "\\Important"), True),
        ((b"\\Inbox",), False),
        ((b"\\Sent",), False),
        ((b"Work",), False),
        ((b"\\Important", b"Projects/2019"), False),
    ],
)
def test_gmail_archived_only(labels: tuple, expected: bool) -> None:
    assert archived_only(labels) is expected
