"""Global settings: the destination IMAP server (and how the tool logs in to it) and the SMTP relay.

The form shows what ``model.validate_settings`` says, next to each field, when saving; "test" actions
run ``engine.probe`` in thread workers. An untrusted certificate at the destination opens a dialog
showing its SHA-256 fingerprint: trusting it fills in the pinned fingerprint (saved with ctrl+s).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Header, Input, Label, Select, Static
from textual.worker import Worker, WorkerState

from mailmig_tui.engine import probe, store
from mailmig_tui.engine.model import (
    Destination,
    Problem,
    Settings,
    Smtp,
    missing_destination_password,
    validate_settings,
)
from mailmig_tui.screens.modals import CertificateModal, ConfirmModal
from mailmig_tui.widgets.footer import KeyFooter

SECURITY = [
    ("SSL/TLS (implicit, usually port 993 / 465)", "ssl"),
    ("STARTTLS (usually port 143 / 587 or 25)", "starttls"),
    ("none: unencrypted (loopback only!)", "none"),
]
AUTH = [
    ("master user: logs in as user*login", "master"),
    ("SASL PLAIN acting for the user (authzid)", "authzid"),
    ("per-user password (4th CSV column)", "per-user"),
]

# (field path, label, kind, help): kind is "text", "port", "password", or a Select's options.
DEST_FIELDS: list[tuple[str, str, Any, str]] = [
    ("destination.host", "Host", "text", "this mail server, as seen from here (127.0.0.1 when local)"),
    ("destination.port", "Port", "port", ""),
    ("destination.security", "Security", SECURITY, ""),
    ("destination.tls_fingerprint", "Pinned certificate", "text", 'empty, or "sha256:AB:CD:…" (set by Test)'),
    ("destination.auth", "Log in as", AUTH, ""),
    ("destination.login", "Master / admin login", "text", ""),
    ("destination.master_separator", "Master separator", "text", 'Dovecot: "*" (auth_master_user_separator)'),
    ("destination.password", "Password", "password", "stored in secrets/settings.toml (mode 0600)"),
]
SMTP_FIELDS: list[tuple[str, str, Any, str]] = [
    ("smtp.host", "Host", "text", "empty: no notifications"),
    ("smtp.port", "Port", "port", ""),
    ("smtp.security", "Security", SECURITY, ""),
    ("smtp.login", "Login", "text", "empty: no login"),
    ("smtp.password", "Password", "password", ""),
    ("smtp.sender", "Sender", "text", "the From: of notifications"),
]


def widget_id(field: str) -> str:
    return field.replace(".", "-").replace("_", "-")


class SettingsScreen(Screen[None]):
    TITLE = "Settings"
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="settings.save"),
        Binding("ctrl+t", "test_destination", "Test destination", id="settings.test_destination"),
        Binding("ctrl+r", "test_smtp", "Test mail", id="settings.test_smtp"),
        Binding("escape", "back", "Back", id="settings.back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.load_error = ""
        try:
            self.saved = store.load_settings()
        except store.ConfigError as exc:
            self.load_error = str(exc)
            self.saved = Settings()

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="settings-form", can_focus=False):
            if self.load_error:
                yield Static(
                    Text(f"{self.load_error}\nSaving replaces that file with this form's values."),
                    id="settings-load-error",
                    classes="field-error",
                )
            yield Static(Text("Destination server (IMAP)"), classes="section-title")
            yield from self._fields(DEST_FIELDS)
            with Horizontal(classes="form-row"):
                yield Label("Test with account", classes="field-label")
                yield Input(placeholder="optional: a destination account to open", compact=True, id="test-account")
            with Horizontal(classes="form-row"):
                yield Button("Test destination (ctrl+t)", id="test-destination")
            yield Static("", id="destination-result", classes="test-result")
            yield Static(Text("SMTP relay (notifications)"), classes="section-title")
            yield from self._fields(SMTP_FIELDS)
            with Horizontal(classes="form-row"):
                yield Button("Send a test message (ctrl+r)", id="test-smtp")
                yield Button("Save (ctrl+s)", variant="primary", id="save")
            yield Static("", id="smtp-result", classes="test-result")
        yield KeyFooter(compact=True)

    def _fields(self, fields: list[tuple[str, str, Any, str]]) -> ComposeResult:
        for path, label, kind, help_text in fields:
            section, name = path.split(".")
            value = getattr(getattr(self.saved, section), name)
            wid = widget_id(path)
            with Horizontal(classes="form-row"):
                yield Label(label, classes="field-label")
                widget: Widget
                if isinstance(kind, list):
                    options = [(Text(text), v) for text, v in kind]
                    if value not in {v for _, v in kind}:  # hand-edited: shown, and reported on save
                        options.append((Text(f"{value!r} (not a valid choice)"), value))
                    widget = Select(options, value=value, allow_blank=False, compact=True, id=wid)
                else:
                    widget = Input(
                        str(value),
                        id=wid,
                        type="integer" if kind == "port" else "text",
                        password=kind == "password",
                        placeholder=help_text,
                        compact=True,
                    )
                yield widget
            yield Static("", id=f"{wid}-error", classes="field-error")

    # ----------------------------------------------------------------------------------------
    # Form <-> model.

    def form(self) -> Settings:
        """The settings as the form shows them (a port that is not a number is kept as text for the model to report)."""

        def value(path: str) -> Any:
            widget = self.query_one(f"#{widget_id(path)}")
            if isinstance(widget, Select):
                return widget.value
            text = widget.value.strip() if not path.endswith("password") else widget.value  # type: ignore[attr-defined]
            if path.endswith(".port"):
                try:
                    return int(text)
                except ValueError:
                    return text
            return text

        dest = Destination(**{p.split(".")[1]: value(p) for p, *_ in DEST_FIELDS})
        smtp = Smtp(**{p.split(".")[1]: value(p) for p, *_ in SMTP_FIELDS})
        return Settings(dest, smtp)

    def show_problems(self, problems: list[Problem]) -> None:
        """Each problem next to its field; fields without a problem are cleared."""
        by_field: dict[str, list[str]] = {}
        for p in problems:
            by_field.setdefault(p.field, []).append(p.message)
        first: Widget | None = None
        for path, *_ in DEST_FIELDS + SMTP_FIELDS:
            wid = widget_id(path)
            messages = by_field.get(path, [])
            self.query_one(f"#{wid}-error", Static).update(Text("\n".join(messages)))
            field = self.query_one(f"#{wid}")
            field.set_class(bool(messages), "-invalid")
            if messages and first is None:
                first = field
        if first is not None:
            first.focus()

    @property
    def dirty(self) -> bool:
        return self.form() != self.saved

    def action_save(self) -> bool:
        settings = self.form()
        problems = validate_settings(settings)
        self.show_problems(problems)
        if problems:
            self.notify(f"{len(problems)} problem(s): see the fields marked in red", severity="error", markup=False)
            return False
        store.save_settings(settings)
        self.saved = settings
        self.notify(f"Settings saved to {store.paths().settings_file}", markup=False)
        for missing in missing_destination_password(settings):
            self.notify(f"Saved without a password: {missing.message}", severity="warning", markup=False)
        return True

    def action_back(self) -> None:
        if isinstance(self.focused, Select) and self.focused.expanded:
            return
        if not self.dirty:
            self.app.pop_screen()
            return

        def done(discard: bool | None) -> None:
            if discard:
                self.app.pop_screen()

        self.app.push_screen(
            ConfirmModal(
                "Unsaved changes", "The settings were changed but not saved. Leave without saving?", yes="Discard"
            ),
            done,
        )

    # ----------------------------------------------------------------------------------------
    # Connection tests.

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        action = {"test-destination": "test_destination", "test-smtp": "test_smtp", "save": "save"}.get(
            event.button.id or ""
        )
        if action:
            await self.run_action(action)

    def _check_fields(self, section: str) -> Settings | None:
        settings = self.form()
        problems = [p for p in validate_settings(settings) if p.field.startswith(f"{section}.")]
        self.show_problems(problems)
        return None if problems else settings

    def action_test_destination(self) -> None:
        settings = self._check_fields("destination")
        if settings is None:
            return
        account = self.query_one("#test-account", Input).value.strip()
        self._result("destination-result", Text("Testing…", style="dim"))
        self.run_worker(
            partial(probe.probe_destination, settings.destination, account),
            thread=True, exclusive=True, group="settings-test-destination", exit_on_error=False,
            description="test the destination server",
        )  # fmt: skip

    def action_test_smtp(self) -> None:
        settings = self._check_fields("smtp")
        if settings is None:
            return
        self._result("smtp-result", Text("Testing…", style="dim"))
        self.run_worker(
            partial(probe.probe_smtp, settings.smtp),
            thread=True, exclusive=True, group="settings-test-smtp", exit_on_error=False,
            description="test the SMTP relay",
        )  # fmt: skip

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        group = event.worker.group
        if group not in ("settings-test-destination", "settings-test-smtp"):
            return
        target = "destination-result" if group == "settings-test-destination" else "smtp-result"
        if event.state == WorkerState.ERROR:
            self._result(target, Text(f"Test failed: {event.worker.error}", style="red"))
            return
        if event.state != WorkerState.SUCCESS:
            return
        result: probe.ProbeResult = event.worker.result
        mark = "✔ " if result.ok else "✘ "
        self._result(target, Text(mark + "\n  ".join(result.lines), style="green" if result.ok else "red"))
        if result.certificate_fingerprint:
            self._ask_trust(result)

    def _result(self, target: str, text: Text) -> None:
        self.query_one(f"#{target}", Static).update(text)

    def _ask_trust(self, result: probe.ProbeResult) -> None:
        host = self.query_one("#destination-host", Input).value.strip()
        port = self.query_one("#destination-port", Input).value.strip()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

        def done(trust: bool | None) -> None:
            if trust:
                self.query_one("#destination-tls-fingerprint", Input).value = result.certificate_fingerprint
                self.notify("Certificate pinned in the form: ctrl+s saves it", markup=False)
                self.action_test_destination()

        self.app.push_screen(CertificateModal(where, result.certificate_fingerprint, "\n".join(result.lines)), done)
