"""A task's status as a front end shows it: running (in this process or another), last run, accounts done.

Derived from three facts the engine already keeps: the run lock (who runs the task now), the state
database (the last run and each account's status) and the task's user list. Nothing is written.
:class:`StatusReader` is cheap enough to poll about once a second: it re-reads a state database only
when its files changed.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from mailmig_tui.engine import runner, schedule, store
from mailmig_tui.engine.model import Task, account_keys
from mailmig_tui.engine.state import AccountProgress, AccountSummary, StateDB

T = TypeVar("T")

IDLE = "idle"
STARTING = "starting"
RUNNING = "running"
STOPPED = "stopped"
COMPLETED = "completed"
FAILED = "failed"

# The state database's run status -> what the admin is told. "interrupted" (a run killed outright) and
# "running" without anyone holding the lock (the process died) are resumable, like a stopped run.
_AFTER_RUN = {
    "completed": COMPLETED,
    "partial": FAILED,
    "failed": FAILED,
    "stopped": STOPPED,
    "interrupted": STOPPED,
    "running": STOPPED,
}


@dataclass(frozen=True)
class TaskStatus:
    state: str  # idle | starting | running | stopped | completed | failed
    accounts_done: int  # accounts of the user list that completed at least once
    accounts_total: int
    run_done: int = 0  # while running: accounts of this run that finished
    run_total: int = 0  # while running: accounts in this run (estimated for runs in other processes)
    run_running: int = 0  # while running: accounts being copied now
    holder: dict[str, Any] | None = None  # who holds the run lock: {pid, host, by, started}
    last_run: float | None = None  # when the last run started (epoch seconds)
    last_status: str | None = None  # the state database's word for it
    next_run: dt.datetime | None = None  # the schedule's next start, None when it is off

    @property
    def running(self) -> bool:
        return self.holder is not None


def _signature(db: Path) -> tuple[tuple[int, int] | None, ...]:
    """Changes whenever the database or its write-ahead log is written."""
    out: list[tuple[int, int] | None] = []
    for path in (db, db.with_name(db.name + "-wal")):
        try:
            st = path.stat()
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size))
    return tuple(out)


def files_signature(names: list[str], p: store.Paths | None = None) -> tuple[object, ...]:
    """Changes whenever a status shown for ``names`` can have changed: a task file added, removed or
    edited (its user list too), a state database or run lock written, and once a minute (the next scheduled start).
    A few stat calls: a screen polls this and reads statuses only when it changed."""
    p = p or store.paths()
    out: list[object] = [int(dt.datetime.now().timestamp() // 60)]
    try:
        files = [*p.tasks_dir.glob("*.toml"), *p.tasks_dir.glob(f"*{store.USERS_SUFFIX}")]
        out.append(tuple(sorted((f.name, f.stat().st_mtime_ns) for f in files)))
    except OSError:
        out.append(None)
    for name in names:
        out.append(_signature(p.state_file(name)))
        out.append(_signature(runner.lock_path(p, name))[0])
    return tuple(out)


class StatusReader:
    """Statuses of tasks, re-reading a state database only when its files changed. Thread-safe."""

    def __init__(self, p: store.Paths | None = None) -> None:
        self._paths = p
        self._cache: dict[tuple[str, str], tuple[object, Any, dict[str, Any] | None]] = {}
        self._reading: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def state(self, name: str) -> tuple[dict[str, AccountSummary], dict[str, Any] | None]:
        """The task's account summaries (by account key) and its last run, from the state database."""
        return self._read(name, "summaries", StateDB.summaries, {})

    def progress(self, name: str) -> tuple[dict[str, AccountProgress], dict[str, Any] | None]:
        """Where each account stands (by account key), without message figures, and the last run."""
        return self._read(name, "progress", StateDB.progress, {})

    def completed(self, name: str, keys: list[str]) -> tuple[int, dict[str, Any] | None]:
        """How many of the accounts ``keys`` completed at least once, and the last run (what the task list shows
        of a task that is not running)."""
        # the count depends on the keys too: an edited user list is counted again though the database is unchanged
        return self._read(name, "completed", lambda db: db.completed_count(keys), 0, hash(tuple(keys)))

    def _read(
        self, name: str, kind: str, read: Callable[[StateDB], T], empty: T, depends: object = None
    ) -> tuple[T, dict[str, Any] | None]:
        """``read(db)`` of the task's state database and its last run; what was read last while neither the
        database's files nor ``depends`` changed. ``empty``: the result when there is no database."""
        p = self._paths or store.paths()
        path = p.state_file(name)
        sig = (*_signature(path), depends)
        with self._lock:
            cached = self._cache.get((name, kind))
            reading = self._reading.setdefault((name, kind), threading.Lock())
        if cached is not None and cached[0] == sig:
            return cached[1], cached[2]
        # one read at a time per database and kind: a second caller (the task list's refresh while the
        # first read of 100,000 accounts runs) waits for the read under way and takes its result
        with reading:
            with self._lock:
                cached = self._cache.get((name, kind))
            if cached is not None and cached[0] == sig:
                return cached[1], cached[2]
            result, last = empty, None
            if sig[0] is not None:
                try:
                    db = StateDB.open_readonly(path)
                    try:
                        result, last = read(db), db.last_run()
                    finally:
                        db.close()
                except sqlite3.Error:
                    # a database being created right now (no tables yet): what was known before, read again next time
                    return (cached[1], cached[2]) if cached is not None else (empty, None)
            with self._lock:
                self._cache[(name, kind)] = (sig, result, last)
            return result, last

    def status(self, task: Task, now: dt.datetime | None = None) -> TaskStatus:
        p = self._paths or store.paths()
        holder = runner.lock_holder(runner.lock_path(p, task.name))
        keys = account_keys(task.users)
        done, last = self.completed(task.name, keys)
        last_started = float(last["started"]) if last else None
        next_run = schedule.next_run(task.schedule, now or dt.datetime.now(schedule.local_zone()))
        base = TaskStatus(
            IDLE,
            accounts_done=done,
            accounts_total=len(keys),
            last_run=last_started,
            last_status=last["status"] if last else None,
            next_run=next_run,
        )
        if holder is None:
            return replace(base, state=_AFTER_RUN.get(last["status"], STOPPED) if last else IDLE)
        since = holder.get("started")
        if isinstance(since, int | float) and (last_started is None or last_started < since):
            # the lock is held but the run is not registered yet (choosing accounts, checking the destination)
            return replace(base, state=STARTING, holder=holder)
        # while it runs: where each account stands (every account read, not only those counted)
        accounts, _ = self.progress(task.name)
        listed = set(keys)
        ref = last_started if last_started is not None else 0.0
        in_run = [s for k, s in accounts.items() if k in listed and (s.last_started or 0) >= ref]
        finished = sum(1 for s in in_run if s.status != "running" and (s.last_finished or 0) >= (s.last_started or 0))
        per_period = task.run.accounts_per_period
        expected = min(per_period, len(keys)) if per_period else len(keys)
        copying = sum(1 for s in in_run if s.status == "running")
        total = max(expected, len(in_run))
        return replace(base, state=RUNNING, run_done=finished, run_total=total, run_running=copying, holder=holder)


def task_status(task: Task, p: store.Paths | None = None, now: dt.datetime | None = None) -> TaskStatus:
    """One task's status, read now."""
    return StatusReader(p).status(task, now)
