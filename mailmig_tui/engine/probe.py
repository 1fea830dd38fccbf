"""Testing the global settings' servers: can the destination IMAP server and the SMTP relay be reached?

Used by the settings screen's "test connection" actions (in a thread worker) and usable from anywhere
else. Nothing here raises for a failure: a :class:`ProbeResult` says what was checked, in sentences an
admin can act on, and, for an untrusted certificate, its SHA-256 fingerprint so it can be pinned.
Passwords never appear in the result.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass, field

from mailmig_tui.engine import imapconn, verify
from mailmig_tui.engine.model import Destination, Settings, Smtp, User
from mailmig_tui.engine.notify import test_message

TIMEOUT = 15.0


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    lines: list[str] = field(default_factory=list)
    certificate_fingerprint: str = ""  # set when the certificate is not trusted (or not the pinned one)


def probe_destination(dest: Destination, account: str = "", timeout: float = TIMEOUT) -> ProbeResult:
    """Connect as the settings say and read CAPABILITY; with ``account``, also open that account's
    mailbox the way a run will (master user or SASL authzid) and select its INBOX."""
    try:
        ep = imapconn.Endpoint(dest.host, dest.port, dest.security, dest.tls_fingerprint, timeout)
    except ValueError as exc:
        return ProbeResult(False, [str(exc)])
    try:
        client = imapconn.connect(ep)
    except imapconn.ImapError as exc:
        fingerprint = exc.fingerprint if exc.kind == "certificate" else ""
        return ProbeResult(False, [str(exc)], fingerprint)
    try:
        caps = imapconn.capabilities(client)
    except Exception as exc:  # noqa: BLE001 - reported as the result
        imapconn.close_quietly(client)
        return ProbeResult(False, [f"{ep.where}: connected, but CAPABILITY failed ({exc})"])
    imapconn.close_quietly(client)
    how = {
        "ssl": "TLS",
        "starttls": "STARTTLS",
        "none": "no encryption",
    }[dest.security]
    trust = " (pinned certificate)" if dest.tls_fingerprint and dest.security != "none" else ""
    lines = [f"{ep.where}: connected with {how}{trust}; the server speaks IMAP ({_notable(caps)})"]
    ok = True
    if dest.auth == "authzid" and "AUTH=PLAIN" not in caps:
        ok = False
        lines.append("the server does not announce AUTH=PLAIN before login: SASL authzid may not work")
    if account:
        if dest.auth == "per-user":
            lines.append(
                f"{account}: not tested: with per-user logins each account's own destination password is needed "
                "(verify the task's user list instead)"
            )
        else:
            settings = Settings(destination=dest)
            good, detail = verify.check_destination(settings, User(account, account))
            ok = ok and good
            lines.append(f"{account}: {detail}")
    return ProbeResult(ok, lines)


def _notable(caps: frozenset[str]) -> str:
    wanted = ("IMAP4REV1", "IMAP4REV2", "UIDPLUS", "MULTIAPPEND", "LITERAL+", "SPECIAL-USE", "AUTH=PLAIN")
    shown = [c for c in wanted if c in caps]
    return ", ".join(shown) if shown else f"{len(caps)} capabilities"


def probe_smtp(smtp: Smtp, timeout: float = TIMEOUT) -> ProbeResult:
    """Connect to the relay, EHLO, STARTTLS or implicit TLS as configured, log in when a login is set,
    and send a test message to the sender address: each step that worked is a line of the result."""
    if not smtp.host:
        return ProbeResult(False, ["no SMTP relay is set: fill in its host"])
    where = f"[{smtp.host}]:{smtp.port}" if ":" in smtp.host else f"{smtp.host}:{smtp.port}"
    context = ssl.create_default_context()
    lines: list[str] = []
    try:
        if smtp.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - reported as the result
        return ProbeResult(False, [_smtp_error(where, smtp, exc, connecting=True)])
    try:
        code, text = client.ehlo()
        if code != 250:
            return ProbeResult(False, [f"{where}: the relay refused EHLO ({code} {_text(text)})"])
        lines.append(f"{where}: connected ({_text(text).splitlines()[0]})")
        if smtp.security == "starttls":
            if not client.has_extn("starttls"):
                return ProbeResult(
                    False,
                    [*lines, f'{where}: the relay does not offer STARTTLS; use security "ssl" (port 465) or "none"'],
                )
            client.starttls(context=context)
            client.ehlo()
            lines.append("STARTTLS: encrypted, certificate verified")
        elif smtp.security == "ssl":
            lines.append("TLS: encrypted, certificate verified")
        if smtp.login:
            if not client.has_extn("auth"):
                return ProbeResult(
                    False, [*lines, f"{where}: the relay offers no login (AUTH); clear the login or use another port"]
                )
            client.login(smtp.login, smtp.password)
            lines.append(f"logged in as {smtp.login}")
        if smtp.sender:
            refused = client.send_message(test_message(smtp, [smtp.sender]))
            if refused:
                return ProbeResult(False, [*lines, f"{where}: the test message was refused for {smtp.sender}"])
            lines.append(f"test message sent to {smtp.sender}")
        return ProbeResult(True, lines)
    except Exception as exc:  # noqa: BLE001 - reported as the result
        return ProbeResult(False, [*lines, _smtp_error(where, smtp, exc, connecting=False)])
    finally:
        try:
            client.quit()
        except Exception:  # noqa: BLE001 - the connection is being dropped anyway
            client.close()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _smtp_error(where: str, smtp: Smtp, exc: BaseException, *, connecting: bool) -> str:
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        text = _text(exc.smtp_error)
        if smtp.password:
            text = text.replace(smtp.password, "•••")
        return f"{where}: login refused for {smtp.login} ({exc.smtp_code} {text})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{where}: certificate not trusted ({exc.verify_message or exc.reason})"
    if isinstance(exc, ssl.SSLError):
        hint = ' Is this a plain SMTP port? Use security "starttls" (or "ssl" on port 465).' if connecting else ""
        return f"{where}: TLS handshake failed ({exc.reason or exc}).{hint}"
    if isinstance(exc, socket.gaierror):
        return f'{where}: cannot resolve the host name "{smtp.host}" ({exc.strerror or exc})'
    if isinstance(exc, ConnectionRefusedError):
        return f"{where}: connection refused: is the relay running and is the port right?"
    if isinstance(exc, TimeoutError):
        return f"{where}: no answer within the timeout: check the address, the port and any firewall"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{where}: the relay answered {exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPException | OSError):
        return f"{where}: {exc}"
    return f"{where}: unexpected failure ({type(exc).__name__}: {exc})"
