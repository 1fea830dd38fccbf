"""Small dialogs: confirm, delete a task, ask for a name, show an error, trust a certificate, key help.

Every text that may hold a task name, an account, a folder or a server's words is passed as
``rich.text.Text`` (never parsed as markup). Escape always cancels.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.suggester import Suggester
from textual.widgets import Button, Checkbox, DataTable, Input, Log, Select, Static

from mailmig_tui.engine.textsafe import escape_controls
from mailmig_tui.widgets.reading_pane import ReadingPane


def _plain(text: str | Text) -> Text:
    """A dialog's text: ``Text`` as it is; a string with its control characters escaped (its lines kept)."""
    return Text(escape_controls(text, keep_newlines=True)) if isinstance(text, str) else text


class ConfirmModal(ModalScreen[bool]):
    """A yes/no question; y/enter confirms, n/escape cancels."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, title: str, body: str | Text, *, yes: str = "Yes", no: str = "Cancel") -> None:
        super().__init__(classes="dialog-screen")
        self._title, self._body, self._yes, self._no = title, body, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(_plain(self._title), classes="dialog-title")
            yield Static(_plain(self._body), classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self._yes} (y)", variant="error", id="yes")
                yield Button(f"{self._no} (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class DeleteTaskModal(ModalScreen[bool | None]):
    """Delete a task: None = cancelled, False = the task only, True = with its state and log."""

    BINDINGS = [
        Binding("y", "delete", "Delete", id="delete.yes"),
        Binding("n,escape", "cancel", "Cancel", id="delete.no"),
    ]

    def __init__(self, name: str) -> None:
        super().__init__(classes="dialog-screen")
        self.task_name = name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text("Delete task"), classes="dialog-title")
            yield Static(
                Text.assemble(
                    "Delete the task ",
                    (self.task_name, "bold"),
                    " and its passwords? Mail already copied stays at the destination.",
                ),
                classes="dialog-body",
            )
            yield Checkbox("Also delete its saved state and log (its history is lost)", id="with-state")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Delete (y)", variant="error", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "yes":
            self.action_delete()
        else:
            self.dismiss(None)

    def action_delete(self) -> None:
        self.dismiss(self.query_one("#with-state", Checkbox).value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PromptModal(ModalScreen[str | None]):
    """Ask for one line of text; ``check`` returns the problems with it (shown in place, nothing returned)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(
        self,
        title: str,
        label: str,
        value: str = "",
        *,
        check: Callable[[str], list[str]] | None = None,
        suggester: Suggester | None = None,
    ) -> None:
        super().__init__(classes="dialog-screen")
        self._title, self._label, self._value, self._check = title, label, value, check
        self._suggester = suggester

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self._title), classes="dialog-title")
            yield Static(Text(self._label), classes="dialog-body")
            yield Input(self._value, id="prompt-input", suggester=self._suggester)
            yield Static("", id="prompt-error", classes="field-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK (enter)", variant="primary", id="ok")
                yield Button("Cancel (esc)", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        value = self.query_one("#prompt-input", Input).value
        problems = self._check(value) if self._check else []
        if problems:
            self.query_one("#prompt-error", Static).update(_plain("\n".join(problems)))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ErrorModal(ModalScreen[None]):
    """A problem the admin must read: escape or enter closes it."""

    BINDINGS = [Binding("escape,enter", "close", "Close", id="error.close")]

    def __init__(self, title: str, body: str | Text) -> None:
        super().__init__(classes="dialog-screen")
        self._title, self._body = title, body

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog error-dialog"):
            yield Static(_plain(self._title), classes="dialog-title")
            with ReadingPane(classes="dialog-scroll"):
                yield Static(_plain(self._body), classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close (esc)", id="close")

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


class CertificateModal(ModalScreen[bool]):
    """An untrusted (self-signed, unknown or changed) certificate: trust it by its fingerprint, or refuse."""

    BINDINGS = [
        Binding("t", "answer(True)", "Trust", id="certificate.trust"),
        Binding("r,escape", "answer(False)", "Refuse", id="certificate.refuse"),
    ]

    def __init__(self, where: str, fingerprint: str, detail: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self.where, self.fingerprint, self.detail = where, fingerprint, detail

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text("Untrusted certificate"), classes="dialog-title")
            yield Static(
                Text.assemble(
                    (self.where, "bold"),
                    " presents a certificate that is not trusted. Its SHA-256 fingerprint is:",
                ),
                classes="dialog-body",
            )
            yield Static(Text(self.fingerprint), id="fingerprint", classes="fingerprint")
            yield Static(
                Text(
                    "Compare it with the server's own (on the server: openssl x509 -noout -fingerprint -sha256 "
                    "-in CERT.pem). Trusting pins this certificate for this server only; a different certificate "
                    "will be refused." + (f"\n\n{self.detail}" if self.detail else "")
                ),
                classes="dialog-body",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Trust (t)", variant="warning", id="trust")
                yield Button("Refuse (r)", id="refuse")

    def on_mount(self) -> None:
        self.query_one("#refuse", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "trust")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class HelpScreen(ModalScreen[None]):
    """Every key of the screen below (its own, the focused widget's and the app's), greyed when unavailable."""

    BINDINGS = [Binding("escape,f1,q", "close", "Close", id="help.close")]

    def __init__(self, screen: Screen) -> None:
        super().__init__(classes="dialog-screen")
        self._rows = help_rows(screen)
        self._title = f"Keys — {screen.title or screen.app.title}"

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog help-dialog"):
            yield Static(Text(self._title), classes="dialog-title")
            yield DataTable(id="help-table", cursor_type="row", zebra_stripes=True)
            yield Static(Text("ctrl+p opens the command palette: type to find any action."), classes="dialog-body")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Key", "Action", "Where")
        for key, description, where, enabled in self._rows:
            style = "" if enabled else "dim"
            table.add_row(Text(key, style=style), Text(description, style=style), Text(where, style=style))
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)


FRAMEWORK_ACTIONS = frozenset(b.action for b in Screen.BINDINGS if isinstance(b, Binding))  # tab, copy
WIDGET_PLACES = ((DataTable, "in the table"), (Log, "in the log"), (Input, "in a text field"), (Select, "in a list"))
RENAMED = {"command_palette": "Command palette"}


def is_framework_key(binding: Binding) -> bool:
    """Textual's own keys of every screen (next/previous field, copy): not actions of this app."""
    return binding.action in FRAMEWORK_ACTIONS


def widget_place(node: object) -> str:
    """Where a focused widget's keys work, in words (never a class name)."""
    return next((place for cls, place in WIDGET_PLACES if isinstance(node, cls)), "in the focused field")


def help_rows(screen: Screen) -> list[tuple[str, str, str, bool]]:
    """(key, description, where, enabled) for every described binding active on ``screen``: the screen's
    first, then the focused widget's, then the app's; Textual's focus and copy keys left out."""
    app = screen.app
    grouped: dict[tuple[str, str], list[str]] = {}
    enabled: dict[tuple[str, str], bool] = {}
    order: list[tuple[str, str]] = []
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if not binding.description or is_framework_key(binding):
            continue
        node = active.node
        where = "everywhere" if node is app else "this screen" if node is screen else widget_place(node)
        ident = (RENAMED.get(binding.action, binding.description), where)
        if ident not in grouped:
            grouped[ident] = []
            order.append(ident)
        grouped[ident].append(app.get_key_display(binding) if binding.key == key else key)
        enabled[ident] = enabled.get(ident, False) or active.enabled
    rank = {"this screen": 0, "everywhere": 2}
    order.sort(key=lambda ident: rank.get(ident[1], 1))
    return [(" / ".join(grouped[i]), i[0], i[1], enabled[i]) for i in order]
