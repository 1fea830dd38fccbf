"""The one protocol every source (IMAP, Gmail API, Microsoft Graph) implements for the engine.

The engine asks a source, per account: its folders (as :class:`RemoteFolder` with special-use
attributes), a cheap change marker per folder, the messages of a folder that pass the date
filters and are not yet known, and the raw octets of messages in batches. Nothing else.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from mailmig_tui.engine.folders import RemoteFolder
from mailmig_tui.engine.model import Filters, User
from mailmig_tui.engine.model import Source as SourceSettings
from mailmig_tui.engine.skips import SKIP_EXISTING as SKIP_EXISTING  # the sources' own names for them
from mailmig_tui.engine.skips import SKIP_TOO_BIG as SKIP_TOO_BIG
from mailmig_tui.engine.skips import SKIP_TOO_NEW as SKIP_TOO_NEW
from mailmig_tui.engine.skips import SKIP_TOO_OLD as SKIP_TOO_OLD


@dataclass(frozen=True)
class FolderStatus:
    """A folder's identity and change marker: the same marker twice means nothing new to look at."""

    validity: str
    marker: str
    messages: int
    uidnext: int = 0  # IMAP: the UID the next message will get (0: unknown, or not IMAP)


@dataclass(frozen=True, slots=True)
class MessageMeta:
    id: str
    size: int
    internaldate: dt.datetime
    flags: tuple[str, ...] = ()
    message_id: str | None = None


@dataclass
class Listing:
    """The messages of a folder still to consider, and the ones the source filtered out, by reason."""

    messages: list[MessageMeta] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    # The listed sizes are upper bounds, not sizes: the size filter waits for Fetched.meta.
    sizes_are_bounds: bool = False


@dataclass(frozen=True)
class Fetched:
    id: str
    raw: bytes | None  # None: the message vanished from the source meanwhile
    # A source that lists messages before knowing them exactly (no per-message call while listing)
    # says here what the download taught: the exact size, date, flags and Message-ID, replacing the
    # listed ones; and ``skip``, a reason when the message turns out to be outside the filters.
    meta: MessageMeta | None = None
    skip: str | None = None


class FolderRefused(Exception):
    """A server refused one folder (the destination would not CREATE it, the source would not open
    it): that folder fails alone, for this reason (``str()``), and every other folder is copied."""


class Source(Protocol):
    """One account at the source. A source class may set ``max_streams`` (default 1): how many
    instances of it may copy different folders of one account at once (IMAP: separate connections;
    the Gmail and Graph quotas are per mailbox, so their sources keep one). ``status`` and
    ``list_messages`` raise :class:`FolderRefused` when the server refuses that one folder."""

    prefix: str
    """The path prefix to strip from folder names ("" if none)."""

    def list_folders(self) -> list[RemoteFolder]: ...

    def status(self, folder: RemoteFolder) -> FolderStatus: ...

    def list_messages(self, folder: RemoteFolder, status: FolderStatus, known: set[str], filters: Filters) -> Listing:
        """Messages not in ``known`` that pass the date filters (server-side where possible)."""
        ...

    def fetch(self, folder: RemoteFolder, ids: list[str]) -> list[Fetched]:
        """The raw messages, never changing anything at the source (no \\Seen)."""
        ...

    def close(self) -> None: ...


def identity_of(source: SourceSettings, user: User) -> str:
    """The source an account's state is bound to: another server or tenant means other mail."""
    account = user.source.strip().casefold()
    if source.type == "imap":
        return f"imap://{source.host.casefold()}:{source.port}/{account}"
    if source.type == "google":
        return f"google:{account}"
    return f"microsoft365:{source.tenant.casefold()}/{account}"


def fingerprint_of(meta: MessageMeta, raw: bytes | None = None) -> str:
    """Identity of a message across servers: Message-ID + received time + size, else a content hash.

    Used to recognise mail already at the destination (before the first run, or after a crash
    between APPEND and the state commit); duplicates inside one folder are matched by count.
    Once the octets are known their length counts (with CRLF line ends, as IMAP's RFC822.SIZE),
    not the listed size: Graph and Gmail only list an estimate.
    """
    if meta.message_id:
        when = meta.internaldate.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")
        size = meta.size if raw is None or len(raw) == meta.size else _crlf_size(raw)
        key = f"{meta.message_id.strip()}|{when}|{size}"
        return "m:" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:40]
    if raw is None:
        return ""
    return "h:" + hashlib.sha256(raw).hexdigest()[:40]


def _crlf_size(raw: bytes) -> int:
    """The size IMAP would report (RFC822.SIZE counts CRLF line ends) of octets that may use bare LF."""
    return len(raw) + raw.count(b"\n") - raw.count(b"\r\n")


def date_window(filters: Filters) -> tuple[dt.date | None, dt.date | None]:
    """(first kept day, first skipped day after the window): both boundary days are kept."""
    since = filters.skip_before
    until = filters.skip_after + dt.timedelta(days=1) if filters.skip_after else None
    return since, until


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from an HTTP Retry-After value (delta-seconds or an HTTP date), if any."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
