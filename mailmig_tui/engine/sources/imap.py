"""IMAP source: read-only (EXAMINE, BODY.PEEK), date filters as server-side SEARCH, bulk metadata."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from imapclient import IMAPClient
from imapclient.response_parser import parse_fetch_response, parse_response

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
STATUS_ITEMS = ("UIDVALIDITY", "UIDNEXT", "MESSAGES")
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


def fetch_meta_range(client: IMAPClient, uid_range: str) -> list[MessageMeta]:
    """Metadata of every message in a UID range such as ``1:*`` (IMAPClient.fetch only takes UID lists)."""
    imap = client._imap
    tag = imap._command("UID", "FETCH", uid_range, "(" + " ".join(i.decode() for i in _META_ITEMS) + ")")
    typ, data = imap._command_complete("FETCH", tag)
    if text_of(typ).upper() != "OK":
        raise imapconn.ImapError("protocol", f"FETCH refused: {' '.join(text_of(x) for x in data if x)}")
    _typ, data = imap._untagged_response(typ, data, "FETCH")
    response = parse_fetch_response(data, client.normalise_times, True)
    metas = (meta_of(uid, item) for uid, item in sorted(response.items()))
    return [m for m in metas if m is not None]


def _status_of(values: dict) -> FolderStatus:
    get = {text_of(k).upper(): v for k, v in values.items()}.get
    uidnext, messages = get("UIDNEXT", 0), get("MESSAGES", 0)
    return FolderStatus(str(get("UIDVALIDITY", 0)), f"{uidnext}/{messages}", int(messages))


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

    max_streams = 4  # connections per account the copy may use at once (one folder each)

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
        self._status_cache: dict[str, FolderStatus] = {}
        self._all_mail: str | None = None

    def _namespace_prefix(self) -> str:
        if not self._client.has_capability("NAMESPACE"):
            return ""
        personal = self._client.namespace().personal
        if not personal:
            return ""
        prefix, _sep = personal[0]
        return text_of(prefix)

    def _list_with_status(self) -> list[tuple]:
        """LIST-STATUS (RFC 5819): every folder and its STATUS in one round trip instead of one per folder."""
        imap = self._client._imap
        returns = "SPECIAL-USE STATUS" if self._client.has_capability("SPECIAL-USE") else "STATUS"
        typ, data = imap._simple_command("LIST", '""', '"*"', "RETURN", f"({returns} ({' '.join(STATUS_ITEMS)}))")
        if text_of(typ).upper() != "OK":
            raise imapconn.ImapError("protocol", f"LIST refused: {' '.join(text_of(x) for x in data if x)}")
        _typ, listing = imap._untagged_response(typ, data, "LIST")
        for line in imap.untagged_responses.pop("STATUS", []):
            name, items = parse_response([line])
            values = dict(zip(items[::2], items[1::2], strict=False))
            self._status_cache[text_of(name)] = _status_of(values)
        return self._client._proc_folder_list(listing)

    def list_folders(self) -> list[RemoteFolder]:
        self._status_cache.clear()
        if self._client.has_capability("LIST-STATUS"):
            entries = self._list_with_status()
        else:
            entries = self._client.list_folders()
        folders = [RemoteFolder.from_imapclient(entry) for entry in entries]
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
        """From the LIST-STATUS of this pass (never newer than what is then listed), else one STATUS."""
        cached = self._status_cache.pop(folder.imap_name, None)
        if cached is not None:
            return cached
        return _status_of(self._client.folder_status(folder.imap_name, [s.encode() for s in STATUS_ITEMS]))

    def _examine(self, folder: RemoteFolder) -> None:
        if self._selected != folder.imap_name:
            self._client.select_folder(folder.imap_name, readonly=True)
            self._selected = folder.imap_name

    def list_messages(self, folder: RemoteFolder, status: FolderStatus, known: set[str], filters: Filters) -> Listing:
        if status.messages == 0:
            return Listing()  # nothing to look at (and some servers refuse "UID FETCH 1:*" on an empty folder)
        self._examine(folder)
        prefetched: list[MessageMeta] | None = None
        if not known and not (self._gmail and folder.imap_name == self._all_mail):
            # Nothing known yet: the metadata of every message, in one command, without a SEARCH first.
            prefetched = fetch_meta_range(self._client, "1:*")
            unknown = {int(m.id) for m in prefetched}
        else:
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
        if prefetched is not None:
            return Listing([m for m in prefetched if int(m.id) in unknown], +skipped)
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
