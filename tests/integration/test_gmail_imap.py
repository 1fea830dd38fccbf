"""Gmail over IMAP (an app password; X-GM-EXT-1) into a real Dovecot.

Gmail's IMAP shows one message in every folder its labels name, plus in All Mail. The migration
copies each label folder, skips the views (Starred, Important), and reads All Mail as the Archive
folder keeping only archived mail (no label placing it elsewhere): nothing lost, nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailmig_tui.engine import model, runner
from tests.fakes.gmail_imap import GmailImap
from tests.integration.conftest import Pair, contents, message, when
from tests.servers.dovecot import DovecotServer

USER, APP_PASSWORD = "alice@gmail.example", "abcd efgh ijkl mnop"


@pytest.fixture
def gmail() -> Iterator[GmailImap]:
    with GmailImap(USER, APP_PASSWORD) as server:
        yield server


@pytest.fixture
def dst(dovecot_factory: Callable[..., DovecotServer], mailmig_home: Path) -> DovecotServer:
    return dovecot_factory(name="dst", autocreate=True)


def task_for(gmail: GmailImap) -> model.Task:
    source = model.Source(type="imap", host="127.0.0.1", port=gmail.port, security="none")
    return model.Task(name="gmail", source=source, users=[model.User(USER, "alice", password=APP_PASSWORD)])


def test_labels_become_folders_and_all_mail_gives_only_archived_mail(gmail: GmailImap, dst: DovecotServer) -> None:
    raws = {n: message(n) for n in range(1, 11)}
    gmail.add(raws[1], {"\\Inbox"}, ("\\Seen",), when(2021, 1, 1, 8, 0, 0))
    gmail.add(raws[2], {"\\Inbox", "Work", "\\Important"}, (), when(2021, 1, 2, 8, 0, 0))
    gmail.add(raws[3], {"Work"}, ("\\Seen",), when(2021, 1, 3, 8, 0, 0))  # archived, but labelled: in Work only
    gmail.add(raws[4], set(), ("\\Seen",), when(2019, 5, 5, 5, 5, 5))  # archived, no label: Archive
    gmail.add(raws[5], {"\\Important", "\\Starred"}, ("\\Seen", "\\Flagged"), when(2018, 3, 3, 3, 3, 3))  # archived
    gmail.add(raws[6], {"\\Sent"}, ("\\Seen",), when(2021, 2, 2, 9, 0, 0))
    gmail.add(raws[7], {"\\Draft"}, ("\\Draft",), when(2021, 2, 3, 9, 0, 0))
    gmail.add(raws[8], {"\\Trash", "Work"}, ("\\Seen",), when(2021, 2, 4, 9, 0, 0))  # Trash only (not in All Mail)
    gmail.add(raws[9], {"\\Spam"}, (), when(2021, 2, 5, 9, 0, 0))
    gmail.add(raws[10], {"Projects/2024"}, ("\\Answered",), when(2021, 2, 6, 9, 0, 0))
    task = task_for(gmail)
    settings = Pair(None, dst).settings()

    result = runner.run_task(task, settings)

    (acct,) = result.accounts
    assert acct.status == "complete", acct.error
    got = {name: [(raw, set(flags)) for raw, flags, _ in items] for name, items in contents(dst, "alice").items()}
    got = {name: items for name, items in got.items() if items}
    assert got == {
        "INBOX": [(raws[1], {"\\Seen"}), (raws[2], set())],
        "Work": [(raws[2], set()), (raws[3], {"\\Seen"})],
        "Archive": [(raws[4], {"\\Seen"}), (raws[5], {"\\Seen", "\\Flagged"})],
        "Sent": [(raws[6], {"\\Seen"})],
        "Drafts": [(raws[7], {"\\Draft"})],
        "Trash": [(raws[8], {"\\Seen"})],
        "Junk": [(raws[9], set())],
        "Projects/2024": [(raws[10], {"\\Answered"})],
    }
    assert acct.copied == 11
    dates = {raw: date for items in contents(dst, "alice").values() for raw, _, date in items}
    assert dates[raws[4]] == when(2019, 5, 5, 5, 5, 5)
    skipped = {r.source: r.skip_reason for r in result.reports[USER] if r.skip_reason}
    assert skipped == {
        "[Gmail]": "not selectable",
        "[Gmail]/Starred": "virtual folder (\\Flagged)",
        "[Gmail]/Important": "virtual folder (\\Important)",
    }
    commands = " ".join(gmail.commands).upper()
    assert " EXAMINE " in commands and " SELECT " not in commands, "the source is only ever examined"
    assert "X-GM-LABELS" in commands
    assert "BODY[]" not in commands.replace("BODY.PEEK[]", ""), "bodies are fetched with BODY.PEEK"

    again = runner.run_task(task, settings)
    assert again.accounts[0].status == "complete" and again.accounts[0].copied == 0

    gmail.add(message(11), set(), (), when(2022, 1, 1, 0, 0, 0))  # newly archived
    gmail.add(message(12), {"\\Inbox"}, (), when(2022, 1, 2, 0, 0, 0))
    third = runner.run_task(task, settings)
    assert third.accounts[0].copied == 2
    now = contents(dst, "alice")
    assert [raw for raw, _, _ in now["Archive"]] == [raws[4], raws[5], message(11)]
    assert [raw for raw, _, _ in now["INBOX"]] == [raws[1], raws[2], message(12)]
