"""A deterministic, realistic mailbox, written straight into Maildir files (fast, cached).

The same ``CorpusSpec`` always gives the same bytes: pass 1 draws every decision (folder, kind,
sizes, flags, keywords, dates, a per-message render seed) from one ``random.Random(seed)``;
pass 2 renders each message from its own seed.  Messages are stored the way Dovecot stores an
APPENDed message (LF line ends, ``,S=<file size>,W=<CRLF size>`` in the name), flags and
keywords in the file name (keyword letters from the folder's ``dovecot-keywords``), INTERNALDATE
as the file's mtime.  File names sort in generation order, so UIDs follow it.

What is in it: 22 folders (nested, non-ASCII, non-BMP, "&", a dot, an empty one); plain text,
8-bit UTF-8 and non-UTF-8 charsets (ISO-8859-1, KOI8-R, windows-1252 QP, ISO-2022-JP), HTML,
multipart/alternative, attachments (RFC 2231 names), forwarded message/rfc822; keywords
($Forwarded, $Label1-5, $MDNSent, $Junk/$NotJunk, custom ones); 2% without Message-ID; 1% exact
duplicates; dates over 2015-2025 plus pre-1970 and post-2038 ones; 0.1% of 10-25 MB messages;
and a few odd messages (a header not ended by a blank line, an mbox "From " line, a 30 KB
line, a broken multipart...).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import math
import os
import random
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from email.utils import format_datetime
from pathlib import Path

from imapclient import imap_utf7

GENERATOR_VERSION = "4"
MB = 1024 * 1024

# (folder, weight): the share of the account's messages each folder gets.
FULL_FOLDERS: tuple[tuple[str, float], ...] = (
    ("INBOX", 26), ("Sent", 14), ("Drafts", 0.6), ("Trash", 4), ("Junk", 3), ("Archive", 4),
    ("Archive/2016", 8), ("Archive/2017", 8), ("Archive/2018", 8), ("Projects", 1), ("Projects/2019", 0.6),
    ("Projects/2019/Q1", 3), ("Projects/Client Ä.G.", 2), ("Entwürfe", 0.8), ("日本語", 1.2), ("A&B", 0.4),
    ("Кириллица", 0.1), ("Кириллица/Входящие", 1.6), ("Lists", 0.2), ("Lists/dovecot-users", 12),
    ("Emoji 📬", 0.3), ("Empty", 0),
)  # fmt: skip
SMALL_FOLDERS: tuple[tuple[str, float], ...] = (
    ("INBOX", 40), ("Sent", 20), ("Drafts", 1), ("Trash", 5), ("Junk", 4), ("Archive", 15),
    ("Archive/2018", 10), ("Projects/Client Ä.G.", 4), ("Entwürfe", 1),
)  # fmt: skip

KINDS = (("plain", 40), ("plain8", 8), ("alt", 15), ("html", 7), ("attach", 25), ("forward", 3), ("odd", 2))
CHARSETS = (
    ("utf-8", "8bit"), ("iso-8859-1", "8bit"), ("koi8-r", "8bit"), ("windows-1252", "quoted-printable"),
    ("iso-2022-jp", "7bit"),
)  # fmt: skip
KEYWORDS = (
    ("$Forwarded", 0.03), ("$Label1", 0.015), ("$Label2", 0.015), ("$Label3", 0.01), ("$Label4", 0.01),
    ("$Label5", 0.01), ("$MDNSent", 0.01), ("$NotJunk", 0.005), ("ProjectX", 0.01), ("Todo", 0.01),
    ("client-acme", 0.005),
)  # fmt: skip
ATTACHMENTS = (
    ("report.pdf", "application/pdf", b"%PDF-1.4\n"),
    ("photo.jpg", "image/jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF"),
    ("data.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", b"PK\x03\x04"),
    ("archive.zip", "application/zip", b"PK\x03\x04"),
    ("Rechnung Ä-Ö-Ü.pdf", "application/pdf", b"%PDF-1.5\n"),
    ("scan.png", "image/png", b"\x89PNG\r\n\x1a\n"),
)
ZONES = ("+0000", "+0100", "+0200", "-0500", "-0800", "+0900", "+0530", "-0300")
NAMES = (
    "Anna Müller", "Bob Smith", "Chloé Dubois", "Dmitri Ivanov", "Eva Nováková", "Frank O'Neil", "Gao Wei",
    "Hiro Tanaka", "Ingrid Berg", "José García", "Kofi Mensah", "Laura Rossi", "Mehmet Yılmaz", "Nina Petrova",
)  # fmt: skip
DOMAINS = ("example.org", "example.com", "example.net", "mail.example.de", "lists.example.org", "corp.example")
_FLAG_NAMES = {"S": "\\seen", "R": "\\answered", "F": "\\flagged", "D": "\\draft", "T": "\\deleted"}
FIRST = dt.datetime(2015, 1, 1, tzinfo=dt.UTC).timestamp()
LAST = dt.datetime(2025, 12, 31, tzinfo=dt.UTC).timestamp()
PRE_1970 = (dt.datetime(1965, 3, 1, 9, 0, tzinfo=dt.UTC), dt.datetime(1969, 12, 31, 23, 0, tzinfo=dt.UTC))
POST_2038 = (dt.datetime(2038, 6, 1, 12, 0, tzinfo=dt.UTC), dt.datetime(2040, 2, 29, 12, 0, tzinfo=dt.UTC))


@dataclass(frozen=True)
class CorpusSpec:
    """One account's mailbox; the same spec (and GENERATOR_VERSION) always gives the same bytes."""

    name: str
    messages: int
    target_bytes: int  # wanted total of the messages' sizes as IMAP sees them (CRLF)
    seed: int
    folders: str = "full"  # "full" (22 folders) or "small" (9)
    big_messages: int = -1  # messages of big_min..big_max bytes; -1: 0.1% of the messages (rounded)
    big_min: int = 10 * MB
    big_max: int = 25 * MB
    odd_dates: int = 2  # messages dated before 1970, and as many after 2038

    def key(self) -> str:
        data = json.dumps([GENERATOR_VERSION, asdict(self)], sort_keys=True).encode()
        return f"{self.name}-{hashlib.sha256(data).hexdigest()[:16]}"

    @property
    def big_count(self) -> int:
        return self.big_messages if self.big_messages >= 0 else round(self.messages * 0.001)


@dataclass
class Manifest:
    """What was generated (read back from the cache)."""

    key: str
    messages: int
    octets: int  # CRLF sizes, as RFC822.SIZE reports them
    folders: dict[str, int]
    big: list[int] = field(default_factory=list)
    unstorable_dates: int = 0  # INTERNALDATEs a Dovecot destination cannot take through APPEND
    # per folder, to check what the server reads back: octets, flag/keyword counts (lower-case
    # IMAP names), and the sum of the non-negative INTERNALDATEs (Dovecot wraps negative ones)
    folder_octets: dict[str, int] = field(default_factory=dict)
    folder_flags: dict[str, dict[str, int]] = field(default_factory=dict)
    folder_dates: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls(**json.loads(path.read_text()))


@dataclass
class _Plan:
    folder: str
    kind: str
    seed: int
    date: int
    flags: str  # Maildir system-flag letters
    keywords: tuple[str, ...]
    has_mid: bool
    duplicate: bool
    text: int
    attachments: list[int]
    big: bool = False


# --------------------------------------------------------------------------------------------
# Text pools: slices of pre-made text make bodies fast to produce.

_WORDS = (
    "the of and to in is that for it as with was on be at by this had not are but from or have an they which "
    "one you were all we when there can more if out so said what up its about into than them only other new "
    "some could time these two may then do first any my now such like our over man me even most made after "
    "also did many before must through back years where much your way well down should because each just "
    "those people how too little state good very make world still own see men work long get here between both "
    "life being under never day same another know while last might us great old year off come since against "
    "meeting invoice project server mailbox migration attached please regards thanks report quarter budget "
    "deadline review draft contract schedule customer release update question answer monday friday"
).split()


def _pool(seed: int, size: int = 2 * MB) -> bytes:
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ra", "te", "qu", "xe", "jo", "za", "vi", "nu", "po", "se", "di", "fa", "gu"]
    vocab = _WORDS + ["".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(600)]
    lines, total = [], 0
    while total < size:
        words, width = [], 0
        target = rng.randint(40, 76)
        while width < target:
            w = rng.choice(vocab)
            words.append(w)
            width += len(w) + 1
        line = " ".join(words)
        if rng.random() < 0.08:
            line = line.capitalize() + "."
        lines.append(line)
        total += len(line) + 1
        if rng.random() < 0.12:
            lines.append("")
            total += 1
    return ("\n".join(lines) + "\n").encode()


_LATIN1 = bytes.maketrans(b"qxj", bytes([0xE4, 0xF6, 0xFC]))
_KOI8 = bytes.maketrans(bytes(range(ord("a"), ord("z") + 1)), bytes(range(0xC1, 0xC1 + 26)))


class _Text:
    def __init__(self, seed: int) -> None:
        self.pool = _pool(seed)

    def take(self, rng: random.Random, n: int) -> bytes:
        n = max(1, n)
        if n >= len(self.pool) - 1:
            return (self.pool * (n // len(self.pool) + 1))[:n].rsplit(b"\n", 1)[0] + b"\n"
        start = self.pool.find(b"\n", rng.randrange(len(self.pool) - n)) + 1
        chunk = self.pool[start : start + n]
        cut = chunk.rfind(b"\n")
        return chunk[: cut + 1] if cut > 0 else chunk + b"\n"

    def words(self, rng: random.Random, k: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(k))


# --------------------------------------------------------------------------------------------
# Pass 1: the plan.


def _allocate(total: int, weights: list[float]) -> list[int]:
    s = sum(weights)
    raw = [total * w / s for w in weights]
    counts = [math.floor(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _lognorm(rng: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, rng.lognormvariate(math.log(median), sigma))))


def _plan(spec: CorpusSpec) -> list[_Plan]:
    rng = random.Random(spec.seed)
    folders = FULL_FOLDERS if spec.folders == "full" else SMALL_FOLDERS
    counts = _allocate(spec.messages, [w for _, w in folders])
    kinds, kind_weights = zip(*KINDS, strict=True)
    plans: list[_Plan] = []
    for (folder, _), n in zip(folders, counts, strict=True):
        if folder.startswith("Archive/"):
            year = int(folder.split("/")[1])
            lo, hi = (
                dt.datetime(year, 1, 1, tzinfo=dt.UTC).timestamp(),
                dt.datetime(year, 12, 31, tzinfo=dt.UTC).timestamp(),
            )
        else:
            lo, hi = FIRST, LAST
        dates = sorted(rng.uniform(lo, hi) for _ in range(n))
        for i in range(n):
            kind = rng.choices(kinds, kind_weights)[0]
            flags = _flags(rng, folder)
            keywords = tuple(k for k, p in KEYWORDS if rng.random() < p)
            if folder == "Junk":
                keywords += ("$Junk",)
            text = _lognorm(rng, 2500 if kind in ("plain", "plain8", "forward") else 4000, 0.9, 200, 200_000)
            if kind == "html":
                text = _lognorm(rng, 25_000, 0.7, 2000, 400_000)
            attachments = []
            if kind == "attach":
                attachments = [
                    _lognorm(rng, 90_000, 1.3, 2000, 6 * MB) for _ in range(rng.choices((1, 2, 3), (70, 22, 8))[0])
                ]
            plans.append(
                _Plan(
                    folder,
                    kind,
                    rng.getrandbits(63),
                    round(dates[i]),
                    flags,
                    keywords,
                    has_mid=rng.random() >= 0.02,
                    duplicate=i > 0 and rng.random() < 0.01,
                    text=text,
                    attachments=attachments,
                )  # fmt: skip
            )
    _place_specials(spec, rng, plans)
    _scale_attachments(spec, plans)
    return plans


def _flags(rng: random.Random, folder: str) -> str:
    letters = set()
    seen = {"Junk": 0.3, "INBOX": 0.85, "Drafts": 1.0, "Sent": 1.0}.get(folder, 0.95)
    if rng.random() < seen:
        letters.add("S")
    if folder == "Drafts":
        letters.add("D")
    if folder != "Sent" and rng.random() < 0.08:
        letters.add("R")
    if rng.random() < 0.04:
        letters.add("F")
    return "".join(sorted(letters))


def _place_specials(spec: CorpusSpec, rng: random.Random, plans: list[_Plan]) -> None:
    """Big messages (in INBOX, Sent, Archive...) and out-of-range dates at fixed places."""
    candidates = [p for p in plans if p.folder in ("INBOX", "Sent", "Archive/2017", "Archive", "Lists/dovecot-users")]
    for p in rng.sample(candidates, min(spec.big_count, len(candidates))):
        p.kind, p.big, p.duplicate = "attach", True, False
        p.attachments = [rng.randint(spec.big_min, spec.big_max)]
    archive = [p for p in plans if p.folder == "Archive"]
    inbox = [p for p in plans if p.folder == "INBOX"]
    for p, when in zip(archive[: spec.odd_dates], PRE_1970, strict=False):
        p.date, p.duplicate = round(when.timestamp()), False
    for p, when in zip(inbox[len(inbox) - min(spec.odd_dates, len(inbox)) :], POST_2038, strict=False):
        p.date, p.duplicate = round(when.timestamp()), False
    for folder_plans in (archive, inbox):  # a duplicate right after a special one would copy its date
        for a, b in zip(folder_plans, folder_plans[1:], strict=False):
            if b.duplicate and a.date != b.date and (a.date < FIRST or a.date > LAST):
                b.duplicate = False


def _scale_attachments(spec: CorpusSpec, plans: list[_Plan]) -> None:
    """Scale the ordinary attachments so that the total lands near ``target_bytes``."""
    b64 = 4 / 3 * 78 / 76
    fixed = attach = 0.0
    for p in plans:
        html = p.text * 3 if p.kind == "alt" else 0
        fixed += 1000 + p.text * 1.02 + html
        if p.big:
            fixed += p.attachments[0]
        else:
            attach += sum(p.attachments) * b64 + 300 * len(p.attachments)
    if attach:
        scale = min(5.0, max(0.05, (spec.target_bytes - fixed) / attach))
        for p in plans:
            if not p.big:
                p.attachments = [max(500, int(a * scale)) for a in p.attachments]
    for p in plans:
        if p.big:  # the big message's *stored* size is what was drawn
            p.attachments = [int(p.attachments[0] / b64) - 2000]


# --------------------------------------------------------------------------------------------
# Pass 2: rendering.


def _date_header(when: float, zone: str) -> str:
    sign = 1 if zone[0] == "+" else -1
    tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:])))
    try:
        return format_datetime(dt.datetime.fromtimestamp(when, tz))
    except (OverflowError, OSError, ValueError):
        return "Thu, 01 Jan 1970 00:00:00 +0000"


def _address(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(NAMES)
    local = name.split()[0].lower().encode("ascii", "ignore").decode() or "user"
    return name, f"{local}.{rng.randint(1, 999)}@{rng.choice(DOMAINS)}"


def _encode_name(rng: random.Random, name: str) -> str:
    if name.isascii():
        return f'"{name}"'
    return f"=?UTF-8?B?{base64.b64encode(name.encode()).decode()}?="


def _subject(rng: random.Random, text: _Text, folder: str) -> bytes:
    words = text.words(rng, rng.randint(3, 9)).capitalize()
    roll = rng.random()
    if folder == "Junk" and roll < 0.5:
        return ("Gewinn für Sie: " + words + " ✓").encode()  # raw 8-bit UTF-8 header, as spam has
    if roll < 0.10:
        s = "Ré: " + words + " — 日本語"
        return f"=?UTF-8?B?{base64.b64encode(s.encode()).decode()}?=".encode()
    if roll < 0.15:
        return b"=?ISO-8859-1?Q?" + binascii.b2a_qp(("Grüße " + words).encode("latin-1"), header=True) + b"?="
    if roll < 0.30:
        return b"Re: " + words.encode()
    return words.encode()


def _headers(rng: random.Random, p: _Plan, text: _Text, content: list[bytes]) -> bytes:
    name, addr = _address(rng)
    _, to = _address(rng)
    zone = rng.choice(ZONES)
    date = _date_header(p.date, zone)
    lines = [b"Return-Path: <" + addr.encode() + b">"]
    for hop in range(rng.randint(1, 3)):
        lines.append(
            (
                f"Received: from mx{hop}.{rng.choice(DOMAINS)} (mx{hop}.{rng.choice(DOMAINS)} [192.0.2.{rng.randint(1, 254)}])\n"
                f"\tby mail.example.org (Postfix) with ESMTPS id {rng.getrandbits(40):010X}\n\tfor <{to}>; {date}"
            ).encode()
        )
    lines.append(f"From: {_encode_name(rng, name)} <{addr}>".encode())
    lines.append(f"To: {to}".encode())
    if rng.random() < 0.2:
        lines.append(f"Cc: {_address(rng)[1]}, {_address(rng)[1]}".encode())
    lines.append(b"Subject: " + _subject(rng, text, p.folder))
    lines.append(f"Date: {date}".encode())
    if p.has_mid:
        lines.append(f"Message-ID: <{rng.getrandbits(64):016x}.{p.seed % 100000}@{rng.choice(DOMAINS)}>".encode())
    if rng.random() < 0.3:
        lines.append(f"In-Reply-To: <{rng.getrandbits(64):016x}@{rng.choice(DOMAINS)}>".encode())
    if p.folder.startswith("Lists"):
        lines.append(b"List-Id: Dovecot Mailing List <dovecot.dovecot.org>")
        lines.append(b"List-Unsubscribe: <mailto:dovecot-leave@dovecot.org>")
    lines.append(
        rng.choice(
            (b"X-Mailer: Microsoft Outlook 16.0", b"User-Agent: Mozilla Thunderbird", b"X-Mailer: Apple Mail (2.3654)")
        )
    )
    lines.append(b"MIME-Version: 1.0")
    lines.extend(content)
    return b"\n".join(lines) + b"\n\n"


def _html(body: bytes) -> bytes:
    return (
        b'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><style>p{margin:0;font-family:sans-serif}</style>'
        b"</head><body>\n<p>" + body.replace(b"\n", b"</p>\n<p>") + b"</p>\n</body></html>\n"
    )


def _charset_body(rng: random.Random, text: _Text, n: int) -> tuple[bytes, bytes, bytes]:
    charset, cte = rng.choice(CHARSETS)
    body = text.take(rng, n)
    if charset == "utf-8":
        body = body.replace(b"q", "ä".encode()).replace(b"x", "ö".encode()).replace(b"j", "ü".encode())
    elif charset == "iso-8859-1":
        body = body.translate(_LATIN1)
    elif charset == "koi8-r":
        body = body.translate(_KOI8)
    elif charset == "windows-1252":
        body = binascii.b2a_qp(body.translate(_LATIN1).replace(b"z", b"\x80"))
    else:
        body = ("日本語のテキストです。" * max(1, n // 40) + "\n").encode("iso-2022-jp")
    return charset.encode(), cte.encode(), body


def _attachment(rng: random.Random, size: int, boundary: bytes) -> bytes:
    name, ctype, magic = rng.choice(ATTACHMENTS)
    data = magic + rng.randbytes(max(0, size - len(magic)))
    if name.isascii():
        disp = f'attachment; filename="{name}"'.encode()
    else:
        quoted = "".join(c if c.isalnum() and c.isascii() else f"%{b:02X}" for c in name for b in c.encode())
        disp = f"attachment; filename*=utf-8''{quoted}".encode()
    return (
        b"--" + boundary + b"\nContent-Type: " + ctype.encode() + b"\nContent-Transfer-Encoding: base64\n"
        b"Content-Disposition: " + disp + b"\n\n" + base64.encodebytes(data)
    )


def _render(p: _Plan, text: _Text, odd_index: int) -> bytes:
    rng = random.Random(p.seed)
    boundary = f"----=_Part_{p.seed:016x}".encode()
    if p.kind == "plain":
        return _headers(
            rng, p, text, [b"Content-Type: text/plain; charset=us-ascii", b"Content-Transfer-Encoding: 7bit"]
        ) + text.take(rng, p.text)
    if p.kind == "plain8":
        charset, cte, body = _charset_body(rng, text, p.text)
        return (
            _headers(
                rng, p, text, [b"Content-Type: text/plain; charset=" + charset, b"Content-Transfer-Encoding: " + cte]
            )
            + body
        )
    if p.kind == "html":
        body = binascii.b2a_qp(_html(text.take(rng, p.text)))
        return (
            _headers(
                rng,
                p,
                text,
                [b'Content-Type: text/html; charset="utf-8"', b"Content-Transfer-Encoding: quoted-printable"],
            )
            + body
        )
    if p.kind == "alt":
        plain = text.take(rng, p.text)
        body = (
            b"This is a multi-part message in MIME format.\n\n--"
            + boundary
            + b"\nContent-Type: text/plain; charset=utf-8\n"
            b"Content-Transfer-Encoding: 8bit\n\n"
            + plain
            + b"\n--"
            + boundary
            + b"\nContent-Type: text/html; charset=utf-8\n"
            b"Content-Transfer-Encoding: 8bit\n\n"
            + _html(plain + text.take(rng, p.text * 2))
            + b"\n--"
            + boundary
            + b"--\n"
        )
        return _headers(rng, p, text, [b'Content-Type: multipart/alternative; boundary="' + boundary + b'"']) + body
    if p.kind == "attach":
        parts = [
            b"--"
            + boundary
            + b"\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
            + text.take(rng, p.text)
        ]
        parts += [_attachment(rng, size, boundary) for size in p.attachments]
        body = b"\n".join(parts) + b"\n--" + boundary + b"--\n"
        return _headers(rng, p, text, [b'Content-Type: multipart/mixed; boundary="' + boundary + b'"']) + body
    if p.kind == "forward":
        inner_plan = _Plan(p.folder, "plain", p.seed ^ 0x5A5A, p.date - 86400, "", (), True, False, p.text, [])
        inner = _render(inner_plan, text, 0)
        body = (
            b"--"
            + boundary
            + b"\nContent-Type: text/plain; charset=us-ascii\n\nSee the forwarded message below.\n\n--"
            + boundary
            + b"\nContent-Type: message/rfc822\nContent-Disposition: inline\n\n"
            + inner
            + b"\n--"
            + boundary
            + b"--\n"
        )
        return _headers(rng, p, text, [b'Content-Type: multipart/mixed; boundary="' + boundary + b'"']) + body
    return _odd(rng, p, text, odd_index, boundary)


def _odd(rng: random.Random, p: _Plan, text: _Text, i: int, boundary: bytes) -> bytes:
    """Messages real mailboxes have and careless tools mangle."""
    which = i % 8
    if which == 0:  # header block not ended by a blank line, no body (CPython's msg_35.txt)
        return b"From: aperson@dom.ain\nTo: bperson@dom.ain\nSubject: here's something interesting\n"
    if which == 1:  # an mbox "From " line first
        return (
            b"From aperson@dom.ain  Mon Jan  1 00:00:00 2018\n"
            + _headers(rng, p, text, [b"Content-Type: text/plain"])
            + text.take(rng, p.text)
        )
    if which == 2:  # one 30 KB line
        return (
            _headers(rng, p, text, [b"Content-Type: text/plain"]) + text.take(rng, 30_000).replace(b"\n", b" ") + b"\n"
        )
    if which == 3:  # no Message-ID, no Date, no MIME headers: nothing but a subject
        return b"Subject: minimal " + str(p.seed % 1000).encode() + b"\n\n" + text.take(rng, 300)
    if which == 4:  # a multipart whose boundary never appears
        return _headers(rng, p, text, [b'Content-Type: multipart/mixed; boundary="never-there"']) + text.take(
            rng, p.text
        )
    if which == 5:  # raw 8-bit UTF-8 in headers and body, no MIME declaration at all
        return (
            "From: Jürgen Größe <j@example.de>\nTo: Zoë <z@example.org>\nSubject: Überweisung für März\n\n"
        ).encode() + "Grüße aus Köln — ½ €\n".encode() * 40
    if which == 6:  # empty body
        return _headers(rng, p, text, [b"Content-Type: text/plain"])
    refs = b"\n ".join(b"<%016x@example.org>" % rng.getrandbits(64) for _ in range(60))  # long folded header
    return (
        _headers(rng, p, text, [b"References: " + refs, b"Content-Type: text/plain"])
        + b"line with trailing blanks   \n\t\n.\n"
        + text.take(rng, p.text)
    )


# --------------------------------------------------------------------------------------------
# Writing, caching, installing.


def _maildir_dir(root: Path, folder: str) -> Path:
    if folder == "INBOX":
        return root
    return root.joinpath(*(imap_utf7.encode(part).decode("ascii") for part in folder.split("/")))


def generate(spec: CorpusSpec, cache_dir: Path) -> tuple[Path, Manifest]:
    """The spec's Maildir under ``cache_dir`` (generated unless already there) and its manifest."""
    target = cache_dir / spec.key()
    manifest_path = target / "manifest.json"
    if manifest_path.exists():
        return target / "Maildir", Manifest.load(manifest_path)
    work = cache_dir / (spec.key() + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    root = work / "Maildir"
    plans = _plan(spec)
    text = _Text(spec.seed)
    folders = FULL_FOLDERS if spec.folders == "full" else SMALL_FOLDERS
    keyword_sets: dict[str, list[str]] = {}
    for folder, _ in folders:
        d = _maildir_dir(root, folder)
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        used = sorted({k for p in plans if p.folder == folder for k in p.keywords})
        if len(used) > 26:
            raise ValueError(f"{folder}: more than 26 keywords")
        keyword_sets[folder] = used
        if used:
            (d / "dovecot-keywords").write_text("".join(f"{i} {k}\n" for i, k in enumerate(used)))
    counts: Counter[str] = Counter()
    folder_octets: Counter[str] = Counter()
    folder_dates: Counter[str] = Counter()
    folder_flags: dict[str, Counter[str]] = {f: Counter() for f, _ in folders}
    octets = unstorable = odd = 0
    big: list[int] = []
    previous: dict[str, bytes] = {}
    horizon = dt.datetime.now(dt.UTC).timestamp() + 86400
    for n, p in enumerate(plans):
        if p.duplicate and p.folder in previous:
            raw = previous[p.folder]
        else:
            raw = _render(p, text, odd)
            odd += p.kind == "odd"
        previous[p.folder] = raw
        virtual = len(raw) + raw.count(b"\n")
        letters = "".join(chr(ord("a") + keyword_sets[p.folder].index(k)) for k in sorted(set(p.keywords)))
        flags = "".join(sorted(p.flags)) + "".join(sorted(letters))
        name = f"{1_500_000_000 + n}.M{n}P{spec.seed % 100000}.mailmig-bench,S={len(raw)},W={virtual}:2,{flags}"
        path = _maildir_dir(root, p.folder) / "cur" / name
        path.write_bytes(raw)
        os.utime(path, ns=(p.date * 1_000_000_000, p.date * 1_000_000_000))
        counts[p.folder] += 1
        octets += virtual
        folder_octets[p.folder] += virtual
        folder_dates[p.folder] += max(0, p.date)
        folder_flags[p.folder].update({_FLAG_NAMES[c] for c in p.flags} | {k.lower() for k in p.keywords})
        if p.big:
            big.append(virtual)
        if p.date < 0 or p.date > horizon:
            unstorable += 1
    manifest = Manifest(
        spec.key(),
        len(plans),
        octets,
        {f: counts[f] for f, _ in folders},
        sorted(big),
        unstorable,
        {f: folder_octets[f] for f, _ in folders},
        {f: dict(folder_flags[f]) for f, _ in folders},
        {f: folder_dates[f] for f, _ in folders},
    )
    (work / "manifest.json").write_text(json.dumps(asdict(manifest), indent=1, ensure_ascii=False))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(work, target)
    return target / "Maildir", manifest


def install(template: Path, maildir: Path, uid: int | None, gid: int | None) -> None:
    """Put a generated Maildir in place for a server user: message files hard-linked (copied
    across file systems), everything else copied, owned by the mail user."""
    if maildir.exists():
        raise FileExistsError(maildir)
    for src_dir, _dirs, files in os.walk(template):
        rel = Path(src_dir).relative_to(template)
        dest_dir = maildir / rel
        dest_dir.mkdir(parents=True, exist_ok=True)
        for name in files:
            src, dst = Path(src_dir) / name, dest_dir / name
            if rel.name == "cur":
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
            else:
                shutil.copy2(src, dst)
    if uid is not None and gid is not None:
        for path in _walk_all(maildir.parent):
            os.chown(path, uid, gid)


def _walk_all(top: Path) -> Iterator[Path]:
    yield top
    for d, dirs, files in os.walk(top):
        for name in dirs + files:
            yield Path(d) / name
