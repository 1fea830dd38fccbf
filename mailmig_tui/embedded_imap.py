"""A throwaway IMAP server on 127.0.0.1 (pymap, in-memory) for the demo and the test bed.

``EmbeddedImapServer(root, users={...}).start()`` runs ``python -m mailmig_tui.embedded_imap CONFIG``:
pymap's own ``main()`` with its in-memory ``dict`` backend holding several users plus an admin user
that may act for any of them (SASL PLAIN with an authorization identity). Mail lives as long as the
process. pymap comes from the optional ``demo`` extra (``pip install 'mailmig-tui[demo]'``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

HOST = "127.0.0.1"
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3
BACKEND_NAME = "mailmig-dict"


class EmbeddedServerError(RuntimeError):
    """The server did not start or stop as asked."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_greeting(host: str, port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until a TCP connect gets an ``* OK`` greeting (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise EmbeddedServerError(f"the server exited with status {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=1.0) as s:
                greeting = s.recv(200)
            if greeting.startswith(b"* OK"):
                return
            last = greeting.decode(errors="replace")
        except OSError as exc:
            last = str(exc)
        time.sleep(0.02)
    raise EmbeddedServerError(f"no IMAP greeting on {host}:{port} within {timeout:.0f} s ({last})")


class EmbeddedImapServer:
    host = HOST
    separator = "/"

    def __init__(
        self,
        root: Path | str,
        *,
        users: Mapping[str, str] | None = None,
        master_user: str = "mailmig-admin",
        master_password: str = "masterpass",
    ) -> None:
        self.root = Path(root).resolve()
        self.users: dict[str, str] = dict(users or {})
        self.master_user = master_user
        self.master_password = master_password
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "imap-server.log"

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self) -> Self:
        if self._process is not None:
            raise EmbeddedServerError("already started")
        self.root.mkdir(parents=True, exist_ok=True)
        for attempt in range(START_ATTEMPTS):
            self.port = free_port()
            try:
                self._spawn_and_wait()
            except EmbeddedServerError as exc:
                if attempt + 1 == START_ATTEMPTS or "address already in use" not in str(exc).lower():
                    raise
                continue  # the port was taken between free_port() and bind()
            break
        return self

    def _spawn_and_wait(self) -> None:
        config = self.root / "server.json"
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
        env = {**os.environ, "FQDN": "localhost"}  # else every greeting looks up the host's FQDN
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "mailmig_tui.embedded_imap", str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        try:
            wait_for_greeting(self.host, self.port, READY_TIMEOUT, process=self._process)
        except EmbeddedServerError as exc:
            self.stop()
            raise EmbeddedServerError(f"the IMAP server did not start: {exc}\n{self.log_tail()}") from exc

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL after a grace period; always reaped."""
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


def serve(config_path: str) -> None:
    """Child process: pymap's main() with an in-memory backend holding the configured users."""
    from pymap.backend import backends
    from pymap.backend.dict import Config, DictBackend, Identity, Login
    from pymap.main import main
    from pymap.user import UserMetadata
    from pysasl.hashing import Cleartext

    settings: dict[str, Any] = json.loads(Path(config_path).read_text())
    accounts = {**settings["users"], settings["master_user"]: settings["master_password"]}
    master_user = settings["master_user"]

    class UsersDictBackend(DictBackend):
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

    backends.add(BACKEND_NAME, UsersDictBackend)
    sys.argv = [
        "pymap",
        *("--no-service", "managesieve", "--no-service", "admin", "--no-service", "swim"),
        *("--host", HOST, "--port", str(settings["port"]), "--no-tls"),
        BACKEND_NAME,
    ]
    main()


if __name__ == "__main__":
    serve(sys.argv[1])
