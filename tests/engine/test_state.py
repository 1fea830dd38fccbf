"""engine/state.py: the per-account summaries read from the state database."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from mailmig_tui.engine.sources.base import SKIP_EXISTING
from mailmig_tui.engine.state import COPIED, EXISTING, FAILED, SKIPPED, MessageRow, StateDB


def _folder(db: StateDB, account: str, folder: str, skipped: dict[str, int]) -> None:
    db.save_folder(
        account, folder, validity="1", marker="m", filters="f", dest_folder=folder, skipped=Counter(skipped), clean=True
    )


def _run(db: StateDB, account: str, duration: float) -> None:
    run = db.start_run(False)
    result = SimpleNamespace(
        account=account,
        status="complete",
        folders=1,
        copied=0,
        skipped={},
        failed=0,
        bytes=0,
        duration=duration,
        error="",
    )
    db.record_account_run(run, result, 0.0)
    db.finish_run(run, "complete")


def test_summaries_of_several_accounts_keep_each_accounts_own_figures(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "t.db")
    for account in ("zed", "alice", "bob", "idle"):
        db.bind_account(account, "imap://src", f"{account}-dst")
    db.set_account_status("alice", "complete")
    db.set_account_status("bob", "failed", error="login refused")
    _folder(db, "alice", "INBOX", {"too big": 2, SKIP_EXISTING: 9})
    _folder(db, "alice", "Archive", {"older than": 1, "too big": 1})
    _folder(db, "bob", "INBOX", {"too big": 5})
    db.record(
        "alice",
        [
            MessageRow("INBOX", "1", "1", COPIED, size=100),
            MessageRow("INBOX", "1", "2", COPIED, size=20),
            MessageRow("INBOX", "1", "3", EXISTING, size=7),
            MessageRow("INBOX", "1", "4", FAILED, size=1, reason="too long"),
            MessageRow("Archive", "1", "5", SKIPPED, reason="larger than"),
            MessageRow("Archive", "1", "6", SKIPPED, reason="larger than"),
        ],
    )
    db.record("bob", [MessageRow("INBOX", "1", "1", COPIED, size=3000), MessageRow("INBOX", "1", "2", EXISTING)])
    db.record("zed", [MessageRow("INBOX", "1", "1", FAILED, reason="x")])
    _run(db, "alice", 1.5)
    _run(db, "bob", 4.0)
    _run(db, "alice", 2.5)

    out = db.summaries()

    assert list(out) == ["zed", "alice", "bob", "idle"]
    alice, bob, zed, idle = out["alice"], out["bob"], out["zed"], out["idle"]
    assert (alice.status, alice.completed_once, alice.destination) == ("complete", True, "alice-dst")
    assert (alice.folders, alice.copied, alice.existing, alice.failed, alice.bytes) == (2, 2, 1, 1, 120)
    assert alice.skipped == Counter({"too big": 3, "older than": 1, SKIP_EXISTING: 1, "larger than": 2})
    assert list(alice.skipped) == ["older than", "too big", SKIP_EXISTING, "larger than"]
    assert alice.last_duration == 2.5
    assert (bob.status, bob.last_error, bob.completed_once) == ("failed", "login refused", False)
    assert (bob.folders, bob.copied, bob.existing, bob.failed, bob.bytes) == (1, 1, 1, 0, 3000)
    assert bob.skipped == Counter({"too big": 5, SKIP_EXISTING: 1})
    assert bob.last_duration == 4.0
    assert (zed.folders, zed.copied, zed.failed, zed.bytes, zed.skipped, zed.last_duration) == (
        0,
        0,
        1,
        0,
        Counter(),
        0.0,
    )
    assert (idle.status, idle.folders, idle.copied, idle.bytes, idle.skipped) == ("pending", 0, 0, 0, Counter())
    assert idle.last_started is None and idle.last_finished is None
    # progress(): the same standing per account, read from the accounts table alone
    assert {a: tuple(p) for a, p in db.progress().items()} == {
        a: (s.status, s.completed_once, s.last_started, s.last_finished) for a, s in out.items()
    }
    db.close()


def test_failed_by_account_lists_each_accounts_failures_in_order(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "t.db")
    db.record("bob", [MessageRow("INBOX", "1", "9", FAILED, reason="too big"), MessageRow("INBOX", "1", "2", COPIED)])
    db.record("alice", [MessageRow("Sent", "1", "3", FAILED, reason="refused"), MessageRow("INBOX", "1", "7", FAILED)])
    assert db.failed_by_account() == {
        "alice": [("INBOX", "7", ""), ("Sent", "3", "refused")],
        "bob": [("INBOX", "9", "too big")],
    }
    assert db.failed_by_account()["alice"] == db.failed_messages("alice")
    db.close()
