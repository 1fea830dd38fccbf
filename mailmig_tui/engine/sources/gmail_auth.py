"""Google Workspace auth: the service-account key, domain-wide delegation, and errors an admin can act on.

The admin picks the key file (JSON, downloaded from the Google Cloud console); it is validated and
copied into the secrets area (``config/secrets/<task>.google-key.json``, mode 0600, directory 0700),
so the download can be deleted afterwards. Each source account is read with credentials for the
``gmail.readonly`` scope impersonating that account (``with_subject``); that works only after a
super admin has authorised the key's client id for that scope (Admin console → Security → Access
and data control → API controls → Domain-wide delegation). :func:`describe_key` gives a front end
what to show for that step: the client id, the scope and a pre-filled Admin console link.
"""

from __future__ import annotations

import json
import os
import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailmig_tui.engine import store

SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
ADMIN_CONSOLE_DWD = "https://admin.google.com/ac/owl/domainwidedelegation"
REQUIRED_FIELDS = ("client_email", "client_id", "private_key", "private_key_id", "token_uri")
KEY_SUFFIX = ".google-key.json"


class KeyFileError(ValueError):
    """The key file cannot be used; ``str()`` names the file and the fix."""


def admin_console_url(client_id: str, scope: str = SCOPE) -> str:
    """The Admin console page that adds domain-wide delegation for ``client_id``, pre-filled."""
    query = urllib.parse.urlencode({"clientIdToAdd": client_id, "clientScopeToAdd": scope})
    return f"{ADMIN_CONSOLE_DWD}?{query}"


@dataclass(frozen=True)
class ServiceAccountKey:
    """A validated service-account key. ``info`` holds the private key: never log or show it."""

    path: Path
    client_email: str
    client_id: str
    project_id: str
    token_uri: str
    info: dict[str, Any]

    @property
    def scope(self) -> str:
        return SCOPE

    @property
    def admin_console_url(self) -> str:
        return admin_console_url(self.client_id)

    def delegation_hint(self) -> str:
        """The sentence telling a super admin exactly what to authorise."""
        return (
            f"in the Google Admin console (Security → Access and data control → API controls → "
            f"Domain-wide delegation) authorise client id {self.client_id} for the scope {SCOPE}: "
            f"{self.admin_console_url}"
        )

    def __repr__(self) -> str:  # the private key must never end up in a log or a traceback
        return f"ServiceAccountKey(path={str(self.path)!r}, client_email={self.client_email!r}, client_id={self.client_id!r})"


def parse_key(data: bytes, path: Path) -> ServiceAccountKey:
    """Validate the bytes of a key file; KeyFileError says what is wrong and how to get a right one."""
    how = (
        "create a JSON key for the service account (Google Cloud console → IAM & Admin → Service accounts → "
        "the account → Keys → Add key → Create new key → JSON)"
    )
    try:
        info = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise KeyFileError(f"{path} is not a JSON file; {how}") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        kind = info.get("type") if isinstance(info, dict) else None
        what = f'its type is "{kind}"' if isinstance(kind, str) else "it has no type"
        if isinstance(info, dict) and ("installed" in info or "web" in info):
            what = "it is an OAuth client secret"
        raise KeyFileError(f"{path} is JSON but not a service-account key ({what}); {how}")
    missing = [name for name in REQUIRED_FIELDS if not isinstance(info.get(name), str) or not info.get(name)]
    if missing:
        raise KeyFileError(f"{path} lacks {', '.join(missing)}: the key file is incomplete; {how}")
    if "PRIVATE KEY" not in info["private_key"]:
        raise KeyFileError(f"{path}: private_key is not a PEM private key; {how}")
    return ServiceAccountKey(
        path=path,
        client_email=info["client_email"],
        client_id=info["client_id"],
        project_id=str(info.get("project_id", "")),
        token_uri=info["token_uri"],
        info=info,
    )


def load_key(path: str | Path) -> ServiceAccountKey:
    """Read and validate a key file."""
    p = Path(path).expanduser()
    return parse_key(_read(path, p), p)


def _read(path: str | Path, p: Path) -> bytes:
    if not str(path).strip():
        raise KeyFileError("no service-account key file is set: choose the JSON key of the service account")
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"the service-account key file {p} does not exist; check the path") from None
    except IsADirectoryError:
        raise KeyFileError(f"{p} is a directory, not a service-account key file") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read the service-account key file {p}: {exc.strerror}") from None
    return data


def describe_key(path: str | Path) -> ServiceAccountKey:
    """For the task editor: the key's client id, scope and Admin console link (KeyFileError if unusable)."""
    return load_key(path)


def secret_key_path(task_name: str, paths: store.Paths | None = None) -> Path:
    """Where a task's copy of its key lives: ``config/secrets/<task>.google-key.json``."""
    return (paths or store.paths()).secrets_dir / f"{task_name}{KEY_SUFFIX}"


def install_key(task_name: str, path: str | Path, paths: store.Paths | None = None) -> ServiceAccountKey:
    """Validate ``path`` and copy it into the secrets area (0600 in a 0700 directory); the copy is returned."""
    source = Path(path).expanduser()
    data = _read(path, source)
    parse_key(data, source)
    target = secret_key_path(task_name, paths)
    if not target.exists() or target.read_bytes() != data:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(target.parent, 0o700)
        store.atomic_write(target, data, mode=0o600)
    return parse_key(data, target)


def task_key(task_name: str, key_file: str, paths: store.Paths | None = None) -> ServiceAccountKey:
    """The key a task runs with: the configured file (copied into the secrets area when it changed), or
    the secrets copy alone when the downloaded file has been deleted since."""
    configured = Path(key_file).expanduser() if key_file.strip() else None
    if configured is not None and configured.exists():
        return install_key(task_name, configured, paths)
    copy = secret_key_path(task_name, paths)
    if not copy.exists():
        return load_key(key_file)  # raises: no file set, or the configured file does not exist
    mode = copy.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{copy} can be read by other users (mode {stat.S_IMODE(mode):04o}); mailmig-tui refuses to use it. "
            f"Fix: chmod 600 {copy}"
        )
    return load_key(copy)


def credentials(key: ServiceAccountKey, user: str) -> Any:
    """google-auth credentials for ``gmail.readonly`` acting as ``user`` (domain-wide delegation)."""
    from google.oauth2 import service_account

    try:
        creds = service_account.Credentials.from_service_account_info(key.info, scopes=[SCOPE])
    except (ValueError, KeyError) as exc:
        raise KeyFileError(
            f"{key.path}: the private key cannot be used ({type(exc).__name__}); create a new key"
        ) from None
    return creds.with_subject(user)


def explain_refresh_error(exc: Exception, key: ServiceAccountKey, user: str) -> tuple[bool, str]:
    """(transient, sentence) for a google-auth RefreshError from the token endpoint."""
    data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    error = str(data.get("error", ""))
    description = str(data.get("error_description", "") or (exc.args[0] if exc.args else ""))
    text = f"{error}: {description}".casefold()
    if getattr(exc, "retryable", False):
        return True, f"Google's token service is unavailable for {user} ({description or error}); try again later"
    if error == "unauthorized_client" or "unauthorized_client" in text:
        return False, (
            f"Google refused to let the service account act as {user}: domain-wide delegation is not granted "
            f"for client id {key.client_id} and scope {SCOPE} (or not yet in effect, which can take up to 24 hours). "
            f"A super admin must {key.delegation_hint()}"
        )
    if "signature" in text:
        return False, (
            f"Google rejected the key {key.client_email} (key id {key.info.get('private_key_id', '?')}): it has been "
            "deleted or disabled; create a new key for the service account and choose it in the task"
        )
    if "iat" in text or "timeframe" in text or "short-lived" in text:
        return False, "Google rejected the token request because this machine's clock is wrong; fix the time (NTP)"
    if error == "invalid_grant" or "invalid_grant" in text:
        return False, (
            f"{user} is not an active account of the Google Workspace domain (unknown, suspended or deleted: "
            f"{description or error}); check the address in the user list"
        )
    if error in ("invalid_client", "disabled_client") or "invalid_client" in text:
        return False, f"the service account {key.client_email} is disabled or deleted ({description or error})"
    return False, f"Google refused a token for {user}: {description or error or exc}"
