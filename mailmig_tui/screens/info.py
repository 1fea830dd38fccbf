"""Task info: the per-account summary (live while a run goes on) and the task's log (history, then live).

Where the figures come from:
- the state database (read in a thread worker about once a second, and only when it changed): the
  summary of every account, for runs of this app and of other processes alike;
- a run of this app: its events (account started/finished, folder progress, log lines), drained by
  the app every ~100 ms;
- a run of another process (the CLI, the scheduler): its log file, followed as it grows.
"""

from __future__ import annotations

import datetime as dt
import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Header, Input, Static
from textual.worker import Worker, WorkerState

from mailmig_tui.engine import store
from mailmig_tui.engine.logfile import LogRecord
from mailmig_tui.engine.logtail import LogFollower
from mailmig_tui.engine.model import Task, account_key
from mailmig_tui.engine.state import AccountSummary
from mailmig_tui.engine.status import StatusReader, TaskStatus, files_signature
from mailmig_tui.engine.textsafe import escape_controls
from mailmig_tui.engine.units import human_bytes
from mailmig_tui.messages import RunEvents, RunStateChanged
from mailmig_tui.runs import (
    STOPPING_TEXT,
    Run,
    duration_text,
    holder_text,
    status_style,
    status_text,
    when_text,
)
from mailmig_tui.widgets.footer import KeyFooter
from mailmig_tui.widgets.log_pane import ALL_ACCOUNTS, LogPane
from mailmig_tui.widgets.summary_table import AccountRow, SummaryTable, skipped_detail
from mailmig_tui.widgets.virtual_table import VirtualTable

FOLLOW_SECONDS = 1.0  # a run of another process: its new log lines, at most a second late
STATE_SECONDS = 1.0
HISTORY_RECORDS = 20_000

# The state database's account status -> the word shown.
STATE_WORDS = {
    "pending": "pending",
    "running": "running",
    "complete": "complete",
    "partial": "partial",
    "failed": "failed",
}


def record_time(rec: LogRecord) -> float:
    try:
        return dt.datetime.fromisoformat(rec.time).timestamp()
    except ValueError:
        return 0.0


class InfoScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back", id="info.back"),
        Binding("s", "start", "Start", id="info.start"),
        Binding("x", "stop", "Stop", id="info.stop"),
        Binding("slash", "search", "Search", id="info.search"),
        Binding("a", "account_filter", "Account filter", id="info.account", show=False),
        Binding("v", "severity", "Lowest severity shown", id="info.severity", show=False),
        Binding("f", "follow", "Follow", id="info.follow", tooltip="Go to the end of the log and follow it"),
    ]

    def __init__(self, task_name: str) -> None:
        super().__init__()
        self.task_name = task_name
        self.mig_task: Task | None = None
        self.load_error = ""
        self.status: TaskStatus | None = None
        self.summaries: dict[str, AccountSummary] = {}
        self.run: Run | None = None
        self.history_loaded = False
        self._follower = LogFollower(store.paths().log_file(task_name))
        self._reader = StatusReader()
        self._seen_seq = 0
        self._inapp_since: float | None = None
        self._polled: tuple[object, ...] = ()
        try:
            self.mig_task = store.load_task(task_name)
        except store.ConfigError as exc:
            self.load_error = str(exc)
        self._users = [(account_key(u.source), u.source) for u in self.mig_task.users] if self.mig_task else []
        self._source_of = dict(self._users)
        self._key_of = {source: key for key, source in self._users}

    # ----------------------------------------------------------------------------------------
    # Layout.

    @property
    def users(self) -> list[tuple[str, str]]:
        """(account key, account as written) of the user list."""
        return self._users

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="info-status", markup=False)
        yield SummaryTable(id="summary")
        yield Static("", id="account-detail", markup=False)
        yield LogPane([source for _, source in self.users], id="log")
        yield KeyFooter(compact=True)

    @property
    def table(self) -> SummaryTable:
        return self.query_one("#summary", SummaryTable)

    @property
    def pane(self) -> LogPane:
        return self.query_one("#log", LogPane)

    def on_mount(self) -> None:
        self.sub_title = self.task_name
        self.title = "Task info"
        self.table.set_accounts(self.users, lambda key: self._row(key, self._source_of[key]))
        self.run = self.app_runs.get(self.task_name)
        if self.run is not None:
            self._inapp_since = self.run.started
        self._show_status()
        self._load_history()
        self.set_interval(FOLLOW_SECONDS, self.follow_file)
        self.set_interval(STATE_SECONDS, self.refresh_state)
        self.refresh_state()
        self.table.focus()

    @property
    def app_runs(self) -> dict[str, Run]:
        return getattr(self.app, "runs", {})

    @property
    def stop_requests(self) -> dict[str, dict]:
        """Runs of other processes this app asked to stop (task -> their lock holder)."""
        return getattr(self.app, "stop_requests", {})

    # ----------------------------------------------------------------------------------------
    # The log: history from the file, then this app's run records or the file's new lines.

    @work(thread=True, group="info-history", exit_on_error=False)
    def _load_history(self) -> list[LogRecord]:
        return self._follower.history(HISTORY_RECORDS)

    def _from_file(self, records: list[LogRecord]) -> list[LogRecord]:
        """File records, minus those of the run this screen takes from the app's events instead."""
        if self._inapp_since is None:
            return records
        since = int(self._inapp_since * 1000) / 1000
        return [r for r in records if record_time(r) < since]

    def _history_loaded(self, records: list[LogRecord]) -> None:
        self.pane.replace(self._from_file(records))
        self.history_loaded = True
        self._take_run_records()

    def _take_run_records(self) -> None:
        if self.run is None or not self.history_loaded:
            return
        records = self.run.records_since(self._seen_seq)
        self._seen_seq = self.run.seq
        self.pane.add(records)

    def follow_file(self) -> None:
        """New lines of the log file (a run of another process), unless this app's run is being shown."""
        if self.history_loaded and self.run is None:
            self.pane.add(self._from_file(self._follower.read_new()))

    def on_run_events(self, message: RunEvents) -> None:
        if message.run.task != self.task_name or message.run is not self.run:
            return
        self._take_run_records()
        self._show_rows([self._key_of[a] for a in {e.account for e in message.events} if a in self._key_of])
        self._show_status()

    def on_run_state_changed(self, message: RunStateChanged) -> None:
        run = message.run
        if run.task != self.task_name:
            return
        if not run.ended and self.run is None:
            self.follow_file()  # what the file holds from before this run
            self.run, self._inapp_since, self._seen_seq = run, run.started, 0
            self._take_run_records()
        elif run.ended and run is self.run:
            self._take_run_records()
            self._follower.skip_to_end()  # the run's lines were shown from its events
            self.run, self._inapp_since = None, None
        self._show_rows()
        self._show_status()
        self.refresh_bindings()
        self.refresh_state(force=True)

    # ----------------------------------------------------------------------------------------
    # The summary: state database figures plus live states.

    @work(thread=True, exclusive=True, group="info-state", exit_on_error=False)
    def _state_worker(self, task: Task | None) -> tuple[TaskStatus | None, dict[str, AccountSummary]]:
        summaries, _ = self._reader.state(self.task_name)
        return (self._reader.status(task) if task else None), summaries

    def refresh_state(self, *, force: bool = False) -> None:
        """Read the state again (in a thread) when a file it comes from changed, or a run is going."""
        sig = files_signature([self.task_name])
        if sig == self._polled and not force and not self.running:
            return
        self._polled = sig
        self._state_worker(self.mig_task)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "info-history" and event.state == WorkerState.ERROR:
            self.notify(f"The log could not be read: {event.worker.error}", severity="error", markup=False)
            self._history_loaded([])
        if event.worker.group == "info-state" and event.state == WorkerState.ERROR:
            self.notify(f"{event.worker.error}", title="The summary cannot be read", severity="error", markup=False)
        if event.state != WorkerState.SUCCESS:
            return
        if event.worker.group == "info-history":
            self._history_loaded(event.worker.result)
        elif event.worker.group == "info-state":
            self.status, self.summaries = event.worker.result
            self._show_rows()
            self._show_status()
            self.refresh_bindings()

    @property
    def running(self) -> bool:
        return self.run is not None or (self.status is not None and self.status.running)

    def _row(self, key: str, source: str) -> AccountRow:
        s = self.summaries.get(key)
        state = STATE_WORDS.get(s.status, s.status) if s else "not started"
        if self.run is not None and source in self.run.states:
            state = self.run.states[source]
            progress = self.run.progress.get(source)
            if state == "running" and progress is not None:
                state = f"running: {progress.folder} {progress.done}/{progress.total}"
        elif state == "running" and not self.running:
            state = "stopped"  # its run was killed: resumable
        duration = s.last_duration if s else 0.0
        if s and state.startswith("running") and s.last_started:
            duration = max(0.0, time.time() - s.last_started)
        folders: int | str = s.folders if s else 0
        progress = self.run.progress.get(source) if self.run is not None else None
        if progress is not None and progress.folders_total and state.startswith("running"):
            folders = f"{progress.folders_done}/{progress.folders_total}"
        if s is None:
            return AccountRow(source, state, folders)
        return AccountRow(source, state, folders, s.copied, s.skipped, s.failed, s.bytes, duration, s.last_error)

    def _show_rows(self, keys: list[str] | None = None) -> None:
        self.table.show(keys)
        self._show_detail()

    def _show_status(self) -> None:
        state = status_text(self.status, self.run)
        if (
            self.run is None
            and self.status is not None
            and self.status.running
            and self.task_name in self.stop_requests
        ):
            state = STOPPING_TEXT
        line = Text.assemble(("Status: ", "bold"), (state, status_style(state)))
        if self.load_error:
            line.append(f"  (the task cannot be read: {escape_controls(self.load_error)})", style="red")
        elif self.status is not None:
            st = self.status
            line.append(
                f"   accounts complete: {st.accounts_done}/{st.accounts_total}   last run: {when_text(st.last_run)}"
            )
            if self.run is None and st.holder is not None:
                line.append(f"   run by {holder_text(st.holder)}")
        self.query_one("#info-status", Static).update(line)

    def _show_detail(self) -> None:
        detail = self.query_one("#account-detail", Static)
        table = self.table
        if not table.row_count:
            detail.update(Text("No accounts in this task's user list." if not self.load_error else ""))
            return
        key = table.cursor_key() or ""
        s = self.summaries.get(key)
        source = self._source_of.get(key, key)
        if s is None:
            detail.update(Text(escape_controls(f"{source}: not migrated yet")))
            return
        text = Text(escape_controls(f"{source} → {s.destination}: skipped: {skipped_detail(s.skipped)}"))
        progress = self.run.progress.get(source) if self.run is not None else None
        if progress is not None:
            eta = f", about {duration_text(progress.eta_s)} left" if progress.eta_s else ""
            text.append(
                f"; now {escape_controls(progress.folder)} {progress.done}/{progress.total}, account "
                f"{progress.account_done}/{progress.account_total} messages, {human_bytes(progress.bytes_per_s, 'B')}/s{eta}"
            )
        if s.last_error:
            text.append(f"; last error: {escape_controls(s.last_error)}", style="red")
        detail.update(text)

    @on(VirtualTable.RowHighlighted, "#summary")
    def _highlighted(self) -> None:
        self._show_detail()

    @on(VirtualTable.RowSelected, "#summary")
    def _selected(self, event: VirtualTable.RowSelected) -> None:
        source = self._source_of.get(event.key, ALL_ACCOUNTS)
        self.pane.set_filters(account=ALL_ACCOUNTS if self.pane.account == source else source)

    # ----------------------------------------------------------------------------------------
    # Actions.

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start":
            return None if self.running or self.mig_task is None else True
        if action == "stop":
            if self.run is not None:
                return True if self.run.phase != "stopping" else None
            held = self.status is not None and self.status.holder is not None
            return True if held and self.task_name not in self.stop_requests else None
        return True

    def action_back(self) -> None:
        if isinstance(self.focused, Input):
            self.pane.log_widget.focus()
            return
        self.app.pop_screen()

    def action_start(self) -> None:
        self.app.start_task(self.task_name)  # type: ignore[attr-defined]

    def action_stop(self) -> None:
        self.app.stop_task(self.task_name)  # type: ignore[attr-defined]
        self._show_status()
        self.refresh_bindings()

    def action_search(self) -> None:
        self.query_one("#log-search", Input).focus()

    def action_account_filter(self) -> None:
        self.query_one("#log-account").focus()

    def action_severity(self) -> None:
        level = self.pane.cycle_severity()
        self.notify(f"Log shows {level} and above", timeout=2, markup=False)

    def action_follow(self) -> None:
        self.pane.log_widget.follow()
