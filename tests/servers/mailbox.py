"""Put mail into a test IMAP server and read it back exactly, with imapclient.

Folder names here are *logical*: unicode, with "/" as the hierarchy separator whatever the
server uses ("." on a Maildir++ Dovecot); they are translated on the way in and out, and
imapclient's ``folder_encode`` does the modified UTF-7.  Pass names as ``str``: imapclient
encodes bytes names a second time ("Entw&APw-rfe" becomes "Entw&-APw-rfe").

Reading never changes the mailbox: EXAMINE (read-only SELECT) and BODY.PEEK[].

INTERNALDATEs are tz-aware datetimes and compare as instants: Dovecot keeps the instant but
answers in its own zone, pymap keeps the zone given at APPEND.  Dovecot 2.3 cannot store a
date more than a few hours in the future or before 1970 (see ``dovecot.py``).
"""

from __future__ import annotations

import socket
import ssl as ssl_module
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from imapclient import IMAPClient

LOGICAL_SEPARATOR = "/"
TIMEOUT = 10.0
SPECIAL_USE = frozenset({"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"})


class ImapServer(Protocol):
    """What the helpers need from DovecotServer / PymapServer."""

    host: str
    port: int
    imaps_port: int | None
    cert_path: Path | None
    users: dict[str, str]

    def login(self, client: IMAPClient, user: str, password: str | None = None, *, master: bool = False) -> None: ...


@dataclass(frozen=True)
class Msg:
    """A message to APPEND: exact bytes, flags/keywords, and a tz-aware INTERNALDATE."""

    raw: bytes
    flags: tuple[str | bytes, ...] = ()
    internaldate: datetime = datetime(2024, 1, 15, 9, 30, tzinfo=UTC)

    def __post_init__(self) -> None:
        if self.internaldate.tzinfo is None:
            raise ValueError("internaldate must be timezone-aware")


@dataclass(frozen=True)
class Stored:
    """A message as the server holds it; flags sorted, without \\Recent."""

    raw: bytes
    flags: tuple[str, ...]
    internaldate: datetime
    uid: int

    @property
    def content(self) -> tuple[bytes, tuple[str, ...], datetime]:
        """Everything but the UID, for comparing a source with a destination."""
        return (self.raw, self.flags, self.internaldate)


@dataclass(frozen=True)
class Folder:
    """A LISTed folder: logical name, LIST attributes, and whether it is subscribed."""

    name: str
    flags: frozenset[str] = field(default_factory=frozenset)
    subscribed: bool = False

    @property
    def selectable(self) -> bool:
        return not self.flags & {"\\Noselect", "\\NonExistent"}

    @property
    def special_use(self) -> str | None:
        """The RFC 6154 attribute (e.g. ``\\Sent``), if any."""
        uses = sorted(self.flags & SPECIAL_USE)
        return uses[0] if uses else None


Snapshot = dict[str, list[Stored]]


def connect(
    server: ImapServer,
    user: str,
    *,
    password: str | None = None,
    master: bool = False,
    ssl: bool = False,
    starttls: bool = False,
) -> IMAPClient:
    """A logged-in IMAPClient for ``user`` (as the master user on its behalf if ``master``).

    ``ssl`` uses implicit TLS on ``imaps_port``, ``starttls`` upgrades the plain port; both
    verify the server's certificate against its own ``cert_path`` and the name "localhost".
    """
    if ssl or starttls:
        if server.cert_path is None:
            raise ValueError("this server has no TLS certificate")
        context = ssl_module.create_default_context(cafile=str(server.cert_path))
    if ssl:
        if server.imaps_port is None:
            raise ValueError("this server has no IMAPS port")
        client = IMAPClient("localhost", port=server.imaps_port, ssl=True, ssl_context=context, timeout=TIMEOUT)
    else:
        client = IMAPClient(server.host if not starttls else "localhost", port=server.port, ssl=False, timeout=TIMEOUT)
        if starttls:
            client.starttls(context)
    # imapclient writes a command and its literal/CRLF separately: with Nagle on, each APPEND
    # or FETCH waits ~40 ms for the server's delayed ACK (measured against pymap)
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        server.login(client, user, password, master=master)
    except BaseException:
        client.shutdown()
        raise
    client.normalise_times = False  # keep INTERNALDATE's zone: tz-aware datetimes
    return client


def seed(
    server: ImapServer,
    user: str,
    folders: Mapping[str, Sequence[Msg]],
    *,
    create_parents: bool = True,
    subscribe: bool = True,
) -> dict[str, list[int]]:
    """Create the folders (logical names) and APPEND their messages in order.

    Missing parent folders are created as real folders first when ``create_parents``
    (otherwise the server decides, e.g. Dovecot shows a \\Noselect placeholder).  Existing
    folders (INBOX, auto-created special-use ones) are reused.  Returns each folder's new UIDs
    (from APPENDUID; empty if the server lacks UIDPLUS).
    """
    uids: dict[str, list[int]] = {}
    with _session(server, user) as client:
        separator = hierarchy_separator(client)
        existing = {_logical(name, separator) for _, _, name in client.list_folders()}
        for logical in folders:
            chain = _ancestors(logical) if create_parents else []
            for name in [*chain, logical]:
                if name in existing or name.upper() == "INBOX":
                    continue
                client.create_folder(_server_name(name, separator))
                existing.add(name)
                if subscribe:
                    client.subscribe_folder(_server_name(name, separator))
        for logical, messages in folders.items():
            target = _server_name(logical, separator)
            uids[logical] = []
            for msg in messages:
                response = client.append(target, msg.raw, flags=msg.flags, msg_time=msg.internaldate)
                uids[logical].extend(_appenduids(response))
    return uids


def append(server: ImapServer, user: str, wire_name: str, messages: Sequence[Msg]) -> None:
    """APPEND to a folder named as the server spells it, without listing folders first (IMAPClient
    cannot read a LIST holding ``Invoices[2019``, which Dovecot sends unquoted)."""
    with _session(server, user) as client:
        client.folder_encode = False
        for msg in messages:
            client.append(wire_name, msg.raw, flags=msg.flags, msg_time=msg.internaldate)


def raw_list(server: ImapServer, user: str) -> list[bytes]:
    """The untagged LIST lines exactly as the server sends them (``(\\HasNoChildren) "/" INBOX``)."""
    with _session(server, user) as client:
        typ, data = client._imap.list('""', "*")
        assert typ == "OK", data
        return [line for line in data if isinstance(line, bytes)]


def list_folders(server: ImapServer, user: str) -> list[Folder]:
    """All folders with their LIST attributes and subscription state, by logical name."""
    with _session(server, user) as client:
        return _folders(client)


def snapshot(server: ImapServer, user: str, folders: Iterable[str] | None = None) -> Snapshot:
    """Every selectable folder's messages (or those of ``folders``, logical names, without listing
    folders first), sorted by UID, read without changing anything."""
    with _session(server, user) as client:
        separator = hierarchy_separator(client)
        result: Snapshot = {}
        names = list(folders) if folders is not None else [f.name for f in _folders(client) if f.selectable]
        for name in names:
            client.select_folder(_server_name(name, separator), readonly=True)
            uids = sorted(client.search("ALL"))
            messages: list[Stored] = []
            if uids:
                data = client.fetch(uids, ["FLAGS", "INTERNALDATE", "BODY.PEEK[]"])
                for uid in uids:
                    item = data[uid]
                    flags = tuple(sorted(_text(f) for f in item[b"FLAGS"] if _text(f) != "\\Recent"))
                    messages.append(Stored(item[b"BODY[]"], flags, item[b"INTERNALDATE"], uid))
            result[name] = messages
        return result


def contents(snap: Snapshot) -> dict[str, list[tuple[bytes, tuple[str, ...], datetime]]]:
    """A snapshot without UIDs, to compare two servers' mailboxes."""
    return {name: [m.content for m in messages] for name, messages in snap.items()}


def hierarchy_separator(client: IMAPClient) -> str:
    """The server's separator, from ``LIST "" ""``."""
    listing = client.list_folders("", "")
    separator = listing[0][1] if listing else None
    if not separator:
        return LOGICAL_SEPARATOR
    return separator.decode() if isinstance(separator, bytes) else separator


@contextmanager
def _session(server: ImapServer, user: str) -> Iterator[IMAPClient]:
    client = connect(server, user)
    try:
        yield client
    finally:
        try:
            client.logout()
        except Exception:
            client.shutdown()


def _folders(client: IMAPClient) -> list[Folder]:
    separator = hierarchy_separator(client)
    subscribed = {name for _, _, name in client.list_sub_folders()}
    return [
        Folder(_logical(name, separator), frozenset(_text(f) for f in flags), name in subscribed)
        for flags, _, name in client.list_folders()
    ]


def _server_name(logical: str, separator: str) -> str:
    if separator == LOGICAL_SEPARATOR:
        return logical
    parts = logical.split(LOGICAL_SEPARATOR)
    if any(separator in part for part in parts):
        raise ValueError(f"{logical!r} cannot be expressed with separator {separator!r}")
    return separator.join(parts)


def _logical(name: str, separator: str) -> str:
    if separator == LOGICAL_SEPARATOR:
        return name
    parts = name.split(separator)
    if any(LOGICAL_SEPARATOR in part for part in parts):
        raise ValueError(f"server folder {name!r} contains the logical separator {LOGICAL_SEPARATOR!r}")
    return LOGICAL_SEPARATOR.join(parts)


def _ancestors(logical: str) -> list[str]:
    parts = logical.split(LOGICAL_SEPARATOR)
    return [LOGICAL_SEPARATOR.join(parts[:i]) for i in range(1, len(parts))]


def _appenduids(response: bytes) -> Iterable[int]:
    # b"[APPENDUID 1795780269 7] Append completed." (one message, so one UID)
    if not response.startswith(b"[APPENDUID "):
        return []
    uid_set = response[1:].split(b"]", 1)[0].split()[2]
    return [int(uid_set)] if uid_set.isdigit() else []


def _text(value: str | bytes) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value
