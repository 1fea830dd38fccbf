"""The scheduler: starts due tasks headless, one run per task, stops each at its window's end.

``mailmig-tui scheduler`` runs this in the foreground (systemd, tmux); ``--once`` runs what is due
now and exits (cron). Task files are re-read on every tick, so edits take effect without a restart.
SIGTERM sets every run's cancel token: runs stop after their current batch and resume next time.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from mailmig_tui.engine import runner, store
from mailmig_tui.engine.events import AccountFinished, Event, LogLine, RunFinished, RunStarted, Sink, describe
from mailmig_tui.engine.model import Task
from mailmig_tui.engine.schedule import due_slot, local_zone, window_end
from mailmig_tui.engine.state import StateDB
from mailmig_tui.engine.textsafe import escape_controls

TICK_S = 20.0

Clock = Callable[[], dt.datetime]


def _now() -> dt.datetime:
    return dt.datetime.now(local_zone())


@dataclass
class _Running:
    thread: threading.Thread
    cancel: threading.Event
    stop_at: dt.datetime
    result: runner.RunResult | None = None
    error: str = ""


@dataclass
class Scheduler:
    """Call :meth:`tick` periodically (``serve`` does); every decision uses the injected clock."""

    emit: Sink
    clock: Clock = _now
    paths: store.Paths = field(default_factory=store.paths)
    running: dict[str, _Running] = field(default_factory=dict)

    def log(self, text: str, severity: str = "info", task: str = "") -> None:
        self.emit(LogLine(task or "scheduler", "", severity=severity, text=text))

    def _last_start(self, name: str) -> dt.datetime | None:
        path = self.paths.state_file(name)
        if not path.exists():
            return None
        db = StateDB.open_readonly(path)
        try:
            last = db.last_run()
        finally:
            db.close()
        return dt.datetime.fromtimestamp(last["started"], dt.UTC) if last else None

    def reap(self) -> None:
        """Forget finished runs (logging how they ended) and stop runs whose window has ended."""
        now = self.clock()
        for name, r in list(self.running.items()):
            if not r.thread.is_alive():
                del self.running[name]
                status = r.result.status if r.result else f"could not start: {r.error}"
                self.log(f"run of {name} ended: {status}", "info" if r.result else "error", name)
            elif now >= r.stop_at and not r.cancel.is_set():
                self.log(
                    f"{name}: the schedule's window ended at {r.stop_at:%H:%M}; stopping (resumes next time)", task=name
                )
                r.cancel.set()

    def tick(self) -> list[str]:
        """Reap, then start every due task that is not running; returns the tasks started."""
        self.reap()
        now = self.clock()
        started = []
        for name in store.list_tasks(self.paths):
            if name in self.running:
                continue
            try:
                task = store.load_task(name, self.paths)
            except store.ConfigError as exc:
                self.log(f"cannot read task {name}: {exc}", "error", name)
                continue
            slot = due_slot(task.schedule, now, self._last_start(name))
            if slot is None:
                continue
            if runner.lock_holder(runner.lock_path(self.paths, name)):
                continue  # a run of it is going elsewhere (the app, the CLI)
            stop_at = window_end(task.schedule, slot)
            self._start(task, stop_at)
            started.append(name)
        return started

    def _start(self, task: Task, stop_at: dt.datetime) -> None:
        cancel = threading.Event()
        entry = _Running(threading.Thread(), cancel, stop_at)

        def work() -> None:
            try:
                settings = store.load_settings(self.paths)
                entry.result = runner.run_task(
                    task,
                    settings,
                    cancel=cancel,
                    by="scheduler",
                    paths=self.paths,
                    sink=self._forward,
                    clock=lambda: self.clock().timestamp(),
                )
            except (runner.RunError, runner.RunConfigError, store.ConfigError) as exc:
                entry.error = str(exc)
            except Exception as exc:  # noqa: BLE001 - the scheduler keeps serving the other tasks
                entry.error = f"{type(exc).__name__}: {exc}"

        entry.thread = threading.Thread(target=work, name=f"run-{task.name}", daemon=True)
        self.running[task.name] = entry
        self.log(f"starting {task.name} (window ends {stop_at:%Y-%m-%d %H:%M})", task=task.name)
        entry.thread.start()

    def _forward(self, event: Event) -> None:
        """Pass a run's milestones and problems on to the scheduler's own output."""
        if isinstance(event, RunStarted | RunFinished | AccountFinished) or (
            isinstance(event, LogLine) and event.severity in ("warning", "error")
        ):
            self.emit(event)

    def stop_all(self, timeout: float = 120.0) -> None:
        for r in self.running.values():
            r.cancel.set()
        for r in self.running.values():
            r.thread.join(timeout)
        self.reap()

    def serve(self, stop: threading.Event, *, once: bool = False, tick_s: float = TICK_S) -> None:
        """Tick until ``stop`` is set (or, with ``once``, until what was due has finished)."""
        self.log("scheduler started" + (" (once)" if once else ""))
        self.tick()
        while not stop.is_set():
            if once and not self.running:
                break
            if once:
                stop.wait(0.5)
                self.reap()
                continue
            stop.wait(tick_s)
            if not stop.is_set():
                self.tick()
        self.stop_all()
        self.log("scheduler stopped")


def print_sink(event: Event) -> None:
    """The scheduler's own output (stdout: the journal under systemd)."""
    severity, _folder, text = describe(event)
    stamp = dt.datetime.fromtimestamp(event.time).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    who = escape_controls(" ".join(x for x in (event.task, event.account) if x))
    print(f"{stamp} {severity.upper():7} {who}: {escape_controls(text)}", flush=True)
