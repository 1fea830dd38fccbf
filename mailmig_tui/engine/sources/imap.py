"""IMAP source: read-only (EXAMINE, BODY.PEEK), date filters as server-side SEARCH, bulk metadata."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from imapclient import IMAPClient

from mailmig_tui.engine import imapconn
from mailmig_tui.engine.folders import RemoteFolder
from mailmig_tui.engine.model import Filters, Source, User
from mailmig_tui.engine.sources.base import (
    SKIP_TOO_NEW,
    SKIP_TOO_OLD,
    Fetched,
    FolderStatus,
    Listing,
    MessageMeta,
    date_window,
)

META_CHUNK = 2000
# Gmail labels that do not put a message in a folder of its own (views, not places).
GMAIL_VIEW_LABELS = {"\\important", "\\starred"}
_META_ITEMS = [b"RFC822.SIZE", b"INTERNALDATE", b"FLAGS", b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]
_HEADER_KEY = b"BODY[HEADER.FIELDS (MESSAGE-ID)]"


def text_of(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def message_id_of(header_block: bytes | None) -> str | None:
    """The Message-ID from a ``HEADER.FIELDS (MESSAGE-ID)`` block (unfolded), or None."""
    if not header_block:
        return None
    text = header_block.decode("utf-8", "replace").replace("\r\n ", " ").replace("\r\n\t", " ")
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "message-id" and value.strip():
            return " ".join(value.split())
    return None


def meta_of(uid: int, data: dict[bytes, object]) -> MessageMeta | None:
    """MessageMeta from one FETCH response of ``_META_ITEMS`` (None if the server left items out)."""
    size = data.get(b"RFC822.SIZE")
    when = data.get(b"INTERNALDATE")
    if not isinstance(size, int) or not isinstance(when, dt.datetime):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    flags = tuple(text_of(f) for f in data.get(b"FLAGS", ()))  # type: ignore[attr-defined]
    header = data.get(_HEADER_KEY)
    return MessageMeta(
        id=str(uid),
        size=size,
        internaldate=when,
        flags=flags,
        message_id=message_id_of(header if isinstance(header, bytes) else None),
    )


def archived_only(labels: tuple[bytes | str, ...]) -> bool:
    """True for a Gmail message that sits in All Mail only: no label puts it in any other folder."""
    return all(text_of(label).lower() in GMAIL_VIEW_LABELS for label in labels)


def fetch_meta(client: IMAPClient, uids: list[int]) -> list[MessageMeta]:
    """Metadata of many messages in few round trips (chunks of ``META_CHUNK`` UIDs)."""
    out: list[MessageMeta] = []
    for start in range(0, len(uids), META_CHUNK):
        chunk = uids[start : start + META_CHUNK]
        response = client.fetch(chunk, _META_ITEMS)
        for uid in chunk:
            data = response.get(uid)
            meta = meta_of(uid, data) if data else None
            if meta is not None:
                out.append(meta)
    return out


class ImapSource:
    """One source account over IMAP. The mailbox is only ever EXAMINEd; bodies are fetched with BODY.PEEK."""

    def __init__(self, source: Source, user: User, *, timeout: float = 60.0) -> None:
        self._client = imapconn.open_source(source, user, timeout=timeout)
        self._client.normalise_times = False
        self._client.folder_encode = False  # names travel as the server spells them (RemoteFolder.imap_name)
        self.prefix = source.path_prefix or self._namespace_prefix()
        self._selected: str | None = None
        # Gmail (X-GM-EXT-1): All Mail is a view of every message; it is read as the Archive folder,
        # keeping only the messages no label places elsewhere (archived mail), so nothing is lost
        # and nothing is copied twice.
        self._gmail = self._client.has_capability("X-GM-EXT-1")
        self._all_mail: str | None = None

    def _namespace_prefix(self) -> str:
        if not self._client.has_capability("NAMESPACE"):
            return ""
        personal = self._client.namespace().personal
        if not personal:
            return ""
        prefix, _sep = personal[0]
        return text_of(prefix)

    def list_folders(self) -> list[RemoteFolder]:
        folders = [RemoteFolder.from_imapclient(entry) for entry in self._client.list_folders()]
        if not self._gmail:
            return folders
        out = []
        for f in folders:
            if f.special_use == "\\All":
                self._all_mail = f.imap_name
                f = RemoteFolder(f.name, f.delimiter, (f.flags - {"\\All", "\\all"}) | {"\\Archive"}, f.wire_name)
            out.append(f)
        return out

    def status(self, folder: RemoteFolder) -> FolderStatus:
        st = self._client.folder_status(folder.imap_name, [b"UIDVALIDITY", b"UIDNEXT", b"MESSAGES"])
        uidnext = st.get(b"UIDNEXT", 0)
        messages = st.get(b"MESSAGES", 0)
        return FolderStatus(str(st.get(b"UIDVALIDITY", 0)), f"{uidnext}/{messages}", int(messages))

    def _examine(self, folder: RemoteFolder) -> None:
        if self._selected != folder.imap_name:
            self._client.select_folder(folder.imap_name, readonly=True)
            self._selected = folder.imap_name

    def list_messages(self, folder: RemoteFolder, status: FolderStatus, known: set[str], filters: Filters) -> Listing:
        self._examine(folder)
        unknown = {uid for uid in self._client.search("ALL") if str(uid) not in known}
        skipped: Counter[str] = Counter()
        since, until = date_window(filters)
        if unknown and since:
            too_old = unknown.intersection(self._client.search(["BEFORE", since]))
            skipped[SKIP_TOO_OLD] += len(too_old)
            unknown -= too_old
        if unknown and until:
            too_new = unknown.intersection(self._client.search(["SINCE", until]))
            skipped[SKIP_TOO_NEW] += len(too_new)
            unknown -= too_new
        if self._gmail and folder.imap_name == self._all_mail and unknown:
            labels = self._client.fetch(sorted(unknown), [b"X-GM-LABELS"])
            unknown = {uid for uid in unknown if archived_only(tuple(labels.get(uid, {}).get(b"X-GM-LABELS", ())))}
        return Listing(fetch_meta(self._client, sorted(unknown)), +skipped)

    def fetch(self, folder: RemoteFolder, ids: list[str]) -> list[Fetched]:
        self._examine(folder)
        uids = [int(i) for i in ids]
        response = self._client.fetch(uids, [b"BODY.PEEK[]"])
        out = []
        for uid in uids:
            raw = response.get(uid, {}).get(b"BODY[]")
            out.append(Fetched(str(uid), raw if isinstance(raw, bytes) else None))
        return out

    def close(self) -> None:
        imapconn.close_quietly(self._client)
