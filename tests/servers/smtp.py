"""A real SMTP server (aiosmtpd) on 127.0.0.1 for notification tests; it keeps what it receives."""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.servers.dovecot import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self.arrived:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg))
            self.arrived.notify_all()
        return "250 OK"


class SmtpServer:
    """``with SmtpServer() as smtp:`` → ``smtp.port``, ``smtp.received``, ``smtp.wait_for(n)``."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.port = free_port()
        self._handler = _Handler()
        self._controller = Controller(self._handler, hostname=self.host, port=self.port)

    @property
    def received(self) -> list[Received]:
        return self._handler.received

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self._handler.arrived:
            self._handler.arrived.wait_for(lambda: len(self._handler.received) >= count, timeout)
        return list(self._handler.received)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
