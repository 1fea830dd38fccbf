"""The migration engine against real Dovecot on both sides: exact copies, filters, re-runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from mailmig_tui.engine import runner, store
from mailmig_tui.engine.account import Limits
from mailmig_tui.engine.events import AccountFinished, FolderProgress
from mailmig_tui.engine.sources.base import SKIP_EXISTING, SKIP_TOO_BIG, SKIP_TOO_NEW, SKIP_TOO_OLD
from mailmig_tui.engine.state import StateDB
from tests.integration.conftest import Pair, contents, cpython_email_corpus, crlf, message, when
from tests.servers import mailbox as mb


def seed_realistic(pair: Pair, user: str = "alice") -> dict[str, list[mb.Msg]]:
    """Nested and non-ASCII folders, special-use folders, flags and keywords, dates over decades,
    messages with and without Message-ID, an exact duplicate, and CPython's test_email corpus."""
    corpus = [
        mb.Msg(crlf(p.read_bytes()), (), when(2001, 1, 1 + i % 28, 12, 0, 0))
        for i, p in enumerate(cpython_email_corpus())
    ]
    folders: dict[str, list[mb.Msg]] = {
        "INBOX": [
            mb.Msg(message(1), ("\\Seen",), when(1985, 3, 1, 8, 0, 0)),
            mb.Msg(message(2), ("\\Seen", "\\Answered", "$Forwarded"), when(2005, 6, 30, 23, 59, 59)),
            mb.Msg(message(3), ("\\Flagged", "ProjectX", "$Label1"), when(2039, 1, 1, 0, 0, 0)),
            mb.Msg(message(4, message_id=False), (), when(2015, 1, 1, 0, 0, 0)),
            mb.Msg(message(4, message_id=False), (), when(2015, 1, 1, 0, 0, 0)),  # exact duplicate: both kept
            mb.Msg(message(5, body=b"x" * 300_000 + b"\r\n"), ("\\Seen",), when(2020, 2, 29, 12, 0, 0)),
        ],
        "Sent": [mb.Msg(message(10), ("\\Seen",), when(2019, 5, 5, 5, 5, 5))],
        "Drafts": [mb.Msg(message(11, message_id=False), ("\\Draft",), when(2023, 1, 2, 3, 4, 5))],
        "Archive": [mb.Msg(message(12), ("\\Seen",), when(2010, 1, 1, 0, 0, 0))],
        "Trash": [mb.Msg(message(13), ("\\Seen", "\\Deleted"), when(2022, 1, 1, 0, 0, 0))],
        "Junk": [mb.Msg(message(14), (), when(2022, 1, 1, 0, 0, 0))],
        "Projects/2019/Q1": [mb.Msg(message(20 + i), ("\\Seen",), when(2019, 1, 1 + i, 9, 0, 0)) for i in range(5)],
        "Entwürfe": [mb.Msg(message(30), (), when(2018, 4, 4, 4, 4, 4))],
        "日本語": [mb.Msg(message(31, subject="=?UTF-8?B?5pel5pys6Kqe?="), (), when(2017, 7, 7, 7, 7, 7))],
        "A&B": [mb.Msg(message(32), ("\\Answered",), when(2016, 6, 6, 6, 6, 6))],
        "Empty": [],
        "Corpus": corpus,
    }
    mb.seed(pair.src, user, folders)
    return folders


def test_first_run_copies_everything_exactly(pair: Pair) -> None:
    seed_realistic(pair)
    before = contents(pair.src, "alice")
    task, settings = pair.task(), pair.settings()

    events: list = []
    result = runner.run_task(task, settings, sink=events.append)

    assert result.status == "completed"
    (acct,) = result.accounts
    assert acct.status == "complete", acct.error
    src, dst = contents(pair.src, "alice"), contents(pair.dst, "alice")
    assert src == before, "the source must not change, not even \\Seen"
    expected = {name: msgs for name, msgs in src.items()}
    assert {k: v for k, v in dst.items() if v or k in expected} == expected
    total = sum(len(v) for v in src.values())
    assert acct.copied == total
    assert acct.bytes == sum(len(raw) for msgs in src.values() for raw, _, _ in msgs)
    progress = [e for e in events if isinstance(e, FolderProgress)]
    assert progress and progress[-1].account_done == progress[-1].account_total == total
    assert progress[-1].bytes_done == progress[-1].bytes_total == acct.bytes
    assert [p.account_done for p in progress] == sorted(p.account_done for p in progress)
    assert progress[-1].bytes_per_s > 0 and progress[-1].eta_s == 0
    folders = {f.name: f for f in mb.list_folders(pair.dst, "alice")}
    for name in ("Projects", "Projects/2019", "Projects/2019/Q1", "Entwürfe", "日本語", "A&B", "Empty"):
        assert folders[name].subscribed, name


def test_second_run_copies_nothing_and_new_mail_only_then(pair: Pair) -> None:
    seed_realistic(pair)
    task, settings = pair.task(), pair.settings()
    runner.run_task(task, settings)
    first = contents(pair.dst, "alice")

    again = runner.run_task(task, settings)
    assert again.accounts[0].copied == 0
    assert contents(pair.dst, "alice") == first
    reports = again.reports["alice"]
    assert all(r.unchanged for r in reports if not r.skip_reason)

    mb.seed(pair.src, "alice", {"Projects/2019/Q1": [mb.Msg(message(99), (), when(2024, 1, 1, 0, 0, 0))]})
    third = runner.run_task(task, settings)
    assert third.accounts[0].copied == 1
    assert [r.source for r in third.reports["alice"] if not r.unchanged and not r.skip_reason] == ["Projects/2019/Q1"]
    assert contents(pair.dst, "alice") == contents(pair.src, "alice") | {
        k: v for k, v in contents(pair.dst, "alice").items() if k not in contents(pair.src, "alice")
    }


def test_date_size_trash_junk_and_mailbox_filters(pair: Pair) -> None:
    big = message(8, body=b"y" * 20_000 + b"\r\n")
    mb.seed(
        pair.src,
        "alice",
        {
            "INBOX": [
                mb.Msg(message(1), (), when(2014, 12, 31, 23, 59, 59)),  # day before skip_before: skipped
                mb.Msg(message(2), (), when(2015, 1, 1, 0, 0, 0)),  # skip_before day: kept
                mb.Msg(message(3), (), when(2016, 6, 30, 23, 59, 59)),  # skip_after day: kept
                mb.Msg(message(4), (), when(2016, 7, 1, 0, 0, 0)),  # day after skip_after: skipped
                mb.Msg(big, (), when(2016, 1, 1, 0, 0, 0)),  # over 10 KB: skipped
            ],
            "Trash": [mb.Msg(message(5), (), when(2016, 1, 1, 0, 0, 0))],
            "Junk": [mb.Msg(message(6), (), when(2016, 1, 1, 0, 0, 0))],
            "Old": [mb.Msg(message(7), (), when(2016, 1, 1, 0, 0, 0))],
            "Old/Keep": [mb.Msg(message(9), (), when(2016, 1, 1, 0, 0, 0))],
            "Older": [mb.Msg(message(10), (), when(2016, 1, 1, 0, 0, 0))],
        },
    )
    task = pair.task(save=False)
    f = task.filters
    f.skip_before, f.skip_after = dt.date(2015, 1, 1), dt.date(2016, 6, 30)
    f.skip_trash = f.skip_junk = True
    f.max_size_kb = 10
    f.mailboxes.enabled, f.mailboxes.keywords, f.mailboxes.exceptions = True, ["Old"], ["Old/Keep"]
    store.save_task(task, old_name=task.name)

    result = runner.run_task(task, pair.settings())

    acct = result.accounts[0]
    assert acct.status == "complete", acct.error
    dst = contents(pair.dst, "alice")
    assert [raw for raw, _, _ in dst["INBOX"]] == [message(2), message(3)]
    assert dst.get("Trash", []) == [] and dst.get("Junk", []) == []
    assert "Old" not in dst or dst["Old"] == []
    assert [raw for raw, _, _ in dst["Old/Keep"]] == [message(9)]
    assert [raw for raw, _, _ in dst["Older"]] == [message(10)]
    assert acct.skipped == {SKIP_TOO_OLD: 1, SKIP_TOO_NEW: 1, SKIP_TOO_BIG: 1}
    assert acct.skipped_folders == {
        "Trash skipped by filter": 1,
        "Junk skipped by filter": 1,
        'mailbox filter: matches "Old"': 1,
    }


def test_mail_already_at_destination_is_not_copied_again(pair: Pair) -> None:
    msgs = [mb.Msg(message(i, message_id=i % 2 == 0), ("\\Seen",), when(2020, 1, 1 + i, 0, 0, 0)) for i in range(6)]
    mb.seed(pair.src, "alice", {"INBOX": msgs, "Work": msgs[:3]})
    mb.seed(pair.dst, "alice", {"INBOX": msgs[:4], "Work": msgs[:1]})  # copied earlier by another tool

    result = runner.run_task(pair.task(), pair.settings())

    acct = result.accounts[0]
    assert acct.copied == 2 + 2
    assert acct.skipped[SKIP_EXISTING] == 4 + 1
    dst = contents(pair.dst, "alice")
    assert dst["INBOX"] == contents(pair.src, "alice")["INBOX"]
    assert dst["Work"] == contents(pair.src, "alice")["Work"]
    assert summary_skipped(pair) == {SKIP_EXISTING: 5}  # once, not once per record and once per folder

    mb.seed(pair.src, "alice", {"INBOX": [mb.Msg(message(99), (), when(2021, 1, 1, 0, 0, 0))]})
    again = runner.run_task(pair.task(), pair.settings())  # INBOX changed: planned again
    assert again.accounts[0].copied == 1
    assert summary_skipped(pair) == {SKIP_EXISTING: 5}


def summary_skipped(pair: Pair) -> dict[str, int]:
    db = StateDB(store.paths().state_file(pair.task(save=False).name))
    try:
        return dict(db.summaries()["alice"].skipped)
    finally:
        db.close()


def test_wrong_password_fails_that_account_only(pair: Pair) -> None:
    for user in ("alice", "bob", "carol"):
        mb.seed(pair.src, user, {"INBOX": [mb.Msg(message(1), (), when(2020, 1, 1, 0, 0, 0))]})
    task = pair.task(("alice", "bob", "carol"), save=False)
    task.users[1].password = "not-bobs-password"
    store.save_task(task, old_name=task.name)
    events: list = []

    result = runner.run_task(task, pair.settings(), sink=events.append)

    status = {a.account: a.status for a in result.accounts}
    assert status == {"alice": "complete", "bob": "failed", "carol": "complete"}
    bob = next(a for a in result.accounts if a.account == "bob")
    assert "login refused for bob" in bob.error and "not-bobs-password" not in bob.error
    assert result.status == "partial"
    assert len(contents(pair.dst, "carol")["INBOX"]) == 1
    finished = [e for e in events if isinstance(e, AccountFinished)]
    assert len(finished) == 3
    log = store.paths().log_file(task.name).read_text()
    assert "not-bobs-password" not in log and "alice-pw" not in log and "login refused for bob" in log


def test_a_name_dovecot_sends_unquoted_with_a_bracket_is_copied_and_listed_again(pair: Pair) -> None:
    """``* LIST (\\HasNoChildren) "/" Invoices[2019``: IMAPClient's reader fails on it ("No closing
    ']'"); both sides list it, so the next run must read it at the destination too."""
    folders = ["INBOX", "Invoices[2019", "Work"]
    mb.seed(
        pair.src,
        "alice",
        {
            "INBOX": [mb.Msg(message(1), ("\\Seen",), when(2020, 1, 1))],
            "Invoices[2019": [mb.Msg(message(2), (), when(2019, 2, 1)), mb.Msg(message(3), (), when(2019, 3, 1))],
            "Work": [mb.Msg(message(4), ("\\Flagged",), when(2021, 4, 1))],
        },
    )
    assert b'(\\HasNoChildren) "/" Invoices[2019' in mb.raw_list(pair.src, "alice")  # unquoted, really
    task, settings = pair.task(), pair.settings()

    first = runner.run_task(task, settings)

    (acct,) = first.accounts
    assert (acct.status, acct.error, acct.copied) == ("complete", "", 4)
    assert b'(\\HasNoChildren) "/" Invoices[2019' in mb.raw_list(pair.dst, "alice")
    src = mb.contents(mb.snapshot(pair.src, "alice", folders))
    assert mb.contents(mb.snapshot(pair.dst, "alice", folders)) == src

    mb.append(pair.src, "alice", "Invoices[2019", [mb.Msg(message(5), (), when(2019, 5, 1))])
    second = runner.run_task(task, settings)

    (acct,) = second.accounts
    assert (second.status, acct.status, acct.error, acct.copied) == ("completed", "complete", "", 1)
    dst = mb.contents(mb.snapshot(pair.dst, "alice", folders))
    assert dst == mb.contents(mb.snapshot(pair.src, "alice", folders))
    assert len(dst["Invoices[2019"]) == 3


def test_a_folder_the_source_lists_but_cannot_open_fails_alone(dovecot_factory: Any, mailmig_home: Any) -> None:
    """A Maildir++ directory whose name is not modified UTF-7 on disk: Dovecot lists it (as
    ``Bad&AAE-Name``) but refuses its STATUS. That folder fails, the others are copied, on each run."""
    pair = Pair(dovecot_factory(name="src", separator="."), dovecot_factory(name="dst", autocreate=True))
    mb.seed(pair.src, "alice", {"INBOX": [mb.Msg(message(1))], "Work": [mb.Msg(message(2)), mb.Msg(message(3))]})
    pair.src.create_folder_on_disk("alice", "Bad\x01Name")  # on disk as it is, not as "Bad&AAE-Name"
    assert b'(\\HasNoChildren) "." Bad&AAE-Name' in mb.raw_list(pair.src, "alice")
    task, settings = pair.task(), pair.settings()

    for copied in (3, 0):
        result = runner.run_task(task, settings)

        (acct,) = result.accounts
        assert (result.status, acct.status, acct.copied, acct.folders) == ("partial", "partial", copied, 2)
        assert list(acct.folder_errors) == ["Bad\x01Name"]
        assert acct.folder_errors["Bad\x01Name"].startswith("the source refused STATUS: ")
        assert '"Bad\x01Name": the source refused STATUS: ' in acct.error
        want = mb.contents(mb.snapshot(pair.src, "alice", ["INBOX", "Work"]))
        assert mb.contents(mb.snapshot(pair.dst, "alice", ["INBOX", "Work"])) == want
    report = next(f for f in result.reports["alice"] if f.source == "Bad\x01Name")
    assert report.error == acct.folder_errors["Bad\x01Name"]


def test_a_folder_deleted_at_the_source_during_the_copy_fails_alone(pair: Pair) -> None:
    """Planned, then gone before its turn in the copy: EXAMINE is refused. The other folders are copied;
    the next run no longer lists it and completes."""
    big = [mb.Msg(message(i), (), when(2020, 1, 1 + i)) for i in range(12)]
    mb.seed(pair.src, "alice", {"INBOX": big, "Doomed": [mb.Msg(message(99), (), when(2020, 2, 1))]})
    task, settings = pair.task(), pair.settings()
    struck: list[FolderProgress] = []

    def sink(event: object) -> None:
        if isinstance(event, FolderProgress) and not struck:  # INBOX's first batch: Doomed (smaller) comes last
            struck.append(event)
            client = mb.connect(pair.src, "alice")
            client.delete_folder("Doomed")
            client.logout()

    result = runner.run_task(task, settings, sink=sink, limits=Limits(batch_messages=2, queue_depth=1))

    (acct,) = result.accounts
    assert struck and struck[0].folder == "INBOX"
    assert (acct.status, acct.copied, acct.folders, list(acct.folder_errors)) == ("partial", 12, 1, ["Doomed"])
    assert "Mailbox doesn't exist: Doomed" in acct.folder_errors["Doomed"]
    assert contents(pair.dst, "alice")["INBOX"] == contents(pair.src, "alice")["INBOX"]

    again = runner.run_task(task, settings)

    (acct,) = again.accounts
    assert (acct.status, acct.copied, acct.error) == ("complete", 0, "")
