"""Signing in to Microsoft 365 with MSAL: app-only access and the device-code sign-in of an admin.

Two modes (``task.source.auth``):

- ``"app"``: client credentials of the app registration, a client secret (secrets file) or a
  certificate (``certificate_file``: a PEM file holding the private key and the certificate, mode
  0600). Tokens carry the *application* permission Mail.Read granted with admin consent; no user
  signs in. The token lives in memory only (a new one costs one request).
- ``"device"``: an admin signs in once with the device-code flow (a URL and a code, entered in any
  browser); the app needs "Allow public client flows" and the delegated permissions Mail.Read and
  Mail.Read.Shared (plus FullAccess on the mailboxes to migrate). MSAL's serializable token cache
  is kept in ``config/secrets/<task>.msal-cache.json`` (mode 0600, directory 0700, refused when
  group- or world-readable) and refreshed silently; when the grant has expired or was revoked the
  account fails with :class:`SignInRequired`, whose message says why and how to sign in again.

Endpoints come from the task: ``authority`` (``{tenant}`` is replaced) and ``graph_url``, whose
``/.default`` (app) or ``/Mail.Read`` (device) scopes are requested, so national clouds and test
fakes work alike. Every HTTP request (MSAL's and Graph's) goes through a ``requests.Session`` that
follows the environment: the system CA store, or ``REQUESTS_CA_BUNDLE`` to trust another CA (how
the tests trust their self-signed fake), and the usual proxy variables. MSAL's own code runs
unpatched; instance discovery is off (Microsoft's own hosts never need it).

For a front end: :func:`start_signin` returns a :class:`DeviceSignIn` (URL, code, lifetime) to
show, and its :meth:`DeviceSignIn.wait` blocks until the admin has signed in, the code expired, or
the given cancel event was set. :func:`signed_in_account` and :func:`sign_out` complete the set.
"""

from __future__ import annotations

import hashlib
import re
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msal
import requests
from requests.adapters import HTTPAdapter

from mailmig_tui.engine import store
from mailmig_tui.engine.imapconn import ErrorKind, ImapError
from mailmig_tui.engine.model import Source, Task

TIMEOUT = 30.0
DELEGATED_PERMISSIONS = ("Mail.Read", "Mail.Read.Shared")
REFRESH_MARGIN_S = 300.0
"""An access token this close to its expiry is renewed before use (MSAL's own margin)."""

# What the AADSTS codes an admin is likely to meet mean, and what to do about them.
AADSTS: dict[int, str] = {
    50034: "the account does not exist in this tenant",
    50057: "the account is disabled",
    50076: "multi-factor authentication is now required",
    50079: "the account must register for multi-factor authentication",
    50126: "wrong user name or password",
    50132: "the sign-in was revoked (password changed or sessions revoked)",
    50133: "the sign-in was revoked because the password changed",
    50173: "the grant was revoked (password changed or an admin revoked the sessions)",
    53003: "a Conditional Access policy blocked the sign-in",
    65001: "the permission was not consented: an admin must grant consent in the app registration",
    70000: "the grant is invalid or expired",
    70008: "the grant has expired",
    70043: "the sign-in expired under a Conditional Access sign-in frequency policy",
    70016: "the sign-in is still pending",
    700016: "the application (client) id is not registered in this tenant",
    700027: "the certificate is not registered with the app (or its signature is invalid)",
    700082: "the sign-in expired after 90 days without use",
    7000215: "the client secret is wrong",
    7000218: 'public client flows are disabled: turn on "Allow public client flows" in the app registration',
    7000222: "the client secret has expired: create a new one in the app registration",
    90002: "the tenant does not exist (check the tenant id or domain)",
    500011: "the Microsoft Graph service principal is missing in this tenant",
}
_SIGN_IN_AGAIN = frozenset({"invalid_grant", "interaction_required", "consent_required", "login_required"})
_TRANSIENT = frozenset({"temporarily_unavailable", "server_error", "service_unavailable"})


class GraphError(ImapError):
    """A Microsoft 365 failure with a sentence an admin can act on.

    It is an :class:`ImapError` so that the runner treats it like any source failure: ``kind``
    ``"connection"``/``"timeout"`` is transient (the account is retried), anything else fails the
    account with this message.
    """

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(kind, message)


class SignInRequired(GraphError):
    """The device-code sign-in is missing, expired or revoked: an admin must sign in again."""

    def __init__(self, task: str, reason: str) -> None:
        super().__init__(
            "auth",
            f"{reason}; sign in again: mailmig-tui signin {task} (or Sign in in the task's General tab)",
        )


class SignInCancelled(Exception):
    """The admin cancelled the device-code sign-in."""


def explain(result: Mapping[str, Any]) -> str:
    """A sentence from an MSAL error result: what the AADSTS code means, else Entra's own text."""
    error = str(result.get("error") or "error")
    description = str(result.get("error_description") or "").split("\r\n")[0].split("\n")[0].strip()
    codes = [int(c) for c in result.get("error_codes") or () if isinstance(c, int)]
    codes += [int(c) for c in re.findall(r"AADSTS(\d+)", description)]
    for code in codes:
        if code in AADSTS:
            return f"{AADSTS[code]} ({error}, AADSTS{code})"
    return f"{error}: {description}" if description else error


def authority_of(src: Source) -> str:
    return src.authority.replace("{tenant}", src.tenant.strip()).rstrip("/")


def graph_resource(src: Source) -> str:
    return src.graph_url.rstrip("/")


def app_scopes(src: Source) -> list[str]:
    return [f"{graph_resource(src)}/.default"]


def delegated_scopes(src: Source) -> list[str]:
    return [f"{graph_resource(src)}/{name}" for name in DELEGATED_PERMISSIONS]


def cache_file(task_name: str, paths: store.Paths | None = None) -> Path:
    """Where the device-code sign-in of a task is kept (MSAL's token cache, mode 0600)."""
    return (paths or store.paths()).secrets_dir / f"{task_name}.msal-cache.json"


def new_session(pool: int = 4) -> requests.Session:
    """An HTTP session trusting what the environment says (system store or REQUESTS_CA_BUNDLE)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = "mailmig-tui"
    return session


def _private_text(path: Path, what: str) -> str:
    """A key or token file's text; refused when other users may read it (DESIGN.md §6)."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise GraphError(
                "auth",
                f"{path}: this {what} can be read by other users (mode {stat.S_IMODE(mode):04o}); "
                f"mailmig-tui refuses to use it. Fix: chmod 600 {path}",
            )
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GraphError("auth", f"{path}: cannot read the {what}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise GraphError("auth", f"{path}: the {what} is not PEM text") from None


_PEM_KEY = re.compile(
    r"-----BEGIN (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----.+?-----END (?:RSA |EC |ENCRYPTED )?PRIVATE KEY-----", re.S
)
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def client_credential(src: Source) -> str | dict[str, str]:
    """The app's credential for MSAL: the certificate file's key and certificate, else the secret."""
    if not src.certificate_file:
        if not src.client_secret:
            raise GraphError("auth", "app-only access needs the client secret (secrets file) or a certificate file")
        return src.client_secret
    path = Path(src.certificate_file).expanduser()
    text = _private_text(path, "certificate file")
    key, cert = _PEM_KEY.search(text), _PEM_CERT.search(text)
    if key is None or cert is None:
        raise GraphError(
            "auth",
            f"{path}: the certificate file must hold the private key and the certificate in PEM "
            "(e.g. cat key.pem cert.pem > app.pem)",
        )
    return {"private_key": key.group(0), "public_certificate": cert.group(0)}


@dataclass
class DeviceSignIn:
    """A started device-code sign-in: show ``verification_uri`` and ``user_code``, then :meth:`wait`."""

    verification_uri: str
    user_code: str
    expires_in: int
    message: str
    _provider: TokenProvider = field(repr=False)
    _flow: dict[str, Any] = field(repr=False)

    def wait(self, cancel: threading.Event | None = None) -> str:
        """Block until the sign-in completes; return the signed-in account.

        Raises :class:`SignInCancelled` when ``cancel`` is set, :class:`GraphError` when the code
        expired or the sign-in was declined or refused.
        """
        return self._provider.finish_device_signin(self._flow, self.expires_in, cancel)


def pause(cancel: threading.Event | None, seconds: float) -> bool:
    """Wait ``seconds`` (at once when cancelled); True when ``cancel`` was set. Tests replace it."""
    if cancel is None:
        time.sleep(max(0.0, seconds))
        return False
    return cancel.wait(max(0.0, seconds))


class TokenProvider:
    """Access tokens for one task's app registration, shared by all its accounts (thread-safe)."""

    def __init__(
        self, task_name: str, src: Source, *, paths: store.Paths | None = None, session: requests.Session | None = None
    ) -> None:
        self.task_name = task_name
        self.src = src
        self.authority = authority_of(src)
        self.cache_path = cache_file(task_name, paths)
        self.session = session or new_session()
        self._lock = threading.RLock()
        self._cache = msal.SerializableTokenCache()
        self._cache_stamp: tuple[int, int] | None = None
        self._app: msal.ClientApplication | None = None
        self._current: tuple[str, float] | None = None

    @property
    def delegated(self) -> bool:
        return self.src.auth == "device"

    # -- MSAL application and its cache -------------------------------------------------------

    def _application(self) -> msal.ClientApplication:
        if self._app is not None:
            return self._app
        options: dict[str, Any] = dict(
            authority=self.authority,
            http_client=self.session,
            instance_discovery=False,
            token_cache=self._cache,
            timeout=TIMEOUT,
        )
        try:
            if self.delegated:
                self._app = msal.PublicClientApplication(self.src.client_id, **options)
            else:
                credential = client_credential(self.src)
                self._app = msal.ConfidentialClientApplication(
                    self.src.client_id, client_credential=credential, **options
                )
        except requests.RequestException as exc:
            raise GraphError("connection", f"cannot reach the sign-in service {self.authority}: {exc}") from None
        except ValueError as exc:
            raise GraphError(
                "auth",
                f"the sign-in service {self.authority} is not usable ({exc}); check the tenant and the authority URL",
            ) from None
        return self._app

    def _load_cache(self) -> None:
        """(Re)read the cache file when it changed on disk (e.g. a sign-in from another process)."""
        if not self.delegated:
            return
        try:
            st = self.cache_path.stat()
        except FileNotFoundError:
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._cache_stamp:
            return
        text = _private_text(self.cache_path, "token cache")
        try:
            self._cache.deserialize(text)
        except ValueError:
            raise SignInRequired(self.task_name, f"the saved sign-in ({self.cache_path}) is unreadable") from None
        self._cache_stamp = stamp

    def _save_cache(self) -> None:
        if not self.delegated or not self._cache.has_state_changed:
            return
        directory = self.cache_path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)
        store.atomic_write(self.cache_path, self._cache.serialize().encode(), mode=0o600)
        st = self.cache_path.stat()
        self._cache_stamp = (st.st_mtime_ns, st.st_size)

    # -- tokens ---------------------------------------------------------------------------------

    def token(self, *, force_refresh: bool = False) -> str:
        """A valid access token for Microsoft Graph (from memory, the cache, or Entra)."""
        with self._lock:
            if force_refresh:
                self._current = None
            elif self._current is not None and time.monotonic() < self._current[1]:
                return self._current[0]
            try:
                result = self._delegated_token(force_refresh) if self.delegated else self._app_token(force_refresh)
            except requests.RequestException as exc:
                raise GraphError("connection", f"cannot reach the sign-in service {self.authority}: {exc}") from None
            expires_in = float(result.get("expires_in") or 0)
            token = str(result["access_token"])
            self._current = (token, time.monotonic() + max(0.0, expires_in - REFRESH_MARGIN_S))
            return token

    def _app_token(self, force_refresh: bool) -> Mapping[str, Any]:
        app = self._application()
        if force_refresh:
            for at in list(self._cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                self._cache.remove_at(at)
        assert isinstance(app, msal.ConfidentialClientApplication)
        result = app.acquire_token_for_client(scopes=app_scopes(self.src))
        if "access_token" not in result:
            raise self._failure(result, "the app could not get a token")
        return result

    def _delegated_token(self, force_refresh: bool) -> Mapping[str, Any]:
        self._load_cache()
        app = self._application()
        accounts = app.get_accounts()
        if not accounts:
            raise SignInRequired(self.task_name, "nobody has signed in for this task yet")
        result = app.acquire_token_silent_with_error(
            delegated_scopes(self.src), account=accounts[0], force_refresh=force_refresh
        )
        self._save_cache()
        if result is None:
            raise SignInRequired(self.task_name, "the saved sign-in cannot be renewed")
        if "access_token" not in result:
            raise self._failure(result, "the saved sign-in cannot be renewed")
        return result

    def _failure(self, result: Mapping[str, Any], what: str) -> GraphError:
        error = str(result.get("error") or "")
        reason = f"{what}: {explain(result)}"
        if error in _TRANSIENT or not error:
            return GraphError("connection", f"{reason} (temporary; retried later)")
        if self.delegated and error in _SIGN_IN_AGAIN:
            return SignInRequired(self.task_name, reason)
        return GraphError("auth", reason)

    # -- device-code sign-in ----------------------------------------------------------------------

    def start_device_signin(self) -> DeviceSignIn:
        if not self.delegated:
            raise GraphError("auth", f'task {self.task_name} uses app-only access (auth = "app"): nobody signs in')
        with self._lock:
            self._load_cache()
            app = self._application()
            assert isinstance(app, msal.PublicClientApplication)
            try:
                flow = app.initiate_device_flow(scopes=delegated_scopes(self.src))
            except requests.RequestException as exc:
                raise GraphError("connection", f"cannot reach the sign-in service {self.authority}: {exc}") from None
        if "user_code" not in flow:
            raise self._failure(flow, "the sign-in could not start")
        return DeviceSignIn(
            verification_uri=str(flow.get("verification_uri") or flow.get("verification_url") or ""),
            user_code=str(flow["user_code"]),
            expires_in=int(flow.get("expires_in") or 900),
            message=str(flow.get("message") or ""),
            _provider=self,
            _flow=flow,
        )

    def finish_device_signin(self, flow: dict[str, Any], expires_in: int, cancel: threading.Event | None) -> str:
        app = self._application()
        assert isinstance(app, msal.PublicClientApplication)
        deadline = time.monotonic() + expires_in
        while True:
            if cancel is not None and cancel.is_set():
                raise SignInCancelled()
            with self._lock:
                try:
                    result = app.acquire_token_by_device_flow(flow, exit_condition=lambda _flow: True)
                except requests.RequestException as exc:
                    raise GraphError(
                        "connection", f"cannot reach the sign-in service {self.authority}: {exc}"
                    ) from None
                if "access_token" in result:
                    return self._signed_in(app, result)
            error = result.get("error")
            if error not in ("authorization_pending", "slow_down"):
                if error == "expired_token":
                    raise GraphError("auth", "the code expired before the sign-in was completed: start again")
                if error == "authorization_declined":
                    raise GraphError("auth", "the sign-in was declined in the browser")
                raise self._failure(result, "the sign-in failed")
            interval = max(1, int(flow.get("interval") or 5))
            if time.monotonic() + interval > deadline:
                raise GraphError("auth", "the code expired before the sign-in was completed: start again")
            if pause(cancel, interval):
                raise SignInCancelled()

    def _signed_in(self, app: msal.PublicClientApplication, result: Mapping[str, Any]) -> str:
        claims = result.get("id_token_claims") or {}
        username = str(claims.get("preferred_username") or claims.get("upn") or claims.get("name") or "")
        for account in app.get_accounts():  # one admin per task: the newest sign-in replaces the others
            if account.get("username") != username:
                app.remove_account(account)
        self._current = None
        self._save_cache()
        return username

    def account(self) -> str | None:
        """Who is signed in for this task (from the cache file), or None."""
        if not self.delegated:
            return None
        with self._lock:
            self._load_cache()
            accounts = list(self._cache.search(msal.TokenCache.CredentialType.ACCOUNT))
            return str(accounts[0].get("username")) if accounts else None


_providers: dict[tuple[str, ...], TokenProvider] = {}
_providers_lock = threading.Lock()


def provider_for(task_name: str, src: Source, paths: store.Paths | None = None) -> TokenProvider:
    """The token provider of a task, shared by its accounts (one MSAL application per process)."""
    p = paths or store.paths()
    secret = hashlib.sha256(src.client_secret.encode()).hexdigest()
    key = (
        str(p.secrets_dir), task_name, src.tenant, src.client_id, src.auth, authority_of(src),
        graph_resource(src), src.certificate_file, secret,
    )  # fmt: skip
    with _providers_lock:
        provider = _providers.get(key)
        if provider is None:
            provider = _providers[key] = TokenProvider(task_name, src, paths=p)
        return provider


def start_signin(task: Task, paths: store.Paths | None = None) -> DeviceSignIn:
    """Start the device-code sign-in of a Microsoft 365 task (network: one request to Entra)."""
    return provider_for(task.name, task.source, paths).start_device_signin()


def signed_in_account(task: Task, paths: store.Paths | None = None) -> str | None:
    """The admin signed in for a device-code task, from its token cache (no network)."""
    if task.source.type != "microsoft365" or task.source.auth != "device":
        return None
    if not cache_file(task.name, paths).exists():
        return None
    return provider_for(task.name, task.source, paths).account()


def sign_out(task: Task, paths: store.Paths | None = None) -> None:
    """Forget a task's device-code sign-in (delete its token cache)."""
    cache_file(task.name, paths).unlink(missing_ok=True)
    with _providers_lock:
        for key in [k for k, v in _providers.items() if v.task_name == task.name]:
            del _providers[key]
