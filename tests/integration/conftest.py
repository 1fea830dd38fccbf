"""Fixtures for migration tests: a source and a destination server, and a task joining them."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailmig_tui.engine import model, store
from tests.servers import mailbox as mb
from tests.servers.dovecot import DovecotServer

MASTER_PASSWORD = "masterpass"


@dataclass
class Pair:
    src: Any
    dst: DovecotServer

    def task(
        self, users: Sequence[str] = ("alice",), *, name: str = "acme", save: bool = True, **source: Any
    ) -> model.Task:
        src_settings = model.Source(type="imap", host="127.0.0.1", port=self.src.port, security="none", **source)
        task = model.Task(
            name=name,
            source=src_settings,
            users=[model.User(u, u, password=self.src.users.get(u, "")) for u in users],
        )
        if save:
            store.save_task(task, old_name=name if store.task_exists(name) else None)
        return task

    def settings(self, *, save: bool = True) -> model.Settings:
        settings = model.Settings(
            model.Destination(host="127.0.0.1", port=self.dst.port, security="none", password=MASTER_PASSWORD)
        )
        if save:
            store.save_settings(settings)
        return settings


@pytest.fixture
def pair(dovecot_factory: Callable[..., DovecotServer], mailmig_home: Path) -> Pair:
    """Two private Dovecots: a source (alice, bob, carol) and a destination with special-use folders."""
    src = dovecot_factory(name="src")
    dst = dovecot_factory(name="dst", autocreate=True)
    return Pair(src, dst)


def when(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def message(n: int, *, subject: str = "", message_id: bool = True, body: bytes = b"", date: str = "") -> bytes:
    """A small RFC 5322 message, different for each ``n``."""
    headers = [b"From: Sender %d <s%d@example.org>" % (n, n), b"To: alice@example.org"]
    headers.append(b"Subject: " + (subject.encode() if subject else b"message %d" % n))
    headers.append(b"Date: " + (date.encode() if date else b"Mon, 15 Jan 2024 09:30:00 +0000"))
    if message_id:
        headers.append(b"Message-ID: <msg-%d@example.org>" % n)
    return b"\r\n".join(headers) + b"\r\n\r\n" + (body or b"Body of message %d.\r\n" % n)


def cpython_email_corpus() -> list[Path]:
    """CPython's test_email sample messages (msg_*.txt), from the running Python or Debian's test suite."""
    candidates = [
        Path(sys.prefix)
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "test"
        / "test_email"
        / "data",
        Path(f"/usr/lib/python{sys.version_info.major}.{sys.version_info.minor}/test/test_email/data"),
        Path("/usr/lib/python3/test/test_email/data"),
    ]
    for directory in candidates:
        files = sorted(directory.glob("msg_*.txt"))
        if files:
            return files
    raise RuntimeError(
        "CPython's test_email data was not found; install it (Debian: apt-get install libpython3.11-testsuite)"
    )


def crlf(raw: bytes) -> bytes:
    """IMAP servers store lines ending in CRLF; normalise bare LFs so the seed is what is compared."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def contents(server: Any, user: str) -> dict[str, list[tuple[bytes, tuple[str, ...], dt.datetime]]]:
    return mb.contents(mb.snapshot(server, user))
