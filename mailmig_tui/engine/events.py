"""Typed events the runner emits, and the thread-safe sinks that carry them to a front end.

The engine never calls into a UI: it puts events into a sink. The CLI prints them, the TUI drains
them on a timer, tests collect them, and the log file records every one of them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

SEVERITIES = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Event:
    task: str
    account: str = ""
    time: float = field(default_factory=time.time, compare=False)


@dataclass(frozen=True)
class RunStarted(Event):
    accounts: tuple[str, ...] = ()
    dry_run: bool = False


@dataclass(frozen=True)
class RunFinished(Event):
    status: str = "completed"  # completed | failed | partial | stopped
    succeeded: int = 0
    failed: int = 0
    stopped: int = 0
    partial: int = 0  # accounts copied but for some folders


@dataclass(frozen=True)
class AccountStarted(Event):
    pass


@dataclass
class AccountResult:
    """What one account's migration did in one run (the figures a notification and the summary show)."""

    account: str
    destination: str
    status: str = "running"  # complete | partial (some folders failed, the others are copied) | failed | stopped
    folders: int = 0
    copied: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_folders: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    bytes: int = 0
    duration: float = 0.0
    error: str = ""
    folder_errors: dict[str, str] = field(default_factory=dict)  # folder that failed → why (its source name)


@dataclass(frozen=True)
class AccountFinished(Event):
    result: AccountResult | None = None


@dataclass(frozen=True)
class FolderProgress(Event):
    """After each batch: the folder's progress, and the account's (messages, bytes, rate, ETA)."""

    folder: str = ""
    dest_folder: str = ""
    done: int = 0
    total: int = 0
    account_done: int = 0
    account_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    bytes_per_s: float = 0.0
    eta_s: float | None = None
    folders_done: int = 0  # the account's folders: done (unchanged, nothing new, or copied) of those planned
    folders_total: int = 0


@dataclass(frozen=True)
class MessageFailed(Event):
    folder: str = ""
    message: str = ""  # source id
    reason: str = ""


@dataclass(frozen=True)
class LogLine(Event):
    severity: str = "info"
    text: str = ""
    folder: str = ""


Sink = Callable[[Event], None]


class QueueSink:
    """A thread-safe sink a UI drains in batches (``drain()`` never blocks)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Event] = queue.SimpleQueue()

    def __call__(self, event: Event) -> None:
        self._queue.put(event)

    def drain(self, limit: int = 10_000) -> list[Event]:
        out: list[Event] = []
        while len(out) < limit:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return out


class FanOut:
    """Send each event to several sinks (the log file, the front end, a test's list)."""

    def __init__(self, *sinks: Sink) -> None:
        self._sinks = [s for s in sinks if s is not None]
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            for sink in self._sinks:
                sink(event)


def describe(event: Event) -> tuple[str, str, str]:
    """(severity, folder, text) of an event, as the log file and the log pane show it."""
    if isinstance(event, LogLine):
        return event.severity, event.folder, event.text
    if isinstance(event, RunStarted):
        mode = " (dry run)" if event.dry_run else ""
        return "info", "", f"run started{mode}: {len(event.accounts)} account(s): {', '.join(event.accounts)}"
    if isinstance(event, RunFinished):
        return (
            "info" if event.status == "completed" else "warning",
            "",
            f"run {event.status}: {event.succeeded} complete, "
            + (f"{event.partial} partial, " if event.partial else "")
            + f"{event.failed} failed, {event.stopped} stopped",
        )
    if isinstance(event, AccountStarted):
        return "info", "", "account started"
    if isinstance(event, AccountFinished) and event.result is not None:
        r = event.result
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(r.skipped.items())) or "none"
        text = (
            f"account {r.status}: {r.folders} folder(s), {r.copied} copied, skipped: {skipped}, "
            f"{r.failed} failed, {r.bytes} bytes, {r.duration:.1f} s"
        )
        if r.error:
            text += f"; error: {r.error}"
        return ("info" if r.status == "complete" else "error" if r.status == "failed" else "warning"), "", text
    if isinstance(event, FolderProgress):
        eta = f", ETA {event.eta_s:.0f} s" if event.eta_s is not None else ""
        return (
            "debug",
            event.folder,
            f"{event.done}/{event.total} → {event.dest_folder}; account {event.account_done}/{event.account_total} "
            f"messages, {event.bytes_per_s / 1e6:.1f} MB/s{eta}",
        )
    if isinstance(event, MessageFailed):
        return "error", event.folder, f"message {event.message} failed: {event.reason}"
    return "debug", "", type(event).__name__
