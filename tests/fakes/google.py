"""A local fake of Google's OAuth token endpoint and the Gmail API (REST and batch), for the real client libraries.

``google-auth`` and ``google-api-python-client`` talk to it over plain http on 127.0.0.1 exactly as
they talk to Google (see ../shared/research/api-fakes.md §1–§2): the service-account key's
``token_uri`` points here, and the source's ``api_endpoint`` too.

* ``POST /token``: the JWT-bearer grant. The assertion's RS256 signature is checked against the
  test key's public key, and its ``iss``, ``aud``, ``exp``, ``scope`` and ``sub``: an unknown
  subject gets ``invalid_grant``, a subject the test denied (``deny()``) or a scope not granted gets
  ``unauthorized_client``, as Google answers when domain-wide delegation is missing.
* ``GET /gmail/v1/users/{me|address}/profile|labels|messages[/{id}]``: ``messages.list`` with
  ``q`` (``after:``/``before:`` epoch seconds, strictly after/before; ``larger:`` bytes, ``K``/``M``
  suffixes, against :attr:`FakeMessage.size_estimate`), ``labelIds`` (all must
  match), ``includeSpamTrash``, ``maxResults`` (≤ 500) and ``pageToken``, newest first;
  ``messages.get`` with ``format=raw|minimal|metadata`` (``raw`` unpadded base64url).
* ``POST /batch`` and ``/batch/gmail/v1``: multipart/mixed of application/http parts paired by
  Content-ID, answered in reverse order (pairing must not rely on order); more than
  :attr:`FakeGoogle.max_batch` parts is refused as Gmail does.
* Faults: ``fault(pattern, status, ...)`` answers the next ``count`` requests whose
  ``path?query`` matches ``pattern`` with that status, body and headers; batch parts are checked
  one by one, so a fault can hit some parts of a batch.
* ``log``: every request (batch parts included) as a :class:`Logged`, for assertions on the wire.

Mailboxes hold real MIME messages (bytes) with Gmail labels and an internalDate.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.message
import email.parser
import email.policy
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
SYSTEM_LABELS = (
    "INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "IMPORTANT", "STARRED", "UNREAD", "CHAT",
    "CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES", "CATEGORY_FORUMS",
)  # fmt: skip
_STATUS = {
    400: ("badRequest", "INVALID_ARGUMENT"),
    401: ("authError", "UNAUTHENTICATED"),
    403: ("forbidden", "PERMISSION_DENIED"),
    404: ("notFound", "NOT_FOUND"),
    429: ("rateLimitExceeded", "RESOURCE_EXHAUSTED"),
    500: ("backendError", "INTERNAL"),
    503: ("backendError", "UNAVAILABLE"),
}
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}  # fmt: skip


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def google_error(status: int, message: str, reason: str | None = None, domain: str = "global") -> bytes:
    """A Google JSON error body, as every Google API sends it."""
    default_reason, state = _STATUS.get(status, ("backendError", "UNKNOWN"))
    error = {
        "code": status,
        "message": message,
        "errors": [{"message": message, "domain": domain, "reason": reason or default_reason}],
        "status": state,
    }
    return json.dumps({"error": error}).encode()


# --------------------------------------------------------------------------------------------
# The service-account key.


@dataclass
class FakeKey:
    """A service-account key made at test time (RSA 2048); ``write()`` gives the JSON key file."""

    private_key: rsa.RSAPrivateKey
    client_email: str = "mailmig@acme-project.iam.gserviceaccount.com"
    client_id: str = "104857600123456789012"
    private_key_id: str = "0123456789abcdef0123456789abcdef01234567"
    project_id: str = "acme-project"

    def info(self, token_uri: str) -> dict[str, str]:
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": self.client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "universe_domain": "googleapis.com",
        }

    def write(self, path: Path, token_uri: str) -> Path:
        path.write_text(json.dumps(self.info(token_uri), indent=2))
        path.chmod(0o600)
        return path


def make_key(**fields: str) -> FakeKey:
    return FakeKey(rsa.generate_private_key(public_exponent=65537, key_size=2048), **fields)


# --------------------------------------------------------------------------------------------
# Mailboxes.


@dataclass
class FakeMessage:
    id: str
    raw: bytes
    labels: set[str]
    internal_ms: int
    thread_id: str

    @property
    def size_estimate(self) -> int:
        """Gmail's ``sizeEstimate`` (and what ``larger:`` compares): near the raw size, never equal."""
        return len(self.raw) + len(self.raw) // 50 + 120


def _matches(msg: FakeMessage, kind: str, bound: int) -> bool:
    """One ``q`` term: ``after:``/``before:`` (bound in ms, strict) or ``larger:`` (bytes, strict)."""
    if kind == "larger":
        return msg.size_estimate > bound
    return msg.internal_ms > bound if kind == "after" else msg.internal_ms < bound


class FakeMailbox:
    """One user's Gmail: labels (system ones built in) and messages with label ids."""

    _ids = itertools.count(0x18C0_0000_0000_0000)

    def __init__(self, address: str) -> None:
        self.address = address
        self.labels: dict[str, dict[str, Any]] = {
            name: {"id": name, "name": name, "type": "system"} for name in SYSTEM_LABELS
        }
        self.messages: dict[str, FakeMessage] = {}
        self.history = 1000
        self._next_label = itertools.count(1)

    def label(self, name: str) -> str:
        """The id of user label ``name`` (created when missing), or of a system label given by id."""
        if name in self.labels and self.labels[name]["type"] == "system":
            return name
        for label in self.labels.values():
            if label["type"] == "user" and label["name"] == name:
                return str(label["id"])
        label_id = f"Label_{next(self._next_label)}"
        self.labels[label_id] = {
            "id": label_id,
            "name": name,
            "type": "user",
            "messageListVisibility": "show",
            "labelListVisibility": "labelShow",
        }
        return label_id

    def add(self, raw: bytes, labels: Iterable[str] = ("INBOX",), when: dt.datetime | None = None) -> str:
        """Store a message; ``labels`` are system label ids or user label names. Returns its Gmail id."""
        when = when or dt.datetime(2024, 1, 15, 9, 30, tzinfo=dt.UTC)
        mid = f"{next(self._ids):016x}"
        self.messages[mid] = FakeMessage(
            mid, raw, {self.label(name) for name in labels}, int(when.timestamp() * 1000), mid
        )
        self.history += 1
        return mid

    def relabel(self, mid: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        msg = self.messages[mid]
        msg.labels |= {self.label(name) for name in add}
        msg.labels -= {self.label(name) for name in remove}
        self.history += 1

    def delete(self, mid: str) -> None:
        del self.messages[mid]
        self.history += 1


# --------------------------------------------------------------------------------------------
# The server.


@dataclass
class Fault:
    pattern: re.Pattern[str]
    status: int
    body: bytes
    headers: dict[str, str]
    count: int


@dataclass(frozen=True)
class Logged:
    """One request as the fake saw it; ``in_batch`` for a batch part, ``parts`` for a batch."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    account: str = ""
    in_batch: bool = False
    parts: int = 0
    fault: bool = False
    claims: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.monotonic)

    @property
    def target(self) -> str:
        return self.path + (
            "?" + "&".join(f"{k}={v}" for k, vs in self.query.items() for v in vs) if self.query else ""
        )


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=UTF-8"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        resp = self.server.fake.handle(self.command, self.path, headers, body)
        self.send_response(resp.status, _REASONS.get(resp.status))
        self.send_header("Content-Type", resp.content_type)
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        self.wfile.write(resp.body)

    do_GET = do_POST = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGoogle


class FakeGoogle:
    """The fake's state and its HTTP server. Use as a context manager or call start()/stop()."""

    def __init__(self, key: FakeKey) -> None:
        self.key = key
        self.public_key = key.private_key.public_key()
        self.mailboxes: dict[str, FakeMailbox] = {}
        self.denied: set[str] = set()
        self.granted_scopes = {GMAIL_READONLY}
        self.max_batch = 50
        self.token_lifetime = 3599
        self.log: list[Logged] = []
        self._faults: list[Fault] = []
        self._tokens: dict[str, str] = {}
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeGoogle:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-google", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeGoogle:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    @property
    def token_uri(self) -> str:
        return self.root + "token"

    # -- test controls -----------------------------------------------------------------------

    def mailbox(self, address: str) -> FakeMailbox:
        with self._lock:
            return self.mailboxes.setdefault(address, FakeMailbox(address))

    def deny(self, address: str) -> None:
        """Domain-wide delegation does not cover this user: its token requests get unauthorized_client."""
        self.denied.add(address)

    def fault(
        self,
        pattern: str,
        status: int,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        count: int = 1,
        reason: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests whose ``path?query`` matches ``pattern`` with ``status``."""
        if body is None:
            body = google_error(status, f"injected {status}", reason, "usageLimits" if reason else "global")
        with self._lock:
            self._faults.append(Fault(re.compile(pattern), status, body, dict(headers or {}), count))

    def requests(self, pattern: str = "") -> list[Logged]:
        with self._lock:
            return [r for r in self.log if re.search(pattern, r.target)]

    # -- dispatch ----------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes, *, in_batch: bool = False
    ) -> Response:
        url = urlsplit(target)
        path = unquote(url.path)
        query = parse_qs(url.query, keep_blank_values=True)
        extra: dict[str, Any] = {}
        fault = self._take_fault(f"{path}?{url.query}")
        if fault is not None:
            resp = Response(fault.status, fault.body, dict(fault.headers))
        elif method == "POST" and path == "/token":
            resp = self._token(body, extra)
        elif method == "POST" and path in ("/batch", "/batch/gmail/v1"):
            resp = self._batch(headers, body, extra)
        elif method == "GET" and path.startswith("/gmail/v1/users/"):
            resp = self._gmail(path, query, headers, extra)
        else:
            resp = Response(404, google_error(404, f"no route for {method} {path}"))
        with self._lock:
            self.log.append(
                Logged(method, path, query, resp.status, extra.get("account", ""), in_batch, extra.get("parts", 0),
                       fault is not None, extra.get("claims", {}))
            )  # fmt: skip
        return resp

    def _take_fault(self, target: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.count > 0 and fault.pattern.search(target):
                    fault.count -= 1
                    return fault
        return None

    # -- OAuth -------------------------------------------------------------------------------

    def _token(self, body: bytes, extra: dict[str, Any]) -> Response:
        def oauth_error(status: int, error: str, description: str) -> Response:
            return Response(status, json.dumps({"error": error, "error_description": description}).encode())

        form = parse_qs(body.decode("ascii", "replace"))
        if form.get("grant_type", [""])[0] != JWT_BEARER:
            return oauth_error(400, "unsupported_grant_type", "Invalid grant_type")
        try:
            header_b64, claims_b64, sig_b64 = form.get("assertion", [""])[0].split(".")
            header = json.loads(_unb64url(header_b64))
            claims = json.loads(_unb64url(claims_b64))
            signature = _unb64url(sig_b64)
        except (ValueError, TypeError):
            return oauth_error(400, "invalid_grant", "Invalid JWT: malformed")
        extra["claims"] = claims
        if header.get("alg") != "RS256" or header.get("kid") != self.key.private_key_id:
            return oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        try:
            self.public_key.verify(
                signature, f"{header_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        now = time.time()
        if claims.get("iss") != self.key.client_email:
            return oauth_error(401, "invalid_client", "The OAuth client was not found.")
        if claims.get("aud") != TOKEN_AUDIENCE:
            return oauth_error(400, "invalid_grant", "Invalid JWT: aud")
        if not (claims.get("iat", 0) - 300 <= now <= claims.get("exp", 0)) or claims["exp"] - claims["iat"] > 3600:
            return oauth_error(
                400,
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                "Check your iat and exp values in the JWT claim.",
            )
        subject = str(claims.get("sub", ""))
        extra["account"] = subject
        with self._lock:
            known = subject in self.mailboxes
            denied = subject in self.denied
        if not known:
            return oauth_error(400, "invalid_grant", "Invalid email or User ID")
        scopes = set(str(claims.get("scope", "")).split())
        if denied or not scopes or not scopes <= self.granted_scopes:
            return oauth_error(
                401,
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, "
                "or client not authorized for any of the scopes requested.",
            )
        token = "ya29.fake-" + secrets.token_urlsafe(16)
        with self._lock:
            self._tokens[token] = subject
        return Response(
            200, json.dumps({"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}).encode()
        )

    # -- Gmail -------------------------------------------------------------------------------

    def _gmail(
        self, path: str, query: dict[str, list[str]], headers: dict[str, str], extra: dict[str, Any]
    ) -> Response:
        auth = headers.get("authorization", "")
        with self._lock:
            subject = self._tokens.get(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None
        if subject is None:
            return Response(401, google_error(401, "Request had invalid authentication credentials."))
        extra["account"] = subject
        m = re.fullmatch(r"/gmail/v1/users/([^/]+)/(profile|labels|messages)(?:/([^/]+))?", path)
        if m is None:
            return Response(404, google_error(404, "Requested entity was not found."))
        user, what, item = m.groups()
        if user != "me" and user.casefold() != subject.casefold():
            return Response(403, google_error(403, f"Delegation denied for {subject}"))
        with self._lock:
            box = self.mailboxes[subject]
            if what == "profile":
                return self._json(
                    {
                        "emailAddress": subject,
                        "messagesTotal": len(box.messages),
                        "threadsTotal": len({m.thread_id for m in box.messages.values()}),
                        "historyId": str(box.history),
                    }
                )
            if what == "labels" and item is None:
                return self._json({"labels": list(box.labels.values())})
            if what == "messages" and item is None:
                return self._list(box, query)
            if what == "messages" and item is not None:
                return self._get(box, item, query)
        return Response(404, google_error(404, "Requested entity was not found."))

    @staticmethod
    def _json(data: Any, status: int = 200) -> Response:
        return Response(status, json.dumps(data).encode())

    def _list(self, box: FakeMailbox, query: dict[str, list[str]]) -> Response:
        label_ids = query.get("labelIds", [])
        include = query.get("includeSpamTrash", ["false"])[0] == "true"
        max_results = min(int(query.get("maxResults", ["100"])[0]), 500)
        try:
            offset = int(_unb64url(query.get("pageToken", [""])[0]).decode() or 0)
        except ValueError:
            return Response(400, google_error(400, "Invalid pageToken"))
        checks = []
        for term in query.get("q", [""])[0].split():
            m = re.fullmatch(r"(after|before):(\d+)|(larger):(\d+)([KM]?)", term)
            if m is None:
                return Response(400, google_error(400, f"the fake does not understand the query term {term!r}"))
            if m.group(3):
                checks.append(("larger", int(m.group(4)) * {"": 1, "K": 1024, "M": 1024 * 1024}[m.group(5)]))
            else:
                checks.append((m.group(1), int(m.group(2)) * 1000))
        selected = []
        for msg in sorted(box.messages.values(), key=lambda x: (x.internal_ms, x.id), reverse=True):
            if not set(label_ids) <= msg.labels:
                continue
            if not include and msg.labels & {"SPAM", "TRASH"}:
                continue
            if all(_matches(msg, kind, bound) for kind, bound in checks):
                selected.append(msg)
        page = selected[offset : offset + max_results]
        data: dict[str, Any] = {"resultSizeEstimate": len(selected)}
        if page:
            data["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if offset + max_results < len(selected):
            data["nextPageToken"] = _b64url(str(offset + max_results).encode())
        return self._json(data)

    def _get(self, box: FakeMailbox, mid: str, query: dict[str, list[str]]) -> Response:
        msg = box.messages.get(mid)
        if msg is None:
            return Response(404, google_error(404, "Requested entity was not found."))
        fmt = query.get("format", ["full"])[0]
        data: dict[str, Any] = {
            "id": msg.id,
            "threadId": msg.thread_id,
            "labelIds": sorted(msg.labels),
            "snippet": "",
            "sizeEstimate": msg.size_estimate,
            "historyId": str(box.history),
            "internalDate": str(msg.internal_ms),
        }
        if fmt == "raw":
            data["raw"] = _b64url(msg.raw)
        elif fmt == "metadata":
            wanted = {h.casefold() for h in query.get("metadataHeaders", [])}
            parsed = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(msg.raw, headersonly=True)
            data["payload"] = {
                "partId": "",
                "mimeType": parsed.get_content_type(),
                "filename": "",
                "headers": [
                    {"name": k, "value": str(v)} for k, v in parsed.items() if not wanted or k.casefold() in wanted
                ],
            }
        elif fmt != "minimal":
            return Response(400, google_error(400, f"the fake does not serve format={fmt}"))
        return self._json(data)

    # -- batch -------------------------------------------------------------------------------

    def _batch(self, headers: dict[str, str], body: bytes, extra: dict[str, Any]) -> Response:
        head = f"Content-Type: {headers.get('content-type', '')}\r\n\r\n".encode()
        outer = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(head + body)
        parts = outer.get_payload() if outer.is_multipart() else None
        if not isinstance(parts, list) or not parts:
            return Response(400, google_error(400, "Failed to parse batch request"))
        extra["parts"] = len(parts)
        if len(parts) > self.max_batch:
            return Response(
                400,
                google_error(
                    400, f"Inner request count exceeds the limit. Received: {len(parts)}, Limit: {self.max_batch}"
                ),
            )
        boundary = "batch_" + secrets.token_hex(8)
        out: list[bytes] = []
        for part in reversed(parts):
            if not isinstance(part, email.message.Message):
                return Response(400, google_error(400, "Failed to parse batch request"))
            content_id = str(part.get("Content-ID", "")).strip("<>")
            payload = part.get_payload()
            text = (payload if isinstance(payload, str) else "").replace("\r\n", "\n")
            head_text, _, inner_body = text.partition("\n\n")
            request_line, *header_lines = head_text.split("\n")
            method, target, _version = request_line.split(" ", 2)
            inner_headers = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                inner_headers[name.strip().lower()] = value.strip()
            resp = self.handle(method, target, inner_headers, inner_body.encode(), in_batch=True)
            lines = [
                f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Status')}",
                f"Content-Type: {resp.content_type}",
            ]
            lines += [f"{k}: {v}" for k, v in resp.headers.items()]
            lines += [f"Content-Length: {len(resp.body)}"]
            out.append(
                f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <response-{content_id}>\r\n\r\n".encode()
                + "\r\n".join(lines).encode()
                + b"\r\n\r\n"
                + resp.body
                + b"\r\n"
            )
        out.append(f"--{boundary}--\r\n".encode())
        return Response(200, b"".join(out), content_type=f"multipart/mixed; boundary={boundary}")
