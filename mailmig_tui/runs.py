"""Runs started from the app, as the UI thread sees them, and the words the screens use for a task's state.

A :class:`Run` is created on the UI thread when the admin starts a task. The runner executes in a thread
worker and puts its events into ``run.sink``; the app drains that sink on a timer and feeds the batch to
:meth:`Run.absorb` (on the UI thread), so everything here is touched by one thread only — except
``cancel`` and ``sink``, which are thread-safe.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from mailmig_tui.engine import events as ev
from mailmig_tui.engine.logfile import LogRecord, Redactor, record_of
from mailmig_tui.engine.runner import RunResult
from mailmig_tui.engine.status import IDLE, RUNNING, STARTING, TaskStatus

KEEP_RECORDS = 20_000

STARTING_TEXT = "starting…"
STOPPING_TEXT = "stopping…"


@dataclass(eq=False)
class Run:
    task: str
    redact: Redactor = field(default_factory=Redactor)
    cancel: threading.Event = field(default_factory=threading.Event)
    sink: ev.QueueSink = field(default_factory=ev.QueueSink)
    started: float = field(default_factory=time.time)
    phase: str = "starting"  # starting | running | stopping
    accounts: tuple[str, ...] = ()
    finished: int = 0
    states: dict[str, str] = field(default_factory=dict)  # account -> running | complete | failed | stopped
    progress: dict[str, ev.FolderProgress] = field(default_factory=dict)  # account -> its latest progress
    records: deque[tuple[int, LogRecord]] = field(default_factory=lambda: deque(maxlen=KEEP_RECORDS))
    seq: int = 0
    ended: bool = False
    result: RunResult | None = None

    def absorb(self, batch: list[ev.Event]) -> None:
        """Take a drained batch of events into the run's figures and log records."""
        for event in batch:
            if isinstance(event, ev.RunStarted):
                self.accounts = event.accounts
                if self.phase == "starting":
                    self.phase = "running"
            elif isinstance(event, ev.AccountStarted):
                self.states[event.account] = "running"
            elif isinstance(event, ev.AccountFinished):
                self.finished += 1
                self.states[event.account] = event.result.status if event.result else "stopped"
                self.progress.pop(event.account, None)
            elif isinstance(event, ev.FolderProgress):
                self.progress[event.account] = event
            self.seq += 1
            self.records.append((self.seq, record_of(event, self.redact)))

    def records_since(self, seq: int) -> list[LogRecord]:
        """Log records after ``seq`` (what a log pane that has seen up to ``seq`` is missing)."""
        if not self.records or self.records[-1][0] <= seq:
            return []
        return [rec for n, rec in self.records if n > seq]

    def stop(self) -> None:
        self.cancel.set()
        self.phase = "stopping"

    @property
    def status_text(self) -> str:
        if self.phase == "stopping":
            return STOPPING_TEXT
        if self.phase == "starting":
            return STARTING_TEXT
        copying = sum(1 for state in self.states.values() if state == "running")
        return running_text(copying, self.finished, len(self.accounts))


def running_text(copying: int, done: int, total: int) -> str:
    """``running 3, 0/5 done``: accounts being copied now, and how many of the run's accounts finished."""
    return f"running {copying}, {done}/{total} done"


def status_text(status: TaskStatus | None, run: Run | None = None) -> str:
    """One short phrase for a task's state: idle, running 2, 1/5 done, stopping…, stopped, completed, failed."""
    if run is not None:
        return run.status_text
    if status is None:
        return IDLE
    if status.state == STARTING:
        return STARTING_TEXT
    if status.state == RUNNING:
        return running_text(status.run_running, status.run_done, status.run_total)
    return status.state


def status_style(text: str) -> str:
    """A Rich style for a status phrase (named ANSI colours: readable with 16 colours)."""
    if text.startswith("running") or text == STARTING_TEXT:
        return "bold green"
    if text == STOPPING_TEXT:
        return "bold yellow"
    if text == "failed":
        return "red"
    if text == "completed":
        return "green"
    return ""


def holder_text(holder: dict) -> str:
    """Who runs a task in another process, from its lock: "cli (pid 1234 on nas) since 22:00"."""
    since = holder.get("started")
    when = f" since {when_text(since)}" if isinstance(since, int | float) else ""
    return f"{holder.get('by', '?')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}){when}"


def when_text(ts: float | dt.datetime | None) -> str:
    if ts is None:
        return "-"
    moment = ts if isinstance(ts, dt.datetime) else dt.datetime.fromtimestamp(ts)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def duration_text(seconds: float) -> str:
    if seconds <= 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
