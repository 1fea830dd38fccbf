"""Microsoft 365 → real Dovecot: the real msal and requests against the local Entra/Graph fake.

Every test compares whole destination mailboxes (octets, flags, INTERNALDATE) with what the fake
tenant holds, and reads the fake's request log for what went over the wire.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailmig_tui import cli
from mailmig_tui.engine import model, runner, store, verify
from mailmig_tui.engine.account import Limits
from mailmig_tui.engine.events import Event, FolderProgress
from mailmig_tui.engine.sources import graph, graph_auth
from mailmig_tui.engine.sources.base import SKIP_EXISTING, SKIP_TOO_BIG, SKIP_TOO_NEW, SKIP_TOO_OLD
from tests.fakes.microsoft import (
    FakeMailbox,
    FakeMessage,
    FakeMicrosoft,
    m365_source,
    quick_pause,
    sign_in,
    start_trusted,
)
from tests.integration.conftest import Pair, cpython_email_corpus, crlf, message
from tests.servers import mailbox as mb
from tests.servers.dovecot import DovecotServer

pytestmark = [pytest.mark.timeout(120), pytest.mark.filterwarnings("ignore:Attempted too soon")]

Item = tuple[bytes, tuple[str, ...], dt.datetime]
DOMAIN = "contoso.example"


def upn(user: str) -> str:
    return f"{user}@{DOMAIN}"


def when(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)


@dataclass
class Tenant:
    fake: FakeMicrosoft
    dst: DovecotServer

    def box(self, user: str, **kw: object) -> FakeMailbox:
        return self.fake.mailbox(upn(user), **kw)

    def task(self, users: Sequence[str] = ("alice",), *, auth: str = "app", save: bool = True) -> model.Task:
        task = model.Task(
            name="m365",
            source=m365_source(self.fake, auth=auth),
            users=[model.User(upn(u), u) for u in users],
        )
        task.run.concurrency = 3
        if save:
            store.save_task(task, old_name=task.name if store.task_exists(task.name) else None)
        return task

    def settings(self) -> model.Settings:
        return Pair(None, self.dst).settings()

    def run(self, task: model.Task, **kw: object) -> runner.RunResult:
        return runner.run_task(task, self.settings(), **kw)  # type: ignore[arg-type]

    def dest(self, user: str = "alice") -> dict[str, list[Item]]:
        """Non-empty destination folders, each a sorted list (order of arrival does not matter)."""
        got = mb.contents(mb.snapshot(self.dst, user))
        return {name: sorted(items) for name, items in got.items() if items}

    def log_text(self) -> str:
        return store.paths().log_file("m365").read_text()


@pytest.fixture
def tenant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dovecot_factory: Callable[..., DovecotServer], mailmig_home: Path
) -> Iterator[Tenant]:
    fake = start_trusted(tmp_path, monkeypatch)
    try:
        yield Tenant(fake, dovecot_factory(name="dst", autocreate=True))
    finally:
        fake.stop()


def expect(*msgs: FakeMessage) -> list[Item]:
    """What the destination must hold for these source messages."""
    out = []
    for m in msgs:
        flags = [
            f for f, on in (("\\Seen", m.is_read), ("\\Flagged", m.flag == "flagged"), ("\\Draft", m.is_draft)) if on
        ]
        out.append((m.raw, tuple(sorted(flags)), m.received))
    return sorted(out)


def new_process() -> None:
    graph_auth._providers.clear()


@pytest.fixture
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph_auth, "pause", quick_pause)


# --------------------------------------------------------------------------------------------
# A realistic mailbox.


@dataclass
class Seeded:
    inbox: list[FakeMessage]
    by_dest: dict[str, list[FakeMessage]]


def seed_tenant(box: FakeMailbox) -> Seeded:
    """A German-language mailbox: well-known folders under their German names, nested and hidden
    folders, a search folder, a "/" in a name, flags, drafts, and CPython's test_email corpus."""
    corpus = [crlf(p.read_bytes()) for p in cpython_email_corpus()]
    inbox = [
        box.add("inbox", message(1), when(1999, 3, 1, 8, 0, 0), is_read=True),
        box.add("inbox", message(2), when(2005, 6, 30, 23, 59, 59), flagged=True),
        box.add("inbox", message(3), when(2024, 2, 29, 12, 0, 0), is_read=True, flagged=True),
        box.add("inbox", message(4, message_id=False), when(2015, 1, 1, 0, 0, 0)),
    ]
    projects = box.add_folder("inbox", "Projekte")
    hidden_child = box.add_folder(projects, "2019", hidden=True)
    box.add_folder("inbox", "Ungelesen", search=True).messages.append(inbox[1])  # a view: never copied
    sent_old = box.add_folder("sentitems", "Alt")
    acme = box.add_folder(box.add_folder(box.add_folder("", "Kunden"), "ACME"), "2019")
    hidden = box.add_folder("", "Versteckt", hidden=True)
    slash = box.add_folder("", "A/B")
    by_dest = {
        "INBOX": inbox,
        "INBOX/Projekte": [
            box.add(projects, message(10 + i), when(2019, 1, 1 + i, 9, 0, 0), is_read=True) for i in range(3)
        ],
        "INBOX/Projekte/2019": [box.add(hidden_child, message(20), when(2019, 5, 5, 5, 5, 5))],
        "Sent": [box.add("sentitems", message(30), when(2020, 1, 1, 0, 0, 0), is_read=True)],
        "Sent/Alt": [box.add(sent_old, message(31), when(2010, 1, 1, 0, 0, 0), is_read=True)],
        "Drafts": [box.add("drafts", message(32, message_id=False), when(2023, 1, 2, 3, 4, 5), draft=True)],
        "Trash": [box.add("deleteditems", message(33), when(2022, 1, 1, 0, 0, 0), is_read=True)],
        "Junk": [box.add("junkemail", message(34), when(2022, 2, 2, 0, 0, 0))],
        "Archive": [box.add("archive", message(35), when(2011, 1, 1, 0, 0, 0), is_read=True)],
        "Kunden/ACME/2019": [
            box.add(acme, raw, when(2001, 1, 1 + i % 28, 12, 0, i), is_read=i % 3 == 0, flagged=i % 5 == 0)
            for i, raw in enumerate(corpus)
        ],
        "Versteckt": [box.add(hidden, message(40), when(2018, 4, 4, 4, 4, 4))],
        "A_B": [box.add(slash, message(41), when(2017, 7, 7, 7, 7, 7), flagged=True)],
    }
    return Seeded(inbox, by_dest)


def test_tenant_mailbox_migrates_exactly_with_well_known_mapping(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph, "PAGE_SIZE", 7)  # several pages per folder
    seeded = seed_tenant(tenant.box("alice", locale="de"))
    task = tenant.task()

    result = tenant.run(task)

    (acct,) = result.accounts
    assert acct.status == "complete", acct.error
    assert tenant.dest() == {name: expect(*msgs) for name, msgs in seeded.by_dest.items()}
    assert acct.copied == sum(len(v) for v in seeded.by_dest.values())
    folders = {f.name: f for f in mb.list_folders(tenant.dst, "alice")}
    assert {"Kunden", "Kunden/ACME", "Postausgang", "A_B", "Versteckt"} <= set(folders)
    assert not any("Ungelesen" in name or "Finder" in name for name in folders), "search folders are not mail"
    graph_calls = [r for r in tenant.fake.log if r.path.startswith("/v1.0/")]
    assert all(r.method == "GET" for r in graph_calls), "the source is only read"
    assert len(tenant.fake.requests(r"ACME|/messages\?.*\$skip")) > 1, "@odata.nextLink pages were followed"


def test_rerun_copies_nothing_then_only_new_and_moved_mail(tenant: Tenant) -> None:
    box = tenant.box("alice")
    seeded = seed_tenant(box)
    task = tenant.task()
    tenant.run(task)
    first = tenant.dest()
    seen = len(tenant.fake.log)

    again = tenant.run(task)

    assert again.accounts[0].status == "complete" and again.accounts[0].copied == 0
    assert tenant.dest() == first
    assert all(r.unchanged for r in again.reports[upn("alice")] if not r.skip_reason)
    second = tenant.fake.log[seen:]
    assert not [r for r in second if r.path.endswith("/$value") or "$expand" in r.query]
    status_calls = [r for r in second if r.query.get("$orderby")]
    assert len(status_calls) == len([r for r in again.reports[upn("alice")] if not r.skip_reason])

    new = box.add("Kunden/ACME/2019", message(500), when(2024, 3, 3, 3, 3, 3))
    moved = seeded.inbox[0]
    box.move(moved, "Versteckt")  # same immutable id, now in another folder
    seen = len(tenant.fake.log)
    third = tenant.run(task)

    assert third.accounts[0].copied == 2
    relisted = {r.source for r in third.reports[upn("alice")] if not r.unchanged and not r.skip_reason}
    assert relisted == {"INBOX", "Kunden/ACME/2019", "Versteckt"}
    fetched = [r.path.split("/")[-2] for r in tenant.fake.log[seen:] if r.path.endswith("/$value")]
    assert sorted(fetched) == sorted([new.id, moved.id])
    now = tenant.dest()
    assert now["INBOX"] == first["INBOX"], "nothing is removed at the destination"
    assert now["Versteckt"] == sorted(first["Versteckt"] + expect(moved))


@pytest.fixture
def berlin(timezone_named: Callable[[str], None]) -> None:
    timezone_named("Europe/Berlin")


def test_filters_boundary_days_size_trash_junk_and_mailbox_filter(tenant: Tenant, berlin: None) -> None:
    box = tenant.box("alice")
    inbox = {
        "day before skip_before": box.add("inbox", message(1), when(2014, 12, 31, 22, 59, 59)),
        "skip_before day": box.add("inbox", message(2), when(2014, 12, 31, 23, 0, 0)),
        "skip_after day": box.add("inbox", message(3), when(2016, 6, 30, 21, 59, 59)),
        "day after skip_after": box.add("inbox", message(4), when(2016, 6, 30, 22, 0, 0)),
        "too big": box.add("inbox", message(5, body=b"y" * 20_000 + b"\r\n"), when(2016, 1, 1, 0, 0, 0)),
    }
    box.add("deleteditems", message(6), when(2016, 1, 1, 0, 0, 0))
    box.add("junkemail", message(7), when(2016, 1, 1, 0, 0, 0))
    old = box.add_folder("", "Alt")
    keep = box.add("Alt", message(8), when(2016, 1, 1, 0, 0, 0))
    box.add(box.add_folder(old, "Behalten"), message(9), when(2016, 1, 1, 0, 0, 0))
    task = tenant.task(save=False)
    f = task.filters
    f.skip_before, f.skip_after = dt.date(2015, 1, 1), dt.date(2016, 6, 30)
    f.skip_trash = f.skip_junk = True
    f.max_size_kb = 10
    f.mailboxes.enabled, f.mailboxes.keywords, f.mailboxes.exceptions = True, ["Alt"], ["Alt/Behalten"]
    store.save_task(task)

    result = tenant.run(task)

    acct = result.accounts[0]
    assert acct.status == "complete", acct.error
    dst = tenant.dest()
    assert dst["INBOX"] == expect(inbox["skip_before day"], inbox["skip_after day"])
    assert [raw for raw, _, _ in dst["Alt/Behalten"]] == [message(9)]
    assert "Alt" not in dst and "Trash" not in dst and "Junk" not in dst
    assert keep.raw not in {raw for items in dst.values() for raw, _, _ in items}
    assert acct.skipped == {SKIP_TOO_OLD: 1, SKIP_TOO_NEW: 1, SKIP_TOO_BIG: 1}
    assert acct.skipped_folders == {
        "Trash skipped by filter": 1,
        "Junk skipped by filter": 1,
        'mailbox filter: matches "Alt"': 1,
    }
    (listing,) = tenant.fake.requests(r"/messages\?.*\$expand.*receivedDateTime ge")[:1]
    assert listing.query["$filter"] == [
        "receivedDateTime ge 2014-12-31T23:00:00Z and receivedDateTime lt 2016-06-30T22:00:00Z"
    ], "the date filter runs at the server, from midnight in the admin's time zone"


def test_a_stopped_run_resumes_without_duplicates(tenant: Tenant) -> None:
    box = tenant.box("alice")
    inbox = [box.add("inbox", message(i), when(2020, 1, 1, 0, 0, i)) for i in range(30)]
    box.add_folder("", "Work")
    work = [box.add("Work", message(100 + i), when(2021, 1, 1, 0, 0, i)) for i in range(10)]
    task = tenant.task()
    cancel = threading.Event()

    def sink(event: Event) -> None:
        if isinstance(event, FolderProgress):
            cancel.set()

    first = tenant.run(task, cancel=cancel, sink=sink, limits=Limits(batch_messages=4, queue_depth=1))
    assert first.status == "stopped" and 0 < first.accounts[0].copied < 40

    second = tenant.run(task)

    assert second.accounts[0].status == "complete"
    assert first.accounts[0].copied + second.accounts[0].copied == 40
    assert tenant.dest() == {"INBOX": expect(*inbox), "Work": expect(*work)}


def test_mail_appended_before_a_crash_is_recognised_not_duplicated(tenant: Tenant) -> None:
    box = tenant.box("alice")
    msgs = [box.add("inbox", message(i, message_id=i != 2), when(2020, 1, 1, 0, 0, i), is_read=True) for i in range(8)]
    # a killed run had appended these three but not recorded them (the listed 0x0E08 size is only an estimate)
    mb.seed(tenant.dst, "alice", {"INBOX": [mb.Msg(m.raw, (), m.received) for m in msgs[:3]]})

    result = tenant.run(tenant.task())

    acct = result.accounts[0]
    assert acct.status == "complete" and acct.copied == 5
    assert acct.skipped[SKIP_EXISTING] == 3
    assert len(tenant.dest()["INBOX"]) == 8


def test_throttling_is_survived_with_retry_after_honoured(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph, "BACKOFF_BASE_S", 0.05)
    tenant.fake.value_delay = 0.02
    box = tenant.box("alice")
    msgs = [box.add("inbox", message(i), when(2020, 1, 1, 0, 0, i)) for i in range(24)]
    tenant.fake.throttle(r"/\$value", retry_after=1, count=2)
    tenant.fake.throttle(r"/messages\?.*\$expand", retry_after=None, count=1, status=503)
    tenant.fake.throttle(r"/mailFolders\?", retry_after=1, count=1)

    result = tenant.run(tenant.task())

    assert result.accounts[0].status == "complete", result.accounts[0].error
    assert tenant.dest() == {"INBOX": expect(*msgs)}, "nothing lost"
    log = tenant.fake.log
    throttled = [r for r in log if r.faulted and r.status == 429]
    assert len(throttled) == 3
    for hit in throttled:
        retry = next(r for r in log if r.path == hit.path and r.start > hit.end and not r.faulted)
        assert retry.start - hit.end >= 0.95, "Retry-After was honoured"
        early = [r for r in log if r.mailbox and hit.end + 0.1 < r.start < hit.end + 0.9]
        assert not early, "every request to the mailbox held off meanwhile"
    assert tenant.fake.peak_inflight[upn("alice")] <= graph.MAX_IN_FLIGHT
    text = tenant.log_text()
    assert text.count("(Retry-After) before retrying") == 3 and "answered 503" in text


def test_a_mailbox_the_app_may_not_read_fails_alone(tenant: Tenant) -> None:
    for i, user in enumerate(("alice", "bob", "carol")):
        tenant.box(user).add("inbox", message(i), when(2020, 1, 1, 0, 0, 0))
    tenant.fake.deny(upn("bob"))

    result = tenant.run(tenant.task(("alice", "bob", "carol")))

    status = {a.account: a for a in result.accounts}
    assert {k: a.status for k, a in status.items()} == {
        upn("alice"): "complete",
        upn("bob"): "failed",
        upn("carol"): "complete",
    }
    assert "may not be read (403 ErrorAccessDenied" in status[upn("bob")].error
    assert "Mail.Read application permission" in status[upn("bob")].error
    assert result.status == "partial"
    assert len(tenant.dest("carol")["INBOX"]) == 1
    assert "ErrorAccessDenied" in tenant.log_text() and "app-secret" not in tenant.log_text()


def test_device_code_sign_in_then_runs_reuse_and_refresh_it_until_revoked(tenant: Tenant, quick_polls: None) -> None:
    msgs = [tenant.box("alice").add("inbox", message(i), when(2020, 1, 1, 0, 0, i)) for i in range(3)]
    task = tenant.task(auth="device")
    assert sign_in(tenant.fake, task) == "admin@contoso.example"
    cache = graph_auth.cache_file(task.name)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    new_process()

    first = tenant.run(task)

    assert first.accounts[0].status == "complete", first.accounts[0].error
    assert tenant.dest() == {"INBOX": expect(*msgs)}
    assert len(tenant.fake.requests("/devicecode")) == 1, "the run used the saved sign-in"

    tenant.fake.expire_access_tokens()  # Graph answers 401: the refresh token gets a new access token
    new_process()
    tenant.box("alice").add("inbox", message(9), when(2021, 1, 1, 0, 0, 0))
    second = tenant.run(task)
    assert second.accounts[0].copied == 1
    assert [r.status for r in tenant.fake.requests("/token") if r.grant_type == "refresh_token"] == [200]
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600

    tenant.fake.revoke()
    tenant.fake.expire_access_tokens()
    new_process()
    third = tenant.run(task)
    (acct,) = third.accounts
    assert acct.status == "failed"
    assert "the grant was revoked" in acct.error and "AADSTS50173" in acct.error
    assert "mailmig-tui signin m365" in acct.error


def test_verify_proves_each_mailbox_can_be_read(tenant: Tenant) -> None:
    for i in range(2):
        tenant.box("alice").add("inbox", message(i), when(2020, 1, 1, 0, 0, i))
    tenant.box("bob")
    tenant.fake.deny(upn("bob"))
    task = tenant.task(("alice", "bob"))

    verdicts = {v.account: v for v in verify.verify_users(task, tenant.settings())}

    assert verdicts[upn("alice")].ok
    assert verdicts[upn("alice")].source_detail == "Microsoft Graph OK, the inbox holds 2 message(s)"
    assert not verdicts[upn("bob")].source_ok and "may not be read" in verdicts[upn("bob")].source_detail
    assert verdicts[upn("bob")].dest_ok


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_cli_signin_prints_the_code_and_the_run_uses_it(
    tenant: Tenant, quick_polls: None, restore_signals: None, capsys: pytest.CaptureFixture[str]
) -> None:
    msgs = [tenant.box("alice").add("inbox", message(1), when(2020, 1, 1, 0, 0, 0))]
    task = tenant.task(auth="device")
    tenant.settings()
    tenant.fake.auto_approve_after = 1

    assert cli.main(["signin", task.name]) == cli.EXIT_OK

    out = capsys.readouterr().out
    assert re.search(rf"open the page {re.escape(tenant.fake.base)}/devicelogin and enter the code [A-Z0-9]{{9}}", out)
    assert "Signed in as admin@contoso.example" in out and str(graph_auth.cache_file(task.name)) in out
    new_process()
    assert cli.main(["run", task.name]) == cli.EXIT_OK
    assert tenant.dest() == {"INBOX": expect(*msgs)}


def test_cli_signin_is_cancelled_by_ctrl_c(
    tenant: Tenant, quick_polls: None, restore_signals: None, capsys: pytest.CaptureFixture[str]
) -> None:
    task = tenant.task(auth="device")

    def interrupt() -> None:
        deadline = time.monotonic() + 10
        while not tenant.fake.requests("/token") and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    assert cli.main(["signin", task.name]) == cli.EXIT_INTERRUPTED
    assert "sign-in cancelled" in capsys.readouterr().err
    assert not graph_auth.cache_file(task.name).exists()


def test_cli_signin_refuses_an_app_only_task(tenant: Tenant, capsys: pytest.CaptureFixture[str]) -> None:
    task = tenant.task(auth="app")

    assert cli.main(["signin", task.name]) == cli.EXIT_INVALID
    assert "does not use the device-code sign-in" in capsys.readouterr().err
