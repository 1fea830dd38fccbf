"""The Textual application: global bindings and screens. No migration logic lives here."""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from mailmig_tui.screens.tasks import TasksScreen


class MailmigApp(App[None]):
    TITLE = "mailmig-tui"
    SUB_TITLE = "message migration"
    CSS_PATH = Path(__file__).with_name("app.tcss")
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True),
        Binding("f1", "help", "Help", id="help"),
    ]

    def on_mount(self) -> None:
        self.push_screen(TasksScreen())

    def action_help(self) -> None:
        self.action_show_help_panel()
