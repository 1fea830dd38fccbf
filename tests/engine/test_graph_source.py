"""The Microsoft 365 source against the local Graph fake: folders, markers, listing, MIME, throttling."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailmig_tui.engine import model
from mailmig_tui.engine.account import Cancelled
from mailmig_tui.engine.folders import RemoteFolder, plan_folders
from mailmig_tui.engine.sources import graph
from mailmig_tui.engine.sources.base import SKIP_TOO_NEW, SKIP_TOO_OLD, fingerprint_of
from mailmig_tui.engine.sources.graph import GraphSource
from mailmig_tui.engine.sources.graph_auth import GraphError
from tests.fakes.microsoft import FakeMailbox, FakeMicrosoft, m365_source, start_trusted

pytestmark = pytest.mark.timeout(60)

ALICE = "alice@contoso.example"


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMicrosoft]:
    server = start_trusted(tmp_path, monkeypatch)
    yield server
    server.stop()


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait the source asks for, on a virtual clock that the waits advance (no real sleep)."""
    seen: list[float] = []
    offset = [0.0]

    def pause(cancel: threading.Event | None, seconds: float) -> bool:
        seen.append(round(seconds, 3))
        offset[0] += seconds
        return cancel is not None and cancel.is_set()

    monkeypatch.setattr(graph, "pause", pause)
    monkeypatch.setattr(graph, "clock", lambda: time.monotonic() + offset[0])
    return seen


def when(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)


def mime(n: int, *, message_id: bool = True, body: bytes = b"") -> bytes:
    head = [b"From: s%d@example.org" % n, b"Subject: message %d" % n]
    if message_id:
        head.append(b"Message-ID: <m%d@example.org>" % n)
    return b"\r\n".join(head) + b"\r\n\r\n" + (body or b"body %d\r\n" % n)


def source(fake: FakeMicrosoft, account: str = ALICE, **kw: object) -> GraphSource:
    src = m365_source(fake)
    return GraphSource("m365", src, model.User(account, "alice"), **kw)  # type: ignore[arg-type]


def folder(src: GraphSource, name: str) -> RemoteFolder:
    return next(f for f in src.list_folders() if f.name == name)


# --------------------------------------------------------------------------------------------
# Folders.


def test_folders_recursive_hidden_included_search_folders_excluded(fake: FakeMicrosoft) -> None:
    box = fake.mailbox(ALICE, locale="de")
    projects = box.add_folder("inbox", "Projekte")
    box.add_folder(projects, "2019", hidden=True)
    box.add_folder("inbox", "Ungelesen (Suche)", search=True)
    clients = box.add_folder("", "Kunden")
    box.add_folder(clients, "ACME/EMEA")
    box.add_folder("", "Versteckt", hidden=True)

    folders = {f.name: f for f in source(fake).list_folders()}

    assert set(folders) == {
        "INBOX",
        "INBOX/Projekte",
        "INBOX/Projekte/2019",
        "Gesendete Elemente",
        "Entwürfe",
        "Gelöschte Elemente",
        "Junk-E-Mail",
        "Archiv",
        "Postausgang",
        "Kunden",
        "Kunden/ACME_EMEA",
        "Versteckt",
    }
    assert {name: f.special_use for name, f in folders.items() if f.special_use} == {
        "Gesendete Elemente": "\\Sent",
        "Entwürfe": "\\Drafts",
        "Gelöschte Elemente": "\\Trash",
        "Junk-E-Mail": "\\Junk",
        "Archiv": "\\Archive",
    }
    assert all(f.delimiter == "/" for f in folders.values())
    listings = fake.requests(r"/(mailFolders|childFolders)\?")
    assert listings and all(r.query.get("includeHiddenFolders") == ["true"] for r in listings)


def test_well_known_folders_map_to_the_destination_special_use_folders(fake: FakeMicrosoft) -> None:
    box = fake.mailbox(ALICE, locale="de")
    box.add_folder("sentitems", "2019")
    dest = [
        RemoteFolder("INBOX", "/"),
        RemoteFolder("Sent", "/", frozenset({"\\Sent"})),
        RemoteFolder("Drafts", "/", frozenset({"\\Drafts"})),
        RemoteFolder("Trash", "/", frozenset({"\\Trash"})),
        RemoteFolder("Junk", "/", frozenset({"\\Junk"})),
        RemoteFolder("Archive", "/", frozenset({"\\Archive"})),
    ]
    src = source(fake)

    plans = plan_folders(
        src.list_folders(), source_prefix=src.prefix, dest_folders=dest, dest_delimiter="/", skip_junk=True
    )

    mapping = {p.source.name: (p.dest_name, p.skip_reason) for p in plans}
    assert mapping["INBOX"] == ("INBOX", None)
    assert mapping["Gesendete Elemente"] == ("Sent", None)
    assert mapping["Gesendete Elemente/2019"] == ("Sent/2019", None)
    assert mapping["Entwürfe"] == ("Drafts", None)
    assert mapping["Gelöschte Elemente"] == ("Trash", None)
    assert mapping["Archiv"] == ("Archive", None)
    assert mapping["Junk-E-Mail"] == ("Junk", "Junk skipped by filter")


def test_mailbox_without_archive(fake: FakeMicrosoft) -> None:
    fake.mailbox(ALICE, archive=False)

    names = [f.name for f in source(fake).list_folders()]

    assert "Archive" not in names and "INBOX" in names


# --------------------------------------------------------------------------------------------
# Status markers.


def test_marker_changes_with_new_and_removed_mail_and_validity_with_a_recreated_folder(fake: FakeMicrosoft) -> None:
    box = fake.mailbox(ALICE)
    box.add_folder("", "Work")
    old = box.add("Work", mime(1), when(2020, 1, 1, 0, 0, 0))
    src = source(fake)
    first = src.status(folder(src, "Work"))

    assert src.status(folder(src, "Work")) == first
    box.add("Work", mime(2), when(2020, 2, 1, 0, 0, 0))
    second = src.status(folder(src, "Work"))
    assert second.marker != first.marker and second.validity == first.validity and second.messages == 2
    box.remove(old)
    assert src.status(folder(src, "Work")).marker != second.marker
    fake.mailbox(ALICE).root.children = [c for c in box.root.children if c.name != "Work"]
    box.add_folder("", "Work")
    assert src.status(folder(src, "Work")).validity != first.validity


def test_status_costs_one_request_per_folder(fake: FakeMicrosoft) -> None:
    box = fake.mailbox(ALICE)
    box.add("inbox", mime(1), when(2020, 1, 1, 0, 0, 0))
    src = source(fake)
    inbox = folder(src, "INBOX")
    count = len(fake.log)

    src.status(inbox)

    assert len(fake.log) == count + 1
    assert fake.log[-1].query["$top"] == ["1"] and fake.log[-1].query["$orderby"] == ["receivedDateTime desc"]


# --------------------------------------------------------------------------------------------
# Listing.


def test_listing_pages_by_next_link_with_flags_dates_sizes_and_ids(
    fake: FakeMicrosoft, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph, "PAGE_SIZE", 3)
    box = fake.mailbox(ALICE)
    msgs = [
        box.add("inbox", mime(i), when(2021, 3, 1 + i, 8, 0, i), is_read=i % 2 == 0, flagged=i % 3 == 0)
        for i in range(8)
    ]
    draft = box.add("drafts", mime(99, message_id=False), when(2021, 4, 1, 0, 0, 0), draft=True)
    src = source(fake)
    inbox = folder(src, "INBOX")

    listing = src.list_messages(inbox, src.status(inbox), {msgs[2].id}, model.Filters())

    assert [m.id for m in listing.messages] == [m.id for i, m in enumerate(msgs) if i != 2]
    by_id = {m.id: m for m in listing.messages}
    for i, msg in enumerate(msgs):
        if i == 2:
            continue
        meta = by_id[msg.id]
        expected = tuple(f for f, on in (("\\Seen", i % 2 == 0), ("\\Flagged", i % 3 == 0)) if on)
        assert meta.flags == expected
        assert meta.internaldate == msg.received
        assert meta.size == msg.size_property
        assert meta.message_id == f"<m{i}@example.org>"
    pages = fake.requests(r"/messages\?.*\$expand")
    assert len(pages) == 3
    assert all(r.query.get("$skip") for r in pages[1:]), "later pages come from @odata.nextLink as given"
    assert all("Prefer" not in r.path for r in pages)
    drafts = src.list_messages(folder(src, "Drafts"), src.status(folder(src, "Drafts")), set(), model.Filters())
    (meta,) = drafts.messages
    assert meta.id == draft.id and meta.flags == ("\\Draft",) and meta.message_id is None


def test_date_filters_are_server_side_in_the_admins_time_zone(fake: FakeMicrosoft) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    box = fake.mailbox(ALICE)
    cases = {
        "day before skip_before": when(2014, 12, 31, 22, 59, 59),  # 23:59:59 in Berlin
        "first second of skip_before": when(2014, 12, 31, 23, 0, 0),  # 00:00:00 in Berlin
        "last second of skip_after": when(2016, 6, 30, 21, 59, 59),  # 23:59:59 CEST
        "day after skip_after": when(2016, 6, 30, 22, 0, 0),  # 00:00:00 CEST
    }
    ids = {name: box.add("inbox", mime(i), at).id for i, (name, at) in enumerate(cases.items())}
    src = source(fake, tz=berlin)
    inbox = folder(src, "INBOX")
    filters = model.Filters(skip_before=dt.date(2015, 1, 1), skip_after=dt.date(2016, 6, 30))

    listing = src.list_messages(inbox, src.status(inbox), set(), filters)

    assert {m.id for m in listing.messages} == {ids["first second of skip_before"], ids["last second of skip_after"]}
    assert listing.skipped == {SKIP_TOO_OLD: 1, SKIP_TOO_NEW: 1}
    (request,) = fake.requests(r"/messages\?.*\$expand")
    assert request.query["$filter"] == [
        "receivedDateTime ge 2014-12-31T23:00:00Z and receivedDateTime lt 2016-06-30T22:00:00Z"
    ]


def test_fingerprint_of_fetched_mime_uses_its_real_size(fake: FakeMicrosoft) -> None:
    box = fake.mailbox(ALICE)
    msg = box.add("inbox", mime(5), when(2020, 1, 1, 0, 0, 0))
    src = source(fake)
    inbox = folder(src, "INBOX")
    (meta,) = src.list_messages(inbox, src.status(inbox), set(), model.Filters()).messages
    (fetched,) = src.fetch(inbox, [meta.id])

    assert meta.size > len(msg.raw), "PR_MESSAGE_SIZE is an estimate above the MIME size"
    assert fingerprint_of(meta, fetched.raw) == fingerprint_of(
        graph.MessageMeta(meta.id, len(msg.raw), meta.internaldate, (), meta.message_id)
    )


# --------------------------------------------------------------------------------------------
# Fetching and throttling.


def test_fetch_returns_exact_mime_with_at_most_four_requests_in_flight(fake: FakeMicrosoft) -> None:
    fake.value_delay = 0.05
    box = fake.mailbox(ALICE)
    msgs = [box.add("inbox", mime(i, body=b"x" * (100 * i) + b"\r\n"), when(2020, 1, 1, 0, 0, i)) for i in range(16)]
    src = source(fake)
    inbox = folder(src, "INBOX")

    fetched = src.fetch(inbox, [m.id for m in msgs] + ["AAkGone="])
    src.close()

    assert [f.raw for f in fetched] == [m.raw for m in msgs] + [None]
    assert fake.peak_inflight[ALICE] == graph.MAX_IN_FLIGHT


def test_429_waits_for_retry_after_and_503_backs_off_with_jitter(fake: FakeMicrosoft, waits: list[float]) -> None:
    box = fake.mailbox(ALICE)
    msg = box.add("inbox", mime(1), when(2020, 1, 1, 0, 0, 0))
    fake.throttle(r"/\$value", retry_after=7, count=1)
    fake.throttle(r"/\$value", retry_after=None, count=1, status=503)
    logged: list[tuple[str, str]] = []
    src = source(fake)
    src.bind(cancel=threading.Event(), log=lambda text, severity="info": logged.append((severity, text)))

    (fetched,) = src.fetch(folder(src, "INBOX"), [msg.id])

    assert fetched.raw == msg.raw
    assert waits[0] == 7.0
    assert 0.5 * graph.BACKOFF_BASE_S <= waits[1] <= graph.BACKOFF_BASE_S * 2
    assert [severity for severity, _ in logged] == ["warning", "warning"]
    assert "429 ApplicationThrottled: waiting 7.0 s (Retry-After)" in logged[0][1]
    assert "503" in logged[1][1] and "(backoff)" in logged[1][1]


def test_endless_throttling_gives_up_as_temporary_without_a_hot_loop(fake: FakeMicrosoft, waits: list[float]) -> None:
    fake.mailbox(ALICE)
    fake.throttle(r"/mailFolders", retry_after=None, count=None, status=503)
    src = source(fake)

    with pytest.raises(GraphError, match="keeps answering 503") as info:
        src.list_folders()

    assert info.value.transient, "the runner retries the account later"
    assert len(fake.requests("/mailFolders")) == graph.MAX_ATTEMPTS
    assert len(waits) == graph.MAX_ATTEMPTS - 1 and all(w > 0 for w in waits)
    assert waits == sorted(waits) or max(waits) <= graph.BACKOFF_CAP_S


def test_retry_after_too_long_is_left_to_the_runner(fake: FakeMicrosoft, waits: list[float]) -> None:
    fake.mailbox(ALICE)
    fake.throttle(r"/mailFolders", retry_after=3600, count=1)

    with pytest.raises(GraphError) as info:
        source(fake).list_folders()

    assert info.value.transient and waits == []


def test_cancel_ends_a_throttling_wait_at_once(fake: FakeMicrosoft) -> None:
    fake.mailbox(ALICE)
    fake.throttle(r"/mailFolders", retry_after=60, count=1)
    cancel = threading.Event()
    src = source(fake)
    src.bind(cancel=cancel, log=lambda *a, **k: None)
    threading.Timer(0.2, cancel.set).start()
    t0 = time.monotonic()

    with pytest.raises(Cancelled):
        src.list_folders()

    assert time.monotonic() - t0 < 3


def test_expired_access_token_is_renewed_once(fake: FakeMicrosoft) -> None:
    fake.mailbox(ALICE)
    src = source(fake)
    src.list_folders()
    fake.expire_access_tokens()

    assert folder(src, "INBOX")
    assert [r.grant_type for r in fake.requests("/token")] == ["client_credentials", "client_credentials"]


def test_mailbox_the_app_may_not_read(fake: FakeMicrosoft) -> None:
    fake.mailbox(ALICE)
    fake.deny(ALICE)

    with pytest.raises(GraphError) as info:
        source(fake).list_folders()

    assert not info.value.transient and info.value.kind == "auth"
    assert "may not be read (403 ErrorAccessDenied" in str(info.value)
    assert "Mail.Read application permission" in str(info.value)


def test_account_without_a_mailbox(fake: FakeMicrosoft) -> None:
    with pytest.raises(GraphError, match="nobody@contoso.example has no Exchange Online mailbox"):
        source(fake, "nobody@contoso.example").list_folders()


def test_check_mailbox_reads_the_inbox_count(fake: FakeMicrosoft) -> None:
    box: FakeMailbox = fake.mailbox(ALICE)
    for i in range(3):
        box.add("inbox", mime(i), when(2020, 1, 1, 0, 0, i))
    fake.mailbox("bob@contoso.example")
    fake.deny("bob@contoso.example")
    task = model.Task("m365", m365_source(fake), users=[])

    assert graph.check_mailbox(task, model.User(ALICE, "alice")) == (
        True,
        "Microsoft Graph OK, the inbox holds 3 message(s)",
    )
    ok, detail = graph.check_mailbox(task, model.User("bob@contoso.example", "bob"))
    assert not ok and "may not be read" in detail


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    response = graph.requests.Response()
    response.headers["Retry-After"] = "12"
    assert graph.retry_after(response) == 12.0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    response.headers["Retry-After"] = later.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 25 < (graph.retry_after(response) or 0) <= 30
    response.headers["Retry-After"] = "soon"
    assert graph.retry_after(response) is None
    assert all(0.5 <= graph.backoff(0) <= 1.0 for _ in range(20))
    assert all(graph.backoff(10) <= graph.BACKOFF_CAP_S for _ in range(20))
