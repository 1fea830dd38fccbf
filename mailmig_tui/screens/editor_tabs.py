"""The General and Notification tabs of the task editor: widgets <-> the task's TOML-shaped data.

The General tab also shows what the source's sign-in needs: for Google Workspace, what the key file
says (read in a thread worker when the path changes) and what a super admin must authorise; for
Microsoft 365 with the device-code sign-in, who is signed in (the editor runs the sign-in itself).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Checkbox, Input, Select, Static, Switch

from mailmig_tui.engine import model
from mailmig_tui.engine.sources import gmail_auth
from mailmig_tui.engine.textsafe import escape_controls
from mailmig_tui.widgets.form import (
    FieldError,
    FormField,
    LazyForm,
    PathSuggester,
    field,
    number,
    set_path,
    split_addresses,
)
from mailmig_tui.widgets.form import widget_id as wid


@dataclass(frozen=True)
class Preset:
    label: str
    host: str
    port: int
    security: str
    path_prefix: str
    requires: str


PRESETS: dict[str, Preset] = {
    "gmail": Preset(
        "Gmail", "imap.gmail.com", 993, "ssl", "",
        "Gmail: IMAP must be on (Gmail settings › Forwarding and POP/IMAP); with 2-Step Verification each "
        "account logs in with an app password. For a whole Google Workspace domain prefer the Google type.",
    ),
    "yahoo": Preset(
        "Yahoo Mail", "imap.mail.yahoo.com", 993, "ssl", "",
        "Yahoo: each account logs in with an app password (Account security › Generate app password); "
        "the normal password is refused.",
    ),
    "outlook": Preset(
        "Outlook.com / Hotmail", "outlook.office365.com", 993, "ssl", "",
        "Outlook.com: IMAP must be allowed (Settings › Mail › Forwarding and IMAP); with two-step verification "
        "use an app password. Microsoft is retiring password logins: for Microsoft 365 use that type.",
    ),
    "icloud": Preset(
        "iCloud Mail", "imap.mail.me.com", 993, "ssl", "",
        "iCloud: two-factor authentication on and an app-specific password (account.apple.com › Sign-In "
        "and Security); the login is the iCloud address.",
    ),
    "exchange": Preset(
        "Exchange on-premises", "", 993, "ssl", "",
        "Exchange: the IMAP4 services must be running and IMAP enabled for the mailboxes; to migrate without "
        "users' passwords enable the delegate account (an account with Full Access, method authzid).",
    ),
    "dovecot": Preset(
        "Dovecot / Cyrus (generic)", "", 993, "ssl", "",
        "Dovecot/Cyrus: leave the prefix empty to take it from the server's NAMESPACE; a Dovecot master user "
        "or a Cyrus admin (method authzid) can be the delegate account.",
    ),
}  # fmt: skip

SERVER_TYPES = [(model.SOURCE_TYPE_LABELS[t], t) for t in ("imap", "google", "microsoft365")]
SECURITY = [("SSL/TLS", "ssl"), ("STARTTLS", "starttls"), ("None (unencrypted)", "none")]
STANDARD_PORTS = {"ssl": 993, "starttls": 143, "none": 143}
DELEGATE_METHODS = [("SASL PLAIN acting as the user (authzid)", "authzid"), ("Login template", "template")]
LABEL_STRATEGIES = [
    ("Copy into each label's folder", "copy"),
    ("One folder per message, other labels as keywords", "primary"),
]
M365_AUTH = [("App-only (client secret or certificate)", "app"), ("Device-code sign-in of an admin", "device")]
TYPE_GROUPS = {"imap": "#imap-fields", "google": "#google-fields", "microsoft365": "#m365-fields"}


KEY_GROUP = "describe-key"


def _preset_for(host: str) -> str | None:
    return next((key for key, p in PRESETS.items() if p.host and p.host == host.strip().lower()), None)


def key_path(text: str) -> str:
    """The key file as the task stores it: absolute, ``~`` expanded ("" when not set)."""
    value = text.strip()
    return os.path.abspath(os.path.expanduser(value)) if value else ""


def saved_key_copy(key_file: str, saved_name: str) -> Path | None:
    """The task's copy of its key, when the configured file is gone (the admin deleted the download)."""
    if not saved_name or not key_file or os.path.lexists(key_file):
        return None
    copy = gmail_auth.secret_key_path(saved_name)
    return copy if copy.is_file() else None


@dataclass(frozen=True)
class KeyInfo:
    """What the key file at ``path`` says: the key, or why it cannot be used (``error``)."""

    path: str
    key: gmail_auth.ServiceAccountKey | None = None
    error: str = ""
    copy: Path | None = None


class KeyDescribed(Message):
    """Posted from the key-reading thread."""

    def __init__(self, info: KeyInfo) -> None:
        super().__init__()
        self.info = info


def describe(path: str, saved_name: str) -> KeyInfo:
    """Read the key at ``path`` (or the task's saved copy when the file is gone); blocking file I/O."""
    copy = saved_key_copy(path, saved_name)
    try:
        key = gmail_auth.describe_key(copy or path)
    except gmail_auth.KeyFileError as exc:
        return KeyInfo(path, error=str(exc))
    return KeyInfo(path, key=key, copy=copy)


def key_text(info: KeyInfo) -> Text:
    """The service account, the client id and scope to authorise, and the Admin console link, as plain text."""
    key = info.key
    assert key is not None
    lines = [
        f"Service account: {key.client_email}",
        f"Client id:       {key.client_id}",
        f"Scope:           {key.scope}",
        "A super admin authorises this client id for this scope in the Google Admin console (Security › Access "
        "and data control › API controls › Domain-wide delegation › Add new), or opens this pre-filled page "
        "(select it with the mouse, or ctrl+y copies it):",
        key.admin_console_url,
    ]
    if info.copy is not None:
        lines.append(f"The file is gone: the task uses the copy kept with it ({info.copy}).")
    return Text("\n".join(lines))


class GeneralTab(VerticalScroll):
    """Task name, the source server by type, accounts per period, concurrency and schedule."""

    can_focus = False

    def __init__(self) -> None:
        super().__init__()
        self.saved_name = ""
        self.key_info: KeyInfo | None = None
        self._key_asked = ""

    def compose(self) -> ComposeResult:
        yield field("Task name", Input(id=wid("name"), placeholder="e.g. acme-exchange"))
        yield field("Server type", Select(SERVER_TYPES, id=wid("source.type"), allow_blank=False, value="imap"))
        with Vertical(id="imap-fields", classes="type-group"):
            yield field(
                "Provider preset",
                Select([(p.label, k) for k, p in PRESETS.items()], id="preset", prompt="(none: fill in below)"),
                path="preset",
            )
            yield Static("", id="preset-note", classes="editor-note", markup=False)
            yield field("Server address", Input(id=wid("source.host"), placeholder="imap.example.com"))
            yield field("Port", Input(id=wid("source.port"), type="integer"))
            yield field("Security", Select(SECURITY, id=wid("source.security"), allow_blank=False))
            yield Static("", id="security-warning", classes="editor-warning", markup=False)
            yield field(
                "IMAP path prefix",
                Input(id=wid("source.path_prefix")),
                hint="empty = as the server's NAMESPACE says (e.g. INBOX. on Cyrus)",
            )
            yield field(
                "TLS fingerprint",
                Input(id=wid("source.tls_fingerprint"), placeholder="sha256:AB:CD:…"),
                hint="only to trust a self-signed certificate",
            )
            yield field("Delegate account", Switch(id=wid("source.delegate.enabled")))
            with Vertical(id="delegate-fields"):
                yield field("Delegate login", Input(id=wid("source.delegate.login")))
                yield field("Delegate password", Input(id=wid("source.delegate.password"), password=True))
                yield field(
                    "Login method", Select(DELEGATE_METHODS, id=wid("source.delegate.method"), allow_blank=False)
                )
                yield field(
                    "Login template",
                    Input(id=wid("source.delegate.template")),
                    hint="placeholders: {user} {user_local} {domain} {delegate}",
                )
        with Vertical(id="google-fields", classes="type-group"):
            yield field(
                "Service-account key",
                Input(id=wid("source.key_file"), placeholder="/path/to/key.json", suggester=PathSuggester()),
                hint="JSON key with domain-wide delegation, scope gmail.readonly",
            )
            yield Static("", id="key-info", classes="editor-note", markup=False)
            yield field("Labels", Select(LABEL_STRATEGIES, id=wid("source.label_strategy"), allow_blank=False))
            yield field("Quota (units/minute)", Input(id=wid("source.quota_units_per_minute"), type="integer"))
        with Vertical(id="m365-fields", classes="type-group"):
            yield field("Tenant", Input(id=wid("source.tenant"), placeholder="contoso.onmicrosoft.com or id"))
            yield field("Client (app) id", Input(id=wid("source.client_id")))
            yield field("Authentication", Select(M365_AUTH, id=wid("source.auth"), allow_blank=False))
            yield field("Client secret", Input(id=wid("source.client_secret"), password=True))
            yield field(
                "Certificate file",
                Input(id=wid("source.certificate_file"), suggester=PathSuggester()),
                hint="instead of a client secret (PEM with the private key)",
            )
            with Vertical(id="signin-group"):
                yield Static("", id="signin-status", classes="editor-note", markup=False)
                with Horizontal(id="signin-buttons"):
                    yield Button("Sign in (ctrl+g)", id="signin", compact=True, action="screen.sign_in")
                    yield Button("Sign out (ctrl+o)", id="signout", compact=True, action="screen.sign_out")
        yield field("Accounts per period", Input(id=wid("run.accounts_per_period"), type="integer"), hint="0 = all")
        yield field("Concurrency", Input(id=wid("run.concurrency"), type="integer"), hint="accounts copied at once")
        yield field("Scheduled", Switch(id=wid("schedule.enabled")))
        days = [Checkbox(day[:2].capitalize(), id=f"day-{day}", compact=True) for day in model.DAYS]
        yield field("Days", Horizontal(*days, id="schedule-days"), path="schedule.days")
        yield field("Start", Input(id=wid("schedule.start"), placeholder="HH:MM"))
        yield field("Repeat every (hours)", Input(id=wid("schedule.repeat_hours"), type="integer"), hint="0 = once")
        yield field("End", Input(id=wid("schedule.end"), placeholder="HH:MM"), hint="empty = run until done")

    # ------------------------------------------------------------------------------------------

    def load(self, task: model.Task) -> None:
        s, d = task.source, task.source.delegate
        values: dict[str, Any] = {
            "name": task.name,
            "source.type": s.type if s.type in model.SOURCE_TYPES else "imap",
            "source.host": s.host,
            "source.port": str(s.port),
            "source.security": s.security if s.security in model.SECURITY_MODES else "ssl",
            "source.path_prefix": s.path_prefix,
            "source.tls_fingerprint": s.tls_fingerprint,
            "source.delegate.enabled": d.enabled,
            "source.delegate.login": d.login,
            "source.delegate.password": d.password,
            "source.delegate.method": d.method if d.method in model.DELEGATE_METHODS else "authzid",
            "source.delegate.template": d.template,
            "source.key_file": s.key_file,
            "source.label_strategy": s.label_strategy if s.label_strategy in model.LABEL_STRATEGIES else "copy",
            "source.quota_units_per_minute": str(s.quota_units_per_minute),
            "source.tenant": s.tenant,
            "source.client_id": s.client_id,
            "source.auth": s.auth if s.auth in model.M365_AUTH_MODES else "app",
            "source.client_secret": s.client_secret,
            "source.certificate_file": s.certificate_file,
            "run.accounts_per_period": str(task.run.accounts_per_period),
            "run.concurrency": str(task.run.concurrency),
            "schedule.enabled": task.schedule.enabled,
            "schedule.start": task.schedule.start,
            "schedule.repeat_hours": str(task.schedule.repeat_hours),
            "schedule.end": task.schedule.end,
        }
        with self.prevent(Input.Changed, Select.Changed, Switch.Changed, Checkbox.Changed):
            for path, value in values.items():
                self.query_one(f"#{wid(path)}").value = value  # type: ignore[attr-defined]
            for day in model.DAYS:
                self.query_one(f"#day-{day}", Checkbox).value = day in task.schedule.days
            preset = _preset_for(s.host)
            self.query_one("#preset", Select).value = preset if preset else Select.NULL
        self._show_preset_note(preset)
        self.saved_name = task.name
        self.key_info = None
        self._key_asked = ""
        self.refresh_visibility()
        self.describe_key()

    def dump(self, data: dict[str, Any]) -> None:
        """Write the tab's values into the task's TOML-shaped ``data``."""

        def text(path: str) -> str:
            return self.query_one(f"#{wid(path)}", Input).value

        def choice(path: str) -> Any:
            return self.query_one(f"#{wid(path)}", Select).value

        def switch(path: str) -> bool:
            return self.query_one(f"#{wid(path)}", Switch).value

        set_path(data, "name", text("name"))
        for path in (
            "source.type",
            "source.security",
            "source.delegate.method",
            "source.label_strategy",
            "source.auth",
        ):
            set_path(data, path, choice(path))
        for path in (
            "source.host", "source.path_prefix", "source.tls_fingerprint", "source.delegate.login",
            "source.delegate.template", "source.tenant", "source.client_id", "schedule.start", "schedule.end",
        ):  # fmt: skip
            set_path(data, path, text(path).strip())
        for path in ("source.port", "source.quota_units_per_minute", "run.accounts_per_period", "run.concurrency",
                     "schedule.repeat_hours"):  # fmt: skip
            set_path(data, path, number(text(path)))
        for path in ("source.key_file", "source.certificate_file"):
            set_path(data, path, key_path(text(path)))
        for path in ("source.delegate.enabled", "schedule.enabled"):
            set_path(data, path, switch(path))
        set_path(data, "schedule.days", [d for d in model.DAYS if self.query_one(f"#day-{d}", Checkbox).value])

    def apply_secrets(self, task: model.Task) -> None:
        task.source.delegate.password = self.query_one(f"#{wid('source.delegate.password')}", Input).value
        task.source.client_secret = self.query_one(f"#{wid('source.client_secret')}", Input).value

    def source_type(self) -> str:
        value = self.query_one(f"#{wid('source.type')}", Select).value
        return value if isinstance(value, str) else "imap"

    def device_signin(self) -> bool:
        """Microsoft 365 with the device-code sign-in of an admin is chosen."""
        auth = self.query_one(f"#{wid('source.auth')}", Select).value
        return self.source_type() == "microsoft365" and auth == "device"

    # ------------------------------------------------------------------------------------------
    # The Google key file: read in a thread when the path changes, shown under the field.

    def _key_field(self) -> FormField:
        return self.query_one(f"#{wid('source.key_file')}", Input).query_ancestor(FormField)

    def describe_key(self, *, again: bool = False) -> None:
        """Read the key file the field names (when it changed, or ``again``) and show what it says."""
        if self.source_type() != "google":
            return
        path = key_path(self.query_one(f"#{wid('source.key_file')}", Input).value)
        if path == self._key_asked and not again:
            return
        self._key_asked = path
        info = self.query_one("#key-info", Static)
        if not path:
            self.key_info = None
            info.display = False
            return
        info.update(Text("Reading the key file…"))
        info.display = True
        self._read_key(path, self.saved_name)

    @work(thread=True, exclusive=True, group=KEY_GROUP, exit_on_error=False, description="read the key file")
    def _read_key(self, path: str, saved_name: str) -> None:
        self.post_message(KeyDescribed(describe(path, saved_name)))

    def on_key_described(self, message: KeyDescribed) -> None:
        if message.info.path != self._key_asked:
            return  # the field changed since: a newer read is on its way
        self.key_info = message.info
        info = self.query_one("#key-info", Static)
        if message.info.key is None:
            info.display = False
            self._key_field().error.show([message.info.error])
        else:
            info.update(key_text(message.info))
            info.display = True
            self._key_field().error.show([])

    def key_problems(self, task: model.Task) -> list[model.Problem]:
        """The last read's verdict on the task's key file, as the model's kind of problem."""
        info = self.key_info
        if task.source.type != "google" or info is None or info.path != task.source.key_file or not info.error:
            return []
        return [model.Problem("source.key_file", info.error)]

    def admin_console_url(self) -> str | None:
        if self.source_type() != "google" or self.key_info is None or self.key_info.key is None:
            return None
        return self.key_info.key.admin_console_url

    @on(Input.Blurred, f"#{wid('source.key_file')}")
    @on(Input.Submitted, f"#{wid('source.key_file')}")
    def _key_file_left(self) -> None:
        self.describe_key()

    # ------------------------------------------------------------------------------------------
    # The Microsoft 365 device-code sign-in.

    def show_signin(self, text: str, *, signed_in: bool) -> None:
        self.query_one("#signin-status", Static).update(Text(text))
        self.query_one("#signout", Button).disabled = not signed_in

    # ------------------------------------------------------------------------------------------

    def refresh_visibility(self) -> None:
        kind = self.source_type()
        for type_name, selector in TYPE_GROUPS.items():
            self.query_one(selector).display = type_name == kind
        self.query_one("#delegate-fields").display = self.query_one(f"#{wid('source.delegate.enabled')}", Switch).value
        template = self.query_one(f"#{wid('source.delegate.template')}", Input)
        template.query_ancestor(FormField).display = (
            self.query_one(f"#{wid('source.delegate.method')}", Select).value == "template"
        )
        security = self.query_one(f"#{wid('source.security')}", Select).value
        host = self.query_one(f"#{wid('source.host')}", Input).value.strip()
        warning = model.security_warning("source.security", host, security if isinstance(security, str) else "")
        note = self.query_one("#security-warning", Static)
        note.update(Text(escape_controls(warning.message) if warning else ""))
        note.display = warning is not None
        app_only = self.query_one(f"#{wid('source.auth')}", Select).value == "app"
        for path in ("source.client_secret", "source.certificate_file"):
            self.query_one(f"#{wid(path)}").query_ancestor(FormField).display = app_only
        self.query_one("#signin-group").display = not app_only
        self.screen.refresh_bindings()

    def _show_preset_note(self, key: str | None) -> None:
        note = self.query_one("#preset-note", Static)
        note.update(Text(PRESETS[key].requires) if key else Text(""))
        note.display = bool(key)

    def _apply_preset(self, key: str) -> None:
        p = PRESETS[key]
        if p.host:
            self.query_one(f"#{wid('source.host')}", Input).value = p.host
        self.query_one(f"#{wid('source.port')}", Input).value = str(p.port)
        self.query_one(f"#{wid('source.security')}", Select).value = p.security
        self.query_one(f"#{wid('source.path_prefix')}", Input).value = p.path_prefix

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "preset":
            key = event.value if isinstance(event.value, str) else None
            if key:
                self._apply_preset(key)
            self._show_preset_note(key)
        elif event.select.id == wid("source.security") and isinstance(event.value, str):
            port = self.query_one(f"#{wid('source.port')}", Input)
            if port.value.strip() in {str(p) for p in STANDARD_PORTS.values()}:
                port.value = str(STANDARD_PORTS[event.value])
        self.refresh_visibility()
        if event.select.id == wid("source.type"):
            self.describe_key()

    def on_switch_changed(self, event: Switch.Changed) -> None:
        self.refresh_visibility()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == wid("source.host"):
            self.refresh_visibility()


class NotificationTab(LazyForm):
    """Who is told when an account finishes or fails; needs the SMTP relay of the global settings."""

    PATH = "notifications"
    loaded: model.Notifications | None

    def __init__(self) -> None:
        super().__init__()
        self.smtp_note = ""

    def fields(self) -> ComposeResult:
        yield Static("", id="smtp-note", classes="editor-warning", markup=False)
        yield FieldError("notifications", id="notifications-error")
        yield field("Send on success", Switch(id=wid("notifications.on_success")))
        yield field(
            "Success recipients",
            Input(id=wid("notifications.success_to"), placeholder="it@example.com, boss@example.com"),
            hint="one message per account when it finishes",
        )
        yield field("Send on failure", Switch(id=wid("notifications.on_failure")))
        yield field(
            "Failure recipients",
            Input(id=wid("notifications.failure_to"), placeholder="it@example.com"),
            hint="the error and the last log lines of a failed account",
        )

    def show_settings(self, settings: model.Settings | None, error: str = "") -> None:
        if error:
            self.smtp_note = f"The global settings cannot be read, so notifications cannot be checked: {error}"
        elif settings is None or not settings.smtp.host:
            self.smtp_note = "The SMTP relay is not configured: notifications are sent only once it is set in Settings."
        else:
            self.smtp_note = ""
        if self.built:
            self._show_smtp_note()

    def _show_smtp_note(self) -> None:
        note = self.query_one("#smtp-note", Static)
        note.update(Text(self.smtp_note))
        note.display = bool(self.smtp_note)

    def fill(self) -> None:
        n = self.loaded
        assert n is not None
        self._show_smtp_note()
        with self.prevent(Input.Changed, Switch.Changed):
            self.query_one(f"#{wid('notifications.on_success')}", Switch).value = n.on_success
            self.query_one(f"#{wid('notifications.success_to')}", Input).value = ", ".join(n.success_to)
            self.query_one(f"#{wid('notifications.on_failure')}", Switch).value = n.on_failure
            self.query_one(f"#{wid('notifications.failure_to')}", Input).value = ", ".join(n.failure_to)
        self.query_one("#notifications-error", FieldError).target = self.query_one(
            f"#{wid('notifications.on_success')}"
        )

    def write(self, data: dict[str, Any]) -> None:
        for name in ("on_success", "on_failure"):
            path = f"notifications.{name}"
            set_path(data, path, self.query_one(f"#{wid(path)}", Switch).value)
        for name in ("success_to", "failure_to"):
            path = f"notifications.{name}"
            set_path(data, path, split_addresses(self.query_one(f"#{wid(path)}", Input).value))
