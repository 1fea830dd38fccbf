"""Opening and logging into IMAP connections, for the source and the destination alike.

This is the one place where the engine opens an IMAP socket.  It applies the rules of DESIGN.md §6:

- ``security`` is ``"ssl"`` (implicit TLS), ``"starttls"`` (plain, then STARTTLS, never falling
  back to plain) or ``"none"`` (plain, only when the task says so);
- certificates are verified against the system store with a host-name check, unless the settings
  pin the server's certificate by its SHA-256 fingerprint, which then replaces that check;
- every socket has a timeout and ``TCP_NODELAY`` (IMAPClient writes a command in two pieces, which
  Nagle's algorithm plus delayed ACKs would stall by ~40 ms per command on a real network);
- every failure becomes an :class:`ImapError` whose ``kind`` says what went wrong and whose
  message names ``host:port`` and what to do.  Passwords never appear in messages or logs.
"""

from __future__ import annotations

import hashlib
import hmac
import imaplib
import logging
import re
import socket
import ssl
import string
from dataclasses import dataclass, field
from typing import Literal

from imapclient import IMAPClient
from imapclient.exceptions import CapabilityError

from mailmig_tui.engine import model

log = logging.getLogger(__name__)

ErrorKind = Literal["dns", "refused", "timeout", "connection", "tls", "certificate", "auth", "capability", "protocol"]

SECURITY_MODES: tuple[str, ...] = ("ssl", "starttls", "none")
DEFAULT_TIMEOUT = 60.0
TRANSIENT_KINDS = frozenset({"refused", "timeout", "connection"})

# RFC 5530 response codes of a refused login, in words an admin can act on.
_AUTH_CODES = {
    "AUTHENTICATIONFAILED": "wrong password or account disabled",
    "AUTHORIZATIONFAILED": "the login was accepted but may not open this account",
    "EXPIRED": "the password has expired",
    "PRIVACYREQUIRED": "the server only accepts logins over an encrypted connection: use ssl or starttls",
    "UNAVAILABLE": "the server cannot check logins right now (temporary failure); try again later",
    "CONTACTADMIN": "the server asks you to contact its administrator",
}


@dataclass(frozen=True)
class Endpoint:
    """Where an IMAP server is and how to reach it."""

    host: str
    port: int
    security: str = "ssl"
    tls_fingerprint: str = ""
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if self.security not in SECURITY_MODES:
            raise ValueError(f"security is one of {', '.join(SECURITY_MODES)}, not {self.security!r}")
        if self.tls_fingerprint:
            _fingerprint_hex(self.tls_fingerprint)  # raises ValueError when malformed
        if self.timeout <= 0:
            raise ValueError(f"the timeout is a positive number of seconds, not {self.timeout!r}")

    @property
    def where(self) -> str:
        """``host:port`` as an admin writes it (IPv6 addresses in brackets)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"


class ImapError(Exception):
    """A connection or login failed; ``str()`` is a sentence the admin can act on."""

    def __init__(self, kind: ErrorKind, message: str, *, fingerprint: str = "") -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.fingerprint = fingerprint

    @property
    def transient(self) -> bool:
        """True when trying again later may succeed (refused, timed out, dropped)."""
        return self.kind in TRANSIENT_KINDS

    def __repr__(self) -> str:
        return f"ImapError(kind={self.kind!r}, message={self.message!r})"

    def __reduce__(self) -> tuple[type[ImapError], tuple[str, str], dict[str, str]]:
        return (ImapError, (self.kind, self.message), {"fingerprint": self.fingerprint})


@dataclass(frozen=True)
class Credentials:
    """What to log in with; ``authzid`` set means AUTHENTICATE PLAIN acting as that user."""

    login: str
    password: str = field(repr=False)
    authzid: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(login={self.login!r}, password='***', authzid={self.authzid!r})"

    __str__ = __repr__


# --------------------------------------------------------------------------------------------
# Fingerprints and TLS contexts


def format_fingerprint(der: bytes) -> str:
    """``sha256:AB:CD:…`` of a DER certificate (upper-case hex pairs, colon separated)."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return "sha256:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _fingerprint_hex(fingerprint: str) -> str:
    """The 64 upper-case hex digits of a ``sha256:AB:…`` fingerprint, or ValueError."""
    algorithm, _, pairs = fingerprint.strip().partition(":")
    digits = pairs.replace(":", "").upper()
    if algorithm.lower() != "sha256" or len(digits) != 64 or any(c not in "0123456789ABCDEF" for c in digits):
        raise ValueError('a pinned certificate is written "sha256:" followed by 32 hex pairs separated by ":"')
    return digits


class _PinMismatch(Exception):
    def __init__(self, seen: str) -> None:
        super().__init__(seen)
        self.seen = seen


class _TlsContext(ssl.SSLContext):
    """An SSLContext that records the peer's certificate fingerprint and, when pinned, checks it.

    The check runs right after the handshake, before any IMAP byte is read or written, for
    implicit TLS and STARTTLS alike (both wrap their socket through ``wrap_socket``).
    """

    pin: str = ""
    seen: str = ""

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        tls = super().wrap_socket(
            sock,
            server_side=server_side,
            do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs,
            server_hostname=server_hostname,
            session=session,
        )
        der = tls.getpeercert(binary_form=True)
        self.seen = format_fingerprint(der) if der else ""
        if self.pin and not (der and hmac.compare_digest(_fingerprint_hex(self.seen), self.pin)):
            tls.close()
            raise _PinMismatch(self.seen)
        return tls


def _tls_context(pin: str = "", *, verify: bool = True) -> _TlsContext:
    """Verify against the system store and the host name, or (pinned/unverified) only record."""
    context = _TlsContext(ssl.PROTOCOL_TLS_CLIENT)
    if pin or not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.pin = _fingerprint_hex(pin) if pin else ""
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return context


def peer_fingerprint(host: str, port: int, security: str = "ssl", timeout: float = DEFAULT_TIMEOUT) -> str:
    """The server certificate's ``sha256:AB:CD:…`` fingerprint, to show the admin before pinning.

    The certificate is read without verifying it: the result is something to compare with what
    the server's administrator sees (``openssl x509 -noout -fingerprint -sha256``), not a proof.
    """
    ep = Endpoint(host, port, security, "", timeout)
    if security == "none":
        raise ValueError("a connection without TLS has no certificate; use security ssl or starttls")
    context = _tls_context(verify=False)
    client: IMAPClient | None = None
    try:
        client = IMAPClient(host, port=port, ssl=security == "ssl", ssl_context=context, timeout=timeout)
        if security == "starttls":
            _starttls(client, ep, context)
    except Exception as exc:
        if not context.seen:
            raise _error(ep, exc) from exc
    finally:
        if client is not None:
            _close(client)
    if not context.seen:
        raise ImapError("tls", f"{ep.where}: the server presented no certificate")
    return context.seen


# --------------------------------------------------------------------------------------------
# Connecting


def connect(ep: Endpoint) -> IMAPClient:
    """An IMAP connection to ``ep``, secured as it says, not yet logged in; or ImapError."""
    context = _tls_context(ep.tls_fingerprint) if ep.security != "none" else None
    try:
        client = IMAPClient(ep.host, port=ep.port, ssl=ep.security == "ssl", ssl_context=context, timeout=ep.timeout)
    except Exception as exc:
        raise _error(ep, exc) from exc
    # IMAPClient sets imaplib's debug level to 5, which makes imaplib format every response (message
    # bodies included) for a logger that then drops it: most of the client's CPU in a copy.
    client._imap.debug = 0
    try:
        _tune_socket(client.socket(), ep.timeout)
        if context is not None and ep.security == "starttls":
            _starttls(client, ep, context)
            _tune_socket(client.socket(), ep.timeout)
    except Exception as exc:
        _close(client)
        raise _error(ep, exc) from exc
    if context is not None:
        how = "pinned certificate" if ep.tls_fingerprint else "verified certificate"
        log.debug("connected to %s (%s, %s, %s)", ep.where, ep.security, client.socket().version(), how)
    else:
        log.debug("connected to %s without TLS", ep.where)
    return client


def _starttls(client: IMAPClient, ep: Endpoint, context: ssl.SSLContext) -> None:
    if not client.has_capability("STARTTLS"):
        raise ImapError(
            "capability",
            f"{ep.where}: the server does not offer STARTTLS, so the connection cannot be encrypted "
            '(it is never used unencrypted instead). Use security = "ssl" if the server has an '
            'implicit-TLS port (usually 993), or security = "none" if a plain connection is really acceptable.',
        )
    try:
        client.starttls(context)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:
        raise ImapError("tls", f"{ep.where}: the server refused STARTTLS ({_server_text(exc)})") from exc


def _tune_socket(sock: socket.socket, timeout: float) -> None:
    sock.settimeout(timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _close(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except Exception as exc:  # the connection is being dropped anyway
        log.debug("closing %s:%s: %s", client.host, client.port, exc)


def _error(ep: Endpoint, exc: BaseException, *, connecting: bool = True) -> ImapError:
    """The ImapError that tells the admin what ``exc`` means for ``ep``.

    ``connecting``: the failure happened while connecting, so hints about the port's security
    setting may apply.
    """
    where = ep.where
    if isinstance(exc, ImapError):
        return exc
    if isinstance(exc, _PinMismatch):
        return ImapError(
            "certificate",
            f"{where}: the server's certificate does not match the pinned one (pinned {ep.tls_fingerprint}, "
            f"the server presents {exc.seen or 'no certificate'}). If the certificate was replaced on purpose, "
            f'pin the new one: tls_fingerprint = "{exc.seen}"; otherwise something may be intercepting the connection.',
            fingerprint=exc.seen,
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        try:
            seen = peer_fingerprint(ep.host, ep.port, ep.security, ep.timeout)
        except (ImapError, OSError) as again:
            return ImapError(
                "certificate",
                f"{where}: certificate not trusted ({reason}); its fingerprint could not be read ({again}).",
            )
        return ImapError(
            "certificate",
            f"{where}: certificate not trusted ({reason}). If you trust this server, pin its certificate: "
            f'tls_fingerprint = "{seen}"',
            fingerprint=seen,
        )
    if isinstance(exc, ssl.SSLError):
        hint = (
            ' Does this port speak implicit TLS? If it is a plain IMAP port (usually 143), use security = "starttls".'
            if connecting and ep.security == "ssl"
            else ""
        )
        return ImapError("tls", f"{where}: TLS handshake failed ({exc.reason or exc}).{hint}")
    if isinstance(exc, socket.gaierror):
        return ImapError(
            "dns",
            f'{where}: cannot resolve the host name "{ep.host}" ({exc.strerror or exc}): '
            "check the server address and this machine's DNS",
        )
    if isinstance(exc, UnicodeError):  # the idna codec rejects the name before any lookup
        return ImapError("dns", f'{where}: "{ep.host}" is not a valid host name ({exc})')
    if isinstance(exc, ConnectionRefusedError):
        return ImapError("refused", f"{where}: connection refused: is the IMAP server running and is the port right?")
    if isinstance(exc, TimeoutError):
        hint = (
            ' If this port expects TLS from the first byte (usually 993), use security = "ssl".'
            if connecting and ep.security != "ssl"
            else ""
        )
        return ImapError(
            "timeout",
            f"{where}: no answer within {ep.timeout:g} s: check the address, the port and any firewall in between.{hint}",
        )
    if isinstance(exc, imaplib.IMAP4.abort):
        return ImapError("connection", f"{where}: the connection was dropped ({_server_text(exc)})")
    if isinstance(exc, OSError):
        return ImapError("connection", f"{where}: cannot connect ({exc.strerror or exc})")
    if isinstance(exc, CapabilityError):
        return ImapError("capability", f"{where}: {exc}")
    if isinstance(exc, imaplib.IMAP4.error):
        return ImapError(
            "protocol", f"{where}: the server did not answer as an IMAP server should ({_server_text(exc)})"
        )
    return ImapError("protocol", f"{where}: unexpected failure ({type(exc).__name__}: {exc})")


def _server_text(exc: BaseException) -> str:
    """The server's words in an imaplib/IMAPClient exception, without Python's b'…' wrapping."""
    text = str(exc.args[0]) if exc.args else str(exc)
    if isinstance(exc.args[0] if exc.args else None, bytes):
        text = exc.args[0].decode("utf-8", "replace")
    match = re.fullmatch(r"b(['\"])(.*)\1", text, flags=re.DOTALL)
    return match.group(2) if match else text


def capabilities(client: IMAPClient) -> frozenset[str]:
    """The server's current capabilities, upper-case (``"IMAP4REV1"``, ``"AUTH=PLAIN"``…)."""
    return frozenset(
        (c.decode("ascii", "replace") if isinstance(c, bytes) else str(c)).upper() for c in client.capabilities()
    )


# --------------------------------------------------------------------------------------------
# Logging in


def login(client: IMAPClient, login: str, password: str, *, authzid: str | None = None, who: str = "") -> None:
    """Log in with LOGIN, or with AUTHENTICATE PLAIN acting as ``authzid`` (RFC 4616).

    ``who`` is the account as the admin knows it, named in error messages.  AUTHENTICATE PLAIN
    (UTF-8) is also used without ``authzid`` when LOGIN cannot be used: the server announces
    LOGINDISABLED, or the login or password is not ASCII.
    """
    ep = _endpoint_of(client)
    where = ep.where
    account = who or authzid or login
    if authzid:
        shown = f"{account} (as {login} acting for {authzid})"
    elif login != account:
        shown = f"{account} (as {login})"
    else:
        shown = account
    try:
        caps = capabilities(client)
        use_plain = bool(authzid)
        if authzid and "AUTH=PLAIN" not in caps:
            raise ImapError(
                "capability",
                f"{where}: cannot log in to {shown}: acting for another user needs AUTHENTICATE PLAIN and "
                "the server does not offer AUTH=PLAIN. Use a master-user login or a login template instead.",
            )
        if not authzid and ("LOGINDISABLED" in caps or not _is_ascii(login, password)):
            if "AUTH=PLAIN" not in caps:
                why = (
                    "the server refuses LOGIN on this connection (LOGINDISABLED): use security ssl or starttls"
                    if "LOGINDISABLED" in caps
                    else "the login or password has non-ASCII characters, which LOGIN cannot carry"
                )
                raise ImapError(
                    "capability", f"{where}: cannot log in to {shown}: {why}, and the server does not offer AUTH=PLAIN"
                )
            use_plain = True
        if use_plain:
            client.plain_login(login, password, authzid)
        else:
            client.login(login, password)
    except ImapError:
        raise
    except (imaplib.IMAP4.abort, OSError) as exc:
        raise _error(ep, exc, connecting=False) from None
    except imaplib.IMAP4.error as exc:
        text = _server_text(exc)
        if password:
            text = text.replace(password, "***")
        match = re.search(r"\[([A-Z-]+)", text)
        code = match.group(1) if match else ""
        reason = _AUTH_CODES.get(code, "the server refused the login")
        if authzid and code == "AUTHENTICATIONFAILED":
            reason = (
                f"wrong password, or {login} may not act for other users "
                "(on Dovecot it must be a master user; on Exchange it needs full access)"
            )
        raise ImapError("auth", f"{where}: login refused for {shown}: {reason} ({text})") from None
    log.debug("logged in to %s as %s", where, shown)


def _endpoint_of(client: IMAPClient) -> Endpoint:
    return Endpoint(str(client.host), int(client.port), timeout=client.socket().gettimeout() or DEFAULT_TIMEOUT)


def _is_ascii(*texts: str) -> bool:
    return all(t.isascii() for t in texts)


# --------------------------------------------------------------------------------------------
# Who logs in: source and destination credentials


LOGIN_TEMPLATE_FIELDS = ("user", "user_local", "domain", "delegate")


def render_login_template(template: str, user: str, delegate: str) -> str:
    """The login a template makes for ``user`` through ``delegate``.

    Placeholders: ``{user}`` (the source account), ``{user_local}`` and ``{domain}`` (its parts
    around the last ``@``; the whole account and "" without one), ``{delegate}``.  A literal brace
    is written ``{{`` or ``}}``.  A bad template raises :class:`model.ValidationError`.
    """
    where = "source.delegate.template"
    known = ", ".join("{" + f + "}" for f in LOGIN_TEMPLATE_FIELDS)
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        problem = f"not a valid template ({exc}); placeholders are {known}, a literal brace is {{{{ or }}}}"
        raise model.ValidationError([model.Problem(where, problem)]) from None
    for name, spec, conv in fields:
        if name not in LOGIN_TEMPLATE_FIELDS or spec or conv:
            raise model.ValidationError([model.Problem(where, f"unknown placeholder {{{name}}}; use {known}")])
    local, at, domain = user.rpartition("@")
    if not at:
        local, domain = user, ""
    return template.format(user=user, user_local=local, domain=domain, delegate=delegate)


def source_credentials(source: model.Source, user: model.User) -> Credentials:
    """The user's own login, or the delegate's (SASL authzid or login template) when enabled."""
    account = user.source.strip()
    d = source.delegate
    if not d.enabled:
        return Credentials(account, user.password)
    if d.method == "authzid":
        return Credentials(d.login, d.password, account)
    if d.method == "template":
        return Credentials(render_login_template(d.template, account, d.login), d.password)
    raise model.ValidationError(
        [model.Problem("source.delegate.method", f"{d.method!r} is not one of {', '.join(model.DELEGATE_METHODS)}")]
    )


def destination_credentials(dest: model.Destination, user: model.User) -> Credentials:
    """How the tool opens ``user``'s destination mailbox, per the global settings."""
    account = user.destination.strip()
    if dest.auth == "master":
        return Credentials(f"{account}{dest.master_separator}{dest.login}", dest.password)
    if dest.auth == "authzid":
        return Credentials(dest.login, dest.password, account)
    if dest.auth == "per-user":
        return Credentials(account, user.destination_password)
    raise model.ValidationError(
        [model.Problem("destination.auth", f"{dest.auth!r} is not one of {', '.join(model.DEST_AUTH_MODES)}")]
    )


def open_source(source: model.Source, user: model.User, timeout: float = DEFAULT_TIMEOUT) -> IMAPClient:
    """A logged-in connection to ``user``'s mailbox on an IMAP source; or ImapError."""
    if source.type != "imap":
        raise ValueError(f"open_source is for IMAP sources, not {source.type!r}")
    ep = Endpoint(source.host, source.port, source.security, source.tls_fingerprint, timeout)
    return _open(ep, source_credentials(source, user), user.source.strip())


def open_destination(dest: model.Destination, user: model.User, timeout: float = DEFAULT_TIMEOUT) -> IMAPClient:
    """A logged-in connection to ``user``'s destination mailbox; or ImapError."""
    ep = Endpoint(dest.host, dest.port, dest.security, dest.tls_fingerprint, timeout)
    return _open(ep, destination_credentials(dest, user), user.destination.strip())


def _open(ep: Endpoint, creds: Credentials, who: str) -> IMAPClient:
    client = connect(ep)
    try:
        login(client, creds.login, creds.password, authzid=creds.authzid, who=who)
    except BaseException:
        _close(client)
        raise
    return client


def close_quietly(client: IMAPClient) -> None:
    """Log out politely, or just drop the connection when it is already broken."""
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - closing must never mask the error that led here
        _close(client)
