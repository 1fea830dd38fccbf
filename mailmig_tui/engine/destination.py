"""The destination server: folders, what is already there, and appending (never expunging).

Appends use MULTIAPPEND (RFC 3502) when offered, so a batch costs one command; if the server
refuses a batch, it is retried message by message so that one bad message fails alone with the
server's reason. Destination UIDs come from UIDPLUS (APPENDUID), which is how state knows exactly
what the task owns in each folder.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass

from imapclient import IMAPClient
from imapclient.datetime_util import datetime_to_INTERNALDATE
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from mailmig_tui.engine import imapconn
from mailmig_tui.engine.folders import RemoteFolder
from mailmig_tui.engine.model import Destination as DestinationSettings
from mailmig_tui.engine.model import User
from mailmig_tui.engine.sources.base import FolderRefused, fingerprint_of
from mailmig_tui.engine.sources.imap import fetch_meta, list_folders, refusals, text_of

_APPENDUID = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", re.IGNORECASE)
_ATOM_SPECIALS = set('(){ %*"\\]') | {chr(c) for c in range(0x20)} | {chr(0x7F)}
SYSTEM_FLAGS = {"\\seen", "\\answered", "\\flagged", "\\deleted", "\\draft"}


class OverQuota(Exception):
    """The destination mailbox is full: continuing would only fail every message."""


@dataclass
class Appendable:
    raw: bytes
    flags: tuple[str, ...]
    internaldate: dt.datetime


@dataclass(frozen=True)
class AppendOutcome:
    uid: int | None = None
    error: str = ""


@dataclass(frozen=True)
class SelectedFolder:
    name: str
    uidvalidity: int
    permanent_flags: frozenset[str]  # lower-case; contains "\\*" when any keyword may be created


def parse_uid_set(text: bytes) -> list[int]:
    out: list[int] = []
    for part in text.split(b","):
        if b":" in part:
            a, b = (int(x) for x in part.split(b":"))
            out.extend(range(min(a, b), max(a, b) + 1))
        else:
            out.append(int(part))
    return out


def appenduid(response: object) -> tuple[int, list[int]] | None:
    """(UIDVALIDITY, UIDs) from an APPEND response's APPENDUID code (RFC 4315), if any."""
    if isinstance(response, tuple | list):
        data = b" ".join(x if isinstance(x, bytes) else str(x).encode() for x in response if x is not None)
    elif isinstance(response, str):
        data = response.encode()
    elif isinstance(response, bytes):
        data = response
    else:
        return None
    m = _APPENDUID.search(data)
    if not m:
        return None
    return int(m.group(1)), parse_uid_set(m.group(2))


def allowed_flags(flags: tuple[str, ...], folder: SelectedFolder) -> tuple[str, ...]:
    """The flags the destination keeps: never \\Recent, keywords only if PERMANENTFLAGS allow them."""
    out = []
    for flag in flags:
        low = flag.lower()
        if low == "\\recent" or not flag:
            continue
        if flag.startswith("\\"):
            if low in SYSTEM_FLAGS and (low in folder.permanent_flags or not folder.permanent_flags):
                out.append(flag)
            continue
        if any(c in _ATOM_SPECIALS or ord(c) > 0x7E for c in flag):
            continue
        if not folder.permanent_flags or "\\*" in folder.permanent_flags or low in folder.permanent_flags:
            out.append(flag)
    return tuple(out)


class DestinationMailbox:
    """One destination account, logged in by master user, SASL authzid or its own password."""

    def __init__(self, settings: DestinationSettings, user: User, *, timeout: float = 60.0) -> None:
        self.account = user.destination
        self._client: IMAPClient = imapconn.open_destination(settings, user, timeout=timeout)
        self._client.normalise_times = False
        # Names are passed in Unicode and encoded by imapclient (MULTIAPPEND needs that mode).
        caps = imapconn.capabilities(self._client)
        self.multiappend = "MULTIAPPEND" in caps
        self.literal_plus = "LITERAL+" in caps
        self.uidplus = "UIDPLUS" in caps
        self.append_limit = next((int(c.split("=", 1)[1]) for c in caps if c.startswith("APPENDLIMIT=")), 0)
        self.delimiter, self.prefix = self._namespace()
        self._folders: dict[str, RemoteFolder] | None = None
        self._selected: SelectedFolder | None = None
        self.readonly = False  # a dry run only EXAMINEs (not even \Recent changes)

    def _namespace(self) -> tuple[str, str]:
        if self._client.has_capability("NAMESPACE"):
            personal = self._client.namespace().personal
            if personal:
                prefix, sep = personal[0]
                return text_of(sep or "/"), text_of(prefix)
        entries = self._client.list_folders("", "")
        sep = entries[0][1] if entries and entries[0][1] else b"/"
        return text_of(sep), ""

    # ----------------------------------------------------------------------------------------
    # Folders.

    def list_folders(self) -> list[RemoteFolder]:
        if self._folders is None:
            self._folders = {f.name: f for f in list_folders(self._client)}
        return list(self._folders.values())

    def ensure_folder(self, name: str) -> bool:
        """Create (and subscribe) the folder and its missing parents; True if something was created.

        FolderRefused when the server refuses a CREATE (a reserved or invalid name, too long…).
        """
        existing = {f.name for f in self.list_folders()}
        if name in existing or (name.upper() == "INBOX"):
            return False
        parts = name.split(self.delimiter)
        created = False
        for i in range(1, len(parts) + 1):
            path = self.delimiter.join(parts[:i])
            if path in existing or path.upper() == "INBOX" or (self.prefix and path + self.delimiter == self.prefix):
                continue
            try:
                self._client.create_folder(path)
            except IMAPClientAbortError:
                raise
            except IMAPClientError as exc:
                if "ALREADYEXISTS" not in str(exc).upper():
                    raise FolderRefused(f'the destination refused to create "{path}" ({_server_text(exc)})') from None
            self._subscribe(path)
            assert self._folders is not None
            self._folders[path] = RemoteFolder(path, self.delimiter)
            existing.add(path)
            created = True
        return created

    def _subscribe(self, name: str) -> None:
        try:
            self._client.subscribe_folder(name)
        except IMAPClientError:
            pass  # a server without subscriptions still holds the mail

    def select(self, name: str) -> SelectedFolder:
        """The folder, selected; FolderRefused when the server will not open it."""
        if self._selected is not None and self._selected.name == name:
            return self._selected
        self._selected = None  # a refused SELECT leaves no folder open (RFC 3501)
        with refusals(f'the destination refused to open "{name}"'):
            info = self._client.select_folder(name, readonly=self.readonly)
        perm = frozenset(text_of(f).lower() for f in info.get(b"PERMANENTFLAGS", ()))
        self._selected = SelectedFolder(name, int(info.get(b"UIDVALIDITY", 0)), perm)
        return self._selected

    def counts(self, name: str) -> tuple[int, int]:
        """(MESSAGES, UIDNEXT) of folder ``name``: what changes when anything is appended to it."""
        info = self._client.folder_status(name, [b"MESSAGES", b"UIDNEXT"])
        return int(info.get(b"MESSAGES", 0)), int(info.get(b"UIDNEXT", 0))

    # ----------------------------------------------------------------------------------------
    # What is already there.

    def unclaimed(self, name: str, claimed_uids: set[int]) -> Counter[str]:
        """Fingerprints of the folder's messages that the task's state does not account for.

        Messages with a Message-ID are fingerprinted from metadata; the others by their content,
        fetched here (only those, and only when unclaimed).
        """
        self.select(name)
        uids = [u for u in self._client.search("ALL") if u not in claimed_uids]
        metas = fetch_meta(self._client, sorted(uids))
        counts: Counter[str] = Counter()
        bodiless = [int(m.id) for m in metas if not m.message_id]
        raws: dict[int, bytes] = {}
        for start in range(0, len(bodiless), 200):
            chunk = bodiless[start : start + 200]
            for uid, data in self._client.fetch(chunk, [b"BODY.PEEK[]"]).items():
                raw = data.get(b"BODY[]")
                if isinstance(raw, bytes):
                    raws[uid] = raw
        for meta in metas:
            fp = fingerprint_of(meta, raws.get(int(meta.id)))
            if fp:
                counts[fp] += 1
        return counts

    # ----------------------------------------------------------------------------------------
    # Appending.

    def append(self, name: str, items: list[Appendable]) -> list[AppendOutcome]:
        """Append a batch to folder ``name``; one outcome per item, in order.

        The batch goes as one MULTIAPPEND where offered; if the server refuses it (one message over
        a size limit refuses them all), each message is sent alone so that only the culprit fails.
        """
        folder = self.select(name)
        prepared = [(it.raw, allowed_flags(it.flags, folder), it.internaldate) for it in items]
        outcomes: list[AppendOutcome | None] = [None] * len(items)
        todo = []
        for i, (raw, _flags, _date) in enumerate(prepared):
            if self.append_limit and len(raw) > self.append_limit:
                outcomes[i] = AppendOutcome(
                    error=f"{len(raw)} bytes is over the destination's APPENDLIMIT of {self.append_limit} bytes"
                )
            else:
                todo.append(i)
        if self.multiappend and len(todo) > 1:
            try:
                uids = appenduid(self._send_append(name, [prepared[i] for i in todo]))
                if uids and len(uids[1]) == len(todo):
                    for i, uid in zip(todo, uids[1], strict=True):
                        outcomes[i] = AppendOutcome(uid=uid)
                    self._selected = SelectedFolder(name, uids[0], folder.permanent_flags)
                else:
                    for i in todo:
                        outcomes[i] = AppendOutcome()
                todo = []
            except IMAPClientError as exc:
                self._check_quota(str(exc))
                self._client.noop()  # the whole batch was refused: find the culprit(s) one by one
        for i in todo:
            try:
                uids = appenduid(self._send_append(name, [prepared[i]]))
                outcomes[i] = AppendOutcome(uid=uids[1][0] if uids else None)
            except IMAPClientError as exc:
                self._check_quota(str(exc))
                outcomes[i] = AppendOutcome(error=f"refused by the destination: {_server_text(exc)}")
        return [o or AppendOutcome(error="not appended") for o in outcomes]

    def _send_append(self, name: str, batch: list[tuple[bytes, tuple[str, ...], dt.datetime]]) -> object:
        """One APPEND command (MULTIAPPEND for several messages); IMAPClientError when refused.

        With LITERAL+ each message's octets are written to the socket as they are: imapclient would
        copy every message twice, and imaplib's own APPEND rewrites line ends with a regex (CPU and
        about three times the message in memory).
        """
        if not self.literal_plus:
            if len(batch) == 1:
                raw, flags, date = batch[0]
                return self._client.append(name, raw, flags, date)
            response = self._client.multiappend(name, [{"msg": r, "flags": f, "date": d} for r, f, d in batch])
            typ, data = response if isinstance(response, tuple) else ("OK", response)
        else:
            imap = self._client._imap
            tag = imap._new_tag()
            imap.send(tag + b" APPEND " + self._client._normalise_folder(name))
            for raw, flags, date in batch:
                head = b" (" + " ".join(flags).encode("ascii") + b') "' + datetime_to_INTERNALDATE(date).encode("ascii")
                imap.send(head + b'" {%d+}\r\n' % len(raw))
                imap.send(raw)
            imap.send(b"\r\n")
            typ, data = imap._command_complete("APPEND", tag)
        if text_of(typ).upper() != "OK":  # a refused APPEND is returned, not raised
            raise IMAPClientError(
                f"{text_of(typ)} {' '.join(text_of(x) for x in data or () if isinstance(x, bytes | str))}"
            )
        return data

    @staticmethod
    def _check_quota(text: str) -> None:
        if "OVERQUOTA" in text.upper() or "QUOTA EXCEEDED" in text.upper():
            raise OverQuota(f"the destination mailbox is over its quota: {_server_text(text)}")

    def close(self) -> None:
        imapconn.close_quietly(self._client)


def _server_text(exc: Exception | str) -> str:
    """The server's words in a refusal, without imapclient's "create failed: " or the NO/BAD."""
    text = re.sub(r"^[a-z]+ failed: ", "", str(exc))
    m = re.search(r"\b(?:NO|BAD)\s+(.*)", text)
    return (m.group(1) if m else text).strip().strip("'\"")[:300]
