"""The CSV import modal: pick a file, see what it holds (valid accounts, bad lines with reasons), decide.

Nothing is imported here: the modal returns the parsed list and the admin's choice, and the user
list applies it with :func:`mailmig_tui.engine.userlist.apply`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from mailmig_tui.engine import model, userlist
from mailmig_tui.screens.editor_modals import EDITOR_CSS
from mailmig_tui.widgets.form import PathSuggester
from mailmig_tui.widgets.reading_pane import ReadingPane

PREVIEW_LIMIT = 300


@dataclass(frozen=True)
class ImportDecision:
    path: str
    parsed: userlist.ParsedList
    valid_only: bool


class ImportCsvModal(ModalScreen[ImportDecision | None]):
    """Import accounts from a CSV file; escape cancels."""

    CSS_PATH = EDITOR_CSS
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="import.cancel")]

    def __init__(self, source: model.Source, *, path: str = "") -> None:
        super().__init__(classes="editor-modal", id="import-csv")
        self.source = source
        self.initial = path
        self.parsed: userlist.ParsedList | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-body"):
            yield Static(
                Text(
                    "Import accounts from a CSV file, one per line: source account, source password, "
                    "destination account[, destination password]. → completes the path."
                ),
                classes="modal-question",
                markup=False,
            )
            yield Input(self.initial, id="csv-path", placeholder="/path/to/users.csv", suggester=PathSuggester())
            with ReadingPane(id="csv-preview-scroll"):
                yield Static("", id="csv-preview", markup=False)
            with Horizontal(classes="modal-buttons"):
                yield Button("Import all", id="import-all", variant="primary", disabled=True)
                yield Button("Import valid lines only", id="import-valid", variant="warning", disabled=True)
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#csv-path", Input).focus()
        self._preview(self.initial)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._preview(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        enabled = [b for b in self.query(Button) if not b.disabled]
        if enabled:
            enabled[0].focus()

    def _preview(self, value: str) -> None:
        self.parsed = None
        text = self._read(value.strip())
        if isinstance(text, Text):
            self._show(text)
            return
        self.parsed = parsed = userlist.parse(text, self.source)
        bad_lines = len({e.line for e in parsed.errors})
        out = Text()
        out.append(f"{len(parsed.users)} valid account(s)", style="green" if parsed.users else "")
        out.append(", ")
        out.append(f"{bad_lines} bad line(s)", style="red" if bad_lines else "")
        if bad_lines:
            out.append(": with bad lines, only “Import valid lines only” imports anything")
        if parsed.header_skipped:
            out.append("\n(the first line is a column header and was skipped)", style="dim")
        for e in parsed.errors[:PREVIEW_LIMIT]:
            out.append(f"\nline {e.line}: ", style="bold red")
            out.append(e.message)
        if len(parsed.errors) > PREVIEW_LIMIT:
            out.append(f"\n… and {len(parsed.errors) - PREVIEW_LIMIT} more problem(s)")
        for line, user in parsed.users[:PREVIEW_LIMIT]:
            out.append(f"\nline {line}: ", style="dim")
            out.append(f"{user.source} → {user.destination}")
            out.append(" (password set)" if user.password else " (no password)", style="dim")
        if len(parsed.users) > PREVIEW_LIMIT:
            out.append(f"\n… and {len(parsed.users) - PREVIEW_LIMIT} more account(s)")
        self._show(out)

    def _read(self, value: str) -> str | Text:
        """The file's text, or a Text explaining why there is none."""
        if not value:
            return Text("Type the path of a CSV file.", style="dim")
        path = Path(value).expanduser()
        if path.is_dir():
            return Text(f"{path} is a folder: type a file name (→ completes).", style="dim")
        if not path.is_file():
            return Text(f"No file at {path}.", style="dim")
        try:
            return userlist.decode(path.read_bytes())
        except OSError as exc:
            return Text(f"{path}: cannot read the file: {exc.strerror}", style="red")
        except ValueError as exc:
            return Text(f"{path}: {exc}", style="red")

    def _show(self, text: Text) -> None:
        self.query_one("#csv-preview", Static).update(text)
        parsed = self.parsed
        self.query_one("#import-all", Button).disabled = not (parsed and parsed.users and not parsed.errors)
        self.query_one("#import-valid", Button).disabled = not (parsed and parsed.users)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "cancel" or self.parsed is None:
            self.dismiss(None)
            return
        path = self.query_one("#csv-path", Input).value.strip()
        self.dismiss(ImportDecision(path, self.parsed, valid_only=event.button.id == "import-valid"))

    def action_cancel(self) -> None:
        self.dismiss(None)
