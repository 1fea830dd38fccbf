"""The task editor's modals: a path prompt (with completion), one account of the user list, and the
Microsoft 365 device-code sign-in; and where the editor's stylesheet lives."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, LoadingIndicator, Static
from textual.worker import Worker, WorkerState

from mailmig_tui.engine import model
from mailmig_tui.engine.sources import graph_auth
from mailmig_tui.screens.modals import PromptModal
from mailmig_tui.widgets.form import FieldError, FormField, PathSuggester, field_errors, focus_target

EDITOR_CSS = Path(__file__).parent.parent / "editor.tcss"


class PathModal(PromptModal):
    """Asks for a file path (with completion: → accepts the suggestion); escape cancels."""

    def __init__(self, title: str, *, value: str = "", action: str = "OK") -> None:
        super().__init__(action, title, value, check=_not_blank, suggester=PathSuggester())


def _not_blank(value: str) -> list[str]:
    return [] if value.strip() else ["a path is needed"]


# --------------------------------------------------------------------------------------------
# One account of the user list.

UserCheck = Callable[[model.User], list[model.Problem]]
"""The model's problems with an account, fields named ``source``, ``password``, ``destination``..."""

USER_FIELDS = (
    ("source", "Source account", False, ""),
    ("password", "Source password", True, "not needed with a delegate account, Google or Microsoft 365"),
    ("destination", "Destination account", False, ""),
    ("destination_password", "Destination password", True, "only when the destination logs in per user"),
)


class UserModal(ModalScreen[model.User | None]):
    """Add or edit one account; enter (or ctrl+s) checks it with the model, escape cancels."""

    CSS_PATH = EDITOR_CSS
    BINDINGS = [
        Binding("ctrl+s", "submit", "OK", id="user.ok"),
        Binding("escape", "cancel", "Cancel", id="user.cancel"),
    ]

    def __init__(self, title: str, user: model.User | None, check: UserCheck) -> None:
        super().__init__(classes="editor-modal", id="user-modal")
        self.title_text = title
        self.user = user or model.User("", "")
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-body"):
            yield Static(Text(self.title_text), classes="modal-question", markup=False)
            for name, label, secret, hint in USER_FIELDS:
                box = Input(getattr(self.user, name), id=f"u-{name}", password=secret)
                yield FormField(label, box, path=name, hint=hint)
            with Horizontal(classes="modal-buttons"):
                yield Button("OK (enter)", id="ok", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def entered(self) -> model.User:
        def value(name: str) -> str:
            text = self.query_one(f"#u-{name}", Input).value
            return text if name.endswith("password") else text.strip()

        return model.User(value("source"), value("destination"), value("password"), value("destination_password"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.action_submit()
        else:
            self.dismiss(None)

    def action_submit(self) -> None:
        user = self.entered()
        problems = self.check(user)
        found: dict[str, list[str]] = {}
        for p in problems:
            found.setdefault(p.field, []).append(p.message)
        first: FieldError | None = None
        for slot in field_errors(self):
            slot.show(found.get(slot.path, []))
            if first is None and slot.messages:
                first = slot
        if first is not None:
            target = focus_target(first.target)
            if target is not None:
                target.focus()
            return
        if problems:  # about no field of this form: keep the modal open and say so
            self.notify("; ".join(p.message for p in problems), severity="error", markup=False)
            return
        self.dismiss(user)

    def action_cancel(self) -> None:
        self.dismiss(None)


# --------------------------------------------------------------------------------------------
# The Microsoft 365 device-code sign-in.


SIGNIN_GROUP = "signin"


class SignInCode(Message):
    """The sign-in started: show its URL and code (posted from the sign-in thread)."""

    def __init__(self, flow: graph_auth.DeviceSignIn) -> None:
        super().__init__()
        self.flow = flow


class SignInEnded(Message):
    """The sign-in ended: ``account`` on success, else ``failure`` ("" when cancelled)."""

    def __init__(self, account: str | None, failure: str = "") -> None:
        super().__init__()
        self.account = account
        self.failure = failure


class SignInModal(ModalScreen[str | None]):
    """Shows the device code and waits for the admin to enter it; the result is the signed-in account.

    The sign-in runs in a thread worker (one request for the code, then MSAL's polling); escape sets
    :attr:`cancel_event`, which the polling checks. A failure closes the modal with ``None`` and the
    reason in :attr:`failure`.
    """

    CSS_PATH = EDITOR_CSS
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="signin.cancel"),
        Binding("c", "copy('code')", "Copy code", id="signin.copy_code"),
        Binding("u", "copy('url')", "Copy URL", id="signin.copy_url"),
    ]

    def __init__(self, task: model.Task) -> None:
        super().__init__(classes="editor-modal", id="signin-modal")
        self.signin_task = task
        self.cancel_event = threading.Event()
        self.flow: graph_auth.DeviceSignIn | None = None
        self.failure = ""

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-body"):
            yield Static(Text(f"Sign in to Microsoft 365 for task {self.signin_task.name}"), classes="modal-title")
            yield Static(
                Text(
                    "In any browser, open this page, enter the code, and sign in as an admin who may read the "
                    "mailboxes to migrate:"
                ),
                classes="modal-question",
            )
            yield Static(Text("Asking Microsoft for a code…"), id="signin-url")
            yield Static(Text(""), id="signin-code")
            yield Static(
                Text("Select the text with the mouse to copy it, or press u to copy the URL and c the code."),
                id="signin-hint",
                classes="modal-hint",
            )
            with Horizontal(id="signin-waiting"):
                yield LoadingIndicator()
                yield Static(Text("Waiting for the sign-in…"), id="signin-waiting-text")
            with Horizontal(classes="modal-buttons"):
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()
        self._sign_in(self.signin_task)

    def on_unmount(self) -> None:
        self.cancel_event.set()  # closed or the app is quitting: the polling thread stops

    @work(thread=True, exit_on_error=False, group=SIGNIN_GROUP, description="device-code sign-in")
    def _sign_in(self, task: model.Task) -> None:
        try:
            flow = graph_auth.start_signin(task)
            self.post_message(SignInCode(flow))
            account = flow.wait(self.cancel_event)
        except graph_auth.SignInCancelled:
            self.post_message(SignInEnded(None))
        except graph_auth.GraphError as exc:
            self.post_message(SignInEnded(None, str(exc)))
        else:
            self.post_message(SignInEnded(account))

    def on_sign_in_code(self, message: SignInCode) -> None:
        self.flow = message.flow
        self.query_one("#signin-url", Static).update(Text(message.flow.verification_uri, style="bold"))
        self.query_one("#signin-code", Static).update(Text(message.flow.user_code, style="bold reverse"))
        minutes = max(1, message.flow.expires_in // 60)
        self.query_one("#signin-waiting-text", Static).update(
            Text(f"Waiting for the sign-in… (the code is valid for {minutes} minutes)")
        )

    def on_sign_in_ended(self, message: SignInEnded) -> None:
        if self.cancel_event.is_set():
            return
        self.failure = message.failure
        self.dismiss(message.account)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == SIGNIN_GROUP and event.state == WorkerState.ERROR and not self.cancel_event.is_set():
            self.failure = f"unexpected error: {event.worker.error}"
            self.dismiss(None)

    def action_copy(self, what: str) -> None:
        if self.flow is None:
            return
        text = self.flow.user_code if what == "code" else self.flow.verification_uri
        self.app.copy_to_clipboard(text)
        self.notify(f"Copied the {'code' if what == 'code' else 'URL'} (if the terminal allows it).")

    def action_cancel(self) -> None:
        self.cancel_event.set()
        self.dismiss(None)
