"""engine/state.py: the per-account summaries read from the state database, the figures its
triggers keep, and the migration of a schema 1 database."""

from __future__ import annotations

import json
import random
import sqlite3
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from mailmig_tui.engine.sources.base import SKIP_EXISTING
from mailmig_tui.engine.state import (
    COPIED,
    EXISTING,
    FAILED,
    SCHEMA_VERSION,
    SKIPPED,
    MessageRow,
    StateDB,
    report_text,
)
from mailmig_tui.engine.store import ConfigError


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
    assert (alice.status, alice.destination) == ("complete", "alice-dst")
    assert (alice.folders, alice.copied, alice.existing, alice.failed, alice.bytes) == (2, 2, 1, 1, 120)
    assert alice.skipped == Counter({"too big": 3, "older than": 1, SKIP_EXISTING: 1, "larger than": 2})
    assert list(alice.skipped) == [SKIP_EXISTING, "larger than", "older than", "too big"]  # by reason
    assert alice.last_duration == 2.5
    assert (bob.status, bob.last_error) == ("failed", "login refused")
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
        a: (s.status, s.status in ("complete", "partial"), s.last_started, s.last_finished, s.copied, s.failed,
            s.last_error)
        for a, s in out.items()
    }  # fmt: skip
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


def _figures(db: StateDB) -> dict[str, tuple]:
    return {a: (s.folders, s.copied, s.existing, s.failed, s.bytes, dict(s.skipped), s.last_duration)
            for a, s in db.summaries().items()}  # fmt: skip


def _counted(path: Path) -> dict[str, tuple]:
    """The figures counted afresh from the records, in Python: what the triggers must have kept."""
    raw = sqlite3.connect(path)
    out: dict[str, tuple] = {}
    for (account,) in raw.execute("SELECT account FROM accounts").fetchall():
        by_status = Counter({COPIED: 0, EXISTING: 0, FAILED: 0})
        copied_bytes, skipped = 0, Counter()
        for status, size, reason in raw.execute(
            "SELECT status, size, reason FROM messages WHERE account = ?", (account,)
        ):
            by_status[status] += 1
            copied_bytes += size if status == COPIED else 0
            skipped[reason] += status == SKIPPED
        folders = raw.execute("SELECT skipped FROM folders WHERE account = ?", (account,)).fetchall()
        for (text,) in folders:
            skipped.update({k: v for k, v in json.loads(text).items() if k != SKIP_EXISTING})
        skipped[SKIP_EXISTING] = by_status[EXISTING]
        runs = raw.execute("SELECT duration FROM account_runs WHERE account = ? ORDER BY run_id DESC", (account,))
        last = runs.fetchone()
        figures = (len(folders), by_status[COPIED], by_status[EXISTING], by_status[FAILED], copied_bytes)
        out[account] = (*figures, dict(+skipped), last[0] if last else 0.0)
    raw.close()
    return out


def test_the_figures_follow_every_change_of_the_records(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "t.db")
    db.bind_account("alice", "imap://src", "alice")
    db.record("alice", [MessageRow("INBOX", "1", "1", FAILED, size=50, reason="refused")])
    _folder(db, "alice", "INBOX", {"too big": 2, SKIP_EXISTING: 4})
    assert _figures(db)["alice"] == (1, 0, 0, 1, 0, {"too big": 2}, 0.0)
    # the retry copies the failed message: counted once, as copied
    db.record("alice", [MessageRow("INBOX", "1", "1", COPIED, size=50), MessageRow("INBOX", "1", "2", EXISTING)])
    # the folder's next pass replaces its skips; a skipped record and a second folder come on top
    _folder(db, "alice", "INBOX", {"older than": 1})
    _folder(db, "alice", "Sent", {})
    db.record("alice", [MessageRow("Sent", "1", "3", SKIPPED, reason="larger than", fingerprint="f1")])
    _run(db, "alice", 3.0)
    assert _figures(db)["alice"] == (2, 1, 1, 0, 50, {"larger than": 1, "older than": 1, SKIP_EXISTING: 1}, 3.0)
    # under other filters the skip is judged again; the folder recreated (new UIDVALIDITY) releases its records
    assert db.forget_skipped("alice", "Sent", "f2") == 1
    assert db.release_stale("alice", "INBOX", "2") == 2
    assert _figures(db)["alice"] == (2, 0, 0, 0, 0, {"older than": 1}, 3.0)
    # forgotten: no records left, and a new binding starts from nothing but the run history
    db.forget("alice")
    db.bind_account("alice", "imap://src", "alice")
    assert _figures(db)["alice"] == (0, 0, 0, 0, 0, {}, 3.0)
    assert db._db.execute("SELECT COUNT(*) FROM account_skips").fetchone() == (0,)
    db.close()


def test_an_account_bound_after_its_records_counts_them(tmp_path: Path) -> None:
    """Forgotten while a run of it was still recording: its next binding finds the records made since."""
    db = StateDB(tmp_path / "t.db")
    db.record("bob", [MessageRow("INBOX", "1", "1", COPIED, size=10), MessageRow("INBOX", "1", "2", FAILED)])
    _folder(db, "bob", "INBOX", {"too big": 1})
    db.bind_account("bob", "imap://src", "bob")
    assert _figures(db)["bob"] == (1, 1, 0, 1, 10, {"too big": 1}, 0.0)
    db.close()


def test_the_figures_kept_agree_with_a_count_of_the_records_after_random_work(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    rng = random.Random(14)
    db = StateDB(path)
    accounts = [f"user{i}" for i in range(6)]
    for account in accounts[:5]:
        db.bind_account(account, "imap://src", account)
    statuses = (COPIED, EXISTING, FAILED, SKIPPED)
    reasons = ("", "too big", "older than", "larger than")
    kept_seen = 0
    for step in range(400):
        if step % 25 == 0:
            kept_seen += _texts_follow_the_figures(db)
        account, folder = rng.choice(accounts), rng.choice(("INBOX", "Sent", "Archive"))
        validity = rng.choice("12")
        action = rng.random()
        if action < 0.55:
            db.record(account, [
                MessageRow(folder, validity, str(rng.randrange(30)), rng.choice(statuses), size=rng.randrange(5000),
                           reason=rng.choice(reasons), fingerprint=rng.choice(("f1", "f2")))
                for _ in range(rng.randrange(1, 6))
            ])  # fmt: skip
        elif action < 0.7:
            skips = {r: rng.randrange(4) for r in rng.sample((*reasons[1:], SKIP_EXISTING), 2)}
            _folder(db, account, folder, skips)
        elif action < 0.78:
            db.release_stale(account, folder, validity)
        elif action < 0.84:
            db.forget_skipped(account, folder, rng.choice(("f1", "f2")))
        elif action < 0.92:
            _run(db, account, round(rng.random() * 10, 2))
        elif action < 0.94:
            db.forget(account)
            db.bind_account(account, "imap://src", account)
        elif action < 0.97:
            db.set_account_status(account, rng.choice(("running", "complete", "partial")))
        else:
            db.bind_account(accounts[5], "imap://src", accounts[5])
    kept_seen += _texts_follow_the_figures(db)
    assert kept_seen > 10  # the report texts kept by the runs were read, not only written afresh
    kept = _figures(db)
    db.close()
    assert kept == _counted(path)
    assert sum(f[1] + f[3] for f in kept.values()) > 20  # the work left records to count


def _texts_follow_the_figures(db: StateDB) -> int:
    """Asserts that the report's texts are what the summaries make; returns how many were kept ones."""
    assert db.report_texts() == {account: report_text(s) for account, s in db.summaries().items()}
    return int(db._db.execute("SELECT count(report_text) FROM accounts").fetchone()[0])


def test_the_report_texts_are_kept_when_a_run_finishes_and_follow_any_change_after(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "t.db")
    for account in ("alice", "bob", "new"):
        db.bind_account(account, "imap://src", account)
    _folder(db, "alice", "INBOX", {"too big": 2, "Google Chat history (not mail)": 3, SKIP_EXISTING: 4})
    db.record("alice", [MessageRow("INBOX", "1", "1", COPIED, size=1280), MessageRow("INBOX", "1", "2", EXISTING)])
    db.set_account_status("alice", "complete")
    db.record("bob", [MessageRow("INBOX", "1", str(i), COPIED, size=3 * 1024**3) for i in range(3)])
    live = db.report_texts()
    _run(db, "alice", 1.25)  # finishes the run: the texts are written, as they read until then
    kept = db.report_texts()
    stored = dict(db._db.execute("SELECT account, report_text FROM accounts"))
    db.close()

    alice = ("complete; 1 folder(s), 1 copied, skipped: 1 already at the destination, "
             "3 Google Chat history (not mail), 2 too big, 0 failed, 1.3 KB, last run 1.3 s")  # fmt: skip
    assert kept["alice"] == stored["alice"] == alice
    assert (
        kept["bob"]
        == stored["bob"]
        == "pending; 0 folder(s), 3 copied, skipped: none, 0 failed, 9.0 GB, last run 0.0 s"
    )
    assert live["alice"] == alice.replace("1.3 s", "0.0 s")
    assert live["bob"] == kept["bob"]

    db = StateDB(tmp_path / "t.db")
    changes = (
        lambda: db.record("alice", [MessageRow("INBOX", "1", "3", FAILED, reason="refused")]),
        lambda: db.set_account_status("bob", "failed", error="login refused"),
        lambda: _folder(db, "new", "INBOX", {"too big": 1}),
        lambda: db.forget_skipped("alice", "INBOX", "f"),
        lambda: _folder(db, "alice", "INBOX", {SKIP_EXISTING: 4}),  # a reason gone from the skips
        # the skips written by some other statement than the triggers that also change the account's row
        lambda: db._db.execute("UPDATE account_skips SET n = n + 1 WHERE account = 'alice'"),
        lambda: db._db.execute("INSERT INTO account_skips VALUES ('alice', 'over quota', 2)"),
        lambda: db._db.execute("DELETE FROM account_skips WHERE account = 'alice' AND reason = 'over quota'"),
        lambda: db.forget("bob"),
    )
    for change in changes:
        _run(db, "new", 2.0)  # every text kept again
        assert db._db.execute("SELECT count(*) FROM accounts WHERE report_text IS NULL").fetchone() == (0,)
        change()
        _texts_follow_the_figures(db)
    assert "alice" in db.report_texts() and "bob" not in db.report_texts()
    db.close()


def _schema_2_database(path: Path) -> None:
    """A database as schema 2 left it: no report text, none of its triggers."""
    db = StateDB(path)
    db.bind_account("alice", "imap://src", "alice")
    db.record("alice", [MessageRow("INBOX", "1", "1", COPIED, size=100)])
    _run(db, "alice", 3.0)
    db.close()
    raw = sqlite3.connect(path)
    for (trigger,) in raw.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%text%'"
    ).fetchall():
        raw.execute(f"DROP TRIGGER {trigger}")
    raw.execute("ALTER TABLE accounts DROP COLUMN report_text")
    raw.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    raw.commit()
    raw.close()


def test_a_schema_2_database_is_reported_as_it_is_and_keeps_texts_once_migrated(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    _schema_2_database(path)
    text = "pending; 0 folder(s), 1 copied, skipped: none, 0 failed, 100 B, last run 3.0 s"
    reader = StateDB.open_readonly(path)
    assert reader.report_texts() == {"alice": text}
    reader.close()

    db = StateDB(path)  # migrated: the column is there, empty until a run finishes
    assert db._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (str(SCHEMA_VERSION),)
    assert db._db.execute("SELECT report_text FROM accounts").fetchall() == [(None,)]
    assert db.report_texts() == {"alice": text}
    _run(db, "alice", 3.0)
    assert db._db.execute("SELECT report_text FROM accounts").fetchall() == [(text,)]
    db.record("alice", [MessageRow("INBOX", "1", "2", COPIED, size=100)])
    assert db.report_texts() == {"alice": text.replace("1 copied", "2 copied").replace("100 B", "200 B")}
    db.close()


_SCHEMA_1_ROWS = (
    "INSERT INTO meta VALUES ('schema', '1')",
    "INSERT INTO accounts(account, source_identity, destination, status, completed_once, last_started, last_finished) "
    "VALUES ('alice', 'imap://src', 'alice-dst', 'complete', 1, 10.0, 20.0), ('bob', 'imap://src', 'bob', 'pending', 0, NULL, NULL)",
    "INSERT INTO folders VALUES ('alice', 'INBOX', '1', 'm', 'f', 'INBOX', '{\"too big\": 2, \"already at the destination\": 5}', 1, 0), "
    "('alice', 'Sent', '1', 'm', 'f', 'Sent', '{}', 1, 0)",
    "INSERT INTO messages(account, folder, validity, src_id, status, size, reason, time) VALUES "
    "('alice', 'INBOX', '1', '1', 'copied', 100, '', 0), ('alice', 'INBOX', '1', '2', 'existing', 7, '', 0), "
    "('alice', 'Sent', '1', '3', 'skipped', 9, 'larger than', 0), ('alice', 'Sent', '1', '4', 'failed', 1, 'x', 0)",
    "INSERT INTO runs(id, started, finished, status, pid) VALUES (1, 0, 1, 'completed', 1), (2, 2, 3, 'completed', 1)",
    "INSERT INTO account_runs(run_id, account, status, duration, started) VALUES (2, 'alice', 'complete', 4.5, 2), "
    "(1, 'alice', 'complete', 1.5, 0)",
)
_ALICE = (2, 1, 1, 1, 100, {"larger than": 1, "too big": 2, SKIP_EXISTING: 1}, 4.5)


def _schema_1_database(path: Path) -> None:
    raw = sqlite3.connect(path)
    raw.executescript(_SCHEMA_1 + ";".join(_SCHEMA_1_ROWS))
    raw.commit()
    raw.close()


def test_a_schema_1_database_is_read_as_it_is_and_migrated_by_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "state" / "t.db"
    path.parent.mkdir()
    _schema_1_database(path)
    before = path.read_bytes()
    reader = StateDB.open_readonly(path)
    assert _figures(reader) == {"alice": _ALICE, "bob": (0, 0, 0, 0, 0, {}, 0.0)}
    assert [tuple(p) for p in reader.progress().values()] == [
        ("complete", True, 10.0, 20.0, 1, 1, ""),
        ("pending", False, None, None, 0, 0, ""),
    ]
    assert _figures(reader) == _figures(reader)  # its stand-in tables are gone after each read
    reader.close()
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == ["t.db"]

    db = StateDB(path)
    assert db._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (str(SCHEMA_VERSION),)
    assert _figures(db)["alice"] == _ALICE
    db.record("alice", [MessageRow("Sent", "1", "4", COPIED, size=11)])  # the failed message, copied at last
    assert _figures(db)["alice"][1:5] == (2, 1, 0, 111)
    db.close()
    again = StateDB.open_readonly(path)
    assert _figures(again)["alice"][1:5] == (2, 1, 0, 111)
    again.close()


def test_a_database_of_a_newer_version_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    StateDB(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION + 1),))
    raw.commit()
    raw.close()
    for opener in (StateDB, StateDB.open_readonly):
        with pytest.raises(ConfigError) as caught:
            opener(path)
        assert str(path) in str(caught.value) and f"newer mailmig-tui (state schema {SCHEMA_VERSION + 1}" in str(
            caught.value
        )


# the state database as schema 1 made it
_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    account TEXT PRIMARY KEY,
    source_identity TEXT NOT NULL,
    destination TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    completed_once INTEGER NOT NULL DEFAULT 0,
    last_started REAL,
    last_finished REAL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS folders (
    account TEXT NOT NULL,
    folder TEXT NOT NULL,
    validity TEXT NOT NULL,
    marker TEXT NOT NULL,
    filters TEXT NOT NULL,
    dest_folder TEXT NOT NULL,
    skipped TEXT NOT NULL DEFAULT '{}',
    clean INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL,
    PRIMARY KEY (account, folder)
);
CREATE TABLE IF NOT EXISTS messages (
    account TEXT NOT NULL,
    folder TEXT NOT NULL,
    validity TEXT NOT NULL,
    src_id TEXT NOT NULL,
    status TEXT NOT NULL,
    dest_folder TEXT NOT NULL DEFAULT '',
    dest_validity INTEGER,
    dest_uid INTEGER,
    fingerprint TEXT NOT NULL DEFAULT '',
    size INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    time REAL NOT NULL,
    PRIMARY KEY (account, folder, validity, src_id)
);
CREATE INDEX IF NOT EXISTS messages_by_dest ON messages (account, dest_folder, status);
CREATE TABLE IF NOT EXISTS inflight (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    folder TEXT NOT NULL,
    validity TEXT NOT NULL,
    dest_folder TEXT NOT NULL,
    src_ids TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS append_speed (account TEXT PRIMARY KEY, bytes_per_s REAL NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL DEFAULT 'running',
    dry_run INTEGER NOT NULL DEFAULT 0,
    pid INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS account_runs (
    run_id INTEGER NOT NULL,
    account TEXT NOT NULL,
    status TEXT NOT NULL,
    folders INTEGER NOT NULL DEFAULT 0,
    copied INTEGER NOT NULL DEFAULT 0,
    skipped TEXT NOT NULL DEFAULT '{}',
    failed INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    duration REAL NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    started REAL NOT NULL,
    PRIMARY KEY (run_id, account)
);
"""
