"""A task run: which accounts, how many at once, retries, the lock, the log file, the events.

The same function serves the CLI, the scheduler and the TUI (in a thread worker). It never raises
for one account's failure: each account ends complete, failed (with the reason) or stopped.
"""

from __future__ import annotations

import fcntl
import hashlib
import imaplib
import json
import os
import socket
import sqlite3
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mailmig_tui.engine import imapconn, store
from mailmig_tui.engine.account import AccountContext, ByteBudget, Cancelled, FolderChanged, Limits, SpareStreams
from mailmig_tui.engine.destination import DestinationMailbox, OverQuota
from mailmig_tui.engine.events import (
    AccountFinished,
    AccountResult,
    AccountStarted,
    FanOut,
    LogLine,
    RunFinished,
    RunStarted,
    Sink,
)
from mailmig_tui.engine.logfile import LogWriter, Redactor
from mailmig_tui.engine.migrate import FolderReport, migrate_account
from mailmig_tui.engine.model import Settings, Task, User, account_key, settings_warnings, task_warnings
from mailmig_tui.engine.notify import Notifier
from mailmig_tui.engine.sources.base import Source, identity_of
from mailmig_tui.engine.state import StateDB, StateMismatch

RETRIES = 3
BACKOFF_S = (2.0, 6.0, 15.0)
LOCK_POLL_S = 1.0  # how often a run waiting for a destination account another run writes looks again
STOP_POLL_S = 0.5  # how often a run looks for a stop request of another process (request_stop)
DEFAULT_BUDGET = 48 * 1024 * 1024  # message bytes in flight per run (bench/: no faster above)


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
# Locks: one run of a task at a time, and one run writing a destination account at a time, across
# processes and tasks. An exclusive flock on a file that says who holds it; the kernel drops it
# when the holder dies, however it dies.


class FileLock:
    """An exclusive, non-blocking flock on ``path``; the file says who holds it."""

    def __init__(self, path: Path, by: str, **about: str) -> None:
        self.path = path
        self.by = by
        self.about = about
        self.info: dict = {}  # what the file says while held: pid, host, by, started
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        info = {"pid": os.getpid(), "host": socket.gethostname(), "by": self.by, "started": time.time(), **self.about}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        self._fd = fd
        self.info = info
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def holder_text(holder: dict | None) -> str:
    if not holder:
        return "?"
    task = f'task "{holder["task"]}", ' if holder.get("task") else ""
    return f"{task}{holder.get('by', '?')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')})"


class TaskLock(FileLock):
    """The lock of one task: ``data/state/<task>.lock``."""

    def acquire(self) -> None:
        if not self.try_acquire():
            raise RunError(f"the task is already running: {holder_text(lock_holder(self.path))}; stop that run first")

    def __enter__(self) -> TaskLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def destination_lock_path(p: store.Paths, destination: str) -> Path:
    """``data/state/destinations/<account>.lock``: shared by every task that writes that account."""
    key = destination.strip().casefold()
    safe = urllib.parse.quote(key, safe="@.+-_")
    if len(safe) > 120:  # a file name stays well under 255 bytes
        safe = safe[:80] + "~" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return p.state_dir / "destinations" / f"{safe}.lock"


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


# A run of another process (``mailmig-tui run``, the scheduler, another app) is asked to stop by a file
# beside its lock naming the run (its lock's pid and start); the run polls for it, sets its cancel
# token, and stops after its current batch like any stop: consistent and resumable.


def stop_request_path(p: store.Paths, task: str) -> Path:
    return p.state_dir / f"{task}.stop"


def request_stop(p: store.Paths, task: str, holder: dict, by: str) -> None:
    """Ask the run that ``holder`` (from :func:`lock_holder`) describes to stop after its current batch."""
    path = stop_request_path(p, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    request = {"pid": holder.get("pid"), "started": holder.get("started"), "by": by, "host": socket.gethostname()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(request))
    tmp.replace(path)


def _stop_requested(path: Path, lock: FileLock) -> dict | None:
    """The stop request for the run holding ``lock``, if there is one (one for an earlier run is ignored)."""
    try:
        request = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(request, dict):
        return None
    mine = (lock.info.get("pid"), lock.info.get("started"))
    return request if (request.get("pid"), request.get("started")) == mine else None


def _watch_stop_requests(
    path: Path, lock: FileLock, cancel: threading.Event, ended: threading.Event, emit: Sink, task: str
) -> None:
    while not ended.wait(STOP_POLL_S) and not cancel.is_set():
        request = _stop_requested(path, lock)
        if request is not None:
            emit(LogLine(task, severity="warning", text=f"stop requested by {request.get('by', '?')} on "
                         f"{request.get('host', '?')}: stopping after the current batch"))  # fmt: skip
            cancel.set()


# --------------------------------------------------------------------------------------------
# Choosing accounts.


def named_accounts(task: Task, only: Iterable[str]) -> list[User]:
    """The users named (``run --account``), or RunConfigError for a name not in the user list."""
    chosen = []
    by_key = task.users_by_key()
    for name in only:
        user = by_key.get(account_key(name))
        if user is None:
            raise RunConfigError(f'{name} is not in the user list of task "{task.name}"')
        chosen.append(user)
    return chosen


def choose_accounts(task: Task, state: StateDB, only: Iterable[str] = ()) -> list[User]:
    """The accounts of this run: those asked for, else up to ``accounts_per_period`` accounts, the ones
    not yet complete first (in user-list order), then completed ones for an incremental pass.
    Once every account is complete, a run is an incremental pass over all of them."""
    only = list(only)
    if only:
        return named_accounts(task, only)
    incomplete: list[User] = []
    complete: list[User] = []
    for user in task.users:
        st = state.account_status(account_key(user.source))
        (complete if st is not None and st[1] else incomplete).append(user)
    if not incomplete:
        return complete
    n = task.run.accounts_per_period
    chosen = incomplete[:n] if n else incomplete
    if not n or len(chosen) < n:  # room left: completed accounts get an incremental pass
        chosen += complete[: (n - len(chosen)) if n else None]
    return chosen


def open_source(task: Task, user: User) -> Source:
    if task.source.type == "imap":
        from mailmig_tui.engine.sources.imap import ImapSource

        return ImapSource(task.source, user)
    if task.source.type == "google":
        from mailmig_tui.engine.sources.gmail import open_gmail

        return open_gmail(task, user)
    if task.source.type == "microsoft365":
        from mailmig_tui.engine.sources.graph import open_graph_source

        return open_graph_source(task, user)
    raise RunConfigError(f"the {task.source.type} source is not available in this version of mailmig-tui")


def bind_source(
    factory: Callable[[Task, User], Source], cancel: threading.Event, log: Callable[..., None]
) -> Callable[[Task, User], Source]:
    """``factory`` whose sources get the run's cancel token and the account's log, if they take them.

    A source that waits (quota backoff) or retries offers ``bind(cancel=, log=)``: a stop then
    interrupts its waits, and its retries show in the task's log.
    """

    def make(task: Task, user: User) -> Source:
        source = factory(task, user)
        bind = getattr(source, "bind", None)
        if callable(bind):
            bind(cancel=cancel, log=log)
        return source

    return make


def open_destination(settings: Settings, user: User) -> DestinationMailbox:
    return DestinationMailbox(settings.destination, user)


# --------------------------------------------------------------------------------------------
# The run.


@dataclass
class _Run:
    """What every account of one run shares."""

    task: Task
    settings: Settings
    paths: store.Paths
    dry_run: bool
    cancel: threading.Event
    emit: Sink
    budget: ByteBudget
    source_factory: Callable[[Task, User], Source]
    destination_factory: Callable[[Settings, User], DestinationMailbox]
    limits: Limits
    notifier: Notifier | None
    clock: Callable[[], float] = time.time
    by: str = "cli"
    run_id: int = 0
    spare: SpareStreams | None = None

    def open_state(self) -> StateDB:
        path = self.paths.state_file(self.task.name)
        return StateDB.open_readonly(path) if self.dry_run else StateDB(path)


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
    clock: Callable[[], float] = time.time,
) -> RunResult:
    """Run ``task`` once. Raises RunError when it cannot start; account failures are in the result.

    ``clock`` (seconds since the epoch) dates the run's start in the state: the scheduler passes its
    own clock, so every schedule decision it takes compares times from one clock.

    A dry run takes no lock and writes nothing anywhere (no state, no log, nothing at the destination).
    """
    p = paths or store.paths()
    cancel = cancel or threading.Event()
    accounts = list(accounts)
    named_accounts(task, accounts)  # an unknown account is refused before anything is written
    StateDB.open_readonly(p.state_file(task.name)).close()  # so is a damaged state database (exit 2)
    _check_destination(settings)  # and an unreachable destination (exit 3)
    lock = TaskLock(lock_path(p, task.name), by)
    if not dry_run:
        lock.acquire()
    outside: list[Sink] = [sink] if sink is not None else []

    def log_failed(exc: OSError) -> None:  # a full log disk: the run stops cleanly, resumable, and says why
        cancel.set()
        for s in outside:
            s(LogLine(task.name, "", severity="error", text=f"the log file {log_path} cannot be written "
                      f"({exc.strerror or exc}): stopping the run; free space there and run again (it resumes)"))  # fmt: skip

    log_path = p.log_file(task.name)
    writer = None
    if not dry_run:
        try:
            writer = LogWriter(log_path, Redactor(secrets_of(task, settings)), on_error=log_failed)
        except OSError as exc:
            lock.release()
            raise RunError(
                f"the log file {log_path} cannot be written ({exc.strerror or exc}); fix it "
                "(permissions, free space, a directory in its place) and run again"
            ) from None
    emit: Sink = FanOut(*(s for s in (writer, sink) if s is not None))
    notifier = None if dry_run else Notifier(task, settings.smtp, emit, p.log_file(task.name))
    run = _Run(
        task, settings, p, dry_run, cancel, emit, ByteBudget(budget_bytes), source_factory, destination_factory,
        limits or Limits(), notifier, clock, by,
    )  # fmt: skip
    ended = threading.Event()
    stop_path = stop_request_path(p, task.name)
    if not dry_run:
        stop_path.unlink(missing_ok=True)  # a request for an earlier run
        threading.Thread(
            target=_watch_stop_requests, args=(stop_path, lock, cancel, ended, emit, task.name),
            name="stop-requests", daemon=True,
        ).start()  # fmt: skip
    try:
        return _run_locked(run, list(accounts))
    finally:
        ended.set()
        if not dry_run:
            stop_path.unlink(missing_ok=True)
        if writer is not None:
            writer.close()
        lock.release()


def _run_locked(run: _Run, only: list[str]) -> RunResult:
    task = run.task
    state = run.open_state()
    try:
        users = choose_accounts(task, state, only)
        run.run_id = 0 if run.dry_run else state.start_run(run.dry_run, started=run.clock())
        run.emit(RunStarted(task.name, accounts=tuple(u.source for u in users), dry_run=run.dry_run))
        for warning in task_warnings(task) + settings_warnings(run.settings):
            run.emit(LogLine(task.name, severity="warning", text=str(warning)))
        result = RunResult("completed")

        run.spare = SpareStreams(task.run.concurrency, len(users))

        def one(user: User) -> AccountResult:
            assert run.spare is not None
            run.spare.account_started()
            try:
                reports: list[FolderReport] = []
                res = _run_account(run, user, reports)
                result.reports[user.source] = reports
                return res
            finally:
                run.spare.release()

        with ThreadPoolExecutor(max_workers=max(1, task.run.concurrency), thread_name_prefix="account") as pool:
            result.accounts = list(pool.map(one, users))
        failed = sum(1 for r in result.accounts if r.status == "failed")
        stopped = sum(1 for r in result.accounts if r.status == "stopped")
        partial = sum(1 for r in result.accounts if r.status == "partial")
        ok = len(result.accounts) - failed - stopped - partial
        if stopped or run.cancel.is_set():
            result.status = "stopped"
        elif failed and not ok and not partial:
            result.status = "failed"
        elif failed or partial:
            result.status = "partial"
        result.peak_budget = run.budget.peak
        if not run.dry_run:
            state.finish_run(run.run_id, result.status)
        run.emit(
            RunFinished(task.name, status=result.status, succeeded=ok, failed=failed, stopped=stopped, partial=partial)
        )
        return result
    finally:
        state.close()


def _check_destination(settings: Settings) -> None:
    d = settings.destination
    try:
        client = imapconn.connect(imapconn.Endpoint(d.host, d.port, d.security, d.tls_fingerprint, timeout=30))
    except imapconn.ImapError as exc:
        raise RunError(f"the destination server cannot be reached: {exc}") from None
    imapconn.close_quietly(client)


def _run_account(run: _Run, user: User, reports: list[FolderReport]) -> AccountResult:
    result = AccountResult(user.source, user.destination)
    state = run.open_state()
    try:
        _account(run, user, state, result, reports)
    finally:
        state.close()
    if run.notifier is not None:
        run.notifier.account_finished(result)
    return result


def _account(run: _Run, user: User, state: StateDB, result: AccountResult, reports: list[FolderReport]) -> None:
    """One account with bounded retries of transient failures; fills ``result``, emits AccountFinished."""
    task, cancel, emit = run.task, run.cancel, run.emit
    key = account_key(user.source)
    started = time.time()
    t0 = time.monotonic()
    ctx = AccountContext(
        task, run.settings, user, state, emit, cancel, run.budget, run.source_factory, run.destination_factory,
        run.dry_run, run.limits, run.spare, run.open_state,
    )  # fmt: skip
    ctx.open_source = bind_source(run.source_factory, cancel, ctx.log)
    if cancel.is_set():
        result.status = "stopped"
        return
    emit(AccountStarted(task.name, user.source))
    lock = None if run.dry_run else _wait_for_destination(run, user)
    if lock is None and not run.dry_run:
        result.status = "stopped"
        emit(AccountFinished(task.name, user.source, result=result))
        return
    try:
        if not run.dry_run:
            try:
                state.bind_account(key, identity_of(task.source, user), user.destination)
            except StateMismatch as exc:
                result.status, result.error = "failed", str(exc)
                emit(AccountFinished(task.name, user.source, result=result))
                return
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
            except (imapconn.ImapError, FolderChanged, imaplib.IMAP4.abort, OSError, EOFError) as exc:  # abort: BYE
                _merge(result, attempt_result)
                transient = exc.transient if isinstance(exc, imapconn.ImapError) else True
                reason = (
                    str(exc)
                    if isinstance(exc, imapconn.ImapError | FolderChanged)
                    else f"connection lost: {exc or type(exc).__name__}"
                )
                if transient and attempt < RETRIES and not cancel.is_set():
                    delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                    attempt += 1
                    ctx.log(f"{reason}; retrying in {delay:g} s (attempt {attempt + 1} of {RETRIES + 1})", "warning")
                    if cancel.wait(delay):
                        result.status = "stopped"
                        break
                    continue
                result.status, result.error = "failed", reason
                break
            except (OverQuota, RunConfigError) as exc:
                _merge(result, attempt_result)
                result.status, result.error = "failed", str(exc)
                break
            except sqlite3.OperationalError as exc:  # the state database's disk is full, or it is read-only
                _merge(result, attempt_result)
                path = run.paths.state_file(task.name)
                result.status, result.error = "failed", f"the state database {path} cannot be written ({exc}); "
                result.error += "free space on its disk (or fix its permissions) and run again: the copy resumes"
                break
            except Exception as exc:  # noqa: BLE001 - one account's bug must not stop the others
                _merge(result, attempt_result)
                result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
                ctx.log(f"unexpected error: {result.error}", "error")
                ctx.log(traceback.format_exc(), "debug")
                break
        if result.status == "complete":
            problems = []
            if result.folder_errors:  # the other folders are copied: the account is not failed, but not clean
                result.status = "partial"
                problems.append(
                    f"{len(result.folder_errors)} folder(s) could not be copied (tried again next run): "
                    + "; ".join(f'"{name}": {why}' for name, why in result.folder_errors.items())
                )
            if result.failed:
                problems.append(f"{result.failed} message(s) could not be copied (they are retried next run)")
            result.error = "; ".join(problems)
        result.duration = round(time.monotonic() - t0, 3)
        if not run.dry_run:
            state.set_account_status(key, result.status, error=result.error)
            state.record_account_run(run.run_id, result, started)
        emit(AccountFinished(task.name, user.source, result=result))
    finally:
        if lock is not None:
            lock.release()


def _wait_for_destination(run: _Run, user: User) -> FileLock | None:
    """The lock of the account's destination, waited for while another run (of any task) writes it;
    None when the run is stopped meanwhile."""
    lock = FileLock(destination_lock_path(run.paths, user.destination), run.by, task=run.task.name, account=user.source)
    if lock.try_acquire():
        return lock
    holder = holder_text(lock_holder(lock.path))
    run.emit(
        LogLine(
            run.task.name,
            user.source,
            severity="warning",
            text=f"destination account {user.destination} is being written by {holder}; waiting until it is done "
            "(two runs writing one account at once would copy its mail twice)",
        )
    )
    while not lock.try_acquire():
        if run.cancel.wait(LOCK_POLL_S):
            return None
    run.emit(LogLine(run.task.name, user.source, text=f"destination account {user.destination} is free: going on"))
    return lock


def _merge(total: AccountResult, part: AccountResult) -> None:
    total.folders = max(total.folders, part.folders)
    total.copied += part.copied
    total.failed += part.failed
    total.bytes += part.bytes
    total.skipped |= part.skipped  # a retry sees the same skips again: keep the larger count
    total.skipped_folders |= part.skipped_folders
    total.folder_errors = part.folder_errors  # the last attempt saw every folder it got to
