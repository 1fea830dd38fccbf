"""E-mail notifications through the SMTP relay of the global settings.

One plain-text message per account: on success (task, account, folders, copied, skipped by reason,
failed, bytes, duration) and on failure (the reason and the account's last log lines). A message
that cannot be sent is logged as a warning and never fails or stops the migration.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from mailmig_tui.engine import logfile
from mailmig_tui.engine.events import AccountResult, LogLine, Sink
from mailmig_tui.engine.model import Smtp, Task
from mailmig_tui.engine.textsafe import escape_controls
from mailmig_tui.engine.units import human_bytes

TIMEOUT = 30.0
LAST_LINES = 20


class NotifyError(Exception):
    """The relay could not be reached, refused the login, or refused the message (no secrets inside)."""


def _connect(smtp: Smtp, timeout: float) -> smtplib.SMTP:
    context = ssl.create_default_context()
    if smtp.security == "ssl":
        client: smtplib.SMTP = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
        client.ehlo()
        if smtp.security == "starttls":
            if not client.has_extn("starttls"):
                client.quit()
                raise NotifyError(f"{smtp.host}:{smtp.port} does not offer STARTTLS; choose SSL/TLS or fix the relay")
            client.starttls(context=context)
            client.ehlo()
    if smtp.login:
        client.login(smtp.login, smtp.password)
    return client


def send(smtp: Smtp, message: EmailMessage, *, timeout: float = TIMEOUT) -> None:
    """Send one message through the relay; NotifyError with a reason an admin can act on."""
    if not smtp.host:
        raise NotifyError("no SMTP relay is configured (Settings → SMTP relay, or settings.toml [smtp])")
    where = f"{smtp.host}:{smtp.port}"
    try:
        client = _connect(smtp, timeout)
        try:
            refused = client.send_message(message)
        finally:
            try:
                client.quit()
            except smtplib.SMTPException:
                client.close()
    except NotifyError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise NotifyError(f"{where}: login refused for {smtp.login}: {exc.smtp_code} {_text(exc.smtp_error)}") from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise NotifyError(f"{where}: recipients refused: {', '.join(exc.recipients)}") from None
    except smtplib.SMTPResponseException as exc:
        raise NotifyError(f"{where}: {exc.smtp_code} {_text(exc.smtp_error)}") from None
    except ssl.SSLCertVerificationError as exc:
        raise NotifyError(f"{where}: certificate not trusted ({exc.verify_message})") from None
    except (OSError, smtplib.SMTPException) as exc:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc) or type(exc).__name__
        if isinstance(exc, socket.timeout):
            reason = "no answer (timeout)"
        raise NotifyError(f"{where}: cannot send: {reason}") from None
    if refused:
        raise NotifyError(f"{where}: recipients refused: {', '.join(refused)}")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _message(smtp: Smtp, to: Sequence[str], subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = smtp.sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = escape_controls(subject)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=smtp.sender.partition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body)
    return msg


def test_message(smtp: Smtp, to: Sequence[str]) -> EmailMessage:
    return _message(
        smtp, to, "mailmig-tui: test message", "This test message shows that mailmig-tui can send notifications.\n"
    )


def account_message(task: Task, smtp: Smtp, result: AccountResult, last_lines: Sequence[str]) -> EmailMessage:
    ok = result.status == "complete" and not result.failed
    to = task.notifications.success_to if ok else task.notifications.failure_to
    verdict = "migrated" if ok else "FAILED" if result.status == "failed" else "incomplete"
    lines = [
        f"Task:         {task.name}",
        f"Account:      {result.account} → {result.destination}",
        f"Result:       {result.status}",
        f"Folders:      {result.folders}",
        f"Copied:       {result.copied} message(s), {human_bytes(result.bytes)}",
        f"Failed:       {result.failed} message(s)",
        f"Duration:     {result.duration:.1f} s",
        "Skipped:      " + (", ".join(f"{n} {r}" for r, n in sorted(result.skipped.items())) or "none"),
    ]
    if result.skipped_folders:
        lines.append("Folders skipped: " + ", ".join(f"{n} ({r})" for r, n in sorted(result.skipped_folders.items())))
    if result.error:
        lines += ["", f"Reason: {result.error}"]
    if not ok and last_lines:
        lines += ["", "Last log lines of this account:", *(f"  {line}" for line in last_lines)]
    body = "".join(escape_controls(line) + "\n" for line in lines)  # one entry, one line
    return _message(smtp, to, f"mailmig-tui: {result.account} {verdict} ({task.name})", body)


class Notifier:
    """Sends the per-account messages a task asks for; never raises."""

    def __init__(self, task: Task, smtp: Smtp, emit: Sink, log_path: Path | None) -> None:
        self.task = task
        self.smtp = smtp
        self.emit = emit
        self.log_path = log_path

    def wanted(self, result: AccountResult) -> bool:
        n = self.task.notifications
        ok = result.status == "complete" and not result.failed
        return (n.on_success and ok and bool(n.success_to)) or (
            n.on_failure and not ok and result.status != "stopped" and bool(n.failure_to)
        )

    def account_finished(self, result: AccountResult) -> None:
        if not self.wanted(result):
            return
        last: list[str] = []
        if self.log_path is not None:
            records = logfile.read(self.log_path, account=result.account, min_severity="info", tail=LAST_LINES)
            last = [f"{r.time} {r.severity.upper()} {r.folder + ': ' if r.folder else ''}{r.text}" for r in records]
        try:
            send(self.smtp, account_message(self.task, self.smtp, result, last))
        except NotifyError as exc:
            self.emit(LogLine(self.task.name, result.account, severity="warning", text=f"notification not sent: {exc}"))
        else:
            to = (
                self.task.notifications.success_to
                if result.status == "complete" and not result.failed
                else self.task.notifications.failure_to
            )
            self.emit(
                LogLine(self.task.name, result.account, severity="info", text=f"notification sent to {', '.join(to)}")
            )
