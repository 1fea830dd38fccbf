"""Folder-name rules: the one place that knows how a mailbox name travels from source to destination.

Pure functions over LIST results; no sockets. The rules, in the order they apply:

1. Names on the wire are modified UTF-7 (RFC 3501 §5.1.3) or, on UTF8=ACCEPT servers, UTF-8;
   :func:`decode_name` turns either into unicode and keeps anything malformed as it is.
2. A folder's *logical path* is its name split by its delimiter with the source's IMAP path prefix
   removed (``INBOX.Projects.2019`` with prefix ``INBOX`` → ``("Projects", "2019")``). A top-level
   INBOX is case-insensitive and always spelled ``INBOX``.
3. Special-use folders (RFC 6154) are recognised by attribute; only when a side announces no
   special-use attribute at all are well-known (also localised) names guessed instead.
4. The plan maps INBOX to the destination INBOX and Sent/Drafts/Trash/Junk/Archive to the
   destination's folder of the same kind, whatever it is called on each side; their children follow
   them. Other folders keep their logical path under the destination prefix, with the destination
   separator; a name part holding that separator, or control characters (which Dovecot refuses in
   a new name), gets ``_`` instead of each. Virtual views (\\All,
   \\Flagged, Gmail's \\Important) and non-selectable folders are never copied.
5. The mailbox filter (keywords, ``/regex/`` keywords, exceptions) decides on the logical path.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from imapclient import imap_utf7
from imapclient.exceptions import ProtocolError
from imapclient.response_parser import parse_response

SPECIAL_USE = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive", "\\All", "\\Flagged")
"""RFC 6154 attributes this tool understands, in the order :attr:`RemoteFolder.special_use` prefers."""
MAPPED_SPECIAL_USE = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive")
"""Kinds that are copied into the destination folder of the same kind."""
VIRTUAL = ("\\All", "\\Flagged", "\\Important")
"""Attributes of views onto mail stored elsewhere: copying them would duplicate every message."""
DEFAULT_NAMES = {kind: kind[1:] for kind in MAPPED_SPECIAL_USE}
"""Names given to special folders the destination lacks (under the destination prefix)."""
GMAIL_ROOTS = frozenset({"[gmail]", "[google mail]"})

_WELL_KNOWN = {
    "\\Sent": "Sent, Sent Items, Sent Messages, Sent Mail, Gesendet, Gesendete Elemente, "
    "Gesendete Objekte, Éléments envoyés, Messages envoyés, Elementos enviados, Enviados, "
    "Posta inviata, Inviati, Verzonden items, Verzonden",
    "\\Drafts": "Drafts, Draft, Entwürfe, Brouillons, Borradores, Bozze, Concepten",
    "\\Trash": "Trash, Bin, Deleted Items, Deleted Messages, Deleted, Papierkorb, Gelöschte Elemente, "
    "Gelöschte Objekte, Corbeille, Éléments supprimés, Elementos eliminados, Papelera, Cestino, "
    "Posta eliminata, Verwijderde items, Prullenbak, Kosz",
    "\\Junk": "Junk, Junk E-Mail, Junk Email, Junk Mail, Spam, Bulk Mail, Junk-E-Mail, Spamverdacht, "
    "Courrier indésirable, Correo no deseado, Posta indesiderata, Ongewenste e-mail",
    "\\Archive": "Archive, Archives, Archiv, Archivio, Archivo, Archief",
}
_GUESS = {
    unicodedata.normalize("NFC", name.strip()).casefold(): kind
    for kind, names in _WELL_KNOWN.items()
    for name in names.split(",")
}
# Only Gmail's own system folders may be guessed as virtual views: a user folder "Starred" is mail.
_GMAIL_GUESS = {**_GUESS, "all mail": "\\All", "starred": "\\Flagged"}
_MODIFIED_BASE64 = re.compile(r"[A-Za-z0-9+,]+")


def _fold(text: str) -> str:
    """Case- and normalisation-insensitive form of a name part (NFC, then casefold)."""
    return unicodedata.normalize("NFC", text).casefold()


# --- names on the wire -------------------------------------------------------------------------


def _decode_mutf7(text: str) -> str | None:
    """Strict modified UTF-7 decoding; None when ``text`` is not valid modified UTF-7."""
    out: list[str] = []
    pos = 0
    while (amp := text.find("&", pos)) >= 0:
        end = text.find("-", amp + 1)
        if end < 0:
            return None
        out.append(text[pos:amp])
        chunk = text[amp + 1 : end]
        if not chunk:
            out.append("&")
        elif not _MODIFIED_BASE64.fullmatch(chunk):
            return None
        else:
            padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
            try:
                out.append(base64.b64decode(padded, validate=True).decode("utf-16-be"))
            except (binascii.Error, UnicodeDecodeError):
                return None
        pos = end + 1
    out.append(text[pos:])
    return "".join(out)


def decode_name(raw: bytes | str) -> str:
    """Decode a folder name as a server sends it into unicode.

    ASCII text is modified UTF-7 (``&-`` is ``&``, ``+`` is an ordinary character). Text that is
    not ASCII comes from a UTF8=ACCEPT server and is already unicode (bytes are read as UTF-8, or
    Latin-1 as a last resort). A name that is not valid modified UTF-7 (``A&B``, a broken base64
    run, half a surrogate pair) is kept as it is rather than guessed at.
    """
    if isinstance(raw, bytes):
        if not raw.isascii():
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw.decode("latin-1")
        raw = raw.decode("ascii")
    decoded = _decode_mutf7(raw) if raw.isascii() else None
    return raw if decoded is None else decoded


def encode_name(name: str) -> str:
    """Encode a unicode folder name as modified UTF-7 (ASCII), for servers without UTF8=ACCEPT."""
    return imap_utf7.encode(name).decode("ascii")


# --- folders as listed -------------------------------------------------------------------------


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@dataclass(frozen=True)
class RemoteFolder:
    """One LIST entry: ``name`` is the decoded unicode full name, ``flags`` the LIST attributes.

    ``wire_name`` is the name exactly as the server sent it, when known; send :attr:`imap_name`
    back to that server (with imapclient's ``folder_encode`` off) so that even a malformed name
    can be examined.
    """

    name: str
    delimiter: str | None
    flags: frozenset[str] = frozenset()
    wire_name: str | None = field(default=None, compare=False)

    def _has(self, attribute: str) -> bool:
        return any(flag.casefold() == attribute.casefold() for flag in self.flags)

    @property
    def selectable(self) -> bool:
        """False for \\Noselect / \\NonExistent entries (hierarchy placeholders such as ``[Gmail]``)."""
        return not (self._has("\\Noselect") or self._has("\\NonExistent"))

    @property
    def special_use(self) -> str | None:
        """The RFC 6154 attribute this folder carries (canonical spelling), or None."""
        return next((kind for kind in SPECIAL_USE if self._has(kind)), None)

    @property
    def virtual(self) -> str | None:
        """The attribute that makes this folder a view of other folders (\\All, \\Flagged, \\Important)."""
        return next((kind for kind in VIRTUAL if self._has(kind)), None)

    @property
    def imap_name(self) -> str:
        """The name to use in EXAMINE/STATUS at the server this folder was listed by."""
        return self.wire_name if self.wire_name is not None else encode_name(self.name)

    @classmethod
    def from_imapclient(
        cls, entry: tuple[Sequence[bytes | str], bytes | str | None, bytes | str | int]
    ) -> RemoteFolder:
        """Build from an ``IMAPClient.list_folders()`` tuple ``(flags, delimiter, name)``.

        A ``str`` name is taken as already decoded by imapclient (``folder_encode=True``); a
        ``bytes`` name (``folder_encode=False``) is decoded here and kept as :attr:`wire_name`.
        """
        flags, delimiter, name = entry
        wire: str | None = None
        if isinstance(name, bytes):
            decoded = decode_name(name)
            wire = name.decode("ascii") if name.isascii() else decoded
        elif isinstance(name, int):
            decoded = wire = str(name)
        else:
            decoded = name
        delim = _text(delimiter) if delimiter is not None else None
        return cls(decoded, delim or None, frozenset(_text(flag) for flag in flags), wire)


_LIST_HEAD = re.compile(rb'\(([^)]*)\) (?:(NIL)|"(\\.|[^"\\])") ', re.IGNORECASE)
_LITERAL = re.compile(rb"\{(\d+)\+?\}")


def _responses(data: Iterable[bytes | tuple[bytes, bytes] | None]) -> list[tuple[bytes, list[bytes]]]:
    """imaplib's untagged data grouped into responses: each one's text and its literals, in order.

    A line that ends in a literal comes as a tuple ``(line, literal)``, and what follows the literal
    as the next item, up to the end of the response (``b""`` when nothing follows).
    """
    out: list[tuple[bytes, list[bytes]]] = []
    pending: tuple[bytes, list[bytes]] | None = None
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            text, literals = pending or (b"", [])
            pending = (text + item[0], [*literals, item[1]])
        elif pending is not None:
            out.append((pending[0] + item, pending[1]))
            pending = None
        elif item:
            out.append((item, []))
    if pending is not None:
        out.append(pending)
    return out


def _astring(text: bytes, pos: int, literals: list[bytes]) -> tuple[bytes, int] | None:
    """A mailbox name at ``text[pos:]`` (quoted, literal or atom) and where it ends; None if there is none.

    An atom runs to the next space: servers send names such as ``Invoices[2019`` unquoted although
    ``[`` may not appear in an atom (RFC 3501), and such a name is still the folder's name.
    """
    if text[pos : pos + 1] == b'"':
        out = bytearray()
        i = pos + 1
        while i < len(text):
            if text[i] == 0x5C and i + 1 < len(text):  # backslash: the next octet as it is
                out.append(text[i + 1])
                i += 2
            elif text[i] == 0x22:
                return bytes(out), i + 1
            else:
                out.append(text[i])
                i += 1
        return None
    literal = _LITERAL.match(text, pos)
    if literal is not None and literals:
        return literals.pop(0), literal.end()
    end = text.find(b" ", pos)
    end = len(text) if end < 0 else end
    return (text[pos:end], end) if end > pos else None


def parse_list_response(data: Iterable[bytes | tuple[bytes, bytes] | None]) -> list[RemoteFolder]:
    """The folders of a LIST response as imaplib hands it over (``typ, data = imap.list()``).

    Read here rather than by IMAPClient, whose parser refuses an unquoted name with an unmatched
    ``[`` (``* LIST (\\HasNoChildren) "/" Invoices[2019``, as Dovecot sends it) and so would fail
    the whole account. Extended data after the name (LIST-EXTENDED) is ignored. A line that is not a
    LIST response raises ValueError naming it.
    """
    folders = []
    for text, literals in _responses(data):
        head = _LIST_HEAD.match(text)
        name = _astring(text, head.end(), literals) if head else None
        if head is None or name is None:
            raise ValueError(f"cannot read the server's LIST response: {text!r}")
        flags = tuple(head.group(1).split())
        delimiter = None if head.group(2) else head.group(3)[-1:]
        folders.append(RemoteFolder.from_imapclient((flags, delimiter, name[0])))
    return folders


def parse_status_response(data: Iterable[bytes | tuple[bytes, bytes] | None]) -> list[tuple[bytes, dict[str, int]]]:
    """Each STATUS response's mailbox name (as the server spells it) and items (``{"MESSAGES": 3, …}``).

    Names are read as :func:`parse_list_response` reads them; ValueError for a response it cannot read.
    """
    out = []
    for text, literals in _responses(data):
        name = _astring(text, 0, literals)
        rest = text[name[1] :].strip() if name else b""
        try:
            (items,) = parse_response([rest]) if rest.startswith(b"(") else (None,)
        except (ProtocolError, ValueError):
            items = None
        if name is None or not isinstance(items, tuple) or len(items) % 2:
            raise ValueError(f"cannot read the server's STATUS response: {text!r}")
        out.append((name[0], {_text(key).upper(): value for key, value in zip(items[::2], items[1::2], strict=True)}))
    return out


def _split(name: str, delimiter: str | None) -> list[str]:
    return [part for part in (name.split(delimiter) if delimiter else [name]) if part]


def _norm_inbox(parts: list[str]) -> list[str]:
    if parts and parts[0].casefold() == "inbox":
        return ["INBOX", *parts[1:]]
    return parts


def _prefix_parts(prefix: str, delimiter: str | None) -> list[str]:
    """The parts of an IMAP path prefix, written with or without its trailing separator."""
    stripped = prefix.strip().rstrip((delimiter or "") + "./")
    return _norm_inbox(_split(stripped, delimiter))


def logical_path(folder: RemoteFolder, prefix: str = "") -> tuple[str, ...]:
    """The folder's path without the IMAP path prefix: ``INBOX.Sent`` (prefix ``INBOX``) → ``("Sent",)``.

    Empty parts (doubled or trailing separators) are dropped. The prefix is removed only from
    folders beneath it: the prefix folder itself (``INBOX``) and folders outside it keep their
    full path. A top-level INBOX is matched case-insensitively and spelled ``INBOX``.
    """
    parts = _norm_inbox(_split(folder.name, folder.delimiter) or [folder.name])
    pre = _prefix_parts(prefix, folder.delimiter)
    if pre and len(parts) > len(pre) and parts[: len(pre)] == pre:
        parts = parts[len(pre) :]
    return tuple(parts)


def guess_special_use(path: Sequence[str]) -> str | None:
    """Guess the special use of a logical path from well-known (also localised) names.

    Only meant for a side that announces no special-use attributes at all. Matches a top-level
    folder, a child of INBOX, or a child of Gmail's ``[Gmail]``/``[Google Mail]`` (where
    ``All Mail`` and ``Starred`` are guessed as the \\All and \\Flagged views).
    """
    parts = tuple(path)
    if len(parts) == 2 and _fold(parts[0]) in GMAIL_ROOTS:
        return _GMAIL_GUESS.get(_fold(parts[1]))
    if len(parts) == 2 and parts[0] == "INBOX":
        parts = parts[1:]
    return _GUESS.get(_fold(parts[0])) if len(parts) == 1 else None


# --- the mailbox filter ------------------------------------------------------------------------


@dataclass(frozen=True)
class Keyword:
    """A compiled mailbox-filter keyword: a ``/regex/`` or a folder path (case-insensitive)."""

    text: str
    pattern: re.Pattern[str] | None = None
    parts: tuple[str, ...] = ()

    def matches(self, path: Sequence[str]) -> bool:
        """Regex: searched in the path joined with ``/``. Plain: the folder or one beneath it."""
        if self.pattern is not None:
            return self.pattern.search("/".join(path)) is not None
        folded = tuple(_fold(part) for part in path[: len(self.parts)])
        return folded == self.parts


def compile_keyword(kw: str) -> Keyword:
    """Compile one keyword; raise ValueError with a message for the admin when it is unusable.

    ``/…/`` is a Python regular expression (``re.search``, case-sensitive unless it says
    ``(?i)``); anything else is a folder path with ``/`` between levels, matched
    case-insensitively level by level, so ``Old`` matches ``Old`` and ``Old/2019`` but not
    ``Older``. Surrounding blanks are ignored.
    """
    text = kw.strip()
    if not text:
        raise ValueError("empty keyword: write a folder name or a /regular expression/")
    if len(text) >= 2 and text.startswith("/") and text.endswith("/"):
        if len(text) == 2:
            raise ValueError(f'keyword "{text}": the regular expression is empty')
        try:
            return Keyword(text, pattern=re.compile(text[1:-1]))
        except re.error as exc:
            raise ValueError(f'keyword "{text}": {exc}') from None
    parts = tuple(_fold(part) for part in text.split("/") if part)
    if not parts:
        raise ValueError(f'keyword "{text}": no folder name')
    return Keyword(text, parts=parts)


@dataclass(frozen=True)
class MailboxFilter:
    """Which folders to migrate. ``policy`` is "skip" (skip matching) or "migrate" (only matching).

    An exception reverses the decision for the folders it matches: under "skip" they are
    migrated even when a keyword matches, under "migrate" they are skipped. A disabled filter
    migrates everything (and its keywords are not compiled).
    """

    policy: str = "skip"
    keywords: Sequence[str] = ()
    exceptions: Sequence[str] = ()
    enabled: bool = True
    _keywords: tuple[Keyword, ...] = field(init=False, repr=False, compare=False, default=())
    _exceptions: tuple[Keyword, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "keywords", tuple(self.keywords))
        object.__setattr__(self, "exceptions", tuple(self.exceptions))
        if self.policy not in ("skip", "migrate"):
            raise ValueError(f'mailbox filter: policy must be "skip" or "migrate", not "{self.policy}"')
        if not self.enabled:
            return
        if self.policy == "migrate" and not self.keywords:
            raise ValueError('mailbox filter: "migrate only matching" needs at least one keyword')
        object.__setattr__(self, "_keywords", tuple(compile_keyword(kw) for kw in self.keywords))
        object.__setattr__(self, "_exceptions", tuple(compile_keyword(kw) for kw in self.exceptions))

    def decide(self, path: Sequence[str]) -> str | None:
        """None when the folder at ``path`` is migrated, else the reason it is skipped."""
        if not self.enabled:
            return None
        hit = next((kw for kw in self._keywords if kw.matches(path)), None)
        exception = next((kw for kw in self._exceptions if kw.matches(path)), None)
        if self.policy == "skip":
            if hit is None or exception is not None:
                return None
            return f'mailbox filter: matches "{hit.text}"'
        if exception is not None:
            return f'mailbox filter: matches exception "{exception.text}"'
        return None if hit is not None else "mailbox filter: not matched by any keyword"


# --- planning ----------------------------------------------------------------------------------


@dataclass
class FolderPlan:
    """What happens to one source folder. ``dest_name`` is unicode: encode it to send it."""

    source: RemoteFolder
    path: tuple[str, ...]
    special_use: str | None
    dest_name: str
    skip_reason: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> bool:
        return self.skip_reason is not None


def _announces_special_use(folders: Iterable[RemoteFolder]) -> bool:
    return any(folder.special_use is not None for folder in folders)


def _canonical_kind(kind: str) -> str:
    wanted = "\\" + kind.lstrip("\\").casefold()
    for known in MAPPED_SPECIAL_USE:
        if known.casefold() == wanted:
            return known
    raise ValueError(f"unknown special-use folder {kind!r}; expected one of {', '.join(MAPPED_SPECIAL_USE)}")


def dest_special_folder(
    kind: str, dest_folders: Iterable[RemoteFolder], dest_delimiter: str, dest_prefix: str = ""
) -> str:
    """The destination's full name for a special-use kind ("\\Sent", "\\Archive", …).

    The selectable destination folder carrying that attribute; if the destination announces no
    special-use attributes, one whose well-known name says so (the English default name first);
    otherwise the default name ("Sent", "Drafts", "Trash", "Junk", "Archive") under the prefix.
    """
    kind = _canonical_kind(kind)
    listed = list(dest_folders)
    folders = [folder for folder in listed if folder.selectable]
    if _announces_special_use(listed):
        candidates = [folder for folder in folders if folder.special_use == kind]
    else:
        candidates = [f for f in folders if guess_special_use(logical_path(f, dest_prefix)) == kind]
    if candidates:
        default = _fold(DEFAULT_NAMES[kind])
        return min(candidates, key=lambda f: _fold(logical_path(f, dest_prefix)[-1]) != default).name
    return dest_delimiter.join([*_prefix_parts(dest_prefix, dest_delimiter), DEFAULT_NAMES[kind]])


def _is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


def _safe_part(part: str, delimiter: str, notes: list[str]) -> str:
    written = part
    if delimiter in part:
        written = part.replace(delimiter, "_")
        notes.append(f'name part "{part}" contains the destination separator "{delimiter}": written as "{written}"')
    if any(_is_control(c) for c in written):
        shown = "".join(f"\\x{ord(c):02x}" if _is_control(c) else c for c in written)
        written = "".join("_" if _is_control(c) else c for c in written)
        notes.append(
            f'name part "{shown}" contains control characters, which the destination may refuse: written as "{written}"'
        )
    return written


def plan_folders(
    source_folders: Iterable[RemoteFolder],
    *,
    source_prefix: str,
    dest_folders: Iterable[RemoteFolder],
    dest_delimiter: str,
    dest_prefix: str = "",
    skip_trash: bool = False,
    skip_junk: bool = False,
    mailbox_filter: MailboxFilter | None = None,
) -> list[FolderPlan]:
    """Plan every source folder, in the order given; skipped ones carry ``skip_reason``.

    Skip reasons, first that applies: "not selectable"; "virtual folder (\\All)"; "Trash skipped
    by filter" / "Junk skipped by filter" (for the folder and everything beneath it); the mailbox
    filter's reason. INBOX and the special-use folders are subtree roots: their children are
    placed under the destination folder they map to. Folders that end up with the same
    destination name are merged (each gets a note naming the others).
    """
    sources = list(source_folders)
    dests = list(dest_folders)
    guessing = not _announces_special_use(sources)
    paths = [logical_path(folder, source_prefix) for folder in sources]
    kinds = [guess_special_use(p) if guessing else f.special_use for f, p in zip(sources, paths, strict=True)]

    roots: dict[tuple[str, ...], tuple[str, str | None]] = {("INBOX",): ("INBOX", None)}
    for path, kind in zip(paths, kinds, strict=True):
        if kind in MAPPED_SPECIAL_USE and path not in roots:
            roots[path] = (dest_special_folder(kind, dests, dest_delimiter, dest_prefix), kind)
    prefix_parts = _prefix_parts(dest_prefix, dest_delimiter)

    plans: list[FolderPlan] = []
    for folder, path, kind in zip(sources, paths, kinds, strict=True):
        notes: list[str] = []
        if guessing and kind is not None:
            notes.append(f"treated as {kind} by its name (the source announces no special-use folders)")
        root = next((path[:n] for n in range(len(path), 0, -1) if path[:n] in roots), None)
        if root is not None:
            base, root_kind = roots[root]
            rest = [_safe_part(part, dest_delimiter, notes) for part in path[len(root) :]]
            dest_name = dest_delimiter.join([base, *rest])
        else:
            root_kind = None
            own = path[1:] if len(path) > 1 and _fold(path[0]) in GMAIL_ROOTS else path
            rest = [_safe_part(part, dest_delimiter, notes) for part in own]
            dest_name = dest_delimiter.join(_norm_inbox([*prefix_parts, *rest]))

        virtual = folder.virtual or (kind if kind in ("\\All", "\\Flagged") else None)
        reason: str | None = None
        if not folder.selectable:
            reason = "not selectable"
        elif virtual is not None:
            reason = f"virtual folder ({virtual})"
        elif root_kind == "\\Trash" and skip_trash:
            reason = "Trash skipped by filter"
        elif root_kind == "\\Junk" and skip_junk:
            reason = "Junk skipped by filter"
        elif mailbox_filter is not None:
            reason = mailbox_filter.decide(path)
        plans.append(FolderPlan(folder, path, kind, dest_name, reason, notes))

    by_dest: dict[str, list[FolderPlan]] = {}
    for plan in plans:
        if plan.skip_reason is None:
            by_dest.setdefault(plan.dest_name, []).append(plan)
    for group in by_dest.values():
        for plan in group if len(group) > 1 else ():
            others = [f'"{other.source.name}"' for other in group if other is not plan]
            noun = "source folder" if len(others) == 1 else "source folders"
            plan.notes.append(f'merged with {noun} {", ".join(others)} into "{plan.dest_name}"')
    return plans
