"""Google Workspace source end to end: the fake Gmail (real google-api-python-client and google-auth over
http) migrated by the real engine into a real Dovecot. Mailboxes are compared whole: octets, flags,
INTERNALDATE, folder by folder."""

from __future__ import annotations

import datetime as dt
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailmig_tui import cli
from mailmig_tui.engine import model, runner, store, verify
from mailmig_tui.engine.account import SKIP_VANISHED, Limits
from mailmig_tui.engine.events import Event, FolderProgress
from mailmig_tui.engine.sources import gmail, gmail_api
from mailmig_tui.engine.sources.base import SKIP_EXISTING, SKIP_TOO_BIG, SKIP_TOO_NEW, SKIP_TOO_OLD
from mailmig_tui.engine.sources.gmail import SKIP_CHAT, keyword_of
from mailmig_tui.engine.sources.gmail_auth import SCOPE
from mailmig_tui.engine.state import StateDB
from tests.fakes.google import FakeGoogle, FakeKey, FakeMailbox, google_error, make_key
from tests.integration.conftest import Pair, contents, message, when
from tests.servers import mailbox as mb
from tests.servers.dovecot import DovecotServer

pytestmark = pytest.mark.timeout(90)
DOMAIN = "acme.example"
Item = tuple[bytes, frozenset[str], dt.datetime]


@pytest.fixture(scope="module")
def fake_key() -> FakeKey:
    return make_key()


@dataclass
class Workspace:
    """A fake Google Workspace, a destination Dovecot and the key file joining them."""

    google: FakeGoogle
    dst: DovecotServer
    key_file: Path
    waits: list[float] = field(default_factory=list)

    def box(self, user: str) -> FakeMailbox:
        return self.google.mailbox(f"{user}@{DOMAIN}")

    def task(self, users: Sequence[str] = ("alice",), *, strategy: str = "copy", save: bool = True) -> model.Task:
        source = model.Source(
            type="google",
            key_file=str(self.key_file),
            label_strategy=strategy,
            quota_units_per_minute=10**9,  # pacing is tested on its own; here it would only slow the tests
            api_endpoint=self.google.root,
        )
        task = model.Task(name="acme", source=source, users=[model.User(f"{u}@{DOMAIN}", u) for u in users])
        if save:
            store.save_task(task, old_name="acme" if store.task_exists("acme") else None)
        return task

    def settings(self) -> model.Settings:
        return Pair(None, self.dst).settings()

    def run(self, task: model.Task, **kw: object) -> runner.RunResult:
        return runner.run_task(task, self.settings(), **kw)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return store.paths().log_file("acme").read_text()


@pytest.fixture
def ws(
    dovecot_factory: Callable[..., DovecotServer], fake_key: FakeKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    with FakeGoogle(fake_key) as google:
        key_file = fake_key.write(tmp_path / "acme-project-key.json", google.token_uri)
        workspace = Workspace(google, dovecot_factory(name="dst", autocreate=True), key_file)

        def pause(cancel: threading.Event, seconds: float) -> bool:
            workspace.waits.append(round(seconds, 3))
            return cancel.is_set()

        monkeypatch.setattr(gmail_api, "pause", pause)
        yield workspace


def dest(ws: Workspace, user: str = "alice") -> dict[str, list[Item]]:
    """The destination's non-empty folders, flags as sets (\\Recent never)."""
    return {
        name: [(raw, frozenset(flags), date) for raw, flags, date in items]
        for name, items in contents(ws.dst, user).items()
        if items
    }


# --------------------------------------------------------------------------------------------
# A mailbox with every kind of label.


@dataclass
class Seeded:
    raw: dict[str, bytes] = field(default_factory=dict)
    date: dict[str, dt.datetime] = field(default_factory=dict)

    def item(self, key: str, *flags: str) -> Item:
        return (self.raw[key], frozenset(flags), self.date[key])


def seed_labels(box: FakeMailbox, bulk: int = 0) -> Seeded:
    s = Seeded()

    def add(key: str, labels: Sequence[str], date: dt.datetime) -> None:
        s.raw[key] = message(len(s.raw) + 1, subject=key)
        s.date[key] = date
        box.add(s.raw[key], labels, date)

    add("inbox", ["INBOX"], when(2019, 1, 1, 8, 0, 0))
    add("inbox-work-starred-unread", ["INBOX", "Work", "STARRED", "UNREAD"], when(2019, 2, 2, 9, 30, 15))
    add("nested-important", ["Work/Projects/2024", "IMPORTANT"], when(2024, 3, 3, 10, 0, 0))
    add("sent", ["SENT"], when(2020, 4, 4, 11, 0, 0))
    add("draft", ["DRAFT"], when(2023, 5, 5, 12, 0, 0))
    add("archived-promotion", ["CATEGORY_PROMOTIONS"], when(2008, 6, 6, 13, 0, 0))
    add("spam-unread", ["SPAM", "UNREAD"], when(2022, 7, 7, 14, 0, 0))
    add("trash-work", ["TRASH", "Work"], when(2021, 8, 8, 15, 0, 0))
    add("umlaut", ["Ärger & Co"], when(2017, 9, 9, 16, 0, 0))
    add("inbox-umlaut", ["INBOX", "Ärger & Co"], when(2017, 9, 10, 16, 0, 0))
    add("archive-label", ["Archive"], when(2009, 10, 10, 17, 0, 0))
    add("alpha-beta", ["Beta", "Alpha"], when(2018, 11, 11, 18, 0, 0))
    add("chat", ["CHAT"], when(2012, 12, 12, 19, 0, 0))
    for i in range(bulk):
        add(f"bulk-{i}", ["Bulk"], when(2016, 1, 1, 0, 0, 0) + dt.timedelta(hours=i))
    return s


def test_copy_strategy_puts_each_message_in_every_labels_folder(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    s = seed_labels(ws.box("alice"), bulk=70)
    monkeypatch.setattr(gmail_api, "LIST_PAGE", 20)  # force paging

    result = ws.run(ws.task())

    (acct,) = result.accounts
    assert acct.status == "complete", acct.error
    seen = "\\Seen"
    expected = {
        "INBOX": [
            s.item("inbox-umlaut", seen),
            s.item("inbox", seen),
            s.item("inbox-work-starred-unread", "\\Flagged"),
        ],
        "Work": [s.item("inbox-work-starred-unread", "\\Flagged")],
        "Work/Projects/2024": [s.item("nested-important", seen, "$Important")],
        "Sent": [s.item("sent", seen)],
        "Drafts": [s.item("draft", seen, "\\Draft")],
        "Junk": [s.item("spam-unread")],
        "Trash": [s.item("trash-work", seen)],  # trashed mail is only in Trash, whatever its labels
        "Ärger & Co": [s.item("umlaut", seen), s.item("inbox-umlaut", seen)],
        "Archive": [s.item("archived-promotion", seen), s.item("archive-label", seen)],
        "Alpha": [s.item("alpha-beta", seen)],
        "Beta": [s.item("alpha-beta", seen)],
        "Bulk": [s.item(f"bulk-{i}", seen) for i in range(70)],
    }
    assert dest(ws) == expected
    assert acct.copied == sum(len(v) for v in expected.values())
    assert acct.skipped == {SKIP_CHAT: 1}
    folders = {f.name: f for f in mb.list_folders(ws.dst, "alice")}
    assert folders["Work/Projects"].subscribed and folders["Work/Projects/2024"].subscribed
    assert not {"Important", "Starred", "Unread", "CATEGORY_PROMOTIONS", "Chat"} & set(folders)

    log = ws.google.log
    assert {(r.method, r.path) for r in log if r.method != "GET"} <= {("POST", "/token"), ("POST", "/batch")}
    batches = [r.parts for r in log if r.path == "/batch"]
    # one get per message (the chat aside): listing costs no get, and a message that a second
    # folder lists too is served from the recent downloads
    assert max(batches) <= gmail_api.BATCH_MAX and sum(batches) == len(ws.box("alice").messages) - 1
    assert any("pageToken" in r.query for r in log if r.path.endswith("/messages"))
    spam_trash = {tuple(r.query.get("labelIds", [])) for r in log if r.query.get("includeSpamTrash") == ["true"]}
    assert spam_trash == {("SPAM",), ("TRASH",)}


def test_primary_strategy_puts_each_message_in_one_folder_with_its_other_labels_as_keywords(ws: Workspace) -> None:
    s = seed_labels(ws.box("alice"))

    result = ws.run(ws.task(strategy="primary"))

    (acct,) = result.accounts
    assert acct.status == "complete", acct.error
    seen = "\\Seen"
    assert dest(ws) == {
        "INBOX": [  # in order of internalDate
            s.item("inbox-umlaut", seen, keyword_of("Ärger & Co")),
            s.item("inbox", seen),
            s.item("inbox-work-starred-unread", "\\Flagged", "Work"),
        ],
        "Work/Projects/2024": [s.item("nested-important", seen, "$Important")],
        "Sent": [s.item("sent", seen)],
        "Drafts": [s.item("draft", seen, "\\Draft")],
        "Junk": [s.item("spam-unread")],
        "Trash": [s.item("trash-work", seen, "Work")],
        "Ärger & Co": [s.item("umlaut", seen)],
        "Archive": [s.item("archived-promotion", seen), s.item("archive-label", seen)],
        "Alpha": [s.item("alpha-beta", seen, "Beta")],
    }
    assert keyword_of("Ärger & Co") == "&AMQ-rger_&-_Co"
    assert acct.copied == 12
    names = {f.name for f in mb.list_folders(ws.dst, "alice")}
    assert {"Work", "Beta"} <= names  # every label still has its folder


def test_primary_strategy_picks_a_folder_the_mailbox_filter_keeps(ws: Workspace) -> None:
    s = seed_labels(ws.box("alice"))
    task = ws.task(strategy="primary", save=False)
    mbf = task.filters.mailboxes
    mbf.enabled, mbf.policy, mbf.keywords = True, "migrate", ["Beta", "Work"]
    store.save_task(task, old_name="acme")

    result = ws.run(task)

    assert result.accounts[0].status == "complete", result.accounts[0].error
    assert dest(ws) == {
        "Beta": [s.item("alpha-beta", "\\Seen", "Alpha")],  # Alpha is filtered out: Beta holds it
        "Work": [s.item("inbox-work-starred-unread", "\\Flagged")],  # INBOX is filtered out: Work holds it
        "Work/Projects/2024": [s.item("nested-important", "\\Seen", "$Important")],  # "Work" includes its children
    }


def test_rerun_copies_nothing_then_only_new_mail(ws: Workspace) -> None:
    box = ws.box("alice")
    seed_labels(box)
    task = ws.task()
    ws.run(task)
    first = dest(ws)
    gets_before = len([r for r in ws.google.log if r.in_batch])

    again = ws.run(task)

    assert again.accounts[0].status == "complete" and again.accounts[0].copied == 0
    assert all(r.unchanged for r in again.reports[f"alice@{DOMAIN}"] if not r.skip_reason)
    assert len([r for r in ws.google.log if r.in_batch]) == gets_before  # no message fetched, not even listed
    assert dest(ws) == first

    new = box.add(message(500), ["INBOX", "Work"], when(2025, 1, 1, 0, 0, 0))
    seen = len(ws.google.log)
    third = ws.run(task)

    assert third.accounts[0].copied == 2
    changed = sorted(r.source for r in third.reports[f"alice@{DOMAIN}"] if not r.unchanged and not r.skip_reason)
    assert changed == ["INBOX", "Work"]
    assert [r.path.rsplit("/", 1)[1] for r in ws.google.log[seen:] if r.in_batch] == [new]  # fetched once
    now = dest(ws)
    assert now["INBOX"][:-1] == first["INBOX"] and now["INBOX"][-1][0] == message(500)
    assert now["Work"][-1][0] == message(500)


def batches_of_gets(ws: Workspace) -> list[list[str]]:
    """The message ids of each batch, in order (the fake logs a batch's parts just before it)."""
    out: list[list[str]] = []
    parts: list[str] = []
    for r in ws.google.log:
        if r.in_batch and "/messages/" in r.path:
            parts.append(r.path.rsplit("/", 1)[1])
        elif r.path == "/batch":
            out.append(parts)
            parts = []
    return out


def test_a_first_run_gets_each_message_once_in_batches_bounded_by_its_size_class(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gmail, "RAW_CACHE_BYTES", 0)  # as when a large mailbox has long pushed a message out
    box = ws.box("alice")
    small = {box.add(message(i), ["INBOX"], when(2020, 1, 1, 0, 0, 0) + dt.timedelta(hours=i)): i for i in range(90)}
    big_raw = message(900, body=b"z" * 6_000_000 + b"\r\n")  # over 5 MB: its class reserves 10 MB
    big = box.add(big_raw, ["INBOX", "Work"], when(2021, 1, 1, 0, 0, 0))
    events: list[Event] = []

    result = ws.run(ws.task(), sink=events.append)

    (acct,) = result.accounts
    assert acct.status == "complete", acct.error
    there = dest(ws)
    assert [raw for raw, _, _ in there["INBOX"]] == [message(i) for i in range(90)] + [big_raw]  # oldest first
    assert [raw for raw, _, _ in there["Work"]] == [big_raw]
    batches = batches_of_gets(ws)
    gets = [mid for batch in batches for mid in batch]
    assert sorted(gets) == sorted([*small, big, big]), "one get per message and folder, none while listing"
    assert all(r.query["format"] == ["raw"] for r in ws.google.log if r.in_batch)
    assert [big] in batches, "a message of the 10 MB class goes alone (batches are 4 MB)"
    assert all(len(b) <= 4 * 1024 * 1024 // (100 * 1024) for b in batches)  # small ones reserve 100 KB each
    assert any("larger:" in r.query.get("q", [""])[0] for r in ws.google.log)
    assert acct.bytes == sum(len(r) for r in [*(message(i) for i in range(90)), big_raw, big_raw])
    last = [e for e in events if isinstance(e, FolderProgress)][-1]
    assert last.bytes_done == last.bytes_total == acct.bytes  # the size-class bounds gave way to exact sizes


def test_a_dry_run_lists_without_fetching_and_says_its_sizes_are_bounds(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    box = ws.box("alice")
    for i in range(30):
        box.add(message(i), ["INBOX"], when(2020, 1, 1, 0, 0, 0) + dt.timedelta(hours=i))
    ws.task()
    ws.settings()

    assert cli.main(["run", "acme", "--dry-run"]) == 0

    out = capsys.readouterr().out
    inbox = next(line for line in out.splitlines() if "INBOX" in line)
    assert "copy 30 (at most 2.9 MB)" in inbox, inbox  # 30 × the 100 KB class bound
    assert not [r for r in ws.google.log if r.in_batch], "a dry run makes no per-message call"
    assert contents(ws.dst, "alice").get("INBOX", []) == []


@pytest.fixture
def new_york(timezone_named: Callable[[str], None]) -> None:
    timezone_named("America/New_York")


def test_filters_keep_the_boundary_days_in_the_admins_time_zone(ws: Workspace, new_york: None) -> None:
    box = ws.box("alice")
    ny = dt.timezone(dt.timedelta(hours=-5))
    edt = dt.timezone(dt.timedelta(hours=-4))
    dated = {
        1: dt.datetime(2014, 12, 31, 23, 59, 59, tzinfo=ny),  # day before skip_before: skipped
        2: dt.datetime(2014, 12, 31, 23, 59, 30, tzinfo=ny),  # inside the server-side margin: checked exactly, skipped
        3: dt.datetime(2015, 1, 1, 0, 0, 0, tzinfo=ny),  # skip_before day, local midnight: kept
        4: dt.datetime(2016, 6, 30, 23, 59, 59, tzinfo=edt),  # skip_after day, last second: kept
        5: dt.datetime(2016, 7, 1, 0, 0, 0, tzinfo=edt),  # day after skip_after: skipped
        6: dt.datetime(2016, 7, 1, 0, 0, 30, tzinfo=edt),  # inside the margin: skipped
    }
    for n, date in dated.items():
        box.add(message(n), ["INBOX"], date)
    limit = message(7, body=b"x" * (10 * 1024 + 1 - len(message(7, body=b"x"))))
    assert len(limit) == 10 * 1024
    box.add(limit, ["INBOX"], when(2016, 1, 1, 0, 0, 0))  # exactly the limit: kept
    box.add(message(8, body=b"y" * 10 * 1024), ["INBOX"], when(2016, 1, 1, 0, 0, 0))  # over the limit: skipped
    box.add(message(9), ["TRASH"], when(2016, 1, 1, 0, 0, 0))
    box.add(message(10), ["SPAM"], when(2016, 1, 1, 0, 0, 0))
    box.add(message(11), ["Old"], when(2016, 1, 1, 0, 0, 0))
    box.add(message(12), ["Old/Keep"], when(2016, 1, 1, 0, 0, 0))
    box.add(message(13), ["Older"], when(2016, 1, 1, 0, 0, 0))
    task = ws.task(save=False)
    f = task.filters
    f.skip_before, f.skip_after = dt.date(2015, 1, 1), dt.date(2016, 6, 30)
    f.skip_trash = f.skip_junk = True
    f.max_size_kb = 10
    f.mailboxes.enabled, f.mailboxes.keywords, f.mailboxes.exceptions = True, ["Old"], ["Old/Keep"]
    store.save_task(task, old_name="acme")

    result = ws.run(task)

    acct = result.accounts[0]
    assert acct.status == "complete", acct.error
    assert {k: [raw for raw, _, _ in v] for k, v in dest(ws).items()} == {
        "INBOX": [message(3), limit, message(4)],
        "Old/Keep": [message(12)],
        "Older": [message(13)],
    }
    assert dest(ws)["INBOX"][0][2] == dated[3]
    assert acct.skipped == {SKIP_TOO_OLD: 2, SKIP_TOO_NEW: 2, SKIP_TOO_BIG: 1}
    assert acct.skipped_folders == {
        "Trash skipped by filter": 1,
        "Junk skipped by filter": 1,
        'mailbox filter: matches "Old"': 1,
    }
    queries = {r.query["q"][0] for r in ws.google.log if "q" in r.query}
    before = int(dt.datetime(2015, 1, 1, 5, tzinfo=dt.UTC).timestamp())
    after = int(dt.datetime(2016, 7, 1, 4, tzinfo=dt.UTC).timestamp())
    sizes = {q for q in queries if q.startswith("larger:")}  # size classes, for the batches' byte bounds
    assert queries - sizes == {f"before:{before - 60}", f"after:{after + 60}"}
    assert sizes == {f"larger:{n}" for n in gmail.SIZE_STEPS[:-1]}
    assert not [r for r in ws.google.log if r.query.get("includeSpamTrash") == ["true"]]


def test_without_a_size_limit_the_date_boundaries_are_checked_exactly_after_the_one_get(
    ws: Workspace, new_york: None
) -> None:
    box = ws.box("alice")
    ny = dt.timezone(dt.timedelta(hours=-5))
    dated = {
        1: dt.datetime(2014, 12, 31, 23, 59, 30, tzinfo=ny),  # inside the server-side margin: fetched, skipped
        2: dt.datetime(2014, 12, 31, 23, 0, 0, tzinfo=ny),  # outside it: never fetched
        3: dt.datetime(2015, 1, 1, 0, 0, 0, tzinfo=ny),  # local midnight of skip_before: kept
        4: dt.datetime(2015, 1, 1, 0, 0, 30, tzinfo=ny),  # kept
        5: dt.datetime(2015, 1, 2, 0, 0, 10, tzinfo=ny),  # the day after skip_after, in the margin: fetched, skipped
    }
    ids = {n: box.add(message(n), ["INBOX"], date) for n, date in dated.items()}
    task = ws.task(save=False)
    task.filters.skip_before = task.filters.skip_after = dt.date(2015, 1, 1)
    store.save_task(task, old_name="acme")

    result = ws.run(task)

    acct = result.accounts[0]
    assert acct.status == "complete", acct.error
    assert [raw for raw, _, _ in dest(ws)["INBOX"]] == [message(3), message(4)]
    assert acct.skipped == {SKIP_TOO_OLD: 2, SKIP_TOO_NEW: 1}
    assert sorted(mid for batch in batches_of_gets(ws) for mid in batch) == sorted(ids[n] for n in (1, 3, 4, 5))
    again = ws.run(task)
    assert again.accounts[0].copied == 0 and again.accounts[0].status == "complete"


def test_mail_already_at_the_destination_is_recognised_when_downloaded_not_duplicated(ws: Workspace) -> None:
    box = ws.box("alice")
    raws = [message(i, message_id=i != 2) for i in range(8)]
    dates = [when(2020, 1, 1, 0, 0, i) for i in range(8)]
    for raw, date in zip(raws, dates, strict=True):
        box.add(raw, ["INBOX"], date)
    # a killed run had appended these three but not recorded them; the listing knows no size or
    # Message-ID yet, so they are recognised on the downloaded message (one without Message-ID by content)
    mb.seed(
        ws.dst,
        "alice",
        {"INBOX": [mb.Msg(raw, ("\\Seen",), date) for raw, date in zip(raws[:3], dates[:3], strict=True)]},
    )

    result = ws.run(ws.task())

    acct = result.accounts[0]
    assert acct.status == "complete", acct.error
    assert acct.copied == 5 and acct.skipped[SKIP_EXISTING] == 3
    assert [raw for raw, _, _ in dest(ws)["INBOX"]] == raws
    assert ws.run(ws.task()).accounts[0].copied == 0


def test_a_message_over_the_size_limit_is_downloaded_once_until_the_limit_changes(ws: Workspace) -> None:
    box = ws.box("alice")
    big_raw = message(50, body=b"b" * 40_000 + b"\r\n")
    big = box.add(big_raw, ["INBOX"], when(2020, 1, 1, 0, 0, 0))
    box.add(message(1), ["INBOX"], when(2020, 1, 2, 0, 0, 0))
    task = ws.task(save=False)
    task.filters.max_size_kb = 20
    store.save_task(task, old_name="acme")

    def gets() -> list[str]:
        return [mid for batch in batches_of_gets(ws) for mid in batch]

    first = ws.run(task)
    assert first.accounts[0].copied == 1 and first.accounts[0].skipped == {SKIP_TOO_BIG: 1}
    assert gets().count(big) == 1

    box.add(message(2), ["INBOX"], when(2020, 1, 3, 0, 0, 0))  # INBOX changes: planned again
    second = ws.run(task)
    assert second.accounts[0].copied == 1
    assert gets().count(big) == 1, "a message judged too big is not downloaded again"
    db = StateDB(store.paths().state_file("acme"))
    try:
        assert db.summaries()[f"alice@{DOMAIN}"].skipped == {SKIP_TOO_BIG: 1}
    finally:
        db.close()

    task.filters.max_size_kb = 100  # the limit is raised: what it skipped is judged again
    store.save_task(task, old_name="acme")
    third = ws.run(task)
    assert third.accounts[0].copied == 1 and third.accounts[0].skipped == {}
    assert [raw for raw, _, _ in dest(ws)["INBOX"]] == [message(1), message(2), big_raw]


def test_a_message_deleted_between_listing_and_copying_is_vanished_not_failed(ws: Workspace) -> None:
    box = ws.box("alice")
    ids = [box.add(message(i), ["INBOX"], when(2020, 1, 1, 0, 0, i)) for i in range(60)]
    gone: list[str] = []

    def sink(event: Event) -> None:
        if isinstance(event, FolderProgress) and not gone:  # listed already; the last one not fetched yet
            gone.append(ids[-1])
            box.delete(ids[-1])

    result = ws.run(ws.task(), sink=sink, limits=Limits(batch_messages=10, queue_depth=1))

    acct = result.accounts[0]
    assert acct.status == "complete", acct.error
    assert acct.copied == 59 and acct.failed == 0
    assert acct.skipped == {SKIP_VANISHED: 1}
    assert [raw for raw, _, _ in dest(ws)["INBOX"]] == [message(i) for i in range(59)]


def test_a_stopped_run_resumes_without_duplicates(ws: Workspace) -> None:
    box = ws.box("alice")
    raws = {i: message(i) for i in range(40)}
    for i, raw in raws.items():
        box.add(raw, ["INBOX", "Work"] if i % 4 == 0 else ["INBOX"], when(2020, 1, 1, 0, 0, 0) + dt.timedelta(hours=i))
    task = ws.task()
    cancel = threading.Event()

    def sink(event: Event) -> None:
        if isinstance(event, FolderProgress) and event.done >= 10:
            cancel.set()

    stopped = ws.run(task, cancel=cancel, sink=sink, limits=Limits(batch_messages=5, queue_depth=1))

    assert stopped.status == "stopped" and stopped.accounts[0].status == "stopped"
    partial = dest(ws)
    assert 10 <= len(partial.get("INBOX", [])) < 40

    resumed = ws.run(task, limits=Limits(batch_messages=5, queue_depth=1))

    assert resumed.accounts[0].status == "complete", resumed.accounts[0].error
    final = dest(ws)
    assert [raw for raw, _, _ in final["INBOX"]] == list(raws.values())
    assert [raw for raw, _, _ in final["Work"]] == [raws[i] for i in range(0, 40, 4)]
    assert stopped.accounts[0].copied + resumed.accounts[0].copied == 50


def test_a_stop_during_a_long_backoff_is_prompt(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gmail_api, "pause", lambda cancel, seconds: cancel.wait(seconds))  # real waits
    box = ws.box("alice")
    for i in range(5):
        box.add(message(i), ["INBOX"], when(2020, 1, 1 + i, 0, 0, 0))
    ws.google.fault("/messages/[0-9a-f]+\\?", 429, headers={"Retry-After": "600"}, count=5)
    task = ws.task()
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()

    started = time.monotonic()
    stopped = ws.run(task, cancel=cancel)

    assert stopped.accounts[0].status == "stopped" and time.monotonic() - started < 20
    assert "retrying in 600.0 s (as Retry-After asks" in ws.log_text()

    ws.google.fault("/messages/[0-9a-f]+\\?", 200, count=0)
    resumed = ws.run(task)
    assert resumed.accounts[0].copied == 5


def test_rate_limits_and_server_errors_are_survived_and_logged(ws: Workspace) -> None:
    box = ws.box("alice")
    raws = [message(i) for i in range(60)]
    ids = [box.add(raw, ["INBOX"], when(2020, 1, 1, 0, 0, 0) + dt.timedelta(hours=i)) for i, raw in enumerate(raws)]
    g = ws.google
    g.fault("/labels", 500)
    g.fault(r"/messages\?", 429, headers={"Retry-After": "7"})
    g.fault(f"/messages/({ids[5]}|{ids[50]})", 403, reason="userRateLimitExceeded", count=2)
    g.fault(
        f"/messages/{ids[20]}",
        429,
        body=google_error(429, "Too many concurrent requests for user", "rateLimitExceeded"),
    )
    g.fault(f"/messages/{ids[30]}", 503)
    g.fault("^/batch", 502)

    result = ws.run(ws.task())

    acct = result.accounts[0]
    assert acct.status == "complete", acct.error
    assert [raw for raw, _, _ in dest(ws)["INBOX"]] == raws
    assert acct.copied == 60 and acct.failed == 0
    assert 7.0 in ws.waits and len(ws.waits) == 5  # labels, list, whole batch, its failed parts, one part again
    log = ws.log_text()
    assert "labels.list: HTTP 500" in log
    assert "messages.list: HTTP 429 rateLimitExceeded; retrying in 7.0 s (as Retry-After asks" in log
    assert "HTTP 403 userRateLimitExceeded; retrying in" in log
    assert "HTTP 503" in log and "HTTP 502" in log and "(backoff, attempt 2 of" in log
    assert {r.status for r in g.log if r.fault} == {500, 429, 403, 503, 502}


def test_a_permanent_error_fails_the_account_with_the_reason(ws: Workspace) -> None:
    ws.box("alice").add(message(1))
    ws.google.fault("/labels", 400, body=google_error(400, "Mail service not enabled", "failedPrecondition"))

    result = ws.run(ws.task())

    acct = result.accounts[0]
    assert acct.status == "failed"
    assert acct.error == (
        f"Gmail is not enabled for alice@{DOMAIN} (no Gmail licence, or Gmail is off for the user's organisational unit)"
    )
    assert len(ws.google.requests("/labels")) == 1  # not retried, not by the runner either
    assert acct.error in ws.log_text()


def test_a_user_without_delegation_fails_alone_with_a_clear_reason(ws: Workspace, fake_key: FakeKey) -> None:
    for user in ("alice", "bob"):
        ws.box(user).add(message(1), ["INBOX"], when(2020, 1, 1, 0, 0, 0))
    ws.google.deny(f"bob@{DOMAIN}")  # carol has no Workspace account at all

    result = ws.run(ws.task(("alice", "bob", "carol")))

    status = {a.account.split("@")[0]: a for a in result.accounts}
    assert {k: a.status for k, a in status.items()} == {"alice": "complete", "bob": "failed", "carol": "failed"}
    assert [raw for raw, _, _ in dest(ws)["INBOX"]] == [message(1)]
    bob, carol = status["bob"].error, status["carol"].error
    assert "domain-wide delegation is not granted" in bob and fake_key.client_id in bob and SCOPE in bob
    assert "https://admin.google.com/ac/owl/domainwidedelegation?clientIdToAdd=" in bob
    assert f"carol@{DOMAIN} is not an active account" in carol
    assert result.status == "partial"
    log = ws.log_text()
    assert "domain-wide delegation is not granted" in log
    assert "PRIVATE KEY" not in log and fake_key.private_key_id not in log.replace(bob, "")


def test_the_key_is_kept_in_the_secrets_area_and_verify_proves_delegation(ws: Workspace, fake_key: FakeKey) -> None:
    for n in range(3):
        ws.box("alice").add(message(n))
    ws.box("bob").add(message(9))
    ws.google.deny(f"bob@{DOMAIN}")
    task = ws.task(("alice", "bob"))

    verdicts = {v.account.split("@")[0]: v for v in verify.verify_users(task, ws.settings())}

    assert verdicts["alice"].ok, verdicts["alice"].text()
    assert verdicts["alice"].source_detail == (
        f"delegation OK for client id {fake_key.client_id}, the mailbox holds 3 message(s)"
    )
    assert not verdicts["bob"].source_ok and "domain-wide delegation is not granted" in verdicts["bob"].source_detail
    assert [r.path for r in ws.google.log if r.path.startswith("/gmail")] == ["/gmail/v1/users/me/profile"]

    copy = store.paths().secrets_dir / "acme.google-key.json"
    assert copy.read_bytes() == ws.key_file.read_bytes()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    ws.key_file.unlink()  # the admin deletes the download: the task keeps working from its copy
    result = ws.run(ws.task(("alice",)))
    assert result.accounts[0].status == "complete" and result.accounts[0].copied == 3
