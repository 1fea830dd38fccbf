"""Is the destination complete?  Every folder: same octets, flags (incl. keywords), INTERNALDATE.

A minimal IMAP reader (plain sockets, one ``UID FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[])`` per
folder, literals hashed as they arrive) keeps the check fast and independent of the client
library under test.  Messages are compared per folder as multisets, so order does not matter;
what does not match is classified:

- ``missing``: no destination message has the source message's octets (absent or altered);
- ``altered_x_tuid``: equal once an ``X-TUID:`` header line is removed (what mbsync inserts);
- ``flags``: same octets, other flags/keywords;
- ``date``: same octets and flags, other INTERNALDATE;
- ``date_unstorable``: the same, but the source date is before 1970 or in the future (post-2038,
  or a pre-1970 date that Dovecot's index wrapped past 2100): Dovecot replaces a future APPEND
  date with "now" and wraps pre-1970 ones, so no IMAP tool can copy it; counted apart, not held
  against completeness;
- ``extra``: destination messages left over (duplicates, additions);
- ``missing_folders``: source folders absent at the destination.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import socket
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

TIMEOUT = 120.0
_LITERAL = re.compile(rb"\{(\d+)\}\r\n$")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_DATE = re.compile(rb'INTERNALDATE "([^"]+)"')
_UID = re.compile(rb"UID (\d+)")
_LIST = re.compile(rb'^\* LIST \(([^)]*)\) (?:NIL|"(?:[^"\\]|\\.)*") (.+)$')
_TUID = re.compile(rb"\r\nX-TUID: [^\r\n]*", re.IGNORECASE)


class ImapFailure(RuntimeError):
    pass


@dataclass(frozen=True)
class Item:
    digest: bytes
    flags: frozenset[str]
    date: int  # INTERNALDATE as a Unix time
    size: int
    alt_digest: bytes | None = None  # digest without an X-TUID header line, when there was one
    uid: int = 0

    @property
    def key(self) -> tuple[bytes, frozenset[str], int]:
        return (self.digest, self.flags, self.date)


Snapshot = dict[str, list[Item]]  # wire (modified UTF-7) folder name -> messages


class RawImap:
    """Just enough IMAP to log in, LIST, EXAMINE and stream a FETCH."""

    def __init__(self, host: str, port: int, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb", buffering=1 << 20)
        self.n = 0
        greeting = self.file.readline()
        if not greeting.startswith(b"* OK"):
            raise ImapFailure(f"bad greeting {greeting!r}")

    def command(self, text: bytes, on_response=None, literal=None) -> list[bytes]:
        """Send one command; return its untagged lines (literals replaced by what ``literal`` returns)."""
        self.n += 1
        tag = b"b%d" % self.n
        self.sock.sendall(tag + b" " + text + b"\r\n")
        lines: list[bytes] = []
        while True:
            line = self._response(literal)
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1 :].startswith(b"OK"):
                    raise ImapFailure(f"{text[:60]!r}: {line!r}")
                return lines
            if on_response is not None:
                on_response(line)
            else:
                lines.append(line)

    def _response(self, literal) -> bytes:
        parts: list[bytes] = []
        for _ in range(1_000_000):
            line = self.file.readline()
            if not line:
                raise ImapFailure("connection closed")
            m = _LITERAL.search(line)
            if not m:
                parts.append(line.rstrip(b"\r\n"))
                return b"".join(parts)
            n = int(m.group(1))
            head = line[: m.start()]
            parts.append(head)
            data = self._read_exact(n)
            parts.append(literal(head, data) if literal is not None else _quote(data))
        raise ImapFailure("response too long")

    def _read_exact(self, n: int) -> bytes:
        data = self.file.read(n)
        if len(data) != n:
            raise ImapFailure("connection closed inside a literal")
        return data

    def login(self, user: str, password: str) -> None:
        self.command(b"LOGIN " + _quote(user.encode()) + b" " + _quote(password.encode()))

    def folders(self) -> list[str]:
        names = []
        for line in self.command(b'LIST "" "*"'):
            m = _LIST.match(line)
            if m and b"\\noselect" not in m.group(1).lower() and b"\\nonexistent" not in m.group(1).lower():
                names.append(_unquote(m.group(2)))
        return names

    def snapshot_folder(self, name: str) -> list[Item]:
        untagged = self.command(b"EXAMINE " + _quote(name.encode()))
        exists = next((int(line.split()[1]) for line in untagged if line.endswith(b" EXISTS")), 0)
        if not exists:
            return []
        items: list[Item] = []
        pending: dict[str, Any] = {}

        def literal(head: bytes, data: bytes) -> bytes:
            if head.rstrip().endswith(b"BODY[]"):
                pending["digest"] = hashlib.sha256(data).digest()
                pending["size"] = len(data)
                end = data.find(b"\r\n\r\n")
                header = data[: end + 2] if end >= 0 else data
                if _TUID.search(header):
                    pending["alt"] = hashlib.sha256(_TUID.sub(b"", header, count=1) + data[len(header) :]).digest()
            return b'""'

        def on_response(line: bytes) -> None:
            if b" FETCH (" not in line:
                return
            flags = _FLAGS.search(line)
            date = _DATE.search(line)
            uid = _UID.search(line)
            if "digest" not in pending and b"BODY[] NIL" not in line and b'BODY[] ""' not in line:
                raise ImapFailure(f"FETCH response without BODY[]: {line[:200]!r}")
            items.append(
                Item(
                    pending.pop("digest", hashlib.sha256(b"").digest()),
                    frozenset(f for f in flags.group(1).decode().casefold().split() if f != "\\recent")
                    if flags
                    else frozenset(),
                    _parse_date(date.group(1)) if date else 0,
                    int(pending.pop("size", 0)),
                    pending.pop("alt", None),
                    int(uid.group(1)) if uid else 0,
                )
            )

        self.command(b"UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])", on_response, literal)
        return items

    def logout(self) -> None:
        try:
            self.command(b"LOGOUT")
        except (ImapFailure, OSError):
            pass
        self.close()

    def close(self) -> None:
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


def _quote(data: bytes) -> bytes:
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _unquote(token: bytes) -> str:
    token = token.strip()
    if token.startswith(b'"') and token.endswith(b'"'):
        token = re.sub(rb"\\(.)", rb"\1", token[1:-1])
    return token.decode("ascii", "replace")


def _parse_date(text: bytes) -> int:
    return int(dt.datetime.strptime(text.decode().strip(), "%d-%b-%Y %H:%M:%S %z").timestamp())


def snapshot(host: str, port: int, user: str, password: str) -> Snapshot:
    """Every selectable folder of a mailbox, read without changing anything."""
    imap = RawImap(host, port)
    try:
        imap.login(user, password)
        return {name: imap.snapshot_folder(name) for name in imap.folders()}
    finally:
        imap.logout()


@dataclass
class Diff:
    messages: int = 0
    octets: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """Differences that make the copy incomplete (everything but unstorable dates)."""
        return sum(n for k, n in self.counts.items() if k != "date_unstorable")

    @property
    def complete(self) -> bool:
        return self.problems == 0

    def add(self, other: Diff) -> None:
        self.messages += other.messages
        self.octets += other.octets
        self.counts.update(other.counts)
        self.samples.extend(other.samples[: max(0, 16 - len(self.samples))])

    def text(self) -> str:
        if not self.counts:
            return "yes"
        detail = ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items()))
        return ("yes" if self.complete else f"no ({self.problems})") + f" [{detail}]"

    def as_dict(self) -> dict:
        return {
            "complete": self.complete,
            "problems": self.problems,
            "counts": dict(self.counts),
            "samples": self.samples,
            "messages": self.messages,
            "octets": self.octets,
        }


def compare(source: Snapshot, dest: Snapshot, *, now: float | None = None) -> Diff:
    """How ``dest`` differs from ``source`` (source folders only; the destination may hold more folders)."""
    horizon = (now if now is not None else time.time()) + 86400
    diff = Diff()
    for folder, src_items in source.items():
        diff.messages += len(src_items)
        diff.octets += sum(i.size for i in src_items)
        if folder not in dest:
            diff.counts["missing_folders"] += 1
            if src_items:
                diff.counts["missing"] += len(src_items)
                diff.samples.append(f"{folder}: folder missing")
            continue
        dst_items = dest[folder]
        exact = Counter(i.key for i in dst_items)
        left_src = []
        for item in src_items:
            if exact[item.key] > 0:
                exact[item.key] -= 1
            else:
                left_src.append(item)
        by_digest: dict[bytes, list[Item]] = defaultdict(list)
        leftover_keys = +exact
        for item in dst_items:
            if leftover_keys[item.key] > 0:
                leftover_keys[item.key] -= 1
                by_digest[item.digest].append(item)
                if item.alt_digest is not None:
                    by_digest[b"alt:" + item.alt_digest].append(item)
        used: set[int] = set()
        for item in left_src:
            candidates = [d for d in by_digest.get(item.digest, []) if id(d) not in used]
            kind = ""
            if not candidates:
                candidates = [d for d in by_digest.get(b"alt:" + item.digest, []) if id(d) not in used]
                kind = "altered_x_tuid" if candidates else "missing"
            if candidates:
                d = candidates[0]
                used.add(id(d))
                if not kind:
                    if d.flags != item.flags:
                        kind = "flags"
                    elif item.date > horizon or item.date < 0:
                        kind = "date_unstorable"
                    else:
                        kind = "date"
                elif d.flags != item.flags:
                    diff.counts["flags"] += 1
            diff.counts[kind] += 1
            if sum(1 for x in diff.samples if f": {kind}" in x) < 2 and kind != "date_unstorable":
                what = kind
                if kind == "flags":
                    what += f" {sorted(item.flags)} -> {sorted(candidates[0].flags)}"
                elif kind == "date":
                    what += f" {item.date} -> {candidates[0].date}"
                diff.samples.append(f"{folder} uid {item.uid}: {what} ({item.size} octets)")
        extra = sum((+exact).values()) - len(used)
        if extra > 0:
            diff.counts["extra"] += extra
    return diff
