"""A local Microsoft 365 for tests: Entra ID and Microsoft Graph mail, spoken over real HTTP(S).

The real ``msal`` and ``requests`` talk to it unpatched. One handler serves two listeners on
127.0.0.1: TLS (a self-signed certificate made at start, SAN 127.0.0.1 and localhost, usable as its
own CA bundle; MSAL only accepts https authorities) and plain HTTP.

Entra (``/{tenant}/...``): OIDC discovery; the token endpoint for client credentials (client
secret, or a client assertion signed with a registered certificate, checked like Entra does:
signature, audience, thumbprint), the device-code grant (``authorization_pending`` until the code is
approved, then tokens with an id token and client_info), and refresh tokens (``invalid_grant`` with
AADSTS50173 once revoked); the device-code endpoint.

Graph (``/v1.0/users/{upn}/...``): mailFolders (root children, by id or well-known alias),
childFolders, hidden folders only with ``includeHiddenFolders=true``, search folders typed
``#microsoft.graph.mailSearchFolder``; messages with ``$select``, ``$top``/``$skip`` paging through an
absolute ``@odata.nextLink``, ``$filter`` on receivedDateTime (anything else is a 400),
``$orderby``, ``$count`` and the 0x0E08 size property (echoed as ``Integer 0xe08``, a string, larger
than the MIME like the real one); ``/messages/{id}/$value``. Bearer tokens are checked; a denied
mailbox answers 403 ErrorAccessDenied, an unknown one 404 ErrorInvalidUser.

Tests inject faults (status, body, headers, count, per regex on path and query), read the request
log (times, paths, queries, statuses, grant types), and see the peak of concurrent Graph requests
per mailbox.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import re
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

TENANT = "0f0e0d0c-aaaa-bbbb-cccc-000000000001"

WELL_KNOWN_NAMES = {
    "en": {
        "inbox": "Inbox",
        "sentitems": "Sent Items",
        "drafts": "Drafts",
        "deleteditems": "Deleted Items",
        "junkemail": "Junk Email",
        "archive": "Archive",
        "outbox": "Outbox",
    },
    "de": {
        "inbox": "Posteingang",
        "sentitems": "Gesendete Elemente",
        "drafts": "Entwürfe",
        "deleteditems": "Gelöschte Elemente",
        "junkemail": "Junk-E-Mail",
        "archive": "Archiv",
        "outbox": "Postausgang",
    },
}


# --------------------------------------------------------------------------------------------
# Certificates.


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_server_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed CA-capable certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("fake-microsoft"))
        .issuer_name(_name("fake-microsoft"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fake-microsoft.crt", directory / "fake-microsoft.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def make_app_certificate(path: Path) -> str:
    """An app registration certificate: writes key + certificate PEM to ``path`` (0600), returns the cert PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("mailmig-tui app"))
        .issuer_name(_name("mailmig-tui app"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path.write_text(key_pem + cert_pem)
    path.chmod(0o600)
    return cert_pem


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --------------------------------------------------------------------------------------------
# Mailboxes.


@dataclass
class FakeMessage:
    id: str
    raw: bytes
    received: dt.datetime
    is_read: bool = False
    flag: str = "notFlagged"
    is_draft: bool = False

    @property
    def size_property(self) -> int:
        """PR_MESSAGE_SIZE: like Exchange's, larger than the MIME (properties count too)."""
        return len(self.raw) + 300 + len(self.raw) // 8

    @property
    def message_id(self) -> str | None:
        head = self.raw.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"message-id" and value.strip():
                return value.strip().decode()
        return None

    def json(self) -> dict[str, Any]:
        when = self.received.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "@odata.etag": f'W/"{hashlib.sha1(self.id.encode()).hexdigest()[:16]}"',
            "id": self.id,
            "receivedDateTime": when,
            "createdDateTime": when,
            "sentDateTime": when,
            "isRead": self.is_read,
            "isDraft": self.is_draft,
            "flag": {"flagStatus": self.flag},
            "internetMessageId": self.message_id,
            "subject": "",
        }


@dataclass
class FakeFolder:
    id: str
    name: str
    parent: FakeFolder | None
    hidden: bool = False
    search: bool = False
    alias: str | None = None
    children: list[FakeFolder] = field(default_factory=list)
    messages: list[FakeMessage] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "displayName": self.name,
            "parentFolderId": self.parent.id if self.parent else None,
            "childFolderCount": len(self.children),
            "unreadItemCount": sum(1 for m in self.messages if not m.is_read),
            "totalItemCount": len(self.messages),
            "isHidden": self.hidden,
        }
        if self.search:
            out = {"@odata.type": "#microsoft.graph.mailSearchFolder", **out, "isSupported": True}
        return out


def _graph_id(prefix: str) -> str:
    """An id shaped like Graph's (URL-safe base64, sometimes with a trailing '=')."""
    return prefix + _b64url(secrets.token_bytes(45)) + "="


class FakeMailbox:
    """One Exchange Online mailbox: a root with the well-known folders, then whatever tests add."""

    def __init__(self, upn: str, *, locale: str = "en", archive: bool = True) -> None:
        self.upn = upn
        self.root = FakeFolder(_graph_id("AAMkRoot"), "Top of Information Store", None, alias="msgfolderroot")
        self.by_id: dict[str, FakeFolder] = {self.root.id: self.root}
        self.aliases: dict[str, FakeFolder] = {"msgfolderroot": self.root}
        self.messages: dict[str, tuple[FakeFolder, FakeMessage]] = {}
        names = WELL_KNOWN_NAMES[locale]
        for alias, name in names.items():
            if alias == "archive" and not archive:
                continue
            self._new(self.root, name, alias=alias)
        finder = self._new(self.root, "Finder", alias="searchfolders", hidden=True)
        self._new(finder, "Unread Mail", search=True)

    def _new(self, parent: FakeFolder, name: str, **kw: Any) -> FakeFolder:
        folder = FakeFolder(_graph_id("AAMkF"), name, parent, **kw)
        parent.children.append(folder)
        self.by_id[folder.id] = folder
        if folder.alias:
            self.aliases[folder.alias] = folder
        return folder

    def folder(self, path: str) -> FakeFolder:
        """A folder by alias ("inbox") or display-name path ("inbox/Projects/2019", "Clients/ACME")."""
        first, *rest = path.split("/")
        folder = self.aliases.get(first.lower()) or self._child(self.root, first)
        for part in rest:
            folder = self._child(folder, part)
        return folder

    @staticmethod
    def _child(parent: FakeFolder, name: str) -> FakeFolder:
        for child in parent.children:
            if child.name == name:
                return child
        raise KeyError(f"no folder {name!r} under {parent.name!r}")

    def add_folder(
        self, parent: str | FakeFolder, name: str, *, hidden: bool = False, search: bool = False
    ) -> FakeFolder:
        base = parent if isinstance(parent, FakeFolder) else (self.root if parent == "" else self.folder(parent))
        return self._new(base, name, hidden=hidden, search=search)

    def add(
        self,
        folder: str | FakeFolder,
        raw: bytes,
        received: dt.datetime,
        *,
        is_read: bool = False,
        flagged: bool = False,
        draft: bool = False,
    ) -> FakeMessage:
        target = folder if isinstance(folder, FakeFolder) else self.folder(folder)
        msg = FakeMessage(_graph_id("AAkALgImm"), raw, received, is_read, "flagged" if flagged else "notFlagged", draft)
        target.messages.append(msg)
        self.messages[msg.id] = (target, msg)
        return msg

    def remove(self, msg: FakeMessage) -> None:
        folder, _ = self.messages.pop(msg.id)
        folder.messages.remove(msg)

    def move(self, msg: FakeMessage, folder: str | FakeFolder) -> None:
        """Move inside the mailbox: the immutable id stays."""
        target = folder if isinstance(folder, FakeFolder) else self.folder(folder)
        self.remove(msg)
        target.messages.append(msg)
        self.messages[msg.id] = (target, msg)


# --------------------------------------------------------------------------------------------
# The server's state.


@dataclass
class App:
    client_id: str
    secret: str | None = None
    certificate: str | None = None  # PEM
    public: bool = False


@dataclass
class Token:
    kind: str  # "app" | "delegated"
    client_id: str
    expires: float
    username: str = ""


@dataclass
class DeviceCode:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    expires: float
    polls: int = 0
    approved_as: str | None = None
    declined: bool = False


@dataclass
class Fault:
    pattern: re.Pattern[str]
    status: int
    body: bytes
    headers: dict[str, str]
    count: int | None


@dataclass(frozen=True)
class Logged:
    start: float
    end: float
    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    grant_type: str = ""
    mailbox: str = ""
    faulted: bool = False


class FakeMicrosoft:
    """Entra ID + Graph mail on 127.0.0.1; ``start()`` it, point a task at ``authority``/``graph_url``."""

    def __init__(self, directory: Path, *, tenant: str = TENANT) -> None:
        self.directory = directory
        self.tenant = tenant
        self.cert_path, self.key_path = make_server_cert(directory)
        self.apps: dict[str, App] = {}
        self.mailboxes: dict[str, FakeMailbox] = {}
        self.denied: set[str] = set()
        self.tokens: dict[str, Token] = {}
        self.refresh_tokens: dict[str, tuple[str, str]] = {}  # rt -> (client_id, username)
        self.revoked: set[str] = set()  # usernames whose refresh tokens were revoked
        self.device_codes: dict[str, DeviceCode] = {}
        self.users = {"admin@contoso.example": str(uuid.uuid4())}
        self.faults: list[Fault] = []
        self.log: list[Logged] = []
        self.token_lifetime = 3599
        self.device_interval = 1
        self.auto_approve_after: int | None = None  # approve as admin after this many pending polls
        self.value_delay = 0.0
        self.inflight: Counter[str] = Counter()
        self.peak_inflight: Counter[str] = Counter()
        self.lock = threading.RLock()
        self._servers: list[ThreadingHTTPServer] = []
        self.tls_port = 0
        self.http_port = 0

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> FakeMicrosoft:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        tls = _Server(("127.0.0.1", 0), _Handler, self, context)
        plain = _Server(("127.0.0.1", 0), _Handler, self, None)
        self.tls_port, self.http_port = tls.server_address[1], plain.server_address[1]
        for server in (tls, plain):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    def __enter__(self) -> FakeMicrosoft:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"

    @property
    def authority(self) -> str:
        return f"{self.base}/{self.tenant}"

    @property
    def graph_url(self) -> str:
        return self.base

    @property
    def graph_http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    # -- set-up -------------------------------------------------------------------------------------

    def register_app(
        self, client_id: str, *, secret: str | None = None, certificate: str | None = None, public: bool = False
    ) -> App:
        app = App(client_id, secret, certificate, public)
        self.apps[client_id] = app
        return app

    def mailbox(self, upn: str, **kw: Any) -> FakeMailbox:
        key = upn.casefold()
        if key not in self.mailboxes:
            self.mailboxes[key] = FakeMailbox(upn, **kw)
        return self.mailboxes[key]

    def deny(self, upn: str) -> None:
        self.denied.add(upn.casefold())

    def fault(
        self,
        pattern: str,
        status: int,
        body: Mapping[str, Any] | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        count: int | None = 1,
    ) -> None:
        """Answer requests whose unquoted ``path?query`` matches ``pattern`` with this, ``count`` times."""
        data = body if isinstance(body, bytes) else json.dumps(body or {"error": {"code": str(status)}}).encode()
        with self.lock:
            self.faults.append(Fault(re.compile(pattern), status, data, dict(headers or {}), count))

    def throttle(self, pattern: str, retry_after: int | None = 1, count: int | None = 1, status: int = 429) -> None:
        """Graph's throttling answer (ApplicationThrottled), with or without Retry-After."""
        body = {
            "error": {
                "code": "ApplicationThrottled",
                "message": "Application is over its MailboxConcurrency limit.",
            }
        }
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self.fault(pattern, status, body, headers, count)

    def approve(self, user_code: str | None = None, username: str = "admin@contoso.example") -> None:
        """Approve the newest (or the given) pending device code as ``username``."""
        with self.lock:
            code = self._device_code(user_code)
            code.approved_as = username
            self.users.setdefault(username, str(uuid.uuid4()))

    def decline(self, user_code: str | None = None) -> None:
        with self.lock:
            self._device_code(user_code).declined = True

    def _device_code(self, user_code: str | None) -> DeviceCode:
        codes = [c for c in self.device_codes.values() if user_code in (None, c.user_code)]
        if not codes:
            raise KeyError(f"no device code {user_code!r}")
        return codes[-1]

    def revoke(self, username: str = "admin@contoso.example") -> None:
        """Revoke a user's sessions: refresh tokens fail with invalid_grant (AADSTS50173)."""
        with self.lock:
            self.revoked.add(username)

    def expire_access_tokens(self) -> None:
        with self.lock:
            for token in self.tokens.values():
                token.expires = 0.0

    def requests(self, pattern: str = "", method: str | None = None) -> list[Logged]:
        """The logged requests whose ``path?query`` (unquoted) matches ``pattern``."""
        rx = re.compile(pattern)
        with self.lock:
            return [
                r
                for r in self.log
                if rx.search(r.path + "?" + "&".join(f"{k}={v}" for k, vs in r.query.items() for v in vs))
                and (method is None or r.method == method)
            ]

    # -- helpers used by the handler --------------------------------------------------------------

    def take_fault(self, target: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.count != 0 and fault.pattern.search(target):
                    if fault.count is not None:
                        fault.count -= 1
                    return fault
        return None

    def issue(self, kind: str, client_id: str, username: str = "") -> str:
        token = "at-" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = Token(kind, client_id, time.monotonic() + self.token_lifetime, username)
        return token


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type, fake: FakeMicrosoft, context: ssl.SSLContext | None
    ) -> None:
        self.fake = fake
        self.context = context
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.context is not None:
            sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.headers = dict(headers or {})
        if not isinstance(body, bytes):
            self.headers.setdefault("Content-Type", "application/json")


def _graph_error(status: int, code: str, message: str) -> _Reply:
    return _Reply(status, {"error": {"code": code, "message": message}})


def _oauth_error(status: int, error: str, code: int, text: str) -> _Reply:
    description = f"AADSTS{code}: {text}\r\nTrace ID: {uuid.uuid4()}\r\nCorrelation ID: {uuid.uuid4()}"
    return _Reply(status, {"error": error, "error_description": description, "error_codes": [code]})


_FILTER_CLAUSE = re.compile(r"^receivedDateTime (ge|gt|le|lt|eq) (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)$")


def parse_filter(text: str) -> list[tuple[str, dt.datetime]]:
    clauses = []
    for part in text.split(" and "):
        m = _FILTER_CLAUSE.match(part.strip())
        if not m:
            raise _graph_error(400, "BadRequest", f"Invalid filter clause: {part!r}")
        clauses.append((m.group(1), dt.datetime.fromisoformat(m.group(2))))
    return clauses


_OPS = {
    "ge": lambda a, b: a >= b,
    "gt": lambda a, b: a > b,
    "le": lambda a, b: a <= b,
    "lt": lambda a, b: a < b,
    "eq": lambda a, b: a == b,
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # headers and body are two writes
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            try:
                self.request.do_handshake()
            except (OSError, ssl.SSLError):
                self.request.close()
                raise
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        return

    @property
    def fake(self) -> FakeMicrosoft:
        return self.server.fake

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        start = time.monotonic()
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()} if method == "POST" else {}
        mailbox = ""
        m = re.match(r"^/v1\.0/users/([^/]+)", path)
        if m:
            mailbox = m.group(1).casefold()
        faulted = False
        with self.fake.lock:
            if mailbox:
                self.fake.inflight[mailbox] += 1
                self.fake.peak_inflight[mailbox] = max(self.fake.peak_inflight[mailbox], self.fake.inflight[mailbox])
        try:
            fault = self.fake.take_fault(path + "?" + unquote(split.query))
            if fault is not None:
                faulted = True
                reply = _Reply(fault.status, fault.body, {"Content-Type": "application/json", **fault.headers})
            else:
                try:
                    reply = self._route(method, path, query, form)
                except _Reply as raised:
                    reply = raised
        finally:
            with self.fake.lock:
                if mailbox:
                    self.fake.inflight[mailbox] -= 1
        with self.fake.lock:  # logged before answering: a client never sees an answer not yet in the log
            self.fake.log.append(
                Logged(
                    start,
                    time.monotonic(),
                    method,
                    path,
                    query,
                    reply.status,
                    form.get("grant_type", ""),
                    mailbox,
                    faulted,
                )
            )
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def _base(self) -> str:
        scheme = "https" if self.server.context is not None else "http"
        return f"{scheme}://{self.headers.get('Host') or '127.0.0.1'}"

    # -- routing ------------------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: dict[str, list[str]], form: dict[str, str]) -> _Reply:
        tenant = re.escape(self.fake.tenant)
        if method == "GET" and re.fullmatch(rf"/{tenant}/v2\.0/\.well-known/openid-configuration", path):
            return self._openid()
        if method == "POST" and re.fullmatch(rf"/{tenant}/oauth2/v2\.0/token", path):
            return self._token(form)
        if method == "POST" and re.fullmatch(rf"/{tenant}/oauth2/v2\.0/devicecode", path):
            return self._devicecode(form)
        if path.startswith("/v1.0/users/") and method == "GET":
            return self._graph(path, query)
        raise _graph_error(404, "UnknownRoute", f"{method} {path}")

    # -- Entra --------------------------------------------------------------------------------------

    def _openid(self) -> _Reply:
        base = f"{self._base()}/{self.fake.tenant}"
        return _Reply(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "issuer": f"{base}/v2.0",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                "tenant_region_scope": "EU",
            },
        )

    def _app(self, form: Mapping[str, str]) -> App:
        app = self.fake.apps.get(form.get("client_id", ""))
        if app is None:
            raise _oauth_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory.",
            )
        return app

    def _token(self, form: dict[str, str]) -> _Reply:
        app = self._app(form)
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            self._check_client(app, form)
            if not form.get("scope", "").endswith("/.default"):
                raise _oauth_error(400, "invalid_scope", 1002012, "The provided value for scope is not valid.")
            token = self.fake.issue("app", app.client_id)
            life = self.fake.token_lifetime
            return _Reply(
                200, {"token_type": "Bearer", "expires_in": life, "ext_expires_in": life, "access_token": token}
            )
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            return self._device_token(app, form)
        if grant == "refresh_token":
            return self._refresh(app, form)
        raise _oauth_error(400, "unsupported_grant_type", 70003, f"The grant type {grant!r} is not supported.")

    def _check_client(self, app: App, form: Mapping[str, str]) -> None:
        if form.get("client_secret"):
            if form["client_secret"] != app.secret:
                raise _oauth_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
            return
        assertion = form.get("client_assertion")
        if not assertion:
            raise _oauth_error(
                400, "invalid_client", 7000218, "The request body must contain: 'client_assertion' or 'client_secret'."
            )
        if app.certificate is None:
            raise _oauth_error(401, "invalid_client", 700027, "No certificate is registered for the app.")
        cert = x509.load_pem_x509_certificate(app.certificate.encode())
        header = jwt.get_unverified_header(assertion)
        thumbs = {
            "x5t#S256": _b64url(cert.fingerprint(hashes.SHA256())),
            "x5t": _b64url(cert.fingerprint(hashes.SHA1())),  # noqa: S303 - Entra's legacy thumbprint
        }
        if not any(str(header.get(k, "")).rstrip("=") == v for k, v in thumbs.items()):
            raise _oauth_error(
                401, "invalid_client", 700027, "The certificate with the given thumbprint is not registered."
            )
        try:
            claims = jwt.decode(
                assertion,
                cert.public_key(),  # type: ignore[arg-type]
                algorithms=["RS256", "PS256"],
                audience=f"{self._base()}/{self.fake.tenant}/oauth2/v2.0/token",
            )
        except jwt.PyJWTError as exc:
            raise _oauth_error(
                401, "invalid_client", 700027, f"Client assertion failed signature validation: {exc}"
            ) from None
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            raise _oauth_error(401, "invalid_client", 700023, "The client assertion's issuer is not the client.")

    def _devicecode(self, form: dict[str, str]) -> _Reply:
        app = self._app(form)
        scopes = form.get("scope", "").split()
        if not any(s.endswith("/Mail.Read") for s in scopes) or "offline_access" not in scopes:
            raise _oauth_error(
                400, "invalid_scope", 70011, f"The provided value for scope {form.get('scope')!r} is not valid."
            )
        user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
        code = DeviceCode(
            "dc-" + secrets.token_urlsafe(24), user_code, app.client_id, form["scope"], time.monotonic() + 900
        )
        with self.fake.lock:
            self.fake.device_codes[code.device_code] = code
        uri = f"{self._base()}/devicelogin"
        return _Reply(
            200,
            {
                "user_code": user_code,
                "device_code": code.device_code,
                "verification_uri": uri,
                "expires_in": 900,
                "interval": self.fake.device_interval,
                "message": f"To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate.",
            },
        )

    def _device_token(self, app: App, form: Mapping[str, str]) -> _Reply:
        if not app.public:
            raise _oauth_error(
                400, "invalid_client", 7000218, "The request body must contain: 'client_assertion' or 'client_secret'."
            )
        with self.fake.lock:
            code = self.fake.device_codes.get(form.get("device_code", ""))
            if code is None:
                raise _oauth_error(400, "bad_verification_code", 70019, "Verification code expired or unknown.")
            if code.declined:
                raise _oauth_error(400, "authorization_declined", 70020, "The end user declined the sign-in.")
            if time.monotonic() > code.expires:
                raise _oauth_error(400, "expired_token", 70020, "The device code has expired.")
            if code.approved_as is None:
                code.polls += 1
                auto = self.fake.auto_approve_after
                if auto is not None and code.polls > auto:
                    code.approved_as = "admin@contoso.example"
                else:
                    raise _oauth_error(
                        400, "authorization_pending", 70016, "OAuth 2.0 device flow error. Authorization is pending."
                    )
            username = code.approved_as
            del self.fake.device_codes[code.device_code]
        return _Reply(200, self._user_tokens(app, username, code.scope))

    def _refresh(self, app: App, form: Mapping[str, str]) -> _Reply:
        with self.fake.lock:
            entry = self.fake.refresh_tokens.get(form.get("refresh_token", ""))
            if entry is None or entry[0] != app.client_id:
                raise _oauth_error(400, "invalid_grant", 9002313, "Invalid request. The refresh token is malformed.")
            username = entry[1]
            if username in self.fake.revoked:
                raise _oauth_error(
                    400,
                    "invalid_grant",
                    50173,
                    "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
                )
        return _Reply(200, self._user_tokens(app, username, form.get("scope", "")))

    def _user_tokens(self, app: App, username: str, scope: str) -> dict[str, Any]:
        fake = self.fake
        oid = fake.users.setdefault(username, str(uuid.uuid4()))
        now = int(time.time())
        claims = {
            "aud": app.client_id,
            "iss": f"{self._base()}/{fake.tenant}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": username.split("@")[0].title(),
            "oid": oid,
            "preferred_username": username,
            "sub": _b64url(oid.encode()),
            "tid": fake.tenant,
            "ver": "2.0",
        }
        id_token = ".".join(
            [_b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode()), _b64url(json.dumps(claims).encode()), ""]
        )
        refresh = "rt-" + secrets.token_urlsafe(24)
        with fake.lock:
            fake.refresh_tokens[refresh] = (app.client_id, username)
        granted = " ".join(s for s in scope.split() if s not in ("openid", "profile", "offline_access"))
        return {
            "token_type": "Bearer",
            "scope": granted,
            "expires_in": fake.token_lifetime,
            "ext_expires_in": fake.token_lifetime,
            "access_token": fake.issue("delegated", app.client_id, username),
            "refresh_token": refresh,
            "id_token": id_token,
            "client_info": _b64url(json.dumps({"uid": oid, "utid": fake.tenant}).encode()),
        }

    # -- Graph --------------------------------------------------------------------------------------

    def _graph(self, path: str, query: dict[str, list[str]]) -> _Reply:
        auth = self.headers.get("Authorization", "")
        with self.fake.lock:
            token = self.fake.tokens.get(auth.removeprefix("Bearer "))
        if token is None or time.monotonic() > token.expires:
            raise _graph_error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
        m = re.fullmatch(r"/v1\.0/users/([^/]+)(/.*)", path)
        if m is None:
            raise _graph_error(400, "BadRequest", "Resource not found for the segment 'users'.")
        upn, rest = m.group(1), m.group(2)
        box = self.fake.mailboxes.get(upn.casefold())
        if box is None:
            raise _graph_error(404, "ErrorInvalidUser", f"The requested user '{upn}' is invalid.")
        if upn.casefold() in self.fake.denied:
            raise _graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        q = {k: v[-1] for k, v in query.items()}
        if rest == "/mailFolders":
            return self._folders(box.root, q)
        m = re.fullmatch(r"/mailFolders/([^/]+)(/childFolders|/messages)?", rest)
        if m:
            folder = self._folder(box, m.group(1))
            if m.group(2) == "/childFolders":
                return self._folders(folder, q)
            if m.group(2) == "/messages":
                return self._messages(folder, q)
            return _Reply(200, folder.json())
        m = re.fullmatch(r"(?:/mailFolders/[^/]+)?/messages/([^/]+)/\$value", rest)
        if m:
            entry = box.messages.get(m.group(1))
            if entry is None:
                raise _graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            if self.fake.value_delay:
                time.sleep(self.fake.value_delay)
            return _Reply(200, entry[1].raw, {"Content-Type": "text/plain"})
        raise _graph_error(400, "BadRequest", f"Unsupported segment in {rest!r}")

    @staticmethod
    def _folder(box: FakeMailbox, key: str) -> FakeFolder:
        folder = box.by_id.get(key) or box.aliases.get(key.lower())
        if folder is None:
            raise _graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return folder

    def _page(self, items: list[dict[str, Any]], q: Mapping[str, str], default_top: int, path: str) -> _Reply:
        top = int(q.get("$top", default_top))
        skip = int(q.get("$skip", 0))
        page: dict[str, Any] = {
            "@odata.context": f"{self._base()}/v1.0/$metadata#{path}",
            "value": items[skip : skip + top],
        }
        if q.get("$count") == "true":
            page["@odata.count"] = len(items)
        if skip + top < len(items):
            rest = {k: v for k, v in q.items() if k != "$skip"}
            rest["$skip"] = str(skip + top)
            page["@odata.nextLink"] = f"{self._base()}{quote(self.path.split('?')[0], safe='/@%$')}?" + urlencode(
                rest, quote_via=quote, safe="$"
            )
        return _Reply(200, page)

    def _folders(self, parent: FakeFolder, q: Mapping[str, str]) -> _Reply:
        hidden = q.get("includeHiddenFolders") == "true"
        items = [c.json() for c in parent.children if hidden or not c.hidden]
        return self._page(items, q, 10, "mailFolders")

    def _messages(self, folder: FakeFolder, q: Mapping[str, str]) -> _Reply:
        msgs = list(folder.messages)
        if "$filter" in q:
            for op, when in parse_filter(q["$filter"]):
                msgs = [m for m in msgs if _OPS[op](m.received.astimezone(dt.UTC).replace(microsecond=0), when)]
        order = q.get("$orderby", "receivedDateTime desc")
        if order not in ("receivedDateTime desc", "receivedDateTime asc", "receivedDateTime"):
            raise _graph_error(400, "BadRequest", f"Unsupported $orderby {order!r}")
        msgs.sort(key=lambda m: m.received, reverse=order.endswith("desc"))
        select = [s for s in q.get("$select", "").split(",") if s]
        expand = q.get("$expand", "")
        items = []
        for msg in msgs:
            item = msg.json()
            if select:
                item = {k: v for k, v in item.items() if k in select or k.startswith("@")}
            if re.search(r"singleValueExtendedProperties\(\$filter=id eq 'Integer 0x0?e08'\)", expand, re.I):
                item["singleValueExtendedProperties"] = [{"id": "Integer 0xe08", "value": str(msg.size_property)}]
            items.append(item)
        return self._page(items, q, 10, "messages")


# --------------------------------------------------------------------------------------------
# Test helpers.

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def trust(fake: FakeMicrosoft, monkeypatch: Any) -> None:
    """Make requests (hence MSAL and the Graph client) trust the fake's certificate, as an admin would
    with REQUESTS_CA_BUNDLE, and reach 127.0.0.1 directly whatever proxies the machine sets."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(fake.cert_path))
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def quick_pause(cancel: threading.Event | None, seconds: float) -> bool:
    """MSAL's device-code polling every 50 ms instead of every ``interval`` seconds."""
    if cancel is not None:
        return cancel.wait(0.05)
    time.sleep(0.05)
    return False


def start_trusted(directory: Path, monkeypatch: Any, *, quick_polls: bool = False) -> FakeMicrosoft:
    """A started fake that requests trusts, with a fresh set of token providers (as a new process has);
    ``quick_polls`` makes the device-code polling fast. The caller stops it."""
    from mailmig_tui.engine.sources import graph_auth

    server = FakeMicrosoft(directory).start()
    trust(server, monkeypatch)
    monkeypatch.setattr(graph_auth, "_providers", {})
    if quick_polls:
        monkeypatch.setattr(graph_auth, "pause", quick_pause)
    return server


def sign_in(fake: FakeMicrosoft, task: Any) -> str:
    """Run the device-code sign-in; approve it once the fake has answered one authorization_pending."""
    from mailmig_tui.engine.sources import graph_auth

    flow = graph_auth.start_signin(task)
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.setdefault("account", flow.wait(threading.Event())))
    thread.start()
    deadline = time.monotonic() + 10
    while not [r for r in fake.requests("/token") if r.status == 400] and time.monotonic() < deadline:
        time.sleep(0.02)
    fake.approve(flow.user_code)
    thread.join(15)
    return str(result["account"])


def m365_source(fake: FakeMicrosoft, *, auth: str = "app", client_id: str = "mailmig-app", **fields: Any) -> Any:
    """A task's Microsoft 365 source settings pointing at the fake (app registered as needed)."""
    from mailmig_tui.engine import model

    if client_id not in fake.apps:
        if auth == "device":
            fake.register_app(client_id, public=True)
        else:
            fake.register_app(client_id, secret=fields.get("client_secret", "app-secret"))
    if auth == "app" and "certificate_file" not in fields:
        fields.setdefault("client_secret", fake.apps[client_id].secret or "")
    return model.Source(
        type="microsoft365",
        tenant=fake.tenant,
        client_id=client_id,
        auth=auth,
        authority=fake.authority.replace(fake.tenant, "{tenant}"),
        graph_url=fake.graph_url,
        **fields,
    )
