"""Shared fixtures: a private MAILMIG_HOME per test, and real IMAP servers on 127.0.0.1.

Servers live under one 0755 directory per session in the system temp dir, not in pytest's
``tmp_path``: that is 0700 and Dovecot's mail processes (uid 5000 when we are root) must
traverse it.  Each server is stopped at teardown even when the test failed; a failed test
gets the server logs' tails printed in its teardown output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.dovecot import DovecotServer
from tests.servers.pymap_server import PymapServer

DEFAULT_USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}

DovecotFactory = Callable[..., DovecotServer]
PymapFactory = Callable[..., PymapServer]

_call_failed = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.stash[_call_failed] = report.failed
    return report


@pytest.fixture(autouse=True)
def mailmig_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point MAILMIG_HOME at a fresh directory so no test touches real config or data."""
    home = tmp_path / "mailmig-home"
    home.mkdir()
    monkeypatch.setenv("MAILMIG_HOME", str(home))
    return home


@pytest.fixture
def timezone_named() -> Iterator[Callable[[str], None]]:
    """``timezone_named("Europe/Berlin")`` makes that the process's local time zone for the test."""
    old = os.environ.get("TZ")

    def apply(name: str) -> None:
        os.environ["TZ"] = name
        time.tzset()

    yield apply
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.fixture(scope="session")
def servers_dir() -> Iterator[Path]:
    """A world-traversable directory for this session's test servers."""
    base = Path(tempfile.mkdtemp(prefix="mailmig-testbed-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _server_factory(request: pytest.FixtureRequest, servers_dir: Path, cls: type[Any]) -> Iterator[Callable[..., Any]]:
    started: list[Any] = []

    def make(**options: Any) -> Any:
        root = Path(tempfile.mkdtemp(prefix=f"{cls.__name__.lower()}-", dir=servers_dir))
        options.setdefault("users", DEFAULT_USERS)
        server = cls(root, **options)
        started.append(server)
        return server.start()

    yield make

    errors: list[Exception] = []
    for server in started:
        if request.node.stash.get(_call_failed, False):
            print(f"--- {type(server).__name__} {server.instance_name} log tail ---\n{server.log_tail()}")
        try:
            server.stop()
        except Exception as exc:  # stop the others first, then report
            errors.append(exc)
        else:
            shutil.rmtree(server.root, ignore_errors=True)
    if errors:
        raise errors[0]


@pytest.fixture
def dovecot_factory(request: pytest.FixtureRequest, servers_dir: Path) -> Iterator[DovecotFactory]:
    """``dovecot_factory(users=..., separator="/", ssl=False, ...)`` -> a started DovecotServer."""
    yield from _server_factory(request, servers_dir, DovecotServer)


@pytest.fixture
def dovecot(dovecot_factory: DovecotFactory) -> DovecotServer:
    """A Dovecot with alice/bob/carol (passwords "alice-pw", ...), separator "/", no TLS."""
    return dovecot_factory()


@pytest.fixture
def pymap_factory(request: pytest.FixtureRequest, servers_dir: Path) -> Iterator[PymapFactory]:
    """``pymap_factory(users=...)`` -> a started PymapServer."""
    yield from _server_factory(request, servers_dir, PymapServer)


@pytest.fixture
def pymap_server(pymap_factory: PymapFactory) -> PymapServer:
    """A pymap with alice/bob/carol (passwords "alice-pw", ...)."""
    return pymap_factory()
