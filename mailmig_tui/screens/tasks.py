"""The home screen: one row per task, with its live state, and the keys that act on the highlighted task."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static
from textual.worker import Worker, WorkerState

from mailmig_tui.engine import store
from mailmig_tui.engine.model import SOURCE_TYPE_LABELS, Task, validate_task_name
from mailmig_tui.engine.status import StatusReader, TaskStatus, files_signature
from mailmig_tui.engine.textsafe import escape_controls
from mailmig_tui.messages import RunEvents, RunStateChanged
from mailmig_tui.runs import holder_text, status_style, status_text, when_text
from mailmig_tui.screens.modals import DeleteTaskModal, ErrorModal, PromptModal
from mailmig_tui.widgets.footer import KeyFooter

# (key, label, width): live columns have a fixed width (updated cells never re-measure the table).
COLUMNS = (
    ("name", "Task", None),
    ("type", "Source", 16),
    ("status", "Status", 18),
    ("accounts", "Accounts", 9),
    ("last", "Last run", 16),
    ("next", "Next run", 16),
)
POLL_SECONDS = 1.0
NEEDS_TASK = {"edit", "duplicate", "delete", "start", "stop", "info"}


class TasksScreen(Screen[None]):
    TITLE = "Tasks"
    BINDINGS = [
        Binding("n", "new", "New", id="tasks.new"),
        Binding("e", "edit", "Edit", id="tasks.edit", key_display="e/enter"),
        Binding("s", "start", "Start", id="tasks.start"),
        Binding("x", "stop", "Stop", id="tasks.stop"),
        Binding("i", "info", "Info", id="tasks.info"),
        Binding("d", "duplicate", "Duplicate", id="tasks.duplicate", show=False),
        Binding("delete", "delete", "Delete", id="tasks.delete"),
        Binding("g,S", "settings", "Settings", id="tasks.settings"),
        Binding("r", "reload", "Reload", id="tasks.reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, Task | store.ConfigError] = {}
        self.statuses: dict[str, TaskStatus] = {}
        self._reader = StatusReader()
        self._shown: dict[str, dict[str, str]] = {}
        self._files: dict[str, tuple[int, int]] = {}
        self._polled: tuple[object, ...] = ()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(
            Text(f"No tasks yet. Task files live in {store.paths().tasks_dir}. Press n to create one."),
            id="tasks-empty",
            markup=False,
        )
        yield DataTable(id="tasks-table", cursor_type="row")
        yield Static("", id="tasks-detail", markup=False)
        yield KeyFooter(compact=True, show_command_palette=False)

    @property
    def table(self) -> DataTable:
        return self.query_one("#tasks-table", DataTable)

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.table.add_column(label, key=key, width=width)
        self.action_reload()
        self.set_interval(POLL_SECONDS, self.poll)
        self.poll()

    def on_screen_resume(self) -> None:
        # back from the editor, Settings or Task info: read the tasks again only when a file changed
        # (100,000 accounts take a third of a second to read)
        if self.is_mounted and self.table.columns and _task_files() != self._files:
            self.action_reload()

    # ----------------------------------------------------------------------------------------
    # Rows.

    @property
    def selected(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return str(row_key.value)

    def select(self, name: str) -> None:
        if name in self.tasks:
            self.table.move_cursor(row=self.table.get_row_index(name))

    def action_reload(self) -> None:
        """Read every task file again and rebuild the table (the cursor stays on its task)."""
        keep = self.selected
        self.tasks = {}
        for name in store.list_tasks():
            try:
                self.tasks[name] = store.load_task(name)
            except store.ConfigError as exc:
                self.tasks[name] = exc
        self._files = _task_files()
        table = self.table
        with self.app.batch_update():
            table.clear()
            self._shown.clear()
            for name in self.tasks:
                cells = self._cells(name)
                table.add_row(*(cells[c] for c, _, _ in COLUMNS), key=name)
                self._shown[name] = {c: _sig(t) for c, t in cells.items()}
        if keep:
            self.select(keep)
        self.query_one("#tasks-empty").display = not self.tasks
        self._show_detail()
        self.refresh_bindings()

    def _cells(self, name: str) -> dict[str, Text]:
        task = self.tasks[name]
        if isinstance(task, store.ConfigError):
            dash = Text("-")
            return {
                "name": Text(escape_controls(name)),
                "type": Text("?"),
                "status": Text("broken", style="bold red"),
                "accounts": dash,
                "last": dash,
                "next": dash,
            }
        st = self.statuses.get(name)
        state = status_text(st, self.app_runs.get(name))
        return {
            "name": Text(escape_controls(name)),
            "type": Text(escape_controls(SOURCE_TYPE_LABELS.get(task.source.type, task.source.type))),
            "status": Text(state, style=status_style(state)),
            "accounts": Text(f"{st.accounts_done}/{st.accounts_total}" if st else f"-/{len(task.users)}"),
            "last": Text(when_text(st.last_run) if st else "-"),
            "next": Text(when_text(st.next_run) if st and st.next_run else "-"),
        }

    def refresh_rows(self, names: list[str] | None = None) -> None:
        """Update the cells that changed (never rebuilding the table)."""
        table = self.table
        for name in names if names is not None else list(self.tasks):
            shown = self._shown.get(name)
            if shown is None:
                continue
            for column, text in self._cells(name).items():
                sig = _sig(text)
                if shown[column] != sig:
                    table.update_cell(name, column, text)
                    shown[column] = sig
        self._show_detail()
        self.refresh_bindings()

    def _show_detail(self) -> None:
        detail = self.query_one("#tasks-detail", Static)
        name = self.selected
        if name is None:
            detail.update("")
            return
        task = self.tasks.get(name)
        if isinstance(task, store.ConfigError):
            detail.update(Text(escape_controls(str(task), keep_newlines=True), style="red"))
            return
        st = self.statuses.get(name)
        if name in self.app_runs:
            text = f"{name}: running in this app; i shows its log, x stops it."
        elif st is not None and st.holder is not None:
            text = f"{name}: running in another process: {holder_text(st.holder)}; i follows its log."
        elif task is not None:
            src = task.source
            where = f"{src.host}:{src.port} ({src.security})" if src.type == "imap" else src.type
            text = f"{name}: {len(task.users)} account(s) from {where}"
            if st is not None and st.last_status:
                text += f"; last run {st.last_status}"
        else:
            text = ""
        detail.update(Text(escape_controls(text)))

    @on(DataTable.RowHighlighted, "#tasks-table")
    def _highlighted(self) -> None:
        self._show_detail()
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#tasks-table")
    def _selected(self) -> None:
        if self.check_action("edit", ()):
            self.action_edit()

    # ----------------------------------------------------------------------------------------
    # Status polling (a thread worker: lock files and state databases are read off the UI thread).

    @property
    def app_runs(self) -> dict:
        return getattr(self.app, "runs", {})

    def poll(self) -> None:
        """Statuses read again (in a thread) only when a file they come from changed: an idle app
        costs a few stat calls a second."""
        sig = files_signature(list(self.tasks))
        if sig == self._polled:
            return
        self._polled = sig
        tasks = {n: t for n, t in self.tasks.items() if isinstance(t, Task)}
        self._poll_worker(tasks, self._files)

    @work(thread=True, exclusive=True, group="tasks-poll", exit_on_error=False)
    def _poll_worker(
        self, tasks: dict[str, Task], files: dict[str, tuple[int, int]]
    ) -> tuple[dict[str, TaskStatus], bool]:
        statuses = {}
        for name, task in tasks.items():
            try:
                statuses[name] = self._reader.status(task)
            except Exception:  # noqa: BLE001, S112 - a damaged state file must not stop the list; shown as idle
                continue
        return statuses, _task_files() != files

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "tasks-poll" or event.state != WorkerState.SUCCESS:
            return
        statuses, files_changed = event.worker.result
        self.statuses.update(statuses)
        if files_changed:  # the statuses were read for the tasks as they were: read them again for these
            self.action_reload()
            self._polled = ()
            self.poll()
        else:
            self.refresh_rows()

    def on_run_events(self, message: RunEvents) -> None:
        self.refresh_rows([message.run.task])

    def on_run_state_changed(self, message: RunStateChanged) -> None:
        self.refresh_rows([message.run.task])
        if message.run.ended:
            self._polled = ()
            self.poll()

    # ----------------------------------------------------------------------------------------
    # Actions.

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in NEEDS_TASK:
            return True
        name = self.selected
        if name is None:
            return None
        task = self.tasks.get(name)
        broken = isinstance(task, store.ConfigError)
        run = self.app_runs.get(name)
        st = self.statuses.get(name)
        running = run is not None or (st is not None and st.running)
        if action == "start":
            return None if running or broken else True
        if action == "stop":
            if run is not None:
                return None if run.phase == "stopping" else True
            asked = getattr(self.app, "stop_requests", {})
            return True if st is not None and st.holder and name not in asked else None
        if action == "delete":
            return None if running else True
        if action in ("edit", "duplicate"):
            return None if broken else True
        return True

    def action_new(self) -> None:
        self._open_editor(None)

    def action_edit(self) -> None:
        if self.selected:
            self._open_editor(self.selected)

    def _open_editor(self, name: str | None) -> None:
        try:
            from mailmig_tui.screens.editor import TaskEditorScreen
        except ModuleNotFoundError as exc:
            if exc.name != "mailmig_tui.screens.editor":
                raise
            self.notify(
                "The task editor is not part of this build yet; edit the task file "
                f"in {store.paths().tasks_dir} and press r to reload.",
                title="Task editor",
                severity="warning",
                markup=False,
            )
            return

        def done(saved: str | None = None) -> None:
            if _task_files() != self._files:
                self.action_reload()
            if saved:
                self.select(saved)

        loaded = self.tasks.get(name) if name and _task_files() == self._files else None
        self.app.push_screen(
            TaskEditorScreen(name, loaded=loaded if isinstance(loaded, Task) else None, reader=self._reader), done
        )

    def action_duplicate(self) -> None:
        name = self.selected
        task = self.tasks.get(name) if name else None
        if not isinstance(task, Task):
            return

        def check(new: str) -> list[str]:
            return [p.message for p in validate_task_name(new, store.list_tasks())]

        def done(new: str | None) -> None:
            if new is None:
                return
            try:
                store.save_task(store.copy_task(task, new))
            except store.ConfigError as exc:
                self.app.push_screen(ErrorModal("Cannot duplicate the task", str(exc)))
                return
            self.action_reload()
            self.select(new)
            self._open_editor(new)

        self.app.push_screen(
            PromptModal(
                "Duplicate task",
                f"Name of the copy of {task.name} (users and passwords are copied too):",
                _free_name(task.name),
                check=check,
            ),
            done,
        )

    def action_delete(self) -> None:
        name = self.selected
        if name is None:
            return

        def done(with_state: bool | None) -> None:
            if with_state is None:
                return
            store.delete_task(name, with_state=with_state)
            self.notify(f"Deleted task {name}" + (" with its state and log" if with_state else ""), markup=False)
            self.action_reload()

        self.app.push_screen(DeleteTaskModal(name), done)

    def action_start(self) -> None:
        if self.selected:
            self.app.start_task(self.selected)  # type: ignore[attr-defined]
            self.refresh_rows([self.selected])

    def action_stop(self) -> None:
        """This app's run stops after its current batch; a run of another process is asked to (confirmed)."""
        name = self.selected
        if name is None:
            return
        self.app.stop_task(name)  # type: ignore[attr-defined]
        self.refresh_rows([name])

    def action_info(self) -> None:
        if self.selected:
            from mailmig_tui.screens.info import InfoScreen

            self.app.push_screen(InfoScreen(self.selected))

    def action_settings(self) -> None:
        from mailmig_tui.screens.settings import SettingsScreen

        self.app.push_screen(SettingsScreen())


def _free_name(name: str) -> str:
    existing = {n.casefold() for n in store.list_tasks()}
    for i in range(2, 1000):
        candidate = f"{name} {i}"[:64]
        if candidate.casefold() not in existing:
            return candidate
    return name


def _task_files() -> dict[str, tuple[int, int]]:
    """The task files, their user lists and secrets, with modification time and size: a change made
    outside the app (or by a save) reloads the list."""
    p = store.paths()
    try:
        files = [
            *p.tasks_dir.glob("*.toml"),
            *p.tasks_dir.glob(f"*{store.USERS_SUFFIX}"),
            *p.secrets_dir.glob("*.toml"),
            *p.secrets_dir.glob(f"*{store.USERS_SUFFIX}"),
        ]
        return {str(f): (st.st_mtime_ns, st.st_size) for f in files for st in [f.stat()]}
    except OSError:
        return {}


def _sig(text: Text) -> str:
    return f"{text.plain}\x00{text.style}"
