"""A task run: which accounts, how many at once, retries, the lock, the log file, the events.

The same function serves the CLI, the scheduler and the TUI (in a thread worker). It never raises
for one account's failure: each account ends complete, failed (with the reason) or stopped.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mailmig_tui.engine import imapconn, store
from mailmig_tui.engine.destination import DestinationMailbox, OverQuota
from mailmig_tui.engine.events import (
    AccountFinished,
    AccountResult,
    AccountStarted,
    FanOut,
    RunFinished,
    RunStarted,
    Sink,
)
from mailmig_tui.engine.logfile import LogWriter, Redactor
from mailmig_tui.engine.migrate import AccountContext, ByteBudget, Cancelled, FolderReport, Limits, migrate_account
from mailmig_tui.engine.model import Settings, Task, User, account_key
from mailmig_tui.engine.sources.base import Source, identity_of
from mailmig_tui.engine.state import StateDB, StateMismatch

RETRIES = 3
BACKOFF_S = (2.0, 6.0, 15.0)
DEFAULT_BUDGET = 256 * 1024 * 1024


class RunError(Exception):
    """The run could not start (exit code 3): locked by another run, destination unreachable…"""


class RunConfigError(Exception):
    """The run was asked for something the task does not have (exit code 2)."""


@dataclass
class RunResult:
    status: str  # completed | partial | failed | stopped
    accounts: list[AccountResult] = field(default_factory=list)
    reports: dict[str, list[FolderReport]] = field(default_factory=dict)
    peak_budget: int = 0


def secrets_of(task: Task, settings: Settings) -> list[str]:
    values = [
        task.source.delegate.password,
        task.source.client_secret,
        settings.destination.password,
        settings.smtp.password,
    ]
    for u in task.users:
        values += [u.password, u.destination_password]
    return [v for v in values if v]


# --------------------------------------------------------------------------------------------
# The per-task lock: one run of a task at a time, across processes.


class TaskLock:
    """An exclusive flock on ``data/state/<task>.lock``; the file says who holds it."""

    def __init__(self, path: Path, by: str) -> None:
        self.path = path
        self.by = by
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = lock_holder(self.path)
            who = (
                f"{holder.get('by', '?')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')})"
                if holder
                else "?"
            )
            raise RunError(f"the task is already running: {who}; stop that run first") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "by": self.by, "started": time.time()}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> TaskLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_holder(path: Path) -> dict | None:
    """Who runs the task now ({pid, host, by, started}), or None when nobody does."""
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return json.loads(path.read_text() or "{}") or {"by": "?"}
            except (OSError, ValueError):
                return {"by": "?"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def lock_path(p: store.Paths, task: str) -> Path:
    return p.state_dir / f"{task}.lock"


# --------------------------------------------------------------------------------------------
# Choosing accounts.


def choose_accounts(task: Task, state: StateDB, only: Iterable[str] = ()) -> list[User]:
    """The accounts of this run: those asked for, else up to ``accounts_per_period`` accounts, the ones
    not yet complete first (in user-list order), then completed ones for an incremental pass."""
    only = list(only)
    if only:
        chosen = []
        for name in only:
            user = task.user(name)
            if user is None:
                raise RunConfigError(f'{name} is not in the user list of task "{task.name}"')
            chosen.append(user)
        return chosen
    incomplete, complete = [], []
    for user in task.users:
        st = state.account_status(account_key(user.source))
        (complete if st is not None and st[1] else incomplete).append(user)
    n = task.run.accounts_per_period
    chosen = incomplete[:n] if n else incomplete
    if not n or len(chosen) < n:  # room left: completed accounts get an incremental pass
        chosen += complete[: (n - len(chosen)) if n else None]
    return chosen


def open_source(task: Task, user: User) -> Source:
    if task.source.type == "imap":
        from mailmig_tui.engine.sources.imap import ImapSource

        return ImapSource(task.source, user)
    raise RunConfigError(f"the {task.source.type} source is not available in this version of mailmig-tui")


def open_destination(settings: Settings, user: User) -> DestinationMailbox:
    return DestinationMailbox(settings.destination, user)


# --------------------------------------------------------------------------------------------
# The run.


def run_task(
    task: Task,
    settings: Settings,
    *,
    accounts: Iterable[str] = (),
    dry_run: bool = False,
    cancel: threading.Event | None = None,
    sink: Sink | None = None,
    by: str = "cli",
    paths: store.Paths | None = None,
    source_factory: Callable[[Task, User], Source] = open_source,
    destination_factory: Callable[[Settings, User], DestinationMailbox] = open_destination,
    limits: Limits | None = None,
    budget_bytes: int = DEFAULT_BUDGET,
) -> RunResult:
    """Run ``task`` once. Raises RunError when it cannot start; account failures are in the result."""
    p = paths or store.paths()
    cancel = cancel or threading.Event()
    lock = TaskLock(lock_path(p, task.name), by)
    if not dry_run:
        lock.acquire()
    try:
        return _run_locked(
            task, settings, p, list(accounts), dry_run, cancel, sink, source_factory, destination_factory,
            limits or Limits(), budget_bytes,
        )  # fmt: skip
    finally:
        lock.release()


def _run_locked(
    task: Task,
    settings: Settings,
    p: store.Paths,
    only: list[str],
    dry_run: bool,
    cancel: threading.Event,
    sink: Sink | None,
    source_factory: Callable[[Task, User], Source],
    destination_factory: Callable[[Settings, User], DestinationMailbox],
    limits: Limits,
    budget_bytes: int,
) -> RunResult:
    writer = None if dry_run else LogWriter(p.log_file(task.name), Redactor(secrets_of(task, settings)))
    emit: Sink = FanOut(*(s for s in (writer, sink) if s is not None))
    state = StateDB.open_readonly(p.state_file(task.name)) if dry_run else StateDB(p.state_file(task.name))
    try:
        users = choose_accounts(task, state, only)
        _check_destination(settings)
        run_id = 0 if dry_run else state.start_run(dry_run)
        emit(RunStarted(task.name, accounts=tuple(u.source for u in users), dry_run=dry_run))
        budget = ByteBudget(budget_bytes)
        result = RunResult("completed")

        def one(user: User) -> AccountResult:
            reports: list[FolderReport] = []
            res = _run_account(
                task, settings, user, p, dry_run, cancel, emit, budget, source_factory, destination_factory, limits,
                run_id, reports,
            )  # fmt: skip
            result.reports[user.source] = reports
            return res

        with ThreadPoolExecutor(max_workers=max(1, task.run.concurrency), thread_name_prefix="account") as pool:
            result.accounts = list(pool.map(one, users))
        failed = sum(1 for r in result.accounts if r.status == "failed")
        stopped = sum(1 for r in result.accounts if r.status == "stopped")
        ok = len(result.accounts) - failed - stopped
        if stopped or cancel.is_set():
            result.status = "stopped"
        elif failed:
            result.status = "failed" if ok == 0 else "partial"
        result.peak_budget = budget.peak
        if not dry_run:
            state.finish_run(run_id, result.status)
        emit(RunFinished(task.name, status=result.status, succeeded=ok, failed=failed, stopped=stopped))
        return result
    finally:
        state.close()
        if writer is not None:
            writer.close()


def _check_destination(settings: Settings) -> None:
    d = settings.destination
    try:
        client = imapconn.connect(imapconn.Endpoint(d.host, d.port, d.security, d.tls_fingerprint, timeout=30))
    except imapconn.ImapError as exc:
        raise RunError(f"the destination server cannot be reached: {exc}") from None
    imapconn.close_quietly(client)


def _run_account(
    task: Task,
    settings: Settings,
    user: User,
    p: store.Paths,
    dry_run: bool,
    cancel: threading.Event,
    emit: Sink,
    budget: ByteBudget,
    source_factory: Callable[[Task, User], Source],
    destination_factory: Callable[[Settings, User], DestinationMailbox],
    limits: Limits,
    run_id: int,
    reports: list[FolderReport],
) -> AccountResult:
    key = account_key(user.source)
    result = AccountResult(user.source, user.destination)
    started = time.time()
    t0 = time.monotonic()
    state = StateDB.open_readonly(p.state_file(task.name)) if dry_run else StateDB(p.state_file(task.name))
    ctx = AccountContext(
        task, settings, user, state, emit, cancel, budget, source_factory, destination_factory, dry_run, limits
    )
    try:
        if cancel.is_set():
            result.status = "stopped"
            return result
        emit(AccountStarted(task.name, user.source))
        if not dry_run:
            try:
                state.bind_account(key, identity_of(task.source, user), user.destination)
            except StateMismatch as exc:
                result.status, result.error = "failed", str(exc)
                emit(AccountFinished(task.name, user.source, result=result))
                return result
            state.set_account_status(key, "running")
        attempt = 0
        while True:
            reports.clear()
            attempt_result = AccountResult(user.source, user.destination)
            try:
                migrate_account(ctx, attempt_result, reports)
                _merge(result, attempt_result)
                result.status = "complete" if not cancel.is_set() else "stopped"
                break
            except Cancelled:
                _merge(result, attempt_result)
                result.status = "stopped"
                break
            except imapconn.ImapError as exc:
                _merge(result, attempt_result)
                if exc.transient and attempt < RETRIES and not cancel.is_set():
                    delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                    ctx.log(f"{exc}; retrying in {delay:.0f} s (attempt {attempt + 2} of {RETRIES + 1})", "warning")
                    attempt += 1
                    if cancel.wait(delay):
                        result.status = "stopped"
                        break
                    continue
                result.status, result.error = "failed", str(exc)
                break
            except (OverQuota, RunConfigError) as exc:
                _merge(result, attempt_result)
                result.status, result.error = "failed", str(exc)
                break
            except (OSError, EOFError) as exc:
                _merge(result, attempt_result)
                if attempt < RETRIES and not cancel.is_set():
                    ctx.log(f"connection lost ({exc}); retrying", "warning")
                    attempt += 1
                    if cancel.wait(BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)]):
                        result.status = "stopped"
                        break
                    continue
                result.status, result.error = "failed", f"connection lost: {exc}"
                break
            except Exception as exc:  # noqa: BLE001 - one account's bug must not stop the others
                _merge(result, attempt_result)
                result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
                ctx.log(f"unexpected error: {result.error}", "error")
                ctx.log(traceback.format_exc(), "debug")
                break
        if result.status == "complete" and result.failed:
            result.error = f"{result.failed} message(s) could not be copied (they are retried next run)"
        result.duration = round(time.monotonic() - t0, 3)
        if not dry_run:
            state.set_account_status(key, result.status, error=result.error)
            state.record_account_run(run_id, result, started)
        emit(AccountFinished(task.name, user.source, result=result))
        return result
    finally:
        state.close()


def _merge(total: AccountResult, part: AccountResult) -> None:
    total.folders = max(total.folders, part.folders)
    total.copied += part.copied
    total.failed += part.failed
    total.bytes += part.bytes
    total.skipped |= part.skipped  # a retry sees the same skips again: keep the larger count
    total.skipped_folders |= part.skipped_folders
