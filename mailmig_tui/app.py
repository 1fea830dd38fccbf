"""The Textual application: screens, global keys, and the wiring of runs to thread workers.

No migration logic lives here: a run is ``runner.run_task`` in a thread worker (one worker group per
task). Its events go into a thread-safe sink that a ~100 ms timer drains on the UI thread; each batch
is handed to the screens as one :class:`~mailmig_tui.messages.RunEvents` message. Stopping sets the
run's cancel event; the engine stops after the current batch and the next start resumes.

Losing the terminal (SIGHUP when SSH drops, or SIGTERM) stops every run the same way and exits once
the runs have ended.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.command import DiscoveryHit, Hits
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.system_commands import SystemCommandsProvider
from textual.worker import Worker, WorkerState

from mailmig_tui.engine import runner, store
from mailmig_tui.engine.logfile import Redactor
from mailmig_tui.engine.model import Settings, Task, validate_settings, validate_task
from mailmig_tui.engine.status import StatusReader
from mailmig_tui.engine.textsafe import escape_controls
from mailmig_tui.messages import RunEvents, RunStateChanged
from mailmig_tui.runs import Run, holder_text
from mailmig_tui.screens.modals import ConfirmModal, ErrorModal, HelpScreen, is_framework_key
from mailmig_tui.screens.tasks import TasksScreen

DRAIN_SECONDS = 0.1
STOP_WATCH_SECONDS = 1.0  # a stop asked of another process: how often the app looks whether it stopped
EXIT_INTERRUPTED = 130
STOP_SIGNALS = (signal.SIGHUP, signal.SIGTERM)


class AppCommands(SystemCommandsProvider):
    """``get_system_commands`` in its own order (Textual's provider sorts them by name when nothing is typed)."""

    async def discover(self) -> Hits:
        for command in self.app.get_system_commands(self.screen):
            if command.discover:
                yield DiscoveryHit(command.title, command.callback, help=command.help)


class MailmigApp(App[None]):
    TITLE = "mailmig-tui"
    SUB_TITLE = "message migration"
    CSS_PATH = Path(__file__).with_name("app.tcss")
    COMMANDS = {AppCommands}
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
        Binding("f1", "help", "Help", id="app.help"),
    ]

    def __init__(self, *, runner_options: dict[str, Any] | None = None) -> None:
        """``runner_options``: extra keyword arguments for ``runner.run_task`` (tests: limits, factories)."""
        super().__init__()
        self.runs: dict[str, Run] = {}
        self.stop_requests: dict[str, dict] = {}  # task -> the other process's run asked to stop (its lock holder)
        self.runner_options = dict(runner_options or {})
        self.hung_up = False
        self.quitting = False
        self._signals: list[signal.Signals] = []

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every toast (screens' and widgets' ``notify`` end here) shows control characters escaped."""
        super().notify(
            escape_controls(message, keep_newlines=True),
            title=escape_controls(title),
            severity=severity,
            timeout=timeout,
            markup=markup,
        )

    def get_driver_class(self) -> type[Driver]:
        driver = super().get_driver_class()
        if driver is LinuxDriver:
            from mailmig_tui.terminal import HangupSafeDriver

            return HangupSafeDriver
        return driver

    def on_mount(self) -> None:
        self.push_screen(TasksScreen())
        self._drain_timer = self.set_interval(DRAIN_SECONDS, self.drain, pause=True)  # runs only while runs do
        self._stop_timer = self.set_interval(STOP_WATCH_SECONDS, self._watch_stops, pause=True)
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            try:
                loop.add_signal_handler(sig, self.hangup)
            except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no signals
                continue
            self._signals.append(sig)

    def on_unmount(self) -> None:
        for run in self.runs.values():  # whatever ends the app, its runs stop cleanly
            run.cancel.set()
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()

    # ----------------------------------------------------------------------------------------
    # Runs.

    def start_task(self, name: str) -> Run | None:
        """Start a run of ``name`` in a thread worker; problems that prevent it are shown, not raised."""
        if name in self.runs:
            return self.runs[name]
        try:
            task, settings = store.load_task(name), store.load_settings()
        except store.ConfigError as exc:
            self.push_screen(ErrorModal(f"Task {name} cannot start", str(exc)))
            return None
        problems = validate_task(task, settings=settings) + validate_settings(settings)
        if problems:
            text = "\n".join(f"• {p}" for p in problems)
            self.push_screen(
                ErrorModal(
                    f"Task {name} cannot start",
                    f"{text}\n\nFix the task in the editor (e) or the destination in Settings (g).",
                )
            )
            return None
        if not task.users:
            self.push_screen(
                ErrorModal(f"Task {name} has no accounts", "Import a user list in the task editor (e) first.")
            )
            return None
        holder = runner.lock_holder(runner.lock_path(store.paths(), name))
        if holder is not None:
            self.push_screen(ErrorModal(f"Task {name} is already running", f"It is run by {holder_text(holder)}."))
            return None
        run = Run(name, Redactor(runner.secrets_of(task, settings)))
        self.runs[name] = run
        self._drain_timer.resume()
        self.run_worker(
            partial(self._run_task, run, task, settings),
            name=f"run {name}", group=f"task-{name}", description=f"migrating {name}",
            thread=True, exit_on_error=False,
        )  # fmt: skip
        self.post_to_screens(RunStateChanged(run))
        return run

    def _run_task(self, run: Run, task: Task, settings: Settings) -> runner.RunResult:
        """In the worker thread: the engine does everything, reporting through ``run.sink``."""
        return runner.run_task(task, settings, cancel=run.cancel, sink=run.sink, by="tui", **self.runner_options)

    def stop_task(self, name: str) -> None:
        """Stop this app's run of ``name``, or ask (after a confirmation) the other process running it."""
        run = self.runs.get(name)
        if run is not None:
            if run.phase != "stopping":
                run.stop()
                self.post_to_screens(RunStateChanged(run))
            return
        holder = runner.lock_holder(runner.lock_path(store.paths(), name))
        if holder is None or name in self.stop_requests:
            return
        who = holder_text(holder)

        def done(yes: bool | None) -> None:
            if not yes or runner.lock_holder(runner.lock_path(store.paths(), name)) != holder:
                return
            try:
                runner.request_stop(store.paths(), name, holder, by="tui")
            except OSError as exc:
                self.notify(f"Could not ask {who} to stop: {exc}", severity="error", markup=False)
                return
            self.stop_requests[name] = holder
            self._stop_timer.resume()
            self.notify(f"Asked {who} to stop {name} after its current batch", markup=False)
            self.refresh_bindings()

        self.push_screen(
            ConfirmModal(
                f"Stop the run of {name} in another process?",
                f"{name} is being run by {who}. Ask it to stop after its current batch? What it copied is "
                "kept; starting the task again resumes.",
                yes="Stop it",
            ),
            done,
        )

    def _watch_stops(self) -> None:
        """Tell the outcome of each stop asked of another process once its run has let go of the task."""
        p = store.paths()
        for name, holder in list(self.stop_requests.items()):
            if runner.lock_holder(runner.lock_path(p, name)) == holder:
                continue
            del self.stop_requests[name]
            _, last = StatusReader(p).progress(name)  # the last run; no message figures needed
            how = last["status"] if last else "ended"
            self.notify(
                f"The run of {name} by {holder_text(holder)} {how}"
                + ("; start it again to resume" if how == "stopped" else ""),
                title="Run finished",
                markup=False,
                timeout=8,
            )
            self.refresh_bindings()
        if not self.stop_requests:
            self._stop_timer.pause()

    def drain(self) -> None:
        for run in list(self.runs.values()):
            self._drain(run)
        if (self.hung_up or self.quitting) and not self.runs:
            self.exit(return_code=EXIT_INTERRUPTED if self.hung_up else 0)
        elif not self.runs:
            self._drain_timer.pause()  # an idle app wakes up for nothing

    def _drain(self, run: Run) -> None:
        batch = run.sink.drain()
        if batch:
            run.absorb(batch)
            self.post_to_screens(RunEvents(run, batch))

    def post_to_screens(self, message: RunEvents | RunStateChanged) -> None:
        for screen in self.screen_stack:
            screen.post_message(message)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if not worker.group.startswith("task-") or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR):
            return
        name = worker.group.removeprefix("task-")
        run = self.runs.pop(name, None)
        if run is None:
            return
        self._drain(run)
        run.ended = True
        if event.state == WorkerState.SUCCESS:
            run.result = worker.result
            self._notify_result(run)
        else:
            self._show_run_error(name, worker.error)
        self.post_to_screens(RunStateChanged(run))
        if (self.hung_up or self.quitting) and not self.runs:
            self.exit(return_code=EXIT_INTERRUPTED if self.hung_up else 0)

    def _notify_result(self, run: Run) -> None:
        result = run.result
        if result is None:
            return
        failed = sum(1 for a in result.accounts if a.status == "failed")
        ok = sum(1 for a in result.accounts if a.status == "complete")
        partial = sum(1 for a in result.accounts if a.status == "partial")
        text = f"{run.task}: run {result.status}: {ok} complete, " + (f"{partial} partial, " if partial else "")
        text += f"{failed} failed"
        if result.status == "stopped":
            text += "; start it again to resume"
        severity = "information" if result.status in ("completed", "stopped") else "error"
        self.notify(text, title="Run finished", severity=severity, markup=False, timeout=8)

    def _show_run_error(self, name: str, error: BaseException | None) -> None:
        if isinstance(error, runner.RunError | runner.RunConfigError):
            body = str(error)
            if "certificate" in body:
                body += "\n\nOpen Settings (g) and test the destination (ctrl+t) to check and pin its certificate."
            self.push_screen(ErrorModal(f"Task {name} could not start", body))
        else:
            self.push_screen(
                ErrorModal(
                    f"Task {name} stopped on an unexpected error",
                    f"{type(error).__name__}: {error}\n\nWhat was copied is recorded; starting the task again resumes.",
                )
            )

    # ----------------------------------------------------------------------------------------
    # Leaving.

    def hangup(self) -> None:
        """The terminal is gone (SIGHUP) or we are told to stop (SIGTERM): stop every run, then exit."""
        self.hung_up = True
        self._drain_timer.resume()
        for run in self.runs.values():
            run.stop()
        driver = self._driver
        if driver is not None:
            driver.disable_input()  # nothing more can come from a hung-up terminal
        if not self.runs:
            self.exit(return_code=EXIT_INTERRUPTED)

    async def action_quit(self) -> None:
        if not self.runs:
            self.exit()
            return
        names = ", ".join(sorted(self.runs))

        def done(stop: bool | None) -> None:
            if not stop:
                return
            self.quitting = True
            self._drain_timer.resume()
            for run in self.runs.values():
                run.stop()
                self.post_to_screens(RunStateChanged(run))
            self.notify("Stopping the runs after their current batch, then quitting…", markup=False)

        self.push_screen(
            ConfirmModal(
                "Quit while tasks run?",
                f"Running now: {names}. Quitting stops them after their current batch; "
                "starting them again resumes where they stopped.",
                yes="Stop and quit",
            ),
            done,
        )

    # ----------------------------------------------------------------------------------------
    # Help and the command palette.

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The screen's own actions (in the order of its keys), then help and quit, then Textual's theme,
        maximize and screenshot; each title once, without the framework's focus and copy keys."""
        seen: set[str] = set()
        for active in screen.active_bindings.values():
            binding, node = active.binding, active.node
            if node is not screen or not binding.description or not active.enabled or is_framework_key(binding):
                continue
            if binding.description in seen:
                continue
            seen.add(binding.description)
            key = self.get_key_display(binding)
            yield SystemCommand(
                binding.description,
                f"{binding.tooltip or binding.description} ({key})",
                partial(screen.run_action, binding.action),
            )
        seen.add("Help: keys")
        yield SystemCommand("Help: keys", "Every key of this screen (F1)", self.action_help)
        for command in super().get_system_commands(screen):
            if command.title not in seen and command.title != "Keys":  # "Keys": Textual's panel, F1 instead
                seen.add(command.title)
                yield command
