"""How the IMAP source reads a folder: by UID ranges, through the fast FETCH reader, each folder
opened in the same round trip as its first FETCH.

Against real servers (Dovecot, and pymap as a second implementation): a folder with holes in
its UIDs listed in ranges smaller than the folder gives every message exactly once, with the
metadata IMAPClient itself reads; both servers' FETCH responses are read by fetch_parse
(IMAPClient's parser, the fallback, is made to fail here); going from folder to folder never
waits for a separate EXAMINE and never mixes folders up; a folder that cannot be opened fails
alone and leaves the connection usable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from mailmig_tui.engine import model
from mailmig_tui.engine.sources import imap
from mailmig_tui.engine.sources.base import FolderRefused, FolderStatus
from mailmig_tui.engine.sources.imap import ImapSource, message_id_of
from tests.integration.conftest import message
from tests.servers import mailbox as mb

ZONES = (dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(-dt.timedelta(hours=3)))


def _seed(server: Any, n: int) -> list[int]:
    msgs = [
        mb.Msg(
            message(i, message_id=i % 4 != 0),
            flags=(("\\Seen",) if i % 2 else ()) + (("$Forwarded", "Todo") if i % 3 == 0 else ()),
            internaldate=dt.datetime(2020, 1 + i % 12, 1 + i % 27, 8, i % 60, 5, tzinfo=ZONES[i % 3]),
        )
        for i in range(1, n + 1)
    ]
    return mb.seed(server, "alice", {"INBOX": msgs})["INBOX"]


def _expected(server: Any) -> dict[int, tuple]:
    """What IMAPClient reads of every message, for comparison."""
    client = mb.connect(server, "alice")
    try:
        client.select_folder("INBOX", readonly=True)
        got = client.fetch(
            client.search("ALL"), ["RFC822.SIZE", "INTERNALDATE", "FLAGS", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]
        )
    finally:
        client.logout()
    return {
        uid: (
            v[b"RFC822.SIZE"],
            v[b"INTERNALDATE"].astimezone(dt.UTC),
            tuple(f.decode() for f in v[b"FLAGS"] if f != b"\\Recent"),
            message_id_of(v[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"]),
        )
        for uid, v in got.items()
    }


def _seen(m: Any) -> tuple:
    """A listed message as _expected shows it (\\Recent is the session's, never copied)."""
    return m.size, m.internaldate.astimezone(dt.UTC), tuple(f for f in m.flags if f != "\\Recent"), m.message_id


def _open(server: Any) -> ImapSource:
    source = model.Source(type="imap", host="127.0.0.1", port=server.port, security="none")
    return ImapSource(source, model.User("alice", "alice", password=server.users["alice"]))


def _inbox(src: ImapSource) -> Any:
    return next(f for f in src.list_folders() if f.name.upper() == "INBOX")


def test_a_folder_with_holes_is_listed_by_ranges_each_message_once(
    dovecot_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = dovecot_factory(name="src")
    uids = _seed(server, 40)
    # holes, and the highest ten expunged: the last range then starts above every UID left, where
    # "n:*" answers with the highest UID below n (already listed)
    gone = set(uids[3:11]) | {uids[20]} | set(uids[30:])
    client = mb.connect(server, "alice")
    client.select_folder("INBOX")
    client.delete_messages(sorted(gone))
    client.expunge()
    client.logout()
    expected = _expected(server)
    assert len(expected) == 21
    commands: list[str] = []
    real = imap.uid_fetch

    def counting(client: Any, uid_set: str, items: Any, **kw: Any) -> Any:
        commands.append(uid_set)
        return real(client, uid_set, items, **kw)

    monkeypatch.setattr(imap, "RANGE_CHUNK", 7)
    monkeypatch.setattr(imap, "uid_fetch", counting)
    src = _open(server)
    try:
        folder = _inbox(src)
        status = src.status(folder)
        assert status.uidnext == max(uids) + 1
        listing = src.list_messages(folder, status, set(), model.Filters())
    finally:
        src.close()
    got = {int(m.id): _seen(m) for m in listing.messages}
    assert [int(m.id) for m in listing.messages] == sorted(expected)  # once each, in UID order
    assert got == expected
    assert len(commands) > 3 and commands[-1].endswith(":*")


@pytest.mark.parametrize("kind", ["dovecot", "pymap"])
def test_both_servers_responses_are_read_by_the_fast_reader(
    kind: str, dovecot_factory: Callable[..., Any], pymap_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = dovecot_factory(name="src") if kind == "dovecot" else pymap_factory(name="src")
    _seed(server, 12)
    expected = _expected(server)

    def general_parser(*args: Any) -> Any:
        raise AssertionError(f"fetch_parse stepped aside for {kind}: {args[0][:3]!r}")

    monkeypatch.setattr(imap, "parse_fetch_response", general_parser)
    src = _open(server)
    try:
        folder = _inbox(src)
        listing = src.list_messages(folder, src.status(folder), set(), model.Filters())
        fetched = src.fetch(folder, [m.id for m in listing.messages] + ["999999"])
    finally:
        src.close()
    got = {int(m.id): _seen(m) for m in listing.messages}
    assert got == expected
    assert [f.id for f in fetched] == [m.id for m in listing.messages] + ["999999"]
    assert fetched[-1].raw is None  # not in the folder
    assert all(f.raw is not None and len(f.raw) == expected[int(f.id)][0] for f in fetched[:-1])
    assert fetched[0].raw is not None and fetched[0].raw.startswith(b"From: Sender 1 ")


@pytest.mark.parametrize("kind", ["dovecot", "pymap"])
def test_folders_are_opened_with_their_first_fetch_and_never_mixed_up(
    kind: str, dovecot_factory: Callable[..., Any], pymap_factory: Callable[..., Any]
) -> None:
    server = dovecot_factory(name="src") if kind == "dovecot" else pymap_factory(name="src")
    sizes = {"INBOX": 3, "Sent": 2, "Archive": 4}
    mb.seed(
        server,
        "alice",
        {
            name: [mb.Msg(message(100 * k + i, subject=name)) for i in range(n)]
            for k, (name, n) in enumerate(sizes.items())
        },
    )
    src = _open(server)

    def no_separate_examine(*args: Any, **kw: Any) -> Any:
        raise AssertionError("a folder was opened in a round trip of its own")

    src._client.select_folder = no_separate_examine  # type: ignore[method-assign]
    try:
        folders = {f.name: f for f in src.list_folders() if f.name in sizes}
        listed = {
            name: src.list_messages(f, src.status(f), set(), model.Filters()).messages for name, f in folders.items()
        }
        assert {name: len(metas) for name, metas in listed.items()} == sizes
        for _round in range(2):  # back and forth between the folders, as copy streams do
            for name, f in folders.items():
                fetched = src.fetch(f, [m.id for m in listed[name]])
                assert [x.raw is not None and b"Subject: " + name.encode() in x.raw for x in fetched] == [True] * sizes[
                    name
                ]
    finally:
        src.close()


def test_a_folder_that_cannot_be_opened_fails_alone(dovecot_factory: Callable[..., Any]) -> None:
    server = dovecot_factory(name="src")
    _seed(server, 3)
    src = _open(server)
    try:
        inbox = _inbox(src)
        listing = src.list_messages(inbox, src.status(inbox), set(), model.Filters())
        gone = type(inbox)("Vanished", inbox.delimiter)
        with pytest.raises(FolderRefused, match="the source refused to open or read the folder: examine failed"):
            src.fetch(gone, ["1"])
        with pytest.raises(FolderRefused, match="the source refused to open or read the folder: examine failed"):
            src.list_messages(gone, FolderStatus("1", "9/3", 3, 9), set(), model.Filters())
        fetched = src.fetch(inbox, [m.id for m in listing.messages])  # the connection is still in step
        assert all(f.raw for f in fetched) and len(fetched) == 3
    finally:
        src.close()


@pytest.mark.parametrize("kind", ["dovecot", "pymap"])
def test_first_listings_are_taken_ahead_together_and_date_filters_search_the_right_folder(
    kind: str, dovecot_factory: Callable[..., Any], pymap_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = dovecot_factory(name="src") if kind == "dovecot" else pymap_factory(name="src")
    old, new = dt.datetime(2019, 5, 1, 12, tzinfo=dt.UTC), dt.datetime(2021, 5, 1, 12, tzinfo=dt.UTC)
    layout = {"Mixed": [old, new, new], "Recent": [new, new], "Ancient": [old], "Gone": [new]}
    mb.seed(
        server,
        "alice",
        {
            name: [mb.Msg(message(10 * k + i, subject=name), internaldate=d) for i, d in enumerate(dates)]
            for k, (name, dates) in enumerate(layout.items())
        },
    )
    src = _open(server)
    try:
        folders = {f.name: f for f in src.list_folders() if f.name in layout}
        statuses = {name: src.status(f) for name, f in folders.items()}
        client = mb.connect(server, "alice")
        client.delete_folder("Gone")  # between the LIST and the listing: it cannot be opened any more
        client.logout()
        src.prefetch_listings([(f, statuses[name]) for name, f in folders.items()])

        def asked_again(*args: Any, **kw: Any) -> Any:
            raise AssertionError("a listing taken ahead was asked for again")

        monkeypatch.setattr(imap, "fetch_meta_range", asked_again)
        filters = model.Filters(skip_before=dt.date(2020, 1, 1))
        kept = {}
        for name in ("Mixed", "Recent", "Ancient"):
            listing = src.list_messages(folders[name], statuses[name], set(), filters)
            kept[name] = (len(listing.messages), sum(listing.skipped.values()))
            fetched = src.fetch(folders[name], [m.id for m in listing.messages])
            assert all(f.raw is not None and b"Subject: " + name.encode() in f.raw for f in fetched)
        assert kept == {"Mixed": (2, 1), "Recent": (2, 0), "Ancient": (0, 1)}
        monkeypatch.undo()
        with pytest.raises(FolderRefused, match="examine failed"):
            src.list_messages(folders["Gone"], statuses["Gone"], set(), filters)
    finally:
        src.close()


@pytest.mark.parametrize("kind", ["dovecot", "pymap"])
def test_statuses_of_many_folders_in_one_round_trip(
    kind: str, dovecot_factory: Callable[..., Any], pymap_factory: Callable[..., Any]
) -> None:
    """Servers without LIST-STATUS (Gmail, Exchange) get every folder's STATUS sent together."""
    server = dovecot_factory(name="src") if kind == "dovecot" else pymap_factory(name="src")
    counts = {"INBOX": 2, "Sent": 1, "Projekte/Älter": 3, "Empty": 0}
    mb.seed(
        server,
        "alice",
        {name: [mb.Msg(message(10 * k + i)) for i in range(n)] for k, (name, n) in enumerate(counts.items())},
    )
    src = _open(server)
    try:
        folders = [f for f in src.list_folders() if f.name in counts]
        assert len(folders) == len(counts)
        src._status_cache.clear()  # as on a server without LIST-STATUS
        got = src.statuses(folders)
        client = mb.connect(server, "alice")
        client.folder_encode = False  # imap_name is already as the server spells it
        try:
            for f, st in zip(folders, got, strict=True):
                one = client.folder_status(f.imap_name, [b"MESSAGES", b"UIDNEXT", b"UIDVALIDITY"])
                assert (st.messages, st.uidnext, st.validity) == (
                    counts[f.name],
                    one[b"UIDNEXT"],
                    str(one[b"UIDVALIDITY"]),
                ), f.name
            client.delete_folder(next(f.imap_name for f in folders if f.name == "Sent"))
        finally:
            client.logout()
        again = dict(zip((f.name for f in folders), src.statuses(folders), strict=True))
        assert isinstance(again.pop("Sent"), FolderRefused)  # that folder alone
        assert {name: st.messages for name, st in again.items() if isinstance(st, FolderStatus)} == {
            name: n for name, n in counts.items() if name != "Sent"
        }
        inbox = _inbox(src)  # every answer was read: the connection is still in step
        assert len(src.list_messages(inbox, src.status(inbox), set(), model.Filters()).messages) == 2
        with pytest.raises(FolderRefused, match="the source refused STATUS: "):
            src.status(next(f for f in folders if f.name == "Sent"))
    finally:
        src.close()


@pytest.mark.parametrize("kind", ["dovecot", "pymap"])
def test_names_with_brackets_are_listed_and_their_status_read(
    kind: str, dovecot_factory: Callable[..., Any], pymap_factory: Callable[..., Any]
) -> None:
    """Dovecot sends ``Invoices[2019`` unquoted in LIST, LIST-STATUS and STATUS answers alike."""
    server = dovecot_factory(name="src") if kind == "dovecot" else pymap_factory(name="src")
    counts = {"INBOX": 1, "Invoices[2019": 2, "Br]ace": 1, 'Q"uote': 0}
    mb.seed(
        server,
        "alice",
        {name: [mb.Msg(message(10 * k + i)) for i in range(n)] for k, (name, n) in enumerate(counts.items())},
    )
    src = _open(server)
    try:
        folders = [f for f in src.list_folders() if f.name in counts]
        assert sorted(f.name for f in folders) == sorted(counts)
        cached = src.statuses(folders)  # from LIST-STATUS where the server has it
        src.list_folders()
        src._status_cache.clear()  # as on a server without LIST-STATUS: one STATUS each, sent together
        asked = src.statuses(folders)
        for got in (cached, asked):
            assert {f.name: st.messages for f, st in zip(folders, got, strict=True)} == counts  # type: ignore[union-attr]
        invoices = next(f for f in folders if f.name == "Invoices[2019")
        listing = src.list_messages(invoices, src.status(invoices), set(), model.Filters())
        assert len(src.fetch(invoices, [m.id for m in listing.messages])) == 2
    finally:
        src.close()
