"""What the phases of one account's migration share: its context (task, connections' factories,
state, events, cancel token), the run's limits and shared resources (the byte budget, the spare
streams), the work a plan hands to the copy, and the exceptions that end an attempt.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from mailmig_tui.engine.destination import DestinationMailbox
from mailmig_tui.engine.events import AccountResult, LogLine, Sink
from mailmig_tui.engine.folders import FolderPlan
from mailmig_tui.engine.model import Settings, Task, User, account_key
from mailmig_tui.engine.sources.base import FolderRefused, FolderStatus, MessageMeta, Source
from mailmig_tui.engine.state import StateDB

SKIP_VANISHED = "vanished from the source during the run"


class Cancelled(Exception):
    """The run was asked to stop; everything done so far is recorded."""


class FolderChanged(Exception):
    """A folder's UIDVALIDITY changed between planning and copying: the account is planned again."""


class ByteBudget:
    """Bytes of message data in flight across all accounts of a run; bounds memory whatever the sizes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._cond = threading.Condition()
        self._turns: deque[object] = deque()  # waiting requests, first come first served
        self.peak = 0

    def acquire(self, n: int, cancel: threading.Event) -> None:
        """Wait until ``n`` bytes fit, in turn (a single message larger than the budget goes alone).

        A request that does not fit yet holds back the ones after it, so a large message is not
        starved by other streams' small batches that keep fitting into what is left.
        """
        turn = object()
        with self._cond:
            self._turns.append(turn)
            try:
                while self._turns[0] is not turn or (self._used and self._used + n > self.limit):
                    if cancel.is_set():
                        raise Cancelled()
                    self._cond.wait(0.2)
            finally:
                self._turns.remove(turn)
                self._cond.notify_all()
            self._used += n
            self.peak = max(self.peak, self._used)

    def release(self, n: int) -> None:
        with self._cond:
            self._used -= n
            self._cond.notify_all()


class SpareStreams:
    """The run's concurrency that accounts leave unused, lent to accounts as extra copy streams.

    Every account holds one of the run's ``concurrency`` slots while it runs. Once every account
    of the run has started, a slot freed by a finished account (or never needed: fewer accounts
    than the concurrency) lets a running account copy one more of its folders at once, over its
    own connections: the last, largest accounts no longer finish alone on one connection. Slots
    are only lent when no account waits, so an extra stream never delays an account's start.
    """

    def __init__(self, concurrency: int, accounts: int) -> None:
        self._free = max(1, concurrency)
        self._waiting = accounts
        self._lock = threading.Lock()

    def account_started(self) -> None:
        with self._lock:
            self._waiting -= 1
            self._free -= 1

    def take(self) -> bool:
        """One slot for an extra stream, if one is free and no account waits for it."""
        with self._lock:
            if self._waiting > 0 or self._free <= 0:
                return False
            self._free -= 1
            return True

    def release(self) -> None:
        """An account or an extra stream is done with its slot."""
        with self._lock:
            self._free += 1


@dataclass(frozen=True)
class Limits:
    batch_messages: int = 250
    batch_bytes: int = 4 * 1024 * 1024  # measured in bench/: no faster above, more memory
    queue_depth: int = 1
    # Copy streams of one account at most (a source and a destination connection each), when the
    # run has spare concurrency: well under common per-user limits (Dovecot 10 per user and IP,
    # Gmail 15, Exchange Online 20); a source type must also offer it (Source.max_streams).
    streams_per_account: int = 4


@dataclass
class AccountContext:
    task: Task
    settings: Settings
    user: User
    state: StateDB
    emit: Sink
    cancel: threading.Event
    budget: ByteBudget
    open_source: Callable[[Task, User], Source]
    open_destination: Callable[[Settings, User], DestinationMailbox]
    dry_run: bool = False
    limits: Limits = field(default_factory=Limits)
    spare: SpareStreams | None = None  # the run's unused concurrency; None: one stream per account
    open_state: Callable[[], StateDB] | None = None  # a state connection for an extra stream's thread

    @property
    def key(self) -> str:
        return account_key(self.user.source)

    def log(self, text: str, severity: str = "info", folder: str = "") -> None:
        self.emit(LogLine(self.task.name, self.user.source, severity=severity, text=text, folder=folder))


@dataclass
class Progress:
    """The account's copy phase: what there is to do, what is done, how fast."""

    total: int
    total_bytes: int
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    done_bytes: int = 0
    folders_total: int = 0  # the account's folders the plan keeps
    folders_done: int = 0  # of those: unchanged, nothing new, or copied

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done_bytes / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        rate = self.rate()
        return (self.total_bytes - self.done_bytes) / rate if rate > 0 else None


@dataclass
class Work:
    plan: FolderPlan
    status: FolderStatus
    messages: list[MessageMeta]
    avail: Counter[str]  # unclaimed destination fingerprints, consumed as matches are found
    skipped: Counter[str]
    failures: int = 0
    copied: int = 0
    done: int = 0


def folder_failed(ctx: AccountContext, result: AccountResult, folder: str, exc: FolderRefused) -> bool:
    """Record that ``folder`` failed alone (its first reason is kept) and log it; False if it had already."""
    if folder in result.folder_errors:
        return False
    result.folder_errors[folder] = str(exc)
    ctx.log(f"folder failed, the account's other folders go on: {exc}", "error", folder)
    return True


def filters_key(task: Task) -> str:
    f = task.filters
    return json.dumps([str(f.skip_before), str(f.skip_after), f.max_size_kb])
