"""The home screen: one row per task."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from mailmig_tui.engine import store
from mailmig_tui.engine.model import SOURCE_TYPE_LABELS

COLUMNS = (("name", "Task"), ("type", "Source"), ("status", "Status"), ("accounts", "Accounts"))


class TasksScreen(Screen[None]):
    BINDINGS = [Binding("r", "reload", "Reload", id="reload")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(
            Text(f"No tasks yet. Task files live in {store.paths().tasks_dir}."), id="tasks-empty", markup=False
        )
        yield DataTable(id="tasks-table", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.action_reload()

    def action_reload(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        names = store.list_tasks()
        for name in names:
            try:
                task = store.load_task(name)
                row = (
                    Text(name),
                    Text(SOURCE_TYPE_LABELS.get(task.source.type, task.source.type)),
                    Text("idle"),
                    Text(str(len(task.users))),
                )
            except store.ConfigError as exc:
                row = (Text(name), Text("?"), Text("broken", style="bold red"), Text(str(exc).splitlines()[0]))
            table.add_row(*row, key=name)
        self.query_one("#tasks-empty").display = not names
