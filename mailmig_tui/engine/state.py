"""Per-task SQLite state: what was copied where, so re-runs copy only what is new and never twice.

One database per task (``data/state/<task>.sqlite``), WAL mode, one connection per thread.

* ``accounts``: one row per source account: the source it is bound to, its status and last run, and
  its figures (folders, messages copied, found at the destination or failed, bytes, the last run's
  duration), which triggers keep up to date as its records change; ``account_skips`` holds its skips
  by reason. A report of 100,000 accounts reads those two tables, not millions of message records.
* ``folders``: per account and source folder: the folder's change marker (for IMAP UIDVALIDITY,
  UIDNEXT and MESSAGES) at the last clean pass, so an unchanged folder costs one STATUS.
* ``messages``: per source message (account, folder, validity, source id): ``copied`` (with the
  destination folder, UIDVALIDITY and UID from UIDPLUS) or ``existing`` (it was already at the
  destination) or ``failed`` (retried next time), plus a content fingerprint.
* ``inflight``: a batch on its way to the destination: written before its APPEND is sent, deleted
  in the transaction that records its outcome. A row left over means an APPEND whose fate is
  unknown (the run was killed, or its connection dropped): its bytes may still be on the link.
* ``append_speed``: per account, the slowest throughput an APPEND of a sizeable batch reached.
* ``runs`` / ``account_runs``: the history the summary and ``report`` show.

Schema 2 added the figures. A schema 1 database is migrated (its figures counted once) by the first
connection that may write; one opened read-only counts them into temporary tables when summarised.
Schema 3 added ``report_text``, each account's line in ``report`` as its figures stood when a run
finished (:meth:`StateDB.report_texts`); a trigger empties it as soon as any of them changes.

A message is recorded in the same transaction as the batch it was appended in. A crash between
APPEND and COMMIT leaves unclaimed messages at the destination; the next pass finds them by
fingerprint (see :meth:`StateDB.claimed`) and records them instead of copying them again. Those
of a batch still in flight are held back until the destination folder has settled (migrate.py).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from mailmig_tui.engine.skips import SKIP_EXISTING, skips_text
from mailmig_tui.engine.store import ConfigError
from mailmig_tui.engine.units import human_bytes, human_bytes_sql, tenths, tenths_sql

SCHEMA_VERSION = 3

T = TypeVar("T")

COPIED = "copied"
EXISTING = "existing"
FAILED = "failed"
# Filtered out only once downloaded (a source that lists sizes as bounds: Gmail): recorded so that
# later passes do not download it again. Such a row's ``fingerprint`` is the filters it was judged
# under (migrate.filters_key): under other filters it is judged again.
SKIPPED = "skipped"

# An account's figures, kept in its row by the triggers below as its records change (schema 2), so
# that a report of 100,000 accounts reads one table instead of grouping millions of message records.
_FIGURE_COLUMNS = (
    "folders INTEGER NOT NULL DEFAULT 0",
    "copied INTEGER NOT NULL DEFAULT 0",
    "existing INTEGER NOT NULL DEFAULT 0",
    "failed INTEGER NOT NULL DEFAULT 0",
    "bytes INTEGER NOT NULL DEFAULT 0",
    "last_run INTEGER",
    "last_duration REAL",
)

# The account's report_text (SQL below) while it is what its figures make: NULL once any changes.
_REPORT_TEXT_COLUMN = "report_text TEXT"
_REPORT_TEXT_OF = ("status", "folders", "copied", "existing", "failed", "bytes", "last_duration")  # and its skips

_RUNS_BY_ACCOUNT = "CREATE INDEX IF NOT EXISTS account_runs_by_account ON account_runs (account, run_id)"
# Per account and reason, how many messages were skipped: the folders' skips of their last pass
# (but mail found at the destination: the account's ``existing``, from its records) plus the skipped
# records.
_ACCOUNT_SKIPS = """CREATE TABLE IF NOT EXISTS account_skips (
    account TEXT NOT NULL,
    reason TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (account, reason)
)"""

# The failed messages, which a report lists, without a walk through all the others.
_FAILED_MESSAGES = (
    f"CREATE INDEX IF NOT EXISTS messages_failed ON messages (account, folder, src_id) WHERE status = '{FAILED}'"
)

_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"""CREATE TABLE IF NOT EXISTS accounts (
    account TEXT PRIMARY KEY,
    source_identity TEXT NOT NULL,
    destination TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    completed_once INTEGER NOT NULL DEFAULT 0,
    last_started REAL,
    last_finished REAL,
    last_error TEXT NOT NULL DEFAULT '',
    {", ".join(_FIGURE_COLUMNS)},
    {_REPORT_TEXT_COLUMN}
)""",
    """CREATE TABLE IF NOT EXISTS folders (
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
)""",
    """CREATE TABLE IF NOT EXISTS messages (
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
)""",
    "CREATE INDEX IF NOT EXISTS messages_by_dest ON messages (account, dest_folder, status)",
    _FAILED_MESSAGES,
    """CREATE TABLE IF NOT EXISTS inflight (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    folder TEXT NOT NULL,
    validity TEXT NOT NULL,
    dest_folder TEXT NOT NULL,
    src_ids TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    started REAL NOT NULL
)""",
    "CREATE TABLE IF NOT EXISTS append_speed (account TEXT PRIMARY KEY, bytes_per_s REAL NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL DEFAULT 'running',
    dry_run INTEGER NOT NULL DEFAULT 0,
    pid INTEGER NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS account_runs (
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
)""",
    _RUNS_BY_ACCOUNT,
    _ACCOUNT_SKIPS,
)


def _recount(where: str) -> str:
    """The UPDATE that sets the figures of the accounts ``where`` selects from their records."""
    return f"""UPDATE accounts SET
    folders = (SELECT COUNT(*) FROM folders f WHERE f.account = accounts.account),
    (copied, existing, failed, bytes) = (
        SELECT COALESCE(SUM(m.status = '{COPIED}'), 0), COALESCE(SUM(m.status = '{EXISTING}'), 0),
            COALESCE(SUM(m.status = '{FAILED}'), 0), COALESCE(SUM(CASE WHEN m.status = '{COPIED}' THEN m.size END), 0)
        FROM messages m WHERE m.account = accounts.account),
    (last_run, last_duration) = (
        SELECT r.run_id, r.duration FROM account_runs r WHERE r.account = accounts.account ORDER BY r.run_id DESC LIMIT 1)
    {where}"""


_RECOUNT_SKIPS = f"""INSERT INTO account_skips(account, reason, n)
    SELECT account, reason, SUM(n) FROM (
        SELECT f.account AS account, j.key AS reason, j.value AS n FROM folders f, json_each(f.skipped) j
            WHERE j.key != '{SKIP_EXISTING}'
        UNION ALL SELECT account, reason, 1 FROM messages WHERE status = '{SKIPPED}')
    GROUP BY account, reason HAVING SUM(n) != 0"""


def _message_figures(row: str, sign: str) -> str:
    """Statements that add (``sign`` "+") or take away ("-") message record ``row`` (NEW or OLD)."""
    return f"""UPDATE accounts SET copied = copied {sign} ({row}.status = '{COPIED}'),
        existing = existing {sign} ({row}.status = '{EXISTING}'), failed = failed {sign} ({row}.status = '{FAILED}'),
        bytes = bytes {sign} (CASE WHEN {row}.status = '{COPIED}' THEN {row}.size ELSE 0 END)
        WHERE account = {row}.account;
    INSERT INTO account_skips(account, reason, n) SELECT {row}.account, {row}.reason, {sign}1
        WHERE {row}.status = '{SKIPPED}' ON CONFLICT(account, reason) DO UPDATE SET n = n + excluded.n;"""


def _folder_figures(row: str, sign: str) -> str:
    """Statements that add or take away folder row ``row``: one folder, and the skips of its last pass."""
    return f"""UPDATE accounts SET folders = folders {sign} 1 WHERE account = {row}.account;
    INSERT INTO account_skips(account, reason, n) SELECT {row}.account, j.key, {sign}j.value
        FROM json_each({row}.skipped) j WHERE j.key != '{SKIP_EXISTING}'
        ON CONFLICT(account, reason) DO UPDATE SET n = n + excluded.n;"""


# The figures follow every change of the records, whichever statement makes it. The writes are upserts
# (an INSERT OR REPLACE would delete a row without firing its DELETE trigger).
_TRIGGERS = (
    f"CREATE TRIGGER IF NOT EXISTS messages_added AFTER INSERT ON messages BEGIN {_message_figures('NEW', '+')} END",
    f"CREATE TRIGGER IF NOT EXISTS messages_removed AFTER DELETE ON messages BEGIN {_message_figures('OLD', '-')} END",
    "CREATE TRIGGER IF NOT EXISTS messages_changed AFTER UPDATE OF account, status, size, reason ON messages "
    f"BEGIN {_message_figures('OLD', '-')} {_message_figures('NEW', '+')} END",
    f"CREATE TRIGGER IF NOT EXISTS folders_added AFTER INSERT ON folders BEGIN {_folder_figures('NEW', '+')} END",
    f"CREATE TRIGGER IF NOT EXISTS folders_removed AFTER DELETE ON folders BEGIN {_folder_figures('OLD', '-')} END",
    "CREATE TRIGGER IF NOT EXISTS folders_changed AFTER UPDATE OF account, skipped ON folders "
    f"BEGIN {_folder_figures('OLD', '-')} {_folder_figures('NEW', '+')} END",
    "CREATE TRIGGER IF NOT EXISTS account_run_added AFTER INSERT ON account_runs BEGIN "
    "UPDATE accounts SET last_run = NEW.run_id, last_duration = NEW.duration "
    "WHERE account = NEW.account AND (last_run IS NULL OR last_run <= NEW.run_id); END",
    # an account's row made after records of it (its state forgotten while a run was recording)
    f"CREATE TRIGGER IF NOT EXISTS account_added AFTER INSERT ON accounts BEGIN "
    f"{_recount('WHERE account = NEW.account')}; END",
    # the kept report text goes with any change of what it shows (the UPDATE that writes it changes none);
    # the skips' triggers above change the account's row too, those below catch any other writer of them
    f"CREATE TRIGGER IF NOT EXISTS account_text_stale AFTER UPDATE OF {', '.join(_REPORT_TEXT_OF)} ON accounts "
    "WHEN OLD.report_text IS NOT NULL BEGIN UPDATE accounts SET report_text = NULL WHERE account = NEW.account; END",
    *(
        f"CREATE TRIGGER IF NOT EXISTS account_skips_{event.lower()}_text_stale AFTER {event} ON account_skips BEGIN "
        + "".join(
            f"UPDATE accounts SET report_text = NULL WHERE account = {row}.account AND report_text IS NOT NULL; "
            for row in rows
        )
        + "END"
        for event, rows in (("INSERT", ("NEW",)), ("UPDATE", ("OLD", "NEW")), ("DELETE", ("OLD",)))
    ),
)


class StateUnreadable(ConfigError):
    """The state database cannot be read (garbage, truncated): the message names the file and the fix."""

    def __init__(self, path: Path, exc: Exception) -> None:
        if any(word in str(exc) for word in ("full", "readonly", "unable to open", "disk I/O")):
            super().__init__(
                path,
                [f"the task's state database cannot be written ({exc}). Fix: free space on its disk, or fix its "
                 "permissions, and run again (the copy resumes where it stopped)"],
            )  # fmt: skip
            return
        super().__init__(
            path,
            [
                f"the task's state database cannot be read ({exc}). Fix: move it aside "
                f'(mv "{path}" "{path}.broken", with its -wal and -shm files if any); the next run rescans '
                "the accounts and recognises the mail already at the destination, so nothing is copied twice"
            ],
        )


class StateMismatch(Exception):
    """The stored state belongs to another source than the task now names."""


@dataclass(frozen=True)
class FolderRow:
    validity: str
    marker: str
    filters: str
    dest_folder: str
    skipped: Counter[str]
    clean: bool


@dataclass(frozen=True)
class MessageRow:
    folder: str
    validity: str
    src_id: str
    status: str
    dest_folder: str = ""
    dest_validity: int | None = None
    dest_uid: int | None = None
    fingerprint: str = ""
    size: int = 0
    reason: str = ""


@dataclass(frozen=True)
class Inflight:
    """A batch whose APPEND was sent and whose outcome was never recorded."""

    id: int
    folder: str
    validity: str
    dest_folder: str
    src_ids: frozenset[str]
    bytes: int


# Batches smaller than this say more about the round trip than about the link's throughput.
SPEED_SAMPLE_BYTES = 256 * 1024


class AccountSummary(NamedTuple):
    """One account's figures. A named tuple: a report builds one per account (100,000 of them), and a
    frozen dataclass costs ten times as much to build."""

    account: str
    destination: str
    status: str
    folders: int
    copied: int
    existing: int
    skipped: Mapping[str, int]  # by reason; an account without skips shares one empty mapping
    failed: int
    bytes: int
    last_started: float | None
    last_finished: float | None
    last_duration: float
    last_error: str


class AccountProgress(NamedTuple):
    """Where one account stands, from its row alone (no skips, no run history): what the task list and
    the editor's user list show."""

    status: str
    completed_once: bool
    last_started: float | None
    last_finished: float | None
    copied: int
    failed: int
    last_error: str


_NO_SKIPS: Mapping[str, int] = MappingProxyType({})


def report_text(s: AccountSummary) -> str:
    """An account's figures as ``report`` writes them after its name: what :meth:`StateDB.report_texts`
    writes in SQL for every account at once."""
    return (
        f"{s.status}; {s.folders} folder(s), {s.copied} copied, skipped: {skips_text(s.skipped)}, {s.failed} failed, "
        f"{human_bytes(s.bytes, 'B')}, last run {tenths(s.last_duration)} s"
    )


# report_text in SQL, of the row ``a`` of the accounts: mail already at the destination, then the other
# skips by reason, as skips_text orders them (the index of the skips' key has them in that order), in one
# printf; tests/engine/test_state.py compares the two.
_SKIPS_SQL = (
    "(SELECT group_concat(x, ', ') FROM (SELECT n || ' ' || reason AS x FROM account_skips k "
    "WHERE k.account = a.account AND n != 0 ORDER BY reason))"
)
_REPORT_TEXT_SQL = (
    "printf('%s; %d folder(s), %d copied, skipped: %s, %d failed, %s, last run %s s', a.status, a.folders, a.copied, "
    f"CASE WHEN a.existing THEN a.existing || ' ' || :existing || COALESCE(', ' || {_SKIPS_SQL}, '') "
    f"ELSE COALESCE({_SKIPS_SQL}, 'none') END, "
    f"a.failed, {human_bytes_sql('a.bytes', 'B')}, {tenths_sql('a.last_duration')})"
)


class StateDB:
    """A connection to one task's state database. Not shared between threads: open one per thread."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        try:
            self._open(path, readonly)
        except (sqlite3.DatabaseError, ConfigError) as exc:  # not a database, truncated, or from a newer version
            db = getattr(self, "_db", None)
            if db is not None:
                db.close()
            if isinstance(exc, ConfigError):
                raise
            raise StateUnreadable(path, exc) from None

    def _open(self, path: Path, readonly: bool) -> None:
        self._legacy = False
        self._kept_texts = True  # a report_text column (schema 3)
        if readonly:
            # A dry run reads what exists and writes nothing anywhere: no file is created. A reader of a
            # WAL database leaves -wal/-shm files behind, so unless a run's WAL is there (running or
            # killed) the file is opened as immutable; the path is quoted (a task name may hold "?" or "#").
            wal = path.with_name(path.name + "-wal").exists()
            uri = f"file:{urllib.parse.quote(str(path))}?mode=ro{'' if wal else '&immutable=1'}"
            target = uri if path.exists() else "file::memory:"
            self._db = sqlite3.connect(target, uri=True, isolation_level=None, check_same_thread=False)
            if path.exists():
                version = self._schema()
                self._legacy = version == 1  # its figures are counted when read (_counted_figures)
                self._kept_texts = version is None or version >= 3
                return
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=60000")
        with self.transaction():
            version = self._schema()
            if version == SCHEMA_VERSION:
                return  # each stream's connection of a run opens it: nothing to create
            if version == 1:  # the accounts' figures, counted once from their records, then kept by triggers
                self._add_figures("main")
            if version in (1, 2):  # no report text kept yet: each written by the run that finishes next
                self._db.execute(f"ALTER TABLE accounts ADD COLUMN {_REPORT_TEXT_COLUMN}")
            for statement in (*_TABLES, *_TRIGGERS):
                self._db.execute(statement)
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES ('schema', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )

    def _schema(self) -> int | None:
        """The schema version of the open database (None: a new one); refuses one newer than this code."""
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        version = int(row[0]) if row else None
        if version is not None and version > SCHEMA_VERSION:
            raise ConfigError(
                self.path,
                [f"the task's state database was written by a newer mailmig-tui (state schema {version}; this "
                 f"version reads up to {SCHEMA_VERSION}). Fix: run the task with that newer mailmig-tui"],
            )  # fmt: skip
        return version

    def _add_figures(self, schema: str) -> None:
        """Schema 1 to 2 in ``schema`` ("main", or "temp" where stand-ins of the accounts and their run
        history were made): the figure columns and the skips table, counted from the records."""
        for column in _FIGURE_COLUMNS:
            self._db.execute(f"ALTER TABLE {schema}.accounts ADD COLUMN {column}")
        for statement in (_RUNS_BY_ACCOUNT, _ACCOUNT_SKIPS):
            self._db.execute(statement.replace("IF NOT EXISTS ", f"IF NOT EXISTS {schema}."))
        self._db.execute(_recount(""))  # unqualified: temp's stand-ins first, where there are any
        self._db.execute(_RECOUNT_SKIPS)

    @classmethod
    def open_readonly(cls, path: Path) -> StateDB:
        return cls(path, readonly=True)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ----------------------------------------------------------------------------------------
    # Accounts.

    def bind_account(self, account: str, identity: str, destination: str) -> None:
        """Tie an account's state to its source; refuse to reuse state made with another source."""
        with self.transaction() as db:
            row = db.execute("SELECT source_identity FROM accounts WHERE account = ?", (account,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO accounts(account, source_identity, destination) VALUES (?, ?, ?)",
                    (account, identity, destination),
                )
            elif row[0] != identity:
                raise StateMismatch(
                    f"the saved state of {account} was made with source {row[0]}, but the task now reads "
                    f"{identity}. To start over from the new source, run: mailmig-tui forget TASK --account {account} "
                    "(mail already at the destination is still recognised and not copied twice)"
                )
            else:
                db.execute("UPDATE accounts SET destination = ? WHERE account = ?", (destination, account))

    def account_status(self, account: str) -> tuple[str, bool] | None:
        row = self._db.execute("SELECT status, completed_once FROM accounts WHERE account = ?", (account,)).fetchone()
        return (row[0], bool(row[1])) if row else None

    def set_account_status(self, account: str, status: str, *, error: str = "") -> None:
        now = time.time()
        with self.transaction() as db:
            if status == "running":
                db.execute(
                    "UPDATE accounts SET status = ?, last_started = ?, last_error = '' WHERE account = ?",
                    (status, now, account),
                )
            else:
                db.execute(
                    "UPDATE accounts SET status = ?, last_finished = ?, last_error = ?, "
                    "completed_once = completed_once OR ? WHERE account = ?",
                    (status, now, error, status in ("complete", "partial"), account),
                )

    def forget(self, account: str | None = None) -> None:
        """Drop the state of one account (or all): the next run rescans and matches by fingerprint."""
        with self.transaction() as db:
            # the accounts first: the triggers of the records deleted then have no figures to keep
            for table in ("accounts", "folders", "messages", "account_skips"):
                if account is None:
                    db.execute(f"DELETE FROM {table}")
                else:
                    db.execute(f"DELETE FROM {table} WHERE account = ?", (account,))

    # ----------------------------------------------------------------------------------------
    # Folders and messages.

    def folder(self, account: str, folder: str) -> FolderRow | None:
        row = self._db.execute(
            "SELECT validity, marker, filters, dest_folder, skipped, clean FROM folders WHERE account = ? AND folder = ?",
            (account, folder),
        ).fetchone()
        if row is None:
            return None
        return FolderRow(row[0], row[1], row[2], row[3], Counter(json.loads(row[4])), bool(row[5]))

    def save_folder(
        self,
        account: str,
        folder: str,
        *,
        validity: str,
        marker: str,
        filters: str,
        dest_folder: str,
        skipped: Counter[str],
        clean: bool,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO folders(account, folder, validity, marker, filters, dest_folder, skipped, clean, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(account, folder) DO UPDATE SET "
                "validity = excluded.validity, marker = excluded.marker, filters = excluded.filters, "
                "dest_folder = excluded.dest_folder, skipped = excluded.skipped, clean = excluded.clean, "
                "updated = excluded.updated",
                (account, folder, validity, marker, filters, dest_folder, json.dumps(skipped), clean, time.time()),
            )

    def known_ids(self, account: str, folder: str, validity: str) -> set[str]:
        """Source ids already dealt with: at the destination (copied, or found there), or skipped."""
        rows = self._db.execute(
            "SELECT src_id FROM messages WHERE account = ? AND folder = ? AND validity = ? AND status != ?",
            (account, folder, validity, FAILED),
        )
        return {r[0] for r in rows}

    def forget_skipped(self, account: str, folder: str, filters: str) -> int:
        """Drop a folder's recorded skips judged under other ``filters`` (they are judged again); how many."""
        with self.transaction() as db:
            cur = db.execute(
                "DELETE FROM messages WHERE account = ? AND folder = ? AND status = ? AND fingerprint != ?",
                (account, folder, SKIPPED, filters),
            )
            return cur.rowcount

    def release_stale(self, account: str, folder: str, validity: str) -> int:
        """Drop a source folder's records made under another UIDVALIDITY; return how many there were.

        Their source ids mean nothing any more, and their destination copies must not stay claimed:
        released, they are matched by fingerprint like mail that was there before the first run.
        """
        with self.transaction() as db:
            cur = db.execute(
                "DELETE FROM messages WHERE account = ? AND folder = ? AND validity != ?", (account, folder, validity)
            )
            return cur.rowcount

    def begin_inflight(
        self, account: str, folder: str, validity: str, dest_folder: str, src_ids: Iterable[str], size: int
    ) -> int:
        """Note a batch about to be appended (committed before the APPEND is sent); its row id."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO inflight(account, folder, validity, dest_folder, src_ids, bytes, started) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (account, folder, validity, dest_folder, json.dumps(sorted(src_ids)), size, time.time()),
            )
            return int(cur.lastrowid or 0)

    def inflight(self, account: str) -> list[Inflight]:
        """The account's batches whose APPEND outcome is unknown (from a killed run or a lost connection)."""
        rows = self._db.execute(
            "SELECT id, folder, validity, dest_folder, src_ids, bytes FROM inflight WHERE account = ? ORDER BY id",
            (account,),
        )
        return [Inflight(r[0], r[1], r[2], r[3], frozenset(json.loads(r[4])), r[5]) for r in rows]

    def clear_inflight(self, ids: Iterable[int]) -> None:
        with self.transaction() as db:
            db.executemany("DELETE FROM inflight WHERE id = ?", [(i,) for i in ids])

    def append_speed(self, account: str) -> float | None:
        row = self._db.execute("SELECT bytes_per_s FROM append_speed WHERE account = ?", (account,)).fetchone()
        return float(row[0]) if row else None

    def record(
        self,
        account: str,
        rows: Iterable[MessageRow],
        *,
        inflight: int | None = None,
        sample: tuple[int, float] | None = None,
    ) -> None:
        """Record a batch of message outcomes in one transaction; with ``inflight``, the batch's
        in-flight note goes in the same transaction. ``sample`` (bytes, seconds) is how fast its
        APPEND went: the account's slowest sizeable one is kept."""
        now = time.time()
        with self.transaction() as db:
            if inflight is not None:
                db.execute("DELETE FROM inflight WHERE id = ?", (inflight,))
            if sample is not None and sample[0] >= SPEED_SAMPLE_BYTES and sample[1] > 0:
                db.execute(
                    "INSERT INTO append_speed(account, bytes_per_s) VALUES (?, ?) "
                    "ON CONFLICT(account) DO UPDATE SET bytes_per_s = min(bytes_per_s, excluded.bytes_per_s)",
                    (account, sample[0] / sample[1]),
                )
            db.executemany(
                "INSERT INTO messages(account, folder, validity, src_id, status, dest_folder, dest_validity, "
                "dest_uid, fingerprint, size, reason, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(account, folder, validity, src_id) DO UPDATE SET status = excluded.status, "
                "dest_folder = excluded.dest_folder, dest_validity = excluded.dest_validity, "
                "dest_uid = excluded.dest_uid, fingerprint = excluded.fingerprint, size = excluded.size, "
                "reason = excluded.reason, time = excluded.time",
                [
                    (
                        account,
                        r.folder,
                        r.validity,
                        r.src_id,
                        r.status,
                        r.dest_folder,
                        r.dest_validity,
                        r.dest_uid,
                        r.fingerprint,
                        r.size,
                        r.reason,
                        now,
                    )
                    for r in rows
                ],
            )

    def claimed(self, account: str, dest_folder: str, dest_validity: int) -> tuple[set[int], Counter[str]]:
        """What this task already owns in a destination folder.

        Returns the destination UIDs recorded for it (under the folder's current UIDVALIDITY), and the
        fingerprints of recorded messages whose UID is unknown (no UIDPLUS, or the folder was recreated):
        those are matched by count against the destination's unclaimed messages.
        """
        uids: set[int] = set()
        unknown: Counter[str] = Counter()
        rows = self._db.execute(
            "SELECT dest_uid, dest_validity, fingerprint FROM messages "
            "WHERE account = ? AND dest_folder = ? AND status NOT IN (?, ?)",
            (account, dest_folder, FAILED, SKIPPED),
        )
        for uid, validity, fingerprint in rows:
            if uid is not None and validity == dest_validity:
                uids.add(uid)
            else:
                unknown[fingerprint] += 1
        return uids, unknown

    # ----------------------------------------------------------------------------------------
    # Runs and summaries.

    def start_run(self, dry_run: bool, started: float | None = None) -> int:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status = 'interrupted', finished = started WHERE finished IS NULL AND pid != ?",
                (os.getpid(),),
            )
            cur = db.execute(
                "INSERT INTO runs(started, dry_run, pid) VALUES (?, ?, ?)",
                (time.time() if started is None else started, dry_run, os.getpid()),
            )
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, status: str) -> None:
        """The run's end; the report texts of the accounts whose figures changed are written (a report of
        100,000 accounts then reads them instead of writing each: :meth:`report_texts`)."""
        with self.transaction() as db:
            db.execute("UPDATE runs SET finished = ?, status = ? WHERE id = ?", (time.time(), status, run_id))
            db.execute(
                f"UPDATE accounts AS a SET report_text = {_REPORT_TEXT_SQL} WHERE report_text IS NULL",
                {"existing": SKIP_EXISTING},
            )

    def record_account_run(self, run_id: int, result: Any, started: float) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO account_runs(run_id, account, status, folders, copied, skipped, failed, bytes, "
                "duration, error, started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    result.account,
                    result.status,
                    result.folders,
                    result.copied,
                    json.dumps(dict(result.skipped)),
                    result.failed,
                    result.bytes,
                    result.duration,
                    result.error,
                    started,
                ),
            )

    def last_run(self) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT id, started, finished, status, dry_run FROM runs WHERE dry_run = 0 ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return {"id": row[0], "started": row[1], "finished": row[2], "status": row[3]}

    def summaries(self) -> dict[str, AccountSummary]:
        """Per account: its figures (kept in its row as its records change) and its latest run's duration.

        Two reads of small tables, none of the message records (issue 14: 100,000 accounts)."""
        return self._figures_read(self._summaries)

    def _summaries(self) -> dict[str, AccountSummary]:
        skips: dict[str, dict[str, int]] = {}  # plain dicts: a Counter each costs 100,000 calls of its __init__
        for account, reason, n in self._db.execute(
            "SELECT account, reason, n FROM account_skips WHERE n != 0 ORDER BY account, reason"
        ):
            skips.setdefault(account, {})[reason] = n
        none, out = _NO_SKIPS, {}
        statuses: dict[str, str] = {}  # one string of each status (a few) for 100,000 accounts
        for account, destination, status, folders, copied, existing, failed, size, started, finished, took, error in (
            self._db.execute(
                "SELECT account, destination, status, folders, copied, existing, failed, bytes, "
                "last_started, last_finished, COALESCE(last_duration, 0.0), last_error FROM accounts"
            )
        ):  # fmt: skip
            skipped = skips.get(account, none)
            if existing:  # mail found at the destination: a reason of its own, first
                skipped = {SKIP_EXISTING: existing} if skipped is none else {SKIP_EXISTING: existing, **skipped}
            out[account] = AccountSummary(
                account, destination, statuses.setdefault(status, status), folders, copied, existing, skipped,
                failed, size, started, finished, took, error,
            )  # fmt: skip
        return out

    def report_texts(self) -> dict[str, str]:
        """Per account, :func:`report_text` of its summary: the text kept since the last run finished, or
        where its figures changed since, written by SQLite. In one step of one statement.

        For 100,000 accounts: 0.1 s where every text is kept, 0.35 s where none is (a run still going,
        or killed), most of it in SQLite, which does not hold the interpreter meanwhile (``report`` reads
        the task's user list); summaries() and formatting each line in Python held it for 0.5 s. One step:
        a statement stepped row by row takes the interpreter back for each row, and waits for it while
        another thread holds it."""
        return self._figures_read(self._report_texts)

    def _report_texts(self) -> dict[str, str]:
        text_sql = f"COALESCE(a.report_text, {_REPORT_TEXT_SQL})" if self._kept_texts else _REPORT_TEXT_SQL
        (text,) = self._db.execute(
            f"SELECT json_group_object(a.account, {text_sql}) FROM accounts a", {"existing": SKIP_EXISTING}
        ).fetchone()
        texts: dict[str, str] = json.loads(text)
        return texts

    def last_errors(self) -> dict[str, str]:
        """The accounts whose last run ended with an error, and that error."""
        return self._figures_read(
            lambda: dict(self._db.execute("SELECT account, last_error FROM accounts WHERE last_error != ''"))
        )

    def _figures_read(self, read: Callable[[], T]) -> T:
        """``read()`` of the accounts' figures; a schema 1 file's are counted first (:meth:`_counted_figures`)."""
        if not self._legacy:
            return read()
        with self._counted_figures():
            return read()

    @contextmanager
    def _counted_figures(self) -> Iterator[None]:
        """For a schema 1 database opened read-only: its figures counted from its records into temporary
        tables that stand in for the accounts and their skips while they are read (the next run's write
        migrates the file)."""
        db = self._db
        db.execute("CREATE TEMP TABLE accounts AS SELECT * FROM main.accounts")
        db.execute("CREATE TEMP TABLE account_runs AS SELECT run_id, account, duration FROM main.account_runs")
        try:
            self._add_figures("temp")
            yield
        finally:
            for table in ("accounts", "account_runs", "account_skips"):
                db.execute(f"DROP TABLE IF EXISTS temp.{table}")

    def progress(self) -> dict[str, AccountProgress]:
        """Per account, where it stands: one read of the accounts table and none of the messages
        (a run's millions of message records), so that a list polling every changed state stays cheap."""
        return self._figures_read(self._progress)

    def _progress(self) -> dict[str, AccountProgress]:
        return {
            account: AccountProgress(status, once != 0, started, finished, copied, failed, error)
            for account, status, once, started, finished, copied, failed, error in self._db.execute(
                "SELECT account, status, completed_once, last_started, last_finished, copied, failed, last_error "
                "FROM accounts"
            )
        }

    def completed_count(self, accounts: Sequence[str]) -> int:
        """How many of ``accounts`` (account keys; one counted as often as it is given) completed at least once.

        Counted by SQLite in one step, during which Python's other threads run: the task list's count for
        100,000 accounts holds the interpreter for about 30 ms of its 70, where building each account's
        :class:`AccountProgress` held it for 300 and slowed the screen opened meanwhile by as much."""
        row = self._db.execute(
            "SELECT count(*) FROM json_each(?) JOIN accounts ON account = value WHERE completed_once",
            (json.dumps(list(accounts)),),
        ).fetchone()
        return int(row[0])

    def failed_by_account(self) -> dict[str, list[tuple[str, str, str]]]:
        """Every account's failed messages (folder, source id, reason), in one query."""
        out: dict[str, list[tuple[str, str, str]]] = {}
        for account, folder, src_id, reason in self._db.execute(
            f"SELECT account, folder, src_id, reason FROM messages WHERE status = '{FAILED}' "
            "ORDER BY account, folder, src_id"
        ):
            out.setdefault(account, []).append((folder, src_id, reason))
        return out

    def failed_messages(self, account: str) -> list[tuple[str, str, str]]:
        return self._db.execute(
            f"SELECT folder, src_id, reason FROM messages WHERE account = ? AND status = '{FAILED}' "
            "ORDER BY folder, src_id",
            (account,),
        ).fetchall()
