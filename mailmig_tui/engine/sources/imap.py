"""IMAP source: read-only (EXAMINE, BODY.PEEK), date filters as server-side SEARCH, bulk metadata."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError
from imapclient.response_parser import parse_fetch_response

from mailmig_tui.engine import fetch_parse, imapconn
from mailmig_tui.engine.fetch_parse import FetchItems
from mailmig_tui.engine.folders import RemoteFolder, parse_list_response, parse_status_response
from mailmig_tui.engine.model import Filters, Source, User
from mailmig_tui.engine.sources.base import (
    SKIP_TOO_NEW,
    SKIP_TOO_OLD,
    Fetched,
    FolderRefused,
    FolderStatus,
    Listing,
    MessageMeta,
    date_window,
)

META_CHUNK = 2000  # UIDs per FETCH when they are listed one by one
RANGE_CHUNK = 20_000  # messages per FETCH (about) when a folder is listed by UID ranges
PIPELINE_FOLDERS = 50  # folders whose first listing is asked for in one round trip
STATUS_ITEMS = ("UIDVALIDITY", "UIDNEXT", "MESSAGES")
# Gmail labels that do not put a message in a folder of its own (views, not places).
GMAIL_VIEW_LABELS = {"\\important", "\\starred"}
_META_ITEMS = [b"UID", b"RFC822.SIZE", b"INTERNALDATE", b"FLAGS", b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]


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


def meta_of(items: FetchItems) -> MessageMeta | None:
    """MessageMeta from one message's items of ``_META_ITEMS`` (None if the server left items out)."""
    if items.uid is None or items.size is None or items.internaldate is None:
        return None
    when = items.internaldate
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return MessageMeta(
        id=str(items.uid),
        size=items.size,
        internaldate=when,
        flags=items.flags or (),
        message_id=message_id_of(items.section),
    )


def archived_only(labels: tuple[bytes | str, ...]) -> bool:
    """True for a Gmail message that sits in All Mail only: no label puts it in any other folder."""
    return all(text_of(label).lower() in GMAIL_VIEW_LABELS for label in labels)


def _answer(imap: Any, name: str, tag: bytes) -> tuple[bool, list]:
    """Read a sent command's answer: (OK?, its data); a BAD answer is a refusal like NO, not an
    exception, so that the answers of the commands sent behind it are read too. A dropped
    connection (BYE) is raised: nothing more can be read."""
    try:
        typ, data = imap._command_complete(name, tag)
    except imap.abort:
        raise
    except imap.error as exc:
        return False, [str(exc).encode()]
    return text_of(typ).upper() == "OK", data


@contextmanager
def refusals(what: str) -> Iterator[None]:
    """A server's refusal of a command on one folder (NO, BAD, an answer that cannot be read) as
    FolderRefused("what: the server's words"); a dropped connection passes through (it is retried)."""
    try:
        yield
    except IMAPClientAbortError:
        raise
    except (IMAPClientError, imapconn.ImapError) as exc:
        if isinstance(exc, imapconn.ImapError) and exc.kind != "protocol":
            raise
        raise FolderRefused(f"{what}: {exc}") from None


def list_folders(client: IMAPClient, returns: str = "") -> list[RemoteFolder]:
    """Every folder (``LIST "" "*"``, with ``RETURN (returns)`` if given), read by folders.parse_list_response
    (IMAPClient's reader fails on names such as ``Invoices[2019`` that servers send unquoted)."""
    imap = client._imap
    typ, data = imap._simple_command("LIST", '""', '"*"', *(("RETURN", f"({returns})") if returns else ()))
    if text_of(typ).upper() != "OK":
        raise imapconn.ImapError("protocol", f"LIST refused: {' '.join(text_of(x) for x in data if x)}")
    _typ, listing = imap._untagged_response(typ, data, "LIST")
    try:
        return parse_list_response(listing)
    except ValueError as exc:
        raise imapconn.ImapError("protocol", f"the folder list cannot be read: {exc}") from None


def _send_fetch(
    client: IMAPClient, uids: str, items: Sequence[bytes], examine: str | None = None
) -> tuple[bytes | None, bytes]:
    """Send a ``UID FETCH``, behind an EXAMINE of ``examine`` if given; the tags to read answers by."""
    imap = client._imap
    opened = None
    if examine is not None:
        imap.untagged_responses = {}  # as imaplib's own select() does
        imap.is_readonly = True
        opened = imap._command("EXAMINE", client._normalise_folder(examine))
        imap.state = "SELECTED"  # imaplib sends UID commands in this state only; the server decides
    return opened, imap._command("UID", "FETCH", uids, "(" + " ".join(i.decode() for i in items) + ")")


def uid_fetch(client: IMAPClient, uids: str, items: Sequence[bytes], *, examine: str | None = None) -> list[FetchItems]:
    """One ``UID FETCH`` of ``uids`` (a UID set such as ``1:*`` or ``4,7,9``): each message's items.

    With ``examine`` (a folder's name as the server spells it) the folder is opened read-only in
    the same round trip: EXAMINE and the FETCH go out together and the server runs them in order
    (RFC 3501 5.5). Over a 25 ms link that is one round trip less per folder, in the plan and again
    in the copy. If the folder cannot be opened, the FETCH is refused too and the EXAMINE's error
    is raised (no folder is then open).

    The response is read by fetch_parse, or by IMAPClient's general parser when it holds
    anything fetch_parse does not read.
    """
    imap = client._imap
    opened, tag = _send_fetch(client, uids, items, examine)
    if opened is not None:
        ok, data = _answer(imap, "EXAMINE", opened)
        if not ok:
            imap.state = "AUTH"
            _answer(imap, "FETCH", tag)  # refused as well: no folder is open
            raise IMAPClientError(f"examine failed: {' '.join(text_of(x) for x in data if x)}")
    typ, data = imap._command_complete("FETCH", tag)
    if text_of(typ).upper() != "OK":
        raise imapconn.ImapError("protocol", f"FETCH refused: {' '.join(text_of(x) for x in data if x)}")
    _typ, data = imap._untagged_response(typ, data, "FETCH")
    return _read_items(data)


def _read_items(data: list) -> list[FetchItems]:
    """The messages of an untagged FETCH response, one entry per UID."""
    data = [x for x in data if x is not None]
    parsed = fetch_parse.parse(data)
    if parsed is None:
        parsed = [_items_of(values) for values in parse_fetch_response(data, False, False).values()]
    by_uid: dict[int, FetchItems] = {}
    for entry in parsed:  # a flag change seen meanwhile may come as a second response for a message
        if entry.uid is None:
            continue
        if entry.uid in by_uid:
            by_uid[entry.uid].update(entry)
        else:
            by_uid[entry.uid] = entry
    return list(by_uid.values())


def _items_of(values: dict[bytes, object]) -> FetchItems:
    """FetchItems from IMAPClient's reading of one message (keyed by sequence number, UID inside)."""
    uid, size, when = values.get(b"UID"), values.get(b"RFC822.SIZE"), values.get(b"INTERNALDATE")
    flags = values.get(b"FLAGS")
    section = next((v for k, v in values.items() if k.upper().startswith(b"BODY[")), None)
    return FetchItems(
        uid=uid if isinstance(uid, int) else None,
        size=size if isinstance(size, int) else None,
        internaldate=when if isinstance(when, dt.datetime) else None,
        flags=tuple(text_of(f) for f in flags) if isinstance(flags, tuple | list) else None,
        section=section if isinstance(section, bytes) else None,
    )


def fetch_meta_range(client: IMAPClient, status: FolderStatus, *, examine: str | None = None) -> list[MessageMeta]:
    """Metadata of every message of the selected folder (or of ``examine``, opened with the first
    range: see uid_fetch), by UID ranges of about ``RANGE_CHUNK`` messages each (so a huge folder's
    response is never held whole), in UID order."""
    last = max(status.uidnext - 1, 0)
    # a range wide enough for RANGE_CHUNK messages at the folder's density of UIDs
    step = max(RANGE_CHUNK, RANGE_CHUNK * last // max(status.messages, 1))
    out: list[MessageMeta] = []
    low = 1
    while True:
        final = status.uidnext <= 0 or low + step > last
        high = None if final else low + step - 1
        items = uid_fetch(client, f"{low}:{high or '*'}", _META_ITEMS, examine=examine)
        examine = None
        # "n:*" also answers with the highest UID when it is below n: a range is checked, not trusted
        metas = (meta_of(i) for i in items if i.uid is not None and low <= i.uid <= (high or i.uid))
        out.extend(m for m in metas if m is not None)
        if final:
            break
        low += step
    out.sort(key=lambda m: int(m.id))
    return out


def _status_of(values: dict) -> FolderStatus:
    get = {text_of(k).upper(): v for k, v in values.items()}.get
    uidnext, messages = get("UIDNEXT", 0), get("MESSAGES", 0)
    return FolderStatus(str(get("UIDVALIDITY", 0)), f"{uidnext}/{messages}", int(messages), int(uidnext))


def fetch_meta(client: IMAPClient, uids: list[int]) -> list[MessageMeta]:
    """Metadata of many messages in few round trips (chunks of ``META_CHUNK`` UIDs), in ``uids`` order."""
    out: list[MessageMeta] = []
    for start in range(0, len(uids), META_CHUNK):
        chunk = uids[start : start + META_CHUNK]
        got = {i.uid: i for i in uid_fetch(client, ",".join(map(str, chunk)), _META_ITEMS)}
        for uid in chunk:
            items = got.get(uid)
            meta = meta_of(items) if items is not None else None
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
        self._listed_ahead: dict[str, tuple[FolderStatus, list[MessageMeta]]] = {}

    def _namespace_prefix(self) -> str:
        if not self._client.has_capability("NAMESPACE"):
            return ""
        personal = self._client.namespace().personal
        if not personal:
            return ""
        prefix, _sep = personal[0]
        return text_of(prefix)

    def _list_with_status(self) -> list[RemoteFolder]:
        """LIST-STATUS (RFC 5819): every folder and its STATUS in one round trip instead of one per folder.

        STATUS answers that cannot be read are left out: statuses() then asks for those folders' own.
        """
        returns = "SPECIAL-USE STATUS" if self._client.has_capability("SPECIAL-USE") else "STATUS"
        folders = list_folders(self._client, f"{returns} ({' '.join(STATUS_ITEMS)})")
        try:
            answers = parse_status_response(self._client._imap.untagged_responses.pop("STATUS", []))
        except ValueError:
            answers = []
        for name, values in answers:
            self._status_cache[text_of(name)] = _status_of(values)
        return folders

    def list_folders(self) -> list[RemoteFolder]:
        self._status_cache.clear()
        if self._client.has_capability("LIST-STATUS"):
            folders = self._list_with_status()
        else:
            folders = list_folders(self._client)
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
        (got,) = self.statuses([folder])
        if isinstance(got, FolderRefused):
            raise got
        return got

    def statuses(self, folders: list[RemoteFolder]) -> list[FolderStatus | FolderRefused]:
        """The STATUS of each folder, or why the server refused it, in one round trip: from this
        pass's LIST-STATUS where the server has it, else STATUS commands sent together (groups of
        ``PIPELINE_FOLDERS``) and their answers read in order. Gmail and Exchange have no
        LIST-STATUS: over a 50 ms link an account of 200 folders then costs 0.2 s instead of 10 s
        on every run. A refused folder leaves the connection in step: every answer is read."""
        out: dict[str, FolderStatus | FolderRefused] = {}
        todo = []
        for f in folders:
            cached = self._status_cache.pop(f.imap_name, None)
            if cached is not None:
                out[f.imap_name] = cached
            elif f.imap_name not in out:
                todo.append(f)
        imap = self._client._imap
        items = "(" + " ".join(STATUS_ITEMS) + ")"
        for start in range(0, len(todo), PIPELINE_FOLDERS):
            group = todo[start : start + PIPELINE_FOLDERS]
            sent = [(f, imap._command("STATUS", self._client._normalise_folder(f.imap_name), items)) for f in group]
            for f, tag in sent:
                ok, data = _answer(imap, "STATUS", tag)
                _typ, lines = imap._untagged_response("OK", [None], "STATUS")
                try:
                    answers = parse_status_response(lines) if ok else []
                except ValueError as exc:
                    out[f.imap_name] = FolderRefused(f"the source's STATUS answer cannot be read: {exc}")
                    continue
                if len(answers) != 1:  # refused, or not one STATUS answer
                    why = " ".join(text_of(x) for x in data if x) or "no STATUS answer"
                    out[f.imap_name] = FolderRefused(f"the source refused STATUS: {why}")
                    continue
                out[f.imap_name] = _status_of(answers[0][1])
        return [out[f.imap_name] for f in folders]

    def _examine(self, folder: RemoteFolder) -> None:
        if self._selected != folder.imap_name:
            self._selected = None
            self._client.select_folder(folder.imap_name, readonly=True)
            self._selected = folder.imap_name

    def _to_open(self, folder: RemoteFolder) -> str | None:
        """The folder to EXAMINE along with the next FETCH (None: it is the open one)."""
        if self._selected == folder.imap_name:
            return None
        self._selected = None  # until the EXAMINE has succeeded
        return folder.imap_name

    def prefetch_listings(self, folders: list[tuple[RemoteFolder, FolderStatus]]) -> None:
        """List ahead, in one round trip, the messages of folders listed for the first time.

        Every folder's EXAMINE and UID FETCH go out behind the previous folder's (groups of
        ``PIPELINE_FOLDERS``) and the answers are read in order; list_messages then takes a
        folder's listing from here instead of asking for it. Over a 50 ms link, an account of
        200 folders saves 10 s before its first message is copied. Folders larger than one range
        (``RANGE_CHUNK``), or that cannot be opened, are left to list_messages.
        """
        todo = [
            (f, st)
            for f, st in folders
            if 0 < st.messages <= RANGE_CHUNK and not (self._gmail and f.imap_name == self._all_mail)
        ]
        imap = self._client._imap
        for start in range(0, len(todo), PIPELINE_FOLDERS):
            group = todo[start : start + PIPELINE_FOLDERS]
            if len(group) < 2:
                break  # one folder: list_messages opens it with its FETCH as well
            sent = [(f, st, *_send_fetch(self._client, "1:*", _META_ITEMS, f.imap_name)) for f, st in group]
            self._selected = None
            for f, st, opened, tag in sent:
                ok = opened is not None and _answer(imap, "EXAMINE", opened)[0]
                ok = _answer(imap, "FETCH", tag)[0] and ok
                _typ, data = imap._untagged_response("OK", [None], "FETCH")
                if not ok:
                    imap.state, self._selected = "AUTH", None
                    continue
                imap.state, self._selected = "SELECTED", f.imap_name
                metas = (meta_of(i) for i in _read_items(data))
                self._listed_ahead[f.imap_name] = (st, sorted((m for m in metas if m), key=lambda m: int(m.id)))

    def list_messages(self, folder: RemoteFolder, status: FolderStatus, known: set[str], filters: Filters) -> Listing:
        """FolderRefused when the server will not open or search this folder (the connection stays usable)."""
        with refusals("the source refused to open or read the folder"):
            return self._list_messages(folder, status, known, filters)

    def _list_messages(self, folder: RemoteFolder, status: FolderStatus, known: set[str], filters: Filters) -> Listing:
        if status.messages == 0:
            return Listing()  # nothing to look at (and some servers refuse "UID FETCH 1:*" on an empty folder)
        prefetched: list[MessageMeta] | None = None
        ahead = self._listed_ahead.pop(folder.imap_name, None)
        if not known and not (self._gmail and folder.imap_name == self._all_mail):
            # Nothing known yet: the metadata of every message, without a SEARCH first.
            if ahead is not None and ahead[0] == status:
                prefetched = ahead[1]
            else:
                prefetched = fetch_meta_range(self._client, status, examine=self._to_open(folder))
                self._selected = folder.imap_name
            unknown = {int(m.id) for m in prefetched}
        else:
            self._examine(folder)
            unknown = {uid for uid in self._client.search("ALL") if str(uid) not in known}
        skipped: Counter[str] = Counter()
        since, until = date_window(filters)
        if unknown and (since or until):
            self._examine(folder)  # a listing taken ahead left another folder open
        if unknown and since:
            too_old = unknown.intersection(self._client.search(["BEFORE", since]))
            skipped[SKIP_TOO_OLD] += len(too_old)
            unknown -= too_old
        if unknown and until:
            too_new = unknown.intersection(self._client.search(["SINCE", until]))
            skipped[SKIP_TOO_NEW] += len(too_new)
            unknown -= too_new
        if self._gmail and folder.imap_name == self._all_mail and unknown:
            self._examine(folder)
            labels = self._client.fetch(sorted(unknown), [b"X-GM-LABELS"])
            unknown = {uid for uid in unknown if archived_only(tuple(labels.get(uid, {}).get(b"X-GM-LABELS", ())))}
        if prefetched is not None:
            return Listing([m for m in prefetched if int(m.id) in unknown], +skipped)
        return Listing(fetch_meta(self._client, sorted(unknown)), +skipped)

    def fetch(self, folder: RemoteFolder, ids: list[str]) -> list[Fetched]:
        """FolderRefused when the server will not open the folder or FETCH from it."""
        if not ids:
            return []
        with refusals("the source refused to open or read the folder"):
            fetched = uid_fetch(self._client, ",".join(ids), [b"BODY.PEEK[]"], examine=self._to_open(folder))
        self._selected = folder.imap_name
        got = {i.uid: i.section for i in fetched}
        return [Fetched(i, got.get(int(i))) for i in ids]

    def close(self) -> None:
        imapconn.close_quietly(self._client)
