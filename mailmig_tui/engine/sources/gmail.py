"""Google Workspace source: Gmail labels as folders, read through the Gmail API with domain-wide delegation.

How labels become the engine's folders (DESIGN.md §2 "Folders"):

* System labels INBOX, SENT, DRAFT, SPAM and TRASH are the folders ``INBOX``, ``Sent``, ``Drafts``,
  ``Spam`` and ``Trash``, carrying the RFC 6154 attributes (\\Sent, \\Drafts, \\Junk, \\Trash) so the
  plan maps them onto the destination's special-use folders. User labels are folders named as the
  label, ``/`` nesting included. Mail carrying none of those labels (archived mail) is the folder
  ``Archive`` (\\Archive), so it lands in the destination's Archive and is never dropped. A user
  label named like one of these folders (``Archive``, typically) is merged into it.
* CATEGORY_*, IMPORTANT, STARRED, UNREAD and CHAT are never folders. STARRED → \\Flagged, no UNREAD →
  \\Seen, DRAFT → \\Draft, IMPORTANT → the RFC 8457 keyword ``$Important``; categories are dropped.
  Google Chat history (label CHAT) is not mail: it is skipped, and counted.
* ``label_strategy = "copy"``: a message is listed under every folder it has a label for (as Gmail's
  own IMAP shows it). ``"primary"``: it is listed under exactly one folder, the first that the task
  migrates in the order Trash, Spam, Drafts, INBOX, Sent, user labels (by name), Archive, and its
  other user labels become IMAP keywords (:func:`keyword_of`). Gmail lists trashed and spam mail
  only under Trash/Spam (``includeSpamTrash`` is sent only for those two, and only when they are
  migrated), so skipping Trash or Junk skips that mail whatever its other labels.

Identity and change detection: a message's source id is its Gmail message id (stable for the life
of the mailbox); every folder's validity is constant. A folder's marker is the count and a digest
of the ids listed under it, from ``messages.list`` (5 units per 500 ids): it changes exactly when
the folder's content does, and costs no per-message call when nothing changed.

Listing a changed folder makes no per-message call: the new ids come from the label lists, each
with the upper bound of its size class (Gmail's ``larger:`` search) for the engine's batches and
byte budget; ``fetch`` (one raw get per message, batched) returns what the get taught as
``Fetched.meta`` (exact size, internalDate, labels → flags, Message-ID), on which the engine judges
the size filter (``sizeEstimate`` is only an estimate) and recognises mail already at the
destination, plus the exact date-filter verdict. Recent downloads are kept in a small bounded
cache, so a message that the "copy" strategy lists in two folders is usually fetched once.

Dates: ``after:``/``before:`` with epoch seconds of local midnight (the admin's time zone) select on
the server, widened by a minute so Gmail's exact boundary semantics cannot drop a kept message; the
exact boundary is then checked on internalDate.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from mailmig_tui.engine import store
from mailmig_tui.engine.folders import MailboxFilter, RemoteFolder, encode_name, logical_path
from mailmig_tui.engine.model import Filters, Task, User
from mailmig_tui.engine.model import Source as SourceSettings
from mailmig_tui.engine.sources.base import (
    SKIP_TOO_NEW,
    SKIP_TOO_OLD,
    Fetched,
    FolderStatus,
    Listing,
    MessageMeta,
    date_window,
)
from mailmig_tui.engine.sources.gmail_api import GmailApi, GmailError
from mailmig_tui.engine.sources.gmail_auth import KeyFileError, ServiceAccountKey, task_key
from mailmig_tui.engine.sources.imap import message_id_of

SKIP_CHAT = "Google Chat history (not mail)"
VALIDITY = "1"
DATE_MARGIN_S = 60
RAW_CACHE_BYTES = 32 * 1024 * 1024
# Listing without a per-message call: Gmail's ``larger:`` search puts each new message in a size
# class, and the class's upper bound is what the copy reserves for it (batches and the run's byte
# budget stay bounded, whatever the sizes); the exact size is learnt when the message is fetched.
KB, MB = 1024, 1024 * 1024
SIZE_STEPS = (100 * KB, 512 * KB, MB, 2 * MB, 5 * MB, 10 * MB, 25 * MB, 50 * MB)  # 50 MB: Gmail's largest
SMALL_BOUND = SIZE_STEPS[0]
NOT_YET_KNOWN = dt.datetime.fromtimestamp(0, dt.UTC)  # a listed message's date: its fetch tells the real one

# (label id, folder name, special-use attribute), in "primary" priority order
SYSTEM_FOLDERS = (
    ("TRASH", "Trash", "\\Trash"),
    ("SPAM", "Spam", "\\Junk"),
    ("DRAFT", "Drafts", "\\Drafts"),
    ("INBOX", "INBOX", None),
    ("SENT", "Sent", "\\Sent"),
)
ARCHIVE = "Archive"
SPAM_TRASH = frozenset({"SPAM", "TRASH"})
_ATOM_SPECIALS = re.compile(r'[\x00-\x20\x7f(){%*"\\\]]')


def keyword_of(label: str) -> str:
    """An IMAP keyword (an atom) for a label name: modified UTF-7 for non-ASCII, ``_`` for atom specials.

    ``Work/Projects`` stays ``Work/Projects``; ``Ärger (alt)`` becomes ``&AMQ-rger__alt_``.
    """
    return _ATOM_SPECIALS.sub("_", encode_name(label.strip())) or "_"


def decode_raw(data: str) -> bytes:
    """base64url as the API sends ``raw``, with or without padding."""
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError) as exc:
        raise GmailError("protocol", f"Gmail API sent a message that is not valid base64url ({exc})") from None


def imap_size(raw: bytes) -> int:
    """The size IMAP reports for these octets (RFC822.SIZE counts every line end as CRLF)."""
    return len(raw) + raw.count(b"\n") - raw.count(b"\r\n")


def message_id_in(raw: bytes) -> str | None:
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    return message_id_of(raw if end < 0 else raw[:end])


def local_midnight_epoch(day: dt.date) -> int:
    """Epoch seconds of ``day``'s midnight in this machine's time zone."""
    return int(dt.datetime.combine(day, dt.time()).astimezone().timestamp())


@dataclass(frozen=True)
class _Box:
    """One folder as the engine sees it: the labels whose mail it lists, and whether unlabelled mail joins."""

    folder: RemoteFolder
    labels: tuple[str, ...]
    archive: bool
    rank: tuple[int, str]

    @property
    def name(self) -> str:
        return self.folder.name


@dataclass(frozen=True)
class _Info:
    """What a raw get taught about a message besides its octets."""

    size: int
    internaldate: dt.datetime
    message_id: str | None
    labels: frozenset[str]


class GmailSource:
    """One Google Workspace account read through the Gmail API; nothing is ever changed at the source."""

    prefix = ""

    def __init__(
        self,
        settings: SourceSettings,
        user: User,
        key: ServiceAccountKey,
        filters: Filters,
        *,
        cancel: threading.Event | None = None,
        log: Callable[..., None] | None = None,
        api: GmailApi | None = None,
    ) -> None:
        self.account = user.source.strip()
        self.strategy = settings.label_strategy
        self.filters = filters
        self._cancel = cancel or threading.Event()
        self._log: Callable[..., None] = log or (lambda text, severity="info", folder="": None)
        self._folder = ""
        self.api = api or GmailApi(
            key,
            self.account,
            endpoint=settings.api_endpoint,
            units_per_minute=settings.quota_units_per_minute,
            cancel=self._cancel,
            log=self._emit,
        )
        self._boxes: dict[str, _Box] | None = None
        self._label_names: dict[str, str] = {}
        self._user_labels: set[str] = set()
        self._ids: dict[tuple[str | None, str], list[str]] = {}
        self._members: dict[str, list[str]] = {}
        self._primary: dict[str, str] | None = None
        self._raw: OrderedDict[str, tuple[bytes, _Info]] = OrderedDict()  # recent downloads, bounded
        self._raw_bytes = 0

    def bind(self, *, cancel: threading.Event, log: Callable[..., None]) -> None:
        """Share the run's cancel token and the account's log ``log(text, severity, folder)``.

        The runner calls this right after opening the source, so a stop interrupts a backoff and
        every retry shows in the task's log.
        """
        self._cancel = self.api.cancel = cancel
        self._log = log

    def _emit(self, text: str, severity: str = "info") -> None:
        self._log(text, severity, self._folder)

    # ----------------------------------------------------------------------------------------
    # Folders.

    def list_folders(self) -> list[RemoteFolder]:
        return [box.folder for box in self._folder_boxes().values()]

    def _folder_boxes(self) -> dict[str, _Box]:
        if self._boxes is not None:
            return self._boxes
        labels = self.api.labels()
        self._label_names = {str(lbl["id"]): str(lbl.get("name", lbl["id"])) for lbl in labels}
        present = set(self._label_names)
        self._user_labels = {str(lbl["id"]) for lbl in labels if lbl.get("type") == "user"}
        boxes: dict[str, _Box] = {}
        merged: dict[str, list[str]] = {}
        reserved = {name.casefold(): name for _, name, _ in SYSTEM_FOLDERS} | {ARCHIVE.casefold(): ARCHIVE}
        users = sorted(
            (lbl for lbl in labels if lbl.get("type") == "user"), key=lambda lbl: str(lbl.get("name", "")).casefold()
        )
        for lbl in users:
            name = str(lbl.get("name", "")).strip()
            if name.casefold() in reserved:
                merged.setdefault(reserved[name.casefold()], []).append(str(lbl["id"]))
        for rank, (label_id, name, attribute) in enumerate(SYSTEM_FOLDERS):
            if label_id not in present and label_id != "INBOX":
                continue
            flags = frozenset({attribute}) if attribute else frozenset()
            labels_of = (label_id, *merged.get(name, ()))
            boxes[name] = _Box(RemoteFolder(name, "/", flags), labels_of, False, (rank, ""))
        for lbl in users:
            name = str(lbl.get("name", "")).strip()
            if not name or name.casefold() in reserved:
                continue
            boxes[name] = _Box(
                RemoteFolder(name, "/"), (str(lbl["id"]),), False, (len(SYSTEM_FOLDERS), name.casefold())
            )
        boxes[ARCHIVE] = _Box(
            RemoteFolder(ARCHIVE, "/", frozenset({"\\Archive"})),
            tuple(merged.get(ARCHIVE, ())),
            True,
            (len(SYSTEM_FOLDERS) + 1, ""),
        )
        order = {"INBOX": 0, "Sent": 1, "Drafts": 2, ARCHIVE: 4, "Spam": 5, "Trash": 6}  # user labels: 3
        self._boxes = dict(sorted(boxes.items(), key=lambda kv: (order.get(kv[0], 3), kv[1].rank)))
        return self._boxes

    def _box(self, folder: RemoteFolder) -> _Box:
        box = self._folder_boxes().get(folder.name)
        if box is None:
            raise GmailError("protocol", f"{folder.name!r} is not a folder of {self.account}")
        return box

    # ----------------------------------------------------------------------------------------
    # Which ids each folder lists.

    def _list(self, label: str | None, q: str = "") -> list[str]:
        """Ids with ``label`` (None: all mail outside Spam/Trash), optionally under a query; cached."""
        key = (label, q)
        if key not in self._ids:
            self._ids[key] = self.api.list_ids((label,) if label else (), q=q, include_spam_trash=label in SPAM_TRASH)
        return self._ids[key]

    def _copy_members(self, box: _Box) -> list[str]:
        ids: dict[str, None] = {}
        for label in box.labels:
            ids.update(dict.fromkeys(self._list(label)))
        if box.archive:
            labelled: set[str] = set()
            for other in self._folder_boxes().values():
                for label in other.labels:
                    if label not in SPAM_TRASH:
                        labelled.update(self._list(label))
            chats = self._chats(box)
            ids.update(dict.fromkeys(i for i in self._list(None) if i not in labelled and i not in chats))
        return list(ids)

    @staticmethod
    def _scope(box: _Box) -> str | None:
        """The label a date query runs under (None: all mail); the exact check on internalDate covers the rest."""
        if box.labels and (box.labels[0] in SPAM_TRASH or (len(box.labels) == 1 and not box.archive)):
            return box.labels[0]
        return None

    def _chats(self, box: _Box) -> set[str]:
        if not box.archive or "CHAT" not in self._label_names:
            return set()
        return set(self._list("CHAT"))

    def _eligible(self, box: _Box) -> bool:
        """Whether the task migrates this folder (the mailbox filter, skip Trash/Junk), as the plan decides."""
        f = self.filters
        kind = box.folder.special_use
        if (kind == "\\Trash" and f.skip_trash) or (kind == "\\Junk" and f.skip_junk):
            return False
        mb = f.mailboxes
        if not mb.enabled:
            return True
        return MailboxFilter(mb.policy, mb.keywords, mb.exceptions).decide(logical_path(box.folder)) is None

    def _primaries(self) -> dict[str, str]:
        """Message id → the one folder it is listed under (strategy "primary")."""
        if self._primary is None:
            primary: dict[str, str] = {}
            for box in sorted(self._folder_boxes().values(), key=lambda b: b.rank):
                if self._eligible(box):
                    for mid in self._copy_members(box):
                        primary.setdefault(mid, box.name)
            self._primary = primary
        return self._primary

    def _folder_members(self, box: _Box) -> list[str]:
        if box.name not in self._members:
            members = self._copy_members(box)
            if self.strategy == "primary":
                primaries = self._primaries()
                members = [mid for mid in members if primaries.get(mid) == box.name]
            self._members[box.name] = members
        return self._members[box.name]

    def status(self, folder: RemoteFolder) -> FolderStatus:
        self._folder = folder.name
        members = self._folder_members(self._box(folder))
        digest = hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()[:24]
        return FolderStatus(VALIDITY, f"{len(members)}:{digest}", len(members))

    # ----------------------------------------------------------------------------------------
    # Messages.

    def list_messages(self, folder: RemoteFolder, status: FolderStatus, known: set[str], filters: Filters) -> Listing:
        box = self._box(folder)
        self._folder = folder.name
        unknown = [mid for mid in self._folder_members(box) if mid not in known]
        skipped: Counter[str] = Counter()
        skipped[SKIP_CHAT] += len(self._chats(box))
        since, until = date_window(filters)
        scope = self._scope(box)
        if unknown and since:
            old = set(self._list(scope, f"before:{local_midnight_epoch(since) - DATE_MARGIN_S}"))
            skipped[SKIP_TOO_OLD] += sum(1 for mid in unknown if mid in old)
            unknown = [mid for mid in unknown if mid not in old]
        if unknown and until:
            new = set(self._list(scope, f"after:{local_midnight_epoch(until) + DATE_MARGIN_S}"))
            skipped[SKIP_TOO_NEW] += sum(1 for mid in unknown if mid in new)
            unknown = [mid for mid in unknown if mid not in new]
        if not unknown:
            return Listing([], +skipped)
        # No per-message call: listed from the id lists (newest first: reversed, the oldest is copied
        # first), each with its size class's bound; fetch() says what each really is, and the engine
        # judges the size filter on that.
        bounds = self._size_bounds(scope)
        metas = [MessageMeta(mid, bounds.get(mid, SMALL_BOUND), NOT_YET_KNOWN) for mid in reversed(unknown)]
        return Listing(metas, +skipped, sizes_are_bounds=True)

    def _size_bounds(self, scope: str | None) -> dict[str, int]:
        """Message id → the upper bound of its size class (messages not listed here: SMALL_BOUND)."""
        bounds: dict[str, int] = {}
        for above, bound in reversed(list(zip(SIZE_STEPS, SIZE_STEPS[1:], strict=False))):  # biggest first
            for mid in self._list(scope, f"larger:{above}"):
                bounds.setdefault(mid, bound)
        return bounds

    @functools.cached_property
    def _date_bounds(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """The date filters as exact instants: the first kept, the first skipped after the window."""
        since, until = date_window(self.filters)
        return (
            dt.datetime.fromtimestamp(local_midnight_epoch(since), dt.UTC) if since else None,
            dt.datetime.fromtimestamp(local_midnight_epoch(until), dt.UTC) if until else None,
        )

    def _outside_dates(self, info: _Info) -> str | None:
        """The exact check of the date filters on internalDate (the server-side query has a margin)."""
        low, high = self._date_bounds
        if low is not None and info.internaldate < low:
            return SKIP_TOO_OLD
        if high is not None and info.internaldate >= high:
            return SKIP_TOO_NEW
        return None

    def _meta(self, mid: str, info: _Info, box: _Box) -> MessageMeta:
        return MessageMeta(mid, info.size, info.internaldate, self._flags(info, box), info.message_id)

    @staticmethod
    def _absorb(resp: dict) -> tuple[bytes, _Info]:
        """The raw octets of a ``messages.get`` (format raw) answer, and what else it says."""
        raw = decode_raw(str(resp.get("raw", "")))
        return raw, _Info(
            size=imap_size(raw),
            internaldate=dt.datetime.fromtimestamp(int(resp.get("internalDate", 0)) / 1000, dt.UTC),
            message_id=message_id_in(raw),
            labels=frozenset(str(x) for x in resp.get("labelIds", [])),
        )

    def _flags(self, info: _Info, box: _Box) -> tuple[str, ...]:
        labels = info.labels
        flags: list[str] = []
        if "UNREAD" not in labels:
            flags.append("\\Seen")
        if "STARRED" in labels:
            flags.append("\\Flagged")
        if "DRAFT" in labels:
            flags.append("\\Draft")
        if "IMPORTANT" in labels:
            flags.append("$Important")
        if self.strategy == "primary":
            names = sorted(self._label_names[lid] for lid in labels & self._user_labels if lid not in box.labels)
            flags.extend(dict.fromkeys(keyword_of(name) for name in names))
        return tuple(flags)

    def _keep(self, mid: str, raw: bytes, info: _Info) -> None:
        if len(raw) > RAW_CACHE_BYTES // 4 or mid in self._raw:
            return
        self._raw[mid] = (raw, info)
        self._raw_bytes += len(raw)
        while self._raw_bytes > RAW_CACHE_BYTES:
            _, (old, _info) = self._raw.popitem(last=False)
            self._raw_bytes -= len(old)

    def fetch(self, folder: RemoteFolder, ids: list[str]) -> list[Fetched]:
        """The raw messages, each with what its get taught (exact size, date, flags, Message-ID) and,
        for one listed before its date was known, the date filters' exact verdict."""
        self._folder = folder.name
        box = self._box(folder)
        missing = [mid for mid in ids if mid not in self._raw]
        got = self.api.get_many(missing, "raw") if missing else {}
        out = []
        for mid in ids:
            cached = self._raw.get(mid)
            if cached is not None:
                raw, info = cached
            else:
                resp = got.get(mid)
                if resp is None:
                    out.append(Fetched(mid, None))
                    continue
                raw, info = self._absorb(resp)
                self._keep(mid, raw, info)  # another folder of the "copy" strategy may list it too
            out.append(Fetched(mid, raw, self._meta(mid, info, box), self._outside_dates(info)))
        return out

    def close(self) -> None:
        self._raw.clear()
        self._raw_bytes = 0
        self.api.close()


def open_gmail(task: Task, user: User) -> GmailSource:
    """The source for one account of a Google Workspace task (the key is validated and kept in the secrets area)."""
    try:
        key = task_key(task.name, task.source.key_file, store.paths())
        return GmailSource(task.source, user, key, task.filters)
    except KeyFileError as exc:
        raise GmailError("auth", str(exc)) from None


def check_account(task: Task, user: User) -> tuple[bool, str]:
    """Verify: one getProfile call as the user proves the delegation works; the verdict shows the message count."""
    try:
        key = task_key(task.name, task.source.key_file, store.paths())
        api = GmailApi(
            key, user.source.strip(), endpoint=task.source.api_endpoint,
            units_per_minute=task.source.quota_units_per_minute, timeout=30,
        )  # fmt: skip
    except (KeyFileError, GmailError) as exc:
        return False, str(exc)
    try:
        profile = api.profile()
    except GmailError as exc:
        return False, str(exc)
    finally:
        api.close()
    total = profile.get("messagesTotal", "?")
    return True, f"delegation OK for client id {key.client_id}, the mailbox holds {total} message(s)"
