"""pymap (PyPI, pure-Python asyncio IMAP server) as a second, non-Dovecot migration SOURCE.

``PymapServer(root, users={...}).start()`` runs ``python -m tests.servers.pymap_server
<root>/pymap.json`` as a
subprocess: pymap's own ``main()`` with its in-memory ``dict`` backend, subclassed to hold
several users (the stock CLI knows one ``--demo-user``).  Mail persists across connections
for the life of the process (not across ``restart``); users are fixed at start.

Why the dict backend and not ``maildir``: pymap 0.36.7's maildir backend rewrites CRLF to LF
(Python's ``mailbox.Maildir``), so bodies are not byte-exact, drops keywords that are not
pre-declared in ``dovecot-keywords``, and crashes (``* BYE [SERVERBUG]``, connection lost)
on CREATE of a nested name whose parent is missing.  The dict backend stores exact bytes,
keywords and the INTERNALDATE with its zone offset.

What pymap 0.36.7 offers, as measured against this setup:
- CAPABILITY before login: ``IMAP4rev1 LITERAL+ ID AUTH=PLAIN AUTH=LOGIN``; after login also
  ``BINARY UIDPLUS MOVE CHILDREN APPENDLIMIT=1000000000 IDLE OBJECTID MULTIAPPEND``.
- No NAMESPACE (imapclient's ``namespace()`` raises CapabilityError), no SPECIAL-USE (no
  special-use attributes at all; ``LIST ... RETURN (SPECIAL-USE)`` is ``BAD``), no
  LIST-EXTENDED/LIST-STATUS, ENABLE, CONDSTORE/QRESYNC, ESEARCH, COMPRESS, UNSELECT or QUOTA.
- Hierarchy separator ``/``; names are stored as given (modified UTF-7 on the wire).
- CREATE of ``A/B`` without ``A`` works with this backend; ``A`` is then a \\Noselect
  placeholder (``seed`` creates parents as real folders by default).
- UIDs start at 101 in a new folder; UIDVALIDITY is random per folder; \\Recent is set.
- INTERNALDATE is kept exactly, zone offset included, also after 2038 (Dovecot clamps it).
- imapclient sends a command and its literal in separate writes: without TCP_NODELAY each
  APPEND/FETCH against pymap stalls ~40 ms on delayed ACK (``mailbox.connect`` sets it).
- Without ``--no-tls`` pymap refuses LOGIN before STARTTLS, so this runs plaintext only.
- Master/admin login: not ``user*admin`` but SASL PLAIN with an authorization identity,
  ``AUTHENTICATE PLAIN "user\\0mailmig-admin\\0masterpass"`` (imapclient ``plain_login``); the
  master user has pymap's ``admin`` role.  ``login(client, user, master=True)`` does this.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from imapclient import IMAPClient

from tests.servers.dovecot import ServerStartError, free_port, wait_for_greeting

HOST = "127.0.0.1"
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3
BACKEND_NAME = "mailmig-test-dict"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class PymapError(RuntimeError):
    """The pymap subprocess did not start or stop as asked."""


class PymapServer:
    """pymap on 127.0.0.1 with fixed users; ``start()``/``stop()`` or use as a context manager."""

    host = HOST
    separator = "/"
    imaps_port: int | None = None
    cert_path: Path | None = None

    def __init__(
        self,
        root: Path | str,
        *,
        users: Mapping[str, str] | None = None,
        master_user: str = "mailmig-admin",
        master_password: str = "masterpass",
        name: str | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.users: dict[str, str] = dict(users or {})
        self.master_user = master_user
        self.master_password = master_password
        self.instance_name = f"mailmig-pymap-{name or secrets.token_hex(4)}"
        self.port = 0
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "pymap.log"

    def login(self, client: IMAPClient, user: str, password: str | None = None, *, master: bool = False) -> None:
        """Log ``client`` in as ``user``: own password, or the admin user on its behalf."""
        if master:
            client.plain_login(self.master_user, password or self.master_password, authorization_identity=user)
        else:
            client.login(user, password if password is not None else self.users[user])

    def start(self) -> Self:
        if self._process is not None:
            raise PymapError("already started")
        began = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        for attempt in range(START_ATTEMPTS):
            self.port = free_port()
            try:
                self._spawn_and_wait()
            except PymapError as exc:
                if attempt + 1 == START_ATTEMPTS or "address already in use" not in str(exc).lower():
                    raise
                continue  # a port was taken between free_port() and bind()
            break
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """SIGTERM (pymap's clean shutdown), SIGKILL after a grace period; always reaped."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT / 2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT / 2)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _spawn_and_wait(self) -> None:
        config = self.root / "pymap.json"
        config.write_text(
            json.dumps(
                {
                    "port": self.port,
                    "users": self.users,
                    "master_user": self.master_user,
                    "master_password": self.master_password,
                }
            )
        )
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
            "FQDN": "localhost",  # else every greeting does a socket.getfqdn() lookup
        }
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tests.servers.pymap_server", str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        try:
            wait_for_greeting(self.host, self.port, READY_TIMEOUT, process=self._process)
        except ServerStartError as exc:
            self.stop()
            raise PymapError(f"pymap did not start: {exc}\n{self.log_tail()}") from exc


def _serve(config_path: str) -> None:
    """Child process: run pymap's main() with a dict backend that holds our users."""
    from pymap.backend import backends
    from pymap.backend.dict import Config, DictBackend, Identity, Login
    from pymap.main import main
    from pymap.user import UserMetadata
    from pysasl.hashing import Cleartext

    settings: dict[str, Any] = json.loads(Path(config_path).read_text())
    accounts = {**settings["users"], settings["master_user"]: settings["master_password"]}
    master_user = settings["master_user"]

    class TestDictBackend(DictBackend):
        @classmethod
        async def init(cls, args: Any, **overrides: Any) -> tuple[DictBackend, Config]:
            # Cleartext: the default PBKDF2 with 500,000 rounds costs ~0.3 s per LOGIN.
            backend, config = await super().init(args, hash_context=Cleartext(), invalid_user_sleep=0.0, **overrides)
            for user, password in accounts.items():
                roles = frozenset({"admin"}) if user == master_user else frozenset()
                identity = Identity(user, backend.login, None, frozenset({"admin"}))
                await identity.set(UserMetadata(config, user, password=password, roles=roles))
            return backend, config

        @classmethod
        async def _add_demo_user(cls, config: Config, login: Login) -> None:
            return None

    backends.add(BACKEND_NAME, TestDictBackend)
    sys.argv = [
        "pymap",
        *("--no-service", "managesieve", "--no-service", "admin", "--no-service", "swim"),
        *("--host", HOST, "--port", str(settings["port"]), "--no-tls"),
        BACKEND_NAME,
    ]
    main()


if __name__ == "__main__":
    _serve(sys.argv[1])
