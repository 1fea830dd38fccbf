"""pymap (PyPI, pure-Python asyncio IMAP server) as a second, non-Dovecot migration SOURCE.

``PymapServer(root, users={...}).start()`` runs the product's embedded server
(``mailmig_tui.embedded_imap``, also used by ``mailmig-tui demo``) as a subprocess: pymap's own
``main()`` with its in-memory ``dict`` backend, subclassed to hold several users (the stock CLI
knows one ``--demo-user``).  Mail persists across connections
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

import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from imapclient import IMAPClient

from mailmig_tui.embedded_imap import EmbeddedImapServer, EmbeddedServerError

PymapError = EmbeddedServerError


class PymapServer(EmbeddedImapServer):
    """pymap on 127.0.0.1 with fixed users; ``start()``/``stop()`` or use as a context manager."""

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
        super().__init__(root, users=users, master_user=master_user, master_password=master_password)
        self.instance_name = f"mailmig-pymap-{name or secrets.token_hex(4)}"
        self.startup_seconds: float | None = None

    def login(self, client: IMAPClient, user: str, password: str | None = None, *, master: bool = False) -> None:
        """Log ``client`` in as ``user``: own password, or the admin user on its behalf."""
        if master:
            client.plain_login(self.master_user, password or self.master_password, authorization_identity=user)
        else:
            client.login(user, password if password is not None else self.users[user])

    def start(self) -> Self:
        began = time.monotonic()
        super().start()
        self.startup_seconds = time.monotonic() - began
        return self
